//! Character ranges as UTF-8 byte sequences, so that the matcher works on bytes (tokens split
//! characters anywhere) while classes are written over Unicode scalar values.

/// Appends to `out` byte-range sequences whose UTF-8 decodings are exactly the scalar values
/// `lo..=hi` (which must not contain surrogates). Each sequence is one range per byte.
pub(crate) fn sequences(lo: u32, hi: u32, out: &mut Vec<Vec<(u8, u8)>>) {
    let mut todo = vec![(lo, hi)];
    'next: while let Some((lo, hi)) = todo.pop() {
        // One encoded length per piece.
        for b in [0x7F, 0x7FF, 0xFFFF] {
            if lo <= b && b < hi {
                todo.push((b + 1, hi));
                todo.push((lo, b));
                continue 'next;
            }
        }
        if hi <= 0x7F {
            out.push(vec![(lo as u8, hi as u8)]);
            continue;
        }
        let n = encode(lo).len();
        // Pieces whose every continuation byte covers a whole 0x80..=0xBF or a single value
        // below the first byte that differs.
        for i in 1..n {
            let m = (1u32 << (6 * i)) - 1;
            if lo & !m != hi & !m {
                if lo & m != 0 {
                    todo.push(((lo | m) + 1, hi));
                    todo.push((lo, lo | m));
                    continue 'next;
                }
                if hi & m != m {
                    todo.push((hi & !m, hi));
                    todo.push((lo, (hi & !m) - 1));
                    continue 'next;
                }
            }
        }
        let (a, b) = (encode(lo), encode(hi));
        out.push(a.iter().zip(&b).map(|(&x, &y)| (x, y)).collect());
    }
}

/// The UTF-8 encoding of scalar value `c`.
fn encode(c: u32) -> Vec<u8> {
    match c {
        0..=0x7F => vec![c as u8],
        0x80..=0x7FF => vec![0xC0 | (c >> 6) as u8, 0x80 | (c & 0x3F) as u8],
        0x800..=0xFFFF => vec![
            0xE0 | (c >> 12) as u8,
            0x80 | ((c >> 6) & 0x3F) as u8,
            0x80 | (c & 0x3F) as u8,
        ],
        _ => vec![
            0xF0 | (c >> 18) as u8,
            0x80 | ((c >> 12) & 0x3F) as u8,
            0x80 | ((c >> 6) & 0x3F) as u8,
            0x80 | (c & 0x3F) as u8,
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(seqs: &[Vec<(u8, u8)>], bytes: &[u8]) -> bool {
        seqs.iter().any(|s| {
            s.len() == bytes.len() && s.iter().zip(bytes).all(|(&(a, b), &x)| a <= x && x <= b)
        })
    }

    #[test]
    fn sequences_match_exactly_the_range() {
        for (lo, hi) in [
            (0x20, 0x10FFFF),
            (0x41, 0x5A),
            (0x7F, 0x800),
            (0x3B1, 0x3C9),
            (0x1F600, 0x1F64F),
            (0xE000, 0xFFFF),
            (0x80, 0xD7FF),
        ] {
            let mut seqs = Vec::new();
            sequences(lo, hi, &mut seqs);
            for c in (0u32..0x11_0000)
                .step_by(7)
                .chain([lo, hi, 0x7F, 0x80, 0x7FF, 0x800])
            {
                let Some(ch) = char::from_u32(c) else {
                    continue;
                };
                let mut buf = [0; 4];
                let bytes = ch.encode_utf8(&mut buf).as_bytes();
                assert_eq!(
                    matches(&seqs, bytes),
                    lo <= c && c <= hi,
                    "{lo:x}..{hi:x} {c:x}"
                );
            }
        }
    }
}
