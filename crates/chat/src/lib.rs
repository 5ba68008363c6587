//! Sandboxed rendering of a model's chat template.
//!
//! A GGUF file may carry a Jinja chat template (`tokenizer.chat_template`) that turns a list of
//! [`Message`]s into the prompt text the model was trained on. This crate renders it the way
//! Hugging Face transformers does, with [MiniJinja](https://docs.rs/minijinja) in a sandbox, and
//! also reports which bytes of the prompt came from the messages so that the tokenizer can keep
//! user text from turning into control tokens.
//!
//! # Main types
//!
//! * [`ChatTemplate`] — a compiled template: [`ChatTemplate::for_model`] picks the file's template
//!   or a built-in one for the architecture; [`ChatTemplate::render`] renders a conversation,
//!   [`ChatTemplate::render_with_tools`] one with tool definitions;
//!   [`ChatTemplate::source`] gives the template text in use.
//! * [`Message`] — one turn (`role`, `content`; an assistant turn's [`ToolCall`]s, a tool
//!   result's `tool_call_id` and `name`).
//! * [`tools`] — tool calls in a model's answer: [`tools::ToolFormat`] (Qwen/Hermes,
//!   Llama 3, Mistral; [`ChatTemplate::tool_format`] recognises it from the template), the
//!   streaming [`tools::ToolParser`] and the whole-text [`tools::parse`].
//! * [`Rendered`] — the prompt [`text`](Rendered::text) and its
//!   [`content_spans`](Rendered::content_spans).
//! * [`ChatError`] — what can go wrong (syntax errors with line numbers, `raise_exception`
//!   messages, exhausted limits, no template for the architecture, invalid roles).
//!
//! ```
//! use chat::{ChatTemplate, Message};
//!
//! let tmpl = ChatTemplate::for_model(None, "qwen2", "", "<|im_end|>").unwrap();
//! let msgs = [Message::new("user", "Hi <|im_end|>")];
//! let r = tmpl.render(&msgs, true).unwrap();
//! assert_eq!(r.text, "<|im_start|>user\nHi <|im_end|><|im_end|>\n<|im_start|>assistant\n");
//! // The user's "<|im_end|>" is inside a content span; the template's markers are not.
//! assert_eq!(r.content_spans, vec![17..30]);
//! ```
//!
//! # Template language
//!
//! Jinja2 as configured by transformers: `trim_blocks` and `lstrip_blocks` on,
//! `keep_trailing_newline` off, `break`/`continue`, Python string/dict/list methods
//! (`.strip()`, `.split()`, `.startswith()`, `.items()`, `.get()`, ... from
//! `minijinja-contrib`'s `pycompat`), namespaces, macros, `loop.previtem`/`nextitem`. Extras real
//! templates use:
//! * `raise_exception(msg)` aborts with [`ChatError::Raised`] carrying `msg`;
//! * `strftime_now(fmt)` formats the current time — in **UTC** (see [`time`] for the directives);
//! * `tojson` matches Python's `json.dumps` with transformers' defaults (no HTML escaping,
//!   non-ASCII kept, `", "`/`": "` separators, key order kept; `indent`, `ensure_ascii`,
//!   `separators`, `sort_keys` keyword arguments);
//! * `None`, `True`, `False` print as in Python;
//! * HF's training-only `{% generation %}` blocks are accepted and ignored.
//!
//! The context holds `messages`, `add_generation_prompt`, `bos_token`, `eos_token`, `tools`
//! and `documents = None`. Each message is a `{role, content}` map, as transformers passes
//! them, plus where they apply `tool_calls` (`[{"type": "function", "id": ..., "function":
//! {"name": ..., "arguments": {...}}}]`, the arguments an object; absent when there are none),
//! `tool_call_id` and `name` (a tool result's). `tools` is the request's list of tool
//! definitions (`[{"type": "function", "function": {"name", "description", "parameters"}}]`,
//! keys in the order they were written) or `None`.
//!
//! Not supported: `include`/`import`/`extends` (by design), mutating methods such as
//! `list.append` or `dict.update` (MiniJinja values are immutable), Python `%` string
//! formatting, `documents`, and non-string contents (the APIs carry text messages only).
//!
//! # Sandbox
//!
//! Templates come from model files and are not trusted. They cannot read files or other
//! templates (no loader; MiniJinja is built without `multi_template`, so `include`/`import` do
//! not even parse), never execute code, and run under limits: an instruction budget ("fuel",
//! [`ChatError::ResourceLimit`] when exhausted — an endless loop ends in an error, not a hang),
//! a recursion limit, a cap on the output size ([`ChatError::OutputTooLarge`]) and on the
//! template size. MiniJinja caps `range()` at 100,000 items and string repetition at 100 MB;
//! memory use of strings built inside the template (e.g. repeated doubling with `~` in a loop
//! before anything is written) is bounded only by those limits and the fuel, not separately.
//!
//! # Content spans
//!
//! See the [`spans`] module docs for how the spans are found and why the result is safe: text
//! outside the spans is always made of pieces of what the template writes for the same
//! conversation with opaque placeholder contents, so a message can never contribute a control
//! token. Tool definitions and tool calls are as untrusted as contents: their strings (a
//! description, an argument, a parameter's name) are placeholders too, and lie inside spans,
//! except those made only of ASCII letters, digits, `_` and `-` (function names, JSON-schema
//! words such as `object`), which templates compare and which spell no control token. For templates that pass contents through (possibly trimmed) the spans are exactly the
//! contents; where a template rewrites a content, the text around it is protected as well.
//!
//! # Built-in templates
//!
//! When a file has no template: Gemma (`gemma`, `gemma2`, `gemma3`, `gemma3n`) gets
//! `<start_of_turn>user\n…<end_of_turn>\n<start_of_turn>model\n` with contents trimmed and system
//! text prepended to the first user turn; `phi3` gets `<|user|>\n…<|end|>\n<|assistant|>\n`;
//! `llama` and the Qwen families get ChatML. Other architectures give [`ChatError::NoTemplate`].
//! Built-ins write no BOS (the tokenizer adds it when the file asks for it), like llama.cpp.

