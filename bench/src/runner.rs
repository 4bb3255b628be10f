//! Worker threads: each runs one current-thread tokio runtime driving its
//! share of the connections (no thread or runtime per connection), records
//! latencies into thread-local histograms and hands them back at the end.

use hdrhistogram::Histogram;
use std::cell::RefCell;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

pub fn new_hist() -> Histogram<u64> {
    // Microseconds, 1 µs .. 1 hour, 3 significant digits.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("histogram bounds")
}

/// Which histogram a sample goes to.
#[derive(Clone, Copy)]
pub enum Kind {
    /// End-to-end latency (fanout) or connect time (connect).
    Main = 0,
    /// Ack latency of sends.
    Ack = 1,
    /// End-to-end latency of deliveries whose sender and receiver are on
    /// the same instance (`--server`).
    Same = 2,
    /// End-to-end latency of deliveries across instances.
    Cross = 3,
}

/// Histograms per worker: one per [`Kind`].
pub type Hists = [Histogram<u64>; 4];

fn new_hists() -> Hists {
    [new_hist(), new_hist(), new_hist(), new_hist()]
}

thread_local! {
    static HISTS: RefCell<Hists> = RefCell::new(new_hists());
}

pub fn record(kind: Kind, micros: u64) {
    HISTS.with(|h| h.borrow_mut()[kind as usize].saturating_record(micros.max(1)));
}

/// Counters shared by all workers and the progress line.
#[derive(Default)]
pub struct Counters {
    pub connected: AtomicU64,
    pub failed: AtomicU64,
    pub joined: AtomicU64,
    pub sent: AtomicU64,
    pub acked: AtomicU64,
    pub nacked: AtomicU64,
    pub delivered: AtomicU64,
    /// Deliveries the joined receivers should have seen (final seq - seq at join).
    pub expected: AtomicU64,
    pub lost: AtomicU64,
    pub duplicated: AtomicU64,
    pub out_of_order: AtomicU64,
    pub finished: AtomicU64,
    /// Scheduled start of the measured phase (Unix ns), 0 until set.
    pub start_ns: AtomicU64,
    pub stop: AtomicBool,
    pub first_error: ErrSlot,
}

/// The first error seen, for the summary.
#[derive(Default)]
pub struct ErrSlot(Mutex<Option<String>>);

impl ErrSlot {
    pub fn set(&self, e: String) {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if g.is_none() {
            *g = Some(e);
        }
    }
    pub fn get(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Counters {
    pub fn get(a: &AtomicU64) -> u64 {
        a.load(Relaxed)
    }
    pub fn add(a: &AtomicU64, n: u64) {
        a.fetch_add(n, Relaxed);
    }
    pub fn stopped(&self) -> bool {
        self.stop.load(Relaxed)
    }
    /// Wait (polling) until the measured phase's start is set; returns it.
    pub async fn wait_start(&self) -> u64 {
        loop {
            let s = self.start_ns.load(Relaxed);
            if s != 0 || self.stopped() {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// Spawn `threads` workers; connection `i` runs `task(i)` on worker `i % threads`.
pub fn spawn<F, Fut>(threads: usize, n: usize, task: F) -> Vec<JoinHandle<Hists>>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let task = Arc::new(task);
    (0..threads)
        .map(|w| {
            let task = task.clone();
            std::thread::Builder::new()
                .name(format!("bench-worker-{w}"))
                .spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("tokio runtime");
                    let local = tokio::task::LocalSet::new();
                    local.block_on(&rt, async {
                        let handles: Vec<_> = (w..n)
                            .step_by(threads)
                            .map(|i| tokio::task::spawn_local(task(i)))
                            .collect();
                        for h in handles {
                            let _ = h.await;
                        }
                    });
                    HISTS.with(|h| h.replace(new_hists()))
                })
                .expect("spawn worker")
        })
        .collect()
}

/// Join the workers and merge their histograms.
pub fn join(handles: Vec<JoinHandle<Hists>>) -> Hists {
    let mut out = new_hists();
    for h in handles {
        if let Ok(hs) = h.join() {
            for (o, h) in out.iter_mut().zip(hs.iter()) {
                let _ = o.add(h);
            }
        }
    }
    out
}

/// Raise this process's open-files soft limit to the hard limit.
pub fn raise_nofile() -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a stack struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
    r.rlim_cur
}
