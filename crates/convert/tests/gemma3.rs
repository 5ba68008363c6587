//! Round trips of a small synthetic Gemma 3 GGUF (made here: llama.cpp's gemma3 keys as the
//! real gemma-3-270m file has them, a SentencePiece vocabulary with control, user-defined and
//! byte tokens, seven layers with a sliding window) through Hugging Face form: norm weights
//! minus one, the vocabulary as a Unigram tokenizer.json with its scores and as a byte-fallback
//! BPE one with merges; converted back, every tensor bit for bit, the metadata, the engine's
//! logits and the tokenizer's ids equal the original's.

mod common;

use common::write_safetensors;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

use convert::{convert_dir, FileType, Options};
use engine::Model;
use gguf::{GgmlType, Gguf, GgufWriter, Value};
use serde_json::{json, Value as Json};

const HIDDEN: u64 = 64;
const FFN: u64 = 96;
const LAYERS: u64 = 7;
const HEADS: u64 = 2;
const KV_HEADS: u64 = 1;
const HEAD_DIM: u64 = 32;
const WINDOW: u64 = 4;
const SPACE: &str = "\u{2581}";

/// Tokens before the byte tokens and after the normal ones, with their GGUF types.
const LEADING: &[(&str, i32)] = &[
    ("<pad>", 3),
    ("<eos>", 3),
    ("<bos>", 3),
    ("<unk>", 3),
    ("<mask>", 3),
    ("[multimodal]", 4),
    ("<unused0>", 3),
    ("<start_of_turn>", 3),
    ("<end_of_turn>", 3),
    ("\n", 4),
    ("\n\n", 4),
    ("  ", 4),
];
const TRAILING: &[(&str, i32)] = &[("\t", 4), ("<start_of_image>", 4), ("<unused1>", 3)];

/// Normal pieces: single characters, then words and their parts.
const WORDS: &[&str] = &[
    "▁t",
    "he",
    "▁the",
    "in",
    "▁a",
    "er",
    "on",
    "an",
    "▁c",
    "ap",
    "it",
    "al",
    "▁ca",
    "▁cap",
    "ital",
    "▁capital",
    "▁o",
    "▁of",
    "▁i",
    "▁is",
    "▁F",
    "ra",
    "nce",
    "▁Fra",
    "▁France",
    "us",
    "▁us",
    "▁user",
    "ser",
    "▁H",
    "ell",
    "▁Hell",
    "▁Hello",
    "▁w",
    "or",
    "ld",
    "▁wor",
    "▁world",
    "mod",
    "el",
    "▁model",
    "▁3",
    ".1",
    "▁Ü",
    "ni",
    "cö",
    "dé",
];

/// The synthetic vocabulary: tokens, scores and types as llama.cpp writes them, with
/// SentencePiece-BPE scores: minus the rank of the first merge making a piece (merges made
/// as transformers does, piece by piece, every split into two pieces), else below every merge.
struct Vocab {
    tokens: Vec<String>,
    scores: Vec<f32>,
    types: Vec<i32>,
    merges: Vec<(String, String)>,
}

fn vocab() -> Vocab {
    let mut tokens: Vec<String> = LEADING.iter().map(|(t, _)| (*t).to_owned()).collect();
    let mut types: Vec<i32> = LEADING.iter().map(|&(_, ty)| ty).collect();
    let mut scores = vec![-1000.0; tokens.len()];
    for b in 0..=255u8 {
        tokens.push(format!("<0x{b:02X}>"));
        types.push(6);
        scores.push(0.0);
    }
    let first_normal = tokens.len();
    let mut normal: Vec<String> = Vec::new();
    for c in "▁etaoinsrhldcuFHTUwüöéx.,1234".chars() {
        normal.push(c.to_string());
    }
    normal.extend(WORDS.iter().map(|w| (*w).to_owned()));
    let known: HashSet<&str> = normal.iter().map(String::as_str).collect();
    assert_eq!(known.len(), normal.len(), "a normal piece twice");
    let mut merges = Vec::new();
    let mut normal_scores = Vec::new();
    for piece in &normal {
        let rank = merges.len();
        for (k, _) in piece.char_indices().skip(1) {
            let (l, r) = piece.split_at(k);
            if known.contains(l) && known.contains(r) {
                merges.push((l.to_owned(), r.to_owned()));
            }
        }
        normal_scores.push((rank < merges.len()).then_some(-(rank as f32)));
    }
    for (piece, score) in normal.into_iter().zip(normal_scores) {
        tokens.push(piece);
        types.push(1);
        scores.push(score.unwrap_or(-(merges.len() as f32)));
    }
    assert!(tokens.len() > first_normal);
    for &(t, ty) in TRAILING {
        tokens.push(t.to_owned());
        types.push(ty);
        scores.push(-1000.0);
    }
    Vocab {
        tokens,
        scores,
        types,
        merges,
    }
}

