//! The real models behind the [`Scheduler`](crate::scheduler::Scheduler): [`EngineLoader`]
//! resolves store names and loads them; a [`Runner`] is a loaded model with one thread per slot
//! and one decoding loop.
//!
//! Each slot thread owns a [`Session`] (its own KV cache) for as long as the model is loaded, so
//! a conversation that comes back to the same slot reuses its cached prefix. A slot thread
//! processes its request's prompt, then lends its session to the model's decoding loop, which
//! decodes every active request together: one [`Model::forward_batch`] per step, one token per
//! request (continuous batching: requests join between steps and leave when they end). A decode
//! step in a batch gives each request the bits it would get alone, so the answers do not depend
//! on the load. A slot's cache keeps its conversation for the next turn; the slots also share
//! the prompts they processed ([`Prefixes`]), so that a system prompt is computed once. Text
//! goes back to the request through a bounded channel; when the request is gone (the client
//! disconnected and its response body was dropped) the next send fails and generation stops
//! there, freeing the slot.

use crate::error::{Result, ServerError};
use crate::prefixes::Prefixes;
use crate::scheduler::{LoadRequest, Loader, Plan};
use engine::{
    Cancel, EngineError, GenerateOptions, Generation, GenerationStats, HParams, KvType, Message,
    Model, Sampler, SamplerConfig, Sequence, Session, Step, TokenLogprob,
};
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use store::{ModelName, ResolvedModel, Store, StoreError};
use tokio::sync::mpsc;

/// A model's context when neither the request nor the model's `PARAMETER num_ctx` says: its
/// training context, at most this (as `hearth run`).
pub const DEFAULT_MAX_CTX: usize = 4096;

/// Loads store models for the scheduler.
pub struct EngineLoader {
    pub store: Store,
    /// Threads of each loaded model's pool.
    pub threads: usize,
}

/// What [`EngineLoader::plan`] found: the resolved model and its opened, verified file.
pub struct Found {
    resolved: ResolvedModel,
    gguf: gguf::Gguf,
}

/// Parses a model name from a request: a 400 that says why when it is not one.
pub fn parse_name(model: &str) -> Result<ModelName> {
    if model.trim().is_empty() {
        return Err(ServerError::BadRequest("model is required".into()));
    }
    ModelName::parse(model)
        .map_err(|e| ServerError::BadRequest(format!("invalid model name {model:?}: {e}")))
}

impl EngineLoader {
    /// Resolves a request's model name, mapping "not installed" to a 404.
    pub fn resolve(&self, model: &str) -> Result<ResolvedModel> {
        let name = parse_name(model)?;
        self.store.resolve(&name).map_err(|e| match e {
            StoreError::NotInStore { .. } => ServerError::ModelNotFound(model.to_string()),
            e => e.into(),
        })
    }
}

impl Loader for EngineLoader {
    type Model = Runner;
    type Detail = Found;

    fn plan(&self, request: &LoadRequest, slots: usize) -> Result<Plan<Found>> {
        let resolved = self.resolve(&request.model)?;
        let gguf = self.store.verify(&resolved)?;
        let hp = HParams::from_gguf(&gguf)?;
        let from_params = resolved
            .params
            .get("num_ctx")
            .and_then(|v| v.as_u64())
            .and_then(|n| usize::try_from(n).ok())
            .filter(|&n| n > 0);
        let mut n_ctx = request
            .n_ctx
            .or(from_params)
            .unwrap_or_else(|| hp.n_ctx_train.clamp(1, DEFAULT_MAX_CTX));
        // Keys and values, f16, every layer, every position, every slot; an encoder (an
        // embedding model) keeps none, and reads no more positions than it was trained on.
        // Several slots also share prompt prefixes, within one more context's worth.
        let kv_bytes = if hp.arch.is_encoder() {
            n_ctx = n_ctx.min(hp.n_ctx_train.max(1));
            0
        } else {
            let caches = if slots > 1 { slots + 1 } else { slots };
            kv_bytes(&hp, n_ctx) * caches as u64
        };
        // Several slots decode together: the matrices are packed for batches at load.
        let packed = if slots > 1 {
            engine::packed_weight_bytes(&gguf)
        } else {
            0
        };
        Ok(Plan {
            name: resolved.name.to_string(),
            n_ctx,
            file_bytes: resolved.model.size + packed,
            kv_bytes,
            detail: Found { resolved, gguf },
        })
    }

