//! TSO over a TAP with virtio-net headers: one large TCP segment, written
//! once with a TSO request, reaches a kernel socket intact (delivered
//! locally as one packet), and is cut into MSS-sized segments when the
//! kernel forwards it out of an interface without TSO. Each test runs in
//! private network namespaces of its own.
#![cfg(feature = "tap")]

mod common;

use std::io::Read;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bypass::buf::{Burst, PacketBuf, TxOffload};
use bypass::port::tap::{TapConfig, TapPort, TapQueue};
use bypass::port::{MacAddr, Port, PortQueue};
use bypass::testing::{emit_tcp, emit_udp, syn, Ends};
use smoltcp::wire::{EthernetFrame, IpProtocol, Ipv4Packet, TcpControl, TcpPacket, TcpSeqNumber};

const KERNEL_IP: Ipv4Addr = Ipv4Addr::new(10, 97, 0, 1);
const OUR_IP: Ipv4Addr = Ipv4Addr::new(10, 97, 0, 2);
const MSS: u16 = 1460;

/// The folded (not complemented) sum of the IPv4 pseudo-header of a TCP
/// segment of `tcp_len` bytes: what a checksum field left to the device
/// holds.
fn pseudo_header_sum(src: Ipv4Addr, dst: Ipv4Addr, tcp_len: u32) -> u16 {
    let mut sum = 6u32 + tcp_len;
    for a in [src.octets(), dst.octets()] {
        sum += u16::from_be_bytes([a[0], a[1]]) as u32 + u16::from_be_bytes([a[2], a[3]]) as u32;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// Sends one frame built by `build`, with `offload` recorded on it.
fn send(q: &mut TapQueue, offload: Option<TxOffload>, build: impl FnOnce(&mut [u8]) -> usize) {
    let mut b = q.alloc().expect("a buffer");
    let n = build(b.room_mut());
    assert!(b.set_len(n));
    if let Some(o) = offload {
        assert!(b.set_tx_offload(o), "the buffer carries the request");
    }
    let mut burst = Burst::new();
    burst.push(b);
    assert_eq!(q.tx_burst(&mut burst), 1);
}

/// The next TCP segment from the kernel to our port `port`, as (seq, ack,
/// window, flags SYN and ACK), within 5 s.
fn next_tcp(q: &mut TapQueue, port: u16) -> (u32, u32, u16, bool) {
    common::find_ipv4(q, Duration::from_secs(5), |_, _, ip| {
        let tcp = TcpPacket::new_checked(ip.payload()).ok()?;
        (ip.next_header() == IpProtocol::Tcp && tcp.dst_port() == port).then(|| {
            (
                tcp.seq_number().0 as u32,
                tcp.ack_number().0 as u32,
                tcp.window_len(),
                tcp.syn(),
            )
        })
    })
    .unwrap_or_else(|| panic!("no TCP segment from the kernel to port {port} within 5 s"))
}

/// The TCP handshake with a kernel listener at `dst:8080`, by hand, from
/// our port `sport` with ISN `isn`; returns the kernel's ISN and window.
fn handshake(q: &mut TapQueue, e: &Ends, sport: u16, isn: u32) -> (u32, u16) {
    send(q, None, |room| emit_tcp(room, e, &syn(sport, 8080, isn)));
    let (their_isn, ack, window, is_syn) = next_tcp(q, sport);
    assert!(is_syn && ack == isn + 1, "a SYN-ACK");
    send(q, None, |room| {
        emit_tcp(room, e, &ack_seg(sport, isn + 1, their_isn + 1, &[]))
    });
    (their_isn, window)
}

/// An ACK from `sport` to 8080 carrying `payload`.
fn ack_seg(sport: u16, seq: u32, ack: u32, payload: &[u8]) -> smoltcp::wire::TcpRepr<'_> {
    let mut seg = syn(sport, 8080, seq);
    seg.control = TcpControl::None;
    seg.max_seg_size = None;
    seg.ack_number = Some(TcpSeqNumber(ack as i32));
    seg.payload = payload;
    seg
}

/// What the port is asked to do for the large segment.
const TSO: TxOffload = TxOffload::tso_ipv4(20, MSS);

/// Sends `data` as one TCP segment from `sport` with a TSO request: the
/// IPv4 header checksum zero, Don't Fragment set, and the TCP checksum
/// field holding only the pseudo-header sum (the port and the kernel
/// finish them).
fn send_large(q: &mut TapQueue, e: &Ends, sport: u16, seq: u32, ack: u32, data: &[u8]) {
    let seg = ack_seg(sport, seq, ack, data);
    send(q, Some(TSO), |room| {
        let len = emit_tcp(room, e, &seg);
        let mut f = EthernetFrame::new_unchecked(&mut room[..len]);
        let mut ip = Ipv4Packet::new_unchecked(f.payload_mut());
        ip.set_dont_frag(true);
        ip.set_checksum(0);
        let mut tcp = TcpPacket::new_unchecked(ip.payload_mut());
        let sum = pseudo_header_sum(e.src_ip, e.dst_ip, (20 + data.len()) as u32);
        tcp.set_checksum(sum);
        len
    });
}

/// Waits up to 5 s for a connection on `listener`.
fn accept(listener: &TcpListener) -> TcpStream {
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match listener.accept() {
            Ok((c, _)) => {
                c.set_nonblocking(false).unwrap();
                c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                return c;
            }
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(2)),
            Err(err) => panic!("the kernel never accepted: {err}"),
        }
    }
}

