//! BERT, the encoder behind sentence-embedding models (all-MiniLM, bge, ...), from a GGUF with
//! llama.cpp's tensor names.
//!
//! Post-LayerNorm: each token's embedding plus its learned position's and token type 0's,
//! LayerNorm; then per layer multi-head attention in which every token sees every other (no mask,
//! no RoPE, no KV cache), `x = LayerNorm(x + attention)`, a feed-forward block with the exact
//! (erf) GELU, `x = LayerNorm(x + ffn)`. [`Model::embed`] pools the final states as the file's
//! `pooling_type` says ([`Pooling`]: the mean, unless it names `[CLS]` or the last token) and scales
//! the result to unit length. The matrices run on the kernels crate's matmul, so F32, F16 and
//! quantized (Q8_0, ...) files alike work.

use crate::hparams::Pooling;
use crate::model::unit_length;
use crate::ops::{gelu_erf, layer_norm};
use crate::weights::{Linear, Loader};
use crate::{EngineError, HParams, Model};

/// A LayerNorm's scale and shift.
pub struct Norm {
    weight: Vec<f32>,
    bias: Vec<f32>,
}

impl Norm {
    fn load(l: &Loader, name: &str, len: usize) -> Result<Norm, EngineError> {
        Ok(Norm {
            weight: l.need_vector(&format!("{name}.weight"), len)?,
            bias: l.need_vector(&format!("{name}.bias"), len)?,
        })
    }
}

/// One encoder layer.
pub struct BertLayer {
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
    attn_norm: Norm,
    up: Linear,
    down: Linear,
    out_norm: Norm,
}

/// The tensors of a BERT model.
pub struct BertWeights {
    token_embd: Linear,
    /// One learned row per position: its row count is the longest input.
    position_embd: Linear,
    /// One row per token type; inputs are a single segment, type 0.
    token_types: Linear,
    embd_norm: Norm,
    layers: Vec<BertLayer>,
}

/// A matrix with its bias, which BERT always has.
fn dense(l: &Loader, name: &str, cols: usize, rows: usize) -> Result<Linear, EngineError> {
    let m = l.linear(name, cols, rows)?;
    if m.bias.is_none() {
        return Err(EngineError::MissingTensor(format!("{name}.bias")));
    }
    Ok(m)
}

impl BertWeights {
    /// The tensors of a BERT model whose vocabulary has `n_vocab` tokens.
    pub(crate) fn load(
        l: &Loader,
        hp: &HParams,
        n_vocab: usize,
    ) -> Result<BertWeights, EngineError> {
        let d = hp.n_embd;
        let (q_dim, kv_dim) = (hp.n_head * hp.head_dim, hp.n_head_kv * hp.head_dim);
        let layers = (0..hp.n_layer)
            .map(|i| {
                let p = |s: &str| format!("blk.{i}.{s}");
                Ok(BertLayer {
                    q: dense(l, &p("attn_q"), d, q_dim)?,
                    k: dense(l, &p("attn_k"), d, kv_dim)?,
                    v: dense(l, &p("attn_v"), d, kv_dim)?,
                    out: dense(l, &p("attn_output"), q_dim, d)?,
                    attn_norm: Norm::load(l, &p("attn_output_norm"), d)?,
                    up: dense(l, &p("ffn_up"), d, hp.n_ff)?,
                    down: dense(l, &p("ffn_down"), hp.n_ff, d)?,
                    out_norm: Norm::load(l, &p("layer_output_norm"), d)?,
                })
            })
            .collect::<Result<_, EngineError>>()?;
        Ok(BertWeights {
            token_embd: l.linear("token_embd", d, n_vocab)?,
            position_embd: l.table("position_embd", d)?,
            token_types: l.table("token_types", d)?,
            embd_norm: Norm::load(l, "token_embd_norm", d)?,
            layers,
        })
    }

    /// Every matrix the forward pass multiplies by (not the embedding tables, only looked up).
    pub(crate) fn matrices(&mut self) -> Vec<&mut Linear> {
        self.layers
            .iter_mut()
            .flat_map(|l| {
                [
                    &mut l.q,
                    &mut l.k,
                    &mut l.v,
                    &mut l.out,
                    &mut l.up,
                    &mut l.down,
                ]
            })
            .collect()
    }
}

