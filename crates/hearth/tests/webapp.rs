//! The web app from the outside: a real headless Chromium drives it against `hearth serve` with
//! the real SmolLM2 (tests/browser/app_checks.py: sign-up, a streamed answer, a restart, search,
//! export, a second user's approval and isolation, hostile markdown, screenshots), and a server
//! killed with SIGKILL in the middle of an answer loses nothing that was saved before.

mod serving;

use serde_json::{json, Value};
use serving::*;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Debian's Chromium, which `scripts/test.sh` installs.
fn chromium() -> PathBuf {
    for candidate in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if Path::new(candidate).is_file() {
            return PathBuf::from(candidate);
        }
    }
    panic!("Chromium is not installed: run `apt-get install chromium` (scripts/test.sh does)");
}

/// all-MiniLM-L6-v2's Hugging Face directory, fetched by `scripts/fetch-test-models.sh`.
fn minilm_dir() -> PathBuf {
    let dir = std::env::var_os("HEARTH_TEST_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is set"))
                .join(".cache/hearth/test-models")
        })
        .join("all-minilm-l6-v2");
    assert!(
        dir.join("model.safetensors").is_file(),
        "run scripts/fetch-test-models.sh minilm (scripts/test.sh does)"
    );
    dir
}

/// Where the screenshots go: `$HEARTH_SCREENSHOTS`, else `target/screenshots`.
fn screenshot_dir() -> PathBuf {
    std::env::var_os("HEARTH_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots"))
}

#[test]
fn the_app_in_a_real_browser() {
    let Some(python) = browser_python() else {
        return;
    };
    let chromium = chromium();
    let models = Models::with(&[(SMOLLM2, smollm2_file())]);
    // The embedding model, imported from its Hugging Face files as a user would.
    let minilm = minilm_dir();
    models.ok(&[
        "create",
        "minilm",
        "--from",
        minilm.to_str().unwrap(),
        "--quantize",
        "q8_0",
    ]);
    let shots = screenshot_dir();
    let _ = std::fs::remove_dir_all(&shots);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/app_checks.py");
    let out = Command::new(python)
        .arg(&script)
        .args([hearth_bin(), SMOLLM2])
        .arg(&shots)
        .arg(&chromium)
        .env("HEARTH_MODELS", models.dir.path())
        .env("OLLAMA_MODELS", models.ollama.path())
        .env("HEARTH_HOME", models.home.path())
        .env_remove("HEARTH_HOST")
        .env_remove("HEARTH_API_KEY")
        .env_remove("HEARTH_DB")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .unwrap();
    let log = std::fs::read_to_string(shots.join("server.log")).unwrap_or_default();
    assert!(
        out.status.success(),
        "the browser checks failed ({}):\n{}{}\n--- server log ---\n{log}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for name in [
        "02-chat",
        "04-pending",
        "07-hostile-markdown",
        "08-models",
        "12-phone",
    ] {
        assert!(
            shots.join(format!("{name}.png")).is_file(),
            "no {name} screenshot"
        );
    }
}

/// The page's session in single-user mode: the cookie header and the CSRF token.
fn session(addr: &str) -> (String, String) {
    let r = request(addr, "GET", "/app/api/me", &[], None).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let cookie = r
        .headers
        .iter()
        .filter(|(n, _)| n == "set-cookie")
        .map(|(_, v)| v.split(';').next().unwrap().to_string())
        .collect::<Vec<_>>()
        .join("; ");
    let csrf = r.json()["csrf"].as_str().unwrap().to_string();
    (cookie, csrf)
}

