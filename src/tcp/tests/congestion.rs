//! A loss shown by a burst of ACKs, as a port's receive burst brings them:
//! the ACKs before the one that shows the loss have taken most of the
//! flight, and the data they clock out is not sent yet. The congestion
//! response's size (RFC 5681 3.1, RFC 9438 4.6) and RACK's judgement of
//! reordering (RFC 8985 6.2) must not be misled by that; and the fast
//! retransmission goes out at once (RFC 9937 5, through PRR).

use super::super::tcb::flag;
use super::*;

/// A sends a whole window in one burst. The segments `held(i, len)`
/// picks (by place in sequence order) do not reach B now; B's ACKs of the
/// others all reach A before A sends again (one receive burst). Returns
/// A's flight after its burst, its cwnd then, and the held segments.
fn burst_acked_at_once(n: &mut Net, held: impl Fn(usize, usize) -> bool) -> (u32, u32, Vec<Wire>) {
    let mut burst = n.sent_now(0);
    let (flight, cwnd) = (n.ends[0].tcb().in_flight(), n.ends[0].tcb().cwnd());
    assert!(n.flight.is_empty(), "only A's burst was on the wire");
    assert!(burst.len() >= 20, "a burst of {} segments", burst.len());
    burst.sort_by_key(|w| w.hdr.seq_number.0 as u32);
    let len = burst.len();
    let (mut kept, mut arrive) = (Vec::new(), Vec::new());
    for (i, w) in burst.into_iter().enumerate() {
        if held(i, len) {
            kept.push(w);
        } else {
            arrive.push(w);
        }
    }
    n.arrive(arrive);
    let acks = n.sent_now(1);
    assert!(!acks.is_empty(), "B answered the hole at once");
    n.arrive(acks);
    assert_eq!(n.ends[0].stats.recoveries.get(), 1, "the loss is seen");
    (flight, cwnd, kept)
}

/// [`burst_acked_at_once`] with the fourth segment from the burst's end
/// held: the three after it are SACKed, which marks it lost at once (RFC
/// 6675's DupThresh; RACK's reordering window is 0 then).
fn hold_one_of_a_burst_and_ack_the_rest_at_once(n: &mut Net) -> (u32, u32, Wire) {
    let (flight, cwnd, mut held) = burst_acked_at_once(n, |i, len| i == len - 4);
    (flight, cwnd, held.remove(0))
}

/// [`hold_one_of_a_burst_and_ack_the_rest_at_once`], the segment lost.
fn lose_one_of_a_burst_and_ack_the_rest_at_once(n: &mut Net) -> (u32, u32) {
    let (flight, cwnd, _) = hold_one_of_a_burst_and_ack_the_rest_at_once(n);
    (flight, cwnd)
}

#[test]
fn rfc9438_4_6_a_window_limited_sender_reduces_from_its_window_not_from_what_the_burst_left() {
    let mut n = Net::grown_with_more_to_send(5);
    let (flight, cwnd) = lose_one_of_a_burst_and_ack_the_rest_at_once(&mut n);
    let a = n.ends[0].tcb();
    let ssthresh = a.cc.ssthresh();
    let mss = u32::from(a.mss());
    // When the loss shows, the ACKs before it in the same burst have left
    // four segments in flight (the hole and the three after it): taken as
    // the flight, they would make ssthresh under 3 MSS.
    assert_eq!(
        a.flags & flag::REORDER_SEEN,
        0,
        "a cumulative ACK up to a hole with SACKs past it is no reordering"
    );
    assert!(
        ssthresh >= cwnd.min(flight) * 7 / 10,
        "ssthresh {ssthresh} B after a loss in a flight of {flight} B, cwnd {cwnd} B ({mss} B segments)"
    );
    n.run_until(|n| n.ends[1].got.len() == 4 << 20);
    assert!(n.ends[1].got == pattern(4 << 20, 5), "intact and in order");
    assert_eq!(n.ends[0].stats.rtos.get(), 0);
}

#[test]
fn rfc5681_3_1_an_application_limited_sender_reduces_from_its_true_flight() {
    let mut n = Net::open(cfg(), cfg(), 50);
    // Grow the window well past what the application will then send.
    n.transfer(1 << 20);
    let mss = u32::from(n.ends[0].tcb().mss());
    // Thirty segments and nothing more: the window is not this sender's
    // share of the path, what it has in flight is.
    n.send(0, &pattern(30 * mss as usize, 6));
    let (flight, cwnd) = lose_one_of_a_burst_and_ack_the_rest_at_once(&mut n);
    assert!(cwnd > flight, "the window ({cwnd} B) is more than it used");
    let ssthresh = n.ends[0].tcb().cc.ssthresh();
    assert!(
        ssthresh <= 4 * mss * 7 / 10 + mss,
        "ssthresh {ssthresh} B from four segments of {mss} B in flight when the loss showed"
    );
    n.run_until(|n| n.ends[1].got.len() == (1 << 20) + 30 * mss as usize);
}

#[test]
fn rfc8985_6_2_a_segment_that_arrives_after_a_later_one_is_reordering() {
    let mut n = Net::grown_with_more_to_send(7);
    let (_, _, late) = hold_one_of_a_burst_and_ack_the_rest_at_once(&mut n);
    assert_eq!(n.ends[0].tcb().flags & flag::REORDER_SEEN, 0);
    // It was only late: it arrives, and B's ACK covers it.
    n.deliver(late);
    n.output(1);
    let acks: Vec<Wire> = std::mem::take(&mut n.flight);
    n.now += n.delay;
    for w in acks {
        n.deliver(w);
    }
    assert_ne!(
        n.ends[0].tcb().flags & flag::REORDER_SEEN,
        0,
        "delivered after a segment sent later, never retransmitted"
    );
}

#[test]
fn rfc6675_5_the_first_lost_segment_is_resent_on_entering_recovery_then_prr_shares_out_the_rest() {
    let mut n = Net::grown_with_more_to_send(8);
    // The first segment is lost; only the next three have arrived when
    // their SACKs show the loss, so nearly the whole flight is still in
    // the pipe, above the window the loss cuts it to.
    let (_, _, mut held) = burst_acked_at_once(&mut n, |i, _| i == 0 || i >= 4);
    let lost = held.remove(0);
    let rest = held;
    let a = n.ends[0].tcb();
    let mss = u32::from(a.mss());
    assert!(
        a.pipe() > a.cc.ssthresh(),
        "pipe {} over ssthresh {}",
        a.pipe(),
        a.cc.ssthresh()
    );
    let first = n.next_segment(0).expect("the fast retransmission");
    assert_eq!(first.repr.seq_number, lost.hdr.seq_number);
    assert_eq!(n.ends[0].stats.retransmits.get(), 1);
    // Then PRR's share (RFC 9937): 0.7 of the three segments delivered,
    // 2.1 segments with the retransmission, so one new segment and no
    // more until further ACKs (RFC 6675's pipe rule alone would send
    // nothing until the pipe drained under the new window).
    let second = n
        .next_segment(0)
        .expect("PRR's share of the delivered data");
    assert_eq!(second.data_len, mss);
    assert_eq!(n.ends[0].stats.retransmits.get(), 1, "new data");
    assert!(n.next_segment(0).is_none());
    for w in rest {
        n.flight.push(w);
    }
    n.run_until(|n| n.ends[1].got.len() == 4 << 20);
    assert!(n.ends[1].got == pattern(4 << 20, 8), "intact and in order");
}
