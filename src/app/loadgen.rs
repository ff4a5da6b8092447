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
use std::net::SocketAddrV4;
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
    pub targets: Vec<SocketAddrV4>,
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
    /// How `cps` closes.
    pub close: CloseWith,
    /// Path of the `GET`s (`http`).
    pub path: String,
    /// `Host` header (`http`).
    pub host: String,
}

impl LoadConfig {
    /// A configuration with the defaults of `bypass loadgen`.
    pub fn new(targets: Vec<SocketAddrV4>, mode: Mode, connections: usize) -> Self {
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
        if self.max_pending == 0 {
            return Err("--max-pending must be at least 1".into());
        }
        if self.mode == Mode::Http {
            HttpClient::new(&self.host).map_err(|e| format!("--host: {e}"))?;
        }
        Ok(())
    }
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
}

/// Per-connection state.
#[derive(Debug)]
pub struct Flow {
    /// Send time (µs) of each request in flight, oldest first.
    stamps: VecDeque<u64>,
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
    /// Started from `poll`: (start time µs, request bytes not yet taken),
    /// until the connection's next callback adopts it.
    kicked: HashMap<ConnId, (u64, usize), ahash::RandomState>,
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
        let payload = (0..cfg.size.clamp(1, 64 * 1024))
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

    /// Starts connections that waited for the ramp (up to a bound).
    fn kick(&mut self, ctx: &mut Ctx<'_>) -> usize {
        let now = ctx.now().micros();
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
            self.kicked.insert(id, (now, bytes.len() - k));
        }
        n
    }

    /// Takes over a connection started from `poll`.
    fn adopt(&mut self, f: &mut Flow, id: ConnId) {
        if f.started {
            return;
        }
        let Some((t, owed)) = self.kicked.remove(&id) else {
            return;
        };
        f.started = true;
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
            stamps: VecDeque::new(),
            got: 0,
            owed: 0,
            http_out: Vec::new(),
            http: None,
            done: false,
            started: true,
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
            if self.full_at.is_some() || !self.cfg.start_after_ramp {
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
    /// connection was open (the first one, for `cps`) to the last poll.
    pub fn window(&self) -> (u64, f64) {
        let Some(from) = self.full_at else {
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

/// What a run of one or more cores' generators measured.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LoadSummary {
    /// The mode.
    pub mode: Mode,
    /// Connections asked for, all cores.
    pub connections: usize,
    /// Connections open at the end.
    pub open: u64,
    /// Connection attempts.
    pub connects: u64,
    /// Connections established.
    pub opened: u64,
    /// Failed attempts.
    pub failed: u64,
    /// Orderly closes.
    pub closed: u64,
    /// Resets and timeouts.
    pub reset: u64,
    /// Protocol errors.
    pub errors: u64,
    /// All transactions.
    pub transactions: u64,
    /// Seconds from the first poll until every connection was open on
    /// every core (`None`: never, or `cps`).
    pub time_to_full_s: Option<f64>,
    /// Transactions per second in the measured window (summed over cores).
    pub tps: f64,
    /// Connections set up and torn down per second (`cps`).
    pub cps: f64,
    /// Transaction latency of the measured window.
    pub latency: Percentiles,
    /// Handshake latency.
    pub handshake: Percentiles,
    /// Per core: (transactions, window seconds, open).
    pub per_core: Vec<CoreSummary>,
}

/// One core's part of a [`LoadSummary`].
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct CoreSummary {
    /// Transactions in the window.
    pub transactions: u64,
    /// Window length (s).
    pub window_s: f64,
    /// Transactions per second.
    pub tps: f64,
    /// Connections open at the end.
    pub open: u64,
    /// Connection attempts.
    pub connects: u64,
}

impl LoadSummary {
    /// Sums the generators of all cores.
    pub fn of(gens: &[&LoadGen]) -> LoadSummary {
        let mut lat = empty_histogram();
        let mut hs = empty_histogram();
        let sum = |f: fn(&LoadStats) -> u64| gens.iter().map(|g| f(&g.stats)).sum::<u64>();
        let mut per_core = Vec::new();
        let mut tps = 0.0;
        let mut full = Some(0.0f64);
        for g in gens {
            // Same bounds on both sides: merging cannot fail.
            let _ = lat.add(&g.latency);
            let _ = hs.add(&g.handshake);
            let (t, w) = g.window();
            let r = if w > 0.0 { t as f64 / w } else { 0.0 };
            tps += r;
            per_core.push(CoreSummary {
                transactions: t,
                window_s: w,
                tps: r,
                open: g.live as u64,
                connects: g.stats.connects.get(),
            });
            full = match (full, g.full_at, g.start) {
                (Some(m), Some(f), Some(s)) => Some(m.max(f.since(s) as f64 / 1e6)),
                _ => None,
            };
        }
        let mode = gens.first().map_or(Mode::Rr, |g| g.cfg.mode);
        let cps = if mode == Mode::Cps { tps } else { 0.0 };
        LoadSummary {
            mode,
            connections: gens.iter().map(|g| g.cfg.connections).sum(),
            open: gens.iter().map(|g| g.live as u64).sum(),
            connects: sum(|s| s.connects.get()),
            opened: sum(|s| s.opened.get()),
            failed: sum(|s| s.failed.get()),
            closed: sum(|s| s.closed.get()),
            reset: sum(|s| s.reset.get()),
            errors: sum(|s| s.errors.get()),
            transactions: sum(|s| s.transactions.get()),
            time_to_full_s: if mode == Mode::Cps || gens.is_empty() {
                None
            } else {
                full
            },
            tps,
            cps,
            latency: Percentiles::of(&lat),
            handshake: Percentiles::of(&hs),
            per_core,
        }
    }
}

/// Percentiles of a histogram, for tables and JSON.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Percentiles {
    /// Samples.
    pub count: u64,
    /// Mean (µs).
    pub mean_us: f64,
    /// Median (µs).
    pub p50_us: u64,
    /// 90th percentile (µs).
    pub p90_us: u64,
    /// 99th percentile (µs).
    pub p99_us: u64,
    /// 99.9th percentile (µs).
    pub p999_us: u64,
    /// Maximum (µs).
    pub max_us: u64,
}

impl Percentiles {
    /// Reads `h`.
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            count: h.len(),
            mean_us: h.mean(),
            p50_us: h.value_at_quantile(0.5),
            p90_us: h.value_at_quantile(0.9),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
        }
    }
}

