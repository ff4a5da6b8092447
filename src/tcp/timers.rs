//! A connection's timers: one slot for retransmission, tail-loss probe,
//! RACK reordering and zero-window probes, one for the delayed ACK, and
//! the deadlines derived from state (handshake, TIME-WAIT, user timeout,
//! keepalive, idle), all reported through [`Tcb::poll_at`].

use super::config::{Config, Env};
use super::tcb::{ev, flag, CloseReason, Rtx, State, Tcb, NEVER};

impl Tcb {
    /// When this connection next wants [`Tcb::on_timer`] (µs), if ever.
    pub fn poll_at(&self, cfg: &Config) -> u64 {
        if self.state == State::Closed {
            return NEVER;
        }
        if self.flags & (flag::ACK_NOW | flag::RST_NOW | flag::SYN_NOW) != 0 {
            return 0;
        }
        let mut at = self.rtx_at.min(self.ack_at);
        at = at.min(self.misc_deadline(cfg));
        at
    }

    /// The earliest of the handshake, TIME-WAIT, user, keepalive and idle
    /// deadlines.
    fn misc_deadline(&self, cfg: &Config) -> u64 {
        match self.state {
            State::SynSent | State::SynReceived | State::TimeWait => self.phase_end,
            State::Closed => NEVER,
            _ => {
                let mut at = NEVER;
                if self.has_outstanding() {
                    at = at.min(self.progress_at.saturating_add(cfg.user_timeout_us));
                } else if let Some(ka) = cfg.keepalive {
                    at = at.min(
                        self.last_rcv
                            .saturating_add(ka.idle_us)
                            .saturating_add(ka.interval_us * self.ka_sent as u64),
                    );
                }
                if let Some(idle) = cfg.idle_timeout_us {
                    at = at.min(self.last_data.saturating_add(idle));
                }
                at
            }
        }
    }

    /// Runs the timers that are due at `env.now`.
    pub fn on_timer(&mut self, env: &mut Env) {
        let now = env.now;
        if self.state == State::Closed {
            return;
        }
        if self.misc_deadline(env.cfg) <= now {
            self.misc_timer(env);
            if self.state == State::Closed {
                return;
            }
        }
        if self.ack_at <= now {
            self.ack_at = NEVER;
            self.flags |= flag::ACK_NOW;
        }
        if self.rtx_at <= now {
            let kind = self.rtx;
            self.rtx_at = NEVER;
            self.rtx = Rtx::None;
            match kind {
                Rtx::None => {}
                Rtx::Rto => self.on_rto(env),
                Rtx::Tlp => self.on_tlp(env),
                Rtx::Reorder => self.on_reorder_timer(env),
                Rtx::Persist => {
                    self.flags |= flag::PROBE_NOW;
                }
            }
        }
        self.ensure_timer(now);
    }

    /// Data in flight always has a timer running (RFC 6298 5.1): whatever
    /// path left the slot empty, the RTO covers it.
    pub(super) fn ensure_timer(&mut self, now: u64) {
        if self.rtx == Rtx::None && self.snd_una != self.snd_max && self.state != State::Closed {
            let at = now.saturating_add(self.rto());
            self.arm(Rtx::Rto, at);
        }
    }

    fn misc_timer(&mut self, env: &mut Env) {
        let now = env.now;
        match self.state {
            State::SynSent | State::SynReceived => {
                env.stats.timeouts.inc();
                self.finish(env.slab, CloseReason::TimedOut);
            }
            State::TimeWait => {
                self.state = State::Closed;
                self.reason = CloseReason::Normal;
                self.ev |= ev::CLOSED;
            }
            _ => {
                let cfg = env.cfg;
                if let Some(idle) = cfg.idle_timeout_us {
                    if self.last_data.saturating_add(idle) <= now {
                        env.stats.timeouts.inc();
                        self.abort(env.slab);
                        self.reason = CloseReason::TimedOut;
                        return;
                    }
                }
                if self.has_outstanding() {
                    if self.progress_at.saturating_add(cfg.user_timeout_us) <= now {
                        env.stats.timeouts.inc();
                        self.abort(env.slab);
                        self.reason = CloseReason::TimedOut;
                    }
                } else if let Some(ka) = cfg.keepalive {
                    if self.ka_sent >= ka.probes {
                        env.stats.timeouts.inc();
                        self.finish(env.slab, CloseReason::TimedOut);
                    } else {
                        self.ka_sent += 1;
                        self.flags |= flag::KEEPALIVE_NOW;
                    }
                }
            }
        }
    }

    /// Arms the retransmission timer slot.
    pub(super) fn arm(&mut self, kind: Rtx, at: u64) {
        self.rtx = kind;
        self.rtx_at = at;
    }

    /// An RST-worthy or ACK-worthy answer to an unacceptable segment is
    /// rate-limited like a challenge ACK (RFC 5961 7). Returns whether to
    /// send it.
    pub(super) fn challenge(&mut self, env: &mut Env) -> bool {
        let now = env.now;
        if now.saturating_sub(self.last_challenge) < env.limiter.per_conn_us
            && self.last_challenge != 0
        {
            env.stats.challenge_limited.inc();
            return false;
        }
        if !env.limiter.allow(now) {
            env.stats.challenge_limited.inc();
            return false;
        }
        self.last_challenge = now.max(1);
        env.stats.challenge_acks.inc();
        self.flags |= flag::ACK_NOW;
        true
    }
}
