//! Tile kernels for prompt processing and for the decode steps of several sequences:
//! [`GEMM_ROWS`] weight rows x [`GEMM_TOKENS`] tokens per call, for the AVX-512 VNNI level
//! ([`vnni`]) and the AVX2 level ([`avx2`]). Q4_K and Q6_K have a tile per float order (the
//! batch order of prompts, and the single-token order of decode steps), all reading one packed
//! layout per type, so a matrix packed ahead of time serves both.
//!
//! A tile puts the 8 rows in the vector lanes. [`DotKernel::pack`](super::DotKernel::pack) lays 8
//! rows out once for many token tiles: codes unpacked to bytes and transposed (vector `k` holds
//! every row's codes `4k..4k + 4` of a group of 32), scales converted to f32 or i32 vectors. Each
//! multiply-add of 4 codes by 4 quants then takes one token's quants as a broadcast, and every
//! lane does, for its row, the steps of the single-token or 4-token kernel in the same order, so
//! the results are bit-identical to them (the tests check it on every level).
//!
//! The two levels differ only in that multiply-add: `vpdpbusd` with VNNI ([`dp_vnni`]), and
//! `maddubs` + `madd` on AVX2 ([`dp_avx2`]), exact as long as no pair of products exceeds i16,
//! which holds for codes up to 63 (Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q6_K); Q8_0 and IQ4_NL, whose
//! biased codes reach 255, have tiles only with VNNI. The packers and helpers use AVX2 only and are
//! shared; the tile bodies are written once in the `tile_kernels!` macro, which each level expands
//! under its own `#[target_feature]` (a feature-free `#[inline(always)]` body would leave the
//! intrinsics as calls).

use super::avx2::{bytes_from_bits, f32_ptr, k4_scales_mins, load16, load32, nibbles32, u32_ptr};
use super::layout::*;
use super::{ActTile, GEMM_ROWS, GEMM_TOKENS};
use std::arch::x86_64::*;

/// The 32-element weight types.
pub(super) const K_Q4_0: u8 = 0;
pub(super) const K_Q4_1: u8 = 1;
pub(super) const K_Q5_0: u8 = 2;
pub(super) const K_Q5_1: u8 = 3;
pub(super) const K_Q8_0: u8 = 4;
pub(super) const K_IQ4_NL: u8 = 5;

/// (block bytes, offset of the quants, zero point, has a min) of a 32-element weight type.
pub(super) const fn layout32(kind: u8) -> (usize, usize, u8, bool) {
    match kind {
        K_Q4_0 => (Q4_0_W, 2, 8, false),
        K_Q4_1 => (Q4_1_W, 4, 0, true),
        K_Q5_0 => (Q5_0_W, 6, 16, false),
        K_Q5_1 => (Q5_1_W, 8, 0, true),
        K_Q8_0 => (Q8_0_W, 2, 128, false),
        _ => (IQ4_NL_W, 2, 128, false),
    }
}

/// `acc + (sums of 4 products u8 x i8 per i32 lane)` with VNNI's `vpdpbusd`.
#[inline]
#[target_feature(enable = "avx512vl,avx512vnni")]
fn dp_vnni(acc: __m256i, u: __m256i, q: __m256i) -> __m256i {
    _mm256_dpbusd_epi32(acc, u, q)
}

/// [`dp_vnni`] on AVX2: `maddubs` (pairs, i16) + `madd` (the two pairs of a lane), exact for
/// codes up to 63.
#[inline]
#[target_feature(enable = "avx2")]
fn dp_avx2(acc: __m256i, u: __m256i, q: __m256i) -> __m256i {
    let pairs = _mm256_maddubs_epi16(u, q);
    _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)))
}

/// `acc + s * (sums of 2 pairs of products u8 x i8 per i32 lane)`, `s` an i16 in both halves of
/// each lane, with VNNI: `maddubs` + `vpdpwssd`. Scales 4 products inside the multiply-add, where
/// a lane's sum must be scaled per group of 4 (Q6_K's lane order).
#[inline]
#[target_feature(enable = "avx512vl,avx512vnni,avx2")]
fn dps_vnni(acc: __m256i, u: __m256i, q: __m256i, s: __m256i) -> __m256i {
    _mm256_dpwssd_epi32(acc, _mm256_maddubs_epi16(u, q), s)
}

/// [`dps_vnni`] on AVX2: `maddubs` + `madd` by the scales + add (exact for codes up to 63 and
/// 8-bit scales).
#[inline]
#[target_feature(enable = "avx2")]
fn dps_avx2(acc: __m256i, u: __m256i, q: __m256i, s: __m256i) -> __m256i {
    _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, q), s))
}

/// Prefetches into L2 part `step` of `steps` equal parts of the `len` bytes at `p` (the next
/// group of packed rows, spread over the passes of a tile kernel so that DRAM streams while the
/// current group computes).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn prefetch_part(p: *const u8, len: usize, step: usize, steps: usize) {
    // Whole cache lines from the one holding `p` to the one holding its last byte.
    let skew = p as usize % 64;
    let lines = (skew + len).div_ceil(64);
    let per = lines.div_ceil(steps.max(1));
    let base = p.wrapping_sub(skew);
    for line in step * per..((step + 1) * per).min(lines) {
        // A prefetch never faults, and `wrapping_add` makes no claim on the address.
        _mm_prefetch::<_MM_HINT_T1>(base.wrapping_add(64 * line).cast());
    }
}

/// Prefetches into L1 the `len` bytes at `p` (the current rows a few blocks ahead, which come
/// from memory when no earlier call prefetched them).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn prefetch_l1(p: *const u8, len: usize) {
    let skew = p as usize % 64;
    let base = p.wrapping_sub(skew);
    for line in 0..(skew + len).div_ceil(64) {
        _mm_prefetch::<_MM_HINT_T0>(base.wrapping_add(64 * line).cast());
    }
}

