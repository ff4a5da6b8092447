//! The async runtime (`bypass::rt`) between two stacks over the in-memory
//! wire, all cores driven from this thread with a manual clock, so every
//! test is deterministic and needs no spare CPU: wakers, timers,
//! back-pressure, many streams, errors, UDP, accept on two cores.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use bypass::flow::{Reta, Rss, RssKey};
use bypass::port::mem::{MemConfig, MemPort, MemQueue};
use bypass::port::{Port, PortInfo};
use bypass::rt::{
    sleep, spawn_local, timeout, Core, CoreOpts, JoinHandle, TcpListener, TcpStream, UdpSocket,
};
use bypass::stack::shard::{shards, ShardConfig, Steering};
use bypass::stack::{ListenOpts, Stack, StackConfig, TcpOpts};
use bypass::time::Instant;

const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
/// Loop time per turn, in microseconds.
const STEP: u64 = 20;

fn pattern(i: usize, salt: u8) -> u8 {
    (i.wrapping_mul(2654435761) >> 13) as u8 ^ salt
}

fn server_addr(port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(SERVER, port))
}

/// The IPv6 address of a stack whose IPv4 address is `ip`: fd00::a.b.c.d.
fn ip6_of(ip: Ipv4Addr) -> Ipv6Addr {
    let o = ip.octets();
    Ipv6Addr::from([
        0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, o[0], o[1], o[2], o[3],
    ])
}

fn stack(q: MemQueue, info: &PortInfo, ip: Ipv4Addr, tcp: TcpOpts) -> Stack<MemQueue> {
    // Dual-stack.
    let mut cfg = StackConfig::new(ip, 24).with_addr(ip6_of(ip).into(), 64);
    cfg.connect = tcp;
    cfg.random_seed = Some(u64::from(u32::from(ip)));
    Stack::new(q, info, cfg, Instant(0)).unwrap()
}

fn opts(tcp: TcpOpts) -> CoreOpts {
    CoreOpts {
        listen: ListenOpts {
            tcp,
            backlog: 4096,
            ..Default::default()
        },
        connect_timeout: Duration::from_millis(500),
        ..Default::default()
    }
}

/// Cores on both ends of a wire, turned in lockstep on one clock.
struct World {
    cores: Vec<Core>,
    now: u64,
}

impl World {
    fn pair(tcp: TcpOpts) -> World {
        let (mut a, mut b) = MemPort::pair(&MemConfig {
            ring_size: 4096,
            pool_frames: 32768,
            ..Default::default()
        })
        .unwrap();
        let (ia, ib) = (a.info().clone(), b.info().clone());
        let s = stack(a.take_queues().pop().unwrap(), &ia, SERVER, tcp);
        let c = stack(b.take_queues().pop().unwrap(), &ib, CLIENT, tcp);
        World {
            cores: vec![
                Core::new(s, 0, opts(tcp), Instant(0)),
                Core::new(c, 0, opts(tcp), Instant(0)),
            ],
            now: 0,
        }
    }

    fn server(&self) -> &Core {
        &self.cores[0]
    }

    fn client(&self) -> &Core {
        &self.cores[self.cores.len() / 2]
    }

    /// Turns every core until `done` or `max` turns; returns the turns.
    fn run_until(&mut self, max: usize, mut done: impl FnMut() -> bool) -> usize {
        for i in 0..max {
            if done() {
                return i;
            }
            self.now += STEP;
            for c in &self.cores {
                c.turn(Instant(self.now));
            }
        }
        assert!(
            done(),
            "not done after {max} turns ({} ms)",
            max as u64 * STEP / 1000
        );
        max
    }

    fn run_for(&mut self, turns: usize) {
        for _ in 0..turns {
            self.now += STEP;
            for c in &self.cores {
                c.turn(Instant(self.now));
            }
        }
    }
}

