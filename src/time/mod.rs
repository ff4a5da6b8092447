//! Clocks. The run loops take one timestamp per iteration and hand it down;
//! nothing below the runtime reads a clock itself, so tests can drive time
//! with a [`ManualClock`].

mod tsc;

use std::cell::Cell;
use std::time::Instant as StdInstant;

pub use tsc::TscClock;

/// A point in time, in microseconds since the clock's origin. This is the
/// unit smoltcp uses, so stack code converts without loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant(pub u64);

impl Instant {
    /// Microseconds since the clock's origin.
    #[inline]
    pub fn micros(self) -> u64 {
        self.0
    }
    /// Milliseconds since the clock's origin.
    #[inline]
    pub fn millis(self) -> u64 {
        self.0 / 1000
    }
    /// Adds `us` microseconds.
    #[inline]
    pub fn plus_micros(self, us: u64) -> Instant {
        Instant(self.0 + us)
    }
    /// Microseconds from `earlier` to `self` (0 if `earlier` is later).
    #[inline]
    pub fn since(self, earlier: Instant) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

/// A source of time for a run loop.
pub trait Clock {
    /// The current time.
    fn now(&self) -> Instant;
}

/// The system's monotonic clock (`CLOCK_MONOTONIC` through `std::time`,
/// served from the vDSO with the TSC on x86, so it costs no system call).
#[derive(Debug, Clone, Copy)]
pub struct MonotonicClock {
    origin: StdInstant,
}

impl MonotonicClock {
    /// A clock whose origin is now.
    pub fn new() -> Self {
        MonotonicClock {
            origin: StdInstant::now(),
        }
    }
}

impl Default for MonotonicClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for MonotonicClock {
    #[inline]
    fn now(&self) -> Instant {
        Instant(self.origin.elapsed().as_micros() as u64)
    }
}

/// The run loops' clock: the TSC where it is invariant, `CLOCK_MONOTONIC`
/// otherwise.
#[derive(Debug, Clone, Copy)]
pub enum FastClock {
    /// The invariant TSC.
    Tsc(TscClock),
    /// The monotonic clock.
    Monotonic(MonotonicClock),
}

impl FastClock {
    /// The TSC if it is invariant here, else the monotonic clock.
    pub fn new() -> FastClock {
        match TscClock::new() {
            Some(t) => FastClock::Tsc(t),
            None => FastClock::Monotonic(MonotonicClock::new()),
        }
    }
}

impl Default for FastClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for FastClock {
    #[inline]
    fn now(&self) -> Instant {
        match self {
            FastClock::Tsc(c) => c.now(),
            FastClock::Monotonic(c) => c.now(),
        }
    }
}

/// A clock that moves only when told to: for deterministic tests.
#[derive(Debug, Default)]
pub struct ManualClock {
    now: Cell<u64>,
}

impl ManualClock {
    /// A clock at time zero.
    pub fn new() -> Self {
        Self::default()
    }
    /// Moves the clock forward by `us` microseconds.
    pub fn advance(&self, us: u64) {
        self.now.set(self.now.get() + us);
    }
    /// Sets the clock.
    pub fn set(&self, t: Instant) {
        self.now.set(t.0);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        Instant(self.now.get())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::new();
        assert_eq!(c.now(), Instant(0));
        c.advance(1500);
        assert_eq!(c.now().millis(), 1);
        assert_eq!(c.now().since(Instant(500)), 1000);
        assert_eq!(Instant(5).since(Instant(9)), 0);
    }

    #[test]
    fn monotonic_clock_does_not_go_back() {
        let c = MonotonicClock::new();
        let a = c.now();
        let b = c.now();
        assert!(b >= a);
    }
}
