//! Structured output: the grammar that constrains an answer ([`grammar::Grammar`], enforced while
//! sampling by the engine), from Ollama's `format` ([`ollama_format`]), OpenAI's
//! `response_format` ([`response_format`]), the `grammar` extension (GBNF, as llama.cpp's server
//! takes it: [`gbnf`]), and a `tool_choice` that requires a tool call ([`tool_call`]).
//!
//! A request may ask for one of them: [`one`] refuses two. A grammar that does not compile is the
//! client's to fix: a 400 with the compiler's reason (line and column, or the schema keyword and
//! its path).

use crate::error::{Result, ServerError};
use chat::tools::ToolFormat;
use grammar::Grammar;
use serde_json::{json, Value};
use std::sync::Arc;

/// A grammar and the request field it came from (for error messages).
pub struct Constraint {
    pub field: &'static str,
    pub grammar: Arc<Grammar>,
}

fn compiled(
    field: &'static str,
    g: std::result::Result<Grammar, grammar::GrammarError>,
) -> Result<Constraint> {
    g.map(|g| Constraint {
        field,
        grammar: Arc::new(g),
    })
    .map_err(|e| ServerError::BadRequest(format!("{field} cannot be enforced: {e}")))
}

/// Ollama's `format`: `"json"` (any JSON object) or a JSON schema; absent, null or `""` is none.
pub fn ollama_format(format: Option<&Value>) -> Result<Option<Constraint>> {
    match format {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) if s == "json" => compiled("format", Ok(Grammar::json())).map(Some),
        Some(schema @ Value::Object(_)) => {
            compiled("format", Grammar::from_json_schema(schema)).map(Some)
        }
        Some(other) => Err(ServerError::BadRequest(format!(
            "format {other} is not supported: use \"json\" or a JSON schema object"
        ))),
    }
}

/// OpenAI's `response_format`: `{"type": "text"}` (none), `{"type": "json_object"}` (any JSON
/// object) or `{"type": "json_schema", "json_schema": {"name", "schema", "strict"}}`. The
/// schema is enforced whether or not `strict` is set.
pub fn response_format(format: Option<&Value>) -> Result<Option<Constraint>> {
    let Some(format) = format.filter(|f| !f.is_null()) else {
        return Ok(None);
    };
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => compiled("response_format", Ok(Grammar::json())).map(Some),
        Some("json_schema") => {
            let schema = format
                .get("json_schema")
                .and_then(|s| s.get("schema"))
                .filter(|s| s.is_object())
                .ok_or_else(|| {
                    ServerError::BadRequest(
                        "response_format json_schema needs json_schema.schema, a JSON schema object"
                            .into(),
                    )
                })?;
            compiled("response_format", Grammar::from_json_schema(schema)).map(Some)
        }
        _ => Err(ServerError::BadRequest(format!(
            "response_format {format} is not supported: use {{\"type\": \"text\"}}, {{\"type\": \"json_object\"}} or {{\"type\": \"json_schema\", \"json_schema\": {{\"schema\": ...}}}}"
        ))),
    }
}

/// The `grammar` extension: a GBNF grammar (llama.cpp's syntax, `root` first); `""` is none.
pub fn gbnf(text: Option<&str>) -> Result<Option<Constraint>> {
    match text {
        None | Some("") => Ok(None),
        Some(t) => compiled("grammar", Grammar::parse(t)).map(Some),
    }
}

/// At most one of the constraints a request asked for.
pub fn one(all: impl IntoIterator<Item = Option<Constraint>>) -> Result<Option<Arc<Grammar>>> {
    let mut asked = all.into_iter().flatten();
    let first = asked.next();
    if let (Some(a), Some(b)) = (&first, asked.next()) {
        return Err(ServerError::BadRequest(format!(
            "{} and {} both constrain the answer: send one of them",
            a.field, b.field
        )));
    }
    Ok(first.map(|c| c.grammar))
}

