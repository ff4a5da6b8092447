//! The kernel baseline: any [`TcpApp`] driven over kernel TCP sockets with
//! plain epoll (nonblocking sockets, edge-triggered, `TCP_NODELAY`), so the
//! benchmarks run the very same server and load-generator state machines
//! on both stacks.
//!
//! [`EpollWorker`] is a runtime [`Worker`]: one iteration waits on epoll,
//! accepts, connects, reads and writes, and calls the application exactly
//! as `TcpWorker` does. How it waits is the baseline's [`Wait`]:
//!
//! - [`Wait::Block`] (`kernel-epoll`): without blocking while there is
//!   work, up to 1 ms when idle, as an event loop that does not spin;
//! - [`Wait::Spin`] (`kernel-busypoll`): `epoll_wait(…, 0)` always, so the
//!   thread spins like ours, with `SO_BUSY_POLL` (50 µs) on every socket
//!   (it only acts on devices with NAPI polling, so not on loopback).
//!
//! Timestamps handed to the application are taken *after* `epoll_wait`
//! returns: a wait that blocked moves `now` forward by the time it slept.
//!
//! The system calls without a safe std equivalent (epoll, a nonblocking
//! `connect`, `SO_LINGER`, a deeper listen backlog) are the only `unsafe`
//! code of the tool; each block states why it is sound.
#![allow(unsafe_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use bypass::app::tcp::{Conn, ConnOps, Ctx, TcpApp};
use bypass::runtime::Worker;
use bypass::stack::{CloseReason, ConnId, UdpId};
use bypass::time::Instant;
use bypass::{Error, Result};

const LISTENER: u64 = u64::MAX;
const MAX_EVENTS: usize = 256;
const READ_CHUNK: usize = 64 * 1024;
/// Most accepts per iteration.
const ACCEPT_BURST: usize = 256;
/// `SO_BUSY_POLL` of [`Wait::Spin`], microseconds.
const BUSY_POLL_US: i32 = 50;

/// How an [`EpollWorker`] waits for events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Up to 1 ms in `epoll_wait` when the last iteration found no work.
    Block,
    /// Never block; `SO_BUSY_POLL` on every socket.
    Spin,
}

pub(super) fn os_err(what: &str) -> Error {
    Error::io(what, std::io::Error::last_os_error())
}

/// An epoll instance.
struct Epoll(OwnedFd);

