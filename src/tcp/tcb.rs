//! The transmission control block: one connection's state (RFC 9293 3.3)
//! and the application's operations. Its settings are in
//! [`super::config`], its timers in `timers`.

use smoltcp::wire::TcpRepr;

use super::buf::{ChunkBuf, Slab};
use super::cc::Cc;
pub use super::config::{ChallengeLimiter, Config, Env, Keepalive, Seg, TcpStats};
use super::flight::Flight;
use super::rtt::RttEstimator;
use super::seq;

/// A deadline that never comes.
pub const NEVER: u64 = u64::MAX;

/// RFC 9293 connection states. `Listen` does not exist per connection: a
/// listener makes a block straight into `SynReceived` from a SYN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Our SYN is out; waiting for the peer's.
    SynSent,
    /// The peer's SYN arrived and ours is out; waiting for its ACK.
    SynReceived,
    /// Data flows both ways.
    Established,
    /// We closed; our FIN is not acknowledged yet.
    FinWait1,
    /// We closed and the peer acknowledged our FIN; it may still send.
    FinWait2,
    /// The peer closed; we may still send.
    CloseWait,
    /// Both closed at once; waiting for the ACK of our FIN.
    Closing,
    /// The peer closed, then we did; waiting for the ACK of our FIN.
    LastAck,
    /// Both sides closed; lingering for stray segments (2 MSL).
    TimeWait,
    /// Over.
    Closed,
}

impl State {
    /// States in which both sequence spaces are known (RFC 9293's
    /// "synchronized" states).
    pub fn synchronized(self) -> bool {
        !matches!(self, State::SynSent | State::SynReceived | State::Closed)
    }
}

/// Why a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// Both sides closed in order.
    Normal,
    /// The peer reset it.
    Reset,
    /// We aborted it (the application, or a refused handshake).
    Aborted,
    /// Retransmissions, the handshake, keepalive or the idle limit timed out.
    TimedOut,
}

pub(super) mod flag {
    pub const SACK_OK: u32 = 1 << 0;
    pub const TS_OK: u32 = 1 << 1;
    pub const WS_OK: u32 = 1 << 2;
    /// The application closed: a FIN follows the queued data.
    pub const CLOSE_REQ: u32 = 1 << 3;
    /// Our FIN has been sent (it is at `fin_seq()`).
    pub const FIN_SENT: u32 = 1 << 4;
    /// An ACK must go out now.
    pub const ACK_NOW: u32 = 1 << 5;
    /// A RST must go out now (abort), then the connection is closed.
    pub const RST_NOW: u32 = 1 << 6;
    /// Passive open.
    pub const PASSIVE: u32 = 1 << 7;
    /// In fast recovery (up to `recovery_point`).
    pub const RECOVERY: u32 = 1 << 8;
    /// Reordering has been seen (RACK).
    pub const REORDER_SEEN: u32 = 1 << 9;
    /// The SYN (or SYN-ACK) must be (re)sent.
    pub const SYN_NOW: u32 = 1 << 10;
    /// A tail-loss probe is due.
    pub const TLP_NOW: u32 = 1 << 11;
    /// A zero-window probe is due.
    pub const PROBE_NOW: u32 = 1 << 12;
    /// A keepalive probe is due.
    pub const KEEPALIVE_NOW: u32 = 1 << 13;
    /// The peer's FIN has been received (in order).
    pub const FIN_RCVD: u32 = 1 << 14;
    /// The application wants `Writable` when room appears.
    pub const WANT_WRITABLE: u32 = 1 << 15;
    /// The last loss response was a retransmission timeout.
    pub const AFTER_RTO: u32 = 1 << 16;
    /// Window update worth sending (the window opened a lot).
    pub const WND_UPDATE: u32 = 1 << 17;
    /// One of the rarely-set fields kept in the block's cold part
    /// (`tlp_end`, `rst_reply`, `dsack`, `fin_at`, `ooo`) may be set.
    /// Clear means all are empty, so a segment's processing reads none of
    /// them (and not their cache line); set by every write that fills one,
    /// cleared by [`Tcb::poll_output`] once all are empty again.
    pub const RARE: u32 = 1 << 18;
    /// The tail-loss probe out (`tlp_end`) sent the last segment again,
    /// not new data.
    pub const TLP_RTX: u32 = 1 << 19;
    /// `rto_tsval` holds a timeout's timestamp not yet checked against an
    /// ACK (the hot path reads this bit, not the field's cold line).
    pub const RTO_TS: u32 = 1 << 20;
}

