//! The connection table: slots with generations (stale ids are refused),
//! the 4-tuple map for O(1) demux, the list of connections touched in this
//! iteration, and what both engines share when a connection opens or ends.

use std::net::{IpAddr, SocketAddr};

use super::classify::TcpKey;
use super::engine::OwnConn;
use super::smol::SmolConn;
use super::{CloseReason, ConnId, Event, Stack};
use crate::error::{Error, Result};
use crate::port::PortQueue;

/// The engine running a connection. The bypass engine's block lives in the
/// slot itself (one allocation per connection, none per segment); the
/// smoltcp socket set is boxed so smoltcp connections do not pay its size.
#[allow(clippy::large_enum_variant)]
pub(super) enum Eng {
    Smol(Box<SmolConn>),
    Own(OwnConn),
}

// `repr(C)`, the engine first: a bypass-engine block starts the slot, on
// a cache line (see `Slot`), and these fields share the slot's last line.
#[repr(C)]
pub(super) struct Conn {
    pub eng: Eng,
    /// The IPv4 table's key ([`super::classify::tcp_key`]); unused (0)
    /// for IPv6, whose key is kept in [`Stack`]'s `keys6` instead, so that
    /// an IPv4 connection costs no more than before IPv6.
    key: u64,
    /// Its timer (see [`super::timers`]).
    pub timer: super::timers::Deadline,
    /// Listening port while the handshake is under way (backlog slot).
    pub listener: Option<u16>,
    /// An IPv6 connection.
    v6: bool,
    pub touched: bool,
    pub active: bool,
    pub opened: bool,
    pub peer_fin_told: bool,
    pub closed_told: bool,
    /// In `arp_waiters`.
    pub arp_wait: bool,
}

impl Conn {
    /// The IPv4 table's key; `None` for an IPv6 connection.
    pub fn v4_key(&self) -> Option<u64> {
        (!self.v6).then_some(self.key)
    }
}

/// What [`Stack::report`] tells.
#[derive(Default)]
pub(super) struct Report {
    pub open: bool,
    pub readable: bool,
    pub writable: bool,
    pub peer_fin_drained: bool,
}

/// Lines at the start of a slot that a segment's processing reads.
const SLOT_HOT_LINES: usize = 6;

/// One connection's place in the table. Cache-line aligned, with the
/// connection first, so a bypass-engine block's hot lines are whole lines.
#[repr(C, align(64))]
pub(super) struct Slot {
    pub conn: Option<Conn>,
    pub gen: u32,
}

/// The live connection `id` names, if it is still there (a stale id, of a
/// connection that went, names nothing).
pub(super) fn live(slots: &mut [Slot], id: ConnId) -> Option<&mut Conn> {
    let s = slots.get_mut(id.idx as usize)?;
    if s.gen != id.gen {
        return None;
    }
    s.conn.as_mut()
}

/// [`live`], shared.
pub(super) fn live_ref(slots: &[Slot], id: ConnId) -> Option<&Conn> {
    let s = slots.get(id.idx as usize)?;
    if s.gen != id.gen {
        return None;
    }
    s.conn.as_ref()
}

