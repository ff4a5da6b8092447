//! The kernel side of the TCP scenarios: our echo server and our load
//! generator over kernel TCP sockets, as two child processes
//! (`bypass bench kernel-server` / `kernel-client`, hidden subcommands)
//! pinned to the same cores as ours, under one of the kernel baselines;
//! and nginx, the kernel-side HTTP server of `bench http`.
//!
//! Each child process gets its own descriptor allowance (`ulimit -n`), so
//! the kernel can hold as many connections as a process may.
//!
//! The server stops when its standard input closes and then prints its
//! socket errors as JSON; the client prints its summary, socket errors,
//! scheduler figures and stalls as JSON.

use std::io::{BufRead, BufReader, Read};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant as StdInstant};

use clap::{Args, ValueEnum};

use bypass::app::loadgen::{LoadGen, LoadStats, LoadSummary, Stall};
use bypass::app::tcp::{Echo, TcpApp};
use bypass::runtime::{self, RunConfig, Stop, Worker};
use bypass::{Error, Result};

use super::super::epoll::{self, EpollWorker, Wait};
use super::super::proc::{me, Reaped, Sched, TempDir};
use super::super::uring::UringWorker;
use super::ours::timed_run;
use super::report::SideRun;
use crate::cli::loadgen::{CloseArg, LoadArgs, ModeArg};

/// A kernel baseline: how the kernel side's event loop waits for and
/// moves data. All run the very same server and load-generator state
/// machines as ours.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Baseline {
    /// `kernel-epoll`: edge-triggered epoll, blocking up to 1 ms when idle.
    #[value(name = "epoll")]
    Epoll,
    /// `kernel-busypoll`: the same loop never blocking (`epoll_wait(…, 0)`)
    /// with `SO_BUSY_POLL` on every socket, so it spins like ours.
    #[value(name = "busypoll")]
    BusyPoll,
    /// `kernel-io_uring`: multishot accept, multishot receive into a
    /// provided-buffer ring, send; never blocking.
    #[value(name = "io_uring")]
    IoUring,
}

impl Baseline {
    /// Every baseline, by its flag name.
    pub const ALL_NAMES: [&'static str; 3] = ["epoll", "busypoll", "io_uring"];

    /// The name in tables and JSON.
    pub fn label(self) -> &'static str {
        match self {
            Baseline::Epoll => "kernel-epoll",
            Baseline::BusyPoll => "kernel-busypoll",
            Baseline::IoUring => "kernel-io_uring",
        }
    }

    fn flag(self) -> &'static str {
        match self {
            Baseline::Epoll => "epoll",
            Baseline::BusyPoll => "busypoll",
            Baseline::IoUring => "io_uring",
        }
    }

    /// The epoll loop's way of waiting (None: not an epoll baseline).
    fn wait(self) -> Option<Wait> {
        match self {
            Baseline::Epoll => Some(Wait::Block),
            Baseline::BusyPoll => Some(Wait::Spin),
            Baseline::IoUring => None,
        }
    }
}

/// `bypass bench kernel-server` (hidden): our echo server's application
/// over kernel sockets, on loopback.
#[derive(Args, Debug)]
pub struct KernelServerArgs {
    /// Core to pin to.
    #[arg(long, default_value_t = 0)]
    core: usize,
    /// Address to listen on (port 0: any free port; printed on stdout).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Stop after this many seconds at the latest (or when stdin closes).
    #[arg(long, default_value_t = 600.0)]
    max_secs: f64,
    /// The event loop.
    #[arg(long, value_enum, default_value = "epoll")]
    baseline: Baseline,
}

