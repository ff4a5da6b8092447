//! IPv4 forwarding between ports by longest-prefix match: the handler of
//! `bypass l3fwd`.
//!
//! For each frame: Ethernet and IPv4 headers are parsed with `smoltcp::wire`
//! checked views (a frame that does not parse is dropped as malformed); the
//! IPv4 header checksum is verified unless the device already did
//! ([`Frame::l3_checksum`]); the destination is looked up in a DIR-24-8
//! table ([`Lpm`]); the TTL is decremented with an incremental checksum
//! update (RFC 1624, equation 3); the MACs are rewritten to the next hop's
//! and the output port's; the frame goes out of the route's port. Frames
//! that are not IPv4, whose TTL would expire, or with no route are dropped,
//! each with its own reason. No ICMP errors are sent.
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

/// Where a route sends a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Hop {
    port: u16,
    dst: EthernetAddress,
    src: EthernetAddress,
}

/// The routing table: built once, shared read-only by every core.
#[derive(Debug)]
pub struct Table {
    lpm: Lpm,
    hops: Vec<Hop>,
}

impl Table {
    /// Builds the table from `routes`, for `ports` ports whose source MACs
    /// are all zero until [`set_port_macs`](Table::set_port_macs). Routes
    /// with the same port and next hop share an entry.
    pub fn new(routes: &[Route], ports: usize) -> Result<Table, RouteError> {
        let mut lpm = Lpm::new(1 << 16);
        let mut hops: Vec<Hop> = Vec::new();
        let mut ids = std::collections::HashMap::new();
        for (i, r) in routes.iter().enumerate() {
            let line = i + 1;
            if r.port as usize >= ports {
                return Err(RouteError::Line {
                    line,
                    why: format!("port {} does not exist", r.port),
                });
            }
            let id = *ids.entry((r.port, r.next_hop.0)).or_insert_with(|| {
                hops.push(Hop {
                    port: r.port,
                    dst: EthernetAddress(r.next_hop.0),
                    src: EthernetAddress([0; 6]),
                });
                hops.len() as u32 - 1
            });
            lpm.insert(u32::from(r.prefix), r.len, id)
                .map_err(|source| RouteError::Table { line, source })?;
        }
        Ok(Table { lpm, hops })
    }

    /// Sets the source MAC of frames sent out of each port (`macs[i]` for
    /// port `i`).
    pub fn set_port_macs(&mut self, macs: &[MacAddr]) {
        for h in &mut self.hops {
            if let Some(m) = macs.get(h.port as usize) {
                h.src = EthernetAddress(m.0);
            }
        }
    }

    /// The output port and next-hop MAC for `dst`, if a route covers it.
    pub fn lookup(&self, dst: std::net::Ipv4Addr) -> Option<(u16, MacAddr)> {
        let h = self.hops[self.lpm.lookup(u32::from(dst))? as usize];
        Some((h.port, MacAddr(h.dst.0)))
    }

    /// Routes in the table.
    pub fn routes(&self) -> usize {
        self.lpm.routes()
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
/// A 20-byte header, the usual one, is five loads and no loop.
#[inline(always)]
fn header_checksum_ok(header: &[u8]) -> bool {
    let sum = match <&[u8; 20]>::try_from(header) {
        Ok(h) => {
            // Constant indices into an array: no bounds checks.
            let w = |i: usize| u32::from_ne_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]) as u64;
            w(0) + w(4) + w(8) + w(12) + w(16)
        }
        Err(_) => header
            .chunks_exact(4)
            .map(|w| u32::from_ne_bytes([w[0], w[1], w[2], w[3]]) as u64)
            .sum::<u64>(),
    };
    sum != 0 && sum % 0xffff == 0
}

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
}

impl PacketHandler for L3Fwd {
    #[inline(always)]
    fn handle<B: PacketBuf>(&mut self, frame: &mut Frame<'_, B>) -> Verdict {
        let checked = frame.l3_checksum();
        let Ok(mut eth) = EthernetFrame::new_checked(frame.data_mut()) else {
            return Verdict::Discard(Discard::Malformed);
        };
        if eth.ethertype() != EthernetProtocol::Ipv4 {
            return Verdict::Discard(Discard::NotIpv4);
        }
        let Ok(mut ip) = Ipv4Packet::new_checked(eth.payload_mut()) else {
            return Verdict::Discard(Discard::Malformed);
        };
        if ip.version() != 4 {
            return Verdict::Discard(Discard::Malformed);
        }
        match checked {
            Checksum::Good => {}
            Checksum::Bad => return Verdict::Discard(Discard::BadChecksum),
            Checksum::Unknown => {
                let hlen = ip.header_len() as usize;
                if !header_checksum_ok(&ip.as_ref()[..hlen]) {
                    return Verdict::Discard(Discard::BadChecksum);
                }
            }
        }
        let ttl = ip.hop_limit();
        if ttl <= 1 {
            return Verdict::Discard(Discard::TtlExpired);
        }
        let Some(id) = self.table.lpm.lookup(u32::from(ip.dst_addr())) else {
            return Verdict::Discard(Discard::NoRoute);
        };
        // The TTL is the high byte of a 16-bit word whose low byte (the
        // protocol) does not change, and it cancels out of the update: the
        // word goes from ttl << 8 | proto to (ttl - 1) << 8 | proto, and
        // ~m + m' is the same with proto left out.
        let old = (ttl as u16) << 8;
        let new = ((ttl - 1) as u16) << 8;
        ip.set_hop_limit(ttl - 1);
        let hc = ip.checksum();
        ip.set_checksum(checksum_adjust(hc, old, new));
        let hop = self.table.hops[id as usize];
        eth.set_dst_addr(hop.dst);
        eth.set_src_addr(hop.src);
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

    #[test]
    fn fast_header_check_agrees_with_smoltcp_at_every_header_length() {
        let mut rng = Rng(11);
        for i in 0..40_000u64 {
            let words = 5 + rng.below(11) as usize; // 20..=60 bytes
            let mut b = vec![0u8; words * 4];
            for x in b.iter_mut() {
                // Mostly random, sometimes runs of 0x00 or 0xff (the
                // ones'-complement edge cases).
                *x = match i % 4 {
                    0 => 0xff,
                    1 => 0,
                    _ => rng.next_u64() as u8,
                } ^ if rng.below(8) == 0 {
                    rng.next_u64() as u8
                } else {
                    0
                };
            }
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
