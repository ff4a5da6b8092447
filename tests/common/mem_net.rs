//! Two stacks over the in-memory wire, one thread, a manual clock: the
//! harness of `stack_mem` and `stack_cost`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bypass::app::tcp::{Conn, Ctx, Echo, TcpApp};
use bypass::port::mem::{Faults, MemConfig, MemPort, MemQueue};
use bypass::port::Port;
use bypass::runtime::{TcpWorker, Worker};
use bypass::stack::{CloseReason, ConnId, ListenOpts, Stack, StackConfig, TcpOpts};
use bypass::testing::Pair;
use bypass::time::Instant;

pub const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
pub const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
pub const SERVER6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);
pub const CLIENT6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2);

/// Two stacks on the mem wire (the crate's one test driver).
pub type Net<A, B> = Pair<MemQueue, MemQueue, A, B>;

pub fn wire(
    faults: Faults,
    frames: u32,
) -> (
    MemQueue,
    MemQueue,
    bypass::port::PortInfo,
    bypass::port::PortInfo,
) {
    wire_cfg(&wire_config(faults, frames))
}

/// The wire [`wire`] makes: `faults` both ways (seeds one apart).
pub fn wire_config(faults: Faults, frames: u32) -> MemConfig {
    MemConfig {
        faults_ab: faults,
        faults_ba: Faults {
            seed: faults.seed.wrapping_add(1),
            ..faults
        },
        pool_frames: frames,
        ring_size: 4096,
        ..Default::default()
    }
}

/// The two ends of a wire made as `cfg` says.
pub fn wire_cfg(
    cfg: &MemConfig,
) -> (
    MemQueue,
    MemQueue,
    bypass::port::PortInfo,
    bypass::port::PortInfo,
) {
    let (mut a, mut b) = MemPort::pair(cfg).unwrap();
    let (ia, ib) = (a.info().clone(), b.info().clone());
    (
        a.take_queues().pop().unwrap(),
        b.take_queues().pop().unwrap(),
        ia,
        ib,
    )
}

pub fn net<A: TcpApp, B: TcpApp>(
    faults: Faults,
    server: A,
    client: B,
    lopts: ListenOpts,
    copts: TcpOpts,
) -> Net<A, B> {
    net_on(&wire_config(faults, 8192), server, client, lopts, copts)
}

/// [`net`] over a wire made as `cfg` says.
pub fn net_on<A: TcpApp, B: TcpApp>(
    cfg: &MemConfig,
    server: A,
    client: B,
    lopts: ListenOpts,
    copts: TcpOpts,
) -> Net<A, B> {
    let (qa, qb, ia, ib) = wire_cfg(cfg);
    // Both dual-stack.
    let sc = StackConfig::new(SERVER, 24).with_addr(SERVER6.into(), 64);
    let mut s = Stack::new(qa, &ia, sc, Instant(0)).unwrap();
    s.listen(7, lopts).unwrap();
    let mut cc = StackConfig::new(CLIENT, 24).with_addr(CLIENT6.into(), 64);
    cc.connect = copts;
    let c = Stack::new(qb, &ib, cc, Instant(0)).unwrap();
    Pair::new(TcpWorker::new(s, server), TcpWorker::new(c, client))
}

pub fn opts(buf: usize) -> TcpOpts {
    TcpOpts {
        rx_buf: buf,
        tx_buf: buf,
        ..Default::default()
    }
}

/// An echo server and `app` stepped in turn, 5 µs of manual time a step,
/// until `done` holds (cost measurements: the clock is manual, so timers
/// and instruction counts repeat).
pub fn manual_run<B: TcpApp>(
    app: B,
    lopts: ListenOpts,
    o: TcpOpts,
    done: impl Fn(&B) -> bool,
) -> Net<Echo, B> {
    let mut n = net(Faults::default(), Echo::default(), app, lopts, o);
    for _ in 0..10_000_000 {
        if done(n.client.app()) {
            break;
        }
        n.now += 5;
        n.server.poll(Instant(n.now));
        n.client.poll(Instant(n.now));
    }
    n
}

/// Connections per second: `conns` at a time, each opened, one 64-byte
/// request/response, closed by the client, until `total` have closed.
pub struct Cps {
    conns: usize,
    open: usize,
    started: usize,
    total: usize,
    /// Connections closed so far.
    pub closed: usize,
    server: IpAddr,
}

impl Cps {
    pub fn new(conns: usize, total: usize, server: IpAddr) -> Cps {
        Cps {
            conns,
            open: 0,
            started: 0,
            total,
            closed: 0,
            server,
        }
    }
}

impl TcpApp for Cps {
    type Conn = usize;
    fn on_open(&mut self, c: &mut Conn<'_>) -> usize {
        c.send(&[7; 64]);
        0
    }
    fn on_data(&mut self, got: &mut usize, c: &mut Conn<'_>, d: &[u8]) -> usize {
        *got += d.len();
        if *got >= 64 {
            c.close();
        }
        d.len()
    }
    fn on_close(&mut self, _: usize, _: CloseReason) {
        self.open -= 1;
        self.closed += 1;
    }
    fn on_connect_failed(&mut self, _: ConnId) {
        self.open -= 1;
    }
    fn poll(&mut self, ctx: &mut Ctx<'_>) -> usize {
        let mut n = 0;
        while self.open < self.conns && self.started < self.total {
            ctx.connect(SocketAddr::new(self.server, 7)).unwrap();
            self.open += 1;
            self.started += 1;
            n += 1;
        }
        n
    }
}
