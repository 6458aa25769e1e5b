//! [`TracingObserver`]: breaker events as `tracing` events (feature `tracing`).

use core::sync::atomic::{AtomicU64, Ordering};

use crate::observer::{Event, Observer, Threshold};
use crate::state::State;

/// Reports a breaker's life through [`tracing`](https://docs.rs/tracing) (feature `tracing`;
/// works without `std`):
///
/// - every transition: `warn` when the breaker opens or is forced open, `info` otherwise,
///   with the fields `breaker` (its name), `from`, `to`, `reason` (`failure_rate`,
///   `slow_call_rate`, `consecutive_failures`, `predicate`, `open_period_over`,
///   `probe_failed_or_half_open_limit`, `probes_succeeded`, `reset`, `operator`) and, when a
///   rate rule tripped it, `failure_rate` / `slow_call_rate` in percent;
/// - rejections at `debug`, sampled so that an open breaker under load does not flood the
///   logs: the 1st, 2nd, 4th, 8th, ... rejection since the last transition, with the count
///   so far (`rejected`).
///
/// Combine it with another observer as a pair: `.observer((metrics, TracingObserver::new()))`.
///
/// ```
/// use breaker_core::{CircuitBreaker, TracingObserver};
///
/// let breaker = CircuitBreaker::builder()
///     .name("payments")
///     .observer(TracingObserver::new())
///     .build()?;
/// # Ok::<(), breaker_core::ConfigError>(())
/// ```
#[derive(Debug, Default)]
pub struct TracingObserver {
    /// The last threshold reported: `[kind:8 | percent as f32 bits:32]`, 0 for none.
    threshold: AtomicU64,
    /// Rejections since the last transition.
    rejected: AtomicU64,
    /// Refusals let through by the enforcement ramp since the last transition.
    unenforced: AtomicU64,
}

const RESET: u64 = 1 << 40;

impl TracingObserver {
    /// A tracing observer.
    pub fn new() -> Self {
        Self::default()
    }

    fn reason(&self, from: State, to: State) -> (&'static str, Option<(&'static str, f64)>) {
        let remembered = self.threshold.swap(0, Ordering::Relaxed);
        if remembered & RESET != 0 {
            return ("reset", None);
        }
        let percent = f64::from(f32::from_bits(remembered as u32));
        match (remembered >> 32) as u8 {
            1 => ("consecutive_failures", None),
            2 => ("failure_rate", Some(("failure_rate", percent))),
            3 => ("slow_call_rate", Some(("slow_call_rate", percent))),
            4 => ("predicate", None),
            _ => (
                match (from, to) {
                    (State::Open, State::HalfOpen) => "open_period_over",
                    (State::HalfOpen, State::Open) => "probe_failed_or_half_open_limit",
                    (State::HalfOpen, State::Closed) => "probes_succeeded",
                    _ => "operator",
                },
                None,
            ),
        }
    }
}

impl Observer for TracingObserver {
    fn on_breaker_event(&self, breaker: &str, event: &Event) {
        match *event {
            Event::ThresholdExceeded(threshold) => {
                let (kind, percent) = match threshold {
                    Threshold::ConsecutiveFailures { .. } => (1, 0.0),
                    Threshold::FailureRate { percent } => (2, percent),
                    Threshold::SlowCallRate { percent } => (3, percent),
                    _ => (4, 0.0),
                };
                let word = (kind << 32) | u64::from((percent as f32).to_bits());
                self.threshold.store(word, Ordering::Relaxed);
            }
            Event::Reset => self.threshold.store(RESET, Ordering::Relaxed),
            Event::StateTransition { from, to } => {
                self.rejected.store(0, Ordering::Relaxed);
                self.unenforced.store(0, Ordering::Relaxed);
                let (reason, rate) = self.reason(from, to);
                let (from, to) = (from.as_str(), to.as_str());
                let failure_rate = rate.filter(|r| r.0 == "failure_rate").map(|r| r.1);
                let slow_call_rate = rate.filter(|r| r.0 == "slow_call_rate").map(|r| r.1);
                if matches!(
                    event,
                    Event::StateTransition {
                        to: State::Open | State::ForcedOpen,
                        ..
                    }
                ) {
                    tracing::warn!(
                        breaker,
                        from,
                        to,
                        reason,
                        failure_rate,
                        slow_call_rate,
                        "circuit breaker opened: calls are refused until it probes again"
                    );
                } else {
                    tracing::info!(breaker, from, to, reason, "circuit breaker state changed");
                }
            }
            Event::Rejected { reason } => {
                let rejected = self.rejected.fetch_add(1, Ordering::Relaxed) + 1;
                if rejected.is_power_of_two() {
                    let reason = match reason {
                        crate::error::RejectReason::Open => "open",
                        crate::error::RejectReason::HalfOpenFull => "half_open_full",
                        _ => "forced_open",
                    };
                    tracing::debug!(
                        breaker,
                        reason,
                        rejected,
                        "circuit breaker refused calls (logged at the 1st, 2nd, 4th, 8th, ... since the last transition)"
                    );
                }
            }
            Event::Unenforced { reason } => {
                let unenforced = self.unenforced.fetch_add(1, Ordering::Relaxed) + 1;
                if unenforced.is_power_of_two() {
                    let reason = match reason {
                        crate::error::RejectReason::HalfOpenFull => "half_open_full",
                        _ => "open",
                    };
                    tracing::debug!(
                        breaker,
                        reason,
                        unenforced,
                        "circuit breaker let calls through that it would have refused (enforcement ramp; logged at the 1st, 2nd, 4th, 8th, ... since the last transition)"
                    );
                }
            }
            _ => {}
        }
    }
}
