//! How a call's result counts: the [`Outcome`] the breaker records, [`Classify`], which
//! turns a call's result into one, and the [`Pushback`] a failing dependency may give.

use core::time::Duration;

/// The result of a call, as the breaker counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The dependency did its job.
    Success,
    /// The dependency failed: counts toward tripping; in half-open, re-opens the breaker.
    Failure,
    /// Neutral (a caller's bad request, a cancelled call, a 404...): counted nowhere, and a
    /// half-open probe slot is given back.
    Ignored,
}

/// What a dependency said, with a failing answer, about when to come back: HTTP
/// `Retry-After`, gRPC `grpc-retry-pushback-ms`. Given to
/// [`Permit::record_with_pushback`](crate::Permit::record_with_pushback): when that failure
/// opens the breaker, the open period lasts at least what the dependency asked, up to
/// [`Builder::max_pushback`](crate::Builder::max_pushback).
///
/// Only the failure that opens the breaker (a trip, a failed probe) is heard: a hint carried
/// by a result that arrives after another failure opened it (late) is not used; the next
/// probe's failure brings it again.
///
/// ```
/// use breaker_core::{CircuitBreaker, ManualClock, Outcome, Pushback};
/// use std::time::Duration;
///
/// let breaker = CircuitBreaker::builder_with_clock(ManualClock::new())
///     .consecutive_failures(1)
///     .open_duration(Duration::from_secs(5))
///     .build()?;
/// let permit = breaker.try_acquire()?;
/// // "503 Service Unavailable, Retry-After: 60"
/// permit.record_with_pushback(Outcome::Failure, Some(Pushback::After(Duration::from_secs(60))));
/// assert_eq!(breaker.retry_after(), Some(Duration::from_secs(60)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Pushback {
    /// Come back after this long (a `Retry-After`, a `grpc-retry-pushback-ms` of zero or
    /// more).
    After(Duration),
    /// Do not come back soon (a negative `grpc-retry-pushback-ms`, gRPC's "do not retry"):
    /// stay open as long as the breaker allows ([`Builder::max_pushback`](crate::Builder::max_pushback)).
    DoNotRetry,
}

impl Pushback {
    /// The open period asked for, in nanoseconds (`u64::MAX`: as long as allowed).
    pub(crate) fn nanos(self) -> u64 {
        match self {
            Pushback::After(d) => crate::clock::nanos(d).max(1),
            Pushback::DoNotRetry => u64::MAX,
        }
    }
}

/// Decides how a call's result counts: a `404` or a validation error need not count as an
/// outage. Implemented by closures `Fn(&Result<T, E>) -> Outcome` and by
/// [`ErrorsAreFailures`] (the default of the adapters).
///
/// ```
/// use breaker_core::{Classify, Outcome};
///
/// let by_status = |r: &Result<u16, std::io::Error>| match r {
///     Ok(status) if *status >= 500 => Outcome::Failure,
///     Ok(_) => Outcome::Success,
///     Err(_) => Outcome::Failure,
/// };
/// assert_eq!(by_status.classify(&Ok(503)), Outcome::Failure);
/// assert_eq!(by_status.classify(&Ok(404)), Outcome::Success);
/// ```
pub trait Classify<T, E> {
    /// The outcome of `result`.
    fn classify(&self, result: &Result<T, E>) -> Outcome;

    /// What a failing `result` says about when to come back (an HTTP `Retry-After`, a gRPC
    /// pushback), if anything: asked only for results classified as failures. None by
    /// default.
    #[inline]
    fn pushback(&self, result: &Result<T, E>) -> Option<Pushback> {
        let _ = result;
        None
    }
}

/// `Ok` is a success, every `Err` a failure.
#[derive(Clone, Copy, Debug, Default)]
pub struct ErrorsAreFailures;

impl<T, E> Classify<T, E> for ErrorsAreFailures {
    #[inline]
    fn classify(&self, result: &Result<T, E>) -> Outcome {
        if result.is_ok() {
            Outcome::Success
        } else {
            Outcome::Failure
        }
    }
}

impl<T, E, F: Fn(&Result<T, E>) -> Outcome> Classify<T, E> for F {
    #[inline]
    fn classify(&self, result: &Result<T, E>) -> Outcome {
        self(result)
    }
}
