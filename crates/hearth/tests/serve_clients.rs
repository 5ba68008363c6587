//! `hearth serve` from the outside, as issue 5's acceptance asks: clients that nobody here wrote
//! (the official `openai` and `ollama` Python packages from PyPI, in a virtual environment the
//! test makes and caches, and `curl`) against a running server with the real SmolLM2; 16
//! concurrent streaming clients; a full queue; a client that hangs up; the security defaults;
//! and the CLI's client commands (`ps`, `stop`, and `run`/`list`/`pull` through the server).

mod serving;

use serde_json::json;
use serving::*;
use std::io::{BufRead, BufReader};
use std::process::Command;
use std::time::{Duration, Instant};

/// A server with `smollm2` and `tiny`, and the Python to run a client script with (None, and
/// the test is skipped, where there is no `python3`).
fn server_and_python() -> Option<(Models, Server, std::path::PathBuf)> {
    let python = python()?;
    let models = Models::with_models();
    let server = Server::start(&models, &[], &[]);
    Some((models, server, python))
}

fn openai(checks: &[&str]) {
    let Some((_models, server, python)) = server_and_python() else {
        return;
    };
    let n_embd = smollm2_n_embd().to_string();
    let url = server.url();
    let args = [&[url.as_str(), SMOLLM2, &n_embd][..], checks].concat();
    let listed = format!("{SMOLLM2},{TINY}");
    run_script(
        &python,
        "openai_checks.py",
        &args,
        &[("HEARTH_TEST_MODELS_LISTED", &listed)],
    );
}

fn ollama(checks: &[&str], env: &[(&str, &str)]) {
    let Some((_models, server, python)) = server_and_python() else {
        return;
    };
    let n_embd = smollm2_n_embd().to_string();
    let url = server.url();
    let args = [&[url.as_str(), SMOLLM2, &n_embd][..], checks].concat();
    let listed = format!("{SMOLLM2},{TINY}");
    let env = [&[("HEARTH_TEST_MODELS_LISTED", listed.as_str())][..], env].concat();
    run_script(&python, "ollama_checks.py", &args, &env);
}

#[test]
fn openai_chat_completions() {
    openai(&["chat"]);
}

#[test]
fn openai_chat_completions_streaming() {
    openai(&["chat_stream"]);
}

#[test]
fn openai_completions_streaming_and_not() {
    openai(&["completions", "completions_stream"]);
}

#[test]
fn openai_embeddings() {
    openai(&["embeddings"]);
}

#[test]
fn openai_models_list() {
    openai(&["models"]);
}

#[test]
fn ollama_chat() {
    ollama(&["chat"], &[]);
}

#[test]
fn ollama_chat_streaming() {
    ollama(&["chat_stream"], &[]);
}

#[test]
fn ollama_generate_streaming_and_not() {
    ollama(&["generate", "generate_stream"], &[]);
}

#[test]
fn ollama_embed() {
    ollama(&["embed"], &[]);
}

#[test]
fn ollama_list() {
    ollama(&["list"], &[]);
}

/// A client script's `checks` against a server with Qwen2.5-Coder, a model that calls tools
/// (SmolLM2's template has none). N_EMBD is not used by the tool checks.
fn with_qwen(script: &str, checks: &[&str]) {
    let Some(python) = python() else {
        return;
    };
    let models = Models::with(&[(QWEN, qwen_file())]);
    let server = Server::start(&models, &[], &[]);
    let url = server.url();
    let args = [&[url.as_str(), QWEN, "0"][..], checks].concat();
    run_script(&python, script, &args, &[]);
}

/// `tools=[...]` with the openai package: `message.tool_calls[0].function` is
/// `get_weather` with `{"city": "Paris"}` as its JSON `arguments`, streamed (deltas accumulated)
/// and not; the result sent back (`role: "tool"`, `tool_call_id`) is answered in text.
#[test]
fn openai_tool_calls_streaming_and_not() {
    with_qwen("openai_checks.py", &["tools", "tools_stream"]);
}

/// `tools=[...]` with the ollama package: `message.tool_calls[0].function.arguments["city"]` is
/// "Paris", streamed and not; the result sent back (`role: "tool"`, `tool_name`) is answered in
/// text.
#[test]
fn ollama_tool_calls_streaming_and_not() {
    with_qwen("ollama_checks.py", &["tools", "tools_stream"]);
}