mod context;
mod env;
mod fallback;
mod json;
pub mod spans;
pub mod time;
pub mod tools;

use std::fmt;
use std::io;
use std::ops::Range;
use std::panic::AssertUnwindSafe;

use minijinja::{Environment, ErrorKind, Template};
use serde::Serialize;

/// A JSON value: tool definitions and call arguments (`serde_json`'s, re-exported for crates
/// that pass them on without using `serde_json` themselves).
pub use serde_json::Value as JsonValue;

/// One turn of a conversation.
///
/// Most turns are a `role` and a `content` ([`Message::new`]). An assistant turn may also carry
/// the [`ToolCall`]s it made, and a `tool` turn (a tool's result, in `content`) says which call
/// it answers (`tool_call_id`) and the tool's `name`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Message {
    /// `system`, `user`, `assistant`, `tool`, ... (ASCII letters, digits, `_`, `-`).
    pub role: String,
    pub content: String,
    /// The calls an assistant turn made (shown to the template as `message.tool_calls`; absent
    /// when empty).
    pub tool_calls: Vec<ToolCall>,
    /// For a tool's result: the id of the call it answers (`message.tool_call_id`).
    pub tool_call_id: Option<String>,
    /// For a tool's result: the tool's name (`message.name`).
    pub name: Option<String>,
}

impl Message {
    /// A message with `role` and `content`.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Message {
        Message {
            role: role.into(),
            content: content.into(),
            ..Message::default()
        }
    }
}

/// A function call: made by the model (parsed from its output by [`tools::ToolParser`]) or an
/// earlier assistant turn's, sent back in a conversation.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ToolCall {
    /// The call's id, where the API or the model gave one.
    pub id: Option<String>,
    /// The function's name.
    pub name: String,
    /// The arguments: a JSON object.
    pub arguments: serde_json::Value,
}

/// A rendered prompt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendered {
    /// The prompt text, exactly as Hugging Face transformers would render it.
    pub text: String,
    /// Byte ranges of `text` that came from message contents (user/system/assistant/tool
    /// text) and from the strings of tools and tool calls (see [Content
    /// spans](crate#content-spans)). The tokenizer must not recognise special tokens inside them. Sorted,
    /// non-overlapping, non-empty, on `char` boundaries. They only switch special-token matching
    /// off; they are not meant as tokenization boundaries.
    pub content_spans: Vec<Range<usize>>,
}

