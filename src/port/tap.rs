//! TAP interfaces over `/dev/net/tun`.
//!
//! One file descriptor per queue (`IFF_TAP | IFF_NO_PI | IFF_MULTI_QUEUE`),
//! non-blocking. The device is created if it does not exist (and vanishes
//! when the port closes) or attached to if it does (a persistent TAP made
//! with `ip tuntap add mode tap multi_queue name NAME`). The kernel side of
//! the TAP is a Linux interface with its own MAC; this port is the far end
//! of that cable and sends from a MAC of its own.
//!
//! A TAP moves one frame per `read`/`write`; a burst is a loop of them,
//! stopped by `EAGAIN`. Expect about 0.1 Mpps per core: this backend is for
//! the demo, interop tests and development, not for speed.
//!
//! Options: `tap:NAME[,queues=N][,mtu=M][,mac=02:..][,netns=NS][,frames=F]`.
//! `netns=NS` opens (or creates) the TAP inside the network namespace `NS`
//! (`/run/netns/NS`); its queues work from any thread afterwards.
#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;

use super::sys;
use super::{LinkStats, MacAddr, Port, PortCaps, PortInfo, PortQueue, PortSpec, QueueCounters};
use crate::buf::{Burst, HugePolicy, PacketBuf, Pool, PoolBuf, PoolConfig, PoolStats};
use crate::error::{Error, Result};
use crate::syscall;

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_MULTI_QUEUE: libc::c_short = 0x0100;

/// How to open a TAP port.
#[derive(Debug, Clone)]
pub struct TapConfig {
    /// Interface name.
    pub name: String,
    /// Number of queues (one per core).
    pub queues: u16,
    /// MTU to set; `None` keeps the interface's.
    pub mtu: Option<u16>,
    /// Our MAC; `None` picks a random locally administered one.
    pub mac: Option<MacAddr>,
    /// Network namespace to open the TAP in.
    pub netns: Option<String>,
    /// Frames in each queue's pool.
    pub frames: u32,
    /// Hugepage policy of the pools.
    pub huge: HugePolicy,
}

impl TapConfig {
    /// A config for `name` with one queue and defaults.
    pub fn new(name: &str) -> TapConfig {
        TapConfig {
            name: name.into(),
            queues: 1,
            mtu: None,
            mac: None,
            netns: None,
            frames: 4096,
            huge: HugePolicy::Auto,
        }
    }

    /// Reads `tap:NAME,...` options; `queues` defaults to `default_queues`.
    pub fn from_spec(spec: &mut PortSpec, default_queues: u16) -> Result<TapConfig> {
        let mut c = TapConfig::new(&spec.name);
        c.queues = spec.take("queues")?.unwrap_or(default_queues);
        c.mtu = spec.take("mtu")?;
        c.mac = spec.take("mac")?;
        c.netns = spec.take("netns")?;
        c.frames = spec.take("frames")?.unwrap_or(c.frames);
        spec.finish(&["queues", "mtu", "mac", "netns", "frames"])?;
        if c.queues == 0 || c.queues > 256 {
            return Err(spec.err("queues must be 1..=256"));
        }
        if let Some(m) = c.mtu {
            if !(68..=65000).contains(&m) {
                return Err(spec.err("mtu must be 68..=65000"));
            }
        }
        Ok(c)
    }
}

/// One TAP queue.
pub struct TapQueue {
    id: u16,
    fd: OwnedFd,
    pool: Pool,
    spare: Option<PoolBuf>,
    counters: Arc<QueueCounters>,
}

impl PortQueue for TapQueue {
    type Buf = PoolBuf;

    fn rx_burst(&mut self, burst: &mut Burst<PoolBuf>) -> usize {
        let fd = self.fd.as_raw_fd();
        let (mut n, mut bytes) = (0u64, 0u64);
        while !burst.is_full() {
            let Some(mut buf) = self.spare.take().or_else(|| self.pool.alloc()) else {
                break; // pool dry: counted by the pool; the kernel queues or drops
            };
            let room = buf.room_mut();
            // SAFETY: reads at most room.len() bytes into the buffer's room.
            let r = unsafe { libc::read(fd, room.as_mut_ptr().cast(), room.len()) };
            if r > 0 {
                buf.set_len(r as usize);
                bytes += r as u64;
                n += 1;
                burst.push(buf);
                continue;
            }
            self.spare = Some(buf);
            let err = std::io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EAGAIN) => break,
                _ => {
                    self.counters.rx_errors.add(1);
                    break;
                }
            }
        }
        if n > 0 {
            self.counters.rx_packets.add(n);
            self.counters.rx_bytes.add(bytes);
        }
        n as usize
    }

    fn tx_burst(&mut self, burst: &mut Burst<PoolBuf>) -> usize {
        let fd = self.fd.as_raw_fd();
        let (mut sent, mut bytes, mut errors) = (0u64, 0u64, 0u64);
        let mut consumed = 0;
        for b in burst.iter() {
            let data = b.data();
            // SAFETY: writes data.len() bytes from a live slice.
            let r = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
            if r >= 0 {
                sent += 1;
                bytes += data.len() as u64;
            } else {
                match std::io::Error::last_os_error().raw_os_error() {
                    Some(libc::EAGAIN) | Some(libc::EINTR) => break,
                    _ => errors += 1, // e.g. EIO: consumed and counted
                }
            }
            consumed += 1;
        }
        burst.drain(..consumed);
        self.counters.tx_packets.add(sent);
        self.counters.tx_bytes.add(bytes);
        if errors > 0 {
            self.counters.tx_errors.add(errors);
        }
        consumed
    }

    fn alloc(&mut self) -> Option<PoolBuf> {
        self.spare.take().or_else(|| self.pool.alloc())
    }

    fn queue_id(&self) -> u16 {
        self.id
    }

    fn pool_stats(&self) -> PoolStats {
        let mut s = self.pool.stats();
        // The spare buffer is ours, not in use by anyone.
        s.in_use -= self.spare.is_some() as u64;
        s
    }
}

