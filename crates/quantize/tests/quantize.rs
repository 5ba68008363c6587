//! Re-quantization end to end: the synthetic reference models (F32, F16, BF16, Q8_0) and models
//! built here quantized to every target, checked for types, metadata, layout, llama.cpp's exact
//! bytes, error against the original weights, and the errors for bad input.

use std::fs;
use std::path::{Path, PathBuf};

use gguf::{GgmlType, Gguf, GgufWriter, Value};
use kernels::formats::{dequantize_row, quantize_row};
use quantize::{plan, quantize_file, Progress, QuantizeError, Target, TensorPlan};

/// Relative RMS error budgets (RMS of the error over RMS of the weights) per output type. The
/// worst measured over the sources of `error_is_within_budget`: Q8_0 0.54%, Q6_K 1.78%,
/// Q5_K 3.63%, Q5_1 3.83%, Q5_0 4.42%, Q4_K 7.17%, Q4_0 8.65%, F16 0.02% (4 bits per weight
/// cannot do better than about 7% on Gaussian weights).
const ERROR_BUDGET: &[(GgmlType, f64)] = &[
    (GgmlType::Q8_0, 0.01),
    (GgmlType::Q6_K, 0.025),
    (GgmlType::Q5_K, 0.05),
    (GgmlType::Q5_1, 0.05),
    (GgmlType::Q5_0, 0.06),
    (GgmlType::Q4_K, 0.10),
    (GgmlType::Q4_0, 0.12),
    (GgmlType::F16, 0.001),
];

fn synthetic(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/reference/synthetic")
        .join(file)
}

fn quantize(src: &Path, dir: &Path, target: Target) -> (PathBuf, quantize::Report) {
    let dst = dir.join(format!("out-{target}.gguf"));
    let report = quantize_file(src, &dst, target, &mut |_| {}).unwrap();
    (dst, report)
}

/// A tensor's values as f32, whatever its type.
fn values(g: &Gguf, name: &str) -> Vec<f32> {
    let t = g.tensor(name).unwrap();
    let ne0 = t.shape()[0] as usize;
    let mut out = vec![0f32; t.n_elements() as usize];
    let row = t.row_bytes().unwrap() as usize;
    for (src, dst) in g.tensor_data(t).chunks(row).zip(out.chunks_mut(ne0)) {
        dequantize_row(t.ty, src, dst).unwrap();
    }
    out
}

fn relative_rms_error(want: &[f32], got: &[f32]) -> f64 {
    let err: f64 = want
        .iter()
        .zip(got)
        .map(|(&a, &b)| (f64::from(a) - f64::from(b)).powi(2))
        .sum();
    let norm: f64 = want.iter().map(|&a| f64::from(a).powi(2)).sum();
    (err / norm).sqrt()
}

/// The types llama.cpp gives the 2-layer synthetic llama (rows of 256 and 512) for `target`.
fn expected_llama3_type(target: Target, name: &str) -> GgmlType {
    use GgmlType::*;
    if name.ends_with("norm.weight") {
        return F32;
    }
    let base = target.base_type();
    match (target, name) {
        (Target::Q8_0, _) => Q8_0,
        (_, "output.weight") => Q6_K,
        // use_more_bits(i, 2) holds only for i = 1.
        (Target::Q4_K_M | Target::Q5_K_M, "blk.1.attn_v.weight" | "blk.1.ffn_down.weight") => Q6_K,
        _ => base,
    }
}

#[test]
fn targets_parse_in_any_case() {
    for (s, t) in [
        ("q8_0", Target::Q8_0),
        ("Q8_0", Target::Q8_0),
        ("q4_0", Target::Q4_0),
        ("q4_K_M", Target::Q4_K_M),
        ("Q4_K_M", Target::Q4_K_M),
        ("q4_k_m", Target::Q4_K_M),
        ("q5_K_M", Target::Q5_K_M),
        ("Q5_k_m", Target::Q5_K_M),
    ] {
        assert_eq!(s.parse::<Target>().unwrap(), t, "{s}");
    }
    for t in Target::ALL {
        assert_eq!(t.to_string().parse::<Target>().unwrap(), t);
    }
    assert_eq!(
        [7, 2, 15, 17],
        [Target::Q8_0, Target::Q4_0, Target::Q4_K_M, Target::Q5_K_M].map(Target::file_type)
    );
}

