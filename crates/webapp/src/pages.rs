//! The page at `/` and its assets, embedded in the binary from `assets/`, with the headers that
//! keep untrusted text inert: a Content-Security-Policy that allows no inline script, no
//! framing, and no requests to other sites.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use include_dir::{include_dir, Dir};

static ASSETS: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/assets");

pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

fn content_type(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("json") => "application/json",
        Some("png") => "image/png",
        Some("txt" | "md") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn file(name: &str, bytes: &'static [u8], cache: &'static str) -> Response {
    let mut response = bytes.into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(name)),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// `GET /`: the app's shell.
pub async fn index() -> Response {
    match ASSETS.get_file("index.html") {
        Some(f) => file("index.html", f.contents(), "no-cache"),
        None => (
            StatusCode::NOT_FOUND,
            "the web app was not built into this binary",
        )
            .into_response(),
    }
}

/// `GET /assets/{name}`: a top-level file of `assets/` (tests and folders are not served).
pub async fn asset(Path(name): Path<String>) -> Response {
    let found = (!name.contains('/'))
        .then(|| ASSETS.get_file(&name))
        .flatten();
    match found {
        // Revalidated each time: the binary's version is the assets' version.
        Some(f) => file(&name, f.contents(), "no-cache"),
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}
