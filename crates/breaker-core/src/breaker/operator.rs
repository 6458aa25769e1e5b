//! Operator controls (force open, disable, metrics-only, trip, reset) and run-time
//! reconfiguration.

use super::CircuitBreaker;
use crate::clock::Clock;
use crate::config::Config;
use crate::control::MAX_ATTEMPTS;
use crate::error::ReconfigureError;
use crate::observer::{Event, Observer};
use crate::state::State;
use crate::sync::spin_hint;
#[cfg(feature = "alloc")]
use crate::window::Window;

impl<C: Clock, O: Observer> CircuitBreaker<C, O> {
    pub(super) fn force(&self, target: State, is_reset: bool) {
        let mut w = self.control.load();
        loop {
            if w.state() == target && !is_reset {
                return;
            }
            let attempts = match target {
                State::Open => w.attempts() + 1,
                State::HalfOpen | State::ForcedOpen => w.attempts(),
                _ => 0,
            };
            let next = w.next(target, attempts.min(MAX_ATTEMPTS), 0);
            match self.transition(w, next, None) {
                Ok(()) => {
                    if is_reset {
                        self.emit(&Event::Reset);
                    }
                    return self.announce(w, next, None);
                }
                Err(actual) => {
                    w = actual;
                    spin_hint();
                }
            }
        }
    }

    /// Isolates the dependency: every call is rejected ([`RejectReason::ForcedOpen`](crate::RejectReason::ForcedOpen)) until
    /// [`reset`](Self::reset). Calls in flight are dropped as late when they finish.
    pub fn force_open(&self) {
        self.force(State::ForcedOpen, false)
    }

    /// Bypasses the breaker: every call is admitted and nothing is recorded, until
    /// [`reset`](Self::reset).
    pub fn disable(&self) {
        self.force(State::Disabled, false)
    }

    /// Records and reports (threshold events) but never trips, until
    /// [`reset`](Self::reset). Starts with an empty window.
    pub fn metrics_only(&self) {
        self.force(State::MetricsOnly, false)
    }

    /// Opens the breaker now, as if a rule had tripped (the open period and backoff apply).
    pub fn trip(&self) {
        self.force(State::Open, false)
    }

    /// Back to closed with empty counts and backoff; permits issued before are late.
    /// Also ends forced-open, disabled and metrics-only modes.
    pub fn reset(&self) {
        self.force(State::Closed, true)
    }

    /// Applies a new configuration to the live breaker, keeping its state and counts.
    ///
    /// Thresholds, rates, minimum calls, slow-call duration, half-open probes and limit,
    /// and fixed / exponential open durations change; the new values apply from the next
    /// call (a lowered threshold trips on the next recorded call, not at once; an open
    /// period already running keeps its deadline). A concurrent call may see some of the
    /// new values and some of the old during the switch. The window (policy kind, size,
    /// duration, buckets) and closures (`trip_when`, `open_duration_fn`, `jitter`) are fixed
    /// at build time: a config that changes them is refused and nothing changes. A custom
    /// open-duration function of the live breaker keeps precedence over the new open
    /// duration.
    ///
    /// ```
    /// use breaker_core::{CircuitBreaker, Config, ManualClock, Outcome, State};
    /// use std::time::Duration;
    ///
    /// let breaker = CircuitBreaker::builder_with_clock(ManualClock::new())
    ///     .consecutive_failures(5)
    ///     .build()?;
    /// breaker.try_acquire().unwrap().record(Outcome::Failure, Duration::ZERO);
    /// breaker.reconfigure(Config::builder().consecutive_failures(2).build_config()?).unwrap();
    /// breaker.try_acquire().unwrap().record(Outcome::Failure, Duration::ZERO);
    /// assert_eq!(breaker.state(), State::Open);
    /// # Ok::<(), breaker_core::ConfigError>(())
    /// ```
    pub fn reconfigure(&self, config: Config) -> Result<(), ReconfigureError> {
        if !config.policy.same_shape(&self.policy) {
            return Err(ReconfigureError::WindowShapeChanged);
        }
        if config.has_closures() {
            return Err(ReconfigureError::ClosureChanged);
        }
        self.tunables.store(&config);
        #[cfg(feature = "alloc")]
        match &self.window {
            Window::Time(window) => window.forget_verdict(),
            Window::Count(window) => window.forget_verdict(),
            Window::None => {}
        }
        Ok(())
    }
}
