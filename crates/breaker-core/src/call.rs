//! The synchronous `call` helper (`std`): acquire, run a closure, classify and record its
//! result; a panic is recorded as a failure as it unwinds.

use crate::breaker::CircuitBreaker;
use crate::clock::Clock;
use crate::error::CallError;
use crate::observer::Observer;
use crate::outcome::Outcome;
use crate::permit::Permit;

impl<C: Clock, O: Observer> CircuitBreaker<C, O> {
    /// Runs `f` if the breaker admits it; every `Err` counts as a failure.
    ///
    /// A panic in `f` is recorded as a failure and keeps unwinding (as gobreaker does).
    ///
    /// ```
    /// use breaker_core::{CallError, CircuitBreaker, ManualClock};
    ///
    /// let breaker = CircuitBreaker::builder_with_clock(ManualClock::new())
    ///     .consecutive_failures(1)
    ///     .build()?;
    /// let r: Result<u32, CallError<&str>> = breaker.call(|| Err("connection refused"));
    /// assert_eq!(r, Err(CallError::Inner("connection refused")));
    /// let r: Result<u32, CallError<&str>> = breaker.call(|| Ok(1));
    /// assert!(matches!(r, Err(CallError::Rejected(_)))); // open: not called
    /// # Ok::<(), breaker_core::ConfigError>(())
    /// ```
    pub fn call<T, E>(&self, f: impl FnOnce() -> Result<T, E>) -> Result<T, CallError<E>> {
        self.call_with(
            |r: &Result<T, E>| {
                if r.is_ok() {
                    Outcome::Success
                } else {
                    Outcome::Failure
                }
            },
            f,
        )
    }

    /// Runs `f` if the breaker admits it, and lets `classify` decide how its result counts:
    /// a caller's bad request need not count as an outage.
    ///
    /// ```
    /// use breaker_core::{CircuitBreaker, ManualClock, Outcome, State};
    ///
    /// #[derive(Debug)]
    /// enum DbError { NotFound, ConnectionLost }
    ///
    /// let breaker = CircuitBreaker::builder_with_clock(ManualClock::new())
    ///     .consecutive_failures(1)
    ///     .build()?;
    /// let classify = |r: &Result<(), DbError>| match r {
    ///     Ok(()) | Err(DbError::NotFound) => Outcome::Success,
    ///     Err(DbError::ConnectionLost) => Outcome::Failure,
    /// };
    /// let _ = breaker.call_with(classify, || Err(DbError::NotFound));
    /// assert_eq!(breaker.state(), State::Closed);
    /// let _ = breaker.call_with(classify, || Err(DbError::ConnectionLost));
    /// assert_eq!(breaker.state(), State::Open);
    /// # Ok::<(), breaker_core::ConfigError>(())
    /// ```
    pub fn call_with<T, E>(
        &self,
        classify: impl FnOnce(&Result<T, E>) -> Outcome,
        f: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, CallError<E>> {
        let permit = self.try_acquire().map_err(CallError::Rejected)?;
        // Only unwinding drops the guard with its permit inside; the normal path takes the
        // permit back out and records the classified outcome.
        let mut guard = PanicGuard(Some(permit));
        let result = f();
        let outcome = classify(&result);
        if let Some(permit) = guard.0.take() {
            permit.record(outcome);
        }
        result.map_err(CallError::Inner)
    }
}

/// Records a failure if dropped while unwinding from a panic in the guarded call.
struct PanicGuard<'a, C: Clock, O: Observer>(Option<Permit<&'a CircuitBreaker<C, O>>>);

impl<C: Clock, O: Observer> Drop for PanicGuard<'_, C, O> {
    fn drop(&mut self) {
        if let Some(permit) = self.0.take() {
            if std::thread::panicking() {
                permit.record(Outcome::Failure);
            } else {
                permit.cancel();
            }
        }
    }
}
