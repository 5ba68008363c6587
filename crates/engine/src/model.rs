//! [`Model`]: a loaded GGUF model and its forward pass.

use crate::hparams::Arch;
use crate::kv_cache::{KvCache, KvType};
use crate::ops::{add_residual, rms_norm, rms_norm_into, rope_angles};
use crate::weights::{Attention, FeedForward, Linear, Weights};
use crate::{EngineError, HParams};
use chat::ChatTemplate;
use gguf::Gguf;
use kernels::activation::{gelu_mul, silu_mul};
use kernels::attention::{attention, hadamard, AttentionInput};
use kernels::rope::rope;
use kernels::rows::for_each_rows;
use kernels::ThreadPool;
use std::path::Path;
use std::sync::{Mutex, OnceLock, PoisonError};
use tokenizer::Tokenizer;

/// Below this many elements a row-wise step runs on the calling thread: a pool dispatch costs
/// about as much as a few thousand element operations, so decoding stays serial there.
const PAR_MIN_ELEMS: usize = 16 * 1024;

/// A model ready to run: the mapped file, its hyper-parameters, weights, tokenizer and chat template.
pub struct Model {
    pub gguf: Gguf,
    pub hparams: HParams,
    pub weights: Weights,
    pub tokenizer: Tokenizer,
    pub template: ChatTemplate,
    pool: ThreadPool,
    /// The forward pass's activation buffers, kept between calls: a prompt's are tens of MB,
    /// whose pages fresh allocations would fault in again on every call.
    buffers: Mutex<Buffers>,
    /// The tokens as grammar-constrained sampling sees them, built on first use.
    grammar_vocab: OnceLock<grammar::Vocabulary>,
}

/// Activations of one forward pass, resized to each call and overwritten before they are read.
#[derive(Default)]
struct Buffers {
    x: Vec<f32>,
    h: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    qkv: Vec<f32>,
    attn: Vec<f32>,
    proj: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
    gated: Vec<f32>,
}

/// Tokens an encoder embeds in one pass ([`Model::embed_many`]): enough inputs to use the
/// batch kernels well, a bounded buffer of activations.
pub const EMBED_BATCH_TOKENS: usize = 2048;

impl Model {
    /// Load a model from a GGUF file, computing on `n_threads` threads.
    pub fn load(path: &Path, n_threads: usize) -> Result<Model, EngineError> {
        Self::from_gguf(Gguf::open(path)?, n_threads)
    }

    pub fn from_gguf(gguf: Gguf, n_threads: usize) -> Result<Model, EngineError> {
        let hparams = HParams::from_gguf(&gguf)?;
        let tokenizer = Tokenizer::from_gguf(&gguf)?;
        let weights = Weights::load(&gguf, &hparams, tokenizer.vocab_size())?;
        let (bos, eos) = special_texts(&tokenizer);
        let template = if hparams.arch.is_encoder() {
            // Rendering a chat for an embedding model fails with this message.
            ChatTemplate::new(
                "{{ raise_exception('an embedding model cannot chat: it has no chat template') }}",
                bos,
                eos,
            )?
        } else {
            ChatTemplate::for_model(
                gguf.get("tokenizer.chat_template")
                    .and_then(gguf::Value::as_str),
                hparams.arch.name(),
                bos,
                eos,
            )?
        };
        Ok(Model {
            gguf,
            hparams,
            weights,
            tokenizer,
            template,
            pool: ThreadPool::new(n_threads.max(1)),
            buffers: Mutex::default(),
            grammar_vocab: OnceLock::new(),
        })
    }

    /// Replaces the chat template with Jinja `source` (a store model's `TEMPLATE`), rendered
    /// with this model's BOS and EOS texts as the file's own template is.
    pub fn set_template(&mut self, source: &str) -> Result<(), EngineError> {
        self.template = self.template_from(source)?;
        Ok(())
    }

