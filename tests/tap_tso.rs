//! TSO over a TAP with virtio-net headers: one large TCP segment, written
//! once with a TSO request, reaches a kernel socket intact, in a private
//! network namespace.
#![cfg(feature = "tap")]

mod common;

use std::io::Read;
use std::net::{Ipv4Addr, TcpListener};
use std::time::{Duration, Instant};

use bypass::buf::{Burst, L4Offload, PacketBuf, TxOffload};
use bypass::port::tap::{TapConfig, TapPort, TapQueue};
use bypass::port::{MacAddr, Port, PortQueue};
use bypass::testing::{emit_tcp, emit_udp, syn, Ends};
use smoltcp::wire::{
    EthernetFrame, EthernetProtocol, IpProtocol, Ipv4Packet, TcpControl, TcpPacket, TcpSeqNumber,
};

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
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let mut rx = Burst::new();
        if q.rx_burst(&mut rx) == 0 {
            std::thread::sleep(Duration::from_millis(2));
            continue;
        }
        for b in rx.iter() {
            let Ok(eth) = EthernetFrame::new_checked(b.data()) else {
                continue;
            };
            if eth.ethertype() != EthernetProtocol::Ipv4 {
                continue;
            }
            let Ok(ip) = Ipv4Packet::new_checked(eth.payload()) else {
                continue;
            };
            if ip.next_header() != IpProtocol::Tcp {
                continue;
            }
            let Ok(tcp) = TcpPacket::new_checked(ip.payload()) else {
                continue;
            };
            if tcp.dst_port() == port {
                return (
                    tcp.seq_number().0 as u32,
                    tcp.ack_number().0 as u32,
                    tcp.window_len(),
                    tcp.syn(),
                );
            }
        }
    }
    panic!("no TCP segment from the kernel to port {port} within 5 s");
}

#[test]
#[ignore = "needs root"]
fn tap_tso_segment_reaches_a_kernel_socket_intact() {
    common::require_root("tap_tso_segment_reaches_a_kernel_socket_intact");
    common::private_netns();
    let our_mac = MacAddr([0x02, 0xbb, 0, 0, 0, 5]);
    let mut port = TapPort::open(&TapConfig {
        mac: Some(our_mac),
        vnet: true,
        tso: true,
        frames: 64,
        ..TapConfig::new("bpt5")
    })
    .unwrap();
    assert!(port.info().caps.tso);
    common::sh(&format!(
        "sysctl -qw net.ipv6.conf.all.disable_ipv6=1; ip addr add {KERNEL_IP}/24 dev bpt5 && \
         ip neigh replace {OUR_IP} lladdr {our_mac} dev bpt5 nud permanent"
    ));
    let kernel_mac = bypass::port::sys::get_mac("bpt5").unwrap();
    let mut q = port.take_queues().pop().unwrap();
    let listener = TcpListener::bind((KERNEL_IP, 8080)).unwrap();
    listener.set_nonblocking(true).unwrap();
    let e = Ends {
        src_mac: our_mac.0,
        dst_mac: kernel_mac,
        src_ip: OUR_IP,
        dst_ip: KERNEL_IP,
    };

    // The handshake, by hand.
    let (sport, isn) = (40_000u16, 1_000u32);
    send(&mut q, None, |room| emit_tcp(room, &e, &syn(sport, 8080, isn)));
    let (their_isn, ack, window, is_syn) = next_tcp(&mut q, sport);
    assert!(is_syn && ack == isn + 1, "a SYN-ACK");
    let mut seg = syn(sport, 8080, isn + 1);
    seg.control = TcpControl::None;
    seg.max_seg_size = None;
    seg.ack_number = Some(TcpSeqNumber(their_isn.wrapping_add(1) as i32));
    send(&mut q, None, |room| emit_tcp(room, &e, &seg));
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut conn = loop {
        match listener.accept() {
            Ok((c, _)) => break c,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(2)),
            Err(err) => panic!("the kernel never accepted: {err}"),
        }
    };
    conn.set_nonblocking(false).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();

    // One segment of many MSS: the whole window the kernel offered, up to
    // 60,000 bytes, with the IPv4 header checksum zero and the TCP checksum
    // field holding only the pseudo-header sum (the port and the kernel
    // finish them).
    let n = (window as usize).min(60_000);
    assert!(n > 8 * MSS as usize, "window {window} too small for the test");
    let data: Vec<u8> = (0..n).map(|i| (i * 7 % 251) as u8).collect();
    seg.payload = &data;
    let tso = TxOffload {
        l2_len: 14,
        l3_len: 20,
        l4_len: 20,
        ipv4_checksum: true,
        l4_checksum: L4Offload::Tcp,
        tso_mss: MSS,
    };
    let rx_before = common::if_stat("bpt5", "rx_packets");
    send(&mut q, Some(tso), |room| {
        let len = emit_tcp(room, &e, &seg);
        let mut f = EthernetFrame::new_unchecked(&mut room[..len]);
        let mut ip = Ipv4Packet::new_unchecked(f.payload_mut());
        ip.set_checksum(0);
        let mut tcp = TcpPacket::new_unchecked(ip.payload_mut());
        tcp.set_checksum(pseudo_header_sum(OUR_IP, KERNEL_IP, (20 + n) as u32));
        len
    });
    assert_eq!(
        common::if_stat("bpt5", "rx_packets") - rx_before,
        1,
        "{n} bytes of payload went in as one frame"
    );
    let link = port.link_stats();
    assert_eq!(link.tx_errors, 0);

    // The kernel socket has every byte, in order; the kernel acknowledges
    // the whole segment.
    let mut got = vec![0u8; n];
    conn.read_exact(&mut got).expect("the payload reached the socket");
    assert!(got == data, "the payload arrived intact");
    let deadline = Instant::now() + Duration::from_secs(5);
    let want = isn + 1 + n as u32;
    while next_tcp(&mut q, sport).1 != want {
        assert!(Instant::now() < deadline, "no ACK for the whole segment");
    }

    // A TSO request on something that is not a TCP segment: consumed,
    // dropped and counted.
    send(&mut q, Some(tso), |room| emit_udp(room, &e, 9, 9, &[0; 64]));
    assert_eq!(port.link_stats().tx_errors, 1);
    drop(conn);
    drop(q);
}
