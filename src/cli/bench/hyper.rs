//! `bypass bench hyper`: one hyper service (`GET /plaintext` ->
//! `Hello, World!`) three ways, driven by the same load generator in http
//! mode, in one run:
//!
//! - **async**: hyper on `bypass::rt` (our async runtime on the userspace
//!   stack), server core <- our load generator on the userspace stack,
//!   client core, over a mem wire, in this process;
//! - **raw**: a hand-written responder (no hyper) on `bypass::rt`, same
//!   wire and cores: what the runtime costs without hyper;
//! - **event**: the same workload on the `TcpApp` event API (`bypass
//!   http`'s `HttpApp`), same wire and cores, so the async overhead shows;
//! - **tokio**: hyper on a tokio `current_thread` runtime over kernel
//!   sockets on 127.0.0.1, pinned to the server core, <- the same load
//!   generator over kernel sockets with epoll (`bypass bench
//!   kernel-client`, a separate process: descriptors), on the client core.
//!
//! Reported per connection count: req/s, p50/p99 latency, async/tokio and
//! async/event ratios, and async at the largest count over async at the
//! smallest.

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;

use bypass::app::http::{HttpApp, HttpCounters};
use bypass::app::loadgen::{LoadGen, LoadStats, LoadSummary};
use bypass::port::mem::{MemConfig, MemPort};
use bypass::port::Port;
use bypass::rt::{self, Runtime, TcpListener};
use bypass::runtime::{self, RunConfig, Stop, TcpWorker};
use bypass::stack::{ListenOpts, Stack, StackConfig, TcpOpts};
use bypass::time::{Clock, MonotonicClock};
use bypass::{Error, Result};

use super::tcp::{load_args, machine, run_kernel_client, timed_run, Baseline};
use crate::cli::loadgen::ModeArg;

const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const PORT: u16 = 7000;

/// Flags of `bench hyper`.
#[derive(Args, Debug, Clone)]
pub struct HyperArgs {
    /// Connection counts to measure, comma-separated.
    #[arg(long, value_name = "N[,N..]", default_value = "64,16384")]
    pub connections: String,
    /// Requests in flight per connection.
    #[arg(long, value_name = "DEPTH", default_value_t = 1)]
    pub pipeline: usize,
    /// Seconds measured per point, after the ramp.
    #[arg(long, value_name = "SECS", default_value_t = 2.0)]
    pub duration: f64,
    /// Longest ramp (opening every connection) before a point is cut short.
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    pub ramp_timeout: f64,
    /// Receive and send buffer bytes per connection (ours).
    #[arg(long, value_name = "BYTES", default_value_t = 4096)]
    pub buf: usize,
    /// Core of the servers.
    #[arg(long, default_value_t = 0)]
    pub server_core: usize,
    /// Core of the load generators.
    #[arg(long, default_value_t = 1)]
    pub client_core: usize,
    /// Skip the tokio-on-kernel-sockets side.
    #[arg(long)]
    pub no_kernel: bool,
    /// Print one JSON document on stdout (the table goes to stderr).
    #[arg(long)]
    pub json: bool,
}

/// One connection count, three servers.
#[derive(Debug, Clone, Serialize)]
pub struct HyperPoint {
    /// Connections.
    pub connections: usize,
    /// hyper on bypass::rt.
    pub async_rt: LoadSummary,
    /// A hand-written responder (no hyper) on bypass::rt.
    pub raw: LoadSummary,
    /// HttpApp on the TcpApp event API.
    pub event: LoadSummary,
    /// hyper on tokio current_thread, kernel sockets (None: not run).
    pub tokio: Option<LoadSummary>,
    /// async / tokio, req/s.
    pub ratio_tokio: Option<f64>,
    /// async / event, req/s.
    pub ratio_event: Option<f64>,
}

async fn plaintext(
    req: Request<Incoming>,
) -> std::result::Result<Response<Full<Bytes>>, Infallible> {
    let resp = if req.uri().path() == "/plaintext" {
        Response::builder()
            .header("content-type", "text/plain")
            .body(Full::new(Bytes::from_static(b"Hello, World!")))
    } else {
        Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Full::new(Bytes::new()))
    };
    Ok(resp.unwrap_or_else(|_| Response::new(Full::new(Bytes::new()))))
}

