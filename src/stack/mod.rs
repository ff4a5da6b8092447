//! The userspace TCP/IP stack: one per core, on smoltcp.
//!
//! smoltcp matches every incoming segment by walking the whole socket set
//! it is given, and its egress and timer queries walk every socket too. So
//! this stack never gives it more than one socket at a time:
//!
//! - **Demux.** Each received frame is parsed once ([`classify`]); a TCP
//!   segment's 4-tuple is looked up in a hash table and the frame is handed
//!   to that connection's own one-socket `SocketSet` with
//!   `poll_ingress_single`. Per-packet cost does not depend on how many
//!   connections exist.
//! - **Listeners with a backlog.** smoltcp's listening socket becomes the
//!   connection on the first SYN. Here a SYN for a listening port with no
//!   entry gets a fresh socket in `Listen`, fed that SYN, counted against
//!   the listener's backlog until the handshake completes; beyond the
//!   backlog the SYN is dropped (or answered with RST) and counted.
//! - **Timers.** After a connection is touched (a segment in, the
//!   application wrote, a timer fired) it alone is polled for egress and its
//!   next deadline (`poll_at`) goes to a timing wheel ([`timers`]); idle
//!   connections cost nothing per iteration.
//! - **No connection.** A segment for no connection is handed to an empty
//!   set, and smoltcp answers as TCP requires (RST, nothing for a RST); ARP
//!   and ICMP echo go to the interface through the same empty set.
//! - **Hardening on top of smoltcp.** A RST for a connection is acted on
//!   only at the exact sequence number we last acknowledged; in the window
//!   it draws a rate-limited challenge ACK instead (RFC 5961 3.2; smoltcp
//!   alone resets on any in-window RST). Connections whose peer has gone
//!   silent with our data or FIN outstanding are aborted after
//!   [`TcpOpts::dead_peer_ms`]. UDP to a closed port is dropped without an
//!   ICMP error (which would be larger than the datagram). Under a SYN
//!   flood, [`BacklogFull::DropOldest`] keeps room for new handshakes.
//! - **Neighbours.** A connection whose next hop is not yet resolved waits
//!   (smoltcp silences it; the bypass engine asks by ARP or neighbour
//!   solicitation itself); when an ARP or ND frame arrives, the waiting
//!   connections are polled again.
//!
//! - **IPv6 and dual stack.** A stack has an IPv4 address, IPv6 ones, or
//!   both, and always a link-local IPv6 address made from its MAC;
//!   smoltcp's interface answers neighbour discovery and echo. The 4-tuple
//!   table has one map per family (an IPv4 connection costs what it did
//!   before IPv6); the IPv6 key names which of our addresses the
//!   connection is on. Both engines carry both families. Refused IPv6
//!   packets draw the rate-limited Parameter Problems RFC 8200 asks for
//!   (`stack/icmp6.rs`).
//! - **Cores.** One stack runs per core, over that core's own queue. With
//!   a [`shard::Shard`] (see [`Stack::set_shard`]) each TCP/UDP flow has one
//!   owning core, named by RSS: frames received elsewhere are steered to it,
//!   ARP frames are copied to every core, and active opens pick local ports
//!   whose replies hash back to the opening core.
//!
//! The stack does not call the application: it appends [`Event`]s, and the
//! runtime hands them to the application's handler, which acts through the
//! connection operations (`send`, `read`, `close`, ...).
//!
//! Where things are: the receive side of the loop in `ingress.rs`, the
//! application's calls in `api.rs`, the table and slots in `conn.rs`,
//! listeners in `listen.rs`, the two engines' bridges in `engine.rs`
//! (ours) and `smol.rs` (smoltcp's socket), timers in [`timers`], UDP in
//! `udp.rs`; this file holds the types, construction and the transmit
//! side of the loop.

pub mod classify;
pub mod device;
pub mod shard;
pub mod timers;

