//! The load generator: the client side of C10M experiments, as a
//! [`TcpApp`] (one [`LoadGen`] per core).
//!
//! It is sans-I/O like every application here: it reads time only from
//! the `now` the runtime hands it (`Ctx::now`, `Conn::now`) and acts only
//! through [`Ctx::connect`] and [`Conn`], so the same state machine runs on
//! the userspace stack, over kernel sockets (the benchmark's baseline
//! driver implements the same connection operations), and in unit tests
//! with a scripted fake, deterministically.
//!
//! Modes ([`Mode`]):
//! - `rr`: hold `connections` open; on each keep `pipeline` requests of
//!   `size` bytes in flight against an echo server (closed loop: a request
//!   is complete when `size` bytes came back; the next one leaves then);
//! - `cps`: connect, send one request, wait for its echo, close; keep
//!   `connections` such exchanges going at once;
//! - `hold`: open `connections` and keep them, sending nothing;
//! - `http`: like `rr` with pipelined `GET`s read by an [`HttpClient`].
//!
//! A `rate` limits connection attempts per second (the ramp). Latencies go
//! into HDR histograms (microseconds): the transaction latency of the
//! steady state (recording starts once every connection has been open at
//! the same time; in `cps` once the first connection opened, timing each
//! exchange from the connect call to the response) and the handshake
//! latency.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;

use hdrhistogram::Histogram;

use crate::app::http::{Completed, Flow as HttpFlow, HttpClient};
use crate::app::tcp::{Conn, Ctx, TcpApp};
use crate::counter::Counter;
use crate::stack::{CloseReason, ConnId};
use crate::time::Instant;

/// Highest latency the histograms hold (µs): 60 s.
pub const MAX_LATENCY_US: u64 = 60_000_000;

/// What the generator does on each connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Closed-loop request/response against an echo server.
    Rr,
    /// Connect, one request/response, close.
    Cps,
    /// Open and keep.
    Hold,
    /// Pipelined HTTP GETs.
    Http,
}

/// How `cps` ends each connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CloseWith {
    /// Orderly close (FIN); our end then waits in TIME-WAIT.
    Fin,
    /// Reset (RST): no TIME-WAIT, the 4-tuple is free at once.
    Rst,
}

/// One core's load settings.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Servers to connect to, taken in turn (several listening ports give
    /// more 4-tuples than one port's ephemeral range).
    pub targets: Vec<SocketAddr>,
    /// What to do.
    pub mode: Mode,
    /// Connections held (or exchanges in flight, for `cps`) on this core.
    pub connections: usize,
    /// Request (and echoed response) bytes, `rr` and `cps`.
    pub size: usize,
    /// Requests in flight per connection, `rr` and `http`.
    pub pipeline: usize,
    /// Most connection attempts per second on this core (`None`: as fast
    /// as the stack takes them).
    pub rate: Option<f64>,
    /// Most connection attempts per `poll` (bounds the loop iteration).
    pub connects_per_poll: usize,
    /// Most handshakes under way at once (keep it below the server's
    /// backlog: SYNs beyond it are dropped and retried a second later).
    pub max_pending: usize,
    /// Stop opening connections after this many attempts (`None`: never).
    pub max_connects: Option<u64>,
    /// `rr`/`http`: send nothing until every connection is open, then
    /// start them all (so the ramp does not compete with the load).
    pub start_after_ramp: bool,
    /// `rr` with `pipeline` 1: most requests in flight on this core at once;
    /// a connection whose response came back while the window is full
    /// waits its turn (round robin). Keeps the frames in flight within
    /// what the wire and pools hold when connections outnumber them.
    pub max_inflight: Option<usize>,
    /// `rr`/`http` with `start_after_ramp`: keep the full table idle this
    /// long (µs) before starting the load; the measured window opens then.
    pub hold_us: u64,
    /// `rr` with `pipeline` 1: the first connections started after the
    /// ramp (and the hold) each begin with one bulk request, echoed back
    /// in full, before their turns of `size`-byte requests.
    pub bulk: Option<Bulk>,
    /// How `cps` closes.
    pub close: CloseWith,
    /// Path of the `GET`s (`http`).
    pub path: String,
    /// `Host` header (`http`).
    pub host: String,
}

