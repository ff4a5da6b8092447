//! SYN cookies (RFC 4987 §3.6): when a listener's backlog is full, the
//! SYN-ACK's ISN encodes what the connection needs, nothing is stored, and
//! the handshake's final ACK rebuilds the connection.
//!
//! Contract:
//! - The cookie (our ISN) is 32 bits:
//!
//!   | bits  | content                                                     |
//!   |-------|-------------------------------------------------------------|
//!   | 31-30 | the time counter (64-second ticks of `now_us`) modulo 4     |
//!   | 29-27 | the index of the MSS in [`MSS_TABLE`]                        |
//!   | 26-0  | 27 bits of SipHash-2-4, under the secret key, of the 4-tuple,  |
//!   |       | the peer's ISN, the full counter, the MSS index and the      |
//!   |       | option bits                                                 |
//!
//!   A forged ACK passes with probability about 2^-27 per try (times 3/4
//!   when the counter bits are random as well), whatever the attacker
//!   knows of other cookies, as long as the key is secret.
//! - A cookie is valid while its counter is at most 2 ticks behind the
//!   current one: between 128 s and 192 s after it was made, depending on
//!   where in its tick it was made. One from the future is refused.
//! - The MSS is rounded down to [`MSS_TABLE`]; an MSS below 536 is served as
//!   536 (the RFC 9293 default), so the stack should not answer with a
//!   cookie a SYN whose MSS is below that if it cares.
//! - Window scale and SACK-permitted fit nowhere in 32 bits. When the SYN
//!   carried timestamps (RFC 7323), they travel in the low 5 bits of our
//!   TSval ([`SynCookies::tsval`]) and come back as the final ACK's TSecr,
//!   and the cookie's hash covers them, so they cannot be altered. Without
//!   timestamps they are lost: the rebuilt connection has `wscale: None`
//!   and `sack: false` (RFC 4987 §3.6 notes this cost), so a SYN-ACK sent
//!   with a cookie must offer exactly [`CookieOpts::encodable`] of what the
//!   peer asked for.
//! - No clock read, no allocation, no panic; one SipHash per call.

use std::net::SocketAddr;

use super::isn::{SecretKey, TupleInput};

/// The MSS values a cookie can carry (3 bits): 536 (IPv4 default and
/// minimum), 1220 (IPv6 minimum MTU 1280), 1300 and 1400 (tunnels, PPPoE),
/// 1440 (IPv6 over a 1500-byte MTU), 1460 (IPv4 over 1500), 8940 (IPv6 over
/// 9000) and 8960 (IPv4 over 9000). A peer's MSS is rounded down to the
/// nearest entry.
pub const MSS_TABLE: [u16; 8] = [536, 1220, 1300, 1400, 1440, 1460, 8940, 8960];

/// Length of one counter tick: 64 s.
const TICK_US: u64 = 64_000_000;
/// Largest age of a valid cookie, in ticks.
const MAX_AGE: u32 = 2;
const HASH_BITS: u32 = 27;
const HASH_MASK: u32 = (1 << HASH_BITS) - 1;
/// Low TSval bits that carry the options: 4 bits of window scale (15 for
/// none) and 1 bit of SACK-permitted.
const TS_OPT_BITS: u32 = 5;
const TS_OPT_MASK: u32 = (1 << TS_OPT_BITS) - 1;
const WSCALE_NONE: u8 = 15;
/// RFC 7323 §2.3: larger shifts are read as 14.
const WSCALE_MAX: u8 = 14;

/// What the connection needs from its SYN, as a cookie preserves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CookieOpts {
    /// The peer's MSS.
    pub mss: u16,
    /// The peer's window scale shift, if it offered one.
    pub wscale: Option<u8>,
    /// Whether the peer offered SACK-permitted.
    pub sack: bool,
    /// Whether the peer offered timestamps.
    pub timestamps: bool,
}

impl CookieOpts {
    /// What a cookie keeps of these options, and so what a SYN-ACK carrying
    /// a cookie must offer: the MSS rounded down to [`MSS_TABLE`], window
    /// scale (at most 14) and SACK only with timestamps.
    pub fn encodable(self) -> CookieOpts {
        CookieOpts {
            mss: MSS_TABLE[mss_index(self.mss) as usize],
            wscale: if self.timestamps {
                self.wscale.map(|w| w.min(WSCALE_MAX))
            } else {
                None
            },
            sack: self.timestamps && self.sack,
            timestamps: self.timestamps,
        }
    }

