//! IPv4 longest-prefix match: a DIR-24-8 table (Gupta, Lin and McKeown,
//! "Routing lookups in hardware at memory access speeds", 1998; the layout
//! DPDK's `rte_lpm` uses).
//!
//! A first-level table of 2^24 entries is indexed by the top 24 bits of the
//! address. An entry holds either a next hop (for prefixes up to /24,
//! expanded over every /24 they cover) or the index of a 256-entry group
//! of the second-level table, indexed by the low 8 bits (for prefixes
//! longer than /24). A lookup is one load, or two. Each entry also records
//! the length of the prefix that wrote it, so a shorter prefix inserted
//! later never overwrites a longer one: the table is the same whatever
//! order the routes come in.
//!
//! The table is built once before forwarding starts (insertion may
//! allocate second-level groups); lookups never allocate.

/// Entry layout: valid bit, "points at a group" bit, 6 bits of prefix
/// length, 24 bits of next hop or group index.
const VALID: u32 = 1 << 31;
const GROUP: u32 = 1 << 30;
const DEPTH_SHIFT: u32 = 24;
const VALUE_MASK: u32 = (1 << 24) - 1;

/// First-level entries: one per /24.
const TBL24: usize = 1 << 24;

/// Largest next-hop id (24 bits).
pub const MAX_NEXT_HOP: u32 = VALUE_MASK;

/// Why a route cannot be added.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LpmError {
    /// A prefix length over 32.
    #[error("prefix length {0} is over 32")]
    BadLength(u8),
    /// A next-hop id over 24 bits.
    #[error("next hop {0} is over the table's limit of {MAX_NEXT_HOP}")]
    BadNextHop(u32),
    /// No second-level group left.
    #[error("more than {0} distinct /24s hold prefixes longer than /24")]
    TooManyGroups(u32),
}

/// A DIR-24-8 longest-prefix-match table from IPv4 addresses to next-hop
/// ids.
pub struct Lpm {
    /// A fixed-size array, so a lookup's index (24 bits) needs no bounds check.
    tbl24: Box<[u32; TBL24]>,
    tbl8: Vec<u32>,
    max_groups: u32,
    routes: usize,
}

impl std::fmt::Debug for Lpm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lpm")
            .field("routes", &self.routes)
            .field("groups", &self.groups())
            .finish()
    }
}

#[inline]
fn entry(depth: u8, value: u32) -> u32 {
    VALID | (depth as u32) << DEPTH_SHIFT | value
}

#[inline]
fn depth_of(e: u32) -> u8 {
    ((e >> DEPTH_SHIFT) & 0x3f) as u8
}

/// True if an entry may be overwritten by a prefix of length `depth`:
/// it is empty, or it was written by a prefix no longer than this one.
#[inline]
fn yields_to(e: u32, depth: u8) -> bool {
    e & VALID == 0 || depth_of(e) <= depth
}

impl Lpm {
    /// An empty table that may use up to `max_groups` second-level groups
    /// (one per /24 holding a longer prefix; 1 KiB each). The first level
    /// takes 64 MiB of address space, committed as it is written.
    pub fn new(max_groups: u32) -> Lpm {
        Lpm {
            // The vector has exactly TBL24 entries, so the conversion to the
            // array type cannot fail.
            tbl24: vec![0u32; TBL24]
                .into_boxed_slice()
                .try_into()
                .expect("2^24 entries"),
            tbl8: Vec::new(),
            max_groups: max_groups.min(VALUE_MASK + 1),
            routes: 0,
        }
    }

    /// Routes added so far (a prefix added twice counts twice).
    pub fn routes(&self) -> usize {
        self.routes
    }

    /// Second-level groups in use.
    pub fn groups(&self) -> usize {
        self.tbl8.len() / 256
    }

    /// Adds `prefix/len -> next_hop` (host bits of `prefix` are ignored).
    /// The same prefix added again takes the new next hop.
    pub fn insert(&mut self, prefix: u32, len: u8, next_hop: u32) -> Result<(), LpmError> {
        if len > 32 {
            return Err(LpmError::BadLength(len));
        }
        if next_hop > MAX_NEXT_HOP {
            return Err(LpmError::BadNextHop(next_hop));
        }
        let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
        let prefix = prefix & mask;
        let e = entry(len, next_hop);
        if len <= 24 {
            let first = (prefix >> 8) as usize;
            let count = 1usize << (24 - len);
            for i in first..first + count {
                let t = self.tbl24[i];
                if t & GROUP != 0 {
                    let g = (t & VALUE_MASK) as usize * 256;
                    for slot in &mut self.tbl8[g..g + 256] {
                        if yields_to(*slot, len) {
                            *slot = e;
                        }
                    }
                } else if yields_to(t, len) {
                    self.tbl24[i] = e;
                }
            }
        } else {
            let i = (prefix >> 8) as usize;
            let t = self.tbl24[i];
            let g = if t & GROUP != 0 {
                (t & VALUE_MASK) as usize
            } else {
                let g = self.groups();
                if g as u32 >= self.max_groups {
                    return Err(LpmError::TooManyGroups(self.max_groups));
                }
                // The group starts as the /24 entry it replaces.
                self.tbl8.extend(std::iter::repeat(t).take(256));
                self.tbl24[i] = VALID | GROUP | g as u32;
                g
            };
            let first = g * 256 + (prefix & 0xff) as usize;
            let count = 1usize << (32 - len);
            for slot in &mut self.tbl8[first..first + count] {
                if yields_to(*slot, len) {
                    *slot = e;
                }
            }
        }
        self.routes += 1;
        Ok(())
    }

