//! The OpenAI-compatible API (`/v1/*`): chat completions and completions (SSE streams of
//! `data: {...}` chunks ending in `data: [DONE]`), models, with OpenAI's error shape.
//!
//! Extensions over OpenAI's fields: `num_ctx` (the context size of this request; also
//! `options.num_ctx`), `options` (any Ollama option), `keep_alive`, `truncate`, and `grammar`
//! (GBNF, as llama.cpp's server takes it). `response_format` is enforced while sampling
//! ([`crate::structured`]).
//!
//! Tools: `tools`, `tool_choice` (`"none"` leaves the tools out; `"required"` and a named
//! function make the answer a call, enforced with a grammar), `parallel_tool_calls` (accepted); assistant messages'
//! `tool_calls` with `arguments` as a JSON string, `role: "tool"` results with `tool_call_id`.
//! Calls come back in `message.tool_calls` (`delta.tool_calls` when streaming, one chunk per
//! call) with ids `call_...`, `content: null` when there is no text, `finish_reason:
//! "tool_calls"`.

use crate::error::ServerError;
use crate::generate::{
    self, done_reason, logprob_json, GenerationRequest, Piece, Prompt, Started, ToolChoice,
};
use crate::ollama::Body;
use crate::options::parse_keep_alive;
use crate::runner::Logprob;
use crate::structured;
use crate::{AppState, RequestLog};
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chat::ToolCall;
use engine::{GenerationStats, Message, StopReason};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// A [`ServerError`] in OpenAI's shape: `{"error": {"message", "type", "code"}}`.
pub struct OpenAiError(pub ServerError);

impl From<ServerError> for OpenAiError {
    fn from(e: ServerError) -> Self {
        OpenAiError(e)
    }
}

impl IntoResponse for OpenAiError {
    fn into_response(self) -> Response {
        let status = self.0.status();
        let kind = match status.as_u16() {
            400 | 413 => "invalid_request_error",
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            503 => "server_busy",
            _ => "server_error",
        };
        let message = self.0.to_string();
        // The Ollama-shaped response keeps its status and headers (Retry-After); the body changes.
        let mut response = self.0.into_response();
        let body = json!({"error": {"message": message, "type": kind, "code": status.as_u16()}});
        *response.body_mut() = axum::body::Body::from(body.to_string());
        response
    }
}

type Result<T> = std::result::Result<T, OpenAiError>;

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn owner(name: &store::ModelName) -> String {
    name.namespace().to_string()
}

pub async fn models(State(state): State<Arc<AppState>>) -> Result<Json<Value>> {
    let store = state.store.clone();
    let list = tokio::task::spawn_blocking(move || store.list())
        .await
        .map_err(|e| ServerError::Internal(e.to_string()))?
        .map_err(ServerError::from)?;
    let data: Vec<Value> = list
        .into_iter()
        .filter(|m| m.problem.is_none())
        .map(|m| {
            let created = m
                .modified
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            json!({"id": m.name.to_string(), "object": "model", "created": created, "owned_by": owner(&m.name)})
        })
        .collect();
    Ok(Json(json!({"object": "list", "data": data})))
}

pub async fn model(
    State(state): State<Arc<AppState>>,
    Path(model): Path<String>,
) -> Result<Json<Value>> {
    let resolved = state.scheduler.loader().resolve(&model)?;
    Ok(Json(json!({
        "id": resolved.name.to_string(),
        "object": "model",
        "created": unix_now(),
        "owned_by": owner(&resolved.name),
    })))
}

/// Message content: a string, or an array of parts of which only text is supported.
fn content_text(content: &Value) -> std::result::Result<String, ServerError> {
    match content {
        Value::Null => Ok(String::new()),
        Value::String(s) => Ok(s.clone()),
        Value::Array(parts) => {
            let mut text = String::new();
            for p in parts {
                match (p.get("type").and_then(Value::as_str), p.get("text")) {
                    (Some("text"), Some(Value::String(t))) => text.push_str(t),
                    (kind, _) => {
                        return Err(ServerError::BadRequest(format!(
                        "content parts of type {} are not supported: Hearth runs text models only",
                        kind.unwrap_or("(none)")
                    )))
                    }
                }
            }
            Ok(text)
        }
        other => Err(ServerError::BadRequest(format!(
            "message content {other} is neither a string nor a list of parts"
        ))),
    }
}

