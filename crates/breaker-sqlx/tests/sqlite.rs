//! SQLite (bundled, nothing to install): real errors classified, streams, transactions,
//! and refused queries that are never executed. Breaker time on the manual clock.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use breaker_core::{CircuitBreaker, ManualClock, State};
use breaker_sqlx::{GuardedPool, rejection};
use futures_util::TryStreamExt;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::{Connection, Sqlite, SqliteConnection};

type Db = GuardedPool<Sqlite, Arc<CircuitBreaker<ManualClock>>>;

fn breaker(clock: &ManualClock, threshold: u32) -> CircuitBreaker<ManualClock> {
    CircuitBreaker::builder_with_clock(clock.clone())
        .consecutive_failures(threshold)
        .open_duration(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn memory_db(clock: &ManualClock, threshold: u32) -> Db {
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect("sqlite::memory:")
        .await
        .unwrap();
    let db = GuardedPool::new(pool, breaker(clock, threshold));
    sqlx::query("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)")
        .execute(db.pool())
        .await
        .unwrap();
    db
}

#[tokio::test]
async fn callers_mistakes_never_trip_the_breaker() {
    let clock = ManualClock::new();
    let db = memory_db(&clock, 3).await;
    sqlx::query("INSERT INTO items (name) VALUES ('a')")
        .execute(&db)
        .await
        .unwrap();
    for _ in 0..20 {
        assert!(sqlx::query("SELEKT nonsense").execute(&db).await.is_err());
        assert!(
            sqlx::query("INSERT INTO items (name) VALUES ('a')")
                .execute(&db)
                .await
                .is_err()
        );
        assert!(matches!(
            sqlx::query("SELECT name FROM items WHERE id = 99")
                .fetch_one(&db)
                .await,
            Err(sqlx::Error::RowNotFound)
        ));
        assert!(
            sqlx::query_scalar::<_, i64>("SELECT name FROM items")
                .fetch_one(&db)
                .await
                .is_err(),
            "a decode error"
        );
    }
    let s = db.breaker().snapshot();
    assert_eq!(s.state, State::Closed);
    assert_eq!((s.totals.failures, s.totals.successes), (0, 81));
}

#[tokio::test]
async fn a_busy_database_counts_as_a_failure() {
    let dir = std::env::temp_dir().join(format!("breaker-sqlx-busy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("busy.db");
    let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
        .unwrap()
        .create_if_missing(true)
        .busy_timeout(Duration::ZERO);
    let clock = ManualClock::new();
    let pool = SqlitePoolOptions::new()
        .connect_with(options.clone())
        .await
        .unwrap();
    let db = GuardedPool::new(pool, breaker(&clock, 2));
    sqlx::query("CREATE TABLE IF NOT EXISTS t (x INTEGER)")
        .execute(db.pool())
        .await
        .unwrap();
    // Another connection holds the write lock: writes answer SQLITE_BUSY.
    let mut holder = SqliteConnection::connect_with(&options).await.unwrap();
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut holder)
        .await
        .unwrap();
    for _ in 0..2 {
        let err = sqlx::query("INSERT INTO t VALUES (1)")
            .execute(&db)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("locked"), "{err}");
    }
    assert_eq!(db.breaker().state(), State::Open, "busy is an outage");
    sqlx::query("ROLLBACK").execute(&mut holder).await.unwrap();
    clock.advance(Duration::from_secs(11));
    sqlx::query("INSERT INTO t VALUES (1)")
        .execute(&db)
        .await
        .unwrap();
    assert_eq!(db.breaker().state(), State::Closed);
    drop(db);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_database_that_cannot_be_opened_counts_as_a_failure() {
    let clock = ManualClock::new();
    let pool = SqlitePoolOptions::new()
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy("sqlite:///nonexistent-dir-for-breaker-tests/x.db")
        .unwrap();
    let db = GuardedPool::new(pool, breaker(&clock, 1));
    let err = sqlx::query("SELECT 1").execute(&db).await.unwrap_err();
    assert!(rejection(&err).is_none(), "{err}");
    assert_eq!(db.breaker().state(), State::Open, "{err}");
}

#[tokio::test]
async fn refused_queries_are_never_executed() {
    let clock = ManualClock::new();
    let db = memory_db(&clock, 1).await;
    db.breaker().trip();
    let err = sqlx::query("INSERT INTO items (name) VALUES ('refused')")
        .execute(&db)
        .await
        .unwrap_err();
    let rejected = rejection(&err).expect("a refusal");
    assert_eq!(rejected.retry_after(), Some(Duration::from_secs(10)));
    assert!(err.to_string().contains("was not sent"), "{err}");
    let mut rows = sqlx::query("SELECT 1").fetch(&db);
    let first = rows.try_next().await.unwrap_err();
    assert!(rejection(&first).is_some());
    drop(rows);
    assert!(db.begin().await.is_err());
    assert!(db.acquire().await.is_err());
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM items")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(n, 0, "the refused insert never ran");
}

#[tokio::test]
async fn streams_count_at_their_end_and_a_dropped_stream_counts_nothing() {
    let clock = ManualClock::new();
    let db = memory_db(&clock, 3).await;
    for name in ["a", "b", "c"] {
        sqlx::query("INSERT INTO items (name) VALUES (?)")
            .bind(name)
            .execute(db.pool())
            .await
            .unwrap();
    }
    let names: Vec<String> = sqlx::query_scalar("SELECT name FROM items ORDER BY id")
        .fetch(&db)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(names, ["a", "b", "c"]);
    assert_eq!(db.breaker().snapshot().totals.successes, 1);
    {
        let mut rows = sqlx::query("SELECT name FROM items").fetch(&db);
        assert!(rows.try_next().await.unwrap().is_some());
    } // dropped after one row
    let s = db.breaker().snapshot().totals;
    assert_eq!((s.successes, s.failures, s.cancelled), (1, 0, 1));
}

#[tokio::test]
async fn a_transaction_is_one_call_recorded_at_commit_or_rollback() {
    let clock = ManualClock::new();
    let db = memory_db(&clock, 3).await;
    let mut tx = db.begin().await.unwrap();
    sqlx::query("INSERT INTO items (name) VALUES ('in tx')")
        .execute(&mut *tx)
        .await
        .unwrap();
    assert_eq!(db.breaker().snapshot().totals.successes, 0, "not yet");
    tx.commit().await.unwrap();
    assert_eq!(db.breaker().snapshot().totals.successes, 1);

    let tx = db.begin().await.unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(db.breaker().snapshot().totals.successes, 2);

    let tx = db.begin().await.unwrap();
    drop(tx); // sqlx rolls back; nothing counted
    let s = db.breaker().snapshot().totals;
    assert_eq!((s.successes, s.cancelled), (2, 1));
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM items")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(n, 1);
}

#[tokio::test]
async fn prepare_and_acquire_are_guarded_calls_too() {
    use sqlx::{Executor, SqlSafeStr};
    let clock = ManualClock::new();
    let db = memory_db(&clock, 3).await;
    let statement = (&db)
        .prepare(
            sqlx::AssertSqlSafe("SELECT name FROM items WHERE id = ?".to_string()).into_sql_str(),
        )
        .await
        .unwrap();
    drop(statement);
    let mut conn = db.acquire().await.unwrap();
    sqlx::query("SELECT 1").execute(&mut *conn).await.unwrap();
    drop(conn);
    assert_eq!(db.breaker().snapshot().totals.successes, 2);
    assert!(
        (&db)
            .prepare(sqlx::AssertSqlSafe("SELEKT".to_string()).into_sql_str())
            .await
            .is_err()
    );
    let s = db.breaker().snapshot().totals;
    assert_eq!(
        (s.successes, s.failures),
        (3, 0),
        "a bad statement is the caller's"
    );
}
