//! [`Scheduler`]: which models are loaded, who may use them, and who waits.
//!
//! A model is loaded on first use by a [`Loader`] and kept while requests use it, then for its
//! `keep_alive`. Each loaded model has a fixed number of slots (a semaphore's permits); a
//! request holds one through its [`Lease`]. Loaded models' estimated sizes add up to at most the
//! memory budget: to load another, the least recently used idle models are unloaded first, and a
//! model larger than the whole budget is refused before anything is allocated. Requests that
//! cannot run at once (no free slot, or no memory until a busy model finishes) wait, at most
//! `max_queue` of them; beyond that [`ServerError::Busy`] (503).
//!
//! The loader is a trait so that the scheduling rules are tested with a fake model.

use crate::error::{Result, ServerError};
use crate::options::KeepAlive;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// What a request asks the scheduler for.
#[derive(Clone, Debug)]
pub struct LoadRequest {
    /// A model name (or whatever the loader accepts).
    pub model: String,
    /// The context size asked for; `None`: the model's default.
    pub n_ctx: Option<usize>,
}

/// What loading a model would take, worked out before anything is allocated.
#[derive(Clone, Debug)]
pub struct Plan<P> {
    /// The model's canonical name.
    pub name: String,
    /// The context size of each slot.
    pub n_ctx: usize,
    /// The weights' bytes (with their copy packed for batches when several slots decode together).
    pub file_bytes: u64,
    /// The KV caches' bytes, all slots together.
    pub kv_bytes: u64,
    /// What the loader needs to load it.
    pub detail: P,
}

impl<P> Plan<P> {
    pub fn bytes(&self) -> u64 {
        self.file_bytes + self.kv_bytes
    }

    /// Models are told apart by name and context size: a request for another `num_ctx` gets
    /// its own instance (the other, once idle, is evicted first when memory is short).
    fn key(&self) -> (String, usize) {
        (self.name.clone(), self.n_ctx)
    }
}

/// Loads models for the scheduler.
pub trait Loader: Send + Sync + 'static {
    /// A loaded model.
    type Model: Send + Sync + 'static;
    /// Loader-specific data of a [`Plan`] (a resolved path, say).
    type Detail: Send + 'static;

    /// Works out what loading `request` with `slots` slots would take. May block (it may hash a
    /// file); it is called on a blocking thread.
    fn plan(&self, request: &LoadRequest, slots: usize) -> Result<Plan<Self::Detail>>;

    /// Loads a planned model. Blocking.
    fn load(&self, plan: Plan<Self::Detail>, slots: usize) -> Result<Self::Model>;
}

/// The scheduler's limits.
#[derive(Clone, Debug)]
pub struct SchedulerConfig {
    /// Bytes the loaded models' estimates may add up to.
    pub memory_budget: u64,
    /// Slots (concurrent requests) per loaded model.
    pub slots: usize,
    /// Give a model fewer slots (halving, down to 1) when `slots` would not fit the memory
    /// budget, instead of refusing it.
    pub fit_slots: bool,
    /// Requests that may wait at once.
    pub max_queue: usize,
    /// How long an idle model stays loaded when a request does not say.
    pub default_keep_alive: KeepAlive,
}

/// A loaded model as `/api/ps` shows it.
#[derive(Clone, Debug)]
pub struct LoadedInfo<M> {
    pub name: String,
    pub n_ctx: usize,
    pub bytes: u64,
    /// When it will be unloaded if nobody uses it; `None`: never (or busy with no keep_alive).
    pub expires_at: Option<SystemTime>,
    pub active: usize,
    pub model: Arc<M>,
}

struct Entry<M> {
    name: String,
    n_ctx: usize,
    bytes: u64,
    model: Arc<M>,
    slots: Arc<Semaphore>,
    active: usize,
    last_used: Instant,
    keep_alive: KeepAlive,
    expires: Option<Instant>,
}

/// Loaded models by (name, context size).
type Entries<M> = HashMap<(String, usize), Entry<M>>;