/// `bypass bench kernel-client` (hidden): our load generator over kernel
/// sockets; prints its summary as JSON.
#[derive(Args, Debug)]
pub struct KernelClientArgs {
    /// Core to pin to.
    #[arg(long, default_value_t = 1)]
    core: usize,
    /// The server.
    #[arg(long)]
    target: SocketAddr,
    #[command(flatten)]
    load: LoadArgs,
    /// Seconds measured after the ramp.
    #[arg(long, default_value_t = 2.0)]
    duration: f64,
    /// Longest ramp.
    #[arg(long, default_value_t = 30.0)]
    ramp_timeout: f64,
    /// The event loop.
    #[arg(long, value_enum, default_value = "epoll")]
    baseline: Baseline,
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

/// The worker of a baseline, with its application and socket-error
/// counter.
trait KernelWorker: Worker {
    type App;
    fn app(&self) -> &Self::App;
    fn sys_errors(&self) -> u64;
    fn peak_open(&self) -> usize;
}

impl<A: TcpApp> KernelWorker for EpollWorker<A> {
    type App = A;
    fn app(&self) -> &A {
        EpollWorker::app(self)
    }
    fn sys_errors(&self) -> u64 {
        self.sys_errors
    }
    fn peak_open(&self) -> usize {
        self.peak_open
    }
}

impl<A: TcpApp> KernelWorker for UringWorker<A> {
    type App = A;
    fn app(&self) -> &A {
        UringWorker::app(self)
    }
    fn sys_errors(&self) -> u64 {
        UringWorker::sys_errors(self)
    }
    fn peak_open(&self) -> usize {
        self.peak_open
    }
}

pub fn kernel_server(a: KernelServerArgs) -> Result<()> {
    let l = epoll::listen(a.listen)?;
    let port = l
        .local_addr()
        .map_err(|e| Error::io("local_addr", e))?
        .port();
    crate::cli::outln!("port {port}");
    match a.baseline.wait() {
        Some(wait) => serve(
            a.core,
            a.max_secs,
            EpollWorker::new(Echo::default(), Some(l), wait)?,
        ),
        None => serve(
            a.core,
            a.max_secs,
            UringWorker::new(Echo::default(), Some(l))?,
        ),
    }
}

fn serve<W: KernelWorker>(core: usize, max_secs: f64, w: W) -> Result<()> {
    let cfg = RunConfig {
        cores: vec![core],
        duration: Some(Duration::from_secs_f64(max_secs.clamp(0.1, 3600.0))),
        ..Default::default()
    };
    let stop = Stop::with_signals()?;
    let on_eof = stop.clone();
    // The parent closes our stdin to stop us (so we can report).
    std::thread::spawn(move || {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        on_eof.set();
    });
    let done = runtime::run(&cfg, vec![w], &stop, |_| {})?;
    let errs: u64 = done.iter().map(|w| w.sys_errors()).sum();
    crate::cli::outln!("{}", serde_json::json!({ "sys_errors": errs }));
    Ok(())
}

pub fn kernel_client(a: KernelClientArgs) -> Result<()> {
    let lcfg = a.load.config(vec![a.target])?;
    let st = Arc::new(LoadStats::default());
    let gen = LoadGen::new(lcfg, st.clone());
    match a.baseline.wait() {
        Some(wait) => load(&a, st, EpollWorker::new(gen, None, wait)?),
        None => load(&a, st, UringWorker::new(gen, None)?),
    }
}

fn load<W: KernelWorker<App = LoadGen>>(
    a: &KernelClientArgs,
    st: Arc<LoadStats>,
    w: W,
) -> Result<()> {
    let secs = |v: f64| Duration::from_secs_f64(v.clamp(0.1, 3600.0));
    let mut sched = [Sched::default(); 2];
    let (done, window) = timed_run(
        vec![a.core],
        vec![w],
        &[st],
        secs(a.duration),
        secs(a.ramp_timeout),
        Duration::ZERO,
        |full| sched[usize::from(!full)] = Sched::of(None, "bypass-core"),
    )?;
    let w = &done[0];
    let mut v = serde_json::to_value(LoadSummary::of(&[w.app()])).unwrap_or_default();
    v["peak_open"] = w.peak_open().into();
    v["sys_errors"] = w.sys_errors().into();
    v["sched_run_ns"] = sched[1].run_ns.saturating_sub(sched[0].run_ns).into();
    v["sched_wait_ns"] = sched[1].wait_ns.saturating_sub(sched[0].wait_ns).into();
    v["stalls"] = serde_json::to_value(&window.stalls).unwrap_or_default();
    crate::cli::outln!("{v}");
    Ok(())
}

/// A kernel-side server process: stopped (and its report read) by
/// [`ServerProc::stop`], killed if dropped before.
pub struct ServerProc {
    child: Reaped,
    /// The loopback address it listens on (127.0.0.1 or ::1).
    pub ip: IpAddr,
    /// The port it listens on.
    pub port: u16,
    kind: ServerKind,
}

enum ServerKind {
    Ours(std::process::ChildStdout),
    Nginx(TempDir),
}

impl ServerProc {
    /// Starts the kernel echo server under `baseline`, pinned to `core`,
    /// on loopback address `ip`.
    pub fn echo(baseline: Baseline, core: usize, max_secs: f64, ip: IpAddr) -> Result<ServerProc> {
        let mut child = Command::new(me()?)
            .args(["bench", "kernel-server", "--core", &core.to_string()])
            .args(["--listen", &SocketAddr::new(ip, 0).to_string()])
            .args(["--max-secs", &format!("{max_secs:.0}")])
            .args(["--baseline", baseline.flag()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| Error::io("spawn the kernel server", e))?;
        let out = child.stdout.take();
        let reaped = Reaped(child);
        let Some(out) = out else {
            return Err(Error::Config("the kernel server has no stdout".into()));
        };
        let mut out = BufReader::new(out);
        let mut line = String::new();
        out.read_line(&mut line)
            .map_err(|e| Error::io("read the kernel server's port", e))?;
        let port = line
            .trim()
            .strip_prefix("port ")
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| Error::Config(format!("the kernel server said `{}`", line.trim())))?;
        Ok(ServerProc {
            child: reaped,
            ip,
            port,
            kind: ServerKind::Ours(out.into_inner()),
        })
    }

