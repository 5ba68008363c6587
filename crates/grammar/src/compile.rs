//! [`Grammar`]: rules compiled to a flat array of byte-level elements, checked for rules that
//! would make matching loop forever or never finish.

use crate::ast::{Expr, Rules};
use crate::{utf8, GrammarError};
use std::collections::{BTreeMap, HashMap};

/// At most this many elements in a compiled grammar (8 bytes each).
pub const MAX_ELEMENTS: usize = 1 << 20;
/// At most this many rules, the generated ones (alternatives in parentheses, repetitions,
/// non-ASCII character classes) included.
pub const MAX_RULES: usize = 1 << 17;

/// One element of a rule's alternative.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Elem {
    /// One byte of this set (an index into [`Grammar::sets`]).
    Bytes(u32),
    /// The rule of this index.
    Rule(u32),
    /// The end of an alternative.
    End,
}

/// A set of bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub(crate) struct ByteSet(pub [u64; 4]);

impl ByteSet {
    #[inline]
    pub(crate) fn contains(&self, b: u8) -> bool {
        self.0[(b >> 6) as usize] >> (b & 63) & 1 != 0
    }

    fn insert_range(&mut self, lo: u8, hi: u8) {
        for b in lo..=hi {
            self.0[(b >> 6) as usize] |= 1 << (b & 63);
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0 == [0; 4]
    }
}

/// A compiled grammar: immutable, cheap to share through an `Arc` between the generations that
/// use it. Built by [`Grammar::parse`] (GBNF), [`Grammar::json`] or
/// [`Grammar::from_json_schema`]; matched with a [`crate::Matcher`].
///
/// Every character class and literal is compiled to bytes (UTF-8), so a token that ends in the
/// middle of a character is matched as far as it goes.
#[derive(Clone)]
pub struct Grammar {
    /// Every rule's alternatives, each a run of elements closed by [`Elem::End`].
    pub(crate) elems: Vec<Elem>,
    /// Per rule, the positions in `elems` where its alternatives start.
    pub(crate) alts: Vec<Vec<u32>>,
    pub(crate) names: Vec<String>,
    pub(crate) sets: Vec<ByteSet>,
    pub(crate) root: u32,
    /// The rules as written, for [`Grammar::to_gbnf`].
    source: Rules,
}

impl std::fmt::Debug for Grammar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grammar")
            .field("rules", &self.alts.len())
            .field("elements", &self.elems.len())
            .finish()
    }
}

impl Grammar {
    /// The grammar as GBNF text (`root` first), which [`Grammar::parse`] reads back into an
    /// equivalent grammar: for debugging, logging, or handing a schema's grammar to another
    /// engine.
    pub fn to_gbnf(&self) -> String {
        self.source.to_gbnf()
    }

    /// Number of rules after compilation (the written ones and the generated ones).
    pub fn rule_count(&self) -> usize {
        self.alts.len()
    }

    /// Compiles `rules` (every referenced rule defined, `root` among them).
    pub(crate) fn compile(rules: Rules) -> Result<Grammar, GrammarError> {
        let root = rules.root().ok_or(GrammarError::MissingRoot)?;
        if rules.names.len() > MAX_RULES {
            return Err(GrammarError::TooLarge {
                what: "number of rules",
                limit: MAX_RULES,
                found: rules.names.len(),
            });
        }
        let mut c = Compiler {
            rules: &rules,
            elems: Vec::new(),
            alts: vec![Vec::new(); rules.names.len()],
            names: rules.names.clone(),
            sets: Vec::new(),
            set_ids: HashMap::new(),
            queue: Vec::new(),
            class_rules: HashMap::new(),
            star_rules: HashMap::new(),
            opt_chains: HashMap::new(),
            origin: (0..rules.names.len() as u32).collect(),
            counters: HashMap::new(),
        };
        for (i, body) in rules.bodies.iter().enumerate().rev() {
            let body = body.clone().unwrap_or_else(Expr::empty);
            c.queue.push((i as u32, Body::Expr(body)));
        }
        while let Some((rule, body)) = c.queue.pop() {
            let alts = match body {
                Body::Alts(alts) => alts,
                Body::Expr(e) => {
                    let parts = match e {
                        Expr::Alt(v) => v,
                        e => vec![e],
                    };
                    let mut alts = Vec::with_capacity(parts.len());
                    for part in &parts {
                        let mut seq = Vec::new();
                        c.seq(part, rule, &mut seq)?;
                        alts.push(seq);
                    }
                    alts
                }
            };
            for alt in alts {
                let start = c.elems.len() as u32;
                c.elems.extend(alt);
                c.elems.push(Elem::End);
                c.alts[rule as usize].push(start);
            }
            c.check_size(0)?;
        }
        let Compiler {
            elems,
            alts,
            names,
            sets,
            ..
        } = c;
        let g = Grammar {
            elems,
            alts,
            names,
            sets,
            root: root as u32,
            source: rules,
        };
        g.check()?;
        Ok(g)
    }

