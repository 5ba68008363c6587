//! The model's tensors, looked up by llama.cpp's names and checked against the hyper-parameters.

use crate::bert::BertWeights;
use crate::{hparams::Arch, EngineError, HParams};
use gguf::{GgmlType, Gguf, TensorInfo};
use kernels::Matrix;

/// A weight matrix of `rows` outputs by `cols` inputs, borrowed from the model file on use.
#[derive(Clone, Debug)]
pub struct Linear {
    pub info: TensorInfo,
    pub rows: usize,
    pub cols: usize,
    pub bias: Option<Vec<f32>>,
    /// The matrix in the tile kernels' layout ([`Weights::pack`]).
    packed: Option<Packed>,
}

/// Bytes from [`kernels::pack_matrix`] (shown by their size only).
#[derive(Clone)]
struct Packed(std::sync::Arc<[u8]>);

impl std::fmt::Debug for Packed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Packed({} bytes)", self.0.len())
    }
}

impl Linear {
    pub fn matrix<'a>(&'a self, g: &'a Gguf) -> Matrix<'a> {
        let m = Matrix::new(
            self.info.ty,
            self.rows,
            self.cols,
            g.tensor_data(&self.info),
        )
        .expect("shape and type were checked at load");
        match &self.packed {
            Some(p) => m
                .with_packed(&p.0)
                .expect("packed by Weights::pack for this CPU"),
            None => m,
        }
    }

    /// Packs the matrix for the tile kernels unless it is already ([`Weights::pack`]); returns
    /// the bytes added.
    fn pack(&mut self, g: &Gguf, threads: usize) -> usize {
        if self.packed.is_some() {
            return 0;
        }
        let m = Matrix::new(
            self.info.ty,
            self.rows,
            self.cols,
            g.tensor_data(&self.info),
        )
        .expect("shape and type were checked at load");
        match kernels::pack_matrix(&m, threads) {
            Some(bytes) => {
                let added = bytes.len();
                self.packed = Some(Packed(bytes.into()));
                added
            }
            None => 0,
        }
    }
}

pub struct Qkv {
    pub q: Linear,
    pub k: Linear,
    pub v: Linear,
}

pub enum Attention {
    Separate(Box<Qkv>),
    /// Phi-3: one matrix producing Q|K|V.
    Fused(Linear),
}

pub enum FeedForward {
    Gated {
        gate: Linear,
        up: Linear,
    },
    /// Phi-3: one matrix producing gate|up.
    FusedGateUp(Linear),
}

pub struct Layer {
    pub attn_norm: Vec<f32>,
    pub attn: Attention,
    pub q_norm: Option<Vec<f32>>,
    pub k_norm: Option<Vec<f32>>,
    pub out: Linear,
    pub post_attn_norm: Option<Vec<f32>>,
    pub ffn_norm: Vec<f32>,
    pub ffn: FeedForward,
    pub down: Linear,
    pub post_ffn_norm: Option<Vec<f32>>,
}

/// A model's tensors: a causal decoder's, or a BERT encoder's.
pub enum Weights {
    Decoder(Decoder),
    Bert(BertWeights),
}

/// The tensors of a causal decoder (every architecture but BERT).
pub struct Decoder {
    pub token_embd: Linear,
    pub output_norm: Vec<f32>,
    /// The LM head; `token_embd` when the model ties them.
    pub output: Linear,
    pub rope_freqs: Option<Vec<f32>>,
    pub layers: Vec<Layer>,
}

/// Looks tensors up by name, checking their shapes and types.
pub(crate) struct Loader<'a> {
    pub g: &'a Gguf,
}