/// Structured output with the openai package: `chat.completions.parse(response_format=<a
/// pydantic model>)` parses at temperature 1, `json_object` gives a JSON object, and
/// `tool_choice="required"` turns a question no tool answers into a `get_weather` call.
#[test]
fn openai_structured_output_and_required_tool_calls() {
    with_qwen("openai_checks.py", &["structured", "tool_required"]);
}

/// Structured output with the ollama package: `format=<a pydantic model's JSON schema>` answers
/// validate at temperature 1, and `format="json"` gives a JSON object.
#[test]
fn ollama_structured_output() {
    with_qwen("ollama_checks.py", &["structured"]);
}

/// `ollama.pull` from a registry on loopback: progress with byte counts per blob, then the
/// model is listed.
#[test]
fn ollama_pull_with_progress() {
    let registry = test_registry::Registry::start();
    let model = std::fs::read(smollm2_file()).unwrap();
    registry.add_model(
        "library/pulled",
        "latest",
        &[(store::media_type::MODEL, &model)],
    );
    let name = format!("{}/library/pulled:latest", registry.host());
    ollama(&["pull"], &[("HEARTH_TEST_PULL", &name)]);
}

/// `curl` (where installed), or None after saying it is not.
fn curl() -> Option<Command> {
    if Command::new("curl").arg("--version").output().is_err() {
        eprintln!("skipped: curl is not installed");
        return None;
    }
    let mut cmd = Command::new("curl");
    cmd.args(["--silent", "--show-error", "--no-buffer", "--include"])
        .args(["--noproxy", "*"]);
    Some(cmd)
}

/// curl's output split into the response's head (lower case) and body.
fn curl_output(cmd: &mut Command) -> (String, String) {
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "curl failed: {text}{:?}", out.stderr);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP head in curl's output: {text}"));
    (head.to_ascii_lowercase(), body.to_string())
}

#[test]
fn curl_generate_streams_ndjson() {
    let Some(mut curl) = curl() else { return };
    let models = Models::with_models();
    let server = Server::start(&models, &[], &[]);
    let body = json!({"model": SMOLLM2, "prompt": "Why is the sky blue?",
        "options": {"temperature": 0, "seed": 42, "num_predict": 16}});
    let (head, body) = curl_output(
        curl.arg(format!("{}/api/generate", server.url()))
            .args(["-d", &body.to_string()]),
    );
    // Ollama's documentation sends JSON with `curl -d` and no Content-Type (so curl says
    // application/x-www-form-urlencoded); Ollama reads it as JSON all the same.
    assert!(head.starts_with("http/1.1 200"), "{head}\n{body}");
    assert!(
        head.contains("content-type: application/x-ndjson"),
        "{head}"
    );
    let lines: Vec<serde_json::Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(lines.len() > 2, "not streamed: {body}");
    let (last, parts) = lines.split_last().unwrap();
    for part in parts {
        assert_eq!(part["done"], false, "{part}");
        assert_eq!(part["model"], SMOLLM2, "{part}");
        assert!(part["response"].is_string(), "{part}");
    }
    let text: String = parts
        .iter()
        .map(|p| p["response"].as_str().unwrap())
        .collect();
    assert!(!text.trim().is_empty(), "{body}");
    assert_eq!(last["done"], true, "{last}");
    assert!(["stop", "length"].contains(&last["done_reason"].as_str().unwrap()));
    for count in [
        "prompt_eval_count",
        "eval_count",
        "total_duration",
        "eval_duration",
    ] {
        assert!(last[count].as_u64().unwrap_or(0) > 0, "{count}: {last}");
    }
}

#[test]
fn curl_chat_completions_stream_server_sent_events_to_done() {
    let Some(mut curl) = curl() else { return };
    let models = Models::with_models();
    let server = Server::start(&models, &[], &[]);
    let body = json!({"model": SMOLLM2, "stream": true, "max_tokens": 16, "temperature": 0,
        "seed": 42, "messages": [{"role": "user", "content": "What is the capital of France?"}]});
    let (head, body) = curl_output(
        curl.arg(format!("{}/v1/chat/completions", server.url()))
            .args([
                "-H",
                "Content-Type: application/json",
                "-d",
                &body.to_string(),
            ]),
    );
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("content-type: text/event-stream"), "{head}");
    let data: Vec<&str> = body
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            l.strip_prefix("data: ")
                .unwrap_or_else(|| panic!("not an SSE data line: {l:?}"))
        })
        .collect();
    assert_eq!(data.last(), Some(&"[DONE]"), "{body}");
    let chunks: Vec<serde_json::Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap_or_else(|e| panic!("{e}: {d}")))
        .collect();
    assert!(chunks.len() > 2, "not streamed: {body}");
    let mut text = String::new();
    for chunk in &chunks {
        assert_eq!(chunk["object"], "chat.completion.chunk", "{chunk}");
        text += chunk["choices"][0]["delta"]["content"]
            .as_str()
            .unwrap_or("");
    }
    assert!(!text.trim().is_empty(), "{body}");
    let finish = &chunks.last().unwrap()["choices"][0]["finish_reason"];
    assert!(finish == "stop" || finish == "length", "{body}");
}

