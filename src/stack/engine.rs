//! The bridge to bypass's own TCP engine ([`crate::tcp`]), for IPv4 and
//! IPv6: the engine's per-core state ([`OwnCore`]), connections opened
//! and accepted, each segment parsed once with `smoltcp::wire` and handed
//! to the connection's [`Tcb`], its timers, the engine's events turned
//! into the stack's [`Event`]s, and the TIME-WAIT records. The transmit
//! side (frames, TSO runs, next hops through [`super::arp`] and
//! [`super::nd`]) is in `egress.rs`; SYN cookies for a full backlog in
//! `cookies.rs`.
//!
//! A connection's addresses are not kept in its block: they are its
//! table key (the IPv4 key holds the peer's address; an IPv6
//! connection's key, with the peer's address and the index of ours, is
//! in the stack's slot-to-key map), so an IPv4 connection pays nothing
//! for IPv6.
//!
//! [`Event`]: super::Event

use std::net::{IpAddr, SocketAddr};

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::socket::tcp::State as SmolState;
use smoltcp::wire::{EthernetAddress, TcpControl};

use super::arp::ArpCache;
use super::classify::{key_remote, Key6, TcpKey};
use super::conn::{Eng, Report};
use super::nd::NdCache;
pub(super) use super::segment::{parse, Peer};
use super::timers;
use super::timewait::{TimeWaits, TwRecord};
use super::{Stack, StackConfig, TcpOpts};
use crate::buf::PacketBuf;
use crate::error::{Error, Result};
use crate::port::{PortCaps, PortQueue};
use crate::tcp::buf::Slab;
use crate::tcp::isn::IsnGen;
use crate::tcp::syncookie::SynCookies;
use crate::tcp::tcb::{ev, ChallengeLimiter};
use crate::tcp::{Config, Env, State, Tcb, TcpStats};

/// The bypass engine's state on one core.
pub(super) struct OwnCore {
    pub slab: Slab,
    /// Connection settings in pairs, IPv4 then IPv6 (their MSS differs by
    /// the IP header): the pair at 0 for active opens, then one pair per
    /// listener (see [`family_cfg`]).
    pub cfgs: Vec<Config>,
    isn: IsnGen,
    /// Per-connection timestamp offsets (a keyed hash of the 4-tuple, so a
    /// SYN cookie's connection finds its own again).
    ts_keys: IsnGen,
    pub cookies: SynCookies,
    limiter: ChallengeLimiter,
    pub arp: ArpCache,
    pub nd: NdCache,
    pub tw: TimeWaits<u64>,
    pub tw6: TimeWaits<Key6>,
    /// What the core's connections learnt about each peer address (see
    /// [`PeerMemo`]). Read when a connection opens and when a
    /// retransmission timer is about to fire; written when a connection
    /// learns something.
    peers: std::collections::HashMap<IpAddr, PeerMemo, ahash::RandomState>,
    mtu: u16,
    pub csum: ChecksumCapabilities,
    /// The port cuts large segments: send full-MSS runs as TSO frames
    /// (see [`super::tso`]).
    pub tso: bool,
}

/// Bytes from the end of a [`Tcb`] to the next cache line.
const TCB_TAIL: usize = (64 - std::mem::size_of::<Tcb>() % 64) % 64;

/// A connection on the bypass engine (its addresses are its table key;
/// `repr(C)`: the block first, see `conn::Slot`). The fields after the
/// block start a line of their own, the slot's last, where the
/// connection's own fields and the slot's generation also are: every
/// segment reads them, and none of the block's cold lines.
#[repr(C)]
pub(super) struct OwnConn {
    pub tcb: Tcb,
    _tail: [u8; TCB_TAIL],
    /// Index of its settings in [`OwnCore::cfgs`] (of its family).
    pub cfg: u16,
    /// The next hop's MAC, once known.
    pub mac: Option<EthernetAddress>,
    /// The RTO floor last shared with the peer's record.
    pub floor_seen: u32,
}

impl OwnConn {
    pub(super) fn new(tcb: Tcb, cfg: u16, mac: Option<EthernetAddress>) -> OwnConn {
        OwnConn {
            tcb,
            _tail: [0; TCB_TAIL],
            cfg,
            mac,
            floor_seen: 0,
        }
    }
}

/// The index of the settings of `family_cfg`'s family: `cfg` names a pair
/// (its IPv4 half), the IPv6 half follows it.
#[inline]
pub(super) fn family_cfg(cfg: u16, v6: bool) -> u16 {
    cfg + v6 as u16
}

