//! AVX-512 (F, BW, VL, VNNI) kernels, for Ice Lake / Zen 4 and newer.
//!
//! The integer kernels stay 256 bits wide (Zen 4 splits 512-bit integer ops into two halves, so
//! zmm buys no throughput there) and gain from VNNI: `vpdpbusd` does u8 x i8 -> i32 in one
//! instruction without the i16 saturation of `maddubs`, and `vpdpwssd` fuses the K-quant scale
//! multiply-add. AVX-512BW mask registers expand the Q5 high bits in one instruction. Float dots
//! use zmm FMAs. Types not listed here use the AVX2 kernels (every AVX-512 level CPU has AVX2).
//!
//! Like [`super::avx2`], each kernel is a safe `#[target_feature]` function that bounds-checks its
//! slices; the dispatcher only hands it out when the features are present.

use super::avx2::{
    blocks, f16_at, f16_bcast, f16x2_ptr, f32_at, f32_ptr, float_lens, hsum_ps, k4_scales_mins,
    load16, load32, q6k_codes, scale_pair, u32_ptr,
};
use super::layout::*;
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

/// Running sums of [`dot32`].
struct Acc32 {
    acc: [__m512; 2],
    acc_m: __m128,
}

/// Adds blocks `i` and `i + 1` (or, if `TAIL`, only block `i`) of a row to `s`.
///
/// # Safety
/// Weight blocks `i` and `i + 1` (`i` if `TAIL`) must be readable at `wp`, and the prepared
/// arrays must hold them: quants `[32i, 32i + 64)` at `qp` and `np`, scales `i, i + 1` at `dp`
/// and `sp` (`32` quants and one scale if `TAIL`).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn pair32<const KIND: u8, const TAIL: bool>(
    s: &mut Acc32,
    i: usize,
    wp: *const u8,
    qp: *const u8,
    np: *const u8,
    dp: *const f32,
    sp: *const f32,
) {
    let (wsz, _, zero_point, has_min) = layout32(KIND);
    // SAFETY: the caller guarantees the ranges above; `TAIL` reads only block `i` (the weight
    // block `i` twice, the activations under a 32-byte / one-lane mask).
    unsafe {
        let w0 = wp.add(i * wsz);
        let w1 = if TAIL { w0 } else { w0.add(wsz) };
        let codes = codes64::<KIND>(w0, w1);
        let (q, nq, da, sa) = if TAIL {
            // The lone last block pairs with itself on the weight side and with zeros on the
            // activation side, so it is counted once.
            let m = _cvtu64_mask64(u32::MAX as u64);
            (
                _mm512_maskz_loadu_epi8(m, qp.add(32 * i).cast()),
                _mm512_maskz_loadu_epi8(m, np.add(32 * i).cast()),
                _mm_maskz_loadu_ps(1, dp.add(i)),
                _mm_maskz_loadu_ps(1, sp.add(i)),
            )
        } else {
            (
                _mm512_loadu_si512(qp.add(32 * i).cast()),
                _mm512_loadu_si512(np.add(32 * i).cast()),
                _mm_castpd_ps(_mm_load_sd(dp.add(i).cast())),
                _mm_castpd_ps(_mm_load_sd(sp.add(i).cast())),
            )
        };
        let mut p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), codes, q);
        if zero_point != 0 {
            p = _mm512_dpbusd_epi32(p, _mm512_set1_epi8(zero_point as i8), nq);
        }
        // Lane k of the scale product -> the 8 i32 lanes of its block.
        let (scale, spread) = if has_min {
            // [d0*da0, m0*s0, d1*da1, m1*s1]; the min terms are summed on the side.
            let sc = _mm_mul_ps(f16_quad(w0, w1), _mm_unpacklo_ps(da, sa));
            s.acc_m = _mm_add_ps(s.acc_m, sc);
            let spread = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2);
            (sc, spread)
        } else {
            let spread = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
            (_mm_mul_ps(f16_pair(w0, w1), da), spread)
        };
        let dv = _mm512_permutexvar_ps(spread, _mm512_castps128_ps512(scale));
        let next = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), dv, s.acc[1]);
        // Two accumulators in rotation hide the FMA latency.
        s.acc[1] = s.acc[0];
        s.acc[0] = next;
    }
}

