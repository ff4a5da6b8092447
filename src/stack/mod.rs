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
//! connection operations here (`send`, `read`, `close`, ...).

pub mod classify;
pub mod device;
pub mod shard;
pub mod timers;

mod arp;
mod conn;
mod engine;
mod flowtable;
mod icmp6;
mod key;
mod listen;
pub(crate) mod nd;
mod opts;
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

    /// Receives one burst and runs it through the stack; returns the number
    /// of frames received.
    pub fn poll_rx(&mut self, now: Instant) -> usize {
        self.set_now(now);
        let mut done = 0;
        if self.shard.is_some() {
            done += self.poll_steered();
        }
        let mut burst = crate::buf::Burst::new();
        let n = self.tx.queue.rx_burst(&mut burst);
        if n == 0 {
            return done;
        }
        self.stats.rx_packets.add(n as u64);
        self.stats
            .rx_bytes
            .add(burst.iter().map(|b| b.len() as u64).sum());
        if self.shard.is_none() {
            self.ingress_burst(burst);
            return done + n;
        }
        let mut local = crate::buf::Burst::new();
        for buf in burst {
            if let Some(b) = self.route(buf) {
                local.push(b);
            }
        }
        self.ingress_burst(local);
        done + n
    }

    /// Classifies a burst with its headers and its connections' table
    /// lines prefetched (their cache misses then overlap: see
    /// [`crate::hint`]), then processes it in order. Prefetching each
    /// connection's block as well measured no faster here (16,384
    /// connections: 747k tx/s without, 720k with, medians of 5), so it
    /// is not done.
    fn ingress_burst(&mut self, mut burst: crate::buf::Burst<Q::Buf>) {
        let mut classes = arrayvec::ArrayVec::<Result<Class, Reject>, { crate::buf::BURST }>::new();
        // The headers of the whole burst (written by another core or a
        // device, so not in this core's cache).
        for buf in burst.iter() {
            crate::hint::prefetch_bytes(buf.data(), 2);
        }
        for buf in burst.iter_mut() {
            let class = self.classify(buf);
            if let Ok(Class::Tcp {
                key: TcpKey::V4(k), ..
            }) = class
            {
                self.table.prefetch(k);
            }
            classes.push(class);
        }
        for (buf, class) in burst.into_iter().zip(classes) {
            self.dispatch(buf, class);
        }
    }

    /// Sends a frame received on this core to where it is processed;
    /// returns it when that is here.
    fn route(&mut self, buf: Q::Buf) -> Option<Q::Buf> {
        let Some(sh) = self.shard.as_ref() else {
            return Some(buf);
        };
        match sh.route(buf.data()) {
            Route::Local => Some(buf),
            Route::To(core) => {
                match sh.send(core, buf) {
                    Ok(()) => self.stats.steered_out.inc(),
                    Err(_dropped) => self.stats.steer_drops.inc(),
                }
                None
            }
            Route::Arp => {
                let queue = &mut self.tx.queue;
                let (sent, dropped) = sh.replicate_arp(buf.data(), || queue.alloc());
                self.stats.arp_copies_out.add(sent);
                if dropped > 0 {
                    self.stats.arp_copy_drops.add(dropped);
                }
                Some(buf)
            }
        }
    }

    /// Processes the frames other cores handed to this one.
    fn poll_steered(&mut self) -> usize {
        let mut msgs = arrayvec::ArrayVec::<Msg<Q::Buf>, { crate::buf::BURST }>::new();
        if let Some(sh) = self.shard.as_ref() {
            sh.drain(&mut msgs);
        }
        let n = msgs.len();
        let mut frames = crate::buf::Burst::new();
        for m in msgs {
            frames.push(match m {
                Msg::Frame(b) => {
                    self.stats.steered_in.inc();
                    b
                }
                Msg::Arp(b) => {
                    self.stats.arp_copies_in.inc();
                    b
                }
            });
        }
        self.ingress_burst(frames);
        n
    }

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

    fn classify(&self, buf: &mut Q::Buf) -> Result<Class, Reject> {
        let verify = Verify::for_frame(buf.rx_checksum(), self.verify_checksums);
        let class = classify_with(buf.data(), &self.ours, verify);
        if class.is_ok() {
            // IPv6 extension headers, checked: smoltcp knows none of them.
            if let Some(n) = strip_ext_headers(buf.data_mut()) {
                buf.set_len(n);
            }
        }
        class
    }

    /// Processes a classified frame.
    fn dispatch(&mut self, buf: Q::Buf, class: Result<Class, Reject>) {
        match class {
            Err(r) => {
                self.stats.reject(r);
                if r == Reject::Unsupported {
                    self.icmp6_error(&buf);
                }
            }
            Ok(Class::Arp) => {
                self.own.arp.learn_from(buf.data(), self.now_us);
                self.feed_empty(buf);
                self.wake_neighbour_waiters();
            }
            Ok(Class::Nd) => {
                self.own.nd.learn_from(buf.data(), &self.ours, self.now_us);
                self.feed_empty(buf);
                self.wake_neighbour_waiters();
            }
            Ok(Class::Icmp) => self.feed_empty(buf),
            Ok(Class::Tcp {
                key,
                dst_port,
                syn,
                rst,
            }) => {
                if let Some(idx) = self.lookup(key) {
                    match self.slots[idx as usize].conn.as_ref().map(|c| &c.eng) {
                        Some(Eng::Own(_)) => self.own_input(idx, buf),
                        _ => self.smol_input(idx, buf, rst),
                    }
                    return;
                }
                let buf = if self.in_time_wait(key) {
                    match self.time_wait_input(key, buf) {
                        Some(b) => b, // a SYN that may open a new connection
                        None => return,
                    }
                } else {
                    buf
                };
                match self.listeners.get(&dst_port).map(|l| l.opts.tcp.engine) {
                    Some(_) if syn && !rst => self.accept(key, dst_port, buf),
                    Some(TcpEngine::Bypass) if !syn && !rst => {
                        if let Some(b) = self.cookie_ack(key, dst_port, buf) {
                            self.no_conn(b);
                        }
                    }
                    _ => self.no_conn(buf),
                }
            }
            Ok(Class::Udp { dst_port }) => self.udp_ingress(dst_port, buf),
        }
    }

    /// A neighbour may have been learnt (ARP, neighbour discovery): wake
    /// the connections that waited for one.
    fn wake_neighbour_waiters(&mut self) {
        for (idx, gen) in std::mem::take(&mut self.arp_waiters) {
            if let Some(c) = self.live_mut(idx, gen) {
                c.arp_wait = false;
                self.touch(idx);
            }
        }
    }

    /// Sends the ICMPv6 Parameter Problem owed for a refused IPv6 packet,
    /// if any and if the rate limit allows (see [`icmp6`]).
    #[cold]
    fn icmp6_error(&mut self, buf: &Q::Buf) {
        let Some(why) = icmp6::owed(buf.data(), &self.ours) else {
            return;
        };
        if !self.icmp6_limit.allow(self.now_us) {
            self.stats.icmp6_errors_limited.inc();
            return;
        }
        // From the address it was sent to if that is ours, else from the
        // one smoltcp would use towards the sender.
        let dst = smoltcp::wire::Ipv6Packet::new_checked(
            smoltcp::wire::EthernetFrame::new_checked(buf.data()).map_or(&[][..], |e| e.payload()),
        )
        .ok()
        .map(|p| (p.src_addr(), p.dst_addr()));
        let Some((peer, to)) = dst else { return };
        let src = if self.ours.has_v6(to) {
            to
        } else {
            match self.source_for(peer.into()) {
                Some(IpAddr::V6(a)) => a,
                _ => return,
            }
        };
        let Some(mut b) = self.tx.queue.alloc() else {
            self.stats.tx_no_buffer.inc();
            return;
        };
        let n = icmp6::param_problem(b.room_mut(), buf.data(), self.mac, src, why);
        if n > 0 {
            b.set_len(n);
            self.stats.icmp6_errors_tx.inc();
            self.tx.push(b);
        }
    }

    /// The connection a key names.
    #[inline]
    fn lookup(&self, key: TcpKey) -> Option<u32> {
        match key {
            TcpKey::V4(k) => self.table.get(k),
            TcpKey::V6(k) => self.table6.get(&k).copied(),
        }
    }

    /// A segment for no connection: smoltcp answers as TCP requires (RST,
    /// nothing for a RST).
    fn no_conn(&mut self, buf: Q::Buf) {
        self.stats.no_conn.inc();
        self.feed_empty(buf);
    }

    fn feed_empty(&mut self, buf: Q::Buf) {
        let mut dev = OneFrame {
            rx: Some(buf),
            tx: &mut self.tx,
            caps: &self.caps,
        };
        self.iface
            .poll_ingress_single(self.now, &mut dev, &mut self.empty);
    }

    /// Sends what the connection has to send; schedules its next timer.
    fn egress(&mut self, idx: u32) -> usize {
        match self.slots[idx as usize].conn.as_ref().map(|c| &c.eng) {
            Some(Eng::Smol(_)) => self.smol_egress(idx),
            Some(Eng::Own(_)) => self.own_egress(idx),
            None => 0,
        }
    }

    /// Opens a connection to `remote` on the engine
    /// [`StackConfig::connect`] names. The connection reports
    /// [`Event::Open`] once established, or [`Event::ConnectFailed`].
    pub fn connect(&mut self, remote: SocketAddr) -> Result<ConnId> {
        if self.conn_count() >= self.cfg.max_conns {
            self.stats.table_full.inc();
            return Err(Error::Config("connection table full".into()));
        }
        // Every stack has an IPv6 address: its link-local one.
        let have = remote.is_ipv6() || self.ours.v4.is_some();
        let ip = remote.ip();
        if ip.is_unspecified() || ip.is_multicast() || ip.is_loopback() || remote.port() == 0 {
            return Err(Error::Config(format!(
                "cannot connect to {remote}: name a unicast address on the network and a port"
            )));
        }
        if !have {
            return Err(Error::Config(format!(
                "cannot connect to {remote}: the stack has no address of its family"
            )));
        }
        let (lport, key) = self.pick_local_port(remote)?;
        let idx = match self.cfg.connect.engine {
            TcpEngine::Bypass => self.own_connect(remote, lport, key)?,
            TcpEngine::Smoltcp => self.smol_connect(remote, lport, key)?,
        };
        self.touch(idx);
        Ok(self.id(idx))
    }

    // ---- connection operations for the application ------------------

    /// Copies up to `out.len()` readable bytes (the first contiguous run in
    /// the receive buffer) without consuming them; returns how many.
    pub fn peek(&mut self, id: ConnId, out: &mut [u8]) -> usize {
        let slab = &self.own.slab;
        let Some(c) = conn::live(&mut self.slots, id) else {
            return 0;
        };
        match &mut c.eng {
            Eng::Smol(s) => s.peek(out),
            Eng::Own(o) => {
                let mut n = 0;
                o.tcb.read(slab, 0, out.len() as u32, |b| {
                    out[n..n + b.len()].copy_from_slice(b);
                    n += b.len();
                });
                n
            }
        }
    }

    /// The first unread bytes of a bypass-engine connection, lent where
    /// they were reassembled (no copy; at most one 2 KiB chunk), or
    /// `Some(None)` when there are none. `None` when the connection does
    /// not lend (smoltcp's, or gone): use [`Stack::peek`]. The stack may be
    /// used while the bytes are out; give them back with
    /// [`Stack::give_back`] before lending again.
    pub fn lend(&mut self, id: ConnId) -> Option<Option<crate::tcp::buf::Lent>> {
        let slab = &mut self.own.slab;
        match &conn::live(&mut self.slots, id)?.eng {
            Eng::Own(o) => Some(o.tcb.lend(slab)),
            Eng::Smol(_) => None,
        }
    }

    /// Returns what [`Stack::lend`] lent (whatever happened to the
    /// connection meanwhile).
    pub fn give_back(&mut self, lent: crate::tcp::buf::Lent) {
        self.own.slab.give_back(lent);
    }

    /// Consumes `n` bytes already peeked (the window opens accordingly).
    pub fn consume(&mut self, id: ConnId, n: usize) {
        if n == 0 {
            return;
        }
        let Some(c) = self.live_mut(id.idx, id.gen) else {
            return;
        };
        match &mut c.eng {
            Eng::Smol(s) => {
                s.consume(n);
                // The peer's FIN may have arrived while data was unread:
                // the last read is when the application hears of it.
                let peer_fin_drained = s.peer_fin_drained();
                self.report(
                    id.idx,
                    conn::Report {
                        peer_fin_drained,
                        ..Default::default()
                    },
                );
            }
            Eng::Own(_) => self.own_consume(id.idx, n),
        }
        self.touch(id.idx); // a window update may be due
    }

    /// Bytes waiting to be read.
    pub fn readable(&mut self, id: ConnId) -> usize {
        match self.live_mut(id.idx, id.gen).map(|c| &mut c.eng) {
            Some(Eng::Smol(s)) => s.readable(),
            Some(Eng::Own(o)) => o.tcb.readable() as usize,
            None => 0,
        }
    }

    /// Queues bytes to send; returns how many fit. A short count means the
    /// send buffer is full: [`Event::Writable`] follows when there is room.
    pub fn send(&mut self, id: ConnId, data: &[u8]) -> usize {
        let n = match self.live_mut(id.idx, id.gen).map(|c| &mut c.eng) {
            Some(Eng::Smol(s)) => s.send(data),
            Some(Eng::Own(_)) => self.own_send(id.idx, data),
            None => return 0,
        };
        if n > 0 {
            self.touch(id.idx);
        }
        n
    }

    /// Free bytes in the send buffer.
    pub fn send_room(&mut self, id: ConnId) -> usize {
        let Some(c) = conn::live_ref(&self.slots, id) else {
            return 0;
        };
        match &c.eng {
            Eng::Smol(s) => s.send_room(),
            Eng::Own(o) => o.tcb.send_room(&self.own.cfgs[o.cfg as usize]) as usize,
        }
    }

    /// Closes our side after the queued data (FIN).
    pub fn close(&mut self, id: ConnId) {
        match self.live_mut(id.idx, id.gen).map(|c| &mut c.eng) {
            Some(Eng::Smol(s)) => s.close(),
            Some(Eng::Own(o)) => o.tcb.close(),
            None => return,
        }
        self.touch(id.idx);
    }

    /// Resets the connection (RST), dropping queued data.
    pub fn abort(&mut self, id: ConnId) {
        let slab = &mut self.own.slab;
        let Some(c) = conn::live(&mut self.slots, id) else {
            return;
        };
        match &mut c.eng {
            Eng::Smol(s) => s.abort(),
            Eng::Own(o) => o.tcb.abort(slab),
        }
        self.touch(id.idx);
    }

    /// The connection's (local, remote) endpoints.
    pub fn endpoints(&mut self, id: ConnId) -> Option<(SocketAddr, SocketAddr)> {
        let c = conn::live_ref(&self.slots, id)?;
        match &c.eng {
            Eng::Smol(s) => s.endpoints(),
            Eng::Own(o) => {
                let (l, r) = o.tcb.ports();
                Some(self.conn_peer(id.idx)?.sockets(l, r))
            }
        }
    }

    /// The source address smoltcp gives packets to `remote` (the one its
    /// replies come back to).
    fn source_for(&self, remote: IpAddr) -> Option<IpAddr> {
        if remote.is_unspecified() {
            return None; // smoltcp's choice would panic
        }
        self.iface
            .get_source_address(&IpAddress::from(remote))
            .map(IpAddr::from)
    }

    /// The connection's TCP state (smoltcp's names for both engines),
    /// `None` for a stale id.
    pub fn state(&mut self, id: ConnId) -> Option<tcp::State> {
        let c = self.live_mut(id.idx, id.gen)?;
        Some(match &c.eng {
            Eng::Smol(s) => s.state(),
            Eng::Own(o) => engine::smol_state(o.tcb.state()),
        })
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
