//! Writing a [`Modelfile`] back as text (`hearth show --modelfile`), in a form that
//! [`Modelfile::parse`] reads back to the same values.

use serde_json::Value;
use std::fmt::Write as _;
use store::Modelfile;

/// The Modelfile's text: `FROM`, then `TEMPLATE`, `SYSTEM`, `PARAMETER` lines, `MESSAGE` lines
/// and `LICENSE`, as Ollama orders them.
pub fn render(m: &Modelfile) -> String {
    let mut out = String::new();
    let mut line = |keyword: &str, value: String| {
        writeln!(out, "{keyword} {value}").expect("writing to a String cannot fail");
    };
    line("FROM", quote(&m.from, true));
    if let Some(template) = &m.template {
        line("TEMPLATE", quote(template, false));
    }
    if let Some(system) = &m.system {
        line("SYSTEM", quote(system, false));
    }
    for (name, value) in &m.params {
        for value in values(value) {
            let text = match value {
                Value::String(s) => quote(s, true),
                other => other.to_string(),
            };
            line("PARAMETER", format!("{name} {text}"));
        }
    }
    for message in &m.messages {
        line(
            "MESSAGE",
            format!("{} {}", message.role, quote(&message.content, false)),
        );
    }
    for license in &m.license {
        line("LICENSE", quote(license, false));
    }
    out
}

/// A parameter's values: the items of a list (`stop`), else the one value.
pub fn values(value: &Value) -> &[Value] {
    match value {
        Value::Array(items) => items,
        one => std::slice::from_ref(one),
    }
}

/// A value that parses back to `text`: bare (when `bare` allows and the text survives the
/// trimming of a bare value), `"""…"""` (long texts, and the only form that spans lines), or
/// `"…"` with `\"` and `\\` escapes (one line that `"""` cannot hold).
fn quote(text: &str, bare: bool) -> String {
    let one_line = !text.contains('\n');
    if bare && one_line && !text.is_empty() && text.trim() == text && !text.starts_with('"') {
        return text.to_string();
    }
    // A closing `"""` is the first one after the opening, and a text ending in `"` would make
    // it ambiguous; such a text can only be written `"…"`, so only on one line.
    let triple_ok = !text.contains("\"\"\"") && !text.ends_with('"');
    if !one_line || (triple_ok && !bare) {
        format!("\"\"\"{text}\"\"\"")
    } else {
        format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use store::Message;

    #[test]
    fn rendered_modelfiles_parse_back_to_the_same_model() {
        let message = |role: &str, content: &str| Message {
            role: role.into(),
            content: content.into(),
        };
        let Value::Object(params) = json!({
            "temperature": 0.25,
            "num_ctx": 2048,
            "use_mmap": false,
            "stop": ["<|end|>", " spaced ", "\"quoted", "two\nlines", ""],
        }) else {
            unreachable!()
        };
        let m = Modelfile {
            from: "/store/blobs/sha256-0123".into(),
            params,
            template: Some("{% for m in messages %}{{ m.content }}\n{% endfor %}".into()),
            system: Some("Say \"\"\"hi\"\"\" \\ once.".into()),
            license: vec!["MIT".into(), "line one\nline two".into()],
            messages: vec![
                message("user", "Is it \"blue\"?"),
                message("assistant", "Yes."),
            ],
        };
        let text = render(&m);
        assert!(
            text.starts_with("FROM /store/blobs/sha256-0123\n"),
            "{text}"
        );
        assert!(text.contains("PARAMETER temperature 0.25\n"), "{text}");
        assert!(text.contains("PARAMETER stop <|end|>\n"), "{text}");
        assert_eq!(Modelfile::parse(&text).unwrap(), m, "{text}");
    }
}
