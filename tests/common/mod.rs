//! Shared helpers of the integration tests.
#![allow(dead_code)]

pub mod client;
#[cfg(feature = "tap")]
pub mod kernel;
pub mod mem_net;
pub mod wire;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use bypass::buf::{Burst, PacketBuf};
use bypass::port::PortQueue;
use smoltcp::wire::{EthernetFrame, EthernetProtocol, Ipv4Packet};

/// Fails the test unless we are root. Privileged tests are marked
/// `#[ignore = "needs root"]`, so a plain `cargo test` lists them as
/// ignored (never as passed); `scripts/test.sh` runs them as root with
/// `--include-ignored`, and one run without root fails here, saying why.
pub fn require_root(test: &str) {
    assert!(
        bypass::port::sys::is_root(),
        "{test} needs root (it creates interfaces in a private network namespace): \
         run it as root, e.g. ./scripts/test.sh"
    );
}

/// Moves the current test thread into a fresh private network namespace
/// (with `lo` up). Everything the test creates there — taps, veths,
/// addresses, child processes — lives and dies with that namespace, so
/// tests run in parallel and nothing leaves the machine.
pub fn private_netns() {
    bypass::port::sys::unshare_netns().expect("unshare(CLONE_NEWNET)");
}

/// Runs a command (in the current thread's namespace) and returns its output;
/// panics with its stderr if it fails.
pub fn sh(cmd: &str) -> Output {
    let out = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .expect("spawn sh");
    assert!(
        out.status.success(),
        "`{cmd}` failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Like [`sh`], but returns stdout as a string.
pub fn sh_out(cmd: &str) -> String {
    String::from_utf8_lossy(&sh(cmd).stdout).into_owned()
}

/// Reads an interface's counters in the calling thread's namespace, from
/// `/proc/thread-self/net/dev` (sysfs shows the namespace it was mounted
/// in, not the thread's). `counter` is one of `rx_bytes`, `rx_packets`,
/// `rx_errs`, `rx_drop`, `tx_bytes`, `tx_packets`, `tx_errs`, `tx_drop`.
pub fn if_stat(ifname: &str, counter: &str) -> u64 {
    let idx = match counter {
        "rx_bytes" => 0,
        "rx_packets" => 1,
        "rx_errs" => 2,
        "rx_drop" => 3,
        "tx_bytes" => 8,
        "tx_packets" => 9,
        "tx_errs" => 10,
        "tx_drop" => 11,
        other => panic!("unknown counter {other}"),
    };
    let text = std::fs::read_to_string("/proc/thread-self/net/dev").expect("read net/dev");
    for line in text.lines().skip(2) {
        if let Some((name, rest)) = line.split_once(':') {
            if name.trim() == ifname {
                return rest
                    .split_whitespace()
                    .nth(idx)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
            }
        }
    }
    panic!("no interface {ifname} in this namespace");
}

/// A raw AF_PACKET socket bound to an interface, for injecting crafted
/// frames onto its wire from the kernel's side (e.g. a SYN flood from
/// addresses that do not exist).
pub struct RawSender {
    fd: i32,
}

impl RawSender {
    /// Opens one on `ifname` (in the current namespace).
    pub fn open(ifname: &str) -> RawSender {
        let name = std::ffi::CString::new(ifname).unwrap();
        // SAFETY: plain system calls with valid arguments; the name is a
        // NUL-terminated string that outlives the call.
        let idx = unsafe { libc::if_nametoindex(name.as_ptr()) };
        assert!(idx != 0, "no interface {ifname}");
        // SAFETY: socket(2) with constant arguments.
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW,
                (libc::ETH_P_ALL as u16).to_be() as i32,
            )
        };
        assert!(
            fd >= 0,
            "AF_PACKET socket: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: an all-zero sockaddr_ll is valid; the fields set next
        // make it a bind address for the interface.
        let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sa.sll_family = libc::AF_PACKET as u16;
        sa.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        sa.sll_ifindex = idx as i32;
        // SAFETY: `sa` is a valid sockaddr_ll of the length given.
        let r = unsafe {
            libc::bind(
                fd,
                &sa as *const libc::sockaddr_ll as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        assert!(
            r == 0,
            "bind AF_PACKET: {}",
            std::io::Error::last_os_error()
        );
        RawSender { fd }
    }

    /// Sends one whole Ethernet frame; false if the kernel refused it.
    pub fn send(&self, frame: &[u8]) -> bool {
        // SAFETY: the buffer is valid for its length.
        let n = unsafe { libc::send(self.fd, frame.as_ptr().cast(), frame.len(), 0) };
        n == frame.len() as isize
    }
}

impl Drop for RawSender {
    fn drop(&mut self) {
        // SAFETY: the fd is ours and closed once.
        unsafe { libc::close(self.fd) };
    }
}

/// Receives from `q` for up to `within`, handing each IPv4 packet (with
/// its buffer and Ethernet frame) to `f` until `f` returns `Some`; other
/// frames (ARP, IPv6, malformed) are skipped, and the rest of the burst
/// `f` accepted a packet from is dropped. `None` if the time runs out.
pub fn find_ipv4<Q: PortQueue, T>(
    q: &mut Q,
    within: Duration,
    mut f: impl FnMut(&Q::Buf, &EthernetFrame<&[u8]>, &Ipv4Packet<&[u8]>) -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        let mut rx = Burst::new();
        if q.rx_burst(&mut rx) == 0 {
            std::thread::sleep(Duration::from_millis(2));
            continue;
        }
        for b in rx.iter() {
            let Ok(eth) = EthernetFrame::new_checked(b.data()) else {
                continue;
            };
            if eth.ethertype() != EthernetProtocol::Ipv4 {
                continue;
            }
            let Ok(ip) = Ipv4Packet::new_checked(eth.payload()) else {
                continue;
            };
            if let Some(t) = f(b, &eth, &ip) {
                return Some(t);
            }
        }
    }
    None
}
