//! Sharded stacks: two cores on each end of a two-queue in-memory wire,
//! all four workers driven from one thread with a manual clock (so the
//! test is deterministic and needs no spare CPUs). Queue *i* of one end is
//! cabled to queue *i* of the other, so a frame sent by core *i* arrives on
//! the peer's core *i*; whether that core owns the flow depends on the two
//! ends' RSS tables, which the tests choose.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bypass::app::tcp::{Conn, Ctx, Echo, TcpApp};
use bypass::flow::{Reta, Rss, RssKey};
use bypass::port::mem::{Faults, MemConfig, MemPort, MemQueue};
use bypass::port::{Port, PortQueue};
use bypass::runtime::{TcpWorker, Worker};
use bypass::stack::shard::{shards, ShardConfig, Steering};
use bypass::stack::{CloseReason, ConnId, ListenOpts, Stack, StackConfig, StackStats, TcpOpts};
use bypass::time::Instant;

mod common;
use common::client::pattern;

const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const SERVER6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);
const CLIENT6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2);
const CORES: usize = 2;

#[derive(Default)]
struct Flow {
    salt: u8,
    sent: usize,
    got: usize,
    bad: usize,
}

/// One core's client: opens `want` connections once `go` is set, streams
/// `total` bytes on each (a pattern salted per connection), checks the
/// echo byte by byte, closes when all came back.
struct Client {
    go: bool,
    want: usize,
    total: usize,
    opened: usize,
    done: usize,
    closed_normal: usize,
    closed_reset: usize,
    failed: usize,
    /// Open again in place of a connection that failed (counted in
    /// `retried`, not `failed`).
    retry: bool,
    retried: usize,
    bad: usize,
    /// Local ports of the connections opened (to check their hash).
    ports: Vec<u16>,
    /// The server's address.
    server: IpAddr,
}

impl Client {
    fn new(want: usize, total: usize) -> Client {
        Client {
            go: true,
            want,
            total,
            opened: 0,
            done: 0,
            closed_normal: 0,
            closed_reset: 0,
            failed: 0,
            retry: false,
            retried: 0,
            bad: 0,
            ports: Vec::new(),
            server: SERVER.into(),
        }
    }

    fn pump(&self, f: &mut Flow, c: &mut Conn<'_>) {
        common::client::send_pattern::<2048>(c, &mut f.sent, self.total, f.salt);
    }
}

impl TcpApp for Client {
    type Conn = Flow;
    fn on_open(&mut self, c: &mut Conn<'_>) -> Flow {
        let port = c.local().map(|a| a.port()).unwrap_or(0);
        self.ports.push(port);
        let mut f = Flow {
            salt: port as u8,
            ..Default::default()
        };
        self.pump(&mut f, c);
        f
    }
    fn on_data(&mut self, f: &mut Flow, c: &mut Conn<'_>, d: &[u8]) -> usize {
        for (i, b) in d.iter().enumerate() {
            if *b != pattern(f.got + i, f.salt) {
                f.bad += 1;
            }
        }
        f.got += d.len();
        if f.got == self.total && f.sent == self.total {
            self.done += 1;
            c.close();
        }
        d.len()
    }
    fn on_writable(&mut self, f: &mut Flow, c: &mut Conn<'_>) {
        self.pump(f, c);
    }
    fn on_close(&mut self, f: Flow, r: CloseReason) {
        self.bad += f.bad;
        match r {
            CloseReason::Normal => self.closed_normal += 1,
            CloseReason::Reset => self.closed_reset += 1,
        }
    }
    fn on_connect_failed(&mut self, _id: ConnId) {
        if self.retry {
            self.retried += 1;
            self.opened -= 1;
        } else {
            self.failed += 1;
        }
    }
    fn poll(&mut self, ctx: &mut Ctx<'_>) -> usize {
        let mut n = 0;
        while self.go && self.opened < self.want && n < 16 {
            ctx.connect(SocketAddr::new(self.server, 7)).unwrap();
            self.opened += 1;
            n += 1;
        }
        n
    }
}

struct Net {
    servers: Vec<TcpWorker<MemQueue, Echo>>,
    clients: Vec<TcpWorker<MemQueue, Client>>,
    client_rss: Rss,
    /// The server's and the client's addresses (one family).
    ends: (IpAddr, IpAddr),
    now: u64,
}

