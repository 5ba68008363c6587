//! Tool calls in a model's output: the formats model families write them in, a streaming
//! detector ([`ToolParser`]) and a whole-text parser ([`parse`]).
//!
//! | format | what the model writes | families |
//! |---|---|---|
//! | [`ToolFormat::Hermes`] | `<tool_call>\n{"name": "f", "arguments": {...}}\n</tool_call>`, one or several, anywhere; or the JSON alone, bare or in a ` ```json ` fence, at the start of the answer | Qwen 2.5 / 3, Hermes, SmolLM3 |
//! | [`ToolFormat::Llama3`] | `{"name": "f", "parameters": {...}}` (after `<|python_tag|>`), at the start of the answer, several separated by `;` | Llama 3.1 / 3.2 / 3.3 |
//! | [`ToolFormat::Mistral`] | `[TOOL_CALLS] [{"name": "f", "arguments": {...}}]`, or `[TOOL_CALLS]f[ARGS]{...}` (optionally `[CALL_ID]id` before `[ARGS]`) | Mistral, Mixtral, Mistral Nemo / Small |
//!
//! The text outside the calls is the answer's content; whitespace right before and after a call
//! is dropped. A call that does not parse (invalid JSON, no name, arguments that are not an
//! object, not closed when the answer ends) is never an error: its text is kept as content and
//! comes with a warning ([`ToolEvent::Malformed`]). `arguments` given as a string holding a JSON
//! object are accepted as that object; `arguments` left out are `{}` (Hermes, Mistral).
//!
//! Small Qwen2.5-Coder models answer a tool prompt with the call's JSON but without the tags
//! (`{"name": "get_weather", "arguments": {"city": "Paris"}}`, often in a ` ```json ` fence), as
//! llama.cpp's Hermes parser also accepts. At the start of the answer, a JSON object with
//! `"name"` and `"arguments"` (or `"parameters"`) is therefore a call in the Hermes format as in
//! Llama 3's; a JSON value without them (an answer in JSON) is content, without a warning, as is
//! the marker-less Mistral list without names.
//!
//! The streaming detector passes text through as soon as it cannot be the start of a call, holds
//! back what may be (a prefix of `<tool_call>`, trailing whitespace, an answer that opens with
//! `{"`), and yields each call when it closes. Fed any split of a text, it yields what [`parse`]
//! finds in the whole text.
//!
//! Control tokens never reach the text (the engine decodes them as nothing), so where a
//! family's markers are control tokens (`<|python_tag|>`, Mistral's `[TOOL_CALLS]` and `[ARGS]`)
//! the parser sees the text without them: Llama 3's JSON and Mistral's list are still found at
//! the start of the answer; Mistral's `name[ARGS]{...}` form needs the markers in the text.

use serde_json::{Map, Value};

use crate::ToolCall;

/// How a model family writes its tool calls (see the [module docs](self)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ToolFormat {
    /// `<tool_call>{"name": ..., "arguments": {...}}</tool_call>` (Qwen, Hermes).
    Hermes,
    /// `{"name": ..., "parameters": {...}}` at the start of the answer (Llama 3.x).
    Llama3,
    /// `[TOOL_CALLS] [{"name": ..., "arguments": {...}}]` or `[TOOL_CALLS]name[ARGS]{...}`
    /// (Mistral).
    Mistral,
}

impl ToolFormat {
    /// The format a chat template teaches its model, recognised from the template text: its
    /// `<tool_call>` tag (Hermes), `[TOOL_CALLS]` (Mistral), or Llama 3's header markers with
    /// tools (`<|python_tag|>`, or `<|start_header_id|>` and `tools`). `None` for other
    /// templates.
    pub fn detect(template: &str) -> Option<ToolFormat> {
        if template.contains(HERMES_OPEN) {
            Some(ToolFormat::Hermes)
        } else if template.contains(MISTRAL_MARK) {
            Some(ToolFormat::Mistral)
        } else if template.contains(PYTHON_TAG)
            || (template.contains("<|start_header_id|>") && template.contains("tools"))
        {
            Some(ToolFormat::Llama3)
        } else {
            None
        }
    }
}

/// What the detector yields.
#[derive(Clone, Debug, PartialEq)]
pub enum ToolEvent {
    /// Content text.
    Text(String),
    /// A complete tool call.
    Call(ToolCall),
    /// Text that was taken for a tool call but is not a valid one: show it as content; `warning`
    /// says what is wrong with it.
    Malformed { text: String, warning: String },
}

