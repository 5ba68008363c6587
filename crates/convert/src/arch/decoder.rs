//! Decoder-only language models whose checkpoint tensors map one to one onto llama.cpp's:
//! Llama (`LlamaForCausalLM`, `MistralForCausalLM`: Llama 2 and 3, SmolLM, Mistral 7B and the
//! like), Qwen 2 (`Qwen2ForCausalLM`, with Q/K/V biases) and Qwen 3 (`Qwen3ForCausalLM`, with
//! Q/K norms). Llama's Q and K matrices are reordered into llama.cpp's RoPE layout; Qwen's use
//! NeoX RoPE, which is Hugging Face's own layout.

use gguf::Value;
use serde_json::Value as Json;

use super::{rule, Arch, HParam, TensorRule, TiedOutput};
use crate::hf::Config;
use crate::ConvertError;

const HIDDEN: &str = "hidden_size";
const FFN: &str = "intermediate_size";
const HEADS: &str = "num_attention_heads";
const KV_HEADS: &str = "num_key_value_heads";
const HEAD_DIM: &str = "head_dim";
const Q_DIM: &str = "num_attention_heads*head_dim";
const KV_DIM: &str = "num_key_value_heads*head_dim";

const GLOBALS: &[TensorRule] = &[
    rule(
        "model.embed_tokens.weight",
        "token_embd.weight",
        &["vocab_size", HIDDEN],
    ),
    rule("model.norm.weight", "output_norm.weight", &[HIDDEN]),
    rule("lm_head.weight", "output.weight", &["vocab_size", HIDDEN]),
];

const TIED: Option<TiedOutput> = Some(TiedOutput {
    gguf: "output.weight",
    default: false,
});

const ATTN_NORM: TensorRule = rule("input_layernorm.weight", "attn_norm.weight", &[HIDDEN]);
const Q: TensorRule = rule("self_attn.q_proj.weight", "attn_q.weight", &[Q_DIM, HIDDEN]);
const K: TensorRule = rule(
    "self_attn.k_proj.weight",
    "attn_k.weight",
    &[KV_DIM, HIDDEN],
);
const V: TensorRule = rule(
    "self_attn.v_proj.weight",
    "attn_v.weight",
    &[KV_DIM, HIDDEN],
);
const OUT: TensorRule = rule(
    "self_attn.o_proj.weight",
    "attn_output.weight",
    &[HIDDEN, Q_DIM],
);
const FFN_NORM: TensorRule = rule(
    "post_attention_layernorm.weight",
    "ffn_norm.weight",
    &[HIDDEN],
);
const GATE: TensorRule = rule("mlp.gate_proj.weight", "ffn_gate.weight", &[FFN, HIDDEN]);
const UP: TensorRule = rule("mlp.up_proj.weight", "ffn_up.weight", &[FFN, HIDDEN]);
const DOWN: TensorRule = rule("mlp.down_proj.weight", "ffn_down.weight", &[HIDDEN, FFN]);

/// The hyper-parameters every family here writes, in llama.cpp's order.
macro_rules! common_hparams {
    ($($more:expr),* $(,)?) => {
        &[
            HParam::U32("context_length", "max_position_embeddings"),
            HParam::U32("embedding_length", HIDDEN),
            HParam::U32("feed_forward_length", FFN),
            HParam::U32("block_count", "num_hidden_layers"),
            HParam::U32("attention.head_count", HEADS),
            HParam::U32("attention.head_count_kv", KV_HEADS),
            HParam::F32("attention.layer_norm_rms_epsilon", "rms_norm_eps"),
            HParam::F32("rope.freq_base", "rope_theta"),
            $($more),*
        ]
    };
}

pub(crate) const LLAMA: Arch = Arch {
    classes: &["LlamaForCausalLM", "MistralForCausalLM"],
    name: "llama",
    strip_prefixes: &[],
    renames: &[],
    skipped: &[],
    globals: GLOBALS,
    layer_prefix: "model.layers.",
    layer_count: "num_hidden_layers",
    layer_tensors: &[
        ATTN_NORM,
        TensorRule {
            rope_heads: Some(HEADS),
            ..Q
        },
        TensorRule {
            rope_heads: Some(KV_HEADS),
            ..K
        },
        V,
        OUT,
        FFN_NORM,
        GATE,
        UP,
        DOWN,
    ],
    tied_output: TIED,
    defaults,
    hparams: common_hparams![
        HParam::U32("rope.dimension_count", HEAD_DIM),
        HParam::U32("vocab_size", "vocab_size"),
    ],
    extra: |_, config| extra("llama", config),
    vocab: crate::bpe::bpe,
};

