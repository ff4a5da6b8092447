//! `bench scale`: tcp-rr through the real multi-core path, on 1 core and
//! then on 2, at the same total load.
//!
//! On N cores the server is one stack sharded by RSS over N queues of the
//! mem wire, in hardware mode (the wire spreads flows by the same key and
//! table, as a NIC does), and the load generator is sharded the same way
//! on the other end: each core runs the server's shard and the client's
//! shard for the flows RSS gives it. This machine has 2 cores, so the
//! client cannot have cores of its own: each core also runs its share of
//! the client, and the output says so. The figure is `speedup`: the
//! 2-core rate over the 1-core rate, same total connections.

use bypass::Result;

use super::super::chart;
use super::ours::{Placement, ServerKind};
use super::report::{emit, fmt_ratio, machine, ratio, SideRun};
use super::rr::ours_side;
use super::{load_args, run_ours_at, TcpBenchArgs};
use crate::cli::loadgen::ModeArg;

pub fn scale(a: TcpBenchArgs) -> Result<()> {
    a.only_ipv4("scale")?;
    a.secs()?;
    let tcp = a.tcp_opts(4096)?;
    let n = a.points(&[64])?[0];
    let two = [a.server_core, a.client_core];
    a.say(&format!(
        "scale: tcp-rr, {n} connections in total, {} B, pipeline {}, on the userspace stack over the mem wire; machine: {}.\n\
         N cores: the server is one stack sharded by RSS over N queues (hardware mode: the wire spreads flows \
         by Toeplitz over the 4-tuple, nothing is steered between cores), and the load generator is sharded \
         the same way on the other end, {n}/N connections per core. With only 2 cores, each core runs its \
         server shard AND its client shard (the client shares the server's cores). \
         1 core: core {}; 2 cores: cores {} and {}.",
        a.size,
        a.pipeline.unwrap_or(1),
        machine(),
        two[0],
        two[0],
        two[1],
    ));
    if two[0] == two[1] {
        return Err(bypass::Error::Config(
            "scale needs two different cores: --server-core and --client-core".into(),
        ));
    }
    let mut rows: Vec<(String, SideRun)> = Vec::new();
    for cores in [&two[..1], &two[..]] {
        let mut la = load_args(ModeArg::Rr, n, a.size, a.pipeline.unwrap_or(1));
        la.connections = (n / cores.len()).max(1);
        let r = run_ours_at(
            &a,
            Some(Placement::sharded(cores)),
            ServerKind::Echo,
            &la,
            tcp,
        )?;
        let name = if cores.len() == 1 {
            "1 core".to_string()
        } else {
            format!("{} cores", cores.len())
        };
        rows.push((name, ours_side(r)));
    }
    let (one, two_cores) = (&rows[0].1, &rows[1].1);
    let valid = one.invalid.is_none() && two_cores.invalid.is_none();
    let speedup = if valid {
        ratio(two_cores.rate(), one.rate())
    } else {
        None
    };
    a.say(&format!(
        "{:>8} {:>12} {:>16} {:>7} {:>7} {:>6}",
        "cores", "tx/s", "p50/p99 us", "errors", "drops", "wait"
    ));
    for (name, s) in &rows {
        a.say(&format!(
            "{:>8} {:>12.0} {:>16} {:>7} {:>7} {:>5.0}%",
            name,
            s.rate(),
            format!("{}/{}", s.summary.latency.p50_us, s.summary.latency.p99_us),
            s.errors,
            s.drops,
            s.cpu_wait_share * 100.0
        ));
        if let Some(w) = &s.invalid {
            a.say(&format!("{:>8} INVALID: {w}", ""));
        }
    }
    a.say(&match speedup {
        Some(r) => format!(
            "speedup 2 cores / 1 core: {} (target >= 1.8x: {})",
            fmt_ratio(Some(r)),
            if r >= 1.8 { "met" } else { "MISSED" }
        ),
        None => {
            "speedup 2 cores / 1 core: INVALID (a run had errors, stalls or a partial ramp)".into()
        }
    });
    if let Some(file) = &a.plot {
        chart::bar_chart(
            file.as_ref(),
            "scale: tcp-rr transactions/s, sharded by RSS",
            "transactions/s",
            &rows
                .iter()
                .map(|(n, s)| (n.clone(), s.rate()))
                .collect::<Vec<_>>(),
        )?;
        a.say(&format!("chart written to {file}"));
    }
    let json_rows: Vec<_> = rows
        .iter()
        .map(|(name, side)| serde_json::json!({ "layout": name, "side": side }))
        .collect();
    emit(
        &a,
        "scale",
        serde_json::json!({
            "connections": n,
            "rows": json_rows,
            "speedup": speedup,
            "client_shares_server_cores": true,
        }),
    );
    Ok(())
}
