//! [`Pair`]: a server and a client worker over the two ends of one wire,
//! stepped in turn on a manual clock. The one driver of the mem-wire
//! suites, the hostile suite and the fuzz harness, so that they jump the
//! clock, settle and check for leaks the same way.

use crate::app::tcp::TcpApp;
use crate::port::mem::MemQueue;
use crate::port::PortQueue;
use crate::runtime::{TcpWorker, Worker};
use crate::time::Instant;

/// Frames a test's queue holds for its stack that have not been received
/// yet. [`Pair::drive`] does not jump the clock past them (a frame a
/// faulty wire holds back would otherwise arrive after a timeout that a
/// real wire would never have let fire).
pub trait Waiting {
    /// Frames waiting to be received.
    fn waiting(&self) -> usize;
}

impl Waiting for MemQueue {
    fn waiting(&self) -> usize {
        self.rx_waiting()
    }
}

/// A server and a client [`TcpWorker`] on a manual clock (microseconds).
pub struct Pair<QS: PortQueue, QC: PortQueue, A: TcpApp, B: TcpApp> {
    /// The server's worker.
    pub server: TcpWorker<QS, A>,
    /// The client's worker.
    pub client: TcpWorker<QC, B>,
    /// The manual clock, microseconds.
    pub now: u64,
}

/// How far [`Pair::drive`] moves the clock each step.
pub const STEP_US: u64 = 50;

impl<QS: PortQueue, QC: PortQueue, A: TcpApp, B: TcpApp> Pair<QS, QC, A, B> {
    /// The two workers, at time 0.
    pub fn new(server: TcpWorker<QS, A>, client: TcpWorker<QC, B>) -> Self {
        Pair {
            server,
            client,
            now: 0,
        }
    }

    /// Advances the clock by `us` (at least 1) and polls both sides;
    /// returns the work they did.
    pub fn step(&mut self, us: u64) -> usize {
        self.now += us.max(1);
        self.server.poll(Instant(self.now)) + self.client.poll(Instant(self.now))
    }

    /// The earliest timer of either side.
    pub fn next_timer(&self) -> Option<u64> {
        [
            self.server.stack().next_timer(),
            self.client.stack().next_timer(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Jumps the clock to the earliest timer of either side (never back).
    pub fn idle_jump(&mut self) {
        if let Some(t) = self.next_timer() {
            self.now = self.now.max(t);
        }
    }

    /// Closes what is open, lets every timer run out, and checks that
    /// both packet pools are back at zero buffers in use and that no
    /// connection lingers. (Not for wires that hold frames back for
    /// reordering: a held frame stays in the injector, which is no leak.)
    pub fn settle_and_check_leaks(&mut self) {
        self.server.finish(Instant(self.now));
        self.client.finish(Instant(self.now));
        for _ in 0..200 {
            self.step(500_000);
        }
        for (who, st) in [
            ("server", self.server.stack().queue().pool_stats()),
            ("client", self.client.stack().queue().pool_stats()),
        ] {
            assert_eq!(st.in_use, 0, "{who} pool leaked: {st:?}");
        }
        assert_eq!(self.server.stack().conn_count(), 0, "server conns linger");
        assert_eq!(self.client.stack().conn_count(), 0, "client conns linger");
        assert_eq!(self.server.stack().stats().conns.get(), 0);
    }
}

impl<QS, QC, A: TcpApp, B: TcpApp> Pair<QS, QC, A, B>
where
    QS: PortQueue + Waiting,
    QC: PortQueue + Waiting,
{
    /// Steps [`STEP_US`] at a time until `done` holds or after `max`
    /// steps; returns whether `done` held. When a step does no work and no
    /// frame waits on the wire, the clock jumps to the next timer (or
    /// 1 ms on, when none is ahead).
    pub fn drive(&mut self, max: usize, mut done: impl FnMut(&Self) -> bool) -> bool {
        for _ in 0..max {
            if done(self) {
                return true;
            }
            let waiting =
                self.server.stack().queue().waiting() + self.client.stack().queue().waiting();
            if self.step(STEP_US) == 0 && waiting == 0 {
                match self.next_timer() {
                    Some(t) if t > self.now => self.now = t,
                    _ => self.now += 1000,
                }
            }
        }
        done(self)
    }
}
