//! Round trips of the synthetic decoder GGUFs (testdata/reference/synthetic) through Hugging
//! Face form: each file is written out as a model directory (config.json, model.safetensors
//! with transformers' names and Llama's Q/K rows back in rotate-half order, tokenizer.json,
//! tokenizer_config.json), converted back, and compared with the original: every tensor bit for
//! bit, the metadata, the engine's logits and the tokenizer's ids.

mod common;

use common::write_safetensors;
use std::path::{Path, PathBuf};

use convert::{convert_dir, ConvertError, FileType, Options};
use engine::Model;
use gguf::{GgmlType, Gguf, GgufWriter, Value};
use serde_json::{json, Value as Json};
use tokenizer::Tokenizer;

fn synthetic(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/reference/synthetic")
        .join(name)
}

/// Llama 3's split regex as its tokenizer.json spells it.
const LLAMA3_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen 2's.
const QWEN2_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// How one round trip writes its model directory.
struct Form {
    /// config.json's `architectures`.
    class: &'static str,
    /// Merges as `["a", "b"]` pairs rather than `"a b"` strings.
    pair_merges: bool,
    /// Special tokens by id in config.json rather than by text in tokenizer_config.json.
    ids_in_config: bool,
}

/// transformers' name of GGUF tensor `name`.
fn hf_name(name: &str) -> String {
    let globals = [
        ("token_embd.weight", "model.embed_tokens.weight"),
        ("output_norm.weight", "model.norm.weight"),
        ("output.weight", "lm_head.weight"),
    ];
    if let Some((_, hf)) = globals.iter().find(|(g, _)| *g == name) {
        return (*hf).to_owned();
    }
    let rest = name.strip_prefix("blk.").unwrap();
    let (layer, tail) = rest.split_once('.').unwrap();
    let (base, kind) = tail.rsplit_once('.').unwrap();
    let hf = match base {
        "attn_norm" => "input_layernorm",
        "attn_q" => "self_attn.q_proj",
        "attn_k" => "self_attn.k_proj",
        "attn_v" => "self_attn.v_proj",
        "attn_q_norm" => "self_attn.q_norm",
        "attn_k_norm" => "self_attn.k_norm",
        "attn_output" => "self_attn.o_proj",
        "ffn_norm" => "post_attention_layernorm",
        "ffn_gate" => "mlp.gate_proj",
        "ffn_up" => "mlp.up_proj",
        "ffn_down" => "mlp.down_proj",
        other => panic!("no Hugging Face name for {other}"),
    };
    format!("model.layers.{layer}.{hf}.{kind}")
}

/// A Llama Q or K matrix back in Hugging Face's rotate-half row order: row `i + j * d/2` of
/// each head (`j` 0 or 1) is the head's GGUF row `2i + j`.
fn rotate_half_rows(data: &[u8], heads: usize, row_bytes: usize) -> Vec<u8> {
    let rows = data.len() / row_bytes;
    let d = rows / heads;
    let half = d / 2;
    (0..rows)
        .flat_map(|r| {
            let (head, j) = (r / d, r % d);
            let src = head * d + 2 * (j % half) + j / half;
            &data[src * row_bytes..(src + 1) * row_bytes]
        })
        .copied()
        .collect()
}

