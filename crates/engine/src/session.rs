//! [`Session`]: one conversation's KV cache over a [`Model`], and the generation loop with stop
//! strings, token limits, grammar-constrained sampling and streamed UTF-8 output.

use crate::kv_cache::{KvCache, KvType};
use crate::sampler::Sampler;
use crate::{EngineError, Model, Sequence};
use grammar::{Grammar, Matcher};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokenizer::StreamDecoder;

/// Prompts are evaluated in batches of at most this many tokens.
const BATCH: usize = 512;

/// Why generation ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// The model produced an end-of-generation token.
    EndOfGeneration,
    /// The token limit was reached.
    MaxTokens,
    /// One of the stop strings appeared (it is not part of the output).
    StopString(String),
    /// The caller's callback asked to stop.
    Cancelled,
    /// The context is full.
    ContextFull,
    /// The grammar ([`GenerateOptions::grammar`]) allows no token here although the text is not
    /// complete under it (a grammar needing text the vocabulary cannot spell, or one too
    /// ambiguous to follow): the reason.
    Grammar(String),
}

/// What a generation did and how fast.
#[derive(Clone, Debug)]
pub struct GenerationStats {
    pub prompt_tokens: usize,
    pub prompt_time: Duration,
    pub generated_tokens: usize,
    pub generation_time: Duration,
    pub stop: StopReason,
}

/// Limits of one generation.
#[derive(Clone, Debug, Default)]
pub struct GenerateOptions {
    /// Maximum new tokens; `None`: until end of generation or a full context.
    pub max_tokens: Option<usize>,
    pub stop: Vec<String>,
    /// Report each generated token's log-probability and this many alternatives
    /// ([`Session::generate_detailed`]); `None`: none (no cost).
    pub logprobs: Option<usize>,
    /// Asked between the prompt's batches (512 tokens each), so that a long prompt stops soon
    /// after its client has gone; generation itself stops when `on_text` returns false.
    pub cancel: Option<Cancel>,
    /// Constrain the generated text (not the prompt) to this grammar (structured output:
    /// [`Grammar::json`], [`Grammar::from_json_schema`], [`Grammar::parse`]). Each step samples
    /// as usual and keeps the token if the grammar allows it, else samples again from the
    /// allowed tokens only; end-of-generation is allowed once the text is complete, and the
    /// generation ends ([`StopReason::EndOfGeneration`]) when nothing more may follow. Control
    /// tokens are never produced. Log-probabilities still report the model's own distribution.
    pub grammar: Option<Arc<Grammar>>,
}

/// A question "should this generation stop?" (for example: has the client disconnected?).
#[derive(Clone)]
pub struct Cancel(Arc<dyn Fn() -> bool + Send + Sync>);

impl Cancel {
    pub fn new(f: impl Fn() -> bool + Send + Sync + 'static) -> Cancel {
        Cancel(Arc::new(f))
    }

    pub fn is_cancelled(&self) -> bool {
        (self.0)()
    }
}

impl std::fmt::Debug for Cancel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cancel(..)")
    }
}

/// A generated token's log-probability under the model (the raw logits' log-softmax, before
/// penalties and sampling), with the most likely alternatives at that step.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenLogprob {
    pub token: u32,
    pub logprob: f32,
    /// The `logprobs` most likely tokens and their log-probabilities, most likely first.
    pub top: Vec<(u32, f32)>,
}

impl TokenLogprob {
    fn of(logits: &[f32], token: u32, n_top: usize) -> TokenLogprob {
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let lse = max + logits.iter().map(|&l| (l - max).exp()).sum::<f32>().ln();
        let mut order: Vec<u32> = (0..logits.len() as u32).collect();
        let n_top = n_top.min(order.len());
        if n_top > 0 {
            order.select_nth_unstable_by(n_top - 1, |&a, &b| {
                logits[b as usize].total_cmp(&logits[a as usize])
            });
        }
        order.truncate(n_top);
        order.sort_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]));
        TokenLogprob {
            token,
            logprob: logits[token as usize] - lse,
            top: order
                .into_iter()
                .map(|t| (t, logits[t as usize] - lse))
                .collect(),
        }
    }
}

/// The keys and values of a run of tokens, copied out of a [`Session`] so that other sessions
/// of the same model can start from them ([`Session::adopt`]): a shared system prompt computed
/// once for every slot of a server.
pub struct Prefix {
    tokens: Vec<u32>,
    cache: KvCache,
}

