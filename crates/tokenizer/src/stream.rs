//! Incremental UTF-8 decoding of token bytes.

/// Turns a stream of token bytes into text as it arrives.
///
/// A token may end in the middle of a multi-byte character (byte-level BPE splits emoji and CJK
/// characters across tokens; SentencePiece emits `<0xXX>` byte tokens), so [`StreamDecoder::push`]
/// returns only complete characters and holds back an incomplete trailing sequence until the
/// bytes that complete it arrive. Bytes that can never form a valid character become U+FFFD as
/// soon as that is certain (the same replacement [`String::from_utf8_lossy`] makes);
/// [`StreamDecoder::finish`] flushes whatever is still held back.
///
/// ```
/// let mut d = tokenizer::StreamDecoder::new();
/// let crab = "🦀".as_bytes();
/// assert_eq!(d.push(&crab[..2]), "");
/// assert_eq!(d.push(&crab[2..]), "🦀");
/// assert_eq!(d.push(b"ok\xff"), "ok\u{fffd}");
/// assert_eq!(d.push(b"\xe6\x97"), "");
/// assert_eq!(d.finish(), "\u{fffd}");
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
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        let mut rest: &[u8] = &self.pending;
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    // The prefix is valid UTF-8 by construction.
                    out.push_str(std::str::from_utf8(&rest[..valid]).unwrap_or_default());
                    match e.error_len() {
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            rest = &rest[valid + bad..];
                        }
                        None => {
                            // An incomplete sequence at the end: wait for more bytes.
                            rest = &rest[valid..];
                            break;
                        }
                    }
                }
            }
        }
        let keep = rest.len();
        let n = self.pending.len();
        self.pending.drain(..n - keep);
        out
    }

    /// The bytes held back (an incomplete character at the end of what was pushed).
    pub fn pending(&self) -> &[u8] {
        &self.pending
    }

    /// Flushes what is held back (an incomplete character becomes U+FFFD) and resets.
    pub fn finish(&mut self) -> String {
        let s = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_by_byte_equals_lossy_whole() {
        let inputs: [&[u8]; 5] = [
            "héllo 🦀 日本語 👍🏽".as_bytes(),
            b"\xf0\x9f\xa6",
            b"a\xffb\xc3",
            b"\xe6\x97\xa5\xe6",
            b"\xed\xa0\x80x", // surrogate: invalid
        ];
        for input in inputs {
            let mut d = StreamDecoder::new();
            let mut got = String::new();
            for &b in input {
                got.push_str(&d.push(&[b]));
            }
            got.push_str(&d.finish());
            assert_eq!(got, String::from_utf8_lossy(input), "{input:?}");
        }
    }

    #[test]
    fn invalid_bytes_are_replaced_once_certain() {
        let mut d = StreamDecoder::new();
        assert_eq!(d.push(b"\xe6\x97"), "");
        assert_eq!(d.pending(), b"\xe6\x97");
        // 'x' cannot continue the sequence: the two bytes are invalid now.
        assert_eq!(d.push(b"x"), "\u{fffd}x");
        assert_eq!(d.finish(), "");
    }
}
