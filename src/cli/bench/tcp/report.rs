//! Reporting of the TCP scenarios: what each side measured at one point,
//! whether a ratio may be printed at all, the ratio against the best
//! kernel baseline, the table, the JSON and the chart.
//!
//! A ratio is only a figure when both sides ran clean: any error (failed
//! or reset connection, protocol error, socket error), any stall (a whole
//! window without progress) or a ramp cut short on either side makes it
//! `INVALID` in the table and `null` in the JSON, with the reason next to
//! it.

use std::collections::BTreeMap;

use serde::Serialize;

use bypass::app::loadgen::{LoadSummary, Mode, Stall};
use bypass::runtime;
use bypass::Result;

use super::super::chart;
use super::TcpBenchArgs;

/// What one side (ours, or one kernel baseline) measured at one point.
#[derive(Debug, Clone, Serialize)]
pub struct SideRun {
    /// The load generator's summary.
    pub summary: LoadSummary,
    /// Errors of any kind: protocol errors, failed connects, resets (not
    /// counted in cps, whose connections end with RST by design), socket
    /// errors of either process, server-side errors.
    pub errors: u64,
    /// Frames or segments dropped: ours, by either stack (full ring, no
    /// buffer, malformed); the kernel, TCP retransmissions and listen-queue
    /// drops over the run (system-wide counters: other traffic adds to
    /// them).
    pub drops: u64,
    /// Share of the time the side's threads were runnable but waiting for
    /// a CPU (preempted by other processes): the figures are only as good
    /// as this is small.
    pub cpu_wait_share: f64,
    /// Windows without progress.
    pub stalls: Vec<Stall>,
    /// Why this side's figure is not one to compare (None: it is).
    pub invalid: Option<String>,
    /// With `--rounds` above 1: every round's rate, in the order run (this
    /// side's figures are those of the median round).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub round_rates: Vec<f64>,
    /// The server and client cores' round trip (ns) just before and just
    /// after this side ran (see `bench::placement`), where measured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub core_round_trip_ns: Option<[f64; 2]>,
}

impl SideRun {
    /// Assembles a side; works out whether it is valid.
    pub fn new(
        summary: LoadSummary,
        side_errors: u64,
        drops: u64,
        cpu_wait_share: f64,
        stalls: Vec<Stall>,
    ) -> SideRun {
        let resets = if summary.mode == Mode::Cps {
            0
        } else {
            summary.reset
        };
        let errors = summary.errors + summary.failed + resets + side_errors;
        let mut why = Vec::new();
        if errors > 0 {
            why.push(format!("{errors} errors"));
        }
        if !stalls.is_empty() {
            why.push(format!(
                "stalled {} time(s) (first at {:.1} s)",
                stalls.len(),
                stalls[0].from_s
            ));
        }
        if summary.mode != Mode::Cps && summary.time_to_full_s.is_none() {
            why.push(format!(
                "only {} of {} connections opened before the ramp timeout",
                summary.open, summary.connections
            ));
        }
        if summary.latency.count == 0 {
            why.push("no transaction measured".into());
        }
        SideRun {
            summary,
            errors,
            drops,
            cpu_wait_share,
            stalls,
            invalid: (!why.is_empty()).then(|| why.join("; ")),
            round_rates: Vec::new(),
            core_round_trip_ns: None,
        }
    }

    /// The median of several rounds of the same side (the lower median
    /// for an even count), carrying every round's rate. Any invalid round
    /// makes the result invalid: a median must not hide a broken round.
    pub fn median(mut runs: Vec<SideRun>) -> Option<SideRun> {
        let rates: Vec<f64> = runs.iter().map(SideRun::rate).collect();
        let bad: Vec<String> = runs
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.invalid.as_ref().map(|w| format!("round {}: {w}", i + 1)))
            .collect();
        runs.sort_by(|a, b| a.rate().total_cmp(&b.rate()));
        let k = runs.len().checked_sub(1)? / 2;
        let mut m = runs.swap_remove(k);
        if rates.len() > 1 {
            m.round_rates = rates;
        }
        if !bad.is_empty() {
            m.invalid = Some(bad.join("; "));
        }
        Some(m)
    }

    /// Transactions (cps: connections) per second.
    pub fn rate(&self) -> f64 {
        self.summary.tps
    }
}

pub fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0 && a.is_finite()).then(|| a / b)
}

pub fn fmt_ratio(r: Option<f64>) -> String {
    r.map_or("n/a".into(), |r| format!("{r:.2}x"))
}

