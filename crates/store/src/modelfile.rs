//! Modelfiles: `FROM`, `PARAMETER`, `TEMPLATE`, `SYSTEM`, `MESSAGE` and `LICENSE`, with values
//! on the rest of the line, in `"double quotes"`, or in `"""triple quotes"""` spanning lines.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::error::{Result, StoreError};
use crate::name::ModelName;
use crate::store::{home_dir, Message};

/// The type a `PARAMETER` value must have.
#[derive(Clone, Copy)]
enum Kind {
    Int,
    Float,
    Bool,
    /// May repeat; the values collect into an array.
    Strings,
}

/// The options a Modelfile may set, with their types: Ollama's runtime options plus the legacy
/// ones it still accepts (stored, so Modelfiles written for Ollama import unchanged).
const PARAMETERS: &[(&str, Kind)] = &[
    ("num_ctx", Kind::Int),
    ("num_predict", Kind::Int),
    ("num_keep", Kind::Int),
    ("num_batch", Kind::Int),
    ("num_gpu", Kind::Int),
    ("main_gpu", Kind::Int),
    ("num_thread", Kind::Int),
    ("seed", Kind::Int),
    ("top_k", Kind::Int),
    ("repeat_last_n", Kind::Int),
    ("draft_num_predict", Kind::Int),
    ("mirostat", Kind::Int),
    ("temperature", Kind::Float),
    ("top_p", Kind::Float),
    ("min_p", Kind::Float),
    ("typical_p", Kind::Float),
    ("repeat_penalty", Kind::Float),
    ("presence_penalty", Kind::Float),
    ("frequency_penalty", Kind::Float),
    ("mirostat_eta", Kind::Float),
    ("mirostat_tau", Kind::Float),
    ("tfs_z", Kind::Float),
    ("use_mmap", Kind::Bool),
    ("use_mlock", Kind::Bool),
    ("numa", Kind::Bool),
    ("low_vram", Kind::Bool),
    ("vocab_only", Kind::Bool),
    ("penalize_newline", Kind::Bool),
    ("stop", Kind::Strings),
];

/// What a Modelfile's `FROM` names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Base {
    /// A .gguf file to import.
    File(PathBuf),
    /// A model already in the store.
    Model(ModelName),
}

/// A parsed Modelfile. [`crate::Store::create`] turns it into a model.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Modelfile {
    /// The `FROM` value: a .gguf path or a model name (see [`Modelfile::base`]).
    pub from: String,
    /// `PARAMETER` lines, typed (`stop` collects into an array).
    pub params: Map<String, Value>,
    /// `TEMPLATE`.
    pub template: Option<String>,
    /// `SYSTEM`.
    pub system: Option<String>,
    /// `LICENSE` (may repeat).
    pub license: Vec<String>,
    /// `MESSAGE` lines, in order.
    pub messages: Vec<Message>,
}

impl Modelfile {
    /// Parses a Modelfile. Instructions are case-insensitive; `#` starts a comment line.
    pub fn parse(text: &str) -> Result<Modelfile> {
        let mut c = Cursor {
            text,
            pos: 0,
            line: 1,
        };
        let mut m = Modelfile::default();
        let mut from_line = None;
        loop {
            c.skip_while(char::is_whitespace);
            let Some(first) = c.peek() else { break };
            let line = c.line;
            let err = |message: String| StoreError::Modelfile { line, message };
            if first == '#' {
                c.rest_of_line();
                continue;
            }
            let keyword = c.take_while(|ch| !ch.is_whitespace());
            match keyword.to_ascii_lowercase().as_str() {
                "from" => {
                    if let Some(first) = from_line {
                        return Err(err(format!("a second FROM (the first is on line {first}); a model has one base")));
                    }
                    from_line = Some(line);
                    m.from = c.value()?;
                }
                "parameter" => {
                    let name = c.word("a parameter name")?;
                    let raw = c.value()?;
                    add_parameter(&mut m.params, &name, &raw).map_err(err)?;
                }
                "template" => m.template = Some(c.value()?),
                "system" => m.system = Some(c.value()?),
                "license" => m.license.push(c.value()?),
                "message" => {
                    let role = c.word("a role")?.to_ascii_lowercase();
                    if !matches!(role.as_str(), "system" | "user" | "assistant") {
                        return Err(err(format!("MESSAGE role {role:?} is not system, user or assistant")));
                    }
                    m.messages.push(Message { role, content: c.value()? });
                }
                "adapter" | "requires" | "draft" | "renderer" | "parser" => {
                    return Err(err(format!("{} is not supported by Hearth yet; remove the line", keyword.to_ascii_uppercase())));
                }
                _ => {
                    return Err(err(format!(
                        "unknown instruction {keyword:?}; use FROM, PARAMETER, TEMPLATE, SYSTEM, MESSAGE or LICENSE"
                    )))
                }
            }
        }
        if from_line.is_none() {
            return Err(StoreError::Modelfile {
                line: c.line,
                message: "there is no FROM line; add FROM with a .gguf path or a model name".into(),
            });
        }
        Ok(m)
    }

