//! Quantize-then-dequantize error budgets, and dot products against dequantize-then-dot.
//!
//! The budgets are relative RMS errors, `rms(x - dequant(quant(x))) / rms(x)`, for the worst of
//! several kinds of weight-like data (Gaussian, uniform, 1% outliers, shifted mean). They follow
//! from the bits per weight and the block structure; the measured values on this data are noted
//! beside each budget. llama.cpp's own quantizations of the synthetic model must meet the same
//! budgets (see `llama_ref`). A layout bug (wrong element order) gives errors around 1.4.

use crate::formats::q8;
use crate::formats::test_util::*;
use crate::formats::*;
use gguf::GgmlType;

/// F32 is exact.
pub const F32_MAX_REL_RMSE: f64 = 0.0;
/// 11 significant bits, round to nearest: ~2^-12 relative RMS. Measured worst 2.09e-4.
pub const F16_MAX_REL_RMSE: f64 = 2.5e-4;
/// 8 significant bits, round to nearest: ~2^-9 relative RMS. Measured worst 1.68e-3.
pub const BF16_MAX_REL_RMSE: f64 = 2.0e-3;
/// 16 levels per 32, symmetric, scale from the signed max. Measured: Gaussian 0.085, worst
/// (outliers) 0.131.
pub const Q4_0_MAX_REL_RMSE: f64 = 0.15;
/// 16 levels per 32 between min and max. Measured: Gaussian 0.078, worst 0.093.
pub const Q4_1_MAX_REL_RMSE: f64 = 0.105;
/// 32 levels per 32, symmetric. Measured: Gaussian 0.043, worst 0.066.
pub const Q5_0_MAX_REL_RMSE: f64 = 0.075;
/// 32 levels per 32 between min and max. Measured: Gaussian 0.038, worst 0.045.
pub const Q5_1_MAX_REL_RMSE: f64 = 0.052;
/// 255 levels per 32, symmetric. Measured: Gaussian 0.0053, worst 0.0083.
pub const Q8_0_MAX_REL_RMSE: f64 = 0.0095;
/// 4 levels per 16 with 4-bit scale and min. Measured: Gaussian 0.294, worst 0.348.
pub const Q2_K_MAX_REL_RMSE: f64 = 0.40;
/// 8 levels per 16, 6-bit signed scales. Measured: Gaussian 0.151, worst 0.194.
pub const Q3_K_MAX_REL_RMSE: f64 = 0.22;
/// 16 levels per 32 with 6-bit scale and min. Measured: Gaussian 0.071, worst 0.087.
pub const Q4_K_MAX_REL_RMSE: f64 = 0.10;
/// 32 levels per 32 with 6-bit scale and min. Measured: Gaussian 0.036, worst 0.044.
pub const Q5_K_MAX_REL_RMSE: f64 = 0.05;
/// 64 levels per 16, 8-bit signed scales. Measured: Gaussian 0.0175, worst 0.0248.
pub const Q6_K_MAX_REL_RMSE: f64 = 0.028;
/// 16 non-linear levels per 32, searched f16 scale. Measured: Gaussian 0.076, worst 0.101.
pub const IQ4_NL_MAX_REL_RMSE: f64 = 0.115;
/// 16 non-linear levels per 32, 6-bit sub-block scales. Measured: Gaussian 0.076, worst 0.103.
pub const IQ4_XS_MAX_REL_RMSE: f64 = 0.115;

/// The round-trip budget of a weight type.
pub fn max_rel_rmse(ty: GgmlType) -> f64 {
    use GgmlType::*;
    match ty {
        F32 => F32_MAX_REL_RMSE,
        F16 => F16_MAX_REL_RMSE,
        BF16 => BF16_MAX_REL_RMSE,
        Q4_0 => Q4_0_MAX_REL_RMSE,
        Q4_1 => Q4_1_MAX_REL_RMSE,
        Q5_0 => Q5_0_MAX_REL_RMSE,
        Q5_1 => Q5_1_MAX_REL_RMSE,
        Q8_0 => Q8_0_MAX_REL_RMSE,
        Q2_K => Q2_K_MAX_REL_RMSE,
        Q3_K => Q3_K_MAX_REL_RMSE,
        Q4_K => Q4_K_MAX_REL_RMSE,
        Q5_K => Q5_K_MAX_REL_RMSE,
        Q6_K => Q6_K_MAX_REL_RMSE,
        IQ4_NL => IQ4_NL_MAX_REL_RMSE,
        IQ4_XS => IQ4_XS_MAX_REL_RMSE,
        other => panic!("no budget for {other}"),
    }
}

