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
//!   next deadline (`poll_at`) goes into a heap ([`timers`]); idle
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
//!   (smoltcp silences it); when an ARP frame arrives, the waiting
//!   connections are polled again.
//!
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

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::DeviceCapabilities;
use smoltcp::socket::{tcp, udp};
use smoltcp::time::{Duration as SmolDuration, Instant as SmolInstant};
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr, IpEndpoint, Ipv4Address};

use crate::buf::PacketBuf;
use crate::counter::Counter;
use crate::error::{Error, Result};
use crate::port::{PortInfo, PortQueue};
use crate::time::Instant;
use classify::{classify_with, tcp_key, Class, Reject, Verify};
use device::{OneFrame, TxPath};
use shard::{Msg, Route, Shard};
use timers::{Entry, Timers};

/// Most segments one connection may send in one egress pass.
const EGRESS_PER_CONN: usize = 64;
const NO_TIMER: u64 = u64::MAX;

/// TCP tuning for the connections of a listener or of active opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpOpts {
    /// Receive buffer bytes per connection.
    pub rx_buf: usize,
    /// Send buffer bytes per connection.
    pub tx_buf: usize,
    /// Nagle's algorithm (off: small writes go out at once).
    pub nagle: bool,
    /// Delayed-ACK time in ms (`None`: ACK at once).
    pub ack_delay_ms: Option<u64>,
    /// Abort a connection whose handshake does not complete in this long
    /// (ms). Cleared once established: smoltcp's timeout counts from the
    /// peer's last segment, so it would also close idle connections, which
    /// servers holding many connections must keep.
    pub timeout_ms: u64,
    /// Abort an established connection when the peer has sent nothing
    /// for this long (ms) while we have unacknowledged data or a FIN
    /// outstanding: smoltcp retransmits without limit, so without this a
    /// peer that vanishes (or stops acknowledging on purpose) would hold
    /// its connection forever. Idle connections are not affected.
    pub dead_peer_ms: u64,
}

impl Default for TcpOpts {
    fn default() -> Self {
        TcpOpts {
            rx_buf: 16 * 1024,
            tx_buf: 16 * 1024,
            nagle: false,
            ack_delay_ms: Some(10),
            timeout_ms: 10_000,
            dead_peer_ms: 300_000,
        }
    }
}

/// What to do with a SYN when the listener's backlog is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BacklogFull {
    /// Drop it silently (the client retries; Linux's default).
    #[default]
    Drop,
    /// Answer with RST (the client fails at once).
    Reset,
    /// Make room by dropping the oldest connection still in the handshake
    /// (silently, as if its SYN had been lost), and take the new SYN.
    /// This is what holds up under a SYN flood from addresses that never
    /// answer: a legitimate handshake completes as long as it takes less
    /// time than the flood needs to turn the backlog over, where `Drop`
    /// refuses every SYN until the flood's half-open connections time out.
    DropOldest,
}

/// A listener's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenOpts {
    /// Most connections in the handshake at once.
    pub backlog: usize,
    /// Policy when the backlog is full.
    pub on_full: BacklogFull,
    /// TCP settings of accepted connections.
    pub tcp: TcpOpts,
}

impl Default for ListenOpts {
    fn default() -> Self {
        ListenOpts {
            backlog: 1024,
            on_full: BacklogFull::Drop,
            tcp: TcpOpts::default(),
        }
    }
}

/// The stack's settings.
#[derive(Debug, Clone)]
pub struct StackConfig {
    /// Our address.
    pub ip: Ipv4Addr,
    /// Prefix length of our subnet.
    pub prefix: u8,
    /// Default gateway, if any.
    pub gateway: Option<Ipv4Addr>,
    /// Most connections (all states) on this core.
    pub max_conns: usize,
    /// TCP settings of active opens.
    pub connect: TcpOpts,
    /// First and last local port for active opens.
    pub ephemeral: (u16, u16),
    /// Seed of the generator behind initial sequence numbers, IP ids and
    /// the first ephemeral port. `None` (the default): drawn from the OS
    /// random generator, as it must be in service. A fixed seed makes
    /// tests and fuzzing reproducible; never set one on a real network.
    pub random_seed: Option<u64>,
}

impl StackConfig {
    /// A config for address `ip/prefix`.
    pub fn new(ip: Ipv4Addr, prefix: u8) -> Self {
        StackConfig {
            ip,
            prefix,
            gateway: None,
            max_conns: 1 << 20,
            connect: TcpOpts::default(),
            ephemeral: (32768, 60999),
            random_seed: None,
        }
    }
}

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

