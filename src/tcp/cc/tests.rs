//! Unit tests of the congestion controllers, named after the RFC sections
//! they check.

use super::*;

const MSS: u32 = 1_000;
const MS: u64 = 1_000;
const SEC: u64 = 1_000_000;

/// One round trip: the window at its start is acknowledged in `per_ack`
/// byte ACKs spread over `rtt_us`, each carrying `sample` as its RTT; the
/// sender is window-limited (flight = cwnd). Returns the time after it.
fn round(cc: &mut Cc, now: u64, rtt_us: u64, per_ack: u32, sample: Option<u64>) -> u64 {
    let n = (cc.cwnd() / per_ack).max(1);
    for i in 0..n {
        let t = now + rtt_us * u64::from(i + 1) / u64::from(n);
        cc.on_ack(per_ack, cc.cwnd(), false, sample, t);
    }
    now + rtt_us
}

/// A controller that slow-started (without RTT samples, so HyStart++ sees
/// nothing) to at least `cwnd` bytes.
fn grown(algo: CcAlgo, cwnd: u32) -> Cc {
    let mut cc = Cc::new(algo, MSS);
    while cc.cwnd() < cwnd {
        cc.on_ack(2 * MSS, cc.cwnd(), false, None, 0);
    }
    cc
}

/// A CUBIC controller after a loss at window `w_max`, recovered, at time `t`.
fn cubic_after_loss(w_max: u32, t: u64) -> Cc {
    let mut cc = grown(CcAlgo::Cubic, w_max);
    assert_eq!(cc.cwnd(), w_max);
    cc.on_congestion_event(w_max, t);
    cc.on_recovery_exit(t);
    cc
}

#[test]
fn controller_stays_small() {
    // The engine keeps one per connection: its size counts against the
    // 1 KiB budget of an idle connection.
    let size = std::mem::size_of::<Cc>();
    assert!(size <= 160, "Cc is {size} bytes");
}

#[test]
fn cc_algo_parses_and_displays() {
    for (name, algo) in CcAlgo::NAMES
        .iter()
        .zip([CcAlgo::Cubic, CcAlgo::Reno, CcAlgo::None])
    {
        assert_eq!(name.parse::<CcAlgo>(), Ok(algo));
        assert_eq!(algo.to_string(), *name);
    }
    assert_eq!(CcAlgo::default(), CcAlgo::Cubic);
    let err = "bbr".parse::<CcAlgo>().unwrap_err();
    assert!(
        err.contains("`bbr`") && err.contains("cubic, reno or none"),
        "{err}"
    );
    assert!("Cubic".parse::<CcAlgo>().is_err());
}

#[test]
fn rfc6928_2_initial_window_for_several_mss() {
    for (mss, iw) in [
        (536, 5_360),
        (1_000, 10_000),
        (1_200, 12_000),
        (1_460, 14_600),
        (4_000, 14_600),
        (9_000, 18_000),
    ] {
        for algo in [CcAlgo::Cubic, CcAlgo::Reno] {
            let cc = Cc::new(algo, mss);
            assert_eq!(cc.cwnd(), iw, "{algo} mss {mss}");
            assert_eq!(cc.ssthresh(), u32::MAX);
            assert!(cc.in_slow_start());
            assert_eq!(cc.algo(), algo);
        }
    }
    assert_eq!(initial_window(u32::MAX), u32::MAX);
    assert_eq!(Cc::new(CcAlgo::Reno, 0).cwnd(), 10);
}

#[test]
fn rfc5681_3_1_slow_start_doubles_per_rtt_of_acks() {
    for algo in [CcAlgo::Cubic, CcAlgo::Reno] {
        // One ACK per segment, then delayed ACKs (one per two segments).
        for per_ack in [MSS, 2 * MSS] {
            let mut cc = Cc::new(algo, MSS);
            let mut now = 0;
            for r in 1..=6 {
                now = round(&mut cc, now, 10 * MS, per_ack, Some(10 * MS));
                assert_eq!(
                    cc.cwnd(),
                    (10 * MSS) << r,
                    "{algo} per_ack {per_ack} round {r}"
                );
            }
            assert!(cc.in_slow_start());
        }
    }
}