/// |vec_dot(w, quant(x)) - dot(dequant(w), x)| / (|dequant(w)| |x|) for Q8_0 activations, worst
/// of 40 rows of 1024. Activation rounding is ~amax/127/sqrt(12) per element, which makes this
/// ~1e-4 typically; a wrong scale, min or element order gives > 1e-2. Measured worst 4.6e-4.
pub const DOT_Q8_0_ACT_MAX_REL_ERR: f64 = 7.0e-4;
/// The same for Q8_1 activations (Q8_0 plus the f16 rounding of `s`). Measured worst 4.8e-4.
pub const DOT_Q8_1_ACT_MAX_REL_ERR: f64 = 7.0e-4;
/// The same for Q8_K activations (one scale per 256: coarser). Measured worst 9.8e-4.
pub const DOT_Q8_K_ACT_MAX_REL_ERR: f64 = 1.4e-3;
/// The same for f32 activations (F32/F16/BF16 weights): only the f32 rounding of the result.
/// Measured worst 1.5e-8.
pub const DOT_F32_ACT_MAX_REL_ERR: f64 = 2.0e-7;

/// The dot budget of a weight type for rows of `n` elements: the constants above are for
/// n = 1024, and the relative error of a sum of `n` independent rounding errors shrinks like
/// `1/sqrt(n)`.
pub fn dot_budget(weight: GgmlType, n: usize) -> f64 {
    let base = match activation_type(weight).unwrap() {
        GgmlType::Q8_0 => DOT_Q8_0_ACT_MAX_REL_ERR,
        GgmlType::Q8_1 => DOT_Q8_1_ACT_MAX_REL_ERR,
        GgmlType::Q8_K => DOT_Q8_K_ACT_MAX_REL_ERR,
        _ => return DOT_F32_ACT_MAX_REL_ERR,
    };
    base * (1024.0 / n as f64).sqrt()
}

#[test]
fn round_trip_within_budget() {
    let mut report = String::new();
    let mut failures = Vec::new();
    for ty in ALL_TYPES {
        let mut worst = 0.0f64;
        for (k, kind) in ALL_DATA.into_iter().enumerate() {
            let mut rng = Rng::new(1000 + k as u64);
            let x = make_data(kind, 64 * 256, &mut rng);
            let y = dequantize_vec(ty, &quantize_vec(ty, &x));
            let e = rel_rmse(&x, &y);
            report += &format!("{ty} {kind:?}: {e:.4e}\n");
            worst = worst.max(e);
        }
        report += &format!(
            "{ty}: worst {worst:.4e} (budget {:.3e})\n",
            max_rel_rmse(ty)
        );
        if worst > max_rel_rmse(ty) {
            failures.push(ty);
        }
    }
    println!("{report}");
    assert!(failures.is_empty(), "over budget: {failures:?}\n{report}");
}

#[test]
fn degenerate_blocks_stay_finite() {
    let cases: [(&str, Vec<f32>); 5] = [
        ("zeros", vec![0.0; 512]),
        ("constant", vec![0.37; 512]),
        ("negative constant", vec![-2.5; 512]),
        ("tiny", vec![1e-20; 512]),
        (
            "one spike",
            (0..512).map(|i| if i == 300 { 5.0 } else { 0.0 }).collect(),
        ),
    ];
    for ty in ALL_TYPES {
        for (name, x) in &cases {
            let y = dequantize_vec(ty, &quantize_vec(ty, x));
            assert!(y.iter().all(|v| v.is_finite()), "{ty} {name}");
            if name == &"zeros" {
                assert!(y.iter().all(|&v| v == 0.0), "{ty} zeros");
            }
            let e = rel_rmse(x, &y);
            if name != &"tiny" && name != &"zeros" {
                assert!(e <= 2.0 * max_rel_rmse(ty).max(1e-3), "{ty} {name}: {e}");
            }
        }
    }
}

/// Dequantizes a quantized activation row to f32.
fn dequantize_activations(act: GgmlType, bytes: &[u8], n: usize) -> Vec<f32> {
    let mut y = vec![0.0f32; n];
    match act {
        GgmlType::F32 => float::dequantize_f32(bytes, &mut y),
        GgmlType::Q8_0 => dequantize_row(GgmlType::Q8_0, bytes, &mut y).unwrap(),
        GgmlType::Q8_1 => {
            for (b, v) in bytes.chunks_exact(36).zip(y.chunks_exact_mut(32)) {
                q8::dequantize_q8_1_block(b.try_into().unwrap(), v.try_into().unwrap());
            }
        }
        GgmlType::Q8_K => {
            for (b, v) in bytes.chunks_exact(292).zip(y.chunks_exact_mut(256)) {
                q8::dequantize_q8_k_block(b.try_into().unwrap(), v.try_into().unwrap());
            }
        }
        other => panic!("{other}"),
    }
    y
}

