//! A load client for the in-memory wire tests: opens connections, streams
//! a pattern on each and checks the echo.

use std::net::{IpAddr, SocketAddr};

use bypass::app::tcp::{Conn, Ctx, TcpApp};
use bypass::stack::{CloseReason, ConnId};

use super::mem_net::SERVER;

pub fn pattern(i: usize, salt: u8) -> u8 {
    (i.wrapping_mul(2654435761) >> 13) as u8 ^ salt
}

/// Per connection: sends `total` bytes of a pattern, checks the echo.
#[derive(Default)]
pub struct Flow {
    pub sent: usize,
    pub got: usize,
    pub bad: usize,
    pub closed: Option<CloseReason>,
}

/// Opens `want` connections to the server and streams `total` bytes on
/// each, verifying the echo; closes when everything came back.
pub struct Client {
    pub want: usize,
    pub total: usize,
    pub port: u16,
    pub opened: usize,
    pub per_poll: usize,
    pub done: usize,
    pub closed_normal: usize,
    pub closed_reset: usize,
    pub failed: usize,
    pub close_when_done: bool,
    /// The server's address.
    pub server: IpAddr,
}

impl Client {
    pub fn new(want: usize, total: usize, port: u16) -> Self {
        Client {
            server: SERVER.into(),
            want,
            total,
            port,
            opened: 0,
            per_poll: 64,
            done: 0,
            closed_normal: 0,
            closed_reset: 0,
            failed: 0,
            close_when_done: true,
        }
    }
    pub fn pump(&mut self, f: &mut Flow, c: &mut Conn<'_>) {
        send_pattern::<4096>(c, &mut f.sent, self.total, 7);
    }
}

/// Sends the pattern `salt` from byte `*sent` up to `total`, `CHUNK` bytes
/// at a time, until the connection takes less than it was offered.
pub fn send_pattern<const CHUNK: usize>(
    c: &mut Conn<'_>,
    sent: &mut usize,
    total: usize,
    salt: u8,
) {
    let mut chunk = [0u8; CHUNK];
    while *sent < total {
        let n = (total - *sent).min(CHUNK);
        for (i, b) in chunk[..n].iter_mut().enumerate() {
            *b = pattern(*sent + i, salt);
        }
        let k = c.send(&chunk[..n]);
        *sent += k;
        if k < n {
            break;
        }
    }
}

impl TcpApp for Client {
    type Conn = Flow;
    fn on_open(&mut self, c: &mut Conn<'_>) -> Flow {
        let mut f = Flow::default();
        self.pump(&mut f, c);
        f
    }
    fn on_data(&mut self, f: &mut Flow, c: &mut Conn<'_>, d: &[u8]) -> usize {
        for (i, b) in d.iter().enumerate() {
            if *b != pattern(f.got + i, 7) {
                f.bad += 1;
            }
        }
        f.got += d.len();
        if f.got == self.total && f.sent == self.total {
            self.done += 1;
            if self.close_when_done {
                c.close();
            }
        }
        d.len()
    }
    fn on_writable(&mut self, f: &mut Flow, c: &mut Conn<'_>) {
        self.pump(f, c);
    }
    fn on_close(&mut self, f: Flow, r: CloseReason) {
        assert_eq!(f.bad, 0, "echoed bytes differ from what was sent");
        let _ = f.closed;
        match r {
            CloseReason::Normal => self.closed_normal += 1,
            CloseReason::Reset => self.closed_reset += 1,
        }
    }
    fn on_connect_failed(&mut self, _id: ConnId) {
        self.failed += 1;
    }
    fn poll(&mut self, ctx: &mut Ctx<'_>) -> usize {
        let mut n = 0;
        while self.opened < self.want && n < self.per_poll {
            ctx.connect(SocketAddr::new(self.server, self.port))
                .unwrap();
            self.opened += 1;
            n += 1;
        }
        n
    }
}
