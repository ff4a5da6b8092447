//! The packet-handler loop: rx burst -> handler -> tx bursts, per core.

use crate::app::{Discard, Frame, PacketHandler, Verdict};

use crate::buf::{Burst, PacketBuf, BURST};
use crate::port::PortQueue;
use crate::runtime::lcore::Worker;
use crate::runtime::stats::{CoreRef, CoreStats, DropReason, MAX_PORTS};
use crate::time::Instant;

/// A frame's fate in one byte: an output port index (below
/// [`MAX_PORTS`]), or [`DROPPED`] plus the [`DropReason`] index.
type Fate = u8;
const DROPPED: Fate = 0x80;
const _: () = assert!(MAX_PORTS < DROPPED as usize);
const _: () = assert!(DropReason::COUNT < DROPPED as usize);

/// The fate of a frame from port `p` (of `nports`) that got verdict `v`.
#[inline(always)]
fn fate(v: Verdict, p: usize, nports: usize) -> Fate {
    let drop = |why: DropReason| DROPPED | why as u8;
    // A router's usual verdict first, as a plain test: the compiler can
    // answer it on the handler's own return paths (a `match` of every
    // verdict becomes a jump table after them).
    if let Verdict::Out(k) = v {
        return if (k as usize) < nports {
            k as Fate
        } else {
            drop(DropReason::Handler)
        };
    }
    match v {
        Verdict::Forward => (if p + 1 == nports { 0 } else { p + 1 }) as Fate,
        Verdict::Reply => p as Fate,
        Verdict::Out(k) if (k as usize) < nports => k as Fate,
        Verdict::Out(_) | Verdict::Drop => drop(DropReason::Handler),
        Verdict::Discard(d) => drop(match d {
            Discard::Malformed => DropReason::Malformed,
            Discard::NotIpv4 => DropReason::NotForUs,
            Discard::BadChecksum => DropReason::BadChecksum,
            Discard::TtlExpired => DropReason::TtlExpired,
            Discard::NoRoute => DropReason::NoRoute,
        }),
    }
}

/// One core's forwarding loop over one queue of each port.
///
/// Each iteration receives a burst from every port, runs the handler on
/// each frame in place, and batches the frames by output port: `Forward`
/// goes to the next port (the other one of two; the same one when there is
/// one), `Reply` back to the input port, `Out(k)` to port `k`; drops are
/// counted by their reason. Each output burst is flushed once
/// per iteration (or when it fills up); frames the port does not accept
/// are dropped and counted as `tx_full` (as DPDK's l2fwd does).
///
/// A burst is handled in two passes (the handler's fates first, then the
/// frames) while bursts go all one way, so that such a burst is sent as it
/// was received; and in one pass (each frame onto its output burst as soon
/// as the handler is done with it) while they go several ways, as a
/// router's do. The worker switches by what it sees.
pub struct ForwardWorker<Q: PortQueue, H: PacketHandler> {
    out: Outputs<Q>,
    handler: H,
    stats: CoreRef,
    /// True when the last burst that took the two passes did not all go
    /// one way: the next ones are sorted in the same pass as the handler
    /// runs (see `poll`).
    mixed: bool,
    polls: u64,
    idle_polls: u64,
}

/// The ports' queues and the output bursts waiting for them: the part of
/// the worker that pass 2 writes, apart from the handler and the stats
/// (so that a poll finds its core's counters once, not at every use).
struct Outputs<Q: PortQueue> {
    queues: Vec<Q>,
    /// One output burst per port (fixed arrays: a fate indexes them with
    /// no bounds check).
    tx: [Burst<Q::Buf>; MAX_PORTS],
    /// Bytes of the frames waiting in each `tx` burst (so that a flush
    /// need not walk the burst to count them).
    tx_bytes: [u64; MAX_PORTS],
    /// True once a burst was sorted onto the `tx` bursts since they were
    /// last flushed (a loop whose bursts all went out whole skips the
    /// flush).
    pending: bool,
}

