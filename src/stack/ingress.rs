//! The receive side of the loop: a burst is classified (headers and table
//! lines prefetched for the whole burst first), steered to its core when
//! the stack is sharded, and dispatched: to a connection's engine, to the
//! listeners, to ARP and neighbour discovery, to UDP, or to smoltcp's
//! answer for a segment of no connection.

use super::*;

/// Lines of each received frame prefetched before the burst is
/// classified. Two lines hold the headers; a request of 64 bytes with
/// timestamps ends in the third (130 bytes). With thousands of connections
/// a frame waits in the ring long enough to leave the sender's L2, and
/// the checksum's read of the third line was the largest single stall
/// (`bench tcp-rr` at 16,384 connections, alternated runs: 2 lines
/// 896k-1,075k tx/s, 4 lines 1,199k-1,289k). Longer frames are read in
/// order, which the hardware prefetcher follows.
const FRAME_PREFETCH_LINES: usize = 4;

/// While a frame is processed, the connection block of the frame this far
/// behind it is prefetched (its table line was prefetched with the burst's
/// headers, so finding it does not wait).
const SLOT_PREFETCH_AHEAD: usize = 2;

/// The IPv4 connection-table key of a classified frame, if it has one.
fn v4_key(class: &Result<Class, Reject>) -> Option<u64> {
    match class {
        Ok(Class::Tcp {
            key: TcpKey::V4(k), ..
        }) => Some(*k),
        _ => None,
    }
}

impl<Q: PortQueue> Stack<Q> {
    /// Receives one burst and runs it through the stack; returns the number
    /// of frames received.
    pub fn poll_rx(&mut self, now: Instant) -> usize {
        self.set_now(now);
        let mut done = 0;
        if self.shard.is_some() {
            done += self.poll_steered();
        }
        let mut burst = crate::buf::Burst::new();
        let n = self.tx.queue.rx_burst(&mut burst);
        if n == 0 {
            return done;
        }
        self.stats.rx_packets.add(n as u64);
        self.stats
            .rx_bytes
            .add(burst.iter().map(|b| b.len() as u64).sum());
        if self.shard.is_none() {
            self.ingress_burst(burst);
            return done + n;
        }
        let mut local = crate::buf::Burst::new();
        for buf in burst {
            if let Some(b) = self.route(buf) {
                local.push(b);
            }
        }
        self.ingress_burst(local);
        done + n
    }

    /// Classifies a burst with its headers and its connections' table
    /// lines prefetched (their cache misses then overlap: see
    /// [`crate::hint`]), then processes it in order, prefetching the
    /// connection block of the frame [`SLOT_PREFETCH_AHEAD`] ahead.
    /// (Prefetching every frame's block right after the burst was
    /// classified waited on the table lines and measured no faster;
    /// this way, at 16,384 connections, 1.09M -> 1.24M tx/s, medians of
    /// five alternated runs.)
    pub(super) fn ingress_burst(&mut self, mut burst: crate::buf::Burst<Q::Buf>) {
        let mut classes = arrayvec::ArrayVec::<Result<Class, Reject>, { crate::buf::BURST }>::new();
        // The first lines of the whole burst (written by another core or a
        // device, so not in this core's cache): the headers and, for
        // small segments, the payload the checksum and the copy read.
        for buf in burst.iter() {
            crate::hint::prefetch_bytes(buf.data(), FRAME_PREFETCH_LINES);
        }
        for buf in burst.iter_mut() {
            let class = self.classify(buf);
            if let Some(k) = v4_key(&class) {
                self.table.prefetch(k);
            }
            classes.push(class);
        }
        for (i, buf) in burst.into_iter().enumerate() {
            let ahead = classes.get(i + SLOT_PREFETCH_AHEAD).and_then(v4_key);
            if let Some(idx) = ahead.and_then(|k| self.table.get(k)) {
                self.prefetch_slot(idx);
            }
            self.dispatch(buf, classes[i]);
        }
    }

    /// Sends a frame received on this core to where it is processed;
    /// returns it when that is here.
    pub(super) fn route(&mut self, buf: Q::Buf) -> Option<Q::Buf> {
        let Some(sh) = self.shard.as_ref() else {
            return Some(buf);
        };
        match sh.route(buf.data()) {
            Route::Local => Some(buf),
            Route::To(core) => {
                match sh.send(core, buf) {
                    Ok(()) => self.stats.steered_out.inc(),
                    Err(_dropped) => self.stats.steer_drops.inc(),
                }
                None
            }
            Route::Arp => {
                let queue = &mut self.tx.queue;
                let (sent, dropped) = sh.replicate_arp(buf.data(), || queue.alloc());
                self.stats.arp_copies_out.add(sent);
                if dropped > 0 {
                    self.stats.arp_copy_drops.add(dropped);
                }
                Some(buf)
            }
        }
    }

    /// Processes the frames other cores handed to this one.
    pub(super) fn poll_steered(&mut self) -> usize {
        let mut msgs = arrayvec::ArrayVec::<Msg<Q::Buf>, { crate::buf::BURST }>::new();
        if let Some(sh) = self.shard.as_ref() {
            sh.drain(&mut msgs);
        }
        let n = msgs.len();
        let mut frames = crate::buf::Burst::new();
        for m in msgs {
            frames.push(match m {
                Msg::Frame(b) => {
                    self.stats.steered_in.inc();
                    b
                }
                Msg::Arp(b) => {
                    self.stats.arp_copies_in.inc();
                    b
                }
            });
        }
        self.ingress_burst(frames);
        n
    }

