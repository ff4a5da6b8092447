//! What the TCP subcommands share: the stack's flags, opening one stack per
//! core, the live table and the JSON summary.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Instant as StdInstant;

use clap::{Args, ValueEnum};

use bypass::app::tcp::TcpApp;
use bypass::buf::PacketBuf;
use bypass::counter::Counter;
use bypass::flow::Rss;
use bypass::port::{Port, PortInfo, PortQueue};
use bypass::runtime::{self, Capture, Captured, Stop, TcpWorker};
use bypass::stack::shard::{self, Shard, ShardConfig, Steering};
use bypass::stack::{BacklogFull, ListenOpts, Stack, StackConfig, StackStats, TcpEngine, TcpOpts};
use bypass::tcp::cc::CcAlgo;
use bypass::tcp::Keepalive;
use bypass::time::{Clock, MonotonicClock};
use bypass::{Error, Result};

use super::{say, Common};

/// Policy for SYNs beyond the backlog.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum FullPolicy {
    /// Drop them (the client retries).
    Drop,
    /// Answer with RST (the client fails at once).
    Reset,
    /// Drop the oldest half-open connection and take the new SYN (holds
    /// up under SYN floods).
    DropOldest,
    /// Answer with a SYN cookie, keeping nothing (RFC 4987; bypass engine).
    Cookie,
}

/// The stack's flags.
#[derive(Args, Debug, Clone)]
pub struct NetArgs {
    /// The stack's own address on the port, e.g. 10.0.0.2/24 or
    /// fd00::2/64; repeat for both families (one IPv4 address, up to six
    /// IPv6 ones besides the link-local address made from the MAC).
    #[arg(long, value_name = "ADDR/PREFIX", required = true)]
    pub ip: Vec<String>,
    /// Default IPv4 gateway.
    #[arg(long, value_name = "ADDR")]
    pub gateway: Option<Ipv4Addr>,
    /// Default IPv6 gateway (often the router's link-local address).
    #[arg(long, value_name = "ADDR")]
    pub gateway6: Option<Ipv6Addr>,
    /// TCP port to listen on.
    #[arg(long, value_name = "PORT")]
    pub listen: Option<u16>,
    /// Most connections in the handshake at once, per listener and core.
    #[arg(long, default_value_t = 1024)]
    pub backlog: usize,
    /// What to do with SYNs beyond the backlog [default: cookie with the
    /// bypass engine, drop with smoltcp].
    #[arg(long, value_enum)]
    pub backlog_full: Option<FullPolicy>,
    /// The TCP engine: bypass (its own: SACK, RACK-TLP, CUBIC, SYN
    /// cookies) or smoltcp (the reference).
    /// [default: bypass, or $BYPASS_TCP_ENGINE]
    #[arg(long = "tcp", value_name = "ENGINE", default_value_t = TcpEngine::default())]
    pub engine: TcpEngine,
    /// Receive window per connection: a limit with the bypass engine
    /// (memory only for what is queued), allocated up front by smoltcp
    /// [default: 262144 bypass, 16384 smoltcp].
    #[arg(long, value_name = "BYTES")]
    pub rx_buf: Option<usize>,
    /// Send buffer per connection (as --rx-buf).
    #[arg(long, value_name = "BYTES")]
    pub tx_buf: Option<usize>,
    /// Congestion control of the bypass engine: cubic, reno or none.
    #[arg(long, value_name = "ALGO", default_value = "cubic")]
    pub cc: String,
    /// Least retransmission timeout of the bypass engine, ms (fractions
    /// allowed).
    #[arg(long, value_name = "MS", default_value_t = 5.0)]
    pub rto_min_ms: f64,
    /// Keepalive probes after this many seconds of silence (bypass engine).
    #[arg(long, value_name = "SECS")]
    pub keepalive: Option<u64>,
    /// Reset connections that carried no data for this many seconds
    /// (bypass engine).
    #[arg(long, value_name = "SECS")]
    pub idle_timeout: Option<u64>,
    /// Most connections per core.
    #[arg(long, default_value_t = 1 << 20)]
    pub max_conns: usize,
}

