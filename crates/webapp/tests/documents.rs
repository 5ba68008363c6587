//! Documents end to end in-process, with the real all-MiniLM-L6-v2 (converted from its Hugging
//! Face files) as the embedding model: the test corpus (testdata/rag) uploaded and searched (the
//! right passage in the top 3 for at least 90% of the questions), answers given numbered
//! sources, another user kept out, a document's control-token text kept plain at the token
//! level, and a 20 MB PDF read in the background while a chat is answered.

mod common;

use axum::http::{Method, StatusCode};
use common::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use webapp::Mode;

const EMBEDDER: &str = "minilm";

fn test_models() -> PathBuf {
    std::env::var_os("HEARTH_TEST_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is set"))
                .join(".cache/hearth/test-models")
        })
}

/// all-MiniLM-L6-v2 as an F16 GGUF, converted once per test run.
fn minilm() -> &'static Path {
    static FILE: OnceLock<PathBuf> = OnceLock::new();
    FILE.get_or_init(|| converted(convert::FileType::F16))
}

/// all-MiniLM-L6-v2 as a Q8_0 GGUF: a second embedding model.
fn minilm_q8() -> &'static Path {
    static FILE: OnceLock<PathBuf> = OnceLock::new();
    FILE.get_or_init(|| converted(convert::FileType::Q8_0))
}

fn converted(ftype: convert::FileType) -> PathBuf {
    {
        let src = test_models().join("all-minilm-l6-v2");
        assert!(
            src.join("model.safetensors").is_file(),
            "the embedding test model is missing: run scripts/fetch-test-models.sh minilm (scripts/test.sh does)"
        );
        let dest = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("webapp-minilm-{}.gguf", ftype.name()));
        let _ = std::fs::remove_file(&dest);
        convert::convert_dir(&src, &dest, &convert::Options { ftype, name: None }).unwrap();
        dest
    }
}

fn rag() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/rag")
}