/// A TSO-enabled TAP `name` whose kernel side is `KERNEL_IP`, with our
/// address and MAC in its neighbour table; returns it, its queue and the
/// ends of our frames to `dst`.
fn tso_tap(name: &str, dst: Ipv4Addr) -> (TapPort, TapQueue, Ends) {
    let our_mac = MacAddr([0x02, 0xbb, 0, 0, 0, 5]);
    let mut port = TapPort::open(&TapConfig {
        mac: Some(our_mac),
        vnet: true,
        tso: true,
        frames: 64,
        ..TapConfig::new(name)
    })
    .unwrap();
    assert!(port.info().caps.tso);
    common::sh(&format!(
        "sysctl -qw net.ipv6.conf.all.disable_ipv6=1; ip addr add {KERNEL_IP}/24 dev {name} && \
         ip neigh replace {OUR_IP} lladdr {our_mac} dev {name} nud permanent"
    ));
    let e = Ends {
        src_mac: our_mac.0,
        dst_mac: bypass::port::sys::get_mac(name).unwrap(),
        src_ip: OUR_IP,
        dst_ip: dst,
    };
    let q = port.take_queues().pop().unwrap();
    (port, q, e)
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 % 251) as u8).collect()
}

#[test]
#[ignore = "needs root"]
fn tap_tso_segment_reaches_a_kernel_socket_intact() {
    common::require_root("tap_tso_segment_reaches_a_kernel_socket_intact");
    common::private_netns();
    let (port, mut q, e) = tso_tap("bpt5", KERNEL_IP);
    let listener = TcpListener::bind((KERNEL_IP, 8080)).unwrap();
    let (sport, isn) = (40_000u16, 1_000u32);
    let (their_isn, window) = handshake(&mut q, &e, sport, isn);
    let mut conn = accept(&listener);

    // One segment of many MSS: the whole window the kernel offered, up to
    // 60,000 bytes. Delivered locally, it stays one packet.
    let n = (window as usize).min(60_000);
    assert!(
        n > 8 * MSS as usize,
        "window {window} too small for the test"
    );
    let data = pattern(n);
    let rx_before = common::if_stat("bpt5", "rx_packets");
    send_large(&mut q, &e, sport, isn + 1, their_isn + 1, &data);
    assert_eq!(
        common::if_stat("bpt5", "rx_packets") - rx_before,
        1,
        "{n} bytes of payload went in as one frame"
    );
    assert_eq!(port.link_stats().tx_errors, 0);

    // The kernel socket has every byte, in order; the kernel acknowledges
    // the whole segment.
    let mut got = vec![0u8; n];
    conn.read_exact(&mut got)
        .expect("the payload reached the socket");
    assert!(got == data, "the payload arrived intact");
    let deadline = Instant::now() + Duration::from_secs(5);
    let want = isn + 1 + n as u32;
    while next_tcp(&mut q, sport).1 != want {
        assert!(Instant::now() < deadline, "no ACK for the whole segment");
    }

    // A TSO request on something that is not a TCP segment: consumed,
    // dropped and counted.
    send(&mut q, Some(TSO), |room| emit_udp(room, &e, 9, 9, &[0; 64]));
    assert_eq!(port.link_stats().tx_errors, 1);
}

