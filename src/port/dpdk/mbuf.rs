//! `Mbuf`: an owned `rte_mbuf`, the DPDK port's [`PacketBuf`].
//!
//! Zero copy: the frame's bytes are read and written where the device put
//! them (`buf_addr + data_off`, `data_len` bytes). Only single-segment mbufs
//! are produced by the port (scatter is not enabled), so `pkt_len ==
//! data_len` always. The accessors read the `rte_mbuf` fields directly, not
//! through shim calls. Dropping an `Mbuf` frees it to its pool.
#![allow(unsafe_code)]

use std::ptr::NonNull;

use bypass_dpdk_sys as sys;

use crate::buf::PacketBuf;

/// An owned, single-segment packet mbuf.
#[repr(transparent)]
pub struct Mbuf(NonNull<sys::rte_mbuf>);

// SAFETY: an Mbuf is the sole owner of its rte_mbuf (no other handle to it
// exists while it lives); an mbuf may be freed from any thread.
unsafe impl Send for Mbuf {}

impl Mbuf {
    /// Takes ownership of a raw mbuf.
    ///
    /// # Safety
    /// `m` must be a valid single-segment mbuf that nobody else owns or
    /// frees.
    #[inline]
    pub unsafe fn from_raw(m: NonNull<sys::rte_mbuf>) -> Mbuf {
        Mbuf(m)
    }

    /// Gives up ownership; the caller frees or sends the mbuf.
    #[inline]
    pub fn into_raw(self) -> NonNull<sys::rte_mbuf> {
        let p = self.0;
        std::mem::forget(self);
        p
    }

    /// The raw mbuf (still owned by `self`).
    #[inline]
    pub fn as_ptr(&self) -> *mut sys::rte_mbuf {
        self.0.as_ptr()
    }

    #[inline]
    fn m(&self) -> &sys::rte_mbuf {
        // SAFETY: we own a valid mbuf (from_raw's contract).
        unsafe { self.0.as_ref() }
    }

    #[inline]
    fn start(&self) -> *mut u8 {
        let m = self.m();
        // SAFETY: buf_addr + data_off is inside the mbuf's buffer (DPDK keeps
        // data_off <= buf_len).
        unsafe { (m.buf_addr as *mut u8).add(m.data_off as usize) }
    }

    /// The RSS hash the device computed (valid when the port enabled RSS).
    #[inline]
    pub fn rss_hash(&self) -> u32 {
        // SAFETY: reading a plain u32 of an owned mbuf; for an rx mbuf it is
        // the hash (or 0), never uninitialised memory.
        unsafe { self.m().__bindgen_anon_2.hash.rss }
    }

    /// The port id the mbuf was received on.
    #[inline]
    pub fn port(&self) -> u16 {
        self.m().port
    }
}

impl PacketBuf for Mbuf {
    #[inline]
    fn data(&self) -> &[u8] {
        // SAFETY: data_len bytes from the data start lie inside the buffer
        // and are owned by us.
        unsafe { std::slice::from_raw_parts(self.start(), self.m().data_len as usize) }
    }

    #[inline]
    fn data_mut(&mut self) -> &mut [u8] {
        let len = self.m().data_len as usize;
        // SAFETY: as in data(), and &mut self makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.start(), len) }
    }

    #[inline]
    fn len(&self) -> usize {
        self.m().data_len as usize
    }

    #[inline]
    fn capacity(&self) -> usize {
        let m = self.m();
        (m.buf_len - m.data_off) as usize
    }

    #[inline]
    fn set_len(&mut self, len: usize) -> bool {
        if len > self.capacity() {
            return false;
        }
        // SAFETY: we own the mbuf exclusively (&mut self).
        let m = unsafe { self.0.as_mut() };
        m.data_len = len as u16;
        m.pkt_len = len as u32;
        true
    }

    #[inline]
    fn room_mut(&mut self) -> &mut [u8] {
        let cap = self.capacity();
        // SAFETY: [data start, buffer end) is inside the mbuf's buffer and
        // owned by us; &mut self makes it exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.start(), cap) }
    }

    #[inline]
    fn prefetch(&self) {
        crate::buf::prefetch_line(self.start());
    }
}

impl Drop for Mbuf {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: we own the mbuf and nobody uses it after this.
        unsafe { sys::rte_pktmbuf_free(self.0.as_ptr()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mbuf_is_a_pointer() {
        assert_eq!(std::mem::size_of::<Mbuf>(), std::mem::size_of::<usize>());
        assert_eq!(
            std::mem::size_of::<Option<Mbuf>>(),
            std::mem::size_of::<usize>()
        );
    }
}
