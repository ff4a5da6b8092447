//! TIME-WAIT as compact records (bypass engine): when a connection enters
//! TIME-WAIT its block and buffers go, and a record of what is needed to
//! answer stray segments stays for 2 MSL: the sequence numbers, the
//! peer's last timestamp, the next hop's MAC; the addresses are the
//! record's key (one map per family, so an IPv4 record costs what it did
//! before IPv6).
//!
//! A retransmitted FIN is acknowledged again (and restarts the wait), an
//! exact RST ends the record, and a new SYN for the same 4-tuple takes the
//! record over when it is provably new: a later timestamp, or without
//! timestamps a sequence number beyond the old connection's (RFC 6191).
//! Active opens may reuse a record's local port once it is a second old
//! when timestamps were in use (as Linux's `tcp_tw_reuse`), so a client
//! that closes many connections does not run out of ports.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

use smoltcp::wire::{EthernetAddress, TcpControl, TcpRepr, TcpSeqNumber, TcpTimestampRepr};

use super::classify::TcpKey;
use super::engine::{self, Peer};
use super::Stack;
use crate::buf::PacketBuf;
use crate::port::PortQueue;
use crate::tcp::seq;

/// Least age of a record before its port may be reused by an active open.
const REUSE_AFTER_US: u64 = 1_000_000;

#[derive(Debug, Clone, Copy)]
pub(super) struct TwRecord {
    pub snd_nxt: u32,
    pub rcv_nxt: u32,
    pub ts_recent: Option<u32>,
    pub ts_offset: u32,
    pub lport: u16,
    pub rport: u16,
    pub mac: EthernetAddress,
    pub since: u64,
    pub until: u64,
    pub wait_us: u64,
}

/// The records of one family, by connection table key (`K`: `u64` for
/// IPv4, [`super::classify::Key6`] for IPv6).
#[derive(Debug)]
pub(super) struct TimeWaits<K> {
    map: HashMap<K, TwRecord, ahash::RandomState>,
    /// (key, when to look, the record's `since`) in the order records
    /// were made; a record whose wait was extended is found again later.
    /// An entry whose record was removed or replaced (a reused port, an
    /// exact RST, a SYN that took the 4-tuple over) is stale; stale
    /// entries are dropped when they outnumber the records, so the queue
    /// stays within twice the table (a client churning 50,000 connections
    /// a second through 28,000 ports otherwise grew it by 16 B for every
    /// connection for a whole 60 s wait: 0.8 MiB/s in `bench soak`).
    order: VecDeque<(K, u64, u64)>,
}

impl<K> Default for TimeWaits<K> {
    fn default() -> Self {
        TimeWaits {
            map: HashMap::default(),
            order: VecDeque::new(),
        }
    }
}

impl<K: Copy + Eq + Hash> TimeWaits<K> {
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn contains(&self, key: K) -> bool {
        !self.map.is_empty() && self.map.contains_key(&key)
    }

    pub fn insert(&mut self, key: K, r: TwRecord) {
        self.order.push_back((key, r.until, r.since));
        self.map.insert(key, r);
        if self.order.len() > 2 * self.map.len() + 64 {
            let map = &self.map;
            self.order
                .retain(|&(k, _, since)| map.get(&k).is_some_and(|r| r.since == since));
        }
    }

    /// Entries in the expiry queue (live and stale).
    #[cfg(test)]
    fn queued(&self) -> usize {
        self.order.len()
    }

    pub fn remove(&mut self, key: K) -> bool {
        self.map.remove(&key).is_some()
    }

    /// May an active open use this 4-tuple now?
    pub fn reusable(&self, key: K, now: u64) -> bool {
        match self.map.get(&key) {
            None => true,
            Some(r) => r.ts_recent.is_some() && now.saturating_sub(r.since) >= REUSE_AFTER_US,
        }
    }

    pub fn next_expiry(&self) -> Option<u64> {
        self.order.front().map(|&(_, at, _)| at)
    }

    /// Removes the records whose wait is over; returns how many.
    pub fn expire(&mut self, now: u64) -> u64 {
        let mut n = 0;
        while let Some(&(key, at, since)) = self.order.front() {
            if at > now {
                break;
            }
            self.order.pop_front();
            match self.map.get(&key) {
                Some(r) if r.since != since => {}
                Some(r) if r.until <= now => {
                    self.map.remove(&key);
                    n += 1;
                }
                Some(r) => {
                    let until = r.until;
                    self.order.push_back((key, until, since));
                }
                None => {}
            }
            if self.map.is_empty() {
                self.order.clear();
            }
        }
        n
    }
}

impl<Q: PortQueue> Stack<Q> {
    pub(super) fn expire_time_wait(&mut self) {
        if self.own.tw.len() > 0 {
            let n = self.own.tw.expire(self.now_us);
            self.stats.time_wait.sub(n);
        }
        if self.own.tw6.len() > 0 {
            let n = self.own.tw6.expire(self.now_us);
            self.stats.time_wait.sub(n);
        }
    }

    /// True if a TIME-WAIT record holds `key`.
    #[inline]
    pub(super) fn in_time_wait(&self, key: TcpKey) -> bool {
        match key {
            TcpKey::V4(k) => self.own.tw.contains(k),
            TcpKey::V6(k) => self.own.tw6.contains(k),
        }
    }