/// Accepts forever, echoing each connection in its own task.
async fn echo_server(port: u16) {
    let l = TcpListener::bind(server_addr(port)).await.unwrap();
    loop {
        let (mut s, _) = l.accept().await.unwrap();
        spawn_local(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if s.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                }
            }
            s.shutdown_write();
        });
    }
}

/// Sends `total` salted bytes, reads the echo back concurrently, checks
/// it; returns the bytes that matched.
async fn echo_client(salt: u8, total: usize) -> std::io::Result<usize> {
    let mut s = TcpStream::connect(server_addr(7)).await?;
    let mut sent = 0;
    let mut got = 0;
    let mut chunk = vec![0u8; 1500];
    let mut back = vec![0u8; 4096];
    while got < total {
        if sent < total {
            let n = (total - sent).min(chunk.len());
            for (i, b) in chunk[..n].iter_mut().enumerate() {
                *b = pattern(sent + i, salt);
            }
            // Write what fits without waiting, then read, so that neither
            // side blocks the other.
            let w = std::future::poll_fn(|cx| match s.poll_write_from(cx, &chunk[..n]) {
                Poll::Pending => Poll::Ready(Ok(0)),
                other => other,
            })
            .await?;
            sent += w;
        }
        let r = if sent < total {
            std::future::poll_fn(|cx| match s.poll_read_into(cx, &mut back) {
                Poll::Pending => Poll::Ready(Ok(usize::MAX)),
                other => other,
            })
            .await?
        } else {
            s.read(&mut back).await?
        };
        if r == usize::MAX {
            bypass::rt::yield_now().await;
            continue;
        }
        if r == 0 {
            break;
        }
        for (i, &b) in back[..r].iter().enumerate() {
            if b != pattern(got + i, salt) {
                return Err(std::io::Error::other(format!("byte {} differs", got + i)));
            }
        }
        got += r;
    }
    s.shutdown_write();
    let mut tail = [0u8; 16];
    assert_eq!(s.read(&mut tail).await?, 0, "EOF after the echo");
    Ok(got)
}

#[test]
fn echo_round_trip_and_addresses() {
    let mut w = World::pair(TcpOpts::default());
    w.server().spawn(echo_server(7));
    let h = w.client().spawn(async {
        let s = TcpStream::connect(server_addr(7)).await.unwrap();
        let (local, peer) = (s.local_addr().unwrap(), s.peer_addr().unwrap());
        drop(s);
        let n = echo_client(3, 100_000).await.unwrap();
        (local, peer, n)
    });
    w.run_until(50_000, || h.is_finished());
    let (local, peer, n) = take(h);
    assert_eq!(n, 100_000);
    assert_eq!(peer, server_addr(7));
    assert_eq!(local.ip(), std::net::IpAddr::V4(CLIENT));
}

/// The output of a finished task.
fn take<T>(h: JoinHandle<T>) -> T {
    struct Noop;
    impl std::task::Wake for Noop {
        fn wake(self: std::sync::Arc<Self>) {}
    }
    let mut h = Box::pin(h);
    let waker = std::task::Waker::from(std::sync::Arc::new(Noop));
    match h.as_mut().poll(&mut Context::from_waker(&waker)) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("task not finished"),
    }
}

/// Counts the polls of a future.
struct Counted<F> {
    polls: Rc<Cell<u32>>,
    fut: Pin<Box<F>>,
}

impl<F: Future> Future for Counted<F> {
    type Output = F::Output;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.polls.set(self.polls.get() + 1);
        self.fut.as_mut().poll(cx)
    }
}