impl LoadConfig {
    /// A configuration with the defaults of `bypass loadgen`.
    pub fn new(targets: Vec<SocketAddr>, mode: Mode, connections: usize) -> Self {
        LoadConfig {
            targets,
            mode,
            connections,
            size: 64,
            pipeline: 1,
            rate: None,
            connects_per_poll: 64,
            max_pending: 512,
            max_connects: None,
            start_after_ramp: false,
            max_inflight: None,
            hold_us: 0,
            bulk: None,
            close: CloseWith::Fin,
            path: "/plaintext".into(),
            host: "bypass".into(),
        }
    }

    /// Checks the settings; one sentence on what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.targets.is_empty() {
            return Err("the load generator needs at least one target".into());
        }
        if self.connections == 0 {
            return Err("--connections must be at least 1".into());
        }
        if self.size == 0 && matches!(self.mode, Mode::Rr | Mode::Cps) {
            return Err("--size must be at least 1 byte".into());
        }
        if self.pipeline == 0 || self.pipeline > 1024 {
            return Err("--pipeline must be between 1 and 1024".into());
        }
        if let Some(r) = self.rate {
            if !r.is_finite() || r <= 0.0 {
                return Err("--rate must be a positive number of connections per second".into());
            }
        }
        if self.connects_per_poll == 0 {
            return Err("connects per poll must be at least 1".into());
        }
        if let Some(w) = self.max_inflight {
            if w == 0 || self.mode != Mode::Rr || self.pipeline != 1 {
                return Err(
                    "--max-inflight needs --mode rr, --pipeline 1 and a window of at least 1"
                        .into(),
                );
            }
        }
        if let Some(b) = self.bulk {
            if b.conns == 0
                || b.bytes == 0
                || self.mode != Mode::Rr
                || self.pipeline != 1
                || !self.start_after_ramp
            {
                return Err(
                    "a bulk transfer needs --mode rr, --pipeline 1, the load started after the ramp, and at least one connection and one byte"
                        .into(),
                );
            }
        }
        if self.max_pending == 0 {
            return Err("--max-pending must be at least 1".into());
        }
        if self.mode == Mode::Http {
            HttpClient::new(&self.host).map_err(|e| format!("--host: {e}"))?;
        }
        Ok(())
    }
}

/// Bulk requests at the start of the load (see [`LoadConfig::bulk`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bulk {
    /// Connections that send one.
    pub conns: usize,
    /// Bytes of each (and of its echo).
    pub bytes: usize,
}

/// One core's counters, readable from other threads while it runs.
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct LoadStats {
    /// Connection attempts made.
    pub connects: Counter,
    /// Connections established.
    pub opened: Counter,
    /// Attempts that failed (refused, timed out, no local port).
    pub failed: Counter,
    /// Connections ended in order.
    pub closed: Counter,
    /// Connections reset or timed out.
    pub reset: Counter,
    /// Connections open now.
    pub open: Counter,
    /// Completed transactions (responses).
    pub transactions: Counter,
    /// Request bytes queued.
    pub bytes_out: Counter,
    /// Response bytes received.
    pub bytes_in: Counter,
    /// Protocol errors (bad HTTP, non-2xx, echo longer than asked).
    pub errors: Counter,
    /// Set once every connection has been open at the same time (µs of
    /// the core's clock + 1; 0: not yet).
    pub full_at_us: Counter,
    /// Set when connections that waited (for the ramp, the hold and the
    /// bulk transfers) were first started (µs + 1; 0: not yet).
    pub turns_at_us: Counter,
    /// Bulk requests whose echo came back in full.
    pub bulk_done: Counter,
    /// Longest bulk request, from its start to the last byte of its echo
    /// (µs).
    pub bulk_longest_us: Counter,
}

/// Per-connection state.
#[derive(Debug)]
pub struct Flow {
    /// Send time (µs) of each request in flight, oldest first.
    stamps: Stamps,
    /// Bytes of the oldest response received so far (`rr`, `cps`).
    got: usize,
    /// Request bytes the send buffer has not taken yet.
    owed: usize,
    /// HTTP requests not taken by the send buffer yet (`http`).
    http_out: Vec<u8>,
    http: Option<Box<HttpClient>>,
    done: bool,
    /// False while the connection waits for the ramp to end.
    started: bool,
    /// Bytes of a bulk echo still to come.
    bulk_left: usize,
}

