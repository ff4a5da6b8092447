//! The packet-handler loop: rx burst -> handler -> tx bursts, per core.

use crate::app::{Frame, PacketHandler, Verdict};
use crate::buf::{Burst, PacketBuf};
use crate::port::PortQueue;
use crate::runtime::capture::CaptureSink;
use crate::runtime::lcore::Worker;
use crate::runtime::stats::{CoreRef, DropReason};
use crate::time::Instant;

/// One core's forwarding loop over one queue of each port.
///
/// Each iteration receives a burst from every port, runs the handler on
/// each frame in place, and batches the frames by output port: `Forward`
/// goes to the next port (the other one of two; the same one when there is
/// one), `Reply` back to the input port. Each output burst is flushed once
/// per iteration (or when it fills up); frames the port does not accept
/// are dropped and counted as `tx_full` (as DPDK's l2fwd does).
pub struct ForwardWorker<Q: PortQueue, H: PacketHandler> {
    queues: Vec<Q>,
    handler: H,
    stats: CoreRef,
    tx: Vec<Burst<Q::Buf>>,
    capture: Option<CaptureSink>,
    polls: u64,
}

impl<Q: PortQueue, H: PacketHandler> ForwardWorker<Q, H> {
    /// A worker over `queues` (one per port, in port order).
    pub fn new(queues: Vec<Q>, handler: H, stats: CoreRef, capture: Option<CaptureSink>) -> Self {
        let tx = queues.iter().map(|_| Burst::new()).collect();
        ForwardWorker {
            queues,
            handler,
            stats,
            tx,
            capture,
            polls: 0,
        }
    }

    /// The queues back (to check pool accounting after a run).
    pub fn into_queues(self) -> Vec<Q> {
        self.queues
    }

    fn flush(&mut self, p: usize) {
        let burst = &mut self.tx[p];
        if burst.is_empty() {
            return;
        }
        if let Some(c) = &self.capture {
            for b in burst.iter() {
                c.record(b.data());
            }
        }
        let before: usize = burst.iter().map(|b| b.len()).sum();
        let n = self.queues[p].tx_burst(burst);
        let after: usize = burst.iter().map(|b| b.len()).sum();
        let pc = &self.stats.ports[p];
        pc.tx_packets.add(n as u64);
        pc.tx_bytes.add((before - after) as u64);
        if !burst.is_empty() {
            pc.drop(DropReason::TxFull, burst.len() as u64);
            burst.clear();
        }
    }

    fn update_gauges(&self) {
        for (p, q) in self.queues.iter().enumerate() {
            let s = q.pool_stats();
            self.stats.ports[p].pool_in_use.set(s.in_use);
            self.stats.ports[p]
                .pool_alloc_failures
                .set(s.alloc_failures);
        }
    }
}

impl<Q: PortQueue, H: PacketHandler> Worker for ForwardWorker<Q, H> {
    fn poll(&mut self, now: Instant) -> usize {
        let nports = self.queues.len();
        let mut total = 0;
        for p in 0..nports {
            let mut rx: Burst<Q::Buf> = Burst::new();
            let n = self.queues[p].rx_burst(&mut rx);
            if n == 0 {
                continue;
            }
            total += n;
            let pc = &self.stats.ports[p];
            pc.rx_packets.add(n as u64);
            pc.rx_bytes.add(rx.iter().map(|b| b.len() as u64).sum());
            self.handler.begin_burst(now);
            for mut buf in rx {
                if let Some(c) = &self.capture {
                    c.record(buf.data());
                }
                let len = buf.len();
                let mut frame = Frame::new(buf.room_mut(), len, p as u16);
                let verdict = self.handler.handle(&mut frame);
                let len = frame.len();
                buf.set_len(len);
                let out = match verdict {
                    Verdict::Forward => (p + 1) % nports,
                    Verdict::Reply => p,
                    Verdict::Drop => {
                        self.stats.ports[p].drop(DropReason::Handler, 1);
                        continue;
                    }
                };
                if self.tx[out].is_full() {
                    self.flush(out);
                }
                self.tx[out].push(buf);
            }
        }
        for p in 0..nports {
            self.flush(p);
            self.queues[p].flush();
        }
        self.polls += 1;
        self.stats.polls.add(1);
        if total == 0 {
            self.stats.idle_polls.add(1);
        }
        if self.polls % 1024 == 0 {
            self.update_gauges();
        }
        total
    }

    fn finish(&mut self, _now: Instant) {
        for p in 0..self.queues.len() {
            self.flush(p);
            self.queues[p].flush();
        }
        self.update_gauges();
    }
}
