//! A fixed-size frame pool on 2 MiB hugepages.
//!
//! One anonymous mapping holds `frames` frames of `frame_size` bytes; the
//! first `headroom` bytes of each frame are left free so a header can be
//! prepended without a copy. Free frames are indices in a lock-free bounded
//! queue (`crossbeam_queue::ArrayQueue`): allocation and release take no lock
//! and no system call, and any thread may drop a buffer. The runtime gives
//! every core its own pool, so in practice the queue is touched by one core
//! and its cache lines stay there (this is the per-core cache: a pool per
//! core rather than a shared pool with caches in front of it).
//!
//! Buffers find their pool through a plain pointer ([`Home`]), not a
//! reference count: taking or returning a frame touches the free queue and
//! nothing else (no shared counter bouncing between the core that allocates
//! and the core that frees). The pool's memory outlives its buffers: the
//! last [`Pool`] handle frees it only when every frame is back, and leaks it
//! (once, with a warning) if a buffer is still out.
//!
//! Hugepages: `HugePolicy::Auto` maps with `MAP_HUGETLB` and falls back to
//! ordinary 4 KiB pages with one warning line when none are reserved;
//! `Require` fails with an error telling the user how to reserve them.
#![allow(unsafe_code)]

use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_queue::ArrayQueue;

use super::{Burst, Checksum, L4Offload, PacketBuf, RxChecksum, TxOffload};
use crate::error::{Error, Result};

const HUGE_PAGE: usize = 2 << 20;

/// Whether a pool's memory must, may, or must not come from hugepages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HugePolicy {
    /// Hugepages if reserved, otherwise ordinary pages and one warning.
    #[default]
    Auto,
    /// Hugepages or an error.
    Require,
    /// Ordinary pages (tests, small pools).
    Never,
}

/// The largest frame a pool holds (headroom included): a 64 KiB IP
/// packet (a TSO segment), its Ethernet header and the headroom. Ports
/// that take or make TSO segments size their frames to it.
pub const MAX_FRAME: u32 = 65536 + 512;

/// How to build a [`Pool`].
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Number of frames.
    pub frames: u32,
    /// Bytes per frame, headroom included. Rounded up to 64.
    pub frame_size: u32,
    /// Bytes left free at the start of each frame.
    pub headroom: u32,
    /// Hugepage policy.
    pub huge: HugePolicy,
    /// A name for messages and stats.
    pub name: String,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            frames: 4096,
            frame_size: 2048,
            headroom: 128,
            huge: HugePolicy::Auto,
            name: "pool".into(),
        }
    }
}

/// A snapshot of a pool's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct PoolStats {
    /// Frames in the pool.
    pub capacity: u64,
    /// Frames handed out and not yet returned.
    pub in_use: u64,
    /// Allocations that found the pool empty.
    pub alloc_failures: u64,
    /// True if the memory is on hugepages.
    pub hugepages: bool,
}

/// An anonymous read-write mapping on 2 MiB hugepages or ordinary pages,
/// chosen by a [`HugePolicy`]. Shared by the pools and by backends that
/// register their own packet memory with the kernel (the AF_XDP UMEM).
pub(crate) struct Mapping {
    base: NonNull<u8>,
    len: usize,
    huge: bool,
}

// SAFETY: the mapping is plain memory owned by its pool (or UMEM); which
// frames a thread may touch is decided by ownership of the frame indices or
// addresses in the owner's free queue.
unsafe impl Send for Mapping {}
// SAFETY: as above; the mapping itself is never mutated through `&Mapping`.
unsafe impl Sync for Mapping {}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: base/len are exactly what mmap returned; no buffer outlives
        // the mapping: its owner sits in a `Home`, which frees it only when
        // every buffer is back.
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), self.len);
        }
    }
}

/// Something whose buffers hold a raw pointer to it: see [`Home`].
pub(crate) trait Returns {
    /// Called once by the last owner. Returns true only if every buffer
    /// is back *and has finished touching `self`* (for a free queue: every
    /// index was popped again, so each push is complete); then `self` is
    /// freed. False leaks it.
    fn all_back(&self) -> bool;
    /// A name for the leak warning.
    fn what(&self) -> &str;
}

