//! `bench conns`: how many connections one process holds, how fast they
//! open, what each costs in memory idle and active, request/response
//! across all of them at full table (connections taking turns in bounded
//! batches), a few bulk transfers to show full windows are there on
//! demand; the kernel's memory per connection for comparison. Several
//! counts make a sweep: each point runs in a fresh process of its own (so
//! one point's freed memory does not flatter the next), and the sweep is
//! charted.

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::time::Duration;

use serde::Serialize;

use bypass::{Error, Result};

use bypass::app::loadgen::Bulk;
use bypass::stack::{Stack, TcpOpts};

use super::super::{chart, epoll};
use super::kernel::fd_limit;
use super::ours::{run_ours, Extra, OursRun, Placement, ServerKind, Times};
use super::report::{emit, fmt_ratio, machine, ratio};
use super::rr::ours_side;
use super::{load_args, load_config, TcpBenchArgs};
use crate::cli::loadgen::ModeArg;

/// What the kernel spends per connection, measured with `pairs` loopback
/// connection pairs in this process.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct KernelMem {
    /// Pairs opened (each pair: two ends, plus the accepting side).
    pub pairs: usize,
    /// Growth of Slab in /proc/meminfo (bytes).
    pub slab: i64,
    /// Growth of the TCP buffer memory of /proc/net/sockstat (bytes).
    pub tcp_mem: i64,
    /// (slab + tcp_mem) / (2 * pairs): bytes per connection end.
    pub per_end: f64,
}

