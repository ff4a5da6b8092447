//! The kernel's side of `bypass bench lossy`: an echo server and the
//! clients (bulk flows and request/response), on std threads over kernel
//! sockets. Sockets are created inside the client or server namespace (a
//! short-lived thread `setns`es there) and then used from any thread: a
//! socket stays in the namespace it was made in.
//!
//! Every client watches its own progress: the longest gap between two
//! reads that returned data (or two completed transactions) is its stall.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bypass::port::sys;
use bypass::runtime::Stop;
use bypass::{Error, Result};

/// How often blocked socket calls wake up to look at deadlines and flags.
const TICK: Duration = Duration::from_millis(100);
/// Bytes per read and write of the bulk flows and the echo server.
const CHUNK: usize = 64 << 10;

/// Connects from inside namespace `ns`.
pub fn connect_in(ns: &str, to: SocketAddrV4, timeout: Duration) -> Result<TcpStream> {
    sys::in_netns(ns, || {
        TcpStream::connect_timeout(&SocketAddr::V4(to), timeout)
            .map_err(|e| Error::io(format!("connect to {to} from namespace {ns}"), e))
    })
}

/// The byte stream a flow sends: 8-byte words of a keyed mix of their
/// index, so a byte out of place anywhere is caught.
pub fn fill_pattern(seed: u64, offset: u64, buf: &mut [u8]) {
    let mut off = offset;
    let mut i = 0;
    while i < buf.len() {
        let word = mix(seed ^ (off / 8)).to_le_bytes();
        let from = (off % 8) as usize;
        let n = (8 - from).min(buf.len() - i);
        buf[i..i + n].copy_from_slice(&word[from..from + n]);
        i += n;
        off += n as u64;
    }
}

/// splitmix64's finaliser.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn timed_out(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
    )
}

/// The core of the kernel clients' threads (`None`: unpinned).
static CLIENT_CORE: AtomicUsize = AtomicUsize::new(usize::MAX);

/// Runs the kernel clients' threads started from now on `core`.
pub fn clients_on(core: Option<usize>) {
    CLIENT_CORE.store(core.unwrap_or(usize::MAX), Ordering::Relaxed);
}

/// Pins a kernel client's thread to the clients' core, if they have one.
fn on_client_core() {
    let c = CLIENT_CORE.load(Ordering::Relaxed);
    if c != usize::MAX {
        pin_here(c);
    }
}

/// Pins the calling thread (and the threads it starts later) to `core`.
fn pin_here(core: usize) {
    // The bench checked that the core is one it may use.
    let _ = core_affinity::set_for_current(core_affinity::CoreId { id: core });
}

// ---- the echo server --------------------------------------------------------

/// A kernel echo server: one thread accepting, one per connection echoing
/// (blocking reads of up to 64 KiB written straight back, TCP_NODELAY on).
pub struct KernelServer {
    stop: Arc<AtomicBool>,
    ns: String,
    addr: SocketAddrV4,
    accept: Option<JoinHandle<()>>,
}

impl KernelServer {
    /// Listens on `addr` inside namespace `ns`; its threads run on `core`
    /// if given.
    pub fn start(ns: &str, addr: SocketAddrV4, core: Option<usize>) -> Result<KernelServer> {
        let l = sys::in_netns(ns, || {
            TcpListener::bind(addr).map_err(|e| Error::io(format!("bind {addr} in {ns}"), e))
        })?;
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let accept = std::thread::Builder::new()
            .name("lossy-accept".into())
            .spawn(move || {
                // The echo threads inherit the core.
                if let Some(c) = core {
                    pin_here(c);
                }
                for s in l.incoming() {
                    if st.load(Ordering::Relaxed) {
                        break;
                    }
                    let Ok(s) = s else { continue };
                    let st = st.clone();
                    let _ = std::thread::Builder::new()
                        .name("lossy-echo".into())
                        .spawn(move || echo_conn(s, &st));
                }
            })
            .map_err(|e| Error::io("spawn the kernel echo server", e))?;
        Ok(KernelServer {
            stop,
            ns: ns.to_string(),
            addr,
            accept: Some(accept),
        })
    }
}

fn echo_conn(mut s: TcpStream, stop: &AtomicBool) {
    let _ = s.set_nodelay(true);
    let _ = s.set_read_timeout(Some(TICK));
    let mut buf = vec![0u8; CHUNK];
    while !stop.load(Ordering::Relaxed) {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if s.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) if timed_out(&e) => {}
            Err(_) => break,
        }
    }
}

impl Drop for KernelServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the blocking accept with one last connection; if that
        // fails the thread is left to end with the process.
        if connect_in(&self.ns, self.addr, Duration::from_secs(1)).is_ok() {
            if let Some(h) = self.accept.take() {
                let _ = h.join();
            }
        }
    }
}

