//! Sharding one stack over several cores: every core runs its own [`Stack`]
//! over its own queue; each TCP/UDP flow belongs to exactly one core, the
//! one RSS ([`crate::flow::Rss`]) names for it.
//!
//! Each core holds a [`Shard`]: its index, its copy of the RSS tables, and
//! its ends of the steering mesh, one bounded single-producer
//! single-consumer ring per ordered pair of cores (`crossbeam_queue`'s
//! `ArrayQueue`: two atomic indices, no lock). Nothing else is shared.
//!
//! - **Software steering** ([`Steering::Software`]), for backends that
//!   cannot spread flows our way (TAP, whose kernel side picks queues by its
//!   own hash; the in-memory wire; single-queue devices): the core that
//!   receives a TCP/UDP frame computes its owner and, if that is another
//!   core, pushes the frame onto the ring towards it; the owner processes
//!   it as if it had received it. A full ring drops the frame (counted;
//!   TCP retransmits).
//! - **Hardware spreading** ([`Steering::Hardware`]): the device was
//!   programmed with the same key and table ([`crate::port::Port::configure_rss`]),
//!   so frames already arrive on their owner; nothing is steered.
//! - **IPv6** is steered the same way (its extension headers walked past
//!   as the classifier does), and **neighbour discovery reaches every
//!   core** as ARP does; a copied solicitation is answered by every core
//!   (the peer hears the same advertisement more than once, which ND
//!   allows).
//! - **ARP reaches every core** in both modes: each core has its own
//!   neighbour cache (one smoltcp `Interface` per core), so the core that
//!   receives an ARP frame hands a copy to every other core. A copy of a
//!   request is turned into a reply first, so the other cores learn the
//!   sender without answering it again. A core that learns a neighbour
//!   wakes its own connections waiting for one.
//! - Replies go out on the sending core's own transmit queue.
//!
//! [`Stack`]: super::Stack

use std::sync::Arc;

use arrayvec::ArrayVec;
use crossbeam_queue::ArrayQueue;
use smoltcp::wire::{
    ArpOperation, ArpPacket, EthernetFrame, EthernetProtocol, Icmpv6Packet, IpProtocol, Ipv4Packet,
    Ipv6Packet, TcpPacket, UdpPacket,
};

use crate::buf::{PacketBuf, BURST};
use crate::error::{Error, Result};
use crate::flow::Rss;

/// How flows reach their owning core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Steering {
    /// The receiving core hashes each TCP/UDP frame and hands it to its
    /// owner over a ring.
    Software,
    /// The device spreads flows by the same key and table; frames are
    /// processed where they arrive (only ARP is shared).
    Hardware,
}

/// Settings of a sharded stack.
#[derive(Debug, Clone)]
pub struct ShardConfig {
    /// Key and redirection table (its core count is the number of shards).
    pub rss: Rss,
    /// How flows reach their owner.
    pub steering: Steering,
    /// Frames each ring holds (per ordered pair of cores).
    pub ring_size: usize,
}

impl ShardConfig {
    /// The symmetric key, round-robin over `cores`, software steering,
    /// rings of 1024 frames.
    pub fn software(cores: usize) -> Result<ShardConfig> {
        Ok(ShardConfig {
            rss: Rss::symmetric(cores)?,
            steering: Steering::Software,
            ring_size: 1024,
        })
    }
}

/// What travels between cores.
pub(crate) enum Msg<B> {
    /// A frame for a flow the receiving core owns.
    Frame(B),
    /// A copy of an ARP frame, to learn from.
    Arp(B),
}

type Ring<B> = ArrayQueue<Msg<B>>;

/// Where a received frame is processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// Here.
    Local,
    /// Here, and a copy goes to every other core (ARP, IPv6 neighbour
    /// discovery).
    Arp,
    /// On core `n`.
    To(usize),
}

