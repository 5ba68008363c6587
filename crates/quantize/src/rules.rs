//! Which type each tensor gets: llama.cpp's `llama_tensor_get_type` (src/llama-quant.cpp) for
//! the four targets, without an importance matrix and without user overrides. The rules are
//! listed in the crate documentation.

use std::cmp::Ordering;

use gguf::{GgmlType, Gguf, TensorInfo};

use crate::{QuantizeError, Target};

/// Tensor types a model may hold to be re-quantized.
const ACCEPTED: [GgmlType; 4] = [GgmlType::F32, GgmlType::F16, GgmlType::BF16, GgmlType::Q8_0];

/// Name fragments of 2-D weights llama.cpp never quantizes: norms, MoE routers, Gemma 3n's tiny
/// altup/laurel and per-layer projections, Mamba/LFM convolutions, RWKV's small mixing weights
/// and T5's relative position bias.
const NEVER_QUANTIZED: &[&str] = &[
    "_norm.weight",
    "ffn_gate_inp.weight",
    "altup",
    "laurel",
    "per_layer_model_proj",
    "ssm_conv1d.weight",
    "shortconv.conv.weight",
    "time_mix_first.weight",
    "time_mix_w0.weight",
    "time_mix_w1.weight",
    "time_mix_w2.weight",
    "time_mix_v0.weight",
    "time_mix_v1.weight",
    "time_mix_v2.weight",
    "time_mix_a0.weight",
    "time_mix_a1.weight",
    "time_mix_a2.weight",
    "time_mix_g1.weight",
    "time_mix_g2.weight",
    "time_mix_decay_w1.weight",
    "time_mix_decay_w2.weight",
    "time_mix_lerp_fused.weight",
    "attn_rel_b.weight",
];

/// What happens to one tensor: copied unchanged when `from == to`, otherwise dequantized from
/// `from` and quantized to `to`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorPlan {
    /// The tensor's name, e.g. `blk.0.attn_v.weight`.
    pub name: String,
    /// Its shape, `ne[0]` (the row length) first.
    pub dims: Vec<u64>,
    /// Its type in the source file.
    pub from: GgmlType,
    /// Its type in the output file.
    pub to: GgmlType,
}

impl TensorPlan {
    /// The number of elements (1 for a 0-dimensional tensor).
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }

    /// Bytes of the tensor's data in the output file.
    pub fn out_bytes(&self) -> u64 {
        self.to
            .bytes_for(self.n_elements())
            .expect("planned types always hold whole rows")
    }
}

/// Decides the output type of every tensor of `model` (in file order) for `target`, checking
/// everything that could make quantization fail before a byte is written.
pub fn plan(model: &Gguf, target: Target) -> Result<Vec<TensorPlan>, QuantizeError> {
    if let Some(t) = model.tensors().iter().find(|t| !ACCEPTED.contains(&t.ty)) {
        return Err(QuantizeError::UnsupportedInput {
            tensor: t.name.clone(),
            ty: t.ty,
        });
    }
    if let Some(count) = model.get_u64("split.count").filter(|&n| n > 1) {
        return Err(QuantizeError::SplitModel { count });
    }
    let facts = Facts::read(model)?;
    let tensors = model.tensors();
    // llama.cpp visits tensors by layer, then by name, and its attn_v/ffn_down counters follow
    // that order; the output keeps the file's order.
    let mut order: Vec<usize> = (0..tensors.len()).collect();
    order.sort_by(|&a, &b| llama_order(&tensors[a].name, &tensors[b].name));
    let mut counters = Counters::default();
    let mut types = vec![None; tensors.len()];
    for i in order {
        let t = &tensors[i];
        types[i] = Some(if is_quantized(t) {
            tensor_type(t, target, &facts, &mut counters)?
        } else {
            t.ty
        });
    }
    Ok(tensors
        .iter()
        .zip(types)
        .map(|(t, to)| TensorPlan {
            name: t.name.clone(),
            dims: t.dims.clone(),
            from: t.ty,
            to: to.expect("every index was visited"),
        })
        .collect())
}

/// The model-wide facts the rules read.
struct Facts {
    falcon: bool,
    /// `{arch}.block_count`.
    n_layer: u64,
    /// `{arch}.expert_count`, at least 1.
    n_expert: u64,
    /// Whether the model has its own `output.weight` (else the embeddings are tied and
    /// `token_embd.weight` takes the output matrix's rule).
    has_output: bool,
    /// Tensors named `attn_v.weight`, `attn_qkv.weight` or `attn_kv_b.weight`.
    n_attention_wv: u64,
    /// llama.cpp's `LLM_TYPE_70B`: 80-layer llama with grouped-query attention, or 80-layer qwen2.
    is_70b: bool,
}

