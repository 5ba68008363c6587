//! Tokenizers for GGUF models, matching llama.cpp's token ids exactly.
//!
//! [`Tokenizer`] is built from a GGUF file's `tokenizer.ggml.*` metadata
//! ([`Tokenizer::from_gguf`]) or from plain parts ([`Tokenizer::from_parts`] with a [`Vocab`]).
//! Four vocabulary models are supported:
//!
//! * byte-level BPE (`tokenizer.ggml.model = gpt2`: GPT-2, Llama 3, Qwen, SmolLM, Phi-3, ...),
//!   with the pre-tokenizer chosen by `tokenizer.ggml.pre` (see [`PreTokenizer`]), GPT-2's
//!   byte -> character mapping and merge ranks from `tokenizer.ggml.merges`;
//! * SentencePiece-style BPE (`tokenizer.ggml.model = llama`: Llama 1/2, Gemma, Mistral v1, ...),
//!   with `▁` whitespace escaping, score-ordered merges and `<0xXX>` byte fallback;
//! * Gemma 4's rank-merged SentencePiece-style BPE (`tokenizer.ggml.model = gemma4`);
//! * BERT's WordPiece (`tokenizer.ggml.model = bert`: all-MiniLM, BGE, ... embedding models),
//!   uncased as Hugging Face's BERT tokenizer does it (accents stripped, punctuation split off,
//!   greedy longest pieces, a word no pieces cover as `[UNK]`), with `[CLS]` and `[SEP]` around
//!   the text; the vocabulary in llama.cpp's form (`▁` marks a word start, a continuation has
//!   no `##`).
//!
//! Before normal tokenization the text is split on the texts of special tokens
//! (CONTROL, USER_DEFINED and UNKNOWN types; only USER_DEFINED ones when `parse_special` is
//! false), longest first, exactly as llama.cpp does. [`Tokenizer::encode_protected`] additionally
//! keeps special tokens from being recognised inside given byte ranges (user text in a chat
//! prompt).
//!
//! Decoding: [`Tokenizer::token_bytes`] gives the exact bytes of a token,
//! [`Tokenizer::decode`] a whole sequence, and [`StreamDecoder`] turns token bytes into text
//! incrementally without splitting multi-byte characters. [`Tokenizer::is_eog`] tells which
//! tokens end generation. Errors are [`TokenizerError`]s naming the metadata key at fault.
//!
//! ```
//! use tokenizer::{Tokenizer, Vocab};
//!
//! let tokens: Vec<String> = ["a", "b", "ab", "▁", "▁ab", "<s>", "</s>", "<unk>"]
//!     .iter().map(|s| s.to_string()).collect();
//! let mut v = Vocab { model: "llama".into(), tokens, ..Vocab::default() };
//! v.scores = vec![0.0, 0.0, -1.0, 0.0, -2.0, 0.0, 0.0, 0.0];
//! v.token_types = vec![1, 1, 1, 1, 1, 3, 3, 2];
//! v.special_ids.bos = Some(5);
//! v.special_ids.eos = Some(6);
//! v.special_ids.unk = Some(7);
//! let tok = Tokenizer::from_parts(v).unwrap();
//! assert_eq!(tok.encode("ab", true, false), vec![5, 4]); // <s> ▁ab
//! assert_eq!(tok.decode(&[5, 4]), " ab");
//! assert!(tok.is_eog(6));
//! ```

mod bpe;
mod index;
mod pretokenize;
mod special;
mod spm;
mod stream;
mod unicode;
mod unicode_table;
mod wordpiece;

use std::cell::RefCell;
use std::ops::Range;

use index::{StrIndex, StrTable};
use special::{Frag, Specials};

pub use pretokenize::PreTokenizer;
pub use stream::{lossy_utf8, StreamDecoder};
/// The Unicode version of the character classes the pre-tokenizers use.
pub use unicode_table::UNICODE_VERSION;

/// Marker for "no id".
pub(crate) const NONE: u32 = u32::MAX;

/// Token attribute bits (llama.cpp's `llama_token_attr` values).
pub(crate) mod attr {
    pub const UNKNOWN: u16 = 1 << 0;
    pub const UNUSED: u16 = 1 << 1;
    pub const NORMAL: u16 = 1 << 2;
    pub const CONTROL: u16 = 1 << 3;
    pub const USER_DEFINED: u16 = 1 << 4;
    pub const BYTE: u16 = 1 << 5;
    pub const LSTRIP: u16 = 1 << 7;
    pub const RSTRIP: u16 = 1 << 8;
}