/// Polls between two looks, while bursts go more than one way, at whether
/// they still do (see `poll`).
const MIXED_RECHECK: u64 = 64;

/// Polls between two publications of the poll counters and pool gauges
/// (also published when the worker finishes).
const GAUGE_POLLS: u64 = 1024;

impl<Q: PortQueue, H: PacketHandler> ForwardWorker<Q, H> {
    /// A worker over `queues` (one per port, in port order). To capture
    /// what it carries, wrap the queues in [`Captured`](crate::runtime::Captured).
    pub fn new(queues: Vec<Q>, handler: H, stats: CoreRef) -> Self {
        assert!(
            queues.len() <= MAX_PORTS,
            "a forwarding worker takes at most {MAX_PORTS} ports"
        );
        ForwardWorker {
            out: Outputs {
                queues,
                tx: std::array::from_fn(|_| Burst::new()),
                tx_bytes: [0; MAX_PORTS],
                pending: false,
            },
            handler,
            stats,
            mixed: false,
            polls: 0,
            idle_polls: 0,
        }
    }

    /// The queues back (to check pool accounting after a run).
    pub fn into_queues(self) -> Vec<Q> {
        self.out.queues
    }

    /// Publishes the poll counts (kept in the worker, so a poll does not
    /// write the shared counters) and the pool gauges.
    fn update_gauges(&self) {
        self.stats.polls.set(self.polls);
        self.stats.idle_polls.set(self.idle_polls);
        for (p, q) in self.out.queues.iter().enumerate() {
            let s = q.pool_stats();
            self.stats.ports[p].pool_in_use.set(s.in_use);
            self.stats.ports[p]
                .pool_alloc_failures
                .set(s.alloc_failures);
        }
    }
}

impl<Q: PortQueue> Outputs<Q> {
    /// Sends port `p`'s output burst, if it holds frames. The test is
    /// inlined (it is all a loop whose bursts went out whole pays); the
    /// send is not.
    #[inline(always)]
    fn flush(&mut self, stats: &CoreStats, p: usize) {
        if !self.tx[p % MAX_PORTS].is_empty() {
            self.flush_now(stats, p);
        }
    }

    #[inline(never)]
    fn flush_now(&mut self, stats: &CoreStats, p: usize) {
        let bytes = std::mem::take(&mut self.tx_bytes[p]);
        send(&mut self.queues[p], stats, p, &mut self.tx[p], bytes);
    }

    /// Every output burst out, and each port's own batching pushed.
    fn flush_all(&mut self, stats: &CoreStats) {
        if self.pending {
            for p in 0..self.queues.len() {
                self.flush(stats, p);
            }
            self.pending = false;
        }
        for q in &mut self.queues {
            q.flush();
        }
    }

    /// Pass 2 for a burst from port `p` whose frames do not all go one
    /// way: each frame onto its output port's burst (flushed when full),
    /// or counted as dropped. A burst with no drop takes a loop without the
    /// drop test.
    #[inline(always)]
    fn sort_out(
        &mut self,
        stats: &CoreStats,
        p: usize,
        rx: &mut Burst<Q::Buf>,
        fates: &[Fate; BURST],
        any_dropped: bool,
    ) {
        self.pending = true;
        if !any_dropped {
            for (buf, &f) in rx.drain(..).zip(fates.iter()) {
                self.push_out(stats, f, buf);
            }
            return;
        }
        for (buf, &f) in rx.drain(..).zip(fates.iter()) {
            if f >= DROPPED {
                let why = DropReason::ALL[(f - DROPPED) as usize];
                stats.ports[p % MAX_PORTS].drop(why, 1);
                continue;
            }
            self.push_out(stats, f, buf);
        }
    }

