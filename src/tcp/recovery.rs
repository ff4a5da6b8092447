//! Loss recovery: the record of segments in flight with its SACK
//! scoreboard (RFC 2018, RFC 6675), RACK-TLP (RFC 8985), NewReno for
//! peers without SACK (RFC 6582), the retransmission timeout (RFC 6298)
//! and undo of spurious responses through D-SACK (RFC 2883, RFC 3708).
//!
//! Every segment sent is remembered as a [`Sent`] record (sequence range,
//! send time, flags) until it is cumulatively acknowledged; its bytes stay
//! in the send queue. Loss is decided per record:
//! - RACK: a record sent before one that has since been delivered, and not
//!   delivered itself within an RTT plus a reordering window, is lost; a
//!   record still inside that window arms the reordering timer.
//! - Without SACK, three duplicate ACKs mark the first record lost, and a
//!   partial ACK in recovery marks the next (NewReno).
//! - A retransmission timeout marks every record not SACKed lost.
//!
//! Lost records are retransmitted while the pipe (RFC 6675: bytes in
//! flight, not SACKed, not lost unless retransmitted) is below the
//! congestion window. A tail-loss probe (RACK-TLP 7) retransmits the last
//! record, or sends new data, about two RTTs after the last transmission,
//! so a lost tail is found without waiting for the RTO.

use smoltcp::wire::TcpRepr;

use super::flight::{sf, Sent};
use super::seq;
use super::tcb::{flag, Env, Rtx, State, Tcb};

/// Duplicate ACKs that mean loss without SACK (RFC 5681).
const DUPTHRESH: u8 = 3;
/// Least tail-loss probe timeout, µs.
const MIN_PTO: u64 = 1_000;
/// Most a peer's late ACKs may raise its connection's RTO floor, µs
/// (Linux's 200 ms minimum RTO exists for the same delayed ACKs).
const MAX_RTO_FLOOR_US: u64 = 200_000;

impl Tcb {
    /// Bytes in flight as RFC 6675 counts them.
    pub(super) fn pipe(&self) -> u32 {
        self.sent.pipe()
    }

    /// True in fast recovery.
    pub(super) fn in_recovery(&self) -> bool {
        self.flags & flag::RECOVERY != 0
    }

