//! `rte_eth_rx_burst` and `rte_eth_tx_burst` in Rust, so that they inline
//! into the forwarding loop instead of costing a call into the C shim
//! (which saves and restores six registers per call).
//!
//! Both are `static inline` in DPDK's `rte_ethdev.h`: they index the
//! exported table `rte_eth_fp_ops` by port id, call the driver's burst
//! function on the queue's private data, and hand the frames to the
//! queue's callbacks when any are installed (`RTE_ETHDEV_RXTX_CALLBACKS`,
//! which Debian's build enables; the exported `rte_eth_call_*_callbacks`
//! run them). The table's layout comes from the installed headers through
//! bindgen, so it matches the library the binary links against.
#![allow(unsafe_code)]

use std::sync::atomic::{AtomicPtr, Ordering};

use bypass_dpdk_sys as sys;

/// A queue's row of `rte_eth_fp_ops`, found once when the queue is made.
#[derive(Clone, Copy)]
pub(super) struct FastPath {
    ops: *const sys::rte_eth_fp_ops,
    port: u16,
    queue: u16,
}

impl FastPath {
    /// The row of `port` (a valid, configured port id), for queue `queue`.
    pub(super) fn new(port: u16, queue: u16) -> FastPath {
        assert!(
            (port as usize) < sys::RTE_MAX_ETHPORTS as usize,
            "DPDK port id {port} out of range"
        );
        // SAFETY: an address inside the exported static array (the index is
        // checked above); nothing is read here.
        let ops = unsafe { std::ptr::addr_of!(sys::rte_eth_fp_ops[port as usize]) };
        FastPath { ops, port, queue }
    }

    /// Receives up to `n` frames into `pkts`; returns how many.
    ///
    /// # Safety
    /// The port must be started, the queue set up and used by this thread
    /// only, and `pkts` must have room for `n` mbuf pointers.
    #[inline(always)]
    pub(super) unsafe fn rx(&self, pkts: *mut *mut sys::rte_mbuf, n: u16) -> u16 {
        // SAFETY: the row is filled in by rte_eth_dev_start and stays valid
        // while the port runs (caller's contract); the queue index is below
        // the configured count, so within the data and callback arrays.
        unsafe {
            let o = &*self.ops;
            let q = self.queue as usize;
            let qd = *o.rxq.data.add(q);
            let Some(burst) = o.rx_pkt_burst else {
                return 0;
            };
            let got = burst(qd, pkts, n);
            let cb = AtomicPtr::from_ptr(o.rxq.clbk.add(q)).load(Ordering::Relaxed);
            if cb.is_null() {
                got
            } else {
                sys::rte_eth_call_rx_callbacks(self.port, self.queue, pkts, got, n, cb)
            }
        }
    }

    /// Sends up to `n` frames from `pkts`; returns how many the driver took
    /// (they are the driver's from then on).
    ///
    /// # Safety
    /// As [`FastPath::rx`], with `pkts` holding `n` owned, valid mbufs.
    #[inline(always)]
    pub(super) unsafe fn tx(&self, pkts: *mut *mut sys::rte_mbuf, n: u16) -> u16 {
        // SAFETY: as in rx().
        unsafe {
            let o = &*self.ops;
            let q = self.queue as usize;
            let qd = *o.txq.data.add(q);
            let cb = AtomicPtr::from_ptr(o.txq.clbk.add(q)).load(Ordering::Relaxed);
            let n = if cb.is_null() {
                n
            } else {
                sys::rte_eth_call_tx_callbacks(self.port, self.queue, pkts, n, cb)
            };
            match o.tx_pkt_burst {
                Some(burst) => burst(qd, pkts, n),
                None => 0,
            }
        }
    }
}
