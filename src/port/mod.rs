//! The backend contract.
//!
//! A backend opens a [`Port`] (a device: a DPDK ethdev, a TAP interface, an
//! AF_XDP-bound interface, one end of an in-memory wire) with one or more
//! queues. [`Port::take_queues`] hands out one [`PortQueue`] per queue; the
//! runtime moves each to the core that owns it, and from then on that core
//! alone calls it: queues need `Send`, never `Sync`.
//!
//! # Burst semantics
//! - [`PortQueue::rx_burst`] appends up to `burst.remaining_capacity()`
//!   received frames to `burst` and returns how many it appended. Zero is an
//!   ordinary answer (nothing arrived); it never blocks.
//! - [`PortQueue::tx_burst`] takes frames from the **front** of `burst`,
//!   removes the ones it consumed and returns their number. A consumed frame
//!   belongs to the backend from then on: it was queued for the wire, or it
//!   was dropped and counted in the port's [`LinkStats::tx_errors`]. Frames it
//!   did not consume (the device's queue is full) stay in `burst`, in order,
//!   and still belong to the caller, who retries them or drops them and
//!   counts the drop.
//! - [`PortQueue::alloc`] gives a buffer from the queue's own pool for a
//!   frame the caller builds (a reply, a forwarded copy). `None` means the
//!   pool is exhausted; the pool counts it.
//! - Buffers return to their pool when dropped, on whatever thread.
//!
//! # Ownership across ports
//! A buffer of one port may be sent on another port only when both use the
//! same buffer type (for example two TAP ports, or two DPDK ports). Otherwise
//! the frame is copied into a buffer from the sending queue's `alloc`.
//!
//! # Offloads
//! [`PortCaps`] says what the device does for us: whether received frames
//! have had their IPv4/TCP/UDP checksums verified (so the stack may skip
//! checking them), whether it fills in checksums on transmit, and whether it
//! spreads flows over queues by a Toeplitz hash (RSS). A device with RSS
//! can be asked to use the stack's key and redirection table
//! ([`Port::configure_rss`]) so that each flow arrives on the queue of the
//! core that owns it; otherwise the stack steers flows in software
//! (`crate::stack::shard`).

#[cfg(feature = "dpdk")]
pub mod dpdk;
pub(crate) mod gso;
pub mod mem;
mod spec;
pub mod sys;
#[cfg(feature = "tap")]
pub mod tap;
#[cfg(feature = "af-xdp")]
pub mod xdp;

pub use spec::{PortKind, PortSpec};

use crate::buf::{Burst, PacketBuf, PoolStats};

/// A 48-bit Ethernet address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// A random locally administered unicast address, from the OS generator.
    pub fn random_local() -> MacAddr {
        let mut b = [0u8; 6];
        sys::fill_random(&mut b);
        b[0] = (b[0] & 0xfc) | 0x02;
        MacAddr(b)
    }
}

impl std::fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl std::fmt::Display for MacAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl std::str::FromStr for MacAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut b = [0u8; 6];
        let mut parts = s.split(':');
        for byte in b.iter_mut() {
            let p = parts
                .next()
                .ok_or("a MAC address has six parts, like 02:00:00:00:00:01")?;
            *byte = u8::from_str_radix(p, 16).map_err(|_| format!("`{p}` is not a hex byte"))?;
        }
        if parts.next().is_some() {
            return Err("a MAC address has six parts, like 02:00:00:00:00:01".into());
        }
        Ok(MacAddr(b))
    }
}

/// What the device does for us.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct PortCaps {
    /// Received frames had their IP/TCP/UDP checksums verified by the device;
    /// frames with bad checksums were dropped or flagged before reaching us.
    pub rx_checksum: bool,
    /// The device fills in IP/TCP/UDP checksums on transmit.
    pub tx_checksum: bool,
    /// The device cuts a large TCP segment whose buffer carries a TSO
    /// request ([`TxOffload::tso_mss`](crate::buf::TxOffload)) into
    /// segments of that MSS, and the queue's buffers can hold such a
    /// segment (up to 64 KiB of IP packet).
    pub tso: bool,
    /// The device spreads flows over its queues by a Toeplitz hash.
    pub rss: bool,
    /// The most queues the device offers.
    pub max_queues: u16,
}

/// Static facts about an open port.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PortInfo {
    /// Backend name: `tap`, `mem`, `dpdk`, `xdp`.
    pub kind: &'static str,
    /// The port's name as the user gave it.
    pub name: String,
    /// The MAC address this port sends from.
    #[serde(serialize_with = "ser_mac")]
    pub mac: MacAddr,
    /// The MTU (IP packet size, Ethernet header excluded).
    pub mtu: u16,
    /// Number of queues opened.
    pub queues: u16,
    /// Offloads.
    pub caps: PortCaps,
}

fn ser_mac<S: serde::Serializer>(m: &MacAddr, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(m)
}

