//! Character classes used by the pre-tokenizers, and GPT-2's byte <-> character mapping.

use crate::unicode_table::{CATS, STARTS};

/// `\p{L}`
pub(crate) const LETTER: u8 = 1;
/// `\p{N}`
pub(crate) const NUMBER: u8 = 2;
/// `\s` (the Unicode `White_Space` property, the same set llama.cpp uses)
pub(crate) const WHITESPACE: u8 = 4;
/// `\p{P}`
pub(crate) const PUNCT: u8 = 8;
/// `\p{M}`
pub(crate) const MARK: u8 = 16;
/// `\p{S}`
pub(crate) const SYMBOL: u8 = 32;
/// `\p{Lu}`, `\p{Lt}`: upper/title-case letters
pub(crate) const UPPER: u8 = 64;
/// `\p{Ll}`
pub(crate) const LOWER: u8 = 128;

// Category indices in the generated table (see gen_unicode_table.py).
const LU: u8 = 0;
const LL: u8 = 1;
const LT: u8 = 2;
const LO: u8 = 4;
const MN: u8 = 5;
const ME: u8 = 7;
const ND: u8 = 8;
const NO: u8 = 10;
const PC: u8 = 11;
const PO: u8 = 17;
const SM: u8 = 18;
const SO: u8 = 21;
const CC: u8 = 25;

fn category_index(cp: u32) -> u8 {
    // Index of the last run starting at or before `cp`.
    let i = STARTS.partition_point(|&s| s <= cp);
    CATS[i - 1]
}

fn flags_from_category(cat: u8) -> u8 {
    match cat {
        LU | LT => LETTER | UPPER,
        LL => LETTER | LOWER,
        c if c <= LO => LETTER,
        c if (MN..=ME).contains(&c) => MARK,
        c if (ND..=NO).contains(&c) => NUMBER,
        c if (PC..=PO).contains(&c) => PUNCT,
        c if (SM..=SO).contains(&c) => SYMBOL,
        _ => 0,
    }
}

static ASCII_FLAGS: [u8; 128] = {
    let mut t = [0u8; 128];
    let mut i = 0;
    while i < 128 {
        let c = i as u8;
        t[i] = if c.is_ascii_uppercase() {
            LETTER | UPPER
        } else if c.is_ascii_lowercase() {
            LETTER | LOWER
        } else if c.is_ascii_digit() {
            NUMBER
        } else if matches!(c, b'\t' | b'\n' | 0x0B | 0x0C | b'\r' | b' ') {
            WHITESPACE
        } else if matches!(
            c,
            b'$' | b'+' | b'<' | b'=' | b'>' | b'^' | b'`' | b'|' | b'~'
        ) {
            SYMBOL
        } else if c.is_ascii_punctuation() {
            PUNCT
        } else {
            0
        };
        i += 1;
    }
    t
};

/// The class bits of one character.
#[inline]
pub(crate) fn char_flags(c: char) -> u8 {
    let cp = c as u32;
    if cp < 128 {
        return ASCII_FLAGS[cp as usize];
    }
    let mut f = flags_from_category(category_index(cp));
    if c.is_whitespace() {
        f |= WHITESPACE;
    }
    f
}

/// `\p{Mn}`: a nonspacing mark (what BERT's accent stripping removes after NFD).
#[inline]
pub(crate) fn is_nonspacing_mark(c: char) -> bool {
    c as u32 >= 0x300 && category_index(c as u32) == MN
}

/// `\p{C}`: a control, format, private-use or unassigned code point.
#[inline]
pub(crate) fn is_other(c: char) -> bool {
    match c as u32 {
        cp @ 0..=0x7F => cp < 0x20 || cp == 0x7F,
        cp => category_index(cp) >= CC,
    }
}

const fn gpt2_printable(b: u8) -> bool {
    matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF)
}

/// GPT-2's reversible byte -> character table: printable bytes map to themselves, the other 68
/// to U+0100 and up, in byte order.
pub(crate) static BYTE_TO_CHAR: [char; 256] = {
    let mut table = ['\0'; 256];
    let mut next = 256u32;
    let mut b = 0usize;
    while b < 256 {
        table[b] = if gpt2_printable(b as u8) {
            b as u8 as char
        } else {
            let c = match char::from_u32(next) {
                Some(c) => c,
                None => panic!("U+0100.. are valid chars"),
            };
            next += 1;
            c
        };
        b += 1;
    }
    table
};

