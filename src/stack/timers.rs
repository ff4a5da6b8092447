//! Connection timers: a hierarchical timing wheel of (deadline,
//! connection) entries, with lazy deletion through a [`Deadline`] kept in
//! each connection.
//!
//! A connection's [`Deadline`] holds two numbers: `queued`, the earliest
//! deadline it has in the wheel, and `want`, the deadline it wants now.
//! Setting a deadline replaces `want` and adds an entry only when the new
//! one is earlier than `queued`. A deadline that moves later (a
//! retransmission or loss-probe timer re-armed by every ACK) costs one
//! store into the connection's last cache line, which the segment's
//! processing has touched anyway: when the old entry comes up, `want` says
//! it moved and the entry goes back in at the new deadline. An entry whose
//! deadline is no longer `queued` is stale and is dropped. So each
//! connection has at most a couple of entries, and a loop iteration
//! touches only the connections whose entries come up: its cost does not
//! depend on how many are idle.
//!
//! The wheel has six levels of 64 buckets. Level 0's buckets are 1 µs
//! apart, level `l`'s 64^l µs, so six levels cover 2^36 µs (19 hours); a
//! later deadline goes in the top level and comes back around until it
//! is due. A bucket of level `l > 0` is emptied into the levels below
//! when the wheel's time reaches it. Insertion is O(1), finding the next
//! busy bucket is a bit scan per level, and an entry comes out exactly at
//! its deadline, never early.

/// No deadline.
pub const NONE: u64 = u64::MAX;

const LEVELS: usize = 6;
const SLOT_BITS: u32 = 6;
const SLOTS: usize = 1 << SLOT_BITS;
/// The span of the whole wheel, in µs.
const SPAN: u64 = 1 << (SLOT_BITS as u64 * LEVELS as u64);

/// An entry: connection `idx` at `at` µs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// Microseconds.
    pub at: u64,
    /// Connection slot.
    pub idx: u32,
}

/// A connection's deadlines (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    queued: u64,
    want: u64,
}

impl Default for Deadline {
    fn default() -> Deadline {
        Deadline {
            queued: NONE,
            want: NONE,
        }
    }
}

/// What an entry that came up means for its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Came {
    /// Its deadline: the connection's timer is due (and now unset).
    Due,
    /// The deadline moved later: put this entry in instead.
    Moved(Entry),
    /// Replaced by an earlier entry, or already fired: drop it.
    Stale,
}

impl Deadline {
    /// The connection now wants its timer at `at` (µs; [`NONE`] for
    /// never), replacing what it wanted. Returns an entry to insert when
    /// the wheel has none as early.
    #[inline]
    pub fn set(&mut self, idx: u32, at: u64) -> Option<Entry> {
        self.want = at;
        if at < self.queued {
            self.queued = at;
            return Some(Entry { at, idx });
        }
        None
    }

    /// The connection also wants its timer by `at`: the earlier of the
    /// two stands.
    #[inline]
    pub fn lower(&mut self, idx: u32, at: u64) -> Option<Entry> {
        self.set(idx, at.min(self.want))
    }

    /// Entry `e` of this connection came up.
    #[inline]
    pub fn came(&mut self, e: Entry) -> Came {
        if self.queued != e.at {
            Came::Stale
        } else if self.want != e.at {
            // Moved on (never earlier: that would have queued anew).
            self.queued = self.want;
            match self.want {
                NONE => Came::Stale,
                at => Came::Moved(Entry { at, idx: e.idx }),
            }
        } else {
            *self = Deadline::default();
            Came::Due
        }
    }
}

/// The timing wheel.
#[derive(Debug)]
pub struct Timers {
    /// The wheel's time (µs): every entry in a bucket is due at or after
    /// it.
    elapsed: u64,
    /// `LEVELS * SLOTS` buckets, level-major.
    buckets: Vec<Vec<Entry>>,
    /// Per level, which buckets hold entries.
    busy: [u64; LEVELS],
    /// Entries found due, handed out by [`Timers::pop_due`].
    ready: Vec<Entry>,
    /// A bucket being emptied (kept for its capacity).
    scratch: Vec<Entry>,
}

impl Default for Timers {
    fn default() -> Timers {
        Timers {
            elapsed: 0,
            buckets: (0..LEVELS * SLOTS).map(|_| Vec::new()).collect(),
            busy: [0; LEVELS],
            ready: Vec::new(),
            scratch: Vec::new(),
        }
    }
}

