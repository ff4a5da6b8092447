//! The smoltcp engine: each connection is one smoltcp TCP socket in a
//! `SocketSet` of its own, fed its frames through the interface, with the
//! hardening smoltcp lacks (RFC 5961 RST checks, dead peers, a handshake
//! timeout that does not close idle connections).

use std::net::SocketAddr;

use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::time::Duration as SmolDuration;
use smoltcp::wire::IpEndpoint;

use super::classify::TcpKey;
use super::conn::{Eng, Report};
use super::device::OneFrame;
use super::{Stack, TcpOpts, EGRESS_PER_CONN};
use crate::buf::PacketBuf;
use crate::error::{Error, Result};
use crate::port::PortQueue;

pub(super) struct SmolConn {
    set: SocketSet<'static>,
    handle: SocketHandle,
    last_state: tcp::State,
    /// What we last acknowledged (our RCV.NXT as the peer knows it) and
    /// the end of what we have sent, from the last segment we sent.
    acked: Option<(u32, u32)>,
    /// [`TcpOpts::dead_peer_ms`].
    dead_peer_ms: u64,
    /// The dead-peer timeout is armed.
    dead_peer_armed: bool,
    /// When our FIN state began (µs), for the dead-peer deadline.
    fin_since: Option<u64>,
    want_writable: bool,
    /// The application declined what it could read because its send
    /// buffer is full ([`SmolConn::await_room`]): no `Readable` until
    /// `Writable` (smoltcp's readiness is a level, so every segment would
    /// offer the same bytes again).
    hold_readable: bool,
}

impl SmolConn {
    fn new(sock: tcp::Socket<'static>, dead_peer_ms: u64) -> Box<SmolConn> {
        let mut set = SocketSet::new(Vec::with_capacity(1));
        let handle = set.add(sock);
        let last_state = set.get::<tcp::Socket>(handle).state();
        Box::new(SmolConn {
            set,
            handle,
            last_state,
            acked: None,
            dead_peer_ms,
            dead_peer_armed: false,
            fin_since: None,
            want_writable: false,
            hold_readable: false,
        })
    }

    fn sock(&mut self) -> &mut tcp::Socket<'static> {
        self.set.get_mut::<tcp::Socket>(self.handle)
    }

    /// Copies as much as fits of what is readable, across the end of the
    /// receive ring (`peek` stops there: an application waiting for a
    /// message that straddled it waited forever).
    pub fn peek(&mut self, out: &mut [u8]) -> usize {
        self.sock().peek_slice(out).unwrap_or(0)
    }

    /// Drops `n` peeked bytes (in two steps when they straddle the end of
    /// the receive ring: `recv` sees one side of it at a time).
    pub fn consume(&mut self, mut n: usize) {
        while n > 0 {
            match self.sock().recv(|b| {
                let k = n.min(b.len());
                (k, k)
            }) {
                Ok(k) if k > 0 => n -= k,
                _ => break,
            }
        }
    }

    /// The peer closed and everything it sent has been read.
    pub fn peer_fin_drained(&self) -> bool {
        let s = self.set.get::<tcp::Socket>(self.handle);
        !s.may_recv()
            && s.recv_queue() == 0
            && matches!(
                s.state(),
                tcp::State::CloseWait
                    | tcp::State::LastAck
                    | tcp::State::Closing
                    | tcp::State::TimeWait
            )
    }

    pub fn readable(&mut self) -> usize {
        self.sock().recv_queue()
    }

    pub fn send(&mut self, data: &[u8]) -> usize {
        let n = self.sock().send_slice(data).unwrap_or(0);
        if n < data.len() {
            self.want_writable = true;
        }
        n
    }

    /// [`crate::tcp::Tcb::await_room`]: true, with `Writable` to follow,
    /// when the send buffer is full while the connection may still send.
    pub fn await_room(&mut self) -> bool {
        if !self.sock().may_send() || self.send_room() > 0 {
            return false;
        }
        self.want_writable = true;
        self.hold_readable = true;
        true
    }

    pub fn send_room(&self) -> usize {
        let s = self.set.get::<tcp::Socket>(self.handle);
        if s.may_send() {
            s.send_capacity() - s.send_queue()
        } else {
            0
        }
    }

    pub fn close(&mut self) {
        self.sock().close();
    }

    pub fn abort(&mut self) {
        self.sock().abort();
    }

    pub fn endpoints(&self) -> Option<(SocketAddr, SocketAddr)> {
        let s = self.set.get::<tcp::Socket>(self.handle);
        let std = |e: Option<IpEndpoint>| e.map(|e| SocketAddr::new(e.addr.into(), e.port));
        Some((std(s.local_endpoint())?, std(s.remote_endpoint())?))
    }

    pub fn state(&self) -> tcp::State {
        self.set.get::<tcp::Socket>(self.handle).state()
    }
}

