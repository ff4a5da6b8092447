//! The DPDK Environment Abstraction Layer: initialised once per process.
//!
//! [`init`] runs `rte_eal_init` with the arguments it is given, the first
//! time it is called; later calls return the first call's outcome (EAL
//! cannot be initialised twice in one process, nor retried after a failure).
//! [`EalArgs`] builds those arguments from the user's own (`--eal "..."`)
//! and the devices the run names, adding sensible defaults for whatever the
//! user left out.
//!
//! EAL pins the calling thread to its main lcore; [`init`] restores the
//! thread's previous CPU affinity afterwards, because `bypass` pins its own
//! worker threads (and the main thread only prints stats).
//!
//! Threads EAL did not create have no lcore id, and so no per-lcore mempool
//! cache: every mbuf alloc and free would hit the shared ring. The queues
//! therefore call [`register_thread`] on their first use on a thread; it
//! gives the thread an lcore id (`rte_thread_register`) for as long as the
//! thread lives.
#![allow(unsafe_code)]

use std::cell::Cell;
use std::ffi::{CStr, CString};
use std::sync::OnceLock;

use bypass_dpdk_sys as sys;

use crate::error::{Error, Result};

static EAL: OnceLock<std::result::Result<Vec<String>, String>> = OnceLock::new();

/// The text of a DPDK error number (`rte_strerror`), e.g. "No such device".
pub fn strerror(errno: i32) -> String {
    // SAFETY: rte_strerror returns a pointer to a static or thread-local
    // NUL-terminated string for any errno value; we copy it at once.
    unsafe { CStr::from_ptr(sys::rte_strerror(errno)) }
        .to_string_lossy()
        .into_owned()
}

/// A DPDK error as the crate's error type.
#[cold]
pub fn err(what: impl std::fmt::Display, errno: i32) -> Error {
    Error::Backend {
        backend: "dpdk",
        msg: format!("{what}: {} (errno {errno})", strerror(errno)),
    }
}

/// `Ok(ret)` for `ret >= 0`, else the error of a DPDK call that returns
/// `-errno` (the ethdev API).
#[inline]
pub fn check(ret: i32, what: impl std::fmt::Display) -> Result<i32> {
    if ret < 0 {
        Err(err(what, -ret))
    } else {
        Ok(ret)
    }
}

/// The error of a DPDK call that reported failure through `rte_errno`.
#[cold]
pub fn last_err(what: impl std::fmt::Display) -> Error {
    // SAFETY: reads this thread's rte_errno; no preconditions.
    err(what, unsafe { sys::rte_errno() })
}

/// True once EAL is up in this process.
pub fn is_initialized() -> bool {
    matches!(EAL.get(), Some(Ok(_)))
}

/// The arguments EAL was initialised with, if it was.
pub fn init_args() -> Option<&'static [String]> {
    match EAL.get() {
        Some(Ok(a)) => Some(a),
        _ => None,
    }
}

/// Initialises EAL with `args` (`args[0]` is the program name), once per
/// process. A second call, whatever its arguments, returns the first one's
/// outcome: pass every device the process will use to the first call, or
/// open the others later by hot-plug (see [`super::DpdkPort::open`]).
pub fn init(args: &[String]) -> Result<()> {
    let res = EAL.get_or_init(|| init_once(args));
    match res {
        Ok(_) => Ok(()),
        Err(msg) => Err(Error::Backend {
            backend: "dpdk",
            msg: msg.clone(),
        }),
    }
}