impl Prefix {
    /// The tokens whose keys and values this holds.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// Bytes of keys and values held.
    pub fn bytes(&self) -> usize {
        self.cache.bytes()
    }
}

pub struct Session<'m> {
    model: &'m Model,
    cache: KvCache,
    /// The tokens whose keys and values are in the cache, in order.
    tokens: Vec<u32>,
}

impl<'m> Session<'m> {
    /// A session with an f16 cache of `n_ctx` positions (at least 1).
    pub fn new(model: &'m Model, n_ctx: usize) -> Session<'m> {
        Session {
            model,
            cache: model.new_cache(n_ctx.max(1)),
            tokens: Vec::new(),
        }
    }

    /// A session whose cache of `n_ctx` positions (at least 1) stores keys as `type_k` and
    /// values as `type_v`; fails if the model's head size does not suit one of them.
    pub fn with_cache_types(
        model: &'m Model,
        n_ctx: usize,
        type_k: KvType,
        type_v: KvType,
    ) -> Result<Session<'m>, EngineError> {
        Ok(Session {
            model,
            cache: model.new_typed_cache(n_ctx.max(1), type_k, type_v)?,
            tokens: Vec::new(),
        })
    }

    /// The session's KV cache (its types and size).
    pub fn cache(&self) -> &KvCache {
        &self.cache
    }

    pub fn n_ctx(&self) -> usize {
        self.cache.n_ctx()
    }

    /// The tokens the cache holds.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// Bytes of keys and values per cached token.
    pub fn kv_bytes_per_token(&self) -> usize {
        self.cache.bytes() / self.n_ctx()
    }

    /// A copy of the keys and values of every token the cache holds.
    pub fn snapshot(&self) -> Prefix {
        let n = self.tokens.len();
        let mut cache = self
            .model
            .new_typed_cache(n.max(1), self.cache.type_k(), self.cache.type_v())
            .expect("the session's own cache types fit its model");
        cache.copy_positions(&self.cache, 0..n);
        Prefix {
            tokens: self.tokens.clone(),
            cache,
        }
    }

    /// Takes from `prefix` the keys and values of the start of `context` it holds beyond what
    /// this session's cache holds of it (at most all but the last token, which
    /// [`Session::start`] evaluates for its logits). Returns how many tokens it copied. The
    /// prefix must come from a session of the same model with the same cache types.
    pub fn adopt(&mut self, prefix: &Prefix, context: &[u32]) -> usize {
        let own = common_prefix(&self.tokens, context);
        let shared = common_prefix(&prefix.tokens, context)
            .min(context.len().saturating_sub(1))
            .min(self.n_ctx());
        if shared <= own {
            return 0;
        }
        self.cache.copy_positions(&prefix.cache, own..shared);
        self.tokens.truncate(own);
        self.tokens.extend_from_slice(&context[own..shared]);
        shared - own
    }

    /// Forget the conversation.
    pub fn clear(&mut self) {
        self.tokens.clear();
    }

    /// Feed tokens; returns the logits after the last one. Fails, changing nothing, if they do not
    /// fit in the context.
    pub fn eval(&mut self, tokens: &[u32]) -> Result<Vec<f32>, EngineError> {
        self.check_fits(tokens.len())?;
        let mut logits = Vec::new();
        for chunk in tokens.chunks(BATCH) {
            let pos = self.tokens.len();
            logits = self.model.forward(&mut self.cache, chunk, pos, false)?;
            self.tokens.extend_from_slice(chunk);
        }
        Ok(logits)
    }

    /// An error unless `n` more tokens fit in the context.
    fn check_fits(&self, n: usize) -> Result<(), EngineError> {
        let available = self.n_ctx() - self.tokens.len();
        if n > available {
            return Err(EngineError::ContextFull {
                needed: n,
                available,
                ctx: self.n_ctx(),
                over: n - available,
            });
        }
        Ok(())
    }

    /// Generate a continuation of `context` (the whole text so far: the part the cache already
    /// holds is not evaluated again), calling `on_text` with each piece of valid UTF-8 as it is
    /// produced; `on_text` returns false to stop.
    pub fn generate(
        &mut self,
        context: &[u32],
        sampler: &mut Sampler,
        opts: &GenerateOptions,
        mut on_text: impl FnMut(&str) -> bool,
    ) -> Result<GenerationStats, EngineError> {
        self.generate_detailed(context, sampler, opts, |text, _| on_text(text))
    }

