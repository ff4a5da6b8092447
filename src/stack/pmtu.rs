//! ICMP errors that say one of our segments was too big for the path
//! (IPv4 "fragmentation needed", RFC 1191; ICMPv6 "packet too big",
//! RFC 8201): the connection the message quotes is found and told (see
//! `tcp::pmtu`). smoltcp still gets every ICMP message afterwards, as
//! before; it takes none of these for the bypass engine's connections.

use smoltcp::wire::{
    EthernetFrame, EthernetProtocol, Icmpv4DstUnreachable, Icmpv4Message, Icmpv4Packet,
    Icmpv6Message, Icmpv6Packet, IpProtocol, Ipv4Packet, Ipv6Packet, TcpPacket,
};

use super::engine::own_mut;
use super::*;
use crate::tcp::pmtu::MIN_MTU_V4;

/// What a "too big" message says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct TooBig {
    /// The next hop's MTU (IP header included).
    pub mtu: u32,
    /// The connection of the quoted segment.
    pub key: TcpKey,
    /// The quoted segment's sequence number.
    pub seq: u32,
    /// The IP header's length in the family (20 or 40).
    pub ip_header: u32,
}

/// RFC 1191's plateaus, for a router that sends an MTU of 0 (from before
/// RFC 1191): the next one below the dropped packet's length is tried.
const PLATEAUS: [u32; 9] = [32000, 17914, 8166, 4352, 2002, 1492, 1006, 508, 296];

/// Reads an ICMP message for us (`frame`, classified as ICMP) as a
/// too-big message quoting a TCP segment sent from one of our addresses;
/// `None` for any other message, or for a quote too short to name one.
pub(super) fn too_big(frame: &[u8], ours: &Ours) -> Option<TooBig> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    match eth.ethertype() {
        EthernetProtocol::Ipv4 => {
            let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
            let icmp = Icmpv4Packet::new_checked(ip.payload()).ok()?;
            if icmp.msg_type() != Icmpv4Message::DstUnreachable
                || Icmpv4DstUnreachable::from(icmp.msg_code()) != Icmpv4DstUnreachable::FragRequired
            {
                return None;
            }
            // The quote: the dropped packet's IPv4 header, then at least
            // the first 8 bytes of its TCP header (RFC 792).
            let q = icmp.data();
            if q.len() < 20 {
                return None;
            }
            let quoted = Ipv4Packet::new_unchecked(q);
            let ihl = usize::from(quoted.header_len());
            if quoted.version() != 4 || quoted.next_header() != IpProtocol::Tcp {
                return None;
            }
            // The next hop's MTU, in the header's second word (RFC 1191;
            // smoltcp has no accessor for it).
            let mut mtu = u32::from(u16::from_be_bytes([ip.payload()[6], ip.payload()[7]]));
            if mtu == 0 {
                let sent = u32::from(quoted.total_len());
                mtu = PLATEAUS
                    .into_iter()
                    .find(|&p| p < sent)
                    .unwrap_or(MIN_MTU_V4);
            }
            if ours.v4 != Some(quoted.src_addr()) || ihl < 20 {
                return None;
            }
            quoted_segment(
                ours,
                quoted.src_addr().into(),
                quoted.dst_addr().into(),
                &q[ihl..],
            )
            .map(|(key, seq)| TooBig {
                mtu,
                key,
                seq,
                ip_header: 20,
            })
        }
        EthernetProtocol::Ipv6 => {
            let ip = Ipv6Packet::new_checked(eth.payload()).ok()?;
            let (next, bytes, _) = classify::walk_ext(ip.next_header(), ip.payload()).ok()?;
            if next != IpProtocol::Icmpv6 {
                return None;
            }
            let icmp = Icmpv6Packet::new_checked(bytes).ok()?;
            if icmp.msg_type() != Icmpv6Message::PktTooBig || icmp.msg_code() != 0 {
                return None;
            }
            // The quoted packet's TCP header right after its fixed header
            // (a quote with extension headers is not ours: we send none).
            let q = icmp.payload();
            if q.len() < 40 {
                return None;
            }
            let quoted = Ipv6Packet::new_unchecked(q);
            if quoted.version() != 6 || quoted.next_header() != IpProtocol::Tcp {
                return None;
            }
            quoted_segment(
                ours,
                quoted.src_addr().into(),
                quoted.dst_addr().into(),
                &q[40..],
            )
            .map(|(key, seq)| TooBig {
                mtu: icmp.pkt_too_big_mtu(),
                key,
                seq,
                ip_header: 40,
            })
        }
        _ => None,
    }
}

