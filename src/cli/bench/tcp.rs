//! The TCP scenarios of `bypass bench`: `tcp-rr`, `cps`, `conns`, `http`
//! and `scale`.
//!
//! **Ours** runs in this process: our server (`bypass echo`'s or `bypass
//! http`'s application) and our load generator ([`LoadGen`]) each on the
//! userspace stack, over an in-memory wire (`mem` port), each on its own
//! pinned thread (server on `--server-core`, client on `--client-core`).
//!
//! **The kernel** runs the very same applications (the echo server's and
//! the load generator's state machines) over kernel TCP sockets driven by
//! plain epoll ([`super::epoll`]), over loopback, as two separate processes
//! (`bypass bench kernel-server` / `kernel-client`, hidden subcommands)
//! pinned to the same cores: a process may hold only so many descriptors
//! here (`ulimit -n`), so each end gets its own allowance. For `http` the
//! kernel server is nginx (one worker) instead.
//!
//! Each measurement first opens every connection (the ramp), then counts
//! transactions and records latencies for `--duration` seconds. Every run
//! is bounded: a ramp that does not finish within `--ramp-timeout` is cut
//! short and reported as such; child processes are killed by PID.

use std::io::{BufRead, BufReader, Read};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant as StdInstant};

use clap::Args;
use serde::Serialize;

use bypass::app::http::{HttpApp, HttpCounters, TechEmpower};
use bypass::app::loadgen::{LoadConfig, LoadGen, LoadStats, LoadSummary, Mode};
use bypass::port::mem::{MemConfig, MemPort, MemQueue};
use bypass::port::Port;
use bypass::runtime::{self, RunConfig, Stop, TcpWorker, Worker};
use bypass::stack::{ListenOpts, Stack, StackConfig, TcpOpts};
use bypass::time::{Clock, Instant, MonotonicClock};
use bypass::{Error, Result};

use super::epoll::{self, EpollWorker};
use super::svg;
use crate::cli::loadgen::{LoadArgs, ModeArg};
use bypass::app::tcp::Echo;

const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
/// First listening port of our server; more ports follow when one port's
/// 64,512 ephemeral client ports are not enough 4-tuples.
const BASE_PORT: u16 = 7000;
const PORTS_PER_LISTENER: usize = 64_000;

/// Flags of the TCP scenarios.
#[derive(Args, Debug, Clone)]
pub struct TcpBenchArgs {
    /// Connections: a comma-separated list of points (tcp-rr, cps, scale,
    /// http) or one count (conns). Default per scenario.
    #[arg(long, value_name = "N[,N..]")]
    pub connections: Option<String>,
    /// Request (and response) bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 64)]
    pub size: usize,
    /// Requests in flight per connection (http defaults to 16).
    #[arg(long, value_name = "DEPTH")]
    pub pipeline: Option<usize>,
    /// Seconds measured per point, after the ramp.
    #[arg(long, value_name = "SECS", default_value_t = 2.0)]
    pub duration: f64,
    /// Longest ramp (opening every connection) before a point is cut short.
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    pub ramp_timeout: f64,
    /// Our receive buffer per connection (default 4096; conns: 1024).
    #[arg(long, value_name = "BYTES")]
    pub rx_buf: Option<usize>,
    /// Our send buffer per connection (default 4096; conns: 1024).
    #[arg(long, value_name = "BYTES")]
    pub tx_buf: Option<usize>,
    /// Core of the servers.
    #[arg(long, default_value_t = 0)]
    pub server_core: usize,
    /// Core of the clients.
    #[arg(long, default_value_t = 1)]
    pub client_core: usize,
    /// conns: most requests in flight at once (connections take turns).
    #[arg(long, value_name = "N", default_value_t = 2048)]
    pub max_inflight: usize,
    /// Ours: after 1024 idle loop iterations in a row, sleep this many
    /// microseconds (0: spin, the poll-mode default; on a shared machine a
    /// sleeping thread gives its core to others while idle).
    #[arg(long, value_name = "US", default_value_t = 0)]
    pub idle_sleep_us: u64,
    /// Skip the kernel (or nginx) side.
    #[arg(long)]
    pub no_kernel: bool,
    /// Print one JSON document on stdout (the table goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// Write the sweep as an SVG chart (tcp-rr, cps, scale).
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<String>,
}

impl TcpBenchArgs {
    fn points(&self, default: &[usize]) -> Result<Vec<usize>> {
        let Some(s) = &self.connections else {
            return Ok(default.to_vec());
        };
        let v: std::result::Result<Vec<usize>, _> = s
            .split(',')
            .map(|p| p.trim().replace('_', "").parse())
            .collect();
        match v {
            Ok(v) if !v.is_empty() && v.iter().all(|&n| n > 0) => Ok(v),
            _ => Err(Error::Config(format!(
                "--connections `{s}` is not a list of positive counts, e.g. 1,64,1024"
            ))),
        }
    }

    fn secs(&self) -> Result<(Duration, Duration)> {
        for (v, f) in [
            (self.duration, "--duration"),
            (self.ramp_timeout, "--ramp-timeout"),
        ] {
            if !v.is_finite() || v <= 0.0 || v > 3600.0 {
                return Err(Error::Config(format!(
                    "{f} must be between 0 and 3600 seconds"
                )));
            }
        }
        Ok((
            Duration::from_secs_f64(self.duration),
            Duration::from_secs_f64(self.ramp_timeout),
        ))
    }

