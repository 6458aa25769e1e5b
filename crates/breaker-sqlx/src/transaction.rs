//! [`GuardedTransaction`]: a transaction that is one call for the breaker, its statements
//! classified one by one.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::time::Duration;

use breaker_core::{BreakerRef, Outcome};
use futures_core::future::BoxFuture;
use futures_core::stream::BoxStream;
use sqlx::{Database, Either, Execute, Executor, SqlStr, Transaction};

use crate::call::{Call, within};
use crate::stream::{Ending, GuardedStream};

/// A transaction of a [`GuardedPool`](crate::GuardedPool), from
/// [`begin`](crate::GuardedPool::begin). Use it as sqlx's [`Transaction`]: `&mut *tx` is an
/// executor (each statement classified, under the pool's statement timeout), and finish
/// with [`commit`](Self::commit) or [`rollback`](Self::rollback).
///
/// For the breaker the transaction is one call. It is a **failure** if an outage hit any of
/// its statements, whatever happens next: committed, rolled back, or dropped by a `?` (sqlx
/// then rolls it back). Otherwise it is a success once committed or rolled back (both
/// prove the database answered), and neutral when dropped unfinished, however long it was
/// open: each statement is held to the pool's statement timeout on its own.
///
/// ```
/// use breaker_core::CircuitBreaker;
/// use breaker_sqlx::GuardedPool;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let pool = breaker_sqlx::pool_options::<sqlx::Sqlite>().connect("sqlite::memory:").await?;
/// let db = GuardedPool::new(pool, CircuitBreaker::builder().build()?);
/// sqlx::query("CREATE TABLE accounts (id INTEGER PRIMARY KEY, balance INTEGER)")
///     .execute(&db)
///     .await?;
///
/// let mut tx = db.begin().await?;
/// sqlx::query("INSERT INTO accounts (id, balance) VALUES (1, 100)")
///     .execute(&mut *tx)
///     .await?;
/// tx.commit().await?;
/// assert_eq!(db.breaker().snapshot().totals.successes, 2); // the CREATE, the transaction
/// # Ok(())
/// # }
/// ```
pub struct GuardedTransaction<DB: Database, B: BreakerRef> {
    statements: InTransaction<DB, B>,
}

/// The statements of a [`GuardedTransaction`]: `&mut *tx` is an [`Executor`] that runs them
/// on the transaction's connection, classifies each result, and holds each to the pool's
/// statement timeout.
pub struct InTransaction<DB: Database, B: BreakerRef> {
    tx: Transaction<'static, DB>,
    call: TxCall<B>,
    statement_timeout: Option<Duration>,
}

/// The transaction's one call, and whether an outage hit it.
struct TxCall<B: BreakerRef> {
    call: Call<B>,
    outage: bool,
}

impl<B: BreakerRef> TxCall<B> {
    fn saw(&mut self, result: Result<(), &sqlx::Error>) {
        if let Err(e) = result
            && self.call.classify(e) == Outcome::Failure
        {
            self.outage = true;
        }
    }

    /// A statement's stream ended (or was dropped: nothing to learn then).
    fn ended(&mut self, ending: Ending<'_>) {
        if let Ending::Error(e) = ending {
            self.saw(Err(e));
        }
    }

    /// Records the end of the transaction (its commit or rollback).
    fn finish(&mut self, result: Result<(), &sqlx::Error>) {
        self.saw(result);
        let answered = match result {
            Ok(()) => true,
            Err(e) => self.call.classify(e) != Outcome::Failure,
        };
        let outcome = if self.outage || !answered {
            Outcome::Failure
        } else {
            Outcome::Success
        };
        self.call.record_outcome(outcome);
    }
}

impl<B: BreakerRef> Drop for TxCall<B> {
    /// Dropped unfinished (`?` returned early): a failure if an outage hit it, else
    /// neutral, however long the caller kept it open (each statement was held to the
    /// statement timeout on its own).
    fn drop(&mut self) {
        if self.outage {
            self.call.record_outcome(Outcome::Failure);
        } else {
            self.call.cancel();
        }
    }
}

