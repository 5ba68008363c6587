//! The prompt prefixes a model's slots share: after a slot has processed a prompt it leaves a
//! copy of the prompt's keys and values here ([`engine::Prefix`]), and a slot starting a prompt
//! that begins the same way (the same system prompt, another user) copies them instead of
//! computing them again. Each slot's own cache still serves its conversation's next turn; this
//! serves the other slots, within a memory budget, least recently used first out.

use engine::Prefix;
use std::sync::Arc;

/// Prompts shorter than this are not kept: copying them saves little.
pub const MIN_TOKENS: usize = 16;

/// The kept prefixes and their budget.
pub struct Prefixes {
    entries: Vec<Entry>,
    budget: usize,
    clock: u64,
}

struct Entry {
    prefix: Arc<Prefix>,
    used: u64,
}

fn common(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

impl Prefixes {
    /// An empty store that keeps at most `budget` bytes of keys and values.
    pub fn new(budget: usize) -> Prefixes {
        Prefixes {
            entries: Vec::new(),
            budget,
            clock: 0,
        }
    }

    /// The kept prefix that shares the longest start with `tokens`, and how many tokens it shares
    /// (none when no prefix shares at least [`MIN_TOKENS`]).
    pub fn best(&mut self, tokens: &[u32]) -> Option<(Arc<Prefix>, usize)> {
        self.clock += 1;
        let (entry, shared) = self
            .entries
            .iter_mut()
            .map(|e| {
                let shared = common(e.prefix.tokens(), tokens);
                (e, shared)
            })
            .max_by_key(|(_, shared)| *shared)
            .filter(|(_, shared)| *shared >= MIN_TOKENS)?;
        entry.used = self.clock;
        Some((entry.prefix.clone(), shared))
    }

    /// Whether keeping the prompt `tokens` (`bytes` of keys and values) would add anything: it is
    /// long enough, fits the budget, and no kept prefix already starts with it.
    pub fn wants(&self, tokens: &[u32], bytes: usize) -> bool {
        tokens.len() >= MIN_TOKENS
            && bytes <= self.budget
            && !self
                .entries
                .iter()
                .any(|e| e.prefix.tokens().starts_with(tokens))
    }

    /// Keeps `prefix`, in place of the kept ones it extends (a conversation's earlier turn),
    /// dropping the least recently used others until it fits the budget.
    pub fn insert(&mut self, prefix: Prefix) {
        if !self.wants(prefix.tokens(), prefix.bytes()) {
            return;
        }
        self.entries
            .retain(|e| !prefix.tokens().starts_with(e.prefix.tokens()));
        let mut used: usize = self.entries.iter().map(|e| e.prefix.bytes()).sum();
        while used + prefix.bytes() > self.budget {
            let Some(oldest) = (0..self.entries.len()).min_by_key(|&i| self.entries[i].used) else {
                break;
            };
            used -= self.entries.swap_remove(oldest).prefix.bytes();
        }
        self.clock += 1;
        self.entries.push(Entry {
            prefix: Arc::new(prefix),
            used: self.clock,
        });
    }

    /// Bytes of keys and values kept.
    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.entries.iter().map(|e| e.prefix.bytes()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::{Model, Session};
    use std::path::Path;

    fn model() -> Model {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../testdata/reference/synthetic/llama3-synthetic-q8_0.gguf");
        Model::load(&p, 1).unwrap()
    }

    /// The keys and values of `tokens`, computed.
    fn prefix(m: &Model, tokens: &[u32]) -> Prefix {
        let mut s = Session::new(m, 128);
        s.eval(tokens).unwrap();
        s.snapshot()
    }

    #[test]
    fn the_longest_shared_start_is_found_and_short_ones_are_not_kept() {
        let m = model();
        let a: Vec<u32> = (1..=20).collect();
        let b: Vec<u32> = (1..=18).chain(40..45).collect();
        let mut store = Prefixes::new(usize::MAX);
        store.insert(prefix(&m, &a));
        store.insert(prefix(&m, &b));
        let ask: Vec<u32> = (1..=19).chain([7]).collect();
        let (found, shared) = store.best(&ask).unwrap();
        assert_eq!((found.tokens(), shared), (&a[..], 19));
        // Sharing fewer than MIN_TOKENS is no match, and a short prompt is not kept.
        assert!(store.best(&[1, 2, 3, 9]).is_none());
        let short: Vec<u32> = (1..MIN_TOKENS as u32).collect();
        assert!(!store.wants(&short, 1));
    }

    #[test]
    fn a_longer_prompt_replaces_the_ones_it_extends() {
        let m = model();
        let turn1: Vec<u32> = (1..=20).collect();
        let turn2: Vec<u32> = (1..=30).collect();
        let mut store = Prefixes::new(usize::MAX);
        store.insert(prefix(&m, &turn1));
        store.insert(prefix(&m, &turn2));
        assert_eq!(store.entries.len(), 1);
        // One that the kept one already covers adds nothing.
        assert!(!store.wants(&turn1, 1));
        store.insert(prefix(&m, &turn1));
        assert_eq!(store.entries.len(), 1);
        assert_eq!(store.best(&turn1).unwrap().0.tokens(), &turn2[..]);
    }

    #[test]
    fn the_least_recently_used_go_first_to_stay_within_the_budget() {
        let m = model();
        let prompts: Vec<Vec<u32>> = (0..3u32)
            .map(|k| (0..20).map(|i| 100 * (k + 1) + i).collect())
            .collect();
        let size = prefix(&m, &prompts[0]).bytes();
        let mut store = Prefixes::new(2 * size);
        store.insert(prefix(&m, &prompts[0]));
        store.insert(prefix(&m, &prompts[1]));
        // Using the first makes the second the least recently used.
        assert!(store.best(&prompts[0]).is_some());
        store.insert(prefix(&m, &prompts[2]));
        assert_eq!(store.bytes(), 2 * size);
        assert!(store.best(&prompts[0]).is_some());
        assert!(store.best(&prompts[1]).is_none());
        assert!(store.best(&prompts[2]).is_some());
        // A prompt larger than the whole budget is not kept.
        assert!(!Prefixes::new(size - 1).wants(&prompts[0], size));
    }
}
