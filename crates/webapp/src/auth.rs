//! Who is calling, and may they: the [`Gate`] that guards every request of `hearth serve` (API
//! and app alike), sessions and CSRF, sign-in with its rate limit, API keys, and the admins'
//! user management.

use crate::error::{Result, WebError};
use crate::{Ctx, Mode, WebApp};
use appdb::{ApiKey, Role, Status, User};
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};
use server::security::Gate;
use server::RequestLog;
use std::sync::Arc;
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

pub const SESSION_COOKIE: &str = "hearth_session";
/// The token sign-in and sign-up forms must echo before there is a session (double submit).
pub const PRESESSION_COOKIE: &str = "hearth_csrf";
pub const CSRF_HEADER: &str = "x-csrf-token";
const SESSION_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// Failed sign-ins allowed per username within [`FAILURE_WINDOW`].
const MAX_FAILURES: usize = 5;
const FAILURE_WINDOW: Duration = Duration::from_secs(300);

/// Who a request comes from, as the gate found out; handlers take it as an extension.
#[derive(Clone, Debug)]
pub enum Caller {
    /// Signed in with the session cookie.
    Session {
        user: User,
        csrf: String,
    },
    /// With one of the user's API keys.
    Key(User),
    /// With a key given to `hearth serve`: acts as an admin, has no chats of its own.
    ServerKey,
    Anonymous,
}

impl Caller {
    /// The signed-in user; 401 without one.
    pub fn user(&self) -> Result<&User> {
        match self {
            Caller::Session { user, .. } | Caller::Key(user) => Ok(user),
            Caller::ServerKey | Caller::Anonymous => Err(WebError::Unauthorized),
        }
    }

    pub fn is_admin(&self) -> bool {
        match self {
            Caller::Session { user, .. } | Caller::Key(user) => user.role == Role::Admin,
            Caller::ServerKey => true,
            Caller::Anonymous => false,
        }
    }

    /// The signed-in admin; 401 or 403 otherwise.
    pub fn admin(&self) -> Result<&User> {
        let user = self.user()?;
        if user.role != Role::Admin {
            return Err(WebError::Forbidden("only an admin can do this".into()));
        }
        Ok(user)
    }
}

/// Paths anyone may open: the page, its assets, the health check, and what signing in needs.
fn is_public(path: &str) -> bool {
    matches!(
        path,
        "/" | "/health" | "/app/api/me" | "/app/api/login" | "/app/api/signup"
    ) || path.starts_with("/assets/")
}

/// Ollama API routes that change the model store: admins only.
const ADMIN_API: [&str; 4] = ["/api/pull", "/api/create", "/api/copy", "/api/delete"];

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