    /// Rejects grammars whose matching could loop forever (left recursion) or get stuck in a
    /// rule that never finishes.
    fn check(&self) -> Result<(), GrammarError> {
        let n = self.alts.len();
        let alt_elems = |start: u32| {
            self.elems[start as usize..]
                .iter()
                .take_while(|e| **e != Elem::End)
        };
        // Which rules are reachable from root.
        let mut reachable = vec![false; n];
        let mut todo = vec![self.root as usize];
        reachable[self.root as usize] = true;
        while let Some(r) = todo.pop() {
            for &a in &self.alts[r] {
                for e in alt_elems(a) {
                    if let Elem::Rule(q) = *e {
                        if !reachable[q as usize] {
                            reachable[q as usize] = true;
                            todo.push(q as usize);
                        }
                    }
                }
            }
        }
        // Nullable (can match the empty text) and productive (can match some finite text).
        let mut nullable = vec![false; n];
        let mut productive = vec![false; n];
        loop {
            let mut changed = false;
            for r in 0..n {
                if !nullable[r] {
                    let yes = self.alts[r].iter().any(|&a| {
                        alt_elems(a).all(|e| matches!(*e, Elem::Rule(q) if nullable[q as usize]))
                    });
                    if yes {
                        nullable[r] = true;
                        changed = true;
                    }
                }
                if !productive[r] {
                    let yes = self.alts[r].iter().any(|&a| {
                        alt_elems(a).all(|e| match *e {
                            Elem::Rule(q) => productive[q as usize],
                            Elem::Bytes(s) => !self.sets[s as usize].is_empty(),
                            Elem::End => true,
                        })
                    });
                    if yes {
                        productive[r] = true;
                        changed = true;
                    }
                }
            }
            if !changed {
                break;
            }
        }
        if let Some(r) = (0..n).find(|&r| reachable[r] && !productive[r]) {
            return Err(GrammarError::NeverEnds {
                rule: self.names[r].clone(),
            });
        }
        // Left calls: rule r calls q before matching any text. A call that is not the last of
        // its alternative pushes a frame to return to ("growing"); a cycle of left calls with a
        // growing one would push frames forever. Cycles of tail calls only are fine: the
        // matcher meets the same (rule, stack) again and stops there.
        let mut edges: Vec<Vec<(usize, bool)>> = vec![Vec::new(); n];
        for r in (0..n).filter(|&r| reachable[r]) {
            for &a in &self.alts[r] {
                let alt: Vec<Elem> = alt_elems(a).copied().collect();
                for (i, e) in alt.iter().enumerate() {
                    match *e {
                        Elem::Rule(q) => {
                            edges[r].push((q as usize, i + 1 < alt.len()));
                            if !nullable[q as usize] {
                                break;
                            }
                        }
                        _ => break,
                    }
                }
            }
        }
        let comp = components(&edges);
        for (r, out) in edges.iter().enumerate() {
            if out.iter().any(|&(q, grows)| grows && comp[q] == comp[r]) {
                return Err(GrammarError::LeftRecursion {
                    rule: self.names[r].clone(),
                });
            }
        }
        Ok(())
    }
}

