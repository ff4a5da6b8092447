//! The four single-producer/single-consumer rings an AF_XDP socket shares
//! with the kernel (fill, completion, rx, tx), mapped from the socket.
//!
//! Each ring is a power-of-two array of descriptors plus a producer and a
//! consumer index (free-running `u32`s) and a flags word. We follow the
//! kernel's protocol (`net/xdp/xsk_queue.h`):
//! - a producer writes descriptors, then publishes them with a *release*
//!   store of the producer index; it learns free space from an *acquire*
//!   load of the consumer index;
//! - a consumer learns new entries from an *acquire* load of the producer
//!   index, reads them, then hands the slots back with a *release* store of
//!   the consumer index.
//!
//! Both sides cache the other side's index and reload it only when the cache
//! says there is not enough, so a burst costs one shared-cache-line load at
//! most, and one store.
#![allow(unsafe_code)]

use std::marker::PhantomData;
use std::os::fd::RawFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

/// A descriptor of the rx and tx rings (`struct xdp_desc`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub struct XdpDesc {
    /// Offset of the packet in the UMEM.
    pub addr: u64,
    /// Packet length.
    pub len: u32,
    /// Flags (`XDP_PKT_CONTD`, ...).
    pub options: u32,
}

/// The mapping of one ring.
struct RingMap {
    base: NonNull<u8>,
    len: usize,
}

impl Drop for RingMap {
    fn drop(&mut self) {
        // SAFETY: base/len are what mmap returned for this ring; the ring's
        // pointers die with it.
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), self.len);
        }
    }
}

/// One ring of descriptors of type `T` (`u64` UMEM addresses for fill and
/// completion, [`XdpDesc`] for rx and tx).
pub struct Ring<T: Copy> {
    producer: NonNull<AtomicU32>,
    consumer: NonNull<AtomicU32>,
    flags: NonNull<AtomicU32>,
    descs: NonNull<T>,
    mask: u32,
    size: u32,
    /// Producer rings: our producer index. Consumer rings: the last
    /// producer index we loaded.
    cached_prod: u32,
    /// Consumer rings: our consumer index. Producer rings: the last
    /// consumer index we loaded, plus `size` (so `cached_cons - cached_prod`
    /// is the free space).
    cached_cons: u32,
    _map: RingMap,
    _t: PhantomData<T>,
}

// SAFETY: a Ring is the single user-space end of an SPSC ring; it is moved
// to the core that owns its socket and used there alone (it is not Sync).
// The memory it points to lives as long as the mapping it owns.
unsafe impl<T: Copy + Send> Send for Ring<T> {}

impl<T: Copy> Ring<T> {
    /// Maps a ring of `size` entries from socket `fd` at page offset `pgoff`
    /// with the layout `off` from `XDP_MMAP_OFFSETS`. `producer_side` says
    /// whether we produce into it (fill, tx).
    pub fn map(
        fd: RawFd,
        pgoff: libc::off_t,
        off: &libc::xdp_ring_offset,
        size: u32,
        producer_side: bool,
    ) -> std::io::Result<Ring<T>> {
        debug_assert!(size.is_power_of_two());
        let len = off.desc as usize + size as usize * std::mem::size_of::<T>();
        // SAFETY: maps a ring the kernel created for this socket at this
        // offset (the ring size was set before); the result is checked.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd,
                pgoff,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let base = NonNull::new(p.cast::<u8>()).ok_or(std::io::ErrorKind::InvalidData)?;
        let at = |o: u64| {
            // SAFETY: the kernel's offsets lie inside the mapping of `len` bytes.
            unsafe { NonNull::new_unchecked(base.as_ptr().add(o as usize)) }
        };
        let producer = at(off.producer).cast::<AtomicU32>();
        let consumer = at(off.consumer).cast::<AtomicU32>();
        let mut r = Ring {
            producer,
            consumer,
            flags: at(off.flags).cast::<AtomicU32>(),
            descs: at(off.desc).cast::<T>(),
            mask: size - 1,
            size,
            cached_prod: 0,
            cached_cons: 0,
            _map: RingMap { base, len },
            _t: PhantomData,
        };
        // SAFETY: producer/consumer point at aligned u32s in the live mapping.
        let (p, c) = unsafe {
            (
                r.producer.as_ref().load(Ordering::Acquire),
                r.consumer.as_ref().load(Ordering::Acquire),
            )
        };
        if producer_side {
            r.cached_prod = p;
            r.cached_cons = c.wrapping_add(size);
        } else {
            r.cached_prod = p;
            r.cached_cons = c;
        }
        Ok(r)
    }

    /// Entries in the ring.
    pub fn size(&self) -> u32 {
        self.size
    }