    fn load(&self, plan: Plan<Found>, slots: usize) -> Result<Runner> {
        let Found { resolved, gguf } = plan.detail;
        let mut model = Model::from_gguf(gguf, self.threads)?;
        if slots > 1 {
            let Model { weights, gguf, .. } = &mut model;
            weights.pack(gguf, self.threads);
        }
        // A Jinja TEMPLATE layer (from `hearth create`) replaces the file's; a Go template (from
        // Ollama's registry) cannot be rendered and the file's own, which such models carry, is used.
        if let Some(t) = resolved.template.as_deref() {
            if !chat::is_go_template(t) {
                model.set_template(t)?;
            }
        }
        Ok(Runner::start(Arc::new(model), resolved, plan.n_ctx, slots))
    }
}

/// Bytes of an f16 cache of `n_ctx` positions: keys and values, every layer.
fn kv_bytes(hp: &HParams, n_ctx: usize) -> u64 {
    2 * hp.n_layer as u64 * KvType::F16.row_bytes(hp.n_head_kv * hp.head_dim) as u64 * n_ctx as u64
}

/// One generation for a slot thread.
pub struct Job {
    pub tokens: Vec<u32>,
    pub sampler: SamplerConfig,
    pub generate: GenerateOptions,
    pub events: mpsc::Sender<Event>,
    /// Held until the generation has ended: the scheduler's lease, so the slot is not given to
    /// another request before this one has let go of it.
    pub guard: Box<dyn Send>,
}

/// A token as the APIs show it: its bytes (the text is their lossy UTF-8) and log-probability.
#[derive(Clone, Debug)]
pub struct TokenChoice {
    pub bytes: Vec<u8>,
    pub logprob: f32,
}

impl TokenChoice {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}

/// A generated token with the most likely alternatives at its step (most likely first).
#[derive(Clone, Debug)]
pub struct Logprob {
    pub chosen: TokenChoice,
    pub top: Vec<TokenChoice>,
}

/// What a slot thread reports.
#[derive(Debug)]
pub enum Event {
    /// A piece of text and, when the request asked for them, its tokens' log-probabilities.
    Text(String, Vec<Logprob>),
    Done(GenerationStats),
    Failed(EngineError),
}

/// A loaded model and its slot threads and decoding loop.
pub struct Runner {
    pub model: Arc<Model>,
    pub resolved: ResolvedModel,
    pub n_ctx: usize,
    /// Senders of the idle slot threads. Dropping the runner drops them, which ends the threads.
    idle: Arc<Mutex<Vec<Slot>>>,
}

impl Runner {
    fn start(model: Arc<Model>, resolved: ResolvedModel, n_ctx: usize, slots: usize) -> Runner {
        let idle = Arc::new(Mutex::new(Vec::with_capacity(slots)));
        let mut queues = Vec::with_capacity(slots);
        for _ in 0..slots {
            let (tx, rx) = sync_channel(1);
            lock(&idle).push(Slot {
                jobs: tx,
                cached: Arc::default(),
            });
            queues.push(rx);
        }
        let (shared, pool) = (model.clone(), Arc::downgrade(&idle));
        // One slot's cache serves its own conversation; the slots share prompt prefixes.
        let prefixes = (slots > 1 && !model.hparams.arch.is_encoder())
            .then(|| Mutex::new(Prefixes::new(kv_bytes(&model.hparams, n_ctx) as usize)));
        // The sessions borrow the model and pass between the slot threads and the decoding loop,
        // so they all run in one scope over it. The loop ends when the last slot thread has.
        std::thread::spawn(move || {
            let model = &*shared;
            let (to_decode, turns) = channel();
            let prefixes = prefixes.as_ref();
            std::thread::scope(|s| {
                s.spawn(move || decode_loop(model, turns));
                for jobs in queues {
                    let (to_decode, pool) = (to_decode.clone(), pool.clone());
                    s.spawn(move || slot_thread(model, n_ctx, prefixes, jobs, pool, to_decode));
                }
                drop(to_decode);
            });
        });
        Runner {
            model,
            resolved,
            n_ctx,
            idle,
        }
    }