impl Loader<'_> {
    fn info(&self, name: &str) -> Option<&TensorInfo> {
        self.g.tensor(name)
    }

    fn vector(&self, name: &str, len: usize) -> Result<Option<Vec<f32>>, EngineError> {
        let Some(t) = self.info(name) else {
            return Ok(None);
        };
        if t.n_elements() != len as u64 {
            return Err(EngineError::BadShape {
                name: name.to_string(),
                expected: vec![len as u64],
                got: t.dims.clone(),
            });
        }
        if !matches!(t.ty, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16) {
            return Err(EngineError::BadTensorType {
                name: name.to_string(),
                ty: t.ty,
            });
        }
        let mut out = vec![0f32; len];
        kernels::formats::dequantize_row(t.ty, self.g.tensor_data(t), &mut out)?;
        Ok(Some(out))
    }

    pub fn need_vector(&self, name: &str, len: usize) -> Result<Vec<f32>, EngineError> {
        self.vector(name, len)?
            .ok_or_else(|| EngineError::MissingTensor(name.to_string()))
    }

    fn linear_opt(
        &self,
        name: &str,
        cols: usize,
        rows: usize,
    ) -> Result<Option<Linear>, EngineError> {
        let wname = format!("{name}.weight");
        let Some(t) = self.info(&wname) else {
            return Ok(None);
        };
        if t.dims != [cols as u64, rows as u64] {
            return Err(EngineError::BadShape {
                name: wname,
                expected: vec![cols as u64, rows as u64],
                got: t.dims.clone(),
            });
        }
        // Validates the type is computable and the byte size is right.
        Matrix::new(t.ty, rows, cols, self.g.tensor_data(t))?;
        let bias = self.vector(&format!("{name}.bias"), rows)?;
        Ok(Some(Linear {
            info: t.clone(),
            rows,
            cols,
            bias,
            packed: None,
        }))
    }

    pub fn linear(&self, name: &str, cols: usize, rows: usize) -> Result<Linear, EngineError> {
        self.linear_opt(name, cols, rows)?
            .ok_or_else(|| EngineError::MissingTensor(format!("{name}.weight")))
    }

    /// `{name}.weight` as a table of rows of `cols` values, however many rows it has (at least
    /// one): embeddings looked up by row.
    pub fn table(&self, name: &str, cols: usize) -> Result<Linear, EngineError> {
        let wname = format!("{name}.weight");
        let t = self
            .info(&wname)
            .ok_or_else(|| EngineError::MissingTensor(wname.clone()))?;
        match t.dims[..] {
            [c, rows] if c == cols as u64 && rows >= 1 => self.linear(name, cols, rows as usize),
            _ => Err(EngineError::BadShape {
                name: wname,
                expected: vec![cols as u64, 1],
                got: t.dims.clone(),
            }),
        }
    }
}

/// The bytes [`Weights::pack`] adds for the model in `g` (the tensors are looked up by name,
/// before the model is loaded, for a memory budget).
pub fn packed_weight_bytes(g: &Gguf) -> u64 {
    let tied = g.tensor("output.weight").is_none();
    // An encoder packs only its layers' matrices: its embedding tables are only looked up.
    let encoder = g.get("general.architecture").and_then(gguf::Value::as_str) == Some("bert");
    g.tensors()
        .iter()
        .filter(|t| t.name.ends_with(".weight") && t.dims.len() == 2)
        .filter(|t| !encoder || t.name.starts_with("blk."))
        .filter(|t| tied || t.name != "token_embd.weight")
        .filter_map(|t| {
            let (cols, rows) = (t.dims[0] as usize, t.dims[1] as usize);
            let m = Matrix::new(t.ty, rows, cols, g.tensor_data(t)).ok()?;
            Some(kernels::packed_size(&m) as u64)
        })
        .sum()
}

impl Weights {
    /// Packs every matrix the tile kernels read (all but the embedding tables, which are only
    /// looked up) ahead of time on `threads` threads, so that batches skip packing them on each
    /// call: several sequences decoding together run about three times as fast, for about the
    /// memory of the packed matrices again (about 1.06 bytes a weight for the 32-element types,
    /// 1.27 for Q6_K). Returns the bytes added.
    pub fn pack(&mut self, g: &Gguf, threads: usize) -> usize {
        let all = match self {
            Weights::Decoder(d) => d.matrices(),
            Weights::Bert(b) => b.matrices(),
        };
        all.into_iter().map(|l| l.pack(g, threads)).sum()
    }