impl NetArgs {
    fn tcp(&self) -> Result<TcpOpts> {
        let default_buf = match self.engine {
            TcpEngine::Bypass => 256 * 1024,
            TcpEngine::Smoltcp => 16 * 1024,
        };
        let (rx, tx) = (
            self.rx_buf.unwrap_or(default_buf),
            self.tx_buf.unwrap_or(default_buf),
        );
        for (v, f) in [(rx, "--rx-buf"), (tx, "--tx-buf")] {
            if !(256..=(1 << 30)).contains(&v) {
                return Err(Error::Config(format!(
                    "{f} must be between 256 bytes and 1 GiB"
                )));
            }
        }
        let cc: CcAlgo = self
            .cc
            .parse()
            .map_err(|e: String| Error::Config(format!("--cc: {e}")))?;
        if !(0.01..=60_000.0).contains(&self.rto_min_ms) {
            return Err(Error::Config(
                "--rto-min-ms must be between 0.01 and 60000".into(),
            ));
        }
        let smol_only = |what: &str| {
            Error::Config(format!(
                "{what} needs the bypass TCP engine (drop --tcp smoltcp)"
            ))
        };
        if self.engine == TcpEngine::Smoltcp {
            if self.keepalive.is_some() {
                return Err(smol_only("--keepalive"));
            }
            if self.idle_timeout.is_some() {
                return Err(smol_only("--idle-timeout"));
            }
        }
        Ok(TcpOpts {
            engine: self.engine,
            rx_buf: rx,
            tx_buf: tx,
            cc,
            rto_min_us: (self.rto_min_ms * 1000.0) as u64,
            keepalive: self.keepalive.map(|s| Keepalive {
                idle_us: s * 1_000_000,
                interval_us: 1_000_000.max(s * 1_000_000 / 4),
                probes: 5,
            }),
            idle_timeout_ms: self.idle_timeout.map(|s| s * 1000),
            ..Default::default()
        })
    }

    /// Listener settings.
    pub fn listen_opts(&self) -> Result<ListenOpts> {
        Ok(ListenOpts {
            backlog: self.backlog,
            on_full: match self.backlog_full {
                Some(FullPolicy::Drop) => BacklogFull::Drop,
                Some(FullPolicy::Reset) => BacklogFull::Reset,
                Some(FullPolicy::DropOldest) => BacklogFull::DropOldest,
                Some(FullPolicy::Cookie) if self.engine == TcpEngine::Smoltcp => {
                    return Err(Error::Config(
                        "--backlog-full cookie needs the bypass TCP engine (drop --tcp smoltcp)"
                            .into(),
                    ))
                }
                Some(FullPolicy::Cookie) => BacklogFull::Cookie,
                None if self.engine == TcpEngine::Bypass => BacklogFull::Cookie,
                None => BacklogFull::Drop,
            },
            tcp: self.tcp()?,
        })
    }

    /// Stack settings.
    pub fn stack_config(&self) -> Result<StackConfig> {
        let mut c = StackConfig::new(Ipv4Addr::UNSPECIFIED, 0);
        for s in &self.ip {
            let (ip, prefix) = runtime::parse_ip_cidr(s)?;
            if ip.is_ipv4() && c.ipv4().is_some() {
                return Err(Error::Config(format!(
                    "--ip {s}: the stack already has the IPv4 address {}; give one IPv4 --ip",
                    c.ip
                )));
            }
            c = c.with_addr(ip, prefix);
        }
        c.gateway = self.gateway;
        c.gateway6 = self.gateway6;
        c.max_conns = self.max_conns;
        c.connect = self.tcp()?;
        Ok(c)
    }
}

/// An application counter shown as a rate in the live table and as a total
/// in the JSON summary.
pub struct AppCounter {
    /// Column name (`req` shows as `req/s`).
    pub name: &'static str,
    /// Reads the total over all cores.
    pub total: Box<dyn Fn() -> u64>,
}

impl AppCounter {
    /// A column summing one counter per core.
    pub fn sum(name: &'static str, per_core: Vec<Arc<Counter>>) -> AppCounter {
        AppCounter {
            name,
            total: Box::new(move || per_core.iter().map(|c| c.get()).sum()),
        }
    }

    fn total(&self) -> u64 {
        (self.total)()
    }
}

