//! From the Go tutorial "Implementing Circuit Breaker Pattern in Go" (its `DBCircuitBreaker`),
//! in Rust: a repository whose queries go through a `breaker-sqlx` guarded pool, with the
//! last good answer as a fallback.
//!
//! SQLite by default (a file in a temporary directory, nothing to install);
//! `--database-url postgres://postgres@127.0.0.1/test` or `mysql://root@127.0.0.1/test` for
//! a server. The outage is real for all three: the pool's only connection is held elsewhere,
//! so the repository's queries time out waiting for one (as when a database stops answering),
//! the breaker trips, reads are served from the cache and writes are refused at once; then
//! the connection is released and the breaker closes after its open period (breaker time is
//! simulated, so the run takes about a second).
//!
//! Run: `cargo run -p breaker-examples --bin guarded_repository`

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use breaker_core::{CircuitBreaker, ManualClock};
use breaker_sqlx::{GuardedPool, rejection};
use sqlx::any::AnyPoolOptions;
use sqlx::{Any, AssertSqlSafe};

/// A product repository: reads fall back to the last good answer, writes do not.
struct Products {
    db: GuardedPool<Any, std::sync::Arc<CircuitBreaker<ManualClock>>>,
    /// The parameter placeholder of the database (`$1`, or `?` for MySQL).
    param: &'static str,
    cache: Mutex<HashMap<i64, String>>,
}

enum Read {
    Fresh(String),
    Cached(String, String),
    Missing,
    Unavailable(String),
}

impl Products {
    async fn name(&self, id: i64) -> Read {
        let sql = format!("SELECT name FROM products WHERE id = {}", self.param);
        match sqlx::query_scalar::<_, String>(AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.db)
            .await
        {
            Ok(Some(name)) => {
                self.cache.lock().unwrap().insert(id, name.clone());
                Read::Fresh(name)
            }
            Ok(None) => Read::Missing,
            Err(e) => {
                let why = match rejection(&e) {
                    Some(r) => format!("breaker {}, retry {}", r.state(), r.retry_hint()),
                    None => format!("database error: {e}"),
                };
                match self.cache.lock().unwrap().get(&id) {
                    Some(name) => Read::Cached(name.clone(), why),
                    None => Read::Unavailable(why),
                }
            }
        }
    }

    async fn add(&self, id: i64, name: &str) -> Result<(), sqlx::Error> {
        let sql = format!(
            "INSERT INTO products (id, name) VALUES ({}, {})",
            self.param,
            if self.param == "?" { "?" } else { "$2" }
        );
        sqlx::query(AssertSqlSafe(sql))
            .bind(id)
            .bind(name)
            .execute(&self.db)
            .await
            .map(|_| ())
    }
}

fn show(what: &str, read: Read) {
    match read {
        Read::Fresh(name) => println!("{what:<34} {name} (from the database)"),
        Read::Cached(name, why) => println!("{what:<34} {name} (cached; {why})"),
        Read::Missing => println!("{what:<34} no such product"),
        Read::Unavailable(why) => println!("{what:<34} unavailable ({why})"),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    sqlx::any::install_default_drivers();
    let dir = std::env::temp_dir().join(format!("guarded-repository-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let url = std::env::args()
        .skip_while(|a| a != "--database-url")
        .nth(1)
        .unwrap_or_else(|| format!("sqlite://{}?mode=rwc", dir.join("shop.db").display()));
    println!("database: {url}\n");

    // One connection, and a short acquire timeout: a database that does not answer shows up
    // as a failed query after 200 ms.
    let pool = AnyPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_millis(200))
        .connect(&url)
        .await?;
    let clock = ManualClock::new();
    let breaker = CircuitBreaker::builder_with_clock(clock.clone())
        .name("products-db")
        .consecutive_failures(3)
        .open_duration(Duration::from_secs(10))
        .build()?;
    let products = Products {
        db: GuardedPool::new(pool, breaker),
        param: if url.starts_with("mysql") { "?" } else { "$1" },
        cache: Mutex::new(HashMap::new()),
    };
    // Set-up bypasses the breaker, as migrations do.
    sqlx::query("DROP TABLE IF EXISTS products")
        .execute(products.db.pool())
        .await?;
    sqlx::query("CREATE TABLE products (id BIGINT PRIMARY KEY, name VARCHAR(80) NOT NULL)")
        .execute(products.db.pool())
        .await?;

    products.add(1, "espresso machine").await?;
    products.add(2, "grinder").await?;
    show("read product 1", products.name(1).await);
    show("read product 2", products.name(2).await);
    show("read product 9", products.name(9).await);
    let duplicate = products.add(1, "espresso machine").await;
    println!(
        "{:<34} {} (the caller's mistake: not counted against the database)",
        "add product 1 again",
        if duplicate.is_err() {
            "refused by the database"
        } else {
            "stored?!"
        }
    );
    println!("breaker: {}\n", products.db.breaker().state());

    println!("-- the database stops answering --");
    let held = products.db.pool().acquire().await?;
    for id in [1, 2, 3] {
        show(&format!("read product {id}"), products.name(id).await);
    }
    println!("breaker: {}", products.db.breaker().state());
    show("read product 1", products.name(1).await);
    match products.add(3, "milk jug").await {
        Err(e) if rejection(&e).is_some() => {
            println!(
                "{:<34} not sent: {}",
                "add product 3",
                rejection(&e).unwrap().retry_hint()
            )
        }
        other => println!("{:<34} {other:?}", "add product 3"),
    }

    println!("\n-- the database answers again; 10 s of breaker time pass --");
    drop(held);
    clock.advance(Duration::from_secs(10) + Duration::from_nanos(1));
    show("read product 2 (the probe)", products.name(2).await);
    products.add(3, "milk jug").await?;
    show("read product 3", products.name(3).await);
    let s = products.db.breaker().snapshot();
    println!(
        "\nbreaker: {}; calls that reached the database: {} ok, {} failed; refused: {}",
        s.state, s.totals.successes, s.totals.failures, s.totals.rejected
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
