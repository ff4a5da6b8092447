//! An async runtime on bypass: one executor per core, whose reactor is that
//! core's stack loop.
//!
//! - Each core runs its own executor on its pinned thread. Tasks are
//!   `!Send`-friendly ([`spawn_local`]); nothing (no thread, no lock) is
//!   shared between cores.
//! - The reactor is the stack: each turn of the loop receives a burst,
//!   turns the stack's events (`Readable`, `Writable`, `Open`, ...) into
//!   wakes of the tasks waiting on them, fires due timers, polls the woken
//!   tasks, and sends what they wrote.
//! - [`sleep`] and [`timeout`] run on the loop's clock.
//! - [`TcpListener`], [`TcpStream`] and [`UdpSocket`] fail with the
//!   `io::ErrorKind`s std uses. A full send buffer makes writes return
//!   `Poll::Pending` (back-pressure), never buffer more.
//! - With feature `tokio`, `TcpStream` is a `tokio::io::AsyncRead` +
//!   `AsyncWrite` (so hyper, axum and tokio-rustls run on it unmodified);
//!   with `futures-io`, a `futures_io::AsyncRead` + `AsyncWrite`.
//!
//! ```no_run
//! use bypass::rt::{Runtime, TcpListener};
//!
//! Runtime::builder()
//!     .port("tap:byp0")
//!     .ip("10.0.0.2/24")
//!     .run(|_core| async {
//!         let l = TcpListener::bind(([0, 0, 0, 0], 7)).await.unwrap();
//!         while let Ok((mut s, _peer)) = l.accept().await {
//!             bypass::rt::spawn_local(async move {
//!                 let mut buf = [0u8; 4096];
//!                 while let Ok(n) = s.read(&mut buf).await {
//!                     if n == 0 || s.write_all(&buf[..n]).await.is_err() {
//!                         break;
//!                     }
//!                 }
//!             });
//!         }
//!     })
//!     .unwrap();
//! ```

mod builder;
mod core;
mod exec;
mod io;
mod net;
mod time;

pub use builder::{Builder, CoreCtx, Runtime};
pub use core::{Core, CoreOpts, RtStats};
pub use exec::JoinHandle;
pub use net::{TcpListener, TcpStream, UdpSocket};
pub use time::{now, sleep, sleep_until, timeout, try_now, yield_now, Elapsed, Sleep, Timeout};

/// Spawns a task on the current core (no `Send` bound: it never leaves
/// the core). Panics outside a runtime; see [`try_spawn_local`].
pub fn spawn_local<F: std::future::Future + 'static>(fut: F) -> JoinHandle<F::Output> {
    match try_spawn_local(fut) {
        Ok(h) => h,
        Err(e) => panic!("{e}"),
    }
}

/// Spawns a task on the current core, or fails outside a runtime.
pub fn try_spawn_local<F: std::future::Future + 'static>(
    fut: F,
) -> std::io::Result<JoinHandle<F::Output>> {
    let core = core::current()?;
    let (t, h) = exec::task(fut);
    core.exec.spawn(t);
    Ok(h)
}