/// The fields both endpoints share.
#[derive(Deserialize)]
pub struct Common {
    model: String,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    stream_options: Option<Value>,
    #[serde(default)]
    max_tokens: Option<i64>,
    #[serde(default)]
    max_completion_tokens: Option<i64>,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    top_p: Option<f64>,
    #[serde(default)]
    seed: Option<i64>,
    #[serde(default)]
    stop: Option<Value>,
    #[serde(default)]
    n: Option<u64>,
    #[serde(default)]
    frequency_penalty: Option<f64>,
    #[serde(default)]
    presence_penalty: Option<f64>,
    #[serde(default)]
    logprobs: Option<Value>,
    #[serde(default)]
    top_logprobs: Option<u64>,
    #[serde(default)]
    response_format: Option<Value>,
    /// Extension (llama.cpp's): a GBNF grammar the answer must follow.
    #[serde(default)]
    grammar: Option<String>,
    /// Extension: the context size of this request.
    #[serde(default)]
    num_ctx: Option<u64>,
    /// Extension: Ollama's options.
    #[serde(default)]
    options: Option<Map<String, Value>>,
    #[serde(default)]
    keep_alive: Option<Value>,
    #[serde(default)]
    truncate: Option<bool>,
}

impl Common {
    /// OpenAI's fields as Ollama options, over the request's `options` extension.
    fn options(&self) -> std::result::Result<Map<String, Value>, ServerError> {
        if self.n.is_some_and(|n| n != 1) {
            return Err(ServerError::BadRequest(
                "n must be 1: Hearth returns one choice per request".into(),
            ));
        }
        let mut o = self.options.clone().unwrap_or_default();
        let mut set = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                o.insert(k.into(), v);
            }
        };
        set(
            "num_predict",
            self.max_completion_tokens
                .or(self.max_tokens)
                .map(Value::from),
        );
        set("temperature", self.temperature.map(Value::from));
        set("top_p", self.top_p.map(Value::from));
        set("seed", self.seed.map(Value::from));
        set("stop", self.stop.clone());
        set("frequency_penalty", self.frequency_penalty.map(Value::from));
        set("presence_penalty", self.presence_penalty.map(Value::from));
        set("num_ctx", self.num_ctx.map(Value::from));
        Ok(o)
    }

    /// How many alternatives to report with each token's log-probability; `None`: no
    /// log-probabilities. Chat asks with `logprobs: true` and `top_logprobs` (0 to 20), the
    /// legacy completions with `logprobs: N` (0 to 5), as OpenAI takes them.
    fn logprobs(&self, chat: bool) -> std::result::Result<Option<usize>, ServerError> {
        let logprobs = self.logprobs.as_ref().filter(|v| !v.is_null());
        if chat {
            let wanted = match logprobs {
                None | Some(Value::Bool(false)) => false,
                Some(Value::Bool(true)) => true,
                Some(other) => return Err(ServerError::BadRequest(format!(
                    "logprobs {other} is not true or false: chat completions take logprobs: true, and top_logprobs: N (0 to 20) for alternatives"
                ))),
            };
            return match (wanted, self.top_logprobs) {
                (_, Some(n)) if n > 20 => Err(ServerError::BadRequest(format!(
                    "top_logprobs {n} is more than 20: ask for 0 to 20 alternatives"
                ))),
                (false, Some(n)) if n > 0 => Err(ServerError::BadRequest(
                    "top_logprobs needs logprobs: true".into(),
                )),
                (false, _) => Ok(None),
                (true, n) => Ok(Some(n.unwrap_or(0) as usize)),
            };
        }
        match logprobs {
            None | Some(Value::Bool(false)) => Ok(None),
            Some(Value::Number(n)) if n.as_u64().is_some_and(|n| n <= 5) => {
                Ok(n.as_u64().map(|n| n as usize))
            }
            Some(other) => Err(ServerError::BadRequest(format!(
                "logprobs {other} is not a number of alternatives from 0 to 5 (completions take logprobs: N; chat completions take logprobs: true)"
            ))),
        }
    }

    fn include_usage(&self) -> bool {
        self.stream_options
            .as_ref()
            .and_then(|o| o.get("include_usage"))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }
}