pub struct Scheduler<L: Loader> {
    loader: L,
    config: SchedulerConfig,
    entries: Mutex<Entries<L::Model>>,
    /// Requests waiting for a slot or for memory.
    waiting: AtomicUsize,
    /// Signalled whenever a lease ends or a model is unloaded (memory may have become free).
    changed: Notify,
    /// One load at a time, so two loads never both count on the same free memory.
    loading: tokio::sync::Mutex<()>,
}

/// A slot of a loaded model, held for the length of one request. Dropping it frees the slot and
/// starts the model's keep-alive countdown.
pub struct Lease<L: Loader> {
    scheduler: Arc<Scheduler<L>>,
    key: (String, usize),
    model: Arc<L::Model>,
    n_ctx: usize,
    keep_alive: KeepAlive,
    /// How long loading took (zero when the model was already loaded).
    pub load_duration: Duration,
    _permit: OwnedSemaphorePermit,
}

impl<L: Loader> Lease<L> {
    pub fn model(&self) -> &Arc<L::Model> {
        &self.model
    }

    pub fn n_ctx(&self) -> usize {
        self.n_ctx
    }
}

impl<L: Loader> Drop for Lease<L> {
    fn drop(&mut self) {
        let s = &self.scheduler;
        let mut entries = s.lock();
        if let Some(e) = entries.get_mut(&self.key) {
            e.active -= 1;
            e.last_used = Instant::now();
            e.keep_alive = self.keep_alive;
            e.expires = self.keep_alive.map(|d| e.last_used + d);
            if e.active == 0 && self.keep_alive == Some(Duration::ZERO) {
                entries.remove(&self.key);
            }
        }
        drop(entries);
        s.changed.notify_waiters();
    }
}

