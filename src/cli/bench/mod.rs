//! `bypass bench SCENARIO`: bypass against a reference implementation, in
//! one run, on the same machine and cores. One module per scenario.

mod soak;
#[cfg(feature = "af-xdp")]
mod xdp;

use clap::Subcommand;

use bypass::Result;

/// The benchmark scenarios.
#[derive(Subcommand, Debug)]
pub enum BenchCmd {
    /// AF_XDP receive (rx-only, MAC-swap) on a veth pair in a private
    /// network namespace: bypass's xdp port against dpdk-testpmd with
    /// net_af_xdp, same interface, core and generator.
    #[cfg(feature = "af-xdp")]
    Xdp(xdp::XdpArgs),
    /// Soak: HTTP request/response and connection churn between two stacks
    /// over an in-memory wire for a long time, sampling memory and
    /// counters for drift and errors.
    Soak(soak::SoakArgs),
}

/// Runs a scenario.
pub fn run(cmd: BenchCmd) -> Result<()> {
    match cmd {
        #[cfg(feature = "af-xdp")]
        BenchCmd::Xdp(a) => xdp::run(a),
        BenchCmd::Soak(a) => soak::run(a),
    }
}