fn key16(seed: u64, salt: u64) -> [u8; 16] {
    let a = seed ^ salt;
    let b = seed.rotate_left(17).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ salt.rotate_left(7);
    let mut k = [0; 16];
    k[..8].copy_from_slice(&a.to_le_bytes());
    k[8..].copy_from_slice(&b.to_le_bytes());
    k
}

impl OwnCore {
    pub fn new(cfg: &StackConfig, mtu: u16, caps: &PortCaps) -> OwnCore {
        let draw = |salt: u64| match cfg.random_seed {
            Some(s) => key16(s, salt),
            None => {
                let mut k = [0; 16];
                k[..8].copy_from_slice(&crate::port::sys::random_u64().to_le_bytes());
                k[8..].copy_from_slice(&crate::port::sys::random_u64().to_le_bytes());
                k
            }
        };
        let csum = if caps.tx_checksum {
            ChecksumCapabilities::ignored()
        } else {
            ChecksumCapabilities::default()
        };
        OwnCore {
            slab: Slab::new(cfg.tcp_memory),
            cfgs: vec![
                cfg.connect.engine_config(mtu, false),
                cfg.connect.engine_config(mtu, true),
            ],
            isn: IsnGen::new(draw(1)),
            ts_keys: IsnGen::new(draw(2)),
            cookies: SynCookies::new(draw(3)),
            limiter: ChallengeLimiter::default(),
            arp: ArpCache::default(),
            nd: NdCache::default(),
            tw: TimeWaits::default(),
            tw6: TimeWaits::default(),
            peers: Default::default(),
            mtu,
            csum,
            tso: caps.tso,
        }
    }

    /// Adds the settings of a listener, for both families; returns the
    /// index of the pair.
    pub fn add_config(&mut self, opts: &TcpOpts) -> u16 {
        self.cfgs.push(opts.engine_config(self.mtu, false));
        self.cfgs.push(opts.engine_config(self.mtu, true));
        (self.cfgs.len() - 2) as u16
    }

    pub(super) fn env<'a>(&'a mut self, stats: &'a TcpStats, cfg: u16, now: u64) -> Env<'a> {
        Env {
            now,
            slab: &mut self.slab,
            cfg: &self.cfgs[cfg as usize],
            stats,
            limiter: &mut self.limiter,
        }
    }

    pub(super) fn ts_offset(&self, local: SocketAddr, remote: SocketAddr) -> u32 {
        self.ts_keys.isn(local, remote, 0)
    }

    /// The RTO floor learnt for `peer`, decayed.
    fn floor(&self, peer: IpAddr, now: u64) -> u32 {
        self.peers.get(&peer).map_or(0, |m| {
            m.floor >> (now.saturating_sub(m.floor_at) / FLOOR_HALF_LIFE_US).min(31)
        })
    }

    /// The path MTU a connection to `peer` learnt, if it is recent.
    pub(super) fn path_mtu(&self, peer: IpAddr, now: u64) -> Option<u32> {
        self.peers
            .get(&peer)
            .filter(|m| m.mtu != 0 && now.saturating_sub(m.mtu_at) < PATH_MTU_FOR_US)
            .map(|m| m.mtu)
    }

    /// Records the path MTU a connection to `peer` learnt.
    pub(super) fn learn_path_mtu(&mut self, peer: IpAddr, mtu: u32, now: u64) {
        let m = self.memo(peer);
        (m.mtu, m.mtu_at) = (mtu, now);
    }

    /// Records a floor a connection to `peer` learnt.
    fn learn_floor(&mut self, peer: IpAddr, floor: u32, now: u64) {
        if self.floor(peer, now) < floor {
            let m = self.memo(peer);
            (m.floor, m.floor_at) = (floor, now);
        }
    }

    /// `peer`'s record, made if need be. The map is bounded: when it is
    /// full a new peer empties it (what is forgotten is only relearnt).
    fn memo(&mut self, peer: IpAddr) -> &mut PeerMemo {
        if self.peers.len() >= MAX_PEER_MEMOS && !self.peers.contains_key(&peer) {
            self.peers.clear();
        }
        self.peers.entry(peer).or_default()
    }
}

