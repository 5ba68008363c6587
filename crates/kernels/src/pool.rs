//! A small persistent thread pool with a spin-then-park barrier.
//!
//! The engine calls [`ThreadPool::run`] hundreds of times per token (once per matmul), so a call must
//! cost about a microsecond, not a thread spawn. Workers are started once; a call publishes the job
//! by bumping a generation counter, which the workers watch. Idle workers spin for a bounded time
//! (a decode step's gaps between matmuls are microseconds) and then sleep on a condition variable so
//! an idle process does not burn the CPU.
//!
//! [`ThreadPool::for_each_chunk`] does not need every thread: on a small shared VM a worker may be
//! descheduled for milliseconds, and waiting for it to show up would stall the caller for nothing.
//! Workers *enter* a job with a compare-and-swap on the (generation, entered count) word; once the
//! caller has run out of chunks it *closes* the job, and only waits for the workers that entered.
//! A worker that wakes up late sees the job closed and goes back to waiting.
//!
//! A panic in the job (on any thread) does not deadlock: every thread still finishes its share, and
//! `run` re-raises the first panic on the calling thread once all of them are done. The pool stays
//! usable afterwards.

use std::any::Any;
use std::cell::{Cell, UnsafeCell};
use std::ops::Range;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long an idle thread spins before it sleeps. Long enough to cover the gap between two matmuls
/// of a decode step (norms, attention, sampling on the calling thread), short enough that an idle pool
/// goes quiet at once by human standards.
const DEFAULT_SPIN: Duration = Duration::from_millis(2);

/// Spin iterations between two clock reads while spinning (reading the clock costs ~20 ns).
const SPINS_PER_CLOCK_CHECK: u32 = 64;

/// Layout of the job state word: generation in the high 32 bits, then a "closed" flag, then the
/// number of workers that entered the job.
const GEN_SHIFT: u32 = 32;
const CLOSED: u64 = 1 << 31;
const ENTERED: u64 = CLOSED - 1;

type Job = dyn Fn(usize) + Sync;

/// Keeps hot atomics on separate cache lines (128 bytes covers adjacent-line prefetch).
#[repr(align(128))]
struct Padded<T>(T);

impl<T> std::ops::Deref for Padded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

struct Shared {
    /// (generation << 32) | closed flag | entered count. The caller starts a job by storing a new
    /// generation with count 0; workers enter by incrementing the count while the job is open.
    state: Padded<AtomicU64>,
    /// Workers that finished the current job (only entered workers run it).
    finished: Padded<AtomicUsize>,
    /// The current job, lifetime-erased. Written by the caller before it publishes a generation
    /// (release) and read by workers after entering it (acquire); it is only dereferenced by
    /// entered workers, and the caller does not return before they all finished, so the borrow it
    /// came from is alive.
    job: UnsafeCell<Option<*const Job>>,
    shutdown: AtomicBool,
    /// The first panic payload of the current job, if any.
    panic: Mutex<Option<Box<dyn Any + Send>>>,
    /// Sleeping workers wait here for a new generation.
    wake_lock: Mutex<()>,
    wake: Condvar,
    sleepers: AtomicUsize,
    /// The caller sleeps here (after spinning) until the workers it waits for finished.
    done_lock: Mutex<()>,
    done: Condvar,
    caller_sleeping: AtomicBool,
    spin: Duration,
}

// SAFETY: the only non-Sync field is `job`, whose accesses are ordered by `state` (see its doc):
// the caller writes it only while no worker is inside a job (all that entered the previous one
// finished), and workers only read it after entering, before incrementing `finished`.
unsafe impl Sync for Shared {}
// SAFETY: the raw job pointer is only dereferenced under the protocol above.
unsafe impl Send for Shared {}

thread_local! {
    /// Set while this thread is executing a pool job; a nested `run` then executes serially instead
    /// of deadlocking on the busy pool.
    static IN_JOB: Cell<bool> = const { Cell::new(false) };
}