/// The connection key and sequence number of a quoted TCP header sent
/// from our `local` address to `remote`, if at least its first 8 bytes
/// (ports and sequence number) are there.
fn quoted_segment(ours: &Ours, local: IpAddr, remote: IpAddr, tcp: &[u8]) -> Option<(TcpKey, u32)> {
    if tcp.len() < 8 {
        return None;
    }
    // Only the ports and the sequence number are read: the first 8 bytes.
    let t = TcpPacket::new_unchecked(tcp);
    let key = ours.key(local, remote, t.dst_port(), t.src_port())?;
    Some((key, t.seq_number().0 as u32))
}

impl<Q: PortQueue> Stack<Q> {
    /// Tells the connection a too-big message quotes, if it runs on the
    /// bypass engine (the smoltcp engine has no path MTU discovery).
    pub(super) fn path_mtu(&mut self, m: TooBig) {
        let now = self.now_us;
        let Some(idx) = self.lookup(m.key) else {
            self.stats.tcp.pmtu_ignored.inc();
            return;
        };
        let Some(o) = self.slots[idx as usize].conn.as_mut().and_then(own_mut) else {
            self.stats.tcp.pmtu_ignored.inc();
            return;
        };
        let mut env = self.own.env(&self.stats.tcp, o.cfg, now);
        if o.tcb.on_path_mtu(&mut env, m.mtu, m.ip_header, m.seq) {
            // Later connections to the peer start with it.
            if let Some(peer) = self.conn_peer(idx) {
                self.own.learn_path_mtu(peer.remote(), m.mtu, now);
            }
            self.own_after(idx, true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::wire::{EthernetAddress, Ipv4Address, Ipv6Address};

    const US: Ipv4Address = Ipv4Address::new(10, 0, 0, 1);
    const PEER: Ipv4Address = Ipv4Address::new(10, 0, 9, 9);
    const US6: Ipv6Address = Ipv6Address::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);
    const PEER6: Ipv6Address = Ipv6Address::new(0xfd00, 0, 0, 0, 0, 0, 0, 9);

    fn ours() -> Ours {
        Ours {
            mac: EthernetAddress([2, 0, 0, 0, 0, 1]),
            v4: Some(US),
            v6: vec![US6],
        }
    }

    /// The start of a 1,500-byte IPv4 TCP packet from `src`:80 to PEER:4000.
    fn quote4(src: Ipv4Address, proto: u8, seq: u32) -> Vec<u8> {
        let mut q = vec![0x45, 0, 0x05, 0xdc, 0, 0, 0x40, 0, 64, proto, 0, 0];
        q.extend_from_slice(&src.octets());
        q.extend_from_slice(&PEER.octets());
        q.extend_from_slice(&80u16.to_be_bytes());
        q.extend_from_slice(&4000u16.to_be_bytes());
        q.extend_from_slice(&seq.to_be_bytes());
        q
    }

    /// An Ethernet frame with IP protocol `proto` bytes `l4`: IPv4 from
    /// PEER to US, or IPv6 from PEER6 to US6 (no checksums: not read).
    fn frame(v6: bool, l4: &[u8]) -> Vec<u8> {
        let mut f = vec![0; 12];
        if v6 {
            f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
            f.extend_from_slice(&(l4.len() as u16).to_be_bytes());
            f.extend_from_slice(&[58, 64]);
            f.extend_from_slice(&PEER6.octets());
            f.extend_from_slice(&US6.octets());
        } else {
            f.extend_from_slice(&[0x08, 0x00, 0x45, 0]);
            f.extend_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
            f.extend_from_slice(&[0, 0, 0, 0, 64, 1, 0, 0]);
            f.extend_from_slice(&PEER.octets());
            f.extend_from_slice(&US.octets());
        }
        f.extend_from_slice(l4);
        f
    }

    fn icmp4(code: u8, mtu: u16, quote: &[u8]) -> Vec<u8> {
        let mut m = vec![3, code, 0, 0, 0, 0];
        m.extend_from_slice(&mtu.to_be_bytes());
        m.extend_from_slice(quote);
        frame(false, &m)
    }

    #[test]
    fn fragmentation_needed_names_the_connection_and_the_mtu() {
        let m = too_big(&icmp4(4, 1280, &quote4(US, 6, 777)), &ours()).unwrap();
        assert_eq!(
            m,
            TooBig {
                mtu: 1280,
                key: ours().key(US.into(), PEER.into(), 4000, 80).unwrap(),
                seq: 777,
                ip_header: 20,
            }
        );
        // A router from before RFC 1191 says 0: the plateau below 1,500.
        let m = too_big(&icmp4(4, 0, &quote4(US, 6, 777)), &ours()).unwrap();
        assert_eq!(m.mtu, 1492);
    }

    #[test]
    fn other_icmp_and_quotes_not_of_ours_are_not_too_big() {
        let q = quote4(US, 6, 1);
        // Host unreachable, not fragmentation needed.
        assert_eq!(too_big(&icmp4(1, 1280, &q), &ours()), None);
        // Sent by someone else, or not TCP.
        assert_eq!(too_big(&icmp4(4, 1280, &quote4(PEER, 6, 1)), &ours()), None);
        assert_eq!(too_big(&icmp4(4, 1280, &quote4(US, 17, 1)), &ours()), None);
        // Cut short of the sequence number, or of the header.
        assert_eq!(too_big(&icmp4(4, 1280, &q[..27]), &ours()), None);
        assert_eq!(too_big(&icmp4(4, 1280, &q[..12]), &ours()), None);
        assert_eq!(too_big(&icmp4(4, 1280, &[]), &ours()), None);
        // A header length under 20 bytes.
        let mut bad = q.clone();
        bad[0] = 0x44;
        assert_eq!(too_big(&icmp4(4, 1280, &bad), &ours()), None);
        // Runts and other protocols.
        assert_eq!(too_big(&[0; 10], &ours()), None);
        assert_eq!(too_big(&frame(false, &[8, 0, 0, 0]), &ours()), None);
    }

    #[test]
    fn packet_too_big_names_the_connection_and_the_mtu() {
        let mut q = vec![0x60, 0, 0, 0, 0x05, 0xa0, 6, 64];
        q.extend_from_slice(&US6.octets());
        q.extend_from_slice(&PEER6.octets());
        q.extend_from_slice(&80u16.to_be_bytes());
        q.extend_from_slice(&4000u16.to_be_bytes());
        q.extend_from_slice(&99u32.to_be_bytes());
        let mut m = vec![2, 0, 0, 0];
        m.extend_from_slice(&1400u32.to_be_bytes());
        m.extend_from_slice(&q);
        let got = too_big(&frame(true, &m), &ours()).unwrap();
        assert_eq!(
            got,
            TooBig {
                mtu: 1400,
                key: ours().key(US6.into(), PEER6.into(), 4000, 80).unwrap(),
                seq: 99,
                ip_header: 40,
            }
        );
        // Destination unreachable (type 1) is not it; nor a quote whose
        // next header is not TCP.
        m[0] = 1;
        assert_eq!(too_big(&frame(true, &m), &ours()), None);
        m[0] = 2;
        m[8 + 6] = 17;
        assert_eq!(too_big(&frame(true, &m), &ours()), None);
    }
}
