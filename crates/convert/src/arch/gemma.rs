//! Gemma 3 text models (`Gemma3ForCausalLM`, such as gemma-3-270m and gemma-3-1b) as
//! llama.cpp's `gemma3`: RMSNorms before and after attention and the feed-forward block, Q/K
//! norms, NeoX RoPE (Hugging Face's own row order), the output tied to the token embeddings.
//!
//! Gemma's RMSNorm scales by `1 + weight`; llama.cpp stores `weight + 1` (computed in F16 for an
//! F16 checkpoint, as its converter does), so every norm weight is shifted here. llama.cpp
//! assumes what config.json spells out for Gemma 3: every sixth layer global, the others over a
//! sliding window with RoPE base 10000. A config.json that says otherwise is refused rather
//! than converted into a model that runs differently.

use gguf::Value;
use serde_json::Value as Json;

use super::decoder::rope_scaling;
use super::{rule, Arch, HParam, TensorRule};
use crate::hf::Config;
use crate::ConvertError;

const HIDDEN: &str = "hidden_size";
const FFN: &str = "intermediate_size";
const HEADS: &str = "num_attention_heads";
const KV_HEADS: &str = "num_key_value_heads";
const HEAD_DIM: &str = "head_dim";
const LAYERS: &str = "num_hidden_layers";
const Q_DIM: &str = "num_attention_heads*head_dim";
const KV_DIM: &str = "num_key_value_heads*head_dim";

/// Every `PERIOD`-th layer attends to the whole context (llama.cpp's fixed Gemma 3 pattern).
const PERIOD: u64 = 6;
/// The RoPE base of the sliding-window layers that llama.cpp assumes.
const LOCAL_ROPE_BASE: f64 = 10000.0;

/// A norm weight, stored plus one.
const fn norm(hf: &'static str, gguf: &'static str, shape: &'static [&'static str]) -> TensorRule {
    TensorRule {
        plus_one: true,
        ..rule(hf, gguf, shape)
    }
}

pub(crate) const GEMMA3: Arch = Arch {
    classes: &["Gemma3ForCausalLM"],
    name: "gemma3",
    strip_prefixes: &[],
    renames: &[],
    // llama.cpp leaves out an lm_head (as AutoAWQ checkpoints carry): Gemma ties its output.
    skipped: &["lm_head.weight"],
    globals: &[
        rule(
            "model.embed_tokens.weight",
            "token_embd.weight",
            &["vocab_size", HIDDEN],
        ),
        norm("model.norm.weight", "output_norm.weight", &[HIDDEN]),
    ],
    layer_prefix: "model.layers.",
    layer_count: LAYERS,
    layer_tensors: &[
        norm("input_layernorm.weight", "attn_norm.weight", &[HIDDEN]),
        rule("self_attn.q_proj.weight", "attn_q.weight", &[Q_DIM, HIDDEN]),
        rule(
            "self_attn.k_proj.weight",
            "attn_k.weight",
            &[KV_DIM, HIDDEN],
        ),
        rule(
            "self_attn.v_proj.weight",
            "attn_v.weight",
            &[KV_DIM, HIDDEN],
        ),
        norm("self_attn.q_norm.weight", "attn_q_norm.weight", &[HEAD_DIM]),
        norm("self_attn.k_norm.weight", "attn_k_norm.weight", &[HEAD_DIM]),
        rule(
            "self_attn.o_proj.weight",
            "attn_output.weight",
            &[HIDDEN, Q_DIM],
        ),
        norm(
            "post_attention_layernorm.weight",
            "post_attention_norm.weight",
            &[HIDDEN],
        ),
        norm(
            "pre_feedforward_layernorm.weight",
            "ffn_norm.weight",
            &[HIDDEN],
        ),
        rule("mlp.gate_proj.weight", "ffn_gate.weight", &[FFN, HIDDEN]),
        rule("mlp.up_proj.weight", "ffn_up.weight", &[FFN, HIDDEN]),
        rule("mlp.down_proj.weight", "ffn_down.weight", &[HIDDEN, FFN]),
        norm(
            "post_feedforward_layernorm.weight",
            "post_ffw_norm.weight",
            &[HIDDEN],
        ),
    ],
    tied_output: None,
    defaults,
    // llama.cpp's keys in its order; sliding_window and head_count_kv come from `extra`.
    hparams: &[
        HParam::U32("context_length", "max_position_embeddings"),
        HParam::U32("embedding_length", HIDDEN),
        HParam::U32("block_count", LAYERS),
        HParam::U32("feed_forward_length", FFN),
        HParam::U32("attention.head_count", HEADS),
        HParam::F32("attention.layer_norm_rms_epsilon", "rms_norm_eps"),
        HParam::U32("attention.key_length", HEAD_DIM),
        HParam::U32("attention.value_length", HEAD_DIM),
        HParam::F32("rope.freq_base", "rope_theta"),
    ],
    extra,
    vocab: crate::spm::spm,
};