    /// The handler and pass 2 in one pass over a burst from port `p`, for
    /// bursts whose frames go more than one way: each frame goes onto its
    /// output burst (or is dropped and counted) as soon as its fate is
    /// known, so the fates are neither stored nor read back and the burst
    /// is walked once. Returns the bytes received.
    #[inline(always)]
    fn handle_and_sort<H: PacketHandler>(
        &mut self,
        handler: &mut H,
        stats: &CoreStats,
        rx: &mut Burst<Q::Buf>,
        p: usize,
    ) -> u64 {
        self.pending = true;
        let nports = self.queues.len();
        for b in rx.iter() {
            b.prefetch();
        }
        let mut rx_bytes = 0;
        for mut buf in rx.drain(..) {
            let len = buf.len();
            rx_bytes += len as u64;
            let mut frame = Frame::new(&mut buf, p as u16);
            let v = handler.handle(&mut frame);
            let out_len = if frame.resized() { frame.len() } else { len };
            let f = fate(v, p, nports);
            if f >= DROPPED {
                let why = DropReason::ALL[(f - DROPPED) as usize];
                stats.ports[p % MAX_PORTS].drop(why, 1);
                continue;
            }
            self.push_out_len(stats, f, buf, out_len as u64);
        }
        rx_bytes
    }

    /// Puts `buf` on the output burst of port `f` (a fate below
    /// [`DROPPED`]: a port index below nports <= MAX_PORTS, so the modulo
    /// changes nothing; it only spares the bounds checks).
    #[inline(always)]
    fn push_out(&mut self, stats: &CoreStats, f: Fate, buf: Q::Buf) {
        let len = buf.len() as u64;
        self.push_out_len(stats, f, buf, len);
    }

    /// [`push_out`](Outputs::push_out) of a frame of `len` bytes.
    #[inline(always)]
    fn push_out_len(&mut self, stats: &CoreStats, f: Fate, buf: Q::Buf, len: u64) {
        let out = f as usize % MAX_PORTS;
        if let Err(full) = self.tx[out].try_push(buf) {
            self.flush(stats, out);
            self.tx[out].push(full.element());
        }
        self.tx_bytes[out] += len;
    }
}

/// Sends `burst` (holding `bytes` bytes) out of `q`, port `p`, now; what
/// the port does not take is dropped and counted as `tx_full`.
#[inline(always)]
fn send<Q: PortQueue>(
    q: &mut Q,
    stats: &CoreStats,
    p: usize,
    burst: &mut Burst<Q::Buf>,
    bytes: u64,
) {
    let n = q.tx_burst(burst);
    let pc = &stats.ports[p % MAX_PORTS];
    pc.tx_packets.add(n as u64);
    let mut bytes = bytes;
    if !burst.is_empty() {
        bytes -= burst.iter().map(|b| b.len() as u64).sum::<u64>();
        pc.drop(DropReason::TxFull, burst.len() as u64);
        burst.clear();
    }
    pc.tx_bytes.add(bytes);
}

/// Frames per turn of pass 1's loop.
const STEP: usize = 4;

/// The bytes pass 1 counts.
struct Bytes {
    rx: u64,
    /// Bytes the handler added (or, negative, removed).
    changed: i64,
}

/// The handler on one frame; returns its fate.
#[inline(always)]
fn handle_one<B: PacketBuf, H: PacketHandler>(
    handler: &mut H,
    buf: &mut B,
    p: usize,
    nports: usize,
    bytes: &mut Bytes,
) -> Fate {
    let len = buf.len();
    bytes.rx += len as u64;
    let mut frame = Frame::new(buf, p as u16);
    let v = handler.handle(&mut frame);
    if frame.resized() {
        bytes.changed += frame.len() as i64 - len as i64;
    }
    fate(v, p, nports)
}

/// What pass 1 learnt about a burst.
struct Pass1 {
    /// Bytes received.
    rx_bytes: u64,
    /// Bytes after the handler (differs only where it resized a frame).
    out_bytes: u64,
    /// True if every frame got the same fate (`fates[0]`).
    uniform: bool,
    /// True if some frame is to be dropped.
    any_dropped: bool,
}

