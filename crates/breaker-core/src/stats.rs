//! Totals since the breaker was built, in per-thread stripes so that threads calling one
//! breaker do not fight over one cache line.
//!
//! # Invariant
//!
//! Once the threads that counted have finished (or handed their stripe back by exiting),
//! the sum over the stripes is exactly the number of `add`s. Each exclusive stripe has one
//! writer at a time (a plain load and store suffices); the shared stripe, used when every
//! exclusive one is taken, counts with atomic read-modify-writes. While counting goes on, a
//! sum may miss the adds in flight, never invent any.

use crate::snapshot::Totals;
use crate::sync::{AtomicU64, Ordering};

/// Under `std`, each thread gets a stripe index of its own (while it lives, up to
/// `MAX_THREAD_COUNTERS` threads at once); a breaker has exclusive stripes for the first
/// `thread_counters` indices, where counting is a plain load and store on a cache line no
/// other thread writes. Further threads share the breaker's last stripe with atomic
/// read-modify-writes.
#[cfg(all(feature = "std", not(loom)))]
pub(crate) const MAX_THREAD_COUNTERS: usize = 15;
#[cfg(not(all(feature = "std", not(loom))))]
pub(crate) const MAX_THREAD_COUNTERS: usize = 0;

/// The index a thread gets when every exclusive one is taken.
const SHARED: usize = MAX_THREAD_COUNTERS;

#[derive(Clone, Copy)]
pub(crate) enum Stat {
    Successes = 0,
    Failures,
    Ignored,
    Slow,
    Rejected,
    Late,
    Cancelled,
    Unenforced,
}

const FIELDS: usize = 8;

#[repr(align(128))]
struct Stripe([AtomicU64; FIELDS]);

impl Stripe {
    fn new() -> Self {
        Stripe(core::array::from_fn(|_| AtomicU64::new(0)))
    }
}

pub(crate) struct Stats {
    /// The exclusive stripes, then the shared one.
    #[cfg(feature = "alloc")]
    stripes: alloc::boxed::Box<[Stripe]>,
    #[cfg(not(feature = "alloc"))]
    stripes: [Stripe; 1],
}

/// The default number of exclusive stripes: one per CPU the process may run on, at most
/// [`MAX_THREAD_COUNTERS`] (looked up once).
#[cfg(all(feature = "std", not(loom)))]
pub(crate) fn default_thread_counters() -> u8 {
    static CPUS: std::sync::OnceLock<u8> = std::sync::OnceLock::new();
    *CPUS.get_or_init(|| {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(MAX_THREAD_COUNTERS) as u8
    })
}

#[cfg(not(all(feature = "std", not(loom))))]
pub(crate) fn default_thread_counters() -> u8 {
    0
}

impl Stats {
    /// Counters with `thread_counters` exclusive stripes (at most [`MAX_THREAD_COUNTERS`]).
    pub(crate) fn new(thread_counters: u8) -> Self {
        // Without `std` the maximum is 0 and this is always 0.
        #[allow(clippy::unnecessary_min_or_max)]
        let exclusive = usize::from(thread_counters).min(MAX_THREAD_COUNTERS);
        Stats {
            #[cfg(feature = "alloc")]
            stripes: (0..=exclusive).map(|_| Stripe::new()).collect(),
            #[cfg(not(feature = "alloc"))]
            stripes: {
                let _ = exclusive;
                [Stripe::new()]
            },
        }
    }

    /// Threads with a stripe of their own.
    pub(crate) fn thread_counters(&self) -> usize {
        self.stripes.len() - 1
    }

    /// Heap bytes the stripes take.
    pub(crate) fn heap_bytes(&self) -> usize {
        #[cfg(feature = "alloc")]
        return core::mem::size_of_val::<[Stripe]>(&self.stripes);
        #[cfg(not(feature = "alloc"))]
        0
    }

