//! Hearth's HTTP server: Ollama's API and the OpenAI-compatible one over the engine and the
//! model store, secure by default.
//!
//! - [`Config`] is everything `hearth serve` sets; [`serve`] binds, checks the security rules
//!   (loopback by default; API keys or a [`security::Gate`] required before listening on the
//!   network) and runs; [`app`] builds the [`axum::Router`] alone (tests drive it in-process).
//!   An [`Extension`] adds an application's routes (the web app) beside the APIs, behind the
//!   same guards.
//! - [`scheduler::Scheduler`] loads models on first use through a [`scheduler::Loader`] (the
//!   real one is [`runner::EngineLoader`]), keeps them for `keep_alive`, evicts the least
//!   recently used idle one when memory runs short, and bounds the wait queue (503 beyond it).
//!   A loaded model is a [`runner::Runner`]: a thread per slot, each with its own KV cache,
//!   and the prompts the slots processed kept for each other ([`prefixes::Prefixes`]).
//! - [`generate`] turns a request into tokens on a slot and reads the slot's events; the
//!   handlers in [`ollama`] (NDJSON) and [`openai`] (SSE) shape them for their clients.
//! - [`security`] guards every request (Host check against DNS rebinding, CORS, API keys);
//!   [`metrics`] counts for `/metrics`; every failure is a [`ServerError`] with its status.
//!
//! Request logs (standard error, one line per request: method, path, status, duration, tokens)
//! never contain prompt text unless [`Config::log_prompts`] is set.

pub mod error;
pub mod generate;
pub mod manage;
pub mod metrics;
pub mod ollama;
pub mod openai;
pub mod options;
pub mod prefixes;
pub mod retrieval;
pub mod runner;
pub mod scheduler;
pub mod security;
pub mod structured;

pub use error::{Result, ServerError};

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use options::KeepAlive;
use runner::EngineLoader;
use scheduler::{Scheduler, SchedulerConfig};
use security::Security;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use store::Store;

/// The address Ollama's clients look for.
pub const DEFAULT_HOST: &str = "127.0.0.1:11434";
/// Ollama's default `keep_alive`.
pub const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(300);
pub const DEFAULT_NUM_PARALLEL: usize = 4;
pub const DEFAULT_MAX_QUEUE: usize = 64;
/// Request bodies larger than this are refused (413).
pub const DEFAULT_MAX_BODY: usize = 16 << 20;

/// Everything the server is told.
#[derive(Clone)]
pub struct Config {
    /// `host:port` to listen on.
    pub host: String,
    pub store: Store,
    /// Accepted API keys (`Authorization: Bearer KEY`); required for a non-loopback `host`.
    pub api_keys: Vec<String>,
    /// Listen on the network without keys (with a warning).
    pub insecure_no_auth: bool,
    /// Browser origins allowed besides loopback ones.
    pub origins: Vec<String>,
    pub keep_alive: KeepAlive,
    /// Memory budget for loaded models; `None`: the machine's RAM less a margin.
    pub max_memory: Option<u64>,
    /// Requests each loaded model runs at once; `None`: [`DEFAULT_NUM_PARALLEL`], fewer where
    /// the memory budget is short.
    pub num_parallel: Option<usize>,
    pub max_queue: usize,
    /// Threads per loaded model.
    pub threads: usize,
    pub log_prompts: bool,
    pub max_body_bytes: usize,
    /// Who may call what, instead of the API key check (the web app's accounts).
    pub gate: Option<Arc<dyn security::Gate>>,
    /// Passages for chat requests with `collections` (the web app's documents).
    pub retriever: Option<Arc<dyn retrieval::Retriever>>,
}

impl Config {
    /// The defaults, with models in `store`.
    pub fn new(store: Store) -> Config {
        Config {
            host: DEFAULT_HOST.into(),
            store,
            api_keys: Vec::new(),
            insecure_no_auth: false,
            origins: Vec::new(),
            keep_alive: Some(DEFAULT_KEEP_ALIVE),
            max_memory: None,
            num_parallel: None,
            max_queue: DEFAULT_MAX_QUEUE,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            log_prompts: false,
            max_body_bytes: DEFAULT_MAX_BODY,
            gate: None,
            retriever: None,
        }
    }

    /// The memory budget: `max_memory`, else the machine's RAM less 10% (at least 1 GiB) for
    /// the system and everything else.
    pub fn memory_budget(&self) -> u64 {
        self.max_memory.unwrap_or_else(|| {
            let total = total_memory().unwrap_or(8 << 30);
            total.saturating_sub((total / 10).max(1 << 30))
        })
    }
}