fn init_once(args: &[String]) -> std::result::Result<Vec<String>, String> {
    let cargs: Vec<CString> = args
        .iter()
        .map(|a| CString::new(a.as_str()))
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| "an EAL argument contains a NUL byte".to_string())?;
    // EAL keeps pointers into argv (and may permute it): the strings and the
    // array live for the rest of the process, on purpose (once per process).
    let cargs: &'static [CString] = Vec::leak(cargs);
    let argv: &'static mut [*mut libc::c_char] = Vec::leak(
        cargs
            .iter()
            .map(|c| c.as_ptr() as *mut libc::c_char)
            .chain(std::iter::once(std::ptr::null_mut()))
            .collect(),
    );
    let saved = get_affinity();
    // SAFETY: argv holds args.len() valid NUL-terminated strings followed by
    // a NULL, all 'static; rte_eal_init runs at most once (OnceLock).
    let ret = unsafe { sys::rte_eal_init(args.len() as i32, argv.as_mut_ptr()) };
    if let Some(set) = saved {
        restore_affinity(&set);
    }
    if ret < 0 {
        // SAFETY: reads this thread's rte_errno, set by rte_eal_init.
        let errno = unsafe { sys::rte_errno() };
        let hint = match errno {
            libc::EACCES | libc::EPERM => {
                " (DPDK needs root, or CAP_SYS_ADMIN/CAP_IPC_LOCK and access to hugepages and devices)"
            }
            libc::ENOMEM => {
                " (not enough memory: reserve hugepages with scripts/hugepages.sh, or use --eal \"--no-huge -m 512\")"
            }
            libc::EALREADY => " (EAL was already initialised in this process)",
            _ => " (run with the EAL messages above in mind; `--eal \"--log-level=8\"` shows more)",
        };
        return Err(format!(
            "EAL initialisation failed: {} (errno {errno}){hint}; arguments: {}",
            strerror(errno),
            args.join(" ")
        ));
    }
    Ok(args.to_vec())
}

fn get_affinity() -> Option<libc::cpu_set_t> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity writes at most
    // size_of::<cpu_set_t>() bytes into it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        (libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) == 0)
            .then_some(set)
    }
}

fn restore_affinity(set: &libc::cpu_set_t) {
    // SAFETY: set is a valid cpu_set_t read by sched_getaffinity.
    let r = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), set) };
    if r != 0 {
        tracing::warn!("could not restore the main thread's CPU affinity after EAL init");
    }
}

struct Registration;

impl Drop for Registration {
    fn drop(&mut self) {
        // SAFETY: runs at the exit of a thread that rte_thread_register
        // accepted; gives its lcore id back.
        unsafe { sys::rte_thread_unregister() };
    }
}

thread_local! {
    static CHECKED: Cell<bool> = const { Cell::new(false) };
    static REGISTRATION: std::cell::RefCell<Option<Registration>> = const { std::cell::RefCell::new(None) };
}

/// Gives the calling thread an EAL lcore id (and so a mempool cache) if it
/// has none; cheap after the first call on a thread. Threads EAL made
/// already have one. If every lcore id is taken, the thread works without a
/// cache (slower, still correct) and one warning is printed.
#[inline]
pub fn register_thread() {
    if CHECKED.with(|c| c.get()) {
        return;
    }
    CHECKED.with(|c| c.set(true));
    register_slow();
}

#[cold]
fn register_slow() {
    if !is_initialized() {
        return;
    }
    // SAFETY: EAL is initialised; rte_lcore_id reads a thread-local.
    if unsafe { sys::rte_lcore_id() } != sys::LCORE_ID_ANY {
        return; // an EAL thread, or registered already
    }
    // SAFETY: EAL is initialised; registers the calling thread.
    if unsafe { sys::rte_thread_register() } == 0 {
        REGISTRATION.with(|r| *r.borrow_mut() = Some(Registration));
    } else {
        tracing::warn!(
            "{}; this thread runs without a mempool cache",
            last_err("rte_thread_register")
        );
    }
}

/// Builds EAL's command line from the user's arguments and the devices of
/// the run, filling in what the user left out:
/// - `--lcores=0@(CPUS)`: EAL's main lcore (id 0) may run on every CPU the
///   process may use. EAL pins nothing of ours (bypass pins its own worker
///   threads), and its control threads (interrupts, telemetry) may run on
///   any of those CPUs, instead of being pinned to the CPUs outside the
///   lcore list, which are the forwarding cores;
/// - memory: `--in-memory` when hugepages are reserved and mounted, else
///   `--no-huge -m 512` (with one warning);
/// - `--file-prefix=bypass-PID` so that runs never share state ([`cleanup`]
///   removes its runtime directory at exit);
/// - each device: a PCI address is allow-listed with `-a`, anything else is
///   a virtual device passed as `--vdev`; with no PCI device, `--no-pci`
///   (so that EAL never grabs a NIC nobody asked for);
/// - `--log-level=5` (warnings) unless the user set one.
#[derive(Debug, Clone)]
pub struct EalArgs {
    user: Vec<String>,
    devices: Vec<String>,
    cpus: Vec<usize>,
}

