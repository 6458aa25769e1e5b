//! Helpers for the tests: Redis servers and clusters of the tests' own, replicas on manual
//! clocks, and the one place that records call outcomes.
#![allow(dead_code, unreachable_pub)]

pub mod scenarios;

use std::future::Future;
use std::time::{Duration, Instant};

use breaker_core::{BreakerRef, Config, ManualClock, NoopObserver, Outcome, Permit};
use breaker_redis::{RedisSharing, SharedBreaker};
use breaker_test_support::{RedisCluster, RedisServer};

pub type Replica = SharedBreaker<ManualClock, NoopObserver>;

/// Where the fleet's state lives in a test: a redis-server or a Redis Cluster (three
/// primaries, three replicas) of the test's own, on loopback ports of its own. Dropping it
/// stops every process it started.
pub enum Topology {
    Single(RedisServer),
    Cluster(RedisCluster),
}

impl Topology {
    pub fn single() -> Self {
        Topology::Single(RedisServer::start())
    }

    pub fn cluster() -> Self {
        Topology::Cluster(RedisCluster::start())
    }

    pub fn nodes(&mut self) -> &mut RedisCluster {
        match self {
            Topology::Cluster(cluster) => cluster,
            Topology::Single(_) => panic!("a cluster was expected"),
        }
    }

    pub fn server(&mut self) -> &mut RedisServer {
        match self {
            Topology::Single(server) => server,
            Topology::Cluster(_) => panic!("a single server was expected"),
        }
    }

    /// Sharing through this topology, with the defaults.
    pub fn sharing(&self) -> RedisSharing {
        match self {
            Topology::Single(server) => RedisSharing::new(server.url()),
            Topology::Cluster(cluster) => RedisSharing::cluster(cluster.urls()),
        }
    }

    /// A sharing that syncs only when told to (and when its breaker changes state), so a
    /// test decides when replicas talk. (A generous command timeout: the tests run many
    /// servers at once on a small machine.)
    pub fn on_demand(&self) -> RedisSharing {
        self.sharing()
            .sync_interval(Duration::from_secs(60))
            .command_timeout(Duration::from_secs(2))
    }

    /// A connection for the test's own commands.
    pub async fn admin(&self) -> Admin {
        let limit = Duration::from_secs(10);
        match self {
            Topology::Single(server) => {
                let client = redis::Client::open(server.url()).expect("a valid URL");
                let conn = tokio::time::timeout(limit, client.get_multiplexed_async_connection())
                    .await
                    .expect("the test's redis-server answers")
                    .expect("the test's redis-server is reachable");
                Admin::Single(conn)
            }
            Topology::Cluster(cluster) => {
                let client = redis::cluster::ClusterClient::new(cluster.urls()).unwrap();
                let conn = tokio::time::timeout(limit, client.get_async_connection())
                    .await
                    .expect("the test's cluster answers")
                    .expect("the test's cluster is reachable");
                Admin::Cluster(conn)
            }
        }
    }
}

pub enum Admin {
    Single(redis::aio::MultiplexedConnection),
    Cluster(redis::cluster_async::ClusterConnection),
}

impl Admin {
    pub async fn query<T: redis::FromRedisValue>(&mut self, args: &[&str]) -> T {
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        let result = match self {
            Admin::Single(conn) => cmd.query_async(conn).await,
            Admin::Cluster(conn) => cmd.query_async(conn).await,
        };
        result.unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    /// The fleet's transition log, oldest first.
    pub async fn log(&mut self, name: &str) -> Vec<String> {
        self.query(&["LRANGE", &format!("breaker:{{{name}}}:log"), "0", "-1"])
            .await
    }

    /// Redis's clock, in ms.
    pub async fn now_ms(&mut self) -> u64 {
        let t: Vec<u64> = self.query(&["TIME"]).await;
        t[0] * 1000 + t[1] / 1000
    }
}

/// A log line's generation, state and reason ("<gen> <state> <why> by <replica> at <ms>").
pub fn entry(line: &str) -> (u64, String, String) {
    let mut words = line.split(' ');
    let generation = words.next().and_then(|g| g.parse().ok()).expect(line);
    let state = words.next().expect(line).to_string();
    let why: Vec<&str> = words.take_while(|w| *w != "by").collect();
    (generation, state, why.join(" "))
}

/// The states and reasons of a log, in order ("open trip", "closed reset").
pub fn moves(log: &[String]) -> Vec<String> {
    log.iter()
        .map(|l| {
            let (_, state, why) = entry(l);
            format!("{state} {why}")
        })
        .collect()
}

/// Replicas share state by name; each has its own manual clock (its own host).
pub fn replica(sharing: RedisSharing, config: Config) -> (Replica, ManualClock) {
    let clock = ManualClock::new();
    let shared = sharing
        .start_with(config, clock.clone(), NoopObserver)
        .expect("sharing starts");
    (shared, clock)
}

pub async fn sync_all(replicas: &[&Replica]) {
    for r in replicas {
        r.sync_now().await.expect("sync with Redis");
    }
}

/// Syncs until Redis answers again (a restarted server, a reconnecting client).
pub async fn sync_until_ok(r: &Replica) {
    eventually(Duration::from_secs(20), "Redis answers again", || async {
        r.sync_now().await.is_ok()
    })
    .await;
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

// ----- the one place the tests record outcomes ---------------------------------------------

/// Records `outcome` for a permit already held.
pub fn finish<B: BreakerRef>(permit: Permit<B>, outcome: Outcome) {
    permit.record(outcome)
}

pub fn fail(r: &Replica) {
    finish(r.try_acquire().expect("admitted"), Outcome::Failure)
}

pub fn succeed(r: &Replica) {
    finish(r.try_acquire().expect("admitted"), Outcome::Success)
}

/// One slow successful call straight on a breaker (for threads hammering it), taking `took`
/// on its manual clock.
pub fn slow_success<O: breaker_core::Observer>(
    breaker: &breaker_core::CircuitBreaker<ManualClock, O>,
    clock: &ManualClock,
    took: Duration,
) {
    if let Ok(permit) = breaker.try_acquire() {
        clock.advance(took);
        permit.record(Outcome::Success);
    }
}
