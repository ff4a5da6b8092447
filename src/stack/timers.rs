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
//!
//! A stale entry would otherwise stay until its deadline: a connection
//! that closes leaves its entry behind, and one whose deadline moved
//! earlier leaves the later one. Under churn that is the connection rate
//! times the horizon of the deadlines (the 10 s handshake limit, the
//! 5-minute user timeout, keepalive's hours): `bench soak` grew by
//! 16 MiB a minute. So the wheel also sweeps: once its entries outnumber
//! twice the live connections (each has one entry that counts) by
//! [`SWEEP_SLACK`], every poll checks a few entries from where the last
//! one stopped ([`Timers::sweep`]) and drops the stale ones. A sweep costs
//! no pause, and nothing while there is nothing to sweep.

/// No deadline.
pub const NONE: u64 = u64::MAX;

const LEVELS: usize = 6;
const SLOT_BITS: u32 = 6;
const SLOTS: usize = 1 << SLOT_BITS;
/// The span of the whole wheel, in µs.
const SPAN: u64 = 1 << (SLOT_BITS as u64 * LEVELS as u64);
/// Entries beyond twice the live connections' before the wheel sweeps.
pub const SWEEP_SLACK: usize = 1024;
/// Entries a sweep checks per poll.
pub const SWEEP_BUDGET: usize = 32;
/// Entries' room a bucket keeps when it empties (a bucket that once
/// held thousands gives the rest back: over time every bucket is used).
const KEEP: usize = 64;

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

    /// Whether an entry due at `at` is this connection's queued one (one
    /// that is not is stale, see [`Timers::sweep`]).
    #[inline]
    pub fn holds(&self, at: u64) -> bool {
        self.queued == at
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
    /// Entries in the buckets and `ready`.
    len: usize,
    /// Where the sweep goes on: a bucket, and a place in it.
    sweep_at: (usize, usize),
}

impl Default for Timers {
    fn default() -> Timers {
        Timers {
            elapsed: 0,
            buckets: (0..LEVELS * SLOTS).map(|_| Vec::new()).collect(),
            busy: [0; LEVELS],
            ready: Vec::new(),
            scratch: Vec::new(),
            len: 0,
            sweep_at: (0, 0),
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
        self.len += 1;
    }

    /// Entries in the wheel, stale ones included.
    pub fn len(&self) -> usize {
        self.len
    }

    /// No entry at all.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Checks up to `budget` entries, from where the last sweep stopped,
    /// and drops those `live` says are stale. Entries already due are left
    /// to [`Timers::pop_due`].
    pub fn sweep(&mut self, budget: usize, mut live: impl FnMut(&Entry) -> bool) {
        let (mut b, mut i) = self.sweep_at;
        let mut checked = 0;
        // Each bucket once at most: empty ones cost no budget.
        for _ in 0..=self.buckets.len() {
            let bucket = &mut self.buckets[b];
            while i < bucket.len() && checked < budget {
                checked += 1;
                if live(&bucket[i]) {
                    i += 1;
                } else {
                    bucket.swap_remove(i);
                    self.len -= 1;
                }
            }
            if bucket.is_empty() {
                self.busy[b / SLOTS] &= !(1 << (b % SLOTS));
            }
            if bucket.capacity() > KEEP && bucket.len() < bucket.capacity() / 4 {
                bucket.shrink_to((2 * bucket.len()).max(KEEP));
            }
            if checked == budget {
                break;
            }
            (b, i) = ((b + 1) % self.buckets.len(), 0);
        }
        self.sweep_at = (b, i);
    }

    /// The next entry due at `now`, if any.
    pub fn pop_due(&mut self, now: u64) -> Option<Entry> {
        loop {
            if let Some(e) = self.ready.pop() {
                self.len -= 1;
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
        // The bucket takes the scratch's room (at most KEEP, below).
        std::mem::swap(&mut self.scratch, &mut self.buckets[b]);
        let mut entries = std::mem::take(&mut self.scratch);
        // Out of the count here, back in by `insert` or with `ready`.
        self.len -= entries.len();
        for e in entries.drain(..) {
            if e.at <= now {
                self.ready.push(e);
                self.len += 1;
            } else {
                self.insert(e);
            }
        }
        entries.shrink_to(KEEP);
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
        /// One sweep step, as the stack makes it: an entry is live while
        /// its connection has it queued.
        fn sweep(&mut self, budget: usize) {
            let due = &self.due;
            self.wheel.sweep(budget, |e| {
                due.get(e.idx as usize).is_some_and(|d| d.holds(e.at))
            });
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

    /// Churn: connections that set a far deadline (a handshake's), then an
    /// earlier one, and go. Without the sweep every one leaves its far
    /// entry until it is due; with it the wheel stays near the live
    /// connections' count, its buckets give their room back, and the
    /// live connections still fire.
    #[test]
    fn sweeping_keeps_the_wheel_near_the_live_connections() {
        let mut t = Sim::default();
        let mut now = 0u64;
        let live = 64u32;
        for i in 0..200_000u32 {
            let idx = i % live;
            t.forget(idx);
            t.set(idx, now + 10_000_000);
            t.set(idx, now + 5_000);
            now += 10;
            assert!(t.fire(now).is_empty());
            if t.wheel.len() > 2 * live as usize + SWEEP_SLACK {
                t.sweep(SWEEP_BUDGET);
            }
            assert!(
                t.wheel.len() <= 2 * live as usize + SWEEP_SLACK + 2,
                "{} entries for {live} connections",
                t.wheel.len()
            );
        }
        let room: usize = t.wheel.buckets.iter().map(|b| b.capacity()).sum();
        assert!(
            room <= 4 * (2 * live as usize + SWEEP_SLACK) + LEVELS * SLOTS * KEEP,
            "{room}"
        );
        // Every live connection's deadline still comes, once.
        now += 5_000;
        assert_eq!(t.fire(now), (0..live).collect::<Vec<_>>());
        assert!(t.fire(now + 20_000_000).is_empty());
        assert!(t.wheel.is_empty());
    }

    /// A sweep drops only stale entries: the model test's checks hold with
    /// sweeps between its operations.
    #[test]
    fn sweeps_drop_no_live_entry() {
        model_run(true);
    }

    /// Against a model: random sets, moves, clears and time steps; every
    /// connection fires exactly once for its wanted deadline, in the pass
    /// whose `now` is the first at or after it.
    #[test]
    fn agrees_with_a_model_over_random_operations() {
        model_run(false);
    }

    fn model_run(sweeping: bool) {
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
                _ if sweeping && r % 3 == 0 => t.sweep((r >> 8) as usize % 8 + 1),
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
