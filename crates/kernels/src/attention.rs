//! Causal (optionally sliding-window) attention over the KV cache, with the numerics of
//! llama.cpp's CPU flash attention (AVX-512 build), across the pool. The cache holds keys and
//! values as f16 or as Q8_0 blocks ([`KvRows`], each independently, like llama.cpp's
//! `--cache-type-k`/`--cache-type-v`); [`hadamard`] is the rotation llama.cpp gives the rows of a
//! quantized cache (and the queries, and the output), which the caller applies. Like llama.cpp
//! attention has two algorithms, chosen by the number of queries in the batch:
//!
//! - Below [`TILED_MIN_QUERIES`] (decoding, short prompts): query by query, key by key
//!   (`flash_attn_ext_f16_one_chunk`). With f16 keys the query is rounded to f16 and `q . k` is
//!   summed in 64 lanes folded pairwise; with f16 values the running weighted sum of values is
//!   rounded to f16 after every step. Gemma-class models amplify last-bit differences, so the f16
//!   cache follows ggml's order exactly, and the reference tests hold its logits to llama.cpp's.
//!   With Q8_0 keys the query is quantized to Q8_0 once and dotted with the Q8_0 dot kernel
//!   (`vec_dot_q8_0_q8_0`); with Q8_0 values each row is dequantized and accumulated in f32.
//!   That is ggml's algorithm (the logits of the three test models through a Q8_0 cache matched
//!   llama.cpp's to 5 decimals on its short reference prompts), though no test holds it to them.
//! - From [`TILED_MIN_QUERIES`] (prompts): tile by tile (`flash_attn_ext_tiled`). The f32 queries
//!   of one KV head's group of heads, for a block of tokens, meet tiles of 64 keys converted to
//!   f32 once: scores as a small matrix product (an FMA chain per element in ascending order, as
//!   ggml's `simd_gemm`), an online softmax per query row with ggml's vector `expf` (sums in
//!   f64), and the values accumulated in f32 by a second product. It is not bit-exact with the
//!   per-query path (f32 instead of f16 roundings), as in llama.cpp. A Q8_0 tile is dequantized
//!   to f32 instead. Here llama.cpp stays query by query (it tiles only f16 and f32 caches); tiles
//!   process a 512-token prompt 1.8 times as fast (Qwen2.5 0.5B, 2 threads) and, the queries
//!   keeping f32, stay a little closer to the f16 cache's results.
//!
//! The SIMD versions of every f16 vector step (AVX2 + FMA + F16C) give exactly the scalar twins'
//! results; the Q8_0 dot and query quantization are the [`crate::simd`] kernels of the level.

use crate::activation;
use crate::formats::{q8_0, QK32};
use crate::pool::{SharedMut, ThreadPool};
use crate::rows::for_each_rows;
use crate::simd::{active_level, Activations, DotKernel, Level};
use gguf::GgmlType;
use half::f16;
use half::slice::{HalfBitsSliceExt, HalfFloatSliceExt};
use std::cell::RefCell;
use std::ops::Range;

/// From this many queries in one batch attention runs tiled (llama.cpp's `GGML_FA_TILE_Q`).
pub const TILED_MIN_QUERIES: usize = 64;
/// Keys per tile (llama.cpp's `GGML_FA_TILE_KV`); tiles start at multiples of it.
const KV_TILE: usize = 64;
/// Tokens per tiled task: a task is one KV head's group of query heads for this many tokens.
const Q_BLOCK: usize = 64;
/// Elements per step of ggml's f16 dot (4 registers of 16 f32 lanes).
const LANES: usize = 64;

/// One layer's cached keys or values: `n_head_kv * head_dim` values per position, position by
/// position, each head's values contiguous.
#[derive(Clone, Copy, Debug)]
pub enum KvRows<'a> {
    /// f16 bit patterns.
    F16(&'a [u16]),
    /// ggml Q8_0 blocks ([`q8_0`]: an f16 scale and 32 `i8` in 34 bytes); `head_dim` must be a
    /// multiple of 32, so that every head is whole blocks.
    Q8_0(&'a [u8]),
}

impl KvRows<'_> {
    /// The number of positions the rows hold, for `kv_dim` values per position.
    fn positions(&self, kv_dim: usize) -> usize {
        match self {
            KvRows::F16(r) => r.len() / kv_dim,
            KvRows::Q8_0(r) => r.len() / q8_bytes(kv_dim),
        }
    }
}

/// Bytes of `n` values (a multiple of 32) in Q8_0 blocks; also the byte offset of value `n` of
/// a Q8_0 row.
fn q8_bytes(n: usize) -> usize {
    n / QK32 * q8_0::BLOCK_BYTES
}

/// Rotates each run of `n` values of `x` by the orthonormal Walsh-Hadamard matrix of order `n`
/// (Sylvester's: `H[i][j] = (-1)^popcount(i & j) / sqrt(n)`, symmetric and its own inverse), with
/// the fast transform's butterflies.
///
/// llama.cpp rotates the queries and keys this way before a quantized K cache stores the keys
/// (and the values before a quantized V cache, then the attention output back): `q . k` and the
/// softmax weights do not change, but the few very large channels some models' keys carry
/// (Qwen2.5's reach 150 where most are near 1) are spread over the whole run, so a Q8_0 block's
/// scale no longer drowns the small ones.
///
/// # Panics
/// If `n` is not a power of two or does not divide `x.len()`.
pub fn hadamard(x: &mut [f32], n: usize) {
    assert!(
        n.is_power_of_two() && x.len().is_multiple_of(n),
        "hadamard: {} values in runs of {n}",
        x.len()
    );
    let scale = 1.0 / (n as f32).sqrt();
    for run in x.chunks_exact_mut(n) {
        let mut h = 1;
        while h < n {
            for pair in run.chunks_exact_mut(2 * h) {
                let (a, b) = pair.split_at_mut(h);
                for (a, b) in a.iter_mut().zip(b) {
                    (*a, *b) = (*a + *b, *a - *b);
                }
            }
            h *= 2;
        }
        run.iter_mut().for_each(|v| *v *= scale);
    }
}

/// One layer's attention problem: `n` tokens of queries at positions `pos..pos + n`, over the
/// cached keys and values of positions `0..pos + n`.
#[derive(Clone, Copy, Debug)]
pub struct AttentionInput<'a> {
    /// `n * n_head * head_dim` query values, token by token.
    pub q: &'a [f32],
    /// Cached key rows.
    pub k: KvRows<'a>,
    /// Cached value rows.
    pub v: KvRows<'a>,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    /// Position of the first query.
    pub pos: usize,
    /// Sliding window: a query at position `p` sees keys `p + 1 - window ..= p`; 0 for none.
    pub window: usize,
    /// Applied to the queries (before the f16 rounding of the per-query path).
    pub q_scale: f32,
    /// Applied to the scores.
    pub kq_scale: f32,
}

