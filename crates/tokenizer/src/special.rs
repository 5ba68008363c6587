//! Splitting raw text on the texts of special tokens before normal tokenization.
//!
//! This follows llama.cpp's `tokenizer_st_partition`: special tokens are taken longest text
//! first, and each one splits every remaining raw-text fragment at all of its (non-overlapping,
//! leftmost-first) occurrences. A byte trie over the special texts finds, in one pass, which of
//! them occur in the text at all, so only those are searched for.

use std::ops::Range;

use crate::attr;
use crate::NONE;

/// One piece of the partitioned input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Frag {
    /// A byte range of the input, to be tokenized normally.
    Text(Range<usize>),
    /// A special token found in the input.
    Token(u32),
}

#[derive(Default)]
struct Node {
    /// `(byte, child node)`, few per node.
    children: Vec<(u8, u32)>,
    /// Index into `Specials::order` of the token ending here, or [`NONE`].
    terminal: u32,
}

/// The special tokens of a vocabulary, in matching order, with a trie over their texts.
#[derive(Default)]
pub(crate) struct Specials {
    /// Token ids by text length (longest first), ties by id.
    order: Vec<u32>,
    nodes: Vec<Node>,
    first_byte: Vec<bool>,
}

impl Specials {
    /// `ids`: the CONTROL / USER_DEFINED / UNKNOWN tokens; `text(id)` their texts (non-empty).
    pub(crate) fn new<'a>(mut ids: Vec<u32>, text: impl Fn(u32) -> &'a [u8]) -> Specials {
        ids.sort_by(|&a, &b| text(b).len().cmp(&text(a).len()).then(a.cmp(&b)));
        let mut nodes = vec![Node {
            children: Vec::new(),
            terminal: NONE,
        }];
        let mut first_byte = vec![false; 256];
        for (k, &id) in ids.iter().enumerate() {
            let t = text(id);
            if t.is_empty() {
                continue;
            }
            first_byte[t[0] as usize] = true;
            let mut cur = 0usize;
            for &b in t {
                cur = match nodes[cur].children.iter().find(|c| c.0 == b) {
                    Some(&(_, child)) => child as usize,
                    None => {
                        let child = nodes.len();
                        nodes.push(Node {
                            children: Vec::new(),
                            terminal: NONE,
                        });
                        nodes[cur].children.push((b, child as u32));
                        child
                    }
                };
            }
            // Duplicate texts: the first in order (lowest id) is the one llama.cpp would match
            // first; the later one can never match anything it has not already taken.
            if nodes[cur].terminal == NONE {
                nodes[cur].terminal = k as u32;
            }
        }
        Specials {
            order: ids,
            nodes,
            first_byte,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.order.len()
    }

    /// Indices into `order` of every special text occurring somewhere in `text`, ascending.
    fn present(&self, text: &[u8]) -> Vec<u32> {
        let mut found = Vec::new();
        if self.order.is_empty() {
            return found;
        }
        for i in 0..text.len() {
            if !self.first_byte[text[i] as usize] {
                continue;
            }
            let mut cur = 0usize;
            for &b in &text[i..] {
                match self.nodes[cur].children.iter().find(|c| c.0 == b) {
                    Some(&(_, child)) => cur = child as usize,
                    None => break,
                }
                let t = self.nodes[cur].terminal;
                if t != NONE {
                    found.push(t);
                }
            }
        }
        found.sort_unstable();
        found.dedup();
        found
    }

    /// Splits `text` into raw-text and special-token fragments.
    ///
    /// `attrs[id]` gives token attributes; with `parse_special == false` only user-defined
    /// tokens are recognised. No match may overlap a `protected` byte range.
    pub(crate) fn partition<'a>(
        &self,
        text: &str,
        parse_special: bool,
        protected: &[Range<usize>],
        attrs: &[u16],
        token_text: impl Fn(u32) -> &'a str,
    ) -> Vec<Frag> {
        if text.is_empty() {
            return Vec::new();
        }
        let mut frags = vec![Frag::Text(0..text.len())];
        let bytes = text.as_bytes();
        let overlaps_protected = |a: usize, b: usize| {
            protected
                .iter()
                .any(|p| p.start < b && a < p.end && p.start < p.end)
        };
        for k in self.present(bytes) {
            let id = self.order[k as usize];
            let at = attrs[id as usize];
            if !parse_special && at & (attr::CONTROL | attr::UNKNOWN) != 0 {
                continue;
            }
            let needle = token_text(id);
            let first_len = needle.chars().next().map_or(1, char::len_utf8);
            let mut next = Vec::with_capacity(frags.len() + 2);
            for f in frags {
                let Frag::Text(r) = f else {
                    next.push(f);
                    continue;
                };
                let (mut base, end) = (r.start, r.end);
                let mut search = base;
                while let Some(m) = text[search..end].find(needle).map(|p| p + search) {
                    if overlaps_protected(m, m + needle.len()) {
                        search = m + first_len;
                        continue;
                    }
                    let mut left_end = m;
                    if at & attr::LSTRIP != 0 {
                        while left_end > base && bytes[left_end - 1].is_ascii_whitespace_c() {
                            left_end -= 1;
                        }
                    }
                    if left_end > base {
                        next.push(Frag::Text(base..left_end));
                    }
                    next.push(Frag::Token(id));
                    base = m + needle.len();
                    if at & attr::RSTRIP != 0 {
                        while base < end && bytes[base].is_ascii_whitespace_c() {
                            base += 1;
                        }
                    }
                    search = base;
                }
                if base < end {
                    next.push(Frag::Text(base..end));
                }
            }
            frags = next;
        }
        frags
    }
}

trait CSpace {
    /// C's `isspace` in the "C" locale (includes vertical tab, unlike `is_ascii_whitespace`).
    fn is_ascii_whitespace_c(&self) -> bool;
}

impl CSpace for u8 {
    fn is_ascii_whitespace_c(&self) -> bool {
        matches!(self, b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r')
    }
}