/// The blocks of `block` elements in `n`, after checking that each of the rows `w` holds them
/// (`block_bytes` each).
fn row_blocks(w: &[&[u8]; GEMM_ROWS], n: usize, block: usize, block_bytes: usize) -> usize {
    assert!(
        n.is_multiple_of(block),
        "{n} elements are not whole blocks of {block}"
    );
    let nb = n / block;
    assert!(
        w.iter().all(|w| w.len() >= nb * block_bytes),
        "row too short"
    );
    nb
}

/// Bytes the packer of `ty` makes of 8 rows of `n` elements.
pub(super) fn packed_len(ty: gguf::GgmlType, n: usize) -> usize {
    use gguf::GgmlType::*;
    match ty {
        Q4_K => n / 256 * PACKED_Q4K,
        Q6_K => n / 256 * PACKED_Q6K,
        Q4_1 | Q5_1 => n / 32 * packed32(true),
        _ => n / 32 * packed32(false),
    }
}

/// The blocks of `block` elements in `n`, after checking that `packed` holds them
/// (`packed_bytes` per block).
fn packed_blocks(packed: &[u8], n: usize, block: usize, packed_bytes: usize) -> usize {
    assert!(
        n.is_multiple_of(block),
        "{n} elements are not whole blocks of {block}"
    );
    let nb = n / block;
    assert!(
        packed.len() >= nb * packed_bytes,
        "rows not packed for this kernel"
    );
    nb
}

// ---------------------------------------------------------------------------------------------
// 32-element block types
// ---------------------------------------------------------------------------------------------

/// The 32 unsigned codes of one block at `w` (element order).
///
/// # Safety
/// One whole block of the `KIND` type must be readable at `w`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn codes32<const KIND: u8>(w: *const u8) -> __m256i {
    let (_, qs, _, _) = layout32(KIND);
    // SAFETY: all offsets are inside the block per the layouts.
    unsafe {
        match KIND {
            K_Q8_0 => _mm256_xor_si256(load32(w.add(qs)), _mm256_set1_epi8(0x80u8 as i8)),
            K_IQ4_NL => {
                let t = _mm_xor_si128(load16(KVALUES.as_ptr().cast()), _mm_set1_epi8(0x80u8 as i8));
                _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(t), nibbles32(load16(w.add(qs))))
            }
            K_Q5_0 | K_Q5_1 => {
                let hb = if KIND == K_Q5_0 { 2 } else { 4 };
                let fifth =
                    _mm256_and_si256(bytes_from_bits(u32_ptr(w.add(hb))), _mm256_set1_epi8(16));
                _mm256_or_si256(nibbles32(load16(w.add(qs))), fifth)
            }
            _ => nibbles32(load16(w.add(qs))),
        }
    }
}

/// Bytes of one packed block of 8 rows of a 32-element type: the transposed codes (8 vectors,
/// vector `k` holds every row's codes `4k..4k + 4`), then `d` of the 8 rows and, for the types
/// that have one, their min `m` (f16, as the blocks hold them: a batched decode step reads
/// every packed byte from memory once).
const fn packed32(has_min: bool) -> usize {
    if has_min {
        288
    } else {
        272
    }
}

/// How many packed blocks ahead the first pass of a tile kernel prefetches.
const PREFETCH_BLOCKS: usize = 4;

/// Stores `v` at byte `off` of `buf`.
///
/// # Safety
/// `off + 32 <= buf.len()`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn put(buf: &mut [u8], off: usize, v: __m256i) {
    // SAFETY: per the contract.
    unsafe { _mm256_storeu_si256(buf.as_mut_ptr().add(off).cast(), v) }
}

/// The 32 bytes at byte `off` of `p`.
///
/// # Safety
/// `p + off..p + off + 32` must be readable.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn get(p: *const u8, off: usize) -> __m256i {
    // SAFETY: per the contract.
    unsafe { _mm256_loadu_si256(p.add(off).cast()) }
}

/// The f16 at `p[r] + off` of each of 8 rows, as they are.
///
/// # Safety
/// 2 bytes at each `p[r] + off` must be readable.
#[inline]
unsafe fn f16_bits_rows(p: &[*const u8; 8], off: usize) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (r, pair) in out.chunks_exact_mut(2).enumerate() {
        // SAFETY: per the contract.
        pair.copy_from_slice(unsafe { std::slice::from_raw_parts(p[r].add(off), 2) });
    }
    out
}

