//! Byte-level BPE (`tokenizer.ggml.model = gpt2`): pre-tokenize, map bytes to GPT-2's printable
//! characters, then merge adjacent symbols lowest-rank first.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::index::FxHashMap;
use crate::pretokenize::PreConfig;
use crate::unicode::BYTE_TO_CHAR;
use crate::{Strings, TokenizerError, NONE};

pub(crate) struct Bpe {
    pub(crate) cfg: PreConfig,
    /// `(left << 32 | right)` -> `(rank << 32 | merged)`, ids in [`Strings`] (merge parts that
    /// are not vocabulary tokens get ids past the vocabulary).
    merges: FxHashMap<u64, u64>,
    /// Symbol id of each byte's GPT-2 character, or [`NONE`].
    byte_sym: [u32; 256],
}

#[derive(Clone, Copy)]
struct Sym {
    id: u32,
    start: u32,
    end: u32,
    prev: i32,
    next: i32,
    alive: bool,
}

/// `(rank, left, right, left id, right id, merged id)`; the heap pops the lowest rank, then the
/// leftmost pair (llama.cpp's order).
type Bigram = (u32, u32, u32, u32, u32, u32);

/// Reusable buffers for encoding.
#[derive(Default)]
pub(crate) struct Scratch {
    syms: Vec<Sym>,
    heap: BinaryHeap<Reverse<Bigram>>,
    mapped: String,
}

#[inline]
fn pair(a: u32, b: u32) -> u64 {
    (a as u64) << 32 | b as u64
}

