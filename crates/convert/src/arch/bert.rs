//! BERT (`BertModel`): the encoders of sentence-transformers embedding models such as
//! all-MiniLM-L6-v2 and bge-small, as llama.cpp's `bert` architecture names them.

use std::path::Path;

use gguf::Value;
use serde_json::Value as Json;

use super::{no_defaults, rule, Arch, HParam};
use crate::hf::{read_json_if_present, Config};
use crate::ConvertError;

const HIDDEN: &str = "hidden_size";
const FFN: &str = "intermediate_size";

pub(crate) const BERT: Arch = Arch {
    classes: &["BertModel"],
    name: "bert",
    strip_prefixes: &["bert."],
    renames: &[
        ("LayerNorm.gamma", "LayerNorm.weight"),
        ("LayerNorm.beta", "LayerNorm.bias"),
    ],
    skipped: &["embeddings.position_ids", "pooler."],
    globals: &[
        rule(
            "embeddings.word_embeddings.weight",
            "token_embd.weight",
            &["vocab_size", HIDDEN],
        ),
        rule(
            "embeddings.position_embeddings.weight",
            "position_embd.weight",
            &["max_position_embeddings", HIDDEN],
        ),
        rule(
            "embeddings.token_type_embeddings.weight",
            "token_types.weight",
            &["type_vocab_size", HIDDEN],
        ),
        rule(
            "embeddings.LayerNorm.weight",
            "token_embd_norm.weight",
            &[HIDDEN],
        ),
        rule(
            "embeddings.LayerNorm.bias",
            "token_embd_norm.bias",
            &[HIDDEN],
        ),
    ],
    layer_prefix: "encoder.layer.",
    layer_count: "num_hidden_layers",
    layer_tensors: &[
        rule(
            "attention.self.query.weight",
            "attn_q.weight",
            &[HIDDEN, HIDDEN],
        ),
        rule("attention.self.query.bias", "attn_q.bias", &[HIDDEN]),
        rule(
            "attention.self.key.weight",
            "attn_k.weight",
            &[HIDDEN, HIDDEN],
        ),
        rule("attention.self.key.bias", "attn_k.bias", &[HIDDEN]),
        rule(
            "attention.self.value.weight",
            "attn_v.weight",
            &[HIDDEN, HIDDEN],
        ),
        rule("attention.self.value.bias", "attn_v.bias", &[HIDDEN]),
        rule(
            "attention.output.dense.weight",
            "attn_output.weight",
            &[HIDDEN, HIDDEN],
        ),
        rule("attention.output.dense.bias", "attn_output.bias", &[HIDDEN]),
        rule(
            "attention.output.LayerNorm.weight",
            "attn_output_norm.weight",
            &[HIDDEN],
        ),
        rule(
            "attention.output.LayerNorm.bias",
            "attn_output_norm.bias",
            &[HIDDEN],
        ),
        rule("intermediate.dense.weight", "ffn_up.weight", &[FFN, HIDDEN]),
        rule("intermediate.dense.bias", "ffn_up.bias", &[FFN]),
        rule("output.dense.weight", "ffn_down.weight", &[HIDDEN, FFN]),
        rule("output.dense.bias", "ffn_down.bias", &[HIDDEN]),
        rule(
            "output.LayerNorm.weight",
            "layer_output_norm.weight",
            &[HIDDEN],
        ),
        rule("output.LayerNorm.bias", "layer_output_norm.bias", &[HIDDEN]),
    ],
    tied_output: None,
    defaults: no_defaults,
    hparams: &[
        HParam::U32("context_length", "max_position_embeddings"),
        HParam::U32("embedding_length", HIDDEN),
        HParam::U32("feed_forward_length", FFN),
        HParam::U32("block_count", "num_hidden_layers"),
        HParam::U32("attention.head_count", "num_attention_heads"),
        HParam::F32("attention.layer_norm_epsilon", "layer_norm_eps"),
    ],
    extra,
    vocab: crate::vocab::wordpiece,
};

/// llama.cpp's `enum llama_pooling_type` values.
const POOLING_MEAN: u32 = 1;
const POOLING_CLS: u32 = 2;
const POOLING_LAST: u32 = 3;

/// `bert.attention.causal` (false: every token sees every other) and `bert.pooling_type`.
fn extra(dir: &Path, _: &Config) -> Result<Vec<(String, Value)>, ConvertError> {
    Ok(vec![
        ("bert.attention.causal".into(), Value::Bool(false)),
        ("bert.pooling_type".into(), Value::U32(pooling(dir)?)),
    ])
}