/// An owner of a heap object that buffers reach through a [`HomeRef`] (a
/// plain pointer, no reference count). The object is freed when the owner
/// drops with every buffer back ([`Returns::all_back`]); otherwise it is
/// leaked, so a buffer that outlives its owner still returns into live
/// memory. Dropping buffers before their port or pool (what the runtime
/// does) frees everything.
pub(crate) struct Home<T: Returns> {
    ptr: NonNull<T>,
}

// SAFETY: a Home is the unique owner of a boxed T (like Box<T>); sending or
// sharing it is sound when T may be sent and shared (buffers on other
// threads reach T through &T only).
unsafe impl<T: Returns + Send + Sync> Send for Home<T> {}
// SAFETY: as above: only &T is ever handed out.
unsafe impl<T: Returns + Send + Sync> Sync for Home<T> {}

impl<T: Returns> Home<T> {
    /// Boxes `v`.
    pub(crate) fn new(v: T) -> Home<T> {
        Home {
            ptr: NonNull::from(Box::leak(Box::new(v))),
        }
    }

    /// A pointer for a buffer.
    #[inline]
    pub(crate) fn handle(&self) -> HomeRef<T> {
        HomeRef { ptr: self.ptr }
    }
}

impl<T: Returns> std::ops::Deref for Home<T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: the box lives until this Home drops.
        unsafe { self.ptr.as_ref() }
    }
}

impl<T: Returns> Drop for Home<T> {
    fn drop(&mut self) {
        if self.all_back() {
            // SAFETY: the pointer came from Box::leak, this is the only
            // owner, and no buffer will touch it again (all_back's contract).
            drop(unsafe { Box::from_raw(self.ptr.as_ptr()) });
        } else {
            tracing::warn!(
                "{}: buffers still out when it closed; its memory stays mapped for them",
                self.what()
            );
        }
    }
}

/// A buffer's pointer to its [`Home`]'s object: one word, copied into each
/// buffer, no reference count.
pub(crate) struct HomeRef<T> {
    ptr: NonNull<T>,
}

impl<T> HomeRef<T> {
    /// True if both point at the same object.
    #[inline]
    pub(crate) fn same(&self, other: &HomeRef<T>) -> bool {
        self.ptr == other.ptr
    }
}

impl<T> Clone for HomeRef<T> {
    #[inline]
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for HomeRef<T> {}

// SAFETY: a HomeRef only gives &T; T: Sync makes that sound from any thread.
unsafe impl<T: Sync> Send for HomeRef<T> {}
// SAFETY: as above.
unsafe impl<T: Sync> Sync for HomeRef<T> {}

impl<T> std::ops::Deref for HomeRef<T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: a HomeRef is held only by a buffer that is out, and the
        // Home frees the object only when every buffer is back.
        unsafe { self.ptr.as_ref() }
    }
}

struct Inner {
    map: Mapping,
    frame_size: usize,
    headroom: usize,
    frames: u32,
    free: ArrayQueue<u32>,
    alloc_failures: AtomicU64,
    huge: bool,
    name: String,
}

impl Returns for Inner {
    fn all_back(&self) -> bool {
        // Pop every index: each pop that succeeds saw its push complete
        // (the push's last write is the slot stamp the pop waits for).
        let mut popped = Vec::with_capacity(self.frames as usize);
        while let Some(i) = self.free.pop() {
            popped.push(i);
        }
        let all = popped.len() == self.frames as usize;
        for i in popped {
            let _ = self.free.push(i);
        }
        all
    }
    fn what(&self) -> &str {
        &self.name
    }
}

/// A pool of fixed-size packet frames. Cloning is cheap (a shared handle,
/// counted per handle, never per buffer).
#[derive(Clone)]
pub struct Pool {
    inner: Arc<Home<Inner>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("name", &self.inner.name)
            .field("stats", &self.stats())
            .finish()
    }
}

