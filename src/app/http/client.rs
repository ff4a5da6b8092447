//! The client side: [`HttpClient`], one per connection of a load
//! generator. It writes pipelined `GET`s and reports each response as it
//! completes, so the caller can time every request.

use std::mem::MaybeUninit;

use super::framing::{BodyKind, Flow, Framer, Peer, Step};
use super::{has_token, last_token, parse_length, HttpError, DEFAULT_MAX_HEAD, MAX_HEADERS};

/// One complete response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completed {
    /// Its status code.
    pub status: u16,
    /// Payload bytes of its body (chunk data only, for chunked bodies).
    pub body_len: u64,
    /// The server closes the connection after it: requests still in
    /// flight will not be answered.
    pub close: bool,
}

/// Per-connection client counters; add them up with `+=`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ClientStats {
    /// Requests written.
    pub requests: u64,
    /// Final responses completed.
    pub responses: u64,
    /// ... with a 2xx status.
    pub resp_2xx: u64,
    /// ... 3xx.
    pub resp_3xx: u64,
    /// ... 4xx.
    pub resp_4xx: u64,
    /// ... 5xx (and anything else).
    pub resp_5xx: u64,
    /// Connections ended by an [`HttpError`].
    pub errors: u64,
    /// Bytes fed to `on_data`.
    pub bytes_in: u64,
    /// Bytes of requests written.
    pub bytes_out: u64,
}

impl std::ops::AddAssign for ClientStats {
    fn add_assign(&mut self, o: ClientStats) {
        self.requests += o.requests;
        self.responses += o.responses;
        self.resp_2xx += o.resp_2xx;
        self.resp_3xx += o.resp_3xx;
        self.resp_4xx += o.resp_4xx;
        self.resp_5xx += o.resp_5xx;
        self.errors += o.errors;
        self.bytes_in += o.bytes_in;
        self.bytes_out += o.bytes_out;
    }
}

/// The client's side of one connection.
///
/// ```
/// use bypass::app::http::{Completed, Flow, HttpClient};
///
/// let mut c = HttpClient::new("example").unwrap();
/// let mut out = Vec::new();
/// c.write_get("/plaintext", &mut out).unwrap();
/// c.write_get("/plaintext", &mut out).unwrap();
/// let mut got = Vec::new();
/// let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi";
/// assert_eq!(c.on_data(resp, |r: Completed| got.push(r.status)), Ok(Flow::KeepAlive));
/// assert_eq!((got, c.in_flight()), (vec![200], 1));
/// ```
#[derive(Debug)]
pub struct HttpClient {
    framer: Framer,
    host: String,
    in_flight: u64,
    current: Completed,
    interim: bool,
    stats: ClientStats,
}

impl HttpClient {
    /// A client sending `Host: host`. Fails on a host with control
    /// characters or spaces.
    pub fn new(host: &str) -> Result<HttpClient, HttpError> {
        Self::with_limits(host, DEFAULT_MAX_HEAD)
    }

