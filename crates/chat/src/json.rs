//! The `tojson` filter, written to give the same text as Python's
//! `json.dumps(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)`, which is
//! what Hugging Face transformers installs as `tojson` for chat templates.
//!
//! Python's defaults are matched exactly:
//! * item separator `", "` and key separator `": "` without `indent`, `","` and `": "` with it;
//! * non-ASCII text is written as is (`ensure_ascii=False`), control characters as `\n`, `\t`,
//!   `\u001b`, ...; no HTML escaping (Jinja2's and MiniJinja's own `tojson` escape `<`, `>`, `&`,
//!   `'`; real templates expect the Python form);
//! * keys keep their insertion order unless `sort_keys=true`;
//! * floats use Python's `repr` (`1e-05`, `1e+16`, `0.1`, `3.0`), non-finite floats `NaN`,
//!   `Infinity`, `-Infinity`.
//!
//! Keyword arguments accepted: `indent` (integer or string), `ensure_ascii`, `separators`
//! (a two-item list) and `sort_keys`. Undefined values are an error, as in Python.

use minijinja::value::{Kwargs, ValueKind};
use minijinja::{Error, ErrorKind, Value};

/// Deepest nesting `tojson` follows before giving up (Python's default recursion limit is ~1000;
/// template data is shallow, and this keeps the Rust stack safe).
const MAX_DEPTH: usize = 128;
/// Largest `indent` accepted: a template must not be able to blow up the output through it.
const MAX_INDENT: usize = 256;

/// Options of one `tojson` call.
#[derive(Clone, Debug)]
pub(crate) struct JsonOptions {
    /// `None`: single line. `Some(s)`: newline plus `s` repeated per level.
    pub indent: Option<String>,
    pub ensure_ascii: bool,
    pub item_sep: String,
    pub key_sep: String,
    pub sort_keys: bool,
}

impl Default for JsonOptions {
    fn default() -> Self {
        JsonOptions {
            indent: None,
            ensure_ascii: false,
            item_sep: ", ".into(),
            key_sep: ": ".into(),
            sort_keys: false,
        }
    }
}

/// The filter as registered in the environment.
pub(crate) fn tojson_filter(value: &Value, kwargs: Kwargs) -> Result<Value, Error> {
    let mut opts = JsonOptions::default();
    if let Some(indent) = kwargs.get::<Option<Value>>("indent")? {
        opts.indent = match indent.kind() {
            ValueKind::None | ValueKind::Undefined => None,
            ValueKind::String => Some(indent.as_str().unwrap_or_default().to_string()),
            ValueKind::Number => {
                let n = indent.as_i64().ok_or_else(|| {
                    Error::new(
                        ErrorKind::InvalidOperation,
                        "tojson: indent must be an integer",
                    )
                })?;
                let n = usize::try_from(n.max(0)).unwrap_or(0);
                if n > MAX_INDENT {
                    return Err(Error::new(
                        ErrorKind::InvalidOperation,
                        format!("tojson: indent {n} is larger than {MAX_INDENT}"),
                    ));
                }
                Some(" ".repeat(n))
            }
            _ => {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    "tojson: indent must be an integer or a string",
                ))
            }
        };
        if opts.indent.as_ref().is_some_and(|s| s.len() > MAX_INDENT) {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                "tojson: indent string is too long",
            ));
        }
        if opts.indent.is_some() {
            opts.item_sep = ",".into();
        }
    }
    if let Some(ensure_ascii) = kwargs.get::<Option<bool>>("ensure_ascii")? {
        opts.ensure_ascii = ensure_ascii;
    }
    if let Some(sort_keys) = kwargs.get::<Option<bool>>("sort_keys")? {
        opts.sort_keys = sort_keys;
    }
    if let Some(seps) = kwargs.get::<Option<Value>>("separators")? {
        if !seps.is_none() {
            let items: Vec<Value> = seps.try_iter()?.collect();
            match items.as_slice() {
                [a, b] if a.as_str().is_some() && b.as_str().is_some() => {
                    opts.item_sep = a.as_str().unwrap_or_default().to_string();
                    opts.key_sep = b.as_str().unwrap_or_default().to_string();
                }
                _ => {
                    return Err(Error::new(
                        ErrorKind::InvalidOperation,
                        "tojson: separators must be a pair of strings",
                    ))
                }
            }
        }
    }
    kwargs.assert_all_used()?;
    Ok(Value::from(to_json(value, &opts)?))
}

/// Serialises `value` the way Python's `json.dumps` does with `opts`.
pub(crate) fn to_json(value: &Value, opts: &JsonOptions) -> Result<String, Error> {
    let mut out = String::new();
    write_value(&mut out, value, opts, 0)?;
    Ok(out)
}

fn newline_indent(out: &mut String, opts: &JsonOptions, level: usize) {
    if let Some(indent) = &opts.indent {
        out.push('\n');
        for _ in 0..level {
            out.push_str(indent);
        }
    }
}

