//! `bypass bench conns` run for real at a small scale: 10,000 pairs on the
//! bypass engine over the in-process wire, ramped, held idle, loaded in
//! turns, with bulk transfers first; and a sweep of two points, each in a
//! process of its own, charted. (The bench pins its two threads to cores 0
//! and 1.)

use std::process::Command;

use serde_json::Value;

fn conns(args: &[&str]) -> Value {
    let o = Command::new(env!("CARGO_BIN_EXE_bypass"))
        .args(["bench", "conns", "--json", "--no-kernel"])
        .args(args)
        .env("BYPASS_TCP_ENGINE", "bypass")
        .output()
        .expect("run bypass");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "bench conns failed: {err}");
    let out = String::from_utf8_lossy(&o.stdout);
    let last = out.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("not JSON ({e}): {out}\n{err}"))
}

fn u(v: &Value, k: &str) -> u64 {
    v[k].as_u64()
        .unwrap_or_else(|| panic!("{k} missing in {v}"))
}

fn f(v: &Value, k: &str) -> f64 {
    v[k].as_f64()
        .unwrap_or_else(|| panic!("{k} missing in {v}"))
}

#[test]
fn ten_thousand_pairs_ramp_hold_and_take_turns_without_drops() {
    let d = conns(&[
        "--connections",
        "10000",
        "--hold",
        "1",
        "--duration",
        "3",
        "--bulk",
        "0",
        "--max-inflight",
        "256",
        "--ramp-timeout",
        "60",
    ]);
    let p = &d["point"];
    assert_eq!(u(p, "open"), 10_000, "{p}");
    assert!(
        p["time_to_full_s"].as_f64().is_some(),
        "ramp timed out: {p}"
    );
    assert_eq!(u(p, "drops"), 0, "{p}");
    assert_eq!(u(p, "errors"), 0, "{p}");
    // Connections took turns: far more transactions than requests allowed
    // in flight at once (256), so every connection was served.
    assert!(u(p, "transactions") > 10_000, "{p}");
    assert!(d["ours"]["rss_idle_clean"].as_bool() == Some(true), "{d}");
    // Idle ends cost what the table slot, the map and the app state cost
    // (~850 B at this count), not the 256 KiB windows.
    let idle = f(p, "per_idle_end");
    assert!(idle > 500.0 && idle < 2048.0, "per idle end {idle}: {p}");
    assert!(f(p, "per_end_after_load") >= idle * 0.9, "{p}");
}

#[test]
fn a_bulk_transfer_on_a_busy_table_gets_a_full_window() {
    let d = conns(&[
        "--connections",
        "1000",
        "--hold",
        "0.5",
        "--duration",
        "4",
        "--max-inflight",
        "64",
        "--bulk",
        "1",
        "--bulk-bytes",
        "4194304",
    ]);
    let p = &d["point"];
    assert_eq!(u(p, "bulk_done"), 1, "{p}");
    assert!(u(p, "max_peer_window") >= 65_536, "{p}");
    assert!(u(p, "max_in_flight") >= 65_536, "{p}");
    assert_eq!(u(p, "drops"), 0, "{p}");
}

#[test]
fn a_sweep_runs_each_point_in_its_own_process_and_charts_it() {
    let dir = std::env::temp_dir().join(format!("bypass-conns-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let svg = dir.join("sweep.svg");
    let d = conns(&[
        "--connections",
        "200,2000",
        "--hold",
        "0.5",
        "--duration",
        "1",
        "--bulk",
        "0",
        "--plot",
        svg.to_str().unwrap(),
    ]);
    let pts = d["points"].as_array().expect("points");
    assert_eq!(pts.len(), 2, "{d}");
    assert_eq!(u(&pts[0], "connections"), 200);
    assert_eq!(u(&pts[1], "open"), 2000);
    assert!(u(&pts[1], "rss_peak") > 0, "{d}");
    for file in [svg.clone(), dir.join("sweep-tps.svg")] {
        let s = std::fs::read_to_string(&file).unwrap_or_default();
        assert!(s.contains("<svg"), "no chart in {}", file.display());
    }
    let _ = std::fs::remove_dir_all(&dir);
}
