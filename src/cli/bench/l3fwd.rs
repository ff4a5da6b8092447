//! `bypass bench l3fwd`: our `l3fwd` against DPDK's own `l3fwd` example
//! (LPM lookup), on the same virtual devices, the same core, the same route
//! table and the same frames, one after the other in one run.
//!
//! Traffic: port 0 is `net_pcap` replaying a pcap of IPv4/UDP frames to
//! addresses covered by the route table, over and over (`infinite_rx=1`;
//! what it is asked to send it drops), port 1 is `net_null` with `no-rx=1`
//! (it frees what it is asked to send). Both forwarders poll both ports and
//! route each frame to port 0 or 1 by longest-prefix match. Rates are
//! frames sent out of both ports per second: ours from `bypass l3fwd
//! --json`, DPDK's from its ports' `opackets` read through its telemetry
//! socket (`dpdk-telemetry.py`) at the start and end of the same interval.
//!
//! DPDK's l3fwd is built from the sources Debian's `dpdk-doc` installs
//! (`/usr/share/dpdk/examples/l3fwd`, with `examples/common` on the include
//! path) with one change, because the vdevs have no receive checksum
//! offload and the example asks for it unconditionally (and `net_pcap`
//! then refuses to configure): in `main.c`, the port configuration's
//! `.rxmode.offloads = RTE_ETH_RX_OFFLOAD_CHECKSUM` becomes `0`. It runs
//! with `--parse-ptype` (the vdevs do not classify packets) and `-l CORE`
//! (one lcore, which is the forwarding one).

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use clap::Args;

use bypass::{Error, Result};

use super::fwd::{
    clean_hugepage_files, compare, loadavg, memory_modes, pick_cores, read_all, report, run_ours,
    tee_lines, wait_bounded, wait_for_line, which, Side,
};

/// `bypass bench l3fwd` flags.
#[derive(Args, Debug)]
pub struct L3fwdBenchArgs {
    /// Seconds each side forwards, per round.
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    duration: f64,
    /// The forwarding core of both sides (default: the last usable core).
    #[arg(long, value_name = "CORE")]
    core: Option<usize>,
    /// Rounds per memory mode (each runs bypass, then DPDK); medians are
    /// reported.
    #[arg(long, value_name = "N", default_value_t = 1)]
    rounds: u32,
    /// Prefixes in the route table (at least 1000).
    #[arg(long, value_name = "N", default_value_t = 1024)]
    routes: u32,
    /// DPDK's l3fwd binary (default: build it from /usr/share/dpdk/examples
    /// into a directory under the system's temporary directory).
    #[arg(long, value_name = "PATH")]
    dpdk_l3fwd: Option<String>,
    /// Extra EAL arguments for both sides. A memory option here runs that
    /// mode only (default: hugepages, then --no-huge -m 512).
    #[arg(
        long,
        value_name = "ARGS",
        default_value = "",
        allow_hyphen_values = true
    )]
    eal: String,
    /// Print a JSON summary as the last line of stdout.
    #[arg(long)]
    json: bool,
}

/// The next-hop MAC of each port in the route tables.
const HOP_MAC: [[u8; 6]; 2] = [[2, 0, 0, 0, 1, 0], [2, 0, 0, 0, 1, 1]];

/// The files both sides read, in a directory of their own.
struct Inputs {
    dir: PathBuf,
    pcap: PathBuf,
    routes: PathBuf,
    dpdk_v4: PathBuf,
    dpdk_v6: PathBuf,
}

