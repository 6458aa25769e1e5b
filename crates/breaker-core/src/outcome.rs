//! How a call's result counts: the [`Outcome`] the breaker records, and [`Classify`], which
//! turns a call's result into one.

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
