//! `bypass bench all --out DIR`: every scenario this machine supports, one
//! after the other, each as a child process (`bypass bench NAME --json
//! --plot DIR/NAME.svg`) with a time limit, so one hung scenario cannot
//! hold up the rest and the whole run stays bounded. It leaves, in DIR:
//! `NAME.json` (the scenario's JSON), `NAME.txt` (its table), `NAME.svg`
//! (its chart, for the sweeps) and `README.md` (a Markdown summary with the
//! machine, the load on it and one table per scenario).
//!
//! A new scenario is one line in [`plan`] and, if it has a table worth
//! summarising, one arm in [`summarise`].

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::Args;

use bypass::{Error, Result};

use super::proc::{me, Reaped};
use super::tcp::report::machine;

/// `bypass bench all` flags.
#[derive(Args, Debug)]
pub struct AllArgs {
    /// Directory for the JSON, charts, tables and README.md (created).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Only these scenarios (comma-separated), in this order.
    #[arg(long, value_name = "NAME[,NAME..]", value_delimiter = ',')]
    pub only: Vec<String>,
    /// Scale every scenario's measured seconds by this factor (0.25 for a
    /// quick check; the README's figures use 1).
    #[arg(long, value_name = "F", default_value_t = 1.0)]
    pub time_scale: f64,
}

/// One scenario of the run.
struct Step {
    name: &'static str,
    args: Vec<String>,
    /// Longest it may take before it is killed.
    limit: Duration,
    /// Writes a chart with `--plot`.
    plots: bool,
}

fn step(name: &'static str, args: &[&str], limit_s: u64, plots: bool) -> Step {
    Step {
        name,
        args: args.iter().map(|s| s.to_string()).collect(),
        limit: Duration::from_secs(limit_s),
        plots,
    }
}

/// Every scenario this machine supports, with the flags of the recorded
/// run; the time limits add up to under 15 minutes.
fn plan(secs: f64) -> Vec<Step> {
    let d = format!("{secs}");
    let soak = format!("{:.0}", (60.0 * secs / 2.0).max(10.0));
    let mut v = vec![
        step("tcp-rr", &["--duration", &d], 220, true),
        step("cps", &["--duration", &d], 90, true),
        step("http", &["--duration", &d, "--connections", "64"], 90, true),
        step(
            "scale",
            &["--duration", &d, "--connections", "64"],
            60,
            true,
        ),
        step(
            "conns",
            &[
                "--duration",
                &d,
                "--connections",
                "200000",
                "--ramp-timeout",
                "60",
            ],
            120,
            true,
        ),
        step("soak", &["--duration", &soak, "--sample", "2"], 90, false),
    ];
    if bypass::port::sys::is_root() {
        #[cfg(feature = "af-xdp")]
        v.push(step("xdp", &["--duration", &d], 90, false));
        // fwd measures whole seconds after the first on each side: 3 s
        // at least.
        #[cfg(feature = "dpdk")]
        v.push(step(
            "fwd",
            &["--duration", &format!("{}", secs.max(3.0))],
            90,
            false,
        ));
    }
    v
}

/// What one step left.
struct Outcome {
    name: &'static str,
    ok: bool,
    secs: f64,
    json: Option<serde_json::Value>,
    note: String,
}

fn run_step(s: &Step, dir: &Path) -> Result<Outcome> {
    let json_path = dir.join(format!("{}.json", s.name));
    let txt_path = dir.join(format!("{}.txt", s.name));
    let out = std::fs::File::create(&json_path)
        .map_err(|e| Error::io(format!("create {json_path:?}"), e))?;
    let err = std::fs::File::create(&txt_path)
        .map_err(|e| Error::io(format!("create {txt_path:?}"), e))?;
    let mut cmd = Command::new(me()?);
    cmd.args(["bench", s.name, "--json"]).args(&s.args);
    if s.plots {
        cmd.arg("--plot").arg(dir.join(format!("{}.svg", s.name)));
    }
    let start = Instant::now();
    let child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| Error::io(format!("spawn bench {}", s.name), e))?;
    let mut child = Reaped(child);
    let (ok, note) = match child.wait_bounded(s.limit, &format!("bench {}", s.name)) {
        Ok(st) if st.success() => (true, String::new()),
        Ok(st) => (false, format!("exited with {st}")),
        Err(e) => (false, e.to_string()),
    };
    let text = std::fs::read_to_string(&json_path).unwrap_or_default();
    let json = text
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok());
    if let Some(j) = &json {
        // Keep only the JSON document in NAME.json.
        let _ = std::fs::write(&json_path, format!("{j}\n"));
    }
    Ok(Outcome {
        name: s.name,
        ok,
        secs: start.elapsed().as_secs_f64(),
        json,
        note,
    })
}

