//! The userspace stack against the Linux kernel's TCP, over TAP, in a
//! private network namespace per test. The kernel side uses ordinary
//! sockets from the test thread (which lives in that namespace).
#![cfg(feature = "tap")]

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::time::Duration;

use bypass::app::tcp::{Conn, Ctx, TcpApp};
use bypass::port::tap::{TapConfig, TapPort, TapQueue};
use bypass::port::{Port, PortQueue};
use bypass::runtime::{self, RunConfig, Stop, TcpWorker};
use bypass::stack::{BacklogFull, CloseReason, ListenOpts, Stack, StackConfig, TcpOpts};
use bypass::time::Instant;

const KERNEL: Ipv4Addr = Ipv4Addr::new(10, 66, 0, 1);
const US: Ipv4Addr = Ipv4Addr::new(10, 66, 0, 2);

/// Echoes; aborts (RST) a connection that sends "RST!", closes on "BYE!".
struct Echo;
impl TcpApp for Echo {
    type Conn = ();
    fn on_open(&mut self, _: &mut Conn<'_>) {}
    fn on_data(&mut self, _: &mut (), c: &mut Conn<'_>, d: &[u8]) -> usize {
        if d == b"RST!" {
            c.abort();
            return d.len();
        }
        if d == b"BYE!" {
            c.close();
            return d.len();
        }
        c.send(d)
    }
}

/// Sets up the namespace and a stack on a TAP; returns the worker, not yet
/// running.
fn setup<A: TcpApp>(tap: &str, app: A, lopts: ListenOpts) -> (TcpWorker<TapQueue, A>, TapPort) {
    common::private_netns();
    let mut port = TapPort::open(&TapConfig::new(tap)).unwrap();
    common::sh(&format!(
        "sysctl -qw net.ipv6.conf.all.disable_ipv6=1; ip addr add {KERNEL}/24 dev {tap}"
    ));
    let q = port.take_queues().pop().unwrap();
    let mut stack = Stack::new(q, port.info(), StackConfig::new(US, 24), Instant(0)).unwrap();
    stack.listen(7, lopts).unwrap();
    (TcpWorker::new(stack, app), port)
}

/// Runs the worker on a core thread while `f` runs here; returns the worker.
fn with_running<A: TcpApp, R>(
    w: TcpWorker<TapQueue, A>,
    f: impl FnOnce() -> R,
) -> (TcpWorker<TapQueue, A>, R) {
    let stop = Stop::new();
    let cfg = RunConfig {
        cores: vec![runtime::available_cores()[0]],
        idle_sleep: Duration::from_micros(20),
        ..Default::default()
    };
    std::thread::scope(|s| {
        let st = stop.clone();
        let h = s.spawn(move || {
            runtime::run(&cfg, vec![w], &st, |_| {})
                .unwrap()
                .pop()
                .unwrap()
        });
        struct Guard(Stop);
        impl Drop for Guard {
            fn drop(&mut self) {
                self.0.set();
            }
        }
        let g = Guard(stop.clone());
        let r = f();
        drop(g);
        (h.join().unwrap(), r)
    })
}

/// Opens `n` kernel connections at once, has each send its own message and
/// checks each gets it back, then closes them all in order (EOF each).
fn echo_from_many_kernel_connections(n: usize) {
    echo_from_many_kernel_connections_to(SocketAddrV4::new(US, 7).into(), n)
}

/// [`echo_from_many_kernel_connections`] to `to`.
fn echo_from_many_kernel_connections_to(to: SocketAddr, n: usize) {
    let mut socks: Vec<TcpStream> = (0..n).map(|_| connect_to(to)).collect();
    for (i, s) in socks.iter_mut().enumerate() {
        s.write_all(format!("conn {i:04} says hi").as_bytes())
            .unwrap();
    }
    for (i, s) in socks.iter_mut().enumerate() {
        let mut b = [0u8; 17];
        s.read_exact(&mut b).unwrap();
        assert_eq!(&b, format!("conn {i:04} says hi").as_bytes());
    }
    for s in &socks {
        s.shutdown(Shutdown::Write).unwrap();
    }
    for s in &mut socks {
        let mut b = [0u8; 1];
        assert_eq!(s.read(&mut b).unwrap(), 0);
    }
}

fn connect() -> TcpStream {
    connect_to(SocketAddrV4::new(US, 7).into())
}

fn connect_to(to: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&to, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

#[test]
#[ignore = "needs root"]
fn kernel_clients_are_echoed_and_closes_resets_refusals_behave() {
    common::require_root("kernel_clients_are_echoed_and_closes_resets_refusals_behave");
    let (w, _port) = setup("bpk0", Echo, ListenOpts::default());
    let (w, ()) = with_running(w, || {
        // Echo, then orderly close from the client: we close too (EOF).
        let mut s = connect();
        s.write_all(b"hello bypass").unwrap();
        let mut buf = [0u8; 12];
        s.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"hello bypass");
        s.shutdown(Shutdown::Write).unwrap();
        assert_eq!(s.read(&mut buf).unwrap(), 0, "orderly close: EOF");
        // We close first.
        let mut s = connect();
        s.write_all(b"BYE!").unwrap();
        assert_eq!(s.read(&mut buf).unwrap(), 0, "server closed: EOF");
        // We reset.
        let mut s = connect();
        s.write_all(b"RST!").unwrap();
        let e = s.read(&mut buf).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}");
        // Nothing listens on 8: refused by our RST.
        let e =
            TcpStream::connect_timeout(&SocketAddrV4::new(US, 8).into(), Duration::from_secs(5))
                .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "{e}");
        // Ping (ICMP echo) is answered by the stack.
        common::sh(&format!("ping -c 2 -i 0.2 -W 2 {US}"));
    });
    let st = w.stack().stats();
    assert!(st.accepted.get() >= 3);
    assert!(st.reset.get() >= 1);
    assert!(st.no_conn.get() >= 1);
    assert_eq!(
        w.stack().queue().pool_stats().in_use,
        0,
        "every buffer back"
    );
}

