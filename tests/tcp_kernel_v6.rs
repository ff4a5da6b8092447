//! The userspace stack against the Linux kernel's TCP over IPv6, and a
//! bulk echo over a TSO TAP, in a private network namespace per test.
#![cfg(feature = "tap")]

mod common;

use bypass::port::tap::TapConfig;
use bypass::port::Port;
use bypass::stack::{CloseReason, ListenOpts, TcpOpts};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::time::Duration;
// ---- two cores over a two-queue TAP ---------------------------------------
use common::kernel::*;

#[test]
#[ignore = "needs root"]
fn ipv6_kernel_pings_and_its_clients_are_echoed_intact() {
    common::require_root("ipv6_kernel_pings_and_its_clients_are_echoed_intact");
    let (w, port) = setup6("bp6k0", Echo);
    let ll = bypass::stack::link_local(smoltcp::wire::EthernetAddress(port.info().mac.0));
    let (w, ()) = with_running(w, || {
        // Neighbour discovery, then echo replies.
        let ping = common::sh_out(&format!("ping -6 -c 5 -i 0.2 -W 2 {US6}"));
        assert!(ping.contains("5 received"), "{ping}");
        // Our link-local address answers too (scoped to the tap; the
        // kernel's own link-local source may still be in duplicate address
        // detection for a second: up to 5 s for two replies).
        let ping = common::sh_out(&format!("ping -6 -c 2 -i 0.2 -w 5 {ll}%bp6k0"));
        assert!(ping.contains("2 received"), "{ping}");
        // Kernel IPv6 clients, 8 at once, 256 KiB each, echoed intact.
        let to = SocketAddr::from((US6, 7));
        std::thread::scope(|s| {
            for t in 0..8u8 {
                s.spawn(move || {
                    let mut c = TcpStream::connect_timeout(&to, Duration::from_secs(5)).unwrap();
                    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                    let data: Vec<u8> = (0..256 * 1024u32)
                        .map(|i| (i.wrapping_mul(31) as u8) ^ t)
                        .collect();
                    let mut r = c.try_clone().unwrap();
                    let want = data.clone();
                    let reader = std::thread::spawn(move || {
                        let mut got = vec![0u8; want.len()];
                        r.read_exact(&mut got).unwrap();
                        assert!(got == want, "connection {t}: the echo differs");
                    });
                    c.write_all(&data).unwrap();
                    reader.join().unwrap();
                    c.shutdown(Shutdown::Write).unwrap();
                    let mut b = [0u8; 1];
                    assert_eq!(c.read(&mut b).unwrap(), 0, "EOF");
                });
            }
        });
        // IPv4 still served beside it.
        let mut s = connect();
        s.write_all(b"dual stack").unwrap();
        let mut b = [0u8; 10];
        s.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"dual stack");
    });
    let st = w.stack().stats();
    assert_eq!(st.accepted.get(), 9, "8 IPv6 and 1 IPv4 connections");
    assert_on_default_engine(st, 9);
    // The kernel's MLD reports and router solicitations go to groups we
    // are not in (not for us); nothing it sent was malformed.
    let bad = [
        st.drop_malformed.get(),
        st.drop_bad_checksum.get(),
        st.drop_bad_ext_header.get(),
        st.drop_fragment.get(),
        st.drop_unsupported.get(),
    ];
    assert_eq!(
        bad, [0; 5],
        "malformed, checksum, ext, fragment, unsupported"
    );
}

#[test]
#[ignore = "needs root"]
fn our_stack_connects_to_a_kernel_ipv6_server() {
    common::require_root("our_stack_connects_to_a_kernel_ipv6_server");
    let client = Client {
        remote: SocketAddr::from((KERNEL6, 9017)),
        started: false,
        got: vec![],
        closed: None,
    };
    let (w, _port) = setup6("bp6k1", client);
    let l = TcpListener::bind((KERNEL6, 9017)).unwrap();
    let (w, peer) = with_running(w, || echo_one_then_wait_for_fin(&l));
    assert_eq!(peer.ip(), std::net::IpAddr::V6(US6));
    assert_eq!(w.app().got, b"from userspace");
    assert_eq!(w.app().closed, Some(CloseReason::Normal));
    assert_eq!(w.stack().stats().connected.get(), 1);
    assert_on_default_engine(w.stack().stats(), 1);
}