fn new_socket(opts: &TcpOpts) -> tcp::Socket<'static> {
    let mut s = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; opts.rx_buf]),
        tcp::SocketBuffer::new(vec![0; opts.tx_buf]),
    );
    s.set_nagle_enabled(opts.nagle);
    s.set_ack_delay(opts.ack_delay_ms.map(SmolDuration::from_millis));
    s.set_timeout(Some(SmolDuration::from_millis(opts.timeout_ms)));
    s
}

fn smol_mut(c: &mut super::conn::Conn) -> Option<&mut SmolConn> {
    match &mut c.eng {
        Eng::Smol(s) => Some(s),
        Eng::Own(_) => None,
    }
}

impl<Q: PortQueue> Stack<Q> {
    /// A segment for a smoltcp connection.
    pub(super) fn smol_input(&mut self, idx: u32, buf: Q::Buf, rst: bool) {
        let buf = if rst {
            match self.screen_rst(idx, buf) {
                Some(b) => b,
                None => {
                    self.stats.rst_not_exact.inc();
                    return;
                }
            }
        } else {
            buf
        };
        self.feed_conn(idx, buf);
        self.smol_check(idx, true);
    }

    /// A passive open on a smoltcp listener: a fresh socket in Listen, fed
    /// the SYN.
    pub(super) fn smol_accept(
        &mut self,
        key: TcpKey,
        port: u16,
        opts: &TcpOpts,
        buf: Q::Buf,
    ) -> Option<u32> {
        let mut sock = new_socket(opts);
        if sock.listen(port).is_err() {
            return None;
        }
        let idx = self.insert(
            key,
            Eng::Smol(SmolConn::new(sock, opts.dead_peer_ms)),
            Some(port),
            false,
        );
        self.feed_conn(idx, buf);
        self.smol_check(idx, true);
        Some(idx)
    }

    /// An active open on the smoltcp engine (`key` names the connection:
    /// smoltcp picks the same local address as [`Stack::source_for`]).
    pub(super) fn smol_connect(
        &mut self,
        remote: SocketAddr,
        lport: u16,
        key: TcpKey,
    ) -> Result<u32> {
        let opts = self.cfg.connect;
        let mut sock = new_socket(&opts);
        sock.connect(
            self.iface.context(),
            IpEndpoint::new(remote.ip().into(), remote.port()),
            lport,
        )
        .map_err(|e| Error::Config(format!("connect to {remote}: {e}")))?;
        let dead = self.cfg.connect.dead_peer_ms;
        Ok(self.insert(key, Eng::Smol(SmolConn::new(sock, dead)), None, true))
    }

    fn feed_conn(&mut self, idx: u32, buf: Q::Buf) {
        let Some(c) = self.slots[idx as usize].conn.as_mut().and_then(smol_mut) else {
            return;
        };
        self.tx.last_tcp = None;
        let mut dev = OneFrame {
            rx: Some(buf),
            tx: &mut self.tx,
            caps: &self.caps,
        };
        self.iface
            .poll_ingress_single(self.now, &mut dev, &mut c.set);
        if let Some(t) = self.tx.last_tcp.take() {
            c.acked = Some(t);
        }
    }

