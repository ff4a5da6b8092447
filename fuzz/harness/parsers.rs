//! Fuzz harness: the command line's parsers (port specs, core lists,
//! ADDR/PREFIX, MAC addresses).
//!
//! Shared by the `parsers` fuzz target and `tests/fuzz_replay.rs`. Any
//! string gives a value or an error with a message; never a panic, and
//! accepted values are sane.

use bypass::port::{MacAddr, PortSpec};
use bypass::runtime::{parse_cidr, parse_core_list};

/// One fuzz input.
pub fn run(data: &[u8]) {
    let s = String::from_utf8_lossy(data);
    if let Ok(mut p) = s.parse::<PortSpec>() {
        assert!(!p.name.is_empty());
        assert_eq!(p.raw(), s);
        let _ = p.take::<u16>("queues");
        let _ = p.take::<u32>("frames");
        let _ = p.take::<MacAddr>("mac");
        let _ = p.take_flag("zerocopy");
        let _ = p.finish(&["queues", "frames", "mac", "zerocopy"]);
        let _ = p.err("x").to_string();
    } else if let Err(e) = s.parse::<PortSpec>() {
        assert!(!e.to_string().is_empty());
    }
    match parse_core_list(&s) {
        Ok(cores) => {
            assert!(!cores.is_empty());
            assert!(cores.len() <= 1024, "{} cores", cores.len());
            let mut d = cores.clone();
            d.sort_unstable();
            d.dedup();
            assert_eq!(d.len(), cores.len(), "duplicates in {cores:?}");
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    if let Ok((ip, prefix)) = parse_cidr(&s) {
        assert!(prefix <= 32);
        assert!(!ip.is_unspecified() && !ip.is_broadcast() && !ip.is_multicast());
    }
    if let Ok(m) = s.parse::<MacAddr>() {
        assert_eq!(m.to_string().parse::<MacAddr>(), Ok(m));
    }
}
