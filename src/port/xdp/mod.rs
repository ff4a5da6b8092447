//! AF_XDP: one XDP socket (XSK) per queue, each with its own UMEM.
//!
//! Options: `xdp:IFACE[,queues=N][,start_queue=Q][,mode=auto|native|skb]`
//! `[,zerocopy|zerocopy=off][,busy_poll][,frames=F][,frame_size=2048|4096][,ring=R][,mac=..]`
//! (`ring`: entries of each of the four rings, default 2048 as in libxdp;
//! `frames`: UMEM frames per queue, default twice the ring).
//!
//! # What happens when a port opens
//! 1. The interface is checked: it exists, it is up, it has the queues
//!    asked for, and no XDP program that is not ours is attached. A program
//!    named `bypass_xsk*` attached the legacy way and not held by a live
//!    link is what a crashed run of ours left behind: it is detached (with
//!    a warning) before we attach our own. A foreign program is never
//!    touched: the open fails with a sentence saying how to remove it.
//! 2. `RLIMIT_MEMLOCK` is raised to what the UMEMs need, when allowed.
//! 3. Per queue: a UMEM of `frames` frames (default 4096 x 2 KiB = 8 MiB)
//!    is mapped on hugepages ([`HugePolicy::Auto`]: ordinary pages with a
//!    warning when none are reserved), registered, and its fill ring filled;
//!    the socket is bound to (interface, queue) with `XDP_ZEROCOPY` first
//!    and, when the driver refuses it (veth always does), `XDP_COPY`
//!    (`zerocopy` makes zero-copy mandatory, `zerocopy=off` skips the
//!    attempt). The active mode is in [`XdpPort::modes`] and the JSON.
//! 4. The redirect program ([`bpf`]) is loaded and attached with a BPF link
//!    (`BPF_LINK_CREATE`, attach type `BPF_XDP`), in native (driver) mode
//!    where the driver supports it and generic (SKB) mode otherwise
//!    (`mode=native|skb` forces one). Each socket goes into the XSKMAP slot
//!    of its queue.
//!
//! Why a hand-written program and a link: the program is five instructions,
//! so emitting it ourselves costs less than a clang/libbpf build dependency
//! (and the `bpf()` syscall is all it needs); a link detaches by itself when
//! its fd closes, also when the process is killed, so a crashed run leaves
//! nothing on the interface; only kernels without XDP links (< 5.9) get the
//! legacy netlink attach, which [`XdpPort`]'s `Drop` undoes.
//!
//! # Buffers and frame accounting
//! [`XdpBuf`] is a handle on one UMEM frame: the application reads and
//! writes the packet in place in the UMEM, and `tx_burst` puts the very same
//! frame on the tx ring (no copy in user space). A frame is always in
//! exactly one place: the queue's free list (a local stash plus a lock-free
//! queue for frames dropped on any thread), the fill ring, the kernel (in
//! transit between fill and rx, or tx and completion), the rx ring, the tx
//! ring, the completion ring, or an `XdpBuf` held by the application.
//! Dropping an `XdpBuf` returns its frame to the free list. [`XdpQueue::frames`]
//! counts each place; [`XdpQueue::audit`] checks that every frame is in
//! exactly one of them. A buffer of another UMEM (another port's queue)
//! handed to `tx_burst` is copied into one of ours and dropped, so it goes
//! home.
//!
//! # Hot-path design
//! - Bursts of 32 ([`BURST`]) in and out; ring indices are cached, so a
//!   burst costs at most one acquire load of the other side's index and one
//!   release store of ours per ring.
//! - Fill-ring refill: after every receive, and whenever a receive finds
//!   nothing, the fill ring is topped up from the free list, in one
//!   submission, once at least [`REFILL_MIN`] slots are free. It starts full
//!   (half the frames), before the socket is bound, so the kernel never
//!   finds it empty at start-up (`rx_fill_ring_empty_descs`).
//! - Completions are reaped at every `rx_burst` and `tx_burst` straight into
//!   the local stash, from which the fill ring and `alloc` take first.
//! - `need_wakeup` (`XDP_USE_NEED_WAKEUP`): the kernel sets a flag on the
//!   fill ring when it wants a `recvfrom` to resume receiving, and on the tx
//!   ring when it wants a `sendto` to transmit; we make those system calls
//!   only then. In copy mode the tx flag is always set (the kernel sends in
//!   `sendto`, at most 32 frames per call), so `flush` makes one `sendto`
//!   per burst; in zero-copy driver mode it is usually clear and costs
//!   nothing.
//! - `busy_poll` sets `SO_PREFER_BUSY_POLL`, `SO_BUSY_POLL` (20 µs) and
//!   `SO_BUSY_POLL_BUDGET` (32) and then calls `recvfrom` on every empty
//!   receive, so the driver's NAPI runs on our core rather than in softirq.
//!   It helps real NICs in driver mode; on veth it only adds system calls.
//!
//! # veth
//! veth has native XDP and generic XDP but no zero-copy: expect copy mode.
//! In native mode the XDP program and the copy into the UMEM run on the CPU
//! that *sends* into the veth pair.
#![allow(unsafe_code)]

