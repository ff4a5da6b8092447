//! `bypass bench fwd`: our l2fwd (MAC-swap, one forwarding core) against
//! `dpdk-testpmd --forward-mode=macswap`, on the same virtual device, the
//! same core and for the same time, one after the other in one run.
//!
//! The traffic source is the device's own receive path: `net_null` makes a
//! 64-byte frame (allocated from the receiving queue's pool) for every
//! receive slot and frees what is sent, so both sides forward as fast as
//! they can with identical input. EAL starts once per process, so each side
//! runs as a child process with its own `--file-prefix`: `bypass l2fwd
//! --json` (this same binary) and `dpdk-testpmd`, never at the same time.
//! Rates are forwarded (transmitted) frames per second: bypass's from its
//! JSON summary, testpmd's from its final "Accumulated forward statistics"
//! over the time between its "Press enter to exit" and our Enter.
//!
//! Memory: both sides run with their packet memory on hugepages
//! (`--in-memory`) and then without (`--no-huge -m 512`), and the report
//! gives a ratio for each. When fewer hugepages are free than the run needs
//! and we are root, the bench raises `/proc/sys/vm/nr_hugepages` for the run
//! and puts back exactly the value it found ([`HugeReserve`]). `--eal` with
//! a memory option runs that one mode only.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use clap::Args;

use bypass::{Error, Result};

/// `bypass bench fwd` flags.
#[derive(Args, Debug)]
pub struct FwdArgs {
    /// Seconds each side forwards, per round.
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    duration: f64,
    /// The forwarding core of both sides (default: the last usable core).
    /// EAL's main lcore is another usable core.
    #[arg(long, value_name = "CORE")]
    core: Option<usize>,
    /// The device both sides forward on (a DPDK vdev whose receive side
    /// makes frames by itself).
    #[arg(long, value_name = "VDEV", default_value = "net_null0")]
    vdev: String,
    /// Rounds (each runs bypass, then testpmd); the report gives medians.
    #[arg(long, value_name = "N", default_value_t = 1)]
    rounds: u32,
    /// The testpmd binary.
    #[arg(long, value_name = "PATH", default_value = "dpdk-testpmd")]
    testpmd: String,
    /// Extra EAL arguments for both sides (e.g. memory options). Left out:
    /// --in-memory with hugepages, --no-huge -m 512 without.
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

/// Free 2 MiB hugepages a hugepage run wants (both sides' pools with room).
pub(super) const HUGE_PAGES_WANTED: u64 = 256;

const NR_HUGEPAGES: &str = "/proc/sys/vm/nr_hugepages";

fn hugepages_free() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("HugePages_Free:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Hugepages the bench reserved for itself: `nr_hugepages` is only ever
/// raised, and set back on drop to exactly the value found; and a private
/// hugetlbfs mount when none was mounted, unmounted on drop.
pub(super) struct HugeReserve {
    found: Option<u64>,
    mount: Option<std::path::PathBuf>,
}

fn hugetlbfs_mounted() -> bool {
    std::fs::read_to_string("/proc/mounts")
        .map(|m| {
            m.lines()
                .any(|l| l.split_whitespace().nth(2) == Some("hugetlbfs"))
        })
        .unwrap_or(false)
}

impl HugeReserve {
    /// Makes sure `pages` hugepages are free, raising `nr_hugepages` if
    /// needed (as root). Returns the guard and, when there are still too
    /// few, why.
    pub(super) fn ensure(pages: u64) -> (HugeReserve, Option<String>) {
        let mut g = HugeReserve {
            found: None,
            mount: None,
        };
        if !hugetlbfs_mounted() {
            let dir =
                std::env::temp_dir().join(format!("bypass-bench-huge-{}", std::process::id()));
            let ok = std::fs::create_dir_all(&dir).is_ok()
                && Command::new("mount")
                    .args(["-t", "hugetlbfs", "-o", "pagesize=2M", "nodev"])
                    .arg(&dir)
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success());
            if !ok {
                let _ = std::fs::remove_dir(&dir);
                return (
                    g,
                    Some("no hugetlbfs is mounted and mounting one failed (run as root, or `sudo scripts/hugepages.sh reserve 256`)".into()),
                );
            }
            g.mount = Some(dir);
        }
        let free = hugepages_free();
        if free >= pages {
            return (g, None);
        }
        let found: Option<u64> = std::fs::read_to_string(NR_HUGEPAGES)
            .ok()
            .and_then(|s| s.trim().parse().ok());
        let Some(found) = found else {
            return (g, Some(format!("cannot read {NR_HUGEPAGES}")));
        };
        if std::fs::write(NR_HUGEPAGES, (found + pages - free).to_string()).is_err() {
            return (
                g,
                Some(format!(
                    "{free} hugepages free and cannot reserve more (run as root, or `sudo scripts/hugepages.sh reserve {pages}`)"
                )),
            );
        }
        g.found = Some(found);
        let now = hugepages_free();
        if now < pages {
            return (
                g,
                Some(format!(
                    "the kernel reserved only {now} of {pages} hugepages (memory too fragmented?)"
                )),
            );
        }
        (g, None)
    }
}

impl HugeReserve {
    /// EAL arguments naming the private mount, if the bench made one.
    pub(super) fn eal_args(&self) -> Vec<String> {
        match &self.mount {
            Some(d) => vec!["--huge-dir".into(), d.display().to_string()],
            None => Vec::new(),
        }
    }
}

impl Drop for HugeReserve {
    fn drop(&mut self) {
        if let Some(dir) = self.mount.take() {
            let _ = Command::new("umount").arg(&dir).status();
            let _ = std::fs::remove_dir(&dir);
        }
        if let Some(found) = self.found {
            if std::fs::write(NR_HUGEPAGES, found.to_string()).is_err() {
                eprintln!("could not restore {NR_HUGEPAGES} to {found}; do it by hand");
            }
        }
    }
}

/// A memory mode: its label and its EAL memory arguments.
pub(super) type MemMode = (String, Vec<String>);

/// The memory modes of a run: (label, EAL memory arguments). With a memory
/// option in `user`, just that; otherwise hugepages (if they can be had)
/// and then none. The guard keeps the hugepages reserved until dropped.
pub(super) fn memory_modes(user: &str) -> (Vec<MemMode>, HugeReserve, Option<String>) {
    if user_gives_memory(user) {
        return (
            vec![(user.trim().to_string(), Vec::new())],
            HugeReserve {
                found: None,
                mount: None,
            },
            None,
        );
    }
    let (guard, why) = HugeReserve::ensure(HUGE_PAGES_WANTED);
    let mut modes = Vec::new();
    if why.is_none() && huge_ok() {
        let mut args = vec!["--in-memory".to_string()];
        args.extend(guard.eal_args());
        modes.push(("hugepages".to_string(), args));
    }
    modes.push((
        "no hugepages".to_string(),
        vec!["--no-huge".into(), "-m".into(), "512".into()],
    ));
    (modes, guard, why)
}

/// One memory mode's medians: ours against the baseline.
#[derive(Debug, Clone, serde::Serialize)]
pub(super) struct ModeResult {
    pub(super) memory: String,
    pub(super) bypass: Vec<Side>,
    pub(super) baseline: Vec<Side>,
    pub(super) bypass_mpps: f64,
    pub(super) baseline_mpps: f64,
    pub(super) ratio: f64,
}

/// One side's result in one round.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub(super) struct Side {
    pub(super) packets: u64,
    pub(super) secs: f64,
    pub(super) mpps: f64,
}