/// Events the stack turns into application events.
pub mod ev {
    /// The connection is established.
    pub const OPEN: u8 = 1 << 0;
    /// New in-order data can be read.
    pub const READABLE: u8 = 1 << 1;
    /// Send-queue room after a short `send`.
    pub const WRITABLE: u8 = 1 << 2;
    /// The peer's FIN arrived in order.
    pub const PEER_FIN: u8 = 1 << 3;
    /// The connection is over (see [`super::Tcb::close_reason`]).
    pub const CLOSED: u8 = 1 << 4;
}

/// Timer kinds of the retransmission timer slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Rtx {
    None,
    /// Retransmission timeout (also the SYN's).
    Rto,
    /// Tail-loss probe timeout (RFC 8985 7).
    Tlp,
    /// RACK reordering timer (RFC 8985 6.2 step 5).
    Reorder,
    /// Zero-window probe (persist) timer.
    Persist,
}

/// The rarely-set fields that a segment's processing checks: kept in the
/// block's cold part, behind `flag::RARE` (clear means all are empty, so
/// a segment reads none of them). A [`Tcb`] reaches them only through
/// [`Tcb::rare`], [`Tcb::rare_set_mut`] and [`Tcb::rare_mut`], which sets
/// the flag, so the flag cannot fall out of step with them.
#[derive(Debug, Default)]
pub(super) struct Rare {
    /// End of the tail-loss probe's retransmission, if one is out.
    pub tlp_end: Option<u32>,
    /// A RST to send in answer to a segment (seq, ack), RFC 9293 3.10.7.
    pub rst_reply: Option<(u32, Option<u32>)>,
    /// A duplicate range to report first in the next ACK (RFC 2883).
    pub dsack: Option<(u32, u32)>,
    /// The peer's FIN, when it arrived beyond a hole.
    pub fin_at: Option<u32>,
    /// Out-of-order ranges beyond `rcv_nxt`, in sequence order.
    pub ooo: Vec<(u32, u32)>,
}

impl Rare {
    fn is_empty(&self) -> bool {
        self.tlp_end.is_none()
            && self.rst_reply.is_none()
            && self.dsack.is_none()
            && self.fin_at.is_none()
            && self.ooo.is_empty()
    }
}

/// One connection.
///
/// The layout is hot/cold by hand (`repr(C)`; the stack's connection
/// slots start on a cache line): with 16,384 connections a block is rarely
/// in cache when its segment comes, so what a lossless segment touches
/// sits in its first lines.
#[repr(C)]
pub struct Tcb {
    // Line 0: what every segment reads or writes (sequence space, flags,
    // state). With `repr(C)` the declared order is the layout: one cache
    // line when the block starts on one.
    pub(super) flags: u32,
    pub(super) snd_una: u32,
    pub(super) snd_nxt: u32,
    /// Highest sequence number sent plus one.
    pub(super) snd_max: u32,
    pub(super) snd_wnd: u32,
    pub(super) snd_wl1: u32,
    pub(super) snd_wl2: u32,
    /// Sequence number of the first byte of `snd_buf`.
    pub(super) snd_base: u32,
    /// Bytes queued in `snd_buf` (from `snd_base`).
    pub(super) snd_queued: u32,
    pub(super) rcv_nxt: u32,
    /// Right edge of the window we last advertised.
    pub(super) rcv_adv: u32,
    /// Unread in-order bytes (at the front of `rcv_buf`).
    pub(super) rcv_ready: u32,
    /// Bytes received since we last sent an ACK.
    pub(super) rcv_unacked: u32,
    pub(super) ts_recent: u32,
    pub(super) ts_offset: u32,
    pub(super) state: State,
    pub(super) ev: u8,
    pub(super) rtx: Rtx,
    pub(super) dupacks: u8,

    // Line 1: the clocks every segment reads or sets.
    pub(super) ts_recent_at: u64,
    /// Last segment from the peer.
    pub(super) last_rcv: u64,
    /// Last payload either way (idle timeout).
    pub(super) last_data: u64,
    /// When the oldest unacknowledged data was last acknowledged-into-
    /// progress (user timeout).
    pub(super) progress_at: u64,
    pub(super) rtx_at: u64,
    pub(super) ack_at: u64,
    /// RACK: send time and end of the most recently sent segment known
    /// delivered, and its RTT.
    pub(super) rack_xmit: u64,
    /// When we last sent new data (restart after idle).
    pub(super) last_send: u64,

