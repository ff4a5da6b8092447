//! The per-core TCP loop: rx burst -> stack -> application -> stack egress
//! -> tx burst, plus timers.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::app::tcp::{Conn, Ctx, TcpApp};
use crate::port::PortQueue;
use crate::runtime::lcore::Worker;
use crate::stack::{ConnId, Event, Stack};
use crate::time::Instant;

/// Bytes handed to `on_data` at most per call.
const READ_CHUNK: usize = 64 * 1024;

/// One core's stack and application.
pub struct TcpWorker<Q: PortQueue, A: TcpApp> {
    stack: Stack<Q>,
    app: A,
    states: Vec<Option<(u32, A::Conn)>>,
    scratch: Vec<u8>,
    udp_buf: Vec<u8>,
}

/// How many events ahead of the one dispatched the application's state is
/// prefetched.
const STATE_PREFETCH_AHEAD: usize = 4;

impl<Q: PortQueue, A: TcpApp> TcpWorker<Q, A> {
    /// A worker running `app` on `stack`.
    pub fn new(stack: Stack<Q>, app: A) -> Self {
        TcpWorker {
            stack,
            app,
            states: Vec::new(),
            scratch: vec![0; READ_CHUNK],
            udp_buf: vec![0; 65536],
        }
    }

    /// The stack.
    pub fn stack(&self) -> &Stack<Q> {
        &self.stack
    }

    /// The stack, mutable (to listen, connect or bind before running).
    pub fn stack_mut(&mut self) -> &mut Stack<Q> {
        &mut self.stack
    }

    /// The application.
    pub fn app(&self) -> &A {
        &self.app
    }

    /// The application, mutable.
    pub fn app_mut(&mut self) -> &mut A {
        &mut self.app
    }

    /// Connections whose application state is live.
    pub fn open_conns(&self) -> usize {
        self.states.iter().filter(|s| s.is_some()).count()
    }

    fn state(&mut self, id: ConnId) -> Option<&mut A::Conn> {
        match self.states.get_mut(id.idx as usize) {
            Some(Some((g, s))) if *g == id.gen => Some(s),
            _ => None,
        }
    }

    /// Offers readable data to the application until it stops consuming.
    /// The bypass engine lends the first chunk of unread bytes, so the
    /// application reads them where they were reassembled. When it wants
    /// more than one chunk holds (it took nothing of it, and more is
    /// readable), and on the smoltcp engine, the bytes are copied into one
    /// contiguous buffer instead, unless `on_readable` and the application
    /// looks blocked on a full send buffer (below).
    fn deliver(&mut self, id: ConnId, now: Instant, on_readable: bool) {
        // Offered at most per call (the rest waits for the next one), so
        // one connection cannot hold the core.
        let mut budget = 8 * READ_CHUNK;
        // An engine that lends nothing (smoltcp) is first offered a copy
        // of one chunk's size, the size the bypass engine lends: what an
        // application blocked on its send buffer declines costs that
        // much per segment, not 64 KiB.
        let mut small_first = on_readable;
        while budget > 0 {
            if let Some(lend) = self.stack.lend(id) {
                small_first = false;
                let Some(lent) = lend else { return };
                let n = lent.bytes().len();
                budget = budget.saturating_sub(n);
                let used = match self.states.get_mut(id.idx as usize) {
                    Some(Some((g, st))) if *g == id.gen => self
                        .app
                        .on_data(st, &mut Conn::new(&mut self.stack, id, now), lent.bytes())
                        .min(n),
                    _ => 0,
                };
                self.stack.give_back(lent);
                self.stack.consume(id, used);
                if used == n {
                    continue;
                }
                if !self.wants_whole(id, n, used, on_readable) {
                    return;
                }
            }
            let cap = if small_first {
                crate::tcp::buf::CHUNK
            } else {
                READ_CHUNK
            };
            let n = self.stack.peek(id, &mut self.scratch[..cap]);
            if n == 0 {
                return;
            }
            let Some(Some((g, st))) = self.states.get_mut(id.idx as usize) else {
                return;
            };
            if *g != id.gen {
                return;
            }
            let used = self
                .app
                .on_data(
                    st,
                    &mut Conn::new(&mut self.stack, id, now),
                    &self.scratch[..n],
                )
                .min(n);
            self.stack.consume(id, used);
            budget = budget.saturating_sub(n);
            // A chunk-sized offer is judged as a lent chunk is; all of it
            // in one piece, declined, waits for the next event.
            if used < n && !(small_first && self.wants_whole(id, n, used, on_readable)) {
                return;
            }
            small_first = false;
        }
    }