    fn tcp_opts(&self, default_buf: usize) -> Result<TcpOpts> {
        let rx = self.rx_buf.unwrap_or(default_buf);
        let tx = self.tx_buf.unwrap_or(default_buf);
        for (v, f) in [(rx, "--rx-buf"), (tx, "--tx-buf")] {
            if !(256..=(1 << 24)).contains(&v) {
                return Err(Error::Config(format!(
                    "{f} must be between 256 bytes and 16 MiB"
                )));
            }
        }
        Ok(TcpOpts {
            rx_buf: rx,
            tx_buf: tx,
            ..Default::default()
        })
    }

    fn say(&self, line: &str) {
        crate::cli::say(self.json, line);
    }
}

// ---- measuring windows ---------------------------------------------------

/// Runs `workers` until every generator has all its connections open (cps:
/// its first), then for `duration` more; gives up on the
/// ramp after `ramp_timeout`. `at` runs on this thread with `true` once
/// when the table is full and with `false` once when the run stops (before
/// the workers' `finish`).
pub(super) fn timed_run<W: Worker>(
    cores: Vec<usize>,
    workers: Vec<W>,
    load: &[Arc<LoadStats>],
    duration: Duration,
    ramp_timeout: Duration,
    idle_sleep: Duration,
    mut at: impl FnMut(bool),
) -> Result<Vec<W>> {
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
    runtime::run(&cfg, workers, &stop, move |t| {
        if end.is_none() && load.iter().all(|s| s.full_at_us.get() > 0) {
            at(true);
            end = Some(t + duration.as_secs_f64());
        }
        if !stopper.is_set() && (end.is_some_and(|e| t >= e) || (end.is_none() && t >= ramp)) {
            at(false);
            stopper.set();
        }
    })
}