/// The machine's RAM in bytes, from `/proc/meminfo` (Linux); `None` elsewhere.
fn total_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Parses `HEARTH_HOST`-style addresses: `host:port`, `host` (port 11434), `:port`
/// (127.0.0.1), with an optional `http://` in front.
pub fn normalize_host(text: &str) -> String {
    let t = text.trim();
    let t = t
        .strip_prefix("http://")
        .or_else(|| t.strip_prefix("https://"))
        .unwrap_or(t)
        .trim_end_matches('/');
    if t.is_empty() {
        return DEFAULT_HOST.into();
    }
    if let Some(port) = t.strip_prefix(':').filter(|p| p.parse::<u16>().is_ok()) {
        return format!("127.0.0.1:{port}");
    }
    let has_port = match t.strip_prefix('[') {
        Some(rest) => rest.contains("]:"),
        None => t.matches(':').count() == 1,
    };
    if has_port {
        t.to_string()
    } else if t.contains(':') && !t.starts_with('[') {
        format!("[{t}]:11434")
    } else {
        format!("{t}:11434")
    }
}

/// Whether every address `host` resolves to is loopback (an empty resolution is not).
fn all_loopback(addrs: &[SocketAddr]) -> bool {
    !addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback())
}

/// Whether `host` (`host:port`) is a loopback address, i.e. only this machine can connect.
pub fn is_loopback(host: &str) -> Result<bool> {
    use std::net::ToSocketAddrs;
    let addrs: Vec<SocketAddr> = host
        .to_socket_addrs()
        .map_err(|source| ServerError::Bind {
            addr: host.to_string(),
            source,
        })?
        .collect();
    Ok(all_loopback(&addrs))
}

/// What the handlers share.
pub struct AppState {
    pub scheduler: Arc<Scheduler<EngineLoader>>,
    pub metrics: metrics::Metrics,
    pub store: Store,
    pub log_prompts: bool,
    pub retriever: Option<Arc<dyn retrieval::Retriever>>,
}

/// A scheduler lease on a real model.
pub type Lease = scheduler::Lease<EngineLoader>;

/// Routes an application adds beside the APIs, given the server's state; they own `/`.
pub type Extension = Box<dyn FnOnce(Arc<AppState>) -> Router + Send>;

/// `/` without an application: the line Ollama's clients look for.
fn plain_root() -> Extension {
    Box::new(|_| Router::new().route("/", get(|| async { "Hearth is running" })))
}

/// The router with every route and guard, and its state. `loopback`: whether the listener is
/// on loopback (then the `Host` header is checked).
pub fn app(config: &Config, loopback: bool) -> (Router, Arc<AppState>) {
    app_with(config, loopback, plain_root())
}

/// [`app`] with an application's routes behind the same guards.
pub fn app_with(config: &Config, loopback: bool, extension: Extension) -> (Router, Arc<AppState>) {
    let scheduler = Scheduler::new(
        EngineLoader {
            store: config.store.clone(),
            threads: config.threads.max(1),
        },
        SchedulerConfig {
            memory_budget: config.memory_budget(),
            slots: config.num_parallel.unwrap_or(DEFAULT_NUM_PARALLEL).max(1),
            fit_slots: config.num_parallel.is_none(),
            max_queue: config.max_queue,
            default_keep_alive: config.keep_alive,
        },
    );
    let state = Arc::new(AppState {
        scheduler,
        metrics: metrics::Metrics::default(),
        store: config.store.clone(),
        log_prompts: config.log_prompts,
        retriever: config.retriever.clone(),
    });
    let security = Arc::new(Security {
        api_keys: config.api_keys.clone(),
        loopback,
        origins: config.origins.clone(),
        gate: config.gate.clone(),
    });
    let router = Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics_text))
        .route("/api/version", get(ollama::version))
        .route("/api/tags", get(ollama::tags))
        .route("/api/ps", get(ollama::ps))
        .route("/api/show", post(ollama::show))
        .route("/api/generate", post(ollama::generate))
        .route("/api/chat", post(ollama::chat))
        .route("/api/embed", post(ollama::embed))
        .route("/api/embeddings", post(ollama::embeddings))
        .route("/api/pull", post(manage::pull))
        .route("/api/create", post(manage::create))
        .route("/api/copy", post(ollama::copy))
        .route("/api/delete", axum::routing::delete(ollama::delete))
        .route("/v1/models", get(openai::models))
        .route("/v1/models/{*model}", get(openai::model))
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route("/v1/completions", post(openai::completions))
        .route("/v1/embeddings", post(openai::embeddings))
        .with_state(state.clone())
        .merge(extension(state.clone()))
        .fallback(|| async { ServerError::NotFound("no such endpoint".into()) })
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .layer(middleware::from_fn_with_state(security, security::guard))
        .layer(middleware::from_fn_with_state(state.clone(), log_request));
    (router, state)
}

async fn health() -> &'static str {
    "ok"
}

