//! What the Ollama and OpenAI handlers share: turning a request into tokens on a scheduled slot
//! ([`start`]), reading the slot's events to the end ([`Finished`]) or streaming them
//! ([`stream_body`]), and tool calling: the request's tools and tool calls checked
//! ([`request_tools`], [`tool_call`]), the model's calls found in its answer (with the
//! [`chat::tools`] parser of the model's family) and given ids.

use crate::error::{Result, ServerError};
use crate::options::{self, KeepAlive, Settings};
use crate::runner::{Event, Job, Logprob, Runner};
use crate::scheduler::LoadRequest;
use crate::AppState;
use chat::tools::{ToolEvent, ToolFormat, ToolParser};
use chat::ToolCall;
use engine::{GenerationStats, Message, StopReason};
use serde_json::{json, Map, Value};
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Events buffered between a slot thread and its response: enough to keep the slot busy while
/// the network catches up, small enough that a stalled client stops it soon.
const EVENT_BUFFER: usize = 64;

/// What to continue.
pub enum Prompt {
    /// Text tokenized as it is (special-token text included), no template.
    Raw(String),
    /// Fill in the middle: the code before and after the gap, in the model's FIM markers.
    Fill { prefix: String, suffix: String },
    /// A conversation rendered with the model's chat template, or with `template` (Jinja, this
    /// request's only). The model's SYSTEM is added when the messages have no system message
    /// and `system` is `None`. With `tools` (checked by [`request_tools`]) the template gets them
    /// and the answer's tool calls are parsed out of it.
    Chat {
        messages: Vec<Message>,
        system: Option<String>,
        template: Option<String>,
        tools: Option<Vec<Value>>,
    },
}

pub struct GenerationRequest {
    pub model: String,
    pub prompt: Prompt,
    pub options: Map<String, Value>,
    /// `None`: the server's default.
    pub keep_alive: Option<KeepAlive>,
    /// `truncate` from the request body (an option of the same name works too).
    pub truncate: bool,
    /// Each generated token's log-probability and this many alternatives; `None`: none.
    pub logprobs: Option<usize>,
    /// The grammar the answer must follow ([`crate::structured`]); `None`: free text.
    pub grammar: Option<Arc<grammar::Grammar>>,
    /// Whether the answer must be a tool call (OpenAI's `tool_choice`).
    pub tool_choice: ToolChoice,
}

/// OpenAI's `tool_choice` (with tools given; `"none"` gives the template no tools).
#[derive(Clone, Debug, Default, PartialEq)]
pub enum ToolChoice {
    /// The model answers or calls, as it likes.
    #[default]
    Auto,
    /// The answer is a call of one of the tools (enforced with a grammar).
    Required,
    /// The answer is a call of this function.
    Function(String),
}

/// A generation under way.
pub struct Started {
    pub events: mpsc::Receiver<Event>,
    pub started: Instant,
    pub load_duration: Duration,
    /// The whole prompt's tokens (the engine evaluates only what its cache lacks).
    pub prompt_tokens: usize,
    /// Whether the start of the prompt was dropped to fit (asked for with `truncate`).
    pub truncated: bool,
    /// The context size of the slot it runs on.
    pub n_ctx: usize,
    pub settings: Settings,
    /// The model's name as the store spells it.
    pub model_name: String,
    /// How the model writes tool calls, when the request gave tools and the template's family
    /// is known: the answer is parsed for them.
    pub tools: Option<ToolFormat>,
    /// The document passages the prompt was given ([`crate::retrieval`]), reported with the
    /// answer.
    pub sources: Option<Value>,
}

/// A slot of `model` (loaded for the context size the request's `options` ask for, if any).
async fn lease(
    state: &AppState,
    model: &str,
    options: &Map<String, Value>,
    keep_alive: Option<KeepAlive>,
) -> Result<crate::Lease> {
    let asked = options::settings(&[options])?;
    let request = LoadRequest {
        model: model.to_string(),
        n_ctx: asked.n_ctx,
    };
    state.scheduler.acquire(request, keep_alive).await
}