mod attach;
pub mod bpf;
pub mod netlink;
mod queue;
mod ring;
mod socket;

use attach::*;
pub use attach::{attached_mode, plant_legacy_program};
use queue::*;
pub use queue::{FrameAccount, XdpQueue, XskStats};
use socket::*;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use crossbeam_queue::ArrayQueue;

use self::bpf::{Link, Program, XskMap, XDP_FLAGS_DRV_MODE, XDP_FLAGS_SKB_MODE};
use self::netlink::Attached;
use self::ring::{Ring, XdpDesc};
use super::sys;
use super::{LinkStats, MacAddr, Port, PortCaps, PortInfo, PortQueue, PortSpec, QueueCounters};
use crate::buf::{Burst, Home, HomeRef, HugePolicy, Mapping, PacketBuf, PoolStats, Returns, BURST};
use crate::error::{Error, Result};
use crate::syscall;

/// Bytes before the packet in every frame (the kernel's
/// `XDP_PACKET_HEADROOM`; received packets start there in copy mode too).
pub const FRAME_HEADROOM: u32 = 256;
/// Refill the fill ring once at least this many slots are free.
pub const REFILL_MIN: u32 = BURST as u32;

const SO_BUSY_POLL: libc::c_int = 46;
const SO_PREFER_BUSY_POLL: libc::c_int = 69;
const SO_BUSY_POLL_BUDGET: libc::c_int = 70;

/// Where the XDP program runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum XdpMode {
    /// Native if the driver supports it, else SKB.
    Auto,
    /// In the driver, before an skb exists.
    Native,
    /// Generic XDP on the skb (any driver).
    Skb,
}

impl std::str::FromStr for XdpMode {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "auto" => Ok(XdpMode::Auto),
            "native" | "drv" | "driver" => Ok(XdpMode::Native),
            "skb" | "generic" => Ok(XdpMode::Skb),
            _ => Err("use auto, native or skb".into()),
        }
    }
}

/// Whether sockets bind in zero-copy mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZeroCopy {
    /// Try zero-copy, fall back to copy mode.
    Auto,
    /// Zero-copy or an error.
    Require,
    /// Copy mode only.
    Off,
}

/// How to open an AF_XDP port.
#[derive(Debug, Clone)]
pub struct XdpConfig {
    /// Interface name.
    pub name: String,
    /// Number of queues (one socket each, one per core).
    pub queues: u16,
    /// Device queue of our queue 0; our queue i is device queue
    /// `start_queue + i`.
    pub start_queue: u16,
    /// Where the XDP program runs.
    pub mode: XdpMode,
    /// Zero-copy policy.
    pub zerocopy: ZeroCopy,
    /// Busy-poll socket options.
    pub busy_poll: bool,
    /// UMEM frames per queue.
    pub frames: u32,
    /// Bytes per frame: 2048 or 4096.
    pub frame_size: u32,
    /// Entries of each ring (power of two).
    pub ring_size: u32,
    /// Our MAC; `None` uses the interface's.
    pub mac: Option<MacAddr>,
    /// Hugepage policy of the UMEMs.
    pub huge: HugePolicy,
}

