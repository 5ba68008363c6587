//! SentencePiece tokenizers (Gemma's) from tokenizer.json, as llama.cpp's
//! `tokenizer.ggml.model = "llama"` metadata: the pieces in id order with their scores and
//! token types, the special token ids, `add_bos_token`/`add_eos_token`, `add_space_prefix` and
//! the chat template.
//!
//! llama.cpp merges adjacent pieces highest score first. tokenizer.json keeps SentencePiece's
//! scores in a `Unigram` model; a `BPE` model with byte fallback (the form transformers writes
//! for SentencePiece BPE, as Gemma ships it) has merges instead, ranked in score order, so a
//! piece's score is minus the rank of the first merge that makes it (pieces no merge makes:
//! below every merge). Either way:
//!
//! - `<0xXX>` pieces of a byte-fallback model are byte tokens (type 6, score 0), the unknown
//!   piece type 2, the others normal;
//! - added tokens override, as llama.cpp's converter reads them: control (3) when special or
//!   looking special (`<unusedN>`, `<|...|>`, `<mask>`...), else user-defined (4) with `▁`
//!   spelled as a space; their score is -1000;
//! - rows up to config.json's `vocab_size` that no piece fills are `[PAD{id}]`, unused (5).
//!
//! Spaces must become `▁` (a `Replace` normalizer or a `Metaspace` pre-tokenizer); a `▁`
//! prepended to the text (`Prepend`, or `Metaspace` adding a prefix space) is
//! `add_space_prefix`. Other normalizers (NFKC, precompiled character maps) and pre-tokenizers
//! are errors rather than a file that tokenizes differently.

use std::collections::HashMap;
use std::path::Path;

use gguf::Value;
use serde_json::Value as Json;

use crate::bpe::{merge, specials};
use crate::hf::{read_json, Config};
use crate::ConvertError;

/// llama.cpp's `llama_token_type` values.
const NORMAL: i32 = 1;
const UNKNOWN: i32 = 2;
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;
const UNUSED: i32 = 5;
const BYTE: i32 = 6;

/// The score llama.cpp gives added tokens and padding.
const ADDED_SCORE: f32 = -1000.0;

/// SentencePiece's word-boundary mark, which stands for a space.
const SPACE: &str = "\u{2581}";

/// One vocabulary entry.
#[derive(Clone, Debug, PartialEq)]
struct Piece {
    text: String,
    score: f32,
    ty: i32,
}