fn same_secret(a: &str, b: &str) -> bool {
    !a.is_empty() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

fn forbidden(why: &str) -> Box<Response> {
    Box::new(WebError::Forbidden(why.into()).into_response())
}

impl WebApp {
    /// The caller from the request's credentials: a user's API key, a server key, the session
    /// cookie, or nobody. Keys that are not known count as none (clients such as OpenAI's send a
    /// placeholder key to servers that need none).
    fn identify(&self, headers: &HeaderMap, keyed: bool) -> Result<Caller> {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        if let Some(secret) = bearer.filter(|s| s.starts_with("hearth_")) {
            if let Some(user) = self.db.api_key_user(secret)? {
                if user.status == Status::Active {
                    return Ok(Caller::Key(user));
                }
            }
        }
        if keyed {
            return Ok(Caller::ServerKey);
        }
        if let Some(token) = cookie(headers, SESSION_COOKIE) {
            if let Some((user, csrf)) = self.db.session(token)? {
                if user.status == Status::Active {
                    return Ok(Caller::Session { user, csrf });
                }
            }
        }
        Ok(Caller::Anonymous)
    }
}

impl Gate for WebApp {
    fn admit(&self, request: &mut Request, keyed: bool) -> Result<(), Box<Response>> {
        let caller = self
            .identify(request.headers(), keyed)
            .map_err(|e| Box::new(e.into_response()))?;
        let path = request.uri().path();
        let changing = !matches!(
            *request.method(),
            Method::GET | Method::HEAD | Method::OPTIONS
        );
        if changing {
            let given = request
                .headers()
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            match &caller {
                // A cookie rides along with any request the browser sends, a form posted by
                // another site included: the page must prove it read the token.
                Caller::Session { csrf, .. } if !same_secret(csrf, given) => {
                    return Err(forbidden(
                        "missing or wrong X-CSRF-Token header: reload the page",
                    ))
                }
                Caller::Anonymous if is_public(path) && path.starts_with("/app/api/") => {
                    let expected = cookie(request.headers(), PRESESSION_COOKIE).unwrap_or("");
                    if !same_secret(expected, given) {
                        return Err(forbidden(
                            "missing or wrong X-CSRF-Token header: reload the page",
                        ));
                    }
                }
                _ => {}
            }
        }
        if !is_public(path) {
            if path.starts_with("/app/api/") {
                if caller.user().is_err() {
                    return Err(Box::new(WebError::Unauthorized.into_response()));
                }
            } else {
                let anonymous = matches!(caller, Caller::Anonymous);
                let api_open = match self.mode {
                    Mode::Single => !self.server_keys,
                    Mode::Multi => self.open_api,
                };
                if anonymous && !api_open {
                    return Err(Box::new(server::ServerError::Unauthorized.into_response()));
                }
                if ADMIN_API.contains(&path) && !anonymous && !caller.is_admin() {
                    return Err(forbidden("only an admin can change the models"));
                }
            }
        }
        if let (Caller::Session { user, .. } | Caller::Key(user), Some(log)) =
            (&caller, request.extensions().get::<Arc<RequestLog>>())
        {
            // Generations through the API count in the user's usage, as the app's chats do.
            let (db, user_id) = (self.db.clone(), user.id);
            log.on_usage(Box::new(move |model, tokens| {
                let day = appdb::utc_day(crate::unix_now());
                let recorded = db.record_usage(
                    user_id,
                    model,
                    &day,
                    tokens.prompt as u64,
                    tokens.generated as u64,
                );
                if let Err(e) = recorded {
                    eprintln!("warning: cannot record usage: {e}");
                }
            }));
        }
        request.extensions_mut().insert(caller);
        Ok(())
    }
}

fn session_cookie(token: &str, max_age: u64) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}"
    ))
    .expect("tokens are hex")
}

/// `GET /app/api/me`: the mode, the signed-in user and the CSRF token. In single-user mode it
/// signs the browser in as the built-in user; without a session it hands out the token that
/// sign-in must echo.
pub async fn me(State(ctx): State<Ctx>, Extension(caller): Extension<Caller>) -> Result<Response> {
    let app = &ctx.app;
    let mode = app.mode.name();
    if let Caller::Session { user, csrf } = &caller {
        return Ok(
            Json(json!({"mode": mode, "user": user, "csrf": csrf, "needs_admin": false}))
                .into_response(),
        );
    }
    if app.mode == Mode::Single {
        let user = app.db.local_user()?;
        let session = app.db.create_session(user.id, SESSION_TTL)?;
        let mut response =
            Json(json!({"mode": mode, "user": user, "csrf": session.csrf, "needs_admin": false}))
                .into_response();
        response.headers_mut().append(
            header::SET_COOKIE,
            session_cookie(&session.token, SESSION_TTL.as_secs()),
        );
        return Ok(response);
    }
    let token = crate::random_hex(16);
    let needs_admin = app.db.account_count()? == 0;
    let mut response =
        Json(json!({"mode": mode, "user": null, "csrf": token, "needs_admin": needs_admin}))
            .into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        HeaderValue::from_str(&format!(
            "{PRESESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict"
        ))
        .expect("tokens are hex"),
    );
    Ok(response)
}

#[derive(Deserialize)]
pub struct Credentials {
    username: String,
    password: String,
}

fn multi_only(app: &WebApp) -> Result<()> {
    if app.mode == Mode::Single {
        return Err(WebError::BadRequest(
            "this server runs in single-user mode, without accounts: start it with --accounts for sign-in".into(),
        ));
    }
    Ok(())
}