/// What can go wrong when loading or rendering a chat template.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChatError {
    /// The template does not parse (this includes `include`, `import` and `extends`, which the
    /// sandbox does not provide).
    #[error("chat template syntax error at line {line}: {message}")]
    Syntax { line: usize, message: String },
    /// The template called `raise_exception(message)`.
    #[error("chat template raised an exception: {message}")]
    Raised { message: String },
    /// Any other failure while rendering (undefined method, type error, ...).
    #[error("chat template render error{}: {message}", fmt_line(*.line))]
    Render {
        line: Option<usize>,
        message: String,
    },
    /// The template ran out of its instruction budget or recursion limit.
    #[error("chat template exceeded its execution limits: {message}")]
    ResourceLimit { message: String },
    /// The rendered prompt would exceed `limit` bytes.
    #[error("rendered chat prompt exceeds the limit of {limit} bytes")]
    OutputTooLarge { limit: usize },
    /// The template text is larger than `limit` bytes.
    #[error("chat template is {len} bytes, more than the limit of {limit}")]
    TemplateTooLarge { len: usize, limit: usize },
    /// The file has no chat template and there is no built-in one for its architecture.
    #[error("the model has no chat template and architecture `{arch}` has no built-in fallback")]
    NoTemplate { arch: String },
    /// A message role that is empty, too long or not made of ASCII letters, digits, `_`, `-`.
    #[error("invalid message role {role:?}")]
    InvalidRole { role: String },
}

fn fmt_line(line: Option<usize>) -> String {
    line.map(|l| format!(" at line {l}")).unwrap_or_default()
}

/// Largest template accepted (real ones are a few KB, the largest seen ~100 KB).
pub const MAX_TEMPLATE_BYTES: usize = 1 << 20;
/// Output allowance independent of the conversation.
const OUTPUT_BASE_BYTES: usize = 1 << 20;
/// Output allowance per byte of message text (templates may repeat a content a few times).
const OUTPUT_PER_INPUT_BYTE: usize = 4;
/// Instruction budget independent of the conversation (real templates use a few hundred
/// instructions per message).
const FUEL_BASE: u64 = 2_000_000;
/// Instruction budget per message.
const FUEL_PER_MESSAGE: u64 = 10_000;
/// Longest role accepted.
const MAX_ROLE_BYTES: usize = 64;

/// A compiled, sandboxed chat template.
#[derive(Clone)]
pub struct ChatTemplate {
    source: String,
    /// `source` with `{% generation %}` tags neutralised: what is compiled.
    patched: String,
    env: Environment<'static>,
    bos_token: String,
    eos_token: String,
    builtin: bool,
}

impl fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("source", &self.source)
            .field("bos_token", &self.bos_token)
            .field("eos_token", &self.eos_token)
            .field("builtin", &self.builtin)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct Ctx<'a> {
    messages: serde_json::Value,
    add_generation_prompt: bool,
    bos_token: &'a str,
    eos_token: &'a str,
    tools: serde_json::Value,
    documents: Option<()>,
}

/// An `io::Write` that refuses to grow past `limit` bytes.
struct LimitedWriter {
    buf: Vec<u8>,
    limit: usize,
    exceeded: bool,
}

