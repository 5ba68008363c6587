//! The gated activations of the feed-forward block, with ggml's numerics: SwiGLU through ggml's
//! AVX-512 vector `expf` ([`expf`], which llama.cpp's SiLU and softmax use and which differs from
//! a correctly rounded `exp` in the last bits), GEGLU through ggml's f16 GELU table ([`gelu`]).
//! The SIMD versions (AVX2 + FMA + F16C) give exactly the scalar twins' bits.

use crate::simd::{active_level, Level};
use half::f16;
use std::sync::OnceLock;

/// ggml's constants for [`expf`], bit for bit (ggml writes them as hex floats).
mod consts {
    /// 1.5 * 2^23: adding it rounds to an integer.
    pub const SHIFT: u32 = 0x4b40_0000;
    pub const LOG2E: u32 = 0x3fb8_aa3b;
    pub const LN2_HI: u32 = 0x3f31_7200;
    pub const LN2_LO: u32 = 0x35bf_be8e;
    /// Polynomial for `e^b`, lowest degree first (the constant term is 1).
    pub const C: [u32; 5] = [
        0x3f7f_fff6,
        0x3eff_fedb,
        0x3e2a_af33,
        0x3d2b_9f17,
        0x3c07_2010,
    ];
}

/// ggml's vectorised `expf` (AVX-512 `ggml_v_expf`): a range reduction to `2^n * e^b`, a
/// degree-5 polynomial for `e^b`, then `scalef`, one rounding of the exact `j * 2^n`.
pub fn expf(x: f32) -> f32 {
    let f = f32::from_bits;
    let shift = f(consts::SHIFT);
    let c = consts::C.map(f);
    let z = x.mul_add(f(consts::LOG2E), shift);
    let n = z - shift;
    let b = (-n).mul_add(f(consts::LN2_LO), (-n).mul_add(f(consts::LN2_HI), x));
    if n.abs() > 192.0 {
        return if n <= 0.0 { 0.0 } else { f32::INFINITY };
    }
    let u = b * b;
    let j = c[4]
        .mul_add(b, c[3])
        .mul_add(u, c[2].mul_add(b, c[1]))
        .mul_add(u, c[0].mul_add(b, 1.0));
    // 2^n from its exponent bits (|n| <= 192 is well inside f64's range), so the f64 product is
    // exact and the conversion is the one rounding.
    let pow2 = f64::from_bits(((n as i64 + 1023) as u64) << 52);
    (j as f64 * pow2) as f32
}

/// `x * sigmoid(x)` as ggml's vector SiLU computes it: `x / (1 + expf(-x))`.
pub fn silu(x: f32) -> f32 {
    x / (1.0 + expf(-x))
}

/// `out[i] = silu(g[i]) * u[i]` (SwiGLU).
///
/// # Panics
/// If the lengths differ.
pub fn silu_mul(g: &[f32], u: &[f32], out: &mut [f32]) {
    assert!(
        g.len() == u.len() && g.len() == out.len(),
        "silu_mul: lengths differ"
    );
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if active_level() != Level::Scalar {
        // SAFETY: every SIMD level implies AVX2, FMA and F16C (checked at detection).
        done = unsafe { x86::silu_mul(g, u, out) };
    }
    for ((o, &g), &u) in out[done..].iter_mut().zip(&g[done..]).zip(&u[done..]) {
        *o = silu(g) * u;
    }
}

/// GELU (tanh approximation) evaluated the way ggml does by default: on the f16-rounded input,
/// with an f16-rounded result (ggml's `ggml_table_gelu_f16`), saturating outside [-10, 10].
pub fn gelu(x: f32) -> f32 {
    if x <= -10.0 {
        0.0
    } else if x >= 10.0 {
        x
    } else {
        gelu_table()[f16::from_f32(x).to_bits() as usize]
    }
}

/// `out[i] = gelu(g[i]) * u[i]` (GEGLU).
///
/// # Panics
/// If the lengths differ.
pub fn gelu_mul(g: &[f32], u: &[f32], out: &mut [f32]) {
    assert!(
        g.len() == u.len() && g.len() == out.len(),
        "gelu_mul: lengths differ"
    );
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if active_level() != Level::Scalar {
        // SAFETY: as in `silu_mul`.
        done = unsafe { x86::gelu_mul(g, u, out, gelu_table()) };
    }
    for ((o, &g), &u) in out[done..].iter_mut().zip(&g[done..]).zip(&u[done..]) {
        *o = gelu(g) * u;
    }
}

/// GELU of every f16 value (indexed by its bits), f16-rounded, as f32: built once, on first use.
fn gelu_table() -> &'static [f32; 1 << 16] {
    static TABLE: OnceLock<Box<[f32; 1 << 16]>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = Box::new([0f32; 1 << 16]);
        for (bits, v) in t.iter_mut().enumerate() {
            *v = gelu_f16(f16::from_bits(bits as u16).to_f32());
        }
        t
    })
}

