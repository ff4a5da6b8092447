//! The bypass engine's transmit side: a connection's segments built into
//! frames (one per segment, or TSO runs on a port that cuts them; see
//! [`super::tso`]), its next hop's MAC found or asked for (ARP, neighbour
//! discovery), and the frames sent outside any connection (TIME-WAIT ACKs,
//! SYN cookies).

use std::net::IpAddr;

use smoltcp::wire::{EthernetAddress, TcpRepr};

use super::arp;
use super::conn::Eng;
use super::engine::{own_mut, OwnConn, OwnCore, Peer};
use super::nd;
use super::segment::{build, next_hop, next_hop6};
use super::tso::Coalescer;
use super::{Stack, StackStats, TxPath, EGRESS_PER_CONN};
use crate::buf::PacketBuf;
use crate::port::PortQueue;

/// Builds and queues `o`'s segments on a port that cuts large segments:
/// runs of full-MSS segments leave as one TSO frame (see [`super::tso`]).
/// `to` is the source MAC, the next hop's MAC and the addresses.
#[inline(never)]
fn emit_tso<Q: PortQueue>(
    o: &mut OwnConn,
    own: &mut OwnCore,
    tx: &mut TxPath<Q>,
    stats: &StackStats,
    to: (EthernetAddress, EthernetAddress, Peer),
    now: u64,
) {
    let (src_mac, mac, peer) = to;
    let mut tso = Coalescer::new(true, o.tcb.mss());
    for _ in 0..EGRESS_PER_CONN {
        let mut env = own.env(&stats.tcp, o.cfg, now);
        let Some(seg) = o.tcb.poll_output(&mut env) else {
            break;
        };
        let (slab, tcb) = (&own.slab, &o.tcb);
        let fill = |dst: &mut [u8]| tcb.copy_payload(slab, seg.data_off, dst);
        if tso.extend(&seg, fill) {
            continue;
        }
        if let Some(f) = tso.close(&own.csum, stats) {
            tx.push(f);
        }
        let Some(b) = tx.queue.alloc() else {
            // Lost like a frame dropped on the wire: TCP retransmits.
            stats.tx_no_buffer.inc();
            break;
        };
        let Some(mut b) = tso.start(b, src_mac, mac, peer, &seg, fill) else {
            continue;
        };
        let len = seg.data_len as usize;
        if build(&mut b, src_mac, mac, peer, &seg.repr, len, fill, &own.csum) {
            tx.push(b);
        } else {
            stats.tx_no_buffer.inc();
        }
    }
    if let Some(f) = tso.close(&own.csum, stats) {
        tx.push(f);
    }
}

impl<Q: PortQueue> Stack<Q> {
    /// Sends what a bypass-engine connection has to send; schedules its
    /// next timer.
    pub(super) fn own_egress(&mut self, idx: u32) -> usize {
        let Some(c) = self.slots[idx as usize].conn.as_mut() else {
            return 0;
        };
        c.touched = false;
        self.stats.conn_polls.inc();
        let sent = self.own_send_segments(idx);
        // Waiting for the next hop's MAC, the connection is tried again
        // when an ARP or ND frame arrives or at its own deadline.
        self.own_schedule(idx);
        if sent {
            self.own_after(idx, false);
        }
        1
    }