/// hyper on bypass::rt: accept forever, one task per connection.
async fn serve_async() {
    let Ok(l) = TcpListener::bind(SocketAddrV4::new(SERVER_IP, PORT)).await else {
        return eprintln!("bench hyper: cannot listen on {PORT}");
    };
    while let Ok((s, _)) = l.accept().await {
        rt::spawn_local(async move {
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(s), service_fn(plaintext))
                .await;
        });
    }
}

/// The same response without hyper: a hand-written loop on bypass::rt that
/// answers each request head it reads (GETs: no body), to tell the
/// runtime's share of the cost from hyper's.
async fn serve_raw() {
    const RESPONSE: &[u8] =
        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 13\r\n\r\nHello, World!";
    let Ok(l) = TcpListener::bind(SocketAddrV4::new(SERVER_IP, PORT)).await else {
        return eprintln!("bench hyper: cannot listen on {PORT}");
    };
    while let Ok((mut s, _)) = l.accept().await {
        rt::spawn_local(async move {
            let mut buf = vec![0u8; 4096];
            let mut have = 0;
            let mut out = Vec::with_capacity(4 * RESPONSE.len());
            loop {
                if have == buf.len() {
                    return; // a request head larger than 4 KiB: not ours
                }
                match s.read(&mut buf[have..]).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => have += n,
                }
                let mut done = 0;
                while let Some(i) = buf[done..have].windows(4).position(|w| w == b"\r\n\r\n") {
                    done += i + 4;
                    out.extend_from_slice(RESPONSE);
                }
                buf.copy_within(done..have, 0);
                have -= done;
                if s.write_all(&out).await.is_err() {
                    return;
                }
                out.clear();
            }
        });
    }
}

/// hyper on a tokio current_thread runtime over kernel sockets, until
/// `stop`.
fn serve_tokio(listener: std::net::TcpListener, core: usize, stop: Stop) -> Result<()> {
    if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
        return Err(Error::Core {
            core,
            why: "cannot pin the tokio server to it".into(),
        });
    }
    let rtm = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| Error::io("tokio runtime", e))?;
    rtm.block_on(async move {
        listener
            .set_nonblocking(true)
            .map_err(|e| Error::io("set_nonblocking", e))?;
        let l = tokio::net::TcpListener::from_std(listener)
            .map_err(|e| Error::io("tokio listener", e))?;
        while !stop.is_set() {
            let Ok(Ok((s, _))) = tokio::time::timeout(Duration::from_millis(50), l.accept()).await
            else {
                continue;
            };
            let _ = s.set_nodelay(true);
            tokio::spawn(async move {
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(s), service_fn(plaintext))
                    .await;
            });
        }
        Ok(())
    })
}

/// Which of our servers runs on the mem wire.
#[derive(Clone, Copy)]
enum Ours {
    Async,
    Raw,
    Event,
}