impl XdpConfig {
    /// A config for `name` with one queue and defaults.
    pub fn new(name: &str) -> XdpConfig {
        XdpConfig {
            name: name.into(),
            queues: 1,
            start_queue: 0,
            mode: XdpMode::Auto,
            zerocopy: ZeroCopy::Auto,
            busy_poll: false,
            frames: 4096,
            frame_size: 2048,
            ring_size: 2048,
            mac: None,
            huge: HugePolicy::Auto,
        }
    }

    /// Reads `xdp:IFACE,...` options; `queues` defaults to `default_queues`.
    pub fn from_spec(spec: &mut PortSpec, default_queues: u16) -> Result<XdpConfig> {
        let mut c = XdpConfig::new(&spec.name);
        c.queues = spec.take("queues")?.unwrap_or(default_queues);
        c.start_queue = spec.take("start_queue")?.unwrap_or(0);
        c.mode = spec.take("mode")?.unwrap_or(XdpMode::Auto);
        if spec.opts.iter().any(|(k, _)| k == "zerocopy") {
            c.zerocopy = if spec.take_flag("zerocopy")? {
                ZeroCopy::Require
            } else {
                ZeroCopy::Off
            };
        }
        c.busy_poll = spec.take_flag("busy_poll")?;
        let frames: Option<u32> = spec.take("frames")?;
        c.frame_size = spec.take("frame_size")?.unwrap_or(c.frame_size);
        c.ring_size = spec.take("ring")?.unwrap_or(c.ring_size);
        // Twice the ring size unless given: a full fill ring plus as many
        // frames for the application and tx.
        c.frames = frames.unwrap_or(c.frames.max(2 * c.ring_size));
        c.mac = spec.take("mac")?;
        spec.finish(&[
            "queues",
            "start_queue",
            "mode",
            "zerocopy",
            "busy_poll",
            "frames",
            "frame_size",
            "ring",
            "mac",
        ])?;
        c.check().map_err(|why| spec.err(why))?;
        Ok(c)
    }

    fn check(&self) -> std::result::Result<(), String> {
        if self.queues == 0 || self.queues > 256 {
            return Err("queues must be 1..=256".into());
        }
        if self.frame_size != 2048 && self.frame_size != 4096 {
            return Err("frame_size must be 2048 or 4096".into());
        }
        if !self.ring_size.is_power_of_two() || self.ring_size < 64 {
            return Err("the ring size must be a power of two, at least 64".into());
        }
        if self.frames < 2 * self.ring_size || self.frames > 1 << 20 {
            return Err(format!(
                "frames must be {}..=1048576 (twice the ring size, so the fill ring and tx both have frames)",
                2 * self.ring_size
            ));
        }
        Ok(())
    }
}

/// The modes a port ended up in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct XdpModes {
    /// Where the XDP program runs (`native` or `skb`).
    pub attach: XdpMode,
    /// True if the sockets are in zero-copy mode, false for copy mode.
    pub zerocopy: bool,
    /// True if attached with a BPF link (false: legacy netlink attach).
    pub link: bool,
    /// True if the UMEMs are on hugepages.
    pub hugepages: bool,
    /// True if the busy-poll socket options are set.
    pub busy_poll: bool,
}

impl std::fmt::Display for XdpModes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "xdp {} mode, {}, {} attach, umem on {}{}",
            match self.attach {
                XdpMode::Native => "native",
                XdpMode::Skb => "skb",
                XdpMode::Auto => "auto",
            },
            if self.zerocopy { "zero-copy" } else { "copy" },
            if self.link { "link" } else { "legacy" },
            if self.hugepages {
                "hugepages"
            } else {
                "4 KiB pages"
            },
            if self.busy_poll { ", busy-poll" } else { "" }
        )
    }
}

// ---------------------------------------------------------------- UMEM

/// A queue's packet memory, owned by the queue (in a [`Home`]) and reached
/// by every `XdpBuf` from it through a plain pointer.
struct Umem {
    map: Mapping,
    frame_size: u64,
    frames: u32,
    /// Base addresses of frames whose `XdpBuf` was dropped (any thread).
    returned: ArrayQueue<u64>,
    /// Set once by the queue as it closes: how many `XdpBuf`s were out and
    /// not yet in `returned`'s count then (see `XdpQueue::drop`).
    out_at_close: std::sync::atomic::AtomicU64,
    name: String,
}