/// Schedules the request on a slot of its model, renders and tokenizes the prompt, checks it
/// fits, and sets the slot generating.
/// [`start`] with the first of `prompts` that fits the model's context (`request` makes the
/// request of each), with the sources it reports: a chat with document passages, then with
/// fewer, down to none (see [`crate::retrieval::augment`]).
pub async fn start_first_fitting(
    state: &Arc<AppState>,
    prompts: Vec<(Prompt, Option<Value>)>,
    request: impl Fn(Prompt) -> GenerationRequest,
) -> Result<Started> {
    let last = prompts.len().saturating_sub(1);
    for (i, (prompt, sources)) in prompts.into_iter().enumerate() {
        match start(state, request(prompt)).await {
            Err(ServerError::PromptTooLong { .. }) if i < last => continue,
            Ok(mut started) => {
                started.sources = sources;
                return Ok(started);
            }
            Err(e) => return Err(e),
        }
    }
    Err(ServerError::Internal("no prompt to start".into()))
}

pub async fn start(state: &Arc<AppState>, req: GenerationRequest) -> Result<Started> {
    let started = Instant::now();
    let lease = lease(state, &req.model, &req.options, req.keep_alive).await?;
    let runner = lease.model().clone();
    let hp = &runner.model.hparams;
    if hp.arch.is_encoder() {
        return Err(engine::EngineError::NotGenerative {
            arch: hp.arch.name(),
        }
        .into());
    }
    let mut settings = options::settings(&[&runner.resolved.params, &req.options])?;
    settings.generate.logprobs = req.logprobs;
    settings.generate.grammar = req.grammar;
    let required_call = match (&req.tool_choice, &req.prompt) {
        (ToolChoice::Auto, _) => None,
        (
            choice,
            Prompt::Chat {
                tools: Some(tools), ..
            },
        ) if !tools.is_empty() => {
            let name = match choice {
                ToolChoice::Function(name) => Some(name.clone()),
                _ => None,
            };
            Some((tools.clone(), name))
        }
        _ => {
            return Err(ServerError::BadRequest(
                "tool_choice requires a call but the request has no tools".into(),
            ))
        }
    };
    let truncate = req.truncate || settings.truncate;
    let n_ctx = lease.n_ctx();
    let load_duration = lease.load_duration;
    let prompt = req.prompt;
    let worker = runner.clone();
    let (tokens, truncated, tools_format) =
        tokio::task::spawn_blocking(move || tokenize(&worker, prompt, n_ctx, truncate))
            .await
            .map_err(|e| ServerError::Internal(format!("tokenizing failed: {e}")))??;
    if let Some((tools, name)) = required_call {
        let format = tools_format.ok_or_else(|| {
            ServerError::BadRequest(format!(
                "tool_choice cannot require a call: the tool-call format of {}'s template is not known",
                runner.resolved.name
            ))
        })?;
        if settings.generate.grammar.is_some() {
            return Err(ServerError::BadRequest(
                "tool_choice requires a call and response_format or grammar constrains the answer: send one of them".into(),
            ));
        }
        settings.generate.grammar = Some(crate::structured::tool_call(
            format,
            &tools,
            name.as_deref(),
        )?);
    }
    let tools = tools_format;
    let (tx, events) = mpsc::channel(EVENT_BUFFER);
    let prompt_tokens = tokens.len();
    runner.submit(Job {
        tokens,
        sampler: settings.sampler.clone(),
        generate: settings.generate.clone(),
        events: tx,
        guard: Box::new(lease),
    })?;
    Ok(Started {
        events,
        started,
        load_duration,
        prompt_tokens,
        truncated,
        n_ctx,
        settings,
        model_name: runner.resolved.name.to_string(),
        tools,
        sources: None,
    })
}