/// Packs 8 rows of a 32-element type, [`packed32`] bytes per block.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn pack32<const KIND: u8>(w: [&[u8]; 8], n: usize, buf: &mut Vec<u8>) {
    let (wsz, _, _, has_min) = layout32(KIND);
    let size = packed32(has_min);
    let nb = row_blocks(&w, n, 32, wsz);
    buf.resize(nb * size, 0);
    for b in 0..nb {
        // SAFETY: block b < nb of every row is readable (checked above), and the packed block
        // fits in `buf` (resized above).
        unsafe {
            let wp: [*const u8; 8] = std::array::from_fn(|r| w[r].as_ptr().add(b * wsz));
            let codes = transpose8_epi32(wp.map(|p| codes32::<KIND>(p)));
            for (k, c) in codes.into_iter().enumerate() {
                put(buf, b * size + 32 * k, c);
            }
            buf[b * size + 256..][..16].copy_from_slice(&f16_bits_rows(&wp, 0));
            if has_min {
                buf[b * size + 272..][..16].copy_from_slice(&f16_bits_rows(&wp, 2));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Q4_K: tiles of 8 weight rows x 8 tokens (prompt processing)
// ---------------------------------------------------------------------------------------------
//
// Q4_K's float order (see [`super::avx2::dot_q4_k_blocks`], pairs of sub-blocks) works on whole
// integer sums, so a tile can put the 8 rows in the lanes: the rows' codes are transposed once
// per tile (lane `r` of vector `k` holds row `r`'s codes `4k..4k + 4` of a sub-block) and each
// `vpdpbusd` multiplies them with 4 quants of one token broadcast from memory. Every lane then
// does, in the same order, the scalar steps of the 4-token kernel for its row.

/// The 8x8 transpose of 32-bit lanes: lane `r` of output `k` is lane `k` of input `r`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn transpose8_epi32(r: [__m256i; 8]) -> [__m256i; 8] {
    let t = [
        _mm256_unpacklo_epi32(r[0], r[1]),
        _mm256_unpackhi_epi32(r[0], r[1]),
        _mm256_unpacklo_epi32(r[2], r[3]),
        _mm256_unpackhi_epi32(r[2], r[3]),
        _mm256_unpacklo_epi32(r[4], r[5]),
        _mm256_unpackhi_epi32(r[4], r[5]),
        _mm256_unpacklo_epi32(r[6], r[7]),
        _mm256_unpackhi_epi32(r[6], r[7]),
    ];
    let u = [
        _mm256_unpacklo_epi64(t[0], t[2]),
        _mm256_unpackhi_epi64(t[0], t[2]),
        _mm256_unpacklo_epi64(t[1], t[3]),
        _mm256_unpackhi_epi64(t[1], t[3]),
        _mm256_unpacklo_epi64(t[4], t[6]),
        _mm256_unpackhi_epi64(t[4], t[6]),
        _mm256_unpacklo_epi64(t[5], t[7]),
        _mm256_unpackhi_epi64(t[5], t[7]),
    ];
    [
        _mm256_permute2x128_si256::<0x20>(u[0], u[4]),
        _mm256_permute2x128_si256::<0x20>(u[1], u[5]),
        _mm256_permute2x128_si256::<0x20>(u[2], u[6]),
        _mm256_permute2x128_si256::<0x20>(u[3], u[7]),
        _mm256_permute2x128_si256::<0x31>(u[0], u[4]),
        _mm256_permute2x128_si256::<0x31>(u[1], u[5]),
        _mm256_permute2x128_si256::<0x31>(u[2], u[6]),
        _mm256_permute2x128_si256::<0x31>(u[3], u[7]),
    ]
}

/// The f16 at `p[r] + off` of each of 8 rows, as f32 lanes.
///
/// # Safety
/// 2 bytes at each `p[r] + off` must be readable.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn f16_rows(p: &[*const u8; 8], off: usize) -> __m256 {
    // SAFETY: per the contract.
    let h: [u16; 8] = std::array::from_fn(|r| unsafe {
        u16::from_le(p[r].add(off).cast::<u16>().read_unaligned())
    });
    // SAFETY: `h` is 16 readable bytes.
    _mm256_cvtph_ps(unsafe { _mm_loadu_si128(h.as_ptr().cast()) })
}

/// One i32 per row as a vector.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn rows_i32(v: [i32; 8]) -> __m256i {
    // SAFETY: `v` is 32 readable bytes.
    unsafe { _mm256_loadu_si256(v.as_ptr().cast()) }
}

/// The i32 at `p` in all 8 lanes.
///
/// # Safety
/// 4 bytes at `p` must be readable.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn bcast_i32(p: *const u8) -> __m256i {
    // SAFETY: per the contract.
    _mm256_set1_epi32(unsafe { p.cast::<i32>().read_unaligned() })
}

/// Bytes of one packed Q4_K block of 8 rows: `d` and `dmin` (f32 vectors), the 8 sub-block
/// scales and the 8 mins (i32 vectors), and per pair of sub-blocks the 8 transposed vectors of
/// the 32 bytes of nibbles (vector `k` holds every row's bytes `4k..4k + 4`).
const PACKED_Q4K: usize = 64 + 2 * 256 + 4 * 256;

/// Packs 8 Q4_K rows, [`PACKED_Q4K`] bytes per block.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn pack_q4k_rows(w: [&[u8]; 8], n: usize, buf: &mut Vec<u8>) {
    let nb = row_blocks(&w, n, 256, Q4_K_W);
    buf.resize(nb * PACKED_Q4K, 0);
    for i in 0..nb {
        // SAFETY: block i < nb of every row is readable (checked above; offsets inside the
        // block per the layout), and the packed block fits in `buf` (resized above).
        unsafe {
            let wp: [*const u8; 8] = std::array::from_fn(|r| w[r].as_ptr().add(i * Q4_K_W));
            let o = i * PACKED_Q4K;
            put(buf, o, _mm256_castps_si256(f16_rows(&wp, 0)));
            put(buf, o + 32, _mm256_castps_si256(f16_rows(&wp, 2)));
            let packed: [(u64, u64); 8] = std::array::from_fn(|r| k4_scales_mins(wp[r].add(4)));
            for s in 0..8 {
                let byte = |v: u64| (v >> (8 * s) & 0xFF) as i32;
                put(buf, o + 64 + 32 * s, rows_i32(packed.map(|p| byte(p.0))));
                put(buf, o + 320 + 32 * s, rows_i32(packed.map(|p| byte(p.1))));
            }
            for c in 0..4 {
                // qs is 128 bytes at 16: sub-blocks 2c (low nibbles) and 2c + 1 (high).
                let raw = transpose8_epi32(wp.map(|p| load32(p.add(16 + 32 * c))));
                for (k, v) in raw.into_iter().enumerate() {
                    put(buf, o + 576 + 256 * c + 32 * k, v);
                }
            }
        }
    }
}

/// Codes `32j..32j + 32` (0..63) of the Q6_K block at `wp`.
///
/// # Safety
/// A whole Q6_K block must be readable at `wp`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q6k_group(wp: *const u8, j: usize) -> __m256i {
    let (h, g) = (j / 4, j % 4);
    // SAFETY: ql is 128 bytes at 0, qh 64 bytes at 128, inside the block.
    let (ql, qh) = unsafe {
        (
            load32(wp.add(64 * h + 32 * (g % 2))),
            load32(wp.add(128 + 32 * h)),
        )
    };
    let low4 = _mm256_set1_epi8(0x0F);
    let lo = if g < 2 {
        _mm256_and_si256(ql, low4)
    } else {
        _mm256_and_si256(_mm256_srli_epi16::<4>(ql), low4)
    };
    let hi = _mm256_and_si256(
        _mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * g as i32)),
        _mm256_set1_epi8(3),
    );
    _mm256_or_si256(lo, _mm256_slli_epi16::<4>(hi))
}