#[test]
fn a_waiting_reader_sleeps_until_data_wakes_it() {
    let mut w = World::pair(TcpOpts::default());
    let polls = Rc::new(Cell::new(0));
    let got = Rc::new(RefCell::new(Vec::new()));
    let g = got.clone();
    let server = w.server().spawn(Counted {
        polls: polls.clone(),
        fut: Box::pin(async move {
            let l = TcpListener::bind(server_addr(7)).await.unwrap();
            let (mut s, _) = l.accept().await.unwrap();
            let mut b = [0u8; 64];
            let n = s.read(&mut b).await.unwrap();
            g.borrow_mut().extend_from_slice(&b[..n]);
        }),
    });
    let send = Rc::new(Cell::new(false));
    let go = send.clone();
    w.client().spawn(async move {
        let mut s = TcpStream::connect(server_addr(7)).await.unwrap();
        while !go.get() {
            sleep(Duration::from_millis(1)).await;
        }
        s.write_all(b"wake up").await.unwrap();
        sleep(Duration::from_millis(100)).await;
    });
    // Connected and parked in read: then a long quiet time.
    w.run_for(500);
    let parked = polls.get();
    w.run_for(5_000);
    assert_eq!(
        polls.get(),
        parked,
        "a parked task is not polled without a wake"
    );
    send.set(true);
    w.run_until(5_000, || server.is_finished());
    assert_eq!(&got.borrow()[..], b"wake up");
    assert!(
        polls.get() <= parked + 2,
        "one wake, one poll: {}",
        polls.get()
    );
}

#[test]
fn sleep_and_timeout_follow_the_loop_clock() {
    let mut w = World::pair(TcpOpts::default());
    let h = w.server().spawn(async {
        let t0 = bypass::rt::now();
        sleep(Duration::from_millis(5)).await;
        let slept = bypass::rt::now().since(t0);
        // A future that finishes in time, and one that never does.
        let fast = timeout(Duration::from_millis(10), sleep(Duration::from_millis(1))).await;
        let t1 = bypass::rt::now();
        let slow = timeout(Duration::from_millis(3), std::future::pending::<()>()).await;
        let waited = bypass::rt::now().since(t1);
        (slept, fast.is_ok(), slow, waited)
    });
    w.run_until(10_000, || h.is_finished());
    let (slept, fast, slow, waited) = take(h);
    assert!(
        (5_000..5_000 + 3 * STEP).contains(&slept),
        "slept {slept} us"
    );
    assert!(fast);
    let e: std::io::Error = slow.unwrap_err().into();
    assert_eq!(e.kind(), ErrorKind::TimedOut);
    assert!(
        (3_000..3_000 + 3 * STEP).contains(&waited),
        "waited {waited} us"
    );
}

#[test]
fn a_slow_reader_holds_the_writer_back_without_buffering() {
    let tcp = TcpOpts {
        rx_buf: 8192,
        tx_buf: 8192,
        ..Default::default()
    };
    let mut w = World::pair(tcp);
    const TOTAL: usize = 1 << 20;
    let written = Rc::new(Cell::new(0usize));
    let pendings = Rc::new(Cell::new(0usize));
    let (wr, pe) = (written.clone(), pendings.clone());
    w.server().spawn(async move {
        let l = TcpListener::bind(server_addr(7)).await.unwrap();
        let (mut s, _) = l.accept().await.unwrap();
        let mut buf = vec![0u8; 4096];
        let mut sent = 0;
        while sent < TOTAL {
            let n = (TOTAL - sent).min(buf.len());
            for (i, b) in buf[..n].iter_mut().enumerate() {
                *b = pattern(sent + i, 9);
            }
            let mut fut = Box::pin(s.write(&buf[..n]));
            let k = std::future::poll_fn(|cx| match fut.as_mut().poll(cx) {
                Poll::Pending => {
                    pe.set(pe.get() + 1);
                    Poll::Pending
                }
                r => r,
            })
            .await
            .unwrap();
            drop(fut);
            sent += k;
            wr.set(sent);
        }
        s.shutdown_write();
    });
    let read = Rc::new(Cell::new(0usize));
    let most_ahead = Rc::new(Cell::new(0usize));
    let (rd, ahead, wr) = (read.clone(), most_ahead.clone(), written.clone());
    let h = w.client().spawn(async move {
        let mut s = TcpStream::connect(server_addr(7)).await.unwrap();
        let mut b = [0u8; 1024];
        loop {
            // 1 KiB per millisecond: ~1 MB/s, far slower than the wire.
            sleep(Duration::from_millis(1)).await;
            let n = s.read(&mut b).await.unwrap();
            if n == 0 {
                break;
            }
            let got = rd.get();
            for (i, &x) in b[..n].iter().enumerate() {
                assert_eq!(x, pattern(got + i, 9), "byte {}", got + i);
            }
            rd.set(got + n);
            ahead.set(ahead.get().max(wr.get() - rd.get()));
        }
    });
    w.run_until(200_000, || h.is_finished());
    assert_eq!(read.get(), TOTAL);
    assert!(pendings.get() > 10, "the writer waited: {}", pendings.get());
    // Everything written and not read sits in the two buffers (and the
    // segments between them): nothing else grows.
    assert!(
        most_ahead.get() <= 8192 + 8192 + 4096,
        "writer ran {} bytes ahead",
        most_ahead.get()
    );
}