impl EalArgs {
    /// `user`: the `--eal` string, split on whitespace (no quoting).
    pub fn new(user: &str) -> EalArgs {
        EalArgs {
            user: user.split_whitespace().map(String::from).collect(),
            devices: Vec::new(),
            cpus: Vec::new(),
        }
    }

    /// Appends arguments (e.g. the part of the command line before `--`).
    pub fn extend<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> EalArgs {
        self.user.extend(args.into_iter().map(Into::into));
        self
    }

    /// Adds a device (PCI address or vdev string).
    pub fn device(mut self, devargs: &str) -> EalArgs {
        self.devices.push(devargs.to_string());
        self
    }

    /// The CPUs EAL's main lcore and control threads may use when the user
    /// gives no `-l`/`-c`/`--lcores` (default: CPU 0).
    pub fn cpus(mut self, cpus: &[usize]) -> EalArgs {
        self.cpus = cpus.to_vec();
        self
    }

    fn has(&self, names: &[&str]) -> bool {
        self.user.iter().any(|a| {
            names
                .iter()
                .any(|n| a == n || (n.starts_with("--") && a.starts_with(&format!("{n}="))))
        })
    }

    /// The full argument vector, program name first.
    pub fn build(&self) -> Vec<String> {
        let mut v = vec!["bypass".to_string()];
        v.extend(self.user.iter().cloned());
        if !self.has(&["-l", "-c", "--lcores"]) {
            let cpus = if self.cpus.is_empty() {
                "0".to_string()
            } else {
                let c: Vec<String> = self.cpus.iter().map(|c| c.to_string()).collect();
                c.join(",")
            };
            v.push(format!("--lcores=0@({cpus})"));
        }
        let mem_given = self.has(&[
            "--no-huge",
            "--in-memory",
            "-m",
            "--socket-mem",
            "--huge-dir",
        ]);
        let no_huge = self.has(&["--no-huge"]) || (!mem_given && !hugepages_usable());
        if !mem_given {
            if no_huge {
                tracing::warn!(
                    "no hugepages reserved and mounted: DPDK runs with --no-huge -m 512 (slower; see docs/dpdk.md)"
                );
                v.extend(["--no-huge".into(), "-m".into(), "512".into()]);
            } else {
                v.push("--in-memory".into());
            }
        }
        if !self.has(&["--file-prefix"]) {
            v.push(format!("--file-prefix={}", own_prefix()));
        }
        if no_huge && !self.has(&["--no-shconf"]) {
            v.push("--no-shconf".into());
        }
        let mut pci = false;
        for d in &self.devices {
            if is_pci_address(d.split(',').next().unwrap_or(d)) {
                pci = true;
                v.extend(["-a".into(), d.clone()]);
            } else {
                v.push(format!("--vdev={d}"));
            }
        }
        if !pci && !self.has(&["-a", "--allow", "-b", "--block", "--no-pci"]) {
            v.push("--no-pci".into());
        }
        if !self.has(&["--log-level"]) {
            v.push("--log-level=5".into());
        }
        v
    }
}

/// Splits a DPDK-style command line `PROG [EAL args] -- [app args]` into
/// the EAL arguments (without the program name: feed them to
/// [`EalArgs::extend`]) and the application's. Without a `--`, everything
/// after the program name belongs to the application.
pub fn split_eal_args<I, S>(args: I) -> (Vec<String>, Vec<String>)
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let rest: Vec<String> = args.into_iter().skip(1).map(Into::into).collect();
    match rest.iter().position(|a| a == "--") {
        Some(i) => (rest[..i].to_vec(), rest[i + 1..].to_vec()),
        None => (Vec::new(), rest),
    }
}

/// The file prefix bypass gives EAL when the user gives none.
fn own_prefix() -> String {
    format!("bypass-{}", std::process::id())
}

/// The directory EAL keeps its runtime files in for `--file-prefix
/// prefix` (`/var/run/dpdk/PREFIX` as root, under `$XDG_RUNTIME_DIR` or
/// `/tmp` otherwise). EAL leaves it behind when the process exits.
pub fn runtime_dir_for(prefix: &str) -> std::path::PathBuf {
    let base = if crate::port::sys::is_root() {
        "/var/run".to_string()
    } else {
        std::env::var("XDG_RUNTIME_DIR").unwrap_or_else(|_| "/tmp".into())
    };
    std::path::Path::new(&base).join("dpdk").join(prefix)
}