impl Model {
    /// The unit-length embeddings of `seqs` (none empty) by the BERT weights `w`, run together:
    /// one pass over the weights for all of them, each token attending only to its own sequence.
    pub(crate) fn bert_embed(
        &self,
        w: &BertWeights,
        seqs: &[&[u32]],
    ) -> Result<Vec<Vec<f32>>, EngineError> {
        let d = self.hparams.n_embd;
        let states = self.bert_states(w, seqs)?;
        let mut out = Vec::with_capacity(seqs.len());
        let mut at = 0;
        for seq in seqs {
            let rows = &states[at * d..(at + seq.len()) * d];
            at += seq.len();
            let pooled: Vec<f64> = match self.hparams.pooling {
                Pooling::Mean => rows.chunks_exact(d).fold(vec![0f64; d], |mut sum, row| {
                    sum.iter_mut().zip(row).for_each(|(s, &v)| *s += v as f64);
                    sum
                }),
                Pooling::Cls => rows[..d].iter().map(|&v| v as f64).collect(),
                Pooling::Last => rows[rows.len() - d..].iter().map(|&v| v as f64).collect(),
            };
            out.push(unit_length(&pooled));
        }
        Ok(out)
    }

    /// The final state of every token of `seqs` (one after another), `n_embd` values each.
    fn bert_states(&self, w: &BertWeights, seqs: &[&[u32]]) -> Result<Vec<f32>, EngineError> {
        let hp = &self.hparams;
        let max = w.position_embd.rows;
        if let Some(long) = seqs.iter().find(|s| s.len() > max) {
            return Err(EngineError::TooLongToEmbed {
                tokens: long.len(),
                max,
                over: long.len() - max,
            });
        }
        let g = &self.gguf;
        let embd = w.token_embd.matrix(g);
        if let Some(&id) = seqs
            .iter()
            .flat_map(|s| s.iter())
            .find(|&&t| t as usize >= embd.rows)
        {
            return Err(EngineError::BadToken {
                id,
                vocab: embd.rows,
            });
        }
        // Each token's sequence: its first token's index and its length.
        let mut spans = Vec::new();
        let mut tokens = Vec::new();
        for s in seqs {
            let start = tokens.len();
            spans.extend(std::iter::repeat_n((start, s.len()), s.len()));
            tokens.extend_from_slice(s);
        }
        let n = tokens.len();
        let d = hp.n_embd;
        let eps = hp.norm_eps;
        let (positions, types) = (w.position_embd.matrix(g), w.token_types.matrix(g));
        let mut type0 = vec![0f32; d];
        types.dequantize_row(0, &mut type0);
        let mut x = vec![0f32; n * d];
        let (tokens, spans) = (&tokens, &spans);
        self.for_rows(&mut x, d, &|t0, rows| {
            let mut pos = vec![0f32; d];
            for (t, row) in rows.chunks_exact_mut(d).enumerate() {
                let i = t0 + t;
                embd.dequantize_row(tokens[i] as usize, row);
                positions.dequantize_row(i - spans[i].0, &mut pos);
                for ((v, p), ty) in row.iter_mut().zip(&pos).zip(&type0) {
                    *v += p + ty;
                }
            }
            layer_norm(rows, &w.embd_norm.weight, &w.embd_norm.bias, eps);
        });

        let (hd, nh, nkv) = (hp.head_dim, hp.n_head, hp.n_head_kv);
        let (q_dim, kv_dim) = (nh * hd, nkv * hd);
        let (mut q, mut k, mut v) = (Vec::new(), Vec::new(), Vec::new());
        let (mut proj, mut up) = (Vec::new(), Vec::new());
        let mut attn = vec![0f32; n * q_dim];
        let longest = seqs.iter().map(|s| s.len()).max().unwrap_or(0);
        for layer in &w.layers {
            self.matmuls(
                [&layer.q, &layer.k, &layer.v],
                &x,
                n,
                n,
                [&mut q, &mut k, &mut v],
            );
            let (q, k, v) = (&q, &k, &v);
            self.for_rows(&mut attn, q_dim, &|t0, rows| {
                let mut scores = vec![0f32; longest];
                for (t, out) in rows.chunks_exact_mut(q_dim).enumerate() {
                    let (start, len) = spans[t0 + t];
                    let query = &q[(t0 + t) * q_dim..][..q_dim];
                    let keys = &k[start * kv_dim..(start + len) * kv_dim];
                    let values = &v[start * kv_dim..(start + len) * kv_dim];
                    for (h, out) in out.chunks_exact_mut(hd).enumerate() {
                        let kv_at = h / (nh / nkv) * hd;
                        attend(
                            &query[h * hd..][..hd],
                            keys.chunks_exact(kv_dim).map(|r| &r[kv_at..][..hd]),
                            values.chunks_exact(kv_dim).map(|r| &r[kv_at..][..hd]),
                            hp.attn_scale,
                            &mut scores[..len],
                            out,
                        );
                    }
                }
            });
            self.matmuls([&layer.out], &attn, n, n, [&mut proj]);
            self.residual_norm(&mut x, &proj, &layer.attn_norm, eps);
            self.matmuls([&layer.up], &x, n, n, [&mut up]);
            self.for_rows(&mut up, hp.n_ff, &|_, rows| gelu_erf(rows));
            self.matmuls([&layer.down], &up, n, n, [&mut proj]);
            self.residual_norm(&mut x, &proj, &layer.out_norm, eps);
        }
        Ok(x)
    }

