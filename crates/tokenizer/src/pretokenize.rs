//! Pre-tokenizers: split text into the pieces that byte-level BPE merges within.
//!
//! Each [`PreTokenizer`] reproduces the sequence of regular expressions llama.cpp applies for a
//! `tokenizer.ggml.pre` value, hand-coded (no regex engine) with the same semantics: every
//! expression splits each piece produced by the previous one, and the text between matches
//! becomes a piece of its own.

use std::ops::Range;

use crate::unicode::{char_flags, LETTER, MARK, NUMBER, PUNCT, SYMBOL, WHITESPACE};

/// The regex family a BPE vocabulary splits its input with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PreTokenizer {
    /// GPT-2: `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`.
    Gpt2,
    /// `\p{N}` (every digit alone), then [`PreTokenizer::Gpt2`] (StarCoder, SmolLM, Refact,
    /// Command-R, ...).
    DigitsThenGpt2,
    /// Llama 3: `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
    /// ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`.
    Llama3,
    /// Qwen 2: like [`PreTokenizer::Llama3`] with `\p{N}` (single digits).
    Qwen2,
    /// Qwen 3.5: like [`PreTokenizer::Qwen2`] with `[\p{L}\p{M}]` where Qwen 2 has `\p{L}`.
    Qwen35,
    /// Seed-Coder: like [`PreTokenizer::Qwen2`], but punctuation runs do not take the newlines
    /// after them (` ?[^\s\p{L}\p{N}\r\n]+`).
    SeedCoder,
    /// Tekken (Mistral Nemo and later): case-aware words
    /// (`[^\r\n\p{L}\p{N}]?` + upper-case letters + lower-case letters, or the reverse), `\p{N}`,
    /// ` ?[^\s\p{L}\p{N}]+[\r\n/]*`, `\s*[\r\n]+`, `\s+(?!\S)`, `\s+`. As in llama.cpp, "upper"
    /// means a letter other than `a-z` and "lower" a letter other than `A-Z`.
    Tekken,
    /// GPT-4o / Llama 4 / MiniMax-M2: [`PreTokenizer::Tekken`]'s words with an optional
    /// contraction suffix, and `\p{N}{1,3}`.
    Gpt4o,
    /// MiniCPM 5: `\p{N}{1,3}`, then [`PreTokenizer::Llama3`] with `\p{N}+`.
    MiniCpm5,
    /// Gemma 4 (SentencePiece-style BPE): only runs of `\n` and runs of other characters are
    /// split apart (`[^\n]+|[\n]+`).
    Newlines,
    /// DeepSeek V3 / Hunyuan dense / JoyAI: `\p{N}{1,3}`, then runs of CJK ideographs and kana,
    /// then ``[!-/:-@\[-`{-~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|
    /// \s*[\r\n]+|\s+(?!\S)|\s+`` (text matching none of these stays together as one piece).
    DeepSeekV3,
    /// llama.cpp's default: `[\p{P}$+<=>^~|]+`, then GPT-2, then `\p{N}+`, then `[0-9][0-9][0-9]`.
    Default,
    /// Falcon: ``[\p{P}$+<=>^~|`]+``, then GPT-2, then `[0-9][0-9][0-9]`.
    Falcon,
}

/// How a `tokenizer.ggml.pre` value configures a BPE tokenizer.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PreConfig {
    pub pre: PreTokenizer,
    /// A pre-token that is itself in the vocabulary is emitted without merging.
    pub ignore_merges: bool,
    /// llama.cpp's default for `add_bos` (still overridden by `tokenizer.ggml.add_bos_token`).
    pub add_bos: bool,
    /// llama.cpp drops the default BOS id for this tokenizer (`glm4`).
    pub no_default_bos: bool,
    /// SentencePiece-style BPE (Gemma 4): spaces become `▁` before splitting, symbols are raw
    /// UTF-8 characters rather than GPT-2 byte characters, bytes fall back to `<0xXX>` tokens.
    pub spm_style: bool,
    /// A run of newlines that is a token is emitted whole (Gemma 4).
    pub newline_words: bool,
    /// `add_bos` is forced on even when the file says false (Gemma 4).
    pub force_add_bos: bool,
}

