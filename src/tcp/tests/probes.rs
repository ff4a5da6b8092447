//! How a tail-loss probe's episode ends (RFC 8985 7.4.2): only a probe
//! whose copy was the one that arrived repaired a loss and cuts the
//! window. A late ACK of the probed segment, a D-SACK of the probe, or a
//! probe of new data cut nothing; each case is also timed against what
//! a good TCP would take.

use super::super::seq;
use super::super::tcb::Rtx;
use super::*;

/// A established over a 100 µs RTT, its RTT learnt.
fn warmed() -> Net {
    let mut n = Net::open(cfg(), cfg(), 50);
    n.transfer(64 << 10);
    n
}

/// Moves time to A's loss-probe deadline, fires it, and returns what A
/// sends then (the probe).
fn probe_fires(n: &mut Net) -> Vec<Wire> {
    let a = n.ends[0].tcb();
    assert_eq!(a.rtx, Rtx::Tlp, "a probe is armed");
    n.now = n.now.max(a.rtx_at);
    let now = n.now;
    let e = &mut n.ends[0];
    let mut env = env!(e, now);
    e.tcb.as_mut().unwrap().on_timer(&mut env);
    let probe = n.sent_now(0);
    assert_eq!(n.ends[0].stats.tlps.get(), 1);
    assert_eq!(probe.len(), 1, "one probe");
    probe
}

fn unreduced(n: &Net) -> bool {
    n.ends[0].tcb().cc.ssthresh() == u32::MAX
}

#[test]
fn rfc8985_7_4_2_a_late_ack_of_the_probed_segment_is_no_loss() {
    // A busy peer: B acknowledges both segments, but the ACK reaches A
    // only after A's probe went out. It reaches exactly the probe's end,
    // and says nothing yet about which copy arrived; the D-SACK of the
    // probe, which follows, says both did.
    let mut n = warmed();
    n.send(0, &[7; 3000]);
    let data = n.sent_now(0);
    assert_eq!(data.len(), 3);
    n.arrive(data);
    let late_acks = n.sent_now(1);
    let t0 = n.now;
    let probe = probe_fires(&mut n);
    assert!(n.now - t0 < 5_000, "the probe waited {} µs", n.now - t0);
    n.arrive(late_acks);
    assert_eq!(n.ends[0].tcb().in_flight(), 0, "all acknowledged");
    assert!(unreduced(&n), "a late ACK is not taken for a repaired loss");
    n.arrive(probe);
    let dsack = n.sent_now(1);
    assert!(
        dsack[0].hdr.sack_ranges[0].is_some(),
        "B reports the duplicate"
    );
    n.arrive(dsack);
    assert!(unreduced(&n), "the D-SACK shows nothing was lost");
    assert_eq!(n.ends[0].stats.tlp_recoveries.get(), 0);
    assert!(
        n.ends[0].tcb().rare().and_then(|r| r.tlp_end).is_none(),
        "the episode ended"
    );
    // The next tail is probed again (a probe episode left open would
    // leave only the retransmission timeout).
    n.send(0, &[8; 3000]);
    let _ = n.sent_now(0);
    assert_eq!(n.ends[0].tcb().rtx, Rtx::Tlp);
}

#[test]
fn rfc8985_7_4_2_a_probe_that_repaired_a_tail_loss_cuts_the_window_once() {
    let mut n = warmed();
    n.send(0, &[7; 3000]);
    let mut data = n.sent_now(0);
    let t0 = n.now;
    data.pop(); // the tail is lost
    n.arrive(data);
    let acks = n.sent_now(1);
    n.arrive(acks);
    let probe = probe_fires(&mut n);
    n.arrive(probe);
    n.run_until(|n| n.ends[0].tcb().in_flight() == 0);
    // A lone segment's probe waits for the RTO floor (5 ms: the peer may
    // delay its ACK), then B's delayed ACK (1 ms) and a round trip; and
    // the window is not collapsed as a timeout would.
    assert!(n.now - t0 < 6_500, "repaired after {} µs", n.now - t0);
    assert_eq!(n.ends[0].stats.rtos.get(), 0);
    // That ACK could still be the original's, late; the next ACK beyond
    // the probe, with no D-SACK before it, shows the probe's copy arrived.
    assert!(unreduced(&n));
    let want = n.ends[1].got.len() + 1000;
    n.send(0, &[8; 1000]);
    n.run_until(|n| n.ends[1].got.len() == want && n.ends[0].tcb().in_flight() == 0);
    assert!(
        !unreduced(&n),
        "the repaired loss got its congestion response"
    );
    assert_eq!(n.ends[0].stats.tlp_recoveries.get(), 1);
    assert_eq!(n.ends[0].stats.rtos.get(), 0);
}

#[test]
fn rfc8985_7_4_2_a_probe_of_new_data_repairs_nothing() {
    // A has more than its window to send; B's ACKs of the window come
    // late, so the probe sends new data. When the ACKs and the probe's
    // own ACK arrive, nothing was lost and slow start goes on.
    let mut n = Net::open(cfg(), cfg(), 50);
    n.transfer(3000);
    n.send(0, &pattern(256 << 10, 9));
    let window = n.sent_now(0);
    assert!(window.len() >= 8, "a window of {}", window.len());
    let snd_max = n.ends[0].tcb().snd_max;
    n.arrive(window);
    let late_acks = n.sent_now(1);
    let probe = probe_fires(&mut n);
    assert!(
        seq::gt(n.ends[0].tcb().snd_max, snd_max),
        "the probe is new data"
    );
    assert_eq!(n.ends[0].stats.retransmits.get(), 0);
    n.arrive(late_acks);
    n.arrive(probe);
    let acks = n.sent_now(1);
    n.arrive(acks);
    assert!(unreduced(&n), "nothing was lost");
    assert_eq!(n.ends[0].stats.tlp_recoveries.get(), 0);
    n.run_until(|n| n.ends[1].got.len() == (256 << 10) + 3000);
    assert!(unreduced(&n));
}
