//! The f16 vector steps of attention over an f16 KV cache, with llama.cpp's CPU flash-attention
//! numerics (AVX-512 build): [`dot_f16`] sums `q . k` in 64 lanes folded pairwise,
//! [`mad_f16`] and [`scale_f16`] keep the running weighted sum of values rounded to f16 after every
//! step. Gemma-class models amplify last-bit differences, so the SIMD versions (AVX2 + F16C) give
//! exactly the scalar twins' results, and both follow ggml's order.
//!
//! The value accumulator is held as f32 values that are always f16-representable, which keeps the
//! engine's softmax bookkeeping in f32.

use crate::simd::{active_level, Level};
use half::f16;

/// Elements per step of ggml's f16 dot (4 registers of 16 f32 lanes).
const LANES: usize = 64;

/// `q . k` for f16-representable `q` and an f16 key row, summed in the order of llama.cpp's
/// AVX-512 `ggml_vec_dot_f16`: 64 fused multiply-add lanes, the four 16-lane registers folded as
/// `(r0 + r2) + (r1 + r3)`, then halved 8, 4, 2, 1; elements past the last 64 are added in f64.
///
/// # Panics
/// If `q` and `k` differ in length.
pub fn dot_f16(q: &[f32], k: &[u16]) -> f32 {
    assert_eq!(q.len(), k.len(), "dot_f16: lengths differ");
    let body = q.len() - q.len() % LANES;
    #[cfg(target_arch = "x86_64")]
    let r0 = if active_level() != Level::Scalar {
        // SAFETY: every SIMD level implies AVX2, FMA and F16C (checked at detection).
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
/// # Panics
/// If the lengths differ.
pub fn mad_f16(acc: &mut [f32], v: &[u16], s: f32) {
    assert_eq!(acc.len(), v.len(), "mad_f16: lengths differ");
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if active_level() != Level::Scalar {
        // SAFETY: as in `dot_f16`.
        done = unsafe { x86::mad(acc, v, s) };
    }
    for (a, &b) in acc[done..].iter_mut().zip(&v[done..]) {
        *a = round_f16(f16::from_bits(b).to_f32().mul_add(s, *a));
    }
}

/// `acc[i] = f16(acc[i] * s)`, as `ggml_vec_scale_f16`.
pub fn scale_f16(acc: &mut [f32], s: f32) {
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if active_level() != Level::Scalar {
        // SAFETY: as in `dot_f16`.
        done = unsafe { x86::scale(acc, s) };
    }
    for a in &mut acc[done..] {
        *a = round_f16(*a * s);
    }
}

/// `x` rounded to the nearest f16 (ties to even), as f32.
pub fn round_f16(x: f32) -> f32 {
    f16::from_f32(x).to_f32()
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// Round to nearest even, no exceptions (`_MM_FROUND_TO_NEAREST_INT`).
    const RNE: i32 = 0;

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
        let s8 = _mm256_add_ps(lo, hi);
        let s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps::<1>(s8));
        let s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
        let s1 = _mm_add_ss(s2, _mm_movehdup_ps(s2));
        _mm_cvtss_f32(s1)
    }

    /// The whole groups of 8 of [`super::mad_f16`]; returns how many elements were done.
    ///
    /// # Safety
    /// The CPU must have AVX2, FMA and F16C; `acc.len() == v.len()`.
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

    #[test]
    fn simd_dot_equals_scalar_twin() {
        for n in [64, 128, 256, 64 * 7] {
            let (q, k) = (values(n, 1), bits(&values(n, 2)));
            #[cfg(target_arch = "x86_64")]
            if active_level() != Level::Scalar {
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
        assert_eq!(dot_f16(&q, &k).to_bits(), want.to_bits());
    }

    #[test]
    fn simd_mad_and_scale_equal_scalar_twins() {
        let v = bits(&values(37, 5));
        let start = values(37, 6);
        let (mut simd, mut scalar) = (start.clone(), start);
        #[cfg(target_arch = "x86_64")]
        if active_level() != Level::Scalar {
            // SAFETY: the level implies AVX2, FMA and F16C.
            let done = unsafe { x86::mad(&mut simd, &v, 0.3) };
            assert_eq!(done, 32);
            for (a, &b) in simd[done..].iter_mut().zip(&v[done..]) {
                *a = round_f16(f16::from_bits(b).to_f32().mul_add(0.3, *a));
            }
            // SAFETY: as above.
            let done = unsafe { x86::scale(&mut simd, 0.7) };
            for a in &mut simd[done..] {
                *a = round_f16(*a * 0.7);
            }
        }
        for (a, &b) in scalar.iter_mut().zip(&v) {
            *a = round_f16(f16::from_bits(b).to_f32().mul_add(0.3, *a));
        }
        for a in &mut scalar {
            *a = round_f16(*a * 0.7);
        }
        #[cfg(target_arch = "x86_64")]
        if active_level() != Level::Scalar {
            assert_eq!(bits(&simd), bits(&scalar));
        }
        assert!(scalar.iter().all(|&x| round_f16(x) == x));
    }
}
