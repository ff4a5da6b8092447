//! The `kernel-io_uring` baseline: any [`TcpApp`] driven over kernel TCP
//! sockets through io_uring, the way a performance engineer would write
//! it today:
//!
//! - **multishot accept**: one `ACCEPT` request yields every connection;
//! - **multishot receive with a provided-buffer ring**: one `RECV` per
//!   connection yields every segment, each into a buffer the kernel picks
//!   from a ring we refill, so there is no per-connection receive buffer
//!   and no re-arming per read;
//! - **send**: the application's bytes are staged per connection (at most
//!   [`TX_STAGE`] bytes, like a socket's user-space buffer) and sent with
//!   one `SEND` in flight per connection;
//! - **connect** (load generator) with `CONNECT`.
//!
//! The loop never blocks: every iteration submits what was queued and
//! reaps what completed, spinning like ours and like `kernel-busypoll`.
//! Timestamps are taken by the runtime just before each iteration.
//!
//! Buffers shared with the kernel (the provided-buffer ring and its
//! buffers, the staged send bytes, the connect addresses) live at stable
//! heap addresses until the requests that use them complete; each
//! `unsafe` block says why.
#![allow(unsafe_code)]

use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::{cqueue, opcode, squeue, types, IoUring};

use bypass::app::tcp::{Conn, ConnOps, Ctx, TcpApp};
use bypass::runtime::Worker;
use bypass::stack::{CloseReason, ConnId, UdpId};
use bypass::time::Instant;
use bypass::{Error, Result};

use super::epoll::{keep_state, os_err, set_linger_zero, settle, tcp_socket, RawAddr};

/// Submission queue entries (the completion queue is twice as deep).
const RING_ENTRIES: u32 = 4096;
/// Provided receive buffers and their size.
const RX_BUFS: u16 = 4096;
const RX_BUF_SIZE: usize = 2048;
/// The buffer group of the receive ring.
const BGID: u16 = 0;
/// Most bytes staged for sending per connection.
pub const TX_STAGE: usize = 16 * 1024;

const OP_ACCEPT: u64 = 1;
const OP_RECV: u64 = 2;
const OP_SEND: u64 = 3;
const OP_CONNECT: u64 = 4;
const OP_CANCEL: u64 = 5;

/// `user_data`: operation (8 bits), generation (24 bits), slot (32 bits).
fn tag(op: u64, id: ConnId) -> u64 {
    (op << 56) | (((id.gen as u64) & 0xff_ffff) << 32) | id.idx as u64
}

fn untag(ud: u64) -> (u64, u32, u32) {
    (ud >> 56, ((ud >> 32) & 0xff_ffff) as u32, ud as u32)
}

/// The provided-buffer ring: `RX_BUFS` entries in page-aligned memory the
/// kernel reads, and the buffers they point to.
struct BufRing {
    entries: *mut types::BufRingEntry,
    map_len: usize,
    mem: Box<[u8]>,
    tail: u16,
}

impl BufRing {
    fn new() -> Result<BufRing> {
        let map_len = RX_BUFS as usize * std::mem::size_of::<types::BufRingEntry>();
        // SAFETY: an anonymous private mapping; no pointer is passed in.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(os_err("mmap the buffer ring"));
        }
        let mut r = BufRing {
            entries: p.cast(),
            map_len,
            mem: vec![0u8; RX_BUFS as usize * RX_BUF_SIZE].into_boxed_slice(),
            tail: 0,
        };
        for bid in 0..RX_BUFS {
            r.stage(bid);
        }
        r.publish();
        Ok(r)
    }

    /// Puts buffer `bid` in the next free entry (visible after `publish`).
    fn stage(&mut self, bid: u16) {
        let idx = (self.tail & (RX_BUFS - 1)) as usize;
        // SAFETY: `idx < RX_BUFS`, inside the mapping; the kernel only reads
        // entries at or after the published tail's predecessor window, and
        // this one is past the tail we published.
        let e = unsafe { &mut *self.entries.add(idx) };
        let addr = self.mem[bid as usize * RX_BUF_SIZE..].as_ptr() as u64;
        e.set_addr(addr);
        e.set_len(RX_BUF_SIZE as u32);
        e.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Makes the staged entries visible to the kernel.
    fn publish(&mut self) {
        // SAFETY: `entries` is the ring's base; the tail field overlays
        // entry 0's reserved field, a u16 the kernel reads atomically.
        let tail = unsafe { types::BufRingEntry::tail(self.entries) } as *const AtomicU16;
        // SAFETY: the pointer is valid and aligned for u16 for the life of
        // the mapping.
        unsafe { &*tail }.store(self.tail, Ordering::Release);
    }

    fn data(&self, bid: u16, len: usize) -> &[u8] {
        let start = bid as usize * RX_BUF_SIZE;
        &self.mem[start..start + len.min(RX_BUF_SIZE)]
    }
}