/// transformers' Gemma 3 defaults (as llama.cpp's converter assumes them), then the checks:
/// KV heads dividing the query heads, an even head size, llama.cpp's sliding-window pattern and
/// local RoPE base.
fn defaults(c: &mut Config) -> Result<(), ConvertError> {
    c.default("vocab_size", 262_208);
    c.default(HEADS, 8);
    c.default(KV_HEADS, 4);
    c.default(HEAD_DIM, 256);
    c.default("rms_norm_eps", 1e-6);
    c.default("rope_theta", 1e6);
    c.default("max_position_embeddings", 131_072);
    c.default("sliding_window", 4096);
    if c.u64(HEADS)? % c.u64(KV_HEADS)? != 0 {
        return Err(c.bad(KV_HEADS, "a divisor of num_attention_heads"));
    }
    if c.u64(HEAD_DIM)? % 2 != 0 {
        return Err(c.bad(HEAD_DIM, "an even head size"));
    }
    if let Some(base) = c.get("rope_local_base_freq") {
        if base.as_f64() != Some(LOCAL_ROPE_BASE) {
            return Err(c.bad(
                "rope_local_base_freq",
                "10000, the sliding-window RoPE base llama.cpp assumes for Gemma 3",
            ));
        }
    }
    if c.get("attn_logit_softcapping").is_some() {
        return Err(c.bad(
            "attn_logit_softcapping",
            "null: Gemma 3 has no attention logit soft-capping",
        ));
    }
    period(c).map(|_| ())
}

/// How often a layer attends to the whole context: 1 when every layer does, [`PERIOD`] when
/// every sixth does and the others use the sliding window. From `layer_types` (newer
/// configs), else `sliding_window_pattern` (or `_sliding_window_pattern`), else [`PERIOD`].
fn period(c: &Config) -> Result<u64, ConvertError> {
    const PATTERN: &str = "every sixth layer full_attention and the others sliding_attention \
                           (llama.cpp's Gemma 3 pattern), or every layer full_attention";
    if let Some(types) = c.get("layer_types") {
        let n_layer = c.u64(LAYERS)?;
        let types: Option<Vec<&str>> = types
            .as_array()
            .map(|a| a.iter().map(Json::as_str).collect())
            .unwrap_or_default();
        let types = types
            .filter(|t| t.len() as u64 == n_layer)
            .ok_or_else(|| c.bad("layer_types", PATTERN))?;
        let is = |period: u64| {
            types.iter().enumerate().all(|(il, &t)| {
                let full = il as u64 % period == period - 1;
                t == if full {
                    "full_attention"
                } else {
                    "sliding_attention"
                }
            })
        };
        return [1, PERIOD]
            .into_iter()
            .find(|&p| is(p))
            .ok_or_else(|| c.bad("layer_types", PATTERN));
    }
    for key in ["sliding_window_pattern", "_sliding_window_pattern"] {
        if let Some(v) = c.get(key) {
            return match v.as_u64() {
                Some(p @ (1 | PERIOD)) => Ok(p),
                _ => Err(c.bad(key, "6 (llama.cpp's Gemma 3 pattern) or 1")),
            };
        }
    }
    Ok(PERIOD)
}

/// `sliding_window` (unless every layer is global) and `head_count_kv` in llama.cpp's order,
/// the final logit soft-capping where there is one, linear RoPE scaling, and
/// `attention.scale` where `query_pre_attn_scalar` is not the head size (Gemma 3 27B: llama.cpp
/// knows it by the model's size, Hearth reads it).
fn extra(_: &std::path::Path, c: &Config) -> Result<Vec<(String, Value)>, ConvertError> {
    let mut out = Vec::new();
    if period(c)? != 1 {
        let window = c.u32("sliding_window")?;
        out.push(("gemma3.attention.sliding_window".into(), Value::U32(window)));
    }
    out.push((
        "gemma3.attention.head_count_kv".into(),
        Value::U32(c.u32(KV_HEADS)?),
    ));
    if c.get("final_logit_softcapping").is_some() {
        let cap = c.f64("final_logit_softcapping")?;
        out.push((
            "gemma3.final_logit_softcapping".into(),
            Value::F32(cap as f32),
        ));
    }
    out.extend(rope_scaling("gemma3", c)?);
    if c.get("query_pre_attn_scalar").is_some() {
        let scalar = c.f64("query_pre_attn_scalar")?;
        if scalar <= 0.0 {
            return Err(c.bad("query_pre_attn_scalar", "a positive number"));
        }
        if scalar != c.u64(HEAD_DIM)? as f64 {
            let scale = (1.0 / scalar.sqrt()) as f32;
            out.push(("gemma3.attention.scale".into(), Value::F32(scale)));
        }
    }
    Ok(out)
}