/// A whole answer split into content and calls.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ParsedOutput {
    /// The text outside the calls (malformed calls included, as text).
    pub content: String,
    pub calls: Vec<ToolCall>,
    /// One per malformed call.
    pub warnings: Vec<String>,
}

/// Splits a whole answer into content and tool calls.
pub fn parse(format: ToolFormat, text: &str) -> ParsedOutput {
    let mut parser = ToolParser::new(format);
    let mut events = parser.push(text);
    events.extend(parser.finish());
    let mut out = ParsedOutput::default();
    for e in events {
        match e {
            ToolEvent::Text(t) => out.content.push_str(&t),
            ToolEvent::Call(c) => out.calls.push(c),
            ToolEvent::Malformed { text, warning } => {
                out.content.push_str(&text);
                out.warnings.push(warning);
            }
        }
    }
    out
}

const HERMES_OPEN: &str = "<tool_call>";
const HERMES_CLOSE: &str = "</tool_call>";
const MISTRAL_MARK: &str = "[TOOL_CALLS]";
const MISTRAL_ARGS: &str = "[ARGS]";
const MISTRAL_ID: &str = "[CALL_ID]";
const PYTHON_TAG: &str = "<|python_tag|>";
const FENCE: &str = "```";

/// The streaming detector: [`ToolParser::push`] each piece of text as it is generated, then
/// [`ToolParser::finish`].
#[derive(Clone, Debug)]
pub struct ToolParser {
    format: ToolFormat,
    /// Text not decided yet.
    buf: String,
    /// `buf` starts with a call (its start is confirmed, its end not found yet).
    in_call: bool,
    /// Content other than whitespace has been yielded: calls that only open an answer (Llama 3,
    /// the marker-less Mistral list) are no longer looked for.
    seen_text: bool,
    /// The last thing yielded was a call: whitespace after it is dropped.
    after_call: bool,
}

/// Whether a text is the start of a call.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Tri {
    Yes,
    No,
    /// Too short to tell.
    Maybe,
}

/// Where the start of `buf` leads, in text mode.
enum Found {
    /// A call starts at this byte.
    Call(usize),
    /// The text before this byte is content; the rest waits for more text.
    Hold(usize),
}

/// What `buf` (starting with a call) holds.
enum End {
    /// The call goes on.
    Incomplete,
    /// Calls ending at this byte.
    Calls(usize, Vec<ToolCall>),
    /// A broken call ending at this byte.
    Malformed(usize, String),
    /// Not a call after all: content up to this byte.
    Text(usize),
}

impl ToolParser {
    pub fn new(format: ToolFormat) -> ToolParser {
        ToolParser {
            format,
            buf: String::new(),
            in_call: false,
            seen_text: false,
            after_call: false,
        }
    }

    /// Takes the next piece of the answer; returns what can be decided.
    pub fn push(&mut self, piece: &str) -> Vec<ToolEvent> {
        self.buf.push_str(piece);
        let mut out = Vec::new();
        self.drain(false, &mut out);
        out
    }

    /// The answer has ended: returns everything still held (an unfinished call as a malformed
    /// one).
    pub fn finish(&mut self) -> Vec<ToolEvent> {
        let mut out = Vec::new();
        self.drain(true, &mut out);
        out
    }

    fn drain(&mut self, last: bool, out: &mut Vec<ToolEvent>) {
        loop {
            if self.in_call {
                match self.call_end(last) {
                    End::Incomplete => return,
                    End::Calls(end, calls) => {
                        out.extend(calls.into_iter().map(ToolEvent::Call));
                        self.buf.drain(..end);
                        self.after_call = true;
                    }
                    End::Malformed(end, warning) => {
                        let text = self.buf.drain(..end).collect();
                        out.push(ToolEvent::Malformed { text, warning });
                        self.seen_text = true;
                        self.after_call = false;
                    }
                    End::Text(end) => {
                        let text: String = self.buf.drain(..end).collect();
                        self.emit(&text, out);
                    }
                }
                self.in_call = false;
                continue;
            }
            if self.buf.is_empty() {
                return;
            }
            if self.format == ToolFormat::Llama3 && self.after_call {
                // `;` between calls.
                let rest = self.buf.trim_start();
                if rest.starts_with(';') {
                    let cut = self.buf.len() - rest.len() + 1;
                    self.buf.drain(..cut);
                    continue;
                }
            }
            match self.find_start(last) {
                Found::Call(at) => {
                    let before = self.buf[..at].trim_end().to_string();
                    self.emit(&before, out);
                    self.buf.drain(..at);
                    self.in_call = true;
                }
                Found::Hold(upto) => {
                    let text: String = self.buf.drain(..upto).collect();
                    self.emit(&text, out);
                    return;
                }
            }
        }
    }

