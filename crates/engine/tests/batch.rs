//! Continuous batching: several sequences in one forward pass give the greedy tokens of the same
//! sequences run one at a time, on the real models. A decode step of 9 sequences is a batch of 9
//! tokens, which would take the tile kernels and another summation order for Q4_K and Q6_K; the
//! engine sums it as 9 batches of one instead, so the tokens (and logits) are those of a run alone.

use engine::{argmax, Model, Sequence};
use std::path::PathBuf;

fn real_model(file: &str) -> PathBuf {
    let dir = std::env::var_os("HEARTH_TEST_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/hearth/test-models")
        });
    let p = dir.join(file);
    assert!(
        p.exists(),
        "{} is missing: run scripts/fetch-test-models.sh",
        p.display()
    );
    p
}

/// Greedy steps per sequence.
const STEPS: usize = 12;

/// The greedy tokens of each prompt, one sequence at a time.
fn one_at_a_time(model: &Model, prompts: &[Vec<u32>]) -> Vec<Vec<u32>> {
    prompts
        .iter()
        .map(|p| {
            let mut cache = model.new_cache(256);
            let mut logits = model.forward(&mut cache, p, 0, false).unwrap();
            let mut out = Vec::new();
            for pos in p.len()..p.len() + STEPS {
                let t = argmax(&logits);
                out.push(t);
                logits = model.forward(&mut cache, &[t], pos, false).unwrap();
            }
            out
        })
        .collect()
}

/// The same prompts, each evaluated alone as a server admits a new request, then every decode
/// step with all the sequences in one forward pass.
fn batched(model: &Model, prompts: &[Vec<u32>]) -> Vec<Vec<u32>> {
    let mut caches: Vec<_> = prompts.iter().map(|_| model.new_cache(256)).collect();
    let mut next: Vec<u32> = prompts
        .iter()
        .zip(&mut caches)
        .map(|(p, cache)| argmax(&model.forward(cache, p, 0, false).unwrap()))
        .collect();
    let mut pos: Vec<usize> = prompts.iter().map(Vec::len).collect();
    let mut out: Vec<Vec<u32>> = next.iter().map(|&t| vec![t]).collect();
    for _ in 1..STEPS {
        let steps: Vec<[u32; 1]> = next.iter().map(|&t| [t]).collect();
        let mut seqs: Vec<Sequence> = caches
            .iter_mut()
            .zip(&steps)
            .zip(&pos)
            .map(|((cache, tokens), &pos)| Sequence { cache, tokens, pos })
            .collect();
        let logits = model.forward_batch(&mut seqs).unwrap();
        for (i, l) in logits.iter().enumerate() {
            pos[i] += 1;
            next[i] = argmax(l);
            out[i].push(next[i]);
        }
    }
    out
}

/// Prompts of one length batched from the start, prompt included: each is summed as a batch of
/// its own length, so even the prompt pass gives the bits of a run alone.
fn batched_from_the_prompt(model: &Model, prompts: &[Vec<u32>]) -> Vec<Vec<u32>> {
    let mut caches: Vec<_> = prompts.iter().map(|_| model.new_cache(256)).collect();
    let mut pos = vec![0; prompts.len()];
    let mut next: Vec<Vec<u32>> = prompts.to_vec();
    let mut out = vec![Vec::new(); prompts.len()];
    for _ in 0..STEPS {
        let mut seqs: Vec<Sequence> = caches
            .iter_mut()
            .zip(&next)
            .zip(&pos)
            .map(|((cache, tokens), &pos)| Sequence { cache, tokens, pos })
            .collect();
        let logits = model.forward_batch(&mut seqs).unwrap();
        for (i, l) in logits.iter().enumerate() {
            pos[i] += next[i].len();
            next[i] = vec![argmax(l)];
            out[i].push(next[i][0]);
        }
    }
    out
}

fn check(file: &str) {
    let model = Model::load(&real_model(file), 2).unwrap();
    let texts = [
        "The capital of France is",
        "def fibonacci(n):",
        "Once upon a time, in a small village by the sea, there lived an old fisherman who",
        "1, 2, 3, 4, 5,",
        "Translate to French: good morning",
        "Local language models are useful because",
        "The three primary colours are",
        "SELECT name FROM users WHERE",
        "Water boils at",
    ];
    let prompts: Vec<Vec<u32>> = texts
        .iter()
        .map(|t| model.tokenizer.encode(t, true, false))
        .collect();
    let alone = one_at_a_time(&model, &prompts);
    assert_eq!(batched(&model, &prompts), alone);
    // The prompts cut to one length (the shortest), batched prompt and all.
    let len = prompts.iter().map(Vec::len).min().unwrap();
    let same: Vec<Vec<u32>> = prompts.iter().map(|p| p[..len].to_vec()).collect();
    assert_eq!(
        batched_from_the_prompt(&model, &same),
        one_at_a_time(&model, &same)
    );
}

#[test]
fn batched_decoding_matches_one_at_a_time_smollm2() {
    check("smollm2-135m-instruct-q4_1.gguf");
}

#[test]
fn batched_decoding_matches_one_at_a_time_qwen2() {
    check("qwen2.5-coder-0.5b-instruct-q4_k_m.gguf");
}

#[test]
fn batched_decoding_matches_one_at_a_time_gemma3() {
    check("gemma-3-270m-q4_k_m.gguf");
}

#[test]
fn an_empty_sequence_in_a_batch_is_an_error() {
    let model = Model::load(&real_model("smollm2-135m-instruct-q4_1.gguf"), 1).unwrap();
    let (mut a, mut b) = (model.new_cache(8), model.new_cache(8));
    let mut seqs = [
        Sequence {
            cache: &mut a,
            tokens: &[1, 2],
            pos: 0,
        },
        Sequence {
            cache: &mut b,
            tokens: &[],
            pos: 0,
        },
    ];
    assert!(model.forward_batch(&mut seqs).is_err());
}