#[test]
#[ignore = "needs root"]
fn a_thousand_concurrent_kernel_connections_get_their_data_back() {
    common::require_root("a_thousand_concurrent_kernel_connections_get_their_data_back");
    let lopts = ListenOpts {
        backlog: 2048,
        tcp: TcpOpts {
            rx_buf: 4096,
            tx_buf: 4096,
            ..Default::default()
        },
        ..Default::default()
    };
    let (w, _port) = setup("bpk1", Echo, lopts);
    let (w, ()) = with_running(w, || {
        echo_from_many_kernel_connections(1000);
    });
    assert_eq!(w.stack().stats().accepted.get(), 1000);
    assert_eq!(w.stack().stats().reset.get(), 0);
}

fn fnv(h: &mut u64, data: &[u8]) {
    for b in data {
        *h ^= *b as u64;
        *h = h.wrapping_mul(0x100000001b3);
    }
}

#[test]
#[ignore = "needs root"]
fn sixty_four_mebibytes_each_way_arrive_intact() {
    common::require_root("sixty_four_mebibytes_each_way_arrive_intact");
    let lopts = ListenOpts {
        tcp: TcpOpts {
            rx_buf: 256 * 1024,
            tx_buf: 256 * 1024,
            ..Default::default()
        },
        ..Default::default()
    };
    let (w, _port) = setup("bpk2", Echo, lopts);
    let (w, (sent_hash, got_hash)) =
        with_running(w, || through_and_back(SocketAddrV4::new(US, 7).into()));
    assert_eq!(
        sent_hash, got_hash,
        "64 MiB through our stack and back, intact"
    );
    let st = w.stack().stats();
    assert!(st.rx_bytes.get() >= TOTAL as u64 && st.tx_bytes.get() >= TOTAL as u64);
}

const TOTAL: usize = 64 << 20;

/// Sends [`TOTAL`] bytes to the echo server at `to` while reading them
/// back; returns the hashes of what was sent and what came back.
fn through_and_back(to: SocketAddr) -> (u64, u64) {
    {
        let s = connect_to(to);
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut r = s.try_clone().unwrap();
        let writer = std::thread::spawn(move || {
            let mut s = s;
            let mut h = 0xcbf29ce484222325u64;
            let mut x = 0x9e3779b97f4a7c15u64;
            let mut chunk = vec![0u8; 64 * 1024];
            let mut sent = 0;
            while sent < TOTAL {
                for b in chunk.iter_mut() {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    *b = x as u8;
                }
                s.write_all(&chunk).unwrap();
                fnv(&mut h, &chunk);
                sent += chunk.len();
            }
            h
        });
        let mut h = 0xcbf29ce484222325u64;
        let mut buf = vec![0u8; 256 * 1024];
        let mut got = 0;
        while got < TOTAL {
            let n = r.read(&mut buf).unwrap();
            assert!(n > 0, "EOF after {got} bytes");
            fnv(&mut h, &buf[..n]);
            got += n;
        }
        (writer.join().unwrap(), h)
    }
}

/// Our stack as the client: connects to a kernel echo server, sends a
/// message, checks the echo, closes.
struct Client {
    remote: SocketAddr,
    started: bool,
    got: Vec<u8>,
    closed: Option<CloseReason>,
}
impl TcpApp for Client {
    type Conn = ();
    fn on_open(&mut self, c: &mut Conn<'_>) {
        assert_eq!(c.send(b"from userspace"), 14);
    }
    fn on_data(&mut self, _: &mut (), c: &mut Conn<'_>, d: &[u8]) -> usize {
        self.got.extend_from_slice(d);
        if self.got.len() >= 14 {
            c.close();
        }
        d.len()
    }
    fn on_close(&mut self, _: (), r: CloseReason) {
        self.closed = Some(r);
    }
    fn poll(&mut self, ctx: &mut Ctx<'_>) -> usize {
        if !self.started {
            self.started = true;
            ctx.connect(self.remote).unwrap();
            return 1;
        }
        0
    }
}

