use super::*;
use crate::app::tcp::ConnOps;
use crate::error::{Error, Result};
use crate::stack::UdpId;
use std::net::Ipv4Addr;

/// A scripted stack: records what the generator does; `room` limits
/// how much each send takes.
#[derive(Default)]
struct Fake {
    sent: HashMap<ConnId, Vec<u8>>,
    connects: Vec<(ConnId, SocketAddr)>,
    closed: Vec<ConnId>,
    aborted: Vec<ConnId>,
    room: Option<usize>,
    refuse: bool,
    next: u32,
}

impl ConnOps for Fake {
    fn send(&mut self, id: ConnId, data: &[u8]) -> usize {
        let n = self.room.map_or(data.len(), |r| r.min(data.len()));
        if let Some(r) = self.room.as_mut() {
            *r -= n;
        }
        self.sent
            .entry(id)
            .or_default()
            .extend_from_slice(&data[..n]);
        n
    }
    fn send_room(&mut self, _id: ConnId) -> usize {
        self.room.unwrap_or(usize::MAX)
    }
    fn close(&mut self, id: ConnId) {
        self.closed.push(id);
    }
    fn abort(&mut self, id: ConnId) {
        self.aborted.push(id);
    }
    fn endpoints(&mut self, _id: ConnId) -> Option<(SocketAddr, SocketAddr)> {
        None
    }
    fn connect(&mut self, remote: SocketAddr) -> Result<ConnId> {
        if self.refuse {
            return Err(Error::Config("no port".into()));
        }
        let id = ConnId {
            idx: self.next,
            gen: 0,
        };
        self.next += 1;
        self.connects.push((id, remote));
        Ok(id)
    }
    fn udp_send(&mut self, _: UdpId, _: SocketAddr, _: &[u8]) -> bool {
        false
    }
}

fn target(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::new(10, 0, 0, 1), port))
}

fn gen(mode: Mode, conns: usize) -> LoadGen {
    let mut c = LoadConfig::new(vec![target(7), target(8)], mode, conns);
    c.size = 4;
    c.connects_per_poll = 3;
    LoadGen::new(c, Arc::default())
}

fn poll(g: &mut LoadGen, fake: &mut Fake, now: u64) -> usize {
    g.poll(&mut Ctx::new(fake, Instant(now)))
}

fn open(g: &mut LoadGen, fake: &mut Fake, id: ConnId, now: u64) -> Flow {
    g.on_open(&mut Conn::new(fake, id, Instant(now)))
}

fn data(g: &mut LoadGen, fake: &mut Fake, f: &mut Flow, id: ConnId, now: u64, d: &[u8]) {
    let n = g.on_data(f, &mut Conn::new(fake, id, Instant(now)), d);
    assert_eq!(n, d.len());
}

#[test]
fn ramp_is_bounded_per_poll_and_by_connections_and_alternates_targets() {
    let mut g = gen(Mode::Hold, 5);
    let mut fake = Fake::default();
    assert_eq!(poll(&mut g, &mut fake, 0), 3);
    assert_eq!(poll(&mut g, &mut fake, 10), 2);
    assert_eq!(poll(&mut g, &mut fake, 20), 0);
    let ports: Vec<u16> = fake.connects.iter().map(|c| c.1.port()).collect();
    assert_eq!(ports, vec![7, 8, 7, 8, 7]);
    assert_eq!(g.connecting(), 5);
    // Hold never reconnects, even after losing connections.
    let id = fake.connects[0].0;
    let f = open(&mut g, &mut fake, id, 100);
    g.on_close(f, CloseReason::Reset);
    assert_eq!(poll(&mut g, &mut fake, 200), 0);
    assert_eq!(g.stats().reset.get(), 1);
}

