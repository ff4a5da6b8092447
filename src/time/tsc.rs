//! The time-stamp counter as a clock: one `rdtsc` and one multiply per
//! reading, against about 20–25 ns for a `CLOCK_MONOTONIC` read through the
//! vDSO (and a system call when the kernel's clocksource is not the TSC).
//!
//! Used only when the CPU says its TSC is invariant (constant rate, runs in
//! every power state: CPUID leaf 0x8000_0007, EDX bit 8), which is what makes
//! it a clock at all. The rate is measured once per process against
//! `CLOCK_MONOTONIC` over 10 ms.
//!
//! This is the one module of `time` that may use `unsafe`: the `rdtsc` and
//! `cpuid` intrinsics are `unsafe fn`s.
#![allow(unsafe_code)]

use std::sync::OnceLock;
use std::time::{Duration, Instant as StdInstant};

use super::{Clock, Instant};

/// Ticks-to-microseconds factor, as a 32.32 fixed-point multiplier.
static SCALE: OnceLock<Option<u64>> = OnceLock::new();

#[cfg(target_arch = "x86_64")]
#[inline]
fn ticks() -> u64 {
    // SAFETY: rdtsc has no preconditions on x86_64 (it is in the baseline
    // instruction set); it only reads the counter.
    unsafe { core::arch::x86_64::_rdtsc() }
}

#[cfg(target_arch = "x86_64")]
fn invariant_tsc() -> bool {
    use core::arch::x86_64::__cpuid;
    // SAFETY: cpuid exists on every x86_64 CPU; leaf 0x8000_0000 gives the
    // highest extended leaf, checked before 0x8000_0007 is read. (`__cpuid`
    // is a safe fn on newer compilers, an unsafe one on rust-version 1.80.)
    #[allow(unused_unsafe)]
    unsafe {
        __cpuid(0x8000_0000).eax >= 0x8000_0007 && __cpuid(0x8000_0007).edx & (1 << 8) != 0
    }
}

#[cfg(not(target_arch = "x86_64"))]
#[inline]
fn ticks() -> u64 {
    0
}

#[cfg(not(target_arch = "x86_64"))]
fn invariant_tsc() -> bool {
    false
}

/// Measures the TSC rate against the monotonic clock; `None` when the TSC
/// is not usable as a clock.
fn measure() -> Option<u64> {
    if !invariant_tsc() {
        return None;
    }
    let t0 = StdInstant::now();
    let c0 = ticks();
    while t0.elapsed() < Duration::from_millis(10) {
        std::hint::spin_loop();
    }
    let c1 = ticks();
    let us = t0.elapsed().as_nanos() as f64 / 1000.0;
    let per_us = (c1.wrapping_sub(c0)) as f64 / us;
    // Sanity: between 100 MHz and 100 GHz, or the measurement is wrong.
    if !(100.0..=100_000.0).contains(&per_us) {
        return None;
    }
    Some(((1u64 << 32) as f64 / per_us) as u64)
}

/// A clock that reads the invariant TSC. Its origin is its creation.
#[derive(Debug, Clone, Copy)]
pub struct TscClock {
    origin: u64,
    scale: u64,
}

impl TscClock {
    /// A TSC clock, or `None` if the TSC is not invariant here (the first
    /// call takes 10 ms to measure its rate).
    pub fn new() -> Option<TscClock> {
        let scale = (*SCALE.get_or_init(measure))?;
        Some(TscClock {
            origin: ticks(),
            scale,
        })
    }

    /// Ticks per microsecond, as measured.
    pub fn ticks_per_micro(&self) -> f64 {
        (1u64 << 32) as f64 / self.scale as f64
    }
}

impl Clock for TscClock {
    #[inline]
    fn now(&self) -> Instant {
        let d = ticks().wrapping_sub(self.origin);
        Instant(((d as u128 * self.scale as u128) >> 32) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tsc_clock_agrees_with_the_monotonic_clock() {
        let Some(c) = TscClock::new() else {
            // Not a test that passes silently: on x86_64 with an invariant
            // TSC (every machine this project runs on) it must exist.
            assert!(!invariant_tsc(), "invariant TSC but no clock");
            return;
        };
        let t0 = StdInstant::now();
        let a = c.now();
        std::thread::sleep(Duration::from_millis(50));
        let b = c.now();
        let real = t0.elapsed().as_micros() as f64;
        let seen = b.since(a) as f64;
        assert!(b >= a);
        // Within 2% (plus scheduling slack on a busy machine).
        assert!(
            (seen - real).abs() < real * 0.02 + 2000.0,
            "tsc says {seen} us, monotonic {real} us"
        );
    }
}
