//! AF_XDP over a veth pair, each test in a private network namespace of its
//! own: `xa` is our port, `xb` is the kernel's end of the cable.
#![cfg(feature = "af-xdp")]

mod common;

use std::net::{Ipv4Addr, UdpSocket};
use std::time::{Duration, Instant};

use bypass::buf::{Burst, PacketBuf};
use bypass::port::xdp::{self, XdpConfig, XdpMode, XdpPort, XdpQueue, ZeroCopy};
use bypass::port::{MacAddr, Port, PortQueue};
use smoltcp::wire::{EthernetFrame, EthernetProtocol, IpProtocol, Ipv4Packet, UdpPacket};

use common::{if_stat, private_netns, sh, sh_out};

const OUR_IP: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 1);
const KERNEL_IP: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 2);

/// A veth pair `xa` (ours) / `xb` (the kernel's, with an address) in a new
/// private namespace; `queues` queues each way.
fn veth(queues: u16) -> MacAddr {
    private_netns();
    // No IPv6 on the links: the kernel's own neighbour discovery and MLD
    // frames would arrive at our port at moments of their choosing (one
    // landing during a frame audit is seen both in the fill ring and in
    // the rx ring, which is no leak but fails the audit).
    sh("sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1");
    sh(&format!(
        "ip link add xa numtxqueues {queues} numrxqueues {queues} type veth peer name xb \
         numtxqueues {queues} numrxqueues {queues}"
    ));
    sh("ip link set xa up && ip link set xb up");
    sh(&format!("ip addr add {KERNEL_IP}/24 dev xb"));
    // The kernel must know where OUR_IP is without ARP (nobody answers).
    let xa_mac = link_mac("xa");
    sh(&format!(
        "ip neigh replace {OUR_IP} lladdr {xa_mac} dev xb nud permanent"
    ));
    xa_mac
}

fn link_mac(ifname: &str) -> MacAddr {
    let out = sh_out(&format!("ip -o link show {ifname}"));
    let pos = out.find("link/ether ").expect("an ethernet link") + "link/ether ".len();
    out[pos..pos + 17].parse().expect("a MAC")
}

fn xdp_attached(ifname: &str) -> bool {
    sh_out(&format!("ip link show {ifname}")).contains("xdp")
}

/// Receives until `n` frames arrived on `q` or 3 s passed; returns them.
fn recv_n(q: &mut XdpQueue, n: usize) -> Vec<bypass::port::xdp::XdpBuf> {
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut got = Vec::new();
    while got.len() < n && Instant::now() < deadline {
        let mut b = Burst::new();
        if q.rx_burst(&mut b) == 0 {
            std::thread::sleep(Duration::from_micros(200));
        }
        got.extend(b);
    }
    got
}

fn is_udp_to(frame: &[u8], port: u16) -> bool {
    let Ok(eth) = EthernetFrame::new_checked(frame) else {
        return false;
    };
    if eth.ethertype() != EthernetProtocol::Ipv4 {
        return false;
    }
    let Ok(ip) = Ipv4Packet::new_checked(eth.payload()) else {
        return false;
    };
    if ip.next_header() != IpProtocol::Udp {
        return false;
    }
    UdpPacket::new_checked(ip.payload()).is_ok_and(|u| u.dst_port() == port)
}

/// A UDP frame from us to the kernel's end.
fn udp_frame(buf: &mut [u8], src: MacAddr, dst: MacAddr, sport: u16, payload: &[u8]) -> usize {
    let ends = bypass::testing::Ends {
        src_mac: src.0,
        dst_mac: dst.0,
        src_ip: OUR_IP,
        dst_ip: KERNEL_IP,
    };
    bypass::testing::emit_udp(buf, &ends, sport, 7777, payload)
}

fn assert_all_frames_home(q: &mut XdpQueue) {
    q.flush();
    let a = q.audit().unwrap_or_else(|e| panic!("frame audit: {e}"));
    assert_eq!(a.held, 0, "{a:?}");
    assert_eq!(a.in_kernel, 0, "{a:?}");
    assert_eq!(a.missing(), 0, "{a:?}");
    assert_eq!(
        a.free + a.fill_ring + a.rx_ring + a.tx_ring + a.completion_ring,
        a.total,
        "{a:?}"
    );
}

