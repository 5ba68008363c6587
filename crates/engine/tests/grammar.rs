//! Grammar-constrained generation on the real models (Qwen2.5-Coder 0.5B, SmolLM2 135M): JSON
//! objects, JSON-schema answers that parse and validate at any temperature, a GBNF choice, the
//! step-wise path of the server's batched decoding, and the project's acceptance target: 200
//! schema answers, every one parsing and validating.

mod common;

use engine::{
    GenerateOptions, GenerationStats, Grammar, Matcher, Message, Model, Sampler, SamplerConfig,
    Sequence, Session, Step, StopReason, TokenLogprob,
};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Instant;

fn real_model(file: &str) -> Model {
    Model::load(&common::real_model(file), 2).unwrap()
}

fn qwen() -> Model {
    real_model("qwen2.5-coder-0.5b-instruct-q4_k_m.gguf")
}

fn smollm2() -> Model {
    real_model("smollm2-135m-instruct-q4_1.gguf")
}

const TAGS: [&str; 5] = ["friendly", "curious", "brave", "quiet", "funny"];

fn person_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 20},
            "age": {"type": "integer", "minimum": 0, "maximum": 150},
            "tags": {"type": "array", "items": {"enum": TAGS}, "maxItems": 3}
        },
        "required": ["name", "age", "tags"],
        "additionalProperties": false
    })
}

/// Whether `text` parses and validates against [`person_schema`]; the reason if not.
fn check_person(text: &str) -> Result<(), String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("does not parse: {e}"))?;
    let o = v.as_object().ok_or("not an object")?;
    let mut keys: Vec<&str> = o.keys().map(String::as_str).collect();
    keys.sort();
    if keys != ["age", "name", "tags"] {
        return Err(format!("keys {keys:?}"));
    }
    let name = o["name"].as_str().ok_or("name is not a string")?;
    if name.chars().count() > 20 {
        return Err("name longer than 20".into());
    }
    let age = o["age"].as_i64().ok_or("age is not an integer")?;
    if !(0..=150).contains(&age) {
        return Err(format!("age {age} out of range"));
    }
    let tags = o["tags"].as_array().ok_or("tags is not an array")?;
    if tags.len() > 3 {
        return Err("more than 3 tags".into());
    }
    if !tags
        .iter()
        .all(|t| t.as_str().is_some_and(|t| TAGS.contains(&t)))
    {
        return Err(format!("tags {tags:?} not all from the enum"));
    }
    Ok(())
}

fn sampler(temperature: f32, seed: u64) -> Sampler {
    Sampler::new(SamplerConfig {
        temperature,
        seed,
        ..SamplerConfig::default()
    })
}

fn constrained(grammar: &Arc<Grammar>, max_tokens: usize) -> GenerateOptions {
    GenerateOptions {
        max_tokens: Some(max_tokens),
        grammar: Some(grammar.clone()),
        ..GenerateOptions::default()
    }
}

fn chat(m: &Model, system: &str, user: &str) -> Vec<u32> {
    m.chat_tokens(
        &[Message::new("system", system), Message::new("user", user)],
        true,
    )
    .unwrap()
}

fn generate(
    m: &Model,
    prompt: &[u32],
    sampler: &mut Sampler,
    opts: &GenerateOptions,
) -> (String, GenerationStats) {
    let mut session = Session::new(m, 1024);
    let mut text = String::new();
    let stats = session
        .generate(prompt, sampler, opts, |t| {
            text.push_str(t);
            true
        })
        .unwrap();
    (text, stats)
}

