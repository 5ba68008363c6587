//! The template's context, built with every untrusted string passed through a substitution, so
//! that the three renders of [`crate::spans`] see the same conversation with different texts.
//!
//! Untrusted strings are message contents, and the strings of tool definitions and tool calls
//! (names, descriptions, argument keys and values, ids). Contents always go through the
//! substitution. Of the others, *plain* strings — ASCII letters, digits, `_` and `-` only, the
//! same rule as for roles — are passed as they are: templates compare them (`tool.type ==
//! "function"`, `param.type == "string"`) and no control token is spelled that way. Every other
//! string is treated as a content: a description or an argument holding `<|im_start|>` ends up
//! inside a content span.

use serde_json::{Map, Value};

use crate::{Message, ToolCall};

/// Whether a tool string may be shown to the template outside content spans (see the module
/// docs).
pub(crate) fn is_plain(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Builds the `messages` and `tools` of the context, passing each untrusted string through `f`
/// in a fixed order (the same for every call with the same conversation).
pub(crate) fn build(
    messages: &[Message],
    tools: Option<&[Value]>,
    f: &mut dyn FnMut(&str) -> String,
) -> (Value, Value) {
    let messages = messages
        .iter()
        .map(|m| {
            let mut o = Map::new();
            o.insert("role".into(), Value::String(m.role.clone()));
            o.insert("content".into(), Value::String(f(&m.content)));
            if !m.tool_calls.is_empty() {
                let calls = m.tool_calls.iter().map(|c| call(c, f)).collect();
                o.insert("tool_calls".into(), Value::Array(calls));
            }
            if let Some(id) = &m.tool_call_id {
                o.insert("tool_call_id".into(), Value::String(string(id, f)));
            }
            if let Some(name) = &m.name {
                o.insert("name".into(), Value::String(string(name, f)));
            }
            Value::Object(o)
        })
        .collect();
    let tools = match tools {
        Some(tools) => Value::Array(tools.iter().map(|t| value(t, f)).collect()),
        None => Value::Null,
    };
    (Value::Array(messages), tools)
}

/// A call as Hugging Face transformers' templates expect it:
/// `{"type": "function", "id": ..., "function": {"name": ..., "arguments": {...}}}`.
fn call(c: &ToolCall, f: &mut dyn FnMut(&str) -> String) -> Value {
    let mut o = Map::new();
    o.insert("type".into(), Value::String("function".into()));
    if let Some(id) = &c.id {
        o.insert("id".into(), Value::String(string(id, f)));
    }
    let mut function = Map::new();
    function.insert("name".into(), Value::String(string(&c.name, f)));
    function.insert("arguments".into(), value(&c.arguments, f));
    o.insert("function".into(), Value::Object(function));
    Value::Object(o)
}

fn string(s: &str, f: &mut dyn FnMut(&str) -> String) -> String {
    if is_plain(s) {
        s.to_string()
    } else {
        f(s)
    }
}

/// `v` with its strings and object keys passed through [`string`].
fn value(v: &Value, f: &mut dyn FnMut(&str) -> String) -> Value {
    match v {
        Value::String(s) => Value::String(string(s, f)),
        Value::Array(items) => Value::Array(items.iter().map(|x| value(x, f)).collect()),
        Value::Object(o) => {
            Value::Object(o.iter().map(|(k, x)| (string(k, f), value(x, f))).collect())
        }
        other => other.clone(),
    }
}

/// Bytes of text a conversation brings (for the output limit).
pub(crate) fn input_bytes(messages: &[Message], tools: Option<&[Value]>) -> usize {
    fn size(v: &Value) -> usize {
        match v {
            Value::String(s) => s.len() + 2,
            Value::Array(items) => items.iter().map(size).sum::<usize>() + 2,
            Value::Object(o) => o.iter().map(|(k, x)| k.len() + 4 + size(x)).sum::<usize>() + 2,
            _ => 8,
        }
    }
    let calls = |m: &Message| -> usize {
        m.tool_calls
            .iter()
            .map(|c| c.name.len() + c.id.as_ref().map_or(0, String::len) + size(&c.arguments))
            .sum()
    };
    messages
        .iter()
        .map(|m| {
            m.role.len()
                + m.content.len()
                + calls(m)
                + m.tool_call_id.as_ref().map_or(0, String::len)
                + m.name.as_ref().map_or(0, String::len)
        })
        .sum::<usize>()
        + tools.map_or(0, |t| t.iter().map(size).sum())
}
