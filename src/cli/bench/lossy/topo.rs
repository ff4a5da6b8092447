//! The lossy path of `bypass bench lossy`: three named network namespaces
//! (router, kernel clients, kernel server) joined by veths, TAPs for bypass
//! in the router namespace, nftables random drop and an optional `tbf`
//! bottleneck on the router's egress interfaces.
//!
//! ```text
//!  client ns            router ns (forwarding, nft drop, tbf)         server ns
//!  c0 10.71.1.2 ── veth ── cv0 10.71.1.1     sv0 10.71.2.1 ── veth ── s0 10.71.2.2
//!  bypass loadgen i  ── ct{i} 10.71.{20+i}.1   st{i} 10.71.{10+i}.1 ── bypass echo i
//! ```
//!
//! Interfaces facing clients are named `c*` and those facing servers `s*`,
//! so one pair of nft rules (`iifname "c*"` / `oifname "c*"`) covers every
//! client and server in each direction. Everything is made inside the
//! namespaces themselves (the veths are created in the router namespace
//! with their peer placed straight into the other one), so two runs never
//! collide on a name, and deleting the namespaces on drop removes it all.

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use bypass::{Error, Result};

/// Address of the kernel client namespace.
pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 71, 1, 2);
/// Address of the kernel server namespace.
pub const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 71, 2, 2);
/// nft table (inside the router namespace, which is ours alone).
const TABLE: &str = "lossy";
/// The drop rule draws a number in `0..PPM_MOD`: loss is in parts per million.
pub const PPM_MOD: u32 = 1_000_000;

/// A TAP made (persistent) in the router namespace for one bypass process.
#[derive(Debug, Clone)]
pub struct TapSlot {
    /// Interface name in the router namespace.
    pub name: String,
    /// The bypass end's address (/24).
    pub ip: Ipv4Addr,
    /// The router's address on it (bypass's gateway).
    pub gw: Ipv4Addr,
    /// Fixed MAC for the bypass end, so the router's neighbour entry stays
    /// right when the process is restarted.
    pub mac: String,
}

/// The tbf settings for a rate (see `docs/lossy.md`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shaping {
    /// Bits per second.
    pub rate_bps: u64,
    /// Token bucket depth, bytes.
    pub burst: u64,
    /// Queue limit, bytes.
    pub limit: u64,
}

impl Shaping {
    /// Burst: 1 ms of the rate (at least 2 full frames); queue: 5 ms of the
    /// rate (at least 10 full frames). The bare path's RTT is ~0.1 ms, so
    /// its BDP is below one frame: a 1-2 BDP queue would hold a single
    /// frame. 5 ms is a small switch buffer; at 100 Mbit/s it is 62.5 KB,
    /// ~41 frames, and equals the BDP at the RTT the queue itself causes.
    pub fn for_rate(rate_bps: u64) -> Shaping {
        let per_ms = rate_bps / 8 / 1000;
        Shaping {
            rate_bps,
            burst: per_ms.max(2 * 1514),
            limit: (5 * per_ms).max(10 * 1514),
        }
    }
}

/// Packet counters of the nft rules, per direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counters {
    /// TCP frames from clients to servers that reached the router.
    pub up_all: u64,
    /// ... of which dropped.
    pub up_drop: u64,
    /// TCP frames from servers to clients that reached the router.
    pub down_all: u64,
    /// ... of which dropped.
    pub down_drop: u64,
    /// ICMP "fragmentation needed" the router sent (a narrower hop, see
    /// [`Topo::narrow_client_hop`]).
    pub too_big: u64,
}

impl Counters {
    /// What happened between `before` and `self`.
    pub fn since(&self, before: &Counters) -> Counters {
        Counters {
            up_all: self.up_all.saturating_sub(before.up_all),
            up_drop: self.up_drop.saturating_sub(before.up_drop),
            down_all: self.down_all.saturating_sub(before.down_all),
            down_drop: self.down_drop.saturating_sub(before.down_drop),
            too_big: self.too_big.saturating_sub(before.too_big),
        }
    }

    /// The sum of two counts.
    pub fn plus(&self, o: &Counters) -> Counters {
        Counters {
            up_all: self.up_all + o.up_all,
            up_drop: self.up_drop + o.up_drop,
            down_all: self.down_all + o.down_all,
            down_drop: self.down_drop + o.down_drop,
            too_big: self.too_big + o.too_big,
        }
    }

    /// Measured loss client→server and server→client (fractions).
    pub fn loss(&self) -> (f64, f64) {
        let f = |d: u64, a: u64| if a == 0 { 0.0 } else { d as f64 / a as f64 };
        (
            f(self.up_drop, self.up_all),
            f(self.down_drop, self.down_all),
        )
    }

