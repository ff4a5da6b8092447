//! Neighbour discovery (RFC 4861) for the bypass engine's IPv6 next hops:
//! what the [`NdCache`] learns from the solicitations and advertisements
//! the stack receives, and the solicitation a connection sends when its
//! next hop is unknown. smoltcp's interface still answers solicitations
//! for our addresses; this only watches them.

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, Icmpv6Packet, Icmpv6Repr,
    IpProtocol, Ipv6Address, Ipv6Packet, Ipv6Repr, NdiscRepr, RawHardwareAddress,
};

use super::arp::Neighbours;
use super::classify::Ours;

/// The IPv6 next hops (neighbour discovery).
pub(super) type NdCache = Neighbours<Ipv6Address>;

/// Hop limit of every neighbour discovery message: one that arrives with
/// less came through a router and is ignored (RFC 4861 7.1).
const ND_HOP_LIMIT: u8 = 255;

impl NdCache {
    /// Learns from a neighbour discovery frame (already classified, its
    /// extension headers removed), as RFC 4861 7.2.3 and 7.2.5 allow: the
    /// sender of a solicitation for one of `ours` at its source link-layer
    /// address, and the target of an advertisement we asked for (or know
    /// already) at its target link-layer address (or, without that
    /// option, at the frame's source MAC when the target answers for
    /// itself). Anything else, or anything that does not parse, teaches
    /// nothing: unsolicited advertisements cannot fill the cache.
    pub fn learn_from(&mut self, frame: &[u8], ours: &Ours, now: u64) {
        let Some((ip, mac, solicitation_for)) = neighbour_in(frame) else {
            return;
        };
        let wanted = match solicitation_for {
            Some(target) => ours.has_v6(target),
            None => self.expects(ip),
        };
        if wanted && mac.is_unicast() && !ip.is_unspecified() && !ip.is_multicast() {
            self.learn(ip, mac, now);
        }
    }
}

/// The neighbour a solicitation or advertisement tells of, its MAC, and
/// the target a solicitation asks for.
fn neighbour_in(frame: &[u8]) -> Option<(Ipv6Address, EthernetAddress, Option<Ipv6Address>)> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    let ip = Ipv6Packet::new_checked(eth.payload()).ok()?;
    if ip.next_header() != IpProtocol::Icmpv6 || ip.hop_limit() != ND_HOP_LIMIT {
        return None;
    }
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    let icmp = Icmpv6Packet::new_checked(ip.payload()).ok()?;
    // The classifier verified the checksum where it had to.
    let repr = Icmpv6Repr::parse(&src, &dst, &icmp, &ChecksumCapabilities::ignored()).ok()?;
    let ll =
        |l: RawHardwareAddress| (l.len() == 6).then(|| EthernetAddress::from_bytes(l.as_bytes()));
    match repr {
        Icmpv6Repr::Ndisc(NdiscRepr::NeighborSolicit {
            lladdr: Some(l),
            target_addr,
        }) => Some((src, ll(l)?, Some(target_addr))),
        Icmpv6Repr::Ndisc(NdiscRepr::NeighborAdvert {
            target_addr,
            lladdr,
            ..
        }) => match lladdr {
            Some(l) => Some((target_addr, ll(l)?, None)),
            None if src == target_addr => Some((target_addr, eth.src_addr(), None)),
            None => None,
        },
        _ => None,
    }
}

/// The solicited-node multicast group of `a` (RFC 4291 2.7.1) and the
/// MAC it goes to (33:33 and the group's last four bytes, RFC 2464 7).
pub(crate) fn solicited_node(a: Ipv6Address) -> (Ipv6Address, EthernetAddress) {
    let o = a.octets();
    let mut g = [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0, 0, 0];
    g[13..].copy_from_slice(&o[13..]);
    (
        Ipv6Address::from(g),
        EthernetAddress([0x33, 0x33, 0xff, o[13], o[14], o[15]]),
    )
}

/// Writes an Ethernet frame carrying `icmp` from `src_mac`/`src` to
/// `dst_mac`/`dst` into `buf`, its checksum computed here; returns the
/// frame's length (0 if `buf` is short).
#[allow(clippy::too_many_arguments)]
pub(crate) fn emit_icmp6(
    buf: &mut [u8],
    src_mac: EthernetAddress,
    dst_mac: EthernetAddress,
    src: Ipv6Address,
    dst: Ipv6Address,
    hop_limit: u8,
    icmp: &Icmpv6Repr,
) -> usize {
    let ip = Ipv6Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: IpProtocol::Icmpv6,
        payload_len: icmp.buffer_len(),
        hop_limit,
    };
    let eth = EthernetRepr {
        src_addr: src_mac,
        dst_addr: dst_mac,
        ethertype: EthernetProtocol::Ipv6,
    };
    let len = eth.buffer_len() + ip.buffer_len() + icmp.buffer_len();
    let Some(room) = buf.get_mut(..len) else {
        return 0;
    };
    let mut frame = EthernetFrame::new_unchecked(room);
    eth.emit(&mut frame);
    let mut p = Ipv6Packet::new_unchecked(frame.payload_mut());
    ip.emit(&mut p);
    icmp.emit(
        &src,
        &dst,
        &mut Icmpv6Packet::new_unchecked(p.payload_mut()),
        &ChecksumCapabilities::default(),
    );
    len
}

