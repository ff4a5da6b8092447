//! Routing a received frame before smoltcp sees it.
//!
//! Every frame is parsed once with `smoltcp::wire` checked views: Ethernet,
//! then ARP, IPv4 or IPv6 (with its extension headers), then TCP/UDP/ICMP
//! headers. The result says where the frame goes (the connection table key
//! for TCP, the port for UDP, the interface itself for ARP, ICMP and
//! neighbour discovery) or why it is dropped. Checksums are verified here,
//! once, unless the device did it (for the whole port, or for this frame:
//! [`Verify::for_frame`] reads the buffer's receive checksum status);
//! smoltcp is then told not to verify them again.
//!
//! IPv6 extension headers: hop-by-hop options (first only), routing
//! headers with no segments left and destination options are walked past,
//! their options checked (an unknown option whose type says "discard" drops
//! the packet); a routing header with segments left (we are not a router),
//! more than [`MAX_EXT_HEADERS`] headers, or a chain that runs past the
//! payload is dropped and counted. A fragment header is counted as a
//! fragment and dropped (no reassembly). smoltcp itself understands only a
//! leading hop-by-hop header, so the stack removes a checked chain with
//! [`strip_ext_headers`] before handing the frame on. Nothing here panics
//! on any input.

use std::net::IpAddr;

use crate::buf::{Checksum, RxChecksum};
use smoltcp::wire::{
    ArpPacket, EthernetAddress, EthernetFrame, EthernetProtocol, Icmpv4Packet, Icmpv6Packet,
    IpProtocol, Ipv4Address, Ipv4Packet, Ipv6Address, Ipv6ExtHeader, Ipv6OptionFailureType,
    Ipv6OptionRepr, Ipv6OptionsIterator, Ipv6Packet, Ipv6RoutingHeader, TcpPacket, UdpPacket,
};

pub use super::key::{key_remote, tcp_key, tcp_key6, Key6, TcpKey};

/// Most IPv6 extension headers walked before the packet is refused.
pub const MAX_EXT_HEADERS: usize = 8;

/// Where a frame goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// ARP: to the interface (neighbour cache, replies).
    Arp,
    /// ICMP or ICMPv6 other than neighbour discovery: to the interface
    /// (echo replies).
    Icmp,
    /// ICMPv6 neighbour discovery (solicitations, advertisements, router
    /// messages): to the interface, and a neighbour may have been learnt.
    Nd,
    /// TCP segment.
    Tcp {
        /// Connection table key (see [`TcpKey`]).
        key: TcpKey,
        /// Local (destination) port.
        dst_port: u16,
        /// SYN set and ACK clear: a connection request.
        syn: bool,
        /// RST set.
        rst: bool,
    },
    /// UDP datagram to this local port.
    Udp {
        /// Local (destination) port.
        dst_port: u16,
    },
}

/// Why a frame is dropped before reaching the stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// Too short, bad lengths, bad header fields or options.
    Malformed,
    /// IPv4, TCP, UDP or ICMP checksum wrong.
    BadChecksum,
    /// An IPv4 fragment or an IPv6 fragment header (reassembly is not
    /// supported).
    Fragment,
    /// For another MAC or IP address.
    NotForUs,
    /// A protocol the stack does not speak (other ethertypes/IP protocols),
    /// or IPv6 it must not process (a routing header with segments left,
    /// an option whose type says discard, no next header).
    Unsupported,
    /// An IPv6 extension-header chain that is malformed or too long.
    BadExtHeader,
}

/// The addresses a stack answers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ours {
    /// Our MAC address.
    pub mac: EthernetAddress,
    /// Our IPv4 address (`None`: IPv4 frames are not for us).
    pub v4: Option<Ipv4Address>,
    /// Our IPv6 unicast addresses, the link-local one included.
    pub v6: Vec<Ipv6Address>,
}

impl Ours {
    /// IPv4 only: `mac` and `ip`.
    pub fn v4(mac: EthernetAddress, ip: Ipv4Address) -> Ours {
        Ours {
            mac,
            v4: Some(ip),
            v6: Vec::new(),
        }
    }