/// The kernel server's side: accepts one connection, echoes its 14
/// bytes, waits for our FIN; returns the peer's address.
fn echo_one_then_wait_for_fin(l: &TcpListener) -> SocketAddr {
    let (mut s, peer) = l.accept().unwrap();
    let mut b = [0u8; 14];
    s.read_exact(&mut b).unwrap();
    s.write_all(&b).unwrap();
    let mut rest = vec![];
    s.read_to_end(&mut rest).unwrap(); // our FIN
    assert!(rest.is_empty());
    drop(s);
    std::thread::sleep(Duration::from_millis(300));
    peer
}

#[test]
#[ignore = "needs root"]
fn our_stack_connects_to_a_kernel_server() {
    common::require_root("our_stack_connects_to_a_kernel_server");
    let client = Client {
        remote: SocketAddrV4::new(KERNEL, 9007).into(),
        started: false,
        got: vec![],
        closed: None,
    };
    let (w, _port) = setup("bpk3", client, ListenOpts::default());
    let l = TcpListener::bind((KERNEL, 9007)).unwrap();
    let (w, peer) = with_running(w, || echo_one_then_wait_for_fin(&l));
    assert_eq!(peer.ip(), std::net::IpAddr::V4(US));
    assert_eq!(w.app().got, b"from userspace");
    assert_eq!(w.app().closed, Some(CloseReason::Normal));
    assert_eq!(w.stack().stats().connected.get(), 1);
}

#[test]
#[ignore = "needs root"]
fn syns_beyond_a_full_backlog_are_refused_and_counted() {
    common::require_root("syns_beyond_a_full_backlog_are_refused_and_counted");
    let lopts = ListenOpts {
        backlog: 4,
        on_full: BacklogFull::Reset,
        ..Default::default()
    };
    let (mut w, _port) = setup("bpk4", Echo, lopts);
    // Learn the kernel's MAC first so the SYN-ACKs go out at once.
    let (w2, ()) = with_running(w, || {
        common::sh(&format!("ping -c 1 -W 2 {US}"))
            .status
            .success()
            .then_some(())
            .unwrap()
    });
    w = w2;
    // 12 connection attempts queue up in the TAP while the loop is stopped;
    // then the loop reads them in one burst: 4 fit the backlog.
    let socks: Vec<socket2_free::Sock> = (0..12)
        .map(|_| socket2_free::Sock::connect_nb(SocketAddrV4::new(US, 7)))
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    let (w, results) = with_running(w, || {
        std::thread::sleep(Duration::from_millis(500));
        socks.iter().map(|s| s.result()).collect::<Vec<_>>()
    });
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let refused = results
        .iter()
        .filter(|r| matches!(r, Err(e) if e.kind() == ErrorKind::ConnectionRefused))
        .count();
    assert_eq!((ok, refused), (4, 8), "{results:?}");
    assert_eq!(w.stack().stats().backlog_full.get(), 8);
}

/// Non-blocking connect with std only (no extra crates): a raw socket fd.
mod socket2_free {
    use std::io;
    use std::net::SocketAddrV4;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    pub struct Sock(OwnedFd);

    impl Sock {
        pub fn connect_nb(to: SocketAddrV4) -> Sock {
            // SAFETY: plain socket/connect calls with a valid sockaddr_in.
            unsafe {
                let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_NONBLOCK, 0);
                assert!(fd >= 0);
                let sa = libc::sockaddr_in {
                    sin_family: libc::AF_INET as u16,
                    sin_port: to.port().to_be(),
                    sin_addr: libc::in_addr {
                        s_addr: u32::from(*to.ip()).to_be(),
                    },
                    sin_zero: [0; 8],
                };
                let r = libc::connect(
                    fd,
                    &sa as *const _ as *const libc::sockaddr,
                    std::mem::size_of_val(&sa) as u32,
                );
                assert!(
                    r == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EINPROGRESS)
                );
                Sock(OwnedFd::from_raw_fd(fd))
            }
        }

        /// Waits for the connect to finish; its outcome.
        pub fn result(&self) -> io::Result<()> {
            let mut p = libc::pollfd {
                fd: self.0.as_raw_fd(),
                events: libc::POLLOUT,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            unsafe { libc::poll(&mut p, 1, 3000) };
            let mut err: libc::c_int = 0;
            let mut len = std::mem::size_of::<libc::c_int>() as u32;
            // SAFETY: SO_ERROR into an int of the right size.
            unsafe {
                libc::getsockopt(
                    self.0.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_ERROR,
                    &mut err as *mut _ as *mut libc::c_void,
                    &mut len,
                )
            };
            if err == 0 && p.revents & libc::POLLOUT != 0 {
                Ok(())
            } else if err == 0 {
                Err(io::Error::new(io::ErrorKind::TimedOut, "still connecting"))
            } else {
                Err(io::Error::from_raw_os_error(err))
            }
        }
    }
}

