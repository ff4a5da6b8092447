//! `bypass bench lossy`: the kernel and bypass on a real, lossy,
//! rate-limited path, in the same run.
//!
//! The path is built from network namespaces (see [`topo`]): kernel
//! clients reach a kernel echo server and `bypass echo` (one process per
//! bypass configuration, on a TAP in the router namespace) through a
//! router that drops TCP frames at random with nftables and can shape
//! with `tbf`. Scenarios:
//! - `bulk`: N MiB echoed, lossless and lossy: goodput, and the goodput
//!   kept under loss (bypass's kept fraction against the kernel's);
//! - `rr`: request/response latency percentiles at a small loss, with the
//!   kernel client and with `bypass loadgen` as the client;
//! - `flows`: two bulk flows through a `tbf` bottleneck: aggregate and
//!   shares.
//!
//! Every client tracks the longest gap without progress (its stall);
//! `--max-stall-ms` fails the run past it. Everything is bounded in time.

mod kernel;
mod ours;
mod report;
mod topo;

use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};

use bypass::runtime::Stop;
use bypass::{Error, Result};

use self::kernel::{End, Flow, FlowResult, KernelServer, RrResult};
use self::ours::{BypassConfig, LoadRun, Proc};
use self::topo::{Counters, Shaping, TapSlot, Topo, PPM_MOD};

/// The echo port of every server.
const ECHO_PORT: u16 = 7;
/// The bypass configurations measured when none is named: both engines.
const DEFAULT_CONFIGS: [&str; 2] = ["bypass=--tcp bypass", "smoltcp=--tcp smoltcp"];
/// A bulk row (its lossless and lossy transfers, alternated) stops
/// repeating once its transfers took this long.
const REPEAT_BUDGET: Duration = Duration::from_secs(4);

/// A scenario of the run.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// N MiB echoed, lossless then lossy.
    Bulk,
    /// Request/response latency at --rr-loss.
    Rr,
    /// Two bulk flows through the --rate bottleneck.
    Flows,
}

