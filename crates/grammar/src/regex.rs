//! A JSON schema `pattern` (an ECMA-262 regular expression) as the grammar of a JSON string's
//! contents, for the subset that grammars can express: literals, `.`, classes (`[a-z]`,
//! `[^...]`, `\d \w \s` and their negations), groups (`(...)`, `(?:...)`, `(?<name>...)`),
//! alternation, the quantifiers `* + ? {n} {n,} {n,m}` (lazy forms too), and `^` / `$` at the
//! start / end of a top-level alternative. Backreferences, lookaround, word boundaries, Unicode
//! properties and anchors elsewhere are unsupported (an error, not a silent mismatch).
//!
//! Patterns are unanchored in JSON schema: without `^` any text may come before the match,
//! without `$` any after. The characters the pattern matches are written as JSON requires
//! (`"` as `\"`, `\` as `\\`, control characters escaped).

use crate::ast::{Class, Expr, MAX_CHAR};
use crate::json::string_char;
use crate::MAX_REPEAT;

/// ECMA-262 `\s`: white space and line terminators.
const SPACE: &[(u32, u32)] = &[
    (0x09, 0x0D),
    (0x20, 0x20),
    (0xA0, 0xA0),
    (0x1680, 0x1680),
    (0x2000, 0x200A),
    (0x2028, 0x2029),
    (0x202F, 0x202F),
    (0x205F, 0x205F),
    (0x3000, 0x3000),
    (0xFEFF, 0xFEFF),
];
const DIGIT: &[(u32, u32)] = &[(0x30, 0x39)];
const WORD: &[(u32, u32)] = &[(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)];
/// What `.` does not match: line terminators.
const LINE_ENDS: &[(u32, u32)] = &[(0x0A, 0x0A), (0x0D, 0x0D), (0x2028, 0x2029)];

/// The contents (between the quotes) of the JSON strings that `pattern` matches somewhere in.
/// The error is the reason the pattern is not supported.
pub(crate) fn pattern(pattern: &str) -> Result<Expr, String> {
    let mut p = Parser {
        chars: pattern.chars().collect(),
        pos: 0,
        depth: 0,
    };
    let mut alts = Vec::new();
    loop {
        let start = p.eat('^');
        let body = p.concat()?;
        let end = p.eat('$');
        let mut seq = Vec::new();
        if !start {
            seq.push(Expr::star(string_char()));
        }
        seq.push(body);
        if !end {
            seq.push(Expr::star(string_char()));
        }
        alts.push(Expr::seq(seq));
        match p.peek() {
            None => break,
            Some('|') => p.pos += 1,
            Some(c) => return Err(format!("unexpected `{c}` at offset {}", p.pos)),
        }
    }
    Ok(Expr::alt(alts))
}

struct Parser {
    chars: Vec<char>,
    pos: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn eat(&mut self, c: char) -> bool {
        let yes = self.peek() == Some(c);
        if yes {
            self.pos += 1;
        }
        yes
    }

    fn alternation(&mut self) -> Result<Expr, String> {
        let mut alts = vec![self.concat()?];
        while self.eat('|') {
            alts.push(self.concat()?);
        }
        Ok(Expr::alt(alts))
    }

    fn concat(&mut self) -> Result<Expr, String> {
        let mut items = Vec::new();
        loop {
            let atom = match self.peek() {
                None | Some('|') | Some(')') => break,
                Some('$')
                    if self.depth == 0
                        && matches!(self.chars.get(self.pos + 1), None | Some('|')) =>
                {
                    break
                }
                Some('^') | Some('$') => {
                    return Err(
                        "`^` and `$` are supported only at the start and end of the pattern".into(),
                    )
                }
                Some(_) => self.atom()?,
            };
            items.push(self.quantified(atom)?);
        }
        Ok(Expr::seq(items))
    }

    fn quantified(&mut self, atom: Expr) -> Result<Expr, String> {
        let Some((min, max)) = self.quantifier()? else {
            return Ok(atom);
        };
        // Lazy (`*?`) and possessive (`*+`) forms match the same strings.
        if !self.eat('?') {
            self.eat('+');
        }
        let at = self.pos;
        if self.quantifier()?.is_some() {
            self.pos = at;
            return Err("a quantifier right after a quantifier".into());
        }
        Ok(Expr::repeat(atom, min, max))
    }

    /// A quantifier here (the position moved past it), if any.
    fn quantifier(&mut self) -> Result<Option<(u32, Option<u32>)>, String> {
        let q = match self.peek() {
            Some('*') => (0, None),
            Some('+') => (1, None),
            Some('?') => (0, Some(1)),
            Some('{') => return self.braces().transpose(),
            _ => return Ok(None),
        };
        self.pos += 1;
        Ok(Some(q))
    }