// ---- two cores over a two-queue TAP ---------------------------------------

use bypass::stack::shard::{shards, ShardConfig};
use bypass::stack::StackStats;

/// A two-queue TAP in a fresh namespace, one sharded stack per queue
/// (software steering: the kernel picks TAP queues by its own hash), each
/// listening on 7 and running the app `make(core)` gives.
fn setup_two_cores<A: TcpApp>(
    tap: &str,
    lopts: ListenOpts,
    mut make: impl FnMut(usize) -> A,
) -> (Vec<TcpWorker<TapQueue, A>>, TapPort) {
    common::private_netns();
    let mut cfg = TapConfig::new(tap);
    cfg.queues = 2;
    let mut port = TapPort::open(&cfg).unwrap();
    common::sh(&format!(
        "sysctl -qw net.ipv6.conf.all.disable_ipv6=1; ip addr add {KERNEL}/24 dev {tap}"
    ));
    let info = port.info().clone();
    let sh = shards(&ShardConfig::software(2).unwrap()).unwrap();
    let workers = port
        .take_queues()
        .into_iter()
        .zip(sh)
        .enumerate()
        .map(|(core, (q, s))| {
            let mut stack = Stack::new(q, &info, StackConfig::new(US, 24), Instant(0)).unwrap();
            stack.set_shard(s).unwrap();
            stack.listen(7, lopts).unwrap();
            TcpWorker::new(stack, make(core))
        })
        .collect();
    (workers, port)
}

/// Runs the workers (unpinned: the machine has two CPUs and the kernel
/// side needs one too) while `f` runs here.
fn with_running_all<A: TcpApp, R>(
    ws: Vec<TcpWorker<TapQueue, A>>,
    f: impl FnOnce() -> R,
) -> (Vec<TcpWorker<TapQueue, A>>, R) {
    let stop = Stop::new();
    let cfg = RunConfig {
        cores: (0..ws.len()).collect(),
        idle_sleep: Duration::from_micros(20),
        no_pin: true,
        ..Default::default()
    };
    std::thread::scope(|s| {
        let st = stop.clone();
        let h = s.spawn(move || runtime::run(&cfg, ws, &st, |_| {}).unwrap());
        struct Guard(Stop);
        impl Drop for Guard {
            fn drop(&mut self) {
                self.0.set();
            }
        }
        let g = Guard(stop.clone());
        let r = f();
        drop(g);
        (h.join().unwrap(), r)
    })
}

fn stats_of<A: TcpApp>(ws: &[TcpWorker<TapQueue, A>]) -> Vec<&StackStats> {
    ws.iter().map(|w| &**w.stack().stats()).collect()
}

#[test]
#[ignore = "needs root"]
fn two_cores_serve_many_kernel_connections_over_a_two_queue_tap() {
    common::require_root("two_cores_serve_many_kernel_connections_over_a_two_queue_tap");
    const N: usize = 400;
    let lopts = ListenOpts {
        backlog: 1024,
        tcp: TcpOpts {
            rx_buf: 4096,
            tx_buf: 4096,
            ..Default::default()
        },
        ..Default::default()
    };
    let (ws, _port) = setup_two_cores("bpk5", lopts, |_| Echo);
    let (ws, ()) = with_running_all(ws, || {
        echo_from_many_kernel_connections(N);
    });
    let st = stats_of(&ws);
    for (core, s) in st.iter().enumerate() {
        eprintln!(
            "core {core}: rx {} accepted {} steered out {} in {} arp copies out {} in {}",
            s.rx_packets.get(),
            s.accepted.get(),
            s.steered_out.get(),
            s.steered_in.get(),
            s.arp_copies_out.get(),
            s.arp_copies_in.get()
        );
    }
    let accepted: Vec<u64> = st.iter().map(|s| s.accepted.get()).collect();
    assert_eq!(accepted.iter().sum::<u64>(), N as u64, "{accepted:?}");
    assert!(
        accepted.iter().all(|&a| a > N as u64 / 4),
        "spread: {accepted:?}"
    );
    for (core, s) in st.iter().enumerate() {
        assert_eq!(s.reset.get(), 0, "core {core}");
        // No segment missed its owner: a segment for no connection can
        // only be the peer's late answer to one of our retransmissions
        // (an ACK of a FIN sent twice arriving after the connection ended;
        // the kernel answers late on a loaded machine).
        assert!(
            s.no_conn.get() <= s.tcp.retransmits.get(),
            "core {core}: {} segments for no connection, {} retransmissions",
            s.no_conn.get(),
            s.tcp.retransmits.get()
        );
        assert_eq!(s.steer_drops.get(), 0, "core {core}");
        // The kernel's ARP request reached one core and its copy the other:
        // neither core ever had to ask for the kernel's address.
        assert_eq!(s.arp_requests_tx.get(), 0, "core {core} had to ARP");
        assert!(
            s.arp_copies_in.get() + s.arp_copies_out.get() > 0,
            "core {core} saw no ARP"
        );
    }
    // The kernel chose queues by its own hash: some SYNs reached the
    // wrong core and were steered.
    let steered: u64 = st.iter().map(|s| s.steered_out.get()).sum();
    let steered_in: u64 = st.iter().map(|s| s.steered_in.get()).sum();
    assert!(steered > 0, "nothing steered");
    assert_eq!(steered, steered_in);
}

