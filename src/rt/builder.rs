//! `Runtime::builder()`: ports, cores, addresses and TCP options, as the
//! command line takes them; one pinned thread per core running a future
//! made by the caller's factory.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant as StdInstant};

use crate::error::{Error, Result};
use crate::flow::Rss;
use crate::port::{Port, PortKind, PortSpec};
use crate::runtime::{self, Stop};
use crate::stack::shard::{self, ShardConfig, Steering};
use crate::stack::{ListenOpts, Stack, StackConfig, TcpOpts};
use crate::time::{Clock, MonotonicClock};

use super::core::{Core, CoreOpts};

/// The async runtime: one executor per core, each driven by that core's
/// stack loop. Build one with [`Runtime::builder`].
#[derive(Debug)]
pub struct Runtime;

impl Runtime {
    /// A builder with no port, the first usable core, no address.
    pub fn builder() -> Builder {
        Builder::default()
    }
}

/// What the factory learns about the core it runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoreCtx {
    /// Index of this core in the run (0..cores).
    pub index: usize,
    /// Cores in the run.
    pub cores: usize,
    /// The CPU the core's thread is pinned to.
    pub cpu: usize,
    /// The stack's own address: its IPv4 address, or its first IPv6 one
    /// if it has no IPv4 address.
    pub ip: IpAddr,
}

/// Settings of a run; see [`Runtime::builder`].
#[derive(Debug, Clone)]
pub struct Builder {
    ports: Vec<String>,
    cores: Option<Vec<usize>>,
    ips: Vec<String>,
    gateway: Option<Ipv4Addr>,
    gateway6: Option<Ipv6Addr>,
    max_conns: usize,
    tcp: TcpOpts,
    opts: CoreOpts,
    no_pin: bool,
    idle_sleep: Duration,
    duration: Option<Duration>,
    linger: Duration,
    stop: Option<Stop>,
    random_seed: Option<u64>,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            ports: Vec::new(),
            cores: None,
            ips: Vec::new(),
            gateway6: None,
            gateway: None,
            max_conns: 1 << 20,
            tcp: TcpOpts::default(),
            opts: CoreOpts::default(),
            no_pin: false,
            idle_sleep: Duration::ZERO,
            duration: None,
            linger: Duration::from_millis(200),
            stop: None,
            random_seed: None,
        }
    }
}

impl Builder {
    /// The port, as `--port` takes it (`tap:NAME`, `xdp:IFACE`,
    /// `dpdk:DEVARGS`, with `,key=value` options). One port per run.
    pub fn port(mut self, spec: &str) -> Self {
        self.ports.push(spec.to_string());
        self
    }

    /// CPU cores, one per executor (default: the first usable core).
    pub fn cores(mut self, cores: &[usize]) -> Self {
        self.cores = Some(cores.to_vec());
        self
    }

    /// An address of the stack, `ADDR/PREFIX` as `--ip` takes it, IPv4 or
    /// IPv6; call it once per family for a dual stack (a second IPv4
    /// address replaces the first).
    pub fn ip(mut self, cidr: &str) -> Self {
        self.ips.push(cidr.to_string());
        self
    }

    /// The default gateway.
    pub fn gateway(mut self, gw: Ipv4Addr) -> Self {
        self.gateway = Some(gw);
        self
    }

    /// The default IPv6 gateway.
    pub fn gateway6(mut self, gw: Ipv6Addr) -> Self {
        self.gateway6 = Some(gw);
        self
    }

    /// Most connections per core.
    pub fn max_conns(mut self, n: usize) -> Self {
        self.max_conns = n;
        self
    }

    /// TCP settings of every connection (accepted and opened).
    pub fn tcp(mut self, tcp: TcpOpts) -> Self {
        self.tcp = tcp;
        self
    }

    /// Listener backlog and policy (its `tcp` field is replaced by
    /// [`Builder::tcp`]'s).
    pub fn listen_opts(mut self, l: ListenOpts) -> Self {
        self.opts.listen = l;
        self
    }

