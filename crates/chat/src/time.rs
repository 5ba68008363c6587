//! A small `strftime` for the `strftime_now(format)` template function.
//!
//! Hugging Face renders `strftime_now` with Python's `datetime.now().strftime(format)`, i.e. the
//! local time of the machine. The standard library has no time-zone database, so Hearth uses
//! **UTC** (documented deviation; the date in "Today Date: 26 Jul 2024"-style system prompts is
//! then the UTC date).
//!
//! Supported directives (C/Python locale "C" spelling):
//!
//! | directive | meaning | example |
//! |---|---|---|
//! | `%Y` | year | `2024` |
//! | `%y` | year in century, 2 digits | `24` |
//! | `%m` | month 01-12 | `07` |
//! | `%d` | day of month 01-31 | `05` |
//! | `%e` | day of month, space padded | ` 5` |
//! | `%j` | day of year 001-366 | `187` |
//! | `%B` / `%b` (`%h`) | month name, full / abbreviated | `July` / `Jul` |
//! | `%A` / `%a` | weekday name, full / abbreviated | `Friday` / `Fri` |
//! | `%u` / `%w` | weekday 1-7 (Mon=1) / 0-6 (Sun=0) | `5` / `5` |
//! | `%H` / `%I` | hour 00-23 / 01-12 | `14` / `02` |
//! | `%M` / `%S` | minute / second | `03` / `09` |
//! | `%p` | `AM` / `PM` | `PM` |
//! | `%F` / `%T` / `%D` / `%R` | `%Y-%m-%d` / `%H:%M:%S` / `%m/%d/%y` / `%H:%M` | |
//! | `%Z` / `%z` | `UTC` / `+0000` | |
//! | `%n` / `%t` / `%%` | newline / tab / `%` | |
//!
//! The glibc flag `-` (as in `%-d`, used by some templates) removes the padding. Any other
//! directive is written out unchanged, as glibc does.

use std::time::{SystemTime, UNIX_EPOCH};

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// A broken-down UTC time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DateTime {
    pub year: i64,
    /// 1-12.
    pub month: u32,
    /// 1-31.
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    /// 0 = Monday ... 6 = Sunday.
    pub weekday: u32,
    /// 1-366.
    pub day_of_year: u32,
}

