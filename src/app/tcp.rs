//! The per-connection event API for TCP (and UDP) applications.
//!
//! An application is one [`TcpApp`] value per core (made by a factory the
//! caller gives the runtime) plus one [`TcpApp::Conn`] state per
//! connection. The runtime calls it when a connection opens, has data,
//! has room to send again, is closed by the peer, or is over. Callbacks act
//! on the connection through [`Conn`]: `send` (which may take less than
//! offered: back-pressure), `close`, `abort`. Nothing here touches a port,
//! a clock or a thread, so handlers are easy to test.
//!
//! An echo server, whole:
//!
//! ```
//! use bypass::app::tcp::{Conn, TcpApp};
//!
//! struct Echo;
//! impl TcpApp for Echo {
//!     type Conn = ();
//!     fn on_open(&mut self, _conn: &mut Conn<'_>) {}
//!     fn on_data(&mut self, _state: &mut (), conn: &mut Conn<'_>, data: &[u8]) -> usize {
//!         // Echo what fits; the rest stays in the receive buffer and is
//!         // offered again when the send buffer has room.
//!         conn.send(data)
//!     }
//! }
//! ```

use std::net::SocketAddr;

use crate::error::Result;
use crate::port::PortQueue;
use crate::stack::{CloseReason, ConnId, Stack, UdpId};
use crate::time::Instant;

/// What a connection handle can do; implemented by the stack.
pub trait ConnOps {
    /// See [`Conn::send`].
    fn send(&mut self, id: ConnId, data: &[u8]) -> usize;
    /// See [`Conn::send_room`].
    fn send_room(&mut self, id: ConnId) -> usize;
    /// See [`Conn::close`].
    fn close(&mut self, id: ConnId);
    /// See [`Conn::abort`].
    fn abort(&mut self, id: ConnId);
    /// See [`Conn::local`].
    fn endpoints(&mut self, id: ConnId) -> Option<(SocketAddr, SocketAddr)>;
    /// See [`Ctx::connect`].
    fn connect(&mut self, remote: SocketAddr) -> Result<ConnId>;
    /// See [`Ctx::udp_send`].
    fn udp_send(&mut self, sock: UdpId, to: SocketAddr, data: &[u8]) -> bool;
}

impl<Q: PortQueue> ConnOps for Stack<Q> {
    fn send(&mut self, id: ConnId, data: &[u8]) -> usize {
        Stack::send(self, id, data)
    }
    fn send_room(&mut self, id: ConnId) -> usize {
        Stack::send_room(self, id)
    }
    fn close(&mut self, id: ConnId) {
        Stack::close(self, id)
    }
    fn abort(&mut self, id: ConnId) {
        Stack::abort(self, id)
    }
    fn endpoints(&mut self, id: ConnId) -> Option<(SocketAddr, SocketAddr)> {
        Stack::endpoints(self, id)
    }
    fn connect(&mut self, remote: SocketAddr) -> Result<ConnId> {
        Stack::connect(self, remote)
    }
    fn udp_send(&mut self, sock: UdpId, to: SocketAddr, data: &[u8]) -> bool {
        Stack::udp_send(self, sock, to, data)
    }
}

/// A connection, as a callback sees it.
pub struct Conn<'a> {
    ops: &'a mut dyn ConnOps,
    id: ConnId,
    now: Instant,
}

impl<'a> Conn<'a> {
    /// A handle on connection `id` (the runtime makes these).
    pub fn new(ops: &'a mut dyn ConnOps, id: ConnId, now: Instant) -> Conn<'a> {
        Conn { ops, id, now }
    }
    /// Queues bytes to send; returns how many fit in the send buffer. When
    /// it is less than offered, `on_writable` follows once there is room.
    #[inline]
    pub fn send(&mut self, data: &[u8]) -> usize {
        self.ops.send(self.id, data)
    }
    /// Free bytes in the send buffer.
    pub fn send_room(&mut self) -> usize {
        self.ops.send_room(self.id)
    }
    /// Closes our side once the queued data is sent (FIN).
    pub fn close(&mut self) {
        self.ops.close(self.id)
    }
    /// Resets the connection (RST).
    pub fn abort(&mut self) {
        self.ops.abort(self.id)
    }
    /// The connection's id.
    pub fn id(&self) -> ConnId {
        self.id
    }
    /// The loop's timestamp.
    pub fn now(&self) -> Instant {
        self.now
    }
    /// Our address and port.
    pub fn local(&mut self) -> Option<SocketAddr> {
        self.ops.endpoints(self.id).map(|e| e.0)
    }
    /// The peer's address and port.
    pub fn remote(&mut self) -> Option<SocketAddr> {
        self.ops.endpoints(self.id).map(|e| e.1)
    }
}

/// The core's context, for work not tied to one connection.
pub struct Ctx<'a> {
    ops: &'a mut dyn ConnOps,
    now: Instant,
}

