//! Two stacks over the in-memory wire, in one thread, with a manual
//! clock: handshakes, echo, orderly close, refusal, backlog limits,
//! malformed frames, the cost of demux with many idle connections, table
//! growth, neighbour waits and a full transmit queue. Transfers through
//! faults are in `stack_faults.rs`.

use std::net::SocketAddr;

use bypass::app::tcp::{Conn, Ctx, Echo, TcpApp};
use bypass::buf::{Burst, PacketBuf};
use bypass::port::mem::{Faults, MemConfig, MemPort, MemQueue};
use bypass::port::{Port, PortQueue};
use bypass::runtime::{TcpWorker, Worker};
use bypass::stack::{ConnId, ListenOpts, Stack, StackConfig, TcpEngine, TcpOpts};
use bypass::time::Instant;

mod common;
use common::client::Client;
use common::mem_net::{net, opts, wire, Cps, Net, CLIENT, SERVER};

#[test]
fn echo_and_orderly_close() {
    let mut n = net(
        Faults::default(),
        Echo::default(),
        Client::new(1, 5, 7),
        ListenOpts::default(),
        opts(4096),
    );
    assert!(n.drive(10_000, |n| n.client.app().done == 1));
    assert_eq!(n.server.stack().stats().accepted.get(), 1);
    assert_eq!(n.client.stack().stats().connected.get(), 1);
    // Client closes; server closes on PeerClosed; TIME-WAIT expires.
    assert!(n.drive(100_000, |n| n.client.app().closed_normal == 1
        && n.server.stack().conn_count() == 0
        && n.client.stack().conn_count() == 0));
    assert_eq!(n.server.stack().stats().closed.get(), 1);
    assert_eq!(n.server.stack().stats().reset.get(), 0);
    assert_eq!(n.server.open_conns(), 0);
    n.settle_and_check_leaks();
}

#[test]
fn refused_connection_fails_fast() {
    let mut c = Client::new(1, 5, 8); // nothing listens on 8
    c.close_when_done = false;
    let mut n = net(
        Faults::default(),
        Echo::default(),
        c,
        ListenOpts::default(),
        opts(4096),
    );
    assert!(n.drive(10_000, |n| n.client.app().failed == 1));
    assert!(
        n.server.stack().stats().no_conn.get() >= 1,
        "answered by RST"
    );
    assert_eq!(n.client.stack().conn_count(), 0);
    n.settle_and_check_leaks();
}

/// Builds a bare TCP SYN from `sport` to the server's port 7.
fn syn(room: &mut [u8], sport: u16, server_mac: [u8; 6]) -> usize {
    let ends = bypass::testing::Ends {
        src_mac: [2, 0, 0, 0, 0, 2],
        dst_mac: server_mac,
        src_ip: CLIENT,
        dst_ip: SERVER,
    };
    bypass::testing::emit_tcp(room, &ends, &bypass::testing::syn(sport, 7, 1000))
}

/// An ARP request from the raw peer for the server's address: the server
/// answers and learns the peer's MAC from it.
fn arp_request(room: &mut [u8]) -> usize {
    bypass::testing::emit_arp_request(room, [2, 0, 0, 0, 0, 2], CLIENT, SERVER)
}

struct Raw {
    server: TcpWorker<MemQueue, Echo>,
    peer: MemQueue,
    mac: [u8; 6],
    now: u64,
}

fn raw(lopts: ListenOpts) -> Raw {
    let (qa, qb, ia, _) = wire(Faults::default(), 4096);
    let mut s = Stack::new(qa, &ia, StackConfig::new(SERVER, 24), Instant(0)).unwrap();
    s.listen(7, lopts).unwrap();
    let mut r = Raw {
        server: TcpWorker::new(s, Echo::default()),
        peer: qb,
        mac: ia.mac.0,
        now: 0,
    };
    r.send(arp_request);
    r.replies();
    r
}