/// Bytes of one packed Q6_K block of 8 rows: `d` (f32 vector), the 16 sub-block scales (i32
/// vectors), and per group of 32 elements the 8 transposed vectors of codes (vector `k` holds
/// every row's codes `4k..4k + 4`).
const PACKED_Q6K: usize = 32 + 16 * 32 + 8 * 256;

/// Packs 8 Q6_K rows, [`PACKED_Q6K`] bytes per block.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn pack_q6k_rows(w: [&[u8]; 8], n: usize, buf: &mut Vec<u8>) {
    let nb = row_blocks(&w, n, 256, Q6_K_W);
    buf.resize(nb * PACKED_Q6K, 0);
    for i in 0..nb {
        // SAFETY: block i < nb of every row is readable (checked above; offsets inside the
        // block per the layout), and the packed block fits in `buf` (resized above).
        unsafe {
            let wp: [*const u8; 8] = std::array::from_fn(|r| w[r].as_ptr().add(i * Q6_K_W));
            let o = i * PACKED_Q6K;
            put(buf, o, _mm256_castps_si256(f16_rows(&wp, 208)));
            // The 16 scales (i8) at 192.
            for s in 0..16 {
                put(
                    buf,
                    o + 32 + 32 * s,
                    rows_i32(wp.map(|p| *p.add(192 + s) as i8 as i32)),
                );
            }
            for j in 0..8 {
                let codes = transpose8_epi32(wp.map(|p| q6k_group(p, j)));
                for (k, v) in codes.into_iter().enumerate() {
                    put(buf, o + 544 + 256 * j + 32 * k, v);
                }
            }
        }
    }
}