/// Our side as the client on every core: `want` connections to the kernel,
/// one message each, checked and closed.
struct ManyClients {
    remote: SocketAddrV4,
    want: usize,
    opened: usize,
    echoed: usize,
    closed: usize,
    failed: usize,
}
impl TcpApp for ManyClients {
    type Conn = Vec<u8>;
    fn on_open(&mut self, c: &mut Conn<'_>) -> Vec<u8> {
        let port = c.local().unwrap().port();
        let msg = format!("from port {port:05}").into_bytes();
        assert_eq!(c.send(&msg), msg.len());
        Vec::new()
    }
    fn on_data(&mut self, got: &mut Vec<u8>, c: &mut Conn<'_>, d: &[u8]) -> usize {
        got.extend_from_slice(d);
        let port = c.local().unwrap().port();
        if got.len() >= 15 {
            assert_eq!(got, format!("from port {port:05}").as_bytes());
            self.echoed += 1;
            c.close();
        }
        d.len()
    }
    fn on_close(&mut self, _: Vec<u8>, r: CloseReason) {
        if r == CloseReason::Normal {
            self.closed += 1;
        }
    }
    fn on_connect_failed(&mut self, _: bypass::stack::ConnId) {
        self.failed += 1;
    }
    fn poll(&mut self, ctx: &mut Ctx<'_>) -> usize {
        let mut n = 0;
        while self.opened < self.want && n < 8 {
            ctx.connect(self.remote.into()).unwrap();
            self.opened += 1;
            n += 1;
        }
        n
    }
}

#[test]
#[ignore = "needs root"]
fn active_opens_on_two_cores_stay_on_their_core_over_a_two_queue_tap() {
    common::require_root("active_opens_on_two_cores_stay_on_their_core_over_a_two_queue_tap");
    const PER_CORE: usize = 100;
    let remote = SocketAddrV4::new(KERNEL, 9009);
    let (ws, _port) = setup_two_cores("bpk6", ListenOpts::default(), |_| ManyClients {
        remote,
        want: PER_CORE,
        opened: 0,
        echoed: 0,
        closed: 0,
        failed: 0,
    });
    let l = TcpListener::bind(remote).unwrap();
    let (ws, ports) = with_running_all(ws, || {
        let mut ports = Vec::new();
        for _ in 0..2 * PER_CORE {
            let (mut s, peer) = l.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut b = [0u8; 15];
            s.read_exact(&mut b).unwrap();
            s.write_all(&b).unwrap();
            let mut rest = vec![];
            s.read_to_end(&mut rest).unwrap(); // our FIN
            ports.push(peer.port());
        }
        std::thread::sleep(Duration::from_millis(300));
        ports
    });
    let rss = bypass::flow::Rss::symmetric(2).unwrap();
    let per_core_ports = ports.iter().fold([0usize; 2], |mut acc, &p| {
        acc[rss.core_v4(KERNEL, US, 9009, p)] += 1;
        acc
    });
    assert_eq!(
        per_core_ports,
        [PER_CORE, PER_CORE],
        "ports hash to their core"
    );
    for (core, w) in ws.iter().enumerate() {
        let (a, s) = (w.app(), w.stack().stats());
        assert_eq!(a.failed, 0, "core {core}");
        assert_eq!(a.echoed, PER_CORE, "core {core}");
        assert_eq!(a.closed, PER_CORE, "core {core}");
        assert_eq!(s.connected.get(), PER_CORE as u64, "core {core}");
        assert_eq!(
            s.no_conn.get(),
            0,
            "core {core}: every reply found its core"
        );
    }
}

#[test]
#[ignore = "needs root"]
fn a_kernel_client_is_served_at_once_during_a_syn_flood() {
    common::require_root("a_kernel_client_is_served_at_once_during_a_syn_flood");
    kernel_clients_during_a_syn_flood("bpk9", false);
}

/// [`a_kernel_client_is_served_at_once_during_a_syn_flood`] over IPv6:
/// the cookies are made and checked over IPv6 tuples.
#[test]
#[ignore = "needs root"]
fn a_kernel_ipv6_client_is_served_at_once_during_a_syn_flood() {
    common::require_root("a_kernel_ipv6_client_is_served_at_once_during_a_syn_flood");
    kernel_clients_during_a_syn_flood("bp6k4", true);
}

