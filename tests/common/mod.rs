//! Shared helpers of the integration tests.
#![allow(dead_code)]

use std::process::{Command, Output};

/// True if this test may touch interfaces: we are root. Without root the
/// test is skipped with a printed reason, except under CI (`CI=true`),
/// where a missing privilege fails the test instead.
pub fn root_or_skip(test: &str) -> bool {
    if bypass::port::sys::is_root() {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("{test}: needs root, and CI must not skip it");
    }
    eprintln!("SKIPPED {test}: needs root (run scripts/test.sh as root)");
    false
}

/// Moves the current test thread into a fresh private network namespace
/// (with `lo` up). Everything the test creates there — taps, veths,
/// addresses, child processes — lives and dies with that namespace, so
/// tests run in parallel and nothing leaves the machine.
pub fn private_netns() {
    bypass::port::sys::unshare_netns().expect("unshare(CLONE_NEWNET)");
}

/// Runs a command (in the current thread's namespace) and returns its output;
/// panics with its stderr if it fails.
pub fn sh(cmd: &str) -> Output {
    let out = Command::new("sh").arg("-c").arg(cmd).output().expect("spawn sh");
    assert!(
        out.status.success(),
        "`{cmd}` failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Like [`sh`], but returns stdout as a string.
pub fn sh_out(cmd: &str) -> String {
    String::from_utf8_lossy(&sh(cmd).stdout).into_owned()
}

/// Reads an interface counter from sysfs (in the current namespace).
pub fn if_stat(ifname: &str, counter: &str) -> u64 {
    std::fs::read_to_string(format!("/sys/class/net/{ifname}/statistics/{counter}"))
        .unwrap_or_default()
        .trim()
        .parse()
        .unwrap_or(0)
}