/// The answer as one tool call in the model family's format, of the tool named `name` or of any
/// of `tools` (`[{"type": "function", "function": {"name", "parameters"}}]`), with arguments that
/// follow the tool's parameter schema. The call is written as the families' parsers read it at
/// the start of an answer: the bare JSON object (Hermes/Qwen, Llama 3) or a list of one
/// (Mistral).
pub fn tool_call(format: ToolFormat, tools: &[Value], name: Option<&str>) -> Result<Arc<Grammar>> {
    let arguments = match format {
        ToolFormat::Llama3 => "parameters",
        ToolFormat::Hermes | ToolFormat::Mistral => "arguments",
    };
    let calls: Vec<Value> = tools
        .iter()
        .map(|t| &t["function"])
        .filter(|f| name.is_none_or(|n| f["name"].as_str() == Some(n)))
        .map(|f| {
            let params = match &f["parameters"] {
                p @ Value::Object(_) => p.clone(),
                _ => json!({"type": "object"}),
            };
            json!({
                "type": "object",
                "properties": {"name": {"const": f["name"]}, arguments: params},
                "required": ["name", arguments],
                "additionalProperties": false,
            })
        })
        .collect();
    if calls.is_empty() {
        return Err(ServerError::BadRequest(
            "tool_choice requires a call but no tool matches it".into(),
        ));
    }
    let call = json!({"anyOf": calls});
    let schema = match format {
        ToolFormat::Mistral => {
            json!({"type": "array", "items": call, "minItems": 1, "maxItems": 1})
        }
        _ => call,
    };
    compiled("tool_choice", Grammar::from_json_schema(&schema)).map(|c| c.grammar)
}

#[cfg(test)]
mod tests {
    use super::*;
    use grammar::Matcher;

    fn accepts(g: &Arc<Grammar>, text: &str) -> bool {
        let mut m = Matcher::new(g.clone());
        m.advance(text.as_bytes()).is_ok() && m.can_end()
    }

    #[test]
    fn formats_compile_or_say_why() {
        let json = ollama_format(Some(&json!("json"))).unwrap().unwrap();
        assert!(accepts(&json.grammar, r#"{"a": 1}"#));
        assert!(ollama_format(Some(&json!(""))).unwrap().is_none());
        assert!(ollama_format(Some(&json!("yaml"))).is_err());
        let schema =
            json!({"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]});
        let s = ollama_format(Some(&schema)).unwrap().unwrap();
        assert!(accepts(&s.grammar, r#"{"n": 3}"#));
        assert!(!accepts(&s.grammar, r#"{"n": "3"}"#));

        let rf = json!({"type": "json_schema", "json_schema": {"name": "x", "schema": schema, "strict": true}});
        assert!(response_format(Some(&rf)).unwrap().is_some());
        assert!(response_format(Some(&json!({"type": "text"})))
            .unwrap()
            .is_none());
        let e = response_format(Some(&json!({"type": "json_schema"})))
            .err()
            .unwrap();
        assert!(e.to_string().contains("json_schema.schema"), "{e}");

        let e = gbnf(Some("root ::= missing")).err().unwrap();
        assert!(
            e.to_string().starts_with("grammar cannot be enforced"),
            "{e}"
        );
        let both = one([
            gbnf(Some(r#"root ::= "a""#)).unwrap(),
            ollama_format(Some(&json!("json"))).unwrap(),
        ]);
        assert!(both
            .err()
            .unwrap()
            .to_string()
            .contains("grammar and format"));
    }

    #[test]
    fn a_required_call_follows_the_family_and_the_tool_schema() {
        let tools = [
            json!({"type": "function", "function": {"name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}),
            json!({"type": "function", "function": {"name": "now"}}),
        ];
        let g = tool_call(ToolFormat::Hermes, &tools, None).unwrap();
        assert!(accepts(
            &g,
            r#"{"name": "get_weather", "arguments": {"city": "Paris"}}"#
        ));
        assert!(accepts(&g, r#"{"name": "now", "arguments": {}}"#));
        assert!(!accepts(&g, r#"{"name": "get_weather", "arguments": {}}"#));
        assert!(!accepts(&g, r#"{"name": "other", "arguments": {}}"#));
        let named = tool_call(ToolFormat::Llama3, &tools, Some("now")).unwrap();
        assert!(accepts(&named, r#"{"name": "now", "parameters": {}}"#));
        assert!(!accepts(
            &named,
            r#"{"name": "get_weather", "parameters": {"city": "Paris"}}"#
        ));
        let list = tool_call(ToolFormat::Mistral, &tools, None).unwrap();
        assert!(accepts(&list, r#"[{"name": "now", "arguments": {}}]"#));
        assert!(tool_call(ToolFormat::Hermes, &tools, Some("nope")).is_err());
    }
}
