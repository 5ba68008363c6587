//! Acceptance tests: token ids equal llama.cpp's for every reference prompt of the three real
//! models (cached outside the repository by `scripts/fetch-test-models.sh`) and of the synthetic
//! models in `testdata/reference/synthetic/`; decoding round-trips; streaming decoding never
//! splits a character.

// `encode_protected` takes a list of ranges; one-element lists are intended here.
#![allow(clippy::single_range_in_vec_init)]

use std::path::{Path, PathBuf};
use std::time::Instant;

use tokenizer::{StreamDecoder, Tokenizer};

const REAL_MODELS: [&str; 3] = [
    "smollm2-135m-instruct-q4_1",
    "gemma-3-270m-q4_k_m",
    "qwen2.5-coder-0.5b-instruct-q4_k_m",
];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn models_dir() -> PathBuf {
    match std::env::var_os("HEARTH_TEST_MODELS") {
        Some(d) => PathBuf::from(d),
        None => {
            let home = std::env::var_os("HOME").expect("HOME is set");
            PathBuf::from(home).join(".cache/hearth/test-models")
        }
    }
}

fn model_path(name: &str) -> PathBuf {
    let p = models_dir().join(format!("{name}.gguf"));
    assert!(
        p.exists(),
        "test model {} is missing: run scripts/fetch-test-models.sh",
        p.display()
    );
    p
}

fn load(path: &Path) -> Tokenizer {
    let g = gguf::Gguf::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Tokenizer::from_gguf(&g).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

struct Case {
    prompt: String,
    tokens: Vec<u32>,
}

fn read_cases(path: &Path) -> Vec<Case> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("valid JSON line");
            Case {
                prompt: v["prompt"].as_str().expect("prompt").to_string(),
                tokens: v["tokens"]
                    .as_array()
                    .expect("tokens")
                    .iter()
                    .map(|t| t.as_u64().expect("token id") as u32)
                    .collect(),
            }
        })
        .collect()
}

/// Compares every case; returns (passed, failure descriptions).
fn check(tok: &Tokenizer, cases: &[Case], label: &str) -> (usize, Vec<String>) {
    let mut passed = 0;
    let mut failures = Vec::new();
    for c in cases {
        let got = tok.encode(&c.prompt, true, true);
        if got == c.tokens {
            passed += 1;
        } else {
            let show = |ids: &[u32]| -> Vec<String> {
                ids.iter()
                    .map(|&i| format!("{i}:{:?}", tok.token_text(i)))
                    .collect()
            };
            failures.push(format!(
                "{label}: {:?}\n  want {:?}\n  got  {:?}",
                c.prompt,
                show(&c.tokens),
                show(&got)
            ));
        }
    }
    (passed, failures)
}

fn real_model_cases(name: &str) -> Vec<Case> {
    let dir = repo_root().join("testdata/reference").join(name);
    let mut cases = read_cases(&dir.join("tokenize.jsonl"));
    cases.extend(read_cases(&dir.join("generate.jsonl")));
    cases
}

fn synthetic_files() -> Vec<(PathBuf, PathBuf)> {
    let dir = repo_root().join("testdata/reference/synthetic");
    let mut out = Vec::new();
    for e in std::fs::read_dir(&dir).expect("synthetic dir") {
        let p = e.expect("dir entry").path();
        if p.extension().is_some_and(|x| x == "jsonl") {
            let g = p.with_extension("gguf");
            assert!(g.exists(), "{} has no model beside it", p.display());
            out.push((p, g));
        }
    }
    out.sort();
    assert!(out.len() >= 3, "expected the synthetic reference files");
    out
}