    /// Starts nginx-light (one worker, no master) pinned to `core`,
    /// answering `GET /plaintext` on a free loopback port.
    pub fn nginx(core: usize) -> Result<ServerProc> {
        let dir = TempDir::new("nginx")?;
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
        // taskset execs nginx: the child's PID is nginx's.
        let child = Command::new("taskset")
            .args(["-c", &core.to_string(), "nginx", "-p"])
            .arg(&dir.0)
            .arg("-e")
            .arg(dir.0.join("error.log"))
            .arg("-c")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                Error::io(
                    "spawn taskset nginx (install it: apt-get install nginx-light)",
                    e,
                )
            })?;
        let child = Reaped(child);
        let deadline = StdInstant::now() + Duration::from_secs(5);
        while StdInstant::now() < deadline {
            if TcpStream::connect(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)).is_ok() {
                return Ok(ServerProc {
                    child,
                    ip: Ipv4Addr::LOCALHOST.into(),
                    port,
                    kind: ServerKind::Nginx(dir),
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

    /// Its threads' scheduler figures so far.
    fn sched(&self) -> Sched {
        Sched::of(Some(self.child.pid()), "")
    }

    /// Stops the server; returns its errors (socket errors of ours;
    /// nginx: error-log lines at level `error` or worse).
    fn stop(mut self) -> Result<u64> {
        match &mut self.kind {
            ServerKind::Ours(out) => {
                drop(self.child.0.stdin.take());
                self.child
                    .wait_bounded(Duration::from_secs(10), "the kernel server")?;
                let mut s = String::new();
                let _ = out.read_to_string(&mut s);
                let v: serde_json::Value =
                    serde_json::from_str(s.lines().last().unwrap_or_default()).map_err(|_| {
                        Error::Config(format!("the kernel server printed `{}`", s.trim()))
                    })?;
                Ok(v["sys_errors"].as_u64().unwrap_or(0))
            }
            ServerKind::Nginx(dir) => {
                let log = std::fs::read_to_string(dir.0.join("error.log")).unwrap_or_default();
                Ok(log
                    .lines()
                    .filter(|l| {
                        ["[error]", "[crit]", "[alert]", "[emerg]"]
                            .iter()
                            .any(|lvl| l.contains(lvl))
                    })
                    .count() as u64)
            }
        }
    }
}

fn free_port() -> Result<u16> {
    let l = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))
        .map_err(|e| Error::io("bind", e))?;
    Ok(l.local_addr()
        .map_err(|e| Error::io("local_addr", e))?
        .port())
}

/// System-wide TCP counters that grow when the kernel drops or loses
/// segments: `RetransSegs` (/proc/net/snmp) plus `ListenOverflows` and
/// `ListenDrops` (/proc/net/netstat).
fn kernel_loss_counters() -> u64 {
    fn field(file: &str, prefix: &str, name: &str) -> u64 {
        let s = std::fs::read_to_string(file).unwrap_or_default();
        let mut rows = s.lines().filter(|l| l.starts_with(prefix));
        let (Some(h), Some(v)) = (rows.next(), rows.next()) else {
            return 0;
        };
        h.split_whitespace()
            .zip(v.split_whitespace())
            .find(|(k, _)| *k == name)
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0)
    }
    field("/proc/net/snmp", "Tcp:", "RetransSegs")
        + field("/proc/net/netstat", "TcpExt:", "ListenOverflows")
        + field("/proc/net/netstat", "TcpExt:", "ListenDrops")
}

