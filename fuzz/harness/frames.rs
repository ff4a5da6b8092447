//! Fuzz harness: arbitrary frames into a live stack.
//!
//! Shared by the `frames` fuzz target and by `tests/fuzz_replay.rs`, which
//! replays the corpus and every crash input as a normal test.
//!
//! A server stack listens on port 80 (backlog 4, at most 8 connections)
//! and a client stack has two established connections to it, over an
//! in-memory wire, with a manual clock and fixed random seeds (so sequence
//! numbers are the same on every run and the fuzzer can learn them). The
//! input is a list of records, each injected into the server's receive
//! path between the legitimate traffic:
//!
//! ```text
//! record = ctl:u8 len:u16le bytes[len]
//! ctl & 3   0: bytes are a whole Ethernet frame, sent as is
//!           1: bytes are a TCP segment from the client's address; IPv4 and
//!              Ethernet headers are added and the TCP checksum fixed
//!           2: same for UDP, 3: same for ICMP
//! ctl & 4   (TCP) ports rewritten to those of live connection (ctl >> 3) & 1
//!           (UDP, ICMP) over IPv6 instead (ICMPv6), from CLIENT6 to SERVER6
//! ctl & 12  (TCP) 8: over IPv6, from CLIENT6 to SERVER6
//! ctl >> 4  clock step: 0 -> 10 us, k -> 2^(k+6) us (up to ~2 s)
//! ```
//!
//! Both stacks are dual-stack (the live connections are IPv4).
//!
//! Afterwards both stacks run until quiet and then past every timeout, and
//! the harness checks: no panic, connection counts within the limits, and
//! both packet pools back at zero buffers in use (nothing leaked).

use std::collections::VecDeque;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4};
use std::sync::{Arc, Mutex};

use bypass::app::tcp::{Conn, Ctx, Echo, TcpApp};
use bypass::buf::{Burst, PoolBuf, PoolStats};
use bypass::port::mem::{MemConfig, MemPort, MemQueue};
use bypass::port::{Port, PortQueue};
use bypass::runtime::{TcpWorker, Worker};
use bypass::stack::{ListenOpts, Stack, StackConfig, TcpOpts};
use bypass::testing::Pair;
use bypass::time::Instant;
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, Icmpv4Packet, Icmpv6Packet,
    IpProtocol, Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr, TcpPacket, UdpPacket,
};

/// The server's address.
pub const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
/// The client's address.
pub const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
/// The server's IPv6 address.
pub const SERVER6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);
/// The client's IPv6 address.
pub const CLIENT6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2);
/// The server's MAC (end A of the wire).
pub const SERVER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
/// The client's MAC (end B of the wire).
pub const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
/// The client's local ports (the two live connections).
pub const CLIENT_PORTS: [u16; 2] = [40000, 40001];
/// The listening port.
pub const LISTEN_PORT: u16 = 80;
const MAX_CONNS: usize = 8;
const BACKLOG: usize = 4;
/// Most records taken from one input.
const MAX_RECORDS: usize = 256;

/// A port queue that first hands out frames injected from outside, then
/// the wire's.
pub struct Inject {
    inner: MemQueue,
    frames: Arc<Mutex<VecDeque<Vec<u8>>>>,
}

impl PortQueue for Inject {
    type Buf = PoolBuf;

    fn rx_burst(&mut self, burst: &mut Burst<PoolBuf>) -> usize {
        let mut n = 0;
        let mut q = self.frames.lock().expect("injector lock");
        while !burst.is_full() {
            let Some(f) = q.pop_front() else { break };
            // The pool may be empty: the frame is then lost, like a NIC
            // dropping for want of descriptors.
            if let Some(mut b) = self.inner.alloc() {
                if b.copy_from(&f) {
                    burst.push(b);
                    n += 1;
                }
            }
        }
        drop(q);
        n + self.inner.rx_burst(burst)
    }
    fn tx_burst(&mut self, burst: &mut Burst<PoolBuf>) -> usize {
        self.inner.tx_burst(burst)
    }
    fn alloc(&mut self) -> Option<PoolBuf> {
        self.inner.alloc()
    }
    fn queue_id(&self) -> u16 {
        self.inner.queue_id()
    }
    fn pool_stats(&self) -> PoolStats {
        self.inner.pool_stats()
    }
    fn flush(&mut self) {
        self.inner.flush()
    }
}

/// Opens two connections and says hello on each.
#[derive(Default)]
pub struct Opener {
    issued: usize,
    /// Connections established so far.
    pub opened: usize,
}
impl TcpApp for Opener {
    type Conn = ();
    fn on_open(&mut self, c: &mut Conn<'_>) {
        self.opened += 1;
        c.send(b"hello");
    }
    fn on_data(&mut self, _: &mut (), _: &mut Conn<'_>, d: &[u8]) -> usize {
        d.len()
    }
    fn poll(&mut self, ctx: &mut Ctx<'_>) -> usize {
        let mut n = 0;
        while self.issued < CLIENT_PORTS.len() {
            // Cannot fail: the table is empty and two ports are free.
            if ctx
                .connect(SocketAddrV4::new(SERVER, LISTEN_PORT).into())
                .is_ok()
            {
                n += 1;
            }
            self.issued += 1;
        }
        n
    }
}

