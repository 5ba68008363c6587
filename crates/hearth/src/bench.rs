//! `hearth bench`: prompt-processing and generation speed, measured the way llama.cpp's
//! `llama-bench` measures it so the two can be compared number for number, plus how much of the
//! machine's memory bandwidth generation achieves.
//!
//! A `ppN` test evaluates N random tokens as one prompt on an empty cache; a `tgN` test decodes N
//! random tokens one at a time on an empty cache. Each test has one warm-up run, then
//! `--repetitions` timed runs; the report is the mean ± sample standard deviation of tokens/s.
//! As in llama-bench, every test runs for every combination of the KV cache types asked for
//! (`-ctk f16,q8_0`), and the report names the types and the cache's size.

use crate::models::{load, IfMissing, StoreArgs};
use anyhow::{bail, Context, Result};
use clap::Args;
use engine::{KvType, Model, Session};
use serde_json::{json, Value};
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Args)]
pub struct BenchArgs {
    /// A .gguf file, or the name of a model in the store.
    model: PathBuf,
    /// Prompt lengths to test, comma separated (0: no prompt test).
    #[arg(short = 'p', long, value_delimiter = ',', default_value = "512")]
    n_prompt: Vec<usize>,
    /// Generation lengths to test, comma separated (0: no generation test).
    #[arg(short = 'n', long, value_delimiter = ',', default_value = "128")]
    n_gen: Vec<usize>,
    /// Threads to compute with (default: all cores).
    #[arg(short = 't', long)]
    threads: Option<usize>,
    /// Timed runs of each test.
    #[arg(short = 'r', long, default_value_t = 5)]
    repetitions: usize,
    /// How the KV cache stores keys, comma separated to compare (also -ctk, as llama-bench): f16,
    /// or q8_0 for 34 bytes per 32 values instead of 64.
    #[arg(long, value_name = "TYPES", value_delimiter = ',', default_value = "f16",
          value_parser = crate::kv_type_parser())]
    cache_type_k: Vec<KvType>,
    /// How the KV cache stores values, comma separated (also -ctv): f16 or q8_0.
    #[arg(long, value_name = "TYPES", value_delimiter = ',', default_value = "f16",
          value_parser = crate::kv_type_parser())]
    cache_type_v: Vec<KvType>,
    /// Print a JSON array with llama-bench's fields instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Prompt,
    Generation,
}

/// One test: what it runs and on which cache.
#[derive(Clone, Copy)]
struct Test {
    kind: Kind,
    n_tokens: usize,
    type_k: KvType,
    type_v: KvType,
}

/// One test's results.
struct TestResult {
    test: Test,
    /// Bytes of the test's KV cache (`n_tokens` positions).
    kv_bytes: usize,
    test_time: SystemTime,
    samples_ns: Vec<u64>,
}

impl TestResult {
    fn name(&self) -> String {
        match self.test.kind {
            Kind::Prompt => format!("pp{}", self.test.n_tokens),
            Kind::Generation => format!("tg{}", self.test.n_tokens),
        }
    }

    fn samples_ts(&self) -> Vec<f64> {
        self.samples_ns
            .iter()
            .map(|&ns| self.test.n_tokens as f64 * 1e9 / ns.max(1) as f64)
            .collect()
    }
}

/// What the report says about the model file, computed from its tensor table.
struct ModelInfo {
    filename: String,
    model_type: String,
    /// Bytes of all tensors (llama-bench's `model_size`, not the file size).
    size: u64,
    n_params: u64,
    /// Bytes of weights one generated token reads.
    weight_bytes_per_token: u64,
}