impl io::Write for LimitedWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.len() + data.len() > self.limit {
            self.exceeded = true;
            return Err(io::Error::other("rendered output too large"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl ChatTemplate {
    /// The chat template for a model.
    ///
    /// `source`: the GGUF's `tokenizer.chat_template`, if any (an empty one counts as none);
    /// `arch`: `general.architecture` (e.g. `"gemma3"`, `"llama"`, `"qwen2"`, `"phi3"`), used to
    /// pick a built-in template when there is no source; `bos_token`/`eos_token`: token texts
    /// passed to the template as `bos_token`/`eos_token`.
    pub fn for_model(
        source: Option<&str>,
        arch: &str,
        bos_token: &str,
        eos_token: &str,
    ) -> Result<ChatTemplate, ChatError> {
        match source.filter(|s| !s.trim().is_empty()) {
            Some(source) => Self::new(source, bos_token, eos_token),
            None => {
                let source = fallback::for_arch(arch).ok_or_else(|| ChatError::NoTemplate {
                    arch: arch.to_string(),
                })?;
                let mut t = Self::new(source, bos_token, eos_token)?;
                t.builtin = true;
                Ok(t)
            }
        }
    }

    /// A template from its Jinja source (e.g. a user-supplied override).
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<ChatTemplate, ChatError> {
        if source.len() > MAX_TEMPLATE_BYTES {
            return Err(ChatError::TemplateTooLarge {
                len: source.len(),
                limit: MAX_TEMPLATE_BYTES,
            });
        }
        let patched = env::patch_generation_tags(source).into_owned();
        let env = env::build();
        // Compile once now so that syntax errors surface at load time.
        env.template_from_named_str(env::TEMPLATE_NAME, &patched)
            .map_err(|e| convert_error(&e))?;
        Ok(ChatTemplate {
            source: source.to_string(),
            patched,
            env,
            bos_token: bos_token.to_string(),
            eos_token: eos_token.to_string(),
            builtin: false,
        })
    }

    /// The template text in use (the file's, or the built-in one), for display.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether this is a built-in template chosen because the file had none.
    pub fn is_builtin(&self) -> bool {
        self.builtin
    }

    /// Renders `messages`; with `add_generation_prompt` the prompt ends with the header of an
    /// assistant turn. The template gets no tools (`tools` is `None`); see
    /// [`ChatTemplate::render_with_tools`].
    ///
    /// The text is what transformers would render; [`Rendered::content_spans`] marks the bytes
    /// that came from message contents (the template is rendered three times for that, see
    /// [`spans`]).
    ///
    /// # Errors
    ///
    /// [`ChatError::InvalidRole`] for a role that is not ASCII letters, digits, `_`, `-` (at most
    /// 64 bytes); [`ChatError::Raised`] when the template calls `raise_exception`;
    /// [`ChatError::ResourceLimit`] / [`ChatError::OutputTooLarge`] when it exceeds its limits;
    /// [`ChatError::Render`] for any other template error.
    pub fn render(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
    ) -> Result<Rendered, ChatError> {
        self.render_with_tools(messages, None, add_generation_prompt)
    }

    /// [`ChatTemplate::render`] with tool definitions: `tools` is the list the template gets as
    /// `tools` (`[{"type": "function", "function": {"name", "description", "parameters"}}]`,
    /// passed as they are), `None` when the request has none.
    ///
    /// The tools' strings and the messages' tool calls are as untrusted as the contents: a
    /// description or an argument that spells a control token lies inside a content span (see
    /// [Content spans](crate#content-spans): only strings made of ASCII letters, digits, `_` and
    /// `-` stay outside).
    pub fn render_with_tools(
        &self,
        messages: &[Message],
        tools: Option<&[serde_json::Value]>,
        add_generation_prompt: bool,
    ) -> Result<Rendered, ChatError> {
        for m in messages {
            let ok = !m.role.is_empty()
                && m.role.len() <= MAX_ROLE_BYTES
                && m.role
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if !ok {
                return Err(ChatError::InvalidRole {
                    role: m.role.clone(),
                });
            }
        }
        let input_bytes = context::input_bytes(messages, tools);
        let limit = OUTPUT_BASE_BYTES
            .saturating_add(OUTPUT_PER_INPUT_BYTE.saturating_mul(input_bytes))
            .saturating_add(self.bos_token.len() + self.eos_token.len());
        let items = messages.len()
            + tools.map_or(0, <[_]>::len)
            + messages.iter().map(|m| m.tool_calls.len()).sum::<usize>();
        let fuel = FUEL_BASE.saturating_add(FUEL_PER_MESSAGE.saturating_mul(items as u64));
        let mut env: Environment<'_> = self.env.clone();
        env.set_fuel(Some(fuel));
        let tmpl = env
            .template_from_named_str(env::TEMPLATE_NAME, &self.patched)
            .map_err(|e| convert_error(&e))?;

        // R: the real texts, collected in the order the context builder visits them.
        let mut texts: Vec<String> = Vec::new();
        let real = context::build(messages, tools, &mut |s| {
            texts.push(s.to_string());
            s.to_string()
        });
        let text = self.render_ctx(&tmpl, real, add_generation_prompt, limit)?;

        let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
        let mut others: Vec<&str> = vec![self.source.as_str(), &self.bos_token, &self.eos_token];
        others.extend(messages.iter().map(|m| m.role.as_str()));
        let content_spans = match spans::Plan::new(&texts, &others) {
            Some(plan) => {
                // W and O may be a little longer than R (markers): allow for them.
                let limit = limit.saturating_add(12 * texts.len());
                let render_with = |replacements: &[String]| {
                    let mut next = replacements.iter();
                    let ctx = context::build(messages, tools, &mut |s| {
                        next.next().cloned().unwrap_or_else(|| s.to_string())
                    });
                    self.render_ctx(&tmpl, ctx, add_generation_prompt, limit)
                };
                let w = render_with(&plan.wrapped);
                let o = render_with(&plan.opaque);
                plan.spans(&text, w.as_deref().ok(), o.as_deref().ok())
            }
            None if text.is_empty() => Vec::new(),
            None => std::iter::once(0..text.len()).collect(),
        };
        Ok(Rendered {
            text,
            content_spans,
        })
    }

    /// The tool-call format of this template's model, recognised from the template text (see
    /// [`tools::ToolFormat::detect`]).
    pub fn tool_format(&self) -> Option<tools::ToolFormat> {
        tools::ToolFormat::detect(&self.source)
    }

    /// Whether the template uses `tools` at all (a model whose template does not cannot be
    /// told about them).
    pub fn supports_tools(&self) -> bool {
        template_takes_tools(&self.source)
    }

    fn render_ctx(
        &self,
        tmpl: &Template<'_, '_>,
        (messages, tools): (serde_json::Value, serde_json::Value),
        add_generation_prompt: bool,
        limit: usize,
    ) -> Result<String, ChatError> {
        let ctx = Ctx {
            messages,
            add_generation_prompt,
            bos_token: &self.bos_token,
            eos_token: &self.eos_token,
            tools,
            documents: None,
        };
        let mut out = LimitedWriter {
            buf: Vec::new(),
            limit,
            exceeded: false,
        };
        // MiniJinja can panic on some inputs (2.24 does on `''[::-1]`); a model file must not be
        // able to take the process down, so a panic is caught and reported as a render error.
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
            tmpl.render_captured_to(&ctx, &mut out).map(drop)
        }))
        .map_err(|_| ChatError::Render {
            line: None,
            message: "the template engine panicked".into(),
        })?;
        if out.exceeded {
            return Err(ChatError::OutputTooLarge { limit });
        }
        result.map_err(|e| convert_error(&e))?;
        String::from_utf8(out.buf).map_err(|_| ChatError::Render {
            line: None,
            message: "template output is not valid UTF-8".into(),
        })
    }
}

