//! From the Go tutorial "Implementing Circuit Breaker Pattern in Go" (its `DBCircuitBreaker`),
//! in Rust: a repository whose queries go through a `breaker-sqlx` guarded pool, with the
//! last good answer as a fallback.
//!
//! SQLite by default (a file in a temporary directory, nothing to install);
//! `--database-url postgres://postgres@127.0.0.1/test` or `mysql://root@127.0.0.1/test` for
//! a server of your own. The example never reads or changes data it did not create: it
//! creates a table of its own (`breaker_example_products_<process id>`; it stops if a table
//! of that name exists), and drops that table, and only that one, when it ends (also on
//! Ctrl-C). The outage is real for all three: the pool's only connection is held elsewhere,
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
use breaker_examples::{Args, StartupError, exit_code};
use breaker_sqlx::{GuardedPool, rejection};
use sqlx::any::AnyPoolOptions;
use sqlx::{Any, AnyConnection, AnyPool, AssertSqlSafe, Connection};

const USAGE: &str = "
guarded_repository: a product repository behind a breaker-sqlx guarded pool, through a
database outage (cached reads, refused writes) and back.

Usage: guarded_repository [--database-url URL]

  --database-url URL   postgres://USER@HOST[:PORT]/DATABASE or mysql://USER@HOST[:PORT]/DATABASE
                       (default: an SQLite file in a temporary directory, removed at the end)

Your data is safe: the example creates a table of its own, breaker_example_products_<process
id>, stops if a table of that name already exists, and drops that table (and nothing else)
when it ends, also on Ctrl-C. It needs the right to create and drop tables in DATABASE.
";

/// A product repository: reads fall back to the last good answer, writes do not.
struct Products {
    db: GuardedPool<Any, std::sync::Arc<CircuitBreaker<ManualClock>>>,
    /// The example's own table.
    table: String,
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
        let sql = format!("SELECT name FROM {} WHERE id = {}", self.table, self.param);
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
            "INSERT INTO {} (id, name) VALUES ({}, {})",
            self.table,
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

/// The server a URL points at, as a person would name it, without the password:
/// `("PostgreSQL server", "127.0.0.1:5432", "test")`.
fn describe(url: &str) -> (&'static str, String, String) {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let (kind, default_port) = match scheme {
        "postgres" | "postgresql" => ("PostgreSQL server", Some(5432)),
        "mysql" | "mariadb" => ("MySQL/MariaDB server", Some(3306)),
        "sqlite" => ("SQLite database", None),
        _ => ("database", None),
    };
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let address = match default_port {
        Some(port) if !host.contains(':') && !host.is_empty() => format!("{host}:{port}"),
        Some(_) => host.to_string(),
        None => rest.split('?').next().unwrap_or(rest).to_string(),
    };
    let database = path.split('?').next().unwrap_or_default().to_string();
    (kind, address, database)
}

/// Connects once to check the database is there, naming the server and address if not.
async fn check_reachable(url: &str) -> Result<(), StartupError> {
    let (kind, address, database) = describe(url);
    let what = |failed: &str| {
        let database = if database.is_empty() {
            String::new()
        } else {
            format!(", database {database}")
        };
        StartupError::new(format!(
            "cannot connect to the {kind} at {address}{database} (from --database-url): \
             {failed}. Is it running and listening there, and may the URL's user connect \
             and create tables? Leave --database-url out to use an SQLite file instead."
        ))
    };
    match tokio::time::timeout(Duration::from_secs(10), AnyConnection::connect(url)).await {
        Ok(Ok(connection)) => {
            let _ = connection.close().await;
            Ok(())
        }
        Ok(Err(e)) => Err(what("the connection failed").because(e)),
        Err(_) => Err(what("no answer within 10 s")),
    }
}

/// Creates the example's own table; refuses to touch one that exists already.
async fn create_table(pool: &AnyPool, table: &str) -> Result<(), StartupError> {
    let sql = format!("CREATE TABLE {table} (id BIGINT PRIMARY KEY, name VARCHAR(80) NOT NULL)");
    sqlx::query(AssertSqlSafe(sql))
        .execute(pool)
        .await
        .map(|_| ())
        .map_err(|e| {
            StartupError::new(format!(
                "could not create the example's table {table}: if a table of that name \
                 exists, it is not the example's to drop (drop it yourself if it is a \
                 leftover), otherwise give the URL's user the right to create tables"
            ))
            .because(e)
        })
}

fn main() -> std::process::ExitCode {
    exit_code(run())
}

#[tokio::main(flavor = "current_thread")]
async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse(USAGE, &["--database-url"])?;
    sqlx::any::install_default_drivers();
    let mut temp_dir = None;
    let url = match args.value("--database-url") {
        Some(url) => url.to_string(),
        None => {
            let dir =
                std::env::temp_dir().join(format!("guarded-repository-{}", std::process::id()));
            std::fs::create_dir(&dir).map_err(|e| {
                StartupError::new(format!(
                    "could not create the directory {} for the example's SQLite file",
                    dir.display()
                ))
                .because(e)
            })?;
            let url = format!("sqlite://{}?mode=rwc", dir.join("shop.db").display());
            temp_dir = Some(dir);
            url
        }
    };
    let result = with_database(&url).await;
    if let Some(dir) = temp_dir {
        let _ = std::fs::remove_dir_all(dir);
    }
    result
}

/// Connects, creates the example's table, tells the story, and drops the table: whatever
/// happened in between (an error, Ctrl-C), once it was created.
async fn with_database(url: &str) -> Result<(), Box<dyn std::error::Error>> {
    let (kind, address, _) = describe(url);
    println!("database: {kind} at {address}");
    check_reachable(url).await?;
    // One connection, and a short acquire timeout: a database that does not answer shows up
    // as a failed query after 200 ms.
    let pool = AnyPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_millis(200))
        .connect(url)
        .await?;
    let table = format!("breaker_example_products_{}", std::process::id());
    // Set-up bypasses the breaker, as migrations do.
    create_table(&pool, &table).await?;
    println!("table: {table} (the example's own: dropped at the end)\n");
    let story = tokio::select! {
        story = story(pool.clone(), &table, url.starts_with("mysql")) => story,
        _ = tokio::signal::ctrl_c() => Err("interrupted (Ctrl-C)".into()),
    };
    let dropped = sqlx::query(AssertSqlSafe(format!("DROP TABLE {table}")))
        .execute(&pool)
        .await;
    pool.close().await;
    story?;
    dropped.map_err(|e| {
        StartupError::new(format!(
            "could not drop the example's table {table}: drop it yourself"
        ))
        .because(e)
    })?;
    println!("\ntable {table} dropped");
    Ok(())
}

async fn story(pool: AnyPool, table: &str, mysql: bool) -> Result<(), Box<dyn std::error::Error>> {
    let clock = ManualClock::new();
    let breaker = CircuitBreaker::builder_with_clock(clock.clone())
        .name("products-db")
        .consecutive_failures(3)
        .open_duration(Duration::from_secs(10))
        .build()?;
    let products = Products {
        db: GuardedPool::new(pool, breaker),
        table: table.to_string(),
        param: if mysql { "?" } else { "$1" },
        cache: Mutex::new(HashMap::new()),
    };

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
    Ok(())
}