#[test]
#[ignore = "needs root"]
fn kernel_frames_arrive_at_our_port() {
    common::require_root("kernel_frames_arrive_at_our_port");
    veth(1);
    let mut port = XdpPort::open(&XdpConfig::new("xa")).unwrap();
    assert_eq!(port.modes().attach, XdpMode::Native, "veth has native XDP");
    assert!(!port.modes().zerocopy, "veth has no zero-copy");
    assert!(xdp_attached("xa"));
    let mut q = port.take_queues().pop().unwrap();
    let s = UdpSocket::bind((KERNEL_IP, 0)).unwrap();
    for i in 0..100u32 {
        s.send_to(&i.to_be_bytes(), (OUR_IP, 5555)).unwrap();
    }
    let got = recv_n(&mut q, 100);
    let udp: Vec<_> = got.iter().filter(|b| is_udp_to(b.data(), 5555)).collect();
    assert_eq!(
        udp.len(),
        100,
        "got {} frames, {} UDP",
        got.len(),
        udp.len()
    );
    assert_eq!(port.link_stats().rx_packets, got.len() as u64);
    drop(udp);
    drop(got);
    assert_all_frames_home(&mut q);
    drop(q);
    drop(port);
    assert!(!xdp_attached("xa"), "the XDP program must be gone");
}