    /// Processes the ACK field and SACK blocks of an acceptable segment.
    /// `ack` was checked to be within [snd_una, snd_max]. Returns the bytes
    /// newly acknowledged.
    pub(super) fn on_ack(&mut self, env: &mut Env, seg: &TcpRepr, ack: u32) -> u32 {
        let now = env.now;
        let flight_before = seq::dist(self.snd_una, self.snd_max);
        let una_before = self.snd_una;
        // Room the window had before this ACK: the sends owed to ACKs read
        // earlier in the same receive burst (see `prr.rs`).
        let room_before = self.cc.cwnd().saturating_sub(self.pipe());
        // Bytes newly SACKed (RFC 9937's DeliveredData, with the
        // cumulative part added below).
        let mut sacked_now = 0u32;
        let advanced = seq::gt(ack, self.snd_una);
        let mut newest_rtt: Option<u64> = None;
        let mut delivered_any = false;
        // Reordering is judged against what earlier ACKs delivered: in one
        // ACK the cumulative part and the SACK blocks report together.
        let prior = (self.rack_xmit, self.rack_end);

        // D-SACK (RFC 2883): a first block below the cumulative ACK, or
        // inside the second block, reports a duplicate we caused.
        let blocks = seg.sack_ranges;
        let mut dsack = false;
        if let Some((l, r)) = blocks[0] {
            let below = seq::le(r, ack);
            let inside = blocks[1].is_some_and(|(l2, r2)| seq::ge(l, l2) && seq::le(r, r2));
            if (below || inside) && seq::lt(l, r) {
                dsack = true;
                self.on_dsack(env);
            }
        }

        // SACK blocks: mark the records they cover.
        if self.flags & flag::SACK_OK != 0 {
            for (i, b) in blocks.iter().enumerate() {
                let Some((l, r)) = *b else { continue };
                if (i == 0 && dsack) || !seq::lt(l, r) {
                    continue;
                }
                if !seq::gt(r, self.snd_una) || seq::gt(r, self.snd_max) {
                    continue;
                }
                // The records are in sequence order: start at the block.
                let mut k = self.sent.first_from(l);
                while k < self.sent.len() && seq::le(self.sent.get(k).end, r) {
                    let s = self.sent.get(k);
                    if s.flags & sf::SACKED == 0 {
                        self.sent.set_flags(k, (s.flags | sf::SACKED) & !sf::LOST);
                        delivered_any = true;
                        sacked_now += seq::dist(s.start, s.end);
                        self.rack_update(now, &s, prior, &mut newest_rtt);
                    }
                    k += 1;
                }
            }
        }

        // Cumulative ACK: drop what it covers.
        let mut acked_data = 0;
        if advanced {
            while let Some(s) = self.sent.pop_acked(ack) {
                if s.flags & sf::SACKED == 0 {
                    self.rack_update(now, &s, prior, &mut newest_rtt);
                }
                delivered_any = true;
            }
            // Free the acknowledged bytes of the send queue (the SYN and
            // FIN take sequence space but no queue bytes).
            let data_end = self.snd_base.wrapping_add(self.snd_queued);
            let upto = seq::min(ack, data_end);
            if seq::gt(upto, self.snd_base) {
                let n = seq::dist(self.snd_base, upto);
                self.snd_queued -= n;
                let remaining = self.snd_queued;
                self.snd_buf.advance(env.slab, n, remaining);
                self.snd_base = upto;
                acked_data = n;
            }
            self.snd_una = ack;
            self.progress_at = now;
            self.dupacks = 0;
            if self.flags & flag::WANT_WRITABLE != 0 && self.send_room(env.cfg) > 0 {
                self.flags &= !flag::WANT_WRITABLE;
                self.ev |= super::tcb::ev::WRITABLE;
            }
        }

        // A spurious timeout (RFC 3522): the ACK after a timeout echoes a
        // timestamp from before it, so it acknowledges the original
        // transmission, which was only late. Undo the congestion response
        // (RFC 4015) and learn how late this peer's ACKs can be (a delayed
        // ACK), so the next timeout waits for it.
        if advanced && self.flags & flag::RTO_TS != 0 {
            self.flags &= !flag::RTO_TS;
            let tv = self.rto_tsval;
            let echoed = seg.timestamp.filter(|t| t.tsecr != 0).map(|t| t.tsecr);
            if echoed.is_some_and(|e| seq::lt(e, tv)) {
                let late = now.saturating_sub(self.rto_orig_xmit);
                let floor = (late + late / 4).min(MAX_RTO_FLOOR_US);
                self.rto_floor = self.rto_floor.max(floor as u32);
                self.spurious_timeout(env);
            }
        }

        // An RTT sample from a record delivered by this ACK that was sent
        // once (Karn), else from the echoed timestamp (RFC 7323 4, which
        // needs no such care).
        if let Some(r) = newest_rtt {
            self.rtt.sample(r.max(1));
        } else if advanced && self.flags & flag::TS_OK != 0 {
            if let Some(ts) = seg.timestamp.filter(|t| t.tsecr != 0) {
                let ms = self.ts_val(now).wrapping_sub(ts.tsecr);
                if ms < 60_000 {
                    self.rtt.sample((ms as u64 * 1000).max(1));
                }
            }
        }

        // Did the tail-loss probe repair a loss (RFC 8985 7.4.2)?
        if let Some(end) = self.rare().and_then(|r| r.tlp_end) {
            if let Some(repaired) = self.tlp_outcome(seg, ack, end, delivered_any, dsack) {
                self.rare_mut().tlp_end = None;
                self.flags &= !flag::TLP_RTX;
                if repaired && self.undo_marker.is_none() {
                    env.stats.tlp_recoveries.inc();
                    self.cc.on_congestion_event(flight_before, now);
                }
            }
        }

        // What this ACK reports delivered; without SACK a duplicate ACK
        // stands for one segment (RFC 9937 5).
        let mut delivered = seq::dist(una_before, self.snd_una) + sacked_now;
        let lost_before = self.sent.lost();
        let app_limited = self.snd_queued == seq::dist(self.snd_base, self.snd_nxt);
        if advanced {
            let past_point = seq::ge(ack, self.recovery_point);
            if self.in_recovery() {
                if past_point {
                    self.flags &= !flag::RECOVERY;
                    self.cc.on_recovery_exit(now);
                } else if self.flags & flag::SACK_OK == 0 {
                    // NewReno partial ACK (RFC 6582 3.2 step 3): the next
                    // hole is lost too.
                    self.mark_first_lost();
                }
            } else {
                if self.flags & flag::AFTER_RTO != 0 && past_point {
                    self.flags &= !flag::AFTER_RTO;
                    self.undo_marker = None;
                }
                self.cc
                    .on_ack(acked_data, flight_before, app_limited, newest_rtt, now);
            }
        } else if self.flags & flag::SACK_OK == 0
            && self.snd_una != self.snd_max
            && seg.payload.is_empty()
            && seg.control == smoltcp::wire::TcpControl::None
        {
            // A duplicate ACK (RFC 5681 2), for peers without SACK.
            self.dupacks = self.dupacks.saturating_add(1);
            delivered = u32::from(self.smss);
            if self.dupacks == DUPTHRESH && !self.in_recovery() {
                self.mark_first_lost();
            }
        }

        // RACK loss detection (RFC 8985 6.2) on every ACK that delivered
        // something. A record can only have been sent before one delivered
        // if something was SACKed or retransmitted: otherwise everything
        // delivered was acknowledged cumulatively, and what is left was
        // sent after it, so the walk is skipped (the lossless case).
        let suspects = self.sent.sacked() + self.sent.retransmitted() > 0;
        if delivered_any && suspects && self.flags & flag::SACK_OK != 0 {
            self.rack_detect(env);
        }
        let recovering = self.in_recovery();
        if !recovering && self.sent.lost() > 0 {
            self.enter_recovery_if_lost(env, delivered, room_before);
        }
        if self.in_recovery() {
            // Entering counted this ACK's deliveries (`prr_start`).
            let safe = advanced && self.sent.lost() <= lost_before;
            self.prr_on_ack(if recovering { delivered } else { 0 }, safe);
        }
        self.rearm_after_ack(env, advanced);
        acked_data
    }