/// Why a tokenizer could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenizerError {
    /// A required metadata key is absent.
    #[error("missing metadata key `{key}`")]
    MissingKey { key: &'static str },
    /// A metadata value has the wrong type.
    #[error("metadata key `{key}` should be {expected}, found {found}")]
    WrongType {
        key: &'static str,
        expected: &'static str,
        found: &'static str,
    },
    /// An array element has the wrong type.
    #[error("metadata key `{key}`: element {index} should be {expected}, found {found}")]
    BadElement {
        key: &'static str,
        index: usize,
        expected: &'static str,
        found: &'static str,
    },
    /// `tokenizer.ggml.model` names a vocabulary type this crate does not implement.
    #[error("unsupported tokenizer model `{model}` (key `tokenizer.ggml.model`); supported: gpt2, llama, gemma4, bert")]
    UnsupportedModel { model: String },
    /// `tokenizer.ggml.pre` names a pre-tokenizer this crate does not implement.
    #[error("unknown pre-tokenizer `{pre}` (key `tokenizer.ggml.pre`); supported: {}", supported.join(", "))]
    UnknownPreTokenizer {
        pre: String,
        supported: Vec<&'static str>,
    },
    /// `tokenizer.ggml.tokens` is empty.
    #[error("empty vocabulary (key `tokenizer.ggml.tokens`)")]
    EmptyVocab,
    /// A per-token array does not have one entry per token.
    #[error("metadata key `{key}` has {found} entries but the vocabulary has {expected} tokens")]
    LengthMismatch {
        key: &'static str,
        expected: usize,
        found: usize,
    },
    /// A BPE merge rule is malformed.
    #[error("bad merge {index} `{merge}` (key `tokenizer.ggml.merges`): {reason}")]
    BadMerge {
        index: usize,
        merge: String,
        reason: &'static str,
    },
    /// The vocabulary or merge list exceeds 32-bit ids or 4 GiB of text.
    #[error("vocabulary too large")]
    TooLarge,
}

/// Explicit special-token ids (the `tokenizer.ggml.*_token_id` keys). `None` means the file
/// does not say; llama.cpp's per-model defaults then apply. Ids out of range are ignored.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SpecialIds {
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub eot: Option<u32>,
    pub eom: Option<u32>,
    pub unk: Option<u32>,
    pub sep: Option<u32>,
    /// `tokenizer.ggml.cls_token_id`: BERT's `[CLS]`, the BOS of a WordPiece vocabulary when
    /// `bos` is not given.
    pub cls: Option<u32>,
    pub pad: Option<u32>,
    pub mask: Option<u32>,
    pub fim_pre: Option<u32>,
    pub fim_suf: Option<u32>,
    pub fim_mid: Option<u32>,
    pub fim_pad: Option<u32>,
    pub fim_rep: Option<u32>,
    pub fim_sep: Option<u32>,
}

/// The parts a [`Tokenizer`] is built from: the `tokenizer.ggml.*` metadata as plain values.
#[derive(Clone, Debug, Default)]
pub struct Vocab {
    /// `tokenizer.ggml.model`: `"gpt2"` (byte-level BPE), `"llama"` (SentencePiece),
    /// `"gemma4"` (SentencePiece-style BPE with merge ranks) or `"bert"` (WordPiece).
    pub model: String,
    /// `tokenizer.ggml.pre` (BPE only); `None` means llama.cpp's `default`.
    pub pre: Option<String>,
    /// `tokenizer.ggml.tokens`
    pub tokens: Vec<String>,
    /// `tokenizer.ggml.scores` (SPM merge priorities); missing entries count as 0.
    pub scores: Vec<f32>,
    /// `tokenizer.ggml.token_type`: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused,
    /// 6 byte. Empty means all normal.
    pub token_types: Vec<i32>,
    /// `tokenizer.ggml.merges` (BPE): `"left right"`, highest priority first.
    pub merges: Vec<String>,
    /// Special-token ids given by the file.
    pub special_ids: SpecialIds,
    /// `tokenizer.ggml.add_bos_token`
    pub add_bos: Option<bool>,
    /// `tokenizer.ggml.add_eos_token`
    pub add_eos: Option<bool>,
    /// `tokenizer.ggml.add_space_prefix` (SPM; default true)
    pub add_space_prefix: Option<bool>,
    /// `tokenizer.ggml.add_sep_token` (WordPiece: append `[SEP]`; default true)
    pub add_sep: Option<bool>,
    /// `general.name` (llama.cpp adjusts special-token whitespace handling for Phi-3 by name).
    pub model_name: Option<String>,
    /// `general.architecture`
    pub architecture: Option<String>,
}

