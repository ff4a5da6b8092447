//! Pinned worker threads, the stop flag, and the controlling loop.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant as StdInstant};

use crate::error::{Error, Result};
use crate::time::{Clock, FastClock, Instant};

static SIGNALLED: AtomicBool = AtomicBool::new(false);
static HANDLER: OnceLock<std::result::Result<(), String>> = OnceLock::new();

/// The run's stop flag, set by a signal, a deadline or the program.
#[derive(Debug, Clone, Default)]
pub struct Stop {
    flag: Arc<AtomicBool>,
    signals: bool,
}

impl Stop {
    /// A flag that only the program sets.
    pub fn new() -> Stop {
        Stop::default()
    }

    /// A flag that SIGINT and SIGTERM also set (the handler is installed
    /// once per process).
    pub fn with_signals() -> Result<Stop> {
        HANDLER
            .get_or_init(|| {
                ctrlc::set_handler(|| SIGNALLED.store(true, Ordering::Relaxed))
                    .map_err(|e| e.to_string())
            })
            .clone()
            .map_err(|e| Error::Config(format!("cannot install the Ctrl-C handler: {e}")))?;
        Ok(Stop {
            flag: Arc::new(AtomicBool::new(false)),
            signals: true,
        })
    }

    /// Asks every core to stop.
    pub fn set(&self) {
        self.flag.store(true, Ordering::Relaxed);
    }

    /// True once the run should stop.
    #[inline]
    pub fn is_set(&self) -> bool {
        self.flag.load(Ordering::Relaxed) || (self.signals && SIGNALLED.load(Ordering::Relaxed))
    }
}

/// One core's work: polled in a loop on its pinned thread.
pub trait Worker: Send + 'static {
    /// One iteration of the loop at time `now`; returns how many packets (or
    /// other units of work) it handled, 0 for an idle iteration.
    fn poll(&mut self, now: Instant) -> usize;
    /// Called once when the run stops, on the same thread.
    fn finish(&mut self, _now: Instant) {}
}

/// How to run the cores.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// CPU core ids, one worker each.
    pub cores: Vec<usize>,
    /// Stop by itself after this long.
    pub duration: Option<Duration>,
    /// Print the live table this often (`None`: never).
    pub stats_interval: Option<Duration>,
    /// After 1024 idle iterations in a row, sleep this long (0: spin, the
    /// poll-mode default; a small value is kinder on shared machines).
    pub idle_sleep: Duration,
    /// Do not pin threads (tests on machines with fewer cores than threads).
    pub no_pin: bool,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            cores: vec![0],
            duration: None,
            stats_interval: None,
            idle_sleep: Duration::ZERO,
            no_pin: false,
        }
    }
}

/// The cores this process may run on (its affinity mask).
pub fn available_cores() -> Vec<usize> {
    crate::port::sys::allowed_cpus()
}

/// Highest core id plus one that a core list may name (glibc's
/// `CPU_SETSIZE`).
const MAX_CORE_ID: usize = 1024;

/// Parses `0`, `0,1`, `0-3`, `0-1,4`.
pub fn parse_core_list(s: &str) -> Result<Vec<usize>> {
    let bad = || {
        Error::Config(format!(
            "`{s}` is not a core list; write e.g. `0`, `0,1` or `0-3`"
        ))
    };
    // Core ids past the kernel's cpu_set_t (CPU_SETSIZE) cannot be pinned;
    // refusing them also bounds the list (`0-99999999999` would otherwise
    // try to build a list of that many cores).
    let id = |v: &str| -> Result<usize> {
        let c: usize = v.parse().map_err(|_| bad())?;
        if c >= MAX_CORE_ID {
            return Err(Error::Config(format!(
                "core {c} in `{s}`: core ids go up to {}",
                MAX_CORE_ID - 1
            )));
        }
        Ok(c)
    };
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim) {
        if let Some((a, b)) = part.split_once('-') {
            let (a, b) = (id(a)?, id(b)?);
            if a > b {
                return Err(bad());
            }
            out.extend(a..=b);
        } else {
            out.push(id(part)?);
        }
        if out.len() > MAX_CORE_ID {
            return Err(Error::Config(format!("core list `{s}` names a core twice")));
        }
    }
    let mut dedup = out.clone();
    dedup.sort_unstable();
    dedup.dedup();
    if dedup.len() != out.len() || out.is_empty() {
        return Err(Error::Config(format!(
            "core list `{s}` names a core twice or none"
        )));
    }
    Ok(out)
}

fn check_cores(cores: &[usize]) -> Result<()> {
    let avail = available_cores();
    for &c in cores {
        if !avail.contains(&c) {
            return Err(Error::Core {
                core: c,
                why: format!("not available to this process (usable cores: {avail:?}); pick others with --cores"),
            });
        }
    }
    Ok(())
}

