//! Helpers of the DPDK integration tests (`tests/dpdk_*.rs`).
//!
//! EAL starts once per process, so every DPDK scenario runs in a child
//! process: a parent test re-runs this test binary with `--exact NAME
//! --ignored`, where NAME is an `#[ignore]`d test holding the scenario, and
//! passes the EAL arguments in `BYPASS_DPDK_EAL` (with a unique
//! `--file-prefix`). The parent runs each scenario without hugepages
//! (`--no-huge`) and, as root, with real hugepages that it reserves and
//! releases around the child ([`HugePages`]).
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

const ENV: &str = "BYPASS_DPDK_EAL";

/// How the child's EAL gets its memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mem {
    /// `--no-huge -m 256`.
    NoHuge,
    /// 2 MiB hugepages reserved for the run.
    Huge,
}

/// Serialises the hugepage runs of one test binary (they share the
/// reservation in /proc/sys/vm/nr_hugepages).
static HUGE_LOCK: Mutex<()> = Mutex::new(());

/// Runs the `#[ignore]`d scenario test `child` of this binary in a child
/// process with EAL memory `mem`; panics with its output if it fails or
/// did not run. A hugepage variant that cannot reserve hugepages fails with
/// the reason: it never passes without running.
pub fn run_child(child: &str, mem: Mem) {
    // Unique per process, scenario and memory mode (the two modes of one
    // scenario run at the same time).
    let mode = match mem {
        Mem::NoHuge => "nh",
        Mem::Huge => "hp",
    };
    let prefix = format!(
        "bpt-{}-{mode}-{}",
        std::process::id(),
        child.replace('_', "")
    );
    let prefix: String = prefix.chars().take(40).collect();
    let _lock;
    let _huge;
    let mem_args = match mem {
        Mem::NoHuge => "--no-huge -m 256 --no-shconf".to_string(),
        Mem::Huge => {
            _lock = HUGE_LOCK.lock().unwrap_or_else(|e| e.into_inner());
            match HugePages::reserve(128) {
                Ok(h) => {
                    let a = format!("--huge-dir {} -m 128 --huge-unlink", h.dir.display());
                    _huge = h;
                    a
                }
                Err(why) => panic!(
                    "{child} with hugepages cannot run: {why}; free some memory or \
                     reserve hugepages first (`sudo scripts/hugepages.sh reserve 256`)"
                ),
            }
        }
    };
    let eal = format!("{mem_args} --file-prefix={prefix} --log-level=5");
    let exe = std::env::current_exe().expect("current_exe");
    let out = Command::new(&exe)
        .args([
            child,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ENV, &eal)
        .output()
        .expect("spawn the test binary");
    let _ = std::fs::remove_dir_all(bypass::port::dpdk::eal::runtime_dir_for(&prefix));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{child} ({mem:?}) failed:\n{text}");
    assert!(
        text.contains("1 passed"),
        "{child} ({mem:?}) did not run:\n{text}"
    );
}

/// The EAL arguments for a scenario run by [`run_child`], with `vdevs`
/// added. Panics when the test was not started by its parent.
pub fn child_eal(vdevs: &[&str]) -> Vec<String> {
    let base = std::env::var(ENV).unwrap_or_else(|_| {
        panic!("this scenario runs in a child process started by its parent test ({ENV} unset)")
    });
    let mut a = bypass::port::dpdk::EalArgs::new(&base).cpus(&bypass::runtime::available_cores());
    for v in vdevs {
        a = a.device(v);
    }
    a.build()
}

/// True in a hugepage run.
pub fn child_uses_hugepages() -> bool {
    std::env::var(ENV).is_ok_and(|e| !e.contains("--no-huge"))
}

/// Hugepages in use on the machine (total - free).
pub fn hugepages_in_use() -> u64 {
    meminfo("HugePages_Total:").saturating_sub(meminfo("HugePages_Free:"))
}

/// 2 MiB hugepages reserved for a test and a private hugetlbfs mount;
/// both released on drop (`nr_hugepages` goes back to what it was).
pub struct HugePages {
    orig: u64,
    pub dir: PathBuf,
}

const NR: &str = "/proc/sys/vm/nr_hugepages";

fn meminfo(key: &str) -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

impl HugePages {
    /// Reserves `pages` more pages and mounts hugetlbfs for them.
    pub fn reserve(pages: u64) -> Result<HugePages, String> {
        let orig: u64 = std::fs::read_to_string(NR)
            .map_err(|e| format!("read {NR}: {e}"))?
            .trim()
            .parse()
            .map_err(|e| format!("parse {NR}: {e}"))?;
        let free_before = meminfo("HugePages_Free:");
        std::fs::write(NR, (orig + pages).to_string()).map_err(|e| format!("write {NR}: {e}"))?;
        let dir = std::env::temp_dir().join(format!(
            "bypass-huge-{}-{}",
            std::process::id(),
            bypass::port::sys::random_u64() % 1_000_000
        ));
        let h = HugePages { orig, dir };
        if meminfo("HugePages_Free:") < free_before + pages {
            return Err(format!(
                "the kernel could not reserve {pages} hugepages (memory too fragmented?)"
            ));
        }
        std::fs::create_dir_all(&h.dir).map_err(|e| format!("mkdir: {e}"))?;
        let st = Command::new("mount")
            .args(["-t", "hugetlbfs", "-o", "pagesize=2M", "nodev"])
            .arg(&h.dir)
            .status()
            .map_err(|e| format!("mount: {e}"))?;
        if !st.success() {
            return Err("mount -t hugetlbfs failed".into());
        }
        Ok(h)
    }
}

impl Drop for HugePages {
    fn drop(&mut self) {
        if let Ok(rd) = std::fs::read_dir(&self.dir) {
            for e in rd.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        }
        let _ = Command::new("umount").arg(&self.dir).status();
        let _ = std::fs::remove_dir(&self.dir);
        if std::fs::write(NR, self.orig.to_string()).is_err() {
            eprintln!("could not restore {NR} to {}", self.orig);
        }
    }
}
