//! End-to-end conversions of a tiny synthetic BERT directory, and of all-MiniLM-L6-v2 when it
//! has been fetched.

use std::path::{Path, PathBuf};

use gguf::{GgmlType, Gguf, Value};

use super::*;

const HIDDEN: u64 = 32;
const FFN: u64 = 64;
const LAYERS: u64 = 2;
const VOCAB: u64 = 8;
const CONTEXT: u64 = 16;

/// One checkpoint tensor: name, dtype, shape, bytes.
type Raw = (String, &'static str, Vec<u64>, Vec<u8>);

fn config_json(architecture: &str) -> String {
    format!(
        r#"{{"architectures": ["{architecture}"], "model_type": "bert", "hidden_size": {HIDDEN},
            "intermediate_size": {FFN}, "num_hidden_layers": {LAYERS}, "num_attention_heads": 2,
            "max_position_embeddings": {CONTEXT}, "type_vocab_size": 2, "vocab_size": {VOCAB},
            "layer_norm_eps": 1e-12}}"#
    )
}

const TOKENIZER: &str = r###"{
    "added_tokens": [
        {"id": 0, "content": "[PAD]", "special": true},
        {"id": 1, "content": "[UNK]", "special": true},
        {"id": 2, "content": "[CLS]", "special": true},
        {"id": 3, "content": "[SEP]", "special": true},
        {"id": 4, "content": "[MASK]", "special": true}
    ],
    "model": {"type": "WordPiece", "unk_token": "[UNK]", "vocab": {
        "[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "[MASK]": 4, "hello": 5, "##s": 6, "world": 7
    }}
}"###;

/// Deterministic values, most of them not exact in F16.
fn values(seed: usize, n: usize) -> Vec<f32> {
    (0..n)
        .map(|j| ((seed * 131 + j * 7) % 97) as f32 / 97.0 - 0.5 + j as f32 * 1e-4)
        .collect()
}

fn f32_tensor(name: &str, shape: &[u64], seed: usize) -> Raw {
    let n = shape.iter().product::<u64>() as usize;
    let bytes = values(seed, n)
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    (name.to_owned(), "F32", shape.to_vec(), bytes)
}

/// The checkpoint of the synthetic model, as transformers names it (with `bert.` prefixes on
/// some names, the old gamma/beta spelling, and the tensors conversion leaves out).
fn checkpoint() -> Vec<Raw> {
    let mut t = vec![
        f32_tensor("embeddings.word_embeddings.weight", &[VOCAB, HIDDEN], 1),
        f32_tensor(
            "embeddings.position_embeddings.weight",
            &[CONTEXT, HIDDEN],
            2,
        ),
        f32_tensor(
            "bert.embeddings.token_type_embeddings.weight",
            &[2, HIDDEN],
            3,
        ),
        f32_tensor("embeddings.LayerNorm.gamma", &[HIDDEN], 4),
        f32_tensor("embeddings.LayerNorm.beta", &[HIDDEN], 5),
        (
            "embeddings.position_ids".into(),
            "I64",
            vec![1, CONTEXT],
            vec![0; 8 * CONTEXT as usize],
        ),
        f32_tensor("pooler.dense.weight", &[HIDDEN, HIDDEN], 6),
        f32_tensor("pooler.dense.bias", &[HIDDEN], 7),
    ];
    for l in 0..LAYERS {
        let p = format!("encoder.layer.{l}.");
        let seed = 10 + l as usize * 20;
        for (i, (name, shape)) in [
            ("attention.self.query.weight", vec![HIDDEN, HIDDEN]),
            ("attention.self.query.bias", vec![HIDDEN]),
            ("attention.self.key.weight", vec![HIDDEN, HIDDEN]),
            ("attention.self.key.bias", vec![HIDDEN]),
            ("attention.self.value.weight", vec![HIDDEN, HIDDEN]),
            ("attention.self.value.bias", vec![HIDDEN]),
            ("attention.output.dense.weight", vec![HIDDEN, HIDDEN]),
            ("attention.output.dense.bias", vec![HIDDEN]),
            ("attention.output.LayerNorm.weight", vec![HIDDEN]),
            ("attention.output.LayerNorm.bias", vec![HIDDEN]),
            ("intermediate.dense.weight", vec![FFN, HIDDEN]),
            ("intermediate.dense.bias", vec![FFN]),
            ("output.dense.weight", vec![HIDDEN, FFN]),
            ("output.dense.bias", vec![HIDDEN]),
            ("output.LayerNorm.weight", vec![HIDDEN]),
            ("output.LayerNorm.bias", vec![HIDDEN]),
        ]
        .into_iter()
        .enumerate()
        {
            t.push(f32_tensor(&format!("{p}{name}"), &shape, seed + i));
        }
    }
    t
}