impl AttentionInput<'_> {
    fn n_tokens(&self) -> usize {
        self.q.len() / (self.n_head * self.head_dim)
    }

    fn kv_dim(&self) -> usize {
        self.n_head_kv * self.head_dim
    }

    fn group(&self) -> usize {
        self.n_head / self.n_head_kv
    }

    /// The first key a query at position `p` sees.
    fn first_key(&self, p: usize) -> usize {
        if self.window > 0 {
            (p + 1).saturating_sub(self.window)
        } else {
            0
        }
    }
}

/// Softmax-weighted sums of values for every (token, head) of `a`, written to `out`
/// (`n * n_head * head_dim`, token by token).
///
/// # Panics
/// If the shapes disagree or the cache holds fewer than `pos + n` positions.
pub fn attention(pool: &ThreadPool, a: &AttentionInput<'_>, out: &mut [f32]) {
    attention_at(
        active_level(),
        pool,
        a,
        out,
        a.n_tokens() >= TILED_MIN_QUERIES,
    );
}

fn attention_at(
    level: Level,
    pool: &ThreadPool,
    a: &AttentionInput<'_>,
    out: &mut [f32],
    tiled: bool,
) {
    let (nh, hd) = (a.n_head, a.head_dim);
    assert!(
        hd > 0 && a.n_head_kv > 0 && nh.is_multiple_of(a.n_head_kv),
        "attention: {nh} heads over {} KV heads of {hd}",
        a.n_head_kv
    );
    assert!(
        a.q.len().is_multiple_of(nh * hd) && out.len() == a.q.len(),
        "attention: {} queries, {} outputs, rows of {}",
        a.q.len(),
        out.len(),
        nh * hd
    );
    let quantized = matches!(a.k, KvRows::Q8_0(_)) || matches!(a.v, KvRows::Q8_0(_));
    assert!(
        !quantized || hd.is_multiple_of(QK32),
        "attention: a Q8_0 cache needs heads of whole 32-value blocks, not {hd}"
    );
    let needed = a.pos + a.n_tokens();
    assert!(
        a.k.positions(a.kv_dim()) >= needed && a.v.positions(a.kv_dim()) >= needed,
        "attention: the cache holds fewer than {needed} positions"
    );
    // ggml tiles only when whole 16-lane vectors cover a head.
    if tiled && hd.is_multiple_of(16) {
        attention_tiled(level, pool, a, out);
    } else {
        attention_exact(level, pool, a, out);
    }
}

/// Values `at..at + out.len()` of `rows` as f32 (for Q8_0, whole blocks: ggml's `to_float`).
/// Inlined, so that the SIMD build of the per-query path vectorises the Q8_0 blocks.
#[inline(always)]
fn to_f32(rows: KvRows<'_>, at: usize, out: &mut [f32]) {
    match rows {
        KvRows::F16(r) => r[at..at + out.len()]
            .reinterpret_cast::<f16>()
            .convert_to_f32_slice(out),
        KvRows::Q8_0(r) => {
            let blocks = &r[q8_bytes(at)..][..q8_bytes(out.len())];
            for (b, y) in blocks
                .chunks_exact(q8_0::BLOCK_BYTES)
                .zip(out.chunks_exact_mut(QK32))
            {
                let (b, y) = (b.try_into(), y.try_into());
                q8_0::dequantize_block(b.expect("whole blocks"), y.expect("whole blocks"));
            }
        }
    }
}

/// The keys as the per-query path dots them with a query.
enum Keys<'a> {
    /// f16 rows, dotted with the query rounded to f16.
    F16(&'a [u16]),
    /// Q8_0 rows, dotted by `kernel` with the queries quantized to Q8_0 once for the call
    /// (`queries`: row `t * n_head + head` for token `t`), as ggml's `vec_dot_q8_0_q8_0`.
    Q8_0 {
        rows: &'a [u8],
        kernel: DotKernel,
        queries: &'a Activations,
    },
}

/// The queries of a Q8_0-key call, scaled and quantized, kept between calls on the calling
/// thread (a prompt's are megabytes, whose pages would fault in again on every layer).
#[derive(Default)]
struct QueryBufs {
    scaled: Vec<f32>,
    quantized: Activations,
}

thread_local! {
    static QUERY_BUFS: RefCell<QueryBufs> = RefCell::new(QueryBufs::default());
}

/// The per-query path, parallel over runs of (token, head) rows.
fn attention_exact(level: Level, pool: &ThreadPool, a: &AttentionInput<'_>, out: &mut [f32]) {
    let rows = out.len() / a.head_dim;
    let chunk = rows.div_ceil(4 * pool.n_threads());
    let run = |keys: &Keys<'_>, out: &mut [f32]| {
        for_each_rows(pool, out, a.head_dim, chunk, &|first, rows| {
            #[cfg(target_arch = "x86_64")]
            if level != Level::Scalar {
                // SAFETY: every SIMD level implies AVX2, FMA and F16C (checked at detection).
                unsafe { x86::exact_rows(a, keys, first, rows) };
                return;
            }
            // SAFETY: the scalar build needs no CPU feature.
            unsafe { exact_rows::<false>(a, keys, first, rows) };
        })
    };
    match a.k {
        KvRows::F16(k) => run(&Keys::F16(k), out),
        KvRows::Q8_0(k) => QUERY_BUFS.with_borrow_mut(|b| {
            // ggml converts each query row to the key type's dot type once (`q_to_vec_dot`).
            let kernel = DotKernel::new(level, GgmlType::Q8_0);
            b.scaled.clear();
            b.scaled.extend(a.q.iter().map(|&x| x * a.q_scale));
            b.quantized
                .quantize(&kernel, &b.scaled, a.head_dim, rows, pool);
            let keys = Keys::Q8_0 {
                rows: k,
                kernel,
                queries: &b.quantized,
            };
            run(&keys, out)
        }),
    }
}

