//! PostgreSQL and MariaDB through a fault-injecting TCP proxy: outages trip the breaker, the
//! server receives nothing while it is open (counted at the proxy), probes go through, it
//! recovers; bad queries never trip it; no write that returned Ok is lost, and no refused
//! one is written. Breaker time on the manual clock; every wait is bounded by a timeout.
//!
//! Servers: `BREAKER_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`)
//! and `BREAKER_TEST_MYSQL_URL` (default `mysql://root@127.0.0.1:3306/test`). A server that
//! cannot be reached fails the test with a message naming it and its variable.

use std::collections::BTreeSet;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use breaker_core::{CircuitBreaker, ManualClock, State};
use breaker_sqlx::{GuardedPool, rejection};
use breaker_test_support::{FaultProxy, Mode};
use sqlx::AssertSqlSafe;
use sqlx::pool::PoolOptions;

const OPEN: Duration = Duration::from_secs(10);
const ACQUIRE_TIMEOUT: Duration = Duration::from_millis(500);

struct Server {
    name: &'static str,
    variable: &'static str,
    default_url: &'static str,
}

const POSTGRES: Server = Server {
    name: "PostgreSQL",
    variable: "BREAKER_TEST_POSTGRES_URL",
    default_url: "postgres://postgres@127.0.0.1:5432/test",
};

const MARIADB: Server = Server {
    name: "MariaDB",
    variable: "BREAKER_TEST_MYSQL_URL",
    default_url: "mysql://root@127.0.0.1:3306/test",
};

impl Server {
    fn url(&self) -> String {
        std::env::var(self.variable).unwrap_or_else(|_| self.default_url.to_string())
    }

    /// `scheme://user@host:port/db` -> the `host:port` part's address.
    fn addr(&self) -> SocketAddr {
        let url = self.url();
        let after_scheme = url.split("://").nth(1).expect("a URL with a scheme");
        let authority = after_scheme.split('/').next().unwrap();
        let host_port = authority.rsplit('@').next().unwrap();
        host_port
            .to_socket_addrs()
            .unwrap_or_else(|e| panic!("{}: bad address in {url}: {e}", self.variable))
            .next()
            .expect("an address")
    }

    /// The same URL, through `proxy`.
    fn url_via(&self, proxy: SocketAddr) -> String {
        let url = self.url();
        let (scheme, rest) = url.split_once("://").unwrap();
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let user = authority
            .rsplit_once('@')
            .map(|(user, _)| format!("{user}@"))
            .unwrap_or_default();
        format!("{scheme}://{user}{proxy}/{path}")
    }

    fn unreachable(&self, e: impl std::fmt::Display) -> ! {
        panic!(
            "{} at {} is not reachable ({e}): start it, or set {} to the URL of a {} server \
             with a database `test` the tests may create tables in",
            self.name,
            self.url(),
            self.variable,
            self.name
        )
    }
}

fn breaker(clock: &ManualClock) -> CircuitBreaker<ManualClock> {
    CircuitBreaker::builder_with_clock(clock.clone())
        .consecutive_failures(3)
        .open_duration(OPEN)
        .build()
        .unwrap()
}

fn table(test: &str) -> String {
    format!("breaker_{test}_{}", std::process::id())
}

