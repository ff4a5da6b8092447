//! An in-memory wire between two ports.
//!
//! [`MemPort::pair`] makes two ports, A and B, each with the same number of
//! queues; queue *i* of A is cabled to queue *i* of B by two lock-free
//! bounded rings, one per direction. A frame sent on one end is received on
//! the other as the very same buffer (no copy); it returns to the sender's
//! pool when the receiver drops it, whatever thread that happens on. The
//! ends can live in one thread (deterministic tests) or in two pinned
//! threads (benchmarks).
//!
//! **RSS.** Each end answers [`Port::configure_rss`]: from then on every
//! frame sent towards it lands on the queue its [`Rss`] names for the
//! frame's flow (Toeplitz over the IPv4 4-tuple, as a NIC does; frames
//! without an IPv4 flow, such as ARP, on queue 0), instead of on the queue
//! with the sender's number. The sharded stack then runs in hardware mode
//! on the wire. The sending queue computes the hash (the work a NIC does
//! in hardware), so it costs the sender a frame parse per frame.
//!
//! A seeded [`Faults`] injector can sit on each direction: loss,
//! duplication, reordering, delay (counted in receive polls, so tests stay
//! deterministic) and corruption (one byte flipped after the Ethernet
//! header, which the receiver's checksums must catch).
//!
//! **TSO.** With [`MemConfig::tso`] each end advertises TSO and acts as a
//! TSO device: its queues' buffers hold a 64 KiB IP packet, and a buffer
//! carrying a TSO request is cut in software into MSS-sized frames
//! (`port/gso.rs`) before the fault injector, so a loss takes one MSS out
//! of a large segment, as on a real link.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use crossbeam_queue::ArrayQueue;

use super::{LinkStats, MacAddr, Port, PortCaps, PortInfo, PortQueue};
use crate::buf::{Burst, HugePolicy, PacketBuf, Pool, PoolBuf, PoolConfig, PoolStats};
use crate::counter::Counter;
use crate::error::Result;
use crate::flow::{FiveTuple, Rss};

/// Fault mix for one direction of the wire. Probabilities are in [0, 1].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Faults {
    /// Seed of the injector's generator.
    pub seed: u64,
    /// Probability a frame is lost.
    pub loss: f64,
    /// Probability a frame is sent twice.
    pub duplicate: f64,
    /// Probability a frame is held back and sent after the next one.
    pub reorder: f64,
    /// Probability one byte after the Ethernet header is flipped.
    pub corrupt: f64,
    /// Every frame becomes visible this many receive polls after it was sent.
    pub delay_polls: u32,
}

impl Faults {
    /// True if the injector would change nothing.
    pub fn is_none(&self) -> bool {
        self.loss == 0.0
            && self.duplicate == 0.0
            && self.reorder == 0.0
            && self.corrupt == 0.0
            && self.delay_polls == 0
    }
}

/// Configuration of a wire.
#[derive(Debug, Clone)]
pub struct MemConfig {
    /// Queues on each end.
    pub queues: u16,
    /// Frames each ring holds, per direction and queue.
    pub ring_size: usize,
    /// Frames in each queue's pool.
    pub pool_frames: u32,
    /// Bytes per frame (headroom included).
    pub frame_size: u32,
    /// MTU reported by both ends.
    pub mtu: u16,
    /// Faults on A -> B.
    pub faults_ab: Faults,
    /// Faults on B -> A.
    pub faults_ba: Faults,
    /// Hugepage policy for the pools.
    pub huge: HugePolicy,
    /// Base name of the two ends (`NAME.a`, `NAME.b`).
    pub name: String,
    /// Act as a TSO device (see the module docs): `frame_size` is then
    /// the size of the cut segments' frames, and the queues hand out
    /// 64.5 KiB frames.
    pub tso: bool,
}

impl Default for MemConfig {
    fn default() -> Self {
        MemConfig {
            queues: 1,
            ring_size: 1024,
            pool_frames: 4096,
            frame_size: 2048,
            mtu: 1500,
            faults_ab: Faults::default(),
            faults_ba: Faults::default(),
            huge: HugePolicy::Never,
            name: "wire".into(),
            tso: false,
        }
    }
}

