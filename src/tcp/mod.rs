//! bypass's own TCP engine (see shared/TCP.md).
pub mod cc;
pub mod isn;
pub mod rtt;
pub mod syncookie;