/// One core's part of a sharded stack. Made by [`shards`]; given to
/// [`super::Stack::set_shard`].
pub struct Shard<B> {
    core: usize,
    rss: Rss,
    steering: Steering,
    /// Rings towards each core (`None` for this one).
    to: Vec<Option<Arc<Ring<B>>>>,
    /// Rings from the other cores.
    from: Vec<Arc<Ring<B>>>,
}

impl<B> std::fmt::Debug for Shard<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shard")
            .field("core", &self.core)
            .field("cores", &self.rss.cores())
            .field("steering", &self.steering)
            .finish()
    }
}

/// Makes the shards of a stack over `cfg.rss.cores()` cores, in core order,
/// wired to each other.
pub fn shards<B: PacketBuf>(cfg: &ShardConfig) -> Result<Vec<Shard<B>>> {
    let n = cfg.rss.cores();
    if cfg.ring_size < 2 {
        return Err(Error::Config(
            "steering rings need room for 2 frames".into(),
        ));
    }
    // rings[i][j]: from core i to core j.
    let rings: Vec<Vec<Option<Arc<Ring<B>>>>> = (0..n)
        .map(|i| {
            (0..n)
                .map(|j| (i != j).then(|| Arc::new(ArrayQueue::new(cfg.ring_size))))
                .collect()
        })
        .collect();
    Ok((0..n)
        .map(|c| Shard {
            core: c,
            rss: cfg.rss.clone(),
            steering: cfg.steering,
            to: rings[c].clone(),
            from: (0..n).filter_map(|i| rings[i][c].clone()).collect(),
        })
        .collect())
}

impl<B: PacketBuf> Shard<B> {
    /// This core's index (0-based, in the run's core order).
    pub fn core(&self) -> usize {
        self.core
    }

    /// Number of cores.
    pub fn cores(&self) -> usize {
        self.rss.cores()
    }

    /// The RSS tables.
    pub fn rss(&self) -> &Rss {
        &self.rss
    }

    /// How flows reach their owner.
    pub fn steering(&self) -> Steering {
        self.steering
    }

    /// Where a frame received on this core's queue is processed. Anything
    /// that does not parse stays here (the stack counts it as malformed).
    #[inline]
    pub(crate) fn route(&self, frame: &[u8]) -> Route {
        let Ok(eth) = EthernetFrame::new_checked(frame) else {
            return Route::Local;
        };
        match eth.ethertype() {
            EthernetProtocol::Arp => Route::Arp,
            EthernetProtocol::Ipv4 if self.steering == Steering::Software => {
                let Ok(ip) = Ipv4Packet::new_checked(eth.payload()) else {
                    return Route::Local;
                };
                if ip.more_frags() || ip.frag_offset() != 0 {
                    return Route::Local;
                }
                let (sport, dport) = match ip.next_header() {
                    IpProtocol::Tcp => match TcpPacket::new_checked(ip.payload()) {
                        Ok(t) => (t.src_port(), t.dst_port()),
                        Err(_) => return Route::Local,
                    },
                    IpProtocol::Udp => match UdpPacket::new_checked(ip.payload()) {
                        Ok(u) => (u.src_port(), u.dst_port()),
                        Err(_) => return Route::Local,
                    },
                    // ICMP and the rest: any core answers.
                    _ => return Route::Local,
                };
                match self.rss.core_v4(ip.src_addr(), ip.dst_addr(), sport, dport) {
                    c if c == self.core => Route::Local,
                    c => Route::To(c),
                }
            }
            EthernetProtocol::Ipv6 => {
                let Ok(ip) = Ipv6Packet::new_checked(eth.payload()) else {
                    return Route::Local;
                };
                let Some((next, l4)) = super::classify::upper_layer(&ip) else {
                    return Route::Local;
                };
                let (sport, dport) = match next {
                    IpProtocol::Icmpv6 => {
                        let nd =
                            Icmpv6Packet::new_checked(l4).is_ok_and(|i| i.msg_type().is_ndisc());
                        return if nd { Route::Arp } else { Route::Local };
                    }
                    _ if self.steering == Steering::Hardware => return Route::Local,
                    IpProtocol::Tcp => match TcpPacket::new_checked(l4) {
                        Ok(t) => (t.src_port(), t.dst_port()),
                        Err(_) => return Route::Local,
                    },
                    IpProtocol::Udp => match UdpPacket::new_checked(l4) {
                        Ok(u) => (u.src_port(), u.dst_port()),
                        Err(_) => return Route::Local,
                    },
                    _ => return Route::Local,
                };
                let (src, dst) = (ip.src_addr().into(), ip.dst_addr().into());
                match self.rss.core_ip(src, dst, sport, dport) {
                    c if c == self.core => Route::Local,
                    c => Route::To(c),
                }
            }
            _ => Route::Local,
        }
    }