#[derive(Deserialize)]
pub struct ChatCompletionRequest {
    #[serde(flatten)]
    common: Common,
    messages: Vec<Map<String, Value>>,
    #[serde(default)]
    tools: Option<Value>,
    #[serde(default)]
    tool_choice: Option<Value>,
    /// Accepted; the model calls as many tools as it writes.
    #[serde(default)]
    #[allow(dead_code)]
    parallel_tool_calls: Option<bool>,
    /// Hearth's extension: answer from these document collections' passages.
    #[serde(default)]
    collections: Vec<i64>,
}

impl ChatCompletionRequest {
    /// The tools the template gets (`tools`, unless `tool_choice` is `"none"`), and whether the
    /// answer must be a call: `"required"` (of any of them) or `{"type": "function",
    /// "function": {"name": ...}}` (of that one), enforced with a grammar.
    fn tools(&mut self) -> std::result::Result<(Option<Vec<Value>>, ToolChoice), ServerError> {
        let tools = generate::request_tools(self.tools.take())?;
        let names = || {
            tools
                .iter()
                .flatten()
                .filter_map(|t| t["function"]["name"].as_str())
        };
        match &self.tool_choice {
            None | Some(Value::Null) => Ok((tools, ToolChoice::Auto)),
            Some(Value::String(c)) if c == "auto" => Ok((tools, ToolChoice::Auto)),
            Some(Value::String(c)) if c == "required" => Ok((tools, ToolChoice::Required)),
            Some(Value::String(c)) if c == "none" => Ok((None, ToolChoice::Auto)),
            Some(Value::Object(o)) if o.get("type").and_then(Value::as_str) == Some("function") => {
                let Some(name) = o
                    .get("function")
                    .and_then(|f| f.get("name"))
                    .and_then(Value::as_str)
                else {
                    return Err(ServerError::BadRequest(
                        "tool_choice.function.name must name one of the tools".into(),
                    ));
                };
                if !names().any(|n| n == name) {
                    return Err(ServerError::BadRequest(format!(
                        "tool_choice names the function {name:?}, which is not among the tools"
                    )));
                }
                Ok((tools, ToolChoice::Function(name.to_string())))
            }
            Some(other) => Err(ServerError::BadRequest(format!(
                "tool_choice {other} is not supported: use \"none\", \"auto\", \"required\" or {{\"type\": \"function\", \"function\": {{\"name\": ...}}}}"
            ))),
        }
    }
}

#[derive(Deserialize)]
pub struct CompletionRequest {
    #[serde(flatten)]
    common: Common,
    prompt: Value,
    #[serde(default)]
    suffix: Option<String>,
    #[serde(default)]
    echo: Option<bool>,
}

