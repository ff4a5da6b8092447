//! bypass's side of `bypass bench lossy`: `bypass echo` and `bypass
//! loadgen` started as child processes (this same executable) on TAPs
//! that live in the router namespace.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddrV4;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bypass::app::loadgen::LoadSummary;
use bypass::runtime::Stop;
use bypass::{Error, Result};

use super::kernel;
use super::topo::TapSlot;

/// One bypass configuration: a label (the column) and extra arguments for
/// `bypass echo` and `bypass loadgen` (flags both accept, e.g. `--rx-buf`,
/// `--cores`, `--tcp ENGINE`). One more flag is the bench's own:
/// `--tap OPTS` appends options to the TAP port's spec (e.g. `--tap
/// vnet,tso`: virtio-net headers and TSO).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BypassConfig {
    /// Column name.
    pub label: String,
    /// Extra arguments, split on whitespace.
    pub args: Vec<String>,
    /// Options appended to the TAP port's spec (`--tap OPTS`).
    pub tap: Option<String>,
}

impl BypassConfig {
    /// From `NAME=ARGS` (ARGS may be empty).
    pub fn parse(s: &str) -> Result<BypassConfig> {
        let (label, args) = s.split_once('=').unwrap_or((s, ""));
        BypassConfig::new(label, args)
    }

    /// From a label and an argument string.
    pub fn new(label: &str, args: &str) -> Result<BypassConfig> {
        let label = label.trim();
        if label.is_empty() || label.eq_ignore_ascii_case("kernel") {
            return Err(Error::Config(format!(
                "a bypass configuration needs a name other than `kernel` (NAME=ARGS), got `{label}`"
            )));
        }
        let mut args: Vec<String> = args.split_whitespace().map(String::from).collect();
        let tap = match args.iter().position(|a| a == "--tap") {
            Some(i) if i + 1 < args.len() => {
                let opts = args.remove(i + 1);
                args.remove(i);
                Some(opts)
            }
            Some(_) => {
                return Err(Error::Config(format!(
                    "bypass configuration `{label}`: --tap needs the TAP options, e.g. `--tap vnet,tso`"
                )))
            }
            None => None,
        };
        Ok(BypassConfig {
            label: label.to_string(),
            args,
            tap,
        })
    }
}

