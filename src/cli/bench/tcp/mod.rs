//! The TCP scenarios of `bypass bench`: `tcp-rr`, `cps`, `conns`, `http`
//! and `scale`, one file each, over three shared parts:
//!
//! - [`ours`]: our server (`bypass echo`'s or `bypass http`'s application)
//!   and our load generator ([`LoadGen`](bypass::app::loadgen::LoadGen))
//!   on the userspace stack, over an in-memory wire (`mem` port), in this
//!   process, each on its own pinned thread;
//! - [`kernel`]: the very same applications over kernel TCP sockets, over
//!   loopback, as two separate processes (`bypass bench kernel-server` /
//!   `kernel-client`, hidden subcommands) pinned to the same cores, under
//!   each kernel baseline ([`Baseline`]: plain epoll, busy-polling epoll,
//!   io_uring); for `http` the kernel server is nginx (one worker);
//! - [`report`]: one measured point per connection count, with every
//!   side's errors, drops and CPU wait, the ratio against the best kernel
//!   baseline (printed as invalid when either side had errors), the table,
//!   the JSON and the chart.
//!
//! Each measurement first opens every connection (the ramp), then counts
//! transactions and records latencies for `--duration` seconds. Every run
//! is bounded: a ramp that does not finish within `--ramp-timeout` is cut
//! short and reported as such; child processes are killed by PID.

mod conns;
mod http;
pub(super) mod kernel;
mod ours;
pub(super) mod report;
mod rr;
mod scale;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use clap::Args;

use bypass::app::loadgen::LoadConfig;
use bypass::stack::TcpOpts;
use bypass::{Error, Result};

use crate::cli::loadgen::{LoadArgs, ModeArg};
pub use conns::conns;
pub use http::http;
pub use kernel::{kernel_client, kernel_server, Baseline, KernelClientArgs, KernelServerArgs};
// For `bench hyper`.
pub use rr::{cps, tcp_rr};
pub use scale::scale;
#[cfg(feature = "bench-hyper")]
pub use {kernel::run_kernel_client, ours::timed_run, report::machine};

const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const SERVER_IP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);
const CLIENT_IP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2);

/// Ours' server and client addresses for an address family (4 or 6).
pub(super) fn family_ends(family: u8) -> (IpAddr, IpAddr) {
    match family {
        6 => (SERVER_IP6.into(), CLIENT_IP6.into()),
        _ => (SERVER_IP.into(), CLIENT_IP.into()),
    }
}
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
    /// tcp-rr, cps: run the whole sweep this many times, round after
    /// round, and report each side's median round at each point (every
    /// round's rate is in the JSON). Rates on a shared VM swing between
    /// identical runs; a median of 3 or 5 is what to compare.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=50))]
    pub rounds: u32,
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
    /// conns: seconds the full table is held idle before the load (its
    /// idle memory is read at the end of the hold).
    #[arg(long, value_name = "SECS", default_value_t = 2.0)]
    pub hold: f64,
    /// conns: connections that first echo one bulk transfer each, to show
    /// a busy connection gets a full window (0: none).
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub bulk: usize,
    /// conns: let the connection tables grow as connections come instead
    /// of sizing them for the run (to see what a grow costs the loop).
    #[arg(long)]
    pub no_presize: bool,
    /// conns: bytes of each bulk transfer (4 MiB: a 1 MiB transfer ends
    /// while CUBIC is still growing its window past 60 KB, after HyStart++
    /// leaves slow start).
    #[arg(long, value_name = "BYTES", default_value_t = 4 << 20)]
    pub bulk_bytes: usize,
    /// Ours: after 1024 idle loop iterations in a row, sleep this many
    /// microseconds (0: spin, the poll-mode default; on a shared machine a
    /// sleeping thread gives its core to others while idle).
    #[arg(long, value_name = "US", default_value_t = 0)]
    pub idle_sleep_us: u64,
    /// Skip the kernel (or nginx) side.
    #[arg(long)]
    pub no_kernel: bool,
    /// The kernel baselines to run (tcp-rr, cps), comma-separated; the
    /// ratio is against the best of them at each point.
    #[arg(long, value_name = "B[,B..]", value_delimiter = ',', default_values = Baseline::ALL_NAMES)]
    pub baselines: Vec<Baseline>,
    /// The address family of every connection (tcp-rr, cps): 4, or 6 for
    /// IPv6 (ours over IPv6 on the mem wire, the kernel over ::1).
    #[arg(long, value_name = "4|6", default_value_t = 4, value_parser = clap::value_parser!(u8).range(4..=6))]
    pub family: u8,
    /// Print one JSON document on stdout (the table goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// Write the chart (SVG, drawn with plotters) to this file.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<String>,
}

