//! Point-in-time views of a breaker's counts.

use core::time::Duration;

use crate::state::State;

/// Counts of the calls in the current window (closed or metrics-only state), as seen by the
/// trip rules and a [`trip_when`](crate::Builder::trip_when) predicate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Calls recorded in the window (successes + failures; ignored calls are not counted).
    pub calls: u64,
    /// Failed calls in the window.
    pub failures: u64,
    /// Slow calls in the window (successful or failed).
    pub slow_calls: u64,
    /// Failures in a row, most recent last.
    pub consecutive_failures: u32,
}

impl Counts {
    /// Successful calls in the window.
    pub fn successes(&self) -> u64 {
        self.calls - self.failures
    }

    /// Failure rate in percent, `None` for an empty window.
    pub fn failure_rate(&self) -> Option<f64> {
        (self.calls > 0).then(|| self.failures as f64 * 100.0 / self.calls as f64)
    }

    /// Slow-call rate in percent, `None` for an empty window.
    pub fn slow_call_rate(&self) -> Option<f64> {
        (self.calls > 0).then(|| self.slow_calls as f64 * 100.0 / self.calls as f64)
    }
}

/// Totals since the breaker was built (never reset; made for monotonic metrics counters).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Totals {
    /// Calls recorded as successful.
    pub successes: u64,
    /// Calls recorded as failed.
    pub failures: u64,
    /// Calls recorded as ignored (neutral).
    pub ignored: u64,
    /// Recorded calls that were slow.
    pub slow: u64,
    /// Calls refused by the breaker.
    pub rejected: u64,
    /// Results dropped because they arrived after a state change.
    pub late: u64,
    /// Permits dropped without a result (cancelled calls).
    pub cancelled: u64,
    /// Calls the breaker would have refused, let through by its enforcement ramp
    /// ([`Builder::enforcement`](crate::Builder::enforcement)); not counted in `rejected`.
    pub unenforced: u64,
}

impl Totals {
    /// Calls that were admitted and have finished (recorded, late or cancelled).
    pub fn requests(&self) -> u64 {
        self.successes + self.failures + self.ignored + self.late + self.cancelled
    }
}

/// A breaker's state and counts at one moment. Exact once concurrent calls have finished.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct Snapshot {
    /// The state.
    pub state: State,
    /// Changes with every state transition and reset; permits of older generations are late.
    pub generation: u32,
    /// Counts in the current window (closed and metrics-only states; zero otherwise).
    pub window: Counts,
    /// Successes in a row since the last failure or state change.
    pub consecutive_successes: u64,
    /// Probe calls admitted in the current half-open period (in flight or succeeded).
    pub half_open_admitted: u32,
    /// Probe calls that succeeded in the current half-open period.
    pub half_open_successes: u32,
    /// Open periods since the breaker last closed (drives exponential open durations).
    pub open_attempts: u32,
    /// Time until the breaker admits a probe (open state), if known.
    pub retry_after: Option<Duration>,
    /// Totals since the breaker was built.
    pub totals: Totals,
}

impl Snapshot {
    /// Failure rate in the current window, in percent.
    pub fn failure_rate(&self) -> Option<f64> {
        self.window.failure_rate()
    }

    /// Slow-call rate in the current window, in percent.
    pub fn slow_call_rate(&self) -> Option<f64> {
        self.window.slow_call_rate()
    }
}

/// What a breaker occupies, from [`CircuitBreaker::memory`](crate::CircuitBreaker::memory).
///
/// `inline_bytes` is `size_of` the breaker (where it lives: in an `Arc`, a map, a static);
/// `heap_bytes` what it allocated: its window's slots or buckets, its per-thread counters,
/// an owned name, and boxed closures (open-duration function, jitter source, trip
/// predicate; their captured state, not what that state points to).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemoryUse {
    /// `size_of` the breaker value.
    pub inline_bytes: usize,
    /// Bytes the breaker allocated.
    pub heap_bytes: usize,
    /// Threads that count on a cache line of their own
    /// ([`Builder::thread_counters`](crate::Builder::thread_counters)).
    pub thread_counters: usize,
}

impl MemoryUse {
    /// Inline plus heap bytes.
    pub fn total_bytes(&self) -> usize {
        self.inline_bytes + self.heap_bytes
    }
}