/// The pooling of a sentence-transformers model: its Pooling module's config (the module
/// modules.json names, else `1_Pooling`); mean pooling when there is none.
fn pooling(dir: &Path) -> Result<u32, ConvertError> {
    let module = read_json_if_present(&dir.join("modules.json"))?
        .as_ref()
        .and_then(Json::as_array)
        .and_then(|modules| {
            modules.iter().find(|m| {
                m.get("type").and_then(Json::as_str) == Some("sentence_transformers.models.Pooling")
            })
        })
        .and_then(|m| m.get("path").and_then(Json::as_str))
        .filter(|p| !p.is_empty() && !p.contains(['/', '\\']) && *p != "..")
        .unwrap_or("1_Pooling")
        .to_owned();
    let path = dir.join(module).join("config.json");
    let Some(config) = read_json_if_present(&path)? else {
        return Ok(POOLING_MEAN);
    };
    let on = |key: &str| config.get(key).and_then(Json::as_bool) == Some(true);
    if on("pooling_mode_mean_tokens") {
        Ok(POOLING_MEAN)
    } else if on("pooling_mode_cls_token") {
        Ok(POOLING_CLS)
    } else if on("pooling_mode_lasttoken") {
        Ok(POOLING_LAST)
    } else {
        Err(ConvertError::BadKey {
            path,
            key: "pooling_mode_*".into(),
            expected: "mean, CLS or last-token pooling (the kinds llama.cpp implements)",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::Mapped;

    fn gguf_name(name: &str) -> Result<Option<String>, ConvertError> {
        Ok(match BERT.map(name, 6)? {
            Mapped::Skip => None,
            Mapped::Tensor { gguf, .. } => Some(gguf),
        })
    }

    #[test]
    fn names_map_as_llama_cpp_names_them() {
        let cases = [
            ("embeddings.word_embeddings.weight", "token_embd.weight"),
            ("bert.embeddings.LayerNorm.gamma", "token_embd_norm.weight"),
            ("embeddings.LayerNorm.beta", "token_embd_norm.bias"),
            (
                "encoder.layer.0.attention.self.query.weight",
                "blk.0.attn_q.weight",
            ),
            (
                "encoder.layer.5.attention.output.LayerNorm.bias",
                "blk.5.attn_output_norm.bias",
            ),
            (
                "bert.encoder.layer.3.intermediate.dense.weight",
                "blk.3.ffn_up.weight",
            ),
            ("encoder.layer.2.output.dense.bias", "blk.2.ffn_down.bias"),
            (
                "encoder.layer.1.output.LayerNorm.weight",
                "blk.1.layer_output_norm.weight",
            ),
        ];
        for (hf, gguf) in cases {
            assert_eq!(gguf_name(hf).unwrap().as_deref(), Some(gguf), "{hf}");
        }
        for skipped in [
            "embeddings.position_ids",
            "pooler.dense.weight",
            "bert.pooler.dense.bias",
        ] {
            assert_eq!(gguf_name(skipped).unwrap(), None, "{skipped}");
        }
        for unknown in [
            "cls.predictions.bias",
            "encoder.layer.6.output.dense.bias",
            "encoder.layer.+1.output.dense.bias",
            "encoder.layer.0.output.dense.scale",
            "encoder.layer.0",
        ] {
            let e = gguf_name(unknown).unwrap_err();
            assert!(
                matches!(&e, ConvertError::UnknownTensor { tensor, arch: "bert" } if tensor == unknown),
                "{unknown}: {e}"
            );
        }
    }

    #[test]
    fn expected_tensors_per_layer() {
        let all: Vec<_> = BERT.expected(6).collect();
        assert_eq!(all.len(), 6 * 16 + 5);
        assert_eq!(all[5].0, "encoder.layer.0.attention.self.query.weight");
        assert_eq!(all[5].1, "blk.0.attn_q.weight");
        assert_eq!(all.last().unwrap().1, "blk.5.layer_output_norm.bias");
    }

    #[test]
    fn pooling_from_the_sentence_transformers_config() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(pooling(dir.path()).unwrap(), POOLING_MEAN);
        let write = |module: &str, body: &str| {
            std::fs::create_dir_all(dir.path().join(module)).unwrap();
            std::fs::write(dir.path().join(module).join("config.json"), body).unwrap();
        };
        write(
            "1_Pooling",
            r#"{"pooling_mode_cls_token": true, "pooling_mode_mean_tokens": false}"#,
        );
        assert_eq!(pooling(dir.path()).unwrap(), POOLING_CLS);
        write("pool", r#"{"pooling_mode_mean_tokens": true}"#);
        std::fs::write(
            dir.path().join("modules.json"),
            r#"[{"idx": 1, "path": "pool", "type": "sentence_transformers.models.Pooling"}]"#,
        )
        .unwrap();
        assert_eq!(pooling(dir.path()).unwrap(), POOLING_MEAN);
        write("pool", r#"{"pooling_mode_max_tokens": true}"#);
        let e = pooling(dir.path()).unwrap_err().to_string();
        assert!(e.contains("pooling_mode_") && e.contains("pool"), "{e}");
    }
}
