//! The TAP port against the Linux kernel, in a private network namespace.
#![cfg(feature = "tap")]

mod common;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use bypass::buf::{Burst, PacketBuf};
use bypass::port::tap::{TapConfig, TapPort};
use bypass::port::{MacAddr, Port, PortQueue};
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr, IpProtocol, Ipv4Address, Ipv4Packet, Ipv4Repr, UdpPacket, UdpRepr,
};

const KERNEL_IP: Ipv4Address = Ipv4Address::new(10, 99, 0, 1);
const OUR_IP: Ipv4Address = Ipv4Address::new(10, 99, 0, 2);

fn send(q: &mut bypass::port::tap::TapQueue, build: impl FnOnce(&mut [u8]) -> usize) {
    let mut b = q.alloc().unwrap();
    let n = build(b.room_mut());
    b.set_len(n);
    let mut burst = Burst::new();
    burst.push(b);
    assert_eq!(q.tx_burst(&mut burst), 1);
}

#[test]
#[ignore = "needs root"]
fn tap_exchanges_frames_with_the_kernel() {
    common::require_root("tap_exchanges_frames_with_the_kernel");
    common::private_netns();
    let our_mac = MacAddr([0x02, 0xbb, 0, 0, 0, 2]);
    let mut port = TapPort::open(&TapConfig {
        mac: Some(our_mac),
        ..TapConfig::new("bpt0")
    })
    .unwrap();
    assert_eq!(port.info().mac, our_mac);
    common::sh("sysctl -qw net.ipv6.conf.all.disable_ipv6=1; ip addr add 10.99.0.1/24 dev bpt0");
    let kernel_mac = EthernetAddress(bypass::port::sys::get_mac("bpt0").unwrap());
    let mut q = port.take_queues().pop().unwrap();

    // The kernel pings our address: it first asks who has it.
    let mut ping = std::process::Command::new("ping")
        .args(["-c", "5", "-i", "0.3", "-W", "1", "10.99.0.2"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut saw_arp_request = false;
    let mut saw_echo_request = false;
    while Instant::now() < deadline && !saw_echo_request {
        let mut rx = Burst::new();
        q.rx_burst(&mut rx);
        for f in rx {
            let eth = EthernetFrame::new_checked(f.data()).unwrap();
            assert_eq!(eth.src_addr(), kernel_mac);
            match eth.ethertype() {
                EthernetProtocol::Arp => {
                    let arp =
                        ArpRepr::parse(&ArpPacket::new_checked(eth.payload()).unwrap()).unwrap();
                    let ArpRepr::EthernetIpv4 {
                        operation,
                        target_protocol_addr,
                        source_protocol_addr,
                        ..
                    } = arp
                    else {
                        panic!("not ethernet/ipv4 arp")
                    };
                    if operation == ArpOperation::Request && target_protocol_addr == OUR_IP {
                        saw_arp_request = true;
                        assert_eq!(source_protocol_addr, KERNEL_IP);
                        // Answer: the kernel must accept our frame to go on.
                        send(&mut q, |room| {
                            let reply = ArpRepr::EthernetIpv4 {
                                operation: ArpOperation::Reply,
                                source_hardware_addr: EthernetAddress(our_mac.0),
                                source_protocol_addr: OUR_IP,
                                target_hardware_addr: kernel_mac,
                                target_protocol_addr: KERNEL_IP,
                            };
                            let e = EthernetRepr {
                                src_addr: EthernetAddress(our_mac.0),
                                dst_addr: kernel_mac,
                                ethertype: EthernetProtocol::Arp,
                            };
                            let n = e.buffer_len() + reply.buffer_len();
                            let mut fr = EthernetFrame::new_unchecked(&mut room[..n]);
                            e.emit(&mut fr);
                            reply.emit(&mut ArpPacket::new_unchecked(fr.payload_mut()));
                            n
                        });
                    }
                }
                EthernetProtocol::Ipv4 => {
                    let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
                    if ip.next_header() == IpProtocol::Icmp && ip.dst_addr() == OUR_IP {
                        assert_eq!(
                            eth.dst_addr(),
                            EthernetAddress(our_mac.0),
                            "kernel learned our MAC"
                        );
                        saw_echo_request = true;
                    }
                }
                _ => {}
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = ping.kill();
    let _ = ping.wait();
    assert!(saw_arp_request, "the kernel's ARP request reached us");
    assert!(
        saw_echo_request,
        "the kernel used our ARP reply and sent ICMP to us"
    );

    // A UDP datagram we build arrives at a kernel socket.
    let sock = UdpSocket::bind("10.99.0.1:9999").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let payload = b"hello from bypass";
    send(&mut q, |room| {
        let udp = UdpRepr {
            src_port: 4242,
            dst_port: 9999,
        };
        let ip = Ipv4Repr {
            src_addr: OUR_IP,
            dst_addr: KERNEL_IP,
            next_header: IpProtocol::Udp,
            payload_len: udp.header_len() + payload.len(),
            hop_limit: 64,
        };
        let e = EthernetRepr {
            src_addr: EthernetAddress(our_mac.0),
            dst_addr: kernel_mac,
            ethertype: EthernetProtocol::Ipv4,
        };
        let n = e.buffer_len() + ip.buffer_len() + ip.payload_len;
        let caps = ChecksumCapabilities::default();
        let mut fr = EthernetFrame::new_unchecked(&mut room[..n]);
        e.emit(&mut fr);
        let mut ipp = Ipv4Packet::new_unchecked(fr.payload_mut());
        ip.emit(&mut ipp, &caps);
        udp.emit(
            &mut UdpPacket::new_unchecked(ipp.payload_mut()),
            &OUR_IP.into(),
            &KERNEL_IP.into(),
            payload.len(),
            |b| b.copy_from_slice(payload),
            &caps,
        );
        n
    });
    let mut buf = [0u8; 64];
    let (n, from) = sock
        .recv_from(&mut buf)
        .expect("the kernel delivered our datagram");
    assert_eq!(&buf[..n], payload);
    assert_eq!(from.to_string(), "10.99.0.2:4242");
    assert_eq!(
        common::if_stat("bpt0", "rx_packets"),
        port.link_stats().tx_packets
    );
    drop(q);
    let _ = port;
}

#[test]
#[ignore = "needs root"]
fn tap_multi_queue_and_existing_devices() {
    common::require_root("tap_multi_queue_and_existing_devices");
    common::private_netns();
    // A persistent multi-queue TAP made by iproute2 is attached to, with 2 queues.
    common::sh("ip tuntap add mode tap multi_queue name bpt1");
    let mut p = TapPort::open(&TapConfig {
        queues: 2,
        mtu: Some(9000),
        ..TapConfig::new("bpt1")
    })
    .unwrap();
    assert_eq!(p.info().mtu, 9000);
    let qs = p.take_queues();
    assert_eq!(qs.len(), 2);
    assert!(p.take_queues().is_empty());
    let mut q = qs.into_iter().next().unwrap();
    let b = q.alloc().unwrap();
    assert!(b.capacity() >= 9014, "frames fit the MTU");
    drop(b);
    assert_eq!(q.pool_stats().in_use, 0);
    // A single-queue TAP cannot be opened as multi-queue: clear error.
    common::sh("ip tuntap add mode tap name bpt2");
    let e = TapPort::open(&TapConfig::new("bpt2"))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("not a multi-queue TAP"), "{e}");
    // Names are checked.
    let e = TapPort::open(&TapConfig::new("no/slash"))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("not a valid interface name"), "{e}");
}

/// The sum (folded, not complemented) of the IPv4 pseudo-header of a UDP
/// datagram of `udp_len` bytes: what a checksum field left for the device
/// holds.
fn pseudo_header_sum(src: Ipv4Address, dst: Ipv4Address, udp_len: u16) -> u16 {
    let mut sum = 17u32 + udp_len as u32;
    for a in [src.octets(), dst.octets()] {
        sum += u16::from_be_bytes([a[0], a[1]]) as u32 + u16::from_be_bytes([a[2], a[3]]) as u32;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

#[test]
#[ignore = "needs root"]
fn tap_vnet_header_carries_checksums_both_ways() {
    use bypass::buf::{Checksum, L4Offload, TxOffload};
    common::require_root("tap_vnet_header_carries_checksums_both_ways");
    common::private_netns();
    let kernel_ip = Ipv4Address::new(10, 98, 0, 1);
    let our_ip = Ipv4Address::new(10, 98, 0, 2);
    let our_mac = MacAddr([0x02, 0xbb, 0, 0, 0, 3]);
    let mut port = TapPort::open(&TapConfig {
        mac: Some(our_mac),
        vnet: true,
        ..TapConfig::new("bpt2")
    })
    .unwrap();
    common::sh(&format!(
        "sysctl -qw net.ipv6.conf.all.disable_ipv6=1; ip addr add {kernel_ip}/24 dev bpt2 && \
         ip neigh replace {our_ip} lladdr {our_mac} dev bpt2 nud permanent"
    ));
    let kernel_mac = bypass::port::sys::get_mac("bpt2").unwrap();
    let mut q = port.take_queues().pop().unwrap();
    let sock = UdpSocket::bind((std::net::Ipv4Addr::from(kernel_ip.octets()), 7777)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();

    // Kernel -> us: the kernel leaves the UDP checksum to us (TUN_F_CSUM)
    // or checks it; either way the buffer says it is good.
    sock.send_to(
        b"from-kernel",
        (std::net::Ipv4Addr::from(our_ip.octets()), 9999),
    )
    .unwrap();
    let seen = common::find_ipv4(&mut q, Duration::from_secs(5), |b, _, ip| {
        if ip.next_header() != IpProtocol::Udp {
            return None;
        }
        let udp = UdpPacket::new_checked(ip.payload()).unwrap();
        (udp.dst_port() == 9999).then(|| {
            assert_eq!(udp.payload(), b"from-kernel");
            b.rx_checksum()
        })
    });
    let c = seen.expect("the kernel's datagram reached the port");
    assert_eq!(c.l4, Checksum::Good, "{c:?}");

    // Us -> kernel: a datagram whose IPv4 header checksum is zero and whose
    // UDP checksum field holds only the pseudo-header sum. The kernel drops
    // it unless the vnet header asks it to finish the checksum.
    let payload = b"to-kernel";
    let build = |room: &mut [u8]| -> usize {
        let e = bypass::testing::Ends {
            src_mac: our_mac.0,
            dst_mac: kernel_mac,
            src_ip: std::net::Ipv4Addr::from(our_ip.octets()),
            dst_ip: std::net::Ipv4Addr::from(kernel_ip.octets()),
        };
        let n = bypass::testing::emit_udp(room, &e, 9999, 7777, payload);
        let mut f = EthernetFrame::new_unchecked(&mut room[..n]);
        let mut ip = Ipv4Packet::new_unchecked(f.payload_mut());
        ip.set_checksum(0);
        let mut udp = UdpPacket::new_unchecked(ip.payload_mut());
        let len = udp.len();
        udp.set_checksum(pseudo_header_sum(our_ip, kernel_ip, len));
        n
    };
    let mut sent = |offload: bool| {
        let mut b = q.alloc().unwrap();
        let n = build(b.room_mut());
        b.set_len(n);
        if offload {
            assert!(b.set_tx_offload(TxOffload {
                ipv4_checksum: true,
                l4_checksum: L4Offload::Udp,
                ..Default::default()
            }));
        }
        let mut burst = Burst::new();
        burst.push(b);
        assert_eq!(q.tx_burst(&mut burst), 1);
        let mut buf = [0u8; 64];
        sock.recv_from(&mut buf)
            .ok()
            .map(|(n, _)| buf[..n].to_vec())
    };
    // Without the request the checksums are wrong: the kernel drops it.
    assert_eq!(
        sent(false),
        None,
        "a datagram with partial checksums was accepted"
    );
    assert_eq!(sent(true).as_deref(), Some(&payload[..]));
}
