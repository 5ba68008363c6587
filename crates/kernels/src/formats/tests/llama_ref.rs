//! Against llama.cpp: `testdata/reference/synthetic/llama3-synthetic-<type>.gguf` hold the same
//! F32 model (`llama3-synthetic.gguf`) quantized by llama-quantize (`--pure`, no importance
//! matrix) to every type.
//!
//! - Dequantizing each of llama.cpp's tensors must land within the type's round-trip budget of the
//!   F32 original (a wrong element order or scale unpacking gives ~1.4).
//! - Quantizing the F32 original with our quantizer must give llama.cpp's bytes: exactly for the
//!   types with a deterministic min/max reference (Q4_0..Q8_0, F16, BF16), and for the searched
//!   ones (K-quants, IQ4) at least nearly so, and never a worse error than llama.cpp's.
//! - vec_dot on llama.cpp's rows agrees with dequantize-then-dot.

use super::round_trip::{dot_budget, max_rel_rmse};
use crate::formats::test_util::*;
use crate::formats::*;
use gguf::{GgmlType, Gguf, TensorInfo};
use std::path::PathBuf;

fn synthetic(name: &str) -> Gguf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/reference/synthetic")
        .join(name);
    Gguf::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// (file suffix, the type its weight matrices are in).
const FILES: [(&str, GgmlType); 14] = [
    ("f16", GgmlType::F16),
    ("bf16", GgmlType::BF16),
    ("q4_0", GgmlType::Q4_0),
    ("q4_1", GgmlType::Q4_1),
    ("q5_0", GgmlType::Q5_0),
    ("q5_1", GgmlType::Q5_1),
    ("q8_0", GgmlType::Q8_0),
    ("q2_k", GgmlType::Q2_K),
    ("q3_k_m", GgmlType::Q3_K),
    ("q4_k_m", GgmlType::Q4_K),
    ("q5_k_m", GgmlType::Q5_K),
    ("q6_k", GgmlType::Q6_K),
    ("iq4_nl", GgmlType::IQ4_NL),
    ("iq4_xs", GgmlType::IQ4_XS),
];

/// The F32 original of a tensor, as values.
fn original(f32_file: &Gguf, t: &TensorInfo) -> Vec<f32> {
    let o = f32_file
        .tensor(&t.name)
        .unwrap_or_else(|| panic!("{} missing from the F32 file", t.name));
    assert_eq!(o.ty, GgmlType::F32, "{}", t.name);
    assert_eq!(o.dims, t.dims, "{}", t.name);
    let mut v = vec![0.0f32; o.n_elements() as usize];
    float::dequantize_f32(f32_file.tensor_data(o), &mut v);
    v
}

/// The quantized (non-F32) tensors of a file, with their row length.
fn quantized(file: &Gguf) -> Vec<(TensorInfo, usize)> {
    file.tensors()
        .iter()
        .filter(|t| t.ty != GgmlType::F32)
        .map(|t| (t.clone(), t.dims[0] as usize))
        .collect()
}

#[test]
fn dequantize_llama_cpp_tensors() {
    let f32_file = synthetic("llama3-synthetic.gguf");
    let mut report = String::new();
    let mut failures = Vec::new();
    for (suffix, ty) in FILES {
        let file = synthetic(&format!("llama3-synthetic-{suffix}.gguf"));
        let tensors = quantized(&file);
        let n_of_type = tensors.iter().filter(|(t, _)| t.ty == ty).count();
        assert!(n_of_type >= 14, "{suffix}: only {n_of_type} {ty} tensors");
        let mut worst = 0.0f64;
        for (t, _) in &tensors {
            let want = original(&f32_file, t);
            let mut got = vec![0.0f32; want.len()];
            dequantize_row(t.ty, file.tensor_data(t), &mut got).unwrap();
            let e = rel_rmse(&want, &got);
            if e > max_rel_rmse(t.ty) {
                failures.push(format!("{suffix} {} ({}): {e:.4e}", t.name, t.ty));
            }
            if t.ty == ty {
                worst = worst.max(e);
            }
        }
        report += &format!(
            "{ty}: {} tensors, worst rel RMSE {worst:.4e} (budget {:.3e})\n",
            tensors.len(),
            max_rel_rmse(ty)
        );
    }
    println!("{report}");
    assert!(failures.is_empty(), "{failures:#?}\n{report}");
}

/// Our quantizer on the F32 original versus llama-quantize's bytes.
#[test]
fn quantize_like_llama_cpp() {
    let f32_file = synthetic("llama3-synthetic.gguf");
    let mut report = String::new();
    let mut failures = Vec::new();
    for (suffix, ty) in FILES {
        let file = synthetic(&format!("llama3-synthetic-{suffix}.gguf"));
        let (mut blocks, mut same) = (0usize, 0usize);
        let (mut err_ours, mut err_theirs, mut norm) = (0.0f64, 0.0f64, 0.0f64);
        for (t, _) in quantized(&file).iter().filter(|(t, _)| t.ty == ty) {
            let x = original(&f32_file, t);
            let theirs = file.tensor_data(t);
            let ours = quantize_vec(ty, &x);
            assert_eq!(ours.len(), theirs.len());
            for (a, b) in ours
                .chunks_exact(ty.type_size())
                .zip(theirs.chunks_exact(ty.type_size()))
            {
                blocks += 1;
                same += (a == b) as usize;
            }
            let (yo, yt) = (dequantize_vec(ty, &ours), dequantize_vec(ty, theirs));
            for ((&a, &o), &t) in x.iter().zip(&yo).zip(&yt) {
                err_ours += (a as f64 - o as f64).powi(2);
                err_theirs += (a as f64 - t as f64).powi(2);
                norm += (a as f64).powi(2);
            }
        }
        let (eo, et) = ((err_ours / norm).sqrt(), (err_theirs / norm).sqrt());
        report += &format!(
            "{ty}: {same}/{blocks} blocks identical; rel RMSE ours {eo:.5e}, llama.cpp {et:.5e}\n"
        );
        if same != blocks || eo > et {
            failures.push(ty);
        }
    }
    println!("{report}");
    assert!(
        failures.is_empty(),
        "differs from llama.cpp: {failures:?}\n{report}"
    );
}

#[test]
fn vec_dot_on_llama_cpp_rows() {
    let mut rng = Rng::new(5);
    for (suffix, ty) in FILES {
        let file = synthetic(&format!("llama3-synthetic-{suffix}.gguf"));
        let act_ty = activation_type(ty).unwrap();
        for (t, n) in quantized(&file).iter().filter(|(t, _)| t.ty == ty) {
            let n = *n;
            let mut worst = 0.0f64;
            let row_bytes = n / ty.block_size() * ty.type_size();
            let data = file.tensor_data(t);
            let x = make_data(Data::Gaussian, n, &mut rng);
            let mut qa = vec![0u8; activation_row_bytes(act_ty, n)];
            quantize_activations(act_ty, &x, &mut qa);
            for r in (0..data.len() / row_bytes).step_by(37) {
                let w = &data[r * row_bytes..(r + 1) * row_bytes];
                let wd = dequantize_vec(ty, w);
                let got = vec_dot(ty, w, &qa, n) as f64;
                let rel = (got - dot64(&wd, &x)).abs() / (norm64(&wd) * norm64(&x));
                worst = worst.max(rel);
            }
            assert!(worst <= dot_budget(ty, n), "{ty} {}: {worst:e}", t.name);
        }
    }
}