#[test]
fn rfc3465_2_2_byte_counting_limits_slow_start_to_2_mss_per_ack() {
    let mut cc = Cc::new(CcAlgo::Reno, MSS);
    cc.on_ack(10 * MSS, 10 * MSS, false, None, 0);
    assert_eq!(cc.cwnd(), 12 * MSS);
    cc.on_ack(500, 12 * MSS, false, None, 0);
    assert_eq!(cc.cwnd(), 12 * MSS + 500);
    // Slow start stops at ssthresh.
    cc.on_congestion_event(30 * MSS, 0);
    cc.on_rto(15 * MSS, true, 0);
    assert_eq!(cc.ssthresh(), 7_500);
    while cc.in_slow_start() {
        cc.on_ack(2 * MSS, cc.cwnd(), false, None, 0);
    }
    assert_eq!(cc.cwnd(), 7_500);
    assert!(!cc.in_slow_start());
}

#[test]
fn rfc5681_3_1_reno_halves_on_loss_and_grows_one_mss_per_window() {
    let mut cc = grown(CcAlgo::Reno, 40 * MSS);
    cc.on_congestion_event(40 * MSS, 0);
    assert_eq!((cc.ssthresh(), cc.cwnd()), (20 * MSS, 20 * MSS));
    cc.on_recovery_exit(0);
    assert_eq!(cc.cwnd(), 20 * MSS);
    let mut now = 0;
    for w in 21..=30 {
        now = round(&mut cc, now, 10 * MS, MSS, Some(10 * MS));
        assert_eq!(cc.cwnd(), w * MSS);
    }
    // Delayed ACKs count bytes, so the rate is the same.
    now = round(&mut cc, now, 10 * MS, 2 * MSS, Some(10 * MS));
    assert_eq!(cc.cwnd(), 31 * MSS);
    // One stretch ACK of two windows grows two MSS.
    cc.on_ack(62 * MSS, 62 * MSS, false, None, now);
    assert_eq!(cc.cwnd(), 33 * MSS);
    // ssthresh is at least 2 MSS.
    cc.on_congestion_event(MSS, now);
    assert_eq!((cc.ssthresh(), cc.cwnd()), (2 * MSS, 2 * MSS));
}

#[test]
fn rfc6582_3_2_recovery_exit_sets_cwnd_to_ssthresh_only_in_recovery() {
    let mut cc = grown(CcAlgo::Reno, 40 * MSS);
    cc.on_congestion_event(40 * MSS, 0);
    // Whatever the engine did to cwnd in recovery, leaving it deflates to ssthresh.
    cc.w.cwnd = 35 * MSS;
    cc.on_recovery_exit(0);
    assert_eq!(cc.cwnd(), 20 * MSS);
    // Outside recovery: nothing.
    cc.on_ack(20 * MSS, 20 * MSS, false, None, 0);
    cc.on_recovery_exit(0);
    assert_eq!(cc.cwnd(), 21 * MSS);
}

#[test]
fn rfc9438_4_6_loss_sets_ssthresh_and_cwnd_to_beta_times_flight() {
    let mut cc = grown(CcAlgo::Cubic, 100 * MSS);
    cc.on_congestion_event(100 * MSS, 5 * SEC);
    assert_eq!(cc.ssthresh(), 70 * MSS);
    assert_eq!(cc.cwnd(), 70 * MSS);
    assert_eq!(cc.cubic().w_max(), 100 * MSS);
    assert!(!cc.in_slow_start());
    // ssthresh is at least 2 MSS.
    let mut cc = Cc::new(CcAlgo::Cubic, MSS);
    cc.on_congestion_event(2 * MSS, 0);
    assert_eq!((cc.ssthresh(), cc.cwnd()), (2 * MSS, 2 * MSS));
}

