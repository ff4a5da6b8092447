//! The TCP header on the wire for the engine: parse and emit with a fast
//! path for the one layout almost every segment of an established
//! connection has.
//!
//! smoltcp's `TcpRepr::parse` and `TcpRepr::emit` walk the options through
//! a general `TcpOption` parser and writer. With timestamps on (RFC 7323),
//! every segment carries `NOP NOP TS(10)`, and that walk cost about 290
//! instructions per parse: 12% of a request/response transaction (it ran
//! twice, in the classifier and in the engine's bridge), more than the
//! engine's whole input processing. RFC 7323 Appendix A suggests exactly
//! this layout so that receivers can recognise it with one comparison, and
//! Linux does (`tcp_fast_parse_options`). Here the fixed header is read and
//! written with smoltcp's `TcpPacket` accessors, the 12-byte timestamp
//! block is recognised or written whole, and every other option layout goes
//! through smoltcp's own `TcpOption` parser and writer. The result is the
//! same `TcpRepr` as smoltcp's, and the same set of segments is refused.

use smoltcp::wire::{TcpControl, TcpOption, TcpPacket, TcpRepr, TcpTimestampRepr};

/// NOP, NOP, kind 8 (timestamps), length 10: RFC 7323 Appendix A.
const TS_LEAD: [u8; 4] = [1, 1, 8, 10];

/// Bytes of the fixed TCP header.
const FIXED: usize = 20;

/// A segment with no flags, options or payload, to fill in with struct
/// update syntax.
pub const BLANK: TcpRepr<'static> = TcpRepr {
    src_port: 0,
    dst_port: 0,
    control: TcpControl::None,
    seq_number: smoltcp::wire::TcpSeqNumber(0),
    ack_number: None,
    window_len: 0,
    window_scale: None,
    max_seg_size: None,
    sack_permitted: false,
    sack_ranges: [None; 3],
    timestamp: None,
    payload: &[],
};

/// The header fields and options of a TCP segment, with its payload, or
/// `None` for a header smoltcp's parser would refuse as well: a port of 0,
/// SYN with FIN or RST, FIN with RST, or a malformed option. The checksum
/// is not looked at (the classifier checked it, or the port did).
pub fn parse<'a>(t: &TcpPacket<&'a [u8]>) -> Option<TcpRepr<'a>> {
    t.check_len().ok()?;
    if t.src_port() == 0 || t.dst_port() == 0 {
        return None;
    }
    let control = match (t.syn(), t.fin(), t.rst()) {
        (false, false, false) if t.psh() => TcpControl::Psh,
        (false, false, false) => TcpControl::None,
        (true, false, false) => TcpControl::Syn,
        (false, true, false) => TcpControl::Fin,
        (false, false, true) => TcpControl::Rst,
        _ => return None,
    };
    let mut r = TcpRepr {
        src_port: t.src_port(),
        dst_port: t.dst_port(),
        control,
        seq_number: t.seq_number(),
        ack_number: t.ack().then(|| t.ack_number()),
        window_len: t.window_len(),
        payload: t.payload(),
        ..BLANK
    };
    let opts = t.options();
    if opts.len() == 12 && opts[..4] == TS_LEAD {
        r.timestamp = Some(TcpTimestampRepr::new(be32(&opts[4..8]), be32(&opts[8..12])));
    } else if !opts.is_empty() {
        slow_options(opts, &mut r)?;
    }
    Some(r)
}

/// Whether [`parse`] accepts `t` (checked with `TcpPacket::new_checked`),
/// without building the `TcpRepr`: what the classifier asks of every TCP
/// frame, for either engine.
pub fn acceptable(t: &TcpPacket<&[u8]>) -> bool {
    if t.src_port() == 0 || t.dst_port() == 0 {
        return false;
    }
    if (t.syn() as u8) + (t.fin() as u8) + (t.rst() as u8) > 1 {
        return false;
    }
    let opts = t.options();
    if opts.is_empty() || (opts.len() == 12 && opts[..4] == TS_LEAD) {
        return true;
    }
    let mut scratch = BLANK;
    slow_options(opts, &mut scratch).is_some()
}