/// The `tokenizer.ggml.*` metadata (and `tokenizer.chat_template`) of a SentencePiece
/// tokenizer.json (see the module's documentation).
pub(crate) fn spm(dir: &Path, config: &Config) -> Result<Vec<(String, Value)>, ConvertError> {
    let path = dir.join("tokenizer.json");
    let json = read_json(&path)?;
    let bad = |reason: String| ConvertError::Tokenizer {
        path: path.clone(),
        reason,
    };
    let space_prefix = spaces(&json).map_err(bad)?;
    let model = json.get("model").unwrap_or(&Json::Null);
    let added = json
        .get("added_tokens")
        .and_then(Json::as_array)
        .map_or(&[][..], Vec::as_slice);
    let mut pieces = match model.get("type").and_then(Json::as_str) {
        Some("Unigram") => unigram(model),
        Some("BPE") => bpe(model, added.len()),
        other => Err(format!(
            "the tokenizer model is {}, but this model needs a SentencePiece tokenizer (Unigram, \
             or BPE with byte fallback); this is not the model's own tokenizer.json",
            other.unwrap_or("missing")
        )),
    }
    .map_err(bad)?;
    let limit = pieces.len() + added.len();
    for a in added {
        let (id, piece) = added_token(a).map_err(bad)?;
        if id >= limit {
            return Err(bad(format!(
                "added token {:?} has no id below {limit}",
                piece.text
            )));
        }
        if id >= pieces.len() {
            pieces.resize(id + 1, None);
        }
        pieces[id] = Some(piece);
    }
    let mut pieces = pieces
        .into_iter()
        .enumerate()
        .map(|(id, p)| p.ok_or_else(|| bad(format!("no token has id {id}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let n_vocab = config.u64("vocab_size")?;
    if pieces.len() as u64 > n_vocab {
        return Err(bad(format!(
            "{} tokens, more than config.json's vocab_size {n_vocab}; the tokenizer belongs \
             to another model",
            pieces.len()
        )));
    }
    for id in pieces.len() as u64..n_vocab {
        pieces.push(Piece {
            text: format!("[PAD{id}]"),
            score: ADDED_SCORE,
            ty: UNUSED,
        });
    }

    let tokens: Vec<String> = pieces.iter().map(|p| p.text.clone()).collect();
    let (specials, templates) = specials(dir, &json, config, &tokens)?;
    let mut out = vec![
        ("tokenizer.ggml.model".to_owned(), Value::from("llama")),
        ("tokenizer.ggml.pre".to_owned(), Value::from("default")),
        (
            "tokenizer.ggml.tokens".to_owned(),
            Value::Array(tokens.into_iter().map(Value::String).collect()),
        ),
        (
            "tokenizer.ggml.scores".to_owned(),
            Value::Array(pieces.iter().map(|p| Value::F32(p.score)).collect()),
        ),
        (
            "tokenizer.ggml.token_type".to_owned(),
            Value::Array(pieces.iter().map(|p| Value::I32(p.ty)).collect()),
        ),
    ];
    out.extend(specials);
    out.push((
        "tokenizer.ggml.add_space_prefix".into(),
        Value::Bool(space_prefix),
    ));
    out.extend(templates);
    Ok(out)
}

/// Whether a `▁` is put before the text (`add_space_prefix`), after checking that spaces
/// become `▁` and nothing else changes the text.
fn spaces(json: &Json) -> Result<bool, String> {
    let (mut replaced, mut prefix) = (false, false);
    let mut steps = Vec::new();
    flatten(json.get("normalizer"), "normalizers", &mut steps);
    for step in steps {
        let field = |key: &str| step.get(key);
        match field("type").and_then(Json::as_str) {
            Some("Replace")
                if field("pattern")
                    .and_then(|p| p.get("String"))
                    .and_then(Json::as_str)
                    == Some(" ")
                    && field("content").and_then(Json::as_str) == Some(SPACE) =>
            {
                replaced = true
            }
            Some("Prepend") if field("prepend").and_then(Json::as_str) == Some(SPACE) => {
                prefix = true
            }
            other => {
                return Err(format!(
                    "the normalizer {} is not supported (only replacing spaces by \u{2581} and \
                     prepending \u{2581})",
                    other.unwrap_or("?")
                ))
            }
        }
    }
    let mut steps = Vec::new();
    flatten(json.get("pre_tokenizer"), "pretokenizers", &mut steps);
    for step in steps {
        let field = |key: &str| step.get(key);
        match field("type").and_then(Json::as_str) {
            Some("Metaspace") if field("replacement").and_then(Json::as_str) == Some(SPACE) => {
                replaced = true;
                prefix = match field("prepend_scheme").and_then(Json::as_str) {
                    Some(scheme) => scheme != "never",
                    None => field("add_prefix_space")
                        .and_then(Json::as_bool)
                        .unwrap_or(true),
                };
            }
            // After spaces became ▁, splitting on spaces changes nothing.
            Some("Split")
                if replaced
                    && field("pattern")
                        .and_then(|p| p.get("String"))
                        .and_then(Json::as_str)
                        == Some(" ") => {}
            other => {
                return Err(format!(
                    "the pre-tokenizer {} is not supported (only Metaspace, or none)",
                    other.unwrap_or("?")
                ))
            }
        }
    }
    if !replaced {
        return Err(
            "spaces are not replaced by \u{2581} (by a Replace normalizer or a \
                    Metaspace pre-tokenizer), as a SentencePiece tokenizer needs"
                .into(),
        );
    }
    Ok(prefix)
}

/// Appends a normalizer's or pre-tokenizer's steps (a `Sequence` step by step; none for null)
/// to `out`.
fn flatten<'a>(step: Option<&'a Json>, list: &str, out: &mut Vec<&'a Json>) {
    let Some(step) = step.filter(|s| !s.is_null()) else {
        return;
    };
    match step.get(list).and_then(Json::as_array) {
        Some(steps) if step.get("type").and_then(Json::as_str) == Some("Sequence") => {
            for s in steps {
                flatten(Some(s), list, out);
            }
        }
        _ => out.push(step),
    }
}

/// The type of a piece of the model's own vocabulary.
fn base_type(text: &str, unk: Option<&str>, byte_fallback: bool) -> i32 {
    if Some(text) == unk {
        UNKNOWN
    } else if byte_fallback && is_byte(text) {
        BYTE
    } else {
        NORMAL
    }
}

/// Whether `text` is a byte piece, `<0xXX>`.
fn is_byte(text: &str) -> bool {
    text.len() == 6
        && text.starts_with("<0x")
        && text.ends_with('>')
        && text[3..5].bytes().all(|b| b.is_ascii_hexdigit())
}

/// The pieces of a Unigram model: `vocab` is `[piece, score]` in id order.
fn unigram(model: &Json) -> Result<Vec<Option<Piece>>, String> {
    let vocab = model
        .get("vocab")
        .and_then(Json::as_array)
        .ok_or("model.vocab is not a list of [piece, score]")?;
    let unk = model
        .get("unk_id")
        .and_then(Json::as_u64)
        .and_then(|id| vocab.get(id as usize))
        .and_then(|v| v.get(0))
        .and_then(Json::as_str);
    let byte_fallback = model.get("byte_fallback").and_then(Json::as_bool) == Some(true);
    vocab
        .iter()
        .enumerate()
        .map(|(id, v)| match v.as_array().map(Vec::as_slice) {
            Some([Json::String(text), score]) => {
                let score = score
                    .as_f64()
                    .ok_or(format!("piece {id} has no numeric score"))?;
                Ok(Some(Piece {
                    text: text.clone(),
                    score: score as f32,
                    ty: base_type(text, unk, byte_fallback),
                }))
            }
            _ => Err(format!("piece {id} is not [piece, score]")),
        })
        .collect()
}

/// The pieces of a BPE model with byte fallback, scored by merge rank. Ids may leave `room`
/// gaps (for added tokens outside the model's vocabulary).
fn bpe(model: &Json, room: usize) -> Result<Vec<Option<Piece>>, String> {
    if model.get("byte_fallback").and_then(Json::as_bool) != Some(true) {
        return Err(
            "a BPE tokenizer without byte fallback is not SentencePiece's; this \
                    model needs a SentencePiece tokenizer"
                .into(),
        );
    }
    let vocab = model
        .get("vocab")
        .and_then(Json::as_object)
        .ok_or("model.vocab is not an object of tokens and ids")?;
    let merges = model
        .get("merges")
        .and_then(Json::as_array)
        .ok_or("model.merges is not a list")?;
    let mut rank: HashMap<String, usize> = HashMap::new();
    for (i, m) in merges.iter().enumerate() {
        let text = merge(m)
            .and_then(|m| m.split_once(' ').map(|(a, b)| format!("{a}{b}")))
            .ok_or(format!("merge {i} is not \"a b\" or [a, b]"))?;
        if !vocab.contains_key(&text) {
            return Err(format!(
                "merge {i} makes {text:?}, which is not in the vocabulary"
            ));
        }
        rank.entry(text).or_insert(i);
    }
    let unk = model.get("unk_token").and_then(Json::as_str);
    let mut pieces = Vec::new();
    for (text, id) in vocab {
        let id = id
            .as_u64()
            .and_then(|id| usize::try_from(id).ok())
            .filter(|&id| id < vocab.len() + room)
            .ok_or(format!("token {text:?} has no usable id"))?;
        if id >= pieces.len() {
            pieces.resize(id + 1, None);
        }
        let slot = &mut pieces[id];
        let ty = base_type(text, unk, true);
        let score = match (ty, rank.get(text)) {
            (BYTE, _) => 0.0,
            (_, Some(&r)) => -(r as f32),
            (_, None) => -(merges.len() as f32),
        };
        *slot = Some(Piece {
            text: text.clone(),
            score,
            ty,
        });
    }
    Ok(pieces)
}

/// An entry of tokenizer.json's `added_tokens`: its id and piece.
fn added_token(a: &Json) -> Result<(usize, Piece), String> {
    let text = a
        .get("content")
        .and_then(Json::as_str)
        .ok_or("an added token has no content")?;
    let id = a
        .get("id")
        .and_then(Json::as_u64)
        .ok_or(format!("added token {text:?} has no id"))?;
    let special = a.get("special").and_then(Json::as_bool) == Some(true);
    let piece = if special || looks_special(text) {
        Piece {
            text: text.to_owned(),
            score: ADDED_SCORE,
            ty: CONTROL,
        }
    } else {
        Piece {
            text: text.replace(SPACE, " "),
            score: ADDED_SCORE,
            ty: USER_DEFINED,
        }
    };
    Ok((id as usize, piece))
}

/// Added tokens llama.cpp's converter makes control tokens though they are not marked special
/// (Gemma's `<unusedN>` and `<mask>`, `<|...|>`).
fn looks_special(text: &str) -> bool {
    matches!(text, "<pad>" | "<mask>" | "<2mass>" | "[@BOS@]")
        || (text.starts_with("<|") && text.ends_with("|>"))
        || (text.starts_with("<\u{ff5c}") && text.ends_with("\u{ff5c}>"))
        || (text.starts_with("<unused") && text.ends_with('>'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn byte_pieces_and_special_looks() {
        assert!(is_byte("<0x0A>") && is_byte("<0xff>"));
        assert!(!is_byte("<0x0G>") && !is_byte("<0x0A") && !is_byte("0x0A>"));
        assert!(looks_special("<unused12>") && looks_special("<|im_end|>"));
        assert!(looks_special("<mask>") && !looks_special("<start_of_image>"));
    }

    #[test]
    fn spaces_from_normalizer_or_metaspace() {
        let replace = json!({"type": "Replace", "pattern": {"String": " "}, "content": SPACE});
        let prepend = json!({"type": "Prepend", "prepend": SPACE});
        let cases = [
            (json!({"normalizer": replace}), Ok(false)),
            (
                json!({"normalizer": {"type": "Sequence", "normalizers": [prepend, replace]}}),
                Ok(true),
            ),
            (
                json!({"pre_tokenizer": {"type": "Metaspace", "replacement": SPACE,
                    "prepend_scheme": "first"}}),
                Ok(true),
            ),
            (
                json!({"pre_tokenizer": {"type": "Metaspace", "replacement": SPACE,
                    "add_prefix_space": false}}),
                Ok(false),
            ),
        ];
        for (json, want) in cases {
            assert_eq!(spaces(&json), want, "{json}");
        }
        let e = spaces(&json!({"normalizer": {"type": "Precompiled"}})).unwrap_err();
        assert!(e.contains("Precompiled"), "{e}");
    }

    /// gemma-3-270m's vocabulary (from the GGUF llama.cpp made of it, when fetched) written as
    /// a Unigram tokenizer.json reads back as llama.cpp wrote it.
    #[test]
    fn gemma3_270m_vocabulary_reads_back() {
        let Some(home) = std::env::var_os("HOME") else {
            return;
        };
        let file = Path::new(&home).join(".cache/hearth/test-models/gemma-3-270m-q4_k_m.gguf");
        let Ok(g) = gguf::Gguf::open(&file) else {
            return;
        };
        let strings = |key: &str| -> Vec<Value> { g.get_array(key).unwrap().to_vec() };
        let (tokens, scores, types) = (
            strings("tokenizer.ggml.tokens"),
            strings("tokenizer.ggml.scores"),
            strings("tokenizer.ggml.token_type"),
        );
        let mut vocab = Vec::new();
        let mut added = Vec::new();
        for (id, ((t, s), ty)) in tokens.iter().zip(&scores).zip(&types).enumerate() {
            let (t, ty) = (t.as_str().unwrap(), ty.as_i64().unwrap());
            vocab.push(json!([t, s.as_f32().unwrap()]));
            if ty == 3 || ty == 4 {
                added.push(json!({"id": id, "content": t, "special": ty == 3}));
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let tokenizer = json!({
            "added_tokens": added,
            "normalizer": {"type": "Replace", "pattern": {"String": " "}, "content": SPACE},
            "model": {"type": "Unigram", "unk_id": 3, "vocab": vocab, "byte_fallback": true},
        });
        std::fs::write(dir.path().join("tokenizer.json"), tokenizer.to_string()).unwrap();
        std::fs::write(
            dir.path().join("tokenizer_config.json"),
            r#"{"bos_token": "<bos>", "eos_token": "<eos>", "unk_token": "<unk>",
                "pad_token": "<pad>", "add_bos_token": true, "add_eos_token": false}"#,
        )
        .unwrap();
        std::fs::write(
            dir.path().join("config.json"),
            format!(r#"{{"vocab_size": {}}}"#, tokens.len()),
        )
        .unwrap();
        let config = Config::read(dir.path()).unwrap();
        let meta = spm(dir.path(), &config).unwrap();
        for (key, value) in meta {
            assert_eq!(g.get(&key), Some(&value), "{key}");
        }
    }
}
