//! The send times of one connection's requests in flight, oldest first.
//!
//! A request/response connection has one request in flight at a time, so
//! the oldest stamp lives inline and only the ones behind it (pipelining)
//! take a heap block. With thousands of connections a `VecDeque` per
//! connection cost a cache miss per response on a block of its own, next
//! to the one for the connection's state.

use std::collections::VecDeque;

/// A FIFO of `u64` stamps whose head is held inline.
#[derive(Debug, Default)]
pub(super) struct Stamps {
    /// The oldest stamp, when `len > 0`.
    head: u64,
    len: u32,
    /// The stamps after the head, oldest first; allocated on the first
    /// push behind a head and kept for the connection's life. Boxed: a
    /// pointer inline instead of a `VecDeque`'s 32 bytes, in every
    /// connection's state, for a block only pipelined requests use.
    #[allow(clippy::box_collection)]
    rest: Option<Box<VecDeque<u64>>>,
}

impl Stamps {
    /// Adds a stamp at the back.
    pub(super) fn push_back(&mut self, t: u64) {
        if self.len == 0 {
            self.head = t;
        } else {
            self.rest.get_or_insert_with(Default::default).push_back(t);
        }
        self.len += 1;
    }

    /// Takes the oldest stamp.
    pub(super) fn pop_front(&mut self) -> Option<u64> {
        if self.len == 0 {
            return None;
        }
        let t = self.head;
        self.len -= 1;
        if self.len > 0 {
            // `rest` holds exactly len stamps now that the head is gone.
            if let Some(next) = self.rest.as_mut().and_then(|r| r.pop_front()) {
                self.head = next;
            }
        }
        Some(t)
    }

    /// Stamps held.
    pub(super) fn len(&self) -> usize {
        self.len as usize
    }

    /// True if none is held.
    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_at_a_time_never_allocates() {
        let mut s = Stamps::default();
        for t in 0..100 {
            s.push_back(t);
            assert_eq!(s.len(), 1);
            assert_eq!(s.pop_front(), Some(t));
            assert!(s.is_empty());
        }
        assert_eq!(s.pop_front(), None);
        assert!(s.rest.is_none());
    }

    #[test]
    fn keeps_fifo_order_against_a_vecdeque() {
        // A fixed pseudo-random mix of pushes and pops, depth 0 to ~20.
        let (mut s, mut model) = (Stamps::default(), VecDeque::new());
        let mut x = 0x9e37_79b9_u64;
        for t in 0..10_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if x % 5 < 2 || model.len() > 20 {
                assert_eq!(s.pop_front(), model.pop_front());
            } else {
                s.push_back(t);
                model.push_back(t);
            }
            assert_eq!(s.len(), model.len());
            assert_eq!(s.is_empty(), model.is_empty());
        }
        while let Some(t) = model.pop_front() {
            assert_eq!(s.pop_front(), Some(t));
        }
        assert_eq!(s.pop_front(), None);
    }
}