fn totals(stats: &[Arc<StackStats>]) -> serde_json::Value {
    let sum = |f: fn(&StackStats) -> u64| stats.iter().map(|s| f(s)).sum::<u64>();
    let mut v = serde_json::json!({
        "rx_packets": sum(|s| s.rx_packets.get()),
        "tx_packets": sum(|s| s.tx_packets.get()),
        "rx_bytes": sum(|s| s.rx_bytes.get()),
        "tx_bytes": sum(|s| s.tx_bytes.get()),
        "drops": sum(|s| s.drops() + s.tx_full.get() + s.tx_no_buffer.get() + s.steer_drops.get()),
        "drops_by_reason": {
            "malformed": sum(|s| s.drop_malformed.get()),
            "bad_checksum": sum(|s| s.drop_bad_checksum.get()),
            "fragment": sum(|s| s.drop_fragment.get()),
            "not_for_us": sum(|s| s.drop_not_for_us.get()),
            "unsupported": sum(|s| s.drop_unsupported.get()),
            "bad_ext_header": sum(|s| s.drop_bad_ext_header.get()),
            "tx_full": sum(|s| s.tx_full.get()),
            "no_buffer": sum(|s| s.tx_no_buffer.get()),
            "steer_ring_full": sum(|s| s.steer_drops.get()),
        },
        "conns_open": sum(|s| s.conns.get()),
        "accepted": sum(|s| s.accepted.get()),
        "connected": sum(|s| s.connected.get()),
        "bypass_opened": sum(|s| s.bypass_opened.get()),
        "closed": sum(|s| s.closed.get()),
        "reset": sum(|s| s.reset.get()),
        "backlog_full": sum(|s| s.backlog_full.get()),
        "syn_evicted": sum(|s| s.syn_evicted.get()),
        "table_full": sum(|s| s.table_full.get()),
        "rst_not_exact": sum(|s| s.rst_not_exact.get()),
        "udp_no_port": sum(|s| s.udp_no_port.get()),
        "tx_held": sum(|s| s.tx_held.get()),
        "tso_frames": sum(|s| s.tso_frames.get()),
        "tso_segments": sum(|s| s.tso_segments.get()),
        "no_conn": sum(|s| s.no_conn.get()),
        "icmp6_errors_tx": sum(|s| s.icmp6_errors_tx.get()),
        "icmp6_errors_limited": sum(|s| s.icmp6_errors_limited.get()),
        "steered": sum(|s| s.steered_out.get()),
    });
    // The bypass engine's counters (0 on the smoltcp engine).
    v["tcp"] = serde_json::json!({
        "retransmits": sum(|s| s.tcp.retransmits.get()),
        "rtos": sum(|s| s.tcp.rtos.get()),
        "tlps": sum(|s| s.tcp.tlps.get()),
        "tlp_recoveries": sum(|s| s.tcp.tlp_recoveries.get()),
        "recoveries": sum(|s| s.tcp.recoveries.get()),
        "undos": sum(|s| s.tcp.undos.get()),
        "ooo_segments": sum(|s| s.tcp.ooo_segments.get()),
        "slab_drops": sum(|s| s.tcp.slab_drops.get()),
        "out_of_window": sum(|s| s.tcp.out_of_window.get()),
        "paws_drops": sum(|s| s.tcp.paws_drops.get()),
        "challenge_acks": sum(|s| s.tcp.challenge_acks.get()),
        "challenge_limited": sum(|s| s.tcp.challenge_limited.get()),
        "window_probes": sum(|s| s.tcp.window_probes.get()),
        "keepalives": sum(|s| s.tcp.keepalives.get()),
        "timeouts": sum(|s| s.tcp.timeouts.get()),
        "pmtu_lowered": sum(|s| s.tcp.pmtu_lowered.get()),
        "pmtu_blackholes": sum(|s| s.tcp.pmtu_blackholes.get()),
        "pmtu_ignored": sum(|s| s.tcp.pmtu_ignored.get()),
    });
    v
}

