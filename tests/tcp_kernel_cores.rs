//! Two cores over a two-queue TAP against the Linux kernel's TCP, in a
//! private network namespace per test: sharded stacks serve kernel
//! clients, and active opens stay on the core that made them.
#![cfg(feature = "tap")]

mod common;

use bypass::stack::{ListenOpts, TcpOpts};
use std::io::{Read, Write};
use std::net::{SocketAddrV4, TcpListener};
use std::time::Duration;
// ---- two cores over a two-queue TAP ---------------------------------------
use common::kernel::*;

#[test]
#[ignore = "needs root"]
fn two_cores_serve_many_kernel_connections_over_a_two_queue_tap() {
    common::require_root("two_cores_serve_many_kernel_connections_over_a_two_queue_tap");
    const N: usize = 400;
    let lopts = ListenOpts {
        backlog: 1024,
        tcp: TcpOpts {
            rx_buf: 4096,
            tx_buf: 4096,
            ..Default::default()
        },
        ..Default::default()
    };
    let (ws, _port) = setup_two_cores("bpk5", lopts, |_| Echo);
    let (ws, ()) = with_running_all(ws, || {
        echo_from_many_kernel_connections(N);
    });
    let st = stats_of(&ws);
    for (core, s) in st.iter().enumerate() {
        eprintln!(
            "core {core}: rx {} accepted {} steered out {} in {} arp copies out {} in {}",
            s.rx_packets.get(),
            s.accepted.get(),
            s.steered_out.get(),
            s.steered_in.get(),
            s.arp_copies_out.get(),
            s.arp_copies_in.get()
        );
    }
    let accepted: Vec<u64> = st.iter().map(|s| s.accepted.get()).collect();
    assert_eq!(accepted.iter().sum::<u64>(), N as u64, "{accepted:?}");
    assert!(
        accepted.iter().all(|&a| a > N as u64 / 4),
        "spread: {accepted:?}"
    );
    for (core, s) in st.iter().enumerate() {
        assert_eq!(s.reset.get(), 0, "core {core}");
        // No segment missed its owner: a segment for no connection can
        // only be the peer's late answer to one of our retransmissions
        // (an ACK of a FIN sent twice arriving after the connection ended;
        // the kernel answers late on a loaded machine).
        assert!(
            s.no_conn.get() <= s.tcp.retransmits.get(),
            "core {core}: {} segments for no connection, {} retransmissions",
            s.no_conn.get(),
            s.tcp.retransmits.get()
        );
        assert_eq!(s.steer_drops.get(), 0, "core {core}");
        // The kernel's ARP request reached one core and its copy the other:
        // neither core ever had to ask for the kernel's address.
        assert_eq!(s.arp_requests_tx.get(), 0, "core {core} had to ARP");
        assert!(
            s.arp_copies_in.get() + s.arp_copies_out.get() > 0,
            "core {core} saw no ARP"
        );
    }
    // The kernel chose queues by its own hash: some SYNs reached the
    // wrong core and were steered.
    let steered: u64 = st.iter().map(|s| s.steered_out.get()).sum();
    let steered_in: u64 = st.iter().map(|s| s.steered_in.get()).sum();
    assert!(steered > 0, "nothing steered");
    assert_eq!(steered, steered_in);
}

#[test]
#[ignore = "needs root"]
fn active_opens_on_two_cores_stay_on_their_core_over_a_two_queue_tap() {
    common::require_root("active_opens_on_two_cores_stay_on_their_core_over_a_two_queue_tap");
    const PER_CORE: usize = 100;
    let remote = SocketAddrV4::new(KERNEL, 9009);
    let (ws, _port) = setup_two_cores("bpk6", ListenOpts::default(), |_| ManyClients {
        remote,
        want: PER_CORE,
        opened: 0,
        echoed: 0,
        closed: 0,
        failed: 0,
    });
    let l = TcpListener::bind(remote).unwrap();
    let (ws, ports) = with_running_all(ws, || {
        let mut ports = Vec::new();
        for _ in 0..2 * PER_CORE {
            let (mut s, peer) = l.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut b = [0u8; 15];
            s.read_exact(&mut b).unwrap();
            s.write_all(&b).unwrap();
            let mut rest = vec![];
            s.read_to_end(&mut rest).unwrap(); // our FIN
            ports.push(peer.port());
        }
        std::thread::sleep(Duration::from_millis(300));
        ports
    });
    let rss = bypass::flow::Rss::symmetric(2).unwrap();
    let per_core_ports = ports.iter().fold([0usize; 2], |mut acc, &p| {
        acc[rss.core_v4(KERNEL, US, 9009, p)] += 1;
        acc
    });
    assert_eq!(
        per_core_ports,
        [PER_CORE, PER_CORE],
        "ports hash to their core"
    );
    for (core, w) in ws.iter().enumerate() {
        let (a, s) = (w.app(), w.stack().stats());
        assert_eq!(a.failed, 0, "core {core}");
        assert_eq!(a.echoed, PER_CORE, "core {core}");
        assert_eq!(a.closed, PER_CORE, "core {core}");
        assert_eq!(s.connected.get(), PER_CORE as u64, "core {core}");
        assert_eq!(
            s.no_conn.get(),
            0,
            "core {core}: every reply found its core"
        );
    }
}