/// How both ends shard.
#[derive(Clone, Copy)]
struct Mode {
    steering: Steering,
    ring_size: usize,
    /// Program each end of the wire with its stack's RSS
    /// (`Port::configure_rss`), so the wire spreads flows as a NIC does.
    wire_rss: bool,
}

const SOFTWARE: Mode = Mode {
    steering: Steering::Software,
    ring_size: 1024,
    wire_rss: false,
};

fn sharded(
    queues: Vec<MemQueue>,
    info: &bypass::port::PortInfo,
    cfg: StackConfig,
    rss: &Rss,
    mode: Mode,
) -> Vec<Stack<MemQueue>> {
    let sh = shards(&ShardConfig {
        rss: rss.clone(),
        steering: mode.steering,
        ring_size: mode.ring_size,
    })
    .unwrap();
    queues
        .into_iter()
        .zip(sh)
        .map(|(q, s)| {
            let mut st = Stack::new(q, info, cfg.clone(), Instant(0)).unwrap();
            st.set_shard(s).unwrap();
            st
        })
        .collect()
}

/// Two cores each side. The server spreads round-robin; the client uses
/// `client_reta`. Each client core opens `per_core` connections.
fn net(client_reta: Reta, per_core: usize, total: usize, faults: Faults) -> Net {
    net_in(client_reta, per_core, total, faults, SOFTWARE)
}

fn net_in(client_reta: Reta, per_core: usize, total: usize, faults: Faults, mode: Mode) -> Net {
    net_ends(
        client_reta,
        per_core,
        total,
        faults,
        mode,
        (SERVER.into(), CLIENT.into()),
    )
}

/// [`net_in`] with both stacks dual-stack and the clients connecting to
/// `ends.0` from `ends.1`.
fn net_ends(
    client_reta: Reta,
    per_core: usize,
    total: usize,
    faults: Faults,
    mode: Mode,
    ends: (IpAddr, IpAddr),
) -> Net {
    let (mut a, mut b) = MemPort::pair(&MemConfig {
        queues: CORES as u16,
        ring_size: 4096,
        pool_frames: 8192,
        faults_ab: faults,
        faults_ba: Faults {
            seed: faults.seed.wrapping_add(1),
            ..faults
        },
        ..Default::default()
    })
    .unwrap();
    let (ia, ib) = (a.info().clone(), b.info().clone());
    let server_rss = Rss::new(RssKey::SYMMETRIC, Reta::spread(CORES).unwrap());
    let client_rss = Rss::new(RssKey::SYMMETRIC, client_reta);
    if mode.wire_rss {
        assert!(a.configure_rss(&server_rss).unwrap());
        assert!(b.configure_rss(&client_rss).unwrap());
    }
    let lopts = ListenOpts {
        tcp: TcpOpts {
            rx_buf: 8192,
            tx_buf: 8192,
            ..Default::default()
        },
        ..Default::default()
    };
    let servers = sharded(
        a.take_queues(),
        &ia,
        StackConfig::new(SERVER, 24).with_addr(SERVER6.into(), 64),
        &server_rss,
        mode,
    )
    .into_iter()
    .map(|mut s| {
        s.listen(7, lopts).unwrap();
        TcpWorker::new(s, Echo::default())
    })
    .collect();
    let mut cc = StackConfig::new(CLIENT, 24).with_addr(CLIENT6.into(), 64);
    cc.connect = lopts.tcp;
    let clients = sharded(b.take_queues(), &ib, cc, &client_rss, mode)
        .into_iter()
        .map(|s| {
            let mut c = Client::new(per_core, total);
            c.server = ends.0;
            TcpWorker::new(s, c)
        })
        .collect();
    Net {
        servers,
        clients,
        client_rss,
        ends,
        now: 0,
    }
}

impl Net {
    fn poll_all(&mut self) -> usize {
        let t = Instant(self.now);
        let mut w = 0;
        for s in &mut self.servers {
            w += s.poll(t);
        }
        for c in &mut self.clients {
            w += c.poll(t);
        }
        w
    }

    fn drive(&mut self, max: usize, mut done: impl FnMut(&Self) -> bool) -> bool {
        for _ in 0..max {
            if done(self) {
                return true;
            }
            self.now += 50;
            if self.poll_all() == 0 {
                let next = self
                    .servers
                    .iter()
                    .map(|s| s.stack().next_timer())
                    .chain(self.clients.iter().map(|c| c.stack().next_timer()))
                    .flatten()
                    .min();
                match next {
                    Some(t) if t > self.now => self.now = t,
                    _ => self.now += 1000,
                }
            }
        }
        done(self)
    }