fn per_core(stats: &[Arc<StackStats>]) -> serde_json::Value {
    stats
        .iter()
        .map(|s| {
            serde_json::json!({
                "rx_packets": s.rx_packets.get(),
                "tx_packets": s.tx_packets.get(),
                "accepted": s.accepted.get(),
                "connected": s.connected.get(),
                "bypass_opened": s.bypass_opened.get(),
                "steered_out": s.steered_out.get(),
                "steered_in": s.steered_in.get(),
                "steer_drops": s.steer_drops.get(),
                "arp_copies_out": s.arp_copies_out.get(),
                "arp_copies_in": s.arp_copies_in.get(),
                "arp_copy_drops": s.arp_copy_drops.get(),
                "arp_requests_tx": s.arp_requests_tx.get(),
            })
        })
        .collect()
}

/// What a serving subcommand is: its name, flags, counters, stop flag.
pub struct Serve<'a> {
    /// Subcommand name.
    pub command: &'a str,
    /// Shared flags.
    pub common: &'a Common,
    /// Stack flags.
    pub net: &'a NetArgs,
    /// Application counters for the live table.
    pub app_counters: &'a [AppCounter],
    /// The run's stop flag.
    pub stop: &'a Stop,
    /// Called after each live-table line with the seconds since the start.
    pub tick: &'a mut dyn FnMut(f64),
    /// Also bind this UDP port on every core's stack.
    pub udp: Option<u16>,
}

/// Builds one stack per core over `ports[0]` (one queue per core; with
/// several cores, sharded by RSS: see `bypass::stack::shard`), runs
/// `make_app(core)` on each, prints live stats and the summary.
pub fn serve<P: Port, A: TcpApp>(
    s: Serve<'_>,
    mut ports: Vec<P>,
    make_app: impl FnMut(usize) -> A,
) -> Result<()> {
    let cfg = s.common.run_config()?;
    if ports.len() != 1 {
        return Err(Error::Config(format!(
            "`bypass {}` takes one --port",
            s.command
        )));
    }
    let info = ports[0].info().clone();
    let ncores = cfg.cores.len();
    let sharding = shard_port(&mut ports[0], ncores)?;
    let queues = ports[0].take_queues();
    if queues.len() != ncores {
        return Err(Error::Config(format!(
            "port {} has {} queues for {ncores} cores; give it one queue per core",
            info.name,
            queues.len()
        )));
    }
    match &s.common.pcap {
        Some(path) => {
            let cap = Capture::create(path, s.common.pcap_max)?;
            let qs = queues
                .into_iter()
                .map(|q| Captured::new(q, cap.sink()))
                .collect();
            let res = run_stacks(s, &info, qs, sharding, make_app);
            let sum = cap.finish()?;
            eprintln!(
                "pcap: {} frames written to {path}, {} not captured",
                sum.written, sum.missed
            );
            res
        }
        None => run_stacks(s, &info, queues, sharding, make_app),
    }
}

/// The cores' shards and how flows reach them.
pub struct Sharding<B: PacketBuf> {
    /// One per core, in core order (none with one core).
    pub shards: Vec<Shard<B>>,
    /// "none", "hardware" or "software".
    pub steering: &'static str,
}

/// With more than one core, every core runs a stack over its own queue of
/// `port` and owns the flows RSS gives it: a device that can spread flows
/// by our key and table does (hardware steering); otherwise the cores
/// steer in software.
pub fn shard_port<P: Port>(
    port: &mut P,
    ncores: usize,
) -> Result<Sharding<<P::Queue as PortQueue>::Buf>> {
    if ncores <= 1 {
        return Ok(Sharding {
            shards: Vec::new(),
            steering: "none",
        });
    }
    let rss = Rss::symmetric(ncores)?;
    let hw = port.info().caps.rss && port.configure_rss(&rss)?;
    let (mode, steering) = if hw {
        (Steering::Hardware, "hardware")
    } else {
        (Steering::Software, "software")
    };
    Ok(Sharding {
        shards: shard::shards(&ShardConfig {
            rss,
            steering: mode,
            ring_size: 1024,
        })?,
        steering,
    })
}