/// The stack's counters (one set per core).
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct StackStats {
    /// Frames received.
    pub rx_packets: Counter,
    /// Bytes received.
    pub rx_bytes: Counter,
    /// Frames sent.
    pub tx_packets: Counter,
    /// Bytes sent.
    pub tx_bytes: Counter,
    /// Frames dropped because the port's transmit queue stayed full and the
    /// hold-back queue was full too.
    pub tx_full: Counter,
    /// Frames the port refused at first and that waited for the next flush.
    pub tx_held: Counter,
    /// Frames not built for want of a pool buffer.
    pub tx_no_buffer: Counter,
    /// Dropped: malformed headers, lengths or options.
    pub drop_malformed: Counter,
    /// Dropped: bad checksum.
    pub drop_bad_checksum: Counter,
    /// Dropped: IPv4 fragment.
    pub drop_fragment: Counter,
    /// Dropped: for another MAC/IP.
    pub drop_not_for_us: Counter,
    /// Dropped: protocol not spoken.
    pub drop_unsupported: Counter,
    /// Segments for no connection (answered with RST by TCP rules).
    pub no_conn: Counter,
    /// RSTs not at the exact sequence number we acknowledged (RFC 5961):
    /// dropped, answered by a (rate-limited) challenge ACK if in window.
    pub rst_not_exact: Counter,
    /// UDP datagrams for a port with no socket (dropped, unanswered).
    pub udp_no_port: Counter,
    /// SYNs refused because the backlog was full.
    pub backlog_full: Counter,
    /// Half-open connections dropped to make room for a new SYN
    /// ([`BacklogFull::DropOldest`]).
    pub syn_evicted: Counter,
    /// SYNs or connects refused because the connection table was full.
    pub table_full: Counter,
    /// Connections open now (all states).
    pub conns: Counter,
    /// Connections accepted (handshake completed).
    pub accepted: Counter,
    /// Active opens established.
    pub connected: Counter,
    /// Active opens that failed.
    pub connect_failed: Counter,
    /// Connections ended in order.
    pub closed: Counter,
    /// Connections reset, aborted or timed out.
    pub reset: Counter,
    /// Connection egress polls (the per-iteration work; O(touched)).
    pub conn_polls: Counter,
    /// Timer expiries handled.
    pub timer_fires: Counter,
    /// Frames received here and handed to their owning core.
    pub steered_out: Counter,
    /// Frames handed here by the core that received them.
    pub steered_in: Counter,
    /// Frames dropped because the ring to their owner was full.
    pub steer_drops: Counter,
    /// ARP frames received here and copied to the other cores (copies).
    pub arp_copies_out: Counter,
    /// ARP copies from other cores learnt from.
    pub arp_copies_in: Counter,
    /// ARP copies not made (no buffer) or not delivered (ring full).
    pub arp_copy_drops: Counter,
    /// ARP requests this core sent (a neighbour it did not know).
    pub arp_requests_tx: Counter,
}

impl StackStats {
    fn reject(&self, r: Reject) {
        match r {
            Reject::Malformed => &self.drop_malformed,
            Reject::BadChecksum => &self.drop_bad_checksum,
            Reject::Fragment => &self.drop_fragment,
            Reject::NotForUs => &self.drop_not_for_us,
            Reject::Unsupported => &self.drop_unsupported,
        }
        .inc();
    }

    /// All drops before the stack.
    pub fn drops(&self) -> u64 {
        self.drop_malformed.get()
            + self.drop_bad_checksum.get()
            + self.drop_fragment.get()
            + self.drop_not_for_us.get()
            + self.drop_unsupported.get()
    }
}

struct Listener {
    opts: ListenOpts,
    /// Connections in the handshake.
    pending: usize,
    /// Connections that entered the handshake, oldest first, as (slot,
    /// generation); entries whose handshake has ended are skipped lazily
    /// (used by `BacklogFull::DropOldest`, pruned to stay O(backlog)).
    order: std::collections::VecDeque<(u32, u32)>,
}

struct Conn {
    set: SocketSet<'static>,
    handle: SocketHandle,
    key: u64,
    /// Earliest deadline this connection has in the timer heap.
    timer: u64,
    touched: bool,
    /// Listening port while the handshake is under way (backlog slot).
    listener: Option<u16>,
    active: bool,
    opened: bool,
    peer_fin_told: bool,
    closed_told: bool,
    we_closed: bool,
    want_writable: bool,
    /// In `arp_waiters`.
    arp_wait: bool,
    last_state: tcp::State,
    /// What we last acknowledged (our RCV.NXT as the peer knows it) and
    /// the end of what we have sent, from the last segment we sent.
    acked: Option<(u32, u32)>,
    /// [`TcpOpts::dead_peer_ms`].
    dead_peer_ms: u64,
    /// The dead-peer timeout is armed.
    dead_peer_armed: bool,
    /// When our FIN state began (µs), for the dead-peer deadline.
    fin_since: Option<u64>,
}

struct Slot {
    gen: u32,
    conn: Option<Conn>,
}

struct UdpSock {
    set: SocketSet<'static>,
    handle: SocketHandle,
}