    /// What `FROM` names. A value that starts with `/`, `./`, `../` or `~`, that ends in `.gguf`
    /// without a tag, or that names an existing file is a path, relative to `dir` (the
    /// Modelfile's directory); anything else is a model name.
    pub fn base(&self, dir: &Path) -> Result<Base> {
        let value = self.from.as_str();
        let path = match value.strip_prefix("~/") {
            Some(rest) => home_dir().ok_or(StoreError::NoHome)?.join(rest),
            None => dir.join(value),
        };
        let pathlike =
            value.starts_with(['/', '~']) || value.starts_with("./") || value.starts_with("../");
        let gguf_file = value.to_ascii_lowercase().ends_with(".gguf") && !value.contains(':');
        if pathlike || gguf_file || path.is_file() {
            Ok(Base::File(path))
        } else {
            ModelName::parse(value).map(Base::Model)
        }
    }
}

/// Adds one typed `PARAMETER`.
fn add_parameter(
    params: &mut Map<String, Value>,
    name: &str,
    raw: &str,
) -> std::result::Result<(), String> {
    let Some(&(_, kind)) = PARAMETERS.iter().find(|(n, _)| *n == name) else {
        let known: Vec<&str> = PARAMETERS.iter().map(|(n, _)| *n).collect();
        return Err(format!(
            "unknown parameter {name:?}; known parameters: {}",
            known.join(", ")
        ));
    };
    let bad = |what: &str| format!("PARAMETER {name} needs {what}, not {raw:?}");
    let value = match kind {
        Kind::Int => Value::from(raw.parse::<i64>().map_err(|_| bad("an integer"))?),
        Kind::Float => {
            let x = raw
                .parse::<f64>()
                .ok()
                .filter(|x| x.is_finite())
                .ok_or_else(|| bad("a number"))?;
            Value::from(x)
        }
        Kind::Bool => match raw.to_ascii_lowercase().as_str() {
            "true" | "1" => Value::Bool(true),
            "false" | "0" => Value::Bool(false),
            _ => return Err(bad("true or false")),
        },
        Kind::Strings => {
            let list = params
                .entry(name)
                .or_insert_with(|| Value::Array(Vec::new()));
            list.as_array_mut()
                .expect("string parameters are arrays")
                .push(Value::from(raw));
            return Ok(());
        }
    };
    params.insert(name.to_string(), value);
    Ok(())
}