fn run_stacks<Q: PortQueue, A: TcpApp>(
    s: Serve<'_>,
    info: &PortInfo,
    queues: Vec<Q>,
    sharding: Sharding<Q::Buf>,
    mut make_app: impl FnMut(usize) -> A,
) -> Result<()> {
    let Serve {
        command,
        common,
        net,
        app_counters,
        stop,
        tick,
        udp,
    } = s;
    let Sharding { shards, steering } = sharding;
    let cfg = common.run_config()?;
    let scfg = net.stack_config()?;
    let clock = MonotonicClock::new();
    let mut shards = shards.into_iter();
    let mut workers = Vec::new();
    let mut stats = Vec::new();
    for (core, q) in queues.into_iter().enumerate() {
        let mut stack = Stack::new(q, info, scfg.clone(), clock.now())?;
        if let Some(sh) = shards.next() {
            stack.set_shard(sh)?;
        }
        if let Some(p) = net.listen {
            stack.listen(p, net.listen_opts()?)?;
        }
        if let Some(p) = udp {
            stack.udp_bind(p, 256, 2048)?;
        }
        stats.push(stack.stats().clone());
        workers.push(TcpWorker::new(stack, make_app(core)));
    }
    let json = common.json;
    say(
        json,
        &format!(
            "{command}: {} on {}:{} (mac {}, mtu {}), cores {:?} (steering: {steering}){}; Ctrl-C stops",
            net.ip.join(" "),
            info.kind,
            info.name,
            info.mac,
            info.mtu,
            cfg.cores,
            net.listen
                .map(|p| format!(", listening on {p}"))
                .unwrap_or_default()
        ),
    );
    let mut header = format!(
        "{:>6}  {:>8} {:>9} {:>9} {:>9} {:>9} {:>8}",
        "time", "conns", "accepts/s", "rx-pps", "tx-pps", "rx-Mbps", "drops"
    );
    for c in app_counters {
        header += &format!(" {:>10}", format!("{}/s", c.name));
    }
    let snap = |st: &[Arc<StackStats>]| -> [u64; 5] {
        let mut v = [0u64; 5];
        for s in st {
            v[0] += s.accepted.get() + s.connected.get();
            v[1] += s.rx_packets.get();
            v[2] += s.tx_packets.get();
            v[3] += s.rx_bytes.get();
            v[4] += s.drops() + s.tx_full.get() + s.tx_no_buffer.get() + s.steer_drops.get();
        }
        v
    };
    let mut prev = snap(&stats);
    let mut prev_app: Vec<u64> = app_counters.iter().map(|c| c.total()).collect();
    let mut last = 0.0;
    let mut printed = false;
    let start = StdInstant::now();
    let done = runtime::run(&cfg, workers, stop, |t| {
        if !printed {
            say(json, &header);
            printed = true;
        }
        let now = snap(&stats);
        let dt = (t - last).max(1e-6);
        let conns: u64 = stats.iter().map(|s| s.conns.get()).sum();
        let mut line = format!(
            "{:>5.0}s  {:>8} {:>9.0} {:>9.0} {:>9.0} {:>9.1} {:>8}",
            t,
            conns,
            (now[0] - prev[0]) as f64 / dt,
            (now[1] - prev[1]) as f64 / dt,
            (now[2] - prev[2]) as f64 / dt,
            (now[3] - prev[3]) as f64 * 8.0 / dt / 1e6,
            now[4]
        );
        for (i, c) in app_counters.iter().enumerate() {
            let v = c.total();
            line += &format!(" {:>10.0}", (v - prev_app[i]) as f64 / dt);
            prev_app[i] = v;
        }
        say(json, &line);
        prev = now;
        last = t;
        tick(t);
    })?;
    let secs = start.elapsed().as_secs_f64();
    drop(done);
    let mut summary = totals(&stats);
    summary["command"] = command.into();
    summary["duration_s"] = secs.into();
    summary["cores"] = serde_json::to_value(&cfg.cores).unwrap_or_default();
    summary["steering"] = steering.into();
    summary["per_core"] = per_core(&stats);
    summary["port"] = serde_json::to_value(info).unwrap_or_default();
    for c in app_counters {
        summary[c.name] = c.total().into();
    }
    if json {
        crate::cli::outln!("{summary}");
    } else {
        crate::cli::outln!("--- summary after {secs:.1}s");
        crate::cli::outln!(
            "{}",
            serde_json::to_string_pretty(&summary).unwrap_or_default()
        );
    }
    Ok(())
}
