//! The redirect program, its XSKMAP and its attachment, through the raw
//! `bpf(2)` system call: no clang, no libbpf, no bpffs.
//!
//! The program (6 instructions, the second being the two-slot `ld_imm64`):
//!
//! ```text
//! r2 = *(u32 *)(r1 + 16)        ; ctx->rx_queue_index
//! r1 = map_fd(xsks_map)         ; ld_imm64 with BPF_PSEUDO_MAP_FD
//! r3 = XDP_PASS                 ; bpf_redirect_map's fallback action (kernel >= 5.3)
//! call bpf_redirect_map         ; helper 51
//! exit                          ; r0 = XDP_REDIRECT, or XDP_PASS if the slot is empty
//! ```
//!
//! A queue without a socket in the map passes its packets to the kernel
//! stack, as libxdp's default program does. The map is named `xsks_map`
//! like libxdp's (libbpf's old xsk code adopted an attached program with
//! such a map; libxdp does not, it wants its own dispatcher).
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::error::{Error, Result};

/// Every program we load has a name starting with this (program names are
/// at most 15 characters): a leftover with this prefix is ours to replace.
pub const PROG_PREFIX: &str = "bypass_xsk";
/// The name of our redirect program.
pub const PROG_NAME: &str = "bypass_xsk_rx";
/// The XSKMAP's name (libxdp's, see the module docs).
pub const MAP_NAME: &str = "xsks_map";

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_LINK_CREATE: libc::c_long = 28;

const BPF_MAP_TYPE_XSKMAP: u32 = 17;
const BPF_PROG_TYPE_XDP: u32 = 6;
/// `enum bpf_attach_type::BPF_XDP`.
const BPF_XDP: u32 = 37;
const BPF_PSEUDO_MAP_FD: u8 = 1;
const BPF_FUNC_REDIRECT_MAP: i32 = 51;
const XDP_PASS: i32 = 2;

/// `XDP_FLAGS_SKB_MODE`: generic XDP, run on the skb after allocation.
pub const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
/// `XDP_FLAGS_DRV_MODE`: native XDP, run by the driver before any skb.
pub const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;

/// `union bpf_attr`, as zeroed 8-byte words (the kernel accepts a shorter
/// or longer attr as long as the tail it does not know is zero).
#[repr(C, align(8))]
struct Attr([u8; 128]);

