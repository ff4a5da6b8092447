//! TAP interfaces over `/dev/net/tun`.
//!
//! One file descriptor per queue (`IFF_TAP | IFF_NO_PI | IFF_MULTI_QUEUE`),
//! non-blocking. The device is created if it does not exist (and vanishes
//! when the port closes) or attached to if it does (a persistent TAP made
//! with `ip tuntap add mode tap multi_queue name NAME`). The kernel side of
//! the TAP is a Linux interface with its own MAC; this port is the far end
//! of that cable and sends from a MAC of its own.
//!
//! A TAP moves one frame per `read`/`write`; a burst is a loop of them,
//! stopped by `EAGAIN`. Expect about 0.1 Mpps per core: this backend is for
//! the demo, interop tests and development, not for speed.
//!
//! With `vnet`, every frame is preceded by a virtio-net header
//! (`IFF_VNET_HDR`, 10 bytes, read and written with the frame in one
//! `readv`/`writev`), and the kernel is told we accept frames whose TCP/UDP
//! checksum it left for us (`TUNSETOFFLOAD` with `TUN_F_CSUM`): it then
//! skips computing checksums for what it sends us, and each received
//! buffer says whether its transport checksum was checked or left partial
//! by the local kernel (both count as good). On transmit, a buffer whose
//! [`crate::buf::TxOffload`] asks for a TCP/UDP checksum goes out with
//! `VIRTIO_NET_HDR_F_NEEDS_CSUM` (its checksum field must hold the
//! pseudo-header sum, as for a NIC) and the kernel finishes it; an IPv4
//! header checksum request is done here in software (the header has no
//! such offload).
//!
//! With `tso` (which needs `vnet`), the queues' buffers hold a whole
//! 64 KiB IP packet, and a buffer whose [`crate::buf::TxOffload`] carries
//! a TSO MSS goes out as one large frame with a GSO header
//! (`VIRTIO_NET_HDR_GSO_TCPV4`/`TCPV6`, `gso_size` the MSS, `hdr_len` the
//! Ethernet, IP and TCP headers): one `writev` for up to 64 KiB of TCP
//! payload. The kernel delivers it to a local socket as one packet, or
//! cuts it into MSS-sized segments on its way out of another interface.
//! The frame must be Ethernet + IPv4 (no options needed) or IPv6 (TCP as
//! the next header) + TCP, with the IP length fields covering the whole
//! segment and the TCP checksum field holding the pseudo-header sum over
//! the whole segment's TCP length (as for any TSO NIC); the port fills in
//! the IPv4 header checksum. A TSO request on a frame that is not such a
//! segment is dropped and counted as a transmit error. A segment whose
//! payload fits in one MSS goes out as an ordinary frame.
//! On receive, `tso` also tells the kernel we take large TCP segments
//! (`TUN_F_TSO4`/`TUN_F_TSO6`): its own TCP then sends us up to 64 KiB per
//! frame, with the TCP checksum left partial as for `vnet`. Both engines
//! take segments larger than the MSS they announced, as every TCP does
//! after GRO (a kernel client's 64 MiB each way arrives in about 6,000
//! frames instead of 90,000). Frames forwarded by a router still come
//! MTU-sized unless GRO joined them there.
//!
//! Options: `tap:NAME[,queues=N][,mtu=M][,mac=02:..][,netns=NS][,frames=F][,vnet][,tso]`.
//! `netns=NS` opens (or creates) the TAP inside the network namespace `NS`
//! (`/run/netns/NS`); its queues work from any thread afterwards.
#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;

use super::sys;
use super::{LinkStats, MacAddr, Port, PortCaps, PortInfo, PortQueue, PortSpec, QueueCounters};
use crate::buf::{
    Burst, Checksum, HugePolicy, L4Offload, PacketBuf, Pool, PoolBuf, PoolConfig, PoolStats,
    RxChecksum,
};
use crate::error::{Error, Result};
use crate::syscall;

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_MULTI_QUEUE: libc::c_short = 0x0100;
const IFF_VNET_HDR: libc::c_short = 0x4000;
// _IOW('T', 216, int) and _IOW('T', 208, unsigned int).
const TUNSETVNETHDRSZ: libc::c_ulong = 0x4004_54d8;
const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
const TUN_F_CSUM: libc::c_uint = 0x01;
const TUN_F_TSO4: libc::c_uint = 0x02;
const TUN_F_TSO6: libc::c_uint = 0x04;
/// `struct virtio_net_hdr`: flags, gso_type, hdr_len, gso_size,
/// csum_start, csum_offset (little-endian on the hosts we run on).
const VNET_HDR_LEN: usize = 10;
const VNET_F_NEEDS_CSUM: u8 = 1;
const VNET_F_DATA_VALID: u8 = 2;
/// `gso_type` values.
const VNET_GSO_TCPV4: u8 = 1;
const VNET_GSO_TCPV6: u8 = 4;
const VNET_GSO_ECN: u8 = 0x80;
/// Default frames per queue pool when `tso` (each is 64.5 KiB).
const TSO_FRAMES: u32 = 512;