    #[inline]
    fn prod(&self) -> &AtomicU32 {
        // SAFETY: points into the mapping this ring owns.
        unsafe { self.producer.as_ref() }
    }

    #[inline]
    fn cons(&self) -> &AtomicU32 {
        // SAFETY: points into the mapping this ring owns.
        unsafe { self.consumer.as_ref() }
    }

    /// True if the kernel asked to be woken up (`XDP_RING_NEED_WAKEUP`).
    #[inline]
    pub fn needs_wakeup(&self) -> bool {
        // SAFETY: points into the mapping this ring owns.
        unsafe { self.flags.as_ref() }.load(Ordering::Relaxed) & libc::XDP_RING_NEED_WAKEUP != 0
    }

    #[inline]
    fn slot(&self, idx: u32) -> *mut T {
        // SAFETY: idx & mask < size, inside the descriptor array.
        unsafe { self.descs.as_ptr().add((idx & self.mask) as usize) }
    }

    // ---- producer side (fill, tx) ----

    /// Free slots, reloading the consumer index only if fewer than `want`
    /// are known to be free.
    #[inline]
    pub fn prod_free(&mut self, want: u32) -> u32 {
        let free = self.cached_cons.wrapping_sub(self.cached_prod);
        if free >= want {
            return free;
        }
        self.cached_cons = self.cons().load(Ordering::Acquire).wrapping_add(self.size);
        self.cached_cons.wrapping_sub(self.cached_prod)
    }

    /// Writes `v` in the next free slot. The caller checked
    /// [`prod_free`](Ring::prod_free) first.
    #[inline]
    pub fn prod_write(&mut self, v: T) {
        debug_assert!(self.cached_cons.wrapping_sub(self.cached_prod) > 0);
        // SAFETY: the slot is free (the kernel consumed it), so only we
        // access it until the producer index is published.
        unsafe { self.slot(self.cached_prod).write(v) };
        self.cached_prod = self.cached_prod.wrapping_add(1);
    }

    /// Publishes the written slots to the kernel.
    #[inline]
    pub fn prod_submit(&mut self) {
        self.prod().store(self.cached_prod, Ordering::Release);
    }

    /// Entries we produced that the kernel has not consumed yet.
    pub fn prod_pending(&self) -> u32 {
        self.cached_prod
            .wrapping_sub(self.cons().load(Ordering::Acquire))
    }

    // ---- consumer side (rx, completion) ----

    /// Entries ready to read, reloading the producer index only if fewer
    /// than `want` are known to be ready.
    #[inline]
    pub fn cons_avail(&mut self, want: u32) -> u32 {
        let avail = self.cached_prod.wrapping_sub(self.cached_cons);
        if avail >= want {
            return avail;
        }
        self.cached_prod = self.prod().load(Ordering::Acquire);
        self.cached_prod.wrapping_sub(self.cached_cons)
    }

    /// Reads the next entry. The caller checked
    /// [`cons_avail`](Ring::cons_avail) first.
    #[inline]
    pub fn cons_read(&mut self) -> T {
        debug_assert!(self.cached_prod.wrapping_sub(self.cached_cons) > 0);
        // SAFETY: the kernel published this slot (acquire load of the
        // producer index) and will not touch it until we release it.
        let v = unsafe { self.slot(self.cached_cons).read() };
        self.cached_cons = self.cached_cons.wrapping_add(1);
        v
    }

    /// Hands the read slots back to the kernel.
    #[inline]
    pub fn cons_release(&mut self) {
        self.cons().store(self.cached_cons, Ordering::Release);
    }

    /// Entries the kernel produced that we have not read yet.
    pub fn cons_pending(&self) -> u32 {
        self.prod()
            .load(Ordering::Acquire)
            .wrapping_sub(self.cached_cons)
    }

    /// The entries we produced that the kernel has not consumed (for
    /// audits on a quiet ring).
    pub fn prod_entries(&self) -> impl Iterator<Item = T> + '_ {
        let from = self.cons().load(Ordering::Acquire);
        (0..self.cached_prod.wrapping_sub(from)).map(move |i| {
            // SAFETY: slots in [consumer, producer) hold entries we wrote.
            unsafe { self.slot(from.wrapping_add(i)).read() }
        })
    }

    /// The entries the kernel produced that we have not read (for audits
    /// on a quiet ring).
    pub fn cons_entries(&self) -> impl Iterator<Item = T> + '_ {
        let to = self.prod().load(Ordering::Acquire);
        let from = self.cached_cons;
        (0..to.wrapping_sub(from)).map(move |i| {
            // SAFETY: slots in [consumer, producer) were published by the
            // kernel (acquire load above) and are ours to read.
            unsafe { self.slot(from.wrapping_add(i)).read() }
        })
    }
}