fn chat(addr: &str, cookie: &str, id: &str) -> Value {
    let r = request(
        addr,
        "GET",
        &format!("/app/api/chats/{id}"),
        &[("Cookie", cookie)],
        None,
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

#[test]
fn sigkill_in_the_middle_of_an_answer_loses_no_earlier_message() {
    let models = Models::with(&[(SMOLLM2, smollm2_file())]);
    let server = Server::start(&models, &[], &[]);
    let addr = server.addr.clone();
    let (cookie, csrf) = session(&addr);
    let headers = [("Cookie", cookie.as_str()), ("X-CSRF-Token", csrf.as_str())];
    let r = request(
        &addr,
        "POST",
        "/app/api/chats",
        &headers,
        Some(&json!({"model": SMOLLM2, "title": "kept", "settings": {"temperature": 0}})),
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let id = r.json()["chat"]["id"].as_str().unwrap().to_string();
    let path = format!("/app/api/chats/{id}/messages");
    let r = request(
        &addr,
        "POST",
        &path,
        &headers,
        Some(&json!({"content": "Name a colour."})),
    )
    .unwrap();
    assert_eq!(r.ndjson().last().unwrap()["type"], "done", "{}", r.text());
    let before = chat(&addr, &cookie, &id)["messages"].clone();
    assert_eq!(before.as_array().unwrap().len(), 2);

    // A long answer, killed after it has been streaming for a while.
    let mut stream = open(
        &addr,
        "POST",
        &path,
        &headers,
        Some(
            &json!({"content": "Write a long story about a lighthouse keeper, in many chapters."}),
        ),
    )
    .unwrap();
    let mut reader = BufReader::new(&mut stream);
    let (status, _) = read_head(&mut reader).unwrap();
    assert_eq!(status, 200);
    let started = Instant::now();
    let mut streamed = String::new();
    let mut line = String::new();
    while started.elapsed() < Duration::from_secs(2) || streamed.is_empty() {
        line.clear();
        reader.read_line(&mut line).unwrap();
        // Chunked framing: the size lines are not JSON.
        if let Ok(v) = serde_json::from_str::<Value>(line.trim()) {
            if v["type"] == "token" {
                streamed += v["text"].as_str().unwrap();
            }
            assert_ne!(v["type"], "done", "the answer ended before the kill");
        }
    }
    let mut server = server;
    server.kill();

    let server = Server::restart(&models, &addr);
    assert!(
        server.log().contains("marked interrupted"),
        "{}",
        server.log()
    );
    let (cookie, _) = session(&addr);
    let after = chat(&addr, &cookie, &id)["messages"].clone();
    let after = after.as_array().unwrap();
    assert_eq!(after.len(), 4, "{after:?}");
    assert_eq!(
        after[..2],
        before.as_array().unwrap()[..],
        "earlier messages changed"
    );
    assert_eq!(after[2]["role"], "user");
    assert_eq!(after[3]["status"], "interrupted");
    let kept = after[3]["content"].as_str().unwrap();
    assert!(!kept.is_empty(), "nothing of the answer was kept");
    // The server ran on while the test read; one is the beginning of the other.
    assert!(
        streamed.starts_with(kept) || kept.starts_with(&streamed),
        "what was kept is not what was streamed:\n{kept:?}\n{streamed:?}"
    );
}

#[test]
fn backup_copies_the_database_while_the_server_runs() {
    let models = Models::empty();
    let server = Server::start(&models, &[], &[]);
    let (cookie, csrf) = session(&server.addr);
    let r = request(
        &server.addr,
        "POST",
        "/app/api/chats",
        &[("Cookie", cookie.as_str()), ("X-CSRF-Token", csrf.as_str())],
        Some(&json!({"model": "any", "title": "backed up"})),
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let dest = models.home.path().join("copy.db");
    let dest = dest.to_str().unwrap();
    models.ok(&["backup", dest]);
    let copy = appdb::Db::open(Path::new(dest)).unwrap();
    let local = copy.local_user().unwrap();
    let titles: Vec<String> = copy
        .chats(local.id)
        .unwrap()
        .into_iter()
        .map(|c| c.title)
        .collect();
    assert_eq!(titles, ["backed up"]);
    let again = models.command(&["backup", dest]).output().unwrap();
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("copy.db"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
}
