//! Packet buffers and pools.
//!
//! Every backend hands the upper layers *owned* buffers through the
//! [`PacketBuf`] trait: a DPDK mbuf, an AF_XDP UMEM frame, or a frame from a
//! [`Pool`] (TAP and the in-memory port). Dropping a buffer gives it back to
//! wherever it came from, so a buffer can never leak by being forgotten on an
//! error path.
//!
//! Buffers travel in [`Burst`]es of up to [`BURST`] (32) with no heap
//! allocation.

mod meta;
mod pool;

pub use meta::{Checksum, L3Type, L4Offload, L4Type, PacketType, RxChecksum, TxOffload};
#[cfg_attr(not(feature = "af-xdp"), allow(unused_imports))]
pub(crate) use pool::{prefetch_line, Home, HomeRef, Mapping, Returns};
pub use pool::{HugePolicy, Pool, PoolBuf, PoolConfig, PoolStats, MAX_FRAME};

/// Packets per burst, in and out (DPDK's customary 32).
pub const BURST: usize = 32;

/// A burst of up to [`BURST`] owned buffers, stored inline.
pub type Burst<B> = arrayvec::ArrayVec<B, BURST>;

/// An owned packet buffer: a frame's bytes, with room to grow it up to the
/// buffer's capacity. The bytes start at the Ethernet header.
pub trait PacketBuf: Send {
    /// The frame.
    fn data(&self) -> &[u8];
    /// The frame, mutable in place.
    fn data_mut(&mut self) -> &mut [u8];
    /// Length of the frame in bytes.
    fn len(&self) -> usize;
    /// True if the frame has no bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The most bytes this buffer can hold from its data start.
    fn capacity(&self) -> usize;
    /// Sets the frame length. Returns `false` (and changes nothing) if
    /// `len > capacity()`. Growing exposes whatever bytes the buffer held.
    fn set_len(&mut self, len: usize) -> bool;
    /// The whole room of the buffer from the data start (`capacity()` bytes),
    /// for writing a frame before [`set_len`](PacketBuf::set_len).
    fn room_mut(&mut self) -> &mut [u8];
    /// Hints the CPU to bring the frame's first cache line in (a loop calls
    /// it for frame `i + 1` while it works on frame `i`). The default does
    /// nothing.
    #[inline]
    fn prefetch(&self) {}

    /// What the device found checking the frame's checksums (receive).
    #[inline]
    fn rx_checksum(&self) -> RxChecksum {
        RxChecksum::UNKNOWN
    }
    /// The flow hash the device computed (receive), if it gave one.
    #[inline]
    fn rss_hash(&self) -> Option<u32> {
        None
    }
    /// The packet type the device classified (receive).
    #[inline]
    fn packet_type(&self) -> PacketType {
        PacketType::UNKNOWN
    }
    /// Asks the device to do `req` for this frame when it is sent. Returns
    /// false if this buffer cannot carry the request (the caller then
    /// computes checksums and segments itself); true only means it is
    /// recorded: whether the port honours it is in its
    /// [`PortCaps`](crate::port::PortCaps).
    #[inline]
    fn set_tx_offload(&mut self, _req: TxOffload) -> bool {
        false
    }
    /// The request recorded by [`set_tx_offload`](PacketBuf::set_tx_offload).
    #[inline]
    fn tx_offload(&self) -> TxOffload {
        TxOffload::default()
    }
}