    // Lines 2-7: RACK, ports and sizes, the flight records, the two
    // queues, what is checked on most segments and set rarely, the RTT
    // estimator, and the congestion controller (its hot part first).
    pub(super) rack_rtt: u64,
    pub(super) rack_end: u32,
    pub(super) recovery_point: u32,
    /// A floor under the RTO learnt from this peer's delayed ACKs (µs).
    pub(super) rto_floor: u32,
    pub(super) max_snd_wnd: u32,
    pub(super) lport: u16,
    pub(super) rport: u16,
    /// Payload bytes per segment we send.
    pub(super) smss: u16,
    pub(super) snd_wscale: u8,
    pub(super) rcv_wscale: u8,
    /// Segments still acknowledged at once at the start (quick ACK).
    pub(super) quickack: u8,
    /// Duplicate ACKs owed: one per out-of-order segment (RFC 5681 4.2),
    /// even when several arrived in one receive burst.
    pub(super) dup_owed: u8,
    pub(super) reo_wnd_mult: u8,
    pub(super) ka_sent: u8,
    /// Zero-window probes sent since the window last opened.
    pub(super) persist_n: u8,
    pub(super) syn_retransmitted: bool,
    pub(super) reason: CloseReason,
    /// Segments in flight, in sequence order.
    pub(super) sent: Flight,
    pub(super) snd_buf: ChunkBuf,
    pub(super) rcv_buf: ChunkBuf,
    pub(super) rtt: RttEstimator,
    pub(super) cc: Cc,

    // Cold: the rarely-set fields behind `flag::RARE` (checked on every
    // segment, set by loss, reordering and refusals), then the handshake,
    // loss episodes, TIME-WAIT, keepalive.
    /// Private: reached through [`Tcb::rare`] and [`Tcb::rare_mut`] only.
    cold: Rare,
    pub(super) iss: u32,
    pub(super) irs: u32,
    /// Start of the out-of-order range that changed last (first SACK block).
    pub(super) ooo_last: u32,
    pub(super) undo_retrans: u32,
    /// Proportional rate reduction (RFC 9937, `prr.rs`): RecoverFS, and
    /// the bytes delivered and sent since fast recovery began.
    pub(super) recover_fs: u32,
    pub(super) prr_delivered: u32,
    pub(super) prr_out: u32,
    /// Our timestamp when the first timeout of an episode fired, and the
    /// original send time of the segment it retransmitted (spurious
    /// timeout detection, RFC 3522 / RFC 4015); `rto_tsval` only while
    /// `flag::RTO_TS` is set.
    pub(super) rto_tsval: u32,
    /// snd_una when the last congestion response was made (for undo).
    pub(super) undo_marker: Option<u32>,
    pub(super) rto_orig_xmit: u64,
    /// When this state's own limit runs out: the handshake's (SYN-SENT,
    /// SYN-RECEIVED) or TIME-WAIT's end. The two never overlap.
    pub(super) phase_end: u64,
    pub(super) last_challenge: u64,
    /// When our SYN was first sent, and whether it was sent again.
    pub(super) syn_xmit: u64,
}