// ---- bulk flows -------------------------------------------------------------

/// How a flow ended.
#[derive(Debug, Clone, PartialEq)]
pub enum End {
    /// Every byte came back.
    Done,
    /// Stopped on purpose (the two-flow window is over).
    Stopped,
    /// The time bound passed first.
    TimedOut,
    /// The connection failed or closed early, or Ctrl-C.
    Failed(String),
}

/// What a flow measured.
#[derive(Debug, Clone)]
pub struct FlowResult {
    /// Bytes echoed back (and checked).
    pub back: u64,
    /// From the established connection to the last byte (or the end).
    pub secs: f64,
    /// Every byte back matched what was sent.
    pub intact: bool,
    /// The first byte that did not.
    pub mismatch_at: Option<u64>,
    /// How it ended.
    pub end: End,
    /// Longest gap without a byte back.
    pub stall: Duration,
}

struct Shared {
    back: AtomicU64,
    stop: AtomicBool,
}

/// A bulk flow: a writer thread sends the pattern, a reader thread reads
/// the echo back and checks it, both on one connection.
pub struct Flow {
    shared: Arc<Shared>,
    stream: TcpStream,
    reader: Option<JoinHandle<FlowResult>>,
    writer: Option<JoinHandle<()>>,
}

impl Flow {
    /// Starts a flow of `limit` bytes (or until stopped) on an established
    /// connection; it gives up at `deadline` and on Ctrl-C.
    pub fn start(
        stream: TcpStream,
        seed: u64,
        limit: Option<u64>,
        deadline: Instant,
        abort: &Stop,
    ) -> Result<Flow> {
        let shared = Arc::new(Shared {
            back: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        });
        let io = |e| Error::io("set up the flow's socket", e);
        stream.set_read_timeout(Some(TICK)).map_err(io)?;
        stream.set_write_timeout(Some(TICK)).map_err(io)?;
        let (wr, rd) = (
            stream.try_clone().map_err(io)?,
            stream.try_clone().map_err(io)?,
        );
        let (sw, sr) = (shared.clone(), shared.clone());
        let (aw, ar) = (abort.clone(), abort.clone());
        let writer = std::thread::Builder::new()
            .name("lossy-writer".into())
            .spawn(move || write_flow(wr, seed, limit, deadline, &sw, &aw))
            .map_err(|e| Error::io("spawn a writer", e))?;
        let reader = std::thread::Builder::new()
            .name("lossy-reader".into())
            .spawn(move || read_flow(rd, seed, limit, deadline, &sr, &ar))
            .map_err(|e| Error::io("spawn a reader", e))?;
        Ok(Flow {
            shared,
            stream,
            reader: Some(reader),
            writer: Some(writer),
        })
    }

    /// Bytes back so far.
    pub fn back(&self) -> u64 {
        self.shared.back.load(Ordering::Relaxed)
    }

    /// Asks both threads to stop at their next wake-up.
    pub fn stop(&self) {
        self.shared.stop.store(true, Ordering::Relaxed);
    }

    /// Waits for the reader to end (limit, deadline or stop), then closes
    /// the connection and collects the result.
    pub fn finish(mut self) -> FlowResult {
        let r = self.reader.take().map(|h| h.join());
        self.shared.stop.store(true, Ordering::Relaxed);
        let _ = self.stream.shutdown(Shutdown::Both);
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
        match r {
            Some(Ok(r)) => r,
            _ => FlowResult {
                back: self.back(),
                secs: 0.0,
                intact: false,
                mismatch_at: None,
                end: End::Failed("the reader thread panicked".into()),
                stall: Duration::ZERO,
            },
        }
    }
}

fn write_flow(
    mut s: TcpStream,
    seed: u64,
    limit: Option<u64>,
    deadline: Instant,
    sh: &Shared,
    abort: &Stop,
) {
    on_client_core();
    let mut buf = vec![0u8; CHUNK];
    let mut sent = 0u64;
    let limit = limit.unwrap_or(u64::MAX);
    while sent < limit {
        let n = (limit - sent).min(CHUNK as u64) as usize;
        fill_pattern(seed, sent, &mut buf[..n]);
        let mut done = 0;
        while done < n {
            if sh.stop.load(Ordering::Relaxed) || abort.is_set() || Instant::now() >= deadline {
                return;
            }
            match s.write(&buf[done..n]) {
                Ok(0) => return,
                Ok(k) => done += k,
                Err(e) if timed_out(&e) => {}
                Err(_) => return,
            }
        }
        sent += n as u64;
    }
}