/// (token, head) rows `first..` of the per-query path into `out`, with ggml's online softmax:
/// the running maximum, the sum of weights kept with a fused multiply-add, the value sum in f16
/// for f16 values and in f32 for Q8_0 values.
///
/// # Safety
/// With `SIMD`, the CPU must have AVX2, FMA and F16C.
#[inline(always)]
unsafe fn exact_rows<const SIMD: bool>(
    a: &AttentionInput<'_>,
    keys: &Keys<'_>,
    first: usize,
    out: &mut [f32],
) {
    let (hd, nh, kv_dim, group) = (a.head_dim, a.n_head, a.kv_dim(), a.group());
    let mut q16 = vec![0f32; hd];
    let mut acc = vec![0f32; hd];
    let mut v32 = vec![0f32; hd];
    for (i, out) in out.chunks_exact_mut(hd).enumerate() {
        let (t, head) = ((first + i) / nh, (first + i) % nh);
        let p = a.pos + t;
        if let Keys::F16(_) = keys {
            let q = &a.q[(t * nh + head) * hd..][..hd];
            q16.iter_mut()
                .zip(q)
                .for_each(|(d, &x)| *d = round_f16(x * a.q_scale));
        }
        let koff = (head / group) * hd;
        let (mut max, mut sum) = (f32::NEG_INFINITY, 0f32);
        acc.fill(0.0);
        for j in a.first_key(p)..=p {
            let row = j * kv_dim + koff;
            let s = match keys {
                // SAFETY: the caller's guarantee.
                Keys::F16(k) => unsafe { dot_f16::<SIMD>(&q16, &k[row..row + hd]) },
                Keys::Q8_0 {
                    rows,
                    kernel,
                    queries,
                } => kernel.dot(
                    &rows[q8_bytes(row)..][..q8_bytes(hd)],
                    &queries.row(first + i),
                    hd,
                ),
            } * a.kq_scale;
            let (mut ms, mut vs) = (1f32, 1f32);
            if s > max {
                ms = (max - s).exp();
                max = s;
                match a.v {
                    // SAFETY: as above.
                    KvRows::F16(_) => unsafe { scale_f16::<SIMD>(&mut acc, ms) },
                    // `ggml_vec_scale_f32`.
                    KvRows::Q8_0(_) => acc.iter_mut().for_each(|x| *x *= ms),
                }
            } else {
                vs = (s - max).exp();
            }
            match a.v {
                // SAFETY: as above.
                KvRows::F16(v) => unsafe { mad_f16::<SIMD>(&mut acc, &v[row..row + hd], vs) },
                // `to_float`, then `ggml_vec_mad_f32` (vectorised by the SIMD build's features).
                KvRows::Q8_0(_) => {
                    to_f32(a.v, row, &mut v32);
                    acc.iter_mut()
                        .zip(&v32)
                        .for_each(|(a, &x)| *a = x.mul_add(vs, *a));
                }
            }
            sum = sum.mul_add(ms, vs);
        }
        let inv = if sum == 0.0 { 0.0 } else { 1.0 / sum };
        out.iter_mut().zip(&acc).for_each(|(o, a)| *o = a * inv);
    }
}

/// `q . k` for f16-representable `q` and an f16 key row, summed in the order of llama.cpp's
/// AVX-512 `ggml_vec_dot_f16`: 64 fused multiply-add lanes, the four 16-lane registers folded as
/// `(r0 + r2) + (r1 + r3)`, then halved 8, 4, 2, 1; elements past the last 64 are added in f64.
///
/// # Safety
/// With `SIMD`, the CPU must have AVX2, FMA and F16C.
#[inline(always)]
unsafe fn dot_f16<const SIMD: bool>(q: &[f32], k: &[u16]) -> f32 {
    let body = q.len() - q.len() % LANES;
    #[cfg(target_arch = "x86_64")]
    let r0 = if SIMD {
        // SAFETY: the caller's guarantee.
        unsafe { x86::dot_body(&q[..body], &k[..body]) }
    } else {
        dot_body(&q[..body], &k[..body])
    };
    #[cfg(not(target_arch = "x86_64"))]
    let r0 = dot_body(&q[..body], &k[..body]);
    let mut sum = r0 as f64;
    for (a, &b) in q[body..].iter().zip(&k[body..]) {
        sum += (a * f16::from_bits(b).to_f32()) as f64;
    }
    sum as f32
}

/// The 64-lane part of [`dot_f16`] (`q.len()` a multiple of 64), scalar.
fn dot_body(q: &[f32], k: &[u16]) -> f32 {
    let mut acc = [0f32; LANES];
    for (qc, kc) in q.chunks_exact(LANES).zip(k.chunks_exact(LANES)) {
        for l in 0..LANES {
            acc[l] = qc[l].mul_add(f16::from_bits(kc[l]).to_f32(), acc[l]);
        }
    }
    let mut r = [0f32; 16];
    for l in 0..16 {
        r[l] = (acc[l] + acc[32 + l]) + (acc[16 + l] + acc[48 + l]);
    }
    let mut width = 8;
    while width >= 1 {
        for l in 0..width {
            r[l] += r[l + width];
        }
        width /= 2;
    }
    r[0]
}

/// `acc[i] = f16(v[i] * s + acc[i])` (one fused multiply-add, then rounded to f16), as
/// `ggml_vec_mad_f16`.
///
/// # Safety
/// With `SIMD`, the CPU must have AVX2, FMA and F16C.
#[inline(always)]
unsafe fn mad_f16<const SIMD: bool>(acc: &mut [f32], v: &[u16], s: f32) {
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if SIMD {
        // SAFETY: the caller's guarantee; the lengths are equal (both are head_dim).
        done = unsafe { x86::mad(acc, v, s) };
    }
    for (a, &b) in acc[done..].iter_mut().zip(&v[done..]) {
        *a = round_f16(f16::from_bits(b).to_f32().mul_add(s, *a));
    }
}

/// `acc[i] = f16(acc[i] * s)`, as `ggml_vec_scale_f16`.
///
/// # Safety
/// With `SIMD`, the CPU must have AVX2, FMA and F16C.
#[inline(always)]
unsafe fn scale_f16<const SIMD: bool>(acc: &mut [f32], s: f32) {
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if SIMD {
        // SAFETY: the caller's guarantee.
        done = unsafe { x86::scale(acc, s) };
    }
    for a in &mut acc[done..] {
        *a = round_f16(*a * s);
    }
}

/// `x` rounded to the nearest f16 (ties to even), as f32.
fn round_f16(x: f32) -> f32 {
    f16::from_f32(x).to_f32()
}

/// Per-thread buffers of the tiled path, kept between calls.
#[derive(Default)]
struct TileBufs {
    /// Scaled queries, `rows * head_dim`.
    q: Vec<f32>,
    /// Value sums, `rows * head_dim`.
    o: Vec<f32>,
    /// Scores, then weights: `rows * KV_TILE`.
    p: Vec<f32>,
    /// Keys of the tile transposed: `head_dim * KV_TILE`.
    k: Vec<f32>,
    /// Values of the tile: `KV_TILE * head_dim`.
    v: Vec<f32>,
    /// One key row in f32.
    row: Vec<f32>,
    /// Running maximum and sum of weights per query row.
    max: Vec<f32>,
    sum: Vec<f32>,
}

thread_local! {
    static TILE_BUFS: RefCell<TileBufs> = RefCell::new(TileBufs::default());
}

