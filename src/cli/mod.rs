//! Subcommands of the `bypass` tool and the flags they share.

mod bench;
mod demo;
pub mod echo;
mod http;
mod l2fwd;
mod l3fwd;
pub mod loadgen;
mod ports;
mod serve;

use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use bypass::runtime::{self, RunConfig};
use bypass::Result;

#[derive(Parser, Debug)]
#[command(
    name = "bypass",
    version,
    about = "Kernel-bypass packet I/O: userspace TCP/IP on poll-mode ports (DPDK, AF_XDP, TAP)",
    long_about = None,
    propagate_version = true
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// The demo: the userspace stack serving HTTP to real kernel clients in a
    /// private network namespace, with live stats (needs root, curl, wrk).
    Demo(demo::DemoArgs),
    /// Forward frames between two ports, or MAC-swap them back out of one.
    L2fwd(l2fwd::L2fwdArgs),
    /// Route IPv4 between ports by longest-prefix match (DIR-24-8) from a
    /// routes file, decrementing the TTL; drops counted by reason.
    L3fwd(l3fwd::L3fwdArgs),
    /// TCP (and UDP) echo server on the userspace stack.
    Echo(echo::EchoArgs),
    /// HTTP/1.1 server (TechEmpower /plaintext and /json) on the userspace stack.
    Http(http::HttpArgs),
    /// Load generator on the userspace stack: hold, rr, cps and http modes
    /// with latency percentiles (the client side of C10M experiments).
    Loadgen(loadgen::LoadgenArgs),
    /// Measure bypass against reference implementations.
    #[command(subcommand)]
    Bench(bench::BenchCmd),
}

/// Flags every subcommand shares.
#[derive(Args, Debug, Clone)]
pub struct Common {
    /// A port: KIND:NAME[,key=value...]. Kinds: tap:NAME (created if missing;
    /// keys queues, mtu, mac, netns, frames), xdp:IFACE (keys queues,
    /// start_queue, mode=auto|native|skb, zerocopy[=off], busy_poll, frames,
    /// frame_size, mac), dpdk:DEVARGS, mem:NAME.
    /// Repeat for several ports.
    #[arg(long = "port", value_name = "KIND:NAME[,k=v..]", required = true)]
    pub ports: Vec<String>,
    /// CPU cores to run on, one queue per port each: `0`, `0,1`, `0-1`.
    #[arg(long, value_name = "LIST", default_value = "0")]
    pub cores: String,
    /// Stop by itself after this many seconds (default: run until Ctrl-C).
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
    /// Print the live stats table every SECS seconds (0 turns it off).
    #[arg(long, value_name = "SECS", default_value_t = 1.0)]
    pub stats_interval: f64,
    /// Print a JSON summary as the last thing on stdout (the live table then
    /// goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// Capture every frame received and sent into this pcap file.
    #[arg(long, value_name = "FILE")]
    pub pcap: Option<String>,
    /// Stop capturing after this many frames.
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    pub pcap_max: u64,
    /// When a core finds no work 1024 times in a row, sleep this many
    /// microseconds (0: spin, the poll-mode default).
    #[arg(long, value_name = "US", default_value_t = 0)]
    pub idle_sleep_us: u64,
    /// DPDK EAL arguments for dpdk: ports, as one string split on spaces,
    /// e.g. "--no-huge -m 512" or "-l 0 --huge-dir /mnt/huge". Devices come
    /// from --port (PCI addresses are allow-listed with -a, the rest become
    /// --vdev); left out: --lcores=0@(usable cores), --in-memory with
    /// hugepages or --no-huge -m 512 without, a unique --file-prefix,
    /// --no-pci when no PCI device is named. See docs/dpdk.md.
    #[arg(
        long,
        value_name = "ARGS",
        default_value = "",
        allow_hyphen_values = true
    )]
    pub eal: String,
}

impl Common {
    /// The run configuration these flags describe.
    pub fn run_config(&self) -> Result<RunConfig> {
        let secs = |v: f64, flag: &str| -> Result<Option<Duration>> {
            if !v.is_finite() || v < 0.0 {
                return Err(bypass::Error::Config(format!(
                    "--{flag} must be a positive number of seconds"
                )));
            }
            Ok((v > 0.0).then(|| Duration::from_secs_f64(v)))
        };
        Ok(RunConfig {
            cores: runtime::parse_core_list(&self.cores)?,
            duration: match self.duration {
                Some(d) => Some(secs(d, "duration")?.ok_or_else(|| {
                    bypass::Error::Config("--duration must be more than 0 seconds".into())
                })?),
                None => None,
            },
            stats_interval: secs(self.stats_interval, "stats-interval")?,
            idle_sleep: Duration::from_micros(self.idle_sleep_us),
            no_pin: false,
        })
    }
}

/// Prints a line of the live output: to stdout, or to stderr with --json.
/// A write that fails never panics: a panic aborts, and a bench would
/// leave its namespaces behind. A reader that went away (`| head`) is
/// the user's choice and passes in silence; any other failure (a full
/// disk) is said once on stderr, so that lost results are not a surprise.
pub fn say(json: bool, line: &str) {
    use std::io::Write;
    let r = if json {
        writeln!(std::io::stderr(), "{line}")
    } else {
        writeln!(std::io::stdout(), "{line}")
    };
    if let Err(e) = r {
        write_failed(
            &e,
            if json {
                "standard error"
            } else {
                "standard output"
            },
        );
    }
}

#[cold]
fn write_failed(e: &std::io::Error, what: &str) {
    use std::sync::atomic::{AtomicBool, Ordering};
    static SAID: AtomicBool = AtomicBool::new(false);
    if e.kind() != std::io::ErrorKind::BrokenPipe && !SAID.swap(true, Ordering::Relaxed) {
        tracing::error!("could not write results to {what} ({e}); the rest of the output is lost");
    }
}

/// `println!` for the tool's results: a standard output that was closed
/// (`bypass loadgen ... | head`) ends nothing, where `println!` would
/// panic and abort the run before its clean-up.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::cli::say(false, &format!($($arg)*))
    };
}
pub(crate) use outln;

/// Runs the tool; returns the process exit code.
pub fn main() -> i32 {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let cli = Cli::parse();
    let res = match cli.cmd {
        Cmd::Demo(a) => demo::run(a),
        Cmd::L2fwd(a) => l2fwd::run(a),
        Cmd::L3fwd(a) => l3fwd::run(a),
        Cmd::Echo(a) => echo::run(a),
        Cmd::Http(a) => http::run(a),
        Cmd::Loadgen(a) => loadgen::run(a),
        Cmd::Bench(b) => bench::run(b),
    };
    // Every DPDK port is closed by now: release EAL and its runtime files.
    #[cfg(feature = "dpdk")]
    bypass::port::dpdk::eal::cleanup();
    match res {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}
