//! Tokenizes NUL-separated records `<flag><text>` from stdin (flag `1`: parse special tokens)
//! with `add_special = true` and prints one line of ids per record. Used to compare against
//! llama.cpp's `llama_tokenize` on generated inputs.
//!
//! `cargo run --release -p tokenizer --example encode_records -- MODEL.gguf < records`

use std::io::{Read, Write};

fn main() {
    let path = std::env::args()
        .nth(1)
        .expect("usage: encode_records MODEL.gguf < records");
    let g = gguf::Gguf::open(&path).expect("GGUF file");
    let tok = tokenizer::Tokenizer::from_gguf(&g).expect("tokenizer");
    let mut input = Vec::new();
    std::io::stdin().read_to_end(&mut input).expect("stdin");
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for rec in input.split(|&b| b == 0) {
        let Some((&flag, text)) = rec.split_first() else {
            continue;
        };
        let text = std::str::from_utf8(text).expect("UTF-8 record");
        let ids = tok.encode(text, true, flag == b'1');
        let line: Vec<String> = ids.iter().map(u32::to_string).collect();
        writeln!(out, "{}", line.join(" ")).expect("stdout");
    }
}
