//! [`WebError`]: every way an app request fails, with the status it answers.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("{0}")]
    BadRequest(String),
    #[error("sign in first: this needs an account (or an API key in `Authorization: Bearer`)")]
    Unauthorized,
    #[error("wrong username or password")]
    WrongPassword,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("too many failed sign-ins for {username:?}: try again in {retry_after} s")]
    TooManyAttempts { username: String, retry_after: u64 },
    #[error(transparent)]
    Db(#[from] appdb::DbError),
    #[error(transparent)]
    Server(#[from] server::ServerError),
}

pub type Result<T, E = WebError> = std::result::Result<T, E>;

impl WebError {
    pub fn status(&self) -> StatusCode {
        match self {
            WebError::BadRequest(_) => StatusCode::BAD_REQUEST,
            WebError::Unauthorized | WebError::WrongPassword => StatusCode::UNAUTHORIZED,
            WebError::Forbidden(_) => StatusCode::FORBIDDEN,
            WebError::NotFound(_) => StatusCode::NOT_FOUND,
            WebError::TooManyAttempts { .. } => StatusCode::TOO_MANY_REQUESTS,
            WebError::Db(appdb::DbError::Invalid { .. }) => StatusCode::BAD_REQUEST,
            WebError::Db(appdb::DbError::Conflict { .. }) => StatusCode::CONFLICT,
            WebError::Db(_) => StatusCode::INTERNAL_SERVER_ERROR,
            WebError::Server(e) => e.status(),
        }
    }

    /// The chat (or other thing) the caller asked for is missing or someone else's: the same
    /// answer for both, so ids cannot be probed.
    pub fn no_such(what: &str) -> WebError {
        WebError::NotFound(format!("no such {what} (or it is not yours)"))
    }
}

/// For answers the server shapes (the chat APIs' retrieval).
impl From<WebError> for server::ServerError {
    fn from(e: WebError) -> Self {
        match e {
            WebError::Server(e) => e,
            WebError::Unauthorized => server::ServerError::Unauthorized,
            WebError::BadRequest(m) => server::ServerError::BadRequest(m),
            WebError::NotFound(m) => server::ServerError::NotFound(m),
            WebError::Forbidden(m) => server::ServerError::Forbidden(m),
            other => server::ServerError::Internal(other.to_string()),
        }
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        if let WebError::Server(e) = self {
            return e.into_response();
        }
        let status = self.status();
        let mut response = (
            status,
            Json(serde_json::json!({ "error": self.to_string() })),
        )
            .into_response();
        if let WebError::TooManyAttempts { retry_after, .. } = self {
            if let Ok(v) = HeaderValue::from_str(&retry_after.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        response
    }
}