#[test]
fn pending_handshakes_are_bounded() {
    let mut g = gen(Mode::Rr, 100);
    g.cfg.max_pending = 4;
    let mut fake = Fake::default();
    assert_eq!(poll(&mut g, &mut fake, 0), 3);
    assert_eq!(poll(&mut g, &mut fake, 1), 1);
    assert_eq!(poll(&mut g, &mut fake, 2), 0);
    let id = fake.connects[0].0;
    let _f = open(&mut g, &mut fake, id, 3);
    g.on_connect_failed(fake.connects[1].0);
    assert_eq!(poll(&mut g, &mut fake, 4), 2);
    assert_eq!(g.connecting(), 4);
    assert_eq!(g.live(), 1);
}

#[test]
fn start_after_ramp_holds_requests_until_every_connection_is_open() {
    let mut g = gen(Mode::Rr, 2);
    g.cfg.start_after_ramp = true;
    g.cfg.pipeline = 2;
    let mut fake = Fake::default();
    poll(&mut g, &mut fake, 0);
    let (a, b) = (fake.connects[0].0, fake.connects[1].0);
    let mut fa = open(&mut g, &mut fake, a, 10);
    assert!(fake.sent.is_empty());
    let _fb = open(&mut g, &mut fake, b, 20);
    assert!(fake.sent.is_empty());
    fake.room = Some(12); // a takes 8 bytes, b only 4 of its 8
    assert_eq!(poll(&mut g, &mut fake, 30), 2);
    assert_eq!(fake.sent[&a].len() + fake.sent[&b].len(), 12);
    // The first response is timed from the kick.
    data(&mut g, &mut fake, &mut fa, a, 45, b"abcd");
    assert_eq!(g.latency().max(), 15);
    assert_eq!(fa.stamps.len(), 2); // one left, one new
}

#[test]
fn the_full_table_is_held_idle_before_the_load_starts() {
    let mut g = gen(Mode::Rr, 2);
    g.cfg.start_after_ramp = true;
    g.cfg.hold_us = 1000;
    let mut fake = Fake::default();
    poll(&mut g, &mut fake, 0);
    let (a, b) = (fake.connects[0].0, fake.connects[1].0);
    let mut fa = open(&mut g, &mut fake, a, 10);
    let _fb = open(&mut g, &mut fake, b, 20);
    // Full at 20: nothing leaves until 1020.
    assert_eq!(poll(&mut g, &mut fake, 500), 0);
    assert_eq!(poll(&mut g, &mut fake, 1019), 0);
    assert!(fake.sent.is_empty());
    assert_eq!(g.window().0, 0);
    assert_eq!(poll(&mut g, &mut fake, 1020), 2);
    data(&mut g, &mut fake, &mut fa, a, 1030, b"abcd");
    poll(&mut g, &mut fake, 2020);
    // The measured window opens when the hold ends, not at full.
    assert_eq!(g.window(), (1, 0.001));
}

