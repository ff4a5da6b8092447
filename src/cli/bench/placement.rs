//! How far apart the benchmark's two cores are: one cache line passed back
//! and forth between a thread pinned to each.
//!
//! On a VM the host decides which physical cores the vCPUs run on, and may
//! move them at any time. On the 2-vCPU development VM (AMD EPYC) the
//! round trip is either about 60 ns (the two cores share an L3) or about
//! 340 ns (they are on different dies), and it flips from one minute to
//! the next. Every rate that passes frames between the two cores follows
//! it: tcp-rr at 64 connections runs 1.5-2.2M tx/s in the first case and
//! 1.0-1.3M in the second (`docs/tcp.md`). The benches measure it before
//! and after each of ours' runs, so that a figure comes with the placement
//! it was measured in.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The line, alone in its own 128 bytes (the adjacent-line prefetcher
/// pairs lines).
#[repr(align(128))]
struct Line(AtomicU64);

/// Told to the other thread to stop, or by it when it could not be pinned
/// (odd, so never a count the two reach).
const STOP: u64 = u64::MAX;
/// Round trips per batch, and batches (the median is reported).
const ROUND_TRIPS: u64 = 20_000;
const BATCHES: usize = 5;
/// The longest the probe may take (at 340 ns it takes about 35 ms).
const LIMIT: Duration = Duration::from_secs(1);

/// The median time, in ns, of one round trip of a cache line between a
/// thread on core `a` and one on core `b`. `None` when they are the same
/// core, when either is not one this process may use or a thread cannot
/// be pinned, or when it takes over a second (a core shared with
/// something else).
pub fn core_round_trip_ns(a: usize, b: usize) -> Option<f64> {
    let cores = bypass::runtime::available_cores();
    if a == b || !cores.contains(&a) || !cores.contains(&b) {
        return None;
    }
    let line = Line(AtomicU64::new(0));
    let line = &line;
    std::thread::scope(|s| {
        s.spawn(move || {
            if !core_affinity::set_for_current(core_affinity::CoreId { id: b }) {
                line.0.store(STOP, Ordering::Release);
                return;
            }
            echo(line);
        });
        let r = s
            .spawn(move || {
                if !core_affinity::set_for_current(core_affinity::CoreId { id: a }) {
                    return None;
                }
                measure(line)
            })
            .join()
            .ok()
            .flatten();
        line.0.store(STOP, Ordering::Release);
        r
    })
}

/// The far end: answers each odd count with the next even one until told
/// to stop (or until the limit, should the measuring side be gone).
fn echo(line: &Line) {
    let start = Instant::now();
    let mut spins = 0u32;
    loop {
        let v = line.0.load(Ordering::Acquire);
        if v == STOP {
            return;
        }
        if v % 2 == 1 {
            line.0.store(v + 1, Ordering::Release);
            continue;
        }
        spins = spins.wrapping_add(1);
        if spins % 4096 == 0 && start.elapsed() > 2 * LIMIT {
            return;
        }
    }
}

/// The near end: `BATCHES` batches of `ROUND_TRIPS`, the median batch.
fn measure(line: &Line) -> Option<f64> {
    let start = Instant::now();
    let mut per_batch = Vec::with_capacity(BATCHES);
    let mut n = 0u64;
    for _ in 0..BATCHES {
        let t0 = Instant::now();
        for _ in 0..ROUND_TRIPS {
            line.0.store(2 * n + 1, Ordering::Release);
            let mut spins = 0u32;
            loop {
                let v = line.0.load(Ordering::Acquire);
                if v == 2 * n + 2 {
                    break;
                }
                if v == STOP {
                    return None;
                }
                spins = spins.wrapping_add(1);
                if spins % 4096 == 0 && start.elapsed() > LIMIT {
                    return None;
                }
            }
            n += 1;
        }
        per_batch.push(t0.elapsed().as_nanos() as f64 / ROUND_TRIPS as f64);
    }
    per_batch.sort_by(f64::total_cmp);
    Some(per_batch[BATCHES / 2])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_core_has_no_round_trip() {
        assert_eq!(core_round_trip_ns(0, 0), None);
    }

    #[test]
    fn a_core_that_does_not_exist_gives_none() {
        assert_eq!(core_round_trip_ns(0, 100_000), None);
    }
}