/// Writes a neighbour solicitation for `target` from `mac`/`src` (ours)
/// into `buf`, to the target's solicited-node group, with our link-layer
/// address; returns the frame's length (0 if `buf` is short).
pub(super) fn solicit(
    buf: &mut [u8],
    mac: EthernetAddress,
    src: Ipv6Address,
    target: Ipv6Address,
) -> usize {
    let (group, group_mac) = solicited_node(target);
    let icmp = Icmpv6Repr::Ndisc(NdiscRepr::NeighborSolicit {
        target_addr: target,
        lladdr: Some(mac.into()),
    });
    emit_icmp6(buf, mac, group_mac, src, group, ND_HOP_LIMIT, &icmp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::classify::{classify, Class, Ours};

    const US: Ipv6Address = Ipv6Address::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);
    const PEER: Ipv6Address = Ipv6Address::new(0xfd00, 0, 0, 0, 0, 0, 0xab, 0xcdef);
    const MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 1]);
    const PEER_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 2]);

    fn ours(a: Ipv6Address, mac: EthernetAddress) -> Ours {
        Ours {
            mac,
            v4: None,
            v6: vec![a],
        }
    }

    /// An advertisement from the peer for `target` to us, at `hop_limit`.
    fn advert(target: Ipv6Address, lladdr: bool, hop_limit: u8) -> Vec<u8> {
        let icmp = Icmpv6Repr::Ndisc(NdiscRepr::NeighborAdvert {
            flags: smoltcp::wire::NdiscNeighborFlags::SOLICITED,
            target_addr: target,
            lladdr: lladdr.then(|| PEER_MAC.into()),
        });
        let mut v = vec![0; 128];
        let n = emit_icmp6(&mut v, PEER_MAC, MAC, PEER, US, hop_limit, &icmp);
        v.truncate(n);
        v
    }

    #[test]
    fn a_solicitation_goes_to_the_solicited_node_group_and_teaches_its_sender() {
        let mut b = [0u8; 128];
        let n = solicit(&mut b, MAC, US, PEER);
        assert!(n > 0);
        let f = &b[..n];
        let eth = EthernetFrame::new_checked(f).unwrap();
        assert_eq!(
            eth.dst_addr(),
            EthernetAddress([0x33, 0x33, 0xff, 0xab, 0xcd, 0xef])
        );
        let ip = Ipv6Packet::new_checked(eth.payload()).unwrap();
        assert_eq!(
            ip.dst_addr(),
            Ipv6Address::new(0xff02, 0, 0, 0, 0, 1, 0xffab, 0xcdef)
        );
        // The peer classifies it as neighbour discovery (checksum right,
        // it is in the group) and learns us from it.
        let peer = ours(PEER, PEER_MAC);
        assert_eq!(classify(f, &peer, true), Ok(Class::Nd));
        let mut c = NdCache::default();
        c.learn_from(f, &peer, 0);
        assert_eq!(c.lookup(US, 0), Some(MAC));
        // A solicitation for an address that is not the receiver's
        // teaches it nothing.
        let mut c = NdCache::default();
        c.learn_from(f, &ours(US, MAC), 0);
        assert_eq!(c.lookup(US, 0), None);
        // Too short a buffer: nothing written.
        assert_eq!(solicit(&mut b[..40], MAC, US, PEER), 0);
    }

    #[test]
    fn an_advertisement_teaches_only_what_was_asked_for() {
        let us = ours(US, MAC);
        let f = advert(PEER, true, 255);
        assert_eq!(classify(&f, &us, true), Ok(Class::Nd));
        // Unsolicited: nothing learnt (RFC 4861 7.2.5).
        let mut c = NdCache::default();
        c.learn_from(&f, &us, 0);
        assert_eq!(c.lookup(PEER, 0), None);
        // Asked for: learnt.
        assert!(c.may_ask(PEER, 0));
        c.learn_from(&f, &us, 0);
        assert_eq!(c.lookup(PEER, 0), Some(PEER_MAC));
        // Without the option, the target answering for itself is at the
        // frame's source; one answering for another teaches nothing.
        let mut c = NdCache::default();
        c.may_ask(PEER, 0);
        c.learn_from(&advert(PEER, false, 255), &us, 0);
        assert_eq!(c.lookup(PEER, 0), Some(PEER_MAC));
        let other = Ipv6Address::new(0xfd00, 0, 0, 0, 0, 0, 0, 9);
        c.may_ask(other, 0);
        c.learn_from(&advert(other, false, 255), &us, 0);
        assert_eq!(c.lookup(other, 0), None);
        // Hop limit below 255: ignored (RFC 4861 7.1.2).
        let mut c = NdCache::default();
        c.may_ask(PEER, 0);
        c.learn_from(&advert(PEER, true, 254), &us, 0);
        assert_eq!(c.lookup(PEER, 0), None);
        // Every truncation teaches nothing and never panics.
        for n in 0..f.len() {
            c.learn_from(&f[..n], &us, 0);
        }
        assert_eq!(c.lookup(PEER, 0), None);
    }
}
