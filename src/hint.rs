//! CPU hints: prefetching what the next steps will read.
//!
//! With thousands of connections, what a frame's processing reads is
//! rarely in cache when the frame arrives, and each miss costs as much as
//! a few hundred instructions. The stack classifies a whole receive burst
//! first and prefetches its headers and table lines, so their misses
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
    lines((r as *const T).cast(), std::mem::size_of::<T>(), max_lines);
}

/// Asks the CPU to bring the cache lines `bytes` spans (at most
/// `max_lines`, counted from the line its first byte is in) into L1: a
/// frame's headers before they are parsed. A frame rarely starts on a
/// line boundary, so 130 bytes can span three lines.
#[inline(always)]
pub fn prefetch_bytes(bytes: &[u8], max_lines: usize) {
    lines(bytes.as_ptr(), bytes.len(), max_lines);
}

#[inline(always)]
fn lines(p: *const u8, len: usize, max_lines: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use core::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // The lines the object spans, from the one its first byte is in.
        let skew = p as usize % LINE;
        let first = p.wrapping_sub(skew);
        for i in 0..(skew + len).div_ceil(LINE).min(max_lines) {
            // SAFETY: a prefetch is a hint: it never faults, even on an
            // invalid address, and reads nothing into the program. The
            // address is in a line the caller's object covers
            // (`wrapping_*` for the pointer arithmetic, so no in-bounds
            // requirement applies either).
            unsafe { _mm_prefetch::<_MM_HINT_T0>(first.wrapping_add(i * LINE).cast()) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (p, len, max_lines);
}
