//! DPDK over `net_null`: the runtime's MAC-swap loop forwards what the
//! device makes, and every mbuf returns to its pool.
#![cfg(feature = "dpdk")]

mod common;
mod dpdk_util;

use std::time::Duration;

use bypass::app::MacSwap;
use bypass::port::dpdk::{eal, DpdkConfig, DpdkPort};
use bypass::port::Port;
use bypass::runtime::{self, ForwardWorker, RunConfig, Stats, Stop};
use dpdk_util::Mem;

#[test]
#[ignore = "needs root"]
fn null_macswap_no_huge() {
    common::require_root("null_macswap_no_huge");
    dpdk_util::run_child("null_macswap_scenario", Mem::NoHuge);
}

#[test]
#[ignore = "needs root"]
fn null_macswap_hugepages() {
    common::require_root("null_macswap_hugepages");
    dpdk_util::run_child("null_macswap_scenario", Mem::Huge);
}

#[test]
#[ignore = "run in its own process by null_macswap_*"]
fn null_macswap_scenario() {
    eal::init(&dpdk_util::child_eal(&["net_null0"])).expect("EAL init");
    let mut port = DpdkPort::open(&DpdkConfig::new("net_null0")).expect("open net_null0");
    assert_eq!(port.driver(), "net_null");
    let baseline = port.pools_in_use();
    let core = runtime::available_cores()[0];
    let stats = Stats::new(&[core], &["dpdk:net_null0".to_string()]);
    let q = port.take_queues().pop().expect("one queue");
    let worker = ForwardWorker::new(vec![q], MacSwap, stats.core(0));
    let cfg = RunConfig {
        cores: vec![core],
        duration: Some(Duration::from_millis(500)),
        ..Default::default()
    };
    let workers = runtime::run(&cfg, vec![worker], &Stop::new(), |_| {}).expect("run");
    let queues: Vec<_> = workers.into_iter().flat_map(|w| w.into_queues()).collect();
    let snap = stats.snapshot();
    let p = &snap.ports[0];
    assert!(p.rx_packets > 10_000, "{p:?}");
    assert_eq!(
        p.rx_bytes,
        p.rx_packets * 64,
        "net_null makes 64-byte frames"
    );
    assert_eq!(p.tx_packets + p.drops, p.rx_packets, "{p:?}");
    assert_eq!(p.drops_by_reason["handler"], 0, "{p:?}");
    let ls = port.link_stats();
    assert_eq!(ls.rx_packets, p.rx_packets, "{ls:?}");
    assert_eq!(ls.tx_packets, p.tx_packets, "{ls:?}");
    drop(queues);
    assert_eq!(port.pools_in_use(), baseline, "mbuf leak");
}
