//! AVX-512 (F, BW, VL, VNNI) kernels, for Ice Lake / Zen 4 and newer.
//!
//! VNNI: `vpdpbusd` does u8 x i8 -> i32 in one instruction without the i16 saturation of
//! `maddubs`, and `vpdpwssd` fuses the K-quant scale multiply-add. The 32-element block types
//! process two blocks per zmm instruction (Zen 4 executes a zmm op as two 256-bit halves, so the
//! gain is in instructions per block, which is what limits these kernels) against prepared
//! activations ([`super::ActRow`]); the K-quants stay 256 bits wide. AVX-512BW mask registers
//! expand the Q5 high bits in one instruction. Float dots use zmm FMAs. Types not listed here use
//! the AVX2 kernels (every AVX-512 level CPU has AVX2).
//!
//! Like [`super::avx2`], each kernel is a safe `#[target_feature]` function that bounds-checks its
//! slices; the dispatcher only hands it out when the features are present.

use super::avx2::{
    f16_at, f32_at, f32_ptr, float_lens, hsum_ps, k4_scales_mins, load16, load32, nibbles32,
    u32_ptr,
};
use super::layout::*;
use super::{ActRow, ActTile};
use std::arch::x86_64::*;

// ---------------------------------------------------------------------------------------------
// 32-element block types x prepared Q8_0 / Q8_1 activations, two blocks per zmm
// ---------------------------------------------------------------------------------------------
//
// Each weight block becomes 32 unsigned codes `u` and a zero point `o` (value = d * (u - o), or
// d * u + m for the types with a min). With the activation quants `q` contiguous, two blocks are
// one 64-byte `vpdpbusd` operand, and `sum((u - o) * q) = dot(u, q) + dot(o, -q)` stays exact in
// integers with a second `vpdpbusd` on the prepared negated quants.

/// The weight types of this section.
const K_Q4_0: u8 = 0;
const K_Q4_1: u8 = 1;
const K_Q5_0: u8 = 2;
const K_Q5_1: u8 = 3;
const K_Q8_0: u8 = 4;
const K_IQ4_NL: u8 = 5;

/// (block bytes, offset of the quants, zero point, has a min) of a 32-element weight type.
const fn layout32(kind: u8) -> (usize, usize, u8, bool) {
    match kind {
        K_Q4_0 => (Q4_0_W, 2, 8, false),
        K_Q4_1 => (Q4_1_W, 4, 0, true),
        K_Q5_0 => (Q5_0_W, 6, 16, false),
        K_Q5_1 => (Q5_1_W, 8, 0, true),
        K_Q8_0 => (Q8_0_W, 2, 128, false),
        _ => (IQ4_NL_W, 2, 128, false),
    }
}

/// The 64 nibble codes of two Q4-style blocks (16 bytes each at `p0`, `p1`) in element order:
/// `[b0 low nibbles | b0 high | b1 low | b1 high]`.
///
/// # Safety
/// 16 bytes at `p0` and at `p1` must be readable.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn nibbles64(p0: *const u8, p1: *const u8) -> __m512i {
    // SAFETY: the caller guarantees 16 readable bytes at each pointer.
    let (b0, b1) = unsafe { (load16(p0), load16(p1)) };
    let z = _mm512_inserti64x4::<1>(
        _mm512_castsi256_si512(_mm256_broadcastsi128_si256(b0)),
        _mm256_broadcastsi128_si256(b1),
    );
    // Shift the second copy of each block (128-bit lanes 1 and 3 = words 8..16, 24..32) by 4.
    let z = _mm512_mask_srli_epi16(z, 0xFF00_FF00, z, 4);
    _mm512_and_si512(z, _mm512_set1_epi8(0x0F))
}