/// What a core's connections learnt about one peer address, for the
/// others to it (0: nothing learnt).
#[derive(Debug, Default, Clone, Copy)]
struct PeerMemo {
    /// The highest RTO floor its connections learnt (see
    /// [`Tcb::share_rto_floor`]), and when; it halves every
    /// [`FLOOR_HALF_LIFE_US`] unless learnt again.
    floor: u32,
    /// The path MTU a router reported (see `stack::pmtu`); new
    /// connections start with it for [`PATH_MTU_FOR_US`].
    mtu: u32,
    floor_at: u64,
    mtu_at: u64,
}

/// Most peers a core keeps a [`PeerMemo`] for.
const MAX_PEER_MEMOS: usize = 1 << 16;

/// How long a learnt path MTU is used for new connections to the peer
/// (Linux's `ip_rt_mtu_expires`): after that the full MSS is tried again,
/// in case the path widened (RFC 1191 6.3).
pub(super) const PATH_MTU_FOR_US: u64 = 600_000_000;

/// How fast a peer's learnt RTO floor fades when nothing renews it.
const FLOOR_HALF_LIFE_US: u64 = 10_000_000;

/// smoltcp's name for an engine state (the stack reports both engines'
/// states in one vocabulary).
pub(super) fn smol_state(s: State) -> SmolState {
    match s {
        State::SynSent => SmolState::SynSent,
        State::SynReceived => SmolState::SynReceived,
        State::Established => SmolState::Established,
        State::FinWait1 => SmolState::FinWait1,
        State::FinWait2 => SmolState::FinWait2,
        State::CloseWait => SmolState::CloseWait,
        State::Closing => SmolState::Closing,
        State::LastAck => SmolState::LastAck,
        State::TimeWait => SmolState::TimeWait,
        State::Closed => SmolState::Closed,
    }
}

pub(super) fn own_mut(c: &mut super::conn::Conn) -> Option<&mut OwnConn> {
    match &mut c.eng {
        Eng::Own(o) => Some(o),
        Eng::Smol(_) => None,
    }
}

impl<Q: PortQueue> Stack<Q> {
    /// The addresses a table key names (`None` for an IPv6 key whose
    /// local index is not one of ours, which the classifier never makes).
    #[inline]
    pub(super) fn peer_of(&self, key: TcpKey) -> Option<Peer> {
        match key {
            TcpKey::V4(k) => Some(Peer::V4 {
                local: self.ip,
                remote: key_remote(k),
            }),
            TcpKey::V6(k) => self.peer6(k),
        }
    }

    /// [`Stack::peer_of`] for an IPv6 key (out of line, so the IPv4 paths
    /// it is inlined into stay as small as before IPv6).
    #[inline(never)]
    fn peer6(&self, k: Key6) -> Option<Peer> {
        Some(Peer::V6 {
            local: *self.ours.v6.get(k.local() as usize)?,
            remote: k.remote(),
        })
    }

    /// The addresses of connection `idx`.
    #[inline]
    pub(super) fn conn_peer(&self, idx: u32) -> Option<Peer> {
        let c = self.slots[idx as usize].conn.as_ref()?;
        match c.v4_key() {
            Some(k) => self.peer_of(TcpKey::V4(k)),
            None => self.conn_peer6(idx),
        }
    }

    /// [`Stack::conn_peer`] for an IPv6 connection (its key is in the
    /// slot-to-key map; out of line for the same reason as
    /// [`Stack::peer6`]).
    #[inline(never)]
    fn conn_peer6(&self, idx: u32) -> Option<Peer> {
        self.peer6(*self.keys6.get(&idx)?)
    }

    /// A SYN for a bypass-engine listener with room in its backlog.
    pub(super) fn own_accept(
        &mut self,
        key: TcpKey,
        port: u16,
        cfg: u16,
        buf: Q::Buf,
    ) -> Option<u32> {
        let now = self.now_us;
        let peer = self.peer_of(key)?;
        let cfg = family_cfg(cfg, peer.is_v6());
        let own = &mut self.own;
        let stats = &self.stats.tcp;
        let (tcb, mac) = parse(buf.data(), |w, repr| {
            let (local, remote) = peer.sockets(port, repr.src_port);
            let iss = own.isn.isn(local, remote, now);
            let tso = own.ts_offset(local, remote);
            let mut env = own.env(stats, cfg, now);
            (Tcb::accept(&mut env, repr, iss, tso), w.src_mac)
        })?;
        drop(buf);
        let conn = OwnConn::new(tcb, cfg, Some(mac));
        let idx = self.insert(key, Eng::Own(conn), Some(port), false);
        self.own_after(idx, true);
        Some(idx)
    }