/// How to open a TAP port.
#[derive(Debug, Clone)]
pub struct TapConfig {
    /// Interface name.
    pub name: String,
    /// Number of queues (one per core).
    pub queues: u16,
    /// MTU to set; `None` keeps the interface's.
    pub mtu: Option<u16>,
    /// Our MAC; `None` picks a random locally administered one.
    pub mac: Option<MacAddr>,
    /// Network namespace to open the TAP in.
    pub netns: Option<String>,
    /// Frames in each queue's pool.
    pub frames: u32,
    /// Hugepage policy of the pools.
    pub huge: HugePolicy,
    /// Use virtio-net headers (checksum offload both ways).
    pub vnet: bool,
    /// Large buffers and TSO on transmit (needs `vnet`).
    pub tso: bool,
}

impl TapConfig {
    /// A config for `name` with one queue and defaults.
    pub fn new(name: &str) -> TapConfig {
        TapConfig {
            name: name.into(),
            queues: 1,
            mtu: None,
            mac: None,
            netns: None,
            frames: 4096,
            huge: HugePolicy::Auto,
            vnet: false,
            tso: false,
        }
    }

    /// Reads `tap:NAME,...` options; `queues` defaults to `default_queues`.
    pub fn from_spec(spec: &mut PortSpec, default_queues: u16) -> Result<TapConfig> {
        let mut c = TapConfig::new(&spec.name);
        c.queues = spec.take("queues")?.unwrap_or(default_queues);
        c.mtu = spec.take("mtu")?;
        c.mac = spec.take("mac")?;
        c.netns = spec.take("netns")?;
        let frames = spec.take("frames")?;
        c.vnet = spec.take_flag("vnet")?;
        c.tso = spec.take_flag("tso")?;
        spec.finish(&["queues", "mtu", "mac", "netns", "frames", "vnet", "tso"])?;
        if c.tso && !c.vnet {
            return Err(spec.err("tso needs vnet (write `,vnet,tso`)"));
        }
        c.frames = frames.unwrap_or(if c.tso { TSO_FRAMES } else { c.frames });
        if c.queues == 0 || c.queues > 256 {
            return Err(spec.err("queues must be 1..=256"));
        }
        if let Some(m) = c.mtu {
            if !(68..=65000).contains(&m) {
                return Err(spec.err("mtu must be 68..=65000"));
            }
        }
        Ok(c)
    }
}

/// One TAP queue.
pub struct TapQueue {
    id: u16,
    fd: OwnedFd,
    /// A frame kept from a receive that read nothing. Declared before
    /// `pool`, so that it goes back before the pool handle does (fields
    /// drop in order; a pool closed with a frame out stays mapped).
    spare: Option<PoolBuf>,
    pool: Pool,
    counters: Arc<QueueCounters>,
    vnet: bool,
}

/// What a received virtio-net header says about the frame's checksums.
fn rx_status(hdr: &[u8; VNET_HDR_LEN]) -> RxChecksum {
    let f = hdr[0];
    RxChecksum {
        // The kernel always fills in IPv4 header checksums itself; the
        // header says nothing about them.
        l3: Checksum::Unknown,
        // Partial (from this host's own stack, never on a wire) or
        // verified by the kernel.
        l4: if f & (VNET_F_NEEDS_CSUM | VNET_F_DATA_VALID) != 0 {
            Checksum::Good
        } else {
            Checksum::Unknown
        },
    }
}