impl Epoll {
    fn new() -> Result<Epoll> {
        // SAFETY: epoll_create1 takes no pointers; a non-negative result is a
        // fresh descriptor that we own from here on.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(os_err("epoll_create1"));
        }
        // SAFETY: `fd` is a valid descriptor owned by nobody else.
        Ok(Epoll(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    fn add(&self, fd: RawFd, events: u32, token: u64) -> Result<()> {
        let mut ev = libc::epoll_event { events, u64: token };
        // SAFETY: `ev` is a valid epoll_event for the duration of the call;
        // both descriptors are open.
        let r = unsafe { libc::epoll_ctl(self.0.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) };
        if r < 0 {
            return Err(os_err("epoll_ctl"));
        }
        Ok(())
    }

    /// Waits up to `timeout_ms`; returns how many entries of `out` are set.
    fn wait(&self, out: &mut [libc::epoll_event], timeout_ms: i32) -> usize {
        // SAFETY: `out` is valid for `out.len()` writes of epoll_event.
        let n = unsafe {
            libc::epoll_wait(
                self.0.as_raw_fd(),
                out.as_mut_ptr(),
                out.len() as i32,
                timeout_ms,
            )
        };
        n.max(0) as usize
    }
}

pub(super) fn set_int_opt(fd: RawFd, level: i32, name: i32, v: i32) -> Result<()> {
    // SAFETY: the option value is a live i32 of the length passed.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            &v as *const i32 as *const libc::c_void,
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(os_err("setsockopt"));
    }
    Ok(())
}

/// Makes `close` send a RST (SO_LINGER with a zero timeout).
pub(super) fn set_linger_zero(fd: RawFd) {
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: `l` is a live linger struct of the length passed.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &l as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

/// A fresh nonblocking TCP socket of `to`'s family, with `TCP_NODELAY`.
pub(super) fn tcp_socket(to: &SocketAddr) -> Result<OwnedFd> {
    let domain = if to.is_ipv6() {
        libc::AF_INET6
    } else {
        libc::AF_INET
    };
    // SAFETY: socket() takes no pointers.
    let fd = unsafe {
        libc::socket(
            domain,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(os_err("socket"));
    }
    // SAFETY: `fd` is a fresh descriptor we own; OwnedFd closes it on error.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    set_int_opt(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, 1)?;
    Ok(owned)
}

/// A socket address as the kernel takes it: a `sockaddr_in` or a
/// `sockaddr_in6`, with its length.
pub(super) struct RawAddr {
    storage: libc::sockaddr_storage,
    len: libc::socklen_t,
}

impl RawAddr {
    pub(super) fn new(to: SocketAddr) -> RawAddr {
        // SAFETY: sockaddr_storage is plain data; all zeroes is valid.
        let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let len = match to {
            SocketAddr::V4(a) => {
                let sa = libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: a.port().to_be(),
                    sin_addr: libc::in_addr {
                        s_addr: u32::from(*a.ip()).to_be(),
                    },
                    sin_zero: [0; 8],
                };
                // SAFETY: sockaddr_storage is larger than and aligned for
                // sockaddr_in.
                unsafe { std::ptr::write(&mut storage as *mut _ as *mut libc::sockaddr_in, sa) };
                std::mem::size_of::<libc::sockaddr_in>()
            }
            SocketAddr::V6(a) => {
                let sa = libc::sockaddr_in6 {
                    sin6_family: libc::AF_INET6 as libc::sa_family_t,
                    sin6_port: a.port().to_be(),
                    sin6_flowinfo: a.flowinfo().to_be(),
                    sin6_addr: libc::in6_addr {
                        s6_addr: a.ip().octets(),
                    },
                    sin6_scope_id: a.scope_id(),
                };
                // SAFETY: sockaddr_storage is larger than and aligned for
                // sockaddr_in6.
                unsafe { std::ptr::write(&mut storage as *mut _ as *mut libc::sockaddr_in6, sa) };
                std::mem::size_of::<libc::sockaddr_in6>()
            }
        };
        RawAddr {
            storage,
            len: len as libc::socklen_t,
        }
    }

    /// The address for the kernel (valid while `self` is).
    pub(super) fn as_ptr(&self) -> *const libc::sockaddr {
        &self.storage as *const libc::sockaddr_storage as *const libc::sockaddr
    }

    /// Its length.
    pub(super) fn len(&self) -> libc::socklen_t {
        self.len
    }
}

/// Starts a nonblocking connect to `to`.
fn connect_nonblocking(to: SocketAddr) -> Result<TcpStream> {
    let owned = tcp_socket(&to)?;
    let fd = owned.as_raw_fd();
    let sa = RawAddr::new(to);
    // SAFETY: `sa` is a valid socket address of the length passed.
    let r = unsafe { libc::connect(fd, sa.as_ptr(), sa.len()) };
    if r < 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINPROGRESS) {
            return Err(Error::io("connect", e));
        }
    }
    Ok(TcpStream::from(owned))
}

/// A listening socket on `addr` with a backlog of 4096 (std's is smaller).
pub fn listen(addr: SocketAddr) -> Result<TcpListener> {
    let l = TcpListener::bind(addr).map_err(|e| Error::io("bind", e))?;
    l.set_nonblocking(true)
        .map_err(|e| Error::io("set_nonblocking", e))?;
    // SAFETY: listen() on our own open socket; calling it again only
    // changes the backlog.
    if unsafe { libc::listen(l.as_raw_fd(), 4096) } < 0 {
        return Err(os_err("listen"));
    }
    Ok(l)
}

