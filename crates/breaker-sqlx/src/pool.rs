//! [`GuardedPool`]: a sqlx pool behind a circuit breaker.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use breaker_core::{
    BreakerRef, CircuitBreaker, ConfigError, ConfigValue, IntoBreakerRef, Outcome, Permit,
};
use futures_core::future::BoxFuture;
use futures_core::stream::BoxStream;
use sqlx::{Database, Either, Execute, Executor, Pool, SqlStr};

use crate::call::{Call, within};
use crate::classify::{Classifier, classify_error};
use crate::error::rejected_error;
use crate::stream::{Ending, GuardedStream};
use crate::transaction::GuardedTransaction;

/// The acquire timeout [`pool_options`] sets: a database that does not answer shows up as
/// a failed call after this long (sqlx's default is 30 s, so the breaker would learn of a
/// dead server only after half a minute per call).
pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);

/// The statement timeout of a [`GuardedPool`] unless set otherwise
/// ([`GuardedPool::statement_timeout`]): 5 s.
pub const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(5);

/// sqlx pool options with an acquire timeout suited to a guarded pool
/// ([`DEFAULT_ACQUIRE_TIMEOUT`]); everything else as sqlx's defaults.
pub fn pool_options<DB: Database>() -> sqlx::pool::PoolOptions<DB> {
    sqlx::pool::PoolOptions::new().acquire_timeout(DEFAULT_ACQUIRE_TIMEOUT)
}

/// A sqlx [`Pool`] behind a circuit breaker. Pass `&guarded` wherever you passed `&pool`:
/// `&GuardedPool` is an [`Executor`], so `query(..).execute(&guarded)`, `fetch_all`,
/// `fetch_one`, `fetch_optional`, `fetch` (streams) and `prepare` work unchanged.
///
/// Every query asks the breaker first. A refused query is never sent: it fails at once with
/// a [`sqlx::Error`] that [`rejection`](crate::rejection) recognises (and that says when to
/// retry). An admitted query's result is classified ([`classify_error`] by default):
/// connection and resource outages count against the database; constraint violations,
/// syntax errors, missing rows and the like prove the database answered and count as
/// successes.
///
/// # The statement timeout
///
/// A database that hangs (frozen, partitioned away, stuck on a lock held by a dead
/// client) answers nothing, so without a timeout a caller waits for as long as the outage
/// lasts and the breaker learns nothing. Every query therefore runs under a **statement
/// timeout**, [`DEFAULT_STATEMENT_TIMEOUT`] (5 s) unless you set another with
/// [`statement_timeout`](Self::statement_timeout), on the client side: the longest the
/// database may keep a query waiting, for its first answer and then between rows (your own
/// time between rows is not the database's). A query that waits past it is abandoned,
/// returns an error that [`timed_out`](crate::timed_out) recognises, and counts as a
/// failure; a write abandoned that way may or may not have been applied (the error says
/// so). Pick it above your slowest legitimate query. A query whose future you drop yourself
/// is neutral while young, a failure past the timeout (or the breaker's slow-call
/// duration); a stream dropped after rows came is neutral.
///
/// [`begin`](Self::begin) guards transactions (each statement classified, the whole
/// transaction one call for the breaker), [`acquire`](Self::acquire) guards taking a
/// connection for a while, and [`pool`](Self::pool) bypasses the breaker (migrations,
/// health probes).
///
/// The breaker can be given in any form ([`IntoBreakerRef`]): a breaker (it goes into an
/// `Arc`), an `Arc` shared with a registry, or a `&'static` one.
///
/// ```no_run
/// use breaker_core::CircuitBreaker;
/// use breaker_sqlx::{GuardedPool, pool_options};
/// use std::time::Duration;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let pool = pool_options::<sqlx::Postgres>()
///     .connect("postgres://127.0.0.1/test")
///     .await?;
/// let db = GuardedPool::new(pool, CircuitBreaker::builder().name("orders-db").build()?)
///     .statement_timeout(Duration::from_secs(2))?;
/// let n: i64 = sqlx::query_scalar("SELECT count(*) FROM orders")
///     .fetch_one(&db)
///     .await?;
/// # Ok(())
/// # }
/// ```
pub struct GuardedPool<DB: Database, B = Arc<CircuitBreaker>> {
    pool: Pool<DB>,
    breaker: B,
    classify: Classifier,
    statement_timeout: Option<Duration>,
}

