//! Timers on the loop's clock: [`sleep`], [`timeout`], [`now`].

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::time::Instant;

use super::core::{current, Shared};

/// The loop's timestamp of the current turn (microseconds since the
/// runtime started). Panics outside a runtime task; see [`try_now`].
pub fn now() -> Instant {
    match try_now() {
        Ok(t) => t,
        Err(e) => panic!("{e}"),
    }
}

/// The loop's timestamp, or an error outside a runtime task.
pub fn try_now() -> std::io::Result<Instant> {
    Ok(current()?.now.get())
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// A future that completes once the loop's clock reaches its deadline.
#[must_use = "futures do nothing unless awaited"]
pub struct Sleep {
    core: Option<Rc<Shared>>,
    until: u64,
    key: Option<u64>,
}

impl std::fmt::Debug for Sleep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sleep")
            .field("until_us", &self.until)
            .finish()
    }
}

/// Completes after `d` on the loop's clock. Outside a runtime it never
/// completes on its own; await it in a runtime task.
pub fn sleep(d: Duration) -> Sleep {
    let core = current().ok();
    let now = core.as_ref().map_or(0, |c| c.now.get().micros());
    Sleep {
        core,
        until: now.saturating_add(micros(d)),
        key: None,
    }
}

/// Completes when the loop's clock reaches `at`.
pub fn sleep_until(at: Instant) -> Sleep {
    Sleep {
        core: current().ok(),
        until: at.micros(),
        key: None,
    }
}

impl Sleep {
    /// The deadline on the loop's clock.
    pub fn deadline(&self) -> Instant {
        Instant(self.until)
    }
}

impl Future for Sleep {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.core.is_none() {
            self.core = current().ok();
        }
        let Some(core) = self.core.clone() else {
            return Poll::Pending;
        };
        if core.now.get().micros() >= self.until {
            if let Some(k) = self.key.take() {
                core.cancel_timer(k);
            }
            return Poll::Ready(());
        }
        match self.key {
            Some(k) => core.update_timer(k, cx.waker()),
            None => self.key = Some(core.add_timer(self.until, cx.waker().clone())),
        }
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let (Some(c), Some(k)) = (&self.core, self.key) {
            c.cancel_timer(k);
        }
    }
}

/// The error of a [`timeout`] that ran out; converts to an `io::Error` of
/// kind `TimedOut`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

impl std::fmt::Display for Elapsed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("deadline elapsed")
    }
}

impl std::error::Error for Elapsed {}

impl From<Elapsed> for std::io::Error {
    fn from(_: Elapsed) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::TimedOut, Elapsed)
    }
}

/// `fut`, or [`Elapsed`] if it has not finished after `d` on the loop's
/// clock.
pub fn timeout<F: Future>(d: Duration, fut: F) -> Timeout<F> {
    Timeout {
        fut: Box::pin(fut),
        sleep: sleep(d),
    }
}

/// The future of [`timeout`].
#[must_use = "futures do nothing unless awaited"]
pub struct Timeout<F> {
    fut: Pin<Box<F>>,
    sleep: Sleep,
}

impl<F> std::fmt::Debug for Timeout<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Timeout")
            .field("sleep", &self.sleep)
            .finish()
    }
}

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, Elapsed>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Poll::Ready(v) = self.fut.as_mut().poll(cx) {
            return Poll::Ready(Ok(v));
        }
        match Pin::new(&mut self.sleep).poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Elapsed)),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Gives other tasks a turn: completes on the next poll.
pub async fn yield_now() {
    let mut yielded = false;
    std::future::poll_fn(move |cx| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await
}