#[test]
fn bulk_transfers_run_alone_first_then_everyone_takes_turns() {
    let mut c = LoadConfig::new(vec![target(7)], Mode::Rr, 3);
    c.size = 4;
    c.start_after_ramp = true;
    c.max_inflight = Some(3);
    c.bulk = Some(Bulk {
        conns: 1,
        bytes: 10_000,
    });
    assert!(c.validate().is_ok());
    let mut g = LoadGen::new(c, Arc::default());
    let mut fake = Fake::default();
    poll(&mut g, &mut fake, 0);
    let ids: Vec<ConnId> = fake.connects.iter().map(|c| c.0).collect();
    let mut flows: Vec<Flow> = ids
        .iter()
        .map(|&id| open(&mut g, &mut fake, id, 1))
        .collect();
    // Only the bulk transfer starts (the send buffer takes 6,000 of it).
    fake.room = Some(6_000);
    assert_eq!(poll(&mut g, &mut fake, 2), 1);
    assert_eq!(fake.sent[&ids[0]].len(), 6_000);
    assert_eq!(poll(&mut g, &mut fake, 3), 0);
    assert_eq!(fake.sent.len(), 1);
    // Room again: the rest leaves on writable.
    fake.room = None;
    g.on_writable(&mut flows[0], &mut Conn::new(&mut fake, ids[0], Instant(3)));
    assert_eq!(fake.sent[&ids[0]].len(), 10_000);
    // The echo comes back in pieces; only the last completes it.
    let echo = vec![b'x'; 4_000];
    data(&mut g, &mut fake, &mut flows[0], ids[0], 50, &echo);
    data(&mut g, &mut fake, &mut flows[0], ids[0], 60, &echo);
    assert_eq!(g.stats().bulk_done.get(), 0);
    assert_eq!(poll(&mut g, &mut fake, 65), 0);
    data(&mut g, &mut fake, &mut flows[0], ids[0], 70, &echo[..2_000]);
    assert_eq!(g.stats().bulk_done.get(), 1);
    assert_eq!(g.stats().bulk_longest_us.get(), 68);
    // Not a transaction.
    assert_eq!(g.stats().transactions.get(), 0);
    assert_eq!(g.window().0, 0);
    // Now everyone takes turns, the bulk connection last.
    assert_eq!(poll(&mut g, &mut fake, 80), 3);
    assert_eq!(fake.sent[&ids[1]].len(), 4);
    assert_eq!(fake.sent[&ids[2]].len(), 4);
    assert_eq!(fake.sent[&ids[0]].len(), 10_004);
    data(&mut g, &mut fake, &mut flows[1], ids[1], 90, b"abcd");
    assert_eq!(g.latency().max(), 10);
    let mut c = LoadConfig::new(vec![target(7)], Mode::Cps, 1);
    c.bulk = Some(Bulk { conns: 1, bytes: 1 });
    assert!(c.validate().is_err());
}

#[test]
fn max_inflight_takes_turns() {
    let mut g = gen(Mode::Rr, 3);
    g.cfg.max_inflight = Some(2);
    let mut fake = Fake::default();
    poll(&mut g, &mut fake, 0);
    let ids: Vec<ConnId> = fake.connects.iter().map(|c| c.0).collect();
    let mut fa = open(&mut g, &mut fake, ids[0], 1);
    let _fb = open(&mut g, &mut fake, ids[1], 1);
    let mut fc = open(&mut g, &mut fake, ids[2], 1);
    // The window holds two: the third waits.
    assert_eq!(fake.sent.len(), 2);
    assert!(!fc.started);
    // a's response frees a turn; a itself queues behind c.
    data(&mut g, &mut fake, &mut fa, ids[0], 5, b"abcd");
    assert_eq!(fake.sent[&ids[0]].len(), 4);
    assert_eq!(poll(&mut g, &mut fake, 6), 1);
    assert_eq!(fake.sent[&ids[2]].len(), 4);
    assert_eq!(fake.sent[&ids[0]].len(), 4);
    data(&mut g, &mut fake, &mut fc, ids[2], 9, b"abcd");
    assert_eq!(g.latency().min(), 3); // kicked at 6
    assert_eq!(g.stats().transactions.get(), 2);
    // Then a's turn comes.
    assert_eq!(poll(&mut g, &mut fake, 10), 1);
    assert_eq!(fake.sent[&ids[0]].len(), 8);
    let mut c = LoadConfig::new(vec![target(7)], Mode::Rr, 1);
    c.max_inflight = Some(4);
    c.pipeline = 2;
    assert!(c.validate().is_err());
}

#[test]
fn rate_limits_the_ramp() {
    let mut g = gen(Mode::Hold, 100);
    g.cfg.rate = Some(1000.0); // one per ms
    g.cfg.connects_per_poll = 64;
    let mut fake = Fake::default();
    assert_eq!(poll(&mut g, &mut fake, 0), 1);
    assert_eq!(poll(&mut g, &mut fake, 500), 0);
    assert_eq!(poll(&mut g, &mut fake, 1000), 1);
    assert_eq!(poll(&mut g, &mut fake, 10_000), 9);
    assert_eq!(fake.connects.len(), 11);
}

