//! The DPDK backend (feature `dpdk`): ethdevs with one rx/tx queue pair per
//! core, receiving into and sending from mbufs with no copy.
//!
//! `dpdk:DEVARGS[;queues=N][;rxd=N][;txd=N][;promisc][;mac=02:..][;mtu=M]`
//! - `DEVARGS` is a PCI address (`0000:01:00.0`, allow-listed to EAL with
//!   `-a`) or a virtual device with its own comma-separated arguments
//!   (`net_null0`, `net_ring0`, `net_tap0,iface=dtap0`, passed as `--vdev`).
//! - Devices named when EAL starts are probed by EAL. A device opened after
//!   that (a library user opening ports one by one) is hot-plugged with
//!   `rte_dev_probe`; either way, dropping the port stops, closes and
//!   unplugs it, so it can be opened again.
//!
//! EAL starts once per process ([`eal::init`]); [`DpdkPort::open`] starts it
//! with defaults ([`eal::EalArgs`]) if nobody did.
//!
//! Each queue has its own mbuf pool (sized from the descriptor counts), so a
//! core's buffers, and its pool gauges, are its own. RSS uses a symmetric
//! Toeplitz key when the device has RSS ([`DpdkPort::rss`]).
//!
//! The hot path is `rte_eth_rx_burst`/`rte_eth_tx_burst` straight into and
//! out of the [`Burst`] array: no allocation, no copy, no lock.
#![allow(unsafe_code)]

pub mod eal;
pub mod ethdev;
mod fastpath;
pub mod mbuf;
pub mod mempool;

use std::sync::Arc;
use std::time::Duration;

use bypass_dpdk_sys as sys;

pub use eal::EalArgs;
pub use ethdev::{PortId, RssConf};
pub use mbuf::Mbuf;
pub use mempool::Mempool;

use super::{LinkStats, MacAddr, Port, PortCaps, PortInfo, PortQueue, PortSpec};
use crate::buf::{Burst, PoolStats};
use crate::error::{Error, Result};
use ethdev::{EthConfig, EthDev};
use fastpath::FastPath;

/// Default rx/tx descriptors per queue (adjusted to the device).
pub const DEFAULT_DESC: u16 = 1024;

/// How to open a DPDK port.
#[derive(Debug, Clone)]
pub struct DpdkConfig {
    /// PCI address or vdev string.
    pub devargs: String,
    /// Queues (one per core).
    pub queues: u16,
    /// Rx descriptors per queue.
    pub rxd: u16,
    /// Tx descriptors per queue.
    pub txd: u16,
    /// Promiscuous mode.
    pub promisc: bool,
    /// MAC to set.
    pub mac: Option<MacAddr>,
    /// MTU to set.
    pub mtu: Option<u16>,
    /// Mbufs per queue pool (0: sized from the descriptors).
    pub mbufs: u32,
    /// How long to wait for the link at start.
    pub link_wait: Duration,
    /// The CPUs EAL may run its main lcore on, if this open is what starts
    /// EAL (the caller's core list, passed down; empty: every CPU this
    /// process may use). Ignored when EAL is already running.
    pub eal_cpus: Vec<usize>,
}

impl DpdkConfig {
    /// A config for `devargs` with one queue and defaults.
    pub fn new(devargs: &str) -> DpdkConfig {
        DpdkConfig {
            devargs: devargs.into(),
            queues: 1,
            rxd: DEFAULT_DESC,
            txd: DEFAULT_DESC,
            promisc: false,
            mac: None,
            mtu: None,
            mbufs: 0,
            link_wait: Duration::from_secs(5),
            eal_cpus: Vec::new(),
        }
    }