/// An empty histogram with the generator's bounds (to merge cores into).
pub fn empty_histogram() -> Histogram<u64> {
    histogram()
}

/// Watches a run's progress counter (transactions, connections opened,
/// responses: anything that only grows while the run does work) and says
/// when it stood still for a whole window: a stall. Sans-I/O: the caller
/// samples the counter at times of its choosing, in seconds.
#[derive(Debug, Clone)]
pub struct StallWatch {
    window: f64,
    last: Option<(f64, u64)>,
    stalls: Vec<Stall>,
}

/// A window in which the watched counter did not move.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Stall {
    /// When the counter last moved (s).
    pub from_s: f64,
    /// When the stall was noticed (s): at least one window later.
    pub to_s: f64,
    /// The counter's value throughout.
    pub at: u64,
}

impl StallWatch {
    /// A watch that reports a stall once the counter has not moved for
    /// `window_s` seconds.
    pub fn new(window_s: f64) -> StallWatch {
        StallWatch {
            window: window_s,
            last: None,
            stalls: Vec::new(),
        }
    }

    /// Takes a sample; returns true if this sample ends a stall (the
    /// counter stood still since it last moved, a whole window ago). A
    /// stall is reported once; the watch then waits for the counter to
    /// move again.
    pub fn sample(&mut self, t: f64, progress: u64) -> bool {
        match self.last {
            Some((_, v)) if progress != v => {
                self.last = Some((t, progress));
                false
            }
            Some((since, v)) if since.is_finite() && t - since >= self.window => {
                self.stalls.push(Stall {
                    from_s: since,
                    to_s: t,
                    at: v,
                });
                // Reported: no second stall until the counter moves.
                self.last = Some((f64::INFINITY, v));
                true
            }
            Some(_) => false,
            None => {
                self.last = Some((t, progress));
                false
            }
        }
    }