impl<DB: Database, B: BreakerRef> GuardedTransaction<DB, B> {
    pub(crate) fn new(
        tx: Transaction<'static, DB>,
        call: Call<B>,
        statement_timeout: Option<Duration>,
    ) -> Self {
        GuardedTransaction {
            statements: InTransaction {
                tx,
                call: TxCall {
                    call,
                    outage: false,
                },
                statement_timeout,
            },
        }
    }

    /// Commits; the breaker records the transaction (see the type's docs).
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        let InTransaction {
            tx,
            mut call,
            statement_timeout,
        } = self.statements;
        let result = within(statement_timeout, tx.commit()).await;
        call.finish(result.as_ref().map(|_| ()));
        result
    }

    /// Rolls back; the breaker records the transaction (see the type's docs: a rollback
    /// after an outage is still a failure).
    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        let InTransaction {
            tx,
            mut call,
            statement_timeout,
        } = self.statements;
        let result = within(statement_timeout, tx.rollback()).await;
        call.finish(result.as_ref().map(|_| ()));
        result
    }

    /// Whether an outage hit one of the statements so far (the transaction will count as
    /// a failure).
    pub fn saw_outage(&self) -> bool {
        self.statements.call.outage
    }
}

impl<DB: Database, B: BreakerRef> InTransaction<DB, B> {
    /// The sqlx transaction itself, bypassing the classification (for APIs that need a
    /// `&mut Transaction`). What runs through it is neither classified nor timed.
    pub fn unguarded(&mut self) -> &mut Transaction<'static, DB> {
        &mut self.tx
    }
}

impl<DB: Database, B: BreakerRef> Deref for GuardedTransaction<DB, B> {
    type Target = InTransaction<DB, B>;

    fn deref(&self) -> &Self::Target {
        &self.statements
    }
}

impl<DB: Database, B: BreakerRef> DerefMut for GuardedTransaction<DB, B> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.statements
    }
}

impl<DB: Database, B: BreakerRef> fmt::Debug for GuardedTransaction<DB, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuardedTransaction")
            .field("saw_outage", &self.statements.call.outage)
            .finish_non_exhaustive()
    }
}

impl<DB: Database, B: BreakerRef> fmt::Debug for InTransaction<DB, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InTransaction")
            .field("saw_outage", &self.call.outage)
            .field("statement_timeout", &self.statement_timeout)
            .finish_non_exhaustive()
    }
}

impl<'c, DB, B> Executor<'c> for &'c mut InTransaction<DB, B>
where
    DB: Database,
    B: BreakerRef + Send + Sync + 'static,
    for<'x> &'x mut DB::Connection: Executor<'x, Database = DB>,
{
    type Database = DB;

    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxStream<'e, Result<Either<DB::QueryResult, DB::Row>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, DB>,
    {
        let InTransaction {
            tx,
            call,
            statement_timeout,
        } = self;
        let connection: &'e mut DB::Connection = tx;
        Box::pin(GuardedStream::new(
            connection.fetch_many(query),
            move |ending| call.ended(ending),
            *statement_timeout,
        ))
    }

    fn fetch_optional<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxFuture<'e, Result<Option<DB::Row>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, DB>,
    {
        let InTransaction {
            tx,
            call,
            statement_timeout,
        } = self;
        let connection: &'e mut DB::Connection = tx;
        Box::pin(async move {
            let result = within(*statement_timeout, connection.fetch_optional(query)).await;
            call.saw(result.as_ref().map(|_| ()));
            result
        })
    }

    fn prepare_with<'e>(
        self,
        sql: SqlStr,
        parameters: &'e [DB::TypeInfo],
    ) -> BoxFuture<'e, Result<DB::Statement, sqlx::Error>>
    where
        'c: 'e,
    {
        let InTransaction {
            tx,
            call,
            statement_timeout,
        } = self;
        let connection: &'e mut DB::Connection = tx;
        Box::pin(async move {
            let result = within(*statement_timeout, connection.prepare_with(sql, parameters)).await;
            call.saw(result.as_ref().map(|_| ()));
            result
        })
    }

    #[cfg(feature = "macros")]
    fn describe<'e>(self, sql: SqlStr) -> BoxFuture<'e, Result<sqlx::Describe<DB>, sqlx::Error>>
    where
        'c: 'e,
    {
        let connection: &'e mut DB::Connection = &mut self.tx;
        connection.describe(sql)
    }
}