fn read_flow(
    mut s: TcpStream,
    seed: u64,
    limit: Option<u64>,
    deadline: Instant,
    sh: &Shared,
    abort: &Stop,
) -> FlowResult {
    on_client_core();
    let mut buf = vec![0u8; CHUNK];
    let mut want = vec![0u8; CHUNK];
    let start = Instant::now();
    let mut last = start;
    let mut stall = Duration::ZERO;
    let mut back = 0u64;
    let mut mismatch_at = None;
    let limit = limit.unwrap_or(u64::MAX);
    let end = loop {
        if back >= limit {
            break End::Done;
        }
        if sh.stop.load(Ordering::Relaxed) {
            break End::Stopped;
        }
        if abort.is_set() {
            break End::Failed("interrupted".into());
        }
        if Instant::now() >= deadline {
            break End::TimedOut;
        }
        let room = (limit - back).min(CHUNK as u64) as usize;
        match s.read(&mut buf[..room]) {
            Ok(0) => break End::Failed(format!("the server closed after {back} bytes")),
            Ok(n) => {
                let now = Instant::now();
                stall = stall.max(now - last);
                last = now;
                if mismatch_at.is_none() {
                    fill_pattern(seed, back, &mut want[..n]);
                    if buf[..n] != want[..n] {
                        let i = (0..n).find(|&i| buf[i] != want[i]).unwrap_or(0);
                        mismatch_at = Some(back + i as u64);
                    }
                }
                back += n as u64;
                sh.back.store(back, Ordering::Relaxed);
            }
            Err(e) if timed_out(&e) => {}
            Err(e) => break End::Failed(format!("read after {back} bytes: {e}")),
        }
    };
    let now = Instant::now();
    if end != End::Done {
        stall = stall.max(now - last);
    }
    FlowResult {
        back,
        secs: (if end == End::Done { last } else { now } - start).as_secs_f64(),
        intact: mismatch_at.is_none(),
        mismatch_at,
        end,
        stall,
    }
}

// ---- request/response ----------------------------------------------------------

/// What a request/response run measured.
#[derive(Debug, Clone, Default)]
pub struct RrResult {
    /// Completed transactions.
    pub transactions: u64,
    /// Measured time.
    pub secs: f64,
    /// Latencies, sorted, nanoseconds.
    pub lat_ns: Vec<u64>,
    /// Longest gap without a completed transaction on any connection.
    pub stall: Duration,
    /// Replies that were not the request echoed.
    pub corrupt: u64,
    /// Connections that failed (closed, reset).
    pub errors: Vec<String>,
}

impl RrResult {
    /// Latency percentile `q` (0..=1) in microseconds.
    pub fn pct_us(&self, q: f64) -> f64 {
        if self.lat_ns.is_empty() {
            return 0.0;
        }
        let i = ((q * self.lat_ns.len() as f64).ceil() as usize).clamp(1, self.lat_ns.len()) - 1;
        self.lat_ns[i] as f64 / 1e3
    }
}