    /// The 5 option bits carried in the TSval (timestamps only).
    fn ts_bits(self) -> u32 {
        let w = self.wscale.map_or(WSCALE_NONE, |w| w.min(WSCALE_MAX));
        u32::from(w) | (u32::from(self.sack) << 4)
    }

    /// The byte the hash covers: the options the cookie vouches for.
    fn hash_byte(self) -> u8 {
        if self.timestamps {
            0x80 | self.ts_bits() as u8
        } else {
            0
        }
    }
}

/// Index of the largest table entry not above `mss` (0 below the table).
fn mss_index(mss: u16) -> u32 {
    MSS_TABLE.iter().rposition(|&m| m <= mss).unwrap_or(0) as u32
}

/// SYN cookie maker and checker under one secret key; the time counter is
/// hashed in, so one key serves every tick.
#[derive(Clone, Debug)]
pub struct SynCookies {
    key: SecretKey,
}

impl SynCookies {
    /// A cookie jar under `key` (drawn from the OS by the stack; fixed in
    /// tests). Use a key other than the ISN generator's.
    pub fn new(key: [u8; 16]) -> Self {
        Self {
            key: SecretKey::new(key),
        }
    }

    /// 27 bits of the keyed hash of everything the cookie vouches for.
    fn mac(
        &self,
        local: SocketAddr,
        remote: SocketAddr,
        peer_isn: u32,
        tick: u64,
        mss_idx: u32,
        opts: u8,
    ) -> u32 {
        let mut input = TupleInput::new(local, remote);
        input.push(&peer_isn.to_be_bytes());
        input.push(&tick.to_be_bytes());
        input.push(&[mss_idx as u8, opts]);
        input.hash32(&self.key) & HASH_MASK
    }

    /// Our ISN for the SYN-ACK. `peer_isn`: the SYN's sequence number.
    /// `now_us` gives the cookie's counter (64-second ticks). The SYN-ACK
    /// must offer `opts.encodable()` (see the module docs).
    pub fn make(
        &self,
        local: SocketAddr,
        remote: SocketAddr,
        peer_isn: u32,
        opts: CookieOpts,
        now_us: u64,
    ) -> u32 {
        let tick = now_us / TICK_US;
        let idx = mss_index(opts.mss);
        let mac = self.mac(local, remote, peer_isn, tick, idx, opts.hash_byte());
        ((tick as u32 & 3) << 30) | (idx << HASH_BITS) | mac
    }

    /// The TSval to send in the SYN-ACK given the clock value `ts_clock`:
    /// the clock with its low 5 bits replaced by the window scale (4 bits,
    /// 15 for none) and SACK (1 bit), so they come back as the final ACK's
    /// TSecr. The result is at most 31 below `ts_clock` and never above
    /// it (serial arithmetic), so later TSvals from the same clock stay
    /// monotonic. Without timestamps there is nothing to carry and
    /// `ts_clock` is returned as is.
    pub fn tsval(&self, opts: CookieOpts, ts_clock: u32) -> u32 {
        if !opts.timestamps {
            return ts_clock;
        }
        let bits = opts.ts_bits();
        let v = (ts_clock & !TS_OPT_MASK) | bits;
        if bits > ts_clock & TS_OPT_MASK {
            v.wrapping_sub(TS_OPT_MASK + 1)
        } else {
            v
        }
    }