#[test]
fn unknown_targets_are_rejected_with_the_choices() {
    for bad in ["", "q4_k", "q4_K_S", "f16", "q4_0 q8_0", "Q6_K"] {
        let err = bad.parse::<Target>().unwrap_err();
        assert!(
            matches!(&err, QuantizeError::UnknownTarget { given } if given == bad),
            "{bad}: {err:?}"
        );
        assert!(err.to_string().contains("q4_K_M"), "{err}");
    }
}

/// Every target on the F32 synthetic llama: the rules' types, the metadata and the tensor table
/// preserved, and every quantized tensor byte-identical to llama.cpp's quantization of the same
/// weights to the same type (its `--pure` files of the same source).
#[test]
fn f32_llama_matches_llama_cpp_types_and_bytes() {
    let src_path = synthetic("llama3-synthetic.gguf");
    let src = Gguf::open(&src_path).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let reference = |ty: GgmlType| {
        let file = match ty {
            GgmlType::Q8_0 => "llama3-synthetic-q8_0.gguf",
            GgmlType::Q4_0 => "llama3-synthetic-q4_0.gguf",
            GgmlType::Q4_K => "llama3-synthetic-q4_k_m.gguf",
            GgmlType::Q5_K => "llama3-synthetic-q5_k_m.gguf",
            GgmlType::Q6_K => "llama3-synthetic-q6_k.gguf",
            other => panic!("no reference for {other}"),
        };
        Gguf::open(synthetic(file)).unwrap()
    };
    for target in Target::ALL {
        let (dst, report) = quantize(&src_path, dir.path(), target);
        let out = Gguf::open(&dst).unwrap();

        // Tensor table: same names, order and shapes; types as the rules say.
        assert_eq!(out.tensors().len(), src.tensors().len());
        for ((o, s), p) in out.tensors().iter().zip(src.tensors()).zip(&report.tensors) {
            assert_eq!((&o.name, &o.dims), (&s.name, &s.dims));
            assert_eq!(
                o.ty,
                expected_llama3_type(target, &o.name),
                "{target} {}",
                o.name
            );
            assert_eq!(
                (p.from, p.to),
                (s.ty, o.ty),
                "{target} report for {}",
                o.name
            );
            if o.ty == s.ty {
                assert_eq!(out.tensor_data(o), src.tensor_data(s), "{} copied", o.name);
            } else {
                let r = reference(o.ty);
                let want = r.tensor(&o.name).unwrap();
                assert_eq!(want.ty, o.ty);
                assert!(
                    out.tensor_data(o) == r.tensor_data(want),
                    "{target}: {} ({}) differs from llama.cpp's",
                    o.name,
                    o.ty
                );
            }
        }

        // Metadata: everything kept in order, the file type and quantization version set.
        let mut want: Vec<(String, Value)> = src.metadata().to_vec();
        for (k, v) in [
            ("general.quantization_version", Value::U32(2)),
            ("general.file_type", Value::U32(target.file_type())),
        ] {
            match want.iter_mut().find(|(key, _)| key == k) {
                Some(slot) => slot.1 = v,
                None => want.push((k.to_owned(), v)),
            }
        }
        assert_eq!(out.metadata(), &want[..], "{target} metadata");
        assert_eq!(out.alignment(), src.alignment());
        assert_eq!(report.dst_bytes, fs::metadata(&dst).unwrap().len());
        assert_eq!(report.src_bytes, fs::metadata(&src_path).unwrap().len());
    }
}