/// Unsigned codes of the blocks at `w0` and `w1` (64 bytes, element order).
///
/// # Safety
/// Both blocks must be readable whole blocks of the `KIND` type.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn codes64<const KIND: u8>(w0: *const u8, w1: *const u8) -> __m512i {
    let (_, qs, _, _) = layout32(KIND);
    // SAFETY: all offsets are inside the blocks per the layouts.
    unsafe {
        match KIND {
            K_Q8_0 => {
                let z = _mm512_inserti64x4::<1>(
                    _mm512_castsi256_si512(load32(w0.add(qs))),
                    load32(w1.add(qs)),
                );
                // i8 -> u8 with zero point 128.
                _mm512_xor_si512(z, _mm512_set1_epi8(0x80u8 as i8))
            }
            K_IQ4_NL => {
                // The codebook shifted to unsigned (+128), in every 128-bit lane.
                let t = _mm_xor_si128(load16(KVALUES.as_ptr().cast()), _mm_set1_epi8(0x80u8 as i8));
                _mm512_shuffle_epi8(_mm512_broadcast_i32x4(t), nibbles64(w0.add(qs), w1.add(qs)))
            }
            K_Q5_0 | K_Q5_1 => {
                let hb = if KIND == K_Q5_0 { 2 } else { 4 };
                let bits = u32_ptr(w0.add(hb)) as u64 | (u32_ptr(w1.add(hb)) as u64) << 32;
                let z = nibbles64(w0.add(qs), w1.add(qs));
                // Byte j of the pair <-> bit j of (qh0 | qh1 << 32): add the fifth bit.
                _mm512_mask_add_epi8(z, _cvtu64_mask64(bits), z, _mm512_set1_epi8(16))
            }
            _ => nibbles64(w0.add(qs), w1.add(qs)),
        }
    }
}

/// The f16 at `p0` and at `p1` as f32 lanes 0 and 1 of an xmm.
///
/// # Safety
/// 2 bytes at each pointer must be readable.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn f16_pair(p0: *const u8, p1: *const u8) -> __m128 {
    // SAFETY: the caller guarantees 2 readable bytes at each pointer.
    let (a, b) = unsafe {
        (
            p0.cast::<u16>().read_unaligned(),
            p1.cast::<u16>().read_unaligned(),
        )
    };
    let v = u16::from_le(a) as u32 | (u16::from_le(b) as u32) << 16;
    _mm_cvtph_ps(_mm_cvtsi32_si128(v as i32))
}

/// The (d, m) f16 pairs at `p0` and `p1` as f32 lanes [d0, m0, d1, m1].
///
/// # Safety
/// 4 bytes at each pointer must be readable.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn f16_quad(p0: *const u8, p1: *const u8) -> __m128 {
    // SAFETY: the caller guarantees 4 readable bytes at each pointer.
    let v = unsafe { u32_ptr(p0) as u64 | (u32_ptr(p1) as u64) << 32 };
    _mm_cvtph_ps(_mm_cvtsi64_si128(v as i64))
}

/// Pointers into one token's prepared activation arrays.
#[derive(Clone, Copy)]
struct Prep {
    qs: *const u8,
    nq: *const u8,
    d: *const f32,
    s: *const f32,
}

/// Running sums of [`dot32`] for `T` tokens, in llama.cpp's x86 order: one 8-lane accumulator
/// (lane `j` sums the products of elements `4j..4j + 4` of every block, one block after another)
/// and the min terms summed one block after another. Gemma-class models amplify last-bit
/// differences, so matching the order is what lets the logits match the reference.
struct Acc32<const T: usize> {
    acc: [__m256; T],
    summs: [f32; T],
}

