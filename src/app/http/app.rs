//! [`HttpApp`]: an HTTP/1.1 server as a [`TcpApp`], one [`HttpServer`] per
//! connection.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use super::{Flow, Handler, HttpDate, HttpServer, HttpStats, TechEmpower};
use crate::app::tcp::{Conn, Ctx, TcpApp};
use crate::counter::Counter;
use crate::stack::CloseReason;

/// Stop reading requests while this many response bytes wait to be sent.
const HIGH_WATER: usize = 64 * 1024;

/// Live counters of one core's HTTP server.
#[derive(Debug, Default)]
pub struct HttpCounters {
    /// Requests answered.
    pub requests: Counter,
    /// Bad requests (400/431).
    pub bad_requests: Counter,
}

/// One connection's server and the responses not yet sent.
pub struct HttpConn<H: Handler> {
    srv: HttpServer<H>,
    out: Vec<u8>,
    sent: usize,
    closing: bool,
}

/// An HTTP server application (one per core). `make_handler` builds each
/// connection's handler; the default serves the TechEmpower routes.
pub struct HttpApp<H: Handler, F: FnMut() -> H> {
    make_handler: F,
    date: HttpDate,
    unix_base_us: u64,
    /// Totals of closed connections.
    pub totals: HttpStats,
    counters: Arc<HttpCounters>,
}

impl HttpApp<TechEmpower, fn() -> TechEmpower> {
    /// A server of the TechEmpower routes (`/plaintext`, `/json`, `/`).
    pub fn techempower(counters: Arc<HttpCounters>) -> Self {
        HttpApp::new(|| TechEmpower, counters)
    }
}

impl<H: Handler, F: FnMut() -> H> HttpApp<H, F> {
    /// A server whose connections use handlers from `make_handler`.
    pub fn new(make_handler: F, counters: Arc<HttpCounters>) -> Self {
        // The wall clock is read once here; afterwards the Date header
        // follows the loop's monotonic time from this base.
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        HttpApp {
            make_handler,
            date: HttpDate::new(unix.as_secs()),
            unix_base_us: unix.as_micros() as u64,
            totals: HttpStats::default(),
            counters,
        }
    }

    fn flush(st: &mut HttpConn<H>, conn: &mut Conn<'_>) {
        if st.sent < st.out.len() {
            st.sent += conn.send(&st.out[st.sent..]);
            if st.sent == st.out.len() {
                st.out.clear();
                st.sent = 0;
            }
        }
        if st.closing && st.out.is_empty() {
            conn.close();
        }
    }
}

impl<H, F> TcpApp for HttpApp<H, F>
where
    H: Handler + Send + 'static,
    F: FnMut() -> H + Send + 'static,
{
    type Conn = HttpConn<H>;

    fn on_open(&mut self, _conn: &mut Conn<'_>) -> HttpConn<H> {
        HttpConn {
            srv: HttpServer::with_handler((self.make_handler)()),
            out: Vec::new(),
            sent: 0,
            closing: false,
        }
    }

    fn on_data(&mut self, st: &mut HttpConn<H>, conn: &mut Conn<'_>, data: &[u8]) -> usize {
        if st.closing {
            return data.len(); // after Close/error, input is ignored
        }
        if st.out.len() - st.sent >= HIGH_WATER {
            return 0; // back-pressure: the window closes until we send
        }
        let (req0, bad0) = (st.srv.stats().requests, st.srv.stats().bad_requests);
        let r = st.srv.on_data(data, &self.date, &mut st.out);
        self.counters.requests.add(st.srv.stats().requests - req0);
        self.counters
            .bad_requests
            .add(st.srv.stats().bad_requests - bad0);
        if !matches!(r, Ok(Flow::KeepAlive)) {
            st.closing = true;
        }
        Self::flush(st, conn);
        data.len()
    }

    fn on_writable(&mut self, st: &mut HttpConn<H>, conn: &mut Conn<'_>) {
        Self::flush(st, conn);
    }

    fn on_peer_closed(&mut self, st: &mut HttpConn<H>, conn: &mut Conn<'_>) {
        st.closing = true;
        Self::flush(st, conn);
    }

    fn on_close(&mut self, st: HttpConn<H>, _reason: CloseReason) {
        self.totals += *st.srv.stats();
    }

    fn poll(&mut self, ctx: &mut Ctx<'_>) -> usize {
        self.date
            .update((self.unix_base_us + ctx.now().micros()) / 1_000_000);
        0
    }
}
