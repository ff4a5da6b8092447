//! The server side: [`HttpServer`], one per connection, which parses
//! requests, hands each complete one to its [`Handler`] (see `handler.rs`)
//! and writes the response.

use std::mem::MaybeUninit;

use super::framing::{BodyKind, Flow, Framer, Peer, Step};
use super::handler::{BodySrc, Handler, Request, ResponseWriter, StatusCode, TechEmpower};
use super::{
    has_token, last_token, parse_length, HttpDate, HttpError, DEFAULT_MAX_HEAD, MAX_HEADERS,
};

/// Per-connection counters; add them up per core with `+=`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HttpStats {
    /// Complete request heads handed to the handler.
    pub requests: u64,
    /// Responses sent with a 2xx status.
    pub resp_2xx: u64,
    /// ... 3xx.
    pub resp_3xx: u64,
    /// ... 4xx (including the server's own 400 and 431).
    pub resp_4xx: u64,
    /// ... 5xx.
    pub resp_5xx: u64,
    /// Requests rejected by the server (malformed, too large, bad body):
    /// each one closed its connection.
    pub bad_requests: u64,
    /// Bytes fed to `on_data` (before the connection closed).
    pub bytes_in: u64,
    /// Bytes appended to `out`.
    pub bytes_out: u64,
}

impl HttpStats {
    fn count_status(&mut self, s: StatusCode) {
        match s.as_u16() / 100 {
            2 => self.resp_2xx += 1,
            3 => self.resp_3xx += 1,
            4 => self.resp_4xx += 1,
            _ => self.resp_5xx += 1,
        }
    }
}

impl std::ops::AddAssign for HttpStats {
    fn add_assign(&mut self, o: HttpStats) {
        self.requests += o.requests;
        self.resp_2xx += o.resp_2xx;
        self.resp_3xx += o.resp_3xx;
        self.resp_4xx += o.resp_4xx;
        self.resp_5xx += o.resp_5xx;
        self.bad_requests += o.bad_requests;
        self.bytes_in += o.bytes_in;
        self.bytes_out += o.bytes_out;
    }
}

/// What the `Connection` header of a response says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Conn {
    /// HTTP/1.1 default: nothing.
    Persist,
    /// HTTP/1.0 that asked for keep-alive.
    KeepAlive,
    Close,
}

const STATUS_200: &[u8] = b"HTTP/1.1 200 OK\r\n";
const SERVER_DATE: &[u8] = b"Server: bypass\r\nDate: ";