/// The prompt's tokens, at most `n_ctx - 1` so that one can be generated, whether they were
/// truncated, and the tool-call format to parse the answer with. Too long is an error unless
/// `truncate`: then the oldest messages after any system message go first (the last is always
/// kept), or for raw text the start of the text. Tools for a template that does not use them
/// are a 400, as in Ollama.
fn tokenize(
    runner: &Runner,
    prompt: Prompt,
    n_ctx: usize,
    truncate: bool,
) -> Result<(Vec<u32>, bool, Option<ToolFormat>)> {
    let limit = n_ctx.saturating_sub(1);
    let too_long = |tokens: usize| ServerError::PromptTooLong { tokens, n_ctx };
    match prompt {
        Prompt::Fill { prefix, suffix } => {
            let tokens = runner
                .model
                .fill_in_middle_tokens(&prefix, &suffix)
                .ok_or_else(|| {
                    ServerError::BadRequest(format!(
                        "{} has no fill-in-the-middle tokens: use a code model that has them \
                         (Qwen2.5-Coder, StarCoder, CodeLlama), or send the prompt without suffix",
                        runner.resolved.name
                    ))
                })?;
            if tokens.len() <= limit {
                Ok((tokens, false, None))
            } else {
                Err(too_long(tokens.len()))
            }
        }
        Prompt::Raw(text) => {
            let tokens = runner.model.tokenizer.encode(&text, true, true);
            if tokens.len() <= limit {
                Ok((tokens, false, None))
            } else if truncate {
                Ok((tokens[tokens.len() - limit..].to_vec(), true, None))
            } else {
                Err(too_long(tokens.len()))
            }
        }
        Prompt::Chat {
            messages,
            system,
            template,
            tools,
        } => {
            let template = template
                .map(|source| {
                    runner.model.template_from(&source).map_err(|e| {
                        ServerError::BadRequest(format!(
                            "template is not a valid Jinja chat template: {e}"
                        ))
                    })
                })
                .transpose()?;
            let tools = tools.filter(|t| !t.is_empty());
            let format = match &tools {
                None => None,
                Some(_) => {
                    let used = template.as_ref().unwrap_or(&runner.model.template);
                    if !used.supports_tools() {
                        return Err(ServerError::BadRequest(format!(
                            "{} does not support tools: its chat template does not use them",
                            runner.resolved.name
                        )));
                    }
                    used.tool_format()
                }
            };
            let r = &runner.resolved;
            let has_system = messages.iter().any(|m| m.role == "system");
            let system = system.or_else(|| r.system.clone().filter(|_| !has_system));
            let mut all: Vec<Message> = system
                .map(|s| Message::new("system", s))
                .into_iter()
                .collect();
            all.extend(r.messages.iter().map(|m| Message::new(&m.role, &m.content)));
            all.extend(messages);
            let mut truncated = false;
            loop {
                let tokens = runner.chat_tokens(&all, tools.as_deref(), template.as_ref())?;
                if tokens.len() <= limit {
                    return Ok((tokens, truncated, format));
                }
                let oldest = all
                    .iter()
                    .position(|m| m.role != "system")
                    .filter(|&i| i + 1 < all.len());
                match oldest {
                    Some(i) if truncate => {
                        all.remove(i);
                        truncated = true;
                    }
                    _ => return Err(too_long(tokens.len())),
                }
            }
        }
    }
}

/// A whole generation's result.
pub struct Finished {
    /// The answer; with tools, the text outside its tool calls.
    pub text: String,
    /// The tool calls found in the answer (each with an id).
    pub calls: Vec<ToolCall>,
    /// The tokens' log-probabilities, when the request asked for them.
    pub logprobs: Vec<Logprob>,
    pub stats: GenerationStats,
    pub ttft: Option<Duration>,
}

/// Why generation ended, in Ollama's and OpenAI's words.
pub fn done_reason(stop: &StopReason) -> &'static str {
    match stop {
        StopReason::MaxTokens | StopReason::ContextFull => "length",
        _ => "stop",
    }
}

impl Started {
    /// Reads every event: the whole text and the statistics (non-streaming answers).
    pub async fn collect(mut self, state: &AppState) -> Result<(Finished, Started)> {
        let mut text = String::new();
        let mut logprobs = Vec::new();
        let mut ttft = None;
        loop {
            match self.events.recv().await {
                Some(Event::Text(t, lps)) => {
                    ttft.get_or_insert_with(|| self.started.elapsed());
                    text.push_str(&t);
                    logprobs.extend(lps);
                }
                Some(Event::Done(stats)) => {
                    self.record(state, &stats, ttft);
                    let (text, calls) = match self.tools {
                        None => (text, Vec::new()),
                        Some(format) => {
                            let mut calls = Vec::new();
                            let mut content = String::new();
                            let mut parser = ToolParser::new(format);
                            let mut events = parser.push(&text);
                            events.extend(parser.finish());
                            for e in events {
                                match self.tool_event(e) {
                                    Output::Text(t) => content.push_str(&t),
                                    Output::Call(c) => calls.push(c),
                                }
                            }
                            (content, calls)
                        }
                    };
                    let finished = Finished {
                        text,
                        calls,
                        logprobs,
                        stats,
                        ttft,
                    };
                    return Ok((finished, self));
                }
                Some(Event::Failed(e)) => return Err(e.into()),
                None => {
                    return Err(ServerError::Internal(
                        "the generation ended without a result".into(),
                    ))
                }
            }
        }
    }

