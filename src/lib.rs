//! # bypass
//!
//! Kernel-bypass packet I/O: poll-mode ports feed per-core,
//! run-to-completion loops that run a userspace TCP/IP stack built on
//! smoltcp, over hugepage packet pools.
//!
//! ```text
//! error, time        errors; clocks (one timestamp per loop iteration)
//!   ├─ flow          5-tuples, Toeplitz RSS hash, RETA, RSS-aware local ports
//!   └─ buf           packet buffers, hugepage pools, bursts of 32
//!       └─ port      the backend contract + backends: mem, tap, (dpdk), (xdp)
//!           └─ stack the TCP/IP stack on smoltcp: O(1) demux, backlog, timers
//!               └─ app   what applications implement: packet and TCP handlers
//!                   └─ runtime   pinned per-core loops, stats, clean stop
//!                       └─ rt    async runtime: per-core executors on the stack loop
//! ```
//!
//! A layer uses only the layers above it in this list. `unsafe` code lives
//! in `buf::pool`, `port`, `time::tsc` (the `rdtsc`/`cpuid` intrinsics),
//! `hint` (the prefetch intrinsic) and `simd` (the SSSE3 MAC swap) only;
//! everything else is safe Rust.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod app;
pub mod buf;
pub mod counter;
pub mod error;
pub mod flow;
pub mod hint;
pub mod port;
pub mod rt;
pub mod runtime;
pub mod simd;
pub mod stack;
pub mod tcp;
pub mod testing;
pub mod time;

pub use error::{Error, Result};
