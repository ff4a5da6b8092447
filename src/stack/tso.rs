//! TSO in the engine bridge: consecutive full-MSS data segments of one
//! connection leave as one large buffer with a TSO request, for the port
//! to cut (see [`crate::port::PortCaps::tso`]).
//!
//! The engine ([`crate::tcp`]) still emits one [`Seg`] per MSS, so its
//! in-flight records, SACK scoreboard and RACK stay per MSS. This module
//! only changes how the segments are framed: a segment of exactly the
//! connection's send MSS opens a frame; each following segment that
//! continues it in sequence and carries the same header (ports, ACK,
//! window, options, timestamp; PSH may differ) is copied in behind it. A
//! segment shorter than the MSS may end a frame (the device's last cut is
//! short too); anything else (SYN, FIN, RST, a gap in sequence, another
//! header, a full frame) closes it and is framed on its own or opens the
//! next. The port's cut reproduces exactly the segments the engine made:
//! each carries the frame's header with its own sequence number, PSH only
//! on the last.
//!
//! A closed frame that took one segment is an ordinary frame (checksums as
//! before, no request). One that took several has the IP length fields
//! over the whole segment, PSH if any of its segments had it, the TCP
//! checksum field holding the pseudo-header sum over the whole TCP length
//! (as every TSO device expects) and the request `tso_mss` = the MSS; the
//! IPv4 header checksum is left to the device (zero).
//!
//! The payload of one frame is bounded by the buffer's room and by the
//! largest IP packet (65,535 bytes).

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    checksum, EthernetAddress, EthernetFrame, IpAddress, IpProtocol, Ipv4Packet, Ipv6Packet,
    TcpControl, TcpPacket, TcpRepr,
};

use super::segment::{build, Peer};
use super::StackStats;
use crate::buf::{PacketBuf, TxOffload};
use crate::tcp::Seg;

/// The largest IP packet (IPv4 total length; IPv6 payload length).
const IP_MAX: usize = 65_535;
const ETH_LEN: usize = 14;

/// A TSO frame being filled.
struct Open<B> {
    buf: B,
    peer: Peer,
    /// The header of its first segment, which the others must match.
    repr: TcpRepr<'static>,
    /// Offset of the TCP header in the frame.
    l4: usize,
    /// TCP header length.
    thl: usize,
    /// The sequence number the next segment must start at.
    next_seq: u32,
    /// Payload bytes so far.
    payload: usize,
    /// Most payload bytes the frame may hold.
    room: usize,
    /// Segments so far.
    segs: u32,
    psh: bool,
    /// Holds a segment shorter than the MSS: nothing may follow it.
    ended: bool,
}

/// Gathers one connection's segments into TSO frames during one egress
/// pass (see the module docs). Off (every segment framed alone) when the
/// port cannot cut segments.
pub(super) struct Coalescer<B> {
    open: Option<Open<B>>,
    on: bool,
    mss: u16,
}

/// The segment may be part of a TSO frame: plain data (PSH allowed), no
/// SYN, FIN or RST.
#[inline]
fn plain_data(seg: &Seg, mss: u16) -> bool {
    matches!(seg.repr.control, TcpControl::None | TcpControl::Psh)
        && seg.data_len > 0
        && seg.data_len <= mss as u32
}

/// Same header but for the sequence number and PSH.
#[inline]
fn same_header(a: &TcpRepr<'_>, b: &TcpRepr<'_>) -> bool {
    a.src_port == b.src_port
        && a.dst_port == b.dst_port
        && a.ack_number == b.ack_number
        && a.window_len == b.window_len
        && a.window_scale == b.window_scale
        && a.max_seg_size == b.max_seg_size
        && a.sack_permitted == b.sack_permitted
        && a.sack_ranges == b.sack_ranges
        && a.timestamp == b.timestamp
}