    /// Checks a handshake's final ACK: `ack` is its acknowledgement number
    /// (our ISN + 1), `seq` its sequence number (the peer's ISN + 1), `tsecr`
    /// its echoed timestamp if it carried the option. Returns the
    /// connection's options ([`CookieOpts::encodable`] of those given to
    /// [`SynCookies::make`]) if the cookie is genuine and at most 2 ticks
    /// old, else `None`. Without `tsecr`, `wscale` is `None` and `sack`
    /// false. An ACK without timestamps for a cookie made with them (or the
    /// reverse) is refused: the hash covers the option bits.
    pub fn check(
        &self,
        local: SocketAddr,
        remote: SocketAddr,
        seq: u32,
        ack: u32,
        tsecr: Option<u32>,
        now_us: u64,
    ) -> Option<CookieOpts> {
        let cookie = ack.wrapping_sub(1);
        let peer_isn = seq.wrapping_sub(1);
        let now_tick = now_us / TICK_US;
        let age = (now_tick as u32).wrapping_sub(cookie >> 30) & 3;
        if age > MAX_AGE {
            return None;
        }
        let tick = now_tick.checked_sub(u64::from(age))?;
        let idx = (cookie >> HASH_BITS) & 7;
        let opts = match tsecr {
            Some(ts) => {
                let w = (ts & 0xF) as u8;
                if w != WSCALE_NONE && w > WSCALE_MAX {
                    return None;
                }
                CookieOpts {
                    mss: MSS_TABLE[idx as usize],
                    wscale: (w != WSCALE_NONE).then_some(w),
                    sack: ts & 0x10 != 0,
                    timestamps: true,
                }
            }
            None => CookieOpts {
                mss: MSS_TABLE[idx as usize],
                wscale: None,
                sack: false,
                timestamps: false,
            },
        };
        let mac = self.mac(local, remote, peer_isn, tick, idx, opts.hash_byte());
        (mac == cookie & HASH_MASK).then_some(opts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const KEY: [u8; 16] = *b"bypass-cookie-k1";
    const SEC: u64 = 1_000_000;

    fn l4() -> SocketAddr {
        SocketAddr::from((Ipv4Addr::new(10, 0, 0, 1), 80))
    }
    fn r4() -> SocketAddr {
        SocketAddr::from((Ipv4Addr::new(10, 0, 0, 2), 40_001))
    }
    fn l6() -> SocketAddr {
        SocketAddr::from((Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1), 443))
    }
    fn r6() -> SocketAddr {
        SocketAddr::from((Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2), 50_000))
    }

    fn opts(mss: u16, wscale: Option<u8>, sack: bool, timestamps: bool) -> CookieOpts {
        CookieOpts {
            mss,
            wscale,
            sack,
            timestamps,
        }
    }

    /// A full handshake through the jar: make, tsval, then check the final
    /// ACK `dt_us` later.
    fn round_trip(
        jar: &SynCookies,
        (l, r): (SocketAddr, SocketAddr),
        peer_isn: u32,
        o: CookieOpts,
        now: u64,
        dt_us: u64,
    ) -> Option<CookieOpts> {
        let isn = jar.make(l, r, peer_isn, o, now);
        let tsecr = o.timestamps.then(|| jar.tsval(o, 0x1234_5678));
        jar.check(
            l,
            r,
            peer_isn.wrapping_add(1),
            isn.wrapping_add(1),
            tsecr,
            now + dt_us,
        )
    }

    /// Deterministic test randomness: SipHash-1-3 of a counter.
    fn rand(i: u64) -> u64 {
        siphasher::sip::SipHasher13::new_with_keys(7, 11).hash(&i.to_le_bytes())
    }