pub fn bench(args: BenchArgs) -> Result<()> {
    let threads = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    if threads == 0 {
        bail!("--threads must be at least 1");
    }
    if args.repetitions == 0 {
        bail!("--repetitions must be at least 1");
    }
    let sizes: Vec<(Kind, usize)> = (args.n_prompt.iter().map(|&n| (Kind::Prompt, n)))
        .chain(args.n_gen.iter().map(|&n| (Kind::Generation, n)))
        .filter(|&(_, n)| n > 0)
        .collect();
    if sizes.is_empty() {
        bail!("nothing to measure: every --n-prompt and --n-gen is 0");
    }
    // Cache types outermost, as llama-bench orders its parameter combinations.
    let mut tests = Vec::new();
    for &type_k in &args.cache_type_k {
        for &type_v in &args.cache_type_v {
            tests.extend(sizes.iter().map(|&(kind, n_tokens)| Test {
                kind,
                n_tokens,
                type_k,
                type_v,
            }));
        }
    }

    let loaded = load(&args.model, &args.store, IfMissing::Fail)?;
    let model = Model::from_gguf(loaded.gguf, threads)
        .with_context(|| format!("cannot load {}", loaded.label))?;
    // A file by its name, as llama-bench shows it; a store model by its whole name.
    let label = match loaded.stored {
        Some(_) => loaded.label,
        None => Path::new(&loaded.label)
            .file_name()
            .map_or(loaded.label.clone(), |f| f.to_string_lossy().into_owned()),
    };
    let info = model_info(label, &model);
    // Measured before the tests so its 1 GiB buffer is gone while the model runs.
    let mem_gbs = memory_read_bandwidth(threads);

    let mut results = Vec::new();
    for &test in &tests {
        results.push(run_test(&model, test, args.repetitions)?);
    }

    if args.json {
        let out: Vec<Value> = results
            .iter()
            .map(|r| to_json(&info, threads, mem_gbs, r))
            .collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print_table(&info, threads, mem_gbs, &results);
    }
    Ok(())
}

fn model_info(filename: String, model: &Model) -> ModelInfo {
    let g = &model.gguf;
    let size = g.tensors().iter().map(|t| t.n_bytes).sum();
    let n_params = g.tensors().iter().map(|t| t.n_elements()).sum();
    let ftype = g
        .get_u64("general.file_type")
        .and_then(ftype_name)
        .unwrap_or("unknown type");
    ModelInfo {
        filename,
        model_type: format!(
            "{} {} {ftype}",
            model.hparams.arch.name(),
            params_short(n_params)
        ),
        size,
        n_params,
        weight_bytes_per_token: weight_bytes_per_token(g),
    }
}

/// Bytes of weights a single-token decode step reads: every tensor once, except that only one row
/// of the token embeddings is looked up — unless there is no `output.weight`, in which case the
/// embeddings double as the (tied) output matrix and are read whole.
fn weight_bytes_per_token(g: &gguf::Gguf) -> u64 {
    let tied = g.tensor("output.weight").is_none();
    g.tensors()
        .iter()
        .map(|t| {
            if t.name == "token_embd.weight" && !tied {
                t.row_bytes().unwrap_or(0)
            } else {
                t.n_bytes
            }
        })
        .sum()
}

/// llama.cpp's `llama_model_ftype_name` for `general.file_type`, so `model_type` reads the same.
fn ftype_name(id: u64) -> Option<&'static str> {
    Some(match id {
        0 => "all F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K - Medium",
        11 => "Q3_K - Small",
        12 => "Q3_K - Medium",
        13 => "Q3_K - Large",
        14 => "Q4_K - Small",
        15 => "Q4_K - Medium",
        16 => "Q5_K - Small",
        17 => "Q5_K - Medium",
        18 => "Q6_K",
        25 => "IQ4_NL - 4.5 bpw",
        30 => "IQ4_XS - 4.25 bpw",
        32 => "BF16",
        _ => return None,
    })
}

fn params_short(n: u64) -> String {
    if n >= 1_000_000_000 {
        format!("{:.1}B", n as f64 / 1e9)
    } else {
        format!("{}M", (n as f64 / 1e6).round())
    }
}

/// A small deterministic generator (SplitMix64) for the random token ids: the benchmark needs
/// repeatable valid ids, not statistical quality.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn token(&mut self, n_vocab: usize) -> u32 {
        (self.next() % n_vocab as u64) as u32
    }
}

