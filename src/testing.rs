//! Frame builders for tests, fuzzing and traffic generators, and the
//! test driver of two stacks on a manual clock ([`Pair`]).
//!
//! Each builder emits a complete Ethernet frame with smoltcp's `Repr::emit`
//! (checksums computed) into the caller's buffer and returns its length, so
//! a generator can write straight into a pool buffer; the `*_vec` forms
//! return a fresh `Vec` for tests.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

mod pair;
pub use pair::{Pair, Waiting, STEP_US};

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr, IpProtocol, Ipv4Packet, Ipv4Repr, Ipv6ExtHeader, Ipv6ExtHeaderRepr, Ipv6Packet,
    Ipv6Repr, TcpControl, TcpPacket, TcpRepr, TcpSeqNumber, UdpPacket, UdpRepr,
};

/// A pool of `frames` buffers of `frame_size` bytes (`headroom` of them
/// before the data) on ordinary pages, for tests.
pub fn pool(frames: u32, frame_size: u32, headroom: u32) -> crate::buf::Pool {
    crate::buf::Pool::new(&crate::buf::PoolConfig {
        frames,
        frame_size,
        headroom,
        huge: crate::buf::HugePolicy::Never,
        name: "test".into(),
    })
    .expect("a test pool on ordinary pages")
}

/// A small deterministic generator (xorshift64*) for tests and generated
/// inputs that must replay: the same seed gives the same sequence.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// A number below `n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// The addresses of a frame: from `src` to `dst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ends {
    /// Source MAC.
    pub src_mac: [u8; 6],
    /// Destination MAC.
    pub dst_mac: [u8; 6],
    /// Source IPv4 address.
    pub src_ip: Ipv4Addr,
    /// Destination IPv4 address.
    pub dst_ip: Ipv4Addr,
}

impl Ends {
    /// The same ends, the other way round.
    pub fn reversed(&self) -> Ends {
        Ends {
            src_mac: self.dst_mac,
            dst_mac: self.src_mac,
            src_ip: self.dst_ip,
            dst_ip: self.src_ip,
        }
    }
}

/// A bare SYN from `sport` to `dport` with sequence number `seq` and an
/// MSS of 1460.
pub fn syn(sport: u16, dport: u16, seq: u32) -> TcpRepr<'static> {
    TcpRepr {
        src_port: sport,
        dst_port: dport,
        control: TcpControl::Syn,
        seq_number: TcpSeqNumber(seq as i32),
        ack_number: None,
        window_len: 64240,
        window_scale: None,
        max_seg_size: Some(1460),
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: None,
        payload: &[],
    }
}

/// Emits Ethernet and IPv4 headers; returns the frame's length and where
/// its upper-layer bytes start.
fn emit_ip(room: &mut [u8], e: &Ends, proto: IpProtocol, payload_len: usize) -> (usize, usize) {
    let ip = Ipv4Repr {
        src_addr: e.src_ip,
        dst_addr: e.dst_ip,
        next_header: proto,
        payload_len,
        hop_limit: 64,
    };
    let eth = EthernetRepr {
        src_addr: EthernetAddress(e.src_mac),
        dst_addr: EthernetAddress(e.dst_mac),
        ethertype: EthernetProtocol::Ipv4,
    };
    let n = eth.buffer_len() + ip.buffer_len() + payload_len;
    let mut f = EthernetFrame::new_unchecked(&mut room[..n]);
    eth.emit(&mut f);
    ip.emit(
        &mut Ipv4Packet::new_unchecked(f.payload_mut()),
        &ChecksumCapabilities::default(),
    );
    (n, eth.buffer_len() + ip.buffer_len())
}

/// Emits a TCP header and payload into `l4`, its checksum over `src` and
/// `dst`.
fn put_tcp(l4: &mut [u8], src: IpAddr, dst: IpAddr, tcp: &TcpRepr<'_>) {
    tcp.emit(
        &mut TcpPacket::new_unchecked(l4),
        &src.into(),
        &dst.into(),
        &ChecksumCapabilities::default(),
    );
}

/// UDP header bytes.
const UDP_HEADER: usize = 8;

/// Emits a UDP datagram into `l4`, its checksum over `src` and `dst`.
fn put_udp(l4: &mut [u8], src: IpAddr, dst: IpAddr, ports: (u16, u16), payload: &[u8]) {
    let udp = UdpRepr {
        src_port: ports.0,
        dst_port: ports.1,
    };
    debug_assert_eq!(udp.header_len(), UDP_HEADER);
    udp.emit(
        &mut UdpPacket::new_unchecked(l4),
        &src.into(),
        &dst.into(),
        payload.len(),
        |b| b.copy_from_slice(payload),
        &ChecksumCapabilities::default(),
    );
}

