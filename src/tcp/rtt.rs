//! The retransmission timer of RFC 6298: smoothed RTT, RTT variance,
//! the retransmission timeout (RTO) and its exponential backoff.
//!
//! Contract:
//! - Pure and sans-I/O: nothing here reads a clock. The caller measures
//!   each RTT sample (in microseconds) and feeds it with
//!   [`RttEstimator::sample`], following Karn's rule (RFC 6298 §3): no
//!   sample from a retransmitted segment unless timestamps disambiguate it.
//! - Granularity G is 1 µs. The floor and ceiling of the RTO are a
//!   [`RtoConfig`], not RFC 6298's 1 s floor: the default profile
//!   (200 ms initial, 5 ms floor, 60 s ceiling) fits a LAN or a datacenter,
//!   where a 1 s floor turns every tail loss into a long stall. RFC 6298
//!   §2.4 allows a lower floor ("MAY"); §2.5 asks for a ceiling of at
//!   least 60 s, which is the default.
//! - SRTT and RTTVAR are kept scaled (×8 and ×4) so that sub-microsecond
//!   fractions of the averages are not lost: with datacenter RTTs of tens of
//!   microseconds, truncation to whole microseconds would bias SRTT by up to
//!   7 µs.
//! - Samples above [`MAX_SAMPLE_US`] (about 9 minutes, so that 8 × SRTT
//!   fits 32 bits) are saturated there; configuration values above
//!   `u32::MAX` µs are saturated at that. The estimator is 32 bytes.
//! - Nothing here panics or allocates.

/// RTO bounds and initial value, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtoConfig {
    /// The RTO before the first RTT sample (RFC 6298 §2.1 says 1 s for the
    /// internet; the default 200 ms fits a LAN).
    pub initial_us: u64,
    /// The floor of the RTO (RFC 6298 §2.4, configurable here).
    pub min_us: u64,
    /// The ceiling of the RTO, backoff included (RFC 6298 §2.5).
    pub max_us: u64,
}

impl Default for RtoConfig {
    /// The LAN/datacenter profile: 200 ms initial, 5 ms floor, 60 s ceiling.
    fn default() -> Self {
        Self {
            initial_us: 200_000,
            min_us: 5_000,
            max_us: 60_000_000,
        }
    }
}

/// Clock granularity G of RFC 6298 §2: 1 µs.
const GRANULARITY_US: u64 = 1;

/// The largest backoff shift applied; 2^32 times any RTO is past any
/// ceiling that fits the configuration.
const MAX_SHIFT: u32 = 32;

fn sat32(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

/// The largest RTT sample taken, µs (`u32::MAX / 8`, about 9 minutes).
pub const MAX_SAMPLE_US: u32 = u32::MAX / 8;

/// RFC 6298 state for one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RttEstimator {
    /// 8 × SRTT, µs.
    srtt8: u32,
    /// 4 × RTTVAR, µs (K × RTTVAR with K = 4).
    rttvar4: u32,
    initial_us: u32,
    min_us: u32,
    max_us: u32,
    latest_us: u32,
    min_rtt_us: u32,
    /// Number of backoffs since the last sample (saturating).
    backoffs: u8,
    /// Whether a first sample was taken.
    sampled: bool,
}

impl RttEstimator {
    /// An estimator with no sample yet: its RTO is `cfg.initial_us`
    /// (clamped to the bounds). A configuration whose `max_us` is below
    /// `min_us` is read with `max_us = min_us`.
    pub fn new(cfg: RtoConfig) -> Self {
        let min_us = sat32(cfg.min_us);
        Self {
            srtt8: 0,
            rttvar4: 0,
            initial_us: sat32(cfg.initial_us),
            min_us,
            max_us: sat32(cfg.max_us).max(min_us),
            latest_us: 0,
            min_rtt_us: u32::MAX,
            backoffs: 0,
            sampled: false,
        }
    }

    /// Takes one RTT measurement (RFC 6298 §2.2 for the first, §2.3 for
    /// later ones, alpha = 1/8, beta = 1/4) and clears the backoff: a new
    /// sample after retransmissions means the path answers again (the
    /// note in §5.7). Also tracks the minimum and the latest sample.
    pub fn sample(&mut self, rtt_us: u64) {
        let r = sat32(rtt_us).min(MAX_SAMPLE_US);
        if self.sampled {
            // RTTVAR <- 3/4 RTTVAR + 1/4 |SRTT - R'|, with the old SRTT;
            // in scaled units: rttvar4 <- 3/4 rttvar4 + |srtt8 - 8R| / 8.
            let err8 = self.srtt8.abs_diff(r * 8);
            self.rttvar4 = self.rttvar4 - self.rttvar4 / 4 + err8 / 8;
            // SRTT <- 7/8 SRTT + 1/8 R': srtt8 <- 7/8 srtt8 + R.
            self.srtt8 = self.srtt8 - self.srtt8 / 8 + r;
        } else {
            // SRTT <- R, RTTVAR <- R/2.
            self.srtt8 = r * 8;
            self.rttvar4 = r * 2;
            self.sampled = true;
        }
        self.latest_us = r;
        self.min_rtt_us = self.min_rtt_us.min(r);
        self.backoffs = 0;
    }