/// The same greedy question over /api/generate, streamed; the answer's text and the final
/// object.
fn streamed_answer(addr: &str, num_predict: u32) -> (u16, String, serde_json::Value) {
    let r = request(
        addr,
        "POST",
        "/api/generate",
        &[],
        Some(&json!({"model": SMOLLM2, "prompt": "Why is the sky blue?",
            "options": {"temperature": 0, "seed": 42, "num_predict": num_predict}})),
    )
    .unwrap();
    if r.status != 200 {
        return (r.status, r.text(), serde_json::Value::Null);
    }
    let lines = r.ndjson();
    let text = lines
        .iter()
        .map(|l| l["response"].as_str().unwrap_or(""))
        .collect();
    (r.status, text, lines.last().cloned().unwrap_or_default())
}

/// 16 clients streaming at once each get the whole answer that one client alone gets.
#[test]
fn sixteen_concurrent_streaming_clients_get_the_single_client_answer() {
    let models = Models::with_models();
    let server = Server::start(&models, &[], &[]);
    let (status, alone, alone_last) = streamed_answer(&server.addr, 16);
    assert_eq!(status, 200, "{alone}");
    assert!(
        !alone.trim().is_empty() && alone_last["done"] == true,
        "{alone_last}"
    );
    let answers: Vec<_> = std::thread::scope(|s| {
        let clients: Vec<_> = (0..16)
            .map(|_| s.spawn(|| streamed_answer(&server.addr, 16)))
            .collect();
        clients.into_iter().map(|c| c.join().unwrap()).collect()
    });
    for (i, (status, text, last)) in answers.iter().enumerate() {
        assert_eq!(*status, 200, "client {i}: {text}");
        assert_eq!(last["done"], true, "client {i} got no final object: {last}");
        assert_eq!(last["eval_count"], alone_last["eval_count"], "client {i}");
        assert_eq!(text, &alone, "client {i} got another answer");
    }
}

/// With one request running at a time and one waiting, the rest of a burst is turned away at
/// once with 503 and `Retry-After`, and the accepted ones complete.
#[test]
fn a_full_queue_answers_503_with_retry_after() {
    let models = Models::with_models();
    let env = [("HEARTH_NUM_PARALLEL", "1"), ("HEARTH_MAX_QUEUE", "1")];
    let server = Server::start(&models, &[], &env);
    // Loaded first, so that the burst meets a model that is generating, not loading.
    assert_eq!(streamed_answer(&server.addr, 1).0, 200);
    let burst: Vec<_> = std::thread::scope(|s| {
        let clients: Vec<_> = (0..6)
            .map(|_| {
                s.spawn(|| {
                    request(
                        &server.addr,
                        "POST",
                        "/api/generate",
                        &[],
                        Some(&json!({"model": SMOLLM2, "prompt": "Count to fifty.",
                            "options": {"temperature": 0, "seed": 1, "num_predict": 48}})),
                    )
                    .unwrap()
                })
            })
            .collect();
        clients.into_iter().map(|c| c.join().unwrap()).collect()
    });
    let (mut ok, mut busy) = (0, 0);
    for r in &burst {
        match r.status {
            200 => {
                ok += 1;
                let last = r.ndjson().pop().unwrap();
                assert_eq!(
                    last["done"], true,
                    "an accepted request did not finish: {last}"
                );
            }
            503 => {
                busy += 1;
                let wait = r
                    .header("retry-after")
                    .unwrap_or_else(|| panic!("a 503 without Retry-After: {:?}", r.headers));
                assert!(wait.parse::<u64>().is_ok(), "Retry-After: {wait}");
                assert!(r.json()["error"].is_string(), "{}", r.text());
            }
            other => panic!("status {other}: {}", r.text()),
        }
    }
    assert!(ok >= 1 && busy >= 1, "{ok} accepted, {busy} turned away");
    // Nothing is left stuck: the server takes requests again.
    assert_eq!(streamed_answer(&server.addr, 2).0, 200);
}

