//! The stack's settings: per connection ([`TcpOpts`]), per listener
//! ([`ListenOpts`]) and per core ([`StackConfig`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::error::{Error, Result};
use crate::tcp::cc::CcAlgo;
use crate::tcp::rtt::RtoConfig;
use crate::tcp::{Config, Keepalive};

/// Which TCP implementation runs a connection.
///
/// The default is the bypass engine, over IPv4 and IPv6 (see
/// `docs/tcp.md` for how it compares with smoltcp's socket). The
/// environment variable `BYPASS_TCP_ENGINE` (`bypass` or `smoltcp`)
/// changes the default for the whole process, so the same program, test
/// suite or benchmark runs on either engine without code changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpEngine {
    /// bypass's own engine ([`crate::tcp`]): SACK, RACK-TLP, CUBIC, an RTO
    /// floor of milliseconds, SYN cookies, payload memory only while
    /// queued.
    Bypass,
    /// smoltcp's TCP socket (the reference engine): fixed buffers, a 1 s
    /// RTO floor, no use of SACK.
    Smoltcp,
}

impl Default for TcpEngine {
    fn default() -> TcpEngine {
        static FROM_ENV: std::sync::OnceLock<TcpEngine> = std::sync::OnceLock::new();
        *FROM_ENV.get_or_init(|| match std::env::var("BYPASS_TCP_ENGINE") {
            Ok(v) => v.parse().unwrap_or_else(|e| {
                tracing::warn!("BYPASS_TCP_ENGINE: {e}; using the bypass engine");
                TcpEngine::Bypass
            }),
            Err(_) => TcpEngine::Bypass,
        })
    }
}

impl std::str::FromStr for TcpEngine {
    type Err = Error;
    fn from_str(s: &str) -> Result<TcpEngine> {
        match s {
            "bypass" => Ok(TcpEngine::Bypass),
            "smoltcp" => Ok(TcpEngine::Smoltcp),
            _ => Err(Error::Config(format!(
                "`{s}` is not a TCP engine: use bypass or smoltcp"
            ))),
        }
    }
}

impl std::fmt::Display for TcpEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TcpEngine::Bypass => "bypass",
            TcpEngine::Smoltcp => "smoltcp",
        })
    }
}

/// TCP tuning for the connections of a listener or of active opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpOpts {
    /// The engine.
    pub engine: TcpEngine,
    /// Receive buffer bytes per connection. The smoltcp engine allocates
    /// them up front; the bypass engine takes this as its window's limit
    /// and holds memory only for bytes actually queued.
    pub rx_buf: usize,
    /// Send buffer bytes per connection (allocated up front by smoltcp, a
    /// limit for the bypass engine).
    pub tx_buf: usize,
    /// Nagle's algorithm (off: small writes go out at once).
    pub nagle: bool,
    /// Delayed-ACK time in ms (`None`: ACK at once).
    pub ack_delay_ms: Option<u64>,
    /// Abort a connection whose handshake does not complete in this long
    /// (ms).
    pub timeout_ms: u64,
    /// Abort an established connection when the peer has acknowledged
    /// nothing for this long (ms) while we have data or a FIN outstanding
    /// (the bypass engine's user timeout). Idle connections are not
    /// affected.
    pub dead_peer_ms: u64,
    /// Congestion control (bypass engine).
    pub cc: CcAlgo,
    /// Least retransmission timeout, µs (bypass engine; smoltcp's is 1 s).
    pub rto_min_us: u64,
    /// Retransmission timeout before any RTT sample, µs (bypass engine).
    pub rto_initial_us: u64,
    /// Keepalive probes (bypass engine).
    pub keepalive: Option<Keepalive>,
    /// Reset a connection that carried no data either way for this long,
    /// ms (bypass engine).
    pub idle_timeout_ms: Option<u64>,
    /// TIME-WAIT's length, ms (bypass engine; smoltcp's is 10 s).
    pub time_wait_ms: u64,
}

impl Default for TcpOpts {
    fn default() -> Self {
        let rto = RtoConfig::default();
        let engine = TcpEngine::default();
        // Windows are limits for the bypass engine (memory only while data
        // is queued) but allocations for smoltcp.
        let buf = match engine {
            TcpEngine::Bypass => 256 * 1024,
            TcpEngine::Smoltcp => 16 * 1024,
        };
        TcpOpts {
            engine,
            rx_buf: buf,
            tx_buf: buf,
            nagle: false,
            ack_delay_ms: Some(1),
            timeout_ms: 10_000,
            dead_peer_ms: 300_000,
            cc: CcAlgo::default(),
            rto_min_us: rto.min_us,
            rto_initial_us: rto.initial_us,
            keepalive: None,
            idle_timeout_ms: None,
            time_wait_ms: 60_000,
        }
    }
}

impl TcpOpts {
    /// The same settings on another engine.
    pub fn on(self, engine: TcpEngine) -> TcpOpts {
        TcpOpts { engine, ..self }
    }

    /// The bypass engine's settings for these options and an MTU, for
    /// IPv4 or (`v6`) IPv6 connections: the MSS leaves room for the IP
    /// and TCP headers (20 + 20 or 40 + 20 bytes).
    pub fn engine_config(&self, mtu: u16, v6: bool) -> Config {
        let d = Config::default();
        let headers = if v6 { 60 } else { 40 };
        Config {
            mss: mtu.saturating_sub(headers).max(536),
            rcv_wnd: self.rx_buf.min(1 << 30) as u32,
            snd_buf: self.tx_buf.min(1 << 30) as u32,
            nagle: self.nagle,
            ack_delay_us: self.ack_delay_ms.map(|ms| ms * 1000),
            rto: RtoConfig {
                initial_us: self.rto_initial_us,
                min_us: self.rto_min_us,
                max_us: d.rto.max_us,
            },
            cc: self.cc,
            keepalive: self.keepalive,
            idle_timeout_us: self.idle_timeout_ms.map(|ms| ms * 1000),
            user_timeout_us: self.dead_peer_ms * 1000,
            handshake_timeout_us: self.timeout_ms * 1000,
            time_wait_us: self.time_wait_ms * 1000,
            ..d
        }
    }
}

