//! Sequence-number arithmetic (RFC 9293 3.4): 32-bit values compared
//! modulo 2^32, so `a` is "before" `b` when `b - a` (wrapping) is below
//! 2^31.

/// `a < b` in sequence space.
#[inline]
pub fn lt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// `a <= b` in sequence space.
#[inline]
pub fn le(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) <= 0
}

/// `a > b` in sequence space.
#[inline]
pub fn gt(a: u32, b: u32) -> bool {
    lt(b, a)
}

/// `a >= b` in sequence space.
#[inline]
pub fn ge(a: u32, b: u32) -> bool {
    le(b, a)
}

/// The later of two sequence numbers.
#[inline]
pub fn max(a: u32, b: u32) -> u32 {
    if lt(a, b) {
        b
    } else {
        a
    }
}

/// The earlier of two sequence numbers.
#[inline]
pub fn min(a: u32, b: u32) -> u32 {
    if lt(a, b) {
        a
    } else {
        b
    }
}

/// Bytes from `from` to `to` (`to` not before `from`).
#[inline]
pub fn dist(from: u32, to: u32) -> u32 {
    to.wrapping_sub(from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc9293_3_4_comparisons_wrap() {
        assert!(lt(1, 2));
        assert!(lt(u32::MAX, 0), "0 follows 2^32-1");
        assert!(gt(5, u32::MAX - 5));
        assert!(le(7, 7) && ge(7, 7));
        assert_eq!(max(u32::MAX - 1, 3), 3);
        assert_eq!(min(u32::MAX - 1, 3), u32::MAX - 1);
        assert_eq!(dist(u32::MAX - 1, 2), 4);
    }
}
