//! What applications implement.
//!
//! For L2/L3 appliances (forwarders, firewalls, generators): a
//! [`PacketHandler`] sees each received frame in place, may rewrite it, and
//! returns a [`Verdict`]. The runtime batches the verdicts into bursts, so
//! a handler never touches a port, a pool or a clock.
//!
//! ```
//! use bypass::app::{Frame, PacketHandler, Verdict};
//! use smoltcp::wire::EthernetFrame;
//!
//! /// Drops everything that is not IPv4, forwards the rest.
//! struct Ipv4Only;
//! impl PacketHandler for Ipv4Only {
//!     fn handle(&mut self, f: &mut Frame<'_>) -> Verdict {
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

/// A received frame, in place in its buffer.
pub struct Frame<'a> {
    room: &'a mut [u8],
    len: usize,
    port: u16,
    l3: Checksum,
}

impl<'a> Frame<'a> {
    /// Wraps a buffer's room holding a frame of `len` bytes that came in on
    /// port index `port`.
    #[inline]
    pub fn new(room: &'a mut [u8], len: usize, port: u16) -> Frame<'a> {
        debug_assert!(len <= room.len());
        Frame {
            room,
            len,
            port,
            l3: Checksum::Unknown,
        }
    }
    /// The same frame, with what the device found checking its IPv4
    /// header checksum (see [`crate::buf::PacketBuf::rx_checksum`]).
    #[inline]
    pub fn with_l3_checksum(mut self, c: Checksum) -> Frame<'a> {
        self.l3 = c;
        self
    }
    /// What the device found checking the IPv4 header checksum
    /// (`Unknown` unless it said).
    #[inline]
    pub fn l3_checksum(&self) -> Checksum {
        self.l3
    }
    /// The frame's bytes.
    #[inline]
    pub fn data(&self) -> &[u8] {
        &self.room[..self.len]
    }
    /// The frame's bytes, mutable.
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.room[..self.len]
    }
    /// The frame's length.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }
    /// True for an empty frame.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Resizes the frame within its buffer; `false` if it does not fit.
    #[inline]
    pub fn set_len(&mut self, len: usize) -> bool {
        if len > self.room.len() {
            return false;
        }
        self.len = len;
        true
    }
    /// Index of the port it came in on (order of `--port` flags).
    #[inline]
    pub fn port(&self) -> u16 {
        self.port
    }
}

/// A per-core packet handler. One instance per core, made by the caller;
/// it is moved to that core and never shared.
pub trait PacketHandler: Send + 'static {
    /// Called before each received burst with the loop's timestamp.
    #[inline]
    fn begin_burst(&mut self, _now: Instant) {}
    /// Decides one frame's fate; may rewrite it in place.
    fn handle(&mut self, frame: &mut Frame<'_>) -> Verdict;
}

/// Forwards every frame unchanged: with two ports, a wire between them.
#[derive(Debug, Default, Clone, Copy)]
pub struct Wire;

impl PacketHandler for Wire {
    #[inline]
    fn handle(&mut self, _frame: &mut Frame<'_>) -> Verdict {
        Verdict::Forward
    }
}

/// Swaps source and destination MAC and sends the frame back (testpmd's
/// `macswap`). Frames too short for an Ethernet header are dropped.
#[derive(Debug, Default, Clone, Copy)]
pub struct MacSwap;

impl PacketHandler for MacSwap {
    #[inline]
    fn handle(&mut self, frame: &mut Frame<'_>) -> Verdict {
        let Ok(mut eth) = EthernetFrame::new_checked(frame.data_mut()) else {
            return Verdict::Drop;
        };
        let (src, dst) = (eth.src_addr(), eth.dst_addr());
        eth.set_src_addr(dst);
        eth.set_dst_addr(src);
        Verdict::Reply
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
        let mut f = Frame::new(&mut b, 60, 0);
        assert_eq!(MacSwap.handle(&mut f), Verdict::Reply);
        assert_eq!(&b[..6], &[2; 6]);
        assert_eq!(&b[6..12], &[1; 6]);
        let mut f = Frame::new(&mut b, 10, 0);
        assert_eq!(MacSwap.handle(&mut f), Verdict::Drop);
    }

    #[test]
    fn frame_len_is_bounded_by_room() {
        let mut b = [0u8; 100];
        let mut f = Frame::new(&mut b, 10, 1);
        assert!(f.set_len(100));
        assert!(!f.set_len(101));
        assert_eq!(f.port(), 1);
    }
}