#[test]
#[ignore = "needs root"]
fn a_thousand_concurrent_kernel_ipv6_connections_get_their_data_back() {
    common::require_root("a_thousand_concurrent_kernel_ipv6_connections_get_their_data_back");
    let lopts = ListenOpts {
        backlog: 2048,
        tcp: TcpOpts {
            rx_buf: 4096,
            tx_buf: 4096,
            ..TcpOpts::default()
        },
        ..Default::default()
    };
    let (w, _port) = setup6_with("bp6k2", Echo, lopts);
    let (w, ()) = with_running(w, || {
        echo_from_many_kernel_connections_to(SocketAddr::from((US6, 7)), 1000);
    });
    assert_eq!(w.stack().stats().accepted.get(), 1000);
    assert_eq!(w.stack().stats().reset.get(), 0);
    assert_on_default_engine(w.stack().stats(), 1000);
}

#[test]
#[ignore = "needs root"]
fn sixty_four_mebibytes_each_way_arrive_intact_over_ipv6() {
    common::require_root("sixty_four_mebibytes_each_way_arrive_intact_over_ipv6");
    let lopts = ListenOpts {
        tcp: TcpOpts {
            rx_buf: 256 * 1024,
            tx_buf: 256 * 1024,
            ..TcpOpts::default()
        },
        ..Default::default()
    };
    let (w, _port) = setup6_with("bp6k3", Echo, lopts);
    let (w, (sent_hash, got_hash)) =
        with_running(w, || through_and_back(SocketAddr::from((US6, 7))));
    assert_eq!(sent_hash, got_hash, "64 MiB over IPv6 and back, intact");
    let st = w.stack().stats();
    assert!(st.rx_bytes.get() >= TOTAL as u64 && st.tx_bytes.get() >= TOTAL as u64);
    assert_on_default_engine(st, 1);
}

/// Over a TAP with virtio-net headers and TSO, the bypass engine echoes
/// 64 MiB each way to a kernel client, over IPv4 then IPv6, intact; what
/// it sends leaves mostly as TSO frames of several MSS (which the kernel
/// takes whole), and the port refuses none of them.
#[test]
#[ignore = "needs root"]
fn a_bulk_echo_over_a_tso_tap_leaves_as_tso_frames_and_arrives_intact() {
    common::require_root("a_bulk_echo_over_a_tso_tap_leaves_as_tso_frames_and_arrives_intact");
    let lopts = ListenOpts {
        tcp: TcpOpts {
            rx_buf: 256 * 1024,
            tx_buf: 256 * 1024,
            ..TcpOpts::default()
        }
        .on(bypass::stack::TcpEngine::Bypass),
        ..Default::default()
    };
    let cfg = TapConfig {
        vnet: true,
        tso: true,
        ..TapConfig::new("bptso0")
    };
    let (w, port) = setup6_on(&cfg, Echo, lopts);
    let (w, hashes) = with_running(w, || {
        [
            through_and_back(SocketAddrV4::new(US, 7).into()),
            through_and_back(SocketAddr::from((US6, 7))),
        ]
    });
    for (family, (sent, got)) in ["IPv4", "IPv6"].iter().zip(hashes) {
        assert_eq!(sent, got, "64 MiB over {family} and back, intact");
    }
    let st = w.stack().stats();
    assert_eq!(st.bypass_opened.get(), 2);
    let (frames, segs) = (st.tso_frames.get(), st.tso_segments.get());
    eprintln!(
        "{frames} TSO frames carrying {segs} segments; {} frames sent in all, {} received",
        st.tx_packets.get(),
        st.rx_packets.get()
    );
    let mss_segments = 2 * TOTAL as u64 / 1500;
    // The port takes large segments too (TUN_F_TSO4/6): the kernel sends
    // its 64 MiB each way in far fewer frames than MSS segments.
    assert!(
        st.rx_packets.get() < mss_segments / 2,
        "{} frames received for about {mss_segments} MSS segments",
        st.rx_packets.get()
    );
    assert!(
        segs >= mss_segments / 2,
        "only {segs} of about {mss_segments} segments left in TSO frames"
    );
    assert!(
        segs >= 4 * frames,
        "TSO frames of {segs}/{frames} MSS on average"
    );
    assert_eq!(
        port.link_stats().tx_errors,
        0,
        "the port refused a TSO frame"
    );
}