// SAFETY: the mapping is owned by this value alone (no alias is kept
// elsewhere in the process; the kernel's use is tied to the ring, which
// moves with the worker), so moving it to the core thread is sound.
unsafe impl Send for BufRing {}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unregistered from the ring
        // before (the worker unregisters it in its own drop).
        unsafe { libc::munmap(self.entries.cast(), self.map_len) };
    }
}

struct Sock {
    fd: OwnedFd,
    connecting: bool,
    /// Operations in flight that name this slot.
    ops: u32,
    recv_armed: bool,
    send_inflight: bool,
    peer_closed: bool,
    we_closed: bool,
    /// Shut the write side once the staged bytes are out.
    shut_pending: bool,
    /// Ended for the application; the descriptor closes when `ops` is 0.
    dead: bool,
    want_write: bool,
    /// Staged bytes; its capacity is reserved up front so the address the
    /// kernel reads from never moves while a SEND is in flight.
    tx: Vec<u8>,
    /// Received bytes the application has not consumed yet.
    rx: Vec<u8>,
    /// The connect address, alive until CONNECT completes.
    addr: Option<Box<RawAddr>>,
}

struct Slot {
    gen: u32,
    sock: Option<Sock>,
}

/// The ring and the sockets, as [`ConnOps`] for the application.
struct Kernel {
    ring: IoUring,
    slots: Vec<Slot>,
    free: Vec<u32>,
    gone: Vec<(ConnId, CloseReason)>,
    failed: Vec<ConnId>,
    open: usize,
    sys_errors: u64,
}

impl Kernel {
    fn push(&mut self, e: squeue::Entry) {
        loop {
            // SAFETY: every buffer an entry names outlives its request (see
            // the module doc and each caller).
            if unsafe { self.ring.submission().push(&e) }.is_ok() {
                return;
            }
            // Full: hand what is queued to the kernel and retry.
            if self.ring.submit().is_err() {
                self.sys_errors += 1;
            }
        }
    }

    fn live(&mut self, id: ConnId) -> Option<&mut Sock> {
        let s = self.slots.get_mut(id.idx as usize)?;
        if s.gen != id.gen {
            return None;
        }
        s.sock.as_mut().filter(|s| !s.dead)
    }