/// Appends a whole response to `out`.
fn write_response(
    out: &mut Vec<u8>,
    now: &HttpDate,
    status: StatusCode,
    headers: &[u8],
    body: &[u8],
    head_only: bool,
    conn: Conn,
) {
    if status == StatusCode::OK {
        out.extend_from_slice(STATUS_200);
    } else {
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(itoa::Buffer::new().format(status.as_u16()).as_bytes());
        out.push(b' ');
        out.extend_from_slice(status.reason().as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(SERVER_DATE);
    out.extend_from_slice(now.as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(headers);
    if !status.bodyless() {
        out.extend_from_slice(b"Content-Length: ");
        out.extend_from_slice(itoa::Buffer::new().format(body.len()).as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    match conn {
        Conn::Persist => {}
        Conn::KeepAlive => out.extend_from_slice(b"Connection: keep-alive\r\n"),
        Conn::Close => out.extend_from_slice(b"Connection: close\r\n"),
    }
    out.extend_from_slice(b"\r\n");
    if !head_only && !status.bodyless() {
        out.extend_from_slice(body);
    }
}

/// The server's side of one connection. See [`HttpServer::on_data`].
///
/// ```
/// use bypass::app::http::{Flow, HttpDate, HttpServer};
///
/// let mut srv = HttpServer::new();
/// let now = HttpDate::new(0);
/// let mut out = Vec::new();
/// let flow = srv.on_data(b"GET /plaintext HTTP/1.1\r\nHost: a\r\n\r\n", &now, &mut out);
/// assert_eq!(flow, Ok(Flow::KeepAlive));
/// assert!(out.ends_with(b"\r\n\r\nHello, World!"));
/// ```
#[derive(Debug)]
pub struct HttpServer<H = TechEmpower> {
    framer: Framer,
    handler: H,
    headers: Vec<u8>,
    scratch: Vec<u8>,
    stats: HttpStats,
}

impl HttpServer<TechEmpower> {
    /// A server with the TechEmpower routes and the default head limit.
    pub fn new() -> Self {
        Self::with_handler(TechEmpower)
    }
}

impl Default for HttpServer<TechEmpower> {
    fn default() -> Self {
        Self::new()
    }
}

impl<H: Handler> HttpServer<H> {
    /// A server that hands requests to `handler`.
    pub fn with_handler(handler: H) -> Self {
        Self::with_limits(handler, DEFAULT_MAX_HEAD)
    }

    /// A server whose request heads may be at most `max_head` bytes
    /// (request line and headers, blank line included); longer ones get
    /// `431` and the connection closes.
    pub fn with_limits(handler: H, max_head: usize) -> Self {
        HttpServer {
            framer: Framer::new(max_head),
            handler,
            headers: Vec::new(),
            scratch: Vec::new(),
            stats: HttpStats::default(),
        }
    }

    /// Feeds bytes received on the connection, in order; `input` may hold
    /// any part of the stream (half a request, many pipelined requests).
    ///
    /// Appends to `out` the response to every request completed by these
    /// bytes, in request order, stamped with `now`. All of `input` is
    /// consumed: complete requests are parsed in place, the start of an
    /// unfinished head is kept (copied) until the rest arrives, request
    /// bodies are skipped.
    ///
    /// - `Ok(Flow::KeepAlive)`: send `out`, keep reading.
    /// - `Ok(Flow::Close)`: a response ended the connection (HTTP/1.0
    ///   without keep-alive, `Connection: close`, or the handler asked):
    ///   send `out`, then close.
    /// - `Err(e)`: a bad request. The responses before it and, if the error
    ///   has one ([`HttpError::status`]: 400 or 431), its error response
    ///   are in `out`: send them, then close.
    ///
    /// Once it has returned `Close` or an error, the server ignores input.
    pub fn on_data(
        &mut self,
        input: &[u8],
        now: &HttpDate,
        out: &mut Vec<u8>,
    ) -> Result<Flow, HttpError> {
        if self.framer.is_closed() {
            return Ok(Flow::Close);
        }
        self.stats.bytes_in += input.len() as u64;
        let start = out.len();
        let mut ctx = Ctx {
            handler: &mut self.handler,
            out: &mut *out,
            now,
            stats: &mut self.stats,
            headers: &mut self.headers,
            scratch: &mut self.scratch,
        };
        let r = self.framer.feed(input, &mut ctx);
        if let Err(e) = r {
            self.stats.bad_requests += 1;
            if let Some(status) = e.status() {
                self.stats.count_status(status);
                let body: &[u8] = if status == StatusCode::BAD_REQUEST {
                    b"Bad Request\n"
                } else {
                    b"Request Header Fields Too Large\n"
                };
                let ct = b"Content-Type: text/plain\r\n";
                write_response(out, now, status, ct, body, false, Conn::Close);
            }
        }
        self.stats.bytes_out += (out.len() - start) as u64;
        r
    }

    /// True once the connection should close (after `Close` or an error).
    #[inline]
    pub fn is_closed(&self) -> bool {
        self.framer.is_closed()
    }

    /// True if a request has started but not finished (its head or body
    /// is still arriving). If the peer closes now, that request is lost.
    #[inline]
    pub fn mid_request(&self) -> bool {
        self.framer.mid_message()
    }

    /// Bytes of an unfinished request head held back (at most the limit
    /// plus one).
    #[inline]
    pub fn buffered(&self) -> usize {
        self.framer.buffered()
    }

    /// This connection's counters.
    #[inline]
    pub fn stats(&self) -> &HttpStats {
        &self.stats
    }

    /// The handler.
    #[inline]
    pub fn handler(&self) -> &H {
        &self.handler
    }

    /// The handler, mutable.
    #[inline]
    pub fn handler_mut(&mut self) -> &mut H {
        &mut self.handler
    }
}

/// What the framer needs from the server while parsing one batch of input.
struct Ctx<'s, H> {
    handler: &'s mut H,
    out: &'s mut Vec<u8>,
    now: &'s HttpDate,
    stats: &'s mut HttpStats,
    headers: &'s mut Vec<u8>,
    scratch: &'s mut Vec<u8>,
}

impl<H: Handler> Peer for Ctx<'_, H> {
    fn head(&mut self, buf: &[u8]) -> Result<Step, HttpError> {
        let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut []);
        let len = match req.parse_with_uninit_headers(buf, &mut slots) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Ok(Step::Partial),
            Err(httparse::Error::TooManyHeaders) => return Err(HttpError::TooManyHeaders),
            Err(e) => return Err(HttpError::Parse(e)),
        };
        // All three are set when httparse reports a complete head.
        let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
            return Err(HttpError::Malformed);
        };

        let mut length = None;
        let mut transfer_encoding = false;
        let mut chunked = false;
        let mut conn_close = false;
        let mut conn_keep = false;
        let mut hosts = 0u32;
        let mut expect_continue = false;
        for h in req.headers.iter() {
            let name = h.name;
            if name.eq_ignore_ascii_case("content-length") {
                let n = parse_length(h.value)?;
                if length.is_some_and(|l| l != n) {
                    return Err(HttpError::BadContentLength);
                }
                length = Some(n);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                transfer_encoding = true;
                chunked = last_token(h.value).eq_ignore_ascii_case(b"chunked");
            } else if name.eq_ignore_ascii_case("connection") {
                conn_close |= has_token(h.value, "close");
                conn_keep |= has_token(h.value, "keep-alive");
            } else if name.eq_ignore_ascii_case("host") {
                hosts += 1;
            } else if name.eq_ignore_ascii_case("expect") {
                expect_continue |= h.value.trim_ascii().eq_ignore_ascii_case(b"100-continue");
            }
        }
        // RFC 9112 §6.1/§6.3: a request with Transfer-Encoding must end in
        // chunked, must not also carry Content-Length, and needs HTTP/1.1.
        if transfer_encoding && (!chunked || length.is_some() || minor == 0) {
            return Err(HttpError::BadTransferEncoding);
        }
        // RFC 9112 §3.2: exactly one Host in an HTTP/1.1 request.
        if minor == 1 && hosts != 1 {
            return Err(HttpError::Malformed);
        }
        let body = if chunked {
            BodyKind::Chunked
        } else {
            BodyKind::Length(length.unwrap_or(0))
        };
        if expect_continue && minor == 1 && body != BodyKind::Length(0) {
            self.out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
        }

        self.stats.requests += 1;
        let request = Request {
            method,
            target,
            minor,
            headers: req.headers,
            content_length: length,
        };
        self.headers.clear();
        let mut resp = ResponseWriter {
            status: StatusCode::OK,
            headers: self.headers,
            scratch: self.scratch,
            body: BodySrc::Static(b""),
            close: false,
        };
        self.handler.handle(&request, &mut resp);

        let keep = if minor == 0 {
            conn_keep && !conn_close
        } else {
            !conn_close
        };
        let close = !keep || resp.close;
        let conn = match (close, minor) {
            (true, _) => Conn::Close,
            (false, 0) => Conn::KeepAlive,
            (false, _) => Conn::Persist,
        };
        self.stats.count_status(resp.status);
        write_response(
            self.out,
            self.now,
            resp.status,
            resp.headers,
            resp.body_bytes(),
            request.is_head(),
            conn,
        );
        Ok(Step::Message {
            len,
            // After the last response nothing more is read: no need to
            // skip that request's body.
            body: if close { BodyKind::Empty } else { body },
            close,
        })
    }

    #[inline]
    fn message_done(&mut self, _body_len: u64) {}
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const NOW: u64 = 784_111_777;
    const DATE: &str = "Sun, 06 Nov 1994 08:49:37 GMT";

    fn now() -> HttpDate {
        HttpDate::new(NOW)
    }

    /// Feeds `pieces` one after the other to a fresh server.
    fn feed_pieces<H: Handler>(
        srv: &mut HttpServer<H>,
        pieces: &[&[u8]],
    ) -> (Vec<u8>, Result<Flow, HttpError>) {
        let mut out = Vec::new();
        // The first result that ends the connection, or the last one.
        let mut end = Ok(Flow::KeepAlive);
        for p in pieces {
            let r = srv.on_data(p, &now(), &mut out);
            if end == Ok(Flow::KeepAlive) {
                end = r;
            }
        }
        (out, end)
    }

    fn serve(input: &[u8]) -> (String, Result<Flow, HttpError>) {
        let (out, r) = feed_pieces(&mut HttpServer::new(), &[input]);
        (String::from_utf8(out).unwrap(), r)
    }

    /// The response the server should write, given the parts that vary.
    fn expect(status: &str, headers: &str, body: &str, conn: &str) -> String {
        format!(
            "HTTP/1.1 {status}\r\nServer: bypass\r\nDate: {DATE}\r\n{headers}Content-Length: {}\r\n{conn}\r\n{body}",
            body.len()
        )
    }

    const PLAIN: &str = "Content-Type: text/plain\r\n";

    #[test]
    fn plaintext_response_bytes_exactly() {
        let mut out = Vec::new();
        let r = HttpServer::new().on_data(
            b"GET /plaintext HTTP/1.1\r\nHost: localhost\r\n\r\n",
            &HttpDate::new(0),
            &mut out,
        );
        assert_eq!(r, Ok(Flow::KeepAlive));
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\n\
              Server: bypass\r\n\
              Date: Thu, 01 Jan 1970 00:00:00 GMT\r\n\
              Content-Type: text/plain\r\n\
              Content-Length: 13\r\n\
              \r\n\
              Hello, World!"
        );
    }

    #[test]
    fn routes() {
        let get = |path: &str| serve(format!("GET {path} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes());
        assert_eq!(
            get("/plaintext?x=1"),
            (
                expect("200 OK", PLAIN, "Hello, World!", ""),
                Ok(Flow::KeepAlive)
            )
        );
        assert_eq!(
            get("/json"),
            (
                expect(
                    "200 OK",
                    "Content-Type: application/json\r\n",
                    r#"{"message":"Hello, World!"}"#,
                    ""
                ),
                Ok(Flow::KeepAlive)
            )
        );
        let index = std::str::from_utf8(TechEmpower::INDEX).unwrap();
        assert_eq!(get("/").0, expect("200 OK", PLAIN, index, ""));
        assert_eq!(
            get("http://h/plaintext").0,
            expect("200 OK", PLAIN, "Hello, World!", "")
        );
        assert_eq!(
            get("/nope").0,
            expect("404 Not Found", PLAIN, "Not Found\n", "")
        );
        assert_eq!(
            get("/plaintext/").0,
            expect("404 Not Found", PLAIN, "Not Found\n", "")
        );
    }

    #[test]
    fn other_methods_get_405_with_allow() {
        for m in ["POST", "PUT", "DELETE", "OPTIONS", "get"] {
            let (out, r) = serve(format!("{m} /plaintext HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes());
            let hdrs = format!("Allow: GET, HEAD\r\n{PLAIN}");
            assert_eq!(
                out,
                expect("405 Method Not Allowed", &hdrs, "Method Not Allowed\n", "")
            );
            assert_eq!(r, Ok(Flow::KeepAlive));
        }
    }

    #[test]
    fn head_sends_headers_only() {
        let (out, r) = serve(b"HEAD /json HTTP/1.1\r\nHost: h\r\n\r\n");
        let full = expect(
            "200 OK",
            "Content-Type: application/json\r\n",
            r#"{"message":"Hello, World!"}"#,
            "",
        );
        assert!(full.starts_with(&out) && out.ends_with("\r\n\r\n"), "{out}");
        assert!(out.contains("Content-Length: 27\r\n"));
        assert_eq!(r, Ok(Flow::KeepAlive));
    }

    #[test]
    fn pipelined_requests_answered_in_order() {
        let (out, r) = serve(
            b"GET /json HTTP/1.1\r\nHost: h\r\n\r\n\
              GET /plaintext HTTP/1.1\r\nHost: h\r\n\r\n\
              GET /x HTTP/1.1\r\nHost: h\r\n\r\n\
              GET /plaintext HTTP/1.1\r\nHost: h\r\n\r\nGET /js",
        );
        let json = expect(
            "200 OK",
            "Content-Type: application/json\r\n",
            r#"{"message":"Hello, World!"}"#,
            "",
        );
        let plain = expect("200 OK", PLAIN, "Hello, World!", "");
        let nf = expect("404 Not Found", PLAIN, "Not Found\n", "");
        assert_eq!(out, format!("{json}{plain}{nf}{plain}"));
        assert_eq!(r, Ok(Flow::KeepAlive));
    }

    #[test]
    fn http10_closes_unless_keep_alive() {
        let (out, r) = serve(b"GET /plaintext HTTP/1.0\r\n\r\nGET /json HTTP/1.0\r\n\r\n");
        assert_eq!(
            out,
            expect("200 OK", PLAIN, "Hello, World!", "Connection: close\r\n")
        );
        assert_eq!(r, Ok(Flow::Close));

        let (out, r) = serve(b"GET /plaintext HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
        let ka = expect(
            "200 OK",
            PLAIN,
            "Hello, World!",
            "Connection: keep-alive\r\n",
        );
        assert_eq!((out, r), (ka, Ok(Flow::KeepAlive)));
    }

    #[test]
    fn connection_close_on_11_and_input_after_close_is_ignored() {
        let mut srv = HttpServer::new();
        let (out, r) = feed_pieces(
            &mut srv,
            &[b"GET /plaintext HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, close\r\n\r\nGET / HTTP/1.1\r\n"],
        );
        let close = expect("200 OK", PLAIN, "Hello, World!", "Connection: close\r\n");
        assert_eq!(
            (String::from_utf8(out).unwrap(), r),
            (close, Ok(Flow::Close))
        );
        assert!(srv.is_closed());
        let mut out = Vec::new();
        let r = srv.on_data(b"Host: h\r\n\r\n", &now(), &mut out);
        assert_eq!((out.len(), r), (0, Ok(Flow::Close)));
        assert_eq!(srv.stats().requests, 1);
    }

    #[test]
    fn garbage_gets_400_and_close() {
        let bad400 = expect(
            "400 Bad Request",
            PLAIN,
            "Bad Request\n",
            "Connection: close\r\n",
        );
        for bad in [
            &b"\x00\x01\x02\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: h\r\nBad Header\r\n\r\n",
            b"GET / HTTP/2.0\r\n\r\n",
            b"GET  / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\n\r\n",                     // no Host
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", // two Hosts
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: x\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
        ] {
            let mut srv = HttpServer::new();
            let (out, r) = feed_pieces(&mut srv, &[bad, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"]);
            let what = String::from_utf8_lossy(bad);
            assert_eq!(String::from_utf8(out).unwrap(), bad400, "{what}");
            assert!(r.is_err(), "{what}");
            assert!(srv.is_closed());
            assert_eq!(srv.stats().bad_requests, 1);
            assert_eq!(srv.stats().resp_4xx, 1);
        }
        let (_, r) = serve(b"GET / HTTP/1.1\r\nHost: h\r\nBad Header\r\n\r\n");
        assert_eq!(r, Err(HttpError::Parse(httparse::Error::HeaderName)));
    }

    #[test]
    fn oversized_head_gets_431() {
        let too_large = expect(
            "431 Request Header Fields Too Large",
            PLAIN,
            "Request Header Fields Too Large\n",
            "Connection: close\r\n",
        );
        // A head of exactly `len` bytes.
        let head = |len: usize| {
            let fixed = "GET /plaintext HTTP/1.1\r\nHost: h\r\nX: \r\n\r\n".len();
            format!(
                "GET /plaintext HTTP/1.1\r\nHost: h\r\nX: {}\r\n\r\n",
                "a".repeat(len - fixed)
            )
        };
        let fits = head(DEFAULT_MAX_HEAD);
        assert_eq!(fits.len(), DEFAULT_MAX_HEAD);
        let over = head(DEFAULT_MAX_HEAD + 1);
        for split in [0, 1, 100, DEFAULT_MAX_HEAD - 1, DEFAULT_MAX_HEAD] {
            let mut srv = HttpServer::new();
            let (a, b) = fits.as_bytes().split_at(split);
            let (out, r) = feed_pieces(&mut srv, &[a, b]);
            assert_eq!(r, Ok(Flow::KeepAlive), "split {split}");
            assert!(out.ends_with(b"Hello, World!"));

            let mut srv = HttpServer::new();
            let (a, b) = over.as_bytes().split_at(split);
            let (out, r) = feed_pieces(&mut srv, &[a, b]);
            assert_eq!(r, Err(HttpError::HeadTooLarge), "split {split}");
            assert_eq!(String::from_utf8(out).unwrap(), too_large);
            assert!(srv.buffered() == 0 && srv.is_closed());
        }
        // A line that never ends is cut off at the limit, however it comes.
        let mut srv = HttpServer::new();
        let mut out = Vec::new();
        let mut r = srv.on_data(b"GET /", &now(), &mut out);
        let mut fed = 5;
        while r == Ok(Flow::KeepAlive) {
            r = srv.on_data(b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", &now(), &mut out);
            fed += 30;
            assert!(srv.buffered() <= DEFAULT_MAX_HEAD + 1);
        }
        assert_eq!(r, Err(HttpError::HeadTooLarge));
        assert!(fed > DEFAULT_MAX_HEAD && fed < DEFAULT_MAX_HEAD + 100);
        // Too many header lines.
        let many = format!(
            "GET / HTTP/1.1\r\nHost: h\r\n{}\r\n",
            "A: b\r\n".repeat(MAX_HEADERS)
        );
        assert_eq!(serve(many.as_bytes()).1, Err(HttpError::TooManyHeaders));
        // A custom limit.
        let mut small = HttpServer::with_limits(TechEmpower, 40);
        let (_, r) = feed_pieces(
            &mut small,
            &[b"GET /plaintext HTTP/1.1\r\nHost: h\r\nA: b\r\n\r\n"],
        );
        assert_eq!(r, Err(HttpError::HeadTooLarge));
    }

    #[test]
    fn request_bodies_are_skipped() {
        // The bodies look like requests; they must not be answered.
        let body = "GET /json HTTP/1.1\r\nHost: h\r\n\r\n";
        let chunked =
            "5\r\nGET /\r\n1A;x=y\r\njson HTTP/1.1\r\nHost: h\r\n\r\n\r\n0\r\nT: v\r\n\r\n";
        let input = format!(
            "POST /plaintext HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n{body}\
             GET /plaintext HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n\
             PUT / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n{chunked}\
             GET /nope HTTP/1.1\r\nHost: h\r\n\r\n",
            body.len()
        );
        let (out, r) = serve(input.as_bytes());
        let e405 = expect(
            "405 Method Not Allowed",
            &format!("Allow: GET, HEAD\r\n{PLAIN}"),
            "Method Not Allowed\n",
            "",
        );
        let plain = expect("200 OK", PLAIN, "Hello, World!", "");
        let nf = expect("404 Not Found", PLAIN, "Not Found\n", "");
        assert_eq!(out, format!("{e405}{plain}{e405}{nf}"));
        assert_eq!(r, Ok(Flow::KeepAlive));

        // A malformed chunked body closes without another response.
        let (out, r) =
            serve(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n");
        assert_eq!(r, Err(HttpError::BadChunk));
        assert!(out.starts_with("HTTP/1.1 405") && out.matches("HTTP/1.1").count() == 1);
    }

    #[test]
    fn expect_100_continue() {
        let (out, r) = serve(
            b"POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi",
        );
        assert!(
            out.starts_with("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 405 "),
            "{out}"
        );
        assert_eq!(r, Ok(Flow::KeepAlive));
        // No body: no interim response.
        let (out, _) = serve(b"GET / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n\r\n");
        assert!(out.starts_with("HTTP/1.1 200 OK"));
    }

    /// A stream that exercises most paths, ending in an HTTP/1.0 close.
    fn mixed_stream() -> Vec<u8> {
        let mut s = Vec::new();
        s.extend_from_slice(b"\r\nGET /plaintext HTTP/1.1\r\nHost: h\r\nUser-Agent: t\r\n\r\n");
        s.extend_from_slice(b"GET /json HTTP/1.1\nHost: h\n\n");
        s.extend_from_slice(
            b"POST /json HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n0123456789",
        );
        s.extend_from_slice(b"HEAD / HTTP/1.1\r\nHost: h\r\n\r\n");
        s.extend_from_slice(
            b"PUT / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        );
        s.extend_from_slice(b"GET /missing HTTP/1.1\r\nHost: h\r\n\r\n");
        s.extend_from_slice(b"GET /plaintext HTTP/1.0\r\n\r\n");
        s.extend_from_slice(b"GET /json HTTP/1.1\r\nHost: h\r\n\r\n");
        s
    }

    #[test]
    fn every_split_point_gives_the_same_output() {
        for stream in [
            mixed_stream(),
            b"GET /plaintext HTTP/1.1\r\nHost: h\r\n\r\nGET /x HTTP/1.1\r\nHost h\r\n\r\n".to_vec(),
        ] {
            let (whole, r_whole) = feed_pieces(&mut HttpServer::new(), &[&stream]);
            assert!(whole.len() > 100);
            for i in 0..=stream.len() {
                let (a, b) = stream.split_at(i);
                let (out, r) = feed_pieces(&mut HttpServer::new(), &[a, b]);
                assert_eq!(out, whole, "split at {i}");
                assert_eq!(r, r_whole, "split at {i}");
                for j in i..=stream.len() {
                    let (b, c) = stream[i..].split_at(j - i);
                    let (out, _) = feed_pieces(&mut HttpServer::new(), &[a, b, c]);
                    assert_eq!(out, whole, "split at {i} and {j}");
                }
            }
            let bytes: Vec<&[u8]> = stream.chunks(1).collect();
            let (out, r) = feed_pieces(&mut HttpServer::new(), &bytes);
            assert_eq!((out, r), (whole, r_whole), "byte by byte");
        }
        let (out, r) = feed_pieces(&mut HttpServer::new(), &[&mixed_stream()]);
        assert_eq!(r, Ok(Flow::Close));
        assert_eq!(
            String::from_utf8(out).unwrap().matches("HTTP/1.1 ").count(),
            7
        );
    }

    #[test]
    fn parses_in_place_and_buffers_only_the_tail() {
        let mut srv = HttpServer::new();
        let mut out = Vec::new();
        let two = b"GET /plaintext HTTP/1.1\r\nHost: h\r\n\r\nGET /json HTTP/1.1\r\nHo";
        assert_eq!(srv.on_data(two, &now(), &mut out), Ok(Flow::KeepAlive));
        assert_eq!(srv.buffered(), "GET /json HTTP/1.1\r\nHo".len());
        assert!(srv.mid_request());
        let rest = b"st: h\r\n\r\nGET /plaintext HTTP/1.1\r\nHost: h\r\n\r\n";
        assert_eq!(srv.on_data(rest, &now(), &mut out), Ok(Flow::KeepAlive));
        assert_eq!(srv.buffered(), 0);
        assert!(!srv.mid_request());
        assert_eq!(srv.stats().requests, 3);
    }

    #[test]
    fn stats_add_up() {
        let mut srv = HttpServer::new();
        let input =
            b"GET / HTTP/1.1\r\nHost: h\r\n\r\nGET /x HTTP/1.1\r\nHost: h\r\n\r\nBAD\r\n\r\n";
        let (out, r) = feed_pieces(&mut srv, &[input]);
        assert!(r.is_err());
        let s = *srv.stats();
        assert_eq!(
            s,
            HttpStats {
                requests: 2,
                resp_2xx: 1,
                resp_4xx: 2,
                bad_requests: 1,
                bytes_in: input.len() as u64,
                bytes_out: out.len() as u64,
                ..HttpStats::default()
            }
        );
        let mut sum = HttpStats::default();
        sum += s;
        sum += s;
        assert_eq!(sum.requests, 4);
        assert_eq!(sum.bytes_out, 2 * out.len() as u64);
    }

    #[test]
    fn custom_handler() {
        let handler = |req: &Request<'_>, resp: &mut ResponseWriter<'_>| {
            assert_eq!(
                resp.header("Content-Length", b"1").err(),
                Some(HttpError::InvalidHeader(
                    "the server writes this header itself"
                ))
            );
            assert!(resp.header("X-Bad", b"a\r\nInjected: 1").is_err());
            assert!(resp.header("Bad Name", b"v").is_err());
            match req.path() {
                "/echo" => {
                    use std::io::Write;
                    resp.header("X-Query", req.query().unwrap_or("").as_bytes())
                        .unwrap()
                        .body_static(b"ignored");
                    write!(resp.body_mut(), "{} {}", req.method(), req.target()).unwrap();
                    assert_eq!(req.header("user-agent"), Some(&b"me"[..]));
                    assert_eq!(req.headers().count(), 2);
                }
                "/empty" => {
                    resp.status(StatusCode::NO_CONTENT).body(b"dropped");
                }
                _ => {
                    resp.status(StatusCode::new(503).unwrap()).close();
                }
            }
        };
        let mut srv = HttpServer::with_handler(handler);
        let (out, r) = feed_pieces(
            &mut srv,
            &[
                b"GET /echo?a=1 HTTP/1.1\r\nHost: h\r\nUser-Agent: me\r\n\r\n\
                GET /empty HTTP/1.1\r\nHost: h\r\n\r\n\
                GET /bye HTTP/1.1\r\nHost: h\r\n\r\n",
            ],
        );
        let echo = expect("200 OK", "X-Query: a=1\r\n", "GET /echo?a=1", "");
        let empty = format!("HTTP/1.1 204 No Content\r\nServer: bypass\r\nDate: {DATE}\r\n\r\n");
        let bye = expect("503 Service Unavailable", "", "", "Connection: close\r\n");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("{echo}{empty}{bye}")
        );
        assert_eq!(r, Ok(Flow::Close));
        assert_eq!(srv.stats().resp_5xx, 1);
        assert_eq!(StatusCode::new(199), None);
        assert_eq!(StatusCode::new(600), None);
    }

    /// xorshift64*: deterministic, no dependency.
    pub(crate) struct Rng(pub(crate) u64);

    impl Rng {
        pub(crate) fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        pub(crate) fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    /// Random streams built from request fragments and noise, fed in
    /// random pieces: never a panic, and the output never depends on
    /// how the stream was cut.
    #[test]
    fn random_input_and_splits_never_panic_and_agree() {
        const FRAGMENTS: [&[u8]; 16] = [
            b"GET /plaintext HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET /json HTTP/1.1\r\n",
            b"Host: h\r\n",
            b"\r\n",
            b"\n",
            b"HEAD / HTTP/1.0\r\n",
            b"Connection: keep-alive\r\n",
            b"Content-Length: 3\r\n",
            b"Transfer-Encoding: chunked\r\n",
            b"POST /x HTTP/1.1\r\n",
            b"3\r\nabc\r\n0\r\n\r\n",
            b"Expect: 100-continue\r\n",
            b"X-Long: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n",
            b": \t",
            b"GET",
            b" ",
        ];
        const REQUESTS: [&[u8]; 5] = [
            b"GET /plaintext HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET /json HTTP/1.1\r\nHost: h\r\nAccept: */*\r\n\r\n",
            b"HEAD /nope HTTP/1.1\r\nHost: h\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc",
            b"PUT / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n",
        ];
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut seen = HttpStats::default();
        for round in 0..3_000 {
            let mut stream = Vec::new();
            for _ in 0..rng.below(24) {
                let pick = rng.below(10);
                if pick < 6 {
                    stream.extend_from_slice(REQUESTS[rng.below(REQUESTS.len())]);
                } else if pick == 6 {
                    for _ in 0..rng.below(8) {
                        stream.push(rng.next() as u8);
                    }
                } else {
                    stream.extend_from_slice(FRAGMENTS[rng.below(FRAGMENTS.len())]);
                }
            }
            let limit = [DEFAULT_MAX_HEAD, 64, 200][rng.below(3)];
            let new = || HttpServer::with_limits(TechEmpower, limit);
            let (whole, r_whole) = feed_pieces(&mut new(), &[&stream]);
            let mut pieces = Vec::new();
            let mut rest = &stream[..];
            while !rest.is_empty() {
                let (a, b) = rest.split_at(rng.below(rest.len() + 1).min(rest.len()));
                pieces.push(a);
                rest = b;
            }
            let mut srv = new();
            let (out, r) = feed_pieces(&mut srv, &pieces);
            assert_eq!(
                out,
                whole,
                "round {round}: {:?}",
                String::from_utf8_lossy(&stream)
            );
            assert_eq!(r, r_whole, "round {round}");
            assert!(srv.buffered() <= limit + 1);
            seen += *srv.stats();
        }
        // The generator reaches the interesting paths.
        let ok = seen.requests > 2_500 && seen.resp_2xx > 1_000 && seen.bad_requests > 1_000;
        assert!(ok, "{seen:?}");
    }
}