/// `bypass bench lossy` flags.
#[derive(Args, Debug)]
pub struct LossyArgs {
    /// Scenarios to run, in order.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "bulk,rr,flows"
    )]
    pub scenarios: Vec<Scenario>,
    /// Random TCP frame loss in each direction for the lossy bulk runs:
    /// `1%`, `0.1%`, `0`.
    #[arg(long, value_name = "PERCENT", default_value = "1%", value_parser = parse_loss)]
    pub loss: u32,
    /// Loss in each direction for request/response.
    #[arg(long, value_name = "PERCENT", default_value = "0.1%", value_parser = parse_loss)]
    pub rr_loss: u32,
    /// Loss in each direction for the two flows.
    #[arg(long, value_name = "PERCENT", default_value = "0", value_parser = parse_loss)]
    pub flows_loss: u32,
    /// Bottleneck of the two flows: a tbf on every router egress
    /// interface (`100mbit`, `1gbit`, `500kbit`).
    #[arg(long, value_name = "RATE", default_value = "100mbit", value_parser = parse_rate)]
    pub rate: u64,
    /// Also shape the bulk and rr runs with --rate.
    #[arg(long)]
    pub shape_all: bool,
    /// MiB each bulk transfer sends (and gets back).
    #[arg(long, value_name = "MIB", default_value_t = 4.0)]
    pub mib: f64,
    /// Bulk transfers per server and loss setting (the median is shown),
    /// the lossless and lossy ones alternating; fewer when a server's take
    /// over 4 s in all.
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub repeat: usize,
    /// Time bound of each bulk transfer; past it the transfer is a failure.
    #[arg(long, value_name = "SECS", default_value_t = 60.0)]
    pub timeout: f64,
    /// Seconds of request/response per row.
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    pub rr_secs: f64,
    /// Stop a kernel-client rr row after this many transactions (bypass
    /// loadgen rows run for --rr-secs).
    #[arg(long, value_name = "N")]
    pub rr_transactions: Option<u64>,
    /// rr connections.
    #[arg(long, default_value_t = 1)]
    pub connections: usize,
    /// rr request and response bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 64)]
    pub size: usize,
    /// Seconds the two flows run; the first fifth is warm-up, the rest is
    /// measured.
    #[arg(long, value_name = "SECS", default_value_t = 6.0)]
    pub flows_secs: f64,
    /// A bypass configuration NAME=ARGS (repeatable): ARGS go to `bypass
    /// echo` and `bypass loadgen`, e.g. `--bypass "big=--rx-buf 262144"`.
    /// Without --bypass, --bypass-args and --bypass-label: both engines,
    /// `bypass=--tcp bypass` and `smoltcp=--tcp smoltcp`.
    #[arg(long = "bypass", value_name = "NAME=ARGS", allow_hyphen_values = true)]
    pub bypass: Vec<String>,
    /// Extra arguments of one more bypass configuration (named by
    /// --bypass-label), e.g. "--tcp bypass --rx-buf 65536".
    #[arg(long, value_name = "ARGS", allow_hyphen_values = true)]
    pub bypass_args: Option<String>,
    /// Column name of the --bypass-args configuration [default: bypass].
    #[arg(long, value_name = "NAME")]
    pub bypass_label: Option<String>,
    /// Core of `bypass echo` (unless its ARGS give --cores).
    #[arg(long, value_name = "CORE", default_value_t = 0)]
    pub server_core: usize,
    /// Core of `bypass loadgen` (unless its ARGS give --cores).
    #[arg(long, value_name = "CORE", default_value_t = 1)]
    pub client_core: usize,
    /// Least retransmission timeout of the kernel ends (the servers' and the
    /// clients' routes), ms: by default the bypass engine's (`--rto-min-ms`
    /// of `bypass echo`), as a performance engineer sets it on a LAN path
    /// (`ip route ... rto_min`); 200 is Linux's own default.
    #[arg(long, value_name = "MS", default_value_t = 5)]
    pub kernel_rto_min_ms: u32,
    /// Leave the kernel echo server and the bench's kernel clients to the
    /// scheduler. By default the kernel server is pinned to --server-core
    /// and the clients to --client-core, the cores `bypass echo` and
    /// `bypass loadgen` get, so every server has the same one core.
    #[arg(long)]
    pub kernel_unpinned: bool,
    /// Leave out the rr rows with `bypass loadgen` as the client.
    #[arg(long)]
    pub no_bypass_client: bool,
    /// Next-hop MTU of the router's route to the kernel clients, in bytes
    /// (all scenarios): what the servers send back crosses a hop narrower
    /// than the clients' own 1,500-byte link, which only path MTU
    /// discovery (RFC 1191) finds. Try 1280.
    #[arg(long, value_name = "BYTES")]
    pub mtu: Option<u32>,
    /// With --mtu: the router's "fragmentation needed" never leaves it (a
    /// path MTU black hole); the kernel server gets tcp_mtu_probing=1.
    #[arg(long, requires = "mtu")]
    pub mtu_silent: bool,
    /// Fail if any client goes longer than this without progress.
    #[arg(long, value_name = "MS")]
    pub max_stall_ms: Option<f64>,
    /// Print one JSON object per scenario on stdout (the tables go to
    /// stderr).
    #[arg(long)]
    pub json: bool,
}

/// `1%`, `0.1%`, `0` -> parts per million.
fn parse_loss(s: &str) -> std::result::Result<u32, String> {
    let t = s.trim();
    let pct = match t.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map_err(|e| e.to_string())?,
        None if t.parse::<f64>() == Ok(0.0) => 0.0,
        None => return Err("write the loss in percent, e.g. 1% or 0.1% (or 0)".into()),
    };
    if !(0.0..=100.0).contains(&pct) {
        return Err("loss must be between 0% and 100%".into());
    }
    Ok((pct / 100.0 * PPM_MOD as f64).round() as u32)
}