/// A new session for `user`, answered with its cookie.
fn signed_in(app: &WebApp, user: &User) -> Result<Response> {
    let session = app.db.create_session(user.id, SESSION_TTL)?;
    let mut response = Json(json!({"user": user, "csrf": session.csrf})).into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        session_cookie(&session.token, SESSION_TTL.as_secs()),
    );
    Ok(response)
}

/// `POST /app/api/login`.
pub async fn login(State(ctx): State<Ctx>, Json(body): Json<Credentials>) -> Result<Response> {
    let app = &ctx.app;
    multi_only(app)?;
    let key = body.username.trim().to_lowercase();
    app.check_attempts(&key)?;
    let db = app.db.clone();
    let (name, password) = (body.username.trim().to_string(), body.password);
    // Argon2 takes tens of milliseconds: off the async workers.
    let user = tokio::task::spawn_blocking(move || db.check_password(&name, &password))
        .await
        .map_err(|e| server::ServerError::Internal(format!("password check failed: {e}")))??;
    let Some(user) = user else {
        app.failed_attempt(&key);
        return Err(WebError::WrongPassword);
    };
    app.clear_attempts(&key);
    match user.status {
        Status::Active => signed_in(app, &user),
        Status::Pending => Err(WebError::Forbidden(
            "your account is waiting for an administrator's approval".into(),
        )),
        Status::Disabled => Err(WebError::Forbidden(
            "this account is disabled: ask an administrator".into(),
        )),
    }
}

/// `POST /app/api/signup`: the first account is the admin (signed in at once); later ones wait
/// for approval.
pub async fn signup(State(ctx): State<Ctx>, Json(body): Json<Credentials>) -> Result<Response> {
    let app = ctx.app.clone();
    multi_only(&app)?;
    let worker = app.clone();
    let user = tokio::task::spawn_blocking(move || {
        // One at a time, so two first sign-ups cannot both become the admin.
        let _one = worker
            .signup_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let first = worker.db.account_count()? == 0;
        let (role, status) = if first {
            (Role::Admin, Status::Active)
        } else {
            (Role::User, Status::Pending)
        };
        worker
            .db
            .create_user(body.username.trim(), &body.password, role, status)
    })
    .await
    .map_err(|e| server::ServerError::Internal(format!("sign-up failed: {e}")))??;
    if user.status == Status::Active {
        return signed_in(&app, &user);
    }
    Ok(Json(json!({"user": user})).into_response())
}

/// `POST /app/api/logout`.
pub async fn logout(State(ctx): State<Ctx>, headers: HeaderMap) -> Result<Response> {
    if let Some(token) = cookie(&headers, SESSION_COOKIE) {
        ctx.app.db.delete_session(token)?;
    }
    let mut response = Json(json!({})).into_response();
    response
        .headers_mut()
        .append(header::SET_COOKIE, session_cookie("", 0));
    Ok(response)
}

impl WebApp {
    /// 429 while `key` has had too many failed sign-ins lately.
    fn check_attempts(&self, key: &str) -> Result<()> {
        let mut failures = self.lock_failures();
        let now = Instant::now();
        let list = failures.entry(key.to_string()).or_default();
        list.retain(|t| now.duration_since(*t) < FAILURE_WINDOW);
        if list.len() >= MAX_FAILURES {
            let retry_after = FAILURE_WINDOW
                .saturating_sub(now.duration_since(list[0]))
                .as_secs()
                .max(1);
            return Err(WebError::TooManyAttempts {
                username: key.to_string(),
                retry_after,
            });
        }
        Ok(())
    }

    fn failed_attempt(&self, key: &str) {
        let mut failures = self.lock_failures();
        // Bounded: a flood of made-up usernames must not grow the map for ever.
        if failures.len() > 10_000 {
            let now = Instant::now();
            failures.retain(|_, l| l.iter().any(|t| now.duration_since(*t) < FAILURE_WINDOW));
        }
        failures
            .entry(key.to_string())
            .or_default()
            .push(Instant::now());
    }

    fn clear_attempts(&self, key: &str) {
        self.lock_failures().remove(key);
    }
}