/// The tile kernels of one level: the shared bodies under the level's features, with its
/// multiply-add, and an entry point per type.
macro_rules! tile_kernels {
    ($features:literal, $dp:ident, $dps:ident, $($gemm:ident = $body:expr;)*) => {
        use super::*;

        /// The dots of 8 weight rows of a 32-element type, packed by [`pack32`], with a tile of 8
        /// tokens' activations: `out[t][r]`, bit-identical to [`dot32`] of each pair.
        ///
        /// Each output's float order is [`dot32`]'s: 8 lanes `k` (lane `k` sums elements `4k..4k + 4`
        /// of every block) accumulated block after block, then [`hsum_ps`]'s tree. Here the lanes of a
        /// vector are the 8 rows instead, and each output's 8 lane accumulators are 8 vectors: each
        /// `vpdpbusd` takes the rows' transposed codes and one token's 4 quants as a broadcast, and each
        /// block's scale products `d_w * d_a` are one vector multiply for all rows.
        #[inline]
        #[target_feature(enable = $features)]
        unsafe fn gemm32<const KIND: u8>(
            packed: &[u8],
            tile: &ActTile<'_>,
            n: usize,
        ) -> [[f32; 8]; 8] {
            let (_, _, _, has_min) = layout32(KIND);
            let size = packed32(has_min);
            let nb = packed_blocks(packed, n, 32, size);
            assert!(
                tile.q8.len() >= 256 * nb
                    && tile.ls8.len() >= 64 * nb
                    && tile.d8.len() >= 8 * nb
                    && (!has_min || tile.s8.len() >= 8 * nb),
                "activation tile not prepared for this kernel"
            );
            let (pk, q8, ls8) = (packed.as_ptr(), tile.q8.as_ptr(), tile.ls8.as_ptr());
            // `packed` may go on with the next group of rows (a matrix packed ahead of time): it is
            // fetched during this one's passes, so that DRAM streams while these rows compute.
            let next = packed.len() >= 2 * nb * size;
            let next_lines = (nb * size).div_ceil(64);
            let mut out = [[0f32; 8]; 8];
            for t0 in (0..8).step_by(2) {
                // `acc[k][i]`: lane k, token t0 + i, the rows in the vector lanes.
                let mut acc = [[_mm256_setzero_ps(); 2]; 8];
                let mut summ = [_mm256_setzero_ps(); 2];
                for b in 0..nb {
                    // SAFETY: block b < nb of the packed rows and of tokens t0, t0 + 1 is inside the
                    // arrays (lengths checked above).
                    unsafe {
                        let pb = pk.add(b * size);
                        if t0 == 0 && b + PREFETCH_BLOCKS < nb {
                            // Weights packed ahead of time come from memory on the first pass.
                            let ahead = pb.add(PREFETCH_BLOCKS * size);
                            for line in (0..size).step_by(64) {
                                _mm_prefetch::<_MM_HINT_T0>(ahead.add(line).cast());
                            }
                        }
                        if next {
                            // The next group of rows, spread over all the passes: two lines a
                            // block, inline (`prefetch_part`'s division per call costs this hot
                            // loop about 8%).
                            let line = 2 * ((t0 / 2) * nb + b);
                            if line < next_lines {
                                // A prefetch reads nothing: its address may pass the end.
                                let ahead = pk.wrapping_add(nb * size + 64 * line);
                                _mm_prefetch::<_MM_HINT_T1>(ahead.cast());
                                _mm_prefetch::<_MM_HINT_T1>(ahead.wrapping_add(64).cast());
                            }
                        }
                        let dw = _mm256_cvtph_ps(load16(pb.add(256)));
                        let s: [__m256; 2] = std::array::from_fn(|i| {
                            _mm256_mul_ps(dw, _mm256_set1_ps(*tile.d8.get_unchecked(8 * b + t0 + i)))
                        });
                        let y = [0, 1].map(|i| q8.add(256 * b + 32 * (t0 + i)));
                        let l = [0, 1].map(|i| ls8.add(64 * b + 8 * (t0 + i)));
                        for (k, acc) in acc.iter_mut().enumerate() {
                            let codes = get(pb, 32 * k);
                            for i in 0..2 {
                                // Each lane starts at -zp * (the token's 4 quants' sum): the zero point.
                                let p = $dp(
                                    _mm256_set1_epi32(*l[i].add(k)),
                                    codes,
                                    bcast_i32(y[i].add(4 * k).cast()),
                                );
                                acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), s[i], acc[i]);
                            }
                        }
                        if has_min {
                            let mw = _mm256_cvtph_ps(load16(pb.add(272)));
                            for (i, summ) in summ.iter_mut().enumerate() {
                                let sa = _mm256_set1_ps(*tile.s8.get_unchecked(8 * b + t0 + i));
                                *summ = _mm256_add_ps(*summ, _mm256_mul_ps(mw, sa));
                            }
                        }
                    }
                }
                for i in 0..2 {
                    let a: [__m256; 8] = std::array::from_fn(|k| acc[k][i]);
                    // [`hsum_ps`]'s tree, lane by lane: ((a0 + a4) + (a2 + a6)) + ((a1 + a5) + (a3 + a7)).
                    let s: [__m256; 4] = std::array::from_fn(|k| _mm256_add_ps(a[k], a[k + 4]));
                    let h = _mm256_add_ps(_mm256_add_ps(s[0], s[2]), _mm256_add_ps(s[1], s[3]));
                    // SAFETY: `out[t0 + i]` is 8 writable f32.
                    unsafe { _mm256_storeu_ps(out[t0 + i].as_mut_ptr(), _mm256_add_ps(h, summ[i])) };
                }
            }
            out
        }

        /// The dots of 8 Q4_K weight rows, packed by [`pack_q4k_rows`], with a tile of 8 tokens' Q8_K
        /// activations: `out[t][r]`, bit-identical to [`super::avx2::dot4_q4_k`] of each pair.
        #[inline]
        #[target_feature(enable = $features)]
        unsafe fn gemm_q4_k_body(
            packed: &[u8],
            tile: &ActTile<'_>,
            n: usize,
        ) -> [[f32; 8]; 8] {
            let nb = packed_blocks(packed, n, 256, PACKED_Q4K);
            assert!(
                tile.k8.len() >= 8 * nb * Q8_K_A && tile.ksub8.len() >= 64 * nb,
                "activation tile not prepared for this kernel"
            );
            let low4 = _mm256_set1_epi8(0x0F);
            // Per token, lanes = rows.
            let mut acc = [_mm256_setzero_ps(); 8];
            let mut acc_m = [_mm256_setzero_ps(); 8];
            for i in 0..nb {
                // SAFETY: block i < nb of the packed rows and of every token of the tile is in bounds
                // (lengths checked above); the offsets are inside the blocks per the layouts.
                unsafe {
                    let pb = packed.as_ptr().add(i * PACKED_Q4K);
                    let (dw, dmin) = (
                        _mm256_castsi256_ps(get(pb, 0)),
                        _mm256_castsi256_ps(get(pb, 32)),
                    );
                    // Token t's block: d (f32) at 0, quants at 4.
                    let ab = tile.k8.as_ptr().add(i * 8 * Q8_K_A);
                    let sub = tile.ksub8.as_ptr().add(i * 64);
                    let m: [__m256i; 8] = std::array::from_fn(|s| get(pb, 320 + 32 * s));
                    for (t, acc_m) in acc_m.iter_mut().enumerate() {
                        let scale_m = _mm256_mul_ps(dmin, _mm256_set1_ps(f32_ptr(ab.add(t * Q8_K_A))));
                        let bs = sub.add(8 * t);
                        for c in 0..4 {
                            let msum = _mm256_add_epi32(
                                _mm256_mullo_epi32(m[2 * c], _mm256_set1_epi32(*bs.add(2 * c))),
                                _mm256_mullo_epi32(m[2 * c + 1], _mm256_set1_epi32(*bs.add(2 * c + 1))),
                            );
                            *acc_m = _mm256_fmadd_ps(_mm256_cvtepi32_ps(msum), scale_m, *acc_m);
                        }
                    }
                    for c in 0..4 {
                        let raw: [__m256i; 8] = std::array::from_fn(|k| get(pb, 576 + 256 * c + 32 * k));
                        let lo = raw.map(|v| _mm256_and_si256(v, low4));
                        let hi = raw.map(|v| _mm256_and_si256(_mm256_srli_epi16::<4>(v), low4));
                        let (sc_lo, sc_hi) = (get(pb, 64 + 64 * c), get(pb, 96 + 64 * c));
                        for (t, acc) in acc.iter_mut().enumerate() {
                            let a = ab.add(t * Q8_K_A);
                            let y = a.add(4 + 64 * c);
                            let (mut s_lo, mut s_hi) = (_mm256_setzero_si256(), _mm256_setzero_si256());
                            for k in 0..8 {
                                s_lo = $dp(s_lo, lo[k], bcast_i32(y.add(4 * k)));
                                s_hi = $dp(s_hi, hi[k], bcast_i32(y.add(32 + 4 * k)));
                            }
                            let isum = _mm256_add_epi32(
                                _mm256_mullo_epi32(s_lo, sc_lo),
                                _mm256_mullo_epi32(s_hi, sc_hi),
                            );
                            let scale = _mm256_mul_ps(dw, _mm256_set1_ps(f32_ptr(a)));
                            *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), scale, *acc);
                        }
                    }
                }
            }
            let mut out = [[0f32; 8]; 8];
            for (o, (a, m)) in out.iter_mut().zip(acc.iter().zip(&acc_m)) {
                // SAFETY: `o` is 8 writable f32.
                unsafe { _mm256_storeu_ps(o.as_mut_ptr(), _mm256_sub_ps(*a, *m)) };
            }
            out
        }

        /// The dots of 8 Q6_K weight rows, packed by [`pack_q6k_rows`], with a tile of 8 tokens' Q8_K
        /// activations: `out[t][r]`, bit-identical to [`super::avx2::dot4_q6_k_tiled`] of each pair
        /// (llama.cpp's order for batches: whole-block integer sums, then `acc += (isum * d_w) * d_a`,
        /// the last step fused).
        #[inline]
        #[target_feature(enable = $features)]
        unsafe fn gemm_q6_k_body(
            packed: &[u8],
            tile: &ActTile<'_>,
            n: usize,
        ) -> [[f32; 8]; 8] {
            let nb = packed_blocks(packed, n, 256, PACKED_Q6K);
            assert!(
                tile.k8.len() >= 8 * nb * Q8_K_A && tile.kbias16.len() >= 128 * nb,
                "activation tile not prepared for this kernel"
            );
            let mut acc = [_mm256_setzero_ps(); 8];
            for i in 0..nb {
                // SAFETY: block i < nb of the packed rows and of every token of the tile is in bounds
                // (lengths checked above); the offsets are inside the blocks per the layouts.
                unsafe {
                    let pb = packed.as_ptr().add(i * PACKED_Q6K);
                    let dw = _mm256_castsi256_ps(get(pb, 0));
                    let ab = tile.k8.as_ptr().add(i * 8 * Q8_K_A);
                    let bias = tile.kbias16.as_ptr().add(i * 128);
                    let mut isum = [_mm256_setzero_si256(); 8];
                    for j in 0..8 {
                        let codes: [__m256i; 8] = std::array::from_fn(|k| get(pb, 544 + 256 * j + 32 * k));
                        let sc = [get(pb, 32 + 64 * j), get(pb, 64 + 64 * j)];
                        for (t, isum) in isum.iter_mut().enumerate() {
                            let y = ab.add(t * Q8_K_A + 4 + 32 * j);
                            let bt = bias.add(16 * t + 2 * j);
                            // Each chain starts at -32 * (the sub-block's quant sum): the codes' offset.
                            let (mut s0, mut s1) = (_mm256_set1_epi32(*bt), _mm256_set1_epi32(*bt.add(1)));
                            for k in 0..4 {
                                s0 = $dp(s0, codes[k], bcast_i32(y.add(4 * k)));
                                s1 = $dp(s1, codes[4 + k], bcast_i32(y.add(16 + 4 * k)));
                            }
                            *isum = _mm256_add_epi32(
                                *isum,
                                _mm256_add_epi32(
                                    _mm256_mullo_epi32(s0, sc[0]),
                                    _mm256_mullo_epi32(s1, sc[1]),
                                ),
                            );
                        }
                    }
                    for (t, (acc, isum)) in acc.iter_mut().zip(&isum).enumerate() {
                        let da = _mm256_set1_ps(f32_ptr(ab.add(t * Q8_K_A)));
                        *acc = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(*isum), dw), da, *acc);
                    }
                }
            }
            let mut out = [[0f32; 8]; 8];
            for (o, a) in out.iter_mut().zip(&acc) {
                // SAFETY: `o` is 8 writable f32.
                unsafe { _mm256_storeu_ps(o.as_mut_ptr(), *a) };
            }
            out
        }

        /// The dots of 8 Q4_K weight rows, packed by [`pack_q4k_rows`], with a tile of 8 tokens' Q8_K
        /// activations: `out[t][r]`, bit-identical to `simd::avx2::dot4_q4_k_gemv` and
        /// `simd::avx2::dot_q4_k` of each pair (the single-token order of decode steps: the
        /// block's scaled sub-block dots and min terms summed in integers, then
        /// `acc += isum * (d_w * d_a)`, `acc_m += msum * (dmin_w * d_a)`, fused, and `acc - acc_m`).
        #[inline]
        #[target_feature(enable = $features)]
        unsafe fn gemm_q4_k_gemv_body(
            packed: &[u8],
            tile: &ActTile<'_>,
            n: usize,
        ) -> [[f32; 8]; 8] {
            let nb = packed_blocks(packed, n, 256, PACKED_Q4K);
            assert!(
                tile.k8.len() >= 8 * nb * Q8_K_A && tile.ksub8.len() >= 64 * nb,
                "activation tile not prepared for this kernel"
            );
            // `packed` may go on with the next group of rows (see `gemm32`).
            let next = packed.len() >= 2 * nb * PACKED_Q4K;
            let low4 = _mm256_set1_epi8(0x0F);
            // Per token, lanes = rows.
            let mut acc = [_mm256_setzero_ps(); 8];
            let mut acc_m = [_mm256_setzero_ps(); 8];
            for i in 0..nb {
                // SAFETY: block i < nb of the packed rows and of every token of the tile is in bounds
                // (lengths checked above); the offsets are inside the blocks per the layouts.
                unsafe {
                    let pb = packed.as_ptr().add(i * PACKED_Q4K);
                    if i + PREFETCH_BLOCKS < nb {
                        prefetch_l1(pb.add(PREFETCH_BLOCKS * PACKED_Q4K), PACKED_Q4K);
                    }
                    if next {
                        // One pass over the blocks: the next group's, block by block.
                        prefetch_part(packed.as_ptr().add(nb * PACKED_Q4K), nb * PACKED_Q4K, i, nb);
                    }
                    let (dw, dmin) = (
                        _mm256_castsi256_ps(get(pb, 0)),
                        _mm256_castsi256_ps(get(pb, 32)),
                    );
                    // Token t's block: d (f32) at 0, quants at 4.
                    let ab = tile.k8.as_ptr().add(i * 8 * Q8_K_A);
                    let sub = tile.ksub8.as_ptr().add(i * 64);
                    // Plain loops rather than array maps and closures, which are not inlined
                    // into this function's features.
                    for (t, acc_m) in acc_m.iter_mut().enumerate() {
                        let bs = sub.add(8 * t);
                        let mut msum = _mm256_mullo_epi32(get(pb, 320), _mm256_set1_epi32(*bs));
                        for s in 1..8 {
                            let m = get(pb, 320 + 32 * s);
                            msum = _mm256_add_epi32(
                                msum,
                                _mm256_mullo_epi32(m, _mm256_set1_epi32(*bs.add(s))),
                            );
                        }
                        let scale_m = _mm256_mul_ps(dmin, _mm256_set1_ps(f32_ptr(ab.add(t * Q8_K_A))));
                        *acc_m = _mm256_fmadd_ps(_mm256_cvtepi32_ps(msum), scale_m, *acc_m);
                    }
                    let mut isum = [_mm256_setzero_si256(); 8];
                    for c in 0..4 {
                        let (mut lo, mut hi) = ([_mm256_setzero_si256(); 8], [_mm256_setzero_si256(); 8]);
                        for k in 0..8 {
                            let raw = get(pb, 576 + 256 * c + 32 * k);
                            lo[k] = _mm256_and_si256(raw, low4);
                            hi[k] = _mm256_and_si256(_mm256_srli_epi16::<4>(raw), low4);
                        }
                        let (sc_lo, sc_hi) = (get(pb, 64 + 64 * c), get(pb, 96 + 64 * c));
                        for (t, isum) in isum.iter_mut().enumerate() {
                            let y = ab.add(t * Q8_K_A + 4 + 64 * c);
                            let (mut s_lo, mut s_hi) = (_mm256_setzero_si256(), _mm256_setzero_si256());
                            for k in 0..8 {
                                s_lo = $dp(s_lo, lo[k], bcast_i32(y.add(4 * k)));
                                s_hi = $dp(s_hi, hi[k], bcast_i32(y.add(32 + 4 * k)));
                            }
                            *isum = _mm256_add_epi32(
                                *isum,
                                _mm256_add_epi32(
                                    _mm256_mullo_epi32(s_lo, sc_lo),
                                    _mm256_mullo_epi32(s_hi, sc_hi),
                                ),
                            );
                        }
                    }
                    for (t, (acc, isum)) in acc.iter_mut().zip(&isum).enumerate() {
                        let scale = _mm256_mul_ps(dw, _mm256_set1_ps(f32_ptr(ab.add(t * Q8_K_A))));
                        *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(*isum), scale, *acc);
                    }
                }
            }
            let mut out = [[0f32; 8]; 8];
            for (o, (a, m)) in out.iter_mut().zip(acc.iter().zip(&acc_m)) {
                // SAFETY: `o` is 8 writable f32.
                unsafe { _mm256_storeu_ps(o.as_mut_ptr(), _mm256_sub_ps(*a, *m)) };
            }
            out
        }

        /// The dots of 8 Q6_K weight rows, packed by [`pack_q6k_rows`], with a tile of 8 tokens' Q8_K
        /// activations: `out[t][r]`, bit-identical to `simd::avx2::dot4_q6_k` and
        /// `simd::avx2::dot_q6_k` of each pair (llama.cpp's `vec_dot` order of decode steps).
        ///
        /// That order keeps 8 i32 lanes per block (lane `k`: elements `4k..4k + 4` of every group of
        /// 32, each group's 4 scaled by its sub-block, minus the `-32` code offset of sub-blocks
        /// `2k, 2k + 1`), scaled and accumulated lane by lane block after block, then [`hsum_ps`]'s
        /// tree. Here each (row, token) has those 8 lanes as 8 vectors with the rows in the vector
        /// lanes: a lane's per-group scale goes into the multiply-add ([`dps_vnni`] /
        /// [`dps_avx2`]), the offset term starts the lane (`-32 * sc` pairs times the token's two
        /// 16-quant sums, one `madd`), and the float accumulators (64 vectors) are touched once a
        /// block per lane and token.
        #[inline]
        #[target_feature(enable = $features)]
        unsafe fn gemm_q6_k_lanes_body(
            packed: &[u8],
            tile: &ActTile<'_>,
            n: usize,
        ) -> [[f32; 8]; 8] {
            let nb = packed_blocks(packed, n, 256, PACKED_Q6K);
            assert!(
                tile.k8.len() >= 8 * nb * Q8_K_A,
                "activation tile not prepared for this kernel"
            );
            // `packed` may go on with the next group of rows (see `gemm32`).
            let next = packed.len() >= 2 * nb * PACKED_Q6K;
            // `acc[k][t]`: lane k of token t, the rows in the vector lanes.
            let mut acc = [[_mm256_setzero_ps(); 8]; 8];
            for i in 0..nb {
                // SAFETY: block i < nb of the packed rows and of every token of the tile is in bounds
                // (lengths checked above); the offsets are inside the blocks per the layouts.
                unsafe {
                    let pb = packed.as_ptr().add(i * PACKED_Q6K);
                    if i + PREFETCH_BLOCKS < nb {
                        prefetch_l1(pb.add(PREFETCH_BLOCKS * PACKED_Q6K), PACKED_Q6K);
                    }
                    if next {
                        // One pass over the blocks: the next group's, block by block.
                        prefetch_part(packed.as_ptr().add(nb * PACKED_Q6K), nb * PACKED_Q6K, i, nb);
                    }
                    let dw = _mm256_castsi256_ps(get(pb, 0));
                    let ab = tile.k8.as_ptr().add(i * 8 * Q8_K_A);
                    // Plain loops rather than array maps and closures, which are not inlined
                    // into this function's features.
                    let mut d = [_mm256_setzero_ps(); 8];
                    for (t, d) in d.iter_mut().enumerate() {
                        *d = _mm256_mul_ps(dw, _mm256_set1_ps(f32_ptr(ab.add(t * Q8_K_A))));
                    }
                    // The 16 scales (i32 per row) as i16 pairs: `sc2[s]` = (sc_s, sc_s) for the
                    // products, `off[k]` = (-32 sc_2k, -32 sc_2k+1) for the offset term.
                    let mut sc2 = [_mm256_setzero_si256(); 16];
                    for (s, sc2) in sc2.iter_mut().enumerate() {
                        let v = get(pb, 32 + 32 * s);
                        *sc2 = _mm256_blend_epi16::<0xAA>(v, _mm256_slli_epi32::<16>(v));
                    }
                    let mut off = [_mm256_setzero_si256(); 8];
                    for (k, off) in off.iter_mut().enumerate() {
                        let zero = _mm256_setzero_si256();
                        let lo = _mm256_sub_epi32(zero, _mm256_slli_epi32::<5>(get(pb, 32 + 64 * k)));
                        let hi = _mm256_sub_epi32(zero, _mm256_slli_epi32::<5>(get(pb, 64 + 64 * k)));
                        *off = _mm256_blend_epi16::<0xAA>(lo, _mm256_slli_epi32::<16>(hi));
                    }
                    for (k, acc) in acc.iter_mut().enumerate() {
                        // The offset term from the 16-quant sums 2k, 2k + 1 (i16 at 260 + 4k).
                        let mut lane = [_mm256_setzero_si256(); 8];
                        for (t, lane) in lane.iter_mut().enumerate() {
                            let bs = bcast_i32(ab.add(t * Q8_K_A + Q8K_BSUMS + 4 * k));
                            *lane = _mm256_madd_epi16(off[k], bs);
                        }
                        for j in 0..8 {
                            let codes = get(pb, 544 + 256 * j + 32 * k);
                            let s = sc2[2 * j + k / 4];
                            for (t, lane) in lane.iter_mut().enumerate() {
                                let y = ab.add(t * Q8_K_A + 4 + 32 * j + 4 * k);
                                *lane = $dps(*lane, codes, bcast_i32(y), s);
                            }
                        }
                        for (t, acc) in acc.iter_mut().enumerate() {
                            *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(lane[t]), d[t], *acc);
                        }
                    }
                }
            }
            let mut out = [[0f32; 8]; 8];
            for (t, o) in out.iter_mut().enumerate() {
                // [`hsum_ps`]'s tree, lane by lane: ((a0 + a4) + (a2 + a6)) + ((a1 + a5) + (a3 + a7)).
                let mut s = [_mm256_setzero_ps(); 4];
                for (k, s) in s.iter_mut().enumerate() {
                    *s = _mm256_add_ps(acc[k][t], acc[k + 4][t]);
                }
                let h = _mm256_add_ps(_mm256_add_ps(s[0], s[2]), _mm256_add_ps(s[1], s[3]));
                // SAFETY: `o` is 8 writable f32.
                unsafe { _mm256_storeu_ps(o.as_mut_ptr(), h) };
            }
            out
        }

        $(
            #[target_feature(enable = $features)]
            pub(crate) fn $gemm(
                packed: &[u8],
                tile: &ActTile<'_>,
                n: usize,
            ) -> [[f32; GEMM_ROWS]; GEMM_TOKENS] {
                // SAFETY: the dispatcher hands this out only on CPUs with these features.
                unsafe { $body(packed, tile, n) }
            }
        )*
    };
}