struct Sock {
    stream: TcpStream,
    connecting: bool,
    peer_closed: bool,
    we_closed: bool,
    want_write: bool,
    /// Received bytes the application has not consumed yet.
    rx: Vec<u8>,
}

struct Slot {
    gen: u32,
    sock: Option<Sock>,
}

/// The sockets, as [`ConnOps`] for the application's callbacks.
struct Kernel {
    ep: Epoll,
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// Connections that ended inside a callback, told after it.
    gone: Vec<(ConnId, CloseReason)>,
    failed: Vec<ConnId>,
    open: usize,
    wait: Wait,
}

impl Kernel {
    fn live(&mut self, id: ConnId) -> Option<&mut Sock> {
        let s = self.slots.get_mut(id.idx as usize)?;
        if s.gen != id.gen {
            return None;
        }
        s.sock.as_mut()
    }

    fn insert(&mut self, stream: TcpStream, connecting: bool) -> Result<ConnId> {
        let idx = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(Slot { gen: 0, sock: None });
                (self.slots.len() - 1) as u32
            }
        };
        let gen = self.slots[idx as usize].gen;
        let token = ((idx as u64) << 32) | gen as u64;
        let ev = (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32;
        if self.wait == Wait::Spin {
            // Best effort: it needs CAP_NET_ADMIN above the sysctl default
            // and acts only where the device polls with NAPI.
            let _ = set_int_opt(
                stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_BUSY_POLL,
                BUSY_POLL_US,
            );
        }
        if let Err(e) = self.ep.add(stream.as_raw_fd(), ev, token) {
            self.free.push(idx);
            return Err(e);
        }
        self.slots[idx as usize].sock = Some(Sock {
            stream,
            connecting,
            peer_closed: false,
            we_closed: false,
            want_write: false,
            rx: Vec::new(),
        });
        self.open += 1;
        Ok(ConnId { idx, gen })
    }

    /// Drops the socket (closing the descriptor removes it from epoll).
    fn remove(&mut self, id: ConnId) -> Option<Sock> {
        let s = self.slots.get_mut(id.idx as usize)?;
        if s.gen != id.gen {
            return None;
        }
        let sock = s.sock.take()?;
        s.gen = s.gen.wrapping_add(1);
        self.free.push(id.idx);
        self.open -= 1;
        Some(sock)
    }
}

impl ConnOps for Kernel {
    fn send(&mut self, id: ConnId, data: &[u8]) -> usize {
        let Some(s) = self.live(id) else { return 0 };
        if s.we_closed || data.is_empty() {
            return 0;
        }
        match (&s.stream).write(data) {
            Ok(n) => {
                if n < data.len() {
                    s.want_write = true;
                }
                n
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                s.want_write = true;
                0
            }
            Err(_) => 0, // the read side sees the reset
        }
    }
    fn send_room(&mut self, id: ConnId) -> usize {
        match self.live(id) {
            Some(s) if !s.we_closed => READ_CHUNK,
            _ => 0,
        }
    }
    fn close(&mut self, id: ConnId) {
        let Some(s) = self.live(id) else { return };
        if s.we_closed {
            return;
        }
        s.we_closed = true;
        let _ = s.stream.shutdown(Shutdown::Write);
        if s.peer_closed {
            self.remove(id);
            self.gone.push((id, CloseReason::Normal));
        }
    }
    fn abort(&mut self, id: ConnId) {
        if let Some(s) = self.remove(id) {
            set_linger_zero(s.stream.as_raw_fd());
            drop(s);
            self.gone.push((id, CloseReason::Reset));
        }
    }
    fn endpoints(&mut self, id: ConnId) -> Option<(SocketAddr, SocketAddr)> {
        let s = self.live(id)?;
        Some((s.stream.local_addr().ok()?, s.stream.peer_addr().ok()?))
    }
    fn connect(&mut self, remote: SocketAddr) -> Result<ConnId> {
        let st = connect_nonblocking(remote)?;
        self.insert(st, true)
    }
    fn udp_send(&mut self, _sock: UdpId, _to: SocketAddr, _data: &[u8]) -> bool {
        false
    }
}

