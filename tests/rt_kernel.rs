//! The async examples against the kernel over TAP, each test in a private
//! network namespace of its own: kernel `curl` against the hyper, axum
//! and HTTPS servers (`--cacert` with the certificate the server wrote),
//! and the hyper client against a kernel HTTP server.
//!
//! The examples are built by `cargo test --all-features` (the README's
//! test command); a targeted run needs `cargo build --examples --features
//! tokio` first.
#![cfg(all(feature = "tap", feature = "tokio"))]

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const KERNEL: Ipv4Addr = Ipv4Addr::new(10, 67, 0, 1);
const US: Ipv4Addr = Ipv4Addr::new(10, 67, 0, 2);

fn example(name: &str) -> PathBuf {
    // target/debug/deps/rt_kernel-HASH -> target/debug/examples/NAME
    let exe = std::env::current_exe().unwrap();
    let p = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join(name);
    assert!(
        p.exists(),
        "{} is not built: run `cargo build --examples --features tokio` (or the README's test command)",
        p.display()
    );
    p
}

/// A child process killed (by its pid) when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Running {
    fn stderr(mut self) -> String {
        let _ = self.0.kill();
        let mut s = String::new();
        if let Some(e) = self.0.stderr.as_mut() {
            let _ = e.read_to_string(&mut s);
        }
        s
    }
}

/// Starts an example on TAP `tap` (in this thread's namespace), waits for
/// its interface and gives the kernel side its address.
fn start(name: &str, tap: &str, extra: &[&str]) -> Running {
    let child = Command::new(example(name))
        .arg(format!("tap:{tap}"))
        .arg(format!("{US}/24"))
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let run = Running(child);
    let t0 = Instant::now();
    while !std::fs::read_to_string("/proc/thread-self/net/dev")
        .unwrap_or_default()
        .contains(&format!("{tap}:"))
    {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "{name} made no {tap}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    common::sh(&format!(
        "sysctl -qw net.ipv6.conf.all.disable_ipv6=1; ip addr add {KERNEL}/24 dev {tap}; ip link set {tap} up"
    ));
    run
}