impl Tcb {
    fn blank(env: &Env, lport: u16, rport: u16, iss: u32, ts_offset: u32) -> Tcb {
        let cfg = env.cfg;
        Tcb {
            state: State::Closed,
            cold: Rare::default(),
            flags: 0,
            ev: 0,
            reason: CloseReason::Normal,
            lport,
            rport,
            iss,
            snd_una: iss,
            snd_nxt: iss,
            snd_max: iss,
            snd_wnd: 0,
            max_snd_wnd: 0,
            snd_wl1: 0,
            snd_wl2: 0,
            snd_wscale: 0,
            rcv_wscale: 0,
            smss: 536,
            snd_base: iss.wrapping_add(1),
            snd_queued: 0,
            snd_buf: ChunkBuf::default(),
            sent: Flight::default(),
            irs: 0,
            rcv_nxt: 0,
            rcv_ready: 0,
            rcv_adv: 0,
            rcv_buf: ChunkBuf::default(),
            ooo_last: 0,
            rcv_unacked: 0,
            quickack: 16,
            ts_offset,
            ts_recent: 0,
            ts_recent_at: 0,
            rtt: RttEstimator::new(cfg.rto),
            cc: Cc::new(cfg.cc, 536),
            recovery_point: iss,
            dupacks: 0,
            rack_xmit: 0,
            rack_end: iss,
            rack_rtt: 0,
            reo_wnd_mult: 1,
            rto_floor: 0,
            rto_tsval: 0,
            rto_orig_xmit: 0,
            undo_marker: None,
            undo_retrans: 0,
            recover_fs: 1,
            prr_delivered: 0,
            prr_out: 0,
            rtx_at: NEVER,
            rtx: Rtx::None,
            ack_at: NEVER,
            phase_end: env.now.saturating_add(cfg.handshake_timeout_us),
            last_rcv: env.now,
            last_data: env.now,
            progress_at: env.now,
            ka_sent: 0,
            dup_owed: 0,
            persist_n: 0,
            last_challenge: 0,
            syn_xmit: 0,
            syn_retransmitted: false,
            last_send: 0,
        }
    }

    /// An active open: the SYN goes out on the next [`Tcb::poll_output`].
    /// `iss` from [`super::isn::IsnGen`]; `ts_offset` randomises our
    /// timestamps (RFC 7323 5.4).
    pub fn connect(env: &mut Env, lport: u16, rport: u16, iss: u32, ts_offset: u32) -> Tcb {
        let mut t = Tcb::blank(env, lport, rport, iss, ts_offset);
        t.state = State::SynSent;
        t.flags |= flag::SYN_NOW;
        t
    }

    /// A passive open from a SYN: the SYN-ACK goes out on the next
    /// [`Tcb::poll_output`]. The caller checked that `syn` is a SYN
    /// without ACK or RST.
    pub fn accept(env: &mut Env, syn: &TcpRepr, iss: u32, ts_offset: u32) -> Tcb {
        let mut t = Tcb::blank(env, syn.dst_port, syn.src_port, iss, ts_offset);
        t.state = State::SynReceived;
        t.flags |= flag::PASSIVE | flag::SYN_NOW;
        t.irs = syn.seq_number.0 as u32;
        t.rcv_nxt = t.irs.wrapping_add(1);
        t.take_syn_options(env, syn);
        t.snd_wnd = syn.window_len as u32; // never scaled in a SYN
        t.snd_wl1 = t.irs;
        t.max_snd_wnd = t.snd_wnd;
        t
    }

    /// A connection rebuilt from the final ACK of a handshake answered
    /// with a SYN cookie (RFC 4987): established at once. `mss`, `wscale`,
    /// `sack` and `timestamps` are what the cookie carried.
    #[allow(clippy::too_many_arguments)]
    pub fn from_cookie(
        env: &mut Env,
        ack: &TcpRepr,
        iss: u32,
        ts_offset: u32,
        mss: u16,
        wscale: Option<u8>,
        sack: bool,
        timestamps: bool,
    ) -> Tcb {
        let mut t = Tcb::blank(env, ack.dst_port, ack.src_port, iss, ts_offset);
        t.flags |= flag::PASSIVE;
        t.irs = (ack.seq_number.0 as u32).wrapping_sub(1);
        t.rcv_nxt = t.irs.wrapping_add(1);
        t.smss = mss.min(env.cfg.mss.max(536));
        if let Some(ws) = wscale.filter(|_| env.cfg.window_scale) {
            t.flags |= flag::WS_OK;
            t.snd_wscale = ws.min(14);
            t.rcv_wscale = Self::our_wscale(env.cfg);
        }
        if sack && env.cfg.sack {
            t.flags |= flag::SACK_OK;
        }
        if timestamps && env.cfg.timestamps {
            if let Some(ts) = ack.timestamp {
                t.flags |= flag::TS_OK;
                t.ts_recent = ts.tsval;
                t.ts_recent_at = env.now;
            }
        }
        t.snd_una = iss.wrapping_add(1);
        t.snd_nxt = t.snd_una;
        t.snd_max = t.snd_una;
        t.snd_base = t.snd_una;
        t.snd_wnd = (ack.window_len as u32) << t.snd_wscale;
        t.max_snd_wnd = t.snd_wnd;
        t.snd_wl1 = ack.seq_number.0 as u32;
        t.snd_wl2 = t.snd_una;
        t.rcv_adv = t.rcv_nxt.wrapping_add(t.rcv_window(env.cfg));
        t.cc = Cc::new(env.cfg.cc, t.smss as u32);
        t.state = State::Established;
        t.ev |= ev::OPEN;
        t
    }

