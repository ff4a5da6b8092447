//! The `Date` header value (RFC 9110 §5.6.7 IMF-fixdate), formatted by hand
//! and cached per second.

/// Length of an IMF-fixdate: `Sun, 06 Nov 1994 08:49:37 GMT`.
pub const HTTP_DATE_LEN: usize = 29;

/// 9999-12-31T23:59:59Z, the last instant with a four-digit year. Later
/// times are clamped to it (the format has no room for a fifth digit).
const MAX_SECS: u64 = 253_402_300_799;

const DAYS: [&[u8; 3]; 7] = [b"Sun", b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat"];
const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// A cached `Date` header value. One per core: call [`HttpDate::update`]
/// once per loop iteration with the loop's wall-clock seconds; it re-formats
/// only when the second changed. Nothing here reads a clock.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct HttpDate {
    secs: u64,
    text: [u8; HTTP_DATE_LEN],
}

impl HttpDate {
    /// The date for `unix_secs` seconds after the Unix epoch (UTC).
    pub fn new(unix_secs: u64) -> HttpDate {
        let secs = unix_secs.min(MAX_SECS);
        HttpDate {
            secs,
            text: format(secs),
        }
    }

    /// Moves to `unix_secs`; re-formats only if the second changed.
    /// Returns `true` if the text changed.
    #[inline]
    pub fn update(&mut self, unix_secs: u64) -> bool {
        let secs = unix_secs.min(MAX_SECS);
        if secs == self.secs {
            return false;
        }
        self.secs = secs;
        self.text = format(secs);
        true
    }

    /// The seconds since the epoch this date shows (clamped to year 9999).
    #[inline]
    pub fn unix_secs(&self) -> u64 {
        self.secs
    }

    /// The formatted value, e.g. `Thu, 01 Jan 1970 00:00:00 GMT`.
    #[inline]
    pub fn as_bytes(&self) -> &[u8; HTTP_DATE_LEN] {
        &self.text
    }

    /// The formatted value as a string.
    #[inline]
    pub fn as_str(&self) -> &str {
        // Every byte written by `format` is ASCII, so this never fails.
        std::str::from_utf8(&self.text).unwrap_or("")
    }
}

impl std::fmt::Debug for HttpDate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HttpDate({})", self.as_str())
    }
}

impl std::fmt::Display for HttpDate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// (year, month 1..=12, day 1..=31) of a day count since 1970-01-01, in the
/// proleptic Gregorian calendar. Works in 400-year eras of 146 097 days,
/// each starting on 1 March so that the leap day is the era-year's last.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Shift the epoch to 0000-03-01 (719 468 days before 1970-01-01).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097; // day of era, 0..=146096
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365; // 0..=399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of year from 1 March, 0..=365
    let mp = (5 * doy + 2) / 153; // month from March, 0..=11
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

fn format(secs: u64) -> [u8; HTTP_DATE_LEN] {
    let days = secs / 86_400;
    let sod = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    // 1970-01-01 was a Thursday (index 4).
    let wday = ((days + 4) % 7) as usize;
    let mut t = *b"Thu, 01 Jan 1970 00:00:00 GMT";
    t[..3].copy_from_slice(DAYS[wday]);
    two(&mut t[5..7], day);
    // `month` is in 1..=12 by construction of `civil_from_days`.
    t[8..11].copy_from_slice(MONTHS[(month as usize - 1) % 12]);
    two(&mut t[12..14], year / 100);
    two(&mut t[14..16], year % 100);
    two(&mut t[17..19], sod / 3_600);
    two(&mut t[20..22], sod / 60 % 60);
    two(&mut t[23..25], sod % 60);
    t
}

#[inline]
fn two(dst: &mut [u8], v: u64) {
    dst[0] = b'0' + (v / 10 % 10) as u8;
    dst[1] = b'0' + (v % 10) as u8;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(secs: u64) -> String {
        HttpDate::new(secs).to_string()
    }

    #[test]
    fn known_dates() {
        assert_eq!(fmt(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(fmt(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(fmt(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(fmt(951_868_799), "Tue, 29 Feb 2000 23:59:59 GMT");
        assert_eq!(fmt(951_868_800), "Wed, 01 Mar 2000 00:00:00 GMT");
        assert_eq!(fmt(1_078_012_800), "Sun, 29 Feb 2004 00:00:00 GMT");
        assert_eq!(fmt(1_078_099_200), "Mon, 01 Mar 2004 00:00:00 GMT");
        assert_eq!(fmt(1_709_164_800), "Thu, 29 Feb 2024 00:00:00 GMT");
        assert_eq!(fmt(1_234_567_890), "Fri, 13 Feb 2009 23:31:30 GMT");
        assert_eq!(fmt(4_107_542_400), "Mon, 01 Mar 2100 00:00:00 GMT");
        assert_eq!(fmt(4_107_542_399), "Sun, 28 Feb 2100 23:59:59 GMT");
        assert_eq!(fmt(946_684_799), "Fri, 31 Dec 1999 23:59:59 GMT");
        assert_eq!(fmt(2_147_483_647), "Tue, 19 Jan 2038 03:14:07 GMT");
        assert_eq!(fmt(MAX_SECS), "Fri, 31 Dec 9999 23:59:59 GMT");
        assert_eq!(fmt(u64::MAX), "Fri, 31 Dec 9999 23:59:59 GMT");
    }

    /// Walks 400 years day by day and checks the calendar against a
    /// counter that knows nothing but month lengths and the leap rule.
    #[test]
    fn every_day_of_400_years() {
        let leap = |y: u64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        let (mut y, mut m, mut d) = (1970u64, 1u64, 1u64);
        for days in 0..146_097u64 {
            assert_eq!(civil_from_days(days), (y, m, d), "day {days}");
            let len = match m {
                2 if leap(y) => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            d += 1;
            if d > len {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
        }
    }

    #[test]
    fn update_reformats_only_on_a_new_second() {
        let mut d = HttpDate::new(0);
        assert!(!d.update(0));
        assert!(d.update(784_111_777));
        assert_eq!(d.as_bytes(), b"Sun, 06 Nov 1994 08:49:37 GMT");
        assert!(!d.update(784_111_777));
        assert_eq!(d.unix_secs(), 784_111_777);
        assert!(d.update(784_111_778));
        assert_eq!(d.as_str(), "Sun, 06 Nov 1994 08:49:38 GMT");
    }
}
