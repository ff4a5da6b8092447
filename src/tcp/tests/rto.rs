//! The retransmission timer in fast recovery. RFC 6298 restarts it only
//! when new data is acknowledged, so in recovery it runs from the last
//! advance of the cumulative ACK. When a retransmission is lost too, RACK
//! finds that one round trip later and sends the segment again, and that
//! copy's ACK needs one more round trip: with an RTO under three RTTs
//! (a steady path, a low floor), the old timer fired while it was on its
//! way. Like Linux, the engine restarts the timer whenever it sends the
//! oldest segment again. And a timeout that a late ACK proves spurious
//! is undone (RFC 3522, RFC 4015).

use super::super::rtt::RtoConfig;
use super::*;

#[test]
fn rfc6298_5_resending_the_oldest_segment_restarts_the_timer() {
    // A 10 ms RTT, steady, and an RTO floor of 1.9 RTTs.
    let path = Config {
        rto: RtoConfig {
            min_us: 19_000,
            ..RtoConfig::default()
        },
        ..cfg()
    };
    let mut n = Net::open(path, path, 5_000);
    n.transfer(256 << 10);
    let a = n.ends[0].tcb();
    let (rto, srtt) = (a.rto(), a.srtt_us().unwrap());
    assert!(
        rto < 2 * srtt + srtt / 2,
        "the premise: RTO {rto} µs under 2.5 RTTs ({srtt} µs)"
    );
    // The third data segment of the next transfer is lost, and so is its
    // first retransmission.
    let (mut k, mut hole, mut dropped) = (0, None, 0);
    n.loss = Box::new(move |to, seg, data| {
        if to != 1 || data.is_empty() {
            return false;
        }
        k += 1;
        if k == 3 {
            hole = Some(seg.seq_number);
            dropped += 1;
            return true;
        }
        if hole == Some(seg.seq_number) && dropped == 1 {
            dropped += 1;
            return true;
        }
        false
    });
    let t = n.transfer(256 << 10);
    let s = &n.ends[0].stats;
    assert_eq!(
        s.rtos.get(),
        0,
        "no timeout while the third copy's ACK was on its way"
    );
    assert_eq!(
        s.retransmits.get(),
        2,
        "two retransmissions, not the window again"
    );
    // A few RTTs more than lossless, not a timeout's go-back-N.
    assert!(t < 12 * srtt, "took {t} µs at an RTT of {srtt} µs");
}

#[test]
fn rfc4015_a_timeout_that_a_late_ack_proves_spurious_is_undone_and_learnt() {
    // A peer that holds the ACK of a lone segment for 40 ms, beyond the
    // 5 ms floor; the probe and every copy sent again are lost, so the
    // timer fires. The ACK that finally comes echoes the original's
    // timestamp, from before the timeout (RFC 3522): the timeout was
    // spurious. Its congestion response is undone (RFC 4015), and the RTO
    // floor learns how late this peer's ACKs come.
    let mut n = Net::with_lazy_acker(40_000);
    let cwnd = n.ends[0].tcb().cwnd();
    let mut first = None;
    n.loss = Box::new(move |to, seg, data| {
        if to != 1 || data.is_empty() {
            return false;
        }
        // The original gets through; anything sent again does not.
        let again = first.is_some();
        first.get_or_insert(seg.seq_number);
        again
    });
    n.send(0, &[7; 100]);
    n.run_until(|n| n.ends[1].got.len() == 100 && n.ends[0].tcb().send_queued() == 0);
    let s = &n.ends[0].stats;
    assert!(s.rtos.get() >= 1, "the premise: a timeout fired");
    assert_eq!(s.undos.get(), 1, "the timeout was undone");
    let a = n.ends[0].tcb();
    assert_eq!(a.cwnd(), cwnd, "the window is as before the timeout");
    assert!(
        a.rto_floor() >= 40_000,
        "the floor learnt the peer's delay: {} µs",
        a.rto_floor()
    );
}