impl Timers {
    /// Adds an entry (one due already comes out at the next
    /// [`Timers::pop_due`]).
    pub fn insert(&mut self, e: Entry) {
        let at = e.at.max(self.elapsed);
        let level = level_for(self.elapsed, at);
        let slot = ((at >> (SLOT_BITS as usize * level)) as usize) & (SLOTS - 1);
        self.buckets[level * SLOTS + slot].push(e);
        self.busy[level] |= 1 << slot;
    }

    /// The next entry due at `now`, if any.
    pub fn pop_due(&mut self, now: u64) -> Option<Entry> {
        loop {
            if let Some(e) = self.ready.pop() {
                return Some(e);
            }
            let (level, slot, at) = self.next_bucket()?;
            if at > now {
                return None;
            }
            self.elapsed = at;
            self.drain(level * SLOTS + slot, now);
        }
    }

    /// The earliest time at which [`Timers::pop_due`] may find something
    /// due, if any.
    pub fn next(&self) -> Option<u64> {
        if !self.ready.is_empty() {
            return Some(self.elapsed);
        }
        self.next_bucket().map(|(_, _, at)| at)
    }

    /// Empties bucket `b` (its time has come, `elapsed` is its start):
    /// due entries are ready, the rest move to lower levels.
    fn drain(&mut self, b: usize, now: u64) {
        self.busy[b / SLOTS] &= !(1 << (b % SLOTS));
        std::mem::swap(&mut self.scratch, &mut self.buckets[b]);
        let mut entries = std::mem::take(&mut self.scratch);
        for e in entries.drain(..) {
            if e.at <= now {
                self.ready.push(e);
            } else {
                self.insert(e);
            }
        }
        self.scratch = entries;
    }

    /// The earliest busy bucket: (level, slot, the time it starts).
    fn next_bucket(&self) -> Option<(usize, usize, u64)> {
        let mut best: Option<(usize, usize, u64)> = None;
        for (level, &busy) in self.busy.iter().enumerate() {
            if busy == 0 {
                continue;
            }
            let shift = SLOT_BITS as usize * level;
            let pos = ((self.elapsed >> shift) as usize) & (SLOTS - 1);
            // Level 0 holds entries due now, in bucket `pos`; a higher
            // level only later buckets, so its search starts after `pos`.
            let first = if level == 0 { pos } else { (pos + 1) % SLOTS };
            let slot = (first + busy.rotate_right(first as u32).trailing_zeros() as usize) % SLOTS;
            let range = 1u64 << (shift + SLOT_BITS as usize);
            let start = self.elapsed & !(range - 1);
            let mut at = start + ((slot as u64) << shift);
            if level > 0 && slot <= pos {
                // Only the top level wraps (a deadline past the wheel's
                // span): the bucket's next turn.
                at += range;
            }
            let at = at.max(self.elapsed);
            if best.map_or(true, |(_, _, b)| at < b) {
                best = Some((level, slot, at));
            }
        }
        best
    }
}