/// Runs one worker per core until the run stops; returns the workers, in
/// core order, after each has run `finish`. `on_tick` is called on the
/// calling thread every `stats_interval` with the seconds since the start.
pub fn run<W: Worker>(
    cfg: &RunConfig,
    workers: Vec<W>,
    stop: &Stop,
    mut on_tick: impl FnMut(f64),
) -> Result<Vec<W>> {
    if workers.len() != cfg.cores.len() {
        return Err(Error::Config(format!(
            "{} workers for {} cores",
            workers.len(),
            cfg.cores.len()
        )));
    }
    if !cfg.no_pin {
        check_cores(&cfg.cores)?;
    }
    let (ready_tx, ready_rx) = mpsc::channel::<Result<()>>();
    let mut handles = Vec::new();
    for (w, &core) in workers.into_iter().zip(&cfg.cores) {
        let stop = stop.clone();
        let ready = ready_tx.clone();
        let pin = !cfg.no_pin;
        let idle_sleep = cfg.idle_sleep;
        let h = std::thread::Builder::new()
            .name(format!("bypass-core{core}"))
            .spawn(move || core_loop(w, core, pin, idle_sleep, stop, ready))
            .map_err(|e| Error::io("spawn core thread", e))?;
        handles.push(h);
    }
    drop(ready_tx);
    let mut first_err = None;
    for _ in 0..handles.len() {
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                first_err.get_or_insert(e);
            }
            Err(_) => {
                first_err.get_or_insert(Error::Config("a core thread died while starting".into()));
            }
        }
    }
    if first_err.is_none() {
        control(cfg, stop, &handles, &mut on_tick);
    }
    stop.set();
    let mut out = Vec::new();
    for h in handles {
        match h.join() {
            Ok(Some(w)) => out.push(w),
            Ok(None) => {}
            Err(_) => {
                first_err.get_or_insert(Error::Config(
                    "a core thread panicked; see the message above".into(),
                ));
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

fn control<T>(
    cfg: &RunConfig,
    stop: &Stop,
    handles: &[std::thread::JoinHandle<T>],
    on_tick: &mut impl FnMut(f64),
) {
    let start = StdInstant::now();
    let deadline = cfg.duration.map(|d| start + d);
    let mut next_tick = cfg.stats_interval.map(|i| start + i);
    while !stop.is_set() {
        let now = StdInstant::now();
        if deadline.is_some_and(|d| now >= d) {
            break;
        }
        if let (Some(t), Some(i)) = (next_tick, cfg.stats_interval) {
            if now >= t {
                on_tick(now.duration_since(start).as_secs_f64());
                next_tick = Some(t + i);
            }
        }
        if handles.iter().any(|h| h.is_finished()) {
            break; // a core died: stop the others
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn core_loop<W: Worker>(
    mut w: W,
    core: usize,
    pin: bool,
    idle_sleep: Duration,
    stop: Stop,
    ready: mpsc::Sender<Result<()>>,
) -> Option<W> {
    if pin && !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
        let _ = ready.send(Err(Error::Core {
            core,
            why: "cannot pin the thread to it (sched_setaffinity failed)".into(),
        }));
        return None;
    }
    let _ = ready.send(Ok(()));
    drop(ready);
    let clock = FastClock::new();
    let mut idle = 0u32;
    while !stop.is_set() {
        if w.poll(clock.now()) == 0 {
            idle += 1;
            if idle >= 1024 && !idle_sleep.is_zero() {
                std::thread::sleep(idle_sleep);
            }
        } else {
            idle = 0;
        }
    }
    w.finish(clock.now());
    Some(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_lists() {
        assert_eq!(parse_core_list("0").unwrap(), vec![0]);
        assert_eq!(parse_core_list("0,1").unwrap(), vec![0, 1]);
        assert_eq!(parse_core_list("0-2,5").unwrap(), vec![0, 1, 2, 5]);
        for bad in ["", "a", "2-1", "0,0", "1,"] {
            assert!(parse_core_list(bad).is_err(), "{bad}");
        }
        // Found by fuzzing: a huge range built a list of billions of cores.
        assert_eq!(parse_core_list("1023").unwrap(), vec![1023]);
        assert_eq!(parse_core_list("0-1023").unwrap().len(), 1024);
        for bad in ["1024", "03-8033", "0-18446744073709551615", "0-1023,0-1023"] {
            let e = parse_core_list(bad).unwrap_err().to_string();
            assert!(e.contains("core"), "{bad}: {e}");
        }
    }

    #[derive(Debug)]
    struct Count(u64, u64);
    impl Worker for Count {
        fn poll(&mut self, _now: Instant) -> usize {
            self.0 += 1;
            if self.0 == self.1 {
                std::thread::sleep(Duration::from_millis(1));
            }
            0
        }
    }

    #[test]
    fn runs_until_deadline_and_returns_workers() {
        let cfg = RunConfig {
            cores: vec![available_cores()[0]],
            duration: Some(Duration::from_millis(50)),
            stats_interval: Some(Duration::from_millis(10)),
            idle_sleep: Duration::from_micros(100),
            no_pin: false,
        };
        let mut ticks = 0;
        let out = run(&cfg, vec![Count(0, 0)], &Stop::new(), |_| ticks += 1).unwrap();
        assert_eq!(out.len(), 1);
        assert!(out[0].0 > 0);
        assert!(ticks >= 2, "ticks {ticks}");
    }

    #[test]
    fn unusable_core_is_a_clear_error() {
        let cfg = RunConfig {
            cores: vec![4096],
            ..Default::default()
        };
        let e = run(&cfg, vec![Count(0, 0)], &Stop::new(), |_| {}).unwrap_err();
        assert!(e.to_string().contains("not available"), "{e}");
    }
}