/// (run, waiting for a CPU) nanoseconds of this process's core threads
/// (`bypass-core*`), from /proc/self/task/*/schedstat.
fn core_thread_times() -> (u64, u64) {
    let mut out = (0, 0);
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for e in dir.flatten() {
        let p = e.path();
        let comm = std::fs::read_to_string(p.join("comm")).unwrap_or_default();
        if !comm.starts_with("bypass-core") {
            continue;
        }
        let st = std::fs::read_to_string(p.join("schedstat")).unwrap_or_default();
        let mut f = st.split_whitespace().map(|v| v.parse::<u64>().unwrap_or(0));
        out.0 += f.next().unwrap_or(0);
        out.1 += f.next().unwrap_or(0);
    }
    out
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

// ---- ours: both ends in this process -------------------------------------

type HttpServerApp = HttpApp<TechEmpower, fn() -> TechEmpower>;

/// Which server application ours runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ServerKind {
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
/// (`(true, q)`: the server of wire `q`, `(false, q)`: its client).
struct Placement {
    cores: Vec<usize>,
    roles: Vec<Vec<(bool, usize)>>,
}

impl Placement {
    /// Server on one core, client on another, one wire.
    fn split(server: usize, client: usize) -> Placement {
        Placement {
            cores: vec![server, client],
            roles: vec![vec![(true, 0)], vec![(false, 0)]],
        }
    }
    /// Each core runs a whole pair (server and client of its own wire).
    fn pairs(cores: &[usize]) -> Placement {
        Placement {
            cores: cores.to_vec(),
            roles: (0..cores.len())
                .map(|q| vec![(true, q), (false, q)])
                .collect(),
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
    /// ... of which: no pool buffer to build the frame in.
    pub drops_no_buffer: u64,
}

fn run_ours(
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
    let mut qa: Vec<Option<MemQueue>> = a.take_queues().into_iter().map(Some).collect();
    let mut qb: Vec<Option<MemQueue>> = b.take_queues().into_iter().map(Some).collect();
    let clock = MonotonicClock::new();
    let mut lcfg = load.clone();
    lcfg.targets = (0..ports_needed)
        .map(|i| SocketAddrV4::new(SERVER_IP, BASE_PORT + i as u16))
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
                let mut s = Stack::new(queue, &ia, StackConfig::new(SERVER_IP, 24), clock.now())?;
                for i in 0..ports_needed {
                    s.listen(
                        BASE_PORT + i as u16,
                        ListenOpts {
                            backlog: 4096,
                            tcp,
                            ..Default::default()
                        },
                    )?;
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
                let mut sc = StackConfig::new(CLIENT_IP, 24);
                sc.connect = tcp;
                sc.ephemeral = (1024, 65535);
                let s = Stack::new(queue, &ib, sc, clock.now())?;
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
    let mut sched = [(0u64, 0u64); 2];
    let done = timed_run(
        place.cores.clone(),
        groups,
        &load_stats,
        duration,
        ramp_timeout,
        idle_sleep,
        |full| {
            if full {
                rss_full = rss_bytes();
                sched[0] = core_thread_times();
            } else {
                sched[1] = core_thread_times();
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
        cpu_wait_share: {
            let run = sched[1].0.saturating_sub(sched[0].0) as f64;
            let wait = sched[1].1.saturating_sub(sched[0].1) as f64;
            if run + wait > 0.0 {
                wait / (run + wait)
            } else {
                0.0
            }
        },
        drops: at_end[0],
        drops_tx_full: at_end[1],
        drops_no_buffer: at_end[2],
    })
}

// ---- the kernel: child processes ----------------------------------------

/// `bypass bench kernel-server` (hidden): our echo server's application
/// over kernel sockets with epoll, on loopback.
#[derive(Args, Debug)]
pub struct KernelServerArgs {
    /// Core to pin to.
    #[arg(long, default_value_t = 0)]
    core: usize,
    /// Address to listen on (port 0: any free port; printed on stdout).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddrV4,
    /// Stop after this many seconds at the latest.
    #[arg(long, default_value_t = 600.0)]
    max_secs: f64,
}

/// `bypass bench kernel-client` (hidden): our load generator over kernel
/// sockets with epoll; prints its summary as JSON.
#[derive(Args, Debug)]
pub struct KernelClientArgs {
    /// Core to pin to.
    #[arg(long, default_value_t = 1)]
    core: usize,
    /// The server.
    #[arg(long)]
    target: SocketAddrV4,
    #[command(flatten)]
    load: LoadArgs,
    /// Seconds measured after the ramp.
    #[arg(long, default_value_t = 2.0)]
    duration: f64,
    /// Longest ramp.
    #[arg(long, default_value_t = 30.0)]
    ramp_timeout: f64,
}

/// Open-descriptor limit of this process.
pub fn fd_limit() -> u64 {
    let s = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024)
}

pub fn kernel_server(a: KernelServerArgs) -> Result<()> {
    let l = epoll::listen(a.listen)?;
    let port = l
        .local_addr()
        .map_err(|e| Error::io("local_addr", e))?
        .port();
    println!("port {port}");
    let w = EpollWorker::new(Echo::default(), Some(l))?;
    let cfg = RunConfig {
        cores: vec![a.core],
        duration: Some(Duration::from_secs_f64(a.max_secs.clamp(0.1, 3600.0))),
        ..Default::default()
    };
    runtime::run(&cfg, vec![w], &Stop::with_signals()?, |_| {})?;
    Ok(())
}

pub fn kernel_client(a: KernelClientArgs) -> Result<()> {
    let lcfg = a.load.config(vec![a.target])?;
    let st = Arc::new(LoadStats::default());
    let w = EpollWorker::new(LoadGen::new(lcfg.clone(), st.clone()), None)?;
    let secs = |v: f64| Duration::from_secs_f64(v.clamp(0.1, 3600.0));
    let done = timed_run(
        vec![a.core],
        vec![w],
        &[st],
        secs(a.duration),
        secs(a.ramp_timeout),
        Duration::ZERO,
        |_| {},
    )?;
    let w = &done[0];
    let mut v = serde_json::to_value(LoadSummary::of(&[w.app()])).unwrap_or_default();
    v["peak_open"] = w.peak_open.into();
    v["sys_errors"] = w.sys_errors.into();
    println!("{v}");
    Ok(())
}

/// A child process killed (by its PID) and reaped when dropped.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn me() -> Result<std::path::PathBuf> {
    std::env::current_exe().map_err(|e| Error::io("current_exe", e))
}

/// Starts the kernel echo server; returns it and its port.
fn start_kernel_server(core: usize, max_secs: f64) -> Result<(Reaped, u16)> {
    let mut child = Command::new(me()?)
        .args(["bench", "kernel-server", "--core", &core.to_string()])
        .args(["--max-secs", &format!("{max_secs:.0}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| Error::io("spawn the kernel server", e))?;
    let out = child.stdout.take();
    let reaped = Reaped(child);
    let mut line = String::new();
    if let Some(o) = out {
        BufReader::new(o)
            .read_line(&mut line)
            .map_err(|e| Error::io("read the kernel server's port", e))?;
    }
    let port = line
        .trim()
        .strip_prefix("port ")
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| Error::Config(format!("the kernel server said `{}`", line.trim())))?;
    Ok((reaped, port))
}

/// Runs the kernel client against `target`; returns its summary (with
/// `peak_open`, `sys_errors`).
pub(super) fn run_kernel_client(
    core: usize,
    target: SocketAddrV4,
    load: &LoadArgs,
    duration: Duration,
    ramp_timeout: Duration,
) -> Result<(LoadSummary, serde_json::Value)> {
    let mut cmd = Command::new(me()?);
    cmd.args(["bench", "kernel-client", "--core", &core.to_string()])
        .args(["--target", &target.to_string()])
        .args(["--connections", &load.connections.to_string()])
        .args(["--size", &load.size.to_string()])
        .args(["--pipeline", &load.pipeline.to_string()])
        .args(["--max-pending", &load.max_pending.to_string()])
        .args(["--path", &load.path, "--host", &load.host])
        .args(["--duration", &duration.as_secs_f64().to_string()])
        .args(["--ramp-timeout", &ramp_timeout.as_secs_f64().to_string()]);
    cmd.arg("--mode").arg(match load.mode {
        ModeArg::Rr => "rr",
        ModeArg::Cps => "cps",
        ModeArg::Hold => "hold",
        ModeArg::Http => "http",
    });
    if let Some(w) = load.max_inflight {
        cmd.args(["--max-inflight", &w.to_string()]);
    }
    if load.start_after_ramp {
        cmd.arg("--start-after-ramp");
    }
    cmd.arg("--close").arg(match load.close {
        crate::cli::loadgen::CloseArg::Fin => "fin",
        crate::cli::loadgen::CloseArg::Rst => "rst",
    });
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| Error::io("spawn the kernel client", e))?;
    let mut child = Reaped(child);
    let deadline = StdInstant::now() + duration + ramp_timeout + Duration::from_secs(15);
    loop {
        match child.0.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if StdInstant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Ok(None) => {
                return Err(Error::Config(
                    "the kernel client did not finish in time (killed)".into(),
                ))
            }
            Err(e) => return Err(Error::io("wait for the kernel client", e)),
        }
    }
    let mut out = String::new();
    if let Some(mut o) = child.0.stdout.take() {
        let _ = o.read_to_string(&mut out);
    }
    let line = out.lines().last().unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(line)
        .map_err(|_| Error::Config(format!("the kernel client printed `{}`", out.trim())))?;
    let s: LoadSummary = serde_json::from_value(v.clone())
        .map_err(|e| Error::Config(format!("the kernel client's summary: {e}")))?;
    Ok((s, v))
}

// ---- tables ---------------------------------------------------------------

fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0 && a.is_finite()).then(|| a / b)
}

fn fmt_ratio(r: Option<f64>) -> String {
    r.map_or("n/a".into(), |r| format!("{r:.2}x"))
}

/// One point of a sweep, ours against the kernel.
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    /// Connections.
    pub connections: usize,
    /// Ours.
    pub ours: LoadSummary,
    /// Share of the window our threads waited for a CPU (other processes).
    pub ours_cpu_wait: f64,
    /// The kernel's (None: not run; see `kernel_note`).
    pub kernel: Option<LoadSummary>,
    /// Why the kernel has no figure or a partial one.
    pub kernel_note: Option<String>,
    /// ours / kernel, transactions (or connections) per second.
    pub ratio_tps: Option<f64>,
    /// kernel p99 / ours p99 (above 1: ours is faster).
    pub ratio_p99: Option<f64>,
}