#[test]
#[ignore = "needs root"]
fn frames_we_send_arrive_on_the_kernel_side() {
    common::require_root("frames_we_send_arrive_on_the_kernel_side");
    let xa_mac = veth(1);
    let xb_mac = link_mac("xb");
    let sock = UdpSocket::bind((KERNEL_IP, 7777)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut port = XdpPort::open(&XdpConfig::new("xa")).unwrap();
    let mut q = port.take_queues().pop().unwrap();
    let before = if_stat("xb", "rx_packets");
    const N: usize = 200;
    let mut sent = 0;
    let deadline = Instant::now() + Duration::from_secs(3);
    while sent < N && Instant::now() < deadline {
        let mut burst = Burst::new();
        while !burst.is_full() && sent + burst.len() < N {
            let mut b = q.alloc().expect("a free frame");
            let i = (sent + burst.len()) as u32;
            let len = udp_frame(b.room_mut(), xa_mac, xb_mac, 4000, &i.to_be_bytes());
            assert!(b.set_len(len));
            burst.push(b);
        }
        sent += q.tx_burst(&mut burst);
        q.flush();
        drop(burst); // frames the ring did not take go home
    }
    assert_eq!(sent, N);
    let mut seen = [false; N];
    let mut buf = [0u8; 64];
    for _ in 0..N {
        let (n, from) = sock.recv_from(&mut buf).expect("a datagram from our port");
        assert_eq!((n, from.port()), (4, 4000));
        let i = u32::from_be_bytes(buf[..4].try_into().unwrap()) as usize;
        assert!(!seen[i], "datagram {i} twice");
        seen[i] = true;
    }
    assert!(if_stat("xb", "rx_packets") - before >= N as u64);
    assert_eq!(port.link_stats().tx_packets, N as u64);

    // Zero copy both ways: received frames go back out as they are.
    let s = UdpSocket::bind((KERNEL_IP, 0)).unwrap();
    for _ in 0..10 {
        s.send_to(b"echo", (OUR_IP, 5555)).unwrap();
    }
    let mut got: Burst<_> = recv_n(&mut q, 10)
        .into_iter()
        .filter(|b| is_udp_to(b.data(), 5555))
        .collect();
    assert_eq!(got.len(), 10);
    let n = q.tx_burst(&mut got);
    q.flush();
    assert_eq!(n, 10);
    std::thread::sleep(Duration::from_millis(50));
    assert_all_frames_home(&mut q);
    drop(q);
    drop(port);
    assert!(!xdp_attached("xa"));
}

#[test]
#[ignore = "needs root"]
fn one_socket_per_queue() {
    common::require_root("one_socket_per_queue");
    veth(2);
    let mut cfg = XdpConfig::new("xa");
    cfg.queues = 2;
    let mut port = XdpPort::open(&cfg).unwrap();
    let mut qs = port.take_queues();
    assert_eq!(qs.len(), 2);
    assert_eq!((qs[0].device_queue(), qs[1].device_queue()), (0, 1));
    assert_eq!(port.xsk_stats().len(), 2, "two XDP sockets");
    // Many flows: the sending veth picks a queue per flow hash.
    const FLOWS: u16 = 64;
    let socks: Vec<UdpSocket> = (0..FLOWS)
        .map(|_| UdpSocket::bind((KERNEL_IP, 0)).unwrap())
        .collect();
    for s in &socks {
        s.send_to(b"mq", (OUR_IP, 5555)).unwrap();
    }
    let mut per_queue = [0usize; 2];
    let deadline = Instant::now() + Duration::from_secs(3);
    while per_queue.iter().sum::<usize>() < FLOWS as usize && Instant::now() < deadline {
        for (i, q) in qs.iter_mut().enumerate() {
            let mut b = Burst::new();
            q.rx_burst(&mut b);
            per_queue[i] += b.iter().filter(|b| is_udp_to(b.data(), 5555)).count();
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    assert_eq!(
        per_queue.iter().sum::<usize>(),
        FLOWS as usize,
        "{per_queue:?}"
    );
    assert!(
        per_queue.iter().all(|&n| n > 0),
        "both queues got flows: {per_queue:?}"
    );
    for q in &mut qs {
        assert_all_frames_home(q);
    }
    drop(qs);
    drop(port);
    assert!(!xdp_attached("xa"));
}

#[test]
#[ignore = "needs root"]
fn skb_mode_works_and_is_reported() {
    common::require_root("skb_mode_works_and_is_reported");
    veth(1);
    let mut cfg = XdpConfig::new("xa");
    cfg.mode = XdpMode::Skb;
    cfg.zerocopy = ZeroCopy::Off;
    let mut port = XdpPort::open(&cfg).unwrap();
    assert_eq!(port.modes().attach, XdpMode::Skb);
    assert!(sh_out("ip link show xa").contains("xdpgeneric"));
    assert_eq!(
        xdp::attached_mode("xa").unwrap(),
        xdp::netlink::Attached::Skb
    );
    let mut q = port.take_queues().pop().unwrap();
    let s = UdpSocket::bind((KERNEL_IP, 0)).unwrap();
    for _ in 0..20 {
        s.send_to(b"skb", (OUR_IP, 5555)).unwrap();
    }
    let got = recv_n(&mut q, 20);
    assert_eq!(got.iter().filter(|b| is_udp_to(b.data(), 5555)).count(), 20);
    drop(got);
    assert_all_frames_home(&mut q);
    drop(q);
    drop(port);
    assert!(!xdp_attached("xa"));
}

#[test]
#[ignore = "needs root"]
fn zero_copy_on_veth_is_refused_clearly() {
    common::require_root("zero_copy_on_veth_is_refused_clearly");
    veth(1);
    let mut cfg = XdpConfig::new("xa");
    cfg.zerocopy = ZeroCopy::Require;
    let e = XdpPort::open(&cfg)
        .err()
        .expect("veth has no zero-copy")
        .to_string();
    assert!(e.contains("does not support AF_XDP zero-copy"), "{e}");
    assert!(!xdp_attached("xa"), "a failed open leaves nothing behind");
}

#[test]
#[ignore = "needs root"]
fn leftover_of_ours_is_replaced_and_foreign_program_is_kept() {
    common::require_root("leftover_of_ours_is_replaced_and_foreign_program_is_kept");
    veth(1);
    // What a crashed run on a kernel without XDP links leaves: our program,
    // attached the legacy way, with nobody holding it.
    xdp::plant_legacy_program("xa", "bypass_xsk_old", true).unwrap();
    assert!(sh_out("ip link show xa").contains("xdpgeneric"));
    let mut port = XdpPort::open(&XdpConfig::new("xa")).unwrap();
    assert_eq!(port.modes().attach, XdpMode::Native);
    let mut q = port.take_queues().pop().unwrap();
    let s = UdpSocket::bind((KERNEL_IP, 0)).unwrap();
    s.send_to(b"hi", (OUR_IP, 5555)).unwrap();
    assert!(recv_n(&mut q, 1).iter().any(|b| is_udp_to(b.data(), 5555)));
    // While we run, a second open is refused (our link holds the program).
    let e = XdpPort::open(&XdpConfig::new("xa"))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("another running bypass"), "{e}");
    drop(q);
    drop(port);
    assert!(!xdp_attached("xa"));

    // Someone else's program: refused, and left where it is.
    xdp::plant_legacy_program("xa", "their_prog", false).unwrap();
    let e = XdpPort::open(&XdpConfig::new("xa"))
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("`their_prog`") && e.contains("did not load"),
        "{e}"
    );
    assert!(
        sh_out("ip link show xa").contains("xdp"),
        "foreign program kept"
    );
    sh("ip link set dev xa xdp off");
}

#[test]
#[ignore = "needs root"]
fn user_errors_are_one_sentence() {
    common::require_root("user_errors_are_one_sentence");
    veth(1);
    let mut cfg = XdpConfig::new("xa");
    cfg.queues = 3;
    let e = XdpPort::open(&cfg).err().unwrap().to_string();
    assert!(
        e.contains("has 1 queue(s)") && e.contains("out of range"),
        "{e}"
    );
    sh("ip link set xa down");
    let e = XdpPort::open(&XdpConfig::new("xa"))
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("is down") && e.contains("ip link set xa up"),
        "{e}"
    );
    let e = XdpPort::open(&XdpConfig::new("nosuch0"))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("no interface named `nosuch0`"), "{e}");
    assert!(!xdp_attached("xa"));
}

#[test]
#[ignore = "needs root"]
fn without_privileges_the_tool_says_so() {
    common::require_root("without_privileges_the_tool_says_so");
    veth(1);
    let out = std::process::Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(env!("CARGO_BIN_EXE_bypass"))
        .args(["l2fwd", "--port", "xdp:xa", "--duration", "1"])
        .output()
        .expect("run setpriv");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("needs root") && err.contains("CAP_BPF"),
        "stderr: {err}"
    );
    assert!(!xdp_attached("xa"));
}