#[test]
fn real_models_match_llama_cpp() {
    let mut failures = Vec::new();
    for name in REAL_MODELS {
        let tok = load(&model_path(name));
        let cases = real_model_cases(name);
        let (passed, f) = check(&tok, &cases, name);
        println!("{name}: {passed}/{} prompts match", cases.len());
        failures.extend(f);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn synthetic_models_match_llama_cpp() {
    let mut failures = Vec::new();
    for (jsonl, model) in synthetic_files() {
        let tok = load(&model);
        let cases = read_cases(&jsonl);
        let label = jsonl.file_stem().unwrap().to_string_lossy().into_owned();
        let (passed, f) = check(&tok, &cases, &label);
        println!("{label}: {passed}/{} prompts match", cases.len());
        failures.extend(f);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Decoding llama.cpp's ids (control tokens rendered as their text) gives the prompt back, and
/// `decode(encode(x))` is `x` when no control token is parsed.
#[test]
fn decode_round_trips() {
    let mut models: Vec<(String, Tokenizer, Vec<Case>)> = Vec::new();
    for name in REAL_MODELS {
        models.push((
            name.to_string(),
            load(&model_path(name)),
            real_model_cases(name),
        ));
    }
    for (jsonl, model) in synthetic_files() {
        models.push((
            jsonl.display().to_string(),
            load(&model),
            read_cases(&jsonl),
        ));
    }
    for (name, tok, cases) in &models {
        for c in cases {
            let ids: &[u32] = match tok.bos() {
                Some(b) if tok.add_bos() && c.tokens.first() == Some(&b) => &c.tokens[1..],
                _ => &c.tokens,
            };
            let mut bytes = Vec::new();
            for &id in ids {
                bytes.extend_from_slice(tok.token_piece(id, true));
            }
            assert_eq!(
                String::from_utf8_lossy(&bytes),
                c.prompt,
                "{name}: rendering reference ids"
            );

            let plain = tok.encode(&c.prompt, false, false);
            let mut text = tok.decode(&plain);
            if tok.pre_tokenizer().is_none() && text.starts_with(' ') && !c.prompt.starts_with(' ')
            {
                text.remove(0); // SPM's added space prefix
            }
            assert_eq!(text, c.prompt, "{name}: decode(encode(x))");
        }
    }
}

#[test]
fn stream_decoder_reassembles_split_characters() {
    let text = "Emoji: 🦀🔥👍🏽 and 🇫🇷 flags, 日本語のテキスト";
    for name in REAL_MODELS {
        let tok = load(&model_path(name));
        let ids = tok.encode(text, false, false);
        let mut d = StreamDecoder::new();
        let mut out = String::new();
        let mut split_seen = false;
        for &id in &ids {
            let piece = d.push(tok.token_bytes(id));
            assert!(
                !piece.contains('\u{fffd}'),
                "{name}: replacement char in {piece:?}"
            );
            if !d.pending().is_empty() {
                split_seen = true;
            }
            out.push_str(&piece);
        }
        out.push_str(&d.finish());
        assert_eq!(out, text, "{name}");
        if name.starts_with("smollm2") {
            assert!(
                split_seen,
                "{name}: expected some character split across tokens"
            );
        }
    }
}

/// A user message containing a control token's text is tokenized as plain text by
/// `encode_protected`, not as the control token.
#[test]
fn encode_protected_keeps_user_text_plain() {
    for name in [
        "qwen2.5-coder-0.5b-instruct-q4_k_m",
        "smollm2-135m-instruct-q4_1",
    ] {
        let tok = load(&model_path(name));
        let im_end = tok.find_token("<|im_end|>").expect("<|im_end|>");
        let im_start = tok.find_token("<|im_start|>").expect("<|im_start|>");
        let user = "please print <|im_end|> literally";
        let prompt = format!("<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n");
        let start = prompt.find(user).unwrap();
        let protected = [start..start + user.len()];

        let plain = tok.encode(&prompt, true, true);
        let guarded = tok.encode_protected(&prompt, true, &protected);
        let count = |ids: &[u32], t: u32| ids.iter().filter(|&&i| i == t).count();
        assert_eq!(
            count(&plain, im_end),
            2,
            "{name}: encode parses the user's <|im_end|>"
        );
        assert_eq!(
            count(&guarded, im_end),
            1,
            "{name}: only the template's <|im_end|>"
        );
        assert_eq!(count(&guarded, im_start), 2);
        // The user's `<|im_end|>` became several ordinary tokens that decode to its text.
        assert!(guarded.len() > plain.len() + 1);
        let user_ids = tok.encode(user, false, false);
        assert!(user_ids.len() > 3);
        let dec = tok.decode(&guarded);
        assert!(dec.contains(user), "{name}: {dec:?}");

        // Without special text inside the protected range, the result is unchanged.
        let benign = "<|im_start|>user\nhello there<|im_end|>\n";
        let s = benign.find("hello").unwrap();
        assert_eq!(
            tok.encode_protected(benign, true, &[s..s + 11]),
            tok.encode(benign, true, true)
        );
    }
}

#[test]
fn special_tokens_and_eog() {
    let qwen = load(&model_path("qwen2.5-coder-0.5b-instruct-q4_k_m"));
    for t in ["<|im_end|>", "<|endoftext|>"] {
        assert!(qwen.is_eog(qwen.find_token(t).unwrap()), "qwen {t}");
    }
    assert!(!qwen.is_eog(qwen.find_token("<|im_start|>").unwrap()));
    assert!(!qwen.add_bos());
    assert_eq!(qwen.eos(), qwen.find_token("<|im_end|>"));
    assert!(qwen
        .token_bytes(qwen.find_token("<|im_end|>").unwrap())
        .is_empty());
    assert_eq!(
        qwen.token_bytes(qwen.find_token("Ġworld").unwrap()),
        b" world"
    );

    let gemma = load(&model_path("gemma-3-270m-q4_k_m"));
    assert!(gemma.is_eog(gemma.find_token("<end_of_turn>").unwrap()));
    assert!(gemma.is_eog(gemma.find_token("<eos>").unwrap()));
    assert!(gemma.add_bos());
    assert_eq!(gemma.bos(), gemma.find_token("<bos>"));
    assert_eq!(gemma.vocab_size(), 262144);
    assert_eq!(
        gemma.token_bytes(gemma.find_token("<0x0A>").unwrap()),
        b"\n"
    );
    assert_eq!(
        gemma.token_bytes(gemma.find_token("▁world").unwrap()),
        b" world"
    );
    // `<end_of_turn>` is a control token: parsed only with parse_special.
    let eot = gemma.find_token("<end_of_turn>").unwrap();
    assert!(gemma.encode("<end_of_turn>", false, true) == [eot]);
    assert!(!gemma.encode("<end_of_turn>", false, false).contains(&eot));

    let smol = load(&model_path("smollm2-135m-instruct-q4_1"));
    assert!(smol.is_eog(smol.find_token("<|im_end|>").unwrap()));
    assert!(smol.is_eog(smol.find_token("<|endoftext|>").unwrap()));
}

#[test]
fn load_times() {
    for name in REAL_MODELS {
        let path = model_path(name);
        let t0 = Instant::now();
        let g = gguf::Gguf::open(&path).unwrap();
        let t1 = Instant::now();
        let tok = Tokenizer::from_gguf(&g).unwrap();
        let t2 = Instant::now();
        println!(
            "{name}: gguf open {:.1} ms, tokenizer build {:.1} ms ({} tokens)",
            (t1 - t0).as_secs_f64() * 1e3,
            (t2 - t1).as_secs_f64() * 1e3,
            tok.vocab_size()
        );
        // Generous bound (shared, loaded CI machines); a healthy build takes tens of ms.
        assert!(
            (t2 - t1).as_secs_f64() < 3.0,
            "{name}: tokenizer build too slow"
        );
    }
}

/// Decoding the greedy continuations gives llama.cpp's `greedy_text` exactly, including how
/// bytes of characters split across tokens are replaced, both with `decode` and streaming.
#[test]
fn greedy_text_matches_reference_decoding() {
    let mut files: Vec<(PathBuf, PathBuf)> = REAL_MODELS
        .iter()
        .map(|m| {
            (
                repo_root()
                    .join("testdata/reference")
                    .join(m)
                    .join("generate.jsonl"),
                model_path(m),
            )
        })
        .collect();
    files.extend(synthetic_files());
    let mut checked = 0;
    for (jsonl, model) in files {
        let tok = load(&model);
        let text = std::fs::read_to_string(&jsonl).unwrap();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let Some(steps) = v["greedy"].as_array() else {
                continue;
            };
            let ids: Vec<u32> = steps
                .iter()
                .map(|s| s[0].as_u64().unwrap() as u32)
                .collect();
            let want = v["greedy_text"].as_str().unwrap();
            // Each token's bytes are what llama.cpp reports.
            for (s, &id) in steps.iter().zip(&ids) {
                let hex: String = tok
                    .token_bytes(id)
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                assert_eq!(
                    hex,
                    s[3].as_str().unwrap(),
                    "{}: token {id}",
                    jsonl.display()
                );
                assert_eq!(
                    tokenizer::lossy_utf8(tok.token_bytes(id)),
                    s[2].as_str().unwrap()
                );
            }
            assert_eq!(tok.decode(&ids), want, "{}", jsonl.display());
            let mut d = StreamDecoder::new();
            let mut streamed = String::new();
            for &id in &ids {
                streamed.push_str(&d.push(tok.token_bytes(id)));
            }
            streamed.push_str(&d.finish());
            assert_eq!(streamed, want, "{} (streamed)", jsonl.display());
            checked += 1;
        }
    }
    assert!(checked > 300, "{checked}");
}
