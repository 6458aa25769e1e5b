//! Helpers for the tests against the machine's Redis.
#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::time::{Duration, Instant};

use breaker_core::{Config, ManualClock, NoopObserver};
use breaker_redis::{RedisSharing, SharedBreaker, URL_ENV};

pub type Replica = SharedBreaker<ManualClock, NoopObserver>;

/// The Redis the tests use: `BREAKER_REDIS_URL`, or the machine's default. A test that cannot
/// reach it fails, naming the server and the variable.
pub fn redis_url() -> String {
    std::env::var(URL_ENV).unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string())
}

pub async fn redis() -> redis::aio::MultiplexedConnection {
    let url = redis_url();
    let client = redis::Client::open(url.as_str()).expect("a valid Redis URL");
    match tokio::time::timeout(
        Duration::from_secs(5),
        client.get_multiplexed_async_connection(),
    )
    .await
    {
        Ok(Ok(conn)) => conn,
        other => panic!(
            "Redis is not reachable at {url} ({other:?}): start redis-server, or set {URL_ENV} \
             to a reachable Redis"
        ),
    }
}

/// A breaker name no other test run uses; its keys are deleted first.
pub async fn fresh_name(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let name = format!("test-{test}-{}-{nanos}", std::process::id());
    let mut conn = redis().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("breaker:{{{name}}}*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL")
            .arg(keys)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    name
}

/// The fleet's transition log, oldest first.
pub async fn transition_log(name: &str) -> Vec<String> {
    let mut conn = redis().await;
    redis::cmd("LRANGE")
        .arg(format!("breaker:{{{name}}}:log"))
        .arg(0)
        .arg(-1)
        .query_async(&mut conn)
        .await
        .unwrap()
}

/// Replicas share state by name; each has its own manual clock (its own host).
pub fn replica(sharing: RedisSharing, config: Config) -> (Replica, ManualClock) {
    let clock = ManualClock::new();
    let shared = sharing
        .start_with(config, clock.clone(), NoopObserver)
        .expect("sharing starts");
    (shared, clock)
}

/// A sharing that syncs only when told to (and when its breaker changes state), so a test
/// decides when replicas talk.
pub fn on_demand() -> RedisSharing {
    RedisSharing::new(redis_url()).sync_interval(Duration::from_secs(60))
}

/// Waits for `condition`, failing after `limit`: for the sync task's work, which runs on its
/// own schedule.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if condition().await {
            return;
        }
        assert!(start.elapsed() < limit, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
