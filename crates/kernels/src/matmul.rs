//! Weight matrices and the quantized matrix multiply.
//!
//! [`matmul`] computes `out[t * rows + r] = dot(w.row(r), x[t])` for every token `t`:
//!
//! 1. The activations are quantized once per call to the weight type's activation type
//!    ([`formats::activation_type`]: Q8_0, Q8_1, Q8_K, or kept as f32 for float weights), in parallel
//!    when there are many tokens, into a scratch buffer reused across calls, and laid out for the
//!    chosen kernel ([`Activations`]).
//! 2. The weight rows are cut into chunks that the pool's threads claim atomically (so a thread
//!    slowed down by the other tenants of a small VM just takes fewer chunks, and one that is not
//!    scheduled at all is not waited for). A chunk runs every token over its rows, 4 tokens per
//!    pass where the kernel has a 4-token variant ([`DotKernel::dot4`]): the chunk's weights stay
//!    in L2 (at most ~128 KiB for batches) while the tokens stream past, and a token's quantized
//!    activations (a few KiB) stay in L1.
//!
//! [`matmul_multi`] does the same for several matrices with the same input in one dispatch.

use crate::formats;
use crate::pool::{SharedMut, ThreadPool};
use crate::simd::{self, ActRow, ActTile, Activations, DotKernel, Level, GEMM_ROWS, GEMM_TOKENS};
use crate::KernelError;
use gguf::GgmlType;
use std::cell::RefCell;
use std::ops::Range;

/// A row-major weight matrix viewed in place: `rows` rows of `cols` elements of type `ty`
/// (`cols` is GGUF's `ne[0]`, the contiguous dimension).
#[derive(Clone, Copy, Debug)]
pub struct Matrix<'a> {
    pub ty: GgmlType,
    pub rows: usize,
    pub cols: usize,
    pub data: &'a [u8],
    /// The whole groups of [`GEMM_ROWS`] rows in the tile kernels' layout, made ahead of time
    /// by [`pack_matrix`] ([`Matrix::with_packed`]); `None`: packed on each call.
    packed: Option<&'a [u8]>,
}

impl<'a> Matrix<'a> {
    /// Checks that `ty` is supported, `cols` is whole blocks, and `data` is exactly
    /// `rows` rows of `cols` elements.
    pub fn new(
        ty: GgmlType,
        rows: usize,
        cols: usize,
        data: &'a [u8],
    ) -> Result<Self, KernelError> {
        if !formats::is_supported(ty) {
            return Err(KernelError::UnsupportedType(ty));
        }
        let block = ty.block_size();
        if !cols.is_multiple_of(block) {
            return Err(KernelError::RaggedRow { ty, cols, block });
        }
        let expected =
            rows.checked_mul(cols / block * ty.type_size())
                .ok_or(KernelError::SizeMismatch {
                    what: "matrix data",
                    expected: usize::MAX,
                    got: data.len(),
                })?;
        if data.len() != expected {
            return Err(KernelError::SizeMismatch {
                what: "matrix data",
                expected,
                got: data.len(),
            });
        }
        Ok(Matrix {
            ty,
            rows,
            cols,
            data,
            packed: None,
        })
    }

    /// This matrix with its rows also in the tile kernels' layout: `packed` is what
    /// [`pack_matrix`] made of it. Batches of tokens then skip packing the weights on each call
    /// (a decode step of several sequences spends about as long packing as multiplying).
    pub fn with_packed(self, packed: &'a [u8]) -> Result<Self, KernelError> {
        let expected = packed_bytes(simd::active_level(), &self);
        if packed.len() != expected {
            return Err(KernelError::SizeMismatch {
                what: "packed matrix",
                expected,
                got: packed.len(),
            });
        }
        Ok(Matrix {
            packed: Some(packed),
            ..self
        })
    }

    /// Bytes of one row.
    pub fn row_bytes(&self) -> usize {
        self.cols / self.ty.block_size() * self.ty.type_size()
    }

    /// The bytes of row `r`.
    ///
    /// # Panics
    /// If `r >= rows`.
    pub fn row(&self, r: usize) -> &'a [u8] {
        assert!(r < self.rows, "row {r} of a {}-row matrix", self.rows);
        let rb = self.row_bytes();
        &self.data[r * rb..(r + 1) * rb]
    }

    /// Dequantizes row `r` into `out` (exactly `cols` long); used for embedding lookups.
    ///
    /// # Panics
    /// If `r >= rows` or `out.len() != cols`.
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        assert_eq!(out.len(), self.cols, "dequantize_row output length");
        formats::dequantize_row(self.ty, self.row(r), out)
            .expect("Matrix::new checked the type and sizes");
    }
}

