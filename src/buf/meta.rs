//! Per-buffer offload metadata: what the device (or the kernel) found out
//! about a received frame, and what it is asked to do for a frame to send.
//!
//! Every [`PacketBuf`](super::PacketBuf) answers "unknown" and "cannot
//! carry offload requests" by default; a backend overrides the methods
//! where its device tells more (DPDK from the mbuf's `ol_flags`, `hash.rss`
//! and `packet_type`; TAP would from a virtio-net header). Code that does
//! not care changes nothing.

/// What a device found when it checked one checksum of a received frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Checksum {
    /// Not checked (or the device does not say): verify it in software.
    #[default]
    Unknown,
    /// Checked and right.
    Good,
    /// Checked and wrong.
    Bad,
}

/// The receive checksum status of a frame: the IPv4 header's (L3) and the
/// TCP/UDP one's (L4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RxChecksum {
    /// IPv4 header checksum.
    pub l3: Checksum,
    /// TCP or UDP checksum.
    pub l4: Checksum,
}

impl RxChecksum {
    /// Nothing known.
    pub const UNKNOWN: RxChecksum = RxChecksum {
        l3: Checksum::Unknown,
        l4: Checksum::Unknown,
    };
}

/// The network layer of a frame, as the device classified it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum L3Type {
    /// Not classified.
    #[default]
    Unknown,
    /// IPv4.
    Ipv4,
    /// IPv6.
    Ipv6,
    /// Something else.
    Other,
}

/// The transport layer of a frame, as the device classified it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum L4Type {
    /// Not classified.
    #[default]
    Unknown,
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// ICMP.
    Icmp,
    /// An IP fragment (no transport header to look at).
    Fragment,
    /// Something else.
    Other,
}

/// A frame's packet type, as the device classified it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PacketType {
    /// Network layer.
    pub l3: L3Type,
    /// Transport layer.
    pub l4: L4Type,
}

impl PacketType {
    /// Nothing known.
    pub const UNKNOWN: PacketType = PacketType {
        l3: L3Type::Unknown,
        l4: L4Type::Unknown,
    };
}

/// Which transport checksum a device is asked to fill in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum L4Offload {
    /// None.
    #[default]
    None,
    /// TCP: the checksum field must hold the pseudo-header sum (as for
    /// every NIC with TCP checksum offload).
    Tcp,
    /// UDP: as for TCP.
    Udp,
}

/// What a frame to send asks of the device. Header lengths are what the
/// device needs to find the headers without parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TxOffload {
    /// Ethernet header length (14, or 18 with a VLAN tag).
    pub l2_len: u8,
    /// IPv4 header length.
    pub l3_len: u8,
    /// TCP header length (needed for TSO).
    pub l4_len: u8,
    /// Fill in the IPv4 header checksum.
    pub ipv4_checksum: bool,
    /// Fill in this transport checksum.
    pub l4_checksum: L4Offload,
    /// Cut the TCP payload into segments of this many bytes (TSO; 0: no).
    /// Implies the IPv4 and TCP checksums.
    pub tso_mss: u16,
}

impl TxOffload {
    /// TSO for an Ethernet + IPv4 (20-byte header) + TCP frame whose TCP
    /// header is `l4_len` bytes: cut into segments of `mss` payload bytes,
    /// the IPv4 and TCP checksums filled in.
    pub const fn tso_ipv4(l4_len: u8, mss: u16) -> TxOffload {
        TxOffload {
            l2_len: 14,
            l3_len: 20,
            l4_len,
            ipv4_checksum: true,
            l4_checksum: L4Offload::Tcp,
            tso_mss: mss,
        }
    }

    /// TSO for an Ethernet + IPv6 (40-byte header, TCP as its next
    /// header) + TCP frame: as [`TxOffload::tso_ipv4`], with no IPv4
    /// header checksum to fill in.
    pub const fn tso_ipv6(l4_len: u8, mss: u16) -> TxOffload {
        TxOffload {
            l2_len: 14,
            l3_len: 40,
            l4_len,
            ipv4_checksum: false,
            l4_checksum: L4Offload::Tcp,
            tso_mss: mss,
        }
    }

    /// True if nothing is requested.
    pub fn is_none(&self) -> bool {
        !self.ipv4_checksum && self.l4_checksum == L4Offload::None && self.tso_mss == 0
    }
}
