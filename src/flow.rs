//! Flows and receive-side scaling (RSS): which core owns a flow.
//!
//! A NIC with RSS hashes each received packet's addresses and ports with
//! the Toeplitz function under a 40-byte secret key, takes the low bits of
//! the hash as an index into a redirection table (RETA) and delivers the
//! packet to the queue that entry names. This module does the same in
//! software, bit for bit, so that
//!
//! - backends that cannot spread flows themselves (TAP, whose kernel side
//!   picks queues by its own hash; the in-memory wire) can be *steered* in
//!   software: the receiving core computes the owner and hands the frame on;
//! - a device that can be programmed with our key and table spreads flows
//!   exactly as the software would;
//! - active opens pick a local port whose replies hash back to the opening
//!   core ([`Rss::pick_local_port`]), as Seastar's `tcp::connect` and
//!   F-Stack's `ff_rss_check` do, so a connection never changes core.
//!
//! The hash input for TCP and UDP over IPv4 is the packet's source address,
//! destination address, source port and destination port, in network byte
//! order (12 bytes); for other IPv4 packets, the two addresses (8 bytes).
//! Over IPv6 it is the same with 16-byte addresses (36 and 32 bytes).
//! With [`RssKey::SYMMETRIC`] (the 16-bit pattern `0x6d5a` repeated, after
//! Woo and Park) both directions of a flow hash alike, so one table serves
//! both ends of a connection; with [`RssKey::MICROSOFT`] (the key of
//! Microsoft's RSS verification suite and most NICs' default) they do not.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::error::{Error, Result};

/// Entries in a redirection table (a power of two; NICs commonly have 128).
pub const RETA_SIZE: usize = 128;

/// A 40-byte Toeplitz key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct RssKey(pub [u8; 40]);

impl std::fmt::Debug for RssKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RssKey(")?;
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

impl RssKey {
    /// Microsoft's verification key (many NICs' default). Not symmetric.
    pub const MICROSOFT: RssKey = RssKey([
        0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f,
        0xb0, 0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30,
        0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
    ]);

    /// `0x6d5a` repeated: every 32-bit window of the key repeats with a
    /// period of 16 bits, so swapping the two addresses (a 32-bit shift)
    /// and the two ports (a 16-bit shift) leaves the hash unchanged.
    pub const SYMMETRIC: RssKey = RssKey(Self::repeat16(0x6d5a));

    const fn repeat16(w: u16) -> [u8; 40] {
        let mut k = [0u8; 40];
        let mut i = 0;
        while i < 40 {
            k[i] = (w >> 8) as u8;
            k[i + 1] = w as u8;
            i += 2;
        }
        k
    }

    /// The 32 key bits starting at bit `at` (bit 0 is the most significant
    /// bit of byte 0). `at` must be at most 288.
    fn window(&self, at: usize) -> u32 {
        let mut w = 0u32;
        for j in 0..32 {
            let bit = at + j;
            w = (w << 1) | ((self.0[bit / 8] >> (7 - bit % 8)) & 1) as u32;
        }
        w
    }
}

/// The Toeplitz hash of `input` under `key`, one bit at a time: the
/// reference the table-driven [`Toeplitz`] is checked against. `input` is at
/// most 36 bytes (an IPv6 4-tuple).
pub fn toeplitz(key: &RssKey, input: &[u8]) -> u32 {
    assert!(
        input.len() <= 36,
        "Toeplitz input longer than the key allows"
    );
    let mut h = 0u32;
    for (i, byte) in input.iter().enumerate() {
        for b in 0..8 {
            if byte & (0x80 >> b) != 0 {
                h ^= key.window(i * 8 + b);
            }
        }
    }
    h
}

/// Bytes of an IPv6 4-tuple hash input (the longest input).
const V6_INPUT: usize = 36;

/// The Toeplitz hash, table-driven: one lookup per input byte (12 lookups
/// and XORs for a TCP/UDP packet over IPv4, 36 over IPv6). The tables take
/// 36 KiB (an IPv4 packet touches the first 12 KiB); each core keeps its
/// own copy.
#[derive(Clone)]
pub struct Toeplitz {
    key: RssKey,
    tables: Box<[[u32; 256]; V6_INPUT]>,
}

impl std::fmt::Debug for Toeplitz {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Toeplitz").field("key", &self.key).finish()
    }
}