static WARNED_NO_HUGE: AtomicBool = AtomicBool::new(false);

fn map(len: usize, huge: bool) -> Option<NonNull<u8>> {
    let mut flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE;
    if huge {
        flags |= libc::MAP_HUGETLB;
    }
    // SAFETY: an anonymous private mapping with no address hint has no
    // preconditions; the result is checked against MAP_FAILED.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            flags,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        None
    } else {
        NonNull::new(p.cast())
    }
}

// The accessors serve backends that hand the memory to the kernel.
#[cfg_attr(not(feature = "af-xdp"), allow(dead_code))]
impl Mapping {
    /// Maps at least `bytes` bytes (rounded up to the page size) under
    /// `policy`; `Auto` falls back to 4 KiB pages with one warning per
    /// process. The error is a sentence naming `name`.
    pub(crate) fn new(
        bytes: usize,
        policy: HugePolicy,
        name: &str,
    ) -> std::result::Result<Mapping, String> {
        let (base, len, huge) = match policy {
            HugePolicy::Never => {
                let len = bytes.next_multiple_of(4096);
                (map(len, false), len, false)
            }
            HugePolicy::Require | HugePolicy::Auto => {
                let len = bytes.next_multiple_of(HUGE_PAGE);
                match map(len, true) {
                    Some(p) => (Some(p), len, true),
                    None if policy == HugePolicy::Require => {
                        return Err(format!(
                            "{}: no free hugepages for {} MiB; reserve some with `sudo scripts/hugepages.sh reserve {}`",
                            name,
                            len >> 20,
                            (len / HUGE_PAGE).max(64)
                        ));
                    }
                    None => {
                        if !WARNED_NO_HUGE.swap(true, Ordering::Relaxed) {
                            tracing::warn!(
                                "no hugepages reserved: packet pools use 4 KiB pages (slower); \
                                 reserve some with `sudo scripts/hugepages.sh reserve 512`"
                            );
                        }
                        let len = bytes.next_multiple_of(4096);
                        (map(len, false), len, false)
                    }
                }
            }
        };
        let base = base.ok_or_else(|| {
            format!(
                "{}: cannot map {} bytes: {}",
                name,
                len,
                std::io::Error::last_os_error()
            )
        })?;
        Ok(Mapping { base, len, huge })
    }

    /// The start of the mapping.
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.base.as_ptr()
    }

    /// Its length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// True if it is on hugepages.
    pub(crate) fn is_huge(&self) -> bool {
        self.huge
    }
}

impl Pool {
    /// True if `buf` came from this pool.
    pub(crate) fn owns(&self, buf: &PoolBuf) -> bool {
        buf.pool.same(&self.inner.handle())
    }
}

impl Pool {
    /// Creates a pool.
    pub fn new(cfg: &PoolConfig) -> Result<Pool> {
        if cfg.frames == 0 {
            return Err(Error::Pool(format!(
                "{}: a pool needs at least one frame",
                cfg.name
            )));
        }
        if cfg.frame_size < 128 || cfg.frame_size > MAX_FRAME {
            return Err(Error::Pool(format!(
                "{}: frame size {} is out of range (128..={MAX_FRAME})",
                cfg.name, cfg.frame_size
            )));
        }
        if cfg.headroom + 64 > cfg.frame_size {
            return Err(Error::Pool(format!(
                "{}: headroom {} leaves no room in a {}-byte frame",
                cfg.name, cfg.headroom, cfg.frame_size
            )));
        }
        let frame_size = (cfg.frame_size as usize).next_multiple_of(64);
        let bytes = frame_size
            .checked_mul(cfg.frames as usize)
            .ok_or_else(|| Error::Pool(format!("{}: pool size overflows", cfg.name)))?;
        let map = Mapping::new(bytes, cfg.huge, &cfg.name).map_err(Error::Pool)?;
        let huge = map.huge;
        let free = ArrayQueue::new(cfg.frames as usize);
        for i in 0..cfg.frames {
            // Cannot fail: the queue holds exactly `frames` entries.
            let _ = free.push(i);
        }
        Ok(Pool {
            inner: Arc::new(Home::new(Inner {
                map,
                frame_size,
                headroom: cfg.headroom as usize,
                frames: cfg.frames,
                free,
                alloc_failures: AtomicU64::new(0),
                huge,
                name: cfg.name.clone(),
            })),
        })
    }