/// Most waiting connections started per `poll`.
const KICKS_PER_POLL: usize = 1024;

/// The load generator of one core.
pub struct LoadGen {
    cfg: LoadConfig,
    stats: Arc<LoadStats>,
    latency: Histogram<u64>,
    handshake: Histogram<u64>,
    start: Option<Instant>,
    full_at: Option<Instant>,
    attempts: u64,
    connecting: HashMap<ConnId, u64, ahash::RandomState>,
    live: usize,
    next_target: usize,
    payload: Vec<u8>,
    req: Vec<u8>,
    done: Vec<Completed>,
    stopped: bool,
    last_poll: Instant,
    tx_at_full: u64,
    /// Requests in flight (rr/http).
    inflight: usize,
    /// Connections waiting for the end of the ramp.
    waiting: VecDeque<ConnId>,
    /// Started from `poll`: (start time µs, request bytes not yet taken,
    /// bulk bytes expected back or 0), until the connection's next
    /// callback adopts it.
    kicked: HashMap<ConnId, (u64, usize, usize), ahash::RandomState>,
    /// Bulk requests started so far, and not yet echoed in full (nor
    /// ended).
    bulk_started: usize,
    bulk_running: usize,
    /// When the turns of request/response started (after the hold and
    /// the bulk transfers).
    load_from: Option<Instant>,
}

fn histogram() -> Histogram<u64> {
    // Invariant: 1 <= 1 < 2 * 1 <= MAX_LATENCY_US and 3 significant digits
    // are valid bounds for hdrhistogram, so this cannot fail.
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds")
}

impl LoadGen {
    /// A generator with `cfg` counting into `stats`. Call
    /// [`LoadConfig::validate`] first; invalid settings are clamped.
    pub fn new(mut cfg: LoadConfig, stats: Arc<LoadStats>) -> LoadGen {
        cfg.pipeline = cfg.pipeline.clamp(1, 1024);
        cfg.connects_per_poll = cfg.connects_per_poll.max(1);
        cfg.max_pending = cfg.max_pending.max(1);
        let payload_len = match cfg.bulk {
            Some(b) => cfg.size.max(b.bytes),
            None => cfg.size,
        };
        let payload = (0..payload_len.clamp(1, 64 * 1024))
            .map(|i| b'a' + (i % 26) as u8)
            .collect();
        LoadGen {
            cfg,
            stats,
            latency: histogram(),
            handshake: histogram(),
            start: None,
            full_at: None,
            attempts: 0,
            connecting: HashMap::default(),
            live: 0,
            next_target: 0,
            payload,
            req: Vec::new(),
            done: Vec::new(),
            stopped: false,
            last_poll: Instant(0),
            tx_at_full: 0,
            inflight: 0,
            waiting: VecDeque::new(),
            kicked: HashMap::default(),
            bulk_started: 0,
            bulk_running: 0,
            load_from: None,
        }
    }

    /// The settings.
    pub fn config(&self) -> &LoadConfig {
        &self.cfg
    }

    /// The counters.
    pub fn stats(&self) -> &Arc<LoadStats> {
        &self.stats
    }

    /// Transaction latencies (µs) of the steady state.
    pub fn latency(&self) -> &Histogram<u64> {
        &self.latency
    }

    /// Handshake latencies (µs): connect call to established.
    pub fn handshake(&self) -> &Histogram<u64> {
        &self.handshake
    }

    /// When every connection was first open at once (`cps`: the first
    /// connection); `None`: not yet.
    pub fn full_at(&self) -> Option<Instant> {
        self.full_at
    }

    /// When the generator first ran.
    pub fn started_at(&self) -> Option<Instant> {
        self.start
    }

    /// Connections open now.
    pub fn live(&self) -> usize {
        self.live
    }

    /// Connection attempts not yet answered.
    pub fn connecting(&self) -> usize {
        self.connecting.len()
    }

