//! Incremental UTF-8 decoding of token bytes.
//!
//! Invalid bytes are replaced one U+FFFD per byte: at each position a complete, valid UTF-8
//! sequence is taken as it is, anything else costs one byte and yields one U+FFFD. This is how
//! llama.cpp's reference outputs render the text of tokens that end inside a character
//! (`testdata/reference/*/generate.jsonl`, `greedy_text`); [`String::from_utf8_lossy`] would
//! instead fold an incomplete sequence such as `E0 B6` into a single U+FFFD.

/// Appends `bytes` to `out` with every byte that does not belong to a valid UTF-8 sequence
/// replaced by U+FFFD. Returns how many trailing bytes form an incomplete (but so far valid)
/// sequence; with `hold_incomplete` those are left out, otherwise they are replaced too.
fn decode_into(mut bytes: &[u8], out: &mut String, hold_incomplete: bool) -> usize {
    loop {
        match std::str::from_utf8(bytes) {
            Ok(s) => {
                out.push_str(s);
                return 0;
            }
            Err(e) => {
                let valid = e.valid_up_to();
                // The prefix is valid UTF-8 by construction.
                out.push_str(std::str::from_utf8(&bytes[..valid]).unwrap_or_default());
                if e.error_len().is_none() && hold_incomplete {
                    // An incomplete sequence at the end: it may still be completed.
                    return bytes.len() - valid;
                }
                out.push(char::REPLACEMENT_CHARACTER);
                bytes = &bytes[valid + 1..];
            }
        }
    }
}

/// Decodes bytes to text, replacing each byte that is not part of a valid UTF-8 sequence with
/// U+FFFD (one per byte).
pub fn lossy_utf8(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len());
    decode_into(bytes, &mut s, false);
    s
}

/// Turns a stream of token bytes into text as it arrives.
///
/// A token may end in the middle of a multi-byte character (byte-level BPE splits emoji and CJK
/// characters across tokens; SentencePiece emits `<0xXX>` byte tokens), so [`StreamDecoder::push`]
/// returns only complete characters and holds back an incomplete trailing sequence until the
/// bytes that complete it arrive. A byte that can no longer be part of a valid character
/// becomes U+FFFD as soon as that is certain, one U+FFFD per byte (see [`lossy_utf8`]);
/// [`StreamDecoder::finish`] flushes whatever is still held back. Pushing a sequence's bytes in
/// any split and then finishing gives exactly `lossy_utf8` of all of them.
///
/// ```
/// let mut d = tokenizer::StreamDecoder::new();
/// let crab = "🦀".as_bytes();
/// assert_eq!(d.push(&crab[..2]), "");
/// assert_eq!(d.push(&crab[2..]), "🦀");
/// assert_eq!(d.push(b"ok\xff"), "ok\u{fffd}");
/// assert_eq!(d.push(b"\xe6\x97"), "");
/// assert_eq!(d.finish(), "\u{fffd}\u{fffd}");
/// ```
#[derive(Clone, Debug, Default)]
pub struct StreamDecoder {
    pending: Vec<u8>,
}

impl StreamDecoder {
    /// A decoder with nothing held back.
    pub fn new() -> StreamDecoder {
        StreamDecoder::default()
    }

    /// Adds bytes; returns the text that is now complete.
    pub fn push(&mut self, bytes: &[u8]) -> String {
        let mut out = String::new();
        if self.pending.is_empty() {
            let keep = decode_into(bytes, &mut out, true);
            self.pending.extend_from_slice(&bytes[bytes.len() - keep..]);
        } else {
            self.pending.extend_from_slice(bytes);
            let keep = decode_into(&self.pending, &mut out, true);
            let n = self.pending.len();
            self.pending.drain(..n - keep);
        }
        out
    }

    /// The bytes held back (an incomplete character at the end of what was pushed).
    pub fn pending(&self) -> &[u8] {
        &self.pending
    }

    /// Flushes what is held back (each byte of an incomplete character becomes U+FFFD) and
    /// resets.
    pub fn finish(&mut self) -> String {
        let s = lossy_utf8(&self.pending);
        self.pending.clear();
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The per-byte rule, written out directly.
    fn reference(b: &[u8]) -> String {
        let mut out = String::new();
        let mut i = 0;
        while i < b.len() {
            let found = (1..=4).rev().filter(|&n| i + n <= b.len()).find_map(|n| {
                std::str::from_utf8(&b[i..i + n])
                    .ok()
                    .filter(|s| s.chars().count() == 1)
            });
            match found {
                Some(s) => {
                    out.push_str(s);
                    i += s.len();
                }
                None => {
                    out.push('\u{fffd}');
                    i += 1;
                }
            }
        }
        out
    }

    #[test]
    fn byte_by_byte_equals_whole() {
        let inputs: [&[u8]; 7] = [
            "héllo 🦀 日本語 👍🏽".as_bytes(),
            b"\xf0\x9f\xa6",
            b"a\xffb\xc3",
            b"\xe6\x97\xa5\xe6",
            b"\xed\xa0\x80x", // surrogate: invalid
            b"cq\xe0\xb6 Trans",
            b"\xea\xbf toS\xba\xe7\xbd\xec\x92 cap\xd9\x87\x9c\xea",
        ];
        for input in inputs {
            let whole = lossy_utf8(input);
            assert_eq!(whole, reference(input), "{input:?}");
            for split in 1..=3 {
                let mut d = StreamDecoder::new();
                let mut got = String::new();
                for chunk in input.chunks(split) {
                    got.push_str(&d.push(chunk));
                }
                got.push_str(&d.finish());
                assert_eq!(got, whole, "{input:?} in chunks of {split}");
            }
        }
    }

    #[test]
    fn invalid_bytes_are_replaced_once_certain() {
        let mut d = StreamDecoder::new();
        assert_eq!(d.push(b"\xe6\x97"), "");
        assert_eq!(d.pending(), b"\xe6\x97");
        // 'x' cannot continue the sequence: both held bytes are invalid now.
        assert_eq!(d.push(b"x"), "\u{fffd}\u{fffd}x");
        assert_eq!(d.finish(), "");
        assert_eq!(lossy_utf8(b"cq\xe0\xb6 T"), "cq\u{fffd}\u{fffd} T");
    }
}
