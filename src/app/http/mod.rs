//! HTTP/1.1 as sans-I/O state machines: bytes in, bytes out, time passed in.
//!
//! - [`HttpServer`]: one per accepted connection. Feed it what the socket
//!   received; it appends the responses to every complete request to your
//!   output buffer, in order, and says whether to close after flushing.
//!   Requests go to a [`Handler`]; the default, [`TechEmpower`], serves the
//!   TechEmpower benchmark routes.
//! - [`HttpClient`]: one per load-generator connection. Writes pipelined
//!   `GET`s, parses responses, reports each completed one.
//! - [`HttpDate`]: the cached `Date` header value; one per core, updated
//!   once per loop iteration.
//!
//! Nothing here reads a clock, touches a socket, sleeps or spawns. Parsing
//! is done by `httparse` directly on the caller's slice; only the
//! unconsumed start of a head split across reads is buffered (bounded by
//! [`DEFAULT_MAX_HEAD`]). Bodies are skipped, never buffered.
//!
//! # Driving a server from a TCP connection
//!
//! ```text
//! accept:        srv = HttpServer::new() (or ::with_handler(h)); out = Vec::new()
//! every loop:    date.update(wall_clock_secs)          // one HttpDate per core
//! readable:      while out.len() < HIGH_WATER and the socket has bytes:
//!                    r = srv.on_data(received, &date, &mut out)
//!                    Ok(KeepAlive)       -> go on
//!                    Ok(Close) | Err(_)  -> stop reading; close once `out` is sent
//! writable:      send from `out`, drop what was sent
//! peer FIN:      stop feeding; close once `out` is sent
//!                (srv.mid_request() says a request was cut short)
//! closed:        core_stats += *srv.stats()
//! ```
//!
//! `on_data` always consumes all it is given, so push back by not reading:
//! while `out` holds more than a high-water mark, leave bytes in the
//! socket and let the TCP window stop the peer. The client is driven the
//! same way, with `write_get` where the server writes responses and
//! `on_eof` when the server closes.
//!
//! # Panics
//!
//! None on any input: malformed bytes become a `400` (server) or an
//! [`HttpError`] (both), counted in the stats.

mod app;
mod client;
mod date;
mod framing;
mod handler;
mod server;

pub use app::{HttpApp, HttpConn, HttpCounters};

pub use client::{ClientStats, Completed, HttpClient};
pub use date::{HttpDate, HTTP_DATE_LEN};
pub use framing::Flow;
pub use handler::{Handler, Request, ResponseWriter, StaticHeader, StatusCode, TechEmpower};
pub use server::{HttpServer, HttpStats};

/// Default limit on a message head (request or status line plus headers).
pub const DEFAULT_MAX_HEAD: usize = 8 * 1024;

/// Most header lines accepted in one message; more gets `431`.
pub const MAX_HEADERS: usize = 64;

/// Why a connection is being closed on an error. The server has already
/// written the matching error response (if it has one, see
/// [`HttpError::status`]) to the output buffer when it returns this.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// The head does not parse as HTTP/1.x.
    #[error("malformed HTTP message: {0}")]
    Parse(httparse::Error),
    /// The head parsed but breaks a rule (missing `Host`, bad framing, ...).
    #[error("malformed HTTP message")]
    Malformed,
    /// More header lines than [`MAX_HEADERS`].
    #[error("more than {MAX_HEADERS} header lines")]
    TooManyHeaders,
    /// A head longer than the configured limit.
    #[error("message head longer than the limit")]
    HeadTooLarge,
    /// `Content-Length` is not a number, or two of them disagree.
    #[error("invalid Content-Length")]
    BadContentLength,
    /// A `Transfer-Encoding` other than a final `chunked`, or both it and
    /// `Content-Length`.
    #[error("unsupported or ambiguous Transfer-Encoding")]
    BadTransferEncoding,
    /// A chunked body that does not follow the chunked syntax.
    #[error("malformed chunked body")]
    BadChunk,
    /// (Client) a response arrived with no request outstanding.
    #[error("response without a request")]
    Unsolicited,
    /// (Client) the peer closed in the middle of a response.
    #[error("connection closed in the middle of a response")]
    Truncated,
    /// A handler or caller gave a header name or value that is not allowed
    /// (not a token, a control character, or a header the server manages).
    #[error("header not allowed: {0}")]
    InvalidHeader(&'static str),
    /// (Client) a request target with spaces or control characters.
    #[error("request target must be visible ASCII without spaces")]
    InvalidTarget,
}

impl HttpError {
    /// The status a server answers this error with, if any. Errors found
    /// in a body (after the response to its request went out) have none:
    /// the connection is just closed.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            HttpError::TooManyHeaders | HttpError::HeadTooLarge => {
                Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
            }
            HttpError::Parse(httparse::Error::TooManyHeaders) => {
                Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
            }
            HttpError::Parse(_)
            | HttpError::Malformed
            | HttpError::BadContentLength
            | HttpError::BadTransferEncoding => Some(StatusCode::BAD_REQUEST),
            HttpError::BadChunk
            | HttpError::Unsolicited
            | HttpError::Truncated
            | HttpError::InvalidHeader(_)
            | HttpError::InvalidTarget => None,
        }
    }
}

/// Case-insensitive check of a comma-separated header value for `token`
/// (`Connection: keep-alive, Upgrade`).
pub(crate) fn has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// The last element of a comma-separated list, trimmed.
pub(crate) fn last_token(value: &[u8]) -> &[u8] {
    value
        .rsplit(|&b| b == b',')
        .next()
        .unwrap_or(value)
        .trim_ascii()
}

/// A strict `Content-Length` value: 1*DIGIT that fits in a `u64`.
pub(crate) fn parse_length(value: &[u8]) -> Result<u64, HttpError> {
    let v = value.trim_ascii();
    if v.is_empty() || v.len() > 19 {
        return Err(HttpError::BadContentLength);
    }
    v.iter().try_fold(0u64, |n, &b| match b {
        b'0'..=b'9' => Ok(n * 10 + u64::from(b - b'0')),
        _ => Err(HttpError::BadContentLength),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_lengths() {
        assert!(has_token(b"keep-alive, Upgrade", "upgrade"));
        assert!(has_token(b" Close ", "close"));
        assert!(!has_token(b"closed", "close"));
        assert_eq!(last_token(b"gzip, chunked "), b"chunked");
        assert_eq!(last_token(b"chunked"), b"chunked");
        assert_eq!(parse_length(b" 42 "), Ok(42));
        assert_eq!(
            parse_length(b"9999999999999999999"),
            Ok(9_999_999_999_999_999_999)
        );
        assert_eq!(
            parse_length(b"99999999999999999999"),
            Err(HttpError::BadContentLength)
        );
        assert_eq!(parse_length(b"+1"), Err(HttpError::BadContentLength));
        assert_eq!(parse_length(b"1,1"), Err(HttpError::BadContentLength));
        assert_eq!(parse_length(b""), Err(HttpError::BadContentLength));
    }
}