/// Runs the kernel client (under `baseline`) against `server`, then stops
/// the server; returns the kernel side's figures.
pub fn run_kernel(
    baseline: Baseline,
    server: ServerProc,
    core: usize,
    load: &LoadArgs,
    duration: Duration,
    ramp_timeout: Duration,
) -> Result<SideRun> {
    let target = SocketAddr::new(server.ip, server.port);
    let s0 = server.sched();
    let loss0 = kernel_loss_counters();
    let client = run_kernel_client(baseline, core, target, load, duration, ramp_timeout);
    let s1 = server.sched();
    let loss = kernel_loss_counters().saturating_sub(loss0);
    let server_errors = server.stop()?;
    let (summary, v) = client?;
    let stalls: Vec<Stall> = serde_json::from_value(v["stalls"].clone()).unwrap_or_default();
    let sys_errors = v["sys_errors"].as_u64().unwrap_or(0);
    let run = v["sched_run_ns"].as_u64().unwrap_or(0) + s1.run_ns.saturating_sub(s0.run_ns);
    let wait = v["sched_wait_ns"].as_u64().unwrap_or(0) + s1.wait_ns.saturating_sub(s0.wait_ns);
    Ok(SideRun::new(
        summary,
        sys_errors + server_errors,
        loss,
        if run + wait > 0 {
            wait as f64 / (run + wait) as f64
        } else {
            0.0
        },
        stalls,
    ))
}

/// Runs the kernel client (under `baseline`, pinned to `core`) against
/// `target` in a child process; returns its summary and its whole JSON.
pub fn run_kernel_client(
    baseline: Baseline,
    core: usize,
    target: SocketAddr,
    load: &LoadArgs,
    duration: Duration,
    ramp_timeout: Duration,
) -> Result<(LoadSummary, serde_json::Value)> {
    let mut cmd = Command::new(me()?);
    cmd.args(["bench", "kernel-client", "--core", &core.to_string()])
        .args(["--baseline", baseline.flag()])
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
        CloseArg::Fin => "fin",
        CloseArg::Rst => "rst",
    });
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| Error::io("spawn the kernel client", e))?;
    let mut child = Reaped(child);
    let out = child.0.stdout.take();
    // Read while it runs, so a full pipe cannot block it.
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut o) = out {
            let _ = o.read_to_string(&mut s);
        }
        s
    });
    child.wait_bounded(
        duration + ramp_timeout + Duration::from_secs(15),
        "the kernel client",
    )?;
    let out = reader.join().unwrap_or_default();
    let line = out.lines().last().unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(line)
        .map_err(|_| Error::Config(format!("the kernel client printed `{}`", out.trim())))?;
    let summary: LoadSummary = serde_json::from_value(v.clone())
        .map_err(|e| Error::Config(format!("the kernel client's summary: {e}")))?;
    Ok((summary, v))
}