    pub(super) fn classify(&self, buf: &mut Q::Buf) -> Result<Class, Reject> {
        let verify = Verify::for_frame(buf.rx_checksum(), self.verify_checksums);
        let class = classify_with(buf.data(), &self.ours, verify);
        if class.is_ok() {
            // IPv6 extension headers, checked: smoltcp knows none of them.
            if let Some(n) = strip_ext_headers(buf.data_mut()) {
                buf.set_len(n);
            }
        }
        class
    }

    /// Processes a classified frame.
    pub(super) fn dispatch(&mut self, buf: Q::Buf, class: Result<Class, Reject>) {
        match class {
            Err(r) => {
                self.stats.reject(r);
                if r == Reject::Unsupported {
                    self.icmp6_error(&buf);
                }
            }
            Ok(Class::Arp) => {
                self.own.arp.learn_from(buf.data(), self.now_us);
                self.feed_empty(buf);
                self.wake_neighbour_waiters();
            }
            Ok(Class::Nd) => {
                self.own.nd.learn_from(buf.data(), &self.ours, self.now_us);
                self.feed_empty(buf);
                self.wake_neighbour_waiters();
            }
            Ok(Class::Icmp) => {
                if let Some(m) = pmtu::too_big(buf.data(), &self.ours) {
                    self.path_mtu(m);
                }
                self.feed_empty(buf);
            }
            Ok(Class::Tcp {
                key,
                dst_port,
                syn,
                rst,
            }) => {
                if let Some(idx) = self.lookup(key) {
                    match self.slots[idx as usize].conn.as_ref().map(|c| &c.eng) {
                        Some(Eng::Own(_)) => self.own_input(idx, buf),
                        _ => self.smol_input(idx, buf, rst),
                    }
                    return;
                }
                let buf = if self.in_time_wait(key) {
                    match self.time_wait_input(key, buf) {
                        Some(b) => b, // a SYN that may open a new connection
                        None => return,
                    }
                } else {
                    buf
                };
                match self.listeners.get(&dst_port).map(|l| l.opts.tcp.engine) {
                    Some(_) if syn && !rst => self.accept(key, dst_port, buf),
                    Some(TcpEngine::Bypass) if !syn && !rst => {
                        if let Some(b) = self.cookie_ack(key, dst_port, buf) {
                            self.no_conn(b);
                        }
                    }
                    _ => self.no_conn(buf),
                }
            }
            Ok(Class::Udp { dst_port }) => self.udp_ingress(dst_port, buf),
        }
    }

    /// A neighbour may have been learnt (ARP, neighbour discovery): wake
    /// the connections that waited for one.
    pub(super) fn wake_neighbour_waiters(&mut self) {
        for (idx, gen) in std::mem::take(&mut self.arp_waiters) {
            if let Some(c) = self.live_mut(idx, gen) {
                c.arp_wait = false;
                self.touch(idx);
            }
        }
    }

    /// Sends the ICMPv6 Parameter Problem owed for a refused IPv6 packet,
    /// if any and if the rate limit allows (see [`icmp6`]).
    #[cold]
    pub(super) fn icmp6_error(&mut self, buf: &Q::Buf) {
        let Some(why) = icmp6::owed(buf.data(), &self.ours) else {
            return;
        };
        if !self.icmp6_limit.allow(self.now_us) {
            self.stats.icmp6_errors_limited.inc();
            return;
        }
        // From the address it was sent to if that is ours, else from the
        // one smoltcp would use towards the sender.
        let dst = smoltcp::wire::Ipv6Packet::new_checked(
            smoltcp::wire::EthernetFrame::new_checked(buf.data()).map_or(&[][..], |e| e.payload()),
        )
        .ok()
        .map(|p| (p.src_addr(), p.dst_addr()));
        let Some((peer, to)) = dst else { return };
        let src = if self.ours.has_v6(to) {
            to
        } else {
            match self.source_for(peer.into()) {
                Some(IpAddr::V6(a)) => a,
                _ => return,
            }
        };
        let Some(mut b) = self.tx.queue.alloc() else {
            self.stats.tx_no_buffer.inc();
            return;
        };
        let n = icmp6::param_problem(b.room_mut(), buf.data(), self.mac, src, why);
        if n > 0 {
            b.set_len(n);
            self.stats.icmp6_errors_tx.inc();
            self.tx.push(b);
        }
    }

    /// The connection a key names.
    #[inline]
    pub(super) fn lookup(&self, key: TcpKey) -> Option<u32> {
        match key {
            TcpKey::V4(k) => self.table.get(k),
            TcpKey::V6(k) => self.table6.get(&k).copied(),
        }
    }

    /// A segment for no connection: smoltcp answers as TCP requires (RST,
    /// nothing for a RST).
    pub(super) fn no_conn(&mut self, buf: Q::Buf) {
        self.stats.no_conn.inc();
        self.feed_empty(buf);
    }

    pub(super) fn feed_empty(&mut self, buf: Q::Buf) {
        let mut dev = OneFrame {
            rx: Some(buf),
            tx: &mut self.tx,
            caps: &self.caps,
        };
        self.iface
            .poll_ingress_single(self.now, &mut dev, &mut self.empty);
    }
}