fn note_partial(s: &LoadSummary, want: usize) -> Option<String> {
    (s.mode != Mode::Cps && s.time_to_full_s.is_none()).then(|| {
        format!(
            "only {} of {want} connections opened before the ramp timeout; nothing measured",
            s.open
        )
    })
}

fn print_points(a: &TcpBenchArgs, title: &str, unit: &str, pts: &[Point]) {
    a.say(title);
    a.say("(wait: share of the window our two pinned threads were runnable but preempted by other processes)");
    a.say(&format!(
        "{:>8} {:>12} {:>12} {:>8} {:>16} {:>16} {:>9} {:>6}",
        "conns",
        format!("ours {unit}"),
        format!("kern {unit}"),
        "ratio",
        "ours p50/p99 us",
        "kern p50/p99 us",
        "p99 k/o",
        "wait"
    ));
    for p in pts {
        let k = p.kernel.as_ref();
        a.say(&format!(
            "{:>8} {:>12.0} {:>12} {:>8} {:>16} {:>16} {:>9} {:>5.0}%",
            p.connections,
            p.ours.tps,
            k.map_or("n/a".into(), |k| format!("{:.0}", k.tps)),
            fmt_ratio(p.ratio_tps),
            format!("{}/{}", p.ours.latency.p50_us, p.ours.latency.p99_us),
            k.map_or("n/a".into(), |k| format!(
                "{}/{}",
                k.latency.p50_us, k.latency.p99_us
            )),
            fmt_ratio(p.ratio_p99),
            p.ours_cpu_wait * 100.0,
        ));
        if let Some(n) = &p.kernel_note {
            a.say(&format!("{:>8} kernel: {n}", ""));
        }
        if let Some(n) = note_partial(&p.ours, p.connections) {
            a.say(&format!("{:>8} ours: {n}", ""));
        }
    }
}

pub(super) fn load_args(mode: ModeArg, n: usize, size: usize, pipeline: usize) -> LoadArgs {
    LoadArgs {
        connections: n,
        mode,
        size,
        pipeline,
        rate: None,
        max_pending: 512,
        start_after_ramp: true,
        max_inflight: None,
        close: if mode == ModeArg::Cps {
            crate::cli::loadgen::CloseArg::Rst
        } else {
            crate::cli::loadgen::CloseArg::Fin
        },
        path: "/plaintext".into(),
        host: "bypass".into(),
    }
}

fn load_config(l: &LoadArgs) -> Result<LoadConfig> {
    l.config(vec![SocketAddrV4::new(SERVER_IP, BASE_PORT)])
}