impl<B: PacketBuf> Coalescer<B> {
    /// A coalescer for a connection whose send MSS is `mss`; `on` when the
    /// port does TSO.
    #[inline]
    pub fn new(on: bool, mss: u16) -> Coalescer<B> {
        Coalescer {
            open: None,
            // A frame of one MSS gains nothing.
            on: on && mss > 0,
            mss,
        }
    }

    /// Copies `seg`'s payload (written by `fill`) into the open frame if it
    /// continues it. False if there is no open frame or `seg` does not
    /// continue it: then [`Coalescer::close`] it and frame `seg` anew.
    #[inline]
    pub fn extend(&mut self, seg: &Seg, fill: impl FnOnce(&mut [u8])) -> bool {
        let Some(f) = self.open.as_mut() else {
            return false;
        };
        let len = seg.data_len as usize;
        if f.ended
            || !plain_data(seg, self.mss)
            || seg.repr.seq_number.0 as u32 != f.next_seq
            || f.payload + len > f.room
            || !same_header(&f.repr, &seg.repr)
        {
            return false;
        }
        let at = f.l4 + f.thl + f.payload;
        fill(&mut f.buf.room_mut()[at..at + len]);
        f.payload += len;
        f.segs += 1;
        f.next_seq = f.next_seq.wrapping_add(len as u32);
        f.psh |= seg.repr.control == TcpControl::Psh;
        f.ended = len < self.mss as usize;
        true
    }

    /// Opens a frame in `b` with `seg` if it may begin one (a full MSS of
    /// plain data, a buffer that carries TSO requests); then `None`.
    /// Otherwise gives `b` back untouched, for the caller to frame `seg`
    /// alone. Call [`Coalescer::close`] first.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        &mut self,
        mut b: B,
        src_mac: EthernetAddress,
        dst_mac: EthernetAddress,
        peer: Peer,
        seg: &Seg,
        fill: impl FnOnce(&mut [u8]),
    ) -> Option<B> {
        debug_assert!(self.open.is_none(), "close the open frame first");
        if !self.on || seg.data_len != self.mss as u32 || !plain_data(seg, self.mss) {
            return Some(b);
        }
        let thl = seg.repr.header_len();
        // The request is recorded now (a buffer that cannot carry one is
        // framed alone) and withdrawn if the frame takes one segment.
        if !b.set_tx_offload(request(peer, thl, self.mss)) {
            return Some(b);
        }
        let ip_len = if peer.is_v6() { 40 } else { 20 };
        let l4 = ETH_LEN + ip_len;
        let ip_max = if peer.is_v6() {
            IP_MAX
        } else {
            IP_MAX - ip_len
        };
        let room = (b.capacity().saturating_sub(l4).min(ip_max)).saturating_sub(thl);
        // Checksums are left for close, over the whole frame.
        let none = ChecksumCapabilities::ignored();
        let len = seg.data_len as usize;
        if room < 2 * len || !build(&mut b, src_mac, dst_mac, peer, &seg.repr, len, fill, &none) {
            b.set_tx_offload(TxOffload::default());
            return Some(b);
        }
        self.open = Some(Open {
            buf: b,
            peer,
            repr: seg.repr,
            l4,
            thl,
            next_seq: (seg.repr.seq_number.0 as u32).wrapping_add(len as u32),
            payload: len,
            room,
            segs: 1,
            psh: seg.repr.control == TcpControl::Psh,
            ended: false,
        });
        None
    }

    /// Finishes the open frame, if any, for sending: lengths, PSH,
    /// checksums and the request (see the module docs); counts TSO frames
    /// in `stats`. `csum` says which checksums a lone segment's frame
    /// computes in software.
    pub fn close(&mut self, csum: &ChecksumCapabilities, stats: &StackStats) -> Option<B> {
        let mut f = self.open.take()?;
        let tcp_len = f.thl + f.payload;
        let total = f.l4 + tcp_len;
        let tso = f.segs > 1;
        // Within capacity: the frame's room was bounded by it.
        f.buf.set_len(total);
        let (src, dst): (IpAddress, IpAddress) = (f.peer.local().into(), f.peer.remote().into());
        let mut eth = EthernetFrame::new_unchecked(f.buf.data_mut());
        let l4 = match f.peer {
            Peer::V4 { .. } => {
                let mut ip = Ipv4Packet::new_unchecked(eth.payload_mut());
                ip.set_total_len((20 + tcp_len) as u16);
                if tso {
                    ip.set_checksum(0);
                } else if csum.ipv4.tx() {
                    ip.fill_checksum();
                }
                &mut eth.payload_mut()[20..]
            }
            Peer::V6 { .. } => {
                Ipv6Packet::new_unchecked(eth.payload_mut()).set_payload_len(tcp_len as u16);
                &mut eth.payload_mut()[40..]
            }
        };
        let mut t = TcpPacket::new_unchecked(&mut l4[..tcp_len]);
        if f.psh {
            t.set_psh(true);
        }
        if tso {
            t.set_checksum(checksum::pseudo_header(
                &src,
                &dst,
                IpProtocol::Tcp,
                tcp_len as u32,
            ));
            stats.tso_frames.inc();
            stats.tso_segments.add(f.segs as u64);
        } else {
            if csum.tcp.tx() {
                t.fill_checksum(&src, &dst);
            }
            f.buf.set_tx_offload(TxOffload::default());
        }
        Some(f.buf)
    }
}

