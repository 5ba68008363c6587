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
        for r in self.cfg.pre.split(text) {
            self.encode_word(strings, &text.as_bytes()[r], out, scratch);
        }
    }

    fn encode_word(&self, strings: &Strings, word: &[u8], out: &mut Vec<u32>, sc: &mut Scratch) {
        let n_vocab = strings.n_vocab as u32;
        if self.cfg.ignore_merges {
            sc.mapped.clear();
            sc.mapped
                .extend(word.iter().map(|&b| BYTE_TO_CHAR[b as usize]));
            if let Some(id) = strings.lookup(sc.mapped.as_bytes()) {
                out.push(id);
                return;
            }
        }
        if word.len() == 1 {
            let id = self.byte_sym[word[0] as usize];
            if id < n_vocab {
                out.push(id);
            } else {
                fallback(strings, word, out);
            }
            return;
        }
        let syms = &mut sc.syms;
        syms.clear();
        let n = word.len();
        for (i, &b) in word.iter().enumerate() {
            syms.push(Sym {
                id: self.byte_sym[b as usize],
                start: i as u32,
                end: i as u32 + 1,
                prev: i as i32 - 1,
                next: if i + 1 == n { -1 } else { i as i32 + 1 },
                alive: true,
            });
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
                fallback(strings, &word[s.start as usize..s.end as usize], out);
            }
        }
    }
}

/// A final symbol that is not a token: llama.cpp emits the single-byte tokens for the bytes of
/// its (GPT-2 mapped) text that have one, and drops the rest.
fn fallback(strings: &Strings, bytes: &[u8], out: &mut Vec<u32>) {
    for &b in bytes {
        let c = BYTE_TO_CHAR[b as usize];
        if c.is_ascii() {
            if let Some(id) = strings.lookup(&[c as u8]) {
                out.push(id);
            }
        }
    }
}