impl Returns for Umem {
    fn all_back(&self) -> bool {
        // Every buffer out at close must have pushed its frame, and each
        // pop that succeeds saw its push complete.
        let mut n = 0;
        while self.returned.pop().is_some() {
            n += 1;
        }
        n == self.out_at_close.load(std::sync::atomic::Ordering::Acquire)
    }
    fn what(&self) -> &str {
        &self.name
    }
}

impl Umem {
    #[inline]
    fn base(&self, addr: u64) -> u64 {
        addr & !(self.frame_size - 1)
    }
    #[inline]
    fn ptr(&self, addr: u64) -> *mut u8 {
        debug_assert!((addr as usize) < self.map.len());
        // SAFETY: addr is an offset of a frame inside the mapping (checked
        // where descriptors enter: rx descriptors come from the kernel,
        // which only hands out addresses of the registered UMEM).
        unsafe { self.map.as_ptr().add(addr as usize) }
    }
}

/// A UMEM frame holding one packet. Dropping it returns the frame to its
/// queue's free list, on any thread.
pub struct XdpBuf {
    umem: HomeRef<Umem>,
    /// UMEM offset of the packet's first byte.
    addr: u64,
    len: u32,
}

impl std::fmt::Debug for XdpBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "XdpBuf(addr {:#x}, len {})", self.addr, self.len)
    }
}

impl XdpBuf {
    /// The frame's UMEM offset and length, giving up the handle without
    /// returning the frame (it now belongs to a ring).
    #[inline]
    fn into_desc(self) -> XdpDesc {
        let me = std::mem::ManuallyDrop::new(self);
        XdpDesc {
            addr: me.addr,
            len: me.len,
            options: 0,
        }
    }
}

impl PacketBuf for XdpBuf {
    #[inline]
    fn data(&self) -> &[u8] {
        // SAFETY: this handle owns the frame exclusively (it came off the rx
        // ring or the free list) and addr + len stays inside the frame.
        unsafe { std::slice::from_raw_parts(self.umem.ptr(self.addr), self.len as usize) }
    }
    #[inline]
    fn data_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `data`, and `&mut self` makes the borrow unique.
        unsafe { std::slice::from_raw_parts_mut(self.umem.ptr(self.addr), self.len as usize) }
    }
    #[inline]
    fn len(&self) -> usize {
        self.len as usize
    }
    #[inline]
    fn capacity(&self) -> usize {
        (self.umem.base(self.addr) + self.umem.frame_size - self.addr) as usize
    }
    #[inline]
    fn set_len(&mut self, len: usize) -> bool {
        if len > self.capacity() {
            return false;
        }
        self.len = len as u32;
        true
    }
    #[inline]
    fn room_mut(&mut self) -> &mut [u8] {
        let cap = self.capacity();
        // SAFETY: as in `data_mut`; the room ends at the frame's end.
        unsafe { std::slice::from_raw_parts_mut(self.umem.ptr(self.addr), cap) }
    }
    #[inline]
    fn prefetch(&self) {
        crate::buf::prefetch_line(self.umem.ptr(self.addr));
    }
}

impl Drop for XdpBuf {
    #[inline]
    fn drop(&mut self) {
        // Cannot fail: the queue holds `frames` entries and each frame is in
        // exactly one place.
        let _ = self.umem.returned.push(self.umem.base(self.addr));
    }
}

// ---------------------------------------------------------------- port

enum Attachment {
    Link(Link),
    Legacy { ifindex: u32, flags: u32 },
}

/// An interface opened for AF_XDP.
pub struct XdpPort {
    info: PortInfo,
    modes: XdpModes,
    queues: Vec<XdpQueue>,
    counters: Vec<Arc<QueueCounters>>,
    socks: Vec<Arc<OwnedFd>>,
    // Field order is drop order: the attachment goes first, then the map
    // and program (the sockets close with their queues).
    attachment: Option<Attachment>,
    _map: XskMap,
    _prog: Program,
}

fn xdp_err(msg: String) -> Error {
    Error::Backend {
        backend: "xdp",
        msg,
    }
}