pub(crate) const QWEN2: Arch = Arch {
    classes: &["Qwen2ForCausalLM"],
    name: "qwen2",
    layer_tensors: &[
        ATTN_NORM,
        Q,
        rule("self_attn.q_proj.bias", "attn_q.bias", &[Q_DIM]),
        K,
        rule("self_attn.k_proj.bias", "attn_k.bias", &[KV_DIM]),
        V,
        rule("self_attn.v_proj.bias", "attn_v.bias", &[KV_DIM]),
        OUT,
        FFN_NORM,
        GATE,
        UP,
        DOWN,
    ],
    hparams: common_hparams![],
    extra: |_, config| extra("qwen2", config),
    ..LLAMA
};

pub(crate) const QWEN3: Arch = Arch {
    classes: &["Qwen3ForCausalLM"],
    name: "qwen3",
    layer_tensors: &[
        ATTN_NORM,
        Q,
        K,
        V,
        rule("self_attn.q_norm.weight", "attn_q_norm.weight", &[HEAD_DIM]),
        rule("self_attn.k_norm.weight", "attn_k_norm.weight", &[HEAD_DIM]),
        OUT,
        FFN_NORM,
        GATE,
        UP,
        DOWN,
    ],
    hparams: common_hparams![],
    extra: |_, config| extra("qwen3", config),
    ..LLAMA
};

/// transformers' defaults: as many KV heads as query heads, heads of `hidden_size / heads`,
/// RoPE base 10000. Checks that the heads fit: KV heads dividing the query heads, an even head
/// size (RoPE rotates pairs).
fn defaults(c: &mut Config) -> Result<(), ConvertError> {
    let heads = c.u64(HEADS)?;
    let hidden = c.u64(HIDDEN)?;
    c.default(KV_HEADS, heads);
    if c.get(HEAD_DIM).is_none() && hidden % heads != 0 {
        return Err(c.bad(
            HEAD_DIM,
            "a head size, since hidden_size is not a multiple of num_attention_heads",
        ));
    }
    c.default(HEAD_DIM, hidden / heads);
    c.default("rope_theta", 10000.0);
    if heads % c.u64(KV_HEADS)? != 0 {
        return Err(c.bad(KV_HEADS, "a divisor of num_attention_heads"));
    }
    if c.u64(HEAD_DIM)? % 2 != 0 {
        return Err(c.bad(HEAD_DIM, "an even head size"));
    }
    Ok(())
}

/// The head size where config.json gives it (llama.cpp's `attention.key_length` and
/// `value_length`), and linear RoPE scaling; other RoPE scaling is refused rather than
/// silently dropped.
fn extra(arch: &str, config: &Config) -> Result<Vec<(String, Value)>, ConvertError> {
    let mut out = Vec::new();
    if config.given(HEAD_DIM) {
        let d = config.u32(HEAD_DIM)?;
        out.push((format!("{arch}.attention.key_length"), Value::U32(d)));
        out.push((format!("{arch}.attention.value_length"), Value::U32(d)));
    }
    out.extend(rope_scaling(arch, config)?);
    Ok(out)
}