    /// [`Session::generate`], with each piece of text given the log-probabilities of the tokens
    /// it completes (when [`GenerateOptions::logprobs`] asks for them; empty otherwise). Text held
    /// back by a possible stop string carries its tokens' entries when it is released.
    pub fn generate_detailed(
        &mut self,
        context: &[u32],
        sampler: &mut Sampler,
        opts: &GenerateOptions,
        mut on_text: impl FnMut(&str, &[TokenLogprob]) -> bool,
    ) -> Result<GenerationStats, EngineError> {
        let mut generation = self.start(context, sampler, opts)?;
        loop {
            match generation.step(self, sampler, &mut on_text) {
                Step::Feed(next) => generation.accept_logits(self.eval(&[next])?),
                Step::Done(stats) => return Ok(stats),
            }
        }
    }

    /// The first half of [`Session::generate_detailed`], for a caller that runs the decoding steps
    /// itself (several sessions' steps in one [`Model::forward_batch`]): evaluates what the cache
    /// lacks of `context` and returns the generation, ready to sample its first token with
    /// [`Generation::step`]. `sampler` must be the one given to every step.
    pub fn start(
        &mut self,
        context: &[u32],
        sampler: &mut Sampler,
        opts: &GenerateOptions,
    ) -> Result<Generation, EngineError> {
        if context.is_empty() {
            return Err(EngineError::EmptyPrompt);
        }
        let t0 = Instant::now();
        // Reuse the cached prefix, but evaluate at least one token to get logits.
        let reuse = common_prefix(&self.tokens, context).min(context.len() - 1);
        self.tokens.truncate(reuse);
        let prompt = &context[reuse..];
        self.check_fits(prompt.len())?;
        let constraint = opts.grammar.as_ref().map(|g| {
            // Built once per model, on the first constrained generation.
            self.model.grammar_vocabulary();
            Constraint {
                matcher: Matcher::new(g.clone()),
                mask: Vec::new(),
            }
        });
        let mut generation = Generation {
            logits: Vec::new(),
            max_tokens: opts.max_tokens,
            logprobs: opts.logprobs,
            decoder: StreamDecoder::new(),
            stops: StopMatcher::new(opts.stop.clone()),
            pending: Vec::new(),
            prompt_tokens: prompt.len(),
            prompt_time: Duration::ZERO,
            started: t0,
            generated: 0,
            ended: None,
            constraint,
        };
        for (i, chunk) in prompt.chunks(BATCH).enumerate() {
            if opts.cancel.as_ref().is_some_and(Cancel::is_cancelled) {
                generation.ended = Some(GenerationStats {
                    prompt_tokens: i * BATCH,
                    prompt_time: t0.elapsed(),
                    generated_tokens: 0,
                    generation_time: Duration::ZERO,
                    stop: StopReason::Cancelled,
                });
                return Ok(generation);
            }
            generation.logits = self.eval(chunk)?;
        }
        for &t in context {
            sampler.accept(t);
        }
        generation.prompt_time = t0.elapsed();
        generation.started = Instant::now();
        Ok(generation)
    }

    /// The sequence of one decoding step for [`Model::forward_batch`]: `token` (from
    /// [`Step::Feed`]) at this session's next position. The session counts it as cached from
    /// here, so if the forward pass fails, [`Session::clear`] the session.
    pub fn decode_sequence(&mut self, token: u32) -> Sequence<'_> {
        let pos = self.tokens.len();
        self.tokens.push(token);
        Sequence {
            cache: &mut self.cache,
            tokens: &self.tokens[pos..],
            pos,
        }
    }
}

/// What [`Generation::step`] asks for.
#[derive(Debug)]
pub enum Step {
    /// Run this token through the session's next position and give its logits to
    /// [`Generation::accept_logits`] before the next step.
    Feed(u32),
    /// The generation has ended.
    Done(GenerationStats),
}

/// A generation under way, driven one token at a time ([`Session::start`]): the state of the
/// loop of [`Session::generate_detailed`] (streamed UTF-8, held-back stop-string text, pending
/// log-probabilities, counts) without the session, so that a caller can decode several
/// generations in one forward pass.
pub struct Generation {
    /// The logits of the last token fed, to sample from.
    logits: Vec<f32>,
    max_tokens: Option<usize>,
    logprobs: Option<usize>,
    decoder: StreamDecoder,
    stops: StopMatcher,
    pending: Vec<TokenLogprob>,
    prompt_tokens: usize,
    prompt_time: Duration,
    /// When decoding began.
    started: Instant,
    generated: usize,
    /// Set once the generation has ended.
    ended: Option<GenerationStats>,
    /// The grammar's parse state, when the text is constrained.
    constraint: Option<Constraint>,
}