/// The virtio-net header for sending `buf`, filling the IPv4 header
/// checksum in place if asked (the header cannot ask the kernel for it).
/// `None`: the buffer asks for TSO but is not a TCP segment this port can
/// cut (the caller drops it and counts a transmit error).
fn tx_header(buf: &mut PoolBuf) -> Option<[u8; VNET_HDR_LEN]> {
    use smoltcp::wire::{
        EthernetFrame, EthernetProtocol, IpProtocol, Ipv4Packet, Ipv6Packet, TcpPacket,
    };
    let mut h = [0u8; VNET_HDR_LEN];
    let req = buf.tx_offload();
    if req.is_none() {
        return Some(h);
    }
    let tso = req.tso_mss != 0;
    let Ok(mut eth) = EthernetFrame::new_checked(buf.data_mut()) else {
        return (!tso).then_some(h);
    };
    // (IP header length, TCP header and payload) of a TCP segment, after
    // filling an IPv4 header checksum if asked (always for TSO).
    let (l3_len, tcp) = match eth.ethertype() {
        EthernetProtocol::Ipv4 => {
            let Ok(mut ip) = Ipv4Packet::new_checked(eth.payload_mut()) else {
                return (!tso).then_some(h);
            };
            if req.ipv4_checksum || tso {
                ip.fill_checksum();
            }
            let tcp =
                ip.next_header() == IpProtocol::Tcp && !ip.more_frags() && ip.frag_offset() == 0;
            let hl = ip.header_len() as usize;
            let total = ip.total_len() as usize;
            (hl, tcp.then(|| total - hl))
        }
        // Checksum requests on IPv6 are left as they were (not offloaded);
        // TSO is (TCP right after the fixed header).
        EthernetProtocol::Ipv6 if tso => {
            let Ok(ip) = Ipv6Packet::new_checked(eth.payload_mut()) else {
                return (!tso).then_some(h);
            };
            let tcp = ip.next_header() == IpProtocol::Tcp;
            (40, tcp.then(|| ip.payload_len() as usize))
        }
        _ => return (!tso).then_some(h),
    };
    let start = 14 + l3_len;
    let offset: u16 = match (tso, req.l4_checksum) {
        (true, _) | (false, L4Offload::Tcp) => 16,
        (false, L4Offload::Udp) => 6,
        (false, L4Offload::None) => return Some(h),
    };
    if tso {
        let v6 = eth.ethertype() == EthernetProtocol::Ipv6;
        // The TCP header: its length, and CWR (ECN) for the GSO type.
        let seg = tcp.and_then(|len| eth.payload_mut().get_mut(l3_len..l3_len + len));
        let tcp = seg.and_then(|s| TcpPacket::new_checked(&s[..]).ok())?;
        let (thl, cwr, seg_len) = (tcp.header_len() as usize, tcp.cwr(), tcp.as_ref().len());
        if thl < 20 {
            return None;
        }
        let payload = seg_len - thl;
        if payload > req.tso_mss as usize {
            let mut gso = if v6 { VNET_GSO_TCPV6 } else { VNET_GSO_TCPV4 };
            if cwr {
                gso |= VNET_GSO_ECN; // CWR: the kernel sets it on the first segment only
            }
            h[1] = gso;
            h[2..4].copy_from_slice(&((start + thl) as u16).to_le_bytes());
            h[4..6].copy_from_slice(&req.tso_mss.to_le_bytes());
        }
    }
    h[0] = VNET_F_NEEDS_CSUM;
    h[6..8].copy_from_slice(&(start as u16).to_le_bytes());
    h[8..10].copy_from_slice(&offset.to_le_bytes());
    Some(h)
}

impl PortQueue for TapQueue {
    type Buf = PoolBuf;

