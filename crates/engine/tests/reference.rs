//! The engine against llama.cpp's outputs (testdata/reference): logits at the last prompt position
//! and greedy continuations, for the three real models and every synthetic one.
//!
//! The prompts are fed as llama.cpp's own token ids, so this tests the forward pass alone (the
//! tokenizer has its own reference tests).

mod common;

use common::real_model;
use engine::{argmax, KvType, Model, Session};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Each of llama.cpp's top-10 logits must be matched within this many logit units (the issue's
/// acceptance bound); the synthetic models, whose less common types llama.cpp multiplies with
/// kernels we do not mirror step for step, are held to it.
const LOGIT_TOLERANCE: f32 = 0.15;
/// The real models are held to the precision the reference was printed with (5 decimals): the
/// forward pass sums in llama.cpp's float order for their tensor types and batch sizes, so the
/// logits agree bit for bit. A looser match would hide order changes that Gemma-class models
/// amplify into visible differences (0.2 to 0.8 logits before the order was matched).
const REAL_MODEL_LOGIT_TOLERANCE: f32 = 1e-4;
/// Below this top-1/top-2 gap another rounding may legitimately pick the runner-up.
const MARGIN: f64 = 0.1;
const TOP_CHECKED: usize = 10;
/// Context of every test session: room for the long prompt (over 500 tokens) and its greedy steps.
const CONTEXT: usize = 1024;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_u64().unwrap() as u32)
        .collect()
}

/// Checks every record; returns a list of failures (empty when all match).
fn check(model_path: &Path, recs: &[Value], tolerance: f32, cache: KvType) -> Vec<String> {
    let model = Model::load(model_path, 2).unwrap();
    let name = model_path
        .file_name()
        .unwrap()
        .to_string_lossy()
        .to_string();
    let mut failures = Vec::new();
    for r in recs {
        let prompt = r["prompt"].as_str().unwrap();
        let tokens = ids(&r["tokens"]);
        if tokens.is_empty() {
            continue;
        }
        let mut session = Session::with_cache_types(&model, CONTEXT, cache, cache).unwrap();
        let mut logits = session.eval(&tokens).unwrap();
        let top = r["top"].as_array().unwrap();
        for pair in top.iter().take(TOP_CHECKED) {
            let (id, want) = (
                pair[0].as_u64().unwrap() as usize,
                pair[1].as_f64().unwrap() as f32,
            );
            let got = logits[id];
            if (got - want).abs() > tolerance {
                failures.push(format!(
                    "{name} {prompt:?}: logit of token {id} is {got}, llama.cpp {want}"
                ));
            }
        }
        let gap = top[0][1].as_f64().unwrap() - top[1][1].as_f64().unwrap();
        let want_top = top[0][0].as_u64().unwrap() as u32;
        if gap >= MARGIN && argmax(&logits) != want_top {
            failures.push(format!(
                "{name} {prompt:?}: top-1 is {}, llama.cpp {want_top}",
                argmax(&logits)
            ));
        }
        let Some(greedy) = r.get("greedy").and_then(Value::as_array) else {
            continue;
        };
        for (step, g) in greedy.iter().enumerate() {
            let (want, margin) = (g[0].as_u64().unwrap() as u32, g[1].as_f64().unwrap());
            if margin < MARGIN {
                break;
            }
            let got = argmax(&logits);
            if got != want {
                failures.push(format!(
                    "{name} {prompt:?}: greedy step {step} chose {got}, llama.cpp {want}"
                ));
                break;
            }
            logits = session.eval(&[got]).unwrap();
        }
    }
    failures
}

const REAL: [&str; 3] = [
    "smollm2-135m-instruct-q4_1",
    "gemma-3-270m-q4_k_m",
    "qwen2.5-coder-0.5b-instruct-q4_k_m",
];

/// The mismatches of real model `folder` on its reference `files`, with a `cache` KV cache.
fn check_real(folder: &str, files: &[&str], cache: KvType) -> Vec<String> {
    let dir = repo().join("testdata/reference").join(folder);
    let recs: Vec<Value> = files.iter().flat_map(|f| records(&dir.join(f))).collect();
    check(
        &real_model(&format!("{folder}.gguf")),
        &recs,
        REAL_MODEL_LOGIT_TOLERANCE,
        cache,
    )
}

fn assert_none(failures: Vec<String>) {
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The short prompts, their greedy continuations, and a prompt of over 512 tokens (the tile
/// kernels, the tiled attention and Gemma 3's sliding window; scripts/llama-reference.sh made it
/// with llama.cpp).
const F16_FILES: [&str; 3] = ["tokenize.jsonl", "generate.jsonl", "long.jsonl"];

#[test]
fn smollm2_matches_llama_cpp() {
    assert_none(check_real(REAL[0], &F16_FILES, KvType::F16));
}

#[test]
fn gemma3_matches_llama_cpp() {
    assert_none(check_real(REAL[1], &F16_FILES, KvType::F16));
}

#[test]
fn qwen2_matches_llama_cpp() {
    assert_none(check_real(REAL[2], &F16_FILES, KvType::F16));
}

#[test]
fn synthetic_models_match_llama_cpp() {
    let dir = repo().join("testdata/reference/synthetic");
    let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "gguf"))
        .collect();
    names.sort();
    assert_eq!(
        names.len(),
        17,
        "expected 17 synthetic models in {}",
        dir.display()
    );
    let mut failures = Vec::new();
    for gguf in names {
        failures.extend(check(
            &gguf,
            &records(&gguf.with_extension("jsonl")),
            LOGIT_TOLERANCE,
            KvType::F16,
        ));
    }
    assert_none(failures);
}

/// The optional q8_0 KV cache against llama.cpp's (`-ctk q8_0 -ctv q8_0`): the generate prompts
/// and 8 greedy steps of each real model (`q8_0-cache.jsonl`, made with
/// `scripts/llama-reference.sh`). Hearth quantizes, rotates and reads the
/// cache as llama.cpp does, so the logits agree to the printed precision.
#[test]
fn q8_0_cache_matches_llama_cpp() {
    let failures = REAL
        .iter()
        .flat_map(|folder| check_real(folder, &["q8_0-cache.jsonl"], KvType::Q8_0))
        .collect();
    assert_none(failures);
}

/// Largest difference allowed per component of a unit-length embedding: llama.cpp averages the
/// hidden states with a matrix product in f32, Hearth in f64, so the last bits differ.
const EMBEDDING_TOLERANCE: f32 = 1e-5;

/// `Model::embed` against llama.cpp's mean-pooled, normalised embeddings (`embed.jsonl`, made by
/// `scripts/llama-reference.sh`) on the generate prompts of each real model.
#[test]
fn embeddings_match_llama_cpp() {
    let mut failures = Vec::new();
    for folder in REAL {
        let model = Model::load(&real_model(&format!("{folder}.gguf")), 2).unwrap();
        let path = repo()
            .join("testdata/reference")
            .join(folder)
            .join("embed.jsonl");
        for r in records(&path) {
            let want: Vec<f32> = r["embedding"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect();
            let got = model.embed(&ids(&r["tokens"])).unwrap();
            assert_eq!(got.len(), want.len(), "{folder}: embedding length");
            let worst = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            if worst > EMBEDDING_TOLERANCE {
                failures.push(format!("{folder} {:?}: off by {worst}", r["prompt"]));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