/// All token texts plus the extra strings BPE merges mention that are not tokens.
pub(crate) struct Strings {
    table: StrTable,
    index: StrIndex,
    /// Ids below this are vocabulary tokens.
    n_vocab: usize,
}

impl Strings {
    /// The vocabulary token with this text.
    #[inline]
    pub(crate) fn lookup(&self, s: &[u8]) -> Option<u32> {
        self.index
            .get(&self.table, s)
            .filter(|&id| (id as usize) < self.n_vocab)
    }

    /// Any string's id, tokens or merge-only strings.
    #[inline]
    pub(crate) fn lookup_any(&self, s: &[u8]) -> Option<u32> {
        self.index.get(&self.table, s)
    }

    /// The id of `s`, adding it as a merge-only string if new.
    pub(crate) fn intern(&mut self, s: &[u8]) -> Result<u32, TokenizerError> {
        if let Some(id) = self.lookup_any(s) {
            return Ok(id);
        }
        let id = self.table.push(s).ok_or(TokenizerError::TooLarge)?;
        if id == NONE {
            return Err(TokenizerError::TooLarge);
        }
        self.index.insert(&self.table, id);
        Ok(id)
    }
}

enum Model {
    Bpe(bpe::Bpe),
    Spm(spm::Spm),
    WordPiece(wordpiece::WordPiece),
}

/// A tokenizer: text <-> token ids, built from GGUF metadata.
///
/// Cheap to share across threads (`Send + Sync`); encoding allocates per call.
pub struct Tokenizer {
    strings: Strings,
    model: Model,
    scores: Vec<f32>,
    attrs: Vec<u16>,
    /// Each token's bytes as llama.cpp renders it with `special = true` (control tokens as
    /// their text).
    pieces: StrTable,
    bos: Option<u32>,
    eos: Option<u32>,
    eot: Option<u32>,
    unk: Option<u32>,
    sep: Option<u32>,
    add_bos: bool,
    add_eos: bool,
    add_sep: bool,
    add_space_prefix: bool,
    /// End-of-generation ids, sorted.
    eog: Vec<u32>,
    specials: Specials,
}

thread_local! {
    static BPE_SCRATCH: RefCell<bpe::Scratch> = RefCell::new(bpe::Scratch::default());
}

fn find_by_text(strings: &Strings, texts: &[&str]) -> Option<u32> {
    texts.iter().find_map(|t| strings.lookup(t.as_bytes()))
}

impl Tokenizer {
    /// Builds the tokenizer described by a GGUF file's metadata.
    pub fn from_gguf(g: &gguf::Gguf) -> Result<Tokenizer, TokenizerError> {
        gguf_load::load(g)
    }

    /// Builds a tokenizer from plain parts (what [`Tokenizer::from_gguf`] reads from a file).
    pub fn from_parts(v: Vocab) -> Result<Tokenizer, TokenizerError> {
        let tokens = v.tokens.iter().map(|s| s.as_str());
        let merges = v.merges.iter().map(|s| s.as_str());
        Tokenizer::build(&v, v.tokens.len(), tokens, v.merges.len(), merges)
    }