    /// Yields content (without the whitespace that follows a call).
    fn emit(&mut self, text: &str, out: &mut Vec<ToolEvent>) {
        let text = if self.after_call {
            text.trim_start()
        } else {
            text
        };
        if text.is_empty() {
            return;
        }
        if !text.trim().is_empty() {
            self.seen_text = true;
            self.after_call = false;
        }
        match out.last_mut() {
            Some(ToolEvent::Text(t)) => t.push_str(text),
            _ => out.push(ToolEvent::Text(text.to_string())),
        }
    }

    fn find_start(&self, last: bool) -> Found {
        let buf = self.buf.as_str();
        let anywhere = match self.format {
            ToolFormat::Hermes => Some(HERMES_OPEN),
            ToolFormat::Mistral => Some(MISTRAL_MARK),
            ToolFormat::Llama3 => None,
        };
        let ws = buf.len() - buf.trim_start().len();
        let start = if self.seen_text {
            Tri::No
        } else {
            match self.format {
                ToolFormat::Hermes => hermes_start(&buf[ws..]),
                ToolFormat::Llama3 => llama_start(&buf[ws..]),
                ToolFormat::Mistral => list_start(&buf[ws..]),
            }
        };
        if start == Tri::Yes {
            return Found::Call(ws);
        }
        if let Some(at) = anywhere.and_then(|t| buf.find(t)) {
            return Found::Call(at);
        }
        if last {
            return Found::Hold(buf.len());
        }
        if start == Tri::Maybe {
            return Found::Hold(0);
        }
        let mut upto = anywhere
            .and_then(|t| partial_suffix(buf, t))
            .unwrap_or(buf.len());
        // Whitespace that may come right before a call.
        upto = buf[..upto].trim_end().len();
        Found::Hold(upto)
    }

    fn call_end(&self, last: bool) -> End {
        let buf = self.buf.as_str();
        // What an unfinished call becomes: more text is awaited, or at the end a malformed call.
        let unfinished = |what: &str| {
            if last {
                End::Malformed(buf.len(), format!("{what} is not finished"))
            } else {
                End::Incomplete
            }
        };
        match self.format {
            ToolFormat::Hermes if buf.starts_with(HERMES_OPEN) => {
                let body_at = HERMES_OPEN.len();
                match buf[body_at..].find(HERMES_CLOSE) {
                    Some(k) => {
                        let end = body_at + k + HERMES_CLOSE.len();
                        match hermes_call(&buf[body_at..body_at + k]) {
                            Ok(call) => End::Calls(end, vec![call]),
                            Err(w) => End::Malformed(end, w),
                        }
                    }
                    // A call the answer ends in without its closing tag is taken if it is whole.
                    None if last => match hermes_call(&buf[body_at..]) {
                        Ok(call) => End::Calls(buf.len(), vec![call]),
                        Err(w) => End::Malformed(
                            buf.len(),
                            format!("a <tool_call> is not closed with </tool_call> ({w})"),
                        ),
                    },
                    None => End::Incomplete,
                }
            }
            // The JSON alone, bare or fenced, at the start of the answer.
            ToolFormat::Hermes => {
                let Some(open) = buf.strip_prefix(FENCE) else {
                    return json_call_end(buf, 0, None, last);
                };
                let lang = open.strip_prefix("json").unwrap_or(open);
                let at = buf.len() - lang.trim_start().len();
                json_call_end(buf, at, Some(FENCE), last)
            }
            ToolFormat::Llama3 => {
                let mut at = buf.strip_prefix(PYTHON_TAG).map_or(0, |_| PYTHON_TAG.len());
                at += buf[at..].len() - buf[at..].trim_start().len();
                json_call_end(buf, at, None, last)
            }
            ToolFormat::Mistral => match buf.strip_prefix(MISTRAL_MARK) {
                Some(rest) => {
                    let at = MISTRAL_MARK.len() + rest.len() - rest.trim_start().len();
                    match buf[at..].chars().next() {
                        None => unfinished("[TOOL_CALLS]"),
                        Some('[') => self.mistral_list(at, true, last),
                        Some(_) => self.mistral_named(at, last),
                    }
                }
                None => {
                    let at = buf.len() - buf.trim_start().len();
                    self.mistral_list(at, false, last)
                }
            },
        }
    }