/// A client that hangs up mid-stream stops its generation: with one slot, the next request
/// runs at once instead of waiting for thousands of tokens nobody reads.
#[test]
fn a_disconnected_client_frees_its_slot() {
    let models = Models::with_models();
    let server = Server::start(&models, &[], &[("HEARTH_NUM_PARALLEL", "1")]);
    // Counting goes on until num_predict: about a minute of generation on two cores.
    let long = json!({"model": SMOLLM2, "prompt": "1, 2, 3, 4,", "raw": true,
        "options": {"temperature": 0, "num_predict": 4000, "num_ctx": 4096}});
    let mut stream = open(&server.addr, "POST", "/api/generate", &[], Some(&long)).unwrap();
    let mut reader = BufReader::new(&mut stream);
    let (status, _) = read_head(&mut reader).unwrap();
    assert_eq!(status, 200);
    let mut seen = String::new();
    while seen.matches("\"response\"").count() < 3 {
        let mut line = String::new();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "ended early: {seen}"
        );
        seen += &line;
    }
    drop(reader);
    drop(stream);
    let start = Instant::now();
    let (status, text, _) = streamed_answer(&server.addr, 4);
    assert_eq!(status, 200, "{text}");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "the next request took {:?}: the abandoned generation kept the slot",
        start.elapsed()
    );
}

/// On the network the server has accounts whether asked or not: it starts without a key, and
/// the API wants a user's key or a sign-in (the test talks to it on loopback only).
#[test]
fn binding_all_interfaces_without_a_key_turns_accounts_on() {
    let models = Models::empty();
    let port = free_port();
    let server = Server::spawn(
        &models,
        &["--host", &format!("0.0.0.0:{port}")],
        &[],
        &[],
        &format!("127.0.0.1:{port}"),
    );
    server.wait_healthy();
    assert!(server.log().contains("accounts"), "{}", server.log());
    for path in ["/api/tags", "/api/version", "/v1/models", "/app/api/chats"] {
        assert_eq!(get_status(&server.addr, path, &[]), 401, "{path}");
    }
    let r = request(&server.addr, "GET", "/app/api/me", &[], None).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["mode"], "multi");
    assert_eq!(r.json()["needs_admin"], true);
}

/// Status of GET `path` with `headers`.
fn get_status(addr: &str, path: &str, headers: &[(&str, &str)]) -> u16 {
    request(addr, "GET", path, headers, None).unwrap().status
}

fn check_key_required(addr: &str, key: &str) {
    let bearer = format!("Bearer {key}");
    let wrong = format!("Bearer {key}x");
    for path in ["/api/tags", "/api/version", "/v1/models"] {
        assert_eq!(get_status(addr, path, &[]), 401, "{path} without a key");
        assert_eq!(
            get_status(addr, path, &[("Authorization", &wrong)]),
            401,
            "{path} with a wrong key"
        );
        assert_eq!(
            get_status(addr, path, &[("Authorization", &bearer)]),
            200,
            "{path} with the key"
        );
    }
    assert_eq!(
        get_status(addr, "/health", &[]),
        200,
        "/health needs no key"
    );
    let r = request(
        addr,
        "POST",
        "/api/generate",
        &[("Authorization", &bearer)],
        Some(&json!({"model": SMOLLM2, "prompt": "Hi", "stream": false,
            "options": {"num_predict": 2}})),
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json()["response"].is_string());
}

#[test]
fn an_api_key_from_the_environment_is_required_of_every_request_but_health() {
    let models = Models::with_models();
    let key = "test-key-0123456789abcdef";
    let server = Server::start(&models, &[], &[("HEARTH_API_KEY", key)]);
    check_key_required(&server.addr, key);
}

/// Bound to every interface with a key file: the server starts, and wants the key (the test
/// talks to it on loopback only).
#[test]
fn an_api_key_file_lets_the_server_listen_on_all_interfaces() {
    let models = Models::with_models();
    let key = "file-key-0123456789abcdef";
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), format!("{key}\n")).unwrap();
    let port = free_port();
    let server = Server::spawn(
        &models,
        &["--host", &format!("0.0.0.0:{port}")],
        &["--api-key-file", file.path().to_str().unwrap()],
        &[],
        &format!("127.0.0.1:{port}"),
    );
    let start = Instant::now();
    while !request(&server.addr, "GET", "/health", &[], None).is_ok_and(|r| r.status == 200) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    check_key_required(&server.addr, key);
}

