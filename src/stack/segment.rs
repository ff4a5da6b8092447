//! The bypass engine's frames, both families: a connection's two
//! addresses ([`Peer`]), parsing a classified segment and building one
//! (Ethernet, IPv4 or IPv6, TCP, with `smoltcp::wire`), and where a frame
//! to a peer goes first (its next hop).

use std::net::{IpAddr, SocketAddr};

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, IpAddress, IpProtocol,
    Ipv4Address, Ipv4Packet, Ipv4Repr, Ipv6Address, Ipv6Cidr, Ipv6Packet, Ipv6Repr, TcpPacket,
    TcpRepr,
};

use super::StackConfig;
use crate::buf::PacketBuf;

/// Hop limit (TTL) of the segments we send.
const HOP_LIMIT: u8 = 64;

/// A connection's addresses: ours and the peer's, of one family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Peer {
    V4 {
        local: Ipv4Address,
        remote: Ipv4Address,
    },
    V6 {
        local: Ipv6Address,
        remote: Ipv6Address,
    },
}

impl Peer {
    /// The peer's address.
    #[inline]
    pub fn remote(&self) -> IpAddr {
        match *self {
            Peer::V4 { remote, .. } => remote.into(),
            Peer::V6 { remote, .. } => remote.into(),
        }
    }

    /// Our address.
    #[inline]
    pub fn local(&self) -> IpAddr {
        match *self {
            Peer::V4 { local, .. } => local.into(),
            Peer::V6 { local, .. } => local.into(),
        }
    }

    /// An IPv6 connection.
    #[inline]
    pub fn is_v6(&self) -> bool {
        matches!(self, Peer::V6 { .. })
    }

    /// Both endpoints, ours first.
    #[inline]
    pub fn sockets(&self, lport: u16, rport: u16) -> (SocketAddr, SocketAddr) {
        (
            SocketAddr::new(self.local(), lport),
            SocketAddr::new(self.remote(), rport),
        )
    }
}

/// The part of a received segment the bridge needs besides its `TcpRepr`
/// (its addresses are in its table key).
pub(super) struct Wire {
    /// The next hop's MAC (a passive open answers to it).
    pub src_mac: EthernetAddress,
}

/// Parses a classified TCP frame (headers already checked, IPv6 extension
/// headers removed) and calls `f` with its source MAC and segment.
pub(super) fn parse<R>(frame: &[u8], f: impl FnOnce(&Wire, &TcpRepr) -> R) -> Option<R> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    let l4 = match eth.ethertype() {
        EthernetProtocol::Ipv4 => Ipv4Packet::new_checked(eth.payload()).ok()?.payload(),
        EthernetProtocol::Ipv6 => {
            let ip = Ipv6Packet::new_checked(eth.payload()).ok()?;
            if ip.next_header() != IpProtocol::Tcp {
                return None;
            }
            ip.payload()
        }
        _ => return None,
    };
    let t = TcpPacket::new_checked(l4).ok()?;
    let repr = crate::tcp::wire::parse(&t)?;
    Some(f(
        &Wire {
            src_mac: eth.src_addr(),
        },
        &repr,
    ))
}

/// Builds Ethernet, IP and TCP headers for `repr` plus `len` payload bytes
/// written by `fill`, into `b`, from and to `peer`'s addresses. False if
/// the buffer is too small.
#[allow(clippy::too_many_arguments)]
pub(super) fn build<B: PacketBuf>(
    b: &mut B,
    src_mac: EthernetAddress,
    dst_mac: EthernetAddress,
    peer: Peer,
    repr: &TcpRepr,
    len: usize,
    fill: impl FnOnce(&mut [u8]),
    csum: &ChecksumCapabilities,
) -> bool {
    let tcp_len = repr.header_len() + len;
    let (ethertype, ip_len, src, dst): (_, _, IpAddress, IpAddress) = match peer {
        Peer::V4 { local, remote } => (EthernetProtocol::Ipv4, 20, local.into(), remote.into()),
        Peer::V6 { local, remote } => (EthernetProtocol::Ipv6, 40, local.into(), remote.into()),
    };
    let eth = EthernetRepr {
        src_addr: src_mac,
        dst_addr: dst_mac,
        ethertype,
    };
    let total = eth.buffer_len() + ip_len + tcp_len;
    if b.capacity() < total {
        return false;
    }
    let room = &mut b.room_mut()[..total];
    let mut frame = EthernetFrame::new_unchecked(room);
    eth.emit(&mut frame);
    let ip_bytes = frame.payload_mut();
    let l4 = match peer {
        Peer::V4 { local, remote } => {
            let ip = Ipv4Repr {
                src_addr: local,
                dst_addr: remote,
                next_header: IpProtocol::Tcp,
                payload_len: tcp_len,
                hop_limit: HOP_LIMIT,
            };
            ip.emit(&mut Ipv4Packet::new_unchecked(&mut *ip_bytes), csum);
            &mut ip_bytes[ip.buffer_len()..]
        }
        Peer::V6 { local, remote } => {
            let n = ipv6_header(ip_bytes, local, remote, tcp_len);
            &mut ip_bytes[n..]
        }
    };
    let mut t = TcpPacket::new_unchecked(l4);
    // Header first (the payload is written in place after it), checksum
    // last over both (the pseudo-header of the family).
    crate::tcp::wire::emit(repr, &mut t);
    fill(&mut t.payload_mut()[..len]);
    if csum.tcp.tx() {
        t.fill_checksum(&src, &dst);
    }
    b.set_len(total);
    true
}

