//! Errors: why a call was rejected, and why a configuration is invalid.

use core::fmt;
use core::time::Duration;

use crate::state::State;

/// Why the breaker refused a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RejectReason {
    /// The breaker is open: the dependency is failing and calls are shed until the open
    /// period ends.
    Open,
    /// The breaker is half-open and all of its probe slots are taken by calls in flight.
    HalfOpenFull,
    /// An operator forced the breaker open (isolation); it stays so until reset.
    ForcedOpen,
}

/// A call the breaker refused. Nothing of the call was executed.
///
/// `retry_after` says how long until the breaker will admit a probe, when that is known
/// (open state). Callers should fail fast, serve a fallback, or retry after that time.
///
/// ```
/// use breaker_core::{CircuitBreaker, ManualClock, RejectReason};
///
/// let breaker = CircuitBreaker::builder_with_clock(ManualClock::new()).build().unwrap();
/// breaker.force_open();
/// let rejected = breaker.try_acquire().unwrap_err();
/// assert_eq!(rejected.reason(), RejectReason::ForcedOpen);
/// assert!(rejected.to_string().contains("forced open"));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rejected {
    pub(crate) reason: RejectReason,
    /// Nanoseconds until a probe is admitted; [`Rejected::NO_RETRY_AFTER`]: unknown. One
    /// word rather than an `Option<Duration>`, so that a `Result<_, Rejected>` travels in
    /// registers on the rejection path.
    pub(crate) retry_after_nanos: u64,
}

impl Rejected {
    pub(crate) const NO_RETRY_AFTER: u64 = u64::MAX;

    /// Why the call was refused.
    pub fn reason(&self) -> RejectReason {
        self.reason
    }

    /// How long until the breaker admits a probe call, if known: `Some` for the open state,
    /// `None` while half-open (try again when a probe finishes) or forced open.
    ///
    /// It is never too early. On a clock with a cheap coarse reading
    /// ([`Clock::coarse_now_nanos`](crate::Clock::coarse_now_nanos), the default
    /// [`MonotonicClock`](crate::MonotonicClock) on Linux) it may be late by that reading's
    /// lag (usually under one kernel tick, 4 ms at 250 Hz) while the deadline is far away;
    /// near the deadline, and on other clocks, it is exact.
    pub fn retry_after(&self) -> Option<Duration> {
        (self.retry_after_nanos != Self::NO_RETRY_AFTER)
            .then(|| Duration::from_nanos(self.retry_after_nanos))
    }

    /// When to retry, in words (for logs and messages to people); see [`RetryHint`].
    pub fn retry_hint(&self) -> RetryHint {
        RetryHint {
            reason: self.reason,
            retry_after: self.retry_after(),
        }
    }

    /// The state the breaker was in when it refused the call.
    pub fn state(&self) -> State {
        match self.reason {
            RejectReason::Open => State::Open,
            RejectReason::HalfOpenFull => State::HalfOpen,
            RejectReason::ForcedOpen => State::ForcedOpen,
        }
    }
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hint = self.retry_hint();
        match self.reason {
            RejectReason::Open => write!(
                f,
                "circuit breaker is open: the call was not attempted; retry {hint} or serve a \
                 fallback"
            ),
            RejectReason::HalfOpenFull => write!(
                f,
                "circuit breaker is half-open and its probe calls are all in flight: the call \
                 was not attempted; retry {hint} or serve a fallback"
            ),
            RejectReason::ForcedOpen => write!(
                f,
                "circuit breaker was forced open by an operator: the call was not attempted; \
                 serve a fallback, and retry {hint}"
            ),
        }
    }
}

/// When to retry a refused call, in words for people: "in 750 ms", "in 1.5 s",
/// "once the probes in flight finish". From [`Rejected::retry_hint`]. A refusal never says
/// "now": an open period ends just after its deadline, so a call refused at the deadline
/// itself is told "in 1 µs".
///
/// ```
/// use breaker_core::{CircuitBreaker, ManualClock};
/// use std::time::Duration;
///
/// let clock = ManualClock::new();
/// let breaker = CircuitBreaker::builder_with_clock(clock.clone())
///     .open_duration(Duration::from_millis(1500))
///     .build()?;
/// breaker.trip();
/// assert_eq!(breaker.try_acquire().unwrap_err().retry_hint().to_string(), "in 1.5 s");
/// clock.advance(Duration::from_millis(1250));
/// assert_eq!(breaker.try_acquire().unwrap_err().retry_hint().to_string(), "in 250 ms");
/// clock.advance(Duration::from_millis(250));
/// assert_eq!(breaker.try_acquire().unwrap_err().retry_hint().to_string(), "in 1 µs");
/// clock.advance(Duration::from_micros(1));
/// assert!(breaker.try_acquire().is_ok()); // the probe
/// # Ok::<(), breaker_core::ConfigError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryHint {
    reason: RejectReason,
    retry_after: Option<Duration>,
}

impl fmt::Display for RetryHint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(d) = self.retry_after else {
            return f.write_str(match self.reason {
                RejectReason::HalfOpenFull => "once the probes in flight finish",
                RejectReason::ForcedOpen => "after an operator resets the breaker",
                RejectReason::Open => "later",
            });
        };
        let nanos = d.as_nanos();
        if nanos == 0 {
            f.write_str("now")
        } else if nanos < 1_000_000 {
            write!(f, "in {} µs", nanos.div_ceil(1_000))
        } else if nanos < 1_000_000_000 {
            write!(f, "in {} ms", nanos.div_ceil(1_000_000))
        } else if d.as_secs() < 60 {
            // Tenths of a second, rounded up; "2 s" rather than "2.0 s".
            let tenths = nanos.div_ceil(100_000_000);
            match tenths % 10 {
                0 => write!(f, "in {} s", tenths / 10),
                t => write!(f, "in {}.{t} s", tenths / 10),
            }
        } else {
            let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
            match (secs / 60, secs % 60) {
                (m, 0) => write!(f, "in {m} min"),
                (m, s) => write!(f, "in {m} min {s} s"),
            }
        }
    }
}