impl Drop for Inputs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The route table: `n` prefixes inside 10.0.0.0/8 (mostly /24s, with
/// /16s over them and /32s inside them, so matches overlap), each to port 0
/// or 1; and 1024 frames to addresses inside them.
fn make_inputs(n: u32) -> Result<Inputs> {
    let dir = std::env::temp_dir().join(format!("bypass-bench-l3fwd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(format!("mkdir {}", dir.display()), e))?;
    let inputs = Inputs {
        pcap: dir.join("frames.pcap"),
        routes: dir.join("routes.txt"),
        dpdk_v4: dir.join("routes.v4.cfg"),
        dpdk_v6: dir.join("routes.v6.cfg"),
        dir,
    };
    // The same table and frames in every run.
    let mut rng = bypass::testing::Rng(0x5eed_1234_abcd_0001);
    let mut routes: Vec<(Ipv4Addr, u8, usize)> = Vec::new();
    let n24 = n - n / 16 - n / 32;
    for i in 0..n24 {
        routes.push((Ipv4Addr::from(10 << 24 | i << 8), 24, (i % 2) as usize));
    }
    for i in 0..n / 16 {
        routes.push((
            Ipv4Addr::from(10 << 24 | i << 16),
            16,
            ((i + 1) % 2) as usize,
        ));
    }
    for i in 0..n / 32 {
        let a = 10 << 24 | (rng.next_u64() as u32 % n24) << 8 | (rng.next_u64() as u32 & 0xff);
        routes.push((Ipv4Addr::from(a), 32, (i % 2) as usize));
    }
    let mut ours = String::new();
    let mut theirs = String::new();
    for &(p, len, port) in &routes {
        let m = bypass::port::MacAddr(HOP_MAC[port]);
        ours.push_str(&format!("{p}/{len} {port} {m}\n"));
        theirs.push_str(&format!("R{p}/{len} {port}\n"));
    }
    let write = |p: &Path, s: &str| {
        std::fs::write(p, s).map_err(|e| Error::io(format!("write {}", p.display()), e))
    };
    write(&inputs.routes, &ours)?;
    write(&inputs.dpdk_v4, &theirs)?;
    // DPDK's l3fwd wants an IPv6 table too (or it ignores both files).
    write(&inputs.dpdk_v6, "R2001:db8::/32 0\n")?;

    let f = std::fs::File::create(&inputs.pcap)
        .map_err(|e| Error::io(format!("create {}", inputs.pcap.display()), e))?;
    let mut w = pcap_file::pcap::PcapWriter::new(std::io::BufWriter::new(f))
        .map_err(|e| Error::Config(format!("writing {}: {e}", inputs.pcap.display())))?;
    let mut room = [0u8; 128];
    for i in 0..1024u32 {
        let dst = 10 << 24 | (rng.next_u64() as u32 % n24) << 8 | (rng.next_u64() as u32 & 0xff);
        let e = bypass::testing::Ends {
            src_mac: [2, 0, 0, 0, 2, 2],
            dst_mac: [2, 0, 0, 0, 3, 3],
            src_ip: Ipv4Addr::new(192, 0, 2, (i % 250) as u8 + 1),
            dst_ip: Ipv4Addr::from(dst),
        };
        // 64-byte frames on the wire (60 without the FCS).
        let len = bypass::testing::emit_udp(&mut room, &e, 1024 + i as u16, 9, &[0; 18]);
        w.write_packet(&pcap_file::pcap::PcapPacket::new(
            Duration::ZERO,
            len as u32,
            &room[..len],
        ))
        .map_err(|e| Error::Config(format!("writing {}: {e}", inputs.pcap.display())))?;
    }
    drop(w);
    Ok(inputs)
}

/// The line of DPDK's l3fwd `main.c` changed to run on vdevs, and what it
/// becomes (see the module docs).
const PATCH_FROM: &str = "\t\t.offloads = RTE_ETH_RX_OFFLOAD_CHECKSUM,\n";
const PATCH_TO: &str = "\t\t.offloads = 0,\n";
const EXAMPLES: &str = "/usr/share/dpdk/examples";

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let dst = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &dst)?;
        } else {
            std::fs::copy(e.path(), dst)?;
        }
    }
    Ok(())
}

