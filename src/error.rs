//! Error types of the library. Each layer adds its variants here; messages are
//! written for the person running the tool: one sentence saying what to do.

use std::io;

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong outside the per-packet path. (Per-packet
/// problems are never errors: they are counted and the frame is dropped.)
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A `--port` specification or another argument that does not parse.
    #[error("invalid port spec `{spec}`: {why}")]
    PortSpec {
        /// The spec as the user wrote it.
        spec: String,
        /// What is wrong with it, and what would be right.
        why: String,
    },
    /// A bad value in the configuration.
    #[error("{0}")]
    Config(String),
    /// The operation needs privileges the process does not have.
    #[error("{what} needs root (or {caps}); run it with sudo")]
    Privilege {
        /// What was attempted.
        what: String,
        /// The capabilities that would do instead of root.
        caps: &'static str,
    },
    /// A system call failed; `context` says which and on what.
    #[error("{context}: {source}")]
    Io {
        /// What we were doing.
        context: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A buffer pool could not be created.
    #[error("packet pool: {0}")]
    Pool(String),
    /// A CPU core could not be used.
    #[error("core {core}: {why}")]
    Core {
        /// The core the user asked for.
        core: usize,
        /// Why it cannot be used.
        why: String,
    },
    /// A backend-specific failure (DPDK, AF_XDP, ...), already phrased for the user.
    #[error("{backend}: {msg}")]
    Backend {
        /// Backend name (`dpdk`, `xdp`, `tap`, ...).
        backend: &'static str,
        /// The message.
        msg: String,
    },
}

impl Error {
    /// Wraps an `io::Error` with what we were doing. EPERM/EACCES become
    /// [`Error::Privilege`] so the user is told to use root.
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        let context = context.into();
        match source.raw_os_error() {
            Some(libc::EPERM) | Some(libc::EACCES) => Error::Privilege {
                what: context,
                caps: "CAP_NET_ADMIN",
            },
            _ => Error::Io { context, source },
        }
    }

    /// The last OS error, with context.
    pub fn last_os(context: impl Into<String>) -> Self {
        Self::io(context, io::Error::last_os_error())
    }
}
