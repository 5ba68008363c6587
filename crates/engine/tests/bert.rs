//! BERT end to end: all-MiniLM-L6-v2, converted from its Hugging Face form into F32, F16 and
//! Q8_0 GGUFs by the convert crate, against the float64 reference embeddings
//! (`testdata/reference/embeddings/all-minilm-l6-v2.jsonl`: each text, its token ids with
//! [CLS]/[SEP], and its mean-pooled, unit-length embedding).

use convert::{FileType, Options};
use engine::{
    Arch, EngineError, GenerateOptions, Message, Model, Pooling, Sampler, SamplerConfig, Session,
};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The Hugging Face directory, fetched by `scripts/fetch-test-models.sh minilm`.
fn minilm_dir() -> PathBuf {
    let dir = std::env::var_os("HEARTH_TEST_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/hearth/test-models")
        });
    let p = dir.join("all-minilm-l6-v2");
    assert!(
        p.join("model.safetensors").exists(),
        "{} is missing: run scripts/fetch-test-models.sh minilm",
        p.display()
    );
    p
}

/// The model converted to `ftype`, once per test run, into Cargo's scratch directory for tests.
fn converted(ftype: FileType) -> PathBuf {
    static FILES: OnceLock<Vec<(FileType, PathBuf)>> = OnceLock::new();
    let files = FILES.get_or_init(|| {
        let src = minilm_dir();
        FileType::ALL
            .into_iter()
            .map(|t| {
                let dest = Path::new(env!("CARGO_TARGET_TMPDIR"))
                    .join(format!("all-minilm-l6-v2-{t:?}.gguf").to_lowercase());
                let options = Options {
                    ftype: t,
                    name: None,
                };
                convert::convert_dir(&src, &dest, &options)
                    .unwrap_or_else(|e| panic!("converting to {t:?}: {e}"));
                (t, dest)
            })
            .collect()
    });
    files.iter().find(|(t, _)| *t == ftype).unwrap().1.clone()
}

/// One line of the reference.
struct Reference {
    text: String,
    tokens: Vec<u32>,
    embedding: Vec<f64>,
}

fn references() -> Vec<Reference> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/reference/embeddings/all-minilm-l6-v2.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    let refs: Vec<Reference> = text
        .lines()
        .map(|line| {
            let r: Value = serde_json::from_str(line).unwrap();
            let numbers = |k: &str| r[k].as_array().unwrap().iter().map(|v| v.as_f64().unwrap());
            Reference {
                text: r["text"].as_str().unwrap().to_string(),
                tokens: numbers("tokens").map(|v| v as u32).collect(),
                embedding: numbers("embedding").collect(),
            }
        })
        .collect();
    assert_eq!(refs.len(), 10, "{}", path.display());
    refs
}

/// Cosine similarity of `got` with the unit-length `want`.
fn cosine(got: &[f32], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len(), "embedding length");
    let dot: f64 = got.iter().zip(want).map(|(&a, b)| a as f64 * b).sum();
    let norm = |v: &mut dyn Iterator<Item = f64>| v.map(|x| x * x).sum::<f64>().sqrt();
    dot / (norm(&mut got.iter().map(|&x| x as f64)) * norm(&mut want.iter().copied()))
}

/// The smallest cosine between `model`'s embeddings of the references' tokens and theirs.
fn min_cosine(model: &Model, refs: &[Reference]) -> f64 {
    refs.iter()
        .map(|r| {
            let got = model.embed(&r.tokens).unwrap();
            let norm = got.iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-5, "{:?}: norm {norm}", r.text);
            cosine(&got, &r.embedding)
        })
        .fold(f64::INFINITY, f64::min)
}