/// Spoofed SYNs from addresses that never answer fill the backlog; SYN
/// cookies (the bypass engine's policy for a full backlog) keep nothing
/// for them, so a real client's first SYN is answered and it is served at
/// once. (smoltcp cannot make a socket with a chosen ISN: with it the
/// client waits for its SYN retransmission, 1 s or more; so the listener
/// is on the bypass engine whatever the process's default.)
fn kernel_clients_during_a_syn_flood(tap: &str, v6: bool) {
    let lopts = ListenOpts {
        backlog: 64,
        on_full: BacklogFull::Cookie,
        tcp: TcpOpts {
            engine: bypass::stack::TcpEngine::Bypass,
            ..Default::default()
        },
    };
    let (w, port) = if v6 {
        setup6_with(tap, Echo, lopts)
    } else {
        setup(tap, Echo, lopts)
    };
    let to: SocketAddr = if v6 { (US6, 7).into() } else { (US, 7).into() };
    let mac = port.info().mac.0;
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (w, (times, flooded)) = with_running(w, || {
        std::thread::scope(|s| {
            let flood = s.spawn(|| {
                let raw = common::RawSender::open(tap);
                let mut sent = 0u64;
                let mut x = 0x2545_f491_4f6c_dd1du64;
                let t0 = std::time::Instant::now();
                // Bounded: at most 200,000 SYNs or 6 s.
                while !stop.load(std::sync::atomic::Ordering::Relaxed)
                    && sent < 200_000
                    && t0.elapsed() < Duration::from_secs(6)
                {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    // A unicast MAC nobody has: the SYN-ACKs go nowhere.
                    let src_mac = [
                        0x02,
                        0x66,
                        (x >> 8) as u8,
                        (x >> 16) as u8,
                        (x >> 24) as u8,
                        7,
                    ];
                    let syn = bypass::testing::syn(1024 + (x >> 32) as u16 % 60000, 7, x as u32);
                    let frame = if v6 {
                        let ends = bypass::testing::Ends6 {
                            src_mac,
                            dst_mac: mac,
                            src_ip: Ipv6Addr::new(
                                0xfd00,
                                0x66,
                                1,
                                0,
                                0,
                                0,
                                (x >> 40) as u16,
                                (x >> 48) as u16,
                            ),
                            dst_ip: US6,
                        };
                        bypass::testing::tcp6_vec(&ends, &syn)
                    } else {
                        let ends = bypass::testing::Ends {
                            src_mac,
                            dst_mac: mac,
                            src_ip: Ipv4Addr::new(
                                10,
                                66,
                                1 + (x >> 40) as u8 % 200,
                                (x >> 48) as u8,
                            ),
                            dst_ip: US,
                        };
                        bypass::testing::tcp_vec(&ends, &syn)
                    };
                    if raw.send(&frame) {
                        sent += 1;
                    }
                    // About 20,000 SYNs a second: hundreds of times what
                    // fills the backlog, yet within what the TAP's queue
                    // carries (a flood that overruns the device drops the
                    // real client's SYN before any stack sees it).
                    if sent % 100 == 0 {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
                sent
            });
            // Let the flood fill the backlog first.
            std::thread::sleep(Duration::from_millis(300));
            let mut times = Vec::new();
            for i in 0..10 {
                let t = std::time::Instant::now();
                let mut c = connect_to(to);
                let msg = format!("real client {i:02}");
                c.write_all(msg.as_bytes()).unwrap();
                let mut b = vec![0u8; msg.len()];
                c.read_exact(&mut b).unwrap();
                assert_eq!(b, msg.as_bytes());
                times.push(t.elapsed());
            }
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            (times, flood.join().unwrap())
        })
    });
    let st = w.stack().stats();
    eprintln!(
        "flood: {flooded} SYNs, {} SYN cookies sent, {} backlog full; real clients served in {:?}",
        st.syn_cookies_sent.get(),
        st.backlog_full.get(),
        times
    );
    assert!(flooded > 1000, "the flood ran: {flooded}");
    assert!(st.backlog_full.get() > 0, "the backlog was full");
    assert!(
        st.syn_cookies_sent.get() > 0,
        "cookies answered the overflow"
    );
    for (i, t) in times.iter().enumerate() {
        // The kernel retransmits a SYN after 1 s: under that, the first
        // SYN was answered.
        assert!(*t < Duration::from_millis(900), "client {i} took {t:?}");
    }
}

const KERNEL6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x66, 0, 0, 0, 0, 0, 1);
const US6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x66, 0, 0, 0, 0, 0, 2);

/// A dual-stack stack on a TAP in a private namespace whose kernel side
/// has 10.66.0.1/24 and fd00:66::1/64 (no duplicate address detection, so
/// the address is usable at once); the stack has 10.66.0.2/24 and
/// fd00:66::2/64 and echoes on port 7, on the process's default engine
/// (`BYPASS_TCP_ENGINE`; scripts/test.sh runs these on both).
fn setup6<A: TcpApp>(tap: &str, app: A) -> (TcpWorker<TapQueue, A>, TapPort) {
    setup6_with(tap, app, ListenOpts::default())
}

