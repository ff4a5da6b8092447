//! The AF_XDP socket: memlock, creation with its rings mapped, bind,
//! and the zero-copy check.

use super::*;

/// Raises RLIMIT_MEMLOCK to at least `need` bytes if we may. Returns the
/// limit in force afterwards.
pub(super) fn ensure_memlock(need: u64) -> u64 {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    if syscall!(getrlimit(libc::RLIMIT_MEMLOCK, &mut rl)).is_err() {
        return 0;
    }
    if rl.rlim_cur == libc::RLIM_INFINITY || rl.rlim_cur >= need {
        return rl.rlim_cur;
    }
    for target in [libc::RLIM_INFINITY, need.max(rl.rlim_max)] {
        let new = libc::rlimit {
            rlim_cur: target,
            rlim_max: target.max(rl.rlim_max),
        };
        if syscall!(setrlimit(libc::RLIMIT_MEMLOCK, &new)).is_ok() {
            return target;
        }
    }
    if rl.rlim_max >= need {
        let new = libc::rlimit {
            rlim_cur: rl.rlim_max,
            rlim_max: rl.rlim_max,
        };
        if syscall!(setrlimit(libc::RLIMIT_MEMLOCK, &new)).is_ok() {
            return rl.rlim_max;
        }
    }
    rl.rlim_cur
}

pub(super) fn setsockopt_u32(
    fd: RawFd,
    level: libc::c_int,
    opt: libc::c_int,
    v: u32,
) -> std::io::Result<()> {
    syscall!(setsockopt(
        fd,
        level,
        opt,
        &v as *const u32 as *const libc::c_void,
        4
    ))
    .map(drop)
}

pub(super) struct Socket {
    pub(super) fd: OwnedFd,
    pub(super) fill: Ring<u64>,
    pub(super) comp: Ring<u64>,
    pub(super) rx: Ring<XdpDesc>,
    pub(super) tx: Ring<XdpDesc>,
}