/// `out[t * w.rows + r] = dot(w.row(r), x[t * w.cols..(t + 1) * w.cols])` for `t` in
/// `0..n_tokens`, at the [`simd::active_level`], spread over `pool`.
///
/// Only the first `n_tokens * w.cols` elements of `x` and `n_tokens * w.rows` of `out` are used.
///
/// # Panics
/// If `x` or `out` is too short.
pub fn matmul(pool: &ThreadPool, w: &Matrix, x: &[f32], n_tokens: usize, out: &mut [f32]) {
    matmul_at(simd::active_level(), pool, w, x, n_tokens, out)
}

thread_local! {
    /// Quantized activations of the last call, kept to avoid allocations per matmul.
    static SCRATCH: RefCell<Activations> = RefCell::new(Activations::new());
}

/// [`matmul`] at an explicit instruction-set level (tests and A/B benchmarks).
///
/// # Panics
/// If `level` is not available on this CPU, or `x` / `out` is too short.
pub fn matmul_at(
    level: Level,
    pool: &ThreadPool,
    w: &Matrix,
    x: &[f32],
    n_tokens: usize,
    out: &mut [f32],
) {
    let (rows, cols) = (w.rows, w.cols);
    assert!(
        x.len() >= n_tokens * cols,
        "matmul: {} activations for {n_tokens} tokens of {cols}",
        x.len()
    );
    assert!(
        out.len() >= n_tokens * rows,
        "matmul: output of {} for {n_tokens} tokens of {rows}",
        out.len()
    );
    if n_tokens == 0 || rows == 0 {
        return;
    }
    let kernel = DotKernel::for_batch(level, w.ty, n_tokens);
    let act_ty = formats::activation_type(w.ty).expect("Matrix::new checked the type");

    if act_ty == GgmlType::F32 && cfg!(target_endian = "little") {
        // Float weights take the f32 activations as they are: on a little-endian machine the
        // in-memory bytes already are the "raw LE f32" activation format.
        // SAFETY: any f32 bit pattern is valid bytes; u8 has no alignment requirement.
        let bytes =
            unsafe { std::slice::from_raw_parts(x.as_ptr().cast::<u8>(), n_tokens * cols * 4) };
        run_rows(pool, w, &kernel, Source::Raw(bytes, cols), n_tokens, out);
        return;
    }

    // Take the buffers out of the thread-local so a nested call (from inside a pool job) gets
    // its own instead of a RefCell panic.
    let mut acts = SCRATCH.with(|s| std::mem::take(&mut *s.borrow_mut()));
    acts.quantize(&kernel, x, cols, n_tokens, pool);
    run_rows(pool, w, &kernel, Source::Quantized(&acts), n_tokens, out);
    SCRATCH.with(|s| *s.borrow_mut() = acts);
}

/// Bytes of [`pack_matrix`]'s layout of `m` (0 when it makes none).
pub fn packed_size(m: &Matrix) -> usize {
    packed_bytes(simd::active_level(), m)
}

/// Bytes of [`pack_matrix`]'s layout of `m` at `level` (0 when it makes none).
fn packed_bytes(level: Level, m: &Matrix) -> usize {
    let kernel = DotKernel::new(level, m.ty);
    if !kernel.has_gemm() {
        return 0;
    }
    kernel.packed_len(m.cols) * (m.rows / GEMM_ROWS)
}

/// The whole groups of [`GEMM_ROWS`] rows of `m` in the layout of the tile kernels at
/// [`simd::active_level`], one group after the other, for [`Matrix::with_packed`]; `None` where
/// no tile kernel reads such a layout (types without one, or a matrix of fewer rows). It costs
/// memory (the codes unpacked to bytes: about 1.06 bytes a weight for the 32-element types) to save
/// the packing of every batched call. The work is split over `threads` threads.
pub fn pack_matrix(m: &Matrix, threads: usize) -> Option<Vec<u8>> {
    let level = simd::active_level();
    let total = packed_bytes(level, m);
    if total == 0 {
        return None;
    }
    let kernel = DotKernel::new(level, m.ty);
    let groups = m.rows / GEMM_ROWS;
    let group_bytes = total / groups;
    let mut out = vec![0u8; total];
    let per_thread = groups.div_ceil(threads.max(1)) * group_bytes;
    std::thread::scope(|s| {
        for (i, part) in out.chunks_mut(per_thread).enumerate() {
            let kernel = &kernel;
            s.spawn(move || {
                let mut one = Vec::with_capacity(group_bytes);
                for (j, dst) in part.chunks_exact_mut(group_bytes).enumerate() {
                    let r0 = (i * per_thread / group_bytes + j) * GEMM_ROWS;
                    kernel.pack(std::array::from_fn(|k| m.row(r0 + k)), m.cols, &mut one);
                    // Panics (rather than mis-slicing) should `packed_len` disagree with the packer.
                    dst.copy_from_slice(&one);
                }
            });
        }
    });
    Some(out)
}

