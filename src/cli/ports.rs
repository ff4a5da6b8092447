//! Opening the ports named by `--port` flags, for any backend.

use bypass::port::{PortKind, PortSpec};
use bypass::{Error, Result};

#[cfg(feature = "dpdk")]
use bypass::port::dpdk::{eal, DpdkConfig, DpdkPort};
#[cfg(feature = "tap")]
use bypass::port::tap::{TapConfig, TapPort};
#[cfg(feature = "af-xdp")]
use bypass::port::xdp::{XdpConfig, XdpPort};

/// Ports of one backend (a run drives ports of one kind, so each backend's
/// loop is monomorphised over its own queue type).
pub enum Ports {
    /// TAP ports.
    #[cfg(feature = "tap")]
    Tap(Vec<TapPort>),
    /// DPDK ethdevs.
    #[cfg(feature = "dpdk")]
    Dpdk(Vec<DpdkPort>),
    /// AF_XDP ports.
    #[cfg(feature = "af-xdp")]
    Xdp(Vec<XdpPort>),
}

/// Parses and opens every `--port`, each with `queues` queues.
#[allow(dead_code)]
pub fn open(specs: &[String], queues: u16) -> Result<Ports> {
    open_with_eal(specs, queues, "")
}

/// Like [`open`]; DPDK ports start EAL with the `--eal` arguments `eal`.
pub fn open_with_eal(specs: &[String], queues: u16, eal: &str) -> Result<Ports> {
    let _ = eal; // used by the dpdk backend only
    let mut parsed = specs
        .iter()
        .map(|s| s.parse::<PortSpec>())
        .collect::<Result<Vec<_>>>()?;
    let kind = parsed[0].kind;
    if let Some(other) = parsed.iter().find(|p| p.kind != kind) {
        return Err(other.err(format!(
            "all ports of a run must be of one kind (the first is {})",
            kind.as_str()
        )));
    }
    match kind {
        #[cfg(feature = "tap")]
        PortKind::Tap => {
            let mut out = Vec::new();
            for spec in parsed.iter_mut() {
                out.push(TapPort::open(&TapConfig::from_spec(spec, queues)?)?);
            }
            Ok(Ports::Tap(out))
        }
        #[cfg(feature = "dpdk")]
        PortKind::Dpdk => {
            // EAL starts once, with every device of the run on its command
            // line.
            // Options are checked before EAL starts.
            let cfgs = parsed
                .iter_mut()
                .map(|spec| DpdkConfig::from_spec(spec, queues))
                .collect::<Result<Vec<_>>>()?;
            let mut args = eal::EalArgs::new(eal).cpus(&bypass::runtime::available_cores());
            for c in &cfgs {
                args = args.device(&c.devargs);
            }
            eal::init(&args.build())?;
            let out = cfgs.iter().map(DpdkPort::open).collect::<Result<Vec<_>>>()?;
            Ok(Ports::Dpdk(out))
        }
        #[cfg(feature = "af-xdp")]
        PortKind::Xdp => {
            let mut out = Vec::new();
            for spec in parsed.iter_mut() {
                out.push(XdpPort::open(&XdpConfig::from_spec(spec, queues)?)?);
            }
            Ok(Ports::Xdp(out))
        }
        PortKind::Mem => Err(parsed[0].err(
            "mem ports are in-process wires with nothing on the far end from the command line; \
             `bypass bench` and the library API (bypass::port::mem) use them",
        )),
        // Reachable in builds without some backend (with every backend
        // built in, the arms above cover every kind).
        #[allow(unreachable_patterns)]
        other => Err(parsed[0].err(format!(
            "this build of bypass has no {} backend; rebuild with `cargo build --release --features {}`",
            other.as_str(),
            match other {
                PortKind::Dpdk => "dpdk",
                PortKind::Xdp => "af-xdp",
                _ => "tap",
            }
        ))),
    }
}

/// The `Error` for a spec list that is empty or too long.
pub fn count_error(n: usize, allowed: &str) -> Error {
    Error::Config(format!("{n} ports given; this command takes {allowed}"))
}

/// Something to run over ports of any backend: the caller's generic code,
/// monomorphised per backend by [`Ports::run`].
pub trait WithPorts {
    /// Runs over the opened ports.
    fn run<P: bypass::port::Port>(self, ports: Vec<P>) -> Result<()>;
}

impl Ports {
    /// Runs `v` over these ports with their concrete type.
    pub fn run<V: WithPorts>(self, v: V) -> Result<()> {
        match self {
            #[cfg(feature = "tap")]
            Ports::Tap(p) => v.run(p),
            #[cfg(feature = "af-xdp")]
            Ports::Xdp(p) => v.run(p),
            #[cfg(feature = "dpdk")]
            Ports::Dpdk(p) => v.run(p),
        }
    }
}
