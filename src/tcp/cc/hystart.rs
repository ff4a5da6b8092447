//! HyStart++ (RFC 9406): leave the initial slow start when the RTT starts
//! to grow, before the queue overflows, through a few rounds of Conservative
//! Slow Start (CSS).
//!
//! Used for the initial slow start only (RFC 9406 §4.3: after a loss or a
//! timeout, standard slow start). A round is emulated without sequence
//! numbers: it ends once the bytes acknowledged since it began cover the
//! bytes that were in flight when it began (the ACK of the round's
//! `SND.NXT`, RFC 9406 §4.2).
//!
//! RTT thresholds are RFC 9406's (4 to 16 ms): on a LAN with RTTs of tens of
//! microseconds, a queue has to add 4 ms before HyStart++ reacts, so there
//! it mostly leaves slow start to losses, as standard slow start does.

/// Minimum RTT samples in a round before its minimum is trusted (§4.2).
const N_RTT_SAMPLE: u8 = 8;
/// Bounds of the RTT increase threshold, µs (§4.2).
const MIN_RTT_THRESH_US: u32 = 4_000;
const MAX_RTT_THRESH_US: u32 = 16_000;
const MIN_RTT_DIVISOR: u32 = 8;
/// Slow-start growth is divided by this during CSS (§4.2).
pub(super) const CSS_GROWTH_DIVISOR: u32 = 4;
/// Rounds of CSS before congestion avoidance (§4.2).
const CSS_ROUNDS: u8 = 5;
const NONE: u32 = u32::MAX;

/// What slow start should do on this ACK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Standard slow start.
    SlowStart,
    /// Conservative slow start: growth divided by [`CSS_GROWTH_DIVISOR`].
    Conservative,
    /// CSS is over: set ssthresh to cwnd and enter congestion avoidance.
    Exit,
}

/// Per-connection HyStart++ state (24 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct HyStart {
    /// Bytes still to be acknowledged before the current round ends.
    round_left: u32,
    /// Minimum RTT of the previous round, µs (`NONE`: unknown).
    last_round_min: u32,
    /// Minimum RTT of this round so far, µs.
    cur_round_min: u32,
    /// The CSS baseline RTT, µs (`NONE`: not in CSS).
    css_baseline: u32,
    /// RTT samples in this round (saturating).
    samples: u8,
    /// Rounds spent in CSS, the one it started in counted.
    css_rounds: u8,
    /// Still in the initial slow start.
    active: bool,
}

impl HyStart {
    pub(super) fn new(active: bool) -> Self {
        Self {
            round_left: 0,
            last_round_min: NONE,
            cur_round_min: NONE,
            css_baseline: NONE,
            samples: 0,
            css_rounds: 0,
            active,
        }
    }

    /// HyStart++ is done for this connection (the initial slow start
    /// ended, by loss, timeout or CSS).
    pub(super) fn deactivate(&mut self) {
        self.active = false;
    }

    /// In conservative slow start.
    #[cfg(test)]
    pub(super) fn in_css(&self) -> bool {
        self.active && self.css_baseline != NONE
    }

    /// One ACK in slow start: `acked` new bytes, `flight` bytes in flight
    /// before it, `rtt_us` its RTT sample if any.
    pub(super) fn on_ack(&mut self, acked: u32, flight: u32, rtt_us: Option<u64>) -> Phase {
        if !self.active {
            return Phase::SlowStart;
        }
        if acked >= self.round_left {
            // The round's last byte is acknowledged: a new round begins,
            // ending with what is in flight now.
            self.round_left = flight.saturating_sub(acked);
            self.last_round_min = self.cur_round_min;
            self.cur_round_min = NONE;
            self.samples = 0;
            if self.css_baseline != NONE {
                self.css_rounds = self.css_rounds.saturating_add(1);
            }
        } else {
            self.round_left -= acked;
        }
        if let Some(rtt) = rtt_us {
            let rtt = u32::try_from(rtt).unwrap_or(NONE - 1);
            self.cur_round_min = self.cur_round_min.min(rtt);
            self.samples = self.samples.saturating_add(1);
        }
        let enough = self.samples >= N_RTT_SAMPLE;
        if self.css_baseline == NONE {
            if enough && self.last_round_min != NONE && self.cur_round_min != NONE {
                let thresh = (self.last_round_min / MIN_RTT_DIVISOR)
                    .clamp(MIN_RTT_THRESH_US, MAX_RTT_THRESH_US);
                if self.cur_round_min >= self.last_round_min.saturating_add(thresh) {
                    self.css_baseline = self.cur_round_min;
                    self.css_rounds = 1;
                    return Phase::Conservative;
                }
            }
            Phase::SlowStart
        } else if enough && self.cur_round_min < self.css_baseline {
            // The RTT came back down: the increase was spurious.
            self.css_baseline = NONE;
            Phase::SlowStart
        } else if self.css_rounds > CSS_ROUNDS {
            self.active = false;
            Phase::Exit
        } else {
            Phase::Conservative
        }
    }
}