    /// True if `a` is one of our IPv6 unicast addresses.
    #[inline]
    pub fn has_v6(&self, a: Ipv6Address) -> bool {
        self.v6.contains(&a)
    }

    /// The index of our IPv6 unicast address `a` in [`Ours::v6`].
    #[inline]
    pub fn index6(&self, a: Ipv6Address) -> Option<u8> {
        self.v6.iter().position(|u| *u == a).map(|i| i as u8)
    }

    /// The key of a connection from our `local` address and port to the
    /// peer at `remote`; `None` if `local` is not one of our IPv6
    /// addresses (an IPv4 key names no local address: there is one).
    #[inline]
    pub fn key(
        &self,
        local: IpAddr,
        remote: IpAddr,
        remote_port: u16,
        local_port: u16,
    ) -> Option<TcpKey> {
        match (local, remote) {
            (_, IpAddr::V4(r)) => Some(TcpKey::V4(tcp_key(r, remote_port, local_port))),
            (IpAddr::V6(l), IpAddr::V6(r)) => {
                let i = self.index6(l)?;
                Some(TcpKey::V6(tcp_key6(i, r, remote_port, local_port)))
            }
            (IpAddr::V4(_), IpAddr::V6(_)) => None,
        }
    }

    /// True if `a` is an IPv6 multicast group we are in: all nodes, or the
    /// solicited-node group of one of our addresses.
    fn in_group6(&self, a: Ipv6Address) -> bool {
        let o = a.octets();
        if a == Ipv6Address::new(0xff02, 0, 0, 0, 0, 0, 0, 1) {
            return true;
        }
        let solicited = o[..13] == [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff];
        solicited && self.v6.iter().any(|u| u.octets()[13..] == o[13..])
    }
}

/// What to do about one checksum of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// Verify it in software.
    Software,
    /// The device checked it and it is right (or nobody asked).
    Skip,
    /// The device checked it and it is wrong.
    Reject,
}

impl Check {
    fn new(device: Checksum, verify: bool) -> Check {
        match device {
            Checksum::Good => Check::Skip,
            Checksum::Bad => Check::Reject,
            Checksum::Unknown if verify => Check::Software,
            Checksum::Unknown => Check::Skip,
        }
    }
}

/// Which checksums of one frame to verify in software.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verify {
    l3: Check,
    l4: Check,
    icmp: bool,
}

impl Verify {
    /// Every checksum (`true`) or none (`false`).
    pub fn all(verify: bool) -> Verify {
        Verify::for_frame(RxChecksum::UNKNOWN, verify)
    }

    /// For a frame whose device reported `rx`: what it found good is not
    /// checked again, what it found bad is rejected, and the rest is
    /// verified if `verify` (the port does not check checksums itself).
    pub fn for_frame(rx: RxChecksum, verify: bool) -> Verify {
        Verify {
            l3: Check::new(rx.l3, verify),
            l4: Check::new(rx.l4, verify),
            icmp: verify,
        }
    }
}

/// Classifies one frame addressed to `ours`, verifying every checksum if
/// `verify`.
pub fn classify(frame: &[u8], ours: &Ours, verify: bool) -> Result<Class, Reject> {
    classify_with(frame, ours, Verify::all(verify))
}

/// Classifies one frame addressed to `ours`, verifying the checksums
/// `verify` says.
pub fn classify_with(frame: &[u8], ours: &Ours, verify: Verify) -> Result<Class, Reject> {
    let eth = EthernetFrame::new_checked(frame).map_err(|_| Reject::Malformed)?;
    let dst = eth.dst_addr();
    let to_us = dst == ours.mac || dst.is_broadcast();
    match eth.ethertype() {
        EthernetProtocol::Arp if to_us => {
            ArpPacket::new_checked(eth.payload()).map_err(|_| Reject::Malformed)?;
            Ok(Class::Arp)
        }
        EthernetProtocol::Ipv4 if to_us => match ours.v4 {
            Some(ip) => ipv4(eth.payload(), ip, verify),
            None => Err(Reject::NotForUs),
        },
        // Neighbour solicitations come to a multicast MAC (33:33:...).
        EthernetProtocol::Ipv6 if to_us || dst.is_multicast() => ipv6(eth.payload(), ours, verify),
        _ if !to_us => Err(Reject::NotForUs),
        _ => Err(Reject::Unsupported),
    }
}