    /// `{n}`, `{n,}`, `{n,m}`; `None` (a literal `{`) when it is not a quantifier. On success
    /// the position is past the `}`.
    #[allow(clippy::type_complexity)]
    fn braces(&mut self) -> Option<Result<(u32, Option<u32>), String>> {
        let rest: String = self.chars[self.pos..].iter().collect();
        let end = rest.find('}')?;
        let inner = &rest[1..end];
        let (a, b) = match inner.split_once(',') {
            Some((a, b)) => (a, Some(b)),
            None => (inner, None),
        };
        if a.is_empty() || !a.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
        if b.is_some_and(|b| !b.chars().all(|c| c.is_ascii_digit())) {
            return None;
        }
        let num = |s: &str| s.parse::<u64>().unwrap_or(u64::MAX);
        let min = num(a);
        let max = match b {
            None => Some(min),
            Some("") => None,
            Some(b) => Some(num(b)),
        };
        self.pos += rest[..=end].chars().count();
        if min > MAX_REPEAT as u64 || max.is_some_and(|m| m > MAX_REPEAT as u64) {
            return Some(Err(format!("a repetition count above {MAX_REPEAT}")));
        }
        if max.is_some_and(|m| m < min) {
            return Some(Err(format!(
                "the repetition {{{inner}}} has its bounds reversed"
            )));
        }
        Some(Ok((min as u32, max.map(|m| m as u32))))
    }

    fn atom(&mut self) -> Result<Expr, String> {
        let c = self.peek().expect("caller checked");
        self.pos += 1;
        match c {
            '(' => {
                if self.eat('?') {
                    if self.eat(':') {
                    } else if self.peek() == Some('<')
                        && !matches!(self.chars.get(self.pos + 1), Some('=' | '!'))
                        || self.peek() == Some('P') && self.chars.get(self.pos + 1) == Some(&'<')
                    {
                        // A named group.
                        while let Some(c) = self.peek() {
                            self.pos += 1;
                            if c == '>' {
                                break;
                            }
                        }
                    } else {
                        return Err("lookaround and inline flags `(?...)` are not supported".into());
                    }
                }
                self.depth += 1;
                if self.depth > 50 {
                    return Err("groups nested more than 50 deep".into());
                }
                let e = self.alternation()?;
                self.depth -= 1;
                if !self.eat(')') {
                    return Err("a `(` without its `)`".into());
                }
                Ok(e)
            }
            '[' => self.class(),
            '.' => Ok(chars(&Class::not(LINE_ENDS).normalized())),
            '\\' => {
                let e = self.escape(false)?;
                Ok(match e {
                    Esc::Char(c) => chars(&[(c, c)]),
                    Esc::Set(ranges, negated) => chars(&Class { ranges, negated }.normalized()),
                })
            }
            '*' | '+' | '?' => Err(format!("a quantifier `{c}` with nothing to repeat")),
            ')' => Err("a `)` without its `(`".into()),
            c => Ok(chars(&[(c as u32, c as u32)])),
        }
    }

    fn class(&mut self) -> Result<Expr, String> {
        let negated = self.eat('^');
        let mut ranges: Vec<(u32, u32)> = Vec::new();
        loop {
            let Some(c) = self.peek() else {
                return Err("a `[` without its `]`".into());
            };
            self.pos += 1;
            if c == ']' {
                break;
            }
            let lo = match c {
                '\\' => match self.escape(true)? {
                    Esc::Char(c) => c,
                    Esc::Set(set, neg) => {
                        ranges.extend(
                            Class {
                                ranges: set,
                                negated: neg,
                            }
                            .normalized(),
                        );
                        continue;
                    }
                },
                c => c as u32,
            };
            let hi = if self.peek() == Some('-')
                && self.chars.get(self.pos + 1).is_some_and(|&c| c != ']')
            {
                self.pos += 1;
                let c = self.peek().expect("checked");
                self.pos += 1;
                match c {
                    '\\' => match self.escape(true)? {
                        Esc::Char(c) => c,
                        Esc::Set(..) => return Err("a class escape as a range end".into()),
                    },
                    c => c as u32,
                }
            } else {
                lo
            };
            if hi < lo {
                return Err("a character range out of order".into());
            }
            ranges.push((lo, hi));
        }
        Ok(chars(&Class { ranges, negated }.normalized()))
    }