/// The dot of a row of a 32-element weight type with prepared activations, two blocks per step.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn dot32<const KIND: u8>(w: &[u8], act: &ActRow<'_>, n: usize) -> f32 {
    let (wsz, _, _, has_min) = layout32(KIND);
    assert!(
        n.is_multiple_of(32),
        "{n} elements are not whole blocks of 32"
    );
    let nb = n / 32;
    assert!(w.len() >= nb * wsz, "row too short");
    assert!(
        act.qs.len() >= n && act.nq.len() >= n && act.d.len() >= nb && act.s.len() >= nb,
        "activations not prepared for this kernel"
    );
    let (wp, qp, np, dp, sp) = (
        w.as_ptr(),
        act.qs.as_ptr().cast::<u8>(),
        act.nq.as_ptr().cast::<u8>(),
        act.d.as_ptr(),
        act.s.as_ptr(),
    );
    let mut s = Acc32 {
        acc: [_mm512_setzero_ps(); 2],
        acc_m: _mm_setzero_ps(),
    };
    let mut i = 0;
    while i + 2 <= nb {
        // SAFETY: blocks i, i + 1 < nb are in bounds of `w` and of the prepared arrays
        // (lengths checked above).
        unsafe { pair32::<KIND, false>(&mut s, i, wp, qp, np, dp, sp) };
        i += 2;
    }
    if i < nb {
        // SAFETY: block i < nb, as above.
        unsafe { pair32::<KIND, true>(&mut s, i, wp, qp, np, dp, sp) };
    }
    let mut sum = _mm512_reduce_add_ps(_mm512_add_ps(s.acc[0], s.acc[1]));
    if has_min {
        // Lanes 1 and 3 hold the min terms.
        let m = _mm_add_ps(s.acc_m, _mm_movehl_ps(s.acc_m, s.acc_m));
        sum += _mm_cvtss_f32(_mm_movehdup_ps(m));
    }
    sum
}

/// Q4_0 weights x prepared Q8_0 activations (zero point 8).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(crate) fn dot_q4_0(w: &[u8], act: &ActRow<'_>, n: usize) -> f32 {
    dot32::<K_Q4_0>(w, act, n)
}

/// Q4_1 weights x prepared Q8_1 activations (`d*da*dot + m*s`).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(crate) fn dot_q4_1(w: &[u8], act: &ActRow<'_>, n: usize) -> f32 {
    dot32::<K_Q4_1>(w, act, n)
}

/// Q5_0 weights x prepared Q8_0 activations (zero point 16).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(crate) fn dot_q5_0(w: &[u8], act: &ActRow<'_>, n: usize) -> f32 {
    dot32::<K_Q5_0>(w, act, n)
}

/// Q5_1 weights x prepared Q8_1 activations.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(crate) fn dot_q5_1(w: &[u8], act: &ActRow<'_>, n: usize) -> f32 {
    dot32::<K_Q5_1>(w, act, n)
}

/// Q8_0 weights x prepared Q8_0 activations (weights biased by 128).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(crate) fn dot_q8_0(w: &[u8], act: &ActRow<'_>, n: usize) -> f32 {
    dot32::<K_Q8_0>(w, act, n)
}

/// IQ4_NL weights x prepared Q8_0 activations (codebook biased by 128).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(crate) fn dot_iq4_nl(w: &[u8], act: &ActRow<'_>, n: usize) -> f32 {
    dot32::<K_IQ4_NL>(w, act, n)
}