/// Adds blocks `i` and `i + 1` (or, if `TAIL`, only block `i`) of a weight row, dotted with each
/// of `T` tokens, to `s`. The weight codes and scales are unpacked once for all tokens.
///
/// # Safety
/// Weight blocks `i` and `i + 1` (`i` if `TAIL`) must be readable at `wp`, and each token's
/// prepared arrays must hold them: quants `[32i, 32i + 64)`, scales `i, i + 1` (`32` quants and
/// one scale if `TAIL`).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn pair32<const KIND: u8, const TAIL: bool, const T: usize>(
    s: &mut Acc32<T>,
    i: usize,
    wp: *const u8,
    acts: &[Prep; T],
) {
    let (wsz, _, zero_point, has_min) = layout32(KIND);
    // SAFETY: the caller guarantees the ranges above; `TAIL` reads only block `i` (the weight
    // block `i` twice, the activations under a 32-byte / one-lane mask).
    unsafe {
        let w0 = wp.add(i * wsz);
        let w1 = if TAIL { w0 } else { w0.add(wsz) };
        let codes = codes64::<KIND>(w0, w1);
        // [d0, m0, d1, m1] or [d0, d1, .., ..].
        let wsc = if has_min {
            f16_quad(w0, w1)
        } else {
            f16_pair(w0, w1)
        };
        for (t, a) in acts.iter().enumerate() {
            let (q, nq, da, sa) = if TAIL {
                // The lone last block pairs with itself on the weight side and with zeros on
                // the activation side, so it is counted once.
                let m = _cvtu64_mask64(u32::MAX as u64);
                (
                    _mm512_maskz_loadu_epi8(m, a.qs.add(32 * i).cast()),
                    _mm512_maskz_loadu_epi8(m, a.nq.add(32 * i).cast()),
                    _mm_maskz_loadu_ps(1, a.d.add(i)),
                    _mm_maskz_loadu_ps(1, a.s.add(i)),
                )
            } else {
                (
                    _mm512_loadu_si512(a.qs.add(32 * i).cast()),
                    _mm512_loadu_si512(a.nq.add(32 * i).cast()),
                    _mm_castpd_ps(_mm_load_sd(a.d.add(i).cast())),
                    _mm_castpd_ps(_mm_load_sd(a.s.add(i).cast())),
                )
            };
            let mut p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), codes, q);
            if zero_point != 0 {
                p = _mm512_dpbusd_epi32(p, _mm512_set1_epi8(zero_point as i8), nq);
            }
            let pf = _mm512_cvtepi32_ps(p);
            let (lo, hi) = (
                _mm512_castps512_ps256(pf),
                _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(pf))),
            );
            if has_min {
                // [d0*da0, m0*s0, d1*da1, m1*s1].
                let sc = _mm_mul_ps(wsc, _mm_unpacklo_ps(da, sa));
                s.acc[t] = _mm256_fmadd_ps(lo, _mm256_broadcastss_ps(sc), s.acc[t]);
                s.summs[t] += _mm_cvtss_f32(_mm_movehdup_ps(sc));
                if !TAIL {
                    let sc1 = _mm_movehl_ps(sc, sc);
                    s.acc[t] = _mm256_fmadd_ps(hi, _mm256_broadcastss_ps(sc1), s.acc[t]);
                    s.summs[t] += _mm_cvtss_f32(_mm_movehdup_ps(sc1));
                }
            } else {
                // [d0*da0, d1*da1].
                let sc = _mm_mul_ps(wsc, da);
                s.acc[t] = _mm256_fmadd_ps(lo, _mm256_broadcastss_ps(sc), s.acc[t]);
                if !TAIL {
                    let sc1 = _mm_movehdup_ps(sc);
                    s.acc[t] = _mm256_fmadd_ps(hi, _mm256_broadcastss_ps(sc1), s.acc[t]);
                }
            }
        }
    }
}

/// The dots of a row of a 32-element weight type with `T` tokens' prepared activations, two
/// blocks per step.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn dot32<const KIND: u8, const T: usize>(w: &[u8], acts: [&ActRow<'_>; T], n: usize) -> [f32; T] {
    let (wsz, _, _, _) = layout32(KIND);
    assert!(
        n.is_multiple_of(32),
        "{n} elements are not whole blocks of 32"
    );
    let nb = n / 32;
    assert!(w.len() >= nb * wsz, "row too short");
    let prep = acts.map(|a| {
        assert!(
            a.qs.len() >= n && a.nq.len() >= n && a.d.len() >= nb && a.s.len() >= nb,
            "activations not prepared for this kernel"
        );
        Prep {
            qs: a.qs.as_ptr().cast(),
            nq: a.nq.as_ptr().cast(),
            d: a.d.as_ptr(),
            s: a.s.as_ptr(),
        }
    });
    let wp = w.as_ptr();
    let mut s = Acc32 {
        acc: [_mm256_setzero_ps(); T],
        summs: [0.0; T],
    };
    let mut i = 0;
    while i + 2 <= nb {
        // SAFETY: blocks i, i + 1 < nb are in bounds of `w` and of the prepared arrays
        // (lengths checked above).
        unsafe { pair32::<KIND, false, T>(&mut s, i, wp, &prep) };
        i += 2;
    }
    if i < nb {
        // SAFETY: block i < nb, as above.
        unsafe { pair32::<KIND, true, T>(&mut s, i, wp, &prep) };
    }
    std::array::from_fn(|t| hsum_ps(s.acc[t]) + s.summs[t])
}

/// Q4_0 weights x prepared Q8_0 activations (zero point 8).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(crate) fn dot_q4_0(w: &[u8], act: &ActRow<'_>, n: usize) -> f32 {
    dot32::<K_Q4_0, 1>(w, [act], n)[0]
}

/// Q4_1 weights x prepared Q8_1 activations (`d*da*dot + m*s`).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(crate) fn dot_q4_1(w: &[u8], act: &ActRow<'_>, n: usize) -> f32 {
    dot32::<K_Q4_1, 1>(w, [act], n)[0]
}

