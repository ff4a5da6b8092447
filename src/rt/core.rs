//! One core's reactor: the stack behind a trait object, the per-connection
//! wakers, the timer heap, and the turn of the loop that drives them.

use std::cell::{Cell, RefCell};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::rc::Rc;
use std::task::Waker;

use crate::app::tcp::ConnOps;
use crate::error::Result;
use crate::port::PortQueue;
use crate::stack::{CloseReason, ConnId, Event, ListenOpts, Stack, UdpId};
use crate::time::Instant;

use super::exec::{self, Executor, JoinHandle};

/// The stack operations the runtime uses beyond the connection handle's
/// ([`ConnOps`]), object-safe so that streams and listeners do not carry
/// the port's queue type.
pub(crate) trait Net: ConnOps {
    fn poll_rx(&mut self, now: Instant) -> usize;
    fn poll_tx(&mut self, now: Instant) -> usize;
    fn take_events(&mut self) -> Vec<Event>;
    fn recycle_events(&mut self, v: Vec<Event>);
    fn next_timer(&self) -> Option<u64>;
    fn listen(&mut self, port: u16, opts: ListenOpts) -> Result<()>;
    fn peek(&mut self, id: ConnId, out: &mut [u8]) -> usize;
    fn consume(&mut self, id: ConnId, n: usize);
    fn readable(&mut self, id: ConnId) -> usize;
    /// The peer has sent its FIN (all its data has arrived).
    fn peer_fin(&mut self, id: ConnId) -> bool;
    fn udp_bind(&mut self, port: u16, slots: usize, max_len: usize) -> Result<UdpId>;
    fn udp_recv(&mut self, id: UdpId, out: &mut [u8]) -> Option<(usize, SocketAddr)>;
}

impl<Q: PortQueue> Net for Stack<Q> {
    fn poll_rx(&mut self, now: Instant) -> usize {
        Stack::poll_rx(self, now)
    }
    fn poll_tx(&mut self, now: Instant) -> usize {
        Stack::poll_tx(self, now)
    }
    fn take_events(&mut self) -> Vec<Event> {
        Stack::take_events(self)
    }
    fn recycle_events(&mut self, v: Vec<Event>) {
        Stack::recycle_events(self, v)
    }
    fn next_timer(&self) -> Option<u64> {
        Stack::next_timer(self)
    }
    fn listen(&mut self, port: u16, opts: ListenOpts) -> Result<()> {
        Stack::listen(self, port, opts)
    }
    fn peek(&mut self, id: ConnId, out: &mut [u8]) -> usize {
        Stack::peek(self, id, out)
    }
    fn consume(&mut self, id: ConnId, n: usize) {
        Stack::consume(self, id, n)
    }
    fn readable(&mut self, id: ConnId) -> usize {
        Stack::readable(self, id)
    }
    fn peer_fin(&mut self, id: ConnId) -> bool {
        use smoltcp::socket::tcp::State::*;
        // `Event::PeerClosed` is not raised when the FIN came while data
        // was still unread and the reader drains it later (the stack
        // re-checks a connection only on a state change), so the reader
        // asks.
        matches!(
            Stack::state(self, id),
            Some(CloseWait | LastAck | Closing | TimeWait | Closed)
        )
    }
    fn udp_bind(&mut self, port: u16, slots: usize, max_len: usize) -> Result<UdpId> {
        Stack::udp_bind(self, port, slots, max_len)
    }
    fn udp_recv(&mut self, id: UdpId, out: &mut [u8]) -> Option<(usize, SocketAddr)> {
        Stack::udp_recv(self, id, out)
    }
}

/// How a connection we opened is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// `connect` sent the SYN.
    Connecting,
    /// Established (accepted or connected).
    Open,
    /// The handshake failed (`ConnectFailed`).
    Failed,
}

/// The runtime's view of one connection of the stack.
pub(crate) struct ConnSlot {
    pub(crate) gen: u32,
    pub(crate) live: bool,
    /// A `TcpStream` (or a pending connect / accept queue) holds it.
    pub(crate) owned: bool,
    pub(crate) phase: Phase,
    pub(crate) peer_closed: bool,
    pub(crate) closed: Option<CloseReason>,
    pub(crate) reader: Option<Waker>,
    pub(crate) writer: Option<Waker>,
}

/// A listening port on this core.
pub(crate) struct ListenSlot {
    pub(crate) queue: VecDeque<ConnId>,
    pub(crate) waker: Option<Waker>,
    /// A `TcpListener` holds the port (the stack keeps listening after a
    /// listener is dropped; connections then are refused with RST).
    pub(crate) bound: bool,
    pub(crate) backlog: usize,
}

