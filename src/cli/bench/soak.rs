//! `bypass bench soak`: long-running churn between two stacks over an
//! in-memory wire, watching memory and counters for drift.
//!
//! One thread runs both ends on the real monotonic clock: an HTTP server
//! (the TechEmpower routes, [`HttpApp`]) and a client that keeps
//! `--conns` connections busy, each doing `--requests` keep-alive
//! `GET /plaintext` round trips before closing and being replaced (so
//! connection setup, TIME-WAIT and teardown churn all the time). Every
//! `--sample` seconds it prints the process's resident memory, the
//! connection and buffer counts and the error counters; at the end, the
//! drift from the first sample. Any error (a failed or reset connection,
//! a bad response) makes the run fail, and so does a stall: progress
//! (responses and closed connections) standing still for a whole sample
//! window, watched every 100 ms.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use bypass::app::http::{HttpApp, HttpClient, HttpCounters, TechEmpower};
use bypass::app::loadgen::StallWatch;
use bypass::app::tcp::{Conn, Ctx, TcpApp};
use bypass::port::mem::{Faults, MemConfig, MemPort, MemQueue};
use bypass::port::{Port, PortQueue};
use bypass::runtime::{TcpWorker, Worker};
use bypass::stack::{CloseReason, ConnId, ListenOpts, Stack, StackConfig, TcpOpts};
use bypass::time::Instant;
use bypass::{Error, Result};

use crate::cli::say;

type Server = HttpApp<TechEmpower, fn() -> TechEmpower>;

const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const PORT: u16 = 80;

/// `bypass bench soak` flags.
#[derive(Args, Debug)]
pub struct SoakArgs {
    /// How long to run, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 60.0)]
    pub duration: f64,
    /// Memory drift is measured from the first sample after this many
    /// seconds (at most half the run): connection churn fills the
    /// TIME-WAIT table (10 s in smoltcp) before memory settles.
    #[arg(long, value_name = "SECS", default_value_t = 20.0)]
    pub warmup: f64,
    /// Seconds between samples.
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    pub sample: f64,
    /// Connections kept busy at once.
    #[arg(long, default_value_t = 64)]
    pub conns: usize,
    /// Requests on each connection before it closes.
    #[arg(long, default_value_t = 100)]
    pub requests: u64,
    /// Frame loss on the wire, in percent (each way); retransmissions
    /// must hide it.
    #[arg(long, value_name = "PERCENT", default_value_t = 0.0)]
    pub loss: f64,
    /// Print a JSON summary as the last thing on stdout (samples go to
    /// stderr).
    #[arg(long)]
    pub json: bool,
}

/// Client side: connections doing keep-alive GETs, replaced as they end.
struct Churn {
    conns: usize,
    per_conn: u64,
    active: usize,
    opened: u64,
    responses: u64,
    bad_responses: u64,
    closed: u64,
    errors: u64,
    stopping: bool,
    buf: Vec<u8>,
}

struct ClientConn {
    http: HttpClient,
    done: u64,
}

impl Churn {
    fn request(&mut self, st: &mut ClientConn, c: &mut Conn<'_>) {
        self.buf.clear();
        if st.http.write_get("/plaintext", &mut self.buf).is_err()
            || c.send(&self.buf) != self.buf.len()
        {
            // A GET is ~40 bytes and the send buffer holds KiBs: a short
            // send here means the connection is broken.
            self.errors += 1;
            c.abort();
        }
    }
}

impl TcpApp for Churn {
    type Conn = ClientConn;

    fn on_open(&mut self, c: &mut Conn<'_>) -> ClientConn {
        let mut st = ClientConn {
            // Cannot fail: `new` refuses only empty hosts and hosts with
            // characters outside visible ASCII, and "soak" is neither.
            http: HttpClient::new("soak").expect("a visible-ASCII host"),
            done: 0,
        };
        self.request(&mut st, c);
        st
    }

    fn on_data(&mut self, st: &mut ClientConn, c: &mut Conn<'_>, d: &[u8]) -> usize {
        let mut got = 0;
        let mut bad = 0;
        let r = st.http.on_data(d, |resp| {
            got += 1;
            if resp.status != 200 || resp.body_len != 13 {
                bad += 1;
            }
        });
        self.responses += got;
        self.bad_responses += bad;
        st.done += got;
        if r.is_err() {
            self.errors += 1;
            c.abort();
        } else if got > 0 {
            if st.done >= self.per_conn || self.stopping {
                c.close();
            } else {
                self.request(st, c);
            }
        }
        d.len()
    }

    fn on_peer_closed(&mut self, _st: &mut ClientConn, c: &mut Conn<'_>) {
        c.close();
    }

