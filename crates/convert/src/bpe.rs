//! Byte-level BPE tokenizers (GPT-2's scheme, as Llama 3, Qwen and SmolLM use it) from
//! tokenizer.json, with the special tokens, `add_bos_token` and chat template of
//! tokenizer_config.json, as llama.cpp's `tokenizer.ggml.model = "gpt2"` metadata.
//!
//! # The pre-tokenizer
//!
//! llama.cpp names the regular expressions that split text before merging
//! (`tokenizer.ggml.pre`); its converter recognises a model by hashing the token ids of a test
//! text. Here the choice comes from what actually splits: tokenizer.json's `pre_tokenizer` steps
//! (a `Sequence` flattened), compared with the ones the tokenizer crate implements:
//!
//! | steps | `tokenizer.ggml.pre` |
//! |---|---|
//! | `Split` on Llama 3's regex (`\p{N}{1,3}`), `ByteLevel` without its regex | `llama-bpe` |
//! | `Split` on Qwen 2's regex (`\p{N}`: single digits), `ByteLevel` without its regex | `qwen2` |
//! | `Digits` one by one, `ByteLevel` with GPT-2's regex | `smollm` |
//! | `ByteLevel` with GPT-2's regex | `gpt-2` |
//!
//! Anything else (another regex, a prefix space, a normalizer other than none or NFC, byte
//! fallback) is an error rather than a file that tokenizes differently.

use std::collections::HashMap;
use std::path::Path;

use gguf::Value;
#[cfg(test)]
use serde_json::json;
use serde_json::Value as Json;

use crate::hf::{read_json, read_json_if_present, Config};
use crate::vocab::by_id;
use crate::ConvertError;

/// Llama 3's split regex, as its tokenizer.json writes it.
const LLAMA3_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Qwen 2's split regex: Llama 3's with single digits.
const QWEN2_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// One step of tokenizer.json's `pre_tokenizer`, as far as choosing the splitter needs.
#[derive(Debug, PartialEq)]
enum Step<'a> {
    /// `Split` on a regex, each match a piece of its own (`Isolated`).
    Regex(&'a str),
    /// `ByteLevel` without a prefix space; splitting with GPT-2's regex when `use_regex`.
    ByteLevel { use_regex: bool },
    /// `Digits` with every digit alone.
    SingleDigits,
}

