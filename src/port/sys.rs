//! Thin wrappers over the system calls the backends share: interface
//! configuration ioctls, random bytes, network namespaces.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::error::{Error, Result};

/// Runs a libc call returning -1 on error; yields `io::Result<ret>`.
#[macro_export]
#[doc(hidden)]
macro_rules! syscall {
    ($fn:ident ( $($arg:expr),* $(,)? )) => {{
        // SAFETY: the caller passes arguments valid for this system call.
        let res = unsafe { libc::$fn($($arg),*) };
        if res == -1 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(res)
        }
    }};
}

/// Fills `buf` from the OS random generator (`getrandom(2)`).
pub fn fill_random(buf: &mut [u8]) {
    let mut done = 0;
    while done < buf.len() {
        // SAFETY: writes at most buf.len()-done bytes into the slice's tail.
        let n = unsafe { libc::getrandom(buf[done..].as_mut_ptr().cast(), buf.len() - done, 0) };
        if n > 0 {
            done += n as usize;
        } else if io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            // getrandom cannot fail on Linux >= 3.17 once the pool is ready;
            // this only guards against a seccomp filter.
            panic!("getrandom failed: {}", io::Error::last_os_error());
        }
    }
}

/// A random u64 from the OS generator.
pub fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    fill_random(&mut b);
    u64::from_ne_bytes(b)
}

/// CPU time the calling thread has run so far (ns), exact to the call
/// (`CLOCK_THREAD_CPUTIME_ID`); 0 if the kernel will not say. A system
/// call: for occasional use, not per packet.
pub fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec the call writes into.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if r != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The CPUs this process may run on (its affinity mask, as
/// `sched_getaffinity(2)` reports it), in ascending order; empty if the
/// kernel will not say.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain old data; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: pid 0 is this thread; the size is the set's own size.
    let r = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if r != 0 {
        return Vec::new();
    }
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: CPU_ISSET reads bit `c` of a valid set, c < CPU_SETSIZE.
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect()
}

/// An `ifreq` with the name filled in.
pub(crate) fn ifreq(name: &str) -> Result<libc::ifreq> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains(['/', ' ', ':']) {
        return Err(Error::Config(format!(
            "`{name}` is not a valid interface name (1 to 15 characters, no '/', ':' or spaces)"
        )));
    }
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    Ok(ifr)
}

fn ctl_socket() -> Result<OwnedFd> {
    let fd = syscall!(socket(
        libc::AF_INET,
        libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
        0
    ))
    .map_err(|e| Error::io("socket(AF_INET)", e))?;
    // SAFETY: fd was just returned by socket() and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn ioctl_ifr(req: libc::c_ulong, ifr: &mut libc::ifreq, what: &str, name: &str) -> Result<()> {
    let s = ctl_socket()?;
    syscall!(ioctl(s.as_raw_fd(), req, ifr as *mut libc::ifreq))
        .map(drop)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ENODEV) {
                Error::Config(format!("no interface named `{name}` (check `ip link`)"))
            } else {
                Error::io(format!("{what} on {name}"), e)
            }
        })
}

