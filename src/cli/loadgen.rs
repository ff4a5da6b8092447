//! `bypass loadgen`: the client side of C10M experiments, on the userspace
//! stack over any backend.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant as StdInstant;

use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use bypass::app::loadgen::{
    CloseWith, LoadConfig, LoadGen, LoadStats, LoadSummary, Mode, StallWatch,
};
use bypass::port::Port;
use bypass::runtime::{self, RunConfig, Stop, TcpWorker};
use bypass::stack::{Stack, StackStats};
use bypass::time::{Clock, MonotonicClock};
use bypass::{Error, Result};

use super::ports::{self, WithPorts};
use super::serve::{shard_port, NetArgs};
use super::{say, Common};

/// `--mode`.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModeArg {
    /// Closed-loop request/response against an echo server.
    Rr,
    /// Connect, one request/response, close, as fast as possible.
    Cps,
    /// Open the connections and keep them.
    Hold,
    /// Pipelined HTTP GETs (against `bypass http`, nginx, ...).
    Http,
}

impl From<ModeArg> for Mode {
    fn from(m: ModeArg) -> Mode {
        match m {
            ModeArg::Rr => Mode::Rr,
            ModeArg::Cps => Mode::Cps,
            ModeArg::Hold => Mode::Hold,
            ModeArg::Http => Mode::Http,
        }
    }
}

/// `--close`.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseArg {
    /// FIN (our end then spends TIME-WAIT holding the 4-tuple).
    Fin,
    /// RST (the 4-tuple is free at once).
    Rst,
}

/// The load flags (shared with `bypass bench`).
#[derive(Args, Debug, Clone)]
pub struct LoadArgs {
    /// Connections to hold open (per core), or exchanges in flight in cps.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// What to do on each connection.
    #[arg(long, value_enum, default_value = "rr")]
    pub mode: ModeArg,
    /// Request bytes (rr and cps; the echo server returns as many).
    #[arg(long, value_name = "BYTES", default_value_t = 64)]
    pub size: usize,
    /// Requests in flight per connection (rr and http).
    #[arg(long, value_name = "DEPTH", default_value_t = 1)]
    pub pipeline: usize,
    /// Most connection attempts per second, per core (the ramp).
    #[arg(long, value_name = "CPS")]
    pub rate: Option<f64>,
    /// Most handshakes under way at once (keep it below the server's
    /// backlog).
    #[arg(long, value_name = "N", default_value_t = 512)]
    pub max_pending: usize,
    /// rr/http: send nothing until every connection is open (the ramp does
    /// not compete with the load).
    #[arg(long)]
    pub start_after_ramp: bool,
    /// rr with --pipeline 1: most requests in flight per core; connections
    /// take turns (for more connections than the wire holds frames).
    #[arg(long, value_name = "N")]
    pub max_inflight: Option<usize>,
    /// How cps ends each connection.
    #[arg(long, value_enum, default_value = "fin")]
    pub close: CloseArg,
    /// Path of the GETs (http).
    #[arg(long, default_value = "/plaintext")]
    pub path: String,
    /// Host header (http).
    #[arg(long, default_value = "bypass")]
    pub host: String,
}

impl LoadArgs {
    /// The per-core configuration.
    pub fn config(&self, targets: Vec<SocketAddr>) -> Result<LoadConfig> {
        let mut c = LoadConfig::new(targets, self.mode.into(), self.connections);
        c.size = self.size;
        c.pipeline = self.pipeline;
        c.rate = self.rate;
        c.max_pending = self.max_pending;
        c.start_after_ramp = self.start_after_ramp;
        c.max_inflight = self.max_inflight;
        c.close = match self.close {
            CloseArg::Fin => CloseWith::Fin,
            CloseArg::Rst => CloseWith::Rst,
        };
        c.path = self.path.clone();
        c.host = self.host.clone();
        c.validate().map_err(Error::Config)?;
        Ok(c)
    }
}

/// `bypass loadgen` flags.
#[derive(Args, Debug)]
pub struct LoadgenArgs {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    net: NetArgs,
    #[command(flatten)]
    load: LoadArgs,
    /// The server: ADDR:PORT.
    #[arg(long, value_name = "ADDR:PORT")]
    target: SocketAddr,
}

