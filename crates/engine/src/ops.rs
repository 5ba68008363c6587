//! Per-row operations of the forward pass, written to match llama.cpp's numerics (RMSNorm
//! accumulates f32 squares in f64, RoPE angles are stepped by repeated multiplication). The
//! activations and the RoPE rotation live in the kernels crate (`kernels::activation`,
//! `kernels::rope`), which builds their fused multiply-adds for the CPU's FMA unit. BERT's steps
//! are here too: [`layer_norm`] and the exact (erf) GELU, [`gelu_erf`].

/// `1 / rms(row)` with `eps`, as ggml's `rms_norm_f32` forms it.
fn rms_scale(row: &[f32], eps: f32) -> f32 {
    let sum: f64 = row.iter().map(|&v| (v * v) as f64).sum();
    let mean = (sum / row.len() as f64) as f32;
    1.0 / (mean + eps).sqrt()
}

/// `x = x / rms(x) * w`, row by row.
pub fn rms_norm(x: &mut [f32], w: &[f32], eps: f32) {
    for row in x.chunks_exact_mut(w.len()) {
        let scale = rms_scale(row, eps);
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

/// The residual step `x += o`, with `o` first RMS-normalised by `norm` when the model has a
/// post-norm (the same float operations as [`rms_norm`] on `o`, without writing it), row by row.
pub fn add_residual(x: &mut [f32], o: &[f32], norm: Option<&[f32]>, eps: f32) {
    match norm {
        None => x.iter_mut().zip(o).for_each(|(a, b)| *a += b),
        Some(w) => {
            for (xr, or) in x.chunks_exact_mut(w.len()).zip(o.chunks_exact(w.len())) {
                let scale = rms_scale(or, eps);
                for ((a, &b), &g) in xr.iter_mut().zip(or).zip(w) {
                    *a += b * scale * g;
                }
            }
        }
    }
}

/// LayerNorm, row by row: `x = (x - mean) / sqrt(var + eps) * w + b`, the mean and the variance
/// accumulated in f64.
pub fn layer_norm(x: &mut [f32], w: &[f32], b: &[f32], eps: f32) {
    let n = w.len() as f64;
    for row in x.chunks_exact_mut(w.len()) {
        let mean = row.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
        let scale = 1.0 / (var + eps as f64).sqrt();
        for ((v, &g), &c) in row.iter_mut().zip(w).zip(b) {
            *v = ((*v as f64 - mean) * scale) as f32 * g + c;
        }
    }
}

/// The complementary error function with a fractional error below 1.2e-7 everywhere (a
/// Chebyshev fit of `erfc(z) * exp(z^2)` in `t = 1 / (1 + z/2)`, Numerical Recipes' `erfcc`): as
/// good as f32 can hold, also far in the tails, for one `exp` per value (a series to f64
/// precision made BERT's GELU the slowest step of its forward pass).
fn erfc(z: f64) -> f64 {
    let a = z.abs();
    let t = 1.0 / (1.0 + 0.5 * a);
    let poly = [
        -1.265_512_23,
        1.000_023_68,
        0.374_091_96,
        0.096_784_18,
        -0.186_288_06,
        0.278_868_07,
        -1.135_203_98,
        1.488_515_87,
        -0.822_152_23,
        0.170_872_77,
    ]
    .iter()
    .rev()
    .fold(0.0, |acc, c| acc * t + c);
    let r = t * (-a * a + poly).exp();
    if z >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

/// GELU with the exact normal CDF, `x * (1 + erf(x / sqrt(2))) / 2` (BERT's `gelu`, not the tanh
/// approximation of [`kernels::activation::gelu`]), in place, computed in f64.
pub fn gelu_erf(x: &mut [f32]) {
    for v in x {
        let f = *v as f64;
        // 1 + erf(u) = 2 - erfc(u) = erfc(-u): no cancellation for negative x.
        *v = (0.5 * f * erfc(-f * std::f64::consts::FRAC_1_SQRT_2)) as f32;
    }
}

/// RoPE angles for one position: `(cos, sin)` of `pos * base^(-2i/n_rot)` for each of the
/// `out.len()` pairs, divided by per-pair `freq_factors` when the model has them.
pub fn rope_angles(
    pos: usize,
    base: f32,
    freq_scale: f32,
    freq_factors: Option<&[f32]>,
    out: &mut [(f32, f32)],
) {
    let theta_scale = base.powf(-1.0 / out.len() as f32);
    let mut theta = pos as f32;
    for (i, o) in out.iter_mut().enumerate() {
        let ff = freq_factors.map_or(1.0, |f| f[i]);
        let t = theta / ff * freq_scale;
        *o = (t.cos(), t.sin());
        theta *= theta_scale;
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
    fn residual_with_post_norm_adds_the_normed_rows() {
        let (w, o) = ([0.5f32, 2.0, -1.0], [1.0f32, -3.0, 0.25, 4.0, 5.0, 6.0]);
        let mut normed = o.to_vec();
        rms_norm(&mut normed, &w, 1e-6);
        let mut x = vec![0.1f32; 6];
        add_residual(&mut x, &o, Some(&w), 1e-6);
        for (a, b) in x.iter().zip(&normed) {
            assert_eq!(a.to_bits(), (0.1 + b).to_bits());
        }
        add_residual(&mut x, &o, None, 1e-6);
        assert_eq!(x[0], 0.1 + normed[0] + 1.0);
    }

    #[test]
    fn layer_norm_centres_scales_and_shifts() {
        // [1, 2, 3, 4]: mean 2.5, variance 1.25, so (x - 2.5) / sqrt(1.25) =
        // [-1.3416408, -0.4472136, 0.4472136, 1.3416408], then * w + b.
        let mut x = vec![1.0f32, 2.0, 3.0, 4.0, 7.0, 7.0, 7.0, 7.0];
        let (w, b) = ([1.0f32, 2.0, -1.0, 0.5], [0.0f32, 1.0, 0.0, -1.0]);
        layer_norm(&mut x, &w, &b, 1e-12);
        let want = [-1.341_640_8, 0.105_572_8, -0.447_213_6, -0.329_179_6];
        for (got, want) in x.iter().zip(want) {
            assert!((got - want).abs() < 1e-6, "{got} vs {want}");
        }
        // A constant row has no variance: eps keeps it finite and it becomes the bias.
        assert_eq!(&x[4..], &b);
    }

    #[test]
    fn gelu_is_x_times_the_normal_cdf() {
        // Phi(1) = 0.8413447460685429, Phi(-1) = 1 - Phi(1), Phi(2) = 0.9772498680518208,
        // Phi(-3) = 0.0013498980316301, Phi(0.5) = 0.6914624612740131.
        let mut x = [0.0f32, 1.0, -1.0, 2.0, -3.0, 0.5, 9.0, -9.0];
        gelu_erf(&mut x);
        let want = [
            0.0,
            0.841_344_8,
            -0.158_655_25,
            1.954_499_7,
            -0.004_049_694,
            0.345_731_23,
            9.0,
            0.0,
        ];
        for (got, want) in x.iter().zip(want) {
            assert!(
                (got - want).abs() <= want.abs() * 1e-6 + 1e-12,
                "{got} vs {want}"
            );
        }
        // erfc(0.5), erfc(-2), erfc(4): fractional error below 1.2e-7.
        for (z, want) in [
            (0.5, 0.479_500_122_186_953_5),
            (-2.0, 1.995_322_265_018_952_7),
            (4.0, 1.541_725_790_028_002e-8),
        ] {
            assert!(
                (erfc(z) - want).abs() <= want * 1.2e-7,
                "erfc({z}) = {}",
                erfc(z)
            );
        }
    }

    #[test]
    fn rope_angles_step_by_the_base() {
        let mut angles = [(0f32, 0f32); 2];
        rope_angles(1, 10000.0, 1.0, None, &mut angles);
        // pair 0 turns by 1 radian, pair 1 by 10000^(-1/2) = 0.01 radian
        assert!((angles[0].0 - 1f32.cos()).abs() < 1e-6);
        assert!((angles[1].1 - 0.01f32.sin()).abs() < 1e-6);
    }
}