impl XdpPort {
    /// Opens `cfg.name` for AF_XDP. See the module docs for the steps.
    pub fn open(cfg: &XdpConfig) -> Result<XdpPort> {
        cfg.check()
            .map_err(|why| Error::Config(format!("xdp:{}: {why}", cfg.name)))?;
        let name = cfg.name.as_str();
        sys::ifreq(name)?; // validates the name
        let ifindex = sys::if_index(name)?;
        let st = netlink::link_state(ifindex, name)?;
        if !st.is_up() {
            return Err(Error::Config(format!(
                "interface `{name}` is down; bring it up with `ip link set {name} up`"
            )));
        }
        let dev_queues = st.rx_queues.max(st.tx_queues).max(1);
        let last = cfg.start_queue as u32 + cfg.queues as u32;
        if last > dev_queues {
            return Err(Error::Config(format!(
                "`{name}` has {dev_queues} queue(s) (0..={}); queues {}..={} are out of range (ask for fewer with queues=N)",
                dev_queues - 1,
                cfg.start_queue,
                last - 1
            )));
        }
        clear_leftover(name, ifindex, &st)?;
        let umem_bytes = cfg.frames as u64 * cfg.frame_size as u64;
        let memlock = ensure_memlock(umem_bytes * cfg.queues as u64 + (1 << 20));
        let map = XskMap::create(dev_queues)?;
        let prog = Program::load_redirect(&map, bpf::PROG_NAME)?;

        let mut queues = Vec::new();
        let mut counters = Vec::new();
        let mut socks = Vec::new();
        let mut zerocopy = None;
        let mut huge = true;
        for i in 0..cfg.queues {
            let dev_queue = cfg.start_queue as u32 + i as u32;
            let mapping = Mapping::new(
                umem_bytes as usize,
                cfg.huge,
                &format!("xdp:{name}.q{dev_queue} umem"),
            )
            .map_err(Error::Pool)?;
            huge &= mapping.is_huge();
            let umem = Home::new(Umem {
                map: mapping,
                frame_size: cfg.frame_size as u64,
                frames: cfg.frames,
                returned: ArrayQueue::new(cfg.frames as usize),
                out_at_close: Default::default(),
                name: format!("xdp:{name}.q{dev_queue} umem"),
            });
            let attempts: &[u16] = match cfg.zerocopy {
                ZeroCopy::Auto => &[libc::XDP_ZEROCOPY, libc::XDP_COPY],
                ZeroCopy::Require => &[libc::XDP_ZEROCOPY],
                ZeroCopy::Off => &[libc::XDP_COPY],
            };
            let mut bound = None;
            let mut last_err = None;
            for &mode_flag in attempts {
                // A socket whose bind failed cannot be reused: start afresh.
                let s = new_socket(cfg, &umem, memlock)?;
                let flags = mode_flag | libc::XDP_USE_NEED_WAKEUP;
                let mut r = bind(s.fd.as_raw_fd(), ifindex, dev_queue, flags);
                // A socket closed just before (ours or another process's)
                // releases its queue in deferred work: EBUSY for a moment.
                for _ in 0..40 {
                    if !matches!(&r, Err(e) if e.raw_os_error() == Some(libc::EBUSY)) {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(50));
                    r = bind(s.fd.as_raw_fd(), ifindex, dev_queue, flags);
                }
                match r {
                    Ok(()) => {
                        bound = Some(s);
                        break;
                    }
                    Err(e) => last_err = Some((mode_flag, e)),
                }
            }
            let Some(s) = bound else {
                let (flag, e) = last_err.unwrap_or((
                    libc::XDP_COPY,
                    std::io::Error::from_raw_os_error(libc::EINVAL),
                ));
                return Err(match e.raw_os_error() {
                    Some(libc::EOPNOTSUPP) if flag == libc::XDP_ZEROCOPY => xdp_err(format!(
                        "the driver of `{name}` does not support AF_XDP zero-copy; leave out `zerocopy` to use copy mode"
                    )),
                    Some(libc::EBUSY) => xdp_err(format!(
                        "queue {dev_queue} of `{name}` is already bound to another AF_XDP socket (another process?); stop it or pick another queue with start_queue=Q"
                    )),
                    Some(libc::EINVAL) => xdp_err(format!(
                        "cannot bind an AF_XDP socket to queue {dev_queue} of `{name}`: the queue is out of range or the UMEM was refused"
                    )),
                    Some(libc::ENETDOWN) => Error::Config(format!(
                        "interface `{name}` is down; bring it up with `ip link set {name} up`"
                    )),
                    _ => Error::io(format!("binding the AF_XDP socket to {name} queue {dev_queue}"), e),
                });
            };
            let zc = is_zerocopy(s.fd.as_raw_fd());
            zerocopy.get_or_insert(zc);
            let sock = Arc::new(s.fd);
            let c = Arc::new(QueueCounters::default());
            let mut q = XdpQueue {
                id: i,
                dev_queue,
                sock: sock.clone(),
                umem,
                fill: s.fill,
                comp: s.comp,
                rx: s.rx,
                tx: s.tx,
                stash: Vec::with_capacity(cfg.frames as usize),
                busy_poll: cfg.busy_poll,
                kick_pending: false,
                counters: c.clone(),
                handed_out: 0,
                tx_taken: 0,
                returned_popped: 0,
                fill_given: 0,
                rx_taken: 0,
                tx_given: 0,
                comp_taken: 0,
                alloc_failures: 0,
                wakeups: 0,
            };
            // Highest addresses first out of the stash: frame 0 is used first.
            q.stash.extend(
                (0..cfg.frames as u64)
                    .rev()
                    .map(|f| f * cfg.frame_size as u64),
            );
            q.refill();
            map.insert(dev_queue, sock.as_raw_fd())?;
            socks.push(sock);
            counters.push(c);
            queues.push(q);
        }
        let (attachment, attach_mode) = attach(&prog, name, ifindex, cfg.mode)?;
        let modes = XdpModes {
            attach: attach_mode,
            zerocopy: zerocopy.unwrap_or(false),
            link: matches!(attachment, Attachment::Link(_)),
            hugepages: huge,
            busy_poll: cfg.busy_poll,
        };
        tracing::info!("xdp:{name}: {modes}");
        Ok(XdpPort {
            info: PortInfo {
                kind: "xdp",
                name: cfg.name.clone(),
                mac: cfg.mac.unwrap_or(MacAddr(st.mac)),
                mtu: st.mtu.min(u16::MAX as u32) as u16,
                queues: cfg.queues,
                caps: PortCaps {
                    tso: false,
                    rx_checksum: false,
                    tx_checksum: false,
                    rss: dev_queues > 1,
                    max_queues: dev_queues.min(u16::MAX as u32) as u16,
                },
            },
            modes,
            queues,
            counters,
            socks,
            attachment: Some(attachment),
            _map: map,
            _prog: prog,
        })
    }

