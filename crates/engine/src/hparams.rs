//! Model hyper-parameters read from GGUF metadata (`<arch>.block_count` and friends).

use crate::EngineError;
use gguf::{Gguf, Value};

/// The model architectures the engine can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    /// Llama 2/3, Mistral, SmolLM2: RMSNorm, SwiGLU, RoPE on adjacent pairs.
    Llama,
    /// Qwen2/2.5: Llama plus Q/K/V biases and NeoX RoPE.
    Qwen2,
    /// Qwen3: per-head RMSNorm on Q and K, NeoX RoPE.
    Qwen3,
    /// Gemma 3: scaled embeddings, sandwich norms, GELU, sliding-window layers.
    Gemma3,
    /// Phi-3: fused QKV and gate/up projections, NeoX RoPE.
    Phi3,
    /// BERT (all-MiniLM, bge, ...): an encoder for embeddings; learned positions, post-LayerNorm,
    /// every token attending to every other, GELU. It cannot generate text.
    Bert,
}

impl Arch {
    pub fn from_name(name: &str) -> Result<Arch, EngineError> {
        Ok(match name {
            "llama" => Arch::Llama,
            "qwen2" => Arch::Qwen2,
            "qwen3" => Arch::Qwen3,
            "gemma3" => Arch::Gemma3,
            "phi3" => Arch::Phi3,
            "bert" => Arch::Bert,
            other => return Err(EngineError::UnsupportedArchitecture(other.to_string())),
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Qwen2 => "qwen2",
            Arch::Qwen3 => "qwen3",
            Arch::Gemma3 => "gemma3",
            Arch::Phi3 => "phi3",
            Arch::Bert => "bert",
        }
    }

    /// Whether this is an encoder, which computes embeddings ([`crate::Model::embed`]) but has
    /// no language-model head: it cannot generate text and keeps no KV cache.
    pub fn is_encoder(self) -> bool {
        self == Arch::Bert
    }

    /// NeoX RoPE rotates (x[i], x[i + n_rot/2]); the others rotate adjacent pairs (the converter
    /// permuted Llama's Q/K rows so that adjacent pairs are right for it).
    pub fn rope_neox(self) -> bool {
        !matches!(self, Arch::Llama)
    }
}

/// Hyper-parameters of one model.
#[derive(Clone, Debug)]
pub struct HParams {
    pub arch: Arch,
    pub n_layer: usize,
    pub n_embd: usize,
    pub n_ff: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    pub n_rot: usize,
    pub rms_eps: f32,
    pub rope_base: f32,
    /// RoPE base of sliding-window layers (Gemma 3).
    pub rope_base_swa: f32,
    /// Linear RoPE scaling: positions are multiplied by this.
    pub rope_freq_scale: f32,
    pub n_ctx_train: usize,
    /// Sliding-window size, 0 when every layer attends to the whole context.
    pub n_swa: usize,
    /// Which layers use the sliding window.
    pub swa_layers: Vec<bool>,
    /// Multiplier applied to Q before attention.
    pub attn_scale: f32,
    pub final_logit_softcap: Option<f32>,
    /// LayerNorm epsilon of an encoder (`<arch>.attention.layer_norm_epsilon`; BERT's 1e-12 when
    /// absent).
    pub norm_eps: f32,
    /// How an encoder's token states become one embedding (`<arch>.pooling_type`).
    pub pooling: Pooling,
}

/// How [`crate::Model::embed`] pools an encoder's final token states (llama.cpp's
/// `pooling_type`); a decoder's embedding is always their mean, as Ollama's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pooling {
    /// The mean over every token.
    Mean,
    /// The first token's state (`[CLS]`).
    Cls,
    /// The last token's state.
    Last,
}

impl Pooling {
    /// llama.cpp's `pooling_type` number: 1 mean, 2 cls, 3 last. 0 ("none": llama.cpp returns
    /// every token's state) and an absent key give the mean, since an embedding here is one vector.
    fn from_gguf(g: &Gguf, k: &str) -> Result<Pooling, EngineError> {
        match get_u64(g, k)? {
            None | Some(0 | 1) => Ok(Pooling::Mean),
            Some(2) => Ok(Pooling::Cls),
            Some(3) => Ok(Pooling::Last),
            Some(_) => Err(EngineError::BadMetadata {
                key: k.to_string(),
                expected: "a pooling type of 0 (none), 1 (mean), 2 (cls) or 3 (last)",
            }),
        }
    }
}

fn key(arch: &str, k: &str) -> String {
    format!("{arch}.{k}")
}

fn get_u64(g: &Gguf, k: &str) -> Result<Option<u64>, EngineError> {
    match g.get(k) {
        None => Ok(None),
        // A per-layer array with one value per layer: the engine needs them equal.
        Some(Value::Array(a)) => {
            let first = a.first().and_then(Value::as_u64);
            if first.is_some() && a.iter().all(|v| v.as_u64() == first) {
                Ok(first)
            } else {
                Err(EngineError::BadMetadata {
                    key: k.to_string(),
                    expected:
                        "an unsigned integer (per-layer values that differ are not supported)",
                })
            }
        }
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| EngineError::BadMetadata {
                key: k.to_string(),
                expected: "an unsigned integer",
            }),
    }
}

fn need_u64(g: &Gguf, k: &str) -> Result<u64, EngineError> {
    get_u64(g, k)?.ok_or_else(|| EngineError::BadMetadata {
        key: k.to_string(),
        expected: "an unsigned integer",
    })
}