/// Persistent worker threads that run a closure on every thread at once.
///
/// `n_threads` counts the calling thread, which always takes part as thread index 0, so
/// `ThreadPool::new(1)` spawns nothing and runs everything inline.
pub struct ThreadPool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    /// Serializes concurrent `run` calls from different threads.
    run_lock: Mutex<()>,
    n_threads: usize,
}

impl ThreadPool {
    /// Starts `n_threads - 1` workers (`n_threads` includes the calling thread; 0 is treated as 1).
    pub fn new(n_threads: usize) -> ThreadPool {
        ThreadPool::with_spin(n_threads, DEFAULT_SPIN)
    }

    /// Like [`ThreadPool::new`], with a chosen spin time before idle threads sleep.
    pub fn with_spin(n_threads: usize, spin: Duration) -> ThreadPool {
        let n_threads = n_threads.max(1);
        let shared = Arc::new(Shared {
            state: Padded(AtomicU64::new(0)),
            finished: Padded(AtomicUsize::new(0)),
            job: UnsafeCell::new(None),
            shutdown: AtomicBool::new(false),
            panic: Mutex::new(None),
            wake_lock: Mutex::new(()),
            wake: Condvar::new(),
            sleepers: AtomicUsize::new(0),
            done_lock: Mutex::new(()),
            done: Condvar::new(),
            caller_sleeping: AtomicBool::new(false),
            spin,
        });
        let workers = (1..n_threads)
            .map(|index| {
                let shared = Arc::clone(&shared);
                std::thread::Builder::new()
                    .name(format!("hearth-worker-{index}"))
                    .spawn(move || worker_loop(&shared, index))
                    .expect("failed to spawn a worker thread")
            })
            .collect();
        ThreadPool {
            shared,
            workers,
            run_lock: Mutex::new(()),
            n_threads,
        }
    }

    /// Number of threads a job runs on, including the calling thread.
    pub fn n_threads(&self) -> usize {
        self.n_threads
    }

    /// Runs `f(thread_index)` once on every thread (the caller is index 0) and returns when all have
    /// finished. If any call panics, the first panic is re-raised here after all threads finished.
    ///
    /// A `run` from inside a job (nested) executes `f(0)`, `f(1)`, ... serially on the current
    /// thread, so `f` must not wait for its sibling indices.
    pub fn run(&self, f: &(dyn Fn(usize) + Sync)) {
        if self.n_threads == 1 || IN_JOB.with(Cell::get) {
            for i in 0..self.n_threads {
                f(i);
            }
            return;
        }
        self.dispatch(f, true);
    }

    /// Calls `f` on consecutive ranges of `chunk` items (the last may be shorter) covering
    /// `0..n_items`, spread over the threads. Chunks are claimed from a shared atomic counter, so a
    /// thread that finishes early takes more (work stealing); which thread gets which range is not
    /// fixed, and a worker that is not scheduled in time may get none.
    pub fn for_each_chunk(&self, n_items: usize, chunk: usize, f: &(dyn Fn(Range<usize>) + Sync)) {
        let chunk = chunk.max(1);
        let n_chunks = n_items.div_ceil(chunk);
        let range = |c: usize| c * chunk..((c + 1) * chunk).min(n_items);
        if n_chunks == 0 {
            return;
        }
        if self.n_threads == 1 || n_chunks == 1 || IN_JOB.with(Cell::get) {
            (0..n_chunks).for_each(|c| f(range(c)));
            return;
        }
        let next = AtomicUsize::new(0);
        self.dispatch(
            &|_| loop {
                let c = next.fetch_add(1, Ordering::Relaxed);
                if c >= n_chunks {
                    break;
                }
                f(range(c));
            },
            false,
        );
    }

