//! The per-core run-to-completion loop.
//!
//! [`run`] starts one thread per listed core, pins it, and calls its
//! [`Worker`]'s `poll` with one timestamp per iteration until the run stops
//! (Ctrl-C / SIGTERM, a deadline, or [`Stop::set`]). Meanwhile the calling
//! thread prints the live stats table and watches the deadline. Each
//! worker owns its queues, pool, and state: nothing is shared between cores
//! but the read-mostly stop flag, each core's own counters, and (for a TCP
//! stack over several cores) the steering rings between each ordered pair
//! of cores (`crate::stack::shard`), whose only shared state is their two
//! indices.

mod capture;
mod forward;
mod lcore;
pub mod stats;
mod tcp;

pub use capture::{Capture, CaptureSink, Captured};
pub use forward::ForwardWorker;
pub use lcore::{available_cores, parse_core_list, run, RunConfig, Stop, Worker};
pub use stats::{CoreRef, DropReason, Snapshot, Stats};
pub use tcp::{parse_cidr, parse_ip_cidr, TcpWorker};
