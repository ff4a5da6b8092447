//! `bypass bench SCENARIO`: bypass against a reference implementation, in
//! one run, on the same machine and cores. One module per scenario.

mod fwd;

use clap::Subcommand;

use bypass::Result;

/// The benchmark scenarios.
#[derive(Subcommand, Debug)]
pub enum BenchCmd {
    /// L2 MAC-swap forwarding over a DPDK virtual device: bypass l2fwd
    /// against dpdk-testpmd --forward-mode=macswap (needs --features dpdk).
    Fwd(fwd::FwdArgs),
}

/// Runs a scenario.
pub fn run(cmd: BenchCmd) -> Result<()> {
    match cmd {
        BenchCmd::Fwd(a) => fwd::run(a),
    }
}