    fn server_stats(&self, core: usize) -> &StackStats {
        self.servers[core].stack().stats()
    }

    fn client_stats(&self, core: usize) -> &StackStats {
        self.clients[core].stack().stats()
    }

    fn steer_drops(&self) -> u64 {
        (0..CORES)
            .map(|c| {
                self.server_stats(c).steer_drops.get() + self.client_stats(c).steer_drops.get()
            })
            .sum()
    }

    fn all_closed(&self) -> bool {
        self.servers.iter().all(|s| s.stack().conn_count() == 0)
            && self.clients.iter().all(|c| c.stack().conn_count() == 0)
    }

    /// Every connection echoed intact and closed in order; opens landed on
    /// their opening core; every buffer is back in its pool.
    fn check_clean(&mut self, per_core: usize) {
        self.check(per_core, true)
    }

    /// Like `check_clean`; `no_strays` false for wires that duplicate
    /// frames: a duplicate of a connection's last segment can arrive after
    /// the connection is gone and is answered with RST, as TCP requires.
    fn check(&mut self, per_core: usize, no_strays: bool) {
        for (core, c) in self.clients.iter().enumerate() {
            let app = c.app();
            assert_eq!(app.done, per_core, "client core {core}: all echoed");
            assert_eq!(app.bad, 0, "client core {core}: echo intact");
            assert_eq!(app.failed + app.closed_reset, 0, "client core {core}");
            assert_eq!(app.closed_normal, per_core, "client core {core}");
            let st = c.stack().stats();
            assert_eq!(st.connected.get(), per_core as u64, "client core {core}");
            if no_strays {
                assert_eq!(st.no_conn.get(), 0, "client core {core}: no stray segment");
            }
            // The opening core owns the flow: its replies hash back to it.
            for &p in &app.ports {
                assert_eq!(
                    self.client_rss.core_ip(self.ends.0, self.ends.1, 7, p),
                    core,
                    "local port {p} opened on core {core}"
                );
            }
        }
        let accepted: u64 = (0..CORES)
            .map(|c| self.server_stats(c).accepted.get())
            .sum();
        assert_eq!(accepted, (CORES * per_core) as u64);
        for core in 0..CORES {
            let s = self.server_stats(core);
            assert!(s.accepted.get() > 0, "server core {core} served flows");
            if no_strays {
                assert_eq!(s.no_conn.get(), 0, "server core {core}: no stray segment");
            }
            assert_eq!(s.drops(), 0);
            // ARP: the client's MAC was learnt on every server core from
            // the requests (or their copies); no core had to ask.
            assert_eq!(s.arp_requests_tx.get(), 0, "server core {core} asked ARP");
            assert!(s.arp_copies_in.get() + s.arp_copies_out.get() > 0);
        }
        // Steering never loses a frame: what one core hands out the other
        // takes in.
        let out: u64 = (0..CORES)
            .map(|c| self.server_stats(c).steered_out.get())
            .sum();
        let inn: u64 = (0..CORES)
            .map(|c| self.server_stats(c).steered_in.get())
            .sum();
        assert_eq!(out, inn, "server: steered out = steered in");
        let out: u64 = (0..CORES)
            .map(|c| self.client_stats(c).steered_out.get())
            .sum();
        let inn: u64 = (0..CORES)
            .map(|c| self.client_stats(c).steered_in.get())
            .sum();
        assert_eq!(out, inn, "client: steered out = steered in");
        // Let the last frames drain, then every buffer is back.
        self.now += 1_000_000;
        self.poll_all();
        let in_use = self
            .servers
            .iter()
            .map(|w| w.stack().queue().pool_stats().in_use)
            .chain(
                self.clients
                    .iter()
                    .map(|w| w.stack().queue().pool_stats().in_use),
            );
        for (i, n) in in_use.enumerate() {
            assert_eq!(n, 0, "queue {i}: every buffer back");
        }
    }
}

const PER_CORE: usize = 100;
const BYTES: usize = 3000;