#[test]
fn rfc9438_4_2_k_and_plateau_near_w_max_then_convex_growth() {
    // W_max = 1000 segments, cwnd 700 after the loss, RTT 100 ms: the
    // cubic curve dominates the Reno-friendly estimate throughout.
    let w_max = 1_000 * MSS;
    let rtt = 100 * MS;
    let mut cc = cubic_after_loss(w_max, 0);
    assert_eq!(cc.cwnd(), 700 * MSS);
    let mut now = round(&mut cc, 0, rtt, MSS, Some(rtt));
    // K = cbrt((W_max - cwnd_epoch) / C) = cbrt(300 / 0.4) = 9.0856 s.
    let k = cc.cubic().k_us();
    assert!((9_085_000..9_086_200).contains(&k), "K = {k} us");
    let mut prev = cc.cwnd();
    let mut prev_inc = u32::MAX;
    // Concave region: growth slows as cwnd nears W_max.
    while now + rtt < u64::from(k) - SEC {
        now = round(&mut cc, now, rtt, MSS, Some(rtt));
        let inc = cc.cwnd() - prev;
        assert!(
            inc <= prev_inc.saturating_add(MSS / 100),
            "concave: {inc} after {prev_inc} at {now}"
        );
        assert!(cc.cwnd() < w_max);
        (prev, prev_inc) = (cc.cwnd(), inc);
    }
    // The plateau: at t = K, cwnd is within 2% of W_max.
    while now < u64::from(k) {
        now = round(&mut cc, now, rtt, MSS, Some(rtt));
    }
    let at_k = f64::from(cc.cwnd()) / f64::from(w_max);
    assert!((0.98..=1.02).contains(&at_k), "cwnd / W_max at K = {at_k}");
    // Convex region: growth accelerates beyond W_max.
    let mut incs = Vec::new();
    for _ in 0..50 {
        let before = cc.cwnd();
        now = round(&mut cc, now, rtt, MSS, Some(rtt));
        incs.push(cc.cwnd() - before);
    }
    // 5 s past K, one RTT ahead: W_cubic = W_max + 0.4 * 5.1^3 segments.
    let past = f64::from(cc.cwnd()) / f64::from(w_max);
    assert!(
        (1.04..=1.07).contains(&past),
        "cwnd / W_max at K + 5 s = {past}"
    );
    assert!(incs[49] > 2 * incs[19] && incs[19] > incs[0], "{incs:?}");
    // Never more than 1.5x per RTT (RFC 9438 4.2 target bound).
    assert!(incs.iter().all(|&i| i < w_max), "{incs:?}");
}

#[test]
fn rfc9438_4_3_reno_friendly_region_dominates_at_small_rtt() {
    // W_max = 20 segments, RTT 1 ms: the cubic curve needs K = 2.47 s to
    // return to W_max, while Reno would regain that in a few dozen RTTs.
    let rtt = MS;
    let mut cc = cubic_after_loss(20 * MSS, 0);
    assert_eq!(cc.cwnd(), 14 * MSS);
    let mut now = 0;
    for _ in 0..10 {
        now = round(&mut cc, now, rtt, MSS, Some(rtt));
    }
    // W_est grows alpha_cubic = 0.53 segments per RTT: 14 + 5.3.
    let c = cc.cwnd();
    assert!((19_000..=19_700).contains(&c), "after 10 RTTs: {c}");
    for _ in 0..90 {
        now = round(&mut cc, now, rtt, MSS, Some(rtt));
    }
    // Past cwnd_prior, alpha is 1: about 20 + 88 segments after 100 RTTs,
    // far above the cubic curve (W_cubic(0.1 s) = 14.7 segments).
    let c = cc.cwnd();
    assert!((100 * MSS..=112 * MSS).contains(&c), "after 100 RTTs: {c}");
    assert!(now < SEC);
}