impl Side {
    /// `packets` sent in `secs` seconds.
    pub(super) fn new(packets: u64, secs: f64) -> Side {
        Side {
            packets,
            secs,
            mpps: packets as f64 / secs / 1e6,
        }
    }
}

/// Runs `rounds` rounds of ours then the baseline in each memory mode and
/// returns each mode's medians; `names` name the two sides in the lines
/// `say` prints as it goes.
pub(super) fn compare(
    modes: &[MemMode],
    rounds: u32,
    names: (&str, &str),
    say: &dyn Fn(&str),
    mut ours: impl FnMut(&[String], u32) -> Result<Side>,
    mut theirs: impl FnMut(&[String], u32) -> Result<Side>,
) -> Result<Vec<ModeResult>> {
    let mut results = Vec::new();
    for (label, mem) in modes {
        let (mut o, mut t) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            for (name, run, into) in [
                (
                    names.0,
                    &mut ours as &mut dyn FnMut(&[String], u32) -> Result<Side>,
                    &mut o,
                ),
                (
                    names.1,
                    &mut theirs as &mut dyn FnMut(&[String], u32) -> Result<Side>,
                    &mut t,
                ),
            ] {
                let side = run(mem, round)?;
                say(&format!(
                    "{label}, round {}: {name:<14} {:>8.2} Mpps ({} frames in {:.2}s)",
                    round + 1,
                    side.mpps,
                    side.packets,
                    side.secs
                ));
                into.push(side);
            }
        }
        let om = median(o.iter().map(|s| s.mpps).collect());
        let tm = median(t.iter().map(|s| s.mpps).collect());
        results.push(ModeResult {
            memory: label.clone(),
            bypass: o,
            baseline: t,
            bypass_mpps: om,
            baseline_mpps: tm,
            ratio: if tm > 0.0 { om / tm } else { 0.0 },
        });
    }
    Ok(results)
}

