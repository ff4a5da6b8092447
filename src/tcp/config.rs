//! A connection's settings and what an engine call needs from its core:
//! the time, the payload slab, the counters and the challenge-ACK limiter.

use smoltcp::wire::TcpRepr;

use super::buf::Slab;
use super::cc::CcAlgo;
use super::rtt::RtoConfig;
use crate::counter::Counter;

/// Keepalive settings (RFC 9293 3.8.4; Linux's `tcp_keepalive_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keepalive {
    /// Silence before the first probe (µs).
    pub idle_us: u64,
    /// Between probes (µs).
    pub interval_us: u64,
    /// Unanswered probes before the connection is dropped.
    pub probes: u8,
}

/// Settings of a connection (one per listener or for active opens).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Config {
    /// The MSS we advertise (bytes of payload per segment we accept).
    pub mss: u16,
    /// Most unread bytes we accept (the receive window's limit; memory is
    /// taken only for bytes actually held).
    pub rcv_wnd: u32,
    /// Most bytes queued to send (unsent and unacknowledged).
    pub snd_buf: u32,
    /// Nagle's algorithm (RFC 9293 3.7.4).
    pub nagle: bool,
    /// Delayed ACK (`None`: acknowledge every segment at once).
    pub ack_delay_us: Option<u64>,
    /// Retransmission timer settings.
    pub rto: RtoConfig,
    /// Congestion control.
    pub cc: CcAlgo,
    /// Offer and use SACK (RFC 2018).
    pub sack: bool,
    /// Offer and use timestamps (RFC 7323).
    pub timestamps: bool,
    /// Offer window scaling (RFC 7323).
    pub window_scale: bool,
    /// Keepalive probes, if any.
    pub keepalive: Option<Keepalive>,
    /// Reset a connection that carried no data either way for this long.
    pub idle_timeout_us: Option<u64>,
    /// Give up when data or a FIN stays unacknowledged this long.
    pub user_timeout_us: u64,
    /// Give up on a handshake that takes longer than this.
    pub handshake_timeout_us: u64,
    /// TIME-WAIT's length (2 MSL).
    pub time_wait_us: u64,
    /// Path MTU black-hole detection: after timeouts in a row for the
    /// same full-sized data, send smaller segments (see `tcp::pmtu`).
    pub blackhole_detect: bool,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            mss: 1460,
            rcv_wnd: 256 * 1024,
            snd_buf: 256 * 1024,
            nagle: false,
            ack_delay_us: Some(1_000),
            rto: RtoConfig::default(),
            cc: CcAlgo::Cubic,
            sack: true,
            timestamps: true,
            window_scale: true,
            keepalive: None,
            idle_timeout_us: None,
            user_timeout_us: 300_000_000,
            handshake_timeout_us: 10_000_000,
            time_wait_us: 60_000_000,
            blackhole_detect: true,
        }
    }
}

/// The engine's counters (one set per core).
#[derive(Debug, Default)]
pub struct TcpStats {
    /// Segments retransmitted (all causes).
    pub retransmits: Counter,
    /// Retransmission timeouts.
    pub rtos: Counter,
    /// Tail-loss probes sent.
    pub tlps: Counter,
    /// Tail-loss probes that repaired a loss (RFC 8985 7.4.2: the window
    /// was cut once for it).
    pub tlp_recoveries: Counter,
    /// Fast recoveries entered (SACK, RACK or three duplicate ACKs).
    pub recoveries: Counter,
    /// Congestion responses undone as spurious (D-SACK).
    pub undos: Counter,
    /// Segments that arrived out of order and were kept.
    pub ooo_segments: Counter,
    /// Segments dropped because the core's slab was exhausted.
    pub slab_drops: Counter,
    /// Segments outside the window (answered with an ACK).
    pub out_of_window: Counter,
    /// Segments dropped by PAWS (RFC 7323 5).
    pub paws_drops: Counter,
    /// Challenge ACKs sent (RFC 5961).
    pub challenge_acks: Counter,
    /// Challenge ACKs not sent because of the rate limits.
    pub challenge_limited: Counter,
    /// Zero-window probes sent.
    pub window_probes: Counter,
    /// Keepalive probes sent.
    pub keepalives: Counter,
    /// Connections ended by a timeout.
    pub timeouts: Counter,
    /// Segment sizes lowered by an ICMP "fragmentation needed" or ICMPv6
    /// "packet too big" (path MTU discovery, RFC 1191 and RFC 8201).
    pub pmtu_lowered: Counter,
    /// Segment sizes lowered because full-sized segments timed out again
    /// and again with no ICMP error (a path MTU black hole).
    pub pmtu_blackholes: Counter,
    /// Such messages ignored: for no connection of this engine, quoting a
    /// sequence number not in flight (RFC 5927 4.1), or no smaller than
    /// what is sent already.
    pub pmtu_ignored: Counter,
}

/// Global rate limit of challenge ACKs (RFC 5961 7): at most `per_sec` a
/// second on a core, on top of one per connection every `per_conn_us`.
#[derive(Debug)]
pub struct ChallengeLimiter {
    /// Challenge ACKs allowed per second on the core.
    pub per_sec: u32,
    /// Least time between two challenge ACKs of one connection (µs).
    pub per_conn_us: u64,
    window_start: u64,
    sent: u32,
}

impl ChallengeLimiter {
    /// A limiter allowing `per_sec` challenge ACKs a second.
    pub fn new(per_sec: u32, per_conn_us: u64) -> Self {
        ChallengeLimiter {
            per_sec,
            per_conn_us,
            window_start: 0,
            sent: 0,
        }
    }

    pub(super) fn allow(&mut self, now: u64) -> bool {
        if now.saturating_sub(self.window_start) >= 1_000_000 {
            self.window_start = now;
            self.sent = 0;
        }
        if self.sent >= self.per_sec {
            return false;
        }
        self.sent += 1;
        true
    }
}

impl Default for ChallengeLimiter {
    fn default() -> Self {
        ChallengeLimiter::new(1000, 100_000)
    }
}

/// What an engine call needs from its core: the time, the slab, the
/// connection's settings, counters and the challenge-ACK limiter.
pub struct Env<'a> {
    /// Now, in µs.
    pub now: u64,
    /// The core's payload chunks.
    pub slab: &'a mut Slab,
    /// This connection's settings.
    pub cfg: &'a Config,
    /// The core's counters.
    pub stats: &'a TcpStats,
    /// The core's challenge-ACK limiter.
    pub limiter: &'a mut ChallengeLimiter,
}

/// A segment to send: the header (its payload left empty) and where its
/// payload is in the send queue (copy it with [`super::Tcb::copy_payload`]).
#[derive(Debug, Clone, Copy)]
pub struct Seg {
    /// Header fields and options; `payload` is empty.
    pub repr: TcpRepr<'static>,
    /// Offset of the payload in the send queue.
    pub data_off: u32,
    /// Payload length.
    pub data_len: u32,
}
