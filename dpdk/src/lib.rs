//! Raw FFI bindings to the system DPDK. Filled in by the DPDK backend work;
//! this crate holds no logic.
#![no_std]