impl<DB: Database, B: Clone> Clone for GuardedPool<DB, B> {
    fn clone(&self) -> Self {
        GuardedPool {
            pool: self.pool.clone(),
            breaker: self.breaker.clone(),
            classify: Arc::clone(&self.classify),
            statement_timeout: self.statement_timeout,
        }
    }
}

impl<DB: Database, B> fmt::Debug for GuardedPool<DB, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuardedPool")
            .field("pool", &self.pool)
            .field("statement_timeout", &self.statement_timeout)
            .finish_non_exhaustive()
    }
}

impl<DB: Database, B: BreakerRef> GuardedPool<DB, B> {
    /// Guards `pool` with `breaker` (a breaker, an `Arc` of one shared with a registry, a
    /// `&'static` one), with the [`DEFAULT_STATEMENT_TIMEOUT`].
    pub fn new(pool: Pool<DB>, breaker: impl IntoBreakerRef<Ref = B>) -> Self {
        GuardedPool {
            pool,
            breaker: breaker.into_breaker_ref(),
            classify: Arc::new(classify_error),
            statement_timeout: Some(DEFAULT_STATEMENT_TIMEOUT),
        }
    }

    /// Abandons a query, and counts a failure, if the database keeps it waiting longer than
    /// `timeout` (see the type's docs). Default: [`DEFAULT_STATEMENT_TIMEOUT`]. Allowed:
    /// more than zero.
    pub fn statement_timeout(mut self, timeout: Duration) -> Result<Self, ConfigError> {
        if timeout.is_zero() {
            return Err(ConfigError::new(
                "statement_timeout",
                ConfigValue::Duration(timeout),
                "a duration > 0",
            ));
        }
        self.statement_timeout = Some(timeout);
        Ok(self)
    }

    /// No statement timeout: a query waits as long as the database takes. Only for pools
    /// whose database has a timeout of its own (PostgreSQL's `statement_timeout`, MySQL's
    /// `max_execution_time`): a hung server then holds every caller for the whole outage.
    pub fn no_statement_timeout(mut self) -> Self {
        self.statement_timeout = None;
        self
    }

    /// Classifies results with `classify` instead of [`classify_error`] (for instance to
    /// also count a lock timeout of yours as a failure).
    pub fn classify(
        mut self,
        classify: impl Fn(&sqlx::Error) -> Outcome + Send + Sync + 'static,
    ) -> Self {
        self.classify = Arc::new(classify);
        self
    }

    /// The pool itself, bypassing the breaker: for migrations and health probes, which must
    /// work while it is open.
    pub fn pool(&self) -> &Pool<DB> {
        &self.pool
    }

    /// The breaker.
    pub fn breaker(&self) -> &B {
        &self.breaker
    }

    /// The statement timeout in force, if any.
    pub fn statement_timeout_in_force(&self) -> Option<Duration> {
        self.statement_timeout
    }

    /// An admitted call. `with_deadline`: the statement timeout is the call's deadline (a
    /// future dropped past it timed out); streams time their waits themselves, and a
    /// transaction is as long as its caller makes it.
    fn call(&self, with_deadline: bool) -> Result<Call<B>, sqlx::Error> {
        let mut permit = Permit::acquire(&self.breaker).map_err(rejected_error)?;
        if let Some(timeout) = self.statement_timeout.filter(|_| with_deadline) {
            permit.set_deadline(timeout);
        }
        Ok(Call::new(permit, Arc::clone(&self.classify)))
    }