/// Strongly connected components of a graph (Kosaraju, without recursion): a component id
/// per node.
fn components(edges: &[Vec<(usize, bool)>]) -> Vec<usize> {
    let n = edges.len();
    let mut order = Vec::with_capacity(n);
    let mut seen = vec![false; n];
    for s in 0..n {
        if seen[s] {
            continue;
        }
        seen[s] = true;
        let mut stack = vec![(s, 0usize)];
        while let Some(&mut (v, ref mut i)) = stack.last_mut() {
            if let Some(&(w, _)) = edges[v].get(*i) {
                *i += 1;
                if !seen[w] {
                    seen[w] = true;
                    stack.push((w, 0));
                }
            } else {
                order.push(v);
                stack.pop();
            }
        }
    }
    let mut rev: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (v, out) in edges.iter().enumerate() {
        for &(w, _) in out {
            rev[w].push(v);
        }
    }
    let mut comp = vec![usize::MAX; n];
    for (c, &s) in order.iter().rev().enumerate() {
        if comp[s] != usize::MAX {
            continue;
        }
        comp[s] = c;
        let mut stack = vec![s];
        while let Some(v) = stack.pop() {
            for &w in &rev[v] {
                if comp[w] == usize::MAX {
                    comp[w] = c;
                    stack.push(w);
                }
            }
        }
    }
    comp
}

/// A rule's body waiting to be compiled.
enum Body {
    Expr(Expr),
    /// Already compiled alternatives.
    Alts(Vec<Vec<Elem>>),
}

struct Compiler<'a> {
    rules: &'a Rules,
    elems: Vec<Elem>,
    alts: Vec<Vec<u32>>,
    names: Vec<String>,
    sets: Vec<ByteSet>,
    set_ids: HashMap<ByteSet, u32>,
    queue: Vec<(u32, Body)>,
    class_rules: HashMap<Vec<(u32, u32)>, Elem>,
    star_rules: HashMap<Elem, u32>,
    /// Per element x, the rules `x{0,1}`, `x{0,2}`... (nested, so unambiguous).
    opt_chains: HashMap<Elem, Vec<u32>>,
    /// Per rule, the written rule it comes from (itself for a written one).
    origin: Vec<u32>,
    /// Generated rules per written rule, for their names.
    counters: HashMap<u32, usize>,
}

