//! The cost of the guard around a database query: `SELECT 1` on SQLite in memory, through
//! the bare pool and through a `breaker-sqlx` `GuardedPool` (closed breaker), one query per
//! iteration on a current-thread tokio runtime. `cargo bench -p breaker-benches --bench sqlx`.

use breaker_core::CircuitBreaker;
use breaker_sqlx::GuardedPool;
use criterion::Criterion;
use sqlx::sqlite::SqlitePoolOptions;

fn select_one(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
    let pool = rt.block_on(async {
        SqlitePoolOptions::new()
            .max_connections(1)
            .connect("sqlite::memory:")
            .await
            .expect("SQLite in memory")
    });
    let guarded = GuardedPool::new(
        pool.clone(),
        CircuitBreaker::builder().build().expect("valid settings"),
    );
    let mut g = c.benchmark_group("sqlx_select_1");
    g.bench_function("bare_pool", |b| {
        b.iter(|| {
            rt.block_on(sqlx::query("SELECT 1").execute(&pool))
                .expect("a row")
        })
    });
    g.bench_function("guarded_pool", |b| {
        b.iter(|| {
            rt.block_on(sqlx::query("SELECT 1").execute(&guarded))
                .expect("a row")
        })
    });
    g.finish();
    assert_eq!(
        guarded.breaker().snapshot().totals.failures,
        0,
        "every guarded query succeeded"
    );
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    select_one(&mut c);
    c.final_summary();
}