#[test]
fn embeddings_match_the_reference_in_every_file_type() {
    let refs = references();
    let mut failures = Vec::new();
    for (ftype, floor) in [
        (FileType::F32, 0.999),
        (FileType::F16, 0.999),
        (FileType::Q8_0, 0.99),
    ] {
        let model = Model::load(&converted(ftype), 2).unwrap();
        assert_eq!(model.hparams.arch, Arch::Bert);
        assert_eq!(model.hparams.pooling, Pooling::Mean);
        let worst = min_cosine(&model, &refs);
        println!("{ftype:?}: minimum cosine {worst:.8}");
        if worst < floor {
            failures.push(format!("{ftype:?}: minimum cosine {worst} < {floor}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_tokenizer_gives_the_reference_tokens_and_their_embedding() {
    let model = Model::load(&converted(FileType::F32), 2).unwrap();
    for r in references() {
        let tokens = model.tokenizer.encode(&r.text, true, false);
        assert_eq!(tokens, r.tokens, "{:?}", r.text);
        let cos = cosine(&model.embed(&tokens).unwrap(), &r.embedding);
        assert!(cos >= 0.999, "{:?}: cosine {cos}", r.text);
    }
}

#[test]
fn an_embedding_model_refuses_to_generate_and_to_overflow_its_positions() {
    let model = Model::load(&converted(FileType::Q8_0), 2).unwrap();
    let tokens = model.tokenizer.encode("Hello world", true, false);
    let mut session = Session::new(&model, 64);
    assert_eq!(session.n_ctx(), 64);
    assert_eq!(session.cache().bytes(), 0, "an encoder keeps no KV cache");
    let mut sampler = Sampler::new(SamplerConfig::default());
    let err = session
        .generate(&tokens, &mut sampler, &GenerateOptions::default(), |_| true)
        .unwrap_err();
    assert!(
        matches!(err, EngineError::NotGenerative { arch: "bert" }),
        "{err}"
    );
    assert!(err.to_string().contains("cannot generate text"), "{err}");
    let mut cache = model.new_cache(8);
    let err = model.forward(&mut cache, &tokens, 0, false).unwrap_err();
    assert!(matches!(err, EngineError::NotGenerative { .. }), "{err}");
    let err = model
        .chat_tokens_with(&model.template, &[Message::new("user", "Hi")], None, true)
        .unwrap_err();
    assert!(err.to_string().contains("cannot chat"), "{err}");

    let max = model.hparams.n_ctx_train;
    assert_eq!(max, 512);
    let mut long = vec![1996; max + 3];
    long[0] = 101;
    let err = model.embed(&long).unwrap_err();
    assert!(
        matches!(
            err,
            EngineError::TooLongToEmbed {
                tokens: 515,
                max: 512,
                over: 3
            }
        ),
        "{err}"
    );
    long.truncate(max);
    assert_eq!(model.embed(&long).unwrap().len(), 384);
    assert!(matches!(
        model.embed(&[]).unwrap_err(),
        EngineError::EmptyPrompt
    ));
    assert!(matches!(
        model.embed(&[30522]).unwrap_err(),
        EngineError::BadToken {
            id: 30522,
            vocab: 30522
        }
    ));
}

/// Several inputs embedded in one pass each get their own embedding: the reference's, and that
/// of embedding them one at a time.
#[test]
fn inputs_embedded_together_each_get_their_own_embedding() {
    let model = Model::load(&converted(FileType::F32), 2).unwrap();
    let refs = references();
    let inputs: Vec<Vec<u32>> = refs.iter().map(|r| r.tokens.clone()).collect();
    let together = model.embed_many(&inputs).unwrap();
    assert_eq!(together.len(), refs.len());
    for ((got, r), tokens) in together.iter().zip(&refs).zip(&inputs) {
        assert!(cosine(got, &r.embedding) >= 0.999999, "{:?}", r.text);
        let alone = model.embed(tokens).unwrap();
        let same: f64 = got
            .iter()
            .zip(&alone)
            .map(|(&a, &b)| a as f64 * b as f64)
            .sum();
        assert!(same >= 0.999999, "{:?}: {same}", r.text);
    }
    // Over the batch bound: split into passes, in order.
    let many: Vec<Vec<u32>> = (0..300).map(|i| inputs[i % inputs.len()].clone()).collect();
    let got = model.embed_many(&many).unwrap();
    for (i, v) in got.iter().enumerate() {
        assert!(
            cosine(v, &refs[i % refs.len()].embedding) >= 0.999999,
            "input {i}"
        );
    }
    assert!(model.embed_many(&[vec![101, 102], vec![]]).is_err());
}