/// Deterministic values in [-0.5, 0.5), or in [0.5, 2) for norms (where `w - 1 + 1 == w`).
fn values(seed: usize, n: usize, norm: bool) -> Vec<f32> {
    (0..n)
        .map(|j| {
            let x = ((seed * 7919 + j * 104_729) % 1009) as f32 / 1009.0;
            if norm {
                0.5 + 1.4 * x
            } else {
                x - 0.5
            }
        })
        .collect()
}

const CHAT_TEMPLATE: &str = "{{ bos_token }}{% for m in messages %}<start_of_turn>{{ m.role }}\n\
                             {{ m.content }}<end_of_turn>\n{% endfor %}";

/// Writes the synthetic gemma3 GGUF to `dest`.
fn synthetic(dest: &Path) {
    let v = vocab();
    let mut w = GgufWriter::new();
    let u = |n: u64| Value::U32(n as u32);
    for (key, value) in [
        ("general.architecture", Value::from("gemma3")),
        ("general.name", Value::from("gemma3-synthetic")),
        ("gemma3.context_length", u(64)),
        ("gemma3.embedding_length", u(HIDDEN)),
        ("gemma3.block_count", u(LAYERS)),
        ("gemma3.feed_forward_length", u(FFN)),
        ("gemma3.attention.head_count", u(HEADS)),
        ("gemma3.attention.layer_norm_rms_epsilon", Value::F32(1e-6)),
        ("gemma3.attention.key_length", u(HEAD_DIM)),
        ("gemma3.attention.value_length", u(HEAD_DIM)),
        ("gemma3.rope.freq_base", Value::F32(1e6)),
        ("gemma3.attention.sliding_window", u(WINDOW)),
        ("gemma3.attention.head_count_kv", u(KV_HEADS)),
        ("general.file_type", u(0)),
        ("tokenizer.ggml.model", Value::from("llama")),
        ("tokenizer.ggml.pre", Value::from("default")),
        (
            "tokenizer.ggml.tokens",
            Value::Array(v.tokens.iter().cloned().map(Value::String).collect()),
        ),
        (
            "tokenizer.ggml.scores",
            Value::Array(v.scores.iter().map(|&s| Value::F32(s)).collect()),
        ),
        (
            "tokenizer.ggml.token_type",
            Value::Array(v.types.iter().map(|&t| Value::I32(t)).collect()),
        ),
        ("tokenizer.ggml.bos_token_id", u(2)),
        ("tokenizer.ggml.eos_token_id", u(1)),
        ("tokenizer.ggml.unknown_token_id", u(3)),
        ("tokenizer.ggml.padding_token_id", u(0)),
        ("tokenizer.ggml.add_bos_token", Value::Bool(true)),
        ("tokenizer.ggml.add_eos_token", Value::Bool(false)),
        ("tokenizer.ggml.add_space_prefix", Value::Bool(false)),
        ("tokenizer.chat_template", Value::from(CHAT_TEMPLATE)),
    ] {
        w.add_metadata(key, value);
    }
    let n_vocab = v.tokens.len() as u64;
    let mut seed = 0;
    let mut add = |w: &mut GgufWriter, name: &str, dims: &[u64]| {
        seed += 1;
        let n = dims.iter().product::<u64>() as usize;
        let data = values(seed, n, name.ends_with("norm.weight"))
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        w.add_tensor(name, dims, GgmlType::F32, data).unwrap();
    };
    add(&mut w, "token_embd.weight", &[HIDDEN, n_vocab]);
    add(&mut w, "output_norm.weight", &[HIDDEN]);
    let (q, kv) = (HEADS * HEAD_DIM, KV_HEADS * HEAD_DIM);
    for l in 0..LAYERS {
        for (name, dims) in [
            ("attn_norm", vec![HIDDEN]),
            ("attn_q", vec![HIDDEN, q]),
            ("attn_k", vec![HIDDEN, kv]),
            ("attn_v", vec![HIDDEN, kv]),
            ("attn_q_norm", vec![HEAD_DIM]),
            ("attn_k_norm", vec![HEAD_DIM]),
            ("attn_output", vec![q, HIDDEN]),
            ("post_attention_norm", vec![HIDDEN]),
            ("ffn_norm", vec![HIDDEN]),
            ("ffn_gate", vec![HIDDEN, FFN]),
            ("ffn_up", vec![HIDDEN, FFN]),
            ("ffn_down", vec![FFN, HIDDEN]),
            ("post_ffw_norm", vec![HIDDEN]),
        ] {
            add(&mut w, &format!("blk.{l}.{name}.weight"), &dims);
        }
    }
    std::fs::write(dest, w.to_bytes()).unwrap();
}