mod api;
mod arp;
mod conn;
mod cookies;
mod egress;
mod engine;
mod flowtable;
mod icmp6;
mod ingress;
mod key;
mod listen;
pub(crate) mod nd;
mod opts;
mod pmtu;
mod segment;
mod smol;
mod stats;
mod timewait;
mod tso;
mod udp;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use smoltcp::iface::{Config as IfaceConfig, Interface, SocketSet};
use smoltcp::phy::DeviceCapabilities;
use smoltcp::socket::tcp;
use smoltcp::time::Instant as SmolInstant;
use smoltcp::wire::{
    EthernetAddress, HardwareAddress, IpAddress, IpCidr, Ipv4Address, Ipv6Address,
};

use crate::buf::PacketBuf;
use crate::error::{Error, Result};
use crate::port::{PortInfo, PortQueue};
use crate::time::Instant;
use classify::{classify_with, strip_ext_headers, Class, Key6, Ours, Reject, TcpKey, Verify};
use conn::{Eng, Slot};
use device::{OneFrame, TxPath};
use listen::Listener;
use shard::{Msg, Route, Shard};
use timers::{Came, Timers};

pub use opts::{BacklogFull, ListenOpts, StackConfig, TcpEngine, TcpOpts};
pub use stats::StackStats;

/// Most segments one connection may send in one egress pass.
const EGRESS_PER_CONN: usize = 64;

/// A connection, as the application names it. Stale ids (of a connection
/// that has gone) are recognised and refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId {
    /// Slot in the connection table.
    pub idx: u32,
    /// Generation of the slot.
    pub gen: u32,
}

/// A UDP socket of the stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UdpId(pub u32);

/// Why a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// Both sides closed in order (or we closed and the peer agreed).
    Normal,
    /// Reset by the peer, aborted by us, or timed out.
    Reset,
}

/// Something the application should hear about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A connection is established (accepted or connected).
    Open(ConnId),
    /// Data can be read.
    Readable(ConnId),
    /// There is send-buffer room again after a short `send`.
    Writable(ConnId),
    /// The peer closed its side; all its data has been read.
    PeerClosed(ConnId),
    /// The connection is over; its id is no longer valid.
    Closed(ConnId, CloseReason),
    /// A connection we opened (`connect`) failed before it was established.
    ConnectFailed(ConnId),
    /// A datagram waits on this UDP socket.
    UdpReadable(UdpId),
}

impl Event {
    /// The TCP connection the event is about, if any.
    pub fn conn(&self) -> Option<ConnId> {
        match *self {
            Event::Open(id)
            | Event::Readable(id)
            | Event::Writable(id)
            | Event::PeerClosed(id)
            | Event::Closed(id, _)
            | Event::ConnectFailed(id) => Some(id),
            Event::UdpReadable(_) => None,
        }
    }
}

/// One core's TCP/IP stack over one port queue.
pub struct Stack<Q: PortQueue> {
    iface: Interface,
    caps: DeviceCapabilities,
    tx: TxPath<Q>,
    mac: EthernetAddress,
    /// The IPv4 address (`0.0.0.0` if none; the bypass engine's source).
    ip: Ipv4Address,
    ours: Ours,
    verify_checksums: bool,
    cfg: StackConfig,
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// IPv4 connections by [`classify::tcp_key`] (16 bytes an entry).
    table: flowtable::FlowTable,
    /// IPv6 connections.
    table6: HashMap<Key6, u32, ahash::RandomState>,
    /// The key of each IPv6 connection, by slot (kept out of the slot so
    /// IPv4 connections do not pay for IPv6 keys).
    keys6: HashMap<u32, Key6, ahash::RandomState>,
    icmp6_limit: icmp6::Limiter,
    listeners: HashMap<u16, Listener>,
    timers: Timers,
    touched: Vec<u32>,
    arp_waiters: Vec<(u32, u32)>,
    empty: SocketSet<'static>,
    udp: udp::Udp,
    events: Vec<Event>,
    next_port: u16,
    shard: Option<Shard<Q::Buf>>,
    now: SmolInstant,
    now_us: u64,
    own: engine::OwnCore,
    stats: Arc<StackStats>,
}

