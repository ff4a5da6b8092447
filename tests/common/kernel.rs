//! Shared pieces of the kernel-interop tests (`tcp_kernel*.rs`): the
//! echo and client apps, TAP set-up in a private namespace, runners and
//! kernel-side helpers.

use bypass::app::tcp::{Conn, Ctx, TcpApp};
use bypass::port::tap::{TapConfig, TapPort, TapQueue};
use bypass::port::Port;
use bypass::runtime::{self, RunConfig, Stop, TcpWorker};
use bypass::stack::{BacklogFull, CloseReason, ListenOpts, Stack, StackConfig, TcpOpts};
use bypass::time::Instant;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::time::Duration;
// ---- two cores over a two-queue TAP ---------------------------------------
use bypass::stack::shard::{shards, ShardConfig};
use bypass::stack::StackStats;

pub const KERNEL: Ipv4Addr = Ipv4Addr::new(10, 66, 0, 1);

pub const US: Ipv4Addr = Ipv4Addr::new(10, 66, 0, 2);

/// Echoes; aborts (RST) a connection that sends "RST!", closes on "BYE!".
pub struct Echo;

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
pub fn setup<A: TcpApp>(tap: &str, app: A, lopts: ListenOpts) -> (TcpWorker<TapQueue, A>, TapPort) {
    super::private_netns();
    let mut port = TapPort::open(&TapConfig::new(tap)).unwrap();
    super::sh(&format!(
        "sysctl -qw net.ipv6.conf.all.disable_ipv6=1; ip addr add {KERNEL}/24 dev {tap}"
    ));
    let q = port.take_queues().pop().unwrap();
    let mut stack = Stack::new(q, port.info(), StackConfig::new(US, 24), Instant(0)).unwrap();
    stack.listen(7, lopts).unwrap();
    (TcpWorker::new(stack, app), port)
}

/// Runs the worker on a core thread while `f` runs here; returns the worker.
pub fn with_running<A: TcpApp, R>(
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
        let g = StopOnDrop(stop.clone());
        let r = f();
        drop(g);
        (h.join().unwrap(), r)
    })
}

/// Opens `n` kernel connections at once, has each send its own message and
/// checks each gets it back, then closes them all in order (EOF each).
pub fn echo_from_many_kernel_connections(n: usize) {
    echo_from_many_kernel_connections_to(SocketAddrV4::new(US, 7).into(), n)
}

