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

use crate::buf::{
    Checksum, L3Type, L4Offload, L4Type, PacketBuf, PacketType, RxChecksum, TxOffload,
};

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

/// Receive checksum status from the `RTE_MBUF_F_RX_*_CKSUM_*` bits.
#[inline]
fn checksum(flags: u64, mask: u32, good: u32, bad: u32) -> Checksum {
    let v = flags as u32 & mask;
    if v == good {
        Checksum::Good
    } else if v == bad {
        Checksum::Bad
    } else {
        // UNKNOWN (not checked) or NONE (the checksum in the packet is
        // not known right, e.g. not computed by the sender).
        Checksum::Unknown
    }
}

/// The IPv4 header's receive checksum status, from its two bits of
/// `ol_flags` (`RTE_MBUF_F_RX_IP_CKSUM_BAD` is bit 4, `_GOOD` bit 7, both
/// set is `_NONE`) shifted together into an index 0, 1, 8 or 9 of a
/// table: a shift, a mask and a load, and no select for a handler's match
/// on the result to unpick (the forwarding path reads this per frame).
#[inline]
fn l3_checksum(flags: u64) -> Checksum {
    const _: () = assert!(
        sys::RTE_MBUF_F_RX_IP_CKSUM_BAD == 1 << 4
            && sys::RTE_MBUF_F_RX_IP_CKSUM_GOOD == 1 << 7
            && sys::RTE_MBUF_F_RX_IP_CKSUM_MASK == (1 << 4 | 1 << 7)
    );
    use Checksum::{Bad, Good, Unknown as U};
    // Index: bit 0 = BAD, bit 3 = GOOD; 9 is NONE (not known right).
    const BY_BITS: [Checksum; 10] = [U, Bad, U, U, U, U, U, U, Good, U];
    BY_BITS[(flags >> 4) as usize & 9]
}