/// Counts a request among the waiting while it lives.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl<L: Loader> Scheduler<L> {
    pub fn new(loader: L, config: SchedulerConfig) -> Arc<Scheduler<L>> {
        Arc::new(Scheduler {
            loader,
            config,
            entries: Mutex::default(),
            waiting: AtomicUsize::new(0),
            changed: Notify::new(),
            loading: tokio::sync::Mutex::new(()),
        })
    }

    pub fn config(&self) -> &SchedulerConfig {
        &self.config
    }

    pub fn loader(&self) -> &L {
        &self.loader
    }

    /// Requests waiting now.
    pub fn queue_len(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries<L::Model>> {
        // A poisoned lock only means a thread panicked while holding it; the map stays valid.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Joins the queue, or answers 503 when it is full.
    fn join_queue(&self) -> Result<Waiting<'_>> {
        let before = self.waiting.fetch_add(1, Ordering::SeqCst);
        let guard = Waiting(&self.waiting);
        if before >= self.config.max_queue {
            return Err(ServerError::Busy(before));
        }
        Ok(guard)
    }

    /// A slot of the model `request` names, loading it first if needed (`keep_alive`: how long
    /// it stays loaded after this request; `None` in the option: the default).
    pub async fn acquire(
        self: &Arc<Self>,
        request: LoadRequest,
        keep_alive: Option<KeepAlive>,
    ) -> Result<Lease<L>> {
        let keep_alive = keep_alive.unwrap_or(self.config.default_keep_alive);
        let mut slots = self.config.slots;
        let plan = loop {
            let (this, request) = (self.clone(), request.clone());
            let plan = tokio::task::spawn_blocking(move || this.loader.plan(&request, slots))
                .await
                .map_err(|e| ServerError::Internal(format!("planning a load failed: {e}")))??;
            if !self.config.fit_slots || slots == 1 || plan.bytes() <= self.config.memory_budget {
                break plan;
            }
            slots /= 2;
        };
        if plan.bytes() > self.config.memory_budget {
            return Err(ServerError::TooLarge {
                needed: plan.bytes(),
                file: plan.file_bytes,
                kv: plan.kv_bytes,
                slots,
                n_ctx: plan.n_ctx,
                budget: self.config.memory_budget,
            });
        }
        let key = plan.key();
        let needed = plan.bytes();
        let mut plan = Some(plan);
        let mut queued: Option<Waiting<'_>> = None;
        loop {
            let existing = self.lock().get(&key).map(|e| e.slots.clone());
            if let Some(sem) = existing {
                let permit = match sem.clone().try_acquire_owned() {
                    Ok(p) => p,
                    Err(_) => {
                        if queued.is_none() {
                            queued = Some(self.join_queue()?);
                        }
                        sem.clone()
                            .acquire_owned()
                            .await
                            .map_err(|_| ServerError::ShuttingDown)?
                    }
                };
                let mut entries = self.lock();
                // Unloaded while this request waited for its permit: start over.
                let Some(e) = entries.get_mut(&key) else {
                    continue;
                };
                if !Arc::ptr_eq(&e.slots, &sem) {
                    continue;
                }
                e.active += 1;
                e.expires = None;
                return Ok(Lease {
                    scheduler: self.clone(),
                    model: e.model.clone(),
                    n_ctx: e.n_ctx,
                    key,
                    keep_alive,
                    load_duration: Duration::ZERO,
                    _permit: permit,
                });
            }
            let _loading = match self.loading.try_lock() {
                Ok(guard) => guard,
                Err(_) => {
                    if queued.is_none() {
                        queued = Some(self.join_queue()?);
                    }
                    self.loading.lock().await
                }
            };
            if self.lock().contains_key(&key) {
                continue;
            }
            if !self.make_room(needed) {
                if queued.is_none() {
                    queued = Some(self.join_queue()?);
                }
                let notified = self.changed.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                // Checked again now that a wake-up cannot be missed.
                if !self.make_room(needed) {
                    notified.await;
                }
                continue;
            }
            let Some(plan) = plan.take() else {
                return Err(ServerError::Internal(
                    "a model was planned once but loaded twice".into(),
                ));
            };
            let (name, n_ctx, bytes) = (plan.name.clone(), plan.n_ctx, plan.bytes());
            let t0 = Instant::now();
            let this = self.clone();
            let loaded = tokio::task::spawn_blocking(move || this.loader.load(plan, slots))
                .await
                .map_err(|e| ServerError::Internal(format!("loading the model failed: {e}")))??;
            let sem = Arc::new(Semaphore::new(slots));
            let permit = sem
                .clone()
                .try_acquire_owned()
                .map_err(|_| ServerError::Internal("a new model has no free slot".into()))?;
            let model = Arc::new(loaded);
            // Inserted already in use, so nobody evicts it before this request runs.
            self.lock().insert(
                key.clone(),
                Entry {
                    name,
                    n_ctx,
                    bytes,
                    model: model.clone(),
                    slots: sem,
                    active: 1,
                    last_used: Instant::now(),
                    keep_alive,
                    expires: None,
                },
            );
            return Ok(Lease {
                scheduler: self.clone(),
                model,
                n_ctx,
                key,
                keep_alive,
                load_duration: t0.elapsed(),
                _permit: permit,
            });
        }
    }

    /// Unloads least recently used idle models until `bytes` more fit; false if they cannot
    /// (busy models hold the memory).
    fn make_room(&self, bytes: u64) -> bool {
        let mut entries = self.lock();
        loop {
            let used: u64 = entries.values().map(|e| e.bytes).sum();
            if used + bytes <= self.config.memory_budget {
                return true;
            }
            let lru = entries
                .iter()
                .filter(|(_, e)| e.active == 0)
                .min_by_key(|(_, e)| e.last_used)
                .map(|(k, _)| k.clone());
            match lru {
                Some(k) => {
                    entries.remove(&k);
                }
                None => return false,
            }
        }
    }

    /// Unloads idle models whose keep-alive has run out by `now`; returns how many.
    pub fn sweep(&self, now: Instant) -> usize {
        let mut entries = self.lock();
        let before = entries.len();
        entries.retain(|_, e| e.active > 0 || e.expires.is_none_or(|t| t > now));
        let removed = before - entries.len();
        drop(entries);
        if removed > 0 {
            self.changed.notify_waiters();
        }
        removed
    }

    /// Unloads every instance of model `name` now, or (if busy) as soon as its requests end.
    /// Returns whether it was loaded.
    pub fn unload(&self, name: &str) -> bool {
        let mut entries = self.lock();
        let mut found = false;
        entries.retain(|(n, _), e| {
            if n != name {
                return true;
            }
            found = true;
            e.keep_alive = Some(Duration::ZERO);
            e.active > 0
        });
        drop(entries);
        self.changed.notify_waiters();
        found
    }

    /// The loaded models, most recently used first.
    pub fn loaded(&self) -> Vec<LoadedInfo<L::Model>> {
        let entries = self.lock();
        let now = (Instant::now(), SystemTime::now());
        let mut list: Vec<_> = entries
            .values()
            .map(|e| {
                let info = LoadedInfo {
                    name: e.name.clone(),
                    n_ctx: e.n_ctx,
                    bytes: e.bytes,
                    expires_at: e
                        .expires
                        .map(|t| now.1 + t.saturating_duration_since(now.0)),
                    active: e.active,
                    model: e.model.clone(),
                };
                (e.last_used, info)
            })
            .collect();
        list.sort_by_key(|e| std::cmp::Reverse(e.0));
        list.into_iter().map(|(_, i)| i).collect()
    }

    /// Unloads everything idle (at shutdown).
    pub fn unload_all(&self) {
        self.lock().retain(|_, e| e.active > 0);
        self.changed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Models named `<name>=<bytes>`; "missing" is not found.
    #[derive(Default)]
    struct FakeLoader {
        loads: AtomicUsize,
    }

    impl Loader for FakeLoader {
        type Model = String;
        type Detail = ();

        fn plan(&self, request: &LoadRequest, slots: usize) -> Result<Plan<()>> {
            let (_, bytes) = request
                .model
                .split_once('=')
                .ok_or_else(|| ServerError::ModelNotFound(request.model.clone()))?;
            let n_ctx = request.n_ctx.unwrap_or(100);
            Ok(Plan {
                name: request.model.clone(),
                n_ctx,
                file_bytes: bytes.parse().unwrap(),
                kv_bytes: (n_ctx * slots) as u64,
                detail: (),
            })
        }

        fn load(&self, plan: Plan<()>, _slots: usize) -> Result<String> {
            self.loads.fetch_add(1, Ordering::SeqCst);
            Ok(plan.name)
        }
    }

    fn scheduler(budget: u64, slots: usize, max_queue: usize) -> Arc<Scheduler<FakeLoader>> {
        Scheduler::new(
            FakeLoader::default(),
            SchedulerConfig {
                memory_budget: budget,
                slots,
                fit_slots: false,
                max_queue,
                default_keep_alive: Some(Duration::from_secs(300)),
            },
        )
    }

    fn req(model: &str) -> LoadRequest {
        LoadRequest {
            model: model.to_string(),
            n_ctx: Some(0),
        }
    }

    #[tokio::test]
    async fn a_loaded_model_is_reused_and_unknown_ones_are_404() {
        let s = scheduler(1000, 2, 4);
        let a = s.acquire(req("a=100"), None).await.unwrap();
        assert_eq!(a.model().as_str(), "a=100");
        drop(a);
        let _a = s.acquire(req("a=100"), None).await.unwrap();
        assert_eq!(s.loader().loads.load(Ordering::SeqCst), 1);
        let e = s.acquire(req("missing"), None).await.err().unwrap();
        assert!(matches!(e, ServerError::ModelNotFound(_)));
    }

    #[tokio::test]
    async fn least_recently_used_idle_model_is_evicted_for_room() {
        let s = scheduler(250, 1, 4);
        drop(s.acquire(req("a=100"), None).await.unwrap());
        drop(s.acquire(req("b=100"), None).await.unwrap());
        // a was used first: it goes to make room for c.
        drop(s.acquire(req("c=100"), None).await.unwrap());
        let names: Vec<String> = s.loaded().into_iter().map(|i| i.name).collect();
        assert_eq!(names, ["c=100", "b=100"]);
    }

    #[tokio::test]
    async fn a_model_larger_than_the_budget_is_refused_with_the_numbers() {
        let s = scheduler(250, 1, 4);
        let e = s.acquire(req("huge=300"), None).await.err().unwrap();
        assert!(e.to_string().contains("needs 300 bytes"), "{e}");
        assert!(e.to_string().contains("budget is 250 bytes"), "{e}");
        assert_eq!(s.loader().loads.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn fit_slots_halves_the_slots_until_the_model_fits() {
        let s = Scheduler::new(
            FakeLoader::default(),
            SchedulerConfig {
                memory_budget: 1000,
                slots: 4,
                fit_slots: true,
                max_queue: 4,
                default_keep_alive: None,
            },
        );
        // 700 bytes of weights and 100 per slot: 4 slots need 1100, 2 fit.
        let r = || LoadRequest {
            model: "a=700".into(),
            n_ctx: Some(100),
        };
        let (_one, _two) = (
            s.acquire(r(), None).await.unwrap(),
            s.acquire(r(), None).await.unwrap(),
        );
        let s2 = s.clone();
        let third = tokio::spawn(async move { s2.acquire(r(), None).await.map(|_| ()) });
        while s.queue_len() == 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(s.loaded()[0].bytes, 900);
        drop((_one, _two));
        third.await.unwrap().unwrap();
        // Without fitting, the same model is refused.
        let e = scheduler(1000, 4, 4)
            .acquire(r(), None)
            .await
            .err()
            .unwrap();
        assert!(e.to_string().contains("needs 1100 bytes"), "{e}");
    }

    #[tokio::test]
    async fn requests_beyond_the_slots_wait_and_beyond_the_queue_get_503() {
        let s = scheduler(1000, 1, 1);
        let first = s.acquire(req("a=100"), None).await.unwrap();
        let s2 = s.clone();
        let waiter = tokio::spawn(async move { s2.acquire(req("a=100"), None).await.is_ok() });
        while s.queue_len() == 0 {
            tokio::task::yield_now().await;
        }
        let e = s.acquire(req("a=100"), None).await.err().unwrap();
        assert!(matches!(e, ServerError::Busy(1)), "{e}");
        drop(first);
        assert!(waiter.await.unwrap());
        assert_eq!(s.queue_len(), 0);
    }

    #[tokio::test]
    async fn a_busy_model_is_not_evicted_the_new_one_waits() {
        let s = scheduler(150, 1, 4);
        let a = s.acquire(req("a=100"), None).await.unwrap();
        let s2 = s.clone();
        let b = tokio::spawn(async move { s2.acquire(req("b=100"), None).await.map(|_| ()) });
        while s.queue_len() == 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(s.loaded().len(), 1);
        drop(a);
        b.await.unwrap().unwrap();
        let names: Vec<String> = s.loaded().into_iter().map(|i| i.name).collect();
        assert_eq!(names, ["b=100"]);
    }

    #[tokio::test]
    async fn keep_alive_zero_unloads_after_the_request_and_sweep_expires_idle_models() {
        let s = scheduler(1000, 1, 4);
        drop(
            s.acquire(req("a=100"), Some(Some(Duration::ZERO)))
                .await
                .unwrap(),
        );
        assert!(s.loaded().is_empty());
        drop(
            s.acquire(req("b=100"), Some(Some(Duration::from_secs(10))))
                .await
                .unwrap(),
        );
        drop(s.acquire(req("c=100"), Some(None)).await.unwrap());
        assert_eq!(s.sweep(Instant::now()), 0);
        assert_eq!(s.sweep(Instant::now() + Duration::from_secs(11)), 1);
        let names: Vec<String> = s.loaded().into_iter().map(|i| i.name).collect();
        assert_eq!(names, ["c=100"], "keep_alive forever stays");
        assert!(s.unload("c=100"));
        assert!(s.loaded().is_empty());
    }
}
