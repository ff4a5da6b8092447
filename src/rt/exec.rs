//! The core's executor: a slab of `!Send` tasks and a ready queue that
//! wakers push task ids into.
//!
//! A [`Waker`] must be `Send + Sync`, so each task's waker is an `Arc`
//! holding the task's id and a handle on its core's ready queue (a mutex
//! only that core ever locks, unless a waker was sent to another thread).
//! Waking sets the task's `queued` flag and pushes its id once; the core
//! polls the queued tasks on its next turn.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

type Task = Pin<Box<dyn Future<Output = ()>>>;

/// Ids of tasks to poll, pushed by wakers (from any thread).
#[derive(Default)]
pub(crate) struct ReadyQueue {
    ids: Mutex<Vec<(u32, u32)>>,
}

impl ReadyQueue {
    fn push(&self, id: (u32, u32)) {
        // A poisoned lock only means a waker panicked mid-push; the Vec is
        // still a Vec.
        let mut q = self.ids.lock().unwrap_or_else(|e| e.into_inner());
        q.push(id);
    }

    fn swap(&self, out: &mut Vec<(u32, u32)>) {
        let mut q = self.ids.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::swap(&mut *q, out);
    }
}

struct TaskWaker {
    id: (u32, u32),
    queued: AtomicBool,
    ready: Arc<ReadyQueue>,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        if !self.queued.swap(true, Ordering::AcqRel) {
            self.ready.push(self.id);
        }
    }
}

struct Slot {
    gen: u32,
    task: Option<Task>,
    waker: Option<Arc<TaskWaker>>,
}

/// The tasks of one core.
pub(crate) struct Executor {
    slots: RefCell<Vec<Slot>>,
    free: RefCell<Vec<u32>>,
    ready: Arc<ReadyQueue>,
    batch: RefCell<Vec<(u32, u32)>>,
    live: std::cell::Cell<usize>,
}

impl Executor {
    pub(crate) fn new() -> Executor {
        Executor {
            slots: RefCell::new(Vec::new()),
            free: RefCell::new(Vec::new()),
            ready: Arc::new(ReadyQueue::default()),
            batch: RefCell::new(Vec::new()),
            live: std::cell::Cell::new(0),
        }
    }

    /// Tasks not finished yet.
    pub(crate) fn live(&self) -> usize {
        self.live.get()
    }

    /// Adds a task and queues it for its first poll.
    pub(crate) fn spawn(&self, task: Task) {
        let mut slots = self.slots.borrow_mut();
        let idx = match self.free.borrow_mut().pop() {
            Some(i) => i,
            None => {
                slots.push(Slot {
                    gen: 0,
                    task: None,
                    waker: None,
                });
                (slots.len() - 1) as u32
            }
        };
        let slot = &mut slots[idx as usize];
        slot.gen = slot.gen.wrapping_add(1);
        let w = Arc::new(TaskWaker {
            id: (idx, slot.gen),
            queued: AtomicBool::new(false),
            ready: self.ready.clone(),
        });
        slot.task = Some(task);
        slot.waker = Some(w.clone());
        self.live.set(self.live.get() + 1);
        w.wake_by_ref();
    }

    /// Polls every task queued now once (tasks woken while this runs wait
    /// for the next call). Returns how many were polled.
    pub(crate) fn run_ready(&self) -> usize {
        let mut batch = std::mem::take(&mut *self.batch.borrow_mut());
        self.ready.swap(&mut batch);
        let n = batch.len();
        for &(idx, gen) in &batch {
            // Take the task out, so that it may spawn (which borrows the
            // slab) while it is polled.
            let (mut task, w) = {
                let mut slots = self.slots.borrow_mut();
                let Some(slot) = slots.get_mut(idx as usize) else {
                    continue;
                };
                if slot.gen != gen {
                    continue;
                }
                let (Some(t), Some(w)) = (slot.task.take(), slot.waker.clone()) else {
                    continue;
                };
                (t, w)
            };
            w.queued.store(false, Ordering::Release);
            let waker = Waker::from(w);
            let done = task
                .as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_ready();
            let mut slots = self.slots.borrow_mut();
            let slot = &mut slots[idx as usize];
            if done {
                slot.waker = None;
                self.free.borrow_mut().push(idx);
                self.live.set(self.live.get() - 1);
                drop(slots);
                drop(task); // may drop streams, which touch the core: no borrow held
            } else {
                slot.task = Some(task);
            }
        }
        batch.clear();
        *self.batch.borrow_mut() = batch;
        n
    }