impl Raw {
    fn send(&mut self, build: impl Fn(&mut [u8]) -> usize) {
        let mut b = self.peer.alloc().unwrap();
        let n = build(b.room_mut());
        b.set_len(n);
        let mut burst = Burst::new();
        burst.push(b);
        self.peer.tx_burst(&mut burst);
        self.now += 10;
        self.server.poll(Instant(self.now));
    }
    /// Frames the server sent back, parsed as (tcp flags syn, ack, rst).
    fn replies(&mut self) -> Vec<(bool, bool, bool)> {
        use smoltcp::wire::*;
        let mut out = vec![];
        let mut rx = Burst::new();
        while self.peer.rx_burst(&mut rx) > 0 {
            for f in rx.drain(..) {
                let eth = EthernetFrame::new_checked(f.data()).unwrap();
                if eth.ethertype() != EthernetProtocol::Ipv4 {
                    continue;
                }
                let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
                if let Ok(t) = TcpPacket::new_checked(ip.payload()) {
                    out.push((t.syn(), t.ack(), t.rst()));
                }
            }
        }
        out
    }
}

#[test]
fn backlog_bounds_half_open_connections() {
    let mut r = raw(ListenOpts {
        backlog: 8,
        on_full: bypass::stack::BacklogFull::Drop,
        ..Default::default()
    });
    let mac = r.mac;
    for p in 0..20u16 {
        r.send(|room| syn(room, 40000 + p, mac));
    }
    let st = r.server.stack().stats();
    assert_eq!(st.conns.get(), 8, "only the backlog's worth are half-open");
    assert_eq!(st.backlog_full.get(), 12);
    let replies = r.replies();
    assert_eq!(
        replies.iter().filter(|x| x.0 && x.1).count(),
        8,
        "8 SYN-ACKs"
    );
    // Reset policy: refused SYNs get RST.
    let mut r = raw(ListenOpts {
        backlog: 2,
        on_full: bypass::stack::BacklogFull::Reset,
        ..Default::default()
    });
    let mac = r.mac;
    for p in 0..5u16 {
        r.send(|room| syn(room, 41000 + p, mac));
    }
    let replies = r.replies();
    assert_eq!(replies.iter().filter(|x| x.2).count(), 3, "3 RSTs");
    // Half-open connections time out and free the backlog.
    let t = r.now + 60_000_000;
    for k in 0..200 {
        r.server.poll(Instant(t + k * 1_000_000));
    }
    assert_eq!(
        r.server.stack().conn_count(),
        0,
        "handshake timeout reaped them"
    );
    // Cookie policy (the bypass engine's default): beyond the backlog,
    // SYN-ACKs carry cookies and nothing is kept.
    if TcpOpts::default().engine != bypass::stack::TcpEngine::Bypass {
        return; // smoltcp cannot make a socket with a chosen ISN
    }
    let mut r = raw(ListenOpts {
        backlog: 8,
        on_full: bypass::stack::BacklogFull::Cookie,
        ..Default::default()
    });
    let mac = r.mac;
    for p in 0..20u16 {
        r.send(|room| syn(room, 42000 + p, mac));
    }
    let st = r.server.stack().stats();
    assert_eq!(st.conns.get(), 8, "only the backlog's worth are kept");
    assert_eq!(st.syn_cookies_sent.get(), 12);
    let replies = r.replies();
    assert_eq!(
        replies.iter().filter(|x| x.0 && x.1).count(),
        20,
        "20 SYN-ACKs"
    );
}

