//! Ollama's native API (`/api/*`): NDJSON streams ending in a `done` object with nanosecond
//! statistics, `options`, `keep_alive`, and `{"error": "..."}` failures.

use crate::error::{Result, ServerError};
use crate::generate::{
    self, done_reason, logprob_json, GenerationRequest, Piece, Prompt, Started, ToolChoice,
};
use crate::options::{parse_keep_alive, KeepAlive};
use crate::runner::{parse_name, Logprob};
use crate::scheduler::LoadRequest;
use crate::structured;
use crate::{AppState, RequestLog};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chat::ToolCall;
use engine::{GenerationStats, Message};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// A JSON body, whatever its `Content-Type` (Ollama's documentation sends `curl -d` without
/// one); one that does not parse is a 400 with serde's message. Browsers cannot use this to post
/// from other sites: the security guard refuses foreign `Origin`s first.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequest<S> for Body<T> {
    type Rejection = ServerError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| ServerError::BadRequest(e.body_text()))?;
        serde_json::from_slice(&bytes)
            .map(Body)
            .map_err(|e| ServerError::BadRequest(format!("invalid JSON body: {e}")))
    }
}

pub async fn version() -> Json<Value> {
    Json(json!({ "version": env!("CARGO_PKG_VERSION") }))
}

/// Now, as Ollama writes `created_at`.
pub fn now() -> String {
    humantime::format_rfc3339_nanos(SystemTime::now()).to_string()
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// `details` of a model, from its GGUF metadata where it can be read.
pub fn details(store: &store::Store, name: &store::ModelName) -> Value {
    let Ok(resolved) = store.resolve(name) else {
        return json!({"format": "gguf"});
    };
    let Ok(g) = gguf::Gguf::open(&resolved.model_path) else {
        return json!({"format": "gguf"});
    };
    let arch = g
        .get("general.architecture")
        .and_then(gguf::Value::as_str)
        .unwrap_or_default()
        .to_string();
    let params: u64 = g.tensors().iter().map(|t| t.n_elements()).sum();
    json!({
        "parent_model": "",
        "format": "gguf",
        "family": arch,
        "families": [arch],
        "parameter_size": parameter_size(params),
        "quantization_level": quantization(&g),
    })
}

/// "8.0B", "135M", as Ollama shows parameter counts.
fn parameter_size(n: u64) -> String {
    match n {
        n if n >= 1_000_000_000 => format!("{:.1}B", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{}M", n / 1_000_000),
        n => format!("{}K", n / 1000),
    }
}

/// The most common type among the weight matrices.
fn quantization(g: &gguf::Gguf) -> String {
    let mut counts = std::collections::HashMap::new();
    for t in g.tensors().iter().filter(|t| t.dims.len() >= 2) {
        *counts.entry(t.ty.to_string()).or_insert(0u64) += t.n_elements();
    }
    counts
        .into_iter()
        .max_by_key(|(_, n)| *n)
        .map_or_else(String::new, |(ty, _)| ty)
}

pub async fn tags(State(state): State<Arc<AppState>>) -> Result<Json<Value>> {
    let store = state.store.clone();
    let models = tokio::task::spawn_blocking(move || -> Result<Vec<Value>> {
        Ok(store
            .list()?
            .into_iter()
            .filter(|m| m.problem.is_none())
            .map(|m| {
                json!({
                    "name": m.name.to_string(),
                    "model": m.name.to_string(),
                    "modified_at": rfc3339(m.modified),
                    "size": m.size,
                    "digest": m.digest.hex(),
                    "details": details(&store, &m.name),
                })
            })
            .collect())
    })
    .await
    .map_err(|e| ServerError::Internal(e.to_string()))??;
    Ok(Json(json!({ "models": models })))
}

pub async fn ps(State(state): State<Arc<AppState>>) -> Json<Value> {
    let models: Vec<Value> = state
        .scheduler
        .loaded()
        .into_iter()
        .map(|l| {
            json!({
                "name": l.name,
                "model": l.name,
                "size": l.bytes,
                "size_vram": 0,
                "digest": l.model.resolved.digest.hex(),
                "context_length": l.n_ctx,
                "expires_at": l.expires_at.map_or_else(
                    || rfc3339(SystemTime::now() + Duration::from_secs(100 * 365 * 86400)),
                    rfc3339,
                ),
                "details": {"format": "gguf", "family": l.model.model.hparams.arch.name()},
            })
        })
        .collect();
    Json(json!({ "models": models }))
}

#[derive(Deserialize)]
pub struct ModelRequest {
    #[serde(alias = "name")]
    model: String,
}

pub async fn show(
    State(state): State<Arc<AppState>>,
    Body(req): Body<ModelRequest>,
) -> Result<Json<Value>> {
    let store = state.store.clone();
    let loader = state.scheduler.loader();
    let resolved = loader.resolve(&req.model)?;
    let name = resolved.name.clone();
    let info = tokio::task::spawn_blocking(move || {
        let params: Vec<String> = resolved
            .params
            .iter()
            .flat_map(|(k, v)| match v {
                Value::Array(all) => all.iter().map(|v| format!("{k} {v}")).collect(),
                v => vec![format!("{k} {v}")],
            })
            .collect();
        // "tools" when the chat template in use (a Jinja TEMPLATE layer, else the file's) takes
        // tools, as Ollama reports it.
        let template = match resolved.template.as_deref() {
            Some(t) if !chat::is_go_template(t) => Some(t.to_string()),
            _ => gguf::Gguf::open(&resolved.model_path).ok().and_then(|g| {
                g.get("tokenizer.chat_template")
                    .and_then(gguf::Value::as_str)
                    .map(str::to_string)
            }),
        };
        let mut capabilities = vec!["completion"];
        if template.is_some_and(|t| chat::template_takes_tools(&t)) {
            capabilities.push("tools");
        }
        let mut modelfile = format!("FROM {}\n", resolved.model_path.display());
        for p in &params {
            modelfile += &format!("PARAMETER {p}\n");
        }
        json!({
            "modelfile": modelfile,
            "parameters": params.join("\n"),
            "template": resolved.template.clone().unwrap_or_default(),
            "system": resolved.system.clone().unwrap_or_default(),
            "license": resolved.license.join("\n"),
            "details": details(&store, &name),
            "messages": resolved.messages,
            "capabilities": capabilities,
            "modified_at": rfc3339(SystemTime::now()),
        })
    })
    .await
    .map_err(|e| ServerError::Internal(e.to_string()))?;
    Ok(Json(info))
}

#[derive(Deserialize)]
pub struct CopyRequest {
    source: String,
    destination: String,
}

pub async fn copy(
    State(state): State<Arc<AppState>>,
    Body(req): Body<CopyRequest>,
) -> Result<Response> {
    let (from, to) = (parse_name(&req.source)?, parse_name(&req.destination)?);
    let store = state.store.clone();
    tokio::task::spawn_blocking(move || store.copy(&from, &to))
        .await
        .map_err(|e| ServerError::Internal(e.to_string()))?
        .map_err(|e| not_found_as_404(e, &req.source))?;
    Ok(axum::http::StatusCode::OK.into_response())
}

pub async fn delete(
    State(state): State<Arc<AppState>>,
    Body(req): Body<ModelRequest>,
) -> Result<Response> {
    let name = parse_name(&req.model)?;
    let store = state.store.clone();
    let canonical = name.to_string();
    tokio::task::spawn_blocking(move || store.remove(&name))
        .await
        .map_err(|e| ServerError::Internal(e.to_string()))?
        .map_err(|e| not_found_as_404(e, &req.model))?;
    state.scheduler.unload(&canonical);
    Ok(axum::http::StatusCode::OK.into_response())
}

fn not_found_as_404(e: store::StoreError, model: &str) -> ServerError {
    match e {
        store::StoreError::NotInStore { .. } => ServerError::ModelNotFound(model.to_string()),
        e => e.into(),
    }
}

/// The fields `/api/generate` and `/api/chat` share.
#[derive(Deserialize)]
pub struct Common {
    model: String,
    #[serde(default)]
    options: Option<Map<String, Value>>,
    #[serde(default)]
    keep_alive: Option<Value>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    format: Option<Value>,
    /// Extension (llama.cpp's): a GBNF grammar the answer must follow.
    #[serde(default)]
    grammar: Option<String>,
    #[serde(default)]
    truncate: Option<bool>,
    #[serde(default)]
    template: Option<String>,
    #[serde(default)]
    logprobs: Option<bool>,
    #[serde(default)]
    top_logprobs: Option<u64>,
}

impl Common {
    fn keep_alive(&self) -> Result<Option<KeepAlive>> {
        self.keep_alive.as_ref().map(parse_keep_alive).transpose()
    }

    /// The grammar `format` (`"json"` or a JSON schema) or `grammar` (GBNF) asks for.
    fn grammar(&self) -> Result<Option<Arc<grammar::Grammar>>> {
        structured::one([
            structured::ollama_format(self.format.as_ref())?,
            structured::gbnf(self.grammar.as_deref())?,
        ])
    }

    /// This request's own chat template ("" is none). Ollama's are Go templates, which Hearth
    /// cannot render: those are refused with how to write the Jinja equivalent.
    fn template(&self) -> Result<Option<String>> {
        match self.template.as_deref() {
            None | Some("") => Ok(None),
            Some(t) if chat::is_go_template(t) => Err(ServerError::BadRequest(
                "template is a Go template ({{ .Prompt }}, {{ range .Messages }}): Hearth renders Jinja chat templates, as GGUF files carry them; write it in Jinja over messages, e.g. \"{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}\", or leave template out to use the model's".into(),
            )),
            Some(t) => Ok(Some(t.to_string())),
        }
    }

    /// Ollama's `logprobs: true` with `top_logprobs` (0 to 20) alternatives.
    fn logprobs(&self) -> Result<Option<usize>> {
        match (self.logprobs.unwrap_or(false), self.top_logprobs) {
            (_, Some(n)) if n > 20 => Err(ServerError::BadRequest(format!(
                "top_logprobs {n} is more than 20: ask for 0 to 20 alternatives"
            ))),
            (false, Some(n)) if n > 0 => Err(ServerError::BadRequest(
                "top_logprobs needs logprobs: true".into(),
            )),
            (false, _) => Ok(None),
            (true, n) => Ok(Some(n.unwrap_or(0) as usize)),
        }
    }
}

#[derive(Deserialize)]
pub struct GenerateRequest {
    #[serde(flatten)]
    common: Common,
    #[serde(default)]
    prompt: String,
    #[serde(default)]
    system: Option<String>,
    #[serde(default)]
    raw: bool,
    #[serde(default)]
    suffix: Option<String>,
    #[serde(default)]
    images: Option<Vec<String>>,
}

#[derive(Deserialize)]
pub struct ChatMessage {
    role: String,
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    images: Option<Vec<String>>,
    /// An assistant message's calls: `[{"id"?, "function": {"index"?, "name", "arguments": {}}}]`.
    #[serde(default)]
    tool_calls: Option<Vec<Value>>,
    /// A tool result's tool.
    #[serde(default)]
    tool_name: Option<String>,
    /// The call a tool result answers.
    #[serde(default)]
    tool_call_id: Option<String>,
}

#[derive(Deserialize)]
pub struct ChatRequest {
    #[serde(flatten)]
    common: Common,
    #[serde(default)]
    messages: Vec<ChatMessage>,
    #[serde(default)]
    tools: Option<Value>,
    /// Hearth's extension: answer from these document collections' passages.
    #[serde(default)]
    collections: Vec<i64>,
}

fn no_images(images: &Option<Vec<String>>) -> Result<()> {
    if images.as_ref().is_some_and(|i| !i.is_empty()) {
        return Err(ServerError::BadRequest(
            "images are not supported: Hearth runs text models only".into(),
        ));
    }
    Ok(())
}

/// The `done` object's statistics, durations in nanoseconds.
fn statistics(started: &Started, stats: &GenerationStats) -> Map<String, Value> {
    let ns = |d: Duration| d.as_nanos() as u64;
    let mut m = Map::new();
    m.insert("done".into(), json!(true));
    m.insert("done_reason".into(), json!(done_reason(&stats.stop)));
    m.insert(
        "total_duration".into(),
        json!(ns(started.started.elapsed())),
    );
    m.insert("load_duration".into(), json!(ns(started.load_duration)));
    m.insert("prompt_eval_count".into(), json!(started.prompt_tokens));
    // A Hearth extension: the start of the prompt a slot's cache already held, not processed
    // again (a conversation's earlier turns, a shared system prompt).
    m.insert(
        "prompt_cached_count".into(),
        json!(started.prompt_tokens.saturating_sub(stats.prompt_tokens)),
    );
    m.insert("prompt_eval_duration".into(), json!(ns(stats.prompt_time)));
    m.insert("eval_count".into(), json!(stats.generated_tokens));
    m.insert("eval_duration".into(), json!(ns(stats.generation_time)));
    if started.truncated {
        m.insert("truncated".into(), json!(true));
    }
    m
}

/// The answer to an empty prompt: load the model (`done_reason: "load"`), or with
/// `keep_alive: 0` unload it (`"unload"`), as Ollama does.
async fn load_or_unload(state: &Arc<AppState>, common: &Common, chat: bool) -> Result<Response> {
    let keep_alive = common.keep_alive()?;
    let reason = if keep_alive == Some(Some(Duration::ZERO)) {
        let name = state
            .scheduler
            .loader()
            .resolve(&common.model)?
            .name
            .to_string();
        state.scheduler.unload(&name);
        "unload"
    } else {
        let asked = crate::options::settings(&[common.options.as_ref().unwrap_or(&Map::new())])?;
        let request = LoadRequest {
            model: common.model.clone(),
            n_ctx: asked.n_ctx,
        };
        drop(state.scheduler.acquire(request, keep_alive).await?);
        "load"
    };
    let mut body = json!({
        "model": common.model,
        "created_at": now(),
        "done": true,
        "done_reason": reason,
    });
    if chat {
        body["message"] = json!({"role": "assistant", "content": ""});
    } else {
        body["response"] = json!("");
    }
    Ok(Json(body).into_response())
}

pub async fn generate(
    State(state): State<Arc<AppState>>,
    Extension(log): Extension<Arc<RequestLog>>,
    Body(req): Body<GenerateRequest>,
) -> Result<Response> {
    let template = req.common.template()?;
    no_images(&req.images)?;
    let suffix = req.suffix.filter(|s| !s.is_empty());
    if req.prompt.is_empty() && suffix.is_none() {
        return load_or_unload(&state, &req.common, false).await;
    }
    let prompt = if let Some(suffix) = suffix {
        Prompt::Fill {
            prefix: req.prompt,
            suffix,
        }
    } else if req.raw {
        Prompt::Raw(req.prompt)
    } else {
        Prompt::Chat {
            messages: vec![Message::new("user", req.prompt)],
            system: req.system,
            template,
            tools: None,
        }
    };
    respond(state, log, req.common, vec![(prompt, None)], false).await
}

pub async fn chat(
    State(state): State<Arc<AppState>>,
    Extension(log): Extension<Arc<RequestLog>>,
    extensions: axum::http::Extensions,
    Body(req): Body<ChatRequest>,
) -> Result<Response> {
    let template = req.common.template()?;
    let tools = generate::request_tools(req.tools)?;
    for m in &req.messages {
        no_images(&m.images)?;
    }
    if req.messages.is_empty() {
        return load_or_unload(&state, &req.common, true).await;
    }
    let mut messages = Vec::with_capacity(req.messages.len());
    for (i, m) in req.messages.into_iter().enumerate() {
        let tool_calls = m
            .tool_calls
            .unwrap_or_default()
            .iter()
            .enumerate()
            .map(|(j, c)| generate::tool_call(c, &format!("messages[{i}].tool_calls[{j}]")))
            .collect::<Result<Vec<_>>>()?;
        messages.push(Message {
            role: m.role,
            content: m.content.unwrap_or_default(),
            tool_calls,
            tool_call_id: m.tool_call_id,
            name: m.tool_name,
        });
    }
    generate::name_tool_results(&mut messages);
    let prompt = Prompt::Chat {
        messages,
        system: None,
        template,
        tools,
    };
    let prompts = crate::retrieval::augment(&state, &extensions, &req.collections, prompt).await?;
    respond(state, log, req.common, prompts, true).await
}

/// A tool call as Ollama answers it: `{"id", "function": {"index", "name", "arguments": {}}}`.
fn tool_call_json(index: usize, call: &ToolCall) -> Value {
    json!({
        "id": call.id,
        "function": {"index": index, "name": call.name, "arguments": call.arguments},
    })
}

/// Runs a generation of the first of `prompts` that fits (with the sources it reports) and
/// answers as a stream of NDJSON lines or as one object.
async fn respond(
    state: Arc<AppState>,
    log: Arc<RequestLog>,
    common: Common,
    prompts: Vec<(Prompt, Option<Value>)>,
    chat: bool,
) -> Result<Response> {
    let grammar = common.grammar()?;
    let logprobs = common.logprobs()?;
    let keep_alive = common.keep_alive()?;
    let started = generate::start_first_fitting(&state, prompts, |prompt| GenerationRequest {
        model: common.model.clone(),
        prompt,
        options: common.options.clone().unwrap_or_default(),
        keep_alive,
        truncate: common.truncate.unwrap_or(false),
        logprobs,
        grammar: grammar.clone(),
        tool_choice: ToolChoice::Auto,
    })
    .await?;
    if state.log_prompts {
        eprintln!(
            "prompt for {}: {} tokens",
            common.model, started.prompt_tokens
        );
    }
    let model = common.model.clone();
    let chunk = move |text: &str, lps: &[Logprob]| -> Value {
        let mut v = json!({"model": model, "created_at": now(), "done": false});
        if chat {
            v["message"] = json!({"role": "assistant", "content": text});
        } else {
            v["response"] = json!(text);
        }
        if logprobs.is_some() && !lps.is_empty() {
            v["logprobs"] = lps.iter().map(logprob_json).collect();
        }
        v
    };
    if common.stream.unwrap_or(true) {
        let render = move |piece: Piece<'_>, started: &Started| {
            let v = match piece {
                Piece::Text(t, lps) => chunk(t, lps),
                Piece::Call(index, call) => {
                    let mut v = chunk("", &[]);
                    v["message"]["tool_calls"] = json!([tool_call_json(index, call)]);
                    v
                }
                Piece::Done(stats) => {
                    let mut v = chunk("", &[]);
                    if let Value::Object(m) = &mut v {
                        m.extend(statistics(started, stats));
                    }
                    if let Some(sources) = &started.sources {
                        v["sources"] = sources.clone();
                    }
                    v
                }
                Piece::Failed(e) => json!({ "error": e }),
            };
            format!("{v}\n")
        };
        let body = generate::stream_body(state, started, Some(log), render, None);
        return Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response());
    }
    let (done, started) = started.collect(&state).await?;
    log.set_tokens(
        &started.model_name,
        started.prompt_tokens,
        done.stats.generated_tokens,
    );
    let mut v = chunk(&done.text, &done.logprobs);
    if !done.calls.is_empty() {
        v["message"]["tool_calls"] = done
            .calls
            .iter()
            .enumerate()
            .map(|(i, c)| tool_call_json(i, c))
            .collect();
    }
    if let Value::Object(m) = &mut v {
        m.extend(statistics(&started, &done.stats));
    }
    if let Some(sources) = &started.sources {
        v["sources"] = sources.clone();
    }
    Ok(Json(v).into_response())
}