/// Writes a model directory with `tensors`, and returns it.
fn model_dir(tensors: &[Raw], architecture: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), config_json(architecture)).unwrap();
    std::fs::write(dir.path().join("tokenizer.json"), TOKENIZER).unwrap();
    std::fs::create_dir(dir.path().join("1_Pooling")).unwrap();
    std::fs::write(
        dir.path().join("1_Pooling/config.json"),
        r#"{"pooling_mode_cls_token": true, "pooling_mode_mean_tokens": false}"#,
    )
    .unwrap();
    let refs: Vec<(&str, &str, &[u64], Vec<u8>)> = tensors
        .iter()
        .map(|(n, d, s, b)| (n.as_str(), *d, s.as_slice(), b.clone()))
        .collect();
    safetensors::write(&dir.path().join("model.safetensors"), &refs);
    dir
}

fn convert(src: &Path, ftype: FileType) -> (tempfile::TempDir, PathBuf, Summary) {
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("model.gguf");
    let options = Options {
        ftype,
        name: Some("tiny".into()),
    };
    let summary = convert_dir(src, &dest, &options).unwrap();
    (out, dest, summary)
}

/// The GGUF name a checkpoint name becomes (for the names [`checkpoint`] uses).
fn gguf_name(hf: &str) -> Option<String> {
    match arch::ARCHES[0].map(hf, LAYERS).unwrap() {
        Mapped::Skip => None,
        Mapped::Tensor { gguf, .. } => Some(gguf),
    }
}

