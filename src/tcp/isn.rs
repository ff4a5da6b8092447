//! Initial sequence numbers per RFC 6528: `ISN = M + F(local, remote, key)`.
//!
//! Contract:
//! - `M` is a 4-microsecond timer, `now_us / 4` wrapping at 2^32 (RFC 6528
//!   §3, after RFC 793's clock), so the ISNs of one 4-tuple grow with time
//!   like RFC 793's and an old incarnation's segments stay below the new
//!   ISN.
//! - `F` is SipHash-2-4 (the `siphasher` crate) under a 128-bit secret key,
//!   over both addresses and ports. Without the key, an off-path attacker
//!   cannot predict the ISN of a 4-tuple from the ISNs of others (RFC 6528
//!   §3).
//! - IPv4 and IPv6 addresses are hashed with a family tag, so a v4 tuple and
//!   a v6 tuple never share an input. The flow label and scope of a v6
//!   `SocketAddr` are ignored: only address and port make the tuple.
//! - The key comes from the caller: the stack draws it from the OS once
//!   (`crate::port::sys::random_u64`) and should renew it rarely, if ever
//!   (a new key breaks the monotonicity per tuple). Tests pass fixed keys.
//! - No clock read, no allocation, no panic. One SipHash of under 40 bytes
//!   per call.

use std::net::{IpAddr, SocketAddr};

use siphasher::sip::SipHasher24;

/// A fixed-size hash input: the 4-tuple, then whatever the caller appends
/// (the SYN cookie adds its fields). No allocation.
pub(super) struct TupleInput {
    buf: [u8; 64],
    len: usize,
}

impl TupleInput {
    /// Family tag and address of each end, then both ports.
    pub(super) fn new(local: SocketAddr, remote: SocketAddr) -> Self {
        let mut input = Self {
            buf: [0; 64],
            len: 0,
        };
        for ip in [local.ip(), remote.ip()] {
            match ip {
                IpAddr::V4(a) => {
                    input.push(&[4]);
                    input.push(&a.octets());
                }
                IpAddr::V6(a) => {
                    input.push(&[6]);
                    input.push(&a.octets());
                }
            }
        }
        input.push(&local.port().to_be_bytes());
        input.push(&remote.port().to_be_bytes());
        input
    }

    /// Appends bytes. The tuple takes at most 38 of the 64 bytes; callers
    /// append at most 26 more (a debug assertion checks it; a release build
    /// would drop the excess rather than panic).
    pub(super) fn push(&mut self, bytes: &[u8]) {
        debug_assert!(self.len + bytes.len() <= self.buf.len());
        let room = self.buf.len() - self.len;
        let n = bytes.len().min(room);
        self.buf[self.len..self.len + n].copy_from_slice(&bytes[..n]);
        self.len += n;
    }

    /// SipHash-2-4 of the input under `key`, folded to 32 bits.
    pub(super) fn hash32(&self, key: &SecretKey) -> u32 {
        let h = key.0.hash(&self.buf[..self.len]);
        (h ^ (h >> 32)) as u32
    }
}

/// A 128-bit SipHash-2-4 key. Its `Debug` never prints it.
#[derive(Clone)]
pub(super) struct SecretKey(SipHasher24);

impl SecretKey {
    pub(super) fn new(key: [u8; 16]) -> Self {
        Self(SipHasher24::new_with_key(&key))
    }
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<secret>")
    }
}

/// RFC 6528 ISN generator: a 128-bit secret key.
#[derive(Clone, Debug)]
pub struct IsnGen {
    key: SecretKey,
}

impl IsnGen {
    /// A generator under `key`.
    pub fn new(key: [u8; 16]) -> Self {
        Self {
            key: SecretKey::new(key),
        }
    }