/// Applies `check` to a checksum that `ok` verifies in software.
#[inline]
fn checked(check: Check, ok: impl FnOnce() -> bool) -> Result<(), Reject> {
    match check {
        Check::Skip => Ok(()),
        Check::Reject => Err(Reject::BadChecksum),
        Check::Software if ok() => Ok(()),
        Check::Software => Err(Reject::BadChecksum),
    }
}

/// A TCP segment from `src` to `dst`, either family; `key` makes its
/// table key from its ports (the peer's, ours).
fn tcp(
    payload: &[u8],
    src: IpAddr,
    dst: IpAddr,
    verify: Verify,
    key: impl FnOnce(u16, u16) -> TcpKey,
) -> Result<Class, Reject> {
    let tcp = TcpPacket::new_checked(payload).map_err(|_| Reject::Malformed)?;
    checked(verify.l4, || tcp.verify_checksum(&src.into(), &dst.into()))?;
    // Ports, flags and options: refuse here what either engine would
    // refuse, so that a garbage header is counted rather than dropped
    // silently inside smoltcp (the same rules as its parser, with a fast
    // path for the usual timestamp layout).
    if !crate::tcp::wire::acceptable(&tcp) {
        return Err(Reject::Malformed);
    }
    Ok(Class::Tcp {
        key: key(tcp.src_port(), tcp.dst_port()),
        dst_port: tcp.dst_port(),
        syn: tcp.syn() && !tcp.ack(),
        rst: tcp.rst(),
    })
}

/// A UDP datagram from `src` to `dst`, either family (over IPv4 a zero
/// checksum means none; over IPv6 it is not allowed, RFC 8200 8.1).
fn udp(payload: &[u8], src: IpAddr, dst: IpAddr, verify: Verify) -> Result<Class, Reject> {
    let udp = UdpPacket::new_checked(payload).map_err(|_| Reject::Malformed)?;
    checked(verify.l4, || match udp.checksum() {
        0 => src.is_ipv4(),
        _ => udp.verify_checksum(&src.into(), &dst.into()),
    })?;
    Ok(Class::Udp {
        dst_port: udp.dst_port(),
    })
}

fn ipv4(bytes: &[u8], ours: Ipv4Address, verify: Verify) -> Result<Class, Reject> {
    let ip = Ipv4Packet::new_checked(bytes).map_err(|_| Reject::Malformed)?;
    if ip.version() != 4 {
        return Err(Reject::Malformed);
    }
    checked(verify.l3, || ip.verify_checksum())?;
    if ip.dst_addr() != ours {
        return Err(Reject::NotForUs);
    }
    if ip.more_frags() || ip.frag_offset() != 0 {
        return Err(Reject::Fragment);
    }
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    if src.is_broadcast() || src.is_multicast() || src.is_unspecified() {
        return Err(Reject::Malformed);
    }
    let payload = ip.payload();
    match ip.next_header() {
        IpProtocol::Tcp => tcp(payload, src.into(), dst.into(), verify, |sp, dp| {
            TcpKey::V4(tcp_key(src, sp, dp))
        }),
        IpProtocol::Udp => udp(payload, src.into(), dst.into(), verify),
        IpProtocol::Icmp => {
            let icmp = Icmpv4Packet::new_checked(payload).map_err(|_| Reject::Malformed)?;
            if verify.icmp && !icmp.verify_checksum() {
                return Err(Reject::BadChecksum);
            }
            Ok(Class::Icmp)
        }
        _ => Err(Reject::Unsupported),
    }
}