/// DNS rebinding: a page on another site that resolves its name to 127.0.0.1 sends its own
/// name as `Host`; the loopback server refuses it.
#[test]
fn a_foreign_host_header_on_loopback_is_forbidden() {
    let models = Models::empty();
    let server = Server::start(&models, &[], &[]);
    let port = server.addr.rsplit(':').next().unwrap().to_string();
    for host in [
        "evil.example.com",
        "evil.example.com:11434",
        "attacker.test:80",
    ] {
        let r = request(&server.addr, "GET", "/api/tags", &[("Host", host)], None).unwrap();
        assert_eq!(r.status, 403, "Host: {host}: {}", r.text());
    }
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        "localhost".to_string(),
        format!("[::1]:{port}"),
    ] {
        let r = request(&server.addr, "GET", "/api/tags", &[("Host", &host)], None).unwrap();
        assert_eq!(r.status, 200, "Host: {host}: {}", r.text());
    }
}

/// `hearth` with an empty store of its own, pointed at `server`: what it shows of models can
/// only come from the server.
fn client(server: &Server, args: &[&str]) -> (String, String) {
    let local = Models::empty();
    let out = local
        .command(args)
        .env("HEARTH_HOST", &server.addr)
        .output()
        .unwrap();
    ok(out, args)
}

#[test]
fn cli_run_and_list_go_through_a_running_server() {
    let models = Models::with_models();
    let server = Server::start(&models, &[], &[]);
    let (list, _) = client(&server, &["list"]);
    assert!(list.starts_with("NAME"), "{list}");
    for name in [SMOLLM2, TINY] {
        assert!(
            list.lines()
                .any(|l| l.starts_with(&format!("{name}:latest"))),
            "{name} is not listed:\n{list}"
        );
    }
    let greedy = ["--temperature", "0", "--seed", "42", "--num-predict", "16"];
    let question = "What is the capital of France?";
    let (through_server, _) = client(
        &server,
        &[&["run", SMOLLM2], &greedy[..], &[question]].concat(),
    );
    assert!(!through_server.trim().is_empty());
    // The same answer as a run on its own, from the store.
    let (alone, _) = models.ok(&[&["run", SMOLLM2], &greedy[..], &[question]].concat());
    assert_eq!(through_server, alone);
    // Standalone when no server answers: the empty store has nothing to list.
    let (list, _) = Models::empty().ok(&["list"]);
    assert_eq!(list.lines().count(), 1, "{list}");
}

#[test]
fn cli_pull_goes_through_a_running_server() {
    let registry = test_registry::Registry::start();
    let model = std::fs::read(smollm2_file()).unwrap();
    registry.add_model(
        "library/pulled",
        "latest",
        &[(store::media_type::MODEL, &model)],
    );
    let name = format!("{}/library/pulled:latest", registry.host());
    let models = Models::empty();
    let server = Server::start(&models, &[], &[]);
    let (_, err) = client(&server, &["pull", &name, "--insecure"]);
    assert!(err.contains("success"), "{err}");
    // In the server's store.
    let (list, _) = models.ok(&["list"]);
    assert!(list.contains(&name), "{list}");
}

#[test]
fn cli_ps_shows_a_loaded_model_until_stop_unloads_it() {
    let models = Models::with_models();
    let server = Server::start(&models, &[], &[]);
    let (ps, _) = client(&server, &["ps"]);
    assert_eq!(ps.lines().count(), 1, "nothing is loaded yet:\n{ps}");
    client(&server, &["run", SMOLLM2, "--num-predict", "2", "Hi"]);
    let (ps, _) = client(&server, &["ps"]);
    let header: Vec<&str> = ps.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "ID", "SIZE", "PROCESSOR", "UNTIL"], "{ps}");
    let row = ps
        .lines()
        .find(|l| l.starts_with("smollm2:latest"))
        .unwrap_or_else(|| panic!("smollm2 is not loaded:\n{ps}"));
    assert!(row.contains("100% CPU"), "{row}");
    assert!(row.contains("MB"), "{row}");
    client(&server, &["stop", SMOLLM2]);
    let (ps, _) = client(&server, &["ps"]);
    assert_eq!(ps.lines().count(), 1, "stopped, yet listed:\n{ps}");
}

#[test]
fn cli_ps_and_stop_without_a_server_say_how_to_start_one() {
    let models = Models::empty();
    for args in [&["ps"][..], &["stop", SMOLLM2]] {
        let out = models.command(args).output().unwrap();
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("127.0.0.1:9") && err.contains("hearth serve"),
            "{args:?}: {err}"
        );
    }
}