#[test]
fn f32_is_bit_exact_with_llama_cpp_names_and_metadata() {
    let src = checkpoint();
    let dir = model_dir(&src, "BertModel");
    let (_out, dest, summary) = convert(dir.path(), FileType::F32);
    let expected_tensors = (LAYERS * 16 + 5) as usize;
    assert_eq!(summary.architecture, "bert");
    assert_eq!(summary.tensors, expected_tensors);
    assert_eq!(summary.bytes, std::fs::metadata(&dest).unwrap().len());

    let g = Gguf::open(&dest).unwrap();
    assert_eq!(g.tensors().len(), expected_tensors);
    assert_eq!(g.tensors()[0].name, "token_embd.weight");
    assert_eq!(g.tensors()[5].name, "blk.0.attn_q.weight");
    for (name, _, shape, bytes) in &src {
        let Some(gguf) = gguf_name(name) else {
            continue;
        };
        let t = g.tensor(&gguf).unwrap_or_else(|| panic!("{gguf} missing"));
        let reversed: Vec<u64> = shape.iter().rev().copied().collect();
        assert_eq!(t.dims, reversed, "{gguf}");
        assert_eq!(t.ty, GgmlType::F32, "{gguf}");
        assert_eq!(g.tensor_data(t), bytes.as_slice(), "{gguf}");
    }
    assert_eq!(g.tensor("blk.1.ffn_up.weight").unwrap().dims, [HIDDEN, FFN]);

    assert_eq!(g.architecture(), Some("bert"));
    let u = |key: &str| g.get_u64(key).unwrap_or_else(|| panic!("{key} missing"));
    assert_eq!(g.get_str("general.name"), Some("tiny"));
    assert_eq!(u("bert.context_length"), CONTEXT);
    assert_eq!(u("bert.embedding_length"), HIDDEN);
    assert_eq!(u("bert.feed_forward_length"), FFN);
    assert_eq!(u("bert.block_count"), LAYERS);
    assert_eq!(u("bert.attention.head_count"), 2);
    assert_eq!(
        g.get("bert.attention.layer_norm_epsilon"),
        Some(&Value::F32(1e-12))
    );
    assert_eq!(g.get("bert.attention.causal"), Some(&Value::Bool(false)));
    assert_eq!(g.get("bert.pooling_type"), Some(&Value::U32(2)));
    assert_eq!(g.get("general.file_type"), Some(&Value::U32(0)));
    assert_eq!(g.get_str("tokenizer.ggml.model"), Some("bert"));
    let tokens: Vec<_> = g
        .get_array("tokenizer.ggml.tokens")
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        tokens,
        [
            "[PAD]",
            "[UNK]",
            "[CLS]",
            "[SEP]",
            "[MASK]",
            "\u{2581}hello",
            "s",
            "\u{2581}world"
        ]
    );
    let types: Vec<_> = g.get_array("tokenizer.ggml.token_type").unwrap().to_vec();
    assert_eq!(types[..5], [const { Value::I32(3) }; 5]);
    assert_eq!(types[5..], [const { Value::I32(1) }; 3]);
    for (key, id) in [
        ("cls_token_id", 2),
        ("bos_token_id", 2),
        ("seperator_token_id", 3),
        ("padding_token_id", 0),
        ("unknown_token_id", 1),
        ("mask_token_id", 4),
        ("token_type_count", 2),
    ] {
        assert_eq!(
            g.get(&format!("tokenizer.ggml.{key}")),
            Some(&Value::U32(id)),
            "{key}"
        );
    }
    // Nothing left beside the output.
    let names: Vec<_> = std::fs::read_dir(dest.parent().unwrap()).unwrap().collect();
    assert_eq!(names.len(), 1);
}

#[test]
fn f16_rounds_weight_matrices_and_keeps_the_rest_f32() {
    let src = checkpoint();
    let dir = model_dir(&src, "BertModel");
    let (_out, dest, _) = convert(dir.path(), FileType::F16);
    let g = Gguf::open(&dest).unwrap();
    assert_eq!(g.get("general.file_type"), Some(&Value::U32(1)));
    let mut f16_count = 0;
    for (name, _, _, bytes) in &src {
        let Some(gguf) = gguf_name(name) else {
            continue;
        };
        let t = g.tensor(&gguf).unwrap();
        let source: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        let f16 = t.dims.len() == 2
            && !["position_embd.weight", "token_types.weight"].contains(&gguf.as_str());
        if f16 {
            f16_count += 1;
            assert_eq!(t.ty, GgmlType::F16, "{gguf}");
            let want: Vec<u8> = source
                .iter()
                .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
                .collect();
            assert_eq!(g.tensor_data(t), want.as_slice(), "{gguf}");
        } else {
            assert_eq!(t.ty, GgmlType::F32, "{gguf}");
            assert_eq!(g.tensor_data(t), bytes.as_slice(), "{gguf}");
        }
    }
    // token_embd and six matrices per layer.
    assert_eq!(f16_count, 1 + 6 * LAYERS as usize);
}

#[test]
fn q8_0_quantizes_weight_matrices() {
    let dir = model_dir(&checkpoint(), "BertModel");
    let (_out, dest, summary) = convert(dir.path(), FileType::Q8_0);
    let g = Gguf::open(&dest).unwrap();
    assert_eq!(summary.tensors, (LAYERS * 16 + 5) as usize);
    assert_eq!(g.get("general.file_type"), Some(&Value::U32(7)));
    for t in g.tensors() {
        let matrix = t.dims.len() == 2
            && !["position_embd.weight", "token_types.weight"].contains(&t.name.as_str());
        let want = if matrix {
            GgmlType::Q8_0
        } else {
            GgmlType::F32
        };
        assert_eq!(t.ty, want, "{}", t.name);
    }
    assert_eq!(
        std::fs::read_dir(dest.parent().unwrap()).unwrap().count(),
        1
    );
}

