//! Deciding how a call's result counts, and handles through which adapters reach a breaker.

use crate::breaker::{CircuitBreaker, Outcome};
use crate::clock::Clock;
use crate::observer::Observer;

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

/// A cloneable handle to a breaker that an adapter (a future, a service) can keep:
/// `&CircuitBreaker` (borrowed; `&'static` for a breaker in a `static`) or
/// `Arc<CircuitBreaker>`.
pub trait BreakerRef: Clone {
    /// The breaker's clock.
    type Clock: Clock;
    /// The breaker's observer.
    type Observer: Observer;

    /// The breaker.
    fn breaker(&self) -> &CircuitBreaker<Self::Clock, Self::Observer>;
}

impl<C: Clock, O: Observer> BreakerRef for &CircuitBreaker<C, O> {
    type Clock = C;
    type Observer = O;

    #[inline]
    fn breaker(&self) -> &CircuitBreaker<C, O> {
        self
    }
}

#[cfg(feature = "alloc")]
impl<C: Clock, O: Observer> BreakerRef for alloc::sync::Arc<CircuitBreaker<C, O>> {
    type Clock = C;
    type Observer = O;

    #[inline]
    fn breaker(&self) -> &CircuitBreaker<C, O> {
        self
    }
}