    /// Builds and queues the connection's segments. False if it waits for
    /// its next hop's MAC.
    pub(super) fn own_send_segments(&mut self, idx: u32) -> bool {
        let now = self.now_us;
        let Some(peer) = self.conn_peer(idx) else {
            return false;
        };
        let Some(o) = self.slots[idx as usize].conn.as_mut().and_then(own_mut) else {
            return false;
        };
        let (o, mac) = match o.mac {
            Some(m) => (o, m),
            None => {
                let Some(m) = self.resolve_next_hop(idx, peer) else {
                    return false;
                };
                let Some(o) = self.slots[idx as usize].conn.as_mut().and_then(own_mut) else {
                    return false;
                };
                (o, m)
            }
        };
        if self.own.tso {
            // Runs of full-MSS segments leave as one TSO frame (the engine
            // still makes, and keeps records of, one segment per MSS).
            let to = (self.mac, mac, peer);
            emit_tso(o, &mut self.own, &mut self.tx, &self.stats, to, now);
        } else {
            // A frame per segment: `build` inlined here, no coalescer to
            // pass through (measured: 190 instructions per transaction).
            for _ in 0..EGRESS_PER_CONN {
                let mut env = self.own.env(&self.stats.tcp, o.cfg, now);
                let Some(seg) = o.tcb.poll_output(&mut env) else {
                    break;
                };
                let Some(mut b) = self.tx.queue.alloc() else {
                    // Lost like a frame dropped on the wire: TCP retransmits.
                    self.stats.tx_no_buffer.inc();
                    break;
                };
                let (slab, tcb) = (&self.own.slab, &o.tcb);
                let fill = |dst: &mut [u8]| tcb.copy_payload(slab, seg.data_off, dst);
                let len = seg.data_len as usize;
                if build(
                    &mut b,
                    self.mac,
                    mac,
                    peer,
                    &seg.repr,
                    len,
                    fill,
                    &self.own.csum,
                ) {
                    self.tx.push(b);
                } else {
                    self.stats.tx_no_buffer.inc();
                }
            }
        }
        self.stats.max_in_flight.raise(o.tcb.in_flight() as u64);
        self.stats.max_cwnd.raise(o.tcb.cwnd() as u64);
        self.stats.max_peer_window.raise(o.tcb.peer_window() as u64);
        true
    }

    /// Finds the MAC of connection `idx`'s next hop towards `peer` (and
    /// keeps it), or asks for it and puts the connection among those
    /// woken when an ARP or ND frame arrives.
    #[cold]
    #[inline(never)]
    fn resolve_next_hop(&mut self, idx: u32, peer: Peer) -> Option<EthernetAddress> {
        let gen = self.slots[idx as usize].gen;
        let (hop, mac) = self.neighbour(peer);
        let c = self.slots[idx as usize].conn.as_mut()?;
        if let Eng::Own(o) = &mut c.eng {
            o.mac = mac;
        }
        if mac.is_none() {
            if !c.arp_wait {
                c.arp_wait = true;
                self.arp_waiters.push((idx, gen));
            }
            self.ask_neighbour(peer, hop);
        }
        mac
    }

    /// Queues one segment built outside a connection (TIME-WAIT ACKs, SYN
    /// cookies).
    pub(super) fn emit_segment(
        &mut self,
        mac: EthernetAddress,
        peer: Peer,
        repr: &TcpRepr,
        len: usize,
        fill: impl FnOnce(&mut [u8]),
    ) {
        let Some(mut b) = self.tx.queue.alloc() else {
            self.stats.tx_no_buffer.inc();
            return;
        };
        if build(&mut b, self.mac, mac, peer, repr, len, fill, &self.own.csum) {
            self.tx.push(b);
        }
    }

    /// The next hop towards `peer` and its MAC, if known and fresh.
    pub(super) fn neighbour(&self, peer: Peer) -> (IpAddr, Option<EthernetAddress>) {
        let now = self.now_us;
        match peer {
            Peer::V4 { remote, .. } => {
                let hop = next_hop(&self.cfg, remote);
                (hop.into(), self.own.arp.lookup(hop, now))
            }
            Peer::V6 { remote, .. } => {
                let hop = next_hop6(&self.cfg, remote);
                (hop.into(), self.own.nd.lookup(hop, now))
            }
        }
    }

    /// Asks for the MAC of `hop` (an ARP request or a neighbour
    /// solicitation from our address of `peer`), unless asked lately.
    fn ask_neighbour(&mut self, peer: Peer, hop: IpAddr) {
        let now = self.now_us;
        let may = match hop {
            IpAddr::V4(h) => self.own.arp.may_ask(h, now),
            IpAddr::V6(h) => self.own.nd.may_ask(h, now),
        };
        if !may {
            return;
        }
        let Some(mut b) = self.tx.queue.alloc() else {
            self.stats.tx_no_buffer.inc();
            return;
        };
        let n = match (hop, peer.local()) {
            (IpAddr::V4(h), _) => arp::request(b.room_mut(), self.mac, self.ip, h),
            (IpAddr::V6(h), IpAddr::V6(src)) => nd::solicit(b.room_mut(), self.mac, src, h),
            (IpAddr::V6(_), IpAddr::V4(_)) => 0,
        };
        if n > 0 {
            b.set_len(n);
            self.stats.arp_requests_tx.inc();
            self.tx.push(b);
        }
    }
}