/// One point of a sweep: ours against every kernel baseline.
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    /// Connections.
    pub connections: usize,
    /// Ours.
    pub ours: SideRun,
    /// Each baseline that ran, by name.
    pub baselines: BTreeMap<String, SideRun>,
    /// Each baseline that did not run, and why.
    pub not_run: BTreeMap<String, String>,
    /// The baseline with the highest rate.
    pub best_kernel: Option<String>,
    /// ours / best baseline, transactions (cps: connections) per second;
    /// None when invalid.
    pub vs_best_kernel: Option<f64>,
    /// best baseline's p99 / ours (above 1: ours is faster); None when
    /// invalid.
    pub p99_vs_best_kernel: Option<f64>,
    /// Why there is no ratio (errors, stalls, a partial ramp on either
    /// side, or no baseline).
    pub invalid: Option<String>,
}

impl Point {
    /// Compares ours with the best baseline; the ratio is invalid if any
    /// side that ran is.
    pub fn new(
        connections: usize,
        ours: SideRun,
        baselines: BTreeMap<String, SideRun>,
        not_run: BTreeMap<String, String>,
    ) -> Point {
        let best = baselines
            .iter()
            .max_by(|a, b| a.1.rate().total_cmp(&b.1.rate()))
            .map(|(n, s)| (n.clone(), s));
        let mut why = Vec::new();
        if let Some(w) = &ours.invalid {
            why.push(format!("ours: {w}"));
        }
        for (n, s) in &baselines {
            if let Some(w) = &s.invalid {
                why.push(format!("{n}: {w}"));
            }
        }
        if best.is_none() {
            why.push("no kernel baseline ran".into());
        }
        let invalid = (!why.is_empty()).then(|| why.join("; "));
        let (vs, p99) = match (&best, &invalid) {
            (Some((_, b)), None) => (
                ratio(ours.rate(), b.rate()),
                ratio(
                    b.summary.latency.p99_us as f64,
                    ours.summary.latency.p99_us.max(1) as f64,
                ),
            ),
            _ => (None, None),
        };
        Point {
            connections,
            best_kernel: best.map(|b| b.0),
            ours,
            baselines,
            not_run,
            vs_best_kernel: vs,
            p99_vs_best_kernel: p99,
            invalid,
        }
    }

    /// The ratio for the table.
    pub fn ratio_cell(&self) -> String {
        match self.vs_best_kernel {
            Some(r) => format!("{r:.2}x"),
            None if self.invalid.is_some() => "INVALID".into(),
            None => "n/a".into(),
        }
    }
}

fn side_row(a: &TcpBenchArgs, conns: &str, name: &str, s: &SideRun, vs: &str) {
    a.say(&format!(
        "{:>8} {:>24} {:>12.0} {:>14} {:>7} {:>7} {:>5.0}% {:>9}",
        conns,
        name,
        s.rate(),
        format!("{}/{}", s.summary.latency.p50_us, s.summary.latency.p99_us),
        s.errors,
        s.drops,
        s.cpu_wait_share * 100.0,
        vs
    ));
}

/// Prints a sweep: one row per side and point, the ratio against the best
/// baseline on ours' row.
pub fn print_points(a: &TcpBenchArgs, title: &str, unit: &str, pts: &[Point]) {
    a.say(title);
    a.say(
        "(errors: failed/reset connections, protocol and socket errors; drops: ours, frames dropped by \
         either stack; kernel, TCP retransmits and listen drops system-wide; wait: share of the time the \
         side's threads were runnable but preempted by other processes; vs best: ours against the best \
         kernel baseline, INVALID when either side had errors, stalls or a partial ramp)",
    );
    a.say(&format!(
        "{:>8} {:>24} {:>12} {:>14} {:>7} {:>7} {:>6} {:>9}",
        "conns", "side", unit, "p50/p99 us", "errors", "drops", "wait", "vs best"
    ));
    for p in pts {
        let best = p.best_kernel.as_deref().unwrap_or("-");
        side_row(
            a,
            &p.connections.to_string(),
            "ours",
            &p.ours,
            &p.ratio_cell(),
        );
        if let Some([before, after]) = p.ours.core_round_trip_ns {
            a.say(&format!(
                "{:>8} {:>24} cores {} and {}: {before:.0} ns round trip before, {after:.0} ns after",
                "", "", a.server_core, a.client_core
            ));
        }
        for (n, s) in &p.baselines {
            side_row(a, "", n, s, if n == best { "(best)" } else { "" });
        }
        let rounds: Vec<String> = std::iter::once(("ours", &p.ours))
            .chain(p.baselines.iter().map(|(n, s)| (n.as_str(), s)))
            .filter(|(_, s)| !s.round_rates.is_empty())
            .map(|(n, s)| {
                let r: Vec<String> = s.round_rates.iter().map(|r| format!("{r:.0}")).collect();
                format!("{n} {}", r.join("/"))
            })
            .collect();
        if !rounds.is_empty() {
            a.say(&format!(
                "{:>8} rounds (median shown): {}",
                "",
                rounds.join("; ")
            ));
        }
        for (n, why) in &p.not_run {
            a.say(&format!("{:>8} {:>24} not run: {why}", "", n));
        }
        if let Some(w) = &p.invalid {
            a.say(&format!("{:>8} no ratio: {w}", ""));
        }
    }
}

