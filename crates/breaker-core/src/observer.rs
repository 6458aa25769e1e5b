//! Events the breaker reports, and the [`Observer`] that receives them.

use core::time::Duration;

use crate::error::RejectReason;
use crate::outcome::Outcome;
use crate::state::State;

/// A rule whose threshold was reached in the closed (or metrics-only) state.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum Threshold {
    /// `consecutive_failures(n)` reached `n`.
    ConsecutiveFailures {
        /// Failures in a row.
        count: u32,
    },
    /// The failure rate reached the `failure_rate` threshold.
    FailureRate {
        /// The rate, in percent.
        percent: f64,
    },
    /// The slow-call rate reached the `slow_calls` threshold.
    SlowCallRate {
        /// The rate, in percent.
        percent: f64,
    },
    /// The `trip_when` predicate returned true.
    Predicate,
}

/// Something that happened in a breaker.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// The state changed. Reported exactly once per transition, by the thread that made it.
    StateTransition {
        /// The state before.
        from: State,
        /// The state after.
        to: State,
    },
    /// A call was refused; it did not run.
    Rejected {
        /// Why.
        reason: RejectReason,
    },
    /// The breaker would have refused a call, and let it through: its enforcement ramp
    /// ([`Builder::enforcement`](crate::Builder::enforcement)) enforces only a share of
    /// its refusals. The call runs, and nothing of it is recorded.
    Unenforced {
        /// Why it would have been refused.
        reason: RejectReason,
    },
    /// A successful call was recorded.
    Success {
        /// Its duration, as given to `record`.
        elapsed: Duration,
    },
    /// A failed call was recorded.
    Failure {
        /// Its duration, as given to `record`.
        elapsed: Duration,
    },
    /// A call was recorded as neutral: counted nowhere, its half-open slot given back.
    Ignored,
    /// A recorded call was slower than the slow-call duration (reported after its
    /// `Success` or `Failure` event).
    SlowCall {
        /// Its duration.
        elapsed: Duration,
        /// Whether it succeeded or failed.
        outcome: Outcome,
    },
    /// A trip rule's threshold was reached (followed by the transition to open, except in
    /// metrics-only mode).
    ThresholdExceeded(Threshold),
    /// The breaker was reset to closed, its counts cleared.
    Reset,
    /// A result arrived after the state had changed since its permit was issued; it was
    /// dropped and counts nowhere.
    LateResult {
        /// The dropped outcome.
        outcome: Outcome,
    },
    /// A caller served a fallback instead of the dependency's answer (reported by adapters
    /// such as `breaker-async`).
    FallbackUsed {
        /// Which kind of fallback: `"value"`, `"function"`, `"alternative"`, `"cache"`, ...
        kind: &'static str,
    },
}

/// Receives a breaker's [`Event`]s.
///
/// Called synchronously on the thread that caused the event, with no lock held (the breaker
/// has none); an observer may call back into the breaker. Keep it cheap: it sits on the
/// call path. The default [`NoopObserver`] compiles to nothing.
///
/// ```
/// use breaker_core::{CircuitBreaker, Event, ManualClock, Observer, Outcome, State};
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use std::time::Duration;
///
/// #[derive(Default)]
/// struct CountTrips(AtomicU32);
///
/// impl Observer for CountTrips {
///     fn on_event(&self, event: &Event) {
///         if let Event::StateTransition { to: State::Open, .. } = event {
///             self.0.fetch_add(1, Ordering::Relaxed);
///         }
///     }
/// }
///
/// let breaker = CircuitBreaker::builder_with_clock(ManualClock::new())
///     .consecutive_failures(1)
///     .observer(CountTrips::default())
///     .build()
///     .unwrap();
/// breaker.try_acquire().unwrap().record(Outcome::Failure);
/// assert_eq!(breaker.observer().0.load(Ordering::Relaxed), 1);
/// ```
pub trait Observer {
    /// Called for every event (by default, through
    /// [`on_breaker_event`](Self::on_breaker_event)).
    fn on_event(&self, event: &Event) {
        let _ = event;
    }

    /// Called for every event with the name of the breaker it happened in (given to
    /// [`Builder::name`](crate::Builder::name); `""` for an unnamed breaker). An observer
    /// shared by many breakers (metrics, tracing) implements this one to tell them apart;
    /// by default it forwards to [`on_event`](Self::on_event).
    ///
    /// ```
    /// use breaker_core::{CircuitBreaker, Event, ManualClock, Observer, State};
    /// use std::sync::{Arc, Mutex};
    ///
    /// #[derive(Default)]
    /// struct Trips(Mutex<Vec<String>>);
    ///
    /// impl Observer for Trips {
    ///     fn on_breaker_event(&self, breaker: &str, event: &Event) {
    ///         if let Event::StateTransition { to: State::Open, .. } = event {
    ///             self.0.lock().unwrap().push(breaker.to_string());
    ///         }
    ///     }
    /// }
    ///
    /// let trips = Arc::new(Trips::default());
    /// let payments = CircuitBreaker::builder_with_clock(ManualClock::new())
    ///     .name("payments")
    ///     .observer(trips.clone())
    ///     .build()?;
    /// let search = CircuitBreaker::builder_with_clock(ManualClock::new())
    ///     .name("search")
    ///     .observer(trips.clone())
    ///     .build()?;
    /// search.trip();
    /// payments.trip();
    /// assert_eq!(*trips.0.lock().unwrap(), ["search", "payments"]);
    /// # Ok::<(), breaker_core::ConfigError>(())
    /// ```
    #[inline(always)]
    fn on_breaker_event(&self, breaker: &str, event: &Event) {
        let _ = breaker;
        self.on_event(event)
    }
}

/// The default observer: ignores everything, costs nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoopObserver;

impl Observer for NoopObserver {
    #[inline(always)]
    fn on_event(&self, _event: &Event) {}

    #[inline(always)]
    fn on_breaker_event(&self, _breaker: &str, _event: &Event) {}
}

impl<T: Observer + ?Sized> Observer for &T {
    fn on_event(&self, event: &Event) {
        (**self).on_event(event)
    }

    fn on_breaker_event(&self, breaker: &str, event: &Event) {
        (**self).on_breaker_event(breaker, event)
    }
}

#[cfg(feature = "alloc")]
impl<T: Observer + ?Sized> Observer for alloc::sync::Arc<T> {
    fn on_event(&self, event: &Event) {
        (**self).on_event(event)
    }

    fn on_breaker_event(&self, breaker: &str, event: &Event) {
        (**self).on_breaker_event(breaker, event)
    }
}

#[cfg(feature = "alloc")]
impl<T: Observer + ?Sized> Observer for alloc::boxed::Box<T> {
    fn on_event(&self, event: &Event) {
        (**self).on_event(event)
    }

    fn on_breaker_event(&self, breaker: &str, event: &Event) {
        (**self).on_breaker_event(breaker, event)
    }
}

/// Two observers, both called (first `.0`, then `.1`).
impl<A: Observer, B: Observer> Observer for (A, B) {
    fn on_event(&self, event: &Event) {
        self.0.on_event(event);
        self.1.on_event(event);
    }

    fn on_breaker_event(&self, breaker: &str, event: &Event) {
        self.0.on_breaker_event(breaker, event);
        self.1.on_breaker_event(breaker, event);
    }
}
