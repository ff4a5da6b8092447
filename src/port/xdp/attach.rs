//! Attaching the redirect program: clearing a leftover of ours, the link
//! (native or SKB), and the test helpers that plant or read programs.

use super::*;

/// Removes a leftover of ours, refuses anything else. See the module docs.
pub(super) fn clear_leftover(name: &str, ifindex: u32, st: &netlink::LinkState) -> Result<()> {
    if st.xdp == Attached::None || st.xdp_prog_id == 0 {
        return Ok(());
    }
    let prog = bpf::prog_info(st.xdp_prog_id)?;
    if !prog.is_ours() {
        return Err(xdp_err(format!(
            "`{name}` already has an XDP program attached (`{}`, id {}) that bypass did not load; \
             remove it with `ip link set dev {name} xdp off` or use another interface",
            prog.name, prog.id
        )));
    }
    let flags = match st.xdp {
        Attached::Skb => XDP_FLAGS_SKB_MODE,
        Attached::Native => XDP_FLAGS_DRV_MODE,
        _ => 0,
    };
    match netlink::legacy_set(ifindex, -1, flags) {
        Ok(()) => {
            tracing::warn!(
                "removed XDP program `{}` (id {}) that a previous bypass run left on `{name}`",
                prog.name,
                prog.id
            );
            Ok(())
        }
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => Err(xdp_err(format!(
            "`{name}` is in use by another running bypass (its XDP link holds program id {}); stop it first",
            prog.id
        ))),
        Err(e) => Err(Error::io(format!("detaching the old XDP program from {name}"), e)),
    }
}

/// Attaches `prog` in `mode`; returns the attachment and the mode used.
pub(super) fn attach(
    prog: &Program,
    name: &str,
    ifindex: u32,
    mode: XdpMode,
) -> Result<(Attachment, XdpMode)> {
    let tries: &[(XdpMode, u32)] = match mode {
        XdpMode::Auto => &[
            (XdpMode::Native, XDP_FLAGS_DRV_MODE),
            (XdpMode::Skb, XDP_FLAGS_SKB_MODE),
        ],
        XdpMode::Native => &[(XdpMode::Native, XDP_FLAGS_DRV_MODE)],
        XdpMode::Skb => &[(XdpMode::Skb, XDP_FLAGS_SKB_MODE)],
    };
    let mut last = None;
    for &(m, flags) in tries {
        match bpf::link_create(prog, ifindex, flags) {
            Ok(link) => return Ok((Attachment::Link(link), m)),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                // Maybe no XDP links (Linux < 5.9): the legacy attach.
                match netlink::legacy_set(ifindex, prog.raw_fd(), flags) {
                    Ok(()) => return Ok((Attachment::Legacy { ifindex, flags }, m)),
                    Err(e2) => last = Some((m, e2)),
                }
            }
            Err(e) => last = Some((m, e)),
        }
    }
    let (m, e) = last.unwrap_or((mode, std::io::Error::from_raw_os_error(libc::EINVAL)));
    Err(match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => Error::Privilege {
            what: format!("attaching an XDP program to {name}"),
            caps: "CAP_NET_ADMIN and CAP_BPF",
        },
        Some(libc::EBUSY) | Some(libc::EEXIST) => xdp_err(format!(
            "`{name}` already has an XDP program attached by another process; remove it or use another interface"
        )),
        Some(libc::EOPNOTSUPP) if m == XdpMode::Native => xdp_err(format!(
            "the driver of `{name}` has no native XDP; use mode=skb (or leave mode out)"
        )),
        _ => xdp_err(format!("attaching the XDP program to `{name}` in {m:?} mode: {e}")),
    })
}

/// Loads our redirect program and attaches it the legacy way, then forgets
/// it: what a run that crashed on a kernel without XDP links leaves behind.
/// Tests use it to check that the next open cleans up; `name` lets them
/// also plant a program that is not ours.
#[doc(hidden)]
pub fn plant_legacy_program(ifname: &str, prog_name: &str, skb: bool) -> Result<u32> {
    let ifindex = sys::if_index(ifname)?;
    let map = XskMap::create(1)?;
    let prog = Program::load_redirect(&map, prog_name)?;
    let flags = if skb {
        XDP_FLAGS_SKB_MODE
    } else {
        XDP_FLAGS_DRV_MODE
    };
    netlink::legacy_set(ifindex, prog.raw_fd(), flags)
        .map_err(|e| Error::io(format!("legacy XDP attach on {ifname}"), e))?;
    Ok(ifindex)
}

/// Where the interface's XDP program runs now (`None` if there is none).
pub fn attached_mode(ifname: &str) -> Result<Attached> {
    let ifindex = sys::if_index(ifname)?;
    Ok(netlink::link_state(ifindex, ifname)?.xdp)
}
