//! What applications implement.
//!
//! For L2/L3 appliances (forwarders, firewalls, generators): a
//! [`PacketHandler`] sees each received frame in place, may rewrite it, and
//! returns a [`Verdict`]. The runtime batches the verdicts into bursts, so
//! a handler never touches a port, a pool or a clock.
//!
//! ```
//! use bypass::app::{Frame, PacketHandler, Verdict};
//! use bypass::buf::PacketBuf;
//! use smoltcp::wire::EthernetFrame;
//!
//! /// Drops everything that is not IPv4, forwards the rest.
//! struct Ipv4Only;
//! impl PacketHandler for Ipv4Only {
//!     fn handle<B: PacketBuf>(&mut self, f: &mut Frame<'_, B>) -> Verdict {
//!         match EthernetFrame::new_checked(f.data()) {
//!             Ok(eth) if eth.ethertype() == smoltcp::wire::EthernetProtocol::Ipv4 => Verdict::Forward,
//!             _ => Verdict::Drop,
//!         }
//!     }
//! }
//! ```

pub mod http;
pub mod l3fwd;
pub mod loadgen;
pub mod lpm;
pub mod tcp;

use smoltcp::wire::EthernetFrame;

pub use crate::buf::Checksum;
use crate::buf::{PacketBuf, PacketType, RxChecksum};
use crate::time::Instant;

/// What to do with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Out of the other port (with two ports) or back out of the same one.
    Forward,
    /// Back out of the port it came in on.
    Reply,
    /// Free it (counted as dropped by the handler).
    Drop,
    /// Out of the port with this index (order of `--port` flags). An index
    /// past the last port drops the frame (counted as a handler drop).
    Out(u16),
    /// Free it, counted under this reason.
    Discard(Discard),
}

/// Why a handler dropped a frame, for the drop counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discard {
    /// Headers that do not parse.
    Malformed,
    /// Not IPv4 (an IPv4-only appliance).
    NotIpv4,
    /// A checksum is wrong.
    BadChecksum,
    /// The TTL would reach zero.
    TtlExpired,
    /// No route covers the destination.
    NoRoute,
}

/// A received frame, in place in its buffer: a view over the buffer that
/// reads nothing until asked. A handler that only looks at the first bytes
/// pays for the frame's start and length and nothing else; the device's
/// metadata (checksum status, RSS hash, packet type) is read only by the
/// handler that asks for it.
pub struct Frame<'a, B: PacketBuf> {
    buf: &'a mut B,
    port: u16,
    resized: bool,
}

impl<'a, B: PacketBuf> Frame<'a, B> {
    /// A view of `buf`, a frame that came in on port index `port`.
    #[inline(always)]
    pub fn new(buf: &'a mut B, port: u16) -> Frame<'a, B> {
        Frame {
            buf,
            port,
            resized: false,
        }
    }
    /// The frame's bytes.
    #[inline(always)]
    pub fn data(&self) -> &[u8] {
        self.buf.data()
    }
    /// The frame's bytes, mutable.
    #[inline(always)]
    pub fn data_mut(&mut self) -> &mut [u8] {
        self.buf.data_mut()
    }
    /// The frame's length.
    #[inline(always)]
    pub fn len(&self) -> usize {
        self.buf.len()
    }
    /// True for an empty frame.
    #[inline(always)]
    pub fn is_empty(&self) -> bool {
        self.buf.len() == 0
    }
    /// The most bytes the frame can grow to in its buffer.
    #[inline(always)]
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }
    /// Resizes the frame within its buffer; `false` if it does not fit.
    /// Growing exposes whatever bytes the buffer held.
    #[inline(always)]
    pub fn set_len(&mut self, len: usize) -> bool {
        let ok = self.buf.set_len(len);
        self.resized |= ok;
        ok
    }
    /// True once [`set_len`](Frame::set_len) changed the length (the
    /// forwarding loop then recounts the frame's bytes).
    #[inline(always)]
    pub fn resized(&self) -> bool {
        self.resized
    }
    /// Index of the port it came in on (order of `--port` flags).
    #[inline(always)]
    pub fn port(&self) -> u16 {
        self.port
    }
    /// What the device found checking the IPv4 header checksum
    /// (`Unknown` unless it said; see [`PacketBuf::rx_checksum`]).
    #[inline(always)]
    pub fn l3_checksum(&self) -> Checksum {
        self.buf.rx_checksum().l3
    }
    /// What the device found checking the IPv4 header and the TCP/UDP
    /// checksums.
    #[inline(always)]
    pub fn rx_checksum(&self) -> RxChecksum {
        self.buf.rx_checksum()
    }
    /// The flow hash the device computed, if it gave one.
    #[inline(always)]
    pub fn rss_hash(&self) -> Option<u32> {
        self.buf.rss_hash()
    }
    /// The packet type the device classified.
    #[inline(always)]
    pub fn packet_type(&self) -> PacketType {
        self.buf.packet_type()
    }
}

