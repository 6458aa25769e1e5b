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
//! A database that does not answer shows up only when a call gives up. sqlx waits up to its
//! pool's acquire timeout (30 s by default) for a connection: build pools with
//! [`pool_options`] (2 s, [`DEFAULT_ACQUIRE_TIMEOUT`]) or your own, shorter timeout, so a
//! dead server trips the breaker after a few seconds rather than minutes. Queries that hang
//! on a live connection need a statement timeout on the server side (PostgreSQL's
//! `statement_timeout` answers with SQLSTATE 57014, classified as a failure), or a timeout
//! around the call (a guarded call dropped after running past the breaker's slow-call
//! duration counts as a failure).
//!
//! [sqlx]: https://docs.rs/sqlx
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

use std::fmt;

use breaker_core::Rejected;

mod classify;
mod pool;
mod stream;

pub use classify::classify_error;
pub use pool::{
    Classifier, DEFAULT_ACQUIRE_TIMEOUT, GuardedPool, GuardedTransaction, pool_options,
};

/// The error inside the [`sqlx::Error`] of a query the breaker refused (it was not sent).
/// Find it with [`rejection`].
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

impl std::error::Error for RejectedQuery {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// A refused query, as the `sqlx::Error` callers of sqlx expect: an I/O error (the database
/// is treated as unreachable) that carries the [`RejectedQuery`].
pub(crate) fn rejected_error(rejected: Rejected) -> sqlx::Error {
    sqlx::Error::Io(std::io::Error::other(RejectedQuery(rejected)))
}

/// The breaker's refusal, if `error` is a query that a [`GuardedPool`] refused to send
/// (with the time until a retry is allowed, while open).
pub fn rejection(error: &sqlx::Error) -> Option<&Rejected> {
    match error {
        sqlx::Error::Io(io) => io
            .get_ref()
            .and_then(|e| e.downcast_ref::<RejectedQuery>())
            .map(|q| &q.0),
        _ => None,
    }
}
