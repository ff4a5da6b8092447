//! IPv4 forwarding between ports by longest-prefix match: the handler of
//! `bypass l3fwd`.
//!
//! For each frame: one length test covers the Ethernet header and a
//! 20-byte IPv4 header, which are then read through `smoltcp::wire`
//! unchecked views (a frame too short for them, or whose IPv4 header
//! carries options, takes the checked views instead); a frame whose
//! headers do not hold together (version, header length, total length
//! against the frame) is dropped as malformed; the IPv4 header checksum is
//! verified unless the device already did ([`Frame::l3_checksum`]): RFC
//! 1812 section 5.2.2 forbids forwarding a header with a bad one; the
//! destination is looked up in a DIR-24-8 table ([`Lpm`]); the TTL is
//! decremented with an incremental checksum update (RFC 1624, equation 3);
//! the MACs are rewritten to the next hop's and the output port's; the
//! frame goes out of the route's port. Frames that are not IPv4, whose TTL
//! would expire, or with no route are dropped, each with its own reason.
//! No ICMP errors are sent.
//!
//! A routes file has one route per line, `PREFIX/LEN PORT NEXT-HOP-MAC`
//! (`PORT` is the index of the output port in the order the ports were
//! given); `#` starts a comment. [`parse_routes`] names the first bad line.

use std::sync::Arc;

use smoltcp::wire::{EthernetAddress, EthernetFrame, EthernetProtocol, Ipv4Packet};

use super::lpm::{Lpm, LpmError};
use super::{Checksum, Discard, Frame, PacketHandler, Verdict};
use crate::buf::PacketBuf;
use crate::port::MacAddr;

/// One route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// Network address (host bits zero).
    pub prefix: std::net::Ipv4Addr,
    /// Prefix length, 0..=32.
    pub len: u8,
    /// Output port index.
    pub port: u16,
    /// The next hop's MAC: the new destination MAC.
    pub next_hop: MacAddr,
}

/// What is wrong with a routes file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// A line that does not parse or does not fit the table.
    #[error("line {line}: {why}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// What is wrong, and what is expected.
        why: String,
    },
    /// The table rejected a route.
    #[error("line {line}: {source}")]
    Table {
        /// 1-based line number.
        line: usize,
        /// The table's reason.
        #[source]
        source: LpmError,
    },
    /// No routes at all.
    #[error("no routes (write one per line: PREFIX/LEN PORT NEXT-HOP-MAC)")]
    Empty,
}

/// Parses a routes file; `ports` is the number of output ports, so a route
/// to a port that does not exist is an error on its line.
pub fn parse_routes(text: &str, ports: usize) -> Result<Vec<Route>, RouteError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let l = raw.split('#').next().unwrap_or("").trim();
        if l.is_empty() {
            continue;
        }
        let bad = |why: String| RouteError::Line { line, why };
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() != 3 {
            return Err(bad(format!(
                "`{l}` has {} fields; write PREFIX/LEN PORT NEXT-HOP-MAC, e.g. `10.1.0.0/16 1 02:00:00:00:00:02`",
                f.len()
            )));
        }
        let (addr, len) = f[0]
            .split_once('/')
            .ok_or_else(|| bad(format!("`{}` is not PREFIX/LEN", f[0])))?;
        let prefix: std::net::Ipv4Addr = addr
            .parse()
            .map_err(|_| bad(format!("`{addr}` is not an IPv4 address")))?;
        let len: u8 = len
            .parse()
            .ok()
            .filter(|&n: &u8| n <= 32)
            .ok_or_else(|| bad(format!("`{len}` is not a prefix length (0 to 32)")))?;
        let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
        if u32::from(prefix) & !mask != 0 {
            return Err(bad(format!(
                "`{}` has host bits set (the network is {}/{len})",
                f[0],
                std::net::Ipv4Addr::from(u32::from(prefix) & mask)
            )));
        }
        let port: u16 = f[1]
            .parse()
            .map_err(|_| bad(format!("`{}` is not a port index", f[1])))?;
        if port as usize >= ports {
            return Err(bad(format!(
                "port {port} does not exist (ports are 0 to {})",
                ports.saturating_sub(1)
            )));
        }
        let next_hop: MacAddr = f[2].parse().map_err(|e| bad(format!("`{}`: {e}", f[2])))?;
        out.push(Route {
            prefix,
            len,
            port,
            next_hop,
        });
    }
    if out.is_empty() {
        return Err(RouteError::Empty);
    }
    Ok(out)
}

