//! What a segment is taken as: RFC 5961's screening of RST, SYN and ACK
//! with challenge ACKs, PAWS (RFC 7323 5), the SACK and D-SACK blocks an
//! arrival draws (RFC 2018, RFC 2883), and pure ACKs at the window's edge
//! (RFC 9293 3.10.7.4). Each injects a hand-made segment into B.

use super::*;

/// A connection after a first exchange, and the TS.Recent B holds.
fn with_ts_recent() -> (Net, u32) {
    let mut n = Net::open(cfg(), cfg(), 50);
    n.transfer(1000);
    let recent = n.ends[1].tcb().ts_recent().unwrap();
    (n, recent)
}

/// Gives B a data segment from A, `seq_delta` past B's rcv_nxt, stamped
/// `tsval`.
fn inject_stamped(n: &mut Net, seq_delta: i64, tsval: u32, payload: &'static [u8]) {
    let seg = TcpRepr {
        timestamp: Some(TcpTimestampRepr::new(tsval, 0)),
        payload,
        ..from_a(n, TcpControl::Psh, seq_delta)
    };
    inject(n, 1, seg);
}

#[test]
fn rfc5961_3_2_only_an_exact_rst_resets() {
    let mut n = Net::open(cfg(), cfg(), 50);
    n.step();
    // In the window but not exact: a challenge ACK, the connection lives.
    let rst = from_a(&n, TcpControl::Rst, 100);
    inject(&mut n, 1, rst);
    assert_eq!(n.state(1), State::Established);
    assert_eq!(n.ends[1].stats.challenge_acks.get(), 1);
    // Outside the window: ignored.
    let far = from_a(&n, TcpControl::Rst, 1 << 30);
    inject(&mut n, 1, far);
    assert_eq!(n.state(1), State::Established);
    assert_eq!(n.ends[1].stats.challenge_acks.get(), 1);
    // Exact: reset.
    let exact = from_a(&n, TcpControl::Rst, 0);
    inject(&mut n, 1, exact);
    assert_eq!(n.state(1), State::Closed);
    assert_eq!(n.ends[1].tcb().close_reason(), CloseReason::Reset);
}

#[test]
fn rfc5961_4_a_syn_on_an_established_connection_draws_a_challenge_ack() {
    let mut n = Net::open(cfg(), cfg(), 50);
    n.step();
    let syn = TcpRepr {
        ack_number: None,
        ..from_a(&n, TcpControl::Syn, 12345)
    };
    inject(&mut n, 1, syn);
    assert_eq!(n.state(1), State::Established);
    assert_eq!(n.ends[1].stats.challenge_acks.get(), 1);
    // Rate-limited per connection.
    inject(&mut n, 1, syn);
    assert_eq!(n.ends[1].stats.challenge_acks.get(), 1);
    assert_eq!(n.ends[1].stats.challenge_limited.get(), 1);
}

#[test]
fn rfc5961_7_challenge_acks_are_limited_per_core() {
    let mut l = ChallengeLimiter::new(3, 0);
    let allowed = (0..10).filter(|_| l.allow(5_000_000)).count();
    assert_eq!(allowed, 3);
    assert!(l.allow(6_000_001), "a new second");
}

#[test]
fn rfc5961_5_an_ack_for_data_never_sent_is_refused() {
    let mut n = Net::open(cfg(), cfg(), 50);
    n.step();
    let (b_next, _) = n.ends[1].tcb().seqs();
    let mut bogus = from_a(&n, TcpControl::None, 0);
    bogus.ack_number = Some(TcpSeqNumber(b_next.wrapping_add(50_000) as i32));
    let before = n.ends[1].tcb().seqs();
    inject(&mut n, 1, bogus);
    assert_eq!(n.ends[1].tcb().seqs(), before);
    assert_eq!(n.state(1), State::Established);
}

#[test]
fn rfc7323_5_paws_drops_old_timestamps() {
    let (mut n, recent) = with_ts_recent();
    inject_stamped(&mut n, 0, recent.wrapping_sub(1000), b"stale");
    assert_eq!(n.ends[1].stats.paws_drops.get(), 1);
    assert_eq!(n.ends[1].tcb().readable(), 0);
}

