//! The sandboxed MiniJinja environment chat templates run in.

use std::borrow::Cow;
use std::fmt;

use minijinja::value::{from_args, ValueKind};
use minijinja::{Environment, Error, ErrorKind, Output, State, Value};

use crate::json;
use crate::time::DateTime;

/// The name the template is registered under (it appears in error messages).
pub(crate) const TEMPLATE_NAME: &str = "chat_template";

/// Recursion limit for the VM (macro calls, nested loops): real templates nest a handful of
/// levels; MiniJinja's own cap is 500.
const RECURSION_LIMIT: usize = 64;

/// Marker error attached (as `source`) to the error `raise_exception` returns, so the message
/// can be told apart from engine errors.
#[derive(Debug)]
pub(crate) struct RaisedException(pub String);

impl fmt::Display for RaisedException {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RaisedException {}

/// `raise_exception(message)`: aborts rendering with `message`.
fn raise_exception(message: Value) -> Result<Value, Error> {
    let message = match message.as_str() {
        Some(s) => s.to_string(),
        None => message.to_string(),
    };
    Err(Error::new(ErrorKind::InvalidOperation, message.clone())
        .with_source(RaisedException(message)))
}

/// `strftime_now(format)`: the current time (UTC, see [`crate::time`]).
fn strftime_now(format: &str) -> Result<Value, Error> {
    if format.len() > 256 {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            "strftime_now: format string is too long",
        ));
    }
    Ok(Value::from(DateTime::now_utc().strftime(format)))
}

/// Python string methods, from `minijinja-contrib`'s `pycompat`, with fixes where it differs
/// from Python or is unsafe: `count` (pycompat loops forever on an empty argument), `find` /
/// `rfind` (pycompat returns byte offsets; Python counts characters), `index` / `rindex`
/// (missing in pycompat), `split` with an empty separator (an error in Python).
fn python_methods(
    state: &State,
    value: &Value,
    method: &str,
    args: &[Value],
) -> Result<Value, Error> {
    if let Some(s) = value.as_str() {
        let chars_before = |byte: usize| s[..byte].chars().count() as i64;
        match method {
            "count" => {
                let (sub,): (&str,) = from_args(args)?;
                let n = if sub.is_empty() {
                    s.chars().count() + 1
                } else {
                    s.matches(sub).count()
                };
                return Ok(Value::from(n));
            }
            "find" | "rfind" | "index" | "rindex" => {
                let (sub,): (&str,) = from_args(args)?;
                let found = if method.starts_with('r') {
                    s.rfind(sub)
                } else {
                    s.find(sub)
                };
                return match found {
                    Some(byte) => Ok(Value::from(chars_before(byte))),
                    None if method.ends_with("find") => Ok(Value::from(-1)),
                    None => Err(Error::new(
                        ErrorKind::InvalidOperation,
                        "substring not found",
                    )),
                };
            }
            "split" if args.first().and_then(Value::as_str) == Some("") => {
                return Err(Error::new(ErrorKind::InvalidOperation, "empty separator"));
            }
            _ => {}
        }
    }
    minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args)
}

/// Prints values the way Jinja2 (Python) does where MiniJinja differs: `None`, `True`, `False`.
fn python_formatter(out: &mut Output, state: &State, value: &Value) -> Result<(), Error> {
    match value.kind() {
        ValueKind::None => fmt::Write::write_str(out, "None").map_err(Error::from),
        ValueKind::Bool => {
            fmt::Write::write_str(out, if value.is_true() { "True" } else { "False" })
                .map_err(Error::from)
        }
        _ => minijinja::escape_formatter(out, state, value),
    }
}

/// Makes HF's training-only `{% generation %}` / `{% endgeneration %}` tags (the
/// `AssistantTracker` extension of transformers) parse, as no-op `{% if true %}` / `{% endif %}`
/// blocks with the same whitespace-control modifiers and the same line count.
pub(crate) fn patch_generation_tags(source: &str) -> Cow<'_, str> {
    if !source.contains("generation") {
        return Cow::Borrowed(source);
    }
    let mut out = String::with_capacity(source.len() + 16);
    let mut rest = source;
    while let Some(pos) = rest.find("{%") {
        let (before, tag) = rest.split_at(pos);
        out.push_str(before);
        let body = &tag[2..];
        let modifier_len = usize::from(body.starts_with('-') || body.starts_with('+'));
        let after_mod = &body[modifier_len..];
        let trimmed = after_mod.trim_start();
        let ws_len = after_mod.len() - trimmed.len();
        let keyword = ["endgeneration", "generation"].into_iter().find(|kw| {
            trimmed.starts_with(kw) && {
                let tail = trimmed[kw.len()..].trim_start();
                tail.starts_with("%}") || tail.starts_with("-%}") || tail.starts_with("+%}")
            }
        });
        match keyword {
            Some(kw) => {
                out.push_str("{%");
                out.push_str(&body[..modifier_len + ws_len]);
                out.push_str(if kw == "generation" {
                    "if true"
                } else {
                    "endif"
                });
                rest = &trimmed[kw.len()..];
            }
            None => {
                out.push_str("{%");
                rest = body;
            }
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// Builds the environment templates are compiled and rendered in.
///
/// Configuration, following Hugging Face transformers (`ImmutableSandboxedEnvironment(
/// trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])`, `keep_trailing_newline`
/// left at Jinja2's default `False`):
/// * no loader and no registered templates (the chat template is compiled from a string per
///   render, never added to the environment): `include`, `import`, `extends` and `from` find
///   nothing and fail, so a template reads nothing but its context;
/// * Python string/dict/list methods from `minijinja-contrib`'s `pycompat`;
/// * `raise_exception`, `strftime_now` and a Python-compatible `tojson`;
/// * a recursion limit; fuel (instruction budget) is set per render by the caller.
pub(crate) fn build() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_keep_trailing_newline(false);
    env.set_recursion_limit(RECURSION_LIMIT);
    env.set_unknown_method_callback(python_methods);
    env.set_formatter(python_formatter);
    env.add_function("raise_exception", raise_exception);
    env.add_function("strftime_now", strftime_now);
    env.add_filter("tojson", json::tojson_filter);
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_tags_become_noop_blocks() {
        let src = "a{% generation %}b{%- endgeneration -%}c{% if x %}{% endif %}{{ generation }}";
        assert_eq!(
            patch_generation_tags(src),
            "a{% if true %}b{%- endif -%}c{% if x %}{% endif %}{{ generation }}"
        );
        assert_eq!(
            patch_generation_tags("{% set generation = 1 %}"),
            "{% set generation = 1 %}"
        );
    }
}
