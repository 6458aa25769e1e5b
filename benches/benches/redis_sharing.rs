//! What sharing a breaker through Redis costs (`breaker-redis`), against a redis-server and a
//! Redis Cluster (three primaries, three replicas) the benchmark starts on loopback ports of
//! its own:
//!
//! - criterion group `redis_sharing`: the call path of a local breaker and of the same
//!   breaker shared (its sync task running against Redis every 100 ms meanwhile), closed and
//!   open;
//! - per topology, the Redis commands per second a replica sends while serving 10,000
//!   calls/s (its own count of syncs, and the `EVAL`/`EVALSHA` calls Redis counted: on a
//!   cluster, summed over its nodes);
//! - per topology, how long a trip on one replica takes to reach two others, at two sync
//!   intervals (median and max).
//!
//! The last two are written as tab-separated rows to `BENCH_REDIS_OUT` (default
//! `target/bench-redis.tsv`) for `cargo xtask bench` (`BENCH_QUICK=1`: shorter runs).

use std::hint::black_box;
use std::time::{Duration, Instant};

use breaker_core::{CircuitBreaker, Config, Outcome, State};
use breaker_redis::RedisSharing;
use breaker_test_support::{RedisCluster, RedisServer};
use criterion::Criterion;

fn unique(what: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("bench-{what}-{}-{nanos}", std::process::id())
}

fn config(name: &str) -> Config {
    Config::builder()
        .name(name.to_string())
        .count_window(100)
        .failure_rate(50.0)
        .minimum_calls(20)
        .open_duration(Duration::from_secs(3600))
        .build_config()
        .unwrap()
}

/// Where the fleet's state lives, and how to read the commands Redis counted.
enum Topology {
    Single(RedisServer),
    Cluster(RedisCluster),
}

impl Topology {
    fn label(&self) -> &'static str {
        match self {
            Topology::Single(_) => "single Redis",
            Topology::Cluster(_) => "Redis Cluster",
        }
    }

    fn sharing(&self) -> RedisSharing {
        match self {
            Topology::Single(s) => RedisSharing::new(s.url()),
            Topology::Cluster(c) => RedisSharing::cluster(c.urls()),
        }
    }

    /// `EVAL`/`EVALSHA` calls Redis counted (every node of a cluster).
    async fn script_calls(&self) -> u64 {
        let urls = match self {
            Topology::Single(s) => vec![s.url()],
            Topology::Cluster(c) => c.urls(),
        };
        let mut total = 0;
        for url in urls {
            let client = redis::Client::open(url).unwrap();
            let mut conn = client
                .get_multiplexed_async_connection()
                .await
                .expect("the benchmark's own Redis answers");
            total += commandstats(&mut conn).await;
        }
        total
    }
}

fn call<B: std::ops::Deref<Target = CircuitBreaker<C, O>>, C, O>(b: &B, i: u64) -> bool
where
    C: breaker_core::Clock,
    O: breaker_core::Observer,
{
    match b.try_acquire() {
        Ok(permit) => {
            permit.record(Outcome::Success);
            black_box(i);
            true
        }
        Err(_) => false,
    }
}

