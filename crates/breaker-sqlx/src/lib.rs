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
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

mod call;
mod classify;
mod error;
mod pool;
mod stream;
mod transaction;

pub use classify::{Classifier, classify_error};
pub use error::{RejectedQuery, StatementTimedOut, rejection, timed_out};
pub use pool::{DEFAULT_ACQUIRE_TIMEOUT, DEFAULT_STATEMENT_TIMEOUT, GuardedPool, pool_options};
pub use transaction::{GuardedTransaction, InTransaction};

/// This crate's README, compiled and run as doctests so it stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
