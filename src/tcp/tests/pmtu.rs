//! Path MTU discovery (RFC 1191, RFC 8201, RFC 5927 4.1) on the engine's
//! simulated path: a router that drops what does not fit and says so.

use std::cell::Cell;
use std::rc::Rc;

use super::super::flight::{sf, Flight, Sent};
use super::super::pmtu::{MIN_MTU_V4, MIN_MTU_V6};
use super::*;

/// A path from A to B whose narrowest hop is `mtu` bytes (IPv4): a segment
/// that does not fit in a 20-byte IP header is dropped, and its sequence
/// number is what the router's ICMP error quotes.
fn narrow_path(n: &mut Net, mtu: usize) -> Rc<Cell<Option<u32>>> {
    let quoted = Rc::new(Cell::new(None));
    let q = quoted.clone();
    n.loss = Box::new(move |to, seg, data| {
        let big = to == 1 && 20 + seg.header_len() + data.len() > mtu;
        if big && q.get().is_none() {
            q.set(Some(seg.seq_number.0 as u32));
        }
        big
    });
    quoted
}

/// A tells A's engine what the router said (the ICMP takes one delay).
fn router_says(n: &mut Net, mtu: u32, quoted: u32) -> bool {
    let now = n.now;
    let (mut env, slot) = n.ends[0].env(now);
    slot.as_mut()
        .unwrap()
        .on_path_mtu(&mut env, mtu, 20, quoted)
}

#[test]
fn rfc1191_a_narrower_path_lowers_the_segment_size_and_the_transfer_completes() {
    let mut clean = Net::open(cfg(), cfg(), 50);
    let base = clean.transfer(1 << 20);

    let mut n = Net::open(cfg(), cfg(), 50);
    let quoted = narrow_path(&mut n, 1200);
    let data = pattern(1 << 20, 9);
    let t0 = n.now;
    n.send(0, &data);
    let mut told = 0;
    let mut cwnd_when_told = 0;
    for _ in 0..2_000_000 {
        if n.ends[1].got.len() >= data.len() {
            break;
        }
        assert!(n.step(), "the connection went quiet");
        if let Some(q) = quoted.take() {
            // The ICMP error comes back one delay after the drop.
            let at = n.now + 50;
            n.run_until(|n| n.now >= at);
            let (cwnd, mss) = (n.ends[0].tcb().cwnd(), n.ends[0].tcb().mss());
            cwnd_when_told = cwnd;
            assert!(router_says(&mut n, 1200, q));
            told += 1;
            // The window keeps its segments (before any ACK it is still
            // the initial window, ten of the new size).
            let a = n.ends[0].tcb();
            assert!(
                a.cwnd() / u32::from(a.mss()) >= cwnd / u32::from(mss),
                "a narrower path is not congestion: {} B of {} against {cwnd} B of {mss}",
                a.cwnd(),
                a.mss()
            );
        }
    }
    let took = n.now - t0;
    assert!(n.ends[1].got == data, "intact and in order");
    assert_eq!(told, 1, "one message: nothing is too big after it");
    let a = n.ends[0].tcb();
    assert_eq!(a.mss(), 1200 - 20 - 20 - 12, "IP, TCP and the timestamps");
    let s = &n.ends[0].stats;
    assert_eq!(s.pmtu_lowered.get(), 1);
    assert_eq!(s.rtos.get(), 0, "the dropped segments were resent at once");
    assert_eq!(s.recoveries.get(), 0, "no congestion response");
    assert!(cwnd_when_told > 0);
    // 1 MiB at 1148 bytes a segment against 1448: some more segments and
    // one round trip for the news, no timeout.
    assert!(
        took < base * 2 + 5_000,
        "{took} µs against {base} µs on the wide path"
    );
}

