//! The server's guards, applied to every request before its handler: the `Host` check against
//! DNS rebinding (when bound to loopback), CORS for configured origins only, and API keys
//! compared in constant time. An embedding application (the web app's accounts) can take over
//! the last step with a [`Gate`].

use crate::error::ServerError;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::net::IpAddr;
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// Who may call what, decided outside the server (the web app's accounts and their keys).
pub trait Gate: Send + Sync {
    /// Lets `request` on (possibly adding extensions that say who is calling) or answers it.
    /// `keyed`: it carries one of the server's own API keys.
    fn admit(&self, request: &mut Request, keyed: bool) -> Result<(), Box<Response>>;
}

/// What the guards check.
#[derive(Clone, Default)]
pub struct Security {
    /// Accepted API keys; empty: no authentication.
    pub api_keys: Vec<String>,
    /// Whether the listener is on a loopback address (then `Host` must be loopback too).
    pub loopback: bool,
    /// Origins (`scheme://host[:port]`, or `*`) browsers may call from, besides loopback ones.
    pub origins: Vec<String>,
    /// Decides instead of the key check when set.
    pub gate: Option<Arc<dyn Gate>>,
}

/// Paths open without a key (health checks of load balancers and supervisors).
const OPEN_PATHS: [&str; 1] = ["/health"];

/// Whether `host` (a `Host` header: name or address, with or without port) is this machine's
/// loopback: `localhost`, `*.localhost`, `127.0.0.0/8`, `[::1]`.
pub fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((inside, rest))
                if rest.is_empty() || rest.strip_prefix(':').is_some_and(valid_port) =>
            {
                inside
            }
            _ => return false,
        },
        None => match host.rsplit_once(':') {
            Some((name, port)) if valid_port(port) => name,
            Some(_) => return false,
            None => host,
        },
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn valid_port(port: &str) -> bool {
    !port.is_empty() && port.parse::<u16>().is_ok()
}

/// Whether a browser `Origin` is a page served from this machine (`http://localhost:3000`).
fn is_loopback_origin(origin: &str) -> bool {
    origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .is_some_and(is_loopback_host)
}

/// Whether `origin` is the page's own: its host is the request's `Host` (a page served by this
/// server to a network address calls back to that address).
fn is_same_origin(origin: &str, host: Option<&str>) -> bool {
    let authority = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    matches!((authority, host), (Some(a), Some(h)) if a.eq_ignore_ascii_case(h))
}

impl Security {
    fn origin_allowed(&self, origin: &str) -> bool {
        is_loopback_origin(origin)
            || self
                .origins
                .iter()
                .any(|o| o == "*" || o.eq_ignore_ascii_case(origin))
    }

    /// Whether the request carries one of the keys (always true without keys). Every key is
    /// compared, each in constant time, so the answer's timing says nothing about them.
    pub fn authorized(&self, headers: &HeaderMap) -> bool {
        if self.api_keys.is_empty() {
            return true;
        }
        let Some(given) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        else {
            return false;
        };
        let given = given.trim().as_bytes();
        self.api_keys
            .iter()
            .fold(subtle::Choice::from(0), |ok, key| {
                ok | key.as_bytes().ct_eq(given)
            })
            .into()
    }
}

/// The middleware: Host, then CORS (answering preflights), then the API key or the [`Gate`].
pub async fn guard(State(sec): State<Arc<Security>>, mut request: Request, next: Next) -> Response {
    let headers = request.headers();
    if sec.loopback {
        if let Some(host) = headers.get(header::HOST) {
            let ok = host.to_str().is_ok_and(is_loopback_host);
            if !ok {
                return ServerError::Forbidden(
                    "the Host header must name this machine's loopback (localhost, 127.0.0.1 or [::1]) while the server listens on loopback".into(),
                )
                .into_response();
            }
        }
    }
    let origin = headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    if let Some(origin) = &origin {
        if !sec.origin_allowed(origin) && !is_same_origin(origin, host) {
            return ServerError::Forbidden(format!(
                "origin {origin} is not allowed: add it with --allow-origin or HEARTH_ORIGINS"
            ))
            .into_response();
        }
        if request.method() == Method::OPTIONS {
            let mut response = StatusCode::NO_CONTENT.into_response();
            cors_headers(response.headers_mut(), origin);
            return response;
        }
    }
    let keyed = sec.authorized(request.headers());
    let admitted = match &sec.gate {
        Some(gate) => gate.admit(&mut request, keyed && !sec.api_keys.is_empty()),
        None if keyed || OPEN_PATHS.contains(&request.uri().path()) => Ok(()),
        None => Err(Box::new(ServerError::Unauthorized.into_response())),
    };
    let mut response = match admitted {
        Ok(()) => next.run(request).await,
        Err(refused) => *refused,
    };
    if let Some(origin) = &origin {
        cors_headers(response.headers_mut(), origin);
    }
    response
}

fn cors_headers(headers: &mut HeaderMap, origin: &str) {
    if let Ok(v) = HeaderValue::from_str(origin) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
    }
    headers.insert(header::VARY, HeaderValue::from_static("Origin"));
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, DELETE, HEAD, OPTIONS"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Authorization, Content-Type, User-Agent, Accept"),
    );
}

/// API keys from a file, one per line; blank lines and `#` comments are skipped.
pub fn read_key_file(path: &std::path::Path) -> Result<Vec<String>, ServerError> {
    let text = std::fs::read_to_string(path).map_err(|source| ServerError::KeyFile {
        path: path.display().to_string(),
        source,
    })?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_with_or_without_port() {
        for ok in [
            "localhost",
            "localhost:11434",
            "LOCALHOST:1",
            "app.localhost",
            "127.0.0.1",
            "127.0.0.1:11434",
            "127.1.2.3:80",
            "[::1]",
            "[::1]:11434",
            "localhost.",
        ] {
            assert!(is_loopback_host(ok), "{ok}");
        }
        for bad in [
            "evil.com",
            "evil.com:11434",
            "localhost.evil.com",
            "127.0.0.1.nip.io",
            "192.168.1.10:11434",
            "[::2]:80",
            "localhost:port",
            "localhost:",
            "[::1]x",
            "",
        ] {
            assert!(!is_loopback_host(bad), "{bad}");
        }
    }

    #[test]
    fn origins_loopback_or_configured() {
        let sec = Security {
            origins: vec!["https://chat.example.org".into()],
            ..Security::default()
        };
        assert!(sec.origin_allowed("http://localhost:3000"));
        assert!(sec.origin_allowed("https://chat.example.org"));
        assert!(!sec.origin_allowed("https://evil.example.org"));
        assert!(!sec.origin_allowed("null"));
        assert!(is_same_origin(
            "http://192.168.1.5:11434",
            Some("192.168.1.5:11434")
        ));
        assert!(!is_same_origin(
            "http://evil.com",
            Some("192.168.1.5:11434")
        ));
        assert!(!is_same_origin("http://evil.com", None));
    }

    #[test]
    fn keys_compare_whole_and_exact() {
        let sec = Security {
            api_keys: vec!["alpha-key".into(), "beta".into()],
            ..Security::default()
        };
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
            h
        };
        assert!(sec.authorized(&with("Bearer alpha-key")));
        assert!(sec.authorized(&with("Bearer beta")));
        for bad in [
            "Bearer alpha",
            "Bearer alpha-key2",
            "Bearer ",
            "alpha-key",
            "Basic beta",
        ] {
            assert!(!sec.authorized(&with(bad)), "{bad}");
        }
        assert!(!sec.authorized(&HeaderMap::new()));
        assert!(Security::default().authorized(&HeaderMap::new()));
    }
}