    fn rx_burst(&mut self, burst: &mut Burst<PoolBuf>) -> usize {
        let fd = self.fd.as_raw_fd();
        let (mut n, mut bytes) = (0u64, 0u64);
        while !burst.is_full() {
            let Some(mut buf) = self.spare.take().or_else(|| self.pool.alloc()) else {
                break; // pool dry: counted by the pool; the kernel queues or drops
            };
            let mut hdr = [0u8; VNET_HDR_LEN];
            let room = buf.room_mut();
            let r = if self.vnet {
                let iov = [
                    libc::iovec {
                        iov_base: hdr.as_mut_ptr().cast(),
                        iov_len: VNET_HDR_LEN,
                    },
                    libc::iovec {
                        iov_base: room.as_mut_ptr().cast(),
                        iov_len: room.len(),
                    },
                ];
                // SAFETY: both iovecs describe live, writable memory of
                // their stated lengths (the header array, the buffer room).
                let r = unsafe { libc::readv(fd, iov.as_ptr(), 2) };
                if r > 0 && (r as usize) <= VNET_HDR_LEN {
                    self.counters.rx_errors.add(1); // a header and no frame
                    continue;
                }
                if r > 0 {
                    r - VNET_HDR_LEN as isize
                } else {
                    r
                }
            } else {
                // SAFETY: reads at most room.len() bytes into the room.
                unsafe { libc::read(fd, room.as_mut_ptr().cast(), room.len()) }
            };
            if r > 0 {
                buf.set_len(r as usize);
                if self.vnet {
                    buf.set_rx_checksum(rx_status(&hdr));
                }
                bytes += r as u64;
                n += 1;
                burst.push(buf);
                continue;
            }
            self.spare = Some(buf);
            let err = std::io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EAGAIN) => break,
                _ => {
                    self.counters.rx_errors.add(1);
                    break;
                }
            }
        }
        if n > 0 {
            self.counters.rx_packets.add(n);
            self.counters.rx_bytes.add(bytes);
        }
        n as usize
    }

    fn tx_burst(&mut self, burst: &mut Burst<PoolBuf>) -> usize {
        let fd = self.fd.as_raw_fd();
        let (mut sent, mut bytes, mut errors) = (0u64, 0u64, 0u64);
        let mut consumed = 0;
        let vnet = self.vnet;
        for b in burst.iter_mut() {
            let hdr = if vnet {
                match tx_header(b) {
                    Some(h) => h,
                    None => {
                        // A TSO request on a frame that is not a TCP
                        // segment: consumed and counted.
                        errors += 1;
                        consumed += 1;
                        continue;
                    }
                }
            } else {
                [0; VNET_HDR_LEN]
            };
            let data = b.data();
            let r = if vnet {
                let iov = [
                    libc::iovec {
                        iov_base: hdr.as_ptr() as *mut libc::c_void,
                        iov_len: VNET_HDR_LEN,
                    },
                    libc::iovec {
                        iov_base: data.as_ptr() as *mut libc::c_void,
                        iov_len: data.len(),
                    },
                ];
                // SAFETY: both iovecs describe live memory of their stated
                // lengths; writev only reads them.
                unsafe { libc::writev(fd, iov.as_ptr(), 2) }
            } else {
                // SAFETY: writes data.len() bytes from a live slice.
                unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) }
            };
            if r >= 0 {
                sent += 1;
                bytes += data.len() as u64;
            } else {
                match std::io::Error::last_os_error().raw_os_error() {
                    Some(libc::EAGAIN) | Some(libc::EINTR) => break,
                    _ => errors += 1, // e.g. EIO: consumed and counted
                }
            }
            consumed += 1;
        }
        burst.drain(..consumed);
        self.counters.tx_packets.add(sent);
        self.counters.tx_bytes.add(bytes);
        if errors > 0 {
            self.counters.tx_errors.add(errors);
        }
        consumed
    }

    fn alloc(&mut self) -> Option<PoolBuf> {
        self.spare.take().or_else(|| self.pool.alloc())
    }

    fn queue_id(&self) -> u16 {
        self.id
    }

    fn pool_stats(&self) -> PoolStats {
        let mut s = self.pool.stats();
        // The spare buffer is ours, not in use by anyone.
        s.in_use -= self.spare.is_some() as u64;
        s
    }
}

/// An open TAP interface.
pub struct TapPort {
    info: PortInfo,
    queues: Vec<TapQueue>,
    counters: Vec<Arc<QueueCounters>>,
}