/// `100mbit`, `1gbit`, `500kbit`, `2000000` (bit/s) -> bit/s.
fn parse_rate(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    let (num, mult) = if let Some(n) = t.strip_suffix("gbit") {
        (n, 1e9)
    } else if let Some(n) = t.strip_suffix("mbit") {
        (n, 1e6)
    } else if let Some(n) = t.strip_suffix("kbit") {
        (n, 1e3)
    } else {
        (t.strip_suffix("bit").unwrap_or(&t), 1.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a rate; write e.g. 100mbit or 1gbit"))?;
    let bps = v * mult;
    if !(8_000.0..=100e9).contains(&bps) {
        return Err("the rate must be between 8kbit and 100gbit".into());
    }
    Ok(bps as u64)
}

fn pct(ppm: u32) -> f64 {
    ppm as f64 / PPM_MOD as f64
}

impl LossyArgs {
    fn configs(&self) -> Result<Vec<BypassConfig>> {
        let mut v = self
            .bypass
            .iter()
            .map(|s| BypassConfig::parse(s))
            .collect::<Result<Vec<_>>>()?;
        if self.bypass_args.is_some() || self.bypass_label.is_some() {
            v.push(BypassConfig::new(
                self.bypass_label.as_deref().unwrap_or("bypass"),
                self.bypass_args.as_deref().unwrap_or(""),
            )?);
        }
        if v.is_empty() {
            v = DEFAULT_CONFIGS
                .iter()
                .map(|s| BypassConfig::parse(s))
                .collect::<Result<Vec<_>>>()?;
        }
        for (i, c) in v.iter().enumerate() {
            if v[..i].iter().any(|o| o.label == c.label) {
                return Err(Error::Config(format!(
                    "two bypass configurations are named `{}`",
                    c.label
                )));
            }
        }
        if v.len() > 8 {
            return Err(Error::Config("at most 8 bypass configurations".into()));
        }
        v.shrink_to_fit();
        Ok(v)
    }

    fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::Config(m.into()));
        let cores = bypass::runtime::available_cores();
        if !(self.mib > 0.0 && self.mib <= 4096.0) {
            return bad("--mib must be more than 0 and at most 4096");
        }
        for (v, f) in [
            (self.timeout, "--timeout"),
            (self.rr_secs, "--rr-secs"),
            (self.flows_secs, "--flows-secs"),
        ] {
            if !(v > 0.0 && v <= 3600.0) {
                return Err(Error::Config(format!(
                    "{f} must be more than 0 and at most 3600 seconds"
                )));
            }
        }
        if !(1..=1024).contains(&self.connections) {
            return bad("--connections must be between 1 and 1024");
        }
        if !(1..=65536).contains(&self.size) {
            return bad("--size must be between 1 and 65536 bytes");
        }
        if !(1..=100).contains(&self.repeat) {
            return bad("--repeat must be between 1 and 100");
        }
        if !(1..=60_000).contains(&self.kernel_rto_min_ms) {
            return bad("--kernel-rto-min-ms must be between 1 and 60000");
        }
        if self.rr_transactions == Some(0) {
            return bad("--rr-transactions must be at least 1");
        }
        for (c, f) in [
            (self.server_core, "--server-core"),
            (self.client_core, "--client-core"),
        ] {
            if !cores.contains(&c) {
                return Err(Error::Config(format!(
                    "{f} {c} is not a core this process may use ({cores:?})"
                )));
            }
        }
        if self.scenarios.is_empty() {
            return bad("--scenarios names nothing to run");
        }
        if self.mtu.is_some_and(|m| !(576..=1500).contains(&m)) {
            return bad("--mtu must be between 576 and 1500 bytes (the clients' link is 1500)");
        }
        Ok(())
    }

    fn bulk_bytes(&self) -> u64 {
        (self.mib * (1u64 << 20) as f64) as u64
    }

    fn shaping(&self, always: bool) -> Option<Shaping> {
        (always || self.shape_all).then(|| Shaping::for_rate(self.rate))
    }
}

/// With its args, a bypass configuration pinned to `core` unless it says
/// otherwise.
fn with_core(c: &BypassConfig, core: usize) -> BypassConfig {
    let mut c = c.clone();
    if !c
        .args
        .iter()
        .any(|a| a == "--cores" || a.starts_with("--cores="))
    {
        c.args.extend(["--cores".to_string(), core.to_string()]);
    }
    c
}

// ---- results ------------------------------------------------------------------

/// One bulk transfer.
pub struct Transfer {
    flow: FlowResult,
    loss: Counters,
}

impl Transfer {
    /// Goodput (both directions: 2 x N over the time), if it completed
    /// intact.
    fn mbit(&self) -> Option<f64> {
        (self.flow.end == End::Done && self.flow.intact && self.flow.secs > 0.0)
            .then(|| 2.0 * self.flow.back as f64 * 8.0 / self.flow.secs / 1e6)
    }
}