    /// How a tail-loss probe's episode ends, once an ACK reaches its end:
    /// `Some(true)` if the probe repaired a loss, `Some(false)` if nothing
    /// was lost, `None` while it cannot be told yet.
    /// - A probe of new data repaired nothing: any loss before it is
    ///   RACK's to find.
    /// - A probe that sent the last segment again, answered by a D-SACK of
    ///   it, or by a duplicate ACK at its end that delivered nothing (a
    ///   peer without D-SACK): both copies arrived.
    /// - An ACK beyond the probe (new data acknowledged, no D-SACK came):
    ///   the probe's copy was the one that arrived.
    /// - An ACK that reaches exactly the probe's end may be the original's
    ///   own ACK, only late (a busy or ACK-delaying peer), with the D-SACK
    ///   of the probe still on its way: wait for what follows. Taken as a
    ///   loss, every late ACK cut the window.
    fn tlp_outcome(
        &self,
        seg: &TcpRepr,
        ack: u32,
        end: u32,
        delivered: bool,
        dsack: bool,
    ) -> Option<bool> {
        if seq::lt(ack, end) {
            return None;
        }
        if self.flags & flag::TLP_RTX == 0 {
            return Some(false);
        }
        let covers_probe =
            seg.sack_ranges[0].is_some_and(|(l, r)| seq::lt(l, end) && seq::ge(r, end));
        if dsack && covers_probe {
            return Some(false);
        }
        if seq::gt(ack, end) {
            return Some(true);
        }
        let pure_dup = !delivered && seg.payload.is_empty();
        pure_dup.then_some(false)
    }

