//! Matrix-vector (decode) throughput of `kernels::matmul` in GB/s of weight bytes, and batch
//! (prompt) throughput in G multiply-adds/s with `--tokens N`.
//!
//! ```text
//! cargo run --release -p kernels --example matvec_bench [-- --quick] [--tokens N] [--level avx2]
//!     [--types Q4_1,Q4_K] [--packed] [--model] [--order N]
//! ```
//!
//! `--order N` sums the dots of the tokens in the order of a batch of `N`
//! (`matmul_multi_ordered`: 1 is a decode step of several sequences).
//!
//! `--packed` packs the weights for the tile kernels first (`kernels::pack_matrix`, as `hearth
//! serve` does with several slots). `--model` instead times all the matmuls of one SmolLM2-135M decode step (see `model_step`).
//!
//! For each shape/type it reports two numbers per thread count:
//! - `hot`: the same matrix again and again (it sits in L2/L3: kernel speed);
//! - `cold`: rotating over enough distinct copies to overflow the L3 (what decoding a model that
//!   does not fit in cache sees; bounded by DRAM bandwidth, ~26 GB/s on the reference VM).

use gguf::GgmlType;
use kernels::simd::{self, Level};
use kernels::{
    formats, matmul, matmul_multi, matmul_multi_ordered, pack_matrix, Matrix, ThreadPool,
};
use std::time::{Duration, Instant};

/// Total bytes of distinct weight copies for the `cold` runs (well above a 32 MiB L3).
const COLD_BYTES: usize = 192 << 20;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let packed = args.iter().any(|a| a == "--packed");
    let n_tokens: usize = flag(&args, "--tokens").map_or(1, |v| v.parse().expect("--tokens N"));
    let order: usize = flag(&args, "--order").map_or(n_tokens, |v| v.parse().expect("--order N"));
    let mm = |pool: &ThreadPool, w: &Matrix, x: &[f32], out: &mut [f32]| {
        if order == n_tokens {
            matmul(pool, w, x, n_tokens, out)
        } else {
            matmul_multi_ordered(pool, &[*w], x, n_tokens, order, &mut [out])
        }
    };
    if let Some(l) = flag(&args, "--level") {
        let level = Level::ALL
            .into_iter()
            .find(|x| x.name() == l)
            .unwrap_or_else(|| panic!("unknown level {l}"));
        assert!(simd::set_level(Some(level)), "{l} not available here");
    }
    println!(
        "level {} | tokens {n_tokens} | {} (hot = cached, cold = from DRAM)",
        kernels::cpu_features(),
        if n_tokens == 1 {
            "GB/s of weight bytes"
        } else {
            "G multiply-adds/s"
        }
    );
    let shapes = [(576usize, 1536usize), (896, 4864)];
    let types = [
        GgmlType::Q4_1,
        GgmlType::Q4_K,
        GgmlType::Q6_K,
        GgmlType::Q8_0,
        GgmlType::Q4_0,
        GgmlType::Q5_0,
        GgmlType::F16,
    ];
    let budget = Duration::from_millis(if quick { 150 } else { 600 });
    let pools = [ThreadPool::new(1), ThreadPool::new(2)];
    if args.iter().any(|a| a == "--model") {
        model_step(&pools, n_tokens, budget);
        return;
    }
    println!(
        "{:<6} {:>11} {:>9} | {:>9} {:>9} | {:>9} {:>9}",
        "type", "shape", "MiB", "hot 1t", "cold 1t", "hot 2t", "cold 2t"
    );
    let only: Option<Vec<String>> =
        flag(&args, "--types").map(|v| v.split(',').map(str::to_uppercase).collect());
    for ty in types {
        if only
            .as_ref()
            .is_some_and(|o| !o.iter().any(|t| t == ty.name()))
        {
            continue;
        }
        for &(rows, cols) in &shapes {
            let rb = cols / ty.block_size() * ty.type_size();
            let one = make_matrix(ty, rows, cols, 1);
            let copies = (COLD_BYTES / (rows * rb)).max(2);
            let many = replicate(&one, copies);
            let x: Vec<f32> = (0..cols * n_tokens)
                .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
                .collect();
            let mut out = vec![0f32; rows * n_tokens];
            let mut cells = Vec::new();
            // With --packed, each copy also in the tile layout (as `hearth serve` packs them).
            let matrices: Vec<Matrix> = (0..copies)
                .map(|k| Matrix::new(ty, rows, cols, &many[k * rows * rb..][..rows * rb]).unwrap())
                .collect();
            let packs: Vec<Option<Vec<u8>>> = matrices
                .iter()
                .map(|m| packed.then(|| pack_matrix(m, 2)).flatten())
                .collect();
            let with_pack = |k: usize| match &packs[k] {
                Some(p) => matrices[k].with_packed(p).unwrap(),
                None => matrices[k],
            };
            for pool in &pools {
                let w = with_pack(0);
                let hot = time_per_call(budget, || mm(pool, &w, &x, &mut out));
                let mut k = 0;
                let cold = time_per_call(budget, || {
                    mm(pool, &with_pack(k), &x, &mut out);
                    k = (k + 1) % copies;
                });
                // Decode: GB/s of weights; batches: G multiply-adds per second.
                let rate = |t: f64| {
                    if n_tokens == 1 {
                        (rows * rb) as f64 / t / 1e9
                    } else {
                        (rows * cols * n_tokens) as f64 / t / 1e9
                    }
                };
                cells.push(format!("{:>9.2} {:>9.2}", rate(hot), rate(cold)));
            }
            println!(
                "{:<6} {:>11} {:>9.2} | {} | {}",
                ty.name(),
                format!("{rows}x{cols}"),
                (rows * rb) as f64 / (1 << 20) as f64,
                cells[0],
                cells[1]
            );
        }
    }
}

