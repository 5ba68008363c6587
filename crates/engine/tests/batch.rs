//! Continuous batching: several sequences in one forward pass give the greedy tokens of the same
//! sequences run one at a time, on the real models. A decode step of 9 sequences is a batch of 9
//! tokens, which would take the tile kernels and another summation order for Q4_K and Q6_K; the
//! engine sums it as 9 batches of one instead, so the tokens (and logits) are those of a run alone.

use engine::{
    argmax, GenerateOptions, Model, Sampler, SamplerConfig, Sequence, Session, Step, StopReason,
    TokenLogprob,
};
mod common;

use common::real_model;

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
    // 6 sequences: the 32-element types' matrices run them as one padded tile.
    assert_eq!(batched(&model, &prompts[..6]), alone[..6]);
    // The prompts cut to one length (the shortest), batched prompt and all.
    let len = prompts.iter().map(Vec::len).min().unwrap();
    let same: Vec<Vec<u32>> = prompts.iter().map(|p| p[..len].to_vec()).collect();
    let same_alone = one_at_a_time(&model, &same);
    assert_eq!(batched_from_the_prompt(&model, &same), same_alone);
    // As `hearth serve` runs several slots: the matrices packed for batches ahead of time.
    let mut model = model;
    let Model { weights, gguf, .. } = &mut model;
    assert!(weights.pack(gguf, 2) > 0, "{file}: nothing was packed");
    assert_eq!(batched(&model, &prompts), alone, "{file}: packed weights");
    assert_eq!(
        batched(&model, &prompts[..6]),
        alone[..6],
        "{file}: packed, padded"
    );
    assert_eq!(
        batched_from_the_prompt(&model, &same),
        same_alone,
        "{file}: packed weights, batched prompts"
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

/// What a generation streamed (each piece with its log-probabilities), why it stopped and how
/// many tokens it made.
type Streamed = (Vec<(String, Vec<TokenLogprob>)>, StopReason, usize);

/// Requests as a server gets them: greedy and sampled (seeded, with a repeat penalty), a stop
/// string, log-probabilities, token limits, and a context that fills up.
fn requests(model: &Model) -> Vec<(Vec<u32>, SamplerConfig, GenerateOptions, usize)> {
    let greedy = SamplerConfig {
        temperature: 0.0,
        ..SamplerConfig::default()
    };
    let sampled = SamplerConfig {
        temperature: 0.9,
        repeat_penalty: 1.3,
        seed: 7,
        ..SamplerConfig::default()
    };
    let limit = |max: usize| GenerateOptions {
        max_tokens: Some(max),
        ..GenerateOptions::default()
    };
    let tokens = |t: &str| model.tokenizer.encode(t, true, false);
    vec![
        (
            tokens("The capital of France is"),
            greedy.clone(),
            limit(20),
            256,
        ),
        (tokens("def fibonacci(n):"), sampled.clone(), limit(24), 256),
        (
            tokens("1, 2, 3, 4, 5,"),
            greedy.clone(),
            GenerateOptions {
                stop: vec![" 9".into()],
                ..limit(30)
            },
            256,
        ),
        (
            tokens("Water boils at"),
            sampled,
            GenerateOptions {
                logprobs: Some(3),
                ..limit(10)
            },
            256,
        ),
        (tokens("Once upon a time"), greedy, limit(40), 12),
    ]
}

fn collect(out: &mut Vec<(String, Vec<TokenLogprob>)>, text: &str, lps: &[TokenLogprob]) -> bool {
    out.push((text.to_string(), lps.to_vec()));
    true
}

#[test]
fn stepwise_generations_batched_stream_what_generate_detailed_streams() {
    let model = Model::load(&real_model("smollm2-135m-instruct-q4_1.gguf"), 2).unwrap();
    let requests = requests(&model);
    let alone: Vec<Streamed> = requests
        .iter()
        .map(|(prompt, cfg, opts, n_ctx)| {
            let mut out = Vec::new();
            let stats = Session::new(&model, *n_ctx)
                .generate_detailed(prompt, &mut Sampler::new(cfg.clone()), opts, |t, lps| {
                    collect(&mut out, t, lps)
                })
                .unwrap();
            (out, stats.stop, stats.generated_tokens)
        })
        .collect();

    // Request i joins before decoding step i; every step runs the active ones in one pass.
    let mut sessions: Vec<Session> = requests.iter().map(|r| Session::new(&model, r.3)).collect();
    let mut samplers: Vec<Sampler> = requests.iter().map(|r| Sampler::new(r.1.clone())).collect();
    let mut generations = Vec::new();
    let mut outs = vec![Vec::new(); requests.len()];
    let mut done: Vec<Option<(StopReason, usize)>> = vec![None; requests.len()];
    let mut step = 0;
    while done.iter().any(Option::is_none) {
        if let Some((prompt, _, opts, _)) = requests.get(step) {
            let g = sessions[step]
                .start(prompt, &mut samplers[step], opts)
                .unwrap();
            generations.push(Some(g));
        }
        step += 1;
        let mut feeds = Vec::new();
        for (i, slot) in generations.iter_mut().enumerate() {
            let Some(g) = slot else { continue };
            let out = &mut outs[i];
            match g.step(&sessions[i], &mut samplers[i], |t, lps| {
                collect(out, t, lps)
            }) {
                Step::Feed(t) => feeds.push((i, t)),
                Step::Done(stats) => {
                    done[i] = Some((stats.stop, stats.generated_tokens));
                    *slot = None;
                }
            }
        }
        let mut seqs: Vec<Sequence> = sessions
            .iter_mut()
            .enumerate()
            .filter_map(|(i, s)| {
                let (_, t) = feeds.iter().find(|(j, _)| *j == i)?;
                Some(s.decode_sequence(*t))
            })
            .collect();
        if seqs.is_empty() {
            continue;
        }
        let logits = model.forward_batch(&mut seqs).unwrap();
        for ((i, _), l) in feeds.iter().zip(logits) {
            generations[*i].as_mut().unwrap().accept_logits(l);
        }
    }
    let batched: Vec<Streamed> = outs
        .into_iter()
        .zip(done)
        .map(|(out, d)| {
            let (stop, n) = d.unwrap();
            (out, stop, n)
        })
        .collect();
    assert_eq!(batched, alone);
    // The requests end in different ways, so the test covers each.
    let stops: Vec<_> = alone.iter().map(|a| &a.1).collect();
    assert!(stops.contains(&&StopReason::ContextFull), "{stops:?}");
    assert!(stops.contains(&&StopReason::MaxTokens), "{stops:?}");
    assert!(
        stops.iter().any(|s| matches!(s, StopReason::StopString(_))),
        "{stops:?}"
    );
}