/// Rows per work chunk: about 8 chunks per thread for balance, at least 16 rows (amortizes the
/// atomic claim), at most 256 rows; with several tokens also at most ~128 KiB of weights (in
/// whole tiles of [`GEMM_ROWS`]), so a chunk stays in L2 while the tokens stream past it.
fn chunk_rows(rows: usize, row_bytes: usize, n_threads: usize, n_tokens: usize) -> usize {
    let mut c = if n_threads == 1 {
        rows
    } else {
        rows.div_ceil(8 * n_threads)
            .clamp(16, 256)
            .next_multiple_of(8)
    };
    if n_tokens > 1 {
        // Whole tiles of rows, so no chunk ends in a ragged tail.
        let fit = (128 << 10) / row_bytes.max(1);
        c = c.min(fit - fit % GEMM_ROWS).max(GEMM_ROWS);
    }
    c
}

/// Token tiles per packing of a tile of weight rows (see [`run_chunk`]).
const PACKED_TILES: usize = 8;

/// Where a matmul's activation rows come from.
#[derive(Clone, Copy)]
enum Source<'a> {
    /// f32 activations as their bytes, `cols` per token (float weights).
    Raw(&'a [u8], usize),
    /// Quantized (and maybe prepared) activations.
    Quantized(&'a Activations),
}

impl<'a> Source<'a> {
    fn row(self, t: usize) -> ActRow<'a> {
        match self {
            Source::Raw(bytes, cols) => ActRow::plain(&bytes[t * cols * 4..(t + 1) * cols * 4]),
            Source::Quantized(a) => a.row(t),
        }
    }
}

/// The dot loop over row chunks of one matrix.
fn run_rows(
    pool: &ThreadPool,
    w: &Matrix,
    kernel: &DotKernel,
    act: Source<'_>,
    n_tokens: usize,
    out: &mut [f32],
) {
    let dst = SharedMut(out.as_mut_ptr());
    let chunk = chunk_rows(w.rows, w.row_bytes(), pool.n_threads(), n_tokens);
    pool.for_each_chunk(w.rows, chunk, &|rs| {
        // SAFETY: `out` holds n_tokens * rows elements (checked by the caller), chunks are
        // disjoint, and `out` outlives the pool call.
        unsafe { run_chunk(w, kernel, act, n_tokens, rs, dst) }
    });
}

/// Rows `rs` of `w` for every token: tokens in tiles of [`GEMM_TOKENS`] x [`GEMM_ROWS`] rows
/// where the kernel has a tile kernel, then in groups of 4 (one pass over the rows per group,
/// each weight row unpacked once per group), then one by one.
///
/// # Safety
/// `dst` must point to `n_tokens * w.rows` writable f32 that no other thread writes at the
/// indices `t * w.rows + r` for `r` in `rs`.
unsafe fn run_chunk(
    w: &Matrix,
    kernel: &DotKernel,
    src: Source<'_>,
    n_tokens: usize,
    rs: Range<usize>,
    dst: SharedMut<f32>,
) {
    let (rows, cols) = (w.rows, w.cols);
    let act = |t: usize| src.row(t);
    let mut t = 0;
    if let (true, Source::Quantized(acts)) = (kernel.has_gemm(), src) {
        let tiles = acts.tiles();
        let full = rs.start + (rs.len() - rs.len() % GEMM_ROWS);
        let mut packed = Vec::new();
        let prepacked = w.packed.filter(|_| kernel.has_gemm());
        // Up to PACKED_TILES token tiles per packing of 8 rows: their activations stay in L2
        // while the packed rows (a few KiB) stay in L1.
        for g0 in (0..tiles).step_by(PACKED_TILES) {
            // Made once here: a tile is 8 row views, as costly as a small gemm to build.
            let group: Vec<(usize, ActTile)> = (g0..(g0 + PACKED_TILES).min(tiles))
                .map(|g| (g, acts.tile(g)))
                .collect();
            for r0 in (rs.start..full).step_by(GEMM_ROWS) {
                let wr = std::array::from_fn(|k| w.row(r0 + k));
                let p: &[u8] = match prepacked {
                    // Chunks start on whole groups of rows (see `chunk_rows`).
                    Some(all) => {
                        let size = all.len() / (rows / GEMM_ROWS);
                        &all[r0 / GEMM_ROWS * size..]
                    }
                    None => {
                        kernel.pack(wr, cols, &mut packed);
                        &packed
                    }
                };
                for (g, tile) in &group {
                    let g = *g;
                    let v = kernel.gemm(wr, p, tile, cols);
                    // A padded last tile's extra tokens are dropped.
                    let real = (n_tokens - g * GEMM_TOKENS).min(GEMM_TOKENS);
                    for (j, vt) in v.iter().enumerate().take(real) {
                        for (k, &x) in vt.iter().enumerate() {
                            // SAFETY: (g * 8 + j, r0 + k) is ours per the contract.
                            unsafe { dst.at((g * GEMM_TOKENS + j) * rows + r0 + k).write(x) };
                        }
                    }
                }
            }
            // The last rows that make no whole tile, 4 tokens at a time (same bits).
            for (g, tile) in &group {
                let (g, a) = (*g, &tile.rows);
                for r in full..rs.end {
                    for t0 in [0, 4] {
                        let v = kernel.dot4(
                            w.row(r),
                            [&a[t0], &a[t0 + 1], &a[t0 + 2], &a[t0 + 3]],
                            cols,
                        );
                        for (j, x) in v.into_iter().enumerate() {
                            if g * GEMM_TOKENS + t0 + j < n_tokens {
                                // SAFETY: as above.
                                unsafe { dst.at((g * GEMM_TOKENS + t0 + j) * rows + r).write(x) };
                            }
                        }
                    }
                }
            }
        }
        t = (tiles * GEMM_TOKENS).min(n_tokens);
    }
    if kernel.has_dot4() {
        while t + 4 <= n_tokens {
            let a = [act(t), act(t + 1), act(t + 2), act(t + 3)];
            for r in rs.clone() {
                let v = kernel.dot4(w.row(r), [&a[0], &a[1], &a[2], &a[3]], cols);
                for (k, v) in v.into_iter().enumerate() {
                    // SAFETY: (t + k, r) is ours per the contract.
                    unsafe { dst.at((t + k) * rows + r).write(v) };
                }
            }
            t += 4;
        }
    }
    for t in t..n_tokens {
        let a = act(t);
        for r in rs.clone() {
            let v = kernel.dot(w.row(r), &a, cols);
            // SAFETY: (t, r) is ours per the contract.
            unsafe { dst.at(t * rows + r).write(v) };
        }
    }
}

