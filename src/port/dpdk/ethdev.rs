//! An ethdev: found (or hot-plugged), configured with N rx/tx queues,
//! started, and stopped and closed on drop.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString};
use std::time::{Duration, Instant};

use bypass_dpdk_sys as sys;

use super::eal::{self, check};
use super::mempool::Mempool;
use crate::error::{Error, Result};
use crate::port::MacAddr;

/// A DPDK port id; prints as `port0`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortId(pub u16);

impl std::fmt::Debug for PortId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "port{}", self.0)
    }
}

// RSS hash types (RTE_BIT64 macros that bindgen does not export), from
// rte_ethdev.h.
const RSS_IPV4: u64 = 1 << 2;
const RSS_FRAG_IPV4: u64 = 1 << 3;
const RSS_NONFRAG_IPV4_TCP: u64 = 1 << 4;
const RSS_NONFRAG_IPV4_UDP: u64 = 1 << 5;
const RSS_NONFRAG_IPV4_OTHER: u64 = 1 << 7;
const RSS_IPV6: u64 = 1 << 8;
const RSS_FRAG_IPV6: u64 = 1 << 9;
const RSS_NONFRAG_IPV6_TCP: u64 = 1 << 10;
const RSS_NONFRAG_IPV6_UDP: u64 = 1 << 11;
const RSS_NONFRAG_IPV6_OTHER: u64 = 1 << 13;
/// The hash types we ask for: IPv4/IPv6 addresses, plus TCP/UDP ports.
pub const RSS_HF: u64 = RSS_IPV4
    | RSS_FRAG_IPV4
    | RSS_NONFRAG_IPV4_TCP
    | RSS_NONFRAG_IPV4_UDP
    | RSS_NONFRAG_IPV4_OTHER
    | RSS_IPV6
    | RSS_FRAG_IPV6
    | RSS_NONFRAG_IPV6_TCP
    | RSS_NONFRAG_IPV6_UDP
    | RSS_NONFRAG_IPV6_OTHER;
const RX_OFFLOAD_RSS_HASH: u64 = 1 << 19;
// Checksum and segmentation offloads (RTE_BIT64 macros), from rte_ethdev.h.
const RX_OFFLOAD_IPV4_CKSUM: u64 = 1 << 1;
const RX_OFFLOAD_UDP_CKSUM: u64 = 1 << 2;
const RX_OFFLOAD_TCP_CKSUM: u64 = 1 << 3;
/// The receive checksum offloads we enable when the device has them.
pub const RX_OFFLOAD_CHECKSUM: u64 =
    RX_OFFLOAD_IPV4_CKSUM | RX_OFFLOAD_UDP_CKSUM | RX_OFFLOAD_TCP_CKSUM;
const TX_OFFLOAD_IPV4_CKSUM: u64 = 1 << 1;
const TX_OFFLOAD_UDP_CKSUM: u64 = 1 << 2;
const TX_OFFLOAD_TCP_CKSUM: u64 = 1 << 3;
/// TCP segmentation offload.
pub const TX_OFFLOAD_TCP_TSO: u64 = 1 << 5;
/// The transmit checksum offloads we enable when the device has them.
pub const TX_OFFLOAD_CHECKSUM: u64 =
    TX_OFFLOAD_IPV4_CKSUM | TX_OFFLOAD_UDP_CKSUM | TX_OFFLOAD_TCP_CKSUM;

/// The offloads in force after [`EthDev::start`] (`RTE_ETH_*_OFFLOAD_*`
/// bits).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Offloads {
    /// Receive offloads.
    pub rx: u64,
    /// Transmit offloads.
    pub tx: u64,
}
/// The hash types of `crate::flow::Rss`: the IPv4 TCP/UDP 4-tuple, the two
/// addresses for other IPv4 packets.
pub const RSS_HF_FLOW: u64 = RSS_IPV4 | RSS_NONFRAG_IPV4_TCP | RSS_NONFRAG_IPV4_UDP;

/// The symmetric Toeplitz key: `6d 5a` repeated (Woo and Park, 2012). With
/// it, a flow and its reverse (addresses and ports swapped) hash alike, so
/// both directions of a connection land on one queue.
pub fn symmetric_rss_key(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| if i % 2 == 0 { 0x6d } else { 0x5a })
        .collect()
}