/// Maps a MiniJinja error to a [`ChatError`].
fn convert_error(err: &minijinja::Error) -> ChatError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(raised) = e.downcast_ref::<env::RaisedException>() {
            return ChatError::Raised {
                message: raised.0.clone(),
            };
        }
        source = e.source();
    }
    let detail = err.detail().unwrap_or_default();
    match err.kind() {
        ErrorKind::SyntaxError => ChatError::Syntax {
            line: err.line().unwrap_or(0),
            message: detail.to_string(),
        },
        ErrorKind::OutOfFuel => ChatError::ResourceLimit {
            message: "instruction budget exhausted".into(),
        },
        ErrorKind::InvalidOperation if detail.contains("recursion") => ChatError::ResourceLimit {
            message: detail.to_string(),
        },
        _ => ChatError::Render {
            line: err.line(),
            message: match err.detail() {
                Some(d) => format!("{}: {d}", err.kind()),
                None => err.kind().to_string(),
            },
        },
    }
}

/// Whether a Jinja chat template's `source` uses `tools` (see [`ChatTemplate::supports_tools`]),
/// without compiling it.
pub fn template_takes_tools(source: &str) -> bool {
    source.contains("tools")
}

/// Whether a `TEMPLATE` layer is written in Go's text/template syntax (what Ollama's registry
/// serves: `{{ .Prompt }}`, `{{- range .Messages }}`, `{{ end }}`) rather than Jinja (what
/// GGUF files and `hearth create` use). Hearth renders only Jinja, so such a template is
/// set aside for the GGUF's own.
pub fn is_go_template(template: &str) -> bool {
    template.split("{{").skip(1).any(|rest| {
        let action = rest.split("}}").next().unwrap_or_default();
        let action = action.trim_start_matches('-').trim();
        action.starts_with('.')
            || matches!(
                action.split_whitespace().next(),
                Some("if" | "range" | "with" | "end" | "else" | "template" | "define" | "block")
            )
    })
}

#[cfg(test)]
mod go_template_tests {
    use super::*;

    #[test]
    fn go_templates_are_told_from_jinja() {
        for go in [
            "{{ .System }}\n{{ .Prompt }}",
            "{{- range .Messages }}<|{{ .Role }}|>{{ .Content }}{{ end }}",
            "{{if .System}}<s>{{.System}}</s>{{end}}",
        ] {
            assert!(is_go_template(go), "{go}");
        }
        for jinja in [
            "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}",
            "{{- bos_token }}{{ messages[0]['content'] if messages else '' }}",
            "{%- if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}",
            "plain text",
        ] {
            assert!(!is_go_template(jinja), "{jinja}");
        }
    }
}