/// Q5_0 weights x prepared Q8_0 activations (zero point 16).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(crate) fn dot_q5_0(w: &[u8], act: &ActRow<'_>, n: usize) -> f32 {
    dot32::<K_Q5_0, 1>(w, [act], n)[0]
}

/// Q5_1 weights x prepared Q8_1 activations.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(crate) fn dot_q5_1(w: &[u8], act: &ActRow<'_>, n: usize) -> f32 {
    dot32::<K_Q5_1, 1>(w, [act], n)[0]
}

/// Q8_0 weights x prepared Q8_0 activations (weights biased by 128).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(crate) fn dot_q8_0(w: &[u8], act: &ActRow<'_>, n: usize) -> f32 {
    dot32::<K_Q8_0, 1>(w, [act], n)[0]
}

/// IQ4_NL weights x prepared Q8_0 activations (codebook biased by 128).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(crate) fn dot_iq4_nl(w: &[u8], act: &ActRow<'_>, n: usize) -> f32 {
    dot32::<K_IQ4_NL, 1>(w, [act], n)[0]
}

/// [`dot_q4_0`] for 4 tokens at once (the weight row is unpacked once).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(crate) fn dot4_q4_0(w: &[u8], acts: [&ActRow<'_>; 4], n: usize) -> [f32; 4] {
    dot32::<K_Q4_0, 4>(w, acts, n)
}

/// [`dot_q4_1`] for 4 tokens at once (the weight row is unpacked once).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(crate) fn dot4_q4_1(w: &[u8], acts: [&ActRow<'_>; 4], n: usize) -> [f32; 4] {
    dot32::<K_Q4_1, 4>(w, acts, n)
}

/// [`dot_q5_0`] for 4 tokens at once (the weight row is unpacked once).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(crate) fn dot4_q5_0(w: &[u8], acts: [&ActRow<'_>; 4], n: usize) -> [f32; 4] {
    dot32::<K_Q5_0, 4>(w, acts, n)
}

/// [`dot_q5_1`] for 4 tokens at once (the weight row is unpacked once).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(crate) fn dot4_q5_1(w: &[u8], acts: [&ActRow<'_>; 4], n: usize) -> [f32; 4] {
    dot32::<K_Q5_1, 4>(w, acts, n)
}

/// [`dot_q8_0`] for 4 tokens at once (the weight row is unpacked once).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(crate) fn dot4_q8_0(w: &[u8], acts: [&ActRow<'_>; 4], n: usize) -> [f32; 4] {
    dot32::<K_Q8_0, 4>(w, acts, n)
}

/// [`dot_iq4_nl`] for 4 tokens at once (the weight row is unpacked once).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(crate) fn dot4_iq4_nl(w: &[u8], acts: [&ActRow<'_>; 4], n: usize) -> [f32; 4] {
    dot32::<K_IQ4_NL, 4>(w, acts, n)
}

// ---------------------------------------------------------------------------------------------
// 32-element block types: tiles of 2 weight rows x 8 tokens (prompt processing)
// ---------------------------------------------------------------------------------------------
//
// Each output keeps its own 8-lane accumulator, summed block after block exactly as in
// [`dot32`], so a tile gives the single-token kernels' bits. What the tile saves is everything
// around the per-output multiply-adds: a weight block is unpacked once for 8 tokens, the
// zero-point correction once per token for both rows, and the 16 block scales are 2 vector
// products of the rows' scales with the 8 tokens' (laid out block-major by `Activations`).

/// The 32 unsigned codes of one block at `w` (element order).
///
/// # Safety
/// One whole block of the `KIND` type must be readable at `w`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
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
                let z = nibbles32(load16(w.add(qs)));
                _mm256_mask_add_epi8(z, u32_ptr(w.add(hb)), z, _mm256_set1_epi8(16))
            }
            _ => nibbles32(load16(w.add(qs))),
        }
    }
}

/// Bytes of one packed block of 8 rows of a 32-element type: the transposed codes (8 vectors,
/// vector `k` holds every row's codes `4k..4k + 4`), then `d` and the min `m` of the 8 rows
/// (f32 vectors).
const PACKED32: usize = 320;

/// Stores `v` at byte `off` of `buf`.
///
/// # Safety
/// `off + 32 <= buf.len()`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn put(buf: &mut [u8], off: usize, v: __m256i) {
    // SAFETY: per the contract.
    unsafe { _mm256_storeu_si256(buf.as_mut_ptr().add(off).cast(), v) }
}