    /// An active open on the bypass engine, from our port `lport` to
    /// `remote`; `key` names it.
    pub(super) fn own_connect(
        &mut self,
        remote: SocketAddr,
        lport: u16,
        key: TcpKey,
    ) -> Result<u32> {
        let now = self.now_us;
        let Some(peer) = self.peer_of(key) else {
            return Err(Error::Config(format!(
                "cannot connect to {remote}: no address of ours to send from"
            )));
        };
        let (local, r) = peer.sockets(lport, remote.port());
        let iss = self.own.isn.isn(local, r, now);
        let tso = self.own.ts_offset(local, r);
        let cfg = family_cfg(0, peer.is_v6());
        let mut env = self.own.env(&self.stats.tcp, cfg, now);
        let tcb = Tcb::connect(&mut env, lport, remote.port(), iss, tso);
        let mac = self.neighbour(peer).1;
        let conn = OwnConn::new(tcb, cfg, mac);
        Ok(self.insert(key, Eng::Own(conn), None, true))
    }

    /// A segment for a bypass-engine connection.
    pub(super) fn own_input(&mut self, idx: u32, buf: Q::Buf) {
        let now = self.now_us;
        let Some(o) = self.slots[idx as usize].conn.as_mut().and_then(own_mut) else {
            return;
        };
        let own = &mut self.own;
        let stats = &self.stats.tcp;
        let screened = parse(buf.data(), |_, repr| {
            let mut env = own.env(stats, o.cfg, now);
            o.tcb.input(&mut env, repr);
            // A RST the connection survived was not exact (RFC 5961 3.2).
            repr.control == TcpControl::Rst && o.tcb.state() != State::Closed
        });
        drop(buf);
        if screened == Some(true) {
            self.stats.rst_not_exact.inc();
        }
        self.own_after(idx, true);
    }

    /// A bypass-engine connection's deadline is due.
    pub(super) fn own_timer(&mut self, idx: u32) {
        let now = self.now_us;
        let Some(peer) = self.conn_peer(idx) else {
            return;
        };
        let Some(c) = self.slots[idx as usize].conn.as_mut() else {
            return;
        };
        let Eng::Own(o) = &mut c.eng else { return };
        if o.tcb.poll_at(&self.own.cfgs[o.cfg as usize]) > now {
            // Moved on without a schedule (the timers only know what
            // `own_schedule` told them).
            return self.own_schedule(idx);
        }
        // Another connection to this peer may have learnt that its ACKs
        // come later than this timer thinks: then wait.
        let floor = self.own.floor(peer.remote(), now);
        if o.tcb.share_rto_floor(floor) {
            o.floor_seen = floor;
            if o.tcb.poll_at(&self.own.cfgs[o.cfg as usize]) > now {
                return self.own_schedule(idx);
            }
        }
        self.stats.timer_fires.inc();
        let mut env = self.own.env(&self.stats.tcp, o.cfg, now);
        o.tcb.on_timer(&mut env);
        self.own_after(idx, true);
    }

    /// Hands the engine's events to the application and settles the
    /// connection: reaped when closed, turned into a record in TIME-WAIT.
    pub(super) fn own_after(&mut self, idx: u32, touch: bool) {
        let Some(o) = self.slots[idx as usize].conn.as_mut().and_then(own_mut) else {
            return;
        };
        let learnt = o.tcb.rto_floor() > o.floor_seen;
        if learnt {
            o.floor_seen = o.tcb.rto_floor();
        }
        let floor = o.floor_seen;
        let evs = o.tcb.take_events();
        let state = o.tcb.state();
        let readable = o.tcb.readable();
        let peer_fin_drained = o.tcb.peer_closed() && readable == 0;
        if learnt {
            self.share_floor(idx, floor);
        }
        if evs & ev::OPEN != 0 {
            self.start_with_path_mtu(idx);
        }
        self.report(
            idx,
            Report {
                open: evs & ev::OPEN != 0,
                readable: evs & ev::READABLE != 0 && readable > 0,
                writable: evs & ev::WRITABLE != 0,
                peer_fin_drained,
            },
        );
        match state {
            State::Closed => {
                let normal = matches!(
                    self.slots[idx as usize].conn.as_ref().map(|c| &c.eng),
                    Some(Eng::Own(o)) if o.tcb.close_reason() == crate::tcp::CloseReason::Normal
                );
                self.ended(idx, normal);
                // Whatever the engine still has to say (a RST) is gone
                // with it; a RST was sent before it closed.
                self.reap(idx);
            }
            // Data the application has not read yet keeps the connection
            // (and its id) until it is read or TIME-WAIT ends; then the
            // compact record takes over.
            State::TimeWait if readable == 0 => {
                self.ended(idx, true);
                self.enter_time_wait_record(idx);
            }
            _ => {
                if touch {
                    self.touch(idx);
                }
            }
        }
    }

