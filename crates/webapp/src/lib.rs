//! Hearth's web app: a private chat app for one person or a team, served at `/` by
//! `hearth serve` from this one binary.
//!
//! - [`WebApp`] holds the app's database ([`appdb::Db`]) and its [`Mode`]. It is the server's
//!   [`server::security::Gate`]: every request, to the app or to the Ollama and OpenAI APIs,
//!   goes through [`auth`], which finds the [`auth::Caller`] (session cookie, a user's API key,
//!   a server key) and enforces CSRF tokens, sign-in and admin rights.
//! - [`WebApp::extension`] gives the server the app's routes ([`routes`]): the page and its
//!   assets ([`pages`], embedded from `assets/`), and the JSON API of `API.md` under
//!   `/app/api/`: accounts ([`auth`]), conversations with streamed answers saved as they come
//!   ([`chats`]), documents searched and cited in answers ([`docs`]), and the machine and
//!   usage pages ([`machine`]).
//! - Every failure is a [`WebError`], answered as `{"error": "..."}` with its status.

pub mod auth;
pub mod chats;
pub mod docs;
pub mod error;
pub mod machine;
pub mod pages;

pub use error::{Result, WebError};

use appdb::Db;
use axum::routing::{get, post, put};
use axum::Router;
use server::AppState;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

/// Whether the app has accounts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// One person on this machine: no sign-in, the built-in user `local` is an admin.
    Single,
    /// Accounts, roles and approval (required when the server listens on the network).
    Multi,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Single => "single",
            Mode::Multi => "multi",
        }
    }
}

/// How the app is set up.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    pub mode: Mode,
    /// Whether `hearth serve` was given API keys of its own (then the API needs a key or a
    /// session in single-user mode too).
    pub server_keys: bool,
    /// Multi-user mode with the API open to anyone (`--insecure-no-auth`): only the app's
    /// pages need accounts.
    pub open_api: bool,
}

/// The app: its database, its mode and the little state its guards keep.
pub struct WebApp {
    db: Arc<Db>,
    mode: Mode,
    server_keys: bool,
    open_api: bool,
    /// Recent failed sign-ins by lower-cased username.
    failures: Mutex<HashMap<String, Vec<Instant>>>,
    /// Held while a sign-up decides whether it is the first account.
    signup_lock: Mutex<()>,
    /// (when, tokens generated so far), for the live throughput.
    samples: Mutex<VecDeque<(Instant, u64)>>,
    /// One document is read and embedded at a time, so chats keep most of the machine.
    jobs: Arc<tokio::sync::Semaphore>,
}

impl WebApp {
    pub fn new(db: Db, options: Options) -> Arc<WebApp> {
        Arc::new(WebApp {
            db: Arc::new(db),
            mode: options.mode,
            server_keys: options.server_keys,
            open_api: options.open_api,
            failures: Mutex::default(),
            signup_lock: Mutex::default(),
            samples: Mutex::default(),
            jobs: Arc::new(tokio::sync::Semaphore::new(1)),
        })
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The app's documents for the chat APIs' `collections` field ([`server::Config::retriever`]).
    pub fn retriever(self: &Arc<Self>) -> Arc<dyn server::retrieval::Retriever> {
        Arc::new(docs::AppRetriever(self.clone()))
    }

    /// The app's routes, for [`server::serve`] / [`server::app_with`].
    pub fn extension(self: &Arc<Self>) -> server::Extension {
        let app = self.clone();
        Box::new(move |server| {
            let ctx = Ctx { app, server };
            if tokio::runtime::Handle::try_current().is_ok() {
                docs::resume(&ctx);
            }
            routes(ctx)
        })
    }

    fn lock_failures(&self) -> MutexGuard<'_, HashMap<String, Vec<Instant>>> {
        self.failures.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What the app's handlers share: the app and the server it runs in.
#[derive(Clone)]
pub struct Ctx {
    pub app: Arc<WebApp>,
    pub server: Arc<AppState>,
}

/// Seconds since 1970.
fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// `n` random bytes as hex.
fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes).expect("the operating system's random source works");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The page, its assets and `/app/api/*` (see `API.md`).
pub fn routes(ctx: Ctx) -> Router {
    let api = Router::new()
        .route("/me", get(auth::me))
        .route("/login", post(auth::login))
        .route("/signup", post(auth::signup))
        .route("/logout", post(auth::logout))
        .route("/keys", get(auth::keys).post(auth::create_key))
        .route("/keys/{id}", axum::routing::delete(auth::revoke_key))
        .route("/users", get(auth::users).post(auth::create_user))
        .route(
            "/users/{id}",
            axum::routing::patch(auth::update_user).delete(auth::delete_user),
        )
        .route("/chats", get(chats::list).post(chats::create))
        .route("/chats/import", post(chats::import))
        .route(
            "/chats/{id}",
            get(chats::get_one)
                .patch(chats::update)
                .delete(chats::delete),
        )
        .route("/chats/{id}/messages", post(chats::send))
        .route("/chats/{id}/export", get(chats::export))
        .route("/search", get(chats::search))
        .route("/presets", get(chats::presets).post(chats::create_preset))
        .route(
            "/presets/{id}",
            put(chats::update_preset).delete(chats::delete_preset),
        )
        .route(
            "/collections",
            get(docs::collections).post(docs::create_collection),
        )
        .route(
            "/collections/{id}",
            axum::routing::delete(docs::delete_collection),
        )
        .route(
            "/collections/{id}/documents",
            get(docs::documents)
                .post(docs::upload)
                .layer(axum::extract::DefaultBodyLimit::max(docs::MAX_UPLOAD)),
        )
        .route("/collections/{id}/search", get(docs::search))
        .route(
            "/documents/{id}",
            get(docs::document).delete(docs::delete_document),
        )
        .route("/chunks/{id}", get(docs::chunk))
        .route(
            "/embedding-model",
            get(docs::get_embedding_model).put(docs::set_embedding_model),
        )
        .route("/machine", get(machine::machine))
        .route("/usage", get(machine::usage))
        .route("/prices", put(machine::set_prices));
    Router::new()
        .route("/", get(pages::index))
        .route("/assets/{name}", get(pages::asset))
        .nest("/app/api", api)
        .with_state(ctx)
}