// Transmit request bits (u64 in DPDK; RTE_MBUF_F_TX_*).
const TX_REQUEST_BITS: u64 = sys::RTE_MBUF_F_TX_IPV4
    | sys::RTE_MBUF_F_TX_IP_CKSUM
    | sys::RTE_MBUF_F_TX_L4_MASK
    | sys::RTE_MBUF_F_TX_TCP_SEG;

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

    /// Prefetches where the frame starts in an mbuf of our pools, without
    /// reading the mbuf: a pool made by [`super::Mempool::new`] has no
    /// private area, so an mbuf's buffer follows its `rte_mbuf` header,
    /// and a driver puts a received frame `RTE_PKTMBUF_HEADROOM` into it.
    /// A prefetch is only a hint: for an mbuf laid out otherwise it warms
    /// a useless line, never faults; reading `buf_addr` and `data_off` to
    /// be exact would cost two dependent loads per frame.
    #[inline]
    fn prefetch(&self) {
        let at = std::mem::size_of::<sys::rte_mbuf>() + sys::RTE_PKTMBUF_HEADROOM as usize;
        crate::buf::prefetch_line((self.0.as_ptr() as *const u8).wrapping_add(at));
    }

    #[inline]
    fn rx_checksum(&self) -> RxChecksum {
        let f = self.m().ol_flags;
        RxChecksum {
            l3: l3_checksum(f),
            l4: checksum(
                f,
                sys::RTE_MBUF_F_RX_L4_CKSUM_MASK,
                sys::RTE_MBUF_F_RX_L4_CKSUM_GOOD,
                sys::RTE_MBUF_F_RX_L4_CKSUM_BAD,
            ),
        }
    }

    #[inline]
    fn rss_hash(&self) -> Option<u32> {
        (self.m().ol_flags & sys::RTE_MBUF_F_RX_RSS_HASH as u64 != 0).then(|| Mbuf::rss_hash(self))
    }

    #[inline]
    fn packet_type(&self) -> PacketType {
        // SAFETY: packet_type is a plain u32 of an owned mbuf (0 when the
        // driver does not classify).
        let t = unsafe { self.m().__bindgen_anon_1.packet_type };
        let l3 = match t & sys::RTE_PTYPE_L3_MASK {
            0 => L3Type::Unknown,
            // IPV4, IPV4_EXT, IPV4_EXT_UNKNOWN
            0x10 | 0x30 | 0x90 => L3Type::Ipv4,
            // IPV6, IPV6_EXT, IPV6_EXT_UNKNOWN
            0x40 | 0x50 | 0xe0 => L3Type::Ipv6,
            _ => L3Type::Other,
        };
        let l4 = match t & sys::RTE_PTYPE_L4_MASK {
            0 => L4Type::Unknown,
            sys::RTE_PTYPE_L4_TCP => L4Type::Tcp,
            sys::RTE_PTYPE_L4_UDP => L4Type::Udp,
            sys::RTE_PTYPE_L4_ICMP => L4Type::Icmp,
            sys::RTE_PTYPE_L4_FRAG => L4Type::Fragment,
            _ => L4Type::Other,
        };
        PacketType { l3, l4 }
    }

    /// Records `req` in `ol_flags` and `tx_offload`, as DPDK's transmit
    /// offloads read them. The port must have enabled the matching offload
    /// ([`super::DpdkPort::offloads`]); a TCP/UDP checksum request needs the
    /// pseudo-header sum in the checksum field, as for any NIC.
    #[inline]
    fn set_tx_offload(&mut self, req: TxOffload) -> bool {
        let mut flags = 0u64;
        if req.ipv4_checksum || req.l4_checksum != L4Offload::None || req.tso_mss != 0 {
            flags |= sys::RTE_MBUF_F_TX_IPV4;
        }
        if req.ipv4_checksum || req.tso_mss != 0 {
            flags |= sys::RTE_MBUF_F_TX_IP_CKSUM;
        }
        if req.tso_mss != 0 {
            flags |= sys::RTE_MBUF_F_TX_TCP_SEG | sys::RTE_MBUF_F_TX_TCP_CKSUM;
        } else {
            match req.l4_checksum {
                L4Offload::None => {}
                L4Offload::Tcp => flags |= sys::RTE_MBUF_F_TX_TCP_CKSUM,
                L4Offload::Udp => flags |= sys::RTE_MBUF_F_TX_UDP_CKSUM,
            }
        }
        // tx_offload bit layout: l2_len 7, l3_len 9, l4_len 8, tso_segsz 16.
        let lens = (req.l2_len as u64 & 0x7f)
            | (req.l3_len as u64) << 7
            | (req.l4_len as u64) << 16
            | (req.tso_mss as u64) << 24;
        // SAFETY: we own the mbuf exclusively (&mut self); both fields are
        // plain integers.
        let m = unsafe { self.0.as_mut() };
        m.ol_flags = (m.ol_flags & !TX_REQUEST_BITS) | flags;
        m.__bindgen_anon_3.tx_offload = lens;
        true
    }

    #[inline]
    fn tx_offload(&self) -> TxOffload {
        let m = self.m();
        let f = m.ol_flags;
        // SAFETY: a plain u64 of an owned mbuf.
        let lens = unsafe { m.__bindgen_anon_3.tx_offload };
        let seg = f & sys::RTE_MBUF_F_TX_TCP_SEG != 0;
        TxOffload {
            l2_len: (lens & 0x7f) as u8,
            l3_len: ((lens >> 7) & 0x1ff) as u8,
            l4_len: ((lens >> 16) & 0xff) as u8,
            ipv4_checksum: f & sys::RTE_MBUF_F_TX_IP_CKSUM != 0 && !seg,
            l4_checksum: if seg {
                L4Offload::None
            } else {
                match f & sys::RTE_MBUF_F_TX_L4_MASK {
                    sys::RTE_MBUF_F_TX_TCP_CKSUM => L4Offload::Tcp,
                    sys::RTE_MBUF_F_TX_UDP_CKSUM => L4Offload::Udp,
                    _ => L4Offload::None,
                }
            },
            tso_mss: if seg { (lens >> 24) as u16 } else { 0 },
        }
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

    #[test]
    fn l3_checksum_table_agrees_with_the_generic_decoding() {
        // Every combination of the two bits, with other flags around them.
        for other in [0u64, !(sys::RTE_MBUF_F_RX_IP_CKSUM_MASK as u64), 0x2_0101] {
            for bits in [
                sys::RTE_MBUF_F_RX_IP_CKSUM_UNKNOWN,
                sys::RTE_MBUF_F_RX_IP_CKSUM_BAD,
                sys::RTE_MBUF_F_RX_IP_CKSUM_GOOD,
                sys::RTE_MBUF_F_RX_IP_CKSUM_NONE,
            ] {
                let f = other | bits as u64;
                let want = checksum(
                    f,
                    sys::RTE_MBUF_F_RX_IP_CKSUM_MASK,
                    sys::RTE_MBUF_F_RX_IP_CKSUM_GOOD,
                    sys::RTE_MBUF_F_RX_IP_CKSUM_BAD,
                );
                assert_eq!(l3_checksum(f), want, "flags {f:#x}");
            }
        }
        assert_eq!(
            l3_checksum(sys::RTE_MBUF_F_RX_IP_CKSUM_GOOD as u64),
            Checksum::Good
        );
        assert_eq!(
            l3_checksum(sys::RTE_MBUF_F_RX_IP_CKSUM_BAD as u64),
            Checksum::Bad
        );
    }
}
