//! A lock-free circuit-breaker state machine: exact, `no_std`-friendly, verified with loom.
//!
//! When a dependency slows down or fails, a circuit breaker stops calling it for a while,
//! so the caller fails fast instead of waiting itself to death, then lets a few probe calls
//! through and closes again once the dependency has recovered.
//!
//! ```text
//!            failures reach a rule's threshold
//!   Closed ───────────────────────────────────▶ Open ◀──────────────┐
//!     ▲                                          │ open period over  │ a probe fails
//!     │      `half_open_probes` successes        ▼                   │ (or half-open too long)
//!     └────────────────────────────────────── HalfOpen ─────────────┘
//! ```
//!
//! Operator modes sit beside this cycle: [`force_open`](CircuitBreaker::force_open)
//! (isolate), [`disable`](CircuitBreaker::disable) (permit all, record nothing),
//! [`metrics_only`](CircuitBreaker::metrics_only) (record, never trip) and
//! [`reset`](CircuitBreaker::reset).
//!
//! # The two-step protocol
//!
//! Everything else (closures, futures, tower services, gRPC, database pools) is a thin use
//! of [`CircuitBreaker::try_acquire`] and [`Permit::record`]:
//!
//! ```
//! use breaker_core::{CircuitBreaker, Outcome};
//! use std::time::Duration;
//!
//! let breaker = CircuitBreaker::builder()
//!     .count_window(100)
//!     .minimum_calls(10)
//!     .failure_rate(50.0)
//!     .open_duration(Duration::from_secs(30))
//!     .build()?;
//!
//! match breaker.try_acquire() {
//!     Ok(permit) => {
//!         let result: Result<&str, &str> = Ok("response"); // call the dependency here
//!         let outcome = if result.is_ok() { Outcome::Success } else { Outcome::Failure };
//!         permit.record(outcome); // the permit times the call itself
//!     }
//!     Err(rejected) => {
//!         // Not called: serve a fallback; `rejected.retry_after()` says when to try again.
//!         eprintln!("{rejected}");
//!     }
//! }
//! # Ok::<(), breaker_core::ConfigError>(())
//! ```
//!
//! A [`Permit`] is the call's whole lifecycle: it starts when the permit is issued, measures
//! the call's duration itself when the breaker needs it, and carries the generation it was
//! issued in (a result that arrives after the state changed is dropped, never counted
//! against the new state) and the call's deadline, if it has one. [`cancel`](Permit::cancel)
//! ends a call neutrally; a permit *dropped* without a result was abandoned: neutral while
//! the call was young, a (slow) failure once it had run past its deadline or the slow-call
//! duration.
//!
//! # Failure policies
//!
//! | builder call | trips when |
//! |---|---|
//! | [`consecutive_failures(n)`](Builder::consecutive_failures) (default, n = 5) | `n` failures in a row are reached |
//! | [`count_window(n)`](Builder::count_window) | over the last `n` calls, once `minimum_calls` are in: failure rate `>= failure_rate`, or slow-call rate `>= slow_calls` percent |
//! | [`time_window(d, b)`](Builder::time_window) | the same over the calls of the last `d`, in `b` buckets (`b = 1`: tumbling) |
//! | [`cumulative_window()`](Builder::cumulative_window) | the same over every call since the breaker closed |
//! | [`trip_when(f)`](Builder::trip_when) with a window | `f(&counts)` returns true |
//!
//! # Time
//!
//! Time comes from a [`Clock`]: [`MonotonicClock`] by default, [`CoarseClock`] (one atomic
//! load per read) for time windows on very hot paths, and [`ManualClock`], public so you can
//! test your own breaker settings deterministically. Transitions are evaluated lazily on
//! acquire, record and queries, and open becomes half-open only strictly after the open
//! period.
//!
//! # Features
//!
//! - `std` (default): [`MonotonicClock`], [`CoarseClock`], [`CircuitBreaker::call`],
//!   per-thread counters, the [`Registry`] of named breakers.
//! - `alloc`: windows, closures in the configuration, [`ManualClock`], [`OwnedPermit`].
//! - neither: the consecutive-failures policy on any [`Clock`] you provide.
//! - `serde`: [`settings`], breaker settings from configuration files and environment
//!   variables, a registry of breakers built from one file, live reconfiguration.
//! - `tracing`: [`TracingObserver`], transitions and sampled rejections as `tracing` events
//!   (with or without `std`).
#![cfg_attr(docsrs, feature(doc_cfg))]
#![cfg_attr(not(feature = "std"), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

#[cfg(feature = "alloc")]
extern crate alloc;

mod breaker;
#[cfg(feature = "std")]
mod call;
mod clock;
mod config;
mod control;
mod error;
mod handle;
mod observer;
mod outcome;
mod permit;
mod phase;
#[cfg(feature = "std")]
mod registry;
#[cfg(feature = "serde")]
pub mod settings;
mod snapshot;
mod state;
mod stats;
mod sync;
mod ticket;
#[cfg(feature = "tracing")]
mod trace;
mod tunables;
#[cfg(feature = "alloc")]
mod window;

pub use breaker::{CircuitBreaker, Follow, OperatorAction, ProbeAllowance};
pub use clock::Clock;
#[cfg(feature = "alloc")]
pub use clock::ManualClock;
#[cfg(feature = "std")]
pub use clock::{CoarseClock, MonotonicClock};
pub use config::{
    Builder, Config, ConfigInForce, DEFAULT_MAX_HALF_OPEN, MAX_BUCKETS, MAX_CONSECUTIVE_FAILURES,
    MAX_COUNT_WINDOW, MAX_HALF_OPEN_PROBES, OpenDuration, PolicyKind,
};
pub use error::{
    CallError, ConfigError, ConfigValue, ReconfigureError, RejectReason, Rejected, RetryHint,
};
pub use handle::{BreakerRef, IntoBreakerRef};
pub use observer::{Event, NoopObserver, Observer, Threshold};
pub use outcome::{Classify, ErrorsAreFailures, Outcome, Pushback};
#[cfg(feature = "alloc")]
pub use permit::OwnedPermit;
pub use permit::Permit;
#[cfg(feature = "std")]
pub use registry::{
    DuplicateName, Inspect, InspectGroup, Registered, Registry, Report, UnsupportedAction,
};
pub use snapshot::{Counts, MemoryUse, Snapshot, Totals};
pub use state::State;
#[cfg(feature = "tracing")]
pub use trace::TracingObserver;

/// SplitMix64's finaliser: a well-spread 64-bit hash of `x` (the enforcement ramp's choice,
/// jitter draws).
#[inline]
pub(crate) fn splitmix64(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A seed no other breaker (in this process or another) is likely to draw: std's per-process
/// random hash keys, mixed with a per-call counter. Without `std`, a counter only: breakers
/// of different processes draw the same sequences (seed them yourself).
#[cfg(feature = "alloc")]
pub(crate) fn fresh_seed() -> u64 {
    use core::sync::atomic::{AtomicU64, Ordering};
    static DRAWN: AtomicU64 = AtomicU64::new(0);
    let n = DRAWN.fetch_add(1, Ordering::Relaxed);
    #[cfg(feature = "std")]
    {
        use core::hash::{BuildHasher, Hasher};
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(n);
        hasher.finish()
    }
    #[cfg(not(feature = "std"))]
    splitmix64(n.wrapping_add(0x9E37_79B9_7F4A_7C15))
}

/// The tuning guide's examples, compiled and run as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/tuning.md")]
struct TuningGuide;

/// This crate's README, compiled and run as doctests so it stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