/// Sets the interface up (IFF_UP).
pub fn set_up(name: &str) -> Result<()> {
    let mut ifr = ifreq(name)?;
    ioctl_ifr(libc::SIOCGIFFLAGS, &mut ifr, "SIOCGIFFLAGS", name)?;
    // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
    unsafe { ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    ioctl_ifr(libc::SIOCSIFFLAGS, &mut ifr, "SIOCSIFFLAGS (set up)", name)
}

/// True if the interface is administratively up.
pub fn is_up(name: &str) -> Result<bool> {
    let mut ifr = ifreq(name)?;
    ioctl_ifr(libc::SIOCGIFFLAGS, &mut ifr, "SIOCGIFFLAGS", name)?;
    // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
    Ok(unsafe { ifr.ifr_ifru.ifru_flags } & libc::IFF_UP as libc::c_short != 0)
}

/// Sets the interface MTU.
pub fn set_mtu(name: &str, mtu: u16) -> Result<()> {
    let mut ifr = ifreq(name)?;
    ifr.ifr_ifru.ifru_mtu = mtu as libc::c_int;
    ioctl_ifr(libc::SIOCSIFMTU, &mut ifr, "SIOCSIFMTU", name)
}

/// Reads the interface MTU.
pub fn get_mtu(name: &str) -> Result<u16> {
    let mut ifr = ifreq(name)?;
    ioctl_ifr(libc::SIOCGIFMTU, &mut ifr, "SIOCGIFMTU", name)?;
    // SAFETY: SIOCGIFMTU filled the mtu member of the union.
    Ok(unsafe { ifr.ifr_ifru.ifru_mtu } as u16)
}

/// Reads the interface's hardware address.
pub fn get_mac(name: &str) -> Result<[u8; 6]> {
    let mut ifr = ifreq(name)?;
    ioctl_ifr(libc::SIOCGIFHWADDR, &mut ifr, "SIOCGIFHWADDR", name)?;
    // SAFETY: SIOCGIFHWADDR filled the hwaddr member of the union.
    let sa = unsafe { ifr.ifr_ifru.ifru_hwaddr };
    let mut m = [0u8; 6];
    for (d, s) in m.iter_mut().zip(sa.sa_data.iter()) {
        *d = *s as u8;
    }
    Ok(m)
}

/// The interface index, or an error saying the interface does not exist.
pub fn if_index(name: &str) -> Result<u32> {
    let c =
        CString::new(name).map_err(|_| Error::Config(format!("bad interface name `{name}`")))?;
    // SAFETY: c is a valid NUL-terminated string.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        Err(Error::Config(format!(
            "no interface named `{name}` in this network namespace (check `ip link`)"
        )))
    } else {
        Ok(idx)
    }
}

/// Moves the calling thread into a new, private network namespace with its
/// loopback up. Threads and processes it starts afterwards inherit it. Used
/// by tests and by `bypass demo` so that nothing they do touches the host's
/// network.
pub fn unshare_netns() -> Result<()> {
    syscall!(unshare(libc::CLONE_NEWNET)).map_err(|e| Error::io("unshare(CLONE_NEWNET)", e))?;
    set_up("lo")
}

/// Moves the calling thread into the named namespace (`/run/netns/NAME`, as
/// made by `ip netns add`).
pub fn enter_netns(name: &str) -> Result<()> {
    let path = format!("/run/netns/{name}");
    let f = std::fs::File::open(&path).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            Error::Config(format!(
                "no network namespace `{name}` (create it with `ip netns add {name}`)"
            ))
        } else {
            Error::io(format!("open {path}"), e)
        }
    })?;
    syscall!(setns(f.as_raw_fd(), libc::CLONE_NEWNET))
        .map(drop)
        .map_err(|e| Error::io(format!("setns into {name}"), e))
}

/// Runs `f` on a short-lived thread inside the named network namespace and
/// returns its result. File descriptors it opens (a TAP queue, an AF_XDP
/// socket) stay bound to that namespace's interface wherever they are used.
pub fn in_netns<T: Send>(name: &str, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    std::thread::scope(|s| {
        s.spawn(|| {
            enter_netns(name)?;
            f()
        })
        .join()
        .unwrap_or_else(|_| Err(Error::Config("namespace helper thread panicked".into())))
    })
}

/// True if the process runs as root (euid 0).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Sets a file descriptor non-blocking.
#[cfg_attr(not(feature = "tap"), allow(dead_code))]
pub(crate) fn set_nonblocking(fd: libc::c_int) -> io::Result<()> {
    let fl = syscall!(fcntl(fd, libc::F_GETFL))?;
    syscall!(fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK)).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_is_random() {
        assert_ne!(random_u64(), random_u64());
    }

    #[test]
    fn bad_interface_names_are_rejected() {
        assert!(ifreq("").is_err());
        assert!(ifreq("a-very-long-interface-name").is_err());
        assert!(ifreq("a/b").is_err());
        assert!(ifreq("eth0").is_ok());
        let e = if_index("no-such-if9").unwrap_err().to_string();
        assert!(e.contains("no interface named"), "{e}");
    }
}
