//! Per-row operations of the forward pass, written to match llama.cpp's numerics (RMSNorm
//! accumulates f32 squares in f64, RoPE angles are stepped by repeated multiplication). The
//! activations and the RoPE rotation live in the kernels crate (`kernels::activation`,
//! `kernels::rope`), which builds their fused multiply-adds for the CPU's FMA unit.

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
    fn rope_angles_step_by_the_base() {
        let mut angles = [(0f32, 0f32); 2];
        rope_angles(1, 10000.0, 1.0, None, &mut angles);
        // pair 0 turns by 1 radian, pair 1 by 10000^(-1/2) = 0.01 radian
        assert!((angles[0].0 - 1f32.cos()).abs() < 1e-6);
        assert!((angles[1].1 - 0.01f32.sin()).abs() < 1e-6);
    }
}