/// `(names, splitter, ignore_merges, add_bos)`
type NameRow = (&'static [&'static str], PreTokenizer, bool, bool);

const PRE_NAMES: &[NameRow] = &[
    (
        &[
            "llama3",
            "llama-v3",
            "llama-bpe",
            "falcon3",
            "falcon-h1",
            "pixtral",
            "midm-2.0",
            "lfm2",
            "jina-v5-nano",
        ],
        PreTokenizer::Llama3,
        true,
        true,
    ),
    (&["glm5"], PreTokenizer::Llama3, true, false),
    (
        &["dbrx", "smaug-bpe", "glm4", "chatglm-bpe"],
        PreTokenizer::Llama3,
        false,
        false,
    ),
    (
        &[
            "qwen2",
            "deepseek-r1-qwen",
            "kormo",
            "f2llmv2",
            "megrez",
            "stablelm2",
            "hunyuan",
            "solar-open",
            "grok-2",
            "bailingmoe",
            "bailingmoe2",
            "llada-moe",
        ],
        PreTokenizer::Qwen2,
        false,
        false,
    ),
    (&["qwen35"], PreTokenizer::Qwen35, false, false),
    (&["seed-coder"], PreTokenizer::SeedCoder, false, false),
    (&["minicpm5"], PreTokenizer::MiniCpm5, true, false),
    (&["tekken"], PreTokenizer::Tekken, true, true),
    (
        &["gpt-4o", "llama4", "kanana2", "talkie", "minimax-m2"],
        PreTokenizer::Gpt4o,
        false,
        false,
    ),
    (
        &[
            "starcoder",
            "refact",
            "command-r",
            "smollm",
            "codeshell",
            "exaone",
            "minerva-7b",
            "mellum2",
        ],
        PreTokenizer::DigitsThenGpt2,
        false,
        false,
    ),
    (
        &[
            "gpt-2",
            "phi-2",
            "jina-es",
            "jina-de",
            "gigachat",
            "jina-v2-es",
            "jina-v2-de",
            "a.x-4.0",
            "mellum",
            "modern-bert",
            "exaone4",
            "jina-v1-en",
            "jina-v2-code",
            "roberta-bpe",
            "mpt",
            "olmo",
            "jais",
            "trillion",
            "granite-docling",
        ],
        PreTokenizer::Gpt2,
        false,
        false,
    ),
    (
        &["gemma4", "granite-embed-multi-311m", "sarvam-moe"],
        PreTokenizer::Newlines,
        false,
        false,
    ),
    (
        &["deepseek-v3", "hunyuan-dense", "joyai-llm", "hy_v4"],
        PreTokenizer::DeepSeekV3,
        false,
        false,
    ),
    (&["default"], PreTokenizer::Default, false, false),
    (&["falcon"], PreTokenizer::Falcon, false, false),
];

impl PreConfig {
    pub(crate) fn from_name(name: &str) -> Option<PreConfig> {
        PRE_NAMES
            .iter()
            .find(|(names, ..)| names.contains(&name))
            .map(|&(_, pre, ignore_merges, add_bos)| {
                let gemma4 = matches!(name, "gemma4" | "granite-embed-multi-311m");
                PreConfig {
                    pre,
                    ignore_merges,
                    add_bos,
                    no_default_bos: matches!(name, "glm4" | "chatglm-bpe" | "glm5"),
                    spm_style: pre == PreTokenizer::Newlines,
                    newline_words: gemma4,
                    force_add_bos: gemma4,
                }
            })
    }

    pub(crate) fn supported_names() -> Vec<&'static str> {
        PRE_NAMES
            .iter()
            .flat_map(|(names, ..)| names.iter().copied())
            .collect()
    }
}

/// The characters of one fragment with their byte offsets and class bits.
struct Chars {
    chars: Vec<char>,
    flags: Vec<u8>,
    /// Byte offset of each char, plus the text length at the end.
    offsets: Vec<usize>,
}