/// tcp-rr or cps: a sweep over connection counts.
fn sweep(a: &TcpBenchArgs, mode: ModeArg) -> Result<Vec<Point>> {
    let (dur, ramp) = a.secs()?;
    let default: &[usize] = if mode == ModeArg::Cps {
        &[1, 64]
    } else {
        &[1, 64, 1024, 16384]
    };
    let tcp = a.tcp_opts(4096)?;
    let limit = fd_limit();
    let mut out = Vec::new();
    for n in a.points(default)? {
        let la = load_args(mode, n, a.size, a.pipeline.unwrap_or(1));
        let lc = load_config(&la)?;
        let ours = run_ours(
            &Placement::split(a.server_core, a.client_core),
            ServerKind::Echo,
            &lc,
            tcp,
            dur,
            ramp,
            Duration::from_micros(a.idle_sleep_us),
        )?;
        let (ours, ours_cpu_wait) = (ours.load, ours.cpu_wait_share);
        let (kernel, note) = if a.no_kernel {
            (None, Some("not run (--no-kernel)".to_string()))
        } else if n as u64 + 64 > limit {
            (
                None,
                Some(format!(
                    "cannot go this far: {n} sockets per process exceed the descriptor limit ({limit}, ulimit -n)"
                )),
            )
        } else {
            let (_server, port) =
                start_kernel_server(a.server_core, (dur + ramp).as_secs_f64() + 30.0)?;
            let target = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
            let (k, v) = run_kernel_client(a.client_core, target, &la, dur, ramp)?;
            let errs = v["sys_errors"].as_u64().unwrap_or(0);
            let note = note_partial(&k, n)
                .or_else(|| (errs > 0).then(|| format!("{errs} socket errors (descriptors?)")));
            (Some(k), note)
        };
        let ratio_tps = kernel.as_ref().and_then(|k| ratio(ours.tps, k.tps));
        let ratio_p99 = kernel.as_ref().and_then(|k| {
            ratio(k.latency.p99_us as f64, ours.latency.p99_us.max(1) as f64)
                .filter(|_| k.latency.count > 0 && ours.latency.count > 0)
        });
        out.push(Point {
            connections: n,
            ours_cpu_wait,
            ours,
            kernel,
            kernel_note: note,
            ratio_tps,
            ratio_p99,
        });
    }
    Ok(out)
}

fn emit(a: &TcpBenchArgs, scenario: &str, doc: serde_json::Value) {
    if a.json {
        let mut d = doc;
        d["scenario"] = scenario.into();
        d["machine"] = machine().into();
        println!("{d}");
    }
}

/// CPU model and count, for the record.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpu
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("unknown CPU")
        .trim()
        .to_string();
    format!("{model}, {} CPUs", runtime::available_cores().len().max(1))
}

fn plot(a: &TcpBenchArgs, title: &str, ylabel: &str, pts: &[Point]) -> Result<()> {
    let Some(file) = &a.plot else { return Ok(()) };
    let ours: Vec<(f64, f64)> = pts
        .iter()
        .map(|p| (p.connections as f64, p.ours.tps))
        .collect();
    let kern: Vec<(f64, f64)> = pts
        .iter()
        .filter_map(|p| p.kernel.as_ref().map(|k| (p.connections as f64, k.tps)))
        .collect();
    let svg = svg::line_chart(
        title,
        "connections",
        ylabel,
        &[
            ("bypass (userspace, mem wire)", &ours),
            ("kernel (epoll, loopback)", &kern),
        ],
    );
    std::fs::write(file, svg).map_err(|e| Error::io(format!("write {file}"), e))?;
    a.say(&format!("chart written to {file}"));
    Ok(())
}

fn setup_line(a: &TcpBenchArgs, what: &str) {
    a.say(&format!(
        "{what}; machine: {}; server core {}, client core {}; {} s measured per point after the ramp. \
         ours: our server and loadgen on the userspace stack over a mem wire between two pinned threads; \
         kernel: the same apps over kernel sockets with epoll, loopback, two processes on the same cores.",
        machine(),
        a.server_core,
        a.client_core,
        a.duration
    ));
}

pub fn tcp_rr(a: TcpBenchArgs) -> Result<()> {
    setup_line(
        &a,
        &format!(
            "tcp-rr: closed-loop {} B request/response, pipeline {}",
            a.size,
            a.pipeline.unwrap_or(1)
        ),
    );
    let pts = sweep(&a, ModeArg::Rr)?;
    print_points(&a, "transactions per second", "tx/s", &pts);
    let targets = rr_targets(&pts);
    for t in &targets {
        a.say(t);
    }
    plot(&a, "tcp-rr: transactions/s", "transactions/s", &pts)?;
    emit(
        &a,
        "tcp-rr",
        serde_json::json!({ "points": pts, "targets": targets, "size": a.size }),
    );
    Ok(())
}

fn rr_targets(pts: &[Point]) -> Vec<String> {
    let mut out = Vec::new();
    let at = |n: usize| pts.iter().find(|p| p.connections == n);
    if let Some(r) = at(64).and_then(|p| p.ratio_tps) {
        out.push(format!(
            "target tx/s at 64 conns >= 5x kernel: {r:.2}x ({})",
            if r >= 5.0 { "met" } else { "MISSED" }
        ));
    }
    if let Some(p) = at(1) {
        if let Some(k) = &p.kernel {
            let (o, kk) = (p.ours.latency.p99_us, k.latency.p99_us);
            let r = o as f64 / kk.max(1) as f64;
            out.push(format!(
                "target p99 at 1 conn <= 1/3 kernel: ours {o} us vs kernel {kk} us = {r:.2} ({})",
                if r <= 1.0 / 3.0 { "met" } else { "MISSED" }
            ));
        }
    }
    if let (Some(a), Some(b)) = (at(64), at(16384)) {
        if a.ours.tps > 0.0 {
            let r = b.ours.tps / a.ours.tps;
            out.push(format!(
                "target tx/s at 16384 conns >= 0.8x the figure at 64: {r:.2}x ({})",
                if r >= 0.8 { "met" } else { "MISSED" }
            ));
        }
    }
    out
}

