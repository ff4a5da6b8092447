//! The connection table's keys: a TCP segment's peer address and port,
//! our port and, for IPv6, which of our addresses it came to. The key is
//! also where the bypass engine finds a connection's addresses (see
//! `stack/engine.rs`), so they are not kept twice.

use smoltcp::wire::{Ipv4Address, Ipv6Address};

/// The connection table key of a TCP segment we received: the peer's
/// address and port, our port and, for IPv6, which of our addresses it
/// came to (a stack has one IPv4 address but several IPv6 ones, so one
/// peer address and port may reach two of them at once).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TcpKey {
    /// IPv4 (see [`tcp_key`]): the key of the IPv4 table.
    V4(u64),
    /// IPv6: the key of the IPv6 table.
    V6(Key6),
}

/// The IPv6 connection table key: the peer's address, its port and ours,
/// and our address as its index in [`Ours::v6`](super::classify::Ours::v6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key6 {
    remote: [u32; 4],
    ports: u32,
    local: u8,
}

impl Key6 {
    /// The peer's address.
    #[inline]
    pub fn remote(&self) -> Ipv6Address {
        let mut o = [0; 16];
        for (i, w) in self.remote.iter().enumerate() {
            o[4 * i..4 * i + 4].copy_from_slice(&w.to_be_bytes());
        }
        Ipv6Address::from(o)
    }

    /// Our address: its index in [`Ours::v6`](super::classify::Ours::v6).
    #[inline]
    pub fn local(&self) -> u8 {
        self.local
    }

    /// The peer's port and ours.
    #[inline]
    pub fn ports(&self) -> (u16, u16) {
        ((self.ports >> 16) as u16, self.ports as u16)
    }
}

/// The IPv4 connection table key of a TCP segment we received: the peer's
/// address and port and our port.
#[inline]
pub fn tcp_key(remote: Ipv4Address, remote_port: u16, local_port: u16) -> u64 {
    (u32::from(remote) as u64) << 32 | (remote_port as u64) << 16 | local_port as u64
}

/// The peer's address in an IPv4 key (see [`tcp_key`]).
#[inline]
pub fn key_remote(key: u64) -> Ipv4Address {
    Ipv4Address::from((key >> 32) as u32)
}

/// The IPv6 connection table key (see [`tcp_key`]): `local` is the index
/// of our address in [`Ours::v6`](super::classify::Ours::v6).
#[inline]
pub fn tcp_key6(local: u8, remote: Ipv6Address, remote_port: u16, local_port: u16) -> Key6 {
    let o = remote.octets();
    Key6 {
        remote: std::array::from_fn(|i| {
            u32::from_be_bytes([o[4 * i], o[4 * i + 1], o[4 * i + 2], o[4 * i + 3]])
        }),
        ports: (remote_port as u32) << 16 | local_port as u32,
        local,
    }
}
