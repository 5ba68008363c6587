//! WordPiece (`tokenizer.ggml.model = bert`): BERT's uncased tokenizer, as Hugging Face's
//! `BertNormalizer`, `BertPreTokenizer` and `WordPiece` define it, over a vocabulary in
//! llama.cpp's convention: a piece that starts a word is stored as `▁piece`, a continuation
//! (`##piece` in Hugging Face's vocabulary) as plain `piece`, special tokens (`[CLS]`) as they are.
//!
//! Text is normalized (control characters dropped, whitespace made spaces, spaces put around CJK
//! ideographs, accents stripped through NFD, lowercased), split into words at whitespace and at
//! every punctuation character (each a word of its own), and every word is cut greedily into the
//! longest pieces from its start. A word with a position where no piece matches, or longer than
//! 100 characters, becomes the unknown token as a whole.

use unicode_normalization::UnicodeNormalization;

use crate::unicode::{char_flags, is_nonspacing_mark, is_other, PUNCT};
use crate::Strings;

/// Words of more characters than this are unknown (Hugging Face's `max_input_chars_per_word`).
const MAX_WORD_CHARS: usize = 100;

/// The mark of a word-start piece in the vocabulary's texts.
const WORD_START: &str = "▁";

pub(crate) struct WordPiece {
    /// The longest token text, in bytes: no longer piece is looked up.
    max_len: usize,
}

impl WordPiece {
    pub(crate) fn new(strings: &Strings) -> WordPiece {
        let max_len = (0..strings.n_vocab as u32)
            .map(|id| strings.table.get(id).len())
            .max()
            .unwrap_or(0);
        WordPiece { max_len }
    }

    /// Tokenizes one raw-text fragment (no special tokens in it); a word no pieces cover gives
    /// `unk` (nothing when there is none).
    pub(crate) fn encode(
        &self,
        strings: &Strings,
        unk: Option<u32>,
        text: &str,
        out: &mut Vec<u32>,
    ) {
        let normalized = normalize(text);
        let mut key = String::new();
        for word in words(&normalized) {
            let mark = out.len();
            if word.chars().nth(MAX_WORD_CHARS).is_none() {
                let mut pos = 0;
                while let Some((id, end)) = self.longest_piece(strings, word, pos, &mut key) {
                    out.push(id);
                    pos = end;
                }
                if pos == word.len() {
                    continue;
                }
                out.truncate(mark);
            }
            out.extend(unk);
        }
    }

    /// The longest vocabulary piece of `word` at byte `pos` (as a word start at 0, as a
    /// continuation after it) and the byte where it ends.
    fn longest_piece(
        &self,
        strings: &Strings,
        word: &str,
        pos: usize,
        key: &mut String,
    ) -> Option<(u32, usize)> {
        let rest = &word[pos..];
        let limit = if pos == 0 {
            self.max_len.saturating_sub(WORD_START.len())
        } else if rest.starts_with(WORD_START) {
            // `▁x` is the word start `x`; Hugging Face's continuation `##▁x` has no place here.
            return None;
        } else {
            self.max_len
        };
        let limit = limit.min(rest.len());
        (1..=limit)
            .rev()
            .filter(|&end| rest.is_char_boundary(end))
            .find_map(|end| {
                let piece = &rest[..end];
                let id = if pos == 0 {
                    key.clear();
                    key.push_str(WORD_START);
                    key.push_str(piece);
                    strings.lookup(key.as_bytes())
                } else {
                    strings.lookup(piece.as_bytes())
                };
                id.map(|id| (id, pos + end))
            })
    }
}

/// BERT's normalization, uncased: control characters, U+0000 and U+FFFD dropped, whitespace made
/// spaces, CJK ideographs spaced apart, then NFD without the nonspacing marks, lowercased.
fn normalize(text: &str) -> String {
    let mut cleaned = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        // Tab, newline and carriage return are `Cc` but count as whitespace; U+0000 is `Cc`.
        if c == '\u{fffd}' || (is_other(c) && !matches!(c, '\t' | '\n' | '\r')) {
            continue;
        }
        if c.is_whitespace() {
            cleaned.push(' ');
        } else if is_cjk_ideograph(c) {
            cleaned.push(' ');
            cleaned.push(c);
            cleaned.push(' ');
        } else {
            cleaned.push(c);
        }
    }
    let mut out = String::with_capacity(cleaned.len());
    for c in cleaned.nfd().filter(|&c| !is_nonspacing_mark(c)) {
        out.extend(c.to_lowercase());
    }
    out
}

/// The CJK Unified Ideographs blocks BERT spaces apart (not Hangul, kana or CJK punctuation).
fn is_cjk_ideograph(c: char) -> bool {
    matches!(
        c as u32,
        0x4E00..=0x9FFF
            | 0x3400..=0x4DBF
            | 0x20000..=0x2A6DF
            | 0x2A700..=0x2CEAF
            | 0xF900..=0xFAFF
            | 0x2F800..=0x2FA1F
    )
}

/// BERT's punctuation: all ASCII symbols and punctuation (`$`, `+`, `^` too), and `\p{P}`.
fn is_punctuation(c: char) -> bool {
    c.is_ascii_punctuation() || char_flags(c) & PUNCT != 0
}

