//! BERT's WordPiece against the real all-MiniLM-L6-v2 vocabulary (its Hugging Face
//! `tokenizer.json`, cached outside the repository by `scripts/fetch-test-models.sh minilm`,
//! turned into llama.cpp's GGUF token convention here): exact ids for the reference sentences
//! and for harder ones, special-token handling, and loading through a GGUF file.

// `encode_protected` takes a list of ranges; one-element lists are intended here.
#![allow(clippy::single_range_in_vec_init)]

use std::path::{Path, PathBuf};

use tokenizer::{SpecialIds, Tokenizer, Vocab};

const CLS: u32 = 101;
const SEP: u32 = 102;
const UNK: u32 = 100;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn model_dir() -> PathBuf {
    let base = match std::env::var_os("HEARTH_TEST_MODELS") {
        Some(d) => PathBuf::from(d),
        None => {
            let home = std::env::var_os("HOME").expect("HOME is set");
            PathBuf::from(home).join(".cache/hearth/test-models")
        }
    };
    base.join("all-minilm-l6-v2")
}

/// A Hugging Face WordPiece token in llama.cpp's GGUF form: `[...]` specials as they are, a
/// `##` continuation without its `##`, a word start with a `▁` prefix.
fn gguf_text(hf: &str) -> String {
    if hf.starts_with('[') && hf.ends_with(']') {
        hf.to_string()
    } else if let Some(rest) = hf.strip_prefix("##") {
        rest.to_string()
    } else {
        format!("▁{hf}")
    }
}

/// The model's vocabulary in id order (GGUF form) and token types (3 for its special tokens).
fn minilm_vocab() -> (Vec<String>, Vec<i32>) {
    let path = model_dir().join("tokenizer.json");
    assert!(
        path.exists(),
        "{} is missing: run scripts/fetch-test-models.sh minilm",
        path.display()
    );
    let text = std::fs::read_to_string(&path).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let vocab = json["model"]["vocab"].as_object().expect("model.vocab");
    let mut tokens = vec![String::new(); vocab.len()];
    for (t, id) in vocab {
        tokens[id.as_u64().expect("id") as usize] = gguf_text(t);
    }
    assert!(tokens.iter().all(|t| !t.is_empty()), "ids are dense");
    let mut types = vec![1; tokens.len()];
    for added in json["added_tokens"].as_array().expect("added_tokens") {
        if added["special"].as_bool() == Some(true) {
            types[added["id"].as_u64().unwrap() as usize] = 3;
        }
    }
    (tokens, types)
}

fn minilm() -> Tokenizer {
    let (tokens, token_types) = minilm_vocab();
    Tokenizer::from_parts(Vocab {
        model: "bert".into(),
        tokens,
        token_types,
        special_ids: SpecialIds {
            cls: Some(CLS),
            sep: Some(SEP),
            unk: Some(UNK),
            pad: Some(0),
            mask: Some(103),
            ..SpecialIds::default()
        },
        ..Vocab::default()
    })
    .unwrap()
}

/// `(text, ids)` of the reference file (Hugging Face's tokenizer for all-MiniLM-L6-v2).
fn reference_cases() -> Vec<(String, Vec<u32>)> {
    let path = repo_root().join("testdata/reference/embeddings/all-minilm-l6-v2.jsonl");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("valid JSON line");
            let ids = v["tokens"].as_array().expect("tokens");
            (
                v["text"].as_str().expect("text").to_string(),
                ids.iter().map(|t| t.as_u64().unwrap() as u32).collect(),
            )
        })
        .collect()
}