/// The table entry for an f16-representable `x`: ggml's `gelu_f32`, rounded to f16.
fn gelu_f16(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    const COEF_A: f32 = 0.044715;
    // `1 + a*x*x` fused, as GCC contracts ggml's expression.
    let y = 0.5 * x * (1.0 + (SQRT_2_OVER_PI * x * (COEF_A * x).mul_add(x, 1.0)).tanh());
    f16::from_f32(y).to_f32()
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    use super::consts;
    use std::arch::x86_64::*;

    /// `bits` as a float in every lane.
    #[inline]
    #[target_feature(enable = "avx")]
    unsafe fn splat(bits: u32) -> __m256 {
        _mm256_set1_ps(f32::from_bits(bits))
    }

    /// `2^e` per lane, for exponents of normal floats.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn pow2(e: __m256i) -> __m256 {
        _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(
            e,
            _mm256_set1_epi32(127),
        )))
    }

    /// [`super::expf`] on 8 lanes. Without AVX-512's `scalef`, `j * 2^n` is formed as
    /// `(j * 2^(n/2)) * 2^(n - n/2)`: both factors are normal floats for |n| <= 192 and the
    /// first product is exact (j is within [0.7, 1.5]), so the second is the one rounding.
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(crate) unsafe fn expf(x: __m256) -> __m256 {
        let shift = splat(consts::SHIFT);
        let z = _mm256_fmadd_ps(x, splat(consts::LOG2E), shift);
        let n = _mm256_sub_ps(z, shift);
        let b = _mm256_fnmadd_ps(
            n,
            splat(consts::LN2_LO),
            _mm256_fnmadd_ps(n, splat(consts::LN2_HI), x),
        );
        let u = _mm256_mul_ps(b, b);
        let [c0, c1, c2, c3, c4] = consts::C;
        let j = _mm256_fmadd_ps(
            _mm256_fmadd_ps(
                _mm256_fmadd_ps(splat(c4), b, splat(c3)),
                u,
                _mm256_fmadd_ps(splat(c2), b, splat(c1)),
            ),
            u,
            _mm256_fmadd_ps(splat(c0), b, _mm256_set1_ps(1.0)),
        );
        let ni = _mm256_cvtps_epi32(n);
        let n1 = _mm256_srai_epi32::<1>(ni);
        let res = _mm256_mul_ps(_mm256_mul_ps(j, pow2(n1)), pow2(_mm256_sub_epi32(ni, n1)));
        let abs_n = _mm256_andnot_ps(_mm256_set1_ps(-0.0), n);
        let big = _mm256_cmp_ps::<_CMP_GT_OQ>(abs_n, _mm256_set1_ps(192.0));
        if _mm256_movemask_ps(big) == 0 {
            return res;
        }
        let positive = _mm256_cmp_ps::<_CMP_GT_OQ>(n, _mm256_setzero_ps());
        let alt = _mm256_and_ps(positive, _mm256_set1_ps(f32::INFINITY));
        _mm256_blendv_ps(res, alt, big)
    }

    /// The whole groups of 8 of [`super::silu_mul`]; returns how many elements were done.
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA; the three lengths must be equal.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn silu_mul(g: &[f32], u: &[f32], out: &mut [f32]) -> usize {
        let n = g.len() - g.len() % 8;
        let sign = _mm256_set1_ps(-0.0);
        let one = _mm256_set1_ps(1.0);
        for i in (0..n).step_by(8) {
            // SAFETY: i + 8 <= n <= the length of all three slices.
            unsafe {
                let x = _mm256_loadu_ps(g.as_ptr().add(i));
                let e = expf(_mm256_xor_ps(x, sign));
                let s = _mm256_div_ps(x, _mm256_add_ps(one, e));
                let r = _mm256_mul_ps(s, _mm256_loadu_ps(u.as_ptr().add(i)));
                _mm256_storeu_ps(out.as_mut_ptr().add(i), r);
            }
        }
        n
    }

    /// The whole groups of 8 of [`super::gelu_mul`], looking `table` up with a gather; returns
    /// how many elements were done.
    ///
    /// # Safety
    /// The CPU must have AVX2 and F16C; the three slice lengths must be equal.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn gelu_mul(
        g: &[f32],
        u: &[f32],
        out: &mut [f32],
        table: &[f32; 1 << 16],
    ) -> usize {
        let n = g.len() - g.len() % 8;
        let (lo, hi) = (_mm256_set1_ps(-10.0), _mm256_set1_ps(10.0));
        for i in (0..n).step_by(8) {
            // SAFETY: i + 8 <= n <= the length of all three slices; the gather indices are
            // f16 bit patterns, all below the table's 65536 entries.
            unsafe {
                let x = _mm256_loadu_ps(g.as_ptr().add(i));
                let bits = _mm256_cvtepu16_epi32(_mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(x));
                let t = _mm256_i32gather_ps::<4>(table.as_ptr(), bits);
                let t = _mm256_andnot_ps(_mm256_cmp_ps::<_CMP_LE_OQ>(x, lo), t);
                let y = _mm256_blendv_ps(t, x, _mm256_cmp_ps::<_CMP_GE_OQ>(x, hi));
                let r = _mm256_mul_ps(y, _mm256_loadu_ps(u.as_ptr().add(i)));
                _mm256_storeu_ps(out.as_mut_ptr().add(i), r);
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic values spread over `[-scale, scale]`.
    fn values(n: usize, seed: u32, scale: f32) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                ((s >> 8) as f32 / (1u32 << 24) as f32 - 0.5) * 2.0 * scale
            })
            .collect()
    }

    /// Inputs that reach every branch: tiny, ordinary, near the f16 and GELU saturation
    /// points, large enough for `expf` to underflow to subnormals, zero or overflow.
    fn inputs() -> Vec<f32> {
        let mut x = values(4096, 1, 12.0);
        x.extend(values(1024, 2, 200.0));
        x.extend(values(256, 3, 1e-3));
        x.extend([
            0.0, -0.0, 10.0, -10.0, 9.999, -9.999, 87.0, 88.7, 89.0, -87.0, -103.0, -104.0, -120.0,
            -133.0, -150.0, 1e30, -1e30,
        ]);
        x.extend([f32::INFINITY, f32::NEG_INFINITY, f32::MIN_POSITIVE, 65504.0]);
        let pad = 8 - x.len() % 8;
        x.extend(values(pad, 4, 1.0));
        x
    }

    #[test]
    fn expf_is_close_to_exp_and_saturates() {
        // Within a few ulps wherever the result is a normal float.
        for x in values(10_000, 5, 80.0) {
            let (got, want) = (expf(x) as f64, (x as f64).exp());
            assert!((got - want).abs() <= 4e-7 * want, "x={x}: {got} vs {want}");
        }
        assert_eq!(expf(0.0), 1.0);
        assert_eq!(expf(-200.0), 0.0);
        assert_eq!(expf(200.0), f32::INFINITY);
        // Subnormal results are rounded once, not flushed.
        let tiny = expf(-100.0) as f64;
        assert!((tiny - (-100f64).exp()).abs() <= f32::from_bits(1) as f64);
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn simd_expf_equals_scalar_twin() {
        if active_level() == Level::Scalar {
            return;
        }
        use std::arch::x86_64::*;
        // Every 997th bit pattern (all signs, binades, NaNs and infinities), then the edge cases.
        let mut x: Vec<f32> = (0..=u32::MAX).step_by(997).map(f32::from_bits).collect();
        x.truncate(x.len() - x.len() % 8);
        x.extend(inputs());
        for chunk in x.chunks_exact(8) {
            let mut got = [0f32; 8];
            // SAFETY: the level implies AVX2 and FMA; `chunk` and `got` hold 8 floats.
            unsafe {
                _mm256_storeu_ps(got.as_mut_ptr(), x86::expf(_mm256_loadu_ps(chunk.as_ptr())))
            };
            for (g, &x) in got.iter().zip(chunk) {
                let want = expf(x);
                assert!(
                    g.to_bits() == want.to_bits() || (g.is_nan() && want.is_nan()),
                    "x={x}: {g} vs {want}"
                );
            }
        }
    }

    #[test]
    fn simd_silu_mul_and_gelu_mul_equal_scalar_twins() {
        let g = inputs();
        let u = values(g.len(), 6, 3.0);
        let mut out = vec![0f32; g.len()];
        silu_mul(&g, &u, &mut out);
        for i in 0..g.len() {
            assert_eq!(
                out[i].to_bits(),
                (silu(g[i]) * u[i]).to_bits(),
                "g={}",
                g[i]
            );
        }
        gelu_mul(&g, &u, &mut out);
        for i in 0..g.len() {
            assert_eq!(
                out[i].to_bits(),
                (gelu(g[i]) * u[i]).to_bits(),
                "g={}",
                g[i]
            );
        }
        // Odd lengths take the scalar tail.
        silu_mul(&g[..13], &u[..13], &mut out[..13]);
        assert_eq!(out[12].to_bits(), (silu(g[12]) * u[12]).to_bits());
    }

    #[test]
    fn gelu_table_matches_the_formula() {
        // gelu_tanh(1) = 0.841192, gelu_tanh(-1) = -0.158808 (within f16 rounding)
        assert!((gelu(1.0) - 0.841192).abs() < 1e-3);
        assert!((gelu(-1.0) + 0.158808).abs() < 1e-3);
        assert_eq!(gelu(-20.0), 0.0);
        assert_eq!(gelu(20.0), 20.0);
        for x in values(1000, 7, 10.0) {
            let want = gelu_f16(f16::from_f32(x).to_f32());
            assert_eq!(gelu(x).to_bits(), want.to_bits(), "x={x}");
        }
    }

    #[test]
    fn silu_matches_definition() {
        for x in values(1000, 8, 20.0) {
            let want = x as f64 / (1.0 + (-x as f64).exp());
            assert!(
                (silu(x) as f64 - want).abs() <= 1e-6 * want.abs().max(1e-3),
                "x={x}"
            );
        }
    }
}