/// Tells the application about the connections that failed to open and
/// those that ended during the last callbacks (shared by the kernel
/// baselines' workers).
pub(super) fn settle<A: TcpApp>(
    app: &mut A,
    states: &mut [Option<A::Conn>],
    failed: &mut Vec<ConnId>,
    gone: &mut Vec<(ConnId, CloseReason)>,
) {
    for id in std::mem::take(failed) {
        app.on_connect_failed(id);
    }
    while let Some((id, reason)) = gone.pop() {
        if let Some(st) = states.get_mut(id.idx as usize).and_then(Option::take) {
            app.on_close(st, reason);
        }
    }
}

/// Keeps a new connection's application state in its slot.
pub(super) fn keep_state<C>(states: &mut Vec<Option<C>>, id: ConnId, st: C) {
    let i = id.idx as usize;
    if states.len() <= i {
        states.resize_with(i + 1, || None);
    }
    states[i] = Some(st);
}

/// One core's application over kernel sockets.
pub struct EpollWorker<A: TcpApp> {
    k: Kernel,
    app: A,
    listener: Option<TcpListener>,
    states: Vec<Option<A::Conn>>,
    events: Vec<libc::epoll_event>,
    buf: Vec<u8>,
    idle: bool,
    /// Most open sockets at once.
    pub peak_open: usize,
    /// accept/socket failures (e.g. out of descriptors).
    pub sys_errors: u64,
}

impl<A: TcpApp> EpollWorker<A> {
    /// A worker running `app`, accepting on `listener` if given, waiting
    /// as `wait` says.
    pub fn new(app: A, listener: Option<TcpListener>, wait: Wait) -> Result<Self> {
        let ep = Epoll::new()?;
        if let Some(l) = &listener {
            ep.add(l.as_raw_fd(), libc::EPOLLIN as u32, LISTENER)?;
        }
        Ok(EpollWorker {
            k: Kernel {
                ep,
                slots: Vec::new(),
                free: Vec::new(),
                gone: Vec::new(),
                failed: Vec::new(),
                open: 0,
                wait,
            },
            app,
            listener,
            states: Vec::new(),
            events: vec![libc::epoll_event { events: 0, u64: 0 }; MAX_EVENTS],
            buf: vec![0; READ_CHUNK],
            idle: false,
            peak_open: 0,
            sys_errors: 0,
        })
    }

    /// The application.
    pub fn app(&self) -> &A {
        &self.app
    }

    fn settle(&mut self) {
        settle(
            &mut self.app,
            &mut self.states,
            &mut self.k.failed,
            &mut self.k.gone,
        );
        self.peak_open = self.peak_open.max(self.k.open);
    }

    fn opened(&mut self, id: ConnId, now: Instant) {
        let st = self.app.on_open(&mut Conn::new(&mut self.k, id, now));
        keep_state(&mut self.states, id, st);
    }

