//! The `guarded_repository` example pointed at a user's own database server, as its README
//! line says: it tells its story there, leaves the user's tables and rows as they were
//! (a table named `products` included, which it used to drop), and leaves no table of its
//! own behind. A server it cannot reach is a startup error naming the server and address.
//!
//! Servers: PostgreSQL and MariaDB from `BREAKER_TEST_POSTGRES_URL` and
//! `BREAKER_TEST_MYSQL_URL` (defaults: the local ones); each test works in a scratch database
//! of its own, dropped at the end (on panic too).

mod common;

use std::process::Command;

use sqlx::{AnyPool, AssertSqlSafe};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A database the test creates on the server of `url` (a URL ending in `/DATABASE`), with
/// a user's table `products` holding one row; dropped when the test ends.
struct Scratch {
    server: String,
    admin: String,
    name: String,
    url: String,
}

impl Scratch {
    fn create(server: &str, variable: &str, default: &str) -> Scratch {
        sqlx::any::install_default_drivers();
        let admin = std::env::var(variable).unwrap_or_else(|_| default.to_string());
        let name = format!("breaker_user_{}", std::process::id());
        let base = admin
            .rsplit_once('/')
            .map_or(admin.as_str(), |(base, _)| base);
        let url = format!("{base}/{name}");
        runtime().block_on(async {
            let pool = AnyPool::connect(&admin).await.unwrap_or_else(|e| {
                panic!(
                    "{server} at {admin} is not reachable ({e}): start it, or set {variable} \
                     to the URL of a {server} server where the tests may create a database"
                )
            });
            let _ = sqlx::query(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name}")))
                .execute(&pool)
                .await;
            sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
            let user = AnyPool::connect(&url).await.unwrap();
            sqlx::query("CREATE TABLE products (id BIGINT PRIMARY KEY, name VARCHAR(80) NOT NULL)")
                .execute(&user)
                .await
                .unwrap();
            sqlx::query("INSERT INTO products (id, name) VALUES (1, 'the user''s own row')")
                .execute(&user)
                .await
                .unwrap();
            user.close().await;
        });
        Scratch {
            server: server.to_string(),
            admin,
            name,
            url,
        }
    }

    /// The tables of the scratch database, and the rows of `products`.
    fn contents(&self) -> (Vec<String>, Vec<(i64, String)>) {
        let tables = if self.server == "PostgreSQL" {
            "SELECT CAST(tablename AS VARCHAR) FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
        } else {
            "SELECT CAST(table_name AS CHAR) FROM information_schema.tables \
             WHERE table_schema = DATABASE() ORDER BY 1"
        };
        runtime().block_on(async {
            let pool = AnyPool::connect(&self.url).await.unwrap();
            let tables = sqlx::query_scalar(tables).fetch_all(&pool).await.unwrap();
            let rows = sqlx::query_as("SELECT id, name FROM products ORDER BY id")
                .fetch_all(&pool)
                .await
                .unwrap();
            pool.close().await;
            (tables, rows)
        })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        runtime().block_on(async {
            if let Ok(pool) = AnyPool::connect(&self.admin).await {
                let drop = format!("DROP DATABASE IF EXISTS {}", self.name);
                let _ = sqlx::query(AssertSqlSafe(drop)).execute(&pool).await;
                pool.close().await;
            }
        });
    }
}

fn leaves_the_users_data_alone(scratch: Scratch) {
    let out = Command::new(env!("CARGO_BIN_EXE_guarded_repository"))
        .args(["--database-url", &scratch.url])
        .output()
        .expect("run the example");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        "espresso machine (cached; breaker open, retry in 10 s)",
        "breaker: closed; calls that reached the database: 9 ok, 3 failed; refused: 2",
    ] {
        assert!(stdout.contains(needle), "{needle:?} missing in:\n{stdout}");
    }
    let own = stdout
        .lines()
        .find_map(|l| l.strip_prefix("table: "))
        .and_then(|l| l.split(' ').next())
        .unwrap_or_else(|| panic!("the example names its table:\n{stdout}"));
    assert!(own.starts_with("breaker_example_products_"), "{own}");
    assert!(stdout.contains(&format!("table {own} dropped")), "{stdout}");
    let (tables, rows) = scratch.contents();
    assert_eq!(tables, ["products"], "the user's table, and no other");
    assert_eq!(rows, [(1, "the user's own row".to_string())]);
}

#[test]
fn on_postgresql_it_leaves_the_users_tables_and_rows_as_they_were() {
    leaves_the_users_data_alone(Scratch::create(
        "PostgreSQL",
        "BREAKER_TEST_POSTGRES_URL",
        "postgres://postgres@127.0.0.1:5432/test",
    ));
}

#[test]
fn on_mariadb_it_leaves_the_users_tables_and_rows_as_they_were() {
    leaves_the_users_data_alone(Scratch::create(
        "MariaDB",
        "BREAKER_TEST_MYSQL_URL",
        "mysql://root@127.0.0.1:3306/test",
    ));
}

#[test]
fn a_server_it_cannot_reach_is_named_with_its_address_and_what_failed() {
    let port = common::free_port();
    let url = format!("postgres://someone:secret@127.0.0.1:{port}/shop");
    let out = Command::new(env!("CARGO_BIN_EXE_guarded_repository"))
        .args(["--database-url", &url])
        .output()
        .expect("run the example");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.starts_with(&format!(
            "error: cannot connect to the PostgreSQL server at 127.0.0.1:{port}, database shop \
             (from --database-url): the connection failed. Is it running"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("caused by: ") && stderr.contains("refused"),
        "{stderr}"
    );
    let all = format!("{stderr}{}", String::from_utf8_lossy(&out.stdout));
    assert!(
        !all.contains("secret"),
        "the password is never printed:\n{all}"
    );
}

#[test]
fn its_help_says_which_table_it_creates_and_drops() {
    let out = common::output(env!("CARGO_BIN_EXE_guarded_repository"), &["--help"]);
    let help = String::from_utf8_lossy(&out.stdout).replace('\n', " ");
    assert!(out.status.success());
    assert!(
        help.contains("creates a table of its own, breaker_example_products_<process id>"),
        "{help}"
    );
    assert!(
        help.contains("drops that table (and nothing else)"),
        "{help}"
    );
}
