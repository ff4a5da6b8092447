//! Ours: our server and our load generator on the userspace stack, both
//! in this process, over an in-memory wire, on pinned threads; and the
//! measuring window every run of ours (and the kernel client) goes
//! through.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
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
use bypass::time::{Clock, FastClock, Instant, MonotonicClock};
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
    let times = Times {
        ramp_timeout,
        hold: Duration::ZERO,
        duration,
        wait_turns: false,
    };
    timed_run_held(cores, workers, load, times, idle_sleep, |p| match p {
        Phase::Full => at(true),
        Phase::Stop => at(false),
        Phase::Tick(_) | Phase::HoldEnd => {}
    })
}

/// A run's phases as [`timed_run_held`] tells them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Phase {
    /// A tick of the controller (seconds since the start).
    Tick(f64),
    /// Every connection is open: the hold begins.
    Full,
    /// The hold is about to end: the table is still idle (told
    /// [`HOLD_MARGIN`] before the generators start the load; only with a
    /// hold).
    HoldEnd,
    /// The run stops (before the workers' `finish`).
    Stop,
}

/// How long before the end of the hold [`Phase::HoldEnd`] is told, at
/// most: the generators time the hold from their own view of the full
/// table, which the controller learns up to a tick later.
pub const HOLD_MARGIN: Duration = Duration::from_millis(250);

/// A run's time limits.
#[derive(Debug, Clone, Copy)]
pub struct Times {
    /// Longest ramp.
    pub ramp_timeout: Duration,
    /// The full table held idle (the generators' `hold_us`).
    pub hold: Duration,
    /// Measured after the hold (with `wait_turns`: after the turns start).
    pub duration: Duration,
    /// The generators start with bulk transfers after the hold: measure
    /// `duration` from when they start the turns (at most [`BULK_LIMIT`]
    /// after the hold).
    pub wait_turns: bool,
}

/// Longest the bulk transfers may delay the turns.
pub const BULK_LIMIT: Duration = Duration::from_secs(60);

