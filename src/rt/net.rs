//! `TcpListener`, `TcpStream` and `UdpSocket` on the core's stack.
//!
//! Errors are `io::Error`s of the kinds std uses. Reads copy straight from
//! the stack's receive buffer into the caller's buffer (one copy, as
//! `read_buf` allows); writes copy into the send buffer and return
//! `Poll::Pending` when it is full, so memory never grows with a slow
//! peer: the caller waits until the stack reports room.

use std::future::poll_fn;
use std::io::{self, ErrorKind};
use std::net::SocketAddr;
use std::rc::Rc;
use std::task::{Context, Poll};

use crate::stack::{CloseReason, ConnId, UdpId};

use super::core::{current, ListenSlot, Phase, Shared, UdpSlot};
use super::time::timeout;

fn reset() -> io::Error {
    io::Error::new(ErrorKind::ConnectionReset, "connection reset")
}

/// A TCP listener on one core: it accepts the connections RSS gives this
/// core. Bind the same port on every core to serve on all of them.
pub struct TcpListener {
    core: Rc<Shared>,
    port: u16,
}

impl std::fmt::Debug for TcpListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpListener")
            .field("core", &self.core.core)
            .field("port", &self.port)
            .finish()
    }
}

impl TcpListener {
    /// Listens on `addr`'s port on the current core (the address must be
    /// the stack's own or unspecified). `AddrInUse` if a listener of this
    /// core holds the port already.
    pub async fn bind(addr: impl Into<SocketAddr>) -> io::Result<TcpListener> {
        Self::bind_now(addr.into())
    }

    /// [`TcpListener::bind`] without awaiting (binding never waits).
    pub fn bind_now(addr: SocketAddr) -> io::Result<TcpListener> {
        let a = addr;
        let core = current()?;
        let port = a.port();
        if port == 0 {
            return Err(io::Error::new(
                ErrorKind::InvalidInput,
                "listening on port 0 (any port) is not supported; name a port",
            ));
        }
        let mut ls = core.listeners.borrow_mut();
        match ls.get_mut(&port) {
            Some(l) if l.bound => {
                return Err(io::Error::new(
                    ErrorKind::AddrInUse,
                    format!("port {port} is already listening on this core"),
                ))
            }
            Some(l) => l.bound = true,
            None => {
                let opts = core.opts.listen;
                core.net
                    .borrow_mut()
                    .listen(port, opts)
                    .map_err(|e| io::Error::new(ErrorKind::AddrInUse, e.to_string()))?;
                ls.insert(
                    port,
                    ListenSlot {
                        queue: Default::default(),
                        waker: None,
                        bound: true,
                        backlog: opts.backlog.max(1),
                    },
                );
            }
        }
        drop(ls);
        Ok(TcpListener { core, port })
    }

    /// Waits for the next connection.
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        poll_fn(|cx| self.poll_accept(cx)).await
    }

    /// Polls for the next connection.
    pub fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<(TcpStream, SocketAddr)>> {
        let mut ls = self.core.listeners.borrow_mut();
        let Some(l) = ls.get_mut(&self.port) else {
            return Poll::Ready(Err(io::Error::other("listener gone")));
        };
        match l.queue.pop_front() {
            Some(id) => {
                drop(ls);
                let s = TcpStream::new(self.core.clone(), id);
                let peer = s.peer_addr().unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)));
                Poll::Ready(Ok((s, peer)))
            }
            None => {
                l.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }

    /// The listening address (the port; the address is unspecified).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(SocketAddr::from(([0, 0, 0, 0], self.port)))
    }
}

impl Drop for TcpListener {
    fn drop(&mut self) {
        // The stack has no way to stop listening: connections that arrive
        // from now on are reset by the runtime, and the queued ones too.
        let queued: Vec<ConnId> = {
            let mut ls = self.core.listeners.borrow_mut();
            match ls.get_mut(&self.port) {
                Some(l) => {
                    l.bound = false;
                    l.waker = None;
                    l.queue.drain(..).collect()
                }
                None => Vec::new(),
            }
        };
        for id in queued {
            self.core.net.borrow_mut().abort(id);
            self.core.untrack(id);
        }
    }
}

