//! Path MTU discovery (RFC 1191 for IPv4, RFC 8201 for IPv6): what a
//! connection does when a router says a segment was too big for the next
//! hop.
//!
//! The stack sends IPv4 with the don't-fragment bit set, and IPv6 routers
//! never fragment, so a path narrower than the MSS agreed in the handshake
//! (a tunnel, a VPN, PPPoE) drops every full-sized segment. Without this a
//! bulk transfer over such a path stops after its first segments and
//! retransmits into the hole until it times out. The router's ICMP error
//! quotes the start of the dropped packet. The stack finds the connection
//! from the quoted ports and addresses, then hands the next-hop MTU and the
//! quoted sequence number to [`Tcb::on_path_mtu`].
//!
//! Like Linux (`tcp_simple_retransmit`) and FreeBSD (`tcp_mtudisc`), a
//! lower MTU is not taken as congestion: the segments in flight that no
//! longer fit are cut to the new size and sent again, and the congestion
//! window stays as it was. An ICMP error is easy to forge, so it is taken
//! only when it quotes a sequence number this connection has in flight
//! (RFC 5927 4.1), and never below the smallest MTU of the family.
//!
//! A path whose ICMP errors are filtered is a black hole (RFC 2923 2.1):
//! full-sized segments vanish and nothing says why. When the same
//! full-sized data has timed out at least [`BLACKHOLE_RTOS`] times in a
//! row and for at least [`BLACKHOLE_AFTER_US`] since it was first sent,
//! the segment size falls to [`BLACKHOLE_MSS`]; after ten times as long,
//! to half of that (RFC 4821's fallback; Linux with `tcp_mtu_probing=1`
//! and Windows do the same). Both conditions are needed: with the 5 ms
//! RTO floor, three timeouts take 35 ms, which a VM's pause or a burst of
//! random loss can also cause, and a lower size is kept for the rest of
//! the connection.

use super::seq;
use super::tcb::{flag, Env, State, Tcb};

/// The smallest IPv4 path MTU believed: below it the message is taken as
/// this much (Linux's `min_pmtu`, 552: 512 bytes of payload and both
/// headers). RFC 1191 allows 68, which would let a forged message shrink
/// segments to a few bytes each.
pub const MIN_MTU_V4: u32 = 552;
/// IPv6's minimum link MTU (RFC 8200 5): a smaller value is taken as this.
pub const MIN_MTU_V6: u32 = 1280;
/// Timeouts in a row of the same full-sized data before a black hole is
/// suspected.
pub const BLACKHOLE_RTOS: u32 = 3;
/// And how long since that data was first sent (the second step waits ten
/// times as long).
pub const BLACKHOLE_AFTER_US: u64 = 150_000;
/// The segment size tried first in a suspected black hole (Linux's
/// `tcp_base_mss`): 1,076 bytes on the wire with IPv4 and timestamps,
/// which fits nearly every tunnel; the next step is half of it.
pub const BLACKHOLE_MSS: u32 = 1024;

impl Tcb {
    /// A router reported that a packet of this connection was too big for
    /// a next hop of `mtu` bytes (IP header included), quoting the TCP
    /// sequence number `quoted` of the dropped segment; `ip_header` is 20
    /// for IPv4 and 40 for IPv6. Lowers the segment size and re-sends, in
    /// pieces that fit, what was in flight and is now too big. Returns
    /// true if anything changed (the stack then polls the connection's
    /// output); the message is counted either way.
    pub fn on_path_mtu(&mut self, env: &mut Env, mtu: u32, ip_header: u32, quoted: u32) -> bool {
        let ignored = |env: &mut Env| {
            env.stats.pmtu_ignored.inc();
            false
        };
        let sending = matches!(
            self.state,
            State::Established
                | State::FinWait1
                | State::Closing
                | State::CloseWait
                | State::LastAck
        );
        // Only a segment sent and not yet acknowledged can have been
        // dropped for its size.
        let in_flight = seq::le(self.snd_una, quoted) && seq::lt(quoted, self.snd_max);
        if !(sending && in_flight) {
            return ignored(env);
        }
        if !self.clamp_to_path_mtu(mtu, ip_header) {
            return ignored(env);
        }
        env.stats.pmtu_lowered.inc();
        if self.sent.resegment(u32::from(self.smss)) > 0 && !self.in_recovery() {
            // Send the pieces as recovery sends lost segments, without
            // the congestion response: recovery ends with the ACK of
            // everything sent so far, and the controller was never told.
            self.flags |= flag::RECOVERY;
            self.recovery_point = self.snd_max;
        }
        true
    }

    /// A retransmission timeout fired (the loss is marked): if the oldest
    /// data has timed out often and long enough (see the module's header)
    /// and is larger than the size tried next, try that size.
    pub(super) fn suspect_blackhole(&mut self, env: &mut Env) {
        if self.rtt.backoffs() < BLACKHOLE_RTOS {
            return;
        }
        let smss = u32::from(self.smss);
        let (next, after) = if smss > BLACKHOLE_MSS {
            (BLACKHOLE_MSS, BLACKHOLE_AFTER_US)
        } else {
            ((smss / 2).max(BLACKHOLE_MSS / 2), 10 * BLACKHOLE_AFTER_US)
        };
        if env.now.saturating_sub(self.rto_orig_xmit) < after {
            return;
        }
        let oldest = self.sent.front().map_or(0, |s| seq::dist(s.start, s.end));
        if next >= smss || oldest <= next {
            return;
        }
        self.smss = next as u16;
        self.cc.set_mss(next);
        self.sent.resegment(next);
        env.stats.pmtu_blackholes.inc();
    }

    /// Lowers the segment size to what a path of `mtu` bytes carries (IP
    /// header of `ip_header` bytes), if that is smaller; returns whether
    /// it did. For a connection that opens towards a peer whose path MTU
    /// the stack learnt from an earlier one (Linux keeps it per
    /// destination for 10 minutes, as the stack does), before it sends
    /// any data.
    pub fn clamp_to_path_mtu(&mut self, mtu: u32, ip_header: u32) -> bool {
        let floor = if ip_header >= 40 {
            MIN_MTU_V6
        } else {
            MIN_MTU_V4
        };
        // TCP's 20 bytes, and the timestamp option every segment carries
        // when it was agreed (the MSS already leaves room for SACK blocks
        // by taking them off the payload).
        let options = if self.flags & flag::TS_OK != 0 { 12 } else { 0 };
        let fits = mtu.max(floor).saturating_sub(ip_header + 20 + options);
        if fits == 0 || fits >= u32::from(self.smss) {
            return false;
        }
        self.smss = fits as u16;
        self.cc.set_mss(fits);
        true
    }
}