    /// Takes a connection for a while, if the breaker admits it. The breaker counts the
    /// taking (a pool timeout or a connection error is a failure); queries on the connection
    /// are not classified one by one: run them through the `GuardedPool` (or a
    /// [`begin`](Self::begin) transaction) when each should count.
    pub async fn acquire(&self) -> Result<sqlx::pool::PoolConnection<DB>, sqlx::Error> {
        let call = self.call(false)?;
        call.finish(self.pool.acquire().await)
    }

    /// Begins a transaction, if the breaker admits it. Run its statements through
    /// `&mut *tx` (each is classified and runs under the statement timeout), then
    /// [`commit`](GuardedTransaction::commit) or [`rollback`](GuardedTransaction::rollback).
    /// The transaction is one call for the breaker: a failure if an outage hit any of its
    /// statements (whether it is then committed, rolled back or dropped), or if `begin`,
    /// the commit or the rollback fail with one; else a success once committed or rolled
    /// back.
    pub async fn begin(&self) -> Result<GuardedTransaction<DB, B>, sqlx::Error> {
        let mut call = self.call(false)?;
        match within(self.statement_timeout, self.pool.begin()).await {
            Ok(tx) => Ok(GuardedTransaction::new(tx, call, self.statement_timeout)),
            Err(e) => {
                call.record(&Err::<(), _>(&e));
                Err(e)
            }
        }
    }
}

impl<'p, DB, B> Executor<'p> for &'_ GuardedPool<DB, B>
where
    DB: Database,
    B: BreakerRef + Send + Sync + 'static,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    type Database = DB;

    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxStream<'e, Result<Either<DB::QueryResult, DB::Row>, sqlx::Error>>
    where
        E: 'q + Execute<'q, DB>,
    {
        match self.call(false) {
            // Nothing is sent until the stream is polled; the permit was taken now.
            Ok(call) => {
                let mut call = Some(call);
                Box::pin(GuardedStream::new(
                    self.pool.fetch_many(query),
                    move |ending| match (ending, call.take()) {
                        (Ending::Error(e), Some(mut call)) => call.record(&Err::<(), _>(e)),
                        (Ending::Finished, Some(mut call)) => {
                            call.record(&Ok::<(), &sqlx::Error>(()))
                        }
                        // Rows came: the database answered; the caller stopped reading.
                        (Ending::Dropped { answered: true }, Some(mut call)) => call.cancel(),
                        // Abandoned before any answer: the permit decides.
                        (Ending::Dropped { answered: false }, call) => drop(call),
                        (_, None) => {}
                    },
                    self.statement_timeout,
                ))
            }
            Err(rejected) => Box::pin(futures_util::stream::once(async move { Err(rejected) })),
        }
    }

    fn fetch_optional<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxFuture<'e, Result<Option<DB::Row>, sqlx::Error>>
    where
        E: 'q + Execute<'q, DB>,
    {
        let pool = self.pool.clone();
        let call = self.call(true);
        let timeout = self.statement_timeout;
        Box::pin(async move {
            let call = call?;
            call.finish(within(timeout, pool.fetch_optional(query)).await)
        })
    }

    fn prepare_with<'e>(
        self,
        sql: SqlStr,
        parameters: &'e [DB::TypeInfo],
    ) -> BoxFuture<'e, Result<DB::Statement, sqlx::Error>>
    where
        'p: 'e,
    {
        let pool = self.pool.clone();
        let call = self.call(true);
        let timeout = self.statement_timeout;
        Box::pin(async move {
            let call = call?;
            call.finish(within(timeout, pool.prepare_with(sql, parameters)).await)
        })
    }

    #[cfg(feature = "macros")]
    fn describe<'e>(self, sql: SqlStr) -> BoxFuture<'e, Result<sqlx::Describe<DB>, sqlx::Error>>
    where
        'p: 'e,
    {
        // Used by the query macros at build time: not a call the breaker guards.
        let pool = self.pool.clone();
        Box::pin(async move { pool.describe(sql).await })
    }
}