/// An open TAP interface.
pub struct TapPort {
    info: PortInfo,
    queues: Vec<TapQueue>,
    counters: Vec<Arc<QueueCounters>>,
}

fn open_queue(name: &str, multi: bool) -> Result<OwnedFd> {
    let path = c"/dev/net/tun";
    let fd = syscall!(open(path.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC)).map_err(|e| match e
        .raw_os_error()
    {
        Some(libc::ENOENT) | Some(libc::ENODEV) => Error::Config(
            "/dev/net/tun does not exist: load the tun module (`modprobe tun`) or run in a container with it".into(),
        ),
        _ => Error::io("open /dev/net/tun", e),
    })?;
    // SAFETY: fd was just returned by open() and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut ifr = sys::ifreq(name)?;
    ifr.ifr_ifru.ifru_flags = IFF_TAP | IFF_NO_PI | if multi { IFF_MULTI_QUEUE } else { 0 };
    syscall!(ioctl(fd.as_raw_fd(), TUNSETIFF, &mut ifr as *mut libc::ifreq)).map_err(|e| {
        match e.raw_os_error() {
            Some(libc::EPERM) | Some(libc::EACCES) => Error::Privilege {
                what: format!("opening TAP device `{name}`"),
                caps: "CAP_NET_ADMIN",
            },
            Some(libc::EBUSY) => Error::Config(format!(
                "TAP `{name}` is busy: another process holds it, or it exists with other flags (delete it with `ip link del {name}`)"
            )),
            Some(libc::EINVAL) => Error::Config(format!(
                "`{name}` exists but is not a multi-queue TAP; delete it (`ip link del {name}`) or recreate it with `ip tuntap add mode tap multi_queue name {name}`"
            )),
            _ => Error::io(format!("TUNSETIFF {name}"), e),
        }
    })?;
    sys::set_nonblocking(fd.as_raw_fd()).map_err(|e| Error::io("O_NONBLOCK on tap", e))?;
    Ok(fd)
}

impl TapPort {
    /// Opens (or creates) the TAP interface, sets its MTU, brings it up.
    pub fn open(cfg: &TapConfig) -> Result<TapPort> {
        match &cfg.netns {
            Some(ns) => {
                let c = TapConfig {
                    netns: None,
                    ..cfg.clone()
                };
                sys::in_netns(ns, move || TapPort::open_here(&c))
            }
            None => TapPort::open_here(cfg),
        }
    }

    fn open_here(cfg: &TapConfig) -> Result<TapPort> {
        let mut fds = Vec::with_capacity(cfg.queues as usize);
        for _ in 0..cfg.queues {
            fds.push(open_queue(&cfg.name, true)?);
        }
        if let Some(mtu) = cfg.mtu {
            sys::set_mtu(&cfg.name, mtu)?;
        }
        sys::set_up(&cfg.name)?;
        let mtu = sys::get_mtu(&cfg.name)?;
        let frame_size = (mtu as u32 + 14 + 4 + 128).next_multiple_of(64).max(2048);
        let mut queues = Vec::new();
        let mut counters = Vec::new();
        for (i, fd) in fds.into_iter().enumerate() {
            let c = Arc::new(QueueCounters::default());
            counters.push(c.clone());
            queues.push(TapQueue {
                id: i as u16,
                fd,
                pool: Pool::new(&PoolConfig {
                    frames: cfg.frames,
                    frame_size,
                    headroom: 128,
                    huge: cfg.huge,
                    name: format!("tap:{}.q{i}", cfg.name),
                })?,
                spare: None,
                counters: c,
            });
        }
        Ok(TapPort {
            info: PortInfo {
                kind: "tap",
                name: cfg.name.clone(),
                mac: cfg.mac.unwrap_or_else(MacAddr::random_local),
                mtu,
                queues: cfg.queues,
                caps: PortCaps {
                    rx_checksum: false,
                    tx_checksum: false,
                    rss: false,
                    max_queues: 256,
                },
            },
            queues,
            counters,
        })
    }
}

impl Port for TapPort {
    type Queue = TapQueue;

    fn info(&self) -> &PortInfo {
        &self.info
    }

    fn take_queues(&mut self) -> Vec<TapQueue> {
        std::mem::take(&mut self.queues)
    }

    fn link_stats(&self) -> LinkStats {
        let mut s = LinkStats::default();
        for c in &self.counters {
            c.add_to(&mut s);
        }
        s
    }
}