/// Harder sentences; ids from Hugging Face `tokenizers` 0.23.3 with the model's
/// `tokenizer.json`.
const HARDER: &[(&str, &[u32])] = &[
    (
        "Crème brûlée at the Café Müller, São Paulo!",
        &[
            101, 13675, 21382, 7987, 9307, 2063, 2012, 1996, 7668, 12304, 1010, 7509, 9094, 999,
            102,
        ],
    ),
    (
        "It's 3.14159... or $1,000,000 (approx.)",
        &[
            101, 2009, 1005, 1055, 1017, 1012, 15471, 28154, 1012, 1012, 1012, 2030, 1002, 1015,
            1010, 2199, 1010, 2199, 1006, 22480, 1012, 1007, 102,
        ],
    ),
    (
        "E-mail: someone@example.com; URL: https://x.org/a?b=c#d",
        &[
            101, 1041, 1011, 5653, 1024, 2619, 1030, 2742, 1012, 4012, 1025, 24471, 2140, 1024,
            16770, 1024, 1013, 1013, 1060, 1012, 8917, 1013, 1037, 1029, 1038, 1027, 1039, 1001,
            1040, 102,
        ],
    ),
    (
        "Thumbs up 👍🏽 and a crab 🦀!",
        &[101, 16784, 2039, 100, 1998, 1037, 18081, 100, 999, 102],
    ),
    ("ÉCOLE Ñandú ZOË", &[101, 12431, 16660, 8566, 11199, 102]),
    (
        "Tabs\tand\nnewlines\r\nand\u{a0}nbsp",
        &[
            101, 21628, 2015, 1998, 2047, 12735, 1998, 1050, 5910, 2361, 102,
        ],
    ),
    (
        "supercalifragilisticexpialidocious",
        &[
            101, 3565, 9289, 10128, 29181, 24411, 4588, 10288, 19312, 21273, 10085, 6313, 102,
        ],
    ),
    (
        "unbelievably unaffable tokenization",
        &[
            101, 4895, 8671, 2666, 3567, 6321, 14477, 20961, 3468, 19204, 3989, 102,
        ],
    ),
    (
        "東京 is in 日本; 서울 is in 한국.",
        &[
            101, 1879, 1755, 2003, 1999, 1864, 1876, 1025, 1461, 30008, 29999, 30014, 30022, 2003,
            1999, 1469, 30006, 30021, 29991, 30014, 30020, 1012, 102,
        ],
    ),
    ("ﬁne ½ ²", &[101, 1984, 2638, 1092, 1082, 102]),
    (
        "a[SEP]b [CLS] [unused0]",
        &[101, 1037, 102, 1038, 101, 1031, 15171, 2692, 1033, 102],
    ),
];

#[test]
fn reference_sentences_match_exactly() {
    let tok = minilm();
    let cases = reference_cases();
    assert_eq!(cases.len(), 10);
    for (text, ids) in &cases {
        assert_eq!(&tok.encode(text, true, true), ids, "{text:?}");
    }
}

#[test]
fn harder_sentences_match_exactly() {
    let tok = minilm();
    for (text, ids) in HARDER {
        assert_eq!(&tok.encode(text, true, true), ids, "{text:?}");
    }
    // A word of 101 characters is unknown whole; 100 are split into pieces.
    let long = "x".repeat(101);
    assert_eq!(
        tok.encode(&format!("{long} ok"), true, false),
        [CLS, UNK, 7929, SEP]
    );
    assert!(tok.encode(&long[1..], false, false).len() > 1);
}

#[test]
fn special_tokens_and_flags() {
    let tok = minilm();
    assert_eq!(tok.bos(), Some(CLS));
    assert_eq!(tok.sep(), Some(SEP));
    assert!(tok.add_bos() && tok.add_sep() && !tok.add_eos());
    assert_eq!(tok.pre_tokenizer(), None);
    assert_eq!(tok.find_token("▁the"), Some(1996));
    assert_eq!(tok.token_text(SEP), "[SEP]");
    assert!(tok.is_control(CLS) && tok.is_control(SEP) && tok.is_control(UNK));
    assert_eq!(tok.encode("", true, false), [CLS, SEP]);
    assert_eq!(tok.encode("   ", false, false), Vec::<u32>::new());
    assert_eq!(tok.encode("Hello", false, false), [7592]);

    // `[SEP]` written in the text: a special token only when special tokens are parsed.
    let text = "a [SEP] b";
    assert_eq!(tok.encode(text, false, true), [1037, SEP, 1038]);
    let plain = [1037, 1031, 19802, 1033, 1038];
    assert_eq!(tok.encode(text, false, false), plain);
    assert_eq!(tok.encode_protected(text, false, &[0..text.len()]), plain);
    assert_eq!(
        tok.encode_protected(text, true, &[4..5]),
        [CLS, 1037, 1031, 19802, 1033, 1038, SEP]
    );
    assert_eq!(
        tok.encode_protected(text, true, &[0..1]),
        [CLS, 1037, SEP, 1038, SEP]
    );
}

