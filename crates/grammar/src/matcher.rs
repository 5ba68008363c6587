//! [`Matcher`]: the parse state of one generation, and the token masks it allows.
//!
//! The state is a set of pushdown stacks (a recogniser in the style of an Earley parser over the
//! compiled grammar): each stack's top is the byte set that may come next, the frames below are
//! where to continue when the current rule ends, and the empty stack means the text is a
//! complete sentence. Stacks are hash-consed into a shared arena (a stack is one id: its top
//! position and the id of the rest), and sets of stacks are interned as *states*, so the
//! transition from a state on a byte is computed once and then read from a table: a lazily
//! built DFA over the pushdown automaton. Masking a vocabulary is then a walk over its trie with
//! one table lookup per trie node.

use crate::compile::Elem;
use crate::{Grammar, GrammarError, Vocabulary};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex, PoisonError};

/// The most stacks one parse state may hold: an ambiguous grammar can double them with every
/// character; past this the text is rejected with [`GrammarError::TooAmbiguous`].
pub const MAX_STACKS: usize = 4096;

/// The empty stack (the bottom of every stack).
const EMPTY: u32 = 0;
/// The state with no stacks: nothing more can be matched.
const DEAD: u32 = 0;
/// A transition not computed yet.
const UNKNOWN: u32 = u32::MAX;
/// A transition whose state would have more than [`MAX_STACKS`] stacks.
const OVERFLOW: u32 = u32::MAX - 1;
/// A state without a transition row (past [`MAX_ROWS`]).
const NO_ROW: u32 = u32::MAX;
/// The visited-set tag of "returned into this frame".
const POP: u32 = u32::MAX;

/// At most this many states get a cached row of 256 transitions (1 KiB each).
const MAX_ROWS: usize = 16 * 1024;
/// Past this many stack nodes or states the cache is rebuilt around the current state.
const MAX_NODES: usize = 1 << 20;
const MAX_STATES: usize = 1 << 17;

/// A small multiplicative hasher for the integer keys of the caches.
#[derive(Default, Clone, Copy)]
struct FastHasher(u64);