    /// Forgets the last sample: the next one starts afresh (e.g. between
    /// the ramp and the measured window).
    pub fn restart(&mut self) {
        self.last = None;
    }

    /// Every stall seen so far.
    pub fn stalls(&self) -> &[Stall] {
        &self.stalls
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::tcp::ConnOps;
    use crate::error::{Error, Result};
    use crate::stack::UdpId;
    use std::net::Ipv4Addr;

    /// A scripted stack: records what the generator does; `room` limits
    /// how much each send takes.
    #[derive(Default)]
    struct Fake {
        sent: HashMap<ConnId, Vec<u8>>,
        connects: Vec<(ConnId, SocketAddrV4)>,
        closed: Vec<ConnId>,
        aborted: Vec<ConnId>,
        room: Option<usize>,
        refuse: bool,
        next: u32,
    }

    impl ConnOps for Fake {
        fn send(&mut self, id: ConnId, data: &[u8]) -> usize {
            let n = self.room.map_or(data.len(), |r| r.min(data.len()));
            if let Some(r) = self.room.as_mut() {
                *r -= n;
            }
            self.sent
                .entry(id)
                .or_default()
                .extend_from_slice(&data[..n]);
            n
        }
        fn send_room(&mut self, _id: ConnId) -> usize {
            self.room.unwrap_or(usize::MAX)
        }
        fn close(&mut self, id: ConnId) {
            self.closed.push(id);
        }
        fn abort(&mut self, id: ConnId) {
            self.aborted.push(id);
        }
        fn endpoints(&mut self, _id: ConnId) -> Option<(SocketAddrV4, SocketAddrV4)> {
            None
        }
        fn connect(&mut self, remote: SocketAddrV4) -> Result<ConnId> {
            if self.refuse {
                return Err(Error::Config("no port".into()));
            }
            let id = ConnId {
                idx: self.next,
                gen: 0,
            };
            self.next += 1;
            self.connects.push((id, remote));
            Ok(id)
        }
        fn udp_send(&mut self, _: UdpId, _: SocketAddrV4, _: &[u8]) -> bool {
            false
        }
    }

    fn target(port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), port)
    }

    fn gen(mode: Mode, conns: usize) -> LoadGen {
        let mut c = LoadConfig::new(vec![target(7), target(8)], mode, conns);
        c.size = 4;
        c.connects_per_poll = 3;
        LoadGen::new(c, Arc::default())
    }

    fn poll(g: &mut LoadGen, fake: &mut Fake, now: u64) -> usize {
        g.poll(&mut Ctx::new(fake, Instant(now)))
    }

    fn open(g: &mut LoadGen, fake: &mut Fake, id: ConnId, now: u64) -> Flow {
        g.on_open(&mut Conn::new(fake, id, Instant(now)))
    }

    fn data(g: &mut LoadGen, fake: &mut Fake, f: &mut Flow, id: ConnId, now: u64, d: &[u8]) {
        let n = g.on_data(f, &mut Conn::new(fake, id, Instant(now)), d);
        assert_eq!(n, d.len());
    }

    #[test]
    fn ramp_is_bounded_per_poll_and_by_connections_and_alternates_targets() {
        let mut g = gen(Mode::Hold, 5);
        let mut fake = Fake::default();
        assert_eq!(poll(&mut g, &mut fake, 0), 3);
        assert_eq!(poll(&mut g, &mut fake, 10), 2);
        assert_eq!(poll(&mut g, &mut fake, 20), 0);
        let ports: Vec<u16> = fake.connects.iter().map(|c| c.1.port()).collect();
        assert_eq!(ports, vec![7, 8, 7, 8, 7]);
        assert_eq!(g.connecting(), 5);
        // Hold never reconnects, even after losing connections.
        let id = fake.connects[0].0;
        let f = open(&mut g, &mut fake, id, 100);
        g.on_close(f, CloseReason::Reset);
        assert_eq!(poll(&mut g, &mut fake, 200), 0);
        assert_eq!(g.stats().reset.get(), 1);
    }

    #[test]
    fn pending_handshakes_are_bounded() {
        let mut g = gen(Mode::Rr, 100);
        g.cfg.max_pending = 4;
        let mut fake = Fake::default();
        assert_eq!(poll(&mut g, &mut fake, 0), 3);
        assert_eq!(poll(&mut g, &mut fake, 1), 1);
        assert_eq!(poll(&mut g, &mut fake, 2), 0);
        let id = fake.connects[0].0;
        let _f = open(&mut g, &mut fake, id, 3);
        g.on_connect_failed(fake.connects[1].0);
        assert_eq!(poll(&mut g, &mut fake, 4), 2);
        assert_eq!(g.connecting(), 4);
        assert_eq!(g.live(), 1);
    }

    #[test]
    fn start_after_ramp_holds_requests_until_every_connection_is_open() {
        let mut g = gen(Mode::Rr, 2);
        g.cfg.start_after_ramp = true;
        g.cfg.pipeline = 2;
        let mut fake = Fake::default();
        poll(&mut g, &mut fake, 0);
        let (a, b) = (fake.connects[0].0, fake.connects[1].0);
        let mut fa = open(&mut g, &mut fake, a, 10);
        assert!(fake.sent.is_empty());
        let _fb = open(&mut g, &mut fake, b, 20);
        assert!(fake.sent.is_empty());
        fake.room = Some(12); // a takes 8 bytes, b only 4 of its 8
        assert_eq!(poll(&mut g, &mut fake, 30), 2);
        assert_eq!(fake.sent[&a].len() + fake.sent[&b].len(), 12);
        // The first response is timed from the kick.
        data(&mut g, &mut fake, &mut fa, a, 45, b"abcd");
        assert_eq!(g.latency().max(), 15);
        assert_eq!(fa.stamps.len(), 2); // one left, one new
    }

    #[test]
    fn max_inflight_takes_turns() {
        let mut g = gen(Mode::Rr, 3);
        g.cfg.max_inflight = Some(2);
        let mut fake = Fake::default();
        poll(&mut g, &mut fake, 0);
        let ids: Vec<ConnId> = fake.connects.iter().map(|c| c.0).collect();
        let mut fa = open(&mut g, &mut fake, ids[0], 1);
        let _fb = open(&mut g, &mut fake, ids[1], 1);
        let mut fc = open(&mut g, &mut fake, ids[2], 1);
        // The window holds two: the third waits.
        assert_eq!(fake.sent.len(), 2);
        assert!(!fc.started);
        // a's response frees a turn; a itself queues behind c.
        data(&mut g, &mut fake, &mut fa, ids[0], 5, b"abcd");
        assert_eq!(fake.sent[&ids[0]].len(), 4);
        assert_eq!(poll(&mut g, &mut fake, 6), 1);
        assert_eq!(fake.sent[&ids[2]].len(), 4);
        assert_eq!(fake.sent[&ids[0]].len(), 4);
        data(&mut g, &mut fake, &mut fc, ids[2], 9, b"abcd");
        assert_eq!(g.latency().min(), 3); // kicked at 6
        assert_eq!(g.stats().transactions.get(), 2);
        // Then a's turn comes.
        assert_eq!(poll(&mut g, &mut fake, 10), 1);
        assert_eq!(fake.sent[&ids[0]].len(), 8);
        let mut c = LoadConfig::new(vec![target(7)], Mode::Rr, 1);
        c.max_inflight = Some(4);
        c.pipeline = 2;
        assert!(c.validate().is_err());
    }

    #[test]
    fn rate_limits_the_ramp() {
        let mut g = gen(Mode::Hold, 100);
        g.cfg.rate = Some(1000.0); // one per ms
        g.cfg.connects_per_poll = 64;
        let mut fake = Fake::default();
        assert_eq!(poll(&mut g, &mut fake, 0), 1);
        assert_eq!(poll(&mut g, &mut fake, 500), 0);
        assert_eq!(poll(&mut g, &mut fake, 1000), 1);
        assert_eq!(poll(&mut g, &mut fake, 10_000), 9);
        assert_eq!(fake.connects.len(), 11);
    }

    #[test]
    fn rr_closed_loop_with_pipeline_records_after_ramp() {
        let mut g = gen(Mode::Rr, 2);
        g.cfg.pipeline = 2;
        let mut fake = Fake::default();
        poll(&mut g, &mut fake, 0);
        let (a, b) = (fake.connects[0].0, fake.connects[1].0);
        let mut fa = open(&mut g, &mut fake, a, 10);
        assert_eq!(g.handshake().len(), 1);
        assert_eq!(fake.sent[&a], b"abcdabcd"); // two requests of 4 bytes
                                                // A response before the ramp completes counts but is not recorded.
        data(&mut g, &mut fake, &mut fa, a, 30, b"abcd");
        assert_eq!(g.stats().transactions.get(), 1);
        assert_eq!(g.latency().len(), 0);
        assert_eq!(fake.sent[&a].len(), 12); // one more left
        let _fb = open(&mut g, &mut fake, b, 40);
        assert_eq!(g.full_at(), Some(Instant(40)));
        // Split responses: 2 + 2 + 4 bytes complete two requests.
        data(&mut g, &mut fake, &mut fa, a, 50, b"ab");
        assert_eq!(g.stats().transactions.get(), 1);
        data(&mut g, &mut fake, &mut fa, a, 60, b"cdabcd");
        assert_eq!(g.stats().transactions.get(), 3);
        // Sent at 10 and 30, before the window opened at 40: not timed.
        assert_eq!(g.latency().len(), 0);
        assert_eq!(fa.stamps.len(), 2);
        // Sent at 60, answered at 75 and 80.
        data(&mut g, &mut fake, &mut fa, a, 75, b"abcd");
        data(&mut g, &mut fake, &mut fa, a, 80, b"abcd");
        assert_eq!(g.latency().len(), 2);
        assert_eq!(g.latency().min(), 15);
        assert_eq!(g.latency().max(), 20);
        assert_eq!(g.window().0, 4);
        // Echo longer than asked: an error, the connection is reset.
        data(&mut g, &mut fake, &mut fa, a, 90, &[b'x'; 9]);
        assert_eq!(g.stats().errors.get(), 1);
        assert_eq!(fake.aborted, vec![a]);
    }

    #[test]
    fn short_sends_are_finished_on_writable() {
        let mut g = gen(Mode::Rr, 1);
        g.cfg.pipeline = 3;
        let mut fake = Fake {
            room: Some(5),
            ..Default::default()
        };
        poll(&mut g, &mut fake, 0);
        let a = fake.connects[0].0;
        let mut f = open(&mut g, &mut fake, a, 1);
        assert_eq!(fake.sent[&a].len(), 5);
        assert_eq!(f.owed, 7);
        fake.room = Some(100);
        g.on_writable(&mut f, &mut Conn::new(&mut fake, a, Instant(2)));
        assert_eq!(fake.sent[&a].len(), 12);
        assert_eq!(f.owed, 0);
    }

    #[test]
    fn cps_closes_after_one_response_and_replaces_connections() {
        let mut g = gen(Mode::Cps, 1);
        g.cfg.close = CloseWith::Rst;
        g.cfg.max_connects = Some(2);
        let mut fake = Fake::default();
        assert_eq!(poll(&mut g, &mut fake, 0), 1);
        assert_eq!(poll(&mut g, &mut fake, 5), 0); // one at a time
        let a = fake.connects[0].0;
        let mut f = open(&mut g, &mut fake, a, 10);
        data(&mut g, &mut fake, &mut f, a, 25, b"abcd");
        assert_eq!(fake.aborted, vec![a]);
        // Connected before the window opened (at the first open): counted,
        // not timed.
        assert_eq!(g.latency().len(), 0);
        assert_eq!(g.stats().transactions.get(), 1);
        g.on_close(f, CloseReason::Reset);
        assert_eq!(poll(&mut g, &mut fake, 30), 1);
        let b = fake.connects[1].0;
        let mut f = open(&mut g, &mut fake, b, 35);
        data(&mut g, &mut fake, &mut f, b, 50, b"abcd");
        assert_eq!(g.latency().max(), 20); // connect call to response
        g.on_close(f, CloseReason::Reset);
        // The bound is reached: no more.
        assert_eq!(poll(&mut g, &mut fake, 60), 0);
        // Both exchanges completed in the window (10 to 60 us).
        assert_eq!(g.window(), (2, 50e-6));
        assert_eq!(g.stats().connects.get(), 2);
    }

    #[test]
    fn failed_connect_call_stops_the_poll() {
        let mut g = gen(Mode::Rr, 10);
        let mut fake = Fake {
            refuse: true,
            ..Default::default()
        };
        assert_eq!(poll(&mut g, &mut fake, 0), 1);
        assert_eq!(g.stats().failed.get(), 1);
        assert_eq!(g.connecting(), 0);
    }

    #[test]
    fn http_pipelines_gets_and_times_responses() {
        let mut g = gen(Mode::Http, 1);
        g.cfg.pipeline = 2;
        let mut fake = Fake::default();
        poll(&mut g, &mut fake, 0);
        let a = fake.connects[0].0;
        let mut f = open(&mut g, &mut fake, a, 10);
        let sent = String::from_utf8(fake.sent[&a].clone()).unwrap();
        assert_eq!(sent.matches("GET /plaintext HTTP/1.1\r\n").count(), 2);
        let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi";
        data(&mut g, &mut fake, &mut f, a, 20, &resp[..10]);
        assert_eq!(g.stats().transactions.get(), 0);
        data(&mut g, &mut fake, &mut f, a, 30, &resp[10..]);
        assert_eq!(g.stats().transactions.get(), 1);
        assert_eq!(g.latency().max(), 20);
        let sent = String::from_utf8(fake.sent[&a].clone()).unwrap();
        assert_eq!(sent.matches("GET ").count(), 3);
        // A 404 is an error; `Connection: close` closes.
        data(
            &mut g,
            &mut fake,
            &mut f,
            a,
            40,
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
        assert_eq!(g.stats().errors.get(), 1);
        assert_eq!(fake.closed, vec![a]);
    }

    #[test]
    fn validation() {
        let ok = LoadConfig::new(vec![target(7)], Mode::Rr, 1);
        assert!(ok.validate().is_ok());
        let mut c = ok.clone();
        c.targets.clear();
        assert!(c.validate().is_err());
        let mut c = ok.clone();
        c.pipeline = 0;
        assert!(c.validate().is_err());
        let mut c = ok.clone();
        c.rate = Some(-1.0);
        assert!(c.validate().is_err());
        let mut c = ok;
        c.connections = 0;
        assert!(c.validate().is_err());
    }

    #[test]
    fn percentiles() {
        let mut h = empty_histogram();
        for v in 1..=1000 {
            h.record(v).unwrap();
        }
        let p = Percentiles::of(&h);
        assert_eq!(p.count, 1000);
        assert_eq!(p.p50_us, 500);
        assert_eq!(p.p99_us, 990);
        assert_eq!(p.max_us, 1000);
        assert_eq!(Percentiles::of(&empty_histogram()).count, 0);
    }

    #[test]
    fn stall_watch_reports_a_still_window_once() {
        let mut w = StallWatch::new(1.0);
        assert!(!w.sample(0.0, 0));
        assert!(!w.sample(0.5, 10));
        assert!(!w.sample(1.0, 10));
        // Still at 10 since 0.5 s: a whole window at 1.5 s.
        assert!(w.sample(1.5, 10));
        assert!(!w.sample(2.5, 10), "reported once");
        assert!(!w.sample(3.0, 11));
        assert!(!w.sample(3.9, 12));
        assert!(!w.sample(4.8, 12));
        assert!(w.sample(4.9, 12));
        assert_eq!(
            w.stalls(),
            &[
                Stall {
                    from_s: 0.5,
                    to_s: 1.5,
                    at: 10
                },
                Stall {
                    from_s: 3.9,
                    to_s: 4.9,
                    at: 12
                },
            ]
        );
        w.restart();
        assert!(!w.sample(10.0, 12));
        assert!(!w.sample(10.5, 12));
    }

    #[test]
    fn stall_watch_quiet_while_progressing() {
        let mut w = StallWatch::new(0.1);
        for i in 0..100u64 {
            assert!(!w.sample(i as f64 * 0.05, i));
        }
        assert!(w.stalls().is_empty());
    }
}
