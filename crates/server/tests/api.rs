//! The server's router driven in-process with the synthetic llama (testdata) imported into a
//! temporary store: both APIs, streaming and not, their error cases, the queue, and security.

mod common;

use axum::body::{to_bytes, Body};
use axum::http::{header, Request, StatusCode};
use axum::Router;
use common::sse_chunks;
use serde_json::{json, Value};
use server::Config;
use std::path::Path;
use std::time::Duration;
use tower::ServiceExt;

const MODEL: &str = "synthetic";

struct TestServer {
    router: Router,
    state: std::sync::Arc<server::AppState>,
    _dir: tempfile::TempDir,
}

fn config_with(f: impl FnOnce(&mut Config)) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let store = store::Store::new(dir.path());
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/reference/synthetic/llama3-synthetic-q8_0.gguf");
    store
        .import(&store::ModelName::parse(MODEL).unwrap(), &path)
        .unwrap();
    let mut config = Config::new(store);
    config.threads = 1;
    config.num_parallel = Some(2);
    config.max_memory = Some(1 << 30);
    f(&mut config);
    let (router, state) = server::app(&config, true);
    TestServer {
        router,
        state,
        _dir: dir,
    }
}

fn server() -> TestServer {
    config_with(|_| {})
}

fn post(path: &str, body: Value) -> Request<Body> {
    Request::post(path)
        .header(header::HOST, "localhost:11434")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

fn get(path: &str) -> Request<Body> {
    Request::get(path)
        .header(header::HOST, "127.0.0.1:11434")
        .body(Body::empty())
        .unwrap()
}

async fn call(s: &TestServer, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, String) {
    let response = s.router.clone().oneshot(req).await.unwrap();
    let (parts, body) = response.into_parts();
    let bytes = to_bytes(body, usize::MAX).await.unwrap();
    (
        parts.status,
        parts.headers,
        String::from_utf8(bytes.to_vec()).unwrap(),
    )
}

async fn call_json(s: &TestServer, req: Request<Body>) -> (StatusCode, Value) {
    let (status, _, body) = call(s, req).await;
    let v = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    (status, v)
}

fn greedy(n: u64) -> Value {
    json!({"temperature": 0, "num_predict": n, "seed": 1})
}

#[tokio::test]
async fn health_version_and_tags() {
    let s = server();
    let (status, _, body) = call(&s, get("/health")).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));
    let (status, v) = call_json(&s, get("/api/version")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(v["version"].is_string());
    let (status, v) = call_json(&s, get("/api/tags")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["models"][0]["name"], "synthetic:latest");
    assert_eq!(v["models"][0]["details"]["family"], "llama");
    let (_, v) = call_json(&s, get("/v1/models")).await;
    assert_eq!(v["data"][0]["id"], "synthetic:latest");
}