    /// The record `key` names.
    fn tw_record(&self, key: TcpKey) -> Option<TwRecord> {
        match key {
            TcpKey::V4(k) => self.own.tw.map.get(&k).copied(),
            TcpKey::V6(k) => self.own.tw6.map.get(&k).copied(),
        }
    }

    /// Removes the record `key` names; true if there was one.
    pub(super) fn tw_remove(&mut self, key: TcpKey) -> bool {
        let gone = match key {
            TcpKey::V4(k) => self.own.tw.remove(k),
            TcpKey::V6(k) => self.own.tw6.remove(k),
        };
        if gone {
            self.stats.time_wait.sub(1);
        }
        gone
    }

    /// A segment for a 4-tuple in TIME-WAIT. Returns the frame back if it
    /// is a SYN that takes the record over (it then goes to the listener).
    pub(super) fn time_wait_input(&mut self, key: TcpKey, buf: Q::Buf) -> Option<Q::Buf> {
        let now = self.now_us;
        let (control, seg_seq, ts, plen) = engine::parse(buf.data(), |_, r| {
            (
                r.control,
                r.seq_number.0 as u32,
                r.timestamp,
                r.payload.len(),
            )
        })?;
        let r = self.tw_record(key)?;
        let peer = self.peer_of(key)?;
        match control {
            TcpControl::Rst => {
                if seg_seq == r.rcv_nxt {
                    self.tw_remove(key);
                }
                None
            }
            TcpControl::Syn => {
                let newer = match (r.ts_recent, ts) {
                    (Some(old), Some(t)) => seq::gt(t.tsval, old),
                    _ => seq::gt(seg_seq, r.rcv_nxt),
                };
                if newer {
                    self.tw_remove(key);
                    self.stats.time_wait_reused.inc();
                    return Some(buf);
                }
                self.tw_ack(&r, peer);
                None
            }
            TcpControl::Fin => {
                let rec = match key {
                    TcpKey::V4(k) => self.own.tw.map.get_mut(&k),
                    TcpKey::V6(k) => self.own.tw6.map.get_mut(&k),
                };
                if let Some(rec) = rec {
                    rec.until = now.saturating_add(rec.wait_us);
                }
                self.tw_ack(&r, peer);
                None
            }
            _ => {
                if plen > 0 {
                    self.tw_ack(&r, peer);
                }
                None
            }
        }
    }

    /// Acknowledges from a TIME-WAIT record.
    fn tw_ack(&mut self, r: &TwRecord, peer: Peer) {
        let now = self.now_us;
        let repr = TcpRepr {
            src_port: r.lport,
            dst_port: r.rport,
            control: TcpControl::None,
            seq_number: TcpSeqNumber(r.snd_nxt as i32),
            ack_number: Some(TcpSeqNumber(r.rcv_nxt as i32)),
            window_len: 0,
            window_scale: None,
            max_seg_size: None,
            sack_permitted: false,
            sack_ranges: [None; 3],
            timestamp: r
                .ts_recent
                .map(|t| TcpTimestampRepr::new(((now / 1000) as u32).wrapping_add(r.ts_offset), t)),
            payload: &[],
        };
        self.emit_segment(r.mac, peer, &repr, 0, |_| {});
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(since: u64, wait: u64) -> TwRecord {
        TwRecord {
            snd_nxt: 1,
            rcv_nxt: 1,
            ts_recent: Some(1),
            ts_offset: 0,
            lport: 1,
            rport: 1,
            mac: EthernetAddress([2, 0, 0, 0, 0, 1]),
            since,
            until: since + wait,
            wait_us: wait,
        }
    }

    #[test]
    fn churn_through_few_tuples_keeps_the_expiry_queue_near_the_table() {
        // 1,000 tuples, each replaced every 1 ms of a 60 s wait, 200,000
        // times in all: without dropping stale entries the queue would
        // hold all 200,000.
        let mut tw = TimeWaits::<u64>::default();
        let wait = 60_000_000;
        for i in 0..200_000u64 {
            let key = i % 1000;
            if i % 3 == 0 {
                tw.remove(key);
            }
            tw.insert(key, rec(i * 1000, wait));
            assert!(tw.queued() <= 2 * tw.len() + 65, "{} queued", tw.queued());
        }
        assert_eq!(tw.len(), 1000);
        // Every live record still expires on time, once.
        let last = 199_999 * 1000;
        assert_eq!(tw.expire(last + wait - 1_000_000), 0);
        let gone = tw.expire(last + wait);
        assert_eq!(gone, 1000);
        assert_eq!(tw.len(), 0);
        assert_eq!(tw.next_expiry(), None);
    }

    #[test]
    fn an_extended_wait_is_found_again() {
        let mut tw = TimeWaits::<u64>::default();
        tw.insert(7, rec(0, 100));
        tw.map.get_mut(&7).unwrap().until = 250;
        assert_eq!(tw.expire(100), 0);
        assert_eq!(tw.next_expiry(), Some(250));
        assert_eq!(tw.expire(250), 1);
    }
}