/// Emits an Ethernet/IPv4/TCP frame into `room`; returns its length.
/// Panics if `room` is too small (a caller's bug, not input).
pub fn emit_tcp(room: &mut [u8], e: &Ends, tcp: &TcpRepr<'_>) -> usize {
    let (n, at) = emit_ip(room, e, IpProtocol::Tcp, tcp.buffer_len());
    put_tcp(&mut room[at..n], e.src_ip.into(), e.dst_ip.into(), tcp);
    n
}

/// Emits an Ethernet/IPv4/UDP frame into `room`; returns its length.
pub fn emit_udp(room: &mut [u8], e: &Ends, sport: u16, dport: u16, payload: &[u8]) -> usize {
    let (n, at) = emit_ip(room, e, IpProtocol::Udp, UDP_HEADER + payload.len());
    let (src, dst) = (e.src_ip.into(), e.dst_ip.into());
    put_udp(&mut room[at..n], src, dst, (sport, dport), payload);
    n
}

/// Emits a broadcast ARP request from `src_mac`/`src_ip` for `target`.
pub fn emit_arp_request(
    room: &mut [u8],
    src_mac: [u8; 6],
    src_ip: Ipv4Addr,
    target: Ipv4Addr,
) -> usize {
    let arp = ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Request,
        source_hardware_addr: EthernetAddress(src_mac),
        source_protocol_addr: src_ip,
        target_hardware_addr: EthernetAddress([0; 6]),
        target_protocol_addr: target,
    };
    let eth = EthernetRepr {
        src_addr: EthernetAddress(src_mac),
        dst_addr: EthernetAddress::BROADCAST,
        ethertype: EthernetProtocol::Arp,
    };
    let n = eth.buffer_len() + arp.buffer_len();
    let mut f = EthernetFrame::new_unchecked(&mut room[..n]);
    eth.emit(&mut f);
    arp.emit(&mut ArpPacket::new_unchecked(f.payload_mut()));
    n
}

/// The addresses of an IPv6 frame: from `src` to `dst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ends6 {
    /// Source MAC.
    pub src_mac: [u8; 6],
    /// Destination MAC.
    pub dst_mac: [u8; 6],
    /// Source IPv6 address.
    pub src_ip: Ipv6Addr,
    /// Destination IPv6 address.
    pub dst_ip: Ipv6Addr,
}

impl Ends6 {
    /// The same ends, the other way round.
    pub fn reversed(&self) -> Ends6 {
        Ends6 {
            src_mac: self.dst_mac,
            dst_mac: self.src_mac,
            src_ip: self.dst_ip,
            dst_ip: self.src_ip,
        }
    }
}

/// Emits Ethernet and IPv6 headers; returns the frame's length and where
/// its upper-layer bytes start.
fn emit_ip6(room: &mut [u8], e: &Ends6, proto: IpProtocol, payload_len: usize) -> (usize, usize) {
    let ip = Ipv6Repr {
        src_addr: e.src_ip,
        dst_addr: e.dst_ip,
        next_header: proto,
        payload_len,
        hop_limit: 64,
    };
    let eth = EthernetRepr {
        src_addr: EthernetAddress(e.src_mac),
        dst_addr: EthernetAddress(e.dst_mac),
        ethertype: EthernetProtocol::Ipv6,
    };
    let n = eth.buffer_len() + ip.buffer_len() + payload_len;
    let mut f = EthernetFrame::new_unchecked(&mut room[..n]);
    eth.emit(&mut f);
    ip.emit(&mut Ipv6Packet::new_unchecked(f.payload_mut()));
    (n, eth.buffer_len() + ip.buffer_len())
}

/// Emits an Ethernet/IPv6/TCP frame into `room`; returns its length.
/// Panics if `room` is too small (a caller's bug, not input).
pub fn emit_tcp6(room: &mut [u8], e: &Ends6, tcp: &TcpRepr<'_>) -> usize {
    let (n, at) = emit_ip6(room, e, IpProtocol::Tcp, tcp.buffer_len());
    put_tcp(&mut room[at..n], e.src_ip.into(), e.dst_ip.into(), tcp);
    n
}

/// Emits an Ethernet/IPv6/UDP frame into `room`; returns its length.
pub fn emit_udp6(room: &mut [u8], e: &Ends6, sport: u16, dport: u16, payload: &[u8]) -> usize {
    let (n, at) = emit_ip6(room, e, IpProtocol::Udp, UDP_HEADER + payload.len());
    let (src, dst) = (e.src_ip.into(), e.dst_ip.into());
    put_udp(&mut room[at..n], src, dst, (sport, dport), payload);
    n
}