/// The RSS setup the device reports after start: what `flow.rs` needs to
/// compute the same hash in software.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RssConf {
    /// The Toeplitz key.
    pub key: Vec<u8>,
    /// The redirection table: entry `hash % reta.len()` is the queue.
    pub reta: Vec<u16>,
    /// The hash types (`RTE_ETH_RSS_*` bits) in force.
    pub hash_types: u64,
}

/// What we ask of the device.
#[derive(Debug, Clone)]
pub struct EthConfig {
    /// Rx and tx queues.
    pub queues: u16,
    /// Rx descriptors per queue (adjusted to the device).
    pub rxd: u16,
    /// Tx descriptors per queue (adjusted to the device).
    pub txd: u16,
    /// Receive every frame, whatever its destination MAC.
    pub promisc: bool,
    /// MAC to set; `None` keeps the device's.
    pub mac: Option<MacAddr>,
    /// MTU to set; `None` keeps the device's.
    pub mtu: Option<u16>,
}

/// Facts read from the device.
#[derive(Debug, Clone)]
pub struct DevFacts {
    /// Driver name (`net_null`, `net_ice`, ...).
    pub driver: String,
    /// Most rx queues.
    pub max_rx_queues: u16,
    /// Most tx queues.
    pub max_tx_queues: u16,
    /// Hash types the device can spread by (0: no RSS).
    pub rss_offloads: u64,
    /// RSS key size in bytes (0: unknown).
    pub hash_key_size: u8,
    /// Redirection table size (0: none).
    pub reta_size: u16,
    /// NUMA socket (-1: any).
    pub socket: i32,
}

/// An open ethdev. Dropping it stops, closes and unplugs the device.
pub struct EthDev {
    id: PortId,
    name: String,
    device: *mut sys::rte_device,
    started: bool,
    offloads: Offloads,
}

// SAFETY: the ethdev control API may be called from any thread (one at a
// time, which &mut / ownership gives); the rte_device pointer is only passed
// back to DPDK.
unsafe impl Send for EthDev {}
// SAFETY: the &self methods only read counters and state through DPDK
// calls that are safe to make concurrently with the data path.
unsafe impl Sync for EthDev {}

fn cstring(s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::Config(format!("`{s}` contains a NUL byte")))
}

/// The ethdev name of a device string: the part before the first comma,
/// with PCI addresses in their full `0000:01:00.0` form.
pub fn dev_name(devargs: &str) -> String {
    let n = devargs.split(',').next().unwrap_or(devargs);
    if eal::is_pci_address(n) && n.matches(':').count() == 1 {
        format!("0000:{n}")
    } else {
        n.to_string()
    }
}

fn port_by_name(name: &str) -> Result<Option<PortId>> {
    let c = cstring(name)?;
    let mut id = 0u16;
    // SAFETY: c is a valid C string; id is a valid out pointer.
    let r = unsafe { sys::rte_eth_dev_get_port_by_name(c.as_ptr(), &mut id) };
    Ok((r == 0).then_some(PortId(id)))
}

impl EthDev {
    /// Finds the ethdev of `devargs` (a device EAL probed at start), or
    /// hot-plugs it with `rte_dev_probe` if EAL was started without it.
    pub fn open(devargs: &str) -> Result<EthDev> {
        let name = dev_name(devargs);
        let id = match port_by_name(&name)? {
            Some(id) => id,
            None => {
                let c = cstring(devargs)?;
                // SAFETY: EAL is initialised (the caller checked); c is valid.
                let r = unsafe { sys::rte_dev_probe(c.as_ptr()) };
                if r < 0 {
                    return Err(Error::Backend {
                        backend: "dpdk",
                        msg: format!(
                            "no DPDK device `{name}`: probing `{devargs}` failed: {} (errno {}). \
                             A NIC must be bound to a DPDK driver (dpdk-devbind.py) and allow-listed; \
                             a virtual device is named like net_null0, net_ring0 or net_tap0,iface=NAME",
                            eal::strerror(-r),
                            -r
                        ),
                    });
                }
                port_by_name(&name)?.ok_or_else(|| Error::Backend {
                    backend: "dpdk",
                    msg: format!("`{devargs}` was probed but made no ethdev named `{name}`"),
                })?
            }
        };
        let mut dev = EthDev {
            id,
            name,
            device: std::ptr::null_mut(),
            started: false,
            offloads: Offloads::default(),
        };
        dev.device = dev.raw_info()?.device;
        Ok(dev)
    }