    /// RACK step 2: the most recently sent record known delivered.
    /// `prior`: RACK's (xmit, end) before the ACK being processed.
    fn rack_update(&mut self, now: u64, s: &Sent, prior: (u64, u32), newest_rtt: &mut Option<u64>) {
        let rtt = now.saturating_sub(s.xmit);
        if s.flags & sf::RETRANS != 0 {
            // Ambiguous: delivered copy unknown. Only if it took longer
            // than the minimum RTT can it be the retransmission.
            if self.rtt.min_rtt_us().is_some_and(|m| rtt < m) {
                return;
            }
        } else if newest_rtt.map_or(true, |r| rtt < r) {
            *newest_rtt = Some(rtt);
        }
        // Reordering (RFC 8985 6.2 step 3): a record never retransmitted,
        // sent before one that an earlier ACK reported delivered, arrived
        // after it. Not against this ACK's own SACK blocks: a cumulative
        // ACK that reaches a hole and SACKs past it reports records that
        // arrived in order (judged that way, every such loss looked like
        // reordering, which widened RACK's window for good).
        let (prior_xmit, prior_end) = prior;
        if s.flags & sf::RETRANS == 0 && seq::lt(s.end, prior_end) && s.xmit <= prior_xmit {
            self.flags |= flag::REORDER_SEEN;
        }
        if s.xmit > self.rack_xmit || (s.xmit == self.rack_xmit && seq::gt(s.end, self.rack_end)) {
            self.rack_xmit = s.xmit;
            self.rack_end = s.end;
            self.rack_rtt = rtt;
        }
    }

    /// RACK's reordering window (RFC 8985 6.2 step 4).
    fn reo_wnd(&self) -> u64 {
        if self.flags & flag::REORDER_SEEN == 0 {
            if self.in_recovery() {
                return 0;
            }
            if self.sent.sacked() >= DUPTHRESH as u32 {
                return 0;
            }
        }
        let min = self.rtt.min_rtt_us().unwrap_or(0);
        let srtt = self.rtt.srtt_us().unwrap_or(min);
        (self.reo_wnd_mult as u64 * min / 4).min(srtt)
    }

    /// RACK step 5: marks records lost, or arms the reordering timer for
    /// the earliest that may still arrive.
    fn rack_detect(&mut self, env: &mut Env) {
        if self.rack_xmit == 0 {
            return;
        }
        let now = env.now;
        let reo = self.reo_wnd();
        let mut wait: u64 = 0;
        for k in 0..self.sent.len() {
            let s = self.sent.get(k);
            if s.flags & (sf::SACKED | sf::LOST) != 0 {
                continue;
            }
            let before = s.xmit < self.rack_xmit
                || (s.xmit == self.rack_xmit && seq::lt(s.end, self.rack_end));
            if !before {
                continue;
            }
            let deadline = s.xmit + self.rack_rtt + reo;
            if deadline <= now {
                self.sent.set_flags(k, s.flags | sf::LOST);
            } else {
                wait = wait.max(deadline - now);
            }
        }
        if wait > 0 {
            self.arm(Rtx::Reorder, now + wait);
        }
    }

    /// The reordering timer fired: look again (RFC 8985 6.3).
    pub(super) fn on_reorder_timer(&mut self, env: &mut Env) {
        self.rack_detect(env);
        self.enter_recovery_if_lost(env, 0, 0);
        if self.in_recovery() {
            self.prr_on_ack(0, false);
        }
        if self.rtx == Rtx::None {
            self.arm_rto(env.now);
        }
    }

    fn mark_first_lost(&mut self) {
        let first = self
            .sent
            .iter()
            .position(|s| s.flags & (sf::SACKED | sf::LOST) == 0);
        if let Some(k) = first {
            let f = self.sent.get(k).flags;
            self.sent.set_flags(k, f | sf::LOST);
        }
    }

    /// FlightSize for a congestion response (RFC 5681 3.1, RFC 9438 4.6):
    /// what the sender had in the network when the loss showed. The stack
    /// reads a whole burst of ACKs before it sends again, so by the time
    /// the ACK that shows a loss is processed, the ACKs before it in the
    /// same burst may have taken most of the flight that the window had
    /// filled, and the data they clocked out is not sent yet. Taken
    /// literally, that left ssthresh near 2 MSS after most losses on a
    /// 1% lossy path (a trace of `bench lossy`: the window 20 KB, the
    /// flight 4 KB when the loss was seen). A sender with data waiting was
    /// held by its window, so the window is what it had in flight; an
    /// application-limited one (nothing waiting) keeps its true flight, so
    /// a window it never used is not taken as its share.
    pub(super) fn congestion_flight(&self) -> u32 {
        let flight = seq::dist(self.snd_una, self.snd_max);
        if self.unsent() == 0 {
            return flight;
        }
        flight.max(self.cc.cwnd().min(self.snd_wnd))
    }