    /// `x = LayerNorm(x + o)`, row by row.
    fn residual_norm(&self, x: &mut [f32], o: &[f32], norm: &Norm, eps: f32) {
        let d = norm.weight.len();
        self.for_rows(x, d, &|t0, rows| {
            rows.iter_mut().zip(&o[t0 * d..]).for_each(|(a, b)| *a += b);
            layer_norm(rows, &norm.weight, &norm.bias, eps);
        });
    }
}

/// One head of one query: `out = softmax(scale * q.k_j) . v_j` over every key `k_j` and value
/// `v_j`, with `scores` (one per key) as scratch.
fn attend<'a>(
    q: &[f32],
    keys: impl Iterator<Item = &'a [f32]>,
    values: impl Iterator<Item = &'a [f32]>,
    scale: f32,
    scores: &mut [f32],
    out: &mut [f32],
) {
    for (s, k) in scores.iter_mut().zip(keys) {
        *s = dot(q, k) * scale;
    }
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut total = 0.0;
    for s in scores.iter_mut() {
        *s = (*s - max).exp();
        total += *s;
    }
    out.fill(0.0);
    for (&p, v) in scores.iter().zip(values) {
        let p = p / total;
        out.iter_mut().zip(v).for_each(|(o, &v)| *o += p * v);
    }
}

/// `a . b` in 8 partial sums, which the compiler keeps in one vector register.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attention_weighs_values_by_the_softmax_of_the_scores() {
        // Scores 0 and ln(3) (scale 1): weights 1/4 and 3/4.
        let q = [1.0f32, 0.0];
        let keys = [[0.0f32, 5.0], [3f32.ln(), 0.0]];
        let values = [[4.0f32, 8.0], [0.0, -4.0]];
        let (mut scores, mut out) = ([0f32; 2], [9f32; 2]);
        attend(
            &q,
            keys.iter().map(|k| &k[..]),
            values.iter().map(|v| &v[..]),
            1.0,
            &mut scores,
            &mut out,
        );
        assert!(
            (out[0] - 1.0).abs() < 1e-6 && (out[1] + 1.0).abs() < 1e-6,
            "{out:?}"
        );
    }

    #[test]
    fn dot_sums_whole_chunks_and_the_tail() {
        let a: Vec<f32> = (1..=11).map(|i| i as f32).collect();
        assert_eq!(dot(&a, &[2.0; 11]), 132.0);
        assert_eq!(dot(&a[..3], &[1.0, -1.0, 0.5]), 0.5);
    }
}
