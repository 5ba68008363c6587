//! What the round-trip tests share: safetensors writing and the check that a converted file is
//! the original model.

// Each test binary uses only some of it.
#![allow(dead_code)]

use engine::Model;
use gguf::Gguf;
use serde_json::json;
use std::path::Path;

/// Writes a safetensors file: the JSON header, then each tensor's bytes.
pub fn write_safetensors(path: &Path, tensors: &[(String, &str, Vec<u64>, Vec<u8>)]) {
    let mut header = serde_json::Map::new();
    let mut offset = 0;
    for (name, dtype, shape, data) in tensors {
        header.insert(
            name.clone(),
            json!({"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + data.len()]}),
        );
        offset += data.len();
    }
    let mut header = serde_json::to_vec(&header).unwrap();
    header.resize(header.len().next_multiple_of(8), b' ');
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend(header);
    for (.., data) in tensors {
        out.extend(data);
    }
    std::fs::write(path, out).unwrap();
}

/// Checks the converted file against the original: tensors bit for bit, metadata, and the same
/// token ids and logits for each of `texts` (through a cache of `n_ctx` positions).
pub fn assert_same_model(original: &Path, converted: &Path, texts: &[&str], n_ctx: usize) {
    let a = Gguf::open(original).unwrap();
    let b = Gguf::open(converted).unwrap();
    assert_eq!(a.tensors().len(), b.tensors().len());
    for t in a.tensors() {
        let u = b
            .tensor(&t.name)
            .unwrap_or_else(|| panic!("{} missing", t.name));
        assert_eq!((u.ty, &u.dims), (t.ty, &t.dims), "{}", t.name);
        assert!(a.tensor_data(t) == b.tensor_data(u), "{} differs", t.name);
    }
    for (key, value) in a.metadata() {
        assert_eq!(b.get(key), Some(value), "{key}");
    }
    for (key, _) in b.metadata() {
        let known = a.get(key).is_some() || key == "general.quantization_version";
        assert!(known, "{key} is not in the original");
    }
    let (ma, mb) = (
        Model::load(original, 1).unwrap(),
        Model::load(converted, 1).unwrap(),
    );
    for text in texts {
        let ids = ma.tokenizer.encode(text, true, true);
        assert_eq!(mb.tokenizer.encode(text, true, true), ids, "{text:?}");
        let la = ma
            .forward(&mut ma.new_cache(n_ctx), &ids, 0, false)
            .unwrap();
        let lb = mb
            .forward(&mut mb.new_cache(n_ctx), &ids, 0, false)
            .unwrap();
        assert_eq!(la.len(), ma.n_vocab());
        assert!(la == lb, "logits differ for {text:?}");
    }
}
