//! The outages a guarded pool used to let through: a server that freezes with queries in
//! flight (a PostgreSQL of the test's own, stopped with `SIGSTOP`; MariaDB behind a proxy
//! that stops moving bytes), outages inside transactions (dropped by `?`, rolled back), the
//! server errors that mean "not now" (statement timeouts, a read-only server), and what a
//! refusal looks like to sqlx's callers. Breaker time on the manual clock where breaker
//! time matters; every wait bounded by the statement timeout under test (300 ms) or an
//! outer bound of a few seconds that only a failing test reaches.

use std::sync::Arc;
use std::time::Duration;

use breaker_core::{CircuitBreaker, ManualClock, State};
use breaker_sqlx::{GuardedPool, rejection, timed_out};
use breaker_test_support::{FaultProxy, PrivatePostgres};
use sqlx::AssertSqlSafe;
use sqlx::pool::PoolOptions;

const STATEMENT_TIMEOUT: Duration = Duration::from_millis(300);
/// How long a test waits for what should take a statement timeout: reached only by a
/// guarded pool that never gives up.
const BOUND: Duration = Duration::from_secs(5);

fn breaker(threshold: u32) -> Arc<CircuitBreaker<ManualClock>> {
    Arc::new(
        CircuitBreaker::builder_with_clock(ManualClock::new())
            .consecutive_failures(threshold)
            .open_duration(Duration::from_secs(30))
            .build()
            .unwrap(),
    )
}

fn mariadb_url() -> String {
    std::env::var("BREAKER_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".to_string())
}