async fn commandstats(conn: &mut redis::aio::MultiplexedConnection) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await
        .expect("INFO commandstats");
    info.lines()
        .filter(|l| l.starts_with("cmdstat_evalsha:") || l.starts_with("cmdstat_eval:"))
        .filter_map(|l| {
            l.split("calls=")
                .nth(1)?
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let _guard = runtime.enter();
    let topologies = [
        Topology::Single(RedisServer::start()),
        Topology::Cluster(RedisCluster::start()),
    ];

    let mut c = Criterion::default().configure_from_args();
    let mut g = c.benchmark_group("redis_sharing");
    let local = CircuitBreaker::new(
        config("local"),
        breaker_core::MonotonicClock::new(),
        breaker_core::NoopObserver,
    );
    let local = std::sync::Arc::new(local);
    let shared = topologies[0]
        .sharing()
        .start(config(&unique("hot")))
        .unwrap();
    runtime.block_on(shared.sync_now()).expect("sync");
    let mut i = 0u64;
    g.bench_function("local_count_window", |b| {
        b.iter(|| {
            i += 1;
            call(&local, i)
        })
    });
    g.bench_function("shared_count_window", |b| {
        b.iter(|| {
            i += 1;
            call(&shared, i)
        })
    });
    local.trip();
    shared.trip();
    assert_eq!(shared.state(), State::Open);
    g.bench_function("local_open_rejected", |b| b.iter(|| call(&local, 0)));
    g.bench_function("shared_open_rejected", |b| b.iter(|| call(&shared, 0)));
    g.finish();
    drop(shared);

    let mut rows = String::from("measure\tsetting\tvalue\n");
    let quick = std::env::var("BENCH_QUICK").is_ok_and(|v| v == "1");
    for topology in &topologies {
        let label = topology.label();
        // Commands per second at 10,000 calls/s, default sync interval.
        let seconds = if quick { 3 } else { 10 };
        let (own, seen, rate) = runtime.block_on(async {
            let replica = topology.sharing().start(config(&unique("rate"))).unwrap();
            replica.sync_now().await.unwrap();
            let before_syncs = replica.status().syncs + replica.status().errors;
            let before = topology.script_calls().await;
            let start = Instant::now();
            let mut ticker = tokio::time::interval(Duration::from_millis(1));
            let mut calls = 0u64;
            while start.elapsed() < Duration::from_secs(seconds) {
                ticker.tick().await;
                for _ in 0..10 {
                    calls += 1;
                    call(&replica, calls);
                }
            }
            let elapsed = start.elapsed().as_secs_f64();
            let after = topology.script_calls().await;
            let status = replica.status();
            let own = (status.syncs + status.errors - before_syncs) as f64 / elapsed;
            (
                own,
                (after - before) as f64 / elapsed,
                calls as f64 / elapsed,
            )
        });
        rows.push_str(&format!(
            "calls_per_second\t{label}, sync 100 ms\t{rate:.0}\n"
        ));
        rows.push_str(&format!(
            "commands_per_second_own\t{label}, sync 100 ms\t{own:.1}\n"
        ));
        rows.push_str(&format!(
            "commands_per_second_redis\t{label}, sync 100 ms\t{seen:.1}\n"
        ));

        // Trip propagation: one replica trips, how long until the two others are open.
        for interval_ms in [20u64, 100] {
            let rounds = if quick { 10 } else { 30 };
            let mut times: Vec<f64> = runtime.block_on(async {
                let mut times = Vec::new();
                for round in 0..rounds {
                    let name = unique("trip");
                    let sharing = topology
                        .sharing()
                        .sync_interval(Duration::from_millis(interval_ms));
                    let replicas: Vec<_> = (0..3)
                        .map(|_| sharing.clone().start(config(&name)).unwrap())
                        .collect();
                    for r in &replicas {
                        r.sync_now().await.unwrap();
                    }
                    // Start at a random point of the others' sync schedule.
                    tokio::time::sleep(Duration::from_micros(
                        (round * 7919) % (interval_ms * 1000),
                    ))
                    .await;
                    let start = Instant::now();
                    replicas[0].trip();
                    while !replicas[1..].iter().all(|r| r.state() == State::Open) {
                        tokio::time::sleep(Duration::from_micros(100)).await;
                        assert!(
                            start.elapsed() < Duration::from_secs(10),
                            "the trip never arrived"
                        );
                    }
                    times.push(start.elapsed().as_secs_f64() * 1e3);
                }
                times
            });
            times.sort_by(f64::total_cmp);
            let median = times[times.len() / 2];
            let max = times[times.len() - 1];
            rows.push_str(&format!(
                "propagation_median_ms\t{label}, sync {interval_ms} ms\t{median:.1}\n"
            ));
            rows.push_str(&format!(
                "propagation_max_ms\t{label}, sync {interval_ms} ms\t{max:.1}\n"
            ));
        }
    }
    let path = std::env::var("BENCH_REDIS_OUT").unwrap_or_else(|_| "target/bench-redis.tsv".into());
    std::fs::write(&path, &rows).unwrap_or_else(|e| eprintln!("could not write {path}: {e}"));
    eprint!("{rows}");
    c.final_summary();
}