/// A [`PacketBuf`] over a byte slice: a frame of `len` bytes at the start
/// of `room`. For running a [`PacketHandler`] on bytes that are not in a
/// port's buffer (tests, a capture, a benchmark's input check).
#[derive(Debug)]
pub struct SliceBuf<'a> {
    room: &'a mut [u8],
    len: usize,
    rx: RxChecksum,
}

impl<'a> SliceBuf<'a> {
    /// A frame of `len` bytes (at most `room.len()`) at the start of `room`.
    pub fn new(room: &'a mut [u8], len: usize) -> SliceBuf<'a> {
        let len = len.min(room.len());
        SliceBuf {
            room,
            len,
            rx: RxChecksum::UNKNOWN,
        }
    }
    /// The whole of `frame` as the frame.
    pub fn whole(frame: &'a mut [u8]) -> SliceBuf<'a> {
        let len = frame.len();
        SliceBuf::new(frame, len)
    }
    /// The same buffer, as if the device had checked its checksums.
    pub fn with_rx_checksum(mut self, rx: RxChecksum) -> SliceBuf<'a> {
        self.rx = rx;
        self
    }
}

impl PacketBuf for SliceBuf<'_> {
    #[inline]
    fn data(&self) -> &[u8] {
        &self.room[..self.len]
    }
    #[inline]
    fn data_mut(&mut self) -> &mut [u8] {
        &mut self.room[..self.len]
    }
    #[inline]
    fn len(&self) -> usize {
        self.len
    }
    #[inline]
    fn capacity(&self) -> usize {
        self.room.len()
    }
    #[inline]
    fn set_len(&mut self, len: usize) -> bool {
        if len > self.room.len() {
            return false;
        }
        self.len = len;
        true
    }
    #[inline]
    fn room_mut(&mut self) -> &mut [u8] {
        self.room
    }
    #[inline]
    fn rx_checksum(&self) -> RxChecksum {
        self.rx
    }
}

/// A per-core packet handler. One instance per core, made by the caller;
/// it is moved to that core and never shared.
pub trait PacketHandler: Send + 'static {
    /// Called before each received burst with the loop's timestamp.
    #[inline]
    fn begin_burst(&mut self, _now: Instant) {}
    /// Decides one frame's fate; may rewrite it in place. Generic over the
    /// port's buffer so that the view compiles down to the buffer's own
    /// fields (one loop per backend, as the rest of the runtime).
    fn handle<B: PacketBuf>(&mut self, frame: &mut Frame<'_, B>) -> Verdict;
}

/// Forwards every frame unchanged: with two ports, a wire between them.
#[derive(Debug, Default, Clone, Copy)]
pub struct Wire;

impl PacketHandler for Wire {
    #[inline]
    fn handle<B: PacketBuf>(&mut self, _frame: &mut Frame<'_, B>) -> Verdict {
        Verdict::Forward
    }
}

/// Swaps source and destination MAC and sends the frame back (testpmd's
/// `macswap`). Frames too short for an Ethernet header are dropped.
#[derive(Debug, Default, Clone, Copy)]
pub struct MacSwap;

impl PacketHandler for MacSwap {
    #[inline]
    fn handle<B: PacketBuf>(&mut self, frame: &mut Frame<'_, B>) -> Verdict {
        let data = frame.data_mut();
        // The length check of `new_checked`, made here so that no Result
        // is built (its test of the pointer for null is a per-frame cost).
        if data.len() < EthernetFrame::<&[u8]>::header_len() {
            return Verdict::Drop;
        }
        let mut eth = EthernetFrame::new_unchecked(data);
        let (src, dst) = (eth.src_addr(), eth.dst_addr());
        eth.set_src_addr(dst);
        eth.set_dst_addr(src);
        Verdict::Reply
    }
}