#[test]
fn malformed_frames_are_counted_and_the_server_keeps_serving() {
    let mut r = raw(ListenOpts::default());
    let mac = r.mac;
    let good_len = syn(&mut [0u8; 128], 1, mac);
    // Every truncation of a SYN, a bad checksum, a bad IHL, garbage.
    for cut in 0..good_len {
        r.send(|room| {
            syn(room, 50000, mac);
            cut
        });
    }
    r.send(|room| {
        let n = syn(room, 50001, mac);
        room[n - 1] ^= 0xff; // TCP checksum
        n
    });
    r.send(|room| {
        let n = syn(room, 50002, mac);
        room[14] = 0x4f; // IHL 60 > header
        n
    });
    r.send(|room| {
        let n = syn(room, 50003, mac);
        room[14 + 20 + 12] = 0xf0; // data offset 60 > segment
        n
    });
    r.send(|room| {
        for (i, b) in room[14..100].iter_mut().enumerate() {
            *b = (i * 37) as u8;
        }
        room[..6].copy_from_slice(&mac);
        room[12..14].copy_from_slice(&[0x08, 0x00]);
        100
    });
    let st = r.server.stack().stats();
    let drops = st.drops();
    assert!(
        drops as usize >= good_len - 1,
        "truncations and damage counted: {drops}"
    );
    assert!(st.drop_bad_checksum.get() >= 1);
    assert_eq!(st.conns.get(), 0);
    // And a good SYN still gets a SYN-ACK.
    r.replies();
    r.send(|room| syn(room, 50010, mac));
    assert!(r.replies().iter().any(|x| x.0 && x.1), "still serving");
    // Handshakes time out; every buffer is back.
    for k in 0..100 {
        r.server.poll(Instant(r.now + k * 1_000_000));
    }
    r.replies(); // the peer reads (and frees) the retransmitted SYN-ACKs
    assert_eq!(r.server.stack().queue().pool_stats().in_use, 0);
    assert_eq!(r.server.stack().conn_count(), 0);
}

/// An application that does one request/response on demand on one chosen
/// connection and nothing on the others.
struct Pinger {
    want: usize,
    issued: usize,
    opened: Vec<ConnId>,
    open_count: usize,
    replies: usize,
    fire: Option<ConnId>,
}

impl TcpApp for Pinger {
    type Conn = ();
    fn on_open(&mut self, c: &mut Conn<'_>) {
        self.open_count += 1;
        self.opened.push(c.id());
    }
    fn on_data(&mut self, _: &mut (), _c: &mut Conn<'_>, d: &[u8]) -> usize {
        self.replies += 1;
        d.len()
    }
    fn poll(&mut self, ctx: &mut Ctx<'_>) -> usize {
        let mut n = 0;
        while self.issued < self.want && n < 64 {
            ctx.connect(SocketAddr::from((SERVER, 7))).unwrap();
            self.issued += 1;
            n += 1;
        }
        if let Some(id) = self.fire.take() {
            let sent = ctx.conn(id).send(b"ping");
            assert_eq!(sent, 4, "send on {id:?}");
            n += 1;
        }
        n
    }
}

/// Polls (connection egress passes) on both ends for one request/response
/// with `idle` other connections open.
fn polls_per_transaction(idle: usize) -> (u64, u64) {
    let pinger = Pinger {
        want: idle + 1,
        issued: 0,
        opened: vec![],
        open_count: 0,
        replies: 0,
        fire: None,
    };
    let lopts = ListenOpts {
        backlog: 65536,
        tcp: opts(1024),
        ..Default::default()
    };
    let mut n = net(
        Faults::default(),
        Echo::default(),
        pinger,
        lopts,
        opts(1024),
    );
    let want = idle + 1;
    let mut opened = 0;
    // Connects are issued 64 per poll; wait for all to open.
    assert!(n.drive(2_000_000, |n| {
        opened = n.client.app().open_count;
        opened == want && n.server.stack().stats().accepted.get() == want as u64
    }));
    // Settle: let delayed ACKs and everything else go quiet.
    n.drive(10_000, |_| false);
    let mut per = vec![];
    for round in 0..5 {
        let target = n.client.app().opened[round * 7 % want];
        let (s0, c0) = (
            n.server.stack().stats().conn_polls.get(),
            n.client.stack().stats().conn_polls.get(),
        );
        let r0 = n.client.app().replies;
        let st = n.client.stack_mut().state(target);
        assert_eq!(
            st,
            Some(smoltcp::socket::tcp::State::Established),
            "t={} conns {}",
            n.now,
            n.client.stack().conn_count()
        );
        n.client.app_mut().fire = Some(target);
        assert!(n.drive(100_000, |n| n.client.app().replies == r0 + 1));
        n.drive(2_000, |_| false); // delayed ACKs
        per.push((
            n.server.stack().stats().conn_polls.get() - s0,
            n.client.stack().stats().conn_polls.get() - c0,
        ));
    }
    per.sort_unstable();
    per[per.len() / 2]
}