impl core::error::Error for Rejected {}

/// The error of [`CircuitBreaker::call`](crate::CircuitBreaker::call): either the breaker
/// refused the call (it did not run), or the call ran and failed with its own error.
///
/// Displayed as what it wraps: the rejection, or the call's own error, whose causes
/// [`source`](core::error::Error::source) then continues with (an error report lists each
/// cause once).
///
/// ```
/// use breaker_core::{CallError, CircuitBreaker};
/// use std::error::Error;
///
/// let breaker = CircuitBreaker::builder().consecutive_failures(1).build()?;
/// let io = std::io::Error::other("connection reset");
/// let err: CallError<std::io::Error> = breaker.call(|| Err::<(), _>(io)).unwrap_err();
/// assert_eq!(err.to_string(), "connection reset");
/// assert!(err.source().is_none()); // the I/O error has no cause of its own
/// let err: CallError<std::io::Error> = breaker.call(|| Ok::<(), _>(())).unwrap_err();
/// assert!(err.rejected().is_some() && err.to_string().contains("circuit breaker is open"));
/// # Ok::<(), breaker_core::ConfigError>(())
/// ```
#[derive(Debug, PartialEq, Eq)]
pub enum CallError<E> {
    /// The breaker refused the call; the closure was not run.
    Rejected(Rejected),
    /// The closure ran and returned this error.
    Inner(E),
}

impl<E> CallError<E> {
    /// The inner error, if the call ran.
    pub fn into_inner(self) -> Option<E> {
        match self {
            CallError::Inner(e) => Some(e),
            CallError::Rejected(_) => None,
        }
    }

    /// The rejection, if the breaker refused the call.
    pub fn rejected(&self) -> Option<&Rejected> {
        match self {
            CallError::Rejected(r) => Some(r),
            CallError::Inner(_) => None,
        }
    }
}

impl<E: fmt::Display> fmt::Display for CallError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Rejected(r) => fmt::Display::fmt(r, f),
            CallError::Inner(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl<E: core::error::Error + 'static> core::error::Error for CallError<E> {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            CallError::Rejected(_) => None,
            CallError::Inner(e) => e.source(),
        }
    }
}

/// The value a [`ConfigError`] complains about.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum ConfigValue {
    /// A count or size.
    Count(u64),
    /// A rate, factor or multiplier.
    Number(f64),
    /// A duration.
    Duration(Duration),
    /// An option that does not go with the rest of the configuration.
    Conflict,
}

impl fmt::Display for ConfigValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigValue::Count(n) => write!(f, "{n}"),
            ConfigValue::Number(x) => write!(f, "{x}"),
            ConfigValue::Duration(d) => write!(f, "{d:?}"),
            ConfigValue::Conflict => f.write_str("set"),
        }
    }
}

/// An invalid breaker configuration, found when the configuration is built.
///
/// The message names the field, the value given and what is allowed.
///
/// ```
/// use breaker_core::CircuitBreaker;
///
/// let err = CircuitBreaker::builder().count_window(100).failure_rate(120.0).build().unwrap_err();
/// assert_eq!(err.field(), "failure_rate");
/// assert_eq!(
///     err.to_string(),
///     "invalid circuit breaker config: `failure_rate` is 120, allowed: a percentage in (0, 100]"
/// );
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ConfigError {
    pub(crate) field: &'static str,
    pub(crate) value: ConfigValue,
    pub(crate) allowed: &'static str,
}

impl ConfigError {
    /// An error for `field`, which got `value` but accepts `allowed` (a short phrase such as
    /// `"a duration > 0"`). For crates that build on this one and validate their own
    /// settings the same way.
    pub const fn new(field: &'static str, value: ConfigValue, allowed: &'static str) -> Self {
        Self {
            field,
            value,
            allowed,
        }
    }

    /// The name of the builder method / field at fault.
    pub fn field(&self) -> &'static str {
        self.field
    }

    /// The rejected value.
    pub fn value(&self) -> ConfigValue {
        self.value
    }

    /// What the field accepts.
    pub fn allowed(&self) -> &'static str {
        self.allowed
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid circuit breaker config: `{}` is {}, allowed: {}",
            self.field, self.value, self.allowed
        )
    }
}

impl core::error::Error for ConfigError {}

/// Why [`CircuitBreaker::reconfigure`](crate::CircuitBreaker::reconfigure) refused a new
/// configuration. The breaker keeps running with its old configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReconfigureError {
    /// The new configuration uses another failure policy or window shape (kind, size,
    /// duration or bucket count). Build a new breaker to change the window.
    WindowShapeChanged,
    /// The new configuration carries a closure (custom predicate, custom open duration or
    /// jitter source). Closures are fixed when a breaker is built; build a new breaker.
    ClosureChanged,
}

impl fmt::Display for ReconfigureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReconfigureError::WindowShapeChanged => f.write_str(
                "cannot reconfigure: the failure policy or window shape differs from the live \
                 breaker's; build a new breaker to change the window",
            ),
            ReconfigureError::ClosureChanged => f.write_str(
                "cannot reconfigure: the new config carries a closure (trip_when, custom open \
                 duration or jitter), which is fixed at build time; build a new breaker",
            ),
        }
    }
}

impl core::error::Error for ReconfigureError {}