/// Runs curl until it succeeds (the server may still be starting) or 20 s
/// have passed; returns its last output.
fn curl(args: &str) -> Output {
    let t0 = Instant::now();
    loop {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("curl -sS --max-time 5 {args}"))
            .output()
            .unwrap();
        if out.status.success() || t0.elapsed() > Duration::from_secs(20) {
            return out;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn ok_body(out: &Output, server: Running) -> String {
    if !out.status.success() {
        panic!(
            "curl failed: {}\nserver said: {}",
            String::from_utf8_lossy(&out.stderr),
            server.stderr()
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
#[ignore = "needs root"]
fn kernel_curl_gets_hello_from_the_hyper_example() {
    common::require_root("kernel_curl_gets_hello_from_the_hyper_example");
    common::private_netns();
    let server = start("hyper_server", "bprt0", &[]);
    let out = curl(&format!("-i http://{US}/plaintext"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    assert!(text.ends_with("\r\n\r\nHello, World!"), "{text}");
    // Three requests on one connection (the first one's body discarded,
    // the last a 404): one connect in all.
    let out = curl(&format!(
        "http://{US}/plaintext -o /dev/null http://{US}/plaintext http://{US}/nope \
         -w '%{{http_code}} %{{num_connects}}\\n'"
    ));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        text,
        "200 1\nHello, World!200 0\nnot found\n404 0\n",
        "{}\nserver: {}",
        String::from_utf8_lossy(&out.stderr),
        server.stderr()
    );
}

/// Two cores, each with its own listener on port 80 (RSS-sharded, steered
/// in software over a multi-queue TAP): connections from many source ports
/// are all answered, whichever core the flow lands on.
#[test]
#[ignore = "needs root"]
fn the_hyper_example_serves_from_two_cores() {
    common::require_root("the_hyper_example_serves_from_two_cores");
    let cores = bypass::runtime::available_cores();
    if cores.len() < 2 {
        eprintln!("SKIPPED the_hyper_example_serves_from_two_cores: one core here");
        return;
    }
    common::private_netns();
    let list = format!("{},{}", cores[0], cores[1]);
    let server = start("hyper_server", "bprt4", &[&list]);
    let first = curl(&format!("http://{US}/plaintext"));
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    // 40 connections, each from a new source port.
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "for i in $(seq 1 40); do curl -sS --max-time 5 -o /dev/null -w '%{{http_code}}\\n' http://{US}/plaintext; done"
        ))
        .output()
        .unwrap();
    let codes = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        codes.lines().filter(|l| *l == "200").count(),
        40,
        "{codes}\n{}\nserver: {}",
        String::from_utf8_lossy(&out.stderr),
        server.stderr()
    );
}

#[test]
#[ignore = "needs root"]
fn kernel_curl_gets_json_from_the_axum_example() {
    common::require_root("kernel_curl_gets_json_from_the_axum_example");
    common::private_netns();
    let server = start("axum_json", "bprt1", &[]);
    let out = curl(&format!("-i http://{US}/json"));
    let text = ok_body(&out, server);
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    assert!(
        text.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{text}"
    );
    assert!(
        text.ends_with("\r\n\r\n{\"message\":\"Hello, World!\"}"),
        "{text}"
    );
}

#[test]
#[ignore = "needs root"]
fn kernel_curl_checks_the_https_example_certificate() {
    common::require_root("kernel_curl_checks_the_https_example_certificate");
    common::private_netns();
    let dir = std::env::temp_dir().join(format!("bypass-rt-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cert = dir.join("cert.pem");
    let server = start("https_server", "bprt2", &[cert.to_str().unwrap()]);
    let out = curl(&format!(
        "--cacert {} https://{US}/plaintext",
        cert.display()
    ));
    let text = ok_body(&out, server);
    assert_eq!(text, "Hello, World!");
    // Without the certificate, curl refuses the server.
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "5", &format!("https://{US}/plaintext")])
        .output()
        .unwrap();
    assert!(!out.status.success(), "curl trusted an unknown certificate");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
#[ignore = "needs root"]
fn the_hyper_client_example_fetches_from_a_kernel_server() {
    common::require_root("the_hyper_client_example_fetches_from_a_kernel_server");
    common::private_netns();
    // The kernel server needs its address before the client starts, so
    // the TAP is made here (multi-queue, as TapPort wants) and the client
    // attaches to it.
    let tap = "bprt3";
    common::sh(&format!(
        "sysctl -qw net.ipv6.conf.all.disable_ipv6=1; ip tuntap add mode tap multi_queue name {tap}; \
         ip addr add {KERNEL}/24 dev {tap}; ip link set {tap} up"
    ));
    let body: Vec<u8> = (0..100_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let listener = TcpListener::bind((KERNEL, 8080)).unwrap();
    let served = body.clone();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut req = Vec::new();
        let mut b = [0u8; 1024];
        while !req.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut b).unwrap();
            assert!(n > 0, "the client closed before its request ended");
            req.extend_from_slice(&b[..n]);
        }
        write!(
            s,
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            served.len()
        )
        .unwrap();
        s.write_all(&served).unwrap();
        String::from_utf8_lossy(&req).into_owned()
    });
    let out = Command::new(example("hyper_client"))
        .arg(format!("tap:{tap}"))
        .arg(format!("{US}/24"))
        .arg(format!("http://{KERNEL}:8080/some/path?q=1"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "hyper_client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stdout == body,
        "body of {} bytes differs",
        out.stdout.len()
    );
    let req = server.join().unwrap();
    assert!(req.starts_with("GET /some/path?q=1 HTTP/1.1\r\n"), "{req}");
}
