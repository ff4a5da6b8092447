//! The ICMPv6 errors a host owes (RFC 8200 4.2, 4.4 and 4.8, RFC 4443 3.4)
//! for IPv6 packets the classifier refused as unsupported: a Parameter
//! Problem pointing at an option whose type says "discard and tell", at a
//! routing header with segments left (we do not forward), or at a next
//! header we do not know. Rate-limited (RFC 4443 2.4 (f)) by a token bucket
//! per core; never sent about a packet from the unspecified or a multicast
//! address, and about a packet to a group only where RFC 8200 asks for it
//! (option actions `10`). Malformed packets get no error: they are counted
//! and dropped like any other (an error about them would help an attacker
//! map the stack more than it helps a peer).
//!
//! Destination Unreachable (port unreachable) is deliberately not sent for
//! UDP to a closed port, as over IPv4: it quotes the datagram and so is
//! always larger than what provoked it. TCP answers closed ports with RST.

use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, Icmpv6ParamProblem, Icmpv6Repr, IpProtocol,
    Ipv6Address, Ipv6ExtHeader, Ipv6OptionFailureType, Ipv6OptionRepr, Ipv6OptionsIterator,
    Ipv6Packet, Ipv6Repr, Ipv6RoutingHeader, IPV6_HEADER_LEN, IPV6_MIN_MTU,
};

use super::classify::{Ours, MAX_EXT_HEADERS};

/// Errors allowed in a burst, and refilled per second.
const BURST: u32 = 10;
const PER_SECOND: u64 = 100;

/// A token bucket for ICMPv6 errors.
#[derive(Debug)]
pub(super) struct Limiter {
    tokens: u32,
    at_us: u64,
}

impl Default for Limiter {
    fn default() -> Limiter {
        Limiter {
            tokens: BURST,
            at_us: 0,
        }
    }
}

impl Limiter {
    /// True if an error may be sent at `now_us` (and takes a token).
    pub fn allow(&mut self, now_us: u64) -> bool {
        let earned = now_us.saturating_sub(self.at_us) * PER_SECOND / 1_000_000;
        if earned > 0 {
            self.tokens = (self.tokens as u64 + earned).min(BURST as u64) as u32;
            self.at_us = now_us;
        }
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }
}

/// The Parameter Problem owed for a refused IPv6 packet, if any: its code
/// and the offset it points at (from the start of the IPv6 header).
pub(super) fn owed(frame: &[u8], ours: &Ours) -> Option<(Icmpv6ParamProblem, u32)> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EthernetProtocol::Ipv6 {
        return None;
    }
    let ip = Ipv6Packet::new_checked(eth.payload()).ok()?;
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    if src.is_unspecified() || src.is_multicast() {
        return None;
    }
    let unicast = ours.has_v6(dst);
    let mut next = ip.next_header();
    // Where the field naming `next` is.
    let mut next_at = 6u32;
    let mut at = IPV6_HEADER_LEN as u32;
    let mut rest = ip.payload();
    for _ in 0..MAX_EXT_HEADERS {
        match next {
            IpProtocol::HopByHop | IpProtocol::Ipv6Opts | IpProtocol::Ipv6Route => {}
            IpProtocol::Tcp
            | IpProtocol::Udp
            | IpProtocol::Icmpv6
            | IpProtocol::Ipv6Frag
            | IpProtocol::Ipv6NoNxt => return None,
            _ if unicast => return Some((Icmpv6ParamProblem::UnrecognizedNxtHdr, next_at)),
            _ => return None,
        }
        let h = Ipv6ExtHeader::new_checked(rest).ok()?;
        let len = (h.header_len() as usize + 1) * 8;
        if next == IpProtocol::Ipv6Route {
            let r = Ipv6RoutingHeader::new_checked(h.payload()).ok()?;
            if r.segments_left() != 0 {
                // Pointing at the routing type we will not act on.
                return unicast.then_some((Icmpv6ParamProblem::ErroneousHdrField, at + 2));
            }
        } else {
            let mut off = at + 2;
            for opt in Ipv6OptionsIterator::new(h.payload()) {
                let opt = opt.ok()?;
                if let Ipv6OptionRepr::Unknown { type_, .. } = opt {
                    match Ipv6OptionFailureType::from(type_) {
                        Ipv6OptionFailureType::Skip => {}
                        Ipv6OptionFailureType::Discard => return None,
                        Ipv6OptionFailureType::DiscardSendAll => {
                            return Some((Icmpv6ParamProblem::UnrecognizedOption, off))
                        }
                        Ipv6OptionFailureType::DiscardSendUnicast => {
                            return unicast.then_some((Icmpv6ParamProblem::UnrecognizedOption, off))
                        }
                    }
                }
                off += opt.buffer_len() as u32;
            }
        }
        next = h.next_header();
        next_at = at;
        at += len as u32;
        rest = rest.get(len..)?;
    }
    None
}

