//! Ours: our server and our load generator on the userspace stack, both
//! in this process, over an in-memory wire, on pinned threads; and the
//! measuring window every run of ours (and the kernel client) goes
//! through.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use bypass::app::http::{HttpApp, HttpCounters, TechEmpower};
use bypass::app::loadgen::{LoadConfig, LoadGen, LoadStats, LoadSummary, Stall, StallWatch};
use bypass::app::tcp::Echo;
use bypass::flow::Rss;
use bypass::port::mem::{MemConfig, MemPort, MemQueue};
use bypass::port::{Port, PortInfo};
use bypass::runtime::{self, RunConfig, Stop, TcpWorker, Worker};
use bypass::stack::shard::{self, ShardConfig, Steering};
use bypass::stack::{ListenOpts, Stack, StackConfig, TcpOpts};
use bypass::time::{Clock, Instant, MonotonicClock};
use bypass::{Error, Result};

use super::super::proc::Sched;
use super::{family_ends, BASE_PORT, PORTS_PER_LISTENER};

/// A run stalls when no transaction completes and no connection opens for
/// this long.
pub const STALL_WINDOW: Duration = Duration::from_secs(1);

/// What a measuring window saw besides the workers' own figures.
#[derive(Debug, Clone, Default)]
pub struct Window {
    /// Windows of [`STALL_WINDOW`] in which nothing progressed.
    pub stalls: Vec<Stall>,
}

/// Runs `workers` until every generator has all its connections open (cps:
/// its first), then for `duration` more; gives up on the ramp after
/// `ramp_timeout`. `at` runs on this thread with `true` once when the
/// table is full and with `false` once when the run stops (before the
/// workers' `finish`). Progress (transactions and connections opened) is
/// watched all along: a whole [`STALL_WINDOW`] without any is a stall.
pub fn timed_run<W: Worker>(
    cores: Vec<usize>,
    workers: Vec<W>,
    load: &[Arc<LoadStats>],
    duration: Duration,
    ramp_timeout: Duration,
    idle_sleep: Duration,
    mut at: impl FnMut(bool),
) -> Result<(Vec<W>, Window)> {
    let cfg = RunConfig {
        cores,
        duration: Some(ramp_timeout + duration + Duration::from_secs(1)),
        stats_interval: Some(Duration::from_millis(10)),
        idle_sleep,
        no_pin: false,
    };
    let stop = Stop::new();
    let stopper = stop.clone();
    let mut end: Option<f64> = None;
    let ramp = ramp_timeout.as_secs_f64();
    let mut watch = StallWatch::new(STALL_WINDOW.as_secs_f64());
    let progress = || {
        load.iter()
            .map(|s| s.transactions.get() + s.opened.get())
            .sum::<u64>()
    };
    let workers = runtime::run(&cfg, workers, &stop, |t| {
        if stopper.is_set() {
            return;
        }
        watch.sample(t, progress());
        if end.is_none() && load.iter().all(|s| s.full_at_us.get() > 0) {
            at(true);
            end = Some(t + duration.as_secs_f64());
        }
        if end.is_some_and(|e| t >= e) || (end.is_none() && t >= ramp) {
            at(false);
            stopper.set();
        }
    })?;
    Ok((
        workers,
        Window {
            stalls: watch.stalls().to_vec(),
        },
    ))
}

/// Resident memory of this process (bytes), from /proc/self/statm.
pub fn rss_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = s
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// What a stack is for.
#[derive(Debug, Clone, Copy)]
pub enum Role {
    /// The server, listening on `ports` ports from [`BASE_PORT`].
    Server { ports: usize },
    /// A client (load generator).
    Client,
}

/// Builds one of ours' stacks: the one place where the benchmarks choose
/// the TCP engine and its options.
pub fn build_stack(
    role: Role,
    queue: MemQueue,
    info: &PortInfo,
    tcp: TcpOpts,
    family: u8,
    now: Instant,
) -> Result<Stack<MemQueue>> {
    let (server, client) = family_ends(family);
    let prefix = if family == 6 { 64 } else { 24 };
    match role {
        Role::Server { ports } => {
            let sc = StackConfig::for_addr(server, prefix);
            let mut s = Stack::new(queue, info, sc, now)?;
            for i in 0..ports {
                s.listen(
                    BASE_PORT + i as u16,
                    ListenOpts {
                        backlog: 4096,
                        tcp,
                        ..Default::default()
                    },
                )?;
            }
            Ok(s)
        }
        Role::Client => {
            let mut sc = StackConfig::for_addr(client, prefix);
            sc.connect = tcp;
            sc.ephemeral = (1024, 65535);
            Stack::new(queue, info, sc, now)
        }
    }
}

type HttpServerApp = HttpApp<TechEmpower, fn() -> TechEmpower>;

/// Which server application ours runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerKind {
    Echo,
    Http,
}

/// One stack and its application; a core runs one or more.
enum Side {
    Echo(Box<TcpWorker<MemQueue, Echo>>),
    Http(Box<TcpWorker<MemQueue, HttpServerApp>>),
    Load(Box<TcpWorker<MemQueue, LoadGen>>),
}