    /// Mistral's `[{"name": ..., "arguments": {...}}, ...]` at `at`; `marked`: after
    /// `[TOOL_CALLS]` (else at the start of the answer, where a list without names is content).
    fn mistral_list(&self, at: usize, marked: bool, last: bool) -> End {
        let json = &self.buf[at..];
        let Some(k) = json_end(json) else {
            if last {
                return if marked || json.contains("\"name\"") {
                    End::Malformed(self.buf.len(), "the tool call list is not finished".into())
                } else {
                    End::Text(self.buf.len())
                };
            }
            return End::Incomplete;
        };
        let end = at + k;
        let named = |v: &Value| v.as_object().is_some_and(|o| o.contains_key("name"));
        match serde_json::from_str::<Value>(&json[..k]) {
            Ok(Value::Array(items)) if !items.is_empty() && (marked || items.iter().all(named)) => {
                let calls: Result<Vec<ToolCall>, String> = items
                    .iter()
                    .map(|item| match item {
                        Value::Object(o) => object_call(o),
                        other => Err(format!("tool call {other} is not a JSON object")),
                    })
                    .collect();
                match calls {
                    Ok(calls) => End::Calls(end, calls),
                    Err(w) => End::Malformed(end, w),
                }
            }
            Ok(_) if !marked => End::Text(end),
            Ok(other) => {
                End::Malformed(end, format!("[TOOL_CALLS] {other} is not a list of calls"))
            }
            Err(e) if marked || json[..k].contains("\"name\"") => {
                End::Malformed(end, format!("the tool call list is not valid JSON: {e}"))
            }
            Err(_) => End::Text(end),
        }
    }