    /// A parser event as content or a call: a call gets an id, a malformed call is content and
    /// is logged.
    fn tool_event(&self, event: ToolEvent) -> Output {
        match event {
            ToolEvent::Text(t) => Output::Text(t),
            ToolEvent::Call(mut c) => {
                if c.id.as_deref().is_none_or(str::is_empty) {
                    c.id = Some(call_id());
                }
                Output::Call(c)
            }
            ToolEvent::Malformed { text, warning } => {
                eprintln!(
                    "warning: {}: a malformed tool call is returned as text: {warning}",
                    self.model_name
                );
                Output::Text(text)
            }
        }
    }

    /// Adds a finished generation to the metrics.
    pub fn record(&self, state: &AppState, stats: &GenerationStats, ttft: Option<Duration>) {
        state.metrics.generation(
            self.prompt_tokens,
            stats.generated_tokens,
            ttft,
            stats.generation_time,
        );
    }
}

/// A token's log-probability as OpenAI's chat API and Ollama's show it: `token` (lossy UTF-8),
/// `logprob`, `bytes`, and `top_logprobs` of the same shape without their own alternatives.
pub fn logprob_json(lp: &Logprob) -> Value {
    let entry = |t: &crate::runner::TokenChoice| json!({"token": t.text(), "logprob": t.logprob, "bytes": t.bytes});
    let mut v = entry(&lp.chosen);
    v["top_logprobs"] = lp.top.iter().map(entry).collect();
    v
}

/// Content or a tool call, from the answer.
enum Output {
    Text(String),
    Call(ToolCall),
}