fn ipv6(bytes: &[u8], ours: &Ours, verify: Verify) -> Result<Class, Reject> {
    let ip = Ipv6Packet::new_checked(bytes).map_err(|_| Reject::Malformed)?;
    if ip.version() != 6 {
        return Err(Reject::Malformed);
    }
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    let local = ours.index6(dst);
    let unicast = local.is_some();
    let group = dst.is_multicast() && ours.in_group6(dst);
    if !(unicast || group) {
        return Err(Reject::NotForUs);
    }
    if src.is_multicast() {
        return Err(Reject::Malformed);
    }
    let (next, payload, _) = walk_ext(ip.next_header(), ip.payload())?;
    match next {
        IpProtocol::Icmpv6 => {
            let icmp = Icmpv6Packet::new_checked(payload).map_err(|_| Reject::Malformed)?;
            if verify.icmp && !icmp.verify_checksum(&src, &dst) {
                return Err(Reject::BadChecksum);
            }
            if icmp.msg_type().is_ndisc() {
                // The unspecified source is how duplicate address detection
                // asks; smoltcp checks the rest (hop limit 255, options).
                return Ok(Class::Nd);
            }
            if src.is_unspecified() {
                return Err(Reject::Malformed);
            }
            Ok(Class::Icmp)
        }
        // Only ICMPv6 may come from nowhere or go to a group.
        _ if src.is_unspecified() || !unicast => Err(Reject::Malformed),
        IpProtocol::Tcp => tcp(payload, src.into(), dst.into(), verify, |sp, dp| {
            TcpKey::V6(tcp_key6(local.unwrap_or(0), src, sp, dp))
        }),
        IpProtocol::Udp => udp(payload, src.into(), dst.into(), verify),
        _ => Err(Reject::Unsupported),
    }
}

/// Walks the extension headers from `next` over `rest`: returns the upper
/// protocol, its bytes and how many header bytes were walked past.
pub(super) fn walk_ext(
    mut next: IpProtocol,
    mut rest: &[u8],
) -> Result<(IpProtocol, &[u8], usize), Reject> {
    let mut walked = 0;
    for i in 0..=MAX_EXT_HEADERS {
        match next {
            IpProtocol::HopByHop if i > 0 => return Err(Reject::BadExtHeader),
            IpProtocol::HopByHop | IpProtocol::Ipv6Opts | IpProtocol::Ipv6Route => {}
            IpProtocol::Ipv6Frag => return Err(Reject::Fragment),
            IpProtocol::Ipv6NoNxt => return Err(Reject::Unsupported),
            _ => return Ok((next, rest, walked)),
        }
        if i == MAX_EXT_HEADERS {
            break;
        }
        let h = Ipv6ExtHeader::new_checked(rest).map_err(|_| Reject::BadExtHeader)?;
        let len = (h.header_len() as usize + 1) * 8;
        let data = h.payload();
        if next == IpProtocol::Ipv6Route {
            let r = Ipv6RoutingHeader::new_checked(data).map_err(|_| Reject::BadExtHeader)?;
            if r.segments_left() != 0 {
                // It asks us to forward the packet: we are not a router.
                return Err(Reject::Unsupported);
            }
        } else {
            options(data)?;
        }
        next = h.next_header();
        // `new_checked` made sure the whole header is there.
        rest = rest.get(len..).ok_or(Reject::BadExtHeader)?;
        walked += len;
    }
    Err(Reject::BadExtHeader)
}

/// True for the next-header values [`walk_ext`] walks past or refuses.
#[inline]
fn is_ext_header(p: IpProtocol) -> bool {
    matches!(
        p,
        IpProtocol::HopByHop
            | IpProtocol::Ipv6Opts
            | IpProtocol::Ipv6Route
            | IpProtocol::Ipv6Frag
            | IpProtocol::Ipv6NoNxt
    )
}

/// The upper-layer protocol of an IPv6 packet and its bytes, past the
/// extension headers; `None` if the chain is refused (see [`classify`]).
pub(crate) fn upper_layer<'a>(ip: &Ipv6Packet<&'a [u8]>) -> Option<(IpProtocol, &'a [u8])> {
    walk_ext(ip.next_header(), ip.payload())
        .ok()
        .map(|(next, l4, _)| (next, l4))
}