/// `{arch}.rope.scaling.*` for config.json's linear `rope_scaling`; none for none (or
/// `default`), and an error for any other kind rather than silently dropping it.
pub(crate) fn rope_scaling(
    arch: &str,
    config: &Config,
) -> Result<Vec<(String, Value)>, ConvertError> {
    let mut out = Vec::new();
    if let Some(scaling) = config.get("rope_scaling") {
        let kind = scaling
            .get("rope_type")
            .or_else(|| scaling.get("type"))
            .and_then(Json::as_str);
        let factor = scaling.get("factor").and_then(Json::as_f64);
        match (kind, factor) {
            (Some("default"), _) => {}
            (Some("linear"), Some(f)) if f.is_finite() && f > 0.0 => {
                out.push((format!("{arch}.rope.scaling.type"), Value::from("linear")));
                out.push((format!("{arch}.rope.scaling.factor"), Value::F32(f as f32)));
            }
            _ => {
                return Err(config.bad(
                    "rope_scaling",
                    "no RoPE scaling or linear scaling with a positive factor (llama3, YaRN \
                     and dynamic scaling are not supported yet)",
                ))
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::Mapped;

    fn gguf_name(arch: &'static Arch, name: &str) -> Option<String> {
        match arch.map(name, 2) {
            Ok(Mapped::Tensor { gguf, .. }) => Some(gguf),
            Ok(Mapped::Skip) | Err(_) => None,
        }
    }

    #[test]
    fn names_map_as_llama_cpp_names_them() {
        for arch in [&LLAMA, &QWEN2, &QWEN3] {
            for (hf, gguf) in [
                ("model.embed_tokens.weight", "token_embd.weight"),
                ("model.norm.weight", "output_norm.weight"),
                ("lm_head.weight", "output.weight"),
                (
                    "model.layers.0.input_layernorm.weight",
                    "blk.0.attn_norm.weight",
                ),
                (
                    "model.layers.1.self_attn.q_proj.weight",
                    "blk.1.attn_q.weight",
                ),
                (
                    "model.layers.1.self_attn.o_proj.weight",
                    "blk.1.attn_output.weight",
                ),
                (
                    "model.layers.0.post_attention_layernorm.weight",
                    "blk.0.ffn_norm.weight",
                ),
                (
                    "model.layers.1.mlp.gate_proj.weight",
                    "blk.1.ffn_gate.weight",
                ),
                (
                    "model.layers.0.mlp.down_proj.weight",
                    "blk.0.ffn_down.weight",
                ),
            ] {
                assert_eq!(gguf_name(arch, hf).as_deref(), Some(gguf), "{hf}");
            }
            assert_eq!(gguf_name(arch, "model.layers.2.mlp.up_proj.weight"), None);
        }
        let bias = "model.layers.0.self_attn.k_proj.bias";
        assert_eq!(
            gguf_name(&QWEN2, bias).as_deref(),
            Some("blk.0.attn_k.bias")
        );
        assert_eq!(gguf_name(&LLAMA, bias), None);
        let norm = "model.layers.1.self_attn.q_norm.weight";
        assert_eq!(
            gguf_name(&QWEN3, norm).as_deref(),
            Some("blk.1.attn_q_norm.weight")
        );
        assert_eq!(gguf_name(&QWEN2, norm), None);
        // Only Llama's Q and K are reordered.
        let permuted = |arch: &'static Arch| -> Vec<&str> {
            arch.layer_tensors
                .iter()
                .filter(|r| r.rope_heads.is_some())
                .map(|r| r.gguf)
                .collect()
        };
        assert_eq!(permuted(&LLAMA), ["attn_q.weight", "attn_k.weight"]);
        assert!(permuted(&QWEN2).is_empty() && permuted(&QWEN3).is_empty());
    }

    fn config(text: &str) -> (tempfile::TempDir, Config) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), text).unwrap();
        let c = Config::read(dir.path()).unwrap();
        (dir, c)
    }

    #[test]
    fn defaults_and_their_checks() {
        let (_d, mut c) = config(r#"{"hidden_size": 576, "num_attention_heads": 9}"#);
        defaults(&mut c).unwrap();
        assert_eq!(c.u64(KV_HEADS).unwrap(), 9);
        assert_eq!(c.u64(HEAD_DIM).unwrap(), 64);
        assert_eq!(c.f64("rope_theta").unwrap(), 10000.0);
        assert!(extra("llama", &c).unwrap().is_empty());

        let (_d, mut c) = config(
            r#"{"hidden_size": 5120, "num_attention_heads": 32, "num_key_value_heads": 8,
                "head_dim": 128, "rope_theta": 1e6}"#,
        );
        defaults(&mut c).unwrap();
        assert_eq!(c.u64(Q_DIM).unwrap(), 4096);
        assert_eq!(c.u64(KV_DIM).unwrap(), 1024);
        assert_eq!(c.f64("rope_theta").unwrap(), 1e6);
        assert_eq!(
            extra("llama", &c).unwrap(),
            [
                ("llama.attention.key_length".into(), Value::U32(128)),
                ("llama.attention.value_length".into(), Value::U32(128)),
            ]
        );

        for (text, key) in [
            (
                r#"{"hidden_size": 100, "num_attention_heads": 3}"#,
                HEAD_DIM,
            ),
            (
                r#"{"hidden_size": 96, "num_attention_heads": 4, "num_key_value_heads": 3}"#,
                KV_HEADS,
            ),
            (r#"{"hidden_size": 36, "num_attention_heads": 4}"#, HEAD_DIM),
        ] {
            let (_d, mut c) = config(text);
            let e = defaults(&mut c).unwrap_err().to_string();
            assert!(e.contains(&format!("`{key}`")), "{text}: {e}");
        }
    }

    #[test]
    fn rope_scaling_linear_or_refused() {
        let base = r#""hidden_size": 64, "num_attention_heads": 4"#;
        let (_d, c) = config(&format!(
            r#"{{{base}, "rope_scaling": {{"type": "linear", "factor": 4.0}}}}"#
        ));
        assert_eq!(
            extra("llama", &c).unwrap(),
            [
                ("llama.rope.scaling.type".into(), Value::from("linear")),
                ("llama.rope.scaling.factor".into(), Value::F32(4.0)),
            ]
        );
        let (_d, c) = config(&format!(r#"{{{base}, "rope_scaling": null}}"#));
        assert!(extra("qwen2", &c).unwrap().is_empty());
        let (_d, c) = config(&format!(
            r#"{{{base}, "rope_scaling": {{"rope_type": "llama3", "factor": 32.0}}}}"#
        ));
        let e = extra("llama", &c).unwrap_err().to_string();
        assert!(e.contains("rope_scaling") && e.contains("llama3"), "{e}");
    }
}