/// What one pinned thread runs: its sides, polled in turn.
struct Group(Vec<Side>);

impl Worker for Group {
    fn poll(&mut self, now: Instant) -> usize {
        let mut n = 0;
        for s in &mut self.0 {
            n += match s {
                Side::Echo(w) => w.poll(now),
                Side::Http(w) => w.poll(now),
                Side::Load(w) => w.poll(now),
            };
        }
        n
    }
    fn finish(&mut self, now: Instant) {
        for s in &mut self.0 {
            match s {
                Side::Echo(w) => w.finish(now),
                Side::Http(w) => w.finish(now),
                Side::Load(w) => w.finish(now),
            }
        }
    }
}

/// Where ours runs: `cores[i]` hosts the sides listed in `roles[i]`
/// (`(true, q)`: the server on queue `q` of the wire, `(false, q)`: the
/// client on queue `q` of the other end).
pub struct Placement {
    cores: Vec<usize>,
    roles: Vec<Vec<(bool, usize)>>,
    /// One stack sharded by RSS over the queues on each end (hardware
    /// mode: the wire spreads flows by the same key and table); otherwise
    /// queue `q` of one end talks to queue `q` of the other only.
    sharded: bool,
}

impl Placement {
    /// Server on one core, client on another, one wire.
    pub fn split(server: usize, client: usize) -> Placement {
        Placement {
            cores: vec![server, client],
            roles: vec![vec![(true, 0)], vec![(false, 0)]],
            sharded: false,
        }
    }
    /// The server sharded by RSS over `cores`, and the client sharded the
    /// same way: core `i` runs the server's shard `i` and the client's
    /// shard `i` (whose local ports hash back to it, so its flows stay on
    /// core `i` at both ends).
    pub fn sharded(cores: &[usize]) -> Placement {
        Placement {
            cores: cores.to_vec(),
            roles: (0..cores.len())
                .map(|q| vec![(true, q), (false, q)])
                .collect(),
            sharded: cores.len() > 1,
        }
    }
    fn wires(&self) -> usize {
        self.roles
            .iter()
            .flatten()
            .map(|r| r.1 + 1)
            .max()
            .unwrap_or(1)
    }
}

/// What a run of ours measured.
#[derive(Debug, Clone, Serialize)]
pub struct OursRun {
    /// The load generators' summary.
    pub load: LoadSummary,
    /// Process RSS before any connection (bytes).
    pub rss_before: u64,
    /// Process RSS when every connection was open.
    pub rss_full: u64,
    /// Server-side connections open at the end.
    pub server_conns: u64,
    /// Share of the measured window our core threads spent waiting for a
    /// CPU (preempted by other processes), from schedstat: 0 on an idle
    /// machine; the figures are only as good as this is small.
    pub cpu_wait_share: f64,
    /// Frames dropped by either stack (queue full, no buffer, malformed)
    /// until the measurement ended (not counting the goodbye FINs).
    pub drops: u64,
    /// ... of which: the port's transmit queue (the wire ring) was full.
    pub drops_tx_full: u64,
    /// The TCP engine's retransmission counters, for the report.
    pub engine_line: String,
    /// ... of which: no pool buffer to build the frame in.
    pub drops_no_buffer: u64,
    /// Windows in which nothing progressed.
    pub stalls: Vec<Stall>,
}