#[test]
fn a_thousand_concurrent_streams_echo_intact() {
    let tcp = TcpOpts {
        rx_buf: 4096,
        tx_buf: 4096,
        ..Default::default()
    };
    let mut w = World::pair(tcp);
    w.server().spawn(echo_server(7));
    let ok = Rc::new(Cell::new(0usize));
    let bad = Rc::new(RefCell::new(Vec::new()));
    for i in 0..1000 {
        let (ok, bad) = (ok.clone(), bad.clone());
        w.client().spawn(async move {
            match echo_client(i as u8, 8000 + i).await {
                Ok(n) if n == 8000 + i => ok.set(ok.get() + 1),
                Ok(n) => bad.borrow_mut().push(format!("{i}: {n} bytes")),
                Err(e) => bad.borrow_mut().push(format!("{i}: {e}")),
            }
        });
    }
    let turns = w.run_until(400_000, || ok.get() + bad.borrow().len() == 1000);
    assert!(
        bad.borrow().is_empty(),
        "{:?}",
        &bad.borrow()[..bad.borrow().len().min(5)]
    );
    assert_eq!(ok.get(), 1000, "after {turns} turns");
}

#[test]
fn failures_are_the_io_errors_std_uses() {
    let mut w = World::pair(TcpOpts::default());
    // Port 7 listens and resets what it accepts; port 9 does not listen.
    w.server().spawn(async {
        let l = TcpListener::bind(server_addr(7)).await.unwrap();
        let again = TcpListener::bind(server_addr(7)).await.unwrap_err();
        assert_eq!(again.kind(), ErrorKind::AddrInUse);
        let (s, _) = l.accept().await.unwrap();
        s.abort();
        std::future::pending::<()>().await
    });
    let h = w.client().spawn(async {
        let refused = TcpStream::connect(server_addr(9)).await.unwrap_err().kind();
        // Loopback is not on the port's network.
        let v6 = TcpStream::connect("[::1]:80".parse::<SocketAddr>().unwrap())
            .await
            .unwrap_err()
            .kind();
        // Nobody has this address: no ARP answer, no handshake.
        let silent =
            TcpStream::connect_timeout("10.0.0.77:7".parse().unwrap(), Duration::from_millis(50))
                .await
                .unwrap_err()
                .kind();
        let mut s = TcpStream::connect(server_addr(7)).await.unwrap();
        let mut b = [0u8; 8];
        let reset = s.read(&mut b).await.unwrap_err().kind();
        let write_after = s.write(b"x").await.unwrap_err().kind();
        (refused, v6, silent, reset, write_after)
    });
    w.run_until(100_000, || h.is_finished());
    let (refused, v6, silent, reset, write_after) = take(h);
    assert_eq!(refused, ErrorKind::ConnectionRefused);
    assert_eq!(v6, ErrorKind::AddrNotAvailable);
    assert_eq!(silent, ErrorKind::TimedOut);
    assert_eq!(reset, ErrorKind::ConnectionReset);
    assert_eq!(write_after, ErrorKind::ConnectionReset);
}

