//! A small ARP cache for the bypass engine's next hops.
//!
//! smoltcp's interface still answers ARP requests for our address and keeps
//! its own neighbour cache for the smoltcp engine and UDP, but that cache is
//! not reachable from outside. The bypass engine builds its frames itself,
//! so the stack keeps this one: learnt from every ARP frame it sees (and
//! from the SYNs of passive opens, whose source MAC is the next hop),
//! refreshed by traffic, bounded in size. A connection whose next hop is
//! unknown sends a (rate-limited) request and waits; it is woken when an
//! ARP frame arrives.

use std::collections::HashMap;

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

#[derive(Debug, Default)]
pub(super) struct ArpCache {
    map: HashMap<Ipv4Address, (EthernetAddress, u64), ahash::RandomState>,
    asked: HashMap<Ipv4Address, u64, ahash::RandomState>,
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

    /// Records `ip` at `mac`.
    pub fn learn(&mut self, ip: Ipv4Address, mac: EthernetAddress, now: u64) {
        if self.map.len() >= MAX_ENTRIES && !self.map.contains_key(&ip) {
            self.map.clear();
        }
        self.map.insert(ip, (mac, now));
        self.asked.remove(&ip);
    }

    /// The MAC of `ip`, if known and fresh.
    pub fn lookup(&self, ip: Ipv4Address, now: u64) -> Option<EthernetAddress> {
        self.map
            .get(&ip)
            .filter(|(_, at)| now.saturating_sub(*at) < TTL_US)
            .map(|(m, _)| *m)
    }

    /// True if a request for `ip` may go out now (and notes that it did).
    pub fn may_ask(&mut self, ip: Ipv4Address, now: u64) -> bool {
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
