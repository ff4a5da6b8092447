//! `bench tcp-rr` and `bench cps`: sweeps over connection counts, ours
//! against every kernel baseline at each point.

use std::collections::BTreeMap;

use bypass::Result;

use super::kernel::ServerProc;
use super::ours::{OursRun, ServerKind};
use super::report::{emit, machine, plot, print_points, Point, SideRun};
use super::{load_args, run_baselines, run_ours_at, TcpBenchArgs};
use crate::cli::bench::placement::{core_round_trip_ns, memory_line_ns, CHAINS};
use crate::cli::loadgen::ModeArg;

/// Ours' side of a point.
pub(super) fn ours_side(r: OursRun) -> SideRun {
    SideRun::new(r.load, 0, r.drops, r.cpu_wait_share, r.stalls)
}

/// tcp-rr or cps: a sweep over connection counts.
fn sweep(a: &TcpBenchArgs, mode: ModeArg) -> Result<Vec<Point>> {
    a.check_family()?;
    let (dur, ramp) = a.secs()?;
    let default: &[usize] = if mode == ModeArg::Cps {
        &[1, 64]
    } else {
        &[1, 64, 1024, 16384]
    };
    let tcp = a.tcp_opts(4096)?;
    let max_secs = (dur + ramp).as_secs_f64() + 30.0;
    let points = a.points(default)?;
    // Per point: ours' rounds, each baseline's rounds, and why some did
    // not run. Rounds go over the whole sweep, so a slow minute of the
    // machine lands on every point rather than on one.
    type Runs = (
        Vec<SideRun>,
        BTreeMap<String, Vec<SideRun>>,
        BTreeMap<String, String>,
    );
    let mut runs: Vec<Runs> = points.iter().map(|_| Default::default()).collect();
    for round in 1..=a.rounds {
        if a.rounds > 1 {
            a.say(&format!("round {round} of {}", a.rounds));
        }
        for (i, &n) in points.iter().enumerate() {
            let la = load_args(mode, n, a.size, a.pipeline.unwrap_or(1));
            let before = core_round_trip_ns(a.server_core, a.client_core);
            let ours = run_ours_at(a, None, ServerKind::Echo, &la, tcp)?;
            let after = core_round_trip_ns(a.server_core, a.client_core);
            a.say(&format!("  {n} connections, {}", ours.engine_line));
            let (baselines, not_run) = run_baselines(
                a,
                n,
                &la,
                |b| ServerProc::echo(b, a.server_core, max_secs, a.loopback()),
                |b| b.label().to_string(),
            )?;
            let r = &mut runs[i];
            let mut side = ours_side(ours);
            side.core_round_trip_ns = before.zip(after).map(|(b, a)| [b, a]);
            r.0.push(side);
            for (name, side) in baselines {
                r.1.entry(name).or_default().push(side);
            }
            r.2.extend(not_run);
        }
    }
    let mut out = Vec::new();
    for (&n, (ours, baselines, not_run)) in points.iter().zip(runs) {
        let Some(ours) = SideRun::median(ours) else {
            continue;
        };
        let baselines = baselines
            .into_iter()
            .filter_map(|(name, v)| SideRun::median(v).map(|m| (name, m)))
            .collect();
        out.push(Point::new(n, ours, baselines, not_run));
    }
    Ok(out)
}

fn setup_line(a: &TcpBenchArgs, what: &str) {
    a.say(&format!(
        "{what}; IPv{}; machine: {}; server core {}, client core {}; {} s measured per point after the ramp. \
         ours: our server and loadgen on the userspace stack over a mem wire between two pinned threads (spinning); \
         kernel baselines ({}): the same apps over kernel sockets, loopback ({}), two processes on the same cores.",
        a.family,
        machine(),
        a.server_core,
        a.client_core,
        a.duration,
        a.baselines
            .iter()
            .map(|b| b.label())
            .collect::<Vec<_>>()
            .join(", "),
        a.loopback()
    ));
}