macro_rules! server_tests {
    ($module:ident, $db:ty, $server:expr, $param:literal) => {
        mod $module {
            use super::*;

            type Db = $db;

            async fn direct() -> sqlx::Pool<Db> {
                PoolOptions::<Db>::new()
                    .max_connections(2)
                    .acquire_timeout(Duration::from_secs(5))
                    .connect(&$server.url())
                    .await
                    .unwrap_or_else(|e| $server.unreachable(e))
            }

            /// A guarded pool through a fresh proxy, and a direct pool beside it.
            async fn via_proxy(
                clock: &ManualClock,
            ) -> (
                GuardedPool<Db, Arc<CircuitBreaker<ManualClock>>>,
                FaultProxy,
                sqlx::Pool<Db>,
            ) {
                let direct = direct().await;
                let proxy = FaultProxy::start($server.addr()).await;
                let pool = PoolOptions::<Db>::new()
                    .max_connections(4)
                    .min_connections(0)
                    .acquire_timeout(ACQUIRE_TIMEOUT)
                    .connect_lazy(&$server.url_via(proxy.addr()))
                    .unwrap();
                (GuardedPool::new(pool, breaker(clock)), proxy, direct)
            }

            async fn create(direct: &sqlx::Pool<Db>, table: &str) {
                sqlx::query(AssertSqlSafe(format!("DROP TABLE IF EXISTS {table}")))
                    .execute(direct)
                    .await
                    .unwrap();
                sqlx::query(AssertSqlSafe(format!(
                    "CREATE TABLE {table} (id INTEGER PRIMARY KEY, name VARCHAR(40) UNIQUE)"
                )))
                .execute(direct)
                .await
                .unwrap();
            }

            async fn drop_table(direct: &sqlx::Pool<Db>, table: &str) {
                let _ = sqlx::query(AssertSqlSafe(format!("DROP TABLE IF EXISTS {table}")))
                    .execute(direct)
                    .await;
            }

            fn insert(table: &str) -> String {
                format!("INSERT INTO {table} (id) VALUES ({})", $param)
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn bad_queries_in_bulk_never_trip_the_breaker() {
                let clock = ManualClock::new();
                let (db, _proxy, direct) = via_proxy(&clock).await;
                let t = table(concat!(stringify!($module), "_bad"));
                create(&direct, &t).await;
                sqlx::query(AssertSqlSafe(insert(&t)))
                    .bind(1)
                    .execute(&db)
                    .await
                    .unwrap();
                for _ in 0..25 {
                    // A syntax error, a missing table, a duplicate key, a missing row.
                    assert!(sqlx::query("SELEKT 1").execute(&db).await.is_err());
                    assert!(
                        sqlx::query("SELECT * FROM no_such_table_here")
                            .execute(&db)
                            .await
                            .is_err()
                    );
                    assert!(
                        sqlx::query(AssertSqlSafe(insert(&t)))
                            .bind(1)
                            .execute(&db)
                            .await
                            .is_err()
                    );
                    assert!(matches!(
                        sqlx::query(AssertSqlSafe(format!("SELECT id FROM {t} WHERE id = 99")))
                            .fetch_one(&db)
                            .await,
                        Err(sqlx::Error::RowNotFound)
                    ));
                }
                let s = db.breaker().snapshot();
                assert_eq!(s.state, State::Closed);
                assert_eq!((s.totals.failures, s.totals.successes), (0, 101));
                drop_table(&direct, &t).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn an_outage_trips_the_breaker_nothing_is_sent_while_open_and_it_recovers() {
                let clock = ManualClock::new();
                let (db, proxy, _direct) = via_proxy(&clock).await;
                let one = || sqlx::query("SELECT 1").execute(&db);
                one().await.unwrap();

                // The server goes away: connections are cut, new ones refused.
                proxy.refuse(true);
                proxy.cut();
                for _ in 0..3 {
                    let err = one().await.unwrap_err();
                    assert!(rejection(&err).is_none(), "a real failure: {err}");
                }
                assert_eq!(db.breaker().state(), State::Open);

                let sent = proxy.forwarded_bytes();
                for _ in 0..20 {
                    let err = one().await.unwrap_err();
                    assert!(rejection(&err).is_some(), "refused: {err}");
                }
                proxy.refuse(false);
                assert_eq!(
                    proxy.forwarded_bytes(),
                    sent,
                    "nothing reached the server while open"
                );

                // The open period ends: one probe goes through and closes the breaker.
                clock.advance(OPEN + Duration::from_nanos(1));
                one().await.unwrap();
                assert!(
                    proxy.forwarded_bytes() > sent,
                    "the probe reached the server"
                );
                assert_eq!(db.breaker().state(), State::Closed);
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_server_that_hangs_trips_the_breaker_after_three_calls() {
                let clock = ManualClock::new();
                let (db, proxy, _direct) = via_proxy(&clock).await;
                proxy.set_mode(Mode::BlackHole);
                proxy.cut();
                for call in 1..=3 {
                    assert_eq!(db.breaker().state(), State::Closed, "before call {call}");
                    let err = sqlx::query("SELECT 1").execute(&db).await.unwrap_err();
                    assert!(matches!(err, sqlx::Error::PoolTimedOut), "{err}");
                }
                assert_eq!(db.breaker().state(), State::Open);
                let err = sqlx::query("SELECT 1").execute(&db).await.unwrap_err();
                assert!(rejection(&err).is_some());
                proxy.set_mode(Mode::Pass);
                proxy.cut();
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_server_slower_than_the_acquire_timeout_trips_the_breaker() {
                let clock = ManualClock::new();
                let (db, proxy, _direct) = via_proxy(&clock).await;
                // New connections reach the server only after longer than the pool waits.
                proxy.delay(ACQUIRE_TIMEOUT * 3);
                proxy.cut();
                for _ in 0..3 {
                    let err = sqlx::query("SELECT 1").execute(&db).await.unwrap_err();
                    assert!(matches!(err, sqlx::Error::PoolTimedOut), "{err}");
                }
                assert_eq!(db.breaker().state(), State::Open);
                proxy.delay(Duration::ZERO);
                proxy.cut();
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn no_write_that_returned_ok_is_lost_and_no_refused_write_is_made() {
                let clock = ManualClock::new();
                let (db, proxy, direct) = via_proxy(&clock).await;
                let t = table(concat!(stringify!($module), "_writes"));
                create(&direct, &t).await;

                let write = |id: i32| {
                    let db = db.clone();
                    let sql = insert(&t);
                    tokio::spawn(async move {
                        (
                            id,
                            sqlx::query(AssertSqlSafe(sql)).bind(id).execute(&db).await,
                        )
                    })
                };
                let mut ok = BTreeSet::new();
                let mut refused = BTreeSet::new();
                let mut sort = |(id, result): (i32, Result<_, sqlx::Error>)| match result {
                    Ok(_) => {
                        ok.insert(id);
                    }
                    Err(e) if rejection(&e).is_some() => {
                        refused.insert(id);
                    }
                    Err(_) => {} // failed in flight: may or may not have committed
                };
                // 30 writes in flight when the server goes away...
                let in_flight: Vec<_> = (0..30).map(write).collect();
                proxy.refuse(true);
                proxy.cut();
                for task in in_flight {
                    sort(task.await.unwrap());
                }
                // ...then writes one after another during the outage: they fail until the
                // breaker trips, then they are refused.
                for id in 30..60 {
                    sort(write(id).await.unwrap());
                }
                assert_eq!(db.breaker().state(), State::Open);
                assert!(!refused.is_empty(), "some writes were refused");
                proxy.refuse(false);
                clock.advance(OPEN + Duration::from_nanos(1));
                for id in 60..70 {
                    sqlx::query(AssertSqlSafe(insert(&t)))
                        .bind(id)
                        .execute(&db)
                        .await
                        .unwrap();
                    ok.insert(id);
                }

                let rows: Vec<i32> =
                    sqlx::query_scalar(AssertSqlSafe(format!("SELECT id FROM {t} ORDER BY id")))
                        .fetch_all(&direct)
                        .await
                        .unwrap();
                let stored: BTreeSet<i32> = rows.iter().copied().collect();
                assert_eq!(stored.len(), rows.len(), "each write stored once");
                let lost: Vec<_> = ok.difference(&stored).collect();
                assert!(
                    lost.is_empty(),
                    "writes that returned Ok are missing: {lost:?}"
                );
                let made: Vec<_> = refused.intersection(&stored).collect();
                assert!(made.is_empty(), "refused writes were made: {made:?}");
                drop_table(&direct, &t).await;
            }
        }
    };
}

server_tests!(postgres, sqlx::Postgres, POSTGRES, "$1");

/// A server-side statement timeout (SQLSTATE 57014) is an outage signal, not the caller's
/// fault: queries that run past it trip the breaker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_statement_timeouts_count_as_failures() {
    let clock = ManualClock::new();
    let options: sqlx::postgres::PgConnectOptions = POSTGRES
        .url()
        .parse()
        .unwrap_or_else(|e| POSTGRES.unreachable(e));
    let pool = PoolOptions::<sqlx::Postgres>::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options.options([("statement_timeout", "50")]))
        .await
        .unwrap_or_else(|e| POSTGRES.unreachable(e));
    let db = GuardedPool::new(pool, breaker(&clock));
    for _ in 0..3 {
        let err = sqlx::query("SELECT pg_sleep(5)")
            .execute(&db)
            .await
            .unwrap_err();
        let code = err
            .as_database_error()
            .and_then(|e| e.code())
            .map(|c| c.to_string());
        assert_eq!(code.as_deref(), Some("57014"), "{err}");
    }
    assert_eq!(db.breaker().state(), State::Open);
}
server_tests!(mariadb, sqlx::MySql, MARIADB, "?");