/// What a streaming handler turns into one chunk of its body.
pub enum Piece<'a> {
    /// Text and its tokens' log-probabilities (empty unless asked for).
    Text(&'a str, &'a [Logprob]),
    /// The answer's `index`-th tool call (0, 1, ...), complete.
    Call(usize, &'a ToolCall),
    Done(&'a GenerationStats),
    Failed(&'a str),
}

/// A streamed response body: each event of `started` rendered by `render` (an NDJSON line or an
/// SSE event), then `tail` (e.g. `data: [DONE]`). The rendering runs in a task that ends when
/// the client goes away: dropping the body drops the receiver, the next send fails, the task
/// drops its events receiver, and the slot thread stops at its next token.
///
/// With tools the text goes through the model family's tool-call detector: content passes on
/// at once, text that may start a call waits, and each call is rendered as a [`Piece::Call`]
/// when it closes. Log-probabilities go with the next content piece (those of a call's tokens
/// are dropped).
pub fn stream_body(
    state: Arc<AppState>,
    mut started: Started,
    log: Option<Arc<crate::RequestLog>>,
    mut render: impl FnMut(Piece<'_>, &Started) -> String + Send + 'static,
    tail: Option<String>,
) -> axum::body::Body {
    let (tx, rx) = mpsc::channel::<Result<String, std::convert::Infallible>>(EVENT_BUFFER);
    tokio::spawn(async move {
        let mut ttft = None;
        let mut parser = started.tools.map(ToolParser::new);
        let mut calls = 0;
        let mut held: Vec<Logprob> = Vec::new();
        while let Some(event) = started.events.recv().await {
            let chunk = match event {
                Event::Text(t, lps) => {
                    ttft.get_or_insert_with(|| started.started.elapsed());
                    match &mut parser {
                        None => render(Piece::Text(&t, &lps), &started),
                        Some(p) => {
                            held.extend(lps);
                            let events = p.push(&t);
                            detected(events, &mut held, &mut calls, &started, &mut render)
                        }
                    }
                }
                Event::Done(stats) => {
                    let mut chunk = match &mut parser {
                        Some(p) => {
                            detected(p.finish(), &mut held, &mut calls, &started, &mut render)
                        }
                        None => String::new(),
                    };
                    started.record(&state, &stats, ttft);
                    if let Some(log) = &log {
                        log.set_tokens(
                            &started.model_name,
                            started.prompt_tokens,
                            stats.generated_tokens,
                        );
                    }
                    chunk += &render(Piece::Done(&stats), &started);
                    chunk
                }
                Event::Failed(e) => render(Piece::Failed(&e.to_string()), &started),
            };
            if chunk.is_empty() {
                continue;
            }
            if tx.send(Ok(chunk)).await.is_err() {
                return;
            }
        }
        if let Some(tail) = tail {
            let _ = tx.send(Ok(tail)).await;
        }
    });
    axum::body::Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
}

/// Renders what the tool-call detector yielded: content with the log-probabilities `held` so
/// far, and calls, counted in `calls`.
fn detected(
    events: Vec<ToolEvent>,
    held: &mut Vec<Logprob>,
    calls: &mut usize,
    started: &Started,
    render: &mut impl FnMut(Piece<'_>, &Started) -> String,
) -> String {
    let mut chunk = String::new();
    for e in events {
        match started.tool_event(e) {
            Output::Text(t) => chunk += &render(Piece::Text(&t, held), started),
            Output::Call(c) => {
                chunk += &render(Piece::Call(*calls, &c), started);
                *calls += 1;
            }
        }
        held.clear();
    }
    chunk
}

/// A new tool call id: `call_` and 24 random letters and digits, as OpenAI's look.
pub fn call_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut id = String::from("call_");
    let mut bits = 0u64;
    for i in 0..24 {
        if i % 8 == 0 {
            // RandomState is seeded from the OS once per process and varied per instance.
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
            bits = h.finish();
        }
        id.push(ALPHABET[(bits % ALPHABET.len() as u64) as usize] as char);
        bits /= ALPHABET.len() as u64;
    }
    id
}

/// A request's `tools`, checked: a list of `{"type": "function", "function": {"name",
/// "description"?, "parameters"?}}` (`type` may be left out). `None` for none (null or an empty
/// list). A 400 names the field that is wrong.
pub fn request_tools(tools: Option<Value>) -> Result<Option<Vec<Value>>> {
    let bad = |what: String| Err(ServerError::BadRequest(what));
    let tools = match tools {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(tools)) if tools.is_empty() => return Ok(None),
        Some(Value::Array(tools)) => tools,
        Some(other) => return bad(format!("tools must be a list of tools, not {other}")),
    };
    for (i, tool) in tools.iter().enumerate() {
        let Some(tool) = tool.as_object() else {
            return bad(format!(
                "tools[{i}] must be an object {{\"type\": \"function\", \"function\": {{...}}}}"
            ));
        };
        match tool.get("type") {
            None => {}
            Some(Value::String(t)) if t == "function" => {}
            Some(other) => {
                return bad(format!(
                    "tools[{i}].type is {other}: only \"function\" tools are supported"
                ))
            }
        }
        let Some(function) = tool.get("function").and_then(Value::as_object) else {
            return bad(format!(
                "tools[{i}].function must be an object with the function's name, description and parameters"
            ));
        };
        match function.get("name") {
            Some(Value::String(n)) if !n.trim().is_empty() => {}
            _ => {
                return bad(format!(
                    "tools[{i}].function.name must be a non-empty string"
                ))
            }
        }
        if function
            .get("description")
            .is_some_and(|d| !d.is_string() && !d.is_null())
        {
            return bad(format!("tools[{i}].function.description must be a string"));
        }
        if function
            .get("parameters")
            .is_some_and(|p| !p.is_object() && !p.is_null())
        {
            return bad(format!(
                "tools[{i}].function.parameters must be a JSON schema object"
            ));
        }
    }
    Ok(Some(tools))
}

/// A tool call of a request's assistant message, `at` naming it in errors
/// (`messages[1].tool_calls[0]`): `{"id"?, "type"?, "function": {"name", "arguments"}}`, the
/// arguments an object (Ollama) or a string holding one (OpenAI); left out or null, `{}`.
pub fn tool_call(call: &Value, at: &str) -> Result<ToolCall> {
    let bad = |what: String| Err(ServerError::BadRequest(what));
    let Some(function) = call.get("function").and_then(Value::as_object) else {
        return bad(format!(
            "{at}.function must be an object with the function's name and arguments"
        ));
    };
    let name = match function.get("name") {
        Some(Value::String(n)) if !n.trim().is_empty() => n.clone(),
        _ => return bad(format!("{at}.function.name must be a non-empty string")),
    };
    let arguments = match function.get("arguments") {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(v @ Value::Object(_)) => v.clone(),
        Some(Value::String(s)) if s.trim().is_empty() => Value::Object(Map::new()),
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(v @ Value::Object(_)) => v,
            Ok(other) => {
                return bad(format!(
                    "{at}.function.arguments must be a JSON object, not {other}"
                ))
            }
            Err(e) => {
                return bad(format!(
                    "{at}.function.arguments is not valid JSON ({e}): send the arguments as a JSON object in a string"
                ))
            }
        },
        Some(other) => {
            return bad(format!(
                "{at}.function.arguments must be a JSON object, not {other}"
            ))
        }
    };
    let id = match call.get("id") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) => Some(id.clone()),
        Some(other) => return bad(format!("{at}.id must be a string, not {other}")),
    };
    Ok(ToolCall {
        id,
        name,
        arguments,
    })
}