/// The far end of a veth pair, in a namespace of its own: a listener on
/// `FAR_IP:8080` behind the tap's namespace.
const FAR_IP: Ipv4Addr = Ipv4Addr::new(10, 95, 0, 2);
const NEAR_IP: Ipv4Addr = Ipv4Addr::new(10, 95, 0, 1);
/// The tap's network, where our address is.
const OUR_NET: &str = "10.97.0.0/24";

#[test]
#[ignore = "needs root"]
fn tap_tso_segment_is_cut_into_mss_segments_when_forwarded() {
    common::require_root("tap_tso_segment_is_cut_into_mss_segments_when_forwarded");
    common::private_netns();
    let (port, mut q, e) = tso_tap("bpt6", FAR_IP);
    // The tap's namespace forwards to a veth with no segmentation or
    // checksum offload, so the kernel itself must cut the segment by the
    // GSO header's MSS (and fill each segment's checksum); Don't Fragment
    // is set, so without the GSO header the frame would be dropped.
    common::sh(&format!(
        "sysctl -qw net.ipv4.ip_forward=1 && ip link add bva type veth peer name bvb && \
         ip addr add {NEAR_IP}/24 dev bva && ip link set bva up && \
         ethtool -K bva tso off gso off tx off >/dev/null"
    ));
    // The far side: a thread in a namespace of its own, which receives the
    // veth's other end.
    let (tid_tx, tid_rx) = mpsc::channel::<i32>();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    let n = 50_000usize;
    let far = std::thread::spawn(move || {
        common::private_netns();
        // This thread's id, from /proc/thread-self -> "PID/task/TID".
        let link = std::fs::read_link("/proc/thread-self").unwrap();
        let tid = link.file_name().unwrap().to_str().unwrap().parse().unwrap();
        tid_tx.send(tid).unwrap();
        go_rx.recv().unwrap();
        common::sh(&format!(
            "ip addr add {FAR_IP}/24 dev bvb && ip link set bvb up && \
             ip route add {OUR_NET} via {NEAR_IP}"
        ));
        let listener = TcpListener::bind((FAR_IP, 8080)).unwrap();
        // Counted before the sender is told to go (after, its segments
        // may already be in).
        let rx_before = common::if_stat("bvb", "rx_packets");
        ready_tx.send(()).unwrap();
        let mut conn = accept(&listener);
        let mut got = vec![0u8; n];
        conn.read_exact(&mut got)
            .expect("the payload reached the far socket");
        (got, common::if_stat("bvb", "rx_packets") - rx_before)
    });
    let tid = tid_rx.recv().unwrap();
    common::sh(&format!("ip link set bvb netns /proc/{tid}/ns/net"));
    go_tx.send(()).unwrap();
    ready_rx.recv_timeout(Duration::from_secs(10)).unwrap();

    let (sport, isn) = (40_001u16, 5_000u32);
    let (their_isn, window) = handshake(&mut q, &e, sport, isn);
    assert!(
        window as usize >= n,
        "window {window} too small for the test"
    );
    let data = pattern(n);
    send_large(&mut q, &e, sport, isn + 1, their_isn + 1, &data);
    let (got, far_packets) = far.join().expect("the far side");
    assert!(got == data, "the payload arrived intact");
    let segments = n.div_ceil(MSS as usize) as u64;
    assert!(
        far_packets >= segments,
        "{far_packets} packets reached the far end; {segments} segments of {MSS} expected"
    );
    assert_eq!(port.link_stats().tx_errors, 0);
}
