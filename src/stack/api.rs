//! What the application calls on a connection: connect, read (peek, lend,
//! consume), write, close and abort, and what it may ask (endpoints,
//! state). Each call takes a [`ConnId`] and does nothing for a stale one.

use super::*;

impl<Q: PortQueue> Stack<Q> {
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

    /// Whether a connection's send buffer is full while it may still
    /// send; then [`Event::Writable`] follows when there is room.
    pub fn await_send_room(&mut self, id: ConnId) -> bool {
        let Some(c) = conn::live(&mut self.slots, id) else {
            return false;
        };
        match &mut c.eng {
            Eng::Own(o) => o.tcb.await_room(&self.own.cfgs[o.cfg as usize]),
            Eng::Smol(s) => s.await_room(),
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
    pub(super) fn source_for(&self, remote: IpAddr) -> Option<IpAddr> {
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
