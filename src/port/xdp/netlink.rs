//! The few rtnetlink requests the AF_XDP backend needs: an interface's
//! state (flags, queue counts, attached XDP program and its mode), and the
//! legacy (non-link) XDP attach and detach, used on kernels without XDP
//! links and to remove a program a crashed run of ours left behind.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::error::{Error, Result};
use crate::syscall;

const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const RTM_SETLINK: u16 = 19;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLA_F_NESTED: u16 = 1 << 15;

const IFLA_ADDRESS: u16 = 1;
const IFLA_MTU: u16 = 4;
const IFLA_OPERSTATE: u16 = 16;
const IFLA_NUM_TX_QUEUES: u16 = 31;
const IFLA_NUM_RX_QUEUES: u16 = 32;
const IFLA_XDP: u16 = 43;
const IFLA_XDP_FD: u16 = 1;
const IFLA_XDP_ATTACHED: u16 = 2;
const IFLA_XDP_FLAGS: u16 = 3;
const IFLA_XDP_PROG_ID: u16 = 4;

const NLMSG_HDR: usize = 16;
const IFINFOMSG: usize = 16;

/// Where an attached XDP program runs (`IFLA_XDP_ATTACHED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Attached {
    /// Nothing attached.
    None,
    /// In the driver (native mode).
    Native,
    /// Generic (SKB) mode.
    Skb,
    /// Offloaded to the NIC.
    Hw,
    /// Several at once.
    Multi,
}

/// What rtnetlink says about an interface.
#[derive(Debug, Clone)]
pub struct LinkState {
    /// `IFF_*` flags.
    pub flags: u32,
    /// `IF_OPER_*` state.
    pub operstate: u8,
    /// MTU.
    pub mtu: u32,
    /// Hardware address.
    pub mac: [u8; 6],
    /// Receive queues.
    pub rx_queues: u32,
    /// Transmit queues.
    pub tx_queues: u32,
    /// Attached XDP program's mode.
    pub xdp: Attached,
    /// Attached XDP program's id (0: none).
    pub xdp_prog_id: u32,
}

impl LinkState {
    /// Administratively up.
    pub fn is_up(&self) -> bool {
        self.flags & libc::IFF_UP as u32 != 0
    }
}

struct Nl {
    fd: OwnedFd,
    seq: u32,
}

fn push_attr(buf: &mut Vec<u8>, ty: u16, data: &[u8]) {
    let len = 4 + data.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&ty.to_ne_bytes());
    buf.extend_from_slice(data);
    buf.resize(buf.len().next_multiple_of(4), 0);
}

/// Iterates `rtattr`s in `buf`: (type without flags, payload).
fn attrs(mut buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if buf.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([buf[0], buf[1]]) as usize;
        let ty = u16::from_ne_bytes([buf[2], buf[3]]) & 0x3fff; // drop NLA_F_NESTED and NLA_F_NET_BYTEORDER
        if len < 4 || len > buf.len() {
            return None;
        }
        let data = &buf[4..len];
        buf = &buf[len.next_multiple_of(4).min(buf.len())..];
        Some((ty, data))
    })
}

fn u32_of(d: &[u8]) -> u32 {
    d.get(..4)
        .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
        .unwrap_or(0)
}

impl Nl {
    fn open() -> Result<Nl> {
        let fd = syscall!(socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE
        ))
        .map_err(|e| Error::io("socket(AF_NETLINK)", e))?;
        // SAFETY: fd was just returned by socket() and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let tv = libc::timeval {
            tv_sec: 2,
            tv_usec: 0,
        };
        syscall!(setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            &tv as *const libc::timeval as *const libc::c_void,
            std::mem::size_of::<libc::timeval>() as libc::socklen_t
        ))
        .map_err(|e| Error::io("SO_RCVTIMEO on netlink", e))?;
        Ok(Nl { fd, seq: 1 })
    }

    /// Sends one request with an ifinfomsg for `ifindex` and `attrs`;
    /// returns the first reply message's payload (after nlmsghdr).
    fn request(&mut self, ty: u16, flags: u16, ifindex: u32, attrs: &[u8]) -> io::Result<Vec<u8>> {
        self.seq += 1;
        let mut msg = Vec::with_capacity(NLMSG_HDR + IFINFOMSG + attrs.len());
        let len = (NLMSG_HDR + IFINFOMSG + attrs.len()) as u32;
        msg.extend_from_slice(&len.to_ne_bytes());
        msg.extend_from_slice(&ty.to_ne_bytes());
        msg.extend_from_slice(&(NLM_F_REQUEST | flags).to_ne_bytes());
        msg.extend_from_slice(&self.seq.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes());
        // ifinfomsg: family, pad, type, index, flags, change
        msg.extend_from_slice(&[libc::AF_UNSPEC as u8, 0, 0, 0]);
        msg.extend_from_slice(&(ifindex as i32).to_ne_bytes());
        msg.extend_from_slice(&[0u8; 8]);
        msg.extend_from_slice(attrs);
        // SAFETY: a zeroed sockaddr_nl is valid; we set the family (pid 0 = kernel).
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        syscall!(sendto(
            self.fd.as_raw_fd(),
            msg.as_ptr().cast(),
            msg.len(),
            0,
            &sa as *const libc::sockaddr_nl as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t
        ))?;
        let mut buf = vec![0u8; 32768];
        loop {
            // SAFETY: receives into a live buffer of buf.len() bytes.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let mut rest = &buf[..n as usize];
            while rest.len() >= NLMSG_HDR {
                let mlen = u32_of(rest) as usize;
                let mty = u16::from_ne_bytes([rest[4], rest[5]]);
                let mseq = u32_of(&rest[8..]);
                if mlen < NLMSG_HDR || mlen > rest.len() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "truncated netlink reply",
                    ));
                }
                let payload = &rest[NLMSG_HDR..mlen];
                rest = &rest[mlen.next_multiple_of(4).min(rest.len())..];
                if mseq != self.seq {
                    continue;
                }
                if mty == NLMSG_ERROR {
                    let code = u32_of(payload) as i32;
                    return if code == 0 {
                        Ok(Vec::new())
                    } else {
                        Err(io::Error::from_raw_os_error(-code))
                    };
                }
                if mty == RTM_NEWLINK {
                    return Ok(payload.to_vec());
                }
            }
        }
    }
}