thread_local! {
    /// Quantized activations of the last [`matmul_multi`] call, one per activation layout.
    static MULTI_SCRATCH: RefCell<Vec<Activations>> = const { RefCell::new(Vec::new()) };
}

/// Several matrices applied to the same activations (e.g. the Q, K and V projections, or the
/// gate and up projections): `outs[i][t * ws[i].rows + r] = dot(ws[i].row(r), x[t])`.
///
/// Equivalent to one [`matmul`] per matrix, but the activations are quantized once per
/// activation layout (not once per matrix) and all the rows run in one pool dispatch, which
/// balances small matrices better and synchronizes once. Every matrix must have the same `cols`.
///
/// # Panics
/// If `ws` and `outs` differ in length, the `cols` differ, or `x` / an output is too short.
pub fn matmul_multi(
    pool: &ThreadPool,
    ws: &[Matrix],
    x: &[f32],
    n_tokens: usize,
    outs: &mut [&mut [f32]],
) {
    matmul_multi_at(simd::active_level(), pool, ws, x, n_tokens, outs)
}

/// [`matmul_multi`] summing every dot in the order llama.cpp uses for a batch of
/// `order_tokens` tokens rather than `n_tokens` (see [`DotKernel::for_batch`]). Continuous
/// batching passes 1 for a decode step of several sequences, one token each, so that each
/// sequence gets the bits it would get alone.
pub fn matmul_multi_ordered(
    pool: &ThreadPool,
    ws: &[Matrix],
    x: &[f32],
    n_tokens: usize,
    order_tokens: usize,
    outs: &mut [&mut [f32]],
) {
    multi(
        simd::active_level(),
        pool,
        ws,
        x,
        n_tokens,
        order_tokens,
        outs,
    )
}

/// [`matmul_multi`] at an explicit instruction-set level.
///
/// # Panics
/// As [`matmul_multi`], or if `level` is not available on this CPU.
pub fn matmul_multi_at(
    level: Level,
    pool: &ThreadPool,
    ws: &[Matrix],
    x: &[f32],
    n_tokens: usize,
    outs: &mut [&mut [f32]],
) {
    multi(level, pool, ws, x, n_tokens, n_tokens, outs)
}