pub async fn chat_completions(
    State(state): State<Arc<AppState>>,
    Extension(log): Extension<Arc<RequestLog>>,
    extensions: axum::http::Extensions,
    Body(mut req): Body<ChatCompletionRequest>,
) -> Result<Response> {
    let (tools, tool_choice) = req.tools()?;
    if req.messages.is_empty() {
        return Err(ServerError::BadRequest("messages must not be empty".into()).into());
    }
    let mut messages = Vec::with_capacity(req.messages.len());
    for (i, m) in req.messages.iter().enumerate() {
        let role = m
            .get("role")
            .and_then(Value::as_str)
            .ok_or_else(|| ServerError::BadRequest("every message needs a role".into()))?;
        // OpenAI's newer name for the system role.
        let role = if role == "developer" { "system" } else { role };
        let content = content_text(m.get("content").unwrap_or(&Value::Null))?;
        let tool_calls = match m.get("tool_calls") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(calls)) => calls
                .iter()
                .enumerate()
                .map(|(j, c)| generate::tool_call(c, &format!("messages[{i}].tool_calls[{j}]")))
                .collect::<std::result::Result<_, _>>()?,
            Some(other) => {
                return Err(ServerError::BadRequest(format!(
                    "messages[{i}].tool_calls must be a list of calls, not {other}"
                ))
                .into())
            }
        };
        let text = |key: &str| -> std::result::Result<Option<String>, ServerError> {
            match m.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(other) => Err(ServerError::BadRequest(format!(
                    "messages[{i}].{key} must be a string, not {other}"
                ))),
            }
        };
        let tool_call_id = text("tool_call_id")?;
        // `name` is a tool result's tool (and a participant's name elsewhere, not shown).
        let name = if role == "tool" { text("name")? } else { None };
        messages.push(Message {
            role: role.to_string(),
            content,
            tool_calls,
            tool_call_id,
            name,
        });
    }
    generate::name_tool_results(&mut messages);
    let prompt = Prompt::Chat {
        messages,
        system: None,
        template: None,
        tools,
    };
    let prompts = crate::retrieval::augment(&state, &extensions, &req.collections, prompt).await?;
    respond(state, log, req.common, prompts, tool_choice).await
}

pub async fn completions(
    State(state): State<Arc<AppState>>,
    Extension(log): Extension<Arc<RequestLog>>,
    Body(req): Body<CompletionRequest>,
) -> Result<Response> {
    let prompt = match &req.prompt {
        Value::String(s) => s.clone(),
        Value::Array(a) if a.len() == 1 && a[0].is_string() => {
            a[0].as_str().unwrap_or_default().to_string()
        }
        _ => {
            return Err(ServerError::BadRequest(
                "prompt must be a string (one prompt per request)".into(),
            )
            .into())
        }
    };
    if req.echo == Some(true) {
        return Err(ServerError::BadRequest("echo is not supported yet".into()).into());
    }
    let prompt = match req.suffix.filter(|s| !s.is_empty()) {
        Some(suffix) => Prompt::Fill {
            prefix: prompt,
            suffix,
        },
        None => Prompt::Raw(prompt),
    };
    respond(state, log, req.common, vec![(prompt, None)], None).await
}

fn usage(started: &Started, stats: &GenerationStats) -> Value {
    json!({
        "prompt_tokens": started.prompt_tokens,
        "completion_tokens": stats.generated_tokens,
        "total_tokens": started.prompt_tokens + stats.generated_tokens,
        // The start of the prompt a slot's cache already held (not processed again).
        "prompt_tokens_details": {"cached_tokens": started.prompt_tokens.saturating_sub(stats.prompt_tokens)},
    })
}

/// One choice: a chat message/delta or completion text, the tool calls (`(index, call)`), and
/// its `logprobs` (or null). A message with calls and no text has `content: null`.
fn choice(
    chat: bool,
    stream: bool,
    text: Option<&str>,
    calls: &[(usize, &ToolCall)],
    finish: Option<&str>,
    logprobs: Value,
) -> Value {
    let mut c = json!({"index": 0, "finish_reason": finish, "logprobs": logprobs});
    let content = match text {
        Some("") | None if !calls.is_empty() => Value::Null,
        t => json!(t.unwrap_or("")),
    };
    let tool_calls = || -> Value {
        calls
            .iter()
            .map(|&(i, call)| {
                let mut v = Map::new();
                if stream {
                    v.insert("index".into(), json!(i));
                }
                v.insert("id".into(), json!(call.id));
                v.insert("type".into(), json!("function"));
                v.insert(
                    "function".into(),
                    json!({"name": call.name, "arguments": call.arguments.to_string()}),
                );
                Value::Object(v)
            })
            .collect()
    };
    match (chat, stream) {
        (true, false) => {
            c["message"] = json!({"role": "assistant", "content": content});
            if !calls.is_empty() {
                c["message"]["tool_calls"] = tool_calls();
            }
        }
        (true, true) => {
            c["delta"] = match (text, calls.is_empty()) {
                (None, true) => json!({}),
                (_, true) => json!({"role": "assistant", "content": content}),
                (_, false) => {
                    json!({"role": "assistant", "content": content, "tool_calls": tool_calls()})
                }
            }
        }
        (false, _) => c["text"] = json!(text.unwrap_or("")),
    }
    c
}