#[test]
fn rfc5927_a_too_big_message_must_quote_a_segment_in_flight() {
    let mut n = Net::open(cfg(), cfg(), 50);
    n.transfer(100_000);
    n.send_and_lose(0, 20_000);
    let (una, max) = {
        let a = n.ends[0].tcb();
        (a.snd_una, a.snd_max)
    };
    assert_ne!(una, max, "data in flight");
    let mss = n.ends[0].tcb().mss();
    // Acknowledged already, or never sent: ignored.
    assert!(!router_says(&mut n, 1000, una.wrapping_sub(1)));
    assert!(!router_says(&mut n, 1000, max));
    assert!(!router_says(&mut n, 1000, max.wrapping_add(5000)));
    // No smaller than what is sent: ignored.
    assert!(!router_says(&mut n, 1500, una));
    assert!(!router_says(&mut n, 9000, una));
    assert_eq!(n.ends[0].tcb().mss(), mss);
    assert_eq!(n.ends[0].stats.pmtu_ignored.get(), 5);
    assert_eq!(n.ends[0].stats.pmtu_lowered.get(), 0);
    // A forged tiny MTU is taken as the family's minimum.
    assert!(router_says(&mut n, 68, una));
    assert_eq!(u32::from(n.ends[0].tcb().mss()), MIN_MTU_V4 - 20 - 20 - 12);
    // And everything in flight is cut to fit, marked lost.
    let a = n.ends[0].tcb();
    assert!(a.sent.iter().all(|s| s.end.wrapping_sub(s.start) <= 500));
    assert_eq!(a.sent.pipe(), 0, "every piece is to be sent again");
    // The pieces go out, each within the new size, and all arrive.
    n.loss = Box::new(|_, _, _| false);
    n.run_until(|n| n.ends[1].got.len() == 120_000);
}

#[test]
fn rfc8201_ipv6_never_goes_below_1280() {
    let mut n = Net::open(cfg(), cfg(), 50);
    n.send_and_lose(0, 20_000);
    let una = n.ends[0].tcb().snd_una;
    let now = n.now;
    let (mut env, slot) = n.ends[0].env(now);
    assert!(slot.as_mut().unwrap().on_path_mtu(&mut env, 600, 40, una));
    assert_eq!(
        u32::from(n.ends[0].tcb().mss()),
        MIN_MTU_V6 - 40 - 20 - 12,
        "IPv6 links carry at least 1280 bytes"
    );
}

#[test]
fn a_message_for_a_connection_not_sending_is_ignored() {
    let mut n = Net::new(cfg(), cfg(), 50);
    n.connect();
    // SYN-SENT: nothing of ours can have been too big yet.
    let now = n.now;
    let (mut env, slot) = n.ends[0].env(now);
    let t = slot.as_mut().unwrap();
    let iss = t.snd_una;
    assert!(!t.on_path_mtu(&mut env, 600, 20, iss));
    assert_eq!(n.ends[0].stats.pmtu_ignored.get(), 1);
}

fn rec(start: u32, end: u32, flags: u8) -> Sent {
    Sent {
        start,
        end,
        xmit: 7,
        flags,
    }
}

#[test]
fn flight_resegment_cuts_only_what_is_too_big() {
    let mut f = Flight::default();
    f.push(rec(0, 2500, 0)); // cut in three
    f.push(rec(2500, 3001, sf::RETRANS)); // 501 > 500: cut in two
    f.push(rec(3001, 5001, sf::SACKED)); // arrived: kept
    f.push(rec(5001, 5401, 0)); // fits: kept, still in the pipe
    f.push(rec(5401, 6402, sf::FIN)); // 1,000 bytes and the FIN
    assert_eq!(f.resegment(500), 3);
    let got: Vec<(u32, u32, u8)> = f.iter().map(|s| (s.start, s.end, s.flags)).collect();
    let lost = sf::LOST;
    assert_eq!(
        got,
        vec![
            (0, 500, lost),
            (500, 1000, lost),
            (1000, 1500, lost),
            (1500, 2000, lost),
            (2000, 2500, lost),
            (2500, 3000, sf::RETRANS | lost),
            (3000, 3001, sf::RETRANS | lost),
            (3001, 5001, sf::SACKED),
            (5001, 5401, 0),
            (5401, 5901, lost),
            (5901, 6402, lost | sf::FIN),
        ]
    );
    assert!(f.iter().all(|s| s.xmit == 7));
    assert_eq!(f.lost(), 9);
    assert_eq!(f.sacked(), 1);
    assert_eq!(f.retransmitted(), 2);
    assert_eq!(f.pipe(), 400);
    // Nothing left too big: nothing to do.
    assert_eq!(f.resegment(500), 0);
    assert_eq!(f.len(), 11);
}

