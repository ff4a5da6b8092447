//! The mbuf pool a port's queues receive into and allocate from.
//!
//! One `rte_pktmbuf_pool` per port, with a per-lcore cache (so each core's
//! allocs and frees stay in its own cache and rarely touch the shared
//! ring). It lives in hugepages when EAL has them (`--no-huge` otherwise).
#![allow(unsafe_code)]

use std::ffi::CString;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

use bypass_dpdk_sys as sys;

use super::eal;
use crate::error::Result;

/// Per-lcore cache size (DPDK's `RTE_MEMPOOL_CACHE_MAX_SIZE` is 512; 256 is
/// what the DPDK examples use).
pub const CACHE_SIZE: u32 = 256;

/// An `rte_mempool` of packet mbufs.
pub struct Mempool {
    ptr: NonNull<sys::rte_mempool>,
    name: String,
    size: u32,
    alloc_failures: AtomicU64,
}

// SAFETY: an rte_mempool is made for concurrent use from many threads (its
// ring is multi-producer/multi-consumer and each lcore has its own cache);
// the pointer stays valid until Drop.
unsafe impl Send for Mempool {}
// SAFETY: as above; the only other field mutated through &self is atomic.
unsafe impl Sync for Mempool {}

impl Mempool {
    /// How many mbufs a port with `queues` queues of `rxd`/`txd` descriptors
    /// needs: full rings, a burst in flight on each side, each core's cache,
    /// and slack for frames the application holds. Rounded up to 2^k - 1
    /// (the mempool ring's optimum).
    pub fn size_for(queues: u16, rxd: u16, txd: u16) -> u32 {
        let q = queues as u32;
        let n = q * (rxd as u32 + txd as u32 + 2 * crate::buf::BURST as u32)
            + q * CACHE_SIZE * 3 / 2
            + 1024;
        (n + 1).next_power_of_two() - 1
    }

    /// Creates a pool of `n` mbufs with `data_room` bytes each (headroom
    /// included) on `socket` (`-1`: any).
    pub fn new(name: &str, n: u32, data_room: u16, socket: i32) -> Result<Mempool> {
        // DPDK names are at most RTE_MEMPOOL_NAMESIZE-1 (25) bytes.
        let short: String = name.chars().take(25).collect();
        let cname = CString::new(short.clone())
            .map_err(|_| eal::err(format!("mempool name `{name}`"), libc::EINVAL))?;
        let cache = CACHE_SIZE.min(n / 4);
        // SAFETY: EAL is initialised (a port exists only after eal::init);
        // cname outlives the call.
        let ptr =
            unsafe { sys::rte_pktmbuf_pool_create(cname.as_ptr(), n, cache, 0, data_room, socket) };
        let ptr = NonNull::new(ptr).ok_or_else(|| {
            let e = eal::last_err(format!(
                "cannot create a pool of {n} mbufs of {data_room} bytes (`{short}`)"
            ));
            crate::Error::Backend {
                backend: "dpdk",
                msg: format!(
                    "{e}; give EAL more memory (-m, or more hugepages) or ask for fewer descriptors/queues"
                ),
            }
        })?;
        Ok(Mempool {
            ptr,
            name: short,
            size: n,
            alloc_failures: AtomicU64::new(0),
        })
    }

    /// The raw pool.
    #[inline]
    pub fn as_ptr(&self) -> *mut sys::rte_mempool {
        self.ptr.as_ptr()
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Number of mbufs.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// Mbufs free (in the ring and in every lcore cache).
    pub fn avail(&self) -> u32 {
        // SAFETY: the pool is valid until Drop.
        unsafe { sys::rte_mempool_avail_count(self.ptr.as_ptr()) }
    }

    /// Mbufs allocated: held by the device's rings, in flight, or held by
    /// the application.
    pub fn in_use(&self) -> u32 {
        // SAFETY: the pool is valid until Drop.
        unsafe { sys::rte_mempool_in_use_count(self.ptr.as_ptr()) }
    }

    /// Bytes an mbuf can hold, headroom included.
    pub fn data_room(&self) -> u16 {
        // SAFETY: the pool is a pktmbuf pool, valid until Drop.
        unsafe { sys::rte_pktmbuf_data_room_size(self.ptr.as_ptr()) }
    }

    /// Counts a failed allocation.
    #[inline]
    pub fn count_failure(&self) {
        self.alloc_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Failed allocations so far.
    pub fn alloc_failures(&self) -> u64 {
        self.alloc_failures.load(Ordering::Relaxed)
    }
}

impl Drop for Mempool {
    fn drop(&mut self) {
        let in_use = self.in_use();
        if in_use != 0 {
            // Mbufs of this pool are still alive somewhere (held by the
            // application): freeing the pool would pull memory from under
            // them. Leak it instead; EAL's memory goes with the process.
            tracing::warn!(
                "mempool {}: {in_use} mbufs still in use at close; leaving the pool allocated",
                self.name
            );
            return;
        }
        // SAFETY: no mbuf of the pool is alive and no device uses it any more
        // (the ethdev holding it was closed first); the pointer is not used
        // after this.
        unsafe { sys::rte_mempool_free(self.ptr.as_ptr()) };
    }
}