/// The Hugging Face directory of GGUF file `g`.
fn hf_dir(g: &Gguf, form: &Form) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let arch = g.architecture().unwrap();
    let u = |k: &str| g.get_u64(&format!("{arch}.{k}")).unwrap();
    let f = |k: &str| f64::from(g.get_f32(&format!("{arch}.{k}")).unwrap());
    let tokens: Vec<&str> = g
        .get_array("tokenizer.ggml.tokens")
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    let types: Vec<i64> = g
        .get_array("tokenizer.ggml.token_type")
        .unwrap()
        .iter()
        .map(|t| t.as_i64().unwrap())
        .collect();
    let id = |k: &str| g.get_u64(&format!("tokenizer.ggml.{k}_token_id")).unwrap();

    let mut config = json!({
        "architectures": [form.class],
        "hidden_size": u("embedding_length"),
        "intermediate_size": u("feed_forward_length"),
        "num_hidden_layers": u("block_count"),
        "num_attention_heads": u("attention.head_count"),
        "num_key_value_heads": u("attention.head_count_kv"),
        "rms_norm_eps": f("attention.layer_norm_rms_epsilon"),
        "rope_theta": f("rope.freq_base"),
        "max_position_embeddings": u("context_length"),
        "vocab_size": tokens.len(),
        "tie_word_embeddings": g.tensor("output.weight").is_none(),
        "torch_dtype": "float32",
    });
    if let Some(d) = g.get_u64(&format!("{arch}.attention.key_length")) {
        config["head_dim"] = json!(d);
    }
    if form.ids_in_config {
        config["bos_token_id"] = json!(id("bos"));
        config["eos_token_id"] = json!([id("eos")]);
    }
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();

    let mut tensors = Vec::new();
    for t in g.tensors() {
        let mut data = g.tensor_data(t).to_vec();
        let dtype = match t.ty {
            GgmlType::F32 => "F32",
            GgmlType::F16 => "F16",
            other => panic!("{}: {other} has no safetensors dtype", t.name),
        };
        let heads = match t.name.rsplit_once('.').unwrap().0.rsplit('.').next() {
            Some("attn_q") if arch == "llama" => u("attention.head_count"),
            Some("attn_k") if arch == "llama" => u("attention.head_count_kv"),
            _ => 0,
        };
        if heads > 0 && t.name.ends_with(".weight") {
            let row_bytes = data.len() / t.dims[1] as usize;
            data = rotate_half_rows(&data, heads as usize, row_bytes);
        }
        let shape = t.dims.iter().rev().copied().collect();
        tensors.push((hf_name(&t.name), dtype, shape, data));
    }
    write_safetensors(&dir.path().join("model.safetensors"), &tensors);

    let pre = g.get_str("tokenizer.ggml.pre").unwrap();
    let regex = match pre {
        "llama-bpe" => LLAMA3_REGEX,
        "qwen2" => QWEN2_REGEX,
        other => panic!("no tokenizer.json pre-tokenizer for {other}"),
    };
    let mut vocab = serde_json::Map::new();
    let mut added = Vec::new();
    for (i, (token, ty)) in tokens.iter().zip(&types).enumerate() {
        match ty {
            1 => {
                vocab.insert((*token).to_owned(), json!(i));
            }
            3 => {
                // Llama 3 keeps added tokens out of model.vocab; Qwen has them in both.
                if pre == "qwen2" {
                    vocab.insert((*token).to_owned(), json!(i));
                }
                added.push(json!({"id": i, "content": token, "single_word": false,
                    "lstrip": false, "rstrip": false, "normalized": false, "special": true}));
            }
            other => panic!("token type {other}"),
        }
    }
    let merges: Vec<Json> = g
        .get_array("tokenizer.ggml.merges")
        .unwrap()
        .iter()
        .map(|m| {
            let m = m.as_str().unwrap();
            match form.pair_merges {
                true => json!(m.split_once(' ').map(|(a, b)| [a, b]).unwrap()),
                false => json!(m),
            }
        })
        .collect();
    let tokenizer = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": if pre == "qwen2" { json!({"type": "NFC"}) } else { Json::Null },
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": false},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}
        ]},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false,
            "use_regex": false},
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true,
            "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null,
            "continuing_subword_prefix": null, "end_of_word_suffix": null, "fuse_unk": false,
            "byte_fallback": false, "ignore_merges": pre == "llama-bpe", "vocab": vocab,
            "merges": merges},
    });
    std::fs::write(dir.path().join("tokenizer.json"), tokenizer.to_string()).unwrap();

    let mut tokenizer_config = json!({
        "add_bos_token": g.get("tokenizer.ggml.add_bos_token").unwrap().as_bool().unwrap(),
        "chat_template": g.get_str("tokenizer.chat_template").unwrap(),
        "model_max_length": u("context_length"),
    });
    if !form.ids_in_config {
        tokenizer_config["bos_token"] = json!(tokens[id("bos") as usize]);
        tokenizer_config["eos_token"] =
            json!({"content": tokens[id("eos") as usize], "special": true});
    }
    std::fs::write(
        dir.path().join("tokenizer_config.json"),
        tokenizer_config.to_string(),
    )
    .unwrap();
    dir
}

/// Converts `src` into `out/model.gguf` with the original's name.
fn convert(src: &Path, out: &Path, ftype: FileType, original: &Gguf) -> PathBuf {
    let dest = out.join("model.gguf");
    let options = Options {
        ftype,
        name: original.get_str("general.name").map(str::to_owned),
    };
    convert_dir(src, &dest, &options).unwrap();
    dest
}

/// `original` written as a Hugging Face directory of `form`, converted back to `ftype` and
/// checked against it: the directory, the output folder and the converted file.
fn round_trip(
    original: &Path,
    form: &Form,
    ftype: FileType,
) -> (tempfile::TempDir, tempfile::TempDir, PathBuf) {
    let g = Gguf::open(original).unwrap();
    let dir = hf_dir(&g, form);
    let out = tempfile::tempdir().unwrap();
    let converted = convert(dir.path(), out.path(), ftype, &g);
    assert_same_model(original, &converted);
    (dir, out, converted)
}