/// The 32 bytes at byte `off` of `p`.
///
/// # Safety
/// `p + off..p + off + 32` must be readable.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn get(p: *const u8, off: usize) -> __m256i {
    // SAFETY: per the contract.
    unsafe { _mm256_loadu_si256(p.add(off).cast()) }
}

/// Packs 8 rows of a 32-element type, `PACKED32` bytes per block.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn pack32<const KIND: u8>(w: [&[u8]; 8], n: usize, buf: &mut Vec<u8>) {
    let (wsz, _, _, has_min) = layout32(KIND);
    assert!(
        n.is_multiple_of(32),
        "{n} elements are not whole blocks of 32"
    );
    let nb = n / 32;
    assert!(w.iter().all(|w| w.len() >= nb * wsz), "row too short");
    buf.resize(nb * PACKED32, 0);
    for b in 0..nb {
        // SAFETY: block b < nb of every row is readable (checked above), and the packed block
        // fits in `buf` (resized above).
        unsafe {
            let wp: [*const u8; 8] = std::array::from_fn(|r| w[r].as_ptr().add(b * wsz));
            let codes = transpose8_epi32(wp.map(|p| codes32::<KIND>(p)));
            for (k, c) in codes.into_iter().enumerate() {
                put(buf, b * PACKED32 + 32 * k, c);
            }
            put(
                buf,
                b * PACKED32 + 256,
                _mm256_castps_si256(f16_rows(&wp, 0)),
            );
            if has_min {
                put(
                    buf,
                    b * PACKED32 + 288,
                    _mm256_castps_si256(f16_rows(&wp, 2)),
                );
            }
        }
    }
}

/// The dots of 8 weight rows of a 32-element type, packed by [`pack32`], with a tile of 8
/// tokens' activations: `out[t][r]`, bit-identical to [`dot32`] of each pair.
///
/// Each output's float order is [`dot32`]'s: 8 lanes `k` (lane `k` sums elements `4k..4k + 4`
/// of every block) accumulated block after block, then [`hsum_ps`]'s tree. Here the lanes of a
/// vector are the 8 rows instead, and each output's 8 lane accumulators are 8 vectors: each
/// `vpdpbusd` takes the rows' transposed codes and one token's 4 quants as a broadcast, and each
/// block's scale products `d_w * d_a` are one vector multiply for all rows.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn gemm32<const KIND: u8>(packed: &[u8], tile: &ActTile<'_>, n: usize) -> [[f32; 8]; 8] {
    let (_, _, _, has_min) = layout32(KIND);
    assert!(
        n.is_multiple_of(32),
        "{n} elements are not whole blocks of 32"
    );
    let nb = n / 32;
    assert!(
        packed.len() >= nb * PACKED32,
        "rows not packed for this kernel"
    );
    assert!(
        tile.q8.len() >= 256 * nb
            && tile.ls8.len() >= 64 * nb
            && tile.d8.len() >= 8 * nb
            && (!has_min || tile.s8.len() >= 8 * nb),
        "activation tile not prepared for this kernel"
    );
    let (pk, q8, ls8) = (packed.as_ptr(), tile.q8.as_ptr(), tile.ls8.as_ptr());
    let mut out = [[0f32; 8]; 8];
    for t0 in (0..8).step_by(2) {
        // `acc[k][i]`: lane k, token t0 + i, the rows in the vector lanes.
        let mut acc = [[_mm256_setzero_ps(); 2]; 8];
        let mut summ = [_mm256_setzero_ps(); 2];
        for b in 0..nb {
            // SAFETY: block b < nb of the packed rows and of tokens t0, t0 + 1 is inside the
            // arrays (lengths checked above).
            unsafe {
                let pb = pk.add(b * PACKED32);
                let dw = _mm256_castsi256_ps(get(pb, 256));
                let s: [__m256; 2] = std::array::from_fn(|i| {
                    _mm256_mul_ps(dw, _mm256_set1_ps(*tile.d8.get_unchecked(8 * b + t0 + i)))
                });
                let y = [0, 1].map(|i| q8.add(256 * b + 32 * (t0 + i)));
                let l = [0, 1].map(|i| ls8.add(64 * b + 8 * (t0 + i)));
                for (k, acc) in acc.iter_mut().enumerate() {
                    let codes = get(pb, 32 * k);
                    for i in 0..2 {
                        // Each lane starts at -zp * (the token's 4 quants' sum): the zero point.
                        let p = _mm256_dpbusd_epi32(
                            _mm256_set1_epi32(*l[i].add(k)),
                            codes,
                            bcast_i32(y[i].add(4 * k).cast()),
                        );
                        acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), s[i], acc[i]);
                    }
                }
                if has_min {
                    let mw = _mm256_castsi256_ps(get(pb, 288));
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

/// [`pack32`] for [`gemm_q4_0`].
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(crate) fn pack_q4_0(w: [&[u8]; 8], n: usize, buf: &mut Vec<u8>) {
    pack32::<K_Q4_0>(w, n, buf)
}

/// [`dot_q4_0`] of 8 packed weight rows with 8 tokens: `out[t][r]`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(crate) fn gemm_q4_0(packed: &[u8], tile: &ActTile<'_>, n: usize) -> [[f32; 8]; 8] {
    gemm32::<K_Q4_0>(packed, tile, n)
}

/// [`pack32`] for [`gemm_q4_1`].
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(crate) fn pack_q4_1(w: [&[u8]; 8], n: usize, buf: &mut Vec<u8>) {
    pack32::<K_Q4_1>(w, n, buf)
}

/// [`dot_q4_1`] of 8 packed weight rows with 8 tokens: `out[t][r]`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(crate) fn gemm_q4_1(packed: &[u8], tile: &ActTile<'_>, n: usize) -> [[f32; 8]; 8] {
    gemm32::<K_Q4_1>(packed, tile, n)
}

