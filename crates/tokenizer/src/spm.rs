//! SentencePiece-style BPE (`tokenizer.ggml.model = llama`): spaces become `▁`, adjacent
//! symbols merge highest-score first while the merged text is a token, and what never forms a
//! token falls back to `<0xXX>` byte tokens.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::{Strings, NONE};

pub(crate) struct Spm {
    /// Token for each byte: `<0xXX>`, else the one-byte string, else [`NONE`].
    byte_tokens: [u32; 256],
}

#[derive(Clone, Copy)]
struct Sym {
    start: u32,
    len: u32,
    prev: i32,
    next: i32,
}

struct Bigram {
    score: f32,
    left: u32,
    right: u32,
    size: u32,
}

impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Bigram {}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Bigram {
    /// Max-heap order: the highest score, then the leftmost pair.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .partial_cmp(&other.score)
            .unwrap_or(Ordering::Equal)
            .then_with(|| other.left.cmp(&self.left))
    }
}

impl Spm {
    pub(crate) fn new(strings: &Strings) -> Spm {
        let mut byte_tokens = [NONE; 256];
        for (b, t) in byte_tokens.iter_mut().enumerate() {
            let hex = format!("<0x{b:02X}>");
            *t = strings
                .lookup(hex.as_bytes())
                .or_else(|| {
                    if b < 128 {
                        strings.lookup(&[b as u8])
                    } else {
                        None
                    }
                })
                .unwrap_or(NONE);
        }
        Spm { byte_tokens }
    }

    /// The token a lone byte falls back to, if any.
    pub(crate) fn byte_token(&self, b: u8) -> Option<u32> {
        Some(self.byte_tokens[b as usize]).filter(|&t| t != NONE)
    }

    /// Tokenizes `text`, already whitespace-escaped (and space-prefixed where due).
    pub(crate) fn encode(
        &self,
        strings: &Strings,
        scores: &[f32],
        unk: Option<u32>,
        text: &str,
        out: &mut Vec<u32>,
    ) {
        let mut syms: Vec<Sym> = Vec::with_capacity(text.len());
        let n = text.chars().count();
        for (i, (start, c)) in text.char_indices().enumerate() {
            syms.push(Sym {
                start: start as u32,
                len: c.len_utf8() as u32,
                prev: i as i32 - 1,
                next: if i + 1 == n { -1 } else { i as i32 + 1 },
            });
        }
        let bytes = text.as_bytes();
        let mut heap = BinaryHeap::new();
        let try_add = |heap: &mut BinaryHeap<Bigram>, syms: &[Sym], l: i32, r: i32| {
            if l < 0 || r < 0 {
                return;
            }
            let (ls, rs) = (syms[l as usize], syms[r as usize]);
            let start = ls.start as usize;
            let size = (ls.len + rs.len) as usize;
            if let Some(id) = strings.lookup(&bytes[start..start + size]) {
                heap.push(Bigram {
                    score: scores.get(id as usize).copied().unwrap_or(0.0),
                    left: l as u32,
                    right: r as u32,
                    size: size as u32,
                });
            }
        };
        for i in 1..n {
            try_add(&mut heap, &syms, i as i32 - 1, i as i32);
        }
        while let Some(bg) = heap.pop() {
            let (l, r) = (bg.left as usize, bg.right as usize);
            let (ls, rs) = (syms[l], syms[r]);
            if ls.len == 0 || rs.len == 0 || ls.len + rs.len != bg.size {
                continue; // stale
            }
            syms[l].len += rs.len;
            syms[r].len = 0;
            syms[l].next = rs.next;
            if rs.next >= 0 {
                syms[rs.next as usize].prev = l as i32;
            }
            try_add(&mut heap, &syms, ls.prev, l as i32);
            try_add(&mut heap, &syms, l as i32, rs.next);
        }
        let mut i = if n == 0 { -1 } else { 0 };
        while i >= 0 {
            let s = syms[i as usize];
            let piece = &bytes[s.start as usize..(s.start + s.len) as usize];
            if let Some(id) = strings.lookup(piece) {
                out.push(id);
            } else {
                for &b in piece {
                    if let Some(t) = self.byte_token(b).or(unk) {
                        out.push(t);
                    }
                }
            }
            i = s.next;
        }
    }
}