pub fn cps(a: TcpBenchArgs) -> Result<()> {
    setup_line(
        &a,
        &format!(
            "cps: connect, one {} B request/response, close with RST (both sides, so neither keeps TIME-WAIT), N in flight",
            a.size
        ),
    );
    let pts = sweep(&a, ModeArg::Cps)?;
    print_points(
        &a,
        "connections set up and torn down per second",
        "conn/s",
        &pts,
    );
    let mut targets = Vec::new();
    if let Some(r) = pts.iter().rev().find_map(|p| p.ratio_tps) {
        targets.push(format!(
            "target cps >= 5x kernel: {r:.2}x ({})",
            if r >= 5.0 { "met" } else { "MISSED" }
        ));
    }
    for t in &targets {
        a.say(t);
    }
    plot(&a, "cps: connections/s", "connections/s", &pts)?;
    emit(
        &a,
        "cps",
        serde_json::json!({ "points": pts, "targets": targets }),
    );
    Ok(())
}

pub fn scale(a: TcpBenchArgs) -> Result<()> {
    let (dur, ramp) = a.secs()?;
    let tcp = a.tcp_opts(4096)?;
    let n = a.points(&[64])?[0];
    a.say(&format!(
        "scale: tcp-rr, {n} connections in total, {} B, on the userspace stack over mem wires; machine: {}. \
         There are only 2 cores, so: \"1 core\" runs one server and one client in one thread; \
         \"1 per side\" is the tcp-rr layout (server core {}, client core {}); \
         \"2 per side\" runs two independent wires, each core running one server and one client \
         (both sides share the 2 cores). Baseline: the 1-core figure of this run.",
        a.size,
        machine(),
        a.server_core,
        a.client_core
    ));
    let la = load_args(ModeArg::Rr, n, a.size, a.pipeline.unwrap_or(1));
    let mut rows = Vec::new();
    let layouts: [(&str, Placement, usize); 3] = [
        ("1 core", Placement::pairs(&[a.server_core]), 1),
        (
            "1 per side",
            Placement::split(a.server_core, a.client_core),
            1,
        ),
        (
            "2 per side",
            Placement::pairs(&[a.server_core, a.client_core]),
            2,
        ),
    ];
    for (name, place, wires) in layouts {
        let mut la = la.clone();
        la.connections = (n / wires).max(1);
        let r = run_ours(
            &place,
            ServerKind::Echo,
            &load_config(&la)?,
            tcp,
            dur,
            ramp,
            Duration::from_micros(a.idle_sleep_us),
        )?;
        rows.push((name, r.load, r.cpu_wait_share));
    }
    let base = rows[0].1.tps;
    a.say(&format!(
        "{:>12} {:>12} {:>10} {:>16} {:>6}",
        "layout", "tx/s", "vs 1 core", "p50/p99 us", "wait"
    ));
    let mut json_rows = Vec::new();
    for (name, s, wait) in rows.iter() {
        let r = ratio(s.tps, base);
        a.say(&format!(
            "{:>12} {:>12.0} {:>10} {:>16} {:>5.0}%",
            name,
            s.tps,
            fmt_ratio(r),
            format!("{}/{}", s.latency.p50_us, s.latency.p99_us),
            wait * 100.0
        ));
        json_rows.push(serde_json::json!({ "layout": name, "summary": s, "ratio_vs_1_core": r, "cpu_wait_share": wait }));
    }
    if let Some(file) = &a.plot {
        let svg = svg::bar_chart(
            "scale: tcp-rr transactions/s",
            "transactions/s",
            &rows
                .iter()
                .map(|(n, s, _)| (n.to_string(), s.tps))
                .collect::<Vec<_>>(),
        );
        std::fs::write(file, svg).map_err(|e| Error::io(format!("write {file}"), e))?;
        a.say(&format!("chart written to {file}"));
    }
    emit(&a, "scale", serde_json::json!({ "rows": json_rows }));
    Ok(())
}

// ---- conns ------------------------------------------------------------------

/// What the kernel spends per connection, measured with `pairs` loopback
/// connection pairs in this process.
#[derive(Debug, Clone, Serialize)]
pub struct KernelMem {
    /// Pairs opened (each pair: two ends, plus the accepting side).
    pub pairs: usize,
    /// Growth of Slab in /proc/meminfo (bytes).
    pub slab: i64,
    /// Growth of the TCP buffer memory of /proc/net/sockstat (bytes).
    pub tcp_mem: i64,
    /// (slab + tcp_mem) / (2 * pairs): bytes per connection end.
    pub per_end: f64,
}