    /// The port id.
    pub fn id(&self) -> PortId {
        self.id
    }

    /// The ethdev name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn raw_info(&self) -> Result<sys::rte_eth_dev_info> {
        let mut info = sys::rte_eth_dev_info::default();
        // SAFETY: valid port id, valid out pointer.
        check(
            unsafe { sys::rte_eth_dev_info_get(self.id.0, &mut info) },
            format!("rte_eth_dev_info_get({})", self.name),
        )?;
        Ok(info)
    }

    /// The offloads enabled by [`start`](EthDev::start).
    pub fn offloads(&self) -> Offloads {
        self.offloads
    }

    /// What the device can do.
    pub fn facts(&self) -> Result<DevFacts> {
        let info = self.raw_info()?;
        let driver = if info.driver_name.is_null() {
            String::new()
        } else {
            // SAFETY: a non-null driver_name is a static C string of the PMD.
            unsafe { CStr::from_ptr(info.driver_name) }
                .to_string_lossy()
                .into_owned()
        };
        Ok(DevFacts {
            driver,
            max_rx_queues: info.max_rx_queues,
            max_tx_queues: info.max_tx_queues,
            rss_offloads: info.flow_type_rss_offloads,
            hash_key_size: info.hash_key_size,
            reta_size: info.reta_size,
            // SAFETY: valid port id.
            socket: unsafe { sys::rte_eth_dev_socket_id(self.id.0) },
        })
    }

    /// Configures queues, RSS, MAC and MTU, sets up one pool per queue from
    /// `make_pool(queue, rxd, txd, socket)`, starts the device and waits up
    /// to `link_wait` for the link. Returns the adjusted descriptor counts.
    pub fn start(
        &mut self,
        cfg: &EthConfig,
        link_wait: Duration,
        mut make_pool: impl FnMut(u16, u16, u16, i32) -> Result<Mempool>,
    ) -> Result<(u16, u16, Vec<Mempool>)> {
        let info = self.raw_info()?;
        let facts = self.facts()?;
        let q = cfg.queues;
        if q == 0 || q > info.max_rx_queues || q > info.max_tx_queues {
            return Err(Error::Config(format!(
                "DPDK device `{}` ({}) offers {} rx and {} tx queues; {q} asked (one per core): use fewer cores or queues=",
                self.name, facts.driver, info.max_rx_queues, info.max_tx_queues
            )));
        }
        let mut conf = sys::rte_eth_conf::default();
        let mut key = symmetric_rss_key(if info.hash_key_size > 0 {
            info.hash_key_size as usize
        } else {
            40
        });
        let hf = RSS_HF & info.flow_type_rss_offloads;
        if q > 1 && hf != 0 {
            conf.rxmode.mq_mode = sys::RTE_ETH_MQ_RX_RSS;
            conf.rx_adv_conf.rss_conf.rss_key = key.as_mut_ptr();
            conf.rx_adv_conf.rss_conf.rss_key_len = key.len() as u8;
            conf.rx_adv_conf.rss_conf.rss_hf = hf;
            if info.rx_offload_capa & RX_OFFLOAD_RSS_HASH != 0 {
                conf.rxmode.offloads |= RX_OFFLOAD_RSS_HASH;
            }
        } else if q > 1 {
            tracing::warn!(
                "DPDK device `{}` ({}) has no RSS: flows are not spread over its {q} queues by a hash",
                self.name,
                facts.driver
            );
        }
        // Checksum offloads (and TSO) where the device has them: each
        // buffer then says what the device checked (Mbuf::rx_checksum) and
        // may ask for checksums and segmentation on transmit.
        conf.rxmode.offloads |= info.rx_offload_capa & RX_OFFLOAD_CHECKSUM;
        conf.txmode.offloads |= info.tx_offload_capa & (TX_OFFLOAD_CHECKSUM | TX_OFFLOAD_TCP_TSO);
        self.offloads = Offloads {
            rx: conf.rxmode.offloads,
            tx: conf.txmode.offloads,
        };
        // SAFETY: valid port id; conf (and the key it points to) outlive the
        // call, which copies them.
        check(
            unsafe { sys::rte_eth_dev_configure(self.id.0, q, q, &conf) },
            format!("configuring `{}` with {q} queues", self.name),
        )?;
        let (mut rxd, mut txd) = (cfg.rxd, cfg.txd);
        // SAFETY: valid port id and out pointers.
        check(
            unsafe { sys::rte_eth_dev_adjust_nb_rx_tx_desc(self.id.0, &mut rxd, &mut txd) },
            "rte_eth_dev_adjust_nb_rx_tx_desc",
        )?;
        if let Some(mtu) = cfg.mtu {
            // SAFETY: valid port id.
            check(
                unsafe { sys::rte_eth_dev_set_mtu(self.id.0, mtu) },
                format!("setting MTU {mtu} on `{}`", self.name),
            )?;
        }
        let socket = facts.socket;
        let mut pools = Vec::with_capacity(q as usize);
        for i in 0..q {
            let pool = make_pool(i, rxd, txd, socket)?;
            // SAFETY: valid port id and queue index (< q configured above);
            // the default rxconf is a valid config; the pool outlives the
            // device (the owner drops the device first).
            check(
                unsafe {
                    sys::rte_eth_rx_queue_setup(
                        self.id.0,
                        i,
                        rxd,
                        socket as u32,
                        &info.default_rxconf,
                        pool.as_ptr(),
                    )
                },
                format!("setting up rx queue {i} of `{}`", self.name),
            )?;
            // SAFETY: as above, for the tx queue.
            check(
                unsafe {
                    sys::rte_eth_tx_queue_setup(
                        self.id.0,
                        i,
                        txd,
                        socket as u32,
                        &info.default_txconf,
                    )
                },
                format!("setting up tx queue {i} of `{}`", self.name),
            )?;
            pools.push(pool);
        }
        if let Some(mac) = cfg.mac {
            let mut a = sys::rte_ether_addr { addr_bytes: mac.0 };
            // SAFETY: valid port id and address.
            check(
                unsafe { sys::rte_eth_dev_default_mac_addr_set(self.id.0, &mut a) },
                format!("setting MAC {mac} on `{}`", self.name),
            )?;
        }
        // SAFETY: valid, configured port.
        check(
            unsafe { sys::rte_eth_dev_start(self.id.0) },
            format!("starting `{}`", self.name),
        )?;
        self.started = true;
        if conf.rxmode.mq_mode == sys::RTE_ETH_MQ_RX_RSS {
            // Some drivers (net_null among them) ignore the key given to
            // configure: set it again explicitly.
            let mut rss = sys::rte_eth_rss_conf {
                rss_key: key.as_mut_ptr(),
                rss_key_len: key.len() as u8,
                rss_hf: hf,
            };
            // SAFETY: valid, started port; the key outlives the call.
            let r = unsafe { sys::rte_eth_dev_rss_hash_update(self.id.0, &mut rss) };
            if r < 0 {
                tracing::warn!(
                    "{}; flows hash with the device's own key",
                    eal::err(
                        format!("setting the symmetric RSS key on `{}`", self.name),
                        -r
                    )
                );
            }
        }
        if conf.rxmode.mq_mode == sys::RTE_ETH_MQ_RX_RSS && info.reta_size > 0 {
            // A known redirection table (entry i -> queue i % queues), so that
            // software can predict the queue of a flow; some drivers leave
            // theirs unset.
            let g = sys::RTE_ETH_RETA_GROUP_SIZE as usize;
            let n = info.reta_size as usize;
            let mut entries = vec![
                sys::rte_eth_rss_reta_entry64 {
                    mask: u64::MAX,
                    reta: [0; 64]
                };
                n.div_ceil(g)
            ];
            for i in 0..n {
                entries[i / g].reta[i % g] = (i % q as usize) as u16;
            }
            // SAFETY: valid, started port; entries hold reta_size entries.
            let r = unsafe {
                sys::rte_eth_dev_rss_reta_update(self.id.0, entries.as_mut_ptr(), info.reta_size)
            };
            if r < 0 {
                tracing::warn!(
                    "{}; the device keeps its own",
                    eal::err(
                        format!("setting the RSS redirection table of `{}`", self.name),
                        -r
                    )
                );
            }
        }
        if cfg.promisc {
            // SAFETY: valid, started port.
            let r = unsafe { sys::rte_eth_promiscuous_enable(self.id.0) };
            if r < 0 && r != -libc::ENOTSUP {
                check(r, format!("promiscuous mode on `{}`", self.name))?;
            }
        }
        if !self.wait_link(link_wait) {
            tracing::warn!(
                "DPDK device `{}`: link still down after {:?}",
                self.name,
                link_wait
            );
        }
        Ok((rxd, txd, pools))
    }

    /// Polls the link status until it is up or `wait` passes; true if up.
    pub fn wait_link(&self, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        loop {
            if self.link_up() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// True if the link is up.
    pub fn link_up(&self) -> bool {
        let mut link = sys::rte_eth_link::default();
        // SAFETY: valid port id and out pointer.
        let r = unsafe { sys::rte_eth_link_get_nowait(self.id.0, &mut link) };
        r == 0 && link.link_status() == sys::RTE_ETH_LINK_UP as u16
    }

    /// The device's MAC.
    pub fn mac(&self) -> Result<MacAddr> {
        let mut a = sys::rte_ether_addr::default();
        // SAFETY: valid port id and out pointer.
        check(
            unsafe { sys::rte_eth_macaddr_get(self.id.0, &mut a) },
            "rte_eth_macaddr_get",
        )?;
        Ok(MacAddr(a.addr_bytes))
    }

    /// The MTU.
    pub fn mtu(&self) -> Result<u16> {
        let mut mtu = 0u16;
        // SAFETY: valid port id and out pointer.
        check(
            unsafe { sys::rte_eth_dev_get_mtu(self.id.0, &mut mtu) },
            "rte_eth_dev_get_mtu",
        )?;
        Ok(mtu)
    }

    /// The RSS key, table and hash types in force, if the device has RSS
    /// and reports them.
    pub fn rss(&self) -> Option<RssConf> {
        let facts = self.facts().ok()?;
        if facts.rss_offloads == 0 {
            return None;
        }
        let mut key = vec![
            0u8;
            if facts.hash_key_size > 0 {
                facts.hash_key_size as usize
            } else {
                40
            }
        ];
        let mut conf = sys::rte_eth_rss_conf {
            rss_key: key.as_mut_ptr(),
            rss_key_len: key.len() as u8,
            rss_hf: 0,
        };
        // SAFETY: valid port id; the key buffer is rss_key_len bytes long.
        let r = unsafe { sys::rte_eth_dev_rss_hash_conf_get(self.id.0, &mut conf) };
        if r != 0 {
            return None;
        }
        key.truncate(conf.rss_key_len as usize);
        let n = facts.reta_size as usize;
        let mut reta = Vec::new();
        if n > 0 {
            let groups = n.div_ceil(sys::RTE_ETH_RETA_GROUP_SIZE as usize);
            let mut entries = vec![
                sys::rte_eth_rss_reta_entry64 {
                    mask: u64::MAX,
                    reta: [0; 64]
                };
                groups
            ];
            // SAFETY: entries holds reta_size/64 (rounded up) groups, as the
            // call requires for reta_size entries.
            let r = unsafe {
                sys::rte_eth_dev_rss_reta_query(self.id.0, entries.as_mut_ptr(), facts.reta_size)
            };
            if r == 0 {
                reta = entries.iter().flat_map(|e| e.reta).take(n).collect();
            }
        }
        Some(RssConf {
            key,
            reta,
            hash_types: conf.rss_hf,
        })
    }

    /// Programs the RSS key, hash types and redirection table (`reta[i]` is
    /// the queue of table entry `i`; its length must be the device's table
    /// size). Returns `Ok(false)` if the device does not support it.
    pub fn set_rss(&self, key: &[u8], hash_types: u64, reta: &[u16]) -> Result<bool> {
        let mut key = key.to_vec();
        let mut conf = sys::rte_eth_rss_conf {
            rss_key: key.as_mut_ptr(),
            rss_key_len: key.len() as u8,
            rss_hf: hash_types,
        };
        // SAFETY: valid port id; the key outlives the call.
        let r = unsafe { sys::rte_eth_dev_rss_hash_update(self.id.0, &mut conf) };
        if r == -libc::ENOTSUP {
            return Ok(false);
        }
        check(r, format!("setting the RSS key of `{}`", self.name))?;
        let g = sys::RTE_ETH_RETA_GROUP_SIZE as usize;
        let mut entries = vec![
            sys::rte_eth_rss_reta_entry64 {
                mask: u64::MAX,
                reta: [0; 64]
            };
            reta.len().div_ceil(g)
        ];
        for (i, &q) in reta.iter().enumerate() {
            entries[i / g].reta[i % g] = q;
        }
        // SAFETY: valid port id; entries hold reta.len() entries.
        let r = unsafe {
            sys::rte_eth_dev_rss_reta_update(self.id.0, entries.as_mut_ptr(), reta.len() as u16)
        };
        if r == -libc::ENOTSUP {
            return Ok(false);
        }
        check(
            r,
            format!("setting the RSS redirection table of `{}`", self.name),
        )?;
        Ok(true)
    }

    /// Basic device counters.
    pub fn stats(&self) -> Option<sys::rte_eth_stats> {
        let mut s = sys::rte_eth_stats::default();
        // SAFETY: valid port id and out pointer.
        (unsafe { sys::rte_eth_stats_get(self.id.0, &mut s) } == 0).then_some(s)
    }

    /// Extended counters, by name.
    pub fn xstats(&self) -> Result<Vec<(String, u64)>> {
        // SAFETY: a NULL array with size 0 asks for the count.
        let n = check(
            unsafe { sys::rte_eth_xstats_get_names(self.id.0, std::ptr::null_mut(), 0) },
            "rte_eth_xstats_get_names",
        )? as usize;
        let mut names = vec![sys::rte_eth_xstat_name::default(); n];
        let mut vals = vec![sys::rte_eth_xstat::default(); n];
        // SAFETY: both arrays hold n entries.
        let got = check(
            unsafe { sys::rte_eth_xstats_get_names(self.id.0, names.as_mut_ptr(), n as u32) },
            "rte_eth_xstats_get_names",
        )? as usize;
        // SAFETY: as above.
        let got2 = check(
            unsafe { sys::rte_eth_xstats_get(self.id.0, vals.as_mut_ptr(), n as u32) },
            "rte_eth_xstats_get",
        )? as usize;
        let got = got.min(got2).min(n);
        Ok(vals[..got]
            .iter()
            .filter_map(|v| {
                let name = names.get(v.id as usize)?;
                // SAFETY: DPDK NUL-terminates xstat names within the array.
                let s = unsafe { CStr::from_ptr(name.name.as_ptr()) };
                Some((s.to_string_lossy().into_owned(), v.value))
            })
            .collect())
    }
}

impl Drop for EthDev {
    fn drop(&mut self) {
        // SAFETY: valid port id; nobody uses the port after this (queues
        // hold the device alive until they are dropped).
        unsafe {
            if self.started {
                let r = sys::rte_eth_dev_stop(self.id.0);
                if r < 0 {
                    tracing::warn!("{}", eal::err(format!("stopping `{}`", self.name), -r));
                }
            }
            let r = sys::rte_eth_dev_close(self.id.0);
            if r < 0 {
                tracing::warn!("{}", eal::err(format!("closing `{}`", self.name), -r));
            }
            if !self.device.is_null() {
                // Unplug, so that the same device can be opened again in
                // this process. Errors only mean it was unplugged already.
                let r = sys::rte_dev_remove(self.device);
                if r < 0 {
                    tracing::debug!("{}", eal::err(format!("removing `{}`", self.name), -r));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symmetric_key_and_names() {
        let k = symmetric_rss_key(40);
        assert_eq!(k.len(), 40);
        assert_eq!(&k[..4], &[0x6d, 0x5a, 0x6d, 0x5a]);
        assert_eq!(dev_name("net_tap0,iface=x"), "net_tap0");
        assert_eq!(dev_name("01:00.0"), "0000:01:00.0");
        assert_eq!(dev_name("0000:af:00.1,txq_inline=0"), "0000:af:00.1");
    }

    #[test]
    fn port_id_prints_short() {
        assert_eq!(format!("{:?}", PortId(3)), "port3");
    }
}