/// The transfers of one server at one loss setting.
pub struct BulkRun {
    ppm: u32,
    samples: Vec<Transfer>,
}

impl BulkRun {
    /// The transfer shown: the first that failed, else the (lower) median.
    fn shown(&self) -> &Transfer {
        if let Some(bad) = self.samples.iter().find(|t| t.mbit().is_none()) {
            return bad;
        }
        let mut v: Vec<&Transfer> = self.samples.iter().collect();
        v.sort_by(|a, b| {
            a.mbit()
                .partial_cmp(&b.mbit())
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        // The lower median: of two transfers, the slower.
        v[(v.len() - 1) / 2]
    }

    /// Median goodput, if every transfer completed intact.
    fn mbit(&self) -> Option<f64> {
        self.shown().mbit()
    }

    /// Longest stall of any transfer.
    fn stall(&self) -> Duration {
        self.samples
            .iter()
            .map(|t| t.flow.stall)
            .max()
            .unwrap_or_default()
    }

    /// Frames counted over all transfers.
    fn loss(&self) -> Counters {
        self.samples
            .iter()
            .fold(Counters::default(), |acc, t| acc.plus(&t.loss))
    }
}

/// A server's bulk runs (lossless, lossy).
pub struct BulkRow {
    server: String,
    runs: Vec<BulkRun>,
    /// ICMP "fragmentation needed" the router sent over the whole row,
    /// warm-up included (a server that learns a narrower hop learns it
    /// there, and its measured runs meet none).
    frag_needed: u64,
}

impl BulkRow {
    /// Goodput kept under loss.
    fn kept(&self) -> Option<f64> {
        let (a, b) = (self.runs.first()?.mbit()?, self.runs.get(1)?.mbit()?);
        Some(b / a)
    }
}

/// One request/response row.
pub struct RrRow {
    client: String,
    server: String,
    m: RrFigures,
    loss: Counters,
}

/// The figures of an rr row, whichever client measured them.
pub struct RrFigures {
    transactions: u64,
    tps: f64,
    p50_us: f64,
    p99_us: f64,
    p999_us: f64,
    max_us: f64,
    stall: Duration,
    problems: Vec<String>,
}

impl From<RrResult> for RrFigures {
    fn from(r: RrResult) -> RrFigures {
        let mut problems = r.errors.clone();
        if r.corrupt > 0 {
            problems.push(format!("{} replies differed from the request", r.corrupt));
        }
        if r.transactions == 0 {
            problems.push("no transaction completed".into());
        }
        RrFigures {
            transactions: r.transactions,
            tps: if r.secs > 0.0 {
                r.transactions as f64 / r.secs
            } else {
                0.0
            },
            p50_us: r.pct_us(0.5),
            p99_us: r.pct_us(0.99),
            p999_us: r.pct_us(0.999),
            max_us: r.pct_us(1.0),
            stall: r.stall,
            problems,
        }
    }
}

impl From<LoadRun> for RrFigures {
    fn from(r: LoadRun) -> RrFigures {
        let s = &r.summary;
        let mut problems = Vec::new();
        if s.errors > 0 || s.failed > 0 || s.reset > 0 {
            problems.push(format!(
                "{} errors, {} failed connects, {} resets",
                s.errors, s.failed, s.reset
            ));
        }
        if s.transactions == 0 {
            problems.push("no transaction completed".into());
        }
        RrFigures {
            transactions: s.transactions,
            tps: s.tps,
            p50_us: s.latency.p50_us as f64,
            p99_us: s.latency.p99_us as f64,
            p999_us: s.latency.p999_us as f64,
            max_us: s.latency.max_us as f64,
            stall: r.stall,
            problems,
        }
    }
}

/// A server's two-flow run.
pub struct FlowsRow {
    server: String,
    /// Bytes back per flow in the measured window.
    window_bytes: Vec<u64>,
    window_secs: f64,
    flows: Vec<FlowResult>,
    loss: Counters,
}

impl FlowsRow {
    fn mbits(&self) -> Vec<f64> {
        self.window_bytes
            .iter()
            .map(|&b| b as f64 * 8.0 / self.window_secs.max(1e-9) / 1e6)
            .collect()
    }

    fn stall(&self) -> Duration {
        self.flows.iter().map(|f| f.stall).max().unwrap_or_default()
    }
}

/// Everything measured.
#[derive(Default)]
pub struct Results {
    bulk: Vec<BulkRow>,
    rr: Vec<RrRow>,
    flows: Vec<FlowsRow>,
    /// Each bypass configuration's engine counters over all its scenarios
    /// (the `tcp` object of its `bypass echo` summary).
    engines: Vec<(String, serde_json::Value)>,
}

// ---- the run ----------------------------------------------------------------------

struct Bench<'a> {
    a: &'a LossyArgs,
    /// Dropped before `topo`: it wakes its accept thread through the
    /// server namespace.
    _kserver: KernelServer,
    topo: Topo,
    stop: Stop,
}

impl Bench<'_> {
    fn say(&self, line: &str) {
        crate::cli::say(self.a.json, line);
    }

