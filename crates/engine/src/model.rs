//! [`Model`]: a loaded GGUF model and its forward pass.

use crate::hparams::Arch;
use crate::kv_cache::KvCache;
use crate::ops::{gelu, rms_norm, rms_norm_into, rope_angles, rope_apply, silu};
use crate::weights::{Attention, FeedForward, Linear, Weights};
use crate::{EngineError, HParams};
use chat::ChatTemplate;
use gguf::Gguf;
use kernels::attention::{dot_f16, mad_f16, round_f16, scale_f16};
use kernels::ThreadPool;
use std::path::Path;
use std::sync::Mutex;
use tokenizer::Tokenizer;

/// A model ready to run: the mapped file, its hyper-parameters, weights, tokenizer and chat template.
pub struct Model {
    pub gguf: Gguf,
    pub hparams: HParams,
    pub weights: Weights,
    pub tokenizer: Tokenizer,
    pub template: ChatTemplate,
    pool: ThreadPool,
}

impl Model {
    /// Load a model from a GGUF file, computing on `n_threads` threads.
    pub fn load(path: &Path, n_threads: usize) -> Result<Model, EngineError> {
        Self::from_gguf(Gguf::open(path)?, n_threads)
    }

    pub fn from_gguf(gguf: Gguf, n_threads: usize) -> Result<Model, EngineError> {
        let hparams = HParams::from_gguf(&gguf)?;
        let tokenizer = Tokenizer::from_gguf(&gguf)?;
        let weights = Weights::load(&gguf, &hparams, tokenizer.vocab_size())?;
        let text = |id: Option<u32>| id.map(|i| tokenizer.token_text(i).to_string());
        let template = ChatTemplate::for_model(
            gguf.get("tokenizer.chat_template")
                .and_then(gguf::Value::as_str),
            hparams.arch.name(),
            &text(tokenizer.bos()).unwrap_or_default(),
            &text(tokenizer.eos()).unwrap_or_default(),
        )?;
        Ok(Model {
            gguf,
            hparams,
            weights,
            tokenizer,
            template,
            pool: ThreadPool::new(n_threads.max(1)),
        })
    }

    pub fn n_vocab(&self) -> usize {
        self.weights.output.rows
    }

    pub fn n_threads(&self) -> usize {
        self.pool.n_threads()
    }

    /// A KV cache for `n_ctx` positions.
    pub fn new_cache(&self, n_ctx: usize) -> KvCache {
        let hp = &self.hparams;
        KvCache::new(hp.n_layer, n_ctx, hp.n_head_kv * hp.head_dim)
    }

    fn matmul(&self, w: &Linear, x: &[f32], n: usize) -> Vec<f32> {
        let [out] = self.matmuls([w], x, n);
        out
    }

    /// Several projections of the same input (Q/K/V, gate/up) in one pool dispatch, with the
    /// activations quantized once per activation type.
    fn matmuls<const M: usize>(&self, ws: [&Linear; M], x: &[f32], n: usize) -> [Vec<f32>; M] {
        let mut outs = ws.map(|w| vec![0f32; n * w.rows]);
        let mats = ws.map(|w| w.matrix(&self.gguf));
        {
            let mut slices: Vec<&mut [f32]> = outs.iter_mut().map(|o| o.as_mut_slice()).collect();
            kernels::matmul_multi(&self.pool, &mats, x, n, &mut slices);
        }
        for (out, w) in outs.iter_mut().zip(ws) {
            if let Some(b) = &w.bias {
                for row in out.chunks_exact_mut(w.rows) {
                    row.iter_mut().zip(b).for_each(|(o, b)| *o += b);
                }
            }
        }
        outs
    }