/// The `tokenizer.ggml.pre` of each sequence of steps the tokenizer crate implements.
const KNOWN: &[(&[Step<'static>], &str)] = &[
    (
        &[
            Step::Regex(LLAMA3_REGEX),
            Step::ByteLevel { use_regex: false },
        ],
        "llama-bpe",
    ),
    (
        &[
            Step::Regex(QWEN2_REGEX),
            Step::ByteLevel { use_regex: false },
        ],
        "qwen2",
    ),
    (
        &[Step::SingleDigits, Step::ByteLevel { use_regex: true }],
        "smollm",
    ),
    (&[Step::ByteLevel { use_regex: true }], "gpt-2"),
];

/// The special tokens llama.cpp records: tokenizer_config.json's `{kind}_token`, config.json's
/// and generation_config.json's `{kind}_token_id`, and the GGUF key.
const SPECIALS: [(&str, &str); 4] = [
    ("bos", "bos_token_id"),
    ("eos", "eos_token_id"),
    ("unk", "unknown_token_id"),
    ("pad", "padding_token_id"),
];

/// The `tokenizer.ggml.*` metadata (and `tokenizer.chat_template`) of a byte-level BPE
/// tokenizer: `model` gpt2, `pre`, the tokens in id order with their types, the merges, the
/// special token ids, `add_bos_token`/`add_eos_token` where known, and the chat template.
pub(crate) fn bpe(dir: &Path, config: &Config) -> Result<Vec<(String, Value)>, ConvertError> {
    let path = dir.join("tokenizer.json");
    let json = read_json(&path)?;
    let bad = |reason: String| ConvertError::Tokenizer {
        path: path.clone(),
        reason,
    };
    let model = json.get("model");
    let kind = model.and_then(|m| m.get("type")).and_then(Json::as_str);
    if kind != Some("BPE") {
        return Err(bad(format!(
            "the tokenizer model is {}, but this model needs byte-level BPE; this is not the \
             model's own tokenizer.json",
            kind.unwrap_or("missing")
        )));
    }
    let model = model.unwrap_or(&Json::Null);
    if model.get("byte_fallback").and_then(Json::as_bool) == Some(true) {
        return Err(bad(
            "a BPE tokenizer with byte fallback (SentencePiece-style, as Mistral \
             7B's and Llama 2's) is not supported yet"
                .into(),
        ));
    }
    match json
        .get("normalizer")
        .filter(|n| !n.is_null())
        .map(|n| n.get("type").and_then(Json::as_str))
    {
        None | Some(Some("NFC")) => {}
        Some(other) => {
            return Err(bad(format!(
                "the normalizer {} is not supported (only none or NFC)",
                other.unwrap_or("?")
            )))
        }
    }
    let pre = pre_tokenizer(json.get("pre_tokenizer").unwrap_or(&Json::Null)).map_err(bad)?;

    let vocab = model
        .get("vocab")
        .and_then(Json::as_object)
        .ok_or_else(|| bad("model.vocab is not an object of tokens and ids".into()))?;
    let added = json
        .get("added_tokens")
        .and_then(Json::as_array)
        .map_or(&[][..], Vec::as_slice);
    let (tokens, types) = by_id(vocab, added, config.u64("vocab_size")?, &bad)?;
    let merges = model
        .get("merges")
        .and_then(Json::as_array)
        .ok_or_else(|| bad("model.merges is not a list".into()))?
        .iter()
        .enumerate()
        .map(|(i, m)| merge(m).ok_or_else(|| bad(format!("merge {i} is not \"a b\" or [a, b]"))))
        .collect::<Result<Vec<_>, _>>()?;

    let (specials, templates) = specials(dir, &json, config, &tokens)?;
    let mut out = vec![
        ("tokenizer.ggml.model".to_owned(), Value::from("gpt2")),
        ("tokenizer.ggml.pre".to_owned(), Value::from(pre)),
    ];
    out.extend(specials);
    out.push((
        "tokenizer.ggml.tokens".into(),
        Value::Array(tokens.into_iter().map(Value::String).collect()),
    ));
    out.push((
        "tokenizer.ggml.token_type".into(),
        Value::Array(types.into_iter().map(Value::I32).collect()),
    ));
    out.push((
        "tokenizer.ggml.merges".into(),
        Value::Array(merges.into_iter().map(Value::String).collect()),
    ));
    out.extend(templates);
    Ok(out)
}

/// The metadata of [`specials`]: the special token ids and flags, then the chat templates.
pub(crate) type Specials = (Vec<(String, Value)>, Vec<(String, Value)>);

/// What tokenizers of every kind record besides their vocabulary: the BOS/EOS/UNK/padding ids
/// (tokenizer_config.json's token texts, then config.json's and generation_config.json's ids)
/// with `add_bos_token`/`add_eos_token` where known; and, second, the chat templates.
/// `json` is tokenizer.json, `tokens` the vocabulary in id order.
pub(crate) fn specials(
    dir: &Path,
    json: &Json,
    config: &Config,
    tokens: &[String],
) -> Result<Specials, ConvertError> {
    let tokenizer_config = read_json_if_present(&dir.join("tokenizer_config.json"))?;
    let tokenizer_config = tokenizer_config.as_ref().unwrap_or(&Json::Null);
    let generation = read_json_if_present(&dir.join("generation_config.json"))?;
    let ids: HashMap<&str, u32> = tokens
        .iter()
        .enumerate()
        .map(|(id, t)| (t.as_str(), id as u32))
        .collect();

    let mut out = Vec::new();
    let mut specials = HashMap::new();
    for (kind, key) in SPECIALS {
        let by_text = token_text(tokenizer_config.get(format!("{kind}_token")))
            .and_then(|t| ids.get(t).copied());
        let by_id = [config.get(&format!("{kind}_token_id")), {
            generation
                .as_ref()
                .and_then(|g| g.get(format!("{kind}_token_id")))
        }]
        .into_iter()
        .find_map(|v| first_id(v).filter(|&id| (id as usize) < tokens.len()));
        if let Some(id) = by_text.or(by_id) {
            specials.insert(kind, tokens[id as usize].as_str());
            out.push((format!("tokenizer.ggml.{key}"), Value::U32(id)));
        }
    }
    for (kind, key) in [("bos", "add_bos_token"), ("eos", "add_eos_token")] {
        let added = match tokenizer_config.get(key).and_then(Json::as_bool) {
            Some(on) => Some(on),
            None => template_adds(json, kind == "bos", specials.get(kind).copied()),
        };
        if let Some(on) = added {
            out.push((format!("tokenizer.ggml.{key}"), Value::Bool(on)));
        }
    }
    Ok((out, chat_templates(dir, tokenizer_config)?))
}

/// The `tokenizer.ggml.pre` for tokenizer.json's `pre_tokenizer` (see the module's table).
fn pre_tokenizer(json: &Json) -> Result<&'static str, String> {
    let mut steps = Vec::new();
    flatten(json, &mut steps)?;
    KNOWN
        .iter()
        .find(|(known, _)| *known == steps.as_slice())
        .map(|&(_, name)| name)
        .ok_or_else(|| {
            format!(
                "the pre-tokenizer {steps:?} is none of those supported: Llama 3's split \
                 regex then ByteLevel (llama-bpe), Qwen 2's (qwen2), single digits then \
                 ByteLevel (smollm), ByteLevel alone (gpt-2)"
            )
        })
}

/// Appends the steps of one `pre_tokenizer` object (a `Sequence` step by step) to `out`.
fn flatten<'a>(json: &'a Json, out: &mut Vec<Step<'a>>) -> Result<(), String> {
    let field = |key: &str| json.get(key);
    let flag = |key: &str, default: bool| field(key).and_then(Json::as_bool).unwrap_or(default);
    match field("type").and_then(Json::as_str) {
        Some("Sequence") => {
            let steps = field("pretokenizers")
                .and_then(Json::as_array)
                .ok_or("a Sequence pre-tokenizer without its list")?;
            for step in steps {
                flatten(step, out)?;
            }
        }
        Some("Split") => {
            let regex = field("pattern")
                .and_then(|p| p.get("Regex"))
                .and_then(Json::as_str)
                .ok_or("a Split pre-tokenizer without a regex")?;
            if field("behavior").and_then(Json::as_str) != Some("Isolated") || flag("invert", false)
            {
                return Err("a Split pre-tokenizer that does not isolate its matches".into());
            }
            out.push(Step::Regex(regex));
        }
        Some("ByteLevel") => {
            // tokenizers' default is a prefix space, which llama.cpp never adds.
            if flag("add_prefix_space", true) {
                return Err("a ByteLevel pre-tokenizer that adds a prefix space".into());
            }
            out.push(Step::ByteLevel {
                use_regex: flag("use_regex", true),
            });
        }
        Some("Digits") if flag("individual_digits", false) => out.push(Step::SingleDigits),
        other => {
            return Err(format!(
                "the pre-tokenizer step {} is not supported",
                other.unwrap_or("(none)")
            ))
        }
    }
    Ok(())
}

