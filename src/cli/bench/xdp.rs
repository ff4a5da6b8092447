//! `bypass bench xdp`: our AF_XDP port against `dpdk-testpmd` with DPDK's
//! own `net_af_xdp` PMD, on the same veth interface, the same core, the
//! same generator and the same duration, one after the other in one run.
//!
//! Topology, in a private network namespace made for the run:
//!
//! ```text
//!  generator core                          receiver core
//!  [our AF_XDP tx on bpx1] ==veth==> [bpx0: bypass xdp port | testpmd net_af_xdp]
//!            ^-- MAC-swapped frames come back (macswap mode) --'
//! ```
//!
//! The generator is our own AF_XDP port on the far end (copy mode, bursts
//! of 32 `UDP` frames, one `sendto` per burst), pinned to its own core. The
//! receiver runs `rxonly` (receive and free) or `macswap` (swap MAC
//! addresses and send back) on the receiver core: our side is a bare loop
//! over [`PortQueue`] with the library's `MacSwap` handler; testpmd runs
//! `--forward-mode=rxonly|macswap` with its forwarding lcore on that core.
//!
//! What limits what: veth has no zero-copy, so both sides run in copy mode.
//! In native mode the XDP program, the redirect and the copy into the
//! receiver's UMEM run in veth's NAPI on the *sending* CPU, the generator's;
//! in SKB mode they run in the sender's softirq too. So on a 2-core machine
//! the generator's core does most of the work of either receiver, and when
//! both receivers keep up with it the packet rates only measure the
//! generator. The bench says so (a side is "generator-limited" when it
//! received >= 95% of what was offered) and also reports the receiving
//! core's CPU time per packet (from `/proc/.../schedstat`), which is where
//! the receivers differ. A poll-mode receiver spins, so its CPU time is its
//! wall time: CPU per packet is the inverse of its rate on a busy core.
//!
//! testpmd runs in native mode only: Debian's `net_af_xdp` is built on
//! libxdp, which always attaches its own program in native mode (veth has
//! it) and refuses to share the interface with a program that is not a
//! libxdp dispatcher ("Existing program is not using a dispatcher"), and
//! making native mode fail (a veth MTU too large for XDP) makes it fail
//! rather than fall back. So `--xdp-mode skb` measures bypass alone and
//! says so. The copy mode testpmd ended up in cannot be queried from
//! outside; it is inferred from ours (the kernel refuses zero-copy to any
//! socket on a driver without it), and the XDP mode is read back from the
//! interface while it runs.
//!
//! Design choices of our receiver (see `bypass::port::xdp`): bursts of 32;
//! fill ring of 2048 topped up after every burst once 32 slots are free;
//! `need_wakeup` on, so `recvfrom`/`sendto` are made only when the kernel
//! asks (in copy mode it always asks on tx: one `sendto` per burst);
//! busy-poll off by default (`--busy-poll` turns it on; on veth it adds
//! system calls and no NAPI to steer).

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use serde::Serialize;

use bypass::app::{Frame, MacSwap, PacketHandler, Verdict};
use bypass::buf::{Burst, PacketBuf};
use bypass::port::xdp::{self, XdpConfig, XdpMode, XdpPort, XdpQueue, ZeroCopy};
use bypass::port::{sys, MacAddr, Port, PortQueue};
use bypass::{Error, Result};

use super::proc::HugeGuard;
use super::testpmd::Testpmd;
use crate::cli::say;

/// testpmd's memory (MiB).
const TESTPMD_MB: u64 = 512;

const RX_IF: &str = "bpx0";
const GEN_IF: &str = "bpx1";
/// A receiver that got at least this share of the offered frames kept up.
const KEPT_UP: f64 = 0.95;

/// What the receiver does with each frame.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BenchMode {
    /// Receive and free.
    Rxonly,
    /// Swap MAC addresses and send back.
    Macswap,
    /// Both, one after the other.
    Both,
}

/// XDP attach mode of both sides.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachMode {
    /// Native (driver) mode.
    Native,
    /// Generic (SKB) mode.
    Skb,
}

