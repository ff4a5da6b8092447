//! `bypass l2fwd`: forward between two ports, or MAC-swap out of one.

use clap::{Args, ValueEnum};

use bypass::app::{MacSwap, MacSwapSsse3, PacketHandler, Wire};
use bypass::port::{Port, PortQueue};
use bypass::runtime::{self, stats, Capture, Captured, ForwardWorker, Stats, Stop};
use bypass::{Error, Result};

use super::ports::{self, Ports};
use super::{say, Common};

/// What the forwarder does to each frame.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Two ports: forward each frame unchanged out of the other port.
    Wire,
    /// Swap source and destination MAC and send the frame back where it came from.
    Macswap,
}

/// `bypass l2fwd` flags.
#[derive(Args, Debug)]
pub struct L2fwdArgs {
    #[command(flatten)]
    common: Common,
    /// Forwarding mode (default: wire with two ports, macswap with one).
    #[arg(long, value_enum)]
    mode: Option<Mode>,
}

pub fn run(a: L2fwdArgs) -> Result<()> {
    let cfg = a.common.run_config()?;
    let n = a.common.ports.len();
    if !(1..=2).contains(&n) {
        return Err(ports::count_error(n, "one port (macswap) or two (wire)"));
    }
    let mode = a
        .mode
        .unwrap_or(if n == 2 { Mode::Wire } else { Mode::Macswap });
    if mode == Mode::Wire && n != 2 {
        return Err(Error::Config("--mode wire needs two ports".into()));
    }
    let stop = Stop::with_signals()?;
    match ports::open_with_eal(&a.common.ports, cfg.cores.len() as u16, &a.common.eal)? {
        #[cfg(feature = "tap")]
        Ports::Tap(p) => match mode {
            Mode::Wire => drive("l2fwd", &a.common, cfg, p, || Wire, &stop),
            Mode::Macswap => match MacSwapSsse3::detect() {
                Some(h) => drive("l2fwd", &a.common, cfg, p, move || h, &stop),
                None => drive("l2fwd", &a.common, cfg, p, || MacSwap, &stop),
            },
        },
        #[cfg(feature = "dpdk")]
        Ports::Dpdk(p) => match mode {
            Mode::Wire => drive("l2fwd", &a.common, cfg, p, || Wire, &stop),
            Mode::Macswap => match MacSwapSsse3::detect() {
                Some(h) => drive("l2fwd", &a.common, cfg, p, move || h, &stop),
                None => drive("l2fwd", &a.common, cfg, p, || MacSwap, &stop),
            },
        },
        #[cfg(feature = "af-xdp")]
        Ports::Xdp(p) => {
            for port in &p {
                say(
                    a.common.json,
                    &format!("xdp:{}: {}", port.info().name, port.modes()),
                );
            }
            match mode {
                Mode::Wire => drive("l2fwd", &a.common, cfg, p, || Wire, &stop),
                Mode::Macswap => match MacSwapSsse3::detect() {
                    Some(h) => drive("l2fwd", &a.common, cfg, p, move || h, &stop),
                    None => drive("l2fwd", &a.common, cfg, p, || MacSwap, &stop),
                },
            }
        }
    }
}

/// Frames sent between the first and the last stats tick, and the
/// seconds between them: the rate over the steady part of a run, without
/// the start (threads, pools, first misses) or the stop.
#[derive(Debug, Default, Clone, Copy)]
struct Steady {
    first: Option<(f64, u64)>,
    last: Option<(f64, u64)>,
}

impl Steady {
    fn tick(&mut self, elapsed: f64, tx: u64) {
        if self.first.is_none() {
            self.first = Some((elapsed, tx));
        } else {
            self.last = Some((elapsed, tx));
        }
    }

    /// (frames, seconds), when at least two ticks came.
    fn window(&self) -> Option<(u64, f64)> {
        let ((t0, n0), (t1, n1)) = (self.first?, self.last?);
        (t1 > t0).then(|| (n1 - n0, t1 - t0))
    }
}