impl Chars {
    fn new(text: &str) -> Chars {
        let n = text.len();
        let mut chars = Vec::with_capacity(n);
        let mut flags = Vec::with_capacity(n);
        let mut offsets = Vec::with_capacity(n + 1);
        for (i, c) in text.char_indices() {
            chars.push(c);
            flags.push(char_flags(c));
            offsets.push(i);
        }
        offsets.push(n);
        Chars {
            chars,
            flags,
            offsets,
        }
    }
}

type Seg = (usize, usize);

impl PreTokenizer {
    /// The splitter llama.cpp uses for a `tokenizer.ggml.pre` value, if supported.
    pub fn from_name(name: &str) -> Option<PreTokenizer> {
        PreConfig::from_name(name).map(|c| c.pre)
    }

    /// The `tokenizer.ggml.pre` values this crate supports.
    pub fn supported_names() -> Vec<&'static str> {
        PreConfig::supported_names()
    }

    /// Splits `text` into pre-tokens, returned as byte ranges that tile `text` in order.
    pub fn split(&self, text: &str) -> Vec<Range<usize>> {
        if text.is_empty() {
            return Vec::new();
        }
        let cs = Chars::new(text);
        let mut segs: Vec<Seg> = vec![(0, cs.chars.len())];
        let gpt2 = |cs: &Chars, s: Seg, out: &mut Vec<Seg>| split_gpt2(cs, s, out);
        match self {
            PreTokenizer::Gpt2 => segs = apply(&cs, &segs, gpt2),
            PreTokenizer::DigitsThenGpt2 => {
                segs = apply(&cs, &segs, |cs, s, out| {
                    split_each(cs, s, out, |_, f| f & NUMBER != 0)
                });
                segs = apply(&cs, &segs, gpt2);
            }
            PreTokenizer::Llama3 => segs = apply(&cs, &segs, |cs, s, out| LLAMA3.split(cs, s, out)),
            PreTokenizer::Qwen2 => segs = apply(&cs, &segs, |cs, s, out| QWEN2.split(cs, s, out)),
            PreTokenizer::Qwen35 => segs = apply(&cs, &segs, |cs, s, out| QWEN35.split(cs, s, out)),
            PreTokenizer::SeedCoder => {
                segs = apply(&cs, &segs, |cs, s, out| SEED_CODER.split(cs, s, out))
            }
            PreTokenizer::Tekken => {
                segs = apply(&cs, &segs, |cs, s, out| split_cased(cs, s, out, 1, false))
            }
            PreTokenizer::MiniCpm5 => {
                segs = apply(&cs, &segs, split_number_triples);
                segs = apply(&cs, &segs, |cs, s, out| MINICPM5.split(cs, s, out));
            }
            PreTokenizer::DeepSeekV3 => {
                segs = apply(&cs, &segs, split_number_triples);
                segs = apply(&cs, &segs, |cs, s, out| {
                    split_runs(
                        cs,
                        s,
                        out,
                        |c, _| matches!(c, '\u{4E00}'..='\u{9FA5}' | '\u{3040}'..='\u{309F}' | '\u{30A0}'..='\u{30FF}'),
                    )
                });
                segs = apply(&cs, &segs, split_deepseek_v3);
            }
            PreTokenizer::Newlines => {
                segs = apply(&cs, &segs, |cs, (start, end), out| {
                    let mut i = start;
                    while i < end {
                        let nl = cs.chars[i] == '\n';
                        let mut j = i + 1;
                        while j < end && (cs.chars[j] == '\n') == nl {
                            j += 1;
                        }
                        i = push(out, i, j);
                    }
                })
            }
            PreTokenizer::Gpt4o => {
                segs = apply(&cs, &segs, |cs, s, out| split_cased(cs, s, out, 3, true))
            }
            PreTokenizer::Default | PreTokenizer::Falcon => {
                let falcon = *self == PreTokenizer::Falcon;
                segs = apply(&cs, &segs, |cs, s, out| {
                    split_runs(cs, s, out, |c, f| {
                        f & PUNCT != 0
                            || matches!(c, '$' | '+' | '<' | '=' | '>' | '^' | '~' | '|')
                            || (falcon && c == '`')
                    })
                });
                segs = apply(&cs, &segs, gpt2);
                if !falcon {
                    segs = apply(&cs, &segs, |cs, s, out| {
                        split_runs(cs, s, out, |_, f| f & NUMBER != 0)
                    });
                }
                segs = apply(&cs, &segs, split_ascii_digit_triples);
            }
        }
        segs.into_iter()
            .map(|(a, b)| cs.offsets[a]..cs.offsets[b])
            .collect()
    }
}