fn f0(v: &serde_json::Value) -> String {
    v.as_f64().map_or("-".into(), |x| format!("{x:.0}"))
}

fn ratio_cell(p: &serde_json::Value) -> String {
    match p["vs_best_kernel"].as_f64() {
        Some(r) => format!("{r:.2}x"),
        None => "INVALID".into(),
    }
}

/// The Markdown table of one scenario's JSON.
fn summarise(name: &str, j: &serde_json::Value, md: &mut String) {
    match name {
        "tcp-rr" | "cps" | "http" => {
            let pts = j["points"].as_array().cloned().unwrap_or_default();
            let names: Vec<String> = pts
                .first()
                .and_then(|p| p["baselines"].as_object())
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default();
            let _ = write!(md, "| connections | ours |");
            for n in &names {
                let _ = write!(md, " {n} |");
            }
            let _ = writeln!(md, " ours / best kernel | p99 ours (us) | wait ours |");
            let _ = write!(md, "|---:|---:|");
            for _ in &names {
                let _ = write!(md, "---:|");
            }
            let _ = writeln!(md, "---:|---:|---:|");
            for p in &pts {
                let _ = write!(
                    md,
                    "| {} | {} |",
                    p["connections"],
                    f0(&p["ours"]["summary"]["tps"])
                );
                for n in &names {
                    let b = &p["baselines"][n];
                    let _ = write!(
                        md,
                        " {}{} |",
                        f0(&b["summary"]["tps"]),
                        if b["errors"].as_u64().unwrap_or(0) > 0 {
                            " (errors)"
                        } else {
                            ""
                        }
                    );
                }
                let _ = writeln!(
                    md,
                    " {} | {} | {:.0}% |",
                    ratio_cell(p),
                    p["ours"]["summary"]["latency"]["p99_us"],
                    p["ours"]["cpu_wait_share"].as_f64().unwrap_or(0.0) * 100.0
                );
                if let Some(w) = p["invalid"].as_str() {
                    let _ = writeln!(md, "| | *invalid: {w}* |");
                }
            }
            if let Some(t) = j["targets"].as_array() {
                let _ = writeln!(md);
                for t in t {
                    let _ = writeln!(md, "- {}", t.as_str().unwrap_or_default());
                }
            }
        }
        "scale" => {
            let _ = writeln!(md, "| cores | tx/s | p99 (us) | errors | wait |");
            let _ = writeln!(md, "|---|---:|---:|---:|---:|");
            for r in j["rows"].as_array().cloned().unwrap_or_default() {
                let s = &r["side"];
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {:.0}% |",
                    r["layout"].as_str().unwrap_or_default(),
                    f0(&s["summary"]["tps"]),
                    s["summary"]["latency"]["p99_us"],
                    s["errors"],
                    s["cpu_wait_share"].as_f64().unwrap_or(0.0) * 100.0
                );
            }
            let _ = writeln!(
                md,
                "\nspeedup 2 cores / 1 core: {} (target >= 1.8x; the client shares the 2 cores)",
                j["speedup"]
                    .as_f64()
                    .map_or("INVALID".into(), |s| format!("{s:.2}x"))
            );
        }
        "conns" => {
            let _ = writeln!(
                md,
                "- {} connections open in {} s; {} B per connection end (kernel: {} B); {} tx/s at full table; errors {}, stalls {}",
                j["connections"],
                j["ours"]["load"]["time_to_full_s"]
                    .as_f64()
                    .map_or("-".into(), |t| format!("{t:.2}")),
                f0(&j["bytes_per_end"]),
                f0(&j["kernel_bytes_per_end"]),
                f0(&j["ours"]["load"]["tps"]),
                j["side"]["errors"],
                j["side"]["stalls"].as_array().map_or(0, |s| s.len())
            );
        }
        "soak" => {
            let _ = writeln!(
                md,
                "- {} responses/s over {} s, {} errors, {} stalls, RSS drift {} bytes",
                f0(&j["responses_per_s"]),
                f0(&j["duration_s"]),
                j["errors"],
                j["stalls"].as_array().map_or(0, |s| s.len()),
                j["rss_drift_bytes"]
            );
        }
        "xdp" => {
            let _ = writeln!(
                md,
                "| mode | bypass rx Mpps | testpmd rx Mpps | ratio | memory (ours / testpmd) |"
            );
            let _ = writeln!(md, "|---|---:|---:|---:|---|");
            for r in j["results"].as_array().cloned().unwrap_or_default() {
                let mpps =
                    |v: &serde_json::Value| v.as_f64().map_or("-".into(), |x| format!("{x:.3}"));
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {} / {} |",
                    r["mode"].as_str().unwrap_or_default(),
                    mpps(&r["bypass"]["rx_mpps"]),
                    mpps(&r["testpmd"]["rx_mpps"]),
                    r["ratio"]
                        .as_f64()
                        .map_or("-".into(), |x| format!("{x:.2}x")),
                    r["bypass"]["memory"].as_str().unwrap_or("-"),
                    r["testpmd"]["memory"].as_str().unwrap_or("-"),
                );
            }
        }
        _ => {
            let _ = writeln!(md, "See `{name}.json`.");
        }
    }
}