#[inline]
fn smol(now: Instant) -> SmolInstant {
    SmolInstant::from_micros(now.micros() as i64)
}

impl<Q: PortQueue> Stack<Q> {
    /// A stack on `queue` of the port described by `info`.
    pub fn new(queue: Q, info: &PortInfo, cfg: StackConfig, now: Instant) -> Result<Self> {
        if cfg.prefix > 32 {
            return Err(Error::Config(format!(
                "prefix /{} is not an IPv4 prefix",
                cfg.prefix
            )));
        }
        if let Some((a, p)) = cfg.ip6.iter().find(|(a, p)| *p > 128 || !unicast6(*a)) {
            return Err(Error::Config(format!(
                "{a}/{p} is not an IPv6 unicast address with a prefix of at most 128"
            )));
        }
        if cfg.ipv4().is_none() && cfg.ip6.is_empty() {
            return Err(Error::Config(
                "the stack needs an address: give an IPv4 or an IPv6 one".into(),
            ));
        }
        // The interface holds 8 addresses: IPv4, link-local and 6 more.
        if cfg.ip6.len() > 6 {
            return Err(Error::Config(format!(
                "{} IPv6 addresses: a stack takes at most 6 (besides its link-local one)",
                cfg.ip6.len()
            )));
        }
        if cfg.ephemeral.0 == 0 || cfg.ephemeral.0 > cfg.ephemeral.1 {
            return Err(Error::Config("the ephemeral port range is empty".into()));
        }
        let caps = device::capabilities(info.mtu, info.caps.tx_checksum);
        let stats = Arc::new(StackStats::default());
        let mut tx = TxPath::new(queue, info.mtu as usize + 14, stats.clone());
        let mac = EthernetAddress(info.mac.0);
        let mut config = IfaceConfig::new(HardwareAddress::Ethernet(mac));
        // Initial sequence numbers (smoltcp engine) and IP ids come from
        // this generator: seed it from the OS so they cannot be predicted.
        let seed = cfg.random_seed.unwrap_or_else(crate::port::sys::random_u64);
        config.random_seed = seed;
        let mut dev = OneFrame {
            rx: None,
            tx: &mut tx,
            caps: &caps,
        };
        let mut iface = Interface::new(config, &mut dev, smol(now));
        let ip: Ipv4Address = cfg.ip;
        let link_local = link_local(mac);
        let mut v6 = vec![link_local];
        v6.extend(cfg.ip6.iter().map(|(a, _)| *a).filter(|a| *a != link_local));
        iface.update_ip_addrs(|a| {
            // Cannot fail: the list holds 8 addresses and we checked that
            // there are at most 8.
            if cfg.ipv4().is_some() {
                let _ = a.push(IpCidr::new(ip.into(), cfg.prefix));
            }
            let _ = a.push(IpCidr::new(link_local.into(), 64));
            for &(addr, prefix) in cfg.ip6.iter().filter(|(a, _)| *a != link_local) {
                let _ = a.push(IpCidr::new(addr.into(), prefix));
            }
        });
        if let Some(gw) = cfg.gateway {
            iface
                .routes_mut()
                .add_default_ipv4_route(gw)
                .map_err(|_| Error::Config("cannot add the default route".into()))?;
        }
        if let Some(gw) = cfg.gateway6 {
            iface
                .routes_mut()
                .add_default_ipv6_route(gw)
                .map_err(|_| Error::Config("cannot add the default IPv6 route".into()))?;
        }
        let ours = Ours {
            mac,
            v4: cfg.ipv4(),
            v6,
        };
        // A separate draw: the first port must reveal nothing of the ISN
        // generator's seed.
        let port_seed = match cfg.random_seed {
            Some(s) => s.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(29),
            None => crate::port::sys::random_u64(),
        };
        let next_port =
            cfg.ephemeral.0 + (port_seed % (cfg.ephemeral.1 - cfg.ephemeral.0 + 1) as u64) as u16;
        let own = engine::OwnCore::new(&cfg, info.mtu, &info.caps);
        let expect = cfg.expected_conns.min(cfg.max_conns);
        // The IPv6 maps are pre-sized only for an IPv6-only stack (a dual
        // stack does not know how its connections split).
        let expect6 = if cfg.ipv4().is_none() { expect } else { 0 };
        Ok(Stack {
            iface,
            verify_checksums: !info.caps.rx_checksum,
            caps,
            tx,
            mac,
            ip,
            ours,
            cfg,
            slots: Vec::with_capacity(expect),
            free: Vec::new(),
            // Its hash key is random in every process: a peer that does not
            // know it cannot choose colliding 4-tuples.
            table: flowtable::FlowTable::with_capacity(expect, crate::port::sys::random_u64()),
            table6: HashMap::with_capacity_and_hasher(expect6, Default::default()),
            keys6: HashMap::with_capacity_and_hasher(expect6, Default::default()),
            icmp6_limit: icmp6::Limiter::default(),
            listeners: HashMap::new(),
            timers: Timers::default(),
            touched: Vec::new(),
            arp_waiters: Vec::new(),
            empty: SocketSet::new(Vec::new()),
            udp: udp::Udp::default(),
            events: Vec::new(),
            next_port,
            shard: None,
            now: smol(now),
            now_us: now.micros(),
            own,
            stats,
        })
    }