/// A UDP socket on this core.
pub(crate) struct UdpSlot {
    pub(crate) reader: Option<Waker>,
    pub(crate) bound: bool,
}

#[derive(Default)]
pub(crate) struct Timers {
    heap: BinaryHeap<Reverse<(u64, u64)>>,
    wakers: HashMap<u64, Waker>,
    next_key: u64,
}

/// Counters of what the runtime refused or dropped on this core.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RtStats {
    /// Connections accepted by the stack for a port whose accept queue
    /// was full or whose listener was dropped: reset.
    pub accept_refused: u64,
    /// Bytes that arrived on connections whose stream was dropped:
    /// read and discarded.
    pub discarded: u64,
}

/// The state of one core, shared by its tasks through `Rc`.
pub(crate) struct Shared {
    pub(crate) net: RefCell<Box<dyn Net>>,
    pub(crate) now: Cell<Instant>,
    pub(crate) conns: RefCell<Vec<ConnSlot>>,
    pub(crate) listeners: RefCell<HashMap<u16, ListenSlot>>,
    pub(crate) udp: RefCell<Vec<UdpSlot>>,
    pub(crate) udp_ports: RefCell<HashMap<u16, UdpId>>,
    pub(crate) timers: RefCell<Timers>,
    pub(crate) exec: Executor,
    pub(crate) opts: CoreOpts,
    pub(crate) stats: Cell<RtStats>,
    pub(crate) core: usize,
    /// Wakers to wake after a pass (kept to reuse its allocation).
    wake: RefCell<Vec<Waker>>,
}

/// Settings of one core's runtime.
#[derive(Debug, Clone)]
pub struct CoreOpts {
    /// Listener settings (`TcpListener::bind`).
    pub listen: ListenOpts,
    /// How long a `TcpStream::connect` waits for the handshake.
    pub connect_timeout: std::time::Duration,
    /// Datagrams queued per UDP socket, each way.
    pub udp_slots: usize,
    /// Largest datagram a UDP socket takes.
    pub udp_max_len: usize,
}

impl Default for CoreOpts {
    fn default() -> Self {
        CoreOpts {
            listen: ListenOpts::default(),
            connect_timeout: std::time::Duration::from_secs(10),
            udp_slots: 256,
            udp_max_len: 2048,
        }
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Rc<Shared>>> = const { RefCell::new(None) };
}

/// The core whose tasks run on this thread now.
pub(crate) fn current() -> std::io::Result<Rc<Shared>> {
    CURRENT.with(|c| c.borrow().clone()).ok_or_else(|| {
        std::io::Error::other(
            "no bypass runtime on this thread: call this from a task of Runtime::builder().run \
                 or inside Core::enter",
        )
    })
}

/// Runs `f` with `shared` as the current core, restoring the previous one.
fn with_current<R>(shared: &Rc<Shared>, f: impl FnOnce() -> R) -> R {
    let prev = CURRENT.with(|c| c.replace(Some(shared.clone())));
    struct Restore(Option<Rc<Shared>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let p = self.0.take();
            CURRENT.with(|c| *c.borrow_mut() = p);
        }
    }
    let _restore = Restore(prev);
    f()
}

impl Shared {
    /// The slot of a live connection `id`.
    pub(crate) fn with_conn<R>(&self, id: ConnId, f: impl FnOnce(&mut ConnSlot) -> R) -> Option<R> {
        let mut conns = self.conns.borrow_mut();
        match conns.get_mut(id.idx as usize) {
            Some(s) if s.live && s.gen == id.gen => Some(f(s)),
            _ => None,
        }
    }

    /// Starts tracking connection `id` (new to the runtime).
    pub(crate) fn track(&self, id: ConnId, phase: Phase, owned: bool) {
        let mut conns = self.conns.borrow_mut();
        let i = id.idx as usize;
        if conns.len() <= i {
            conns.resize_with(i + 1, || ConnSlot {
                gen: 0,
                live: false,
                owned: false,
                phase: Phase::Open,
                peer_closed: false,
                closed: None,
                reader: None,
                writer: None,
            });
        }
        conns[i] = ConnSlot {
            gen: id.gen,
            live: true,
            owned,
            phase,
            peer_closed: false,
            closed: None,
            reader: None,
            writer: None,
        };
    }

