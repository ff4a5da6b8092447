//! `--port KIND:NAME[,key=value...]`, shared by every subcommand.

use std::str::FromStr;

use crate::error::{Error, Result};

/// Which backend a port spec names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortKind {
    /// `/dev/net/tun` TAP interface.
    Tap,
    /// One end of an in-memory wire (tests and benchmarks).
    Mem,
    /// A DPDK ethdev: PCI address or vdev.
    Dpdk,
    /// An AF_XDP socket on a Linux interface.
    Xdp,
}

impl PortKind {
    /// The spec prefix.
    pub fn as_str(self) -> &'static str {
        match self {
            PortKind::Tap => "tap",
            PortKind::Mem => "mem",
            PortKind::Dpdk => "dpdk",
            PortKind::Xdp => "xdp",
        }
    }
}

/// A parsed `--port` argument. Backends take their keys out with
/// [`PortSpec::take`] and call [`PortSpec::finish`] to reject unknown ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSpec {
    /// The backend.
    pub kind: PortKind,
    /// Interface name, device arguments or wire name.
    pub name: String,
    /// `key=value` options in the order given (a bare `key` has value "").
    pub opts: Vec<(String, String)>,
    raw: String,
}

impl PortSpec {
    /// The spec as the user wrote it.
    pub fn raw(&self) -> &str {
        &self.raw
    }

    /// An error about this spec.
    pub fn err(&self, why: impl Into<String>) -> Error {
        Error::PortSpec {
            spec: self.raw.clone(),
            why: why.into(),
        }
    }

    /// Removes option `key` and parses its value; `Ok(None)` if absent.
    pub fn take<T: FromStr>(&mut self, key: &str) -> Result<Option<T>>
    where
        T::Err: std::fmt::Display,
    {
        let Some(pos) = self.opts.iter().position(|(k, _)| k == key) else {
            return Ok(None);
        };
        let (_, v) = self.opts.remove(pos);
        v.parse::<T>()
            .map(Some)
            .map_err(|e| self.err(format!("bad value `{v}` for `{key}`: {e}")))
    }

    /// Removes a bare flag option (`...,zerocopy`); true if it was there.
    pub fn take_flag(&mut self, key: &str) -> Result<bool> {
        match self.opts.iter().position(|(k, _)| k == key) {
            None => Ok(false),
            Some(pos) => {
                let (_, v) = self.opts.remove(pos);
                match v.as_str() {
                    "" | "1" | "true" | "on" | "yes" => Ok(true),
                    "0" | "false" | "off" | "no" => Ok(false),
                    _ => Err(self.err(format!("`{key}` is a flag; write `{key}` or `{key}=off`"))),
                }
            }
        }
    }

    /// Fails if options are left that the backend did not take.
    pub fn finish(&self, known: &[&str]) -> Result<()> {
        match self.opts.first() {
            None => Ok(()),
            Some((k, _)) => Err(self.err(format!(
                "unknown option `{k}` for a {} port (known: {})",
                self.kind.as_str(),
                known.join(", ")
            ))),
        }
    }
}

impl FromStr for PortSpec {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad = |why: &str| Error::PortSpec {
            spec: s.to_string(),
            why: why.to_string(),
        };
        let (kind, rest) = s.split_once(':').ok_or_else(|| {
            bad("expected KIND:NAME, e.g. tap:bp0, xdp:eth1, dpdk:net_ring0 or mem:wire0")
        })?;
        let kind = match kind {
            "tap" => PortKind::Tap,
            "mem" => PortKind::Mem,
            "dpdk" => PortKind::Dpdk,
            "xdp" | "af_xdp" | "af-xdp" => PortKind::Xdp,
            other => {
                return Err(bad(&format!(
                    "unknown port kind `{other}`; use tap, xdp, dpdk or mem"
                )))
            }
        };
        // DPDK device arguments contain commas of their own
        // (`net_tap0,iface=x`), so for dpdk everything after the colon is
        // the device string; bypass's own options go after a `;`.
        let (name, opts_str) = if kind == PortKind::Dpdk {
            match rest.split_once(';') {
                Some((n, o)) => (n, o),
                None => (rest, ""),
            }
        } else {
            match rest.split_once(',') {
                Some((n, o)) => (n, o),
                None => (rest, ""),
            }
        };
        if name.is_empty() {
            return Err(bad("the port name is empty"));
        }
        let mut opts = Vec::new();
        for kv in opts_str.split([',', ';']).filter(|x| !x.is_empty()) {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            if k.is_empty() {
                return Err(bad(&format!("option `{kv}` has no name")));
            }
            opts.push((k.to_string(), v.to_string()));
        }
        Ok(PortSpec {
            kind,
            name: name.to_string(),
            opts,
            raw: s.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kinds_names_and_options() {
        let mut p: PortSpec = "tap:bp0,queues=2,mtu=9000,zerocopy".parse().unwrap();
        assert_eq!(p.kind, PortKind::Tap);
        assert_eq!(p.name, "bp0");
        assert_eq!(p.take::<u16>("queues").unwrap(), Some(2));
        assert_eq!(p.take::<u16>("nope").unwrap(), None);
        assert!(p.take_flag("zerocopy").unwrap());
        assert!(p.finish(&[]).is_err(), "mtu was not taken");
        assert_eq!(p.take::<u16>("mtu").unwrap(), Some(9000));
        p.finish(&[]).unwrap();
    }

    #[test]
    fn dpdk_devargs_keep_their_commas() {
        let mut p: PortSpec = "dpdk:net_tap0,iface=x,mac=fixed;queues=2".parse().unwrap();
        assert_eq!(p.name, "net_tap0,iface=x,mac=fixed");
        assert_eq!(p.take::<u16>("queues").unwrap(), Some(2));
        let p: PortSpec = "dpdk:0000:01:00.0".parse().unwrap();
        assert_eq!(p.name, "0000:01:00.0");
    }

    #[test]
    fn bad_specs_say_why() {
        for (s, needle) in [
            ("bp0", "KIND:NAME"),
            ("foo:bar", "unknown port kind"),
            ("tap:", "empty"),
            ("tap:x,=3", "no name"),
        ] {
            let e = s.parse::<PortSpec>().unwrap_err().to_string();
            assert!(e.contains(needle), "{s}: {e}");
        }
        let mut p: PortSpec = "tap:x,queues=many".parse().unwrap();
        let e = p.take::<u16>("queues").unwrap_err().to_string();
        assert!(e.contains("bad value `many`"), "{e}");
    }
}
