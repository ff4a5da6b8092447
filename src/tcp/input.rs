//! Segment arrival (RFC 9293 3.10.7) with the defences of RFC 5961 (RST,
//! SYN and ACK acceptance with challenge ACKs) and PAWS (RFC 7323 5),
//! reassembly into the receive queue, and the ACK policy.

use smoltcp::wire::{TcpControl, TcpRepr};

use super::seq;
use super::tcb::{ev, flag, CloseReason, Env, Rtx, State, Tcb, NEVER};

/// Most out-of-order ranges kept per connection.
const MAX_OOO: usize = 64;
/// PAWS forgets a timestamp older than 24 days (RFC 7323 5.5).
const PAWS_IDLE_US: u64 = 24 * 24 * 3600 * 1_000_000;
/// Ticks of the peer's timestamp clock a segment may lag TS.Recent and
/// still pass PAWS. A peer's segments can leave it from two CPUs (data
/// from the application's, ACKs from the one that took our data), and
/// two that straddle a tick of its clock can swap places on the way:
/// the one stamped a tick earlier then arrives second. Strict RFC 7323
/// 5.3 drops it (a data segment then costs a retransmission); Linux
/// tolerates one tick (`TCP_PAWS_WINDOW`), and so does the engine. An old
/// duplicate from a wrapped sequence space, which PAWS is for, is older
/// by far more than one tick.
const PAWS_WINDOW: u32 = 1;

impl Tcb {
    /// Processes one segment for this connection.
    pub fn input(&mut self, env: &mut Env, seg: &TcpRepr) {
        match self.state {
            State::Closed => {}
            State::SynSent => self.input_syn_sent(env, seg),
            _ => self.input_sync(env, seg),
        }
    }

    /// RFC 9293 3.10.7.3.
    fn input_syn_sent(&mut self, env: &mut Env, seg: &TcpRepr) {
        let ack = seg.ack_number.map(|a| a.0 as u32);
        if let Some(a) = ack {
            if seq::le(a, self.iss) || seq::gt(a, self.snd_max) {
                if seg.control != TcpControl::Rst {
                    self.rare_mut().rst_reply = Some((a, None));
                }
                return;
            }
        }
        if seg.control == TcpControl::Rst {
            if ack.is_some() {
                self.finish(env.slab, CloseReason::Reset);
            }
            return;
        }
        if seg.control != TcpControl::Syn {
            return;
        }
        self.irs = seg.seq_number.0 as u32;
        self.rcv_nxt = self.irs.wrapping_add(1);
        // The right edge starts here (it only ever moves right from now:
        // it must not be compared with a value from before the SYN).
        self.rcv_adv = self.rcv_nxt;
        self.last_rcv = env.now;
        self.take_syn_options(env, seg);
        if self.flags & flag::WS_OK == 0 {
            self.rcv_wscale = 0;
        }
        match ack {
            Some(a) => {
                self.snd_una = a;
                // A SYN's window is never scaled (RFC 7323 2.2): scaling
                // the SYN-ACK's 65,535 by the peer's shift let us send up
                // to 0xffff << 3 = 524,280 bytes into a 256 KiB window.
                self.snd_wnd = seg.window_len as u32;
                self.max_snd_wnd = self.snd_wnd;
                self.snd_wl1 = self.irs;
                self.snd_wl2 = a;
                self.handshake_rtt(env);
                self.established(env);
                self.flags |= flag::ACK_NOW;
            }
            None => {
                // Simultaneous open (RFC 9293 3.5, figure 7).
                self.state = State::SynReceived;
                self.flags |= flag::PASSIVE | flag::SYN_NOW;
                self.snd_wnd = seg.window_len as u32;
                self.snd_wl1 = self.irs;
            }
        }
    }

    fn handshake_rtt(&mut self, env: &mut Env) {
        if self.syn_xmit != 0 && !self.syn_retransmitted {
            self.rtt
                .sample(env.now.saturating_sub(self.syn_xmit).max(1));
        }
        self.rtt.reset_backoff();
        self.rtx = Rtx::None;
        self.rtx_at = NEVER;
    }

    fn established(&mut self, env: &mut Env) {
        self.state = State::Established;
        self.ev |= ev::OPEN;
        self.progress_at = env.now;
        self.last_data = env.now;
        self.rcv_adv = seq::max(
            self.rcv_adv,
            self.rcv_nxt.wrapping_add(self.rcv_window(env.cfg)),
        );
        if self.flags & flag::CLOSE_REQ != 0 {
            self.state = State::FinWait1;
        }
    }