/// Runs one forwarding worker per core over its queues, with the live
/// table; returns when the run stops, every buffer returned.
fn forward<Q: PortQueue, H: PacketHandler>(
    json: bool,
    cfg: &runtime::RunConfig,
    stats: &Stats,
    per_core: Vec<Vec<Q>>,
    handler: &impl Fn() -> H,
    stop: &Stop,
    steady: &mut Steady,
) -> Result<()> {
    let workers: Vec<_> = per_core
        .into_iter()
        .enumerate()
        .map(|(core, qs)| ForwardWorker::new(qs, handler(), stats.core(core)))
        .collect();
    let mut prev = stats.snapshot();
    let mut last = 0.0;
    let mut printed_header = false;
    let workers = runtime::run(cfg, workers, stop, |elapsed| {
        let now = stats.snapshot();
        steady.tick(elapsed, now.ports.iter().map(|p| p.tx_packets).sum());
        if !printed_header {
            say(json, &stats::table_header());
            printed_header = true;
        }
        for l in stats::table_lines(&prev, &now, elapsed - last, elapsed) {
            say(json, &l);
        }
        prev = now;
        last = elapsed;
    })?;
    drop(workers); // return every buffer before the pools are read
    Ok(())
}

/// Runs the forwarding loop over `ports` with one handler per core.
pub fn drive<P: Port, H: PacketHandler>(
    command: &str,
    common: &Common,
    cfg: runtime::RunConfig,
    mut ports: Vec<P>,
    handler: impl Fn() -> H,
    stop: &Stop,
) -> Result<()> {
    let names: Vec<String> = ports
        .iter()
        .map(|p| format!("{}:{}", p.info().kind, p.info().name))
        .collect();
    let stats = Stats::new(&cfg.cores, &names);
    // queues[port][core] -> per core, one queue of each port
    let mut per_port: Vec<std::vec::IntoIter<P::Queue>> = ports
        .iter_mut()
        .map(|p| p.take_queues().into_iter())
        .collect();
    let mut per_core = Vec::new();
    for _ in 0..cfg.cores.len() {
        let qs: Vec<P::Queue> = per_port
            .iter_mut()
            .map(|it| it.next().expect("each port opened one queue per core"))
            .collect();
        per_core.push(qs);
    }
    let json = common.json;
    for p in &ports {
        let i = p.info();
        say(
            json,
            &format!(
                "port {}:{}  mac {}  mtu {}  queues {}",
                i.kind, i.name, i.mac, i.mtu, i.queues
            ),
        );
    }
    say(json, &format!("cores {:?}; Ctrl-C stops", cfg.cores));
    let start = std::time::Instant::now();
    let mut steady = Steady::default();
    let cap = match common.pcap.as_deref() {
        Some(f) => {
            let capture = Capture::create(f, common.pcap_max)?;
            let wrapped = per_core
                .into_iter()
                .map(|qs| {
                    qs.into_iter()
                        .map(|q| Captured::new(q, capture.sink()))
                        .collect()
                })
                .collect();
            forward(json, &cfg, &stats, wrapped, &handler, stop, &mut steady)?;
            Some(capture.finish()?)
        }
        None => {
            forward(json, &cfg, &stats, per_core, &handler, stop, &mut steady)?;
            None
        }
    };
    let secs = start.elapsed().as_secs_f64();
    let snap = stats.snapshot();
    if json {
        let v = serde_json::json!({
            "command": command,
            "duration_s": secs,
            "cores": cfg.cores,
            "ports": snap.ports.iter().zip(&ports).map(|(s, p)| {
                let mut o = serde_json::to_value(s).unwrap_or_default();
                o["info"] = serde_json::to_value(p.info()).unwrap_or_default();
                o["link"] = serde_json::to_value(p.link_stats()).unwrap_or_default();
                o
            }).collect::<Vec<_>>(),
            "per_core": snap.cores,
            "rx_packets": snap.ports.iter().map(|p| p.rx_packets).sum::<u64>(),
            "tx_packets": snap.ports.iter().map(|p| p.tx_packets).sum::<u64>(),
            // Between the first and last stats tick (--stats-interval).
            "steady_tx_packets": steady.window().map(|w| w.0),
            "steady_s": steady.window().map(|w| w.1),
            "rx_bytes": snap.ports.iter().map(|p| p.rx_bytes).sum::<u64>(),
            "tx_bytes": snap.ports.iter().map(|p| p.tx_bytes).sum::<u64>(),
            "drops": snap.ports.iter().map(|p| p.drops).sum::<u64>(),
            "pcap": cap,
        });
        crate::cli::outln!("{v}");
    } else {
        crate::cli::outln!("--- summary after {secs:.1}s");
        for p in &snap.ports {
            crate::cli::outln!(
                "{:<14} rx {} pkts {} B   tx {} pkts {} B   drops {} {:?}",
                p.name,
                p.rx_packets,
                p.rx_bytes,
                p.tx_packets,
                p.tx_bytes,
                p.drops,
                p.drops_by_reason
            );
        }
        if let Some(c) = cap {
            crate::cli::outln!(
                "pcap: {} frames written, {} not captured",
                c.written,
                c.missed
            );
        }
    }
    Ok(())
}