impl Toeplitz {
    /// Precomputes the tables for `key`.
    pub fn new(key: RssKey) -> Toeplitz {
        let mut tables = Box::new([[0u32; 256]; V6_INPUT]);
        for (i, t) in tables.iter_mut().enumerate() {
            let windows: [u32; 8] = std::array::from_fn(|b| key.window(i * 8 + b));
            for (v, slot) in t.iter_mut().enumerate() {
                *slot = (0..8)
                    .filter(|b| v & (0x80 >> b) != 0)
                    .fold(0, |h, b| h ^ windows[b]);
            }
        }
        Toeplitz { key, tables }
    }

    /// The key.
    pub fn key(&self) -> &RssKey {
        &self.key
    }

    /// Hash of up to 36 bytes of input (the rest is ignored).
    #[inline]
    pub fn hash(&self, input: &[u8]) -> u32 {
        input
            .iter()
            .zip(self.tables.iter())
            .fold(0, |h, (&b, t)| h ^ t[b as usize])
    }

    /// Hash of an IPv4 TCP/UDP packet's addresses and ports (as they
    /// appear in the packet: source first).
    #[inline]
    pub fn hash_v4(&self, src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16) -> u32 {
        let (s, d) = (src.octets(), dst.octets());
        let (sp, dp) = (sport.to_be_bytes(), dport.to_be_bytes());
        self.hash(&[
            s[0], s[1], s[2], s[3], d[0], d[1], d[2], d[3], sp[0], sp[1], dp[0], dp[1],
        ])
    }

    /// Hash of an IPv6 TCP/UDP packet's addresses and ports (as they
    /// appear in the packet: source first).
    #[inline]
    pub fn hash_v6(&self, src: Ipv6Addr, dst: Ipv6Addr, sport: u16, dport: u16) -> u32 {
        let mut input = [0u8; V6_INPUT];
        input[..16].copy_from_slice(&src.octets());
        input[16..32].copy_from_slice(&dst.octets());
        input[32..34].copy_from_slice(&sport.to_be_bytes());
        input[34..].copy_from_slice(&dport.to_be_bytes());
        self.hash(&input)
    }

    /// Hash of a TCP/UDP packet's addresses and ports, either family; an
    /// IPv4 address with an IPv6 one (which no packet has) hashes as IPv6
    /// with the IPv4 address mapped.
    #[inline]
    pub fn hash_ip(&self, src: IpAddr, dst: IpAddr, sport: u16, dport: u16) -> u32 {
        match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => self.hash_v4(s, d, sport, dport),
            (s, d) => self.hash_v6(v6(s), v6(d), sport, dport),
        }
    }
}

fn v6(a: IpAddr) -> Ipv6Addr {
    match a {
        IpAddr::V4(a) => a.to_ipv6_mapped(),
        IpAddr::V6(a) => a,
    }
}

/// A transport protocol number with ports that RSS hashes.
pub const PROTO_TCP: u8 = 6;
/// UDP's protocol number.
pub const PROTO_UDP: u8 = 17;

/// A flow as seen in one packet: source and destination as they appear in
/// it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FiveTuple {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Source port (0 for protocols without ports).
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// IP protocol number ([`PROTO_TCP`], [`PROTO_UDP`], ...).
    pub proto: u8,
}

impl FiveTuple {
    /// A TCP flow (both addresses of one family).
    pub fn tcp(
        src: impl Into<IpAddr>,
        src_port: u16,
        dst: impl Into<IpAddr>,
        dst_port: u16,
    ) -> FiveTuple {
        FiveTuple {
            src: src.into(),
            dst: dst.into(),
            src_port,
            dst_port,
            proto: PROTO_TCP,
        }
    }

    /// The same flow in the other direction.
    pub fn reversed(&self) -> FiveTuple {
        FiveTuple {
            src: self.dst,
            dst: self.src,
            src_port: self.dst_port,
            dst_port: self.src_port,
            proto: self.proto,
        }
    }

    /// True if RSS hashes the ports too (TCP and UDP).
    pub fn has_ports(&self) -> bool {
        matches!(self.proto, PROTO_TCP | PROTO_UDP)
    }