/// The two stacks (the crate's test driver, [`Pair`], which the rig
/// derefs to: the server listening and echoing, the client holding two
/// connections) and the injector.
pub struct Rig {
    pair: Pair<Inject, MemQueue, Echo, Opener>,
    inject: Arc<Mutex<VecDeque<Vec<u8>>>>,
}

impl std::ops::Deref for Rig {
    type Target = Pair<Inject, MemQueue, Echo, Opener>;
    fn deref(&self) -> &Self::Target {
        &self.pair
    }
}

impl std::ops::DerefMut for Rig {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.pair
    }
}

impl Rig {
    /// Builds the rig and establishes the two connections.
    pub fn new() -> Rig {
        let (mut a, mut b) = MemPort::pair(&MemConfig {
            pool_frames: 512,
            ring_size: 256,
            ..Default::default()
        })
        .expect("mem wire");
        let (ia, ib) = (a.info().clone(), b.info().clone());
        assert_eq!(ia.mac.0, SERVER_MAC);
        assert_eq!(ib.mac.0, CLIENT_MAC);
        let inject = Arc::new(Mutex::new(VecDeque::new()));
        let qa = Inject {
            inner: a.take_queues().pop().expect("queue"),
            frames: inject.clone(),
        };
        let qb = b.take_queues().pop().expect("queue");
        let tcp = TcpOpts {
            rx_buf: 4096,
            tx_buf: 4096,
            timeout_ms: 3_000,
            // Well inside the settling time below, so that connections to
            // peers that vanish must be gone by the end.
            dead_peer_ms: 20_000,
            ..Default::default()
        };
        let mut sc = StackConfig::new(SERVER, 24).with_addr(SERVER6.into(), 64);
        sc.max_conns = MAX_CONNS;
        sc.random_seed = Some(0x5eed_0001);
        let mut s = Stack::new(qa, &ia, sc, Instant(0)).expect("server stack");
        s.listen(
            LISTEN_PORT,
            ListenOpts {
                backlog: BACKLOG,
                tcp,
                ..Default::default()
            },
        )
        .expect("listen");
        let mut cc = StackConfig::new(CLIENT, 24).with_addr(CLIENT6.into(), 64);
        cc.ephemeral = (CLIENT_PORTS[0], CLIENT_PORTS[1]);
        cc.random_seed = Some(0x5eed_0002);
        cc.connect = tcp;
        let c = Stack::new(qb, &ib, cc, Instant(0)).expect("client stack");
        let mut rig = Rig {
            pair: Pair::new(
                TcpWorker::new(s, Echo::default()),
                TcpWorker::new(c, Opener::default()),
            ),
            inject,
        };
        for _ in 0..1000 {
            if rig.client.app().opened == CLIENT_PORTS.len() {
                break;
            }
            if rig.step(100) == 0 {
                rig.idle_jump();
            }
        }
        assert_eq!(rig.client.app().opened, 2, "the rig's connections open");
        rig
    }

    /// Queues a frame for the server's next receive burst.
    pub fn inject(&mut self, frame: Vec<u8>) {
        self.inject.lock().expect("injector lock").push_back(frame);
    }

    /// Checks the limits hold.
    pub fn check_limits(&self) {
        let n = self.server.stack().conn_count();
        assert!(n <= MAX_CONNS, "{n} connections > max_conns {MAX_CONNS}");
        assert_eq!(n as u64, self.server.stack().stats().conns.get());
    }

    /// Runs both sides until quiet, then past every timeout (handshake,
    /// retransmission, TIME-WAIT); checks nothing leaked.
    pub fn settle_and_check(&mut self) {
        for _ in 0..2000 {
            if self.step(100) == 0 {
                break;
            }
        }
        self.check_limits();
        // Close everything, then let every timer run out.
        let now = Instant(self.now);
        self.pair.server.finish(now);
        self.pair.client.finish(now);
        for _ in 0..400 {
            self.step(500_000);
        }
        self.check_limits();
        for (who, st) in [
            ("server", self.server.stack().queue().pool_stats()),
            ("client", self.client.stack().queue().pool_stats()),
        ] {
            assert_eq!(st.in_use, 0, "{who} pool leaked buffers: {st:?}");
        }
        assert_eq!(
            self.server.stack().conn_count(),
            0,
            "connections linger after every timeout"
        );
    }
}

impl Default for Rig {
    fn default() -> Self {
        Self::new()
    }
}