/// Prints the JSON document (with `--json`).
pub fn emit(a: &TcpBenchArgs, scenario: &str, doc: serde_json::Value) {
    if a.json {
        let mut d = doc;
        d["scenario"] = scenario.into();
        d["machine"] = machine().into();
        crate::cli::outln!("{d}");
    }
}

/// CPU model and count, for the record.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpu
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("unknown CPU")
        .trim()
        .to_string();
    format!("{model}, {} CPUs", runtime::available_cores().len().max(1))
}

/// Writes the sweep's chart (with `--plot`): one line per side.
pub fn plot(a: &TcpBenchArgs, title: &str, ylabel: &str, pts: &[Point]) -> Result<()> {
    let Some(file) = &a.plot else { return Ok(()) };
    let mut series: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for p in pts {
        let x = p.connections as f64;
        series
            .entry("bypass (userspace, mem wire)".into())
            .or_default()
            .push((x, p.ours.rate()));
        for (n, s) in &p.baselines {
            series
                .entry(format!("{n} (loopback)"))
                .or_default()
                .push((x, s.rate()));
        }
    }
    let lines: Vec<chart::Series> = series.into_iter().collect();
    chart::line_chart(file.as_ref(), title, "connections", ylabel, &lines)?;
    a.say(&format!("chart written to {file}"));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bypass::app::loadgen::Percentiles;

    fn summary(tps: f64, errors: u64) -> LoadSummary {
        LoadSummary {
            mode: Mode::Rr,
            connections: 1,
            open: 1,
            connects: 1,
            opened: 1,
            failed: 0,
            closed: 0,
            reset: 0,
            errors,
            transactions: 100,
            time_to_full_s: Some(0.1),
            tps,
            cps: 0.0,
            latency: Percentiles {
                count: 100,
                p99_us: 10,
                ..Default::default()
            },
            handshake: Percentiles::default(),
            per_core: Vec::new(),
        }
    }

    fn side(tps: f64, errors: u64) -> SideRun {
        SideRun::new(summary(tps, errors), 0, 0, 0.0, Vec::new())
    }

    #[test]
    fn ratio_is_against_the_best_baseline() {
        let mut b = BTreeMap::new();
        b.insert("kernel-epoll".to_string(), side(100.0, 0));
        b.insert("kernel-busypoll".to_string(), side(200.0, 0));
        let p = Point::new(64, side(1000.0, 0), b, BTreeMap::new());
        assert_eq!(p.best_kernel.as_deref(), Some("kernel-busypoll"));
        assert_eq!(p.vs_best_kernel, Some(5.0));
        assert!(p.invalid.is_none());
    }

    #[test]
    fn errors_on_either_side_make_the_ratio_invalid() {
        let mut b = BTreeMap::new();
        b.insert("kernel-epoll".to_string(), side(100.0, 3));
        let p = Point::new(64, side(1000.0, 0), b.clone(), BTreeMap::new());
        assert_eq!(p.vs_best_kernel, None);
        assert_eq!(p.ratio_cell(), "INVALID");
        assert!(p.invalid.unwrap().contains("kernel-epoll: 3 errors"));
        b.insert("kernel-epoll".to_string(), side(100.0, 0));
        let p = Point::new(64, side(1000.0, 1), b, BTreeMap::new());
        assert_eq!(p.ratio_cell(), "INVALID");
        assert!(p.invalid.unwrap().contains("ours: 1 errors"));
    }

    #[test]
    fn a_stall_or_no_baseline_is_invalid() {
        let mut s = summary(100.0, 0);
        s.time_to_full_s = None;
        let stalled = SideRun::new(
            summary(100.0, 0),
            0,
            0,
            0.0,
            vec![Stall {
                from_s: 1.0,
                to_s: 2.0,
                at: 5,
            }],
        );
        assert!(stalled.invalid.unwrap().contains("stalled"));
        assert!(SideRun::new(s, 0, 0, 0.0, Vec::new())
            .invalid
            .unwrap()
            .contains("ramp timeout"));
        let p = Point::new(1, side(1.0, 0), BTreeMap::new(), BTreeMap::new());
        assert_eq!(p.ratio_cell(), "INVALID");
    }
}