fn get_f32(g: &Gguf, k: &str) -> Result<Option<f32>, EngineError> {
    match g.get(k) {
        None => Ok(None),
        Some(v) => v
            .as_f32()
            .map(Some)
            .ok_or_else(|| EngineError::BadMetadata {
                key: k.to_string(),
                expected: "a number",
            }),
    }
}

/// Upper bound on any single dimension, so that a hostile file cannot ask for absurd buffers.
const MAX_DIM: u64 = 1 << 20;

fn dim(k: &str, v: u64) -> Result<usize, EngineError> {
    if v == 0 || v > MAX_DIM {
        return Err(EngineError::BadMetadata {
            key: k.to_string(),
            expected: "a value between 1 and 1048576",
        });
    }
    Ok(v as usize)
}

impl HParams {
    pub fn from_gguf(g: &Gguf) -> Result<HParams, EngineError> {
        let arch_name = g
            .get("general.architecture")
            .and_then(Value::as_str)
            .ok_or(EngineError::MissingArchitecture)?;
        let arch = Arch::from_name(arch_name)?;
        let a = arch_name;
        let u = |k: &str| -> Result<usize, EngineError> {
            let kk = key(a, k);
            dim(&kk, need_u64(g, &kk)?)
        };
        let n_layer = u("block_count")?;
        let n_embd = u("embedding_length")?;
        let n_ff = u("feed_forward_length")?;
        let n_head = u("attention.head_count")?;
        let n_head_kv = match get_u64(g, &key(a, "attention.head_count_kv"))? {
            Some(v) => dim("head_count_kv", v)?,
            None => n_head,
        };
        if n_head % n_head_kv != 0 {
            return Err(EngineError::BadMetadata {
                key: key(a, "attention.head_count_kv"),
                expected: "a divisor of attention.head_count",
            });
        }
        let head_dim = match get_u64(g, &key(a, "attention.key_length"))? {
            Some(v) => dim("key_length", v)?,
            None => n_embd / n_head,
        };
        if let Some(v) = get_u64(g, &key(a, "attention.value_length"))? {
            if v as usize != head_dim {
                return Err(EngineError::BadMetadata {
                    key: key(a, "attention.value_length"),
                    expected: "the same value as attention.key_length",
                });
            }
        }
        let n_rot = match get_u64(g, &key(a, "rope.dimension_count"))? {
            Some(v) => dim("rope.dimension_count", v)?,
            None => head_dim,
        };
        if n_rot > head_dim || n_rot % 2 != 0 || head_dim % 2 != 0 {
            return Err(EngineError::BadMetadata {
                key: key(a, "rope.dimension_count"),
                expected: "an even number no larger than the head size",
            });
        }
        let rms_eps = get_f32(g, &key(a, "attention.layer_norm_rms_epsilon"))?.unwrap_or(1e-5);
        let rope_base = get_f32(g, &key(a, "rope.freq_base"))?.unwrap_or(10000.0);
        let rope_base_swa = get_f32(g, &key(a, "rope.freq_base_swa"))?.unwrap_or(10000.0);
        let scaling_type = g
            .get(&key(a, "rope.scaling.type"))
            .and_then(Value::as_str)
            .unwrap_or("none");
        let factor = get_f32(g, &key(a, "rope.scaling.factor"))?
            .or(get_f32(g, &key(a, "rope.scale_linear"))?);
        let rope_freq_scale =
            match (scaling_type, factor) {
                ("none", None) | (_, None) => 1.0,
                ("linear", Some(f)) | ("none", Some(f)) if f > 0.0 => 1.0 / f,
                ("linear" | "none", Some(_)) => 1.0,
                (other, Some(_)) => return Err(EngineError::BadMetadata {
                    key: format!("{a}.rope.scaling.type = {other}"),
                    expected:
                        "`none` or `linear` RoPE scaling (YaRN and LongRoPE are not supported yet)",
                }),
            };
        let n_ctx_train = get_u64(g, &key(a, "context_length"))?.unwrap_or(4096) as usize;

        let mut n_swa = 0;
        let mut swa_layers = vec![false; n_layer];
        if arch == Arch::Gemma3 {
            n_swa = get_u64(g, &key(a, "attention.sliding_window"))?.unwrap_or(0) as usize;
            if n_swa > 0 {
                match g.get(&key(a, "attention.sliding_window_pattern")) {
                    Some(Value::Array(pat)) => {
                        for (il, v) in pat.iter().enumerate().take(n_layer) {
                            swa_layers[il] = v.as_bool().unwrap_or(false);
                        }
                    }
                    other => {
                        // Every `period`-th layer is global, the others use the window.
                        let period = other.and_then(Value::as_u64).unwrap_or(6).max(1) as usize;
                        for (il, s) in swa_layers.iter_mut().enumerate() {
                            *s = il % period < period - 1;
                        }
                    }
                }
            }
        }
        let attn_scale =
            get_f32(g, &key(a, "attention.scale"))?.unwrap_or(1.0 / (head_dim as f32).sqrt());
        let final_logit_softcap = get_f32(g, &key(a, "final_logit_softcapping"))?;
        let norm_eps = get_f32(g, &key(a, "attention.layer_norm_epsilon"))?.unwrap_or(1e-12);
        let pooling = if arch.is_encoder() {
            Pooling::from_gguf(g, &key(a, "pooling_type"))?
        } else {
            Pooling::Mean
        };
        Ok(HParams {
            arch,
            n_layer,
            n_embd,
            n_ff,
            n_head,
            n_head_kv,
            head_dim,
            n_rot,
            rms_eps,
            rope_base,
            rope_base_swa,
            rope_freq_scale,
            n_ctx_train,
            n_swa,
            swa_layers,
            attn_scale,
            final_logit_softcap,
            norm_eps,
            pooling,
        })
    }
}