/// The output is exactly what `GgufWriter` makes of the same metadata and tensors: the streamed
/// header, offsets and padding are the writer's, here at a non-default alignment too.
#[test]
fn streamed_output_is_what_gguf_writer_writes() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("aligned.gguf");
    let mut spec = ModelSpec::llama(2);
    spec.alignment = Some(64);
    spec.write(&src, GgmlType::F16);
    for target in [Target::Q4_K_M, Target::Q8_0] {
        let (dst, _) = quantize(&src, dir.path(), target);
        let out = Gguf::open(&dst).unwrap();
        assert_eq!(out.alignment(), 64);
        let mut w = GgufWriter::new();
        for (k, v) in out.metadata() {
            w.add_metadata(k, v.clone());
        }
        for t in out.tensors() {
            w.add_tensor(&t.name, &t.dims, t.ty, out.tensor_data(t).to_vec())
                .unwrap();
        }
        assert!(w.to_bytes() == fs::read(&dst).unwrap(), "{target}");
    }
}

/// Quantization error against the original weights, per output type, on the reference F32,
/// F16 and BF16 models and on a Gaussian model with row lengths that force every fallback.
#[test]
fn error_is_within_budget() {
    let dir = tempfile::tempdir().unwrap();
    let odd = dir.path().join("odd-f32.gguf");
    ModelSpec::odd_rows().write(&odd, GgmlType::F32);
    let sources = [
        synthetic("llama3-synthetic.gguf"),
        synthetic("llama3-synthetic-f16.gguf"),
        synthetic("llama3-synthetic-bf16.gguf"),
        odd,
    ];
    // Worst relative error seen per output type.
    let mut worst: Vec<(GgmlType, f64)> = Vec::new();
    for src_path in &sources {
        let src = Gguf::open(src_path).unwrap();
        // The odd rows have no Q4_0/Q8_0 encoding (see `short_rows_fall_back`).
        let targets: &[Target] = if src_path.ends_with("odd-f32.gguf") {
            &[Target::Q4_K_M, Target::Q5_K_M]
        } else {
            &Target::ALL
        };
        for &target in targets {
            let (dst, report) = quantize(src_path, dir.path(), target);
            let out = Gguf::open(&dst).unwrap();
            for p in report.tensors.iter().filter(|p| p.from != p.to) {
                let err = relative_rms_error(&values(&src, &p.name), &values(&out, &p.name));
                let budget = ERROR_BUDGET
                    .iter()
                    .find(|(ty, _)| *ty == p.to)
                    .unwrap_or_else(|| panic!("no budget for {}", p.to))
                    .1;
                assert!(
                    err < budget,
                    "{}: {target} {} as {}: relative RMS error {err:.4} over {budget}",
                    src_path.display(),
                    p.name,
                    p.to
                );
                match worst.iter_mut().find(|(ty, _)| *ty == p.to) {
                    Some(w) => w.1 = w.1.max(err),
                    None => worst.push((p.to, err)),
                }
            }
        }
    }
    for (ty, err) in &worst {
        println!("worst relative RMS error {ty}: {:.2}%", err * 100.0);
    }
    // Every type the four targets and their fallbacks can produce was exercised.
    for ty in ERROR_BUDGET.iter().map(|(ty, _)| *ty) {
        assert!(worst.iter().any(|(t, _)| *t == ty), "{ty} never produced");
    }
}

/// Tied embeddings (qwen3 has no output.weight): token_embd takes the output matrix's Q6_K.
#[test]
fn tied_embeddings_take_the_output_type() {
    let src = Gguf::open(synthetic("qwen3-synthetic.gguf")).unwrap();
    assert!(src.tensor("output.weight").is_none());
    for (target, want) in [
        (Target::Q4_K_M, GgmlType::Q6_K),
        (Target::Q5_K_M, GgmlType::Q6_K),
        (Target::Q4_0, GgmlType::Q6_K),
        (Target::Q8_0, GgmlType::Q8_0),
    ] {
        let p = plan(&src, target).unwrap();
        assert_eq!(find(&p, "token_embd.weight").to, want, "{target}");
        // Q/K norms are 1-D and stay F32.
        assert_eq!(find(&p, "blk.0.attn_q_norm.weight").to, GgmlType::F32);
    }
}

