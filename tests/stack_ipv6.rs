//! IPv6 on the bypass TCP engine over the in-memory wire, manual clock:
//! SYN cookies over IPv6 tuples, and one peer address and port reaching
//! two of our IPv6 addresses as two connections. (Loss recovery over
//! IPv6 is in `stack_mem.rs`, beside IPv4's.)

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use bypass::app::tcp::{Conn, Ctx, Echo, TcpApp};
use bypass::buf::{Burst, PacketBuf};
use bypass::port::mem::Faults;
use bypass::port::PortQueue;
use bypass::runtime::{TcpWorker, Worker};
use bypass::stack::{
    BacklogFull, CloseReason, ConnId, ListenOpts, Stack, StackConfig, TcpEngine, TcpOpts,
};
use bypass::testing::{syn, tcp6_vec, Ends6};
use bypass::time::Instant;
use smoltcp::wire::{
    EthernetFrame, EthernetProtocol, Ipv6Packet, TcpControl, TcpPacket, TcpRepr, TcpSeqNumber,
};

mod common;
use common::mem_net::{net, opts, wire, CLIENT6, SERVER, SERVER6};

fn byte(conn: usize, i: usize) -> u8 {
    (i.wrapping_mul(131) ^ conn.wrapping_mul(29)) as u8
}

/// Opens `want` connections to `to` in one poll; each sends `len` bytes,
/// checks their echo and closes.
struct Burster {
    to: SocketAddr,
    want: usize,
    len: usize,
    started: bool,
    ok: usize,
    bad: usize,
    ended: usize,
    failed: usize,
}

impl Burster {
    fn new(to: SocketAddr, want: usize, len: usize) -> Self {
        Burster {
            to,
            want,
            len,
            started: false,
            ok: 0,
            bad: 0,
            ended: 0,
            failed: 0,
        }
    }
}

impl TcpApp for Burster {
    /// (connection number, bytes echoed so far)
    type Conn = (usize, usize);
    fn on_open(&mut self, c: &mut Conn<'_>) -> (usize, usize) {
        let k = c.id().idx as usize;
        let msg: Vec<u8> = (0..self.len).map(|i| byte(k, i)).collect();
        assert_eq!(c.send(&msg), self.len, "the request fits the send buffer");
        (k, 0)
    }
    fn on_data(&mut self, st: &mut (usize, usize), c: &mut Conn<'_>, d: &[u8]) -> usize {
        for (i, b) in d.iter().enumerate() {
            if *b != byte(st.0, st.1 + i) {
                self.bad += 1;
            }
        }
        st.1 += d.len();
        if st.1 == self.len {
            self.ok += 1;
            c.close();
        }
        d.len()
    }
    fn on_close(&mut self, _: (usize, usize), r: CloseReason) {
        assert_eq!(r, CloseReason::Normal);
        self.ended += 1;
    }
    fn on_connect_failed(&mut self, _: ConnId) {
        self.failed += 1;
    }
    fn poll(&mut self, ctx: &mut Ctx<'_>) -> usize {
        if self.started {
            return 0;
        }
        self.started = true;
        for _ in 0..self.want {
            ctx.connect(self.to).unwrap();
        }
        self.want
    }
}