/// A merge as llama.cpp stores it (`"a b"`), from either form tokenizer.json uses.
pub(crate) fn merge(m: &Json) -> Option<String> {
    match m {
        Json::String(s) => Some(s.clone()),
        Json::Array(pair) => match pair.as_slice() {
            [Json::String(a), Json::String(b)] => Some(format!("{a} {b}")),
            _ => None,
        },
        _ => None,
    }
}

/// A special token's text in tokenizer_config.json: a string or an added-token object.
fn token_text(v: Option<&Json>) -> Option<&str> {
    match v? {
        Json::String(s) => Some(s),
        other => other.get("content").and_then(Json::as_str),
    }
}

/// A token id in config.json or generation_config.json: a number, or the first of a list.
fn first_id(v: Option<&Json>) -> Option<u32> {
    let v = v?;
    let id = match v.as_array() {
        Some(list) => list.first()?,
        None => v,
    };
    id.as_u64().and_then(|id| u32::try_from(id).ok())
}

/// Whether tokenizer.json's post-processor template puts `special` (the BOS token when `first`,
/// else EOS) first (or last) around a single text; None without a template.
fn template_adds(json: &Json, first: bool, special: Option<&str>) -> Option<bool> {
    let processor = json.get("post_processor")?;
    let template = match processor.get("type").and_then(Json::as_str)? {
        "TemplateProcessing" => processor,
        "Sequence" => processor
            .get("processors")?
            .as_array()?
            .iter()
            .find(|p| p.get("type").and_then(Json::as_str) == Some("TemplateProcessing"))?,
        _ => return None,
    };
    let single = template.get("single")?.as_array()?;
    let end = if first { single.first() } else { single.last() };
    let id = end
        .and_then(|e| e.get("SpecialToken"))
        .and_then(|t| t.get("id"))
        .and_then(Json::as_str);
    Some(id.is_some() && id == special)
}