/// transformers' name of GGUF tensor `name`.
fn hf_name(name: &str) -> String {
    match name {
        "token_embd.weight" => return "model.embed_tokens.weight".into(),
        "output_norm.weight" => return "model.norm.weight".into(),
        _ => {}
    }
    let (layer, tail) = name.strip_prefix("blk.").unwrap().split_once('.').unwrap();
    let hf = match tail.strip_suffix(".weight").unwrap() {
        "attn_norm" => "input_layernorm",
        "attn_q" => "self_attn.q_proj",
        "attn_k" => "self_attn.k_proj",
        "attn_v" => "self_attn.v_proj",
        "attn_q_norm" => "self_attn.q_norm",
        "attn_k_norm" => "self_attn.k_norm",
        "attn_output" => "self_attn.o_proj",
        "post_attention_norm" => "post_attention_layernorm",
        "ffn_norm" => "pre_feedforward_layernorm",
        "ffn_gate" => "mlp.gate_proj",
        "ffn_up" => "mlp.up_proj",
        "ffn_down" => "mlp.down_proj",
        "post_ffw_norm" => "post_feedforward_layernorm",
        other => panic!("no Hugging Face name for {other}"),
    };
    format!("model.layers.{layer}.{hf}.weight")
}

/// The tokenizer.json model forms.
#[derive(Clone, Copy, PartialEq)]
enum Form {
    /// `Unigram` with every piece's score, a `Metaspace` pre-tokenizer.
    Unigram,
    /// `BPE` with byte fallback and merges, a `Replace` normalizer (as Gemma 3 ships it).
    Bpe,
}