/// [`timed_run`] with a hold: once the table is full the generators keep
/// it idle for `times.hold` (their `LoadConfig::hold_us`; no progress is
/// expected then, so the stall watch rests), then load it for
/// `times.duration`. `on` hears every phase, on this thread.
pub fn timed_run_held<W: Worker>(
    cores: Vec<usize>,
    workers: Vec<W>,
    load: &[Arc<LoadStats>],
    times: Times,
    idle_sleep: Duration,
    mut on: impl FnMut(Phase),
) -> Result<(Vec<W>, Window)> {
    let cfg = RunConfig {
        cores,
        duration: Some(
            times.ramp_timeout
                + times.hold
                + times.duration
                + Duration::from_secs(1)
                + if times.wait_turns {
                    BULK_LIMIT
                } else {
                    Duration::ZERO
                },
        ),
        stats_interval: Some(Duration::from_millis(10)),
        idle_sleep,
        no_pin: false,
    };
    let stop = Stop::new();
    let stopper = stop.clone();
    let mut full: Option<f64> = None;
    let mut turns: Option<f64> = None;
    let mut hold_told = times.hold.is_zero();
    let hold = times.hold.as_secs_f64();
    let margin = HOLD_MARGIN.as_secs_f64().min(hold / 2.0);
    let ramp = times.ramp_timeout.as_secs_f64();
    let mut watch = StallWatch::new(STALL_WINDOW.as_secs_f64());
    // Bulk bytes coming back count as progress too.
    let progress = || {
        load.iter()
            .map(|s| s.transactions.get() + s.opened.get() + s.bytes_in.get())
            .sum::<u64>()
    };
    let workers = runtime::run(&cfg, workers, &stop, |t| {
        if stopper.is_set() {
            return;
        }
        on(Phase::Tick(t));
        match full {
            // Held idle: nothing is expected to progress.
            Some(f) if t < f + hold + 2.0 * margin => watch.restart(),
            _ => {
                watch.sample(t, progress());
            }
        }
        if full.is_none() && load.iter().all(|s| s.full_at_us.get() > 0) {
            on(Phase::Full);
            full = Some(t);
        }
        if let Some(f) = full {
            if !hold_told && t >= f + hold - margin {
                hold_told = true;
                on(Phase::HoldEnd);
            }
        }
        if turns.is_none() && full.is_some() && load.iter().all(|s| s.turns_at_us.get() > 0) {
            turns = Some(t);
        }
        let end = full.map(|f| {
            let from = match turns {
                Some(x) if times.wait_turns => x,
                // The bulk transfers took too long: measure what there is.
                None if times.wait_turns => f + hold + BULK_LIMIT.as_secs_f64(),
                _ => f + hold,
            };
            from + times.duration.as_secs_f64()
        });
        if end.is_some_and(|e| t >= e) || (full.is_none() && t >= ramp) {
            on(Phase::Stop);
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
#[allow(clippy::too_many_arguments)]
pub fn build_stack(
    role: Role,
    queue: MemQueue,
    info: &PortInfo,
    tcp: TcpOpts,
    family: u8,
    now: Instant,
    expected: usize,
    presize: bool,
) -> Result<Stack<MemQueue>> {
    let (server, client) = family_ends(family);
    let prefix = if family == 6 { 64 } else { 24 };
    // Sized for the run up front: the table never grows (and rehashes)
    // while the loop runs.
    let sized = |mut c: StackConfig| {
        c.expected_conns = if presize { expected } else { 0 };
        c.max_conns = c.max_conns.max(expected + expected / 8 + 1024);
        c
    };
    match role {
        Role::Server { ports } => {
            let mut s = Stack::new(
                queue,
                info,
                sized(StackConfig::for_addr(server, prefix)),
                now,
            )?;
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
            let mut sc = sized(StackConfig::for_addr(client, prefix));
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

/// What one pinned thread runs: its sides, polled in turn; and the
/// longest loop iteration in each phase of the run, in wall time and in
/// time on a CPU (on a shared machine a long wall-clock iteration is often
/// the thread waiting for a CPU, not the loop's own work).
struct Group {
    sides: Vec<Side>,
    /// The loops' own clock (the TSC where it is invariant). Two reads
    /// of `CLOCK_MONOTONIC` per iteration, the harness's and not the
    /// stack's, showed as 3% to 14% of the loop at 64 connections in
    /// `perf` profiles.
    clock: FastClock,
    /// Index into `longest_us`, set by the controller.
    phase: Arc<AtomicUsize>,
    longest_us: [u64; PHASES],
    longest_cpu_us: [u64; PHASES],
    /// The thread's CPU time (ns) when last read, and when (µs of
    /// `clock`): read at most every [`CPU_READ_US`] and after every long
    /// iteration.
    cpu_read: (u64, u64),
}

/// How often a core reads its CPU time (a system call).
const CPU_READ_US: u64 = 1000;
/// An iteration this long (µs) reads the CPU time at once.
const LONG_ITERATION_US: u64 = 2000;

/// Phases whose longest iteration is kept: ramp, hold, load.
const PHASES: usize = 3;

impl Group {
    fn new(sides: Vec<Side>, phase: Arc<AtomicUsize>) -> Group {
        Group {
            sides,
            clock: FastClock::new(),
            phase,
            longest_us: [0; PHASES],
            longest_cpu_us: [0; PHASES],
            cpu_read: (0, 0),
        }
    }

    /// Keeps the longest iterations; `t0`/`t1`: its start and end (µs).
    fn time(&mut self, t0: u64, t1: u64) {
        let took = t1.saturating_sub(t0);
        let p = self.phase.load(Ordering::Relaxed).min(PHASES - 1);
        self.longest_us[p] = self.longest_us[p].max(took);
        let due = t1.saturating_sub(self.cpu_read.1) >= CPU_READ_US;
        if took < LONG_ITERATION_US {
            // Short: its CPU time is at most its wall time.
            self.longest_cpu_us[p] = self.longest_cpu_us[p].max(took);
            if !due {
                return;
            }
        }
        let cpu = bypass::port::sys::thread_cpu_ns();
        if took >= LONG_ITERATION_US && self.cpu_read.0 > 0 {
            // The CPU time since the last read: this iteration's, plus at
            // most CPU_READ_US before it (the last read came less than
            // that before the iteration began).
            let on_cpu = (cpu.saturating_sub(self.cpu_read.0) / 1000).min(took);
            self.longest_cpu_us[p] = self.longest_cpu_us[p].max(on_cpu);
        }
        self.cpu_read = (cpu, t1);
    }
}

impl Worker for Group {
    fn poll(&mut self, now: Instant) -> usize {
        let t0 = self.clock.now();
        let mut n = 0;
        for s in &mut self.sides {
            n += match s {
                Side::Echo(w) => w.poll(now),
                Side::Http(w) => w.poll(now),
                Side::Load(w) => w.poll(now),
            };
        }
        let t1 = self.clock.now();
        self.time(t0.micros(), t1.micros());
        n
    }
    fn finish(&mut self, now: Instant) {
        for s in &mut self.sides {
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
    /// Process RSS at the end of the hold, the table full and idle (equal
    /// to `rss_full` without a hold).
    pub rss_idle: u64,
    /// False if a generator had already started the load when `rss_idle`
    /// was read (then it is not an idle figure).
    pub rss_idle_clean: bool,
    /// Process RSS when the load stopped (every connection had its turns).
    pub rss_after: u64,
    /// Longest loop iteration of any core (µs) while ramping, holding,
    /// loading: wall time, and time on a CPU (at most; within 1 ms).
    pub longest_iteration_us: [u64; PHASES],
    pub longest_iteration_cpu_us: [u64; PHASES],
    /// Payload chunks the bypass engine made (its high-water mark, all
    /// stacks; bytes).
    pub payload_peak: u64,
    /// Most bytes in flight on one connection (bypass engine).
    pub max_in_flight: u64,
    /// Largest congestion window of one connection (bypass engine).
    pub max_cwnd: u64,
    /// Largest receive window a peer offered (bypass engine).
    pub max_peer_window: u64,
    /// Bulk requests echoed in full, and the longest of them (µs).
    pub bulk_done: u64,
    pub bulk_longest_us: u64,
    /// Connections in the server's table and the table's room before it
    /// would grow, when the load stopped (summed over the server stacks).
    pub server_table: (usize, usize),
}

/// What a run of ours does besides the load itself.
#[derive(Debug, Clone, Copy)]
pub struct Extra {
    /// Draw the ramp's progress bar (on a terminal).
    pub progress: bool,
    /// Size the stacks' tables for the run up front (else they grow as
    /// connections come).
    pub presize: bool,
}

pub fn run_ours(
    place: &Placement,
    kind: ServerKind,
    load: &LoadConfig,
    tcp: TcpOpts,
    times: Times,
    idle_sleep: Duration,
    extra: Extra,
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
    // Bulk transfers keep up to a window of segments in flight each way.
    let bulk_frames = load
        .bulk
        .map_or(0, |b| b.conns * 2 * tcp.tx_buf.max(tcp.rx_buf) / 1024);
    let ring = (2 * inflight + bulk_frames + 1024)
        .next_power_of_two()
        .clamp(4096, 65536);
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
    let phase = Arc::new(AtomicUsize::new(0));
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
                    load.connections,
                    extra.presize,
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
                let mut s = build_stack(
                    Role::Client,
                    queue,
                    &ib,
                    tcp,
                    family,
                    clock.now(),
                    load.connections,
                    extra.presize,
                )?;
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
        groups.push(Group::new(g, phase.clone()));
    }
    let rss_before = rss_bytes();
    let mut rss_full = 0;
    let (mut rss_idle, mut rss_idle_clean, mut rss_after) = (0, true, 0);
    let bar = if extra.progress {
        crate::cli::loadgen::ramp_bar((load.connections * wires) as u64, false)
    } else {
        indicatif::ProgressBar::hidden()
    };
    let started = |st: &[Arc<LoadStats>]| st.iter().any(|s| s.bytes_out.get() > 0);
    let drops =
        |f: fn(&bypass::stack::StackStats) -> u64| all_stats.iter().map(|s| f(s)).sum::<u64>();
    let mut at_end = [0u64; 3];
    let mut engine_line = String::new();
    let mut sched = [Sched::default(); 2];
    let (done, window) = timed_run_held(
        place.cores.clone(),
        groups,
        &load_stats,
        times,
        idle_sleep,
        |p| match p {
            Phase::Tick(_) => {
                if !bar.is_finished() {
                    bar.set_position(load_stats.iter().map(|s| s.opened.get()).sum());
                }
            }
            Phase::Full => {
                bar.finish_and_clear();
                rss_full = rss_bytes();
                rss_idle = rss_full;
                rss_idle_clean = !started(&load_stats);
                phase.store(if times.hold.is_zero() { 2 } else { 1 }, Ordering::Relaxed);
                sched[0] = Sched::of(None, "bypass-core");
            }
            Phase::HoldEnd => {
                rss_idle = rss_bytes();
                rss_idle_clean = !started(&load_stats);
                phase.store(2, Ordering::Relaxed);
            }
            Phase::Stop => {
                bar.finish_and_clear();
                rss_after = rss_bytes();
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
    let mut longest_iteration_us = [0; PHASES];
    let mut longest_iteration_cpu_us = [0; PHASES];
    let (mut payload_peak, mut server_table) = (0, (0, 0));
    for g in &done {
        for (l, &x) in longest_iteration_us.iter_mut().zip(&g.longest_us) {
            *l = (*l).max(x);
        }
        for (l, &x) in longest_iteration_cpu_us.iter_mut().zip(&g.longest_cpu_us) {
            *l = (*l).max(x);
        }
        for s in &g.sides {
            let st = match s {
                Side::Echo(w) => {
                    let st = w.stack();
                    server_table.0 += st.conn_count();
                    server_table.1 += st.table_capacity();
                    st.tcp_memory()
                }
                Side::Http(w) => w.stack().tcp_memory(),
                Side::Load(w) => w.stack().tcp_memory(),
            };
            payload_peak += st.1 as u64;
        }
    }
    let gens: Vec<&LoadGen> = done
        .iter()
        .flat_map(|g| g.sides.iter())
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
        rss_idle,
        rss_idle_clean,
        rss_after,
        longest_iteration_us,
        longest_iteration_cpu_us,
        payload_peak,
        max_in_flight: all_stats
            .iter()
            .map(|s| s.max_in_flight.get())
            .max()
            .unwrap_or(0),
        max_cwnd: all_stats
            .iter()
            .map(|s| s.max_cwnd.get())
            .max()
            .unwrap_or(0),
        max_peer_window: all_stats
            .iter()
            .map(|s| s.max_peer_window.get())
            .max()
            .unwrap_or(0),
        bulk_done: load_stats.iter().map(|s| s.bulk_done.get()).sum(),
        bulk_longest_us: load_stats
            .iter()
            .map(|s| s.bulk_longest_us.get())
            .max()
            .unwrap_or(0),
        server_table,
    })
}