    /// ISN = M + F(local, remote, key): M is `now_us / 4` (wrapping), F the
    /// keyed hash of the addresses and ports folded to 32 bits.
    pub fn isn(&self, local: SocketAddr, remote: SocketAddr, now_us: u64) -> u32 {
        let f = TupleInput::new(local, remote).hash32(&self.key);
        let m = (now_us / 4) as u32;
        m.wrapping_add(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV6};

    const KEY: [u8; 16] = *b"bypass-isn-key-1";

    fn v4(a: [u8; 4], port: u16) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::from(a), port))
    }

    #[test]
    fn rfc6528_3_same_tuple_later_is_isn_plus_elapsed_over_4() {
        let g = IsnGen::new(KEY);
        let (l, r) = (v4([10, 0, 0, 1], 80), v4([10, 0, 0, 2], 40_000));
        let t0 = 1_000_000_007;
        let base = g.isn(l, r, t0);
        for elapsed in [0u64, 3, 4, 5, 400, 1_000_000, 60_000_000] {
            let later = g.isn(l, r, t0 + elapsed);
            let expect = ((t0 + elapsed) / 4 - t0 / 4) as u32;
            assert_eq!(later.wrapping_sub(base), expect, "elapsed {elapsed}");
        }
        // Monotonic in serial-number arithmetic over a minute of 4 us ticks.
        let mut prev = base;
        for i in 1..=15_000u64 {
            let next = g.isn(l, r, t0 + i * 4_000);
            assert!((next.wrapping_sub(prev) as i32) > 0);
            prev = next;
        }
    }

    #[test]
    fn rfc6528_3_timer_wraps_at_2_pow_32_ticks() {
        let g = IsnGen::new(KEY);
        let (l, r) = (v4([10, 0, 0, 1], 80), v4([10, 0, 0, 2], 40_000));
        let wrap = 4u64 << 32; // 2^32 ticks of 4 us: about 4.8 hours
        assert_eq!(g.isn(l, r, 123), g.isn(l, r, 123 + wrap));
        let before = g.isn(l, r, wrap - 4);
        assert_eq!(g.isn(l, r, wrap).wrapping_sub(before), 1);
        // The largest time value does not panic.
        let _ = g.isn(l, r, u64::MAX);
    }

    #[test]
    fn rfc6528_3_different_tuples_give_unrelated_values() {
        let g = IsnGen::new(KEY);
        let now = 42_000_000;
        let mut nibbles = [0u32; 16];
        let mut bit_counts = [0u32; 32];
        let mut seen = std::collections::HashSet::new();
        let n = 4096u32;
        for i in 0..n {
            // Neighbouring tuples: consecutive remote ports and addresses.
            let r = v4([192, 168, (i >> 8) as u8, i as u8], 50_000 + (i % 7) as u16);
            let isn = g.isn(v4([10, 0, 0, 1], 443), r, now);
            nibbles[(isn >> 28) as usize] += 1;
            for (b, count) in bit_counts.iter_mut().enumerate() {
                *count += (isn >> b) & 1;
            }
            seen.insert(isn);
        }
        assert!(nibbles.iter().all(|&c| c > 0), "{nibbles:?}");
        for (b, &count) in bit_counts.iter().enumerate() {
            let share = f64::from(count) / f64::from(n);
            assert!((0.35..=0.65).contains(&share), "bit {b}: {share}");
        }
        // 4096 draws of 32 bits: a collision has probability ~0.2%.
        assert!(seen.len() >= 4095);
        // Swapping the ends is another tuple.
        let (a, b) = (v4([10, 0, 0, 1], 80), v4([10, 0, 0, 2], 80));
        assert_ne!(g.isn(a, b, now), g.isn(b, a, now));
        // One port apart.
        assert_ne!(g.isn(a, v4([10, 0, 0, 2], 81), now), g.isn(a, b, now));
    }

    #[test]
    fn rfc6528_3_different_keys_give_different_values() {
        let (l, r) = (v4([10, 0, 0, 1], 80), v4([10, 0, 0, 2], 40_000));
        let a = IsnGen::new(KEY);
        let mut other = KEY;
        other[15] ^= 1;
        let b = IsnGen::new(other);
        let differ = (0..64u64)
            .filter(|i| a.isn(l, r, i * 1_000) != b.isn(l, r, i * 1_000))
            .count();
        assert_eq!(differ, 64);
        // The same key gives the same ISN: the generator is a pure function.
        assert_eq!(IsnGen::new(KEY).isn(l, r, 99), a.isn(l, r, 99));
    }

    #[test]
    fn rfc6528_3_ipv6_tuples_work_and_differ_from_ipv4() {
        let g = IsnGen::new(KEY);
        let l6 = SocketAddr::from((Ipv6Addr::LOCALHOST, 80));
        let r6ip: Ipv6Addr = "fd00::2".parse().unwrap();
        let r6 = SocketAddr::from((r6ip, 40_000));
        let a = g.isn(l6, r6, 1_000);
        assert_eq!(g.isn(l6, r6, 1_400).wrapping_sub(a), 100);
        // A v4-mapped v6 address is not the v4 address.
        let l4 = v4([127, 0, 0, 1], 80);
        let l4m = SocketAddr::from((Ipv4Addr::LOCALHOST.to_ipv6_mapped(), 80));
        let r4 = v4([10, 0, 0, 2], 40_000);
        let r4m = SocketAddr::from((Ipv4Addr::new(10, 0, 0, 2).to_ipv6_mapped(), 40_000));
        assert_ne!(g.isn(l4, r4, 0), g.isn(l4m, r4m, 0));
        // Flow label and scope id are not part of the tuple.
        let r6s = SocketAddr::V6(SocketAddrV6::new(r6ip, 40_000, 7, 3));
        assert_eq!(g.isn(l6, r6s, 1_000), a);
        // Debug does not print the key.
        assert_eq!(format!("{g:?}"), "IsnGen { key: <secret> }");
    }
}