/// The tiled path, parallel over (KV head, block of [`Q_BLOCK`] tokens), the last (longest)
/// blocks first.
fn attention_tiled(level: Level, pool: &ThreadPool, a: &AttentionInput<'_>, out: &mut [f32]) {
    let blocks = a.n_tokens().div_ceil(Q_BLOCK);
    let nkv = a.n_head_kv;
    let dst = SharedMut(out.as_mut_ptr());
    pool.for_each_chunk(blocks * nkv, 1, &|tasks| {
        TILE_BUFS.with_borrow_mut(|bufs| {
            for task in tasks {
                let (b, g) = (blocks - 1 - task / nkv, task % nkv);
                let tokens = b * Q_BLOCK..((b + 1) * Q_BLOCK).min(a.n_tokens());
                tile_task(level, a, g, tokens, bufs, dst);
            }
        })
    });
}

/// The heads of KV head `g` for `tokens`: rows `tq * group + h` (token-major, so each token's
/// rows are one contiguous run of the output).
fn tile_task(
    level: Level,
    a: &AttentionInput<'_>,
    g: usize,
    tokens: Range<usize>,
    bufs: &mut TileBufs,
    dst: SharedMut<f32>,
) {
    let (hd, nh, group, kv_dim) = (a.head_dim, a.n_head, a.group(), a.kv_dim());
    let rows = tokens.len() * group;
    let TileBufs {
        q,
        o,
        p,
        k,
        v,
        row,
        max,
        sum,
    } = bufs;
    for (buf, len) in [
        (&mut *q, rows * hd),
        (&mut *o, rows * hd),
        (&mut *p, rows * KV_TILE),
        (&mut *k, hd * KV_TILE),
        (&mut *v, KV_TILE * hd),
        (&mut *row, hd),
        (&mut *max, rows),
        (&mut *sum, rows),
    ] {
        buf.resize(len, 0.0);
    }
    for (tq, t) in tokens.clone().enumerate() {
        let src = &a.q[(t * nh + g * group) * hd..][..group * hd];
        let dst = &mut q[tq * group * hd..][..group * hd];
        dst.iter_mut()
            .zip(src)
            .for_each(|(d, &x)| *d = x * a.q_scale);
    }
    o.fill(0.0);
    max.fill(f32::NEG_INFINITY);
    sum.fill(0.0);

    let first = a.first_key(a.pos + tokens.start);
    let end = a.pos + tokens.end; // one past the last key any row sees
    let mut k0 = first - first % KV_TILE;
    while k0 < end {
        let kt = KV_TILE.min(end - k0);
        k.fill(0.0);
        for tk in 0..kt {
            to_f32(a.k, (k0 + tk) * kv_dim + g * hd, row);
            for (dk, &x) in row.iter().enumerate() {
                k[dk * KV_TILE + tk] = x;
            }
        }
        p.fill(0.0);
        gemm(level, p, q, k, rows, hd, KV_TILE);

        for (r, scores) in p.chunks_exact_mut(KV_TILE).enumerate() {
            // Keys k0 + lo .. k0 + hi of this tile are visible from the row's position.
            let pos = a.pos + tokens.start + r / group;
            let lo = a.first_key(pos).saturating_sub(k0).min(KV_TILE);
            let hi = (pos + 1).saturating_sub(k0).min(KV_TILE);
            if lo >= hi {
                scores.fill(0.0);
                continue;
            }
            scores[..lo].fill(f32::NEG_INFINITY);
            scores[hi..].fill(f32::NEG_INFINITY);
            scores[lo..hi].iter_mut().for_each(|s| *s *= a.kq_scale);
            let tile_max = max_of(&scores[lo..hi]);
            let m_old = max[r];
            let m_new = m_old.max(tile_max);
            if m_new > m_old {
                let ms = (m_old - m_new).exp();
                o[r * hd..][..hd].iter_mut().for_each(|x| *x *= ms);
                sum[r] *= ms;
            }
            max[r] = m_new;
            sum[r] = (sum[r] as f64 + softmax_row(level, scores, m_new)) as f32;
        }

        v[kt * hd..].fill(0.0);
        for tk in 0..kt {
            to_f32(a.v, (k0 + tk) * kv_dim + g * hd, &mut v[tk * hd..][..hd]);
        }
        gemm(level, o, p, v, rows, KV_TILE, hd);
        k0 += KV_TILE;
    }

    for (tq, t) in tokens.enumerate() {
        let at = (t * nh + g * group) * hd;
        // SAFETY: each task owns the rows of its (token, KV head) pairs: `group * hd` values of
        // token `t` from head `g * group`, inside the output, written by no other task.
        let out = unsafe { std::slice::from_raw_parts_mut(dst.at(at), group * hd) };
        for (h, out) in out.chunks_exact_mut(hd).enumerate() {
            let r = tq * group + h;
            let inv = if sum[r] == 0.0 { 0.0 } else { 1.0 / sum[r] };
            out.iter_mut()
                .zip(&o[r * hd..][..hd])
                .for_each(|(d, &x)| *d = x * inv);
        }
    }
}

/// The maximum of `x` as ggml's `ggml_vec_max_f32` takes it (`b > a ? b : a`; any order gives
/// the same value, so eight running maxima let the compiler vectorise).
fn max_of(x: &[f32]) -> f32 {
    let max = |a: f32, b: f32| if b > a { b } else { a };
    let mut m = [f32::NEG_INFINITY; 8];
    let mut chunks = x.chunks_exact(8);
    for c in &mut chunks {
        for l in 0..8 {
            m[l] = max(m[l], c[l]);
        }
    }
    let tail = chunks
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |a, &b| max(a, b));
    m.iter().fold(tail, |a, &b| max(a, b))
}

/// `c += a * b` for row-major `a` (`m x k`), `b` (`k x n`) and `c` (`m x n`), each element an
/// FMA chain over `k` in ascending order (ggml's `simd_gemm`).
fn gemm(level: Level, c: &mut [f32], a: &[f32], b: &[f32], m: usize, k: usize, n: usize) {
    assert!(
        c.len() == m * n && a.len() == m * k && b.len() == k * n,
        "gemm: shapes"
    );
    #[cfg(target_arch = "x86_64")]
    if level != Level::Scalar {
        // SAFETY: every SIMD level implies AVX2 and FMA; the shapes were checked.
        unsafe { x86::gemm(c, a, b, m, k, n) };
        return;
    }
    gemm_scalar(c, a, b, m, k, n);
}

/// The scalar twin of [`gemm`] (also the column tail of the SIMD one).
fn gemm_scalar(c: &mut [f32], a: &[f32], b: &[f32], m: usize, k: usize, n: usize) {
    for i in 0..m {
        for j in 0..n {
            let mut acc = c[i * n + j];
            for kk in 0..k {
                acc = a[i * k + kk].mul_add(b[kk * n + j], acc);
            }
            c[i * n + j] = acc;
        }
    }
}