fn open_queue(name: &str, multi: bool, vnet: bool, tso: bool) -> Result<OwnedFd> {
    let path = c"/dev/net/tun";
    let fd = syscall!(open(path.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC)).map_err(|e| match e
        .raw_os_error()
    {
        Some(libc::ENOENT) | Some(libc::ENODEV) => Error::Config(
            "/dev/net/tun does not exist: load the tun module (`modprobe tun`) or run in a container with it".into(),
        ),
        _ => Error::io("open /dev/net/tun", e),
    })?;
    // SAFETY: fd was just returned by open() and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut ifr = sys::ifreq(name)?;
    ifr.ifr_ifru.ifru_flags = IFF_TAP
        | IFF_NO_PI
        | if multi { IFF_MULTI_QUEUE } else { 0 }
        | if vnet { IFF_VNET_HDR } else { 0 };
    syscall!(ioctl(fd.as_raw_fd(), TUNSETIFF, &mut ifr as *mut libc::ifreq)).map_err(|e| {
        match e.raw_os_error() {
            Some(libc::EPERM) | Some(libc::EACCES) => Error::Privilege {
                what: format!("opening TAP device `{name}`"),
                caps: "CAP_NET_ADMIN",
            },
            Some(libc::EBUSY) => Error::Config(format!(
                "TAP `{name}` is busy: another process holds it, or it exists with other flags (delete it with `ip link del {name}`)"
            )),
            Some(libc::EINVAL) => Error::Config(format!(
                "`{name}` exists but is not a multi-queue TAP; delete it (`ip link del {name}`) or recreate it with `ip tuntap add mode tap multi_queue name {name}`"
            )),
            _ => Error::io(format!("TUNSETIFF {name}"), e),
        }
    })?;
    if vnet {
        let size: libc::c_int = VNET_HDR_LEN as libc::c_int;
        syscall!(ioctl(
            fd.as_raw_fd(),
            TUNSETVNETHDRSZ,
            &size as *const libc::c_int
        ))
        .map_err(|e| Error::io(format!("TUNSETVNETHDRSZ {name}"), e))?;
        let offload = if tso {
            TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6
        } else {
            TUN_F_CSUM
        };
        syscall!(ioctl(fd.as_raw_fd(), TUNSETOFFLOAD, offload))
            .map_err(|e| Error::io(format!("TUNSETOFFLOAD {name}"), e))?;
    }
    sys::set_nonblocking(fd.as_raw_fd()).map_err(|e| Error::io("O_NONBLOCK on tap", e))?;
    Ok(fd)
}

impl TapPort {
    /// Opens (or creates) the TAP interface, sets its MTU, brings it up.
    pub fn open(cfg: &TapConfig) -> Result<TapPort> {
        match &cfg.netns {
            Some(ns) => {
                let c = TapConfig {
                    netns: None,
                    ..cfg.clone()
                };
                sys::in_netns(ns, move || TapPort::open_here(&c))
            }
            None => TapPort::open_here(cfg),
        }
    }

    fn open_here(cfg: &TapConfig) -> Result<TapPort> {
        let mut fds = Vec::with_capacity(cfg.queues as usize);
        for _ in 0..cfg.queues {
            fds.push(open_queue(&cfg.name, true, cfg.vnet, cfg.tso)?);
        }
        if let Some(mtu) = cfg.mtu {
            sys::set_mtu(&cfg.name, mtu)?;
        }
        sys::set_up(&cfg.name)?;
        let mtu = sys::get_mtu(&cfg.name)?;
        let frame_size = if cfg.tso {
            crate::buf::MAX_FRAME
        } else {
            (mtu as u32 + 14 + 4 + 128).next_multiple_of(64).max(2048)
        };
        let mut queues = Vec::new();
        let mut counters = Vec::new();
        for (i, fd) in fds.into_iter().enumerate() {
            let c = Arc::new(QueueCounters::default());
            counters.push(c.clone());
            queues.push(TapQueue {
                id: i as u16,
                fd,
                pool: Pool::new(&PoolConfig {
                    frames: cfg.frames,
                    frame_size,
                    headroom: 128,
                    huge: cfg.huge,
                    name: format!("tap:{}.q{i}", cfg.name),
                })?,
                spare: None,
                counters: c,
                vnet: cfg.vnet,
            });
        }
        Ok(TapPort {
            info: PortInfo {
                kind: "tap",
                name: cfg.name.clone(),
                mac: cfg.mac.unwrap_or_else(MacAddr::random_local),
                mtu,
                queues: cfg.queues,
                caps: PortCaps {
                    tso: cfg.tso,
                    rx_checksum: false,
                    tx_checksum: false,
                    rss: false,
                    max_queues: 256,
                },
            },
            queues,
            counters,
        })
    }
}

impl Port for TapPort {
    type Queue = TapQueue;

    fn info(&self) -> &PortInfo {
        &self.info
    }

    fn take_queues(&mut self) -> Vec<TapQueue> {
        std::mem::take(&mut self.queues)
    }