/// Checks the converted file against the original ([`common::assert_same_model`]), and that
/// the tokenizers agree on their pre-tokenizer and special tokens.
fn assert_same_model(original: &Path, converted: &Path) {
    let texts = [
        "The capital of France is",
        "<|im_start|>user\nTranslate 123456 to French<|im_end|>\n<|im_start|>assistant\n",
        "def fibonacci(n):\n    if n < 2:\n        return n\n\n",
        "Ünïcödé  text\twith   spaces 3.14159 and émoji 🦀",
    ];
    common::assert_same_model(original, converted, &texts, 128);
    let (a, b) = (
        Gguf::open(original).unwrap(),
        Gguf::open(converted).unwrap(),
    );
    let (ta, tb) = (
        Tokenizer::from_gguf(&a).unwrap(),
        Tokenizer::from_gguf(&b).unwrap(),
    );
    assert_eq!(ta.pre_tokenizer(), tb.pre_tokenizer());
    assert_eq!((ta.bos(), ta.eos()), (tb.bos(), tb.eos()));
    assert_eq!(ta.add_bos(), tb.add_bos());
}

#[test]
fn llama_round_trips_with_its_rope_rows_reordered() {
    let original = synthetic("llama3-synthetic.gguf");
    let g = Gguf::open(&original).unwrap();
    let form = Form {
        class: "LlamaForCausalLM",
        pair_merges: false,
        ids_in_config: false,
    };
    let (dir, _out, _) = round_trip(&original, &form, FileType::F32);

    // The checkpoint's Q and K rows are in another order than the GGUF's; V's are not.
    let st = std::fs::read(dir.path().join("model.safetensors")).unwrap();
    let header_len = u64::from_le_bytes(st[..8].try_into().unwrap()) as usize;
    let header: Json = serde_json::from_slice(&st[8..8 + header_len]).unwrap();
    let checkpoint_data = |name: &str| {
        let range = &header[name]["data_offsets"];
        let start = 8 + header_len + range[0].as_u64().unwrap() as usize;
        &st[start..8 + header_len + range[1].as_u64().unwrap() as usize]
    };
    for (gguf, hf, reordered) in [
        (
            "blk.1.attn_q.weight",
            "model.layers.1.self_attn.q_proj.weight",
            true,
        ),
        (
            "blk.1.attn_k.weight",
            "model.layers.1.self_attn.k_proj.weight",
            true,
        ),
        (
            "blk.1.attn_v.weight",
            "model.layers.1.self_attn.v_proj.weight",
            false,
        ),
    ] {
        let original = g.tensor_data(g.tensor(gguf).unwrap());
        assert_eq!(checkpoint_data(hf) != original, reordered, "{gguf}");
    }
}

#[test]
fn llama_f16_round_trips_as_f16() {
    let original = synthetic("llama3-synthetic-f16.gguf");
    let form = Form {
        class: "MistralForCausalLM",
        pair_merges: true,
        ids_in_config: true,
    };
    round_trip(&original, &form, FileType::F16);
}

#[test]
fn qwen3_round_trips_with_tied_embeddings() {
    let original = synthetic("qwen3-synthetic.gguf");
    let g = Gguf::open(&original).unwrap();
    assert!(g.tensor("output.weight").is_none());
    let form = Form {
        class: "Qwen3ForCausalLM",
        pair_merges: true,
        ids_in_config: false,
    };
    let (dir, out, _) = round_trip(&original, &form, FileType::F32);

    // Without tie_word_embeddings the missing lm_head is an error.
    let config_path = dir.path().join("config.json");
    let mut config: Json = serde_json::from_slice(&std::fs::read(&config_path).unwrap()).unwrap();
    config
        .as_object_mut()
        .unwrap()
        .remove("tie_word_embeddings");
    std::fs::write(&config_path, config.to_string()).unwrap();
    let e = convert_dir(dir.path(), &out.path().join("x.gguf"), &Options::default()).unwrap_err();
    assert!(
        matches!(&e, ConvertError::UntiedOutputMissing { tensor, .. } if tensor == "lm_head.weight"),
        "{e}"
    );
    assert!(e.to_string().contains("tie_word_embeddings"), "{e}");
}