fn postgres_url() -> String {
    std::env::var("BREAKER_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

fn unreachable(server: &str, variable: &str, url: &str, e: impl std::fmt::Display) -> ! {
    panic!(
        "{server} at {url} is not reachable ({e}): start it, or set {variable} to the URL of \
         a {server} server with a database `test` the tests may create tables in"
    )
}

/// A proxy in front of the server of `url`, and the same URL through it.
async fn via_proxy(url: &str, server: &str, variable: &str) -> (FaultProxy, String) {
    let (scheme, rest) = url.split_once("://").expect("a URL with a scheme");
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (user, host_port) = match authority.rsplit_once('@') {
        Some((user, host_port)) => (format!("{user}@"), host_port),
        None => (String::new(), authority),
    };
    let target = std::net::ToSocketAddrs::to_socket_addrs(host_port)
        .ok()
        .and_then(|mut a| a.next())
        .unwrap_or_else(|| unreachable(server, variable, url, "no address in the URL"));
    let proxy = FaultProxy::start(target).await;
    let via = format!("{scheme}://{user}{}/{path}", proxy.addr());
    (proxy, via)
}

/// Runs `query` with an outer bound; `Err` if the bound expired (the pool never gave up).
async fn bounded<T>(
    query: impl std::future::Future<Output = Result<T, sqlx::Error>>,
) -> Result<Result<T, sqlx::Error>, tokio::time::error::Elapsed> {
    tokio::time::timeout(BOUND, query).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_postgresql_trips_the_breaker_at_the_statement_timeout() {
    let server = tokio::task::spawn_blocking(PrivatePostgres::start)
        .await
        .unwrap();
    let pool = PoolOptions::<sqlx::Postgres>::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(5))
        .connect(&server.url())
        .await
        .unwrap();
    let db = GuardedPool::new(pool, breaker(3))
        .statement_timeout(STATEMENT_TIMEOUT)
        .unwrap();
    sqlx::query("SELECT 1").execute(&db).await.unwrap();

    server.freeze(); // SIGSTOP: the connections stay open, nothing answers
    for call in 1..=3 {
        let err = bounded(sqlx::query("SELECT 1").execute(&db))
            .await
            .unwrap_or_else(|_| panic!("call {call} still waiting on a frozen server"))
            .unwrap_err();
        let expired = timed_out(&err).unwrap_or_else(|| panic!("a statement timeout: {err}"));
        assert_eq!(expired.after, STATEMENT_TIMEOUT);
    }
    assert_eq!(db.breaker().state(), State::Open);
    let err = sqlx::query("SELECT 1").execute(&db).await.unwrap_err();
    assert!(rejection(&err).is_some(), "refused at once: {err}");
    server.thaw();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_mariadb_trips_the_breaker_at_the_statement_timeout() {
    let url = mariadb_url();
    let (proxy, via) = via_proxy(&url, "MariaDB", "BREAKER_TEST_MYSQL_URL").await;
    let pool = PoolOptions::<sqlx::MySql>::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(5))
        .connect(&via)
        .await
        .unwrap_or_else(|e| unreachable("MariaDB", "BREAKER_TEST_MYSQL_URL", &url, e));
    let db = GuardedPool::new(pool, breaker(3))
        .statement_timeout(STATEMENT_TIMEOUT)
        .unwrap();
    sqlx::query("SELECT 1").execute(&db).await.unwrap();
    proxy.freeze(true);
    for call in 1..=3 {
        let err = bounded(sqlx::query("SELECT 1").fetch_one(&db))
            .await
            .unwrap_or_else(|_| panic!("call {call} still waiting on a partitioned server"))
            .unwrap_err();
        assert!(timed_out(&err).is_some(), "a statement timeout: {err}");
    }
    assert_eq!(db.breaker().state(), State::Open);
    proxy.freeze(false);
    proxy.cut();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_inside_a_transaction_counts_however_it_ends() {
    let url = postgres_url();
    let (proxy, via) = via_proxy(&url, "PostgreSQL", "BREAKER_TEST_POSTGRES_URL").await;
    let pool = PoolOptions::<sqlx::Postgres>::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(2))
        .connect(&via)
        .await
        .unwrap_or_else(|e| unreachable("PostgreSQL", "BREAKER_TEST_POSTGRES_URL", &url, e));
    let db = GuardedPool::new(pool, breaker(10));

    // The idiomatic transaction: an outage in a statement, and `?` drops the transaction.
    async fn transfer(
        db: &GuardedPool<sqlx::Postgres, Arc<CircuitBreaker<ManualClock>>>,
        proxy: &FaultProxy,
    ) -> Result<(), sqlx::Error> {
        let mut tx = db.begin().await?;
        sqlx::query("SELECT 1").execute(&mut *tx).await?;
        proxy.cut(); // the connection dies mid-transaction
        sqlx::query("SELECT 2").execute(&mut *tx).await?;
        tx.commit().await
    }
    assert!(transfer(&db, &proxy).await.is_err());
    let s = db.breaker().snapshot();
    assert_eq!((s.totals.failures, s.totals.successes), (1, 0), "{s:?}");

    // Rolled back after an outage: still a failure.
    let mut tx = db.begin().await.unwrap();
    sqlx::query("SELECT 1").execute(&mut *tx).await.unwrap();
    proxy.cut();
    assert!(sqlx::query("SELECT 2").execute(&mut *tx).await.is_err());
    assert!(tx.saw_outage());
    let _ = tx.rollback().await;
    let s = db.breaker().snapshot();
    assert_eq!((s.totals.failures, s.totals.successes), (2, 0), "{s:?}");

    // The caller's mistake inside a transaction, then a rollback: the database answered.
    let mut tx = db.begin().await.unwrap();
    assert!(sqlx::query("SELEKT 1").execute(&mut *tx).await.is_err());
    assert!(!tx.saw_outage());
    tx.rollback().await.unwrap();
    // And a clean commit.
    let mut tx = db.begin().await.unwrap();
    sqlx::query("SELECT 1").execute(&mut *tx).await.unwrap();
    tx.commit().await.unwrap();
    let s = db.breaker().snapshot();
    assert_eq!((s.totals.failures, s.totals.successes), (2, 2), "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_database_locked_by_another_connection_fails_the_transaction() {
    let dir = std::env::temp_dir().join(format!("breaker-sqlite-lock-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("locked.db");
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&file)
        .create_if_missing(true)
        .busy_timeout(Duration::from_millis(100));
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(2)
        .connect_with(options.clone())
        .await
        .unwrap();
    sqlx::query("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY)")
        .execute(&pool)
        .await
        .unwrap();
    let db = GuardedPool::new(pool, breaker(10));
    // Another process's connection holds the write lock.
    let mut other = sqlx::SqliteConnection::connect_with(&options)
        .await
        .unwrap();
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut other)
        .await
        .unwrap();

    let mut tx = db.begin().await.unwrap();
    let err = sqlx::query("INSERT INTO t (id) VALUES (1)")
        .execute(&mut *tx)
        .await
        .unwrap_err();
    assert!(tx.saw_outage(), "busy / locked is an outage: {err}");
    let _ = tx.rollback().await;
    assert_eq!(db.breaker().snapshot().totals.failures, 1);
    sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();
    drop(other);
    db.pool().close().await;
    let _ = std::fs::remove_dir_all(&dir);
}

use sqlx::Connection;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_that_mean_not_now_are_failures() {
    // PostgreSQL: a write on a read-only server (a standby after a failover) is 25006.
    let url = postgres_url();
    let options: sqlx::postgres::PgConnectOptions = url.parse().unwrap();
    let pool = PoolOptions::<sqlx::Postgres>::new()
        .max_connections(1)
        .connect_with(options.options([("default_transaction_read_only", "on")]))
        .await
        .unwrap_or_else(|e| unreachable("PostgreSQL", "BREAKER_TEST_POSTGRES_URL", &url, e));
    let db = GuardedPool::new(pool, breaker(1));
    let table = format!("breaker_read_only_{}", std::process::id());
    let err = sqlx::query(AssertSqlSafe(format!("CREATE TABLE {table} (id INTEGER)")))
        .execute(&db)
        .await
        .unwrap_err();
    let code = err
        .as_database_error()
        .and_then(|e| e.code())
        .map(|c| c.to_string());
    assert_eq!(code.as_deref(), Some("25006"), "{err}");
    assert_eq!(
        db.breaker().state(),
        State::Open,
        "a read-only server is an outage"
    );

    // MariaDB: a statement stopped by max_statement_time (1969, SQLSTATE 70100).
    let url = mariadb_url();
    let pool = PoolOptions::<sqlx::MySql>::new()
        .max_connections(1)
        .connect(&url)
        .await
        .unwrap_or_else(|e| unreachable("MariaDB", "BREAKER_TEST_MYSQL_URL", &url, e));
    let db = GuardedPool::new(pool, breaker(1));
    let err = sqlx::query("SET STATEMENT max_statement_time=0.05 FOR SELECT SLEEP(2)")
        .execute(&db)
        .await
        .unwrap_err();
    assert_eq!(db.breaker().state(), State::Open, "{err}");

    // And a caller's mistake on the same server is still the caller's.
    let pool = PoolOptions::<sqlx::MySql>::new()
        .max_connections(1)
        .connect(&url)
        .await
        .unwrap();
    let db = GuardedPool::new(pool, breaker(1));
    assert!(sqlx::query("SELEKT 1").execute(&db).await.is_err());
    assert_eq!(db.breaker().state(), State::Closed);
}

#[tokio::test]
async fn a_zero_statement_timeout_is_refused_naming_the_field() {
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .connect("sqlite::memory:")
        .await
        .unwrap();
    let err = GuardedPool::new(pool, breaker(1))
        .statement_timeout(Duration::ZERO)
        .unwrap_err();
    assert_eq!(err.field(), "statement_timeout");
}

#[tokio::test]
async fn a_refusal_is_recognisable_and_not_an_io_error() {
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .connect("sqlite::memory:")
        .await
        .unwrap();
    let db = GuardedPool::new(pool, breaker(1));
    db.breaker().trip();
    let err = sqlx::query("SELECT 1").execute(&db).await.unwrap_err();
    assert!(
        !matches!(err, sqlx::Error::Io(_)),
        "retry loops retry I/O errors: {err}"
    );
    let refused = rejection(&err).expect("recognised without matching its text");
    assert!(refused.retry_after().is_some());
    assert!(timed_out(&err).is_none());
}

/// The statement timeout times the database, not the caller: a caller that takes its time
/// between rows, or keeps a transaction open longer than the timeout, is not an outage.
#[tokio::test]
async fn a_slow_caller_is_not_a_slow_database() {
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect("sqlite::memory:")
        .await
        .unwrap();
    let db = GuardedPool::new(pool, breaker(1))
        .statement_timeout(Duration::from_millis(300))
        .unwrap();
    sqlx::query("CREATE TABLE t (id INTEGER PRIMARY KEY)")
        .execute(&db)
        .await
        .unwrap();
    for id in 0..5 {
        sqlx::query("INSERT INTO t (id) VALUES ($1)")
            .bind(id)
            .execute(&db)
            .await
            .unwrap();
    }
    // Five rows, 150 ms of the caller's own work after each: 750 ms in all.
    use futures_util::TryStreamExt;
    let mut rows = sqlx::query("SELECT id FROM t").fetch(&db);
    let mut read = 0;
    while let Some(_row) = rows.try_next().await.unwrap() {
        read += 1;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    drop(rows);
    assert_eq!(read, 5);
    // A caller that stops reading once rows came has nothing against the database.
    let mut rows = sqlx::query("SELECT id FROM t").fetch(&db);
    rows.try_next().await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    drop(rows);
    // A transaction kept open for longer than the statement timeout, then given up on with
    // `?` after the caller's own mistake.
    async fn slow_work(
        db: &GuardedPool<sqlx::Sqlite, Arc<CircuitBreaker<ManualClock>>>,
    ) -> Result<(), sqlx::Error> {
        let mut tx = db.begin().await?;
        sqlx::query("INSERT INTO t (id) VALUES (100)")
            .execute(&mut *tx)
            .await?;
        tokio::time::sleep(Duration::from_millis(400)).await;
        sqlx::query("INSERT INTO t (id) VALUES (100)") // a duplicate key: the caller's
            .execute(&mut *tx)
            .await?;
        tx.commit().await
    }
    assert!(slow_work(&db).await.is_err());
    let s = db.breaker().snapshot();
    assert_eq!(s.state, State::Closed, "{s:?}");
    assert_eq!(s.totals.failures, 0, "{s:?}");
    assert_eq!(
        s.totals.cancelled, 2,
        "the stream read halfway and the transaction"
    );
}