impl Hasher for FastHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(b as u64);
        }
    }

    #[inline]
    fn write_u32(&mut self, n: u32) {
        self.write_u64(n as u64);
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

#[derive(Clone)]
struct State {
    /// Sorted stack ids.
    stacks: Box<[u32]>,
    row: u32,
}

/// The lazily built DFA: stacks, states and their transitions.
#[derive(Clone)]
struct Automaton {
    /// Stack nodes: (position in the grammar, the rest of the stack). Node 0 is the empty stack.
    nodes: Vec<(u32, u32)>,
    node_ids: FastMap<(u32, u32), u32>,
    states: Vec<State>,
    state_ids: FastMap<Box<[u32]>, u32>,
    /// Rows of 256 transitions.
    trans: Vec<u32>,
    // Scratch space of a transition's computation.
    work: Vec<(u32, u32)>,
    visited: FastMap<(u32, u32), ()>,
    out: Vec<u32>,
}

impl Automaton {
    fn new() -> Automaton {
        let mut a = Automaton {
            nodes: vec![(u32::MAX, u32::MAX)],
            node_ids: FastMap::default(),
            states: Vec::new(),
            state_ids: FastMap::default(),
            trans: Vec::new(),
            work: Vec::new(),
            visited: FastMap::default(),
            out: Vec::new(),
        };
        a.intern_state(Vec::new());
        // The dead state goes nowhere.
        a.trans[..256].fill(DEAD);
        a
    }

    fn node(&mut self, pos: u32, parent: u32) -> u32 {
        let next = self.nodes.len() as u32;
        let id = *self.node_ids.entry((pos, parent)).or_insert(next);
        if id == next {
            self.nodes.push((pos, parent));
        }
        id
    }

    fn intern_state(&mut self, stacks: Vec<u32>) -> u32 {
        if let Some(&id) = self.state_ids.get(stacks.as_slice()) {
            return id;
        }
        let id = self.states.len() as u32;
        let row = if self.trans.len() / 256 < MAX_ROWS {
            self.trans.extend(std::iter::repeat_n(UNKNOWN, 256));
            (self.trans.len() / 256 - 1) as u32
        } else {
            NO_ROW
        };
        let stacks: Box<[u32]> = stacks.into_boxed_slice();
        self.state_ids.insert(stacks.clone(), id);
        self.states.push(State { stacks, row });
        id
    }

    /// The state at the start of the text.
    fn start(&mut self, g: &Grammar) -> u32 {
        self.visited.clear();
        self.work.clear();
        self.visited.insert((g.root, EMPTY), ());
        for &a in &g.alts[g.root as usize] {
            self.work.push((a, EMPTY));
        }
        self.close(g)
    }

    /// The state after byte `b` in state `s`; [`DEAD`] for none (or too many stacks).
    #[inline]
    fn next(&mut self, g: &Grammar, s: u32, b: u8) -> u32 {
        match self.step(g, s, b) {
            OVERFLOW => DEAD,
            t => t,
        }
    }

    /// Like [`Automaton::next`], but [`OVERFLOW`] when the state would have too many stacks.
    #[inline]
    fn step(&mut self, g: &Grammar, s: u32, b: u8) -> u32 {
        let row = self.states[s as usize].row;
        if row != NO_ROW {
            let t = self.trans[row as usize * 256 + b as usize];
            if t != UNKNOWN {
                return t;
            }
        }
        let t = self.compute(g, s, b);
        if row != NO_ROW {
            self.trans[row as usize * 256 + b as usize] = t;
        }
        t
    }

    fn compute(&mut self, g: &Grammar, s: u32, b: u8) -> u32 {
        self.visited.clear();
        self.work.clear();
        for &st in self.states[s as usize].stacks.iter() {
            if st == EMPTY {
                continue;
            }
            let (pos, parent) = self.nodes[st as usize];
            if let Elem::Bytes(set) = g.elems[pos as usize] {
                if g.sets[set as usize].contains(b) {
                    self.work.push((pos + 1, parent));
                }
            }
        }
        if self.work.is_empty() {
            return DEAD;
        }
        self.close(g)
    }

    /// Expands the work list (positions to continue at, over their stacks) until every stack's
    /// top is a byte set or the stack is empty, and interns the resulting state.
    fn close(&mut self, g: &Grammar) -> u32 {
        self.out.clear();
        while let Some((pos, parent)) = self.work.pop() {
            match g.elems[pos as usize] {
                Elem::Bytes(set) => {
                    if !g.sets[set as usize].is_empty() {
                        let id = self.node(pos, parent);
                        self.out.push(id);
                        if self.out.len() > 4 * MAX_STACKS {
                            return OVERFLOW;
                        }
                    }
                }
                Elem::End => {
                    if parent == EMPTY {
                        self.out.push(EMPTY);
                    } else if self.visited.insert((POP, parent), ()).is_none() {
                        self.work.push(self.nodes[parent as usize]);
                    }
                }
                Elem::Rule(r) => {
                    let cont = pos + 1;
                    // A call in tail position returns straight to the caller's frame.
                    let frame = if g.elems[cont as usize] == Elem::End {
                        parent
                    } else {
                        self.node(cont, parent)
                    };
                    if self.visited.insert((r, frame), ()).is_none() {
                        for &a in &g.alts[r as usize] {
                            self.work.push((a, frame));
                        }
                    }
                }
            }
        }
        let mut out = std::mem::take(&mut self.out);
        out.sort_unstable();
        out.dedup();
        let id = if out.len() > MAX_STACKS {
            OVERFLOW
        } else if out.is_empty() {
            DEAD
        } else {
            self.intern_state(out.clone())
        };
        out.clear();
        self.out = out;
        id
    }

    fn can_end(&self, s: u32) -> bool {
        self.states[s as usize].stacks.first() == Some(&EMPTY)
    }

    fn must_end(&self, s: u32) -> bool {
        *self.states[s as usize].stacks == [EMPTY]
    }

    fn too_big(&self) -> bool {
        self.nodes.len() > MAX_NODES || self.states.len() > MAX_STATES
    }

    /// A fresh automaton holding only state `s` of this one; returns it and `s`'s new id.
    fn rebuilt(&self, s: u32) -> (Automaton, u32) {
        let mut fresh = Automaton::new();
        let mut stacks = Vec::new();
        for &st in self.states[s as usize].stacks.iter() {
            let mut chain = Vec::new();
            let mut n = st;
            while n != EMPTY {
                chain.push(self.nodes[n as usize].0);
                n = self.nodes[n as usize].1;
            }
            let mut id = EMPTY;
            for &pos in chain.iter().rev() {
                id = fresh.node(pos, id);
            }
            stacks.push(id);
        }
        stacks.sort_unstable();
        stacks.dedup();
        let id = if stacks.is_empty() {
            DEAD
        } else {
            fresh.intern_state(stacks)
        };
        (fresh, id)
    }
}

#[derive(Clone)]
struct Inner {
    auto: Automaton,
    current: u32,
    start: u32,
}

impl Inner {
    fn compact(&mut self) {
        if self.auto.too_big() {
            let (auto, current) = self.auto.rebuilt(self.current);
            self.auto = auto;
            self.current = current;
            // The start state is recomputed by `reset` when needed.
            self.start = u32::MAX;
        }
    }

    /// The state after `bytes` from the current one ([`OVERFLOW`] if too ambiguous).
    fn walk(&mut self, g: &Grammar, bytes: &[u8]) -> u32 {
        let mut s = self.current;
        for &b in bytes {
            s = self.auto.step(g, s, b);
            if s == DEAD || s == OVERFLOW {
                break;
            }
        }
        s
    }
}

/// The parse state of one generation under a [`Grammar`]: which text may follow what has been
/// generated so far.
///
/// Typical use per generated token: [`Matcher::accepts`] the sampled token's bytes (the fast
/// path); if not, [`Matcher::allowed`] gives the mask of tokens to sample from instead; then
/// [`Matcher::advance`] with the chosen token's bytes. End-of-generation is allowed when
/// [`Matcher::can_end`], and forced when [`Matcher::must_end`].
///
/// It caches the transitions it has computed (a lazily built DFA), so repeated states cost a
/// table lookup per byte; the cache is rebuilt when it grows past a few tens of MB. The methods
/// that take `&self` update the cache behind a mutex, so a matcher is `Send + Sync`.
pub struct Matcher {
    grammar: Arc<Grammar>,
    inner: Mutex<Inner>,
}

impl Clone for Matcher {
    fn clone(&self) -> Matcher {
        Matcher {
            grammar: self.grammar.clone(),
            inner: Mutex::new(self.lock().clone()),
        }
    }
}

impl std::fmt::Debug for Matcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.lock();
        f.debug_struct("Matcher")
            .field(
                "stacks",
                &inner.auto.states[inner.current as usize].stacks.len(),
            )
            .field("cached_states", &inner.auto.states.len())
            .finish()
    }
}