    fn insert(&mut self, fd: OwnedFd, connecting: bool) -> ConnId {
        let idx = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(Slot { gen: 0, sock: None });
                (self.slots.len() - 1) as u32
            }
        };
        let gen = self.slots[idx as usize].gen;
        self.slots[idx as usize].sock = Some(Sock {
            fd,
            connecting,
            ops: 0,
            recv_armed: false,
            send_inflight: false,
            peer_closed: false,
            we_closed: false,
            shut_pending: false,
            dead: false,
            want_write: false,
            tx: Vec::new(),
            rx: Vec::new(),
            addr: None,
        });
        self.open += 1;
        ConnId { idx, gen }
    }

    fn arm_recv(&mut self, id: ConnId) {
        let Some(s) = self.live(id) else { return };
        if s.recv_armed || s.peer_closed {
            return;
        }
        s.recv_armed = true;
        s.ops += 1;
        let fd = s.fd.as_raw_fd();
        let e = opcode::RecvMulti::new(types::Fd(fd), BGID)
            .build()
            .user_data(tag(OP_RECV, id));
        self.push(e);
    }

    fn start_send(&mut self, id: ConnId) {
        let Some(s) = self.live(id) else { return };
        if s.send_inflight || s.tx.is_empty() {
            return;
        }
        s.send_inflight = true;
        s.ops += 1;
        let (fd, ptr, len) = (s.fd.as_raw_fd(), s.tx.as_ptr(), s.tx.len() as u32);
        // The staged bytes stay put until the SEND completes: `tx` only
        // grows within its reserved capacity meanwhile, and is drained in
        // the completion.
        let e = opcode::Send::new(types::Fd(fd), ptr, len)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(tag(OP_SEND, id));
        self.push(e);
    }

    fn shut_write(&mut self, id: ConnId) {
        if let Some(s) = self.live(id) {
            // SAFETY: shutdown() on our own open socket; no pointers.
            unsafe { libc::shutdown(s.fd.as_raw_fd(), libc::SHUT_WR) };
        }
    }

    /// Ends the connection for the application (`reason` is told after
    /// the callback); the descriptor closes once nothing is in flight.
    fn kill(&mut self, id: ConnId, reason: CloseReason, rst: bool) {
        let Some(s) = self.live(id) else { return };
        s.dead = true;
        if rst {
            set_linger_zero(s.fd.as_raw_fd());
        }
        let cancel = s.recv_armed;
        self.gone.push((id, reason));
        self.open -= 1;
        if cancel {
            let e = opcode::AsyncCancel::new(tag(OP_RECV, id))
                .build()
                .user_data(tag(OP_CANCEL, id));
            self.push(e);
        }
        self.reap(id);
    }

    /// Frees a dead slot with nothing in flight (closing its descriptor).
    fn reap(&mut self, id: ConnId) {
        let Some(slot) = self.slots.get_mut(id.idx as usize) else {
            return;
        };
        if slot.gen != id.gen || !slot.sock.as_ref().is_some_and(|s| s.dead && s.ops == 0) {
            return;
        }
        slot.sock = None;
        slot.gen = slot.gen.wrapping_add(1) & 0xff_ffff;
        self.free.push(id.idx);
    }

    /// The socket of a completion, dead or alive (its tag's generation).
    fn of(&mut self, gen: u32, idx: u32) -> Option<(ConnId, &mut Sock)> {
        let s = self.slots.get_mut(idx as usize)?;
        if s.gen != gen {
            return None;
        }
        let id = ConnId { idx, gen };
        s.sock.as_mut().map(|s| (id, s))
    }
}