    /// Mistral's `name[ARGS]{...}` (with `[CALL_ID]id` before `[ARGS]` in newer versions) at
    /// `at`, after `[TOOL_CALLS]`. Decided character by character, so that every split of the
    /// text decides the same.
    fn mistral_named(&self, at: usize, last: bool) -> End {
        let buf = self.buf.as_str();
        let unfinished = || {
            if last {
                End::Malformed(buf.len(), "the [TOOL_CALLS] call is not finished".into())
            } else {
                End::Incomplete
            }
        };
        let word = |from: usize| {
            from + buf[from..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
                .unwrap_or(buf.len() - from)
        };
        let mut p = word(at);
        if p == buf.len() {
            return unfinished();
        }
        if p == at {
            return End::Malformed(p, "no function name after [TOOL_CALLS]".into());
        }
        let name = buf[at..p].to_string();
        let mut id = None;
        match tag_at(&buf[p..], MISTRAL_ID) {
            Tri::Yes => {
                let from = p + MISTRAL_ID.len();
                p = word(from);
                if p == buf.len() {
                    return unfinished();
                }
                id = Some(buf[from..p].to_string());
            }
            Tri::Maybe => return unfinished(),
            Tri::No => {}
        }
        match tag_at(&buf[p..], MISTRAL_ARGS) {
            Tri::Yes => p += MISTRAL_ARGS.len(),
            Tri::Maybe => return unfinished(),
            Tri::No => {
                return End::Malformed(
                    p,
                    format!("the call of {name} has no [ARGS] after the function name"),
                )
            }
        }
        p += buf[p..].len() - buf[p..].trim_start().len();
        if p == buf.len() {
            return unfinished();
        }
        if !buf[p..].starts_with('{') {
            return End::Malformed(p, format!("the arguments of {name} are not a JSON object"));
        }
        match json_end(&buf[p..]) {
            Some(k) => match serde_json::from_str::<Value>(&buf[p..p + k]) {
                Ok(arguments @ Value::Object(_)) => End::Calls(
                    p + k,
                    vec![ToolCall {
                        id,
                        name,
                        arguments,
                    }],
                ),
                Ok(_) => {
                    End::Malformed(p + k, format!("the arguments of {name} are not an object"))
                }
                Err(e) => End::Malformed(
                    p + k,
                    format!("the arguments of {name} are not valid JSON: {e}"),
                ),
            },
            None => unfinished(),
        }
    }
}

/// The end of a call written as a JSON object at `at` of `buf` (and the `close` text after it,
/// such as a fence's ```` ``` ````): a call when the object has `"name"` and `"arguments"` or
/// `"parameters"`, else content.
fn json_call_end(buf: &str, at: usize, close: Option<&str>, last: bool) -> End {
    let json = &buf[at..];
    let Some(k) = json_end(json) else {
        return match last {
            false => End::Incomplete,
            true if json.contains("\"name\"") => {
                End::Malformed(buf.len(), "the tool call's JSON is not finished".into())
            }
            true => End::Text(buf.len()),
        };
    };
    let mut end = at + k;
    if let Some(close) = close {
        let rest = buf[end..].trim_start();
        match tag_at(rest, close) {
            Tri::Yes => end = buf.len() - rest.len() + close.len(),
            Tri::Maybe if !last => return End::Incomplete,
            // Not closed: the object alone is the call.
            _ => {}
        }
    }
    match serde_json::from_str::<Value>(&json[..k]) {
        Ok(Value::Object(o))
            if o.contains_key("name")
                && (o.contains_key("parameters") || o.contains_key("arguments")) =>
        {
            match object_call(&o) {
                Ok(call) => End::Calls(end, vec![call]),
                Err(w) => End::Malformed(end, w),
            }
        }
        Ok(_) => End::Text(end),
        Err(e) if json[..k].contains("\"name\"") => {
            End::Malformed(end, format!("the tool call is not valid JSON: {e}"))
        }
        Err(_) => End::Text(end),
    }
}

/// Whether `s` (after leading whitespace) opens a Hermes call without tags: `{"`, or a
/// ```` ```json ```` fence (or a bare ```` ``` ````) around one.
fn hermes_start(s: &str) -> Tri {
    if !s.starts_with('`') {
        return object_start(s);
    }
    let Some(rest) = s.strip_prefix(FENCE) else {
        return if FENCE.starts_with(s) {
            Tri::Maybe
        } else {
            Tri::No
        };
    };
    let rest = match rest.strip_prefix("json") {
        Some(r) => r,
        None if !rest.is_empty() && "json".starts_with(rest) => return Tri::Maybe,
        None => rest,
    };
    object_start(rest.trim_start())
}

/// Whether `s` (after leading whitespace) opens a Llama 3 call: `{"`, possibly after
/// `<|python_tag|>`.
fn llama_start(s: &str) -> Tri {
    match s.strip_prefix(PYTHON_TAG) {
        Some(rest) => object_start(rest.trim_start()),
        None if PYTHON_TAG.starts_with(s) => Tri::Maybe,
        None => object_start(s),
    }
}

/// Whether `s` opens a JSON object with a key: `{` then `"`.
fn object_start(s: &str) -> Tri {
    match s.strip_prefix('{') {
        None if s.is_empty() => Tri::Maybe,
        None => Tri::No,
        Some(rest) => match rest.trim_start().chars().next() {
            None => Tri::Maybe,
            Some('"') => Tri::Yes,
            Some(_) => Tri::No,
        },
    }
}

/// Whether `s` opens a JSON list of objects: `[`, `{`, `"`.
fn list_start(s: &str) -> Tri {
    match s.strip_prefix('[') {
        None if s.is_empty() => Tri::Maybe,
        None => Tri::No,
        Some(rest) => object_start(rest.trim_start()),
    }
}

/// Whether `s` starts with `tag` (`Maybe`: `s` is a shorter start of it).
fn tag_at(s: &str, tag: &str) -> Tri {
    if s.starts_with(tag) {
        Tri::Yes
    } else if tag.starts_with(s) {
        Tri::Maybe
    } else {
        Tri::No
    }
}

/// The start of the longest end of `s` that is a proper, non-empty start of `tag`.
fn partial_suffix(s: &str, tag: &str) -> Option<usize> {
    let from = s.len().saturating_sub(tag.len() - 1);
    (from..s.len()).find(|&i| s.is_char_boundary(i) && tag.starts_with(&s[i..]))
}

/// The end (exclusive) of the JSON object or list `s` starts with, by bracket depth outside
/// strings; `None` if it does not end in `s`.
fn json_end(s: &str) -> Option<usize> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for (i, b) in s.bytes().enumerate() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
    }
    None
}

/// A Hermes call body: `{"name": ..., "arguments": {...}}` with whitespace around.
fn hermes_call(body: &str) -> Result<ToolCall, String> {
    match serde_json::from_str::<Value>(body.trim()) {
        Ok(Value::Object(o)) => object_call(&o),
        Ok(other) => Err(format!("the tool call {other} is not a JSON object")),
        Err(e) => Err(format!("the tool call is not valid JSON: {e}")),
    }
}