/// Where a route sends a frame (16 bytes: an entry's address is its id
/// shifted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C, align(16))]
struct Hop {
    /// The two MACs in the order of an Ethernet header (destination, then
    /// source), so that their copies into it may merge.
    dst: EthernetAddress,
    src: EthernetAddress,
    port: u16,
}

/// The routing table: built once, shared read-only by every core.
#[derive(Debug)]
pub struct Table {
    lpm: Lpm,
    /// Next hops by id, in a fixed array: an id from the table is below
    /// `nhops` <= [`MAX_HOPS`], and masked to the array it needs no bounds
    /// check.
    hops: Box<[Hop; MAX_HOPS]>,
    nhops: usize,
}

/// Distinct next hops (port and MAC pairs) a table may hold.
pub const MAX_HOPS: usize = 4096;

impl Table {
    /// Builds the table from `routes`, for `ports` ports whose source MACs
    /// are all zero until [`set_port_macs`](Table::set_port_macs). Routes
    /// with the same port and next hop share an entry.
    pub fn new(routes: &[Route], ports: usize) -> Result<Table, RouteError> {
        let mut lpm = Lpm::new(1 << 16);
        let mut hops: Box<[Hop; MAX_HOPS]> = Box::new([Hop::default(); MAX_HOPS]);
        let mut nhops = 0;
        let mut ids = std::collections::HashMap::new();
        for (i, r) in routes.iter().enumerate() {
            let line = i + 1;
            if r.port as usize >= ports {
                return Err(RouteError::Line {
                    line,
                    why: format!("port {} does not exist", r.port),
                });
            }
            let id = match ids.entry((r.port, r.next_hop.0)) {
                std::collections::hash_map::Entry::Occupied(e) => *e.get(),
                std::collections::hash_map::Entry::Vacant(e) => {
                    if nhops == MAX_HOPS {
                        return Err(RouteError::Line {
                            line,
                            why: format!(
                                "more than {MAX_HOPS} distinct next hops (port and MAC pairs)"
                            ),
                        });
                    }
                    hops[nhops] = Hop {
                        port: r.port,
                        dst: EthernetAddress(r.next_hop.0),
                        src: EthernetAddress([0; 6]),
                    };
                    nhops += 1;
                    *e.insert(nhops as u32 - 1)
                }
            };
            lpm.insert(u32::from(r.prefix), r.len, id)
                .map_err(|source| RouteError::Table { line, source })?;
        }
        Ok(Table { lpm, hops, nhops })
    }

    /// Sets the source MAC of frames sent out of each port (`macs[i]` for
    /// port `i`).
    pub fn set_port_macs(&mut self, macs: &[MacAddr]) {
        for h in &mut self.hops[..self.nhops] {
            if let Some(m) = macs.get(h.port as usize) {
                h.src = EthernetAddress(m.0);
            }
        }
    }

    /// The output port and next-hop MAC for `dst`, if a route covers it.
    pub fn lookup(&self, dst: std::net::Ipv4Addr) -> Option<(u16, MacAddr)> {
        let h = self.hop(self.lpm.lookup(u32::from(dst))?);
        Some((h.port, MacAddr(h.dst.0)))
    }

    /// Routes in the table.
    pub fn routes(&self) -> usize {
        self.lpm.routes()
    }

    /// The next hop with id `id` (from the LPM table, so below `nhops`).
    #[inline(always)]
    fn hop(&self, id: u32) -> Hop {
        self.hops[id as usize % MAX_HOPS]
    }
}