/// DPDK's l3fwd: the given binary, or one built (once, then reused) from
/// the `dpdk-doc` sources with the vdev change.
fn dpdk_l3fwd(given: Option<&str>, say: &dyn Fn(&str)) -> Result<PathBuf> {
    if let Some(p) = given {
        return which(p)
            .map(PathBuf::from)
            .ok_or_else(|| Error::Config(format!("--dpdk-l3fwd {p}: no such program")));
    }
    let src = Path::new(EXAMPLES).join("l3fwd");
    if !src.join("main.c").exists() {
        return Err(Error::Config(format!(
            "DPDK's l3fwd sources are not in {EXAMPLES}: install them with `apt-get install dpdk-doc`, or give --dpdk-l3fwd PATH"
        )));
    }
    let root = std::env::temp_dir().join("bypass-dpdk-l3fwd");
    let bin = root.join("l3fwd/build/l3fwd");
    if bin.exists() {
        return Ok(bin);
    }
    for tool in ["make", "cc", "pkg-config"] {
        if which(tool).is_none() {
            return Err(Error::Config(format!(
                "building DPDK's l3fwd needs `{tool}`: install build-essential and pkg-config, or give --dpdk-l3fwd PATH"
            )));
        }
    }
    say(&format!(
        "building DPDK's l3fwd from {EXAMPLES} in {} (once)",
        root.display()
    ));
    let _ = std::fs::remove_dir_all(&root);
    let io = |what: &str, e: std::io::Error| Error::io(what.to_string(), e);
    copy_dir(&src, &root.join("l3fwd")).map_err(|e| io("copy the l3fwd sources", e))?;
    copy_dir(&Path::new(EXAMPLES).join("common"), &root.join("common"))
        .map_err(|e| io("copy examples/common", e))?;
    let main_c = root.join("l3fwd/main.c");
    let text = std::fs::read_to_string(&main_c).map_err(|e| io("read l3fwd/main.c", e))?;
    if text.matches(PATCH_FROM).count() != 1 {
        return Err(Error::Config(format!(
            "{}: the line `{}` to change for vdevs is not there once; give a built l3fwd with --dpdk-l3fwd",
            main_c.display(),
            PATCH_FROM.trim()
        )));
    }
    std::fs::write(&main_c, text.replacen(PATCH_FROM, PATCH_TO, 1))
        .map_err(|e| io("patch l3fwd/main.c", e))?;
    let mut child = Command::new("make")
        .arg("-C")
        .arg(root.join("l3fwd"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| io("start make", e))?;
    let err_pipe = child.stderr.take();
    let err_t = std::thread::spawn(move || read_all(err_pipe));
    let st = wait_bounded(&mut child, Duration::from_secs(600), "make (DPDK l3fwd)")?;
    let err = err_t.join().unwrap_or_default();
    if !st.success() || !bin.exists() {
        return Err(Error::Config(format!(
            "building DPDK's l3fwd failed ({st}): {}",
            err.trim()
        )));
    }
    Ok(bin)
}

pub fn run(a: L3fwdBenchArgs) -> Result<()> {
    if !cfg!(feature = "dpdk") {
        return Err(Error::Config(
            "bench l3fwd needs the DPDK backend; rebuild with `cargo build --release --features dpdk`"
                .into(),
        ));
    }
    if !a.duration.is_finite() || a.duration <= 0.0 || a.rounds == 0 {
        return Err(Error::Config(
            "--duration must be more than 0 seconds and --rounds at least 1".into(),
        ));
    }
    if !(1000..=65536).contains(&a.routes) {
        return Err(Error::Config(
            "--routes must be 1000 to 65536 (the issue asks for at least 1,000 prefixes)".into(),
        ));
    }
    let (core, _) = pick_cores(a.core)?;
    let telemetry = which("dpdk-telemetry.py").ok_or_else(|| {
        Error::Config(
            "`dpdk-telemetry.py` not found (it comes with Debian's `dpdk` package); it reads DPDK l3fwd's counters"
                .into(),
        )
    })?;
    let say = |l: &str| super::super::say(a.json, l);
    let l3fwd = dpdk_l3fwd(a.dpdk_l3fwd.as_deref(), &say)?;
    let inputs = make_inputs(a.routes)?;
    let (modes, _huge, huge_why) = memory_modes(&a.eal);
    if let Some(why) = &huge_why {
        say(&format!("bench l3fwd: no hugepage run: {why}"));
    }
    say(&format!(
        "bench l3fwd: LPM over {} prefixes, 64 B IPv4/UDP frames from net_pcap (infinite_rx) to net_pcap/net_null, {}s x {} round(s) per memory mode on core {core}; DPDK l3fwd: {}",
        a.routes,
        a.duration,
        a.rounds,
        l3fwd.display()
    ));
    let load_before = loadavg();
    let names = ("bypass l3fwd", "DPDK l3fwd");
    let results = compare(
        &modes,
        a.rounds,
        names,
        &say,
        |mem, round| run_bypass(&a, core, mem, round, &inputs),
        |mem, round| run_dpdk(&a, &l3fwd, &telemetry, core, mem, round, &inputs),
    )?;
    let load_after = loadavg();
    let head = serde_json::json!({
        "bench": "l3fwd",
        "routes": a.routes,
        "frame_bytes": 64,
        "core": core,
        "duration_s": a.duration,
        "dpdk_l3fwd": l3fwd,
        "dpdk_l3fwd_change": format!("main.c: `{}` -> `{}`", PATCH_FROM.trim(), PATCH_TO.trim()),
    });
    report(
        a.json,
        head,
        ("dpdk_mpps", names),
        &results,
        a.rounds,
        huge_why,
        (load_before, load_after),
    );
    Ok(())
}

fn vdevs(inputs: &Inputs) -> [String; 2] {
    [
        format!("net_pcap0,rx_pcap={},infinite_rx=1", inputs.pcap.display()),
        "net_null1,no-rx=1".to_string(),
    ]
}

fn run_bypass(
    a: &L3fwdBenchArgs,
    core: usize,
    mem: &[String],
    round: u32,
    inputs: &Inputs,
) -> Result<Side> {
    let prefix = format!("bpl3-{}-b{round}", std::process::id());
    let [p0, p1] = vdevs(inputs);
    let args = vec![
        "l3fwd".to_string(),
        "--port".into(),
        format!("dpdk:{p0}"),
        "--port".into(),
        format!("dpdk:{p1}"),
        "--routes".into(),
        inputs.routes.display().to_string(),
    ];
    let super::fwd::OursRun {
        packets,
        secs,
        drops,
        ..
    } = run_ours(&args, core, a.duration, mem, &a.eal, &prefix)?;
    if drops > packets / 100 {
        return Err(Error::Config(format!(
            "bypass l3fwd dropped {drops} of {} frames: the route table does not match the frames",
            packets + drops
        )));
    }
    Ok(Side::new(packets, secs))
}

/// Frames sent by ports 0 and 1 of the DPDK process with `prefix`, read
/// through its telemetry socket.
fn dpdk_opackets(telemetry: &str, prefix: &str) -> Result<u64> {
    let mut child = Command::new(telemetry)
        .args(["-f", prefix])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::io(format!("start {telemetry}"), e))?;
    if let Some(mut i) = child.stdin.take() {
        let _ = i.write_all(b"/ethdev/stats,0\n/ethdev/stats,1\n");
    }
    let out_pipe = child.stdout.take();
    let out_t = std::thread::spawn(move || read_all(out_pipe));
    wait_bounded(&mut child, Duration::from_secs(20), "dpdk-telemetry.py")?;
    let out = out_t.join().unwrap_or_default();
    let sums: Vec<u64> = out
        .lines()
        .filter_map(|l| l.find('{').map(|i| &l[i..]))
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["/ethdev/stats"]["opackets"].as_u64())
        .collect();
    if sums.len() != 2 {
        return Err(Error::Config(format!(
            "could not read DPDK l3fwd's port counters through telemetry: {out}"
        )));
    }
    Ok(sums.iter().sum())
}