    /// RFC 9293 3.10.7.4, for SYN-RECEIVED and the synchronized states.
    fn input_sync(&mut self, env: &mut Env, seg: &TcpRepr) {
        let now = env.now;
        let rst = seg.control == TcpControl::Rst;
        let seg_seq = seg.seq_number.0 as u32;
        let syn = seg.control == TcpControl::Syn;
        let fin = seg.control == TcpControl::Fin;
        let plen = seg.payload.len() as u32;
        let seg_len = plen + syn as u32 + fin as u32;

        // PAWS (RFC 7323 5.3).
        if self.flags & flag::TS_OK != 0 && !rst {
            if let Some(ts) = seg.timestamp {
                if seq::lt(ts.tsval.wrapping_add(PAWS_WINDOW), self.ts_recent)
                    && now.saturating_sub(self.ts_recent_at) < PAWS_IDLE_US
                {
                    env.stats.paws_drops.inc();
                    self.flags |= flag::ACK_NOW;
                    return;
                }
            }
        }

        // Simultaneous open: the peer's SYN-ACK answers ours (RFC 9293
        // figure 7); its SYN repeats the one we have.
        if self.state == State::SynReceived && syn && self.is_their_syn(seg_seq) {
            if let Some(a) = seg.ack_number.map(|a| a.0 as u32) {
                if self.complete_handshake(env, seg, a) {
                    self.flags |= flag::ACK_NOW;
                    return;
                }
            }
        }

        // Sequence acceptability (RFC 9293 3.10.7.4, first).
        let wnd = seq::dist(self.rcv_nxt, seq::max(self.rcv_adv, self.rcv_nxt));
        let in_wnd =
            |s: u32| seq::ge(s, self.rcv_nxt) && seq::lt(s, self.rcv_nxt.wrapping_add(wnd));
        // A zero-length segment may sit exactly on the right edge: a peer
        // that filled our window and lost those segments sends its ACKs
        // with SEG.SEQ = its SND.NXT = our edge. RFC 9293's strict test
        // refuses them (and their ACK field with them), so neither side
        // moves until the peer's RTO; Linux accepts the edge too.
        let acceptable = match (seg_len, wnd) {
            (0, 0) => seg_seq == self.rcv_nxt,
            (0, _) => in_wnd(seg_seq) || seg_seq == self.rcv_nxt.wrapping_add(wnd),
            (_, 0) => false,
            (_, _) => in_wnd(seg_seq) || in_wnd(seg_seq.wrapping_add(seg_len - 1)),
        };
        if !acceptable {
            if rst {
                return;
            }
            if self.state == State::SynReceived && syn && self.is_their_syn(seg_seq) {
                // Our SYN-ACK was lost: the peer retransmitted its SYN.
                self.flags |= flag::SYN_NOW;
                return;
            }
            if plen > 0 && seq::le(seg_seq.wrapping_add(plen), self.rcv_nxt) {
                // A duplicate: report it (RFC 2883).
                self.rare_mut().dsack = Some((seg_seq, seg_seq.wrapping_add(plen)));
            }
            env.stats.out_of_window.inc();
            self.flags |= flag::ACK_NOW;
            if self.state == State::TimeWait && fin {
                self.phase_end = now.saturating_add(env.cfg.time_wait_us);
            }
            return;
        }

        // RST (RFC 5961 3.2): exact sequence resets, in-window challenges.
        if rst {
            if seg_seq == self.rcv_nxt {
                let reason = CloseReason::Reset;
                if self.state == State::TimeWait {
                    self.state = State::Closed;
                    self.reason = CloseReason::Normal;
                    self.ev |= ev::CLOSED;
                } else {
                    self.finish(env.slab, reason);
                }
            } else {
                self.challenge(env);
            }
            return;
        }

        // SYN in a synchronized state (RFC 5961 4): challenge ACK.
        if syn {
            if self.state == State::SynReceived && self.is_their_syn(seg_seq) {
                self.flags |= flag::SYN_NOW;
            } else {
                self.challenge(env);
            }
            return;
        }

        let Some(ack) = seg.ack_number.map(|a| a.0 as u32) else {
            return;
        };

        // Timestamps: remember the peer's (RFC 7323 4.3).
        if self.flags & flag::TS_OK != 0 {
            if let Some(ts) = seg.timestamp {
                if seq::le(seg_seq, self.rcv_nxt) && seq::ge(ts.tsval, self.ts_recent) {
                    self.ts_recent = ts.tsval;
                    self.ts_recent_at = now;
                }
            }
        }
        self.last_rcv = now;
        self.ka_sent = 0;

        if self.state == State::SynReceived {
            if !self.complete_handshake(env, seg, ack) {
                self.rare_mut().rst_reply = Some((ack, None));
                return;
            }
        } else {
            // ACK acceptance (RFC 5961 5).
            if seq::gt(ack, self.snd_max) {
                self.flags |= flag::ACK_NOW;
                return;
            }
            let oldest = self.snd_una.wrapping_sub(self.max_snd_wnd.max(1));
            if seq::lt(ack, oldest) {
                self.challenge(env);
                return;
            }
            if seq::ge(ack, self.snd_una) {
                self.on_ack(env, seg, ack);
            }
            // Window update (RFC 9293 3.10.7.4, fifth, ESTABLISHED).
            if seq::lt(self.snd_wl1, seg_seq)
                || (self.snd_wl1 == seg_seq && seq::le(self.snd_wl2, ack))
            {
                let was_zero = self.snd_wnd == 0;
                self.snd_wnd = (seg.window_len as u32) << self.snd_wscale;
                self.max_snd_wnd = self.max_snd_wnd.max(self.snd_wnd);
                self.snd_wl1 = seg_seq;
                self.snd_wl2 = ack;
                if was_zero && self.snd_wnd > 0 && self.rtx == Rtx::Persist {
                    self.rtx = Rtx::None;
                    self.rtx_at = NEVER;
                }
            }
        }

        // Our FIN acknowledged?
        let fin_acked = self.flags & flag::FIN_SENT != 0 && self.snd_una == self.snd_max;
        match self.state {
            State::FinWait1 if fin_acked => self.state = State::FinWait2,
            State::Closing if fin_acked => self.enter_time_wait(env),
            State::LastAck if fin_acked => {
                self.finish(env.slab, CloseReason::Normal);
                return;
            }
            _ => {}
        }

        // Data (RFC 9293 3.10.7.4, seventh).
        let receiving = matches!(
            self.state,
            State::Established | State::FinWait1 | State::FinWait2
        ) && self.flags & flag::FIN_RCVD == 0;
        if plen > 0 && receiving {
            self.take_data(env, seg_seq, seg.payload);
        } else if plen > 0 {
            self.flags |= flag::ACK_NOW;
        }

        // FIN (eighth).
        if fin {
            let fin_seq = seg_seq.wrapping_add(plen);
            if self.flags & flag::FIN_RCVD == 0 {
                if fin_seq == self.rcv_nxt {
                    self.peer_fin(env);
                } else if seq::gt(fin_seq, self.rcv_nxt) {
                    self.rare_mut().fin_at = Some(fin_seq);
                }
            }
            self.flags |= flag::ACK_NOW;
            if self.state == State::TimeWait {
                self.phase_end = now.saturating_add(env.cfg.time_wait_us);
            }
        }
    }

