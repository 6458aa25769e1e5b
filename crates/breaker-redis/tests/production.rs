//! What production Redis does to a shared fleet: state lost (restart without persistence,
//! FLUSHALL, a deleted or evicted key, a failover to a copy that lags), impossible values,
//! replies lost after a script ran, slow replies, mixed configurations. Every test starts a
//! redis-server of its own on a port of its own; breaker time is each replica's manual clock.

mod common;

use std::sync::Arc;
use std::time::Duration;

use breaker_core::{Config, Outcome, RejectReason, State};
use breaker_redis::{Link, RedisSharing, SyncError};
use breaker_test_support::RedisServer;
use breaker_test_support::proxy::{FaultProxy, Mode};
use common::{Replica, fail, finish, replica, succeed, sync_all, sync_until_ok};

fn own_redis() -> RedisServer {
    RedisServer::start()
}

async fn connect(url: &str) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(url).expect("a valid Redis URL");
    tokio::time::timeout(
        Duration::from_secs(5),
        client.get_multiplexed_async_connection(),
    )
    .await
    .expect("the test's redis-server answers within 5 s")
    .expect("the test's redis-server is reachable")
}

async fn log_at(url: &str, name: &str) -> Vec<String> {
    cmd(
        url,
        &["LRANGE", &format!("breaker:{{{name}}}:log"), "0", "-1"],
    )
    .await
}

fn consecutive(name: &str, failures: u32, probes: u32, open: Duration) -> Config {
    Config::builder()
        .name(name.to_string())
        .consecutive_failures(failures)
        .half_open_probes(probes)
        .open_duration(open)
        .build_config()
        .unwrap()
}

/// Syncs only when told to; any replica's trip is the fleet's (these tests are not about
/// the trip quorum: `tests/fleet.rs` is).
/// (A generous command timeout: these tests run many servers at once on a small machine;
/// the tests about timeouts set their own.)
fn on_demand(url: &str) -> RedisSharing {
    RedisSharing::new(url)
        .sync_interval(Duration::from_secs(60))
        .command_timeout(Duration::from_secs(2))
        .trip_quorum(1)
}