/// Whether the first `n` of `fates` are all equal, and whether any is a
/// drop: for a full burst, from its four words of eight fates (against the
/// first fate repeated, and their top bits), with no branch per fate; one
/// by one otherwise.
#[inline(always)]
fn uniform_and_dropped(fates: &[Fate; BURST], n: usize) -> (bool, bool) {
    let f0 = fates[0];
    if n == BURST {
        let rep = u64::from_ne_bytes([f0; 8]);
        let w = |i: usize| {
            let c = &fates[i..i + 8];
            u64::from_ne_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]])
        };
        let (a, b, c, d) = (w(0), w(8), w(16), w(24));
        if ((a ^ rep) | (b ^ rep) | (c ^ rep) | (d ^ rep)) == 0 {
            return (true, f0 >= DROPPED);
        }
        (
            false,
            (a | b | c | d) & u64::from_ne_bytes([DROPPED; 8]) != 0,
        )
    } else {
        let fs = &fates[..n.min(BURST)];
        (
            fs.iter().all(|&f| f == f0),
            fs.iter().any(|&f| f >= DROPPED),
        )
    }
}

/// Pass 1 over a received burst from port `p`: the handler sees each frame
/// in place, and its verdict becomes a one-byte fate in `fates`.
///
/// First a quick walk over the burst prefetches every frame's first line
/// (the lines arrive while the handler works on the first frames). Then
/// the handler runs on each frame and its fate is stored: per frame, the
/// handler, its length added up, a store and the loop. The bytes out
/// differ from the bytes in only by what the handler changed, counted when
/// it resizes a frame; whether all fates are equal is found afterwards,
/// eight fates per compare. A full burst (the usual one under load) has a
/// copy of the loops of its own, whose trip counts are constants: no setup
/// or remainder code for the prefetch and the four-frame steps.
#[inline(always)]
fn handle_burst<B: PacketBuf, H: PacketHandler>(
    handler: &mut H,
    bufs: &mut [B],
    p: usize,
    nports: usize,
    fates: &mut [Fate; BURST],
) -> Pass1 {
    match <&mut [B; BURST]>::try_from(&mut *bufs) {
        Ok(full) => handle_frames(handler, &mut full[..], p, nports, fates),
        Err(_) => handle_frames(handler, bufs, p, nports, fates),
    }
}

/// [`handle_burst`]'s loops, over at most [`BURST`] frames.
#[inline(always)]
fn handle_frames<B: PacketBuf, H: PacketHandler>(
    handler: &mut H,
    bufs: &mut [B],
    p: usize,
    nports: usize,
    fates: &mut [Fate; BURST],
) -> Pass1 {
    let n = bufs.len().min(BURST);
    let bufs = &mut bufs[..n];
    for b in bufs.iter() {
        b.prefetch();
    }
    let mut bytes = Bytes { rx: 0, changed: 0 };
    // Four frames per turn of the loop, then the rest.
    let mut bs = bufs.chunks_exact_mut(STEP);
    let mut fs = fates[..n].chunks_exact_mut(STEP);
    for (b4, f4) in (&mut bs).zip(&mut fs) {
        for (b, f) in b4.iter_mut().zip(f4.iter_mut()) {
            *f = handle_one(handler, b, p, nports, &mut bytes);
        }
    }
    for (b, f) in bs.into_remainder().iter_mut().zip(fs.into_remainder()) {
        *f = handle_one(handler, b, p, nports, &mut bytes);
    }
    let Bytes {
        rx: rx_bytes,
        changed,
    } = bytes;
    let (uniform, any_dropped) = uniform_and_dropped(fates, n);
    Pass1 {
        rx_bytes,
        out_bytes: (rx_bytes as i64 + changed) as u64,
        uniform,
        any_dropped,
    }
}