    /// How long `TcpStream::connect` waits (default 10 s).
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.opts.connect_timeout = d;
        self
    }

    /// Do not pin threads (machines with fewer CPUs than cores asked).
    pub fn no_pin(mut self, yes: bool) -> Self {
        self.no_pin = yes;
        self
    }

    /// Sleep this long after 1024 idle turns in a row (default 0: spin, the
    /// poll-mode way; a little sleep is kinder to a shared machine).
    pub fn idle_sleep(mut self, d: Duration) -> Self {
        self.idle_sleep = d;
        self
    }

    /// Stop by itself after this long.
    pub fn duration(mut self, d: Duration) -> Self {
        self.duration = Some(d);
        self
    }

    /// After a core's main future finishes, keep turning for at most this
    /// long while its other tasks finish (default 200 ms).
    pub fn linger(mut self, d: Duration) -> Self {
        self.linger = d;
        self
    }

    /// The stop flag (default: one that Ctrl-C and SIGTERM set).
    pub fn stop(mut self, stop: Stop) -> Self {
        self.stop = Some(stop);
        self
    }

    /// A fixed seed for sequence numbers and ports (tests only).
    pub fn random_seed(mut self, seed: u64) -> Self {
        self.random_seed = Some(seed);
        self
    }

    /// Opens the port named by [`Builder::port`] with one queue per core
    /// and runs `factory(core)` on every core until each core's future has
    /// finished or the run stops.
    // Without any port backend only the error paths are left.
    #[cfg_attr(
        not(any(feature = "tap", feature = "af-xdp", feature = "dpdk")),
        allow(unused_variables, unused_mut)
    )]
    pub fn run<F, Fut>(self, factory: F) -> Result<()>
    where
        F: Fn(CoreCtx) -> Fut + Sync,
        Fut: Future<Output = ()> + 'static,
    {
        if self.ports.len() != 1 {
            return Err(Error::Config(format!(
                "{} ports given; the runtime takes one (Builder::port)",
                self.ports.len()
            )));
        }
        let mut spec: PortSpec = self.ports[0].parse()?;
        let queues = u16::try_from(self.core_list()?.len())
            .map_err(|_| Error::Config("too many cores".into()))?;
        match spec.kind {
            #[cfg(feature = "tap")]
            PortKind::Tap => {
                use crate::port::tap::{TapConfig, TapPort};
                let p = TapPort::open(&TapConfig::from_spec(&mut spec, queues)?)?;
                self.run_ports(vec![p], factory)
            }
            #[cfg(feature = "af-xdp")]
            PortKind::Xdp => {
                use crate::port::xdp::{XdpConfig, XdpPort};
                let p = XdpPort::open(&XdpConfig::from_spec(&mut spec, queues)?)?;
                self.run_ports(vec![p], factory)
            }
            #[cfg(feature = "dpdk")]
            PortKind::Dpdk => {
                use crate::port::dpdk::{eal, DpdkConfig, DpdkPort};
                let cfg = DpdkConfig::from_spec(&mut spec, queues)?;
                let args = eal::EalArgs::new("")
                    .cpus(&runtime::available_cores())
                    .device(&cfg.devargs);
                eal::init(&args.build())?;
                self.run_ports(vec![DpdkPort::open(&cfg)?], factory)
            }
            PortKind::Mem => Err(spec.err(
                "a mem port is an in-process wire: make the pair with MemPort::pair and \
                 pass one end to Builder::run_ports",
            )),
            #[allow(unreachable_patterns)]
            other => Err(spec.err(format!(
                "this build has no {} backend; enable its cargo feature",
                other.as_str()
            ))),
        }
    }

    fn core_list(&self) -> Result<Vec<usize>> {
        match &self.cores {
            Some(c) if c.is_empty() => Err(Error::Config("no cores given".into())),
            Some(c) => Ok(c.clone()),
            None => runtime::available_cores()
                .first()
                .map(|&c| vec![c])
                .ok_or_else(|| Error::Config("no usable core".into())),
        }
    }

    fn stack_config(&self) -> Result<StackConfig> {
        if self.ips.is_empty() {
            return Err(Error::Config(
                "no address: call Builder::ip(\"ADDR/PREFIX\")".into(),
            ));
        }
        let mut c = StackConfig::new(Ipv4Addr::UNSPECIFIED, 0);
        for cidr in &self.ips {
            let (ip, prefix) = runtime::parse_ip_cidr(cidr)?;
            c = c.with_addr(ip, prefix);
        }
        c.gateway = self.gateway;
        c.gateway6 = self.gateway6;
        c.max_conns = self.max_conns;
        c.connect = self.tcp;
        c.random_seed = self.random_seed;
        Ok(c)
    }

    /// Like [`Builder::run`] over a port opened by the caller (any
    /// backend, e.g. one end of `MemPort::pair`), which must have one
    /// queue per core.
    pub fn run_ports<P, F, Fut>(self, mut ports: Vec<P>, factory: F) -> Result<()>
    where
        P: Port,
        F: Fn(CoreCtx) -> Fut + Sync,
        Fut: Future<Output = ()> + 'static,
    {
        if ports.len() != 1 {
            return Err(Error::Config(format!(
                "{} ports given; the runtime takes one",
                ports.len()
            )));
        }
        let cores = self.core_list()?;
        let scfg = self.stack_config()?;
        let info = ports[0].info().clone();
        let n = cores.len();
        let mut shards = Vec::new();
        if n > 1 {
            let rss = Rss::symmetric(n)?;
            let hw = info.caps.rss && ports[0].configure_rss(&rss)?;
            shards = shard::shards(&ShardConfig {
                rss,
                steering: if hw {
                    Steering::Hardware
                } else {
                    Steering::Software
                },
                ring_size: 1024,
            })?;
        }
        let queues = ports[0].take_queues();
        if queues.len() != n {
            return Err(Error::Config(format!(
                "port {} has {} queues for {n} cores; give it one queue per core",
                info.name,
                queues.len()
            )));
        }
        let clock = MonotonicClock::new();
        let mut shards = shards.into_iter();
        let mut stacks = Vec::new();
        for q in queues {
            let mut st = Stack::new(q, &info, scfg.clone(), clock.now())?;
            if let Some(sh) = shards.next() {
                st.set_shard(sh)?;
            }
            stacks.push(st);
        }
        let stop = match &self.stop {
            Some(s) => s.clone(),
            None => Stop::with_signals()?,
        };
        let mut opts = self.opts.clone();
        opts.listen.tcp = self.tcp;
        let factory = &factory;
        let deadline = self.duration.map(|d| StdInstant::now() + d);
        std::thread::scope(|s| {
            let mut handles = Vec::new();
            for (index, (stack, &cpu)) in stacks.into_iter().zip(&cores).enumerate() {
                let ctx = CoreCtx {
                    index,
                    cores: n,
                    cpu,
                    ip: match (scfg.ipv4(), scfg.ip6.first()) {
                        (Some(a), _) => a.into(),
                        (None, Some((a, _))) => (*a).into(),
                        (None, None) => Ipv4Addr::UNSPECIFIED.into(),
                    },
                };
                let (stop, opts) = (stop.clone(), opts.clone());
                let this = &self;
                let h = std::thread::Builder::new()
                    .name(format!("bypass-rt{cpu}"))
                    .spawn_scoped(s, move || {
                        if !this.no_pin
                            && !core_affinity::set_for_current(core_affinity::CoreId { id: cpu })
                        {
                            stop.set();
                            return Err(Error::Core {
                                core: cpu,
                                why: "cannot pin the thread to it; pick usable cores or use no_pin"
                                    .into(),
                            });
                        }
                        let core = Core::new(stack, index, opts, clock.now());
                        this.drive(&core, clock, &stop, || factory(ctx));
                        Ok(())
                    })
                    .map_err(|e| Error::io("spawn runtime thread", e))?;
                handles.push(h);
            }
            while !handles.iter().all(|h| h.is_finished()) {
                if deadline.is_some_and(|d| StdInstant::now() >= d) {
                    stop.set();
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            let mut res = Ok(());
            for h in handles {
                let r = h.join().unwrap_or_else(|_| {
                    Err(Error::Config(
                        "a runtime core panicked; see the message above".into(),
                    ))
                });
                if res.is_ok() {
                    res = r;
                }
            }
            res
        })
    }

    /// One core's loop: the main future, then a bounded linger, then FINs.
    fn drive<Fut: Future<Output = ()> + 'static>(
        &self,
        core: &Core,
        clock: MonotonicClock,
        stop: &Stop,
        make: impl FnOnce() -> Fut,
    ) {
        let main = core.enter(|| core.spawn(make()));
        let mut idle = 0u32;
        let mut linger_until: Option<crate::time::Instant> = None;
        loop {
            let now = clock.now();
            if core.turn(now) == 0 {
                idle += 1;
                if idle >= 1024 && !self.idle_sleep.is_zero() {
                    std::thread::sleep(self.idle_sleep);
                }
            } else {
                idle = 0;
            }
            if stop.is_set() {
                break;
            }
            if main.is_finished() {
                let until =
                    *linger_until.get_or_insert(now.plus_micros(self.linger.as_micros() as u64));
                if core.tasks() == 0 || now >= until {
                    break;
                }
            }
        }
        let now = clock.now();
        core.shutdown(now);
        // Let the FINs go out and be acknowledged, briefly.
        let end = now.plus_micros(50_000);
        while clock.now() < end {
            core.turn(clock.now());
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}