async fn cmd<T: redis::FromRedisValue>(url: &str, args: &[&str]) -> T {
    let mut conn = connect(url).await;
    let mut c = redis::cmd(args[0]);
    for a in &args[1..] {
        c.arg(*a);
    }
    c.query_async(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

async fn redis_ms(url: &str) -> u64 {
    let t: Vec<u64> = cmd(url, &["TIME"]).await;
    t[0] * 1000 + t[1] / 1000
}

// ----- 1. lost shared state -------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq)]
enum Loss {
    Restart,
    FlushAll,
    DeleteKey,
    /// `volatile-lru` under memory pressure: takes keys that have a time-to-live.
    EvictVolatile,
    /// `allkeys-lru` under memory pressure: takes any key.
    EvictAny,
    /// A failover to a copy that lags: the state as it was before the trip.
    OlderCopy,
}

async fn an_open_fleet_stays_open_through(loss: Loss) {
    let policy = match loss {
        Loss::EvictAny => "allkeys-lru",
        _ => "volatile-lru",
    };
    let mut server = breaker_test_support::RedisServer::start_with(&["--maxmemory-policy", policy]);
    let url = server.url();
    let name = format!("lost-{loss:?}");
    let state_key = format!("breaker:{{{name}}}");
    let open = Duration::from_secs(30);
    let replicas: Vec<_> = (0..3)
        .map(|_| replica(on_demand(&url), consecutive(&name, 1, 1, open)))
        .collect();
    let all: Vec<&Replica> = replicas.iter().map(|(r, _)| r).collect();
    sync_all(&all).await;
    let older: Vec<u8> = cmd(&url, &["DUMP", &state_key]).await;
    fail(all[0]);
    sync_all(&all).await;
    sync_all(&all).await;
    let before = all[1].status().fleet.unwrap();
    assert_eq!((before.state, before.open_attempts), (State::Open, 1));
    for (_, clock) in &replicas {
        clock.advance(Duration::from_secs(10)); // 20 s left
    }
    match loss {
        Loss::Restart => server.restart(),
        Loss::FlushAll => cmd::<()>(&url, &["FLUSHALL"]).await,
        Loss::DeleteKey => cmd::<()>(&url, &["DEL", &state_key]).await,
        Loss::EvictVolatile | Loss::EvictAny => {
            cmd::<()>(&url, &["CONFIG", "SET", "maxmemory", "1"]).await;
            let mut conn = connect(&url).await;
            let _: Result<(), _> = redis::cmd("SET")
                .arg("filler")
                .arg("x")
                .query_async(&mut conn)
                .await;
            cmd::<()>(&url, &["CONFIG", "SET", "maxmemory", "0"]).await;
            let exists: u32 = cmd(&url, &["EXISTS", &state_key]).await;
            if loss == Loss::EvictAny {
                assert_eq!(exists, 0, "allkeys-lru took the state");
            } else {
                assert_eq!(
                    exists, 1,
                    "the state has no time-to-live: volatile-lru leaves it"
                );
            }
        }
        Loss::OlderCopy => {
            cmd::<()>(&url, &["DEL", &state_key]).await;
            let mut conn = connect(&url).await;
            let _: () = redis::cmd("RESTORE")
                .arg(&state_key)
                .arg(0)
                .arg(older)
                .query_async(&mut conn)
                .await
                .unwrap();
        }
    }
    for r in &all {
        sync_until_ok(r).await;
    }
    sync_all(&all).await;
    let losses: u64 = all.iter().map(|r| r.status().state_losses).sum();
    let log = log_at(&url, &name).await;
    if loss == Loss::EvictVolatile {
        assert_eq!(losses, 0, "nothing lost: {log:?}");
    } else {
        assert_eq!(losses, 1, "detected once, re-seeded once: {log:?}");
        let last = log.last().expect("the re-seed is logged");
        assert!(last.contains(" open state lost, re-seeded by "), "{log:?}");
    }
    for (i, r) in all.iter().enumerate() {
        assert_eq!(r.state(), State::Open, "replica {i} after {loss:?}");
        let left = r.retry_after().unwrap();
        assert!(
            left <= Duration::from_secs(20) && left > Duration::from_secs(19),
            "replica {i}: {left:?} left"
        );
        let fleet = r.status().fleet.unwrap();
        assert_eq!(fleet.state, State::Open, "replica {i}: {fleet:?}");
        assert_eq!(fleet.open_attempts, 1, "the backoff count survives");
        // Re-seeded: the time the replicas had left (nothing lost: the fleet's own).
        let most = if loss == Loss::EvictVolatile {
            open
        } else {
            Duration::from_secs(20)
        };
        assert!(fleet.retry_after.unwrap() <= most, "{fleet:?}");
        assert!(
            fleet.generation > before.generation
                || (loss == Loss::EvictVolatile && fleet.generation == before.generation),
            "generations only move forward: {} after {}",
            fleet.generation,
            before.generation
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_fleet_stays_open_through_a_restart_without_persistence() {
    an_open_fleet_stays_open_through(Loss::Restart).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_fleet_stays_open_through_flushall() {
    an_open_fleet_stays_open_through(Loss::FlushAll).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_fleet_stays_open_through_a_deleted_state_key() {
    an_open_fleet_stays_open_through(Loss::DeleteKey).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_fleet_stays_open_through_volatile_lru_eviction() {
    an_open_fleet_stays_open_through(Loss::EvictVolatile).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_fleet_stays_open_through_allkeys_lru_eviction() {
    an_open_fleet_stays_open_through(Loss::EvictAny).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_fleet_stays_open_when_the_generation_goes_backwards() {
    an_open_fleet_stays_open_through(Loss::OlderCopy).await
}

/// After the state is lost, a replica that never synced (a pod started during the outage)
/// reaches Redis first: it cannot tell a loss from a new fleet and begins one, closed, at a
/// generation above anything the others saw. The replicas that knew the fleet open must not
/// follow it closed: they re-open it with the time they have left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_fleet_stays_open_when_a_new_replica_reaches_redis_first_after_a_loss() {
    let server = own_redis();
    let url = server.url();
    let name = "lost-newcomer-first";
    let open = Duration::from_secs(30);
    let replicas: Vec<_> = (0..3)
        .map(|_| replica(on_demand(&url), consecutive(name, 1, 1, open)))
        .collect();
    let all: Vec<&Replica> = replicas.iter().map(|(r, _)| r).collect();
    sync_all(&all).await;
    fail(all[0]);
    sync_all(&all).await;
    sync_all(&all).await;
    let before = all[1].status().fleet.unwrap();
    assert_eq!(before.state, State::Open);
    for (_, clock) in &replicas {
        clock.advance(Duration::from_secs(10)); // 20 s left
    }
    cmd::<()>(&url, &["FLUSHALL"]).await;
    let (newcomer, newcomer_clock) = replica(on_demand(&url), consecutive(name, 1, 1, open));
    newcomer.sync_now().await.expect("sync with Redis");
    let begun = newcomer.status().fleet.unwrap();
    assert_eq!(
        begun.state,
        State::Closed,
        "a new replica begins a new fleet"
    );
    assert!(begun.generation > before.generation);
    sync_all(&all).await;
    let log = log_at(&url, name).await;
    let losses: u64 = all.iter().map(|r| r.status().state_losses).sum();
    assert_eq!(
        losses, 1,
        "the first replica that saw the open fleet re-opens it: {log:?}"
    );
    assert!(
        log.last()
            .unwrap()
            .contains(" open state lost, re-opened by "),
        "{log:?}"
    );
    for (i, r) in all.iter().enumerate() {
        assert_eq!(r.state(), State::Open, "replica {i}: {log:?}");
        let left = r.retry_after().unwrap();
        assert!(
            left <= Duration::from_secs(20) && left > Duration::from_secs(19),
            "replica {i}: {left:?} left"
        );
        let fleet = r.status().fleet.unwrap();
        assert_eq!(
            (fleet.state, fleet.open_attempts),
            (State::Open, 1),
            "replica {i}"
        );
    }
    newcomer.sync_now().await.expect("sync with Redis");
    assert_eq!(
        newcomer.state(),
        State::Open,
        "the newcomer follows: {log:?}"
    );
    drop(newcomer_clock);
}

/// The same loss, but the history the new replica began has moved on (it tripped and was
/// reset) before the replicas that knew the old one come back: their view is old news and
/// they follow the fleet as it is now, closed. (A replica that re-seeds a lost state knows
/// the fleet: replicas with older views follow it too.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_view_does_not_reopen_a_history_that_moved_on() {
    let server = own_redis();
    let url = server.url();
    let name = "lost-moved-on";
    let open = Duration::from_secs(30);
    let replicas: Vec<_> = (0..2)
        .map(|_| replica(on_demand(&url), consecutive(name, 1, 1, open)))
        .collect();
    let all: Vec<&Replica> = replicas.iter().map(|(r, _)| r).collect();
    sync_all(&all).await;
    fail(all[0]);
    sync_all(&all).await;
    sync_all(&all).await;
    assert_eq!(all[1].state(), State::Open);
    cmd::<()>(&url, &["FLUSHALL"]).await;
    let (newcomer, _) = replica(on_demand(&url), consecutive(name, 1, 1, open));
    newcomer.sync_now().await.expect("sync with Redis");
    newcomer.trip();
    assert_eq!(newcomer.sync_now().await.unwrap().state, State::Open);
    newcomer.reset();
    assert_eq!(newcomer.sync_now().await.unwrap().state, State::Closed);
    sync_all(&all).await;
    let log = log_at(&url, name).await;
    for (i, r) in all.iter().enumerate() {
        assert_eq!(r.state(), State::Closed, "replica {i}: {log:?}");
    }
    assert!(!log.iter().any(|l| l.contains("re-opened")), "{log:?}");
}

// ----- 2. values that parse but cannot be true ------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_impossible_open_period_is_cut_to_the_local_maximum() {
    let server = own_redis();
    let url = server.url();
    let name = "huge-period";
    let open = Duration::from_secs(30);
    let (a, _) = replica(on_demand(&url), consecutive(name, 1, 1, open));
    let (b, _) = replica(on_demand(&url), consecutive(name, 1, 1, open));
    sync_all(&[&a, &b]).await;
    fail(&a);
    a.sync_now().await.unwrap();
    cmd::<()>(
        &url,
        &[
            "HSET",
            "breaker:{huge-period}",
            "open_ms",
            "9007199254740991",
        ],
    )
    .await;
    b.sync_now().await.unwrap();
    assert_eq!(b.state(), State::Open);
    assert!(
        b.retry_after().unwrap() <= open,
        "{:?}: at most the local maximum",
        b.retry_after()
    );
    assert!(b.status().fleet.unwrap().retry_after.unwrap() <= open);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phase_start_in_the_future_does_not_stretch_the_open_period() {
    let server = own_redis();
    let url = server.url();
    let name = "future-start";
    let open = Duration::from_secs(10);
    let (a, _) = replica(on_demand(&url), consecutive(name, 1, 1, open));
    let (b, _) = replica(on_demand(&url), consecutive(name, 1, 1, open));
    sync_all(&[&a, &b]).await;
    fail(&a);
    a.sync_now().await.unwrap();
    // Redis's clock stepped back an hour (or a failover to a host whose clock is behind).
    let future = (redis_ms(&url).await + 3_600_000).to_string();
    cmd::<()>(&url, &["HSET", "breaker:{future-start}", "since", &future]).await;
    b.sync_now().await.unwrap();
    assert_eq!(b.state(), State::Open);
    assert!(
        b.retry_after().unwrap() <= open,
        "{:?}: an open period of 10 s stays 10 s",
        b.retry_after()
    );
    assert_eq!(b.status().clock_steps, 1, "and the clock step is reported");
}

// ----- 3. at most once ------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_whose_reply_is_lost_sends_nothing_twice_and_loses_no_token() {
    let server = own_redis();
    let url = server.url();
    let name = "lost-reply";
    let open = Duration::from_secs(10);
    let proxy = FaultProxy::start(server.addr()).await;
    let via_proxy = RedisSharing::new(format!("redis://{}", proxy.addr()))
        .sync_interval(Duration::from_secs(60))
        .command_timeout(Duration::from_millis(300))
        .fleet_probes(2)
        .trip_quorum(1);
    let (a, a_clock) = replica(via_proxy, consecutive(name, 1, 2, open));
    let (b, b_clock) = replica(
        on_demand(&url).fleet_probes(2),
        consecutive(name, 1, 2, open),
    );
    sync_all(&[&a, &b]).await;
    fail(&b);
    sync_all(&[&b, &a]).await;
    a_clock.advance(open + Duration::from_millis(1));
    b_clock.advance(open + Duration::from_millis(1));
    // A wants a probe, is granted one, and its probe succeeds.
    assert!(a.try_acquire().is_err());
    a.sync_now().await.unwrap();
    succeed(&a);
    assert_eq!(a.status().fleet.unwrap().state, State::HalfOpen);
    // A asks for one more and reports its success; Redis applies it, the reply is lost.
    assert!(a.try_acquire().is_err());
    proxy.set_mode(Mode::SwallowReplies);
    let error = a.sync_now().await.unwrap_err();
    assert!(matches!(error, SyncError::Timeout(_)), "{error}");
    proxy.set_mode(Mode::Pass);
    proxy.cut();
    sync_until_ok(&a).await;
    let fleet = b.sync_now().await.unwrap();
    assert_eq!(
        (fleet.state, fleet.probe_successes),
        (State::HalfOpen, 1),
        "one real success, counted once: the fleet needs two"
    );
    // The token granted in the lost reply is A's, not lost.
    let probe = a
        .try_acquire()
        .expect("the token granted in the lost reply");
    assert!(probe.is_probe());
    finish(probe, Outcome::Success);
    a.sync_now().await.unwrap();
    b.sync_now().await.unwrap();
    assert_eq!(
        b.state(),
        State::Closed,
        "two real successes close the fleet"
    );
}

/// Sync numbers make a sync count once; a replica restarted under the same id (a pod name)
/// starts its numbers again, and is not taken for a replay of the old process's syncs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_restarted_under_the_same_id_is_heard() {
    let server = own_redis();
    let url = server.url();
    let name = "restarted";
    let sharing = on_demand(&url).replica_id("payments-0");
    let (first, _) = replica(
        sharing.clone(),
        consecutive(name, 1, 1, Duration::from_secs(10)),
    );
    for _ in 0..5 {
        first.sync_now().await.unwrap();
    }
    drop(first);
    let (again, _) = replica(sharing, consecutive(name, 1, 1, Duration::from_secs(10)));
    again.sync_now().await.unwrap();
    fail(&again);
    let view = again.sync_now().await.unwrap();
    assert_eq!(view.state, State::Open, "its trip was heard");
}

// ----- 4. the crate's own counts are never bad data --------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_calls_recorded_during_syncs_are_never_bad_data() {
    let server = own_redis();
    let url = server.url();
    let config = Config::builder()
        .name("slow-marks")
        .count_window(100)
        .failure_rate(50.0)
        .slow_call_duration(Duration::from_millis(1))
        .build_config()
        .unwrap();
    let (r, clock) = replica(on_demand(&url), config);
    r.sync_now().await.unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let breaker = r.breaker().clone();
            let clock = clock.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    // Every call slow: the slow mark lands just after the call's count.
                    common::slow_success(&breaker, &clock, Duration::from_millis(5));
                }
            })
        })
        .collect();
    let mut errors = Vec::new();
    for _ in 0..400 {
        if let Err(e) = r.sync_now().await {
            errors.push(e);
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    assert!(
        errors.is_empty(),
        "{} failed syncs: {:?}",
        errors.len(),
        errors.first()
    );
    assert_eq!(r.status().bad_data, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_answered_bad_data_changes_nothing() {
    let server = own_redis();
    let url = server.url();
    let name = "bad-changes-nothing";
    let state_key = format!("breaker:{{{name}}}");
    let (r, _) = replica(
        on_demand(&url),
        consecutive(name, 1, 1, Duration::from_secs(10)),
    );
    r.sync_now().await.unwrap();
    fail(&r);
    r.sync_now().await.unwrap();
    // Foreign data in the window the next closed generation would read.
    let now = redis_ms(&url).await;
    let generation = r.status().fleet.unwrap().generation + 1;
    for bucket in [now / 1000, now / 1000 + 1] {
        cmd::<()>(
            &url,
            &[
                "HSET",
                &format!("{state_key}:b:{generation}:{bucket}"),
                "calls",
                "1",
                "failures",
                "999",
            ],
        )
        .await;
    }
    cmd::<()>(&url, &["HSET", &format!("{state_key}:w"), "0:c", "banana"]).await;
    // (Read after the foreign data is in: a sync of the replica's own task, woken by its
    // trip, may land any time before, and every sync after it is answered "bad data".)
    let log_before = log_at(&url, name).await;
    let state_before: Vec<String> = cmd(&url, &["HGETALL", &state_key]).await;
    r.reset(); // a local decision, proposed in the next sync
    let error = r.sync_now().await.unwrap_err();
    assert!(matches!(error, SyncError::BadData(_)), "{error}");
    assert_eq!(log_at(&url, name).await, log_before, "no transition made");
    let state_after: Vec<String> = cmd(&url, &["HGETALL", &state_key]).await;
    assert_eq!(state_before, state_after, "the state is untouched");
}

/// A vote hash filled with thousands of well-formed fields (not something this crate writes,
/// but data a sync must survive): the script writes them back in chunks, so the sync succeeds
/// instead of failing after it wrote the state (`unpack` of a long list fails in Lua).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooded_vote_hash_does_not_fail_a_sync_halfway() {
    let server = own_redis();
    let url = server.url();
    let name = "flooded-votes";
    let (r, _) = replica(
        on_demand(&url),
        consecutive(name, 1, 1, Duration::from_secs(10)),
    );
    r.sync_now().await.unwrap();
    let now = redis_ms(&url).await.to_string();
    let key = format!("breaker:{{{name}}}:v");
    let mut conn = connect(&url).await;
    let mut hset = redis::cmd("HSET");
    hset.arg(&key);
    for i in 0..6_000 {
        hset.arg(format!("replica-{i}")).arg(&now);
    }
    // One stale vote: the sync drops it and writes the others back.
    hset.arg("long-gone").arg("1");
    let _: () = hset.query_async(&mut conn).await.unwrap();
    r.sync_now().await.expect("the sync succeeds");
    assert_eq!(r.status().link, Link::Synced);
    let kept: u64 = cmd(&url, &["HLEN", &key]).await;
    assert_eq!(kept, 6_000, "every fresh vote written back");
}

// ----- 5. fleet_probes above the local half_open_probes ----------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_closes_after_fleet_probes_successes_wherever_they_ran() {
    let server = own_redis();
    let url = server.url();
    let name = "fleet-probes";
    let open = Duration::from_secs(10);
    // The local default: one probe. The fleet: three.
    let replicas: Vec<_> = (0..3)
        .map(|_| {
            replica(
                on_demand(&url).fleet_probes(3),
                consecutive(name, 1, 1, open),
            )
        })
        .collect();
    let all: Vec<&Replica> = replicas.iter().map(|(r, _)| r).collect();
    sync_all(&all).await;
    fail(all[0]);
    sync_all(&all).await;
    for (_, clock) in &replicas {
        clock.advance(open + Duration::from_millis(1));
    }
    // Every replica refuses a call for want of a token, and asks for one.
    for _ in 0..2 {
        for r in &all {
            if r.try_acquire().is_err() {
                r.sync_now().await.unwrap();
            }
        }
    }
    let mut probes: Vec<_> = all
        .iter()
        .map(|r| r.try_acquire().expect("one token each"))
        .collect();
    finish(probes.remove(0), Outcome::Success);
    sync_all(&all).await;
    let fleet = all[1].status().fleet.unwrap();
    assert_eq!(
        (fleet.state, fleet.probe_successes),
        (State::HalfOpen, 1),
        "one success of three"
    );
    assert_eq!(
        all[0].state(),
        State::HalfOpen,
        "no replica closes on its own"
    );
    for p in probes {
        finish(p, Outcome::Success);
    }
    sync_all(&all).await;
    sync_all(&all).await;
    assert!(all.iter().all(|r| r.state() == State::Closed));
}

// ----- 6. a local decision between following and deciding -------------------------------

mod trip_on_follow {
    use super::*;
    use breaker_core::{CircuitBreaker, Event, ManualClock, Observer};
    use breaker_redis::{FleetObserver, SharedBreaker};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{OnceLock, Weak};

    /// Trips the breaker the moment it follows the fleet to closed, once armed: a local
    /// decision that lands between `follow` and whatever the sync task reads after it.
    #[derive(Default)]
    pub(super) struct TripWhenClosed {
        pub(super) armed: AtomicBool,
        pub(super) breaker: OnceLock<Weak<CircuitBreaker<ManualClock, FleetObserver<Self>>>>,
    }

    impl Observer for TripWhenClosed {
        fn on_event(&self, event: &Event) {
            if let Event::StateTransition {
                to: State::Closed, ..
            } = event
                && self.armed.swap(false, Ordering::SeqCst)
                && let Some(b) = self.breaker.get().and_then(Weak::upgrade)
            {
                b.trip();
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_local_trip_landing_just_after_a_follow_is_proposed() {
        let server = own_redis();
        let url = server.url();
        let name = "between";
        let open = Duration::from_secs(10);
        let r: SharedBreaker<ManualClock, TripWhenClosed> = on_demand(&url)
            .start_with(
                consecutive(name, 1, 1, open),
                ManualClock::new(),
                TripWhenClosed::default(),
            )
            .unwrap();
        let _ = r
            .observer()
            .inner()
            .breaker
            .set(Arc::downgrade(r.breaker()));
        let (other, _) = replica(on_demand(&url), consecutive(name, 1, 1, open));
        r.sync_now().await.unwrap();
        other.sync_now().await.unwrap();
        fail(&other);
        other.sync_now().await.unwrap();
        r.sync_now().await.unwrap();
        assert_eq!(r.state(), State::Open, "followed the fleet");
        // r follows the reset (in this sync, or in one its sync task makes first), and trips
        // on its own right after.
        r.observer().inner().armed.store(true, Ordering::SeqCst);
        other.reset();
        other.sync_now().await.unwrap();
        r.sync_now().await.unwrap();
        assert!(
            !r.observer().inner().armed.load(Ordering::SeqCst),
            "it followed"
        );
        assert_eq!(r.state(), State::Open, "its own trip");
        r.sync_now().await.unwrap();
        assert_eq!(r.state(), State::Open, "not undone by the next sync");
        assert_eq!(
            other.sync_now().await.unwrap().state,
            State::Open,
            "the trip reached the fleet"
        );
    }
}

// ----- 7. an orphaned allowance ---------------------------------------------------------

#[test]
fn an_allowance_outliving_its_sync_task_lapses_and_the_link_reads_stale() {
    let server = own_redis();
    let url = server.url();
    let name = "orphan";
    let open = Duration::from_secs(10);
    let main = tokio::runtime::Runtime::new().unwrap();
    let doomed = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let config = |name| consecutive(name, 1, 1, open);
    let sharing = RedisSharing::new(url.clone())
        .sync_interval(Duration::from_secs(10))
        .fleet_probes(1)
        .trip_quorum(1);
    let (orphan, orphan_clock) = {
        let _in = doomed.enter();
        replica(sharing.clone(), config(name))
    };
    let (holder, holder_clock) = {
        let _in = main.enter();
        replica(sharing, config(name))
    };
    doomed.block_on(orphan.sync_now()).unwrap();
    main.block_on(holder.sync_now()).unwrap();
    fail(&holder);
    main.block_on(holder.sync_now()).unwrap();
    doomed.block_on(orphan.sync_now()).unwrap();
    holder_clock.advance(open + Duration::from_millis(1));
    orphan_clock.advance(open + Duration::from_millis(1));
    // The holder takes the fleet's only token; the orphan is left with none.
    assert!(holder.try_acquire().is_err());
    main.block_on(holder.sync_now()).unwrap();
    let _probe = holder.try_acquire().expect("the fleet's token");
    assert!(orphan.try_acquire().is_err());
    doomed.block_on(orphan.sync_now()).unwrap();
    assert_eq!(
        orphan.try_acquire().unwrap_err().reason(),
        RejectReason::HalfOpenFull
    );
    // Its runtime shuts down; adapters still hold the breaker.
    drop(doomed);
    orphan_clock.advance(Duration::from_secs(31));
    assert!(
        orphan.try_acquire().is_ok(),
        "the allowance lapsed: the replica probes on its own"
    );
    assert_eq!(orphan.status().link, Link::Stale);
    assert_eq!(holder.status().link, Link::Synced, "its clock did not move");
}

// ----- 8. first contact -----------------------------------------------------------------

async fn first_contact(after_trip: impl FnOnce(&Replica, &breaker_core::ManualClock)) {
    let server = own_redis();
    let url = server.url();
    let name = "first-contact";
    // Backoff: 1 s for a first open period, 10 minutes for every later one.
    let config = || {
        Config::builder()
            .name(name)
            .consecutive_failures(1)
            .exponential_open_duration(Duration::from_secs(1), 600.0, Duration::from_secs(600))
            .build_config()
            .unwrap()
    };
    // The fleet has been open before: its period is 10 minutes now.
    let (fleet, fleet_clock) = replica(on_demand(&url), config());
    fleet.sync_now().await.unwrap();
    fail(&fleet);
    fleet.sync_now().await.unwrap();
    fleet_clock.advance(Duration::from_millis(1100));
    assert_eq!(fleet.state(), State::HalfOpen);
    fleet.sync_now().await.unwrap();
    fleet.trip(); // its probe would have failed
    let view = fleet.sync_now().await.unwrap();
    assert_eq!((view.state, view.open_attempts), (State::Open, 2));
    // A new replica starts while Redis is out of its reach, and trips on its own (its first
    // open period: 1 s) before its first successful sync.
    let proxy = FaultProxy::start(server.addr()).await;
    proxy.set_mode(Mode::Refuse);
    let (late, clock) = replica(on_demand(&format!("redis://{}", proxy.addr())), config());
    fail(&late);
    after_trip(&late, &clock);
    proxy.set_mode(Mode::Pass);
    sync_until_ok(&late).await;
    let view = fleet.sync_now().await.unwrap();
    assert_eq!(
        view.state,
        State::Open,
        "the fleet's 10 minutes stand: {:?}",
        log_at(&url, name).await
    );
    assert!(view.retry_after.unwrap() > Duration::from_secs(590));
    assert_eq!(late.state(), State::Open);
    assert!(late.retry_after().unwrap() > Duration::from_secs(590));
    clock.advance(Duration::from_secs(2));
    late.sync_now().await.unwrap();
    assert_eq!(
        late.state(),
        State::Open,
        "its own second is not the fleet's"
    );
    assert_eq!(fleet.sync_now().await.unwrap().state, State::Open);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_contact_of_a_replica_still_open_follows_the_fleets_period() {
    first_contact(|_, _| {}).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_contact_of_a_replica_that_half_opened_follows_the_fleet() {
    first_contact(|late, clock| {
        clock.advance(Duration::from_millis(1100));
        assert_eq!(late.state(), State::HalfOpen);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_contact_of_a_replica_that_closed_on_its_own_follows_the_fleet() {
    first_contact(|late, clock| {
        clock.advance(Duration::from_millis(1100));
        succeed(late);
        assert_eq!(late.state(), State::Closed);
    })
    .await
}

/// A replica that probed on its own before its first contact with a half-open fleet: its
/// successes belong to its own half-open period, not the fleet's. The fleet closes after
/// `fleet_probes` successes in its own period, never on probes made before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_made_before_first_contact_do_not_count_in_the_fleets_half_open_period() {
    let server = own_redis();
    let url = server.url();
    let name = "half-open-first-contact";
    let config = || consecutive(name, 1, 1, Duration::from_secs(1));
    let (fleet, fleet_clock) = replica(on_demand(&url).fleet_probes(2), config());
    fleet.sync_now().await.unwrap();
    fail(&fleet);
    fleet.sync_now().await.unwrap();
    fleet_clock.advance(Duration::from_millis(1100));
    let view = fleet.sync_now().await.unwrap();
    assert_eq!(
        view.state,
        State::HalfOpen,
        "{:?}",
        log_at(&url, name).await
    );
    // A new replica, out of Redis's reach, trips, half-opens and probes once on its own.
    let proxy = FaultProxy::start(server.addr()).await;
    proxy.set_mode(Mode::Refuse);
    let (late, clock) = replica(
        on_demand(&format!("redis://{}", proxy.addr())).fleet_probes(2),
        config(),
    );
    fail(&late);
    clock.advance(Duration::from_millis(1100));
    succeed(&late);
    assert_eq!(late.state(), State::HalfOpen, "one of its two probes");
    proxy.set_mode(Mode::Pass);
    sync_until_ok(&late).await;
    late.sync_now().await.unwrap();
    // One real probe of the fleet's period, through a token the fleet grants.
    assert!(fleet.try_acquire().is_err(), "no token yet");
    fleet.sync_now().await.unwrap();
    succeed(&fleet);
    let view = fleet.sync_now().await.unwrap();
    assert_eq!(
        view.state,
        State::HalfOpen,
        "one success in the fleet's period, of two: {:?}",
        log_at(&url, name).await
    );
}

/// A replica's fleet probe fails while Redis is out of its reach; on its own again, it
/// half-opens and its own probe succeeds. That success is not the fleet's: the fleet does
/// not close until a probe it granted succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_probes_after_a_failed_fleet_probe_do_not_close_the_fleet() {
    let server = own_redis();
    let url = server.url();
    let name = "own-probes-after-a-failed-one";
    let config = || consecutive(name, 1, 1, Duration::from_secs(1));
    let proxy = FaultProxy::start(server.addr()).await;
    let (cut, cut_clock) = replica(
        on_demand(&format!("redis://{}", proxy.addr())).fleet_probes(1),
        config(),
    );
    let (other, other_clock) = replica(on_demand(&url).fleet_probes(1), config());
    sync_all(&[&cut, &other]).await;
    fail(&other);
    sync_all(&[&other, &cut]).await;
    cut_clock.advance(Duration::from_millis(1100));
    other_clock.advance(Duration::from_millis(1100));
    assert!(cut.try_acquire().is_err(), "half-open, no token yet");
    assert_eq!(cut.sync_now().await.unwrap().state, State::HalfOpen);
    cut.sync_now().await.unwrap();
    let probe = cut.try_acquire().expect("the fleet's token");
    // Cut off, the fleet's probe fails; alone, its own probe succeeds and it closes.
    proxy.set_mode(Mode::Refuse);
    proxy.cut();
    assert!(cut.sync_now().await.is_err());
    finish(probe, Outcome::Failure);
    cut_clock.advance(Duration::from_millis(1100));
    succeed(&cut);
    assert_eq!(cut.state(), State::Closed);
    proxy.set_mode(Mode::Pass);
    sync_until_ok(&cut).await;
    // (Half-open still, or open again if a sync of the replica's own task, woken by the
    // failure, reached Redis after all: either way not closed.)
    let view = other.sync_now().await.unwrap();
    assert_ne!(
        view.state,
        State::Closed,
        "no probe the fleet granted succeeded: {:?}",
        log_at(&url, name).await
    );
}

// ----- 9. hoarded tokens ----------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_an_idle_replica_does_not_use_goes_back_to_the_fleet() {
    let server = own_redis();
    let url = server.url();
    let name = "hoarded";
    let open = Duration::from_secs(10);
    let config = || {
        Config::builder()
            .name(name)
            .consecutive_failures(1)
            .open_duration(open)
            .max_half_open(Duration::from_secs(3600))
            .build_config()
            .unwrap()
    };
    let sharing = on_demand(&url).fleet_probes(1);
    let (idle, idle_clock) = replica(sharing.clone(), config());
    let (busy, busy_clock) = replica(sharing, config());
    sync_all(&[&idle, &busy]).await;
    fail(&busy);
    sync_all(&[&busy, &idle]).await;
    idle_clock.advance(open + Duration::from_millis(1));
    busy_clock.advance(open + Duration::from_millis(1));
    // One stray call on the idle replica: it asks for, and gets, the only token.
    assert!(idle.try_acquire().is_err(), "{:?}", idle.status());
    idle.sync_now().await.unwrap();
    assert!(busy.try_acquire().is_err());
    busy.sync_now().await.unwrap();
    assert!(
        busy.try_acquire().is_err(),
        "the idle replica holds it: {:?} {:?} {:?} {:?} {:?} {:?}",
        idle.status(),
        idle.snapshot(),
        busy.status(),
        busy.probe_allowance(),
        busy.snapshot(),
        log_at(&url, name).await
    );
    // A few sync intervals later, unused, it goes back to the fleet; the busy replica's
    // request, not met, stands.
    idle_clock.advance(Duration::from_secs(181));
    idle.sync_now().await.unwrap();
    busy.sync_now().await.unwrap();
    let probe = busy
        .try_acquire()
        .expect("the token the idle replica gave back");
    assert!(probe.is_probe());
    assert_eq!(
        idle.try_acquire().unwrap_err().reason(),
        RejectReason::HalfOpenFull,
        "the idle replica gave it up"
    );
    finish(probe, Outcome::Success);
    sync_all(&[&busy, &idle]).await;
    sync_all(&[&busy, &idle]).await;
    assert_eq!(idle.state(), State::Closed);
}

// ----- 10. a slow Redis -----------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_redis_is_reported_as_slow() {
    let server = own_redis();
    let url = server.url();
    let (r, _) = replica(
        on_demand(&url).command_timeout(Duration::from_millis(200)),
        consecutive("slow-redis", 1, 1, Duration::from_secs(10)),
    );
    r.sync_now().await.unwrap();
    cmd::<()>(&url, &["CLIENT", "PAUSE", "1500", "ALL"]).await;
    let error = r.sync_now().await.unwrap_err();
    assert!(matches!(error, SyncError::Timeout(_)), "{error:?}");
}

// ----- 11. names and mixed configurations ----------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_with_braces_is_refused() {
    for name in ["a{b", "a}b", "{x}"] {
        let config = Config::builder().name(name).build_config().unwrap();
        let error = RedisSharing::new("redis://127.0.0.1:1")
            .start(config)
            .expect_err(name);
        assert!(error.to_string().contains("name"), "{error}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_with_other_thresholds_follow_the_fleets_and_say_so() {
    let server = own_redis();
    let url = server.url();
    let name = "mixed";
    let config = |rate: f64| {
        Config::builder()
            .name(name)
            .count_window(100)
            .minimum_calls(10)
            .failure_rate(rate)
            .open_duration(Duration::from_secs(10))
            .build_config()
            .unwrap()
    };
    let (old, _) = replica(on_demand(&url), config(50.0));
    old.sync_now().await.unwrap();
    let (new, _) = replica(on_demand(&url), config(90.0));
    new.sync_now().await.unwrap();
    for r in [&old, &new] {
        for _ in 0..3 {
            fail(r);
        }
        succeed(r);
        succeed(r);
    }
    old.sync_now().await.unwrap();
    // The fleet's window: 10 calls, 60 % failures. The fleet's threshold is 50 %.
    let view = new.sync_now().await.unwrap();
    assert_eq!(
        view.state,
        State::Open,
        "whoever syncs, the fleet's rule decides"
    );
    assert_eq!(old.status().config_mismatch, None);
    let mismatch = new
        .status()
        .config_mismatch
        .expect("the mismatch is reported");
    assert!(
        mismatch.contains("failure_rate: the fleet's 50%, this replica's 90%"),
        "{mismatch}"
    );
}

/// Once no replica has reported the fleet's parameters for a while (the last replica of the
/// old configuration is gone: the end of a rolling deploy), the next configuration becomes
/// the fleet's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_configuration_takes_over_when_the_last_old_replica_is_gone() {
    let server = own_redis();
    let url = server.url();
    let name = "rolling";
    let config = |probes: u32| {
        Config::builder()
            .name(name)
            .consecutive_failures(2)
            .half_open_probes(probes)
            .build_config()
            .unwrap()
    };
    // Short intervals: adopting waits ten leases of Redis time (the subject here).
    let sharing = RedisSharing::new(url.clone())
        .sync_interval(Duration::from_millis(10))
        .command_timeout(Duration::from_millis(50));
    let (old, _) = replica(sharing.clone(), config(1));
    old.sync_now().await.unwrap();
    let (new, _) = replica(sharing, config(3));
    new.sync_now().await.unwrap();
    assert!(new.status().config_mismatch.is_some());
    drop(old);
    common::eventually(
        Duration::from_secs(20),
        "the new configuration is adopted",
        || async { new.status().config_mismatch.is_none() && new.status().syncs > 2 },
    )
    .await;
    let params: String = cmd(&url, &["HGET", "breaker:{rolling}", "params"]).await;
    assert!(params.contains("p=3"), "{params}");
}

// ----- 12. quorum: see `common::scenarios`, run on a single Redis and a cluster.