/// A child process with the last lines of its stderr; killed (by its PID)
/// and reaped on drop.
pub struct Proc {
    what: String,
    child: Child,
    tail: Arc<Mutex<VecDeque<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

/// Lines of stderr kept for error messages and parsing.
const TAIL: usize = 4096;

impl Proc {
    fn spawn(what: &str, cmd: &mut Command) -> Result<Proc> {
        let mut child = cmd
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::io(format!("start {what}"), e))?;
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let reader = child.stderr.take().map(|err| {
            let t = tail.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(err).lines().map_while(|l| l.ok()) {
                    if let Ok(mut q) = t.lock() {
                        if q.len() == TAIL {
                            q.pop_front();
                        }
                        q.push_back(line);
                    }
                }
            })
        });
        Ok(Proc {
            what: what.to_string(),
            child,
            tail,
            reader,
        })
    }

    /// Stderr lines so far.
    fn lines(&self) -> Vec<String> {
        self.tail
            .lock()
            .map(|q| q.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// What it said last: its last `error` line, else its last three
    /// non-empty lines of stderr, on one line.
    fn last_words(&self) -> String {
        let lines: Vec<String> = self
            .lines()
            .into_iter()
            .filter(|l| !l.trim().is_empty())
            .collect();
        if let Some(e) = lines.iter().rev().find(|l| l.contains("error")) {
            return e.clone();
        }
        lines[lines.len().saturating_sub(3)..].join(" | ")
    }

    /// The error to give if it ended by itself: its exit and last words.
    pub fn died(&mut self) -> Option<Error> {
        match self.child.try_wait() {
            Ok(Some(st)) => {
                if let Some(r) = self.reader.take() {
                    let _ = r.join();
                }
                Some(Error::Config(format!(
                    "{} exited ({st}): {}",
                    self.what,
                    self.last_words()
                )))
            }
            _ => None,
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

/// Stops `bypass echo` as Ctrl-C would and returns its JSON summary (the
/// stack's and the bypass engine's counters over its whole run), if it
/// printed one within 5 s.
pub fn stop_echo(mut p: Proc) -> Option<serde_json::Value> {
    crate::cli::bench::proc::interrupt(p.child.id());
    crate::cli::bench::proc::wait_bounded(&mut p.child, Duration::from_secs(5), &p.what).ok()?;
    let mut text = String::new();
    p.child.stdout.take()?.read_to_string(&mut text).ok()?;
    text.lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
}

fn me() -> Result<std::path::PathBuf> {
    std::env::current_exe().map_err(|e| Error::io("find this executable", e))
}

/// `bypass SUB` on the TAP of `slot` (in namespace `router`) with its
/// address and gateway, and the TAP options of `cfg`.
fn command(sub: &str, router: &str, slot: &TapSlot, cfg: &BypassConfig) -> Result<Command> {
    let mut cmd = Command::new(me()?);
    let extra = cfg
        .tap
        .as_deref()
        .map(|o| format!(",{o}"))
        .unwrap_or_default();
    cmd.arg(sub)
        .args([
            "--port",
            &format!("tap:{},netns={router},mac={}{extra}", slot.name, slot.mac),
        ])
        .args(["--ip", &format!("{}/24", slot.ip)])
        .args(["--gateway", &slot.gw.to_string()]);
    Ok(cmd)
}

/// Starts `bypass echo` on `slot` and waits until a kernel client in
/// `client_ns` gets a connection through the router.
pub fn start_echo(
    router: &str,
    client_ns: &str,
    slot: &TapSlot,
    cfg: &BypassConfig,
    port: u16,
    abort: &Stop,
) -> Result<Proc> {
    let mut cmd = command("echo", router, slot, cfg)?;
    cmd.args(["--listen", &port.to_string()])
        .args(["--stats-interval", "0", "--json"])
        .args(&cfg.args)
        .stdout(Stdio::piped());
    let mut p = Proc::spawn(&format!("bypass echo ({})", cfg.label), &mut cmd)?;
    let target = SocketAddrV4::new(slot.ip, port);
    let until = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(e) = p.died() {
            return Err(e);
        }
        if abort.is_set() {
            return Err(Error::Config("interrupted".into()));
        }
        match kernel::connect_in(client_ns, target, Duration::from_millis(500)) {
            Ok(_) => return Ok(p),
            Err(e) if Instant::now() >= until => {
                return Err(Error::Config(format!(
                    "bypass echo ({}) did not answer on {target} within 15 s: {e}",
                    cfg.label
                )))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// What a `bypass loadgen` rr run measured.
#[derive(Debug, Clone)]
pub struct LoadRun {
    /// Its JSON summary.
    pub summary: LoadSummary,
    /// Longest run of live-table intervals without a transaction (and,
    /// with one connection, at least the slowest transaction).
    pub stall: Duration,
}

/// Live-table interval of the loadgen (the stall detector's resolution).
const LIVE: f64 = 0.1;

/// Runs `bypass loadgen --mode rr` on `slot` against `target`.
#[allow(clippy::too_many_arguments)]
pub fn loadgen(
    router: &str,
    slot: &TapSlot,
    cfg: &BypassConfig,
    target: SocketAddrV4,
    conns: usize,
    size: usize,
    secs: f64,
    abort: &Stop,
) -> Result<LoadRun> {
    let mut cmd = command("loadgen", router, slot, cfg)?;
    cmd.args(["--target", &target.to_string()])
        .args(["--mode", "rr"])
        .args(["--connections", &conns.to_string()])
        .args(["--size", &size.to_string()])
        .args(["--duration", &secs.to_string()])
        .args(["--stats-interval", &LIVE.to_string(), "--json"])
        .args(&cfg.args)
        .stdout(Stdio::piped());
    let what = format!("bypass loadgen ({})", cfg.label);
    let mut p = Proc::spawn(&what, &mut cmd)?;
    let mut out = p.child.stdout.take();
    let until = Instant::now() + Duration::from_secs_f64(secs + 20.0);
    let status = loop {
        match p.child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if abort.is_set() => return Err(Error::Config("interrupted".into())),
            Ok(None) if Instant::now() >= until => {
                return Err(Error::Config(format!(
                    "{what} did not finish within {:.0} s (killed)",
                    secs + 20.0
                )))
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(Error::io(format!("wait for {what}"), e)),
        }
    };
    if let Some(r) = p.reader.take() {
        let _ = r.join();
    }
    let mut text = String::new();
    if let Some(o) = out.as_mut() {
        let _ = o.read_to_string(&mut text);
    }
    let last: Option<serde_json::Value> = text
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok());
    // A loadgen that stalled exits with an error after its summary; here
    // the stall is a figure, judged by --max-stall-ms like every other.
    let stalled = last
        .as_ref()
        .and_then(|v| v["stalls"].as_array())
        .is_some_and(|s| !s.is_empty());
    if !status.success() && !stalled {
        return Err(Error::Config(format!(
            "{what} failed ({status}): {}",
            p.last_words()
        )));
    }
    let lines = p.lines();
    let summary: LoadSummary = last
        .and_then(|v| serde_json::from_value(v).ok())
        .ok_or_else(|| Error::Config(format!("{what} printed no summary: `{}`", text.trim())))?;
    let idle = longest_idle(&lines);
    // With one connection the slowest transaction is a gap without
    // progress too (measured to the microsecond); with more, others may
    // have progressed meanwhile.
    let mut stall = Duration::from_secs_f64(idle as f64 * LIVE);
    if conns == 1 {
        stall = stall.max(Duration::from_micros(summary.latency.max_us));
    }
    Ok(LoadRun { summary, stall })
}

/// The longest run of live lines showing `tx/s 0`, after the first
/// transaction (the ramp is not a stall).
fn longest_idle(lines: &[String]) -> usize {
    let (mut run, mut best, mut started) = (0, 0, false);
    for l in lines {
        let Some(rate) = l
            .split_once("tx/s")
            .and_then(|(_, r)| r.split_whitespace().next())
            .and_then(|v| v.parse::<f64>().ok())
        else {
            continue;
        };
        if rate > 0.0 {
            started = true;
            run = 0;
        } else if started {
            run += 1;
            best = best.max(run);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_parse() {
        let c = BypassConfig::parse("big=--rx-buf 262144  --tx-buf 262144").unwrap();
        assert_eq!(c.label, "big");
        assert_eq!(c.args, ["--rx-buf", "262144", "--tx-buf", "262144"]);
        assert_eq!(BypassConfig::parse("plain").unwrap().args.len(), 0);
        assert!(BypassConfig::parse("=--x").is_err());
        assert!(BypassConfig::parse("kernel=").is_err());
        // --tap OPTS goes to the port's spec, not to the command.
        let t = BypassConfig::parse("tso=--tcp bypass --tap vnet,tso").unwrap();
        assert_eq!(t.args, ["--tcp", "bypass"]);
        assert_eq!(t.tap.as_deref(), Some("vnet,tso"));
        assert_eq!(c.tap, None);
        assert!(BypassConfig::parse("x=--tcp bypass --tap").is_err());
    }

    #[test]
    fn idle_runs_after_the_first_transaction() {
        let l = |r: &str| format!("    1s  open        1 conn/s        0  tx/s {r}  failed      0");
        let lines: Vec<String> = ["0", "0", "100", "5", "0", "0", "0", "7", "0"]
            .iter()
            .map(|r| l(r))
            .chain(["not a stats line".to_string()])
            .collect();
        assert_eq!(longest_idle(&lines), 3);
        assert_eq!(longest_idle(&[]), 0);
    }
}