impl<Q: PortQueue, H: PacketHandler> Worker for ForwardWorker<Q, H> {
    fn poll(&mut self, now: Instant) -> usize {
        let stats: &CoreStats = &self.stats;
        let out = &mut self.out;
        let nports = out.queues.len();
        let mut total = 0;
        for p in 0..nports {
            let mut rx: Burst<Q::Buf> = Burst::new();
            let n = out.queues[p].rx_burst(&mut rx);
            if n == 0 {
                continue;
            }
            total += n;
            self.handler.begin_burst(now);
            let pc = &stats.ports[p % MAX_PORTS];
            // After a burst that went more than one way, one pass: the
            // handler and the sorting together. Otherwise two: the fates
            // first, then a burst that all goes one way (MAC-swap, a wire)
            // is sent as it came, with no frame moved. Every MIXED_RECHECK
            // polls a burst takes the two passes anyway, which notice when
            // the traffic has started to go all one way.
            if self.mixed && self.polls % MIXED_RECHECK != 0 {
                let rx_bytes = out.handle_and_sort(&mut self.handler, stats, &mut rx, p);
                pc.rx_packets.add(n as u64);
                pc.rx_bytes.add(rx_bytes);
                continue;
            }
            let mut fates = [0 as Fate; BURST];
            let pass = handle_burst(&mut self.handler, rx.as_mut_slice(), p, nports, &mut fates);
            pc.rx_packets.add(n as u64);
            pc.rx_bytes.add(pass.rx_bytes);
            self.mixed = !pass.uniform;
            // Pass 2, fast path: the whole burst goes out of one port whose
            // output burst is empty: send it as it is.
            if pass.uniform {
                let f = fates[0];
                if f < DROPPED && out.tx[f as usize % MAX_PORTS].is_empty() {
                    let o = f as usize;
                    send(&mut out.queues[o], stats, o, &mut rx, pass.out_bytes);
                    continue;
                }
                if f >= DROPPED {
                    let why = DropReason::ALL[(f - DROPPED) as usize];
                    pc.drop(why, n as u64);
                    rx.clear();
                    continue;
                }
            }
            // Pass 2, general case: frame by frame.
            out.sort_out(stats, p, &mut rx, &fates, pass.any_dropped);
        }
        out.flush_all(stats);
        self.polls += 1;
        self.idle_polls += (total == 0) as u64;
        if self.polls % GAUGE_POLLS == 0 {
            self.update_gauges();
        }
        total
    }