#[test]
fn same_tables_both_ends_nothing_is_steered() {
    // Both ends hash alike (symmetric key, same table), and queue i meets
    // queue i: every frame arrives on its owner. Client core 1 starts only
    // after core 0 is done, so it must have learnt the server's MAC from
    // the ARP copy core 0 handed it.
    let mut n = net(
        Reta::spread(CORES).unwrap(),
        PER_CORE,
        BYTES,
        Faults::default(),
    );
    n.clients[1].app_mut().go = false;
    assert!(n.drive(200_000, |n| n.clients[0].app().done == PER_CORE));
    n.clients[1].app_mut().go = true;
    assert!(n.drive(2_000_000, |n| n
        .clients
        .iter()
        .all(|c| c.app().done == PER_CORE)
        && n.all_closed()));
    for core in 0..CORES {
        assert_eq!(n.server_stats(core).steered_out.get(), 0);
        assert_eq!(n.client_stats(core).steered_out.get(), 0);
        assert_eq!(n.server_stats(core).accepted.get(), PER_CORE as u64);
    }
    assert_eq!(n.client_stats(0).arp_requests_tx.get(), 1);
    assert_eq!(
        n.client_stats(1).arp_requests_tx.get(),
        0,
        "client core 1 learnt the server from core 0's ARP copy"
    );
    assert!(n.client_stats(1).arp_copies_in.get() >= 1);
    assert_eq!(n.steer_drops(), 0);
    n.check_clean(PER_CORE);
}

#[test]
fn crossed_tables_every_flow_is_steered_both_ways() {
    crossed_tables((SERVER.into(), CLIENT.into()));
}

/// The same over IPv6: every flow steered once on each side, neighbour
/// discovery copied to every core (no server core has to ask), local ports
/// for active opens that hash back to the opening core.
#[test]
fn ipv6_crossed_tables_every_flow_is_steered_both_ways() {
    crossed_tables((SERVER6.into(), CLIENT6.into()));
}

/// The client's table is the server's reversed: a flow the client opens
/// on core c (sent on queue c) is owned by server core 1-c, whose replies
/// (sent on queue 1-c) are owned again by client core c. So every segment
/// is steered once on each side, and still arrives.
fn crossed_tables(ends: (IpAddr, IpAddr)) {
    let reversed = Reta::from_fn(CORES, |i| CORES - 1 - i % CORES).unwrap();
    let mut n = net_ends(reversed, PER_CORE, BYTES, Faults::default(), SOFTWARE, ends);
    assert!(n.drive(2_000_000, |n| n
        .clients
        .iter()
        .all(|c| c.app().done == PER_CORE)
        && n.all_closed()));
    for core in 0..CORES {
        let (s, c) = (n.server_stats(core), n.client_stats(core));
        // Every TCP frame was received by the wrong core first.
        assert!(s.steered_out.get() > 0 && s.steered_in.get() > 0);
        assert!(c.steered_out.get() > 0 && c.steered_in.get() > 0);
        let tcp_rx_server = s.rx_packets.get() - s.arp_copies_out.get().min(s.rx_packets.get());
        assert!(
            s.steered_out.get() + 4 >= tcp_rx_server,
            "server core {core}: {} of {} frames steered",
            s.steered_out.get(),
            s.rx_packets.get()
        );
        assert_eq!(s.accepted.get(), PER_CORE as u64);
    }
    assert_eq!(n.steer_drops(), 0);
    n.check_clean(PER_CORE);
}

#[test]
fn steering_survives_loss_reordering_and_duplication() {
    let reversed = Reta::from_fn(CORES, |i| CORES - 1 - i % CORES).unwrap();
    let faults = Faults {
        seed: 7,
        loss: 0.03,
        reorder: 0.03,
        duplicate: 0.03,
        ..Default::default()
    };
    let mut n = net(reversed, 20, 20_000, faults);
    let ok = n.drive(5_000_000, |n| {
        n.clients.iter().all(|c| c.app().done == 20) && n.all_closed()
    });
    assert!(ok, "stalled at t={}us", n.now);
    assert_eq!(n.steer_drops(), 0);
    n.check(20, false);
}