/// Releases EAL's resources at the end of the process (`rte_eal_cleanup`)
/// and removes EAL's runtime directory when bypass chose its file prefix.
/// Call it once every port is dropped; no DPDK call may follow it.
pub fn cleanup() {
    static DONE: OnceLock<()> = OnceLock::new();
    let Some(args) = init_args() else {
        return;
    };
    if DONE.set(()).is_err() {
        return;
    }
    // SAFETY: EAL is initialised, this runs once, and the caller dropped
    // every port (no DPDK object is used after this).
    let r = unsafe { sys::rte_eal_cleanup() };
    if r < 0 {
        tracing::warn!("{}", err("rte_eal_cleanup", -r));
    }
    let ours = format!("--file-prefix={}", own_prefix());
    if args.contains(&ours) {
        let _ = std::fs::remove_dir_all(runtime_dir_for(&own_prefix()));
    }
}

/// True for `0000:01:00.0` or `01:00.0`.
pub fn is_pci_address(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    let hex = |p: &str, n: usize| p.len() == n && p.chars().all(|c| c.is_ascii_hexdigit());
    let (bus, devfn) = match parts.as_slice() {
        [dom, bus, devfn] if hex(dom, 4) => (*bus, *devfn),
        [bus, devfn] => (*bus, *devfn),
        _ => return false,
    };
    let Some((dev, func)) = devfn.split_once('.') else {
        return false;
    };
    hex(bus, 2) && hex(dev, 2) && func.len() == 1 && func.chars().all(|c| c.is_ascii_digit())
}

/// True if 2 MiB (or other) hugepages are free and hugetlbfs is mounted.
pub fn hugepages_usable() -> bool {
    let free = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("HugePages_Free:"))
                .and_then(|l| {
                    l.split_whitespace()
                        .nth(1)
                        .and_then(|n| n.parse::<u64>().ok())
                })
        })
        .unwrap_or(0);
    let mounted = std::fs::read_to_string("/proc/mounts")
        .map(|m| {
            m.lines()
                .any(|l| l.split_whitespace().nth(2) == Some("hugetlbfs"))
        })
        .unwrap_or(false);
    free > 0 && mounted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eal_and_app_args_split_at_the_first_double_dash() {
        let (e, a) = split_eal_args(["prog", "-l", "0", "--no-huge", "--", "-p", "--", "x"]);
        assert_eq!(e, ["-l", "0", "--no-huge"]);
        let built = EalArgs::new("").extend(e).build();
        assert_eq!(&built[..4], ["bypass", "-l", "0", "--no-huge"]);
        assert_eq!(a, ["-p", "--", "x"]);
        let (e, a) = split_eal_args(["prog", "-p", "1"]);
        assert!(e.is_empty());
        assert_eq!(a, ["-p", "1"]);
    }

    #[test]
    fn pci_addresses() {
        assert!(is_pci_address("0000:01:00.0"));
        assert!(is_pci_address("af:00.1"));
        assert!(!is_pci_address("net_ring0"));
        assert!(!is_pci_address("net_tap0,iface=x"));
        assert!(!is_pci_address("01:00"));
    }

    #[test]
    fn args_fill_in_defaults() {
        let a = EalArgs::new("--no-huge -m 256")
            .device("net_null0")
            .device("net_tap0,iface=t0")
            .cpus(&[0, 1])
            .build();
        let s = a.join(" ");
        assert!(
            s.starts_with("bypass --no-huge -m 256 --lcores=0@(0,1)"),
            "{s}"
        );
        assert!(
            s.contains("--vdev=net_null0 --vdev=net_tap0,iface=t0"),
            "{s}"
        );
        assert!(s.contains("--no-pci"), "{s}");
        assert!(s.contains("--no-shconf"), "{s}");
        assert!(s.contains("--file-prefix=bypass-"), "{s}");
        let a = EalArgs::new("-l 0-1 --file-prefix=x --log-level=8 --in-memory")
            .device("0000:01:00.0")
            .build();
        let s = a.join(" ");
        assert!(s.contains("-a 0000:01:00.0"), "{s}");
        assert!(!s.contains("--no-pci"), "{s}");
        assert!(!s.contains("--lcores"), "{s}");
        assert_eq!(s.matches("--file-prefix").count(), 1, "{s}");
        assert_eq!(s.matches("--log-level").count(), 1, "{s}");
    }
}