#[test]
fn rfc9438_4_7_fast_convergence_lowers_w_max() {
    let mut cc = cubic_after_loss(100 * MSS, 0);
    assert_eq!(cc.cubic().w_max(), 100 * MSS);
    // Another loss before regaining W_max: W_max = cwnd (1 + beta) / 2.
    cc.on_congestion_event(70 * MSS, SEC);
    assert_eq!(cc.cubic().w_max(), 59_500);
    assert_eq!(cc.cwnd(), 49 * MSS);
    cc.on_recovery_exit(SEC);
    // A loss above W_max: W_max = cwnd.
    let mut now = SEC;
    while cc.cwnd() < 60 * MSS {
        now = round(&mut cc, now, 10 * MS, MSS, Some(10 * MS));
    }
    let cwnd = cc.cwnd();
    cc.on_congestion_event(cwnd, now);
    assert_eq!(cc.cubic().w_max(), cwnd);
}

#[test]
fn rfc9438_4_8_rto_gives_one_mss_and_ssthresh_from_flight() {
    for (algo, ss) in [(CcAlgo::Cubic, 70 * MSS), (CcAlgo::Reno, 50 * MSS)] {
        let mut cc = grown(algo, 100 * MSS);
        cc.on_rto(100 * MSS, true, SEC);
        assert_eq!((cc.cwnd(), cc.ssthresh()), (MSS, ss), "{algo}");
        // Later timeouts of the same series keep ssthresh.
        cc.on_rto(MSS, false, 2 * SEC);
        assert_eq!((cc.cwnd(), cc.ssthresh()), (MSS, ss), "{algo}");
        assert!(cc.in_slow_start());
    }
}

#[test]
fn rfc9438_4_8_first_avoidance_after_timeout_starts_with_k_zero() {
    let mut cc = cubic_after_loss(100 * MSS, 0);
    cc.on_rto(70 * MSS, true, SEC);
    assert_eq!(cc.ssthresh(), 49 * MSS);
    let now = SEC + slow_start_rounds(&mut cc, |_| 10 * MS, |cc| !cc.in_slow_start());
    assert_eq!(cc.cwnd(), 49 * MSS);
    round(&mut cc, now, 10 * MS, MSS, Some(10 * MS));
    // W_max = cwnd_epoch and K = 0: the convex curve from here.
    assert_eq!(cc.cubic().k_us(), 0);
    assert_eq!(cc.cubic().w_max(), 49 * MSS);
}

#[test]
fn rfc9438_4_9_undo_restores_the_state_before_a_spurious_event() {
    for algo in [CcAlgo::Cubic, CcAlgo::Reno] {
        let mut cc = grown(algo, 64 * MSS);
        let mut now = 0;
        cc.on_congestion_event(64 * MSS, now);
        cc.on_recovery_exit(now);
        for _ in 0..5 {
            now = round(&mut cc, now, 10 * MS, MSS, Some(10 * MS));
        }
        let before = cc.w;
        cc.on_congestion_event(cc.cwnd(), now);
        assert_ne!(cc.w, before);
        cc.undo();
        assert_eq!(cc.w, before, "{algo}");
        // The recovery is over: its exit changes nothing, and a second
        // undo has nothing to restore.
        cc.on_recovery_exit(now);
        cc.undo();
        assert_eq!(cc.w, before, "{algo}");
        // A timeout series is undone as a whole.
        cc.on_rto(cc.cwnd(), true, now);
        cc.on_rto(MSS, false, now + SEC);
        cc.undo();
        assert_eq!(cc.w, before, "{algo}");
        // Undo from the initial slow start restores the infinite ssthresh.
        let mut fresh = Cc::new(algo, MSS);
        fresh.on_congestion_event(10 * MSS, 0);
        fresh.undo();
        assert_eq!((fresh.cwnd(), fresh.ssthresh()), (10 * MSS, u32::MAX));
    }
}