    /// Takes a frame; `None` (and one more allocation failure counted) when
    /// the pool is empty. The frame's length is 0.
    #[inline]
    pub fn alloc(&self) -> Option<PoolBuf> {
        match self.inner.free.pop() {
            Some(idx) => Some(PoolBuf {
                pool: self.inner.handle(),
                idx,
                len: 0,
            }),
            None => {
                self.alloc_failed();
                None
            }
        }
    }

    #[cold]
    fn alloc_failed(&self) {
        self.inner.alloc_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Fills `burst` up to `n` buffers (or its capacity); returns how many
    /// were added. Fewer than asked means the pool ran dry (counted once).
    pub fn alloc_bulk(&self, burst: &mut Burst<PoolBuf>, n: usize) -> usize {
        let want = n.min(burst.remaining_capacity());
        for i in 0..want {
            match self.alloc() {
                Some(b) => burst.push(b),
                None => return i,
            }
        }
        want
    }

    /// The pool's counters now.
    pub fn stats(&self) -> PoolStats {
        let i: &Inner = &self.inner;
        PoolStats {
            capacity: i.frames as u64,
            in_use: (i.frames as usize - i.free.len()) as u64,
            alloc_failures: i.alloc_failures.load(Ordering::Relaxed),
            hugepages: i.huge,
        }
    }

    /// Frames handed out and not yet returned.
    pub fn in_use(&self) -> usize {
        self.inner.frames as usize - self.inner.free.len()
    }

    /// Bytes of frame available after the headroom.
    pub fn buf_capacity(&self) -> usize {
        self.inner.frame_size - self.inner.headroom
    }

    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }
}

/// Hints the CPU to load the cache line at `p` (no effect on other
/// architectures). A prefetch never faults, whatever the address.
#[inline]
pub(crate) fn prefetch_line(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetcht0 is a hint: it does not fault and has no effect on
    // program state, for any address.
    unsafe {
        core::arch::x86_64::_mm_prefetch(p.cast(), core::arch::x86_64::_MM_HINT_T0);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// A frame from a [`Pool`]; returns there when dropped.
///
/// Besides its length, a buffer carries one byte of offload metadata (in
/// the top bits of the length word, so the handle stays two words): the
/// receive checksum status a backend found (the TAP's virtio-net header)
/// and the checksums a frame to send asks the backend to fill in. A fresh
/// buffer knows nothing and asks for nothing.
pub struct PoolBuf {
    pool: HomeRef<Inner>,
    idx: u32,
    /// Length (low 24 bits) and metadata (top 8 bits, see `META_*`).
    len: u32,
}

const LEN_MASK: u32 = (1 << 24) - 1;
const META_SHIFT: u32 = 24;
// Metadata bits: rx L3 and L4 status (2 bits each: 0 unknown, 1 good,
// 2 bad), tx requests (IPv4 header checksum; L4 checksum: 0 none, 1 TCP,
// 2 UDP; TSO, whose MSS is kept in the two headroom bytes just before the
// frame, as an mbuf keeps its offload fields beside the data).
const RX_L3_SHIFT: u32 = 0;
const RX_L4_SHIFT: u32 = 2;
const TX_IP_BIT: u32 = 1 << 4;
const TX_L4_SHIFT: u32 = 5;
const TX_TSO_BIT: u32 = 1 << 7;
/// Headroom bytes a TSO request needs (for its MSS).
const TSO_MSS_BYTES: usize = 2;

fn status_bits(c: Checksum) -> u32 {
    match c {
        Checksum::Unknown => 0,
        Checksum::Good => 1,
        Checksum::Bad => 2,
    }
}

fn status_of(bits: u32) -> Checksum {
    match bits & 3 {
        1 => Checksum::Good,
        2 => Checksum::Bad,
        _ => Checksum::Unknown,
    }
}

impl std::fmt::Debug for PoolBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "PoolBuf({}#{}, len {})",
            self.pool.name,
            self.idx,
            self.len & LEN_MASK
        )
    }
}