fn apply(cs: &Chars, segs: &[Seg], f: impl Fn(&Chars, Seg, &mut Vec<Seg>)) -> Vec<Seg> {
    let mut out = Vec::with_capacity(segs.len() * 2);
    for &s in segs {
        f(cs, s, &mut out);
    }
    out
}

/// Pushes `(start, end)` if non-empty; returns `end`.
#[inline]
fn push(out: &mut Vec<Seg>, start: usize, end: usize) -> usize {
    if end > start {
        out.push((start, end));
    }
    end
}

/// Every char matching `pred` is a piece; so is each run of chars between them.
fn split_each(cs: &Chars, (start, end): Seg, out: &mut Vec<Seg>, pred: impl Fn(char, u8) -> bool) {
    let mut prev = start;
    for i in start..end {
        if pred(cs.chars[i], cs.flags[i]) {
            push(out, prev, i);
            prev = push(out, i, i + 1);
        }
    }
    push(out, prev, end);
}

/// Every maximal run of chars matching `pred` is a piece; so is each run between them.
fn split_runs(cs: &Chars, (start, end): Seg, out: &mut Vec<Seg>, pred: impl Fn(char, u8) -> bool) {
    let mut i = start;
    let mut prev = start;
    while i < end {
        if pred(cs.chars[i], cs.flags[i]) {
            let mut j = i + 1;
            while j < end && pred(cs.chars[j], cs.flags[j]) {
                j += 1;
            }
            push(out, prev, i);
            prev = push(out, i, j);
            i = j;
        } else {
            i += 1;
        }
    }
    push(out, prev, end);
}