    /// The counters (share the Arc with a reader thread).
    pub fn stats(&self) -> &Arc<StackStats> {
        &self.stats
    }

    /// The port queue (for its pool counters).
    pub fn queue(&self) -> &Q {
        &self.tx.queue
    }

    /// Makes this stack one core of a sharded stack (see [`shard`]): from
    /// now on it processes only the flows RSS gives its core, steering the
    /// others (in software mode), shares ARP with the other cores, and picks
    /// local ports for active opens that hash back to its core. Call it
    /// before the first poll and before any `connect`. Every core of the
    /// stack must have the same address and listeners.
    pub fn set_shard(&mut self, shard: Shard<Q::Buf>) -> Result<()> {
        if self.conn_count() > 0 {
            return Err(Error::Config(
                "set_shard must come before any connection".into(),
            ));
        }
        self.shard = Some(shard);
        Ok(())
    }

    /// This stack's core index within its sharded stack (0 when alone).
    pub fn core(&self) -> usize {
        self.shard.as_ref().map_or(0, |s| s.core())
    }

    /// Connections in the table now (all states; TIME-WAIT records of the
    /// bypass engine are counted in [`Stack::time_wait_count`]).
    pub fn conn_count(&self) -> usize {
        self.table.len() + self.table6.len()
    }

    /// The stack's addresses: IPv4 (if any), then IPv6, the link-local
    /// one first.
    pub fn addrs(&self) -> Vec<IpAddr> {
        let v4 = self.ours.v4.map(IpAddr::V4);
        v4.into_iter()
            .chain(self.ours.v6.iter().map(|a| IpAddr::V6(*a)))
            .collect()
    }

    /// Connections the 4-tuple table holds before it next grows (a grow
    /// rehashes every entry in one go: see [`StackConfig::expected_conns`]).
    pub fn table_capacity(&self) -> usize {
        self.table.capacity()
    }

    /// Bytes of one slot of the connection table: the connection's state
    /// in the stack, with the engine's block inline (bypass engine) or a
    /// pointer to it (smoltcp).
    pub const CONN_SLOT_BYTES: usize = std::mem::size_of::<Slot>();

    /// TIME-WAIT records held (bypass engine).
    pub fn time_wait_count(&self) -> usize {
        self.own.tw.len() + self.own.tw6.len()
    }