    /// The tensors of the model in `g`, whose vocabulary has `n_vocab` tokens.
    pub fn load(g: &Gguf, hp: &HParams, n_vocab: usize) -> Result<Weights, EngineError> {
        Ok(if hp.arch.is_encoder() {
            Weights::Bert(BertWeights::load(&Loader { g }, hp, n_vocab)?)
        } else {
            Weights::Decoder(Decoder::load(g, hp, n_vocab)?)
        })
    }
}

impl Decoder {
    /// Every matrix a forward pass multiplies by.
    fn matrices(&mut self) -> Vec<&mut Linear> {
        let mut all: Vec<&mut Linear> = vec![&mut self.output];
        for layer in &mut self.layers {
            match &mut layer.attn {
                Attention::Separate(qkv) => all.extend([&mut qkv.q, &mut qkv.k, &mut qkv.v]),
                Attention::Fused(m) => all.push(m),
            }
            match &mut layer.ffn {
                FeedForward::Gated { gate, up } => all.extend([gate, up]),
                FeedForward::FusedGateUp(m) => all.push(m),
            }
            all.extend([&mut layer.out, &mut layer.down]);
        }
        all
    }

    fn load(g: &Gguf, hp: &HParams, n_vocab: usize) -> Result<Decoder, EngineError> {
        let l = Loader { g };
        let d = hp.n_embd;
        let q_dim = hp.n_head * hp.head_dim;
        let kv_dim = hp.n_head_kv * hp.head_dim;
        let token_embd = l.linear("token_embd", d, n_vocab)?;
        let output = match l.linear_opt("output", d, n_vocab)? {
            Some(o) => o,
            None => token_embd.clone(),
        };
        let output_norm = l.need_vector("output_norm.weight", d)?;
        let rope_freqs = l.vector("rope_freqs.weight", hp.n_rot / 2)?;
        let mut layers = Vec::with_capacity(hp.n_layer);
        for i in 0..hp.n_layer {
            let p = |s: &str| format!("blk.{i}.{s}");
            let attn = match l.linear_opt(&p("attn_qkv"), d, q_dim + 2 * kv_dim)? {
                Some(f) => Attention::Fused(f),
                None => Attention::Separate(Box::new(Qkv {
                    q: l.linear(&p("attn_q"), d, q_dim)?,
                    k: l.linear(&p("attn_k"), d, kv_dim)?,
                    v: l.linear(&p("attn_v"), d, kv_dim)?,
                })),
            };
            let ffn = if hp.arch == Arch::Phi3 {
                FeedForward::FusedGateUp(l.linear(&p("ffn_up"), d, 2 * hp.n_ff)?)
            } else {
                FeedForward::Gated {
                    gate: l.linear(&p("ffn_gate"), d, hp.n_ff)?,
                    up: l.linear(&p("ffn_up"), d, hp.n_ff)?,
                }
            };
            let per_head_norms = matches!(hp.arch, Arch::Qwen3 | Arch::Gemma3);
            let sandwich = hp.arch == Arch::Gemma3;
            let opt_norm = |name: &str, len: usize, required: bool| {
                if required {
                    l.need_vector(&p(name), len).map(Some)
                } else {
                    Ok(None)
                }
            };
            layers.push(Layer {
                attn_norm: l.need_vector(&p("attn_norm.weight"), d)?,
                attn,
                q_norm: opt_norm("attn_q_norm.weight", hp.head_dim, per_head_norms)?,
                k_norm: opt_norm("attn_k_norm.weight", hp.head_dim, per_head_norms)?,
                out: l.linear(&p("attn_output"), q_dim, d)?,
                post_attn_norm: opt_norm("post_attention_norm.weight", d, sandwich)?,
                ffn_norm: l.need_vector(&p("ffn_norm.weight"), d)?,
                ffn,
                down: l.linear(&p("ffn_down"), hp.n_ff, d)?,
                post_ffn_norm: opt_norm("post_ffw_norm.weight", d, sandwich)?,
            });
        }
        Ok(Decoder {
            token_embd,
            output_norm,
            output,
            rope_freqs,
            layers,
        })
    }
}