    /// Publishes `f`, runs `f(0)` here, and waits for the workers: all of them if `everyone`,
    /// else only those that entered before the caller closed the job.
    fn dispatch(&self, f: &(dyn Fn(usize) + Sync), everyone: bool) {
        // A poisoned lock only means an earlier caller panicked while holding it; the pool state
        // is still consistent (every job ends with all entered workers finished).
        let _serial = self.run_lock.lock().unwrap_or_else(|e| e.into_inner());
        let shared = &*self.shared;

        // SAFETY: lifetime erasure only; the pointer is dereferenced by entered workers strictly
        // before they increment `finished`, and we do not return before every entered worker did,
        // so `f` outlives every use.
        let job: *const Job = unsafe {
            std::mem::transmute::<*const (dyn Fn(usize) + Sync + '_), *const Job>(f as *const _)
        };
        // SAFETY: no worker is inside a job (we waited for all entered ones last time), so nobody
        // reads `job` now; the release store of the new generation publishes this write.
        unsafe { *shared.job.get() = Some(job) };
        shared.finished.store(0, Ordering::Relaxed);
        // Only callers (serialized by `run_lock`) change the generation.
        let generation = (shared.state.load(Ordering::Relaxed) >> GEN_SHIFT).wrapping_add(1);
        shared
            .state
            .store(generation << GEN_SHIFT, Ordering::SeqCst);
        if shared.sleepers.load(Ordering::SeqCst) > 0 {
            let _g = shared.wake_lock.lock().unwrap_or_else(|e| e.into_inner());
            shared.wake.notify_all();
        }

        let mine = run_guarded(|| f(0));
        let target = if everyone {
            self.n_threads - 1
        } else {
            // Close the job: from now on late workers skip it; wait only for those inside.
            (shared.state.fetch_or(CLOSED, Ordering::AcqRel) & ENTERED) as usize
        };
        wait_until(
            shared.spin,
            || shared.finished.load(Ordering::Acquire) == target,
            || {
                shared.caller_sleeping.store(true, Ordering::SeqCst);
                let mut g = shared.done_lock.lock().unwrap_or_else(|e| e.into_inner());
                while shared.finished.load(Ordering::SeqCst) != target {
                    g = shared.done.wait(g).unwrap_or_else(|e| e.into_inner());
                }
                shared.caller_sleeping.store(false, Ordering::Relaxed);
            },
        );

        let theirs = shared
            .panic
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Err(payload) = mine {
            resume_unwind(payload);
        }
        if let Some(payload) = theirs {
            resume_unwind(payload);
        }
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        let shared = &*self.shared;
        shared.shutdown.store(true, Ordering::SeqCst);
        let generation = (shared.state.load(Ordering::Relaxed) >> GEN_SHIFT).wrapping_add(1);
        shared
            .state
            .store(generation << GEN_SHIFT | CLOSED, Ordering::SeqCst);
        {
            let _g = shared.wake_lock.lock().unwrap_or_else(|e| e.into_inner());
            shared.wake.notify_all();
        }
        for w in self.workers.drain(..) {
            // Jobs never unwind out of a worker (they are caught), so join only fails if the
            // thread was killed some other way; nothing to do about it in a destructor.
            let _ = w.join();
        }
    }
}

impl std::fmt::Debug for ThreadPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreadPool")
            .field("n_threads", &self.n_threads)
            .finish()
    }
}

/// Runs `f` with the nested-run flag set, catching a panic.
fn run_guarded(f: impl FnOnce()) -> Result<(), Box<dyn Any + Send>> {
    IN_JOB.with(|c| c.set(true));
    let r = catch_unwind(AssertUnwindSafe(f));
    IN_JOB.with(|c| c.set(false));
    r
}

/// Spins until `ready()` for at most `spin`, then calls `sleep` (which must block until ready).
fn wait_until(spin: Duration, ready: impl Fn() -> bool, sleep: impl FnOnce()) {
    let start = Instant::now();
    loop {
        for _ in 0..SPINS_PER_CLOCK_CHECK {
            if ready() {
                return;
            }
            std::hint::spin_loop();
        }
        if start.elapsed() >= spin {
            break;
        }
    }
    sleep();
}

