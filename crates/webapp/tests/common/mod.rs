//! What the app's HTTP tests share: an app over a temporary store and database, and a
//! browser-like client that keeps cookies and sends the page's CSRF token.

// Each test binary uses only some of it.
#![allow(dead_code)]

use axum::body::{to_bytes, Body};
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::Router;
use serde_json::{json, Value};
use std::path::Path;
use std::sync::Arc;
use tower::ServiceExt;
use webapp::{Mode, Options, WebApp};

pub const MODEL: &str = "synthetic";

pub struct App {
    pub router: Router,
    pub web: Arc<WebApp>,
    dir: Arc<tempfile::TempDir>,
    mode: Mode,
}

/// An app with the synthetic llama as `synthetic`.
pub fn app(mode: Mode) -> App {
    app_with(mode, &[])
}

/// An app with the synthetic llama and `models` (name, GGUF file) in its store.
pub fn app_with(mode: Mode, models: &[(&str, &Path)]) -> App {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let store = store::Store::new(dir.path().join("models"));
    let model = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/reference/synthetic/llama3-synthetic-q8_0.gguf");
    store
        .import(&store::ModelName::parse(MODEL).unwrap(), &model)
        .unwrap();
    for (name, file) in models {
        store
            .import(&store::ModelName::parse(name).unwrap(), file)
            .unwrap();
    }
    open(dir, mode)
}

/// An app over `dir`'s store and database.
fn open(dir: Arc<tempfile::TempDir>, mode: Mode) -> App {
    let store = store::Store::new(dir.path().join("models"));
    let db = appdb::Db::open(&dir.path().join("hearth.db")).unwrap();
    let web = WebApp::new(
        db,
        Options {
            mode,
            server_keys: false,
            open_api: false,
        },
    );
    let mut config = server::Config::new(store);
    config.threads = 1;
    config.num_parallel = Some(1);
    config.max_memory = Some(1 << 30);
    config.gate = Some(web.clone());
    config.retriever = Some(web.retriever());
    let (router, _) = server::app_with(&config, true, web.extension());
    App {
        router,
        web,
        dir,
        mode,
    }
}

impl App {
    /// Installs `file` as model `name` in the app's store.
    pub fn install(&self, name: &str, file: &Path) {
        store::Store::new(self.dir.path().join("models"))
            .import(&store::ModelName::parse(name).unwrap(), file)
            .unwrap();
    }

    /// The same store and database in a new app, as after a restart (this one should be
    /// dropped first).
    pub fn restart(self) -> App {
        let (dir, mode) = (self.dir.clone(), self.mode);
        drop(self);
        open(dir, mode)
    }
}

