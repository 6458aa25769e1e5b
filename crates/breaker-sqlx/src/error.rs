//! What a guarded pool adds to sqlx's errors: a query it refused, a query it abandoned at
//! the statement timeout.

use std::fmt;
use std::time::Duration;

use breaker_core::Rejected;

/// The error inside the [`sqlx::Error`] of a query the breaker refused: it was not sent.
/// Find it with [`rejection`].
///
/// It travels as [`sqlx::Error::Configuration`], not as an I/O error: the database was not
/// reached, and a retry loop that retries I/O errors at once should not hammer an open
/// breaker (retry after [`Rejected::retry_after`] instead, or serve a fallback).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RejectedQuery(pub Rejected);

impl fmt::Display for RejectedQuery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the circuit breaker in front of the database refused the query, which was not \
             sent: {}",
            self.0
        )
    }
}

impl std::error::Error for RejectedQuery {}

/// A refused query, as the `sqlx::Error` callers of sqlx expect.
pub(crate) fn rejected_error(rejected: Rejected) -> sqlx::Error {
    sqlx::Error::Configuration(Box::new(RejectedQuery(rejected)))
}

/// The breaker's refusal, if `error` is a query that a [`GuardedPool`](crate::GuardedPool) refused to send
/// (with the time until a retry is allowed, while open).
pub fn rejection(error: &sqlx::Error) -> Option<&Rejected> {
    match error {
        sqlx::Error::Configuration(e) => e.downcast_ref::<RejectedQuery>().map(|q| &q.0),
        _ => None,
    }
}

/// The error inside the [`sqlx::Error`] of a query that ran past the guarded pool's
/// statement timeout and was abandoned (counted as a database failure). Find it with
/// [`timed_out`].
///
/// It travels as a [`sqlx::Error::Io`] of kind [`TimedOut`](std::io::ErrorKind::TimedOut):
/// the database did not answer in time, which is what I/O errors mean to a caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatementTimedOut {
    /// The statement timeout that expired.
    pub after: Duration,
}

impl fmt::Display for StatementTimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the database did not finish the query within the statement timeout of {:?}; it \
             was abandoned and counted as a database failure (a write may or may not have \
             been applied: check before retrying it). Raise GuardedPool::statement_timeout \
             if the database is known to be this slow",
            self.after
        )
    }
}

impl std::error::Error for StatementTimedOut {}

pub(crate) fn statement_timed_out(after: Duration) -> sqlx::Error {
    sqlx::Error::Io(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        StatementTimedOut { after },
    ))
}

/// The statement timeout that expired, if `error` is a query that ran past it.
pub fn timed_out(error: &sqlx::Error) -> Option<&StatementTimedOut> {
    match error {
        sqlx::Error::Io(io) => io.get_ref()?.downcast_ref::<StatementTimedOut>(),
        _ => None,
    }
}