#[test]
fn demux_cost_does_not_grow_with_idle_connections() {
    let alone = polls_per_transaction(0);
    let crowded = polls_per_transaction(10_000);
    eprintln!("connection polls per transaction: alone {alone:?}, with 10,000 idle {crowded:?}");
    assert!(alone.0 > 0 && alone.1 > 0);
    assert!(
        crowded.0 <= alone.0 + 2 && crowded.1 <= alone.1 + 2,
        "with 10,000 idle connections a transaction polled {crowded:?} connections vs {alone:?} alone"
    );
}

/// Opens `want` connections between two stacks both configured to expect
/// `expected`; returns the server's and the client's table capacity
/// (before, after).
fn table_growth(expected: usize, want: usize) -> ((usize, usize), (usize, usize)) {
    let (qa, qb, ia, ib) = wire(Faults::default(), 8192);
    let mut sc = StackConfig::new(SERVER, 24);
    sc.expected_conns = expected;
    let mut s = Stack::new(qa, &ia, sc, Instant(0)).unwrap();
    s.listen(
        7,
        ListenOpts {
            backlog: 65536,
            ..Default::default()
        },
    )
    .unwrap();
    let mut cc = StackConfig::new(CLIENT, 24);
    cc.expected_conns = expected;
    let c = Stack::new(qb, &ib, cc, Instant(0)).unwrap();
    let before = (s.table_capacity(), c.table_capacity());
    let pinger = Pinger {
        want,
        issued: 0,
        opened: vec![],
        open_count: 0,
        replies: 0,
        fire: None,
    };
    let mut n = Net {
        server: TcpWorker::new(s, Echo::default()),
        client: TcpWorker::new(c, pinger),
        now: 0,
    };
    assert!(n.drive(2_000_000, |n| n.client.app().open_count == want
        && n.server.stack().conn_count() == want));
    (
        (before.0, n.server.stack().table_capacity()),
        (before.1, n.client.stack().table_capacity()),
    )
}

/// A stack told how many connections to expect never grows its table
/// (a grow rehashes every entry at once: at millions of connections that
/// stops the loop for a long time); one not told grows as they come.
#[test]
fn a_presized_table_does_not_grow_up_to_the_expected_count() {
    let (server, client) = table_growth(3000, 3000);
    for (who, (before, after)) in [("server", server), ("client", client)] {
        assert!(before >= 3000, "{who} table sized for {before}");
        assert_eq!(before, after, "{who} table grew from {before} to {after}");
    }
    let (server, _) = table_growth(0, 3000);
    assert!(server.1 > server.0, "an unsized table grows: {server:?}");
}

/// The first connection to a neighbour not yet resolved opens as soon as
/// the ARP reply arrives, not after smoltcp's 1 s neighbour silence.
#[test]
fn first_connection_waits_for_arp_not_for_a_second() {
    let mut c = Client::new(1, 5, 7);
    c.close_when_done = false;
    let mut n = net(
        Faults::default(),
        Echo::default(),
        c,
        ListenOpts::default(),
        opts(4096),
    );
    // Fixed 50 µs steps (no jumping to timers): 1,000 steps = 50 ms.
    let mut opened_at = None;
    for _ in 0..1000 {
        n.now += 50;
        n.server.poll(Instant(n.now));
        n.client.poll(Instant(n.now));
        if n.client.stack().stats().connected.get() == 1 {
            opened_at = Some(n.now);
            break;
        }
    }
    let t = opened_at.expect("the connection opened within 50 ms");
    assert!(t < 5_000, "opened after {t} µs");
    assert_eq!(n.client.stack().stats().arp_requests_tx.get(), 1);
}

