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

use super::avx2::{f16_at, f32_at, float_lens, hsum_ps, load16, load32, u32_ptr};
use super::layout::*;
use super::tiles::{layout32, K_IQ4_NL, K_Q4_0, K_Q4_1, K_Q5_0, K_Q5_1, K_Q8_0};
use super::ActRow;
use std::arch::x86_64::*;

// ---------------------------------------------------------------------------------------------
// 32-element block types x prepared Q8_0 / Q8_1 activations, two blocks per zmm
// ---------------------------------------------------------------------------------------------
//
// Each weight block becomes 32 unsigned codes `u` and a zero point `o` (value = d * (u - o), or
// d * u + m for the types with a min). With the activation quants `q` contiguous, two blocks are
// one 64-byte `vpdpbusd` operand, and `sum((u - o) * q) = dot(u, q) + dot(o, -q)` stays exact in
// integers with a second `vpdpbusd` on the prepared negated quants.

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
