//! Fill in the middle with Qwen2.5-Coder's FIM tokens: the prompt has llama.cpp's infill layout,
//! and the model fills a function body from the code around it.

mod common;

use engine::{GenerateOptions, Model, Sampler, SamplerConfig, Session};
use std::path::PathBuf;

fn qwen() -> Model {
    Model::load(
        &common::real_model("qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"),
        2,
    )
    .unwrap()
}

#[test]
fn qwen_coder_fills_the_middle() {
    let m = qwen();
    let (prefix, suffix) = ("def add(a, b):\n    ", "\n\nprint(add(1, 2))\n");
    let tokens = m.fill_in_middle_tokens(prefix, suffix).unwrap();
    let id = |t: &str| m.tokenizer.find_token(t).unwrap();
    let (pre, suf, mid) = (
        id("<|fim_prefix|>"),
        id("<|fim_suffix|>"),
        id("<|fim_middle|>"),
    );
    let mut want = vec![pre];
    want.extend(m.tokenizer.encode(prefix, false, false));
    want.push(suf);
    want.extend(m.tokenizer.encode(suffix, false, false));
    want.push(mid);
    assert_eq!(tokens, want, "Qwen2.5 adds no BOS");

    let mut session = Session::new(&m, 256);
    let mut sampler = Sampler::new(SamplerConfig {
        temperature: 0.0,
        ..SamplerConfig::default()
    });
    let opts = GenerateOptions {
        max_tokens: Some(12),
        ..GenerateOptions::default()
    };
    let mut text = String::new();
    session
        .generate(&tokens, &mut sampler, &opts, |t| {
            text.push_str(t);
            true
        })
        .unwrap();
    assert!(text.contains("return a + b"), "{text:?}");
}

#[test]
fn a_model_without_fim_tokens_has_no_fill_in_middle_prompt() {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/reference/synthetic/llama3-synthetic-q8_0.gguf");
    let m = Model::load(&p, 1).unwrap();
    assert_eq!(m.fill_in_middle_tokens("a", "b"), None);
}
