//! Lock-free sliding windows for the closed state.
//!
//! # Invariant
//!
//! A window counts exactly the calls recorded in the current closed period (and, for a time
//! window, inside the window's span), once concurrent records have finished: nothing from an
//! earlier period, and nothing from a permit of an earlier generation that arrives late.
//!
//! # Protocol
//!
//! Everything a window stores is tagged with the breaker generation that wrote it, so a
//! window is cleared lazily when the generation changes (no reset step to race with). Tags
//! are compared only for equality, never ordered: when a record finds a tag that is not its
//! own generation, it asks the live control word whether its own generation is still the
//! current one (`is_current`). If it is, the stored value is stale and is replaced; if not,
//! the record is late and is refused. So a window cannot be fooled by how many transitions
//! happened in between (a long outage cycles open and half-open for hours without a single
//! record): only a tag equal to the current generation modulo 2^32 is taken as current, and
//! the generation would have to wrap around exactly 2^32 transitions for that to happen by
//! accident. Every update is one compare-and-swap on one word.

mod count;
mod fastdiv;
mod time;

pub(crate) use count::CountWindow;
pub(crate) use time::TimeWindow;

use crate::config::PolicyKind;

pub(crate) enum Window {
    None,
    Count(CountWindow),
    Time(TimeWindow),
}

impl Window {
    pub(crate) fn new(policy: PolicyKind) -> Self {
        match policy {
            PolicyKind::ConsecutiveFailures { .. } => Window::None,
            PolicyKind::CountWindow { size } => Window::Count(CountWindow::new(size)),
            PolicyKind::TimeWindow { duration, buckets } => Window::Time(TimeWindow::new(
                crate::config::bucket_width(duration, buckets),
                buckets,
            )),
            PolicyKind::Cumulative => Window::Time(TimeWindow::new(u64::MAX, 1)),
        }
    }

    /// Heap bytes of the slots or buckets.
    pub(crate) fn heap_bytes(&self) -> usize {
        match self {
            Window::None => 0,
            Window::Count(w) => w.heap_bytes(),
            Window::Time(w) => w.heap_bytes(),
        }
    }
}

/// The generation (or tag) in the high half of a window word.
#[inline]
pub(super) fn generation_of(word: u64) -> u32 {
    (word >> 32) as u32
}