    /// The flow of an Ethernet frame carrying IP, as a NIC's RSS sees it:
    /// addresses and, for unfragmented TCP and UDP, ports (0 otherwise;
    /// over IPv6, also when extension headers come first, as NICs without
    /// the "IPv6 ex" hash types do). `None` for anything else (ARP, frames
    /// that do not parse).
    pub fn of_frame(frame: &[u8]) -> Option<FiveTuple> {
        use smoltcp::wire::{EthernetFrame, EthernetProtocol, Ipv4Packet, Ipv6Packet};
        let eth = EthernetFrame::new_checked(frame).ok()?;
        if eth.ethertype() == EthernetProtocol::Ipv6 {
            let ip = Ipv6Packet::new_checked(eth.payload()).ok()?;
            let (src, dst) = (ip.src_addr().into(), ip.dst_addr().into());
            return Some(Self::with_l4(
                src,
                dst,
                ip.next_header(),
                ip.payload(),
                true,
            ));
        }
        if eth.ethertype() != EthernetProtocol::Ipv4 {
            return None;
        }
        let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
        let whole = !ip.more_frags() && ip.frag_offset() == 0;
        let (src, dst) = (ip.src_addr().into(), ip.dst_addr().into());
        Some(Self::with_l4(
            src,
            dst,
            ip.next_header(),
            ip.payload(),
            whole,
        ))
    }

    /// The flow of an IP packet from `src` to `dst` carrying `proto` in
    /// `l4` (`whole`: not a fragment).
    fn with_l4(
        src: IpAddr,
        dst: IpAddr,
        proto: smoltcp::wire::IpProtocol,
        l4: &[u8],
        whole: bool,
    ) -> FiveTuple {
        use smoltcp::wire::{IpProtocol, TcpPacket, UdpPacket};
        let (proto, ports) = match proto {
            IpProtocol::Tcp => (
                PROTO_TCP,
                whole
                    .then(|| TcpPacket::new_checked(l4).ok())
                    .flatten()
                    .map(|t| (t.src_port(), t.dst_port())),
            ),
            IpProtocol::Udp => (
                PROTO_UDP,
                whole
                    .then(|| UdpPacket::new_checked(l4).ok())
                    .flatten()
                    .map(|u| (u.src_port(), u.dst_port())),
            ),
            p => (u8::from(p), None),
        };
        // Fragments and truncated segments hash on the addresses only.
        let (src_port, dst_port, proto) = match ports {
            Some((sp, dp)) => (sp, dp, proto),
            None if proto == PROTO_TCP || proto == PROTO_UDP => (0, 0, 0),
            None => (0, 0, proto),
        };
        FiveTuple {
            src,
            dst,
            src_port,
            dst_port,
            proto,
        }
    }
}

/// A redirection table: hash -> core index (0-based, in the order of the
/// run's core list, not CPU ids).
#[derive(Clone, PartialEq, Eq)]
pub struct Reta {
    entries: [u16; RETA_SIZE],
    cores: usize,
}

impl std::fmt::Debug for Reta {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Reta({} cores: {:?}...)", self.cores, &self.entries[..8])
    }
}

impl Reta {
    /// Round-robin over `cores` cores (entry `i` is core `i % cores`), the
    /// usual NIC default.
    pub fn spread(cores: usize) -> Result<Reta> {
        Self::from_fn(cores, |i| i % cores)
    }

    /// A table whose entry `i` is `f(i)`; each must be below `cores`.
    pub fn from_fn(cores: usize, f: impl Fn(usize) -> usize) -> Result<Reta> {
        if cores == 0 || cores > RETA_SIZE {
            return Err(Error::Config(format!(
                "RSS spreads over 1 to {RETA_SIZE} cores, not {cores}"
            )));
        }
        let mut entries = [0u16; RETA_SIZE];
        for (i, e) in entries.iter_mut().enumerate() {
            let c = f(i);
            if c >= cores {
                return Err(Error::Config(format!(
                    "RETA entry {i} names core {c} of {cores}"
                )));
            }
            *e = c as u16;
        }
        Ok(Reta { entries, cores })
    }

    /// The entries (to program a device with).
    pub fn entries(&self) -> &[u16; RETA_SIZE] {
        &self.entries
    }

    /// Number of cores the table spreads over.
    pub fn cores(&self) -> usize {
        self.cores
    }

    /// The core of a hash: the entry its low 7 bits select.
    #[inline]
    pub fn core(&self, hash: u32) -> usize {
        self.entries[hash as usize % RETA_SIZE] as usize
    }
}