/// RFC 1624 equation 3: the checksum `hc` after a 16-bit word of the
/// summed data changes from `old` to `new`: `HC' = ~(~HC + ~m + m')`.
#[inline]
pub fn checksum_adjust(hc: u16, old: u16, new: u16) -> u16 {
    let mut sum = (!hc) as u32 + (!old) as u32 + new as u32;
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

/// The header checksum after the TTL (the high byte of its 16-bit word)
/// went down by one: RFC 1624 equation 3, `HC' = ~(~HC + ~m + m')`, with
/// `~m + m'` folded to the constant it always is, `-0x0100`.
///
/// Worked through, `~(~HC - 0x0100)` is `HC + 0x0100` with an end-around
/// carry, except that equation 3 gives 0x0000 where that sum would be
/// 0xffff: one add, one compare and a select, equation 3's result to the
/// bit. Tested against [`checksum_adjust`] for every `HC`.
///
/// The sum is worked in the other byte order (RFC 1071: a ones'-complement
/// sum of byte-swapped words is the byte-swapped sum), where the addend is
/// 1: the swaps cancel with the ones of smoltcp's big-endian accessors, so
/// the field is read, updated and written back with no byte swap.
#[inline(always)]
pub fn checksum_after_ttl_decrement(hc: u16) -> u16 {
    let t = hc.swap_bytes() as u32 + 1;
    ((if t >= 0xffff { t - 0xffff } else { t }) as u16).swap_bytes()
}

/// True if the ones'-complement sum of `header` (an IPv4 header, its
/// checksum field included) is 0xffff: the header checksum is right. The
/// same test as smoltcp's `Ipv4Packet::verify_checksum`, done cheaply (a
/// header is 20 to 60 bytes, always a multiple of 4):
/// - the 16-bit words are summed 32 bits at a time, and in the host's byte
///   order: 2^16 and 2^32 are both 1 modulo 0xffff, and swapping the bytes
///   of every word swaps the bytes of the sum (RFC 1071), which leaves
///   "zero modulo 0xffff" as it is;
/// - the folded ones'-complement sum is 0xffff exactly when the plain sum
///   is a nonzero multiple of 0xffff (it is zero only for an all-zero
///   header, whose ones'-complement sum is 0, not 0xffff).
///
/// The 20-byte header of the fast path has its own, [`header20_checksum_ok`].
#[inline]
fn header_checksum_ok(header: &[u8]) -> bool {
    let sum = header
        .chunks_exact(4)
        .map(|w| u32::from_ne_bytes([w[0], w[1], w[2], w[3]]) as u64)
        .sum::<u64>();
    sum != 0 && sum % 0xffff == 0
}

/// [`header_checksum_ok`] for a 20-byte header whose first byte is 0x45
/// (version 4, five words): two 8-byte and one 4-byte load summed with
/// end-around carries (a 64-bit ones'-complement sum, which is the 16-bit
/// one modulo 0xffff, as 0xffff divides 2^64 - 1), then one modulo. The
/// sum cannot be zero (the first byte is not), so no zero test.
#[inline(always)]
fn header20_checksum_ok(h: &[u8; 20]) -> bool {
    let a = u64::from_ne_bytes([h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]]);
    let b = u64::from_ne_bytes([h[8], h[9], h[10], h[11], h[12], h[13], h[14], h[15]]);
    let c = u32::from_ne_bytes([h[16], h[17], h[18], h[19]]) as u64;
    // After a carry out, the sum is at most 2^64 - 2: adding it back
    // cannot carry again.
    let (s, carry) = a.overflowing_add(b);
    let s = s + carry as u64;
    let (s, carry) = s.overflowing_add(c);
    let s = s + carry as u64;
    s % 0xffff == 0
}

/// A drop verdict, made out of line: each of the fast path's drops then
/// has its own cold block, instead of one shared block whose reason the
/// compiler loads into a register on the hot path before every test.
#[cold]
#[inline(never)]
fn discard(why: Discard) -> Verdict {
    Verdict::Discard(why)
}

/// Ethernet header and a 20-byte IPv4 header: the frames the fast path
/// reads through unchecked views after this one length test.
const FAST_LEN: usize = 14 + 20;

/// The l3fwd packet handler (one per core, sharing one [`Table`]).
#[derive(Debug, Clone)]
pub struct L3Fwd {
    table: Arc<Table>,
}

impl L3Fwd {
    /// A handler over `table`.
    pub fn new(table: Arc<Table>) -> L3Fwd {
        L3Fwd { table }
    }

    /// Rewrites a frame whose headers passed the checks for `hop`: TTL
    /// down by one (it was `ttl`, above 1) with the checksum updated, the
    /// next hop's and the output port's MACs. Returns nothing, so that the
    /// verdict stays a constant on each of `handle`'s return paths (the
    /// loop turns a verdict into a fate with no jump table then).
    #[inline(always)]
    fn rewrite<B: PacketBuf>(frame: &mut Frame<'_, B>, ttl: u8, hop: Hop) {
        // The caller checked that the frame holds both headers.
        let mut eth = EthernetFrame::new_unchecked(frame.data_mut());
        let mut ip = Ipv4Packet::new_unchecked(eth.payload_mut());
        ip.set_hop_limit(ttl - 1);
        let hc = ip.checksum();
        ip.set_checksum(checksum_after_ttl_decrement(hc));
        eth.set_dst_addr(hop.dst);
        eth.set_src_addr(hop.src);
    }

