//! `bypass loadgen` against `bypass echo` and `bypass http` over TAP, in a
//! private network namespace whose kernel routes between the two TAPs; and
//! short smoke runs of the `bypass bench` TCP scenarios (shape only: they
//! never assert a speed).

mod common;

use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_bypass");

/// Kills (by PID) and reaps the children left when a test fails.
struct Kids(Vec<Child>);

impl Drop for Kids {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn spawn(args: &[&str]) -> Child {
    Command::new(BIN)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn bypass")
}

fn wait_tap(tap: &str) {
    for _ in 0..100 {
        if std::fs::read_to_string("/proc/thread-self/net/dev")
            .unwrap()
            .contains(&format!("{tap}:"))
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("TAP {tap} never appeared");
}

fn json_of(out: &Output) -> serde_json::Value {
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {text}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// A server on TAP `bpl0` (10.45.1.2, kernel 10.45.1.1) on core 0 and the
/// load generator on TAP `bpl1` (10.45.2.2 via 10.45.2.1) on core 1; the
/// kernel forwards.
fn server_and_loadgen(server: &[&str], port: u16, load: &[&str]) -> serde_json::Value {
    server_and_loadgen_on(server, "0", port, load, "1")
}

/// [`server_and_loadgen_on`] with the load generator on IPv6 as well: the
/// server is dual-stack (10.45.1.2 and fd00:45:1::2 behind the kernel's
/// fd00:45:1::1), the generator has fd00:45:2::2 only (via fd00:45:2::1)
/// and its target is the server's IPv6 address: the kernel routes IPv6.
fn server_and_loadgen_v6(server: &[&str], port: u16, load: &[&str]) -> serde_json::Value {
    run_server_and_loadgen(server, "0", port, load, "1", true)
}

/// [`server_and_loadgen`] with each side on `cores` (one TAP queue per
/// core).
fn server_and_loadgen_on(
    server: &[&str],
    server_cores: &str,
    port: u16,
    load: &[&str],
    load_cores: &str,
) -> serde_json::Value {
    run_server_and_loadgen(server, server_cores, port, load, load_cores, false)
}

fn run_server_and_loadgen(
    server: &[&str],
    server_cores: &str,
    port: u16,
    load: &[&str],
    load_cores: &str,
    v6: bool,
) -> serde_json::Value {
    common::private_netns();
    if v6 {
        // The kernel routes at once: no duplicate address detection on
        // the taps about to appear (their link-local addresses would be
        // unusable, and neighbour discovery through them delayed, for a
        // second or two).
        common::sh(
            "sysctl -qw net.ipv6.conf.all.disable_ipv6=0 net.ipv6.conf.default.accept_dad=0 \
             net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.all.forwarding=1",
        );
    }
    let queues = |cores: &str| cores.split(',').count();
    let srv_port = format!("tap:bpl0,queues={}", queues(server_cores));
    let cli_port = format!("tap:bpl1,queues={}", queues(load_cores));
    let mut args = vec!["--port", &srv_port, "--ip", "10.45.1.2/24"];
    if v6 {
        args.extend_from_slice(&["--ip", "fd00:45:1::2/64", "--gateway6", "fd00:45:1::1"]);
    }
    args.extend_from_slice(&["--gateway", "10.45.1.1", "--duration", "8"]);
    args.extend_from_slice(&["--idle-sleep-us", "50", "--cores", server_cores, "--json"]);
    let mut all: Vec<&str> = server.to_vec();
    all.extend_from_slice(&args);
    let mut kids = Kids(vec![spawn(&all)]);
    wait_tap("bpl0");
    if v6 {
        common::sh("ip -6 addr add fd00:45:1::1/64 dev bpl0 nodad");
    } else {
        common::sh(
            "sysctl -qw net.ipv6.conf.all.disable_ipv6=1; sysctl -qw net.ipv4.ip_forward=1; \
             ip addr add 10.45.1.1/24 dev bpl0",
        );
    }
    let target = if v6 {
        format!("[fd00:45:1::2]:{port}")
    } else {
        format!("10.45.1.2:{port}")
    };
    let mut largs = vec!["loadgen", "--port", &cli_port];
    if v6 {
        largs.extend_from_slice(&["--ip", "fd00:45:2::2/64", "--gateway6", "fd00:45:2::1"]);
    } else {
        largs.extend_from_slice(&["--ip", "10.45.2.2/24", "--gateway", "10.45.2.1"]);
    }
    largs.extend_from_slice(&["--target", &target]);
    largs.extend_from_slice(&["--duration", "3", "--idle-sleep-us", "50"]);
    largs.extend_from_slice(&["--cores", load_cores, "--json"]);
    largs.extend_from_slice(load);
    let lg = spawn(&largs);
    wait_tap("bpl1");
    common::sh(if v6 {
        "ip -6 addr add fd00:45:2::1/64 dev bpl1 nodad"
    } else {
        "ip addr add 10.45.2.1/24 dev bpl1"
    });
    let out = lg.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "loadgen failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j = json_of(&out);
    let srv = kids.0.pop().unwrap();
    let _ = Command::new("kill")
        .args(["-INT", &srv.id().to_string()])
        .status();
    let sout = srv.wait_with_output().unwrap();
    assert!(
        sout.status.success(),
        "{}",
        String::from_utf8_lossy(&sout.stderr)
    );
    j
}

#[test]
#[ignore = "needs root"]
fn loadgen_rr_against_bypass_echo_over_tap() {
    common::require_root("loadgen_rr_against_bypass_echo_over_tap");
    let j = server_and_loadgen(
        &["echo", "--listen", "7"],
        7,
        &[
            "--mode",
            "rr",
            "--connections",
            "8",
            "--size",
            "100",
            "--pipeline",
            "2",
        ],
    );
    assert_eq!(j["command"], "loadgen", "{j}");
    assert_eq!(j["mode"], "rr");
    assert_eq!(j["opened"], 8, "{j}");
    assert_eq!(j["errors"], 0, "{j}");
    assert_eq!(j["failed"], 0, "{j}");
    assert!(j["transactions"].as_u64().unwrap() > 0, "{j}");
    assert!(j["latency"]["count"].as_u64().unwrap() > 0, "{j}");
    let p = &j["latency"];
    assert!(p["p50_us"].as_u64() <= p["p99_us"].as_u64(), "{j}");
    assert!(j["time_to_full_s"].as_f64().is_some(), "{j}");
}

/// IPv6 end to end through a router: the load generator's stack finds its
/// gateway by neighbour discovery, the kernel routes, the server answers
/// through its own IPv6 gateway.
#[test]
#[ignore = "needs root"]
fn loadgen_rr_over_ipv6_against_bypass_echo_through_the_kernel_router() {
    common::require_root("loadgen_rr_over_ipv6_against_bypass_echo_through_the_kernel_router");
    let j = server_and_loadgen_v6(
        &["echo", "--listen", "7"],
        7,
        &["--mode", "rr", "--connections", "8", "--size", "100"],
    );
    assert_eq!(j["opened"], 8, "{j}");
    assert_eq!(j["errors"], 0, "{j}");
    assert_eq!(j["failed"], 0, "{j}");
    assert!(j["transactions"].as_u64().unwrap() > 0, "{j}");
}

#[test]
#[ignore = "needs root"]
fn loadgen_on_two_cores_against_http_on_two_cores_over_two_queue_taps() {
    common::require_root("loadgen_on_two_cores_against_http_on_two_cores_over_two_queue_taps");
    let j = server_and_loadgen_on(
        &["http", "--listen", "80"],
        "0,1",
        80,
        &["--mode", "http", "--connections", "16", "--pipeline", "4"],
        "0,1",
    );
    assert_eq!(j["cores"], serde_json::json!([0, 1]), "{j}");
    assert_eq!(j["opened"], 32, "16 per core: {j}");
    assert_eq!(j["errors"], 0, "{j}");
    assert_eq!(j["failed"], 0, "{j}");
    assert_eq!(j["stalls"].as_array().unwrap().len(), 0, "{j}");
    let per_core = j["per_core"].as_array().unwrap();
    assert_eq!(per_core.len(), 2, "{j}");
    for c in per_core {
        assert!(
            c["transactions"].as_u64().unwrap() > 0,
            "both cores carry load: {j}"
        );
    }
    // The merged histogram holds every core's samples.
    assert!(j["latency"]["count"].as_u64().unwrap() > 0, "{j}");
    assert!(
        j["latency"]["p50_us"].as_u64() <= j["latency"]["p99_us"].as_u64(),
        "{j}"
    );
}

#[test]
#[ignore = "needs root"]
fn loadgen_http_against_bypass_http_over_tap() {
    common::require_root("loadgen_http_against_bypass_http_over_tap");
    let j = server_and_loadgen(
        &["http", "--listen", "80"],
        80,
        &["--mode", "http", "--connections", "4", "--pipeline", "4"],
    );
    assert_eq!(j["mode"], "http");
    assert_eq!(j["opened"], 4, "{j}");
    assert_eq!(j["errors"], 0, "{j}");
    assert!(j["transactions"].as_u64().unwrap() > 0, "{j}");
}

#[test]
#[ignore = "needs root"]
fn loadgen_cps_and_hold_modes_over_tap() {
    common::require_root("loadgen_cps_and_hold_modes_over_tap");
    let j = server_and_loadgen(
        &["echo", "--listen", "7"],
        7,
        &["--mode", "cps", "--connections", "4", "--close", "rst"],
    );
    assert_eq!(j["mode"], "cps");
    assert!(j["transactions"].as_u64().unwrap() > 4, "{j}");
    assert!(j["cps"].as_f64().unwrap() > 0.0, "{j}");
    assert_eq!(j["errors"], 0, "{j}");
    let j = server_and_loadgen(
        &["echo", "--listen", "7"],
        7,
        &["--mode", "hold", "--connections", "6", "--rate", "100"],
    );
    assert_eq!(j["mode"], "hold");
    assert_eq!(j["open"], 6, "{j}");
    assert_eq!(j["connects"], 6, "{j}");
    assert_eq!(j["transactions"], 0, "{j}");
    assert!(
        j["time_to_full_s"].as_f64().unwrap() >= 0.04,
        "rate-limited ramp: {j}"
    );
}

#[test]
fn loadgen_flag_errors_are_one_sentence() {
    for (args, needle) in [
        (
            vec!["--connections", "0"],
            "--connections must be at least 1",
        ),
        (vec!["--pipeline", "0"], "--pipeline must be between"),
        (vec!["--rate=-3"], "--rate must be a positive"),
        (vec!["--listen", "80"], "does not listen"),
    ] {
        let mut a = vec![
            "loadgen",
            "--port",
            "tap:bplx",
            "--ip",
            "10.0.0.2/24",
            "--target",
            "10.0.0.1:7",
        ];
        a.extend_from_slice(&args);
        let o = Command::new(BIN).args(&a).output().unwrap();
        let e = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {e}");
        assert!(
            e.starts_with("error: ") && e.contains(needle),
            "{args:?}: {e}"
        );
    }
}

fn bench(args: &[&str]) -> serde_json::Value {
    let out = Command::new(BIN).arg("bench").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "bench {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    json_of(&out)
}

/// Every side of a point ran clean (no errors, no stalls, a full ramp)
/// and the ratio against the best baseline is a figure.
fn clean_on_every_side(p: &serde_json::Value, baselines: &[&str]) {
    let mut sides = vec![("ours", &p["ours"])];
    for b in baselines {
        sides.push((b, &p["baselines"][b]));
    }
    for (name, s) in sides {
        assert_eq!(s["errors"], 0, "{name}: {p}");
        assert!(s["invalid"].is_null(), "{name}: {p}");
        assert_eq!(s["stalls"].as_array().unwrap().len(), 0, "{name}: {p}");
        assert!(s["summary"]["tps"].as_f64().unwrap() > 0.0, "{name}: {p}");
    }
    assert!(p["invalid"].is_null(), "{p}");
    assert!(p["vs_best_kernel"].as_f64().unwrap() > 0.0, "{p}");
    let best = p["best_kernel"].as_str().unwrap();
    assert!(baselines.contains(&best), "{p}");
}

#[test]
fn bench_tcp_rr_smoke() {
    let svg = std::env::temp_dir().join(format!("bypass-rr-{}.svg", std::process::id()));
    let svg_s = svg.to_str().unwrap();
    let j = bench(&[
        "tcp-rr",
        "--connections",
        "64",
        "--duration",
        "1",
        "--json",
        "--plot",
        svg_s,
    ]);
    assert_eq!(j["scenario"], "tcp-rr");
    let p = &j["points"][0];
    assert_eq!(p["connections"], 64, "{j}");
    assert_eq!(p["ours"]["summary"]["open"], 64, "{j}");
    assert!(
        p["ours"]["summary"]["latency"]["p99_us"].as_u64().unwrap() > 0,
        "{j}"
    );
    clean_on_every_side(p, &["kernel-epoll", "kernel-busypoll", "kernel-io_uring"]);
    let text = std::fs::read_to_string(&svg).unwrap();
    let _ = std::fs::remove_file(&svg);
    assert!(
        text.starts_with("<svg") && text.contains("<polyline"),
        "{text}"
    );
}

/// `--family 6`: ours over IPv6 on the mem wire, every kernel baseline
/// over ::1, each side clean; the other scenarios refuse it in a sentence.
#[test]
fn bench_tcp_rr_and_cps_over_ipv6_smoke() {
    let j = bench(&[
        "tcp-rr",
        "--family",
        "6",
        "--connections",
        "16",
        "--duration",
        "1",
        "--json",
    ]);
    assert_eq!(j["family"], 6, "{j}");
    let p = &j["points"][0];
    assert_eq!(p["ours"]["summary"]["open"], 16, "{j}");
    clean_on_every_side(p, &["kernel-epoll", "kernel-busypoll", "kernel-io_uring"]);
    let j = bench(&[
        "cps",
        "--family",
        "6",
        "--connections",
        "4",
        "--duration",
        "1",
        "--json",
    ]);
    assert!(
        j["points"][0]["ours"]["summary"]["cps"].as_f64().unwrap() > 0.0,
        "{j}"
    );
    clean_on_every_side(
        &j["points"][0],
        &["kernel-epoll", "kernel-busypoll", "kernel-io_uring"],
    );
    let out = Command::new(BIN)
        .args(["bench", "conns", "--family", "6", "--connections", "10"])
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{e}");
    assert!(e.contains("--family 6 is for tcp-rr and cps"), "{e}");
}

#[test]
fn bench_cps_and_conns_smoke() {
    let j = bench(&["cps", "--connections", "8", "--duration", "1", "--json"]);
    assert_eq!(j["scenario"], "cps");
    let p = &j["points"][0];
    assert!(p["ours"]["summary"]["cps"].as_f64().unwrap() > 0.0, "{j}");
    clean_on_every_side(p, &["kernel-epoll", "kernel-busypoll", "kernel-io_uring"]);
    let j = bench(&[
        "conns",
        "--connections",
        "2000",
        "--duration",
        "1",
        "--json",
    ]);
    assert_eq!(j["scenario"], "conns");
    assert_eq!(j["ours"]["load"]["open"], 2000, "{j}");
    assert_eq!(j["side"]["errors"], 0, "{j}");
    assert_eq!(j["side"]["stalls"].as_array().unwrap().len(), 0, "{j}");
    assert!(j["bytes_per_end"].as_f64().unwrap() > 0.0, "{j}");
    assert!(j["ours"]["load"]["tps"].as_f64().unwrap() > 0.0, "{j}");
}

#[test]
fn bench_http_smoke_against_nginx() {
    let j = bench(&[
        "http",
        "--connections",
        "16",
        "--duration",
        "1",
        "--baselines",
        "epoll,io_uring",
        "--json",
    ]);
    assert_eq!(j["scenario"], "http");
    let p = &j["points"][0];
    assert_eq!(p["ours"]["summary"]["open"], 16, "{j}");
    clean_on_every_side(p, &["nginx<-kernel-epoll", "nginx<-kernel-io_uring"]);
}

#[test]
fn bench_scale_smoke_runs_the_sharded_path_on_both_cores() {
    let j = bench(&["scale", "--connections", "32", "--duration", "1", "--json"]);
    assert_eq!(j["scenario"], "scale");
    assert!(j["speedup"].as_f64().unwrap() > 0.0, "{j}");
    let rows = j["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{j}");
    for (row, cores) in rows.iter().zip([1, 2]) {
        let side = &row["side"];
        assert_eq!(side["errors"], 0, "{j}");
        assert!(side["invalid"].is_null(), "{j}");
        assert_eq!(side["summary"]["open"], 32, "same total load: {j}");
        let per_core = side["summary"]["per_core"].as_array().unwrap();
        assert_eq!(per_core.len(), cores, "{j}");
        for c in per_core {
            assert!(
                c["transactions"].as_u64().unwrap() > 0,
                "every core carries load: {j}"
            );
        }
    }
}

#[test]
fn bench_all_leaves_json_charts_and_a_markdown_summary() {
    let dir = std::env::temp_dir().join(format!("bypass-all-{}", std::process::id()));
    let out = Command::new(BIN)
        .args([
            "bench",
            "all",
            "--only",
            "scale,cps",
            "--time-scale",
            "0.25",
            "--out",
        ])
        .arg(&dir)
        .output()
        .unwrap();
    let readme = std::fs::read_to_string(dir.join("README.md")).unwrap_or_default();
    let files: Vec<String> = std::fs::read_dir(&dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for f in ["scale.json", "scale.svg", "cps.json", "cps.svg", "cps.txt"] {
        assert!(files.iter().any(|x| x == f), "{f} missing: {files:?}");
    }
    assert!(
        readme.contains("## cps") && readme.contains("## scale"),
        "{readme}"
    );
    assert!(readme.contains("kernel-io_uring"), "{readme}");
    assert!(readme.contains("speedup 2 cores / 1 core"), "{readme}");
}