    fn interrupted(&self) -> Result<()> {
        if self.stop.is_set() {
            return Err(Error::Config("interrupted".into()));
        }
        Ok(())
    }

    fn path(&self, ppm: u32, shaping: Option<Shaping>) -> Result<()> {
        self.topo.set_loss(ppm)?;
        self.topo.set_rate(shaping)
    }

    fn bulk(&self, server: &str, target: SocketAddrV4) -> Result<BulkRow> {
        let mut row = BulkRow {
            server: server.to_string(),
            runs: Vec::new(),
            frag_needed: 0,
        };
        let at_start = self.topo.counters()?;
        // Warm-up (ARP, first connection); not measured.
        self.path(0, self.a.shaping(false))?;
        let s = kernel::connect_in(&self.topo.client, target, Duration::from_secs(10))?;
        let until = Instant::now() + Duration::from_secs_f64(self.a.timeout);
        Flow::start(s, 99, Some(256 << 10), until, &self.stop)?.finish();
        // Lossless and lossy transfers alternate, so that the two cells of
        // the kept fraction see the same minutes of this machine: its rates
        // swing from minute to minute (the VM's cores move between sharing
        // an L3 and not), and measured one cell after the other, the kept
        // fraction carried that swing.
        let mut runs = [0, self.a.loss].map(|ppm| BulkRun {
            ppm,
            samples: Vec::new(),
        });
        let t0 = Instant::now();
        'pairs: while runs[1].samples.len() < self.a.repeat {
            for (i, run) in runs.iter_mut().enumerate() {
                self.interrupted()?;
                self.path(run.ppm, self.a.shaping(false))?;
                let before = self.topo.counters()?;
                let s = kernel::connect_in(&self.topo.client, target, Duration::from_secs(10))?;
                let deadline = Instant::now() + Duration::from_secs_f64(self.a.timeout);
                let seed = 1 + (i * 16 + run.samples.len()) as u64;
                let f = Flow::start(s, seed, Some(self.a.bulk_bytes()), deadline, &self.stop)?;
                let flow = f.finish();
                let t = Transfer {
                    flow,
                    loss: self.topo.counters()?.since(&before),
                };
                let failed = t.mbit().is_none();
                self.say(&format!(
                    "  bulk  {server:<10} loss {:>5.2}% #{}: {} (measured loss {})",
                    pct(run.ppm) * 100.0,
                    run.samples.len() + 1,
                    report::transfer_text(&t, true),
                    t.loss.describe()
                ));
                run.samples.push(t);
                if failed {
                    break 'pairs;
                }
            }
            if t0.elapsed() >= REPEAT_BUDGET {
                break;
            }
        }
        row.runs.extend(runs);
        row.frag_needed = self.topo.counters()?.since(&at_start).too_big;
        Ok(row)
    }

    fn rr_kernel_client(&self, server: &str, target: SocketAddrV4) -> Result<RrRow> {
        self.path(self.a.rr_loss, self.a.shaping(false))?;
        let before = self.topo.counters()?;
        let r = kernel::rr(
            &self.topo.client,
            target,
            self.a.connections,
            self.a.size,
            self.a.rr_secs,
            self.a.rr_transactions,
            &self.stop,
        )?;
        let row = RrRow {
            client: "kernel".into(),
            server: server.into(),
            m: r.into(),
            loss: self.topo.counters()?.since(&before),
        };
        self.say(&format!("  rr    {}", report::rr_line(&row)));
        Ok(row)
    }

    fn rr_bypass_client(
        &self,
        cfg: &BypassConfig,
        slot: &TapSlot,
        server: &str,
        target: SocketAddrV4,
    ) -> Result<RrRow> {
        self.path(self.a.rr_loss, self.a.shaping(false))?;
        let before = self.topo.counters()?;
        let r = ours::loadgen(
            &self.topo.router,
            slot,
            &with_core(cfg, self.a.client_core),
            target,
            self.a.connections,
            self.a.size,
            self.a.rr_secs,
            &self.stop,
        )?;
        let row = RrRow {
            client: cfg.label.clone(),
            server: server.into(),
            m: r.into(),
            loss: self.topo.counters()?.since(&before),
        };
        self.say(&format!("  rr    {}", report::rr_line(&row)));
        Ok(row)
    }

    fn flows(&self, server: &str, target: SocketAddrV4) -> Result<FlowsRow> {
        self.path(self.a.flows_loss, self.a.shaping(true))?;
        let before = self.topo.counters()?;
        let total = Duration::from_secs_f64(self.a.flows_secs);
        let deadline = Instant::now() + total + Duration::from_secs(10);
        // Both connected first, then both started: neither gets a head start.
        let connect = || kernel::connect_in(&self.topo.client, target, Duration::from_secs(10));
        let conns = [connect()?, connect()?];
        let mut flows = Vec::new();
        for (seed, s) in [11, 12].into_iter().zip(conns) {
            flows.push(Flow::start(s, seed, None, deadline, &self.stop)?);
        }
        let t0 = Instant::now();
        let sleep_until = |t: Instant| {
            while Instant::now() < t && !self.stop.is_set() {
                std::thread::sleep(Duration::from_millis(20));
            }
        };
        sleep_until(t0 + total / 5);
        let (w0, first) = (
            Instant::now(),
            flows.iter().map(Flow::back).collect::<Vec<_>>(),
        );
        sleep_until(t0 + total);
        let (w1, last) = (
            Instant::now(),
            flows.iter().map(Flow::back).collect::<Vec<_>>(),
        );
        for f in &flows {
            f.stop();
        }
        let flows: Vec<FlowResult> = flows.into_iter().map(Flow::finish).collect();
        self.interrupted()?;
        let row = FlowsRow {
            server: server.into(),
            window_bytes: last.iter().zip(&first).map(|(b, a)| b - a).collect(),
            window_secs: (w1 - w0).as_secs_f64(),
            flows,
            loss: self.topo.counters()?.since(&before),
        };
        self.say(&format!("  flows {}", report::flows_line(&row)));
        Ok(row)
    }

    /// All scenarios against one server.
    fn server(
        &self,
        res: &mut Results,
        label: &str,
        target: SocketAddrV4,
        client: Option<(&BypassConfig, &TapSlot)>,
    ) -> Result<()> {
        for sc in &self.a.scenarios {
            match sc {
                Scenario::Bulk => res.bulk.push(self.bulk(label, target)?),
                Scenario::Rr => {
                    res.rr.push(self.rr_kernel_client(label, target)?);
                    // (Its client against the kernel server runs once
                    // this server has stopped: see `run`.)
                    if let Some((cfg, slot)) = client {
                        res.rr
                            .push(self.rr_bypass_client(cfg, slot, label, target)?);
                    }
                }
                Scenario::Flows => res.flows.push(self.flows(label, target)?),
            }
        }
        Ok(())
    }
}