    /// Starts fast recovery if a record is lost and none is under way.
    /// PRR starts with `delivered` (this ACK's) as delivered, plus `room`
    /// (what cwnd left over the pipe before it) if data was waiting: the
    /// sends owed to ACKs read earlier in the same burst (`prr.rs`).
    fn enter_recovery_if_lost(&mut self, env: &mut Env, delivered: u32, room: u32) {
        if self.in_recovery() || self.flags & flag::AFTER_RTO != 0 {
            return;
        }
        if self.sent.lost() == 0 {
            return;
        }
        self.flags |= flag::RECOVERY;
        self.recovery_point = self.snd_max;
        env.stats.recoveries.inc();
        let flight = self.congestion_flight();
        self.cc.on_congestion_event(flight, env.now);
        let owed = if self.unsent() > 0 { room } else { 0 };
        self.prr_start(flight, delivered.saturating_add(owed));
        self.undo_marker = Some(self.snd_una);
        self.undo_retrans = 0;
    }

    /// A D-SACK arrived: if every retransmission of the last loss response
    /// proves needless, undo it (RFC 3708's idea, as Linux does).
    fn on_dsack(&mut self, env: &mut Env) {
        if self.undo_marker.is_none() {
            return;
        }
        if self.undo_retrans > 0 {
            self.undo_retrans -= 1;
        }
        if self.undo_retrans == 0 {
            self.undo_marker = None;
            self.cc.undo();
            env.stats.undos.inc();
            self.flags &= !(flag::RECOVERY | flag::AFTER_RTO);
            // Reordering, not loss: widen RACK's window (RFC 8985 6.2).
            self.flags |= flag::REORDER_SEEN;
            self.reo_wnd_mult = (self.reo_wnd_mult + 1).min(8);
        }
    }

    /// A timeout proved spurious: restore the congestion state, stop
    /// retransmitting what was only late, and go on as before it.
    fn spurious_timeout(&mut self, env: &mut Env) {
        self.cc.undo();
        env.stats.undos.inc();
        self.flags &= !(flag::AFTER_RTO | flag::RECOVERY);
        self.undo_marker = None;
        for k in 0..self.sent.len() {
            let f = self.sent.get(k).flags;
            self.sent.set_flags(k, f & !sf::LOST);
        }
        self.rtt.reset_backoff();
    }

    /// The retransmission timer fired (RFC 6298 5.4-5.6).
    pub(super) fn on_rto(&mut self, env: &mut Env) {
        env.stats.rtos.inc();
        let first = self.rtt.backoffs() == 0;
        self.rtt.backoff();
        match self.state {
            State::SynSent | State::SynReceived => {
                self.flags |= flag::SYN_NOW;
                return;
            }
            State::Closed | State::TimeWait => return,
            _ => {}
        }
        if self.snd_una == self.snd_max {
            return;
        }
        let flight = self.congestion_flight();
        if first {
            self.rto_orig_xmit = self.sent.front().map_or(env.now, |s| s.xmit);
            if self.flags & flag::TS_OK != 0 {
                self.rto_tsval = self.ts_val(env.now);
                self.flags |= flag::RTO_TS;
            } else {
                self.flags &= !flag::RTO_TS;
            }
        }
        for k in 0..self.sent.len() {
            let f = self.sent.get(k).flags;
            if f & sf::SACKED == 0 {
                self.sent.set_flags(k, f | sf::LOST);
            }
        }
        self.cc.on_rto(flight, first, env.now);
        self.flags &= !flag::RECOVERY;
        self.flags |= flag::AFTER_RTO;
        self.recovery_point = self.snd_max;
        if let Some(r) = self.rare_set_mut() {
            r.tlp_end = None;
        }
        self.flags &= !flag::TLP_RTX;
        if first {
            self.undo_marker = Some(self.snd_una);
            self.undo_retrans = 0;
        }
        if env.cfg.blackhole_detect {
            self.suspect_blackhole(env);
        }
    }