    /// Hands `job` to an idle slot: the one whose cache holds the longest start of the job's
    /// tokens (a conversation's next turn, a shared system prompt), else the one holding the least,
    /// so that other conversations' caches survive. The caller holds a scheduler slot, so one is
    /// idle.
    pub fn submit(&self, job: Job) -> Result<()> {
        let slot = {
            let mut idle = lock(&self.idle);
            let best = idle
                .iter()
                .enumerate()
                .max_by_key(|(_, s)| {
                    let cached = lock(&s.cached);
                    let shared = cached
                        .iter()
                        .zip(&job.tokens)
                        .take_while(|(a, b)| a == b)
                        .count();
                    // A slot whose cache the job would mostly overwrite (it shares only the
                    // template's first tokens, say) counts as no match.
                    let keeps = 2 * shared >= cached.len();
                    (keeps, shared, std::cmp::Reverse(cached.len()))
                })
                .map(|(i, _)| i)
                .ok_or_else(|| {
                    ServerError::Internal("no idle slot for a scheduled request".into())
                })?;
            idle.swap_remove(best)
        };
        let back = slot.clone();
        slot.jobs
            .send((job, back))
            .map_err(|_| ServerError::Internal("a slot thread has ended".into()))
    }

    /// Tokens of `messages` (and `tools`, the tool definitions) in the model's chat template,
    /// or in `template` (a request's own), ready for the assistant's answer.
    pub fn chat_tokens(
        &self,
        messages: &[Message],
        tools: Option<&[serde_json::Value]>,
        template: Option<&chat::ChatTemplate>,
    ) -> Result<Vec<u32>> {
        match template {
            None => Ok(self
                .model
                .chat_tokens_with(&self.model.template, messages, tools, true)?),
            // The request's template is the client's to fix, so its failures are a 400.
            Some(t) => self
                .model
                .chat_tokens_with(t, messages, tools, true)
                .map_err(|e| {
                    ServerError::BadRequest(format!(
                        "the request's template failed to render: {e}; fix the Jinja template or leave template out to use the model's"
                    ))
                }),
        }
    }
}

/// A slot thread's job queue (of one), and the tokens its session's cache holds; the job carries
/// the slot back to the idle list.
#[derive(Clone)]
struct Slot {
    jobs: SyncSender<(Job, Slot)>,
    cached: Arc<Mutex<Vec<u32>>>,
}

type Pool = Weak<Mutex<Vec<Slot>>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs the jobs sent to one slot until the runner is dropped. Each job comes with this slot's
/// own sender, which the thread puts back in the idle list when the job is done (the thread
/// keeps none between jobs, so that dropping the list ends it). The prompt is processed here;
/// the decoding steps run in the model's [`decode_loop`], which hands the session back at the end.
fn slot_thread<'m>(
    model: &'m Model,
    n_ctx: usize,
    prefixes: Option<&Mutex<Prefixes>>,
    jobs: Receiver<(Job, Slot)>,
    pool: Pool,
    to_decode: Sender<Turn<'m>>,
) {
    let mut session = Session::new(model, n_ctx);
    let (back, returned) = channel();
    while let Ok((job, me)) = jobs.recv() {
        let mut sampler = Sampler::new(job.sampler);
        let events = job.events;
        // A client gone while its prompt is processed stops it at the next batch of 512 tokens.
        let mut generate = job.generate;
        let watch = events.clone();
        generate.cancel = Some(Cancel::new(move || watch.is_closed()));
        if let Some(store) = prefixes {
            let best = lock(store).best(&job.tokens);
            if let Some((prefix, _)) = best {
                session.adopt(&prefix, &job.tokens);
            }
        }
        let result = match session.start(&job.tokens, &mut sampler, &generate) {
            Ok(generation) => {
                if let Some(store) = prefixes {
                    let bytes = session.kv_bytes_per_token() * session.tokens().len();
                    // Copied outside the lock: a long prompt's keys and values take a moment.
                    if lock(store).wants(session.tokens(), bytes) {
                        let prefix = session.snapshot();
                        lock(store).insert(prefix);
                    }
                }
                let turn = Turn {
                    session,
                    generation,
                    sampler,
                    events: events.clone(),
                    back: back.clone(),
                };
                if to_decode.send(turn).is_err() {
                    return;
                }
                let Ok((lent, result)) = returned.recv() else {
                    return;
                };
                session = lent;
                result
            }
            Err(e) => Err(e),
        };
        let last = match result {
            Ok(stats) => Event::Done(stats),
            Err(e) => {
                // The cache may hold part of a failed prompt: start the next one afresh.
                session.clear();
                Event::Failed(e)
            }
        };
        // Back in the idle list, with what its cache holds, before the client hears the end: a
        // conversation's next turn, sent as soon as this one's answer is complete, must find
        // this slot (and its cache), and before the lease (and its permit) is released.
        *lock(&me.cached) = session.tokens().to_vec();
        let Some(idle) = pool.upgrade() else {
            let _ = events.blocking_send(last);
            return;
        };
        lock(&idle).push(me);
        let _ = events.blocking_send(last);
        drop(job.guard);
    }
}