#[test]
fn decoding_gives_readable_text() {
    let tok = minilm();
    let ids = tok.encode("The cat sits on the mat, unaffably.", true, false);
    assert_eq!(tok.decode(&ids), " the cat sits on the mat , unaffably .");
    assert_eq!(tok.token_bytes(CLS), b"");
    assert_eq!(tok.token_piece(SEP, true), b"[SEP]");
    assert_eq!(tok.token_bytes(2015), b"s");
}

fn str_array<S: AsRef<str>>(items: &[S]) -> gguf::Value {
    gguf::Value::Array(
        items
            .iter()
            .map(|s| gguf::Value::from(s.as_ref()))
            .collect(),
    )
}

fn load_gguf(meta: Vec<(&str, gguf::Value)>) -> Tokenizer {
    let mut w = gguf::GgufWriter::new();
    for (k, v) in meta {
        w.add_metadata(k, v);
    }
    let g = gguf::Gguf::from_bytes(w.to_bytes()).unwrap();
    Tokenizer::from_gguf(&g).unwrap()
}

#[test]
fn gguf_round_trip_tiny_vocab() {
    let tokens = [
        "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "▁hello", "▁world", "▁un", "able", "▁!",
    ];
    let types: Vec<gguf::Value> = [3, 3, 3, 3, 3, 1, 1, 1, 1, 1]
        .into_iter()
        .map(gguf::Value::I32)
        .collect();
    let meta = |extra: Vec<(&'static str, gguf::Value)>| {
        let mut m = vec![
            ("general.architecture", "bert".into()),
            ("tokenizer.ggml.model", "bert".into()),
            ("tokenizer.ggml.tokens", str_array(&tokens)),
            (
                "tokenizer.ggml.token_type",
                gguf::Value::Array(types.clone()),
            ),
            ("tokenizer.ggml.cls_token_id", gguf::Value::U32(2)),
            ("tokenizer.ggml.seperator_token_id", gguf::Value::U32(3)),
            ("tokenizer.ggml.unknown_token_id", gguf::Value::U32(1)),
            ("tokenizer.ggml.padding_token_id", gguf::Value::U32(0)),
        ];
        m.extend(extra);
        m
    };
    let tok = load_gguf(meta(vec![]));
    assert_eq!(tok.vocab_size(), tokens.len());
    assert_eq!(
        tok.encode("Hello, unable world!", true, true),
        [2, 5, 1, 7, 8, 6, 9, 3]
    );
    assert_eq!(tok.decode(&[2, 5, 7, 8, 9, 3]), " hello unable !");

    // The file's flags win: no [CLS] / [SEP] when it says so.
    let tok = load_gguf(meta(vec![
        ("tokenizer.ggml.add_bos_token", gguf::Value::Bool(false)),
        ("tokenizer.ggml.add_sep_token", gguf::Value::Bool(false)),
    ]));
    assert_eq!(tok.encode("hello", true, false), [5]);

    // Without the id keys, the specials are found by their texts.
    let tok = load_gguf(vec![
        ("tokenizer.ggml.model", "bert".into()),
        ("tokenizer.ggml.tokens", str_array(&tokens)),
    ]);
    assert_eq!(tok.encode("hello there", true, true), [2, 5, 1, 3]);
    assert!(tok.is_control(4), "[MASK]");
}

#[test]
fn gguf_round_trip_real_vocab() {
    let (tokens, types) = minilm_vocab();
    let tok = load_gguf(vec![
        ("tokenizer.ggml.model", "bert".into()),
        ("tokenizer.ggml.tokens", str_array(&tokens)),
        (
            "tokenizer.ggml.token_type",
            gguf::Value::Array(types.into_iter().map(gguf::Value::I32).collect()),
        ),
        ("tokenizer.ggml.cls_token_id", gguf::Value::U32(CLS)),
        ("tokenizer.ggml.seperator_token_id", gguf::Value::U32(SEP)),
        ("tokenizer.ggml.unknown_token_id", gguf::Value::U32(UNK)),
    ]);
    for (text, ids) in reference_cases() {
        assert_eq!(tok.encode(&text, true, true), ids, "{text:?}");
    }
}
