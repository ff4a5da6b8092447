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
//!
//! With many connections the figure follows memory instead: every
//! transaction touches a few lines of each connection's state and frames
//! that have left the caches. [`memory_line_ns`] measures what a line
//! from beyond the caches costs on a core, alone and with many misses in
//! flight (the most a well-prefetched loop can hope for).

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

/// What a cache line from beyond the caches costs one core, in ns.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MemoryLine {
    /// One miss at a time (a chain of dependent loads): the latency.
    pub alone: f64,
    /// [`CHAINS`] independent chains interleaved: the cost per line when
    /// that many misses are in flight.
    pub parallel: f64,
}

/// Independent chains in [`MemoryLine::parallel`]: on the development VM
/// the cost per line stops falling at about this many (14 ns a line at
/// 16, 9 at 24 and at 32).
pub const CHAINS: usize = 24;
/// The chase's span: well beyond this VM's caches (a chain over 8 MiB
/// already waits about 150 ns a line here).
const SPAN_LINES: usize = (64 << 20) / 64;
/// Loads per measurement.
const LOADS: usize = 1 << 20;

/// Chases pointers through [`SPAN_LINES`] lines in a random order on
/// `core`, one chain and then [`CHAINS`] at once. `None` when the core is
/// not one this process may use or a thread cannot be pinned there.
pub fn memory_line_ns(core: usize) -> Option<MemoryLine> {
    if !bypass::runtime::available_cores().contains(&core) {
        return None;
    }
    std::thread::scope(|s| {
        s.spawn(move || {
            if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
                return None;
            }
            let next = chase_ring(SPAN_LINES, 0x9e37_79b9_7f4a_7c15);
            let alone = chase(&next, 1, LOADS / 8);
            let parallel = chase(&next, CHAINS, LOADS);
            Some(MemoryLine { alone, parallel })
        })
        .join()
        .ok()
        .flatten()
    })
}

/// A line per entry; each names the next line of one cycle through all
/// `lines` in a random order (Sattolo's shuffle), so that no prefetcher
/// can guess the next one.
fn chase_ring(lines: usize, seed: u64) -> Vec<[u64; 8]> {
    let mut order: Vec<u32> = (0..lines as u32).collect();
    let mut x = seed | 1;
    for i in (1..lines).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        order.swap(i, (x % i as u64) as usize);
    }
    let mut next = vec![[0u64; 8]; lines];
    for w in 0..lines {
        next[order[w] as usize][0] = order[(w + 1) % lines] as u64;
    }
    next
}

/// Time per line, ns, of `loads` loads spread over `chains` chains that
/// start evenly apart in the ring.
fn chase(next: &[[u64; 8]], chains: usize, loads: usize) -> f64 {
    let mut at: Vec<u64> = (0..chains)
        .map(|c| (c * next.len() / chains) as u64)
        .collect();
    let rounds = loads / chains;
    let t0 = Instant::now();
    for _ in 0..rounds {
        for p in at.iter_mut() {
            *p = next[*p as usize][0];
        }
    }
    let ns = t0.elapsed().as_nanos() as f64;
    std::hint::black_box(&at);
    ns / (rounds * chains) as f64
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
        assert_eq!(memory_line_ns(100_000), None);
    }

    /// The chase visits every line once per cycle, so it measures the
    /// whole span and not a short loop that stays in a cache.
    #[test]
    fn the_chase_is_one_cycle_through_every_line() {
        let next = chase_ring(1000, 7);
        let (mut p, mut seen) = (0u64, vec![false; 1000]);
        for _ in 0..1000 {
            assert!(!seen[p as usize], "line {p} came round early");
            seen[p as usize] = true;
            p = next[p as usize][0];
        }
        assert_eq!(p, 0);
    }
}