#[test]
fn rr_closed_loop_with_pipeline_records_after_ramp() {
    let mut g = gen(Mode::Rr, 2);
    g.cfg.pipeline = 2;
    let mut fake = Fake::default();
    poll(&mut g, &mut fake, 0);
    let (a, b) = (fake.connects[0].0, fake.connects[1].0);
    let mut fa = open(&mut g, &mut fake, a, 10);
    assert_eq!(g.handshake().len(), 1);
    assert_eq!(fake.sent[&a], b"abcdabcd"); // two requests of 4 bytes
                                            // A response before the ramp completes counts but is not recorded.
    data(&mut g, &mut fake, &mut fa, a, 30, b"abcd");
    assert_eq!(g.stats().transactions.get(), 1);
    assert_eq!(g.latency().len(), 0);
    assert_eq!(fake.sent[&a].len(), 12); // one more left
    let _fb = open(&mut g, &mut fake, b, 40);
    assert_eq!(g.full_at(), Some(Instant(40)));
    // Split responses: 2 + 2 + 4 bytes complete two requests.
    data(&mut g, &mut fake, &mut fa, a, 50, b"ab");
    assert_eq!(g.stats().transactions.get(), 1);
    data(&mut g, &mut fake, &mut fa, a, 60, b"cdabcd");
    assert_eq!(g.stats().transactions.get(), 3);
    // Sent at 10 and 30, before the window opened at 40: not timed.
    assert_eq!(g.latency().len(), 0);
    assert_eq!(fa.stamps.len(), 2);
    // Sent at 60, answered at 75 and 80.
    data(&mut g, &mut fake, &mut fa, a, 75, b"abcd");
    data(&mut g, &mut fake, &mut fa, a, 80, b"abcd");
    assert_eq!(g.latency().len(), 2);
    assert_eq!(g.latency().min(), 15);
    assert_eq!(g.latency().max(), 20);
    assert_eq!(g.window().0, 4);
    // Echo longer than asked: an error, the connection is reset.
    data(&mut g, &mut fake, &mut fa, a, 90, &[b'x'; 9]);
    assert_eq!(g.stats().errors.get(), 1);
    assert_eq!(fake.aborted, vec![a]);
}

#[test]
fn short_sends_are_finished_on_writable() {
    let mut g = gen(Mode::Rr, 1);
    g.cfg.pipeline = 3;
    let mut fake = Fake {
        room: Some(5),
        ..Default::default()
    };
    poll(&mut g, &mut fake, 0);
    let a = fake.connects[0].0;
    let mut f = open(&mut g, &mut fake, a, 1);
    assert_eq!(fake.sent[&a].len(), 5);
    assert_eq!(f.owed, 7);
    fake.room = Some(100);
    g.on_writable(&mut f, &mut Conn::new(&mut fake, a, Instant(2)));
    assert_eq!(fake.sent[&a].len(), 12);
    assert_eq!(f.owed, 0);
}

#[test]
fn cps_closes_after_one_response_and_replaces_connections() {
    let mut g = gen(Mode::Cps, 1);
    g.cfg.close = CloseWith::Rst;
    g.cfg.max_connects = Some(2);
    let mut fake = Fake::default();
    assert_eq!(poll(&mut g, &mut fake, 0), 1);
    assert_eq!(poll(&mut g, &mut fake, 5), 0); // one at a time
    let a = fake.connects[0].0;
    let mut f = open(&mut g, &mut fake, a, 10);
    data(&mut g, &mut fake, &mut f, a, 25, b"abcd");
    assert_eq!(fake.aborted, vec![a]);
    // Connected before the window opened (at the first open): counted,
    // not timed.
    assert_eq!(g.latency().len(), 0);
    assert_eq!(g.stats().transactions.get(), 1);
    g.on_close(f, CloseReason::Reset);
    assert_eq!(poll(&mut g, &mut fake, 30), 1);
    let b = fake.connects[1].0;
    let mut f = open(&mut g, &mut fake, b, 35);
    data(&mut g, &mut fake, &mut f, b, 50, b"abcd");
    assert_eq!(g.latency().max(), 20); // connect call to response
    g.on_close(f, CloseReason::Reset);
    // The bound is reached: no more.
    assert_eq!(poll(&mut g, &mut fake, 60), 0);
    // Both exchanges completed in the window (10 to 60 us).
    assert_eq!(g.window(), (2, 50e-6));
    assert_eq!(g.stats().connects.get(), 2);
}