impl Matcher {
    /// A matcher at the start of the text.
    pub fn new(grammar: Arc<Grammar>) -> Matcher {
        let mut auto = Automaton::new();
        let start = auto.start(&grammar);
        // The root can always start: the grammar was checked to be productive, and a start
        // with too many stacks leaves nothing allowed.
        let start = if start == OVERFLOW { DEAD } else { start };
        Matcher {
            grammar,
            inner: Mutex::new(Inner {
                auto,
                current: start,
                start,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn grammar(&self) -> &Arc<Grammar> {
        &self.grammar
    }

    /// Back to the start of the text.
    pub fn reset(&mut self) {
        let g = self.grammar.clone();
        let inner = self.inner.get_mut().unwrap_or_else(PoisonError::into_inner);
        if inner.start == u32::MAX {
            let s = inner.auto.start(&g);
            inner.start = if s == OVERFLOW { DEAD } else { s };
        }
        inner.current = inner.start;
    }

    /// Whether appending `bytes` to the text keeps it a prefix of some sentence of the grammar.
    /// `bytes` may end (or start) in the middle of a UTF-8 character.
    pub fn accepts(&self, bytes: &[u8]) -> bool {
        let mut inner = self.lock();
        !matches!(inner.walk(&self.grammar, bytes), DEAD | OVERFLOW)
    }

    /// Whether token `id` of `vocab` may come next (never for a token the vocabulary marks
    /// `None`).
    pub fn accepts_token(&self, vocab: &Vocabulary, id: u32) -> bool {
        vocab.bytes(id).is_some_and(|b| self.accepts(b))
    }

    /// Appends `bytes` to the text. Fails, changing nothing, if the grammar does not allow them
    /// ([`GrammarError::Rejected`]) or they make the parse too ambiguous
    /// ([`GrammarError::TooAmbiguous`]).
    pub fn advance(&mut self, bytes: &[u8]) -> Result<(), GrammarError> {
        let inner = self.inner.get_mut().unwrap_or_else(PoisonError::into_inner);
        inner.compact();
        match inner.walk(&self.grammar, bytes) {
            DEAD => Err(GrammarError::Rejected {
                text: String::from_utf8_lossy(bytes).into_owned(),
            }),
            OVERFLOW => Err(GrammarError::TooAmbiguous { limit: MAX_STACKS }),
            s => {
                inner.current = s;
                Ok(())
            }
        }
    }

    /// Whether the text so far is a complete sentence of the grammar (end-of-generation may
    /// come now).
    pub fn can_end(&self) -> bool {
        let inner = self.lock();
        inner.auto.can_end(inner.current)
    }

    /// Whether the text is complete and nothing may follow it: the caller ends the generation.
    /// Also true when no continuation is possible at all (which a checked grammar avoids).
    pub fn must_end(&self) -> bool {
        let inner = self.lock();
        inner.current == DEAD || inner.auto.must_end(inner.current)
    }

    /// Sets `out` to one flag per token of `vocab`: whether the token's bytes keep the text a
    /// valid prefix. Returns how many are allowed. End-of-generation tokens are not in it (see
    /// [`Matcher::can_end`]).
    pub fn allowed(&self, vocab: &Vocabulary, out: &mut Vec<bool>) -> usize {
        out.clear();
        out.resize(vocab.len(), false);
        let g = &*self.grammar;
        let mut inner = self.lock();
        inner.compact();
        let Inner { auto, current, .. } = &mut *inner;
        if *current == DEAD {
            return 0;
        }
        let mut states = vec![DEAD; vocab.max_depth + 1];
        states[0] = *current;
        let nodes = &vocab.nodes;
        let mut count = 0;
        let mut i = 0;
        while i < nodes.len() {
            let n = nodes[i];
            let s = auto.next(g, states[n.depth as usize - 1], n.byte);
            if s == DEAD {
                i = n.next as usize;
                continue;
            }
            states[n.depth as usize] = s;
            for &t in &vocab.ends[n.ends_start as usize..][..n.ends_len as usize] {
                out[t as usize] = true;
            }
            count += n.ends_len as usize;
            i += 1;
        }
        count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher(src: &str) -> Matcher {
        Matcher::new(Arc::new(Grammar::parse(src).unwrap()))
    }

    fn full(m: &Matcher, text: &str) -> bool {
        let mut m = m.clone();
        m.advance(text.as_bytes()).is_ok() && m.can_end()
    }

    #[test]
    fn literals_alternatives_and_repetition() {
        let m = matcher(r#"root ::= ("yes" | "no") "!"{1,3}"#);
        assert!(m.accepts(b"y") && m.accepts(b"no!") && !m.accepts(b"nay"));
        assert!(full(&m, "yes!") && full(&m, "no!!!"));
        assert!(!full(&m, "yes") && !full(&m, "yes!!!!"));
        let mut m2 = m.clone();
        m2.advance(b"no!!!").unwrap();
        assert!(m2.must_end());
        m2.reset();
        assert!(!m2.can_end() && m2.accepts(b"yes"));
    }

    #[test]
    fn classes_match_unicode_across_token_boundaries() {
        let m = matcher(r#"root ::= [α-ω]+ [^a-z]"#);
        let text = "λμ€".as_bytes();
        // Split inside a character: each piece is a valid prefix.
        let mut m1 = m.clone();
        for piece in [&text[..1], &text[1..3], &text[3..]] {
            assert!(m1.accepts(piece), "{piece:?}");
            m1.advance(piece).unwrap();
        }
        assert!(m1.can_end());
        // The first byte of 'a' (ASCII) is not in [α-ω]; nor is the lead byte of 'ё'.
        assert!(!m.accepts(b"a"));
        assert!(!m.accepts(&"ё".as_bytes()[..1]));
        // Invalid UTF-8 never matches.
        assert!(!m.accepts(&[0xCE, 0x41]));
        assert!(!m.accepts(&[0xFF]));
        let any = matcher("root ::= .");
        assert!(full(&any, "\n") && full(&any, "😀") && !any.accepts(&[0xED, 0xA0]));
    }

    #[test]
    fn nullable_loops_terminate() {
        // A repeated group that can match nothing, and tail recursion through optional rules.
        let m = matcher(
            r#"root ::= ("a"*)* "b" | x
x ::= "c" | y x
y ::= "y"?"#,
        );
        assert!(full(&m, "b") && full(&m, "aaab") && full(&m, "c") && full(&m, "yyc"));
        assert!(!m.accepts(b"ac"));
    }

    #[test]
    fn recursion_nests() {
        let m = matcher(r#"root ::= "(" root ")" | """#);
        assert!(full(&m, "((()))") && !full(&m, "(()") && !m.accepts(b"())"));
        let mut deep = m.clone();
        deep.advance("(".repeat(500).as_bytes()).unwrap();
        deep.advance(")".repeat(500).as_bytes()).unwrap();
        assert!(deep.must_end());
    }

    #[test]
    fn ambiguity_is_capped_with_a_clear_error() {
        // Each "x" doubles the ways to finish: 2^n stacks that differ below the top.
        let mut m = matcher(
            r#"root ::= a
a ::= "x" a "y" | "x" a "yy" | """#,
        );
        let err = (0..20)
            .find_map(|_| m.advance(b"x").err())
            .expect("too ambiguous");
        assert_eq!(err, GrammarError::TooAmbiguous { limit: MAX_STACKS });
        let mut ok = matcher(r#"root ::= ("a" | "a" | "ab")* "c""#);
        ok.advance("a".repeat(1000).as_bytes()).unwrap();
    }

    #[test]
    fn mask_agrees_with_accepts() {
        let m = matcher(r#"root ::= "{" [a-c]* "}""#);
        let toks: Vec<&str> = vec!["{", "{a", "a", "ab", "}", "a}", "{}", "x", "", "bca}"];
        let vocab = Vocabulary::new(toks.iter().map(|t| Some(t.as_bytes().to_vec())).collect());
        let mut mask = Vec::new();
        let n = m.allowed(&vocab, &mut mask);
        assert_eq!(
            mask,
            vec![true, true, false, false, false, false, true, false, false, false]
        );
        assert_eq!(n, 3);
        let mut m = m;
        m.advance(b"{").unwrap();
        m.allowed(&vocab, &mut mask);
        for (i, t) in toks.iter().enumerate() {
            assert_eq!(mask[i], !t.is_empty() && m.accepts(t.as_bytes()), "{t:?}");
        }
    }

    #[test]
    fn matcher_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Matcher>();
        check::<Grammar>();
        check::<Vocabulary>();
    }
}