    fn link_stats(&self) -> LinkStats {
        let mut s = LinkStats::default();
        for c in &self.counters {
            c.add_to(&mut s);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buf::TxOffload;
    use crate::testing::{emit_tcp, emit_tcp6, emit_udp, syn, Ends, Ends6};

    fn pool() -> Pool {
        crate::testing::pool(16, crate::buf::MAX_FRAME, 128)
    }

    const ENDS: Ends = Ends {
        src_mac: [2, 0, 0, 0, 0, 1],
        dst_mac: [2, 0, 0, 0, 0, 2],
        src_ip: std::net::Ipv4Addr::new(10, 0, 0, 1),
        dst_ip: std::net::Ipv4Addr::new(10, 0, 0, 2),
    };

    const TSO: TxOffload = TxOffload::tso_ipv4(20, 1000);

    /// (flags, gso_type, hdr_len, gso_size, csum_start, csum_offset).
    fn fields(h: [u8; VNET_HDR_LEN]) -> (u8, u8, u16, u16, u16, u16) {
        let w = |i: usize| u16::from_le_bytes([h[i], h[i + 1]]);
        (h[0], h[1], w(2), w(4), w(6), w(8))
    }

    /// A buffer holding what `build` writes, with `req` recorded.
    fn buf(p: &Pool, req: TxOffload, build: impl FnOnce(&mut [u8]) -> usize) -> PoolBuf {
        let mut b = p.alloc().unwrap();
        let n = build(b.room_mut());
        assert!(b.set_len(n));
        assert!(b.set_tx_offload(req));
        b
    }

    #[test]
    fn tso_headers_for_ipv4_and_ipv6_segments() {
        let p = pool();
        let data = vec![7u8; 5000];
        let mut seg = syn(1000, 2000, 1);
        seg.control = smoltcp::wire::TcpControl::None;
        seg.max_seg_size = None;
        seg.payload = &data;
        // IPv4: a GSO header, and the IPv4 header checksum filled in.
        let mut b = buf(&p, TSO, |room| {
            let n = emit_tcp(room, &ENDS, &seg);
            let mut f = smoltcp::wire::EthernetFrame::new_unchecked(&mut room[..n]);
            smoltcp::wire::Ipv4Packet::new_unchecked(f.payload_mut()).set_checksum(0);
            n
        });
        let h = tx_header(&mut b).unwrap();
        assert_eq!(
            fields(h),
            (VNET_F_NEEDS_CSUM, VNET_GSO_TCPV4, 54, 1000, 34, 16)
        );
        let ip = smoltcp::wire::Ipv4Packet::new_checked(&b.data()[14..]).unwrap();
        assert!(ip.verify_checksum());
        // IPv6.
        let e6 = Ends6 {
            src_mac: ENDS.src_mac,
            dst_mac: ENDS.dst_mac,
            src_ip: "fd00::1".parse().unwrap(),
            dst_ip: "fd00::2".parse().unwrap(),
        };
        let mut b = buf(&p, TSO, |room| emit_tcp6(room, &e6, &seg));
        assert_eq!(
            fields(tx_header(&mut b).unwrap()),
            (VNET_F_NEEDS_CSUM, VNET_GSO_TCPV6, 74, 1000, 54, 16)
        );
        // CWR asks for the ECN variant.
        seg.control = smoltcp::wire::TcpControl::Psh;
        let mut b = buf(&p, TSO, |room| {
            let n = emit_tcp(room, &ENDS, &seg);
            let mut f = smoltcp::wire::EthernetFrame::new_unchecked(&mut room[..n]);
            let mut ip = smoltcp::wire::Ipv4Packet::new_unchecked(f.payload_mut());
            smoltcp::wire::TcpPacket::new_unchecked(ip.payload_mut()).set_cwr(true);
            n
        });
        assert_eq!(
            fields(tx_header(&mut b).unwrap()).1,
            VNET_GSO_TCPV4 | VNET_GSO_ECN
        );
        // A payload of one MSS or less: no GSO, the checksum still left to
        // the kernel.
        seg.payload = &data[..1000];
        let mut b = buf(&p, TSO, |room| emit_tcp(room, &ENDS, &seg));
        assert_eq!(
            fields(tx_header(&mut b).unwrap()),
            (VNET_F_NEEDS_CSUM, 0, 0, 0, 34, 16)
        );
        // TSO asked of a UDP datagram, or of a runt: refused.
        let mut b = buf(&p, TSO, |room| emit_udp(room, &ENDS, 1, 2, &data));
        assert_eq!(tx_header(&mut b), None);
        let mut b = buf(&p, TSO, |room| {
            room[..10].fill(0);
            10
        });
        assert_eq!(tx_header(&mut b), None);
        // No request: an empty header.
        let mut b = p.alloc().unwrap();
        let n = emit_tcp(b.room_mut(), &ENDS, &seg);
        b.set_len(n);
        assert_eq!(tx_header(&mut b), Some([0; VNET_HDR_LEN]));
    }
}