/// `tokenizer.chat_template` from `chat_template.jinja` or tokenizer_config.json's
/// `chat_template`: one template, or a list of named ones (`default` becomes
/// `tokenizer.chat_template`, another `tokenizer.chat_template.{name}`).
fn chat_templates(dir: &Path, config: &Json) -> Result<Vec<(String, Value)>, ConvertError> {
    const KEY: &str = "tokenizer.chat_template";
    let file = dir.join("chat_template.jinja");
    match std::fs::read_to_string(&file) {
        Ok(text) => return Ok(vec![(KEY.into(), Value::String(text))]),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(crate::error::io_err("read", file)(e)),
    }
    let bad = || ConvertError::BadKey {
        path: dir.join("tokenizer_config.json"),
        key: "chat_template".into(),
        expected: "a template or a list of {name, template}",
    };
    Ok(match config.get("chat_template") {
        None | Some(Json::Null) => Vec::new(),
        Some(Json::String(t)) => vec![(KEY.into(), Value::String(t.clone()))],
        Some(Json::Array(named)) => named
            .iter()
            .map(|t| {
                let name = t.get("name").and_then(Json::as_str).ok_or_else(bad)?;
                let text = t.get("template").and_then(Json::as_str).ok_or_else(bad)?;
                let key = match name {
                    "default" => KEY.to_owned(),
                    _ => format!("{KEY}.{name}"),
                };
                Ok((key, Value::String(text.to_owned())))
            })
            .collect::<Result<_, ConvertError>>()?,
        Some(_) => return Err(bad()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pre(steps: Json) -> Result<&'static str, String> {
        pre_tokenizer(&steps)
    }

    #[test]
    fn pre_tokenizers_by_their_steps() {
        let byte_level = |use_regex| {
            json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true,
                   "use_regex": use_regex})
        };
        let split = |regex: &str| {
            json!({"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated",
                   "invert": false})
        };
        let sequence = |steps: Vec<Json>| json!({"type": "Sequence", "pretokenizers": steps});
        assert_eq!(
            pre(sequence(vec![split(LLAMA3_REGEX), byte_level(false)])),
            Ok("llama-bpe")
        );
        assert_eq!(
            pre(sequence(vec![split(QWEN2_REGEX), byte_level(false)])),
            Ok("qwen2")
        );
        let digits = json!({"type": "Digits", "individual_digits": true});
        assert_eq!(
            pre(sequence(vec![digits.clone(), byte_level(true)])),
            Ok("smollm")
        );
        assert_eq!(pre(byte_level(true)), Ok("gpt-2"));
        // Nested sequences flatten.
        assert_eq!(
            pre(sequence(vec![sequence(vec![digits]), byte_level(true)])),
            Ok("smollm")
        );
        for (steps, want) in [
            (byte_level(false), "none of those supported"),
            (
                sequence(vec![split(QWEN2_REGEX), byte_level(true)]),
                "none of those",
            ),
            (
                json!({"type": "ByteLevel", "use_regex": true}),
                "prefix space",
            ),
            (json!({"type": "Metaspace"}), "Metaspace"),
            (
                json!({"type": "Digits", "individual_digits": false}),
                "Digits",
            ),
            (Json::Null, "(none)"),
        ] {
            let e = pre(steps).unwrap_err();
            assert!(e.contains(want), "{want}: {e}");
        }
    }

    #[test]
    fn merges_ids_and_templates() {
        assert_eq!(merge(&json!("Ġ t")).as_deref(), Some("Ġ t"));
        assert_eq!(merge(&json!(["Ġ", "t"])).as_deref(), Some("Ġ t"));
        assert_eq!(merge(&json!(["a"])), None);
        assert_eq!(first_id(Some(&json!(7))), Some(7));
        assert_eq!(first_id(Some(&json!([9, 8]))), Some(9));
        assert_eq!(first_id(Some(&json!([]))), None);
        assert_eq!(token_text(Some(&json!({"content": "<s>"}))), Some("<s>"));

        let bos_first = json!({"post_processor": {"type": "Sequence", "processors": [
            {"type": "ByteLevel"},
            {"type": "TemplateProcessing", "single": [
                {"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}},
                {"Sequence": {"id": "A", "type_id": 0}}
            ]}
        ]}});
        let bos = Some("<|begin_of_text|>");
        assert_eq!(template_adds(&bos_first, true, bos), Some(true));
        assert_eq!(
            template_adds(&bos_first, false, Some("<|eot_id|>")),
            Some(false)
        );
        assert_eq!(
            template_adds(&json!({"post_processor": null}), true, bos),
            None
        );
    }

    fn dir(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    const TOKENIZER: &str = r#"{
        "added_tokens": [{"id": 5, "content": "<|end|>", "special": true},
                         {"id": 6, "content": "<tool>", "special": false}],
        "normalizer": null,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true},
        "post_processor": {"type": "TemplateProcessing", "single": [
            {"SpecialToken": {"id": "<|end|>", "type_id": 0}}, {"Sequence": {"id": "A"}}]},
        "model": {"type": "BPE", "byte_fallback": false,
                  "vocab": {"a": 0, "b": 1, "Ġ": 2, "ab": 3, "Ġab": 4},
                  "merges": [["a", "b"], "Ġ ab"]}
    }"#;

    fn meta(files: &[(&str, &str)]) -> Result<Vec<(String, Value)>, ConvertError> {
        let d = dir(files);
        let config = Config::read(d.path())?;
        bpe(d.path(), &config)
    }

    fn get<'a>(meta: &'a [(String, Value)], key: &str) -> Option<&'a Value> {
        meta.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    #[test]
    fn metadata_from_the_tokenizer_files() {
        let m = meta(&[
            ("tokenizer.json", TOKENIZER),
            (
                "config.json",
                r#"{"vocab_size": 8, "bos_token_id": 5, "eos_token_id": [5, 1],
                    "pad_token_id": 99}"#,
            ),
            ("generation_config.json", r#"{"pad_token_id": 1}"#),
            (
                "tokenizer_config.json",
                r#"{"eos_token": {"content": "<tool>"},
                    "chat_template": [{"name": "default", "template": "D"},
                                      {"name": "tool_use", "template": "T"}]}"#,
            ),
        ])
        .unwrap();
        let strings = |key| -> Vec<String> {
            get(&m, key)
                .unwrap()
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.to_string())
                .collect()
        };
        assert_eq!(get(&m, "tokenizer.ggml.model"), Some(&Value::from("gpt2")));
        assert_eq!(get(&m, "tokenizer.ggml.pre"), Some(&Value::from("gpt-2")));
        assert_eq!(
            strings("tokenizer.ggml.tokens"),
            ["a", "b", "Ġ", "ab", "Ġab", "<|end|>", "<tool>", "[PAD7]"].map(|t| format!("{t:?}"))
        );
        assert_eq!(
            strings("tokenizer.ggml.token_type"),
            ["1", "1", "1", "1", "1", "3", "4", "5"]
        );
        assert_eq!(strings("tokenizer.ggml.merges"), [r#""a b""#, r#""Ġ ab""#]);
        let value = |key: &str| get(&m, key).cloned();
        // By id from config.json; tokenizer_config.json's text first; out-of-range ids skipped,
        // generation_config.json next.
        assert_eq!(value("tokenizer.ggml.bos_token_id"), Some(Value::U32(5)));
        assert_eq!(value("tokenizer.ggml.eos_token_id"), Some(Value::U32(6)));
        assert_eq!(
            value("tokenizer.ggml.padding_token_id"),
            Some(Value::U32(1))
        );
        assert_eq!(value("tokenizer.ggml.unknown_token_id"), None);
        // From the post-processor: BOS first, EOS not last.
        assert_eq!(
            value("tokenizer.ggml.add_bos_token"),
            Some(Value::Bool(true))
        );
        assert_eq!(
            value("tokenizer.ggml.add_eos_token"),
            Some(Value::Bool(false))
        );
        assert_eq!(value("tokenizer.chat_template"), Some(Value::from("D")));
        assert_eq!(
            value("tokenizer.chat_template.tool_use"),
            Some(Value::from("T"))
        );

        // chat_template.jinja wins; add_bos_token from tokenizer_config.json wins.
        let m = meta(&[
            ("tokenizer.json", TOKENIZER),
            ("config.json", r#"{"vocab_size": 7}"#),
            ("chat_template.jinja", "J"),
            (
                "tokenizer_config.json",
                r#"{"chat_template": "C", "add_bos_token": false}"#,
            ),
        ])
        .unwrap();
        assert_eq!(get(&m, "tokenizer.chat_template"), Some(&Value::from("J")));
        assert_eq!(
            get(&m, "tokenizer.ggml.add_bos_token"),
            Some(&Value::Bool(false))
        );
        assert_eq!(get(&m, "tokenizer.ggml.bos_token_id"), None);
    }

    #[test]
    fn unusable_tokenizers_are_errors() {
        let config = r#"{"vocab_size": 7}"#;
        for (from, to, want) in [
            (r#""merges": [["a", "b"]"#, r#""merges": [["a"]"#, "merge 0"),
            (
                r#""normalizer": null"#,
                r#""normalizer": {"type": "Lowercase"}"#,
                "Lowercase",
            ),
            (r#""type": "BPE""#, r#""type": "WordPiece""#, "WordPiece"),
            (
                r#""byte_fallback": false"#,
                r#""byte_fallback": true"#,
                "byte fallback",
            ),
            (r#""b": 1, "#, r#""b": 1, "c": 8, "#, "has no id below 8"),
        ] {
            assert!(TOKENIZER.contains(from), "{from}");
            let text = TOKENIZER.replace(from, to);
            let e = meta(&[("tokenizer.json", &text), ("config.json", config)])
                .unwrap_err()
                .to_string();
            assert!(
                e.contains(want) && e.contains("tokenizer.json"),
                "{want}: {e}"
            );
        }
        let e = meta(&[
            ("tokenizer.json", TOKENIZER),
            ("config.json", config),
            ("tokenizer_config.json", r#"{"chat_template": 3}"#),
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("chat_template"), "{e}");
    }
}