/// Reports a comparison: with `json`, `head` (the bench's own fields) plus
/// the first mode's medians and ratio at the top level (`baseline_key`
/// names the baseline's median there), every mode, why there was no
/// hugepage run and the load averages, as one JSON line; otherwise the
/// table of [`print_modes`].
pub(super) fn report(
    json: bool,
    mut head: serde_json::Value,
    (baseline_key, names): (&str, (&str, &str)),
    results: &[ModeResult],
    rounds: u32,
    huge_why: Option<String>,
    load: (f64, f64),
) {
    if !json {
        print_modes(results, rounds, names, load);
        return;
    }
    let first = &results[0];
    let extra = serde_json::json!({
        "memory": first.memory,
        "bypass_mpps": first.bypass_mpps,
        baseline_key: first.baseline_mpps,
        "ratio": first.ratio,
        "modes": results,
        "no_hugepages_because": huge_why,
        "loadavg_before": load.0,
        "loadavg_after": load.1,
    });
    if let (Some(h), Some(e)) = (head.as_object_mut(), extra.as_object()) {
        h.extend(e.clone());
    }
    // Not `println!`: a closed stdout must not abort the bench while it
    // holds the hugepages it raised.
    crate::cli::outln!("{head}");
}

/// Prints each mode's medians and ratio, then the load average.
pub(super) fn print_modes(
    results: &[ModeResult],
    rounds: u32,
    names: (&str, &str),
    load: (f64, f64),
) {
    use crate::cli::outln;
    for r in results {
        outln!("[{}]", r.memory);
        outln!("  {:<14}: {:.2} Mpps", names.0, r.bypass_mpps);
        outln!("  {:<14}: {:.2} Mpps", names.1, r.baseline_mpps);
        outln!(
            "  ratio         : {:.2}x ({} / {}, median of {rounds} round(s))",
            r.ratio,
            names.0,
            names.1
        );
    }
    outln!(
        "load average    : {:.2} before, {:.2} after (other work on the machine skews both sides)",
        load.0,
        load.1
    );
}

pub(super) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

pub fn run(a: FwdArgs) -> Result<()> {
    if !cfg!(feature = "dpdk") {
        return Err(Error::Config(
            "bench fwd needs the DPDK backend; rebuild with `cargo build --release --features dpdk`"
                .into(),
        ));
    }
    if !a.duration.is_finite() || a.duration < 3.0 || a.rounds == 0 {
        return Err(Error::Config(
            "--duration must be at least 3 seconds (each side is measured over the whole seconds after its first) and --rounds at least 1".into(),
        ));
    }
    let (core, main) = pick_cores(a.core)?;
    let main = main.ok_or_else(|| {
        Error::Config(
            "bench fwd needs two usable cores (EAL's main lcore and the forwarding core)".into(),
        )
    })?;
    let testpmd = which(&a.testpmd).ok_or_else(|| {
        Error::Config(format!(
            "`{}` not found: install DPDK's apps (`apt-get install dpdk`) or give --testpmd PATH",
            a.testpmd
        ))
    })?;
    let (modes, _huge, huge_why) = memory_modes(&a.eal);
    let say = |l: &str| super::super::say(a.json, l);
    if let Some(why) = &huge_why {
        say(&format!("bench fwd: no hugepage run: {why}"));
    }
    say(&format!(
        "bench fwd: macswap on {} for {}s x {} round(s) per memory mode, forwarding core {core} (testpmd main lcore {main}), memory: {}",
        a.vdev,
        a.duration,
        a.rounds,
        modes.iter().map(|m| m.0.as_str()).collect::<Vec<_>>().join(", then ")
    ));
    let load_before = loadavg();
    let names = ("bypass l2fwd", "dpdk-testpmd");
    let results = compare(
        &modes,
        a.rounds,
        names,
        &say,
        |mem, round| run_bypass(&a, core, mem, round),
        |mem, round| run_testpmd(&a, &testpmd, core, main, mem, round),
    )?;
    let load_after = loadavg();
    let first = &results[0];
    let head = serde_json::json!({
        "bench": "fwd",
        "mode": "macswap",
        "vdev": a.vdev,
        "frame_bytes": 64,
        "core": core,
        "main_lcore": main,
        "duration_s": a.duration,
        "bypass": first.bypass,
        "testpmd": first.baseline,
    });
    report(
        a.json,
        head,
        ("testpmd_mpps", names),
        &results,
        a.rounds,
        huge_why,
        (load_before, load_after),
    );
    Ok(())
}

