//! A circuit breaker in front of [sqlx]: database outages trip it, a caller's bad query does
//! not, and while it is open queries fail at once without being sent.
//!
//! Pass `&guarded` where you passed `&pool` ([`GuardedPool`] is an `Executor`), for
//! PostgreSQL, MySQL / MariaDB and SQLite alike:
//!
//! ```
//! use breaker_core::CircuitBreaker;
//! use breaker_sqlx::GuardedPool;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let pool = breaker_sqlx::pool_options::<sqlx::Sqlite>()
//!     .connect("sqlite::memory:")
//!     .await?;
//! let db = GuardedPool::new(pool, CircuitBreaker::builder().name("app-db").build()?);
//! sqlx::query("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
//!     .execute(&db)
//!     .await?;
//! sqlx::query("INSERT INTO notes (body) VALUES ($1)")
//!     .bind("hello")
//!     .execute(&db)
//!     .await?;
//! let body: String = sqlx::query_scalar("SELECT body FROM notes").fetch_one(&db).await?;
//! assert_eq!(body, "hello");
//!
//! // A caller's mistake proves the database answered: it does not count against it.
//! assert!(sqlx::query("SELEKT 1").execute(&db).await.is_err());
//! assert_eq!(db.breaker().snapshot().totals.failures, 0);
//!
//! // While the breaker is open, nothing is sent; the error says so, and when to retry.
//! db.breaker().trip();
//! let err = sqlx::query("SELECT 1").execute(&db).await.unwrap_err();
//! let rejected = breaker_sqlx::rejection(&err).expect("refused by the breaker");
//! assert!(rejected.retry_after().is_some());
//! # Ok(())
//! # }
//! ```
//!
//! # Timeouts
//!
//! A database that does not answer shows up only when a call gives up, so a guarded pool
//! gives up on time:
//!
//! - **Taking a connection**: sqlx waits up to its pool's acquire timeout (30 s by default)
//!   for one. Build pools with [`pool_options`] (2 s, [`DEFAULT_ACQUIRE_TIMEOUT`]) or your
//!   own short timeout, so a dead server trips the breaker after seconds, not minutes.
//! - **A query on a live connection** (a frozen server, a partition that drops packets):
//!   every query runs under the pool's statement timeout, 5 s by default
//!   ([`DEFAULT_STATEMENT_TIMEOUT`], set with [`GuardedPool::statement_timeout`]); one that
//!   runs past it is abandoned, fails with an error [`timed_out`] recognises, and counts as
//!   a failure. A server-side timeout (PostgreSQL's `statement_timeout`, MySQL's
//!   `max_execution_time`, MariaDB's `max_statement_time`) is classified as a failure too.
//!
//! # Transactions
//!
//! [`GuardedPool::begin`] returns a [`GuardedTransaction`]: `&mut *tx` runs statements with
//! each result classified, and the transaction counts once, as a failure if an outage hit
//! any of its statements, however it ends (commit, rollback, or a `?` that drops it).
//!
//! # Which errors are outages
//!
//! The table is in [`classify_error`]. With this crate's `mysql` feature (which turns on
//! sqlx's), MySQL and MariaDB errors are told apart by their error number, not only by
//! their SQLSTATE (MySQL reports most server errors as the catch-all `HY000`).
//!
//! [sqlx]: https://docs.rs/sqlx
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

use std::fmt;
use std::time::Duration;

use breaker_core::Rejected;

mod classify;
mod pool;
mod stream;
mod transaction;

pub use classify::classify_error;
pub use pool::{
    Classifier, DEFAULT_ACQUIRE_TIMEOUT, DEFAULT_STATEMENT_TIMEOUT, GuardedPool, pool_options,
};
pub use transaction::{GuardedTransaction, InTransaction};

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

/// The breaker's refusal, if `error` is a query that a [`GuardedPool`] refused to send
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