/// Phi-3's fused attn_qkv gets one step more than the base type in the K mixes.
#[test]
fn fused_qkv_gets_more_bits() {
    let src = Gguf::open(synthetic("phi3-synthetic.gguf")).unwrap();
    for (target, want) in [
        (Target::Q4_K_M, GgmlType::Q5_K),
        (Target::Q5_K_M, GgmlType::Q6_K),
        (Target::Q4_0, GgmlType::Q4_0),
        (Target::Q8_0, GgmlType::Q8_0),
    ] {
        let p = plan(&src, target).unwrap();
        for layer in 0..2 {
            assert_eq!(find(&p, &format!("blk.{layer}.attn_qkv.weight")).to, want);
        }
        // phi3 counts attn_qkv as its attention-V tensors, but only attn_v is raised by
        // use_more_bits; ffn_down follows the layers.
        assert_eq!(
            find(&p, "blk.1.ffn_down.weight").to,
            expected_llama3_type(target, "blk.1.ffn_down.weight")
        );
    }
}

/// The use_more_bits pattern over 16 layers: first 2, last 2, and every third in between.
#[test]
fn k_mixes_raise_attn_v_and_ffn_down_in_the_chosen_layers() {
    let g = ModelSpec::llama(16).build(GgmlType::F32);
    let more = [0, 1, 4, 7, 10, 13, 14, 15];
    for (target, high, base) in [
        (Target::Q4_K_M, GgmlType::Q6_K, GgmlType::Q4_K),
        (Target::Q5_K_M, GgmlType::Q6_K, GgmlType::Q5_K),
        (Target::Q4_0, GgmlType::Q4_0, GgmlType::Q4_0),
    ] {
        let p = plan(&g, target).unwrap();
        for layer in 0..16 {
            let want = if more.contains(&layer) { high } else { base };
            for t in ["attn_v", "ffn_down"] {
                let name = format!("blk.{layer}.{t}.weight");
                assert_eq!(find(&p, &name).to, want, "{target} {name}");
            }
            let q = format!("blk.{layer}.attn_q.weight");
            assert_eq!(find(&p, &q).to, base, "{target} {q}");
        }
    }
}

/// Eight experts: attn_v and attn_k Q8_0, attn_output Q5_K in Q4_K_M, ffn_down by its
/// `blk.N` layer; the router (ffn_gate_inp) is never quantized.
#[test]
fn eight_expert_models_follow_the_moe_rules() {
    let mut spec = ModelSpec::llama(8);
    spec.metadata
        .push(("llama.expert_count".into(), Value::U32(8)));
    for l in 0..8 {
        spec.tensors
            .push((format!("blk.{l}.ffn_gate_inp.weight"), vec![256, 8]));
        spec.tensors
            .push((format!("blk.{l}.ffn_down_exps.weight"), vec![256, 2, 8]));
    }
    let g = spec.build(GgmlType::F32);
    let p = plan(&g, Target::Q4_K_M).unwrap();
    // use_more_bits(l, 8): layers 0, 3, 6, 7.
    for l in 0..8 {
        let at = |t: &str| find(&p, &format!("blk.{l}.{t}.weight")).to;
        assert_eq!(at("attn_v"), GgmlType::Q8_0);
        assert_eq!(at("attn_k"), GgmlType::Q8_0);
        assert_eq!(at("attn_output"), GgmlType::Q5_K);
        assert_eq!(at("ffn_gate_inp"), GgmlType::F32);
        let down = if [0, 3, 6, 7].contains(&l) {
            GgmlType::Q6_K
        } else {
            GgmlType::Q4_K
        };
        assert_eq!(at("ffn_down"), down, "layer {l}");
        assert_eq!(at("ffn_down_exps"), down, "layer {l}");
    }

    // An expert tensor outside any layer is refused, as llama.cpp refuses it.
    spec.tensors
        .push(("ffn_down_shared.weight".into(), vec![256, 2]));
    let err = plan(&spec.build(GgmlType::F32), Target::Q4_K_M).unwrap_err();
    assert!(
        matches!(&err, QuantizeError::BadLayer { tensor, n_layer: 8 } if tensor == "ffn_down_shared.weight"),
        "{err:?}"
    );
}