    /// Hands a frame to core `to`; gives it back if the ring is full.
    #[inline]
    pub(crate) fn send(&self, to: usize, buf: B) -> std::result::Result<(), B> {
        match self.to.get(to).and_then(Option::as_ref) {
            Some(r) => r.push(Msg::Frame(buf)).map_err(|m| match m {
                Msg::Frame(b) | Msg::Arp(b) => b,
            }),
            None => Err(buf),
        }
    }

    /// Copies an ARP frame for every other core, allocating with `alloc`;
    /// returns (copies handed on, copies dropped: no buffer or ring full).
    pub(crate) fn replicate_arp(
        &self,
        frame: &[u8],
        mut alloc: impl FnMut() -> Option<B>,
    ) -> (u64, u64) {
        let (mut sent, mut dropped) = (0, 0);
        for r in self.to.iter().flatten() {
            let Some(mut b) = alloc().filter(|b| b.capacity() >= frame.len()) else {
                dropped += 1;
                continue;
            };
            b.room_mut()[..frame.len()].copy_from_slice(frame);
            b.set_len(frame.len());
            learn_only(b.data_mut());
            match r.push(Msg::Arp(b)) {
                Ok(()) => sent += 1,
                Err(_) => dropped += 1,
            }
        }
        (sent, dropped)
    }

    /// Takes up to a burst of frames from the other cores' rings.
    pub(crate) fn drain(&self, out: &mut ArrayVec<Msg<B>, BURST>) {
        for r in &self.from {
            while !out.is_full() {
                match r.pop() {
                    Some(m) => out.push(m),
                    None => break,
                }
            }
        }
    }
}