/// Q4_K weights x Q8_K activations (see the AVX2 twin for the algebra); `vpdpwssd` applies the
/// sub-block scales.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(crate) fn dot_q4_k(w: &[u8], act: &ActRow<'_>, n: usize) -> f32 {
    let a = act.bytes;
    let nb = blocks(w, Q4_K_W, a, Q8_K_A, n, 256);
    let mut acc = _mm256_setzero_ps();
    let mut acc_m = _mm256_setzero_ps();
    let low4 = _mm256_set1_epi8(0x0F);
    for i in 0..nb {
        // SAFETY: every pointer read below lies inside block i of `w` and `a`, which `blocks`
        // checked are in bounds (offsets per the layouts in `formats`).
        unsafe {
            let (wp, ap) = (
                w.as_ptr().wrapping_add(i * Q4_K_W),
                a.as_ptr().wrapping_add(i * Q8_K_A),
            );
            let da = f32_ptr(ap);
            let dm = _mm_mul_ps(f16x2_ptr(wp), _mm_set1_ps(da)); // [d*da, dmin*da]
            let (sc, mins) = k4_scales_mins(wp.add(4));
            // In bounds: bsums are 32 bytes at 260 of a 292-byte block.
            let bsums = load32(ap.add(Q8K_BSUMS));
            // Each min multiplies two adjacent group sums: duplicate it into an i16 pair.
            let m16 = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(
                _mm_cvtsi64_si128(mins as i64),
                _mm_cvtsi64_si128(mins as i64),
            ));
            let mprod = _mm256_cvtepi32_ps(_mm256_madd_epi16(bsums, m16));
            acc_m = _mm256_fmadd_ps(
                mprod,
                _mm256_set1_ps(_mm_cvtss_f32(_mm_movehdup_ps(dm))),
                acc_m,
            );

            let mut sumi = _mm256_setzero_si256();
            for c in 0..4 {
                // qs is 128 bytes at 16; activation quants are 256 bytes at 4.
                let (q, y0, y1) = (
                    load32(wp.add(16 + 32 * c)),
                    load32(ap.add(4 + 64 * c)),
                    load32(ap.add(4 + 64 * c + 32)),
                );
                let lo = _mm256_and_si256(q, low4);
                let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(q), low4);
                // Codes <= 15: maddubs pair sums <= 2 * 15 * 127, no saturation.
                let p0 = _mm256_maddubs_epi16(lo, y0);
                let p1 = _mm256_maddubs_epi16(hi, y1);
                let s0 = _mm256_set1_epi16(((sc >> (16 * c)) & 0xFF) as i16);
                let s1 = _mm256_set1_epi16(((sc >> (16 * c + 8)) & 0xFF) as i16);
                sumi = _mm256_dpwssd_epi32(sumi, p0, s0);
                sumi = _mm256_dpwssd_epi32(sumi, p1, s1);
            }
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi), _mm256_broadcastss_ps(dm), acc);
        }
    }
    hsum_ps(acc) - hsum_ps(acc_m)
}

/// Q6_K weights x Q8_K activations (see the AVX2 twin); `vpdpwssd` applies the scales.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(crate) fn dot_q6_k(w: &[u8], act: &ActRow<'_>, n: usize) -> f32 {
    let a = act.bytes;
    let nb = blocks(w, Q6_K_W, a, Q8_K_A, n, 256);
    let mut acc = _mm256_setzero_ps();
    for i in 0..nb {
        // SAFETY: every pointer read below lies inside block i of `w` and `a`, which `blocks`
        // checked are in bounds (offsets per the layouts in `formats`).
        unsafe {
            let (wp, ap) = (
                w.as_ptr().wrapping_add(i * Q6_K_W),
                a.as_ptr().wrapping_add(i * Q8_K_A),
            );
            let d = _mm256_mul_ps(f16_bcast(wp.add(208)), _mm256_set1_ps(f32_ptr(ap)));
            // In bounds: scales are 16 bytes at 192, bsums 32 bytes at 260.
            let (scales, bsums) = (load16(wp.add(192)), load32(ap.add(Q8K_BSUMS)));
            let bias = _mm256_madd_epi16(_mm256_cvtepi8_epi16(scales), bsums);
            let mut sumi = _mm256_setzero_si256();
            for h in 0..2 {
                // ql is 128 bytes at 0, qh 64 bytes at 128.
                let (ql0, ql1, qh) = (
                    load32(wp.add(64 * h)),
                    load32(wp.add(64 * h + 32)),
                    load32(wp.add(128 + 32 * h)),
                );
                let codes = q6k_codes(ql0, ql1, qh);
                for (g, &q) in codes.iter().enumerate() {
                    // activation quants are 256 bytes at 4.
                    let y = load32(ap.add(4 + 128 * h + 32 * g));
                    // Codes <= 63: maddubs pair sums <= 2 * 63 * 127 < 2^15.
                    let p = _mm256_maddubs_epi16(q, y);
                    sumi = _mm256_dpwssd_epi32(sumi, p, scale_pair(scales, (4 * h + g) as i8));
                }
            }
            sumi = _mm256_sub_epi32(sumi, _mm256_slli_epi32::<5>(bias));
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi), d, acc);
        }
    }
    hsum_ps(acc)
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
