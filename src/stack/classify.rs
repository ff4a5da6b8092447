//! Routing a received frame before smoltcp sees it.
//!
//! Every frame is parsed once with `smoltcp::wire` checked views: Ethernet,
//! then ARP or IPv4, then TCP/UDP/ICMP headers. The result says where the
//! frame goes (the connection table key for TCP, the port for UDP, the
//! interface itself for ARP and ICMP) or why it is dropped. Checksums are
//! verified here, once, unless the device did it (for the whole port, or
//! for this frame: [`Verify::for_frame`] reads the buffer's receive
//! checksum status); smoltcp is then told not to verify them again.

use crate::buf::{Checksum, RxChecksum};
use smoltcp::wire::{
    ArpPacket, EthernetAddress, EthernetFrame, EthernetProtocol, Icmpv4Packet, IpProtocol,
    Ipv4Address, Ipv4Packet, TcpPacket, UdpPacket,
};

/// Where a frame goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// ARP: to the interface (neighbour cache, replies).
    Arp,
    /// ICMP: to the interface (echo replies).
    Icmp,
    /// TCP segment.
    Tcp {
        /// Connection table key (see [`tcp_key`]).
        key: u64,
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
    /// An IPv4 fragment (reassembly is not supported).
    Fragment,
    /// For another MAC or IP address.
    NotForUs,
    /// A protocol the stack does not speak (IPv6, other ethertypes/IP protocols).
    Unsupported,
}

/// The connection table key of a TCP segment we received: the peer's
/// address and port and our port.
#[inline]
pub fn tcp_key(remote: Ipv4Address, remote_port: u16, local_port: u16) -> u64 {
    (u32::from(remote) as u64) << 32 | (remote_port as u64) << 16 | local_port as u64
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

/// Classifies one frame addressed to `mac`/`ip`, verifying every checksum
/// if `verify`.
pub fn classify(
    frame: &[u8],
    mac: EthernetAddress,
    ip: Ipv4Address,
    verify: bool,
) -> Result<Class, Reject> {
    classify_with(frame, mac, ip, Verify::all(verify))
}

/// Classifies one frame addressed to `mac`/`ip`, verifying the checksums
/// `verify` says.
pub fn classify_with(
    frame: &[u8],
    mac: EthernetAddress,
    ip: Ipv4Address,
    verify: Verify,
) -> Result<Class, Reject> {
    let eth = EthernetFrame::new_checked(frame).map_err(|_| Reject::Malformed)?;
    let dst = eth.dst_addr();
    if dst != mac && !dst.is_broadcast() {
        return Err(Reject::NotForUs);
    }
    match eth.ethertype() {
        EthernetProtocol::Arp => {
            ArpPacket::new_checked(eth.payload()).map_err(|_| Reject::Malformed)?;
            Ok(Class::Arp)
        }
        EthernetProtocol::Ipv4 => ipv4(eth.payload(), ip, verify),
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
        IpProtocol::Tcp => {
            let tcp = TcpPacket::new_checked(payload).map_err(|_| Reject::Malformed)?;
            checked(verify.l4, || tcp.verify_checksum(&src.into(), &dst.into()))?;
            // Flags and options: refuse here what either engine would
            // refuse, so that a garbage header is counted rather than
            // dropped silently inside smoltcp (the same rules as its
            // parser, with a fast path for the usual timestamp layout).
            if !crate::tcp::wire::acceptable(&tcp) {
                return Err(Reject::Malformed);
            }
            Ok(Class::Tcp {
                key: tcp_key(src, tcp.src_port(), tcp.dst_port()),
                dst_port: tcp.dst_port(),
                syn: tcp.syn() && !tcp.ack(),
                rst: tcp.rst(),
            })
        }
        IpProtocol::Udp => {
            let udp = UdpPacket::new_checked(payload).map_err(|_| Reject::Malformed)?;
            checked(verify.l4, || {
                udp.checksum() == 0 || udp.verify_checksum(&src.into(), &dst.into())
            })?;
            Ok(Class::Udp {
                dst_port: udp.dst_port(),
            })
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::wire::TcpRepr;

    const MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 1]);
    const IP: Ipv4Address = Ipv4Address::new(10, 0, 0, 1);
    const PEER: Ipv4Address = Ipv4Address::new(10, 0, 0, 2);

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

    #[test]
    fn a_syn_is_routed_by_its_four_tuple() {
        let f = tcp_frame(b"");
        let c = classify(&f, MAC, IP, true).unwrap();
        assert_eq!(
            c,
            Class::Tcp {
                key: tcp_key(PEER, 40000, 80),
                dst_port: 80,
                syn: true,
                rst: false
            }
        );
    }

    #[test]
    fn damage_is_classified() {
        let good = tcp_frame(b"hello");
        // Every truncation is malformed, never a panic.
        for n in 0..good.len() {
            assert!(classify(&good[..n], MAC, IP, true).is_err(), "len {n}");
        }
        let mut bad = good.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert_eq!(classify(&bad, MAC, IP, true), Err(Reject::BadChecksum));
        // The device's word per frame: good is not checked again, bad is
        // rejected even where nothing would be verified.
        let said = |l3, l4| RxChecksum { l3, l4 };
        let (g, b, u) = (Checksum::Good, Checksum::Bad, Checksum::Unknown);
        assert!(classify_with(&bad, MAC, IP, Verify::for_frame(said(g, g), true)).is_ok());
        assert_eq!(
            classify_with(&good, MAC, IP, Verify::for_frame(said(g, b), false)),
            Err(Reject::BadChecksum)
        );
        assert_eq!(
            classify_with(&good, MAC, IP, Verify::for_frame(said(b, u), false)),
            Err(Reject::BadChecksum)
        );
        assert_eq!(
            classify_with(&bad, MAC, IP, Verify::for_frame(said(u, u), true)),
            Err(Reject::BadChecksum)
        );
        assert!(
            classify(&bad, MAC, IP, false).is_ok(),
            "device verified: not re-checked"
        );
        let mut other = good.clone();
        other[0] = 4;
        assert_eq!(classify(&other, MAC, IP, true), Err(Reject::NotForUs));
        let mut frag = good.clone();
        frag[14 + 6] |= 0x20; // more fragments
        assert!(matches!(
            classify(&frag, MAC, IP, false),
            Err(Reject::Fragment)
        ));
        let mut v6 = good.clone();
        v6[12..14].copy_from_slice(&[0x86, 0xdd]);
        assert_eq!(classify(&v6, MAC, IP, true), Err(Reject::Unsupported));
        let mut ihl = good;
        ihl[14] = 0x4f; // IHL 60 bytes: past the packet's options
        assert!(classify(&ihl, MAC, IP, false).is_err());
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut x = 0x1234_5678_9abc_def0u64;
        let good = tcp_frame(b"payload");
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut f = good.clone();
            let n = (x % 8) as usize;
            for k in 0..n {
                let at = ((x >> (8 * k)) as usize) % f.len();
                f[at] = (x >> k) as u8;
            }
            f.truncate(((x >> 40) as usize) % (f.len() + 1));
            let _ = classify(&f, MAC, IP, x & 1 == 0);
        }
    }
}
