//! What a connection sends: control segments, retransmissions, new data
//! cut to the MSS and limited by the peer's window and the congestion
//! window, Nagle (RFC 9293 3.7.4), sender-side silly-window avoidance,
//! delayed and immediate ACKs with SACK and D-SACK blocks, zero-window
//! probes and keepalives.

use smoltcp::wire::{TcpControl, TcpRepr, TcpSeqNumber, TcpTimestampRepr};

use super::flight::{sf, Sent};
use super::seq;
use super::tcb::{flag, Env, Rtx, Seg, State, Tcb, NEVER};

impl Tcb {
    /// The next segment to send now, if any. Call until `None` (the stack
    /// bounds how many per pass); copy each segment's payload with
    /// [`Tcb::copy_payload`].
    pub fn poll_output(&mut self, env: &mut Env) -> Option<Seg> {
        let s = self.next_output(env);
        if s.is_none() && self.flags & flag::RARE != 0 {
            self.settle_rare();
        }
        s
    }

    fn next_output(&mut self, env: &mut Env) -> Option<Seg> {
        let now = env.now;
        if let Some((s, a)) = self.rare_set_mut().and_then(|r| r.rst_reply.take()) {
            return Some(self.rst_seg(s, a));
        }
        if self.state == State::Closed {
            return None;
        }
        if self.flags & flag::RST_NOW != 0 {
            self.flags &= !flag::RST_NOW;
            let s = self.rst_seg(self.snd_max, Some(self.rcv_nxt));
            let reason = self.reason;
            self.finish(env.slab, reason);
            return Some(s);
        }
        if self.flags & flag::SYN_NOW != 0 {
            self.flags &= !flag::SYN_NOW;
            return Some(self.syn_seg(env));
        }
        if matches!(self.state, State::SynSent) {
            return None;
        }
        if self.state == State::SynReceived {
            // Only the SYN-ACK (above) and ACK-less replies until the
            // handshake completes.
            return self.pure_ack_if_due(env);
        }
        if self.flags & flag::TLP_NOW != 0 {
            self.flags &= !flag::TLP_NOW;
            if let Some(s) = self.tlp_probe(env) {
                return Some(s);
            }
        }
        if let Some(s) = self.retransmission(env) {
            return Some(s);
        }
        if let Some(s) = self.new_data(env) {
            return Some(s);
        }
        if self.flags & flag::PROBE_NOW != 0 {
            self.flags &= !flag::PROBE_NOW;
            let usable = self.usable_window();
            if self.unsent() > 0 && usable > 0 {
                // The override timeout of sender-side SWS avoidance (RFC
                // 9293 3.8.6.2.1): send what the small window takes.
                let len = self.unsent().min(usable).min(self.smss as u32);
                return Some(self.send_new(env, len));
            }
            if self.snd_wnd == 0 && self.unsent() > 0 {
                env.stats.window_probes.inc();
                // Linux's probe: an old sequence number draws an ACK with
                // the current window; retried with backoff while the
                // window stays shut.
                self.persist_n = self.persist_n.saturating_add(1);
                let backoff = self.rto() << self.persist_n.min(6);
                self.arm(Rtx::Persist, now.saturating_add(backoff));
                return Some(self.probe_seg(env));
            }
        }
        self.ensure_timer(now);
        if self.flags & flag::KEEPALIVE_NOW != 0 {
            self.flags &= !flag::KEEPALIVE_NOW;
            env.stats.keepalives.inc();
            return Some(self.probe_seg(env));
        }
        self.pure_ack_if_due(env)
    }

    /// Copies `dst.len()` payload bytes of a segment from the send queue.
    pub fn copy_payload(&self, slab: &super::buf::Slab, off: u32, dst: &mut [u8]) {
        self.snd_buf.copy_out(slab, off, dst);
    }

    /// Bytes queued and never sent.
    pub(super) fn unsent(&self) -> u32 {
        let sent = seq::dist(self.snd_base, self.snd_nxt).min(self.snd_queued);
        self.snd_queued - sent
    }

    /// SACK blocks waiting to be reported (D-SACK first), at most three.
    fn sack_blocks_pending(&self) -> usize {
        match self.rare() {
            Some(r) if self.flags & flag::SACK_OK != 0 => {
                (r.dsack.is_some() as usize + r.ooo.len()).min(3)
            }
            _ => 0,
        }
    }

    /// Option bytes `n` SACK blocks add to a segment beyond what the MSS
    /// already leaves for the timestamp option.
    fn sack_bytes(&self, n: usize) -> u32 {
        match (n, self.flags & flag::TS_OK != 0) {
            (0, _) => 0,
            // Timestamp (10) + SACK (2 + 8n) = 12 + 8n: the 12 are in the MSS.
            (n, true) => 8 * n as u32,
            // SACK alone: 2 + 8n, padded to 4.
            (n, false) => 4 + 8 * n as u32,
        }
    }

