//! The `bypass` tool with DPDK ports: `l2fwd --port dpdk:...` forwards and
//! reports JSON, bad EAL arguments get one clear sentence, and `bench fwd`
//! measures bypass against dpdk-testpmd. Each run is its own process.
#![cfg(feature = "dpdk")]

mod common;

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_bypass");

fn run(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN).args(args).output().expect("run bypass");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn last_json(stdout: &str) -> serde_json::Value {
    serde_json::from_str(stdout.lines().last().expect("a JSON line")).expect("JSON")
}

#[test]
#[ignore = "needs root"]
fn l2fwd_macswap_over_net_null() {
    common::require_root("l2fwd_macswap_over_net_null");
    let prefix = format!("--file-prefix=bpt-{}-cli", std::process::id());
    let (ok, out, err) = run(&[
        "l2fwd",
        "--port",
        "dpdk:net_null0,size=128;rxd=512;txd=512",
        "--duration",
        "0.5",
        "--stats-interval",
        "0",
        "--json",
        &format!("--eal=--no-huge -m 256 {prefix}"),
    ]);
    let _ = std::fs::remove_dir_all(bypass::port::dpdk::eal::runtime_dir_for(&format!(
        "bpt-{}-cli",
        std::process::id()
    )));
    assert!(ok, "{out}\n{err}");
    let v = last_json(&out);
    let rx = v["rx_packets"].as_u64().unwrap();
    assert!(rx > 1000, "{v}");
    assert_eq!(v["rx_bytes"].as_u64().unwrap(), rx * 128, "size=128 devarg");
    assert_eq!(
        v["tx_packets"].as_u64().unwrap() + v["drops"].as_u64().unwrap(),
        rx
    );
    let port = &v["ports"][0];
    assert_eq!(port["info"]["kind"], "dpdk");
    assert_eq!(port["pool_in_use"].as_u64(), Some(0), "{port}");
    assert_eq!(port["link"]["rx_packets"].as_u64(), Some(rx), "{port}");
}

#[test]
#[ignore = "needs root"]
fn bad_eal_arguments_are_one_sentence() {
    common::require_root("bad_eal_arguments_are_one_sentence");
    let (ok, _out, err) = run(&[
        "l2fwd",
        "--port",
        "dpdk:net_null0",
        "--duration",
        "0.1",
        "--eal=--no-huge -m 128 --definitely-not-an-eal-flag",
    ]);
    assert!(!ok);
    let line = err
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line: {err}"));
    assert!(line.contains("EAL initialisation failed"), "{line}");

    let (ok, _out, err) = run(&[
        "l2fwd",
        "--port",
        "dpdk:net_null0;colour=blue",
        "--eal=--no-huge -m 128",
    ]);
    assert!(!ok);
    assert!(
        err.contains("unknown option `colour` for a dpdk port"),
        "{err}"
    );
}

#[test]
#[ignore = "needs root"]
fn bench_fwd_reports_a_ratio_against_testpmd() {
    common::require_root("bench_fwd_reports_a_ratio_against_testpmd");
    let (ok, out, err) = run(&[
        "bench",
        "fwd",
        "--duration",
        "3",
        "--json",
        "--eal=--no-huge -m 256",
    ]);
    assert!(ok, "{out}\n{err}");
    let v = last_json(&out);
    // Both sides measured over whole seconds after their first (each by
    // its own clock), not over windows of different kinds.
    let mode = &v["modes"][0];
    for side in ["bypass", "baseline"] {
        let secs = mode[side][0]["secs"].as_f64().unwrap();
        assert!((0.9..=2.1).contains(&secs), "{side}: {secs} s in {v}");
    }
    let ours = v["bypass_mpps"].as_f64().unwrap();
    let theirs = v["testpmd_mpps"].as_f64().unwrap();
    assert!(ours > 0.1 && theirs > 0.1, "{v}");
    let ratio = v["ratio"].as_f64().unwrap();
    assert!((ratio - ours / theirs).abs() < 1e-9, "{v}");
}
