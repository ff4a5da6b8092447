//! DPDK over `net_ring`: frames sent on a queue come back on the same
//! queue (the PMD's loopback), byte for byte, with the tx_burst contract
//! (unsent frames stay in the burst, in order) and no mbuf leak.
#![cfg(feature = "dpdk")]

mod common;
mod dpdk_util;

use bypass::buf::{Burst, PacketBuf, BURST};
use bypass::port::dpdk::{eal, DpdkConfig, DpdkPort, Mbuf};
use bypass::port::{Port, PortQueue};
use dpdk_util::Mem;
use smoltcp::wire::{EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr};

#[test]
#[ignore = "needs root"]
fn ring_rx_tx_no_huge() {
    common::require_root("ring_rx_tx_no_huge");
    dpdk_util::run_child("ring_scenario", Mem::NoHuge);
}

#[test]
#[ignore = "needs root"]
fn ring_rx_tx_hugepages() {
    common::require_root("ring_rx_tx_hugepages");
    dpdk_util::run_child("ring_scenario", Mem::Huge);
}

/// A frame numbered `seq` for queue `q`: Ethernet header, then the number.
fn fill(buf: &mut Mbuf, q: u16, seq: u32) {
    let len = 64;
    assert!(buf.set_len(len));
    let mut f = EthernetFrame::new_unchecked(buf.data_mut());
    EthernetRepr {
        src_addr: EthernetAddress([0x02, 0, 0, 0, q as u8, 1]),
        dst_addr: EthernetAddress([0x02, 0, 0, 0, q as u8, 2]),
        ethertype: EthernetProtocol::Unknown(0x88b5),
    }
    .emit(&mut f);
    let p = f.payload_mut();
    p[..4].copy_from_slice(&seq.to_be_bytes());
    p[4..6].copy_from_slice(&q.to_be_bytes());
}

fn seq_of(buf: &Mbuf) -> (u16, u32) {
    let f = EthernetFrame::new_checked(buf.data()).expect("a whole frame");
    assert_eq!(f.ethertype(), EthernetProtocol::Unknown(0x88b5));
    let p = f.payload();
    (
        u16::from_be_bytes([p[4], p[5]]),
        u32::from_be_bytes([p[0], p[1], p[2], p[3]]),
    )
}

#[test]
#[ignore = "run in its own process by ring_rx_tx_*"]
fn ring_scenario() {
    eal::init(&dpdk_util::child_eal(&["net_ring0"])).expect("EAL init");
    // A device nobody named is a clear error, not a crash.
    let e = DpdkPort::open(&DpdkConfig::new("net_nosuchdev0"))
        .err()
        .expect("no such device")
        .to_string();
    assert!(e.contains("no DPDK device `net_nosuchdev0`"), "{e}");

    let mut cfg = DpdkConfig::new("net_ring0");
    cfg.queues = 2;
    cfg.rxd = 256;
    cfg.txd = 256;
    let mut port = DpdkPort::open(&cfg).expect("open net_ring0");
    assert_eq!(port.info().kind, "dpdk");
    assert_eq!(port.info().queues, 2);
    assert!(port.link_up());
    // net_ring has no RSS: the sharded stack must steer in software.
    assert!(!port.info().caps.rss);
    let flow_rss = bypass::flow::Rss::symmetric(2).unwrap();
    assert!(!port.configure_rss(&flow_rss).expect("configure_rss"));
    let baseline = port.pools_in_use();
    let mut queues = port.take_queues();
    assert_eq!(queues.len(), 2);
    assert!(port.take_queues().is_empty());
    assert_eq!(
        queues[0].pool_stats().hugepages,
        dpdk_util::child_uses_hugepages()
    );

    // 1. One burst out on each queue comes back on that same queue.
    for (qi, q) in queues.iter_mut().enumerate() {
        let mut out: Burst<Mbuf> = Burst::new();
        for s in 0..BURST as u32 {
            let mut m = q.alloc().expect("alloc");
            assert_eq!(m.len(), 0);
            assert!(m.capacity() >= 2048);
            fill(&mut m, qi as u16, s);
            out.push(m);
        }
        assert_eq!(q.tx_burst(&mut out), BURST);
        assert!(out.is_empty());
    }
    for (qi, q) in queues.iter_mut().enumerate() {
        let mut got: Burst<Mbuf> = Burst::new();
        let mut tries = 0;
        while got.len() < BURST && tries < 1000 {
            q.rx_burst(&mut got);
            tries += 1;
        }
        assert_eq!(got.len(), BURST, "queue {qi}");
        for (s, m) in got.iter().enumerate() {
            assert_eq!(seq_of(m), (qi as u16, s as u32), "queue {qi} frame {s}");
            assert_eq!(m.len(), 64);
        }
    }

    // 2. Fill queue 0's ring until tx_burst refuses: unsent frames stay in
    //    the burst, in order, still ours.
    let q = &mut queues[0];
    let mut seq = 0u32;
    let mut sent_total = 0usize;
    let mut refused = false;
    for _ in 0..1000 {
        let mut out: Burst<Mbuf> = Burst::new();
        for _ in 0..BURST {
            let mut m = q.alloc().expect("alloc");
            fill(&mut m, 0, seq);
            seq += 1;
            out.push(m);
        }
        let first = seq - BURST as u32;
        let n = q.tx_burst(&mut out);
        sent_total += n;
        assert_eq!(out.len(), BURST - n);
        if n < BURST {
            for (i, m) in out.iter().enumerate() {
                assert_eq!(
                    seq_of(m),
                    (0, first + (n + i) as u32),
                    "unsent frames keep their order"
                );
            }
            refused = true;
            break; // dropping `out` frees the unsent frames
        }
    }
    assert!(refused, "the ring never filled up");
    // Drain what was queued: every sent frame, in order.
    let mut next = 0u32;
    let mut drained = 0usize;
    for _ in 0..10_000 {
        let mut got: Burst<Mbuf> = Burst::new();
        if q.rx_burst(&mut got) == 0 {
            break;
        }
        for m in got.iter() {
            assert_eq!(seq_of(m), (0, next));
            next += 1;
        }
        drained += got.len();
    }
    assert_eq!(drained, sent_total);

    // 3. Device counters saw it, and every mbuf is back.
    let ls = port.link_stats();
    assert!(ls.tx_packets >= (2 * BURST + sent_total) as u64, "{ls:?}");
    assert!(!port.xstats().expect("xstats").is_empty());
    assert_eq!(port.pools_in_use(), baseline, "mbuf leak");
    drop(queues);
    drop(port);

    // 4. Closing unplugs the device: it can be opened again.
    let port = DpdkPort::open(&DpdkConfig::new("net_ring0")).expect("reopen net_ring0");
    assert_eq!(port.info().queues, 1);
}
