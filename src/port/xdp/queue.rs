//! One AF_XDP queue: its socket's four rings over the UMEM, frame
//! accounting, and the backend contract (`PortQueue`).

use super::*;

/// Where a queue's UMEM frames are, at one moment. See the module docs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct FrameAccount {
    /// Frames in the UMEM.
    pub total: u64,
    /// In the free list (local stash and frames returned by drops).
    pub free: u64,
    /// In the fill ring, not yet taken by the kernel.
    pub fill_ring: u64,
    /// Taken by the kernel from the fill or tx ring and not yet back in the
    /// rx or completion ring (0 when the wire is quiet).
    pub in_kernel: i64,
    /// In the rx ring, not yet read.
    pub rx_ring: u64,
    /// In the tx ring, not yet taken by the kernel.
    pub tx_ring: u64,
    /// In the completion ring, not yet reaped.
    pub completion_ring: u64,
    /// Held by the application as `XdpBuf`s.
    pub held: i64,
}

impl FrameAccount {
    /// Frames not found in any place: 0 unless one was lost (positive) or
    /// duplicated (negative).
    pub fn missing(&self) -> i64 {
        self.total as i64
            - (self.free + self.fill_ring + self.rx_ring + self.tx_ring + self.completion_ring)
                as i64
            - self.in_kernel
            - self.held
    }
}

/// The raw `XDP_STATISTICS` of one socket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct XskStats {
    /// Dropped for other reasons (e.g. frame too small).
    pub rx_dropped: u64,
    /// Invalid fill-ring descriptors.
    pub rx_invalid_descs: u64,
    /// Invalid tx-ring descriptors.
    pub tx_invalid_descs: u64,
    /// Dropped because the rx ring was full.
    pub rx_ring_full: u64,
    /// Times the fill ring was found empty.
    pub rx_fill_ring_empty_descs: u64,
    /// Times the tx ring was found empty on a wakeup.
    pub tx_ring_empty_descs: u64,
}

pub(super) fn xsk_stats(fd: RawFd) -> XskStats {
    // SAFETY: xdp_statistics is plain old data; all-zero is valid.
    let mut st: libc::xdp_statistics = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::xdp_statistics>() as libc::socklen_t;
    let ok = syscall!(getsockopt(
        fd,
        libc::SOL_XDP,
        libc::XDP_STATISTICS,
        &mut st as *mut libc::xdp_statistics as *mut libc::c_void,
        &mut len
    ))
    .is_ok();
    if !ok {
        return XskStats::default();
    }
    XskStats {
        rx_dropped: st.rx_dropped,
        rx_invalid_descs: st.rx_invalid_descs,
        tx_invalid_descs: st.tx_invalid_descs,
        rx_ring_full: st.rx_ring_full,
        rx_fill_ring_empty_descs: st.rx_fill_ring_empty_descs,
        tx_ring_empty_descs: st.tx_ring_empty_descs,
    }
}

/// One AF_XDP socket with its UMEM and rings: one queue of a port.
pub struct XdpQueue {
    pub(super) id: u16,
    pub(super) dev_queue: u32,
    pub(super) sock: Arc<OwnedFd>,
    pub(super) umem: Home<Umem>,
    pub(super) fill: Ring<u64>,
    pub(super) comp: Ring<u64>,
    pub(super) rx: Ring<XdpDesc>,
    pub(super) tx: Ring<XdpDesc>,
    /// Free frames (base addresses) only this queue touches.
    pub(super) stash: Vec<u64>,
    pub(super) busy_poll: bool,
    pub(super) kick_pending: bool,
    pub(super) counters: Arc<QueueCounters>,
    // Accounting, all local: see `frames`.
    pub(super) handed_out: u64,
    pub(super) tx_taken: u64,
    pub(super) returned_popped: u64,
    pub(super) fill_given: u64,
    pub(super) rx_taken: u64,
    pub(super) tx_given: u64,
    pub(super) comp_taken: u64,
    pub(super) alloc_failures: u64,
    pub(super) wakeups: u64,
}