fn worker_loop(shared: &Shared, index: usize) {
    let mut seen = 0u64; // the last generation this worker entered or skipped
    loop {
        let generation = |s: u64| s >> GEN_SHIFT;
        let changed = || generation(shared.state.load(Ordering::Acquire)) != seen;
        wait_until(shared.spin, changed, || {
            let mut g = shared.wake_lock.lock().unwrap_or_else(|e| e.into_inner());
            shared.sleepers.fetch_add(1, Ordering::SeqCst);
            while generation(shared.state.load(Ordering::SeqCst)) == seen {
                g = shared.wake.wait(g).unwrap_or_else(|e| e.into_inner());
            }
            shared.sleepers.fetch_sub(1, Ordering::SeqCst);
        });
        if shared.shutdown.load(Ordering::Acquire) {
            return;
        }
        // Enter the current job unless it is already closed.
        let mut s = shared.state.load(Ordering::Acquire);
        let entered = loop {
            if s & CLOSED != 0 {
                break false;
            }
            match shared
                .state
                .compare_exchange_weak(s, s + 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => break true,
                Err(now) => s = now,
            }
        };
        seen = generation(s);
        if !entered {
            continue;
        }
        // SAFETY: entering synchronized with the caller's publication of this generation
        // (acquire), and the caller keeps the closure alive until we increment `finished`.
        let job = unsafe { (*shared.job.get()).expect("a job is published with every generation") };
        // SAFETY: see above; the pointer came from a live `&(dyn Fn(usize) + Sync)`.
        if let Err(payload) = run_guarded(|| unsafe { (*job)(index) }) {
            let mut slot = shared.panic.lock().unwrap_or_else(|e| e.into_inner());
            slot.get_or_insert(payload);
        }
        shared.finished.fetch_add(1, Ordering::SeqCst);
        if shared.caller_sleeping.load(Ordering::SeqCst) {
            let _g = shared.done_lock.lock().unwrap_or_else(|e| e.into_inner());
            shared.done.notify_all();
        }
    }
}

/// A pointer that pool threads may write through at disjoint offsets (each element written by
/// exactly one thread while the owner of the buffer waits in a pool call).
#[derive(Clone, Copy)]
pub(crate) struct SharedMut<T>(pub(crate) *mut T);
// SAFETY: only used for writes to disjoint elements from different threads (see call sites).
unsafe impl<T> Sync for SharedMut<T> {}
// SAFETY: as above.
unsafe impl<T> Send for SharedMut<T> {}

impl<T> SharedMut<T> {
    /// The element pointer at `i` (a method, so closures capture the Sync wrapper, not the
    /// raw pointer field).
    #[inline]
    pub(crate) fn at(self, i: usize) -> *mut T {
        self.0.wrapping_add(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    #[test]
    fn run_calls_every_index_once() {
        for n in 1..=4 {
            let pool = ThreadPool::new(n);
            assert_eq!(pool.n_threads(), n);
            for _ in 0..200 {
                let hits: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
                pool.run(&|i| {
                    hits[i].fetch_add(1, Ordering::Relaxed);
                });
                assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1));
            }
        }
    }