async fn metrics_text(State(state): State<Arc<AppState>>) -> Response {
    let loaded: Vec<metrics::LoadedModel> = state
        .scheduler
        .loaded()
        .into_iter()
        .map(|l| metrics::LoadedModel {
            name: l.name,
            bytes: l.bytes,
            active: l.active,
        })
        .collect();
    let text = state.metrics.render(state.scheduler.queue_len(), &loaded);
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// Tokens a request used, filled in by its handler (or its stream) for the log line.
#[derive(Default)]
pub struct TokenCounts {
    pub prompt: usize,
    pub generated: usize,
}

/// Told a finished generation's model and tokens (the web app meters its users with it).
pub type UsageHook = Box<dyn FnOnce(&str, &TokenCounts) + Send>;

/// One request's log line, written when the last holder lets go: the middleware when the
/// response is not streamed, else the stream when it ends.
pub struct RequestLog {
    method: String,
    path: String,
    status: AtomicU16,
    start: Instant,
    pub tokens: Mutex<TokenCounts>,
    usage: Mutex<Option<UsageHook>>,
}

impl RequestLog {
    /// The tokens of the request's generation with `model`, for the log line and the usage hook.
    pub fn set_tokens(&self, model: &str, prompt: usize, generated: usize) {
        let counts = TokenCounts { prompt, generated };
        if let Some(hook) = self
            .usage
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            hook(model, &counts);
        }
        *self.tokens.lock().unwrap_or_else(PoisonError::into_inner) = counts;
    }

    /// Calls `hook` when the request's generation has finished (not at all without one).
    pub fn on_usage(&self, hook: UsageHook) {
        *self.usage.lock().unwrap_or_else(PoisonError::into_inner) = Some(hook);
    }
}

impl Drop for RequestLog {
    fn drop(&mut self) {
        let t = self.tokens.lock().unwrap_or_else(PoisonError::into_inner);
        eprintln!(
            "{} {} {} {:.3}s prompt_tokens={} generated_tokens={}",
            self.method,
            self.path,
            self.status.load(Ordering::Relaxed),
            self.start.elapsed().as_secs_f64(),
            t.prompt,
            t.generated
        );
    }
}

/// Counts the request in the metrics and writes its log line (path only: no query, no body).
async fn log_request(
    State(state): State<Arc<AppState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("other", |p| p.as_str())
        .to_string();
    let log = Arc::new(RequestLog {
        method: request.method().to_string(),
        path: request.uri().path().to_string(),
        status: AtomicU16::new(0),
        start: Instant::now(),
        tokens: Mutex::default(),
        usage: Mutex::default(),
    });
    request.extensions_mut().insert(log.clone());
    let response = next.run(request).await;
    let status = response.status().as_u16();
    state.metrics.request(&route, status);
    // A streaming handler's clone decides when the line is written; the status is known now.
    log.status.store(status, Ordering::Relaxed);
    response
}

/// Binds `config.host` and serves until Ctrl-C (or SIGTERM). Refuses a non-loopback address
/// without API keys or a gate unless `insecure_no_auth`. `extension`: an application's routes
/// (`None`: a plain `/`).
pub async fn serve(config: Config, extension: Option<Extension>) -> Result<()> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(&config.host)
        .await
        .map_err(|source| ServerError::Bind {
            addr: config.host.clone(),
            source,
        })?
        .collect();
    let loopback = all_loopback(&addrs);
    if !loopback && config.api_keys.is_empty() && config.gate.is_none() {
        if !config.insecure_no_auth {
            return Err(ServerError::NoApiKey(config.host.clone()));
        }
        eprintln!(
            "WARNING: listening on {} without authentication (--insecure-no-auth): anyone who can reach this address can run, pull and delete models",
            config.host
        );
    }
    let listener = tokio::net::TcpListener::bind(&addrs[..])
        .await
        .map_err(|source| ServerError::Bind {
            addr: config.host.clone(),
            source,
        })?;
    let (router, state) = app_with(&config, loopback, extension.unwrap_or_else(plain_root));
    let sweeper = state.scheduler.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            sweeper.sweep(Instant::now());
        }
    });
    let local = listener
        .local_addr()
        .map_or(config.host.clone(), |a| a.to_string());
    eprintln!(
        "hearth serve: listening on http://{local} ({}); models in {}",
        if config.api_keys.is_empty() {
            "no API key"
        } else {
            "API key required"
        },
        config.store.root().display()
    );
    axum::serve(listener, router)
        .with_graceful_shutdown(stop_signal())
        .await
        .map_err(|source| ServerError::Bind {
            addr: config.host.clone(),
            source,
        })?;
    state.scheduler.unload_all();
    Ok(())
}

/// Ctrl-C, or SIGTERM (a service manager's stop).
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// [`serve`] on a runtime of its own, for a synchronous caller (the `hearth` binary).
pub fn run(config: Config, extension: Option<Extension>) -> Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| ServerError::Internal(format!("cannot start the async runtime: {e}")))?
        .block_on(serve(config, extension))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_forms_are_normalized() {
        assert_eq!(normalize_host(""), "127.0.0.1:11434");
        assert_eq!(normalize_host("0.0.0.0"), "0.0.0.0:11434");
        assert_eq!(normalize_host("0.0.0.0:8080"), "0.0.0.0:8080");
        assert_eq!(normalize_host(":9000"), "127.0.0.1:9000");
        assert_eq!(normalize_host("http://localhost:11434/"), "localhost:11434");
        assert_eq!(normalize_host("[::1]:8080"), "[::1]:8080");
        assert_eq!(normalize_host("::1"), "[::1]:11434");
    }
}