/// The words of normalized text: the runs between whitespace, with each punctuation character
/// a word of its own. Never empty.
fn words(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        rest = rest.trim_start();
        let first = rest.chars().next()?;
        let len = if is_punctuation(first) {
            first.len_utf8()
        } else {
            rest.find(|c: char| c.is_whitespace() || is_punctuation(c))
                .unwrap_or(rest.len())
        };
        let (word, tail) = rest.split_at(len);
        rest = tail;
        Some(word)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Tokenizer, Vocab};

    fn words_of(text: &str) -> Vec<String> {
        words(&normalize(text)).map(str::to_string).collect()
    }

    #[test]
    fn normalization_strips_accents_and_lowercases() {
        assert_eq!(normalize("Héllo"), "hello");
        assert_eq!(normalize("NAÏVE Café Résumé"), "naive cafe resume");
        assert_eq!(normalize("Ångström ñ"), "angstrom n");
        // A decomposed accent is stripped the same way.
        assert_eq!(normalize("e\u{301}t\u{e9}"), "ete");
        // İ decomposes to I + a combining dot above; the dot goes.
        assert_eq!(normalize("İstanbul"), "istanbul");
        // Hangul syllables decompose into their jamo (letters, kept).
        assert_eq!(normalize("한"), "\u{1112}\u{1161}\u{11ab}");
        // Spacing marks (Mc) stay.
        assert_eq!(normalize("\u{915}\u{93e}"), "\u{915}\u{93e}");
    }

    #[test]
    fn normalization_cleans_control_characters_and_whitespace() {
        assert_eq!(normalize("a\tb\nc\r\nd"), "a b c  d");
        assert_eq!(normalize("a\u{a0}b\u{3000}c\u{2009}d"), "a b c d");
        // Other control and format characters vanish rather than separate.
        assert_eq!(
            normalize("a\0b\u{fffd}c\u{7}d\u{200b}e\u{feff}f\u{b}g"),
            "abcdefg"
        );
        assert_eq!(normalize("x\u{85}y"), "xy");
    }

    #[test]
    fn cjk_ideographs_are_spaced() {
        assert_eq!(normalize("日本語"), " 日  本  語 ");
        assert_eq!(words_of("我爱ab北京"), ["我", "爱", "ab", "北", "京"]);
        // Kana are not spaced (and lose their voicing marks, which NFD makes nonspacing marks).
        assert_eq!(words_of("ひらがな"), ["ひらかな"]);
        assert_eq!(normalize("𠀀x"), " 𠀀 x");
    }

    #[test]
    fn punctuation_is_split_off() {
        assert_eq!(words_of("don't"), ["don", "'", "t"]);
        assert_eq!(words_of("Hello, world!"), ["hello", ",", "world", "!"]);
        assert_eq!(
            words_of("a+b=$3^2|~"),
            ["a", "+", "b", "=", "$", "3", "^", "2", "|", "~"]
        );
        assert_eq!(words_of("...  x"), [".", ".", ".", "x"]);
        assert_eq!(
            words_of("“quotes” — ok¿"),
            ["“", "quotes", "”", "—", "ok", "¿"]
        );
        // Symbols outside ASCII are not punctuation: they stay in their word.
        assert_eq!(words_of("5€ a🦀b"), ["5€", "a🦀b"]);
        assert_eq!(words_of("  \t "), Vec::<String>::new());
        assert_eq!(words_of("12345.67"), ["12345", ".", "67"]);
    }

    fn bert(tokens: &[&str]) -> Tokenizer {
        Tokenizer::from_parts(Vocab {
            model: "bert".into(),
            tokens: tokens.iter().map(|s| s.to_string()).collect(),
            ..Vocab::default()
        })
        .unwrap()
    }

    const TOKENS: [&str; 14] = [
        "[PAD]", "[UNK]", "[CLS]", "[SEP]", "▁un", "▁unaff", "able", "aff", "▁a", "b", "▁b", "▁'",
        "▁t", "▁don",
    ];

    #[test]
    fn words_take_the_longest_pieces_first() {
        let tok = bert(&TOKENS);
        // unaff + able, not un + aff + able.
        assert_eq!(tok.encode("unaffable", false, false), [5, 6]);
        assert_eq!(tok.encode("unable", false, false), [4, 6]);
        assert_eq!(tok.encode("abb", false, false), [8, 9, 9]);
        assert_eq!(tok.encode("Don't", true, false), [2, 13, 11, 12, 3]);
        assert_eq!(
            tok.decode(&tok.encode("unaffable a b", true, false)),
            " unaffable a b"
        );
    }

    #[test]
    fn a_word_with_an_unmatched_position_is_unknown_whole() {
        let tok = bert(&TOKENS);
        // `▁unaffablex`: `x` matches nothing, so the whole word is [UNK], not `unaff able [UNK]`.
        assert_eq!(tok.encode("unaffablex a", false, false), [1, 8]);
        // No word-start piece at all.
        assert_eq!(tok.encode("able", false, false), [1]);
        assert_eq!(tok.encode("🦀 b", false, false), [1, 10]);
        // A continuation never matches a word-start text written into the word.
        assert_eq!(tok.encode("a▁b", false, false), [1]);
    }

    #[test]
    fn overlong_words_are_unknown() {
        let tok = bert(&TOKENS);
        let ok = format!("a{}", "b".repeat(99));
        assert_eq!(tok.encode(&ok, false, false).len(), 100);
        assert_eq!(tok.encode(&format!("{ok}b"), false, false), [1]);
    }
}