/// Grammar-constrained sampling of one generation.
struct Constraint {
    matcher: Matcher,
    /// The allowed tokens, reused between steps.
    mask: Vec<bool>,
}

impl Constraint {
    /// A token the grammar allows (end-of-generation tokens when the text is complete), or
    /// `None` if there is none.
    fn sample(&mut self, model: &Model, sampler: &mut Sampler, logits: &mut [f32]) -> Option<u32> {
        let tok = &model.tokenizer;
        let vocab = model.grammar_vocabulary();
        let can_end = self.matcher.can_end();
        let (matcher, mask) = (&self.matcher, &mut self.mask);
        sampler.sample_constrained(
            logits,
            |t| {
                if tok.is_eog(t) {
                    can_end
                } else {
                    matcher.accepts_token(vocab, t)
                }
            },
            |logits| {
                let mut left = matcher.allowed(vocab, mask) > 0;
                let eog: Vec<(u32, f32)> = tok
                    .eog_ids()
                    .iter()
                    .filter_map(|&t| logits.get(t as usize).map(|&l| (t, l)))
                    .collect();
                for (l, &ok) in logits.iter_mut().zip(mask.iter()) {
                    if !ok {
                        *l = f32::NEG_INFINITY;
                    }
                }
                if can_end {
                    for (t, l) in eog {
                        logits[t as usize] = l;
                        left |= l > f32::NEG_INFINITY;
                    }
                }
                left
            },
        )
    }
}

impl Generation {
    /// Samples the next token from the last logits and streams its text through `on_text` (as
    /// [`Session::generate_detailed`] does; `on_text` returns false to stop). `session` is the one
    /// this generation was started on and `sampler` the one given to [`Session::start`].
    pub fn step(
        &mut self,
        session: &Session,
        sampler: &mut Sampler,
        mut on_text: impl FnMut(&str, &[TokenLogprob]) -> bool,
    ) -> Step {
        if let Some(stats) = &self.ended {
            return Step::Done(stats.clone());
        }
        let stop = match self.sample(session, sampler, &mut on_text) {
            Ok(next) => return Step::Feed(next),
            Err(stop) => stop,
        };
        if !matches!(stop, StopReason::StopString(_) | StopReason::Cancelled) {
            let rest = self.stops.finish(&self.decoder.finish());
            if !rest.is_empty() {
                on_text(&rest, &self.pending);
            }
        }
        let stats = GenerationStats {
            prompt_tokens: self.prompt_tokens,
            prompt_time: self.prompt_time,
            generated_tokens: self.generated,
            generation_time: self.started.elapsed(),
            stop,
        };
        self.ended = Some(stats.clone());
        Step::Done(stats)
    }

    /// The logits of the token of the last [`Step::Feed`].
    pub fn accept_logits(&mut self, logits: Vec<f32>) {
        self.logits = logits;
    }

    /// One token: the one to feed next, or why the generation ends.
    fn sample(
        &mut self,
        session: &Session,
        sampler: &mut Sampler,
        on_text: &mut impl FnMut(&str, &[TokenLogprob]) -> bool,
    ) -> Result<u32, StopReason> {
        let tok = &session.model.tokenizer;
        if self.max_tokens.is_some_and(|m| self.generated >= m) {
            return Err(StopReason::MaxTokens);
        }
        if self
            .constraint
            .as_ref()
            .is_some_and(|c| c.matcher.must_end())
        {
            return Err(StopReason::EndOfGeneration);
        }
        // The model's distribution, before the sampler changes the logits.
        let raw = self.logprobs.map(|_| self.logits.clone());
        let next = match &mut self.constraint {
            None => sampler.sample(&mut self.logits),
            Some(c) => match c.sample(session.model, sampler, &mut self.logits) {
                Some(t) => t,
                None => {
                    return Err(StopReason::Grammar(
                        "the grammar allows no token of this model's vocabulary here".into(),
                    ))
                }
            },
        };
        sampler.accept(next);
        self.generated += 1;
        if tok.is_eog(next) {
            return Err(StopReason::EndOfGeneration);
        }
        if let Some(c) = &mut self.constraint {
            if let Err(e) = c.matcher.advance(tok.token_bytes(next)) {
                return Err(StopReason::Grammar(e.to_string()));
            }
        }
        if let (Some(raw), Some(n_top)) = (raw, self.logprobs) {
            self.pending.push(TokenLogprob::of(&raw, next, n_top));
        }
        let text = self.decoder.push(tok.token_bytes(next));
        let (emit, hit) = self.stops.push(&text);
        if !emit.is_empty() {
            if !on_text(&emit, &self.pending) {
                return Err(StopReason::Cancelled);
            }
            self.pending.clear();
        }
        if let Some(s) = hit {
            return Err(StopReason::StopString(s));
        }
        // The grammar's text is complete and nothing may follow: end without another step.
        if self
            .constraint
            .as_ref()
            .is_some_and(|c| c.matcher.must_end())
        {
            return Err(StopReason::EndOfGeneration);
        }
        if session.tokens.len() >= session.n_ctx() {
            return Err(StopReason::ContextFull);
        }
        Ok(next)
    }
}

fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// Holds back generated text that might be the start of a stop string.
struct StopMatcher {
    stops: Vec<String>,
    pending: String,
}

impl StopMatcher {
    fn new(stops: Vec<String>) -> Self {
        StopMatcher {
            stops,
            pending: String::new(),
        }
    }

    /// Add text; returns what can be emitted and the stop string if one was found.
    fn push(&mut self, text: &str) -> (String, Option<String>) {
        self.pending.push_str(text);
        let found = self
            .stops
            .iter()
            .filter(|s| !s.is_empty())
            .filter_map(|s| self.pending.find(s.as_str()).map(|at| (at, s)))
            .min_by_key(|(at, _)| *at);
        if let Some((at, s)) = found {
            let emit = self.pending[..at].to_string();
            self.pending.clear();
            return (emit, Some(s.clone()));
        }
        // Keep the longest suffix that is a prefix of some stop string.
        let mut keep = 0;
        for s in &self.stops {
            for (i, _) in self.pending.char_indices() {
                let tail = &self.pending[i..];
                if s.starts_with(tail) {
                    keep = keep.max(tail.len());
                    break;
                }
            }
        }
        let cut = self.pending.len() - keep;
        let emit = self.pending[..cut].to_string();
        self.pending.drain(..cut);
        (emit, None)
    }

    fn finish(&mut self, tail: &str) -> String {
        self.pending.push_str(tail);
        std::mem::take(&mut self.pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Logits through a Q8_0 cache against an f16 cache, as the largest difference relative to
    /// the largest f16 logit (up to 1.6e-2 seen on the synthetic model).
    const Q8_0_CACHE_VS_F16: f32 = 3e-2;

    #[test]
    fn q8_0_cache_gives_the_f16_caches_logits_within_budget() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../testdata/reference/synthetic/llama3-synthetic-q8_0.gguf");
        let model = Model::load(&path, 2).unwrap();
        let vocab = model.n_vocab() as u32;
        // A prompt of 20 tokens takes the per-query attention, one of 100 the tiled one; then a
        // decoding step reads the cache query by query.
        for n in [20u32, 100] {
            let prompt: Vec<u32> = (0..n).map(|i| (i * 7919 + 13) % vocab).collect();
            let mut f16 = Session::new(&model, 128);
            let mut q8 =
                Session::with_cache_types(&model, 128, KvType::Q8_0, KvType::Q8_0).unwrap();
            for step in [&prompt[..], &[42]] {
                let (want, got) = (f16.eval(step).unwrap(), q8.eval(step).unwrap());
                let scale = want.iter().fold(0f32, |m, x| m.max(x.abs()));
                let diff = want
                    .iter()
                    .zip(&got)
                    .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
                assert!(
                    diff <= Q8_0_CACHE_VS_F16 * scale,
                    "n={n}: {diff} of {scale}"
                );
                assert_eq!(crate::argmax(&got), crate::argmax(&want), "n={n}");
            }
        }
    }

    #[test]
    fn stop_string_split_across_pieces_is_cut() {
        let stops = vec!["</end>".to_string()];
        let mut m = StopMatcher::new(stops);
        assert_eq!(m.push("hello </"), ("hello ".to_string(), None));
        assert_eq!(m.push("en"), (String::new(), None));
        assert_eq!(
            m.push("d> more"),
            (String::new(), Some("</end>".to_string()))
        );
    }

    #[test]
    fn near_miss_is_released() {
        let stops = vec!["STOP".to_string()];
        let mut m = StopMatcher::new(stops);
        assert_eq!(m.push("ST"), (String::new(), None));
        assert_eq!(m.push("ART"), ("START".to_string(), None));
        assert_eq!(m.finish("ST"), "ST");
    }
}