/// Device-level counters (what the device or kernel saw, beside the runtime's
/// own per-core counters). A backend reports what it knows and leaves the
/// rest at zero.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct LinkStats {
    /// Frames received.
    pub rx_packets: u64,
    /// Frames sent.
    pub tx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Frames the device dropped on receive (no buffer, ring full, ...).
    pub rx_dropped: u64,
    /// Frames consumed by `tx_burst` but dropped by the backend (errors).
    pub tx_errors: u64,
    /// Receive errors (bad frames, ...).
    pub rx_errors: u64,
}

/// A queue's own link counters, written by the queue's core only (each
/// [`Counter`](crate::counter::Counter) write is a plain load and store) and
/// summed into [`LinkStats`] by [`Port::link_stats`].
#[derive(Debug, Default)]
pub struct QueueCounters {
    /// Frames received.
    pub rx_packets: crate::counter::Counter,
    /// Bytes received.
    pub rx_bytes: crate::counter::Counter,
    /// Frames sent.
    pub tx_packets: crate::counter::Counter,
    /// Bytes sent.
    pub tx_bytes: crate::counter::Counter,
    /// Frames consumed by `tx_burst` but dropped on an error.
    pub tx_errors: crate::counter::Counter,
    /// Receive errors.
    pub rx_errors: crate::counter::Counter,
}

impl QueueCounters {
    /// Adds these counters into `s`.
    pub fn add_to(&self, s: &mut LinkStats) {
        s.rx_packets += self.rx_packets.get();
        s.rx_bytes += self.rx_bytes.get();
        s.tx_packets += self.tx_packets.get();
        s.tx_bytes += self.tx_bytes.get();
        s.tx_errors += self.tx_errors.get();
        s.rx_errors += self.rx_errors.get();
    }
}

/// One queue of a port: the hot path. See the module docs for the contract.
pub trait PortQueue: Send + 'static {
    /// The buffer type this queue receives into and sends from.
    type Buf: PacketBuf;

    /// Appends received frames to `burst`; returns how many.
    fn rx_burst(&mut self, burst: &mut Burst<Self::Buf>) -> usize;

    /// Sends frames from the front of `burst`; removes and counts the ones
    /// consumed. Unconsumed frames stay in `burst` and belong to the caller.
    fn tx_burst(&mut self, burst: &mut Burst<Self::Buf>) -> usize;

    /// A buffer from this queue's pool, of length 0.
    fn alloc(&mut self) -> Option<Self::Buf>;

    /// This queue's index on its port.
    fn queue_id(&self) -> u16;

    /// Counters of the pool this queue allocates from.
    fn pool_stats(&self) -> PoolStats;

    /// Pushes out anything the backend batches internally (a doorbell, a
    /// wakeup). Called once per loop iteration after the last `tx_burst`.
    #[inline]
    fn flush(&mut self) {}
}

/// An open device. Dropping it closes the device; do that only after its
/// queues are done (the runtime joins its cores first).
pub trait Port: Send {
    /// The queue type.
    type Queue: PortQueue;

    /// Static facts about the port.
    fn info(&self) -> &PortInfo;

    /// Takes the queues out of the port, queue 0 first. A second call
    /// returns an empty list.
    fn take_queues(&mut self) -> Vec<Self::Queue>;

    /// Device-level counters.
    fn link_stats(&self) -> LinkStats;

    /// Asks the device to spread received flows over its queues exactly as
    /// `rss` does: Toeplitz under `rss.key()` over the IPv4 TCP/UDP 4-tuple
    /// (source address, destination address, source port, destination
    /// port; the two addresses for other IPv4 packets), the hash's low 7
    /// bits indexing `rss.reta()`, whose entry `i` names queue `i` (queue
    /// *i* belongs to core index *i*).
    ///
    /// Returns `Ok(true)` if the device now does exactly that, `Ok(false)`
    /// if it cannot (no RSS, another hash, a table of another size: the
    /// runtime then steers in software), and `Err` if programming it
    /// failed. Called once after the port opens, before its queues are
    /// polled. Only a port whose [`PortCaps::rss`] is true should answer
    /// `Ok(true)`. The default answers `Ok(false)`.
    ///
    /// A DPDK backend implements this with `rte_eth_dev_rss_hash_update`
    /// (key, `RTE_ETH_RSS_NONFRAG_IPV4_TCP | RTE_ETH_RSS_NONFRAG_IPV4_UDP |
    /// RTE_ETH_RSS_IPV4`) and `rte_eth_dev_rss_reta_update` (folding our
    /// 128 entries over the device's table size when it is a multiple of
    /// 128), or by passing the key in `rte_eth_conf.rx_adv_conf.rss_conf`
    /// at configure time.
    fn configure_rss(&mut self, _rss: &crate::flow::Rss) -> crate::Result<bool> {
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_parses_and_prints() {
        let m: MacAddr = "02:0a:ff:00:10:01".parse().unwrap();
        assert_eq!(m.to_string(), "02:0a:ff:00:10:01");
        assert!("02:0a:ff:00:10".parse::<MacAddr>().is_err());
        assert!("02:0a:ff:00:10:01:07".parse::<MacAddr>().is_err());
        assert!("02:0a:fg:00:10:01".parse::<MacAddr>().is_err());
        let r = MacAddr::random_local();
        assert_eq!(r.0[0] & 0x03, 0x02, "locally administered unicast");
    }
}
