//! `bypass bench SCENARIO`: bypass against a reference implementation, in
//! one run, on the same machine and cores. One module per scenario.

mod all;
mod chart;
mod epoll;
mod fwd;
#[cfg(feature = "bench-hyper")]
mod hyper;
mod l3fwd;
mod lossy;
mod placement;
mod proc;
mod soak;
mod tcp;
#[cfg(feature = "af-xdp")]
mod testpmd;
mod uring;
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
    /// IPv4 LPM forwarding: bypass l3fwd against DPDK's l3fwd example
    /// (built from dpdk-doc's sources), same vdevs, core and routes (needs
    /// --features dpdk).
    L3fwd(l3fwd::L3fwdBenchArgs),
    /// AF_XDP receive (rx-only, MAC-swap) on a veth pair in a private
    /// network namespace: bypass's xdp port against dpdk-testpmd with
    /// net_af_xdp, same interface, core and generator.
    #[cfg(feature = "af-xdp")]
    Xdp(xdp::XdpArgs),
    /// Closed-loop TCP request/response (default 64 B) at 1, 64, 1024 and
    /// 16384 connections: ours (mem wire, two pinned threads) against each
    /// kernel baseline (loopback, two processes): transactions/s, p50/p99,
    /// and the ratio against the best baseline.
    TcpRr(tcp::TcpBenchArgs),
    /// Connections set up and torn down per second, ours against the kernel.
    Cps(tcp::TcpBenchArgs),
    /// Establish N connections (default 1,000,000) in this process, then
    /// request/response on all: time to establish, memory per connection,
    /// tx/s at full table; the kernel's memory per connection for comparison.
    Conns(tcp::TcpBenchArgs),
    /// HTTP /plaintext, pipelined: our HTTP server against nginx (one
    /// worker), both driven by our load generator.
    Http(tcp::TcpBenchArgs),
    /// tcp-rr on 1 core, 1 core per side and 2 cores per side (2 wires).
    Scale(tcp::TcpBenchArgs),
    /// (internal) the kernel echo server of tcp-rr and cps.
    #[command(hide = true)]
    KernelServer(tcp::KernelServerArgs),
    /// (internal) the load generator over kernel sockets.
    #[command(hide = true)]
    KernelClient(tcp::KernelClientArgs),
    /// Every scenario this machine supports, bounded in time (under 15
    /// minutes): JSON, charts, tables and a Markdown summary in --out DIR.
    All(all::AllArgs),
    /// The kernel and bypass echo servers behind a router namespace that
    /// drops TCP frames at random and can shape with tbf: bulk goodput kept
    /// under loss, request/response tails, two flows through a bottleneck,
    /// and the longest stall of each (needs root and nftables).
    Lossy(lossy::LossyArgs),
    /// hyper `GET /plaintext` on bypass's async runtime against hyper on a
    /// tokio current_thread runtime over kernel sockets and against the
    /// TcpApp event API, at 64 and 16,384 connections (needs --features
    /// bench-hyper).
    #[cfg(feature = "bench-hyper")]
    Hyper(hyper::HyperArgs),
    /// Soak: HTTP request/response and connection churn between two stacks
    /// over an in-memory wire for a long time, sampling memory and
    /// counters for drift and errors.
    Soak(soak::SoakArgs),
}

/// Runs a scenario.
pub fn run(cmd: BenchCmd) -> Result<()> {
    match cmd {
        BenchCmd::Fwd(a) => fwd::run(a),
        BenchCmd::L3fwd(a) => l3fwd::run(a),
        #[cfg(feature = "af-xdp")]
        BenchCmd::Xdp(a) => xdp::run(a),
        BenchCmd::TcpRr(a) => tcp::tcp_rr(a),
        BenchCmd::Cps(a) => tcp::cps(a),
        BenchCmd::Conns(a) => tcp::conns(a),
        BenchCmd::Http(a) => tcp::http(a),
        BenchCmd::Scale(a) => tcp::scale(a),
        BenchCmd::KernelServer(a) => tcp::kernel_server(a),
        BenchCmd::KernelClient(a) => tcp::kernel_client(a),
        BenchCmd::Lossy(a) => lossy::run(a),
        BenchCmd::Soak(a) => soak::run(a),
        BenchCmd::All(a) => all::run(a),
        #[cfg(feature = "bench-hyper")]
        BenchCmd::Hyper(a) => hyper::run(a),
    }
}
