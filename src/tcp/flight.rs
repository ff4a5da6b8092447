//! The segments in flight: one record per segment sent and not yet
//! cumulatively acknowledged, in sequence order, with the counts loss
//! recovery asks for on every ACK and every segment sent (RFC 6675's pipe,
//! how many are SACKed, lost, retransmitted) kept as the flags change, so
//! none of them is a walk over the whole flight.

use super::ring::Ring;
use super::seq;

/// A segment in flight.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sent {
    /// First sequence number.
    pub start: u32,
    /// One past the last (a FIN counts one).
    pub end: u32,
    /// When it was last (re)transmitted, µs.
    pub xmit: u64,
    /// Bits of [`sf`].
    pub flags: u8,
}

impl Sent {
    fn len(&self) -> u32 {
        seq::dist(self.start, self.end)
    }
}

/// [`Sent`] flags.
pub mod sf {
    /// Selectively acknowledged.
    pub const SACKED: u8 = 1;
    /// Deemed lost and not retransmitted since.
    pub const LOST: u8 = 2;
    /// Retransmitted at least once.
    pub const RETRANS: u8 = 4;
    /// Carries our FIN (its last sequence number).
    pub const FIN: u8 = 8;
}

/// The records and their counts.
#[derive(Debug, Default)]
pub struct Flight {
    /// One record inline: a request/response connection never has more
    /// in flight, and then touches no heap block (see [`Ring`]).
    segs: Ring<Sent, 1>,
    /// Bytes not SACKed and not lost (RFC 6675's pipe: a lost record that
    /// was retransmitted is no longer LOST, so it counts again).
    pipe: u32,
    sacked: u32,
    lost: u32,
    retrans: u32,
}

impl Flight {
    fn count(&mut self, s: &Sent, add: bool) {
        let (pipe, sacked, lost) = if s.flags & sf::SACKED != 0 {
            (0, 1, 0)
        } else if s.flags & sf::LOST != 0 {
            (0, 0, 1)
        } else {
            (s.len(), 0, 0)
        };
        let retrans = (s.flags & sf::RETRANS != 0) as u32;
        if add {
            self.pipe += pipe;
            self.sacked += sacked;
            self.lost += lost;
            self.retrans += retrans;
        } else {
            self.pipe -= pipe;
            self.sacked -= sacked;
            self.lost -= lost;
            self.retrans -= retrans;
        }
    }

    /// Records a segment sent for the first time (after all the others).
    pub fn push(&mut self, s: Sent) {
        self.count(&s, true);
        self.segs.push_back(s);
    }

    /// Records.
    pub fn len(&self) -> usize {
        self.segs.len()
    }

    /// True with nothing in flight.
    pub fn is_empty(&self) -> bool {
        self.segs.is_empty()
    }

    /// Record `k` (in sequence order).
    pub fn get(&self, k: usize) -> Sent {
        self.segs[k]
    }

    /// The oldest record.
    pub fn front(&self) -> Option<&Sent> {
        self.segs.front()
    }

    /// All records, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &Sent> {
        self.segs.iter()
    }

    /// Removes and returns the oldest record if a cumulative ACK of `ack`
    /// covers all of it; trims it if the ACK covers it in part (and
    /// returns `None`). Call until `None` to apply the ACK.
    #[inline]
    pub fn pop_acked(&mut self, ack: u32) -> Option<Sent> {
        let s = *self.segs.front()?;
        if seq::le(s.end, ack) {
            self.count(&s, false);
            self.segs.pop_front();
            return Some(s);
        }
        if seq::lt(s.start, ack) {
            self.count(&s, false);
            self.segs[0].start = ack;
            let t = self.segs[0];
            self.count(&t, true);
        }
        None
    }

    /// Sets record `k`'s flags.
    pub fn set_flags(&mut self, k: usize, flags: u8) {
        let s = self.segs[k];
        self.count(&s, false);
        self.segs[k].flags = flags;
        let t = self.segs[k];
        self.count(&t, true);
    }

    /// Sets record `k`'s send time.
    pub fn set_xmit(&mut self, k: usize, at: u64) {
        self.segs[k].xmit = at;
    }

    /// The first record starting at or after `at`.
    pub fn first_from(&self, at: u32) -> usize {
        self.segs.partition_point(|s| seq::lt(s.start, at))
    }

    /// The first record marked lost.
    pub fn first_lost(&self) -> Option<usize> {
        if self.lost == 0 {
            return None;
        }
        self.segs.iter().position(|s| s.flags & sf::LOST != 0)
    }

    /// RFC 6675's pipe, in bytes.
    pub fn pipe(&self) -> u32 {
        debug_assert_eq!(
            self.pipe,
            self.segs
                .iter()
                .filter(|s| s.flags & (sf::SACKED | sf::LOST) == 0)
                .map(|s| s.len())
                .sum::<u32>()
        );
        self.pipe
    }

    /// Records SACKed.
    pub fn sacked(&self) -> u32 {
        self.sacked
    }

    /// Records marked lost.
    pub fn lost(&self) -> u32 {
        self.lost
    }

    /// Records retransmitted at least once.
    pub fn retransmitted(&self) -> u32 {
        self.retrans
    }

    /// Cuts every record that carries more than `mss` bytes of data (and
    /// is not SACKed) into records of at most `mss`, each marked lost; the
    /// FIN, if it had one, goes with the last piece. Returns how many
    /// records were cut. This runs when the path's MTU turns out smaller
    /// than the segments sent (see `Tcb::on_path_mtu`): a segment larger
    /// than the new size was dropped on the way, since it was sent with
    /// IPv4's don't-fragment bit set (and IPv6 routers never fragment).
    /// Rare, so the records are rebuilt.
    pub fn resegment(&mut self, mss: u32) -> usize {
        let mss = mss.max(1);
        let data = |s: &Sent| s.len() - (s.flags & sf::FIN != 0) as u32;
        let too_big = |s: &Sent| s.flags & sf::SACKED == 0 && data(s) > mss;
        if !self.segs.iter().any(too_big) {
            return 0;
        }
        let old: Vec<Sent> = self.segs.iter().copied().collect();
        self.clear();
        let mut cut = 0;
        for s in old {
            if !too_big(&s) {
                self.push(s);
                continue;
            }
            cut += 1;
            let fin = s.flags & sf::FIN;
            let (mut at, mut left) = (s.start, data(&s));
            while left > 0 {
                let n = left.min(mss);
                left -= n;
                let last = left == 0;
                let end = at.wrapping_add(n + u32::from(last && fin != 0));
                let flags = (s.flags & !sf::FIN) | sf::LOST | if last { fin } else { 0 };
                self.push(Sent {
                    start: at,
                    end,
                    xmit: s.xmit,
                    flags,
                });
                at = end;
            }
        }
        cut
    }

    /// Forgets every record (the connection went, or is in TIME-WAIT).
    pub fn clear(&mut self) {
        *self = Flight::default();
    }
}
