//! Raw frames against a stack over the in-memory wire: a port queue that
//! lets a test inject frames into the stack's receive path, hold pool
//! buffers, and see every frame the stack sends; frame builders.

use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use bypass::buf::{Burst, PacketBuf, PoolBuf, PoolStats};
use bypass::port::mem::MemQueue;
use bypass::port::PortQueue;
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::*;

/// What the test shares with an [`Inject`] queue.
#[derive(Default)]
pub struct Shared {
    /// Frames handed to the stack before the wire's on the next receive.
    pub inject: VecDeque<Vec<u8>>,
    /// Copies of every frame the stack sent (when `record` is on).
    pub sent: Vec<Vec<u8>>,
    /// Record sent frames.
    pub record: bool,
    /// Pool buffers to take out of circulation (exhaustion tests).
    pub hoard_target: usize,
    /// A router with a next hop of this MTU on the path out: a frame the
    /// stack sends that is larger (IPv4 with don't-fragment set, or IPv6)
    /// is dropped, and an ICMP "fragmentation needed" or ICMPv6 "packet
    /// too big" quoting it comes back on the next receive.
    pub mtu: Option<usize>,
    /// Frames that router dropped.
    pub too_big: usize,
    hoard: Vec<PoolBuf>,
}

/// A port queue over a mem queue, steered by a [`Shared`].
pub struct Inject {
    inner: MemQueue,
    /// Shared with the test.
    pub shared: Arc<Mutex<Shared>>,
}

impl Inject {
    /// Wraps `inner`.
    pub fn new(inner: MemQueue) -> (Inject, Arc<Mutex<Shared>>) {
        let shared = Arc::new(Mutex::new(Shared::default()));
        (
            Inject {
                inner,
                shared: shared.clone(),
            },
            shared,
        )
    }
}

impl bypass::testing::Waiting for Inject {
    fn waiting(&self) -> usize {
        self.inner.rx_waiting()
    }
}

impl PortQueue for Inject {
    type Buf = PoolBuf;

    fn rx_burst(&mut self, burst: &mut Burst<PoolBuf>) -> usize {
        let mut sh = self.shared.lock().unwrap();
        while sh.hoard.len() < sh.hoard_target {
            match self.inner.alloc() {
                Some(b) => sh.hoard.push(b),
                None => break,
            }
        }
        let keep = sh.hoard_target.min(sh.hoard.len());
        sh.hoard.truncate(keep);
        let mut n = 0;
        while !burst.is_full() {
            let Some(f) = sh.inject.pop_front() else {
                break;
            };
            let mut b = self
                .inner
                .alloc()
                .expect("a pool buffer for an injected frame");
            assert!(b.copy_from(&f));
            burst.push(b);
            n += 1;
        }
        drop(sh);
        let n = n + self.inner.rx_burst(burst);
        if n == 0 {
            // A quiet wire delivers a frame the reordering fault held back
            // (it waits for a later frame to overtake it).
            self.inner.release_held();
        }
        n
    }
    fn tx_burst(&mut self, burst: &mut Burst<PoolBuf>) -> usize {
        let mut dropped = 0;
        {
            let mut sh = self.shared.lock().unwrap();
            if sh.record {
                for b in burst.iter() {
                    sh.sent.push(b.data().to_vec());
                }
            }
            if let Some(mtu) = sh.mtu {
                let mut errors = Vec::new();
                burst.retain(|b| {
                    match frag_needed(b.data(), mtu).or_else(|| packet_too_big(b.data(), mtu)) {
                        Some(e) => {
                            errors.push(e);
                            false
                        }
                        None => true,
                    }
                });
                dropped = errors.len();
                sh.too_big += dropped;
                sh.inject.extend(errors);
            }
        }
        dropped + self.inner.tx_burst(burst)
    }
    fn alloc(&mut self) -> Option<PoolBuf> {
        self.inner.alloc()
    }
    fn queue_id(&self) -> u16 {
        self.inner.queue_id()
    }
    fn pool_stats(&self) -> PoolStats {
        self.inner.pool_stats()
    }
    fn flush(&mut self) {
        self.inner.flush()
    }
}

/// The ICMP "fragmentation needed" (RFC 1191) a router with a next hop of
/// `mtu` bytes sends back for `frame`, if it is an IPv4 packet with
/// don't-fragment set that does not fit; it quotes the packet's first 548
/// bytes, as Linux does (576 in all).
pub fn frag_needed(frame: &[u8], mtu: usize) -> Option<Vec<u8>> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EthernetProtocol::Ipv4 {
        return None;
    }
    let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
    if usize::from(ip.total_len()) <= mtu || !ip.dont_frag() {
        return None;
    }
    let quote = &eth.payload()[..usize::from(ip.total_len()).min(548)];
    let mut icmp = vec![3, 4, 0, 0, 0, 0];
    icmp.extend_from_slice(&(mtu as u16).to_be_bytes());
    icmp.extend_from_slice(quote);
    let mut p = Icmpv4Packet::new_unchecked(&mut icmp[..]);
    p.fill_checksum();
    // From the router (here: the packet's destination), to the sender.
    let ipr = Ipv4Repr {
        src_addr: ip.dst_addr(),
        dst_addr: ip.src_addr(),
        next_header: IpProtocol::Icmp,
        payload_len: icmp.len(),
        hop_limit: 64,
    };
    let mut out = vec![0u8; 14 + 20 + icmp.len()];
    let mut e = EthernetFrame::new_unchecked(&mut out[..]);
    e.set_src_addr(eth.dst_addr());
    e.set_dst_addr(eth.src_addr());
    e.set_ethertype(EthernetProtocol::Ipv4);
    let mut o = Ipv4Packet::new_unchecked(e.payload_mut());
    ipr.emit(&mut o, &ChecksumCapabilities::default());
    o.payload_mut().copy_from_slice(&icmp);
    Some(out)
}