/// Writes an IPv6 header for `tcp_len` bytes of TCP into `bytes`; returns
/// its length. (Out of line: it keeps [`build`], inlined into the egress
/// loop, as small as it was before IPv6, so IPv4 pays nothing for it.)
#[inline(never)]
fn ipv6_header(bytes: &mut [u8], local: Ipv6Address, remote: Ipv6Address, tcp_len: usize) -> usize {
    let ip = Ipv6Repr {
        src_addr: local,
        dst_addr: remote,
        next_header: IpProtocol::Tcp,
        payload_len: tcp_len,
        hop_limit: HOP_LIMIT,
    };
    ip.emit(&mut Ipv6Packet::new_unchecked(&mut *bytes));
    ip.buffer_len()
}

/// Where frames to `ip` go first: itself on our subnet, else the gateway.
pub(super) fn next_hop(cfg: &StackConfig, ip: Ipv4Address) -> Ipv4Address {
    let p = cfg.prefix as u32;
    let mask = if p == 0 { 0 } else { u32::MAX << (32 - p) };
    let on_link = u32::from(ip) & mask == u32::from(cfg.ip) & mask;
    match cfg.gateway {
        Some(gw) if !on_link => gw,
        _ => ip,
    }
}

/// Where frames to `ip` go first: itself when it is link-local or in one
/// of our IPv6 prefixes, else the IPv6 gateway (itself without one, as
/// for IPv4).
pub(super) fn next_hop6(cfg: &StackConfig, ip: Ipv6Address) -> Ipv6Address {
    let link_local = ip.segments()[0] & 0xffc0 == 0xfe80;
    let on_link = link_local
        || cfg
            .ip6
            .iter()
            .any(|&(a, p)| Ipv6Cidr::new(a, p).contains_addr(&ip));
    match cfg.gateway6 {
        Some(gw) if !on_link => gw,
        _ => ip,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buf::Pool;
    use smoltcp::wire::{TcpControl, TcpSeqNumber};

    fn pool(frame_size: u32) -> Pool {
        crate::testing::pool(4, frame_size, 0)
    }

    const MAC_A: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 1]);
    const MAC_B: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 2]);

    fn seg(payload: &[u8]) -> TcpRepr<'_> {
        TcpRepr {
            src_port: 80,
            dst_port: 40_000,
            control: TcpControl::Psh,
            seq_number: TcpSeqNumber(1000),
            ack_number: Some(TcpSeqNumber(2000)),
            window_len: 512,
            window_scale: None,
            max_seg_size: None,
            sack_permitted: false,
            sack_ranges: [None; 3],
            timestamp: None,
            payload,
        }
    }

    /// A segment built for either family parses back (checksum verified
    /// over the family's pseudo-header) with its addresses and payload.
    #[test]
    fn a_built_segment_parses_back_in_both_families() {
        let frames = pool(2048);
        let peers = [
            Peer::V4 {
                local: Ipv4Address::new(10, 0, 0, 1),
                remote: Ipv4Address::new(10, 0, 0, 2),
            },
            Peer::V6 {
                local: Ipv6Address::new(0xfd00, 0, 0, 0, 0, 0, 0, 1),
                remote: Ipv6Address::new(0xfd00, 0, 0, 0, 0, 0, 0, 2),
            },
        ];
        for peer in peers {
            let mut b = frames.alloc().unwrap();
            let body = b"hello, both families";
            let ok = build(
                &mut b,
                MAC_A,
                MAC_B,
                peer,
                &seg(&[]),
                body.len(),
                |d| d.copy_from_slice(body),
                &ChecksumCapabilities::default(),
            );
            assert!(ok);
            let ip_len = if peer.is_v6() { 40 } else { 20 };
            assert_eq!(b.data().len(), 14 + ip_len + 20 + body.len());
            let eth = EthernetFrame::new_checked(b.data()).unwrap();
            let l4 = match peer {
                Peer::V4 { .. } => Ipv4Packet::new_checked(eth.payload()).unwrap().payload(),
                Peer::V6 { .. } => Ipv6Packet::new_checked(eth.payload()).unwrap().payload(),
            };
            let t = TcpPacket::new_checked(l4).unwrap();
            let (src, dst): (IpAddress, IpAddress) = (peer.local().into(), peer.remote().into());
            assert!(t.verify_checksum(&src, &dst), "{peer:?}");
            let (from, got) = parse(b.data(), |w, r| (w.src_mac, r.payload.to_vec())).unwrap();
            assert_eq!(from, MAC_A);
            assert_eq!(got, body);
            // A buffer too small for the frame: refused, nothing written.
            let small = pool(128);
            let mut s = small.alloc().unwrap();
            assert!(!build(
                &mut s,
                MAC_A,
                MAC_B,
                peer,
                &seg(&[]),
                100,
                |_| panic!("filled a frame that does not fit"),
                &ChecksumCapabilities::default()
            ));
            assert_eq!(s.len(), 0);
        }
    }

    #[test]
    fn ipv6_next_hops_are_on_link_or_the_gateway() {
        let mut cfg = StackConfig::new(Ipv4Address::new(10, 0, 0, 1), 24)
            .with_addr(Ipv6Address::new(0xfd00, 0, 0, 0, 0, 0, 0, 1).into(), 64);
        let near = Ipv6Address::new(0xfd00, 0, 0, 0, 0, 0, 0, 9);
        let far = Ipv6Address::new(0xfd00, 1, 0, 0, 0, 0, 0, 9);
        let ll = Ipv6Address::new(0xfe80, 0, 0, 0, 0, 0, 0, 9);
        assert_eq!(next_hop6(&cfg, far), far, "no gateway: itself");
        let gw = Ipv6Address::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
        cfg.gateway6 = Some(gw);
        assert_eq!(next_hop6(&cfg, near), near);
        assert_eq!(next_hop6(&cfg, ll), ll);
        assert_eq!(next_hop6(&cfg, far), gw);
    }
}
