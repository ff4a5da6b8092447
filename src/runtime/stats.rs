//! Per-core counters and their aggregation.
//!
//! Each core writes only its own [`CoreStats`] (cache-line aligned, so two
//! cores never share a line); a [`Counter`] write is a plain relaxed
//! load+store, no locked instruction. The main thread reads them all for the
//! live table and the JSON summary.

use std::sync::Arc;

use serde::Serialize;

pub use crate::counter::Counter;

/// Most ports one run drives.
pub const MAX_PORTS: usize = 4;

/// Why a frame was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum DropReason {
    /// The application's handler said so.
    Handler,
    /// The port's transmit queue was full.
    TxFull,
    /// No buffer for a copy or a reply.
    NoBuffer,
    /// The frame could not be parsed.
    Malformed,
    /// Not for us (another MAC or IP, a protocol we do not speak).
    NotForUs,
    /// A checksum was wrong.
    BadChecksum,
    /// The TTL would have reached zero (a router).
    TtlExpired,
    /// No route covered the destination (a router).
    NoRoute,
}

impl DropReason {
    /// Number of reasons.
    pub const COUNT: usize = 8;
    /// All reasons, in index order.
    pub const ALL: [DropReason; DropReason::COUNT] = [
        DropReason::Handler,
        DropReason::TxFull,
        DropReason::NoBuffer,
        DropReason::Malformed,
        DropReason::NotForUs,
        DropReason::BadChecksum,
        DropReason::TtlExpired,
        DropReason::NoRoute,
    ];
    /// The name used in JSON.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Handler => "handler",
            DropReason::TxFull => "tx_full",
            DropReason::NoBuffer => "no_buffer",
            DropReason::Malformed => "malformed",
            DropReason::NotForUs => "not_for_us",
            DropReason::BadChecksum => "bad_checksum",
            DropReason::TtlExpired => "ttl_expired",
            DropReason::NoRoute => "no_route",
        }
    }
}

/// One core's counters for one port.
#[derive(Debug, Default)]
pub struct PortCounters {
    /// Frames received.
    pub rx_packets: Counter,
    /// Bytes received.
    pub rx_bytes: Counter,
    /// Frames sent.
    pub tx_packets: Counter,
    /// Bytes sent.
    pub tx_bytes: Counter,
    /// Drops by [`DropReason`].
    pub drops: [Counter; DropReason::COUNT],
    /// Buffers of this core's pool in use (gauge).
    pub pool_in_use: Counter,
    /// Pool allocation failures (gauge, copied from the pool).
    pub pool_alloc_failures: Counter,
}

impl PortCounters {
    /// Counts a drop.
    #[inline]
    pub fn drop(&self, why: DropReason, n: u64) {
        self.drops[why as usize].add(n);
    }
}

/// One core's counters.
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct CoreStats {
    /// Loop iterations.
    pub polls: Counter,
    /// Iterations that found nothing to do.
    pub idle_polls: Counter,
    /// Per-port counters, by port index.
    pub ports: [PortCounters; MAX_PORTS],
}

/// The counters of a run: one [`CoreStats`] per core.
#[derive(Debug, Clone)]
pub struct Stats {
    cores: Arc<[CoreStats]>,
    core_ids: Vec<usize>,
    ports: Vec<String>,
}

/// Totals for one port at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PortSnapshot {
    /// Port name (`tap:bp0`).
    pub name: String,
    /// Frames received.
    pub rx_packets: u64,
    /// Frames sent.
    pub tx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// All drops.
    pub drops: u64,
    /// Drops by reason.
    pub drops_by_reason: std::collections::BTreeMap<&'static str, u64>,
    /// Pool buffers in use.
    pub pool_in_use: u64,
    /// Pool allocation failures.
    pub pool_alloc_failures: u64,
}

/// One core's totals at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CoreSnapshot {
    /// CPU core id.
    pub core: usize,
    /// Loop iterations.
    pub polls: u64,
    /// Idle iterations.
    pub idle_polls: u64,
    /// Frames received on all ports.
    pub rx_packets: u64,
    /// Frames sent on all ports.
    pub tx_packets: u64,
}

/// Everything at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Snapshot {
    /// Per port, summed over cores.
    pub ports: Vec<PortSnapshot>,
    /// Per core, summed over ports.
    pub cores: Vec<CoreSnapshot>,
}

impl Stats {
    /// Counters for `core_ids.len()` cores and the named ports.
    pub fn new(core_ids: &[usize], ports: &[String]) -> Stats {
        assert!(ports.len() <= MAX_PORTS, "at most {MAX_PORTS} ports");
        Stats {
            cores: (0..core_ids.len()).map(|_| CoreStats::default()).collect(),
            core_ids: core_ids.to_vec(),
            ports: ports.to_vec(),
        }
    }