    /// A connection just opened: if an earlier one to the same peer
    /// learnt a narrower path, it starts with it (before it sends data).
    #[cold]
    #[inline(never)]
    fn start_with_path_mtu(&mut self, idx: u32) {
        let Some(peer) = self.conn_peer(idx) else {
            return;
        };
        let Some(mtu) = self.own.path_mtu(peer.remote(), self.now_us) else {
            return;
        };
        let ip_header = if peer.is_v6() { 40 } else { 20 };
        if let Some(o) = self.slots[idx as usize].conn.as_mut().and_then(own_mut) {
            o.tcb.clamp_to_path_mtu(mtu, ip_header);
        }
    }

    /// Records the RTO floor connection `idx` learnt for its peer, for the
    /// core's other connections to it.
    #[cold]
    #[inline(never)]
    fn share_floor(&mut self, idx: u32, floor: u32) {
        if let Some(peer) = self.conn_peer(idx) {
            self.own.learn_floor(peer.remote(), floor, self.now_us);
        }
    }

    /// Replaces a connection in TIME-WAIT by a compact record (once per
    /// connection: kept out of [`Stack::own_after`], which runs for every
    /// segment).
    #[inline(never)]
    fn enter_time_wait_record(&mut self, idx: u32) {
        let now = self.now_us;
        let Some(key) = self.conn_key(idx) else {
            return;
        };
        let Some(peer) = self.peer_of(key) else {
            return;
        };
        let Some(o) = self.slots[idx as usize].conn.as_mut().and_then(own_mut) else {
            return;
        };
        // Send what is owed first (the ACK of the peer's FIN).
        let mac = o.mac;
        let wait_us = self.own.cfgs[o.cfg as usize].time_wait_us;
        let (lport, rport) = o.tcb.ports();
        let (snd_nxt, rcv_nxt) = o.tcb.seqs();
        let (local, remote) = peer.sockets(lport, rport);
        let rec = TwRecord {
            snd_nxt,
            rcv_nxt,
            ts_recent: o.tcb.ts_recent(),
            ts_offset: self.own.ts_offset(local, remote),
            lport,
            rport,
            mac: mac.unwrap_or(EthernetAddress::BROADCAST),
            since: now,
            until: now.saturating_add(wait_us),
            wait_us,
        };
        self.own_send_segments(idx);
        self.reap(idx);
        if mac.is_some() {
            match key {
                TcpKey::V4(k) => self.own.tw.insert(k, rec),
                TcpKey::V6(k) => self.own.tw6.insert(k, rec),
            }
            self.stats.time_wait.inc();
        }
    }

    /// Tells the timers the connection's next deadline (a later one than
    /// before costs a store, see [`super::timers`]).
    pub(super) fn own_schedule(&mut self, idx: u32) {
        let Some(c) = self.slots[idx as usize].conn.as_ref() else {
            return;
        };
        let Eng::Own(o) = &c.eng else { return };
        let at = o.tcb.poll_at(&self.own.cfgs[o.cfg as usize]);
        // `NEVER` is the timers' `NONE`.
        let at = if at == crate::tcp::tcb::NEVER {
            timers::NONE
        } else {
            at.max(self.now_us)
        };
        self.set_timer(idx, at);
    }

    /// Consumes read bytes of a bypass-engine connection.
    pub(super) fn own_consume(&mut self, idx: u32, n: usize) {
        let now = self.now_us;
        let Some(o) = self.slots[idx as usize].conn.as_mut().and_then(own_mut) else {
            return;
        };
        let mut env = self.own.env(&self.stats.tcp, o.cfg, now);
        o.tcb.consume(&mut env, n as u32);
        self.own_after(idx, false);
    }

    /// Queues bytes on a bypass-engine connection.
    pub(super) fn own_send(&mut self, idx: u32, data: &[u8]) -> usize {
        let now = self.now_us;
        let Some(o) = self.slots[idx as usize].conn.as_mut().and_then(own_mut) else {
            return 0;
        };
        let mut env = self.own.env(&self.stats.tcp, o.cfg, now);
        o.tcb.send(&mut env, data)
    }
}