/// A TCP connection on one core.
pub struct TcpStream {
    core: Rc<Shared>,
    id: ConnId,
    wrote_fin: bool,
}

impl std::fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpStream")
            .field("core", &self.core.core)
            .field("id", &self.id)
            .finish()
    }
}

impl TcpStream {
    fn new(core: Rc<Shared>, id: ConnId) -> TcpStream {
        TcpStream {
            core,
            id,
            wrote_fin: false,
        }
    }

    /// Opens a connection to `addr` from the current core, waiting at
    /// most the runtime's connect timeout. `ConnectionRefused` if the peer
    /// resets the handshake, `TimedOut` if it does not answer.
    pub async fn connect(addr: impl Into<SocketAddr>) -> io::Result<TcpStream> {
        let core = current()?;
        let d = core.opts.connect_timeout;
        Self::connect_timeout(addr.into(), d).await
    }

    /// Like [`TcpStream::connect`] with a timeout of `d`.
    pub async fn connect_timeout(
        addr: SocketAddr,
        d: std::time::Duration,
    ) -> io::Result<TcpStream> {
        let a = addr;
        let core = current()?;
        let id = core
            .net
            .borrow_mut()
            .connect(a)
            .map_err(|e| io::Error::new(ErrorKind::AddrNotAvailable, e.to_string()))?;
        core.track(id, Phase::Connecting, true);
        let stream = TcpStream::new(core.clone(), id);
        let started = core.now.get();
        let wait = poll_fn(|cx| {
            let phase = core.with_conn(id, |s| {
                if s.phase == Phase::Connecting && s.closed.is_none() {
                    s.writer = Some(cx.waker().clone());
                }
                (s.phase, s.closed)
            });
            match phase {
                Some((Phase::Open, _)) => Poll::Ready(Ok(())),
                Some((Phase::Connecting, None)) => Poll::Pending,
                _ => Poll::Ready(Err(())),
            }
        });
        match timeout(d, wait).await {
            Ok(Ok(())) => Ok(stream),
            Ok(Err(())) => {
                // The stack says only that the handshake failed: a reset
                // comes at once, a silent peer after the stack's own
                // handshake timeout.
                let waited = core.now.get().since(started);
                let limit = core.opts.listen.tcp.timeout_ms.saturating_mul(1000);
                Err(if waited + 100_000 >= limit {
                    io::Error::new(ErrorKind::TimedOut, format!("connect to {a} timed out"))
                } else {
                    io::Error::new(
                        ErrorKind::ConnectionRefused,
                        format!("connect to {a} refused"),
                    )
                })
            }
            Err(_) => {
                core.net.borrow_mut().abort(id);
                Err(io::Error::new(
                    ErrorKind::TimedOut,
                    format!("connect to {a} timed out after {d:?}"),
                ))
            }
        }
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.endpoints().map(|e| e.1)
    }