#[test]
fn bf16_and_f16_checkpoints_are_read() {
    let mut src = checkpoint();
    let to_half = |raw: &mut Raw, bf16: bool| {
        let floats: Vec<f32> = raw
            .3
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        raw.1 = if bf16 { "BF16" } else { "F16" };
        raw.3 = floats
            .iter()
            .flat_map(|&v| match bf16 {
                true => half::bf16::from_f32(v).to_le_bytes(),
                false => half::f16::from_f32(v).to_le_bytes(),
            })
            .collect();
    };
    to_half(&mut src[0], true);
    to_half(&mut src[3], false);
    let dir = model_dir(&src, "BertModel");
    let (_out, dest, _) = convert(dir.path(), FileType::F32);
    let g = Gguf::open(&dest).unwrap();
    let first = |name: &str| {
        let t = g.tensor(name).unwrap();
        f32::from_le_bytes(g.tensor_data(t)[..4].try_into().unwrap())
    };
    assert_eq!(
        first("token_embd.weight"),
        half::bf16::from_f32(values(1, 1)[0]).to_f32()
    );
    assert_eq!(
        first("token_embd_norm.weight"),
        half::f16::from_f32(values(4, 1)[0]).to_f32()
    );
}

/// Converts `dir` and returns the error, checking nothing was left in the output directory.
fn failure(dir: &Path) -> ConvertError {
    let out = tempfile::tempdir().unwrap();
    let e = convert_dir(dir, &out.path().join("m.gguf"), &Options::default()).unwrap_err();
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0, "{e}");
    e
}

#[test]
fn missing_files_are_named() {
    for file in ["config.json", "tokenizer.json", "model.safetensors"] {
        let dir = model_dir(&checkpoint(), "BertModel");
        std::fs::remove_file(dir.path().join(file)).unwrap();
        let e = failure(dir.path());
        assert!(
            matches!(&e, ConvertError::MissingFile { path } if path.ends_with(file)),
            "{file}: {e}"
        );
        assert!(e.to_string().contains(file), "{e}");
    }
}

#[test]
fn unsupported_architectures_list_the_supported_ones() {
    let dir = model_dir(&checkpoint(), "GPT2LMHeadModel");
    let e = failure(dir.path()).to_string();
    for name in [
        "GPT2LMHeadModel",
        "BertModel (bert)",
        "LlamaForCausalLM (llama)",
        "MistralForCausalLM (llama)",
        "Qwen2ForCausalLM (qwen2)",
        "Qwen3ForCausalLM (qwen3)",
    ] {
        assert!(e.contains(name), "{name}: {e}");
    }
}

#[test]
fn unknown_wrong_and_missing_tensors_are_named() {
    let mut src = checkpoint();
    src.push(f32_tensor("cls.predictions.bias", &[VOCAB], 99));
    let e = failure(model_dir(&src, "BertModel").path());
    assert!(
        matches!(&e, ConvertError::UnknownTensor { tensor, .. } if tensor == "cls.predictions.bias"),
        "{e}"
    );

    let mut src = checkpoint();
    let at = src
        .iter()
        .position(|t| t.0 == "encoder.layer.1.intermediate.dense.weight")
        .unwrap();
    src[at] = f32_tensor(
        "encoder.layer.1.intermediate.dense.weight",
        &[HIDDEN, FFN],
        1,
    );
    let e = failure(model_dir(&src, "BertModel").path());
    match &e {
        ConvertError::WrongShape {
            tensor,
            expected,
            got,
        } => {
            assert_eq!(tensor, "encoder.layer.1.intermediate.dense.weight");
            assert_eq!(
                (expected.as_slice(), got.as_slice()),
                (&[FFN, HIDDEN][..], &[HIDDEN, FFN][..])
            );
        }
        other => panic!("{other}"),
    }

    let mut src = checkpoint();
    src.retain(|t| t.0 != "encoder.layer.1.output.LayerNorm.bias");
    let e = failure(model_dir(&src, "BertModel").path());
    assert!(
        matches!(&e, ConvertError::MissingTensor { tensor, gguf }
            if tensor == "encoder.layer.1.output.LayerNorm.bias" && gguf == "blk.1.layer_output_norm.bias"),
        "{e}"
    );

    let mut src = checkpoint();
    src.push(f32_tensor(
        "bert.embeddings.word_embeddings.weight",
        &[VOCAB, HIDDEN],
        1,
    ));
    let e = failure(model_dir(&src, "BertModel").path());
    assert!(matches!(e, ConvertError::DuplicateTensor { .. }), "{e}");

    let mut src = checkpoint();
    src[0].1 = "I32";
    let e = failure(model_dir(&src, "BertModel").path());
    assert!(matches!(e, ConvertError::UnsupportedDtype { .. }), "{e}");
}