impl PoolBuf {
    #[inline]
    fn room_ptr(&self) -> *mut u8 {
        let off = self.idx as usize * self.pool.frame_size + self.pool.headroom;
        // SAFETY: idx < frames, so the offset stays inside the mapping.
        unsafe { self.pool.map.base.as_ptr().add(off) }
    }

    /// Copies `bytes` into the buffer as its frame. Returns `false` (and
    /// leaves the buffer unchanged) if they do not fit.
    pub fn copy_from(&mut self, bytes: &[u8]) -> bool {
        if bytes.len() > self.capacity() {
            return false;
        }
        self.room_mut()[..bytes.len()].copy_from_slice(bytes);
        self.len = (self.len & !LEN_MASK) | bytes.len() as u32;
        true
    }

    #[inline]
    fn meta(&self) -> u32 {
        self.len >> META_SHIFT
    }

    #[inline]
    fn set_meta(&mut self, m: u32) {
        self.len = (self.len & LEN_MASK) | (m & 0xff) << META_SHIFT;
    }

    /// Records what a backend found checking the frame's checksums.
    pub fn set_rx_checksum(&mut self, c: RxChecksum) {
        let m = self.meta() & !(0xf);
        self.set_meta(m | status_bits(c.l3) << RX_L3_SHIFT | status_bits(c.l4) << RX_L4_SHIFT);
    }
}

impl PacketBuf for PoolBuf {
    #[inline]
    fn data(&self) -> &[u8] {
        // SAFETY: this handle owns frame `idx` exclusively (it was popped
        // from the free queue) and len <= capacity.
        unsafe { std::slice::from_raw_parts(self.room_ptr(), self.len()) }
    }
    #[inline]
    fn data_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `data`, and `&mut self` makes the borrow unique.
        unsafe { std::slice::from_raw_parts_mut(self.room_ptr(), self.len()) }
    }
    #[inline]
    fn len(&self) -> usize {
        (self.len & LEN_MASK) as usize
    }
    #[inline]
    fn capacity(&self) -> usize {
        self.pool.frame_size - self.pool.headroom
    }
    #[inline]
    fn set_len(&mut self, len: usize) -> bool {
        if len > self.capacity() {
            return false;
        }
        // capacity() < 2^17 (frame_size is checked at pool creation).
        self.len = (self.len & !LEN_MASK) | len as u32;
        true
    }
    #[inline]
    fn room_mut(&mut self) -> &mut [u8] {
        let cap = self.capacity();
        // SAFETY: as in `data_mut`; the room lies inside this frame.
        unsafe { std::slice::from_raw_parts_mut(self.room_ptr(), cap) }
    }
    #[inline]
    fn prefetch(&self) {
        prefetch_line(self.room_ptr());
    }
    #[inline]
    fn rx_checksum(&self) -> RxChecksum {
        let m = self.meta();
        RxChecksum {
            l3: status_of(m >> RX_L3_SHIFT),
            l4: status_of(m >> RX_L4_SHIFT),
        }
    }
    /// Carries IPv4 and TCP/UDP checksum requests, and TSO requests when
    /// the pool has headroom for the MSS (returns false otherwise). Header
    /// lengths are not stored: the backend finds the headers in the frame.
    fn set_tx_offload(&mut self, req: TxOffload) -> bool {
        if req.tso_mss != 0 && self.pool.headroom < TSO_MSS_BYTES {
            return false;
        }
        let l4 = match req.l4_checksum {
            L4Offload::None => 0,
            L4Offload::Tcp => 1,
            L4Offload::Udp => 2,
        };
        let ip = if req.ipv4_checksum { TX_IP_BIT } else { 0 };
        let tso = if req.tso_mss != 0 {
            // SAFETY: the headroom holds at least TSO_MSS_BYTES (checked
            // above), so the bytes just before the frame's data are inside
            // this handle's own frame, which `&mut self` borrows uniquely.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    req.tso_mss.to_ne_bytes().as_ptr(),
                    self.room_ptr().sub(TSO_MSS_BYTES),
                    TSO_MSS_BYTES,
                )
            };
            TX_TSO_BIT
        } else {
            0
        };
        let m = self.meta() & 0xf;
        self.set_meta(m | ip | l4 << TX_L4_SHIFT | tso);
        true
    }
    fn tx_offload(&self) -> TxOffload {
        let m = self.meta();
        let tso_mss = if m & TX_TSO_BIT != 0 {
            let mut b = [0u8; TSO_MSS_BYTES];
            // SAFETY: the bit is only set when the headroom holds the MSS
            // (set_tx_offload); the bytes are inside this handle's frame.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    self.room_ptr().sub(TSO_MSS_BYTES),
                    b.as_mut_ptr(),
                    TSO_MSS_BYTES,
                )
            };
            u16::from_ne_bytes(b)
        } else {
            0
        };
        TxOffload {
            ipv4_checksum: m & TX_IP_BIT != 0,
            l4_checksum: match (m >> TX_L4_SHIFT) & 3 {
                1 => L4Offload::Tcp,
                2 => L4Offload::Udp,
                _ => L4Offload::None,
            },
            tso_mss,
            ..TxOffload::default()
        }
    }
}