fn meminfo_kb(key: &str) -> i64 {
    let s = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn sockstat_tcp_pages() -> i64 {
    let s = std::fs::read_to_string("/proc/net/sockstat").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("TCP:"))
        .and_then(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.iter()
                .position(|w| *w == "mem")
                .and_then(|i| f.get(i + 1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn kernel_mem(pairs: usize, size: usize) -> Result<KernelMem> {
    let l = epoll::listen(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))?;
    l.set_nonblocking(false)
        .map_err(|e| Error::io("set_blocking", e))?;
    let addr = l.local_addr().map_err(|e| Error::io("local_addr", e))?;
    let (slab0, mem0) = (meminfo_kb("Slab:"), sockstat_tcp_pages());
    let mut held: Vec<(TcpStream, TcpStream)> = Vec::with_capacity(pairs);
    let msg = vec![b'x'; size.max(1)];
    let mut buf = vec![0u8; size.max(1)];
    for _ in 0..pairs {
        let c = TcpStream::connect(addr).map_err(|e| Error::io("connect", e))?;
        let (s, _) = l.accept().map_err(|e| Error::io("accept", e))?;
        let _ = c.set_nodelay(true);
        // One request/response on each, so buffers are as in tcp-rr.
        use std::io::Write;
        (&c).write_all(&msg).map_err(|e| Error::io("write", e))?;
        (&s).read_exact(&mut buf)
            .map_err(|e| Error::io("read", e))?;
        (&s).write_all(&buf).map_err(|e| Error::io("write", e))?;
        (&c).read_exact(&mut buf)
            .map_err(|e| Error::io("read", e))?;
        held.push((c, s));
    }
    std::thread::sleep(Duration::from_millis(200));
    let slab = (meminfo_kb("Slab:") - slab0) * 1024;
    let tcp_mem = (sockstat_tcp_pages() - mem0) * 4096;
    drop(held);
    Ok(KernelMem {
        pairs,
        slab,
        tcp_mem,
        per_end: (slab + tcp_mem) as f64 / (2 * pairs.max(1)) as f64,
    })
}

pub fn conns(a: TcpBenchArgs) -> Result<()> {
    let (dur, ramp) = a.secs()?;
    let tcp = a.tcp_opts(1024)?;
    let n = a.points(&[1_000_000])?[0];
    a.say(&format!(
        "conns: {n} connections between our loadgen (core {}) and our server (core {}) in this process over a mem wire, \
         then {} B request/response on all of them for {} s; buffers rx {} B + tx {} B per end; machine: {}",
        a.client_core, a.server_core, a.size, a.duration, tcp.rx_buf, tcp.tx_buf, machine()
    ));
    let mut la = load_args(ModeArg::Rr, n, a.size, 1);
    // At most this many requests in flight: the wire ring holds 8192
    // frames; beyond it frames would be dropped and retried after 1 s.
    la.max_inflight = Some(a.max_inflight.min(n));
    let r = run_ours(
        &Placement::split(a.server_core, a.client_core),
        ServerKind::Echo,
        &load_config(&la)?,
        tcp,
        dur,
        ramp,
        Duration::from_micros(a.idle_sleep_us),
    )?;
    let grown = r.rss_full.saturating_sub(r.rss_before);
    let per_conn = grown as f64 / n as f64;
    let per_end = per_conn / 2.0;
    let full = r.load.time_to_full_s;
    match full {
        Some(t) => a.say(&format!(
            "established {} connections in {t:.2} s ({:.0} conn/s); handshake p50 {} us p99 {} us",
            n,
            n as f64 / t.max(1e-9),
            r.load.handshake.p50_us,
            r.load.handshake.p99_us
        )),
        None => a.say(&format!(
            "only {} of {n} connections were open when the ramp timed out ({} s); memory is per open connection",
            r.load.open, a.ramp_timeout
        )),
    }
    let open = if full.is_some() {
        n
    } else {
        r.load.open as usize
    };
    let per_end = if full.is_some() {
        per_end
    } else {
        grown as f64 / open.max(1) as f64 / 2.0
    };
    a.say(&format!(
        "memory: RSS {:.1} MiB before, {:.1} MiB at full table: {:.0} B per connection (both ends), {:.0} B per end (target <= 8192: {})",
        r.rss_before as f64 / 1048576.0,
        r.rss_full as f64 / 1048576.0,
        per_end * 2.0,
        per_end,
        if per_end <= 8192.0 && full.is_some() { "met" } else { "MISSED" }
    ));
    a.say(&format!(
        "request/response at full table: {:.0} tx/s, p50 {} us p99 {} us ({} transactions; {} frames dropped by the stacks: {} wire ring full, {} no pool buffer)",
        r.load.tps, r.load.latency.p50_us, r.load.latency.p99_us, r.load.latency.count, r.drops, r.drops_tx_full, r.drops_no_buffer
    ));
    a.say(&format!(
        "where an end's bytes go (by design): smoltcp tcp::Socket {} B in a one-slot SocketSet (Vec of {} B slots), \
         rx+tx buffers {} B, the stack's Conn/slot, the 4-tuple hash entry (u64 -> u32) and the app state; \
         plus allocator overhead and the doubling slack of the tables",
        std::mem::size_of::<smoltcp::socket::tcp::Socket<'static>>(),
        std::mem::size_of::<smoltcp::iface::SocketStorage<'static>>(),
        tcp.rx_buf + tcp.tx_buf
    ));
    let kpairs = ((fd_limit() as usize).saturating_sub(100) / 2).min(8000);
    let km = if a.no_kernel || kpairs == 0 {
        None
    } else {
        Some(kernel_mem(kpairs, a.size)?)
    };
    if let Some(k) = &km {
        a.say(&format!(
            "kernel, for comparison: {} loopback pairs in one process (descriptor limit {}): Slab +{:.1} MiB, TCP buffers +{:.1} MiB: {:.0} B per end (ours/kernel {})",
            k.pairs,
            fd_limit(),
            k.slab as f64 / 1048576.0,
            k.tcp_mem as f64 / 1048576.0,
            k.per_end,
            fmt_ratio(ratio(per_end, k.per_end))
        ));
        a.say("  (kernel figures are system-wide counters: other work on the machine adds noise)");
    }
    emit(
        &a,
        "conns",
        serde_json::json!({
            "connections": n,
            "ours": r,
            "rss_growth": grown,
            "bytes_per_end": per_end,
            "kernel": km,
            "kernel_bytes_per_end": km.as_ref().map(|k| k.per_end),
            "ratio_mem": km.as_ref().and_then(|k| ratio(per_end, k.per_end)),
        }),
    );
    Ok(())
}

// ---- http -------------------------------------------------------------------

struct Nginx {
    child: Reaped,
    port: u16,
    _dir: TempDir,
}

/// A directory removed when dropped.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn free_port() -> Result<u16> {
    let l = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))
        .map_err(|e| Error::io("bind", e))?;
    Ok(l.local_addr()
        .map_err(|e| Error::io("local_addr", e))?
        .port())
}