/// One core's TCP/IP stack over one port queue.
pub struct Stack<Q: PortQueue> {
    iface: Interface,
    caps: DeviceCapabilities,
    tx: TxPath<Q>,
    mac: EthernetAddress,
    ip: Ipv4Address,
    verify_checksums: bool,
    cfg: StackConfig,
    slots: Vec<Slot>,
    free: Vec<u32>,
    table: HashMap<u64, u32, ahash::RandomState>,
    listeners: HashMap<u16, Listener>,
    timers: Timers,
    touched: Vec<u32>,
    arp_waiters: Vec<(u32, u32)>,
    empty: SocketSet<'static>,
    udp: Vec<UdpSock>,
    udp_ports: HashMap<u16, u32>,
    udp_touched: Vec<u32>,
    events: Vec<Event>,
    next_port: u16,
    shard: Option<Shard<Q::Buf>>,
    now: SmolInstant,
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
        if cfg.ephemeral.0 == 0 || cfg.ephemeral.0 > cfg.ephemeral.1 {
            return Err(Error::Config("the ephemeral port range is empty".into()));
        }
        let caps = device::capabilities(info.mtu, info.caps.tx_checksum);
        let stats = Arc::new(StackStats::default());
        let mut tx = TxPath::new(queue, info.mtu as usize + 14, stats.clone());
        let mac = EthernetAddress(info.mac.0);
        let mut config = Config::new(HardwareAddress::Ethernet(mac));
        // Initial sequence numbers and IP ids come from this generator:
        // seed it from the OS so they cannot be predicted.
        let seed = cfg.random_seed.unwrap_or_else(crate::port::sys::random_u64);
        config.random_seed = seed;
        let mut dev = OneFrame {
            rx: None,
            tx: &mut tx,
            caps: &caps,
        };
        let mut iface = Interface::new(config, &mut dev, smol(now));
        let ip: Ipv4Address = cfg.ip;
        iface.update_ip_addrs(|a| {
            // Cannot fail: the list is empty and holds at least one address.
            let _ = a.push(IpCidr::new(ip.into(), cfg.prefix));
        });
        if let Some(gw) = cfg.gateway {
            iface
                .routes_mut()
                .add_default_ipv4_route(gw)
                .map_err(|_| Error::Config("cannot add the default route".into()))?;
        }
        // A separate draw: the first port must reveal nothing of the ISN
        // generator's seed.
        let port_seed = match cfg.random_seed {
            Some(s) => s.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(29),
            None => crate::port::sys::random_u64(),
        };
        let next_port =
            cfg.ephemeral.0 + (port_seed % (cfg.ephemeral.1 - cfg.ephemeral.0 + 1) as u64) as u16;
        Ok(Stack {
            iface,
            verify_checksums: !info.caps.rx_checksum,
            caps,
            tx,
            mac,
            ip,
            cfg,
            slots: Vec::new(),
            free: Vec::new(),
            table: HashMap::default(),
            listeners: HashMap::new(),
            timers: Timers::default(),
            touched: Vec::new(),
            arp_waiters: Vec::new(),
            empty: SocketSet::new(Vec::new()),
            udp: Vec::new(),
            udp_ports: HashMap::new(),
            udp_touched: Vec::new(),
            events: Vec::new(),
            next_port,
            shard: None,
            now: smol(now),
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
        if !self.table.is_empty() {
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

    /// Starts listening on `port`.
    pub fn listen(&mut self, port: u16, opts: ListenOpts) -> Result<()> {
        if port == 0 {
            return Err(Error::Config("cannot listen on port 0".into()));
        }
        if opts.backlog == 0 {
            return Err(Error::Config("a backlog of 0 accepts nothing".into()));
        }
        if self.listeners.contains_key(&port) {
            return Err(Error::Config(format!("port {port} is already listening")));
        }
        self.listeners.insert(
            port,
            Listener {
                opts,
                pending: 0,
                order: std::collections::VecDeque::new(),
            },
        );
        Ok(())
    }

    /// Connections in the table now (all states, TIME-WAIT included).
    pub fn conn_count(&self) -> usize {
        self.table.len()
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

    // ---- the loop ----------------------------------------------------

    /// Receives one burst and runs it through the stack; returns the number
    /// of frames received.
    pub fn poll_rx(&mut self, now: Instant) -> usize {
        self.now = smol(now);
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
            for buf in burst {
                self.ingress(buf);
            }
            return done + n;
        }
        for buf in burst {
            self.route(buf);
        }
        done + n
    }

    /// Sends a frame received on this core to where it is processed.
    fn route(&mut self, buf: Q::Buf) {
        let Some(sh) = self.shard.as_ref() else {
            return self.ingress(buf);
        };
        match sh.route(buf.data()) {
            Route::Local => self.ingress(buf),
            Route::To(core) => match sh.send(core, buf) {
                Ok(()) => self.stats.steered_out.inc(),
                Err(_dropped) => self.stats.steer_drops.inc(),
            },
            Route::Arp => {
                let queue = &mut self.tx.queue;
                let (sent, dropped) = sh.replicate_arp(buf.data(), || queue.alloc());
                self.stats.arp_copies_out.add(sent);
                if dropped > 0 {
                    self.stats.arp_copy_drops.add(dropped);
                }
                self.ingress(buf);
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
        for m in msgs {
            match m {
                Msg::Frame(b) => {
                    self.stats.steered_in.inc();
                    self.ingress(b);
                }
                Msg::Arp(b) => {
                    self.stats.arp_copies_in.inc();
                    self.ingress(b);
                }
            }
        }
        n
    }

    /// Runs due timers, sends what touched connections have to send, and
    /// flushes the transmit burst. Returns the connections polled.
    pub fn poll_tx(&mut self, now: Instant) -> usize {
        self.now = smol(now);
        let t = now.micros();
        while let Some(e) = self.timers.pop_due(t) {
            let slot = &mut self.slots[e.idx as usize];
            let Some(c) = slot
                .conn
                .as_mut()
                .filter(|c| slot.gen == e.gen && c.timer == e.at)
            else {
                continue; // stale: the connection went, or has an earlier entry
            };
            c.timer = NO_TIMER;
            // The deadline may have moved on since this entry was pushed
            // (a delayed ACK that a reply carried, an RTO re-armed): then
            // just reschedule, without an egress pass.
            match self.iface.poll_at(self.now, &c.set) {
                Some(at) if at.total_micros().max(0) as u64 > t => {
                    let at = at.total_micros() as u64;
                    c.timer = at;
                    self.timers.push(Entry {
                        at,
                        idx: e.idx,
                        gen: e.gen,
                    });
                }
                None if !c.arp_wait && c.last_state == tcp::State::Established => {}
                _ => {
                    self.stats.timer_fires.inc();
                    self.touch(e.idx);
                }
            }
        }
        let mut polled = 0;
        let mut i = 0;
        // `touch` may append while we walk (a state change touching
        // nothing else today, but keep it safe).
        while i < self.touched.len() {
            let idx = self.touched[i];
            i += 1;
            polled += self.egress(idx);
        }
        self.touched.clear();
        for k in 0..self.udp_touched.len() {
            let u = &mut self.udp[self.udp_touched[k] as usize];
            let mut dev = OneFrame {
                rx: None,
                tx: &mut self.tx,
                caps: &self.caps,
            };
            for _ in 0..EGRESS_PER_CONN {
                if self.iface.poll_egress(self.now, &mut dev, &mut u.set)
                    == smoltcp::iface::PollResult::None
                {
                    break;
                }
            }
        }
        self.udp_touched.clear();
        self.tx.flush();
        polled
    }

    /// Microseconds until the earliest timer (for sleeping when idle).
    pub fn next_timer(&self) -> Option<u64> {
        self.timers.next()
    }

    fn ingress(&mut self, buf: Q::Buf) {
        let verify = Verify::for_frame(buf.rx_checksum(), self.verify_checksums);
        let class = classify_with(buf.data(), self.mac, self.ip, verify);
        match class {
            Err(r) => self.stats.reject(r),
            Ok(Class::Arp) => {
                self.feed_empty(buf);
                // A neighbour may have been learnt: wake who waited for one.
                for (idx, gen) in std::mem::take(&mut self.arp_waiters) {
                    if let Some(c) = self.live_mut(idx, gen) {
                        c.arp_wait = false;
                        self.touch(idx);
                    }
                }
            }
            Ok(Class::Icmp) => self.feed_empty(buf),
            Ok(Class::Tcp {
                key,
                dst_port,
                syn,
                rst,
            }) => {
                if let Some(&idx) = self.table.get(&key) {
                    let buf = if rst {
                        match self.screen_rst(idx, buf) {
                            Some(b) => b,
                            None => {
                                self.stats.rst_not_exact.inc();
                                return;
                            }
                        }
                    } else {
                        buf
                    };
                    self.feed_conn(idx, buf);
                    self.check(idx, true);
                } else if syn && !rst && self.listeners.contains_key(&dst_port) {
                    self.accept(key, dst_port, buf);
                } else {
                    self.stats.no_conn.inc();
                    self.feed_empty(buf);
                }
            }
            Ok(Class::Udp { dst_port }) => match self.udp_ports.get(&dst_port) {
                Some(&u) => {
                    let s = &mut self.udp[u as usize];
                    let mut dev = OneFrame {
                        rx: Some(buf),
                        tx: &mut self.tx,
                        caps: &self.caps,
                    };
                    self.iface
                        .poll_ingress_single(self.now, &mut dev, &mut s.set);
                    if s.set.get::<udp::Socket>(s.handle).can_recv() {
                        self.events.push(Event::UdpReadable(UdpId(u)));
                    }
                }
                // No ICMP port unreachable: it quotes the datagram, so it
                // is always 28 bytes longer than what provoked it, which
                // would make us a (small) reflection amplifier.
                None => {
                    self.stats.udp_no_port.inc();
                    drop(buf);
                }
            },
        }
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

    fn feed_conn(&mut self, idx: u32, buf: Q::Buf) {
        let Some(c) = self.slots[idx as usize].conn.as_mut() else {
            return;
        };
        self.tx.last_tcp = None;
        let mut dev = OneFrame {
            rx: Some(buf),
            tx: &mut self.tx,
            caps: &self.caps,
        };
        self.iface
            .poll_ingress_single(self.now, &mut dev, &mut c.set);
        if let Some(t) = self.tx.last_tcp.take() {
            c.acked = Some(t);
        }
    }

    /// RFC 5961 3.2 on top of smoltcp, which resets a connection on any
    /// RST inside the receive window: a RST is acted on only if its
    /// sequence number is exactly the one we last acknowledged. An
    /// in-window RST that is not exact is turned into a pure ACK from far
    /// outside the window, so smoltcp answers it with a challenge ACK
    /// (rate-limited to one per second); a legitimate peer answers that
    /// with an exact RST. Out-of-window RSTs are dropped. Returns the
    /// frame if it should go to the connection as it is.
    fn screen_rst(&mut self, idx: u32, mut buf: Q::Buf) -> Option<Q::Buf> {
        use smoltcp::wire::{EthernetFrame, Ipv4Packet, TcpPacket};
        let Some(c) = self.slots[idx as usize].conn.as_mut() else {
            return Some(buf);
        };
        let Some((rcv_nxt, snd_max)) = c.acked else {
            // Nothing acknowledged yet (SYN-SENT): smoltcp checks that a
            // RST acknowledges our SYN exactly.
            return Some(buf);
        };
        let window = c.set.get::<tcp::Socket>(c.handle).recv_capacity() as u32;
        let mut eth = EthernetFrame::new_unchecked(buf.data_mut());
        let mut ip = Ipv4Packet::new_unchecked(eth.payload_mut());
        // The classifier checked these headers.
        let mut t = TcpPacket::new_unchecked(ip.payload_mut());
        let seq = t.seq_number().0 as u32;
        if seq == rcv_nxt {
            return Some(buf);
        }
        if seq.wrapping_sub(rcv_nxt) >= window.max(1) {
            return None; // out of the window: dropped silently
        }
        t.set_rst(false);
        t.set_psh(false);
        t.set_fin(false);
        t.set_syn(false);
        t.set_ack(true);
        t.set_ack_number(smoltcp::wire::TcpSeqNumber(snd_max as i32));
        t.set_seq_number(smoltcp::wire::TcpSeqNumber(
            rcv_nxt.wrapping_add(1 << 31) as i32
        ));
        // Checksums are not verified again past the classifier.
        let n = t.header_len() as usize;
        let ip_hl = ip.header_len() as usize;
        ip.set_total_len((ip_hl + n) as u16);
        buf.set_len(14 + ip_hl + n);
        self.feed_conn(idx, buf);
        self.touch(idx);
        None
    }

    fn new_socket(opts: &TcpOpts) -> tcp::Socket<'static> {
        let mut s = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; opts.rx_buf]),
            tcp::SocketBuffer::new(vec![0; opts.tx_buf]),
        );
        s.set_nagle_enabled(opts.nagle);
        s.set_ack_delay(opts.ack_delay_ms.map(SmolDuration::from_millis));
        s.set_timeout(Some(SmolDuration::from_millis(opts.timeout_ms)));
        s
    }

    fn insert(
        &mut self,
        key: u64,
        sock: tcp::Socket<'static>,
        listener: Option<u16>,
        active: bool,
        dead_peer_ms: u64,
    ) -> u32 {
        let mut set = SocketSet::new(Vec::with_capacity(1));
        let handle = set.add(sock);
        let state = set.get::<tcp::Socket>(handle).state();
        let conn = Conn {
            set,
            handle,
            key,
            timer: NO_TIMER,
            touched: false,
            listener,
            active,
            opened: false,
            peer_fin_told: false,
            closed_told: false,
            we_closed: false,
            want_writable: false,
            arp_wait: false,
            last_state: state,
            acked: None,
            dead_peer_ms,
            dead_peer_armed: false,
            fin_since: None,
        };
        let idx = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize].conn = Some(conn);
                i
            }
            None => {
                self.slots.push(Slot {
                    gen: 0,
                    conn: Some(conn),
                });
                (self.slots.len() - 1) as u32
            }
        };
        self.table.insert(key, idx);
        self.stats.conns.inc();
        idx
    }

    fn accept(&mut self, key: u64, port: u16, buf: Q::Buf) {
        // Invariant: the caller checked that the listener exists.
        let Some(l) = self.listeners.get_mut(&port) else {
            return;
        };
        if l.pending >= l.opts.backlog {
            self.stats.backlog_full.inc();
            match l.opts.on_full {
                BacklogFull::Drop => return,
                BacklogFull::Reset => {
                    self.feed_empty(buf);
                    return;
                }
                BacklogFull::DropOldest => {
                    if !self.evict_oldest(port) {
                        return;
                    }
                }
            }
        }
        if self.table.len() >= self.cfg.max_conns {
            self.stats.table_full.inc();
            return;
        }
        // Invariant: the listener exists (checked above; eviction does not
        // remove listeners).
        let Some(l) = self.listeners.get_mut(&port) else {
            return;
        };
        l.pending += 1;
        let mut sock = Self::new_socket(&l.opts.tcp);
        if sock.listen(port).is_err() {
            l.pending -= 1;
            return;
        }
        let dead = l.opts.tcp.dead_peer_ms;
        let idx = self.insert(key, sock, Some(port), false, dead);
        if let Some(l) = self.listeners.get_mut(&port) {
            let gen = self.slots[idx as usize].gen;
            l.order.push_back((idx, gen));
            if l.order.len() > 2 * l.opts.backlog + 16 {
                // Drop the entries of handshakes that have ended.
                let slots = &self.slots;
                l.order.retain(|&(i, g)| {
                    let s = &slots[i as usize];
                    s.gen == g && s.conn.as_ref().is_some_and(|c| c.listener.is_some())
                });
            }
        }
        self.feed_conn(idx, buf);
        self.check(idx, true);
    }

    /// Drops the oldest connection of `port`'s listener that is still in
    /// the handshake; false if there is none.
    fn evict_oldest(&mut self, port: u16) -> bool {
        loop {
            let Some((idx, gen)) = self
                .listeners
                .get_mut(&port)
                .and_then(|l| l.order.pop_front())
            else {
                return false;
            };
            let pending = self.slots[idx as usize].gen == gen
                && self.slots[idx as usize]
                    .conn
                    .as_ref()
                    .is_some_and(|c| c.listener == Some(port));
            if pending {
                self.stats.syn_evicted.inc();
                // Its socket goes without a word (no RST: like a lost SYN,
                // the peer's retransmission starts over).
                self.reap(idx);
                return true;
            }
        }
    }

    /// Opens a connection to `remote`. The connection reports
    /// [`Event::Open`] once established, or [`Event::ConnectFailed`].
    pub fn connect(&mut self, remote: SocketAddrV4) -> Result<ConnId> {
        if self.table.len() >= self.cfg.max_conns {
            self.stats.table_full.inc();
            return Err(Error::Config("connection table full".into()));
        }
        let rip: Ipv4Address = *remote.ip();
        let (lo, hi) = self.cfg.ephemeral;
        let span = (hi - lo) as u32 + 1;
        let mut found = None;
        let table = &self.table;
        let free = |p: u16| !table.contains_key(&tcp_key(rip, remote.port(), p));
        match &self.shard {
            // The replies must hash back to this core.
            Some(sh) if sh.cores() > 1 => {
                found = sh.rss().pick_local_port(
                    self.ip,
                    remote,
                    sh.core(),
                    (lo, hi),
                    &mut self.next_port,
                    free,
                );
            }
            _ => {
                for _ in 0..span {
                    let p = self.next_port;
                    self.next_port = if p >= hi { lo } else { p + 1 };
                    if free(p) {
                        found = Some(p);
                        break;
                    }
                }
            }
        }
        let Some(lport) = found else {
            return Err(Error::Config(format!(
                "no free local port towards {remote}"
            )));
        };
        let mut sock = Self::new_socket(&self.cfg.connect);
        sock.connect(
            self.iface.context(),
            IpEndpoint::new(rip.into(), remote.port()),
            lport,
        )
        .map_err(|e| Error::Config(format!("connect to {remote}: {e}")))?;
        let dead = self.cfg.connect.dead_peer_ms;
        let idx = self.insert(tcp_key(rip, remote.port(), lport), sock, None, true, dead);
        self.touch(idx);
        Ok(ConnId {
            idx,
            gen: self.slots[idx as usize].gen,
        })
    }

    #[inline]
    fn touch(&mut self, idx: u32) {
        if let Some(c) = self.slots[idx as usize].conn.as_mut() {
            if !c.touched {
                c.touched = true;
                self.touched.push(idx);
            }
        }
    }

    fn live_mut(&mut self, idx: u32, gen: u32) -> Option<&mut Conn> {
        let s = self.slots.get_mut(idx as usize)?;
        if s.gen != gen {
            return None;
        }
        s.conn.as_mut()
    }

    fn id(&self, idx: u32) -> ConnId {
        ConnId {
            idx,
            gen: self.slots[idx as usize].gen,
        }
    }

    /// Looks at a connection after something happened to it: emits events,
    /// settles the backlog, reaps it when it is over, marks it for egress.
    fn check(&mut self, idx: u32, touch: bool) {
        let id = self.id(idx);
        let Some(c) = self.slots[idx as usize].conn.as_mut() else {
            return;
        };
        let s = c.set.get_mut::<tcp::Socket>(c.handle);
        let state = s.state();
        if !c.opened && matches!(state, tcp::State::Established | tcp::State::CloseWait) {
            s.set_timeout(None);
        }
        let (recv_queue, may_recv) = (s.recv_queue(), s.may_recv());
        let room = s.send_capacity() - s.send_queue();
        use tcp::State::*;
        let prev = c.last_state;
        c.last_state = state;
        if !c.opened && matches!(state, Established | CloseWait | FinWait1 | FinWait2) {
            c.opened = true;
            if let Some(port) = c.listener.take() {
                if let Some(l) = self.listeners.get_mut(&port) {
                    l.pending -= 1;
                }
                self.stats.accepted.inc();
            } else {
                self.stats.connected.inc();
            }
            self.events.push(Event::Open(id));
        }
        if c.opened {
            if recv_queue > 0 {
                self.events.push(Event::Readable(id));
            }
            if c.want_writable && room > 0 {
                c.want_writable = false;
                self.events.push(Event::Writable(id));
            }
            if !may_recv
                && recv_queue == 0
                && !c.peer_fin_told
                && matches!(state, CloseWait | LastAck | Closing | TimeWait)
            {
                c.peer_fin_told = true;
                self.events.push(Event::PeerClosed(id));
            }
        }
        // A connection entry in Listen is a passive open whose SYN was
        // refused, or whose handshake was reset: it is over, unannounced.
        if matches!(state, Closed | TimeWait) && !c.closed_told {
            c.closed_told = true;
            let normal = state == TimeWait || matches!(prev, LastAck | TimeWait | Closing);
            if c.opened {
                if normal {
                    self.stats.closed.inc();
                    self.events.push(Event::Closed(id, CloseReason::Normal));
                } else {
                    self.stats.reset.inc();
                    self.events.push(Event::Closed(id, CloseReason::Reset));
                }
            } else if c.active {
                self.stats.connect_failed.inc();
                self.events.push(Event::ConnectFailed(id));
            }
        }
        if matches!(state, Closed | Listen) {
            self.reap(idx);
        } else if touch {
            self.touch(idx);
        }
    }

    fn reap(&mut self, idx: u32) {
        let slot = &mut self.slots[idx as usize];
        let Some(c) = slot.conn.take() else { return };
        slot.gen = slot.gen.wrapping_add(1);
        if let Some(port) = c.listener {
            if let Some(l) = self.listeners.get_mut(&port) {
                l.pending -= 1;
            }
        }
        self.table.remove(&c.key);
        self.free.push(idx);
        self.stats.conns.sub(1);
    }

    /// Sends what the connection has to send; schedules its next timer.
    fn egress(&mut self, idx: u32) -> usize {
        let gen = self.slots[idx as usize].gen;
        let Some(c) = self.slots[idx as usize].conn.as_mut() else {
            return 0;
        };
        c.touched = false;
        let (built0, arps0) = (self.tx.built, self.tx.arp_built);
        self.tx.last_tcp = None;
        let mut dev = OneFrame {
            rx: None,
            tx: &mut self.tx,
            caps: &self.caps,
        };
        for _ in 0..EGRESS_PER_CONN {
            if self.iface.poll_egress(self.now, &mut dev, &mut c.set)
                == smoltcp::iface::PollResult::None
            {
                break;
            }
        }
        self.stats.conn_polls.inc();
        if let Some(t) = self.tx.last_tcp.take() {
            c.acked = Some(t);
        }
        let s = c.set.get_mut::<tcp::Socket>(c.handle);
        let state = s.state();
        let mut abort = false;
        if c.opened {
            // Dead peers. With data unacknowledged: smoltcp's timeout,
            // armed only then (it counts from the peer's last segment, or
            // from our first transmission after an idle spell), since it
            // would otherwise close idle connections too.
            let waiting = s.send_queue() > 0;
            if waiting != c.dead_peer_armed {
                c.dead_peer_armed = waiting;
                s.set_timeout(waiting.then(|| SmolDuration::from_millis(c.dead_peer_ms)));
            }
            // After our FIN: a deadline of our own from when we closed
            // (smoltcp's clock may be stale after an idle spell, and
            // FIN-WAIT-2 has no timer at all).
            use tcp::State::*;
            if matches!(state, FinWait1 | FinWait2 | Closing | LastAck) {
                let now = self.now.total_micros().max(0) as u64;
                let deadline = *c.fin_since.get_or_insert(now) + c.dead_peer_ms * 1000;
                if now >= deadline {
                    s.abort();
                    abort = true;
                } else if deadline < c.timer {
                    c.timer = deadline;
                    self.timers.push(Entry {
                        at: deadline,
                        idx,
                        gen,
                    });
                }
            }
        }
        let changed =
            state != c.last_state || (c.want_writable && s.send_capacity() > s.send_queue());
        let wants_send =
            s.send_queue() > 0 || matches!(state, tcp::State::SynSent | tcp::State::SynReceived);
        // Waiting for a neighbour? smoltcp then sends an ARP request (or,
        // rate-limited, nothing at all) and silences the socket for 1 s.
        // Such a connection is woken as soon as an ARP frame arrives
        // (at most once in the list).
        let arp_sent = self.tx.arp_built != arps0;
        let sent_nothing = self.tx.built == built0;
        if wants_send && (arp_sent || sent_nothing) && !c.arp_wait {
            c.arp_wait = true;
            self.arp_waiters.push((idx, gen));
        }
        if let Some(at) = self.iface.poll_at(self.now, &c.set) {
            let at = at.total_micros().max(0) as u64;
            if at < c.timer {
                c.timer = at;
                self.timers.push(Entry { at, idx, gen });
            }
        }
        if changed {
            // Egress or a timer changed the state (timeout, TIME-WAIT over,
            // the last ACK of a close): tell the application, reap.
            self.check(idx, false);
        }
        if abort {
            // The RST goes out on the next pass of this iteration.
            self.touch(idx);
        }
        1
    }

    // ---- connection operations for the application ------------------

    /// Copies up to `out.len()` readable bytes (the first contiguous run in
    /// the receive buffer) without consuming them; returns how many.
    pub fn peek(&mut self, id: ConnId, out: &mut [u8]) -> usize {
        let Some(c) = self.live_mut(id.idx, id.gen) else {
            return 0;
        };
        let s = c.set.get_mut::<tcp::Socket>(c.handle);
        match s.peek(out.len()) {
            Ok(b) => {
                out[..b.len()].copy_from_slice(b);
                b.len()
            }
            Err(_) => 0,
        }
    }

    /// Consumes `n` bytes already peeked (the window opens accordingly).
    pub fn consume(&mut self, id: ConnId, n: usize) {
        if n == 0 {
            return;
        }
        let Some(c) = self.live_mut(id.idx, id.gen) else {
            return;
        };
        let s = c.set.get_mut::<tcp::Socket>(c.handle);
        let _ = s.recv(|b| (n.min(b.len()), ()));
        self.touch(id.idx); // a window update may be due
    }

    /// Bytes waiting to be read.
    pub fn readable(&mut self, id: ConnId) -> usize {
        match self.live_mut(id.idx, id.gen) {
            Some(c) => c.set.get::<tcp::Socket>(c.handle).recv_queue(),
            None => 0,
        }
    }

    /// Queues bytes to send; returns how many fit. A short count means the
    /// send buffer is full: [`Event::Writable`] follows when there is room.
    pub fn send(&mut self, id: ConnId, data: &[u8]) -> usize {
        let Some(c) = self.live_mut(id.idx, id.gen) else {
            return 0;
        };
        let s = c.set.get_mut::<tcp::Socket>(c.handle);
        let n = s.send_slice(data).unwrap_or(0);
        if n < data.len() {
            c.want_writable = true;
        }
        if n > 0 {
            self.touch(id.idx);
        }
        n
    }

    /// Free bytes in the send buffer.
    pub fn send_room(&mut self, id: ConnId) -> usize {
        match self.live_mut(id.idx, id.gen) {
            Some(c) => {
                let s = c.set.get::<tcp::Socket>(c.handle);
                if s.may_send() {
                    s.send_capacity() - s.send_queue()
                } else {
                    0
                }
            }
            None => 0,
        }
    }

    /// Closes our side after the queued data (FIN).
    pub fn close(&mut self, id: ConnId) {
        let Some(c) = self.live_mut(id.idx, id.gen) else {
            return;
        };
        c.we_closed = true;
        c.set.get_mut::<tcp::Socket>(c.handle).close();
        self.touch(id.idx);
    }

    /// Resets the connection (RST), dropping queued data.
    pub fn abort(&mut self, id: ConnId) {
        let Some(c) = self.live_mut(id.idx, id.gen) else {
            return;
        };
        c.set.get_mut::<tcp::Socket>(c.handle).abort();
        self.touch(id.idx);
    }

    /// The connection's (local, remote) endpoints.
    pub fn endpoints(&mut self, id: ConnId) -> Option<(SocketAddrV4, SocketAddrV4)> {
        let c = self.live_mut(id.idx, id.gen)?;
        let s = c.set.get::<tcp::Socket>(c.handle);
        let v4 = |e: Option<IpEndpoint>| -> Option<SocketAddrV4> {
            let e = e?;
            let smoltcp::wire::IpAddress::Ipv4(a) = e.addr;
            Some(SocketAddrV4::new(a, e.port))
        };
        Some((v4(s.local_endpoint())?, v4(s.remote_endpoint())?))
    }

    /// The connection's TCP state, `None` for a stale id.
    pub fn state(&mut self, id: ConnId) -> Option<tcp::State> {
        let c = self.live_mut(id.idx, id.gen)?;
        Some(c.set.get::<tcp::Socket>(c.handle).state())
    }

    // ---- UDP ---------------------------------------------------------

    /// Binds a UDP socket to `port` with room for `slots` datagrams of up
    /// to `max_len` bytes each way.
    pub fn udp_bind(&mut self, port: u16, slots: usize, max_len: usize) -> Result<UdpId> {
        if self.udp_ports.contains_key(&port) {
            return Err(Error::Config(format!("UDP port {port} is already bound")));
        }
        let buf = || {
            udp::PacketBuffer::new(
                vec![udp::PacketMetadata::EMPTY; slots],
                vec![0; slots * max_len],
            )
        };
        let mut s = udp::Socket::new(buf(), buf());
        s.bind(port)
            .map_err(|e| Error::Config(format!("UDP bind {port}: {e}")))?;
        let mut set = SocketSet::new(Vec::with_capacity(1));
        let handle = set.add(s);
        let id = self.udp.len() as u32;
        self.udp.push(UdpSock { set, handle });
        self.udp_ports.insert(port, id);
        Ok(UdpId(id))
    }

    /// Receives one datagram into `out`: `(length, sender)`.
    pub fn udp_recv(&mut self, id: UdpId, out: &mut [u8]) -> Option<(usize, SocketAddrV4)> {
        let u = self.udp.get_mut(id.0 as usize)?;
        let s = u.set.get_mut::<udp::Socket>(u.handle);
        let (n, meta) = s.recv_slice(out).ok()?;
        let smoltcp::wire::IpAddress::Ipv4(a) = meta.endpoint.addr;
        Some((n, SocketAddrV4::new(a, meta.endpoint.port)))
    }

    /// Sends one datagram; `false` if the send buffer is full.
    pub fn udp_send(&mut self, id: UdpId, to: SocketAddrV4, data: &[u8]) -> bool {
        let Some(u) = self.udp.get_mut(id.0 as usize) else {
            return false;
        };
        let s = u.set.get_mut::<udp::Socket>(u.handle);
        let ok = s
            .send_slice(data, IpEndpoint::new((*to.ip()).into(), to.port()))
            .is_ok();
        if ok && !self.udp_touched.contains(&id.0) {
            self.udp_touched.push(id.0);
        }
        ok
    }
}
