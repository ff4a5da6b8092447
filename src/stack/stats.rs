//! The stack's counters, one set per core: written by that core alone,
//! read by anyone (live tables, JSON summaries).

use crate::counter::Counter;
use crate::tcp::TcpStats;

use super::classify::Reject;

/// The stack's counters (one set per core).
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct StackStats {
    /// Frames received.
    pub rx_packets: Counter,
    /// Bytes received.
    pub rx_bytes: Counter,
    /// Frames sent.
    pub tx_packets: Counter,
    /// Bytes sent.
    pub tx_bytes: Counter,
    /// Frames dropped because the port's transmit queue stayed full and the
    /// hold-back queue was full too.
    pub tx_full: Counter,
    /// Frames the port refused at first and that waited for the next flush.
    pub tx_held: Counter,
    /// Frames not built for want of a pool buffer.
    pub tx_no_buffer: Counter,
    /// Frames sent with a TSO request: several MSS-sized segments of one
    /// connection in one buffer, for the port to cut (see `stack/tso.rs`).
    pub tso_frames: Counter,
    /// The MSS-sized segments those frames carried.
    pub tso_segments: Counter,
    /// Dropped: malformed headers, lengths or options.
    pub drop_malformed: Counter,
    /// Dropped: bad checksum.
    pub drop_bad_checksum: Counter,
    /// Dropped: IPv4 fragment or IPv6 fragment header.
    pub drop_fragment: Counter,
    /// Dropped: for another MAC/IP.
    pub drop_not_for_us: Counter,
    /// Dropped: protocol not spoken.
    pub drop_unsupported: Counter,
    /// Dropped: an IPv6 extension-header chain malformed or too long.
    pub drop_bad_ext_header: Counter,
    /// ICMPv6 Parameter Problems sent about refused IPv6 packets.
    pub icmp6_errors_tx: Counter,
    /// ICMPv6 errors not sent: over the rate limit.
    pub icmp6_errors_limited: Counter,
    /// Segments for no connection (answered with RST by TCP rules).
    pub no_conn: Counter,
    /// RSTs not at the exact sequence number we acknowledged (RFC 5961):
    /// dropped, answered by a (rate-limited) challenge ACK if in window.
    pub rst_not_exact: Counter,
    /// UDP datagrams for a port with no socket (dropped, unanswered).
    pub udp_no_port: Counter,
    /// SYNs refused because the backlog was full.
    pub backlog_full: Counter,
    /// Half-open connections dropped to make room for a new SYN
    /// ([`super::BacklogFull::DropOldest`]).
    pub syn_evicted: Counter,
    /// SYNs or connects refused because the connection table was full.
    pub table_full: Counter,
    /// Connections open now (all states).
    pub conns: Counter,
    /// Connections accepted (handshake completed).
    pub accepted: Counter,
    /// Active opens established.
    pub connected: Counter,
    /// Active opens that failed.
    pub connect_failed: Counter,
    /// Connections ended in order.
    pub closed: Counter,
    /// Connections reset, aborted or timed out.
    pub reset: Counter,
    /// Connection egress polls (the per-iteration work; O(touched)).
    pub conn_polls: Counter,
    /// Timer expiries handled.
    pub timer_fires: Counter,
    /// Frames received here and handed to their owning core.
    pub steered_out: Counter,
    /// Frames handed here by the core that received them.
    pub steered_in: Counter,
    /// Frames dropped because the ring to their owner was full.
    pub steer_drops: Counter,
    /// ARP frames received here and copied to the other cores (copies).
    pub arp_copies_out: Counter,
    /// ARP copies from other cores learnt from.
    pub arp_copies_in: Counter,
    /// ARP copies not made (no buffer) or not delivered (ring full).
    pub arp_copy_drops: Counter,
    /// ARP requests this core sent (a neighbour it did not know).
    pub arp_requests_tx: Counter,
    /// SYN-ACKs answered with a SYN cookie (backlog full, RFC 4987).
    pub syn_cookies_sent: Counter,
    /// Connections rebuilt from a valid SYN cookie.
    pub syn_cookies_ok: Counter,
    /// ACKs for no connection whose cookie did not check out.
    pub syn_cookies_bad: Counter,
    /// Connections in TIME-WAIT, kept as compact records (gauge).
    pub time_wait: Counter,
    /// TIME-WAIT records taken over by a new connection (RFC 6191).
    pub time_wait_reused: Counter,
    /// Active opens refused because no local port was free.
    pub connect_no_port: Counter,
    /// Connections established (accepted or connected) on the bypass
    /// engine; the others of `accepted` and `connected` ran on smoltcp's.
    pub bypass_opened: Counter,
    /// Most bytes in flight on one bypass-engine connection so far
    /// (high-water mark; shows what window a busy connection achieved).
    pub max_in_flight: Counter,
    /// Largest congestion window of one bypass-engine connection so far.
    pub max_cwnd: Counter,
    /// Largest receive window a peer offered one bypass-engine connection
    /// so far (scaled).
    pub max_peer_window: Counter,
    /// The bypass TCP engine's counters.
    pub tcp: TcpStats,
}

impl StackStats {
    pub(super) fn reject(&self, r: Reject) {
        match r {
            Reject::Malformed => &self.drop_malformed,
            Reject::BadChecksum => &self.drop_bad_checksum,
            Reject::Fragment => &self.drop_fragment,
            Reject::NotForUs => &self.drop_not_for_us,
            Reject::Unsupported => &self.drop_unsupported,
            Reject::BadExtHeader => &self.drop_bad_ext_header,
        }
        .inc();
    }

    /// All drops before the stack.
    pub fn drops(&self) -> u64 {
        self.drop_malformed.get()
            + self.drop_bad_checksum.get()
            + self.drop_fragment.get()
            + self.drop_not_for_us.get()
            + self.drop_unsupported.get()
            + self.drop_bad_ext_header.get()
    }
}