/// Turns an ARP request into a reply in place, so that a core handed a copy
/// learns the sender's address without answering (the core that received
/// the original answers). Only called on frames that parsed as ARP.
fn learn_only(frame: &mut [u8]) {
    let Ok(mut eth) = EthernetFrame::new_checked(frame) else {
        return;
    };
    if let Ok(mut arp) = ArpPacket::new_checked(eth.payload_mut()) {
        if arp.operation() == ArpOperation::Request {
            arp.set_operation(ArpOperation::Reply);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buf::{Pool, PoolBuf};
    use smoltcp::wire::{ArpRepr, EthernetAddress, EthernetRepr, Ipv4Address};

    fn pool() -> Pool {
        crate::testing::pool(64, 2048, 128)
    }

    fn arp_request() -> Vec<u8> {
        let arp = ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Request,
            source_hardware_addr: EthernetAddress([2, 0, 0, 0, 0, 9]),
            source_protocol_addr: Ipv4Address::new(10, 0, 0, 9),
            target_hardware_addr: EthernetAddress([0; 6]),
            target_protocol_addr: Ipv4Address::new(10, 0, 0, 1),
        };
        let eth = EthernetRepr {
            src_addr: EthernetAddress([2, 0, 0, 0, 0, 9]),
            dst_addr: EthernetAddress::BROADCAST,
            ethertype: EthernetProtocol::Arp,
        };
        let mut v = vec![0u8; 14 + arp.buffer_len()];
        let mut f = EthernetFrame::new_unchecked(&mut v[..]);
        eth.emit(&mut f);
        arp.emit(&mut ArpPacket::new_unchecked(f.payload_mut()));
        v
    }

    #[test]
    fn rings_connect_every_ordered_pair() {
        let sh: Vec<Shard<PoolBuf>> = shards(&ShardConfig::software(3).unwrap()).unwrap();
        let p = pool();
        for (from, s) in sh.iter().enumerate() {
            for to in 0..3 {
                let mut b = p.alloc().unwrap();
                b.set_len(1);
                b.data_mut()[0] = (from * 3 + to) as u8;
                let r = s.send(to, b);
                assert_eq!(r.is_err(), from == to, "{from} -> {to}");
            }
        }
        for (to, s) in sh.iter().enumerate() {
            let mut got = ArrayVec::new();
            s.drain(&mut got);
            let mut tags: Vec<u8> = got
                .iter()
                .map(|m| match m {
                    Msg::Frame(b) => b.data()[0],
                    Msg::Arp(_) => panic!("no ARP sent"),
                })
                .collect();
            tags.sort();
            let want: Vec<u8> = (0..3)
                .filter(|&f| f != to)
                .map(|f| (f * 3 + to) as u8)
                .collect();
            assert_eq!(tags, want);
        }
    }

    #[test]
    fn a_full_ring_gives_the_frame_back() {
        let mut cfg = ShardConfig::software(2).unwrap();
        cfg.ring_size = 2;
        let sh: Vec<Shard<PoolBuf>> = shards(&cfg).unwrap();
        let p = pool();
        assert!(sh[0].send(1, p.alloc().unwrap()).is_ok());
        assert!(sh[0].send(1, p.alloc().unwrap()).is_ok());
        assert!(sh[0].send(1, p.alloc().unwrap()).is_err());
        drop(sh);
        assert_eq!(p.stats().in_use, 0, "frames in rings go back to the pool");
    }

    #[test]
    fn arp_copies_are_replies_and_go_to_every_other_core() {
        let sh: Vec<Shard<PoolBuf>> = shards(&ShardConfig::software(3).unwrap()).unwrap();
        let p = pool();
        let req = arp_request();
        assert_eq!(sh[1].route(&req), Route::Arp);
        assert_eq!(sh[1].replicate_arp(&req, || p.alloc()), (2, 0));
        for c in [0, 2] {
            let mut got = ArrayVec::new();
            sh[c].drain(&mut got);
            assert_eq!(got.len(), 1);
            let Msg::Arp(b) = &got[0] else {
                panic!("an ARP copy")
            };
            let eth = EthernetFrame::new_checked(b.data()).unwrap();
            let arp = ArpPacket::new_checked(eth.payload()).unwrap();
            assert_eq!(arp.operation(), ArpOperation::Reply);
            assert_eq!(arp.source_protocol_addr(), &[10, 0, 0, 9]);
        }
        let mut got = ArrayVec::new();
        sh[1].drain(&mut got);
        assert!(got.is_empty(), "no copy to the receiving core");
        // No buffer: counted as dropped.
        assert_eq!(sh[0].replicate_arp(&req, || None), (0, 2));
    }

    /// A TCP segment from `src:sport` to 10.0.0.1:80.
    fn tcp_frame(src: Ipv4Address, sport: u16) -> Vec<u8> {
        use smoltcp::wire::{TcpControl, TcpRepr, TcpSeqNumber};
        let ends = crate::testing::Ends {
            src_mac: [2, 0, 0, 0, 0, 2],
            dst_mac: [2, 0, 0, 0, 0, 1],
            src_ip: src,
            dst_ip: Ipv4Address::new(10, 0, 0, 1),
        };
        let tcp = TcpRepr {
            control: TcpControl::None,
            ack_number: Some(TcpSeqNumber(1)),
            window_len: 1000,
            max_seg_size: None,
            payload: b"hello",
            ..crate::testing::syn(sport, 80, 1)
        };
        crate::testing::tcp_vec(&ends, &tcp)
    }

    #[test]
    fn tcp_frames_go_to_the_core_rss_names() {
        let sh: Vec<Shard<PoolBuf>> = shards(&ShardConfig::software(2).unwrap()).unwrap();
        let src = Ipv4Address::new(10, 0, 0, 2);
        let mut seen = [0; 2];
        for sport in 40000..40200 {
            let f = tcp_frame(src, sport);
            let owner = sh[0]
                .rss()
                .core_v4(src, Ipv4Address::new(10, 0, 0, 1), sport, 80);
            seen[owner] += 1;
            for (c, s) in sh.iter().enumerate() {
                let want = if owner == c {
                    Route::Local
                } else {
                    Route::To(owner)
                };
                assert_eq!(s.route(&f), want, "port {sport} on core {c}");
            }
        }
        assert!(seen[0] > 50 && seen[1] > 50, "{seen:?}");
    }

    /// The cost of steering one frame: the owner lookup (parse + Toeplitz +
    /// RETA) on the receiving core, the push, and the pop on the owner.
    /// Run with `cargo test --release --lib steer_cost -- --ignored
    /// --nocapture`; `STEER_FRAMES` sets the count (for callgrind, run two
    /// counts and divide the difference).
    #[test]
    #[ignore]
    fn steer_cost() {
        let n: usize = std::env::var("STEER_FRAMES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(10_000_000);
        let sh: Vec<Shard<PoolBuf>> = shards(&ShardConfig::software(2).unwrap()).unwrap();
        let src = Ipv4Address::new(10, 0, 0, 2);
        // Frames owned by core 1, received on core 0.
        let frames: Vec<Vec<u8>> = (40000..u16::MAX)
            .filter(|&p| {
                sh[0]
                    .rss()
                    .core_v4(src, Ipv4Address::new(10, 0, 0, 1), p, 80)
                    == 1
            })
            .take(64)
            .map(|p| tcp_frame(src, p))
            .collect();
        let p = pool();
        let mut bufs: Vec<PoolBuf> = (0..BURST).map(|_| p.alloc().unwrap()).collect();
        let mut got = ArrayVec::new();
        let t = std::time::Instant::now();
        let mut routed = 0usize;
        let mut i = 0;
        while i < n {
            for _ in 0..BURST {
                let f = &frames[i % frames.len()];
                i += 1;
                if let Route::To(c) = sh[0].route(std::hint::black_box(f)) {
                    let b = bufs.pop().unwrap();
                    if sh[0].send(c, b).is_ok() {
                        routed += 1;
                    }
                }
            }
            sh[1].drain(&mut got);
            for m in got.drain(..) {
                match m {
                    Msg::Frame(b) | Msg::Arp(b) => bufs.push(b),
                }
            }
        }
        let dt = t.elapsed();
        assert_eq!(routed, i);
        eprintln!(
            "steer_cost: {i} frames, {:.1} ns per steered frame",
            dt.as_nanos() as f64 / i as f64
        );
        // The owner lookup alone (every received frame pays it).
        let t = std::time::Instant::now();
        let mut local = 0usize;
        for k in 0..n {
            if sh[1].route(std::hint::black_box(&frames[k % frames.len()])) == Route::Local {
                local += 1;
            }
        }
        assert_eq!(local, n);
        eprintln!(
            "route_cost: {:.1} ns per frame (owner lookup only)",
            t.elapsed().as_nanos() as f64 / n as f64
        );
    }

    #[test]
    fn garbage_stays_local_and_hardware_mode_steers_nothing() {
        let sh: Vec<Shard<PoolBuf>> = shards(&ShardConfig::software(2).unwrap()).unwrap();
        assert_eq!(sh[0].route(&[]), Route::Local);
        assert_eq!(sh[0].route(&[0u8; 20]), Route::Local);
        let mut cfg = ShardConfig::software(2).unwrap();
        cfg.steering = Steering::Hardware;
        let hw: Vec<Shard<PoolBuf>> = shards(&cfg).unwrap();
        assert_eq!(hw[0].route(&arp_request()), Route::Arp);
    }
}