impl ConnOps for Kernel {
    fn send(&mut self, id: ConnId, data: &[u8]) -> usize {
        let Some(s) = self.live(id) else { return 0 };
        if s.we_closed || data.is_empty() {
            return 0;
        }
        if s.tx.capacity() < TX_STAGE {
            if s.send_inflight {
                // Never reallocate under a SEND in flight (cannot happen:
                // the capacity is reserved before the first SEND).
                return 0;
            }
            s.tx.reserve_exact(TX_STAGE - s.tx.len());
        }
        let n = data.len().min(TX_STAGE - s.tx.len());
        s.tx.extend_from_slice(&data[..n]);
        if n < data.len() {
            s.want_write = true;
        }
        self.start_send(id);
        n
    }
    fn send_room(&mut self, id: ConnId) -> usize {
        match self.live(id) {
            Some(s) if !s.we_closed => TX_STAGE - s.tx.len(),
            _ => 0,
        }
    }
    fn close(&mut self, id: ConnId) {
        let Some(s) = self.live(id) else { return };
        if s.we_closed {
            return;
        }
        s.we_closed = true;
        if s.send_inflight || !s.tx.is_empty() {
            s.shut_pending = true;
            return;
        }
        let peer_closed = s.peer_closed;
        self.shut_write(id);
        if peer_closed {
            self.kill(id, CloseReason::Normal, false);
        }
    }
    fn abort(&mut self, id: ConnId) {
        self.kill(id, CloseReason::Reset, true);
    }
    fn endpoints(&mut self, id: ConnId) -> Option<(SocketAddr, SocketAddr)> {
        let s = self.live(id)?;
        let st = std::net::TcpStream::from(s.fd.try_clone().ok()?);
        Some((st.local_addr().ok()?, st.peer_addr().ok()?))
    }
    fn connect(&mut self, remote: SocketAddr) -> Result<ConnId> {
        let fd = tcp_socket(&remote)?;
        let raw = fd.as_raw_fd();
        let id = self.insert(fd, true);
        let addr = Box::new(RawAddr::new(remote));
        let (ptr, len) = (addr.as_ptr(), addr.len());
        if let Some(s) = self.live(id) {
            s.addr = Some(addr);
            s.ops += 1;
        }
        // The address lives in the socket's slot (boxed: it does not move)
        // until CONNECT completes.
        let e = opcode::Connect::new(types::Fd(raw), ptr, len)
            .build()
            .user_data(tag(OP_CONNECT, id));
        self.push(e);
        Ok(id)
    }
    fn udp_send(&mut self, _sock: UdpId, _to: SocketAddr, _data: &[u8]) -> bool {
        false
    }
}

/// One core's application over kernel sockets through io_uring.
pub struct UringWorker<A: TcpApp> {
    k: Kernel,
    bufs: BufRing,
    app: A,
    listener: Option<TcpListener>,
    states: Vec<Option<A::Conn>>,
    cqes: Vec<(u64, i32, u32)>,
    /// Most open sockets at once.
    pub peak_open: usize,
}

