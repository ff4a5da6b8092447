//! Congestion control: CUBIC (RFC 9438, the default), Reno (RFC 5681) and
//! none, behind one static type [`Cc`] (an enum holds the algorithm's state;
//! no `Box`, no `dyn`).
//!
//! Contract:
//! - Units are bytes; time is the caller's `now_us` (microseconds). Nothing
//!   here reads a clock, allocates or panics; every call is O(1).
//! - The engine owns loss detection and recovery; it tells the controller
//!   what happened:
//!   - [`Cc::on_ack`] for data cumulatively acknowledged *outside*
//!     recovery;
//!   - [`Cc::on_congestion_event`] once per window of data when a loss is
//!     detected (SACK, dupacks or RACK), then [`Cc::on_recovery_exit`]
//!     when the cumulative ACK passes the recovery point;
//!   - [`Cc::on_rto`] on each retransmission timeout;
//!   - [`Cc::undo`] when the last event proves spurious;
//!   - [`Cc::on_idle_restart`] before sending after an idle RTO.
//! - Slow start uses appropriate byte counting with L = 2 MSS (RFC 3465):
//!   each ACK grows cwnd by min(acked, 2 MSS), up to ssthresh.
//! - CUBIC's initial slow start runs HyStart++ (RFC 9406, see
//!   `hystart.rs`); it needs `rtt_us` samples on [`Cc::on_ack`].
//! - Reno's congestion avoidance counts bytes: one MSS per cwnd of bytes
//!   acknowledged (RFC 5681 §3.1, RFC 3465).
//! - An application-limited ACK (the sender had nothing more to send) never
//!   grows the window (RFC 7661's spirit); CUBIC also keeps that time out
//!   of its curve (RFC 9438 §5.8).
//! - [`CcAlgo::None`] never limits: cwnd and ssthresh are `u32::MAX` and
//!   every event is ignored; only the peer's window limits the sender.
//! - MSS changes ([`Cc::set_mss`]): before any event (no ACK, loss or
//!   timeout seen yet), the initial window is recomputed for the new MSS.
//!   Afterwards cwnd and ssthresh stay as they are in bytes (cwnd raised to
//!   one MSS if it was below), and only later increments use the new MSS.
//! - The whole state, including the copy kept for [`Cc::undo`], is 160
//!   bytes (a test asserts the bound): it counts against the 1 KiB budget of
//!   an idle connection.

mod cubic;
mod hystart;

use std::fmt;
use std::str::FromStr;

use cubic::Cubic;
use hystart::{HyStart, Phase, CSS_GROWTH_DIVISOR};

/// Appropriate byte counting limit L, in MSS (RFC 3465 §2.2).
const ABC_L: u32 = 2;

/// A congestion control algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CcAlgo {
    /// CUBIC, RFC 9438, with HyStart++ (RFC 9406).
    #[default]
    Cubic,
    /// Reno, RFC 5681 (the fast recovery itself is the engine's).
    Reno,
    /// No congestion control: only the peer's window limits the sender.
    None,
}

impl CcAlgo {
    /// The names [`FromStr`] accepts, as [`fmt::Display`] prints them.
    pub const NAMES: [&'static str; 3] = ["cubic", "reno", "none"];
}

impl FromStr for CcAlgo {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cubic" => Ok(CcAlgo::Cubic),
            "reno" => Ok(CcAlgo::Reno),
            "none" => Ok(CcAlgo::None),
            _ => Err(format!(
                "unknown congestion control `{s}`: use cubic, reno or none"
            )),
        }
    }
}

impl fmt::Display for CcAlgo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CcAlgo::Cubic => "cubic",
            CcAlgo::Reno => "reno",
            CcAlgo::None => "none",
        })
    }
}

/// The algorithm's own state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Algo {
    Cubic(Cubic),
    /// Bytes acknowledged in congestion avoidance since cwnd last grew.
    Reno {
        acked: u32,
    },
    None,
}

/// Everything an undo restores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
// `repr(C)`: the two numbers first, the algorithm's state after them.
#[repr(C)]
struct Window {
    cwnd: u32,
    ssthresh: u32,
    algo: Algo,
}

/// The initial window of RFC 6928: min(10 MSS, max(2 MSS, 14600)).
pub fn initial_window(mss: u32) -> u32 {
    let mss = u64::from(mss);
    let iw = (10 * mss).min((2 * mss).max(14_600));
    u32::try_from(iw).unwrap_or(u32::MAX)
}

/// One connection's congestion controller.
#[derive(Debug, Clone, PartialEq, Eq)]
// `repr(C)`: what every ACK reads first, the undo copy last (see `Tcb`).
#[repr(C)]
pub struct Cc {
    // What an ACK in slow start reads and writes comes first, with the
    // window's two numbers: in a `Tcb` these 40 bytes share a line.
    hystart: HyStart,
    mss: u32,
    /// Smoothed RTT for CUBIC's target (RFC 9438 §4.2), µs; 0 if unknown.
    srtt_us: u32,
    /// Between `on_congestion_event` and `on_recovery_exit` (or `undo`).
    in_recovery: bool,
    /// Nothing happened yet: `set_mss` may recompute the initial window.
    pristine: bool,
    /// [`CcAlgo::None`] (so that the hot path need not read `w.algo`).
    none: bool,
    w: Window,
    /// The state before the last congestion event or first timeout.
    saved: Option<Window>,
}

