//! Prints the pre-tokenizer pieces of text lines, for checking the splitters against a regex
//! engine: reads JSON lines `{"pre": "<tokenizer.ggml.pre value>", "text": "..."}` on stdin and
//! writes one JSON array of pieces per line.
//!
//! `cargo run -p tokenizer --example pretokenize < cases.jsonl`

use std::io::{BufRead, Write};

fn main() {
    let stdin = std::io::stdin();
    let mut out = std::io::stdout().lock();
    for line in stdin.lock().lines() {
        let line = line.expect("stdin");
        let v: serde_json::Value = serde_json::from_str(&line).expect("JSON line");
        let pre = v["pre"].as_str().expect("pre");
        let text = v["text"].as_str().expect("text");
        let splitter = tokenizer::PreTokenizer::from_name(pre).expect("known pre-tokenizer");
        let pieces: Vec<&str> = splitter.split(text).into_iter().map(|r| &text[r]).collect();
        writeln!(out, "{}", serde_json::to_string(&pieces).expect("JSON")).expect("stdout");
    }
}