impl Drop for PoolBuf {
    #[inline]
    fn drop(&mut self) {
        // Cannot fail: at most `frames` indices exist and each is either in
        // the queue or owned by exactly one PoolBuf.
        let _ = self.pool.free.push(self.idx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(frames: u32) -> Pool {
        Pool::new(&PoolConfig {
            frames,
            frame_size: 256,
            headroom: 64,
            huge: HugePolicy::Never,
            name: "t".into(),
        })
        .unwrap()
    }

    #[test]
    fn exhaustion_is_counted_and_recovers() {
        let p = small(8);
        let mut held: Vec<PoolBuf> = (0..8).map(|_| p.alloc().unwrap()).collect();
        assert_eq!(p.in_use(), 8);
        assert!(p.alloc().is_none());
        assert!(p.alloc().is_none());
        assert_eq!(p.stats().alloc_failures, 2);
        held.pop();
        assert!(p.alloc().is_some()); // dropped at once
        drop(held);
        assert_eq!(p.in_use(), 0);
    }

    #[test]
    fn frames_are_distinct_and_keep_their_bytes() {
        let p = small(4);
        let mut a = p.alloc().unwrap();
        let mut b = p.alloc().unwrap();
        assert!(a.copy_from(&[1; 100]));
        assert!(b.copy_from(&[2; 192]));
        assert!(!b.copy_from(&[3; 193]), "capacity is frame - headroom");
        assert_eq!(a.data(), &[1; 100][..]);
        assert_eq!(b.data(), &[2; 192][..]);
        assert!(!a.set_len(193));
        assert!(a.set_len(10));
        a.data_mut()[0] = 9;
        assert_eq!(a.data()[..2], [9, 1]);
    }

    #[test]
    fn bulk_alloc_stops_when_dry() {
        let p = small(5);
        let mut burst = Burst::new();
        assert_eq!(p.alloc_bulk(&mut burst, 8), 5);
        assert_eq!(p.stats().alloc_failures, 1);
        burst.clear();
        assert_eq!(p.in_use(), 0);
    }

    #[test]
    fn buffers_return_from_other_threads() {
        let p = small(64);
        let bufs: Vec<PoolBuf> = (0..64).map(|_| p.alloc().unwrap()).collect();
        std::thread::spawn(move || drop(bufs)).join().unwrap();
        assert_eq!(p.in_use(), 0);
    }

    #[test]
    fn bad_configs_are_errors() {
        for cfg in [
            PoolConfig {
                frames: 0,
                ..Default::default()
            },
            PoolConfig {
                frame_size: 64,
                ..Default::default()
            },
            PoolConfig {
                frame_size: 256,
                headroom: 250,
                ..Default::default()
            },
        ] {
            assert!(Pool::new(&cfg).is_err());
        }
    }

    #[test]
    fn auto_policy_always_gives_a_pool() {
        let p = Pool::new(&PoolConfig {
            frames: 16,
            ..Default::default()
        })
        .unwrap();
        let b = p.alloc().unwrap();
        assert_eq!(b.capacity(), 2048 - 128);
    }

    #[test]
    fn metadata_rides_beside_the_length() {
        let p = small(2);
        let mut b = p.alloc().unwrap();
        assert_eq!(b.rx_checksum(), RxChecksum::UNKNOWN);
        assert!(b.tx_offload().is_none());
        assert!(b.copy_from(&[1; 100]));
        b.set_rx_checksum(RxChecksum {
            l3: Checksum::Unknown,
            l4: Checksum::Good,
        });
        let req = TxOffload {
            ipv4_checksum: true,
            l4_checksum: L4Offload::Udp,
            ..Default::default()
        };
        let tso = TxOffload {
            l4_checksum: L4Offload::Tcp,
            tso_mss: 1448,
            ..req
        };
        assert!(b.set_tx_offload(tso));
        assert_eq!(b.tx_offload(), tso, "the MSS rides in the headroom");
        assert_eq!(&b.data()[..4], &[1; 4], "and leaves the frame alone");
        let bare = Pool::new(&PoolConfig {
            frames: 1,
            frame_size: 256,
            headroom: 0,
            huge: HugePolicy::Never,
            name: "t0".into(),
        })
        .unwrap();
        let mut nb = bare.alloc().unwrap();
        assert!(!nb.set_tx_offload(tso), "no headroom: no room for an MSS");
        assert!(nb.tx_offload().is_none());
        assert!(b.set_tx_offload(req));
        assert_eq!(b.len(), 100);
        assert!(b.set_len(192));
        assert_eq!(b.len(), 192);
        assert_eq!(b.data().len(), 192);
        assert_eq!(b.rx_checksum().l4, Checksum::Good);
        assert_eq!(b.tx_offload(), req);
        drop(b);
        let b = p.alloc().unwrap();
        let c = p.alloc().unwrap();
        for x in [&b, &c] {
            assert_eq!(
                x.rx_checksum(),
                RxChecksum::UNKNOWN,
                "fresh buffers know nothing"
            );
            assert_eq!(x.len(), 0);
        }
    }

    #[test]
    fn a_buffer_may_outlive_its_pool() {
        let p = small(4);
        let mut b = p.alloc().unwrap();
        assert!(b.copy_from(&[7; 50]));
        drop(p); // the memory stays for `b`
        assert_eq!(b.data(), &[7; 50][..]);
        std::thread::spawn(move || drop(b)).join().unwrap();
    }

    struct Probe {
        back: bool,
        freed: Arc<std::sync::atomic::AtomicBool>,
    }
    impl Returns for Probe {
        fn all_back(&self) -> bool {
            self.back
        }
        fn what(&self) -> &str {
            "probe"
        }
    }
    impl Drop for Probe {
        fn drop(&mut self) {
            self.freed.store(true, Ordering::SeqCst);
        }
    }

    #[test]
    fn home_frees_only_when_everything_is_back() {
        for back in [true, false] {
            let freed = Arc::new(AtomicBool::new(false));
            let h = Home::new(Probe {
                back,
                freed: freed.clone(),
            });
            let r = h.handle();
            assert!(r.same(&h.handle()));
            drop(h);
            assert_eq!(freed.load(Ordering::SeqCst), back);
            if !back {
                assert_eq!(r.what(), "probe", "still readable through the handle");
            }
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(std::mem::size_of::<PoolBuf>(), 16);
        assert_eq!(std::mem::size_of::<Option<PoolBuf>>(), 16);
    }
}