/// [`pack32`] for [`gemm_q5_0`].
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(crate) fn pack_q5_0(w: [&[u8]; 8], n: usize, buf: &mut Vec<u8>) {
    pack32::<K_Q5_0>(w, n, buf)
}

/// [`dot_q5_0`] of 8 packed weight rows with 8 tokens: `out[t][r]`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(crate) fn gemm_q5_0(packed: &[u8], tile: &ActTile<'_>, n: usize) -> [[f32; 8]; 8] {
    gemm32::<K_Q5_0>(packed, tile, n)
}

/// [`pack32`] for [`gemm_q5_1`].
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(crate) fn pack_q5_1(w: [&[u8]; 8], n: usize, buf: &mut Vec<u8>) {
    pack32::<K_Q5_1>(w, n, buf)
}

/// [`dot_q5_1`] of 8 packed weight rows with 8 tokens: `out[t][r]`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(crate) fn gemm_q5_1(packed: &[u8], tile: &ActTile<'_>, n: usize) -> [[f32; 8]; 8] {
    gemm32::<K_Q5_1>(packed, tile, n)
}

/// [`pack32`] for [`gemm_q8_0`].
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(crate) fn pack_q8_0(w: [&[u8]; 8], n: usize, buf: &mut Vec<u8>) {
    pack32::<K_Q8_0>(w, n, buf)
}

/// [`dot_q8_0`] of 8 packed weight rows with 8 tokens: `out[t][r]`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(crate) fn gemm_q8_0(packed: &[u8], tile: &ActTile<'_>, n: usize) -> [[f32; 8]; 8] {
    gemm32::<K_Q8_0>(packed, tile, n)
}

/// [`pack32`] for [`gemm_iq4_nl`].
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(crate) fn pack_iq4_nl(w: [&[u8]; 8], n: usize, buf: &mut Vec<u8>) {
    pack32::<K_IQ4_NL>(w, n, buf)
}

/// [`dot_iq4_nl`] of 8 packed weight rows with 8 tokens: `out[t][r]`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(crate) fn gemm_iq4_nl(packed: &[u8], tile: &ActTile<'_>, n: usize) -> [[f32; 8]; 8] {
    gemm32::<K_IQ4_NL>(packed, tile, n)
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
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn transpose8_epi32(r: [__m256i; 8]) -> [__m256i; 8] {
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
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn f16_rows(p: &[*const u8; 8], off: usize) -> __m256 {
    // SAFETY: per the contract.
    let h: [u16; 8] = std::array::from_fn(|r| unsafe {
        u16::from_le(p[r].add(off).cast::<u16>().read_unaligned())
    });
    // SAFETY: `h` is 16 readable bytes.
    _mm256_cvtph_ps(unsafe { _mm_loadu_si128(h.as_ptr().cast()) })
}

/// Byte `j` of each of 8 u64 (the rows' packed 6-bit scales or mins) as i32 lanes.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn byte_of_rows(v: __m512i, j: u32) -> __m256i {
    let s = _mm512_srl_epi64(v, _mm_cvtsi32_si128(8 * j as i32));
    _mm256_and_si256(_mm512_cvtepi64_epi32(s), _mm256_set1_epi32(0xFF))
}