/// What to do with a SYN when the listener's backlog is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BacklogFull {
    /// Drop it silently (the client retries; Linux's default without SYN
    /// cookies).
    Drop,
    /// Answer with RST (the client fails at once).
    Reset,
    /// Make room by dropping the oldest connection still in the handshake
    /// (silently, as if its SYN had been lost), and take the new SYN.
    DropOldest,
    /// Answer with a SYN cookie (RFC 4987): nothing is stored until the
    /// client's ACK proves its address, so a flood of spoofed SYNs never
    /// locks real clients out. Bypass engine only; the smoltcp engine
    /// drops instead.
    Cookie,
}

impl Default for BacklogFull {
    /// SYN cookies with the bypass engine, drop with smoltcp.
    fn default() -> BacklogFull {
        match TcpEngine::default() {
            TcpEngine::Bypass => BacklogFull::Cookie,
            TcpEngine::Smoltcp => BacklogFull::Drop,
        }
    }
}

/// A listener's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenOpts {
    /// Most connections in the handshake at once.
    pub backlog: usize,
    /// Policy when the backlog is full.
    pub on_full: BacklogFull,
    /// TCP settings of accepted connections.
    pub tcp: TcpOpts,
}

impl Default for ListenOpts {
    fn default() -> Self {
        ListenOpts {
            backlog: 1024,
            on_full: BacklogFull::default(),
            tcp: TcpOpts::default(),
        }
    }
}

/// The stack's settings.
#[derive(Debug, Clone)]
pub struct StackConfig {
    /// Our IPv4 address (`0.0.0.0`: none, an IPv6-only stack).
    pub ip: Ipv4Addr,
    /// Prefix length of our IPv4 subnet.
    pub prefix: u8,
    /// Default IPv4 gateway, if any.
    pub gateway: Option<Ipv4Addr>,
    /// Our IPv6 addresses with their prefix lengths (besides the
    /// link-local address, which the stack makes from its MAC).
    pub ip6: Vec<(Ipv6Addr, u8)>,
    /// Default IPv6 gateway, if any (often a link-local address).
    pub gateway6: Option<Ipv6Addr>,
    /// Most connections (all states) on this core.
    pub max_conns: usize,
    /// Connections expected on this core (0: no guess). The table and
    /// the slots are sized for this many at creation, so
    /// they never grow (and a rehash never stops the loop) while the table
    /// stays below it. Costs about 1 byte per expected connection up front
    /// (the hash table's control bytes); the rest is address space, taken
    /// from memory only as connections arrive.
    pub expected_conns: usize,
    /// TCP settings of active opens.
    pub connect: TcpOpts,
    /// First and last local port for active opens.
    pub ephemeral: (u16, u16),
    /// Most payload bytes the bypass engine may hold on this core (send and
    /// receive queues of all its connections together).
    pub tcp_memory: usize,
    /// Seed of the generators behind initial sequence numbers, SYN
    /// cookies, IP ids and the first ephemeral port. `None` (the default):
    /// drawn from the OS random generator, as it must be in service. A
    /// fixed seed makes tests and fuzzing reproducible; never set one on a
    /// real network.
    pub random_seed: Option<u64>,
}

impl StackConfig {
    /// A config for IPv4 address `ip/prefix` (`0.0.0.0`: none).
    pub fn new(ip: Ipv4Addr, prefix: u8) -> Self {
        StackConfig {
            ip,
            prefix,
            gateway: None,
            ip6: Vec::new(),
            gateway6: None,
            max_conns: 1 << 20,
            expected_conns: 0,
            connect: TcpOpts::default(),
            ephemeral: (32768, 60999),
            tcp_memory: 4 << 30,
            random_seed: None,
        }
    }

    /// A config for `addr/prefix`, of either family (an IPv6 address makes
    /// an IPv6-only stack; add an IPv4 one with [`StackConfig::with_addr`]).
    pub fn for_addr(addr: IpAddr, prefix: u8) -> Self {
        StackConfig::new(Ipv4Addr::UNSPECIFIED, 0).with_addr(addr, prefix)
    }

    /// Adds `addr/prefix`: an IPv4 address replaces the IPv4 address, an
    /// IPv6 one is added to the others.
    pub fn with_addr(mut self, addr: IpAddr, prefix: u8) -> Self {
        match addr {
            IpAddr::V4(a) => {
                self.ip = a;
                self.prefix = prefix;
            }
            IpAddr::V6(a) => self.ip6.push((a, prefix)),
        }
        self
    }

    /// The IPv4 address, if the stack has one.
    pub fn ipv4(&self) -> Option<Ipv4Addr> {
        (!self.ip.is_unspecified()).then_some(self.ip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mss_leaves_room_for_each_familys_headers() {
        let o = TcpOpts::default();
        assert_eq!(o.engine_config(1500, false).mss, 1460);
        assert_eq!(o.engine_config(1500, true).mss, 1440);
        assert_eq!(o.engine_config(9000, true).mss, 8940);
        // Never below the 536 every host takes.
        assert_eq!(o.engine_config(576, true).mss, 536);
    }
}