/// `GET /app/api/keys`.
pub async fn keys(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Value>> {
    let user = caller.user()?;
    Ok(Json(json!({"keys": ctx.app.db.api_keys(user.id)?})))
}

#[derive(Deserialize)]
pub struct NewKey {
    name: String,
}

/// `POST /app/api/keys`: the secret is in this answer only.
pub async fn create_key(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Caller>,
    Json(body): Json<NewKey>,
) -> Result<Json<Value>> {
    let user = caller.user()?;
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(WebError::BadRequest(
            "a key needs a name of 1 to 100 characters".into(),
        ));
    }
    let (key, secret): (ApiKey, String) = ctx.app.db.create_api_key(user.id, name)?;
    Ok(Json(json!({"key": key, "secret": secret})))
}

/// `DELETE /app/api/keys/{id}`.
pub async fn revoke_key(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<i64>,
) -> Result<Json<Value>> {
    let user = caller.user()?;
    if !ctx.app.db.revoke_api_key(user.id, id)? {
        return Err(WebError::no_such("API key"));
    }
    Ok(Json(json!({})))
}

/// `GET /app/api/users` (admin).
pub async fn users(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Value>> {
    caller.admin()?;
    Ok(Json(json!({"users": ctx.app.db.users()?})))
}

#[derive(Deserialize)]
pub struct NewUser {
    username: String,
    password: String,
    #[serde(default = "default_role")]
    role: Role,
}

fn default_role() -> Role {
    Role::User
}

/// `POST /app/api/users` (admin): an active account.
pub async fn create_user(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Caller>,
    Json(body): Json<NewUser>,
) -> Result<Json<Value>> {
    caller.admin()?;
    let db = ctx.app.db.clone();
    let user = tokio::task::spawn_blocking(move || {
        db.create_user(
            body.username.trim(),
            &body.password,
            body.role,
            Status::Active,
        )
    })
    .await
    .map_err(|e| server::ServerError::Internal(format!("creating the user failed: {e}")))??;
    Ok(Json(json!({"user": user})))
}

#[derive(Deserialize)]
pub struct UserChange {
    status: Option<Status>,
    role: Option<Role>,
}

/// `PATCH /app/api/users/{id}` (admin): approve, disable, promote. An admin cannot lock
/// themselves out.
pub async fn update_user(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<i64>,
    Json(body): Json<UserChange>,
) -> Result<Json<Value>> {
    let me = caller.admin()?;
    if id == me.id {
        return Err(WebError::BadRequest(
            "you cannot change your own status or role: ask another admin".into(),
        ));
    }
    let db = &ctx.app.db;
    let mut user = db.user(id)?.ok_or_else(|| WebError::no_such("user"))?;
    if let Some(status) = body.status {
        user = db
            .set_status(id, status)?
            .ok_or_else(|| WebError::no_such("user"))?;
    }
    if let Some(role) = body.role {
        user = db
            .set_role(id, role)?
            .ok_or_else(|| WebError::no_such("user"))?;
    }
    if body.status.is_some_and(|s| s != Status::Active) || body.role.is_some() {
        db.delete_sessions_of(id)?;
    }
    Ok(Json(json!({"user": user})))
}

/// `DELETE /app/api/users/{id}` (admin): the user and all their chats.
pub async fn delete_user(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<i64>,
) -> Result<Json<Value>> {
    let me = caller.admin()?;
    if id == me.id {
        return Err(WebError::BadRequest(
            "you cannot delete your own account".into(),
        ));
    }
    if !ctx.app.db.delete_user(id)? {
        return Err(WebError::no_such("user"));
    }
    Ok(Json(json!({})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_by_exact_name() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; hearth_session_x=2; hearth_session=abc"),
        );
        h.append(header::COOKIE, HeaderValue::from_static("hearth_csrf=def"));
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&h, PRESESSION_COOKIE), Some("def"));
        assert_eq!(cookie(&h, "missing"), None);
    }

    #[test]
    fn empty_secrets_never_match() {
        assert!(!same_secret("", ""));
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "ab"));
    }
}