/// `conns` connections from namespace `ns` to `to`, each sending `size`
/// bytes and waiting for them back, for `secs` or `max_tx` transactions
/// in total, whichever comes first.
pub fn rr(
    ns: &str,
    to: SocketAddrV4,
    conns: usize,
    size: usize,
    secs: f64,
    max_tx: Option<u64>,
    abort: &Stop,
) -> Result<RrResult> {
    let mut streams = Vec::with_capacity(conns);
    for _ in 0..conns {
        let s = connect_in(ns, to, Duration::from_secs(10))?;
        let io = |e| Error::io("set up an rr socket", e);
        s.set_nodelay(true).map_err(io)?;
        s.set_read_timeout(Some(TICK)).map_err(io)?;
        s.set_write_timeout(Some(TICK)).map_err(io)?;
        streams.push(s);
    }
    let budget = Arc::new(AtomicU64::new(max_tx.unwrap_or(u64::MAX)));
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(secs);
    let per_conn: Vec<_> = std::thread::scope(|sc| {
        let hs: Vec<_> = streams
            .into_iter()
            .enumerate()
            .map(|(i, s)| {
                let budget = budget.clone();
                sc.spawn(move || rr_conn(s, i as u64, size, start, end, &budget, abort))
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().unwrap_or_else(|_| ConnRr::failed("panicked")))
            .collect()
    });
    let stop_at = per_conn
        .iter()
        .map(|c| c.ended_ns)
        .max()
        .unwrap_or_default();
    let mut r = RrResult {
        secs: stop_at as f64 / 1e9,
        ..Default::default()
    };
    let mut done: Vec<u64> = Vec::new();
    for c in per_conn {
        r.lat_ns.extend_from_slice(&c.lat_ns);
        done.extend_from_slice(&c.done_ns);
        r.corrupt += c.corrupt;
        r.errors.extend(c.error);
    }
    r.transactions = r.lat_ns.len() as u64;
    r.lat_ns.sort_unstable();
    done.sort_unstable();
    let mut prev = 0u64;
    let mut gap = 0u64;
    for t in done.iter().copied().chain(std::iter::once(stop_at)) {
        gap = gap.max(t.saturating_sub(prev));
        prev = t;
    }
    r.stall = Duration::from_nanos(gap);
    Ok(r)
}

struct ConnRr {
    lat_ns: Vec<u64>,
    done_ns: Vec<u64>,
    ended_ns: u64,
    corrupt: u64,
    error: Option<String>,
}

impl ConnRr {
    fn failed(why: &str) -> ConnRr {
        ConnRr {
            lat_ns: Vec::new(),
            done_ns: Vec::new(),
            ended_ns: 0,
            corrupt: 0,
            error: Some(why.to_string()),
        }
    }
}

/// Most samples one connection keeps (bounds memory on a fast path).
const MAX_SAMPLES: usize = 4 << 20;

fn rr_conn(
    mut s: TcpStream,
    id: u64,
    size: usize,
    start: Instant,
    end: Instant,
    budget: &AtomicU64,
    abort: &Stop,
) -> ConnRr {
    on_client_core();
    let mut c = ConnRr {
        lat_ns: Vec::with_capacity(1 << 16),
        done_ns: Vec::with_capacity(1 << 16),
        ended_ns: 0,
        corrupt: 0,
        error: None,
    };
    let mut req = vec![0u8; size];
    let mut resp = vec![0u8; size];
    let mut n = 0u64;
    loop {
        if abort.is_set() {
            c.error = Some("interrupted".into());
            break;
        }
        if Instant::now() >= end
            || c.lat_ns.len() >= MAX_SAMPLES
            || budget
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| b.checked_sub(1))
                .is_err()
        {
            break;
        }
        fill_pattern(id, n * size as u64, &mut req);
        let t0 = Instant::now();
        let io = exchange(&mut s, &req, &mut resp, end, abort);
        if let Err(why) = io {
            c.error = why;
            break;
        }
        let t1 = Instant::now();
        if resp != req {
            c.corrupt += 1;
        }
        c.lat_ns.push((t1 - t0).as_nanos() as u64);
        c.done_ns.push((t1 - start).as_nanos() as u64);
        n += 1;
    }
    c.ended_ns = (Instant::now().min(end).max(start) - start).as_nanos() as u64;
    let _ = s.shutdown(Shutdown::Both);
    c
}

/// Writes `req` and reads `resp.len()` bytes back. `Err(None)`: the time
/// is up (or Ctrl-C); `Err(Some(why))`: the connection failed.
fn exchange(
    s: &mut TcpStream,
    req: &[u8],
    resp: &mut [u8],
    end: Instant,
    abort: &Stop,
) -> std::result::Result<(), Option<String>> {
    for writing in [true, false] {
        let len = if writing { req.len() } else { resp.len() };
        let mut done = 0;
        while done < len {
            let r = if writing {
                s.write(&req[done..])
            } else {
                s.read(&mut resp[done..])
            };
            match r {
                Ok(0) => return Err(Some("the server closed".into())),
                Ok(k) => done += k,
                Err(e) if timed_out(&e) => {
                    if Instant::now() >= end || abort.is_set() {
                        return Err(None);
                    }
                }
                Err(e) => return Err(Some(e.to_string())),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_is_the_same_whatever_the_split() {
        let mut whole = vec![0u8; 100];
        fill_pattern(7, 3, &mut whole);
        let mut parts = vec![0u8; 100];
        for (i, ch) in parts.chunks_mut(13).enumerate() {
            fill_pattern(7, 3 + 13 * i as u64, ch);
        }
        assert_eq!(whole, parts);
        let mut other = vec![0u8; 100];
        fill_pattern(8, 3, &mut other);
        assert_ne!(whole, other);
        // Data one word out of place is caught: the stream is not periodic.
        assert_ne!(whole[8..], whole[..92]);
    }

    #[test]
    fn percentiles() {
        let r = RrResult {
            lat_ns: (1..=1000).map(|x| x * 1000).collect(),
            ..Default::default()
        };
        assert_eq!(r.pct_us(0.5), 500.0);
        assert_eq!(r.pct_us(0.999), 999.0);
        assert_eq!(r.pct_us(1.0), 1000.0);
        assert_eq!(RrResult::default().pct_us(0.5), 0.0);
    }
}
