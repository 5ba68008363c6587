//! The `hearth` binary seen from a user's side: `tokenize`, `run --raw`, `run` with a template,
//! options on either side of the prompt, KV cache types, `show`, and clean errors.

use serde_json::Value;

mod common;

use common::{hearth, prompt_tokens, synthetic};

fn first_record(model: &str) -> Value {
    let text = std::fs::read_to_string(synthetic(model).with_extension("jsonl")).unwrap();
    serde_json::from_str(text.lines().next().unwrap()).unwrap()
}

#[test]
fn tokenize_prints_llama_cpp_ids() {
    let model = synthetic("llama3-synthetic-q4_0.gguf");
    let rec = first_record("llama3-synthetic-q4_0.gguf");
    let out = hearth(&[
        "tokenize",
        model.to_str().unwrap(),
        rec["prompt"].as_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ids: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ids, rec["tokens"]);
}

#[test]
fn raw_greedy_run_prints_llama_cpp_continuation() {
    let model = synthetic("qwen3-synthetic.gguf");
    let text = std::fs::read_to_string(synthetic("qwen3-synthetic.jsonl")).unwrap();
    for line in text.lines().take(6) {
        let rec: Value = serde_json::from_str(line).unwrap();
        let mut want = Vec::new();
        for step in rec["greedy"].as_array().unwrap() {
            if step[1].as_f64().unwrap() < 0.1 {
                break;
            }
            let hex = step[3].as_str().unwrap();
            want.extend(
                (0..hex.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()),
            );
        }
        // Compare whole characters only: a cut inside a multi-byte character prints nothing yet.
        while std::str::from_utf8(&want).is_err() {
            want.pop();
        }
        let prompt = rec["prompt"].as_str().unwrap();
        let out = hearth(&[
            "run",
            model.to_str().unwrap(),
            "--raw",
            "--temperature",
            "0",
            "--num-predict",
            "16",
            "--seed",
            "1",
            prompt,
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stdout.starts_with(&want),
            "{prompt:?}: got {:?}, want prefix {:?}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&want)
        );
    }
}

#[test]
fn same_seed_gives_same_sampled_answer() {
    let model = synthetic("llama3-synthetic.gguf");
    let args = [
        "run",
        model.to_str().unwrap(),
        "--temperature",
        "1.0",
        "--num-predict",
        "24",
        "--seed",
        "42",
        "Tell me a story",
    ];
    let a = hearth(&args);
    let b = hearth(&args);
    assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
    assert_eq!(a.stdout, b.stdout);
}

#[test]
fn verbose_reports_speeds_on_stderr_only() {
    let model = synthetic("llama3-synthetic-q8_0.gguf");
    let out = hearth(&[
        "run",
        model.to_str().unwrap(),
        "--raw",
        "--temperature",
        "0",
        "--num-predict",
        "4",
        "--verbose",
        "Hello",
    ]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("prompt eval:") && err.contains("tokens/s"),
        "{err}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("tokens/s"));
}

#[test]
fn show_names_architecture_and_template() {
    let out = hearth(&["show", synthetic("phi3-synthetic.gguf").to_str().unwrap()]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("phi3") && text.contains("Chat template"),
        "{text}"
    );
}

#[test]
fn prompt_longer_than_context_is_an_error_that_says_by_how_much() {
    let model = synthetic("llama3-synthetic.gguf");
    let prompt = "word ".repeat(100);
    let out = hearth(&[
        "run",
        model.to_str().unwrap(),
        "--raw",
        "--ctx-size",
        "16",
        &prompt,
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("shorten the prompt by"), "{err}");
}

#[test]
fn broken_file_is_a_clean_error() {
    let dir = std::env::temp_dir().join(format!("hearth-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("truncated.gguf");
    let bytes = std::fs::read(synthetic("llama3-synthetic-q4_0.gguf")).unwrap();
    std::fs::write(&bad, &bytes[..1000]).unwrap();
    let out = hearth(&["run", bad.to_str().unwrap(), "hi"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("error: cannot load"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// `hearth run` on the synthetic model, greedy, with `env` set: (success, stdout, stderr).
fn run_with_env(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let model = synthetic("llama3-synthetic-q8_0.gguf");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_hearth"));
    cmd.args([
        "run",
        model.to_str().unwrap(),
        "--raw",
        "--temperature",
        "0",
    ])
    .args(["--num-predict", "8", "--verbose"])
    .args(args)
    .env_remove("HEARTH_KV_CACHE_TYPE");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
    (out.status.success(), text(out.stdout), text(out.stderr))
}

#[test]
fn run_takes_cache_types_from_flags_or_the_environment() {
    let (ok, f16_text, err) = run_with_env(&["Hello"], &[]);
    assert!(ok, "{err}");
    assert!(err.contains("KV cache: keys f16, values f16"), "{err}");
    for (args, env, want) in [
        (
            &["-ctk", "q8_0", "Hello"][..],
            &[][..],
            "keys q8_0, values f16",
        ),
        (
            &["--cache-type-v", "q8_0", "Hello"],
            &[],
            "keys f16, values q8_0",
        ),
        (
            &["Hello"],
            &[("HEARTH_KV_CACHE_TYPE", "q8_0")],
            "keys q8_0, values q8_0",
        ),
        // A flag wins over the environment.
        (
            &["-ctv", "f16", "Hello"],
            &[("HEARTH_KV_CACHE_TYPE", "q8_0")],
            "keys q8_0, values f16",
        ),
    ] {
        let (ok, text, err) = run_with_env(args, env);
        assert!(ok, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?} {env:?}: {err}");
        assert!(!text.is_empty(), "{args:?}");
    }
    assert!(!f16_text.is_empty());
}

#[test]
fn bad_cache_types_are_clear_errors() {
    let (ok, _, err) = run_with_env(&["--cache-type-k", "f32", "Hello"], &[]);
    assert!(!ok && err.contains("invalid value 'f32'"), "{err}");
    assert!(err.contains("possible values: f16, q8_0"), "{err}");
    let (ok, _, err) = run_with_env(&["Hello"], &[("HEARTH_KV_CACHE_TYPE", "q4")]);
    assert!(!ok, "{err}");
    assert!(
        err.contains("HEARTH_KV_CACHE_TYPE=q4") && err.contains("unknown KV cache type `q4`"),
        "{err}"
    );
}

/// Regression: the prompt took every argument after it, options included (`hearth run MODEL
/// PROMPT --temperature 0` sampled at the default temperature from "PROMPT --temperature 0").
#[test]
fn run_options_after_prompt_are_options() {
    let model = synthetic("qwen3-synthetic.gguf");
    let model = model.to_str().unwrap();
    let rec = first_record("qwen3-synthetic.gguf");
    let prompt = rec["prompt"].as_str().unwrap();
    let options = [
        "--raw",
        "--temperature",
        "0",
        "--num-predict",
        "8",
        "--verbose",
    ];
    let before = hearth(&[&["run", model][..], &options, &[prompt]].concat());
    let after = hearth(&[&["run", model, prompt][..], &options].concat());
    for out in [&before, &after] {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The prompt is only the prompt: as many tokens as llama.cpp makes of it.
        assert_eq!(
            prompt_tokens(&out.stderr),
            rec["tokens"].as_array().unwrap().len()
        );
    }
    assert_eq!(after.stdout, before.stdout);
    // Words on both sides of an option are one prompt.
    let (first, rest) = prompt.split_once(' ').unwrap();
    let split = hearth(&[&["run", model, first][..], &options, &[rest]].concat());
    assert_eq!(split.stdout, before.stdout);
}

#[test]
fn run_prompt_starting_with_a_dash_follows_a_double_dash() {
    let model = synthetic("qwen3-synthetic.gguf");
    let model = model.to_str().unwrap();
    let args = ["run", model, "--raw", "--num-predict", "2", "--verbose"];
    let out = hearth(&[&args[..], &["--", "-1 is", "negative"]].concat());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ids = hearth(&["tokenize", model, "--", "-1 is negative"]);
    let ids: Value = serde_json::from_slice(&ids.stdout).unwrap();
    assert_eq!(prompt_tokens(&out.stderr), ids.as_array().unwrap().len());
    // Without `--` a leading dash is an (unknown) option, not silently prompt text.
    let out = hearth(&[&args[..], &["-1 is negative"]].concat());
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unexpected argument") && err.contains("'--"),
        "{err}"
    );
}