/// `finish_reason`: `"tool_calls"` when the answer called tools.
fn finish_reason(stop: &StopReason, called: bool) -> &'static str {
    if called {
        "tool_calls"
    } else {
        done_reason(stop)
    }
}

/// `logprobs` of a choice: chat's `{"content": [...]}`, or the legacy completions' parallel
/// lists, whose `text_offset`s count characters from the start of the completion and go on
/// from `offset` (the characters of the tokens before these, in a stream).
fn choice_logprobs(chat: bool, lps: &[Logprob], offset: &mut usize) -> Value {
    if chat {
        return json!({"content": lps.iter().map(logprob_json).collect::<Vec<_>>()});
    }
    let mut tokens = Vec::with_capacity(lps.len());
    let mut text_offset = Vec::with_capacity(lps.len());
    for lp in lps {
        let text = lp.chosen.text();
        text_offset.push(*offset);
        *offset += text.chars().count();
        tokens.push(text);
    }
    let top: Vec<Map<String, Value>> = lps
        .iter()
        .map(|lp| {
            lp.top
                .iter()
                .map(|t| (t.text(), json!(t.logprob)))
                .collect()
        })
        .collect();
    json!({
        "tokens": tokens,
        "token_logprobs": lps.iter().map(|lp| lp.chosen.logprob).collect::<Vec<_>>(),
        "top_logprobs": top,
        "text_offset": text_offset,
    })
}

