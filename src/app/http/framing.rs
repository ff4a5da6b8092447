//! Message framing shared by the server and the client: where a head ends,
//! how long a body is, and skipping bodies without buffering them.
//!
//! [`Framer`] owns the only buffer: the unconsumed tail of a message head
//! that arrived split across reads (at most `max_head + 1` bytes). Complete
//! heads are parsed straight from the caller's slice; bodies are skipped
//! byte-count-wise and never copied.

use super::HttpError;

/// How a message's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyKind {
    /// No body.
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Everything until the peer closes (responses only).
    UntilClose,
}

/// What a peer's head parser made of the bytes it was shown.
pub(crate) enum Step {
    /// Not a complete head yet (and nothing wrong so far).
    Partial,
    /// A complete head of `len` bytes, followed by a body of `body`;
    /// `close` stops reading after that body.
    Message {
        len: usize,
        body: BodyKind,
        close: bool,
    },
}

/// The protocol-specific half: parses heads, hears about finished bodies.
pub(crate) trait Peer {
    /// Parses a head at the start of `buf` (at most `max_head` bytes).
    fn head(&mut self, buf: &[u8]) -> Result<Step, HttpError>;
    /// The body of the last message is complete: `body_len` payload bytes.
    fn message_done(&mut self, body_len: u64);
}

/// Whether to keep the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Flow {
    /// Keep the connection open and keep feeding received bytes.
    KeepAlive,
    /// Close the connection once everything written to `out` is flushed.
    /// Bytes received after this are ignored.
    Close,
}

/// Longest chunk-extension accepted (bytes after the size, before CRLF).
const MAX_CHUNK_EXT: u32 = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Reading the hex size; `digits` read so far.
    Size { size: u64, digits: u32 },
    /// In a chunk extension; `len` bytes of it so far.
    Ext { size: u64, len: u32 },
    /// Saw the CR after the size line.
    SizeLf { size: u64 },
    /// `left` bytes of chunk data to go.
    Data { left: u64 },
    /// Expecting the CR after chunk data.
    DataCr,
    /// Expecting the LF after chunk data.
    DataLf,
    /// In the trailer section: at a line start or inside a line.
    Trailer { line_start: bool, total: u32 },
    /// Saw CR inside a trailer line (`end`: the line was empty).
    TrailerLf { end: bool, total: u32 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    Done,
    Length(u64),
    Chunked(Chunk),
    UntilClose,
}

/// Skips one message body, in pieces as they arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BodySkip {
    state: Body,
    /// Payload bytes seen (chunk data only, for chunked bodies).
    seen: u64,
    /// Limit on trailer bytes.
    max_trailer: u32,
}

impl BodySkip {
    pub(crate) fn new(kind: BodyKind, max_trailer: usize) -> BodySkip {
        let state = match kind {
            BodyKind::Empty | BodyKind::Length(0) => Body::Done,
            BodyKind::Length(n) => Body::Length(n),
            BodyKind::Chunked => Body::Chunked(Chunk::Size { size: 0, digits: 0 }),
            BodyKind::UntilClose => Body::UntilClose,
        };
        BodySkip {
            state,
            seen: 0,
            max_trailer: u32::try_from(max_trailer).unwrap_or(u32::MAX),
        }
    }

    #[inline]
    pub(crate) fn is_done(&self) -> bool {
        self.state == Body::Done
    }

    #[inline]
    pub(crate) fn is_until_close(&self) -> bool {
        self.state == Body::UntilClose
    }

    #[inline]
    pub(crate) fn seen(&self) -> u64 {
        self.seen
    }

    /// Consumes body bytes from the start of `data`; returns how many. If
    /// the body is not done afterwards, all of `data` was consumed.
    pub(crate) fn skip(&mut self, data: &[u8]) -> Result<usize, HttpError> {
        match self.state {
            Body::Done => Ok(0),
            Body::UntilClose => {
                self.seen += data.len() as u64;
                Ok(data.len())
            }
            Body::Length(left) => {
                let n = usize::try_from(left).unwrap_or(usize::MAX).min(data.len());
                self.seen += n as u64;
                let left = left - n as u64;
                self.state = if left == 0 {
                    Body::Done
                } else {
                    Body::Length(left)
                };
                Ok(n)
            }
            Body::Chunked(c) => self.skip_chunked(c, data),
        }
    }

