//! [`ServerError`]: every way a request or the server can fail, and the HTTP answer for each.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

/// Errors of the server crate. Each maps to a status code and an `{"error": "..."}` body, the
/// shape both Ollama's and (loosely) OpenAI's clients read.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{0}")]
    BadRequest(String),
    #[error("model \"{0}\" not found, try pulling it first")]
    ModelNotFound(String),
    #[error("{0}")]
    NotFound(String),
    #[error("the model needs {needed} bytes of memory ({file} for the weights, {kv} for the KV cache of {slots} slots x {n_ctx} tokens) but the memory budget is {budget} bytes; raise --max-memory, lower num_ctx or HEARTH_NUM_PARALLEL, or use a smaller model")]
    TooLarge {
        needed: u64,
        file: u64,
        kv: u64,
        slots: usize,
        n_ctx: usize,
        budget: u64,
    },
    #[error("the prompt is {tokens} tokens but the context is {n_ctx}: shorten it, raise num_ctx (options.num_ctx, or the model's PARAMETER num_ctx), or ask for truncation with \"truncate\": true")]
    PromptTooLong { tokens: usize, n_ctx: usize },
    #[error("server busy, please try again: maximum pending requests exceeded ({0} waiting)")]
    Busy(usize),
    #[error("unauthorized: send an API key as `Authorization: Bearer KEY`")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Engine(#[from] engine::EngineError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("refusing to listen on {0} (reachable from the network) without an API key: give --api-key-file PATH or HEARTH_API_KEY, or --insecure-no-auth to run without authentication")]
    NoApiKey(String),
    #[error("cannot read the API key file {path}: {source}")]
    KeyFile {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Config(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ServerError {
    pub fn status(&self) -> StatusCode {
        use store::StoreError as S;
        match self {
            ServerError::BadRequest(_) | ServerError::PromptTooLong { .. } => {
                StatusCode::BAD_REQUEST
            }
            ServerError::ModelNotFound(_) | ServerError::NotFound(_) => StatusCode::NOT_FOUND,
            ServerError::TooLarge { .. } => StatusCode::INSUFFICIENT_STORAGE,
            ServerError::Busy(_) | ServerError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            ServerError::Unauthorized => StatusCode::UNAUTHORIZED,
            ServerError::Forbidden(_) => StatusCode::FORBIDDEN,
            ServerError::Store(S::NotInStore { .. } | S::ModelNotFound { .. }) => {
                StatusCode::NOT_FOUND
            }
            ServerError::Store(
                S::InvalidName { .. } | S::InvalidUrl { .. } | S::Modelfile { .. },
            ) => StatusCode::BAD_REQUEST,
            ServerError::Engine(
                engine::EngineError::ContextFull { .. }
                | engine::EngineError::EmptyPrompt
                | engine::EngineError::NotGenerative { .. }
                | engine::EngineError::TooLongToEmbed { .. },
            ) => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ServerError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut response = (
            status,
            Json(serde_json::json!({ "error": self.to_string() })),
        )
            .into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

pub type Result<T, E = ServerError> = std::result::Result<T, E>;
