//! A small neighbour cache for the bypass engine's next hops, and ARP.
//!
//! smoltcp's interface still answers ARP requests and neighbour
//! solicitations for our addresses and keeps its own neighbour cache for
//! the smoltcp engine and UDP, but that cache is not reachable from
//! outside. The bypass engine builds its frames itself, so the stack keeps
//! one [`Neighbours`] cache per family: IPv4 learnt from every ARP frame it
//! sees, IPv6 from neighbour solicitations and advertisements
//! ([`super::nd`]), both from the SYNs of passive opens (whose source MAC
//! is the next hop); bounded in size. A connection whose next hop is
//! unknown sends a (rate-limited) ARP request or neighbour solicitation
//! and waits; it is woken when an ARP or ND frame arrives.

use std::collections::HashMap;
use std::hash::Hash;

use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr, Ipv4Address,
};

/// Entries older than this are asked for again.
const TTL_US: u64 = 300_000_000;
/// Least time between two requests for one address.
const REQUEST_GAP_US: u64 = 100_000;
/// Most entries; beyond it the cache starts over.
const MAX_ENTRIES: usize = 1 << 16;

/// Next hops of one family (`A`: its address type): their MACs, and
/// when each was last asked for.
#[derive(Debug)]
pub(super) struct Neighbours<A> {
    map: HashMap<A, (EthernetAddress, u64), ahash::RandomState>,
    asked: HashMap<A, u64, ahash::RandomState>,
}

/// The IPv4 next hops (ARP).
pub(super) type ArpCache = Neighbours<Ipv4Address>;

impl<A> Default for Neighbours<A> {
    fn default() -> Self {
        Neighbours {
            map: HashMap::default(),
            asked: HashMap::default(),
        }
    }
}

impl ArpCache {
    /// Learns the sender of an ARP frame (request or reply).
    pub fn learn_from(&mut self, frame: &[u8], now: u64) {
        let Ok(eth) = EthernetFrame::new_checked(frame) else {
            return;
        };
        let Ok(arp) = ArpPacket::new_checked(eth.payload()) else {
            return;
        };
        if let Ok(ArpRepr::EthernetIpv4 {
            source_hardware_addr,
            source_protocol_addr,
            ..
        }) = ArpRepr::parse(&arp)
        {
            if source_hardware_addr.is_unicast() && !source_protocol_addr.is_unspecified() {
                self.learn(source_protocol_addr, source_hardware_addr, now);
            }
        }
    }
}

impl<A: Copy + Eq + Hash> Neighbours<A> {
    /// Records `ip` at `mac`.
    pub fn learn(&mut self, ip: A, mac: EthernetAddress, now: u64) {
        if self.map.len() >= MAX_ENTRIES && !self.map.contains_key(&ip) {
            self.map.clear();
        }
        self.map.insert(ip, (mac, now));
        self.asked.remove(&ip);
    }

    /// True if `ip` is in the cache or was asked for: an answer about it
    /// is expected.
    pub fn expects(&self, ip: A) -> bool {
        self.map.contains_key(&ip) || self.asked.contains_key(&ip)
    }

    /// The MAC of `ip`, if known and fresh.
    pub fn lookup(&self, ip: A, now: u64) -> Option<EthernetAddress> {
        self.map
            .get(&ip)
            .filter(|(_, at)| now.saturating_sub(*at) < TTL_US)
            .map(|(m, _)| *m)
    }

    /// True if a request for `ip` may go out now (and notes that it did).
    pub fn may_ask(&mut self, ip: A, now: u64) -> bool {
        if self.asked.len() >= MAX_ENTRIES {
            self.asked.clear();
        }
        match self.asked.get(&ip) {
            Some(&at) if now.saturating_sub(at) < REQUEST_GAP_US => false,
            _ => {
                self.asked.insert(ip, now);
                true
            }
        }
    }
}

/// Writes an ARP request for `target` from `mac`/`ip` into `buf`; returns
/// the frame's length.
pub(super) fn request(
    buf: &mut [u8],
    mac: EthernetAddress,
    ip: Ipv4Address,
    target: Ipv4Address,
) -> usize {
    let arp = ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Request,
        source_hardware_addr: mac,
        source_protocol_addr: ip,
        target_hardware_addr: EthernetAddress([0; 6]),
        target_protocol_addr: target,
    };
    let eth = EthernetRepr {
        src_addr: mac,
        dst_addr: EthernetAddress::BROADCAST,
        ethertype: EthernetProtocol::Arp,
    };
    let len = eth.buffer_len() + arp.buffer_len();
    let mut frame = EthernetFrame::new_unchecked(&mut buf[..len]);
    eth.emit(&mut frame);
    arp.emit(&mut ArpPacket::new_unchecked(frame.payload_mut()));
    len
}