    /// Stops opening connections (those open keep going).
    pub fn stop_connecting(&mut self) {
        self.stopped = true;
    }

    fn record(&mut self, sent_us: u64, now: Instant) {
        self.stats.transactions.inc();
        self.inflight = self.inflight.saturating_sub(1);
        // Only what was sent in the measured window counts.
        if self.full_at.is_some_and(|f| sent_us >= f.micros()) {
            let us = now
                .micros()
                .saturating_sub(sent_us)
                .clamp(1, MAX_LATENCY_US);
            // Invariant: `us` is clamped into the histogram's range.
            let _ = self.latency.record(us);
        }
    }

    /// A bulk request's echo came back in full.
    fn bulk_done(&mut self, sent_us: u64, now: Instant) {
        self.inflight = self.inflight.saturating_sub(1);
        self.bulk_running = self.bulk_running.saturating_sub(1);
        self.stats.bulk_done.inc();
        self.stats
            .bulk_longest_us
            .raise(now.micros().saturating_sub(sent_us));
    }

    /// True once the load may start: at once, or (`start_after_ramp`) when
    /// every connection is open and the hold is over.
    fn load_may_start(&self, now: Instant) -> bool {
        !self.cfg.start_after_ramp
            || self
                .full_at
                .is_some_and(|f| now.micros() >= f.micros().saturating_add(self.cfg.hold_us))
    }

    /// Sends up to `total` bytes of the payload pattern; returns how many
    /// the send buffer took.
    fn send_pattern(&self, conn: &mut Conn<'_>, total: usize) -> usize {
        let mut sent = 0;
        while sent < total {
            let n = (total - sent).min(self.payload.len());
            let k = conn.send(&self.payload[..n]);
            sent += k;
            if k < n {
                break;
            }
        }
        sent
    }

    /// Queues `n` requests of `size` bytes (rr/cps) or `n` GETs (http).
    fn send_requests(&mut self, f: &mut Flow, conn: &mut Conn<'_>, n: usize) {
        let now = conn.now().micros();
        self.send_requests_at(f, conn, n, now);
    }

    /// Like `send_requests`, timing the requests from `now` (µs).
    fn send_requests_at(&mut self, f: &mut Flow, conn: &mut Conn<'_>, n: usize, now: u64) {
        self.inflight += n;
        match self.cfg.mode {
            Mode::Http => {
                if let Some(h) = f.http.as_mut() {
                    self.req.clear();
                    for _ in 0..n {
                        if h.write_get(&self.cfg.path, &mut self.req).is_err() {
                            break;
                        }
                        f.stamps.push_back(now);
                    }
                    self.stats.bytes_out.add(self.req.len() as u64);
                    if f.http_out.is_empty() {
                        let k = conn.send(&self.req);
                        f.http_out.extend_from_slice(&self.req[k..]);
                    } else {
                        f.http_out.extend_from_slice(&self.req);
                    }
                }
            }
            _ => {
                for _ in 0..n {
                    f.stamps.push_back(now);
                }
                let bytes = n * self.cfg.size;
                self.stats.bytes_out.add(bytes as u64);
                f.owed += bytes;
                self.flush(f, conn);
            }
        }
    }

    /// Hands owed request bytes to the send buffer, as far as it takes them.
    fn flush(&mut self, f: &mut Flow, conn: &mut Conn<'_>) {
        if !f.http_out.is_empty() {
            let k = conn.send(&f.http_out);
            f.http_out.drain(..k);
            return;
        }
        while f.owed > 0 {
            let n = f.owed.min(self.payload.len());
            let k = conn.send(&self.payload[..n]);
            f.owed -= k;
            if k < n {
                break;
            }
        }
    }

    fn finish_cps(&mut self, f: &mut Flow, conn: &mut Conn<'_>) {
        f.done = true;
        match self.cfg.close {
            CloseWith::Fin => conn.close(),
            CloseWith::Rst => conn.abort(),
        }
    }

    fn window_full(&self, more: usize) -> bool {
        // Connections already waiting go first (round robin).
        self.cfg
            .max_inflight
            .is_some_and(|w| !self.waiting.is_empty() || self.inflight + more > w)
    }