pub fn run(a: AllArgs) -> Result<()> {
    if !(a.time_scale.is_finite() && (0.1..=4.0).contains(&a.time_scale)) {
        return Err(Error::Config(
            "--time-scale must be between 0.1 and 4".into(),
        ));
    }
    std::fs::create_dir_all(&a.out).map_err(|e| Error::io(format!("mkdir {:?}", a.out), e))?;
    let mut steps = plan(2.0 * a.time_scale);
    if !a.only.is_empty() {
        for n in &a.only {
            if !steps.iter().any(|s| s.name == n) {
                return Err(Error::Config(format!(
                    "--only: `{n}` is not a scenario this machine can run here (one of: {})",
                    steps.iter().map(|s| s.name).collect::<Vec<_>>().join(", ")
                )));
            }
        }
        steps.retain(|s| a.only.iter().any(|n| n == s.name));
    }
    let load_before = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let started = Instant::now();
    let mut outcomes = Vec::new();
    for s in &steps {
        eprintln!(
            "bench all: {} (at most {} s) ...",
            s.name,
            s.limit.as_secs()
        );
        let o = run_step(s, &a.out)?;
        eprintln!(
            "bench all: {} {} in {:.0} s{}",
            s.name,
            if o.ok { "done" } else { "FAILED" },
            o.secs,
            if o.note.is_empty() {
                String::new()
            } else {
                format!(" ({})", o.note)
            }
        );
        outcomes.push(o);
    }
    let load_after = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut md = String::new();
    let _ = writeln!(md, "# bypass bench all\n");
    let _ = writeln!(
        md,
        "Machine: {}. Load average before: {}; after: {}. Total: {:.0} s.\n",
        machine(),
        load_before
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        load_after
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        started.elapsed().as_secs_f64()
    );
    let _ = writeln!(
        md,
        "`wait` is the share of time our threads were runnable but preempted by other processes: \
         figures taken with a high `wait` or load average measure the machine, not the code.\n"
    );
    for o in &outcomes {
        let _ = writeln!(
            md,
            "## {}\n\n{} in {:.0} s{}. Files: `{}.json`, `{}.txt`{}.\n",
            o.name,
            if o.ok { "Ran" } else { "**FAILED**" },
            o.secs,
            if o.note.is_empty() {
                String::new()
            } else {
                format!(" ({})", o.note)
            },
            o.name,
            o.name,
            if a.out.join(format!("{}.svg", o.name)).exists() {
                format!(", `{}.svg`", o.name)
            } else {
                String::new()
            }
        );
        if let Some(j) = &o.json {
            summarise(o.name, j, &mut md);
            let _ = writeln!(md);
        }
    }
    let readme = a.out.join("README.md");
    std::fs::write(&readme, &md).map_err(|e| Error::io(format!("write {readme:?}"), e))?;
    crate::cli::outln!("{md}");
    let failed: Vec<&str> = outcomes.iter().filter(|o| !o.ok).map(|o| o.name).collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "bench all: {} failed (see {}/NAME.txt)",
            failed.join(", "),
            a.out.display()
        )))
    }
}