/// Eight IPv6 connections at once to a listener with room for one
/// handshake: the other seven SYNs are answered with SYN cookies over
/// their IPv6 tuples, nothing kept, and the cookies in their ACKs rebuild
/// the connections, which then echo intact.
#[test]
fn syn_cookies_rebuild_ipv6_connections() {
    let tcp = TcpOpts::default().on(TcpEngine::Bypass);
    let lopts = ListenOpts {
        backlog: 1,
        on_full: BacklogFull::Cookie,
        tcp,
    };
    let app = Burster::new(SocketAddr::from((SERVER6, 7)), 8, 3000);
    let mut n = net(Faults::default(), Echo::default(), app, lopts, tcp);
    assert!(n.drive(100_000, |n| n.client.app().ended == 8));
    let (s, c) = (n.server.stack().stats(), n.client.app());
    assert_eq!((c.ok, c.bad, c.failed), (8, 0, 0));
    assert_eq!(s.backlog_full.get(), 7);
    assert_eq!(s.syn_cookies_sent.get(), 7);
    assert_eq!(s.syn_cookies_ok.get(), 7, "every cookie checked out");
    assert_eq!(s.syn_cookies_bad.get(), 0);
    assert_eq!(s.accepted.get(), 8, "one through the backlog, 7 by cookie");
    assert_eq!(s.connected.get(), 0, "the server opened nothing itself");
    assert_eq!(s.bypass_opened.get(), 8, "all on the bypass engine");
    assert_eq!(s.reset.get(), 0);
    n.settle_and_check_leaks();
}

/// A cookie made for one IPv6 tuple does not open a connection for
/// another: an ACK echoing a cookie from a different source address is
/// refused and counted.
#[test]
fn an_ipv6_cookie_is_bound_to_its_tuple() {
    let tcp = TcpOpts::default().on(TcpEngine::Bypass);
    let (qa, mut peer, ia, _) = wire(Faults::default(), 1024);
    let mut s = Stack::new(
        qa,
        &ia,
        StackConfig::new(SERVER, 24).with_addr(SERVER6.into(), 64),
        Instant(0),
    )
    .unwrap();
    s.listen(
        7,
        ListenOpts {
            backlog: 1,
            on_full: BacklogFull::Cookie,
            tcp,
        },
    )
    .unwrap();
    let mut w = TcpWorker::new(s, Echo::default());
    let ends = Ends6 {
        src_mac: [2, 0, 0, 0, 0, 2],
        dst_mac: ia.mac.0,
        src_ip: CLIENT6,
        dst_ip: SERVER6,
    };
    // The first SYN fills the backlog; the second gets a cookie.
    send(&mut peer, &tcp6_vec(&ends, &syn(40000, 7, 1000)));
    send(&mut peer, &tcp6_vec(&ends, &syn(40001, 7, 5000)));
    w.poll(Instant(10));
    let replies = replies(&mut peer);
    assert_eq!(replies.len(), 2, "{replies:?}");
    let cookie = replies.iter().find(|r| r.dst_port == 40001).unwrap().seq;
    assert_eq!(w.stack().stats().syn_cookies_sent.get(), 1);
    // The cookie's ACK from another address: refused.
    let other = Ends6 {
        src_ip: "fd00::99".parse().unwrap(),
        ..ends
    };
    let ack = |seq: u32| TcpRepr {
        control: TcpControl::None,
        ack_number: Some(TcpSeqNumber(cookie.wrapping_add(1) as i32)),
        max_seg_size: None,
        seq_number: TcpSeqNumber(seq as i32),
        ..syn(40001, 7, 0)
    };
    send(&mut peer, &tcp6_vec(&other, &ack(5001)));
    w.poll(Instant(20));
    assert_eq!(w.stack().stats().syn_cookies_bad.get(), 1);
    assert_eq!(w.stack().conn_count(), 1);
    // From the address it was made for: a connection.
    send(&mut peer, &tcp6_vec(&ends, &ack(5001)));
    w.poll(Instant(30));
    assert_eq!(w.stack().stats().syn_cookies_ok.get(), 1);
    assert_eq!(w.stack().conn_count(), 2);
}

/// What the raw peer saw of one TCP segment over IPv6.
#[derive(Debug)]
struct Seen {
    src: Ipv6Addr,
    dst_port: u16,
    syn: bool,
    ack: bool,
    seq: u32,
    payload: Vec<u8>,
}

fn send(peer: &mut impl PortQueue, frame: &[u8]) {
    let mut b = peer.alloc().unwrap();
    b.room_mut()[..frame.len()].copy_from_slice(frame);
    b.set_len(frame.len());
    let mut burst = Burst::new();
    burst.push(b);
    assert_eq!(peer.tx_burst(&mut burst), 1);
}