    /// Our address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.endpoints().map(|e| e.0)
    }

    fn endpoints(&self) -> io::Result<(SocketAddr, SocketAddr)> {
        self.core
            .net
            .borrow_mut()
            .endpoints(self.id)
            .ok_or_else(|| io::Error::new(ErrorKind::NotConnected, "the connection is closed"))
    }

    /// Bytes waiting to be read now.
    pub fn readable_bytes(&self) -> usize {
        self.core.net.borrow_mut().readable(self.id)
    }

    /// Waits until there is something to read: `Ok(n)` with `n > 0` bytes
    /// readable now, `Ok(0)` at the end of the stream, an error if the
    /// connection was reset.
    pub fn poll_readable(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let core = &self.core;
        let n = core.net.borrow_mut().readable(self.id);
        if n > 0 {
            return Poll::Ready(Ok(n));
        }
        if core.net.borrow_mut().peer_fin(self.id) {
            core.with_conn(self.id, |s| s.peer_closed = true);
        }
        let st = core.with_conn(self.id, |s| {
            if s.closed.is_none() && !s.peer_closed && s.phase == Phase::Open {
                s.reader = Some(cx.waker().clone());
            }
            (s.phase, s.peer_closed, s.closed)
        });
        match st {
            None | Some((_, true, _)) | Some((_, _, Some(CloseReason::Normal))) => {
                Poll::Ready(Ok(0))
            }
            Some((_, _, Some(CloseReason::Reset))) | Some((Phase::Failed, _, _)) => {
                Poll::Ready(Err(reset()))
            }
            Some(_) => Poll::Pending,
        }
    }

    /// Copies what is readable now into the start of `buf` and consumes
    /// it: one copy, from the stack's receive buffer into `buf`.
    fn take_into(&mut self, buf: &mut [u8]) -> usize {
        let mut net = self.core.net.borrow_mut();
        let n = net.peek(self.id, buf);
        net.consume(self.id, n);
        n
    }

    /// Reads into the start of `buf` (one copy from the stack's buffer).
    /// `Ok(0)` is the end of the stream (or an empty `buf`).
    pub fn poll_read_into(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        match self.poll_readable(cx) {
            Poll::Ready(Ok(0)) => Poll::Ready(Ok(0)),
            Poll::Ready(Ok(_)) => Poll::Ready(Ok(self.take_into(buf))),
            other => other,
        }
    }

    /// Reads into tokio's `ReadBuf`, whose memory may be uninitialised.
    #[cfg(feature = "tokio")]
    pub(crate) fn poll_read_buf(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        match self.poll_readable(cx) {
            Poll::Ready(Ok(0)) => Poll::Ready(Ok(())),
            Poll::Ready(Ok(avail)) => {
                // Initialise only what will be written, not the whole
                // (possibly large) unfilled part, then one copy into it.
                let room = buf.initialize_unfilled_to(avail.min(buf.remaining()));
                let n = self.take_into(room);
                buf.advance(n);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Reads up to `buf.len()` bytes; `Ok(0)` at the end of the stream.
    pub async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        poll_fn(|cx| self.poll_read_into(cx, buf)).await
    }

    /// Queues bytes from `data` to send; `Pending` while the send buffer
    /// is full (back-pressure), until the stack reports room.
    pub fn poll_write_from(
        &mut self,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if self.wrote_fin {
            return Poll::Ready(Err(io::Error::new(
                ErrorKind::BrokenPipe,
                "write after shutdown",
            )));
        }
        let n = self.core.net.borrow_mut().send(self.id, data);
        if n > 0 {
            return Poll::Ready(Ok(n));
        }
        let st = self.core.with_conn(self.id, |s| {
            if s.closed.is_none() {
                s.writer = Some(cx.waker().clone());
            }
            s.closed
        });
        match st {
            None | Some(Some(CloseReason::Normal)) => Poll::Ready(Err(io::Error::new(
                ErrorKind::BrokenPipe,
                "the connection is closed",
            ))),
            Some(Some(CloseReason::Reset)) => Poll::Ready(Err(reset())),
            // Full buffer: `Writable` follows when there is room.
            Some(None) => Poll::Pending,
        }
    }

    /// Writes some of `data`; waits while the send buffer is full.
    pub async fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        poll_fn(|cx| self.poll_write_from(cx, data)).await
    }

    /// Writes all of `data`.
    pub async fn write_all(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let n = self.write(data).await?;
            data = &data[n..];
        }
        Ok(())
    }

    /// Closes our sending side (FIN after the queued data); reading goes
    /// on until the peer closes.
    pub fn shutdown_write(&mut self) {
        if !self.wrote_fin {
            self.wrote_fin = true;
            self.core.net.borrow_mut().close(self.id);
        }
    }

    /// Resets the connection (RST), dropping queued data.
    pub fn abort(self) {
        self.core.net.borrow_mut().abort(self.id);
    }
}