    fn on_close(&mut self, st: ClientConn, r: CloseReason) {
        self.active -= 1;
        self.closed += 1;
        if r == CloseReason::Reset || st.done < self.per_conn.min(1) {
            self.errors += 1;
        }
    }

    fn on_connect_failed(&mut self, _: ConnId) {
        self.active -= 1;
        self.errors += 1;
    }

    fn poll(&mut self, ctx: &mut Ctx<'_>) -> usize {
        let mut n = 0;
        while !self.stopping && self.active < self.conns && n < 64 {
            if ctx.connect(SocketAddrV4::new(SERVER, PORT).into()).is_err() {
                // No free local port (TIME-WAIT holds them): try later.
                break;
            }
            self.active += 1;
            self.opened += 1;
            n += 1;
        }
        n
    }
}

/// Resident memory of this process, bytes (`VmRSS`; 0 if unreadable).
fn rss_bytes() -> u64 {
    let Ok(s) = std::fs::read_to_string("/proc/self/status") else {
        return 0;
    };
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

#[derive(serde::Serialize, Clone, Copy, Debug)]
struct Sample {
    t: f64,
    rss_bytes: u64,
    responses: u64,
    conns_opened: u64,
    conns_closed: u64,
    server_conns: usize,
    client_conns: usize,
    pool_in_use: u64,
    errors: u64,
    drops: u64,
}

/// Runs the soak.
pub fn run(a: SoakArgs) -> Result<()> {
    if !(a.duration.is_finite() && a.duration > 0.0) {
        return Err(Error::Config(
            "--duration must be more than 0 seconds".into(),
        ));
    }
    if !(a.sample.is_finite() && a.sample > 0.0) {
        return Err(Error::Config("--sample must be more than 0 seconds".into()));
    }
    if a.conns == 0 || a.requests == 0 {
        return Err(Error::Config(
            "--conns and --requests must be at least 1".into(),
        ));
    }
    if !(0.0..50.0).contains(&a.loss) {
        return Err(Error::Config("--loss must be a percentage below 50".into()));
    }
    let faults = |seed| Faults {
        seed,
        loss: a.loss / 100.0,
        ..Default::default()
    };
    let (mut pa, mut pb) = MemPort::pair(&MemConfig {
        faults_ab: faults(1),
        faults_ba: faults(2),
        name: "soak".into(),
        ..Default::default()
    })?;
    let (ia, ib) = (pa.info().clone(), pb.info().clone());
    let qa = pa
        .take_queues()
        .pop()
        .ok_or_else(|| Error::Config("no queue".into()))?;
    let qb = pb
        .take_queues()
        .pop()
        .ok_or_else(|| Error::Config("no queue".into()))?;
    let tcp = TcpOpts {
        rx_buf: 4096,
        tx_buf: 4096,
        ..Default::default()
    };
    let start = std::time::Instant::now();
    let now = || Instant(start.elapsed().as_micros() as u64);
    let mut s = Stack::new(qa, &ia, StackConfig::new(SERVER, 24), now())?;
    s.listen(
        PORT,
        ListenOpts {
            tcp,
            ..Default::default()
        },
    )?;
    let mut cc = StackConfig::new(CLIENT, 24);
    // Every closed connection holds its local port in TIME-WAIT for 10 s
    // (smoltcp's fixed value): at ~5,000 closes/s the default 28k-port
    // range runs dry and the churn stalls until ports come back. The
    // whole unprivileged range, as a churning client would configure.
    cc.ephemeral = (1024, 65535);
    cc.connect = tcp;
    let c = Stack::new(qb, &ib, cc, now())?;
    let counters = Arc::new(HttpCounters::default());
    let mut server = TcpWorker::new(s, HttpApp::techempower(counters.clone()));
    let mut client = TcpWorker::new(
        c,
        Churn {
            conns: a.conns,
            per_conn: a.requests,
            active: 0,
            opened: 0,
            responses: 0,
            bad_responses: 0,
            closed: 0,
            errors: 0,
            stopping: false,
            buf: Vec::new(),
        },
    );
    let total = Duration::from_secs_f64(a.duration);
    let every = Duration::from_secs_f64(a.sample);
    let mut samples: Vec<Sample> = Vec::new();
    let mut next = every;
    let take = |server: &TcpWorker<MemQueue, Server>, client: &TcpWorker<MemQueue, Churn>| {
        let (ss, cs) = (server.stack().stats(), client.stack().stats());
        let ch = client.app();
        Sample {
            t: start.elapsed().as_secs_f64(),
            rss_bytes: rss_bytes(),
            responses: ch.responses,
            conns_opened: ch.opened,
            conns_closed: ch.closed,
            server_conns: server.stack().conn_count(),
            client_conns: client.stack().conn_count(),
            pool_in_use: server.stack().queue().pool_stats().in_use
                + client.stack().queue().pool_stats().in_use,
            errors: ch.errors + ch.bad_responses,
            drops: ss.drops() + cs.drops(),
        }
    };
    say(
        a.json,
        &format!(
            "soak: {} connections x {} requests each, churning for {:.0} s over a mem wire ({}% loss)",
            a.conns, a.requests, a.duration, a.loss
        ),
    );
    say(
        a.json,
        "     t  rss_MiB   responses/s  conns/s  srv_conns  cli_conns  bufs  errors",
    );
    let mut last = take(&server, &client);
    let mut watch = StallWatch::new(a.sample);
    let watch_every = Duration::from_millis(100);
    let mut next_watch = watch_every;
    loop {
        let t = now();
        server.poll(t);
        client.poll(t);
        let el = start.elapsed();
        if el >= next_watch {
            let ch = client.app();
            if watch.sample(el.as_secs_f64(), ch.responses + ch.closed) {
                say(
                    a.json,
                    &format!(
                        "STALL: no response and no closed connection for {:.1} s (since t={:.1} s)",
                        a.sample,
                        watch.stalls().last().map_or(0.0, |s| s.from_s)
                    ),
                );
            }
            next_watch += watch_every;
        }
        if el >= next || el >= total {
            let s = take(&server, &client);
            let dt = (s.t - last.t).max(1e-9);
            say(
                a.json,
                &format!(
                    "{:6.0}  {:7.1}  {:12.0}  {:7.0}  {:9}  {:9}  {:4}  {:6}",
                    s.t,
                    s.rss_bytes as f64 / 1048576.0,
                    (s.responses - last.responses) as f64 / dt,
                    (s.conns_closed - last.conns_closed) as f64 / dt,
                    s.server_conns,
                    s.client_conns,
                    s.pool_in_use,
                    s.errors
                ),
            );
            samples.push(s);
            last = s;
            next += every;
            if el >= total {
                break;
            }
        }
    }
    // Wind down: no new connections; what is open finishes its request.
    client.app_mut().stopping = true;
    let wind = std::time::Instant::now();
    while client.app().active > 0 && wind.elapsed() < Duration::from_secs(30) {
        let t = now();
        server.poll(t);
        client.poll(t);
    }
    let end = take(&server, &client);
    let warm = a.warmup.clamp(0.0, a.duration / 2.0);
    let first = samples
        .iter()
        .find(|s| s.t >= warm)
        .or(samples.first())
        .copied()
        .unwrap_or(end);
    let drift = end.rss_bytes as i64 - first.rss_bytes as i64;
    let secs = end.t;
    let summary = serde_json::json!({
        "scenario": "soak",
        "duration_s": secs,
        "conns": a.conns,
        "requests_per_conn": a.requests,
        "loss_percent": a.loss,
        "responses": end.responses,
        "responses_per_s": end.responses as f64 / secs,
        "conns_opened": end.conns_opened,
        "conns_closed": end.conns_closed,
        "errors": end.errors,
        "unfinished_conns": client.app().active,
        "drops": end.drops,
        "warmup_s": warm,
        "rss_after_warmup_bytes": first.rss_bytes,
        "rss_end_bytes": end.rss_bytes,
        "rss_max_bytes": samples.iter().map(|s| s.rss_bytes).max().unwrap_or(end.rss_bytes),
        "rss_drift_bytes": drift,
        "stalls": watch.stalls(),
        "server_requests": counters.requests.get(),
        "samples": samples,
    });
    say(
        a.json,
        &format!(
            "soak: {} responses ({:.0}/s), {} connections, {} errors; RSS after warm-up {:.1} -> {:.1} MiB (drift {:+.1} MiB)",
            end.responses,
            end.responses as f64 / secs,
            end.conns_closed,
            end.errors,
            first.rss_bytes as f64 / 1048576.0,
            end.rss_bytes as f64 / 1048576.0,
            drift as f64 / 1048576.0
        ),
    );
    if a.json {
        crate::cli::outln!("{summary}");
    }
    if end.errors > 0 || client.app().active > 0 || !watch.stalls().is_empty() {
        return Err(Error::Config(format!(
            "soak saw {} errors, {} connections that did not finish and {} stalls (no progress for {} s)",
            end.errors,
            client.app().active,
            watch.stalls().len(),
            a.sample
        )));
    }
    Ok(())
}