    /// The RTO now: SRTT + max(G, 4 × RTTVAR) (or the initial value before
    /// any sample), clamped to `[min, max]`, times 2^backoffs, clamped to
    /// `max`.
    pub fn rto_us(&self) -> u64 {
        let base = if self.sampled {
            u64::from(self.srtt8.div_ceil(8)) + u64::from(self.rttvar4).max(GRANULARITY_US)
        } else {
            u64::from(self.initial_us)
        };
        let (min, max) = (u64::from(self.min_us), u64::from(self.max_us));
        let base = base.clamp(min, max);
        let shift = u32::from(self.backoffs).min(MAX_SHIFT);
        base.saturating_mul(1u64 << shift).min(max)
    }

    /// A retransmission timeout fired: doubles the RTO (RFC 6298 §5.5).
    /// The RTO saturates at the ceiling; the count keeps going (up to 255)
    /// so the caller can give up after so many tries.
    pub fn backoff(&mut self) {
        self.backoffs = self.backoffs.saturating_add(1);
    }

    /// Forgets the backoff without a sample (for example when an ACK of
    /// new data arrives that gave no valid sample under Karn's rule).
    pub fn reset_backoff(&mut self) {
        self.backoffs = 0;
    }

    /// Backoffs since the last sample or reset.
    pub fn backoffs(&self) -> u32 {
        u32::from(self.backoffs)
    }

    /// Smoothed RTT, `None` before the first sample.
    pub fn srtt_us(&self) -> Option<u64> {
        self.sampled.then(|| u64::from(self.srtt8.div_ceil(8)))
    }

    /// RTT variance (0 before the first sample).
    pub fn rttvar_us(&self) -> u64 {
        u64::from(self.rttvar4.div_ceil(4))
    }

    /// Smallest sample seen, `None` before the first sample. A plain
    /// minimum over the connection's life (the estimator sees no time).
    pub fn min_rtt_us(&self) -> Option<u64> {
        self.sampled.then_some(u64::from(self.min_rtt_us))
    }