fn meminfo_kb(key: &str) -> i64 {
    let s = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn sockstat_tcp_pages() -> i64 {
    let s = std::fs::read_to_string("/proc/net/sockstat").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("TCP:"))
        .and_then(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.iter()
                .position(|w| *w == "mem")
                .and_then(|i| f.get(i + 1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn kernel_mem(pairs: usize, size: usize) -> Result<KernelMem> {
    let l = epoll::listen(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0).into())?;
    l.set_nonblocking(false)
        .map_err(|e| Error::io("set_blocking", e))?;
    let addr = l.local_addr().map_err(|e| Error::io("local_addr", e))?;
    let (slab0, mem0) = (meminfo_kb("Slab:"), sockstat_tcp_pages());
    let mut held: Vec<(TcpStream, TcpStream)> = Vec::with_capacity(pairs);
    let msg = vec![b'x'; size.max(1)];
    let mut buf = vec![0u8; size.max(1)];
    for _ in 0..pairs {
        let c = TcpStream::connect(addr).map_err(|e| Error::io("connect", e))?;
        let (s, _) = l.accept().map_err(|e| Error::io("accept", e))?;
        let _ = c.set_nodelay(true);
        // One request/response on each, so buffers are as in tcp-rr.
        use std::io::Write;
        (&c).write_all(&msg).map_err(|e| Error::io("write", e))?;
        (&s).read_exact(&mut buf)
            .map_err(|e| Error::io("read", e))?;
        (&s).write_all(&buf).map_err(|e| Error::io("write", e))?;
        (&c).read_exact(&mut buf)
            .map_err(|e| Error::io("read", e))?;
        held.push((c, s));
    }
    std::thread::sleep(Duration::from_millis(200));
    let slab = (meminfo_kb("Slab:") - slab0) * 1024;
    let tcp_mem = (sockstat_tcp_pages() - mem0) * 4096;
    drop(held);
    Ok(KernelMem {
        pairs,
        slab,
        tcp_mem,
        per_end: (slab + tcp_mem) as f64 / (2 * pairs.max(1)) as f64,
    })
}

/// One point of `bench conns`, as its JSON carries it.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Point {
    /// Connection pairs asked for.
    pub connections: usize,
    /// Pairs open when the ramp ended.
    pub open: u64,
    /// Seconds until every connection was open (`None`: the ramp timed out).
    pub time_to_full_s: Option<f64>,
    /// Process RSS before the first connection, with the table full and
    /// idle (end of the hold), after the load, and the process's peak
    /// (VmHWM), in bytes.
    pub rss_before: u64,
    pub rss_idle: u64,
    pub rss_after: u64,
    pub rss_peak: u64,
    /// RSS growth per end: idle (end of the hold), and after the load
    /// (every connection had its turns).
    pub per_idle_end: f64,
    pub per_end_after_load: f64,
    /// Payload chunks made (high-water mark, bytes), the most ends active
    /// at once (both sides of the requests and bulk transfers allowed in
    /// flight), and an upper estimate of an active end's cost: idle plus
    /// the chunks shared out over the ends active at once.
    pub payload_peak: u64,
    pub active_ends: usize,
    pub per_active_end: f64,
    /// Request/response across the full table.
    pub tps: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub transactions: u64,
    /// Frames dropped by the stacks (wire ring full, no pool buffer,
    /// malformed) until the load stopped.
    pub drops: u64,
    pub errors: u64,
    /// Longest loop iteration of either core while ramping, holding,
    /// loading (µs): wall time, and time on a CPU (at most; within 1 ms).
    pub longest_iteration_us: [u64; 3],
    pub longest_iteration_cpu_us: [u64; 3],
    /// Bulk transfers done (of those asked), the longest, and the most
    /// bytes in flight / the largest congestion window on one connection.
    pub bulk_asked: usize,
    pub bulk_done: u64,
    pub bulk_longest_us: u64,
    pub max_in_flight: u64,
    pub max_cwnd: u64,
    /// The largest receive window a peer offered (what a busy connection
    /// may use; the congestion window decides how much of it it does).
    pub max_peer_window: u64,
    /// Windows of 1 s without progress outside the hold, and the share of
    /// time our threads waited for a CPU (other work on the machine).
    pub stalls: usize,
    pub cpu_wait: f64,
    /// The kernel in the same state, for as many pairs as the descriptor
    /// limit allows.
    pub kernel: Option<KernelMem>,
}

fn vm_hwm() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

fn mib(b: u64) -> f64 {
    b as f64 / 1048576.0
}

pub fn conns(a: TcpBenchArgs) -> Result<()> {
    a.only_ipv4("conns")?;
    let points = a.points(&[1_000_000])?;
    if a.hold < 0.0 || !a.hold.is_finite() || a.hold > 3600.0 || (a.hold > 0.0 && a.hold < 0.5) {
        return Err(Error::Config(
            "--hold must be 0 or between 0.5 and 3600 seconds".into(),
        ));
    }
    if points.len() > 1 {
        return sweep(&a, &points);
    }
    let p = point(&a, points[0])?;
    if !p.1.stalls.is_empty() {
        return Err(Error::Config(format!(
            "conns stalled: no transaction completed and no connection opened for {} s, {} time(s)",
            super::ours::STALL_WINDOW.as_secs(),
            p.1.stalls.len()
        )));
    }
    Ok(())
}

/// Measures one point and reports it (the JSON on stdout with `--json`).
fn point(a: &TcpBenchArgs, n: usize) -> Result<(Point, OursRun)> {
    let (duration, ramp_timeout) = a.secs()?;
    let tcp = a.tcp_opts(1024)?;
    let hold = Duration::from_secs_f64(a.hold);
    let bulk = (a.bulk > 0).then_some(Bulk {
        conns: a.bulk.min(n),
        bytes: a.bulk_bytes,
    });
    a.say(&format!(
        "conns: {n} connection pairs between our loadgen (core {}) and our server (core {}) in this process over a mem wire; \
         held idle {} s, then {} B request/response on all of them for {} s once their turns start (at most {} requests in flight: connections take turns){}; \
         windows rx {} B / tx {} B (limits; payload is held only while queued); machine: {}",
        a.client_core,
        a.server_core,
        a.hold,
        a.size,
        a.duration,
        a.max_inflight.min(n),
        bulk.map_or(String::new(), |b| format!("; first {} of them echo {} B in bulk, alone on the full table, and the turns start when they are done", b.conns, b.bytes)),
        tcp.rx_buf,
        tcp.tx_buf,
        machine()
    ));
    let mut la = load_args(ModeArg::Rr, n, a.size, 1);
    // At most this many requests in flight: the wire ring holds what
    // they need; beyond it frames would be dropped and retried.
    la.max_inflight = Some(a.max_inflight.min(n));
    let mut lcfg = load_config(&la, a.family)?;
    lcfg.hold_us = hold.as_micros() as u64;
    lcfg.bulk = bulk;
    lcfg.validate().map_err(Error::Config)?;
    let r = run_ours(
        &Placement::split(a.server_core, a.client_core),
        ServerKind::Echo,
        &lcfg,
        tcp,
        Times {
            ramp_timeout,
            hold,
            duration,
            wait_turns: bulk.is_some(),
        },
        Duration::from_micros(a.idle_sleep_us),
        Extra {
            progress: !a.json,
            presize: !a.no_presize,
        },
    )?;
    let full = r.load.time_to_full_s;
    let open = if full.is_some() {
        n
    } else {
        r.load.open as usize
    };
    let ends = (2 * open.max(1)) as f64;
    let per_idle_end = r.rss_idle.saturating_sub(r.rss_before) as f64 / ends;
    let per_end_after_load = r.rss_after.saturating_sub(r.rss_before) as f64 / ends;
    let active_ends = 2 * (a.max_inflight.min(n) + bulk.map_or(0, |b| b.conns));
    let per_active_end = per_idle_end + r.payload_peak as f64 / active_ends.max(1) as f64;
    match full {
        Some(t) => a.say(&format!(
            "established {n} pairs ({} endpoints) in {t:.2} s ({:.0} conn/s); handshake p50 {} us p99 {} us",
            2 * n,
            n as f64 / t.max(1e-9),
            r.load.handshake.p50_us,
            r.load.handshake.p99_us
        )),
        None => a.say(&format!(
            "only {} of {n} connections were open when the ramp timed out ({} s); memory is per open connection",
            r.load.open, a.ramp_timeout
        )),
    }
    a.say(&format!(
        "longest loop iteration (wall / on a CPU): {} / {} us while ramping, {} / {} us while holding, {} / {} us under load; server table {} connections, room for {} before it grows",
        r.longest_iteration_us[0],
        r.longest_iteration_cpu_us[0],
        r.longest_iteration_us[1],
        r.longest_iteration_cpu_us[1],
        r.longest_iteration_us[2],
        r.longest_iteration_cpu_us[2],
        r.server_table.0,
        r.server_table.1
    ));
    a.say(&format!(
        "memory: RSS {:.1} MiB before, {:.1} MiB full and idle{}, {:.1} MiB after the load, peak {:.1} MiB",
        mib(r.rss_before),
        mib(r.rss_idle),
        if r.rss_idle_clean { "" } else { " (INVALID: the load had started)" },
        mib(r.rss_after),
        mib(vm_hwm())
    ));
    a.say(&format!(
        "  per idle end {per_idle_end:.0} B (target <= 1024: {}); per end after every connection had its turns {per_end_after_load:.0} B",
        if per_idle_end <= 1024.0 && full.is_some() && r.rss_idle_clean { "met" } else { "MISSED" }
    ));
    a.say(&format!(
        "  per active end at most {per_active_end:.0} B: idle + payload chunks ({:.1} MiB at peak) over the {active_ends} ends active at once",
        mib(r.payload_peak)
    ));
    let slot = Stack::<bypass::port::mem::MemQueue>::CONN_SLOT_BYTES;
    a.say(&format!(
        "  where an end's bytes go (size_of): the table slot {slot} B (the stack's Conn with the {} engine's block inline), \
         the 4-tuple table's 16 B entries, at most half of them used (~{:.0} B per end at this fill), \
         a timer wheel entry 16 B while a deadline is set, the application's state (server: 8 B; loadgen: {} B, and a block for the send times behind the first when requests are pipelined), \
         plus allocator overhead",
        TcpOpts::default().engine,
        // `table_capacity` is half the entries (the table stays at most
        // half full).
        16.0 * 2.0 * r.server_table.1 as f64 / open.max(1) as f64,
        std::mem::size_of::<Option<(u32, bypass::app::loadgen::Flow)>>(),
    ));
    a.say(&r.engine_line);
    a.say(&format!(
        "request/response at full table: {:.0} tx/s, p50 {} us p99 {} us p99.9 {} us ({} transactions; {} frames dropped by the stacks: {} wire ring full, {} no pool buffer)",
        r.load.tps,
        r.load.latency.p50_us,
        r.load.latency.p99_us,
        r.load.latency.p999_us,
        r.load.latency.count,
        r.drops,
        r.drops_tx_full,
        r.drops_no_buffer
    ));
    if let Some(b) = bulk {
        a.say(&format!(
            "bulk: {} of {} connections echoed {} B each, longest {:.1} ms; windows offered up to {} B (>= 64 KiB: {}); most bytes in flight on one connection {} (>= 64 KiB: {}), largest cwnd {}",
            r.bulk_done,
            b.conns,
            b.bytes,
            r.bulk_longest_us as f64 / 1000.0,
            r.max_peer_window,
            if r.max_peer_window >= 65536 { "met" } else { "MISSED" },
            r.max_in_flight,
            if r.max_in_flight >= 65536 { "met" } else { "no: congestion-limited" },
            r.max_cwnd
        ));
    }
    let kpairs = (fd_limit() as usize).saturating_sub(100) / 2;
    let km = if a.no_kernel || kpairs == 0 {
        None
    } else {
        Some(kernel_mem(kpairs.min(n), a.size)?)
    };
    if let Some(k) = &km {
        a.say(&format!(
            "kernel, for comparison: {} loopback pairs in one process, established, one exchange each, idle (descriptor limit {}): Slab +{:.1} MiB, TCP buffers +{:.1} MiB: {:.0} B per end (ours idle/kernel {})",
            k.pairs,
            fd_limit(),
            mib(k.slab.max(0) as u64),
            mib(k.tcp_mem.max(0) as u64),
            k.per_end,
            fmt_ratio(ratio(per_idle_end, k.per_end))
        ));
        a.say("  (kernel figures are system-wide counters: other work on the machine adds noise)");
    }
    let side = ours_side(r.clone());
    a.say(&format!(
        "errors {}, drops {}, wait {:.0}%, stalls {}{}",
        side.errors,
        side.drops,
        side.cpu_wait_share * 100.0,
        side.stalls.len(),
        side.invalid
            .as_ref()
            .map_or(String::new(), |w| format!(": INVALID ({w})"))
    ));
    let p = Point {
        connections: n,
        open: open as u64,
        time_to_full_s: full,
        rss_before: r.rss_before,
        rss_idle: r.rss_idle,
        rss_after: r.rss_after,
        rss_peak: vm_hwm(),
        per_idle_end,
        per_end_after_load,
        payload_peak: r.payload_peak,
        active_ends,
        per_active_end,
        tps: r.load.tps,
        p50_us: r.load.latency.p50_us,
        p99_us: r.load.latency.p99_us,
        p999_us: r.load.latency.p999_us,
        transactions: r.load.latency.count,
        drops: r.drops,
        errors: side.errors,
        longest_iteration_us: r.longest_iteration_us,
        longest_iteration_cpu_us: r.longest_iteration_cpu_us,
        bulk_asked: bulk.map_or(0, |b| b.conns),
        bulk_done: r.bulk_done,
        bulk_longest_us: r.bulk_longest_us,
        max_in_flight: r.max_in_flight,
        max_cwnd: r.max_cwnd,
        max_peer_window: r.max_peer_window,
        stalls: r.stalls.len(),
        cpu_wait: r.cpu_wait_share,
        kernel: km.clone(),
    };
    if let Some(file) = &a.plot {
        let mut bars = vec![
            ("bypass, idle".to_string(), per_idle_end),
            ("bypass, after the load".to_string(), per_end_after_load),
        ];
        if let Some(k) = &km {
            bars.push((format!("kernel ({} pairs)", k.pairs), k.per_end));
        }
        chart::bar_chart(
            file.as_ref(),
            &format!("conns: memory per connection end at {n} pairs"),
            "bytes per end",
            &bars,
        )?;
        a.say(&format!("chart written to {file}"));
    }
    emit(
        a,
        "conns",
        serde_json::json!({
            "connections": n,
            "point": p,
            "ours": r,
            "side": side,
            "bytes_per_end": per_idle_end,
            "kernel": km,
            "kernel_bytes_per_end": km.as_ref().map(|k| k.per_end),
            "ratio_mem": km.as_ref().and_then(|k| ratio(per_idle_end, k.per_end)),
        }),
    );
    Ok((p, r))
}

/// The arguments of this run for one point of a sweep: the same flags,
/// one count, JSON out, no chart.
fn point_args(args: impl Iterator<Item = String>, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut it = args;
    while let Some(arg) = it.next() {
        let flag = arg.split('=').next().unwrap_or("");
        match flag {
            "--connections" | "--plot" => {
                if !arg.contains('=') {
                    it.next();
                }
            }
            "--json" => {}
            _ => out.push(arg),
        }
    }
    out.push(format!("--connections={n}"));
    out.push("--json".into());
    out
}

/// Runs each point in a fresh process, one after the other; tables and
/// charts them.
fn sweep(a: &TcpBenchArgs, points: &[usize]) -> Result<()> {
    let exe = std::env::current_exe().map_err(|e| Error::io("current_exe", e))?;
    let mut got: Vec<Point> = Vec::new();
    for &n in points {
        a.say(&format!("sweep: {n} pairs (a process of its own)"));
        let out = std::process::Command::new(&exe)
            .args(point_args(std::env::args().skip(1), n))
            .stderr(std::process::Stdio::inherit())
            .output()
            .map_err(|e| Error::io("running a point of the sweep", e))?;
        let text = String::from_utf8_lossy(&out.stdout);
        let doc: Option<serde_json::Value> = text
            .lines()
            .rev()
            .find_map(|l| serde_json::from_str(l).ok());
        let p = doc
            .and_then(|d| serde_json::from_value::<Point>(d["point"].clone()).ok())
            .ok_or_else(|| {
                Error::Config(format!(
                    "the point at {n} pairs failed (exit {}); its messages are above",
                    out.status
                ))
            })?;
        got.push(p);
    }
    a.say(&format!(
        "{:>9} {:>8} {:>9} {:>9} {:>9} {:>10} {:>7} {:>7} {:>8} {:>6} {:>6} {:>5} {:>9} {:>12}",
        "pairs",
        "ramp s",
        "idle B",
        "after B",
        "active B",
        "tx/s",
        "p50us",
        "p99us",
        "p99.9us",
        "drops",
        "stalls",
        "wait",
        "peak MiB",
        "kernel B"
    ));
    for p in &got {
        a.say(&format!(
            "{:>9} {:>8} {:>9.0} {:>9.0} {:>9.0} {:>10.0} {:>7} {:>7} {:>8} {:>6} {:>6} {:>4.0}% {:>9.0} {:>12}",
            p.connections,
            p.time_to_full_s.map_or("-".into(), |t| format!("{t:.2}")),
            p.per_idle_end,
            p.per_end_after_load,
            p.per_active_end,
            p.tps,
            p.p50_us,
            p.p99_us,
            p.p999_us,
            p.drops,
            p.stalls,
            p.cpu_wait * 100.0,
            mib(p.rss_peak),
            p.kernel
                .as_ref()
                .map_or("-".into(), |k| format!("{:.0} ({})", k.per_end, k.pairs)),
        ));
    }
    if let Some(file) = &a.plot {
        let x = |p: &Point| p.connections as f64;
        let mut kernel: Vec<(f64, f64)> = got
            .iter()
            .filter_map(|p| p.kernel.as_ref().map(|k| (k.pairs as f64, k.per_end)))
            .collect();
        kernel.dedup_by(|a, b| a.0 == b.0);
        let mem = vec![
            (
                "bypass, idle end".to_string(),
                got.iter().map(|p| (x(p), p.per_idle_end)).collect(),
            ),
            (
                "bypass, end after its turns".to_string(),
                got.iter().map(|p| (x(p), p.per_end_after_load)).collect(),
            ),
            ("kernel, idle end after one exchange".to_string(), kernel),
        ];
        chart::line_chart(
            file.as_ref(),
            "conns: memory per connection end (both ends in one process)",
            "connection pairs",
            "bytes per end",
            &mem,
        )?;
        let tps_file = tps_path(file);
        chart::line_chart(
            tps_file.as_ref(),
            "conns: request/response across the full table (connections take turns)",
            "connection pairs",
            "transactions per second",
            &[(
                "bypass".to_string(),
                got.iter().map(|p| (x(p), p.tps)).collect(),
            )],
        )?;
        a.say(&format!("charts written to {file} and {tps_file}"));
    }
    emit(a, "conns-sweep", serde_json::json!({ "points": got }));
    Ok(())
}

/// `a.svg` -> `a-tps.svg`.
fn tps_path(file: &str) -> String {
    match file.strip_suffix(".svg") {
        Some(stem) => format!("{stem}-tps.svg"),
        None => format!("{file}-tps.svg"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_point_of_the_sweep_keeps_the_flags_but_one_count_json_and_no_chart() {
        let args = [
            "bench",
            "conns",
            "--connections",
            "1000,10000",
            "--hold=3",
            "--plot",
            "docs/x.svg",
            "--json",
            "--no-kernel",
        ]
        .map(String::from);
        assert_eq!(
            point_args(args.into_iter(), 10000),
            [
                "bench",
                "conns",
                "--hold=3",
                "--no-kernel",
                "--connections=10000",
                "--json"
            ]
        );
        assert_eq!(tps_path("docs/c10m.svg"), "docs/c10m-tps.svg");
    }
}
