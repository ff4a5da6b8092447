//! `bench conns`: how many connections one process holds, how fast they
//! open, what each costs in memory, and request/response at full table;
//! the kernel's memory per connection for comparison.

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::time::Duration;

use serde::Serialize;

use bypass::{Error, Result};

use super::super::{chart, epoll};
use super::kernel::fd_limit;
use super::ours::ServerKind;
use super::report::{emit, fmt_ratio, machine, ratio};
use super::rr::ours_side;
use super::{load_args, run_ours_at, TcpBenchArgs};
use crate::cli::loadgen::ModeArg;

/// What the kernel spends per connection, measured with `pairs` loopback
/// connection pairs in this process.
#[derive(Debug, Clone, Serialize)]
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

pub fn conns(a: TcpBenchArgs) -> Result<()> {
    a.only_ipv4("conns")?;
    a.secs()?;
    let tcp = a.tcp_opts(1024)?;
    let n = a.points(&[1_000_000])?[0];
    a.say(&format!(
        "conns: {n} connections between our loadgen (core {}) and our server (core {}) in this process over a mem wire, \
         then {} B request/response on all of them for {} s; buffers rx {} B + tx {} B per end; machine: {}",
        a.client_core, a.server_core, a.size, a.duration, tcp.rx_buf, tcp.tx_buf, machine()
    ));
    let mut la = load_args(ModeArg::Rr, n, a.size, 1);
    // At most this many requests in flight: the wire ring holds 8192
    // frames; beyond it frames would be dropped and retried after 1 s.
    la.max_inflight = Some(a.max_inflight.min(n));
    let r = run_ours_at(&a, None, ServerKind::Echo, &la, tcp)?;
    let grown = r.rss_full.saturating_sub(r.rss_before);
    let per_conn = grown as f64 / n as f64;
    let per_end = per_conn / 2.0;
    let full = r.load.time_to_full_s;
    match full {
        Some(t) => a.say(&format!(
            "established {} connections in {t:.2} s ({:.0} conn/s); handshake p50 {} us p99 {} us",
            n,
            n as f64 / t.max(1e-9),
            r.load.handshake.p50_us,
            r.load.handshake.p99_us
        )),
        None => a.say(&format!(
            "only {} of {n} connections were open when the ramp timed out ({} s); memory is per open connection",
            r.load.open, a.ramp_timeout
        )),
    }
    let open = if full.is_some() {
        n
    } else {
        r.load.open as usize
    };
    let per_end = if full.is_some() {
        per_end
    } else {
        grown as f64 / open.max(1) as f64 / 2.0
    };
    a.say(&format!(
        "memory: RSS {:.1} MiB before, {:.1} MiB at full table: {:.0} B per connection (both ends), {:.0} B per end (target <= 8192: {})",
        r.rss_before as f64 / 1048576.0,
        r.rss_full as f64 / 1048576.0,
        per_end * 2.0,
        per_end,
        if per_end <= 8192.0 && full.is_some() { "met" } else { "MISSED" }
    ));
    a.say(&r.engine_line);
    a.say(&format!(
        "request/response at full table: {:.0} tx/s, p50 {} us p99 {} us ({} transactions; {} frames dropped by the stacks: {} wire ring full, {} no pool buffer)",
        r.load.tps, r.load.latency.p50_us, r.load.latency.p99_us, r.load.latency.count, r.drops, r.drops_tx_full, r.drops_no_buffer
    ));
    a.say(&format!(
        "where an end's bytes go (by design): smoltcp tcp::Socket {} B in a one-slot SocketSet (Vec of {} B slots), \
         rx+tx buffers {} B, the stack's Conn/slot, the 4-tuple hash entry (u64 -> u32) and the app state; \
         plus allocator overhead and the doubling slack of the tables",
        std::mem::size_of::<smoltcp::socket::tcp::Socket<'static>>(),
        std::mem::size_of::<smoltcp::iface::SocketStorage<'static>>(),
        tcp.rx_buf + tcp.tx_buf
    ));
    let kpairs = ((fd_limit() as usize).saturating_sub(100) / 2).min(8000);
    let km = if a.no_kernel || kpairs == 0 {
        None
    } else {
        Some(kernel_mem(kpairs, a.size)?)
    };
    if let Some(k) = &km {
        a.say(&format!(
            "kernel, for comparison: {} loopback pairs in one process (descriptor limit {}): Slab +{:.1} MiB, TCP buffers +{:.1} MiB: {:.0} B per end (ours/kernel {})",
            k.pairs,
            fd_limit(),
            k.slab as f64 / 1048576.0,
            k.tcp_mem as f64 / 1048576.0,
            k.per_end,
            fmt_ratio(ratio(per_end, k.per_end))
        ));
        a.say("  (kernel figures are system-wide counters: other work on the machine adds noise)");
    }
    if let Some(file) = &a.plot {
        let mut bars = vec![("bypass".to_string(), per_end)];
        if let Some(k) = &km {
            bars.push(("kernel (loopback pairs)".to_string(), k.per_end));
        }
        chart::bar_chart(
            file.as_ref(),
            &format!("conns: memory per connection end at {n} connections"),
            "bytes per end",
            &bars,
        )?;
        a.say(&format!("chart written to {file}"));
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
    emit(
        &a,
        "conns",
        serde_json::json!({
            "connections": n,
            "ours": r,
            "side": side,
            "rss_growth": grown,
            "bytes_per_end": per_end,
            "kernel": km,
            "kernel_bytes_per_end": km.as_ref().map(|k| k.per_end),
            "ratio_mem": km.as_ref().and_then(|k| ratio(per_end, k.per_end)),
        }),
    );
    if !side.stalls.is_empty() {
        return Err(Error::Config(format!(
            "conns stalled: no transaction completed and no connection opened for {} s, {} time(s)",
            super::ours::STALL_WINDOW.as_secs(),
            side.stalls.len()
        )));
    }
    Ok(())
}