#[test]
fn rfc7661_app_limited_acks_do_not_grow_cwnd() {
    for algo in [CcAlgo::Cubic, CcAlgo::Reno] {
        // Slow start.
        let mut cc = Cc::new(algo, MSS);
        cc.on_ack(2 * MSS, 3 * MSS, true, Some(MS), 0);
        assert_eq!(cc.cwnd(), 10 * MSS);
        // Congestion avoidance.
        let mut cc = grown(algo, 40 * MSS);
        cc.on_congestion_event(40 * MSS, 0);
        cc.on_recovery_exit(0);
        let cwnd = cc.cwnd();
        for i in 0..1_000 {
            cc.on_ack(MSS, MSS, true, Some(MS), i * MS);
        }
        assert_eq!(cc.cwnd(), cwnd, "{algo}");
    }
}

#[test]
fn rfc9438_5_8_app_limited_time_does_not_count_in_the_curve() {
    // Two CUBIC flows after the same loss at 100 ms RTT: one idles
    // (application-limited) for 5 s after 10 RTTs. Once both have had the
    // same number of window-limited RTTs, their windows match.
    let rtt = 100 * MS;
    let mut busy = cubic_after_loss(500 * MSS, 0);
    let mut idle = busy.clone();
    let (mut t_busy, mut t_idle) = (0, 0);
    for _ in 0..10 {
        t_busy = round(&mut busy, t_busy, rtt, MSS, Some(rtt));
        t_idle = round(&mut idle, t_idle, rtt, MSS, Some(rtt));
    }
    for _ in 0..50 {
        idle.on_ack(MSS, MSS, true, Some(rtt), t_idle);
        t_idle += rtt;
    }
    for _ in 0..10 {
        t_busy = round(&mut busy, t_busy, rtt, MSS, Some(rtt));
        t_idle = round(&mut idle, t_idle, rtt, MSS, Some(rtt));
    }
    let ratio = f64::from(idle.cwnd()) / f64::from(busy.cwnd());
    assert!(
        (0.98..=1.02).contains(&ratio),
        "idle {} busy {}",
        idle.cwnd(),
        busy.cwnd()
    );
}

#[test]
fn rfc5681_4_1_idle_restart_caps_cwnd_at_the_initial_window() {
    for algo in [CcAlgo::Cubic, CcAlgo::Reno] {
        let mut cc = grown(algo, 50 * MSS);
        cc.on_congestion_event(50 * MSS, 0);
        cc.on_recovery_exit(0);
        cc.on_idle_restart(10 * SEC);
        assert_eq!(cc.cwnd(), 10 * MSS, "{algo}");
        assert!(cc.in_slow_start());
        // A window already below the initial window is kept.
        cc.on_rto(10 * MSS, true, 11 * SEC);
        cc.on_idle_restart(20 * SEC);
        assert_eq!(cc.cwnd(), MSS);
    }
}

#[test]
fn none_never_limits() {
    let mut cc = Cc::new(CcAlgo::None, 1_460);
    assert_eq!(cc.algo(), CcAlgo::None);
    assert_eq!((cc.cwnd(), cc.ssthresh()), (u32::MAX, u32::MAX));
    assert!(!cc.in_slow_start());
    cc.on_ack(1_460, 1_460, false, Some(MS), 0);
    cc.on_congestion_event(100_000, 1);
    cc.on_recovery_exit(2);
    cc.on_rto(100_000, true, 3);
    cc.undo();
    cc.on_idle_restart(4);
    cc.set_mss(9_000);
    assert_eq!((cc.cwnd(), cc.ssthresh()), (u32::MAX, u32::MAX));
}