/// One measurement of ours: the server on `server_core` (its own thread),
/// our load generator on `client_core`, over a fresh mem wire.
fn run_ours(a: &HyperArgs, which: Ours, n: usize, tcp: TcpOpts) -> Result<LoadSummary> {
    let la = load_args(ModeArg::Http, n, 64, a.pipeline);
    let lc = la.config(vec![SocketAddrV4::new(SERVER_IP, PORT).into()])?;
    let ring = (2 * n * a.pipeline + 1024)
        .next_power_of_two()
        .clamp(4096, 65536);
    let (mut sp, mut cp) = MemPort::pair(&MemConfig {
        ring_size: ring,
        pool_frames: (2 * ring) as u32,
        name: "bench-hyper".into(),
        ..Default::default()
    })?;
    let lopts = ListenOpts {
        backlog: 4096,
        tcp,
        ..Default::default()
    };
    let stop = Stop::new();
    let clock = MonotonicClock::new();
    let mut sc = StackConfig::new(CLIENT_IP, 24);
    sc.connect = tcp;
    sc.ephemeral = (1024, 65535);
    let ci = cp.info().clone();
    let client = Stack::new(cp.take_queues().remove(0), &ci, sc, clock.now())?;
    let st = Arc::new(LoadStats::default());
    let gen = TcpWorker::new(client, LoadGen::new(lc, st.clone()));
    let (dur, ramp) = secs(a)?;
    std::thread::scope(|s| {
        let server_stop = stop.clone();
        let server = s.spawn(move || -> Result<()> {
            match which {
                Ours::Async | Ours::Raw => {
                    let rt = Runtime::builder()
                        .ip(&format!("{SERVER_IP}/24"))
                        .cores(&[a.server_core])
                        .tcp(tcp)
                        .listen_opts(lopts)
                        .stop(server_stop)
                        .linger(Duration::ZERO);
                    match which {
                        Ours::Raw => rt.run_ports(vec![sp], |_| serve_raw()),
                        _ => rt.run_ports(vec![sp], |_| serve_async()),
                    }
                }
                Ours::Event => {
                    let si = sp.info().clone();
                    let mut stack = Stack::new(
                        sp.take_queues().remove(0),
                        &si,
                        StackConfig::new(SERVER_IP, 24),
                        clock.now(),
                    )?;
                    stack.listen(PORT, lopts)?;
                    let w = TcpWorker::new(
                        stack,
                        HttpApp::techempower(Arc::new(HttpCounters::default())),
                    );
                    let cfg = RunConfig {
                        cores: vec![a.server_core],
                        ..Default::default()
                    };
                    runtime::run(&cfg, vec![w], &server_stop, |_| {}).map(|_| ())
                }
            }
        });
        let done = timed_run(
            vec![a.client_core],
            vec![gen],
            &[st],
            dur,
            ramp,
            Duration::ZERO,
            |_| {},
        );
        stop.set();
        let served = server
            .join()
            .unwrap_or_else(|_| Err(Error::Config("the server thread panicked".into())));
        let (done, window) = done?;
        served?;
        if !window.stalls.is_empty() {
            return Err(Error::Config(format!(
                "the load generator stalled {} times: no result",
                window.stalls.len()
            )));
        }
        Ok(LoadSummary::of(&[done[0].app()]))
    })
}

fn run_tokio(a: &HyperArgs, n: usize) -> Result<LoadSummary> {
    let la = load_args(ModeArg::Http, n, 64, a.pipeline);
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(|e| Error::io("bind 127.0.0.1", e))?;
    let target = match listener.local_addr() {
        Ok(std::net::SocketAddr::V4(v)) => v,
        _ => {
            return Err(Error::Config(
                "no local address for the tokio server".into(),
            ))
        }
    };
    let stop = Stop::new();
    let (dur, ramp) = secs(a)?;
    std::thread::scope(|s| {
        let st = stop.clone();
        let core = a.server_core;
        let server = s.spawn(move || serve_tokio(listener, core, st));
        let got = run_kernel_client(
            Baseline::Epoll,
            a.client_core,
            target.into(),
            &la,
            dur,
            ramp,
        );
        stop.set();
        let served = server
            .join()
            .unwrap_or_else(|_| Err(Error::Config("the tokio server panicked".into())));
        served?;
        got.map(|(k, _)| k)
    })
}

fn secs(a: &HyperArgs) -> Result<(Duration, Duration)> {
    for (v, f) in [
        (a.duration, "--duration"),
        (a.ramp_timeout, "--ramp-timeout"),
    ] {
        if !v.is_finite() || v <= 0.0 || v > 3600.0 {
            return Err(Error::Config(format!(
                "{f} must be between 0 and 3600 seconds"
            )));
        }
    }
    Ok((
        Duration::from_secs_f64(a.duration),
        Duration::from_secs_f64(a.ramp_timeout),
    ))
}

fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0 && a.is_finite()).then(|| a / b)
}

fn fmt(s: Option<&LoadSummary>) -> String {
    s.map_or("n/a".into(), |s| {
        format!("{:.0} ({}/{})", s.tps, s.latency.p50_us, s.latency.p99_us)
    })
}