impl Drop for TcpStream {
    fn drop(&mut self) {
        let closed = self
            .core
            .with_conn(self.id, |s| {
                s.owned = false;
                s.reader = None;
                s.writer = None;
                s.closed.is_some()
            })
            .unwrap_or(true);
        if closed {
            self.core.untrack(self.id);
            return;
        }
        // Orderly close; whatever still arrives is read and discarded
        // until the peer closes too.
        if !self.wrote_fin {
            self.core.net.borrow_mut().close(self.id);
        }
        let unread = self.core.net.borrow_mut().readable(self.id);
        if unread > 0 {
            // As std does for unread data: reset rather than pretend the
            // peer's bytes were taken.
            self.core.net.borrow_mut().abort(self.id);
        }
    }
}

/// A UDP socket on one core.
pub struct UdpSocket {
    core: Rc<Shared>,
    id: UdpId,
    port: u16,
}

impl std::fmt::Debug for UdpSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UdpSocket")
            .field("port", &self.port)
            .finish()
    }
}

impl UdpSocket {
    /// Binds `addr`'s port on the current core. `AddrInUse` if a socket
    /// of this core holds it.
    pub async fn bind(addr: impl Into<SocketAddr>) -> io::Result<UdpSocket> {
        let a: SocketAddr = addr.into();
        let core = current()?;
        let port = a.port();
        let existing = core.udp_ports.borrow().get(&port).copied();
        let id = match existing {
            Some(id) => {
                let mut u = core.udp.borrow_mut();
                let slot = &mut u[id.0 as usize];
                if slot.bound {
                    return Err(io::Error::new(
                        ErrorKind::AddrInUse,
                        format!("UDP port {port} is already bound on this core"),
                    ));
                }
                slot.bound = true;
                id
            }
            None => {
                let (slots, len) = (core.opts.udp_slots, core.opts.udp_max_len);
                let id = core
                    .net
                    .borrow_mut()
                    .udp_bind(port, slots, len)
                    .map_err(|e| io::Error::new(ErrorKind::AddrInUse, e.to_string()))?;
                let mut u = core.udp.borrow_mut();
                let i = id.0 as usize;
                if u.len() <= i {
                    u.resize_with(i + 1, || UdpSlot {
                        reader: None,
                        bound: false,
                    });
                }
                u[i].bound = true;
                core.udp_ports.borrow_mut().insert(port, id);
                id
            }
        };
        Ok(UdpSocket { core, id, port })
    }

    /// Polls for a datagram, copied into `buf` (truncated if longer).
    pub fn poll_recv_from(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<(usize, SocketAddr)>> {
        if let Some((n, from)) = self.core.net.borrow_mut().udp_recv(self.id, buf) {
            return Poll::Ready(Ok((n, from)));
        }
        if let Some(s) = self.core.udp.borrow_mut().get_mut(self.id.0 as usize) {
            s.reader = Some(cx.waker().clone());
        }
        Poll::Pending
    }

    /// Waits for a datagram.
    pub async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        poll_fn(|cx| self.poll_recv_from(cx, buf)).await
    }

    /// Sends one datagram. `WouldBlock` if the socket's send queue is full
    /// (the loop empties it every turn: retry after a yield).
    pub async fn send_to(&self, data: &[u8], to: impl Into<SocketAddr>) -> io::Result<usize> {
        let to: SocketAddr = to.into();
        if data.len() > self.core.opts.udp_max_len {
            return Err(io::Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "datagram of {} bytes; this runtime's UDP sockets take up to {}",
                    data.len(),
                    self.core.opts.udp_max_len
                ),
            ));
        }
        if self.core.net.borrow_mut().udp_send(self.id, to, data) {
            Ok(data.len())
        } else {
            Err(io::Error::new(ErrorKind::WouldBlock, "UDP send queue full"))
        }
    }

    /// The bound address (the port; the address is unspecified).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(SocketAddr::from(([0, 0, 0, 0], self.port)))
    }
}

impl Drop for UdpSocket {
    fn drop(&mut self) {
        if let Some(s) = self.core.udp.borrow_mut().get_mut(self.id.0 as usize) {
            s.bound = false;
            s.reader = None;
        }
    }
}