    /// Latest sample, `None` before the first sample.
    pub fn latest_us(&self) -> Option<u64> {
        self.sampled.then_some(u64::from(self.latest_us))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn est() -> RttEstimator {
        RttEstimator::new(RtoConfig::default())
    }

    #[test]
    fn estimator_fits_in_32_bytes() {
        assert!(std::mem::size_of::<RttEstimator>() <= 32);
    }

    #[test]
    fn rfc6298_2_1_initial_rto_before_any_sample() {
        let e = est();
        assert_eq!(e.rto_us(), 200_000);
        assert_eq!(e.srtt_us(), None);
        assert_eq!(e.rttvar_us(), 0);
        assert_eq!(e.min_rtt_us(), None);
        assert_eq!(e.latest_us(), None);
        assert_eq!(e.backoffs(), 0);
        // The initial value is clamped to the bounds too.
        let cfg = RtoConfig {
            initial_us: 1,
            min_us: 10,
            max_us: 100,
        };
        assert_eq!(RttEstimator::new(cfg).rto_us(), 10);
        let cfg = RtoConfig {
            initial_us: 1_000,
            min_us: 10,
            max_us: 100,
        };
        assert_eq!(RttEstimator::new(cfg).rto_us(), 100);
    }

    #[test]
    fn rfc6298_2_2_first_sample_sets_srtt_r_and_rttvar_half() {
        let mut e = est();
        e.sample(100_000);
        assert_eq!(e.srtt_us(), Some(100_000));
        assert_eq!(e.rttvar_us(), 50_000);
        // RTO = SRTT + max(G, K*RTTVAR) = 100 ms + 200 ms.
        assert_eq!(e.rto_us(), 300_000);
        assert_eq!(e.latest_us(), Some(100_000));
        assert_eq!(e.min_rtt_us(), Some(100_000));
    }

    #[test]
    fn rfc6298_2_3_later_samples_use_alpha_and_beta() {
        let mut e = est();
        e.sample(100_000);
        e.sample(200_000);
        // RTTVAR = 3/4 * 50 ms + 1/4 * |100 - 200| ms = 62.5 ms.
        // SRTT = 7/8 * 100 ms + 1/8 * 200 ms = 112.5 ms.
        assert_eq!(e.srtt_us(), Some(112_500));
        assert_eq!(e.rttvar_us(), 62_500);
        assert_eq!(e.rto_us(), 112_500 + 250_000);
        e.sample(50_000);
        // RTTVAR = 3/4 * 62.5 + 1/4 * |112.5 - 50| = 46.875 + 15.625 = 62.5 ms.
        // SRTT = 7/8 * 112.5 + 1/8 * 50 = 98.4375 + 6.25 = 104.6875 ms.
        assert_eq!(e.rttvar_us(), 62_500);
        assert_eq!(e.srtt_us(), Some(104_688)); // 104_687.5 rounded up
        assert_eq!(e.latest_us(), Some(50_000));
        assert_eq!(e.min_rtt_us(), Some(50_000));
    }

    #[test]
    fn rfc6298_2_3_steady_samples_converge_without_truncation_bias() {
        // With unscaled integer averages, SRTT would stick at 100 us for
        // samples of 107 us (7*100 + 107 = 807, /8 = 100).
        let mut e = est();
        e.sample(100);
        for _ in 0..200 {
            e.sample(107);
        }
        assert!(e.srtt_us().unwrap() >= 106, "{:?}", e.srtt_us());
        assert!(e.rttvar_us() <= 1, "{}", e.rttvar_us());
    }

    #[test]
    fn rfc6298_2_4_rto_is_floored_at_the_configured_minimum() {
        let mut e = est();
        e.sample(20); // a datacenter RTT: 20 us + 4*10 us = 60 us < 5 ms
        assert_eq!(e.rto_us(), 5_000);
        // G = 1 us when RTTVAR is 0: zero samples give SRTT 0 + G.
        let cfg = RtoConfig {
            initial_us: 1,
            min_us: 0,
            max_us: 100,
        };
        let mut e = RttEstimator::new(cfg);
        for _ in 0..100 {
            e.sample(0);
        }
        assert_eq!(e.rto_us(), 1);
    }

    #[test]
    fn rfc6298_2_5_rto_is_capped_at_the_configured_maximum() {
        let mut e = est();
        e.sample(50_000_000);
        assert_eq!(e.rto_us(), 60_000_000);
        // Absurd samples saturate instead of overflowing.
        e.sample(u64::MAX);
        assert_eq!(e.rto_us(), 60_000_000);
        assert_eq!(e.latest_us(), Some(u64::from(MAX_SAMPLE_US)));
    }

    #[test]
    fn rfc6298_5_5_backoff_doubles_and_saturates_at_max() {
        let mut e = est();
        e.sample(100_000); // RTO 300 ms
        let mut expect = 300_000u64;
        for i in 1..=7 {
            e.backoff();
            expect *= 2;
            assert_eq!(e.backoffs(), i);
            assert_eq!(e.rto_us(), expect.min(60_000_000));
        }
        // 300 ms * 2^8 = 76.8 s > 60 s.
        e.backoff();
        assert_eq!(e.rto_us(), 60_000_000);
        for _ in 0..300 {
            e.backoff();
        }
        assert_eq!(e.rto_us(), 60_000_000);
        assert_eq!(e.backoffs(), 255);
        // Before any sample, the initial RTO backs off the same way.
        let mut e = est();
        e.backoff();
        e.backoff();
        assert_eq!(e.rto_us(), 800_000);
    }

    #[test]
    fn rfc6298_5_7_a_new_sample_clears_the_backoff() {
        let mut e = est();
        e.sample(100_000);
        e.backoff();
        e.backoff();
        assert_eq!(e.rto_us(), 1_200_000);
        e.sample(100_000);
        assert_eq!(e.backoffs(), 0);
        // SRTT 100 ms, RTTVAR 3/4 * 50 ms = 37.5 ms.
        assert_eq!(e.rto_us(), 100_000 + 150_000);
        e.backoff();
        e.reset_backoff();
        assert_eq!(e.backoffs(), 0);
        assert_eq!(e.rto_us(), 250_000);
    }

    #[test]
    fn random_samples_and_backoffs_stay_within_bounds() {
        // Debug builds trap on overflow: extreme samples and long backoff
        // series must neither panic nor leave [min, max].
        let cfg = RtoConfig::default();
        let mut e = RttEstimator::new(cfg);
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..100_000 {
            x = x.rotate_left(17).wrapping_mul(0x2545_f491_4f6c_dd1d) ^ 0x1234_5678;
            match x % 8 {
                0 => e.backoff(),
                1 => e.reset_backoff(),
                2 => e.sample(u64::MAX >> (x >> 58)),
                _ => e.sample((x >> 8) % 2_000_000),
            }
            let rto = e.rto_us();
            assert!((cfg.min_us..=cfg.max_us).contains(&rto), "{rto} {e:?}");
            assert!(
                e.min_rtt_us() <= e.latest_us() && e.latest_us() <= Some(u64::from(MAX_SAMPLE_US))
            );
        }
    }

    #[test]
    fn inverted_bounds_are_read_as_min() {
        let cfg = RtoConfig {
            initial_us: 500,
            min_us: 1_000,
            max_us: 10,
        };
        let mut e = RttEstimator::new(cfg);
        assert_eq!(e.rto_us(), 1_000);
        e.backoff();
        assert_eq!(e.rto_us(), 1_000);
    }
}