    /// Run `tokens` at positions `pos..pos + tokens.len()` through the model, filling the cache.
    /// Returns the logits of the last token, or of every token when `all_logits` is set.
    pub fn forward(
        &self,
        cache: &mut KvCache,
        tokens: &[u32],
        pos: usize,
        all_logits: bool,
    ) -> Result<Vec<f32>, EngineError> {
        let hp = &self.hparams;
        let n = tokens.len();
        if n == 0 {
            return Ok(Vec::new());
        }
        let available = cache.n_ctx().saturating_sub(pos);
        if n > available {
            return Err(EngineError::ContextFull {
                needed: n,
                available,
                ctx: cache.n_ctx(),
                over: n - available,
            });
        }
        let d = hp.n_embd;
        let (hd, nh, nkv) = (hp.head_dim, hp.n_head, hp.n_head_kv);
        let (q_dim, kv_dim) = (nh * hd, nkv * hd);
        let w = &self.weights;
        let embd = w.token_embd.matrix(&self.gguf);

        let mut x = vec![0f32; n * d];
        for (t, &tok) in tokens.iter().enumerate() {
            if tok as usize >= embd.rows {
                return Err(EngineError::BadToken {
                    id: tok,
                    vocab: embd.rows,
                });
            }
            embd.dequantize_row(tok as usize, &mut x[t * d..(t + 1) * d]);
        }
        if hp.arch == Arch::Gemma3 {
            let s = (d as f32).sqrt();
            x.iter_mut().for_each(|v| *v *= s);
        }

        let mut h = vec![0f32; n * d];
        let mut angles = Vec::new();
        for (il, layer) in w.layers.iter().enumerate() {
            rms_norm_into(&x, &layer.attn_norm, hp.rms_eps, &mut h);
            let (mut q, mut k, v) = match &layer.attn {
                Attention::Separate(qkv) => {
                    let [q, k, v] = self.matmuls([&qkv.q, &qkv.k, &qkv.v], &h, n);
                    (q, k, v)
                }
                Attention::Fused(f) => {
                    let qkv = self.matmul(f, &h, n);
                    let mut q = Vec::with_capacity(n * q_dim);
                    let mut k = Vec::with_capacity(n * kv_dim);
                    let mut v = Vec::with_capacity(n * kv_dim);
                    for row in qkv.chunks_exact(q_dim + 2 * kv_dim) {
                        q.extend_from_slice(&row[..q_dim]);
                        k.extend_from_slice(&row[q_dim..q_dim + kv_dim]);
                        v.extend_from_slice(&row[q_dim + kv_dim..]);
                    }
                    (q, k, v)
                }
            };
            if let Some(qn) = &layer.q_norm {
                rms_norm(&mut q, qn, hp.rms_eps);
            }
            if let Some(kn) = &layer.k_norm {
                rms_norm(&mut k, kn, hp.rms_eps);
            }
            let swa = hp.swa_layers[il];
            let base = if swa { hp.rope_base_swa } else { hp.rope_base };
            let freq_scale = if swa { 1.0 } else { hp.rope_freq_scale };
            for t in 0..n {
                rope_angles(
                    pos + t,
                    hp.n_rot,
                    base,
                    freq_scale,
                    w.rope_freqs.as_deref(),
                    &mut angles,
                );
                let neox = hp.arch.rope_neox();
                for head in q[t * q_dim..(t + 1) * q_dim].chunks_exact_mut(hd) {
                    rope_apply(head, &angles, neox);
                }
                for head in k[t * kv_dim..(t + 1) * kv_dim].chunks_exact_mut(hd) {
                    rope_apply(head, &angles, neox);
                }
                cache.store(
                    il,
                    pos + t,
                    &k[t * kv_dim..(t + 1) * kv_dim],
                    &v[t * kv_dim..(t + 1) * kv_dim],
                );
            }
            let window = if swa { hp.n_swa } else { 0 };
            let attn = self.attention(cache, il, &q, n, pos, window);
            let mut o = self.matmul(&layer.out, &attn, n);
            if let Some(pn) = &layer.post_attn_norm {
                rms_norm(&mut o, pn, hp.rms_eps);
            }
            x.iter_mut().zip(&o).for_each(|(a, b)| *a += b);

            rms_norm_into(&x, &layer.ffn_norm, hp.rms_eps, &mut h);
            let act: fn(f32) -> f32 = if hp.arch == Arch::Gemma3 { gelu } else { silu };
            let ff = hp.n_ff;
            let gated = match &layer.ffn {
                FeedForward::Gated { gate, up } => {
                    let [mut g, u] = self.matmuls([gate, up], &h, n);
                    g.iter_mut().zip(&u).for_each(|(g, u)| *g = act(*g) * u);
                    g
                }
                FeedForward::FusedGateUp(f) => {
                    let gu = self.matmul(f, &h, n);
                    let mut g = Vec::with_capacity(n * ff);
                    for row in gu.chunks_exact(2 * ff) {
                        g.extend(row[..ff].iter().zip(&row[ff..]).map(|(g, u)| act(*g) * u));
                    }
                    g
                }
            };
            let mut f = self.matmul(&layer.down, &gated, n);
            if let Some(pn) = &layer.post_ffn_norm {
                rms_norm(&mut f, pn, hp.rms_eps);
            }
            x.iter_mut().zip(&f).for_each(|(a, b)| *a += b);
        }

        // Only the positions whose logits are wanted go through the head.
        let (rows, n_out) = if all_logits {
            (&mut x[..], n)
        } else {
            (&mut x[(n - 1) * d..], 1)
        };
        rms_norm(rows, &w.output_norm, hp.rms_eps);
        let mut logits = self.matmul(&w.output, rows, n_out);
        if let Some(c) = hp.final_logit_softcap {
            logits
                .iter_mut()
                .for_each(|l| *l = (*l * (1.0 / c)).tanh() * c);
        }
        Ok(logits)
    }