/// Checks that all `n` connections a stack opened ran on the engine the
/// process runs by default (the bypass engine's count is its own).
fn assert_on_default_engine(st: &bypass::stack::StackStats, n: u64) {
    let on_bypass = match TcpOpts::default().engine {
        bypass::stack::TcpEngine::Bypass => n,
        bypass::stack::TcpEngine::Smoltcp => 0,
    };
    assert_eq!(
        st.bypass_opened.get(),
        on_bypass,
        "connections on the bypass engine"
    );
}

/// [`setup6`] with the listener's settings.
fn setup6_with<A: TcpApp>(
    tap: &str,
    app: A,
    lopts: ListenOpts,
) -> (TcpWorker<TapQueue, A>, TapPort) {
    setup6_on(&TapConfig::new(tap), app, lopts)
}

/// [`setup6_with`] on a TAP opened as `cfg` says.
fn setup6_on<A: TcpApp>(
    cfg: &TapConfig,
    app: A,
    lopts: ListenOpts,
) -> (TcpWorker<TapQueue, A>, TapPort) {
    common::private_netns();
    let tap = cfg.name.as_str();
    let mut port = TapPort::open(cfg).unwrap();
    common::sh(&format!(
        "sysctl -qw net.ipv6.conf.all.disable_ipv6=0; sysctl -qw net.ipv6.conf.{tap}.disable_ipv6=0; \
         ip addr add {KERNEL}/24 dev {tap}; ip -6 addr add {KERNEL6}/64 dev {tap} nodad"
    ));
    let q = port.take_queues().pop().unwrap();
    let cfg = StackConfig::new(US, 24).with_addr(US6.into(), 64);
    let mut stack = Stack::new(q, port.info(), cfg, Instant(0)).unwrap();
    stack.listen(7, lopts).unwrap();
    (TcpWorker::new(stack, app), port)
}

#[test]
#[ignore = "needs root"]
fn ipv6_kernel_pings_and_its_clients_are_echoed_intact() {
    common::require_root("ipv6_kernel_pings_and_its_clients_are_echoed_intact");
    let (w, port) = setup6("bp6k0", Echo);
    let ll = bypass::stack::link_local(smoltcp::wire::EthernetAddress(port.info().mac.0));
    let (w, ()) = with_running(w, || {
        // Neighbour discovery, then echo replies.
        let ping = common::sh_out(&format!("ping -6 -c 5 -i 0.2 -W 2 {US6}"));
        assert!(ping.contains("5 received"), "{ping}");
        // Our link-local address answers too (scoped to the tap; the
        // kernel's own link-local source may still be in duplicate address
        // detection for a second: up to 5 s for two replies).
        let ping = common::sh_out(&format!("ping -6 -c 2 -i 0.2 -w 5 {ll}%bp6k0"));
        assert!(ping.contains("2 received"), "{ping}");
        // Kernel IPv6 clients, 8 at once, 256 KiB each, echoed intact.
        let to = SocketAddr::from((US6, 7));
        std::thread::scope(|s| {
            for t in 0..8u8 {
                s.spawn(move || {
                    let mut c = TcpStream::connect_timeout(&to, Duration::from_secs(5)).unwrap();
                    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                    let data: Vec<u8> = (0..256 * 1024u32)
                        .map(|i| (i.wrapping_mul(31) as u8) ^ t)
                        .collect();
                    let mut r = c.try_clone().unwrap();
                    let want = data.clone();
                    let reader = std::thread::spawn(move || {
                        let mut got = vec![0u8; want.len()];
                        r.read_exact(&mut got).unwrap();
                        assert!(got == want, "connection {t}: the echo differs");
                    });
                    c.write_all(&data).unwrap();
                    reader.join().unwrap();
                    c.shutdown(Shutdown::Write).unwrap();
                    let mut b = [0u8; 1];
                    assert_eq!(c.read(&mut b).unwrap(), 0, "EOF");
                });
            }
        });
        // IPv4 still served beside it.
        let mut s = connect();
        s.write_all(b"dual stack").unwrap();
        let mut b = [0u8; 10];
        s.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"dual stack");
    });
    let st = w.stack().stats();
    assert_eq!(st.accepted.get(), 9, "8 IPv6 and 1 IPv4 connections");
    assert_on_default_engine(st, 9);
    // The kernel's MLD reports and router solicitations go to groups we
    // are not in (not for us); nothing it sent was malformed.
    let bad = [
        st.drop_malformed.get(),
        st.drop_bad_checksum.get(),
        st.drop_bad_ext_header.get(),
        st.drop_fragment.get(),
        st.drop_unsupported.get(),
    ];
    assert_eq!(
        bad, [0; 5],
        "malformed, checksum, ext, fragment, unsupported"
    );
}