fn run_dpdk(
    a: &L3fwdBenchArgs,
    l3fwd: &Path,
    telemetry: &str,
    core: usize,
    mem: &[String],
    round: u32,
    inputs: &Inputs,
) -> Result<Side> {
    let prefix = format!("bpl3-{}-d{round}", std::process::id());
    let stdbuf = which("stdbuf").ok_or_else(|| {
        Error::Config("`stdbuf` (coreutils) not found; it is needed to read l3fwd's output".into())
    })?;
    let [p0, p1] = vdevs(inputs);
    let m = |p: usize| bypass::port::MacAddr(HOP_MAC[p]).to_string();
    let mut child = Command::new(stdbuf)
        .arg("-oL")
        .arg(l3fwd)
        .arg("-l")
        .arg(core.to_string())
        .arg("--no-pci")
        .arg(format!("--vdev={p0}"))
        .arg(format!("--vdev={p1}"))
        .arg(format!("--file-prefix={prefix}"))
        .args(mem)
        .args(a.eal.split_whitespace())
        .args(["--", "-p", "0x3", "-P", "--lookup=lpm", "--parse-ptype"])
        .arg(format!("--config=(0,0,{core}),(1,0,{core})"))
        .arg(format!("--rule_ipv4={}", inputs.dpdk_v4.display()))
        .arg(format!("--rule_ipv6={}", inputs.dpdk_v6.display()))
        .arg(format!("--eth-dest=0,{}", m(0)))
        .arg(format!("--eth-dest=1,{}", m(1)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::io(format!("start {}", l3fwd.display()), e))?;
    let pid = child.id();
    let (tx, rx) = mpsc::channel::<String>();
    // Its route list is long: not kept for error messages.
    let out_t = tee_lines(child.stdout.take(), tx.clone(), |l| {
        !l.starts_with("LPM: Adding route")
    });
    // DPDK logs (its "entering main loop" among them) go to stderr.
    let err_t = tee_lines(child.stderr.take(), tx, |_| true);
    let ready = wait_for_line(&rx, &mut child, "entering main loop");
    let measured = if ready {
        // Let it settle, then count over the interval.
        std::thread::sleep(Duration::from_millis(500));
        dpdk_opackets(telemetry, &prefix).and_then(|p0| {
            let t0 = Instant::now();
            std::thread::sleep(Duration::from_secs_f64(a.duration));
            let p1 = dpdk_opackets(telemetry, &prefix)?;
            Ok((p1.saturating_sub(p0), t0.elapsed().as_secs_f64()))
        })
    } else {
        Err(Error::Config("DPDK l3fwd did not start forwarding".into()))
    };
    // SIGINT: l3fwd stops its ports and exits cleanly.
    super::proc::interrupt(pid);
    let st = wait_bounded(&mut child, Duration::from_secs(30), "DPDK l3fwd");
    clean_hugepage_files(&prefix);
    let out = out_t.join().unwrap_or_default();
    let err = err_t.join().unwrap_or_default();
    let (packets, secs) =
        measured.map_err(|e| Error::Config(format!("{e}\n{}\n{}", out.trim(), err.trim())))?;
    st?;
    if packets == 0 {
        return Err(Error::Config(format!(
            "DPDK l3fwd forwarded nothing: {}\n{}",
            out.trim(),
            err.trim()
        )));
    }
    Ok(Side::new(packets, secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bypass::app::l3fwd::{parse_routes, L3Fwd, Table};
    use bypass::app::{Frame, PacketHandler, SliceBuf, Verdict};

    #[test]
    fn inputs_route_every_frame_and_the_tables_agree() {
        let inputs = make_inputs(1024).unwrap();
        let text = std::fs::read_to_string(&inputs.routes).unwrap();
        let routes = parse_routes(&text, 2).unwrap();
        assert_eq!(routes.len(), 1024);
        let dpdk = std::fs::read_to_string(&inputs.dpdk_v4).unwrap();
        assert_eq!(dpdk.lines().count(), 1024);
        for (r, d) in routes.iter().zip(dpdk.lines()) {
            assert_eq!(d, format!("R{}/{} {}", r.prefix, r.len, r.port));
        }
        let table = std::sync::Arc::new(Table::new(&routes, 2).unwrap());
        let mut h = L3Fwd::new(table);
        let mut r =
            pcap_file::pcap::PcapReader::new(std::fs::File::open(&inputs.pcap).unwrap()).unwrap();
        let mut n = 0;
        while let Some(p) = r.next_packet() {
            let mut b = p.unwrap().data.into_owned();
            assert_eq!(b.len(), 60);
            let v = h.handle(&mut Frame::new(&mut SliceBuf::whole(&mut b), 0));
            assert!(matches!(v, Verdict::Out(0 | 1)), "{v:?}");
            n += 1;
        }
        assert_eq!(n, 1024);
        let dir = inputs.dir.clone();
        drop(inputs);
        assert!(!dir.exists());
    }
}