#[test]
fn set_mss_rescales_the_initial_window_until_something_happened() {
    let mut cc = Cc::new(CcAlgo::Cubic, 536);
    assert_eq!(cc.cwnd(), 5_360);
    cc.set_mss(1_460);
    assert_eq!((cc.cwnd(), cc.mss()), (14_600, 1_460));
    cc.set_mss(9_000);
    assert_eq!(cc.cwnd(), 18_000);
    // After the first ACK the window is kept in bytes; only increments use
    // the new MSS.
    cc.on_ack(9_000, 18_000, false, None, 0);
    assert_eq!(cc.cwnd(), 27_000);
    cc.set_mss(1_000);
    assert_eq!(cc.cwnd(), 27_000);
    cc.on_ack(9_000, 27_000, false, None, 0);
    assert_eq!(cc.cwnd(), 29_000);
    let mut cc = Cc::new(CcAlgo::Reno, 536);
    cc.on_congestion_event(5_360, 0);
    cc.set_mss(1_460);
    assert_eq!(cc.cwnd(), 5_360 / 2);
    // Never below one segment of the new size.
    cc.on_rto(5_360, true, 0);
    cc.set_mss(9_000);
    assert_eq!(cc.cwnd(), 9_000);
}

/// Deterministic test randomness: SipHash-1-3 of a counter.
fn rand(i: u64) -> u64 {
    siphasher::sip::SipHasher13::new_with_keys(3, 5).hash(&i.to_le_bytes())
}

#[test]
fn random_event_sequences_keep_the_invariants_and_never_panic() {
    // Debug builds trap on overflow, so this also checks the arithmetic
    // with extreme values: zero and maximal byte counts, huge and
    // backward times, tiny and jumbo MSS.
    let pick = |x: u64| -> u32 {
        match x % 5 {
            0 => 0,
            1 => u32::MAX,
            2 => (x >> 8) as u32 % 3_000,
            _ => (x >> 8) as u32 % 2_000_000,
        }
    };
    for algo in [CcAlgo::Cubic, CcAlgo::Reno, CcAlgo::None] {
        let mut cc = Cc::new(algo, 1_460);
        let mut now = 0u64;
        for i in 0..100_000u64 {
            let x = rand(i);
            now = match x % 97 {
                0 => now.wrapping_sub(1_000), // a clock that went back
                1 => u64::MAX - (x >> 40),
                _ => now.saturating_add((x >> 20) % 100_000),
            };
            let rtt = (x & 0x100 != 0).then_some((x >> 12) % 500_000);
            match (x >> 4) % 16 {
                0 => cc.on_congestion_event(pick(x >> 9), now),
                1 => cc.on_recovery_exit(now),
                2 => cc.on_rto(pick(x >> 9), x & 0x200 != 0, now),
                3 => cc.undo(),
                4 => cc.on_idle_restart(now),
                5 if x % 1_000 < 5 => {
                    cc.set_mss([0, 1, 536, 1_460, 9_000, 65_535][(x >> 30) as usize % 6])
                }
                _ => cc.on_ack(pick(x >> 9), pick(x >> 33), x & 0x400 != 0, rtt, now),
            }
            if algo == CcAlgo::None {
                assert_eq!((cc.cwnd(), cc.ssthresh()), (u32::MAX, u32::MAX));
            } else {
                assert!(cc.cwnd() >= cc.mss(), "step {i}: {cc:?}");
                assert!(cc.ssthresh() >= 2, "step {i}: {cc:?}");
            }
        }
    }
}

/// Drives slow start with one ACK per segment, the RTT samples of round
/// `r` being `rtt_of(r)`, until `stop` (checked after every ACK) or 40
/// rounds; returns the time.
fn slow_start_rounds(
    cc: &mut Cc,
    rtt_of: impl Fn(u32) -> u64,
    mut stop: impl FnMut(&Cc) -> bool,
) -> u64 {
    let mut now = 0;
    for r in 0..40 {
        let rtt = rtt_of(r);
        let n = cc.cwnd() / MSS;
        for i in 0..n {
            if stop(cc) {
                return now;
            }
            cc.on_ack(
                MSS,
                cc.cwnd(),
                false,
                Some(rtt),
                now + rtt * u64::from(i + 1) / u64::from(n),
            );
        }
        now += rtt;
    }
    now
}

