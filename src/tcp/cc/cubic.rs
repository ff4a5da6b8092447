//! CUBIC's congestion-avoidance state (RFC 9438), driven by [`super::Cc`].
//!
//! Units are bytes and microseconds; the curve is computed in `f64` once
//! per ACK (one cube, no `powf`), the cube root once per epoch. State is
//! kept in integers so that a connection's controller stays small.

/// Multiplicative decrease factor beta_cubic (RFC 9438 §4.6).
pub(super) const BETA: f64 = 0.7;
/// Scaling constant C, in segments per second cubed (§4.2).
const C: f64 = 0.4;
/// alpha_cubic = 3 (1 - beta) / (1 + beta) (§4.3): Reno's average rate for
/// CUBIC's beta.
const ALPHA: f64 = 3.0 * (1.0 - BETA) / (1.0 + BETA);
/// W_est is kept in 1/256 bytes, so that sub-byte increments at large
/// windows are not lost.
const EST_SHIFT: u32 = 8;

/// ssthresh after a congestion event: flight × beta_cubic, at least two
/// segments (§4.6).
pub(super) fn ssthresh(flight: u32, mss: u32) -> u32 {
    ((f64::from(flight) * BETA) as u32).max(mss.saturating_mul(2))
}

/// Per-connection CUBIC state (the window itself lives in [`super::Cc`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Cubic {
    /// W_max: the window before the last reduction, or lower with fast
    /// convergence (§4.7). 0 before any congestion event.
    w_max: u32,
    /// cwnd_prior: the window when ssthresh was last set (§4.6, §4.3).
    cwnd_prior: u32,
    /// K, in microseconds (§4.2).
    k_us: u32,
    /// The first congestion-avoidance stage after a timeout starts with
    /// K = 0 and W_max = cwnd_epoch (§4.8); so does one after a slow start
    /// that ended without loss (§4.10).
    after_rto: bool,
    /// t_epoch: start of the current congestion-avoidance stage; `None`
    /// until its first ACK.
    epoch_us: Option<u64>,
    /// Time of the last ACK seen in congestion avoidance, to keep
    /// application-limited time out of t (§5.8).
    last_ack_us: u64,
    /// W_est (§4.3), in 1/256 bytes.
    w_est: u64,
    /// Sum of (target - cwnd) × acked not yet turned into whole bytes of
    /// cwnd (§4.4: target - cwnd over cwnd per segment acked).
    acc: u64,
}

impl Cubic {
    pub(super) fn new() -> Self {
        Self {
            w_max: 0,
            cwnd_prior: 0,
            k_us: 0,
            after_rto: false,
            epoch_us: None,
            last_ack_us: 0,
            w_est: 0,
            acc: 0,
        }
    }

    /// W_max.
    #[cfg(test)]
    pub(super) fn w_max(&self) -> u32 {
        self.w_max
    }

    /// K in microseconds.
    #[cfg(test)]
    pub(super) fn k_us(&self) -> u32 {
        self.k_us
    }

    /// A congestion event with window `cwnd` and `flight` bytes in flight:
    /// fast convergence (§4.7), cwnd_prior, a new epoch to come. Returns
    /// the new ssthresh (§4.6).
    pub(super) fn on_congestion_event(&mut self, cwnd: u32, flight: u32, mss: u32) -> u32 {
        self.w_max = if cwnd < self.w_max {
            // The flow is losing share: release some for newer flows.
            (f64::from(cwnd) * (1.0 + BETA) / 2.0) as u32
        } else {
            cwnd
        };
        self.cwnd_prior = cwnd;
        self.after_rto = false;
        self.restart_epoch();
        ssthresh(flight, mss)
    }

    /// A retransmission timeout (§4.8). On the first of a series, returns
    /// the new ssthresh; the next congestion-avoidance stage starts with
    /// K = 0 from whatever window slow start reaches.
    pub(super) fn on_rto(&mut self, cwnd: u32, flight: u32, mss: u32, first: bool) -> Option<u32> {
        self.after_rto = true;
        self.restart_epoch();
        first.then(|| {
            self.cwnd_prior = cwnd;
            ssthresh(flight, mss)
        })
    }

