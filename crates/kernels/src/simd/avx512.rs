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
    load16, load32, nibbles32, q6k_codes, scale_pair, u32_ptr,
};
use super::layout::*;
use std::arch::x86_64::*;

/// Signed x signed byte dot (32 products -> 8 i32 lanes) with the sign trick on `vpdpbusd`.
/// `y` must avoid -128 (activations are in -127..=127).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn dot_i8(x: __m256i, y: __m256i) -> __m256i {
    _mm256_dpbusd_epi32(
        _mm256_setzero_si256(),
        _mm256_abs_epi8(x),
        _mm256_sign_epi8(y, x),
    )
}

/// Unsigned x signed byte dot (32 products -> 8 i32 lanes), exact for any u8.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn dot_u8i8(u: __m256i, y: __m256i) -> __m256i {
    _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, y)
}

/// Q8_0 weights x Q8_0 activations.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(crate) fn dot_q8_0(w: &[u8], a: &[u8], n: usize) -> f32 {
    let nb = blocks(w, Q8_0_W, a, Q8_0_A, n, 32);
    let mut acc = [_mm256_setzero_ps(); 2];
    for i in 0..nb {
        // SAFETY: every pointer read below lies inside block i of `w` and `a`, which `blocks`
        // checked are in bounds (offsets per the layouts in `formats`).
        unsafe {
            let (wp, ap) = (
                w.as_ptr().wrapping_add(i * Q8_0_W),
                a.as_ptr().wrapping_add(i * Q8_0_A),
            );
            let d = _mm256_mul_ps(f16_bcast(wp), f16_bcast(ap));
            // `blocks` checked both blocks are in bounds; qs is 32 bytes at offset 2.
            let (x, y) = (load32(wp.add(2)), load32(ap.add(2)));
            let p = _mm256_cvtepi32_ps(dot_i8(x, y));
            let next = _mm256_fmadd_ps(p, d, acc[1]);
            // Two accumulators in rotation hide the FMA latency.
            acc[1] = acc[0];
            acc[0] = next;
        }
    }
    hsum_ps(_mm256_add_ps(acc[0], acc[1]))
}

/// Q4_0 weights x Q8_0 activations: `sum((q - 8) * y) = sum(q * y) - sum(8 * y)`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(crate) fn dot_q4_0(w: &[u8], a: &[u8], n: usize) -> f32 {
    let nb = blocks(w, Q4_0_W, a, Q8_0_A, n, 32);
    let eight = _mm256_set1_epi8(8);
    let mut acc = [_mm256_setzero_ps(); 2];
    for i in 0..nb {
        // SAFETY: every pointer read below lies inside block i of `w` and `a`, which `blocks`
        // checked are in bounds (offsets per the layouts in `formats`).
        unsafe {
            let (wp, ap) = (
                w.as_ptr().wrapping_add(i * Q4_0_W),
                a.as_ptr().wrapping_add(i * Q8_0_A),
            );
            let d = _mm256_mul_ps(f16_bcast(wp), f16_bcast(ap));
            // In bounds: 16 qs bytes at 2, 32 activation bytes at 2.
            let (q, y) = (load16(wp.add(2)), load32(ap.add(2)));
            let s = _mm256_sub_epi32(dot_u8i8(nibbles32(q), y), dot_u8i8(eight, y));
            let next = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), d, acc[1]);
            // Two accumulators in rotation hide the FMA latency.
            acc[1] = acc[0];
            acc[0] = next;
        }
    }
    hsum_ps(_mm256_add_ps(acc[0], acc[1]))
}

/// Q4_1 weights x Q8_1 activations: `d*da*sum(q*y) + m*s`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(crate) fn dot_q4_1(w: &[u8], a: &[u8], n: usize) -> f32 {
    let nb = blocks(w, Q4_1_W, a, Q8_1_A, n, 32);
    let mut acc = [_mm256_setzero_ps(); 2];
    let mut acc_m = _mm_setzero_ps();
    for i in 0..nb {
        // SAFETY: every pointer read below lies inside block i of `w` and `a`, which `blocks`
        // checked are in bounds (offsets per the layouts in `formats`).
        unsafe {
            let (wp, ap) = (
                w.as_ptr().wrapping_add(i * Q4_1_W),
                a.as_ptr().wrapping_add(i * Q8_1_A),
            );
            let sc = _mm_mul_ps(f16x2_ptr(wp), f16x2_ptr(ap)); // [d*da, m*s]
            acc_m = _mm_add_ps(acc_m, sc);
            // In bounds: 16 qs bytes at 4, 32 activation bytes at 4.
            let (q, y) = (load16(wp.add(4)), load32(ap.add(4)));
            let p = _mm256_cvtepi32_ps(dot_u8i8(nibbles32(q), y));
            let next = _mm256_fmadd_ps(p, _mm256_broadcastss_ps(sc), acc[1]);
            // Two accumulators in rotation hide the FMA latency.
            acc[1] = acc[0];
            acc[0] = next;
        }
    }
    hsum_ps(_mm256_add_ps(acc[0], acc[1])) + _mm_cvtss_f32(_mm_movehdup_ps(acc_m))
}