    /// Whether a SYN is the peer's first one again (its sequence number is
    /// the one we took). Out of line: `irs` sits in a cold line, and an
    /// inlined comparison let the compiler load it on every segment (one
    /// cache miss each with 16,384 connections).
    #[cold]
    #[inline(never)]
    fn is_their_syn(&self, seg_seq: u32) -> bool {
        seg_seq == self.irs
    }

    /// SYN-RECEIVED: an ACK of our SYN completes the handshake. False if
    /// `ack` does not acknowledge it.
    fn complete_handshake(&mut self, env: &mut Env, seg: &TcpRepr, ack: u32) -> bool {
        if !(seq::gt(ack, self.snd_una) && seq::le(ack, self.snd_max)) {
            return false;
        }
        self.snd_una = ack;
        self.snd_wnd = (seg.window_len as u32) << self.snd_wscale;
        self.max_snd_wnd = self.snd_wnd;
        self.snd_wl1 = seg.seq_number.0 as u32;
        self.snd_wl2 = ack;
        self.handshake_rtt(env);
        self.established(env);
        true
    }

    fn enter_time_wait(&mut self, env: &mut Env) {
        self.state = State::TimeWait;
        // Everything we sent is acknowledged; what we received stays
        // readable until the application has taken it.
        self.snd_buf.clear(env.slab);
        self.snd_queued = 0;
        self.sent.clear();
        if let Some(r) = self.rare_set_mut() {
            r.ooo = Vec::new();
        }
        self.rtx = Rtx::None;
        self.rtx_at = NEVER;
        self.phase_end = env.now.saturating_add(env.cfg.time_wait_us);
    }

    fn peer_fin(&mut self, env: &mut Env) {
        self.rcv_nxt = self.rcv_nxt.wrapping_add(1);
        if let Some(r) = self.rare_set_mut() {
            r.fin_at = None;
        }
        self.flags |= flag::FIN_RCVD | flag::ACK_NOW;
        self.ev |= ev::PEER_FIN;
        let fin_acked = self.flags & flag::FIN_SENT != 0 && self.snd_una == self.snd_max;
        match self.state {
            State::SynReceived | State::Established => self.state = State::CloseWait,
            State::FinWait1 if fin_acked => self.enter_time_wait(env),
            State::FinWait1 => self.state = State::Closing,
            State::FinWait2 => self.enter_time_wait(env),
            _ => {}
        }
    }

