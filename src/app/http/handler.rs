//! What a request handler sees and answers with: the parsed [`Request`],
//! the [`ResponseWriter`] it fills (status, headers checked as they are
//! added, body), the [`Handler`] trait, and the default handler,
//! [`TechEmpower`]. The server that drives them is in `server.rs`.

use super::HttpError;

/// A final response status (200..=599).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StatusCode(u16);

impl StatusCode {
    /// 200 OK.
    pub const OK: StatusCode = StatusCode(200);
    /// 201 Created.
    pub const CREATED: StatusCode = StatusCode(201);
    /// 204 No Content (sent without a body or `Content-Length`).
    pub const NO_CONTENT: StatusCode = StatusCode(204);
    /// 301 Moved Permanently.
    pub const MOVED_PERMANENTLY: StatusCode = StatusCode(301);
    /// 302 Found.
    pub const FOUND: StatusCode = StatusCode(302);
    /// 304 Not Modified (sent without a body or `Content-Length`).
    pub const NOT_MODIFIED: StatusCode = StatusCode(304);
    /// 400 Bad Request.
    pub const BAD_REQUEST: StatusCode = StatusCode(400);
    /// 403 Forbidden.
    pub const FORBIDDEN: StatusCode = StatusCode(403);
    /// 404 Not Found.
    pub const NOT_FOUND: StatusCode = StatusCode(404);
    /// 405 Method Not Allowed.
    pub const METHOD_NOT_ALLOWED: StatusCode = StatusCode(405);
    /// 413 Content Too Large.
    pub const CONTENT_TOO_LARGE: StatusCode = StatusCode(413);
    /// 431 Request Header Fields Too Large.
    pub const REQUEST_HEADER_FIELDS_TOO_LARGE: StatusCode = StatusCode(431);
    /// 500 Internal Server Error.
    pub const INTERNAL_SERVER_ERROR: StatusCode = StatusCode(500);
    /// 501 Not Implemented.
    pub const NOT_IMPLEMENTED: StatusCode = StatusCode(501);
    /// 503 Service Unavailable.
    pub const SERVICE_UNAVAILABLE: StatusCode = StatusCode(503);

    /// A final status; `None` outside 200..=599 (1xx are interim and
    /// handled by the server itself).
    pub const fn new(code: u16) -> Option<StatusCode> {
        if code >= 200 && code <= 599 {
            Some(StatusCode(code))
        } else {
            None
        }
    }

    /// The number.
    #[inline]
    pub const fn as_u16(self) -> u16 {
        self.0
    }

    /// The standard reason phrase, or `""` for codes without one.
    pub const fn reason(self) -> &'static str {
        match self.0 {
            200 => "OK",
            201 => "Created",
            202 => "Accepted",
            204 => "No Content",
            206 => "Partial Content",
            301 => "Moved Permanently",
            302 => "Found",
            303 => "See Other",
            304 => "Not Modified",
            307 => "Temporary Redirect",
            308 => "Permanent Redirect",
            400 => "Bad Request",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "Not Found",
            405 => "Method Not Allowed",
            408 => "Request Timeout",
            411 => "Length Required",
            413 => "Content Too Large",
            414 => "URI Too Long",
            415 => "Unsupported Media Type",
            417 => "Expectation Failed",
            429 => "Too Many Requests",
            431 => "Request Header Fields Too Large",
            500 => "Internal Server Error",
            501 => "Not Implemented",
            502 => "Bad Gateway",
            503 => "Service Unavailable",
            504 => "Gateway Timeout",
            _ => "",
        }
    }

    /// 204 and 304 carry neither a body nor a `Content-Length`.
    #[inline]
    pub(super) const fn bodyless(self) -> bool {
        self.0 == 204 || self.0 == 304
    }
}

/// Headers the server writes itself; handlers may not set them.
const MANAGED: [&str; 5] = [
    "content-length",
    "transfer-encoding",
    "connection",
    "date",
    "server",
];

const fn eq_ignore_case(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if !a[i].eq_ignore_ascii_case(&b[i]) {
            return false;
        }
        i += 1;
    }
    true
}

/// Why `name: value` may not be written by a handler, if it may not.
const fn check_header(name: &[u8], value: &[u8]) -> Option<&'static str> {
    if name.is_empty() {
        return Some("empty header name");
    }
    let mut i = 0;
    while i < name.len() {
        let b = name[i];
        let tchar = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        if !tchar {
            return Some("header name is not a token");
        }
        i += 1;
    }
    let mut i = 0;
    while i < MANAGED.len() {
        if eq_ignore_case(name, MANAGED[i].as_bytes()) {
            return Some("the server writes this header itself");
        }
        i += 1;
    }
    let mut i = 0;
    while i < value.len() {
        let b = value[i];
        if (b < 0x20 && b != b'\t') || b == 0x7f {
            return Some("control character in header value");
        }
        i += 1;
    }
    None
}