/// A request being decoded: its slot's session, lent to the decoding loop until it ends.
struct Turn<'m> {
    session: Session<'m>,
    generation: Generation,
    sampler: Sampler,
    events: mpsc::Sender<Event>,
    /// Where the session and the outcome go back to the slot thread.
    back: Sender<(Session<'m>, Result<GenerationStats, EngineError>)>,
}

impl Turn<'_> {
    /// Whether the client has room for a step's text: a step sends at most two pieces (its
    /// token's text and, at the end, what was held back). A client that is behind waits, rather
    /// than making the whole batch wait on it; a gone one steps, and stops at its next piece.
    fn ready(&self) -> bool {
        self.events.is_closed() || self.events.capacity() >= 2
    }

    fn end(self, result: Result<GenerationStats, EngineError>) {
        let _ = self.back.send((self.session, result));
    }
}

/// Decodes the model's active requests together until every slot thread has ended: each step
/// takes in the requests whose prompts are done, samples every ready request's next token (each
/// with its own sampler, streaming its text), and runs those tokens in one forward pass.
fn decode_loop<'m>(model: &'m Model, turns: Receiver<Turn<'m>>) {
    let mut active: Vec<Turn> = Vec::new();
    loop {
        if active.is_empty() {
            match turns.recv() {
                Ok(turn) => active.push(turn),
                Err(_) => return,
            }
        }
        active.extend(turns.try_iter());
        let mut waiting = Vec::new();
        let mut feeding = Vec::with_capacity(active.len());
        for mut turn in active.drain(..) {
            if !turn.ready() {
                waiting.push(turn);
                continue;
            }
            let events = &turn.events;
            // Without `logprobs` the engine computes none and each piece's list stays empty.
            let step = turn
                .generation
                .step(&turn.session, &mut turn.sampler, |text, lps| {
                    let lps = lps.iter().map(|lp| logprob(model, lp)).collect();
                    events.try_send(Event::Text(text.to_string(), lps)).is_ok()
                });
            match step {
                Step::Feed(token) => feeding.push((turn, token)),
                Step::Done(stats) => turn.end(Ok(stats)),
            }
        }
        active = waiting;
        if feeding.is_empty() {
            if !active.is_empty() {
                // Every client is behind: give them a moment to read.
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            continue;
        }
        let mut seqs: Vec<Sequence> = feeding
            .iter_mut()
            .map(|(turn, token)| turn.session.decode_sequence(*token))
            .collect();
        // A batch fails only for a sequence the model cannot take: then each runs alone, so that
        // only that request fails (its slot clears its session).
        let logits: Vec<std::result::Result<Vec<f32>, EngineError>> =
            match model.forward_batch(&mut seqs) {
                Ok(logits) => logits.into_iter().map(Ok).collect(),
                Err(_) => seqs
                    .iter_mut()
                    .map(|seq| {
                        let alone = model.forward_batch(std::slice::from_mut(seq))?;
                        Ok(alone.into_iter().next().unwrap_or_default())
                    })
                    .collect(),
            };
        drop(seqs);
        for ((mut turn, _), logits) in feeding.into_iter().zip(logits) {
            match logits {
                Ok(logits) => {
                    turn.generation.accept_logits(logits);
                    active.push(turn);
                }
                Err(e) => turn.end(Err(e)),
            }
        }
    }
}

/// The engine's token ids turned into the bytes the APIs show.
fn logprob(model: &Model, lp: &TokenLogprob) -> Logprob {
    let choice = |id: u32, logprob: f32| TokenChoice {
        bytes: model.tokenizer.token_bytes(id).to_vec(),
        logprob,
    };
    Logprob {
        chosen: choice(lp.token, lp.logprob),
        top: lp.top.iter().map(|&(id, l)| choice(id, l)).collect(),
    }
}
