//! The app's HTTP layer driven in-process: sign-up, sign-in and its rate limit, approval, CSRF
//! and authorization on every state-changing endpoint, isolation of users' chats, API keys,
//! single-user mode, the page's headers, and a chat answered by the synthetic llama (testdata)
//! and saved as it streams.

mod common;

use axum::body::{to_bytes, Body};
use axum::http::{header, Method, Request, StatusCode};
use common::*;
use serde_json::{json, Value};
use tower::ServiceExt;
use webapp::Mode;

#[tokio::test]
async fn first_sign_up_is_the_admin_and_later_ones_wait_for_approval() {
    let app = app(Mode::Multi);
    let mut admin = Browser::default();
    assert_eq!(admin.me(&app).await["needs_admin"], true);
    let a = admin.signup(&app, "ada").await;
    assert_eq!(a.json()["user"]["status"], "active");
    assert_eq!(admin.me(&app).await["user"]["username"], "ada");

    let mut bob = Browser::default();
    assert_eq!(bob.me(&app).await["needs_admin"], false);
    let a = bob.signup(&app, "bob").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.json()["user"]["status"], "pending");
    assert!(
        bob.me(&app).await["user"].is_null(),
        "a pending sign-up is not signed in"
    );
    let a = bob.login(&app, "bob", "correct horse").await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.body);
    assert!(a.body.contains("approval"), "{}", a.body);
    let a = bob.send(&app, Method::GET, "/app/api/chats", None).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);

    let id = a_user_id(&mut admin, &app, "bob").await;
    let a = admin
        .send(
            &app,
            Method::PATCH,
            &format!("/app/api/users/{id}"),
            Some(json!({"status": "active"})),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(
        bob.login(&app, "bob", "correct horse").await.status,
        StatusCode::OK
    );
    let a = bob.send(&app, Method::GET, "/app/api/chats", None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let a = Browser::default().signup(&app, "BOB").await;
    assert_eq!(
        a.status,
        StatusCode::CONFLICT,
        "usernames are case-insensitive: {}",
        a.body
    );
}

async fn a_user_id(admin: &mut Browser, app: &App, name: &str) -> i64 {
    let a = admin.send(app, Method::GET, "/app/api/users", None).await;
    a.json()["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == name)
        .unwrap()["id"]
        .as_i64()
        .unwrap()
}

/// Every state-changing route of the app and of the API, with a body it accepts.
fn state_changing(chat: &str, bob: i64) -> Vec<(Method, String, Value)> {
    let settings = json!({"system": null, "temperature": 0.5, "num_ctx": 512});
    vec![
        (
            Method::POST,
            "/app/api/keys".into(),
            json!({"name": "script"}),
        ),
        (Method::DELETE, "/app/api/keys/999".into(), Value::Null),
        (
            Method::POST,
            "/app/api/users".into(),
            json!({"username": "carol", "password": "long enough", "role": "user"}),
        ),
        (
            Method::PATCH,
            format!("/app/api/users/{bob}"),
            json!({"role": "user"}),
        ),
        (Method::DELETE, "/app/api/users/999".into(), Value::Null),
        (
            Method::POST,
            "/app/api/chats".into(),
            json!({"model": MODEL, "title": "t"}),
        ),
        (
            Method::POST,
            "/app/api/chats/import".into(),
            json!({"title": "imported", "model": MODEL, "messages": [{"role": "user", "content": "hi"}]}),
        ),
        (
            Method::PATCH,
            format!("/app/api/chats/{chat}"),
            json!({"title": "renamed"}),
        ),
        (
            Method::POST,
            "/app/api/presets".into(),
            json!({"name": "terse", "model": MODEL, "settings": settings}),
        ),
        (
            Method::PUT,
            "/app/api/presets/999".into(),
            json!({"name": "terse", "model": MODEL, "settings": settings}),
        ),
        (Method::DELETE, "/app/api/presets/999".into(), Value::Null),
        (
            Method::PUT,
            "/app/api/prices".into(),
            json!({"input_per_million": 1.0, "output_per_million": 2.0}),
        ),
        (
            Method::DELETE,
            format!("/app/api/chats/{chat}"),
            Value::Null,
        ),
        (
            Method::POST,
            "/api/copy".into(),
            json!({"source": MODEL, "destination": "copy"}),
        ),
        (
            Method::DELETE,
            "/api/delete".into(),
            json!({"model": "copy"}),
        ),
        (
            Method::POST,
            "/api/pull".into(),
            json!({"model": "../not a name", "stream": false}),
        ),
        (
            Method::POST,
            "/api/create".into(),
            json!({"model": "made", "from": MODEL, "stream": false}),
        ),
        (Method::POST, "/api/show".into(), json!({"model": MODEL})),
        (Method::POST, "/app/api/logout".into(), Value::Null),
    ]
}

#[tokio::test]
async fn every_state_changing_endpoint_checks_sign_in_and_the_csrf_token() {
    let app = app(Mode::Multi);
    let (mut admin, _, bob) = admin_and_user(&app).await;
    let chat = admin.new_chat(&app, "mine").await;
    for (method, path, body) in state_changing(&chat, bob) {
        let body = (!body.is_null()).then_some(body);
        let what = format!("{method} {path}");
        // Nobody signed in.
        let a = Browser::default()
            .send_with(&app, method.clone(), &path, body.clone(), None)
            .await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{what}: {}", a.body);
        // The admin's cookie without the token, and with a wrong one (a forged form).
        for token in [None, Some("0123456789abcdef")] {
            let a = admin
                .clone()
                .send_with(&app, method.clone(), &path, body.clone(), token)
                .await;
            assert_eq!(
                a.status,
                StatusCode::FORBIDDEN,
                "{what} with {token:?}: {}",
                a.body
            );
            assert!(a.body.contains("CSRF"), "{what}: {}", a.body);
        }
        // With it: through the guards (whatever the handler then says).
        let a = admin
            .clone()
            .send(&app, method.clone(), &path, body.clone())
            .await;
        assert!(
            ![StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN].contains(&a.status),
            "{what}: {} {}",
            a.status,
            a.body
        );
    }
}

#[tokio::test]
async fn users_cannot_do_what_only_admins_may() {
    let app = app(Mode::Multi);
    let (_, mut user, bob) = admin_and_user(&app).await;
    let admin_only = [
        (Method::GET, "/app/api/users".to_string(), Value::Null),
        (
            Method::POST,
            "/app/api/users".into(),
            json!({"username": "eve", "password": "long enough"}),
        ),
        (
            Method::PATCH,
            "/app/api/users/1".into(),
            json!({"status": "disabled"}),
        ),
        (Method::DELETE, "/app/api/users/1".into(), Value::Null),
        (
            Method::PUT,
            "/app/api/prices".into(),
            json!({"input_per_million": 0.0, "output_per_million": 0.0}),
        ),
        (Method::POST, "/api/pull".into(), json!({"model": "x"})),
        (
            Method::POST,
            "/api/create".into(),
            json!({"model": "x", "from": MODEL}),
        ),
        (
            Method::POST,
            "/api/copy".into(),
            json!({"source": MODEL, "destination": "x"}),
        ),
        (
            Method::DELETE,
            "/api/delete".into(),
            json!({"model": MODEL}),
        ),
    ];
    for (method, path, body) in admin_only {
        let body = (!body.is_null()).then_some(body);
        let a = user.send(&app, method.clone(), &path, body).await;
        assert_eq!(
            a.status,
            StatusCode::FORBIDDEN,
            "{method} {path}: {}",
            a.body
        );
    }
    let a = user
        .send(
            &app,
            Method::PATCH,
            &format!("/app/api/users/{bob}"),
            Some(json!({"role": "admin"})),
        )
        .await;
    assert_eq!(
        a.status,
        StatusCode::FORBIDDEN,
        "no self-promotion: {}",
        a.body
    );
    // The model is still there.
    let a = user.send(&app, Method::GET, "/api/tags", None).await;
    assert!(a.body.contains(MODEL), "{}", a.body);
}

#[tokio::test]
async fn one_users_chats_are_invisible_to_another() {
    let app = app(Mode::Multi);
    let (mut admin, mut user, _) = admin_and_user(&app).await;
    let chat = admin.new_chat(&app, "Secret plans about zeppelins").await;
    let a = admin
        .send(
            &app,
            Method::POST,
            "/app/api/chats/import",
            Some(json!({"title": "Other", "model": MODEL, "messages": [
                {"role": "user", "content": "the zeppelin launch code is 1234"}]})),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let probes = [
        (Method::GET, format!("/app/api/chats/{chat}"), None),
        (
            Method::PATCH,
            format!("/app/api/chats/{chat}"),
            Some(json!({"title": "mine now"})),
        ),
        (
            Method::POST,
            format!("/app/api/chats/{chat}/messages"),
            Some(json!({"content": "hello"})),
        ),
        (
            Method::GET,
            format!("/app/api/chats/{chat}/export?format=json"),
            None,
        ),
        (
            Method::GET,
            format!("/app/api/chats/{chat}/export?format=markdown"),
            None,
        ),
        (Method::DELETE, format!("/app/api/chats/{chat}"), None),
    ];
    for (method, path, body) in probes {
        let a = user.send(&app, method.clone(), &path, body).await;
        assert_eq!(
            a.status,
            StatusCode::NOT_FOUND,
            "{method} {path}: {}",
            a.body
        );
    }
    let a = user.send(&app, Method::GET, "/app/api/chats", None).await;
    assert_eq!(a.json()["chats"], json!([]));
    let a = user
        .send(&app, Method::GET, "/app/api/search?q=zeppelin", None)
        .await;
    assert_eq!(a.json()["hits"], json!([]), "{}", a.body);
    let a = admin
        .send(&app, Method::GET, "/app/api/search?q=zeppelin", None)
        .await;
    assert_eq!(a.json()["hits"].as_array().unwrap().len(), 2, "{}", a.body);
    let a = admin
        .send(&app, Method::GET, &format!("/app/api/chats/{chat}"), None)
        .await;
    assert_eq!(a.json()["chat"]["title"], "Secret plans about zeppelins");
}

#[tokio::test]
async fn api_keys_open_the_api_until_revoked() {
    let app = app(Mode::Multi);
    let (_, mut user, _) = admin_and_user(&app).await;
    let tags = |key: Option<String>| {
        let router = app.router.clone();
        async move {
            let mut req = Request::get("/api/tags").header(header::HOST, "localhost:11434");
            if let Some(k) = key {
                req = req.header(header::AUTHORIZATION, format!("Bearer {k}"));
            }
            router
                .oneshot(req.body(Body::empty()).unwrap())
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(tags(None).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        tags(Some("hearth_0000".into())).await,
        StatusCode::UNAUTHORIZED
    );
    let a = user
        .send(
            &app,
            Method::POST,
            "/app/api/keys",
            Some(json!({"name": "script"})),
        )
        .await;
    let secret = a.json()["secret"].as_str().unwrap().to_string();
    let id = a.json()["key"]["id"].as_i64().unwrap();
    assert!(secret.starts_with("hearth_"));
    assert_eq!(tags(Some(secret.clone())).await, StatusCode::OK);
    let listed = user.send(&app, Method::GET, "/app/api/keys", None).await;
    assert!(!listed.body.contains(&secret), "the secret is shown once");
    let a = user
        .send(&app, Method::DELETE, &format!("/app/api/keys/{id}"), None)
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(tags(Some(secret)).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn sign_in_is_rate_limited_and_needs_the_page_token() {
    let app = app(Mode::Multi);
    let mut admin = Browser::default();
    admin.signup(&app, "ada").await;
    let mut forger = Browser::default();
    forger.me(&app).await;
    let a = forger
        .send_with(
            &app,
            Method::POST,
            "/app/api/login",
            Some(json!({"username": "ada", "password": "correct horse"})),
            Some("not-the-token"),
        )
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.body);
    let mut guesser = Browser::default();
    for _ in 0..5 {
        let a = guesser.login(&app, "ada", "wrong guess").await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.body);
    }
    let a = guesser.login(&app, "ADA", "correct horse").await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS, "{}", a.body);
    assert!(a.headers.get(header::RETRY_AFTER).is_some());
}

#[tokio::test]
async fn single_user_mode_needs_no_sign_in_but_still_the_csrf_token() {
    let app = app(Mode::Single);
    assert_eq!(app.web.mode(), Mode::Single);
    let mut me = Browser::default();
    let who = me.me(&app).await;
    assert_eq!(who["mode"], "single");
    assert_eq!(who["user"]["role"], "admin");
    let chat = me.new_chat(&app, "local").await;
    let a = me
        .clone()
        .send_with(
            &app,
            Method::DELETE,
            &format!("/app/api/chats/{chat}"),
            None,
            None,
        )
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.body);
    let a = Browser::default()
        .send(&app, Method::GET, "/api/tags", None)
        .await;
    assert_eq!(
        a.status,
        StatusCode::OK,
        "the API stays open on loopback: {}",
        a.body
    );
    let a = Browser::default()
        .send(
            &app,
            Method::POST,
            "/app/api/signup",
            Some(json!({"username": "x", "password": "long enough"})),
        )
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.body);
}

#[tokio::test]
async fn the_page_allows_no_inline_script_and_no_framing() {
    let app = app(Mode::Multi);
    let a = Browser::default().send(&app, Method::GET, "/", None).await;
    assert_eq!(a.status, StatusCode::OK);
    let csp = a.headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(a.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    for (i, tag) in a.body.split("<script").skip(1).enumerate() {
        let open = &tag[..tag.find('>').unwrap()];
        assert!(open.contains("src="), "script {i} is inline: {open}");
    }
    let a = Browser::default()
        .send(&app, Method::GET, "/assets/app.js", None)
        .await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.headers[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/javascript"));
    let a = Browser::default()
        .send(&app, Method::GET, "/assets/..%2FCargo.toml", None)
        .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn other_sites_cannot_call_in() {
    let app = app(Mode::Single);
    let mut me = Browser::default();
    me.me(&app).await;
    let req = Request::post("/app/api/chats")
        .header(header::HOST, "127.0.0.1:11434")
        .header(header::ORIGIN, "https://evil.example")
        .header(header::COOKIE, me.cookie_header())
        .header("x-csrf-token", me.csrf.clone())
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(json!({"model": MODEL}).to_string()))
        .unwrap();
    let status = app.router.clone().oneshot(req).await.unwrap().status();
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn an_answer_streams_and_is_saved_with_its_statistics() {
    let app = app(Mode::Single);
    let mut me = Browser::default();
    me.me(&app).await;
    let chat = me.new_chat(&app, "synthetic chat").await;
    me.send(
        &app,
        Method::PATCH,
        &format!("/app/api/chats/{chat}"),
        Some(json!({"settings": {"temperature": 0.0, "num_ctx": 256}})),
    )
    .await;
    let path = format!("/app/api/chats/{chat}/messages");
    let a = me
        .send(
            &app,
            Method::POST,
            &path,
            Some(json!({"content": "Hello there"})),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let l = lines(&a.body);
    assert_eq!(l[0]["type"], "user");
    assert_eq!(l[1]["type"], "assistant");
    assert_eq!(l[1]["message"]["status"], "streaming");
    let last = l.last().unwrap();
    assert_eq!(last["type"], "done", "{}", a.body);
    let streamed: String = l
        .iter()
        .filter(|x| x["type"] == "token")
        .map(|x| x["text"].as_str().unwrap())
        .collect();
    assert_eq!(last["message"]["content"], streamed);
    assert!(
        last["message"]["stats"]["generated_tokens"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert_eq!(last["message"]["stats"]["context_size"], 256);

    let saved = me
        .send(&app, Method::GET, &format!("/app/api/chats/{chat}"), None)
        .await;
    let messages = saved.json()["messages"].clone();
    assert_eq!(messages.as_array().unwrap().len(), 2);
    assert_eq!(messages[1]["content"], streamed);
    assert_eq!(messages[1]["status"], "done");

    // Greedy: regenerating gives the same answer, in place of the old one.
    let a = me
        .send(&app, Method::POST, &path, Some(json!({"regenerate": true})))
        .await;
    let l = lines(&a.body);
    assert_eq!(l[0]["type"], "assistant");
    assert_eq!(l.last().unwrap()["message"]["content"], streamed);
    // Editing the question replaces it and what followed.
    let first = messages[0]["id"].as_i64().unwrap();
    let a = me
        .send(
            &app,
            Method::POST,
            &path,
            Some(json!({"content": "Another question", "edit": first})),
        )
        .await;
    assert_eq!(lines(&a.body).last().unwrap()["type"], "done", "{}", a.body);
    let saved = me
        .send(&app, Method::GET, &format!("/app/api/chats/{chat}"), None)
        .await;
    let messages = saved.json()["messages"].clone();
    assert_eq!(messages.as_array().unwrap().len(), 2);
    assert_eq!(messages[0]["content"], "Another question");

    let usage = me.send(&app, Method::GET, "/app/api/usage", None).await;
    let rows = usage.json()["rows"].clone();
    assert_eq!(rows[0]["requests"], 3, "{rows}");
    assert!(rows[0]["generated_tokens"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn an_answer_to_a_missing_model_is_an_error_line_and_kept_as_error() {
    let app = app(Mode::Single);
    let mut me = Browser::default();
    me.me(&app).await;
    let a = me
        .send(
            &app,
            Method::POST,
            "/app/api/chats",
            Some(json!({"model": "no-such-model"})),
        )
        .await;
    let chat = a.json()["chat"]["id"].as_str().unwrap().to_string();
    let a = me
        .send(
            &app,
            Method::POST,
            &format!("/app/api/chats/{chat}/messages"),
            Some(json!({"content": "hi"})),
        )
        .await;
    let l = lines(&a.body);
    assert_eq!(l.last().unwrap()["type"], "error", "{}", a.body);
    let saved = me
        .send(&app, Method::GET, &format!("/app/api/chats/{chat}"), None)
        .await;
    assert_eq!(saved.json()["messages"][0]["content"], "hi");
    assert_eq!(saved.json()["messages"][1]["status"], "error");
}

#[tokio::test]
async fn export_and_import_round_trip() {
    let app = app(Mode::Single);
    let mut me = Browser::default();
    me.me(&app).await;
    let import = json!({"title": "Trip <b>notes</b>", "model": MODEL, "settings": {"system": "Be brief."},
        "messages": [{"role": "user", "content": "Where to?"}, {"role": "assistant", "content": "**Lisbon**"}]});
    let a = me
        .send(&app, Method::POST, "/app/api/chats/import", Some(import))
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let chat = a.json()["chat"]["id"].as_str().unwrap().to_string();
    let a = me
        .send(
            &app,
            Method::GET,
            &format!("/app/api/chats/{chat}/export?format=json"),
            None,
        )
        .await;
    assert!(a.headers[header::CONTENT_DISPOSITION]
        .to_str()
        .unwrap()
        .contains("Trip--b-notes--b.json"));
    let back = a.json();
    assert_eq!(back["messages"][1]["content"], "**Lisbon**");
    assert_eq!(back["settings"]["system"], "Be brief.");
    let a = me
        .send(
            &app,
            Method::GET,
            &format!("/app/api/chats/{chat}/export?format=markdown"),
            None,
        )
        .await;
    assert!(
        a.body.contains("**Lisbon**") && a.body.contains("Where to?"),
        "{}",
        a.body
    );
    let a = me
        .send(
            &app,
            Method::POST,
            "/app/api/chats/import",
            Some(json!({"title": "x", "model": MODEL, "messages": [{"role": "root", "content": "x"}]})),
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);
}

#[tokio::test]
async fn a_reader_that_hangs_up_stops_the_answer_and_it_is_kept_as_stopped() {
    use tokio_stream::StreamExt;
    let app = app(Mode::Single);
    let mut me = Browser::default();
    me.me(&app).await;
    let chat = me.new_chat(&app, "stopped").await;
    let req = Request::post(format!("/app/api/chats/{chat}/messages"))
        .header(header::HOST, "127.0.0.1:11434")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::COOKIE, me.cookie_header())
        .header("x-csrf-token", me.csrf.clone())
        .body(Body::from(json!({"content": "Go on and on"}).to_string()))
        .unwrap();
    let response = app.router.clone().oneshot(req).await.unwrap();
    let mut body = response.into_body().into_data_stream();
    let mut seen = String::new();
    while !seen.contains("\"token\"") {
        let chunk = body.next().await.expect("the answer streams").unwrap();
        seen += std::str::from_utf8(&chunk).unwrap();
    }
    // The stop button: the page aborts its fetch.
    drop(body);
    let path = format!("/app/api/chats/{chat}");
    let start = std::time::Instant::now();
    loop {
        let answer = me.send(&app, Method::GET, &path, None).await.json()["messages"][1].clone();
        if answer["status"] != "streaming" {
            assert_eq!(answer["status"], "stopped", "{answer}");
            assert!(!answer["content"].as_str().unwrap().is_empty(), "{answer}");
            break;
        }
        assert!(
            start.elapsed().as_secs() < 30,
            "the answer is still streaming"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn api_generations_count_in_the_callers_usage() {
    let app = app(Mode::Multi);
    let (_, mut user, _) = admin_and_user(&app).await;
    let a = user
        .send(
            &app,
            Method::POST,
            "/app/api/keys",
            Some(json!({"name": "script"})),
        )
        .await;
    let secret = a.json()["secret"].as_str().unwrap().to_string();
    let req = Request::post("/api/generate")
        .header(header::HOST, "localhost:11434")
        .header(header::AUTHORIZATION, format!("Bearer {secret}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            json!({"model": MODEL, "prompt": "Hi", "stream": false, "options": {"num_predict": 3}})
                .to_string(),
        ))
        .unwrap();
    let response = app.router.clone().oneshot(req).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    to_bytes(response.into_body(), usize::MAX).await.unwrap();
    // Through the page's session, streamed.
    let a = user
        .send(
            &app,
            Method::POST,
            "/api/chat",
            Some(
                json!({"model": MODEL, "messages": [{"role": "user", "content": "Hi"}],
                "options": {"num_predict": 2}}),
            ),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let usage = user
        .send(&app, Method::GET, "/app/api/usage", None)
        .await
        .json();
    let rows = usage["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{usage}");
    assert_eq!(rows[0]["username"], "bob");
    assert_eq!(rows[0]["requests"], 2, "{usage}");
    assert!(rows[0]["generated_tokens"].as_u64().unwrap() > 0, "{usage}");
}
