//! Prompt-processing speed of one weight type's batched matmul, per instruction-set level: a
//! 4864 x 896 (1024 for K-quants) matrix times 512 tokens, the shape of a 0.5B model's FFN.
//!
//!   cargo run --release -p kernels --example matmul_speed -- [TYPE] [LEVEL] [THREADS]
//!
//! TYPE: q4_0, q4_1, q5_0 (default), q5_1, q8_0, q4_k, q6_k; LEVEL: avx512vnni (default where
//! available), avx2, scalar; THREADS: 1 (default). Prints GMAC/s (multiply-adds per second).

use gguf::GgmlType;
use kernels::matmul::matmul_at;
use kernels::simd::{detected_level, Level};
use kernels::{Matrix, ThreadPool};
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let ty = match args.first().map(|s| s.to_lowercase()).as_deref() {
        None | Some("q5_0") => GgmlType::Q5_0,
        Some("q4_0") => GgmlType::Q4_0,
        Some("q4_1") => GgmlType::Q4_1,
        Some("q5_1") => GgmlType::Q5_1,
        Some("q8_0") => GgmlType::Q8_0,
        Some("q4_k") => GgmlType::Q4_K,
        Some("q6_k") => GgmlType::Q6_K,
        Some(other) => panic!("unknown type {other}"),
    };
    let level = match args.get(1).map(String::as_str) {
        None => detected_level(),
        Some(name) => *Level::ALL
            .iter()
            .find(|l| l.name() == name)
            .unwrap_or_else(|| panic!("unknown level {name}")),
    };
    let threads: usize = args.get(2).map_or(1, |t| t.parse().expect("THREADS"));
    let (rows, n_tokens) = (4864, 512);
    let cols = if ty.block_size() == 256 { 1024 } else { 896 };
    let row_bytes = cols / ty.block_size() * ty.type_size();
    let src: Vec<f32> = (0..cols)
        .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    let mut data = vec![0u8; rows * row_bytes];
    for row in data.chunks_exact_mut(row_bytes) {
        kernels::formats::quantize_row(ty, &src, row).unwrap();
    }
    let w = Matrix::new(ty, rows, cols, &data).unwrap();
    let x: Vec<f32> = (0..n_tokens * cols)
        .map(|i| ((i * 31) % 997) as f32 / 498.0 - 1.0)
        .collect();
    let mut out = vec![0f32; n_tokens * rows];
    let pool = ThreadPool::new(threads);
    matmul_at(level, &pool, &w, &x, n_tokens, &mut out);
    let reps = 5;
    let start = Instant::now();
    for _ in 0..reps {
        matmul_at(level, &pool, &w, &x, n_tokens, &mut out);
    }
    let secs = start.elapsed().as_secs_f64() / reps as f64;
    println!(
        "{ty} {rows}x{cols} x {n_tokens} tokens, {level}, {threads} thread(s): {:.1} ms, {:.1} GMAC/s",
        secs * 1e3,
        (rows * cols * n_tokens) as f64 / secs / 1e9
    );
}
