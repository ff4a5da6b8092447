//! smoltcp's `phy::Device` over one port queue, one frame at a time.
//!
//! The stack routes each received frame itself (see [`super::classify`]),
//! then stages it here and calls `poll_ingress_single` with that frame's
//! own connection set: `receive` hands out exactly the staged frame. The
//! receive token reads the frame in place in its buffer (zero copy); the
//! transmit token writes straight into a buffer from the queue's pool and
//! appends it to the outgoing burst, flushing the burst when it is full.
//! A token dropped without `consume` gives nothing back because it holds
//! nothing: the buffer is taken only inside `consume`.

use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::time::Instant as SmolInstant;

use crate::buf::{Burst, PacketBuf};
use std::collections::VecDeque;
use std::sync::Arc;

use super::StackStats;
use crate::port::PortQueue;

/// Transmit-side state shared by the tokens: the queue, the pending burst,
/// and counters.
pub struct TxPath<Q: PortQueue> {
    /// Frames waiting for `tx_burst`.
    pub burst: Burst<Q::Buf>,
    /// Where the transmit counters go.
    pub stats: Arc<StackStats>,
    /// Frames the port refused, sent first at the next flush (bounded by
    /// [`TX_BACKLOG`]; beyond it frames are dropped and counted).
    backlog: VecDeque<Q::Buf>,
    /// Frames built so far (for the stack's per-connection accounting).
    pub built: u64,
    /// Neighbour requests (ARP requests, IPv6 neighbour solicitations)
    /// built so far.
    pub arp_built: u64,
    /// The sequence numbers of the last TCP segment built, if it carried
    /// an ACK: (acknowledgement number, end of its sequence space). The
    /// stack reads it after polling one connection to learn what that
    /// connection last acknowledged (for RFC 5961 RST checks).
    pub last_tcp: Option<(u32, u32)>,
    scratch: Vec<u8>,
    /// The port queue. Last, so that it (and its pool handle) drops after
    /// the frames held above have gone back to the pool.
    pub queue: Q,
}

/// Most frames held back while the port's transmit queue is full. Holding
/// them, rather than dropping, spares TCP a retransmission timeout (1 s
/// at least with smoltcp) when a burst meets a briefly full queue.
pub const TX_BACKLOG: usize = 4096;

impl<Q: PortQueue> TxPath<Q> {
    /// Wraps a queue.
    pub fn new(queue: Q, mtu: usize, stats: Arc<StackStats>) -> Self {
        TxPath {
            queue,
            burst: Burst::new(),
            stats,
            backlog: VecDeque::new(),
            built: 0,
            arp_built: 0,
            last_tcp: None,
            scratch: vec![0; mtu + 64],
        }
    }

    /// Sends `burst` once (and once more if the port refused some: drivers
    /// free descriptors inside `tx_burst`); counts what went.
    fn send(&mut self, burst: &mut Burst<Q::Buf>) {
        let count = burst.len();
        let before: usize = burst.iter().map(|b| b.len()).sum();
        self.queue.tx_burst(burst);
        if !burst.is_empty() {
            self.queue.tx_burst(burst);
        }
        let after: usize = burst.iter().map(|b| b.len()).sum();
        self.stats.tx_packets.add((count - burst.len()) as u64);
        self.stats.tx_bytes.add((before - after) as u64);
    }

    /// Holds refused frames for the next flush, in order; beyond
    /// [`TX_BACKLOG`] they are dropped and counted (TCP retransmits).
    fn hold(&mut self, frames: Burst<Q::Buf>) {
        for b in frames {
            if self.backlog.len() < TX_BACKLOG {
                self.stats.tx_held.inc();
                self.backlog.push_back(b);
            } else {
                self.stats.tx_full.inc();
            }
        }
    }

    /// Sends what was held back, then the pending burst. What the port
    /// refuses waits (bounded) for the next flush.
    pub fn flush(&mut self) {
        while !self.backlog.is_empty() {
            let mut b: Burst<Q::Buf> = Burst::new();
            while !b.is_full() {
                match self.backlog.pop_front() {
                    Some(x) => b.push(x),
                    None => break,
                }
            }
            self.send(&mut b);
            if !b.is_empty() {
                // Still full: back to the front, in order; the new burst
                // queues behind them.
                for x in b.into_iter().rev() {
                    self.backlog.push_front(x);
                }
                let burst = std::mem::take(&mut self.burst);
                self.hold(burst);
                self.queue.flush();
                return;
            }
        }
        if !self.burst.is_empty() {
            let mut burst = std::mem::take(&mut self.burst);
            self.send(&mut burst);
            self.hold(burst);
        }
        self.queue.flush();
    }

    /// Appends a built frame to the outgoing burst (flushing a full one).
    #[inline]
    pub fn push(&mut self, buf: Q::Buf) {
        self.built += 1;
        if self.burst.is_full() {
            self.flush();
        }
        self.burst.push(buf);
    }

    /// Frames held back because the port was full.
    pub fn held(&self) -> usize {
        self.backlog.len()
    }
}