    /// The frames the fast path does not take (shorter than Ethernet and
    /// a 20-byte IPv4 header, or not version 4 with five header words),
    /// through smoltcp's checked views.
    #[cold]
    #[inline(never)]
    fn handle_checked<B: PacketBuf>(&self, frame: &mut Frame<'_, B>) -> Verdict {
        let Ok(eth) = EthernetFrame::new_checked(frame.data()) else {
            return Verdict::Discard(Discard::Malformed);
        };
        if eth.ethertype() != EthernetProtocol::Ipv4 {
            return Verdict::Discard(Discard::NotIpv4);
        }
        let Ok(ip) = Ipv4Packet::new_checked(eth.payload()) else {
            return Verdict::Discard(Discard::Malformed);
        };
        let hlen = ip.header_len() as usize;
        if ip.version() != 4 || hlen < 20 {
            return Verdict::Discard(Discard::Malformed);
        }
        let ok = match frame.l3_checksum() {
            Checksum::Good => true,
            Checksum::Bad => false,
            Checksum::Unknown => header_checksum_ok(&ip.as_ref()[..hlen]),
        };
        if !ok {
            return Verdict::Discard(Discard::BadChecksum);
        }
        let ttl = ip.hop_limit();
        if ttl <= 1 {
            return Verdict::Discard(Discard::TtlExpired);
        }
        let Some(id) = self.table.lpm.lookup(u32::from(ip.dst_addr())) else {
            return Verdict::Discard(Discard::NoRoute);
        };
        let hop = self.table.hop(id);
        Self::rewrite(frame, ttl, hop);
        Verdict::Out(hop.port)
    }
}