/// Creates a socket, registers `umem` with it and maps its rings.
pub(super) fn new_socket(cfg: &XdpConfig, umem: &Umem, memlock: u64) -> Result<Socket> {
    let raw = syscall!(socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0)).map_err(
        |e| match e.raw_os_error() {
            Some(libc::EAFNOSUPPORT) => {
                xdp_err("this kernel has no AF_XDP sockets (CONFIG_XDP_SOCKETS is off)".into())
            }
            Some(libc::EPERM) | Some(libc::EACCES) => Error::Privilege {
                what: "opening an AF_XDP socket".into(),
                caps: "CAP_NET_ADMIN and CAP_BPF",
            },
            _ => Error::io("socket(AF_XDP)", e),
        },
    )?;
    // SAFETY: raw was just returned by socket() and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let reg = libc::xdp_umem_reg {
        addr: umem.map.as_ptr() as u64,
        len: umem.frames as u64 * umem.frame_size,
        chunk_size: umem.frame_size as u32,
        headroom: 0,
        flags: 0,
        tx_metadata_len: 0,
    };
    syscall!(setsockopt(
        raw,
        libc::SOL_XDP,
        libc::XDP_UMEM_REG,
        &reg as *const libc::xdp_umem_reg as *const libc::c_void,
        std::mem::size_of::<libc::xdp_umem_reg>() as libc::socklen_t
    ))
    .map_err(|e| match e.raw_os_error() {
        Some(libc::ENOBUFS) | Some(libc::ENOMEM) | Some(libc::EPERM) => xdp_err(format!(
            "RLIMIT_MEMLOCK ({} KiB) is too low to lock the {} KiB UMEM; run as root, or raise it with `ulimit -l unlimited` (or LimitMEMLOCK=infinity in a systemd unit)",
            memlock >> 10,
            reg.len >> 10
        )),
        _ => Error::io("XDP_UMEM_REG", e),
    })?;
    for (opt, what) in [
        (libc::XDP_UMEM_FILL_RING, "fill"),
        (libc::XDP_UMEM_COMPLETION_RING, "completion"),
        (libc::XDP_RX_RING, "rx"),
        (libc::XDP_TX_RING, "tx"),
    ] {
        setsockopt_u32(raw, libc::SOL_XDP, opt, cfg.ring_size)
            .map_err(|e| Error::io(format!("setting the AF_XDP {what} ring size"), e))?;
    }
    // SAFETY: xdp_mmap_offsets is plain old data; all-zero is valid.
    let mut off: libc::xdp_mmap_offsets = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::xdp_mmap_offsets>() as libc::socklen_t;
    syscall!(getsockopt(
        raw,
        libc::SOL_XDP,
        libc::XDP_MMAP_OFFSETS,
        &mut off as *mut libc::xdp_mmap_offsets as *mut libc::c_void,
        &mut len
    ))
    .map_err(|e| Error::io("XDP_MMAP_OFFSETS", e))?;
    if len as usize != std::mem::size_of::<libc::xdp_mmap_offsets>() {
        return Err(xdp_err(
            "this kernel's AF_XDP has no ring flags (need_wakeup); Linux 5.4 or newer is needed"
                .into(),
        ));
    }
    let map_err = |what: &'static str| move |e| Error::io(format!("mapping the {what} ring"), e);
    let size = cfg.ring_size;
    let fill = Ring::map(
        raw,
        libc::XDP_UMEM_PGOFF_FILL_RING as libc::off_t,
        &off.fr,
        size,
        true,
    )
    .map_err(map_err("fill"))?;
    let comp = Ring::map(
        raw,
        libc::XDP_UMEM_PGOFF_COMPLETION_RING as libc::off_t,
        &off.cr,
        size,
        false,
    )
    .map_err(map_err("completion"))?;
    let rx =
        Ring::map(raw, libc::XDP_PGOFF_RX_RING, &off.rx, size, false).map_err(map_err("rx"))?;
    let tx = Ring::map(raw, libc::XDP_PGOFF_TX_RING, &off.tx, size, true).map_err(map_err("tx"))?;
    if cfg.busy_poll {
        for (opt, v, name) in [
            (SO_PREFER_BUSY_POLL, 1, "SO_PREFER_BUSY_POLL"),
            (SO_BUSY_POLL, 20, "SO_BUSY_POLL"),
            (SO_BUSY_POLL_BUDGET, BURST as u32, "SO_BUSY_POLL_BUDGET"),
        ] {
            setsockopt_u32(raw, libc::SOL_SOCKET, opt, v)
                .map_err(|e| Error::io(format!("{name} (busy_poll)"), e))?;
        }
    }
    Ok(Socket {
        fd,
        fill,
        comp,
        rx,
        tx,
    })
}

pub(super) fn bind(fd: RawFd, ifindex: u32, queue: u32, flags: u16) -> std::io::Result<()> {
    let sa = libc::sockaddr_xdp {
        sxdp_family: libc::AF_XDP as u16,
        sxdp_flags: flags,
        sxdp_ifindex: ifindex,
        sxdp_queue_id: queue,
        sxdp_shared_umem_fd: 0,
    };
    syscall!(bind(
        fd,
        &sa as *const libc::sockaddr_xdp as *const libc::sockaddr,
        std::mem::size_of::<libc::sockaddr_xdp>() as libc::socklen_t
    ))
    .map(drop)
}

pub(super) fn is_zerocopy(fd: RawFd) -> bool {
    let mut o = libc::xdp_options { flags: 0 };
    let mut len = std::mem::size_of::<libc::xdp_options>() as libc::socklen_t;
    syscall!(getsockopt(
        fd,
        libc::SOL_XDP,
        libc::XDP_OPTIONS,
        &mut o as *mut libc::xdp_options as *mut libc::c_void,
        &mut len
    ))
    .is_ok()
        && o.flags & libc::XDP_OPTIONS_ZEROCOPY != 0
}
