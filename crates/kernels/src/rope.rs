//! Rotary position embedding applied to head vectors, with the fused multiply-adds GCC makes of
//! llama.cpp's `x0*cos - x1*sin` / `x0*sin + x1*cos`. The fused steps need the FMA instruction to
//! be fast (without it `mul_add` is a library call), so the SIMD levels run the same code compiled
//! for FMA; the results are the same bits either way.

use crate::simd::{active_level, Level};

/// Rotate each `head_dim` chunk of `heads` in place by `angles` (`(cos, sin)` per pair). `neox`
/// pairs `(i, i + n_rot/2)`, otherwise `(2i, 2i+1)`; dimensions past `n_rot = 2 * angles.len()`
/// are left alone.
///
/// # Panics
/// If `heads` is not whole heads, or `angles` rotates more than `head_dim` dimensions.
pub fn rope(heads: &mut [f32], head_dim: usize, angles: &[(f32, f32)], neox: bool) {
    assert!(
        head_dim > 0 && heads.len().is_multiple_of(head_dim) && 2 * angles.len() <= head_dim,
        "rope: {} values in heads of {head_dim}, {} angle pairs",
        heads.len(),
        angles.len()
    );
    #[cfg(target_arch = "x86_64")]
    if active_level() != Level::Scalar {
        // SAFETY: every SIMD level implies FMA (checked at detection).
        unsafe { x86::rope(heads, head_dim, angles, neox) };
        return;
    }
    rope_body(heads, head_dim, angles, neox);
}

/// The scalar twin; inlined into the FMA build.
#[inline(always)]
fn rope_body(heads: &mut [f32], head_dim: usize, angles: &[(f32, f32)], neox: bool) {
    let half = angles.len();
    for head in heads.chunks_exact_mut(head_dim) {
        for (i, &(c, s)) in angles.iter().enumerate() {
            let (a, b) = if neox {
                (i, i + half)
            } else {
                (2 * i, 2 * i + 1)
            };
            let (x0, x1) = (head[a], head[b]);
            head[a] = x0.mul_add(c, -(x1 * s));
            head[b] = x0.mul_add(s, x1 * c);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    /// [`super::rope_body`] with `mul_add` compiled to FMA instructions.
    ///
    /// # Safety
    /// The CPU must have FMA.
    #[target_feature(enable = "fma")]
    pub(super) unsafe fn rope(
        heads: &mut [f32],
        head_dim: usize,
        angles: &[(f32, f32)],
        neox: bool,
    ) {
        super::rope_body(heads, head_dim, angles, neox);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_pairs_by_their_angles() {
        let a = [(1f32.cos(), 1f32.sin()), (0.01f32.cos(), 0.01f32.sin())];
        let mut h = [1.0, 0.0, 1.0, 0.0, 7.0];
        rope(&mut h[..4], 4, &a, false);
        assert!((h[0] - 1f32.cos()).abs() < 1e-6 && (h[1] - 1f32.sin()).abs() < 1e-6);
        let mut h = vec![1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0];
        rope(&mut h, 4, &a, true);
        for head in h.chunks(4) {
            assert!((head[2] - 1f32.sin()).abs() < 1e-6 && (head[3] - 0.01f32.sin()).abs() < 1e-6);
        }
    }

    #[test]
    fn fma_build_equals_scalar_twin() {
        let angles: Vec<(f32, f32)> = (0..24)
            .map(|i| ((i as f32 * 0.37).cos(), (i as f32 * 0.37).sin()))
            .collect();
        let start: Vec<f32> = (0..128 * 3)
            .map(|i| (i as f32 * 0.731).sin() * 5.0)
            .collect();
        for neox in [false, true] {
            let (mut got, mut want) = (start.clone(), start.clone());
            rope(&mut got, 64, &angles, neox);
            rope_body(&mut want, 64, &angles, neox);
            assert_eq!(
                got.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                want.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
            );
            // Past n_rot nothing moves.
            assert_eq!(got[60..64], start[60..64]);
        }
    }
}
