//! CPU hints: prefetching what the next steps will read.
//!
//! With thousands of connections, a segment's connection block is rarely
//! in cache when its frame arrives, and each miss costs as much as a few
//! hundred instructions. The stack classifies a whole receive burst first
//! and prefetches every connection block the burst names, so their misses
//! overlap instead of being paid one after another (the same idea as DPDK
//! l3fwd's prefetch of the next frames' headers).
//!
//! This is the one module outside `port`, `buf::pool` and `time::tsc` that
//! may use `unsafe`: `_mm_prefetch` is an `unsafe fn` (it has target
//! features), although it never dereferences its pointer.
#![allow(unsafe_code)]

/// Cache line size assumed for prefetching.
pub const LINE: usize = 64;

/// Asks the CPU to bring the cache lines of `*r` (at most `max_lines`)
/// into L1. A hint only: it never faults and changes no value.
#[inline(always)]
pub fn prefetch<T>(r: &T, max_lines: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use core::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let p = (r as *const T).cast::<i8>();
        let lines = std::mem::size_of::<T>().div_ceil(LINE).min(max_lines);
        for i in 0..lines {
            // SAFETY: a prefetch is a hint: it never faults, even on an
            // invalid address, and reads nothing into the program. The
            // address is inside `*r` (`wrapping_add` for the pointer
            // arithmetic, so no in-bounds requirement applies either).
            unsafe { _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(i * LINE)) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (r, max_lines);
}