/// 70B-class models (80 llama layers with grouped-query attention) raise Q4_K attn_v to Q5_K;
/// without grouped-query attention (65B) they do not.
#[test]
fn seventy_b_models_raise_attn_v() {
    for (kv_heads, want) in [(2, GgmlType::Q5_K), (4, GgmlType::Q4_K)] {
        let mut spec = ModelSpec::llama(80);
        spec.set("llama.attention.head_count_kv", Value::U32(kv_heads));
        let p = plan(&spec.build(GgmlType::F32), Target::Q4_K_M).unwrap();
        // use_more_bits(20, 80) is false: layer 20 keeps the base type, raised or not.
        assert_eq!(
            find(&p, "blk.20.attn_v.weight").to,
            want,
            "{kv_heads} kv heads"
        );
        assert_eq!(find(&p, "blk.0.attn_v.weight").to, GgmlType::Q6_K);
    }
}

/// Falcon in Q4_K_M: output Q8_0; ffn_down Q6_K in the first sixteenth, Q5_K where
/// use_more_bits, else Q4_K.
#[test]
fn falcon_has_its_own_q4_k_m_rules() {
    let mut spec = ModelSpec::llama(32);
    spec.arch = "falcon";
    let p = plan(&spec.build(GgmlType::F32), Target::Q4_K_M).unwrap();
    assert_eq!(find(&p, "output.weight").to, GgmlType::Q8_0);
    let down = |l: u32| find(&p, &format!("blk.{l}.ffn_down.weight")).to;
    assert_eq!(down(0), GgmlType::Q6_K); // 0 < 32/16
    assert_eq!(down(2), GgmlType::Q5_K); // use_more_bits
    assert_eq!(down(4), GgmlType::Q4_K);
}

/// Rows that are not whole 256-element blocks fall back as llama.cpp's do: Q4_K -> Q5_0,
/// Q5_K -> Q5_1, Q6_K -> Q8_0 (the output matrix straight to Q8_0), and F16 when not whole
/// 32-element blocks either; Q4_0 and Q8_0 have no fallback and refuse such rows.
#[test]
fn short_rows_fall_back() {
    let g = ModelSpec::odd_rows().build(GgmlType::F16);
    let types = |target| {
        let p = plan(&g, target).unwrap();
        [
            "output.weight",
            "token_embd.weight",
            "blk.1.attn_v.weight",
            "blk.0.attn_q.weight",
            "blk.0.ffn_up.weight",
        ]
        .map(|n| find(&p, n).to)
    };
    use GgmlType::*;
    // Rows: output, token_embd and attn_* 96 elements; ffn_up 40.
    assert_eq!(types(Target::Q4_K_M), [Q8_0, Q5_0, Q8_0, Q5_0, F16]);
    assert_eq!(types(Target::Q5_K_M), [Q8_0, Q5_1, Q8_0, Q5_1, F16]);
    for target in [Target::Q4_0, Target::Q8_0] {
        let err = plan(&g, target).unwrap_err();
        assert!(
            matches!(&err, QuantizeError::RowNotWholeBlocks { tensor, ne0: 40, block: 32, .. } if tensor == "blk.0.ffn_up.weight"),
            "{target}: {err:?}"
        );
    }
}

/// A Q8_0 model: Q8_0 tensors are copied unchanged to a Q8_0 target and dequantized for the others.
#[test]
fn q8_0_models_can_be_requantized() {
    let src_path = synthetic("llama3-synthetic-q8_0.gguf");
    let src = Gguf::open(&src_path).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (same, _) = quantize(&src_path, dir.path(), Target::Q8_0);
    let same = Gguf::open(same).unwrap();
    for (a, b) in same.tensors().iter().zip(src.tensors()) {
        assert_eq!(
            (a.ty, same.tensor_data(a)),
            (b.ty, src.tensor_data(b)),
            "{}",
            a.name
        );
    }
    let (smaller, report) = quantize(&src_path, dir.path(), Target::Q4_K_M);
    let smaller = Gguf::open(smaller).unwrap();
    assert!(report.dst_bytes < report.src_bytes);
    let name = "blk.0.ffn_up.weight";
    assert_eq!(smaller.tensor(name).unwrap().ty, GgmlType::Q4_K);
    assert!(relative_rms_error(&values(&src, name), &values(&smaller, name)) < 0.10);
}