    #[test]
    fn zero_threads_means_one() {
        let pool = ThreadPool::new(0);
        assert_eq!(pool.n_threads(), 1);
        let hit = AtomicUsize::new(0);
        pool.run(&|i| {
            assert_eq!(i, 0);
            hit.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(hit.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn indices_run_on_distinct_threads() {
        let pool = ThreadPool::new(3);
        let ids = Mutex::new(Vec::new());
        pool.run(&|_| ids.lock().unwrap().push(std::thread::current().id()));
        let mut ids = ids.into_inner().unwrap();
        ids.sort_by_key(|id| format!("{id:?}"));
        ids.dedup();
        assert_eq!(ids.len(), 3);
    }

    #[test]
    fn for_each_chunk_covers_every_item_once() {
        for n_threads in [1, 2, 3] {
            let pool = ThreadPool::new(n_threads);
            for (n_items, chunk) in [(0, 4), (1, 4), (7, 3), (64, 16), (1000, 7), (5, 0)] {
                let seen: Vec<AtomicUsize> = (0..n_items).map(|_| AtomicUsize::new(0)).collect();
                pool.for_each_chunk(n_items, chunk, &|r| {
                    assert!(r.len() <= chunk.max(1) && !r.is_empty());
                    for i in r {
                        seen[i].fetch_add(1, Ordering::Relaxed);
                    }
                });
                assert!(seen.iter().all(|s| s.load(Ordering::Relaxed) == 1));
            }
        }
    }

    #[test]
    fn for_each_chunk_with_late_workers() {
        // With no spinning, workers park between jobs and usually wake after the caller has
        // claimed every chunk and closed the job: this exercises the skip path many times.
        let pool = ThreadPool::with_spin(3, Duration::ZERO);
        for round in 0..500usize {
            let n = 1 + round % 9;
            let seen: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
            pool.for_each_chunk(n, 1, &|r| {
                for i in r {
                    seen[i].fetch_add(1, Ordering::Relaxed);
                }
            });
            assert!(
                seen.iter().all(|s| s.load(Ordering::Relaxed) == 1),
                "round {round}"
            );
            // Mandatory jobs still reach every thread afterwards.
            let hits = AtomicUsize::new(0);
            pool.run(&|_| {
                hits.fetch_add(1, Ordering::Relaxed);
            });
            assert_eq!(hits.load(Ordering::Relaxed), 3);
        }
    }

    #[test]
    fn wakes_after_parking() {
        // A zero spin makes every wait go through the condition variables.
        let pool = ThreadPool::with_spin(2, Duration::ZERO);
        let sum = AtomicU64::new(0);
        for round in 0..100u64 {
            pool.run(&|i| {
                sum.fetch_add(i as u64 + round, Ordering::Relaxed);
            });
            if round % 10 == 0 {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        // Each round adds (0 + round) + (1 + round).
        assert_eq!(
            sum.load(Ordering::Relaxed),
            (0..100).map(|r| 2 * r + 1).sum()
        );
    }

    #[test]
    fn worker_panic_propagates_and_pool_survives() {
        let pool = ThreadPool::new(2);
        let r = catch_unwind(AssertUnwindSafe(|| {
            pool.run(&|i| {
                if i == 1 {
                    panic!("worker boom");
                }
            })
        }));
        let msg = r.expect_err("the worker's panic must reach the caller");
        assert_eq!(msg.downcast_ref::<&str>(), Some(&"worker boom"));
        // Still usable.
        let hits = AtomicUsize::new(0);
        pool.run(&|_| {
            hits.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(hits.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn caller_panic_waits_for_workers() {
        let pool = ThreadPool::new(2);
        let worker_done = AtomicBool::new(false);
        let r = catch_unwind(AssertUnwindSafe(|| {
            pool.run(&|i| {
                if i == 0 {
                    panic!("caller boom");
                }
                std::thread::sleep(Duration::from_millis(20));
                worker_done.store(true, Ordering::SeqCst);
            })
        }));
        assert!(r.is_err());
        assert!(
            worker_done.load(Ordering::SeqCst),
            "run returned before the worker finished"
        );
    }

    #[test]
    fn nested_run_executes_serially() {
        let pool = ThreadPool::new(2);
        let inner = AtomicUsize::new(0);
        pool.run(&|_| {
            pool.run(&|_| {
                inner.fetch_add(1, Ordering::Relaxed);
            });
        });
        assert_eq!(inner.load(Ordering::Relaxed), 4);
    }

    #[test]
    fn concurrent_callers_are_serialized() {
        let pool = ThreadPool::new(2);
        let total = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..3 {
                s.spawn(|| {
                    for _ in 0..100 {
                        pool.run(&|_| {
                            total.fetch_add(1, Ordering::Relaxed);
                        });
                    }
                });
            }
        });
        assert_eq!(total.load(Ordering::Relaxed), 3 * 100 * 2);
    }
}