/// Runs the scenario.
pub fn run(a: HyperArgs) -> Result<()> {
    let counts: Vec<usize> = a
        .connections
        .split(',')
        .map(|p| {
            p.trim()
                .replace('_', "")
                .parse()
                .ok()
                .filter(|&n: &usize| n > 0)
        })
        .collect::<Option<_>>()
        .ok_or_else(|| {
            Error::Config(format!(
                "--connections `{}` is not a list of positive counts, e.g. 64,16384",
                a.connections
            ))
        })?;
    if !(256..=(1 << 24)).contains(&a.buf) {
        return Err(Error::Config(
            "--buf must be between 256 bytes and 16 MiB".into(),
        ));
    }
    let tcp = TcpOpts {
        rx_buf: a.buf,
        tx_buf: a.buf,
        ..Default::default()
    };
    let say = |l: &str| crate::cli::say(a.json, l);
    say(&format!(
        "hyper: GET /plaintext, pipeline {}, our load generator in http mode for all three; machine: {}.\n\
         async: hyper 1 on bypass::rt (core {}) <- loadgen on the userspace stack (core {}), mem wire.\n\
         raw: a hand-written responder on bypass::rt (no hyper), same wire and cores.\n\
         event: HttpApp on the TcpApp event API, same wire and cores.\n\
         tokio: hyper 1 on tokio current_thread, kernel sockets, 127.0.0.1 (core {}) <- the loadgen over epoll (core {}, another process).",
        a.pipeline, machine(), a.server_core, a.client_core, a.server_core, a.client_core
    ));
    let mut pts = Vec::new();
    for &n in &counts {
        let async_rt = run_ours(&a, Ours::Async, n, tcp)?;
        let raw = run_ours(&a, Ours::Raw, n, tcp)?;
        let event = run_ours(&a, Ours::Event, n, tcp)?;
        let tokio = if a.no_kernel {
            None
        } else {
            Some(run_tokio(&a, n)?)
        };
        pts.push(HyperPoint {
            connections: n,
            ratio_tokio: tokio.as_ref().and_then(|t| ratio(async_rt.tps, t.tps)),
            ratio_event: ratio(async_rt.tps, event.tps),
            async_rt,
            raw,
            event,
            tokio,
        });
    }
    say("req/s (p50/p99 us)");
    say(&format!(
        "{:>8} {:>24} {:>24} {:>24} {:>24} {:>9} {:>9}",
        "conns",
        "async hyper (bypass::rt)",
        "async raw (no hyper)",
        "event (TcpApp)",
        "tokio hyper (kernel)",
        "async/tok",
        "async/evt"
    ));
    let r = |v: Option<f64>| v.map_or("n/a".into(), |v| format!("{v:.2}x"));
    for p in &pts {
        say(&format!(
            "{:>8} {:>24} {:>24} {:>24} {:>24} {:>9} {:>9}",
            p.connections,
            fmt(Some(&p.async_rt)),
            fmt(Some(&p.raw)),
            fmt(Some(&p.event)),
            fmt(p.tokio.as_ref()),
            r(p.ratio_tokio),
            r(p.ratio_event)
        ));
        let errs = p.async_rt.errors
            + p.raw.errors
            + p.event.errors
            + p.tokio.as_ref().map_or(0, |t| t.errors);
        if errs > 0 {
            say(&format!(
                "{:>8} {errs} responses were errors or non-2xx",
                ""
            ));
        }
        if p.async_rt.time_to_full_s.is_none() {
            say(&format!(
                "{:>8} async: only {} of {} connections opened before the ramp timeout",
                "", p.async_rt.open, p.connections
            ));
        }
    }
    let scale = match (pts.first(), pts.last()) {
        (Some(f), Some(l)) if pts.len() > 1 => ratio(l.async_rt.tps, f.async_rt.tps),
        _ => None,
    };
    if let (Some(s), Some(f), Some(l)) = (scale, pts.first(), pts.last()) {
        say(&format!(
            "async at {} connections / async at {}: {s:.2}x",
            l.connections, f.connections
        ));
    }
    if a.json {
        crate::cli::outln!(
            "{}",
            serde_json::json!({
                "scenario": "hyper",
                "machine": machine(),
                "pipeline": a.pipeline,
                "points": pts,
                "async_scale": scale,
            })
        );
    }
    Ok(())
}