/// A transmit queue that is briefly full holds frames back instead of
/// dropping them: a transfer over a 16-frame wire finishes with nothing
/// dropped and no retransmission timeout.
#[test]
fn a_full_transmit_queue_holds_frames_back() {
    let (mut a, mut b) = MemPort::pair(&MemConfig {
        ring_size: 16,
        pool_frames: 8192,
        ..Default::default()
    })
    .unwrap();
    let (ia, ib) = (a.info().clone(), b.info().clone());
    let mut s = Stack::new(
        a.take_queues().pop().unwrap(),
        &ia,
        StackConfig::new(SERVER, 24),
        Instant(0),
    )
    .unwrap();
    s.listen(
        7,
        ListenOpts {
            tcp: opts(256 * 1024),
            ..Default::default()
        },
    )
    .unwrap();
    let mut cc = StackConfig::new(CLIENT, 24);
    cc.connect = opts(256 * 1024);
    let c = Stack::new(b.take_queues().pop().unwrap(), &ib, cc, Instant(0)).unwrap();
    let mut n = Net {
        server: TcpWorker::new(s, Echo::default()),
        client: TcpWorker::new(c, Client::new(1, 1 << 20, 7)),
        now: 0,
    };
    // Fixed 50 µs steps: a retransmission timeout (>= 1 s) would need
    // 20,000 of them.
    let mut done = false;
    for _ in 0..15_000 {
        n.now += 50;
        n.server.poll(Instant(n.now));
        n.client.poll(Instant(n.now));
        if n.client.app().done == 1 {
            done = true;
            break;
        }
    }
    let (cs, ss) = (n.client.stack().stats(), n.server.stack().stats());
    assert!(done, "1 MiB echoed in under 0.75 s of simulated time");
    assert_eq!(
        cs.tx_full.get() + ss.tx_full.get(),
        0,
        "nothing dropped for a full queue"
    );
}

/// Takes data only in whole 3,000-byte messages (as a parser waiting for
/// a complete request does): more than one 2 KiB chunk of the bypass
/// engine's receive queue.
#[derive(Default)]
struct Whole {
    messages: usize,
    bad: usize,
    longest_offer: usize,
}