    /// Stores payload that starts at `seg_seq` (acceptable, maybe partly
    /// old or beyond the window).
    fn take_data(&mut self, env: &mut Env, seg_seq: u32, payload: &[u8]) {
        let now = env.now;
        let mut s = seg_seq;
        let mut data = payload;
        if seq::lt(s, self.rcv_nxt) {
            let skip = seq::dist(s, self.rcv_nxt) as usize;
            self.rare_mut().dsack = Some((s, self.rcv_nxt));
            data = &data[skip.min(data.len())..];
            s = self.rcv_nxt;
        }
        // Only what fits in the window we offered.
        let right = seq::max(
            self.rcv_adv,
            self.rcv_nxt.wrapping_add(self.rcv_window(env.cfg)),
        );
        if seq::ge(s, right) {
            self.flags |= flag::ACK_NOW;
            return;
        }
        let room = seq::dist(s, right) as usize;
        if data.len() > room {
            data = &data[..room];
        }
        if data.is_empty() {
            self.flags |= flag::ACK_NOW;
            return;
        }
        let len = data.len() as u32;
        let off = self.rcv_ready + seq::dist(self.rcv_nxt, s);
        let in_order = s == self.rcv_nxt;
        let full = self.rare().is_some_and(|r| r.ooo.len() >= MAX_OOO);
        if !in_order && full && !self.ooo_touches(s, s.wrapping_add(len)) {
            self.flags |= flag::ACK_NOW;
            return;
        }
        if !self.rcv_buf.write(env.slab, off, data) {
            env.stats.slab_drops.inc();
            self.flags |= flag::ACK_NOW;
            return;
        }
        self.last_data = now;
        self.rcv_unacked += len;
        if in_order {
            self.rcv_nxt = s.wrapping_add(len);
            self.rcv_ready += len;
            let had_holes = self.rare().is_some_and(|r| !r.ooo.is_empty());
            if had_holes {
                // Ranges that now join the in-order data.
                let mut nxt = self.rcv_nxt;
                let mut joined = 0;
                let ooo = &mut self.rare_mut().ooo;
                while let Some(&(l, r)) = ooo.first() {
                    if seq::gt(l, nxt) {
                        break;
                    }
                    ooo.remove(0);
                    if seq::gt(r, nxt) {
                        joined += seq::dist(nxt, r);
                        nxt = r;
                    }
                }
                if ooo.is_empty() {
                    *ooo = Vec::new();
                }
                self.rcv_nxt = nxt;
                self.rcv_ready += joined;
            }
            self.ev |= ev::READABLE;
            if had_holes {
                self.flags |= flag::ACK_NOW; // a hole filled (RFC 5681 4.2)
            }
            if self.rare().and_then(|r| r.fin_at) == Some(self.rcv_nxt) {
                self.peer_fin(env);
            }
        } else {
            env.stats.ooo_segments.inc();
            self.add_ooo(s, s.wrapping_add(len));
            // Out of order: an ACK at once, one per segment.
            self.flags |= flag::ACK_NOW;
            self.dup_owed = self.dup_owed.saturating_add(1).min(32);
        }
        // The ACK policy: every second full segment, or after the delay.
        let quick = self.quickack > 0;
        match env.cfg.ack_delay_us {
            Some(d) if !quick && self.rcv_unacked < 2 * self.smss as u32 => {
                if self.ack_at == NEVER {
                    self.ack_at = now.saturating_add(d);
                }
            }
            _ => {
                if quick {
                    self.quickack -= 1;
                }
                self.flags |= flag::ACK_NOW;
            }
        }
    }

    fn ooo_touches(&self, l: u32, r: u32) -> bool {
        self.rare().is_some_and(|rare| {
            rare.ooo
                .iter()
                .any(|&(a, b)| seq::le(a, r) && seq::ge(b, l))
        })
    }

    /// Adds [l, r) to the out-of-order ranges, merging neighbours.
    fn add_ooo(&mut self, mut l: u32, mut r: u32) {
        let rare = self.rare_mut();
        let mut i = 0;
        while i < rare.ooo.len() {
            let (a, b) = rare.ooo[i];
            if seq::le(a, r) && seq::ge(b, l) {
                if seq::le(a, l) && seq::ge(b, r) {
                    rare.dsack.get_or_insert((l, r));
                }
                l = seq::min(a, l);
                r = seq::max(b, r);
                rare.ooo.remove(i);
            } else {
                i += 1;
            }
        }
        let at = rare
            .ooo
            .iter()
            .position(|&(a, _)| seq::gt(a, l))
            .unwrap_or(rare.ooo.len());
        rare.ooo.insert(at, (l, r));
        self.ooo_last = l;
    }
}