    /// RFC 5961 3.2 on top of smoltcp, which resets a connection on any
    /// RST inside the receive window: a RST is acted on only if its
    /// sequence number is exactly the one we last acknowledged. An
    /// in-window RST that is not exact is turned into a pure ACK from far
    /// outside the window, so smoltcp answers it with a challenge ACK
    /// (rate-limited to one per second); a legitimate peer answers that
    /// with an exact RST. Out-of-window RSTs are dropped. Returns the
    /// frame if it should go to the connection as it is.
    fn screen_rst(&mut self, idx: u32, mut buf: Q::Buf) -> Option<Q::Buf> {
        use smoltcp::wire::{EthernetFrame, EthernetProtocol, Ipv4Packet, Ipv6Packet, TcpPacket};
        let Some(c) = self.slots[idx as usize].conn.as_mut().and_then(smol_mut) else {
            return Some(buf);
        };
        let Some((rcv_nxt, snd_max)) = c.acked else {
            // Nothing acknowledged yet (SYN-SENT): smoltcp checks that a
            // RST acknowledges our SYN exactly.
            return Some(buf);
        };
        let window = c.sock().recv_capacity() as u32;
        // In the window but not exact: a pure ACK from far outside it.
        let rewrite = |t: &mut TcpPacket<&mut [u8]>| -> usize {
            t.set_rst(false);
            t.set_psh(false);
            t.set_fin(false);
            t.set_syn(false);
            t.set_ack(true);
            t.set_ack_number(smoltcp::wire::TcpSeqNumber(snd_max as i32));
            t.set_seq_number(smoltcp::wire::TcpSeqNumber(
                rcv_nxt.wrapping_add(1 << 31) as i32
            ));
            t.header_len() as usize
        };
        let mut eth = EthernetFrame::new_unchecked(buf.data_mut());
        let v6 = eth.ethertype() == EthernetProtocol::Ipv6;
        // The classifier checked these headers (and the stack removed any
        // IPv6 extension headers).
        let seq = {
            let p = eth.payload_mut();
            let l4 = if v6 {
                smoltcp::wire::IPV6_HEADER_LEN
            } else {
                Ipv4Packet::new_unchecked(&*p).header_len() as usize
            };
            TcpPacket::new_unchecked(&p[l4..]).seq_number().0 as u32
        };
        if seq == rcv_nxt {
            return Some(buf);
        }
        if seq.wrapping_sub(rcv_nxt) >= window.max(1) {
            return None; // out of the window: dropped silently
        }
        // Checksums are not verified again past the classifier.
        let len = if v6 {
            let mut ip = Ipv6Packet::new_unchecked(eth.payload_mut());
            let n = rewrite(&mut TcpPacket::new_unchecked(ip.payload_mut()));
            ip.set_payload_len(n as u16);
            smoltcp::wire::IPV6_HEADER_LEN + n
        } else {
            let mut ip = Ipv4Packet::new_unchecked(eth.payload_mut());
            let n = rewrite(&mut TcpPacket::new_unchecked(ip.payload_mut()));
            let ip_hl = ip.header_len() as usize;
            ip.set_total_len((ip_hl + n) as u16);
            ip_hl + n
        };
        buf.set_len(14 + len);
        self.feed_conn(idx, buf);
        self.touch(idx);
        None
    }

    /// A smoltcp connection's deadline is due.
    pub(super) fn smol_timer(&mut self, idx: u32) {
        let t = self.now_us;
        let Some(c) = self.slots[idx as usize].conn.as_mut() else {
            return;
        };
        let arp_wait = c.arp_wait;
        let Eng::Smol(s) = &mut c.eng else { return };
        // The deadline may have moved on since it was set (a delayed ACK
        // that a reply carried, an RTO re-armed): smoltcp's deadlines only
        // ever lower ours (see `smol_egress`), so ask it, and just
        // reschedule without an egress pass.
        match self.iface.poll_at(self.now, &s.set) {
            Some(at) if at.total_micros().max(0) as u64 > t => {
                self.lower_timer(idx, at.total_micros() as u64);
            }
            None if !arp_wait && s.last_state == tcp::State::Established => {}
            _ => {
                self.stats.timer_fires.inc();
                self.touch(idx);
            }
        }
    }

    /// Looks at a connection after something happened to it: emits events,
    /// settles the backlog, reaps it when it is over, marks it for egress.
    fn smol_check(&mut self, idx: u32, touch: bool) {
        let Some(c) = self.slots[idx as usize].conn.as_mut() else {
            return;
        };
        let opened = c.opened;
        let Eng::Smol(sc) = &mut c.eng else { return };
        let s = sc.set.get_mut::<tcp::Socket>(sc.handle);
        let state = s.state();
        if !opened && matches!(state, tcp::State::Established | tcp::State::CloseWait) {
            s.set_timeout(None);
        }
        let recv_queue = s.recv_queue();
        let room = s.send_capacity() - s.send_queue();
        use tcp::State::*;
        let prev = sc.last_state;
        sc.last_state = state;
        let mut writable = false;
        if sc.want_writable && room > 0 && (opened || matches!(state, Established | CloseWait)) {
            sc.want_writable = false;
            writable = true;
        }
        if sc.hold_readable && (writable || !s.may_send()) {
            sc.hold_readable = false;
        }
        let readable = recv_queue > 0 && !sc.hold_readable;
        let peer_fin_drained = sc.peer_fin_drained();
        self.report(
            idx,
            Report {
                open: matches!(state, Established | CloseWait | FinWait1 | FinWait2),
                readable,
                writable,
                peer_fin_drained,
            },
        );
        // A connection entry in Listen is a passive open whose SYN was
        // refused, or whose handshake was reset: it is over, unannounced.
        if matches!(state, Closed | TimeWait) {
            let normal = state == TimeWait || matches!(prev, LastAck | TimeWait | Closing);
            self.ended(idx, normal);
        }
        if matches!(state, Closed | Listen) {
            self.reap(idx);
        } else if touch {
            self.touch(idx);
        }
    }