/// Gives each tool result that names no tool the name of the call it answers (by
/// `tool_call_id`, among the earlier assistant messages' calls), for templates that show it.
pub fn name_tool_results(messages: &mut [Message]) {
    for i in 0..messages.len() {
        let (earlier, rest) = messages.split_at_mut(i);
        let m = &mut rest[0];
        if m.role != "tool" || m.name.is_some() {
            continue;
        }
        let Some(id) = m.tool_call_id.as_deref() else {
            continue;
        };
        m.name = earlier
            .iter()
            .rev()
            .flat_map(|e| &e.tool_calls)
            .find(|c| c.id.as_deref() == Some(id))
            .map(|c| c.name.clone());
    }
}

/// Embeddings of several texts.
pub struct Embedded {
    pub vectors: Vec<Vec<f32>>,
    pub prompt_tokens: usize,
    pub load_duration: Duration,
    pub started: Instant,
}

/// What an embedding request asks for.
pub struct EmbedRequest {
    pub model: String,
    pub inputs: Vec<String>,
    pub options: Map<String, Value>,
    pub keep_alive: Option<KeepAlive>,
    /// Cut an input longer than the context to fit (Ollama's default) instead of a 400.
    pub truncate: bool,
    /// Keep only the first `dimensions` values, scaled back to unit length.
    pub dimensions: Option<usize>,
}

/// The mean-pooled, unit-length final hidden states of each input ([`engine::Model::embed`]),
/// computed on a scheduled slot of the model.
pub async fn embed(state: &Arc<AppState>, req: EmbedRequest) -> Result<Embedded> {
    let started = Instant::now();
    let lease = lease(state, &req.model, &req.options, req.keep_alive).await?;
    let load_duration = lease.load_duration;
    let (truncate, dimensions) = (req.truncate, req.dimensions);
    let (vectors, prompt_tokens) = tokio::task::spawn_blocking(move || -> Result<_> {
        let runner = lease.model();
        let n_ctx = lease.n_ctx();
        let mut inputs = Vec::with_capacity(req.inputs.len());
        let mut count = 0;
        for text in &req.inputs {
            // User text never becomes special tokens.
            let mut tokens = runner.model.tokenizer.encode(text, true, false);
            if tokens.len() > n_ctx {
                if !truncate {
                    return Err(ServerError::PromptTooLong {
                        tokens: tokens.len(),
                        n_ctx,
                    });
                }
                tokens.truncate(n_ctx);
            }
            count += tokens.len();
            inputs.push(tokens);
        }
        // An embedding model runs the inputs together.
        let mut vectors = runner.model.embed_many(&inputs)?;
        for v in &mut vectors {
            if let Some(d) = dimensions.filter(|&d| d > 0 && d < v.len()) {
                v.truncate(d);
                let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                if norm > 0.0 {
                    v.iter_mut().for_each(|x| *x /= norm);
                }
            }
        }
        Ok((vectors, count))
    })
    .await
    .map_err(|e| ServerError::Internal(format!("embedding failed: {e}")))??;
    state
        .metrics
        .generation(prompt_tokens, 0, None, Duration::ZERO);
    Ok(Embedded {
        vectors,
        prompt_tokens,
        load_duration,
        started,
    })
}

/// `input` of an embedding request: a string or a list of strings.
pub fn embed_inputs(input: &Value) -> Result<Vec<String>> {
    match input {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(all) => all
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                ServerError::BadRequest(
                    "input must be a string or a non-empty list of strings".into(),
                )
            }),
        _ => Err(ServerError::BadRequest(
            "input must be a string or a list of strings".into(),
        )),
    }
}