    /// Starts the bulk transfers, alone on the full table; true while they
    /// run (the turns wait for them).
    fn kick_bulk(&mut self, ctx: &mut Ctx<'_>) -> Option<usize> {
        let b = self.cfg.bulk?;
        let now = ctx.now().micros();
        let want = b.conns.min(self.cfg.connections);
        let mut n = 0;
        while self.bulk_started < want {
            let Some(id) = self.waiting.pop_front() else {
                break;
            };
            self.bulk_started += 1;
            self.bulk_running += 1;
            self.inflight += 1;
            let k = self.send_pattern(&mut ctx.conn(id), b.bytes);
            self.stats.bytes_out.add(b.bytes as u64);
            self.kicked.insert(id, (now, b.bytes - k, b.bytes));
            n += 1;
        }
        (self.bulk_running > 0).then_some(n)
    }

    /// Starts connections that waited for the ramp (up to a bound): the
    /// bulk transfers first, alone; then the turns.
    fn kick(&mut self, ctx: &mut Ctx<'_>) -> usize {
        if let Some(n) = self.kick_bulk(ctx) {
            return n;
        }
        let now = ctx.now().micros();
        if self.load_from.is_none() {
            self.load_from = Some(ctx.now());
            self.stats.turns_at_us.set(ctx.now().micros() + 1);
        }
        let mut n = self.waiting.len().min(KICKS_PER_POLL);
        if let Some(w) = self.cfg.max_inflight {
            n = n.min(w.saturating_sub(self.inflight));
        }
        self.inflight += n * self.cfg.pipeline;
        let ids: Vec<ConnId> = self.waiting.drain(..n).collect();
        for id in ids {
            let mut conn = ctx.conn(id);
            let bytes = match self.cfg.mode {
                Mode::Http => {
                    self.req.clear();
                    // A fresh client to write the GETs; the flow's own
                    // client counts them when it adopts the kick.
                    let Ok(mut h) = HttpClient::new(&self.cfg.host) else {
                        continue;
                    };
                    for _ in 0..self.cfg.pipeline {
                        let _ = h.write_get(&self.cfg.path, &mut self.req);
                    }
                    self.req.clone()
                }
                _ => {
                    let mut v = Vec::with_capacity(self.cfg.pipeline * self.cfg.size);
                    while v.len() < self.cfg.pipeline * self.cfg.size {
                        let k =
                            (self.cfg.pipeline * self.cfg.size - v.len()).min(self.payload.len());
                        v.extend_from_slice(&self.payload[..k]);
                    }
                    v
                }
            };
            let k = conn.send(&bytes);
            self.stats.bytes_out.add(bytes.len() as u64);
            self.kicked.insert(id, (now, bytes.len() - k, 0));
        }
        n
    }

    /// Takes over a connection started from `poll`.
    fn adopt(&mut self, f: &mut Flow, id: ConnId) {
        if f.started {
            return;
        }
        let Some((t, owed, bulk)) = self.kicked.remove(&id) else {
            return;
        };
        f.started = true;
        f.bulk_left = bulk;
        for _ in 0..self.cfg.pipeline {
            f.stamps.push_back(t);
        }
        if let Some(h) = f.http.as_mut() {
            // Keep the client's count of requests in flight right.
            let mut sink = Vec::new();
            for _ in 0..self.cfg.pipeline {
                let _ = h.write_get(&self.cfg.path, &mut sink);
            }
            if owed > 0 {
                f.http_out.extend_from_slice(&sink[sink.len() - owed..]);
            }
        } else {
            f.owed = owed;
        }
    }

    fn want_more(&self) -> bool {
        !self.stopped
            && self.cfg.mode != Mode::Hold
            && !(self.cfg.mode == Mode::Cps
                && self.cfg.max_connects.is_some_and(|m| self.attempts >= m))
    }
}

impl TcpApp for LoadGen {
    type Conn = Flow;