async fn respond(
    state: Arc<AppState>,
    log: Arc<RequestLog>,
    common: Common,
    prompts: Vec<(Prompt, Option<Value>)>,
    tool_choice: impl Into<Option<ToolChoice>>,
) -> Result<Response> {
    // Chat completions come with a tool choice, completions without.
    let tool_choice = tool_choice.into();
    let chat = tool_choice.is_some();
    let grammar = structured::one([
        structured::response_format(common.response_format.as_ref())?,
        structured::gbnf(common.grammar.as_deref())?,
    ])?;
    let options = common.options()?;
    let logprobs = common.logprobs(chat)?;
    let keep_alive = common
        .keep_alive
        .as_ref()
        .map(parse_keep_alive)
        .transpose()?;
    let started = generate::start_first_fitting(&state, prompts, |prompt| GenerationRequest {
        model: common.model.clone(),
        prompt,
        options: options.clone(),
        keep_alive,
        truncate: common.truncate.unwrap_or(false),
        logprobs,
        grammar: grammar.clone(),
        tool_choice: tool_choice.clone().unwrap_or_default(),
    })
    .await?;
    let created = unix_now();
    let id = format!(
        "{}-{:x}",
        if chat { "chatcmpl" } else { "cmpl" },
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    );
    let object = match (chat, common.stream) {
        (true, true) => "chat.completion.chunk",
        (true, false) => "chat.completion",
        (false, _) => "text_completion",
    };
    let model = common.model.clone();
    let envelope = move |choices: Vec<Value>| json!({"id": id, "object": object, "created": created, "model": model, "system_fingerprint": "hearth", "choices": choices});
    if common.stream {
        let include_usage = common.include_usage();
        let mut offset = 0;
        let mut called = false;
        let render = move |piece: Piece<'_>, started: &Started| match piece {
            Piece::Text(t, lps) => {
                let lps = match logprobs {
                    Some(_) => choice_logprobs(chat, lps, &mut offset),
                    None => Value::Null,
                };
                format!(
                    "data: {}\n\n",
                    envelope(vec![choice(chat, true, Some(t), &[], None, lps)])
                )
            }
            Piece::Call(index, call) => {
                called = true;
                let c = choice(chat, true, None, &[(index, call)], None, Value::Null);
                format!("data: {}\n\n", envelope(vec![c]))
            }
            Piece::Done(stats) => {
                let reason = finish_reason(&stats.stop, called);
                let last = choice(chat, true, None, &[], Some(reason), Value::Null);
                let mut last = envelope(vec![last]);
                if let Some(sources) = &started.sources {
                    last["sources"] = sources.clone();
                }
                let mut out = format!("data: {last}\n\n");
                if include_usage {
                    let mut last = envelope(Vec::new());
                    last["usage"] = usage(started, stats);
                    out += &format!("data: {last}\n\n");
                }
                out
            }
            Piece::Failed(e) => format!(
                "data: {}\n\n",
                json!({"error": {"message": e, "type": "server_error"}})
            ),
        };
        let body = generate::stream_body(
            state,
            started,
            Some(log),
            render,
            Some("data: [DONE]\n\n".into()),
        );
        return Ok((
            [
                (header::CONTENT_TYPE, "text/event-stream"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            body,
        )
            .into_response());
    }
    let (done, started) = started.collect(&state).await?;
    log.set_tokens(
        &started.model_name,
        started.prompt_tokens,
        done.stats.generated_tokens,
    );
    let reason = finish_reason(&done.stats.stop, !done.calls.is_empty());
    let lps = match logprobs {
        Some(_) => choice_logprobs(chat, &done.logprobs, &mut 0),
        None => Value::Null,
    };
    let calls: Vec<(usize, &ToolCall)> = done.calls.iter().enumerate().collect();
    let mut v = envelope(vec![choice(
        chat,
        false,
        Some(&done.text),
        &calls,
        Some(reason),
        lps,
    )]);
    v["usage"] = usage(&started, &done.stats);
    if let Some(sources) = &started.sources {
        v["sources"] = sources.clone();
    }
    Ok(Json(v).into_response())
}

#[derive(Deserialize)]
pub struct EmbeddingsRequest {
    model: String,
    input: Value,
    #[serde(default)]
    dimensions: Option<usize>,
    #[serde(default)]
    encoding_format: Option<String>,
    #[serde(default)]
    options: Option<Map<String, Value>>,
    #[serde(default)]
    keep_alive: Option<Value>,
}

/// `/v1/embeddings`: vectors as JSON floats, or with `encoding_format: "base64"` (what the
/// `openai` package asks for by default) as base64 of little-endian f32s.
pub async fn embeddings(
    State(state): State<Arc<AppState>>,
    Body(req): Body<EmbeddingsRequest>,
) -> Result<Json<Value>> {
    let as_base64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ServerError::BadRequest(format!(
                "encoding_format {other:?} is not supported: use \"float\" or \"base64\""
            ))
            .into())
        }
    };
    let inputs = generate::embed_inputs(&req.input)?;
    let e = generate::embed(
        &state,
        generate::EmbedRequest {
            model: req.model.clone(),
            inputs,
            options: req.options.unwrap_or_default(),
            keep_alive: req.keep_alive.as_ref().map(parse_keep_alive).transpose()?,
            truncate: false,
            dimensions: req.dimensions,
        },
    )
    .await?;
    let data: Vec<Value> = e
        .vectors
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            let embedding = if as_base64 {
                use base64::Engine;
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    Ok(Json(json!({
        "object": "list",
        "data": data,
        "model": req.model,
        "usage": {"prompt_tokens": e.prompt_tokens, "total_tokens": e.prompt_tokens},
    })))
}