impl PacketHandler for L3Fwd {
    #[inline(always)]
    fn handle<B: PacketBuf>(&mut self, frame: &mut Frame<'_, B>) -> Verdict {
        let data = frame.data();
        // One length test for both headers, then unchecked views: every
        // accessor below reads inside the first FAST_LEN bytes.
        if data.len() < FAST_LEN {
            return self.handle_checked(frame);
        }
        let eth = EthernetFrame::new_unchecked(data);
        if eth.ethertype() != EthernetProtocol::Ipv4 {
            return discard(Discard::NotIpv4);
        }
        let ip = Ipv4Packet::new_unchecked(eth.payload());
        // The checksum over the first 20 bytes is worked out first (and
        // used only once they are known to be the whole header): its
        // loads are then the header's first, rather than rebuilt from the
        // fields tested below.
        let ok = match frame.l3_checksum() {
            Checksum::Good => true,
            Checksum::Bad => false,
            Checksum::Unknown => match <&[u8; 20]>::try_from(&ip.as_ref()[..20]) {
                Ok(h) => header20_checksum_ok(h),
                Err(_) => false,
            },
        };
        if ip.version() != 4 || ip.header_len() != 20 {
            return self.handle_checked(frame);
        }
        // What `new_checked` tests beyond the length: the total length
        // covers the header (20) and lies inside the frame, in one
        // unsigned compare.
        let total = ip.total_len() as usize;
        if total.wrapping_sub(20) > data.len() - FAST_LEN {
            return discard(Discard::Malformed);
        }
        if !ok {
            return discard(Discard::BadChecksum);
        }
        // The same as handle_checked's end, written out again so that
        // each verdict is returned where it is decided (see rewrite).
        let ttl = ip.hop_limit();
        if ttl <= 1 {
            return discard(Discard::TtlExpired);
        }
        let Some(id) = self.table.lpm.lookup(u32::from(ip.dst_addr())) else {
            return discard(Discard::NoRoute);
        };
        let hop = self.table.hop(id);
        Self::rewrite(frame, ttl, hop);
        Verdict::Out(hop.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::SliceBuf;
    use crate::buf::RxChecksum;
    use crate::testing::Rng;
    use smoltcp::wire::{EthernetRepr, IpProtocol, Ipv4Address, Ipv4Repr};

    fn mac(last: u8) -> MacAddr {
        MacAddr([2, 0, 0, 0, 0, last])
    }

    fn table(text: &str) -> Arc<Table> {
        let routes = parse_routes(text, 2).unwrap();
        let mut t = Table::new(&routes, 2).unwrap();
        t.set_port_macs(&[mac(0xa0), mac(0xa1)]);
        Arc::new(t)
    }

    /// An Ethernet + IPv4 (+ 8 payload bytes) frame, built with smoltcp.
    fn frame(dst: Ipv4Address, ttl: u8, ident_seed: u64) -> Vec<u8> {
        let ip = Ipv4Repr {
            src_addr: Ipv4Address::new(192, 0, 2, (ident_seed % 250) as u8 + 1),
            dst_addr: dst,
            next_header: if ident_seed % 2 == 0 {
                IpProtocol::Udp
            } else {
                IpProtocol::Tcp
            },
            payload_len: 8,
            hop_limit: ttl,
        };
        let eth = EthernetRepr {
            src_addr: EthernetAddress([2, 9, 9, 9, 9, 9]),
            dst_addr: EthernetAddress([2, 0, 0, 0, 0, 0xa0]),
            ethertype: EthernetProtocol::Ipv4,
        };
        let mut b = vec![0u8; 14 + 20 + 8];
        let mut f = EthernetFrame::new_unchecked(&mut b[..]);
        eth.emit(&mut f);
        let mut p = Ipv4Packet::new_unchecked(f.payload_mut());
        ip.emit(&mut p, &smoltcp::phy::ChecksumCapabilities::default());
        // Vary the identification so the checksums vary too; then refill.
        p.set_ident((ident_seed >> 8) as u16);
        p.fill_checksum();
        b
    }

    fn run(h: &mut L3Fwd, b: &mut [u8]) -> Verdict {
        h.handle(&mut Frame::new(&mut SliceBuf::whole(b), 0))
    }

    #[test]
    fn routes_file_errors_name_the_line() {
        let ok = "# comment\n\n10.0.0.0/8 1 02:00:00:00:00:01  # trailing\n0.0.0.0/0 0 02:00:00:00:00:02\n";
        let r = parse_routes(ok, 2).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!((r[0].len, r[0].port), (8, 1));
        for (text, line, says) in [
            ("10.0.0.0/8 1", 1, "has 2 fields"),
            ("\n10.0.0.0 1 02:00:00:00:00:01", 2, "PREFIX/LEN"),
            ("10.0.0.300/8 1 02:00:00:00:00:01", 1, "not an IPv4"),
            ("10.0.0.0/33 1 02:00:00:00:00:01", 1, "prefix length"),
            ("10.0.0.1/8 1 02:00:00:00:00:01", 1, "host bits"),
            ("10.0.0.0/8 2 02:00:00:00:00:01", 1, "does not exist"),
            ("10.0.0.0/8 x 02:00:00:00:00:01", 1, "port index"),
            ("10.0.0.0/8 0 02:00:00:00:01", 1, "six parts"),
        ] {
            let e = parse_routes(text, 2).unwrap_err();
            let s = e.to_string();
            assert!(s.starts_with(&format!("line {line}:")), "{text}: {s}");
            assert!(s.contains(says), "{text}: {s}");
            assert!(!s.contains('\n'), "one line: {s}");
        }
        assert_eq!(parse_routes("# nothing\n", 2), Err(RouteError::Empty));
    }

    #[test]
    fn forwards_to_the_longest_match_with_exact_ttl_and_checksum() {
        let t = table(
            "10.0.0.0/8 1 02:00:00:00:00:11\n\
             10.1.0.0/16 0 02:00:00:00:00:12\n\
             10.1.2.0/24 1 02:00:00:00:00:13\n\
             10.1.2.128/25 0 02:00:00:00:00:14\n\
             10.1.2.200/32 1 02:00:00:00:00:15\n",
        );
        let mut h = L3Fwd::new(t.clone());
        let mut rng = Rng(7);
        let cases = [
            ([10, 9, 9, 9], 1, 0x11),
            ([10, 1, 9, 9], 0, 0x12),
            ([10, 1, 2, 1], 1, 0x13),
            ([10, 1, 2, 130], 0, 0x14),
            ([10, 1, 2, 200], 1, 0x15),
        ];
        for _ in 0..2000 {
            let (a, port, hop) = cases[rng.below(cases.len() as u64) as usize];
            let ttl = 2 + rng.below(254) as u8;
            let mut b = frame(Ipv4Address::from(a), ttl, rng.next_u64());
            let before = b.clone();
            assert_eq!(run(&mut h, &mut b), Verdict::Out(port));
            let eth = EthernetFrame::new_checked(&b[..]).unwrap();
            assert_eq!(eth.dst_addr(), EthernetAddress(mac(hop).0));
            assert_eq!(eth.src_addr(), EthernetAddress(mac(0xa0 + port as u8).0));
            let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
            assert_eq!(ip.hop_limit(), ttl - 1);
            assert!(ip.verify_checksum(), "incremental checksum is valid");
            // Exactly what a full recomputation gives.
            let mut full = b.clone();
            let mut f = EthernetFrame::new_unchecked(&mut full[..]);
            let mut p = Ipv4Packet::new_unchecked(f.payload_mut());
            p.fill_checksum();
            assert_eq!(b, full);
            // Nothing but TTL, checksum and MACs changed.
            assert_eq!(b[14 + 10..], full[14 + 10..]);
            assert_eq!(b[12..14 + 8], before[12..14 + 8]);
            assert_eq!(b[14 + 9..14 + 10], before[14 + 9..14 + 10]);
        }
        assert_eq!(t.lookup([10, 1, 2, 200].into()), Some((1, mac(0x15))));
    }

    #[test]
    fn checksum_adjust_matches_recomputation_everywhere() {
        // Every TTL, with header checksums spread over the whole range.
        let mut rng = Rng(99);
        for ttl in 2..=255u8 {
            for _ in 0..64 {
                let mut b = frame(Ipv4Address::new(10, 0, 0, 1), ttl, rng.next_u64());
                let mut f = EthernetFrame::new_unchecked(&mut b[..]);
                let mut p = Ipv4Packet::new_unchecked(f.payload_mut());
                let proto = u8::from(p.next_header()) as u16;
                let hc = p.checksum();
                p.set_hop_limit(ttl - 1);
                p.fill_checksum();
                let want = p.checksum();
                let got = checksum_adjust(
                    hc,
                    (ttl as u16) << 8 | proto,
                    ((ttl - 1) as u16) << 8 | proto,
                );
                assert_eq!(got, want, "ttl {ttl} hc {hc:#06x}");
            }
        }
    }

    #[test]
    fn fast_header_check_agrees_with_smoltcp() {
        let mut rng = Rng(5);
        for i in 0..20_000u64 {
            let mut b = frame(Ipv4Address::new(10, 0, 0, 1), 64, rng.next_u64());
            if i % 2 == 1 {
                let at = 14 + rng.below(20) as usize;
                b[at] ^= 1 << rng.below(8);
            }
            let ip = Ipv4Packet::new_unchecked(&b[14..]);
            let hlen = ip.header_len() as usize;
            if hlen < 20 || hlen > b.len() - 14 {
                continue; // the flip broke the length: new_checked refuses it
            }
            assert_eq!(header_checksum_ok(&b[14..14 + hlen]), ip.verify_checksum());
        }
    }

    /// Fills `b` for checksum tests: all 0xff (`kind` 0), all 0x00
    /// (`kind` 1) or random bytes, with about one byte in `flip_one_in`
    /// then flipped at random (the ones'-complement edge cases and their
    /// neighbours).
    fn edge_bytes(rng: &mut Rng, b: &mut [u8], kind: u64, flip_one_in: u64) {
        for x in b.iter_mut() {
            let base = match kind {
                0 => 0xff,
                1 => 0,
                _ => rng.next_u64() as u8,
            };
            let flip = if rng.below(flip_one_in) == 0 {
                rng.next_u64() as u8
            } else {
                0
            };
            *x = base ^ flip;
        }
    }

    #[test]
    fn fast_header_check_agrees_with_smoltcp_at_every_header_length() {
        let mut rng = Rng(11);
        for i in 0..40_000u64 {
            let words = 5 + rng.below(11) as usize; // 20..=60 bytes
            let mut b = vec![0u8; words * 4];
            edge_bytes(&mut rng, &mut b, i % 4, 8);
            b[0] = 0x40 | words as u8;
            let mut ip = Ipv4Packet::new_unchecked(&mut b[..]);
            if i % 3 != 0 {
                ip.fill_checksum();
            }
            let ip = Ipv4Packet::new_unchecked(&b[..]);
            assert_eq!(
                header_checksum_ok(&b),
                ip.verify_checksum(),
                "{} bytes: {b:02x?}",
                b.len()
            );
        }
    }

    #[test]
    fn next_hops_past_the_limit_name_their_line() {
        let line = |i: usize| {
            let b = i.to_be_bytes();
            format!(
                "10.{}.{}.0/24 0 02:00:00:{:02x}:{:02x}:00\n",
                b[6], b[7], b[6], b[7]
            )
        };
        let text: String = (0..MAX_HOPS).map(line).collect();
        let t = Table::new(&parse_routes(&text, 1).unwrap(), 1).unwrap();
        assert_eq!(
            t.lookup([10, 15, 255, 1].into()),
            Some((0, MacAddr([2, 0, 0, 15, 255, 0])))
        );
        let text = text + &line(MAX_HOPS);
        let e = Table::new(&parse_routes(&text, 1).unwrap(), 1).unwrap_err();
        assert!(
            e.to_string()
                .starts_with(&format!("line {}: more than {MAX_HOPS}", MAX_HOPS + 1)),
            "{e}"
        );
    }

    #[test]
    fn ttl_decrement_update_is_equation_3_for_every_checksum() {
        for hc in 0..=u16::MAX {
            for ttl in [2u8, 3, 64, 128, 255] {
                assert_eq!(
                    checksum_after_ttl_decrement(hc),
                    checksum_adjust(hc, (ttl as u16) << 8, ((ttl - 1) as u16) << 8),
                    "hc {hc:#06x} ttl {ttl}"
                );
            }
        }
    }

    #[test]
    fn twenty_byte_header_check_agrees_with_smoltcp() {
        // Random headers (version 4, five words), half with a right
        // checksum, some with runs of 0x00 or 0xff, some with one bit off.
        let mut rng = Rng(0x20b);
        for i in 0..100_000u64 {
            let mut h = [0u8; 20];
            edge_bytes(&mut rng, &mut h, i % 5, 6);
            h[0] = 0x45;
            if i % 2 == 0 {
                Ipv4Packet::new_unchecked(&mut h[..]).fill_checksum();
                if i % 8 == 0 {
                    h[1 + rng.below(19) as usize] ^= 1 << rng.below(8);
                }
            }
            let want = Ipv4Packet::new_unchecked(&h[..]).verify_checksum();
            assert_eq!(header20_checksum_ok(&h), want, "{h:02x?}");
            assert_eq!(header_checksum_ok(&h), want, "{h:02x?}");
        }
        // The carry cases: every word 0xffff but the first, and a header
        // whose checksum field makes the sum wrap exactly.
        let mut h = [0xffu8; 20];
        h[0] = 0x45;
        for c in 0..=u16::MAX {
            h[10..12].copy_from_slice(&c.to_be_bytes());
            let want = Ipv4Packet::new_unchecked(&h[..]).verify_checksum();
            assert_eq!(header20_checksum_ok(&h), want, "checksum field {c:#06x}");
        }
    }

    #[test]
    fn headers_that_do_not_hold_together_are_malformed() {
        let mut h = L3Fwd::new(table("10.0.0.0/8 1 02:00:00:00:00:11\n"));
        let good = frame(Ipv4Address::new(10, 0, 0, 1), 64, 3);
        let with = |f: &dyn Fn(&mut Ipv4Packet<&mut [u8]>)| {
            let mut b = good.clone();
            let mut p = Ipv4Packet::new_unchecked(&mut b[14..]);
            f(&mut p);
            p.fill_checksum();
            b
        };
        // Header length under 20 (IHL 4), version 6, total length under
        // the header, total length past the frame.
        for mut b in [
            with(&|p| p.set_header_len(16)),
            with(&|p| p.set_version(6)),
            with(&|p| p.set_total_len(19)),
            with(&|p| p.set_total_len(29)),
        ] {
            assert_eq!(run(&mut h, &mut b), Verdict::Discard(Discard::Malformed));
        }
        // A total length shorter than the frame (Ethernet padding) is fine.
        let mut b = with(&|p| p.set_total_len(20));
        assert_eq!(run(&mut h, &mut b), Verdict::Out(1));
        // Runts: shorter than Ethernet, and IPv4 shorter than its header.
        assert_eq!(
            run(&mut h, &mut good.clone()[..13]),
            Verdict::Discard(Discard::Malformed)
        );
        assert_eq!(
            run(&mut h, &mut good.clone()[..33]),
            Verdict::Discard(Discard::Malformed)
        );
        let mut short_arp = good.clone();
        short_arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(
            run(&mut h, &mut short_arp[..20]),
            Verdict::Discard(Discard::NotIpv4)
        );
    }

    #[test]
    fn headers_with_options_take_the_checked_path_and_are_forwarded() {
        let mut h = L3Fwd::new(table("10.0.0.0/8 1 02:00:00:00:00:11\n"));
        let mut rng = Rng(0x0b7);
        for words in 6..=15usize {
            // Ethernet, an IPv4 header of `words` words (options: NOPs),
            // 8 payload bytes.
            let hlen = words * 4;
            let base = frame(Ipv4Address::new(10, 1, 2, 3), 9, rng.next_u64());
            let mut b = base[..14 + 20].to_vec();
            b.resize(14 + hlen, 1); // option type 1: no operation
            b.extend_from_slice(&base[14 + 20..]);
            let mut p = Ipv4Packet::new_unchecked(&mut b[14..]);
            p.set_header_len(hlen as u8);
            p.set_total_len((hlen + 8) as u16);
            p.fill_checksum();
            let mut bad = b.clone();
            bad[14 + hlen - 1] ^= 0x10; // inside the options
            assert_eq!(run(&mut h, &mut b), Verdict::Out(1), "{words} words");
            let p = Ipv4Packet::new_checked(&b[14..]).unwrap();
            assert_eq!(p.hop_limit(), 8);
            assert!(p.verify_checksum(), "{words} words");
            assert_eq!(
                run(&mut h, &mut bad),
                Verdict::Discard(Discard::BadChecksum),
                "{words} words"
            );
        }
    }

    #[test]
    fn drops_are_counted_by_reason() {
        let mut h = L3Fwd::new(table("10.0.0.0/8 1 02:00:00:00:00:11\n"));
        let mut b = frame(Ipv4Address::new(10, 0, 0, 1), 1, 3);
        assert_eq!(run(&mut h, &mut b), Verdict::Discard(Discard::TtlExpired));
        let mut b = frame(Ipv4Address::new(10, 0, 0, 1), 0, 3);
        assert_eq!(run(&mut h, &mut b), Verdict::Discard(Discard::TtlExpired));
        let mut b = frame(Ipv4Address::new(11, 0, 0, 1), 64, 3);
        assert_eq!(run(&mut h, &mut b), Verdict::Discard(Discard::NoRoute));
        let mut b = frame(Ipv4Address::new(10, 0, 0, 1), 64, 3);
        b[14 + 10] ^= 0xff; // corrupt the header checksum
        assert_eq!(run(&mut h, &mut b), Verdict::Discard(Discard::BadChecksum));
        // ... unless the device says it checked (and then it is trusted).
        let checked = |l3| RxChecksum {
            l3,
            l4: Checksum::Unknown,
        };
        let mut sb = SliceBuf::whole(&mut b).with_rx_checksum(checked(Checksum::Good));
        assert_eq!(h.handle(&mut Frame::new(&mut sb, 0)), Verdict::Out(1));
        let mut b = frame(Ipv4Address::new(10, 0, 0, 1), 64, 3);
        let mut sb = SliceBuf::whole(&mut b).with_rx_checksum(checked(Checksum::Bad));
        assert_eq!(
            h.handle(&mut Frame::new(&mut sb, 0)),
            Verdict::Discard(Discard::BadChecksum)
        );
        let mut b = frame(Ipv4Address::new(10, 0, 0, 1), 64, 3);
        b[12] = 0x86; // IPv6 ethertype
        b[13] = 0xdd;
        assert_eq!(run(&mut h, &mut b), Verdict::Discard(Discard::NotIpv4));
        let mut b = frame(Ipv4Address::new(10, 0, 0, 1), 64, 3);
        b.truncate(14 + 12);
        assert_eq!(run(&mut h, &mut b), Verdict::Discard(Discard::Malformed));
    }
}