/// The level an entry due at `at` goes in when the wheel's time is
/// `elapsed`: the highest 6-bit group in which the two differ.
fn level_for(elapsed: u64, at: u64) -> usize {
    let masked = ((elapsed ^ at) | (SLOTS as u64 - 1)).min(SPAN - 1);
    ((63 - masked.leading_zeros()) / SLOT_BITS) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// The wheel with a [`Deadline`] per connection, driven the way the
    /// stack drives them.
    #[derive(Default)]
    struct Sim {
        wheel: Timers,
        due: Vec<Deadline>,
    }

    impl Sim {
        fn d(&mut self, idx: u32) -> &mut Deadline {
            let i = idx as usize;
            if i >= self.due.len() {
                self.due.resize(i + 1, Deadline::default());
            }
            &mut self.due[i]
        }
        fn set(&mut self, idx: u32, at: u64) {
            if let Some(e) = self.d(idx).set(idx, at) {
                self.wheel.insert(e);
            }
        }
        fn lower(&mut self, idx: u32, at: u64) {
            if let Some(e) = self.d(idx).lower(idx, at) {
                self.wheel.insert(e);
            }
        }
        fn forget(&mut self, idx: u32) {
            *self.d(idx) = Deadline::default();
        }
        fn fire(&mut self, now: u64) -> Vec<u32> {
            let mut v = Vec::new();
            while let Some(e) = self.wheel.pop_due(now) {
                assert!(e.at <= now, "an entry came out early");
                match self.d(e.idx).came(e) {
                    Came::Due => v.push(e.idx),
                    Came::Moved(e) => self.wheel.insert(e),
                    Came::Stale => {}
                }
            }
            v.sort_unstable();
            v
        }
    }

    #[test]
    fn entries_come_out_only_when_due() {
        let mut t = Timers::default();
        for (at, idx) in [(30, 1), (10, 2), (20, 3)] {
            t.insert(Entry { at, idx });
        }
        assert_eq!(t.next(), Some(10));
        assert_eq!(t.pop_due(5), None);
        let mut got = vec![t.pop_due(25).unwrap().idx, t.pop_due(25).unwrap().idx];
        got.sort_unstable();
        assert_eq!(got, vec![2, 3]);
        assert_eq!(t.pop_due(25), None);
        assert_eq!(t.next(), Some(30));
        assert_eq!(t.pop_due(30), Some(Entry { at: 30, idx: 1 }));
        assert_eq!(t.next(), None);
    }

    #[test]
    fn a_deadline_moved_later_fires_once_at_its_new_time() {
        let mut t = Sim::default();
        t.set(7, 1_000);
        t.set(7, 50_000);
        assert!(t.fire(49_999).is_empty());
        assert_eq!(t.fire(50_000), vec![7]);
        assert!(t.fire(u64::MAX - 1).is_empty());
    }

    #[test]
    fn a_deadline_moved_earlier_fires_once() {
        let mut t = Sim::default();
        t.set(3, 90_000);
        t.set(3, 2_000);
        assert_eq!(t.fire(2_000), vec![3]);
        // It fired and set nothing new: the later entry is stale.
        assert!(t.fire(1 << 40).is_empty());
    }

    #[test]
    fn cleared_and_forgotten_deadlines_never_fire() {
        let mut t = Sim::default();
        t.set(1, 500);
        t.set(1, NONE);
        t.set(2, 600);
        t.forget(2);
        assert!(t.fire(1 << 40).is_empty());
        assert_eq!(t.wheel.next(), None);
    }

    #[test]
    fn lower_keeps_the_earlier_deadline() {
        let mut t = Sim::default();
        t.set(4, 800);
        t.lower(4, 5_000);
        assert!(t.fire(799).is_empty());
        assert_eq!(t.fire(800), vec![4]);
        t.lower(4, 5_000);
        assert_eq!(t.fire(5_000), vec![4]);
    }

    #[test]
    fn deadlines_past_the_wheels_span_wait_their_turn() {
        let mut t = Sim::default();
        let far = 3 * SPAN + 12_345;
        t.set(9, far);
        t.set(8, SPAN - 1);
        let mut now = 0;
        let mut fired = Vec::new();
        while let Some(at) = t.wheel.next() {
            assert!(at >= now, "the wheel went back in time");
            now = at;
            for i in t.fire(now) {
                fired.push((i, now));
            }
        }
        assert_eq!(fired, vec![(8, SPAN - 1), (9, far)]);
    }

    /// Against a model: random sets, moves, clears and time steps; every
    /// connection fires exactly once for its wanted deadline, in the pass
    /// whose `now` is the first at or after it.
    #[test]
    fn agrees_with_a_model_over_random_operations() {
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut t = Sim::default();
        let mut want: BTreeMap<u32, u64> = BTreeMap::new();
        let mut now = 0u64;
        for _ in 0..200_000 {
            let r = next();
            let idx = (r % 500) as u32;
            match (r >> 16) % 8 {
                0..=3 => {
                    // Spans from a few µs to hours.
                    let span = 1u64 << ((r >> 24) % 40);
                    let at = now + (r >> 32) % span;
                    t.set(idx, at);
                    want.insert(idx, at);
                }
                4 => {
                    t.set(idx, NONE);
                    want.remove(&idx);
                }
                5 => {
                    t.forget(idx);
                    want.remove(&idx);
                }
                _ => {
                    now += (r >> 24) % (1 << ((r >> 20) % 24));
                    let fired = t.fire(now);
                    let expect: Vec<u32> = want
                        .iter()
                        .filter(|(_, &at)| at <= now)
                        .map(|(&i, _)| i)
                        .collect();
                    assert_eq!(fired, expect, "at {now}");
                    for i in expect {
                        want.remove(&i);
                    }
                    if let (Some(w), Some(n)) = (want.values().min(), t.wheel.next()) {
                        assert!(n <= *w, "next() {n} after a deadline {w}");
                    }
                }
            }
        }
    }
}
