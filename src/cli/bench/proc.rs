//! Process management shared by every scenario that runs a peer in
//! another process (the kernel baselines, nginx, dpdk-testpmd): finding a
//! binary, a child killed by its PID and reaped when dropped, a bounded
//! wait, a scratch directory removed when dropped, and the scheduler
//! figures of a process's threads.

use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use bypass::{Error, Result};

/// A child process killed (by its PID) and reaped when dropped.
pub struct Reaped(pub Child);

impl Reaped {
    /// The child's PID.
    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Waits for the child to exit up to `limit`; kills it (by its PID)
    /// past that and says so.
    pub fn wait_bounded(&mut self, limit: Duration, what: &str) -> Result<ExitStatus> {
        wait_bounded(&mut self.0, limit, what)
    }
}

/// Sends SIGINT to process `pid` (by its PID: DPDK programs stop their
/// ports and print their totals on it).
pub fn interrupt(pid: u32) {
    let _ = std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status();
}

/// Waits for `child` to exit up to `limit`; kills it (by its PID) past
/// that and says so.
pub fn wait_bounded(child: &mut Child, limit: Duration, what: &str) -> Result<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(st) = child
            .try_wait()
            .map_err(|e| Error::io(format!("wait for {what}"), e))?
        {
            return Ok(st);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::Config(format!(
                "{what} did not finish within {limit:?}; killed it"
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A directory removed (with its contents) when dropped.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    /// Makes `$TMPDIR/bypass-{what}-{pid}`.
    pub fn new(what: &str) -> Result<TempDir> {
        let dir = std::env::temp_dir().join(format!("bypass-{what}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(format!("mkdir {dir:?}"), e))?;
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The full path of `bin` on `PATH` (or `bin` itself if it names a file).
pub fn which(bin: &str) -> Option<String> {
    if bin.contains('/') {
        return std::path::Path::new(bin).exists().then(|| bin.to_string());
    }
    std::env::var("PATH").ok()?.split(':').find_map(|d| {
        let p = std::path::Path::new(d).join(bin);
        p.exists().then(|| p.to_string_lossy().into_owned())
    })
}

/// This executable, to run the hidden helper subcommands.
pub fn me() -> Result<std::path::PathBuf> {
    std::env::current_exe().map_err(|e| Error::io("find the bypass binary", e))
}

/// Scheduler time of threads: nanoseconds run and nanoseconds spent
/// runnable but waiting for a CPU (from `/proc/…/task/*/schedstat`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sched {
    /// Time on a CPU.
    pub run_ns: u64,
    /// Time runnable but preempted (waiting for a CPU).
    pub wait_ns: u64,
}

impl Sched {
    /// The threads of `pid` (None: this process) whose name starts with
    /// `prefix` (empty: all).
    pub fn of(pid: Option<u32>, prefix: &str) -> Sched {
        let base = match pid {
            Some(p) => format!("/proc/{p}/task"),
            None => "/proc/self/task".to_string(),
        };
        let mut out = Sched::default();
        let Ok(dir) = std::fs::read_dir(base) else {
            return out;
        };
        for e in dir.flatten() {
            let p = e.path();
            let comm = std::fs::read_to_string(p.join("comm")).unwrap_or_default();
            if !comm.starts_with(prefix) {
                continue;
            }
            let st = std::fs::read_to_string(p.join("schedstat")).unwrap_or_default();
            let mut f = st.split_whitespace().map(|v| v.parse::<u64>().unwrap_or(0));
            out.run_ns += f.next().unwrap_or(0);
            out.wait_ns += f.next().unwrap_or(0);
        }
        out
    }

    /// The share of `later - self` spent waiting for a CPU (0 when nothing
    /// ran).
    pub fn wait_share_until(&self, later: &Sched) -> f64 {
        let run = later.run_ns.saturating_sub(self.run_ns) as f64;
        let wait = later.wait_ns.saturating_sub(self.wait_ns) as f64;
        if run + wait > 0.0 {
            wait / (run + wait)
        } else {
            0.0
        }
    }
}

const NR_HUGEPAGES: &str = "/proc/sys/vm/nr_hugepages";

fn meminfo(key: &str) -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Free 2 MiB hugepages for a peer process (testpmd), raised for the
/// guard's life if there are too few. The machine's hugepages are shared:
/// the count is only ever raised, and put back exactly to the value found
/// when dropped.
pub struct HugeGuard {
    restore: Option<u64>,
}

impl HugeGuard {
    /// Makes sure `pages` hugepages are free; `None` if that cannot be
    /// done (not root, no memory), with nothing changed.
    pub fn ensure_free(pages: u64) -> Option<HugeGuard> {
        let free = meminfo("HugePages_Free:");
        if free >= pages {
            return Some(HugeGuard { restore: None });
        }
        let orig: u64 = std::fs::read_to_string(NR_HUGEPAGES)
            .ok()?
            .trim()
            .parse()
            .ok()?;
        std::fs::write(NR_HUGEPAGES, (orig + pages - free).to_string()).ok()?;
        let g = HugeGuard {
            restore: Some(orig),
        };
        // Dropping `g` restores the count if the kernel fell short.
        (meminfo("HugePages_Free:") >= pages).then_some(g)
    }
}

impl Drop for HugeGuard {
    fn drop(&mut self) {
        if let Some(orig) = self.restore {
            if std::fs::write(NR_HUGEPAGES, orig.to_string()).is_err() {
                eprintln!("could not put {NR_HUGEPAGES} back to {orig}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_share_is_the_waiting_part_of_the_interval() {
        let a = Sched {
            run_ns: 100,
            wait_ns: 10,
        };
        let b = Sched {
            run_ns: 400,
            wait_ns: 110,
        };
        assert!((a.wait_share_until(&b) - 0.25).abs() < 1e-9);
        assert_eq!(a.wait_share_until(&a), 0.0);
    }

    #[test]
    fn this_process_has_scheduler_figures() {
        // Burn a little CPU so the figure cannot be zero.
        let mut x = 0u64;
        for i in 0..1_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert!(x != 1);
        assert!(Sched::of(None, "").run_ns > 0);
    }
}