    fn on_open(&mut self, conn: &mut Conn<'_>) -> Flow {
        let now = conn.now();
        let t0 = self.connecting.remove(&conn.id());
        if let Some(t0) = t0 {
            let _ = self
                .handshake
                .record(now.micros().saturating_sub(t0).clamp(1, MAX_LATENCY_US));
        }
        self.live += 1;
        self.stats.opened.inc();
        self.stats.open.set(self.live as u64);
        // The measured window opens when every connection is open; in cps
        // at the first open (the first handshake also resolves the peer's
        // address, which must not count).
        if self.full_at.is_none()
            && (self.cfg.mode == Mode::Cps || self.live >= self.cfg.connections)
        {
            self.full_at = Some(now);
            self.tx_at_full = self.stats.transactions.get();
            self.stats.full_at_us.set(now.micros() + 1);
        }
        let mut f = Flow {
            stamps: Stamps::default(),
            got: 0,
            owed: 0,
            http_out: Vec::new(),
            http: None,
            done: false,
            started: true,
            bulk_left: 0,
        };
        let defer = (self.cfg.start_after_ramp
            && matches!(self.cfg.mode, Mode::Rr | Mode::Http)
            && (self.full_at.is_none() || self.full_at == Some(now))
            && self.waiting.len() < self.cfg.connections)
            || (self.cfg.mode == Mode::Rr && self.window_full(self.cfg.pipeline));
        if defer {
            f.started = false;
            if self.cfg.mode == Mode::Http {
                f.http = HttpClient::new(&self.cfg.host).ok().map(Box::new);
            }
            self.waiting.push_back(conn.id());
            return f;
        }
        match self.cfg.mode {
            Mode::Hold => {}
            Mode::Rr => self.send_requests(&mut f, conn, self.cfg.pipeline),
            Mode::Cps => {
                let t0 = t0.unwrap_or(now.micros());
                self.send_requests_at(&mut f, conn, 1, t0);
            }
            Mode::Http => {
                f.http = HttpClient::new(&self.cfg.host).ok().map(Box::new);
                self.send_requests(&mut f, conn, self.cfg.pipeline);
            }
        }
        f
    }

    fn on_data(&mut self, f: &mut Flow, conn: &mut Conn<'_>, data: &[u8]) -> usize {
        self.adopt(f, conn.id());
        self.stats.bytes_in.add(data.len() as u64);
        let now = conn.now();
        match self.cfg.mode {
            Mode::Hold => {
                // Nothing was asked: whatever comes is a protocol error.
                self.stats.errors.inc();
            }
            Mode::Rr | Mode::Cps => {
                let mut rest = data.len();
                let mut completed = 0;
                if f.bulk_left > 0 {
                    let take = rest.min(f.bulk_left);
                    f.bulk_left -= take;
                    rest -= take;
                    if f.bulk_left == 0 {
                        if let Some(t) = f.stamps.pop_front() {
                            self.bulk_done(t, now);
                        }
                        completed += 1;
                    }
                }
                while rest > 0 {
                    if f.stamps.is_empty() {
                        // More came back than was sent.
                        self.stats.errors.inc();
                        conn.abort();
                        return data.len();
                    }
                    let take = rest.min(self.cfg.size - f.got);
                    f.got += take;
                    rest -= take;
                    if f.got == self.cfg.size {
                        f.got = 0;
                        if let Some(t) = f.stamps.pop_front() {
                            self.record(t, now);
                        }
                        completed += 1;
                    }
                }
                if self.cfg.mode == Mode::Cps {
                    if completed > 0 && !f.done {
                        self.finish_cps(f, conn);
                    }
                } else if completed > 0 && !f.done {
                    if self.window_full(completed) {
                        // Wait for a turn; `poll` starts it again.
                        f.started = false;
                        self.waiting.push_back(conn.id());
                    } else {
                        self.send_requests(f, conn, completed);
                    }
                }
            }
            Mode::Http => {
                let Some(h) = f.http.as_mut() else {
                    return data.len();
                };
                let mut done = std::mem::take(&mut self.done);
                done.clear();
                let r = h.on_data(data, |c| done.push(c));
                for c in &done {
                    if !(200..300).contains(&c.status) {
                        self.stats.errors.inc();
                    }
                    if let Some(t) = f.stamps.pop_front() {
                        self.record(t, now);
                    }
                }
                let n = done.len();
                self.done = done;
                match r {
                    Ok(HttpFlow::KeepAlive) => {
                        if n > 0 && !f.done {
                            self.send_requests(f, conn, n);
                        }
                    }
                    Ok(HttpFlow::Close) => {
                        f.done = true;
                        conn.close();
                    }
                    Err(_) => {
                        self.stats.errors.inc();
                        f.done = true;
                        conn.abort();
                    }
                }
            }
        }
        data.len()
    }