/// The end-to-end cost of steering: the same echo workload with tables
/// that steer nothing and with crossed tables that steer every TCP frame
/// once on each side. Run one variant per process under callgrind and
/// compare instructions per frame:
/// `STEER_VARIANT=same|crossed valgrind --tool=callgrind
/// target/release/deps/stack_multicore-* --ignored --exact steering_workload`.
#[test]
#[ignore]
fn steering_workload() {
    let variant = std::env::var("STEER_VARIANT").unwrap_or_else(|_| "crossed".into());
    let reta = match variant.as_str() {
        "same" => Reta::spread(CORES).unwrap(),
        _ => Reta::from_fn(CORES, |i| CORES - 1 - i % CORES).unwrap(),
    };
    let mut n = net(reta, 50, 20_000, Faults::default());
    assert!(
        n.drive(5_000_000, |n| n.clients.iter().all(|c| c.app().done == 50)
            && n.all_closed())
    );
    let sum = |f: fn(&StackStats) -> u64, n: &Net| -> u64 {
        (0..CORES)
            .map(|c| f(n.server_stats(c)) + f(n.client_stats(c)))
            .sum()
    };
    eprintln!(
        "{variant}: rx frames {} steered {} tx frames {}",
        sum(|s| s.rx_packets.get(), &n),
        sum(|s| s.steered_out.get(), &n),
        sum(|s| s.tx_packets.get(), &n)
    );
}

#[test]
fn hardware_mode_steers_nothing_and_still_shares_arp() {
    // A device spreading by the same key and table: frames arrive on their
    // owner, so nothing is hashed or steered; ARP is still shared.
    let mode = Mode {
        steering: Steering::Hardware,
        ring_size: 64,
        wire_rss: false,
    };
    let mut n = net_in(
        Reta::spread(CORES).unwrap(),
        50,
        BYTES,
        Faults::default(),
        mode,
    );
    n.clients[1].app_mut().go = false;
    assert!(n.drive(200_000, |n| n.clients[0].app().done == 50));
    n.clients[1].app_mut().go = true;
    assert!(
        n.drive(2_000_000, |n| n.clients.iter().all(|c| c.app().done == 50)
            && n.all_closed())
    );
    for core in 0..CORES {
        assert_eq!(n.server_stats(core).steered_out.get(), 0);
        assert_eq!(n.client_stats(core).steered_out.get(), 0);
    }
    assert_eq!(n.client_stats(1).arp_requests_tx.get(), 0);
    n.check_clean(50);
}

#[test]
fn rss_on_the_wire_puts_every_flow_on_its_owner_without_steering() {
    // Crossed tables: with the wire cabling queue i to queue i, every TCP
    // frame would arrive on the wrong core (see the test above). With each
    // end of the wire programmed with its stack's RSS, the wire spreads
    // flows as a NIC does, so the stacks run in hardware mode: nothing is
    // steered, and everything arrives where it belongs.
    let crossed = Reta::from_fn(CORES, |i| CORES - 1 - i % CORES).unwrap();
    let mode = Mode {
        steering: Steering::Hardware,
        ring_size: 64,
        wire_rss: true,
    };
    let mut n = net_in(crossed, 50, BYTES, Faults::default(), mode);
    assert!(
        n.drive(2_000_000, |n| n.clients.iter().all(|c| c.app().done == 50)
            && n.all_closed())
    );
    for core in 0..CORES {
        assert_eq!(n.server_stats(core).steered_out.get(), 0);
        assert_eq!(n.client_stats(core).steered_out.get(), 0);
        assert!(
            n.server_stats(core).accepted.get() > 0,
            "core {core} served"
        );
    }
    n.check_clean(50);
}

#[test]
fn full_steering_rings_drop_and_count_and_tcp_recovers() {
    // Rings of 8 frames with every frame steered: bursts overflow them.
    // The drops are counted, and TCP's retransmissions still get every
    // byte through.
    let reversed = Reta::from_fn(CORES, |i| CORES - 1 - i % CORES).unwrap();
    let mode = Mode {
        steering: Steering::Software,
        ring_size: 8,
        wire_rss: false,
    };
    let mut n = net_in(reversed, 10, 50_000, Faults::default(), mode);
    // SYNs overflow the rings too, and all retransmit at once: a handshake
    // may time out. Those connections are opened again.
    for c in &mut n.clients {
        c.app_mut().retry = true;
    }
    let ok = n.drive(5_000_000, |n| {
        n.clients.iter().all(|c| c.app().done == 10) && n.all_closed()
    });
    for (core, c) in n.clients.iter().enumerate() {
        let a = c.app();
        eprintln!(
            "client core {core}: opened {} done {} failed {} retried {} reset {} normal {} conns {} | server conns {}",
            a.opened,
            a.done,
            a.failed,
            a.retried,
            a.closed_reset,
            a.closed_normal,
            c.stack().conn_count(),
            n.servers[core].stack().conn_count()
        );
    }
    assert!(ok, "stalled at t={}us", n.now);
    let drops = n.steer_drops();
    assert!(drops > 0, "the tiny rings overflowed");
    n.check_clean(10);
}