    /// The next hop of the longest prefix covering `addr`, if any.
    #[inline(always)]
    pub fn lookup(&self, addr: u32) -> Option<u32> {
        let mut e = self.tbl24[(addr >> 8) as usize];
        if e & GROUP != 0 {
            e = self.tbl8[(e & VALUE_MASK) as usize * 256 + (addr & 0xff) as usize];
        }
        (e & VALID != 0).then_some(e & VALUE_MASK)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testing::Rng;

    /// Longest match the plain way: one exact-match map per prefix length,
    /// tried from /32 down to /0 (a later rule replaces an earlier one with
    /// the same prefix).
    struct Naive(Vec<std::collections::HashMap<u32, u32>>);
    impl Naive {
        fn new(rules: &[(u32, u8, u32)]) -> Naive {
            let mut by_len = vec![std::collections::HashMap::new(); 33];
            for &(p, len, nh) in rules {
                by_len[len as usize].insert(p & mask(len), nh);
            }
            Naive(by_len)
        }
        fn lookup(&self, addr: u32) -> Option<u32> {
            (0..=32u8)
                .rev()
                .find_map(|len| self.0[len as usize].get(&(addr & mask(len))).copied())
        }
    }

    fn mask(len: u8) -> u32 {
        if len == 0 {
            0
        } else {
            u32::MAX << (32 - len)
        }
    }

    /// Overlapping prefixes: a few base addresses, each with prefixes of
    /// many lengths nested inside one another, plus scattered ones.
    fn overlapping_rules(rng: &mut Rng, n: usize) -> Vec<(u32, u8, u32)> {
        let bases: Vec<u32> = (0..40).map(|_| rng.next_u64() as u32).collect();
        (0..n)
            .map(|i| {
                // A few short prefixes (each covers up to 2^24 entries
                // to write), many medium and long ones.
                let len = match rng.below(50) {
                    0 => rng.below(9) as u8,
                    1..=15 => 9 + rng.below(16) as u8,
                    _ => 20 + rng.below(13) as u8,
                };
                let base = if rng.below(5) == 0 {
                    rng.next_u64() as u32
                } else {
                    // Near a base: same top bits, random low bits.
                    bases[rng.below(bases.len() as u64) as usize] ^ (rng.next_u64() as u32 >> 20)
                };
                (base, len, i as u32 % 1000)
            })
            .collect()
    }

    #[test]
    fn matches_a_naive_matcher_on_100k_random_addresses() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let rules = overlapping_rules(&mut rng, 2000);
        let mut lpm = Lpm::new(4096);
        for &(p, l, nh) in &rules {
            lpm.insert(p, l, nh).unwrap();
        }
        let naive = Naive::new(&rules);
        // Half the probes land near the rules' prefixes, half anywhere.
        for i in 0..100_000u32 {
            let addr = if i % 2 == 0 {
                let (p, _, _) = rules[rng.below(rules.len() as u64) as usize];
                p ^ (rng.next_u64() as u32 >> (rng.below(32) as u32))
            } else {
                rng.next_u64() as u32
            };
            assert_eq!(lpm.lookup(addr), naive.lookup(addr), "addr {addr:#010x}");
        }
    }

    #[test]
    fn insertion_order_does_not_matter() {
        let mut rng = Rng(42);
        let mut rules = overlapping_rules(&mut rng, 500);
        // Distinct (prefix, len) so that "last wins" cannot differ by order.
        rules.sort_by_key(|&(p, l, _)| (l, p & mask(l)));
        rules.dedup_by_key(|r| (r.1, r.0 & mask(r.1)));
        let mut a = Lpm::new(1024);
        let mut b = Lpm::new(1024);
        for &(p, l, nh) in &rules {
            a.insert(p, l, nh).unwrap();
        }
        for &(p, l, nh) in rules.iter().rev() {
            b.insert(p, l, nh).unwrap();
        }
        for _ in 0..50_000 {
            let addr = rng.next_u64() as u32;
            assert_eq!(a.lookup(addr), b.lookup(addr));
        }
        assert_eq!(a.groups(), b.groups());
    }

    #[test]
    fn edges() {
        let mut t = Lpm::new(4);
        assert_eq!(t.lookup(0x0a00_0001), None);
        t.insert(0, 0, 7).unwrap(); // default route
        assert_eq!(t.lookup(0xffff_ffff), Some(7));
        t.insert(0x0a00_0000, 8, 1).unwrap();
        t.insert(0x0a01_0203, 32, 2).unwrap();
        t.insert(0x0a01_0200, 25, 3).unwrap();
        t.insert(0x0a01_0000, 16, 4).unwrap(); // shorter, after: must not win
        assert_eq!(t.lookup(0x0a01_0203), Some(2));
        assert_eq!(t.lookup(0x0a01_0204), Some(3));
        assert_eq!(t.lookup(0x0a01_0280), Some(4));
        assert_eq!(t.lookup(0x0a02_0000), Some(1));
        assert_eq!(t.lookup(0x0b00_0000), Some(7));
        t.insert(0x0a01_0203, 32, 9).unwrap(); // replaced
        assert_eq!(t.lookup(0x0a01_0203), Some(9));
        assert_eq!(t.groups(), 1);
        assert_eq!(t.insert(1, 33, 0), Err(LpmError::BadLength(33)));
        assert_eq!(t.insert(1, 8, 1 << 24), Err(LpmError::BadNextHop(1 << 24)));
        let mut small = Lpm::new(1);
        small.insert(0x0100_0000, 32, 1).unwrap();
        small.insert(0x0100_0001, 32, 1).unwrap(); // same group
        assert_eq!(
            small.insert(0x0200_0000, 25, 1),
            Err(LpmError::TooManyGroups(1))
        );
    }
}