    /// `1.02%/0.97% of 3012/2900`, and `, 3 frag-needed` when the router
    /// sent any.
    pub fn describe(&self) -> String {
        let (u, d) = self.loss();
        let too_big = if self.too_big > 0 {
            format!(", {} frag-needed", self.too_big)
        } else {
            String::new()
        };
        format!(
            "{:.2}%/{:.2}% of {}/{}{too_big}",
            u * 100.0,
            d * 100.0,
            self.up_all,
            self.down_all
        )
    }

    /// JSON for the report.
    pub fn json(&self) -> serde_json::Value {
        let (u, d) = self.loss();
        serde_json::json!({
            "up": u, "down": d,
            "up_frames": self.up_all, "up_dropped": self.up_drop,
            "down_frames": self.down_all, "down_dropped": self.down_drop,
            "frag_needed_sent": self.too_big,
        })
    }
}

/// The namespaces and what is in them; removed on drop.
pub struct Topo {
    /// Router namespace name.
    pub router: String,
    /// Kernel client namespace name.
    pub client: String,
    /// Kernel server namespace name.
    pub server: String,
    made: Vec<String>,
    /// Router egress interfaces (get the tbf).
    egress: Vec<String>,
    /// Offload state of every veth/TAP end, as ethtool reported it.
    pub offloads: Vec<String>,
}