/// The Hugging Face directory of the synthetic GGUF `g`.
fn hf_dir(g: &Gguf, form: Form) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let v = vocab();
    let layer_types: Vec<&str> = (0..LAYERS)
        .map(|l| match l % 6 {
            5 => "full_attention",
            _ => "sliding_attention",
        })
        .collect();
    let config = json!({
        "architectures": ["Gemma3ForCausalLM"],
        "model_type": "gemma3_text",
        "hidden_size": HIDDEN,
        "intermediate_size": FFN,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS,
        "num_key_value_heads": KV_HEADS,
        "head_dim": HEAD_DIM,
        "rms_norm_eps": 1e-6,
        "rope_theta": 1e6,
        "rope_local_base_freq": 10000.0,
        "rope_scaling": null,
        "sliding_window": WINDOW,
        "layer_types": layer_types,
        "max_position_embeddings": 64,
        "query_pre_attn_scalar": HEAD_DIM,
        "final_logit_softcapping": null,
        "attn_logit_softcapping": null,
        "vocab_size": v.tokens.len(),
        "bos_token_id": 2,
        "eos_token_id": [1, 8],
        "pad_token_id": 0,
        "torch_dtype": "float32",
    });
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();

    let tensors: Vec<_> = g
        .tensors()
        .iter()
        .map(|t| {
            let mut data = g.tensor_data(t).to_vec();
            if t.name.ends_with("norm.weight") {
                data = data
                    .chunks(4)
                    .flat_map(|b| (f32::from_le_bytes(b.try_into().unwrap()) - 1.0).to_le_bytes())
                    .collect();
            }
            let shape = t.dims.iter().rev().copied().collect();
            (hf_name(&t.name), "F32", shape, data)
        })
        .collect();
    write_safetensors(&dir.path().join("model.safetensors"), &tensors);

    let mut added = Vec::new();
    for (id, (token, &ty)) in v.tokens.iter().zip(&v.types).enumerate() {
        if ty == 3 || ty == 4 {
            // llama.cpp marks <unusedN> and <mask> control though transformers may not.
            let special = ty == 3 && !matches!(token.as_str(), "<mask>" | "<unused1>");
            let content = token.replace(' ', SPACE);
            added.push(json!({"id": id, "content": content, "single_word": false,
                "lstrip": false, "rstrip": false, "normalized": false, "special": special}));
        }
    }
    let (model, normalizer, pre_tokenizer) = match form {
        Form::Unigram => {
            let pieces: Vec<Json> = v
                .tokens
                .iter()
                .zip(&v.scores)
                .zip(&v.types)
                .map(|((t, &s), &ty)| match ty {
                    3 | 4 => json!([t.replace(' ', SPACE), 0.0]),
                    _ => json!([t, s]),
                })
                .collect();
            (
                json!({"type": "Unigram", "unk_id": 3, "vocab": pieces, "byte_fallback": true}),
                Json::Null,
                json!({"type": "Metaspace", "replacement": SPACE, "prepend_scheme": "never",
                    "split": false}),
            )
        }
        Form::Bpe => {
            let vocab: serde_json::Map<String, Json> = v
                .tokens
                .iter()
                .enumerate()
                .map(|(id, t)| (t.replace(' ', SPACE), json!(id)))
                .collect();
            let merges: Vec<Json> = v.merges.iter().map(|(a, b)| json!([a, b])).collect();
            (
                json!({"type": "BPE", "dropout": null, "unk_token": "<unk>",
                    "continuing_subword_prefix": null, "end_of_word_suffix": null,
                    "fuse_unk": true, "byte_fallback": true, "ignore_merges": false,
                    "vocab": vocab, "merges": merges}),
                json!({"type": "Replace", "pattern": {"String": " "}, "content": SPACE}),
                json!({"type": "Split", "pattern": {"String": " "},
                    "behavior": "MergedWithPrevious", "invert": false}),
            )
        }
    };
    let tokenizer = json!({
        "version": "1.0",
        "added_tokens": added,
        "normalizer": normalizer,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": {"type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<bos>", "type_id": 0}},
                       {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [], "special_tokens": {}},
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": SPACE}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"}]},
        "model": model,
    });
    std::fs::write(dir.path().join("tokenizer.json"), tokenizer.to_string()).unwrap();
    let tokenizer_config = json!({
        "add_bos_token": true,
        "add_eos_token": false,
        "bos_token": "<bos>",
        "eos_token": "<eos>",
        "unk_token": "<unk>",
        "pad_token": "<pad>",
        "chat_template": CHAT_TEMPLATE,
    });
    std::fs::write(
        dir.path().join("tokenizer_config.json"),
        tokenizer_config.to_string(),
    )
    .unwrap();
    dir
}

/// Converts `src` into `out/model.gguf` named as the original.
fn convert(src: &Path, out: &Path) -> PathBuf {
    let dest = out.join("model.gguf");
    let options = Options {
        ftype: FileType::F32,
        name: Some("gemma3-synthetic".into()),
    };
    convert_dir(src, &dest, &options).unwrap();
    dest
}