impl Bpe {
    pub(crate) fn new<'a>(
        cfg: PreConfig,
        strings: &mut Strings,
        merges: impl Iterator<Item = &'a str>,
        n_merges: usize,
    ) -> Result<Bpe, TokenizerError> {
        let mut map: FxHashMap<u64, u64> = FxHashMap::default();
        map.reserve(n_merges);
        let mut concat = Vec::new();
        for (rank, m) in merges.enumerate() {
            let bytes = m.as_bytes();
            // llama.cpp splits at the first space after the first byte.
            let Some(sp) = bytes.iter().skip(1).position(|&b| b == b' ').map(|p| p + 1) else {
                return Err(TokenizerError::BadMerge {
                    index: rank,
                    merge: m.to_string(),
                    reason: "no space separating the two parts",
                });
            };
            let (first, second) = (&bytes[..sp], &bytes[sp + 1..]);
            if second.is_empty() {
                return Err(TokenizerError::BadMerge {
                    index: rank,
                    merge: m.to_string(),
                    reason: "empty second part",
                });
            }
            let rank = u32::try_from(rank).map_err(|_| TokenizerError::TooLarge)?;
            let a = strings.intern(first)?;
            let b = strings.intern(second)?;
            concat.clear();
            concat.extend_from_slice(first);
            concat.extend_from_slice(second);
            let merged = strings.intern(&concat)?;
            // The first occurrence of a pair keeps its rank.
            map.entry(pair(a, b)).or_insert(pair(rank, merged));
        }
        let mut byte_sym = [NONE; 256];
        let mut buf = [0u8; 4];
        for (b, sym) in byte_sym.iter_mut().enumerate() {
            let s = BYTE_TO_CHAR[b].encode_utf8(&mut buf);
            *sym = strings.lookup_any(s.as_bytes()).unwrap_or(NONE);
        }
        Ok(Bpe {
            cfg,
            merges: map,
            byte_sym,
        })
    }

    /// Tokenizes one raw-text fragment (no special tokens in it).
    pub(crate) fn encode(
        &self,
        strings: &Strings,
        text: &str,
        out: &mut Vec<u32>,
        scratch: &mut Scratch,
    ) {
        if self.cfg.spm_style {
            let escaped = text.replace(' ', "▁");
            for r in self.cfg.pre.split(&escaped) {
                self.encode_word(strings, &escaped[r], out, scratch);
            }
        } else {
            for r in self.cfg.pre.split(text) {
                self.encode_word(strings, &text[r], out, scratch);
            }
        }
    }

    fn encode_word(&self, strings: &Strings, word: &str, out: &mut Vec<u32>, sc: &mut Scratch) {
        let n_vocab = strings.n_vocab as u32;
        let bytes = word.as_bytes();
        let spm = self.cfg.spm_style;
        if self.cfg.ignore_merges || (self.cfg.newline_words && bytes.iter().all(|&b| b == b'\n')) {
            let key = if spm {
                bytes
            } else {
                sc.mapped.clear();
                sc.mapped
                    .extend(bytes.iter().map(|&b| BYTE_TO_CHAR[b as usize]));
                sc.mapped.as_bytes()
            };
            if let Some(id) = strings.lookup(key) {
                out.push(id);
                return;
            }
        }
        if !spm && bytes.len() == 1 {
            let id = self.byte_sym[bytes[0] as usize];
            if id < n_vocab {
                out.push(id);
            } else {
                self.fallback(strings, bytes, out);
            }
            return;
        }
        // Initial symbols: one per byte (GPT-2 byte characters) or per UTF-8 character.
        let syms = &mut sc.syms;
        syms.clear();
        let push_sym = |syms: &mut Vec<Sym>, start: usize, end: usize, id: u32| {
            let i = syms.len() as i32;
            syms.push(Sym {
                id,
                start: start as u32,
                end: end as u32,
                prev: i - 1,
                next: i + 1,
                alive: true,
            });
        };
        if spm {
            for (i, c) in word.char_indices() {
                let end = i + c.len_utf8();
                let id = strings.lookup_any(&bytes[i..end]).unwrap_or(NONE);
                push_sym(syms, i, end, id);
            }
        } else {
            for (i, &b) in bytes.iter().enumerate() {
                push_sym(syms, i, i + 1, self.byte_sym[b as usize]);
            }
        }
        let n = syms.len();
        if let Some(last) = syms.last_mut() {
            last.next = -1;
        }
        let heap = &mut sc.heap;
        heap.clear();
        let add = |heap: &mut BinaryHeap<Reverse<Bigram>>, syms: &[Sym], l: i32, r: i32| {
            if l < 0 || r < 0 {
                return;
            }
            let (lid, rid) = (syms[l as usize].id, syms[r as usize].id);
            if lid == NONE || rid == NONE {
                return;
            }
            if let Some(&v) = self.merges.get(&pair(lid, rid)) {
                heap.push(Reverse((
                    (v >> 32) as u32,
                    l as u32,
                    r as u32,
                    lid,
                    rid,
                    v as u32,
                )));
            }
        };
        for i in 1..n {
            add(heap, syms, i as i32 - 1, i as i32);
        }
        while let Some(Reverse((_, l, r, lid, rid, merged))) = heap.pop() {
            let (l, r) = (l as usize, r as usize);
            let (ls, rs) = (syms[l], syms[r]);
            if !ls.alive || !rs.alive || ls.id != lid || rs.id != rid {
                continue; // stale
            }
            syms[l].id = merged;
            syms[l].end = rs.end;
            syms[l].next = rs.next;
            syms[r].alive = false;
            if rs.next >= 0 {
                syms[rs.next as usize].prev = l as i32;
            }
            add(heap, syms, ls.prev, l as i32);
            add(heap, syms, l as i32, rs.next);
        }
        for s in syms.iter().filter(|s| s.alive) {
            if s.id < n_vocab {
                out.push(s.id);
            } else {
                self.fallback(strings, &bytes[s.start as usize..s.end as usize], out);
            }
        }
    }

    /// A final symbol that is not a token. Byte-level vocabularies: llama.cpp emits the
    /// single-byte tokens for the bytes of its (GPT-2 mapped) text that have one and drops the
    /// rest. SentencePiece-style ones: each byte's `<0xXX>` token, where there is one.
    fn fallback(&self, strings: &Strings, bytes: &[u8], out: &mut Vec<u32>) {
        for &b in bytes {
            if self.cfg.spm_style {
                let hex = format!("<0x{b:02X}>");
                out.extend(strings.lookup(hex.as_bytes()));
            } else {
                let c = BYTE_TO_CHAR[b as usize];
                if c.is_ascii() {
                    out.extend(strings.lookup(&[c as u8]));
                }
            }
        }
    }
}
