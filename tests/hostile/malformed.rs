//! The hostile suite's catalogue of malformed frames, IPv4 and IPv6, each
//! with the counter it must bump.

use super::*;

/// Frames of every malformed kind, each with the counter it must bump.
pub fn malformed() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let syn = wire::tcp_frame(&from_client(40000, 1, TcpControl::Syn, &[]));
    let data = wire::tcp_frame(&from_client(40000, 1, TcpControl::Psh, b"0123456789abcdef"));
    let udp = wire::ip_frame(
        CLIENT,
        SERVER,
        CMAC,
        SMAC,
        IpProtocol::Udp,
        &[0x13, 0x88, 0, 7, 0, 12, 0, 0, 1, 2, 3, 4],
    );
    let icmp = wire::ip_frame(
        CLIENT,
        SERVER,
        CMAC,
        SMAC,
        IpProtocol::Icmp,
        &[8, 0, 0, 0, 0, 1, 0, 1, 9, 9, 9, 9],
    );
    let mut v: Vec<(&'static str, Vec<u8>, &'static str)> = vec![];
    let mut m =
        |name: &'static str, base: &Vec<u8>, f: &dyn Fn(&mut Vec<u8>), ctr: &'static str| {
            let mut x = base.clone();
            f(&mut x);
            v.push((name, x, ctr));
        };
    m("runt ethernet", &syn, &|x| x.truncate(10), "malformed");
    m("ip truncated", &syn, &|x| x.truncate(14 + 12), "malformed");
    m(
        "tcp truncated",
        &syn,
        &|x| x.truncate(14 + 20 + 10),
        "malformed",
    );
    m("ihl below 5", &syn, &|x| x[14] = 0x43, "malformed");
    m("ihl past packet", &syn, &|x| x[14] = 0x4f, "malformed");
    m("version 6 in ipv4", &syn, &|x| x[14] = 0x65, "malformed");
    m(
        "total length past frame",
        &syn,
        &|x| x[16..18].copy_from_slice(&1400u16.to_be_bytes()),
        "malformed",
    );
    m(
        "total length below header",
        &syn,
        &|x| x[16..18].copy_from_slice(&10u16.to_be_bytes()),
        "malformed",
    );
    m(
        "data offset below 5",
        &syn,
        &|x| x[14 + 20 + 12] = 0x30,
        "malformed",
    );
    m(
        "data offset past segment",
        &data,
        &|x| x[14 + 20 + 12] = 0xf0,
        "malformed",
    );
    m("ip checksum", &syn, &|x| x[14 + 10] ^= 0x55, "bad_checksum");
    m(
        "tcp checksum",
        &data,
        &|x| *x.last_mut().unwrap() ^= 1,
        "bad_checksum",
    );
    m(
        "udp checksum",
        &udp,
        &|x| *x.last_mut().unwrap() ^= 1,
        "bad_checksum",
    );
    m(
        "icmp checksum",
        &icmp,
        &|x| *x.last_mut().unwrap() ^= 1,
        "bad_checksum",
    );
    m(
        "more fragments",
        &syn,
        &|x| {
            x[14 + 6] |= 0x20;
            fix_ip_csum(x)
        },
        "fragment",
    );
    m(
        "fragment offset",
        &syn,
        &|x| {
            x[14 + 7] = 8;
            fix_ip_csum(x)
        },
        "fragment",
    );
    m(
        "broadcast source",
        &syn,
        &|x| {
            x[26..30].copy_from_slice(&[255; 4]);
            fix_ip_csum(x);
            fix_tcp_csum(x)
        },
        "malformed",
    );
    m(
        "multicast source",
        &syn,
        &|x| {
            x[26..30].copy_from_slice(&[224, 0, 0, 1]);
            fix_ip_csum(x);
            fix_tcp_csum(x)
        },
        "malformed",
    );
    m(
        "port zero",
        &syn,
        &|x| {
            x[34..36].copy_from_slice(&[0, 0]);
            fix_tcp_csum(x)
        },
        "malformed",
    );
    m(
        "ipv4 under the ipv6 ethertype",
        &syn,
        &|x| x[12..14].copy_from_slice(&[0x86, 0xdd]),
        "malformed",
    );
    m(
        "unknown ethertype",
        &syn,
        &|x| x[12..14].copy_from_slice(&[0x88, 0xb5]),
        "unsupported",
    );
    m(
        "unknown ip protocol",
        &syn,
        &|x| {
            x[14 + 9] = 47;
            fix_ip_csum(x)
        },
        "unsupported",
    );
    v.push((
        "tcp option garbage",
        {
            // SYN with options: MSS with a bad length, then junk.
            let mut x = wire::tcp_frame(&from_client(40001, 1, TcpControl::Syn, &[]));
            // data offset 6 -> 7 words: append 4 bytes of options in place of
            // the MSS option: kind 2 len 7 (invalid), then junk.
            let t = 14 + 20;
            x[t + 12] = 0x60;
            x[t + 20..t + 24].copy_from_slice(&[2, 7, 0xff, 0xff]);
            fix_tcp_csum(&mut x);
            x
        },
        "malformed",
    ));
    v.extend(malformed6());
    v
}