    /// Jinja `source` as a chat template of this model (its BOS and EOS texts), without making
    /// it the model's: for one request's own template ([`Model::chat_tokens_with`]).
    pub fn template_from(&self, source: &str) -> Result<ChatTemplate, EngineError> {
        let (bos, eos) = special_texts(&self.tokenizer);
        Ok(ChatTemplate::new(source, bos, eos)?)
    }

    /// Logits per token (an encoder's vocabulary, though it has no logits).
    pub fn n_vocab(&self) -> usize {
        match &self.weights {
            Weights::Decoder(w) => w.output.rows,
            Weights::Bert(_) => self.tokenizer.vocab_size(),
        }
    }

    /// Every token's bytes for grammar-constrained sampling ([`crate::GenerateOptions::grammar`]),
    /// one entry per logit: control, unknown and end-of-generation tokens (and ids past the
    /// tokenizer's vocabulary) are `None`, never produced by a grammar. Built on first use
    /// (about 0.1 s for 150k tokens) and kept with the model.
    pub fn grammar_vocabulary(&self) -> &grammar::Vocabulary {
        self.grammar_vocab.get_or_init(|| {
            let tok = &self.tokenizer;
            let tokens = (0..self.n_vocab() as u32)
                .map(|id| {
                    let plain =
                        (id as usize) < tok.vocab_size() && !tok.is_control(id) && !tok.is_eog(id);
                    plain.then(|| tok.token_bytes(id).to_vec())
                })
                .collect();
            grammar::Vocabulary::new(tokens)
        })
    }

    pub fn n_threads(&self) -> usize {
        self.pool.n_threads()
    }

    /// An f16 KV cache for `n_ctx` positions.
    pub fn new_cache(&self, n_ctx: usize) -> KvCache {
        self.new_typed_cache(n_ctx, KvType::F16, KvType::F16)
            .expect("f16 rows take any head size")
    }

    /// A KV cache for `n_ctx` positions with keys stored as `type_k` and values as `type_v`;
    /// fails if this model's head size is not whole blocks of one of them. An encoder's holds no
    /// layers, so no memory: it never caches keys and values.
    pub fn new_typed_cache(
        &self,
        n_ctx: usize,
        type_k: KvType,
        type_v: KvType,
    ) -> Result<KvCache, EngineError> {
        let hp = &self.hparams;
        let layers = if hp.arch.is_encoder() { 0 } else { hp.n_layer };
        KvCache::new(layers, n_ctx, hp.n_head_kv, hp.head_dim, type_k, type_v)
    }

    /// `f(first_row, rows)` over the rows of `data` (`row_len` each), spread over the pool in a
    /// few chunks per thread when there is enough work, else in one call here.
    pub(crate) fn for_rows<T: Copy + Send>(
        &self,
        data: &mut [T],
        row_len: usize,
        f: &(dyn Fn(usize, &mut [T]) + Sync),
    ) {
        let rows = data.len() / row_len;
        let chunk = if data.len() < PAR_MIN_ELEMS {
            rows
        } else {
            rows.div_ceil(4 * self.pool.n_threads())
        };
        for_each_rows(&self.pool, data, row_len, chunk, f);
    }

    /// Several projections of the same input (Q/K/V, gate/up) in one pool dispatch, with the
    /// activations quantized once per activation type, into `outs` (resized to fit).
    pub(crate) fn matmuls<const M: usize>(
        &self,
        ws: [&Linear; M],
        x: &[f32],
        n: usize,
        order: usize,
        outs: [&mut Vec<f32>; M],
    ) {
        let mats = ws.map(|w| w.matrix(&self.gguf));
        let mut slices: Vec<&mut [f32]> = outs
            .into_iter()
            .zip(ws)
            .map(|(o, w)| {
                o.resize(n * w.rows, 0.0);
                o.as_mut_slice()
            })
            .collect();
        kernels::matmul_multi_ordered(&self.pool, &mats, x, n, order, &mut slices);
        for (out, w) in slices.into_iter().zip(ws) {
            if let Some(b) = &w.bias {
                self.for_rows(out, w.rows, &|_, rows| {
                    for row in rows.chunks_exact_mut(b.len()) {
                        row.iter_mut().zip(b).for_each(|(o, b)| *o += b);
                    }
                });
            }
        }
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
        let head = if all_logits {
            Head::AllLogits
        } else {
            Head::LastLogits
        };
        self.run(&mut [Sequence { cache, tokens, pos }], head)
    }

