//! The userspace stack against the Linux kernel's TCP, over TAP, in a
//! private network namespace per test. The kernel side uses ordinary
//! sockets from the test thread (which lives in that namespace). This
//! file: IPv4 echo, closes, resets and refusals, bulk transfers, active
//! opens, backlog limits and SYN floods; two cores in
//! `tcp_kernel_cores.rs`, IPv6 and TSO in `tcp_kernel_v6.rs`.
#![cfg(feature = "tap")]

mod common;

use bypass::port::PortQueue;
use bypass::stack::{BacklogFull, CloseReason, ListenOpts, TcpOpts};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddrV4, TcpListener, TcpStream};
use std::time::Duration;
// ---- two cores over a two-queue TAP ---------------------------------------
use common::kernel::*;

#[test]
#[ignore = "needs root"]
fn kernel_clients_are_echoed_and_closes_resets_refusals_behave() {
    common::require_root("kernel_clients_are_echoed_and_closes_resets_refusals_behave");
    let (w, _port) = setup("bpk0", Echo, ListenOpts::default());
    let (w, ()) = with_running(w, || {
        // Echo, then orderly close from the client: we close too (EOF).
        let mut s = connect();
        s.write_all(b"hello bypass").unwrap();
        let mut buf = [0u8; 12];
        s.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"hello bypass");
        s.shutdown(Shutdown::Write).unwrap();
        assert_eq!(s.read(&mut buf).unwrap(), 0, "orderly close: EOF");
        // We close first.
        let mut s = connect();
        s.write_all(b"BYE!").unwrap();
        assert_eq!(s.read(&mut buf).unwrap(), 0, "server closed: EOF");
        // We reset.
        let mut s = connect();
        s.write_all(b"RST!").unwrap();
        let e = s.read(&mut buf).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}");
        // Nothing listens on 8: refused by our RST.
        let e =
            TcpStream::connect_timeout(&SocketAddrV4::new(US, 8).into(), Duration::from_secs(5))
                .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "{e}");
        // Ping (ICMP echo) is answered by the stack.
        common::sh(&format!("ping -c 2 -i 0.2 -W 2 {US}"));
    });
    let st = w.stack().stats();
    assert!(st.accepted.get() >= 3);
    assert!(st.reset.get() >= 1);
    assert!(st.no_conn.get() >= 1);
    assert_eq!(
        w.stack().queue().pool_stats().in_use,
        0,
        "every buffer back"
    );
}

#[test]
#[ignore = "needs root"]
fn a_thousand_concurrent_kernel_connections_get_their_data_back() {
    common::require_root("a_thousand_concurrent_kernel_connections_get_their_data_back");
    let lopts = ListenOpts {
        backlog: 2048,
        tcp: TcpOpts {
            rx_buf: 4096,
            tx_buf: 4096,
            ..Default::default()
        },
        ..Default::default()
    };
    let (w, _port) = setup("bpk1", Echo, lopts);
    let (w, ()) = with_running(w, || {
        echo_from_many_kernel_connections(1000);
    });
    assert_eq!(w.stack().stats().accepted.get(), 1000);
    assert_eq!(w.stack().stats().reset.get(), 0);
}

#[test]
#[ignore = "needs root"]
fn sixty_four_mebibytes_each_way_arrive_intact() {
    common::require_root("sixty_four_mebibytes_each_way_arrive_intact");
    let lopts = ListenOpts {
        tcp: TcpOpts {
            rx_buf: 256 * 1024,
            tx_buf: 256 * 1024,
            ..Default::default()
        },
        ..Default::default()
    };
    let (w, _port) = setup("bpk2", Echo, lopts);
    let (w, (sent_hash, got_hash)) =
        with_running(w, || through_and_back(SocketAddrV4::new(US, 7).into()));
    assert_eq!(
        sent_hash, got_hash,
        "64 MiB through our stack and back, intact"
    );
    let st = w.stack().stats();
    eprintln!("{:?}", st.tcp);
    assert!(st.rx_bytes.get() >= TOTAL as u64 && st.tx_bytes.get() >= TOTAL as u64);
}

#[test]
#[ignore = "needs root"]
fn our_stack_connects_to_a_kernel_server() {
    common::require_root("our_stack_connects_to_a_kernel_server");
    let client = Client {
        remote: SocketAddrV4::new(KERNEL, 9007).into(),
        started: false,
        got: vec![],
        closed: None,
    };
    let (w, _port) = setup("bpk3", client, ListenOpts::default());
    let l = TcpListener::bind((KERNEL, 9007)).unwrap();
    let (w, peer) = with_running(w, || echo_one_then_wait_for_fin(&l));
    assert_eq!(peer.ip(), std::net::IpAddr::V4(US));
    assert_eq!(w.app().got, b"from userspace");
    assert_eq!(w.app().closed, Some(CloseReason::Normal));
    assert_eq!(w.stack().stats().connected.get(), 1);
}

#[test]
#[ignore = "needs root"]
fn syns_beyond_a_full_backlog_are_refused_and_counted() {
    common::require_root("syns_beyond_a_full_backlog_are_refused_and_counted");
    let lopts = ListenOpts {
        backlog: 4,
        on_full: BacklogFull::Reset,
        ..Default::default()
    };
    let (mut w, _port) = setup("bpk4", Echo, lopts);
    // Learn the kernel's MAC first so the SYN-ACKs go out at once.
    let (w2, ()) = with_running(w, || {
        common::sh(&format!("ping -c 1 -W 2 {US}"))
            .status
            .success()
            .then_some(())
            .unwrap()
    });
    w = w2;
    // 12 connection attempts queue up in the TAP while the loop is stopped;
    // then the loop reads them in one burst: 4 fit the backlog.
    let socks: Vec<socket2_free::Sock> = (0..12)
        .map(|_| socket2_free::Sock::connect_nb(SocketAddrV4::new(US, 7)))
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    let (w, results) = with_running(w, || {
        std::thread::sleep(Duration::from_millis(500));
        socks.iter().map(|s| s.result()).collect::<Vec<_>>()
    });
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let refused = results
        .iter()
        .filter(|r| matches!(r, Err(e) if e.kind() == ErrorKind::ConnectionRefused))
        .count();
    assert_eq!((ok, refused), (4, 8), "{results:?}");
    assert_eq!(w.stack().stats().backlog_full.get(), 8);
}

#[test]
#[ignore = "needs root"]
fn a_kernel_client_is_served_at_once_during_a_syn_flood() {
    common::require_root("a_kernel_client_is_served_at_once_during_a_syn_flood");
    kernel_clients_during_a_syn_flood("bpk9", false);
}

/// [`a_kernel_client_is_served_at_once_during_a_syn_flood`] over IPv6:
/// the cookies are made and checked over IPv6 tuples.
#[test]
#[ignore = "needs root"]
fn a_kernel_ipv6_client_is_served_at_once_during_a_syn_flood() {
    common::require_root("a_kernel_ipv6_client_is_served_at_once_during_a_syn_flood");
    kernel_clients_during_a_syn_flood("bp6k4", true);
}