/// The tokens of one run: BOS first when the model adds one (as llama-bench does), then random.
fn random_tokens(model: &Model, rng: &mut SplitMix64, n: usize) -> Vec<u32> {
    let n_vocab = model.n_vocab().min(model.tokenizer.vocab_size()).max(1);
    let bos = model.tokenizer.bos().filter(|_| model.tokenizer.add_bos());
    (0..n)
        .map(|i| match bos {
            Some(b) if i == 0 => b,
            _ => rng.token(n_vocab),
        })
        .collect()
}

fn run_test(model: &Model, test: Test, repetitions: usize) -> Result<TestResult> {
    let Test {
        kind, n_tokens: n, ..
    } = test;
    let test_time = SystemTime::now();
    // The cache is allocated once; `clear` empties it before each run, as llama-bench clears its
    // KV cache, so allocation is not timed.
    let mut session = Session::with_cache_types(model, n, test.type_k, test.type_v)?;
    let kv_bytes = session.cache().bytes();
    let mut rng = SplitMix64(0x4845_4152_5448 ^ n as u64);
    let mut run = |n: usize| -> Result<Duration> {
        let tokens = random_tokens(model, &mut rng, n);
        session.clear();
        let t0 = Instant::now();
        match kind {
            Kind::Prompt => {
                black_box(session.eval(&tokens)?);
            }
            Kind::Generation => {
                for &t in &tokens {
                    black_box(session.eval(&[t])?);
                }
            }
        }
        Ok(t0.elapsed())
    };
    // Warm-up as llama-bench: the whole prompt for pp, one decode step for tg (it already touches
    // every weight, faulting the mapped file in).
    match kind {
        Kind::Prompt => run(n)?,
        Kind::Generation => run(1)?,
    };
    let mut samples_ns = Vec::with_capacity(repetitions);
    for _ in 0..repetitions {
        let d = run(n)?;
        samples_ns.push(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    }
    Ok(TestResult {
        test,
        kv_bytes,
        test_time,
        samples_ns,
    })
}

fn mean(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        0.0
    } else {
        xs.iter().sum::<f64>() / xs.len() as f64
    }
}

/// Sample standard deviation (n - 1 in the denominator, as llama-bench); 0 for fewer than two.
fn stddev(xs: &[f64]) -> f64 {
    if xs.len() < 2 {
        return 0.0;
    }
    let m = mean(xs);
    let ss: f64 = xs.iter().map(|x| (x - m) * (x - m)).sum();
    (ss / (xs.len() - 1) as f64).sqrt()
}

/// Weight bandwidth generation achieves, in GB/s, or `None` for a prompt test (a batch reads each
/// weight once for many tokens, so bytes × tokens/s means nothing there).
fn weight_bandwidth_gbs(info: &ModelInfo, r: &TestResult) -> Option<f64> {
    (r.test.kind == Kind::Generation)
        .then(|| info.weight_bytes_per_token as f64 * mean(&r.samples_ts()) / 1e9)
}

fn to_json(info: &ModelInfo, threads: usize, mem_gbs: f64, r: &TestResult) -> Value {
    let ns: Vec<f64> = r.samples_ns.iter().map(|&n| n as f64).collect();
    let ts = r.samples_ts();
    let (n_prompt, n_gen) = match r.test.kind {
        Kind::Prompt => (r.test.n_tokens, 0),
        Kind::Generation => (0, r.test.n_tokens),
    };
    json!({
        "hearth_version": env!("CARGO_PKG_VERSION"),
        "cpu_info": kernels::cpu_features().to_string(),
        "backends": "CPU",
        "model_filename": info.filename,
        "model_type": info.model_type,
        "model_size": info.size,
        "model_n_params": info.n_params,
        "n_batch": 512,
        "n_ubatch": 512,
        "n_threads": threads,
        "type_k": r.test.type_k.name(),
        "type_v": r.test.type_v.name(),
        "use_mmap": true,
        "n_prompt": n_prompt,
        "n_gen": n_gen,
        "n_depth": 0,
        "test_time": rfc3339(r.test_time),
        "avg_ns": mean(&ns).round() as u64,
        "stddev_ns": stddev(&ns).round() as u64,
        "avg_ts": mean(&ts),
        "stddev_ts": stddev(&ts),
        "samples_ns": r.samples_ns,
        "samples_ts": ts,
        "kv_cache_bytes": r.kv_bytes,
        "weight_bytes_per_token": info.weight_bytes_per_token,
        "weight_bandwidth_gbs": weight_bandwidth_gbs(info, r),
        "memory_read_bandwidth_gbs": mem_gbs,
    })
}

