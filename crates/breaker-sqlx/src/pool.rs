//! [`GuardedPool`]: a sqlx pool behind a circuit breaker.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use breaker_core::{
    CircuitBreaker, Clock, MonotonicClock, NoopObserver, Observer, Outcome, Permit,
};
use futures_core::future::BoxFuture;
use futures_core::stream::BoxStream;
use sqlx::{Database, Either, Execute, Executor, Pool, SqlStr, Transaction};

use crate::classify::classify_error;
use crate::stream::GuardedStream;

/// How results are classified: see [`classify_error`].
pub type Classifier = Arc<dyn Fn(&sqlx::Error) -> Outcome + Send + Sync>;

/// The acquire timeout [`pool_options`] sets: a database that does not answer shows up as
/// a failed call after this long (sqlx's default is 30 s, so the breaker would learn of a
/// dead server only after half a minute per call).
pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);

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
/// successes. A query whose future or stream is dropped before it finished counts as
/// nothing, unless it had already run past the breaker's slow-call duration.
///
/// [`begin`](Self::begin) guards transactions (admission, and the outcome of the commit or
/// rollback, recorded once), [`acquire`](Self::acquire) guards taking a connection for a
/// while, and [`pool`](Self::pool) bypasses the breaker (migrations, health probes).
///
/// ```no_run
/// use breaker_core::CircuitBreaker;
/// use breaker_sqlx::{GuardedPool, pool_options};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let pool = pool_options::<sqlx::Postgres>()
///     .connect("postgres://127.0.0.1/test")
///     .await?;
/// let db = GuardedPool::new(pool, CircuitBreaker::builder().name("orders-db").build()?);
/// let n: i64 = sqlx::query_scalar("SELECT count(*) FROM orders")
///     .fetch_one(&db)
///     .await?;
/// # Ok(())
/// # }
/// ```
pub struct GuardedPool<DB: Database, C = MonotonicClock, O = NoopObserver> {
    pool: Pool<DB>,
    breaker: Arc<CircuitBreaker<C, O>>,
    classify: Classifier,
}

impl<DB: Database, C, O> Clone for GuardedPool<DB, C, O> {
    fn clone(&self) -> Self {
        GuardedPool {
            pool: self.pool.clone(),
            breaker: Arc::clone(&self.breaker),
            classify: Arc::clone(&self.classify),
        }
    }
}

impl<DB: Database, C, O> fmt::Debug for GuardedPool<DB, C, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuardedPool")
            .field("pool", &self.pool)
            .finish_non_exhaustive()
    }
}

impl<DB: Database, C: Clock, O: Observer> GuardedPool<DB, C, O> {
    /// Guards `pool` with `breaker` (a breaker, or an `Arc` of one shared with a registry).
    pub fn new(pool: Pool<DB>, breaker: impl Into<Arc<CircuitBreaker<C, O>>>) -> Self {
        GuardedPool {
            pool,
            breaker: breaker.into(),
            classify: Arc::new(classify_error),
        }
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
    pub fn breaker(&self) -> &Arc<CircuitBreaker<C, O>> {
        &self.breaker
    }

    fn call(&self) -> Result<Call<C, O>, sqlx::Error> {
        let permit = Permit::acquire(&self.breaker).map_err(crate::rejected_error)?;
        Ok(Call {
            started: self.breaker.call_started(),
            permit: Some(permit),
            classify: Arc::clone(&self.classify),
        })
    }

    /// Takes a connection for a while, if the breaker admits it. The breaker counts the
    /// taking (a pool timeout or a connection error is a failure); queries on the connection
    /// are not classified one by one: run them through the `GuardedPool` when each should
    /// count.
    pub async fn acquire(&self) -> Result<sqlx::pool::PoolConnection<DB>, sqlx::Error> {
        let call = self.call()?;
        call.finish(self.pool.acquire().await)
    }

    /// Begins a transaction, if the breaker admits it. The transaction is one call for the
    /// breaker: its outcome is the outcome of [`GuardedTransaction::commit`] or
    /// [`GuardedTransaction::rollback`] (or of `begin` itself, if that fails). Dropped
    /// without either, sqlx rolls it back and the breaker counts nothing.
    pub async fn begin(&self) -> Result<GuardedTransaction<DB, C, O>, sqlx::Error> {
        let mut call = self.call()?;
        match self.pool.begin().await {
            Ok(tx) => Ok(GuardedTransaction { tx, call }),
            Err(e) => {
                call.record(&Err::<(), _>(&e));
                Err(e)
            }
        }
    }
}

/// A transaction of a [`GuardedPool`]: use it like sqlx's [`Transaction`] (`&mut *tx` is an
/// executor), and finish it with [`commit`](Self::commit) or [`rollback`](Self::rollback).
pub struct GuardedTransaction<DB: Database, C: Clock, O: Observer> {
    tx: Transaction<'static, DB>,
    call: Call<C, O>,
}

impl<DB: Database, C: Clock, O: Observer> fmt::Debug for GuardedTransaction<DB, C, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuardedTransaction").finish_non_exhaustive()
    }
}