/// Any other option layout, option by option with smoltcp's parser (the
/// same meaning as `TcpRepr::parse`: a window scale over 14 is read as 14).
#[cold]
fn slow_options(mut opts: &[u8], r: &mut TcpRepr) -> Option<()> {
    while !opts.is_empty() {
        let (rest, opt) = TcpOption::parse(opts).ok()?;
        match opt {
            TcpOption::EndOfList => break,
            TcpOption::MaxSegmentSize(v) => r.max_seg_size = Some(v),
            TcpOption::WindowScale(v) => r.window_scale = Some(v.min(14)),
            TcpOption::SackPermitted => r.sack_permitted = true,
            TcpOption::SackRange(s) => r.sack_ranges = s,
            TcpOption::TimeStamp { tsval, tsecr } => {
                r.timestamp = Some(TcpTimestampRepr::new(tsval, tsecr));
            }
            TcpOption::NoOperation | TcpOption::Unknown { .. } => {}
        }
        opts = rest;
    }
    Some(())
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Writes `r`'s header (not its payload, not the checksum) at the start of
/// `t`, which must hold `r.header_len()` bytes, in the same number of
/// bytes as smoltcp's `TcpRepr::emit`. A timestamp alone is written as
/// RFC 7323 Appendix A lays it out (`NOP NOP TS`), where smoltcp writes
/// `TS EOL EOL`: the layout Linux's receive fast path recognises too.
/// SYNs and segments with SACK blocks are written by smoltcp.
pub fn emit(r: &TcpRepr, t: &mut TcpPacket<&mut [u8]>) {
    let sack = r.ack_number.is_some() && r.sack_ranges.iter().any(Option::is_some);
    if r.max_seg_size.is_some() || r.window_scale.is_some() || r.sack_permitted || sack {
        return slow_emit(r, t);
    }
    t.set_src_port(r.src_port);
    t.set_dst_port(r.dst_port);
    t.set_seq_number(r.seq_number);
    t.set_ack_number(r.ack_number.unwrap_or_default());
    t.set_window_len(r.window_len);
    t.set_urgent_at(0);
    t.clear_flags();
    match r.control {
        TcpControl::None => {}
        TcpControl::Psh => t.set_psh(true),
        TcpControl::Syn => t.set_syn(true),
        TcpControl::Fin => t.set_fin(true),
        TcpControl::Rst => t.set_rst(true),
    }
    t.set_ack(r.ack_number.is_some());
    t.set_checksum(0);
    match r.timestamp {
        None => t.set_header_len(FIXED as u8),
        Some(ts) => {
            t.set_header_len((FIXED + 12) as u8);
            let o = t.options_mut();
            o[..4].copy_from_slice(&TS_LEAD);
            o[4..8].copy_from_slice(&ts.tsval.to_be_bytes());
            o[8..12].copy_from_slice(&ts.tsecr.to_be_bytes());
        }
    }
}

/// SYNs, SYN-ACKs and segments with SACK blocks: smoltcp's writer.
#[cold]
fn slow_emit(r: &TcpRepr, t: &mut TcpPacket<&mut [u8]>) {
    let any = smoltcp::wire::IpAddress::v4(0, 0, 0, 0);
    r.emit(
        t,
        &any,
        &any,
        &smoltcp::phy::ChecksumCapabilities::ignored(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::phy::ChecksumCapabilities;
    use smoltcp::wire::IpAddress;

    const A: IpAddress = IpAddress::v4(10, 0, 0, 1);

    fn smol<'a>(t: &TcpPacket<&'a [u8]>) -> Option<TcpRepr<'a>> {
        TcpRepr::parse(t, &A, &A, &ChecksumCapabilities::ignored()).ok()
    }

    /// The same inputs on every run.
    struct Rng(crate::port::mem::Rng);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0.next()
        }
        fn byte(&mut self) -> u8 {
            self.next() as u8
        }
    }

    /// A header of `opts.len()` option bytes (padded to a multiple of 4
    /// with what follows in `opts`), flags `flags`, then `payload`.
    fn segment(flags: u8, opts: &[u8], payload: &[u8]) -> Vec<u8> {
        let hl = FIXED + opts.len();
        let mut v = vec![0u8; hl + payload.len()];
        v[0..2].copy_from_slice(&40000u16.to_be_bytes());
        v[2..4].copy_from_slice(&80u16.to_be_bytes());
        v[4..8].copy_from_slice(&7u32.to_be_bytes());
        v[8..12].copy_from_slice(&9u32.to_be_bytes());
        v[12] = ((hl / 4) as u8) << 4;
        v[13] = flags;
        v[14..16].copy_from_slice(&1000u16.to_be_bytes());
        v[FIXED..hl].copy_from_slice(opts);
        v[hl..].copy_from_slice(payload);
        v
    }

    #[test]
    fn the_timestamp_layout_is_read_like_smoltcp_reads_it() {
        let mut o = TS_LEAD.to_vec();
        o.extend_from_slice(&0x0102_0304u32.to_be_bytes());
        o.extend_from_slice(&0xa0b0_c0d0u32.to_be_bytes());
        let v = segment(0x10, &o, b"hello");
        let t = TcpPacket::new_checked(&v[..]).unwrap();
        let ours = parse(&t).unwrap();
        assert_eq!(Some(ours), smol(&t));
        assert_eq!(
            ours.timestamp,
            Some(TcpTimestampRepr::new(0x0102_0304, 0xa0b0_c0d0))
        );
        assert_eq!(ours.payload, b"hello");
    }

    #[test]
    fn refuses_what_smoltcp_refuses() {
        // SYN+FIN, FIN+RST, SYN+RST, port 0, a truncated option, a bad MSS
        // length, an option of length 0.
        let cases: Vec<Vec<u8>> = vec![
            segment(0x03, &[], &[]),
            segment(0x05, &[], &[]),
            segment(0x06, &[], &[]),
            segment(0x10, &[1, 2, 4, 5], &[]),
            segment(0x10, &[2, 3, 5, 0], &[]),
            segment(0x10, &[30, 0, 0, 0], &[]),
        ];
        for v in &cases {
            let t = TcpPacket::new_checked(&v[..]).unwrap();
            assert_eq!(smol(&t), None, "{v:?}");
            assert_eq!(parse(&t), None, "{v:?}");
            assert!(!acceptable(&t), "{v:?}");
        }
        let mut v = segment(0x10, &[], &[]);
        v[0] = 0;
        v[1] = 0;
        let t = TcpPacket::new_checked(&v[..]).unwrap();
        assert_eq!(parse(&t), None);
    }

    #[test]
    fn any_option_bytes_parse_as_smoltcp_parses_them() {
        let mut rng = Rng(crate::port::mem::Rng(0x9e37_79b9_7f4a_7c15));
        let kinds = [0u8, 1, 2, 3, 4, 5, 8, 30, 254];
        let (mut seen, mut fast) = ([0usize; 2], 0);
        for i in 0..20_000 {
            let words = (rng.next() % 11) as usize;
            let mut o = vec![0u8; words * 4];
            let mut at = 0;
            // Mostly well-formed options with random lengths now and then,
            // so both the accepting and refusing paths are exercised.
            while at < o.len() {
                let kind = kinds[(rng.next() % kinds.len() as u64) as usize];
                o[at] = kind;
                if kind > 1 && at + 1 < o.len() {
                    let len = match (kind, rng.next() % 8) {
                        (_, 0) => rng.byte() % 16,
                        (2, _) => 4,
                        (3, _) => 3,
                        (4, _) => 2,
                        (5, _) => 2 + 8 * (1 + (rng.next() % 4) as u8),
                        (8, _) => 10,
                        _ => 2 + rng.byte() % 6,
                    };
                    o[at + 1] = len;
                    for b in o
                        .iter_mut()
                        .skip(at + 2)
                        .take(len.saturating_sub(2) as usize)
                    {
                        *b = rng.byte();
                    }
                    at += (len as usize).max(2);
                } else {
                    at += 1;
                }
            }
            if i % 5 == 0 && o.len() >= 12 {
                // The fast path's layout, sometimes with a flaw.
                o[..4].copy_from_slice(&TS_LEAD);
                if i % 3 == 0 {
                    o[(rng.next() % 4) as usize] = rng.byte();
                }
            }
            let flags = [0x10, 0x18, 0x02, 0x12, 0x11, 0x04, 0x14, 0x03][i % 8];
            let v = segment(flags, &o, &[rng.byte(); 3]);
            let t = TcpPacket::new_checked(&v[..]).unwrap();
            let ours = parse(&t);
            assert_eq!(ours, smol(&t), "options {o:?} flags {flags:#x}");
            assert_eq!(
                acceptable(&t),
                ours.is_some(),
                "options {o:?} flags {flags:#x}"
            );
            seen[ours.is_some() as usize] += 1;
            fast += (ours.and_then(|r| r.timestamp).is_some() && o.len() == 12) as usize;
        }
        // Both outcomes, and the fast path, were exercised.
        assert!(
            seen[0] > 2000 && seen[1] > 2000 && fast > 100,
            "{seen:?} {fast}"
        );
    }

    #[test]
    fn emits_the_bytes_smoltcp_emits() {
        let base = TcpRepr {
            src_port: 80,
            dst_port: 40000,
            control: TcpControl::None,
            seq_number: smoltcp::wire::TcpSeqNumber(123_456),
            ack_number: Some(smoltcp::wire::TcpSeqNumber(-5)),
            window_len: 4321,
            window_scale: None,
            max_seg_size: None,
            sack_permitted: false,
            sack_ranges: [None; 3],
            timestamp: Some(TcpTimestampRepr::new(7, 0xffff_fff0)),
            payload: &[],
        };
        let variants = [
            base,
            TcpRepr {
                timestamp: None,
                ..base
            },
            TcpRepr {
                control: TcpControl::Fin,
                ..base
            },
            TcpRepr {
                control: TcpControl::Psh,
                ack_number: None,
                ..base
            },
            TcpRepr {
                control: TcpControl::Rst,
                timestamp: None,
                ..base
            },
            TcpRepr {
                control: TcpControl::Syn,
                max_seg_size: Some(1460),
                window_scale: Some(7),
                sack_permitted: true,
                ..base
            },
            TcpRepr {
                sack_ranges: [Some((1, 2)), Some((5, 9)), None],
                ..base
            },
        ];
        for r in &variants {
            let n = r.header_len();
            let (mut a, mut b) = (vec![0xeeu8; n], vec![0x55u8; n]);
            emit(r, &mut TcpPacket::new_unchecked(&mut a[..]));
            r.emit(
                &mut TcpPacket::new_unchecked(&mut b[..]),
                &A,
                &A,
                &ChecksumCapabilities::ignored(),
            );
            // smoltcp zeroes the checksum when asked not to compute it.
            assert_eq!(a[16..18], [0, 0]);
            if r.timestamp.is_some() && r.sack_ranges[0].is_none() && r.max_seg_size.is_none() {
                // The same length, the timestamp laid out as RFC 7323
                // Appendix A asks, and the same meaning.
                assert_eq!(a[..20], b[..20], "{r:?}");
                assert_eq!(a[20..24], TS_LEAD);
                let tb = TcpPacket::new_checked(&b[..]).unwrap();
                assert_eq!(parse(&tb), Some(*r));
            } else {
                assert_eq!(a, b, "{r:?}");
            }
            let t = TcpPacket::new_checked(&a[..]).unwrap();
            assert_eq!(parse(&t), Some(*r));
        }
    }
}