    /// Slow start ended without loss (HyStart++): the next stage starts
    /// with K = 0 from the window reached (§4.10).
    pub(super) fn on_slow_start_exit(&mut self) {
        self.after_rto = true;
        self.restart_epoch();
    }

    /// The next ACK in congestion avoidance starts a new epoch.
    pub(super) fn restart_epoch(&mut self) {
        self.epoch_us = None;
        self.acc = 0;
    }

    /// An ACK while application-limited: the window does not grow and the
    /// time since the last ACK does not count in t (§5.8).
    pub(super) fn on_app_limited(&mut self, now_us: u64) {
        if let Some(epoch) = self.epoch_us {
            let idle = now_us.saturating_sub(self.last_ack_us.max(epoch));
            self.epoch_us = Some(epoch.saturating_add(idle).min(now_us));
        }
        self.last_ack_us = now_us;
    }

    /// W_cubic(t) in bytes (§4.2), t in seconds.
    fn w_cubic(&self, t: f64, mss: f64) -> f64 {
        let d = t - f64::from(self.k_us) / 1e6;
        C * mss * d * d * d + f64::from(self.w_max)
    }

    /// `acked` new bytes acknowledged in congestion avoidance with window
    /// `cwnd`: returns the new window (§4.3 to §4.5). `srtt_us` is the
    /// smoothed RTT (0 if unknown).
    pub(super) fn on_ack(
        &mut self,
        cwnd: u32,
        acked: u32,
        mss: u32,
        srtt_us: u64,
        now_us: u64,
    ) -> u32 {
        let cwnd = cwnd.max(1);
        let (cw, m) = (f64::from(cwnd), f64::from(mss));
        let epoch = match self.epoch_us {
            Some(e) => e,
            None => {
                // §4.2: a new congestion-avoidance stage.
                self.epoch_us = Some(now_us);
                self.acc = 0;
                self.w_est = u64::from(cwnd) << EST_SHIFT;
                if self.after_rto || self.w_max <= cwnd {
                    self.w_max = cwnd;
                    self.k_us = 0;
                } else {
                    let k_s = ((f64::from(self.w_max) - cw) / (C * m)).cbrt();
                    self.k_us = (k_s * 1e6) as u32;
                }
                self.after_rto = false;
                now_us
            }
        };
        self.last_ack_us = now_us;
        let t = now_us.saturating_sub(epoch) as f64 / 1e6;
        let rtt = srtt_us as f64 / 1e6;

        // §4.3: the window Reno would have, growing alpha_cubic segments
        // per window (1 once W_est has reached cwnd_prior).
        let alpha = if self.w_est >> EST_SHIFT >= u64::from(self.cwnd_prior) {
            1.0
        } else {
            ALPHA
        };
        let step = alpha * m * f64::from(acked) / cw * f64::from(1u32 << EST_SHIFT);
        self.w_est = self.w_est.saturating_add(step as u64);
        let w_est = self.w_est >> EST_SHIFT;
        if self.w_cubic(t, m) < w_est as f64 {
            // Reno-friendly region: cwnd follows W_est.
            return cwnd.max(u32::try_from(w_est).unwrap_or(u32::MAX));
        }

        // §4.4/§4.5: concave below W_max, convex above, both toward the
        // window the curve reaches one RTT from now, bounded by
        // [cwnd, 1.5 cwnd].
        let target = self.w_cubic(t + rtt, m).clamp(cw, 1.5 * cw);
        let gap = (target - cw) as u64;
        self.acc = self
            .acc
            .saturating_add(gap.saturating_mul(u64::from(acked)));
        let inc = self.acc / u64::from(cwnd);
        self.acc %= u64::from(cwnd);
        cwnd.saturating_add(u32::try_from(inc).unwrap_or(u32::MAX))
    }
}