fn multi(
    level: Level,
    pool: &ThreadPool,
    ws: &[Matrix],
    x: &[f32],
    n_tokens: usize,
    order_tokens: usize,
    outs: &mut [&mut [f32]],
) {
    assert_eq!(ws.len(), outs.len(), "matmul_multi: one output per matrix");
    let Some(cols) = ws.first().map(|w| w.cols) else {
        return;
    };
    assert!(
        ws.iter().all(|w| w.cols == cols),
        "matmul_multi: matrices must share cols"
    );
    assert!(
        x.len() >= n_tokens * cols,
        "matmul_multi: {} activations for {n_tokens} tokens of {cols}",
        x.len()
    );
    for (w, o) in ws.iter().zip(outs.iter()) {
        assert!(
            o.len() >= n_tokens * w.rows,
            "matmul_multi: output of {} for {n_tokens} tokens of {}",
            o.len(),
            w.rows
        );
    }
    if n_tokens == 0 {
        return;
    }
    let kernels: Vec<DotKernel> = ws
        .iter()
        .map(|w| DotKernel::for_batch(level, w.ty, order_tokens))
        .collect();
    // Distinct activation layouts (type, prepared, tiled, zero point, padded); `which[i]` is
    // matrix i's layout.
    type Layout = (GgmlType, bool, bool, i32, bool);
    let mut layouts: Vec<(Layout, usize)> = Vec::new();
    let which: Vec<usize> = kernels
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let act = formats::activation_type(k.weight_type()).expect("Matrix::new checked");
            let key = (
                act,
                k.wants_prepared(),
                k.has_gemm(),
                k.zero_point(),
                k.pads_tiles(),
            );
            match layouts.iter().position(|l| l.0 == key) {
                Some(p) => p,
                None => {
                    layouts.push((key, i));
                    layouts.len() - 1
                }
            }
        })
        .collect();
    let raw_f32 = |l: usize| layouts[l].0 .0 == GgmlType::F32 && cfg!(target_endian = "little");

    let mut scratch = MULTI_SCRATCH.with(|s| std::mem::take(&mut *s.borrow_mut()));
    scratch.resize_with(scratch.len().max(layouts.len()), Activations::new);
    for (l, acts) in scratch.iter_mut().enumerate().take(layouts.len()) {
        if !raw_f32(l) {
            acts.quantize(&kernels[layouts[l].1], x, cols, n_tokens, pool);
        }
    }
    // SAFETY: any f32 bit pattern is valid bytes; u8 has no alignment requirement.
    let x_bytes =
        unsafe { std::slice::from_raw_parts(x.as_ptr().cast::<u8>(), n_tokens * cols * 4) };
    let scratch_ref = &scratch;
    let source = |l: usize| {
        if raw_f32(l) {
            Source::Raw(x_bytes, cols)
        } else {
            Source::Quantized(&scratch_ref[l])
        }
    };

    let n_threads = pool.n_threads();
    let mut tasks: Vec<(usize, Range<usize>)> = Vec::new();
    for (m, w) in ws.iter().enumerate() {
        let chunk = chunk_rows(w.rows, w.row_bytes(), n_threads, n_tokens).max(1);
        tasks.extend(
            (0..w.rows)
                .step_by(chunk)
                .map(|s| (m, s..(s + chunk).min(w.rows))),
        );
    }
    let dsts: Vec<SharedMut<f32>> = outs.iter_mut().map(|o| SharedMut(o.as_mut_ptr())).collect();
    pool.for_each_chunk(tasks.len(), 1, &|ts| {
        for (m, rs) in &tasks[ts] {
            let l = which[*m];
            // SAFETY: output m holds n_tokens * rows elements (checked above), the tasks of a
            // matrix are disjoint row ranges, and the outputs outlive the pool call.
            unsafe {
                run_chunk(
                    &ws[*m],
                    &kernels[*m],
                    source(l),
                    n_tokens,
                    rs.clone(),
                    dsts[*m],
                )
            };
        }
    });
    MULTI_SCRATCH.with(|s| *s.borrow_mut() = scratch);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simd::available_levels;

    /// Deterministic pseudo-random numbers (xorshift) so failures reproduce.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn f32(&mut self) -> f32 {
            (self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        }
    }

    fn random_matrix(ty: GgmlType, rows: usize, cols: usize, rng: &mut Rng) -> Vec<u8> {
        let rb = cols / ty.block_size() * ty.type_size();
        let mut data = vec![0u8; rows * rb];
        let mut src = vec![0f32; cols];
        for r in 0..rows {
            src.iter_mut().for_each(|v| *v = rng.f32());
            formats::quantize_row(ty, &src, &mut data[r * rb..(r + 1) * rb]).unwrap();
        }
        data
    }

    /// Rounding of the activations to 8 bits perturbs each activation by at most half a
    /// quantization step (amax/254 of its block); the matmul result may differ from the exact
    /// product by at most sum |w_i| * step_i / 2, plus f32 rounding. This is that bound.
    fn activation_rounding_bound(act: GgmlType, w: &[f32], x: &[f32]) -> f64 {
        if act == GgmlType::F32 {
            return 0.0;
        }
        let bs = act.block_size();
        w.chunks(bs)
            .zip(x.chunks(bs))
            .map(|(wb, xb)| {
                let amax = xb.iter().fold(0f32, |m, v| m.max(v.abs())) as f64;
                let half_step = amax / 127.0 / 2.0;
                wb.iter().map(|v| v.abs() as f64).sum::<f64>() * half_step
            })
            .sum()
    }

    /// Relative budget for matmul vs the per-row scalar reference on the same quantized
    /// activations: both sum the same integer block dots; only the f32 scale/accumulation order
    /// differs (~1e-7 per step, a few hundred steps).
    const SAME_ACT_REL_TOL: f64 = 1e-5;

    const TYPES: [GgmlType; 15] = crate::formats::SUPPORTED;

    #[test]
    fn matrix_new_validates() {
        let data = vec![0u8; 2 * 144];
        assert!(Matrix::new(GgmlType::Q4_K, 2, 256, &data).is_ok());
        assert!(matches!(
            Matrix::new(GgmlType::Q4_K, 2, 255, &data),
            Err(KernelError::RaggedRow { .. })
        ));
        assert!(matches!(
            Matrix::new(GgmlType::Q4_K, 3, 256, &data),
            Err(KernelError::SizeMismatch { .. })
        ));
        assert!(matches!(
            Matrix::new(GgmlType::Q8_1, 2, 256, &data),
            Err(KernelError::UnsupportedType(_))
        ));
        let m = Matrix::new(GgmlType::Q4_K, 2, 256, &data).unwrap();
        assert_eq!(m.row_bytes(), 144);
        assert_eq!(m.row(1).len(), 144);
    }

    /// Weights packed ahead of time give the bits of weights packed on each call, for every
    /// type, level, batch size and summation order (every tile kernel of a type reads the one
    /// packed layout, e.g. Q6_K's in the lane order and in the tiled order from 8 tokens).
    #[test]
    fn prepacked_weights_give_the_same_bits() {
        let mut rng = Rng(0xA076_1D64_78BD_642F);
        let pool = ThreadPool::new(2);
        let (rows, cols) = (20, 512);
        for ty in TYPES {
            let data = random_matrix(ty, rows, cols, &mut rng);
            let w = Matrix::new(ty, rows, cols, &data).unwrap();
            let Some(packed) = pack_matrix(&w, 2) else {
                continue;
            };
            let wp = w.with_packed(&packed).unwrap();
            for level in available_levels() {
                for (n, order) in [(8, 1), (8, 8), (16, 1), (16, 16), (67, 67)] {
                    let x: Vec<f32> = (0..n * cols).map(|_| rng.f32()).collect();
                    let mut want = vec![0f32; n * rows];
                    let mut got = vec![0f32; n * rows];
                    multi(level, &pool, &[w], &x, n, order, &mut [&mut want]);
                    multi(level, &pool, &[wp], &x, n, order, &mut [&mut got]);
                    assert!(
                        want.iter()
                            .zip(&got)
                            .all(|(a, b)| a.to_bits() == b.to_bits()),
                        "{ty} at {level}, {n} tokens summed as {order}"
                    );
                }
            }
        }
        let data = random_matrix(GgmlType::Q4_0, rows, cols, &mut rng);
        let w = Matrix::new(GgmlType::Q4_0, rows, cols, &data).unwrap();
        assert!(matches!(
            w.with_packed(&[0u8; 3]),
            Err(KernelError::SizeMismatch { .. })
        ));
    }

    /// Each batch size of `sizes`, summed as batches of one (a decode step), gives every token
    /// the bits it gets alone on every level, with `w` packed ahead of time (`packed`) or not.
    fn assert_decode_batches_exact(
        w: Matrix,
        packed: Option<&[u8]>,
        sizes: &[usize],
        rng: &mut Rng,
        pool: &ThreadPool,
    ) {
        let (rows, cols, ty) = (w.rows, w.cols, w.ty);
        let wp = match packed {
            Some(p) => w.with_packed(p).unwrap(),
            None => w,
        };
        for level in available_levels() {
            for &n in sizes {
                let x: Vec<f32> = (0..n * cols).map(|_| rng.f32()).collect();
                let mut alone = vec![0f32; n * rows];
                for (t, out) in alone.chunks_exact_mut(rows).enumerate() {
                    multi(level, pool, &[w], &x[t * cols..][..cols], 1, 1, &mut [out]);
                }
                for m in [w, wp] {
                    let mut got = vec![0f32; n * rows];
                    multi(level, pool, &[m], &x, n, 1, &mut [&mut got]);
                    assert!(
                        alone
                            .iter()
                            .zip(&got)
                            .all(|(a, b)| a.to_bits() == b.to_bits()),
                        "{ty} {rows}x{cols} at {level}, {n} tokens"
                    );
                }
            }
        }
    }

    /// A decode step's batch (summed as batches of one) gives every token the bits it gets
    /// alone, with weights packed or not: whole tiles, a padded last tile of 5 to 7 tokens (the
    /// padding's results dropped), and the 4-token and one-token kernels of the other types.
    #[test]
    fn padded_tiles_give_each_token_its_own_bits() {
        let mut rng = Rng(0x2545_F491_4F6C_DD1D);
        let pool = ThreadPool::new(2);
        let (rows, cols) = (20, 256);
        for ty in TYPES {
            let data = random_matrix(ty, rows, cols, &mut rng);
            let w = Matrix::new(ty, rows, cols, &data).unwrap();
            let packed = pack_matrix(&w, 1);
            let sizes = [5, 6, 7, 8, 13, 15, 16];
            assert_decode_batches_exact(w, packed.as_deref(), &sizes, &mut rng, &pool);
        }
    }

    /// Q4_K and Q6_K decode steps run tiles on weights packed ahead of time or on each call:
    /// every batch size from 1 to 9 (whole, padded and partial tiles, the 4-token and one-token
    /// kernels) gives each token the bits of a single-token matmul, with rows that make a last
    /// partial group and with several groups (the next one prefetched).
    #[test]
    fn decode_steps_give_each_token_its_own_bits() {
        let mut rng = Rng(0xD1B5_4A32_D192_ED03);
        let pool = ThreadPool::new(2);
        for ty in [GgmlType::Q4_K, GgmlType::Q6_K] {
            for (rows, cols) in [(20, 512), (40, 1024)] {
                let data = random_matrix(ty, rows, cols, &mut rng);
                let w = Matrix::new(ty, rows, cols, &data).unwrap();
                let packed = pack_matrix(&w, 2);
                if simd::active_level() > Level::Scalar {
                    assert!(packed.is_some(), "{ty} is packed ahead of time");
                }
                let sizes: Vec<usize> = (1..=9).collect();
                assert_decode_batches_exact(w, packed.as_deref(), &sizes, &mut rng, &pool);
            }
        }
    }

    #[test]
    fn matrix_dequantize_row_matches_formats() {
        let mut rng = Rng(7);
        let data = random_matrix(GgmlType::Q6_K, 3, 512, &mut rng);
        let m = Matrix::new(GgmlType::Q6_K, 3, 512, &data).unwrap();
        let mut a = vec![0f32; 512];
        let mut b = vec![0f32; 512];
        m.dequantize_row(2, &mut a);
        formats::dequantize_row(GgmlType::Q6_K, &data[2 * 210 * 2..], &mut b).unwrap();
        assert_eq!(a, b);
    }

    /// Every type, several shapes, 1 and many tokens, 1 and 2 threads, every level: matmul equals
    /// (a) the scalar per-row reference on the same quantized activations, within
    /// SAME_ACT_REL_TOL, and (b) the exact f64 product of the dequantized weights and the
    /// original activations, within the activation rounding bound.
    #[test]
    fn matmul_matches_references() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let pools = [ThreadPool::new(1), ThreadPool::new(2)];
        for ty in TYPES {
            let act_ty = formats::activation_type(ty).unwrap();
            let bs = ty.block_size().max(act_ty.block_size()).max(32);
            for &(rows, cols) in &[(1usize, bs), (37, 2 * bs), (130, 3 * bs.max(256))] {
                let data = random_matrix(ty, rows, cols, &mut rng);
                let w = Matrix::new(ty, rows, cols, &data).unwrap();
                let deq: Vec<Vec<f32>> = (0..rows)
                    .map(|r| {
                        let mut v = vec![0f32; cols];
                        w.dequantize_row(r, &mut v);
                        v
                    })
                    .collect();
                for n_tokens in [1usize, 3, 9] {
                    let x: Vec<f32> = (0..n_tokens * cols).map(|_| rng.f32()).collect();
                    // Reference (a): scalar quantization + scalar dot.
                    let ab = formats::activation_row_bytes(act_ty, cols);
                    let mut act = vec![0u8; ab];
                    let mut want_a = vec![0f32; n_tokens * rows];
                    for t in 0..n_tokens {
                        formats::quantize_activations(
                            act_ty,
                            &x[t * cols..(t + 1) * cols],
                            &mut act,
                        );
                        for r in 0..rows {
                            want_a[t * rows + r] = formats::vec_dot(ty, w.row(r), &act, cols);
                        }
                    }
                    for level in available_levels() {
                        for pool in &pools {
                            let mut out = vec![f32::NAN; n_tokens * rows];
                            matmul_at(level, pool, &w, &x, n_tokens, &mut out);
                            for t in 0..n_tokens {
                                let xt = &x[t * cols..(t + 1) * cols];
                                for r in 0..rows {
                                    let got = out[t * rows + r] as f64;
                                    let mag: f64 = deq[r]
                                        .iter()
                                        .zip(xt)
                                        .map(|(a, b)| (a * b).abs() as f64)
                                        .sum();
                                    let ctx = format!(
                                        "{ty} {rows}x{cols} t={t}/{n_tokens} r={r} {level} {}thr",
                                        pool.n_threads()
                                    );
                                    let tol_a = SAME_ACT_REL_TOL * (mag + 1e-3);
                                    let diff_a = (got - want_a[t * rows + r] as f64).abs();
                                    assert!(
                                        diff_a <= tol_a,
                                        "{ctx}: {got} vs scalar {} (tol {tol_a})",
                                        want_a[t * rows + r]
                                    );
                                    let exact: f64 = deq[r]
                                        .iter()
                                        .zip(xt)
                                        .map(|(a, b)| *a as f64 * *b as f64)
                                        .sum();
                                    let tol_b = activation_rounding_bound(act_ty, &deq[r], xt)
                                        + SAME_ACT_REL_TOL * (mag + 1e-3);
                                    assert!(
                                        (got - exact).abs() <= tol_b,
                                        "{ctx}: {got} vs exact {exact} (tol {tol_b})"
                                    );
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn matmul_large_batch_quantizes_in_parallel() {
        // Enough tokens to take the parallel quantization path.
        let mut rng = Rng(3);
        let (rows, cols, n_tokens) = (24, 512, 40);
        let data = random_matrix(GgmlType::Q4_K, rows, cols, &mut rng);
        let w = Matrix::new(GgmlType::Q4_K, rows, cols, &data).unwrap();
        let x: Vec<f32> = (0..n_tokens * cols).map(|_| rng.f32()).collect();
        let mut one = vec![0f32; n_tokens * rows];
        let mut two = vec![0f32; n_tokens * rows];
        matmul(&ThreadPool::new(1), &w, &x, n_tokens, &mut one);
        matmul(&ThreadPool::new(2), &w, &x, n_tokens, &mut two);
        // Same kernels, same activations, each output computed by one dot: bit-identical.
        assert_eq!(one, two);
    }

    /// matmul_multi runs the same kernels on the same activations as one matmul per matrix, so
    /// the outputs must be bit-identical, with mixed activation layouts (Q8_1 prepared, Q8_0
    /// prepared, Q8_K, f32) in one call.
    #[test]
    fn matmul_multi_equals_separate_matmuls() {
        let mut rng = Rng(11);
        let cols = 512;
        let specs = [
            (GgmlType::Q4_1, 40),
            (GgmlType::Q5_0, 24),
            (GgmlType::Q4_1, 8),
            (GgmlType::Q6_K, 33),
            (GgmlType::F16, 5),
        ];
        let datas: Vec<Vec<u8>> = specs
            .iter()
            .map(|&(ty, rows)| random_matrix(ty, rows, cols, &mut rng))
            .collect();
        let ws: Vec<Matrix> = specs
            .iter()
            .zip(&datas)
            .map(|(&(ty, rows), d)| Matrix::new(ty, rows, cols, d).unwrap())
            .collect();
        for n_tokens in [1usize, 6] {
            let x: Vec<f32> = (0..n_tokens * cols).map(|_| rng.f32()).collect();
            for level in available_levels() {
                for threads in [1, 2] {
                    let pool = ThreadPool::new(threads);
                    let mut want: Vec<Vec<f32>> = Vec::new();
                    for w in &ws {
                        let mut o = vec![0f32; n_tokens * w.rows];
                        matmul_at(level, &pool, w, &x, n_tokens, &mut o);
                        want.push(o);
                    }
                    let mut got: Vec<Vec<f32>> = ws
                        .iter()
                        .map(|w| vec![f32::NAN; n_tokens * w.rows])
                        .collect();
                    let mut outs: Vec<&mut [f32]> = got.iter_mut().map(|v| &mut v[..]).collect();
                    matmul_multi_at(level, &pool, &ws, &x, n_tokens, &mut outs);
                    assert_eq!(got, want, "{level} {threads} threads, {n_tokens} tokens");
                }
            }
        }
        // Degenerate calls do nothing.
        matmul_multi(&ThreadPool::new(2), &[], &[], 1, &mut []);
    }

    #[test]
    fn matmul_ignores_extra_buffer_space_and_zero_tokens() {
        let data = vec![0u8; 4 * 34];
        let w = Matrix::new(GgmlType::Q8_0, 4, 32, &data).unwrap();
        let pool = ThreadPool::new(2);
        let mut out = vec![5.0f32; 10];
        matmul(&pool, &w, &[], 0, &mut out);
        assert!(out.iter().all(|&v| v == 5.0));
        matmul(&pool, &w, &[1.0; 40], 1, &mut out);
        assert_eq!(&out[..4], &[0.0; 4]);
        assert_eq!(out[4], 5.0);
    }
}