/// Reads an interface's state.
pub fn link_state(ifindex: u32, name: &str) -> Result<LinkState> {
    let mut nl = Nl::open()?;
    let reply = nl.request(RTM_GETLINK, 0, ifindex, &[]).map_err(|e| {
        if e.raw_os_error() == Some(libc::ENODEV) {
            Error::Config(format!(
                "no interface named `{name}` in this network namespace (check `ip link`)"
            ))
        } else {
            Error::io(format!("RTM_GETLINK {name}"), e)
        }
    })?;
    if reply.len() < IFINFOMSG {
        return Err(Error::Backend {
            backend: "xdp",
            msg: format!("rtnetlink gave no state for `{name}`"),
        });
    }
    let mut st = LinkState {
        flags: u32_of(&reply[8..]),
        operstate: 0,
        mtu: 0,
        mac: [0; 6],
        rx_queues: 1,
        tx_queues: 1,
        xdp: Attached::None,
        xdp_prog_id: 0,
    };
    for (ty, d) in attrs(&reply[IFINFOMSG..]) {
        match ty {
            IFLA_ADDRESS if d.len() >= 6 => st.mac.copy_from_slice(&d[..6]),
            IFLA_MTU => st.mtu = u32_of(d),
            IFLA_OPERSTATE => st.operstate = d.first().copied().unwrap_or(0),
            IFLA_NUM_RX_QUEUES => st.rx_queues = u32_of(d),
            IFLA_NUM_TX_QUEUES => st.tx_queues = u32_of(d),
            IFLA_XDP => {
                for (t, v) in attrs(d) {
                    match t {
                        IFLA_XDP_ATTACHED => {
                            st.xdp = match v.first().copied().unwrap_or(0) {
                                0 => Attached::None,
                                1 => Attached::Native,
                                2 => Attached::Skb,
                                3 => Attached::Hw,
                                _ => Attached::Multi,
                            }
                        }
                        IFLA_XDP_PROG_ID => st.xdp_prog_id = u32_of(v),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Ok(st)
}

/// Attaches (`prog_fd >= 0`) or detaches (`prog_fd == -1`) an XDP program
/// the legacy way, in the mode given by `flags`. The attachment outlives
/// the process: whoever attaches this way must detach.
pub fn legacy_set(ifindex: u32, prog_fd: i32, flags: u32) -> io::Result<()> {
    let mut nl = Nl::open().map_err(|e| io::Error::other(e.to_string()))?;
    let mut inner = Vec::new();
    push_attr(&mut inner, IFLA_XDP_FD, &prog_fd.to_ne_bytes());
    push_attr(&mut inner, IFLA_XDP_FLAGS, &flags.to_ne_bytes());
    let mut outer = Vec::new();
    push_attr(&mut outer, IFLA_XDP | NLA_F_NESTED, &inner);
    nl.request(RTM_SETLINK, NLM_F_ACK, ifindex, &outer)
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attrs_round_trip() {
        let mut b = Vec::new();
        push_attr(&mut b, IFLA_MTU, &1500u32.to_ne_bytes());
        push_attr(&mut b, IFLA_OPERSTATE, &[6]);
        let mut inner = Vec::new();
        push_attr(&mut inner, IFLA_XDP_PROG_ID, &42u32.to_ne_bytes());
        push_attr(&mut b, IFLA_XDP | NLA_F_NESTED, &inner);
        let got: Vec<(u16, Vec<u8>)> = attrs(&b).map(|(t, d)| (t, d.to_vec())).collect();
        assert_eq!(got.len(), 3);
        assert_eq!(u32_of(&got[0].1), 1500);
        assert_eq!(got[1], (IFLA_OPERSTATE, vec![6]));
        assert_eq!(got[2].0, IFLA_XDP);
        let (t, v) = attrs(&got[2].1).next().unwrap();
        assert_eq!((t, u32_of(v)), (IFLA_XDP_PROG_ID, 42));
    }

    #[test]
    fn truncated_attrs_stop() {
        assert_eq!(attrs(&[8, 0, 1, 0, 0]).count(), 0);
        assert_eq!(attrs(&[]).count(), 0);
    }
}