/// Every generation under the JSON grammar is one complete JSON object, greedy and sampled,
/// ending as soon as the object closes. `Grammar::json` bounds whitespace and numbers but not
/// nesting or string length, so a small model sampled at temperature 1.0 may still ramble up to
/// the token limit: such an answer is reported, and must be a valid prefix of a JSON object.
#[test]
fn json_object_answers_parse() {
    let g = Arc::new(Grammar::json());
    let mut unfinished = Vec::new();
    for (m, name) in [(qwen(), "qwen"), (smollm2(), "smollm2")] {
        let prompt = chat(
            &m,
            "You are a helpful assistant that answers in JSON.",
            "Describe a cat with its name, colour and age as a JSON object.",
        );
        for (temperature, seed) in [(0.0, 0), (1.0, 1), (1.0, 2), (1.0, 3)] {
            let t0 = Instant::now();
            let (text, stats) = generate(
                &m,
                &prompt,
                &mut sampler(temperature, seed),
                &constrained(&g, 384),
            );
            println!(
                "{name} t={temperature} seed={seed}: {} tokens in {:?}, {:?}: {text}",
                stats.generated_tokens,
                t0.elapsed(),
                stats.stop
            );
            if stats.stop == StopReason::MaxTokens && temperature > 0.0 {
                assert!(
                    Matcher::new(g.clone()).accepts(text.as_bytes()),
                    "{name}: {text}"
                );
                unfinished.push(format!("{name} t={temperature} seed={seed}"));
                continue;
            }
            assert_eq!(stats.stop, StopReason::EndOfGeneration, "{name}: {text}");
            let v: Value =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}: {text}"));
            assert!(v.is_object(), "{name}: {text}");
        }
    }
    println!("unfinished at the token limit: {unfinished:?}");
    assert!(unfinished.len() <= 1, "{unfinished:?}");
}

/// Schema answers validate, greedy and at temperature 1.0 with several seeds.
#[test]
fn schema_answers_validate() {
    let g = Arc::new(Grammar::from_json_schema(&person_schema()).unwrap());
    for (m, name) in [(qwen(), "qwen"), (smollm2(), "smollm2")] {
        let prompt = chat(
            &m,
            "You answer with JSON only.",
            "Invent a person: give their name, age and up to three tags describing them.",
        );
        for (temperature, seed) in [(0.0, 0), (1.0, 7), (1.0, 8), (1.0, 9)] {
            let t0 = Instant::now();
            let (text, stats) = generate(
                &m,
                &prompt,
                &mut sampler(temperature, seed),
                &constrained(&g, 256),
            );
            println!(
                "{name} t={temperature} seed={seed}: {} tokens in {:?}: {text}",
                stats.generated_tokens,
                t0.elapsed()
            );
            assert_eq!(stats.stop, StopReason::EndOfGeneration, "{name}: {text}");
            check_person(&text).unwrap_or_else(|e| panic!("{name}: {e}: {text}"));
        }
    }
}