    /// After a chunk of `n` bytes of which the application took `used`
    /// (fewer): whether to offer all readable bytes in one piece. It took
    /// none of the chunk though more is readable, so it wants the bytes in
    /// one piece, or it waits for room to send them on (an echo, a proxy).
    /// With its send buffer full it is the second, and on `Readable` the
    /// copy (64 KiB) would be declined again for every segment that
    /// arrives: the bytes are offered when room opens instead.
    fn wants_whole(&mut self, id: ConnId, n: usize, used: usize, on_readable: bool) -> bool {
        used == 0 && self.stack.readable(id) > n && !(on_readable && self.stack.await_send_room(id))
    }

    fn dispatch(&mut self, now: Instant) -> usize {
        if !self.stack.has_events() {
            return 0;
        }
        let events = self.stack.take_events();
        let n = events.len();
        for (i, &ev) in events.iter().enumerate() {
            // The application's state a few events ahead: with thousands
            // of connections it is rarely in cache (see `crate::hint`).
            if let Some(id) = events.get(i + STATE_PREFETCH_AHEAD).and_then(Event::conn) {
                if let Some(st) = self.states.get(id.idx as usize) {
                    crate::hint::prefetch(st, 1);
                }
            }
            match ev {
                Event::Open(id) => {
                    let st = self.app.on_open(&mut Conn::new(&mut self.stack, id, now));
                    let i = id.idx as usize;
                    if self.states.len() <= i {
                        self.states.resize_with(i + 1, || None);
                    }
                    self.states[i] = Some((id.gen, st));
                }
                Event::Readable(id) => self.deliver(id, now, true),
                Event::Writable(id) => {
                    if let Some(Some((g, st))) = self.states.get_mut(id.idx as usize) {
                        if *g == id.gen {
                            self.app
                                .on_writable(st, &mut Conn::new(&mut self.stack, id, now));
                        }
                    }
                    self.deliver(id, now, false);
                }
                Event::PeerClosed(id) => {
                    self.deliver(id, now, false);
                    if let Some(Some((g, st))) = self.states.get_mut(id.idx as usize) {
                        if *g == id.gen {
                            self.app
                                .on_peer_closed(st, &mut Conn::new(&mut self.stack, id, now));
                        }
                    }
                }
                Event::Closed(id, reason) => {
                    if self.state(id).is_some() {
                        if let Some((_, st)) = self.states[id.idx as usize].take() {
                            self.app.on_close(st, reason);
                        }
                    }
                }
                Event::ConnectFailed(id) => self.app.on_connect_failed(id),
                Event::UdpReadable(u) => {
                    while let Some((len, from)) = self.stack.udp_recv(u, &mut self.udp_buf) {
                        let mut ctx = Ctx::new(&mut self.stack, now);
                        self.app
                            .on_datagram(&mut ctx, u, &self.udp_buf[..len], from);
                    }
                }
            }
        }
        self.stack.recycle_events(events);
        n
    }
}

impl<Q: PortQueue, A: TcpApp> Worker for TcpWorker<Q, A> {
    fn poll(&mut self, now: Instant) -> usize {
        let mut work = self.stack.poll_rx(now);
        work += self.dispatch(now);
        work += self.app.poll(&mut Ctx::new(&mut self.stack, now));
        work += self.dispatch(now);
        work += self.stack.poll_tx(now);
        work
    }

    fn finish(&mut self, now: Instant) {
        // Say goodbye properly to whoever is still connected: close, and
        // push the FINs out.
        for i in 0..self.states.len() {
            if let Some((g, _)) = &self.states[i] {
                let id = ConnId {
                    idx: i as u32,
                    gen: *g,
                };
                self.stack.close(id);
            }
        }
        self.stack.poll_tx(now);
    }
}

/// Parses an IPv4 or IPv6 `ADDR/PREFIX` (the `--ip` flag).
pub fn parse_ip_cidr(s: &str) -> crate::Result<(IpAddr, u8)> {
    if !s.contains(':') {
        return parse_cidr(s).map(|(a, p)| (a.into(), p));
    }
    let bad = || crate::Error::Config(format!("`{s}` is not ADDR/PREFIX, e.g. fd00::2/64"));
    let (a, p) = s.split_once('/').ok_or_else(bad)?;
    let a: Ipv6Addr = a.parse().map_err(|_| bad())?;
    let p: u8 = p.parse().map_err(|_| bad())?;
    if p > 128 || a.is_unspecified() || a.is_loopback() || a.is_multicast() {
        return Err(bad());
    }
    Ok((a.into(), p))
}

/// Parses an IPv4 `ADDR/PREFIX`.
pub fn parse_cidr(s: &str) -> crate::Result<(Ipv4Addr, u8)> {
    let bad = || crate::Error::Config(format!("`{s}` is not ADDR/PREFIX, e.g. 10.0.0.2/24"));
    let (a, p) = s.split_once('/').ok_or_else(bad)?;
    let a: Ipv4Addr = a.parse().map_err(|_| bad())?;
    let p: u8 = p.parse().map_err(|_| bad())?;
    if p > 32 || a.is_unspecified() || a.is_broadcast() || a.is_multicast() {
        return Err(bad());
    }
    Ok((a, p))
}