impl Attr {
    fn new() -> Attr {
        Attr([0; 128])
    }
    fn u32(&mut self, off: usize, v: u32) -> &mut Self {
        self.0[off..off + 4].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn u64(&mut self, off: usize, v: u64) -> &mut Self {
        self.0[off..off + 8].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn name(&mut self, off: usize, name: &str) -> &mut Self {
        let n = name.len().min(15);
        self.0[off..off + n].copy_from_slice(&name.as_bytes()[..n]);
        self
    }
}

fn bpf(cmd: libc::c_long, attr: &mut Attr) -> io::Result<libc::c_long> {
    // SAFETY: attr is a valid, writable, 128-byte bpf_attr whose pointers
    // (if any) the caller set to live buffers for the duration of the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr.0.as_mut_ptr(),
            std::mem::size_of::<Attr>() as libc::c_uint,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn fd_result(r: io::Result<libc::c_long>) -> io::Result<OwnedFd> {
    // SAFETY: on success these commands return a new file descriptor that
    // nothing else owns.
    r.map(|fd| unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Turns a bpf() failure into the sentence a user needs.
pub fn bpf_error(what: &str, e: io::Error) -> Error {
    match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => Error::Privilege {
            what: what.to_string(),
            caps: "CAP_NET_ADMIN and CAP_BPF",
        },
        Some(libc::ENOSYS) => Error::Backend {
            backend: "xdp",
            msg: format!("{what}: this kernel has no bpf() system call (CONFIG_BPF_SYSCALL)"),
        },
        _ => Error::Backend {
            backend: "xdp",
            msg: format!("{what}: {e}"),
        },
    }
}

/// An XSKMAP: queue index -> AF_XDP socket.
#[derive(Debug)]
pub struct XskMap {
    fd: OwnedFd,
}

impl XskMap {
    /// Creates a map with `entries` slots (one per device queue).
    pub fn create(entries: u32) -> Result<XskMap> {
        let mut a = Attr::new();
        a.u32(0, BPF_MAP_TYPE_XSKMAP)
            .u32(4, 4)
            .u32(8, 4)
            .u32(12, entries)
            .name(28, MAP_NAME);
        let fd = fd_result(bpf(BPF_MAP_CREATE, &mut a))
            .map_err(|e| bpf_error("creating the XSKMAP (bpf BPF_MAP_CREATE)", e))?;
        Ok(XskMap { fd })
    }

    /// Puts socket `sock` in slot `queue`.
    pub fn insert(&self, queue: u32, sock: RawFd) -> Result<()> {
        let key = queue;
        let val = sock as u32;
        let mut a = Attr::new();
        a.u32(0, self.fd.as_raw_fd() as u32)
            .u64(8, &key as *const u32 as u64)
            .u64(16, &val as *const u32 as u64)
            .u64(24, 0);
        bpf(BPF_MAP_UPDATE_ELEM, &mut a).map(drop).map_err(|e| {
            bpf_error(
                &format!("putting the socket of queue {queue} in the XSKMAP"),
                e,
            )
        })
    }

    /// Empties slot `queue` (ENOENT, an empty slot, is fine).
    pub fn remove(&self, queue: u32) {
        let key = queue;
        let mut a = Attr::new();
        a.u32(0, self.fd.as_raw_fd() as u32)
            .u64(8, &key as *const u32 as u64);
        let _ = bpf(BPF_MAP_DELETE_ELEM, &mut a);
    }
}

/// One eBPF instruction (`struct bpf_insn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct Insn {
    code: u8,
    regs: u8, // dst in the low nibble, src in the high nibble
    off: i16,
    imm: i32,
}

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | (dst & 0x0f),
        off,
        imm,
    }
}

/// The redirect program for the map whose fd is `map_fd`.
pub fn redirect_program(map_fd: RawFd) -> [Insn; 6] {
    // Opcodes: class | size/op | mode/source, from linux/bpf_common.h
    // (BPF_W, BPF_LD and BPF_IMM are 0, spelled out for the reader).
    #[allow(clippy::identity_op)]
    const LDX_MEM_W: u8 = 0x01 | 0x00 | 0x60; // BPF_LDX | BPF_W | BPF_MEM
    #[allow(clippy::identity_op)]
    const LD_IMM_DW: u8 = 0x00 | 0x18; // BPF_LD | BPF_DW | BPF_IMM
    const ALU64_MOV_K: u8 = 0x07 | 0xb0; // BPF_ALU64 | BPF_MOV | BPF_K
    const JMP_CALL: u8 = 0x05 | 0x80; // BPF_JMP | BPF_CALL
    const JMP_EXIT: u8 = 0x05 | 0x90; // BPF_JMP | BPF_EXIT
    [
        insn(LDX_MEM_W, 2, 1, 16, 0), // offsetof(struct xdp_md, rx_queue_index)
        insn(LD_IMM_DW, 1, BPF_PSEUDO_MAP_FD, 0, map_fd),
        insn(0, 0, 0, 0, 0), // upper half of the 64-bit immediate
        insn(ALU64_MOV_K, 3, 0, 0, XDP_PASS),
        insn(JMP_CALL, 0, 0, 0, BPF_FUNC_REDIRECT_MAP),
        insn(JMP_EXIT, 0, 0, 0, 0),
    ]
}

/// A loaded program.
#[derive(Debug)]
pub struct Program {
    fd: OwnedFd,
}

impl Program {
    /// Loads the redirect program for `map`, named `name` (which must start
    /// with [`PROG_PREFIX`] for us to recognise it later).
    pub fn load_redirect(map: &XskMap, name: &str) -> Result<Program> {
        let insns = redirect_program(map.fd.as_raw_fd());
        let license = c"Dual MIT/GPL";
        let mut log = vec![0u8; 4096];
        let load = |log_level: u32, log: &mut [u8]| {
            let mut a = Attr::new();
            a.u32(0, BPF_PROG_TYPE_XDP)
                .u32(4, insns.len() as u32)
                .u64(8, insns.as_ptr() as u64)
                .u64(16, license.as_ptr() as u64)
                .u32(24, log_level)
                .u32(28, if log_level > 0 { log.len() as u32 } else { 0 })
                .u64(
                    32,
                    if log_level > 0 {
                        log.as_mut_ptr() as u64
                    } else {
                        0
                    },
                )
                .name(48, name)
                .u32(68, BPF_XDP);
            fd_result(bpf(BPF_PROG_LOAD, &mut a))
        };
        match load(0, &mut log) {
            Ok(fd) => Ok(Program { fd }),
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                Err(bpf_error("loading the XDP program (bpf BPF_PROG_LOAD)", e))
            }
            Err(e) => {
                // Load again with the verifier log, to say why.
                let _ = load(1, &mut log);
                let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
                let why = String::from_utf8_lossy(&log[..end]);
                Err(Error::Backend {
                    backend: "xdp",
                    msg: format!(
                        "the kernel refused the XDP redirect program: {e}; verifier: {}",
                        why.trim()
                    ),
                })
            }
        }
    }

