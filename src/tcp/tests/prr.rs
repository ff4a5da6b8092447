//! Proportional Rate Reduction (RFC 9937): what a sender in fast recovery
//! sends per ACK. Each ACK from B reaches A alone and A answers it at
//! once, as with a peer whose ACKs come one per receive burst.

use super::*;

/// A with a grown window and more than it to send; its whole window is
/// taken off the wire, in sequence order.
fn a_window_in_flight() -> (Net, Vec<Wire>) {
    let mut n = Net::grown_with_more_to_send(4);
    let mut window = n.sent_now(0);
    window.sort_by_key(|w| w.hdr.seq_number.0 as u32);
    assert!(window.len() >= 40, "a window of {} segments", window.len());
    (n, window)
}

/// Delivers the window to B one segment at a time, all but `lost(i)`,
/// each of B's answers to A at once, and A's answer to each held back
/// until the window has arrived. Returns, per ACK that reached A in fast recovery, the
/// segments A sent then and the bytes the ACK delivered (that B received
/// since its previous ACK).
fn ack_by_ack(n: &mut Net, window: Vec<Wire>, lost: impl Fn(usize) -> bool) -> Vec<(usize, u32)> {
    let (mut steps, mut held) = (Vec::new(), Vec::new());
    // Bytes B received and has not acknowledged yet (it may hold an ACK of
    // in-order data; past the hole it answers every segment).
    let mut unacked = 0;
    for (i, w) in window.into_iter().enumerate() {
        if lost(i) {
            continue;
        }
        unacked += w.data.len() as u32;
        n.arrive(vec![w]);
        for ack in n.sent_now(1) {
            n.arrive(vec![ack]);
            let recovering = n.ends[0].tcb().in_recovery();
            let sent = n.sent_now(0);
            if recovering {
                steps.push((sent.len(), unacked));
            }
            held.extend(sent);
            unacked = 0;
        }
    }
    // What A sent meanwhile was only held back: it arrives now.
    let at = n.now + n.delay;
    n.flight.extend(held.into_iter().map(|w| Wire { at, ..w }));
    steps
}

#[test]
fn rfc9937_above_ssthresh_the_sender_sends_its_share_of_each_ack() {
    let (mut n, window) = a_window_in_flight();
    let mss = u32::from(n.ends[0].tcb().mss());
    let steps = ack_by_ack(&mut n, window, |i| i == 5);
    assert!(steps.len() >= 30, "{} ACKs in recovery", steps.len());
    // The ACK that starts recovery delivers one segment, whose share is
    // under a segment: the fast retransmission goes all the same.
    assert_eq!(steps[0].0, 1, "the fast retransmission, at once");
    assert_eq!(n.ends[0].stats.retransmits.get(), 1);
    let a = n.ends[0].tcb();
    let (ssthresh, recover_fs) = (a.cc.ssthresh(), a.recover_fs);
    // The first fifth of the recovery's ACKs: RFC 6675's rule would send
    // the retransmission and nothing more, the pipe being above the cut
    // window; PRR sends ssthresh / RecoverFS of each.
    let early = steps.len() / 5;
    let sent: usize = steps[..early].iter().map(|s| s.0).sum();
    let delivered: u32 = steps[..early].iter().map(|s| s.1).sum();
    let share = f64::from(delivered) * f64::from(ssthresh) / f64::from(recover_fs) / f64::from(mss);
    assert!(sent >= 3, "{sent} segments for the first {early} ACKs");
    assert!(
        (sent as f64 - share).abs() <= 2.0,
        "{sent} segments sent against a share of {share:.1}"
    );
    // No burst: at most two segments for any one ACK.
    assert!(steps.iter().all(|s| s.0 <= 2), "{steps:?}");
    // By the recovery's last ACK the pipe is down to about ssthresh.
    let pipe = n.ends[0].tcb().pipe();
    assert!(
        pipe.abs_diff(ssthresh) <= 2 * mss,
        "pipe {pipe} against ssthresh {ssthresh}"
    );
}

#[test]
fn rfc9937_below_ssthresh_many_losses_at_once_send_no_burst() {
    // Half of the window is lost in a row. When the SACKs past the hole
    // mark it lost, the pipe falls far below ssthresh: RFC 6675's rule
    // would send the difference at once. PRR sends no more than the ACKs
    // deliver (one more segment on an ACK that advances and shows no new
    // loss).
    let (mut n, window) = a_window_in_flight();
    let w = window.len();
    let steps = ack_by_ack(&mut n, window, |i| (2..2 + w / 2).contains(&i));
    let (first_sent, _) = steps[0];
    assert!(
        first_sent <= 2,
        "{first_sent} segments on entering recovery"
    );
    let sent: usize = steps.iter().map(|s| s.0).sum();
    let mss = u32::from(n.ends[0].tcb().mss());
    let delivered: u32 = steps.iter().map(|s| s.1).sum();
    assert!(
        sent as u32 <= delivered / mss + 2,
        "{sent} segments sent for {delivered} bytes delivered"
    );
    assert!(steps.iter().all(|s| s.0 <= 2), "{steps:?}");
    // And the transfer completes, intact.
    n.run_until(|n| n.ends[1].got.len() == 4 << 20);
    assert_eq!(n.ends[0].stats.rtos.get(), 0);
}