    fn skip_chunked(&mut self, mut c: Chunk, data: &[u8]) -> Result<usize, HttpError> {
        let mut i = 0;
        while i < data.len() {
            if let Chunk::Data { left } = c {
                let n = usize::try_from(left)
                    .unwrap_or(usize::MAX)
                    .min(data.len() - i);
                i += n;
                self.seen += n as u64;
                let left = left - n as u64;
                c = if left == 0 {
                    Chunk::DataCr
                } else {
                    Chunk::Data { left }
                };
                continue;
            }
            let b = data[i];
            i += 1;
            c = match c {
                Chunk::Size { size, digits } => match b {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        if digits >= 16 {
                            return Err(HttpError::BadChunk);
                        }
                        let d = (b as char).to_digit(16).unwrap_or(0);
                        Chunk::Size {
                            size: size << 4 | u64::from(d),
                            digits: digits + 1,
                        }
                    }
                    b';' | b' ' | b'\t' if digits > 0 => Chunk::Ext { size, len: 0 },
                    b'\r' if digits > 0 => Chunk::SizeLf { size },
                    _ => return Err(HttpError::BadChunk),
                },
                Chunk::Ext { size, len } => match b {
                    b'\r' => Chunk::SizeLf { size },
                    b'\n' | 0..=8 | 10..=31 | 127 => return Err(HttpError::BadChunk),
                    _ if len >= MAX_CHUNK_EXT => return Err(HttpError::BadChunk),
                    _ => Chunk::Ext { size, len: len + 1 },
                },
                Chunk::SizeLf { size } => match (b, size) {
                    (b'\n', 0) => Chunk::Trailer {
                        line_start: true,
                        total: 0,
                    },
                    (b'\n', left) => Chunk::Data { left },
                    _ => return Err(HttpError::BadChunk),
                },
                Chunk::Data { .. } => c, // handled above the match
                Chunk::DataCr => match b {
                    b'\r' => Chunk::DataLf,
                    _ => return Err(HttpError::BadChunk),
                },
                Chunk::DataLf => match b {
                    b'\n' => Chunk::Size { size: 0, digits: 0 },
                    _ => return Err(HttpError::BadChunk),
                },
                Chunk::Trailer { line_start, total } => {
                    if total >= self.max_trailer {
                        return Err(HttpError::BadChunk);
                    }
                    match b {
                        b'\r' => Chunk::TrailerLf {
                            end: line_start,
                            total: total + 1,
                        },
                        b'\n' | 0..=8 | 10..=31 | 127 => return Err(HttpError::BadChunk),
                        _ => Chunk::Trailer {
                            line_start: false,
                            total: total + 1,
                        },
                    }
                }
                Chunk::TrailerLf { end, total } => match b {
                    b'\n' if end => {
                        self.state = Body::Done;
                        return Ok(i);
                    }
                    b'\n' => Chunk::Trailer {
                        line_start: true,
                        total: total + 1,
                    },
                    _ => return Err(HttpError::BadChunk),
                },
            };
        }
        self.state = Body::Chunked(c);
        Ok(i)
    }
}

/// Index just past the first possible end of a head in `tail ++ input`
/// whose last byte lies in `input`: an LF preceded by LF or by CR LF (an
/// empty line). Every complete head ends at such a point, so copying up to
/// the first one never copies bytes of the next message.
fn head_end_candidate(tail: &[u8], input: &[u8]) -> Option<usize> {
    let before = |i: usize, back: usize| -> Option<u8> {
        // Byte `back` places before input[i] in tail ++ input.
        if i >= back {
            input.get(i - back).copied()
        } else {
            tail.len()
                .checked_sub(back - i)
                .and_then(|j| tail.get(j).copied())
        }
    };
    let mut from = 0;
    while let Some(off) = input[from..].iter().position(|&b| b == b'\n') {
        let i = from + off;
        match before(i, 1) {
            Some(b'\n') => return Some(i + 1),
            Some(b'\r') if before(i, 2) == Some(b'\n') => return Some(i + 1),
            _ => {}
        }
        from = i + 1;
    }
    None
}