impl XdpQueue {
    #[inline]
    fn take_free(&mut self) -> Option<u64> {
        if let Some(a) = self.stash.pop() {
            return Some(a);
        }
        let a = self.umem.returned.pop()?;
        self.returned_popped += 1;
        Some(a)
    }

    /// Moves completed tx frames to the stash.
    #[inline]
    fn reap_completions(&mut self) {
        let n = self.comp.cons_avail(u32::MAX);
        if n == 0 {
            return;
        }
        for _ in 0..n {
            let a = self.comp.cons_read();
            self.stash.push(self.umem.base(a));
        }
        self.comp.cons_release();
        self.comp_taken += n as u64;
    }

    /// Tops the fill ring up from the free list.
    #[inline]
    pub(super) fn refill(&mut self) {
        let free = self.fill.prod_free(self.fill.size());
        if free < REFILL_MIN {
            return;
        }
        let mut n = 0;
        while n < free {
            let Some(a) = self.take_free() else { break };
            self.fill.prod_write(a);
            n += 1;
        }
        if n > 0 {
            self.fill.prod_submit();
            self.fill_given += n as u64;
        }
    }

    #[cold]
    fn wake_rx(&mut self) {
        self.wakeups += 1;
        // SAFETY: a zero-length recvfrom on our socket; no buffers involved.
        unsafe {
            libc::recvfrom(
                self.sock.as_raw_fd(),
                std::ptr::null_mut(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            );
        }
    }

    /// Asks the kernel to send what is on the tx ring (it takes at most 32
    /// frames per call in copy mode). Returns false if it could not.
    fn kick_tx(&mut self) -> bool {
        self.wakeups += 1;
        // SAFETY: a zero-length sendto on our socket; no buffers involved.
        let r = unsafe {
            libc::sendto(
                self.sock.as_raw_fd(),
                std::ptr::null(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null(),
                0,
            )
        };
        if r >= 0 {
            return true;
        }
        // EAGAIN/EBUSY: the kernel is busy or the completion ring is full;
        // ENOBUFS: no skb; ENETDOWN/ENXIO: link gone. All are retried on the
        // next flush; nothing is lost (the frames stay on the tx ring).
        false
    }

    /// System calls made so far to wake the kernel (`recvfrom` for rx,
    /// `sendto` for tx).
    pub fn wakeups(&self) -> u64 {
        self.wakeups
    }

    /// The device queue this socket is bound to.
    pub fn device_queue(&self) -> u32 {
        self.dev_queue
    }

    /// This socket's `XDP_STATISTICS`.
    pub fn xsk_stats(&self) -> XskStats {
        xsk_stats(self.sock.as_raw_fd())
    }

    /// Where every frame of this queue's UMEM is now (see the module docs).
    /// Exact when the wire is quiet; a snapshot otherwise.
    pub fn frames(&self) -> FrameAccount {
        let returned_now = self.umem.returned.len() as u64;
        let fill_ring = self.fill.prod_pending() as u64;
        let rx_ring = self.rx.cons_pending() as u64;
        let tx_ring = self.tx.prod_pending() as u64;
        let completion_ring = self.comp.cons_pending() as u64;
        // Given to the kernel and not yet seen back, minus what still sits
        // in the rings: what the kernel holds in between.
        let rx_side = self.fill_given as i64 - self.rx_taken as i64;
        let tx_side = self.tx_given as i64 - self.comp_taken as i64;
        let in_kernel = rx_side - fill_ring as i64 - rx_ring as i64 + tx_side
            - tx_ring as i64
            - completion_ring as i64;
        FrameAccount {
            total: self.umem.frames as u64,
            free: self.stash.len() as u64 + returned_now,
            fill_ring,
            in_kernel,
            rx_ring,
            tx_ring,
            completion_ring,
            held: self.handed_out as i64
                - self.tx_taken as i64
                - (self.returned_popped + returned_now) as i64,
        }
    }

    /// Checks that every frame is in exactly one place, by address: the
    /// free list, the fill ring, the rx ring, the tx ring and the
    /// completion ring are walked, and the frames found there plus the ones
    /// the application holds and the ones in the kernel must add up to the
    /// UMEM with no frame twice. Call it when the wire is quiet and after
    /// reaping (`flush`). Returns the account, or what is wrong.
    pub fn audit(&mut self) -> std::result::Result<FrameAccount, String> {
        self.reap_completions();
        // Move dropped frames to the stash so we can walk them.
        while let Some(a) = self.umem.returned.pop() {
            self.returned_popped += 1;
            self.stash.push(a);
        }
        let acct = self.frames();
        let fs = self.umem.frame_size;
        let mut seen = vec![false; self.umem.frames as usize];
        let mut mark = |addr: u64, place: &str| -> std::result::Result<(), String> {
            let i = (addr / fs) as usize;
            match seen.get_mut(i) {
                None => Err(format!("{place}: address {addr:#x} is outside the UMEM")),
                Some(true) => Err(format!("{place}: frame {i} is in two places")),
                Some(s) => {
                    *s = true;
                    Ok(())
                }
            }
        };
        for &a in &self.stash {
            mark(a, "free list")?;
        }
        for a in self.fill.prod_entries() {
            mark(a, "fill ring")?;
        }
        for d in self.rx.cons_entries() {
            mark(d.addr, "rx ring")?;
        }
        for d in self.tx.prod_entries() {
            mark(d.addr, "tx ring")?;
        }
        for a in self.comp.cons_entries() {
            mark(a, "completion ring")?;
        }
        let found = seen.iter().filter(|&&s| s).count() as i64;
        if found + acct.held + acct.in_kernel != acct.total as i64 {
            return Err(format!(
                "{found} frames found in the free list and rings, {} held by the application, \
                 {} in the kernel: {} of {} unaccounted for ({acct:?})",
                acct.held,
                acct.in_kernel,
                acct.total as i64 - found - acct.held - acct.in_kernel,
                acct.total
            ));
        }
        if acct.missing() != 0 {
            return Err(format!("counters disagree: {acct:?}"));
        }
        Ok(acct)
    }
}

impl Drop for XdpQueue {
    fn drop(&mut self) {
        // The buffers out now: handed out, minus the ones sent as they were
        // (their frames went to a ring), minus the ones already counted
        // back. The UMEM is freed after this only if that many frames come
        // back through `returned` (see `Umem::all_back`).
        let out = self
            .handed_out
            .wrapping_sub(self.tx_taken)
            .wrapping_sub(self.returned_popped);
        self.umem
            .out_at_close
            .store(out, std::sync::atomic::Ordering::Release);
    }
}

impl PortQueue for XdpQueue {
    type Buf = XdpBuf;

    #[inline]
    fn rx_burst(&mut self, burst: &mut Burst<XdpBuf>) -> usize {
        let want = burst.remaining_capacity() as u32;
        if want == 0 {
            return 0;
        }
        self.reap_completions();
        let n = self.rx.cons_avail(want).min(want);
        if n == 0 {
            self.refill();
            if self.busy_poll || self.fill.needs_wakeup() {
                self.wake_rx();
            }
            return 0;
        }
        let mut bytes = 0u64;
        for _ in 0..n {
            let d = self.rx.cons_read();
            bytes += d.len as u64;
            burst.push(XdpBuf {
                umem: self.umem.handle(),
                addr: d.addr,
                len: d.len,
            });
        }
        self.rx.cons_release();
        self.rx_taken += n as u64;
        self.handed_out += n as u64;
        self.refill();
        self.counters.rx_packets.add(n as u64);
        self.counters.rx_bytes.add(bytes);
        n as usize
    }

    #[inline]
    fn tx_burst(&mut self, burst: &mut Burst<XdpBuf>) -> usize {
        if burst.is_empty() {
            return 0;
        }
        self.reap_completions();
        let mut room = self.tx.prod_free(burst.len() as u32);
        if room < burst.len() as u32 && self.kick_pending {
            // Full: let the kernel drain it, then look again.
            self.kick_tx();
            self.reap_completions();
            room = self.tx.prod_free(burst.len() as u32);
        }
        let want = (room as usize).min(burst.len());
        let mut n = 0;
        let mut bytes = 0u64;
        let mut errors = 0u64;
        while n < want {
            let buf = &burst[n];
            if !buf.umem.same(&self.umem.handle()) {
                // Another UMEM's frame: copy it into one of ours.
                let Some(base) = self.take_free() else { break };
                let src = buf.data();
                let addr = base + FRAME_HEADROOM as u64;
                let len = src
                    .len()
                    .min((self.umem.frame_size - FRAME_HEADROOM as u64) as usize);
                // SAFETY: `base` is a free frame we own; the copy stays within
                // it (len is clamped to the frame's room) and cannot overlap
                // the source, which is in another UMEM.
                unsafe {
                    std::ptr::copy_nonoverlapping(src.as_ptr(), self.umem.ptr(addr), len);
                }
                if len < src.len() {
                    errors += 1;
                    self.stash.push(base);
                } else {
                    self.tx.prod_write(XdpDesc {
                        addr,
                        len: len as u32,
                        options: 0,
                    });
                    self.tx_given += 1;
                    bytes += len as u64;
                }
                n += 1;
                continue;
            }
            n += 1;
            // Our own frame: it goes on the ring as is.
            self.tx_taken += 1;
            self.tx_given += 1;
            bytes += buf.len as u64;
            let d = XdpDesc {
                addr: buf.addr,
                len: buf.len,
                options: 0,
            };
            self.tx.prod_write(d);
        }
        // Own frames now belong to the ring: release their handles without
        // returning them; foreign frames go home through their Drop.
        for b in burst.drain(..n) {
            if b.umem.same(&self.umem.handle()) {
                let _ = b.into_desc();
            }
        }
        if n > 0 {
            self.tx.prod_submit();
            self.kick_pending = true;
        }
        let sent = n as u64 - errors;
        self.counters.tx_packets.add(sent);
        self.counters.tx_bytes.add(bytes);
        if errors > 0 {
            self.counters.tx_errors.add(errors);
        }
        n
    }

    #[inline]
    fn alloc(&mut self) -> Option<XdpBuf> {
        match self.take_free() {
            Some(base) => {
                self.handed_out += 1;
                Some(XdpBuf {
                    umem: self.umem.handle(),
                    addr: base + FRAME_HEADROOM as u64,
                    len: 0,
                })
            }
            None => {
                self.alloc_failures += 1;
                None
            }
        }
    }

    fn queue_id(&self) -> u16 {
        self.id
    }

    fn pool_stats(&self) -> PoolStats {
        let a = self.frames();
        PoolStats {
            capacity: a.total,
            // Frames out of the free list for sending or held by the
            // application (the fill side is the receive reserve).
            in_use: (a.held.max(0) as u64) + a.tx_ring + a.completion_ring,
            alloc_failures: self.alloc_failures,
            hugepages: self.umem.map.is_huge(),
        }
    }

    #[inline]
    fn flush(&mut self) {
        if !self.kick_pending {
            return;
        }
        // Copy mode sends in sendto, 32 frames per call: a few calls drain
        // a burst or two; what is left goes on the next flush.
        for _ in 0..4 {
            if !self.tx.needs_wakeup() {
                self.kick_pending = self.tx.prod_pending() > 0;
                return;
            }
            if self.tx.prod_pending() == 0 {
                self.kick_pending = false;
                return;
            }
            if !self.kick_tx() {
                return;
            }
        }
        self.reap_completions();
    }
}