impl Cc {
    /// A controller in slow start with the RFC 6928 initial window and an
    /// "infinite" ssthresh (`u32::MAX`). An MSS of 0 is read as 1.
    pub fn new(algo: CcAlgo, mss: u32) -> Self {
        let mss = mss.max(1);
        let (cwnd, algo_state) = match algo {
            CcAlgo::Cubic => (initial_window(mss), Algo::Cubic(Cubic::new())),
            CcAlgo::Reno => (initial_window(mss), Algo::Reno { acked: 0 }),
            CcAlgo::None => (u32::MAX, Algo::None),
        };
        Self {
            w: Window {
                cwnd,
                ssthresh: u32::MAX,
                algo: algo_state,
            },
            saved: None,
            hystart: HyStart::new(algo == CcAlgo::Cubic),
            mss,
            srtt_us: 0,
            in_recovery: false,
            pristine: true,
            none: algo == CcAlgo::None,
        }
    }

    /// The algorithm.
    pub fn algo(&self) -> CcAlgo {
        match self.w.algo {
            Algo::Cubic(_) => CcAlgo::Cubic,
            Algo::Reno { .. } => CcAlgo::Reno,
            Algo::None => CcAlgo::None,
        }
    }

    /// The congestion window, bytes (`u32::MAX` for [`CcAlgo::None`]).
    pub fn cwnd(&self) -> u32 {
        self.w.cwnd
    }

    /// The slow-start threshold, bytes (`u32::MAX` until the first loss).
    pub fn ssthresh(&self) -> u32 {
        self.w.ssthresh
    }

    /// cwnd < ssthresh (never for [`CcAlgo::None`]).
    pub fn in_slow_start(&self) -> bool {
        !self.none && self.w.cwnd < self.w.ssthresh
    }

    /// The MSS the controller counts with.
    pub fn mss(&self) -> u32 {
        self.mss
    }

    /// Sets the MSS once the handshake settled it (0 is read as 1). Before
    /// any event the initial window is recomputed for it; afterwards the
    /// window is kept in bytes, but never below one MSS (see the module
    /// docs).
    pub fn set_mss(&mut self, mss: u32) {
        self.mss = mss.max(1);
        if self.none {
            return;
        }
        if self.pristine {
            self.w.cwnd = initial_window(self.mss);
        }
        // One segment can always be sent.
        self.w.cwnd = self.w.cwnd.max(self.mss);
    }

    /// New data cumulatively acknowledged outside recovery. `acked`: bytes
    /// newly acked; `flight`: bytes in flight before this ACK;
    /// `app_limited`: the sender had nothing more to send (cwnd does not
    /// grow then); `rtt_us`: the latest RTT sample if any.
    pub fn on_ack(
        &mut self,
        acked: u32,
        flight: u32,
        app_limited: bool,
        rtt_us: Option<u64>,
        now_us: u64,
    ) {
        if self.none || acked == 0 {
            return;
        }
        self.pristine = false;
        if let Some(rtt) = rtt_us {
            let rtt = u32::try_from(rtt).unwrap_or(u32::MAX);
            self.srtt_us = if self.srtt_us == 0 {
                rtt
            } else {
                self.srtt_us - self.srtt_us / 8 + rtt / 8
            };
        }
        if self.in_slow_start() {
            let phase = self.hystart.on_ack(acked, flight, rtt_us);
            if app_limited {
                return;
            }
            let mut inc = acked.min(ABC_L.saturating_mul(self.mss));
            match phase {
                Phase::SlowStart => {}
                Phase::Conservative => inc /= CSS_GROWTH_DIVISOR,
                Phase::Exit => {
                    self.w.ssthresh = self.w.cwnd;
                    if let Algo::Cubic(c) = &mut self.w.algo {
                        c.on_slow_start_exit();
                    }
                    return;
                }
            }
            self.w.cwnd = self.w.cwnd.saturating_add(inc).min(self.w.ssthresh);
            return;
        }
        let (cwnd, mss, srtt) = (self.w.cwnd, self.mss, u64::from(self.srtt_us));
        match &mut self.w.algo {
            Algo::Cubic(c) if app_limited => c.on_app_limited(now_us),
            Algo::Cubic(c) => self.w.cwnd = c.on_ack(cwnd, acked, mss, srtt, now_us),
            Algo::Reno { .. } if app_limited => {}
            Algo::Reno { acked: counted } => {
                // One MSS per cwnd of bytes acknowledged.
                let total = u64::from(*counted) + u64::from(acked);
                let windows = total / u64::from(cwnd.max(1));
                *counted = (total % u64::from(cwnd.max(1))) as u32;
                let grow = windows.saturating_mul(u64::from(mss));
                self.w.cwnd = cwnd.saturating_add(u32::try_from(grow).unwrap_or(u32::MAX));
            }
            Algo::None => {}
        }
    }