impl<Q: PortQueue> Stack<Q> {
    pub(super) fn insert(
        &mut self,
        key: TcpKey,
        eng: Eng,
        listener: Option<u16>,
        active: bool,
    ) -> u32 {
        let conn = Conn {
            key: match key {
                TcpKey::V4(k) => k,
                TcpKey::V6(_) => 0,
            },
            v6: matches!(key, TcpKey::V6(_)),
            timer: Default::default(),
            touched: false,
            listener,
            active,
            opened: false,
            peer_fin_told: false,
            closed_told: false,
            arp_wait: false,
            eng,
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
        if let Some(Conn {
            eng: Eng::Own(o), ..
        }) = &self.slots[idx as usize].conn
        {
            // The layout the hot/cold order of `Tcb` counts on.
            debug_assert_eq!(
                &o.tcb as *const _ as usize % 64,
                0,
                "a bypass-engine block starts a cache line"
            );
        }
        match key {
            TcpKey::V4(k) => {
                self.table.insert(k, idx);
            }
            TcpKey::V6(k) => {
                self.table6.insert(k, idx);
                self.keys6.insert(idx, k);
            }
        }
        self.stats.conns.inc();
        idx
    }

    /// Removes a connection from the table (its id goes stale).
    pub(super) fn reap(&mut self, idx: u32) {
        let slot = &mut self.slots[idx as usize];
        let Some(mut c) = slot.conn.take() else {
            return;
        };
        slot.gen = slot.gen.wrapping_add(1);
        if let Some(port) = c.listener {
            if let Some(l) = self.listeners.get_mut(&port) {
                l.pending -= 1;
            }
        }
        if let Eng::Own(o) = &mut c.eng {
            o.tcb.release(&mut self.own.slab);
        }
        if !c.v6 {
            self.table.remove(c.key);
        } else if let Some(k) = self.keys6.remove(&idx) {
            self.table6.remove(&k);
        }
        self.free.push(idx);
        self.stats.conns.sub(1);
    }

    /// Connection `idx` now wants its timer at `at` µs ([`super::timers::NONE`]:
    /// never), replacing what it wanted.
    pub(super) fn set_timer(&mut self, idx: u32, at: u64) {
        if let Some(c) = self.slots[idx as usize].conn.as_mut() {
            if let Some(e) = c.timer.set(idx, at) {
                self.timers.insert(e);
            }
        }
    }

    /// Connection `idx` also wants its timer by `at` µs.
    pub(super) fn lower_timer(&mut self, idx: u32, at: u64) {
        if let Some(c) = self.slots[idx as usize].conn.as_mut() {
            if let Some(e) = c.timer.lower(idx, at) {
                self.timers.insert(e);
            }
        }
    }

    #[inline]
    pub(super) fn touch(&mut self, idx: u32) {
        if let Some(c) = self.slots[idx as usize].conn.as_mut() {
            if !c.touched {
                c.touched = true;
                self.touched.push(idx);
            }
        }
    }

    /// Prefetches what a segment's processing reads of connection `idx`:
    /// the first lines of its engine block (its hot lines, see
    /// [`crate::tcp::Tcb`]) and the slot's last line (the connection's own
    /// fields).
    #[inline]
    pub(super) fn prefetch_slot(&self, idx: u32) {
        if let Some(s) = self.slots.get(idx as usize) {
            crate::hint::prefetch(s, SLOT_HOT_LINES);
            crate::hint::prefetch(&s.gen, 1);
        }
    }

    /// The table key of connection `idx`.
    #[inline]
    pub(super) fn conn_key(&self, idx: u32) -> Option<TcpKey> {
        let c = self.slots[idx as usize].conn.as_ref()?;
        match c.v4_key() {
            Some(k) => Some(TcpKey::V4(k)),
            None => self.keys6.get(&idx).map(|k| TcpKey::V6(*k)),
        }
    }

    pub(super) fn live_mut(&mut self, idx: u32, gen: u32) -> Option<&mut Conn> {
        live(&mut self.slots, ConnId { idx, gen })
    }

    pub(super) fn id(&self, idx: u32) -> ConnId {
        ConnId {
            idx,
            gen: self.slots[idx as usize].gen,
        }
    }

    /// The handshake completed: settle the backlog, count, tell.
    pub(super) fn opened(&mut self, idx: u32) {
        let id = self.id(idx);
        let Some(c) = self.slots[idx as usize].conn.as_mut() else {
            return;
        };
        if c.opened {
            return;
        }
        c.opened = true;
        if matches!(c.eng, Eng::Own(_)) {
            self.stats.bypass_opened.inc();
        }
        if let Some(port) = c.listener.take() {
            if let Some(l) = self.listeners.get_mut(&port) {
                l.pending -= 1;
            }
        }
        // A connection rebuilt from a SYN cookie was accepted too, though
        // it never held a backlog slot.
        if c.active {
            self.stats.connected.inc();
        } else {
            self.stats.accepted.inc();
        }
        self.events.push(Event::Open(id));
    }

    /// Tells the application what changed, in the same words for both
    /// engines: the handshake completed, data or send room appeared, the
    /// peer's FIN arrived and everything before it was read (once).
    pub(super) fn report(&mut self, idx: u32, r: Report) {
        let id = self.id(idx);
        if r.open {
            self.opened(idx);
        }
        let Some(c) = self.slots[idx as usize].conn.as_mut() else {
            return;
        };
        if !c.opened {
            return;
        }
        if r.readable {
            self.events.push(Event::Readable(id));
        }
        if r.writable {
            self.events.push(Event::Writable(id));
        }
        if r.peer_fin_drained && !c.peer_fin_told {
            c.peer_fin_told = true;
            self.events.push(Event::PeerClosed(id));
        }
    }

    /// The connection is over: count and tell (once).
    pub(super) fn ended(&mut self, idx: u32, normal: bool) {
        let id = self.id(idx);
        let Some(c) = self.slots[idx as usize].conn.as_mut() else {
            return;
        };
        if c.closed_told {
            return;
        }
        c.closed_told = true;
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

    /// A local port for an active open to `remote`: free in the table (or
    /// held by a TIME-WAIT record that may be taken over, RFC 6191), and
    /// hashing back to this core when the stack is sharded. Returns it
    /// with the connection's table key.
    pub(super) fn pick_local_port(&mut self, remote: SocketAddr) -> Result<(u16, TcpKey)> {
        let rip: IpAddr = remote.ip();
        let (lo, hi) = self.cfg.ephemeral;
        let span = (hi - lo) as u32 + 1;
        let now = self.now_us;
        let no_source = || {
            Error::Config(format!(
                "cannot connect to {remote}: the stack has no address to send from"
            ))
        };
        let source = self.source_for(rip).ok_or_else(no_source)?;
        let ours = &self.ours;
        let key = |p: u16| ours.key(source, rip, remote.port(), p);
        // Our source is one of our addresses (smoltcp picks among them).
        key(lo).ok_or_else(no_source)?;
        let (table, table6) = (&self.table, &self.table6);
        let (tw, tw6) = (&self.own.tw, &self.own.tw6);
        let free = |p: u16| match key(p) {
            Some(TcpKey::V4(k)) => !table.contains_key(k) && tw.reusable(k, now),
            Some(TcpKey::V6(k)) => !table6.contains_key(&k) && tw6.reusable(k, now),
            None => false,
        };
        let mut found = None;
        match &self.shard {
            // The replies must hash back to this core.
            Some(sh) if sh.cores() > 1 => {
                found = sh.rss().pick_local_port(
                    source,
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
            self.stats.connect_no_port.inc();
            return Err(Error::Config(format!(
                "no free local port towards {remote}: all {span} ephemeral ports are in use or in TIME-WAIT"
            )));
        };
        let key = key(lport).ok_or_else(no_source)?;
        if self.tw_remove(key) {
            self.stats.time_wait_reused.inc();
        }
        Ok((lport, key))
    }
}

#[cfg(test)]
mod tests {
    use super::super::classify::Key6;
    use super::*;
    use std::mem::size_of;

    /// What a connection costs in the tables: an IPv4 connection costs
    /// what it did before IPv6 (a 16-byte map entry, an 8-byte key in its
    /// slot, whose flags absorb the family bit; the key is also where the
    /// bypass engine finds the peer's address); an IPv6 one adds a 28-byte
    /// entry in the IPv6 map (the peer's address and port, our port and
    /// the index of our address) and one in the slot-to-key map.
    #[test]
    fn table_entry_sizes() {
        assert_eq!(size_of::<(u64, u32)>(), 16, "IPv4 map entry");
        assert_eq!(size_of::<(Key6, u32)>(), 28, "IPv6 map entry");
        assert_eq!(size_of::<(u32, Key6)>(), 28, "IPv6 slot-to-key entry");
        assert_eq!(
            size_of::<Conn>() - size_of::<Eng>(),
            40,
            "a connection's own fields"
        );
        assert_eq!(size_of::<Slot>() % 64, 0, "slots are whole cache lines");
        assert!(
            size_of::<Slot>() <= 704,
            "a slot is {} B",
            size_of::<Slot>()
        );
        // What every segment reads besides the block's hot lines (the
        // engine's and the connection's own fields, the generation) is
        // the slot's last line, apart from the block's cold lines.
        let last = size_of::<Slot>() / 64 - 1;
        assert_eq!(std::mem::offset_of!(Slot, gen) / 64, last);
        assert_eq!(std::mem::offset_of!(Conn, key) / 64, last);
        assert_eq!(std::mem::offset_of!(OwnConn, cfg) / 64, last);
        assert_eq!(std::mem::offset_of!(OwnConn, floor_seen) / 64, last);
        assert_eq!(std::mem::offset_of!(OwnConn, mac) / 64, last);
        eprintln!(
            "Slot {} B, Conn {} B, Eng {} B, OwnConn {} B",
            size_of::<Slot>(),
            size_of::<Conn>(),
            size_of::<Eng>(),
            size_of::<OwnConn>()
        );
    }
}