    /// The tail-loss probe timer fired (RFC 8985 7.3).
    pub(super) fn on_tlp(&mut self, env: &mut Env) {
        if self.snd_una == self.snd_max {
            return;
        }
        self.flags |= flag::TLP_NOW;
        env.stats.tlps.inc();
    }

    /// The probe timeout (RFC 8985 7.2).
    fn pto(&self) -> u64 {
        let rto = self.rto();
        let Some(srtt) = self.rtt.srtt_us() else {
            return rto;
        };
        let one_segment = self.sent.len() == 1;
        if one_segment {
            // The peer may delay its ACK of a lone segment: the RTO's
            // floor covers that (PTO = min(2 SRTT + WCDelAckT, RTO)).
            return rto;
        }
        (2 * srtt).max(MIN_PTO).max(self.rto_floor as u64).min(rto)
    }

    /// The RTO floor learnt so far (µs): from this connection's needless
    /// probes and spurious timeouts, or shared from others to the same
    /// peer.
    pub fn rto_floor(&self) -> u32 {
        self.rto_floor
    }

    /// Raises the RTO floor to at least `us` (what other connections to the
    /// same peer learnt: a busy host or a peer with delayed ACKs delays
    /// them all alike). A probe or retransmission timer that the new floor
    /// says is early is pushed back; returns true then.
    pub fn share_rto_floor(&mut self, us: u32) -> bool {
        if us <= self.rto_floor {
            return false;
        }
        self.rto_floor = us;
        let Some(newest) = self.sent.iter().map(|s| s.xmit).max() else {
            return false;
        };
        let wait = match self.rtx {
            Rtx::Rto => self.rto(),
            Rtx::Tlp => self.pto(),
            _ => return false,
        };
        let at = newest.saturating_add(wait);
        if at > self.rtx_at {
            self.rtx_at = at;
            return true;
        }
        false
    }

    /// RFC 6298 5.1/5.3: (re)start the retransmission timer.
    pub(super) fn arm_rto(&mut self, now: u64) {
        let rto = self.rto();
        self.arm(Rtx::Rto, now.saturating_add(rto));
    }

    /// Arms the probe or retransmission timer after sending or an ACK.
    pub(super) fn arm_loss_timer(&mut self, now: u64) {
        let tlp_ok = self.flags & flag::SACK_OK != 0
            && !self.in_recovery()
            && self.flags & flag::AFTER_RTO == 0
            && self.rare().and_then(|r| r.tlp_end).is_none()
            && self.state.synchronized();
        if tlp_ok {
            let pto = self.pto();
            self.arm(Rtx::Tlp, now.saturating_add(pto));
        } else {
            self.arm_rto(now);
        }
    }

    fn rearm_after_ack(&mut self, env: &mut Env, advanced: bool) {
        let now = env.now;
        if self.snd_una == self.snd_max {
            if matches!(self.rtx, Rtx::Rto | Rtx::Tlp | Rtx::Reorder) {
                self.rtx = Rtx::None;
                self.rtx_at = super::tcb::NEVER;
            }
            return;
        }
        if self.rtx == Rtx::Reorder {
            return;
        }
        if advanced || self.rtx == Rtx::None || self.rtx == Rtx::Persist {
            self.arm_loss_timer(now);
        }
    }

    /// The next record to retransmit, if any: (index).
    pub(super) fn next_lost(&self) -> Option<usize> {
        self.sent.first_lost()
    }

    /// Records a retransmission of record `k` at `now`.
    pub(super) fn retransmitted(&mut self, env: &mut Env, k: usize) {
        let s = self.sent.get(k);
        self.prr_sent(seq::dist(s.start, s.end));
        let f = s.flags;
        self.sent.set_flags(k, (f | sf::RETRANS) & !sf::LOST);
        self.sent.set_xmit(k, env.now);
        env.stats.retransmits.inc();
        if self.undo_marker.is_some() {
            self.undo_retrans += 1;
        }
    }
}