    /// Reads `dpdk:DEVARGS;...` options; `queues` defaults to `default_queues`.
    pub fn from_spec(spec: &mut PortSpec, default_queues: u16) -> Result<DpdkConfig> {
        let mut c = DpdkConfig::new(&spec.name);
        c.queues = spec.take("queues")?.unwrap_or(default_queues);
        c.rxd = spec.take("rxd")?.unwrap_or(c.rxd);
        c.txd = spec.take("txd")?.unwrap_or(c.txd);
        c.promisc = spec.take_flag("promisc")?;
        c.mac = spec.take("mac")?;
        c.mtu = spec.take("mtu")?;
        c.mbufs = spec.take("mbufs")?.unwrap_or(0);
        spec.finish(&["queues", "rxd", "txd", "promisc", "mac", "mtu", "mbufs"])?;
        if c.queues == 0 || c.queues > 1024 {
            return Err(spec.err("queues must be 1..=1024"));
        }
        if c.rxd == 0 || c.txd == 0 {
            return Err(spec.err("rxd and txd must be at least 1"));
        }
        Ok(c)
    }
}

/// What a port and its queues share; dropped when the last of them goes.
/// Field order matters: the device closes (and releases the mbufs its rings
/// hold) before the pools are freed.
struct Shared {
    dev: EthDev,
    pools: Vec<Arc<Mempool>>,
}

/// One queue pair of a DPDK port, owned by one core.
pub struct DpdkQueue {
    id: u16,
    fp: FastPath,
    pool: *mut sys::rte_mempool,
    pool_ref: Arc<Mempool>,
    hugepages: bool,
    _shared: Arc<Shared>,
}

// SAFETY: a queue is used by one thread at a time (the core that owns it;
// the contract of PortQueue), which is all DPDK asks of an rx/tx queue. The
// raw pool pointer is kept alive by `pool_ref`, and mempools are thread-safe.
unsafe impl Send for DpdkQueue {}

impl DpdkQueue {
    /// The queue's mempool.
    pub fn mempool(&self) -> &Mempool {
        &self.pool_ref
    }
}

impl PortQueue for DpdkQueue {
    type Buf = Mbuf;

    #[inline]
    fn rx_burst(&mut self, burst: &mut Burst<Mbuf>) -> usize {
        eal::register_thread();
        let len = burst.len();
        let room = burst.remaining_capacity();
        if room == 0 {
            return 0;
        }
        // SAFETY: the port is started and this queue is ours alone (the
        // PortQueue contract). Mbuf is repr(transparent) over a non-null
        // *mut rte_mbuf, so the array's spare slots can take `room` mbuf
        // pointers; the driver
        // writes exactly n (<= room) valid, owned, single-segment mbufs,
        // which set_len then hands to the burst.
        unsafe {
            let slots = burst.as_mut_ptr().add(len) as *mut *mut sys::rte_mbuf;
            let n = self.fp.rx(slots, room as u16) as usize;
            burst.set_len(len + n);
            n
        }
    }

    #[inline]
    fn tx_burst(&mut self, burst: &mut Burst<Mbuf>) -> usize {
        eal::register_thread();
        let len = burst.len();
        if len == 0 {
            return 0;
        }
        // SAFETY: the burst holds `len` owned mbufs laid out as mbuf
        // pointers (repr(transparent)). The driver takes the first n; they
        // are the driver's now, so they are forgotten (set_len(0)) and the
        // unsent rest moves to the front, still owned by the burst.
        unsafe {
            let base = burst.as_mut_ptr();
            let n = self.fp.tx(base as *mut *mut sys::rte_mbuf, len as u16) as usize;
            if n == len {
                burst.set_len(0);
            } else if n > 0 {
                burst.set_len(0);
                std::ptr::copy(base.add(n), base, len - n);
                burst.set_len(len - n);
            }
            n
        }
    }

    #[inline]
    fn alloc(&mut self) -> Option<Mbuf> {
        eal::register_thread();
        // SAFETY: the pool is a valid pktmbuf pool (kept alive by pool_ref).
        let m = unsafe { sys::rte_pktmbuf_alloc(self.pool) };
        match std::ptr::NonNull::new(m) {
            // SAFETY: a fresh mbuf from the pool: valid, single segment,
            // length 0, owned by nobody else.
            Some(m) => Some(unsafe { Mbuf::from_raw(m) }),
            None => {
                self.pool_ref.count_failure();
                None
            }
        }
    }

