//! Connection timers: a min-heap of (deadline, connection) with lazy
//! deletion.
//!
//! Each connection remembers the earliest deadline it has in the heap. A
//! new deadline is pushed only when it is earlier than that one; a later
//! deadline waits for the earlier entry to fire (the connection is polled a
//! little early, which smoltcp allows, and rescheduled). An entry whose
//! connection has gone (generation mismatch) or no longer holds that
//! deadline is skipped when popped. So each connection has at most a
//! couple of entries, and a loop iteration touches only due connections:
//! its cost does not depend on how many connections are idle.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// A deadline for connection `idx` of generation `gen`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Entry {
    /// Microseconds.
    pub at: u64,
    /// Connection slot.
    pub idx: u32,
    /// Slot generation when scheduled.
    pub gen: u32,
}

/// The timer heap.
#[derive(Debug, Default)]
pub struct Timers {
    heap: BinaryHeap<Reverse<Entry>>,
}

impl Timers {
    /// A heap with room for `n` entries before it grows.
    pub fn with_capacity(n: usize) -> Timers {
        Timers {
            heap: BinaryHeap::with_capacity(n),
        }
    }

    /// Adds an entry.
    pub fn push(&mut self, e: Entry) {
        self.heap.push(Reverse(e));
    }

    /// Removes and returns the earliest entry due at `now`.
    pub fn pop_due(&mut self, now: u64) -> Option<Entry> {
        match self.heap.peek() {
            Some(Reverse(e)) if e.at <= now => self.heap.pop().map(|Reverse(e)| e),
            _ => None,
        }
    }

    /// The earliest deadline, if any.
    pub fn next(&self) -> Option<u64> {
        self.heap.peek().map(|Reverse(e)| e.at)
    }

    /// Entries in the heap (live and stale).
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// True if there are no entries.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_in_deadline_order_only_when_due() {
        let mut t = Timers::default();
        for (at, idx) in [(30, 1), (10, 2), (20, 3)] {
            t.push(Entry { at, idx, gen: 0 });
        }
        assert_eq!(t.pop_due(5), None);
        assert_eq!(t.pop_due(25).map(|e| e.idx), Some(2));
        assert_eq!(t.pop_due(25).map(|e| e.idx), Some(3));
        assert_eq!(t.pop_due(25), None);
        assert_eq!(t.next(), Some(30));
    }
}