    /// Forgets connection `id` (its stream was dropped after it closed).
    pub(crate) fn untrack(&self, id: ConnId) {
        self.with_conn(id, |s| {
            s.live = false;
            s.reader = None;
            s.writer = None;
        });
    }

    pub(crate) fn count(&self, f: impl FnOnce(&mut RtStats)) {
        let mut s = self.stats.get();
        f(&mut s);
        self.stats.set(s);
    }

    /// Registers a timer; returns its key.
    pub(crate) fn add_timer(&self, at: u64, waker: Waker) -> u64 {
        let mut t = self.timers.borrow_mut();
        let key = t.next_key;
        t.next_key += 1;
        t.heap.push(Reverse((at, key)));
        t.wakers.insert(key, waker);
        key
    }

    /// Replaces the waker of a live timer.
    pub(crate) fn update_timer(&self, key: u64, waker: &Waker) {
        if let Some(w) = self.timers.borrow_mut().wakers.get_mut(&key) {
            if !w.will_wake(waker) {
                *w = waker.clone();
            }
        }
    }

    /// Cancels a timer.
    pub(crate) fn cancel_timer(&self, key: u64) {
        self.timers.borrow_mut().wakers.remove(&key);
    }

    fn fire_timers(&self, now: u64) -> usize {
        let mut fired = std::mem::take(&mut *self.wake.borrow_mut());
        {
            let mut t = self.timers.borrow_mut();
            while let Some(Reverse((at, key))) = t.heap.peek().copied() {
                if at > now {
                    break;
                }
                t.heap.pop();
                if let Some(w) = t.wakers.remove(&key) {
                    fired.push(w);
                }
            }
        }
        let n = fired.len();
        for w in fired.drain(..) {
            w.wake();
        }
        *self.wake.borrow_mut() = fired;
        n
    }

    /// Microseconds of the earliest timer, runtime or stack.
    pub(crate) fn next_deadline(&self) -> Option<u64> {
        let ours = self.timers.borrow().heap.peek().map(|r| r.0 .0);
        let stack = self.net.borrow().next_timer();
        match (ours, stack) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Hands the stack's events to the wakers.
    fn dispatch(&self) -> usize {
        let events = self.net.borrow_mut().take_events();
        let n = events.len();
        if n == 0 {
            self.net.borrow_mut().recycle_events(events);
            return 0;
        }
        let mut wake = std::mem::take(&mut *self.wake.borrow_mut());
        for &ev in &events {
            match ev {
                Event::Open(id) => self.on_open(id, &mut wake),
                Event::Readable(id) => {
                    let orphan = self
                        .with_conn(id, |s| {
                            if let Some(w) = s.reader.take() {
                                wake.push(w);
                            }
                            !s.owned
                        })
                        .unwrap_or(false);
                    if orphan {
                        self.discard(id);
                    }
                }
                Event::Writable(id) => {
                    self.with_conn(id, |s| {
                        if let Some(w) = s.writer.take() {
                            wake.push(w);
                        }
                    });
                }
                Event::PeerClosed(id) => {
                    self.with_conn(id, |s| {
                        s.peer_closed = true;
                        if let Some(w) = s.reader.take() {
                            wake.push(w);
                        }
                    });
                }
                Event::Closed(id, reason) => {
                    let mut conns = self.conns.borrow_mut();
                    if let Some(s) = conns.get_mut(id.idx as usize) {
                        if s.live && s.gen == id.gen {
                            s.closed = Some(reason);
                            wake.extend(s.reader.take());
                            wake.extend(s.writer.take());
                            if !s.owned {
                                s.live = false;
                            }
                        }
                    }
                }
                Event::ConnectFailed(id) => {
                    self.with_conn(id, |s| {
                        s.phase = Phase::Failed;
                        wake.extend(s.reader.take());
                        wake.extend(s.writer.take());
                    });
                }
                Event::UdpReadable(u) => {
                    if let Some(s) = self.udp.borrow_mut().get_mut(u.0 as usize) {
                        wake.extend(s.reader.take());
                    }
                }
            }
        }
        self.net.borrow_mut().recycle_events(events);
        for w in wake.drain(..) {
            w.wake();
        }
        *self.wake.borrow_mut() = wake;
        n
    }

    fn on_open(&self, id: ConnId, wake: &mut Vec<Waker>) {
        // A connect of ours?
        let mine = self.with_conn(id, |s| {
            s.phase = Phase::Open;
            wake.extend(s.writer.take());
        });
        if mine.is_some() {
            return;
        }
        // Accepted: queue it on its port's listener.
        let port = self.net.borrow_mut().endpoints(id).map(|e| e.0.port());
        let mut ls = self.listeners.borrow_mut();
        match port.and_then(|p| ls.get_mut(&p)) {
            Some(l) if l.bound && l.queue.len() < l.backlog => {
                l.queue.push_back(id);
                wake.extend(l.waker.take());
                drop(ls);
                self.track(id, Phase::Open, true);
            }
            _ => {
                drop(ls);
                self.net.borrow_mut().abort(id);
                self.count(|s| s.accept_refused += 1);
            }
        }
    }

    /// Reads and drops what arrived for a connection nobody reads.
    fn discard(&self, id: ConnId) {
        let mut net = self.net.borrow_mut();
        let mut buf = [0u8; 2048];
        loop {
            let n = net.peek(id, &mut buf);
            if n == 0 {
                break;
            }
            net.consume(id, n);
            self.count(|s| s.discarded += n as u64);
        }
    }
}

/// One core's runtime over one stack, driven by whoever calls
/// [`Core::turn`]: the pinned threads of [`super::Runtime`], or a test that
/// drives several cores from one thread with a manual clock.
pub struct Core {
    shared: Rc<Shared>,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("core", &self.shared.core)
            .field("tasks", &self.shared.exec.live())
            .finish()
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        // Tasks hold streams, which hold the core: drop the tasks to break
        // the cycle (their streams close as they go).
        with_current(&self.shared, || self.shared.exec.clear());
    }
}

