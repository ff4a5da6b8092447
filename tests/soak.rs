//! A short soak: `bypass bench soak` for 20 s (HTTP request/response and
//! connection churn between two stacks over a lossy mem wire) must finish
//! with no error, responses flowing in every sample, and bounded memory.

use std::process::Command;

#[test]
fn a_twenty_second_soak_has_no_errors_and_bounded_memory() {
    let out = Command::new(env!("CARGO_BIN_EXE_bypass"))
        .args([
            "bench",
            "soak",
            "--duration",
            "20",
            "--sample",
            "4",
            "--warmup",
            "8",
            "--conns",
            "32",
            "--requests",
            "200",
            "--loss",
            "1",
            "--json",
        ])
        .output()
        .expect("run bypass");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "soak failed: {stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value =
        serde_json::from_str(stdout.lines().last().expect("a JSON line")).expect("JSON");
    eprintln!("{stderr}");
    assert_eq!(v["errors"], 0, "{v}");
    assert_eq!(v["unfinished_conns"], 0, "{v}");
    assert_eq!(v["stalls"].as_array().unwrap().len(), 0, "{v}");
    assert!(v["responses"].as_u64().unwrap() > 1000, "{v}");
    assert!(v["conns_closed"].as_u64().unwrap() > 10, "churned: {v}");
    let samples = v["samples"].as_array().unwrap();
    assert!(samples.len() >= 4, "sampled every 4 s: {}", samples.len());
    // Responses grow between every two samples: nothing stalls.
    for w in samples.windows(2) {
        assert!(
            w[1]["responses"].as_u64() > w[0]["responses"].as_u64(),
            "stalled: {w:?}"
        );
    }
    assert!(v["rss_max_bytes"].as_u64().unwrap() < 1 << 30, "{v}");
}