impl<A: TcpApp> UringWorker<A> {
    /// A worker running `app`, accepting on `listener` if given. Fails
    /// with one sentence when this kernel lacks what it needs.
    pub fn new(app: A, listener: Option<TcpListener>) -> Result<Self> {
        let ring = IoUring::builder()
            .setup_cqsize(RING_ENTRIES * 4)
            .build(RING_ENTRIES)
            .map_err(|e| {
                Error::io(
                    "io_uring_setup (kernel-io_uring needs Linux 6.0 or later)",
                    e,
                )
            })?;
        let bufs = BufRing::new()?;
        // SAFETY: the ring memory is page-aligned (mmap), holds `RX_BUFS`
        // entries, and stays mapped until after it is unregistered (the
        // worker's drop unregisters before `bufs` drops).
        unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(bufs.entries as u64, RX_BUFS, BGID, 0)
        }
        .map_err(|e| {
            Error::io(
                "register the io_uring buffer ring (needs Linux 5.19 or later)",
                e,
            )
        })?;
        let mut w = UringWorker {
            k: Kernel {
                ring,
                slots: Vec::new(),
                free: Vec::new(),
                gone: Vec::new(),
                failed: Vec::new(),
                open: 0,
                sys_errors: 0,
            },
            bufs,
            app,
            listener,
            states: Vec::new(),
            cqes: Vec::with_capacity(RING_ENTRIES as usize * 4),
            peak_open: 0,
        };
        w.arm_accept();
        Ok(w)
    }

    /// The application.
    pub fn app(&self) -> &A {
        &self.app
    }

    /// Socket errors (failed accepts, refused submissions).
    pub fn sys_errors(&self) -> u64 {
        self.k.sys_errors
    }

    fn arm_accept(&mut self) {
        if let Some(l) = &self.listener {
            let e = opcode::AcceptMulti::new(types::Fd(l.as_raw_fd()))
                .flags(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)
                .build()
                .user_data(OP_ACCEPT << 56);
            self.k.push(e);
        }
    }

    fn opened(&mut self, id: ConnId, now: Instant) {
        let st = self.app.on_open(&mut Conn::new(&mut self.k, id, now));
        keep_state(&mut self.states, id, st);
        self.k.arm_recv(id);
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

    /// Offers `data` (after anything kept back) to the application; keeps
    /// what it does not take.
    fn deliver(&mut self, id: ConnId, now: Instant, bid: Option<(u16, usize)>) {
        let Some(Some(st)) = self.states.get_mut(id.idx as usize) else {
            return;
        };
        let Some(s) = self.k.live(id) else { return };
        let mut kept = std::mem::take(&mut s.rx);
        let fresh: &[u8] = match bid {
            Some((b, len)) => self.bufs.data(b, len),
            None => &[],
        };
        if kept.is_empty() {
            let used = self
                .app
                .on_data(st, &mut Conn::new(&mut self.k, id, now), fresh)
                .min(fresh.len());
            if used < fresh.len() {
                if let Some(s) = self.k.live(id) {
                    s.rx.extend_from_slice(&fresh[used..]);
                }
            }
        } else {
            kept.extend_from_slice(fresh);
            let used = self
                .app
                .on_data(st, &mut Conn::new(&mut self.k, id, now), &kept)
                .min(kept.len());
            kept.drain(..used);
            if let Some(s) = self.k.live(id) {
                s.rx = kept;
            }
        }
    }

    fn complete(&mut self, ud: u64, res: i32, flags: u32, now: Instant) {
        let (op, gen, idx) = untag(ud);
        if op == OP_ACCEPT {
            if res >= 0 {
                // SAFETY: a successful accept returns a fresh descriptor
                // that we now own.
                let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(res) };
                if super::epoll::set_int_opt(res, libc::IPPROTO_TCP, libc::TCP_NODELAY, 1).is_err()
                {
                    self.k.sys_errors += 1;
                }
                let id = self.k.insert(fd, false);
                self.opened(id, now);
            } else {
                self.k.sys_errors += 1;
            }
            if !cqueue::more(flags) {
                self.arm_accept();
            }
            return;
        }
        if op == OP_CANCEL {
            return;
        }
        let Some((id, s)) = self.k.of(gen, idx) else {
            return;
        };
        match op {
            OP_CONNECT => {
                s.ops -= 1;
                s.addr = None;
                if s.dead {
                } else if res < 0 {
                    s.dead = true;
                    self.k.open -= 1;
                    self.k.failed.push(id);
                } else {
                    s.connecting = false;
                    self.opened(id, now);
                }
            }
            OP_RECV => {
                let more = cqueue::more(flags);
                if !more {
                    s.ops -= 1;
                    s.recv_armed = false;
                }
                let bid = cqueue::buffer_select(flags);
                let dead = s.dead;
                if res > 0 && !dead {
                    self.deliver(id, now, bid.map(|b| (b, res as usize)));
                }
                if let Some(b) = bid {
                    self.bufs.stage(b);
                    self.bufs.publish();
                }
                if dead {
                } else if res == 0 {
                    self.peer_closed(id, now);
                } else if res == -libc::ENOBUFS || (res > 0 && !more) {
                    self.k.arm_recv(id);
                } else if res < 0 {
                    self.k.kill(id, CloseReason::Reset, false);
                }
            }
            OP_SEND => {
                s.ops -= 1;
                s.send_inflight = false;
                if s.dead {
                } else if res < 0 {
                    self.k.kill(id, CloseReason::Reset, false);
                } else {
                    s.tx.drain(..(res as usize).min(s.tx.len()));
                    let (empty, shut, peer_closed, want) =
                        (s.tx.is_empty(), s.shut_pending, s.peer_closed, s.want_write);
                    if !empty {
                        self.k.start_send(id);
                    } else if shut {
                        self.k.shut_write(id);
                        if peer_closed {
                            self.k.kill(id, CloseReason::Normal, false);
                        }
                    }
                    if want && !shut {
                        if let Some(s) = self.k.live(id) {
                            s.want_write = false;
                        }
                        if let Some(Some(st)) = self.states.get_mut(id.idx as usize) {
                            self.app
                                .on_writable(st, &mut Conn::new(&mut self.k, id, now));
                        }
                        if self.k.live(id).is_some_and(|s| !s.rx.is_empty()) {
                            self.deliver(id, now, None);
                        }
                    }
                }
            }
            _ => {}
        }
        self.k.reap(id);
    }

    fn peer_closed(&mut self, id: ConnId, now: Instant) {
        let Some(s) = self.k.live(id) else { return };
        s.peer_closed = true;
        if s.we_closed && !s.shut_pending {
            self.k.kill(id, CloseReason::Normal, false);
        } else if !s.we_closed {
            if let Some(Some(st)) = self.states.get_mut(id.idx as usize) {
                self.app
                    .on_peer_closed(st, &mut Conn::new(&mut self.k, id, now));
            }
        }
    }
}