/// Checks the options of a hop-by-hop or destination options header: an
/// option we do not know whose type says "discard" drops the packet.
fn options(data: &[u8]) -> Result<(), Reject> {
    for opt in Ipv6OptionsIterator::new(data) {
        match opt.map_err(|_| Reject::BadExtHeader)? {
            Ipv6OptionRepr::Unknown { type_, .. }
                if Ipv6OptionFailureType::from(type_) != Ipv6OptionFailureType::Skip =>
            {
                return Err(Reject::Unsupported)
            }
            _ => {}
        }
    }
    Ok(())
}

/// Removes the extension headers of an IPv6 frame that [`classify`]
/// accepted, so that smoltcp (which knows only a leading hop-by-hop
/// header) sees the upper-layer header right after the IPv6 header.
/// Returns the frame's new length, or `None` if there was nothing to
/// remove (or the frame is not IPv6).
pub fn strip_ext_headers(frame: &mut [u8]) -> Option<usize> {
    let (next, walked, payload_len) = {
        let eth = EthernetFrame::new_checked(&*frame).ok()?;
        if eth.ethertype() != EthernetProtocol::Ipv6 {
            return None;
        }
        let ip = Ipv6Packet::new_checked(eth.payload()).ok()?;
        let first = ip.next_header();
        if !is_ext_header(first) {
            return None; // the usual case: nothing to walk
        }
        let (next, _, walked) = walk_ext(first, ip.payload()).ok()?;
        (next, walked, ip.payload_len() as usize)
    };
    if walked == 0 {
        return None;
    }
    let mut eth = EthernetFrame::new_unchecked(frame);
    let mut ip = Ipv6Packet::new_unchecked(eth.payload_mut());
    let p = ip.payload_mut();
    p.copy_within(walked..payload_len, 0);
    ip.set_next_header(next);
    ip.set_payload_len((payload_len - walked) as u16);
    Some(14 + smoltcp::wire::IPV6_HEADER_LEN + payload_len - walked)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{syn, tcp6_vec, with_ext6, Ends6};
    use smoltcp::wire::TcpRepr;
    use std::net::Ipv6Addr;

    const MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 1]);
    const IP: Ipv4Address = Ipv4Address::new(10, 0, 0, 1);
    const PEER: Ipv4Address = Ipv4Address::new(10, 0, 0, 2);
    const IP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);
    const PEER6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2);

    fn ours() -> Ours {
        Ours {
            mac: MAC,
            v4: Some(IP),
            v6: vec![IP6],
        }
    }

    fn tcp_frame(payload: &[u8]) -> Vec<u8> {
        let ends = crate::testing::Ends {
            src_mac: [2, 0, 0, 0, 0, 2],
            dst_mac: MAC.0,
            src_ip: PEER,
            dst_ip: IP,
        };
        let tcp = TcpRepr {
            payload,
            window_len: 1000,
            ..crate::testing::syn(40000, 80, 1)
        };
        crate::testing::tcp_vec(&ends, &tcp)
    }

    fn ends6() -> Ends6 {
        Ends6 {
            src_mac: [2, 0, 0, 0, 0, 2],
            dst_mac: MAC.0,
            src_ip: PEER6,
            dst_ip: IP6,
        }
    }

    fn tcp6_frame(payload: &[u8]) -> Vec<u8> {
        let tcp = TcpRepr {
            payload,
            window_len: 1000,
            ..syn(40000, 80, 1)
        };
        tcp6_vec(&ends6(), &tcp)
    }

    #[test]
    fn a_syn_is_routed_by_its_four_tuple() {
        let f = tcp_frame(b"");
        let c = classify(&f, &ours(), true).unwrap();
        assert_eq!(
            c,
            Class::Tcp {
                key: TcpKey::V4(tcp_key(PEER, 40000, 80)),
                dst_port: 80,
                syn: true,
                rst: false
            }
        );
        let f = tcp6_frame(b"");
        let c = classify(&f, &ours(), true).unwrap();
        assert_eq!(
            c,
            Class::Tcp {
                key: TcpKey::V6(tcp_key6(0, PEER6, 40000, 80)),
                dst_port: 80,
                syn: true,
                rst: false
            }
        );
        let Class::Tcp { key, .. } = c else {
            panic!("{c:?}")
        };
        let o = ours();
        assert_eq!(key, o.key(IP6.into(), PEER6.into(), 40000, 80).unwrap());
        assert_ne!(key, o.key(IP6.into(), PEER6.into(), 40001, 80).unwrap());
    }

    /// One peer address and port to two of our IPv6 addresses: two keys
    /// (each naming our address by its index), each giving back the
    /// peer's address and ports.
    #[test]
    fn ipv6_keys_name_our_address() {
        let second = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x11);
        let o = Ours {
            v6: vec![IP6, second],
            ..ours()
        };
        let to = |dst_ip| {
            let e = Ends6 { dst_ip, ..ends6() };
            let Ok(Class::Tcp { key, .. }) = classify(&tcp6_vec(&e, &syn(40000, 80, 1)), &o, true)
            else {
                panic!("not TCP")
            };
            key
        };
        let (a, b) = (to(IP6), to(second));
        assert_ne!(a, b);
        assert_eq!(b, o.key(second.into(), PEER6.into(), 40000, 80).unwrap());
        let TcpKey::V6(k) = b else { panic!("{b:?}") };
        assert_eq!((k.remote(), k.local(), k.ports()), (PEER6, 1, (40000, 80)));
        // Not one of ours: no key.
        assert_eq!(o.key(PEER6.into(), PEER6.into(), 40000, 80), None);
        // IPv4 keys hold the peer's address.
        let TcpKey::V4(k4) = o.key(IP.into(), PEER.into(), 1, 2).unwrap() else {
            panic!()
        };
        assert_eq!(key_remote(k4), PEER);
    }

    #[test]
    fn damage_is_classified() {
        let o = ours();
        let good = tcp_frame(b"hello");
        // Every truncation is malformed, never a panic.
        for n in 0..good.len() {
            assert!(classify(&good[..n], &o, true).is_err(), "len {n}");
        }
        let mut bad = good.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert_eq!(classify(&bad, &o, true), Err(Reject::BadChecksum));
        // The device's word per frame: good is not checked again, bad is
        // rejected even where nothing would be verified.
        let said = |l3, l4| RxChecksum { l3, l4 };
        let (g, b, u) = (Checksum::Good, Checksum::Bad, Checksum::Unknown);
        assert!(classify_with(&bad, &o, Verify::for_frame(said(g, g), true)).is_ok());
        assert_eq!(
            classify_with(&good, &o, Verify::for_frame(said(g, b), false)),
            Err(Reject::BadChecksum)
        );
        assert_eq!(
            classify_with(&good, &o, Verify::for_frame(said(b, u), false)),
            Err(Reject::BadChecksum)
        );
        assert_eq!(
            classify_with(&bad, &o, Verify::for_frame(said(u, u), true)),
            Err(Reject::BadChecksum)
        );
        assert!(
            classify(&bad, &o, false).is_ok(),
            "device verified: not re-checked"
        );
        let mut other = good.clone();
        other[0] = 4;
        assert_eq!(classify(&other, &o, true), Err(Reject::NotForUs));
        let mut frag = good.clone();
        frag[14 + 6] |= 0x20; // more fragments
        assert!(matches!(classify(&frag, &o, false), Err(Reject::Fragment)));
        let mut v6 = good.clone();
        v6[12..14].copy_from_slice(&[0x86, 0xdd]);
        assert_eq!(classify(&v6, &o, true), Err(Reject::Malformed));
        let mut ihl = good.clone();
        ihl[14] = 0x4f; // IHL 60 bytes: past the packet's options
        assert!(classify(&ihl, &o, false).is_err());
        let no_v4 = Ours { v4: None, ..ours() };
        assert_eq!(classify(&good, &no_v4, true), Err(Reject::NotForUs));
    }

    /// A destination-options or hop-by-hop body of 6 bytes: one PadN.
    const PAD6: [u8; 6] = [1, 4, 0, 0, 0, 0];

    #[test]
    fn ipv6_extension_headers_are_walked_or_counted() {
        let o = ours();
        let plain = tcp6_frame(b"data");
        let want = classify(&plain, &o, true).unwrap();
        let hbh = IpProtocol::HopByHop;
        let dst = IpProtocol::Ipv6Opts;
        let route = IpProtocol::Ipv6Route;
        // Routing header, type 2 would need 16 more bytes; type 3 (RPL)
        // with no segments left is past, with one left it is not for us.
        let route_done: [u8; 6] = [4, 0, 0, 0, 0, 0];
        let route_left: [u8; 6] = [4, 1, 0, 0, 0, 0];
        for chain in [
            vec![(hbh, &PAD6[..])],
            vec![(dst, &PAD6[..])],
            vec![(hbh, &PAD6[..]), (route, &route_done[..]), (dst, &PAD6[..])],
        ] {
            let mut f = with_ext6(&plain, &chain).unwrap();
            assert_eq!(classify(&f, &o, true), Ok(want), "{chain:?}");
            // Stripped, it is the plain frame again.
            let n = strip_ext_headers(&mut f).unwrap();
            f.truncate(n);
            assert_eq!(f, plain, "{chain:?}");
            assert_eq!(strip_ext_headers(&mut f), None);
        }
        let reject = |chain: &[(IpProtocol, &[u8])]| {
            classify(&with_ext6(&plain, chain).unwrap(), &o, true).unwrap_err()
        };
        assert_eq!(reject(&[(route, &route_left)]), Reject::Unsupported);
        let frag = [IpProtocol::Tcp.into(), 0, 0, 1, 0, 0]; // offset 0, more
        assert_eq!(reject(&[(IpProtocol::Ipv6Frag, &frag)]), Reject::Fragment);
        assert_eq!(
            reject(&[(dst, &PAD6), (hbh, &PAD6)]),
            Reject::BadExtHeader,
            "hop-by-hop only first"
        );
        let long: Vec<(IpProtocol, &[u8])> =
            (0..=MAX_EXT_HEADERS).map(|_| (dst, &PAD6[..])).collect();
        assert_eq!(reject(&long), Reject::BadExtHeader);
        let most = with_ext6(&plain, &long[..MAX_EXT_HEADERS]).unwrap();
        assert_eq!(classify(&most, &o, true), Ok(want));
        // An unknown option: type 0x3e says skip, 0x7e says discard.
        assert!(classify(
            &with_ext6(&plain, &[(dst, &[0x3e, 4, 0, 0, 0, 0])]).unwrap(),
            &o,
            true
        )
        .is_ok());
        assert_eq!(
            reject(&[(dst, &[0x7e, 4, 0, 0, 0, 0])]),
            Reject::Unsupported
        );
        // An option running past its header.
        assert_eq!(reject(&[(dst, &[1, 9, 0, 0, 0, 0])]), Reject::BadExtHeader);
        // A header length running past the payload.
        let mut f = with_ext6(&plain, &[(dst, &PAD6)]).unwrap();
        f[14 + 40 + 1] = 200;
        assert_eq!(classify(&f, &o, true), Err(Reject::BadExtHeader));
        // No next header.
        let mut f = with_ext6(&plain, &[(dst, &PAD6)]).unwrap();
        f[14 + 40] = 59;
        assert_eq!(classify(&f, &o, true), Err(Reject::Unsupported));
    }

    #[test]
    fn ipv6_damage_is_classified() {
        let o = ours();
        let good = tcp6_frame(b"hello");
        for n in 0..good.len() {
            assert!(classify(&good[..n], &o, true).is_err(), "len {n}");
        }
        let mut bad = good.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert_eq!(classify(&bad, &o, true), Err(Reject::BadChecksum));
        assert!(classify(&bad, &o, false).is_ok());
        // Payload length past the frame; shorter than the TCP header.
        let mut long = good.clone();
        long[14 + 4..14 + 6].copy_from_slice(&2000u16.to_be_bytes());
        assert_eq!(classify(&long, &o, true), Err(Reject::Malformed));
        let mut short = good.clone();
        short[14 + 4..14 + 6].copy_from_slice(&10u16.to_be_bytes());
        assert_eq!(classify(&short, &o, true), Err(Reject::Malformed));
        let mut version = good.clone();
        version[14] = 0x40;
        assert_eq!(classify(&version, &o, true), Err(Reject::Malformed));
        // Another address of ours? No: not for us.
        let other = Ours {
            v6: vec![PEER6],
            ..ours()
        };
        assert_eq!(classify(&good, &other, true), Err(Reject::NotForUs));
        // TCP from the unspecified address, or from a group.
        let mut e = ends6();
        e.src_ip = Ipv6Addr::UNSPECIFIED;
        assert_eq!(
            classify(&tcp6_vec(&e, &syn(1, 80, 1)), &o, true),
            Err(Reject::Malformed)
        );
        e.src_ip = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
        assert_eq!(
            classify(&tcp6_vec(&e, &syn(1, 80, 1)), &o, true),
            Err(Reject::Malformed)
        );
        // TCP to the all-nodes group.
        let mut e = ends6();
        e.dst_ip = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
        e.dst_mac = [0x33, 0x33, 0, 0, 0, 1];
        assert_eq!(
            classify(&tcp6_vec(&e, &syn(1, 80, 1)), &o, true),
            Err(Reject::Malformed)
        );
        // UDP with a zero checksum is refused over IPv6.
        let mut room = [0u8; 128];
        let n = crate::testing::emit_udp6(&mut room, &ends6(), 9, 53, b"q");
        assert_eq!(
            classify(&room[..n], &o, true),
            Ok(Class::Udp { dst_port: 53 })
        );
        room[14 + 40 + 6..14 + 40 + 8].fill(0);
        assert_eq!(classify(&room[..n], &o, true), Err(Reject::BadChecksum));
    }

    fn ns(src: Ipv6Addr, target: Ipv6Addr) -> Vec<u8> {
        crate::testing::ns6_vec([2, 0, 0, 0, 0, 2], src, target)
    }

    #[test]
    fn neighbour_discovery_goes_to_the_interface() {
        let o = ours();
        assert_eq!(classify(&ns(PEER6, IP6), &o, true), Ok(Class::Nd));
        // Duplicate address detection asks from nowhere.
        assert_eq!(
            classify(&ns(Ipv6Addr::UNSPECIFIED, IP6), &o, true),
            Ok(Class::Nd)
        );
        // For an address that is not ours: another group, not for us.
        let not_ours = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0x12, 0x3456);
        assert_eq!(
            classify(&ns(PEER6, not_ours), &o, true),
            Err(Reject::NotForUs)
        );
        let mut bad = ns(PEER6, IP6);
        *bad.last_mut().unwrap() ^= 1;
        assert_eq!(classify(&bad, &o, true), Err(Reject::BadChecksum));
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut x = 0x1234_5678_9abc_def0u64;
        let o = ours();
        let frames = [
            tcp_frame(b"payload"),
            tcp6_frame(b"payload"),
            with_ext6(
                &tcp6_frame(b"payload"),
                &[(IpProtocol::HopByHop, &PAD6), (IpProtocol::Ipv6Opts, &PAD6)],
            )
            .unwrap(),
            ns(PEER6, IP6),
        ];
        for i in 0..40_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut f = frames[i % frames.len()].clone();
            let n = (x % 8) as usize;
            for k in 0..n {
                let at = ((x >> (8 * k)) as usize) % f.len();
                f[at] = (x >> k) as u8;
            }
            f.truncate(((x >> 40) as usize) % (f.len() + 1));
            if classify(&f, &o, x & 1 == 0).is_ok() {
                let _ = strip_ext_headers(&mut f);
            }
        }
    }
}