/// A call from `{"name": ..., "arguments" or "parameters": {...}, "id"?: ...}`.
fn object_call(o: &Map<String, Value>) -> Result<ToolCall, String> {
    let name = match o.get("name") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        Some(other) => {
            return Err(format!(
                "the tool call's name {other} is not a function name"
            ))
        }
        None => return Err("the tool call has no name".into()),
    };
    let arguments = match o.get("arguments").or_else(|| o.get("parameters")) {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(v @ Value::Object(_)) => v.clone(),
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(v @ Value::Object(_)) => v,
            _ => {
                return Err(format!(
                    "the arguments of {name} are a string that is not a JSON object"
                ))
            }
        },
        Some(other) => {
            return Err(format!(
                "the arguments of {name}, {other}, are not an object"
            ))
        }
    };
    let id = o.get("id").and_then(Value::as_str).map(str::to_string);
    Ok(ToolCall {
        id,
        name,
        arguments,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn call(name: &str, arguments: Value) -> ToolCall {
        ToolCall {
            id: None,
            name: name.into(),
            arguments,
        }
    }

    /// The events of `text` fed in `pieces` (cut at these byte offsets), with adjacent texts
    /// merged.
    fn stream(format: ToolFormat, text: &str, cuts: &[usize]) -> Vec<ToolEvent> {
        let mut parser = ToolParser::new(format);
        let mut events = Vec::new();
        let mut from = 0;
        for &cut in cuts.iter().chain(std::iter::once(&text.len())) {
            events.extend(parser.push(&text[from..cut]));
            from = cut;
        }
        events.extend(parser.finish());
        let mut merged: Vec<ToolEvent> = Vec::new();
        for e in events {
            match (merged.last_mut(), e) {
                (Some(ToolEvent::Text(a)), ToolEvent::Text(b)) => a.push_str(&b),
                (_, e) => merged.push(e),
            }
        }
        merged
    }

    /// `text` gives `want` whole, cut at every character boundary, and cut at every pair of
    /// boundaries (short texts).
    fn check(format: ToolFormat, text: &str, want: &[ToolEvent]) {
        assert_eq!(stream(format, text, &[]), want, "whole: {text:?}");
        let bounds: Vec<usize> = (1..text.len())
            .filter(|&i| text.is_char_boundary(i))
            .collect();
        for &i in &bounds {
            assert_eq!(stream(format, text, &[i]), want, "cut at {i}: {text:?}");
        }
        if text.len() <= 120 {
            for (n, &i) in bounds.iter().enumerate() {
                for &j in &bounds[n + 1..] {
                    assert_eq!(
                        stream(format, text, &[i, j]),
                        want,
                        "cuts {i},{j}: {text:?}"
                    );
                }
            }
        }
        // One character at a time.
        assert_eq!(
            stream(format, text, &bounds),
            want,
            "by characters: {text:?}"
        );
    }

    fn text(s: &str) -> ToolEvent {
        ToolEvent::Text(s.into())
    }

    fn called(name: &str, arguments: Value) -> ToolEvent {
        ToolEvent::Call(call(name, arguments))
    }

    fn malformed(events: &[ToolEvent]) -> (String, usize) {
        let mut s = String::new();
        let mut n = 0;
        for e in events {
            match e {
                ToolEvent::Text(t) => s.push_str(t),
                ToolEvent::Malformed { text, .. } => {
                    s.push_str(text);
                    n += 1
                }
                ToolEvent::Call(c) => panic!("unexpected call {c:?}"),
            }
        }
        (s, n)
    }

    #[test]
    fn formats_are_detected_from_templates() {
        let qwen = "{%- if tools %}<tools>{{ tool | tojson }}</tools><tool_call>\\n{\"name\": <function-name>}</tool_call>{% endif %}";
        assert_eq!(ToolFormat::detect(qwen), Some(ToolFormat::Hermes));
        let llama = "{{- '<|start_header_id|>' }}{%- if tools is not none %}{{- '\"parameters\"' }}{% endif %}";
        assert_eq!(ToolFormat::detect(llama), Some(ToolFormat::Llama3));
        assert_eq!(
            ToolFormat::detect("{{- '<|python_tag|>' + tool_call.name }}"),
            Some(ToolFormat::Llama3)
        );
        let mistral = "{%- if tools %}[AVAILABLE_TOOLS]{{ tools|tojson }}[/AVAILABLE_TOOLS]{% endif %}{{ '[TOOL_CALLS]' }}";
        assert_eq!(ToolFormat::detect(mistral), Some(ToolFormat::Mistral));
        assert_eq!(
            ToolFormat::detect("{% for m in messages %}<|im_start|>{{ m.content }}{% endfor %}"),
            None
        );
    }

    #[test]
    fn hermes_calls() {
        let h = ToolFormat::Hermes;
        let paris = json!({"city": "Paris"});
        check(
            h,
            "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>",
            &[called("get_weather", paris.clone())],
        );
        // Several, with text before; whitespace around calls dropped.
        check(
            h,
            "Let me look. \n<tool_call>\n{\"name\": \"a\", \"arguments\": {}}\n</tool_call>\n<tool_call>\n{\"name\": \"b\", \"arguments\": {\"x\": [1, {\"y\": \"}\"}]}}\n</tool_call>\n",
            &[
                text("Let me look."),
                called("a", json!({})),
                called("b", json!({"x": [1, {"y": "}"}]})),
            ],
        );
        // Text after a call; arguments as a string; "parameters"; no arguments.
        check(
            h,
            "<tool_call>{\"name\": \"f\", \"arguments\": \"{\\\"k\\\": 1}\"}</tool_call> Done <b>é</b>",
            &[called("f", json!({"k": 1})), text("Done <b>é</b>")],
        );
        check(
            h,
            "<tool_call>{\"name\": \"f\", \"parameters\": {\"k\": 2}}</tool_call><tool_call>{\"name\": \"g\"}</tool_call>",
            &[called("f", json!({"k": 2})), called("g", json!({}))],
        );
        // Plain answers pass through unchanged, prefixes of the tag included.
        check(
            h,
            "a < b and <tool is not a call\n",
            &[text("a < b and <tool is not a call\n")],
        );
        check(h, "ends with <tool_ca", &[text("ends with <tool_ca")]);
        // Unclosed at the end: taken when whole.
        check(
            h,
            "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n",
            &[called("get_weather", paris)],
        );
    }

    /// What Qwen2.5-Coder-0.5B-Instruct answers (greedy) to "What is the weather in Paris?" and
    /// "What's the weather like in Paris today?" with a get_weather tool: the call without tags.
    #[test]
    fn hermes_calls_without_tags_at_the_start() {
        let h = ToolFormat::Hermes;
        let paris = || called("get_weather", json!({"city": "Paris"}));
        check(
            h,
            "```json\n{\n  \"name\": \"get_weather\",\n  \"arguments\": {\n    \"city\": \"Paris\"\n  }\n}\n```",
            &[paris()],
        );
        check(
            h,
            "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}",
            &[paris()],
        );
        check(
            h,
            "\n```\n{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}```\nDone.",
            &[paris(), text("Done.")],
        );
        // Unclosed fence at the end: the object is the call.
        check(
            h,
            "```json\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n",
            &[paris()],
        );
        // JSON and code answers, and JSON after text, are content.
        for answer in [
            "```json\n{\"name\": \"Ann\", \"age\": 3}\n```",
            "{\"city\": \"Paris\"}",
            "```python\nprint({\"name\": 1, \"arguments\": {}})\n```",
            "Call it as {\"name\": \"get_weather\", \"arguments\": {}}",
            "``inline`` code",
        ] {
            check(h, answer, &[text(answer)]);
        }
        let bad = "```json\n{\"name\": \"get_weather\", \"arguments\": 5}\n```";
        let p = parse(h, bad);
        assert_eq!(
            (p.content.as_str(), p.calls.len(), p.warnings.len()),
            (bad, 0, 1)
        );
    }

    #[test]
    fn malformed_hermes_calls_are_text_with_a_warning() {
        let h = ToolFormat::Hermes;
        for bad in [
            "<tool_call>\n{'name': 'f'}\n</tool_call>",
            "<tool_call>{\"arguments\": {}}</tool_call>",
            "<tool_call>{\"name\": \"f\", \"arguments\": [1]}</tool_call>",
            "<tool_call>{\"name\": \"f\", \"arguments\": \"nope\"}</tool_call>",
            "<tool_call>{\"name\": 3}</tool_call>",
            "<tool_call>[1, 2]</tool_call>",
            "<tool_call>{\"name\": \"f\", \"argu",
        ] {
            let whole = stream(h, bad, &[]);
            assert_eq!(malformed(&whole), (bad.to_string(), 1), "{bad}");
            let bounds: Vec<usize> = (1..bad.len()).collect();
            for &i in &bounds {
                assert_eq!(stream(h, bad, &[i]), whole, "{bad} cut at {i}");
            }
            let p = parse(h, bad);
            assert_eq!(
                (p.content.as_str(), p.calls.len(), p.warnings.len()),
                (bad, 0, 1)
            );
        }
        // A good call after a bad one is still found.
        let p = parse(
            h,
            "<tool_call>{bad}</tool_call>\n<tool_call>{\"name\": \"f\", \"arguments\": {}}</tool_call>",
        );
        assert_eq!(p.calls, vec![call("f", json!({}))]);
        assert_eq!(p.content, "<tool_call>{bad}</tool_call>");
        assert_eq!(p.warnings.len(), 1);
    }

    #[test]
    fn llama3_calls() {
        let l = ToolFormat::Llama3;
        check(
            l,
            "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}",
            &[called("get_weather", json!({"city": "Paris"}))],
        );
        check(
            l,
            "<|python_tag|>{\"type\": \"function\", \"name\": \"f\", \"parameters\": {}}; {\"name\": \"g\", \"parameters\": {\"a\": \"{\"}}",
            &[called("f", json!({})), called("g", json!({"a": "{"}))],
        );
        check(
            l,
            "  \n{\"name\": \"f\", \"arguments\": {\"n\": 1}}\nThat is all.",
            &[called("f", json!({"n": 1})), text("That is all.")],
        );
        // JSON answers and text are content; a JSON object later in the answer is not a call.
        check(l, "{\"answer\": 42}", &[text("{\"answer\": 42}")]);
        check(l, "{x} is a set", &[text("{x} is a set")]);
        check(
            l,
            "Sure: {\"name\": \"f\", \"parameters\": {}}",
            &[text("Sure: {\"name\": \"f\", \"parameters\": {}}")],
        );
        check(l, "\n\nHello there", &[text("\n\nHello there")]);
        // Malformed: named but broken.
        let bad = "{\"name\": \"f\", \"parameters\": [1]}";
        let p = parse(l, bad);
        assert_eq!(
            (p.content.as_str(), p.calls.len(), p.warnings.len()),
            (bad, 0, 1)
        );
        let bad = "{\"name\": \"f\", \"parameters\": {\"a\": 1";
        let p = parse(l, bad);
        assert_eq!(
            (p.content.as_str(), p.calls.len(), p.warnings.len()),
            (bad, 0, 1)
        );
        for i in 1..bad.len() {
            assert_eq!(malformed(&stream(l, bad, &[i])), (bad.to_string(), 1));
        }
    }

    #[test]
    fn mistral_calls() {
        let m = ToolFormat::Mistral;
        check(
            m,
            "[TOOL_CALLS] [{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}, \"id\": \"abc123xyz\"}, {\"name\": \"g\", \"arguments\": {}}]",
            &[
                ToolEvent::Call(ToolCall {
                    id: Some("abc123xyz".into()),
                    name: "get_weather".into(),
                    arguments: json!({"city": "Paris"}),
                }),
                called("g", json!({})),
            ],
        );
        // The marker is a control token the engine does not print: the list alone at the start.
        check(
            m,
            " [{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}]",
            &[called("get_weather", json!({"city": "Paris"}))],
        );
        check(
            m,
            "[TOOL_CALLS]get_weather[ARGS]{\"city\": \"Paris\"}[TOOL_CALLS]f[CALL_ID]a1b2c3d4e[ARGS] {}",
            &[
                called("get_weather", json!({"city": "Paris"})),
                ToolEvent::Call(ToolCall {
                    id: Some("a1b2c3d4e".into()),
                    name: "f".into(),
                    arguments: json!({}),
                }),
            ],
        );
        check(
            m,
            "Checking.\n[TOOL_CALLS]f[ARGS]{\"q\": \"a]b\"}\nok",
            &[
                text("Checking."),
                called("f", json!({"q": "a]b"})),
                text("ok"),
            ],
        );
        // Lists and brackets that are answers.
        check(m, "[1, 2, 3]", &[text("[1, 2, 3]")]);
        check(m, "[{\"a\": 1}]", &[text("[{\"a\": 1}]")]);
        check(
            m,
            "[link](http://x) [TOOL",
            &[text("[link](http://x) [TOOL")],
        );
        // Malformed.
        for bad in [
            "[TOOL_CALLS]get_weather{\"city\": 1}",
            "[TOOL_CALLS]f[ARGS]nope",
            "[TOOL_CALLS] [{\"name\": \"f\", \"arguments\": 3}]",
            "[TOOL_CALLS]f[ARGS]{\"a\": ",
        ] {
            let whole = stream(m, bad, &[]);
            assert_eq!(malformed(&whole), (bad.to_string(), 1), "{bad}");
            for i in 1..bad.len() {
                assert_eq!(stream(m, bad, &[i]), whole, "{bad} cut at {i}");
            }
        }
    }

    #[test]
    fn json_ends() {
        assert_eq!(json_end("{\"a\": \"}\\\"}\"} rest"), Some(13));
        assert_eq!(json_end("[[], {}]x"), Some(8));
        assert_eq!(json_end("{\"a\": 1"), None);
        assert_eq!(json_end("}"), None);
        assert_eq!(partial_suffix("abc <tool", "<tool_call>"), Some(4));
        assert_eq!(partial_suffix("abc <tool_call>", "<tool_call>"), None);
        assert_eq!(partial_suffix("é<", "<tool_call>"), Some(2));
    }
}