    /// Causal (optionally sliding-window) attention of `n` query rows at positions `pos..` over the
    /// cached keys and values of layer `il`. Returns `n * n_head * head_dim` values.
    fn attention(
        &self,
        cache: &KvCache,
        il: usize,
        q: &[f32],
        n: usize,
        pos: usize,
        window: usize,
    ) -> Vec<f32> {
        let hp = &self.hparams;
        let (hd, nh) = (hp.head_dim, hp.n_head);
        let kv_dim = hp.n_head_kv * hd;
        let group = nh / hp.n_head_kv;
        let (kc, vc) = cache.layer(il);
        // Gemma 3 scales the queries before they are rounded to f16, the others scale the scores.
        let (q_scale, kq_scale) = if hp.arch == Arch::Gemma3 {
            (hp.attn_scale, 1.0)
        } else {
            (1.0, hp.attn_scale)
        };
        let total = n * nh;
        let nt = self.pool.n_threads().min(total);
        // Each thread computes a contiguous run of (token, head) rows, which is a contiguous part
        // of the output.
        let parts: Mutex<Vec<(usize, Vec<f32>)>> = Mutex::new(Vec::with_capacity(nt));
        self.pool.run(&|ti| {
            if ti >= nt {
                return;
            }
            let (lo, hi) = (ti * total / nt, (ti + 1) * total / nt);
            let mut out = vec![0f32; (hi - lo) * hd];
            let mut q16 = vec![0f32; hd];
            let mut acc = vec![0f32; hd];
            for idx in lo..hi {
                let (t, head) = (idx / nh, idx % nh);
                let p = pos + t;
                let start = if window > 0 {
                    (p + 1).saturating_sub(window)
                } else {
                    0
                };
                q16.iter_mut()
                    .zip(&q[idx * hd..(idx + 1) * hd])
                    .for_each(|(d, &x)| *d = round_f16(x * q_scale));
                let koff = (head / group) * hd;
                // Online softmax over the keys in order, with the weighted sum of values kept in
                // f16 as llama.cpp's CPU flash attention keeps it.
                let (mut max, mut sum) = (f32::NEG_INFINITY, 0f32);
                acc.fill(0.0);
                for j in start..=p {
                    let row = j * kv_dim + koff;
                    let kr = &kc[row..row + hd];
                    let s = dot_f16(&q16, kr) * kq_scale;
                    let (mut ms, mut vs) = (1f32, 1f32);
                    if s > max {
                        ms = (max - s).exp();
                        max = s;
                        scale_f16(&mut acc, ms);
                    } else {
                        vs = (s - max).exp();
                    }
                    let vr = &vc[row..row + hd];
                    mad_f16(&mut acc, vr, vs);
                    sum = sum.mul_add(ms, vs);
                }
                let inv = if sum == 0.0 { 0.0 } else { 1.0 / sum };
                out[(idx - lo) * hd..(idx - lo + 1) * hd]
                    .iter_mut()
                    .zip(&acc)
                    .for_each(|(o, a)| *o = a * inv);
            }
            parts.lock().unwrap().push((lo * hd, out));
        });
        let mut result = vec![0f32; total * hd];
        for (at, part) in parts.into_inner().unwrap() {
            result[at..at + part.len()].copy_from_slice(&part);
        }
        result
    }
}