/// One direction of one queue's wire. The sending queue alone writes the
/// `tx` half and the receiving queue alone writes the `rx` half; each half
/// has a cache line of its own, so the two cores never write one line and
/// a counter update is a plain store ([`Counter`]).
#[derive(Debug, Default)]
struct WireStats {
    tx: TxSide,
    rx: RxSide,
}

#[derive(Debug, Default)]
#[repr(align(64))]
struct TxSide {
    sent: Counter,
    sent_bytes: Counter,
    lost: Counter,
    duplicated: Counter,
    reordered: Counter,
    corrupted: Counter,
}

#[derive(Debug, Default)]
#[repr(align(64))]
struct RxSide {
    received: Counter,
    received_bytes: Counter,
}

/// A snapshot of one direction's fault counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct FaultStats {
    /// Frames dropped by the injector.
    pub lost: u64,
    /// Extra copies sent.
    pub duplicated: u64,
    /// Frames held back behind a later one.
    pub reordered: u64,
    /// Frames with a byte flipped.
    pub corrupted: u64,
}

/// xorshift64*: a small deterministic generator (fault decisions here,
/// generated test inputs elsewhere). The seed must not be 0.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        // xorshift64*: small, fast, good enough for fault decisions.
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
}

struct Injector {
    faults: Faults,
    rng: Rng,
    held: Option<PoolBuf>,
}

type Ring = ArrayQueue<(u64, PoolBuf)>;

/// One queue of one end of the wire.
pub struct MemQueue {
    id: u16,
    /// The rings towards every queue of the peer (ours is `id`).
    peer_rx: Vec<Arc<Ring>>,
    /// The peer's RSS, once it configured one: where our frames land.
    peer_rss: Arc<OnceLock<Rss>>,
    rx: Arc<Ring>,
    tx_stats: Arc<WireStats>,
    rx_stats: Arc<WireStats>,
    pool: Pool,
    /// With TSO: the pool of the frames large segments are cut into.
    seg_pool: Option<Pool>,
    injector: Option<Injector>,
    /// Receive polls so far (the clock of the delay fault).
    polls: u64,
    /// The peer queues' poll counters, read to stamp delayed frames.
    peer_polls: Vec<Arc<AtomicU64>>,
    my_polls: Arc<AtomicU64>,
    pending: VecDeque<PoolBuf>,
    /// A received frame not yet due (delay fault).
    rx_head: Option<(u64, PoolBuf)>,
}

impl Drop for MemQueue {
    /// Returns every frame of this queue's pool before the pool handle
    /// goes (fields drop in order, and the pool comes first): frames held
    /// back for sending, a delayed one, and those still on the wire in the
    /// peer's rings (the rings are MPMC, so taking from the producer's side
    /// is safe; frames of other queues are put back). Frames the peer sent
    /// us go back to its pool too. Otherwise the pool, with frames out,
    /// stays mapped with a warning at every teardown.
    fn drop(&mut self) {
        self.pending.clear();
        self.rx_head = None;
        while self.rx.pop().is_some() {}
        for ring in &self.peer_rx {
            for _ in 0..ring.len() {
                match ring.pop() {
                    Some((_, b))
                        if self.pool.owns(&b)
                            || self.seg_pool.as_ref().is_some_and(|p| p.owns(&b)) =>
                    {
                        drop(b)
                    }
                    Some(other) => {
                        let _ = ring.push(other);
                    }
                    None => break,
                }
            }
        }
    }
}

impl MemQueue {
    /// The peer queue a frame lands on.
    #[inline]
    fn dest(&self, buf: &PoolBuf) -> usize {
        match self.peer_rss.get() {
            None => self.id as usize,
            Some(rss) => {
                FiveTuple::of_frame(buf.data()).map_or(0, |f| rss.core(&f) % self.peer_rx.len())
            }
        }
    }