#[test]
fn rfc9406_4_2_rtt_increase_enters_css_then_congestion_avoidance() {
    let mut cc = Cc::new(CcAlgo::Cubic, MSS);
    // Two rounds at 10 ms, then the queue adds 10 ms (threshold
    // max(10 ms / 8, 4 ms) = 4 ms).
    let rtt_of = |r: u32| if r < 2 { 10 * MS } else { 20 * MS };
    slow_start_rounds(&mut cc, rtt_of, |cc| cc.hystart.in_css());
    assert!(cc.hystart.in_css());
    assert_eq!(cc.ssthresh(), u32::MAX);
    // CSS grows a quarter as fast.
    let before = cc.cwnd();
    cc.on_ack(MSS, before, false, Some(20 * MS), 0);
    assert_eq!(cc.cwnd(), before + MSS / 4);
    // After CSS_ROUNDS rounds, congestion avoidance without any loss.
    slow_start_rounds(&mut cc, |_| 20 * MS, |cc| !cc.in_slow_start());
    assert!(!cc.in_slow_start());
    assert_eq!(cc.ssthresh(), cc.cwnd());
    // Far below the 2,560 segments 8 rounds of slow start would reach.
    assert!(cc.cwnd() < 300 * MSS, "{}", cc.cwnd());
    // The first avoidance stage starts the curve at K = 0 (RFC 9438 4.10).
    cc.on_ack(MSS, cc.cwnd(), false, Some(20 * MS), 10 * SEC);
    assert_eq!(cc.cubic().k_us(), 0);
}

#[test]
fn rfc9406_4_2_rtt_back_below_the_baseline_resumes_slow_start() {
    let mut cc = Cc::new(CcAlgo::Cubic, MSS);
    let rtt_of = |r: u32| if r < 2 { 10 * MS } else { 20 * MS };
    slow_start_rounds(&mut cc, rtt_of, |cc| cc.hystart.in_css());
    assert!(cc.hystart.in_css());
    // The RTT falls back under the CSS baseline: spurious, slow start again.
    slow_start_rounds(&mut cc, |_| 5 * MS, |cc| !cc.hystart.in_css());
    assert!(!cc.hystart.in_css());
    let before = cc.cwnd();
    cc.on_ack(MSS, before, false, Some(5 * MS), 0);
    assert_eq!(cc.cwnd(), before + MSS);
    assert_eq!(cc.ssthresh(), u32::MAX);
}

#[test]
fn rfc9406_4_2_small_rtt_increase_is_not_congestion() {
    // A LAN: 50 us growing to 3 ms stays below the 4 ms minimum threshold.
    let mut cc = Cc::new(CcAlgo::Cubic, MSS);
    slow_start_rounds(
        &mut cc,
        |r| if r < 2 { 50 } else { 3 * MS },
        |cc| cc.cwnd() >= 10_000 * MSS,
    );
    assert!(cc.in_slow_start());
    assert!(!cc.hystart.in_css());
}

#[test]
fn rfc9406_4_3_only_the_initial_slow_start_uses_hystart() {
    let mut cc = Cc::new(CcAlgo::Cubic, MSS);
    cc.on_rto(10 * MSS, true, 0);
    cc.w.ssthresh = u32::MAX; // even with room to grow
    let rtt_of = |r: u32| if r < 2 { 10 * MS } else { 40 * MS };
    slow_start_rounds(&mut cc, rtt_of, |cc| cc.cwnd() >= 5_000 * MSS);
    assert!(!cc.hystart.in_css());
    assert!(cc.cwnd() >= 5_000 * MSS);
    // Reno does not use it at all.
    let mut cc = Cc::new(CcAlgo::Reno, MSS);
    slow_start_rounds(&mut cc, rtt_of, |cc| cc.cwnd() >= 5_000 * MSS);
    assert!(!cc.hystart.in_css() && cc.in_slow_start());
}

/// A fluid model: flows share a link whose pipe holds `bdp` bytes at the
/// base RTT and whose drop-tail queue holds as much again. Each RTT every
/// flow sends its window; when the windows overflow pipe and queue, every
/// flow sees a loss (synchronised drop-tail), else each gets its window
/// acknowledged with the queueing delay in its RTT samples.
struct Link {
    bdp: u32,
    base_rtt: u64,
}

