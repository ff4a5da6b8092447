//! `bench scale`: tcp-rr on our stack over 1 and 2 cores, at the same
//! total load.

use std::time::Duration;

use bypass::Result;

use super::super::chart;
use super::ours::{run_ours, Placement, ServerKind};
use super::report::{emit, fmt_ratio, machine, ratio};
use super::rr::ours_side;
use super::{load_args, load_config, TcpBenchArgs};
use crate::cli::loadgen::ModeArg;

pub fn scale(a: TcpBenchArgs) -> Result<()> {
    let (dur, ramp) = a.secs()?;
    let tcp = a.tcp_opts(4096)?;
    let n = a.points(&[64])?[0];
    a.say(&format!(
        "scale: tcp-rr, {n} connections in total, {} B, on the userspace stack over mem wires; machine: {}. \
         There are only 2 cores, so: \"1 core\" runs one server and one client in one thread; \
         \"1 per side\" is the tcp-rr layout (server core {}, client core {}); \
         \"2 per side\" runs two independent wires, each core running one server and one client \
         (both sides share the 2 cores). Baseline: the 1-core figure of this run.",
        a.size,
        machine(),
        a.server_core,
        a.client_core
    ));
    let la = load_args(ModeArg::Rr, n, a.size, a.pipeline.unwrap_or(1));
    let mut rows = Vec::new();
    let layouts: [(&str, Placement, usize); 3] = [
        ("1 core", Placement::pairs(&[a.server_core]), 1),
        (
            "1 per side",
            Placement::split(a.server_core, a.client_core),
            1,
        ),
        (
            "2 per side",
            Placement::pairs(&[a.server_core, a.client_core]),
            2,
        ),
    ];
    for (name, place, wires) in layouts {
        let mut la = la.clone();
        la.connections = (n / wires).max(1);
        let r = run_ours(
            &place,
            ServerKind::Echo,
            &load_config(&la)?,
            tcp,
            dur,
            ramp,
            Duration::from_micros(a.idle_sleep_us),
        )?;
        rows.push((name, ours_side(r)));
    }
    let base = rows[0].1.rate();
    a.say(&format!(
        "{:>12} {:>12} {:>10} {:>16} {:>6}",
        "layout", "tx/s", "vs 1 core", "p50/p99 us", "wait"
    ));
    let mut json_rows = Vec::new();
    for (name, side) in rows.iter() {
        let (s, wait) = (&side.summary, side.cpu_wait_share);
        let r = if side.invalid.is_none() && rows[0].1.invalid.is_none() {
            ratio(s.tps, base)
        } else {
            None
        };
        a.say(&format!(
            "{:>12} {:>12.0} {:>10} {:>16} {:>5.0}%",
            name,
            s.tps,
            if r.is_none() {
                "INVALID".to_string()
            } else {
                fmt_ratio(r)
            },
            format!("{}/{}", s.latency.p50_us, s.latency.p99_us),
            wait * 100.0
        ));
        if let Some(w) = &side.invalid {
            a.say(&format!("{:>12} no ratio: {w}", ""));
        }
        json_rows.push(serde_json::json!({ "layout": name, "side": side, "ratio_vs_1_core": r }));
    }
    if let Some(file) = &a.plot {
        chart::bar_chart(
            file.as_ref(),
            "scale: tcp-rr transactions/s",
            "transactions/s",
            &rows
                .iter()
                .map(|(n, s)| (n.to_string(), s.rate()))
                .collect::<Vec<_>>(),
        )?;
        a.say(&format!("chart written to {file}"));
    }
    emit(&a, "scale", serde_json::json!({ "rows": json_rows }));
    Ok(())
}