    fn queue_id(&self) -> u16 {
        self.id
    }

    fn pool_stats(&self) -> PoolStats {
        PoolStats {
            capacity: self.pool_ref.size() as u64,
            in_use: self.pool_ref.in_use() as u64,
            alloc_failures: self.pool_ref.alloc_failures(),
            hugepages: self.hugepages,
        }
    }
}

/// An open, started DPDK ethdev.
pub struct DpdkPort {
    info: PortInfo,
    queues: Vec<DpdkQueue>,
    shared: Arc<Shared>,
    rss: Option<RssConf>,
    desc: (u16, u16),
}

impl DpdkPort {
    /// Opens the device (starting EAL with defaults if nobody did), sets up
    /// its queues and pools, starts it and waits for its link.
    pub fn open(cfg: &DpdkConfig) -> Result<DpdkPort> {
        if !eal::is_initialized() {
            let cpus = if cfg.eal_cpus.is_empty() {
                super::sys::allowed_cpus()
            } else {
                cfg.eal_cpus.clone()
            };
            eal::init(&EalArgs::new("").device(&cfg.devargs).cpus(&cpus).build())?;
        }
        let hugepages = !eal::init_args().is_some_and(|a| a.iter().any(|x| x == "--no-huge"));
        let mut dev = EthDev::open(&cfg.devargs)?;
        let facts = dev.facts()?;
        let ecfg = EthConfig {
            queues: cfg.queues,
            rxd: cfg.rxd,
            txd: cfg.txd,
            promisc: cfg.promisc,
            mac: cfg.mac,
            mtu: cfg.mtu,
        };
        let data_room = match cfg.mtu {
            // Ethernet header, two VLAN tags and the FCS beyond the MTU.
            Some(m) => (m as u32 + 14 + 8 + 4 + sys::RTE_PKTMBUF_HEADROOM)
                .max(sys::RTE_MBUF_DEFAULT_BUF_SIZE),
            None => sys::RTE_MBUF_DEFAULT_BUF_SIZE,
        };
        let data_room = u16::try_from(data_room)
            .map_err(|_| Error::Config(format!("mtu {:?} needs buffers over 64 KiB", cfg.mtu)))?;
        let id = dev.id().0;
        let (rxd, txd, pools) = dev.start(&ecfg, cfg.link_wait, |q, rxd, txd, socket| {
            let n = if cfg.mbufs > 0 {
                cfg.mbufs
            } else {
                Mempool::size_for(1, rxd, txd)
            };
            Mempool::new(&format!("bp{id}q{q}"), n, data_room, socket)
        })?;
        let mac = dev.mac()?;
        let mtu = dev.mtu().unwrap_or(1500);
        let rss = if cfg.queues > 1 { dev.rss() } else { None };
        let shared = Arc::new(Shared {
            dev,
            pools: pools.into_iter().map(Arc::new).collect(),
        });
        let queues = shared
            .pools
            .iter()
            .enumerate()
            .map(|(i, p)| DpdkQueue {
                id: i as u16,
                fp: FastPath::new(id, i as u16),
                pool: p.as_ptr(),
                pool_ref: p.clone(),
                hugepages,
                _shared: shared.clone(),
            })
            .collect();
        Ok(DpdkPort {
            info: PortInfo {
                kind: "dpdk",
                name: cfg.devargs.clone(),
                mac,
                mtu,
                queues: cfg.queues,
                caps: PortCaps {
                    tso: false,
                    // Checksum offloads are enabled where the device has
                    // them (`offloads()`), but they are per frame: each
                    // Mbuf says what was checked (rx_checksum) and carries
                    // its own transmit requests (set_tx_offload). The port
                    // as a whole promises neither.
                    rx_checksum: false,
                    tx_checksum: false,
                    rss: rss.is_some(),
                    max_queues: facts.max_rx_queues.min(facts.max_tx_queues),
                },
            },
            queues,
            shared,
            rss,
            desc: (rxd, txd),
        })
    }