    fn accept(&mut self, now: Instant) -> usize {
        let mut n = 0;
        while n < ACCEPT_BURST {
            let Some(l) = &self.listener else { return n };
            match l.accept() {
                Ok((s, _)) => {
                    n += 1;
                    if s.set_nonblocking(true).is_err() || s.set_nodelay(true).is_err() {
                        self.sys_errors += 1;
                        continue;
                    }
                    match self.k.insert(s, false) {
                        Ok(id) => self.opened(id, now),
                        Err(_) => self.sys_errors += 1,
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => {
                    // EMFILE and friends: count, try again next time.
                    self.sys_errors += 1;
                    break;
                }
            }
        }
        n
    }

    /// Offers buffered and new bytes to the application.
    fn read(&mut self, id: ConnId, now: Instant) {
        loop {
            let Some(s) = self.k.live(id) else { return };
            if s.peer_closed {
                return;
            }
            let r = if s.rx.is_empty() {
                (&s.stream).read(&mut self.buf)
            } else {
                let n = s.rx.len().min(self.buf.len());
                self.buf[..n].copy_from_slice(&s.rx[..n]);
                s.rx.drain(..n);
                Ok(n)
            };
            match r {
                Ok(0) => {
                    s.peer_closed = true;
                    let we_closed = s.we_closed;
                    if we_closed {
                        self.k.remove(id);
                        self.k.gone.push((id, CloseReason::Normal));
                    } else if let Some(Some(st)) = self.states.get_mut(id.idx as usize) {
                        self.app
                            .on_peer_closed(st, &mut Conn::new(&mut self.k, id, now));
                    }
                    return;
                }
                Ok(n) => {
                    let Some(Some(st)) = self.states.get_mut(id.idx as usize) else {
                        return;
                    };
                    let used = self
                        .app
                        .on_data(st, &mut Conn::new(&mut self.k, id, now), &self.buf[..n])
                        .min(n);
                    if used < n {
                        if let Some(s) = self.k.live(id) {
                            // Put the rest back in front of what was kept.
                            let mut rest = self.buf[used..n].to_vec();
                            rest.append(&mut s.rx);
                            s.rx = rest;
                        }
                        return;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => {
                    self.k.remove(id);
                    self.k.gone.push((id, CloseReason::Reset));
                    return;
                }
            }
        }
    }

    fn handle(&mut self, token: u64, ev: u32, now: Instant) {
        let id = ConnId {
            idx: (token >> 32) as u32,
            gen: token as u32,
        };
        let Some(s) = self.k.live(id) else { return };
        let err = ev & (libc::EPOLLERR | libc::EPOLLHUP) as u32 != 0;
        if s.connecting {
            if ev & (libc::EPOLLOUT as u32) == 0 && !err {
                return;
            }
            let failed = matches!(s.stream.take_error(), Ok(Some(_)) | Err(_))
                || (err && ev & libc::EPOLLOUT as u32 == 0);
            if failed {
                self.k.remove(id);
                self.k.failed.push(id);
                return;
            }
            s.connecting = false;
            self.opened(id, now);
        }
        if ev & (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLERR | libc::EPOLLHUP) as u32 != 0 {
            self.read(id, now);
        }
        if ev & libc::EPOLLOUT as u32 != 0 {
            if let Some(s) = self.k.live(id) {
                if s.want_write {
                    s.want_write = false;
                    if let Some(Some(st)) = self.states.get_mut(id.idx as usize) {
                        self.app
                            .on_writable(st, &mut Conn::new(&mut self.k, id, now));
                    }
                    // Bytes held back by a short send are offered again.
                    if self.k.live(id).is_some_and(|s| !s.rx.is_empty()) {
                        self.read(id, now);
                    }
                }
            }
        }
    }
}

impl<A: TcpApp> Worker for EpollWorker<A> {
    fn poll(&mut self, now: Instant) -> usize {
        let timeout = if self.idle && self.k.wait == Wait::Block {
            1
        } else {
            0
        };
        let before = std::time::Instant::now();
        let n = self.k.ep.wait(&mut self.events, timeout);
        // The runtime read `now` before this call; a wait that blocked
        // would hand the application a time up to 1 ms stale.
        let now = if timeout > 0 {
            Instant(now.0 + before.elapsed().as_micros() as u64)
        } else {
            now
        };
        let mut work = n;
        for i in 0..n {
            let (token, ev) = (self.events[i].u64, self.events[i].events);
            if token == LISTENER {
                work += self.accept(now);
            } else {
                self.handle(token, ev, now);
            }
            self.settle();
        }
        work += self.app.poll(&mut Ctx::new(&mut self.k, now));
        self.settle();
        self.idle = work == 0;
        work
    }

    fn finish(&mut self, _now: Instant) {
        for s in &mut self.k.slots {
            s.sock = None;
        }
    }
}