/// Q5_0 weights x Q8_0 activations: `sum((q - 16) * y)` with the fifth bit added under a mask.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(crate) fn dot_q5_0(w: &[u8], a: &[u8], n: usize) -> f32 {
    let nb = blocks(w, Q5_0_W, a, Q8_0_A, n, 32);
    let sixteen = _mm256_set1_epi8(16);
    let mut acc = [_mm256_setzero_ps(); 2];
    for i in 0..nb {
        // SAFETY: every pointer read below lies inside block i of `w` and `a`, which `blocks`
        // checked are in bounds (offsets per the layouts in `formats`).
        unsafe {
            let (wp, ap) = (
                w.as_ptr().wrapping_add(i * Q5_0_W),
                a.as_ptr().wrapping_add(i * Q8_0_A),
            );
            let d = _mm256_mul_ps(f16_bcast(wp), f16_bcast(ap));
            let hb = _cvtu32_mask32(u32_ptr(wp.add(2)));
            // In bounds: 16 qs bytes at 6, 32 activation bytes at 2.
            let (q, y) = (load16(wp.add(6)), load32(ap.add(2)));
            let nib = nibbles32(q);
            let code = _mm256_mask_add_epi8(nib, hb, nib, sixteen);
            let s = _mm256_sub_epi32(dot_u8i8(code, y), dot_u8i8(sixteen, y));
            let next = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), d, acc[1]);
            // Two accumulators in rotation hide the FMA latency.
            acc[1] = acc[0];
            acc[0] = next;
        }
    }
    hsum_ps(_mm256_add_ps(acc[0], acc[1]))
}

/// Q5_1 weights x Q8_1 activations.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(crate) fn dot_q5_1(w: &[u8], a: &[u8], n: usize) -> f32 {
    let nb = blocks(w, Q5_1_W, a, Q8_1_A, n, 32);
    let sixteen = _mm256_set1_epi8(16);
    let mut acc = [_mm256_setzero_ps(); 2];
    let mut acc_m = _mm_setzero_ps();
    for i in 0..nb {
        // SAFETY: every pointer read below lies inside block i of `w` and `a`, which `blocks`
        // checked are in bounds (offsets per the layouts in `formats`).
        unsafe {
            let (wp, ap) = (
                w.as_ptr().wrapping_add(i * Q5_1_W),
                a.as_ptr().wrapping_add(i * Q8_1_A),
            );
            let sc = _mm_mul_ps(f16x2_ptr(wp), f16x2_ptr(ap));
            acc_m = _mm_add_ps(acc_m, sc);
            let hb = _cvtu32_mask32(u32_ptr(wp.add(4)));
            // In bounds: 16 qs bytes at 8, 32 activation bytes at 4.
            let (q, y) = (load16(wp.add(8)), load32(ap.add(4)));
            let nib = nibbles32(q);
            let code = _mm256_mask_add_epi8(nib, hb, nib, sixteen);
            let p = _mm256_cvtepi32_ps(dot_u8i8(code, y));
            let next = _mm256_fmadd_ps(p, _mm256_broadcastss_ps(sc), acc[1]);
            // Two accumulators in rotation hide the FMA latency.
            acc[1] = acc[0];
            acc[0] = next;
        }
    }
    hsum_ps(_mm256_add_ps(acc[0], acc[1])) + _mm_cvtss_f32(_mm_movehdup_ps(acc_m))
}

/// IQ4_NL weights x Q8_0 activations.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(crate) fn dot_iq4_nl(w: &[u8], a: &[u8], n: usize) -> f32 {
    let nb = blocks(w, IQ4_NL_W, a, Q8_0_A, n, 32);
    // SAFETY: KVALUES is 16 bytes.
    let table = _mm256_broadcastsi128_si256(unsafe { load16(KVALUES.as_ptr().cast()) });
    let mut acc = [_mm256_setzero_ps(); 2];
    for i in 0..nb {
        // SAFETY: every pointer read below lies inside block i of `w` and `a`, which `blocks`
        // checked are in bounds (offsets per the layouts in `formats`).
        unsafe {
            let (wp, ap) = (
                w.as_ptr().wrapping_add(i * IQ4_NL_W),
                a.as_ptr().wrapping_add(i * Q8_0_A),
            );
            let d = _mm256_mul_ps(f16_bcast(wp), f16_bcast(ap));
            // In bounds: 16 qs bytes at 2, 32 activation bytes at 2.
            let (q, y) = (load16(wp.add(2)), load32(ap.add(2)));
            let x = _mm256_shuffle_epi8(table, nibbles32(q));
            let p = _mm256_cvtepi32_ps(dot_i8(x, y));
            let next = _mm256_fmadd_ps(p, d, acc[1]);
            // Two accumulators in rotation hide the FMA latency.
            acc[1] = acc[0];
            acc[0] = next;
        }
    }
    hsum_ps(_mm256_add_ps(acc[0], acc[1]))
}

/// Q4_K weights x Q8_K activations (see the AVX2 twin for the algebra); `vpdpwssd` applies the
/// sub-block scales.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(crate) fn dot_q4_k(w: &[u8], a: &[u8], n: usize) -> f32 {
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
pub(crate) fn dot_q6_k(w: &[u8], a: &[u8], n: usize) -> f32 {
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
pub(crate) fn dot_f32(w: &[u8], a: &[u8], n: usize) -> f32 {
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
pub(crate) fn dot_f16(w: &[u8], a: &[u8], n: usize) -> f32 {
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
pub(crate) fn dot_bf16(w: &[u8], a: &[u8], n: usize) -> f32 {
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
