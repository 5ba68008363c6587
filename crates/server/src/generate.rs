//! What the Ollama and OpenAI handlers share: turning a request into tokens on a scheduled slot
//! ([`start`]), and reading the slot's events to the end ([`Finished`]).

use crate::error::{Result, ServerError};
use crate::options::{self, KeepAlive, Settings};
use crate::runner::{Event, Job, Logprob, Runner};
use crate::scheduler::LoadRequest;
use crate::AppState;
use engine::{GenerationStats, Message, StopReason};
use serde_json::{json, Map, Value};
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
    /// and `system` is `None`.
    Chat {
        messages: Vec<Message>,
        system: Option<String>,
        template: Option<String>,
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
    pub settings: Settings,
    /// The model's name as the store spells it.
    pub model_name: String,
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
pub async fn start(state: &Arc<AppState>, req: GenerationRequest) -> Result<Started> {
    let started = Instant::now();
    let lease = lease(state, &req.model, &req.options, req.keep_alive).await?;
    let runner = lease.model().clone();
    let mut settings = options::settings(&[&runner.resolved.params, &req.options])?;
    settings.generate.logprobs = req.logprobs;
    let truncate = req.truncate || settings.truncate;
    let n_ctx = lease.n_ctx();
    let load_duration = lease.load_duration;
    let prompt = req.prompt;
    let worker = runner.clone();
    let (tokens, truncated) =
        tokio::task::spawn_blocking(move || tokenize(&worker, prompt, n_ctx, truncate))
            .await
            .map_err(|e| ServerError::Internal(format!("tokenizing failed: {e}")))??;
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
        settings,
        model_name: runner.resolved.name.to_string(),
    })
}

/// The prompt's tokens, at most `n_ctx - 1` so that one can be generated. Too long is an error
/// unless `truncate`: then the oldest messages after any system message go first (the last is
/// always kept), or for raw text the start of the text.
fn tokenize(
    runner: &Runner,
    prompt: Prompt,
    n_ctx: usize,
    truncate: bool,
) -> Result<(Vec<u32>, bool)> {
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
                Ok((tokens, false))
            } else {
                Err(too_long(tokens.len()))
            }
        }
        Prompt::Raw(text) => {
            let tokens = runner.model.tokenizer.encode(&text, true, true);
            if tokens.len() <= limit {
                Ok((tokens, false))
            } else if truncate {
                Ok((tokens[tokens.len() - limit..].to_vec(), true))
            } else {
                Err(too_long(tokens.len()))
            }
        }
        Prompt::Chat {
            messages,
            system,
            template,
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
                let tokens = runner.chat_tokens(&all, template.as_ref())?;
                if tokens.len() <= limit {
                    return Ok((tokens, truncated));
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
    pub text: String,
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
                    let finished = Finished {
                        text,
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

/// What a streaming handler turns into one chunk of its body.
pub enum Piece<'a> {
    /// Text and its tokens' log-probabilities (empty unless asked for).
    Text(&'a str, &'a [Logprob]),
    Done(&'a GenerationStats),
    Failed(&'a str),
}

/// A streamed response body: each event of `started` rendered by `render` (an NDJSON line or an
/// SSE event), then `tail` (e.g. `data: [DONE]`). The rendering runs in a task that ends when
/// the client goes away: dropping the body drops the receiver, the next send fails, the task
/// drops its events receiver, and the slot thread stops at its next token.
///
/// With `json` the whole text is checked to be JSON at the end and a failure is rendered as an
/// error (`format: "json"` is validated, not enforced while sampling).
pub fn stream_body(
    state: Arc<AppState>,
    mut started: Started,
    log: Option<Arc<crate::RequestLog>>,
    json: bool,
    mut render: impl FnMut(Piece<'_>, &Started) -> String + Send + 'static,
    tail: Option<String>,
) -> axum::body::Body {
    let (tx, rx) = mpsc::channel::<Result<String, std::convert::Infallible>>(EVENT_BUFFER);
    tokio::spawn(async move {
        let mut ttft = None;
        let mut all = String::new();
        while let Some(event) = started.events.recv().await {
            let chunk = match event {
                Event::Text(t, lps) => {
                    ttft.get_or_insert_with(|| started.started.elapsed());
                    if json {
                        all.push_str(&t);
                    }
                    render(Piece::Text(&t, &lps), &started)
                }
                Event::Done(stats) => {
                    started.record(&state, &stats, ttft);
                    if let Some(log) = &log {
                        log.set_tokens(started.prompt_tokens, stats.generated_tokens);
                    }
                    match check_json(json, &all) {
                        Ok(()) => render(Piece::Done(&stats), &started),
                        Err(e) => render(Piece::Failed(&e.to_string()), &started),
                    }
                }
                Event::Failed(e) => render(Piece::Failed(&e.to_string()), &started),
            };
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

/// With `json`: that `text` is one JSON value.
pub fn check_json(json: bool, text: &str) -> Result<()> {
    if json && serde_json::from_str::<serde::de::IgnoredAny>(text).is_err() {
        return Err(ServerError::Internal(
            "the model's answer is not valid JSON (format \"json\" is checked, not enforced while sampling): ask for JSON in the prompt too, or retry with a lower temperature".into(),
        ));
    }
    Ok(())
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
        let mut vectors = Vec::with_capacity(req.inputs.len());
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
            let mut v = runner.model.embed(&tokens)?;
            if let Some(d) = dimensions.filter(|&d| d > 0 && d < v.len()) {
                v.truncate(d);
                let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                if norm > 0.0 {
                    v.iter_mut().for_each(|x| *x /= norm);
                }
            }
            vectors.push(v);
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