    /// Like [`HttpClient::new`], with a limit on response heads.
    pub fn with_limits(host: &str, max_head: usize) -> Result<HttpClient, HttpError> {
        if host.is_empty() || !host.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(HttpError::InvalidHeader("Host must be visible ASCII"));
        }
        Ok(HttpClient {
            framer: Framer::new(max_head),
            host: host.to_owned(),
            in_flight: 0,
            current: Completed {
                status: 0,
                body_len: 0,
                close: false,
            },
            interim: false,
            stats: ClientStats::default(),
        })
    }

    /// Appends `GET path HTTP/1.1` with `Host` to `out` and counts it as
    /// in flight. Call it as often as you like before responses come back
    /// (pipelining); responses are reported in the same order.
    pub fn write_get(&mut self, path: &str, out: &mut Vec<u8>) -> Result<(), HttpError> {
        if path.is_empty() || !path.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(HttpError::InvalidTarget);
        }
        let start = out.len();
        out.extend_from_slice(b"GET ");
        out.extend_from_slice(path.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
        out.extend_from_slice(self.host.as_bytes());
        out.extend_from_slice(b"\r\n\r\n");
        self.in_flight += 1;
        self.stats.requests += 1;
        self.stats.bytes_out += (out.len() - start) as u64;
        Ok(())
    }

    /// Feeds bytes received on the connection, in any pieces. Calls
    /// `on_response` once per completed final response, in order (1xx
    /// interim responses are skipped). Consumes all of `input`.
    ///
    /// - `Ok(Flow::KeepAlive)`: keep going.
    /// - `Ok(Flow::Close)`: the server closes after the last reported
    ///   response; [`HttpClient::in_flight`] requests went unanswered.
    /// - `Err(e)`: the server broke the protocol; close the connection.
    pub fn on_data<F: FnMut(Completed)>(
        &mut self,
        input: &[u8],
        mut on_response: F,
    ) -> Result<Flow, HttpError> {
        if self.framer.is_closed() {
            return Ok(Flow::Close);
        }
        self.stats.bytes_in += input.len() as u64;
        let mut ctx = Ctx {
            in_flight: &mut self.in_flight,
            current: &mut self.current,
            interim: &mut self.interim,
            stats: &mut self.stats,
            on_response: &mut on_response,
        };
        let r = self.framer.feed(input, &mut ctx);
        if r.is_err() {
            self.stats.errors += 1;
        }
        r
    }

    /// The server closed its side. A response whose body runs until close
    /// completes now (reported through `on_response`). `Err(Truncated)` if
    /// a response was cut short. Either way the client is closed after.
    pub fn on_eof<F: FnMut(Completed)>(&mut self, mut on_response: F) -> Result<(), HttpError> {
        if self.framer.is_closed() {
            return Ok(());
        }
        if self.framer.body_until_close() {
            let mut ctx = Ctx {
                in_flight: &mut self.in_flight,
                current: &mut self.current,
                interim: &mut self.interim,
                stats: &mut self.stats,
                on_response: &mut on_response,
            };
            self.framer.finish_until_close(&mut ctx);
            return Ok(());
        }
        let cut = self.framer.mid_message();
        self.framer.close();
        if cut {
            self.stats.errors += 1;
            return Err(HttpError::Truncated);
        }
        Ok(())
    }

    /// Requests written and not yet answered.
    #[inline]
    pub fn in_flight(&self) -> u64 {
        self.in_flight
    }

    /// True once the connection is done (after `Close`, an error or EOF).
    #[inline]
    pub fn is_closed(&self) -> bool {
        self.framer.is_closed()
    }

    /// This connection's counters.
    #[inline]
    pub fn stats(&self) -> &ClientStats {
        &self.stats
    }
}

struct Ctx<'c, F> {
    in_flight: &'c mut u64,
    current: &'c mut Completed,
    interim: &'c mut bool,
    stats: &'c mut ClientStats,
    on_response: &'c mut F,
}

