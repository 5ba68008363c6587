//! Aggregate decode speed of N sequences batched in one forward pass per step, against the
//! same sequences decoded one at a time (issue 6's continuous-batching target).
//!
//!   cargo run --release -p engine --example batch_speed -- MODEL.gguf [N] [STEPS] [THREADS]
//!
//! The matrices are packed for batches first, as `hearth serve` does; `HEARTH_NO_PACK=1` leaves
//! them as they are.

use engine::{argmax, Model, Sequence};
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = args
        .first()
        .expect("usage: batch_speed MODEL.gguf [N] [STEPS] [THREADS]");
    let n: usize = args.get(1).map_or(8, |v| v.parse().expect("N"));
    let steps: usize = args.get(2).map_or(64, |v| v.parse().expect("STEPS"));
    let threads: usize = args.get(3).map_or(2, |v| v.parse().expect("THREADS"));
    let mut model = Model::load(std::path::Path::new(path), threads).unwrap();
    // As `hearth serve` does when several slots decode together.
    if std::env::var_os("HEARTH_NO_PACK").is_none() {
        let Model { weights, gguf, .. } = &mut model;
        let bytes = weights.pack(gguf, threads);
        println!("packed the matrices for batches: {} MB", bytes >> 20);
    }
    let prompt = model.tokenizer.encode("Once upon a time", true, false);
    let prefill = |caches: &mut Vec<engine::KvCache>| -> Vec<u32> {
        caches
            .iter_mut()
            .map(|c| argmax(&model.forward(c, &prompt, 0, false).unwrap()))
            .collect()
    };

    let mut caches: Vec<_> = (0..n)
        .map(|_| model.new_cache(prompt.len() + steps + 1))
        .collect();
    let mut next = prefill(&mut caches);
    let start = Instant::now();
    for (i, cache) in caches.iter_mut().enumerate() {
        for s in 0..steps {
            let l = model
                .forward(cache, &[next[i]], prompt.len() + s, false)
                .unwrap();
            next[i] = argmax(&l);
        }
    }
    let alone = (n * steps) as f64 / start.elapsed().as_secs_f64();

    let mut caches: Vec<_> = (0..n)
        .map(|_| model.new_cache(prompt.len() + steps + 1))
        .collect();
    let mut next = prefill(&mut caches);
    let start = Instant::now();
    for s in 0..steps {
        let toks: Vec<[u32; 1]> = next.iter().map(|&t| [t]).collect();
        let mut seqs: Vec<Sequence> = caches
            .iter_mut()
            .zip(&toks)
            .map(|(cache, tokens)| Sequence {
                cache,
                tokens,
                pos: prompt.len() + s,
            })
            .collect();
        let logits = model.forward_batch(&mut seqs).unwrap();
        next = logits.iter().map(|l| argmax(l)).collect();
    }
    let batched = (n * steps) as f64 / start.elapsed().as_secs_f64();
    println!(
        "{n} sequences x {steps} steps, {threads} threads: one at a time {alone:.1} t/s, batched \
         {batched:.1} t/s ({:.2}x)",
        batched / alone
    );
}