    /// The window-scale shift offered for these settings.
    pub fn wscale_for(cfg: &Config) -> u8 {
        Self::our_wscale(cfg)
    }

    /// The window-scale shift we offer: enough for `rcv_wnd` in 16 bits.
    pub(super) fn our_wscale(cfg: &Config) -> u8 {
        let mut s = 0;
        while s < 14 && (cfg.rcv_wnd >> s) > 0xffff {
            s += 1;
        }
        s
    }

    /// Records the options of the peer's SYN (or SYN-ACK).
    pub(super) fn take_syn_options(&mut self, env: &Env, syn: &TcpRepr) {
        let cfg = env.cfg;
        let peer_mss = syn.max_seg_size.unwrap_or(536).max(64);
        self.smss = peer_mss.min(cfg.mss.max(536));
        if let (Some(ws), true) = (syn.window_scale, cfg.window_scale) {
            self.flags |= flag::WS_OK;
            self.snd_wscale = ws.min(14);
            self.rcv_wscale = Self::our_wscale(cfg);
        }
        if syn.sack_permitted && cfg.sack {
            self.flags |= flag::SACK_OK;
        }
        if let (Some(ts), true) = (syn.timestamp, cfg.timestamps) {
            self.flags |= flag::TS_OK;
            self.ts_recent = ts.tsval;
            self.ts_recent_at = env.now;
        }
        if self.flags & flag::TS_OK != 0 {
            // Room for the timestamp option in every segment.
            self.smss = self.smss.saturating_sub(12).max(64);
        }
        self.cc = Cc::new(cfg.cc, self.smss as u32);
    }

    // ---- what the stack and the application see ---------------------

    /// The connection's state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Why it ended (meaningful once [`State::Closed`]).
    pub fn close_reason(&self) -> CloseReason {
        self.reason
    }

    /// Our port and the peer's.
    pub fn ports(&self) -> (u16, u16) {
        (self.lport, self.rport)
    }

    /// Takes the pending events (bits of [`ev`]).
    pub fn take_events(&mut self) -> u8 {
        std::mem::take(&mut self.ev)
    }

    /// The MSS we send with.
    pub fn mss(&self) -> u16 {
        self.smss
    }

    /// The congestion window (bytes).
    pub fn cwnd(&self) -> u32 {
        self.cc.cwnd()
    }

    /// The smoothed RTT, once measured (µs).
    pub fn srtt_us(&self) -> Option<u64> {
        self.rtt.srtt_us()
    }

    /// The retransmission timeout now (µs).
    pub fn rto_us(&self) -> u64 {
        self.rto()
    }

    /// The retransmission timeout: the estimator's, but never below what
    /// this peer's delayed ACKs were seen to need (learnt from spurious
    /// timeouts, see `recovery`).
    pub(super) fn rto(&self) -> u64 {
        self.rtt.rto_us().max(self.rto_floor as u64)
    }

    /// Our next sequence number to send and the next we expect (for
    /// TIME-WAIT records and RST checks).
    pub fn seqs(&self) -> (u32, u32) {
        (self.snd_max, self.rcv_nxt)
    }

    /// The peer's most recent timestamp, if timestamps are on.
    pub fn ts_recent(&self) -> Option<u32> {
        (self.flags & flag::TS_OK != 0).then_some(self.ts_recent)
    }

    /// True if timestamps are in use.
    pub fn timestamps(&self) -> bool {
        self.flags & flag::TS_OK != 0
    }

    /// True if SACK is in use.
    pub fn sack(&self) -> bool {
        self.flags & flag::SACK_OK != 0
    }

    /// The shifts (ours, the peer's) if window scaling is in use.
    pub fn wscale(&self) -> Option<(u8, u8)> {
        (self.flags & flag::WS_OK != 0).then_some((self.rcv_wscale, self.snd_wscale))
    }

    /// Unread in-order bytes.
    pub fn readable(&self) -> u32 {
        self.rcv_ready
    }