    /// A loss detected by SACK, dupacks or RACK: entering fast recovery
    /// (call once per window). `flight`: bytes in flight. ssthresh becomes
    /// max(flight / 2, 2 MSS) for Reno, max(0.7 flight, 2 MSS) for CUBIC
    /// (which also updates W_max with fast convergence), and cwnd =
    /// ssthresh. The state before is kept for [`Cc::undo`].
    pub fn on_congestion_event(&mut self, flight: u32, now_us: u64) {
        let _ = now_us; // the epoch starts with the first ACK after recovery
        if self.none {
            return;
        }
        self.saved = Some(self.w);
        self.pristine = false;
        self.hystart.deactivate();
        let (cwnd, mss) = (self.w.cwnd, self.mss);
        let ssthresh = match &mut self.w.algo {
            Algo::Cubic(c) => c.on_congestion_event(cwnd, flight, mss),
            Algo::Reno { acked } => {
                *acked = 0;
                (flight / 2).max(mss.saturating_mul(2))
            }
            Algo::None => return,
        };
        self.w.ssthresh = ssthresh;
        self.w.cwnd = ssthresh;
        self.in_recovery = true;
    }

    /// In fast recovery, the window PRR allows now (RFC 9937: the pipe
    /// plus what this ACK lets be sent). Does nothing outside recovery.
    pub fn set_recovery_cwnd(&mut self, cwnd: u32) {
        if self.in_recovery && !self.none {
            self.w.cwnd = cwnd;
        }
    }

    /// Leaving fast recovery (the cumulative ACK passed the recovery
    /// point): cwnd = ssthresh (RFC 6675 §5, RFC 6582 §3.2 step 3). Does
    /// nothing outside recovery (for example after an [`Cc::undo`]).
    pub fn on_recovery_exit(&mut self, now_us: u64) {
        let _ = now_us; // CUBIC's epoch starts with the next ACK
        if !self.in_recovery {
            return;
        }
        self.in_recovery = false;
        self.w.cwnd = self.w.ssthresh;
    }

    /// A retransmission timeout. On the first of a series (`first`),
    /// ssthresh is set from `flight` as for a congestion event and the
    /// state is kept for [`Cc::undo`]; on every one, cwnd = 1 MSS (the loss
    /// window, RFC 5681 §3.1). CUBIC restarts its epoch (RFC 9438 §4.8).
    pub fn on_rto(&mut self, flight: u32, first: bool, now_us: u64) {
        let _ = now_us; // the epoch starts with the first ACK in avoidance
        if self.none {
            return;
        }
        if first {
            self.saved = Some(self.w);
        }
        self.pristine = false;
        self.in_recovery = false;
        self.hystart.deactivate();
        let (cwnd, mss) = (self.w.cwnd, self.mss);
        let ssthresh = match &mut self.w.algo {
            Algo::Cubic(c) => c.on_rto(cwnd, flight, mss, first),
            Algo::Reno { acked } => {
                *acked = 0;
                first.then(|| (flight / 2).max(mss.saturating_mul(2)))
            }
            Algo::None => None,
        };
        if let Some(s) = ssthresh {
            self.w.ssthresh = s;
        }
        self.w.cwnd = mss;
    }

    /// The last congestion event (or timeout series) was spurious: restore
    /// cwnd, ssthresh and the algorithm's state from before it (RFC 9438
    /// §4.9, RFC 6582's undo spirit). Only once per event; does nothing if
    /// there is nothing to undo.
    pub fn undo(&mut self) {
        if let Some(w) = self.saved.take() {
            self.w = w;
            // The MSS may have grown since.
            self.w.cwnd = self.w.cwnd.max(self.mss);
            self.in_recovery = false;
        }
    }

    /// Restart after idle (RFC 5681 §4.1, RFC 9438 §5.8): call when sending
    /// after more than one RTO without sending. cwnd = min(cwnd, initial
    /// window); CUBIC starts a new epoch when it next avoids congestion.
    pub fn on_idle_restart(&mut self, now_us: u64) {
        let _ = now_us;
        let iw = initial_window(self.mss);
        match &mut self.w.algo {
            Algo::Cubic(c) => c.restart_epoch(),
            Algo::Reno { acked } => *acked = 0,
            Algo::None => return,
        }
        self.w.cwnd = self.w.cwnd.min(iw);
    }

    #[cfg(test)]
    fn cubic(&self) -> &Cubic {
        match &self.w.algo {
            Algo::Cubic(c) => c,
            _ => panic!("not cubic"),
        }
    }
}

#[cfg(test)]
mod tests;