    /// Drops every task (at the end of a run), outside any borrow.
    pub(crate) fn clear(&self) {
        let tasks: Vec<Task> = {
            let mut slots = self.slots.borrow_mut();
            slots.iter_mut().filter_map(|s| s.task.take()).collect()
        };
        self.live.set(0);
        drop(tasks);
    }
}

/// The output of a spawned task, to await.
pub struct JoinHandle<T> {
    inner: Rc<RefCell<Join<T>>>,
}

struct Join<T> {
    out: Option<T>,
    done: bool,
    waker: Option<Waker>,
}

impl<T> JoinHandle<T> {
    /// True once the task has finished.
    pub fn is_finished(&self) -> bool {
        self.inner.borrow().done
    }
}

impl<T> std::fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinHandle")
            .field("finished", &self.is_finished())
            .finish()
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = T;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let mut j = self.inner.borrow_mut();
        match j.out.take() {
            Some(v) => Poll::Ready(v),
            None => {
                // A finished task whose output was taken already: pending
                // forever would hang the caller, so this is a misuse that
                // cannot happen through `.await` (it consumes the handle).
                j.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// Wraps `fut` into a task that stores its output for the handle.
pub(crate) fn task<F: Future + 'static>(fut: F) -> (Task, JoinHandle<F::Output>) {
    let inner = Rc::new(RefCell::new(Join {
        out: None,
        done: false,
        waker: None,
    }));
    let j = inner.clone();
    let t = Box::pin(async move {
        let v = fut.await;
        let w = {
            let mut j = j.borrow_mut();
            j.out = Some(v);
            j.done = true;
            j.waker.take()
        };
        if let Some(w) = w {
            w.wake();
        }
    });
    (t, JoinHandle { inner })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn woken_tasks_run_once_per_wake_and_join_handles_get_outputs() {
        let ex = Executor::new();
        let polls = Rc::new(Cell::new(0));
        let slot: Rc<RefCell<Option<Waker>>> = Rc::default();
        let (p, s) = (polls.clone(), slot.clone());
        let (t, h) = task(std::future::poll_fn(move |cx| {
            p.set(p.get() + 1);
            if p.get() < 3 {
                *s.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            } else {
                Poll::Ready(42)
            }
        }));
        ex.spawn(t);
        assert_eq!(ex.run_ready(), 1);
        assert_eq!(ex.run_ready(), 0, "not woken: not polled");
        // Many wakes before the next turn (one from another thread): one poll.
        let w = slot.borrow_mut().take().unwrap();
        let w2 = w.clone();
        std::thread::spawn(move || w2.wake()).join().unwrap();
        w.wake_by_ref();
        w.wake();
        assert_eq!(ex.run_ready(), 1);
        assert_eq!(polls.get(), 2);
        let old = slot.borrow_mut().take().unwrap();
        old.wake_by_ref();
        ex.run_ready();
        assert!(h.is_finished());
        assert_eq!(ex.live(), 0);
        // A stale waker of the finished task, whose slot the next task
        // reuses, does not poll the new task.
        let new_polls = Rc::new(Cell::new(0));
        let np = new_polls.clone();
        let (t2, _h2) = task(std::future::poll_fn(move |_cx| {
            np.set(np.get() + 1);
            Poll::<()>::Pending
        }));
        ex.spawn(t2);
        ex.run_ready();
        assert_eq!((ex.live(), new_polls.get()), (1, 1));
        old.wake();
        ex.run_ready();
        assert_eq!(new_polls.get(), 1, "a stale wake polled another task");
        assert_eq!(polls.get(), 3);
    }
}