#[test]
#[ignore = "needs root"]
fn our_stack_connects_to_a_kernel_ipv6_server() {
    common::require_root("our_stack_connects_to_a_kernel_ipv6_server");
    let client = Client {
        remote: SocketAddr::from((KERNEL6, 9017)),
        started: false,
        got: vec![],
        closed: None,
    };
    let (w, _port) = setup6("bp6k1", client);
    let l = TcpListener::bind((KERNEL6, 9017)).unwrap();
    let (w, peer) = with_running(w, || echo_one_then_wait_for_fin(&l));
    assert_eq!(peer.ip(), std::net::IpAddr::V6(US6));
    assert_eq!(w.app().got, b"from userspace");
    assert_eq!(w.app().closed, Some(CloseReason::Normal));
    assert_eq!(w.stack().stats().connected.get(), 1);
    assert_on_default_engine(w.stack().stats(), 1);
}

#[test]
#[ignore = "needs root"]
fn a_thousand_concurrent_kernel_ipv6_connections_get_their_data_back() {
    common::require_root("a_thousand_concurrent_kernel_ipv6_connections_get_their_data_back");
    let lopts = ListenOpts {
        backlog: 2048,
        tcp: TcpOpts {
            rx_buf: 4096,
            tx_buf: 4096,
            ..TcpOpts::default()
        },
        ..Default::default()
    };
    let (w, _port) = setup6_with("bp6k2", Echo, lopts);
    let (w, ()) = with_running(w, || {
        echo_from_many_kernel_connections_to(SocketAddr::from((US6, 7)), 1000);
    });
    assert_eq!(w.stack().stats().accepted.get(), 1000);
    assert_eq!(w.stack().stats().reset.get(), 0);
    assert_on_default_engine(w.stack().stats(), 1000);
}

#[test]
#[ignore = "needs root"]
fn sixty_four_mebibytes_each_way_arrive_intact_over_ipv6() {
    common::require_root("sixty_four_mebibytes_each_way_arrive_intact_over_ipv6");
    let lopts = ListenOpts {
        tcp: TcpOpts {
            rx_buf: 256 * 1024,
            tx_buf: 256 * 1024,
            ..TcpOpts::default()
        },
        ..Default::default()
    };
    let (w, _port) = setup6_with("bp6k3", Echo, lopts);
    let (w, (sent_hash, got_hash)) =
        with_running(w, || through_and_back(SocketAddr::from((US6, 7))));
    assert_eq!(sent_hash, got_hash, "64 MiB over IPv6 and back, intact");
    let st = w.stack().stats();
    assert!(st.rx_bytes.get() >= TOTAL as u64 && st.tx_bytes.get() >= TOTAL as u64);
    assert_on_default_engine(st, 1);
}

/// Over a TAP with virtio-net headers and TSO, the bypass engine echoes
/// 64 MiB each way to a kernel client, over IPv4 then IPv6, intact; what
/// it sends leaves mostly as TSO frames of several MSS (which the kernel
/// takes whole), and the port refuses none of them.
#[test]
#[ignore = "needs root"]
fn a_bulk_echo_over_a_tso_tap_leaves_as_tso_frames_and_arrives_intact() {
    common::require_root("a_bulk_echo_over_a_tso_tap_leaves_as_tso_frames_and_arrives_intact");
    let lopts = ListenOpts {
        tcp: TcpOpts {
            rx_buf: 256 * 1024,
            tx_buf: 256 * 1024,
            ..TcpOpts::default()
        }
        .on(bypass::stack::TcpEngine::Bypass),
        ..Default::default()
    };
    let cfg = TapConfig {
        vnet: true,
        tso: true,
        ..TapConfig::new("bptso0")
    };
    let (w, port) = setup6_on(&cfg, Echo, lopts);
    let (w, hashes) = with_running(w, || {
        [
            through_and_back(SocketAddrV4::new(US, 7).into()),
            through_and_back(SocketAddr::from((US6, 7))),
        ]
    });
    for (family, (sent, got)) in ["IPv4", "IPv6"].iter().zip(hashes) {
        assert_eq!(sent, got, "64 MiB over {family} and back, intact");
    }
    let st = w.stack().stats();
    assert_eq!(st.bypass_opened.get(), 2);
    let (frames, segs) = (st.tso_frames.get(), st.tso_segments.get());
    eprintln!(
        "{frames} TSO frames carrying {segs} segments; {} frames sent in all",
        st.tx_packets.get()
    );
    let mss_segments = 2 * TOTAL as u64 / 1500;
    assert!(
        segs >= mss_segments / 2,
        "only {segs} of about {mss_segments} segments left in TSO frames"
    );
    assert!(
        segs >= 4 * frames,
        "TSO frames of {segs}/{frames} MSS on average"
    );
    assert_eq!(
        port.link_stats().tx_errors,
        0,
        "the port refused a TSO frame"
    );
}
