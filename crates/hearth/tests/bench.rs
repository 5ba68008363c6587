//! `hearth bench` end to end on a small synthetic model: llama-bench-shaped JSON, the table, KV
//! cache types, and clean errors for a missing file or an unknown cache type.

use serde_json::Value;
use std::process::Output;

mod common;

use common::{hearth, synthetic};

/// `hearth bench` on the synthetic model with two repetitions; `-p 16 -n 4` unless `extra` sets
/// them (a repeated flag adds to its list, as in llama-bench).
fn bench(extra: &[&str]) -> Output {
    let model = synthetic("llama3-synthetic-q8_0.gguf");
    let mut args = vec!["bench", model.to_str().unwrap(), "-r", "2"];
    if !extra.contains(&"-p") {
        args.extend(["-p", "16"]);
    }
    if !extra.contains(&"-n") {
        args.extend(["-n", "4"]);
    }
    args.extend_from_slice(extra);
    let out = hearth(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn json_has_llama_bench_fields() {
    let out = bench(&["-t", "2", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let tests = v.as_array().unwrap();
    assert_eq!(tests.len(), 2);
    let file_size = std::fs::metadata(synthetic("llama3-synthetic-q8_0.gguf"))
        .unwrap()
        .len();
    for (t, (n_prompt, n_gen)) in tests.iter().zip([(16, 0), (0, 4)]) {
        assert_eq!(t["model_filename"], "llama3-synthetic-q8_0.gguf");
        assert!(t["model_type"].as_str().unwrap().starts_with("llama "));
        let size = t["model_size"].as_u64().unwrap();
        assert!(size > 0 && size <= file_size, "{size} vs {file_size}");
        assert!(t["model_n_params"].as_u64().unwrap() > 0);
        assert_eq!(t["n_threads"], 2);
        assert_eq!(t["n_prompt"], n_prompt);
        assert_eq!(t["n_gen"], n_gen);
        let time = t["test_time"].as_str().unwrap();
        assert!(time.len() == 20 && time.ends_with('Z') && time.as_bytes()[10] == b'T');
        assert!(t["avg_ns"].as_u64().unwrap() > 0);
        assert!(t["stddev_ns"].as_u64().is_some());
        let avg_ts = t["avg_ts"].as_f64().unwrap();
        assert!(avg_ts > 0.0 && avg_ts.is_finite());
        assert!(t["stddev_ts"].as_f64().unwrap() >= 0.0);
        let ns = t["samples_ns"].as_array().unwrap();
        let ts = t["samples_ts"].as_array().unwrap();
        assert_eq!((ns.len(), ts.len()), (2, 2));
        // t/s of each sample is its token count over its time.
        let n = (n_prompt + n_gen) as f64;
        for (ns, ts) in ns.iter().zip(ts) {
            let want = n * 1e9 / ns.as_f64().unwrap();
            assert!((ts.as_f64().unwrap() - want).abs() < 1e-6 * want);
        }
        let wbytes = t["weight_bytes_per_token"].as_u64().unwrap();
        assert!(wbytes > 0 && wbytes <= size);
        assert!(t["memory_read_bandwidth_gbs"].as_f64().unwrap() > 0.0);
        let wbw = &t["weight_bandwidth_gbs"];
        if n_gen > 0 {
            let gbs = wbw.as_f64().unwrap();
            assert!((gbs - wbytes as f64 * avg_ts / 1e9).abs() < 1e-6 * gbs);
        } else {
            assert!(wbw.is_null());
        }
    }
}

#[test]
fn table_lists_each_test_and_the_bandwidth() {
    let out = bench(&[]);
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("| model") && lines[0].contains("t/s"));
    let row = |test: &str| {
        lines
            .iter()
            .find(|l| l.contains(&format!(" {test} |")))
            .unwrap_or_else(|| panic!("no {test} row in\n{text}"))
    };
    for test in ["pp16", "tg4"] {
        let r = row(test);
        assert!(
            r.contains("llama3-synthetic-q8_0.gguf") && r.contains(" ± "),
            "{r}"
        );
    }
    assert!(
        text.contains("tg4: weights ") && text.contains("GB/s measured"),
        "{text}"
    );
}

#[test]
fn disabled_tests_are_left_out() {
    let out = bench(&["-n", "0", "-p", "8,0,16", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let tests = v.as_array().unwrap();
    let prompts: Vec<&Value> = tests.iter().map(|t| &t["n_prompt"]).collect();
    assert_eq!(prompts, [8, 16]);
    assert!(tests.iter().all(|t| t["n_gen"] == 0));
}

#[test]
fn nothing_to_measure_is_an_error() {
    let model = synthetic("llama3-synthetic-q8_0.gguf");
    let out = hearth(&["bench", model.to_str().unwrap(), "-p", "0", "-n", "0"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing to measure"));
}

#[test]
fn missing_model_is_a_clear_error() {
    let out = hearth(&["bench", "/nonexistent/model.gguf", "-r", "1"]);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot load /nonexistent/model.gguf"), "{err}");
}

/// The JSON tests of a `bench` run.
fn json_tests(out: &Output) -> Vec<Value> {
    serde_json::from_slice::<Value>(&out.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn llama_bench_cache_type_flags_choose_a_q8_0_cache() {
    let q8 = json_tests(&bench(&["-ctk", "q8_0", "-ctv", "q8_0", "--json"]));
    let f16 = json_tests(&bench(&["--json"]));
    assert_eq!(q8.len(), 2);
    for (q, f) in q8.iter().zip(&f16) {
        assert_eq!(
            (&q["type_k"], &q["type_v"]),
            (&"q8_0".into(), &"q8_0".into())
        );
        assert_eq!((&f["type_k"], &f["type_v"]), (&"f16".into(), &"f16".into()));
        // 34 bytes per 32 values instead of 64.
        let (qb, fb) = (
            q["kv_cache_bytes"].as_u64().unwrap(),
            f["kv_cache_bytes"].as_u64().unwrap(),
        );
        assert!(fb > 0 && qb * 64 == fb * 34, "{qb} vs {fb}");
        assert!(q["avg_ts"].as_f64().unwrap() > 0.0);
    }
}

#[test]
fn every_cache_type_combination_is_a_test_and_the_table_names_them() {
    let tests = json_tests(&bench(&[
        "--cache-type-k",
        "f16,q8_0",
        "-ctv",
        "q8_0",
        "-n",
        "0",
        "--json",
    ]));
    let types: Vec<(&str, &str)> = tests
        .iter()
        .map(|t| (t["type_k"].as_str().unwrap(), t["type_v"].as_str().unwrap()))
        .collect();
    assert_eq!(types, [("f16", "q8_0"), ("q8_0", "q8_0")]);

    let out = bench(&["-ctk", "q8_0"]);
    let text = String::from_utf8(out.stdout).unwrap();
    let header = text.lines().next().unwrap();
    assert!(
        header.contains("| type_k | type_v |") && header.contains("kv cache"),
        "{header}"
    );
    let row = text.lines().find(|l| l.contains(" pp16 |")).unwrap();
    let cells: Vec<&str> = row.split('|').map(str::trim).collect();
    assert!(cells.windows(2).any(|c| c == ["q8_0", "f16"]), "{row}");
    // The default cache needs no type columns, as in llama-bench.
    let plain = String::from_utf8(bench(&[]).stdout).unwrap();
    assert!(
        !plain.contains("type_k") && plain.contains("kv cache"),
        "{plain}"
    );
}

#[test]
fn unknown_cache_type_is_a_clear_error() {
    let model = synthetic("llama3-synthetic-q8_0.gguf");
    let out = hearth(&["bench", model.to_str().unwrap(), "-ctk", "q4_0"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("invalid value 'q4_0'") && err.contains("possible values: f16, q8_0"),
        "{err}"
    );
}