/// [`echo_from_many_kernel_connections`] to `to`.
pub fn echo_from_many_kernel_connections_to(to: SocketAddr, n: usize) {
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

pub fn connect() -> TcpStream {
    connect_to(SocketAddrV4::new(US, 7).into())
}

pub fn connect_to(to: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&to, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

pub fn fnv(h: &mut u64, data: &[u8]) {
    for b in data {
        *h ^= *b as u64;
        *h = h.wrapping_mul(0x100000001b3);
    }
}

pub const TOTAL: usize = 64 << 20;

/// Sends [`TOTAL`] bytes to the echo server at `to` while reading them
/// back; returns the hashes of what was sent and what came back. Fails if
/// nothing comes back for 10 s; after 2 s without progress it prints the
/// kernel end's view of the connection (`ss -tino`, `nstat`), so a stall
/// that does recover is still explained in the test's output.
pub fn through_and_back(to: SocketAddr) -> (u64, u64) {
    {
        let s = connect_to(to);
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
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
        let mut last = std::time::Instant::now();
        let mut said = false;
        while got < TOTAL {
            let n = match r.read(&mut buf) {
                Ok(n) => n,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    let quiet = last.elapsed();
                    // A local link loses frames only to full queues, and
                    // a good TCP recovers from that in well under a second.
                    assert!(
                        quiet < Duration::from_secs(10),
                        "no echo for 10 s after {got} bytes"
                    );
                    if quiet > Duration::from_secs(2) && !said {
                        // What the kernel's end sees of the stall (its
                        // window, retransmissions and timers).
                        said = true;
                        let ss = super::sh("ss -tino; nstat -az | grep -Ei 'retrans|timeout|loss|drop|prune|collapse|zerowin' || true");
                        eprintln!(
                            "stalled {quiet:?} after {got} bytes:\n{}",
                            String::from_utf8_lossy(&ss.stdout)
                        );
                    }
                    continue;
                }
                Err(e) => panic!("read after {got} bytes: {e}"),
            };
            assert!(n > 0, "EOF after {got} bytes");
            if said {
                eprintln!("progress again after {:?}", last.elapsed());
                said = false;
            }
            last = std::time::Instant::now();
            fnv(&mut h, &buf[..n]);
            got += n;
        }
        (writer.join().unwrap(), h)
    }
}

/// Our stack as the client: connects to a kernel echo server, sends a
/// message, checks the echo, closes.
pub struct Client {
    pub remote: SocketAddr,
    pub started: bool,
    pub got: Vec<u8>,
    pub closed: Option<CloseReason>,
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
pub fn echo_one_then_wait_for_fin(l: &TcpListener) -> SocketAddr {
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

/// Non-blocking connect with std only (no extra crates): a raw socket fd.
pub mod socket2_free {
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

/// A two-queue TAP in a fresh namespace, one sharded stack per queue
/// (software steering: the kernel picks TAP queues by its own hash), each
/// listening on 7 and running the app `make(core)` gives.
pub fn setup_two_cores<A: TcpApp>(
    tap: &str,
    lopts: ListenOpts,
    mut make: impl FnMut(usize) -> A,
) -> (Vec<TcpWorker<TapQueue, A>>, TapPort) {
    super::private_netns();
    let mut cfg = TapConfig::new(tap);
    cfg.queues = 2;
    let mut port = TapPort::open(&cfg).unwrap();
    super::sh(&format!(
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
pub fn with_running_all<A: TcpApp, R>(
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
        let g = StopOnDrop(stop.clone());
        let r = f();
        drop(g);
        (h.join().unwrap(), r)
    })
}

pub fn stats_of<A: TcpApp>(ws: &[TcpWorker<TapQueue, A>]) -> Vec<&StackStats> {
    ws.iter().map(|w| &**w.stack().stats()).collect()
}

/// Our side as the client on every core: `want` connections to the kernel,
/// one message each, checked and closed.
pub struct ManyClients {
    pub remote: SocketAddrV4,
    pub want: usize,
    pub opened: usize,
    pub echoed: usize,
    pub closed: usize,
    pub failed: usize,
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

/// Spoofed SYNs from addresses that never answer fill the backlog; SYN
/// cookies (the bypass engine's policy for a full backlog) keep nothing
/// for them, so a real client's first SYN is answered and it is served at
/// once. (smoltcp cannot make a socket with a chosen ISN: with it the
/// client waits for its SYN retransmission, 1 s or more; so the listener
/// is on the bypass engine whatever the process's default.)
pub fn kernel_clients_during_a_syn_flood(tap: &str, v6: bool) {
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
                let raw = super::RawSender::open(tap);
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

pub const KERNEL6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x66, 0, 0, 0, 0, 0, 1);

pub const US6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x66, 0, 0, 0, 0, 0, 2);

/// A dual-stack stack on a TAP in a private namespace whose kernel side
/// has 10.66.0.1/24 and fd00:66::1/64 (no duplicate address detection, so
/// the address is usable at once); the stack has 10.66.0.2/24 and
/// fd00:66::2/64 and echoes on port 7, on the process's default engine
/// (`BYPASS_TCP_ENGINE`; scripts/test.sh runs these on both).
pub fn setup6<A: TcpApp>(tap: &str, app: A) -> (TcpWorker<TapQueue, A>, TapPort) {
    setup6_with(tap, app, ListenOpts::default())
}

/// Checks that all `n` connections a stack opened ran on the engine the
/// process runs by default (the bypass engine's count is its own).
pub fn assert_on_default_engine(st: &bypass::stack::StackStats, n: u64) {
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
pub fn setup6_with<A: TcpApp>(
    tap: &str,
    app: A,
    lopts: ListenOpts,
) -> (TcpWorker<TapQueue, A>, TapPort) {
    setup6_on(&TapConfig::new(tap), app, lopts)
}

/// [`setup6_with`] on a TAP opened as `cfg` says.
pub fn setup6_on<A: TcpApp>(
    cfg: &TapConfig,
    app: A,
    lopts: ListenOpts,
) -> (TcpWorker<TapQueue, A>, TapPort) {
    super::private_netns();
    let tap = cfg.name.as_str();
    let mut port = TapPort::open(cfg).unwrap();
    super::sh(&format!(
        "sysctl -qw net.ipv6.conf.all.disable_ipv6=0; sysctl -qw net.ipv6.conf.{tap}.disable_ipv6=0; \
         ip addr add {KERNEL}/24 dev {tap}; ip -6 addr add {KERNEL6}/64 dev {tap} nodad"
    ));
    let q = port.take_queues().pop().unwrap();
    let cfg = StackConfig::new(US, 24).with_addr(US6.into(), 64);
    let mut stack = Stack::new(q, port.info(), cfg, Instant(0)).unwrap();
    stack.listen(7, lopts).unwrap();
    (TcpWorker::new(stack, app), port)
}

/// Stops the run when dropped, so a failing check in the test body still
/// ends the stack's threads.
pub struct StopOnDrop(pub Stop);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.set();
    }
}
