//! SYN cookies (RFC 4987) for the bypass engine: a SYN that finds its
//! listener's backlog full is answered with a SYN-ACK whose sequence
//! number encodes what the connection needs, and nothing is kept; the
//! ACK that returns a valid cookie rebuilds the connection.

use super::classify::TcpKey;
use super::conn::Eng;
use smoltcp::wire::{TcpControl, TcpRepr, TcpSeqNumber, TcpTimestampRepr};

use super::engine::{family_cfg, parse, OwnConn};
use super::Stack;
use crate::buf::PacketBuf;
use crate::port::PortQueue;
use crate::tcp::syncookie::CookieOpts;
use crate::tcp::Tcb;

impl<Q: PortQueue> Stack<Q> {
    /// Answers a SYN (`key` names its 4-tuple) with a SYN cookie (RFC
    /// 4987): a SYN-ACK whose sequence number encodes what the connection
    /// needs; nothing kept.
    pub(super) fn send_cookie(&mut self, cfg: u16, key: TcpKey, buf: Q::Buf) {
        let now = self.now_us;
        let Some(peer) = self.peer_of(key) else {
            return;
        };
        let own = &self.own;
        let c = &own.cfgs[family_cfg(cfg, peer.is_v6()) as usize];
        let Some((repr, mac)) = parse(buf.data(), |w, syn| {
            let (local, remote) = peer.sockets(syn.dst_port, syn.src_port);
            let opts = CookieOpts {
                mss: syn.max_seg_size.unwrap_or(536).min(c.mss),
                wscale: syn.window_scale.filter(|_| c.window_scale),
                sack: syn.sack_permitted && c.sack,
                timestamps: syn.timestamp.is_some() && c.timestamps,
            };
            let isn = own
                .cookies
                .make(local, remote, syn.seq_number.0 as u32, opts, now);
            let ts_clock = ((now / 1000) as u32).wrapping_add(own.ts_offset(local, remote));
            let timestamp = syn
                .timestamp
                .filter(|_| opts.timestamps)
                .map(|t| TcpTimestampRepr::new(own.cookies.tsval(opts, ts_clock), t.tsval));
            let repr = TcpRepr {
                src_port: syn.dst_port,
                dst_port: syn.src_port,
                control: TcpControl::Syn,
                seq_number: TcpSeqNumber(isn as i32),
                ack_number: Some(TcpSeqNumber(
                    (syn.seq_number.0 as u32).wrapping_add(1) as i32
                )),
                window_len: c.rcv_wnd.min(0xffff) as u16,
                window_scale: opts.wscale.map(|_| Tcb::wscale_for(c)),
                max_seg_size: Some(c.mss),
                sack_permitted: opts.sack,
                sack_ranges: [None; 3],
                timestamp,
                payload: &[],
            };
            (repr, w.src_mac)
        }) else {
            return;
        };
        drop(buf);
        self.stats.syn_cookies_sent.inc();
        self.emit_segment(mac, peer, &repr, 0, |_| {});
    }

    /// An ACK for no connection on a listener that answers with cookies:
    /// a valid cookie rebuilds the connection. Returns the frame back if
    /// it is not one.
    pub(super) fn cookie_ack(&mut self, key: TcpKey, port: u16, buf: Q::Buf) -> Option<Q::Buf> {
        let l = self.listeners.get(&port)?;
        if l.opts.on_full != super::BacklogFull::Cookie {
            return Some(buf);
        }
        let Some(peer) = self.peer_of(key) else {
            return Some(buf);
        };
        let cfg = family_cfg(l.cfg, peer.is_v6());
        if self.conn_count() >= self.cfg.max_conns {
            self.stats.table_full.inc();
            return None;
        }
        let now = self.now_us;
        let own = &mut self.own;
        let stats = &self.stats.tcp;
        let made = parse(buf.data(), |w, seg| {
            let ack = seg.ack_number?.0 as u32;
            if seg.control == TcpControl::Syn || seg.control == TcpControl::Rst {
                return None;
            }
            let (local, remote) = peer.sockets(seg.dst_port, seg.src_port);
            let tsecr = seg.timestamp.map(|t| t.tsecr);
            let opts =
                own.cookies
                    .check(local, remote, seg.seq_number.0 as u32, ack, tsecr, now)?;
            let tso = own.ts_offset(local, remote);
            let mut env = own.env(stats, cfg, now);
            let mut tcb = Tcb::from_cookie(
                &mut env,
                seg,
                ack.wrapping_sub(1),
                tso,
                opts.mss,
                opts.wscale,
                opts.sack,
                opts.timestamps,
            );
            // The ACK may carry data already.
            tcb.input(&mut env, seg);
            Some((tcb, w.src_mac))
        })
        .flatten();
        let Some((tcb, mac)) = made else {
            self.stats.syn_cookies_bad.inc();
            return Some(buf);
        };
        drop(buf);
        self.stats.syn_cookies_ok.inc();
        let conn = OwnConn::new(tcb, cfg, Some(mac));
        let idx = self.insert(key, Eng::Own(conn), None, false);
        self.own_after(idx, true);
        None
    }
}