/// A header line checked once, at compile time when used in a `const`:
///
/// ```
/// use bypass::app::http::StaticHeader;
/// const CT: StaticHeader = StaticHeader::new("Content-Type", "text/html");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StaticHeader {
    name: &'static str,
    value: &'static str,
}

impl StaticHeader {
    /// # Panics
    ///
    /// If the name is not a token, is one the server writes itself
    /// (`Content-Length`, `Transfer-Encoding`, `Connection`, `Date`,
    /// `Server`), or the value has control characters. In a `const` item
    /// that is a compile error, never a run-time panic.
    pub const fn new(name: &'static str, value: &'static str) -> StaticHeader {
        if check_header(name.as_bytes(), value.as_bytes()).is_some() {
            panic!("invalid StaticHeader");
        }
        StaticHeader { name, value }
    }
}

/// A parsed request head, borrowed from the received bytes. The body (if
/// any) is not available to handlers: the server skips it.
#[derive(Debug)]
pub struct Request<'a> {
    pub(super) method: &'a str,
    pub(super) target: &'a str,
    pub(super) minor: u8,
    pub(super) headers: &'a [httparse::Header<'a>],
    pub(super) content_length: Option<u64>,
}

impl<'a> Request<'a> {
    /// The method, case-sensitive (`GET`).
    #[inline]
    pub fn method(&self) -> &'a str {
        self.method
    }

    /// True for `HEAD` (the server drops the body it would send).
    #[inline]
    pub fn is_head(&self) -> bool {
        self.method == "HEAD"
    }

    /// The request target as sent (`/json?x=1`, `*`, `http://h/p`).
    #[inline]
    pub fn target(&self) -> &'a str {
        self.target
    }

    /// The path of the target without the query; for an absolute-form
    /// target (`http://host/p`), the path part of it (`/` if none).
    pub fn path(&self) -> &'a str {
        let t = self.target;
        let t = match t.find("://") {
            Some(i) if !t.starts_with('/') => {
                let rest = &t[i + 3..];
                match rest.find(['/', '?']) {
                    Some(j) if rest[j..].starts_with('/') => &rest[j..],
                    _ => "/",
                }
            }
            _ => t,
        };
        t.split_once('?').map_or(t, |(p, _)| p)
    }

    /// The query string after `?`, if any.
    pub fn query(&self) -> Option<&'a str> {
        self.target.split_once('?').map(|(_, q)| q)
    }

    /// The minor HTTP version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    #[inline]
    pub fn minor_version(&self) -> u8 {
        self.minor
    }

    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }

    /// All header lines in order, as (name, value).
    pub fn headers(&self) -> impl Iterator<Item = (&'a str, &'a [u8])> + '_ {
        self.headers.iter().map(|h| (h.name, h.value))
    }

    /// The request body's `Content-Length` (`None` when chunked or absent).
    #[inline]
    pub fn content_length(&self) -> Option<u64> {
        self.content_length
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BodySrc {
    Static(&'static [u8]),
    Scratch,
}

/// Where a handler builds its response. Defaults: `200`, no extra headers,
/// empty body. The server adds `Server`, `Date`, `Content-Length` and, when
/// needed, `Connection`; for `HEAD` it sends the headers only. Nothing here
/// allocates once the connection's scratch buffers have grown.
#[derive(Debug)]
pub struct ResponseWriter<'a> {
    pub(super) status: StatusCode,
    pub(super) headers: &'a mut Vec<u8>,
    pub(super) scratch: &'a mut Vec<u8>,
    pub(super) body: BodySrc,
    pub(super) close: bool,
}

impl ResponseWriter<'_> {
    /// Sets the status (default `200 OK`).
    #[inline]
    pub fn status(&mut self, status: StatusCode) -> &mut Self {
        self.status = status;
        self
    }

    /// Adds a header line checked at compile time.
    #[inline]
    pub fn static_header(&mut self, h: StaticHeader) -> &mut Self {
        self.push_header(h.name.as_bytes(), h.value.as_bytes());
        self
    }

    /// Adds a header line, checked now: the name must be a token and not
    /// one the server writes; the value must have no control characters.
    pub fn header(&mut self, name: &str, value: &[u8]) -> Result<&mut Self, HttpError> {
        if let Some(why) = check_header(name.as_bytes(), value) {
            return Err(HttpError::InvalidHeader(why));
        }
        self.push_header(name.as_bytes(), value);
        Ok(self)
    }

    #[inline]
    fn push_header(&mut self, name: &[u8], value: &[u8]) {
        self.headers.extend_from_slice(name);
        self.headers.extend_from_slice(b": ");
        self.headers.extend_from_slice(value);
        self.headers.extend_from_slice(b"\r\n");
    }

    /// Uses a constant body (not copied until it is written out).
    #[inline]
    pub fn body_static(&mut self, body: &'static [u8]) -> &mut Self {
        self.body = BodySrc::Static(body);
        self
    }

    /// Sets the body to a copy of `body`.
    pub fn body(&mut self, body: &[u8]) -> &mut Self {
        self.scratch.clear();
        self.scratch.extend_from_slice(body);
        self.body = BodySrc::Scratch;
        self
    }

    /// The body buffer to write into (starts empty; replaces a static
    /// body). `Vec<u8>` is `std::io::Write`, so `write!` works on it.
    pub fn body_mut(&mut self) -> &mut Vec<u8> {
        if self.body != BodySrc::Scratch {
            self.scratch.clear();
            self.body = BodySrc::Scratch;
        }
        self.scratch
    }

    /// Closes the connection after this response (`Connection: close`).
    #[inline]
    pub fn close(&mut self) -> &mut Self {
        self.close = true;
        self
    }

    pub(super) fn body_bytes(&self) -> &[u8] {
        match self.body {
            BodySrc::Static(b) => b,
            BodySrc::Scratch => self.scratch,
        }
    }
}

