//! Reading the `tokenizer.ggml.*` metadata of a GGUF file.

use gguf::{Gguf, Value};

use crate::{SpecialIds, Tokenizer, TokenizerError, Vocab};

const TOKENS: &str = "tokenizer.ggml.tokens";
const MERGES: &str = "tokenizer.ggml.merges";
const SCORES: &str = "tokenizer.ggml.scores";
const TYPES: &str = "tokenizer.ggml.token_type";

fn get_str<'a>(g: &'a Gguf, key: &'static str) -> Result<Option<&'a str>, TokenizerError> {
    match g.get(key) {
        None => Ok(None),
        Some(v) => v.as_str().map(Some).ok_or(TokenizerError::WrongType {
            key,
            expected: "a string",
            found: v.type_name(),
        }),
    }
}

fn get_bool(g: &Gguf, key: &'static str) -> Result<Option<bool>, TokenizerError> {
    match g.get(key) {
        None => Ok(None),
        Some(v) => v.as_bool().map(Some).ok_or(TokenizerError::WrongType {
            key,
            expected: "a bool",
            found: v.type_name(),
        }),
    }
}

/// A token id key; ids that do not fit 32 bits are treated like out-of-range ids (ignored).
fn get_id(g: &Gguf, key: &'static str) -> Result<Option<u32>, TokenizerError> {
    match g.get(key) {
        None => Ok(None),
        Some(v) => match v.as_u64() {
            Some(id) => Ok(u32::try_from(id).ok().filter(|&i| i != u32::MAX)),
            None if v.as_i64().is_some() => Ok(None), // negative: "no token"
            None => Err(TokenizerError::WrongType {
                key,
                expected: "an integer token id",
                found: v.type_name(),
            }),
        },
    }
}

fn get_array<'a>(g: &'a Gguf, key: &'static str) -> Result<Option<&'a [Value]>, TokenizerError> {
    match g.get(key) {
        None => Ok(None),
        Some(v) => v.as_array().map(Some).ok_or(TokenizerError::WrongType {
            key,
            expected: "an array",
            found: v.type_name(),
        }),
    }
}

fn check_strings(arr: &[Value], key: &'static str) -> Result<(), TokenizerError> {
    match arr.iter().position(|v| v.as_str().is_none()) {
        None => Ok(()),
        Some(index) => Err(TokenizerError::BadElement {
            key,
            index,
            expected: "a string",
            found: arr[index].type_name(),
        }),
    }
}

pub(crate) fn load(g: &Gguf) -> Result<Tokenizer, TokenizerError> {
    let model = get_str(g, "tokenizer.ggml.model")?.ok_or(TokenizerError::MissingKey {
        key: "tokenizer.ggml.model",
    })?;
    if !matches!(model, "gpt2" | "llama" | "gemma4" | "bert") {
        return Err(TokenizerError::UnsupportedModel {
            model: model.to_string(),
        });
    }
    let tokens = get_array(g, TOKENS)?.ok_or(TokenizerError::MissingKey { key: TOKENS })?;
    check_strings(tokens, TOKENS)?;

    let merges: &[Value] = if model != "llama" && model != "bert" {
        let m = get_array(g, MERGES)?.ok_or(TokenizerError::MissingKey { key: MERGES })?;
        check_strings(m, MERGES)?;
        m
    } else {
        &[]
    };

    let mut scores = Vec::new();
    if let Some(arr) = get_array(g, SCORES)? {
        scores.reserve(arr.len());
        for (index, v) in arr.iter().enumerate() {
            scores.push(v.as_f32().ok_or(TokenizerError::BadElement {
                key: SCORES,
                index,
                expected: "a number",
                found: v.type_name(),
            })?);
        }
    }
    let mut token_types = Vec::new();
    if let Some(arr) = get_array(g, TYPES)? {
        token_types.reserve(arr.len());
        for (index, v) in arr.iter().enumerate() {
            let t = v.as_i64().ok_or(TokenizerError::BadElement {
                key: TYPES,
                index,
                expected: "an integer",
                found: v.type_name(),
            })?;
            token_types.push(i32::try_from(t).unwrap_or(0));
        }
    }

    let special_ids = SpecialIds {
        bos: get_id(g, "tokenizer.ggml.bos_token_id")?,
        eos: get_id(g, "tokenizer.ggml.eos_token_id")?,
        eot: get_id(g, "tokenizer.ggml.eot_token_id")?,
        eom: get_id(g, "tokenizer.ggml.eom_token_id")?,
        unk: get_id(g, "tokenizer.ggml.unknown_token_id")?,
        sep: get_id(g, "tokenizer.ggml.seperator_token_id")?,
        cls: get_id(g, "tokenizer.ggml.cls_token_id")?,
        pad: get_id(g, "tokenizer.ggml.padding_token_id")?,
        mask: get_id(g, "tokenizer.ggml.mask_token_id")?,
        fim_pre: get_id(g, "tokenizer.ggml.prefix_token_id")?
            .or(get_id(g, "tokenizer.ggml.fim_pre_token_id")?),
        fim_suf: get_id(g, "tokenizer.ggml.suffix_token_id")?
            .or(get_id(g, "tokenizer.ggml.fim_suf_token_id")?),
        fim_mid: get_id(g, "tokenizer.ggml.middle_token_id")?
            .or(get_id(g, "tokenizer.ggml.fim_mid_token_id")?),
        fim_pad: get_id(g, "tokenizer.ggml.fim_pad_token_id")?,
        fim_rep: get_id(g, "tokenizer.ggml.fim_rep_token_id")?,
        fim_sep: get_id(g, "tokenizer.ggml.fim_sep_token_id")?,
    };

    let v = Vocab {
        model: model.to_string(),
        pre: get_str(g, "tokenizer.ggml.pre")?
            .filter(|s| !s.is_empty())
            .map(str::to_string),
        tokens: Vec::new(),
        scores,
        token_types,
        merges: Vec::new(),
        special_ids,
        add_bos: get_bool(g, "tokenizer.ggml.add_bos_token")?,
        add_eos: get_bool(g, "tokenizer.ggml.add_eos_token")?,
        add_space_prefix: get_bool(g, "tokenizer.ggml.add_space_prefix")?,
        add_sep: get_bool(g, "tokenizer.ggml.add_sep_token")?,
        model_name: get_str(g, "general.name")?.map(str::to_string),
        architecture: get_str(g, "general.architecture")?.map(str::to_string),
    };
    Tokenizer::build(
        &v,
        tokens.len(),
        tokens.iter().map(|t| t.as_str().unwrap_or("")),
        merges.len(),
        merges.iter().map(|m| m.as_str().unwrap_or("")),
    )
}