/// Wraps an L4 payload in IPv4 and Ethernet headers from the client to the
/// server and fixes the L4 checksum (when the header parses).
pub fn wrap(proto: IpProtocol, l4: &[u8], ports: Option<(u16, u16)>) -> Vec<u8> {
    let l4 = &l4[..l4.len().min(1480)];
    let ip = Ipv4Repr {
        src_addr: CLIENT,
        dst_addr: SERVER,
        next_header: proto,
        payload_len: l4.len(),
        hop_limit: 64,
    };
    let eth = EthernetRepr {
        src_addr: EthernetAddress(CLIENT_MAC),
        dst_addr: EthernetAddress(SERVER_MAC),
        ethertype: EthernetProtocol::Ipv4,
    };
    let mut v = vec![0u8; 14 + 20 + l4.len()];
    let mut f = EthernetFrame::new_unchecked(&mut v[..]);
    eth.emit(&mut f);
    let mut p = Ipv4Packet::new_unchecked(f.payload_mut());
    ip.emit(&mut p, &ChecksumCapabilities::default());
    let body = p.payload_mut();
    body.copy_from_slice(l4);
    let (src, dst) = (CLIENT.into(), SERVER.into());
    match proto {
        IpProtocol::Tcp => {
            if let Ok(mut t) = TcpPacket::new_checked(&mut *body) {
                if let Some((s, d)) = ports {
                    t.set_src_port(s);
                    t.set_dst_port(d);
                }
                t.fill_checksum(&src, &dst);
            }
        }
        IpProtocol::Udp => {
            if let Ok(mut u) = UdpPacket::new_checked(&mut *body) {
                u.fill_checksum(&src, &dst);
            }
        }
        IpProtocol::Icmp => {
            if let Ok(mut i) = Icmpv4Packet::new_checked(&mut *body) {
                i.fill_checksum();
            }
        }
        _ => {}
    }
    v
}

/// Wraps an L4 payload in IPv6 and Ethernet headers from the client to the
/// server and fixes the L4 checksum (when the header parses).
pub fn wrap6(proto: IpProtocol, l4: &[u8]) -> Vec<u8> {
    let l4 = &l4[..l4.len().min(1460)];
    let ip = Ipv6Repr {
        src_addr: CLIENT6,
        dst_addr: SERVER6,
        next_header: proto,
        payload_len: l4.len(),
        hop_limit: 255,
    };
    let eth = EthernetRepr {
        src_addr: EthernetAddress(CLIENT_MAC),
        dst_addr: EthernetAddress(SERVER_MAC),
        ethertype: EthernetProtocol::Ipv6,
    };
    let mut v = vec![0u8; 14 + 40 + l4.len()];
    let mut f = EthernetFrame::new_unchecked(&mut v[..]);
    eth.emit(&mut f);
    let mut p = Ipv6Packet::new_unchecked(f.payload_mut());
    ip.emit(&mut p);
    let body = p.payload_mut();
    body.copy_from_slice(l4);
    let (src, dst) = (CLIENT6.into(), SERVER6.into());
    match proto {
        IpProtocol::Tcp => {
            if let Ok(mut t) = TcpPacket::new_checked(&mut *body) {
                t.fill_checksum(&src, &dst);
            }
        }
        IpProtocol::Udp => {
            if let Ok(mut u) = UdpPacket::new_checked(&mut *body) {
                u.fill_checksum(&src, &dst);
            }
        }
        IpProtocol::Icmpv6 => {
            if let Ok(mut i) = Icmpv6Packet::new_checked(&mut *body) {
                i.fill_checksum(&CLIENT6, &SERVER6);
            }
        }
        _ => {}
    }
    v
}

/// Splits an input into frames and clock steps.
pub fn records(data: &[u8]) -> Vec<(Vec<u8>, u64)> {
    let mut out = Vec::new();
    let mut rest = data;
    while rest.len() >= 3 && out.len() < MAX_RECORDS {
        let ctl = rest[0];
        let len = u16::from_le_bytes([rest[1], rest[2]]) as usize;
        let body = &rest[3..];
        let len = len.min(body.len()).min(1514);
        let (bytes, tail) = body.split_at(len);
        rest = tail;
        let ports = (ctl & 4 != 0).then(|| (CLIENT_PORTS[((ctl >> 3) & 1) as usize], LISTEN_PORT));
        let v6 = ctl & 4 != 0;
        let frame = match ctl & 3 {
            0 => bytes.to_vec(),
            1 if ctl & 12 == 8 => wrap6(IpProtocol::Tcp, bytes),
            1 => wrap(IpProtocol::Tcp, bytes, ports),
            2 if v6 => wrap6(IpProtocol::Udp, bytes),
            2 => wrap(IpProtocol::Udp, bytes, None),
            _ if v6 => wrap6(IpProtocol::Icmpv6, bytes),
            _ => wrap(IpProtocol::Icmp, bytes, None),
        };
        let k = ctl >> 4;
        let step = if k == 0 { 10 } else { 1u64 << (k + 6) };
        out.push((frame, step));
    }
    out
}

/// One fuzz input.
pub fn run(data: &[u8]) {
    let recs = records(data);
    let mut rig = Rig::new();
    for (frame, step) in recs {
        rig.inject(frame);
        rig.step(step);
        rig.check_limits();
    }
    rig.settle_and_check();
}