    fn push_wire(&mut self, buf: PoolBuf) -> std::result::Result<(), PoolBuf> {
        let to = self.dest(&buf);
        let due = match &self.injector {
            Some(inj) if inj.faults.delay_polls > 0 => {
                self.peer_polls[to].load(Ordering::Relaxed) + inj.faults.delay_polls as u64
            }
            _ => 0,
        };
        let len = buf.len() as u64;
        match self.peer_rx[to].push((due, buf)) {
            Ok(()) => {
                self.tx_stats.tx.sent.add(1);
                self.tx_stats.tx.sent_bytes.add(len);
                Ok(())
            }
            Err((_, b)) => Err(b),
        }
    }

    /// Applies the fault mix to one frame; the frames to put on the wire
    /// are left in `self.pending` in order.
    fn inject(&mut self, mut buf: PoolBuf) {
        let Some(inj) = self.injector.as_mut() else {
            self.pending.push_back(buf);
            return;
        };
        let f = inj.faults;
        if inj.rng.chance(f.loss) {
            self.tx_stats.tx.lost.add(1);
            return;
        }
        if buf.len() > 14 && inj.rng.chance(f.corrupt) {
            let at = 14 + (inj.rng.next() as usize % (buf.len() - 14));
            let bit = 1u8 << (inj.rng.next() % 8);
            buf.data_mut()[at] ^= bit;
            self.tx_stats.tx.corrupted.add(1);
        }
        if inj.rng.chance(f.duplicate) {
            if let Some(mut copy) = self.pool.alloc() {
                copy.copy_from(buf.data());
                self.tx_stats.tx.duplicated.add(1);
                self.pending.push_back(copy);
            }
        }
        if inj.held.is_none() && inj.rng.chance(f.reorder) {
            self.tx_stats.tx.reordered.add(1);
            inj.held = Some(buf);
            return;
        }
        self.pending.push_back(buf);
        if let Some(h) = inj.held.take() {
            self.pending.push_back(h);
        }
    }

    /// Cuts a frame with a TSO request into MSS-sized frames (as a TSO
    /// device does) and puts them through the fault mix. A frame that is
    /// not a TCP segment, or no buffer for a segment, loses the rest of
    /// the frame (counted as lost).
    #[cold]
    fn cut(&mut self, b: PoolBuf) {
        // Out of `self` while the segments go through `inject`.
        let Some(seg_pool) = self.seg_pool.take() else {
            return;
        };
        let mss = b.tx_offload().tso_mss as usize;
        let ok = super::gso::segment(b.data(), mss, || seg_pool.alloc(), |s| self.inject(s));
        self.seg_pool = Some(seg_pool);
        if ok.is_none() {
            self.tx_stats.tx.lost.add(1);
        }
    }

    fn drain_pending(&mut self) -> bool {
        while let Some(b) = self.pending.pop_front() {
            if let Err(b) = self.push_wire(b) {
                self.pending.push_front(b);
                return false;
            }
        }
        true
    }

    /// This direction's fault counters (frames this end sent).
    pub fn fault_stats(&self) -> FaultStats {
        let s = &self.tx_stats.tx;
        FaultStats {
            lost: s.lost.get(),
            duplicated: s.duplicated.get(),
            reordered: s.reordered.get(),
            corrupted: s.corrupted.get(),
        }
    }

    /// Frames on the wire towards this queue, not yet received.
    pub fn rx_waiting(&self) -> usize {
        self.rx.len() + self.rx_head.is_some() as usize
    }

    /// Releases a frame held back for reordering (when no later frame
    /// comes to overtake it), so that a quiet wire delivers everything.
    pub fn release_held(&mut self) {
        if let Some(h) = self.injector.as_mut().and_then(|i| i.held.take()) {
            self.pending.push_back(h);
        }
        self.drain_pending();
    }
}

impl PortQueue for MemQueue {
    type Buf = PoolBuf;