/// Runs the bench.
pub fn run(mut a: LossyArgs) -> Result<()> {
    let mut seen = Vec::new();
    a.scenarios.retain(|s| {
        let new = !seen.contains(s);
        seen.push(*s);
        new
    });
    a.validate()?;
    let configs = a.configs()?;
    if !bypass::port::sys::is_root() {
        return Err(Error::Config(
            "`bypass bench lossy` creates network namespaces: run it as root (sudo)".into(),
        ));
    }
    topo::check_tools()?;
    let stop = Stop::with_signals()?;
    let load_before = report::loadavg();
    let started = Instant::now();
    let mut topo = Topo::up(a.kernel_rto_min_ms)?;
    if let Some(m) = a.mtu {
        topo.narrow_client_hop(m, a.mtu_silent)?;
    }
    let server_slots: Vec<TapSlot> = (0..configs.len())
        .map(|i| topo.add_tap(&format!("st{i}"), 10 + i as u8))
        .collect::<Result<_>>()?;
    let client_slot = if a.scenarios.contains(&Scenario::Rr) && !a.no_bypass_client {
        Some(topo.add_tap("ct0", 20)?)
    } else {
        None
    };
    let kernel_addr = SocketAddrV4::new(topo::SERVER_IP, ECHO_PORT);
    let pin = |core| (!a.kernel_unpinned).then_some(core);
    kernel::clients_on(pin(a.client_core));
    let b = Bench {
        a: &a,
        _kserver: KernelServer::start(&topo.server, kernel_addr, pin(a.server_core))?,
        topo,
        stop,
    };
    b.say(&report::setup(&a, &b.topo, &configs, &load_before));
    let mut res = Results::default();
    b.say("kernel (echo server in its namespace)");
    b.server(&mut res, "kernel", kernel_addr, None)?;
    for (cfg, slot) in configs.iter().zip(&server_slots) {
        b.interrupted()?;
        b.path(0, None)?;
        b.say(&format!(
            "{} (bypass echo {} on {})",
            cfg.label,
            cfg.args.join(" "),
            slot.name
        ));
        let mut echo: Proc = ours::start_echo(
            &b.topo.router,
            &b.topo.client,
            slot,
            &with_core(cfg, a.server_core),
            ECHO_PORT,
            &b.stop,
        )?;
        let target = SocketAddrV4::new(slot.ip, ECHO_PORT);
        let client = client_slot.as_ref().map(|s| (cfg, s));
        let r = b.server(&mut res, &cfg.label, target, client);
        // If the server died, say so rather than what its absence caused.
        if let Some(e) = echo.died() {
            return Err(e);
        }
        r?;
        // The bypass engine's counters (the smoltcp engine keeps none).
        if let Some(j) = ours::stop_echo(echo) {
            if j["bypass_opened"].as_u64().unwrap_or(0) > 0 {
                res.engines.push((cfg.label.clone(), j["tcp"].clone()));
            }
        }
        // This configuration's client against the kernel server, with
        // `bypass echo` gone from the server core (it spins there, and the
        // kernel server is pinned to it).
        // (The client's slot exists only when the rr scenario runs.)
        if let Some(slot) = &client_slot {
            b.interrupted()?;
            res.rr
                .push(b.rr_bypass_client(cfg, slot, "kernel", kernel_addr)?);
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let failures = report::print(&a, &res, secs, &load_before, &report::loadavg());
    if failures.is_empty() {
        return Ok(());
    }
    Err(Error::Config(format!(
        "{} check(s) failed: {}",
        failures.len(),
        failures.join("; ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_and_rate_flags() {
        assert_eq!(parse_loss("1%"), Ok(10_000));
        assert_eq!(parse_loss("0.1%"), Ok(1_000));
        assert_eq!(parse_loss("0"), Ok(0));
        assert_eq!(parse_loss("0%"), Ok(0));
        assert!(parse_loss("1").is_err());
        assert!(parse_loss("120%").is_err());
        assert!(parse_loss("x%").is_err());
        assert_eq!(parse_rate("100mbit"), Ok(100_000_000));
        assert_eq!(parse_rate("1Gbit"), Ok(1_000_000_000));
        assert_eq!(parse_rate("500kbit"), Ok(500_000));
        assert_eq!(parse_rate("2000000"), Ok(2_000_000));
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("1bit").is_err());
    }

    #[test]
    fn cores_are_added_unless_given() {
        let c = BypassConfig::new("x", "--rx-buf 4096").unwrap();
        assert_eq!(with_core(&c, 1).args, ["--rx-buf", "4096", "--cores", "1"]);
        let c = BypassConfig::new("x", "--cores 0").unwrap();
        assert_eq!(with_core(&c, 1).args, ["--cores", "0"]);
    }
}