/// Runs a command; its stdout, or an error naming it with its stderr.
pub fn run(cmd: &mut Command) -> Result<String> {
    let line = format!("{cmd:?}").replace('"', "");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::io(format!("run `{line}`"), e))?;
    if !out.status.success() {
        return Err(Error::Config(format!(
            "`{line}` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `ip netns exec NS PROG ARGS...`.
fn exec(ns: &str, prog: &str, args: &[&str]) -> Result<String> {
    run(Command::new("ip")
        .args(["netns", "exec", ns, prog])
        .args(args))
}

/// `ip -n NS ARGS...`.
fn ip(ns: &str, args: &str) -> Result<String> {
    run(Command::new("ip")
        .args(["-n", ns])
        .args(args.split_whitespace()))
}

/// Feeds `script` to `nft -f -` in namespace `ns`.
fn nft_script(ns: &str, script: &str) -> Result<()> {
    use std::io::Write;
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::io("run nft", e))?;
    if let Some(mut i) = child.stdin.take() {
        i.write_all(script.as_bytes())
            .map_err(|e| Error::io("write the nft script", e))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| Error::io("wait for nft", e))?;
    if !out.status.success() {
        return Err(Error::Config(format!(
            "nft rejected the rules: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// Fails with one sentence if a tool the bench needs is missing.
pub fn check_tools() -> Result<()> {
    for (tool, pkg) in [
        ("ip", "iproute2"),
        ("tc", "iproute2"),
        ("nft", "nftables"),
        ("ethtool", "ethtool"),
    ] {
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
            .unwrap_or(false)
            || ["/usr/sbin", "/sbin"]
                .iter()
                .any(|d| std::path::Path::new(d).join(tool).is_file());
        if !found {
            return Err(Error::Config(format!(
                "`{tool}` is not installed: install {pkg} (scripts/install-deps.sh does it)"
            )));
        }
    }
    Ok(())
}

impl Topo {
    /// Builds the namespaces, veths, routes and the nft table (no loss yet).
    /// The kernel ends' routes get `rto_min` (ms).
    pub fn up(rto_min_ms: u32) -> Result<Topo> {
        let tag = format!("bpl-{}", std::process::id());
        let mut t = Topo {
            router: format!("{tag}-r"),
            client: format!("{tag}-c"),
            server: format!("{tag}-s"),
            made: Vec::new(),
            egress: Vec::new(),
            offloads: Vec::new(),
        };
        for ns in [t.router.clone(), t.client.clone(), t.server.clone()] {
            run(Command::new("ip").args(["netns", "add", &ns]))?;
            t.made.push(ns.clone());
            exec(
                &ns,
                "sysctl",
                &[
                    "-qw",
                    "net.ipv6.conf.all.disable_ipv6=1",
                    "net.ipv6.conf.default.disable_ipv6=1",
                ],
            )?;
            ip(&ns, "link set lo up")?;
        }
        let (r, c, s) = (t.router.clone(), t.client.clone(), t.server.clone());
        exec(&r, "sysctl", &["-qw", "net.ipv4.ip_forward=1"])?;
        ip(
            &r,
            &format!("link add cv0 type veth peer name c0 netns {c}"),
        )?;
        ip(
            &r,
            &format!("link add sv0 type veth peer name s0 netns {s}"),
        )?;
        ip(&r, "addr add 10.71.1.1/24 dev cv0")?;
        ip(&r, "addr add 10.71.2.1/24 dev sv0")?;
        ip(&c, &format!("addr add {CLIENT_IP}/24 dev c0"))?;
        ip(&s, &format!("addr add {SERVER_IP}/24 dev s0"))?;
        for (ns, dev) in [(&r, "cv0"), (&r, "sv0"), (&c, "c0"), (&s, "s0")] {
            ip(ns, &format!("link set {dev} up"))?;
            t.offloads_off(ns, dev)?;
        }
        ip(
            &c,
            &format!("route add default via 10.71.1.1 rto_min {rto_min_ms}ms"),
        )?;
        ip(
            &s,
            &format!("route add default via 10.71.2.1 rto_min {rto_min_ms}ms"),
        )?;
        t.egress = vec!["cv0".into(), "sv0".into()];
        nft_script(
            &r,
            &format!(
                "table inet {TABLE} {{\n\
                 counter up_all {{}}\n counter up_drop {{}}\n\
                 counter down_all {{}}\n counter down_drop {{}}\n counter too_big {{}}\n\
                 chain forward {{ type filter hook forward priority 0; policy accept; }}\n\
                 chain output {{ type filter hook output priority 0; policy accept;\n\
                 icmp type destination-unreachable icmp code frag-needed counter name too_big\n }}\n}}\n"
            ),
        )?;
        t.set_loss(0)?;
        Ok(t)
    }

    /// GRO, GSO and TSO off, then reads them back (a feature the driver
    /// cannot change is reported, not hidden).
    fn offloads_off(&mut self, ns: &str, dev: &str) -> Result<()> {
        // ethtool exits non-zero when some feature is fixed; what matters
        // is the state read back below.
        let _ = exec(
            ns,
            "ethtool",
            &["-K", dev, "gro", "off", "gso", "off", "tso", "off"],
        );
        let k = exec(ns, "ethtool", &["-k", dev])?;
        let on: Vec<&str> = k
            .lines()
            .filter_map(|l| l.split_once(':'))
            .filter(|(name, v)| {
                matches!(
                    name.trim(),
                    "tcp-segmentation-offload"
                        | "generic-segmentation-offload"
                        | "generic-receive-offload"
                ) && v.trim_start().starts_with("on")
            })
            .map(|(name, _)| name.trim())
            .collect();
        if on.is_empty() {
            self.offloads.push(format!("{dev}: gro/gso/tso off"));
        } else {
            self.offloads
                .push(format!("{dev}: still on: {}", on.join(", ")));
        }
        Ok(())
    }

    /// Makes persistent TAP `name` in the router namespace with the router
    /// at `10.71.{subnet}.1/24`; bypass attaches to it as `.2`.
    pub fn add_tap(&mut self, name: &str, subnet: u8) -> Result<TapSlot> {
        let r = self.router.clone();
        ip(&r, &format!("tuntap add mode tap multi_queue name {name}"))?;
        ip(&r, &format!("addr add 10.71.{subnet}.1/24 dev {name}"))?;
        ip(&r, &format!("link set {name} up"))?;
        self.offloads_off(&r, name)?;
        self.egress.push(name.to_string());
        Ok(TapSlot {
            name: name.to_string(),
            ip: Ipv4Addr::new(10, 71, subnet, 2),
            gw: Ipv4Addr::new(10, 71, subnet, 1),
            mac: format!("02:71:00:00:00:{subnet:02x}"),
        })
    }

    /// Gives the router's route to the kernel clients a next-hop MTU of
    /// `mtu` bytes. A packet towards them that is larger, with
    /// don't-fragment set, is dropped and answered with an ICMP
    /// "fragmentation needed" (RFC 1191). The clients' own link keeps
    /// 1,500 bytes, so the MSS they announce does not give the narrower
    /// hop away: a server finds it only by path MTU discovery.
    ///
    /// `silent`: the router's ICMP errors are dropped as it sends them (a
    /// path MTU black hole, RFC 2923 2.1, as behind a firewall that filters
    /// ICMP; still counted). The kernel server then gets
    /// `tcp_mtu_probing=1`, Linux's black-hole detection, which is off by
    /// default: what anyone running on such a path would set.
    pub fn narrow_client_hop(&self, mtu: u32, silent: bool) -> Result<()> {
        ip(
            &self.router,
            &format!("route replace 10.71.1.0/24 dev cv0 src 10.71.1.1 mtu lock {mtu}"),
        )?;
        if silent {
            nft_script(
                &self.router,
                &format!(
                    "add rule inet {TABLE} output icmp type destination-unreachable \
                     icmp code frag-needed drop\n"
                ),
            )?;
            exec(
                &self.server,
                "sysctl",
                &["-qw", "net.ipv4.tcp_mtu_probing=1"],
            )?;
        }
        Ok(())
    }

    /// Random drop of `ppm` TCP frames per million in each direction.
    pub fn set_loss(&self, ppm: u32) -> Result<()> {
        let mut s = format!("flush chain inet {TABLE} forward\n");
        for (dir, m) in [("up", "iifname"), ("down", "oifname")] {
            s += &format!(
                "add rule inet {TABLE} forward {m} \"c*\" meta l4proto tcp counter name {dir}_all\n"
            );
            if ppm > 0 {
                s += &format!(
                    "add rule inet {TABLE} forward {m} \"c*\" meta l4proto tcp \
                     numgen random mod {PPM_MOD} < {ppm} counter name {dir}_drop drop\n"
                );
            }
        }
        nft_script(&self.router, &s)
    }

    /// A tbf on every router egress interface, or none.
    pub fn set_rate(&self, shaping: Option<Shaping>) -> Result<()> {
        for dev in &self.egress {
            match shaping {
                Some(sh) => {
                    exec(
                        &self.router,
                        "tc",
                        &[
                            "qdisc",
                            "replace",
                            "dev",
                            dev,
                            "root",
                            "tbf",
                            "rate",
                            &format!("{}bit", sh.rate_bps),
                            "burst",
                            &sh.burst.to_string(),
                            "limit",
                            &sh.limit.to_string(),
                        ],
                    )?;
                }
                None => {
                    // Only a tbf we put there is removed; none is fine.
                    let q = exec(&self.router, "tc", &["qdisc", "show", "dev", dev])?;
                    if q.contains("tbf") {
                        exec(&self.router, "tc", &["qdisc", "del", "dev", dev, "root"])?;
                    }
                }
            }
        }
        Ok(())
    }

    /// The nft counters now.
    pub fn counters(&self) -> Result<Counters> {
        let out = exec(
            &self.router,
            "nft",
            &["-j", "list", "counters", "table", "inet", TABLE],
        )?;
        parse_counters(&out)
    }
}

/// Reads `nft -j list counters` output.
fn parse_counters(json: &str) -> Result<Counters> {
    let v: serde_json::Value = serde_json::from_str(json)
        .map_err(|e| Error::Config(format!("nft printed unreadable JSON: {e}")))?;
    let mut c = Counters::default();
    let items = v["nftables"].as_array().cloned().unwrap_or_default();
    let mut seen = 0;
    for it in items {
        let ctr = &it["counter"];
        let Some(name) = ctr["name"].as_str() else {
            continue;
        };
        let p = ctr["packets"].as_u64().unwrap_or(0);
        let slot = match name {
            "up_all" => &mut c.up_all,
            "up_drop" => &mut c.up_drop,
            "down_all" => &mut c.down_all,
            "down_drop" => &mut c.down_drop,
            "too_big" => &mut c.too_big,
            _ => continue,
        };
        *slot = p;
        seen += 1;
    }
    if seen != 5 {
        return Err(Error::Config(format!(
            "nft shows {seen} of the 5 counters of table {TABLE}"
        )));
    }
    Ok(c)
}

impl Drop for Topo {
    fn drop(&mut self) {
        for ns in self.made.drain(..).rev() {
            if let Err(e) = run(Command::new("ip").args(["netns", "del", &ns])) {
                eprintln!("lossy: could not remove namespace {ns}: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_parse_and_loss() {
        let j = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}},
          {"counter": {"family": "inet", "name": "up_all", "table": "lossy", "handle": 2, "packets": 1000, "bytes": 9}},
          {"counter": {"family": "inet", "name": "up_drop", "table": "lossy", "handle": 3, "packets": 10, "bytes": 9}},
          {"counter": {"family": "inet", "name": "down_all", "table": "lossy", "handle": 4, "packets": 400, "bytes": 9}},
          {"counter": {"family": "inet", "name": "down_drop", "table": "lossy", "handle": 5, "packets": 2, "bytes": 9}},
          {"counter": {"family": "inet", "name": "too_big", "table": "lossy", "handle": 6, "packets": 3, "bytes": 9}}]}"#;
        let c = parse_counters(j).unwrap();
        let d = c.since(&Counters {
            up_all: 500,
            up_drop: 5,
            ..Default::default()
        });
        assert_eq!(d.up_all, 500);
        assert_eq!(d.loss(), (0.01, 0.005));
        assert_eq!(d.too_big, 3);
        assert!(parse_counters(r#"{"nftables": []}"#).is_err());
        assert!(parse_counters("not json").is_err());
    }

    #[test]
    fn shaping_of_100mbit() {
        let s = Shaping::for_rate(100_000_000);
        assert_eq!(s.burst, 12_500);
        assert_eq!(s.limit, 62_500);
        let slow = Shaping::for_rate(1_000_000);
        assert_eq!(slow.burst, 3028);
        assert_eq!(slow.limit, 15_140);
    }
}