impl Compiler<'_> {
    fn check_size(&self, pending: usize) -> Result<(), GrammarError> {
        let found = self.elems.len() + pending;
        if found > MAX_ELEMENTS {
            return Err(GrammarError::TooLarge {
                what: "compiled grammar (elements)",
                limit: MAX_ELEMENTS,
                found,
            });
        }
        if self.alts.len() > MAX_RULES {
            return Err(GrammarError::TooLarge {
                what: "number of rules",
                limit: MAX_RULES,
                found: self.alts.len(),
            });
        }
        Ok(())
    }

    fn set(&mut self, s: ByteSet) -> u32 {
        if let Some(&i) = self.set_ids.get(&s) {
            return i;
        }
        self.sets.push(s);
        self.set_ids.insert(s, self.sets.len() as u32 - 1);
        self.sets.len() as u32 - 1
    }

    fn byte(&mut self, b: u8) -> Elem {
        let mut s = ByteSet::default();
        s.insert_range(b, b);
        Elem::Bytes(self.set(s))
    }

    /// A generated rule, named after the written rule it belongs to (`value-3`).
    fn new_rule(&mut self, owner: u32) -> u32 {
        let written = self.origin[owner as usize];
        let k = self.counters.entry(written).or_default();
        *k += 1;
        self.names
            .push(format!("{}-{k}", self.rules.names[written as usize]));
        self.origin.push(written);
        self.alts.push(Vec::new());
        self.alts.len() as u32 - 1
    }

    fn seq(&mut self, e: &Expr, owner: u32, out: &mut Vec<Elem>) -> Result<(), GrammarError> {
        match e {
            Expr::Seq(items) => {
                for item in items {
                    self.seq(item, owner, out)?;
                }
            }
            Expr::Lit(s) => {
                self.check_size(out.len() + s.len())?;
                for b in s.bytes() {
                    let e = self.byte(b);
                    out.push(e);
                }
            }
            Expr::Class(c) => {
                let e = self.class(&c.normalized(), owner)?;
                out.push(e);
            }
            Expr::Ref(r) => out.push(Elem::Rule(*r as u32)),
            Expr::Alt(_) => {
                let r = self.new_rule(owner);
                self.queue.push((r, Body::Expr(e.clone())));
                out.push(Elem::Rule(r));
            }
            Expr::Repeat(inner, min, max) => {
                let mut body = Vec::new();
                self.seq(inner, owner, &mut body)?;
                let x = match body.len() {
                    0 => return Ok(()),
                    1 => body[0],
                    _ => {
                        let r = self.new_rule(owner);
                        self.queue.push((r, Body::Alts(vec![body])));
                        Elem::Rule(r)
                    }
                };
                self.check_size(out.len() + *min as usize)?;
                out.extend(std::iter::repeat_n(x, *min as usize));
                match *max {
                    None => {
                        let s = self.star(x, owner);
                        out.push(Elem::Rule(s));
                    }
                    Some(m) if m > *min => {
                        let o = self.optionals(x, (m - min) as usize, owner)?;
                        out.push(Elem::Rule(o));
                    }
                    Some(_) => {}
                }
            }
        }
        Ok(())
    }

    /// `S ::= x S | ""`.
    fn star(&mut self, x: Elem, owner: u32) -> u32 {
        if let Some(&s) = self.star_rules.get(&x) {
            return s;
        }
        let s = self.new_rule(owner);
        self.queue
            .push((s, Body::Alts(vec![vec![x, Elem::Rule(s)], vec![]])));
        self.star_rules.insert(x, s);
        s
    }

    /// `x{0,k}` as `O_k ::= x O_(k-1) | ""` (`O_1 ::= x | ""`).
    fn optionals(&mut self, x: Elem, k: usize, owner: u32) -> Result<u32, GrammarError> {
        let have = self.opt_chains.get(&x).map_or(0, Vec::len);
        self.check_size(3 * k.saturating_sub(have))?;
        for j in have..k {
            let r = self.new_rule(owner);
            let first = match j {
                0 => vec![x],
                _ => vec![x, Elem::Rule(self.opt_chains[&x][j - 1])],
            };
            self.queue.push((r, Body::Alts(vec![first, vec![]])));
            self.opt_chains.entry(x).or_default().push(r);
            if self.alts.len() > MAX_RULES {
                self.check_size(0)?;
            }
        }
        Ok(self.opt_chains[&x][k - 1])
    }

    /// One character of `ranges` (normalised): a byte set when they are all ASCII, else a rule
    /// whose alternatives are the UTF-8 byte sequences, those with the same continuation
    /// bytes merged on their first byte.
    fn class(&mut self, ranges: &[(u32, u32)], owner: u32) -> Result<Elem, GrammarError> {
        let mut ascii = ByteSet::default();
        let mut wide: BTreeMap<(usize, Vec<(u8, u8)>), ByteSet> = BTreeMap::new();
        let mut seqs = Vec::new();
        for &(lo, hi) in ranges {
            if lo <= 0x7F {
                ascii.insert_range(lo as u8, hi.min(0x7F) as u8);
            }
            if hi >= 0x80 {
                utf8::sequences(lo.max(0x80), hi, &mut seqs);
            }
        }
        if seqs.is_empty() {
            return Ok(Elem::Bytes(self.set(ascii)));
        }
        if let Some(&e) = self.class_rules.get(ranges) {
            return Ok(e);
        }
        for s in seqs {
            let first = wide.entry((s.len(), s[1..].to_vec())).or_default();
            first.insert_range(s[0].0, s[0].1);
        }
        let mut alts = Vec::new();
        if !ascii.is_empty() {
            alts.push(vec![Elem::Bytes(self.set(ascii))]);
        }
        for ((_, tail), first) in wide {
            let mut alt = vec![Elem::Bytes(self.set(first))];
            for (lo, hi) in tail {
                let mut s = ByteSet::default();
                s.insert_range(lo, hi);
                alt.push(Elem::Bytes(self.set(s)));
            }
            alts.push(alt);
        }
        let r = self.new_rule(owner);
        self.queue.push((r, Body::Alts(alts)));
        let e = Elem::Rule(r);
        self.class_rules.insert(ranges.to_vec(), e);
        Ok(e)
    }
}