impl Facts {
    fn read(model: &Gguf) -> Result<Facts, QuantizeError> {
        let missing = |key: &str| QuantizeError::MissingMetadata {
            key: key.to_owned(),
        };
        let arch = model
            .architecture()
            .ok_or_else(|| missing("general.architecture"))?;
        let key = |k: &str| format!("{arch}.{k}");
        let n_layer = model
            .get_u64(&key("block_count"))
            .ok_or_else(|| missing(&key("block_count")))?;
        let n_expert = model.get_u64(&key("expert_count")).unwrap_or(0);
        let heads = model.get_u64(&key("attention.head_count"));
        let kv_heads = model.get_u64(&key("attention.head_count_kv")).or(heads);
        let is_70b = n_layer == 80
            && match arch {
                "llama" => n_expert != 8 && heads != kv_heads,
                "qwen2" => true,
                _ => false,
            };
        let names = || model.tensors().iter().map(|t| t.name.as_str());
        Ok(Facts {
            falcon: arch == "falcon",
            n_layer,
            n_expert: n_expert.max(1),
            has_output: names().any(|n| n == "output.weight"),
            n_attention_wv: names()
                .filter(|n| {
                    ["attn_v.weight", "attn_qkv.weight", "attn_kv_b.weight"]
                        .iter()
                        .any(|p| n.contains(p))
                })
                .count() as u64,
            is_70b,
        })
    }

    /// The layer of an `ffn_down` tensor: its rank among them for a dense model (llama.cpp's
    /// counter), the `N` of `blk.N.` for a mixture of experts, whose expert tensors are not one
    /// per layer in order.
    fn layer_of(&self, t: &TensorInfo, rank: u64) -> Result<u64, QuantizeError> {
        if self.n_expert == 1 {
            return Ok(rank);
        }
        block_index(&t.name)
            .filter(|&l| l < self.n_layer)
            .ok_or_else(|| QuantizeError::BadLayer {
                tensor: t.name.clone(),
                n_layer: self.n_layer,
            })
    }
}

/// How many `attn_v` and `ffn_down` tensors the rules have seen so far.
#[derive(Default)]
struct Counters {
    attn_v: u64,
    ffn_down: u64,
}

/// The `N` of a name starting `blk.N`.
fn block_index(name: &str) -> Option<u64> {
    let rest = name.strip_prefix("blk.")?;
    let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    rest[..digits].parse().ok()
}

/// llama.cpp's `weight_name_comparer`: tensors outside the blocks first, then by block, then by
/// name.
fn llama_order(a: &str, b: &str) -> Ordering {
    let layer = |n: &str| block_index(n).map_or(-1, |l| l as i128);
    layer(a).cmp(&layer(b)).then_with(|| a.cmp(b))
}

/// ggml's `ggml_n_dims`: trailing dimensions of 1 do not count, and there is at least one.
fn n_dims(dims: &[u64]) -> usize {
    dims.iter().rposition(|&d| d != 1).map_or(1, |i| i + 1)
}

/// Whether llama.cpp quantizes this tensor at all: weight matrices (2-D, or 3-D expert stacks)
/// other than the exceptions in [`NEVER_QUANTIZED`] and BERT's position and token-type embeddings.
fn is_quantized(t: &TensorInfo) -> bool {
    let name = t.name.as_str();
    name.ends_with("weight")
        && n_dims(&t.dims) >= 2
        && !NEVER_QUANTIZED.iter().any(|p| name.contains(p))
        && name != "position_embd.weight"
        && name != "token_types.weight"
}

/// llama.cpp's `use_more_bits`: the first and last eighth of the layers, and every third layer
/// in between.
fn use_more_bits(i_layer: u64, n_layers: u64) -> bool {
    let (i, n) = (i_layer as i128, n_layers as i128);
    i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2
}