    /// The header of a segment carrying `payload` bytes. SACK blocks go in
    /// as far as they fit in the MSS beside the payload (a full-sized
    /// segment with blocks would exceed the path MTU and be dropped); if
    /// any had to stay out, a pure ACK carrying them follows.
    fn header(
        &mut self,
        env: &mut Env,
        seq_no: u32,
        control: TcpControl,
        payload: u32,
    ) -> TcpRepr<'static> {
        let now = env.now;
        let wnd = self.rcv_window(env.cfg);
        // Never shrink the right edge we advertised (RFC 9293 3.8.6.2.2).
        let right = seq::max(self.rcv_nxt.wrapping_add(wnd), self.rcv_adv);
        let wnd = seq::dist(self.rcv_nxt, right);
        let shift = if self.flags & flag::WS_OK != 0 {
            self.rcv_wscale
        } else {
            0
        };
        // Rounded up: rounding down would announce an edge left of one
        // announced before, the peer may already have sent up to it, and
        // its pure ACKs (which carry that sequence number) would then
        // fall outside the window and go unprocessed. This cost a stall
        // of one RTO backoff series on every full window at 1% loss. The
        // few bytes it may promise beyond the limit are accepted (the
        // limit bounds memory, it is not an allocation).
        let unit = (1u32 << shift) - 1;
        let scaled = (wnd.saturating_add(unit) >> shift).min(0xffff);
        self.rcv_adv = seq::max(self.rcv_adv, self.rcv_nxt.wrapping_add(scaled << shift));
        let mut sack_ranges = [None; 3];
        let pending = self.sack_blocks_pending();
        let room = (self.smss as u32).saturating_sub(payload);
        let fit = (0..=pending)
            .rev()
            .find(|&n| self.sack_bytes(n) <= room)
            .unwrap_or(0);
        let omitted = fit < pending;
        // `fit > 0` only when blocks are pending, so the fields are set.
        let last = self.ooo_last;
        if let Some(rare) = self.rare_set_mut().filter(|_| fit > 0) {
            let mut n = 0;
            if let Some(d) = rare.dsack.take() {
                sack_ranges[0] = Some(d);
                n = 1;
            }
            // The block that changed last first (RFC 2018 4), then the
            // others from the highest down.
            if n < fit {
                if let Some(&r) = rare.ooo.iter().find(|r| r.0 == last) {
                    sack_ranges[n] = Some(r);
                    n += 1;
                }
            }
            for &r in rare.ooo.iter().rev() {
                if n >= fit {
                    break;
                }
                if r.0 != last {
                    sack_ranges[n] = Some(r);
                    n += 1;
                }
            }
        }
        let timestamp = (self.flags & flag::TS_OK != 0)
            .then(|| TcpTimestampRepr::new(self.ts_val(now), self.ts_recent));
        self.flags &= !(flag::ACK_NOW | flag::WND_UPDATE);
        if omitted {
            self.flags |= flag::ACK_NOW;
        }
        self.ack_at = NEVER;
        self.rcv_unacked = 0;
        TcpRepr {
            src_port: self.lport,
            dst_port: self.rport,
            control,
            seq_number: TcpSeqNumber(seq_no as i32),
            ack_number: Some(TcpSeqNumber(self.rcv_nxt as i32)),
            window_len: scaled as u16,
            window_scale: None,
            max_seg_size: None,
            sack_permitted: false,
            sack_ranges,
            timestamp,
            payload: &[],
        }
    }

    fn seg(repr: TcpRepr<'static>, data_off: u32, data_len: u32) -> Seg {
        Seg {
            repr,
            data_off,
            data_len,
        }
    }

    fn rst_seg(&self, seq_no: u32, ack: Option<u32>) -> Seg {
        Self::seg(
            TcpRepr {
                src_port: self.lport,
                dst_port: self.rport,
                control: TcpControl::Rst,
                seq_number: TcpSeqNumber(seq_no as i32),
                ack_number: ack.map(|a| TcpSeqNumber(a as i32)),
                ..super::wire::BLANK
            },
            0,
            0,
        )
    }

    fn syn_seg(&mut self, env: &mut Env) -> Seg {
        let now = env.now;
        let cfg = env.cfg;
        let passive = self.flags & flag::PASSIVE != 0;
        // Offer options in a SYN; echo only what the peer offered in a
        // SYN-ACK (RFC 7323 2.2, RFC 2018 2).
        let ws_offer = if passive {
            self.flags & flag::WS_OK != 0
        } else {
            cfg.window_scale
        };
        let ts_offer = if passive {
            self.flags & flag::TS_OK != 0
        } else {
            cfg.timestamps
        };
        let sack_offer = if passive {
            self.flags & flag::SACK_OK != 0
        } else {
            cfg.sack
        };
        let wscale = Self::our_wscale(cfg);
        if !passive && ws_offer {
            self.rcv_wscale = wscale;
        }
        self.snd_nxt = self.iss.wrapping_add(1);
        self.snd_max = seq::max(self.snd_max, self.snd_nxt);
        if self.rtx == Rtx::None {
            self.arm_rto(now);
        }
        if self.syn_xmit == 0 {
            self.syn_xmit = now.max(1);
        } else {
            self.syn_retransmitted = true;
            env.stats.retransmits.inc();
        }
        // The SYN's window is never scaled (RFC 7323 2.2).
        let wnd = cfg.rcv_wnd.min(0xffff) as u16;
        if passive {
            self.rcv_adv = self.rcv_nxt.wrapping_add(wnd as u32);
        }
        Self::seg(
            TcpRepr {
                src_port: self.lport,
                dst_port: self.rport,
                control: TcpControl::Syn,
                seq_number: TcpSeqNumber(self.iss as i32),
                ack_number: passive.then_some(TcpSeqNumber(self.rcv_nxt as i32)),
                window_len: wnd,
                window_scale: ws_offer.then_some(wscale),
                max_seg_size: Some(cfg.mss),
                sack_permitted: sack_offer,
                sack_ranges: [None; 3],
                timestamp: ts_offer.then(|| {
                    TcpTimestampRepr::new(
                        self.ts_val(now),
                        if passive { self.ts_recent } else { 0 },
                    )
                }),
                payload: &[],
            },
            0,
            0,
        )
    }

    fn probe_seg(&mut self, env: &mut Env) -> Seg {
        let s = self.snd_una.wrapping_sub(1);
        let h = self.header(env, s, TcpControl::None, 0);
        Self::seg(h, 0, 0)
    }

    fn pure_ack_if_due(&mut self, env: &mut Env) -> Option<Seg> {
        if self.dup_owed > 1 {
            // All but the last owed duplicate ACK; the last goes below.
            self.dup_owed -= 1;
            self.flags |= flag::ACK_NOW;
        } else {
            self.dup_owed = 0;
        }
        if self.flags & (flag::ACK_NOW | flag::WND_UPDATE) == 0 {
            return None;
        }
        let h = self.header(env, self.acceptable_seq(), TcpControl::None, 0);
        Some(Self::seg(h, 0, 0))
    }

    /// The sequence number of a pure ACK: `snd_nxt`, unless that is beyond
    /// the peer's window (data sent before the window shrank), when the
    /// window's right edge is used, so a peer with a closed window still
    /// finds the ACK acceptable (as Linux's `tcp_acceptable_seq`).
    fn acceptable_seq(&self) -> u32 {
        let right = self.snd_una.wrapping_add(self.snd_wnd);
        if seq::le(self.snd_nxt, right) {
            self.snd_nxt
        } else {
            right
        }
    }

    /// Builds a data segment for `[start, end)` (an `end` one past the
    /// data means a FIN rides along).
    fn data_seg(&mut self, env: &mut Env, start: u32, end: u32, fin: bool) -> Seg {
        let off = seq::dist(self.snd_base, start);
        let len = seq::dist(start, end) - fin as u32;
        let control = if fin {
            TcpControl::Fin
        } else if len > 0 && seq::dist(self.snd_base, end) == self.snd_queued {
            TcpControl::Psh
        } else {
            TcpControl::None
        };
        let h = self.header(env, start, control, len);
        Self::seg(h, off, len)
    }

    /// A lost record, if the pipe leaves room for it (in fast recovery the
    /// room is PRR's, which always lets the first retransmission out:
    /// `prr.rs`).
    fn retransmission(&mut self, env: &mut Env) -> Option<Seg> {
        let k = self.next_lost()?;
        let s = self.sent.get(k);
        let len = seq::dist(s.start, s.end);
        let pipe = self.pipe();
        if pipe > 0 && pipe.saturating_add(len) > self.cc.cwnd().max(self.smss as u32) {
            return None;
        }
        self.retransmitted(env, k);
        // The timer runs from the oldest segment's latest transmission: it
        // restarts when that segment goes out again (as in Linux), else
        // in recovery it would run from the last advance of the ACK and
        // could fire while the repair's ACK is on its way.
        if self.rtx == Rtx::None || self.rtx == Rtx::Tlp || (k == 0 && self.rtx == Rtx::Rto) {
            self.arm_rto(env.now);
        }
        let fin = s.flags & sf::FIN != 0;
        Some(self.data_seg(env, s.start, s.end, fin))
    }

    /// The tail-loss probe: new data if the window allows, else the last
    /// record again (RFC 8985 7.3).
    fn tlp_probe(&mut self, env: &mut Env) -> Option<Seg> {
        let usable = self.usable_window();
        if self.unsent() > 0 && usable > 0 {
            let len = self.unsent().min(self.smss as u32).min(usable);
            let s = self.send_new(env, len);
            self.rare_mut().tlp_end = Some(self.snd_max);
            self.flags &= !flag::TLP_RTX;
            self.arm_rto(env.now);
            return Some(s);
        }
        let k = self.sent.len().checked_sub(1)?;
        let s = self.sent.get(k);
        if s.flags & sf::SACKED != 0 {
            return None;
        }
        self.retransmitted(env, k);
        self.rare_mut().tlp_end = Some(self.snd_max);
        self.flags |= flag::TLP_RTX;
        self.arm_rto(env.now);
        let fin = s.flags & sf::FIN != 0;
        Some(self.data_seg(env, s.start, s.end, fin))
    }

    /// The peer's window left beyond what is in flight.
    fn usable_window(&self) -> u32 {
        let right = self.snd_una.wrapping_add(self.snd_wnd);
        if seq::ge(self.snd_nxt, right) {
            0
        } else {
            seq::dist(self.snd_nxt, right)
        }
    }

    /// New data (with a FIN when it ends the stream), or a FIN alone.
    fn new_data(&mut self, env: &mut Env) -> Option<Seg> {
        let unsent = self.unsent();
        let closing = self.flags & flag::CLOSE_REQ != 0 && self.flags & flag::FIN_SENT == 0;
        if unsent == 0 {
            if closing && seq::dist(self.snd_base, self.snd_nxt) >= self.snd_queued {
                return Some(self.send_fin(env));
            }
            return None;
        }
        let usable = self.usable_window();
        if usable == 0 {
            if self.snd_una == self.snd_max && self.rtx != Rtx::Persist {
                // Nothing in flight to bring a window update: probe.
                self.persist_n = 0;
                let at = env.now.saturating_add(self.rto());
                self.arm(Rtx::Persist, at);
            }
            return None;
        }
        let pipe = self.pipe();
        let cwnd = self.cc.cwnd();
        if pipe >= cwnd {
            return None;
        }
        // Room for the SACK blocks we owe, so they ride along.
        let mss = (self.smss as u32 - self.sack_bytes(self.sack_blocks_pending())).max(64);
        let len = unsent.min(mss).min(usable).min(cwnd - pipe);
        if len < mss && len < unsent {
            // Sender silly-window avoidance (RFC 9293 3.8.6.2.1): wait for
            // a full segment unless half the peer's largest window is open;
            // with nothing in flight, the persist timer overrides.
            if len < self.max_snd_wnd / 2 || self.snd_una != self.snd_max {
                if self.snd_una == self.snd_max && self.rtx != Rtx::Persist {
                    self.persist_n = 0;
                    let at = env.now.saturating_add(self.rto());
                    self.arm(Rtx::Persist, at);
                }
                return None;
            }
        }
        if len < mss && env.cfg.nagle && self.snd_una != self.snd_max && !closing {
            return None; // Nagle: one small segment in flight at a time
        }
        Some(self.send_new(env, len))
    }

    fn send_new(&mut self, env: &mut Env, len: u32) -> Seg {
        let start = self.snd_nxt;
        let data_end = start.wrapping_add(len);
        let fin = self.flags & flag::CLOSE_REQ != 0
            && seq::dist(self.snd_base, data_end) == self.snd_queued;
        let end = data_end.wrapping_add(fin as u32);
        self.record(env, start, end, fin);
        self.last_data = env.now;
        self.data_seg(env, start, end, fin)
    }

    fn send_fin(&mut self, env: &mut Env) -> Seg {
        let start = self.snd_nxt;
        let end = start.wrapping_add(1);
        self.record(env, start, end, true);
        self.data_seg(env, start, end, true)
    }

    /// Remembers a first transmission and moves `snd_nxt`.
    fn record(&mut self, env: &mut Env, start: u32, end: u32, fin: bool) {
        let now = env.now;
        if self.snd_una == self.snd_max && now.saturating_sub(self.last_send) > self.rto() {
            // Restart after idle (RFC 5681 4.1).
            if self.last_send != 0 {
                self.cc.on_idle_restart(now);
            }
        }
        self.last_send = now;
        self.prr_sent(seq::dist(start, end));
        if fin {
            self.flags |= flag::FIN_SENT;
        }
        self.sent.push(Sent {
            start,
            end,
            xmit: now,
            flags: if fin { sf::FIN } else { 0 },
        });
        self.snd_nxt = end;
        self.snd_max = seq::max(self.snd_max, end);
        if self.rtx == Rtx::None || self.rtx == Rtx::Persist {
            self.arm_loss_timer(now);
        }
    }
}