/// The 1-minute load average (0 if unknown).
pub(super) fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0.0)
}

/// True if `user` (extra EAL arguments) sets the memory mode itself.
fn user_gives_memory(user: &str) -> bool {
    user.split_whitespace().any(|w| {
        [
            "--no-huge",
            "--in-memory",
            "-m",
            "--socket-mem",
            "--huge-dir",
        ]
        .iter()
        .any(|m| w == *m || w.starts_with(&format!("{m}=")))
    })
}

#[cfg(feature = "dpdk")]
fn huge_ok() -> bool {
    bypass::port::dpdk::eal::hugepages_usable()
}

#[cfg(not(feature = "dpdk"))]
fn huge_ok() -> bool {
    false
}

pub(super) use super::proc::{wait_bounded, which};
/// Removes what a DPDK child with `--file-prefix prefix` left behind (its
/// EAL runtime directory and hugepage files).
pub(super) use super::testpmd::clean_prefix as clean_hugepage_files;

fn run_bypass(a: &FwdArgs, core: usize, mem: &[String], round: u32) -> Result<Side> {
    let prefix = format!("bpbench-{}-b{round}", std::process::id());
    let args: Vec<String> = ["l2fwd", "--mode", "macswap", "--port"]
        .iter()
        .map(|s| s.to_string())
        .chain([format!("dpdk:{}", a.vdev)])
        .collect();
    let run = run_ours(&args, core, a.duration, mem, &a.eal, &prefix)?;
    // The steady window (first to last stats tick), as testpmd's side.
    Ok(match run.steady {
        Some((packets, secs)) => Side::new(packets, secs),
        None => Side::new(run.packets, run.secs),
    })
}

/// What one run of our forwarder reported.
pub(super) struct OursRun {
    /// Frames sent over the whole run.
    pub(super) packets: u64,
    /// The whole run's seconds.
    pub(super) secs: f64,
    /// Frames dropped.
    pub(super) drops: u64,
    /// Frames sent and seconds between its first and last stats tick (a
    /// second apart): the steady part, without the start or the stop.
    pub(super) steady: Option<(u64, f64)>,
}

/// Runs this binary with `args` (a forwarding subcommand and its ports)
/// plus `--json --stats-interval 1 --cores CORE --duration SECS
/// --eal=...` (memory args `mem`, a `--file-prefix` of `prefix`, then
/// `eal`), bounded in time, and reads its JSON summary.
pub(super) fn run_ours(
    args: &[String],
    core: usize,
    duration: f64,
    mem: &[String],
    eal: &str,
    prefix: &str,
) -> Result<OursRun> {
    let what = format!("bypass {}", args.first().map(String::as_str).unwrap_or(""));
    let exe = std::env::current_exe().map_err(|e| Error::io("find the bypass binary", e))?;
    let eal = format!("{} --file-prefix={prefix} {eal}", mem.join(" "));
    let mut child = Command::new(&exe)
        .args(args)
        .args(["--json", "--stats-interval", "1"])
        .arg("--cores")
        .arg(core.to_string())
        .arg("--duration")
        .arg(duration.to_string())
        .arg(format!("--eal={eal}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::io(format!("start {}", exe.display()), e))?;
    let out_pipe = child.stdout.take();
    let err_pipe = child.stderr.take();
    let out_t = std::thread::spawn(move || read_all(out_pipe));
    let err_t = std::thread::spawn(move || read_all(err_pipe));
    let st = wait_bounded(&mut child, Duration::from_secs_f64(duration + 60.0), &what);
    clean_hugepage_files(prefix);
    let st = st?;
    let out = out_t.join().unwrap_or_default();
    let err = err_t.join().unwrap_or_default();
    if !st.success() {
        return Err(Error::Config(format!(
            "{what} failed ({st}): {}",
            err.trim()
        )));
    }
    let v: serde_json::Value = out
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .ok_or_else(|| Error::Config(format!("{what} printed no JSON summary: {out}")))?;
    let packets = v["tx_packets"].as_u64().unwrap_or(0);
    let secs = v["duration_s"].as_f64().unwrap_or(0.0);
    if packets == 0 || secs <= 0.0 {
        return Err(Error::Config(format!(
            "{what} forwarded nothing: {out}\n{err}"
        )));
    }
    let steady = v["steady_tx_packets"]
        .as_u64()
        .zip(v["steady_s"].as_f64())
        .filter(|&(n, s)| n > 0 && s > 0.0);
    Ok(OursRun {
        packets,
        secs,
        drops: v["drops"].as_u64().unwrap_or(0),
        steady,
    })
}

/// The forwarding core (`want`, or the last usable core) and another
/// usable core for a main lcore, if there is one.
pub(super) fn pick_cores(want: Option<usize>) -> Result<(usize, Option<usize>)> {
    let avail = bypass::runtime::available_cores();
    let core = match want {
        Some(c) if avail.contains(&c) => c,
        Some(c) => {
            return Err(Error::Core {
                core: c,
                why: format!("not usable by this process (usable: {avail:?})"),
            })
        }
        None => *avail
            .last()
            .ok_or_else(|| Error::Config("this process may use no CPU core".into()))?,
    };
    Ok((core, avail.iter().copied().find(|&c| c != core)))
}

/// Reads `pipe` line by line on a thread of its own: every line goes to
/// `tx` as it comes; the thread returns the lines `keep` accepts.
pub(super) fn tee_lines<R: std::io::Read + Send + 'static>(
    pipe: Option<R>,
    tx: mpsc::Sender<String>,
    keep: fn(&str) -> bool,
) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut all = String::new();
        if let Some(p) = pipe {
            for line in BufReader::new(p).lines().map_while(|l| l.ok()) {
                if keep(&line) {
                    all.push_str(&line);
                    all.push('\n');
                }
                let _ = tx.send(line);
            }
        }
        all
    })
}

