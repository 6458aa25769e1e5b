//! Totals since the breaker was built, in per-thread stripes so that threads calling one
//! breaker do not fight over one cache line.

use crate::snapshot::Totals;
use crate::sync::{AtomicU64, Ordering};

#[cfg(all(feature = "std", not(loom)))]
const STRIPES: usize = 4;
#[cfg(not(all(feature = "std", not(loom))))]
const STRIPES: usize = 1;

#[derive(Clone, Copy)]
pub(crate) enum Stat {
    Successes = 0,
    Failures,
    Ignored,
    Slow,
    Rejected,
    Late,
    Cancelled,
}

const FIELDS: usize = 7;

#[repr(align(128))]
struct Stripe([AtomicU64; FIELDS]);

pub(crate) struct Stats {
    stripes: [Stripe; STRIPES],
}

impl Stats {
    pub(crate) fn new() -> Self {
        Stats {
            stripes: core::array::from_fn(|_| Stripe(core::array::from_fn(|_| AtomicU64::new(0)))),
        }
    }

    #[inline]
    pub(crate) fn add(&self, stat: Stat) {
        self.stripes[stripe()].0[stat as usize].fetch_add(1, Ordering::Relaxed);
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
        }
    }
}

/// This thread's stripe: handed out round-robin the first time a thread counts something.
#[cfg(all(feature = "std", not(loom)))]
#[inline]
fn stripe() -> usize {
    use core::cell::Cell;
    use core::sync::atomic::AtomicUsize;
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    std::thread_local!(static INDEX: Cell<usize> = const { Cell::new(usize::MAX) });
    INDEX.with(|i| {
        let v = i.get();
        if v < STRIPES {
            v
        } else {
            let v = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
            i.set(v);
            v
        }
    })
}

#[cfg(not(all(feature = "std", not(loom))))]
#[inline(always)]
fn stripe() -> usize {
    0
}