    /// Sends what a smoltcp connection has to send; schedules its next
    /// timer.
    pub(super) fn smol_egress(&mut self, idx: u32) -> usize {
        let gen = self.slots[idx as usize].gen;
        let now = self.now_us;
        let Some(c) = self.slots[idx as usize].conn.as_mut() else {
            return 0;
        };
        c.touched = false;
        let opened = c.opened;
        let (built0, arps0) = (self.tx.built, self.tx.arp_built);
        self.tx.last_tcp = None;
        let Eng::Smol(sc) = &mut c.eng else { return 0 };
        let mut dev = OneFrame {
            rx: None,
            tx: &mut self.tx,
            caps: &self.caps,
        };
        for _ in 0..EGRESS_PER_CONN {
            if self.iface.poll_egress(self.now, &mut dev, &mut sc.set)
                == smoltcp::iface::PollResult::None
            {
                break;
            }
        }
        self.stats.conn_polls.inc();
        if let Some(t) = self.tx.last_tcp.take() {
            sc.acked = Some(t);
        }
        let dead_peer_ms = sc.dead_peer_ms;
        let s = sc.set.get_mut::<tcp::Socket>(sc.handle);
        let state = s.state();
        let mut abort = false;
        if opened {
            // Dead peers. With data unacknowledged: smoltcp's timeout,
            // armed only then (it counts from the peer's last segment, or
            // from our first transmission after an idle spell), since it
            // would otherwise close idle connections too.
            let waiting = s.send_queue() > 0;
            if waiting != sc.dead_peer_armed {
                sc.dead_peer_armed = waiting;
                s.set_timeout(waiting.then(|| SmolDuration::from_millis(dead_peer_ms)));
            }
            // After our FIN: a deadline of our own from when we closed
            // (smoltcp's clock may be stale after an idle spell, and
            // FIN-WAIT-2 has no timer at all).
            use tcp::State::*;
            if matches!(state, FinWait1 | FinWait2 | Closing | LastAck) {
                let deadline = *sc.fin_since.get_or_insert(now) + dead_peer_ms * 1000;
                if now >= deadline {
                    s.abort();
                    abort = true;
                } else {
                    if let Some(e) = c.timer.lower(idx, deadline) {
                        self.timers.insert(e);
                    }
                }
            }
        }
        let s = sc.set.get::<tcp::Socket>(sc.handle);
        let changed =
            state != sc.last_state || (sc.want_writable && s.send_capacity() > s.send_queue());
        let wants_send =
            s.send_queue() > 0 || matches!(state, tcp::State::SynSent | tcp::State::SynReceived);
        // Waiting for a neighbour? smoltcp then sends an ARP request (or,
        // rate-limited, nothing at all) and silences the socket for 1 s.
        // Such a connection is woken as soon as an ARP frame arrives
        // (at most once in the list).
        let arp_sent = self.tx.arp_built != arps0;
        let sent_nothing = self.tx.built == built0;
        if wants_send && (arp_sent || sent_nothing) && !c.arp_wait {
            c.arp_wait = true;
            self.arp_waiters.push((idx, gen));
        }
        if let Some(at) = self.iface.poll_at(self.now, &sc.set) {
            let at = at.total_micros().max(0) as u64;
            self.lower_timer(idx, at);
        }
        if changed {
            // Egress or a timer changed the state (timeout, TIME-WAIT over,
            // the last ACK of a close): tell the application, reap.
            self.smol_check(idx, false);
        }
        if abort {
            // The RST goes out on the next pass of this iteration.
            self.touch(idx);
        }
        1
    }
}