#[test]
fn rfc7323_5_paws_lets_a_segment_one_tick_late_through() {
    // Stamped one tick before the newest the receiver has seen (two of the
    // peer's CPUs swapped them on the way): accepted, as Linux does.
    let (mut n, recent) = with_ts_recent();
    inject_stamped(&mut n, 0, recent.wrapping_sub(1), b"late");
    assert_eq!(n.ends[1].stats.paws_drops.get(), 0);
    assert_eq!(n.ends[1].tcb().readable(), 4);
    // Two ticks is past the tolerance.
    inject_stamped(&mut n, 4, recent.wrapping_sub(2), b"old");
    assert_eq!(n.ends[1].stats.paws_drops.get(), 1);
    assert_eq!(n.ends[1].tcb().readable(), 4);
}

#[test]
fn rfc2018_out_of_order_data_is_sacked_most_recent_first() {
    let mut n = Net::open(cfg(), cfg(), 50);
    n.step();
    let base = from_a(&n, TcpControl::None, 0);
    let start = base.seq_number.0 as u32;
    for off in [1000u32, 3000] {
        let seg = TcpRepr {
            seq_number: TcpSeqNumber(start.wrapping_add(off) as i32),
            payload: &[7; 500],
            ..base
        };
        inject(&mut n, 1, seg);
    }
    let ack = n.next_segment(1).expect("an immediate ACK");
    let s = |a: u32, b: u32| Some((start.wrapping_add(a), start.wrapping_add(b)));
    assert_eq!(ack.repr.sack_ranges, [s(3000, 3500), s(1000, 1500), None]);
    assert_eq!(ack.repr.ack_number.unwrap().0 as u32, start);
}

#[test]
fn rfc2883_a_duplicate_is_reported_with_dsack() {
    let mut n = Net::open(cfg(), cfg(), 50);
    n.transfer(3000);
    let base = from_a(&n, TcpControl::None, -1000);
    let dup = TcpRepr {
        payload: &[1; 1000],
        ..base
    };
    inject(&mut n, 1, dup);
    let ack = n.next_segment(1).expect("an ACK");
    let l = base.seq_number.0 as u32;
    assert_eq!(ack.repr.sack_ranges[0], Some((l, l.wrapping_add(1000))));
}

#[test]
fn rfc9293_3_10_7_4_pure_acks_stay_acceptable_to_a_closed_window() {
    // Data went out, was lost, and meanwhile the peer's window closed: a
    // pure ACK carrying snd_nxt would lie beyond the window and be
    // refused, and each side would wait for the other forever. It carries
    // the window's right edge instead.
    let mut n = Net::open(cfg(), cfg(), 50);
    n.transfer(1000);
    n.send_and_lose(0, 3000);
    let now = n.now;
    let (mut env, slot) = n.ends[0].env(now);
    let t = slot.as_mut().unwrap();
    let una = t.snd_una;
    assert!(t.snd_nxt != una, "data in flight");
    t.snd_wnd = 0;
    t.flags |= super::super::tcb::flag::ACK_NOW;
    let ack = t.poll_output(&mut env).expect("an ACK");
    assert_eq!(ack.repr.seq_number.0 as u32, una);
}

#[test]
fn rfc9293_3_10_7_4_a_pure_ack_on_the_right_edge_is_processed() {
    // A filled B's window and those segments were lost: A's ACKs carry
    // SEG.SEQ = A's SND.NXT = B's right edge. B must take their ACK field,
    // or it retransmits on timeouts although A has everything.
    let mut n = Net::open(cfg(), cfg(), 50);
    n.transfer(1000);
    n.send_and_lose(1, 3000);
    let b = n.ends[1].tcb();
    let (b_next, b_rcv) = b.seqs();
    let edge = crate::tcp::seq::dist(b_rcv, b.rcv_adv);
    assert!(edge > 0);
    let base = from_a(&n, TcpControl::None, 0);
    let ack_at = |delta: u32| TcpRepr {
        seq_number: TcpSeqNumber(b_rcv.wrapping_add(delta) as i32),
        ack_number: Some(TcpSeqNumber(b_next as i32)),
        ..base
    };
    // One beyond the edge: refused, the data stays unacknowledged.
    inject(&mut n, 1, ack_at(edge + 1));
    assert_ne!(n.ends[1].tcb().snd_una, b_next);
    // On the edge: processed.
    inject(&mut n, 1, ack_at(edge));
    assert_eq!(n.ends[1].tcb().snd_una, b_next);
}