impl<A: TcpApp> Worker for UringWorker<A> {
    fn poll(&mut self, now: Instant) -> usize {
        if self.k.ring.submit().is_err() {
            self.k.sys_errors += 1;
        }
        self.cqes.clear();
        self.cqes.extend(
            self.k
                .ring
                .completion()
                .map(|c| (c.user_data(), c.result(), c.flags())),
        );
        let mut work = self.cqes.len();
        for i in 0..self.cqes.len() {
            let (ud, res, flags) = self.cqes[i];
            self.complete(ud, res, flags, now);
            self.settle();
        }
        work += self.app.poll(&mut Ctx::new(&mut self.k, now));
        self.settle();
        work
    }

    fn finish(&mut self, _now: Instant) {
        // Cancel every request in flight and wait (up to 1 s) until the
        // kernel is done with them, so no buffer is freed under it.
        let _ = self.k.ring.submit();
        let _ = self.k.ring.submitter().register_sync_cancel(
            Some(types::Timespec::new().sec(1)),
            types::CancelBuilder::any(),
        );
        let _ = self.k.ring.completion().count();
        for s in &mut self.k.slots {
            s.sock = None;
        }
    }
}

impl<A: TcpApp> Drop for UringWorker<A> {
    fn drop(&mut self) {
        let _ = self.k.ring.submitter().unregister_buf_ring(BGID);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bypass::app::tcp::Echo;
    use std::io::{Read, Write};

    /// Polls `w` until `done` or 5 s pass.
    fn drive<A: TcpApp>(w: &mut UringWorker<A>, mut done: impl FnMut(&mut UringWorker<A>) -> bool) {
        let start = std::time::Instant::now();
        while start.elapsed() < std::time::Duration::from_secs(5) {
            w.poll(Instant(start.elapsed().as_micros() as u64));
            if done(w) {
                return;
            }
        }
        panic!("timed out");
    }

    #[test]
    fn echoes_over_loopback_and_frees_the_slot_on_close() {
        let l = super::super::epoll::listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = l.local_addr().unwrap();
        let mut w = UringWorker::new(Echo::default(), Some(l)).unwrap();
        let mut c = std::net::TcpStream::connect(addr).unwrap();
        c.set_nonblocking(true).unwrap();
        // More than one provided buffer's worth, so it spans completions.
        let msg: Vec<u8> = (0..3 * RX_BUF_SIZE).map(|i| i as u8).collect();
        c.write_all(&msg).unwrap();
        let mut got = Vec::new();
        drive(&mut w, |_| {
            let mut b = [0u8; 8192];
            if let Ok(n) = c.read(&mut b) {
                got.extend_from_slice(&b[..n]);
            }
            got.len() >= msg.len()
        });
        assert_eq!(got, msg);
        assert_eq!(w.k.open, 1);
        drop(c);
        drive(&mut w, |w| w.k.open == 0 && w.k.free.len() == 1);
        assert_eq!(w.sys_errors(), 0);
        assert_eq!(w.peak_open, 1);
    }
}