    pub(crate) fn build<'a>(
        v: &Vocab,
        n: usize,
        tokens: impl Iterator<Item = &'a str>,
        n_merges: usize,
        merges: impl Iterator<Item = &'a str>,
    ) -> Result<Tokenizer, TokenizerError> {
        let (is_bpe, gemma4, wpm) = match v.model.as_str() {
            "gpt2" => (true, false, false),
            "gemma4" => (true, true, false),
            "llama" => (false, false, false),
            "bert" => (false, false, true),
            other => {
                return Err(TokenizerError::UnsupportedModel {
                    model: other.to_string(),
                })
            }
        };
        let pre_cfg = if is_bpe {
            // llama.cpp forces the pre-tokenizer of the `gemma4` vocabulary type.
            let name = if gemma4 {
                "gemma4"
            } else {
                v.pre.as_deref().unwrap_or("default")
            };
            Some(pretokenize::PreConfig::from_name(name).ok_or_else(|| {
                TokenizerError::UnknownPreTokenizer {
                    pre: name.to_string(),
                    supported: pretokenize::PreConfig::supported_names(),
                }
            })?)
        } else {
            None
        };
        if n == 0 {
            return Err(TokenizerError::EmptyVocab);
        }
        if n >= NONE as usize / 2 {
            return Err(TokenizerError::TooLarge);
        }

        // Token texts: one buffer, one index.
        let mut table = StrTable::with_capacity(n + n / 8, n * 8);
        let mut index = StrIndex::with_capacity(n + n / 8);
        let mut count = 0usize;
        for (i, t) in tokens.take(n).enumerate() {
            let id = if t.is_empty() {
                table.push(format!("[EMPTY_{i}]").as_bytes())
            } else {
                table.push(t.as_bytes())
            }
            .ok_or(TokenizerError::TooLarge)?;
            index.insert(&table, id);
            count += 1;
        }
        if count != n {
            return Err(TokenizerError::LengthMismatch {
                key: "tokenizer.ggml.tokens",
                expected: n,
                found: count,
            });
        }
        let mut strings = Strings {
            table,
            index,
            n_vocab: n,
        };

        if !v.scores.is_empty() && v.scores.len() < n {
            return Err(TokenizerError::LengthMismatch {
                key: "tokenizer.ggml.scores",
                expected: n,
                found: v.scores.len(),
            });
        }
        let mut scores = v.scores.clone();
        scores.resize(n, 0.0);

        let mut attrs = vec![attr::NORMAL; n];
        if !v.token_types.is_empty() {
            if v.token_types.len() < n {
                return Err(TokenizerError::LengthMismatch {
                    key: "tokenizer.ggml.token_type",
                    expected: n,
                    found: v.token_types.len(),
                });
            }
            for (a, &t) in attrs.iter_mut().zip(&v.token_types) {
                *a = match t {
                    1 => attr::NORMAL,
                    2 => attr::UNKNOWN,
                    3 => attr::CONTROL,
                    4 => attr::USER_DEFINED,
                    5 => attr::UNUSED,
                    6 => attr::BYTE,
                    _ => 0,
                };
            }
        }

        // llama.cpp's defaults per vocabulary type, then the file's values.
        let valid = |id: u32| Some(id).filter(|&i| (i as usize) < n);
        let (mut bos, mut eos, mut unk) = if gemma4 || wpm {
            (None, None, None)
        } else if is_bpe {
            (valid(11), valid(11), None)
        } else {
            (valid(1), valid(2), valid(0))
        };
        let mut add_bos = !is_bpe;
        let mut add_space_prefix = !is_bpe;
        if let Some(cfg) = &pre_cfg {
            add_bos = cfg.add_bos;
            if cfg.no_default_bos {
                bos = None;
            }
        }
        let ids = &v.special_ids;
        let pick = |cur: Option<u32>, file: Option<u32>| file.and_then(valid).or(cur);
        bos = pick(bos, ids.bos);
        eos = pick(eos, ids.eos);
        unk = pick(unk, ids.unk);
        let mut sep = None;
        if wpm {
            // BERT's special tokens: the file's ids, else their usual texts; all CONTROL.
            let by_text = |t: &str| strings.lookup(t.as_bytes());
            bos = bos.or(ids.cls.and_then(valid)).or_else(|| by_text("[CLS]"));
            unk = unk.or_else(|| by_text("[UNK]"));
            sep = ids.sep.and_then(valid).or_else(|| by_text("[SEP]"));
            let pad = ids.pad.and_then(valid).or_else(|| by_text("[PAD]"));
            let mask = ids.mask.and_then(valid).or_else(|| by_text("[MASK]"));
            for id in [bos, eos, unk, sep, pad, mask].into_iter().flatten() {
                attrs[id as usize] |= attr::CONTROL;
            }
        }
        let mut eot = pick(None, ids.eot);
        let mut eom = pick(None, ids.eom);
        let mut fim_pad = pick(None, ids.fim_pad);
        let mut fim_rep = pick(None, ids.fim_rep);
        let mut fim_sep = pick(None, ids.fim_sep);
        let mut fim_pre = pick(None, ids.fim_pre);
        let mut fim_suf = pick(None, ids.fim_suf);
        let mut fim_mid = pick(None, ids.fim_mid);
        if let Some(b) = v.add_bos {
            add_bos = b;
        }
        if pre_cfg.is_some_and(|c| c.force_add_bos) {
            add_bos = true;
        }
        let add_eos = v.add_eos.unwrap_or(false);
        let add_sep = wpm && v.add_sep.unwrap_or(true);
        if let Some(b) = v.add_space_prefix {
            add_space_prefix = b;
        }

        // Tokens recognised by their text (llama.cpp forces them to CONTROL).
        let mut force_control = |slot: &mut Option<u32>, texts: &[&str]| {
            if slot.is_none() {
                *slot = find_by_text(&strings, texts);
                if let Some(id) = *slot {
                    attrs[id as usize] |= attr::CONTROL;
                }
            }
        };
        force_control(
            &mut eot,
            &[
                "<|eot_id|>",
                "<|im_end|>",
                "<|end|>",
                "<end_of_turn>",
                "<|endoftext|>",
                "<|end_of_text|>",
                "<EOT>",
                "_<EOT>",
                "[EOT]",
                "<｜end▁of▁sentence｜>",
                "<end_of_utterance>",
            ],
        );
        force_control(&mut eom, &["<|eom_id|>"]);
        force_control(
            &mut fim_pre,
            &[
                "<|fim_prefix|>",
                "<fim-prefix>",
                "<fim_prefix>",
                "<｜fim▁begin｜>",
                "<PRE>",
                "▁<PRE>",
                "<|code_prefix|>",
                "<|prefix|>",
            ],
        );
        force_control(
            &mut fim_suf,
            &[
                "<|fim_suffix|>",
                "<fim-suffix>",
                "<fim_suffix>",
                "<｜fim▁hole｜>",
                "<SUF>",
                "▁<SUF>",
                "<|code_suffix|>",
                "<|suffix|>",
            ],
        );
        force_control(
            &mut fim_mid,
            &[
                "<|fim_middle|>",
                "<fim-middle>",
                "<fim_middle>",
                "<｜fim▁end｜>",
                "<MID>",
                "▁<MID>",
                "<|code_middle|>",
                "<|middle|>",
            ],
        );
        force_control(
            &mut fim_pad,
            &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"],
        );
        force_control(
            &mut fim_rep,
            &[
                "<|fim_repo|>",
                "<|repo_name|>",
                "<fim-repo>",
                "<REPO>",
                "<reponame>",
            ],
        );
        force_control(&mut fim_sep, &["<|file_sep|>"]);

        // End-of-generation set.
        let mut eog: Vec<u32> = [fim_pad, fim_rep, fim_sep].into_iter().flatten().collect();
        for t in [
            "<|eot_id|>",
            "<|im_end|>",
            "<|end|>",
            "<|return|>",
            "<|call|>",
            "<|flush|>",
            "<|calls|>",
            "<end_of_turn>",
            "<|endoftext|>",
            "</s>",
            "<|eom_id|>",
            "<EOT>",
            "_<EOT>",
            "[EOT]",
            "[EOS]",
            "<|end_of_text|>",
            "<end_of_utterance>",
            "<eos>",
            "<turn|>",
            "<|tool_response>",
            "<｜end▁of▁sentence｜>",
            "[e~[",
        ] {
            if let Some(id) = strings.lookup(t.as_bytes()) {
                eog.push(id);
                attrs[id as usize] |= attr::CONTROL;
            }
        }
        for t in ["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"] {
            if let Some(id) = strings.lookup(t.as_bytes()) {
                attrs[id as usize] = attr::USER_DEFINED;
            }
        }
        eog.extend([eos, eot, eom].into_iter().flatten());
        eog.sort_unstable();
        eog.dedup();
        {
            // gpt-oss / solar-open: `<|end|>` ends a message, not the generation.
            let has = |t: &str| eog.iter().any(|&id| strings.table.get(id) == t.as_bytes());
            if (has("<|return|>") && has("<|call|>") && has("<|end|>"))
                || ((has("<|call|>") || has("<|calls|>")) && has("<|flush|>") && has("<|end|>"))
            {
                if let Some(end) = strings.lookup(b"<|end|>") {
                    eog.retain(|&id| id != end);
                    attrs[end as usize] = attr::USER_DEFINED;
                }
            }
            // Gemma 4 and PLaMo have an ordinary `</s>` token.
            let has = |t: &str| eog.iter().any(|&id| strings.table.get(id) == t.as_bytes());
            if (has("<|tool_response>") || has("<|plamo:eos|>")) && has("</s>") {
                if let Some(s) = strings.lookup(b"</s>") {
                    eog.retain(|&id| id != s);
                    attrs[s as usize] = attr::NORMAL;
                }
            }
        }

        // Special tokens split out of raw text before tokenization.
        let special_ids: Vec<u32> = (0..n as u32)
            .filter(|&id| {
                attrs[id as usize] & (attr::CONTROL | attr::USER_DEFINED | attr::UNKNOWN) != 0
            })
            .collect();

        // Piece cache (llama.cpp renders it before the per-model attributes below).
        let mut pieces = StrTable::with_capacity(n, n * 6);
        let mut buf = Vec::new();
        let style = match &pre_cfg {
            Some(c) if c.spm_style => PieceStyle::SpmBpe,
            Some(_) => PieceStyle::ByteLevel,
            None => PieceStyle::Spm,
        };
        for id in 0..n as u32 {
            buf.clear();
            render_piece(
                strings.table.get_str(id),
                attrs[id as usize],
                style,
                &mut buf,
            );
            pieces.push(&buf).ok_or(TokenizerError::TooLarge)?;
        }

        // Per-model attributes llama.cpp sets by name.
        let lower_name = v.model_name.as_deref().unwrap_or("").to_lowercase();
        let pre_name = v.pre.as_deref().unwrap_or("");
        let arch = v.architecture.as_deref().unwrap_or("");
        let set_attr = |attrs: &mut [u16], text: &str, bit: u16, on: bool| {
            if let Some(id) = strings.lookup(text.as_bytes()) {
                if on {
                    attrs[id as usize] |= bit;
                } else {
                    attrs[id as usize] &= !bit;
                }
            }
        };
        if ["jina-v2-de", "jina-v2-es", "jina-v2-code"]
            .iter()
            .any(|s| pre_name.contains(s))
            || ["nomic-bert-moe", "jina-bert-v3"]
                .iter()
                .any(|s| arch.contains(s))
        {
            set_attr(&mut attrs, "<mask>", attr::LSTRIP, true);
        } else if lower_name.contains("phi-3") || lower_name.contains("phi3") {
            for &id in &special_ids {
                attrs[id as usize] |= attr::RSTRIP;
            }
            set_attr(&mut attrs, "</s>", attr::RSTRIP, true);
            for t in ["<unk>", "<s>", "<|endoftext|>"] {
                set_attr(&mut attrs, t, attr::RSTRIP, false);
            }
        } else if lower_name.contains("modern-bert") {
            set_attr(&mut attrs, "[MASK]", attr::LSTRIP, true);
        }

        let specials = Specials::new(special_ids, |id| strings.table.get(id));

        let model = match pre_cfg {
            Some(cfg) => Model::Bpe(bpe::Bpe::new(cfg, &mut strings, merges, n_merges)?),
            None if wpm => Model::WordPiece(wordpiece::WordPiece::new(&strings)),
            None => Model::Spm(spm::Spm::new(&strings)),
        };
        strings.table.shrink();
        pieces.shrink();

        Ok(Tokenizer {
            strings,
            model,
            scores,
            attrs,
            pieces,
            bos,
            eos,
            eot,
            unk,
            sep,
            add_bos,
            add_eos,
            add_sep,
            add_space_prefix,
            eog,
            specials,
        })
    }

    /// Tokenizes `text`.
    ///
    /// `add_special`: add BOS / EOS as the vocabulary asks ([`Tokenizer::add_bos`]; WordPiece:
    /// `[CLS]` first and `[SEP]` last).
    /// `parse_special`: recognise control tokens written in the text (`<|im_start|>` becomes its
    /// single id); user-defined tokens are recognised either way, as in llama.cpp.
    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<u32> {
        self.encode_impl(text, add_special, parse_special, &[])
    }

    /// Like [`Tokenizer::encode`] with `parse_special = true`, except that no special token is
    /// recognised in any byte range of `protected` (user/document text inside a rendered chat
    /// prompt): `<|im_end|>` typed by a user is tokenized as plain text. A special token whose
    /// text overlaps a protected range at all is not recognised there. Protected text is
    /// otherwise tokenized together with its surroundings, so the result equals `encode`'s
    /// whenever the protected ranges contain no special-token text.
    pub fn encode_protected(
        &self,
        text: &str,
        add_special: bool,
        protected: &[Range<usize>],
    ) -> Vec<u32> {
        self.encode_impl(text, add_special, true, protected)
    }

    fn encode_impl(
        &self,
        text: &str,
        add_special: bool,
        parse_special: bool,
        protected: &[Range<usize>],
    ) -> Vec<u32> {
        let frags = self
            .specials
            .partition(text, parse_special, protected, &self.attrs, |id| {
                self.strings.table.get_str(id)
            });
        let mut out = Vec::with_capacity(text.len() / 3 + 2);
        if add_special && self.add_bos {
            out.extend(self.bos);
        }
        match &self.model {
            Model::Bpe(bpe) => BPE_SCRATCH.with(|sc| {
                let mut sc = sc.borrow_mut();
                for f in frags {
                    match f {
                        Frag::Text(r) => bpe.encode(&self.strings, &text[r], &mut out, &mut sc),
                        Frag::Token(id) => out.push(id),
                    }
                }
            }),
            Model::Spm(spm) => {
                let mut prev_special = true;
                let mut buf = String::new();
                for f in frags {
                    match f {
                        Frag::Text(r) => {
                            buf.clear();
                            if self.add_space_prefix && prev_special {
                                buf.push('▁');
                            }
                            for c in text[r].chars() {
                                buf.push(if c == ' ' { '▁' } else { c });
                            }
                            spm.encode(&self.strings, &self.scores, self.unk, &buf, &mut out);
                            prev_special = false;
                        }
                        Frag::Token(id) => {
                            out.push(id);
                            prev_special = true;
                        }
                    }
                }
            }
            Model::WordPiece(wpm) => {
                for f in frags {
                    match f {
                        Frag::Text(r) => wpm.encode(&self.strings, self.unk, &text[r], &mut out),
                        Frag::Token(id) => out.push(id),
                    }
                }
            }
        }
        if add_special && self.add_eos {
            out.extend(self.eos);
        }
        if add_special && self.add_sep {
            out.extend(self.sep);
        }
        out
    }

    /// The bytes `id` stands for in decoded text, as llama.cpp's detokenizer renders it with
    /// `special = false`: normal tokens byte-decoded (BPE) or with `▁` as space (SPM), byte
    /// tokens as their byte, user-defined tokens as their text, and control / unknown / unused
    /// tokens (BOS, `<|im_end|>`, ...) as nothing. Unknown ids give nothing.
    /// See [`Tokenizer::token_piece`] to render control tokens as their text.
    pub fn token_bytes(&self, id: u32) -> &[u8] {
        self.token_piece(id, false)
    }

    /// Like [`Tokenizer::token_bytes`]; with `render_special` control and unknown tokens give
    /// their text (llama.cpp's `special = true`).
    pub fn token_piece(&self, id: u32, render_special: bool) -> &[u8] {
        let Some(&a) = self.attrs.get(id as usize) else {
            return &[];
        };
        if !render_special && a & (attr::CONTROL | attr::UNKNOWN) != 0 {
            return &[];
        }
        self.pieces.get(id)
    }

    /// The concatenated bytes of `ids` (see [`Tokenizer::token_bytes`]).
    pub fn decode_bytes(&self, ids: &[u32]) -> Vec<u8> {
        let mut out = Vec::new();
        for &id in ids {
            out.extend_from_slice(self.token_bytes(id));
        }
        out
    }

    /// Decodes `ids` to text: the tokens' bytes concatenated, then converted to UTF-8 with
    /// each byte that is not part of a valid character (only possible where the ids end
    /// mid-character, or for odd byte tokens) replaced by U+FFFD, one per byte, as in
    /// llama.cpp's reference outputs (see [`lossy_utf8`]). Control tokens render as nothing.
    /// The leading space an SPM vocabulary with `add_space_prefix` adds when encoding is kept
    /// (`" Hello"`).
    pub fn decode(&self, ids: &[u32]) -> String {
        lossy_utf8(&self.decode_bytes(ids))
    }

    /// Number of tokens in the vocabulary.
    pub fn vocab_size(&self) -> usize {
        self.strings.n_vocab
    }

    /// The raw vocabulary text of `id` (`Ġhello`, `▁hello`, `<|im_end|>`, `<0x0A>`); empty for
    /// an unknown id.
    pub fn token_text(&self, id: u32) -> &str {
        if (id as usize) < self.strings.n_vocab {
            self.strings.table.get_str(id)
        } else {
            ""
        }
    }

    /// Beginning-of-sequence token (WordPiece: `[CLS]`).
    pub fn bos(&self) -> Option<u32> {
        self.bos
    }

    /// End-of-sequence token.
    pub fn eos(&self) -> Option<u32> {
        self.eos
    }

    /// End-of-turn token (`tokenizer.ggml.eot_token_id`, or found by text: `<|eot_id|>`,
    /// `<|im_end|>`, `<end_of_turn>`, ...).
    pub fn eot(&self) -> Option<u32> {
        self.eot
    }

    /// Separator token (WordPiece: `[SEP]`, which ends every encoded sequence); `None` for the
    /// other vocabulary types.
    pub fn sep(&self) -> Option<u32> {
        self.sep
    }

    /// Whether `encode` with `add_special` appends the separator (WordPiece's `[SEP]`).
    pub fn add_sep(&self) -> bool {
        self.add_sep && self.sep.is_some()
    }

    /// Whether `encode` with `add_special` prepends BOS.
    pub fn add_bos(&self) -> bool {
        self.add_bos && self.bos.is_some()
    }

    /// Whether `encode` with `add_special` appends EOS.
    pub fn add_eos(&self) -> bool {
        self.add_eos && self.eos.is_some()
    }

    /// Whether generation should stop at `id` (EOS, EOT, EOM and llama.cpp's list of
    /// end-of-turn texts: `<|im_end|>`, `<|eot_id|>`, `<end_of_turn>`, `<|endoftext|>`,
    /// `<|end|>`, ...).
    pub fn is_eog(&self, id: u32) -> bool {
        self.eog.binary_search(&id).is_ok()
    }

    /// All end-of-generation ids, ascending.
    pub fn eog_ids(&self) -> &[u32] {
        &self.eog
    }

    /// Whether `id` is a control or unknown token (rendered as nothing by
    /// [`Tokenizer::token_bytes`]).
    pub fn is_control(&self, id: u32) -> bool {
        self.attrs
            .get(id as usize)
            .is_some_and(|a| a & (attr::CONTROL | attr::UNKNOWN) != 0)
    }

    /// The token whose vocabulary text is exactly `text`.
    pub fn find_token(&self, text: &str) -> Option<u32> {
        self.strings.lookup(text.as_bytes())
    }

    /// The BPE pre-tokenizer, or `None` for an SPM or WordPiece vocabulary.
    pub fn pre_tokenizer(&self) -> Option<PreTokenizer> {
        match &self.model {
            Model::Bpe(b) => Some(b.cfg.pre),
            Model::Spm(_) | Model::WordPiece(_) => None,
        }
    }

    /// Number of special tokens (control, user-defined, unknown) split out of raw text.
    pub fn special_token_count(&self) -> usize {
        self.specials.len()
    }
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field(
                "model",
                &match &self.model {
                    Model::Bpe(b) => format!("bpe/{:?}", b.cfg.pre),
                    Model::Spm(_) => "spm".to_string(),
                    Model::WordPiece(_) => "wordpiece".to_string(),
                },
            )
            .field("vocab_size", &self.vocab_size())
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .field("add_bos", &self.add_bos)
            .field("eog", &self.eog)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum PieceStyle {
    /// Byte-level BPE: token texts are GPT-2 byte characters.
    ByteLevel,
    /// SentencePiece-style BPE (Gemma 4): `▁` for spaces, `<0xXX>` byte tokens.
    SpmBpe,
    /// SentencePiece (and WordPiece): `▁` for spaces, `<0xXX>` byte tokens.
    Spm,
}

/// llama.cpp's `token_to_piece(special = true)`.
fn render_piece(text: &str, a: u16, style: PieceStyle, out: &mut Vec<u8>) {
    if a & (attr::UNKNOWN | attr::CONTROL | attr::USER_DEFINED) != 0 {
        out.extend_from_slice(text.as_bytes());
    } else if a & attr::NORMAL != 0 {
        let mut buf = [0; 4];
        for c in text.chars() {
            match style {
                PieceStyle::ByteLevel => match unicode::char_to_byte(c) {
                    Some(b) => out.push(b),
                    // Not a GPT-2 byte character: keep it as it is.
                    None => out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes()),
                },
                _ if c == '▁' => out.push(b' '),
                _ => out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes()),
            }
        }
    } else if a & attr::BYTE != 0 {
        let hex = text.get(3..5).unwrap_or("");
        out.push(u8::from_str_radix(hex, 16).unwrap_or(0));
    }
}

mod gguf_load;