/// A GBNF choice gives exactly one of its words; greedy is deterministic.
#[test]
fn gbnf_choice_gives_one_of_its_words() {
    let g = Arc::new(Grammar::parse(r#"root ::= ("yes" | "no")"#).unwrap());
    let m = qwen();
    let prompt = chat(&m, "Answer yes or no.", "Is the sky blue on a clear day?");
    let (first, stats) = generate(&m, &prompt, &mut sampler(0.0, 0), &constrained(&g, 16));
    assert!(first == "yes" || first == "no", "{first:?}");
    assert_eq!(stats.stop, StopReason::EndOfGeneration);
    let (again, _) = generate(&m, &prompt, &mut sampler(0.0, 0), &constrained(&g, 16));
    assert_eq!(again, first);
    for seed in 1..4 {
        let (text, stats) = generate(&m, &prompt, &mut sampler(1.5, seed), &constrained(&g, 16));
        assert!(text == "yes" || text == "no", "{text:?}");
        assert_eq!(stats.stop, StopReason::EndOfGeneration);
    }
}

/// Log-probabilities under a grammar still come from the model's raw distribution: the top
/// alternatives may be tokens the grammar forbids.
#[test]
fn logprobs_report_the_raw_distribution_under_a_grammar() {
    let m = smollm2();
    let g = Arc::new(Grammar::parse(r#"root ::= "{\"answer\": " [0-9]+ "}""#).unwrap());
    let prompt = chat(&m, "You are helpful.", "What is 6 times 7?");
    let opts = GenerateOptions {
        logprobs: Some(3),
        ..constrained(&g, 32)
    };
    let mut session = Session::new(&m, 512);
    let (mut text, mut entries) = (String::new(), Vec::<TokenLogprob>::new());
    let stats = session
        .generate_detailed(&prompt, &mut sampler(0.0, 0), &opts, |t, lp| {
            text.push_str(t);
            entries.extend_from_slice(lp);
            true
        })
        .unwrap();
    assert!(
        text.starts_with("{\"answer\": ") && text.ends_with('}'),
        "{text}"
    );
    assert_eq!(entries.len(), stats.generated_tokens);
    // The first token is forced to `{`: the model's own choice (with its full distribution)
    // is reported, not a renormalised certainty.
    let mut cache = m.new_cache(512);
    let logits = m.forward(&mut cache, &prompt, 0, false).unwrap();
    let max = logits.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    let lse = max + logits.iter().map(|&l| (l - max).exp()).sum::<f32>().ln();
    let first = &entries[0];
    assert!((first.logprob - (logits[first.token as usize] - lse)).abs() < 1e-4);
    assert_eq!(first.top[0].0, engine::argmax(&logits));
}

/// Runs `jobs` (prompt, seed) as the server's decoding loop does: `sessions.len()` slots, slot
/// `k` taking jobs `k`, `k + slots`, `k + 2 * slots`... in turn, each started on the slot (its
/// prompt evaluated alone, the slot's cached prefix reused), then every active generation's next
/// step in one `forward_batch`. Returns each job's answer and stats, in order.
fn batched(
    m: &Model,
    jobs: &[(Vec<u32>, u64)],
    temperature: f32,
    opts: &GenerateOptions,
    sessions: &mut [Session],
) -> Vec<(String, GenerationStats)> {
    struct Active {
        job: usize,
        generation: engine::Generation,
        sampler: Sampler,
        text: String,
    }
    let mut results: Vec<Option<(String, GenerationStats)>> = vec![None; jobs.len()];
    let mut slots: Vec<Option<Active>> = sessions.iter().map(|_| None).collect();
    // Each slot's next job.
    let mut next: Vec<usize> = (0..slots.len()).collect();
    loop {
        // Free slots take their next jobs.
        for (k, (slot, session)) in slots.iter_mut().zip(sessions.iter_mut()).enumerate() {
            if slot.is_none() && next[k] < jobs.len() {
                let job = next[k];
                next[k] += next.len();
                let (prompt, seed) = &jobs[job];
                let mut smp = sampler(temperature, *seed);
                let generation = session.start(prompt, &mut smp, opts).unwrap();
                *slot = Some(Active {
                    job,
                    generation,
                    sampler: smp,
                    text: String::new(),
                });
            }
        }
        let mut feed: Vec<Option<u32>> = vec![None; slots.len()];
        for (i, slot) in slots.iter_mut().enumerate() {
            let Some(a) = slot else {
                continue;
            };
            let text = &mut a.text;
            match a.generation.step(&sessions[i], &mut a.sampler, |t, _| {
                text.push_str(t);
                true
            }) {
                Step::Feed(t) => feed[i] = Some(t),
                Step::Done(stats) => {
                    let a = slot.take().unwrap();
                    results[a.job] = Some((a.text, stats));
                }
            }
        }
        if feed.iter().all(Option::is_none) {
            if next.iter().all(|&j| j >= jobs.len()) {
                break;
            }
            continue;
        }
        let mut seqs: Vec<Sequence> = sessions
            .iter_mut()
            .zip(&feed)
            .filter_map(|(s, t)| t.map(|t| s.decode_sequence(t)))
            .collect();
        let logits = m.forward_batch(&mut seqs).unwrap();
        drop(seqs);
        let fed = (0..slots.len()).filter(|&i| feed[i].is_some());
        for (i, l) in fed.zip(logits) {
            if let Some(a) = &mut slots[i] {
                a.generation.accept_logits(l);
            }
        }
    }
    results
        .into_iter()
        .map(|r| r.expect("every generation ends"))
        .collect()
}

/// The step-wise path (`start` / `step` / `accept_logits` with `forward_batch`) constrains as
/// `generate` does: greedy answers are the same text.
#[test]
fn stepwise_batched_generation_is_constrained_like_generate() {
    let m = smollm2();
    let g = Arc::new(Grammar::from_json_schema(&person_schema()).unwrap());
    let opts = constrained(&g, 128);
    let users = [
        "Invent a pirate.",
        "Invent a scientist who studies bees.",
        "Invent a child who loves trains.",
    ];
    let jobs: Vec<(Vec<u32>, u64)> = users
        .iter()
        .map(|u| (chat(&m, "Answer with JSON: name, age, tags.", u), 0))
        .collect();
    let mut sessions: Vec<Session> = jobs.iter().map(|_| Session::new(&m, 512)).collect();
    let answers = batched(&m, &jobs, 0.0, &opts, &mut sessions);
    for ((prompt, _), (text, stats)) in jobs.iter().zip(&answers) {
        assert_eq!(stats.stop, StopReason::EndOfGeneration, "{text}");
        check_person(text).unwrap_or_else(|e| panic!("{e}: {text}"));
        let (alone, _) = generate(&m, prompt, &mut sampler(0.0, 0), &opts);
        assert_eq!(&alone, text);
    }
}

/// The acceptance target: 200 answers under a JSON schema, varied prompts and seeds at
/// temperature 0.8, every one finished (not cut by max_tokens), parsing and validating.
#[test]
fn two_hundred_schema_answers_parse_and_validate() {
    let m = smollm2();
    let g = Arc::new(Grammar::from_json_schema(&person_schema()).unwrap());
    let opts = constrained(&g, 256);
    let who = [
        "a pirate",
        "a baker",
        "an astronaut",
        "a librarian",
        "a dragon tamer",
        "a retired teacher",
        "a street musician",
        "a chess champion",
        "a farmer",
        "a detective",
        "a painter",
        "a lighthouse keeper",
        "a nurse",
        "a robot",
        "a knight",
        "a gardener",
        "a pilot",
        "a student",
        "a wizard",
        "a fisherman",
    ];
    let asks = [
        "Invent {}.",
        "Describe {}.",
        "Make up {}.",
        "Create {}.",
        "Imagine {}.",
    ];
    let system = "Give the person's name, age and up to three tags as one JSON object.";
    // 40 prompts, each answered with 5 seeds on its own slot (whose cache then holds the
    // prompt: a server's prefix cache does the same for repeated requests).
    const SLOTS: usize = 40;
    let prompts: Vec<Vec<u32>> = (0..SLOTS)
        .map(|k| {
            let user = asks[(k / who.len() + k) % asks.len()].replace("{}", who[k % who.len()]);
            chat(&m, system, &user)
        })
        .collect();
    let jobs: Vec<(Vec<u32>, u64)> = (0..200)
        .map(|i| (prompts[i % SLOTS].clone(), 1000 + i as u64))
        .collect();
    let mut sessions: Vec<Session> = (0..SLOTS).map(|_| Session::new(&m, 512)).collect();
    let t0 = Instant::now();
    let answers = batched(&m, &jobs, 0.8, &opts, &mut sessions);
    let mut failures = Vec::new();
    let mut tokens = 0;
    let mut longest = 0;
    for (i, (text, stats)) in answers.iter().enumerate() {
        tokens += stats.generated_tokens;
        longest = longest.max(stats.generated_tokens);
        let verdict = match &stats.stop {
            StopReason::EndOfGeneration => check_person(text),
            other => Err(format!(
                "stopped by {other:?} after {} tokens",
                stats.generated_tokens
            )),
        };
        if let Err(e) = verdict {
            failures.push(format!("answer {i}: {e}: {text:?}"));
        }
    }
    let elapsed = t0.elapsed();
    let distinct: std::collections::HashSet<&str> =
        answers.iter().map(|(t, _)| t.as_str()).collect();
    println!(
        "200 answers ({} distinct), {tokens} tokens (longest {longest}) in {elapsed:?} ({:.0} tokens/s); {} failures",
        distinct.len(),
        tokens as f64 / elapsed.as_secs_f64(),
        failures.len()
    );
    assert!(distinct.len() > 100, "the seeds should vary the answers");
    assert!(
        failures.is_empty(),
        "{} of 200 failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