/// The ICMPv6 "packet too big" (RFC 8201) a router with a next hop of
/// `mtu` bytes sends back for `frame`, if it is an IPv6 packet that does
/// not fit; it quotes as much of it as fits in 1,280 bytes.
pub fn packet_too_big(frame: &[u8], mtu: usize) -> Option<Vec<u8>> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EthernetProtocol::Ipv6 {
        return None;
    }
    let ip = Ipv6Packet::new_checked(eth.payload()).ok()?;
    if 40 + usize::from(ip.payload_len()) <= mtu {
        return None;
    }
    let quote = &eth.payload()[..(40 + usize::from(ip.payload_len())).min(1280 - 48)];
    let (src, dst) = (ip.dst_addr(), ip.src_addr());
    let mut icmp = vec![2, 0, 0, 0];
    icmp.extend_from_slice(&(mtu as u32).to_be_bytes());
    icmp.extend_from_slice(quote);
    Icmpv6Packet::new_unchecked(&mut icmp[..]).fill_checksum(&src, &dst);
    let ipr = Ipv6Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: IpProtocol::Icmpv6,
        payload_len: icmp.len(),
        hop_limit: 64,
    };
    let mut out = vec![0u8; 14 + 40 + icmp.len()];
    let mut e = EthernetFrame::new_unchecked(&mut out[..]);
    e.set_src_addr(eth.dst_addr());
    e.set_dst_addr(eth.src_addr());
    e.set_ethertype(EthernetProtocol::Ipv6);
    let mut o = Ipv6Packet::new_unchecked(e.payload_mut());
    ipr.emit(&mut o);
    o.payload_mut().copy_from_slice(&icmp);
    Some(out)
}

/// A TCP segment's fields for [`tcp_frame`].
#[derive(Clone, Copy, Debug)]
pub struct Seg<'a> {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: Option<u32>,
    pub control: TcpControl,
    pub payload: &'a [u8],
}

/// Builds an Ethernet/IPv4/TCP frame with correct checksums.
pub fn tcp_frame(s: &Seg<'_>) -> Vec<u8> {
    let tcp = TcpRepr {
        control: s.control,
        ack_number: s.ack.map(|a| TcpSeqNumber(a as i32)),
        window_len: 8192,
        max_seg_size: (s.control == TcpControl::Syn).then_some(1460),
        payload: s.payload,
        ..bypass::testing::syn(s.sport, s.dport, s.seq)
    };
    let ends = bypass::testing::Ends {
        src_mac: s.src_mac,
        dst_mac: s.dst_mac,
        src_ip: s.src,
        dst_ip: s.dst,
    };
    bypass::testing::tcp_vec(&ends, &tcp)
}

/// Builds an Ethernet/IPv4 frame around an L4 payload (`proto`), fixing
/// the UDP/ICMP checksum.
pub fn ip_frame(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    proto: IpProtocol,
    l4: &[u8],
) -> Vec<u8> {
    let ip = Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: proto,
        payload_len: l4.len(),
        hop_limit: 64,
    };
    let mut v = vec![0; 14 + 20 + l4.len()];
    let mut f = EthernetFrame::new_unchecked(&mut v[..]);
    EthernetRepr {
        src_addr: EthernetAddress(src_mac),
        dst_addr: EthernetAddress(dst_mac),
        ethertype: EthernetProtocol::Ipv4,
    }
    .emit(&mut f);
    let mut p = Ipv4Packet::new_unchecked(f.payload_mut());
    ip.emit(&mut p, &ChecksumCapabilities::default());
    let body = p.payload_mut();
    body.copy_from_slice(l4);
    match proto {
        IpProtocol::Udp => {
            let mut u = UdpPacket::new_unchecked(body);
            u.fill_checksum(&src.into(), &dst.into());
        }
        IpProtocol::Icmp => Icmpv4Packet::new_unchecked(body).fill_checksum(),
        _ => {}
    }
    v
}

/// An ARP request from `src` (`src_mac`) for `target`.
pub fn arp_request(src: Ipv4Addr, src_mac: [u8; 6], target: Ipv4Addr) -> Vec<u8> {
    let mut v = vec![0; 64];
    let n = bypass::testing::emit_arp_request(&mut v, src_mac, src, target);
    v.truncate(n);
    v
}

/// A TCP segment seen in a frame: (src port, dst port, seq, ack, syn, ack
/// flag, rst, payload length, destination IP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeenTcp {
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    pub syn: bool,
    pub ackf: bool,
    pub rst: bool,
    pub len: usize,
    pub dst: Ipv4Addr,
}

/// Parses a frame as TCP, if it is.
pub fn seen_tcp(frame: &[u8]) -> Option<SeenTcp> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EthernetProtocol::Ipv4 {
        return None;
    }
    let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
    if ip.next_header() != IpProtocol::Tcp {
        return None;
    }
    let t = TcpPacket::new_checked(ip.payload()).ok()?;
    Some(SeenTcp {
        sport: t.src_port(),
        dport: t.dst_port(),
        seq: t.seq_number().0 as u32,
        ack: t.ack_number().0 as u32,
        syn: t.syn(),
        ackf: t.ack(),
        rst: t.rst(),
        len: t.payload().len(),
        dst: ip.dst_addr(),
    })
}