    #[inline]
    pub(crate) fn add(&self, stat: Stat) {
        let index = stripe();
        let shared = self.stripes.len() - 1;
        if index < shared {
            // This thread is the only writer of its stripe.
            let counter = &self.stripes[index].0[stat as usize];
            counter.store(
                counter.load(Ordering::Relaxed).wrapping_add(1),
                Ordering::Relaxed,
            );
        } else if let Some(stripe) = self.stripes.last() {
            stripe.0[stat as usize].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn sum(&self, stat: Stat) -> u64 {
        self.stripes
            .iter()
            .map(|s| s.0[stat as usize].load(Ordering::Relaxed))
            .fold(0u64, u64::wrapping_add)
    }

    pub(crate) fn totals(&self) -> Totals {
        Totals {
            successes: self.sum(Stat::Successes),
            failures: self.sum(Stat::Failures),
            ignored: self.sum(Stat::Ignored),
            slow: self.sum(Stat::Slow),
            rejected: self.sum(Stat::Rejected),
            late: self.sum(Stat::Late),
            cancelled: self.sum(Stat::Cancelled),
            unenforced: self.sum(Stat::Unenforced),
        }
    }
}

/// This thread's stripe: a free exclusive one the first time the thread counts something
/// (given back when the thread exits), or the shared one when all are taken.
#[cfg(all(feature = "std", not(loom)))]
#[inline]
fn stripe() -> usize {
    let v = INDEX.with(std::cell::Cell::get);
    if v != usize::MAX { v } else { claim_stripe() }
}

#[cfg(all(feature = "std", not(loom)))]
std::thread_local! {
    /// This thread's stripe (no destructor, so reading it is a plain thread-local load).
    static INDEX: std::cell::Cell<usize> = const { std::cell::Cell::new(usize::MAX) };
    /// Gives the stripe back when the thread exits (touched once, when it is claimed).
    static RELEASE: Release = const { Release };
}

/// Exclusive stripes not owned by a live thread.
#[cfg(all(feature = "std", not(loom)))]
static FREE: std::sync::Mutex<Vec<usize>> = std::sync::Mutex::new(Vec::new());

#[cfg(all(feature = "std", not(loom)))]
struct Release;

#[cfg(all(feature = "std", not(loom)))]
impl Drop for Release {
    fn drop(&mut self) {
        if let Ok(i) = INDEX.try_with(|i| i.replace(SHARED))
            && i < SHARED
        {
            // The lock orders this thread's last counts before the next owner's first.
            FREE.lock().unwrap_or_else(|e| e.into_inner()).push(i);
        }
    }
}

#[cfg(all(feature = "std", not(loom)))]
#[cold]
fn claim_stripe() -> usize {
    static NEXT: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);
    // Register the release first: if this thread is already exiting, stay on the shared one.
    if RELEASE.try_with(|_| ()).is_err() {
        return SHARED;
    }
    let v = FREE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .pop()
        .unwrap_or_else(|| NEXT.fetch_add(1, Ordering::Relaxed).min(SHARED));
    INDEX.with(|i| i.set(v));
    v
}

#[cfg(not(all(feature = "std", not(loom))))]
#[inline(always)]
fn stripe() -> usize {
    SHARED
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::{Stat, Stats};
    use loom::sync::Arc;
    use loom::thread;

    /// Under loom every thread counts on the shared stripe: concurrent adds are never lost.
    #[test]
    fn concurrent_adds_sum_exactly() {
        loom::model(|| {
            let stats = Arc::new(Stats::new(0));
            let others: Vec<_> = (0..2)
                .map(|_| {
                    let s = stats.clone();
                    thread::spawn(move || {
                        s.add(Stat::Successes);
                        s.add(Stat::Failures);
                    })
                })
                .collect();
            stats.add(Stat::Successes);
            for t in others {
                t.join().unwrap();
            }
            assert_eq!(stats.sum(Stat::Successes), 3);
            assert_eq!(stats.sum(Stat::Failures), 2);
        });
    }
}