/// Packers, shared by both levels (AVX2 instructions only).
macro_rules! packers {
    ($($pack:ident = $body:expr;)*) => {
        $(
            #[target_feature(enable = "avx2,fma,f16c")]
            pub(crate) fn $pack(w: [&[u8]; GEMM_ROWS], n: usize, buf: &mut Vec<u8>) {
                // SAFETY: the dispatcher hands this out only on CPUs with AVX2.
                unsafe { $body(w, n, buf) }
            }
        )*
    };
}

packers!(
    pack_q4_0 = pack32::<K_Q4_0>;
    pack_q4_1 = pack32::<K_Q4_1>;
    pack_q5_0 = pack32::<K_Q5_0>;
    pack_q5_1 = pack32::<K_Q5_1>;
    pack_q8_0 = pack32::<K_Q8_0>;
    pack_iq4_nl = pack32::<K_IQ4_NL>;
    pack_q4_k = pack_q4k_rows;
    pack_q6_k = pack_q6k_rows;
);

/// The AVX-512 VNNI level.
pub(crate) mod vnni {
    tile_kernels!("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c", dp_vnni, dps_vnni,
        gemm_q4_0 = gemm32::<K_Q4_0>;
        gemm_q4_1 = gemm32::<K_Q4_1>;
        gemm_q5_0 = gemm32::<K_Q5_0>;
        gemm_q5_1 = gemm32::<K_Q5_1>;
        gemm_q8_0 = gemm32::<K_Q8_0>;
        gemm_iq4_nl = gemm32::<K_IQ4_NL>;
        gemm_q4_k = gemm_q4_k_body;
        gemm_q6_k = gemm_q6_k_body;
        gemm_q4_k_gemv = gemm_q4_k_gemv_body;
        gemm_q6_k_lanes = gemm_q6_k_lanes_body;
    );
}

/// The AVX2 level (no Q8_0 / IQ4_NL: see the module docs).
pub(crate) mod avx2 {
    tile_kernels!("avx2,fma,f16c", dp_avx2, dps_avx2,
        gemm_q4_0 = gemm32::<K_Q4_0>;
        gemm_q4_1 = gemm32::<K_Q4_1>;
        gemm_q5_0 = gemm32::<K_Q5_0>;
        gemm_q5_1 = gemm32::<K_Q5_1>;
        gemm_q4_k = gemm_q4_k_body;
        gemm_q6_k = gemm_q6_k_body;
        gemm_q4_k_gemv = gemm_q4_k_gemv_body;
        gemm_q6_k_lanes = gemm_q6_k_lanes_body;
    );
}