    /// True once the peer's FIN arrived (and all before it).
    pub fn peer_closed(&self) -> bool {
        self.flags & flag::FIN_RCVD != 0
    }

    /// Bytes sent and not yet acknowledged (the flight, SACKed included).
    pub fn in_flight(&self) -> u32 {
        self.snd_max.wrapping_sub(self.snd_una)
    }

    /// The peer's receive window (bytes, scaled).
    pub fn peer_window(&self) -> u32 {
        self.snd_wnd
    }

    /// Bytes queued to send (unsent and unacknowledged).
    pub fn send_queued(&self) -> u32 {
        self.snd_queued
    }

    /// Whether the application may still queue data (our side is open).
    fn may_send(&self) -> bool {
        self.flags & (flag::CLOSE_REQ | flag::RST_NOW) == 0
            && matches!(
                self.state,
                State::SynSent | State::SynReceived | State::Established | State::CloseWait
            )
    }

    /// Free room in the send queue; 0 once we closed.
    pub fn send_room(&self, cfg: &Config) -> u32 {
        if !self.may_send() {
            return 0;
        }
        cfg.snd_buf.saturating_sub(self.snd_queued)
    }

    /// Whether the send queue is full while our side is still open; then
    /// [`ev::WRITABLE`] is set up for when room opens, as after a short
    /// [`Tcb::send`].
    pub fn await_room(&mut self, cfg: &Config) -> bool {
        if !self.may_send() || self.send_room(cfg) > 0 {
            return false;
        }
        self.flags |= flag::WANT_WRITABLE;
        true
    }

    /// True while something is queued, in flight or unacknowledged.
    pub fn has_outstanding(&self) -> bool {
        self.snd_queued > 0 || self.snd_una != self.snd_max
    }

    /// Queues bytes to send; returns how many fit (the send queue's room,
    /// and the slab's). A short count sets up [`ev::WRITABLE`].
    pub fn send(&mut self, env: &mut Env, data: &[u8]) -> usize {
        let room = self.send_room(env.cfg) as usize;
        let n = room.min(data.len());
        if n > 0 {
            let ok = self.snd_buf.write(env.slab, self.snd_queued, &data[..n]);
            if !ok {
                self.flags |= flag::WANT_WRITABLE;
                return 0;
            }
            if self.snd_queued == 0 && self.snd_una == self.snd_max {
                self.progress_at = env.now;
            }
            self.snd_queued += n as u32;
            self.last_data = env.now;
        }
        if n < data.len() {
            self.flags |= flag::WANT_WRITABLE;
        }
        n
    }

    /// Calls `f` with the unread in-order bytes from `off`, at most `len`,
    /// chunk by chunk (borrowed: no copy).
    pub fn read(&self, slab: &Slab, off: u32, len: u32, f: impl FnMut(&[u8])) {
        let end = self.rcv_ready.min(off.saturating_add(len));
        if end > off {
            self.rcv_buf.read(slab, off, end - off, f);
        }
    }