/// The type of one quantized tensor: the target's base type, raised for the tensors that matter
/// most, then replaced by a fallback when the row length is not a whole number of blocks.
fn tensor_type(
    t: &TensorInfo,
    target: Target,
    facts: &Facts,
    counters: &mut Counters,
) -> Result<GgmlType, QuantizeError> {
    use GgmlType::*;
    let name = t.name.as_str();
    let ne0 = t.shape()[0];
    let whole_blocks = |ty: GgmlType| ne0 % ty.block_size() as u64 == 0;
    let k_mix = matches!(target, Target::Q4_K_M | Target::Q5_K_M);
    let mut ty = target.base_type();

    if name == "output.weight" || (!facts.has_output && name == "token_embd.weight") {
        if facts.falcon || !whole_blocks(ty) {
            ty = Q8_0;
        } else if ty != Q8_0 {
            ty = Q6_K;
        }
    } else if name == "token_embd.weight" || name == "per_layer_token_embd.weight" {
        // The embeddings keep the base type for these targets.
    } else if name.contains("attn_v.weight") {
        if k_mix && use_more_bits(counters.attn_v, facts.n_attention_wv) {
            ty = Q6_K;
        }
        // A 70B model shares each attn_v among 8 heads, so it is small: more bits cost little.
        if facts.is_70b && ty == Q4_K {
            ty = Q5_K;
        }
        if facts.n_expert == 8 {
            ty = Q8_0;
        }
        counters.attn_v += 1;
    } else if name.contains("attn_k.weight") {
        if facts.n_expert == 8 {
            ty = Q8_0;
        }
    } else if name.contains("ffn_down") {
        let layer = facts.layer_of(t, counters.ffn_down)?;
        let more = use_more_bits(layer, facts.n_layer);
        match target {
            Target::Q4_K_M if facts.falcon => {
                ty = if layer < facts.n_layer / 16 {
                    Q6_K
                } else if more {
                    Q5_K
                } else {
                    Q4_K
                };
            }
            Target::Q4_K_M | Target::Q5_K_M if more => ty = Q6_K,
            _ => {}
        }
        counters.ffn_down += 1;
    } else if name.contains("attn_output.weight") {
        if !facts.falcon && facts.n_expert == 8 && target == Target::Q4_K_M {
            ty = Q5_K;
        }
    } else if name.contains("attn_qkv.weight") {
        match target {
            Target::Q4_K_M => ty = Q5_K,
            Target::Q5_K_M => ty = Q6_K,
            _ => {}
        }
    }

    if !whole_blocks(ty) {
        let fallback = match ty {
            Q4_K => Q5_0,
            Q5_K => Q5_1,
            Q6_K => Q8_0,
            _ => {
                return Err(QuantizeError::RowNotWholeBlocks {
                    tensor: t.name.clone(),
                    ty,
                    ne0,
                    block: ty.block_size(),
                    target,
                })
            }
        };
        ty = if whole_blocks(fallback) {
            fallback
        } else {
            F16
        };
    }
    Ok(ty)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn use_more_bits_matches_llama_cpp() {
        let picked = |n| (0..n).filter(|&i| use_more_bits(i, n)).collect::<Vec<_>>();
        assert_eq!(picked(2), [1]);
        assert_eq!(picked(16), [0, 1, 4, 7, 10, 13, 14, 15]);
        assert_eq!(
            picked(32),
            [0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31]
        );
    }

    #[test]
    fn llama_order_puts_global_tensors_first_then_layers_numerically() {
        let mut names = [
            "blk.10.attn_v.weight",
            "blk.2.ffn_down.weight",
            "output.weight",
            "blk.2.attn_v.weight",
            "token_embd.weight",
        ];
        names.sort_by(|a, b| llama_order(a, b));
        assert_eq!(
            names,
            [
                "output.weight",
                "token_embd.weight",
                "blk.2.attn_v.weight",
                "blk.2.ffn_down.weight",
                "blk.10.attn_v.weight",
            ]
        );
    }

    #[test]
    fn n_dims_ignores_trailing_ones() {
        assert_eq!(n_dims(&[]), 1);
        assert_eq!(n_dims(&[4096]), 1);
        assert_eq!(n_dims(&[4096, 1]), 1);
        assert_eq!(n_dims(&[4096, 2]), 2);
        assert_eq!(n_dims(&[64, 1, 8]), 3);
    }

    #[test]
    fn block_index_reads_the_layer_number() {
        assert_eq!(block_index("blk.17.ffn_down_exps.weight"), Some(17));
        assert_eq!(block_index("output.weight"), None);
        assert_eq!(block_index("blk.x.attn_v.weight"), None);
    }
}