#[test]
fn file_types_parse_in_any_case() {
    for t in FileType::ALL {
        assert_eq!(t.name().to_uppercase().parse::<FileType>().unwrap(), t);
    }
    let e = "q4_0".parse::<FileType>().unwrap_err().to_string();
    assert!(e.contains("q4_0") && e.contains("f32, f16 or q8_0"), "{e}");
    assert_eq!(Options::default().ftype, FileType::F32);
}

/// all-MiniLM-L6-v2 in Hugging Face form, if `scripts/fetch-test-models.sh minilm` has run.
fn minilm() -> Option<PathBuf> {
    let root = std::env::var_os("HEARTH_TEST_MODELS")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/hearth/test-models"))
        })?;
    let dir = root.join("all-minilm-l6-v2");
    if dir.join("model.safetensors").exists() {
        Some(dir)
    } else {
        eprintln!(
            "skipped: {} is missing (scripts/fetch-test-models.sh minilm)",
            dir.display()
        );
        None
    }
}

#[test]
fn all_minilm_l6_v2() {
    let Some(dir) = minilm() else { return };
    let out = tempfile::tempdir().unwrap();
    for ftype in [FileType::F32, FileType::Q8_0] {
        let dest = out.path().join(format!("minilm-{ftype}.gguf"));
        let summary = convert_dir(&dir, &dest, &Options { ftype, name: None }).unwrap();
        assert_eq!(summary.architecture, "bert");
        assert_eq!(summary.tensors, 6 * 16 + 5);
        let g = Gguf::open(&dest).unwrap();
        assert_eq!(g.get_str("general.name"), Some("all-minilm-l6-v2"));
        assert_eq!(g.get_u64("bert.embedding_length"), Some(384));
        assert_eq!(g.get_u64("bert.context_length"), Some(512));
        assert_eq!(g.get("bert.pooling_type"), Some(&Value::U32(1)));
        assert_eq!(
            g.get_u64("general.file_type"),
            Some(u64::from(ftype.file_type()))
        );
        assert_eq!(g.tensor("token_embd.weight").unwrap().dims, [384, 30522]);
        assert_eq!(g.tensor("blk.5.ffn_down.weight").unwrap().dims, [1536, 384]);
        let tokens = g.get_array("tokenizer.ggml.tokens").unwrap();
        assert_eq!(tokens.len(), 30522);
        assert_eq!(tokens[101].as_str(), Some("[CLS]"));
        assert_eq!(tokens[7592].as_str(), Some("\u{2581}hello"));
        for t in g.tensors() {
            let quantized = ftype == FileType::Q8_0
                && t.dims.len() == 2
                && !["position_embd.weight", "token_types.weight"].contains(&t.name.as_str());
            let want = if quantized {
                GgmlType::Q8_0
            } else {
                GgmlType::F32
            };
            assert_eq!(t.ty, want, "{}", t.name);
        }
        let count = |ty| g.tensors().iter().filter(|t| t.ty == ty).count();
        if ftype == FileType::Q8_0 {
            assert_eq!(
                (count(GgmlType::Q8_0), count(GgmlType::F32)),
                (1 + 6 * 6, 2 + 2 + 6 * 10)
            );
        }
    }
}