/// [`emit_tcp6`] into a new `Vec`.
pub fn tcp6_vec(e: &Ends6, tcp: &TcpRepr<'_>) -> Vec<u8> {
    let mut v = vec![0; 14 + 40 + tcp.buffer_len()];
    let n = emit_tcp6(&mut v, e, tcp);
    v.truncate(n);
    v
}

/// An IPv6 frame with extension headers put between its IPv6 header and
/// its upper-layer header: one per `(kind, body)`, in order, each body
/// being the header's bytes after its first two (a multiple of 8 bytes
/// less 2: pad it). The upper-layer checksum stays valid (the
/// pseudo-header does not cover extension headers). `None` if `frame` is
/// not an IPv6 frame or a body has a bad length.
pub fn with_ext6(frame: &[u8], headers: &[(IpProtocol, &[u8])]) -> Option<Vec<u8>> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    let ip = Ipv6Packet::new_checked(eth.payload()).ok()?;
    let upper = ip.next_header();
    let total: usize = headers.iter().map(|(_, b)| b.len() + 2).sum();
    if headers
        .iter()
        .any(|(_, b)| (b.len() + 2) % 8 != 0 || b.len() + 2 > 2048)
    {
        return None;
    }
    let mut out = frame[..14 + 40].to_vec();
    for (i, (_, body)) in headers.iter().enumerate() {
        let next = headers.get(i + 1).map_or(upper, |h| h.0);
        let mut h = vec![0u8; body.len() + 2];
        h[2..].copy_from_slice(body);
        let repr = Ipv6ExtHeaderRepr {
            next_header: next,
            length: ((body.len() + 2) / 8 - 1) as u8,
            data: body,
        };
        repr.emit(&mut Ipv6ExtHeader::new_unchecked(&mut h[..]));
        out.extend_from_slice(&h);
    }
    out.extend_from_slice(ip.payload());
    let mut f = EthernetFrame::new_unchecked(&mut out[..]);
    let mut ip = Ipv6Packet::new_unchecked(f.payload_mut());
    ip.set_next_header(headers.first().map_or(upper, |h| h.0));
    ip.set_payload_len((ip.payload_len() as usize + total) as u16);
    Some(out)
}

/// A neighbour solicitation for `target` from `src` (`src_mac`), sent to
/// the target's solicited-node group; from the unspecified address (as
/// duplicate address detection asks) it carries no link-layer option.
pub fn ns6_vec(src_mac: [u8; 6], src: Ipv6Addr, target: Ipv6Addr) -> Vec<u8> {
    use smoltcp::wire::{Icmpv6Repr, NdiscRepr, RawHardwareAddress};
    let (group, group_mac) = crate::stack::nd::solicited_node(target);
    let icmp = Icmpv6Repr::Ndisc(NdiscRepr::NeighborSolicit {
        target_addr: target,
        lladdr: (!src.is_unspecified()).then(|| RawHardwareAddress::from_bytes(&src_mac)),
    });
    let mut v = vec![0; 128];
    let n = crate::stack::nd::emit_icmp6(
        &mut v,
        EthernetAddress(src_mac),
        group_mac,
        src,
        group,
        255,
        &icmp,
    );
    v.truncate(n);
    v
}

/// [`emit_tcp`] into a new `Vec`.
pub fn tcp_vec(e: &Ends, tcp: &TcpRepr<'_>) -> Vec<u8> {
    let mut v = vec![0; 14 + 20 + tcp.buffer_len()];
    let n = emit_tcp(&mut v, e, tcp);
    v.truncate(n);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_frames_parse_back_with_valid_checksums() {
        let e = Ends {
            src_mac: [2, 0, 0, 0, 0, 2],
            dst_mac: [2, 0, 0, 0, 0, 1],
            src_ip: Ipv4Addr::new(10, 0, 0, 2),
            dst_ip: Ipv4Addr::new(10, 0, 0, 1),
        };
        let f = tcp_vec(&e, &syn(40000, 80, 7));
        let eth = EthernetFrame::new_checked(&f[..]).unwrap();
        let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
        assert!(ip.verify_checksum());
        let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
        assert!(tcp.syn() && tcp.verify_checksum(&e.src_ip.into(), &e.dst_ip.into()));
        let mut room = [0u8; 128];
        let n = emit_udp(&mut room, &e.reversed(), 9, 10, b"hi");
        let ip = Ipv4Packet::new_checked(
            EthernetFrame::new_checked(&room[..n])
                .unwrap()
                .payload()
                .to_vec(),
        )
        .unwrap();
        assert_eq!(ip.src_addr(), e.dst_ip);
        let n = emit_arp_request(&mut room, e.src_mac, e.src_ip, e.dst_ip);
        assert_eq!(n, 42);
    }
}
