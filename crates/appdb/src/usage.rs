//! Token usage per user, model and UTC day, and server-wide settings.

use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};

use crate::error::invalid;
use crate::{Db, Result};

/// One user's tokens with one model on one day.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UsageRow {
    pub username: String,
    pub model: String,
    pub day: String,
    pub prompt_tokens: u64,
    pub generated_tokens: u64,
    pub requests: u64,
}

/// The UTC date `YYYY-MM-DD` of a Unix time.
pub fn utc_day(unix_seconds: i64) -> String {
    let (y, m, d) = civil_from_days(unix_seconds.div_euclid(86_400));
    format!("{y:04}-{m:02}-{d:02}")
}

/// The proleptic Gregorian date of a count of days since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`: shift to eras of 400 years starting on March 1st, so that the leap day
/// is the last day of a year).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March first
    let day = doy - (153 * mp + 2) / 5 + 1; // [1, 31]
    let month = if mp < 10 { mp + 3 } else { mp - 9 }; // [1, 12]
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month as u32, day as u32)
}

/// Checks that `day` looks like `YYYY-MM-DD`.
fn check_day(day: &str) -> Result<()> {
    let shape = day.len() == 10
        && day.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            _ => b.is_ascii_digit(),
        });
    if shape {
        Ok(())
    } else {
        Err(invalid(
            "usage day",
            format!("{day:?} is not a date YYYY-MM-DD (see utc_day)"),
        ))
    }
}

impl Db {
    /// Adds one request's tokens to the row of (`user_id`, `model`, `day`).
    pub fn record_usage(
        &self,
        user_id: i64,
        model: &str,
        day: &str,
        prompt_tokens: u64,
        generated_tokens: u64,
    ) -> Result<()> {
        check_day(day)?;
        self.conn().execute(
            "INSERT INTO usage (user_id, model, day, prompt_tokens, generated_tokens, requests)
             VALUES (?1, ?2, ?3, ?4, ?5, 1)
             ON CONFLICT (user_id, model, day) DO UPDATE SET
                 prompt_tokens = prompt_tokens + excluded.prompt_tokens,
                 generated_tokens = generated_tokens + excluded.generated_tokens,
                 requests = requests + 1",
            params![user_id, model, day, prompt_tokens, generated_tokens],
        )?;
        Ok(())
    }

    /// Usage rows of everyone (`None`) or of one user, newest day first.
    pub fn usage(&self, user_id: Option<i64>) -> Result<Vec<UsageRow>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT u.username, g.model, g.day, g.prompt_tokens, g.generated_tokens, g.requests
             FROM usage g JOIN users u ON u.id = g.user_id
             WHERE ?1 IS NULL OR g.user_id = ?1
             ORDER BY g.day DESC, u.username, g.model",
        )?;
        let rows = stmt
            .query_map([user_id], |row| {
                Ok(UsageRow {
                    username: row.get(0)?,
                    model: row.get(1)?,
                    day: row.get(2)?,
                    prompt_tokens: row.get(3)?,
                    generated_tokens: row.get(4)?,
                    requests: row.get(5)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    /// The server-wide setting `key`, if set.
    pub fn setting(&self, key: &str) -> Result<Option<String>> {
        Ok(self
            .conn()
            .query_row("SELECT value FROM settings WHERE key = ?1", [key], |row| {
                row.get(0)
            })
            .optional()?)
    }

    /// Sets the server-wide setting `key` to `value`.
    pub fn set_setting(&self, key: &str, value: &str) -> Result<()> {
        self.conn().execute(
            "INSERT INTO settings (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [key, value],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_days() {
        assert_eq!(utc_day(0), "1970-01-01");
        assert_eq!(utc_day(86_399), "1970-01-01");
        assert_eq!(utc_day(86_400), "1970-01-02");
        assert_eq!(utc_day(-1), "1969-12-31");
        assert_eq!(utc_day(951_782_400), "2000-02-29");
        assert_eq!(utc_day(951_868_800), "2000-03-01");
        assert_eq!(utc_day(1_795_219_200), "2026-11-21");
        assert_eq!(utc_day(4_107_542_400), "2100-03-01"); // 2100 is no leap year
        assert_eq!(utc_day(1_709_164_800), "2024-02-29");
    }

    #[test]
    fn days_are_checked() {
        check_day("2024-02-29").unwrap();
        for bad in ["2024-2-29", "20240229", "2024-02-29T", "abcd-ef-gh", ""] {
            assert!(check_day(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn settings_round_trip() {
        let db = Db::open_in_memory().unwrap();
        assert_eq!(db.setting("prices").unwrap(), None);
        db.set_setting("prices", "{}").unwrap();
        db.set_setting("prices", "{\"a\":1}").unwrap();
        assert_eq!(db.setting("prices").unwrap().as_deref(), Some("{\"a\":1}"));
    }
}