/// The ramp's progress bar (connections open of all asked for), drawn on
/// a terminal only; hidden with `--json` or when stderr is not a terminal.
pub fn ramp_bar(total: u64, json: bool) -> ProgressBar {
    if json {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    pb.set_style(
        ProgressStyle::with_template("ramp [{bar:30}] {pos:>8}/{len} open ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("#>."),
    );
    pb
}

/// Prints the summary table of a load run.
pub fn print_summary(s: &LoadSummary) {
    crate::cli::outln!(
        "{:>6} {:>10} {:>10} {:>8} {:>8} {:>12} {:>12}",
        "core",
        "connects",
        "open",
        "window",
        "tx",
        "tx/s",
        ""
    );
    for (i, c) in s.per_core.iter().enumerate() {
        crate::cli::outln!(
            "{:>6} {:>10} {:>10} {:>7.2}s {:>8} {:>12.0}",
            i,
            c.connects,
            c.open,
            c.window_s,
            c.transactions,
            c.tps
        );
    }
    crate::cli::outln!(
        "total: {} connects, {} opened, {} failed, {} closed, {} reset, {} errors; {:.0} tx/s{}",
        s.connects,
        s.opened,
        s.failed,
        s.closed,
        s.reset,
        s.errors,
        s.tps,
        s.time_to_full_s
            .map(|t| format!("; all connections open after {t:.3}s"))
            .unwrap_or_default()
    );
    let l = &s.latency;
    crate::cli::outln!(
        "latency (us): p50 {} p90 {} p99 {} p99.9 {} max {} mean {:.1} ({} samples)",
        l.p50_us,
        l.p90_us,
        l.p99_us,
        l.p999_us,
        l.max_us,
        l.mean_us,
        l.count
    );
    let h = &s.handshake;
    crate::cli::outln!(
        "handshake (us): p50 {} p99 {} max {} ({} samples)",
        h.p50_us,
        h.p99_us,
        h.max_us,
        h.count
    );
}

struct Run<'a>(&'a LoadgenArgs, Stop);

impl WithPorts for Run<'_> {
    fn run<P: Port>(self, mut ports: Vec<P>) -> Result<()> {
        let a = self.0;
        let cfg: RunConfig = a.common.run_config()?;
        if ports.len() != 1 {
            return Err(ports::count_error(ports.len(), "one --port"));
        }
        let lcfg = a.load.config(vec![a.target])?;
        let scfg = a.net.stack_config()?;
        let clock = MonotonicClock::new();
        let info = ports[0].info().clone();
        // One client stack per core, sharded by RSS like the server's, so
        // each core's connections use local ports whose replies hash back
        // to it.
        let sharding = shard_port(&mut ports[0], cfg.cores.len())?;
        let queues = ports[0].take_queues();
        if queues.len() != cfg.cores.len() {
            return Err(Error::Config(format!(
                "port {} has {} queues for {} cores; give it one queue per core (e.g. tap:NAME,queues={})",
                info.name,
                queues.len(),
                cfg.cores.len(),
                cfg.cores.len()
            )));
        }
        let mut shards = sharding.shards.into_iter();
        let mut workers = Vec::new();
        let mut stats: Vec<Arc<LoadStats>> = Vec::new();
        let mut sstats: Vec<Arc<StackStats>> = Vec::new();
        for q in queues {
            let mut stack = Stack::new(q, &info, scfg.clone(), clock.now())?;
            if let Some(sh) = shards.next() {
                stack.set_shard(sh)?;
            }
            let st = Arc::new(LoadStats::default());
            stats.push(st.clone());
            sstats.push(stack.stats().clone());
            workers.push(TcpWorker::new(stack, LoadGen::new(lcfg.clone(), st)));
        }
        let json = a.common.json;
        let total = (lcfg.connections * workers.len()) as u64;
        say(
            json,
            &format!(
                "loadgen: {} on {}:{} -> {} mode {:?}, {} connections ({} per core), cores {:?} (steering: {}); Ctrl-C stops",
                a.net.ip.join(" "), info.kind, info.name, a.target, lcfg.mode, total,
                lcfg.connections, cfg.cores, sharding.steering
            ),
        );
        let sum = |f: fn(&LoadStats) -> u64| stats.iter().map(|s| f(s)).sum::<u64>();
        let mut prev_tx = 0u64;
        let mut prev_conn = 0u64;
        let mut last = 0.0;
        let ramping = lcfg.mode != Mode::Cps;
        let bar = ramp_bar(if ramping { total } else { 0 }, json || !ramping);
        // A stall: no transaction and no new connection for a whole
        // stats interval (at least 1 s); `hold` is exempt.
        let window = cfg.stats_interval.map_or(1.0, |i| i.as_secs_f64()).max(1.0);
        let mut watch = StallWatch::new(window);
        let start = StdInstant::now();
        let done = runtime::run(&cfg, workers, &self.1, |t| {
            let tx = sum(|s| s.transactions.get());
            let opened = sum(|s| s.opened.get());
            let open = sum(|s| s.open.get());
            // `hold` opens its connections and then, by design, idles.
            let stalled = lcfg.mode != Mode::Hold && watch.sample(t, tx + opened);
            let dt = (t - last).max(1e-6);
            let drops: u64 = sstats
                .iter()
                .map(|s| s.drops() + s.tx_full.get() + s.tx_no_buffer.get())
                .sum();
            let full = stats.iter().all(|s| s.full_at_us.get() > 0);
            bar.set_position(open);
            if full {
                bar.finish_and_clear();
            }
            let line = format!(
                "{t:>5.0}s  open {open:>8} conn/s {:>8.0}  tx/s {:>10.0}  failed {:>6} errors {:>6} drops {:>6}{}",
                (opened - prev_conn) as f64 / dt,
                (tx - prev_tx) as f64 / dt,
                sum(|s| s.failed.get()),
                sum(|s| s.errors.get()),
                drops,
                if stalled { "  STALL: no progress for a whole interval" } else { "" },
            );
            if json || bar.is_hidden() || bar.is_finished() {
                say(json, &line);
            } else {
                bar.println(line);
            }
            prev_tx = tx;
            prev_conn = opened;
            last = t;
        })?;
        bar.finish_and_clear();
        let secs = start.elapsed().as_secs_f64();
        let gens: Vec<&LoadGen> = done.iter().map(|w| w.app()).collect();
        let s = LoadSummary::of(&gens);
        if json {
            let mut v = serde_json::to_value(&s).unwrap_or_default();
            v["command"] = "loadgen".into();
            v["duration_s"] = secs.into();
            v["target"] = a.target.to_string().into();
            v["port"] = serde_json::to_value(&info).unwrap_or_default();
            v["cores"] = serde_json::to_value(&cfg.cores).unwrap_or_default();
            v["steering"] = sharding.steering.into();
            v["stalls"] = serde_json::to_value(watch.stalls()).unwrap_or_default();
            crate::cli::outln!("{v}");
        } else {
            crate::cli::outln!("--- summary after {secs:.1}s");
            print_summary(&s);
        }
        if let Some(st) = watch.stalls().first() {
            return Err(Error::Config(format!(
                "the load stalled {} time(s): nothing completed and nothing connected for {window:.0} s (first at {:.1} s)",
                watch.stalls().len(),
                st.from_s
            )));
        }
        Ok(())
    }
}

pub fn run(a: LoadgenArgs) -> Result<()> {
    if a.net.listen.is_some() {
        return Err(Error::Config(
            "`bypass loadgen` does not listen; drop --listen".into(),
        ));
    }
    if a.common.pcap.is_some() {
        return Err(Error::Config(
            "`bypass loadgen` does not capture yet; drop --pcap (or capture on the server side)"
                .into(),
        ));
    }
    a.load.config(vec![a.target])?;
    let stop = Stop::with_signals()?;
    let cores = a.common.run_config()?.cores.len() as u16;
    ports::open(&a.common.ports, cores)?.run(Run(&a, stop))
}

#[cfg(test)]
mod tests {
    use super::ramp_bar;

    #[test]
    fn ramp_bar_is_hidden_for_json() {
        assert!(ramp_bar(10, true).is_hidden());
        let b = ramp_bar(10, false);
        b.set_position(4);
        assert_eq!(b.position(), 4);
        assert_eq!(b.length(), Some(10));
    }
}