#[test]
fn progress_reports_every_tensor_in_order() {
    let src = synthetic("llama3-synthetic-f16.gguf");
    let dir = tempfile::tempdir().unwrap();
    let mut seen = Vec::new();
    let dst = dir.path().join("q.gguf");
    let report = quantize_file(&src, &dst, Target::Q4_0, &mut |p: Progress<'_>| {
        seen.push((p.done, p.total, p.tensor.name.clone()));
    })
    .unwrap();
    let n = report.tensors.len();
    let want: Vec<_> = report
        .tensors
        .iter()
        .enumerate()
        .map(|(i, t)| (i + 1, n, t.name.clone()))
        .collect();
    assert_eq!(seen, want);
}

/// An already K-quantized model is refused, naming a tensor and its type, and nothing is written
/// (an existing destination is left as it was).
#[test]
fn quantized_models_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let dst = dir.path().join("out.gguf");
    fs::write(&dst, b"previous").unwrap();
    let err = quantize_file(
        &synthetic("llama3-synthetic-q4_k_m.gguf"),
        &dst,
        Target::Q4_0,
        &mut |_| {},
    )
    .unwrap_err();
    assert!(
        matches!(&err, QuantizeError::UnsupportedInput { tensor, ty: GgmlType::Q4_K } if tensor == "output.weight"),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("output.weight") && msg.contains("Q4_K"),
        "{msg}"
    );
    assert_eq!(fs::read(&dst).unwrap(), b"previous");
    assert_only(dir.path(), &["out.gguf"]);
}

/// A truncated file is the GGUF reader's error, naming the file, whether it ends in the header or
/// in the tensor data; no output appears.
#[test]
fn truncated_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = fs::read(synthetic("llama3-synthetic-f16.gguf")).unwrap();
    let src = dir.path().join("truncated.gguf");
    let dst = dir.path().join("out.gguf");
    for (len, in_header) in [(100, true), (bytes.len() / 2, false)] {
        fs::write(&src, &bytes[..len]).unwrap();
        let err = quantize_file(&src, &dst, Target::Q8_0, &mut |_| {}).unwrap_err();
        match &err {
            QuantizeError::Gguf { path, source } => {
                assert_eq!(path, &src);
                if in_header {
                    assert!(
                        matches!(source, gguf::GgufError::Truncated { .. }),
                        "{source:?}"
                    );
                } else {
                    assert!(
                        matches!(source, gguf::GgufError::TensorOutOfBounds { .. }),
                        "{source:?}"
                    );
                }
            }
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().contains("truncated.gguf"), "{err}");
        assert_only(dir.path(), &["truncated.gguf"]);
    }
}

#[test]
fn split_models_and_models_without_layers_are_refused() {
    let mut spec = ModelSpec::llama(2);
    spec.metadata.push(("split.count".into(), Value::U16(3)));
    let err = plan(&spec.build(GgmlType::F32), Target::Q8_0).unwrap_err();
    assert!(
        matches!(err, QuantizeError::SplitModel { count: 3 }),
        "{err:?}"
    );

    let mut spec = ModelSpec::llama(2);
    spec.metadata.retain(|(k, _)| k != "llama.block_count");
    let err = plan(&spec.build(GgmlType::F32), Target::Q8_0).unwrap_err();
    assert!(
        matches!(&err, QuantizeError::MissingMetadata { key } if key == "llama.block_count"),
        "{err:?}"
    );
}

/// A destination in a directory that does not exist: an I/O error naming the path.
#[test]
fn unwritable_destinations_are_io_errors() {
    let dir = tempfile::tempdir().unwrap();
    let dst = dir.path().join("missing/out.gguf");
    let err = quantize_file(
        &synthetic("llama3-synthetic-f16.gguf"),
        &dst,
        Target::Q8_0,
        &mut |_| {},
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            QuantizeError::Io {
                action: "create",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("missing"), "{err}");
}

fn find<'a>(plans: &'a [TensorPlan], name: &str) -> &'a TensorPlan {
    plans
        .iter()
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("no tensor {name}"))
}

/// Asserts that `dir` holds exactly the files `names` (no temporary file left behind).
fn assert_only(dir: &Path, names: &[&str]) {
    let mut found: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    found.sort();
    assert_eq!(found, names);
}

