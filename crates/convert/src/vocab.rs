//! Tokenizer metadata from `tokenizer.json`, in the form llama.cpp's converter writes it.

use std::collections::HashSet;
use std::path::Path;

use gguf::Value;
use serde_json::{Map, Value as Json};

use crate::hf::{read_json, Config};
use crate::ConvertError;

/// llama.cpp's `llama_token_type` values (`tokenizer.ggml.token_type`).
const NORMAL: i32 = 1;
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;
const UNUSED: i32 = 5;

/// llama.cpp's "phantom space" spelling of a WordPiece token: `[CLS]`-style tokens unchanged,
/// a continuation `##ing` without its `##`, and a word-initial token with `▁` before it.
pub(crate) fn phantom(token: &str) -> String {
    if token.starts_with('[') && token.ends_with(']') {
        token.to_owned()
    } else if let Some(rest) = token.strip_prefix("##") {
        rest.to_owned()
    } else {
        format!("\u{2581}{token}")
    }
}

/// The tokens of tokenizer.json's `vocab` (token to id) and `added_tokens` in id order, with
/// their types: added special tokens control, other added tokens user-defined, the rest normal.
/// As llama.cpp does, embedding rows up to config.json's `vocab_size` (`n_vocab`) that no token
/// uses get unused placeholder tokens `[PAD{id}]`. `bad` makes an error of a reason.
pub(crate) fn by_id(
    vocab: &Map<String, Json>,
    added: &[Json],
    n_vocab: u64,
    bad: &dyn Fn(String) -> ConvertError,
) -> Result<(Vec<String>, Vec<i32>), ConvertError> {
    // Tokens by id: the vocabulary, then added tokens (often the same ids again).
    let entries = vocab.len() + added.len();
    let mut tokens: Vec<Option<String>> = Vec::new();
    let mut types = Vec::new();
    let mut place = |token: &str, id: Option<u64>, ty: i32| -> Result<(), ConvertError> {
        let id = id
            .and_then(|id| usize::try_from(id).ok())
            .filter(|&id| id < entries)
            .ok_or_else(|| bad(format!("token {token:?} has no id below {entries}")))?;
        if id >= tokens.len() {
            tokens.resize(id + 1, None);
            types.resize(id + 1, NORMAL);
        }
        tokens[id] = Some(token.to_owned());
        types[id] = ty;
        Ok(())
    };
    for (token, id) in vocab {
        place(token, id.as_u64(), NORMAL)?;
    }
    for a in added {
        let content = a
            .get("content")
            .and_then(Json::as_str)
            .ok_or_else(|| bad("an added token has no content".into()))?;
        let special = a.get("special").and_then(Json::as_bool) == Some(true);
        let ty = if special { CONTROL } else { USER_DEFINED };
        place(content, a.get("id").and_then(Json::as_u64), ty)?;
    }
    let mut tokens = tokens
        .into_iter()
        .enumerate()
        .map(|(id, t)| t.ok_or_else(|| bad(format!("no token has id {id}"))))
        .collect::<Result<Vec<_>, _>>()?;

    if tokens.len() as u64 > n_vocab {
        return Err(bad(format!(
            "{} tokens, more than config.json's vocab_size {n_vocab}; the tokenizer belongs \
             to another model",
            tokens.len()
        )));
    }
    for id in tokens.len() as u64..n_vocab {
        tokens.push(format!("[PAD{id}]"));
        types.push(UNUSED);
    }
    Ok((tokens, types))
}