async fn upload(
    app: &App,
    who: &mut Browser,
    collection: i64,
    name: &str,
    bytes: Vec<u8>,
) -> Value {
    let a = who
        .send_bytes(
            app,
            &format!("/app/api/collections/{collection}/documents?name={name}"),
            bytes,
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{name}: {}", a.body);
    a.json()["document"].clone()
}

/// Waits until the document is ready (or fails the test with its error).
async fn ready(app: &App, who: &mut Browser, id: i64) -> Value {
    let start = Instant::now();
    loop {
        let d = who
            .send(app, Method::GET, &format!("/app/api/documents/{id}"), None)
            .await
            .json()["document"]
            .clone();
        match d["status"].as_str().unwrap() {
            "ready" => return d,
            "error" => panic!("document {id} failed: {d}"),
            _ => {}
        }
        assert!(start.elapsed() < Duration::from_secs(600), "{d}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn collection(app: &App, who: &mut Browser, name: &str) -> i64 {
    let a = who
        .send(
            app,
            Method::POST,
            "/app/api/collections",
            Some(json!({"name": name})),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    a.json()["collection"]["id"].as_i64().unwrap()
}

/// The corpus uploaded into a new collection of `who`.
async fn corpus(app: &App, who: &mut Browser) -> i64 {
    let id = collection(app, who, "wiki").await;
    let mut docs = Vec::new();
    // Every Markdown file but the injection test's.
    let mut files: Vec<_> = std::fs::read_dir(rag())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .filter(|p| !p.ends_with("injection.md"))
        .collect();
    files.sort();
    for path in files {
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let d = upload(app, who, id, &name, std::fs::read(&path).unwrap()).await;
        docs.push(d["id"].as_i64().unwrap());
    }
    for d in docs {
        ready(app, who, d).await;
    }
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_right_passage_is_in_the_top_three_for_nine_questions_in_ten() {
    let app = app_with(Mode::Single, &[(EMBEDDER, minilm())]);
    let mut me = Browser::default();
    me.me(&app).await;
    let id = corpus(&app, &mut me).await;
    let questions: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(rag().join("questions.json")).unwrap())
            .unwrap();
    assert!(questions.len() >= 20, "the corpus has too few questions");
    let mut found = 0;
    let mut missed = Vec::new();
    for q in &questions {
        let text = q["question"].as_str().unwrap();
        let path = format!(
            "/app/api/collections/{id}/search?q={}",
            text.replace(' ', "%20").replace('?', "%3F")
        );
        let a = me.send(&app, Method::GET, &path, None).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        let hits = a.json()["hits"].as_array().unwrap().clone();
        let right = hits.iter().take(3).any(|h| {
            h["document"] == q["document"]
                && h["text"]
                    .as_str()
                    .unwrap()
                    .contains(q["contains"].as_str().unwrap())
        });
        if right {
            found += 1;
        } else {
            let top: Vec<String> = hits
                .iter()
                .take(3)
                .map(|h| format!("{} / {}", h["document"], h["location"]))
                .collect();
            missed.push(format!("{text} (wanted {}; got {top:?})", q["document"]));
        }
    }
    let rate = found as f64 / questions.len() as f64;
    eprintln!(
        "top-3 retrieval: {found}/{} = {:.0}%; missed: {missed:?}",
        questions.len(),
        rate * 100.0
    );
    assert!(
        rate >= 0.9,
        "only {found} of {} found: {missed:?}",
        questions.len()
    );

    // An answer in a chat with the collection attached gets the passages as numbered sources.
    let q = &questions[0];
    let question = q["question"].as_str().unwrap();
    let settings = json!({"collections": [id], "num_ctx": 8192});
    let (chat, a) = me.ask(&app, settings, question).await;
    let lines = lines(&a.body);
    let sources = lines
        .iter()
        .find(|l| l["type"] == "sources")
        .unwrap_or_else(|| panic!("no sources line: {}", a.body))["sources"]
        .clone();
    assert_eq!(sources[0]["n"], 1);
    assert!(
        sources
            .as_array()
            .unwrap()
            .iter()
            .take(3)
            .any(|s| s["document"] == q["document"]),
        "{sources}"
    );
    assert_eq!(lines.last().unwrap()["type"], "done", "{}", a.body);
    let saved = me
        .send(&app, Method::GET, &format!("/app/api/chats/{chat}"), None)
        .await
        .json();
    assert_eq!(saved["messages"][1]["sources"], sources);
    assert_eq!(
        saved["messages"][0]["content"], q["question"],
        "the saved question is the user's own text, without the passages"
    );
    // A citation opens its passage.
    let chunk = sources[0]["chunk_id"].as_i64().unwrap();
    let a = me
        .send(&app, Method::GET, &format!("/app/api/chunks/{chunk}"), None)
        .await;
    assert_eq!(a.json()["text"], sources[0]["text"]);

    // A small context gets fewer passages, not an error.
    let settings = json!({"collections": [id], "num_ctx": 1500});
    let (_, a) = me.ask(&app, settings, question).await;
    let lines = common::lines(&a.body);
    assert_eq!(lines.last().unwrap()["type"], "done", "{}", a.body);
    let given = lines
        .iter()
        .find(|l| l["type"] == "sources")
        .map_or(0, |l| l["sources"].as_array().unwrap().len());
    assert!((1..5).contains(&given), "{given} passages fit 1500 tokens");

    // The chat APIs take the same collections as an extension field.
    let ask = json!({"model": MODEL, "stream": false, "collections": [id],
        "messages": [{"role": "user", "content": q["question"]}],
        "options": {"num_predict": 4, "num_ctx": 8192}, "max_tokens": 4});
    for path in ["/api/chat", "/v1/chat/completions"] {
        let a = me.send(&app, Method::POST, path, Some(ask.clone())).await;
        assert_eq!(a.status, StatusCode::OK, "{path}: {}", a.body);
        let got = a.json()["sources"].clone();
        assert_eq!(got, sources, "{path}");
    }
    // They too give a small context the best passages that fit, not an error.
    let mut small = ask.clone();
    small["options"]["num_ctx"] = json!(1500);
    for path in ["/api/chat", "/v1/chat/completions"] {
        let a = me.send(&app, Method::POST, path, Some(small.clone())).await;
        assert_eq!(a.status, StatusCode::OK, "{path}: {}", a.body);
        let got = a.json()["sources"].as_array().unwrap().clone();
        assert!(
            (1..5).contains(&got.len()),
            "{path}: {} passages fit",
            got.len()
        );
        assert_eq!(got[..], sources.as_array().unwrap()[..got.len()], "{path}");
    }
}

#[tokio::test]
async fn the_embedding_apis_serve_the_bert_model() {
    let app = app_with(Mode::Single, &[(EMBEDDER, minilm())]);
    let reference: Value = serde_json::from_str(
        std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../testdata/reference/embeddings/all-minilm-l6-v2.jsonl"),
        )
        .unwrap()
        .lines()
        .next()
        .unwrap(),
    )
    .unwrap();
    let mut me = Browser::default();
    let a = me
        .send(
            &app,
            Method::POST,
            "/api/embed",
            Some(json!({"model": EMBEDDER, "input": [reference["text"]]})),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let got: Vec<f64> = serde_json::from_value(a.json()["embeddings"][0].clone()).unwrap();
    let want: Vec<f64> = serde_json::from_value(reference["embedding"].clone()).unwrap();
    let cos = got.iter().zip(&want).map(|(a, b)| a * b).sum::<f64>();
    assert!(cos >= 0.999, "cosine {cos}");
    let a = me
        .send(
            &app,
            Method::POST,
            "/api/chat",
            Some(json!({"model": EMBEDDER, "messages": [{"role": "user", "content": "hi"}]})),
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);
    assert!(a.body.contains("cannot generate"), "{}", a.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_users_collection_is_out_of_reach() {
    let app = app_with(Mode::Multi, &[(EMBEDDER, minilm())]);
    let (mut admin, mut user, _) = admin_and_user(&app).await;
    let id = collection(&app, &mut admin, "private").await;
    let text = "The vault combination is 4-8-15-16-23-42."
        .as_bytes()
        .to_vec();
    let doc = upload(&app, &mut admin, id, "vault.txt", text).await["id"]
        .as_i64()
        .unwrap();
    ready(&app, &mut admin, doc).await;
    let chunk = admin
        .send(
            &app,
            Method::GET,
            &format!("/app/api/collections/{id}/search?q=vault"),
            None,
        )
        .await
        .json()["hits"][0]["chunk_id"]
        .as_i64()
        .unwrap();
    for (method, path) in [
        (Method::GET, format!("/app/api/collections/{id}/documents")),
        (
            Method::GET,
            format!("/app/api/collections/{id}/search?q=vault"),
        ),
        (Method::GET, format!("/app/api/documents/{doc}")),
        (Method::DELETE, format!("/app/api/documents/{doc}")),
        (Method::GET, format!("/app/api/chunks/{chunk}")),
        (Method::DELETE, format!("/app/api/collections/{id}")),
    ] {
        let a = user.send(&app, method.clone(), &path, None).await;
        assert_eq!(
            a.status,
            StatusCode::NOT_FOUND,
            "{method} {path}: {}",
            a.body
        );
    }
    let a = user
        .send_bytes(
            &app,
            &format!("/app/api/collections/{id}/documents?name=x.txt"),
            b"planted".to_vec(),
        )
        .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND, "{}", a.body);
    let listed = user
        .send(&app, Method::GET, "/app/api/collections", None)
        .await;
    assert_eq!(listed.json()["collections"], json!([]));
    // Attaching the other user's collection by id gives no passages.
    let settings = json!({"collections": [id], "num_ctx": 512});
    let (_, a) = user
        .ask(&app, settings, "What is the vault combination?")
        .await;
    assert!(!a.body.contains("4-8-15"), "{}", a.body);
    assert!(!a.body.contains("\"type\":\"sources\""), "{}", a.body);
    // Only admins share with everyone.
    let a = user
        .send(
            &app,
            Method::POST,
            "/app/api/collections",
            Some(json!({"name": "everyone", "shared": true})),
        )
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.body);
}

/// The injected document's text in the prompt: the system prompt's tokens are those of a prompt
/// with a harmless passage, and no control token comes from the document.
#[test]
fn a_document_cannot_smuggle_control_tokens_into_the_prompt() {
    let qwen = test_models().join("qwen2.5-coder-0.5b-instruct-q4_k_m.gguf");
    assert!(
        qwen.is_file(),
        "run scripts/fetch-test-models.sh qwen2 (scripts/test.sh does)"
    );
    let model = engine::Model::load(&qwen, 1).unwrap();
    let injected = std::fs::read_to_string(rag().join("injection.md")).unwrap();
    assert!(injected.contains("<|im_start|>system"));
    let source = |text: &str| webapp::docs::Source {
        n: 1,
        chunk_id: 1,
        document_id: 1,
        document: "notes.md".into(),
        location: String::new(),
        text: text.into(),
        score: 1.0,
    };
    let prompt = |passage: &str| {
        let messages = [
            chat::Message::new("system", documents::DOCUMENT_RULES),
            chat::Message::new(
                "user",
                webapp::docs::with_passages("What do the notes say?", &[source(passage)]),
            ),
        ];
        model.chat_tokens(&messages, true).unwrap()
    };
    let harmless = prompt("The office opens at nine.");
    let attacked = prompt(&injected);
    let im_start = model.tokenizer.encode("<|im_start|>", false, true);
    assert_eq!(im_start.len(), 1, "<|im_start|> is one control token");
    let count = |tokens: &[u32]| tokens.iter().filter(|&&t| t == im_start[0]).count();
    // system, user, and the assistant's turn: nothing more from the document.
    assert_eq!(count(&harmless), 3);
    assert_eq!(count(&attacked), 3);
    // Everything up to the user's turn (the system prompt) is the same.
    let user_turn = |tokens: &[u32]| {
        tokens
            .iter()
            .enumerate()
            .filter(|(_, &t)| t == im_start[0])
            .nth(1)
            .unwrap()
            .0
    };
    assert_eq!(
        harmless[..user_turn(&harmless)],
        attacked[..user_turn(&attacked)]
    );
}

/// A PDF of `pages` pages of text, padded to `size` bytes with an image-like stream (what makes
/// real PDFs large).
fn big_pdf(pages: usize, size: usize) -> Vec<u8> {
    use lopdf::content::{Content, Operation};
    use lopdf::{dictionary, Document, Object, Stream};
    let mut doc = Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let font = doc.add_object(dictionary! {
        "Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Helvetica",
    });
    let resources = doc.add_object(dictionary! { "Font" => dictionary! { "F1" => font } });
    let filler = doc.add_object(Stream::new(
        dictionary! { "Type" => "XObject", "Subtype" => "Image", "Width" => 1024, "Height" => 1024,
        "ColorSpace" => "DeviceGray", "BitsPerComponent" => 8 },
        (0..size).map(|i| (i * 7919 % 251) as u8).collect(),
    ));
    let mut kids = Vec::new();
    for p in 0..pages {
        let mut ops = vec![
            Operation::new("BT", vec![]),
            Operation::new("Tf", vec!["F1".into(), 11.into()]),
            Operation::new("Td", vec![50.into(), 780.into()]),
        ];
        for line in 0..40 {
            let text =
                format!("Page {p} line {line}: the lighthouse keeper logs the weather every hour.");
            ops.push(Operation::new("Tj", vec![Object::string_literal(text)]));
            ops.push(Operation::new("Td", vec![0.into(), (-16).into()]));
        }
        ops.push(Operation::new("ET", vec![]));
        let content = doc.add_object(Stream::new(
            dictionary! {},
            Content { operations: ops }.encode().unwrap(),
        ));
        let page = doc.add_object(dictionary! {
            "Type" => "Page", "Parent" => pages_id, "Contents" => content,
            "Resources" => resources, "MediaBox" => vec![0.into(), 0.into(), 595.into(), 842.into()],
            "Filler" => filler,
        });
        kids.push(page.into());
    }
    doc.objects.insert(
        pages_id,
        Object::Dictionary(
            dictionary! { "Type" => "Pages", "Kids" => kids, "Count" => pages as i64 },
        ),
    );
    let catalog = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
    doc.trailer.set("Root", catalog);
    let mut bytes = Vec::new();
    doc.save_to(&mut bytes).unwrap();
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_20_mb_pdf_shows_progress_while_chat_goes_on() {
    let app = app_with(Mode::Single, &[(EMBEDDER, minilm())]);
    let mut me = Browser::default();
    me.me(&app).await;
    let id = collection(&app, &mut me, "manuals").await;
    let pdf = big_pdf(40, 20 << 20);
    assert!(pdf.len() >= 20 << 20, "{}", pdf.len());
    let start = Instant::now();
    let doc = upload(&app, &mut me, id, "manual.pdf", pdf).await;
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "the upload took {:?}",
        start.elapsed()
    );
    let doc_id = doc["id"].as_i64().unwrap();
    // A chat answered while the document is read and embedded.
    let asked = Instant::now();
    let (_, a) = me.ask(&app, json!({"num_ctx": 64}), "Hello").await;
    assert!(a.body.contains("\"done\""), "{}", a.body);
    let chat_time = asked.elapsed();
    // Progress is visible along the way.
    let mut seen = Vec::new();
    let start = Instant::now();
    loop {
        let d = me
            .send(
                &app,
                Method::GET,
                &format!("/app/api/documents/{doc_id}"),
                None,
            )
            .await
            .json()["document"]
            .clone();
        let step = (
            d["status"].as_str().unwrap().to_string(),
            d["chunks_done"].as_u64().unwrap(),
        );
        if seen.last() != Some(&step) {
            seen.push(step.clone());
        }
        match step.0.as_str() {
            "ready" => {
                assert_eq!(d["chunks_done"], d["chunks_total"]);
                break;
            }
            "error" => panic!("the PDF failed: {d}"),
            _ => {}
        }
        assert!(start.elapsed() < Duration::from_secs(600), "{seen:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("chat answered in {chat_time:?} during the upload; progress seen: {seen:?}");
    assert!(
        chat_time < Duration::from_secs(30),
        "the chat waited {chat_time:?}"
    );
    assert!(
        seen.iter().any(|(s, done)| s == "embedding" && *done > 0),
        "no partial progress seen: {seen:?}"
    );
    let hits = me
        .send(
            &app,
            Method::GET,
            &format!("/app/api/collections/{id}/search?q=lighthouse%20weather"),
            None,
        )
        .await
        .json();
    assert!(hits["hits"][0]["location"]
        .as_str()
        .unwrap()
        .starts_with("page "));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_embedding_model_embeds_every_document_again() {
    let app = app_with(
        Mode::Single,
        &[(EMBEDDER, minilm()), ("minilm-q8", minilm_q8())],
    );
    let mut me = Browser::default();
    me.me(&app).await;
    let id = collection(&app, &mut me, "notes").await;
    let text = "The boiler is serviced every October by Hendry & Sons.".as_bytes();
    let doc = upload(&app, &mut me, id, "boiler.txt", text.to_vec()).await["id"]
        .as_i64()
        .unwrap();
    ready(&app, &mut me, doc).await;
    let chosen = me
        .send(&app, Method::GET, "/app/api/embedding-model", None)
        .await
        .json();
    assert_eq!(chosen["installed"].as_array().unwrap().len(), 2, "{chosen}");
    let first = chosen["model"].as_str().unwrap().to_string();
    let other = chosen["installed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap().to_string())
        .find(|m| *m != first)
        .unwrap();
    let listed = me
        .send(&app, Method::GET, "/app/api/collections", None)
        .await
        .json();
    assert_eq!(listed["collections"][0]["embedding_model"], first.as_str());
    let a = me
        .send(
            &app,
            Method::PUT,
            "/app/api/embedding-model",
            Some(json!({"model": other})),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    ready(&app, &mut me, doc).await;
    let listed = me
        .send(&app, Method::GET, "/app/api/collections", None)
        .await
        .json();
    assert_eq!(listed["collections"][0]["embedding_model"], other.as_str());
    let hits = me
        .send(
            &app,
            Method::GET,
            &format!("/app/api/collections/{id}/search?q=who%20services%20the%20boiler"),
            None,
        )
        .await
        .json();
    assert_eq!(hits["hits"][0]["document"], "boiler.txt", "{hits}");
    let a = me
        .send(
            &app,
            Method::PUT,
            "/app/api/embedding-model",
            Some(json!({"model": "synthetic"})),
        )
        .await;
    assert_eq!(
        a.status,
        StatusCode::BAD_REQUEST,
        "a chat model cannot embed: {}",
        a.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_finishes_the_embedding_it_interrupted() {
    let app = app_with(Mode::Single, &[(EMBEDDER, minilm())]);
    let mut me = Browser::default();
    me.me(&app).await;
    let id = collection(&app, &mut me, "notes").await;
    let text = "The boiler is serviced every October by Hendry & Sons.".as_bytes();
    let doc = upload(&app, &mut me, id, "boiler.txt", text.to_vec()).await["id"]
        .as_i64()
        .unwrap();
    ready(&app, &mut me, doc).await;
    // As if the server had stopped before embedding anything.
    assert_eq!(
        app.web
            .db()
            .reset_embeddings_not_of("another model")
            .unwrap(),
        [doc]
    );
    let d = app.web.db().document(doc).unwrap().unwrap();
    assert_eq!((d.status, d.chunks_done), (appdb::DocStatus::Embedding, 0));
    let app = app.restart();
    let d = ready(&app, &mut me, doc).await;
    assert_eq!(d["chunks_done"], d["chunks_total"]);
}

/// Regression: the default embedding model was the first installed one at each search, so a
/// model installed later under an earlier name silently took over from the one that had
/// embedded the documents.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedding_model_installed_later_does_not_change_the_default() {
    let app = app_with(Mode::Single, &[(EMBEDDER, minilm())]);
    let mut me = Browser::default();
    me.me(&app).await;
    let id = collection(&app, &mut me, "notes").await;
    let text = "The boiler is serviced every October by Hendry & Sons.".as_bytes();
    let doc = upload(&app, &mut me, id, "boiler.txt", text.to_vec()).await["id"]
        .as_i64()
        .unwrap();
    ready(&app, &mut me, doc).await;
    app.install("aaa-minilm", minilm_q8());
    let chosen = me
        .send(&app, Method::GET, "/app/api/embedding-model", None)
        .await
        .json();
    assert_eq!(chosen["installed"].as_array().unwrap().len(), 2, "{chosen}");
    assert_eq!(chosen["model"], "minilm:latest", "{chosen}");
}