    /// The receive and transmit offloads enabled on the device (checksums
    /// and TSO where it has them).
    pub fn offloads(&self) -> ethdev::Offloads {
        self.shared.dev.offloads()
    }

    /// The DPDK port id.
    pub fn port_id(&self) -> PortId {
        self.shared.dev.id()
    }

    /// The driver's name (`net_null`, `net_ring`, `net_tap`, `net_ice`...).
    pub fn driver(&self) -> String {
        self.shared
            .dev
            .facts()
            .map(|f| f.driver)
            .unwrap_or_default()
    }

    /// The RSS key, redirection table and hash types in force (when the
    /// port has several queues and the device does RSS): what a software
    /// Toeplitz hash needs to predict which queue a flow lands on.
    pub fn rss(&self) -> Option<&RssConf> {
        self.rss.as_ref()
    }

    /// Rx and tx descriptors per queue, as adjusted to the device.
    pub fn descriptors(&self) -> (u16, u16) {
        self.desc
    }

    /// Mbufs in use over all the port's pools (device rings included).
    pub fn pools_in_use(&self) -> u64 {
        self.shared.pools.iter().map(|p| p.in_use() as u64).sum()
    }

    /// The device's extended counters, by name.
    pub fn xstats(&self) -> Result<Vec<(String, u64)>> {
        self.shared.dev.xstats()
    }

    /// True if the link is up.
    pub fn link_up(&self) -> bool {
        self.shared.dev.link_up()
    }
}

impl Port for DpdkPort {
    type Queue = DpdkQueue;

    fn info(&self) -> &PortInfo {
        &self.info
    }

    fn take_queues(&mut self) -> Vec<DpdkQueue> {
        std::mem::take(&mut self.queues)
    }

    /// Programs `rss`'s key, the IPv4 TCP/UDP hash types and its table
    /// (folded over the device's table when that is a multiple of 128
    /// entries), then reads them back: `Ok(true)` only if the device reports
    /// exactly that configuration.
    fn configure_rss(&mut self, rss: &crate::flow::Rss) -> Result<bool> {
        let facts = self.shared.dev.facts()?;
        let n = facts.reta_size as usize;
        let ours = rss.reta().entries();
        if !self.info.caps.rss
            // 0: the driver does not say (net_null); the read-back decides.
            || !matches!(facts.hash_key_size as usize, 0 | 40)
            || facts.rss_offloads & ethdev::RSS_HF_FLOW != ethdev::RSS_HF_FLOW
            || n == 0
            || n % ours.len() != 0
            || rss.cores() > self.info.queues as usize
        {
            return Ok(false);
        }
        let table: Vec<u16> = (0..n).map(|i| ours[i % ours.len()]).collect();
        if !self
            .shared
            .dev
            .set_rss(&rss.key().0, ethdev::RSS_HF_FLOW, &table)?
        {
            return Ok(false);
        }
        let now = self.shared.dev.rss();
        let exact = now.as_ref().is_some_and(|c| {
            c.key == rss.key().0 && c.reta == table && c.hash_types == ethdev::RSS_HF_FLOW
        });
        self.rss = now;
        Ok(exact)
    }

    fn link_stats(&self) -> LinkStats {
        match self.shared.dev.stats() {
            Some(s) => LinkStats {
                rx_packets: s.ipackets,
                tx_packets: s.opackets,
                rx_bytes: s.ibytes,
                tx_bytes: s.obytes,
                rx_dropped: s.imissed + s.rx_nombuf,
                tx_errors: s.oerrors,
                rx_errors: s.ierrors,
            },
            None => LinkStats::default(),
        }
    }
}