    /// Several sequences through the model in one pass (continuous batching): every sequence's
    /// `tokens` at its positions `pos..` in its own cache, the weights read once for all of them.
    /// Returns each sequence's last-token logits, in order.
    ///
    /// The greedy tokens are those of [`Model::forward`] one sequence at a time; the logits may
    /// differ in the last bits, because the matrix kernels sum in a batch-size-dependent order
    /// (as llama.cpp's do). Every cache must have the same KV types.
    pub fn forward_batch(&self, seqs: &mut [Sequence<'_>]) -> Result<Vec<Vec<f32>>, EngineError> {
        if seqs.iter().any(|s| s.tokens.is_empty()) {
            return Err(EngineError::EmptyPrompt);
        }
        let vocab = self.n_vocab();
        let logits = self.run(seqs, Head::LastLogits)?;
        Ok(logits.chunks_exact(vocab).map(<[f32]>::to_vec).collect())
    }

    /// An embedding of `tokens`, scaled to unit length. A generative model's is its final
    /// (normalised) hidden states averaged over the tokens, as Ollama returns: the tokens run in
    /// batches of 512 through a cache of their own. An encoder's (BERT) pools its final states as
    /// its `pooling_type` says, the mean unless that names `[CLS]` or the last token; it takes at
    /// most its number of positions ([`EngineError::TooLongToEmbed`]).
    pub fn embed(&self, tokens: &[u32]) -> Result<Vec<f32>, EngineError> {
        if tokens.is_empty() {
            return Err(EngineError::EmptyPrompt);
        }
        if let Weights::Bert(w) = &self.weights {
            return Ok(self.bert_embed(w, &[tokens])?.remove(0));
        }
        let d = self.hparams.n_embd;
        let mut cache = self.new_cache(tokens.len());
        let mut sum = vec![0f64; d];
        for (i, chunk) in tokens.chunks(512).enumerate() {
            let seq = Sequence {
                cache: &mut cache,
                tokens: chunk,
                pos: i * 512,
            };
            let hidden = self.run(&mut [seq], Head::Hidden)?;
            for row in hidden.chunks_exact(d) {
                sum.iter_mut().zip(row).for_each(|(s, &v)| *s += v as f64);
            }
        }
        Ok(unit_length(&sum))
    }

    /// [`Model::embed`] of several inputs: an encoder runs them together, up to
    /// [`EMBED_BATCH_TOKENS`] tokens a pass (one read of the weights for many short inputs); a
    /// decoder one at a time.
    pub fn embed_many(&self, inputs: &[Vec<u32>]) -> Result<Vec<Vec<f32>>, EngineError> {
        if inputs.iter().any(Vec::is_empty) {
            return Err(EngineError::EmptyPrompt);
        }
        let Weights::Bert(w) = &self.weights else {
            return inputs.iter().map(|t| self.embed(t)).collect();
        };
        let mut out = Vec::with_capacity(inputs.len());
        let mut batch: Vec<&[u32]> = Vec::new();
        let mut tokens = 0;
        for input in inputs {
            if !batch.is_empty() && tokens + input.len() > EMBED_BATCH_TOKENS {
                out.extend(self.bert_embed(w, &batch)?);
                batch.clear();
                tokens = 0;
            }
            tokens += input.len();
            batch.push(input);
        }
        if !batch.is_empty() {
            out.extend(self.bert_embed(w, &batch)?);
        }
        Ok(out)
    }

    fn run(&self, seqs: &mut [Sequence<'_>], head: Head) -> Result<Vec<f32>, EngineError> {
        let hp = &self.hparams;
        let Weights::Decoder(w) = &self.weights else {
            return Err(EngineError::NotGenerative {
                arch: hp.arch.name(),
            });
        };
        for seq in seqs.iter() {
            let (n, ctx) = (seq.tokens.len(), seq.cache.n_ctx());
            let available = ctx.saturating_sub(seq.pos);
            if n > available {
                return Err(EngineError::ContextFull {
                    needed: n,
                    available,
                    ctx,
                    over: n - available,
                });
            }
        }
        let Some(first) = seqs.first() else {
            return Ok(Vec::new());
        };
        let (k_rotation, v_rotation) = (first.cache.k_rotation(), first.cache.v_rotation());
        assert!(
            seqs.iter()
                .all(|s| (s.cache.k_rotation(), s.cache.v_rotation()) == (k_rotation, v_rotation)),
            "forward_batch: the caches' KV types differ"
        );
        // Every token of every sequence, in order, with its position; `spans[s]` is sequence
        // `s`'s range of them.
        let tokens: Vec<u32> = seqs.iter().flat_map(|s| s.tokens.iter().copied()).collect();
        let positions: Vec<usize> = seqs
            .iter()
            .flat_map(|s| s.pos..s.pos + s.tokens.len())
            .collect();
        let mut spans = Vec::with_capacity(seqs.len());
        let mut at = 0;
        for s in seqs.iter() {
            spans.push(at..at + s.tokens.len());
            at += s.tokens.len();
        }
        let n = tokens.len();
        if n == 0 {
            return Ok(Vec::new());
        }
        // The matrix kernels' summation order depends on the batch size. Sequences of one
        // length L (a decode step: L = 1) are summed as a batch of L, so that each gets the
        // bits it would get alone.
        let order = match seqs.iter().map(|s| s.tokens.len()).min() {
            Some(l) if seqs.iter().all(|s| s.tokens.len() == l) => l,
            _ => n,
        };
        let d = hp.n_embd;
        let (hd, nh, nkv) = (hp.head_dim, hp.n_head, hp.n_head_kv);
        let (q_dim, kv_dim) = (nh * hd, nkv * hd);
        let eps = hp.rms_eps;
        let embd = w.token_embd.matrix(&self.gguf);
        if let Some(&id) = tokens.iter().find(|&&t| t as usize >= embd.rows) {
            return Err(EngineError::BadToken {
                id,
                vocab: embd.rows,
            });
        }

        // Taken out of the model for the call (a concurrent call on the same model gets empty
        // ones); a poisoned lock only means an earlier call panicked.
        let Buffers {
            mut x,
            mut h,
            mut q,
            mut k,
            mut v,
            mut qkv,
            mut attn,
            mut proj,
            mut gate,
            mut up,
            mut gated,
        } = std::mem::take(&mut *self.buffers.lock().unwrap_or_else(PoisonError::into_inner));
        x.resize(n * d, 0.0);
        let embd_scale = (hp.arch == Arch::Gemma3).then(|| (d as f32).sqrt());
        self.for_rows(&mut x, d, &|t0, rows| {
            for (row, &tok) in rows.chunks_exact_mut(d).zip(&tokens[t0..]) {
                embd.dequantize_row(tok as usize, row);
                if let Some(s) = embd_scale {
                    row.iter_mut().for_each(|v| *v *= s);
                }
            }
        });

        // RoPE angles of every position, once per (base, frequency scale) the layers use.
        let half = hp.n_rot / 2;
        let angle_table = |base: f32, freq_scale: f32| {
            let mut t = vec![(0f32, 0f32); n * half];
            if half > 0 {
                self.for_rows(&mut t, half, &|t0, rows| {
                    for (i, row) in rows.chunks_exact_mut(half).enumerate() {
                        let p = positions[t0 + i];
                        rope_angles(p, base, freq_scale, w.rope_freqs.as_deref(), row);
                    }
                });
            }
            t
        };
        let angles = angle_table(hp.rope_base, hp.rope_freq_scale);
        let angles_swa = hp
            .swa_layers
            .contains(&true)
            .then(|| angle_table(hp.rope_base_swa, 1.0));
        let neox = hp.arch.rope_neox();
        // Gemma 3 scales the queries before they are rounded to f16, the others scale the scores.
        let (q_scale, kq_scale) = if hp.arch == Arch::Gemma3 {
            (hp.attn_scale, 1.0)
        } else {
            (1.0, hp.attn_scale)
        };
        let act: fn(&[f32], &[f32], &mut [f32]) = if hp.arch == Arch::Gemma3 {
            gelu_mul
        } else {
            silu_mul
        };

        h.resize(n * d, 0.0);
        attn.resize(n * q_dim, 0.0);
        for (il, layer) in w.layers.iter().enumerate() {
            self.for_rows(&mut h, d, &|t0, rows| {
                rms_norm_into(&x[t0 * d..][..rows.len()], &layer.attn_norm, eps, rows);
            });
            match &layer.attn {
                Attention::Separate(w) => {
                    self.matmuls([&w.q, &w.k, &w.v], &h, n, order, [&mut q, &mut k, &mut v]);
                }
                Attention::Fused(f) => {
                    self.matmuls([f], &h, n, order, [&mut qkv]);
                    q.clear();
                    k.clear();
                    v.clear();
                    for row in qkv.chunks_exact(q_dim + 2 * kv_dim) {
                        q.extend_from_slice(&row[..q_dim]);
                        k.extend_from_slice(&row[q_dim..q_dim + kv_dim]);
                        v.extend_from_slice(&row[q_dim + kv_dim..]);
                    }
                }
            }
            let swa = hp.swa_layers[il];
            let angles = match (&angles_swa, swa) {
                (Some(a), true) => a,
                _ => &angles,
            };
            for (x, dim, norm) in [
                (&mut q, q_dim, &layer.q_norm),
                (&mut k, kv_dim, &layer.k_norm),
            ] {
                self.for_rows(x, dim, &|t0, rows| {
                    for (t, row) in rows.chunks_exact_mut(dim).enumerate() {
                        if let Some(nw) = norm {
                            rms_norm(row, nw, eps);
                        }
                        rope(row, hd, &angles[(t0 + t) * half..][..half], neox);
                    }
                });
            }
            // A quantized cache takes its rows rotated, as in llama.cpp: queries and keys alike
            // (their dot products stay), values with the output rotated back after attention.
            if let Some(n) = k_rotation {
                self.for_rows(&mut q, q_dim, &|_, rows| hadamard(rows, n));
                self.for_rows(&mut k, kv_dim, &|_, rows| hadamard(rows, n));
            }
            if let Some(n) = v_rotation {
                self.for_rows(&mut v, kv_dim, &|_, rows| hadamard(rows, n));
            }
            // Each sequence attends over its own cache.
            for (seq, span) in seqs.iter_mut().zip(&spans) {
                let kv = span.start * kv_dim..span.end * kv_dim;
                seq.cache.store(il, seq.pos, &k[kv.clone()], &v[kv]);
                let (kc, vc) = seq.cache.layer(il);
                let input = AttentionInput {
                    q: &q[span.start * q_dim..span.end * q_dim],
                    k: kc,
                    v: vc,
                    n_head: nh,
                    n_head_kv: nkv,
                    head_dim: hd,
                    pos: seq.pos,
                    window: if swa { hp.n_swa } else { 0 },
                    q_scale,
                    kq_scale,
                };
                let out = &mut attn[span.start * q_dim..span.end * q_dim];
                attention(&self.pool, &input, out);
            }
            if let Some(n) = v_rotation {
                self.for_rows(&mut attn, q_dim, &|_, rows| hadamard(rows, n));
            }
            self.matmuls([&layer.out], &attn, n, order, [&mut proj]);
            self.for_rows(&mut x, d, &|t0, rows| {
                let o = &proj[t0 * d..][..rows.len()];
                add_residual(rows, o, layer.post_attn_norm.as_deref(), eps);
            });

            self.for_rows(&mut h, d, &|t0, rows| {
                rms_norm_into(&x[t0 * d..][..rows.len()], &layer.ffn_norm, eps, rows);
            });
            let ff = hp.n_ff;
            gated.resize(n * ff, 0.0);
            match &layer.ffn {
                FeedForward::Gated { gate: wg, up: wu } => {
                    self.matmuls([wg, wu], &h, n, order, [&mut gate, &mut up]);
                    self.for_rows(&mut gated, ff, &|t0, rows| {
                        let at = t0 * ff..t0 * ff + rows.len();
                        act(&gate[at.clone()], &up[at], rows);
                    });
                }
                FeedForward::FusedGateUp(f) => {
                    self.matmuls([f], &h, n, order, [&mut gate]);
                    self.for_rows(&mut gated, ff, &|t0, rows| {
                        for (t, row) in rows.chunks_exact_mut(ff).enumerate() {
                            let gu = &gate[(t0 + t) * 2 * ff..][..2 * ff];
                            act(&gu[..ff], &gu[ff..], row);
                        }
                    });
                }
            }
            self.matmuls([&layer.down], &gated, n, order, [&mut proj]);
            self.for_rows(&mut x, d, &|t0, rows| {
                let o = &proj[t0 * d..][..rows.len()];
                add_residual(rows, o, layer.post_ffn_norm.as_deref(), eps);
            });
        }

        // Only the positions whose logits are wanted go through the head: each sequence's last.
        if head == Head::LastLogits {
            for (i, span) in spans.iter().enumerate() {
                x.copy_within((span.end - 1) * d..span.end * d, i * d);
            }
        }
        let n_out = if head == Head::LastLogits {
            seqs.len()
        } else {
            n
        };
        let rows = &mut x[..n_out * d];
        self.for_rows(rows, d, &|_, rows| rms_norm(rows, &w.output_norm, eps));
        let mut logits = Vec::new();
        if head == Head::Hidden {
            logits.extend_from_slice(rows);
        } else {
            // Alone, each sequence's head would be a batch of its own rows: 1 or `order`.
            let head_order = if head == Head::LastLogits { 1 } else { order };
            self.matmuls([&w.output], rows, n_out, head_order, [&mut logits]);
        }
        if let (Some(c), false) = (hp.final_logit_softcap, head == Head::Hidden) {
            self.for_rows(&mut logits, 1, &|_, ls| {
                ls.iter_mut().for_each(|l| *l = (*l * (1.0 / c)).tanh() * c);
            });
        }
        *self.buffers.lock().unwrap_or_else(PoisonError::into_inner) = Buffers {
            x,
            h,
            q,
            k,
            v,
            qkv,
            attn,
            proj,
            gate,
            up,
            gated,
        };
        Ok(logits)
    }
}

/// `v` scaled to unit length (all zeros stay zeros), as f32.
pub(crate) fn unit_length(v: &[f64]) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    let scale = if norm > 0.0 { 1.0 / norm } else { 0.0 };
    v.iter().map(|x| (x * scale) as f32).collect()
}

/// The texts of the BOS and EOS tokens ("" where the model has none), which templates print.
fn special_texts(tokenizer: &Tokenizer) -> (&str, &str) {
    let text = |id: Option<u32>| id.map_or("", |i| tokenizer.token_text(i));
    (text(tokenizer.bos()), text(tokenizer.eos()))
}

/// One sequence of a [`Model::forward_batch`]: `tokens` at positions `pos..` in `cache`.
pub struct Sequence<'a> {
    pub cache: &'a mut KvCache,
    pub tokens: &'a [u32],
    pub pos: usize,
}

/// What [`Model::run`] returns.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Head {
    /// The last token's logits.
    LastLogits,
    /// Every token's logits.
    AllLogits,
    /// Every token's final hidden state, after the output norm.
    Hidden,
}