/// Runs a 1 MiB transfer from A over `n` until it arrives or `limit_us`
/// of simulated time pass; returns the time taken if it arrived.
fn transfer_within(n: &mut Net, limit_us: u64) -> Option<u64> {
    let data = pattern(1 << 20, 5);
    let t0 = n.now;
    n.send(0, &data);
    while n.ends[1].got.len() < data.len() {
        if n.now - t0 > limit_us || !n.step() {
            return None;
        }
    }
    assert!(n.ends[1].got == data, "intact and in order");
    Some(n.now - t0)
}

#[test]
fn rfc4821_a_black_hole_is_found_by_timeouts_and_the_transfer_completes() {
    // A 1,200-byte hop whose router says nothing.
    let mut n = Net::open(cfg(), cfg(), 50);
    let _ = narrow_path(&mut n, 1200);
    let took = transfer_within(&mut n, 2_000_000).expect("the transfer completes");
    let a = n.ends[0].tcb();
    assert_eq!(u32::from(a.mss()), super::super::pmtu::BLACKHOLE_MSS);
    let s = &n.ends[0].stats;
    assert_eq!(s.pmtu_blackholes.get(), 1);
    // Timeouts from the 5 ms floor 5, 15, 35, 75 and 155 ms after the
    // data was first sent: the fifth is past 150 ms, then it fits.
    assert_eq!(s.rtos.get(), 5, "five timeouts in a row, then it fits");
    assert!(took < 300_000, "took {took} µs");

    // Without the detection the same path never delivers.
    let off = Config {
        blackhole_detect: false,
        ..cfg()
    };
    let mut n = Net::open(off, cfg(), 50);
    let _ = narrow_path(&mut n, 1200);
    assert_eq!(transfer_within(&mut n, 2_000_000), None);
    assert_eq!(n.ends[0].stats.pmtu_blackholes.get(), 0);
}

#[test]
fn rfc4821_a_narrower_black_hole_takes_a_second_step() {
    // 800 bytes: 1,024-byte segments do not fit either; 512 do.
    let mut n = Net::open(cfg(), cfg(), 50);
    let _ = narrow_path(&mut n, 800);
    transfer_within(&mut n, 5_000_000).expect("the transfer completes");
    assert_eq!(
        u32::from(n.ends[0].tcb().mss()),
        super::super::pmtu::BLACKHOLE_MSS / 2
    );
    assert_eq!(n.ends[0].stats.pmtu_blackholes.get(), 2);
}

#[test]
fn random_loss_is_not_taken_for_a_black_hole() {
    // 5% of data segments lost each way, at random: timeouts do happen,
    // but not three in a row for the same data.
    let mut n = Net::open(cfg(), cfg(), 50);
    let mut r = rng(77);
    n.loss = Box::new(move |_, _, d| !d.is_empty() && r() % 100 < 5);
    transfer_within(&mut n, 20_000_000).expect("the transfer completes");
    assert_eq!(n.ends[0].stats.pmtu_blackholes.get(), 0);
    assert_eq!(n.ends[0].tcb().mss(), 1448);
}

#[test]
fn a_pause_of_tens_of_milliseconds_is_not_taken_for_a_black_hole() {
    // Everything A sends is lost for 60 ms (a VM paused, a link flapping):
    // three or four timeouts in a row, but not for long enough.
    let mut n = Net::open(cfg(), cfg(), 50);
    let until = Rc::new(Cell::new(0u64));
    let u = until.clone();
    let seen = Rc::new(Cell::new(0u64));
    let s2 = seen.clone();
    n.loss = Box::new(move |to, _, _| to == 1 && s2.get() < u.get());
    let start = n.now;
    until.set(start + 60_000);
    let data = pattern(1 << 20, 5);
    n.send(0, &data);
    while n.ends[1].got.len() < data.len() {
        seen.set(n.now);
        assert!(
            n.now - start < 5_000_000 && n.step(),
            "the transfer stopped"
        );
    }
    assert!(n.ends[1].got == data);
    let s = &n.ends[0].stats;
    assert!(s.rtos.get() >= 3, "{} timeouts", s.rtos.get());
    assert_eq!(s.pmtu_blackholes.get(), 0);
    assert_eq!(n.ends[0].tcb().mss(), 1448);
}