    /// The first contiguous run of unread bytes (borrowed, at most one
    /// chunk long).
    pub fn peek<'s>(&self, slab: &'s Slab) -> &'s [u8] {
        self.rcv_buf.first(slab, self.rcv_ready)
    }

    /// The same bytes as [`Tcb::peek`], lent: the chunk moves out of the
    /// slab while the application reads it (see [`super::buf::Lent`]).
    pub fn lend(&self, slab: &mut Slab) -> Option<super::buf::Lent> {
        self.rcv_buf.lend_first(slab, self.rcv_ready)
    }

    /// The rarely-set fields, when one of them may be set (`flag::RARE`);
    /// `None` without reading them (or their cache line) otherwise.
    #[inline]
    pub(super) fn rare(&self) -> Option<&Rare> {
        (self.flags & flag::RARE != 0).then_some(&self.cold)
    }

    /// The rarely-set fields, for writing: marks them as possibly set.
    #[inline]
    pub(super) fn rare_mut(&mut self) -> &mut Rare {
        self.flags |= flag::RARE;
        &mut self.cold
    }

    /// The rarely-set fields for taking one out, when one may be set.
    #[inline]
    pub(super) fn rare_set_mut(&mut self) -> Option<&mut Rare> {
        (self.flags & flag::RARE != 0).then_some(&mut self.cold)
    }

    /// Clears `flag::RARE` when every rarely-set field is empty again.
    #[cold]
    pub(super) fn settle_rare(&mut self) {
        if self.cold.is_empty() {
            self.flags &= !flag::RARE;
        }
    }

    /// Consumes `n` read bytes; the window opens accordingly.
    pub fn consume(&mut self, env: &mut Env, n: u32) {
        let n = n.min(self.rcv_ready);
        if n == 0 {
            return;
        }
        let before = self.rcv_window(env.cfg);
        self.rcv_ready -= n;
        // What is still stored past the consumed bytes: unread in-order
        // bytes and the out-of-order ranges.
        let span = match self.rare().and_then(|r| r.ooo.last().copied()) {
            Some((_, end)) => seq::dist(self.rcv_nxt, end) + self.rcv_ready,
            None => self.rcv_ready,
        };
        self.rcv_buf.advance(env.slab, n, span);
        // Receiver-side silly window avoidance (RFC 9293 3.8.6.2.2): tell
        // the peer only when the window opened by a useful amount.
        let after = self.rcv_window(env.cfg);
        let adv_left = seq::dist(self.rcv_nxt, self.rcv_adv);
        let step = (self.smss as u32).min(env.cfg.rcv_wnd / 2).max(1);
        if after >= adv_left + step && (before < step || after - adv_left >= env.cfg.rcv_wnd / 2) {
            self.flags |= flag::WND_UPDATE;
        }
    }

    /// Closes our side after the queued data (FIN).
    pub fn close(&mut self) {
        match self.state {
            State::SynSent => {
                self.state = State::Closed;
                self.reason = CloseReason::Aborted;
                self.ev |= ev::CLOSED;
            }
            State::SynReceived => self.flags |= flag::CLOSE_REQ,
            State::Established => {
                self.flags |= flag::CLOSE_REQ;
                self.state = State::FinWait1;
            }
            State::CloseWait => {
                self.flags |= flag::CLOSE_REQ;
                self.state = State::LastAck;
            }
            _ => {}
        }
    }

    /// Resets the connection: a RST goes out, queued data is dropped.
    pub fn abort(&mut self, slab: &mut Slab) {
        if self.state == State::Closed {
            return;
        }
        let send_rst = !matches!(self.state, State::SynSent | State::TimeWait);
        self.release(slab);
        if send_rst {
            self.flags |= flag::RST_NOW;
        } else {
            self.state = State::Closed;
            self.ev |= ev::CLOSED;
        }
        self.reason = CloseReason::Aborted;
    }

    /// Gives back every chunk (when the connection goes).
    pub fn release(&mut self, slab: &mut Slab) {
        self.snd_buf.clear(slab);
        self.rcv_buf.clear(slab);
        self.snd_queued = 0;
        self.rcv_ready = 0;
        self.cold.ooo = Vec::new();
        self.sent.clear();
    }

    /// Enters `Closed` for `reason`, giving the chunks back.
    pub(super) fn finish(&mut self, slab: &mut Slab, reason: CloseReason) {
        self.release(slab);
        self.state = State::Closed;
        self.reason = reason;
        self.ev |= ev::CLOSED;
        self.rtx = Rtx::None;
        self.rtx_at = NEVER;
        self.ack_at = NEVER;
    }

    /// The window we can offer now: the limit less the unread bytes.
    pub(super) fn rcv_window(&self, cfg: &Config) -> u32 {
        let max = if self.flags & flag::WS_OK != 0 {
            0xffff << self.rcv_wscale
        } else {
            0xffff
        };
        cfg.rcv_wnd.saturating_sub(self.rcv_ready).min(max)
    }

    /// Our timestamp clock (1 ms ticks, offset per connection).
    #[inline]
    pub(super) fn ts_val(&self, now: u64) -> u32 {
        ((now / 1000) as u32).wrapping_add(self.ts_offset)
    }
}

impl std::fmt::Debug for Tcb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tcb")
            .field("state", &self.state)
            .field("snd_una", &self.snd_una)
            .field("snd_nxt", &self.snd_nxt)
            .field("snd_max", &self.snd_max)
            .field("snd_wnd", &self.snd_wnd)
            .field("rcv_nxt", &self.rcv_nxt)
            .field("cwnd", &self.cc.cwnd())
            .field("queued", &self.snd_queued)
            .field("ready", &self.rcv_ready)
            .finish()
    }
}
