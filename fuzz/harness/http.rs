//! Fuzz harness: the HTTP server's request parser, fed in arbitrary pieces.
//!
//! Shared by the `http` fuzz target and `tests/fuzz_replay.rs`.
//!
//! Input: `n:u8`, then `n` split lengths (one byte each), then the stream.
//! The stream is fed to one server in those pieces (then the rest at once)
//! and to another server whole; both must produce the same responses and
//! the same outcome (the parser may not depend on how TCP cut the bytes),
//! buffer at most the head limit, and never panic.

use bypass::app::http::{HttpDate, HttpServer};

/// The head limit used here: small, so that 431 is reachable.
const MAX_HEAD: usize = 512;

fn feed(srv: &mut HttpServer, pieces: &[&[u8]], now: &HttpDate) -> (Vec<u8>, String) {
    let mut out = Vec::new();
    let mut outcome = String::from("open");
    for p in pieces {
        match srv.on_data(p, now, &mut out) {
            Ok(bypass::app::http::Flow::KeepAlive) => {}
            Ok(flow) => {
                outcome = format!("{flow:?}");
                break;
            }
            Err(e) => {
                outcome = format!("error {e:?}");
                break;
            }
        }
        assert!(
            srv.buffered() <= MAX_HEAD + 1,
            "buffered {} > head limit",
            srv.buffered()
        );
    }
    (out, outcome)
}

/// One fuzz input.
pub fn run(data: &[u8]) {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let n = (n as usize).min(rest.len());
    let (splits, stream) = rest.split_at(n);
    let mut pieces = Vec::new();
    let mut s = stream;
    for &k in splits {
        let k = (k as usize).min(s.len());
        let (a, b) = s.split_at(k);
        pieces.push(a);
        s = b;
    }
    pieces.push(s);
    let now = HttpDate::new(1_700_000_000);
    let mut split = HttpServer::with_limits(bypass::app::http::TechEmpower, MAX_HEAD);
    let mut whole = HttpServer::with_limits(bypass::app::http::TechEmpower, MAX_HEAD);
    let a = feed(&mut split, &pieces, &now);
    let b = feed(&mut whole, &[stream], &now);
    assert_eq!(a.1, b.1, "outcome depends on how the bytes were split");
    assert!(
        a.0 == b.0,
        "responses depend on how the bytes were split:\n{:?}\nvs\n{:?}",
        String::from_utf8_lossy(&a.0),
        String::from_utf8_lossy(&b.0)
    );
    assert_eq!(split.stats().bad_requests, whole.stats().bad_requests);
}