    /// The modes the port runs in (XDP attach mode, copy or zero-copy).
    pub fn modes(&self) -> XdpModes {
        self.modes
    }

    /// Per-socket `XDP_STATISTICS`, queue 0 first.
    pub fn xsk_stats(&self) -> Vec<XskStats> {
        self.socks
            .iter()
            .map(|s| xsk_stats(s.as_raw_fd()))
            .collect()
    }
}

impl Port for XdpPort {
    type Queue = XdpQueue;

    fn info(&self) -> &PortInfo {
        &self.info
    }

    fn take_queues(&mut self) -> Vec<XdpQueue> {
        std::mem::take(&mut self.queues)
    }

    fn link_stats(&self) -> LinkStats {
        let mut s = LinkStats::default();
        for c in &self.counters {
            c.add_to(&mut s);
        }
        for x in self.xsk_stats() {
            s.rx_dropped += x.rx_dropped + x.rx_ring_full;
            s.rx_errors += x.rx_invalid_descs;
            s.tx_errors += x.tx_invalid_descs;
        }
        s
    }
}

impl Drop for XdpPort {
    fn drop(&mut self) {
        match self.attachment.take() {
            Some(Attachment::Legacy { ifindex, flags }) => {
                if let Err(e) = netlink::legacy_set(ifindex, -1, flags) {
                    tracing::warn!(
                        "could not detach the XDP program from `{}`: {e}; remove it with `ip link set dev {} xdp off`",
                        self.info.name,
                        self.info.name
                    );
                }
            }
            Some(Attachment::Link(link)) => drop(link), // closing the link detaches
            None => {}
        }
    }
}

#[cfg(test)]
mod tests;