/// Checks the converted file against the original ([`common::assert_same_model`]) on texts
/// longer than the sliding window, so that both kinds of layer are compared.
fn assert_same_model(original: &Path, converted: &Path) {
    let texts = [
        "The capital of France is",
        "<start_of_turn>user\nHello  world\t<end_of_turn>\n<start_of_turn>model\n",
        "Ünïcödé 🦀 3.14159\n\n<unused1> x",
    ];
    let model = Model::load(original, 1).unwrap();
    for text in texts {
        let ids = model.tokenizer.encode(text, true, true);
        assert!(ids.len() > WINDOW as usize, "{text:?}");
    }
    common::assert_same_model(original, converted, &texts, 64);
}

#[test]
fn gemma3_round_trips_with_a_unigram_tokenizer() {
    let work = tempfile::tempdir().unwrap();
    let original = work.path().join("gemma3-synthetic.gguf");
    synthetic(&original);
    let g = Gguf::open(&original).unwrap();
    let dir = hf_dir(&g, Form::Unigram);
    let converted = convert(dir.path(), work.path());
    assert_same_model(&original, &converted);
}

#[test]
fn gemma3_round_trips_with_a_byte_fallback_bpe_tokenizer() {
    let work = tempfile::tempdir().unwrap();
    let original = work.path().join("gemma3-synthetic.gguf");
    synthetic(&original);
    let g = Gguf::open(&original).unwrap();
    let dir = hf_dir(&g, Form::Bpe);
    let converted = convert(dir.path(), work.path());
    assert_same_model(&original, &converted);
    // The checkpoint's norms are the GGUF's minus one.
    let b = Gguf::open(&converted).unwrap();
    let norm = b.tensor("blk.3.post_ffw_norm.weight").unwrap();
    let first = f32::from_le_bytes(b.tensor_data(norm)[..4].try_into().unwrap());
    assert!((0.5..2.0).contains(&first), "{first}");
}

/// Converting the BPE-form directory after `edit` fails with an error mentioning `want`.
fn fails(file: &str, edit: impl Fn(&mut Json), want: &str) {
    let work = tempfile::tempdir().unwrap();
    let original = work.path().join("gemma3-synthetic.gguf");
    synthetic(&original);
    let dir = hf_dir(&Gguf::open(&original).unwrap(), Form::Bpe);
    let path = dir.path().join(file);
    let mut json: Json = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    edit(&mut json);
    std::fs::write(&path, json.to_string()).unwrap();
    let e = convert_dir(dir.path(), &work.path().join("x.gguf"), &Options::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains(want) && e.contains(file), "{want}: {e}");
}

#[test]
fn unsupported_gemma3_forms_are_named() {
    let t = "tokenizer.json";
    fails(
        t,
        |j| j["model"]["byte_fallback"] = json!(false),
        "without byte fallback",
    );
    fails(t, |j| j["model"]["type"] = json!("WordPiece"), "WordPiece");
    fails(
        t,
        |j| j["normalizer"] = json!({"type": "NFKC"}),
        "normalizer NFKC",
    );
    fails(
        t,
        |j| {
            j["normalizer"] = Json::Null;
            j["pre_tokenizer"] = Json::Null;
        },
        "spaces are not replaced",
    );
    fails(
        t,
        |j| j["pre_tokenizer"] = json!({"type": "ByteLevel"}),
        "pre-tokenizer ByteLevel",
    );
    fails(
        t,
        |j| j["model"]["merges"][0] = json!(["x", "x"]),
        "not in the vocabulary",
    );
    let c = "config.json";
    fails(
        c,
        |j| j["layer_types"][1] = json!("full_attention"),
        "layer_types",
    );
    fails(
        c,
        |j| j["rope_local_base_freq"] = json!(1e5),
        "rope_local_base_freq",
    );
    fails(
        c,
        |j| j["rope_scaling"] = json!({"rope_type": "yarn", "factor": 4.0}),
        "rope_scaling",
    );
}