/// A llama-shaped model built in the test: metadata plus tensor shapes, filled with Gaussian
/// weights (norms set to 1) in a chosen type.
struct ModelSpec {
    arch: &'static str,
    metadata: Vec<(String, Value)>,
    tensors: Vec<(String, Vec<u64>)>,
    alignment: Option<u64>,
}

impl ModelSpec {
    /// `n_layer` layers of width 256 with small (2-row) matrices: the rules only look at names,
    /// row lengths and counts.
    fn llama(n_layer: u32) -> ModelSpec {
        let mut tensors = vec![("token_embd.weight".to_string(), vec![256, 4])];
        for l in 0..n_layer {
            for (t, dims) in [
                ("attn_norm", vec![256]),
                ("attn_q", vec![256, 2]),
                ("attn_k", vec![256, 2]),
                ("attn_v", vec![256, 2]),
                ("attn_output", vec![256, 2]),
                ("ffn_norm", vec![256]),
                ("ffn_gate", vec![256, 2]),
                ("ffn_up", vec![256, 2]),
                ("ffn_down", vec![256, 2]),
            ] {
                tensors.push((format!("blk.{l}.{t}.weight"), dims));
            }
        }
        tensors.push(("output_norm.weight".into(), vec![256]));
        tensors.push(("output.weight".into(), vec![256, 4]));
        ModelSpec {
            arch: "llama",
            metadata: vec![
                ("llama.block_count".into(), Value::U32(n_layer)),
                ("llama.attention.head_count".into(), Value::U32(4)),
                ("llama.attention.head_count_kv".into(), Value::U32(2)),
            ],
            tensors,
            alignment: None,
        }
    }

    /// Two layers with rows of 96 elements (whole 32-blocks, not 256-blocks) and an ffn_up of
    /// 40 (not even 32-blocks), and enough rows for a meaningful error measurement.
    fn odd_rows() -> ModelSpec {
        let mut spec = ModelSpec::llama(2);
        for (name, dims) in &mut spec.tensors {
            *dims = match (name.as_str(), dims.len()) {
                (_, 1) => vec![96],
                (n, _) if n.ends_with("ffn_up.weight") => vec![40, 64],
                _ => vec![96, 64],
            };
        }
        spec
    }

    fn set(&mut self, key: &str, value: Value) {
        self.metadata.iter_mut().find(|(k, _)| k == key).unwrap().1 = value;
    }

    fn writer(&self, ty: GgmlType) -> GgufWriter {
        let mut w = GgufWriter::new();
        if let Some(a) = self.alignment {
            w = w.with_alignment(a);
        }
        w.add_metadata("general.architecture", Value::from(self.arch));
        w.add_metadata("general.file_type", Value::U32(1));
        for (k, v) in &self.metadata {
            let key = match k.strip_prefix("llama.") {
                Some(rest) => format!("{}.{rest}", self.arch),
                None => k.clone(),
            };
            w.add_metadata(&key, v.clone());
        }
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for (name, dims) in &self.tensors {
            let n: u64 = dims.iter().product();
            let (ty, vals): (GgmlType, Vec<f32>) = if dims.len() == 1 {
                (GgmlType::F32, vec![1.0; n as usize])
            } else {
                (ty, (0..n).map(|_| rng.gaussian() * 0.02).collect())
            };
            let mut bytes = vec![0u8; ty.bytes_for(n).unwrap() as usize];
            quantize_row(ty, &vals, &mut bytes).unwrap();
            w.add_tensor(name, dims, ty, bytes).unwrap();
        }
        w
    }

    fn build(&self, ty: GgmlType) -> Gguf {
        Gguf::from_bytes(self.writer(ty).to_bytes()).unwrap()
    }

    fn write(&self, path: &Path, ty: GgmlType) {
        fs::write(path, self.writer(ty).to_bytes()).unwrap();
    }
}

/// xorshift64* with Box-Muller: reproducible Gaussian weights without a dependency.
struct Rng(u64);

impl Rng {
    fn uniform(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        ((x >> 40) as f32 + 0.5) / (1u64 << 24) as f32
    }

    fn gaussian(&mut self) -> f32 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
    }
}