#[tokio::test]
async fn generate_without_streaming_has_the_done_statistics() {
    let s = server();
    let (status, v) = call_json(
        &s,
        post(
            "/api/generate",
            json!({"model": MODEL, "prompt": "Hello", "stream": false, "options": greedy(4)}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["done"], true);
    assert!(v["response"].is_string());
    assert!(["stop", "length"].contains(&v["done_reason"].as_str().unwrap()));
    for key in [
        "total_duration",
        "load_duration",
        "prompt_eval_count",
        "prompt_eval_duration",
        "eval_count",
        "eval_duration",
    ] {
        assert!(v[key].is_u64(), "{key} in {v}");
    }
    assert!(v["prompt_eval_count"].as_u64().unwrap() > 0);
    assert!(v["eval_count"].as_u64().unwrap() <= 4);
    assert!(v["load_duration"].as_u64().unwrap() > 0, "first use loads");
    // Greedy decoding: the same request gives the same answer, now without a load.
    let (_, again) = call_json(
        &s,
        post(
            "/api/generate",
            json!({"model": MODEL, "prompt": "Hello", "stream": false, "options": greedy(4)}),
        ),
    )
    .await;
    assert_eq!(again["response"], v["response"]);
    assert_eq!(again["load_duration"], 0);
}

/// Requests decoded together (one forward pass per step) answer what they answer one at a time:
/// greedy and seeded sampling alike, each request with its own sampler.
#[tokio::test]
async fn concurrent_requests_answer_what_sequential_ones_answer() {
    let s = config_with(|c| c.num_parallel = Some(4));
    let sampled = json!({"temperature": 0.8, "repeat_penalty": 1.2, "seed": 3, "num_predict": 20});
    let requests = [
        json!({"model": MODEL, "prompt": "Once upon", "stream": false, "options": greedy(24)}),
        json!({"model": MODEL, "prompt": "The capital of", "stream": false, "options": greedy(12)}),
        json!({"model": MODEL, "prompt": "1, 2, 3,", "stream": true, "options": greedy(18)}),
        json!({"model": MODEL, "prompt": "Hello", "stream": false, "options": sampled}),
    ];
    let answer = |body: &Value| {
        let s = &s;
        let body = body.clone();
        async move {
            let (status, _, text) = call(s, post("/api/generate", body)).await;
            assert_eq!(status, StatusCode::OK, "{text}");
            text.lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap())
                .map(|v| v["response"].as_str().unwrap().to_string())
                .collect::<String>()
        }
    };
    let mut sequential = Vec::new();
    for r in &requests {
        sequential.push(answer(r).await);
    }
    assert!(sequential.iter().all(|a| !a.is_empty()), "{sequential:?}");
    let concurrent = tokio::join!(
        answer(&requests[0]),
        answer(&requests[1]),
        answer(&requests[2]),
        answer(&requests[3]),
    );
    let concurrent = [concurrent.0, concurrent.1, concurrent.2, concurrent.3];
    assert_eq!(concurrent.to_vec(), sequential);
}

#[tokio::test]
async fn generate_streams_ndjson_ending_in_done() {
    let s = server();
    let (status, headers, body) = call(
        &s,
        post(
            "/api/generate",
            json!({"model": MODEL, "prompt": "Once upon", "options": greedy(6)}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "application/x-ndjson");
    let lines: Vec<Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let (last, rest) = lines.split_last().unwrap();
    assert!(rest
        .iter()
        .all(|l| l["done"] == false && l["model"] == MODEL));
    assert_eq!(last["done"], true);
    assert!(last["eval_count"].as_u64().unwrap() >= rest.len() as u64 / 2);
}

#[tokio::test]
async fn chat_streaming_and_not_agree() {
    let s = server();
    let request = |stream: bool| {
        post(
            "/api/chat",
            json!({"model": MODEL, "stream": stream, "options": greedy(5),
                   "messages": [{"role": "system", "content": "Be brief."},
                                {"role": "user", "content": "Hi there"}]}),
        )
    };
    let (status, whole) = call_json(&s, request(false)).await;
    assert_eq!(status, StatusCode::OK, "{whole}");
    assert_eq!(whole["message"]["role"], "assistant");
    let (_, _, body) = call(&s, request(true)).await;
    let mut text = String::new();
    let mut done = Value::Null;
    for line in body.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        text += v["message"]["content"].as_str().unwrap();
        if v["done"] == true {
            done = v;
        }
    }
    assert_eq!(text, whole["message"]["content"].as_str().unwrap());
    assert_eq!(done["eval_count"], whole["eval_count"]);
}

#[tokio::test]
async fn openai_chat_completions_stream_sse_with_usage_and_done() {
    let s = server();
    let (status, headers, body) = call(
        &s,
        post(
            "/v1/chat/completions",
            json!({"model": MODEL, "stream": true, "temperature": 0, "max_tokens": 5,
                   "stream_options": {"include_usage": true},
                   "messages": [{"role": "user", "content": "Hello"}]}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(headers[header::CONTENT_TYPE], "text/event-stream");
    let events: Vec<&str> = body
        .split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| e.strip_prefix("data: ").unwrap())
        .collect();
    assert_eq!(*events.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk"));
    let usage = &chunks.last().unwrap()["usage"];
    assert!(usage["prompt_tokens"].as_u64().unwrap() > 0);
    assert!(usage["completion_tokens"].as_u64().unwrap() <= 5);
    let finish = &chunks[chunks.len() - 2]["choices"][0]["finish_reason"];
    assert!(finish == "stop" || finish == "length", "{finish}");

    let (status, v) = call_json(
        &s,
        post(
            "/v1/chat/completions",
            json!({"model": MODEL, "temperature": 0, "max_completion_tokens": 3, "seed": 3,
                   "messages": [{"role": "user", "content": [{"type": "text", "text": "Hello"}]}]}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert!(v["usage"]["total_tokens"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn openai_completions_and_the_per_request_context() {
    let s = server();
    let (status, v) = call_json(
        &s,
        post(
            "/v1/completions",
            json!({"model": MODEL, "prompt": "The sky is", "max_tokens": 3, "temperature": 0,
                   "num_ctx": 64}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["object"], "text_completion");
    assert!(v["choices"][0]["text"].is_string());
    let (_, ps) = call_json(&s, get("/api/ps")).await;
    assert_eq!(ps["models"][0]["context_length"], 64);
}

#[tokio::test]
async fn errors_are_404_and_400_with_messages() {
    let s = server();
    let (status, v) = call_json(
        &s,
        post("/api/generate", json!({"model": "nope", "prompt": "x"})),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(v["error"].as_str().unwrap().contains("not found"), "{v}");

    let (status, v) = call_json(
        &s,
        post(
            "/api/generate",
            json!({"model": "../etc/passwd", "prompt": "x"}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");

    let (status, v) = call_json(&s, post("/api/chat", json!({"messages": []}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");

    let (status, v) = call_json(
        &s,
        post(
            "/api/generate",
            json!({"model": MODEL, "prompt": "x", "options": {"temperature": "hot"}}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");

    let (status, v) = call_json(
        &s,
        post(
            "/v1/chat/completions",
            json!({"model": MODEL, "n": 2, "messages": [{"role": "user", "content": "x"}]}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("n must be 1"));

    let long = "word ".repeat(200);
    let (status, v) = call_json(
        &s,
        post(
            "/api/generate",
            json!({"model": MODEL, "prompt": long, "options": {"num_ctx": 32}}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        v["error"].as_str().unwrap().contains("context is 32"),
        "{v}"
    );
    // Asked for explicitly, truncation keeps what fits.
    let (status, v) = call_json(
        &s,
        post(
            "/api/generate",
            json!({"model": MODEL, "prompt": long, "raw": true, "stream": false, "truncate": true,
                   "options": {"num_ctx": 32, "num_predict": 1}}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["truncated"], true);
}

#[tokio::test]
async fn a_full_queue_answers_503_and_a_dropped_client_frees_its_slot() {
    let s = config_with(|c| {
        c.num_parallel = Some(1);
        c.max_queue = 0;
    });
    let long = |n: u64| {
        post(
            "/api/generate",
            json!({"model": MODEL, "prompt": "Go on", "options": {"num_predict": n, "num_ctx": 4096}}),
        )
    };
    // Its body is never read: the slot stays busy once the channel is full.
    let first = s.router.clone().oneshot(long(100_000)).await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let (status, headers, body) = call(&s, long(1)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(headers[header::RETRY_AFTER], "1");
    // The client goes away; generation stops at its next token and the slot is free again.
    drop(first);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (status, _, body) = call(&s, long(1)).await;
        if status == StatusCode::OK {
            assert!(body.contains("\"done\":true"), "{body}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the slot was never freed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn keep_alive_zero_with_an_empty_prompt_unloads() {
    let s = server();
    let (_, v) = call_json(&s, post("/api/generate", json!({"model": MODEL}))).await;
    assert_eq!(v["done_reason"], "load");
    let (_, ps) = call_json(&s, get("/api/ps")).await;
    assert_eq!(ps["models"].as_array().unwrap().len(), 1);
    let (_, v) = call_json(
        &s,
        post("/api/generate", json!({"model": MODEL, "keep_alive": 0})),
    )
    .await;
    assert_eq!(v["done_reason"], "unload");
    assert!(s.state.scheduler.loaded().is_empty());
}

#[tokio::test]
async fn api_keys_are_required_except_for_health() {
    let s = config_with(|c| c.api_keys = vec!["sekrit".into()]);
    let (status, headers, _) = call(&s, get("/api/tags")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers[header::WWW_AUTHENTICATE], "Bearer");
    let mut wrong = get("/api/tags");
    wrong
        .headers_mut()
        .insert(header::AUTHORIZATION, "Bearer sekrit2".parse().unwrap());
    assert_eq!(call(&s, wrong).await.0, StatusCode::UNAUTHORIZED);
    let mut right = get("/api/tags");
    right
        .headers_mut()
        .insert(header::AUTHORIZATION, "Bearer sekrit".parse().unwrap());
    assert_eq!(call(&s, right).await.0, StatusCode::OK);
    assert_eq!(call(&s, get("/health")).await.0, StatusCode::OK);
}

#[tokio::test]
async fn foreign_hosts_and_origins_are_403() {
    let s = server();
    let mut rebound = get("/api/tags");
    rebound
        .headers_mut()
        .insert(header::HOST, "attacker.example:11434".parse().unwrap());
    assert_eq!(call(&s, rebound).await.0, StatusCode::FORBIDDEN);

    let mut foreign = get("/api/tags");
    foreign
        .headers_mut()
        .insert(header::ORIGIN, "https://evil.example".parse().unwrap());
    assert_eq!(call(&s, foreign).await.0, StatusCode::FORBIDDEN);

    let mut local = get("/api/tags");
    local
        .headers_mut()
        .insert(header::ORIGIN, "http://localhost:3000".parse().unwrap());
    let (status, headers, _) = call(&s, local).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        headers[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "http://localhost:3000"
    );
}

#[tokio::test]
async fn listening_on_the_network_without_a_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::new(store::Store::new(dir.path()));
    config.host = "0.0.0.0:0".into();
    let e = server::serve(config, None).await.unwrap_err();
    assert!(matches!(e, server::ServerError::NoApiKey(_)), "{e}");
    assert!(e.to_string().contains("--api-key-file"), "{e}");
}

#[tokio::test]
async fn metrics_count_requests_and_tokens() {
    let s = server();
    call(
        &s,
        post(
            "/api/generate",
            json!({"model": MODEL, "prompt": "Hi", "stream": false, "options": greedy(2)}),
        ),
    )
    .await;
    let (status, _, text) = call(&s, get("/metrics")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        text.contains("hearth_requests_total{route=\"/api/generate\",status=\"200\"} 1"),
        "{text}"
    );
    assert!(text.contains("hearth_loaded_models 1"), "{text}");
    assert!(
        text.contains("hearth_model_memory_bytes{model=\"synthetic:latest\"}"),
        "{text}"
    );
}

#[tokio::test]
async fn embeddings_are_unit_vectors_in_both_apis() {
    let s = server();
    let (status, v) = call_json(
        &s,
        post(
            "/api/embed",
            json!({"model": MODEL, "input": ["hello", "world"]}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let all = v["embeddings"].as_array().unwrap();
    assert_eq!(all.len(), 2);
    let norm: f64 = all[0]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap().powi(2))
        .sum();
    assert!((norm - 1.0).abs() < 1e-4, "{norm}");
    assert_ne!(all[0], all[1]);
    assert!(v["prompt_eval_count"].as_u64().unwrap() >= 2);

    let (_, legacy) = call_json(
        &s,
        post(
            "/api/embeddings",
            json!({"model": MODEL, "prompt": "hello"}),
        ),
    )
    .await;
    assert_eq!(legacy["embedding"], all[0]);

    let (status, v) = call_json(
        &s,
        post(
            "/v1/embeddings",
            json!({"model": MODEL, "input": "hello", "dimensions": 8}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["data"][0]["embedding"].as_array().unwrap().len(), 8);
    assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    let (_, b64) = call_json(
        &s,
        post(
            "/v1/embeddings",
            json!({"model": MODEL, "input": "hello", "dimensions": 8, "encoding_format": "base64"}),
        ),
    )
    .await;
    // 8 f32s: 32 bytes, 44 base64 characters.
    assert_eq!(
        b64["data"][0]["embedding"].as_str().unwrap().len(),
        44,
        "{b64}"
    );
}

#[tokio::test]
async fn create_copy_show_and_delete() {
    let s = server();
    let (status, v) = call_json(
        &s,
        post(
            "/api/create",
            json!({"model": "brief", "from": MODEL, "system": "Answer in one word.",
                   "parameters": {"temperature": 0.1}, "stream": false}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "success");
    let (_, shown) = call_json(&s, post("/api/show", json!({"model": "brief"}))).await;
    assert_eq!(shown["system"], "Answer in one word.");
    assert!(shown["parameters"]
        .as_str()
        .unwrap()
        .contains("temperature 0.1"));

    // From a file on the server's disk: refused over HTTP.
    let (status, v) = call_json(
        &s,
        post(
            "/api/create",
            json!({"model": "x", "from": "/etc/passwd", "stream": false}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");

    let (_, _, body) = call(
        &s,
        post(
            "/api/create",
            json!({"model": "small", "from": MODEL, "quantize": "q4_0"}),
        ),
    )
    .await;
    let last: Value = serde_json::from_str(body.lines().last().unwrap()).unwrap();
    assert_eq!(last["status"], "success", "{body}");

    let (status, _, _) = call(
        &s,
        post(
            "/api/copy",
            json!({"source": "brief", "destination": "brief2"}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let delete = |name: &str| {
        Request::delete("/api/delete")
            .header(header::HOST, "localhost")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(json!({"model": name}).to_string()))
            .unwrap()
    };
    assert_eq!(call(&s, delete("brief2")).await.0, StatusCode::OK);
    assert_eq!(call(&s, delete("brief2")).await.0, StatusCode::NOT_FOUND);
    let (_, tags) = call_json(&s, get("/api/tags")).await;
    let names: Vec<&str> = tags["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"brief:latest") && names.contains(&"small:latest"),
        "{names:?}"
    );
}

/// A chat-shaped logprob entry (OpenAI's `logprobs.content[i]`, Ollama's `logprobs[i]`) under
/// greedy sampling: the chosen token is the most likely one, `token` is its bytes as text.
fn check_greedy_entry(e: &Value, alternatives: usize) {
    let logprob = e["logprob"].as_f64().unwrap();
    assert!(logprob <= 0.0, "{e}");
    let top = e["top_logprobs"].as_array().unwrap();
    assert_eq!(top.len(), alternatives, "{e}");
    if let Some(best) = top.first() {
        assert!(
            (best["logprob"].as_f64().unwrap() - logprob).abs() < 1e-6,
            "{e}"
        );
        assert_eq!(best["token"], e["token"], "{e}");
    }
    assert!(top
        .windows(2)
        .all(|w| w[0]["logprob"].as_f64() >= w[1]["logprob"].as_f64()));
    let bytes: Vec<u8> = e["bytes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_u64().unwrap() as u8)
        .collect();
    assert_eq!(e["token"], String::from_utf8_lossy(&bytes).as_ref(), "{e}");
}

#[tokio::test]
async fn openai_chat_logprobs_streaming_and_not_agree() {
    let s = server();
    let request = |stream: bool| {
        json!({"model": MODEL, "stream": stream, "temperature": 0, "max_tokens": 6,
               "logprobs": true, "top_logprobs": 3,
               "messages": [{"role": "user", "content": "Hello"}]})
    };
    let (status, v) = call_json(&s, post("/v1/chat/completions", request(false))).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let content = v["choices"][0]["logprobs"]["content"].as_array().unwrap();
    // Every generated token has an entry, except an end-of-generation token that ends it.
    let generated = v["usage"]["completion_tokens"].as_u64().unwrap() as usize;
    let stopped_by_model = usize::from(v["choices"][0]["finish_reason"] == "stop");
    assert_eq!(content.len() + stopped_by_model, generated, "{v}");
    assert!(!content.is_empty());
    for e in content {
        check_greedy_entry(e, 3);
    }
    let text: String = content
        .iter()
        .map(|e| e["token"].as_str().unwrap())
        .collect();
    assert_eq!(
        text,
        v["choices"][0]["message"]["content"].as_str().unwrap()
    );

    let (status, _, body) = call(&s, post("/v1/chat/completions", request(true))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let chunks = sse_chunks(&body);
    let streamed: Vec<Value> = chunks
        .iter()
        .filter(|c| c["choices"][0]["finish_reason"].is_null())
        .flat_map(|c| {
            c["choices"][0]["logprobs"]["content"]
                .as_array()
                .unwrap()
                .clone()
        })
        .collect();
    assert_eq!(&streamed, content);

    // Without logprobs: null, as before.
    let (_, v) = call_json(
        &s,
        post(
            "/v1/chat/completions",
            json!({"model": MODEL, "temperature": 0, "max_tokens": 2,
                   "messages": [{"role": "user", "content": "Hello"}]}),
        ),
    )
    .await;
    assert!(v["choices"][0]["logprobs"].is_null(), "{v}");

    for (bad, says) in [
        (json!({"logprobs": true, "top_logprobs": 21}), "0 to 20"),
        (json!({"top_logprobs": 2}), "logprobs: true"),
        (json!({"logprobs": 2}), "true or false"),
    ] {
        let mut body = request(false);
        body.as_object_mut()
            .unwrap()
            .retain(|k, _| k != "logprobs" && k != "top_logprobs");
        body.as_object_mut()
            .unwrap()
            .extend(bad.as_object().unwrap().clone());
        let (status, v) = call_json(&s, post("/v1/chat/completions", body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {v}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{bad}: {message}");
    }
}

#[tokio::test]
async fn openai_completions_legacy_logprobs_streaming_and_not_agree() {
    let s = server();
    let request = |stream: bool| {
        json!({"model": MODEL, "stream": stream, "prompt": "The sky is", "max_tokens": 6,
               "temperature": 0, "logprobs": 2})
    };
    let (status, v) = call_json(&s, post("/v1/completions", request(false))).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let lp = &v["choices"][0]["logprobs"];
    let tokens = lp["tokens"].as_array().unwrap();
    let generated = v["usage"]["completion_tokens"].as_u64().unwrap() as usize;
    let stopped_by_model = usize::from(v["choices"][0]["finish_reason"] == "stop");
    assert_eq!(tokens.len() + stopped_by_model, generated, "{v}");
    let token_logprobs = lp["token_logprobs"].as_array().unwrap();
    let top = lp["top_logprobs"].as_array().unwrap();
    let offsets = lp["text_offset"].as_array().unwrap();
    assert_eq!(
        (token_logprobs.len(), top.len(), offsets.len()),
        (tokens.len(), tokens.len(), tokens.len())
    );
    let mut at = 0;
    for i in 0..tokens.len() {
        let token = tokens[i].as_str().unwrap();
        let logprob = token_logprobs[i].as_f64().unwrap();
        assert!(logprob <= 0.0);
        // Greedy: the chosen token is among the alternatives, the most likely.
        let alternatives = top[i].as_object().unwrap();
        assert!(!alternatives.is_empty() && alternatives.len() <= 2, "{v}");
        let best = alternatives
            .values()
            .map(|l| l.as_f64().unwrap())
            .fold(f64::NEG_INFINITY, f64::max);
        assert!((best - logprob).abs() < 1e-6, "{v}");
        assert!((alternatives[token].as_f64().unwrap() - logprob).abs() < 1e-6);
        assert_eq!(offsets[i], at);
        at += token.chars().count();
    }

    let (status, _, body) = call(&s, post("/v1/completions", request(true))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut streamed =
        json!({"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []});
    for c in sse_chunks(&body) {
        let part = &c["choices"][0]["logprobs"];
        if part.is_null() {
            continue;
        }
        for key in ["tokens", "token_logprobs", "top_logprobs", "text_offset"] {
            let more = part[key].as_array().unwrap().clone();
            streamed[key].as_array_mut().unwrap().extend(more);
        }
    }
    assert_eq!(&streamed, lp);

    let mut too_many = request(false);
    too_many["logprobs"] = json!(6);
    let (status, v) = call_json(&s, post("/v1/completions", too_many)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("0 to 5"));
}

#[tokio::test]
async fn ollama_logprobs_on_generate_and_chat() {
    let s = server();
    let (status, v) = call_json(
        &s,
        post(
            "/api/chat",
            json!({"model": MODEL, "stream": false, "logprobs": true, "top_logprobs": 2,
                   "options": greedy(4), "messages": [{"role": "user", "content": "Hello"}]}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let all = v["logprobs"].as_array().unwrap();
    let stopped_by_model = usize::from(v["done_reason"] == "stop");
    assert_eq!(
        all.len() + stopped_by_model,
        v["eval_count"].as_u64().unwrap() as usize
    );
    for e in all {
        check_greedy_entry(e, 2);
    }

    let (status, _, body) = call(
        &s,
        post(
            "/api/generate",
            json!({"model": MODEL, "prompt": "Hello", "logprobs": true,
                   "options": greedy(4)}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let streamed: Vec<Value> = body
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .flat_map(|c| c["logprobs"].as_array().cloned().unwrap_or_default())
        .collect();
    assert!(!streamed.is_empty(), "{body}");
    for e in &streamed {
        check_greedy_entry(e, 0);
    }
}

#[tokio::test]
async fn a_jinja_template_renders_this_request_only() {
    let s = server();
    let generate = |extra: Value| {
        let mut body = json!({"model": MODEL, "prompt": "Hello world", "stream": false,
                              "options": greedy(3)});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        post("/api/generate", body)
    };
    let (_, raw) = call_json(&s, generate(json!({"raw": true}))).await;
    let (_, default) = call_json(&s, generate(json!({}))).await;
    // Only the message's text: the same prompt as the raw one, so the same answer.
    let bare = "{% for m in messages %}{{ m.content }}{% endfor %}";
    let (status, templated) = call_json(&s, generate(json!({"template": bare}))).await;
    assert_eq!(status, StatusCode::OK, "{templated}");
    assert_eq!(templated["prompt_eval_count"], raw["prompt_eval_count"]);
    assert_eq!(templated["response"], raw["response"]);
    assert_ne!(default["prompt_eval_count"], raw["prompt_eval_count"]);
    // The loaded model keeps its own template for the next request.
    let (_, again) = call_json(&s, generate(json!({}))).await;
    assert_eq!(again["prompt_eval_count"], default["prompt_eval_count"]);

    // /api/chat too: the system message and the template's markers are all there.
    let marked = "{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}";
    let (status, v) = call_json(
        &s,
        post(
            "/api/chat",
            json!({"model": MODEL, "stream": false, "template": marked, "options": greedy(2),
                   "messages": [{"role": "system", "content": "Be brief."},
                                {"role": "user", "content": "Hi"}]}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let (_, expected) = call_json(
        &s,
        post(
            "/api/generate",
            json!({"model": MODEL, "raw": true, "stream": false, "options": greedy(2),
                   "prompt": "[system]Be brief.[user]Hi[assistant]"}),
        ),
    )
    .await;
    assert_eq!(v["prompt_eval_count"], expected["prompt_eval_count"]);
    assert_eq!(v["message"]["content"], expected["response"]);

    // Ollama's Go templates cannot be rendered: a 400 that says how to write one in Jinja.
    let (status, v) = call_json(
        &s,
        generate(json!({"template": "{{ if .System }}{{ .System }}{{ end }}{{ .Prompt }}"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    let message = v["error"].as_str().unwrap();
    assert!(
        message.contains("Go template") && message.contains("Jinja"),
        "{message}"
    );
    let (status, v) = call_json(&s, generate(json!({"template": "{% for m in messages %}"}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["error"].as_str().unwrap().contains("Jinja"), "{v}");
}

/// A conversation's next turn goes to the slot whose cache holds its start, even after another
/// conversation ran in between (which takes the other slot rather than overwrite that cache):
/// only the new tokens are processed, which `prompt_cached_count` (Ollama) and
/// `usage.prompt_tokens_details.cached_tokens` (OpenAI) report.
#[tokio::test]
async fn a_next_turn_reuses_its_conversations_cache_across_other_requests() {
    let s = server(); // 2 slots
    let first = json!([{"role": "system", "content": "You are a terse assistant. ".repeat(8)},
                       {"role": "user", "content": "Name a colour."}]);
    let chat = |messages: &Value| {
        post(
            "/api/chat",
            json!({"model": MODEL, "messages": messages, "stream": false, "options": greedy(4)}),
        )
    };
    let (_, a) = call_json(&s, chat(&first)).await;
    assert_eq!(a["prompt_cached_count"], 0, "{a}");
    let other = json!([{"role": "user", "content": "Something else entirely, please."}]);
    let (status, _) = call_json(&s, chat(&other)).await;
    assert_eq!(status, StatusCode::OK);

    let mut next = first.as_array().unwrap().clone();
    next.push(a["message"].clone());
    next.push(json!({"role": "user", "content": "Another one."}));
    let (_, b) = call_json(&s, chat(&Value::Array(next.clone()))).await;
    let (total, cached) = (
        b["prompt_eval_count"].as_u64().unwrap(),
        b["prompt_cached_count"].as_u64().unwrap(),
    );
    let first_total = a["prompt_eval_count"].as_u64().unwrap();
    assert!(
        cached * 2 > first_total && cached < total,
        "the next turn found {cached} of its {total} prompt tokens cached (first turn: {first_total})"
    );

    // The same through the OpenAI API.
    next.push(json!({"role": "assistant", "content": "Blue."}));
    next.push(json!({"role": "user", "content": "And one more."}));
    let (_, c) = call_json(
        &s,
        post(
            "/v1/chat/completions",
            json!({"model": MODEL, "messages": next, "max_tokens": 2, "temperature": 0}),
        ),
    )
    .await;
    let usage = &c["usage"];
    let cached = usage["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .unwrap();
    assert!(
        cached * 2 > usage["prompt_tokens"].as_u64().unwrap(),
        "{usage}"
    );
}

/// A prefix-cache hit answers as a cold run does: a conversation's second turn, served by the
/// slot that holds its first turn (most of the prompt cached), gives the answer the same request
/// gets from a fresh server. The conversation stays under 64 tokens: from 64 tokens a prompt's
/// attention runs tiled, as llama.cpp's does, which is not bit-exact with the query-by-query
/// order its cached answer tokens were decoded in (the synthetic model's near-tied logits would
/// show the last-bit difference).
#[tokio::test]
async fn a_prefix_cache_hit_answers_as_a_cold_run() {
    let warm = server();
    let first = json!([{"role": "user", "content": "Hi"}]);
    let chat = |messages: &Value, n: u64| {
        post(
            "/api/chat",
            json!({"model": MODEL, "messages": messages, "stream": false, "options": greedy(n)}),
        )
    };
    let (_, a) = call_json(&warm, chat(&first, 4)).await;
    let mut next = first.as_array().unwrap().clone();
    next.push(a["message"].clone());
    next.push(json!({"role": "user", "content": "Go on"}));
    let next = Value::Array(next);
    let (_, hit) = call_json(&warm, chat(&next, 12)).await;
    let (cached, total) = (
        hit["prompt_cached_count"].as_u64().unwrap(),
        hit["prompt_eval_count"].as_u64().unwrap(),
    );
    let first_prompt = a["prompt_eval_count"].as_u64().unwrap();
    assert!(cached >= first_prompt && total < 64, "{a} {hit}");
    let (_, cold) = call_json(&server(), chat(&next, 12)).await;
    assert_eq!(cold["prompt_cached_count"], 0, "{cold}");
    assert_eq!(hit["message"], cold["message"]);
    assert_eq!(hit["eval_count"], cold["eval_count"]);
}

/// Slots share the prompts they processed: two requests at once that begin with the system
/// prompt of an earlier one both find it cached, the one that gets the earlier request's slot in
/// that slot's cache, the other in the prompts the slots share, and both answer as on a fresh
/// server (the prompts stay under 64 tokens, as in the test above).
#[tokio::test]
async fn concurrent_requests_share_a_system_prompt_computed_once() {
    let s = server(); // 2 slots
    let system = json!({"role": "system", "content": "You are terse. ".repeat(2)});
    let chat = |question: &str| {
        let messages = json!([system, {"role": "user", "content": question}]);
        post(
            "/api/chat",
            json!({"model": MODEL, "messages": messages, "stream": false, "options": greedy(6)}),
        )
    };
    let (_, first) = call_json(&s, chat("Name a colour.")).await;
    assert_eq!(first["prompt_cached_count"], 0, "{first}");
    let (b, c) = tokio::join!(
        call_json(&s, chat("Name a fruit.")),
        call_json(&s, chat("Name a city."))
    );
    for ((status, v), question) in [(b, "Name a fruit."), (c, "Name a city.")] {
        assert_eq!(status, StatusCode::OK, "{v}");
        let (cached, total) = (
            v["prompt_cached_count"].as_u64().unwrap(),
            v["prompt_eval_count"].as_u64().unwrap(),
        );
        assert!(
            cached * 2 > total && total < 64,
            "{question}: {cached} of {total} prompt tokens cached"
        );
        let (_, cold) = call_json(&server(), chat(question)).await;
        assert_eq!(cold["prompt_cached_count"], 0, "{cold}");
        assert_eq!(v["message"], cold["message"], "{question}");
    }
}

/// `suffix` (fill in the middle) on a model without FIM tokens is a 400 that says what to use
/// instead, in both APIs (Qwen2.5-Coder's infill is tested in the engine's tests/fim.rs).
#[tokio::test]
async fn suffix_needs_a_model_with_fill_in_middle_tokens() {
    let s = server();
    let (status, v) = call_json(
        &s,
        post(
            "/api/generate",
            json!({"model": MODEL, "prompt": "def f(", "suffix": ")\n", "stream": false}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("fill-in-the-middle"),
        "{v}"
    );
    let (status, v) = call_json(
        &s,
        post(
            "/v1/completions",
            json!({"model": MODEL, "prompt": "def f(", "suffix": ")\n", "max_tokens": 2}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert!(v.to_string().contains("fill-in-the-middle"), "{v}");
}