    fn on_writable(&mut self, f: &mut Flow, conn: &mut Conn<'_>) {
        self.adopt(f, conn.id());
        self.flush(f, conn);
    }

    fn on_close(&mut self, f: Flow, reason: CloseReason) {
        if f.bulk_left > 0 {
            // Ended before its echo came back: the turns go on without it.
            self.bulk_running = self.bulk_running.saturating_sub(1);
        }
        self.inflight = self.inflight.saturating_sub(f.stamps.len());
        self.live = self.live.saturating_sub(1);
        self.stats.open.set(self.live as u64);
        match reason {
            CloseReason::Normal => self.stats.closed.inc(),
            CloseReason::Reset => self.stats.reset.inc(),
        }
    }

    fn on_connect_failed(&mut self, id: ConnId) {
        self.connecting.remove(&id);
        self.stats.failed.inc();
    }

    fn poll(&mut self, ctx: &mut Ctx<'_>) -> usize {
        let now = ctx.now();
        self.last_poll = now;
        let start = *self.start.get_or_insert(now);
        let mut kicked = 0;
        if !self.waiting.is_empty() {
            if self.load_may_start(now) {
                kicked = self.kick(ctx);
            }
        } else if self.live + self.connecting.len() >= self.cfg.connections {
            // The steady state: nothing to open, nobody waiting.
            return 0;
        }
        if self.stopped
            || (self.cfg.mode == Mode::Hold && self.attempts >= self.cfg.connections as u64)
        {
            return 0;
        }
        // Hold and the ramp of rr/http stop at `connections` attempts in
        // total; afterwards (and in cps) lost connections are replaced.
        let mut budget = self.cfg.connects_per_poll;
        if let Some(rate) = self.cfg.rate {
            let allowed = (now.since(start) as f64 * rate / 1e6) as u64 + 1;
            budget = budget.min(allowed.saturating_sub(self.attempts) as usize);
        }
        if let Some(m) = self.cfg.max_connects {
            budget = budget.min(m.saturating_sub(self.attempts) as usize);
        }
        if self.attempts >= self.cfg.connections as u64 && !self.want_more() {
            return kicked;
        }
        let busy = self.live + self.connecting.len();
        budget = budget.min(self.cfg.connections.saturating_sub(busy));
        budget = budget.min(self.cfg.max_pending.saturating_sub(self.connecting.len()));
        let mut n = 0;
        while n < budget {
            let target = self.cfg.targets[self.next_target % self.cfg.targets.len()];
            self.next_target = self.next_target.wrapping_add(1);
            self.attempts += 1;
            self.stats.connects.inc();
            n += 1;
            match ctx.connect(target) {
                Ok(id) => {
                    self.connecting.insert(id, now.micros());
                }
                Err(_) => {
                    // No local port or a full table: count it and let the
                    // next poll try again.
                    self.stats.failed.inc();
                    break;
                }
            }
        }
        n + kicked
    }
}

impl LoadGen {
    /// The measured window: (transactions, seconds) from the moment every
    /// connection was open (the first one, for `cps`), or once waiting
    /// connections were started (`start_after_ramp`: after the hold and
    /// the bulk transfers), to the last poll.
    pub fn window(&self) -> (u64, f64) {
        let Some(from) = self.load_from.or(self.full_at) else {
            return (0, 0.0);
        };
        (
            self.stats
                .transactions
                .get()
                .saturating_sub(self.tx_at_full),
            self.last_poll.since(from) as f64 / 1e6,
        )
    }
}

mod stamps;
mod summary;
use stamps::Stamps;
pub use summary::{empty_histogram, CoreSummary, LoadSummary, Percentiles, Stall, StallWatch};

#[cfg(test)]
mod tests;