/// All the matmuls of one SmolLM2-135M decode step (30 layers of Q4_1 q/k/v/o/gate/up/down and
/// the 49152 x 576 Q8_0 output head, every layer its own weights: ~80 MB, more than the L3), i.e.
/// the weight-streaming floor of a token. llama.cpp decodes this model at 147 tok/s on the
/// reference VM with 2 threads.
fn model_step(pools: &[ThreadPool], n_tokens: usize, budget: Duration) {
    let (d, ff, kv, vocab, layers) = (576usize, 1536usize, 192usize, 49152usize, 30usize);
    let shapes = [(d, d), (kv, d), (kv, d), (d, d), (ff, d), (ff, d), (d, ff)];
    let mut mats: Vec<(GgmlType, usize, usize, Vec<u8>)> = Vec::new();
    let layer: Vec<Vec<u8>> = shapes
        .iter()
        .map(|&(r, c)| make_matrix(GgmlType::Q4_1, r, c, (r * c) as u64))
        .collect();
    for _ in 0..layers {
        for (&(r, c), data) in shapes.iter().zip(&layer) {
            mats.push((GgmlType::Q4_1, r, c, data.clone()));
        }
    }
    mats.push((
        GgmlType::Q8_0,
        vocab,
        d,
        make_matrix(GgmlType::Q8_0, vocab, d, 99),
    ));
    let bytes: usize = mats.iter().map(|m| m.3.len()).sum();
    let x: Vec<f32> = (0..ff * n_tokens)
        .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    let mut out = vec![0f32; vocab * n_tokens];
    println!(
        "SmolLM2-135M step: {} matmuls, {:.1} MB of weights, {n_tokens} token(s)",
        mats.len(),
        bytes as f64 / 1e6
    );
    for pool in pools {
        let sync = time_per_call(budget, || pool.run(&|_| {}));
        println!(
            "  {} thread(s): empty pool.run {:.2} us",
            pool.n_threads(),
            sync * 1e6
        );
    }
    let report = |what: &str, n_threads: usize, t: f64| {
        println!(
            "  {what:<24} {n_threads} thread(s): {:.2} ms/step = {:.1} steps/s ({:.1} tok/s), {:.1} GB/s",
            t * 1e3,
            1.0 / t,
            n_tokens as f64 / t,
            bytes as f64 / t / 1e9
        );
    };
    for pool in pools {
        let t = time_per_call(budget * 4, || {
            for (ty, r, c, data) in &mats {
                let w = Matrix::new(*ty, *r, *c, data).unwrap();
                matmul(
                    pool,
                    &w,
                    &x[..c * n_tokens],
                    n_tokens,
                    &mut out[..r * n_tokens],
                );
            }
        });
        report("one matmul per matrix", pool.n_threads(), t);
    }
    // The engine's natural grouping: Q/K/V and gate/up share their input.
    let groups: [&[usize]; 4] = [&[0, 1, 2], &[3], &[4, 5], &[6]];
    let mut outs: Vec<Vec<f32>> = (0..3).map(|_| vec![0f32; ff * n_tokens]).collect();
    for pool in pools {
        let t = time_per_call(budget * 4, || {
            for l in 0..layers {
                for g in groups {
                    let ws: Vec<Matrix> = g
                        .iter()
                        .map(|&k| {
                            let (ty, r, c, data) = &mats[l * shapes.len() + k];
                            Matrix::new(*ty, *r, *c, data).unwrap()
                        })
                        .collect();
                    let c = ws[0].cols;
                    let mut o: Vec<&mut [f32]> = outs
                        .iter_mut()
                        .zip(&ws)
                        .map(|(v, w)| &mut v[..w.rows * n_tokens])
                        .collect();
                    matmul_multi(pool, &ws, &x[..c * n_tokens], n_tokens, &mut o);
                }
            }
            let (ty, r, c, data) = mats.last().unwrap();
            let w = Matrix::new(*ty, *r, *c, data).unwrap();
            matmul(
                pool,
                &w,
                &x[..c * n_tokens],
                n_tokens,
                &mut out[..r * n_tokens],
            );
        });
        report("matmul_multi (qkv, gate+up)", pool.n_threads(), t);
    }
}

fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

/// Seconds per call: warm up, then time every call for `budget` and take the 10th percentile
/// (the VM is shared with other work; the fast calls are the undisturbed ones).
fn time_per_call(budget: Duration, mut f: impl FnMut()) -> f64 {
    for _ in 0..3 {
        f();
    }
    let mut times = Vec::new();
    let start = Instant::now();
    while start.elapsed() < budget || times.len() < 20 {
        let t = Instant::now();
        f();
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    times[times.len() / 10]
}

fn make_matrix(ty: GgmlType, rows: usize, cols: usize, seed: u64) -> Vec<u8> {
    let rb = cols / ty.block_size() * ty.type_size();
    let mut data = vec![0u8; rows * rb];
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut src = vec![0f32; cols];
    for r in 0..rows {
        for v in src.iter_mut() {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            *v = (s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0;
        }
        formats::quantize_row(ty, &src, &mut data[r * rb..(r + 1) * rb]).unwrap();
    }
    data
}

fn replicate(one: &[u8], copies: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(one.len() * copies);
    for _ in 0..copies {
        v.extend_from_slice(one);
    }
    v
}