/// What a fluid run saw after its warm-up.
#[derive(Debug, Default)]
struct FluidStats {
    rounds: u32,
    losses: u32,
    max_cwnd: [u32; 2],
    max_total: u32,
    max_total_after_loss: u32,
    utilisation: f64,
    share: [f64; 2],
}

fn fluid(link: &Link, flows: &mut [Cc; 2], rounds: u32, warmup: u32) -> FluidStats {
    let cap = 2 * link.bdp;
    let mut s = FluidStats::default();
    let mut now = 0;
    let mut recovering = false;
    for r in 0..rounds {
        let total: u32 = flows.iter().map(Cc::cwnd).sum();
        let rtt = link.base_rtt * u64::from(total.max(link.bdp)) / u64::from(link.bdp);
        let overflow = total > cap;
        let measured = r >= warmup;
        if measured {
            s.rounds += 1;
            s.max_total = s.max_total.max(total);
            if recovering {
                s.max_total_after_loss = s.max_total_after_loss.max(total);
            }
            if !overflow {
                s.utilisation += f64::from(total.min(link.bdp)) / f64::from(link.bdp);
                for (i, f) in flows.iter().enumerate() {
                    s.share[i] += f64::from(f.cwnd()) / f64::from(total);
                    s.max_cwnd[i] = s.max_cwnd[i].max(f.cwnd());
                }
            }
        }
        for f in flows.iter_mut() {
            if recovering {
                f.on_recovery_exit(now);
            }
            if overflow {
                f.on_congestion_event(f.cwnd(), now);
            } else {
                round(f, now, rtt, 2 * MSS, Some(rtt));
            }
        }
        if overflow && measured {
            s.losses += 1;
        }
        recovering = overflow;
        now += rtt;
    }
    let ok_rounds = f64::from(s.rounds - s.losses);
    s.utilisation /= ok_rounds;
    s.share = s.share.map(|x| x / ok_rounds);
    s
}

#[test]
fn rfc9438_5_fluid_model_cubic_and_reno_share_a_link() {
    // 100 segments in the pipe at 10 ms, 100 more in the queue.
    let link = Link {
        bdp: 100 * MSS,
        base_rtt: 10 * MS,
    };
    let mut flows = [Cc::new(CcAlgo::Cubic, MSS), Cc::new(CcAlgo::Reno, MSS)];
    let s = fluid(&link, &mut flows, 3_000, 500);
    let cap = 2 * link.bdp;
    // It oscillates: repeated losses, each followed by windows below the
    // capacity, and the windows never run far past it.
    assert!(s.losses >= 10, "{s:?}");
    assert!(s.max_total_after_loss < cap, "{s:?}");
    assert!(s.max_total <= cap + cap / 10, "{s:?}");
    assert!(s.max_cwnd.iter().all(|&c| c <= cap), "{s:?}");
    // The link stays busy and neither flow starves.
    assert!(s.utilisation >= 0.9, "{s:?}");
    assert!(s.share.iter().all(|&x| x >= 0.2), "{s:?}");
}

#[test]
fn rfc9438_5_fluid_model_two_cubic_flows_converge() {
    // Fast convergence: a flow that starts with the link to itself gives
    // way to a second one; over a long run their shares meet.
    let link = Link {
        bdp: 200 * MSS,
        base_rtt: 20 * MS,
    };
    let mut flows = [grown(CcAlgo::Cubic, 300 * MSS), Cc::new(CcAlgo::Cubic, MSS)];
    flows[0].on_congestion_event(300 * MSS, 0);
    flows[0].on_recovery_exit(0);
    let s = fluid(&link, &mut flows, 6_000, 3_000);
    assert!(s.losses >= 10, "{s:?}");
    assert!(s.max_total_after_loss < 2 * link.bdp, "{s:?}");
    assert!(s.share.iter().all(|&x| (0.35..=0.65).contains(&x)), "{s:?}");
}