/// True for an ARP request or an IPv6 neighbour solicitation: a question
/// for a neighbour (checked on every frame sent that is not TCP).
#[inline]
fn is_neighbour_request(frame: &[u8]) -> bool {
    use smoltcp::wire::{
        ArpOperation, ArpPacket, EthernetFrame, EthernetProtocol, Icmpv6Message, Icmpv6Packet,
        IpProtocol, Ipv6Packet,
    };
    match EthernetFrame::new_checked(frame) {
        Ok(eth) if eth.ethertype() == EthernetProtocol::Arp => {
            ArpPacket::new_checked(eth.payload())
                .is_ok_and(|a| a.operation() == ArpOperation::Request)
        }
        Ok(eth) if eth.ethertype() == EthernetProtocol::Ipv6 => {
            Ipv6Packet::new_checked(eth.payload()).is_ok_and(|ip| {
                ip.next_header() == IpProtocol::Icmpv6
                    && Icmpv6Packet::new_checked(ip.payload())
                        .is_ok_and(|i| i.msg_type() == Icmpv6Message::NeighborSolicit)
            })
        }
        _ => false,
    }
}

/// The device handed to smoltcp for one call.
pub struct OneFrame<'a, Q: PortQueue> {
    /// The frame to hand out on the next `receive`, if any.
    pub rx: Option<Q::Buf>,
    /// Where transmitted frames go.
    pub tx: &'a mut TxPath<Q>,
    /// Capabilities reported to smoltcp.
    pub caps: &'a DeviceCapabilities,
}

/// Receive token: the frame, read in place.
pub struct RxTok<B: PacketBuf>(B);

impl<B: PacketBuf> phy::RxToken for RxTok<B> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.0.data())
    }
}

/// Transmit token: writes into a pool buffer appended to the burst.
pub struct TxTok<'a, Q: PortQueue>(&'a mut TxPath<Q>);

impl<Q: PortQueue> phy::TxToken for TxTok<'_, Q> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let tx = self.0;
        let Some(mut buf) = tx.queue.alloc().filter(|b| b.capacity() >= len) else {
            // No buffer (or a frame larger than one): smoltcp still needs
            // somewhere to write; the frame is dropped and counted, and
            // TCP will retransmit.
            tx.stats.tx_no_buffer.inc();
            if tx.scratch.len() < len {
                tx.scratch.resize(len, 0);
            }
            return f(&mut tx.scratch[..len]);
        };
        let r = f(&mut buf.room_mut()[..len]);
        buf.set_len(len);
        if let Some(t) = tcp_seqs(buf.data()) {
            tx.last_tcp = Some(t);
        } else if is_neighbour_request(buf.data()) {
            tx.stats.arp_requests_tx.inc();
            tx.arp_built += 1;
        }
        tx.push(buf);
        r
    }
}

impl<Q: PortQueue> phy::Device for OneFrame<'_, Q> {
    type RxToken<'b>
        = RxTok<Q::Buf>
    where
        Self: 'b;
    type TxToken<'b>
        = TxTok<'b, Q>
    where
        Self: 'b;

    fn receive(&mut self, _ts: SmolInstant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let b = self.rx.take()?;
        Some((RxTok(b), TxTok(self.tx)))
    }

    fn transmit(&mut self, _ts: SmolInstant) -> Option<Self::TxToken<'_>> {
        Some(TxTok(self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        self.caps.clone()
    }
}

/// (ack, seq + length) of a TCP segment with ACK set that we built.
#[inline]
fn tcp_seqs(frame: &[u8]) -> Option<(u32, u32)> {
    use smoltcp::wire::{
        EthernetFrame, EthernetProtocol, IpProtocol, Ipv4Packet, Ipv6Packet, TcpPacket,
    };
    let eth = EthernetFrame::new_checked(frame).ok()?;
    let payload = match eth.ethertype() {
        EthernetProtocol::Ipv4 => {
            let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
            (ip.next_header() == IpProtocol::Tcp).then(|| ip.payload())?
        }
        EthernetProtocol::Ipv6 => {
            // We send no extension headers.
            let ip = Ipv6Packet::new_checked(eth.payload()).ok()?;
            (ip.next_header() == IpProtocol::Tcp).then(|| ip.payload())?
        }
        _ => return None,
    };
    let t = TcpPacket::new_checked(payload).ok()?;
    if !t.ack() || t.rst() {
        return None;
    }
    let len = t.payload().len() as u32 + t.syn() as u32 + t.fin() as u32;
    Some((
        t.ack_number().0 as u32,
        (t.seq_number().0 as u32).wrapping_add(len),
    ))
}

/// Capabilities for a port: Ethernet, its MTU, one frame per burst as far
/// as smoltcp knows. Checksums: computed on transmit unless the device does
/// it; never verified on receive by smoltcp, because the classifier has
/// verified them already (and counted the bad ones) or the device did.
pub fn capabilities(mtu: u16, tx_checksum_offload: bool) -> DeviceCapabilities {
    use smoltcp::phy::Checksum;
    let mut caps = DeviceCapabilities::default();
    caps.medium = Medium::Ethernet;
    caps.max_transmission_unit = mtu as usize + 14;
    caps.max_burst_size = Some(crate::buf::BURST);
    let c = if tx_checksum_offload {
        Checksum::None
    } else {
        Checksum::Tx
    };
    caps.checksum.ipv4 = c;
    caps.checksum.tcp = c;
    caps.checksum.udp = c;
    caps.checksum.icmpv4 = c;
    caps.checksum.icmpv6 = c;
    caps
}