/// `bypass bench xdp` flags.
#[derive(Args, Debug)]
pub struct XdpArgs {
    /// Seconds of traffic per run.
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    duration: f64,
    /// Receiver mode(s) to measure.
    #[arg(long, value_enum, default_value = "both")]
    mode: BenchMode,
    /// XDP attach mode, the same for both sides (skb: bypass only, as
    /// Debian's testpmd/libxdp always attaches in native mode).
    #[arg(long, value_enum, default_value = "native")]
    xdp_mode: AttachMode,
    /// Core of the receiver: our loop, and testpmd's forwarding lcore.
    #[arg(long, value_name = "CORE", default_value_t = 0)]
    rx_core: usize,
    /// Core of the generator (testpmd's idle main lcore goes there too).
    #[arg(long, value_name = "CORE", default_value_t = 1)]
    gen_core: usize,
    /// Frame size in bytes without the FCS (60..=1514).
    #[arg(long, value_name = "BYTES", default_value_t = 60)]
    size: usize,
    /// Entries of each AF_XDP ring on both sides (ours: ring=N; testpmd:
    /// --rxd/--txd). A deeper fill ring rides out the receiver being
    /// descheduled on a shared core.
    #[arg(long, value_name = "N", default_value_t = 2048)]
    ring: u32,
    /// Alternate bypass and testpmd this many times per mode; medians are
    /// reported.
    #[arg(long, value_name = "N", default_value_t = 1)]
    rounds: u32,
    /// Turn on busy-poll socket options on our receiver.
    #[arg(long)]
    busy_poll: bool,
    /// Measure bypass only.
    #[arg(long)]
    no_testpmd: bool,
    /// Print a JSON summary as the last thing on stdout.
    #[arg(long)]
    json: bool,
}

/// One side's run.
#[derive(Debug, Clone, Default, Serialize)]
struct Side {
    side: &'static str,
    xdp_mode: String,
    copy_mode: String,
    /// The packet memory: "hugepages" or "4 KiB pages".
    memory: String,
    /// Frames the generator handed to the kernel during the window.
    offered: u64,
    /// Frames the receiver got.
    rx: u64,
    /// Frames the receiver sent back (macswap).
    tx: u64,
    /// Frames that came back to the generator (macswap).
    returned: u64,
    secs: f64,
    rx_mpps: f64,
    tx_mpps: f64,
    offered_mpps: f64,
    /// Receiver core's CPU time per received frame.
    cpu_ns_per_pkt: f64,
    /// Share of the receiver core's time its thread ran.
    cpu_busy: f64,
    /// Generator core's CPU time per offered frame.
    gen_cpu_ns_per_pkt: f64,
    generator_limited: bool,
    /// Our socket's kernel counters after the run (bypass side only).
    #[serde(skip_serializing_if = "Option::is_none")]
    xsk: Option<xdp::XskStats>,
}

