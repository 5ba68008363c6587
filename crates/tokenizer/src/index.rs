//! Compact string storage and a string -> id hash index over it (one allocation for all token
//! texts; loading a 262k vocabulary costs a few milliseconds).

use std::hash::{BuildHasherDefault, Hasher};

/// All strings back to back in one buffer; string `i` is `bytes[offsets[i]..offsets[i + 1]]`.
#[derive(Clone, Debug, Default)]
pub(crate) struct StrTable {
    bytes: Vec<u8>,
    offsets: Vec<u32>,
}

impl StrTable {
    pub(crate) fn with_capacity(n: usize, bytes: usize) -> StrTable {
        let mut offsets = Vec::with_capacity(n + 1);
        offsets.push(0);
        StrTable {
            bytes: Vec::with_capacity(bytes),
            offsets,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    /// Appends a string; returns its index, or `None` once the buffer would pass 4 GiB.
    pub(crate) fn push(&mut self, s: &[u8]) -> Option<u32> {
        let end = u32::try_from(self.bytes.len() + s.len()).ok()?;
        self.bytes.extend_from_slice(s);
        self.offsets.push(end);
        u32::try_from(self.len() - 1).ok()
    }

    #[inline]
    pub(crate) fn get(&self, i: u32) -> &[u8] {
        let i = i as usize;
        &self.bytes[self.offsets[i] as usize..self.offsets[i + 1] as usize]
    }

    /// String `i` as `&str`. Only valid when every pushed string was UTF-8.
    #[inline]
    pub(crate) fn get_str(&self, i: u32) -> &str {
        // The tables holding token texts are filled from `&str` only.
        std::str::from_utf8(self.get(i)).unwrap_or("")
    }

    pub(crate) fn shrink(&mut self) {
        self.bytes.shrink_to_fit();
        self.offsets.shrink_to_fit();
    }
}

/// FxHash-style hasher: fast, not DoS-resistant (keys are vocabulary strings and id pairs).
#[derive(Clone, Copy, Default)]
pub(crate) struct FxHasher {
    hash: u64,
}

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut buf = [0u8; 8];
            buf[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(buf));
        }
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

pub(crate) type FxBuild = BuildHasherDefault<FxHasher>;
pub(crate) type FxHashMap<K, V> = std::collections::HashMap<K, V, FxBuild>;

#[inline]
fn hash_bytes(s: &[u8]) -> u64 {
    let mut h = FxHasher::default();
    h.write(s);
    h.add(s.len() as u64);
    // Finalize (murmur3's fmix64): slots are picked with the low bits, which FxHash leaves weak.
    let mut x = h.hash;
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

const EMPTY: u32 = u32::MAX;

/// Open-addressing index from the strings of a [`StrTable`] to their ids. Inserting a string
/// that is already present re-points it to the new id (the last duplicate wins, as in
/// llama.cpp's `token_to_id`).
#[derive(Clone, Debug, Default)]
pub(crate) struct StrIndex {
    /// `(hash low 32 bits, id)`
    slots: Vec<(u32, u32)>,
    mask: usize,
    len: usize,
}

impl StrIndex {
    pub(crate) fn with_capacity(n: usize) -> StrIndex {
        let cap = (n.max(4) * 2).next_power_of_two();
        StrIndex {
            slots: vec![(0, EMPTY); cap],
            mask: cap - 1,
            len: 0,
        }
    }

    fn grow(&mut self) {
        let old = std::mem::take(&mut self.slots);
        let cap = old.len() * 2;
        self.slots = vec![(0, EMPTY); cap];
        self.mask = cap - 1;
        for (h, id) in old {
            if id != EMPTY {
                let mut i = h as usize & self.mask;
                while self.slots[i].1 != EMPTY {
                    i = (i + 1) & self.mask;
                }
                self.slots[i] = (h, id);
            }
        }
    }

    /// Maps `table.get(id)` to `id`.
    pub(crate) fn insert(&mut self, table: &StrTable, id: u32) {
        if (self.len + 1) * 2 > self.slots.len() {
            self.grow();
        }
        let key = table.get(id);
        let h = hash_bytes(key) as u32;
        let mut i = h as usize & self.mask;
        loop {
            let (sh, sid) = self.slots[i];
            if sid == EMPTY {
                self.slots[i] = (h, id);
                self.len += 1;
                return;
            }
            if sh == h && table.get(sid) == key {
                self.slots[i].1 = id;
                return;
            }
            i = (i + 1) & self.mask;
        }
    }

    #[inline]
    pub(crate) fn get(&self, table: &StrTable, key: &[u8]) -> Option<u32> {
        if self.slots.is_empty() {
            return None;
        }
        let h = hash_bytes(key) as u32;
        let mut i = h as usize & self.mask;
        loop {
            let (sh, sid) = self.slots[i];
            if sid == EMPTY {
                return None;
            }
            if sh == h && table.get(sid) == key {
                return Some(sid);
            }
            i = (i + 1) & self.mask;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_finds_strings_and_last_duplicate_wins() {
        let words = ["a", "b", "ab", "", "a", "longer string with spaces"];
        let mut t = StrTable::with_capacity(words.len(), 64);
        let mut idx = StrIndex::with_capacity(1);
        for w in words {
            let id = t.push(w.as_bytes()).unwrap();
            idx.insert(&t, id);
        }
        assert_eq!(idx.get(&t, b"a"), Some(4));
        assert_eq!(idx.get(&t, b"ab"), Some(2));
        assert_eq!(idx.get(&t, b""), Some(3));
        assert_eq!(idx.get(&t, b"longer string with spaces"), Some(5));
        assert_eq!(idx.get(&t, b"abc"), None);
        assert_eq!(t.get_str(2), "ab");
    }
}