/// Builds the Parameter Problem about `frame` into `room`, from `src` (one
/// of our unicast addresses) and our `mac` back to the sender's MAC;
/// returns its length (0 if `frame` does not parse or `room` is short).
pub(super) fn param_problem(
    room: &mut [u8],
    frame: &[u8],
    mac: EthernetAddress,
    src: Ipv6Address,
    (reason, pointer): (Icmpv6ParamProblem, u32),
) -> usize {
    let Ok(eth) = EthernetFrame::new_checked(frame) else {
        return 0;
    };
    let Ok(ip) = Ipv6Packet::new_checked(eth.payload()) else {
        return 0;
    };
    let Ok(header) = Ipv6Repr::parse(&ip) else {
        return 0;
    };
    // As much of the packet as fits in the minimum MTU.
    let room_for_data = IPV6_MIN_MTU - 2 * IPV6_HEADER_LEN - 8;
    let data = &ip.payload()[..ip.payload().len().min(room_for_data)];
    let icmp = Icmpv6Repr::ParamProblem {
        reason,
        pointer,
        header,
        data,
    };
    super::nd::emit_icmp6(room, mac, eth.src_addr(), src, header.src_addr, 64, &icmp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{syn, tcp6_vec, with_ext6, Ends6};
    use smoltcp::phy::ChecksumCapabilities;
    use smoltcp::wire::{Icmpv6Message, Icmpv6Packet};
    use std::net::Ipv6Addr;

    const US: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);
    const PEER: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2);

    fn ours() -> Ours {
        Ours {
            mac: EthernetAddress([2, 0, 0, 0, 0, 1]),
            v4: None,
            v6: vec![US],
        }
    }

    fn syn6() -> Vec<u8> {
        let e = Ends6 {
            src_mac: [2, 0, 0, 0, 0, 2],
            dst_mac: [2, 0, 0, 0, 0, 1],
            src_ip: PEER,
            dst_ip: US,
        };
        tcp6_vec(&e, &syn(40000, 80, 1))
    }

    #[test]
    fn errors_owed_point_at_what_was_refused() {
        let o = ours();
        let dst = IpProtocol::Ipv6Opts;
        let pad: &[u8] = &[1, 4, 0, 0, 0, 0];
        let f = |chain: &[(IpProtocol, &[u8])]| with_ext6(&syn6(), chain).unwrap();
        // Option 0xbe: action 10, tell even a group; 0xfe: 11, unicast
        // only; 0x7e: 01, discard silently.
        let opt = |t: u8| f(&[(dst, pad), (dst, &[1, 0, t, 2, 0, 0])]);
        use Icmpv6ParamProblem::*;
        assert_eq!(owed(&opt(0xbe), &o), Some((UnrecognizedOption, 40 + 8 + 4)));
        assert_eq!(owed(&opt(0xfe), &o), Some((UnrecognizedOption, 40 + 8 + 4)));
        assert_eq!(owed(&opt(0x7e), &o), None);
        let route = f(&[(IpProtocol::Ipv6Route, &[4, 1, 0, 0, 0, 0])]);
        assert_eq!(owed(&route, &o), Some((ErroneousHdrField, 42)));
        let mut unknown = f(&[(dst, pad)]);
        unknown[14 + 40] = 253;
        assert_eq!(owed(&unknown, &o), Some((UnrecognizedNxtHdr, 40)));
        let mut first = syn6();
        first[14 + 6] = 253;
        assert_eq!(owed(&first, &o), Some((UnrecognizedNxtHdr, 6)));
        // Plain traffic, fragments, no next header: nothing owed.
        assert_eq!(owed(&syn6(), &o), None);
        let mut none = f(&[(dst, pad)]);
        none[14 + 40] = 59;
        assert_eq!(owed(&none, &o), None);
        // From the unspecified address: never.
        let mut from_nowhere = opt(0xbe);
        from_nowhere[14 + 8..14 + 24].fill(0);
        assert_eq!(owed(&from_nowhere, &o), None);
    }

    #[test]
    fn the_error_quotes_the_packet_and_parses_back() {
        let o = ours();
        let frame = with_ext6(&syn6(), &[(IpProtocol::Ipv6Route, &[4, 1, 0, 0, 0, 0])]).unwrap();
        let why = owed(&frame, &o).unwrap();
        let mut room = [0u8; 1514];
        let n = param_problem(&mut room, &frame, o.mac, US, why);
        assert!(n > 0);
        let eth = EthernetFrame::new_checked(&room[..n]).unwrap();
        assert_eq!(eth.dst_addr(), EthernetAddress([2, 0, 0, 0, 0, 2]));
        let ip = Ipv6Packet::new_checked(eth.payload()).unwrap();
        assert_eq!((ip.src_addr(), ip.dst_addr()), (US, PEER));
        let icmp = Icmpv6Packet::new_checked(ip.payload()).unwrap();
        assert!(icmp.verify_checksum(&US, &PEER));
        assert_eq!(icmp.msg_type(), Icmpv6Message::ParamProblem);
        let r = Icmpv6Repr::parse(&US, &PEER, &icmp, &ChecksumCapabilities::default()).unwrap();
        let Icmpv6Repr::ParamProblem { pointer, data, .. } = r else {
            panic!("{r:?}")
        };
        assert_eq!(pointer, 42);
        assert_eq!(data, &frame[14 + 40..], "the whole packet, quoted");
        // A big packet is quoted up to the minimum MTU.
        let mut big = syn6();
        big.resize(1514, 0);
        let l = (big.len() - 14 - 40) as u16;
        big[14 + 4..14 + 6].copy_from_slice(&l.to_be_bytes());
        big[14 + 6] = 253;
        let why = owed(&big, &o).unwrap();
        let n = param_problem(&mut room, &big, o.mac, US, why);
        assert_eq!(n, 14 + IPV6_MIN_MTU);
    }

    #[test]
    fn the_limiter_allows_a_burst_then_a_rate() {
        let mut l = Limiter::default();
        let sent = (0..100).filter(|_| l.allow(5_000_000)).count();
        assert_eq!(sent, BURST as usize);
        assert!(!l.allow(5_000_000));
        assert!(l.allow(5_010_000), "one more after 10 ms");
        assert!(!l.allow(5_010_000));
        let sent = (0..1000).filter(|i| l.allow(6_000_000 + i * 1000)).count();
        assert!((100..=111).contains(&sent), "{sent} in a second");
    }
}