#[test]
fn udp_datagrams_echo() {
    let mut w = World::pair(TcpOpts::default());
    w.server().spawn(async {
        let u = UdpSocket::bind(server_addr(53)).await.unwrap();
        let mut b = [0u8; 1500];
        loop {
            let (n, from) = u.recv_from(&mut b).await.unwrap();
            u.send_to(&b[..n], from).await.unwrap();
        }
    });
    let h = w.client().spawn(async {
        let u = UdpSocket::bind(SocketAddr::from(([0, 0, 0, 0], 5353)))
            .await
            .unwrap();
        let dup = UdpSocket::bind(SocketAddr::from(([0, 0, 0, 0], 5353)))
            .await
            .unwrap_err();
        assert_eq!(dup.kind(), ErrorKind::AddrInUse);
        let mut out = Vec::new();
        let mut b = [0u8; 1500];
        // Warm up: the first datagrams go while the server's address is
        // being resolved (held or lost, as UDP may); then drain the late
        // answers.
        let mut answered = false;
        for _try in 0..5 {
            u.send_to(b"warm", server_addr(53)).await.unwrap();
            if timeout(Duration::from_millis(20), u.recv_from(&mut b))
                .await
                .is_ok()
            {
                answered = true;
                break;
            }
        }
        assert!(answered, "no answer to the warm-up");
        while timeout(Duration::from_millis(20), u.recv_from(&mut b))
            .await
            .is_ok()
        {}
        for i in 0..20u8 {
            u.send_to(&[i; 100], server_addr(53)).await.unwrap();
            let (n, from) = timeout(Duration::from_millis(20), u.recv_from(&mut b))
                .await
                .expect("an answer")
                .unwrap();
            assert_eq!(from, server_addr(53));
            out.push((n, b[0]));
        }
        out
    });
    w.run_until(100_000, || h.is_finished());
    let out = take(h);
    assert_eq!(out.len(), 20);
    for (i, (n, b)) in out.into_iter().enumerate() {
        assert_eq!((n, b), (100, i as u8));
    }
}