    /// After a `\`.
    fn escape(&mut self, in_class: bool) -> Result<Esc, String> {
        let Some(c) = self.peek() else {
            return Err("a `\\` at the end".into());
        };
        self.pos += 1;
        let hex = |p: &mut Parser, n: usize| -> Result<u32, String> {
            let s: String = p
                .chars
                .get(p.pos..p.pos + n)
                .unwrap_or_default()
                .iter()
                .collect();
            if s.len() != n || !s.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(format!("{n} hexadecimal digits after the escape"));
            }
            p.pos += n;
            Ok(u32::from_str_radix(&s, 16).unwrap_or(0))
        };
        Ok(match c {
            'd' => Esc::Set(DIGIT.to_vec(), false),
            'D' => Esc::Set(DIGIT.to_vec(), true),
            'w' => Esc::Set(WORD.to_vec(), false),
            'W' => Esc::Set(WORD.to_vec(), true),
            's' => Esc::Set(SPACE.to_vec(), false),
            'S' => Esc::Set(SPACE.to_vec(), true),
            'n' => Esc::Char(0x0A),
            'r' => Esc::Char(0x0D),
            't' => Esc::Char(0x09),
            'f' => Esc::Char(0x0C),
            'v' => Esc::Char(0x0B),
            '0' if !self.peek().is_some_and(|c| c.is_ascii_digit()) => Esc::Char(0),
            'b' if in_class => Esc::Char(0x08),
            'x' => Esc::Char(hex(self, 2)?),
            'u' if self.peek() == Some('{') => {
                let rest: String = self.chars[self.pos..].iter().collect();
                let end = rest.find('}').ok_or("a `\\u{` without its `}`")?;
                let v = u32::from_str_radix(&rest[1..end], 16)
                    .map_err(|_| "a bad `\\u{...}` escape")?;
                self.pos += rest[..=end].chars().count();
                if v > MAX_CHAR {
                    return Err("a `\\u{...}` escape beyond U+10FFFF".into());
                }
                Esc::Char(v)
            }
            'u' => Esc::Char(hex(self, 4)?),
            'b' | 'B' => return Err("word boundaries `\\b` `\\B` are not supported".into()),
            'p' | 'P' => return Err("Unicode property classes `\\p{...}` are not supported".into()),
            'c' => return Err("control escapes `\\cX` are not supported".into()),
            '1'..='9' => return Err("backreferences are not supported".into()),
            'k' => return Err("named backreferences are not supported".into()),
            c if c.is_ascii_alphanumeric() => {
                return Err(format!("the escape `\\{c}` is not supported"))
            }
            c => Esc::Char(c as u32),
        })
    }
}

enum Esc {
    Char(u32),
    Set(Vec<(u32, u32)>, bool),
}

/// One of the characters `ranges` (normalised), as written in a JSON string: the ones that
/// need no escape as a class, the others (control characters, `"`, `\`) as their escapes.
fn chars(ranges: &[(u32, u32)]) -> Expr {
    let contains = |c: u32| ranges.iter().any(|&(a, b)| a <= c && c <= b);
    let mut plain = Vec::new();
    for &(a, b) in ranges {
        let mut lo = a.max(0x20);
        for ex in [0x22, 0x5C] {
            if lo <= ex && ex <= b {
                if lo < ex {
                    plain.push((lo, ex - 1));
                }
                lo = ex + 1;
            }
        }
        if lo <= b {
            plain.push((lo, b));
        }
    }
    let mut alts = Vec::new();
    if !plain.is_empty() {
        alts.push(Expr::Class(Class::of(&plain)));
    }
    for c in (0..0x20).chain([0x22, 0x5C]).filter(|&c| contains(c)) {
        let text = serde_json::to_string(&char::from_u32(c).unwrap_or('\0').to_string())
            .unwrap_or_default();
        alts.push(Expr::Lit(text[1..text.len() - 1].to_string()));
    }
    if alts.is_empty() {
        // Matches nothing.
        return Expr::Class(Class::of(&[]));
    }
    Expr::alt(alts)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Random patterns made of regex pieces never panic the converter.
    #[test]
    fn random_patterns_never_panic() {
        let pieces = [
            "a", "\\d", "[", "]", "^", "$", "(", ")", "(?:", "|", "*", "+", "?", "{", "}", "2",
            ",", ".", "\\", "\\u00e9", "é", "-", "\\s", "\\W", "\"", "[^", "{1,3}", "\\x4",
        ];
        let mut state = 0x0bad_cafe_dead_beefu64;
        let mut next = |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        let mut ok = 0;
        for _ in 0..20_000 {
            let p: String = (0..1 + next(10))
                .map(|_| pieces[next(pieces.len())])
                .collect();
            ok += pattern(&p).is_ok() as usize;
        }
        assert!(ok > 1000, "{ok}");
    }
}