impl<F: FnMut(Completed)> Peer for Ctx<'_, F> {
    fn head(&mut self, buf: &[u8]) -> Result<Step, HttpError> {
        if *self.in_flight == 0 {
            return Err(HttpError::Unsolicited);
        }
        let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut []);
        let len = match httparse::ParserConfig::default()
            .parse_response_with_uninit_headers(&mut resp, buf, &mut slots)
        {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Ok(Step::Partial),
            Err(httparse::Error::TooManyHeaders) => return Err(HttpError::TooManyHeaders),
            Err(e) => return Err(HttpError::Parse(e)),
        };
        // Both are set when httparse reports a complete head.
        let (Some(code), Some(minor)) = (resp.code, resp.version) else {
            return Err(HttpError::Malformed);
        };
        let mut length = None;
        let mut transfer_encoding = false;
        let mut chunked = false;
        let mut conn_close = false;
        let mut conn_keep = false;
        for h in resp.headers.iter() {
            if h.name.eq_ignore_ascii_case("content-length") {
                let n = parse_length(h.value)?;
                if length.is_some_and(|l| l != n) {
                    return Err(HttpError::BadContentLength);
                }
                length = Some(n);
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                transfer_encoding = true;
                chunked = last_token(h.value).eq_ignore_ascii_case(b"chunked");
            } else if h.name.eq_ignore_ascii_case("connection") {
                conn_close |= has_token(h.value, "close");
                conn_keep |= has_token(h.value, "keep-alive");
            }
        }
        // We never ask to switch protocols, and 1xx before HTTP/1.1 do not
        // exist: either is the server's error.
        if code == 101 || (code < 200 && minor == 0) {
            return Err(HttpError::Malformed);
        }
        if code < 200 {
            *self.interim = true;
            return Ok(Step::Message {
                len,
                body: BodyKind::Empty,
                close: false,
            });
        }
        // RFC 9112 §6.3, in order (we never send HEAD or CONNECT).
        let body = if code == 204 || code == 304 {
            BodyKind::Empty
        } else if transfer_encoding {
            if chunked {
                BodyKind::Chunked
            } else {
                BodyKind::UntilClose
            }
        } else {
            match length {
                Some(n) => BodyKind::Length(n),
                None => BodyKind::UntilClose,
            }
        };
        let keep = if minor == 0 {
            conn_keep && !conn_close
        } else {
            !conn_close
        };
        let close = !keep || body == BodyKind::UntilClose;
        *self.interim = false;
        *self.current = Completed {
            status: code,
            body_len: 0,
            close,
        };
        Ok(Step::Message { len, body, close })
    }

    fn message_done(&mut self, body_len: u64) {
        if *self.interim {
            return;
        }
        // `head` refuses a response while none is in flight.
        *self.in_flight = self.in_flight.saturating_sub(1);
        self.current.body_len = body_len;
        self.stats.responses += 1;
        match self.current.status / 100 {
            2 => self.stats.resp_2xx += 1,
            3 => self.stats.resp_3xx += 1,
            4 => self.stats.resp_4xx += 1,
            _ => self.stats.resp_5xx += 1,
        }
        (self.on_response)(*self.current);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::http::{HttpDate, HttpServer, TechEmpower};

    fn collect(c: &mut HttpClient, pieces: &[&[u8]]) -> (Vec<Completed>, Result<Flow, HttpError>) {
        let mut got = Vec::new();
        let mut end = Ok(Flow::KeepAlive);
        for p in pieces {
            let r = c.on_data(p, |r| got.push(r));
            if end == Ok(Flow::KeepAlive) {
                end = r;
            }
        }
        (got, end)
    }

    fn ok(status: u16, body_len: usize) -> Completed {
        Completed {
            status,
            body_len: body_len as u64,
            close: false,
        }
    }

    const PATHS: [&str; 4] = ["/plaintext", "/json", "/nope", "/"];

    /// Requests from a client, answered by a server: (client, server output).
    fn exchange(rounds: usize) -> (HttpClient, Vec<u8>, Vec<Completed>) {
        let mut c = HttpClient::new("bench.local").unwrap();
        let mut reqs = Vec::new();
        let mut want = Vec::new();
        for _ in 0..rounds {
            for p in PATHS {
                c.write_get(p, &mut reqs).unwrap();
            }
            want.extend([
                ok(200, TechEmpower::PLAINTEXT.len()),
                ok(200, TechEmpower::JSON.len()),
                ok(404, "Not Found\n".len()),
                ok(200, TechEmpower::INDEX.len()),
            ]);
        }
        let mut out = Vec::new();
        let r = HttpServer::new().on_data(&reqs, &HttpDate::new(0), &mut out);
        assert_eq!(r, Ok(Flow::KeepAlive));
        (c, out, want)
    }

    #[test]
    fn round_trip_pipelined() {
        let (mut c, out, want) = exchange(3);
        assert_eq!(c.in_flight(), 12);
        let (got, r) = collect(&mut c, &[&out]);
        assert_eq!((got, r), (want, Ok(Flow::KeepAlive)));
        assert_eq!(c.in_flight(), 0);
        let s = *c.stats();
        assert_eq!(
            (s.requests, s.responses, s.resp_2xx, s.resp_4xx),
            (12, 12, 9, 3)
        );
        assert_eq!(s.bytes_in, out.len() as u64);
        let mut reqs = Vec::new();
        c.write_get("/x", &mut reqs).unwrap();
        assert_eq!(reqs, b"GET /x HTTP/1.1\r\nHost: bench.local\r\n\r\n");
    }

    #[test]
    fn responses_split_anywhere() {
        let (c0, out, want) = exchange(1);
        let fresh = || {
            let mut c = HttpClient::new("h").unwrap();
            let mut sink = Vec::new();
            for _ in 0..c0.in_flight() {
                c.write_get("/", &mut sink).unwrap();
            }
            c
        };
        for i in 0..=out.len() {
            let (a, b) = out.split_at(i);
            let (got, r) = collect(&mut fresh(), &[a, b]);
            assert_eq!(
                (got, r),
                (want.clone(), Ok(Flow::KeepAlive)),
                "split at {i}"
            );
        }
        let bytes: Vec<&[u8]> = out.chunks(1).collect();
        assert_eq!(collect(&mut fresh(), &bytes).0, want);
    }

    #[test]
    fn chunked_interim_and_close_delimited_bodies() {
        let mut c = HttpClient::new("h").unwrap();
        let mut sink = Vec::new();
        for _ in 0..4 {
            c.write_get("/", &mut sink).unwrap();
        }
        let stream: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n\
            HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n\
            HTTP/1.1 204 No Content\r\n\r\n\
            HTTP/1.0 200 OK\r\n\r\nuntil the end";
        for i in 0..=stream.len() {
            let mut c = HttpClient::new("h").unwrap();
            for _ in 0..4 {
                c.write_get("/", &mut sink).unwrap();
            }
            let (a, b) = stream.split_at(i);
            let (mut got, r) = collect(&mut c, &[a, b]);
            assert_eq!(r, Ok(Flow::KeepAlive), "split at {i}");
            assert_eq!(c.on_eof(|r| got.push(r)), Ok(()));
            let last = Completed {
                status: 200,
                body_len: 13,
                close: true,
            };
            assert_eq!(got, [ok(200, 5), ok(204, 0), last], "split at {i}");
            assert_eq!(c.in_flight(), 1);
            assert!(c.is_closed());
        }
        let (got, r) = collect(
            &mut c,
            &[b"HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\nHTTP"],
        );
        assert_eq!(r, Ok(Flow::Close));
        assert_eq!(
            got,
            [Completed {
                status: 404,
                body_len: 0,
                close: true
            }]
        );
        assert_eq!(c.in_flight(), 3);
    }

    #[test]
    fn protocol_errors() {
        let mut c = HttpClient::new("h").unwrap();
        assert_eq!(
            c.on_data(b"HTTP/1.1 200 OK\r\n", |_| {}),
            Err(HttpError::Unsolicited)
        );
        assert!(c.is_closed());

        let mut c = HttpClient::new("h").unwrap();
        c.write_get("/", &mut Vec::new()).unwrap();
        assert_eq!(
            c.on_data(b"HTTP/1.1 200 OK\r\nContent-Le", |_| {}),
            Ok(Flow::KeepAlive)
        );
        assert_eq!(c.on_eof(|_| {}), Err(HttpError::Truncated));
        assert_eq!(c.stats().errors, 1);

        let mut c = HttpClient::new("h").unwrap();
        c.write_get("/", &mut Vec::new()).unwrap();
        assert_eq!(c.on_eof(|_| {}), Ok(()));

        for bad in [
            &b"HTTX/1.1 200 OK\r\n\r\n"[..],
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nxyz\r\n",
        ] {
            let mut c = HttpClient::new("h").unwrap();
            c.write_get("/", &mut Vec::new()).unwrap();
            assert!(
                c.on_data(bad, |_| {}).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let mut c = HttpClient::with_limits("h", 32).unwrap();
        c.write_get("/", &mut Vec::new()).unwrap();
        let r = c.on_data(
            b"HTTP/1.1 200 OK\r\nX-Pad: aaaaaaaaaaaaaaaaaaaa\r\n\r\n",
            |_| {},
        );
        assert_eq!(r, Err(HttpError::HeadTooLarge));

        let mut c = HttpClient::new("h").unwrap();
        assert_eq!(
            c.write_get("/a b", &mut Vec::new()),
            Err(HttpError::InvalidTarget)
        );
        assert_eq!(
            c.write_get("", &mut Vec::new()),
            Err(HttpError::InvalidTarget)
        );
        assert!(HttpClient::new("a\r\nb").is_err());
        assert_eq!(c.in_flight(), 0);
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = crate::app::http::server::tests::Rng(12345);
        let valid = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        for _ in 0..3_000 {
            let mut c = HttpClient::with_limits("h", 128).unwrap();
            for _ in 0..rng.below(6) {
                c.write_get("/", &mut Vec::new()).unwrap();
            }
            let mut stream = Vec::new();
            for _ in 0..rng.below(10) {
                if rng.below(2) == 0 {
                    stream.extend_from_slice(&valid[..rng.below(valid.len() + 1)]);
                } else {
                    stream.push(rng.next() as u8);
                }
            }
            let mut rest = &stream[..];
            let mut n = 0;
            while !rest.is_empty() {
                let (a, b) = rest.split_at(rng.below(rest.len()) + 1);
                let _ = c.on_data(a, |_| n += 1);
                rest = b;
            }
            let _ = c.on_eof(|_| n += 1);
            assert!(n <= c.stats().requests);
            assert!(c.is_closed());
        }
    }
}