/// The TSO request for a segment of `peer`'s family with a TCP header of
/// `thl` bytes.
fn request(peer: Peer, thl: usize, mss: u16) -> TxOffload {
    if peer.is_v6() {
        TxOffload::tso_ipv6(thl as u8, mss)
    } else {
        TxOffload::tso_ipv4(thl as u8, mss)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buf::Pool;
    use smoltcp::wire::{Ipv4Address, Ipv6Address, TcpSeqNumber, TcpTimestampRepr};

    const MAC_A: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 1]);
    const MAC_B: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 2]);
    const MSS: u16 = 1448;

    fn pool(frame_size: u32, headroom: u32) -> Pool {
        crate::testing::pool(512, frame_size, headroom)
    }

    const V4: Peer = Peer::V4 {
        local: Ipv4Address::new(10, 0, 0, 1),
        remote: Ipv4Address::new(10, 0, 0, 2),
    };
    const V6: Peer = Peer::V6 {
        local: Ipv6Address::new(0xfd00, 0, 0, 0, 0, 0, 0, 1),
        remote: Ipv6Address::new(0xfd00, 0, 0, 0, 0, 0, 0, 2),
    };

    /// A data segment at `seq` (relative to 1000) of `len` bytes, its
    /// payload at `seq` in the send queue.
    fn seg(seq: u32, len: u32, control: TcpControl) -> Seg {
        Seg {
            repr: TcpRepr {
                src_port: 80,
                dst_port: 40_000,
                control,
                seq_number: TcpSeqNumber((1000 + seq) as i32),
                ack_number: Some(TcpSeqNumber(77)),
                window_len: 1000,
                window_scale: None,
                max_seg_size: None,
                sack_permitted: false,
                sack_ranges: [None; 3],
                timestamp: Some(TcpTimestampRepr::new(5, 6)),
                payload: &[],
            },
            data_off: seq,
            data_len: len,
        }
    }

    fn stream(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 13 % 251) as u8).collect()
    }

    /// Frames `segs` through a coalescer as the bridge does; returns the
    /// frames.
    fn frame_all(
        p: &Pool,
        on: bool,
        peer: Peer,
        segs: &[Seg],
        data: &[u8],
    ) -> Vec<crate::buf::PoolBuf> {
        let csum = ChecksumCapabilities::default();
        let stats = StackStats::default();
        let mut c = Coalescer::new(on, MSS);
        let mut out = Vec::new();
        for s in segs {
            let fill = |d: &mut [u8]| {
                let o = s.data_off as usize;
                d.copy_from_slice(&data[o..o + d.len()]);
            };
            if c.extend(s, fill) {
                continue;
            }
            out.extend(c.close(&csum, &stats));
            let b = p.alloc().unwrap();
            if let Some(mut b) = c.start(b, MAC_A, MAC_B, peer, s, fill) {
                assert!(build(
                    &mut b,
                    MAC_A,
                    MAC_B,
                    peer,
                    &s.repr,
                    s.data_len as usize,
                    fill,
                    &csum
                ));
                out.push(b);
            }
        }
        out.extend(c.close(&csum, &stats));
        assert_eq!(
            stats.tso_segments.get(),
            out.iter()
                .filter(|b| b.tx_offload().tso_mss != 0)
                .map(|b| tcp_payload(b, peer).div_ceil(MSS as usize) as u64)
                .sum::<u64>()
        );
        out
    }

    /// The TCP payload length of a frame.
    fn tcp_payload(b: &crate::buf::PoolBuf, peer: Peer) -> usize {
        let eth = EthernetFrame::new_checked(b.data()).unwrap();
        let l4 = match peer {
            Peer::V4 { .. } => Ipv4Packet::new_checked(eth.payload())
                .unwrap()
                .payload()
                .to_vec(),
            Peer::V6 { .. } => Ipv6Packet::new_checked(eth.payload())
                .unwrap()
                .payload()
                .to_vec(),
        };
        let t = TcpPacket::new_checked(&l4[..]).unwrap();
        t.payload().len()
    }

    /// A bulk stream of full segments and a short tail becomes TSO frames
    /// of whole MSS multiples (the last one ending with the tail), each
    /// with the request, the pseudo-header sum and PSH from its last
    /// segment; with the port's cut applied they are byte for byte the
    /// frames the engine's segments make alone.
    #[test]
    fn a_bulk_stream_becomes_tso_frames_that_cut_back_into_its_segments() {
        for peer in [V4, V6] {
            let p = pool(crate::buf::MAX_FRAME, 128);
            let n = 100 * MSS as usize + 300;
            let data = stream(n);
            let mut segs: Vec<Seg> = (0..100)
                .map(|i| seg(i * MSS as u32, MSS as u32, TcpControl::None))
                .collect();
            segs.push(seg(100 * MSS as u32, 300, TcpControl::Psh));
            let tso = frame_all(&p, true, peer, &segs, &data);
            let alone = frame_all(&p, false, peer, &segs, &data);
            assert_eq!(alone.len(), 101, "without TSO: one frame per segment");
            assert!(alone.iter().all(|b| b.tx_offload().is_none()));
            // 65,535 bytes of IP hold 45 segments of 1448 with a 32-byte
            // TCP header (44 for IPv4's 20-byte header... both give 45*1448
            // = 65,160 <= 65,503).
            let per = (65_535 - if peer.is_v6() { 0 } else { 20 } - 32) / MSS as usize;
            assert_eq!(tso.len(), 101usize.div_ceil(per), "{peer:?}");
            let mut cut = Vec::new();
            for (i, b) in tso.iter().enumerate() {
                let req = b.tx_offload();
                assert_eq!(req.tso_mss, MSS);
                let len = tcp_payload(b, peer);
                if i + 1 < tso.len() {
                    assert_eq!(len, per * MSS as usize, "frame {i}: whole MSS multiples");
                }
                // The checksum field holds the pseudo-header sum.
                let eth = EthernetFrame::new_checked(b.data()).unwrap();
                let (ip_payload, src, dst): (Vec<u8>, IpAddress, IpAddress) = match peer {
                    Peer::V4 { local, remote } => {
                        let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
                        assert_eq!(ip.checksum(), 0, "left to the device");
                        (ip.payload().to_vec(), local.into(), remote.into())
                    }
                    Peer::V6 { local, remote } => {
                        let ip = Ipv6Packet::new_checked(eth.payload()).unwrap();
                        (ip.payload().to_vec(), local.into(), remote.into())
                    }
                };
                let t = TcpPacket::new_checked(&ip_payload[..]).unwrap();
                assert_eq!(
                    t.checksum(),
                    checksum::pseudo_header(&src, &dst, IpProtocol::Tcp, ip_payload.len() as u32)
                );
                assert_eq!(
                    t.psh(),
                    i + 1 == tso.len(),
                    "PSH came with the last segment"
                );
                crate::port::gso::segment(b.data(), MSS as usize, || p.alloc(), |s| cut.push(s))
                    .unwrap();
            }
            assert_eq!(cut.len(), alone.len());
            for (i, (a, b)) in cut.iter().zip(&alone).enumerate() {
                assert!(
                    a.data() == b.data(),
                    "{peer:?} segment {i} differs after the cut"
                );
            }
        }
    }

    /// What stops a frame: a gap in sequence, another header, SYN/FIN/RST,
    /// a segment after a short one; a frame of one segment is ordinary.
    #[test]
    fn frames_stop_at_gaps_other_headers_and_control_segments() {
        let p = pool(crate::buf::MAX_FRAME, 128);
        let m = MSS as u32;
        let data = stream(20 * MSS as usize);
        let other_ack = |s: u32| {
            let mut x = seg(s, m, TcpControl::None);
            x.repr.ack_number = Some(TcpSeqNumber(78));
            x
        };
        let segs = [
            seg(0, m, TcpControl::None),
            seg(m, m, TcpControl::None),
            // another ACK number: a new frame
            other_ack(2 * m),
            other_ack(3 * m),
            // a gap (a retransmission elsewhere): a new frame, alone
            seg(9 * m, m, TcpControl::None),
            // a FIN: alone
            seg(10 * m, 100, TcpControl::Fin),
            // short, then full: the short one may end a frame but not
            // open one
            seg(12 * m, 100, TcpControl::None),
            seg(13 * m, m, TcpControl::None),
            seg(14 * m, 10, TcpControl::None),
            seg(14 * m + 10, m, TcpControl::None),
        ];
        let frames = frame_all(&p, true, V4, &segs, &data);
        let shape: Vec<(usize, bool)> = frames
            .iter()
            .map(|b| (tcp_payload(b, V4), b.tx_offload().tso_mss != 0))
            .collect();
        let full = MSS as usize;
        assert_eq!(
            shape,
            [
                (2 * full, true),
                (2 * full, true),
                (full, false),
                (100, false),
                (100, false),
                (full + 10, true),
                (full, false),
            ]
        );
        // Ordinary frames carry a full, valid checksum.
        for b in frames.iter().filter(|b| b.tx_offload().is_none()) {
            let eth = EthernetFrame::new_checked(b.data()).unwrap();
            let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
            assert!(ip.verify_checksum());
            let t = TcpPacket::new_checked(ip.payload()).unwrap();
            assert!(t.verify_checksum(&ip.src_addr().into(), &ip.dst_addr().into()));
        }
    }

    /// A buffer that cannot carry a TSO request, or whose room holds fewer
    /// than two segments, frames each segment alone.
    #[test]
    fn buffers_without_room_or_request_frame_segments_alone() {
        let m = MSS as u32;
        let data = stream(4 * MSS as usize);
        let segs: Vec<Seg> = (0..4).map(|i| seg(i * m, m, TcpControl::None)).collect();
        for p in [pool(crate::buf::MAX_FRAME, 0), pool(2048, 128)] {
            let frames = frame_all(&p, true, V4, &segs, &data);
            assert_eq!(frames.len(), 4);
            assert!(frames.iter().all(|b| b.tx_offload().is_none()));
        }
    }
}