    fn rx_burst(&mut self, burst: &mut Burst<PoolBuf>) -> usize {
        self.polls += 1;
        self.my_polls.store(self.polls, Ordering::Relaxed);
        let mut n = 0;
        let mut bytes = 0;
        while !burst.is_full() {
            // Frames are due in the order they were sent, so the first one
            // not yet due stops the burst (it waits in `rx_head`).
            let Some((due, buf)) = self.rx_head.take().or_else(|| self.rx.pop()) else {
                break;
            };
            if due > self.polls {
                self.rx_head = Some((due, buf));
                break;
            }
            bytes += buf.len() as u64;
            burst.push(buf);
            n += 1;
        }
        if n > 0 {
            self.rx_stats.rx.received.add(n as u64);
            self.rx_stats.rx.received_bytes.add(bytes);
        }
        n
    }

    fn tx_burst(&mut self, burst: &mut Burst<PoolBuf>) -> usize {
        let mut blocked = !self.drain_pending();
        let mut consumed = 0;
        let mut rest: Burst<PoolBuf> = Burst::new();
        for b in burst.drain(..) {
            if blocked {
                rest.push(b);
                continue;
            }
            if self.seg_pool.is_some() && b.tx_offload().tso_mss != 0 {
                consumed += 1;
                self.cut(b);
                blocked = !self.drain_pending();
            } else if self.injector.is_none() {
                match self.push_wire(b) {
                    Ok(()) => consumed += 1,
                    Err(b) => {
                        blocked = true;
                        rest.push(b);
                    }
                }
            } else {
                consumed += 1;
                self.inject(b);
                blocked = !self.drain_pending();
            }
        }
        *burst = rest;
        consumed
    }

    fn alloc(&mut self) -> Option<PoolBuf> {
        self.pool.alloc()
    }

    fn queue_id(&self) -> u16 {
        self.id
    }

    /// With TSO, the two pools' counters summed.
    fn pool_stats(&self) -> PoolStats {
        let mut s = self.pool.stats();
        if let Some(p) = &self.seg_pool {
            let t = p.stats();
            s.capacity += t.capacity;
            s.in_use += t.in_use;
            s.alloc_failures += t.alloc_failures;
        }
        s
    }

    fn flush(&mut self) {
        self.drain_pending();
    }
}

/// One end of an in-memory wire.
pub struct MemPort {
    info: PortInfo,
    queues: Vec<MemQueue>,
    /// How frames arriving here are spread (set by `configure_rss`).
    rss_in: Arc<OnceLock<Rss>>,
    /// Per queue: this end's sending direction and its receiving one.
    stats: Vec<(Arc<WireStats>, Arc<WireStats>)>,
}