impl TcpApp for Whole {
    type Conn = ();
    fn on_open(&mut self, _: &mut Conn<'_>) {}
    fn on_data(&mut self, _: &mut (), _: &mut Conn<'_>, d: &[u8]) -> usize {
        self.longest_offer = self.longest_offer.max(d.len());
        let whole = d.len() / 3000 * 3000;
        for m in d[..whole].chunks(3000) {
            self.messages += 1;
            if m.iter().any(|&b| b != m[0]) {
                self.bad += 1;
            }
        }
        whole
    }
}

/// Sends `left` bytes, 3,000-byte messages of one repeated byte each;
/// reads what comes back if `reads` (else the test does).
struct Sender {
    sent: usize,
    left: usize,
    reads: bool,
}

impl Sender {
    fn push(&mut self, c: &mut Conn<'_>) {
        while self.left > 0 {
            let msg: Vec<u8> = (self.sent..self.sent + self.left.min(3000))
                .map(|i| (i / 3000) as u8)
                .collect();
            let n = c.send(&msg);
            self.sent += n;
            self.left -= n;
            if n < msg.len() {
                return;
            }
        }
    }
}

impl TcpApp for Sender {
    type Conn = ();
    fn on_open(&mut self, c: &mut Conn<'_>) {
        self.push(c);
    }
    fn on_data(&mut self, _: &mut (), _: &mut Conn<'_>, d: &[u8]) -> usize {
        if self.reads {
            d.len()
        } else {
            0
        }
    }
    fn on_writable(&mut self, _: &mut (), c: &mut Conn<'_>) {
        self.push(c);
    }
}

#[test]
fn an_application_that_needs_more_than_one_chunk_gets_it_contiguous() {
    // The bypass engine lends its first 2 KiB chunk of unread bytes; an
    // application that takes nothing of it is offered a contiguous copy of
    // everything readable, so a 3,000-byte message is never stuck.
    let lopts = ListenOpts::default();
    let mut n = net(
        Faults::default(),
        Whole::default(),
        Sender {
            sent: 0,
            left: 300_000,
            reads: true,
        },
        lopts,
        TcpOpts::default(),
    );
    n.client
        .stack_mut()
        .connect(SocketAddr::from((SERVER, 7)))
        .unwrap();
    let done = n.drive(2_000_000, |n| n.server.app().messages == 100);
    let w = n.server.app();
    assert!(done, "{} of 100 messages", w.messages);
    assert_eq!(w.bad, 0);
    assert!(
        w.longest_offer >= 3000,
        "offered {} at most",
        w.longest_offer
    );
}

/// An echo that counts the bytes it was offered and echoed.
#[derive(Default)]
struct CountingEcho {
    offered: usize,
    echoed: usize,
}

impl TcpApp for CountingEcho {
    type Conn = ();
    fn on_open(&mut self, _: &mut Conn<'_>) {}
    fn on_data(&mut self, _: &mut (), c: &mut Conn<'_>, d: &[u8]) -> usize {
        self.offered += d.len();
        let n = c.send(d);
        self.echoed += n;
        n
    }
}

#[test]
fn an_echo_blocked_on_a_full_send_buffer_is_not_offered_copies() {
    blocked_echo_offers(TcpEngine::Bypass);
}

#[test]
fn an_echo_blocked_on_a_full_send_buffer_is_not_offered_copies_on_smoltcp() {
    blocked_echo_offers(TcpEngine::Smoltcp);
}

fn blocked_echo_offers(engine: TcpEngine) {
    // The client sends 2 MiB and reads nothing back, so the server's send
    // buffer fills and its echo takes nothing. Each segment that arrives
    // then used to offer the echo a 64 KiB contiguous copy, declined
    // again: 45 times the bytes that came. Now the echo is offered the
    // lent chunk only (the smoltcp engine lends nothing: a copy of a
    // chunk's size), and the rest when room opens.
    const TOTAL: usize = 2 << 20;
    let own = TcpOpts {
        engine,
        ..opts(256 * 1024)
    };
    let mut n = net(
        Faults::default(),
        CountingEcho::default(),
        Sender {
            sent: 0,
            left: TOTAL,
            reads: false,
        },
        ListenOpts {
            tcp: own,
            ..Default::default()
        },
        own,
    );
    let id = n
        .client
        .stack_mut()
        .connect(SocketAddr::from((SERVER, 7)))
        .unwrap();
    // Until both directions are stuck: the client cannot send any more.
    let mut last = usize::MAX;
    let mut still = 0;
    let stuck = n.drive(2_000_000, |n| {
        let left = n.client.app().left;
        still = if left == last { still + 1 } else { 0 };
        last = left;
        still > 20_000
    });
    assert!(stuck, "the client stopped sending");
    let (offered, echoed) = (n.server.app().offered, n.server.app().echoed);
    let received = TOTAL - n.client.app().left;
    assert!(received > 512 * 1024, "{received} bytes reached the server");
    assert!(echoed < received, "the echo is blocked");
    assert!(
        offered < 3 * received,
        "offered {offered} bytes for {received} received"
    );
    // The client reads now: the echo gets the rest as room opens, and
    // everything comes back.
    let mut back = 0;
    for _ in 0..4_000_000 {
        let r = n.client.stack_mut().readable(id);
        n.client.stack_mut().consume(id, r);
        back += r;
        if back == TOTAL {
            break;
        }
        n.step(5);
    }
    assert_eq!(back, TOTAL, "all the bytes came back");
}

/// Connection churn leaves the timer wheel near the live connections'
/// count. Each connection sets a handshake deadline (10 s) that an earlier
/// one then replaces, and a connection that closes leaves its entry; on
/// this manual clock none of them comes due, so a wheel that kept stale
/// entries until their time held one or two for every connection made
/// (in `bench soak`, 16 MiB a minute).
#[test]
fn connection_churn_leaves_no_timer_entries_behind() {
    const TOTAL: usize = 20_000;
    let o = TcpOpts::default();
    let lopts = ListenOpts {
        tcp: o,
        ..Default::default()
    };
    let mut n = net(
        Faults::default(),
        Echo::default(),
        Cps::new(64, TOTAL, SERVER.into()),
        lopts,
        o,
    );
    // Over what the live connections may hold (one entry each, or two
    // for a moment) and the sweep's slack of 1,024, most.
    let mut most = 0;
    for _ in 0..2_000_000 {
        if n.client.app().closed >= TOTAL {
            break;
        }
        n.step(5);
        for s in [n.server.stack(), n.client.stack()] {
            let live = s.stats().conns.get() as usize;
            most = most.max(s.timer_entries().saturating_sub(2 * live));
        }
    }
    assert_eq!(n.client.app().closed, TOTAL, "every connection closed");
    assert!(
        most < 1_200,
        "{most} timer entries beyond twice the live connections, for {TOTAL} made"
    );
}