/// The i32 at `p` in all 8 lanes.
///
/// # Safety
/// 4 bytes at `p` must be readable.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn bcast_i32(p: *const u8) -> __m256i {
    // SAFETY: per the contract.
    _mm256_set1_epi32(unsafe { p.cast::<i32>().read_unaligned() })
}

/// Bytes of one packed Q4_K block of 8 rows: `d` and `dmin` (f32 vectors), the 8 sub-block
/// scales and the 8 mins (i32 vectors), and per pair of sub-blocks the 8 transposed vectors of
/// the 32 bytes of nibbles (vector `k` holds every row's bytes `4k..4k + 4`).
const PACKED_Q4K: usize = 64 + 2 * 256 + 4 * 256;

/// Packs 8 Q4_K rows, [`PACKED_Q4K`] bytes per block.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(crate) fn pack_q4_k(w: [&[u8]; 8], n: usize, buf: &mut Vec<u8>) {
    assert!(
        n.is_multiple_of(256),
        "{n} elements are not whole blocks of 256"
    );
    let nb = n / 256;
    assert!(w.iter().all(|w| w.len() >= nb * Q4_K_W), "row too short");
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
            let scales = _mm512_loadu_si512(packed.map(|p| p.0).as_ptr().cast());
            let mins = _mm512_loadu_si512(packed.map(|p| p.1).as_ptr().cast());
            for s in 0..8 {
                put(buf, o + 64 + 32 * s, byte_of_rows(scales, s as u32));
                put(buf, o + 320 + 32 * s, byte_of_rows(mins, s as u32));
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

/// The dots of 8 Q4_K weight rows, packed by [`pack_q4_k`], with a tile of 8 tokens' Q8_K
/// activations: `out[t][r]`, bit-identical to [`super::avx2::dot4_q4_k`] of each pair.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(crate) fn gemm_q4_k(packed: &[u8], tile: &ActTile<'_>, n: usize) -> [[f32; 8]; 8] {
    assert!(
        n.is_multiple_of(256),
        "{n} elements are not whole blocks of 256"
    );
    let nb = n / 256;
    assert!(
        packed.len() >= nb * PACKED_Q4K,
        "rows not packed for this kernel"
    );
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
                        s_lo = _mm256_dpbusd_epi32(s_lo, lo[k], bcast_i32(y.add(4 * k)));
                        s_hi = _mm256_dpbusd_epi32(s_hi, hi[k], bcast_i32(y.add(32 + 4 * k)));
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

/// Byte `j` of each of 8 u64, sign-extended to i32 lanes.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn sbyte_of_rows(v: __m512i, j: u32) -> __m256i {
    let up = _mm512_sll_epi64(v, _mm_cvtsi32_si128(56 - 8 * j as i32));
    _mm512_cvtepi64_epi32(_mm512_srai_epi64::<56>(up))
}

/// The little-endian u64 at `p`.
///
/// # Safety
/// 8 bytes at `p` must be readable.
#[inline]
unsafe fn u64_ptr(p: *const u8) -> u64 {
    // SAFETY: per the contract.
    u64::from_le(unsafe { p.cast::<u64>().read_unaligned() })
}

