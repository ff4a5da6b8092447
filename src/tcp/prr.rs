//! Proportional Rate Reduction (RFC 9937): how much a sender in fast
//! recovery sends per ACK.
//!
//! Entering recovery cuts the window to ssthresh while the flight is
//! still near the old window. RFC 6675's rule (send while the pipe is
//! below cwnd) then sends nothing until a third of the window's ACKs have
//! drained the pipe, and sends in bursts when several losses show at once
//! and the pipe falls far below ssthresh. PRR spreads the reduction over
//! the recovery instead:
//! - while the pipe is above ssthresh, it sends ssthresh / RecoverFS of
//!   what the ACKs report delivered (about 0.7 segments per segment for
//!   CUBIC), so the flight comes down to ssthresh by the recovery's end;
//! - below ssthresh it grows the flight back, by at most what was
//!   delivered (conservative), or by one segment more on an ACK that
//!   advances the cumulative ACK and shows no new loss (slow start).
//!
//! The allowance is set as cwnd = pipe + sndcnt on every ACK in recovery
//! (the output path's pipe rule then does the rest) and cwnd = ssthresh
//! when recovery ends ([`super::cc::Cc::on_recovery_exit`]).
//!
//! **Bursts of ACKs.** The stack reads a whole receive burst before it
//! sends, so when the ACK that shows a loss is processed, the ACKs before
//! it in the same burst may already have delivered most of the window
//! without the data they clock out being sent (see
//! [`Tcb::congestion_flight`]). Taken literally, RFC 9937 would count
//! none of that as delivered and let the sender send only this one ACK's
//! share. Here RecoverFS is the congestion flight (the window when data
//! was waiting), and the room those earlier ACKs opened in the window
//! (cwnd minus the pipe before this ACK, when data was waiting) counts as
//! delivered from the start, with this ACK's own deliveries: a sender
//! that had answered each of those ACKs at once would have sent it. A
//! sender that did answer them had no such room, and starts as RFC 9937
//! says.

use super::tcb::Tcb;

impl Tcb {
    /// Fast recovery begins: RecoverFS is `recover_fs` (the congestion
    /// flight the response was computed from); `delivered` counts as
    /// delivered already.
    pub(super) fn prr_start(&mut self, recover_fs: u32, delivered: u32) {
        self.recover_fs = recover_fs.max(1);
        self.prr_delivered = delivered;
        self.prr_out = 0;
    }

    /// An ACK in fast recovery (including the one that started it, whose
    /// deliveries [`Tcb::prr_start`] counted): `delivered` bytes newly
    /// acknowledged or SACKed; `safe` if it advanced the cumulative ACK
    /// and marked nothing lost (RFC 9937 section 5). Sets cwnd to
    /// pipe + sndcnt.
    pub(super) fn prr_on_ack(&mut self, delivered: u32, safe: bool) {
        self.prr_delivered = self.prr_delivered.saturating_add(delivered);
        let pipe = self.pipe();
        let ssthresh = self.cc.ssthresh();
        let sndcnt = if pipe > ssthresh {
            // Proportional: CEIL(prr_delivered * ssthresh / RecoverFS) - prr_out.
            let due = (u64::from(self.prr_delivered) * u64::from(ssthresh))
                .div_ceil(u64::from(self.recover_fs));
            u32::try_from(due.saturating_sub(u64::from(self.prr_out))).unwrap_or(u32::MAX)
        } else {
            let owed = self.prr_delivered.saturating_sub(self.prr_out);
            let limit = if safe {
                owed.max(delivered).saturating_add(u32::from(self.smss))
            } else {
                owed
            };
            (ssthresh - pipe).min(limit)
        };
        // Nothing sent yet: the fast retransmission goes whatever the
        // share (RFC 9937 section 5).
        let sndcnt = if self.prr_out == 0 {
            sndcnt.max(u32::from(self.smss))
        } else {
            sndcnt
        };
        self.cc.set_recovery_cwnd(pipe.saturating_add(sndcnt));
    }

    /// `len` bytes (new or again) sent now: counted as prr_out while in
    /// fast recovery.
    pub(super) fn prr_sent(&mut self, len: u32) {
        if self.in_recovery() {
            self.prr_out = self.prr_out.saturating_add(len);
        }
    }
}