#[test]
fn failed_connect_call_stops_the_poll() {
    let mut g = gen(Mode::Rr, 10);
    let mut fake = Fake {
        refuse: true,
        ..Default::default()
    };
    assert_eq!(poll(&mut g, &mut fake, 0), 1);
    assert_eq!(g.stats().failed.get(), 1);
    assert_eq!(g.connecting(), 0);
}

#[test]
fn http_pipelines_gets_and_times_responses() {
    let mut g = gen(Mode::Http, 1);
    g.cfg.pipeline = 2;
    let mut fake = Fake::default();
    poll(&mut g, &mut fake, 0);
    let a = fake.connects[0].0;
    let mut f = open(&mut g, &mut fake, a, 10);
    let sent = String::from_utf8(fake.sent[&a].clone()).unwrap();
    assert_eq!(sent.matches("GET /plaintext HTTP/1.1\r\n").count(), 2);
    let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi";
    data(&mut g, &mut fake, &mut f, a, 20, &resp[..10]);
    assert_eq!(g.stats().transactions.get(), 0);
    data(&mut g, &mut fake, &mut f, a, 30, &resp[10..]);
    assert_eq!(g.stats().transactions.get(), 1);
    assert_eq!(g.latency().max(), 20);
    let sent = String::from_utf8(fake.sent[&a].clone()).unwrap();
    assert_eq!(sent.matches("GET ").count(), 3);
    // A 404 is an error; `Connection: close` closes.
    data(
        &mut g,
        &mut fake,
        &mut f,
        a,
        40,
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(g.stats().errors.get(), 1);
    assert_eq!(fake.closed, vec![a]);
}

#[test]
fn validation() {
    let ok = LoadConfig::new(vec![target(7)], Mode::Rr, 1);
    assert!(ok.validate().is_ok());
    let mut c = ok.clone();
    c.targets.clear();
    assert!(c.validate().is_err());
    let mut c = ok.clone();
    c.pipeline = 0;
    assert!(c.validate().is_err());
    let mut c = ok.clone();
    c.rate = Some(-1.0);
    assert!(c.validate().is_err());
    let mut c = ok;
    c.connections = 0;
    assert!(c.validate().is_err());
}

#[test]
fn percentiles() {
    let mut h = empty_histogram();
    for v in 1..=1000 {
        h.record(v).unwrap();
    }
    let p = Percentiles::of(&h);
    assert_eq!(p.count, 1000);
    assert_eq!(p.p50_us, 500);
    assert_eq!(p.p99_us, 990);
    assert_eq!(p.max_us, 1000);
    assert_eq!(Percentiles::of(&empty_histogram()).count, 0);
}

#[test]
fn stall_watch_reports_a_still_window_once() {
    let mut w = StallWatch::new(1.0);
    assert!(!w.sample(0.0, 0));
    assert!(!w.sample(0.5, 10));
    assert!(!w.sample(1.0, 10));
    // Still at 10 since 0.5 s: a whole window at 1.5 s.
    assert!(w.sample(1.5, 10));
    assert!(!w.sample(2.5, 10), "reported once");
    assert!(!w.sample(3.0, 11));
    assert!(!w.sample(3.9, 12));
    assert!(!w.sample(4.8, 12));
    assert!(w.sample(4.9, 12));
    assert_eq!(
        w.stalls(),
        &[
            Stall {
                from_s: 0.5,
                to_s: 1.5,
                at: 10
            },
            Stall {
                from_s: 3.9,
                to_s: 4.9,
                at: 12
            },
        ]
    );
    w.restart();
    assert!(!w.sample(10.0, 12));
    assert!(!w.sample(10.5, 12));
}

#[test]
fn stall_watch_quiet_while_progressing() {
    let mut w = StallWatch::new(0.1);
    for i in 0..100u64 {
        assert!(!w.sample(i as f64 * 0.05, i));
    }
    assert!(w.stalls().is_empty());
}