pub fn tcp_rr(a: TcpBenchArgs) -> Result<()> {
    setup_line(
        &a,
        &format!(
            "tcp-rr: closed-loop {} B request/response, pipeline {}",
            a.size,
            a.pipeline.unwrap_or(1)
        ),
    );
    let pts = sweep(&a, ModeArg::Rr)?;
    print_points(&a, "transactions per second", "tx/s", &pts);
    let targets = rr_targets(&pts);
    for t in &targets {
        a.say(t);
    }
    // With thousands of connections the rate follows memory (each
    // transaction waits on lines of its connection's state and frames
    // that have left the caches): say what a line costs on this machine.
    let memory = pts
        .iter()
        .any(|p| p.connections >= 4096)
        .then(|| memory_line_ns(a.server_core))
        .flatten();
    if let Some(m) = memory {
        a.say(&format!(
            "memory beyond the caches, core {}: {:.0} ns a line alone, {:.1} ns a line with {CHAINS} misses in flight \
             (the least a transaction can pay per line of state or frame that left the caches; see docs/tcp.md)",
            a.server_core, m.alone, m.parallel
        ));
    }
    plot(&a, "tcp-rr: transactions/s", "transactions/s", &pts)?;
    emit(
        &a,
        "tcp-rr",
        serde_json::json!({
            "points": pts,
            "targets": targets,
            "size": a.size,
            "family": a.family,
            "memory_line_ns": memory.map(|m| serde_json::json!({ "alone": m.alone, "parallel": m.parallel, "chains": CHAINS })),
        }),
    );
    Ok(())
}

fn met(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "MISSED"
    }
}

fn rr_targets(pts: &[Point]) -> Vec<String> {
    let mut out = Vec::new();
    let at = |n: usize| pts.iter().find(|p| p.connections == n);
    if let Some(p) = at(64) {
        out.push(match p.vs_best_kernel {
            Some(r) => format!(
                "target tx/s at 64 conns >= 10x the best kernel baseline ({}): {r:.2}x ({})",
                p.best_kernel.as_deref().unwrap_or("-"),
                met(r >= 10.0)
            ),
            None => {
                "target tx/s at 64 conns >= 10x the best kernel baseline: no valid ratio".into()
            }
        });
    }
    if let Some(p) = at(1) {
        if let (Some(r), Some(b)) = (p.p99_vs_best_kernel, &p.best_kernel) {
            out.push(format!(
                "target p99 at 1 conn <= 1/3 of the best kernel baseline's ({b}): kernel/ours {r:.2} ({})",
                met(r >= 3.0)
            ));
        }
    }
    if let (Some(a), Some(b)) = (at(64), at(16384)) {
        if a.ours.invalid.is_none() && b.ours.invalid.is_none() && a.ours.rate() > 0.0 {
            let r = b.ours.rate() / a.ours.rate();
            // The 64-connection rate follows the cores' placement (see
            // `bench::placement`); the 16,384-connection one hardly does.
            let rt = |p: &Point| {
                p.ours
                    .core_round_trip_ns
                    .map_or("-".to_string(), |[x, y]| format!("{x:.0}/{y:.0}"))
            };
            out.push(format!(
                "target tx/s at 16384 conns >= 0.8x the figure at 64: {r:.2}x ({}; cores' round trip before/after, ns: {} at 64, {} at 16384)",
                met(r >= 0.8),
                rt(a),
                rt(b)
            ));
        }
    }
    out
}

pub fn cps(a: TcpBenchArgs) -> Result<()> {
    setup_line(
        &a,
        &format!(
            "cps: connect, one {} B request/response, close with RST (both sides, so neither keeps TIME-WAIT), N in flight",
            a.size
        ),
    );
    let pts = sweep(&a, ModeArg::Cps)?;
    print_points(
        &a,
        "connections set up and torn down per second",
        "conn/s",
        &pts,
    );
    let mut targets = Vec::new();
    if let Some(p) = pts.last() {
        targets.push(match p.vs_best_kernel {
            Some(r) => format!(
                "target cps >= 10x the best kernel baseline ({}): {r:.2}x ({})",
                p.best_kernel.as_deref().unwrap_or("-"),
                met(r >= 10.0)
            ),
            None => "target cps >= 10x the best kernel baseline: no valid ratio".into(),
        });
    }
    for t in &targets {
        a.say(t);
    }
    plot(&a, "cps: connections/s", "connections/s", &pts)?;
    emit(
        &a,
        "cps",
        serde_json::json!({ "points": pts, "targets": targets, "family": a.family }),
    );
    Ok(())
}