/// Splits a byte stream into messages: heads go to a [`Peer`], bodies are
/// skipped. See the module docs.
#[derive(Debug)]
pub(crate) struct Framer {
    /// Unconsumed bytes that begin a head (normally a partial head only).
    tail: Vec<u8>,
    /// `tail` was parsed as it is and found partial.
    tail_partial: bool,
    /// Between a head and the end of its body.
    in_message: bool,
    close_after: bool,
    body: BodySkip,
    closed: bool,
    max_head: usize,
}

impl Framer {
    pub(crate) fn new(max_head: usize) -> Framer {
        Framer {
            tail: Vec::new(),
            tail_partial: false,
            in_message: false,
            close_after: false,
            body: BodySkip::new(BodyKind::Empty, max_head),
            closed: false,
            max_head: max_head.max(1),
        }
    }

    #[inline]
    pub(crate) fn is_closed(&self) -> bool {
        self.closed
    }

    /// Bytes of an unfinished head held back.
    #[inline]
    pub(crate) fn buffered(&self) -> usize {
        self.tail.len()
    }

    /// True in the middle of a message (a head is buffered or a body runs).
    #[inline]
    pub(crate) fn mid_message(&self) -> bool {
        !self.tail.is_empty() || self.in_message
    }

    /// True while skipping a body that ends when the peer closes.
    #[inline]
    pub(crate) fn body_until_close(&self) -> bool {
        self.in_message && self.body.is_until_close()
    }

    /// Ends a close-delimited body (the peer closed); reports it done.
    pub(crate) fn finish_until_close<P: Peer>(&mut self, peer: &mut P) {
        if self.body_until_close() {
            self.in_message = false;
            peer.message_done(self.body.seen());
        }
        self.close();
    }

    pub(crate) fn close(&mut self) {
        self.closed = true;
        self.tail = Vec::new();
    }

    /// Feeds received bytes. After `Err` or `Ok(Flow::Close)` the framer
    /// is closed and ignores further input.
    pub(crate) fn feed<P: Peer>(&mut self, input: &[u8], peer: &mut P) -> Result<Flow, HttpError> {
        if self.closed {
            return Ok(Flow::Close);
        }
        let r = self.feed_inner(input, peer);
        if r != Ok(Flow::KeepAlive) {
            self.close();
        }
        r
    }

    fn start(&mut self, body: BodyKind, close: bool) {
        self.in_message = true;
        self.close_after = close;
        self.body = BodySkip::new(body, self.max_head);
    }