/// The IPv6 TCP segments waiting at the raw peer.
fn replies(peer: &mut impl PortQueue) -> Vec<Seen> {
    let mut out = vec![];
    let mut rx = Burst::new();
    while peer.rx_burst(&mut rx) > 0 {
        for f in rx.drain(..) {
            let Ok(eth) = EthernetFrame::new_checked(f.data()) else {
                continue;
            };
            if eth.ethertype() != EthernetProtocol::Ipv6 {
                continue;
            }
            let ip = Ipv6Packet::new_checked(eth.payload()).unwrap();
            if let Ok(t) = TcpPacket::new_checked(ip.payload()) {
                out.push(Seen {
                    src: ip.src_addr(),
                    dst_port: t.dst_port(),
                    syn: t.syn(),
                    ack: t.ack(),
                    seq: t.seq_number().0 as u32,
                    payload: t.payload().to_vec(),
                });
            }
        }
    }
    out
}

/// One peer address and port opening a connection to each of two of our
/// IPv6 addresses: two connections (the table key names our address), each
/// answering from the address it was opened to, each echoing its own
/// bytes.
#[test]
fn one_peer_port_to_two_of_our_ipv6_addresses_is_two_connections() {
    let second: Ipv6Addr = "fd00::11".parse().unwrap();
    let (qa, mut peer, ia, _) = wire(Faults::default(), 1024);
    let cfg = StackConfig::new(SERVER, 24)
        .with_addr(SERVER6.into(), 64)
        .with_addr(second.into(), 64);
    let mut s = Stack::new(qa, &ia, cfg, Instant(0)).unwrap();
    let lopts = ListenOpts {
        tcp: opts(64 * 1024).on(TcpEngine::Bypass),
        ..Default::default()
    };
    s.listen(7, lopts).unwrap();
    let mut w = TcpWorker::new(s, Echo::default());
    let to = |dst_ip| Ends6 {
        src_mac: [2, 0, 0, 0, 0, 2],
        dst_mac: ia.mac.0,
        src_ip: CLIENT6,
        dst_ip,
    };
    for dst in [SERVER6, second] {
        send(&mut peer, &tcp6_vec(&to(dst), &syn(40000, 7, 1000)));
    }
    w.poll(Instant(10));
    let synacks = replies(&mut peer);
    assert_eq!(synacks.len(), 2, "{synacks:?}");
    assert!(synacks
        .iter()
        .all(|r| r.syn && r.ack && r.dst_port == 40000));
    assert_eq!(synacks[0].src, SERVER6);
    assert_eq!(synacks[1].src, second);
    assert_eq!(w.stack().conn_count(), 2);
    // Complete both handshakes with data: each echo comes back from the
    // address its connection was opened to.
    for (r, (dst, msg)) in synacks.iter().zip([(SERVER6, b"one"), (second, b"two")]) {
        let data = TcpRepr {
            control: TcpControl::Psh,
            seq_number: TcpSeqNumber(1001),
            ack_number: Some(TcpSeqNumber(r.seq.wrapping_add(1) as i32)),
            max_seg_size: None,
            payload: msg,
            ..syn(40000, 7, 0)
        };
        send(&mut peer, &tcp6_vec(&to(dst), &data));
    }
    let mut echoed = vec![];
    for t in 1..50 {
        w.poll(Instant(10 + t * 1000));
        echoed.extend(
            replies(&mut peer)
                .into_iter()
                .filter(|r| !r.payload.is_empty())
                .map(|r| (IpAddr::V6(r.src), r.payload)),
        );
        if echoed.len() == 2 {
            break;
        }
    }
    echoed.sort();
    assert_eq!(
        echoed,
        vec![
            (IpAddr::V6(SERVER6), b"one".to_vec()),
            (IpAddr::V6(second), b"two".to_vec())
        ]
    );
    assert_eq!(w.stack().stats().bypass_opened.get(), 2);
}