pub fn run_ours(
    place: &Placement,
    kind: ServerKind,
    load: &LoadConfig,
    tcp: TcpOpts,
    duration: Duration,
    ramp_timeout: Duration,
    idle_sleep: Duration,
) -> Result<OursRun> {
    let wires = place.wires();
    let total = load.connections * wires;
    let ports_needed = total.div_ceil(PORTS_PER_LISTENER).max(1);
    // The wire holds every frame that can be in flight (a request or a
    // response plus an ACK per request in flight): a full ring drops
    // frames, which TCP only retries after its 1 s minimum RTO.
    let inflight = load
        .max_inflight
        .unwrap_or(load.connections * load.pipeline)
        .max(load.max_pending);
    let ring = (2 * inflight + 1024).next_power_of_two().clamp(4096, 65536);
    let (mut a, mut b) = MemPort::pair(&MemConfig {
        queues: wires as u16,
        ring_size: ring,
        pool_frames: (2 * ring) as u32,
        name: "bench".into(),
        ..Default::default()
    })?;
    let (ia, ib) = (a.info().clone(), b.info().clone());
    // Sharded: both ends spread flows by the symmetric key over `wires`
    // queues, and each stack gets its shard (hardware mode: the wire did
    // the spreading, nothing is steered between cores).
    let (mut server_shards, mut client_shards) = (Vec::new(), Vec::new());
    if place.sharded {
        let rss = Rss::symmetric(wires)?;
        if !(a.configure_rss(&rss)? && b.configure_rss(&rss)?) {
            return Err(Error::Config("the mem wire refused the RSS table".into()));
        }
        let cfg = ShardConfig {
            rss,
            steering: Steering::Hardware,
            ring_size: 1024,
        };
        server_shards = shard::shards(&cfg)?.into_iter().map(Some).collect();
        client_shards = shard::shards(&cfg)?.into_iter().map(Some).collect();
    }
    let mut qa: Vec<Option<MemQueue>> = a.take_queues().into_iter().map(Some).collect();
    let mut qb: Vec<Option<MemQueue>> = b.take_queues().into_iter().map(Some).collect();
    let clock = MonotonicClock::new();
    let mut lcfg = load.clone();
    // The family of the targets asked for.
    let family = match load.targets.first() {
        Some(t) if t.is_ipv6() => 6,
        _ => 4,
    };
    let server_ip = family_ends(family).0;
    lcfg.targets = (0..ports_needed)
        .map(|i| SocketAddr::new(server_ip, BASE_PORT + i as u16))
        .collect();
    let mut load_stats = Vec::new();
    let mut server_stats = Vec::new();
    let mut all_stats = Vec::new();
    let mut groups = Vec::new();
    for roles in &place.roles {
        let mut g = Vec::new();
        for &(server, q) in roles {
            if server {
                let queue = qa[q]
                    .take()
                    .ok_or_else(|| Error::Config("a wire is served twice".into()))?;
                let mut s = build_stack(
                    Role::Server {
                        ports: ports_needed,
                    },
                    queue,
                    &ia,
                    tcp,
                    family,
                    clock.now(),
                )?;
                if let Some(sh) = server_shards.get_mut(q).and_then(Option::take) {
                    s.set_shard(sh)?;
                }
                server_stats.push(s.stats().clone());
                all_stats.push(s.stats().clone());
                g.push(match kind {
                    ServerKind::Echo => Side::Echo(Box::new(TcpWorker::new(s, Echo::default()))),
                    ServerKind::Http => Side::Http(Box::new(TcpWorker::new(
                        s,
                        HttpApp::techempower(Arc::new(HttpCounters::default())),
                    ))),
                });
            } else {
                let queue = qb[q]
                    .take()
                    .ok_or_else(|| Error::Config("a wire is loaded twice".into()))?;
                let mut s = build_stack(Role::Client, queue, &ib, tcp, family, clock.now())?;
                if let Some(sh) = client_shards.get_mut(q).and_then(Option::take) {
                    s.set_shard(sh)?;
                }
                all_stats.push(s.stats().clone());
                let st = Arc::new(LoadStats::default());
                load_stats.push(st.clone());
                g.push(Side::Load(Box::new(TcpWorker::new(
                    s,
                    LoadGen::new(lcfg.clone(), st),
                ))));
            }
        }
        groups.push(Group(g));
    }
    let rss_before = rss_bytes();
    let mut rss_full = 0;
    let drops =
        |f: fn(&bypass::stack::StackStats) -> u64| all_stats.iter().map(|s| f(s)).sum::<u64>();
    let mut at_end = [0u64; 3];
    let mut engine_line = String::new();
    let mut sched = [Sched::default(); 2];
    let (done, window) = timed_run(
        place.cores.clone(),
        groups,
        &load_stats,
        duration,
        ramp_timeout,
        idle_sleep,
        |full| {
            if full {
                rss_full = rss_bytes();
                sched[0] = Sched::of(None, "bypass-core");
            } else {
                sched[1] = Sched::of(None, "bypass-core");
                let sum = |f: &dyn Fn(&bypass::stack::StackStats) -> u64| {
                    all_stats.iter().map(|s| f(s)).sum::<u64>()
                };
                engine_line = format!(
                    "tcp engine {}: {} retransmits ({} timeouts, {} tail-loss probes, {} recoveries, {} undone), {} SYN cookies, {} backlog full; {} frames sent, {} timer fires, {} connection polls",
                    TcpOpts::default().engine,
                    sum(&|s| s.tcp.retransmits.get()),
                    sum(&|s| s.tcp.rtos.get()),
                    sum(&|s| s.tcp.tlps.get()),
                    sum(&|s| s.tcp.recoveries.get()),
                    sum(&|s| s.tcp.undos.get()),
                    sum(&|s| s.syn_cookies_sent.get()),
                    sum(&|s| s.backlog_full.get()),
                    sum(&|s| s.tx_packets.get()),
                    sum(&|s| s.timer_fires.get()),
                    sum(&|s| s.conn_polls.get()),
                );
                at_end = [
                    drops(|s| s.drops() + s.tx_full.get() + s.tx_no_buffer.get()),
                    drops(|s| s.tx_full.get()),
                    drops(|s| s.tx_no_buffer.get()),
                ];
            }
        },
    )?;
    let gens: Vec<&LoadGen> = done
        .iter()
        .flat_map(|g| g.0.iter())
        .filter_map(|s| match s {
            Side::Load(w) => Some(w.app()),
            _ => None,
        })
        .collect();
    Ok(OursRun {
        load: LoadSummary::of(&gens),
        rss_before,
        rss_full,
        server_conns: server_stats.iter().map(|s| s.conns.get()).sum(),
        cpu_wait_share: sched[0].wait_share_until(&sched[1]),
        stalls: window.stalls,
        drops: at_end[0],
        drops_tx_full: at_end[1],
        drops_no_buffer: at_end[2],
        engine_line,
    })
}
