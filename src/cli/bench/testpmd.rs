//! `dpdk-testpmd` as a benchmark peer, started and read in one place for
//! every scenario that compares against it (`xdp`; `fwd` and `l3fwd` are
//! meant to use it too).
//!
//! [`Testpmd::start`] runs it with stdout line-buffered (through
//! `stdbuf -oL`, which execs testpmd, so the child's PID is testpmd's),
//! waits (bounded) until it forwards, and keeps reading its output on a
//! thread. [`Testpmd::stop`] presses enter, waits (bounded) for it to
//! exit and parses its "Accumulated forward statistics". Whatever happens,
//! the process is killed by its PID and its EAL runtime directory and
//! hugepage files (by `--file-prefix`) are removed when it is dropped.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bypass::{Error, Result};

use super::proc::{which, Reaped};

/// How long testpmd may take to start forwarding, and to exit.
const START_LIMIT: Duration = Duration::from_secs(60);
const EXIT_LIMIT: Duration = Duration::from_secs(30);

/// testpmd's final counters, all ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// `RX-packets`.
    pub rx: u64,
    /// `TX-packets`.
    pub tx: u64,
}

/// Reads `RX-packets`/`TX-packets` from the "Accumulated forward
/// statistics" block of testpmd's output.
pub fn parse_stats(out: &str) -> Option<Stats> {
    let acc = &out[out.find("Accumulated forward statistics")?..];
    let num = |key: &str| -> Option<u64> {
        let i = acc.find(key)? + key.len();
        acc[i..].split_whitespace().next()?.parse().ok()
    };
    Some(Stats {
        rx: num("RX-packets:")?,
        tx: num("TX-packets:")?,
    })
}

/// The `Tx-pps` of each periodic "Port statistics" block (`--stats-period
/// 1`): testpmd's own rate over each period, by its own clock. The first
/// block (which covers the start) is left out.
pub fn parse_periodic_tx_pps(out: &str) -> Vec<f64> {
    out.split("Port statistics")
        .skip(2)
        .filter_map(|block| {
            let i = block.find("Tx-pps:")? + "Tx-pps:".len();
            block[i..].split_whitespace().next()?.parse().ok()
        })
        .collect()
}

/// A running testpmd, forwarding.
pub struct Testpmd {
    child: Reaped,
    prefix: String,
    out: Option<JoinHandle<String>>,
    err: Option<JoinHandle<String>>,
}

impl Testpmd {
    /// Starts `bin` (a name on PATH or a path) with EAL arguments `eal`
    /// (which must include `--file-prefix=PREFIX` or `--file-prefix
    /// PREFIX` equal to `prefix`) and application arguments `app` (after
    /// `--`); returns once it forwards.
    pub fn start(bin: &str, prefix: &str, eal: &[String], app: &[String]) -> Result<Testpmd> {
        Self::start_until(bin, prefix, eal, app, "Press enter to exit")
    }

    /// As [`Testpmd::start`], with `--stats-period 1` added: testpmd
    /// prints its counters and rates every second instead of waiting for
    /// enter. Stop it with [`Testpmd::stop_periodic`].
    pub fn start_periodic(
        bin: &str,
        prefix: &str,
        eal: &[String],
        app: &[String],
    ) -> Result<Testpmd> {
        let mut app = app.to_vec();
        app.extend(["--stats-period".to_string(), "1".to_string()]);
        Self::start_until(bin, prefix, eal, &app, "Port statistics")
    }