/// RSS as a whole: key, hash tables and redirection table. Each core keeps
/// its own copy (nothing shared on the hot path).
#[derive(Debug, Clone)]
pub struct Rss {
    hasher: Toeplitz,
    reta: Reta,
}

impl Rss {
    /// RSS under `key` with `reta`.
    pub fn new(key: RssKey, reta: Reta) -> Rss {
        Rss {
            hasher: Toeplitz::new(key),
            reta,
        }
    }

    /// The symmetric key, round-robin over `cores` cores: the default.
    pub fn symmetric(cores: usize) -> Result<Rss> {
        Ok(Rss::new(RssKey::SYMMETRIC, Reta::spread(cores)?))
    }

    /// The key.
    pub fn key(&self) -> &RssKey {
        self.hasher.key()
    }

    /// The redirection table.
    pub fn reta(&self) -> &Reta {
        &self.reta
    }

    /// Number of cores.
    pub fn cores(&self) -> usize {
        self.reta.cores
    }

    /// The hash of a packet of this flow.
    #[inline]
    pub fn hash(&self, f: &FiveTuple) -> u32 {
        if f.has_ports() {
            return self.hasher.hash_ip(f.src, f.dst, f.src_port, f.dst_port);
        }
        match (f.src, f.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let (s, d) = (s.octets(), d.octets());
                self.hasher
                    .hash(&[s[0], s[1], s[2], s[3], d[0], d[1], d[2], d[3]])
            }
            (s, d) => {
                let mut input = [0u8; 32];
                input[..16].copy_from_slice(&v6(s).octets());
                input[16..].copy_from_slice(&v6(d).octets());
                self.hasher.hash(&input)
            }
        }
    }

    /// The core a packet of this flow is received on.
    #[inline]
    pub fn core(&self, f: &FiveTuple) -> usize {
        self.reta.core(self.hash(f))
    }

    /// The core of a TCP/UDP packet from `src:sport` to `dst:dport`.
    #[inline]
    pub fn core_v4(&self, src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16) -> usize {
        self.reta.core(self.hasher.hash_v4(src, dst, sport, dport))
    }

    /// The core of a TCP/UDP packet from `src:sport` to `dst:dport`, either
    /// family.
    #[inline]
    pub fn core_ip(&self, src: IpAddr, dst: IpAddr, sport: u16, dport: u16) -> usize {
        self.reta.core(self.hasher.hash_ip(src, dst, sport, dport))
    }

    /// Picks a local port for an active open from `local` to `remote` made
    /// on `core`, such that the replies (from `remote` to `local:port`) are
    /// received on `core`, and
    /// `free(port)` holds. Ports are tried from `*next` on, wrapping within
    /// `lo..=hi`; `*next` is left after the port returned so that the next
    /// open continues from there. `None` if no port of the range qualifies.
    pub fn pick_local_port(
        &self,
        local: IpAddr,
        remote: SocketAddr,
        core: usize,
        (lo, hi): (u16, u16),
        next: &mut u16,
        mut free: impl FnMut(u16) -> bool,
    ) -> Option<u16> {
        if lo > hi {
            return None;
        }
        let span = (hi - lo) as u32 + 1;
        let mut p = (*next).clamp(lo, hi);
        for _ in 0..span {
            let cand = p;
            p = if p >= hi { lo } else { p + 1 };
            if self.core_ip(remote.ip(), local, remote.port(), cand) == core && free(cand) {
                *next = p;
                return Some(cand);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    /// Microsoft's "Verifying the RSS Hash Calculation" table for IPv4:
    /// (destination, destination port, source, source port, IPv4 only,
    /// IPv4 with TCP).
    const MS_V4: [(&str, u16, &str, u16, u32, u32); 5] = [
        (
            "161.142.100.80",
            1766,
            "66.9.149.187",
            2794,
            0x323e8fc2,
            0x51ccc178,
        ),
        (
            "65.69.140.83",
            4739,
            "199.92.111.2",
            14230,
            0xd718262a,
            0xc626b0ea,
        ),
        (
            "12.22.207.184",
            38024,
            "24.19.198.95",
            12898,
            0xd2d0a5de,
            0x5c2b394a,
        ),
        (
            "209.142.163.6",
            2217,
            "38.27.205.30",
            48228,
            0x82989176,
            0xafc7327f,
        ),
        (
            "202.188.127.2",
            1303,
            "153.39.163.191",
            44251,
            0x5d1809c5,
            0x10e828a2,
        ),
    ];

    #[test]
    fn microsoft_verification_vectors() {
        let t = Toeplitz::new(RssKey::MICROSOFT);
        for (dst, dport, src, sport, v4, v4tcp) in MS_V4 {
            let (d, s) = (ip(dst), ip(src));
            let mut only = Vec::new();
            only.extend(s.octets());
            only.extend(d.octets());
            assert_eq!(toeplitz(&RssKey::MICROSOFT, &only), v4, "{src} -> {dst}");
            assert_eq!(t.hash(&only), v4, "{src} -> {dst} (tables)");
            let mut with = only.clone();
            with.extend(sport.to_be_bytes());
            with.extend(dport.to_be_bytes());
            assert_eq!(toeplitz(&RssKey::MICROSOFT, &with), v4tcp);
            assert_eq!(t.hash_v4(s, d, sport, dport), v4tcp, "{src}:{sport}");
            let f = FiveTuple::tcp(s, sport, d, dport);
            let rss = Rss::new(RssKey::MICROSOFT, Reta::spread(1).unwrap());
            assert_eq!(rss.hash(&f), v4tcp);
            let icmp = FiveTuple { proto: 1, ..f };
            assert_eq!(rss.hash(&icmp), v4);
        }
    }

    /// The same page's table for IPv6: (destination, destination port,
    /// source, source port, IPv6 only, IPv6 with TCP).
    const MS_V6: [(&str, u16, &str, u16, u32, u32); 3] = [
        (
            "3ffe:2501:200:3::1",
            1766,
            "3ffe:2501:200:1fff::7",
            2794,
            0x2cc18cd5,
            0x40207d3d,
        ),
        (
            "ff02::1",
            4739,
            "3ffe:501:8::260:97ff:fe40:efab",
            14230,
            0x0f0c461c,
            0xdde51bbf,
        ),
        (
            "fe80::200:f8ff:fe21:67cf",
            38024,
            "3ffe:1900:4545:3:200:f8ff:fe21:67cf",
            44251,
            0x4b61e985,
            0x02d1feef,
        ),
    ];

    #[test]
    fn microsoft_ipv6_verification_vectors() {
        let t = Toeplitz::new(RssKey::MICROSOFT);
        let rss = Rss::new(RssKey::MICROSOFT, Reta::spread(1).unwrap());
        for (dst, dport, src, sport, v6only, v6tcp) in MS_V6 {
            let (d, s): (Ipv6Addr, Ipv6Addr) = (dst.parse().unwrap(), src.parse().unwrap());
            let mut only = Vec::new();
            only.extend(s.octets());
            only.extend(d.octets());
            assert_eq!(
                toeplitz(&RssKey::MICROSOFT, &only),
                v6only,
                "{src} -> {dst}"
            );
            assert_eq!(t.hash(&only), v6only, "{src} -> {dst} (tables)");
            let mut with = only.clone();
            with.extend(sport.to_be_bytes());
            with.extend(dport.to_be_bytes());
            assert_eq!(toeplitz(&RssKey::MICROSOFT, &with), v6tcp);
            assert_eq!(t.hash_v6(s, d, sport, dport), v6tcp, "{src}:{sport}");
            assert_eq!(t.hash_ip(s.into(), d.into(), sport, dport), v6tcp);
            assert_eq!(rss.core_ip(s.into(), d.into(), sport, dport), 0);
            let f = FiveTuple::tcp(s, sport, d, dport);
            assert_eq!(rss.hash(&f), v6tcp);
            let icmp = FiveTuple { proto: 58, ..f };
            assert_eq!(rss.hash(&icmp), v6only);
        }
    }

    #[test]
    fn ipv6_flows_hash_symmetrically_and_are_read_from_frames() {
        use crate::testing::{syn, tcp6_vec, with_ext6, Ends6};
        let rss = Rss::new(RssKey::SYMMETRIC, Reta::spread(4).unwrap());
        let mut r = XorShift(7);
        for _ in 0..2000 {
            let a = Ipv6Addr::from((r.next() as u128) << 64 | r.next() as u128);
            let b = Ipv6Addr::from((r.next() as u128) << 64 | r.next() as u128);
            let x = r.next();
            let f = FiveTuple::tcp(a, x as u16, b, (x >> 16) as u16);
            assert_eq!(rss.hash(&f), rss.hash(&f.reversed()), "{f:?}");
            let icmp = FiveTuple { proto: 58, ..f };
            assert_eq!(rss.hash(&icmp), rss.hash(&icmp.reversed()));
        }
        let e = Ends6 {
            src_mac: [2, 0, 0, 0, 0, 2],
            dst_mac: [2, 0, 0, 0, 0, 1],
            src_ip: "fd00::2".parse().unwrap(),
            dst_ip: "fd00::1".parse().unwrap(),
        };
        let f = tcp6_vec(&e, &syn(40000, 80, 1));
        let want = FiveTuple::tcp(e.src_ip, 40000, e.dst_ip, 80);
        assert_eq!(FiveTuple::of_frame(&f), Some(want));
        // Extension headers first: the addresses only, as most NICs do.
        let pad: &[u8] = &[1, 4, 0, 0, 0, 0];
        let x = with_ext6(&f, &[(smoltcp::wire::IpProtocol::Ipv6Opts, pad)]).unwrap();
        let got = FiveTuple::of_frame(&x).unwrap();
        assert_eq!(
            (got.src, got.dst, got.src_port, got.proto),
            (want.src, want.dst, 0, 60)
        );
        assert_eq!(FiveTuple::of_frame(&f[..14 + 20]), None, "cut short");
    }

    #[test]
    fn ipv6_local_ports_hash_back_to_the_opening_core() {
        let local: Ipv6Addr = "fd00::2".parse().unwrap();
        let remote: Ipv6Addr = "fd00::1".parse().unwrap();
        for key in [RssKey::SYMMETRIC, RssKey::MICROSOFT] {
            let rss = Rss::new(key, Reta::spread(2).unwrap());
            let t = Toeplitz::new(key);
            for core in 0..2 {
                let mut next = 40000;
                for _ in 0..100 {
                    let p = rss
                        .pick_local_port(
                            local.into(),
                            SocketAddr::from((remote, 80)),
                            core,
                            (32768, 60999),
                            &mut next,
                            |_| true,
                        )
                        .unwrap();
                    // The reply: from remote:80 to local:p.
                    let h = t.hash_v6(remote, local, 80, p);
                    assert_eq!(rss.reta().core(h), core);
                    if key == RssKey::SYMMETRIC {
                        assert_eq!(h, t.hash_v6(local, remote, p, 80), "symmetric");
                    }
                }
            }
        }
    }

    #[test]
    fn microsoft_key_is_not_symmetric() {
        let t = Toeplitz::new(RssKey::MICROSOFT);
        let (dst, dport, src, sport, _, h) = MS_V4[0];
        assert_ne!(t.hash_v4(ip(dst), ip(src), dport, sport), h);
    }

    struct XorShift(u64);
    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    #[test]
    fn tables_match_the_bitwise_reference() {
        let mut r = XorShift(0x9e37_79b9_7f4a_7c15);
        for key in [RssKey::MICROSOFT, RssKey::SYMMETRIC] {
            let t = Toeplitz::new(key);
            for _ in 0..2000 {
                let x = r.next();
                let y = r.next();
                let mut input = [0u8; 12];
                input[..8].copy_from_slice(&x.to_le_bytes());
                input[8..].copy_from_slice(&y.to_le_bytes()[..4]);
                let n = (y >> 40) as usize % 13;
                assert_eq!(t.hash(&input[..n]), toeplitz(&key, &input[..n]));
                let mut long = [0u8; 36];
                for c in long.chunks_mut(8) {
                    let z = r.next().to_le_bytes();
                    c.copy_from_slice(&z[..c.len()]);
                }
                let n = (y >> 48) as usize % 37;
                assert_eq!(t.hash(&long[..n]), toeplitz(&key, &long[..n]));
            }
        }
    }

    #[test]
    fn symmetric_key_hashes_both_directions_alike() {
        let rss = Rss::new(RssKey::SYMMETRIC, Reta::spread(4).unwrap());
        let mut r = XorShift(42);
        let mut per_core = [0usize; 4];
        for _ in 0..10_000 {
            let x = r.next();
            let f = FiveTuple::tcp(
                Ipv4Addr::from(x as u32),
                (x >> 32) as u16,
                Ipv4Addr::from(r.next() as u32),
                (x >> 48) as u16,
            );
            assert_eq!(rss.hash(&f), rss.hash(&f.reversed()), "{f:?}");
            let icmp = FiveTuple { proto: 1, ..f };
            assert_eq!(rss.hash(&icmp), rss.hash(&icmp.reversed()));
            per_core[rss.core(&f)] += 1;
        }
        // And it still spreads: each core gets a fair share.
        for (c, n) in per_core.iter().enumerate() {
            assert!((2000..3000).contains(n), "core {c}: {n} of 10000");
        }
    }

    #[test]
    fn reta_spreads_and_refuses_bad_tables() {
        let r = Reta::spread(3).unwrap();
        assert_eq!(r.core(0), 0);
        assert_eq!(r.core(1), 1);
        assert_eq!(r.core(5), 2);
        assert_eq!(r.core(128), 0, "only the low 7 bits select");
        assert_eq!(r.core(0xffff_ffff), 127 % 3);
        assert!(Reta::spread(0).is_err());
        assert!(Reta::spread(RETA_SIZE + 1).is_err());
        assert!(Reta::from_fn(2, |i| i % 3).is_err());
    }

    #[test]
    fn local_ports_hash_back_to_the_opening_core() {
        let local = ip("10.0.0.2");
        let remote = ip("10.0.0.1");
        for key in [RssKey::SYMMETRIC, RssKey::MICROSOFT] {
            let rss = Rss::new(key, Reta::spread(4).unwrap());
            for core in 0..4 {
                let mut next = 40000;
                let mut seen = std::collections::HashSet::new();
                for _ in 0..200 {
                    let p = rss
                        .pick_local_port(
                            local.into(),
                            SocketAddr::from((remote, 80)),
                            core,
                            (32768, 60999),
                            &mut next,
                            |p| !seen.contains(&p),
                        )
                        .unwrap();
                    assert!((32768..=60999).contains(&p));
                    assert!(seen.insert(p), "port {p} given twice");
                    // The reply: from remote:80 to local:p.
                    let reply = FiveTuple::tcp(remote, 80, local, p);
                    assert_eq!(rss.core(&reply), core);
                }
            }
        }
        // A range with no port for the core: None, not a loop forever.
        let rss = Rss::symmetric(2).unwrap();
        let p = 50000;
        let c = rss.core_v4(remote, local, 80, p);
        let mut next = p;
        assert_eq!(
            rss.pick_local_port(
                local.into(),
                SocketAddr::from((remote, 80)),
                c,
                (p, p),
                &mut next,
                |_| true
            ),
            Some(p)
        );
        assert_eq!(
            rss.pick_local_port(
                local.into(),
                SocketAddr::from((remote, 80)),
                1 - c,
                (p, p),
                &mut next,
                |_| true
            ),
            None
        );
        // Wrap-around from the top of the range.
        let mut next = 60999;
        let got = rss
            .pick_local_port(
                local.into(),
                SocketAddr::from((remote, 80)),
                0,
                (60990, 60999),
                &mut next,
                |_| true,
            )
            .unwrap();
        assert!((60990..=60999).contains(&got));
    }

    #[test]
    fn of_frame_reads_the_flow_a_nic_hashes() {
        use crate::testing::{emit_arp_request, emit_udp, syn, tcp_vec, Ends};
        let e = Ends {
            src_mac: [2, 0, 0, 0, 0, 2],
            dst_mac: [2, 0, 0, 0, 0, 1],
            src_ip: ip("10.0.0.2"),
            dst_ip: ip("10.0.0.1"),
        };
        let f = tcp_vec(&e, &syn(40000, 80, 1));
        assert_eq!(
            FiveTuple::of_frame(&f),
            Some(FiveTuple::tcp(ip("10.0.0.2"), 40000, ip("10.0.0.1"), 80))
        );
        let mut room = [0u8; 128];
        let n = emit_udp(&mut room, &e, 53, 5353, b"x");
        let u = FiveTuple::of_frame(&room[..n]).unwrap();
        assert_eq!((u.src_port, u.dst_port, u.proto), (53, 5353, PROTO_UDP));
        // Cut short: the IPv4 header's length no longer fits.
        assert_eq!(FiveTuple::of_frame(&f[..14 + 20 + 4]), None);
        let n = emit_arp_request(&mut room, e.src_mac, e.src_ip, e.dst_ip);
        assert_eq!(FiveTuple::of_frame(&room[..n]), None);
        assert_eq!(FiveTuple::of_frame(&[0u8; 10]), None);
    }
}