/// Decides the response to a request. One instance per connection (or
/// share state through the type as you like); called once per request, in
/// order.
pub trait Handler {
    /// Fills `resp` for `req`.
    fn handle(&mut self, req: &Request<'_>, resp: &mut ResponseWriter<'_>);
}

impl<F> Handler for F
where
    F: FnMut(&Request<'_>, &mut ResponseWriter<'_>),
{
    #[inline]
    fn handle(&mut self, req: &Request<'_>, resp: &mut ResponseWriter<'_>) {
        self(req, resp)
    }
}

const CT_TEXT: StaticHeader = StaticHeader::new("Content-Type", "text/plain");
const CT_JSON: StaticHeader = StaticHeader::new("Content-Type", "application/json");
const ALLOW: StaticHeader = StaticHeader::new("Allow", "GET, HEAD");

/// The TechEmpower benchmark routes, the default [`Handler`]:
///
/// | request                 | response |
/// |-------------------------|----------|
/// | `GET /plaintext`        | `200`, `text/plain`, `Hello, World!` |
/// | `GET /json`             | `200`, `application/json`, `{"message":"Hello, World!"}` |
/// | `GET /`                 | `200`, `text/plain`, a short index |
/// | `GET` anything else     | `404` |
/// | not `GET` or `HEAD`     | `405` with `Allow: GET, HEAD` |
///
/// The query string is ignored. Bodies are constants: nothing allocates.
#[derive(Debug, Default, Clone, Copy)]
pub struct TechEmpower;

impl TechEmpower {
    /// `/plaintext`'s body.
    pub const PLAINTEXT: &'static [u8] = b"Hello, World!";
    /// `/json`'s body.
    pub const JSON: &'static [u8] = br#"{"message":"Hello, World!"}"#;
    /// `/`'s body.
    pub const INDEX: &'static [u8] =
        b"bypass: HTTP/1.1 over a kernel-bypass TCP/IP stack.\nTry /plaintext or /json.\n";
}

impl Handler for TechEmpower {
    fn handle(&mut self, req: &Request<'_>, resp: &mut ResponseWriter<'_>) {
        if !matches!(req.method(), "GET" | "HEAD") {
            resp.status(StatusCode::METHOD_NOT_ALLOWED)
                .static_header(ALLOW)
                .static_header(CT_TEXT)
                .body_static(b"Method Not Allowed\n");
            return;
        }
        let (status, ct, body) = match req.path() {
            "/plaintext" => (StatusCode::OK, CT_TEXT, Self::PLAINTEXT),
            "/json" => (StatusCode::OK, CT_JSON, Self::JSON),
            "/" => (StatusCode::OK, CT_TEXT, Self::INDEX),
            _ => (StatusCode::NOT_FOUND, CT_TEXT, &b"Not Found\n"[..]),
        };
        resp.status(status).static_header(ct).body_static(body);
    }
}