impl TcpBenchArgs {
    pub(super) fn points(&self, default: &[usize]) -> Result<Vec<usize>> {
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

    pub(super) fn secs(&self) -> Result<(Duration, Duration)> {
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

    /// The stacks' TCP settings. `default_buf` is the smoltcp engine's
    /// buffer size for this scenario; the bypass engine's windows are
    /// limits, not allocations, so it runs with its own defaults.
    pub(super) fn tcp_opts(&self, default_buf: usize) -> Result<TcpOpts> {
        let d = TcpOpts::default();
        let default_buf = match d.engine {
            bypass::stack::TcpEngine::Bypass => d.rx_buf,
            bypass::stack::TcpEngine::Smoltcp => default_buf,
        };
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

    pub(super) fn say(&self, line: &str) {
        crate::cli::say(self.json, line);
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

pub(super) fn load_config(l: &LoadArgs, family: u8) -> Result<LoadConfig> {
    l.config(vec![SocketAddr::new(family_ends(family).0, BASE_PORT)])
}

impl TcpBenchArgs {
    /// The kernel baselines' loopback address for `--family`.
    pub(super) fn loopback(&self) -> IpAddr {
        if self.family == 6 {
            Ipv6Addr::LOCALHOST.into()
        } else {
            Ipv4Addr::LOCALHOST.into()
        }
    }

    /// Refuses `--family 6` for a scenario that runs over IPv4 only.
    pub(super) fn only_ipv4(&self, scenario: &str) -> Result<()> {
        if self.family == 4 {
            return Ok(());
        }
        Err(Error::Config(format!(
            "bench {scenario} runs over IPv4 only; --family 6 is for tcp-rr and cps"
        )))
    }

    /// Checks `--family`.
    pub(super) fn check_family(&self) -> Result<()> {
        match self.family {
            4 | 6 => Ok(()),
            f => Err(Error::Config(format!("--family {f}: use 4 or 6"))),
        }
    }
}

/// Ours at one point, with this run's timings and cores: on
/// `place` (None: server on `--server-core`, client on `--client-core`).
fn run_ours_at(
    a: &TcpBenchArgs,
    place: Option<ours::Placement>,
    kind: ours::ServerKind,
    la: &LoadArgs,
    tcp: TcpOpts,
) -> Result<ours::OursRun> {
    let (duration, ramp_timeout) = a.secs()?;
    ours::run_ours(
        &place.unwrap_or_else(|| ours::Placement::split(a.server_core, a.client_core)),
        kind,
        &load_config(la, a.family)?,
        tcp,
        ours::Times {
            ramp_timeout,
            hold: Duration::ZERO,
            duration,
            wait_turns: false,
        },
        Duration::from_micros(a.idle_sleep_us),
        ours::Extra {
            progress: false,
            presize: true,
        },
    )
}

/// Every kernel baseline of `--baselines` at one point of `n` connections
/// (the server of each from `server(baseline)`, named `label(baseline)`):
/// the ones that ran, and why the others did not.
fn run_baselines(
    a: &TcpBenchArgs,
    n: usize,
    la: &LoadArgs,
    server: impl Fn(Baseline) -> Result<kernel::ServerProc>,
    label: impl Fn(Baseline) -> String,
) -> Result<(BTreeMap<String, report::SideRun>, BTreeMap<String, String>)> {
    let (dur, ramp) = a.secs()?;
    let limit = kernel::fd_limit();
    let (mut ran, mut not_run) = (BTreeMap::new(), BTreeMap::new());
    for &b in &a.baselines {
        if a.no_kernel {
            not_run.insert(label(b), "--no-kernel".to_string());
        } else if n as u64 + 64 > limit {
            not_run.insert(
                label(b),
                format!("{n} sockets per process exceed the descriptor limit ({limit}, ulimit -n)"),
            );
        } else {
            let k = kernel::run_kernel(b, server(b)?, a.client_core, la, dur, ramp)?;
            ran.insert(label(b), k);
        }
    }
    Ok((ran, not_run))
}
