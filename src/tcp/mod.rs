//! bypass's own TCP engine (see `shared/TCP.md`): sans-I/O, one [`Tcb`]
//! per connection.
//!
//! The engine is handed segments ([`Tcb::input`], a parsed
//! `smoltcp::wire::TcpRepr`) and the time, and is asked what it sends now
//! ([`Tcb::poll_output`]) and when it next wants to be asked
//! ([`Tcb::poll_at`], [`Tcb::on_timer`]). It reads no clock, touches no
//! port and allocates nothing per segment; payload lives in chunks of the
//! core's [`buf::Slab`] only while it is queued, in flight or out of
//! order. The stack builds the IP and Ethernet headers around what it
//! returns (see `stack::engine`).
//!
//! What it does, by file:
//! - [`tcb`]: the connection block, RFC 9293's states, the application's
//!   operations, timers;
//! - `input`: segment acceptance (RFC 9293 3.10.7, RFC 5961, PAWS of
//!   RFC 7323), reassembly, SACK and D-SACK generation;
//! - `output`: segmentation, windows and window scaling, Nagle, delayed
//!   ACK, zero-window probes, keepalive;
//! - [`recovery`]: the SACK scoreboard (RFC 2018, RFC 6675), RACK-TLP
//!   (RFC 8985), NewReno without SACK (RFC 6582), RTO (RFC 6298);
//!   `prr`: what fast recovery sends per ACK (RFC 9937);
//! - [`cc`]: CUBIC (RFC 9438), Reno, none;
//! - [`isn`]: RFC 6528 initial sequence numbers; [`syncookie`]: RFC 4987;
//! - [`pmtu`]: path MTU discovery (RFC 1191, RFC 8201).

pub mod buf;
pub mod cc;
pub mod config;
pub mod flight;
mod input;
pub mod isn;
mod output;
pub mod pmtu;
mod prr;
pub mod recovery;
pub mod ring;
pub mod rtt;
pub mod seq;
pub mod syncookie;
pub mod tcb;
mod timers;
pub mod wire;

pub use tcb::{CloseReason, Config, Env, Keepalive, Seg, State, Tcb, TcpStats};
#[cfg(test)]
mod tests;
