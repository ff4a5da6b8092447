//! The IPv4 4-tuple table: open addressing with linear probing over
//! 16-byte entries, so a lookup reads one cache line, and a receive burst
//! can prefetch that line for every frame before it looks any of them up
//! (see [`crate::hint`]). A general-purpose map reads two dependent lines
//! per lookup (control bytes, then the entry) and offers no prefetch.
//!
//! Keys are hashed with a keyed multiply-fold: a peer that does not know
//! the key cannot choose 4-tuples that collide. The table stays at most
//! half full, and removal shifts later entries back into the hole (no
//! tombstones), so probe chains stay short however long the stack runs.

/// A slot's value when it is empty.
const EMPTY: u32 = u32::MAX;

#[derive(Debug, Clone, Copy)]
struct Entry {
    key: u64,
    val: u32,
}

const VACANT: Entry = Entry { key: 0, val: EMPTY };

/// Maps a connection key to its slot index.
#[derive(Debug)]
pub struct FlowTable {
    entries: Box<[Entry]>,
    mask: usize,
    len: usize,
    seed: (u64, u64),
}

impl FlowTable {
    /// A table with room for `n` keys before it grows, keyed by `seed`.
    pub fn with_capacity(n: usize, seed: u64) -> FlowTable {
        let cap = (n.max(8) * 2).next_power_of_two();
        FlowTable {
            entries: vec![VACANT; cap].into_boxed_slice(),
            mask: cap - 1,
            len: 0,
            seed: (seed | 1, seed.rotate_left(29) ^ 0x9e37_79b9_7f4a_7c15),
        }
    }

    #[inline]
    fn home(&self, key: u64) -> usize {
        let x = (key ^ self.seed.1).wrapping_mul(self.seed.0);
        let x = (x ^ (x >> 29)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        (x ^ (x >> 32)) as usize & self.mask
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Keys it holds before it grows.
    pub fn capacity(&self) -> usize {
        self.entries.len() / 2
    }

    /// Asks the CPU for the line where `key`'s probe starts.
    #[inline]
    pub fn prefetch(&self, key: u64) {
        crate::hint::prefetch(&self.entries[self.home(key)], 1);
    }

    /// True if `key` is there.
    pub fn contains_key(&self, key: u64) -> bool {
        self.get(key).is_some()
    }

    /// Where `key` is (`Ok`), or the empty entry that ends its probe
    /// (`Err`).
    #[inline]
    fn probe(&self, key: u64) -> Result<usize, usize> {
        let mut i = self.home(key);
        loop {
            let e = self.entries[i];
            if e.val == EMPTY {
                return Err(i);
            }
            if e.key == key {
                return Ok(i);
            }
            i = (i + 1) & self.mask;
        }
    }

    /// The value of `key`.
    #[inline]
    pub fn get(&self, key: u64) -> Option<u32> {
        self.probe(key).ok().map(|i| self.entries[i].val)
    }

    /// Sets `key` to `val`; returns the value it replaced.
    pub fn insert(&mut self, key: u64, val: u32) -> Option<u32> {
        debug_assert_ne!(val, EMPTY);
        if (self.len + 1) * 2 > self.entries.len() {
            self.grow();
        }
        match self.probe(key) {
            Ok(i) => Some(std::mem::replace(&mut self.entries[i].val, val)),
            Err(i) => {
                self.entries[i] = Entry { key, val };
                self.len += 1;
                None
            }
        }
    }

    /// Removes `key`; returns its value.
    pub fn remove(&mut self, key: u64) -> Option<u32> {
        let i = self.probe(key).ok()?;
        let val = self.entries[i].val;
        // Shift later entries of the run back into the hole when their
        // home lies at or before it (cyclically), so no probe for them
        // stops early at the hole.
        let mut hole = i;
        let mut j = i;
        loop {
            j = (j + 1) & self.mask;
            let e = self.entries[j];
            if e.val == EMPTY {
                break;
            }
            let home = self.home(e.key);
            if (j.wrapping_sub(home) & self.mask) >= (j.wrapping_sub(hole) & self.mask) {
                self.entries[hole] = e;
                hole = j;
            }
        }
        self.entries[hole] = VACANT;
        self.len -= 1;
        Some(val)
    }

    #[cold]
    fn grow(&mut self) {
        let bigger = vec![VACANT; self.entries.len() * 2].into_boxed_slice();
        let old = std::mem::replace(&mut self.entries, bigger);
        self.mask = self.entries.len() - 1;
        self.len = 0;
        for e in old.iter().filter(|e| e.val != EMPTY) {
            self.insert(e.key, e.val);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Random inserts, replacements and removals, checked against
    /// `HashMap`, through several grows; keys drawn from a small range so
    /// that runs collide and removals shift.
    #[test]
    fn behaves_as_a_map_through_grows_and_removals() {
        let mut t = FlowTable::with_capacity(4, 12345);
        let mut m: HashMap<u64, u32> = HashMap::new();
        let mut x = 0x9e37_79b9_u64;
        for step in 0..200_000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let key = x % 3000;
            match x >> 60 {
                0..=8 => assert_eq!(t.insert(key, step), m.insert(key, step)),
                _ => assert_eq!(t.remove(key), m.remove(&key)),
            }
            assert_eq!(t.len(), m.len());
            if step % 1000 == 0 {
                for k in 0..3000 {
                    assert_eq!(t.get(k), m.get(&k).copied(), "key {k} at step {step}");
                }
            }
        }
        assert!(t.capacity() >= m.len());
    }

    #[test]
    fn presized_tables_do_not_grow() {
        let mut t = FlowTable::with_capacity(1000, 1);
        let cap = t.capacity();
        for k in 0..1000 {
            t.insert(k * 7919, k as u32);
        }
        assert_eq!(t.capacity(), cap);
        assert_eq!(t.get(999 * 7919), Some(999));
        assert_eq!(t.get(5), None);
    }
}