    /// The program's fd.
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// An XDP link: the program stays attached while this fd is open, and the
/// kernel detaches it when the fd closes, including when the process dies.
#[derive(Debug)]
pub struct Link {
    _fd: OwnedFd,
}

/// Attaches `prog` to `ifindex` with a BPF link in the mode `flags`
/// ([`XDP_FLAGS_DRV_MODE`] or [`XDP_FLAGS_SKB_MODE`]).
pub fn link_create(prog: &Program, ifindex: u32, flags: u32) -> io::Result<Link> {
    let mut a = Attr::new();
    a.u32(0, prog.raw_fd() as u32)
        .u32(4, ifindex)
        .u32(8, BPF_XDP)
        .u32(12, flags);
    fd_result(bpf(BPF_LINK_CREATE, &mut a)).map(|fd| Link { _fd: fd })
}

/// What `bpf_prog_get_info` says about an attached program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgInfo {
    /// Program id.
    pub id: u32,
    /// Its name (up to 15 characters).
    pub name: String,
}

impl ProgInfo {
    /// True if one of our runs loaded it.
    pub fn is_ours(&self) -> bool {
        self.name.starts_with(PROG_PREFIX)
    }
}

/// Looks up a program by id (from netlink) and reads its name.
pub fn prog_info(id: u32) -> Result<ProgInfo> {
    let mut a = Attr::new();
    a.u32(0, id);
    let fd = fd_result(bpf(BPF_PROG_GET_FD_BY_ID, &mut a))
        .map_err(|e| bpf_error(&format!("looking up XDP program id {id}"), e))?;
    // struct bpf_prog_info: name[16] is at offset 64; ask for 80 bytes.
    let mut info = [0u8; 80];
    let mut a = Attr::new();
    a.u32(0, fd.as_raw_fd() as u32)
        .u32(4, info.len() as u32)
        .u64(8, info.as_mut_ptr() as u64);
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut a)
        .map_err(|e| bpf_error(&format!("reading XDP program id {id}"), e))?;
    let raw = &info[64..80];
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    Ok(ProgInfo {
        id,
        name: String::from_utf8_lossy(&raw[..end]).into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_encoding() {
        let p = redirect_program(7);
        assert_eq!(std::mem::size_of::<Insn>(), 8);
        // r2 = *(u32 *)(r1 + 16)
        assert_eq!(
            p[0],
            Insn {
                code: 0x61,
                regs: 0x12,
                off: 16,
                imm: 0
            }
        );
        // r1 = map fd 7 (pseudo), two slots
        assert_eq!(
            p[1],
            Insn {
                code: 0x18,
                regs: 0x11,
                off: 0,
                imm: 7
            }
        );
        assert_eq!(
            p[2],
            Insn {
                code: 0,
                regs: 0,
                off: 0,
                imm: 0
            }
        );
        // r3 = XDP_PASS; call 51; exit
        assert_eq!(
            p[3],
            Insn {
                code: 0xb7,
                regs: 0x03,
                off: 0,
                imm: 2
            }
        );
        assert_eq!(
            p[4],
            Insn {
                code: 0x85,
                regs: 0,
                off: 0,
                imm: 51
            }
        );
        assert_eq!(p[5].code, 0x95);
    }

    #[test]
    fn names_fit_and_are_recognised() {
        assert!(PROG_NAME.len() <= 15 && PROG_NAME.starts_with(PROG_PREFIX));
        let ours = ProgInfo {
            id: 1,
            name: PROG_NAME.into(),
        };
        let theirs = ProgInfo {
            id: 2,
            name: "xdp_dispatcher".into(),
        };
        assert!(ours.is_ours() && !theirs.is_ours());
    }
}
