//! Loads a GGUF file's tokenizer and tokenizes a file (or a string), reporting timings.
//!
//! `cargo run --release -p tokenizer --example tokenize -- MODEL.gguf (--file PATH | TEXT) [--ids]`

use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (model, rest) = args
        .split_first()
        .expect("usage: MODEL.gguf (--file PATH | TEXT) [--ids]");
    let text = match rest.first().map(String::as_str) {
        Some("--file") => std::fs::read_to_string(&rest[1]).expect("readable UTF-8 file"),
        Some(t) => t.to_string(),
        None => "Hello world".to_string(),
    };
    let t0 = Instant::now();
    let g = gguf::Gguf::open(model).expect("GGUF file");
    let t1 = Instant::now();
    let tok = tokenizer::Tokenizer::from_gguf(&g).expect("tokenizer");
    let t2 = Instant::now();
    let ids = tok.encode(&text, true, true);
    let t3 = Instant::now();
    let back = tok.decode(&ids);
    let t4 = Instant::now();
    let ms = |a: Instant, b: Instant| (b - a).as_secs_f64() * 1e3;
    eprintln!("{tok:?}");
    eprintln!(
        "gguf open {:.1} ms, tokenizer build {:.1} ms; {} bytes -> {} tokens in {:.2} ms ({:.1} MB/s); decode {:.2} ms",
        ms(t0, t1),
        ms(t1, t2),
        text.len(),
        ids.len(),
        ms(t2, t3),
        text.len() as f64 / 1e6 / (t3 - t2).as_secs_f64(),
        ms(t3, t4)
    );
    if rest.iter().any(|a| a == "--ids") {
        println!("{ids:?}");
        println!("{back:?}");
    }
}