fn write_value(
    out: &mut String,
    value: &Value,
    opts: &JsonOptions,
    depth: usize,
) -> Result<(), Error> {
    if depth > MAX_DEPTH {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            "tojson: value is nested too deeply",
        ));
    }
    match value.kind() {
        ValueKind::Undefined => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                "tojson: Object of type Undefined is not JSON serializable",
            ))
        }
        ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
        ValueKind::Number => write_number(out, value)?,
        ValueKind::String => {
            write_string(out, value.as_str().unwrap_or_default(), opts.ensure_ascii)
        }
        ValueKind::Bytes => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                "tojson: Object of type bytes is not JSON serializable",
            ))
        }
        ValueKind::Map => {
            let mut entries = Vec::new();
            for key in value.try_iter()? {
                let item = value.get_item(&key)?;
                entries.push((key_string(&key)?, item));
            }
            if opts.sort_keys {
                entries.sort_by(|a, b| a.0.cmp(&b.0));
            }
            if entries.is_empty() {
                out.push_str("{}");
                return Ok(());
            }
            out.push('{');
            for (i, (key, item)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push_str(&opts.item_sep);
                }
                newline_indent(out, opts, depth + 1);
                write_string(out, key, opts.ensure_ascii);
                out.push_str(&opts.key_sep);
                write_value(out, item, opts, depth + 1)?;
            }
            newline_indent(out, opts, depth);
            out.push('}');
        }
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = value.try_iter()?.collect();
            if items.is_empty() {
                out.push_str("[]");
                return Ok(());
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(&opts.item_sep);
                }
                newline_indent(out, opts, depth + 1);
                write_value(out, item, opts, depth + 1)?;
            }
            newline_indent(out, opts, depth);
            out.push(']');
        }
        ValueKind::Plain | ValueKind::Invalid | _ => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                format!(
                    "tojson: value of kind {} is not JSON serializable",
                    value.kind()
                ),
            ))
        }
    }
    Ok(())
}

/// Python turns str, int, float, bool and None keys into strings; others are a TypeError.
fn key_string(key: &Value) -> Result<String, Error> {
    Ok(match key.kind() {
        ValueKind::String => key.as_str().unwrap_or_default().to_string(),
        ValueKind::None => "null".into(),
        ValueKind::Bool => (if key.is_true() { "true" } else { "false" }).into(),
        ValueKind::Number => {
            let mut s = String::new();
            write_number(&mut s, key)?;
            s
        }
        kind => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("tojson: keys must be str, int, float, bool or None, not {kind}"),
            ))
        }
    })
}

fn write_number(out: &mut String, value: &Value) -> Result<(), Error> {
    if value.is_integer() {
        let n = i128::try_from(value.clone())?;
        out.push_str(&n.to_string());
    } else {
        let f = f64::try_from(value.clone())?;
        out.push_str(&python_float_repr(f));
    }
    Ok(())
}

/// Python's `repr(float)` (and so `json.dumps` for floats): the shortest digits that round-trip,
/// in fixed notation when the decimal exponent is in `-4..16`, else scientific with a signed,
/// at-least-two-digit exponent.
pub(crate) fn python_float_repr(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0.0" } else { "0.0" }.into();
    }
    // Rust's `{:e}` gives the shortest round-trip digits: "-1.2345e-7".
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(|c| c.is_ascii_digit()).collect();
    let n = digits.len() as i32;
    let mut s = String::new();
    if f.is_sign_negative() {
        s.push('-');
    }
    if (-4..16).contains(&exp) {
        // Fixed notation; the decimal point sits after `exp + 1` digits.
        let point = exp + 1;
        if point <= 0 {
            s.push_str("0.");
            for _ in 0..-point {
                s.push('0');
            }
            s.push_str(&digits);
        } else if point >= n {
            s.push_str(&digits);
            for _ in 0..point - n {
                s.push('0');
            }
            s.push_str(".0");
        } else {
            let (a, b) = digits.split_at(point as usize);
            s.push_str(a);
            s.push('.');
            s.push_str(b);
        }
    } else {
        s.push_str(&digits[..1]);
        if n > 1 {
            s.push('.');
            s.push_str(&digits[1..]);
        }
        s.push('e');
        s.push(if exp < 0 { '-' } else { '+' });
        s.push_str(&format!("{:02}", exp.abs()));
    }
    s
}

/// A JSON string literal as Python writes it.
fn write_string(out: &mut String, s: &str, ensure_ascii: bool) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => push_u_escape(out, c as u32),
            c if ensure_ascii && !(' '..='~').contains(&c) => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    push_u_escape(out, u32::from(*unit));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn push_u_escape(out: &mut String, unit: u32) {
    out.push_str(&format!("\\u{unit:04x}"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_repr_matches_python() {
        let cases = [
            (0.1, "0.1"),
            (1.0, "1.0"),
            (3.0, "3.0"),
            (-2.5, "-2.5"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (123456789012345678.0, "1.2345678901234568e+17"),
            (1.5e-7, "1.5e-07"),
            (1e100, "1e+100"),
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "Infinity"),
            (f64::NEG_INFINITY, "-Infinity"),
            (12345.678, "12345.678"),
        ];
        for (f, want) in cases {
            assert_eq!(python_float_repr(f), want, "{f}");
        }
    }

    #[test]
    fn strings_escape_like_python() {
        let opts = JsonOptions::default();
        let v = Value::from("a\"b\\c\nd\u{1}é😀<>&'");
        assert_eq!(
            to_json(&v, &opts).unwrap(),
            "\"a\\\"b\\\\c\\nd\\u0001é😀<>&'\""
        );
        let ascii = JsonOptions {
            ensure_ascii: true,
            ..JsonOptions::default()
        };
        assert_eq!(
            to_json(&Value::from("é😀\u{7f}"), &ascii).unwrap(),
            "\"\\u00e9\\ud83d\\ude00\\u007f\""
        );
    }
}