/// Codes `32j..32j + 32` (0..63) of the Q6_K block at `wp`.
///
/// # Safety
/// A whole Q6_K block must be readable at `wp`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
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
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(crate) fn pack_q6_k(w: [&[u8]; 8], n: usize, buf: &mut Vec<u8>) {
    assert!(
        n.is_multiple_of(256),
        "{n} elements are not whole blocks of 256"
    );
    let nb = n / 256;
    assert!(w.iter().all(|w| w.len() >= nb * Q6_K_W), "row too short");
    buf.resize(nb * PACKED_Q6K, 0);
    for i in 0..nb {
        // SAFETY: block i < nb of every row is readable (checked above; offsets inside the
        // block per the layout), and the packed block fits in `buf` (resized above).
        unsafe {
            let wp: [*const u8; 8] = std::array::from_fn(|r| w[r].as_ptr().add(i * Q6_K_W));
            let o = i * PACKED_Q6K;
            put(buf, o, _mm256_castps_si256(f16_rows(&wp, 208)));
            // The 16 scales (i8) of each row, sub-blocks 0..8 and 8..16 as a u64 per row.
            let lo = _mm512_loadu_si512(wp.map(|p| u64_ptr(p.add(192))).as_ptr().cast());
            let hi = _mm512_loadu_si512(wp.map(|p| u64_ptr(p.add(200))).as_ptr().cast());
            for s in 0..16 {
                let v = sbyte_of_rows(if s < 8 { lo } else { hi }, (s % 8) as u32);
                put(buf, o + 32 + 32 * s, v);
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

/// The dots of 8 Q6_K weight rows, packed by [`pack_q6_k`], with a tile of 8 tokens' Q8_K
/// activations: `out[t][r]`, bit-identical to [`super::avx2::dot4_q6_k_tiled`] of each pair
/// (llama.cpp's order for batches: whole-block integer sums, then `acc += (isum * d_w) * d_a`,
/// the last step fused).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(crate) fn gemm_q6_k(packed: &[u8], tile: &ActTile<'_>, n: usize) -> [[f32; 8]; 8] {
    assert!(
        n.is_multiple_of(256),
        "{n} elements are not whole blocks of 256"
    );
    let nb = n / 256;
    assert!(
        packed.len() >= nb * PACKED_Q6K,
        "rows not packed for this kernel"
    );
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
                        s0 = _mm256_dpbusd_epi32(s0, codes[k], bcast_i32(y.add(4 * k)));
                        s1 = _mm256_dpbusd_epi32(s1, codes[4 + k], bcast_i32(y.add(16 + 4 * k)));
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

// ---------------------------------------------------------------------------------------------
// Float weights x f32 activations (zmm)
// ---------------------------------------------------------------------------------------------

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn float_dot(
    a: &[u8],
    n: usize,
    load: impl Fn(usize) -> __m512,
    scalar: impl Fn(usize) -> f32,
) -> f32 {
    let ap = a.as_ptr();
    let mut acc = [_mm512_setzero_ps(); 4];
    let mut i = 0;
    while i + 64 <= n {
        for (k, acc) in acc.iter_mut().enumerate() {
            // SAFETY: `float_lens` checked `a` holds `n` f32s and i + 16k + 16 <= n.
            let y = unsafe { _mm512_loadu_ps(ap.add(4 * (i + 16 * k)).cast()) };
            *acc = _mm512_fmadd_ps(load(i + 16 * k), y, *acc);
        }
        i += 64;
    }
    while i + 16 <= n {
        // SAFETY: as above.
        let y = unsafe { _mm512_loadu_ps(ap.add(4 * i).cast()) };
        acc[0] = _mm512_fmadd_ps(load(i), y, acc[0]);
        i += 16;
    }
    let mut sum = _mm512_reduce_add_ps(_mm512_add_ps(
        _mm512_add_ps(acc[0], acc[1]),
        _mm512_add_ps(acc[2], acc[3]),
    ));
    for j in i..n {
        sum += scalar(j) * f32_at(a, 4 * j);
    }
    sum
}

/// F32 weights x f32 activations.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(crate) fn dot_f32(w: &[u8], act: &ActRow<'_>, n: usize) -> f32 {
    let a = act.bytes;
    float_lens(w, 4, a, n);
    let wp = w.as_ptr();
    float_dot(
        a,
        n,
        // SAFETY: `float_dot` only asks for i + 16 <= n, checked by `float_lens`.
        |i| unsafe { _mm512_loadu_ps(wp.add(4 * i).cast()) },
        |j| f32_at(w, 4 * j),
    )
}

/// F16 weights x f32 activations.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(crate) fn dot_f16(w: &[u8], act: &ActRow<'_>, n: usize) -> f32 {
    let a = act.bytes;
    float_lens(w, 2, a, n);
    let wp = w.as_ptr();
    float_dot(
        a,
        n,
        // SAFETY: `float_dot` only asks for i + 16 <= n, checked by `float_lens`.
        |i| _mm512_cvtph_ps(unsafe { load32(wp.add(2 * i)) }),
        |j| f16_at(w, 2 * j),
    )
}

/// BF16 weights x f32 activations.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(crate) fn dot_bf16(w: &[u8], act: &ActRow<'_>, n: usize) -> f32 {
    let a = act.bytes;
    float_lens(w, 2, a, n);
    let wp = w.as_ptr();
    float_dot(
        a,
        n,
        |i| {
            // SAFETY: `float_dot` only asks for i + 16 <= n, checked by `float_lens`.
            let h = _mm512_cvtepu16_epi32(unsafe { load32(wp.add(2 * i)) });
            _mm512_castsi512_ps(_mm512_slli_epi32::<16>(h))
        },
        |j| f32::from_bits((u16::from_le_bytes([w[2 * j], w[2 * j + 1]]) as u32) << 16),
    )
}