/// The 68 non-printable bytes, in order: `NON_PRINTABLE[k]` is the byte GPT-2 maps to U+0100 + k.
static NON_PRINTABLE: [u8; 68] = {
    let mut t = [0u8; 68];
    let mut k = 0;
    let mut b = 0usize;
    while b < 256 {
        if !gpt2_printable(b as u8) {
            t[k] = b as u8;
            k += 1;
        }
        b += 1;
    }
    t
};

/// Inverse of [`BYTE_TO_CHAR`]: the byte a character stands for, if any.
#[inline]
pub(crate) fn char_to_byte(c: char) -> Option<u8> {
    let cp = c as u32;
    if cp < 256 && gpt2_printable(cp as u8) {
        Some(cp as u8)
    } else if (0x100..0x100 + 68).contains(&cp) {
        Some(NON_PRINTABLE[(cp - 0x100) as usize])
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories() {
        assert_eq!(char_flags('a'), LETTER | LOWER);
        assert_eq!(char_flags('Z'), LETTER | UPPER);
        assert_eq!(char_flags('7'), NUMBER);
        assert_eq!(char_flags(' '), WHITESPACE);
        assert_eq!(char_flags('\u{a0}'), WHITESPACE);
        assert_eq!(char_flags('\u{2009}'), WHITESPACE);
        assert_eq!(char_flags('\u{200b}'), 0, "ZWSP is Cf, not whitespace");
        assert_eq!(char_flags('\u{85}'), WHITESPACE);
        assert_eq!(char_flags('é'), LETTER | LOWER);
        assert_eq!(char_flags('日'), LETTER);
        assert_eq!(char_flags('한'), LETTER);
        assert_eq!(char_flags('²'), NUMBER);
        assert_eq!(char_flags('٣'), NUMBER);
        assert_eq!(char_flags('—'), PUNCT);
        assert_eq!(char_flags('“'), PUNCT);
        assert_eq!(char_flags('，'), PUNCT);
        assert_eq!(char_flags('🦀'), SYMBOL);
        assert_eq!(char_flags('\u{301}'), MARK);
        assert_eq!(char_flags('\u{1f3fd}'), SYMBOL, "skin tone modifier is Sk");
        assert_eq!(char_flags('$'), SYMBOL);
        assert_eq!(char_flags('_'), PUNCT);
        assert_eq!(char_flags('\u{10ffff}'), 0);
        for c in ['\0', '\u{7f}'] {
            assert_eq!(char_flags(c), 0);
        }
    }

    #[test]
    fn ascii_table_agrees_with_unicode_table() {
        for b in 0..128u32 {
            let c = char::from_u32(b).unwrap();
            let mut f = flags_from_category(category_index(b));
            if c.is_whitespace() {
                f |= WHITESPACE;
            }
            assert_eq!(char_flags(c), f, "byte {b:#x}");
        }
    }

    #[test]
    fn marks_and_other_categories() {
        assert!(is_nonspacing_mark('\u{301}'));
        assert!(is_nonspacing_mark('\u{5b4}'), "Hebrew point");
        assert!(!is_nonspacing_mark('\u{903}'), "Mc, a spacing mark");
        assert!(!is_nonspacing_mark('e'));
        for c in [
            '\0',
            '\t',
            '\u{7f}',
            '\u{85}',
            '\u{200b}',
            '\u{feff}',
            '\u{e000}',
            '\u{10ffff}',
        ] {
            assert!(is_other(c), "{c:?}");
        }
        for c in ['a', ' ', '\u{a0}', '\u{fffd}', '🦀', '\u{301}'] {
            assert!(!is_other(c), "{c:?}");
        }
        for b in 0..128u32 {
            assert_eq!(
                is_other(char::from_u32(b).unwrap()),
                category_index(b) >= CC
            );
        }
    }

    #[test]
    fn byte_mapping_round_trips() {
        let t = &BYTE_TO_CHAR;
        assert_eq!(t[b' ' as usize], 'Ġ');
        assert_eq!(t[b'\n' as usize], 'Ċ');
        assert_eq!(t[0], 'Ā');
        assert_eq!(t[b'a' as usize], 'a');
        for b in 0..=255u8 {
            assert_eq!(char_to_byte(t[b as usize]), Some(b));
        }
        assert_eq!(char_to_byte('▁'), None);
    }
}