    /// Payload chunks of the bypass engine in use now, and made so far.
    pub fn tcp_memory(&self) -> (usize, usize) {
        (
            self.own.slab.in_use() * crate::tcp::buf::CHUNK,
            self.own.slab.capacity() * crate::tcp::buf::CHUNK,
        )
    }

    /// Takes the events gathered so far (reuse the Vec: pass it back with
    /// [`Stack::recycle_events`]).
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// Gives back an emptied event Vec so its allocation is reused.
    pub fn recycle_events(&mut self, mut v: Vec<Event>) {
        v.clear();
        if self.events.is_empty() {
            self.events = v;
        }
    }

    /// True if there are events to handle.
    pub fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    fn set_now(&mut self, now: Instant) {
        self.now = smol(now);
        self.now_us = now.micros();
    }

    // ---- the loop ----------------------------------------------------

    /// Runs due timers, sends what touched connections have to send, and
    /// flushes the transmit burst. Returns the connections polled.
    pub fn poll_tx(&mut self, now: Instant) -> usize {
        self.set_now(now);
        let t = now.micros();
        while let Some(e) = self.timers.pop_due(t) {
            // A connection that went left its entries behind: a new one
            // in its slot has none of them queued, so they are stale.
            let Some(c) = self.slots[e.idx as usize].conn.as_mut() else {
                continue;
            };
            match c.timer.came(e) {
                Came::Stale => {}
                Came::Moved(e) => self.timers.insert(e),
                Came::Due => match c.eng {
                    Eng::Smol(_) => self.smol_timer(e.idx),
                    Eng::Own(_) => self.own_timer(e.idx),
                },
            }
        }
        if self.timers.len() > 2 * (self.slots.len() - self.free.len()) + timers::SWEEP_SLACK {
            self.sweep_timers();
        }
        self.expire_time_wait();
        let mut polled = 0;
        let mut i = 0;
        // `touch` may append while we walk.
        while i < self.touched.len() {
            let idx = self.touched[i];
            i += 1;
            polled += self.egress(idx);
        }
        self.touched.clear();
        self.udp_egress();
        self.tx.flush();
        polled
    }

    /// Drops some of the wheel's stale entries (see [`timers`]): an entry
    /// is live while its connection is there and has it queued.
    #[cold]
    fn sweep_timers(&mut self) {
        let slots = &self.slots;
        self.timers.sweep(timers::SWEEP_BUDGET, |e| {
            slots[e.idx as usize]
                .conn
                .as_ref()
                .is_some_and(|c| c.timer.holds(e.at))
        });
    }

    /// Entries in the timer wheel, stale ones included (at most about
    /// twice the connections, see [`timers`]).
    pub fn timer_entries(&self) -> usize {
        self.timers.len()
    }

    /// Microseconds until the earliest timer (for sleeping when idle).
    pub fn next_timer(&self) -> Option<u64> {
        [
            self.timers.next(),
            self.own.tw.next_expiry(),
            self.own.tw6.next_expiry(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Sends what the connection has to send; schedules its next timer.
    fn egress(&mut self, idx: u32) -> usize {
        match self.slots[idx as usize].conn.as_ref().map(|c| &c.eng) {
            Some(Eng::Smol(_)) => self.smol_egress(idx),
            Some(Eng::Own(_)) => self.own_egress(idx),
            None => 0,
        }
    }
}

/// The link-local address made from a MAC (modified EUI-64, RFC 4291).
pub fn link_local(mac: EthernetAddress) -> Ipv6Address {
    let m = mac.0;
    Ipv6Address::from([
        0xfe,
        0x80,
        0,
        0,
        0,
        0,
        0,
        0,
        m[0] ^ 2,
        m[1],
        m[2],
        0xff,
        0xfe,
        m[3],
        m[4],
        m[5],
    ])
}

/// True for an address a host may have: not unspecified, loopback or
/// multicast.
fn unicast6(a: Ipv6Address) -> bool {
    !(a.is_unspecified() || a.is_loopback() || a.is_multicast())
}