impl Core {
    /// A runtime over `stack` (already sharded and configured), core index
    /// `core`, starting at `now`.
    pub fn new<Q: PortQueue>(stack: Stack<Q>, core: usize, opts: CoreOpts, now: Instant) -> Core {
        Core {
            shared: Rc::new(Shared {
                net: RefCell::new(Box::new(stack)),
                now: Cell::new(now),
                conns: RefCell::new(Vec::new()),
                listeners: RefCell::new(HashMap::new()),
                udp: RefCell::new(Vec::new()),
                udp_ports: RefCell::new(HashMap::new()),
                timers: RefCell::new(Timers::default()),
                exec: Executor::new(),
                opts,
                stats: Cell::new(RtStats::default()),
                core,
                wake: RefCell::new(Vec::new()),
            }),
        }
    }

    /// Spawns a task on this core.
    pub fn spawn<F: Future + 'static>(&self, fut: F) -> JoinHandle<F::Output> {
        let (t, h) = exec::task(fut);
        self.shared.exec.spawn(t);
        h
    }

    /// Runs `f` with this core as the current one (so that
    /// [`super::spawn_local`], `TcpListener::bind` and `sleep` find it).
    pub fn enter<R>(&self, f: impl FnOnce() -> R) -> R {
        with_current(&self.shared, f)
    }

    /// One turn of the loop at time `now`: receive, wake, run the woken
    /// tasks, send. Returns units of work done (0: idle).
    pub fn turn(&self, now: Instant) -> usize {
        let sh = &self.shared;
        sh.now.set(now);
        with_current(sh, || {
            let mut work = sh.net.borrow_mut().poll_rx(now);
            work += sh.dispatch();
            work += sh.fire_timers(now.micros());
            // Tasks woken by tasks (a connection task woken by its
            // handshake, a task that yielded) run in this turn too, so what
            // they write leaves with this turn's transmit; bounded, so a
            // task that always wakes itself cannot starve the stack.
            for _ in 0..4 {
                let n = sh.exec.run_ready();
                work += n;
                if n == 0 {
                    break;
                }
            }
            work += sh.net.borrow_mut().poll_tx(now);
            // Events from egress and timers (closes, room to write) wake
            // their tasks for the next turn.
            work += sh.dispatch();
            work
        })
    }

    /// Tasks not finished yet.
    pub fn tasks(&self) -> usize {
        self.shared.exec.live()
    }

    /// Microseconds (on the loop's clock) of the next timer, the stack's or
    /// a `sleep`'s.
    pub fn next_deadline(&self) -> Option<u64> {
        self.shared.next_deadline()
    }

    /// What the runtime refused or dropped so far.
    pub fn stats(&self) -> RtStats {
        self.shared.stats.get()
    }

    /// Drops every task (closing their streams) and pushes the FINs out.
    pub fn shutdown(&self, now: Instant) {
        with_current(&self.shared, || self.shared.exec.clear());
        self.shared.net.borrow_mut().poll_tx(now);
    }
}