/// [`MacSwap`] with the two addresses swapped by one SSSE3 shuffle
/// (testpmd's way; see [`crate::simd`]): three instructions per frame
/// instead of eight moves. Frames of 14 or 15 bytes, too short for the
/// 16-byte shuffle, are swapped the scalar way; shorter ones are dropped.
/// Made from a [`Ssse3`](crate::simd::Ssse3) token, so the CPU check is
/// made once, when the caller picks the handler, never per frame.
#[derive(Debug, Clone, Copy)]
pub struct MacSwapSsse3(crate::simd::Ssse3);

impl MacSwapSsse3 {
    /// The handler, if this CPU has SSSE3.
    pub fn detect() -> Option<MacSwapSsse3> {
        crate::simd::Ssse3::detect().map(MacSwapSsse3)
    }
}

impl PacketHandler for MacSwapSsse3 {
    #[inline]
    fn handle<B: PacketBuf>(&mut self, frame: &mut Frame<'_, B>) -> Verdict {
        match frame.data_mut().first_chunk_mut::<16>() {
            Some(head) => {
                crate::simd::swap_macs(self.0, head);
                Verdict::Reply
            }
            None => MacSwap.handle(frame),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macswap_swaps_and_rejects_runts() {
        let mut b = [0u8; 64];
        b[..6].copy_from_slice(&[1; 6]);
        b[6..12].copy_from_slice(&[2; 6]);
        let mut sb = SliceBuf::new(&mut b, 60);
        assert_eq!(MacSwap.handle(&mut Frame::new(&mut sb, 0)), Verdict::Reply);
        assert_eq!(&b[..6], &[2; 6]);
        assert_eq!(&b[6..12], &[1; 6]);
        let mut sb = SliceBuf::new(&mut b, 13);
        assert_eq!(MacSwap.handle(&mut Frame::new(&mut sb, 0)), Verdict::Drop);
        assert_eq!(&b[..6], &[2; 6], "a runt is left as it is");
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn ssse3_macswap_matches_the_scalar_one_at_every_length() {
        let mut h = MacSwapSsse3::detect().expect("x86-64 CPUs since about 2008 have SSSE3");
        let mut rng = crate::testing::Rng(0x3a);
        for len in 0..=64usize {
            let mut a = [0u8; 64];
            for x in a.iter_mut() {
                *x = rng.next_u64() as u8;
            }
            let mut b = a;
            let mut sa = SliceBuf::new(&mut a, len);
            let mut sb = SliceBuf::new(&mut b, len);
            let va = MacSwap.handle(&mut Frame::new(&mut sa, 0));
            let vb = h.handle(&mut Frame::new(&mut sb, 0));
            assert_eq!(va, vb, "length {len}");
            assert_eq!(a, b, "length {len}");
        }
    }

    #[test]
    fn frame_len_is_bounded_by_room_and_resizes_are_seen() {
        let mut b = [0u8; 100];
        let mut sb = SliceBuf::new(&mut b, 10);
        let mut f = Frame::new(&mut sb, 1);
        assert!(!f.resized());
        assert!(!f.set_len(101));
        assert!(!f.resized(), "a refused resize changes nothing");
        assert_eq!(f.len(), 10);
        assert!(f.set_len(100));
        assert!(f.resized());
        assert_eq!((f.len(), f.capacity(), f.port()), (100, 100, 1));
        assert_eq!(SliceBuf::new(&mut b, 500).len(), 100, "clamped to the room");
    }

    #[test]
    fn frame_reads_the_buffers_metadata() {
        let mut b = [0u8; 60];
        let good = RxChecksum {
            l3: Checksum::Good,
            l4: Checksum::Bad,
        };
        let mut sb = SliceBuf::whole(&mut b).with_rx_checksum(good);
        let f = Frame::new(&mut sb, 0);
        assert_eq!(f.l3_checksum(), Checksum::Good);
        assert_eq!(f.rx_checksum(), good);
        assert_eq!(f.rss_hash(), None);
        assert_eq!(f.packet_type(), PacketType::UNKNOWN);
        assert_eq!(f.data().len(), 60);
    }
}