/// `[0-9][0-9][0-9]`: leftmost non-overlapping triples of ASCII digits.
fn split_ascii_digit_triples(cs: &Chars, (start, end): Seg, out: &mut Vec<Seg>) {
    let d = |i: usize| i < end && cs.chars[i].is_ascii_digit();
    let mut i = start;
    let mut prev = start;
    while i < end {
        if d(i) && d(i + 1) && d(i + 2) {
            push(out, prev, i);
            prev = push(out, i, i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    push(out, prev, end);
}

/// `\p{N}{1,3}`: runs of numbers in groups of (up to) three; the text between is a piece.
fn split_number_triples(cs: &Chars, (start, end): Seg, out: &mut Vec<Seg>) {
    let mut i = start;
    let mut prev = start;
    while i < end {
        if cs.flags[i] & NUMBER != 0 {
            let mut j = i + 1;
            while j < end && j - i < 3 && cs.flags[j] & NUMBER != 0 {
                j += 1;
            }
            push(out, prev, i);
            prev = push(out, i, j);
            i = j;
        } else {
            i += 1;
        }
    }
    push(out, prev, end);
}

/// The last DeepSeek V3 expression, with regex-search semantics: text that no alternative
/// matches accumulates into one piece up to the next match.
fn split_deepseek_v3(cs: &Chars, (start, end): Seg, out: &mut Vec<Seg>) {
    let f = |i: usize| if i < end { cs.flags[i] } else { 0 };
    let c = |i: usize| if i < end { cs.chars[i] } else { '\0' };
    let word = |i: usize| f(i) & (LETTER | MARK) != 0;
    let punct_sym = |i: usize| f(i) & (PUNCT | SYMBOL) != 0;
    let is_nl = |i: usize| matches!(c(i), '\r' | '\n');
    let mut gap = start;
    let mut pos = start;
    while pos < end {
        let m_end = if c(pos).is_ascii_punctuation() && c(pos + 1).is_ascii_alphabetic() {
            // `[!-/:-@\[-`{-~][A-Za-z]+`
            let mut p = pos + 1;
            while c(p).is_ascii_alphabetic() {
                p += 1;
            }
            Some(p)
        } else if word(pos)
            || (!is_nl(pos) && f(pos) & (LETTER | PUNCT | SYMBOL) == 0 && word(pos + 1))
        {
            // `[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+`
            let mut p = pos + 1;
            while word(p) {
                p += 1;
            }
            Some(p)
        } else if punct_sym(pos) || (c(pos) == ' ' && punct_sym(pos + 1)) {
            // ` ?[\p{P}\p{S}]+[\r\n]*`
            let mut p = if c(pos) == ' ' { pos + 2 } else { pos + 1 };
            while punct_sym(p) {
                p += 1;
            }
            while is_nl(p) {
                p += 1;
            }
            Some(p)
        } else if f(pos) & WHITESPACE != 0 {
            Some(newline_or_whitespace(cs, pos, end))
        } else {
            None
        };
        match m_end {
            Some(e) => {
                push(out, gap, pos);
                pos = push(out, pos, e);
                gap = pos;
            }
            None => pos += 1,
        }
    }
    push(out, gap, end);
}

/// Length of the contraction (`'s`, `'t`, `'re`, `'ve`, `'m`, `'ll`, `'d`) starting at `pos`, or 0.
fn contraction(cs: &Chars, pos: usize, end: usize, any_case: bool) -> usize {
    if pos + 1 >= end || cs.chars[pos] != '\'' {
        return 0;
    }
    let norm = |c: char| if any_case { c.to_ascii_lowercase() } else { c };
    let c1 = norm(cs.chars[pos + 1]);
    if matches!(c1, 's' | 't' | 'm' | 'd') {
        return 2;
    }
    if pos + 2 < end {
        let c2 = norm(cs.chars[pos + 2]);
        if matches!((c1, c2), ('r', 'e') | ('v', 'e') | ('l', 'l')) {
            return 3;
        }
    }
    0
}

/// Handles `\s+(?!\S)|\s+` at `pos` (a whitespace char): returns the end of the match.
fn whitespace_run(cs: &Chars, pos: usize, end: usize) -> usize {
    let mut n = 0;
    while pos + n < end && cs.flags[pos + n] & WHITESPACE != 0 {
        n += 1;
    }
    if n > 1 && pos + n < end {
        // Leave the last whitespace char to prefix the following word.
        pos + n - 1
    } else {
        pos + n.max(1)
    }
}

fn split_gpt2(cs: &Chars, (start, end): Seg, out: &mut Vec<Seg>) {
    let mut pos = start;
    while pos < end {
        let n = contraction(cs, pos, end, false);
        if n > 0 {
            pos = push(out, pos, pos + n);
            continue;
        }
        // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`: the class of the char after the
        // optional space decides, and the run continues while chars are in that class.
        let q = if cs.chars[pos] == ' ' { pos + 1 } else { pos };
        if q < end {
            let fq = cs.flags[q];
            let in_class: Option<&dyn Fn(u8) -> bool> = if fq & LETTER != 0 {
                Some(&|fl| fl & LETTER != 0)
            } else if fq & NUMBER != 0 {
                Some(&|fl| fl & NUMBER != 0)
            } else if fq & WHITESPACE == 0 {
                Some(&|fl| fl & (WHITESPACE | LETTER | NUMBER) == 0)
            } else {
                None
            };
            if let Some(in_class) = in_class {
                let mut p = q + 1;
                while p < end && in_class(cs.flags[p]) {
                    p += 1;
                }
                pos = push(out, pos, p);
                continue;
            }
        }
        pos = push(out, pos, whitespace_run(cs, pos, end));
    }
}

/// Parameters of the Llama 3 regex family.
struct Llama3Family {
    /// 3 for `\p{N}{1,3}`, 1 for `\p{N}`.
    max_digits: usize,
    /// `\p{M}` counts as a letter (Qwen 3.5).
    marks: bool,
    /// Punctuation runs take the newlines after them (`[\r\n]*`).
    punct_newlines: bool,
}

const LLAMA3: Llama3Family = Llama3Family {
    max_digits: 3,
    marks: false,
    punct_newlines: true,
};
const QWEN2: Llama3Family = Llama3Family {
    max_digits: 1,
    marks: false,
    punct_newlines: true,
};
const QWEN35: Llama3Family = Llama3Family {
    max_digits: 1,
    marks: true,
    punct_newlines: true,
};
const MINICPM5: Llama3Family = Llama3Family {
    max_digits: usize::MAX,
    marks: false,
    punct_newlines: true,
};
const SEED_CODER: Llama3Family = Llama3Family {
    max_digits: 1,
    marks: false,
    punct_newlines: false,
};

/// `\s*[\r\n]+|\s+(?!\S)|\s+` at `pos`: through the last newline of the whitespace run if it
/// has one, else [`whitespace_run`].
fn newline_or_whitespace(cs: &Chars, pos: usize, end: usize) -> usize {
    let mut p = pos;
    let mut last_nl = None;
    while p < end && cs.flags[p] & WHITESPACE != 0 {
        if matches!(cs.chars[p], '\r' | '\n') {
            last_nl = Some(p + 1);
        }
        p += 1;
    }
    last_nl.unwrap_or_else(|| whitespace_run(cs, pos, end))
}

impl Llama3Family {
    fn split(&self, cs: &Chars, (start, end): Seg, out: &mut Vec<Seg>) {
        let word = if self.marks { LETTER | MARK } else { LETTER };
        let f = |i: usize| if i < end { cs.flags[i] } else { 0 };
        let is_nl = |i: usize| i < end && matches!(cs.chars[i], '\r' | '\n');
        let other = |i: usize| i < end && cs.flags[i] & (WHITESPACE | word | NUMBER) == 0;
        let mut pos = start;
        while pos < end {
            let n = contraction(cs, pos, end, true);
            if n > 0 {
                pos = push(out, pos, pos + n);
                continue;
            }
            let fl = cs.flags[pos];
            // `[^\r\n\p{L}\p{N}]?\p{L}+`
            if !is_nl(pos) && fl & NUMBER == 0 && (fl & word != 0 || f(pos + 1) & word != 0) {
                let mut p = pos + 1;
                while f(p) & word != 0 {
                    p += 1;
                }
                pos = push(out, pos, p);
                continue;
            }
            // `\p{N}{1,3}` / `\p{N}`
            if fl & NUMBER != 0 {
                let mut p = pos + 1;
                while p - pos < self.max_digits && f(p) & NUMBER != 0 {
                    p += 1;
                }
                pos = push(out, pos, p);
                continue;
            }
            // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
            let q = if cs.chars[pos] == ' ' { pos + 1 } else { pos };
            if other(q) {
                let mut p = q + 1;
                while other(p) {
                    p += 1;
                }
                while self.punct_newlines && is_nl(p) {
                    p += 1;
                }
                pos = push(out, pos, p);
                continue;
            }
            pos = push(out, pos, newline_or_whitespace(cs, pos, end));
        }
    }
}

/// The Tekken / GPT-4o family (llama.cpp's adaptation of the cased-word regexes):
/// `[^\r\n\p{L}\p{N}]?U*L+C?|[^\r\n\p{L}\p{N}]?U+L*C?|\p{N}{1,k}| ?[^\s\p{L}\p{N}]+[\r\n/]*|
/// \s*[\r\n]+|\s+(?!\S)|\s+` where U is a letter other than `a-z`, L a letter other than `A-Z`
/// and C an optional contraction (`contractions`).
fn split_cased(
    cs: &Chars,
    (start, end): Seg,
    out: &mut Vec<Seg>,
    max_digits: usize,
    contractions: bool,
) {
    let f = |i: usize| if i < end { cs.flags[i] } else { 0 };
    let letter = |i: usize| f(i) & LETTER != 0;
    let upper = |i: usize| letter(i) && !cs.chars[i].is_ascii_lowercase();
    let lower = |i: usize| letter(i) && !cs.chars[i].is_ascii_uppercase();
    let prefix =
        |i: usize| i < end && !matches!(cs.chars[i], '\r' | '\n') && f(i) & (LETTER | NUMBER) == 0;
    let other = |i: usize| i < end && f(i) & (WHITESPACE | LETTER | NUMBER) == 0;
    let mut pos = start;
    while pos < end {
        // The word alternatives. The optional prefix is tried first; without it the word must
        // start at `pos`, which only works if `pos` is a letter.
        let s = if prefix(pos) { pos + 1 } else { pos };
        let mut word_end = None;
        if letter(s) {
            let mut u = 0;
            while upper(s + u) {
                u += 1;
            }
            // `U*L+`: the longest run of uppercase that is followed by a lowercase letter.
            if let Some(k) = (0..=u).rev().find(|&k| lower(s + k)) {
                let mut e = s + k;
                while lower(e) {
                    e += 1;
                }
                word_end = Some(e);
            } else if u > 0 {
                // `U+L*` (no lowercase letter follows the uppercase run).
                word_end = Some(s + u);
            }
        }
        if let Some(mut e) = word_end {
            if contractions {
                e += contraction(cs, e, end, true);
            }
            pos = push(out, pos, e);
            continue;
        }
        if f(pos) & NUMBER != 0 {
            let mut p = pos + 1;
            while p - pos < max_digits && f(p) & NUMBER != 0 {
                p += 1;
            }
            pos = push(out, pos, p);
            continue;
        }
        // ` ?[^\s\p{L}\p{N}]+[\r\n/]*`
        let q = if cs.chars[pos] == ' ' { pos + 1 } else { pos };
        if other(q) {
            let mut p = q + 1;
            while other(p) {
                p += 1;
            }
            while p < end && matches!(cs.chars[p], '\r' | '\n' | '/') {
                p += 1;
            }
            pos = push(out, pos, p);
            continue;
        }
        pos = push(out, pos, newline_or_whitespace(cs, pos, end));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(pre: PreTokenizer, text: &str) -> Vec<&str> {
        pre.split(text).into_iter().map(|r| &text[r]).collect()
    }

    #[test]
    fn gpt2_basics() {
        let p = PreTokenizer::Gpt2;
        assert_eq!(pieces(p, "Hello world"), ["Hello", " world"]);
        assert_eq!(pieces(p, "Hello  world"), ["Hello", " ", " world"]);
        assert_eq!(pieces(p, "I'm don't"), ["I", "'m", " don", "'t"]);
        assert_eq!(pieces(p, "I'M"), ["I", "'", "M"]); // case-sensitive
        assert_eq!(pieces(p, "a 123 b"), ["a", " 123", " b"]);
        assert_eq!(pieces(p, "x  "), ["x", "  "]);
        assert_eq!(pieces(p, "x \n"), ["x", " \n"]);
        assert_eq!(pieces(p, "(a)."), ["(", "a", ")."]);
        assert_eq!(pieces(p, " !!"), [" !!"]);
        assert_eq!(pieces(p, "a\n\nb"), ["a", "\n", "\n", "b"]);
        assert_eq!(pieces(p, "🦀🔥 ok"), ["🦀🔥", " ok"]);
    }

    #[test]
    fn digits_then_gpt2() {
        let p = PreTokenizer::DigitsThenGpt2;
        assert_eq!(pieces(p, "a 123 b"), ["a", " ", "1", "2", "3", " b"]);
        assert_eq!(pieces(p, "x2y"), ["x", "2", "y"]);
    }

    #[test]
    fn llama3_basics() {
        let p = PreTokenizer::Llama3;
        assert_eq!(pieces(p, "Hello world"), ["Hello", " world"]);
        assert_eq!(pieces(p, "I'M don'T"), ["I", "'M", " don", "'T"]);
        assert_eq!(pieces(p, "1234567"), ["123", "456", "7"]);
        assert_eq!(pieces(p, "a\tb"), ["a", "\tb"]);
        assert_eq!(pieces(p, "a  \n\n  b"), ["a", "  \n\n", " ", " b"]);
        assert_eq!(pieces(p, "x = 1;\n"), ["x", " =", " ", "1", ";\n"]);
        assert_eq!(pieces(p, "end  "), ["end", "  "]);
        assert_eq!(pieces(p, "'hello"), ["'hello"]);
        assert_eq!(pieces(p, "\u{a0}non"), ["\u{a0}non"]);
    }

    #[test]
    fn qwen2_single_digits() {
        let p = PreTokenizer::Qwen2;
        assert_eq!(pieces(p, "x 2024"), ["x", " ", "2", "0", "2", "4"]);
    }

    #[test]
    fn qwen35_marks_join_words() {
        // "e" + combining acute accent stays one word in Qwen 3.5, splits in Qwen 2.
        assert_eq!(
            pieces(PreTokenizer::Qwen35, "cafe\u{301} x"),
            ["cafe\u{301}", " x"]
        );
        assert_eq!(
            pieces(PreTokenizer::Qwen2, "cafe\u{301} x"),
            ["cafe", "\u{301}", " x"]
        );
    }

    #[test]
    fn tekken_and_gpt4o_words() {
        let t = PreTokenizer::Tekken;
        assert_eq!(pieces(t, "HelloWorld"), ["Hello", "World"]);
        assert_eq!(pieces(t, "HTTPServer x"), ["HTTPServer", " x"]);
        assert_eq!(pieces(t, "ABC def"), ["ABC", " def"]);
        assert_eq!(
            pieces(t, "a/b\n/c 12"),
            ["a", "/b", "\n", "/c", " ", "1", "2"]
        );
        assert_eq!(pieces(t, "x //\n"), ["x", " //\n"]);
        assert_eq!(pieces(t, "don't"), ["don", "'t"]);
        let g = PreTokenizer::Gpt4o;
        assert_eq!(
            pieces(g, "don't I'LL 12345"),
            ["don't", " I'LL", " ", "123", "45"]
        );
        assert_eq!(pieces(g, "camelCase"), ["camel", "Case"]);
    }

    #[test]
    fn seed_coder_punct_keeps_newlines_apart() {
        assert_eq!(pieces(PreTokenizer::SeedCoder, "x;\n"), ["x", ";", "\n"]);
        assert_eq!(pieces(PreTokenizer::Qwen2, "x;\n"), ["x", ";\n"]);
    }

    #[test]
    fn deepseek_v3_groups() {
        let p = PreTokenizer::DeepSeekV3;
        assert_eq!(
            pieces(p, "x.Foo 12345 日本語です한국"),
            ["x", ".Foo", " ", "123", "45", " ", "日本語です", "한국"]
        );
        // Digits are left alone by the last expression: they stay one piece with what follows
        // no alternative.
        assert_eq!(pieces(p, "a\u{200b}1"), ["a", "\u{200b}", "1"]);
    }

    #[test]
    fn default_passes() {
        let p = PreTokenizer::Default;
        assert_eq!(pieces(p, "a+b 12345"), ["a", "+", "b", " ", "123", "45"]);
    }

    #[test]
    fn pieces_tile_the_text() {
        let text = "Mixed: 日本語 \r\n\t x'LL 42 🦀🦀 --> ok  \n";
        for pre in [
            PreTokenizer::Gpt2,
            PreTokenizer::DigitsThenGpt2,
            PreTokenizer::Llama3,
            PreTokenizer::Qwen2,
            PreTokenizer::Qwen35,
            PreTokenizer::Default,
            PreTokenizer::Falcon,
            PreTokenizer::SeedCoder,
            PreTokenizer::Tekken,
            PreTokenizer::Gpt4o,
            PreTokenizer::MiniCpm5,
            PreTokenizer::Newlines,
            PreTokenizer::DeepSeekV3,
        ] {
            let r = pre.split(text);
            assert_eq!(r.first().unwrap().start, 0);
            assert_eq!(r.last().unwrap().end, text.len());
            for w in r.windows(2) {
                assert_eq!(w[0].end, w[1].start);
                assert!(w[0].start < w[0].end);
            }
        }
    }
}
