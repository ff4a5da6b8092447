//! What a load run measured: summaries merged over cores, percentiles,
//! and the stall watch that fails a run whose progress stops.

use hdrhistogram::Histogram;

use super::{histogram, LoadGen, LoadStats, Mode};

/// What a run of one or more cores' generators measured.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LoadSummary {
    /// The mode.
    pub mode: Mode,
    /// Connections asked for, all cores.
    pub connections: usize,
    /// Connections open at the end.
    pub open: u64,
    /// Connection attempts.
    pub connects: u64,
    /// Connections established.
    pub opened: u64,
    /// Failed attempts.
    pub failed: u64,
    /// Orderly closes.
    pub closed: u64,
    /// Resets and timeouts.
    pub reset: u64,
    /// Protocol errors.
    pub errors: u64,
    /// All transactions.
    pub transactions: u64,
    /// Seconds from the first poll until every connection was open on
    /// every core (`None`: never, or `cps`).
    pub time_to_full_s: Option<f64>,
    /// Transactions per second in the measured window (summed over cores).
    pub tps: f64,
    /// Connections set up and torn down per second (`cps`).
    pub cps: f64,
    /// Transaction latency of the measured window.
    pub latency: Percentiles,
    /// Handshake latency.
    pub handshake: Percentiles,
    /// Per core: (transactions, window seconds, open).
    pub per_core: Vec<CoreSummary>,
}

/// One core's part of a [`LoadSummary`].
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct CoreSummary {
    /// Transactions in the window.
    pub transactions: u64,
    /// Window length (s).
    pub window_s: f64,
    /// Transactions per second.
    pub tps: f64,
    /// Connections open at the end.
    pub open: u64,
    /// Connection attempts.
    pub connects: u64,
}

impl LoadSummary {
    /// Sums the generators of all cores.
    pub fn of(gens: &[&LoadGen]) -> LoadSummary {
        let mut lat = empty_histogram();
        let mut hs = empty_histogram();
        let sum = |f: fn(&LoadStats) -> u64| gens.iter().map(|g| f(&g.stats)).sum::<u64>();
        let mut per_core = Vec::new();
        let mut tps = 0.0;
        let mut full = Some(0.0f64);
        for g in gens {
            // Same bounds on both sides: merging cannot fail.
            let _ = lat.add(&g.latency);
            let _ = hs.add(&g.handshake);
            let (t, w) = g.window();
            let r = if w > 0.0 { t as f64 / w } else { 0.0 };
            tps += r;
            per_core.push(CoreSummary {
                transactions: t,
                window_s: w,
                tps: r,
                open: g.live as u64,
                connects: g.stats.connects.get(),
            });
            full = match (full, g.full_at, g.start) {
                (Some(m), Some(f), Some(s)) => Some(m.max(f.since(s) as f64 / 1e6)),
                _ => None,
            };
        }
        let mode = gens.first().map_or(Mode::Rr, |g| g.cfg.mode);
        let cps = if mode == Mode::Cps { tps } else { 0.0 };
        LoadSummary {
            mode,
            connections: gens.iter().map(|g| g.cfg.connections).sum(),
            open: gens.iter().map(|g| g.live as u64).sum(),
            connects: sum(|s| s.connects.get()),
            opened: sum(|s| s.opened.get()),
            failed: sum(|s| s.failed.get()),
            closed: sum(|s| s.closed.get()),
            reset: sum(|s| s.reset.get()),
            errors: sum(|s| s.errors.get()),
            transactions: sum(|s| s.transactions.get()),
            time_to_full_s: if mode == Mode::Cps || gens.is_empty() {
                None
            } else {
                full
            },
            tps,
            cps,
            latency: Percentiles::of(&lat),
            handshake: Percentiles::of(&hs),
            per_core,
        }
    }
}

/// Percentiles of a histogram, for tables and JSON.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Percentiles {
    /// Samples.
    pub count: u64,
    /// Mean (µs).
    pub mean_us: f64,
    /// Median (µs).
    pub p50_us: u64,
    /// 90th percentile (µs).
    pub p90_us: u64,
    /// 99th percentile (µs).
    pub p99_us: u64,
    /// 99.9th percentile (µs).
    pub p999_us: u64,
    /// Maximum (µs).
    pub max_us: u64,
}

impl Percentiles {
    /// Reads `h`.
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            count: h.len(),
            mean_us: h.mean(),
            p50_us: h.value_at_quantile(0.5),
            p90_us: h.value_at_quantile(0.9),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
        }
    }
}

/// An empty histogram with the generator's bounds (to merge cores into).
pub fn empty_histogram() -> Histogram<u64> {
    histogram()
}

/// Watches a run's progress counter (transactions, connections opened,
/// responses: anything that only grows while the run does work) and says
/// when it stood still for a whole window: a stall. Sans-I/O: the caller
/// samples the counter at times of its choosing, in seconds.
#[derive(Debug, Clone)]
pub struct StallWatch {
    window: f64,
    last: Option<(f64, u64)>,
    stalls: Vec<Stall>,
}

/// A window in which the watched counter did not move.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Stall {
    /// When the counter last moved (s).
    pub from_s: f64,
    /// When the stall was noticed (s): at least one window later.
    pub to_s: f64,
    /// The counter's value throughout.
    pub at: u64,
}

impl StallWatch {
    /// A watch that reports a stall once the counter has not moved for
    /// `window_s` seconds.
    pub fn new(window_s: f64) -> StallWatch {
        StallWatch {
            window: window_s,
            last: None,
            stalls: Vec::new(),
        }
    }

    /// Takes a sample; returns true if this sample ends a stall (the
    /// counter stood still since it last moved, a whole window ago). A
    /// stall is reported once; the watch then waits for the counter to
    /// move again.
    pub fn sample(&mut self, t: f64, progress: u64) -> bool {
        match self.last {
            Some((_, v)) if progress != v => {
                self.last = Some((t, progress));
                false
            }
            Some((since, v)) if since.is_finite() && t - since >= self.window => {
                self.stalls.push(Stall {
                    from_s: since,
                    to_s: t,
                    at: v,
                });
                // Reported: no second stall until the counter moves.
                self.last = Some((f64::INFINITY, v));
                true
            }
            Some(_) => false,
            None => {
                self.last = Some((t, progress));
                false
            }
        }
    }

    /// Forgets the last sample: the next one starts afresh (e.g. between
    /// the ramp and the measured window).
    pub fn restart(&mut self) {
        self.last = None;
    }

    /// Every stall seen so far.
    pub fn stalls(&self) -> &[Stall] {
        &self.stalls
    }
}