/// A qwen2 file made from the synthetic Llama 3 one (there is no qwen2 synthetic): qwen2's
/// keys, the Qwen 2 pre-tokenizer, and Q/K/V biases.
fn qwen2_synthetic(dest: &Path) {
    let g = Gguf::open(synthetic("llama3-synthetic.gguf")).unwrap();
    let mut w = GgufWriter::new();
    for (key, value) in g.metadata() {
        let value = match key.as_str() {
            "general.architecture" => Value::from("qwen2"),
            "tokenizer.ggml.pre" => Value::from("qwen2"),
            "llama.rope.dimension_count" | "llama.vocab_size" => continue,
            _ => value.clone(),
        };
        w.add_metadata(&key.replace("llama.", "qwen2."), value);
    }
    for t in g.tensors() {
        w.add_tensor(&t.name, &t.dims, t.ty, g.tensor_data(t).to_vec())
            .unwrap();
        if let Some(base) = ["attn_q", "attn_k", "attn_v"]
            .iter()
            .find(|b| t.name.ends_with(&format!("{b}.weight")))
        {
            let name = t
                .name
                .replace(&format!("{base}.weight"), &format!("{base}.bias"));
            let rows = t.dims[1] as usize;
            let bias: Vec<u8> = (0..rows)
                .flat_map(|i| (((i * 37) % 23) as f32 / 23.0 - 0.5).to_le_bytes())
                .collect();
            w.add_tensor(&name, &[rows as u64], GgmlType::F32, bias)
                .unwrap();
        }
    }
    std::fs::write(dest, w.to_bytes()).unwrap();
}

#[test]
fn qwen2_round_trips_with_biases_and_no_reordering() {
    let work = tempfile::tempdir().unwrap();
    let original = work.path().join("qwen2-synthetic.gguf");
    qwen2_synthetic(&original);
    let form = Form {
        class: "Qwen2ForCausalLM",
        pair_merges: false,
        ids_in_config: true,
    };
    let (_dir, _out, converted) = round_trip(&original, &form, FileType::F32);
    let b = Gguf::open(&converted).unwrap();
    assert_eq!(b.get_str("tokenizer.ggml.pre"), Some("qwen2"));
    assert!(b.tensor("blk.1.attn_v.bias").is_some());
}

#[test]
fn q8_0_conversion_runs_in_the_engine() {
    let g = Gguf::open(synthetic("llama3-synthetic.gguf")).unwrap();
    let form = Form {
        class: "LlamaForCausalLM",
        pair_merges: false,
        ids_in_config: false,
    };
    let dir = hf_dir(&g, &form);
    let out = tempfile::tempdir().unwrap();
    let converted = convert(dir.path(), out.path(), FileType::Q8_0, &g);
    let b = Gguf::open(&converted).unwrap();
    assert_eq!(b.tensor("blk.0.attn_q.weight").unwrap().ty, GgmlType::Q8_0);
    assert_eq!(
        b.tensor("blk.0.attn_norm.weight").unwrap().ty,
        GgmlType::F32
    );
    let model = Model::load(&converted, 1).unwrap();
    let reference = Model::load(&synthetic("llama3-synthetic-q8_0.gguf"), 1).unwrap();
    let ids = model
        .tokenizer
        .encode("The capital of France is", true, true);
    assert_eq!(ids, [281, 303, 283, 305, 306]);
    let la = model
        .forward(&mut model.new_cache(32), &ids, 0, false)
        .unwrap();
    let lb = reference
        .forward(&mut reference.new_cache(32), &ids, 0, false)
        .unwrap();
    let argmax = |l: &[f32]| engine::argmax(l);
    assert_eq!(argmax(&la), argmax(&lb));
}

#[test]
fn unsupported_tokenizers_are_named() {
    let g = Gguf::open(synthetic("llama3-synthetic.gguf")).unwrap();
    let form = Form {
        class: "LlamaForCausalLM",
        pair_merges: false,
        ids_in_config: false,
    };
    let dir = hf_dir(&g, &form);
    let path = dir.path().join("tokenizer.json");
    let original = std::fs::read_to_string(&path).unwrap();
    let out = tempfile::tempdir().unwrap();
    for (from, to, want) in [
        (r"\\p{N}{1,3}", r"\\p{N}{1,2}", "none of those supported"),
        (
            r#""add_prefix_space":false,"trim_offsets":true,"use_regex":false"#,
            r#""add_prefix_space":true,"trim_offsets":true,"use_regex":false"#,
            "prefix space",
        ),
        (
            r#""byte_fallback":false"#,
            r#""byte_fallback":true"#,
            "byte fallback",
        ),
        (r#""type":"BPE""#, r#""type":"Unigram""#, "Unigram"),
    ] {
        assert!(original.contains(from), "{from}");
        std::fs::write(&path, original.replacen(from, to, 1)).unwrap();
        let e = convert_dir(dir.path(), &out.path().join("x.gguf"), &Options::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(want) && e.contains("tokenizer.json"),
            "{want}: {e}"
        );
    }
}