/// A position in the Modelfile text, with its line number for errors.
struct Cursor<'a> {
    text: &'a str,
    pos: usize,
    line: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<char> {
        self.text[self.pos..].chars().next()
    }

    fn take_while(&mut self, keep: impl Fn(char) -> bool) -> &'a str {
        let start = self.pos;
        while let Some(ch) = self.peek().filter(|&ch| keep(ch)) {
            self.pos += ch.len_utf8();
            self.line += usize::from(ch == '\n');
        }
        &self.text[start..self.pos]
    }

    fn skip_while(&mut self, skip: impl Fn(char) -> bool) {
        self.take_while(skip);
    }

    fn skip_blanks(&mut self) {
        self.skip_while(|ch| ch == ' ' || ch == '\t');
    }

    /// The rest of the current line, without its newline (which stays unread).
    fn rest_of_line(&mut self) -> &'a str {
        self.take_while(|ch| ch != '\n')
    }

    fn error(&self, message: String) -> StoreError {
        StoreError::Modelfile {
            line: self.line,
            message,
        }
    }

    /// A non-blank word on the current line.
    fn word(&mut self, what: &str) -> Result<String> {
        self.skip_blanks();
        let word = self.take_while(|ch| !ch.is_whitespace());
        if word.is_empty() {
            return Err(self.error(format!("{what} is missing")));
        }
        Ok(word.to_string())
    }

    /// An instruction's value: `"""…"""` (verbatim, may span lines), `"…"` (one line, `\"` and
    /// `\\` escapes), or the rest of the line with trailing blanks trimmed.
    fn value(&mut self) -> Result<String> {
        self.skip_blanks();
        let rest = &self.text[self.pos..];
        let value = if let Some(body) = rest.strip_prefix("\"\"\"") {
            let opened = self.line;
            let end = body.find("\"\"\"").ok_or_else(|| StoreError::Modelfile {
                line: opened,
                message: "this \"\"\" string is never closed; end it with \"\"\"".into(),
            })?;
            let value = body[..end].to_string();
            self.pos += 3 + end + 3;
            self.line += value.matches('\n').count();
            value
        } else if rest.starts_with('"') {
            self.pos += 1;
            let mut value = String::new();
            loop {
                match self.peek() {
                    Some('"') => break,
                    Some('\\')
                        if matches!(self.text[self.pos + 1..].chars().next(), Some('"' | '\\')) =>
                    {
                        value.push(
                            self.text[self.pos + 1..]
                                .chars()
                                .next()
                                .expect("just matched"),
                        );
                        self.pos += 2;
                    }
                    Some('\n') | None => {
                        return Err(self.error(
                            "this \" string is not closed on its line; end it with \"".into(),
                        ))
                    }
                    Some(ch) => {
                        value.push(ch);
                        self.pos += ch.len_utf8();
                    }
                }
            }
            self.pos += 1;
            value
        } else {
            let value = self.rest_of_line().trim_end().to_string();
            if value.is_empty() {
                return Err(self.error("the value is missing".into()));
            }
            return Ok(value);
        };
        let trailing = self.rest_of_line().trim();
        if !trailing.is_empty() {
            return Err(self.error(format!("unexpected {trailing:?} after the closing quotes")));
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_every_instruction() {
        let text = r#"
# a comment
from ./model.gguf
PARAMETER temperature 0.7
PARAMETER num_ctx 4096
PARAMETER stop "<|im_end|>"
PARAMETER stop <|endoftext|>
PARAMETER use_mmap false
TEMPLATE """{{ .System }}
{{ .Prompt }}"""
SYSTEM You are "terse".
MESSAGE user Is the sky blue?
MESSAGE assistant "Yes, \"very\"."
LICENSE """MIT"""
LICENSE Apache-2.0
"#;
        let m = Modelfile::parse(text).unwrap();
        assert_eq!(m.from, "./model.gguf");
        assert_eq!(
            Value::Object(m.params.clone()),
            json!({"temperature": 0.7, "num_ctx": 4096, "stop": ["<|im_end|>", "<|endoftext|>"], "use_mmap": false})
        );
        assert_eq!(m.template.as_deref(), Some("{{ .System }}\n{{ .Prompt }}"));
        assert_eq!(m.system.as_deref(), Some("You are \"terse\"."));
        assert_eq!(
            m.messages[1],
            Message {
                role: "assistant".into(),
                content: "Yes, \"very\".".into()
            }
        );
        assert_eq!(m.license, ["MIT", "Apache-2.0"]);
    }

    #[test]
    fn errors_name_the_line() {
        for (text, line, needle) in [
            ("FROM x\nPARAMETER nonsense 1", 2, "unknown parameter"),
            ("FROM x\nPARAMETER top_k high", 2, "an integer"),
            ("FROM x\n\nSYSTEM \"\"\"open\nstill open", 3, "never closed"),
            ("FROM x\nSYSTEM \"open", 2, "not closed"),
            ("FROM x\nMESSAGE robot hi", 2, "role"),
            ("FROM x\nADAPTER ./lora.gguf", 2, "not supported"),
            ("FROM x\nFROM y", 2, "second FROM"),
            ("FROM x\nFOO bar", 2, "unknown instruction"),
            ("FROM x\nSYSTEM", 2, "missing"),
            ("FROM x\nSYSTEM \"\"\"a\"\"\" b", 2, "after the closing"),
            ("SYSTEM hi", 1, "no FROM"),
        ] {
            let err = Modelfile::parse(text).unwrap_err();
            let StoreError::Modelfile { line: got, message } = &err else {
                panic!("{err}")
            };
            assert_eq!(
                (*got, message.contains(needle)),
                (line, true),
                "{text:?}: {err}"
            );
        }
    }

    #[test]
    fn from_is_a_path_or_a_model_name() {
        let base = |from: &str| {
            Modelfile {
                from: from.into(),
                ..Modelfile::default()
            }
            .base(Path::new("/m"))
        };
        assert_eq!(base("./w.gguf").unwrap(), Base::File("/m/./w.gguf".into()));
        assert_eq!(base("w.gguf").unwrap(), Base::File("/m/w.gguf".into()));
        assert_eq!(base("/abs/w.bin").unwrap(), Base::File("/abs/w.bin".into()));
        assert_eq!(
            base("llama3.2:1b").unwrap(),
            Base::Model(ModelName::parse("llama3.2:1b").unwrap())
        );
        assert_eq!(
            base("hf.co/u/r:file.gguf").unwrap(),
            Base::Model(ModelName::parse("hf.co/u/r:file.gguf").unwrap())
        );
    }
}