impl<DB: Database, C: Clock, O: Observer> GuardedTransaction<DB, C, O> {
    /// Commits; the breaker records the outcome.
    pub async fn commit(mut self) -> Result<(), sqlx::Error> {
        let result = self.tx.commit().await;
        self.call.record(&result.as_ref().map(|_| ()));
        result
    }

    /// Rolls back; the breaker records the outcome (a rollback that reaches the database is a
    /// success for it).
    pub async fn rollback(mut self) -> Result<(), sqlx::Error> {
        let result = self.tx.rollback().await;
        self.call.record(&result.as_ref().map(|_| ()));
        result
    }
}

impl<DB: Database, C: Clock, O: Observer> std::ops::Deref for GuardedTransaction<DB, C, O> {
    type Target = Transaction<'static, DB>;

    fn deref(&self) -> &Self::Target {
        &self.tx
    }
}

impl<DB: Database, C: Clock, O: Observer> std::ops::DerefMut for GuardedTransaction<DB, C, O> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.tx
    }
}

/// One admitted call: its permit, when it started, how to classify its result.
pub(crate) struct Call<C: Clock, O: Observer> {
    permit: Option<Permit<Arc<CircuitBreaker<C, O>>>>,
    started: u64,
    classify: Classifier,
}

impl<C: Clock, O: Observer> Call<C, O> {
    /// Records the result (once; later calls do nothing).
    pub(crate) fn record<T>(&mut self, result: &Result<T, &sqlx::Error>) {
        if let Some(permit) = self.permit.take() {
            let outcome = match result {
                Ok(_) => Outcome::Success,
                Err(e) => (self.classify)(e),
            };
            let elapsed = permit.breaker().elapsed_since(self.started);
            permit.record(outcome, elapsed);
        }
    }

    fn finish<T>(mut self, result: Result<T, sqlx::Error>) -> Result<T, sqlx::Error> {
        self.record(&result.as_ref().map(|_| ()));
        result
    }
}

impl<C: Clock, O: Observer> Drop for Call<C, O> {
    /// Dropped unfinished (a cancelled query): neutral, unless it was already slow.
    fn drop(&mut self) {
        if let Some(permit) = self.permit.take() {
            let elapsed = permit.breaker().elapsed_since(self.started);
            permit.abandon(elapsed);
        }
    }
}

impl<'p, DB, C, O> Executor<'p> for &'_ GuardedPool<DB, C, O>
where
    DB: Database,
    C: Clock + Send + Sync + 'static,
    O: Observer + Send + Sync + 'static,
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
        match self.call() {
            // Nothing is sent until the stream is polled; the permit was taken now.
            Ok(call) => Box::pin(GuardedStream::new(self.pool.fetch_many(query), call)),
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
        let call = self.call();
        Box::pin(async move {
            let call = call?;
            call.finish(pool.fetch_optional(query).await)
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
        let call = self.call();
        Box::pin(async move {
            let call = call?;
            call.finish(pool.prepare_with(sql, parameters).await)
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