/// llama-bench's size column: MiB below 1 GiB, GiB above.
fn size_str(bytes: u64) -> String {
    const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
    let b = bytes as f64;
    if b < GIB {
        format!("{:.2} MiB", b / 1024.0 / 1024.0)
    } else {
        format!("{:.2} GiB", b / GIB)
    }
}

fn params_str(n: u64) -> String {
    if n < 1_000_000_000 {
        format!("{:.2} M", n as f64 / 1e6)
    } else {
        format!("{:.2} B", n as f64 / 1e9)
    }
}

fn print_table(info: &ModelInfo, threads: usize, mem_gbs: f64, results: &[TestResult]) {
    // llama-bench shows the cache types only when one differs from the default f16.
    let types = results
        .iter()
        .any(|r| (r.test.type_k, r.test.type_v) != (KvType::F16, KvType::F16));
    // (title, right-aligned): text left, numbers and test names right, as llama-bench's markdown.
    let mut header = vec![
        ("model", false),
        ("size", true),
        ("params", true),
        ("threads", true),
    ];
    if types {
        header.extend([("type_k", true), ("type_v", true)]);
    }
    header.extend([("kv cache", true), ("test", true), ("t/s", true)]);
    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|r| {
            let ts = r.samples_ts();
            let mut row = vec![
                info.filename.clone(),
                size_str(info.size),
                params_str(info.n_params),
                threads.to_string(),
            ];
            if types {
                row.extend([r.test.type_k.to_string(), r.test.type_v.to_string()]);
            }
            row.extend([
                size_str(r.kv_bytes as u64),
                r.name(),
                format!("{:.2} ± {:.2}", mean(&ts), stddev(&ts)),
            ]);
            row
        })
        .collect();
    let mut width: Vec<usize> = header.iter().map(|(h, _)| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in width.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let right: Vec<bool> = header.iter().map(|&(_, r)| r).collect();
    let line = |cells: &[String]| {
        let parts: Vec<String> = cells
            .iter()
            .zip(&width)
            .zip(&right)
            .map(|((c, &w), &r)| {
                let pad = " ".repeat(w - c.chars().count());
                if r {
                    format!("{pad}{c}")
                } else {
                    format!("{c}{pad}")
                }
            })
            .collect();
        format!("| {} |", parts.join(" | "))
    };
    let titles: Vec<String> = header.iter().map(|(h, _)| h.to_string()).collect();
    println!("{}", line(&titles));
    let rule: Vec<String> = width
        .iter()
        .zip(&right)
        .map(|(&w, &r)| {
            if r {
                format!("{}:", "-".repeat(w + 1))
            } else {
                "-".repeat(w + 2)
            }
        })
        .collect();
    println!("|{}|", rule.join("|"));
    for row in &rows {
        println!("{}", line(row));
    }
    println!();
    for r in results {
        if let Some(gbs) = weight_bandwidth_gbs(info, r) {
            let name = if types {
                format!("{} (K {}, V {})", r.name(), r.test.type_k, r.test.type_v)
            } else {
                r.name()
            };
            println!(
                "{name}: weights {:.1} MB/token × {:.1} t/s = {:.1} GB/s of {:.1} GB/s measured ({:.0}%)",
                info.weight_bytes_per_token as f64 / 1e6,
                mean(&r.samples_ts()),
                gbs,
                mem_gbs,
                100.0 * gbs / mem_gbs.max(f64::MIN_POSITIVE)
            );
        }
    }
    if !results.iter().any(|r| r.test.kind == Kind::Generation) {
        println!("memory read bandwidth: {mem_gbs:.1} GB/s measured");
    }
}