fn start_nginx(core: usize) -> Result<Nginx> {
    let dir = std::env::temp_dir().join(format!("bypass-nginx-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| Error::io("mkdir", e))?;
    let dir = TempDir(dir);
    let port = free_port()?;
    let d = dir.0.display();
    let conf = format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
         events {{ worker_connections 20000; }}\n\
         http {{\n  access_log off;\n  keepalive_requests 1000000000;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
         server {{\n    listen 127.0.0.1:{port} backlog=4096;\n    location = /plaintext {{ default_type text/plain; return 200 \"Hello, World!\"; }}\n  }}\n}}\n"
    );
    let path = dir.0.join("nginx.conf");
    std::fs::write(&path, conf).map_err(|e| Error::io("write nginx.conf", e))?;
    let child = Command::new("taskset")
        .args(["-c", &core.to_string(), "nginx", "-p"])
        .arg(&dir.0)
        .arg("-e")
        .arg(dir.0.join("error.log"))
        .arg("-c")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::io("spawn taskset nginx (is nginx-light installed?)", e))?;
    let child = Reaped(child);
    let deadline = StdInstant::now() + Duration::from_secs(5);
    while StdInstant::now() < deadline {
        if TcpStream::connect(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)).is_ok() {
            return Ok(Nginx {
                child,
                port,
                _dir: dir,
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = std::fs::read_to_string(dir.0.join("error.log")).unwrap_or_default();
    Err(Error::Config(format!(
        "nginx did not start listening on 127.0.0.1:{port}: {}",
        log.trim()
    )))
}

pub fn http(a: TcpBenchArgs) -> Result<()> {
    let (dur, ramp) = a.secs()?;
    let tcp = a.tcp_opts(4096)?;
    let pipeline = a.pipeline.unwrap_or(16);
    a.say(&format!(
        "http: GET /plaintext, pipeline {pipeline}, same load generator (bypass loadgen --mode http) for both; machine: {}.\n\
         ours: `bypass http`'s server (HttpApp) on the userspace stack (core {}) <- loadgen on the userspace stack (core {}), mem wire, one process.\n\
         nginx: nginx-light, 1 worker process (master_process off), pinned to core {}, 127.0.0.1, `return 200 \"Hello, World!\"` <- \
         the same loadgen over kernel sockets with epoll (core {}), a separate process.",
        machine(), a.server_core, a.client_core, a.server_core, a.client_core
    ));
    let mut pts = Vec::new();
    for n in a.points(&[64])? {
        let la = load_args(ModeArg::Http, n, a.size, pipeline);
        let ours = run_ours(
            &Placement::split(a.server_core, a.client_core),
            ServerKind::Http,
            &load_config(&la)?,
            tcp,
            dur,
            ramp,
            Duration::from_micros(a.idle_sleep_us),
        )?;
        let (ours, ours_cpu_wait) = (ours.load, ours.cpu_wait_share);
        let (kernel, note) = if a.no_kernel {
            (None, Some("not run (--no-kernel)".to_string()))
        } else if n as u64 + 64 > fd_limit() {
            (
                None,
                Some(format!("{n} sockets exceed the descriptor limit")),
            )
        } else {
            let ng = start_nginx(a.server_core)?;
            let target = SocketAddrV4::new(Ipv4Addr::LOCALHOST, ng.port);
            let (k, _) = run_kernel_client(a.client_core, target, &la, dur, ramp)?;
            drop(ng.child);
            let note = note_partial(&k, n);
            (Some(k), note)
        };
        let ratio_tps = kernel.as_ref().and_then(|k| ratio(ours.tps, k.tps));
        let ratio_p99 = kernel
            .as_ref()
            .and_then(|k| ratio(k.latency.p99_us as f64, ours.latency.p99_us.max(1) as f64));
        pts.push(Point {
            connections: n,
            ours_cpu_wait,
            ours,
            kernel,
            kernel_note: note,
            ratio_tps,
            ratio_p99,
        });
    }
    print_points(
        &a,
        "HTTP requests per second (ours vs nginx)",
        "req/s",
        &pts,
    );
    for p in &pts {
        let errs = p.ours.errors + p.kernel.as_ref().map_or(0, |k| k.errors);
        if errs > 0 {
            a.say(&format!(
                "{} conns: {errs} responses were errors or non-2xx",
                p.connections
            ));
        }
    }
    emit(
        &a,
        "http",
        serde_json::json!({ "points": pts, "pipeline": pipeline }),
    );
    Ok(())
}