/// Byte offsets of the f16 fields of each block type (set to sane values in random blocks).
fn f16_fields(ty: GgmlType) -> &'static [usize] {
    use GgmlType::*;
    match ty {
        Q4_0 | Q5_0 | Q8_0 | IQ4_NL | IQ4_XS => &[0],
        Q4_1 | Q5_1 | Q4_K | Q5_K => &[0, 2],
        Q2_K => &[80, 82],
        Q3_K => &[108],
        Q6_K => &[208],
        _ => &[],
    }
}

/// Random weight rows: quantized random data for the float types, random bytes (every bit pattern
/// of quants and scales) with f16 fields in [-1, 1] for the quantized ones.
fn random_weights(ty: GgmlType, n: usize, rng: &mut Rng) -> Vec<u8> {
    if ty.block_size() == 1 {
        return quantize_vec(ty, &make_data(Data::Gaussian, n, rng));
    }
    let mut w: Vec<u8> = (0..n / ty.block_size() * ty.type_size())
        .map(|_| rng.byte())
        .collect();
    for block in w.chunks_exact_mut(ty.type_size()) {
        for &off in f16_fields(ty) {
            put_f16(block, off, rng.uniform() as f32 * 2.0 - 1.0);
        }
    }
    w
}

/// vec_dot does the same arithmetic as dequantizing both sides and dotting, up to f32 rounding
/// (and the f16 rounding of Q8_1's `s`): checks the integer sums, scales, mins and bsums.
#[test]
fn vec_dot_matches_dequantized_activations() {
    let n = 1024;
    for ty in ALL_TYPES {
        let act_ty = activation_type(ty).unwrap();
        let mut rng = Rng::new(7);
        for trial in 0..20 {
            let w = random_weights(ty, n, &mut rng);
            let x = make_data(ALL_DATA[trial % 4], n, &mut rng);
            let mut qa = vec![0u8; activation_row_bytes(act_ty, n)];
            quantize_activations(act_ty, &x, &mut qa);
            let wd = dequantize_vec(ty, &w);
            let ad = dequantize_activations(act_ty, &qa, n);
            let want = dot64(&wd, &ad);
            let scale: f64 = wd.iter().zip(&ad).map(|(a, b)| (a * b).abs() as f64).sum();
            let mut tol = 2e-6 * scale;
            if act_ty == GgmlType::Q8_1 {
                // m * s with s rounded to f16: up to |m| * |d8 * sum q8| * 2^-11 per block.
                let m_off = 2;
                for (wb, ab) in w.chunks_exact(ty.type_size()).zip(qa.chunks_exact(36)) {
                    let m = read_f16(wb, m_off).abs() as f64;
                    let s = read_f16(ab, 2).abs() as f64;
                    tol += m * s * 2f64.powi(-11) + 1e-7 * scale;
                }
            }
            let got = vec_dot(ty, &w, &qa, n) as f64;
            assert!(
                (got - want).abs() <= tol + 1e-30,
                "{ty} trial {trial}: vec_dot {got} vs dequantized {want} (tol {tol})"
            );
        }
    }
}

/// vec_dot with quantized activations stays close to the f32 dot of the dequantized weights with
/// the original activations: the only error is the activation quantization.
#[test]
fn vec_dot_close_to_f32_dot() {
    let n = 1024;
    let mut report = String::new();
    let mut failures = Vec::new();
    for ty in ALL_TYPES {
        let act_ty = activation_type(ty).unwrap();
        let mut worst = 0.0f64;
        let mut rng = Rng::new(99);
        for trial in 0..40 {
            let w = quantize_vec(ty, &make_data(ALL_DATA[trial % 4], n, &mut rng));
            let x = make_data(ALL_DATA[(trial / 4) % 4], n, &mut rng);
            let mut qa = vec![0u8; activation_row_bytes(act_ty, n)];
            quantize_activations(act_ty, &x, &mut qa);
            let wd = dequantize_vec(ty, &w);
            let want = dot64(&wd, &x);
            let got = vec_dot(ty, &w, &qa, n) as f64;
            let rel = (got - want).abs() / (norm64(&wd) * norm64(&x));
            worst = worst.max(rel);
        }
        report += &format!(
            "{ty} x {act_ty}: {worst:.3e} (budget {:.1e})\n",
            dot_budget(ty, n)
        );
        if worst > dot_budget(ty, n) {
            failures.push(ty);
        }
    }
    println!("{report}");
    assert!(failures.is_empty(), "over budget: {failures:?}\n{report}");
}
