//! `bypass bench SCENARIO`: bypass against a reference implementation, in
//! one run, on the same machine and cores. One module per scenario.

mod fwd;
#[cfg(feature = "af-xdp")]
mod xdp;

use clap::Subcommand;

use bypass::Result;

/// The benchmark scenarios.
#[derive(Subcommand, Debug)]
pub enum BenchCmd {
    /// L2 MAC-swap forwarding over a DPDK virtual device: bypass l2fwd
    /// against dpdk-testpmd --forward-mode=macswap (needs --features dpdk).
    Fwd(fwd::FwdArgs),
    /// AF_XDP receive (rx-only, MAC-swap) on a veth pair in a private
    /// network namespace: bypass's xdp port against dpdk-testpmd with
    /// net_af_xdp, same interface, core and generator.
    #[cfg(feature = "af-xdp")]
    Xdp(xdp::XdpArgs),
}

/// Runs a scenario.
pub fn run(cmd: BenchCmd) -> Result<()> {
    match cmd {
        BenchCmd::Fwd(a) => fwd::run(a),
        #[cfg(feature = "af-xdp")]
        BenchCmd::Xdp(a) => xdp::run(a),
    }
}