impl MemPort {
    /// Makes the two ends of a wire.
    pub fn pair(cfg: &MemConfig) -> Result<(MemPort, MemPort)> {
        let n = cfg.queues.max(1) as usize;
        let ring = || Arc::new(ArrayQueue::new(cfg.ring_size.max(2)));
        // `ab[i]`: the ring into B's queue i; `ba[i]`: into A's.
        let ab: Vec<Arc<Ring>> = (0..n).map(|_| ring()).collect();
        let ba: Vec<Arc<Ring>> = (0..n).map(|_| ring()).collect();
        let polls = || {
            (0..n)
                .map(|_| Arc::new(AtomicU64::new(0)))
                .collect::<Vec<_>>()
        };
        let (polls_a, polls_b) = (polls(), polls());
        let (rss_a, rss_b) = (Arc::new(OnceLock::new()), Arc::new(OnceLock::new()));
        let (mut qa, mut qb) = (Vec::new(), Vec::new());
        let (mut sa, mut sb) = (Vec::new(), Vec::new());
        for q in 0..n as u16 {
            let i = q as usize;
            let ab_stats = Arc::new(WireStats::default());
            let ba_stats = Arc::new(WireStats::default());
            sa.push((ab_stats.clone(), ba_stats.clone()));
            sb.push((ba_stats.clone(), ab_stats.clone()));
            let pool = |end: &str| {
                Pool::new(&PoolConfig {
                    frames: cfg.pool_frames,
                    frame_size: if cfg.tso {
                        crate::buf::MAX_FRAME
                    } else {
                        cfg.frame_size
                    },
                    headroom: 128,
                    huge: cfg.huge,
                    name: format!("{}.{end}.q{q}", cfg.name),
                })
            };
            let seg_pool = |end: &str| {
                cfg.tso
                    .then(|| {
                        Pool::new(&PoolConfig {
                            frames: cfg.pool_frames,
                            frame_size: cfg.frame_size,
                            headroom: 128,
                            huge: cfg.huge,
                            name: format!("{}.{end}.q{q}.seg", cfg.name),
                        })
                    })
                    .transpose()
            };
            let injector = |f: Faults, salt: u64| {
                (!f.is_none()).then(|| Injector {
                    faults: f,
                    rng: Rng((f.seed ^ salt).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1),
                    held: None,
                })
            };
            qa.push(MemQueue {
                id: q,
                peer_rx: ab.clone(),
                peer_rss: rss_b.clone(),
                rx: ba[i].clone(),
                tx_stats: ab_stats.clone(),
                rx_stats: ba_stats.clone(),
                pool: pool("a")?,
                seg_pool: seg_pool("a")?,
                injector: injector(cfg.faults_ab, 2 * q as u64 + 1),
                polls: 0,
                peer_polls: polls_b.clone(),
                my_polls: polls_a[i].clone(),
                pending: VecDeque::new(),
                rx_head: None,
            });
            qb.push(MemQueue {
                id: q,
                peer_rx: ba.clone(),
                peer_rss: rss_a.clone(),
                rx: ab[i].clone(),
                tx_stats: ba_stats.clone(),
                rx_stats: ab_stats.clone(),
                pool: pool("b")?,
                seg_pool: seg_pool("b")?,
                injector: injector(cfg.faults_ba, 2 * q as u64 + 2),
                polls: 0,
                peer_polls: polls_a.clone(),
                my_polls: polls_b[i].clone(),
                pending: VecDeque::new(),
                rx_head: None,
            });
        }
        let info = |end: &str, last: u8| PortInfo {
            kind: "mem",
            name: format!("{}.{end}", cfg.name),
            mac: MacAddr([0x02, 0, 0, 0, 0, last]),
            mtu: cfg.mtu,
            queues: cfg.queues.max(1),
            caps: PortCaps {
                tso: cfg.tso,
                rx_checksum: false,
                tx_checksum: false,
                rss: true,
                max_queues: u16::MAX,
            },
        };
        Ok((
            MemPort {
                info: info("a", 1),
                queues: qa,
                rss_in: rss_a,
                stats: sa,
            },
            MemPort {
                info: info("b", 2),
                queues: qb,
                rss_in: rss_b,
                stats: sb,
            },
        ))
    }

    /// Sets the MAC address this end reports.
    pub fn set_mac(&mut self, mac: MacAddr) {
        self.info.mac = mac;
    }
}

impl Port for MemPort {
    type Queue = MemQueue;

    fn info(&self) -> &PortInfo {
        &self.info
    }

    fn take_queues(&mut self) -> Vec<MemQueue> {
        std::mem::take(&mut self.queues)
    }

    /// Spreads the frames the peer sends here over this end's queues by
    /// `rss` (its table must not name more queues than this end has).
    /// Once set, it stays: a second call answers whether it is the same.
    fn configure_rss(&mut self, rss: &Rss) -> Result<bool> {
        if rss.cores() > self.info.queues as usize {
            return Ok(false);
        }
        Ok(match self.rss_in.set(rss.clone()) {
            Ok(()) => true,
            Err(_) => self
                .rss_in
                .get()
                .is_some_and(|r| r.key() == rss.key() && r.reta() == rss.reta()),
        })
    }

    fn link_stats(&self) -> LinkStats {
        let mut s = LinkStats::default();
        for (t, r) in &self.stats {
            s.rx_packets += r.rx.received.get();
            s.rx_bytes += r.rx.received_bytes.get();
            s.tx_packets += t.tx.sent.get();
            s.tx_bytes += t.tx.sent_bytes.get();
            s.tx_errors += t.tx.lost.get();
        }
        s
    }
}