/// A browser: its cookies and the CSRF token the page holds.
#[derive(Clone, Default)]
pub struct Browser {
    pub cookies: Vec<(String, String)>,
    pub csrf: String,
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// The NDJSON lines of an answer.
pub fn lines(body: &str) -> Vec<Value> {
    body.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

impl Browser {
    /// A new chat of [`MODEL`] with `settings`, asked `question`: the chat's id and the answer.
    pub async fn ask(&mut self, app: &App, settings: Value, question: &str) -> (String, Answer) {
        let chat = self.new_chat(app, "a question").await;
        let path = format!("/app/api/chats/{chat}");
        let a = self
            .send(
                app,
                Method::PATCH,
                &path,
                Some(json!({ "settings": settings })),
            )
            .await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        let a = self
            .send(
                app,
                Method::POST,
                &format!("{path}/messages"),
                Some(json!({ "content": question })),
            )
            .await;
        (chat, a)
    }

    pub fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    pub fn keep_cookies(&mut self, headers: &HeaderMap) {
        for v in headers.get_all(header::SET_COOKIE) {
            let text = v.to_str().unwrap();
            let (pair, _) = text.split_once(';').unwrap_or((text, ""));
            let (k, v) = pair.split_once('=').unwrap();
            self.cookies.retain(|(name, _)| name != k);
            if !v.is_empty() {
                self.cookies.push((k.to_string(), v.to_string()));
            }
        }
    }

    /// A request as the page sends it: cookies, and the CSRF header on state changes.
    pub async fn send(
        &mut self,
        app: &App,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Answer {
        let csrf = self.csrf.clone();
        self.send_with(app, method, path, body, Some(&csrf)).await
    }

    pub async fn send_with(
        &mut self,
        app: &App,
        method: Method,
        path: &str,
        body: Option<Value>,
        csrf: Option<&str>,
    ) -> Answer {
        let body = body.map_or(Body::empty(), |b| Body::from(b.to_string()));
        self.raw(app, method, path, "application/json", body, csrf)
            .await
    }

    /// A POST of raw bytes (an upload), with cookies and the CSRF token.
    pub async fn send_bytes(&mut self, app: &App, path: &str, bytes: Vec<u8>) -> Answer {
        let csrf = self.csrf.clone();
        let body = Body::from(bytes);
        self.raw(
            app,
            Method::POST,
            path,
            "application/octet-stream",
            body,
            Some(&csrf),
        )
        .await
    }

    /// Any request with this browser's cookies (and `csrf` as its token, if given).
    async fn raw(
        &mut self,
        app: &App,
        method: Method,
        path: &str,
        content_type: &str,
        body: Body,
        csrf: Option<&str>,
    ) -> Answer {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, "127.0.0.1:11434")
            .header(header::CONTENT_TYPE, content_type);
        if !self.cookies.is_empty() {
            req = req.header(header::COOKIE, self.cookie_header());
        }
        if let Some(token) = csrf {
            req = req.header("x-csrf-token", token);
        }
        let response = app
            .router
            .clone()
            .oneshot(req.body(body).unwrap())
            .await
            .unwrap();
        let (parts, body) = response.into_parts();
        let bytes = to_bytes(body, usize::MAX).await.unwrap();
        self.keep_cookies(&parts.headers);
        Answer {
            status: parts.status,
            headers: parts.headers,
            body: String::from_utf8(bytes.to_vec()).unwrap(),
        }
    }

    pub async fn me(&mut self, app: &App) -> Value {
        let a = self.send(app, Method::GET, "/app/api/me", None).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        let me = a.json();
        self.csrf = me["csrf"].as_str().unwrap().to_string();
        me
    }

    pub async fn signup(&mut self, app: &App, name: &str) -> Answer {
        self.me(app).await;
        let a = self
            .send(
                app,
                Method::POST,
                "/app/api/signup",
                Some(json!({"username": name, "password": "correct horse"})),
            )
            .await;
        if let Some(csrf) = a.json()["csrf"].as_str() {
            self.csrf = csrf.to_string();
        }
        a
    }

    pub async fn login(&mut self, app: &App, name: &str, password: &str) -> Answer {
        self.me(app).await;
        let a = self
            .send(
                app,
                Method::POST,
                "/app/api/login",
                Some(json!({"username": name, "password": password})),
            )
            .await;
        if let Some(csrf) = a.json()["csrf"].as_str() {
            self.csrf = csrf.to_string();
        }
        a
    }

    pub async fn new_chat(&mut self, app: &App, title: &str) -> String {
        let a = self
            .send(
                app,
                Method::POST,
                "/app/api/chats",
                Some(json!({"title": title, "model": MODEL})),
            )
            .await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        a.json()["chat"]["id"].as_str().unwrap().to_string()
    }
}

/// An admin (the first sign-up) and an approved user, signed in.
pub async fn admin_and_user(app: &App) -> (Browser, Browser, i64) {
    let mut admin = Browser::default();
    let a = admin.signup(app, "ada").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.json()["user"]["role"], "admin");
    let mut user = Browser::default();
    let a = user.signup(app, "bob").await;
    let bob = a.json()["user"]["id"].as_i64().unwrap();
    let a = admin
        .send(
            app,
            Method::PATCH,
            &format!("/app/api/users/{bob}"),
            Some(json!({"status": "active"})),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(
        user.login(app, "bob", "correct horse").await.status,
        StatusCode::OK
    );
    (admin, user, bob)
}
