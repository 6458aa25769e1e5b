//! Several replicas of one breaker in one process, sharing state through the machine's
//! real Redis. Breaker time is each replica's manual clock; replicas talk when the test
//! syncs them (`sync_now`), except where the sync task's own schedule is what is tested.

mod common;

use std::time::Duration;

use breaker_core::{Config, Outcome, RejectReason, State};
use breaker_redis::{Link, RedisSharing};
use common::{Replica, eventually, fresh_name, on_demand, replica, transition_log};
use futures_util::future::join_all;

const OPEN: Duration = Duration::from_secs(10);

fn consecutive(name: &str, failures: u32, probes: u32) -> Config {
    Config::builder()
        .name(name.to_string())
        .consecutive_failures(failures)
        .half_open_probes(probes)
        .open_duration(OPEN)
        .build_config()
        .unwrap()
}

async fn sync_all(replicas: &[Replica]) {
    for r in replicas {
        r.sync_now().await.expect("sync with Redis");
    }
}

fn fail(r: &Replica) {
    r.try_acquire().expect("admitted").record(Outcome::Failure);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replicas_failures_trip_every_replica() {
    let name = fresh_name("trip-all").await;
    let replicas: Vec<_> = (0..3)
        .map(|_| replica(on_demand(), consecutive(&name, 3, 1)).0)
        .collect();
    sync_all(&replicas).await;
    for _ in 0..3 {
        fail(&replicas[0]);
    }
    assert_eq!(replicas[0].state(), State::Open);
    assert_eq!(replicas[1].state(), State::Closed, "not synced yet");
    sync_all(&replicas).await;
    for (i, r) in replicas.iter().enumerate() {
        assert_eq!(r.state(), State::Open, "replica {i}");
        let refused = r.try_acquire().unwrap_err();
        assert_eq!(refused.reason(), RejectReason::Open);
        assert!(refused.retry_after().unwrap() <= OPEN);
        assert_eq!(r.status().fleet.unwrap().state, State::Open);
    }
    let log = transition_log(&name).await;
    assert_eq!(log.len(), 1, "{log:?}");
    assert!(log[0].starts_with("1 open trip by "), "{log:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sync_task_carries_a_trip_to_every_replica_on_its_own() {
    let name = fresh_name("sync-task").await;
    let sharing = RedisSharing::new(common::redis_url()).sync_interval(Duration::from_millis(20));
    let replicas: Vec<_> = (0..3)
        .map(|_| replica(sharing.clone(), consecutive(&name, 2, 1)).0)
        .collect();
    eventually(
        Duration::from_secs(10),
        "every replica synced once",
        || async { replicas.iter().all(|r| r.status().link == Link::Synced) },
    )
    .await;
    fail(&replicas[2]);
    fail(&replicas[2]);
    eventually(
        Duration::from_secs(10),
        "the trip reached every replica",
        || async { replicas.iter().all(|r| r.state() == State::Open) },
    )
    .await;
    assert_eq!(transition_log(&name).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_window_trips_on_counts_no_replica_reaches_alone() {
    let name = fresh_name("window").await;
    let config = || {
        Config::builder()
            .name(name.clone())
            .count_window(20)
            .minimum_calls(12)
            .failure_rate(50.0)
            .open_duration(OPEN)
            .build_config()
            .unwrap()
    };
    let replicas: Vec<_> = (0..3).map(|_| replica(on_demand(), config()).0).collect();
    sync_all(&replicas).await;
    for r in &replicas {
        for _ in 0..4 {
            fail(r);
        }
        r.try_acquire().unwrap().record(Outcome::Success);
        assert_eq!(r.state(), State::Closed, "5 calls: below the 12 minimum");
    }
    replicas[0].sync_now().await.unwrap();
    let view = replicas[1].sync_now().await.unwrap();
    assert_eq!(view.state, State::Closed);
    assert_eq!((view.window.calls, view.window.failures), (10, 8));
    // The third replica's counts take the fleet to 15 calls, 12 failures: 80% >= 50%.
    let view = replicas[2].sync_now().await.unwrap();
    assert_eq!(view.state, State::Open);
    sync_all(&replicas).await;
    assert!(replicas.iter().all(|r| r.state() == State::Open));
    let log = transition_log(&name).await;
    assert_eq!(log.len(), 1);
    assert!(log[0].contains("open fleet window"), "{log:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_admits_its_probe_budget_in_total() {
    let name = fresh_name("probes").await;
    // Each replica alone would admit 3 probes: 15 for five replicas. The fleet: 2.
    let sharing = on_demand().fleet_probes(2);
    let replicas: Vec<_> = (0..5)
        .map(|_| replica(sharing.clone(), consecutive(&name, 1, 3)))
        .collect();
    let breakers: Vec<_> = replicas.iter().map(|(r, _)| r).collect();
    for r in &breakers {
        r.sync_now().await.unwrap();
    }
    fail(breakers[0]);
    for r in &breakers {
        r.sync_now().await.unwrap();
    }
    for (_, clock) in &replicas {
        clock.advance(OPEN + Duration::from_millis(1));
    }
    // Every replica wants probes, concurrently, for several rounds of sync.
    let mut rounds = Vec::new();
    for (r, _) in &replicas {
        rounds.push(async move {
            let mut held = Vec::new();
            for _ in 0..6 {
                match r.try_acquire() {
                    Ok(permit) => {
                        assert!(permit.is_probe());
                        held.push(permit);
                    }
                    Err(refused) => assert_eq!(refused.reason(), RejectReason::HalfOpenFull),
                }
                r.sync_now().await.unwrap();
            }
            held
        });
    }
    let held: Vec<_> = join_all(rounds).await;
    let probes: usize = held.iter().map(Vec::len).sum();
    assert_eq!(
        probes,
        2,
        "the fleet's budget, not 2 per replica: {:?}",
        held.iter().map(Vec::len).collect::<Vec<_>>()
    );
    assert!(breakers.iter().all(|r| r.state() == State::HalfOpen));
    for permit in held.into_iter().flatten() {
        permit.record(Outcome::Success);
    }
    for r in &breakers {
        r.sync_now().await.unwrap();
    }
    for r in &breakers {
        r.sync_now().await.unwrap();
        assert_eq!(r.state(), State::Closed);
    }
    let log = transition_log(&name).await;
    let states: Vec<_> = log.iter().map(|l| l.split(' ').nth(1).unwrap()).collect();
    assert_eq!(states, ["open", "half_open", "closed"], "{log:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_replicas_make_exactly_one_transition() {
    let name = fresh_name("race").await;
    let replicas: Vec<_> = (0..8)
        .map(|_| replica(on_demand(), consecutive(&name, 1, 1)).0)
        .collect();
    sync_all(&replicas).await;
    for round in 0..5u64 {
        // Every replica trips on its own, then all propose at once.
        for r in &replicas {
            r.trip();
        }
        let views = join_all(replicas.iter().map(|r| r.sync_now())).await;
        let generation = 2 * round + 1;
        for view in views {
            let view = view.unwrap();
            assert_eq!((view.generation, view.state), (generation, State::Open));
        }
        let made: u64 = replicas.iter().map(|r| r.status().fleet_transitions).sum();
        assert_eq!(made, round * 2 + 1, "one trip this round");
        // One replica's reset closes the fleet; all follow.
        replicas[(round as usize) % 8].reset();
        sync_all(&replicas).await;
        sync_all(&replicas).await;
        let states: Vec<_> = replicas
            .iter()
            .map(|r| (r.state(), r.status().fleet))
            .collect();
        assert!(
            replicas.iter().all(|r| r.state() == State::Closed),
            "{states:?} {:?}",
            transition_log(&name).await
        );
    }
    let log = transition_log(&name).await;
    assert_eq!(log.len(), 10, "{log:?}");
    for (i, entry) in log.iter().enumerate() {
        let expected = if i % 2 == 0 {
            "open trip"
        } else {
            "closed reset"
        };
        assert!(
            entry.starts_with(&format!("{} {expected}", i + 1)),
            "{log:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breaker_that_outlives_its_sharing_goes_on_alone() {
    let name = fresh_name("dropped").await;
    let (shared, clock) = replica(on_demand(), consecutive(&name, 1, 2));
    shared.sync_now().await.unwrap();
    let breaker = shared.breaker().clone(); // as a tower layer would hold it
    drop(shared);
    breaker.trip();
    clock.advance(OPEN + Duration::from_millis(1));
    let probes = (
        breaker.try_acquire().unwrap(),
        breaker.try_acquire().unwrap(),
    );
    assert!(
        probes.0.is_probe() && probes.1.is_probe(),
        "its own two probes, no fleet cap"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trip_made_before_the_first_sync_reaches_the_fleet() {
    let name = fresh_name("early-trip").await;
    // Redis is not asked before the first sync: the replica trips on its own first.
    let (early, _) = replica(on_demand(), consecutive(&name, 1, 1));
    fail(&early);
    assert_eq!(early.state(), State::Open);
    early.sync_now().await.unwrap();
    assert_eq!(early.state(), State::Open, "its own decision stands");
    let (late, _) = replica(on_demand(), consecutive(&name, 1, 1));
    assert_eq!(late.sync_now().await.unwrap().state, State::Open);
    assert_eq!(late.state(), State::Open);
}

/// Registered in a `Registry` (what an admin interface lists), a shared breaker shows its
/// link and the fleet's state in its details, and takes operator actions: a trip and a
/// reset reach the fleet, a forced open stays on its replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registered_shared_breaker_shows_the_fleet_and_takes_operator_actions() {
    use breaker_core::{OperatorAction, Registry};
    use std::sync::Arc;

    let name = fresh_name("registered").await;
    let a = Arc::new(replica(on_demand(), consecutive(&name, 3, 1)).0);
    let b = Arc::new(replica(on_demand(), consecutive(&name, 3, 1)).0);
    let registry = Registry::new();
    registry.register("payments", a.clone()).unwrap();
    registry.register("payments-b", b.clone()).unwrap();
    let detail = |r: &Registry, who: &str, key: &str| -> Option<String> {
        let details = r.get(who).expect("registered").breaker.details();
        details.into_iter().find(|(k, _)| k == key).map(|(_, v)| v)
    };
    assert_eq!(
        detail(&registry, "payments", "fleet.link").as_deref(),
        Some("connecting")
    );
    a.sync_now().await.unwrap();
    b.sync_now().await.unwrap();
    assert_eq!(
        detail(&registry, "payments", "fleet.link").as_deref(),
        Some("synced")
    );
    assert_eq!(
        detail(&registry, "payments", "fleet.state").as_deref(),
        Some("closed")
    );
    let entry = registry.get("payments").unwrap();
    assert_eq!(entry.breaker.name(), name);
    assert!(entry.breaker.config().is_some());

    entry.breaker.apply(OperatorAction::Trip).unwrap();
    a.sync_now().await.unwrap();
    b.sync_now().await.unwrap();
    assert_eq!(
        b.state(),
        State::Open,
        "the operator's trip reached the fleet"
    );
    assert_eq!(
        detail(&registry, "payments-b", "fleet.state").as_deref(),
        Some("open")
    );
    assert!(detail(&registry, "payments-b", "fleet.retry_after").is_some());

    registry
        .get("payments-b")
        .unwrap()
        .breaker
        .apply(OperatorAction::ForceOpen)
        .unwrap();
    entry.breaker.apply(OperatorAction::Reset).unwrap();
    a.sync_now().await.unwrap();
    b.sync_now().await.unwrap();
    assert_eq!(a.state(), State::Closed);
    assert_eq!(
        detail(&registry, "payments-b", "fleet.state").as_deref(),
        Some("closed"),
        "the reset reached the fleet"
    );
    assert_eq!(b.state(), State::ForcedOpen, "an operator mode stays local");
}