/// `x[i] = expf(x[i] - max)` with ggml's vector `expf`; returns the sum as ggml's
/// `ggml_vec_soft_max_f32` forms it: each 16 lanes reduced in f32 (halves 8, 4, 2, 1), the
/// partial sums added in f64. `x.len()` must be a multiple of 16.
fn softmax_row(level: Level, x: &mut [f32], max: f32) -> f64 {
    assert!(
        x.len().is_multiple_of(16),
        "softmax_row: {} values",
        x.len()
    );
    #[cfg(target_arch = "x86_64")]
    if level != Level::Scalar {
        // SAFETY: every SIMD level implies AVX2 and FMA.
        return unsafe { x86::softmax_row(x, max) };
    }
    softmax_row_scalar(x, max)
}

fn softmax_row_scalar(x: &mut [f32], max: f32) -> f64 {
    let mut sum = 0f64;
    for c in x.chunks_exact_mut(16) {
        c.iter_mut().for_each(|v| *v = activation::expf(*v - max));
        let mut r = [0f32; 8];
        for l in 0..8 {
            r[l] = c[l] + c[l + 8];
        }
        for width in [4, 2, 1] {
            for l in 0..width {
                r[l] += r[l + width];
            }
        }
        sum += r[0] as f64;
    }
    sum
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use crate::activation::x86::expf;
    use std::arch::x86_64::*;

    /// Round to nearest even, no exceptions (`_MM_FROUND_TO_NEAREST_INT`).
    const RNE: i32 = 0;

    /// [`super::exact_rows`] compiled for AVX2, FMA and F16C (its `mul_add` becomes an FMA
    /// instruction, the vector steps inline).
    ///
    /// # Safety
    /// The CPU must have AVX2, FMA and F16C.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn exact_rows(
        a: &super::AttentionInput<'_>,
        keys: &super::Keys<'_>,
        first: usize,
        out: &mut [f32],
    ) {
        // SAFETY: this function's features are the SIMD build's requirement.
        unsafe { super::exact_rows::<true>(a, keys, first, out) }
    }

    /// Eight f16 at `p` as f32 lanes.
    ///
    /// # Safety
    /// 16 bytes at `p` must be readable; F16C must be available.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn load_f16x8(p: *const u16) -> __m256 {
        // SAFETY: the caller guarantees 16 readable bytes.
        _mm256_cvtph_ps(unsafe { _mm_loadu_si128(p.cast()) })
    }

    /// [`super::dot_body`] with 8 ymm accumulators standing for ggml's 4 zmm ones (`a[2j]`,
    /// `a[2j + 1]` are the low and high halves of register `j`).
    ///
    /// # Safety
    /// The CPU must have AVX2, FMA and F16C; `q.len() == k.len()`, a multiple of 64.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn dot_body(q: &[f32], k: &[u16]) -> f32 {
        debug_assert!(q.len() == k.len() && q.len().is_multiple_of(64));
        let mut a = [_mm256_setzero_ps(); 8];
        for i in (0..q.len()).step_by(64) {
            for (j, acc) in a.iter_mut().enumerate() {
                // SAFETY: i + 8j + 8 <= q.len() == k.len().
                let (x, y) = unsafe {
                    (
                        _mm256_loadu_ps(q.as_ptr().add(i + 8 * j)),
                        load_f16x8(k.as_ptr().add(i + 8 * j)),
                    )
                };
                *acc = _mm256_fmadd_ps(x, y, *acc);
            }
        }
        // Registers r0..r3 are (a0, a1), (a2, a3), (a4, a5), (a6, a7): (r0 + r2) + (r1 + r3).
        let lo = _mm256_add_ps(_mm256_add_ps(a[0], a[4]), _mm256_add_ps(a[2], a[6]));
        let hi = _mm256_add_ps(_mm256_add_ps(a[1], a[5]), _mm256_add_ps(a[3], a[7]));
        // Halving: lanes l + 8 (the high half), then l + 4, l + 2, l + 1.
        hsum(_mm256_add_ps(lo, hi))
    }

    /// Lane 0 of the halving fold of 8 lanes: `l + 4`, then `l + 2`, then `l + 1`.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn hsum(s8: __m256) -> f32 {
        let s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps::<1>(s8));
        let s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
        let s1 = _mm_add_ss(s2, _mm_movehdup_ps(s2));
        _mm_cvtss_f32(s1)
    }

    /// The whole groups of 8 of [`super::mad_f16`]; returns how many elements were done.
    ///
    /// # Safety
    /// The CPU must have AVX2, FMA and F16C; `acc.len() == v.len()`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn mad(acc: &mut [f32], v: &[u16], s: f32) -> usize {
        let n = acc.len() - acc.len() % 8;
        let sv = _mm256_set1_ps(s);
        for i in (0..n).step_by(8) {
            // SAFETY: i + 8 <= n <= acc.len() == v.len().
            unsafe {
                let p = acc.as_mut_ptr().add(i);
                let r = _mm256_fmadd_ps(load_f16x8(v.as_ptr().add(i)), sv, _mm256_loadu_ps(p));
                _mm256_storeu_ps(p, _mm256_cvtph_ps(_mm256_cvtps_ph::<RNE>(r)));
            }
        }
        n
    }

    /// The whole groups of 8 of [`super::scale_f16`]; returns how many elements were done.
    ///
    /// # Safety
    /// The CPU must have AVX2, FMA and F16C.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn scale(acc: &mut [f32], s: f32) -> usize {
        let n = acc.len() - acc.len() % 8;
        let sv = _mm256_set1_ps(s);
        for i in (0..n).step_by(8) {
            // SAFETY: i + 8 <= n <= acc.len().
            unsafe {
                let p = acc.as_mut_ptr().add(i);
                let r = _mm256_mul_ps(_mm256_loadu_ps(p), sv);
                _mm256_storeu_ps(p, _mm256_cvtph_ps(_mm256_cvtps_ph::<RNE>(r)));
            }
        }
        n
    }

    /// [`super::gemm`]: blocks of 6 rows by 16 columns (12 accumulators, as ggml's AVX2
    /// `simd_gemm`), then single rows, then 8-column and scalar column tails.
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA; `c`, `a`, `b` hold `m * n`, `m * k`, `k * n` values.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn gemm(c: &mut [f32], a: &[f32], b: &[f32], m: usize, k: usize, n: usize) {
        let mut i = 0;
        while i + 6 <= m {
            // SAFETY: rows i..i + 6 exist; the caller's shapes.
            unsafe { row_block::<6>(c, a, b, i, k, n) };
            i += 6;
        }
        while i < m {
            // SAFETY: as above, for row i.
            unsafe { row_block::<1>(c, a, b, i, k, n) };
            i += 1;
        }
    }

    /// Rows `i..i + RM` of [`gemm`].
    ///
    /// # Safety
    /// As [`gemm`], and `i + RM <= m`.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn row_block<const RM: usize>(
        c: &mut [f32],
        a: &[f32],
        b: &[f32],
        i: usize,
        k: usize,
        n: usize,
    ) {
        let mut j = 0;
        while j + 16 <= n {
            // SAFETY: columns j..j + 16 exist in rows i..i + RM.
            unsafe { tile::<RM, 2>(c, a, b, i, j, k, n) };
            j += 16;
        }
        while j + 8 <= n {
            // SAFETY: columns j..j + 8 exist.
            unsafe { tile::<RM, 1>(c, a, b, i, j, k, n) };
            j += 8;
        }
        for ii in i..i + RM {
            for jj in j..n {
                let mut acc = c[ii * n + jj];
                for kk in 0..k {
                    acc = a[ii * k + kk].mul_add(b[kk * n + jj], acc);
                }
                c[ii * n + jj] = acc;
            }
        }
    }

    /// `RM` rows by `RN` vectors of 8 columns from `(i, j)`, accumulated in registers.
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA; rows `i..i + RM` and columns `j..j + 8 * RN` are inside
    /// the `m x n` output, `a` is `m x k` and `b` is `k x n`.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn tile<const RM: usize, const RN: usize>(
        c: &mut [f32],
        a: &[f32],
        b: &[f32],
        i: usize,
        j: usize,
        k: usize,
        n: usize,
    ) {
        let (cp, ap, bp) = (c.as_mut_ptr(), a.as_ptr(), b.as_ptr());
        let mut acc = [[_mm256_setzero_ps(); RN]; RM];
        for (ii, row) in acc.iter_mut().enumerate() {
            for (r, v) in row.iter_mut().enumerate() {
                // SAFETY: the caller's bounds.
                *v = unsafe { _mm256_loadu_ps(cp.add((i + ii) * n + j + 8 * r)) };
            }
        }
        for kk in 0..k {
            let mut bv = [_mm256_setzero_ps(); RN];
            for (r, v) in bv.iter_mut().enumerate() {
                // SAFETY: the caller's bounds.
                *v = unsafe { _mm256_loadu_ps(bp.add(kk * n + j + 8 * r)) };
            }
            for (ii, row) in acc.iter_mut().enumerate() {
                // SAFETY: the caller's bounds.
                let x = _mm256_set1_ps(unsafe { *ap.add((i + ii) * k + kk) });
                for (v, &w) in row.iter_mut().zip(&bv) {
                    *v = _mm256_fmadd_ps(x, w, *v);
                }
            }
        }
        for (ii, row) in acc.iter().enumerate() {
            for (r, &v) in row.iter().enumerate() {
                // SAFETY: the caller's bounds.
                unsafe { _mm256_storeu_ps(cp.add((i + ii) * n + j + 8 * r), v) };
            }
        }
    }

    /// [`super::softmax_row_scalar`] on two registers of 8 lanes per 16 values.
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA; `x.len()` is a multiple of 16.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn softmax_row(x: &mut [f32], max: f32) -> f64 {
        let m = _mm256_set1_ps(max);
        let mut sum = 0f64;
        for c in x.chunks_exact_mut(16) {
            let p = c.as_mut_ptr();
            // SAFETY: `c` holds 16 values; the caller guarantees AVX2 and FMA.
            let (lo, hi) = unsafe {
                let lo = expf(_mm256_sub_ps(_mm256_loadu_ps(p), m));
                let hi = expf(_mm256_sub_ps(_mm256_loadu_ps(p.add(8)), m));
                _mm256_storeu_ps(p, lo);
                _mm256_storeu_ps(p.add(8), hi);
                (lo, hi)
            };
            sum += hsum(_mm256_add_ps(lo, hi)) as f64;
        }
        sum
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic stream of values spread over several binades, rounded to f16.
    fn values(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let u = (s >> 8) as f32 / (1u32 << 24) as f32 - 0.5;
                round_f16(u * 8.0 * ((s & 7) as f32 + 1.0))
            })
            .collect()
    }

    fn bits(x: &[f32]) -> Vec<u16> {
        x.iter().map(|&v| f16::from_f32(v).to_bits()).collect()
    }

    fn simd() -> bool {
        active_level() != Level::Scalar
    }

    #[test]
    fn simd_dot_equals_scalar_twin() {
        for n in [64, 128, 256, 64 * 7] {
            let (q, k) = (values(n, 1), bits(&values(n, 2)));
            #[cfg(target_arch = "x86_64")]
            if simd() {
                // SAFETY: the level implies AVX2, FMA and F16C.
                let simd = unsafe { x86::dot_body(&q, &k) };
                assert_eq!(simd.to_bits(), dot_body(&q, &k).to_bits(), "n={n}");
            }
            let exact: f64 = q
                .iter()
                .zip(&k)
                .map(|(a, &b)| *a as f64 * f16::from_bits(b).to_f64())
                .sum();
            assert!(
                (dot_body(&q, &k) as f64 - exact).abs() <= 1e-4 * n as f64,
                "n={n}"
            );
        }
    }

    #[test]
    fn dot_adds_the_tail_past_whole_steps() {
        let (q, k) = (values(70, 3), bits(&values(70, 4)));
        let tail: f64 = (64..70)
            .map(|i| (q[i] * f16::from_bits(k[i]).to_f32()) as f64)
            .sum();
        let want = (dot_body(&q[..64], &k[..64]) as f64 + tail) as f32;
        // SAFETY: the scalar build needs no CPU feature.
        assert_eq!(
            unsafe { dot_f16::<false>(&q, &k) }.to_bits(),
            want.to_bits()
        );
    }

    #[test]
    fn simd_mad_and_scale_equal_scalar_twins() {
        let v = bits(&values(37, 5));
        let start = values(37, 6);
        let (mut got, mut scalar) = (start.clone(), start);
        // SAFETY: the SIMD build runs only where the level implies AVX2, FMA and F16C.
        unsafe {
            if simd() {
                mad_f16::<true>(&mut got, &v, 0.3);
                scale_f16::<true>(&mut got, 0.7);
            } else {
                mad_f16::<false>(&mut got, &v, 0.3);
                scale_f16::<false>(&mut got, 0.7);
            }
            mad_f16::<false>(&mut scalar, &v, 0.3);
            scale_f16::<false>(&mut scalar, 0.7);
        }
        assert_eq!(bits(&got), bits(&scalar));
        assert!(scalar.iter().all(|&x| round_f16(x) == x));
    }

    #[test]
    fn simd_gemm_and_softmax_equal_scalar_twins() {
        for (m, k, n) in [(13, 64, 64), (6, 256, 64), (7, 64, 40), (1, 3, 5)] {
            let (a, b) = (values(m * k, 7), values(k * n, 8));
            let c0: Vec<f32> = values(m * n, 9).iter().map(|x| x * 0.01).collect();
            let (mut simd, mut scalar) = (c0.clone(), c0);
            gemm(active_level(), &mut simd, &a, &b, m, k, n);
            gemm_scalar(&mut scalar, &a, &b, m, k, n);
            assert_eq!(bits32(&simd), bits32(&scalar), "{m}x{k}x{n}");
        }
        let mut x: Vec<f32> = values(64, 10).iter().map(|v| v * 3.0).collect();
        x[5] = f32::NEG_INFINITY;
        x[40] = -1e6;
        let max = max_of(&x);
        let (mut simd, mut scalar) = (x.clone(), x);
        let s1 = softmax_row(active_level(), &mut simd, max);
        let s2 = softmax_row_scalar(&mut scalar, max);
        assert_eq!(s1.to_bits(), s2.to_bits());
        assert_eq!(bits32(&simd), bits32(&scalar));
        assert_eq!(scalar[5], 0.0);
        assert!((s2 - scalar.iter().map(|&v| v as f64).sum::<f64>()).abs() < 1e-5 * s2);
    }

    fn bits32(x: &[f32]) -> Vec<u32> {
        x.iter().map(|v| v.to_bits()).collect()
    }

    /// A random attention problem: `n` queries at `pos`, the cache filled up to `pos + n`.
    struct Problem {
        q: Vec<f32>,
        k: Vec<u16>,
        v: Vec<u16>,
        nh: usize,
        nkv: usize,
        hd: usize,
        pos: usize,
    }

    impl Problem {
        fn new(n: usize, pos: usize, nh: usize, nkv: usize, hd: usize) -> Problem {
            let kv = (pos + n) * nkv * hd;
            Problem {
                q: values(n * nh * hd, 11).iter().map(|x| x * 0.1).collect(),
                k: bits(&values(kv, 12).iter().map(|x| x * 0.1).collect::<Vec<_>>()),
                v: bits(&values(kv, 13)),
                nh,
                nkv,
                hd,
                pos,
            }
        }

        fn input(&self, window: usize) -> AttentionInput<'_> {
            AttentionInput {
                q: &self.q,
                k: KvRows::F16(&self.k),
                v: KvRows::F16(&self.v),
                n_head: self.nh,
                n_head_kv: self.nkv,
                head_dim: self.hd,
                pos: self.pos,
                window,
                q_scale: 1.0,
                kq_scale: 1.0 / (self.hd as f32).sqrt(),
            }
        }

        fn run(&self, pool: &ThreadPool, level: Level, window: usize, tiled: bool) -> Vec<f32> {
            let mut out = vec![f32::NAN; self.q.len()];
            attention_at(level, pool, &self.input(window), &mut out, tiled);
            out
        }

        /// Softmax attention in f64, with the queries and keys as the per-query path sees them.
        fn reference(&self, window: usize) -> Vec<f64> {
            let a = self.input(window);
            let (nh, hd, kv_dim, group) = (self.nh, self.hd, a.kv_dim(), a.group());
            let f = |x: u16| f16::from_bits(x).to_f64();
            let mut out = Vec::new();
            for t in 0..a.n_tokens() {
                for h in 0..nh {
                    let p = self.pos + t;
                    let q = &self.q[(t * nh + h) * hd..][..hd];
                    let koff = (h / group) * hd;
                    let keys: Vec<usize> = (a.first_key(p)..=p).collect();
                    let s: Vec<f64> = keys
                        .iter()
                        .map(|&j| {
                            let k = &self.k[j * kv_dim + koff..][..hd];
                            q.iter().zip(k).map(|(&x, &y)| x as f64 * f(y)).sum::<f64>()
                                * a.kq_scale as f64
                        })
                        .collect();
                    let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let w: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
                    let total: f64 = w.iter().sum();
                    for d in 0..hd {
                        let acc: f64 = keys
                            .iter()
                            .zip(&w)
                            .map(|(&j, w)| w * f(self.v[j * kv_dim + koff + d]))
                            .sum();
                        out.push(acc / total);
                    }
                }
            }
            out
        }
    }

    /// The largest difference from `want`, relative to the largest `want` value.
    fn rel_error(got: &[f32], want: &[f64]) -> f64 {
        let scale = want.iter().fold(0f64, |m, x| m.max(x.abs()));
        got.iter()
            .zip(want)
            .fold(0f64, |m, (&g, w)| m.max((g as f64 - w).abs()))
            / scale
    }

    /// GQA groups of 1, 2 and 4; head sizes 64 and 128; prompts of one and of several query
    /// blocks, from position 0 and after cached positions; sliding windows shorter and longer
    /// than 64 keys: `(n, pos, n_head, n_head_kv, head_dim, window)`.
    const CASES: [(usize, usize, usize, usize, usize, usize); 5] = [
        (100, 0, 4, 2, 64, 0),
        (64, 37, 2, 2, 128, 0),
        (130, 5, 4, 1, 64, 50),
        (70, 100, 3, 3, 64, 90),
        (9, 20, 4, 2, 64, 0),
    ];
    /// The per-query path rounds the query and its running value sum to f16, so it is off by a
    /// few f16 roundings of the largest output (up to 2.4e-3 seen on these cases).
    const EXACT_VS_F64: f64 = 5e-3;

    #[test]
    fn per_query_path_is_close_to_f64_and_the_same_at_every_level() {
        let (pool, one) = (ThreadPool::new(3), ThreadPool::new(1));
        for (n, pos, nh, nkv, hd, window) in CASES {
            let pr = Problem::new(n, pos, nh, nkv, hd);
            let exact = pr.run(&pool, active_level(), window, false);
            let case = format!("n={n} pos={pos} heads={nh}/{nkv} hd={hd} window={window}");
            let err = rel_error(&exact, &pr.reference(window));
            assert!(err < EXACT_VS_F64, "{case}: {err}");
            // The same bits on any number of threads and at the scalar level.
            let scalar = pr.run(&one, Level::Scalar, window, false);
            assert_eq!(bits32(&scalar), bits32(&exact), "{case}");
        }
    }

    /// The tiled path against f64 softmax attention (up to 6.3e-7 seen): it accumulates in f32.
    const TILED_VS_F64: f64 = 1e-5;
    /// The tiled path against the per-query path: the latter's f16 error, [`EXACT_VS_F64`].
    const TILED_VS_EXACT: f64 = EXACT_VS_F64;

    #[test]
    fn tiled_path_agrees_with_f64_and_the_per_query_path() {
        let (pool, one) = (ThreadPool::new(3), ThreadPool::new(1));
        for (n, pos, nh, nkv, hd, window) in CASES {
            let pr = Problem::new(n, pos, nh, nkv, hd);
            let tiled = pr.run(&pool, active_level(), window, true);
            let case = format!("n={n} pos={pos} heads={nh}/{nkv} hd={hd} window={window}");
            let err = rel_error(&tiled, &pr.reference(window));
            assert!(err < TILED_VS_F64, "{case}: {err}");
            let exact = pr.run(&pool, active_level(), window, false);
            let exact: Vec<f64> = exact.iter().map(|&x| x as f64).collect();
            let err = rel_error(&tiled, &exact);
            assert!(err < TILED_VS_EXACT, "{case}: {err}");
            let scalar = pr.run(&one, Level::Scalar, window, true);
            assert_eq!(bits32(&scalar), bits32(&tiled), "{case}");
        }
    }

    /// A [`Problem`]'s keys and values as a Q8_0 cache stores them (the activation quantizer,
    /// llama.cpp's x86 `quantize_row_q8_0`, which its CPU backend writes the cache with).
    fn to_q8_0(x: &[u16]) -> Vec<u8> {
        let mut f = vec![0f32; x.len()];
        x.reinterpret_cast::<f16>().convert_to_f32_slice(&mut f);
        let mut q = vec![0u8; q8_bytes(x.len())];
        crate::formats::quantize_activations(GgmlType::Q8_0, &f, &mut q);
        q
    }

    /// The cache types of a run: (keys in Q8_0, values in Q8_0).
    const Q8_MIXES: [(bool, bool); 3] = [(true, true), (true, false), (false, true)];

    impl Problem {
        /// [`Problem::run`] with the keys and/or values in Q8_0.
        fn run_q8(
            &self,
            pool: &ThreadPool,
            level: Level,
            (qk, qv): (bool, bool),
            window: usize,
            tiled: bool,
        ) -> Vec<f32> {
            let (k8, v8) = (to_q8_0(&self.k), to_q8_0(&self.v));
            let mut a = self.input(window);
            if qk {
                a.k = KvRows::Q8_0(&k8);
            }
            if qv {
                a.v = KvRows::Q8_0(&v8);
            }
            let mut out = vec![f32::NAN; self.q.len()];
            attention_at(level, pool, &a, &mut out, tiled);
            out
        }
    }

    #[test]
    fn hadamard_is_sylvesters_orthonormal_matrix() {
        for n in [1, 2, 64, 256] {
            let x = values(3 * n, 21);
            let mut y = x.clone();
            hadamard(&mut y, n);
            for (xr, yr) in x.chunks_exact(n).zip(y.chunks_exact(n)) {
                for (i, &yi) in yr.iter().enumerate() {
                    let want: f64 = xr
                        .iter()
                        .enumerate()
                        .map(|(j, &xj)| {
                            let sign = if (i & j).count_ones() % 2 == 0 {
                                1.0
                            } else {
                                -1.0
                            };
                            sign * xj as f64
                        })
                        .sum::<f64>()
                        / (n as f64).sqrt();
                    assert!(
                        (yi as f64 - want).abs() < 1e-4 * (1.0 + want.abs()),
                        "n={n}"
                    );
                }
            }
            // Its own inverse, and it keeps dot products.
            let mut back = y.clone();
            hadamard(&mut back, n);
            let close = |a: f32, b: f32| (a - b).abs() < 1e-4 * (1.0 + b.abs());
            assert!(back.iter().zip(&x).all(|(&a, &b)| close(a, b)), "n={n}");
            let dot = |a: &[f32]| a.iter().map(|v| v * v).sum::<f32>();
            assert!(close(dot(&y), dot(&x)), "n={n}");
        }
    }

    /// A Q8_0 cache against the f16 one on the same data and path, relative to the largest
    /// output: Q8_0 keeps 8 bits per value against f16's 11, so a few steps of 1/127 of each
    /// block's largest value remain. Up to 1.4e-2 was seen with Q8_0 keys query by query (where
    /// the query is quantized to 8 bits too), 1.1e-2 tiled, 4.7e-3 with only the values in Q8_0.
    const Q8_0_VS_F16: f64 = 3e-2;

    #[test]
    fn q8_0_cache_is_close_to_the_f16_cache_on_both_paths() {
        let (pool, one) = (ThreadPool::new(3), ThreadPool::new(1));
        let decoding = [(1, 40, 4, 2, 64, 0), (1, 300, 2, 1, 128, 0)];
        for &(n, pos, nh, nkv, hd, window) in CASES.iter().chain(&decoding) {
            let pr = Problem::new(n, pos, nh, nkv, hd);
            for tiled in [false, true] {
                let f16: Vec<f64> = pr
                    .run(&pool, active_level(), window, tiled)
                    .iter()
                    .map(|&x| x as f64)
                    .collect();
                for mix in Q8_MIXES {
                    let case = format!(
                        "n={n} pos={pos} heads={nh}/{nkv} hd={hd} window={window} \
                         tiled={tiled} q8_0 (k, v)={mix:?}"
                    );
                    let q8 = pr.run_q8(&pool, active_level(), mix, window, tiled);
                    let err = rel_error(&q8, &f16);
                    assert!(err < Q8_0_VS_F16, "{case}: {err}");
                    // Rows are independent: the same bits on any number of threads.
                    let single = pr.run_q8(&one, active_level(), mix, window, tiled);
                    assert_eq!(bits32(&single), bits32(&q8), "{case}");
                    let scalar = pr.run_q8(&one, Level::Scalar, mix, window, tiled);
                    if tiled {
                        // Tiles dequantize with the scalar code at every level.
                        assert_eq!(bits32(&scalar), bits32(&q8), "{case}");
                    } else {
                        let err = rel_error(&scalar, &f16);
                        assert!(err < Q8_0_VS_F16, "{case} scalar: {err}");
                    }
                }
            }
        }
    }

    #[test]
    #[should_panic(expected = "whole 32-value blocks")]
    fn a_q8_0_cache_needs_heads_of_whole_blocks() {
        let pr = Problem::new(2, 0, 2, 1, 48);
        pr.run_q8(&ThreadPool::new(1), Level::Scalar, (true, true), 0, false);
    }

    #[test]
    fn the_batch_size_chooses_the_path() {
        let pool = ThreadPool::new(2);
        for n in [TILED_MIN_QUERIES - 1, TILED_MIN_QUERIES] {
            let pr = Problem::new(n, 3, 2, 1, 64);
            let (k8, v8) = (to_q8_0(&pr.k), to_q8_0(&pr.v));
            for (qk, qv) in Q8_MIXES.into_iter().chain([(false, false)]) {
                let mut a = pr.input(0);
                if qk {
                    a.k = KvRows::Q8_0(&k8);
                }
                if qv {
                    a.v = KvRows::Q8_0(&v8);
                }
                let mut out = vec![0f32; pr.q.len()];
                attention(&pool, &a, &mut out);
                let tiled = n >= TILED_MIN_QUERIES;
                let want = pr.run_q8(&pool, active_level(), (qk, qv), 0, tiled);
                assert_eq!(
                    bits32(&out),
                    bits32(&want),
                    "n={n} q8_0 (k, v)=({qk}, {qv})"
                );
            }
        }
    }
}
