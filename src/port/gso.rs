//! Segmentation in software: what a TSO device does with a large TCP
//! segment, for ports that emulate one (the `mem` wire with `tso`).
//!
//! A frame (Ethernet, IPv4 or IPv6 with TCP as the next header, TCP) whose
//! payload is longer than the MSS is cut into frames of `mss` payload
//! bytes (the last one shorter). Each copy of the headers gets its own IP
//! length, sequence number and checksums (the IPv4 header's and the full
//! TCP one); CWR stays on the first segment only, PSH and FIN on the last
//! only. The IPv4 identification is copied unchanged: the stack's frames
//! have Don't Fragment set, whose identification means nothing (RFC 6864).

use smoltcp::wire::{
    EthernetFrame, EthernetProtocol, IpAddress, IpProtocol, Ipv4Packet, Ipv6Packet, TcpPacket,
};

use crate::buf::PacketBuf;

/// Cuts `frame` into segments of `mss` payload bytes, each in a buffer from
/// `alloc`, handed to `out` in order; returns how many. A frame of one MSS
/// or less becomes one segment with its checksums completed. `None` (with
/// the segments so far already handed out) if `frame` is not a TCP segment
/// over IPv4 or IPv6, `mss` is 0, or `alloc` gives no buffer large enough.
pub(crate) fn segment<B: PacketBuf>(
    frame: &[u8],
    mss: usize,
    mut alloc: impl FnMut() -> Option<B>,
    mut out: impl FnMut(B),
) -> Option<usize> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    let (v6, ip_len, l4) = match eth.ethertype() {
        EthernetProtocol::Ipv4 => {
            let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
            if ip.next_header() != IpProtocol::Tcp || ip.more_frags() || ip.frag_offset() != 0 {
                return None;
            }
            (false, ip.header_len() as usize, ip.payload())
        }
        EthernetProtocol::Ipv6 => {
            let ip = Ipv6Packet::new_checked(eth.payload()).ok()?;
            if ip.next_header() != IpProtocol::Tcp {
                return None;
            }
            (true, 40, ip.payload())
        }
        _ => return None,
    };
    let tcp = TcpPacket::new_checked(l4).ok()?;
    if mss == 0 {
        return None;
    }
    let thl = tcp.header_len() as usize;
    let hdrs = EthernetFrame::<&[u8]>::header_len() + ip_len + thl;
    let payload = tcp.payload();
    let (seq, cwr, psh, fin) = (tcp.seq_number(), tcp.cwr(), tcp.psh(), tcp.fin());
    let n = payload.len().div_ceil(mss).max(1);
    for i in 0..n {
        let chunk = &payload[(i * mss).min(payload.len())..((i + 1) * mss).min(payload.len())];
        let mut b = alloc()?;
        let len = hdrs + chunk.len();
        if b.capacity() < len {
            return None;
        }
        let room = &mut b.room_mut()[..len];
        room[..hdrs].copy_from_slice(&frame[..hdrs]);
        room[hdrs..].copy_from_slice(chunk);
        b.set_len(len);
        let tcp_len = thl + chunk.len();
        let mut e = EthernetFrame::new_unchecked(b.data_mut());
        let (src, dst, t): (IpAddress, IpAddress, _) = if v6 {
            let mut ip = Ipv6Packet::new_unchecked(e.payload_mut());
            ip.set_payload_len(tcp_len as u16);
            let (s, d) = (ip.src_addr(), ip.dst_addr());
            (s.into(), d.into(), &mut e.payload_mut()[40..])
        } else {
            let mut ip = Ipv4Packet::new_unchecked(e.payload_mut());
            ip.set_total_len((ip_len + tcp_len) as u16);
            ip.fill_checksum();
            let (s, d) = (ip.src_addr(), ip.dst_addr());
            (s.into(), d.into(), &mut e.payload_mut()[ip_len..])
        };
        let mut t = TcpPacket::new_unchecked(t);
        let last = i + 1 == n;
        t.set_seq_number(seq + i * mss);
        t.set_cwr(cwr && i == 0);
        t.set_psh(psh && last);
        t.set_fin(fin && last);
        t.fill_checksum(&src, &dst);
        out(b);
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buf::Pool;
    use crate::testing::{emit_tcp, emit_udp, syn, Ends};
    use smoltcp::wire::TcpControl;

    const ENDS: Ends = Ends {
        src_mac: [2, 0, 0, 0, 0, 1],
        dst_mac: [2, 0, 0, 0, 0, 2],
        src_ip: std::net::Ipv4Addr::new(10, 0, 0, 1),
        dst_ip: std::net::Ipv4Addr::new(10, 0, 0, 2),
    };

    fn pool(frame_size: u32) -> Pool {
        crate::testing::pool(16, frame_size, 128)
    }

    /// A 2,500-byte FIN+PSH segment cut by 1,000: three valid segments in
    /// order, FIN and PSH on the last only, the payload intact.
    #[test]
    fn a_large_segment_is_cut_into_valid_mss_segments() {
        let big = pool(8192);
        let small = pool(2048);
        let data: Vec<u8> = (0..2500).map(|i| (i % 251) as u8).collect();
        let mut seg = syn(80, 9000, 5000);
        seg.control = TcpControl::Fin;
        seg.max_seg_size = None;
        seg.payload = &data;
        let mut f = big.alloc().unwrap();
        let n = emit_tcp(f.room_mut(), &ENDS, &seg);
        f.set_len(n);
        {
            // PSH too (the repr has one control only).
            let mut e = EthernetFrame::new_unchecked(f.data_mut());
            let mut ip = Ipv4Packet::new_unchecked(e.payload_mut());
            TcpPacket::new_unchecked(ip.payload_mut()).set_psh(true);
        }
        let mut cut = Vec::new();
        assert_eq!(
            segment(f.data(), 1000, || small.alloc(), |b| cut.push(b)),
            Some(3)
        );
        let mut got = Vec::new();
        for (i, b) in cut.iter().enumerate() {
            let e = EthernetFrame::new_checked(b.data()).unwrap();
            let ip = Ipv4Packet::new_checked(e.payload()).unwrap();
            assert!(ip.verify_checksum());
            let t = TcpPacket::new_checked(ip.payload()).unwrap();
            assert!(t.verify_checksum(&ip.src_addr().into(), &ip.dst_addr().into()));
            assert_eq!(t.seq_number().0, 5000 + 1000 * i as i32);
            assert_eq!((t.fin(), t.psh()), (i == 2, i == 2));
            got.extend_from_slice(t.payload());
        }
        assert_eq!(got, data);
        // Not a TCP segment: refused. Buffers too small: refused.
        let mut u = big.alloc().unwrap();
        let n = emit_udp(u.room_mut(), &ENDS, 1, 2, &[0; 100]);
        u.set_len(n);
        assert_eq!(segment(u.data(), 1000, || small.alloc(), |_| {}), None);
        let tiny = pool(256);
        assert_eq!(segment(f.data(), 1000, || tiny.alloc(), |_| {}), None);
    }
}
