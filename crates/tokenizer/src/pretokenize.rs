//! Pre-tokenizers: split text into the pieces that byte-level BPE merges within.
//!
//! Each [`PreTokenizer`] reproduces the sequence of regular expressions llama.cpp applies for a
//! `tokenizer.ggml.pre` value, hand-coded (no regex engine) with the same semantics: every
//! expression splits each piece produced by the previous one, and the text between matches
//! becomes a piece of its own.

use std::ops::Range;

use crate::unicode::{char_flags, LETTER, MARK, NUMBER, PUNCT, WHITESPACE};

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
}

const PRE_NAMES: &[(&[&str], PreTokenizer, bool, bool)] = &[
    // (names, splitter, ignore_merges, add_bos)
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
        ],
        PreTokenizer::Llama3,
        true,
        true,
    ),
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
            "megrez",
            "stablelm2",
            "hunyuan",
            "solar-open",
            "grok-2",
        ],
        PreTokenizer::Qwen2,
        false,
        false,
    ),
    (&["qwen35"], PreTokenizer::Qwen35, false, false),
    (
        &[
            "starcoder",
            "refact",
            "command-r",
            "smollm",
            "codeshell",
            "exaone",
            "minerva-7b",
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
    (&["default"], PreTokenizer::Default, false, false),
    (&["falcon"], PreTokenizer::Falcon, false, false),
];

impl PreConfig {
    pub(crate) fn from_name(name: &str) -> Option<PreConfig> {
        PRE_NAMES
            .iter()
            .find(|(names, ..)| names.contains(&name))
            .map(|&(_, pre, ignore_merges, add_bos)| PreConfig {
                pre,
                ignore_merges,
                add_bos,
                no_default_bos: matches!(name, "glm4" | "chatglm-bpe"),
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
            PreTokenizer::Llama3 => {
                segs = apply(&cs, &segs, |cs, s, out| split_llama3(cs, s, out, 3, false))
            }
            PreTokenizer::Qwen2 => {
                segs = apply(&cs, &segs, |cs, s, out| split_llama3(cs, s, out, 1, false))
            }
            PreTokenizer::Qwen35 => {
                segs = apply(&cs, &segs, |cs, s, out| split_llama3(cs, s, out, 1, true))
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

/// Length of the contraction (`'s`, `'t`, `'re`, `'ve`, `'m`, `'ll`, `'d`) starting at `pos`, or 0.
fn contraction(cs: &Chars, pos: usize, end: usize, any_case: bool) -> usize {
    if cs.chars[pos] != '\'' || pos + 1 >= end {
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
    let f = |i: usize| if i < end { cs.flags[i] } else { 0 };
    let mut pos = start;
    while pos < end {
        let n = contraction(cs, pos, end, false);
        if n > 0 {
            pos = push(out, pos, pos + n);
            continue;
        }
        // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`
        let q = if cs.chars[pos] == ' ' { pos + 1 } else { pos };
        if q < end {
            let fq = f(q);
            let class = if fq & LETTER != 0 {
                Some(LETTER)
            } else if fq & NUMBER != 0 {
                Some(NUMBER)
            } else if fq & (WHITESPACE | LETTER | NUMBER) == 0 {
                None
            } else {
                Some(0)
            };
            match class {
                Some(0) => {}
                Some(bit) => {
                    let mut p = q + 1;
                    while f(p) & bit != 0 {
                        p += 1;
                    }
                    pos = push(out, pos, p);
                    continue;
                }
                None => {
                    let mut p = q + 1;
                    while p < end && f(p) & (WHITESPACE | LETTER | NUMBER) == 0 {
                        p += 1;
                    }
                    pos = push(out, pos, p);
                    continue;
                }
            }
        }
        pos = push(out, pos, whitespace_run(cs, pos, end));
    }
}

/// The Llama 3 / Qwen 2 / Qwen 3.5 family; `max_digits` is 3 for `\p{N}{1,3}`, 1 for `\p{N}`;
/// `marks` adds `\p{M}` to the letter class (Qwen 3.5).
fn split_llama3(cs: &Chars, (start, end): Seg, out: &mut Vec<Seg>, max_digits: usize, marks: bool) {
    let word = if marks { LETTER | MARK } else { LETTER };
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
            while p - pos < max_digits && f(p) & NUMBER != 0 {
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
            while is_nl(p) {
                p += 1;
            }
            pos = push(out, pos, p);
            continue;
        }
        // `\s*[\r\n]+`: through the last newline of the whitespace run.
        let mut p = pos;
        let mut last_nl = None;
        while p < end && cs.flags[p] & WHITESPACE != 0 {
            if is_nl(p) {
                last_nl = Some(p + 1);
            }
            p += 1;
        }
        if let Some(e) = last_nl {
            pos = push(out, pos, e);
            continue;
        }
        // `\s+(?!\S)|\s+`
        pos = push(out, pos, whitespace_run(cs, pos, end));
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