/// The `tokenizer.ggml.*` metadata of a WordPiece (BERT) tokenizer: the vocabulary in id order
/// in phantom-space spelling, token types (added special tokens control, other added tokens
/// user-defined, padding up to config.json's `vocab_size` unused), `token_type_count` and the
/// special token ids.
pub(crate) fn wordpiece(dir: &Path, config: &Config) -> Result<Vec<(String, Value)>, ConvertError> {
    let path = dir.join("tokenizer.json");
    let json = read_json(&path)?;
    let bad = |reason: String| ConvertError::Tokenizer {
        path: path.clone(),
        reason,
    };
    let model = json.get("model");
    let kind = model.and_then(|m| m.get("type")).and_then(Json::as_str);
    if kind != Some("WordPiece") {
        return Err(bad(format!(
            "the tokenizer model is {}, but a BERT model needs WordPiece; this is not the \
             model's own tokenizer.json",
            kind.unwrap_or("missing")
        )));
    }
    let vocab = model
        .and_then(|m| m.get("vocab"))
        .and_then(Json::as_object)
        .ok_or_else(|| bad("model.vocab is not an object of tokens and ids".into()))?;
    let added = json
        .get("added_tokens")
        .and_then(Json::as_array)
        .map_or(&[][..], Vec::as_slice);
    let (tokens, types) = by_id(vocab, added, config.u64("vocab_size")?, &bad)?;

    let id_of = |token: &str| tokens.iter().position(|t| t == token).map(|i| i as u32);
    let unk = model
        .and_then(|m| m.get("unk_token"))
        .and_then(Json::as_str)
        .unwrap_or("[UNK]");
    let mut out = vec![("tokenizer.ggml.model".to_owned(), Value::from("bert"))];
    let mut ids = Vec::new();
    for (key, token, required) in [
        // llama.cpp reads the [CLS] token as BOS; older versions read cls_token_id.
        ("bos_token_id", "[CLS]", true),
        ("cls_token_id", "[CLS]", true),
        ("seperator_token_id", "[SEP]", true),
        ("unknown_token_id", unk, true),
        ("padding_token_id", "[PAD]", false),
        ("mask_token_id", "[MASK]", false),
    ] {
        match id_of(token) {
            Some(id) => ids.push((format!("tokenizer.ggml.{key}"), Value::U32(id))),
            None if required => {
                return Err(bad(format!(
                    "the vocabulary has no {token} token, which a BERT model needs"
                )))
            }
            None => {}
        }
    }

    let phantoms: Vec<String> = tokens.iter().map(|t| phantom(t)).collect();
    let mut seen = HashSet::new();
    if let Some(dup) = phantoms.iter().position(|t| !seen.insert(t.as_str())) {
        return Err(bad(format!(
            "token {:?} (id {dup}) is spelled {:?} in GGUF, like an earlier token; llama.cpp \
             would refuse the vocabulary",
            tokens[dup], phantoms[dup]
        )));
    }
    out.push((
        "tokenizer.ggml.tokens".into(),
        Value::Array(phantoms.into_iter().map(Value::String).collect()),
    ));
    out.push((
        "tokenizer.ggml.token_type".into(),
        Value::Array(types.into_iter().map(Value::I32).collect()),
    ));
    out.push((
        "tokenizer.ggml.token_type_count".into(),
        Value::U32(config.u32("type_vocab_size")?),
    ));
    out.extend(ids);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phantom_space_spelling() {
        assert_eq!(phantom("[CLS]"), "[CLS]");
        assert_eq!(phantom("[unused0]"), "[unused0]");
        assert_eq!(phantom("##ing"), "ing");
        assert_eq!(phantom("hello"), "\u{2581}hello");
        assert_eq!(phantom("["), "\u{2581}[");
        assert_eq!(phantom("#"), "\u{2581}#");
    }

    fn setup(tokenizer: &str, vocab_size: u64) -> (tempfile::TempDir, Config) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tokenizer.json"), tokenizer).unwrap();
        std::fs::write(
            dir.path().join("config.json"),
            format!(r#"{{"vocab_size": {vocab_size}, "type_vocab_size": 2}}"#),
        )
        .unwrap();
        let config = Config::read(dir.path()).unwrap();
        (dir, config)
    }

    const TOKENIZER: &str = r###"{
        "added_tokens": [
            {"id": 0, "content": "[PAD]", "special": true},
            {"id": 1, "content": "[UNK]", "special": true},
            {"id": 2, "content": "[CLS]", "special": true},
            {"id": 3, "content": "[SEP]", "special": true},
            {"id": 6, "content": "<x>", "special": false}
        ],
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "vocab": {
            "[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "hi": 4, "##s": 5, "<x>": 6
        }}
    }"###;

    fn get<'a>(meta: &'a [(String, Value)], key: &str) -> Option<&'a Value> {
        meta.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    #[test]
    fn vocabulary_types_and_ids() {
        let (dir, config) = setup(TOKENIZER, 8);
        let meta = wordpiece(dir.path(), &config).unwrap();
        let strings = |key| -> Vec<String> {
            get(&meta, key)
                .unwrap()
                .as_array()
                .unwrap()
                .iter()
                .map(|v| match v {
                    Value::String(s) => s.clone(),
                    other => format!("{other:?}"),
                })
                .collect()
        };
        assert_eq!(
            strings("tokenizer.ggml.tokens"),
            [
                "[PAD]",
                "[UNK]",
                "[CLS]",
                "[SEP]",
                "\u{2581}hi",
                "s",
                "\u{2581}<x>",
                "[PAD7]"
            ]
        );
        assert_eq!(
            strings("tokenizer.ggml.token_type"),
            ["I32(3)", "I32(3)", "I32(3)", "I32(3)", "I32(1)", "I32(1)", "I32(4)", "I32(5)"]
        );
        let id = |key: &str| get(&meta, &format!("tokenizer.ggml.{key}")).cloned();
        assert_eq!(id("model"), Some(Value::from("bert")));
        assert_eq!(id("bos_token_id"), Some(Value::U32(2)));
        assert_eq!(id("cls_token_id"), Some(Value::U32(2)));
        assert_eq!(id("seperator_token_id"), Some(Value::U32(3)));
        assert_eq!(id("unknown_token_id"), Some(Value::U32(1)));
        assert_eq!(id("padding_token_id"), Some(Value::U32(0)));
        assert_eq!(id("mask_token_id"), None);
        assert_eq!(id("token_type_count"), Some(Value::U32(2)));
    }

    #[test]
    fn unusable_tokenizers_are_errors() {
        let cases = [
            (TOKENIZER.replace("WordPiece", "BPE"), 8, "needs WordPiece"),
            (
                TOKENIZER.to_owned(),
                6,
                "more than config.json's vocab_size 6",
            ),
            (
                TOKENIZER.replace(r#""hi": 4"#, r#""hi": 9"#),
                10,
                "no token has id 4",
            ),
            (
                TOKENIZER.replace(r#""hi": 4"#, r#""hi": 99"#),
                10,
                "no id below",
            ),
            (
                TOKENIZER
                    .replace(r#""[CLS]": 2"#, r#""[XLS]": 2"#)
                    .replace(r#""content": "[CLS]""#, r#""content": "[XLS]""#),
                8,
                "no [CLS] token",
            ),
            (
                TOKENIZER.replace(r#""hi": 4"#, r###""##[SEP]": 4"###),
                8,
                "like an earlier token",
            ),
        ];
        for (text, vocab_size, want) in cases {
            let (dir, config) = setup(&text, vocab_size);
            let e = wordpiece(dir.path(), &config).unwrap_err().to_string();
            assert!(
                e.contains(want) && e.contains("tokenizer.json"),
                "{want}: {e}"
            );
        }
    }
}