/// The async types over IPv6: a stream echoed intact with both ends'
/// addresses IPv6, and UDP datagrams answered to their IPv6 sender.
#[test]
fn ipv6_streams_and_datagrams() {
    let mut w = World::pair(TcpOpts::default());
    let server6 = |port| SocketAddr::new(ip6_of(SERVER).into(), port);
    w.server().spawn(async {
        let l = TcpListener::bind(SocketAddr::from((Ipv6Addr::UNSPECIFIED, 7)))
            .await
            .unwrap();
        loop {
            let (mut s, peer) = l.accept().await.unwrap();
            assert_eq!(peer.ip(), IpAddr::V6(ip6_of(CLIENT)));
            spawn_local(async move {
                let mut buf = vec![0u8; 4096];
                while let Ok(n @ 1..) = s.read(&mut buf).await {
                    if s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
                s.shutdown_write();
            });
        }
    });
    w.server().spawn(async {
        let u = UdpSocket::bind(SocketAddr::from((Ipv6Addr::UNSPECIFIED, 53)))
            .await
            .unwrap();
        let mut b = [0u8; 1500];
        loop {
            let (n, from) = u.recv_from(&mut b).await.unwrap();
            u.send_to(&b[..n], from).await.unwrap();
        }
    });
    let h = w.client().spawn(async move {
        let mut s = TcpStream::connect(server6(7)).await.unwrap();
        let (local, peer) = (s.local_addr().unwrap(), s.peer_addr().unwrap());
        let data: Vec<u8> = (0..50_000).map(|i| pattern(i, 9)).collect();
        let mut back = vec![0u8; data.len()];
        let mut got = 0;
        let mut sent = 0;
        while got < data.len() {
            if sent < data.len() {
                sent += s
                    .write(&data[sent..(sent + 1500).min(data.len())])
                    .await
                    .unwrap();
            }
            got += s.read(&mut back[got..]).await.unwrap();
        }
        assert!(back == data, "the echo differs");
        let u = UdpSocket::bind(SocketAddr::from((Ipv6Addr::UNSPECIFIED, 5353)))
            .await
            .unwrap();
        let mut b = [0u8; 64];
        let mut answer = None;
        for _try in 0..5 {
            u.send_to(b"v6?", server6(53)).await.unwrap();
            if let Ok(r) = timeout(Duration::from_millis(20), u.recv_from(&mut b)).await {
                answer = Some(r.unwrap());
                break;
            }
        }
        (local, peer, answer)
    });
    w.run_until(100_000, || h.is_finished());
    let (local, peer, answer) = take(h);
    assert_eq!(local.ip(), IpAddr::V6(ip6_of(CLIENT)));
    assert_eq!(peer, server6(7));
    let (n, from) = answer.expect("a UDP answer over IPv6");
    assert_eq!((n, from), (3, server6(53)));
}

/// Two cores on each end of a two-queue wire, sharded by RSS (software
/// steering): each server core binds port 7 and accepts what RSS gives it.
#[test]
fn accept_on_two_cores() {
    let (mut a, mut b) = MemPort::pair(&MemConfig {
        queues: 2,
        ring_size: 4096,
        pool_frames: 16384,
        ..Default::default()
    })
    .unwrap();
    let (ia, ib) = (a.info().clone(), b.info().clone());
    let tcp = TcpOpts::default();
    let sharded = |qs: Vec<MemQueue>, info: &PortInfo, ip: Ipv4Addr| -> Vec<Core> {
        let sh = shards(&ShardConfig {
            rss: Rss::new(RssKey::SYMMETRIC, Reta::spread(2).unwrap()),
            steering: Steering::Software,
            ring_size: 1024,
        })
        .unwrap();
        qs.into_iter()
            .zip(sh)
            .enumerate()
            .map(|(i, (q, s))| {
                let mut st = stack(q, info, ip, tcp);
                st.set_shard(s).unwrap();
                Core::new(st, i, opts(tcp), Instant(0))
            })
            .collect()
    };
    let mut cores = sharded(a.take_queues(), &ia, SERVER);
    cores.extend(sharded(b.take_queues(), &ib, CLIENT));
    let mut w = World { cores, now: 0 };
    let accepted: Vec<Rc<Cell<usize>>> = (0..2).map(|_| Rc::new(Cell::new(0))).collect();
    for (i, acc) in accepted.iter().enumerate() {
        let acc = acc.clone();
        w.cores[i].spawn(async move {
            let l = TcpListener::bind(server_addr(7)).await.unwrap();
            loop {
                let (mut s, _) = l.accept().await.unwrap();
                acc.set(acc.get() + 1);
                spawn_local(async move {
                    let mut b = [0u8; 256];
                    while let Ok(n) = s.read(&mut b).await {
                        if n == 0 || s.write_all(&b[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
    }
    let ok = Rc::new(Cell::new(0usize));
    for c in 2..4 {
        for i in 0..50 {
            let ok = ok.clone();
            w.cores[c].spawn(async move {
                let mut s = TcpStream::connect(server_addr(7)).await.unwrap();
                let msg = format!("core {c} conn {i:02}");
                s.write_all(msg.as_bytes()).await.unwrap();
                let mut b = vec![0u8; msg.len()];
                let mut got = 0;
                while got < b.len() {
                    got += s.read(&mut b[got..]).await.unwrap();
                }
                assert_eq!(b, msg.as_bytes());
                ok.set(ok.get() + 1);
            });
        }
    }
    w.run_until(200_000, || ok.get() == 100);
    let (a0, a1) = (accepted[0].get(), accepted[1].get());
    assert_eq!(a0 + a1, 100);
    assert!(a0 > 10 && a1 > 10, "both cores accepted: {a0} and {a1}");
}

/// tokio's traits: hyper and friends drive the stream only through them.
#[cfg(feature = "tokio")]
#[test]
fn tokio_read_write_traits_carry_a_stream() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut w = World::pair(TcpOpts::default());
    w.server().spawn(async {
        let l = TcpListener::bind(server_addr(7)).await.unwrap();
        let (mut s, _) = l.accept().await.unwrap();
        let mut all = Vec::new();
        s.read_to_end(&mut all).await.unwrap();
        let sum: u64 = all.iter().map(|&b| u64::from(b)).sum();
        s.write_all(format!("{} {sum}", all.len()).as_bytes())
            .await
            .unwrap();
        s.shutdown().await.unwrap();
    });
    let h = w.client().spawn(async {
        let mut s = TcpStream::connect(server_addr(7)).await.unwrap();
        let data: Vec<u8> = (0..200_000).map(|i| pattern(i, 1)).collect();
        AsyncWriteExt::write_all(&mut s, &data).await.unwrap();
        AsyncWriteExt::shutdown(&mut s).await.unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).await.unwrap();
        let sum: u64 = data.iter().map(|&b| u64::from(b)).sum();
        (answer, format!("200000 {sum}"))
    });
    w.run_until(200_000, || h.is_finished());
    let (got, want) = take(h);
    assert_eq!(got, want);
}

/// futures-io's traits, driven by hand (no futures-util here).
#[cfg(feature = "futures-io")]
#[test]
fn futures_io_traits_carry_a_stream() {
    use futures_io::{AsyncRead, AsyncWrite};
    let mut w = World::pair(TcpOpts::default());
    w.server().spawn(echo_server(7));
    let h = w.client().spawn(async {
        let mut s = TcpStream::connect(server_addr(7)).await.unwrap();
        let msg = b"through futures-io";
        let mut sent = 0;
        while sent < msg.len() {
            sent += std::future::poll_fn(|cx| Pin::new(&mut s).poll_write(cx, &msg[sent..]))
                .await
                .unwrap();
        }
        std::future::poll_fn(|cx| Pin::new(&mut s).poll_close(cx))
            .await
            .unwrap();
        let mut back = Vec::new();
        let mut b = [0u8; 64];
        loop {
            let n = std::future::poll_fn(|cx| Pin::new(&mut s).poll_read(cx, &mut b))
                .await
                .unwrap();
            if n == 0 {
                break;
            }
            back.extend_from_slice(&b[..n]);
        }
        back
    });
    w.run_until(100_000, || h.is_finished());
    assert_eq!(take(h), b"through futures-io");
}

/// `Runtime::builder()` end to end on real threads: a server runtime and
/// a client runtime on the two ends of a mem wire.
#[test]
fn builder_runs_a_core_per_thread_over_a_port() {
    use bypass::rt::Runtime;
    use bypass::runtime::Stop;
    let (a, b) = MemPort::pair(&MemConfig::default()).unwrap();
    let stop = Stop::new();
    let results = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    std::thread::scope(|s| {
        let st = stop.clone();
        let server = s.spawn(move || {
            Runtime::builder()
                .ip("10.0.0.1/24")
                .no_pin(true)
                .idle_sleep(Duration::from_micros(50))
                .duration(Duration::from_secs(60))
                .stop(st)
                .run_ports(vec![a], |_| echo_server(7))
        });
        let r = results.clone();
        let client = Runtime::builder()
            .ip("10.0.0.2/24")
            .no_pin(true)
            .idle_sleep(Duration::from_micros(50))
            .duration(Duration::from_secs(60))
            .stop(Stop::new())
            .run_ports(vec![b], move |_| {
                let r = r.clone();
                async move {
                    for salt in 0..3 {
                        let n = echo_client(salt, 50_000).await;
                        r.lock().unwrap().push(n.map_err(|e| e.to_string()));
                    }
                }
            });
        stop.set();
        client.unwrap();
        server.join().unwrap().unwrap();
    });
    let r = results.lock().unwrap();
    assert_eq!(*r, vec![Ok(50_000), Ok(50_000), Ok(50_000)]);
}