#[derive(Deserialize)]
pub struct EmbedRequest {
    model: String,
    #[serde(default)]
    input: Value,
    /// The legacy endpoint's single text.
    #[serde(default)]
    prompt: Option<String>,
    #[serde(default)]
    truncate: Option<bool>,
    #[serde(default)]
    dimensions: Option<usize>,
    #[serde(default)]
    options: Option<Map<String, Value>>,
    #[serde(default)]
    keep_alive: Option<Value>,
}

impl EmbedRequest {
    async fn run(self, state: &Arc<AppState>, inputs: Vec<String>) -> Result<generate::Embedded> {
        generate::embed(
            state,
            generate::EmbedRequest {
                model: self.model,
                inputs,
                options: self.options.unwrap_or_default(),
                keep_alive: self.keep_alive.as_ref().map(parse_keep_alive).transpose()?,
                truncate: self.truncate.unwrap_or(true),
                dimensions: self.dimensions,
            },
        )
        .await
    }
}

/// `/api/embed`: `input` (a string or a list) → `embeddings`.
pub async fn embed(
    State(state): State<Arc<AppState>>,
    Body(req): Body<EmbedRequest>,
) -> Result<Json<Value>> {
    let inputs = generate::embed_inputs(&req.input)?;
    let model = req.model.clone();
    let e = req.run(&state, inputs).await?;
    Ok(Json(json!({
        "model": model,
        "embeddings": e.vectors,
        "total_duration": e.started.elapsed().as_nanos() as u64,
        "load_duration": e.load_duration.as_nanos() as u64,
        "prompt_eval_count": e.prompt_tokens,
    })))
}

/// `/api/embeddings` (legacy): `prompt` → `embedding`.
pub async fn embeddings(
    State(state): State<Arc<AppState>>,
    Body(req): Body<EmbedRequest>,
) -> Result<Json<Value>> {
    let prompt = req.prompt.clone().unwrap_or_default();
    let mut e = req.run(&state, vec![prompt]).await?;
    Ok(Json(
        json!({ "embedding": e.vectors.pop().unwrap_or_default() }),
    ))
}
