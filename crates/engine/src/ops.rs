//! Element-wise and per-row operations of the forward pass, written to match llama.cpp's numerics
//! (RMSNorm accumulates f32 squares in f64, SiLU uses ggml's vector `expf` polynomial, GELU goes
//! through f16 as ggml's lookup table does, RoPE angles are stepped by repeated multiplication).

use half::f16;

/// `x = x / rms(x) * w`, row by row.
pub fn rms_norm(x: &mut [f32], w: &[f32], eps: f32) {
    for row in x.chunks_exact_mut(w.len()) {
        let sum: f64 = row.iter().map(|&v| (v * v) as f64).sum();
        let mean = (sum / row.len() as f64) as f32;
        let scale = 1.0 / (mean + eps).sqrt();
        for (v, &g) in row.iter_mut().zip(w) {
            *v = *v * scale * g;
        }
    }
}

/// `out = rms_norm(x) * w` without touching `x`.
pub fn rms_norm_into(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    out.copy_from_slice(x);
    rms_norm(out, w, eps);
}

/// `x * sigmoid(x)`, with `exp` computed as ggml's AVX-512 `ggml_v_expf` does.
pub fn silu(x: f32) -> f32 {
    x / (1.0 + ggml_expf(-x))
}

/// ggml's vectorised `expf` (a range reduction to `2^n * e^b` and a degree-5 polynomial for
/// `e^b`), which llama.cpp's SiLU uses; it differs from a correctly rounded `exp` in the last
/// bits, and those bits reach the logits.
fn ggml_expf(x: f32) -> f32 {
    // The constants, bit for bit (ggml writes them as hex floats).
    let f = f32::from_bits;
    let shift = f(0x4b40_0000); // 1.5 * 2^23: adding it rounds to an integer
    let (log2e, ln2_hi, ln2_lo) = (f(0x3fb8_aa3b), f(0x3f31_7200), f(0x35bf_be8e));
    let c = [
        f(0x3f7f_fff6),
        f(0x3eff_fedb),
        f(0x3e2a_af33),
        f(0x3d2b_9f17),
        f(0x3c07_2010),
    ];
    let z = x.mul_add(log2e, shift);
    let n = z - shift;
    let b = (-n).mul_add(ln2_lo, (-n).mul_add(ln2_hi, x));
    if n.abs() > 192.0 {
        return if n <= 0.0 { 0.0 } else { f32::INFINITY };
    }
    let u = b * b;
    let j = c[4]
        .mul_add(b, c[3])
        .mul_add(u, c[2].mul_add(b, c[1]))
        .mul_add(u, c[0].mul_add(b, 1.0));
    // `scalef`: one rounding of the exact j * 2^n.
    (j as f64 * 2f64.powi(n as i32)) as f32
}

/// GELU (tanh approximation) evaluated the way ggml does by default: on the f16-rounded input,
/// with an f16-rounded result, saturating outside [-10, 10].
pub fn gelu(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    const COEF_A: f32 = 0.044715;
    if x <= -10.0 {
        return 0.0;
    }
    if x >= 10.0 {
        return x;
    }
    let x = f16::from_f32(x).to_f32();
    // `1 + a*x*x` fused, as GCC contracts ggml's expression.
    let y = 0.5 * x * (1.0 + (SQRT_2_OVER_PI * x * (COEF_A * x).mul_add(x, 1.0)).tanh());
    f16::from_f32(y).to_f32()
}

/// RoPE angle table for one position: `(cos, sin)` of `pos * base^(-2i/n_rot)` for each pair,
/// divided by per-pair `freq_factors` when the model has them.
pub fn rope_angles(
    pos: usize,
    n_rot: usize,
    base: f32,
    freq_scale: f32,
    freq_factors: Option<&[f32]>,
    out: &mut Vec<(f32, f32)>,
) {
    out.clear();
    let theta_scale = base.powf(-2.0 / n_rot as f32);
    let mut theta = pos as f32;
    for i in 0..n_rot / 2 {
        let ff = freq_factors.map_or(1.0, |f| f[i]);
        let t = theta / ff * freq_scale;
        out.push((t.cos(), t.sin()));
        theta *= theta_scale;
    }
}

/// Rotate one head vector in place. `neox` pairs `(i, i + n_rot/2)`, otherwise `(2i, 2i+1)`;
/// dimensions past `n_rot` are left alone.
pub fn rope_apply(head: &mut [f32], angles: &[(f32, f32)], neox: bool) {
    let half = angles.len();
    for (i, &(c, s)) in angles.iter().enumerate() {
        let (a, b) = if neox {
            (i, i + half)
        } else {
            (2 * i, 2 * i + 1)
        };
        let x0 = head[a];
        let x1 = head[b];
        // The first product fused, as GCC contracts llama.cpp's `x0*cos - x1*sin`.
        head[a] = x0.mul_add(c, -(x1 * s));
        head[b] = x0.mul_add(s, x1 * c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rms_norm_gives_unit_rms() {
        let mut x = vec![3.0f32, 4.0];
        rms_norm(&mut x, &[1.0, 1.0], 0.0);
        let rms = ((x[0] * x[0] + x[1] * x[1]) / 2.0).sqrt();
        assert!((rms - 1.0).abs() < 1e-6);
        assert!((x[0] / x[1] - 0.75).abs() < 1e-6);
    }

    #[test]
    fn gelu_matches_known_values() {
        // gelu_tanh(1) = 0.841192, gelu_tanh(-1) = -0.158808 (within f16 rounding)
        assert!((gelu(1.0) - 0.841192).abs() < 1e-3);
        assert!((gelu(-1.0) + 0.158808).abs() < 1e-3);
        assert_eq!(gelu(-20.0), 0.0);
        assert_eq!(gelu(20.0), 20.0);
    }

    #[test]
    fn rope_rotates_by_position_angle() {
        let mut angles = Vec::new();
        rope_angles(1, 4, 10000.0, 1.0, None, &mut angles);
        // pair 0 turns by 1 radian, pair 1 by 10000^(-1/2) = 0.01 radian
        assert!((angles[0].0 - 1f32.cos()).abs() < 1e-6);
        assert!((angles[1].1 - 0.01f32.sin()).abs() < 1e-6);
        let mut h = vec![1.0, 0.0, 1.0, 0.0];
        rope_apply(&mut h, &angles, false);
        assert!((h[0] - 1f32.cos()).abs() < 1e-6 && (h[1] - 1f32.sin()).abs() < 1e-6);
        let mut h = vec![1.0, 1.0, 0.0, 0.0];
        rope_apply(&mut h, &angles, true);
        assert!((h[2] - 1f32.sin()).abs() < 1e-6 && (h[3] - 0.01f32.sin()).abs() < 1e-6);
    }
}