fn sh(cmd: &str) -> Result<()> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .map_err(|e| Error::io(format!("running `{cmd}`"), e))?;
    if !out.status.success() {
        return Err(Error::Config(format!(
            "`{cmd}` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// CPU time (ns) a thread has run, from `/proc/PID/task/TID/schedstat`.
fn cpu_ns(task: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{task}/schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// `PID/task/TID` of the calling thread.
fn this_task() -> String {
    std::fs::read_link("/proc/thread-self")
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn pin(core: usize) -> Result<()> {
    if core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
        Ok(())
    } else {
        Err(Error::Core {
            core,
            why: "cannot pin a thread to it (sched_setaffinity failed)".into(),
        })
    }
}

/// The generator's frame: UDP from the generator's end to the receiver's.
fn template(size: usize, src: MacAddr, dst: MacAddr) -> Vec<u8> {
    let ends = bypass::testing::Ends {
        src_mac: src.0,
        dst_mac: dst.0,
        src_ip: std::net::Ipv4Addr::new(10, 77, 0, 2),
        dst_ip: std::net::Ipv4Addr::new(10, 77, 0, 1),
    };
    let mut buf = vec![0u8; size];
    let n = bypass::testing::emit_udp(&mut buf, &ends, 9, 9, &vec![0x5a; size - 42]);
    buf.truncate(n);
    buf
}

struct GenResult {
    q: XdpQueue,
    sent: u64,
    returned: u64,
    secs: f64,
    cpu_ns: u64,
}

/// Runs the generator on its own pinned thread for `secs`, then returns.
fn generate(mut q: XdpQueue, core: usize, secs: f64, frame: Arc<Vec<u8>>) -> Result<GenResult> {
    std::thread::scope(|s| {
        s.spawn(move || -> Result<GenResult> {
            pin(core)?;
            let task = this_task();
            let cpu0 = cpu_ns(&task);
            let (mut sent, mut returned) = (0u64, 0u64);
            let start = Instant::now();
            let end = start + Duration::from_secs_f64(secs);
            let mut iter = 0u32;
            loop {
                iter = iter.wrapping_add(1);
                if iter % 64 == 0 && Instant::now() >= end {
                    break;
                }
                let mut back = Burst::new();
                returned += q.rx_burst(&mut back) as u64;
                drop(back);
                let mut burst = Burst::new();
                while !burst.is_full() {
                    let Some(mut b) = q.alloc() else { break };
                    b.room_mut()[..frame.len()].copy_from_slice(&frame);
                    b.set_len(frame.len());
                    burst.push(b);
                }
                sent += q.tx_burst(&mut burst) as u64;
                q.flush();
            }
            // Let the last bursts go out.
            for _ in 0..64 {
                q.flush();
            }
            let secs = start.elapsed().as_secs_f64();
            Ok(GenResult {
                sent,
                returned,
                secs,
                cpu_ns: cpu_ns(&task) - cpu0,
                q,
            })
        })
        .join()
        .unwrap_or_else(|_| Err(Error::Config("the generator thread panicked".into())))
    })
}

/// Drops MACs it cannot parse; swaps the others.
fn macswap<B: PacketBuf>(h: &mut MacSwap, b: &mut B) -> bool {
    h.handle(&mut Frame::new(b, 0)) != Verdict::Drop
}

struct Receiver {
    stop: Arc<AtomicBool>,
    rx: Arc<AtomicU64>,
    tx: Arc<AtomicU64>,
    task: String,
    handle: std::thread::JoinHandle<XdpQueue>,
}

/// Our receiver loop on a pinned thread; counts are published per burst.
fn start_receiver(mut q: XdpQueue, core: usize, swap: bool) -> Result<Receiver> {
    let stop = Arc::new(AtomicBool::new(false));
    let (rx, tx) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (ready_tx, ready_rx) = mpsc::channel::<Result<String>>();
    let (s, r, t) = (stop.clone(), rx.clone(), tx.clone());
    let handle = std::thread::Builder::new()
        .name("bench-rx".into())
        .spawn(move || {
            if let Err(e) = pin(core) {
                let _ = ready_tx.send(Err(e));
                return q;
            }
            let _ = ready_tx.send(Ok(this_task()));
            let mut h = MacSwap;
            let (mut nrx, mut ntx) = (0u64, 0u64);
            while !s.load(Ordering::Relaxed) {
                let mut burst = Burst::new();
                let n = q.rx_burst(&mut burst);
                if n == 0 {
                    continue;
                }
                nrx += n as u64;
                if swap {
                    burst.retain(|b| macswap(&mut h, b));
                    ntx += q.tx_burst(&mut burst) as u64;
                    q.flush();
                }
                drop(burst);
                r.store(nrx, Ordering::Relaxed);
                t.store(ntx, Ordering::Relaxed);
            }
            q.flush();
            q
        })
        .map_err(|e| Error::io("spawning the receiver thread", e))?;
    let task = ready_rx
        .recv()
        .map_err(|_| Error::Config("the receiver thread died while starting".into()))??;
    Ok(Receiver {
        stop,
        rx,
        tx,
        task,
        handle,
    })
}

fn finish_side(mut s: Side, gen: &GenResult, cpu: u64) -> Side {
    s.secs = gen.secs;
    s.offered = gen.sent;
    s.returned = gen.returned;
    s.rx_mpps = s.rx as f64 / s.secs / 1e6;
    s.tx_mpps = s.tx as f64 / s.secs / 1e6;
    s.offered_mpps = s.offered as f64 / s.secs / 1e6;
    s.cpu_ns_per_pkt = cpu as f64 / s.rx.max(1) as f64;
    s.cpu_busy = cpu as f64 / (s.secs * 1e9);
    s.gen_cpu_ns_per_pkt = gen.cpu_ns as f64 / s.offered.max(1) as f64;
    s.generator_limited = s.offered > 0 && s.rx as f64 >= KEPT_UP * s.offered as f64;
    s
}

fn run_ours(
    a: &XdpArgs,
    swap: bool,
    gen_q: XdpQueue,
    frame: &Arc<Vec<u8>>,
) -> Result<(Side, XdpQueue)> {
    let mut cfg = XdpConfig::new(RX_IF);
    cfg.mode = match a.xdp_mode {
        AttachMode::Native => XdpMode::Native,
        AttachMode::Skb => XdpMode::Skb,
    };
    cfg.busy_poll = a.busy_poll;
    cfg.ring_size = a.ring;
    cfg.frames = 2 * a.ring;
    let mut port = XdpPort::open(&cfg)?;
    let modes = port.modes();
    let q = port
        .take_queues()
        .pop()
        .ok_or_else(|| Error::Config("the xdp port opened no queue".into()))?;
    let recv = start_receiver(q, a.rx_core, swap)?;
    std::thread::sleep(Duration::from_millis(200));
    let (rx0, tx0, cpu0) = (
        recv.rx.load(Ordering::Relaxed),
        recv.tx.load(Ordering::Relaxed),
        cpu_ns(&recv.task),
    );
    let gen = generate(gen_q, a.gen_core, a.duration, frame.clone())?;
    let cpu = cpu_ns(&recv.task) - cpu0;
    std::thread::sleep(Duration::from_millis(200));
    let side = Side {
        side: "bypass",
        xdp_mode: format!("{:?}", modes.attach).to_lowercase(),
        copy_mode: if modes.zerocopy { "zero-copy" } else { "copy" }.into(),
        memory: memory_name(modes.hugepages).into(),
        rx: recv.rx.load(Ordering::Relaxed) - rx0,
        tx: recv.tx.load(Ordering::Relaxed) - tx0,
        ..Default::default()
    };
    recv.stop.store(true, Ordering::Relaxed);
    let mut q = recv
        .handle
        .join()
        .map_err(|_| Error::Config("the receiver thread panicked".into()))?;
    let side = Side {
        xsk: port.xsk_stats().first().copied(),
        ..side
    };
    // Every UMEM frame must be home after the run.
    q.audit()
        .map_err(|e| Error::Config(format!("bypass receiver lost track of a frame: {e}")))?;
    drop(q);
    drop(port);
    let side = finish_side(side, &gen, cpu);
    Ok((side, gen.q))
}

fn memory_name(huge: bool) -> &'static str {
    if huge {
        "hugepages"
    } else {
        "4 KiB pages"
    }
}

fn run_testpmd(
    a: &XdpArgs,
    swap: bool,
    gen_q: XdpQueue,
    frame: &Arc<Vec<u8>>,
    ours_copy: &str,
    ours_huge: bool,
) -> Result<(Side, XdpQueue)> {
    // testpmd's packet memory matches ours: hugepages when our UMEM is on
    // them (raising the machine's count for the run if needed), ordinary
    // pages otherwise.
    let huge = if ours_huge {
        HugeGuard::ensure_free(TESTPMD_MB / 2)
    } else {
        None
    };
    let mem_args: Vec<String> = match &huge {
        Some(_) => vec!["-m".into(), TESTPMD_MB.to_string(), "--in-memory".into()],
        None => vec!["--no-huge".into(), "-m".into(), TESTPMD_MB.to_string()],
    };
    if ours_huge && huge.is_none() {
        eprintln!(
            "note: testpmd runs on 4 KiB pages while our UMEM is on hugepages: {} free hugepages could not be had",
            TESTPMD_MB / 2
        );
    }
    let prefix = format!("bypass-bench-xdp-{}", std::process::id());
    let mut eal: Vec<String> = [
        "-l".to_string(),
        format!("{},{}", a.rx_core, a.gen_core),
        "--main-lcore".into(),
        a.gen_core.to_string(),
        "--no-pci".into(),
    ]
    .into();
    eal.extend(mem_args);
    eal.extend([
        format!("--file-prefix={prefix}"),
        "--log-level".into(),
        "pmd.net.af_xdp:info".into(),
        "--vdev".into(),
        format!("net_af_xdp0,iface={RX_IF},start_queue=0,queue_count=1"),
    ]);
    let app: Vec<String> = vec![
        "--no-mlockall".into(),
        format!("--forward-mode={}", if swap { "macswap" } else { "rxonly" }),
        "--total-num-mbufs=16384".into(),
        "--nb-cores=1".into(),
        "--rxq=1".into(),
        "--txq=1".into(),
        "--burst=32".into(),
        format!("--rxd={}", a.ring),
        format!("--txd={}", a.ring),
    ];
    let tp = Testpmd::start("dpdk-testpmd", &prefix, &eal, &app)
        .map_err(|e| Error::Config(format!("{e} (use --no-testpmd to measure bypass only)")))?;
    let worker = tp.worker_task(a.rx_core).ok_or_else(|| {
        Error::Config("cannot find testpmd's forwarding thread (rte-worker-N) in /proc".into())
    })?;
    let attached = xdp::attached_mode(RX_IF)
        .map(|m| format!("{m:?}").to_lowercase())
        .unwrap_or_else(|_| "?".into());
    std::thread::sleep(Duration::from_millis(200));
    let cpu0 = cpu_ns(&worker);
    let gen = generate(gen_q, a.gen_core, a.duration, frame.clone())?;
    let cpu = cpu_ns(&worker) - cpu0;
    std::thread::sleep(Duration::from_millis(200));
    let st = tp.stop()?;
    let side = Side {
        side: "testpmd",
        xdp_mode: attached,
        copy_mode: format!("{ours_copy} (inferred)"),
        memory: memory_name(huge.is_some()).into(),
        rx: st.rx,
        tx: st.tx,
        ..Default::default()
    };
    Ok((finish_side(side, &gen, cpu), gen.q))
}

fn median(v: &mut [Side]) -> Side {
    v.sort_by(|a, b| a.rx_mpps.total_cmp(&b.rx_mpps));
    v[v.len() / 2].clone()
}

/// One mode's result.
#[derive(Debug, Serialize)]
struct ModeResult {
    mode: &'static str,
    bypass: Side,
    testpmd: Option<Side>,
    /// bypass rx Mpps / testpmd rx Mpps.
    ratio: Option<f64>,
    /// testpmd CPU per packet / bypass CPU per packet (> 1: we use less).
    cpu_ratio: Option<f64>,
    rounds: Vec<Side>,
}

fn print_side(json: bool, s: &Side, swap: bool) {
    say(
        json,
        &format!(
            "  {:<8} {:<7} {:<17} {:<11} {:>8.3} {:>8.3} {:>8} {:>10.0} {:>6.0}% {:>9.0}  {}",
            s.side,
            s.xdp_mode,
            s.copy_mode,
            s.memory,
            s.offered_mpps,
            s.rx_mpps,
            if swap {
                format!("{:.3}", s.tx_mpps)
            } else {
                "-".into()
            },
            s.cpu_ns_per_pkt,
            s.cpu_busy * 100.0,
            s.gen_cpu_ns_per_pkt,
            if s.generator_limited {
                "generator-limited"
            } else {
                "receiver-limited"
            }
        ),
    );
}

/// Runs the bench.
pub fn run(a: XdpArgs) -> Result<()> {
    if !sys::is_root() {
        return Err(Error::Privilege {
            what: "bypass bench xdp (it makes a network namespace and attaches XDP programs)"
                .into(),
            caps: "CAP_SYS_ADMIN, CAP_NET_ADMIN and CAP_BPF",
        });
    }
    if !(0.5..=600.0).contains(&a.duration) {
        return Err(Error::Config("--duration must be 0.5..=600 seconds".into()));
    }
    if !(60..=1514).contains(&a.size) {
        return Err(Error::Config("--size must be 60..=1514".into()));
    }
    if !a.ring.is_power_of_two() || !(256..=16384).contains(&a.ring) {
        return Err(Error::Config(
            "--ring must be a power of two, 256..=16384".into(),
        ));
    }
    if a.rx_core == a.gen_core {
        return Err(Error::Config(
            "--rx-core and --gen-core must differ (the generator spins)".into(),
        ));
    }
    let rounds = a.rounds.clamp(1, 20);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    // Everything from here on happens in a namespace of our own: nothing
    // we send can leave it, and it vanishes with the process.
    sys::unshare_netns()?;
    sh(&format!("ip link add {RX_IF} type veth peer name {GEN_IF}"))?;
    for i in [RX_IF, GEN_IF] {
        // No IPv6 chatter on the wire we measure.
        let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{i}/disable_ipv6"), "1");
        sh(&format!("ip link set {i} up"))?;
    }
    let rx_mac = MacAddr(sys::get_mac(RX_IF)?);
    let mut gcfg = XdpConfig::new(GEN_IF);
    gcfg.zerocopy = ZeroCopy::Off;
    let mut gen_port = XdpPort::open(&gcfg)?;
    let frame = Arc::new(template(a.size, gen_port.info().mac, rx_mac));
    let mut gen_q = gen_port
        .take_queues()
        .pop()
        .ok_or_else(|| Error::Config("the generator port opened no queue".into()))?;
    let json = a.json;
    say(
        json,
        &format!(
            "bench xdp: veth {RX_IF}<->{GEN_IF} in a private netns, {} B frames, {:.1} s per run, \
             receiver on core {}, generator (our AF_XDP tx, {}) on core {}",
            a.size,
            a.duration,
            a.rx_core,
            gen_port.modes(),
            a.gen_core
        ),
    );
    say(
        json,
        &format!(
            "load average before the run: {} (other work on this machine skews the figures)",
            load.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        ),
    );
    let modes: &[(&'static str, bool)] = match a.mode {
        BenchMode::Rxonly => &[("rxonly", false)],
        BenchMode::Macswap => &[("macswap", true)],
        BenchMode::Both => &[("rxonly", false), ("macswap", true)],
    };
    let with_testpmd = !a.no_testpmd && a.xdp_mode == AttachMode::Native;
    if !a.no_testpmd && !with_testpmd {
        say(
            json,
            "note: dpdk-testpmd is left out in SKB mode: its libxdp always attaches in native mode and \
             will not share the interface with a generic-mode program (see `bypass bench xdp --help`)",
        );
    }
    let mut results = Vec::new();
    for &(name, swap) in modes {
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            let (s, q) = run_ours(&a, swap, gen_q, &frame)?;
            gen_q = q;
            let copy = s.copy_mode.clone();
            let huge = s.memory == memory_name(true);
            ours.push(s);
            if with_testpmd {
                let (t, q) = run_testpmd(&a, swap, gen_q, &frame, &copy, huge)?;
                gen_q = q;
                theirs.push(t);
            }
        }
        let mut all = ours.clone();
        all.extend(theirs.iter().cloned());
        let b = median(&mut ours);
        let t = (!theirs.is_empty()).then(|| median(&mut theirs));
        let ratio = t.as_ref().map(|t| b.rx_mpps / t.rx_mpps.max(1e-12));
        let cpu_ratio = t
            .as_ref()
            .map(|t| t.cpu_ns_per_pkt / b.cpu_ns_per_pkt.max(1e-12));
        results.push(ModeResult {
            mode: name,
            bypass: b,
            testpmd: t,
            ratio,
            cpu_ratio,
            rounds: all,
        });
    }
    gen_q
        .audit()
        .map_err(|e| Error::Config(format!("generator lost track of a frame: {e}")))?;
    drop(gen_q);
    drop(gen_port);

    say(
        json,
        &format!(
            "  {:<8} {:<7} {:<17} {:<11} {:>8} {:>8} {:>8} {:>10} {:>7} {:>9}",
            "side",
            "xdp",
            "copy",
            "memory",
            "offered",
            "rx Mpps",
            "tx Mpps",
            "rx ns/pkt",
            "rx cpu",
            "gen ns/pkt"
        ),
    );
    for r in &results {
        say(json, &format!("{} ({} round(s), medians):", r.mode, rounds));
        let swap = r.mode == "macswap";
        print_side(json, &r.bypass, swap);
        if let Some(t) = &r.testpmd {
            print_side(json, t, swap);
        }
        if let (Some(ratio), Some(cpu), Some(t)) = (r.ratio, r.cpu_ratio, &r.testpmd) {
            say(
                json,
                &format!(
                    "  ratio bypass/testpmd: {ratio:.2}x rx Mpps; testpmd uses {cpu:.2}x bypass's receiver CPU per packet"
                ),
            );
            if r.bypass.generator_limited && t.generator_limited {
                say(
                    json,
                    "  note: both receivers took >= 95% of what the generator offered, so the generator \
                     (whose core also runs veth's XDP work and the copy into the UMEM) set both rates; \
                     the packet-rate ratio only says both keep up; compare `gen ns/pkt` (it includes each \
                     side's XDP program and copy into its UMEM, which run on the generator's core)",
                );
            }
        }
    }
    if json {
        let v = serde_json::json!({
            "command": "bench xdp",
            "frame_size": a.size,
            "duration_s": a.duration,
            "rx_core": a.rx_core,
            "gen_core": a.gen_core,
            "load_average_before": load.trim(),
            "results": results,
        });
        crate::cli::outln!("{v}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::wire::{EthernetFrame, IpProtocol, Ipv4Packet};

    #[test]
    fn template_is_a_valid_udp_frame() {
        let f = template(60, MacAddr([2, 0, 0, 0, 0, 1]), MacAddr([2, 0, 0, 0, 0, 2]));
        assert_eq!(f.len(), 60);
        let eth = EthernetFrame::new_checked(&f[..]).unwrap();
        let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!(ip.next_header(), IpProtocol::Udp);
    }
}