/// Bytes for the bandwidth probe: 1 GiB, or a quarter of the available memory when that is less,
/// so a small machine is not pushed into swapping.
fn probe_bytes() -> usize {
    const GIB: usize = 1 << 30;
    let available = std::fs::read_to_string("/proc/meminfo").ok().and_then(|s| {
        s.lines()
            .find(|l| l.starts_with("MemAvailable:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<usize>().ok())
            .map(|kib| kib.saturating_mul(1024))
    });
    match available {
        Some(a) => GIB.min(a / 4).max(64 << 20),
        None => GIB / 4,
    }
}

/// The machine's memory-read bandwidth in GB/s: `threads` threads each summing their share of a
/// buffer much larger than any cache, best of three passes. This is the ceiling a decode step,
/// which streams every weight once, can reach.
fn memory_read_bandwidth(threads: usize) -> f64 {
    let words = probe_bytes() / 8;
    // Non-zero contents: a zeroed allocation could be backed by one shared zero page, and reading
    // that would measure the cache instead of memory.
    let buf: Vec<u64> = (0..words as u64).collect();
    let chunk = words.div_ceil(threads);
    let mut best = Duration::MAX;
    for _ in 0..3 {
        let t0 = Instant::now();
        let total = std::thread::scope(|s| {
            let handles: Vec<_> = buf
                .chunks(chunk)
                .map(|part| s.spawn(move || sum_words(part)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or(0))
                .fold(0u64, u64::wrapping_add)
        });
        black_box(total);
        best = best.min(t0.elapsed());
    }
    (words * 8) as f64 / best.as_secs_f64().max(1e-9) / 1e9
}

/// Four independent sums so the loop is limited by loads, not by one addition chain.
fn sum_words(words: &[u64]) -> u64 {
    let mut acc = [0u64; 4];
    let mut quads = words.chunks_exact(4);
    for q in &mut quads {
        for (a, &w) in acc.iter_mut().zip(q) {
            *a = a.wrapping_add(w);
        }
    }
    let tail = quads
        .remainder()
        .iter()
        .fold(0u64, |a, &w| a.wrapping_add(w));
    acc.iter().fold(tail, |a, &w| a.wrapping_add(w))
}

/// `t` as RFC 3339 in UTC, e.g. `2025-01-31T12:34:56Z` (llama-bench's `test_time` format).
fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day); Howard Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_and_sample_stddev() {
        assert_eq!(mean(&[]), 0.0);
        assert_eq!(mean(&[2.0, 4.0, 9.0]), 5.0);
        assert_eq!(stddev(&[]), 0.0);
        assert_eq!(stddev(&[3.0]), 0.0);
        // Sample (n - 1) deviation of 2, 4, 4, 4, 5, 5, 7, 9 is sqrt(32 / 7).
        let xs = [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0];
        assert!((stddev(&xs) - (32.0f64 / 7.0).sqrt()).abs() < 1e-12);
        assert_eq!(stddev(&[1.5, 1.5, 1.5]), 0.0);
    }

    #[test]
    fn rfc3339_formats_utc() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + Duration::from_secs(951_827_696); // leap day 2000
        assert_eq!(rfc3339(t), "2000-02-29T12:34:56Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_735_689_599);
        assert_eq!(rfc3339(t), "2024-12-31T23:59:59Z");
    }

    #[test]
    fn sums_every_word() {
        let words: Vec<u64> = (1..=11).collect();
        assert_eq!(sum_words(&words), 66);
        assert_eq!(sum_words(&[]), 0);
    }

    #[test]
    fn samples_become_tokens_per_second() {
        let r = TestResult {
            test: Test {
                kind: Kind::Generation,
                n_tokens: 128,
                type_k: KvType::F16,
                type_v: KvType::Q8_0,
            },
            kv_bytes: 0,
            test_time: UNIX_EPOCH,
            samples_ns: vec![1_000_000_000, 500_000_000],
        };
        assert_eq!(r.samples_ts(), vec![128.0, 256.0]);
        assert_eq!(r.name(), "tg128");
    }

    #[test]
    fn sizes_read_like_llama_bench() {
        assert_eq!(size_str(89_789_440), "85.63 MiB");
        assert_eq!(size_str(3 << 30), "3.00 GiB");
        assert_eq!(params_str(134_515_008), "134.52 M");
        assert_eq!(params_str(7_241_732_096), "7.24 B");
    }
}
