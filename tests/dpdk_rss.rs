//! Several queues with RSS on `net_null` (which takes an RSS key and a
//! redirection table): the symmetric key is in force, the table spreads
//! over every queue, each queue forwards on its own core, and no mbuf
//! leaks.
#![cfg(feature = "dpdk")]

mod common;
mod dpdk_util;

use std::time::Duration;

use bypass::app::MacSwap;
use bypass::port::dpdk::{eal, ethdev, DpdkConfig, DpdkPort};
use bypass::port::{Port, PortQueue};
use bypass::runtime::{self, ForwardWorker, RunConfig, Stats, Stop};
use dpdk_util::Mem;

#[test]
#[ignore = "needs root"]
fn rss_two_queues_no_huge() {
    common::require_root("rss_two_queues_no_huge");
    dpdk_util::run_child("rss_scenario", Mem::NoHuge);
}

#[test]
#[ignore = "needs root"]
fn rss_two_queues_hugepages() {
    common::require_root("rss_two_queues_hugepages");
    dpdk_util::run_child("rss_scenario", Mem::Huge);
}

#[test]
#[ignore = "run in its own process by rss_two_queues_*"]
fn rss_scenario() {
    eal::init(&dpdk_util::child_eal(&["net_null0"])).expect("EAL init");
    let mut cfg = DpdkConfig::new("net_null0");
    cfg.queues = 2;
    let mut port = DpdkPort::open(&cfg).expect("open net_null0 with 2 queues");
    assert_eq!(port.info().queues, 2);
    assert!(port.info().caps.rss, "{:?}", port.info().caps);
    let rss = port.rss().expect("RSS configuration").clone();
    assert_eq!(rss.key, ethdev::symmetric_rss_key(rss.key.len()));
    assert!(!rss.key.is_empty());
    assert!(rss.hash_types & ethdev::RSS_HF != 0, "{rss:?}");
    assert!(!rss.reta.is_empty());
    assert!(rss.reta.iter().all(|&q| q < 2), "{:?}", rss.reta);
    assert!(
        rss.reta.contains(&0) && rss.reta.contains(&1),
        "{:?}",
        rss.reta
    );

    // The sharded stack's RSS (crate::flow) programs the device exactly.
    let flow_rss = bypass::flow::Rss::new(
        bypass::flow::RssKey::MICROSOFT,
        bypass::flow::Reta::from_fn(2, |i| (i / 3) % 2).unwrap(),
    );
    assert!(port.configure_rss(&flow_rss).expect("configure_rss"));
    let now = port.rss().expect("RSS configuration").clone();
    assert_eq!(now.key, bypass::flow::RssKey::MICROSOFT.0);
    assert_eq!(now.hash_types, ethdev::RSS_HF_FLOW);
    for (i, &q) in now.reta.iter().enumerate() {
        assert_eq!(q, flow_rss.reta().entries()[i % 128], "entry {i}");
    }

    let baseline = port.pools_in_use();
    let queues = port.take_queues();
    assert_eq!(
        queues.iter().map(|q| q.queue_id()).collect::<Vec<_>>(),
        vec![0, 1]
    );
    // One core per queue (no pinning: the machine may have fewer cores).
    let cores = vec![0, 1];
    let stats = Stats::new(&cores, &["dpdk:net_null0".to_string()]);
    let workers: Vec<_> = queues
        .into_iter()
        .enumerate()
        .map(|(i, q)| ForwardWorker::new(vec![q], MacSwap, stats.core(i)))
        .collect();
    let rc = RunConfig {
        cores,
        duration: Some(Duration::from_millis(500)),
        no_pin: true,
        ..Default::default()
    };
    let workers = runtime::run(&rc, workers, &Stop::new(), |_| {}).expect("run");
    let snap = stats.snapshot();
    for c in &snap.cores {
        assert!(c.rx_packets > 1000, "each queue forwards: {:?}", snap.cores);
        assert!(c.tx_packets > 0, "{:?}", snap.cores);
    }
    // Each queue allocated from its own pool (per-core gauges).
    let queues: Vec<_> = workers.into_iter().flat_map(|w| w.into_queues()).collect();
    assert_ne!(
        queues[0].mempool().name(),
        queues[1].mempool().name(),
        "one pool per queue"
    );
    drop(queues);
    assert_eq!(port.pools_in_use(), baseline, "mbuf leak");
}
