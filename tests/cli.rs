//! The `bypass` tool as users run it: errors, and l2fwd over TAP with the
//! kernels of two private network namespaces on either side.

mod common;

use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

fn bypass(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bypass"))
        .args(args)
        .output()
        .expect("run bypass")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn bad_port_specs_get_one_clear_sentence() {
    for (spec, needle) in [
        ("bogus", "expected KIND:NAME"),
        ("foo:bar", "unknown port kind `foo`"),
        ("tap:x,queues=lots", "bad value `lots` for `queues`"),
        ("tap:x,color=blue", "unknown option `color`"),
        ("mem:w0", "in-process wires"),
    ] {
        let o = bypass(&["l2fwd", "--port", spec, "--duration", "1"]);
        assert_eq!(o.status.code(), Some(1), "{spec}");
        let e = stderr(&o);
        assert!(
            e.starts_with("error: ") && e.contains(needle),
            "{spec}: {e}"
        );
        assert_eq!(e.trim().lines().count(), 1, "one line: {e}");
    }
}

#[test]
fn bad_flags_are_usage_errors() {
    let o = bypass(&["l2fwd", "--port", "tap:x", "--frobnicate"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--frobnicate"));
    let o = bypass(&["l2fwd", "--port", "tap:x", "--cores", "zero"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("not a core list"), "{}", stderr(&o));
    let o = bypass(&[
        "l2fwd", "--port", "tap:x", "--port", "tap:y", "--port", "tap:z",
    ]);
    assert!(stderr(&o).contains("3 ports given"), "{}", stderr(&o));
    let o = bypass(&["--help"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("l2fwd"));
}

#[test]
#[ignore = "needs root"]
fn missing_privilege_says_to_use_root() {
    common::require_root("missing_privilege_says_to_use_root");
    // Drop to nobody and try to create a TAP.
    let o = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(env!("CARGO_BIN_EXE_bypass"))
        .args(["l2fwd", "--port", "tap:bpt-noperm", "--duration", "1"])
        .output()
        .expect("setpriv (util-linux)");
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains("needs root") && e.contains("sudo"), "{e}");
}

/// Named namespaces and a child process, removed on drop whatever happens.
struct Topology {
    ns: Vec<String>,
    child: Option<Child>,
}

impl Drop for Topology {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill(); // by PID
            let _ = c.wait();
        }
        for n in &self.ns {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

fn ns_stat(ns: &str, ifname: &str, col: usize) -> u64 {
    let t = common::sh_out(&format!("ip netns exec {ns} cat /proc/net/dev"));
    let line = t
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{ifname}:")))
        .unwrap();
    line.split_once(':')
        .unwrap()
        .1
        .split_whitespace()
        .nth(col)
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
#[ignore = "needs root"]
fn l2fwd_over_tap_carries_kernel_traffic_and_counts_it() {
    common::require_root("l2fwd_over_tap_carries_kernel_traffic_and_counts_it");
    let id = std::process::id();
    let (a, b) = (format!("bpt-{id}-a"), format!("bpt-{id}-b"));
    let mut topo = Topology {
        ns: vec![],
        child: None,
    };
    for (ns, tap, ip) in [(&a, "bpta0", "10.77.0.1/24"), (&b, "bptb0", "10.77.0.2/24")] {
        common::sh(&format!("ip netns add {ns}"));
        topo.ns.push(ns.clone());
        common::sh(&format!(
            "ip -n {ns} link set lo up && ip netns exec {ns} sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 && \
             ip -n {ns} tuntap add mode tap multi_queue name {tap} && ip -n {ns} addr add {ip} dev {tap} && ip -n {ns} link set {tap} up"
        ));
    }
    let pcap = std::env::temp_dir().join(format!("bpt-{id}.pcap"));
    let child = Command::new(env!("CARGO_BIN_EXE_bypass"))
        .args([
            "l2fwd",
            "--port",
            &format!("tap:bpta0,netns={a}"),
            "--port",
            &format!("tap:bptb0,netns={b}"),
        ])
        .args([
            "--duration",
            "5",
            "--json",
            "--stats-interval",
            "1",
            "--idle-sleep-us",
            "50",
        ])
        .args(["--pcap", pcap.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    topo.child = Some(child);
    std::thread::sleep(Duration::from_millis(800));
    let ping = common::sh_out(&format!(
        "ip netns exec {a} ping -c 50 -i 0.01 -W 2 10.77.0.2"
    ));
    assert!(ping.contains("50 received"), "{ping}");
    let out = topo.child.take().unwrap().wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let live = stderr(&out);
    assert!(
        live.contains("rx-pps") && live.contains("tap:bpta0"),
        "live table: {live}"
    );
    assert!(
        !live.contains("still out"),
        "every frame went back to its pool before the pool closed: {live}"
    );
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON summary on stdout");
    let ports = j["ports"].as_array().unwrap();
    let (pa, pb) = (&ports[0], &ports[1]);
    // 50 requests one way, 50 replies the other, plus ARP.
    assert!(pa["rx_packets"].as_u64().unwrap() >= 50);
    assert!(pb["rx_packets"].as_u64().unwrap() >= 50);
    assert_eq!(
        pa["rx_packets"], pb["tx_packets"],
        "wire: in on a, out on b"
    );
    assert_eq!(pb["rx_packets"], pa["tx_packets"]);
    assert_eq!(j["drops"], 0);
    // The kernels agree: what namespace a sent into its TAP is what we got.
    assert_eq!(
        ns_stat(&a, "bpta0", 9),
        pa["rx_packets"].as_u64().unwrap(),
        "a tx == our rx"
    );
    assert_eq!(
        ns_stat(&b, "bptb0", 1),
        pb["tx_packets"].as_u64().unwrap(),
        "our tx == b rx"
    );
    assert_eq!(
        j["rx_packets"].as_u64(),
        Some(pa["rx_packets"].as_u64().unwrap() + pb["rx_packets"].as_u64().unwrap())
    );
    // The capture holds every frame received and sent.
    let written = j["pcap"]["written"].as_u64().unwrap();
    assert_eq!(
        written,
        j["rx_packets"].as_u64().unwrap() + j["tx_packets"].as_u64().unwrap()
    );
    let mut r = pcap_file::pcap::PcapReader::new(std::fs::File::open(&pcap).unwrap()).unwrap();
    let mut n = 0;
    while let Some(p) = r.next_packet() {
        p.unwrap();
        n += 1;
    }
    assert_eq!(n, written);
    let _ = std::fs::remove_file(&pcap);
}

/// Starts a bypass TCP server (or an example) in the current (private)
/// namespace on TAP `tap`, gives the kernel side 10.44.0.1/24.
fn start_server(program: &str, args: &[&str], tap: &str) -> Child {
    start_server_with(
        program,
        args,
        tap,
        "sysctl -qw net.ipv6.conf.all.disable_ipv6=1",
    )
}

/// [`start_server`], running `kernel_setup` (with IPv6 left on, for
/// instance) before the kernel side gets 10.44.0.1/24.
fn start_server_with(program: &str, args: &[&str], tap: &str, kernel_setup: &str) -> Child {
    let child = Command::new(program)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    for _ in 0..100 {
        if std::fs::read_to_string("/proc/thread-self/net/dev")
            .unwrap()
            .contains(&format!("{tap}:"))
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    common::sh(&format!(
        "{kernel_setup}; ip addr add 10.44.0.1/24 dev {tap}"
    ));
    child
}

fn curl(url: &str) -> String {
    common::sh_out(&format!("curl -s -i --max-time 5 {url}")).replace("\r\n", "\n")
}

#[test]
#[ignore = "needs root"]
fn http_serves_curl_over_ipv6_and_ipv4_at_once() {
    common::require_root("http_serves_curl_over_ipv6_and_ipv4_at_once");
    common::private_netns();
    let pcap = std::env::temp_dir().join(format!("bph6-{}.pcap", std::process::id()));
    let child = start_server_with(
        env!("CARGO_BIN_EXE_bypass"),
        &[
            "http",
            "--port",
            "tap:bph6",
            "--ip",
            "10.44.0.2/24",
            "--ip",
            "fd00:44::2/64",
            "--duration",
            "4",
            "--json",
            "--idle-sleep-us",
            "50",
            "--pcap",
            pcap.to_str().unwrap(),
        ],
        "bph6",
        "sysctl -qw net.ipv6.conf.all.disable_ipv6=0; ip -6 addr add fd00:44::1/64 dev bph6 nodad",
    );
    let mut topo = Topology {
        ns: vec![],
        child: Some(child),
    };
    let r = curl("-g 'http://[fd00:44::2]/plaintext'");
    assert!(r.starts_with("HTTP/1.1 200 OK\n"), "{r}");
    assert!(r.ends_with("\n\nHello, World!"), "{r}");
    let r = curl("http://10.44.0.2/plaintext");
    assert!(r.ends_with("\n\nHello, World!"), "{r}");
    let r = curl("-g 'http://[fd00:44::2]/json'");
    assert!(r.ends_with(r#"{"message":"Hello, World!"}"#), "{r}");
    let out = topo.child.take().unwrap().wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["accepted"], 3, "{j}");
    assert_on_default_engine(&j, 3);
    assert_eq!(j["drops_by_reason"]["malformed"], 0, "{j}");
    // The capture holds the IPv6 frames both ways.
    let mut r = pcap_file::pcap::PcapReader::new(std::fs::File::open(&pcap).unwrap()).unwrap();
    let mut v6 = 0;
    while let Some(p) = r.next_packet() {
        let p = p.unwrap();
        use smoltcp::wire::{EthernetFrame, EthernetProtocol};
        if EthernetFrame::new_checked(&p.data[..])
            .is_ok_and(|e| e.ethertype() == EthernetProtocol::Ipv6)
        {
            v6 += 1;
        }
    }
    let _ = std::fs::remove_file(&pcap);
    assert!(v6 >= 2 * 6, "{v6} IPv6 frames captured");
}

#[test]
#[ignore = "needs root"]
fn http_serves_curl_and_rejects_bad_requests() {
    common::require_root("http_serves_curl_and_rejects_bad_requests");
    common::private_netns();
    let pcap = std::env::temp_dir().join(format!("bph-{}.pcap", std::process::id()));
    let pcap_arg = pcap.to_str().unwrap();
    let child = start_server(
        env!("CARGO_BIN_EXE_bypass"),
        &[
            "http",
            "--port",
            "tap:bph0",
            "--ip",
            "10.44.0.2/24",
            "--duration",
            "4",
            "--json",
            "--idle-sleep-us",
            "50",
            "--pcap",
            pcap_arg,
        ],
        "bph0",
    );
    let mut topo = Topology {
        ns: vec![],
        child: Some(child),
    };
    let r = curl("http://10.44.0.2/plaintext");
    assert!(r.starts_with("HTTP/1.1 200 OK\n"), "{r}");
    assert!(
        r.contains("\nServer: bypass\n")
            && r.contains("\nDate: ")
            && r.ends_with("\n\nHello, World!"),
        "{r}"
    );
    let r = curl("http://10.44.0.2/json");
    assert!(
        r.contains("Content-Type: application/json")
            && r.ends_with(r#"{"message":"Hello, World!"}"#),
        "{r}"
    );
    assert!(curl("http://10.44.0.2/nope").starts_with("HTTP/1.1 404"));
    // Several requests on one keep-alive connection.
    let r = common::sh_out("curl -s --max-time 5 http://10.44.0.2/plaintext http://10.44.0.2/plaintext http://10.44.0.2/json");
    assert_eq!(
        r,
        "Hello, World!Hello, World!{\"message\":\"Hello, World!\"}"
    );
    // A malformed request gets 400 and the connection closes.
    let mut s = std::net::TcpStream::connect("10.44.0.2:80").unwrap();
    use std::io::{Read, Write};
    s.write_all(b"GARBAGE \x01\x02 HTTP/9\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
    // Still serving.
    assert!(curl("http://10.44.0.2/plaintext").starts_with("HTTP/1.1 200"));
    let out = topo.child.take().unwrap().wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // plaintext, json, 404, three on one connection, plaintext; the
    // garbage is a bad request, not a request.
    assert_eq!(j["req"], 7, "{j}");
    assert_eq!(j["bad_req"], 1);
    assert_eq!(j["reset"], 0);
    // The capture holds every frame the stack received and sent.
    let mut r = pcap_file::pcap::PcapReader::new(std::fs::File::open(&pcap).unwrap()).unwrap();
    let mut frames = 0;
    while let Some(p) = r.next_packet() {
        p.unwrap();
        frames += 1;
    }
    assert_eq!(
        frames,
        j["rx_packets"].as_u64().unwrap() + j["tx_packets"].as_u64().unwrap()
    );
    let _ = std::fs::remove_file(&pcap);
}

/// Results written to a standard output that fails: a reader that went
/// away (`| head`) ends nothing and says nothing; a full disk is said in
/// one line. Neither panics (a panic aborts, skipping the clean-up).
#[test]
#[ignore = "needs root"]
fn a_failing_standard_output_is_not_a_crash() {
    common::require_root("a_failing_standard_output_is_not_a_crash");
    // `unshare -n`: the TAP lives in a namespace of its own that goes
    // with the process.
    let run = |stdout: Stdio| {
        Command::new("unshare")
            .args(["-n", env!("CARGO_BIN_EXE_bypass")])
            .args(["l2fwd", "--port", "tap:bpt-out0", "--duration", "1"])
            .stdout(stdout)
            .stderr(Stdio::piped())
            .output()
            .expect("run bypass under unshare")
    };
    let full = run(std::fs::File::create("/dev/full").unwrap().into());
    let err = stderr(&full);
    assert!(full.status.success(), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(
        err.matches("could not write results to standard output")
            .count(),
        1,
        "one line says the results are lost: {err}"
    );
    // A pipe whose reader is gone before anything is written.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let gone = run(writer.into());
    let err = stderr(&gone);
    assert!(gone.status.success(), "{err}");
    assert!(
        !err.contains("panicked") && !err.contains("could not write"),
        "{err}"
    );
}

#[test]
#[ignore = "needs root"]
fn demo_serves_kernel_clients_and_leaves_nothing_behind() {
    common::require_root("demo_serves_kernel_clients_and_leaves_nothing_behind");
    // The demo uses an unnamed namespace of its own; other tests of this
    // file create named `bpt-*` ones concurrently, so leave those out.
    let named = || -> String {
        common::sh_out("ip netns list")
            .lines()
            .filter(|l| !l.starts_with("bpt-"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let before = named();
    let out = bypass(&["demo", "--duration", "3", "--connections", "16", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text.lines().last().unwrap();
    let j: serde_json::Value = serde_json::from_str(last).expect("JSON summary last");
    assert!(j["req"].as_u64().unwrap() > 1000, "{j}");
    assert_eq!(j["bad_req"], 0);
    assert_eq!(j["drops_by_reason"]["malformed"], 0, "{j}");
    assert_eq!(j["drops_by_reason"]["bad_checksum"], 0, "{j}");
    // (wrk closes its sockets with responses unread, so the kernel resets
    // some of them at the end: resets are the client's, not ours.)
    let live = stderr(&out);
    assert!(
        live.contains("req/s") && live.contains("200 OK") && live.contains("Requests/sec"),
        "{live}"
    );
    assert!(
        !live.contains("Non-2xx"),
        "every response was a 200: {live}"
    );
    assert!(
        !live.contains("still out"),
        "every frame went back to its pool before the pool closed: {live}"
    );
    assert_eq!(named(), before, "no namespace left");
    assert!(!common::sh_out("ip -o link show").contains("bp0"));
}

#[test]
#[ignore = "needs root"]
fn http_server_example_serves_its_own_route() {
    common::require_root("http_server_example_serves_its_own_route");
    common::private_netns();
    let exe = std::env::current_exe().unwrap();
    let example = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples/http_server");
    assert!(
        example.exists(),
        "cargo test builds the examples: {example:?}"
    );
    let child = start_server(
        example.to_str().unwrap(),
        &["tap:bpx0", "10.44.0.2/24"],
        "bpx0",
    );
    let _topo = Topology {
        ns: vec![],
        child: Some(child),
    };
    assert!(curl("http://10.44.0.2/hello").ends_with("\n\nhello from userspace TCP\n"));
    assert!(curl("http://10.44.0.2/plaintext").ends_with("Hello, World!"));
}

#[cfg(feature = "af-xdp")]
#[test]
#[ignore = "needs root"]
fn http_over_af_xdp_serves_the_kernel_on_a_veth() {
    common::require_root("http_over_af_xdp_serves_the_kernel_on_a_veth");
    common::private_netns();
    // bpv0 is ours (AF_XDP), bpv1 is the kernel's end with 10.45.0.1. The
    // kernel leaves TCP checksums partial on veth (offload) and AF_XDP
    // loses the skb's note saying so: the peer must compute them.
    common::sh(
        "sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1; \
         ip link add bpv0 type veth peer name bpv1 && ip link set bpv0 up && \
         ethtool -K bpv1 tx off >/dev/null && \
         ip addr add 10.45.0.1/24 dev bpv1 && ip link set bpv1 up",
    );
    let child = Command::new(env!("CARGO_BIN_EXE_bypass"))
        .args([
            "http",
            "--port",
            "xdp:bpv0",
            "--ip",
            "10.45.0.2/24",
            "--duration",
            "4",
            "--json",
            "--idle-sleep-us",
            "50",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut topo = Topology {
        ns: vec![],
        child: Some(child),
    };
    std::thread::sleep(Duration::from_millis(1000));
    let r = curl("http://10.45.0.2/plaintext");
    assert!(
        r.starts_with("HTTP/1.1 200 OK\n") && r.ends_with("Hello, World!"),
        "{r}"
    );
    let r = common::sh_out("curl -s --max-time 5 http://10.45.0.2/json http://10.45.0.2/json");
    assert_eq!(
        r,
        "{\"message\":\"Hello, World!\"}{\"message\":\"Hello, World!\"}"
    );
    let out = topo.child.take().unwrap().wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["req"], 3, "{j}");
    assert_eq!(j["port"]["kind"], "xdp");
    assert!(
        !common::sh_out("ip link show bpv0").contains("xdp"),
        "XDP program detached"
    );
}

#[test]
#[ignore = "needs root"]
fn echo_serves_tcp_and_udp() {
    common::require_root("echo_serves_tcp_and_udp");
    common::private_netns();
    let child = start_server(
        env!("CARGO_BIN_EXE_bypass"),
        &[
            "echo",
            "--port",
            "tap:bpu0",
            "--ip",
            "10.44.0.2/24",
            "--listen",
            "7",
            "--udp",
            "9",
            "--duration",
            "3",
            "--json",
            "--idle-sleep-us",
            "50",
        ],
        "bpu0",
    );
    let mut topo = Topology {
        ns: vec![],
        child: Some(child),
    };
    use std::io::{Read, Write};
    let mut t = std::net::TcpStream::connect("10.44.0.2:7").unwrap();
    t.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    t.write_all(b"over tcp").unwrap();
    let mut b = [0u8; 8];
    t.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"over tcp");
    let u = std::net::UdpSocket::bind("10.44.0.1:0").unwrap();
    u.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    for i in 0..10u8 {
        u.send_to(&[i; 100], "10.44.0.2:9").unwrap();
        let mut r = [0u8; 200];
        let (n, from) = u.recv_from(&mut r).unwrap();
        assert_eq!((n, from.to_string().as_str()), (100, "10.44.0.2:9"));
        assert_eq!(&r[..n], &[i; 100][..]);
    }
    // A datagram to a port nobody bound gets no answer at all: an ICMP
    // port-unreachable would quote it and be larger than what provoked it
    // (reflection amplification); it is counted instead.
    let c = std::net::UdpSocket::bind("10.44.0.1:0").unwrap();
    c.connect("10.44.0.2:10").unwrap();
    c.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    c.send(b"anyone?").unwrap();
    let e = c.recv(&mut [0u8; 16]).unwrap_err();
    assert!(
        matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
        "{e}"
    );
    drop(t);
    let out = topo.child.take().unwrap().wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["echo-bytes"], 8 + 1000, "{j}");
    assert_eq!(j["udp_no_port"], 1, "{j}");
}

#[test]
#[ignore = "needs root"]
fn http_on_two_cores_shares_the_connections_out() {
    common::require_root("http_on_two_cores_shares_the_connections_out");
    common::private_netns();
    let child = start_server(
        env!("CARGO_BIN_EXE_bypass"),
        &[
            "http",
            "--port",
            "tap:bph2",
            "--cores",
            "0,1",
            "--ip",
            "10.44.0.2/24",
            "--duration",
            "6",
            "--json",
            "--idle-sleep-us",
            "50",
        ],
        "bph2",
    );
    let mut topo = Topology {
        ns: vec![],
        child: Some(child),
    };
    // 60 requests, each on its own connection.
    let r = common::sh_out(
        "for i in $(seq 60); do curl -s --max-time 5 http://10.44.0.2/plaintext; done",
    );
    assert_eq!(r, "Hello, World!".repeat(60));
    let out = topo.child.take().unwrap().wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let j: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(j["req"], 60, "{j}");
    assert_eq!(j["steering"], "software", "{j}");
    assert_eq!(j["port"]["queues"], 2, "{j}");
    let per = j["per_core"].as_array().unwrap();
    assert_eq!(per.len(), 2);
    for (core, c) in per.iter().enumerate() {
        assert!(c["accepted"].as_u64().unwrap() > 0, "core {core}: {j}");
        assert_eq!(c["arp_requests_tx"], 0, "core {core}: {j}");
    }
    assert_eq!(j["accepted"], 60, "{j}");
    assert_eq!(j["reset"], 0, "{j}");
}

/// The dual stack on two cores over a 2-queue TAP: IPv4 and IPv6 clients
/// at the same time, every connection accepted, on both cores.
#[test]
#[ignore = "needs root"]
fn http_dual_stack_on_two_cores_serves_both_families_at_once() {
    common::require_root("http_dual_stack_on_two_cores_serves_both_families_at_once");
    common::private_netns();
    let child = start_server_with(
        env!("CARGO_BIN_EXE_bypass"),
        &[
            "http",
            "--port",
            "tap:bph7",
            "--cores",
            "0,1",
            "--ip",
            "10.44.0.2/24",
            "--ip",
            "fd00:44::2/64",
            "--duration",
            "8",
            "--json",
            "--idle-sleep-us",
            "50",
        ],
        "bph7",
        "sysctl -qw net.ipv6.conf.all.disable_ipv6=0; ip -6 addr add fd00:44::1/64 dev bph7 nodad",
    );
    let mut topo = Topology {
        ns: vec![],
        child: Some(child),
    };
    // 40 requests of each family, the two loops running at once, each
    // request on its own connection.
    let r = common::sh_out(
        "(for i in $(seq 40); do curl -s --max-time 5 -g 'http://[fd00:44::2]/plaintext'; done > /tmp/bph7-v6-$$) & \
         for i in $(seq 40); do curl -s --max-time 5 http://10.44.0.2/plaintext; done; wait; \
         cat /tmp/bph7-v6-$$; rm -f /tmp/bph7-v6-$$",
    );
    assert_eq!(r, "Hello, World!".repeat(80));
    let out = topo.child.take().unwrap().wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let j: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(j["req"], 80, "{j}");
    let per = j["per_core"].as_array().unwrap();
    assert_eq!(per.len(), 2);
    for (core, c) in per.iter().enumerate() {
        assert!(c["accepted"].as_u64().unwrap() > 0, "core {core}: {j}");
    }
    assert_eq!(j["accepted"], 80, "{j}");
    assert_on_default_engine(&j, 80);
    assert_eq!(j["reset"], 0, "{j}");
}

/// Checks in a serving command's JSON summary that its `n` connections
/// ran on the engine the test process (and so the command it started)
/// runs by default.
fn assert_on_default_engine(j: &serde_json::Value, n: u64) {
    let want = match bypass::stack::TcpOpts::default().engine {
        bypass::stack::TcpEngine::Bypass => n,
        bypass::stack::TcpEngine::Smoltcp => 0,
    };
    assert_eq!(
        j["bypass_opened"], want,
        "connections on the bypass engine: {j}"
    );
    // The engine's counters are in the summary (all 0 on smoltcp); a
    // lossless local run neither times out nor runs out of slab.
    for k in [
        "retransmits",
        "rtos",
        "tlps",
        "tlp_recoveries",
        "recoveries",
        "undos",
        "timeouts",
    ] {
        assert!(j["tcp"][k].is_u64(), "tcp.{k} in the summary: {j}");
    }
    assert_eq!(j["tcp"]["timeouts"], 0, "{j}");
    assert_eq!(j["tcp"]["slab_drops"], 0, "{j}");
}

#[cfg(feature = "dpdk")]
#[test]
#[ignore = "needs root"]
fn http_over_dpdk_net_tap_serves_the_kernel() {
    common::require_root("http_over_dpdk_net_tap_serves_the_kernel");
    common::private_netns();
    common::sh("sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1");
    // DPDK's net_tap PMD creates the kernel TAP `bpd0`; the userspace
    // stack runs on the DPDK port, the kernel on the TAP's side.
    let child = Command::new(env!("CARGO_BIN_EXE_bypass"))
        .args([
            "http",
            "--port",
            "dpdk:net_tap0,iface=bpd0",
            "--ip",
            "10.46.0.2/24",
        ])
        .args(["--duration", "5", "--json", "--idle-sleep-us", "50"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut topo = Topology {
        ns: vec![],
        child: Some(child),
    };
    for _ in 0..100 {
        if std::fs::read_to_string("/proc/thread-self/net/dev")
            .unwrap()
            .contains("bpd0:")
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    common::sh("ip addr add 10.46.0.1/24 dev bpd0 && ip link set bpd0 up");
    std::thread::sleep(Duration::from_millis(300));
    let r = common::sh_out("curl -s --max-time 5 http://10.46.0.2/plaintext http://10.46.0.2/json");
    assert_eq!(r, "Hello, World!{\"message\":\"Hello, World!\"}");
    let out = topo.child.take().unwrap().wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["req"], 2, "{j}");
    assert_eq!(j["port"]["kind"], "dpdk");
    assert_eq!(j["drops_by_reason"]["bad_checksum"], 0);
}