impl<'a> Ctx<'a> {
    /// A context (the runtime makes these).
    pub fn new(ops: &'a mut dyn ConnOps, now: Instant) -> Ctx<'a> {
        Ctx { ops, now }
    }
    /// The loop's timestamp.
    pub fn now(&self) -> Instant {
        self.now
    }
    /// Opens a connection; `on_open` (or `on_connect_failed`) follows.
    pub fn connect(&mut self, remote: SocketAddr) -> Result<ConnId> {
        self.ops.connect(remote)
    }
    /// A handle on one of the core's connections.
    pub fn conn(&mut self, id: ConnId) -> Conn<'_> {
        Conn::new(self.ops, id, self.now)
    }
    /// Sends a UDP datagram from one of the core's UDP sockets.
    pub fn udp_send(&mut self, sock: UdpId, to: SocketAddr, data: &[u8]) -> bool {
        self.ops.udp_send(sock, to, data)
    }
}

/// A TCP application: one value per core, one `Conn` state per connection.
pub trait TcpApp: Send + 'static {
    /// Per-connection state.
    type Conn: Send + 'static;

    /// A connection is established (accepted, or one we opened).
    fn on_open(&mut self, conn: &mut Conn<'_>) -> Self::Conn;

    /// Data arrived. Returns how many bytes of `data` were consumed; the
    /// rest stays in the receive buffer (closing the window) and is offered
    /// again with more data or after `on_writable`.
    fn on_data(&mut self, state: &mut Self::Conn, conn: &mut Conn<'_>, data: &[u8]) -> usize;

    /// The send buffer has room again after a short `send`.
    fn on_writable(&mut self, _state: &mut Self::Conn, _conn: &mut Conn<'_>) {}

    /// The peer closed its side and all its data has been read. By default
    /// we close ours too.
    fn on_peer_closed(&mut self, _state: &mut Self::Conn, conn: &mut Conn<'_>) {
        conn.close();
    }

    /// The connection is over; the state is handed back for the last time.
    fn on_close(&mut self, _state: Self::Conn, _reason: CloseReason) {}

    /// A connection opened with `Ctx::connect` failed before it opened.
    fn on_connect_failed(&mut self, _id: ConnId) {}

    /// A UDP datagram arrived on one of the core's UDP sockets.
    fn on_datagram(&mut self, _ctx: &mut Ctx<'_>, _sock: UdpId, _data: &[u8], _from: SocketAddr) {}

    /// Called once per loop iteration, for applications that start work
    /// themselves (clients, load generators). Returns units of work done.
    fn poll(&mut self, _ctx: &mut Ctx<'_>) -> usize {
        0
    }
}

/// An echo server: sends back what it reads, TCP bytes and UDP datagrams
/// alike, counting what it echoed. What does not fit in the send buffer
/// stays unread (back-pressure through the TCP window).
#[derive(Debug, Default, Clone)]
pub struct Echo {
    bytes: std::sync::Arc<crate::counter::Counter>,
}

impl Echo {
    /// An echo app counting echoed bytes into `bytes` (one counter per
    /// core; the owning core is its only writer).
    pub fn counting(bytes: std::sync::Arc<crate::counter::Counter>) -> Echo {
        Echo { bytes }
    }

    /// Bytes echoed so far.
    pub fn echoed(&self) -> u64 {
        self.bytes.get()
    }
}

impl TcpApp for Echo {
    type Conn = ();
    fn on_open(&mut self, _conn: &mut Conn<'_>) {}
    fn on_data(&mut self, _: &mut (), conn: &mut Conn<'_>, data: &[u8]) -> usize {
        let n = conn.send(data);
        self.bytes.add(n as u64);
        n
    }
    fn on_datagram(&mut self, ctx: &mut Ctx<'_>, sock: UdpId, data: &[u8], from: SocketAddr) {
        if ctx.udp_send(sock, from, data) {
            self.bytes.add(data.len() as u64);
        }
    }
}