/// The malformed kinds RFC 8200 owes a Parameter Problem to.
pub const OWED_AN_ICMP6_ERROR: [&str; 3] = [
    "v6 routing with segments left",
    "v6 option that says discard and tell",
    "v6 unknown next header",
];

pub fn is_param_problem(frame: &[u8]) -> bool {
    use smoltcp::wire::{EthernetFrame, Icmpv6Message, Icmpv6Packet, Ipv6Packet};
    EthernetFrame::new_checked(frame)
        .ok()
        .and_then(|e| {
            let ip = Ipv6Packet::new_checked(e.payload()).ok()?;
            let icmp = Icmpv6Packet::new_checked(ip.payload()).ok()?;
            Some(icmp.msg_type() == Icmpv6Message::ParamProblem)
        })
        .unwrap_or(false)
}

/// IPv6 frames of every malformed kind, with the counter each must land in.
pub fn malformed6() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    use bypass::testing::{emit_udp6, tcp6_vec, with_ext6, Ends6};
    let e = Ends6 {
        src_mac: CMAC,
        dst_mac: SMAC,
        src_ip: CLIENT6,
        dst_ip: SERVER6,
    };
    let syn = tcp6_vec(&e, &bypass::testing::syn(40000, PORT, 1));
    let (hbh, dst, route, frag) = (
        IpProtocol::HopByHop,
        IpProtocol::Ipv6Opts,
        IpProtocol::Ipv6Route,
        IpProtocol::Ipv6Frag,
    );
    const PAD: [u8; 6] = [1, 4, 0, 0, 0, 0];
    let ext = |chain: &[(IpProtocol, &[u8])]| with_ext6(&syn, chain).unwrap();
    let payload_len = |x: &mut Vec<u8>, n: u16| x[18..20].copy_from_slice(&n.to_be_bytes());
    let mut v: Vec<(&'static str, Vec<u8>, &'static str)> = vec![];
    let mut m = |name: &'static str, mut x: Vec<u8>, f: &dyn Fn(&mut Vec<u8>), ctr| {
        f(&mut x);
        v.push((name, x, ctr));
    };
    m(
        "v6 header truncated",
        syn.clone(),
        &|x| x.truncate(14 + 30),
        "malformed",
    );
    m(
        "v6 tcp truncated",
        syn.clone(),
        &|x| x.truncate(14 + 40 + 12),
        "malformed",
    );
    m(
        "v6 payload length past the frame",
        syn.clone(),
        &|x| payload_len(x, 900),
        "malformed",
    );
    m(
        "v6 payload length short of tcp",
        syn.clone(),
        &|x| payload_len(x, 8),
        "malformed",
    );
    m("v6 version 7", syn.clone(), &|x| x[14] = 0x70, "malformed");
    m(
        "v6 bad tcp checksum",
        syn.clone(),
        &|x| x[14 + 40 + 16] ^= 0xff,
        "bad_checksum",
    );
    m(
        "v6 from a group",
        syn.clone(),
        &|x| x[22] = 0xff,
        "malformed",
    );
    m(
        "v6 to another host",
        syn.clone(),
        &|x| x[14 + 39] = 0x77,
        "not_for_us",
    );
    m(
        "v6 fragment header",
        ext(&[(frag, &[6, 0, 0, 1, 0, 0])]),
        &|_| {},
        "fragment",
    );
    m(
        "v6 routing with segments left",
        ext(&[(route, &[4, 1, 0, 0, 0, 0])]),
        &|_| {},
        "unsupported",
    );
    m(
        "v6 option that says discard",
        ext(&[(dst, &[0x7e, 4, 0, 0, 0, 0])]),
        &|_| {},
        "unsupported",
    );
    m(
        "v6 option past its header",
        ext(&[(dst, &[1, 9, 0, 0, 0, 0])]),
        &|_| {},
        "bad_ext_header",
    );
    m(
        "v6 hop-by-hop not first",
        ext(&[(dst, &PAD), (hbh, &PAD)]),
        &|_| {},
        "bad_ext_header",
    );
    let nine: Vec<(IpProtocol, &[u8])> = (0..9).map(|_| (dst, &PAD[..])).collect();
    m(
        "v6 nine extension headers",
        ext(&nine),
        &|_| {},
        "bad_ext_header",
    );
    m(
        "v6 extension header past the payload",
        ext(&[(dst, &PAD)]),
        &|x| x[14 + 40 + 1] = 100,
        "bad_ext_header",
    );
    m(
        "v6 no next header",
        ext(&[(dst, &PAD)]),
        &|x| x[14 + 40] = 59,
        "unsupported",
    );
    m(
        "v6 unknown next header",
        ext(&[(dst, &PAD)]),
        &|x| x[14 + 40] = 253,
        "unsupported",
    );
    m(
        "v6 option that says discard and tell",
        ext(&[(dst, &[0xbe, 4, 0, 0, 0, 0])]),
        &|_| {},
        "unsupported",
    );
    m(
        "v6 extension headers truncated",
        ext(&[(hbh, &PAD), (dst, &PAD)]),
        &|x| {
            x.truncate(14 + 40 + 12);
            payload_len(x, 12)
        },
        "bad_ext_header",
    );
    let mut udp = vec![0u8; 128];
    let n = emit_udp6(&mut udp, &e, 5000, 7, b"zero");
    udp.truncate(n);
    m(
        "v6 udp zero checksum",
        udp,
        &|x| x[14 + 40 + 6..14 + 40 + 8].fill(0),
        "bad_checksum",
    );
    // Neighbour discovery about addresses that are not ours: a
    // solicitation for another target (its own solicited-node group).
    let other: Ipv6Addr = "fd00::12:3456".parse().unwrap();
    m(
        "v6 ns for another address",
        bypass::testing::ns6_vec(CMAC, CLIENT6, other),
        &|_| {},
        "not_for_us",
    );
    v
}

pub fn fix_ip_csum(x: &mut [u8]) {
    let mut p = smoltcp::wire::Ipv4Packet::new_unchecked(&mut x[14..]);
    p.fill_checksum();
}

pub fn fix_tcp_csum(x: &mut [u8]) {
    let p = smoltcp::wire::Ipv4Packet::new_unchecked(&x[14..]);
    let (s, d, hl, tl) = (
        p.src_addr(),
        p.dst_addr(),
        p.header_len() as usize,
        p.total_len() as usize,
    );
    let mut t = smoltcp::wire::TcpPacket::new_unchecked(&mut x[14 + hl..14 + tl]);
    t.fill_checksum(&s.into(), &d.into());
}