    fn start_until(
        bin: &str,
        prefix: &str,
        eal: &[String],
        app: &[String],
        ready: &str,
    ) -> Result<Testpmd> {
        let path = which(bin).ok_or_else(|| {
            Error::Config(format!(
                "{bin} is not installed (Debian: `apt-get install dpdk`)"
            ))
        })?;
        let stdbuf = which("stdbuf").ok_or_else(|| {
            Error::Config(
                "`stdbuf` (coreutils) not found; it is needed to read testpmd's output as it comes"
                    .into(),
            )
        })?;
        let mut child = Command::new(stdbuf)
            .arg("-oL")
            .arg(&path)
            .args(eal)
            .arg("--")
            .args(app)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::io(format!("start {path}"), e))?;
        let (line_tx, line_rx) = mpsc::channel::<String>();
        let out = child.stdout.take();
        let err = child.stderr.take();
        let mut t = Testpmd {
            child: Reaped(child),
            prefix: prefix.to_string(),
            out: Some(std::thread::spawn(move || {
                let mut all = String::new();
                if let Some(o) = out {
                    for l in BufReader::new(o).lines().map_while(|l| l.ok()) {
                        let _ = line_tx.send(l.clone());
                        all.push_str(&l);
                        all.push('\n');
                    }
                }
                all
            })),
            err: Some(std::thread::spawn(move || {
                let mut s = String::new();
                if let Some(mut e) = err {
                    let _ = std::io::Read::read_to_string(&mut e, &mut s);
                }
                s
            })),
        };
        let end = Instant::now() + START_LIMIT;
        while Instant::now() < end {
            match line_rx.recv_timeout(Duration::from_millis(200)) {
                Ok(l) if l.contains(ready) => return Ok(t),
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Ok(Some(_)) = t.child.0.try_wait() {
                        break;
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        let (out, err) = t.output();
        let tail: Vec<&str> = out.lines().chain(err.lines()).rev().take(15).collect();
        Err(Error::Config(format!(
            "dpdk-testpmd did not start forwarding; its last lines:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )))
    }

    /// Kills it (if still running) and returns everything it printed.
    fn output(&mut self) -> (String, String) {
        let _ = self.child.0.kill();
        let _ = self.child.0.wait();
        let out = self
            .out
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        let err = self
            .err
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        (out, err)
    }

    /// `PID/task/TID` of its forwarding thread on `lcore` (for its CPU
    /// time), if found.
    pub fn worker_task(&self, lcore: usize) -> Option<String> {
        let pid = self.child.pid();
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .ok()?
            .filter_map(|e| e.ok())
            .find_map(|e| {
                let tid = e.file_name().to_string_lossy().into_owned();
                let comm = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm")).ok()?;
                let comm = comm.trim();
                (comm == format!("rte-worker-{lcore}") || comm == format!("lcore-worker-{lcore}"))
                    .then(|| format!("{pid}/task/{tid}"))
            })
    }

    /// Stops forwarding (enter), waits for the exit and returns the final
    /// counters.
    pub fn stop(mut self) -> Result<Stats> {
        if let Some(mut stdin) = self.child.0.stdin.take() {
            let _ = stdin.write_all(b"\n");
        }
        self.child.wait_bounded(EXIT_LIMIT, "dpdk-testpmd")?;
        let (out, _) = self.output();
        parse_stats(&out).ok_or_else(|| {
            Error::Config("could not read testpmd's final statistics from its output".into())
        })
    }
}

impl Testpmd {
    /// Stops a [`Testpmd::start_periodic`] run (SIGINT, by its PID), waits
    /// (bounded) for the exit, and returns the final counters and the
    /// per-second `Tx-pps` it printed.
    pub fn stop_periodic(mut self) -> Result<(Stats, Vec<f64>)> {
        super::proc::interrupt(self.child.pid());
        self.child.wait_bounded(EXIT_LIMIT, "dpdk-testpmd")?;
        let (out, _) = self.output();
        let stats = parse_stats(&out).ok_or_else(|| {
            Error::Config("could not read testpmd's final statistics from its output".into())
        })?;
        Ok((stats, parse_periodic_tx_pps(&out)))
    }
}

impl Drop for Testpmd {
    fn drop(&mut self) {
        let _ = self.output();
        clean_prefix(&self.prefix);
    }
}

/// Removes the EAL runtime directory and the hugepage map files a process
/// started with `--file-prefix prefix` left behind.
pub fn clean_prefix(prefix: &str) {
    for base in ["/var/run/dpdk", "/run/dpdk"] {
        let _ = std::fs::remove_dir_all(format!("{base}/{prefix}"));
    }
    // Where EAL puts it for a user other than root.
    #[cfg(feature = "dpdk")]
    let _ = std::fs::remove_dir_all(bypass::port::dpdk::eal::runtime_dir_for(prefix));
    let Ok(mounts) = std::fs::read_to_string("/proc/mounts") else {
        return;
    };
    for dir in mounts.lines().filter_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.get(2) == Some(&"hugetlbfs")).then(|| f[1].to_string())
    }) {
        if let Ok(rd) = std::fs::read_dir(&dir) {
            for e in rd.flatten() {
                if e.file_name()
                    .to_string_lossy()
                    .starts_with(&format!("{prefix}map_"))
                {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_periodic_rates_after_the_first_block() {
        let block = |pps: u64| {
            format!(
                "Port statistics ====\n  TX-packets: 9 TX-errors: 0\n  Throughput (since last show)\n  Rx-pps: {pps} Rx-bps: 0\n  Tx-pps: {pps} Tx-bps: 0\n"
            )
        };
        let out = format!(
            "start\n{}{}{}",
            block(0),
            block(25_000_000),
            block(24_000_000)
        );
        assert_eq!(parse_periodic_tx_pps(&out), vec![25e6, 24e6]);
        assert!(parse_periodic_tx_pps("no blocks").is_empty());
    }

    #[test]
    fn reads_the_accumulated_statistics() {
        let out = "  ---- Forward statistics for port 0 ----\n  RX-packets: 3 RX-dropped: 0\n\
                   +++ Accumulated forward statistics for all ports+++\n  \
                   RX-packets: 1234       RX-dropped: 0             RX-total: 1234\n  \
                   TX-packets: 1200       TX-dropped: 34            TX-total: 1234\n";
        assert_eq!(parse_stats(out), Some(Stats { rx: 1234, tx: 1200 }));
        assert_eq!(parse_stats("nothing"), None);
        assert_eq!(
            parse_stats("Accumulated forward statistics\n RX-packets: x"),
            None
        );
    }
}