impl DateTime {
    /// The UTC time `secs` seconds after 1970-01-01T00:00:00Z (negative: before).
    pub fn from_unix(secs: i64) -> DateTime {
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400) as u32;
        let (year, month, day) = civil_from_days(days);
        // 1970-01-01 was a Thursday (weekday 3 with Monday = 0).
        let weekday = (days + 3).rem_euclid(7) as u32;
        let day_of_year = (days - days_from_civil(year, 1, 1) + 1) as u32;
        DateTime {
            year,
            month,
            day,
            hour: rem / 3600,
            minute: rem / 60 % 60,
            second: rem % 60,
            weekday,
            day_of_year,
        }
    }

    /// The current UTC time from the system clock.
    pub fn now_utc() -> DateTime {
        let secs = match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(d) => d.as_secs() as i64,
            Err(e) => -(e.duration().as_secs() as i64),
        };
        DateTime::from_unix(secs)
    }

    /// Formats the time with the `strftime` directives listed in the module docs.
    pub fn strftime(&self, format: &str) -> String {
        let mut out = String::with_capacity(format.len() + 16);
        let mut chars = format.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            let no_pad = chars.peek() == Some(&'-');
            if no_pad {
                chars.next();
            }
            let Some(d) = chars.next() else {
                out.push('%');
                if no_pad {
                    out.push('-');
                }
                break;
            };
            let num = |out: &mut String, v: i64, width: usize, pad: char| {
                if no_pad {
                    out.push_str(&v.to_string());
                } else if pad == '0' {
                    out.push_str(&format!("{v:0width$}"));
                } else {
                    out.push_str(&format!("{v:>width$}"));
                }
            };
            let hour12 = match self.hour % 12 {
                0 => 12,
                h => h,
            };
            match d {
                'Y' => out.push_str(&self.year.to_string()),
                'y' => num(&mut out, self.year.rem_euclid(100), 2, '0'),
                'C' => num(&mut out, self.year.div_euclid(100), 2, '0'),
                'm' => num(&mut out, i64::from(self.month), 2, '0'),
                'd' => num(&mut out, i64::from(self.day), 2, '0'),
                'e' => num(&mut out, i64::from(self.day), 2, ' '),
                'j' => num(&mut out, i64::from(self.day_of_year), 3, '0'),
                'B' => out.push_str(MONTHS[self.month as usize - 1]),
                'b' | 'h' => out.push_str(&MONTHS[self.month as usize - 1][..3]),
                'A' => out.push_str(WEEKDAYS[self.weekday as usize]),
                'a' => out.push_str(&WEEKDAYS[self.weekday as usize][..3]),
                'u' => out.push_str(&(self.weekday + 1).to_string()),
                'w' => out.push_str(&((self.weekday + 1) % 7).to_string()),
                'H' => num(&mut out, i64::from(self.hour), 2, '0'),
                'k' => num(&mut out, i64::from(self.hour), 2, ' '),
                'I' => num(&mut out, i64::from(hour12), 2, '0'),
                'l' => num(&mut out, i64::from(hour12), 2, ' '),
                'M' => num(&mut out, i64::from(self.minute), 2, '0'),
                'S' => num(&mut out, i64::from(self.second), 2, '0'),
                'p' => out.push_str(if self.hour < 12 { "AM" } else { "PM" }),
                'F' => out.push_str(&self.strftime("%Y-%m-%d")),
                'T' => out.push_str(&self.strftime("%H:%M:%S")),
                'D' => out.push_str(&self.strftime("%m/%d/%y")),
                'R' => out.push_str(&self.strftime("%H:%M")),
                'Z' => out.push_str("UTC"),
                'z' => out.push_str("+0000"),
                'n' => out.push('\n'),
                't' => out.push('\t'),
                '%' => out.push('%'),
                other => {
                    out.push('%');
                    if no_pad {
                        out.push('-');
                    }
                    out.push(other);
                }
            }
        }
        out
    }
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (the classic era-based algorithm: 400-year eras of 146097 days).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365], year starting in March
    let mp = (5 * doy + 2) / 153; // [0, 11], March = 0
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Inverse of [`civil_from_days`].
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = year - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        // 2024-07-26T14:03:09Z, a Friday.
        let t = DateTime::from_unix(1_722_002_589);
        assert_eq!(
            (t.year, t.month, t.day, t.hour, t.minute, t.second, t.weekday),
            (2024, 7, 26, 14, 3, 9, 4)
        );
        assert_eq!(t.strftime("%d %b %Y"), "26 Jul 2024");
        assert_eq!(
            t.strftime("%A, %B %e, %Y %H:%M:%S"),
            "Friday, July 26, 2024 14:03:09"
        );
        assert_eq!(
            t.strftime("%a %I %p %j %y %F %T %%"),
            "Fri 02 PM 208 24 2024-07-26 14:03:09 %"
        );
        let t = DateTime::from_unix(0);
        assert_eq!(t.strftime("%Y-%m-%d %A"), "1970-01-01 Thursday");
        assert_eq!(t.strftime("%-d %-m %e|%q"), "1 1  1|%q");
        // Leap day and a date before the epoch.
        assert_eq!(
            DateTime::from_unix(951_782_400).strftime("%F %j"),
            "2000-02-29 060"
        );
        assert_eq!(
            DateTime::from_unix(-86_400).strftime("%F %A"),
            "1969-12-31 Wednesday"
        );
    }

    #[test]
    fn round_trip_days() {
        for d in (-800_000..800_000).step_by(997) {
            let (y, m, day) = civil_from_days(d);
            assert_eq!(days_from_civil(y, m, day), d);
        }
    }
}
