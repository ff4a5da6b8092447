//! DPDK over `net_tap` inside a private network namespace: a UDP datagram
//! from the kernel arrives in an mbuf, and a frame built in an mbuf reaches
//! a kernel UDP socket. The tap PMD offers checksum offloads: received
//! frames say their checksums were checked, and a frame sent with a zero
//! IPv4 header checksum and a checksum request arrives intact. Nothing
//! leaves the namespace.
#![cfg(feature = "dpdk")]

mod common;
mod dpdk_util;

use std::net::UdpSocket;
use std::time::Duration;

use bypass::buf::{Burst, Checksum, PacketBuf, TxOffload};
use bypass::port::dpdk::ethdev::{RX_OFFLOAD_CHECKSUM, TX_OFFLOAD_CHECKSUM};
use bypass::port::dpdk::{eal, DpdkConfig, DpdkPort, Mbuf};
use bypass::port::{MacAddr, Port, PortQueue};
use dpdk_util::Mem;
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, IpProtocol, Ipv4Address,
    Ipv4Packet, Ipv4Repr, UdpPacket, UdpRepr,
};

const IFACE: &str = "dtap0";
const OUR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const KERNEL_IP: Ipv4Address = Ipv4Address::new(10, 77, 0, 1);
const OUR_IP: Ipv4Address = Ipv4Address::new(10, 77, 0, 2);

#[test]
#[ignore = "needs root"]
fn tap_kernel_exchange_no_huge() {
    common::require_root("tap_kernel_exchange_no_huge");
    dpdk_util::run_child("tap_scenario", Mem::NoHuge);
}

#[test]
#[ignore = "needs root"]
fn tap_kernel_exchange_hugepages() {
    common::require_root("tap_kernel_exchange_hugepages");
    dpdk_util::run_child("tap_scenario", Mem::Huge);
}

#[test]
#[ignore = "run in its own process by tap_kernel_exchange_*"]
fn tap_scenario() {
    // The tap, EAL's threads and the sockets all live in this namespace.
    common::private_netns();
    let devargs = format!("net_tap0,iface={IFACE}");
    eal::init(&dpdk_util::child_eal(&[&devargs])).expect("EAL init");
    let mut cfg = DpdkConfig::new(&devargs);
    cfg.promisc = true;
    let mut port = DpdkPort::open(&cfg).expect("open net_tap0");
    assert_eq!(port.driver(), "net_tap");
    let baseline = port.pools_in_use();
    let off = port.offloads();
    assert_eq!(
        off.rx & RX_OFFLOAD_CHECKSUM,
        RX_OFFLOAD_CHECKSUM,
        "net_tap offers rx checksum offloads: {off:?}"
    );
    assert_ne!(off.tx & TX_OFFLOAD_CHECKSUM, 0, "{off:?}");
    let mut q = port.take_queues().pop().expect("one queue");

    // The PMD gives the kernel side its own MAC; the kernel reaches us
    // (10.77.0.2) through a permanent neighbour entry.
    common::sh(&format!(
        "sysctl -qw net.ipv6.conf.all.disable_ipv6=1; ip link set {IFACE} up && \
         ip addr add {KERNEL_IP}/24 dev {IFACE} && \
         ip neigh replace {OUR_IP} lladdr {} dev {IFACE} nud permanent",
        MacAddr(OUR_MAC)
    ));
    let kernel_mac = bypass::port::sys::get_mac(IFACE).expect("kernel MAC");
    let sock = UdpSocket::bind((std::net::Ipv4Addr::from(KERNEL_IP.octets()), 7777))
        .expect("bind 10.77.0.1:7777");
    sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();

    // Kernel -> DPDK.
    sock.send_to(
        b"hello-dpdk",
        (std::net::Ipv4Addr::from(OUR_IP.octets()), 9999),
    )
    .expect("send");
    let found = common::find_ipv4(&mut q, Duration::from_secs(5), |m, eth, ip| {
        if ip.next_header() != IpProtocol::Udp {
            return None;
        }
        let udp = UdpPacket::new_checked(ip.payload()).expect("UDP");
        (udp.dst_port() == 9999).then(|| {
            assert_eq!(eth.dst_addr(), EthernetAddress(OUR_MAC));
            assert_eq!(eth.src_addr(), EthernetAddress(kernel_mac));
            assert_eq!(ip.src_addr(), KERNEL_IP);
            assert_eq!(udp.payload(), b"hello-dpdk");
            // The PMD checked both checksums (the kernel's are right).
            let c = m.rx_checksum();
            assert_eq!((c.l3, c.l4), (Checksum::Good, Checksum::Good), "{c:?}");
        })
    })
    .is_some();
    assert!(found, "the kernel's datagram never reached the DPDK port");

    // DPDK -> kernel: a frame built in place in an mbuf.
    let payload = b"hello-kernel";
    let udp = UdpRepr {
        src_port: 9999,
        dst_port: 7777,
    };
    let ip = Ipv4Repr {
        src_addr: OUR_IP,
        dst_addr: KERNEL_IP,
        next_header: IpProtocol::Udp,
        payload_len: udp.header_len() + payload.len(),
        hop_limit: 64,
    };
    let eth = EthernetRepr {
        src_addr: EthernetAddress(OUR_MAC),
        dst_addr: EthernetAddress(kernel_mac),
        ethertype: EthernetProtocol::Ipv4,
    };
    let len = eth.buffer_len() + ip.buffer_len() + udp.header_len() + payload.len();
    let mut m = q.alloc().expect("alloc");
    assert!(m.set_len(len));
    let caps = ChecksumCapabilities::default();
    let mut f = EthernetFrame::new_unchecked(m.data_mut());
    eth.emit(&mut f);
    let mut ipp = Ipv4Packet::new_unchecked(f.payload_mut());
    ip.emit(&mut ipp, &caps);
    let mut udpp = UdpPacket::new_unchecked(ipp.payload_mut());
    udp.emit(
        &mut udpp,
        &OUR_IP.into(),
        &KERNEL_IP.into(),
        payload.len(),
        |b| b.copy_from_slice(payload),
        &caps,
    );
    // Leave the IPv4 header checksum to the device: the kernel drops a
    // datagram whose header checksum is wrong, so its arrival shows the
    // request was honoured.
    ipp.set_checksum(0);
    assert!(m.set_tx_offload(TxOffload {
        l2_len: 14,
        l3_len: 20,
        ipv4_checksum: true,
        ..Default::default()
    }));
    assert!(m.tx_offload().ipv4_checksum);
    let mut tx: Burst<Mbuf> = Burst::new();
    tx.push(m);
    assert_eq!(q.tx_burst(&mut tx), 1);
    let mut buf = [0u8; 64];
    let (n, from) = sock
        .recv_from(&mut buf)
        .expect("the kernel got our datagram");
    assert_eq!(&buf[..n], payload);
    assert_eq!(from.port(), 9999);
    assert!(common::if_stat(IFACE, "rx_packets") >= 1);

    let ls = port.link_stats();
    assert!(ls.rx_packets >= 1 && ls.tx_packets >= 1, "{ls:?}");
    drop(q);
    assert_eq!(port.pools_in_use(), baseline, "mbuf leak");
}
