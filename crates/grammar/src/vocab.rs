//! [`Vocabulary`]: a model's tokens as bytes, in a trie so that masking walks each shared prefix
//! once.

/// A model's tokens, built once per model: each token's bytes, or `None` for a token a grammar
/// may never produce (control and special tokens; end-of-generation tokens are the caller's
/// business, allowed when [`crate::Matcher::can_end`]). Tokens with no bytes count as `None`
/// (they would let generation run without moving the text on).
///
/// Internally the tokens form a byte trie laid out in preorder, each node knowing where its
/// subtree ends: [`crate::Matcher::allowed`] walks it once, skipping every subtree whose prefix
/// the grammar rejects.
#[derive(Clone)]
pub struct Vocabulary {
    len: usize,
    /// Every token's bytes, concatenated; token `i` is `data[offsets[i]..offsets[i + 1]]`.
    data: Vec<u8>,
    offsets: Vec<u32>,
    present: Vec<bool>,
    pub(crate) nodes: Vec<Node>,
    /// Token ids ending at each node, in node order.
    pub(crate) ends: Vec<u32>,
    pub(crate) max_depth: usize,
}

/// One trie node: the byte that leads to it from its parent.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Node {
    /// The index of the first node after this node's subtree.
    pub next: u32,
    /// The tokens whose bytes end here: `ends[ends_start..ends_start + ends_len]`.
    pub ends_start: u32,
    pub ends_len: u32,
    /// Length of the prefix this node stands for (1 for the root's children).
    pub depth: u16,
    pub byte: u8,
}

/// Tokens longer than this many bytes are treated as never allowed.
const MAX_TOKEN_LEN: usize = u16::MAX as usize;

impl Vocabulary {
    /// `tokens[i]` is token `i`'s bytes, or `None` if a grammar may never produce it.
    pub fn new(tokens: Vec<Option<Vec<u8>>>) -> Vocabulary {
        let len = tokens.len();
        let mut data = Vec::new();
        let mut offsets = Vec::with_capacity(len + 1);
        let mut present = Vec::with_capacity(len);
        offsets.push(0u32);
        for t in &tokens {
            let ok = t
                .as_ref()
                .is_some_and(|b| !b.is_empty() && b.len() <= MAX_TOKEN_LEN);
            if ok {
                data.extend_from_slice(t.as_deref().unwrap_or_default());
            }
            present.push(ok);
            offsets.push(data.len() as u32);
        }
        let mut v = Vocabulary {
            len,
            data,
            offsets,
            present,
            nodes: Vec::new(),
            ends: Vec::new(),
            max_depth: 0,
        };
        v.build_trie();
        v
    }

    fn build_trie(&mut self) {
        let mut ids: Vec<u32> = (0..self.len as u32)
            .filter(|&i| self.present[i as usize])
            .collect();
        ids.sort_by(|&a, &b| {
            self.bytes(a)
                .unwrap_or_default()
                .cmp(self.bytes(b).unwrap_or_default())
        });
        let mut nodes: Vec<Node> = Vec::new();
        let mut ends = Vec::with_capacity(ids.len());
        // Node indices of the current path from the root.
        let mut path: Vec<usize> = Vec::new();
        let mut prev: &[u8] = &[];
        let mut max_depth = 0;
        for &id in &ids {
            let b = self.bytes(id).unwrap_or_default();
            let common = prev.iter().zip(b).take_while(|(x, y)| x == y).count();
            while path.len() > common {
                let n = path.pop().unwrap();
                nodes[n].next = nodes.len() as u32;
            }
            for (d, &byte) in b.iter().enumerate().skip(common) {
                path.push(nodes.len());
                nodes.push(Node {
                    next: 0,
                    ends_start: ends.len() as u32,
                    ends_len: 0,
                    depth: (d + 1) as u16,
                    byte,
                });
            }
            let last = *path.last().expect("tokens are not empty");
            if nodes[last].ends_len == 0 {
                nodes[last].ends_start = ends.len() as u32;
            }
            nodes[last].ends_len += 1;
            ends.push(id);
            max_depth = max_depth.max(b.len());
            prev = b;
        }
        for n in path {
            nodes[n].next = nodes.len() as u32;
        }
        self.nodes = nodes;
        self.ends = ends;
        self.max_depth = max_depth;
    }

    /// Number of tokens (the length of [`crate::Matcher::allowed`]'s mask).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Token `id`'s bytes, or `None` if it may never be produced (or is out of range).
    pub fn bytes(&self, id: u32) -> Option<&[u8]> {
        let i = id as usize;
        if !*self.present.get(i)? {
            return None;
        }
        Some(&self.data[self.offsets[i] as usize..self.offsets[i + 1] as usize])
    }

    /// Number of trie nodes (for tests and statistics).
    pub fn trie_nodes(&self) -> usize {
        self.nodes.len()
    }
}

impl std::fmt::Debug for Vocabulary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vocabulary")
            .field("len", &self.len)
            .field("trie_nodes", &self.nodes.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trie_holds_every_token_once_in_preorder() {
        let toks: Vec<Option<Vec<u8>>> = ["ab", "a", "abc", "b", "", "ab"]
            .iter()
            .map(|s| Some(s.as_bytes().to_vec()))
            .chain([None])
            .collect();
        let v = Vocabulary::new(toks);
        assert_eq!(v.len(), 7);
        assert_eq!(v.bytes(4), None, "empty token");
        assert_eq!(v.bytes(6), None);
        assert_eq!(v.bytes(2), Some(&b"abc"[..]));
        // a, ab, abc, b
        let bytes: Vec<(u8, u16, u32)> =
            v.nodes.iter().map(|n| (n.byte, n.depth, n.next)).collect();
        assert_eq!(
            bytes,
            vec![(b'a', 1, 3), (b'b', 2, 3), (b'c', 3, 3), (b'b', 1, 4)]
        );
        let ends_of = |i: usize| {
            let n = v.nodes[i];
            let mut e = v.ends[n.ends_start as usize..][..n.ends_len as usize].to_vec();
            e.sort();
            e
        };
        assert_eq!(ends_of(0), vec![1]);
        assert_eq!(ends_of(1), vec![0, 5]);
        assert_eq!(ends_of(2), vec![2]);
        assert_eq!(ends_of(3), vec![3]);
    }
}