    #[test]
    fn rfc4987_3_6_round_trip_for_every_mss_class_and_option_set() {
        let jar = SynCookies::new(KEY);
        let now = 1_000 * SEC;
        let mut n = 0;
        for tuple in [(l4(), r4()), (l6(), r6())] {
            for (i, &class) in MSS_TABLE.iter().enumerate() {
                // The class itself and a value just above rounds down to it.
                let above = MSS_TABLE.get(i + 1).map_or(u16::MAX, |&next| next - 1);
                for mss in [class, above] {
                    for wscale in [None, Some(0), Some(7), Some(14)] {
                        for sack in [false, true] {
                            for ts in [false, true] {
                                let o = opts(mss, wscale, sack, ts);
                                let got = round_trip(&jar, tuple, 0xdead_beef ^ n, o, now, 3 * SEC);
                                let want =
                                    opts(class, if ts { wscale } else { None }, ts && sack, ts);
                                assert_eq!(got, Some(want), "{o:?}");
                                assert_eq!(o.encodable(), want);
                                n += 1;
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn rfc4987_3_6_mss_rounds_down_to_the_table() {
        assert_eq!(opts(100, None, false, false).encodable().mss, 536);
        assert_eq!(opts(1219, None, false, false).encodable().mss, 536);
        assert_eq!(opts(1459, None, false, false).encodable().mss, 1440);
        assert_eq!(opts(1500, None, false, false).encodable().mss, 1460);
        assert_eq!(opts(65_535, None, false, false).encodable().mss, 8960);
        // Window scale above 14 is read as 14 (RFC 7323 2.3).
        let o = opts(1460, Some(15), true, true);
        assert_eq!(o.encodable().wscale, Some(14));
        let jar = SynCookies::new(KEY);
        assert_eq!(
            round_trip(&jar, (l4(), r4()), 1, o, 0, 0).unwrap().wscale,
            Some(14)
        );
    }

    #[test]
    fn rfc7323_tsval_carries_options_and_never_runs_ahead_of_the_clock() {
        let jar = SynCookies::new(KEY);
        let o = opts(1460, Some(9), true, true);
        for clock in [0u32, 5, 31, 32, 0x1234_5660, 0x1234_567f, u32::MAX] {
            let v = jar.tsval(o, clock);
            assert_eq!(v & 0x1F, 9 | 0x10, "clock {clock:#x}");
            let behind = clock.wrapping_sub(v);
            assert!(behind < 32, "clock {clock:#x} tsval {v:#x}");
        }
        // No timestamps: the clock as is.
        assert_eq!(jar.tsval(opts(1460, Some(9), true, false), 77), 77);
    }

    #[test]
    fn rfc4987_3_6_cookie_from_another_tuple_or_key_is_refused() {
        let jar = SynCookies::new(KEY);
        let o = opts(1460, None, false, false);
        let now = 500 * SEC;
        let isn = jar.make(l4(), r4(), 1000, o, now);
        assert!(jar
            .check(l4(), r4(), 1001, isn.wrapping_add(1), None, now)
            .is_some());
        let other_port = SocketAddr::from((Ipv4Addr::new(10, 0, 0, 2), 40_002));
        let other_ip = SocketAddr::from((Ipv4Addr::new(10, 0, 0, 3), 40_001));
        for r in [other_port, other_ip] {
            assert_eq!(
                jar.check(l4(), r, 1001, isn.wrapping_add(1), None, now),
                None
            );
        }
        assert_eq!(
            jar.check(r4(), l4(), 1001, isn.wrapping_add(1), None, now),
            None
        );
        // Another peer ISN (the ACK's sequence number).
        assert_eq!(
            jar.check(l4(), r4(), 1002, isn.wrapping_add(1), None, now),
            None
        );
        let mut k2 = KEY;
        k2[0] ^= 0x80;
        assert_eq!(format!("{jar:?}"), "SynCookies { key: <secret> }");
        assert_eq!(
            SynCookies::new(k2).check(l4(), r4(), 1001, isn.wrapping_add(1), None, now),
            None
        );
    }

    #[test]
    fn rfc4987_3_6_every_flipped_bit_is_refused() {
        let jar = SynCookies::new(KEY);
        let o = opts(1440, Some(7), true, true);
        let now = 10_000 * SEC;
        let isn = jar.make(l6(), r6(), 77, o, now);
        let ts = jar.tsval(o, 1_000_000);
        let ack = isn.wrapping_add(1);
        assert!(jar.check(l6(), r6(), 78, ack, Some(ts), now).is_some());
        for bit in 0..32 {
            let flipped = (isn ^ (1 << bit)).wrapping_add(1);
            assert_eq!(
                jar.check(l6(), r6(), 78, flipped, Some(ts), now),
                None,
                "ack bit {bit}"
            );
            assert_eq!(
                jar.check(l6(), r6(), 78 ^ (1 << bit), ack, Some(ts), now),
                None,
                "seq bit {bit}"
            );
        }
        // The option bits of TSecr are covered by the hash...
        for bit in 0..5 {
            assert_eq!(
                jar.check(l6(), r6(), 78, ack, Some(ts ^ (1 << bit)), now),
                None,
                "tsecr bit {bit}"
            );
        }
        // ...the clock bits are not part of the cookie.
        assert!(jar
            .check(l6(), r6(), 78, ack, Some(ts ^ (1 << 20)), now)
            .is_some());
        // Timestamps dropped from the final ACK: refused.
        assert_eq!(jar.check(l6(), r6(), 78, ack, None, now), None);
    }

    #[test]
    fn rfc4987_3_6_random_forgeries_are_rare() {
        // 100k forged final ACKs for one tuple at one instant. A forgery
        // passes when its 2 counter bits name an acceptable tick (3 of 4
        // values) and its 27 hash bits match: p = 3/4 * 2^-27 = 5.6e-9, so
        // we expect 5.6e-4 acceptances in 100k; more than 1 would mean the
        // hash is weaker than 27 bits.
        let jar = SynCookies::new(KEY);
        let now = 7_777 * SEC;
        let mut accepted = 0;
        for i in 0..100_000u64 {
            let x = rand(i);
            let (seq, ack) = (x as u32, (x >> 32) as u32);
            let tsecr = (rand(i + (1 << 40)) & 1 == 1).then(|| rand(i + (1 << 41)) as u32);
            accepted += usize::from(jar.check(l4(), r4(), seq, ack, tsecr, now).is_some());
        }
        assert!(
            accepted <= 1,
            "{accepted} of 100k random forgeries accepted"
        );
        // An attacker who knows the counter and MSS bits and the peer ISN
        // (they are its own) still has to guess 27 bits: p = 7.5e-9.
        let isn = jar.make(l4(), r4(), 5, opts(1460, None, false, false), now);
        let top = isn & !HASH_MASK;
        let mut accepted = 0;
        for i in 0..100_000u64 {
            let guess = top | (rand(i + (1 << 42)) as u32 & HASH_MASK);
            if guess != isn {
                accepted += usize::from(
                    jar.check(l4(), r4(), 6, guess.wrapping_add(1), None, now)
                        .is_some(),
                );
            }
        }
        assert!(accepted <= 1, "{accepted} of 100k hash guesses accepted");
    }

    #[test]
    fn rfc4987_3_6_cookie_ages_out_after_two_ticks() {
        let jar = SynCookies::new(KEY);
        let o = opts(1460, None, true, false);
        // Made at the start of tick 100.
        let t0 = 100 * TICK_US;
        assert!(round_trip(&jar, (l4(), r4()), 9, o, t0, 0).is_some());
        // Previous tick (and the one before): accepted.
        assert!(round_trip(&jar, (l4(), r4()), 9, o, t0, TICK_US).is_some());
        assert!(round_trip(&jar, (l4(), r4()), 9, o, t0, 3 * TICK_US - 1).is_some());
        // Three ticks: refused, and so is every later age (the 2 counter
        // bits alias, but the hash covers the full counter).
        for ticks in 3..12 {
            assert_eq!(
                round_trip(&jar, (l4(), r4()), 9, o, t0, ticks * TICK_US),
                None,
                "{ticks}"
            );
        }
        // A cookie from the future is refused.
        let isn = jar.make(l4(), r4(), 9, o, t0 + TICK_US);
        assert_eq!(
            jar.check(l4(), r4(), 10, isn.wrapping_add(1), None, t0),
            None
        );
        // Checked in tick 0 with a counter claiming an earlier tick: refused.
        let isn = jar.make(l4(), r4(), 9, o, 3 * TICK_US);
        assert_eq!(
            jar.check(l4(), r4(), 10, isn.wrapping_add(1), None, 0),
            None
        );
    }

    #[test]
    fn rfc4987_3_6_wrapping_counters_and_sequence_numbers() {
        let jar = SynCookies::new(KEY);
        let o = opts(8960, Some(3), false, true);
        // The 2-bit counter field wraps from 3 to 0: made in tick 3 and 7,
        // checked in the following ticks.
        for made in [3u64, 7, 1 << 37] {
            for age in 0..=2 {
                let got = round_trip(&jar, (l6(), r6()), 1, o, made * TICK_US + 5, age * TICK_US);
                assert!(got.is_some(), "made {made} age {age}");
            }
        }
        // The peer's ISN at the top of the sequence space: its ACK carries
        // seq 0.
        assert!(round_trip(&jar, (l4(), r4()), u32::MAX, o, 99 * SEC, SEC).is_some());
        // Maximal time does not panic.
        let isn = jar.make(l4(), r4(), 1, o, u64::MAX);
        let _ = jar.check(
            l4(),
            r4(),
            2,
            isn.wrapping_add(1),
            Some(jar.tsval(o, 3)),
            u64::MAX,
        );
    }
}