    fn feed_inner<P: Peer>(&mut self, mut input: &[u8], peer: &mut P) -> Result<Flow, HttpError> {
        loop {
            if self.in_message {
                if !self.tail.is_empty() {
                    let n = self.body.skip(&self.tail)?;
                    self.tail.drain(..n);
                    self.tail_partial = false;
                }
                if !self.body.is_done() {
                    let n = self.body.skip(input)?;
                    input = &input[n..];
                }
                if !self.body.is_done() {
                    return Ok(Flow::KeepAlive);
                }
                self.in_message = false;
                peer.message_done(self.body.seen());
                if self.close_after {
                    return Ok(Flow::Close);
                }
            }
            if self.tail.is_empty() {
                // The fast path: parse in place from the caller's slice.
                if input.is_empty() {
                    return Ok(Flow::KeepAlive);
                }
                let shown = &input[..input.len().min(self.max_head)];
                match peer.head(shown)? {
                    Step::Partial => {
                        if input.len() > self.max_head {
                            return Err(HttpError::HeadTooLarge);
                        }
                        self.tail.extend_from_slice(input);
                        self.tail_partial = true;
                        return Ok(Flow::KeepAlive);
                    }
                    Step::Message { len, body, close } => {
                        // A head has at least its final LF; a zero length
                        // would loop forever, so refuse it outright.
                        if len == 0 || len > input.len() {
                            return Err(HttpError::Malformed);
                        }
                        input = &input[len..];
                        self.start(body, close);
                    }
                }
            } else {
                if self.tail_partial {
                    if input.is_empty() {
                        return Ok(Flow::KeepAlive);
                    }
                    // Copy only up to where the head may end (and never
                    // more than one byte past the limit).
                    let want = head_end_candidate(&self.tail, input).unwrap_or(input.len());
                    let room = (self.max_head + 1).saturating_sub(self.tail.len());
                    let take = want.min(room).max(1);
                    self.tail.extend_from_slice(&input[..take]);
                    input = &input[take..];
                }
                let tail = std::mem::take(&mut self.tail);
                let shown = &tail[..tail.len().min(self.max_head)];
                let step = peer.head(shown)?;
                self.tail = tail;
                match step {
                    Step::Partial => {
                        if self.tail.len() > self.max_head {
                            return Err(HttpError::HeadTooLarge);
                        }
                        self.tail_partial = true;
                    }
                    Step::Message { len, body, close } => {
                        if len == 0 || len > self.tail.len() {
                            return Err(HttpError::Malformed);
                        }
                        self.tail.drain(..len);
                        self.tail_partial = false;
                        self.start(body, close);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skip_all(kind: BodyKind, data: &[u8]) -> (Result<usize, HttpError>, BodySkip) {
        let mut s = BodySkip::new(kind, 64);
        let r = s.skip(data);
        (r, s)
    }

    #[test]
    fn length_body() {
        let (r, s) = skip_all(BodyKind::Length(3), b"abcdef");
        assert_eq!(r, Ok(3));
        assert!(s.is_done());
        assert_eq!(s.seen(), 3);
        let (r, s) = skip_all(BodyKind::Length(10), b"abcdef");
        assert_eq!(r, Ok(6));
        assert!(!s.is_done());
    }

    #[test]
    fn chunked_body_in_one_piece_and_bytewise() {
        let body =
            b"4\r\nWiki\r\n5;ext=1\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        let end = body.len() - 4;
        let (r, s) = skip_all(BodyKind::Chunked, body);
        assert_eq!(r, Ok(end));
        assert!(s.is_done());
        assert_eq!(s.seen(), 23);
        let mut s = BodySkip::new(BodyKind::Chunked, 64);
        for (i, b) in body.iter().enumerate() {
            let n = s.skip(std::slice::from_ref(b)).unwrap();
            assert_eq!(n, usize::from(i < end), "byte {i}");
        }
        assert!(s.is_done());
        assert_eq!(s.seen(), 23);
    }

    #[test]
    fn bad_chunks_are_errors() {
        for bad in [
            &b"x\r\n"[..],
            b"\r\n",
            b"4\nWiki",
            b"4\r\nWikiXX",
            b"11111111111111111\r\n",
            b"0\r\nbad\nline",
        ] {
            let (r, _) = skip_all(BodyKind::Chunked, bad);
            assert_eq!(
                r,
                Err(HttpError::BadChunk),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let mut long = b"1;".to_vec();
        long.extend_from_slice(&[b'a'; 2000]);
        assert_eq!(
            skip_all(BodyKind::Chunked, &long).0,
            Err(HttpError::BadChunk)
        );
        let mut trailer = b"0\r\n".to_vec();
        trailer.extend_from_slice(&[b'a'; 100]);
        assert_eq!(
            skip_all(BodyKind::Chunked, &trailer).0,
            Err(HttpError::BadChunk)
        );
    }

    #[test]
    fn head_end_candidates() {
        assert_eq!(
            head_end_candidate(b"", b"GET / HTTP/1.1\r\n\r\nX"),
            Some(18)
        );
        assert_eq!(head_end_candidate(b"GET / HTTP/1.1\r\n", b"\r\nX"), Some(2));
        assert_eq!(head_end_candidate(b"GET / HTTP/1.1\r\n\r", b"\nX"), Some(1));
        assert_eq!(head_end_candidate(b"GET / HTTP/1.1\n", b"\nX"), Some(1));
        assert_eq!(head_end_candidate(b"GET / HTTP/1.1\r\n\r\n", b"X"), None);
        assert_eq!(head_end_candidate(b"", b"A: b\r\nC: d\r\n"), None);
    }
}