    fn finish(&mut self, _now: Instant) {
        self.out.flush_all(&self.stats);
        self.update_gauges();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::Frame;
    use crate::buf::HugePolicy;
    use crate::port::mem::{MemConfig, MemPort, MemQueue};
    use crate::port::Port;
    use crate::runtime::Stats;

    /// Replies to frames whose first byte is even (trimming them to 60
    /// bytes), drops the others.
    struct EvenOnly;
    impl PacketHandler for EvenOnly {
        fn handle<B: PacketBuf>(&mut self, f: &mut Frame<'_, B>) -> Verdict {
            if f.data()[0] % 2 == 0 {
                f.set_len(60);
                Verdict::Reply
            } else {
                Verdict::Drop
            }
        }
    }

    /// Sends frames by their first byte: 0 back out of port 0, 1 to a port
    /// that does not exist, 2 dropped for want of a route.
    struct ByFirst;
    impl PacketHandler for ByFirst {
        fn handle<B: PacketBuf>(&mut self, f: &mut Frame<'_, B>) -> Verdict {
            match f.data()[0] {
                0 => Verdict::Out(0),
                1 => Verdict::Out(5),
                _ => Verdict::Discard(Discard::NoRoute),
            }
        }
    }

    #[test]
    fn out_verdicts_and_discard_reasons() {
        let (mut w, mut qb, stats) = rig(ByFirst);
        send(&mut qb, &[0, 1, 2, 0, 2], 64);
        assert_eq!(w.poll(Instant(0)), 5);
        assert_eq!(drain(&mut qb), vec![(0, 64), (0, 64)]);
        let s = &stats.snapshot().ports[0];
        assert_eq!(s.drops_by_reason["handler"], 1);
        assert_eq!(s.drops_by_reason["no_route"], 2);
        // A whole burst to one port is handed over as it is.
        send(&mut qb, &[0, 0, 0], 64);
        assert_eq!(w.poll(Instant(0)), 3);
        assert_eq!(drain(&mut qb).len(), 3);
    }

    /// A worker running `h` on one end of a mem wire; the other end's
    /// queue (to send it frames and take its replies) and the stats.
    fn rig<H: PacketHandler>(h: H) -> (ForwardWorker<MemQueue, H>, MemQueue, Stats) {
        let (mut a, mut b) = wire();
        let qa = a.take_queues().pop().unwrap();
        let qb = b.take_queues().pop().unwrap();
        let stats = Stats::new(&[0], &["a".to_string()]);
        (ForwardWorker::new(vec![qa], h, stats.core(0)), qb, stats)
    }

    /// A worker on two ports (the worker's ends of two wires), the peer
    /// end of each, and the stats.
    fn two_port_rig<H: PacketHandler>(h: H) -> (ForwardWorker<MemQueue, H>, [MemQueue; 2], Stats) {
        let (mut a0, mut b0) = wire();
        let (mut a1, mut b1) = wire();
        let queues = vec![
            a0.take_queues().pop().unwrap(),
            a1.take_queues().pop().unwrap(),
        ];
        let peers = [
            b0.take_queues().pop().unwrap(),
            b1.take_queues().pop().unwrap(),
        ];
        let stats = Stats::new(&[0], &["p0".to_string(), "p1".to_string()]);
        let w = ForwardWorker::new(queues, h, stats.core(0));
        (w, peers, stats)
    }

    fn wire() -> (MemPort, MemPort) {
        MemPort::pair(&MemConfig {
            huge: HugePolicy::Never,
            pool_frames: 256,
            ..Default::default()
        })
        .unwrap()
    }

    fn send(q: &mut impl PortQueue<Buf = crate::buf::PoolBuf>, firsts: &[u8], len: usize) {
        let mut b = Burst::new();
        for &first in firsts {
            let mut buf = q.alloc().unwrap();
            buf.set_len(len);
            buf.data_mut().fill(first);
            b.push(buf);
        }
        assert_eq!(q.tx_burst(&mut b), firsts.len());
    }

    fn drain(q: &mut impl PortQueue<Buf = crate::buf::PoolBuf>) -> Vec<(u8, usize)> {
        let mut b = Burst::new();
        q.rx_burst(&mut b);
        b.iter().map(|f| (f.data()[0], f.len())).collect()
    }

    /// Routes by the first byte: even out of port 0, odd out of port 1,
    /// 0xff dropped for want of a route; frames whose second byte is a
    /// multiple of 3 are trimmed to 60 bytes.
    struct Split;
    impl PacketHandler for Split {
        fn handle<B: PacketBuf>(&mut self, f: &mut Frame<'_, B>) -> Verdict {
            let (first, second) = (f.data()[0], f.data()[1]);
            if second % 3 == 0 {
                f.set_len(60);
            }
            match first {
                0xff => Verdict::Discard(Discard::NoRoute),
                x => Verdict::Out((x % 2) as u16),
            }
        }
    }

    #[test]
    fn mixed_and_whole_bursts_in_any_order_arrive_in_order_and_are_counted_exactly() {
        // Two ports (the worker's ends of two wires) and their peers.
        let (mut w, mut peers, stats) = two_port_rig(Split);
        let mut rng = crate::testing::Rng(0xf0d);
        let mut want: [Vec<(u8, u8, usize)>; 2] = [Vec::new(), Vec::new()];
        let mut got: [Vec<(u8, u8, usize)>; 2] = [Vec::new(), Vec::new()];
        let (mut rx, mut tx) = ([0u64; 2], [(0u64, 0u64); 2]);
        let mut dropped = 0;
        // Bursts of every kind one after another: mixed, all to port 0,
        // mixed with drops, all to port 1, all dropped, and so on, from
        // both peers, so that each one-pass and two-pass turn follows each.
        for round in 0..60u64 {
            let from = (round % 2) as usize;
            let kind = rng.below(4);
            let n = 1 + rng.below(32) as usize;
            let mut b = Burst::new();
            for _ in 0..n {
                let first = match kind {
                    0 => rng.next_u64() as u8, // anything, drops included
                    1 => 2 * (rng.next_u64() as u8 % 100),
                    2 => 2 * (rng.next_u64() as u8 % 100) + 1,
                    _ => 0xff,
                };
                let second = rng.next_u64() as u8;
                let len = 64 + rng.below(100) as usize;
                let mut buf = peers[from].alloc().unwrap();
                buf.set_len(len);
                buf.data_mut().fill(first);
                buf.data_mut()[1] = second;
                rx[from] += len as u64;
                if first == 0xff {
                    dropped += 1;
                } else {
                    let out_len = if second % 3 == 0 { 60 } else { len };
                    let o = (first % 2) as usize;
                    want[o].push((first, second, out_len));
                    tx[o].0 += 1;
                    tx[o].1 += out_len as u64;
                }
                b.push(buf);
            }
            assert_eq!(peers[from].tx_burst(&mut b), n);
            assert_eq!(w.poll(Instant(0)), n);
            // What came out, taken at once (so the pools never run dry).
            for (o, q) in peers.iter_mut().enumerate() {
                let mut b = Burst::new();
                while q.rx_burst(&mut b) > 0 {
                    got[o].extend(b.drain(..).map(|f| (f.data()[0], f.data()[1], f.len())));
                }
            }
        }
        w.finish(Instant(0));
        for o in 0..2 {
            assert_eq!(got[o], want[o], "port {o}: every frame, in order");
        }
        let snap = stats.snapshot();
        for o in 0..2 {
            let s = &snap.ports[o];
            assert_eq!(s.rx_bytes, rx[o], "port {o} rx bytes");
            assert_eq!((s.tx_packets, s.tx_bytes), tx[o], "port {o} tx");
        }
        let drops: u64 = (0..2)
            .map(|o| snap.ports[o].drops_by_reason["no_route"])
            .sum();
        assert_eq!(drops, dropped);
    }

    #[test]
    fn an_output_burst_that_fills_up_in_one_pass_is_sent_and_refilled() {
        // Port 0 receives 32 frames going both ways (the next burst is
        // sorted in one pass), then 32 more of which 31 go to port 0, then
        // port 1's 32 all go to port 0: the 63 frames for port 0 in one
        // poll fill its output burst, which goes out and fills again.
        let (mut w, [mut p0, mut p1], stats) = two_port_rig(Split);
        let mixed: Vec<u8> = (0..32).map(|i| i as u8 * 2 + (i % 2) as u8).collect();
        send(&mut p0, &mixed, 64);
        assert_eq!(w.poll(Instant(0)), 32);
        let mostly_even: Vec<u8> = (0..32)
            .map(|i| if i == 5 { 1 } else { 2 * i as u8 })
            .collect();
        send(&mut p0, &mostly_even, 64);
        let even: Vec<u8> = (0..32).map(|i| 100 + 2 * i as u8).collect();
        send(&mut p1, &even, 64);
        assert_eq!(w.poll(Instant(0)), 64);
        let mut got = Vec::new();
        for _ in 0..4 {
            got.extend(drain(&mut p0).into_iter().map(|(f, _)| f));
        }
        let want: Vec<u8> = mixed
            .iter()
            .chain(&mostly_even)
            .chain(&even)
            .copied()
            .filter(|f| f % 2 == 0)
            .collect();
        assert_eq!(got, want);
        let s = &stats.snapshot().ports[0];
        assert_eq!(s.tx_packets, want.len() as u64);
        // send() fills a frame with its first byte, so Split trims those
        // whose first byte is a multiple of 3.
        let bytes: u64 = want.iter().map(|f| if f % 3 == 0 { 60 } else { 64 }).sum();
        assert_eq!(s.tx_bytes, bytes);
    }

    #[test]
    fn full_bursts_go_four_at_a_time_with_the_rest_after() {
        // 13 and 32 frames: whole steps of four and a remainder; drops in
        // the middle of a step, at a step's edge and in the remainder.
        let (mut w, mut qb, stats) = rig(EvenOnly);
        let firsts: Vec<u8> = (0..13)
            .map(|i| if [2, 4, 11].contains(&i) { 1 } else { 2 * i })
            .collect();
        send(&mut qb, &firsts, 90);
        assert_eq!(w.poll(Instant(0)), 13);
        let want: Vec<(u8, usize)> = firsts
            .iter()
            .filter(|&&f| f % 2 == 0)
            .map(|&f| (f, 60))
            .collect();
        assert_eq!(drain(&mut qb), want);
        let all_even: Vec<u8> = (0..32).map(|i| 2 * i as u8).collect();
        send(&mut qb, &all_even, 90);
        assert_eq!(w.poll(Instant(0)), 32);
        assert_eq!(drain(&mut qb).len(), 32);
        w.finish(Instant(0));
        let snap = stats.snapshot();
        let s = &snap.ports[0];
        assert_eq!((s.rx_packets, s.rx_bytes), (45, 45 * 90));
        assert_eq!((s.tx_packets, s.tx_bytes), (42, 42 * 60));
        assert_eq!(s.drops_by_reason["handler"], 3);
        assert_eq!(snap.cores[0].polls, 2, "published when the worker finishes");
    }

    #[test]
    fn a_full_burst_with_one_other_fate_goes_frame_by_frame() {
        // Every word of eight fates, and each byte position, once odd.
        for odd in [0, 7, 8, 20, 31] {
            let (mut w, mut qb, stats) = rig(EvenOnly);
            let firsts: Vec<u8> = (0..32).map(|i| if i == odd { 1 } else { 2 }).collect();
            send(&mut qb, &firsts, 64);
            assert_eq!(w.poll(Instant(0)), 32);
            assert_eq!(drain(&mut qb), vec![(2, 60); 31], "odd frame at {odd}");
            let s = &stats.snapshot().ports[0];
            assert_eq!(s.drops_by_reason["handler"], 1);
            assert_eq!((s.tx_packets, s.tx_bytes), (31, 31 * 60));
        }
    }

    #[test]
    fn mixed_verdicts_and_whole_bursts_are_counted() {
        let (mut w, mut qb, stats) = rig(EvenOnly);

        // A burst with mixed verdicts: frame by frame.
        send(&mut qb, &[2, 3, 4, 5, 6], 100);
        assert_eq!(w.poll(Instant(0)), 5);
        assert_eq!(drain(&mut qb), vec![(2, 60), (4, 60), (6, 60)]);
        let s = &stats.snapshot().ports[0];
        assert_eq!((s.rx_packets, s.rx_bytes), (5, 500));
        assert_eq!((s.tx_packets, s.tx_bytes), (3, 180));
        assert_eq!(s.drops_by_reason["handler"], 2);

        // A burst that all goes back: handed over whole.
        send(&mut qb, &[8, 10], 80);
        assert_eq!(w.poll(Instant(0)), 2);
        assert_eq!(drain(&mut qb), vec![(8, 60), (10, 60)]);
        let s = &stats.snapshot().ports[0];
        assert_eq!((s.rx_packets, s.rx_bytes), (7, 660));
        assert_eq!((s.tx_packets, s.tx_bytes), (5, 300));

        // All dropped.
        send(&mut qb, &[1, 3], 64);
        assert_eq!(w.poll(Instant(0)), 2);
        assert!(drain(&mut qb).is_empty());
        assert_eq!(stats.snapshot().ports[0].drops_by_reason["handler"], 4);
    }
}