    /// The counters of the core at index `i` (not core id).
    pub fn core(&self, i: usize) -> CoreRef {
        CoreRef {
            all: self.cores.clone(),
            i,
        }
    }

    /// Reads everything.
    pub fn snapshot(&self) -> Snapshot {
        let mut ports = Vec::new();
        for (p, name) in self.ports.iter().enumerate() {
            let mut s = PortSnapshot {
                name: name.clone(),
                ..Default::default()
            };
            let mut by = [0u64; DropReason::COUNT];
            for c in self.cores.iter() {
                let pc = &c.ports[p];
                s.rx_packets += pc.rx_packets.get();
                s.tx_packets += pc.tx_packets.get();
                s.rx_bytes += pc.rx_bytes.get();
                s.tx_bytes += pc.tx_bytes.get();
                s.pool_in_use += pc.pool_in_use.get();
                s.pool_alloc_failures += pc.pool_alloc_failures.get();
                for (b, d) in by.iter_mut().zip(pc.drops.iter()) {
                    *b += d.get();
                }
            }
            s.drops = by.iter().sum();
            s.drops_by_reason = DropReason::ALL
                .iter()
                .map(|r| (r.name(), by[*r as usize]))
                .collect();
            ports.push(s);
        }
        let cores = self
            .cores
            .iter()
            .zip(&self.core_ids)
            .map(|(c, &core)| CoreSnapshot {
                core,
                polls: c.polls.get(),
                idle_polls: c.idle_polls.get(),
                rx_packets: c.ports.iter().map(|p| p.rx_packets.get()).sum(),
                tx_packets: c.ports.iter().map(|p| p.tx_packets.get()).sum(),
            })
            .collect();
        Snapshot { ports, cores }
    }
}

/// A core's handle on its own counters.
#[derive(Debug, Clone)]
pub struct CoreRef {
    all: Arc<[CoreStats]>,
    i: usize,
}

impl std::ops::Deref for CoreRef {
    type Target = CoreStats;
    #[inline]
    fn deref(&self) -> &CoreStats {
        &self.all[self.i]
    }
}

fn rate(n: u64, secs: f64) -> String {
    let r = n as f64 / secs.max(1e-9);
    if r >= 1e6 {
        format!("{:.2}M", r / 1e6)
    } else if r >= 1e3 {
        format!("{:.1}k", r / 1e3)
    } else {
        format!("{r:.0}")
    }
}

/// The live table's header line.
pub fn table_header() -> String {
    format!(
        "{:>6}  {:<14} {:>9} {:>9} {:>12} {:>12} {:>9} {:>8}",
        "time", "port", "rx-pps", "tx-pps", "rx-packets", "tx-packets", "drops", "pool"
    )
}

/// The live table's lines for one interval: one per port.
pub fn table_lines(prev: &Snapshot, now: &Snapshot, secs: f64, elapsed: f64) -> Vec<String> {
    now.ports
        .iter()
        .zip(
            prev.ports
                .iter()
                .chain(std::iter::repeat(&PortSnapshot::default())),
        )
        .map(|(n, p)| {
            format!(
                "{:>5.0}s  {:<14} {:>9} {:>9} {:>12} {:>12} {:>9} {:>8}",
                elapsed,
                n.name,
                rate(n.rx_packets - p.rx_packets, secs),
                rate(n.tx_packets - p.tx_packets, secs),
                n.rx_packets,
                n.tx_packets,
                n.drops,
                n.pool_in_use
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_stats_are_cache_aligned() {
        assert_eq!(std::mem::align_of::<CoreStats>(), 64);
    }

    #[test]
    fn snapshot_sums_cores_and_reasons() {
        let s = Stats::new(&[0, 1], &["a".into(), "b".into()]);
        s.core(0).ports[0].rx_packets.add(3);
        s.core(1).ports[0].rx_packets.add(4);
        s.core(1).ports[1].drop(DropReason::TxFull, 2);
        s.core(1).ports[1].drop(DropReason::Malformed, 1);
        let snap = s.snapshot();
        assert_eq!(snap.ports[0].rx_packets, 7);
        assert_eq!(snap.ports[1].drops, 3);
        assert_eq!(snap.ports[1].drops_by_reason["tx_full"], 2);
        assert_eq!(snap.cores[1].rx_packets, 4);
        let lines = table_lines(&Snapshot::default(), &snap, 1.0, 1.0);
        assert_eq!(lines.len(), 2);
        assert!(lines[0].contains(" 7 "), "{}", lines[0]);
    }
}