/// Waits (up to a minute) for a line containing `needle` on `rx`; false if
/// `child` exits or the time runs out first.
pub(super) fn wait_for_line(rx: &mpsc::Receiver<String>, child: &mut Child, needle: &str) -> bool {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(l) if l.contains(needle) => return true,
            Ok(_) => {}
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if child.try_wait().ok().flatten().is_some() {
                    return false;
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => return false,
        }
    }
    false
}

pub(super) fn read_all<R: std::io::Read>(r: Option<R>) -> String {
    let mut s = String::new();
    if let Some(mut r) = r {
        let _ = r.read_to_string(&mut s);
    }
    s
}

fn run_testpmd(
    a: &FwdArgs,
    testpmd: &str,
    core: usize,
    main: usize,
    mem: &[String],
    round: u32,
) -> Result<Side> {
    let prefix = format!("bpbench-{}-t{round}", std::process::id());
    let mut eal: Vec<String> = vec![
        "-l".into(),
        format!("{main},{core}"),
        "--main-lcore".into(),
        main.to_string(),
        "--no-pci".into(),
        format!("--vdev={}", a.vdev),
        format!("--file-prefix={prefix}"),
    ];
    eal.extend(mem.iter().cloned());
    eal.extend(a.eal.split_whitespace().map(String::from));
    let app: Vec<String> = [
        "--forward-mode=macswap",
        "--nb-cores=1",
        "--rxq=1",
        "--txq=1",
        "--burst=32",
        "--rxd=1024",
        "--txd=1024",
        "--mbcache=256",
        "--total-num-mbufs=8191",
        "--no-mlockall",
    ]
    .map(String::from)
    .to_vec();
    let tp = super::testpmd::Testpmd::start_periodic(testpmd, &prefix, &eal, &app)?;
    std::thread::sleep(Duration::from_secs_f64(a.duration));
    let (stats, pps) = tp.stop_periodic()?;
    // Its own rate over each whole second after the first (B7: ours is
    // likewise measured between its first and last stats tick, by its own
    // clock, so neither side's start or stop counts).
    if pps.is_empty() {
        return Err(Error::Config(format!(
            "testpmd printed no rate over {} s (--duration must be at least 2)",
            a.duration
        )));
    }
    let secs = pps.len() as f64;
    let mpps = pps.iter().sum::<f64>() / secs / 1e6;
    let _ = stats;
    Ok(Side {
        packets: (mpps * 1e6 * secs) as u64,
        secs,
        mpps,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_memory_defaults() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(user_gives_memory("--no-huge -m 256"));
        assert!(user_gives_memory("--in-memory"));
        assert!(!user_gives_memory("--log-level=5"));
        let (modes, _g, _) = memory_modes("--no-huge -m 256");
        assert_eq!(modes.len(), 1);
    }
}
