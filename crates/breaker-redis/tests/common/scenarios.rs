//! Fleet behaviour, written once and run against a single redis-server (`tests/fleet.rs`)
//! and a Redis Cluster (`tests/cluster.rs`). Breaker time is each replica's manual clock;
//! replicas talk when a scenario syncs them (`sync_now`), except where the sync task's own
//! schedule is what is tested.

use std::time::Duration;

use breaker_core::{Config, Outcome, RejectReason, State};
use breaker_redis::Link;
use futures_util::future::join_all;

use super::{
    Replica, Topology, entry, eventually, fail, finish, moves, replica, succeed, sync_all,
};

pub const OPEN: Duration = Duration::from_secs(10);

pub fn consecutive(name: &str, failures: u32, probes: u32) -> Config {
    Config::builder()
        .name(name.to_string())
        .consecutive_failures(failures)
        .half_open_probes(probes)
        .open_duration(OPEN)
        .build_config()
        .unwrap()
}

/// With a trip quorum of one, one replica's failures open every replica.
pub async fn a_trip_with_a_quorum_of_one_reaches_every_replica(redis: &Topology, name: &str) {
    let replicas: Vec<_> = (0..3)
        .map(|_| replica(redis.on_demand().trip_quorum(1), consecutive(name, 3, 1)).0)
        .collect();
    let all: Vec<&Replica> = replicas.iter().collect();
    sync_all(&all).await;
    for _ in 0..3 {
        fail(&replicas[0]);
    }
    assert_eq!(replicas[0].state(), State::Open);
    assert_eq!(replicas[1].state(), State::Closed, "not synced yet");
    sync_all(&all).await;
    for (i, r) in replicas.iter().enumerate() {
        assert_eq!(r.state(), State::Open, "replica {i}");
        let refused = r.try_acquire().unwrap_err();
        assert_eq!(refused.reason(), RejectReason::Open);
        assert!(refused.retry_after().unwrap() <= OPEN);
        assert_eq!(r.status().fleet.unwrap().state, State::Open);
    }
    let log = redis.admin().await.log(name).await;
    assert_eq!(moves(&log), ["open trip"], "{log:?}");
}

/// With the default quorum of two, one replica's own trip stays its own (it decides alone,
/// and says so); a second replica's trip opens the fleet.
pub async fn one_replicas_trip_stays_its_own_until_a_quorum_agrees(redis: &Topology, name: &str) {
    let replicas: Vec<_> = (0..3)
        .map(|_| replica(redis.on_demand(), consecutive(name, 2, 1)))
        .collect();
    let all: Vec<&Replica> = replicas.iter().map(|(r, _)| r).collect();
    sync_all(&all).await;
    fail(all[0]);
    fail(all[0]);
    sync_all(&all).await;
    sync_all(&all).await;
    assert_eq!(
        all[0].state(),
        State::Open,
        "its own problem: it stays open"
    );
    let status = all[0].status();
    assert!(status.own_trip, "{status:?}");
    assert_eq!(status.fleet.unwrap().trip_votes, 1);
    assert_eq!(all[1].state(), State::Closed, "not everyone's");
    assert_eq!(all[2].state(), State::Closed);
    assert!(all[1].try_acquire().is_ok());
    // Its own open period ends; it probes on its own and closes: no fleet transition.
    replicas[0].1.advance(OPEN + Duration::from_millis(1));
    succeed(all[0]);
    assert_eq!(all[0].state(), State::Closed);
    sync_all(&all).await;
    assert!(!all[0].status().own_trip);
    assert!(redis.admin().await.log(name).await.is_empty());
    // Two replicas trip: the fleet opens.
    for r in &all[..2] {
        fail(r);
        fail(r);
    }
    sync_all(&all).await;
    sync_all(&all).await;
    assert!(
        all.iter().all(|r| r.state() == State::Open),
        "two replicas agree: the fleet opens"
    );
    let log = redis.admin().await.log(name).await;
    assert_eq!(moves(&log), ["open quorum of 2"], "{log:?}");
}

/// The sync task alone (no `sync_now`) carries a trip to every replica.
pub async fn the_sync_task_carries_a_trip_to_every_replica_on_its_own(
    redis: &Topology,
    name: &str,
) {
    let sharing = redis
        .sharing()
        .sync_interval(Duration::from_millis(20))
        .trip_quorum(1);
    let replicas: Vec<_> = (0..3)
        .map(|_| replica(sharing.clone(), consecutive(name, 2, 1)).0)
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
    assert_eq!(redis.admin().await.log(name).await.len(), 1);
}

/// The fleet's window trips on counts no replica reaches alone.
pub async fn the_fleet_window_trips_on_counts_no_replica_reaches_alone(
    redis: &Topology,
    name: &str,
) {
    let config = || {
        Config::builder()
            .name(name.to_string())
            .count_window(20)
            .minimum_calls(12)
            .failure_rate(50.0)
            .open_duration(OPEN)
            .build_config()
            .unwrap()
    };
    let replicas: Vec<_> = (0..3)
        .map(|_| replica(redis.on_demand(), config()).0)
        .collect();
    let all: Vec<&Replica> = replicas.iter().collect();
    sync_all(&all).await;
    for r in &replicas {
        for _ in 0..4 {
            fail(r);
        }
        succeed(r);
        assert_eq!(r.state(), State::Closed, "5 calls: below the 12 minimum");
    }
    replicas[0].sync_now().await.unwrap();
    let view = replicas[1].sync_now().await.unwrap();
    assert_eq!(view.state, State::Closed);
    assert_eq!((view.window.calls, view.window.failures), (10, 8));
    // The third replica's counts take the fleet to 15 calls, 12 failures: 80% >= 50%.
    let view = replicas[2].sync_now().await.unwrap();
    assert_eq!(view.state, State::Open);
    sync_all(&all).await;
    assert!(replicas.iter().all(|r| r.state() == State::Open));
    let log = redis.admin().await.log(name).await;
    assert_eq!(moves(&log), ["open fleet window"], "{log:?}");
}

/// Five replicas that would admit three probes each admit the fleet's budget (two) in total,
/// under concurrent demand, then close together.
pub async fn the_fleet_admits_its_probe_budget_in_total(redis: &Topology, name: &str) {
    let sharing = redis.on_demand().fleet_probes(2).trip_quorum(1);
    let replicas: Vec<_> = (0..5)
        .map(|_| replica(sharing.clone(), consecutive(name, 1, 3)))
        .collect();
    let breakers: Vec<_> = replicas.iter().map(|(r, _)| r).collect();
    sync_all(&breakers).await;
    fail(breakers[0]);
    sync_all(&breakers).await;
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
        "the fleet's budget, not 3 per replica: {:?}",
        held.iter().map(Vec::len).collect::<Vec<_>>()
    );
    assert!(breakers.iter().all(|r| r.state() == State::HalfOpen));
    for permit in held.into_iter().flatten() {
        finish(permit, Outcome::Success);
    }
    sync_all(&breakers).await;
    for r in &breakers {
        r.sync_now().await.unwrap();
        assert_eq!(r.state(), State::Closed);
    }
    let log = redis.admin().await.log(name).await;
    let states: Vec<_> = log.iter().map(|l| entry(l).1).collect();
    assert_eq!(states, ["open", "half_open", "closed"], "{log:?}");
}

/// Eight replicas tripping at once (operator trips: no quorum needed) make exactly one
/// fleet transition, five rounds running, each closed by one replica's reset.
pub async fn racing_replicas_make_exactly_one_transition(redis: &Topology, name: &str) {
    let replicas: Vec<_> = (0..8)
        .map(|_| replica(redis.on_demand(), consecutive(name, 1, 1)).0)
        .collect();
    let all: Vec<&Replica> = replicas.iter().collect();
    sync_all(&all).await;
    let first = replicas[0].status().fleet.unwrap().generation;
    for round in 0..5u64 {
        // Every replica trips on its own, then all propose at once.
        for r in &replicas {
            r.trip();
        }
        let views = join_all(replicas.iter().map(|r| r.sync_now())).await;
        let generation = first + 2 * round + 1;
        for view in views {
            let view = view.unwrap();
            assert_eq!((view.generation, view.state), (generation, State::Open));
        }
        let made: u64 = replicas.iter().map(|r| r.status().fleet_transitions).sum();
        assert_eq!(made, round * 2 + 1, "one trip this round");
        // One replica's reset closes the fleet; all follow.
        replicas[(round as usize) % 8].reset();
        sync_all(&all).await;
        sync_all(&all).await;
        assert!(
            replicas.iter().all(|r| r.state() == State::Closed),
            "{:?}",
            redis.admin().await.log(name).await
        );
    }
    let log = redis.admin().await.log(name).await;
    assert_eq!(log.len(), 10, "{log:?}");
    for (i, line) in log.iter().enumerate() {
        let expected = if i % 2 == 0 {
            "open trip"
        } else {
            "closed reset"
        };
        let (generation, state, why) = entry(line);
        assert_eq!(generation, first + i as u64 + 1, "{log:?}");
        assert_eq!(format!("{state} {why}"), expected, "{log:?}");
    }
}

/// A breaker outliving its `SharedBreaker` (held by an adapter) goes on alone, its probes
/// uncapped.
pub async fn a_breaker_that_outlives_its_sharing_goes_on_alone(redis: &Topology, name: &str) {
    let (shared, clock) = replica(redis.on_demand(), consecutive(name, 1, 2));
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

/// A replica that trips before its first sync proposes its trip at first contact.
pub async fn a_trip_made_before_the_first_sync_reaches_the_fleet(redis: &Topology, name: &str) {
    let sharing = redis.on_demand().trip_quorum(1);
    // Redis is not asked before the first sync: the replica trips on its own first.
    let (early, _) = replica(sharing.clone(), consecutive(name, 1, 1));
    fail(&early);
    assert_eq!(early.state(), State::Open);
    early.sync_now().await.unwrap();
    assert_eq!(early.state(), State::Open, "its own decision stands");
    let (late, _) = replica(sharing, consecutive(name, 1, 1));
    assert_eq!(late.sync_now().await.unwrap().state, State::Open);
    assert_eq!(late.state(), State::Open);
}

/// A replica deciding alone on its own trip follows the fleet once the fleet moves on from
/// the generation its vote was counted in: here a quorum trips the fleet and an operator's
/// reset closes it, all while that replica did not sync.
pub async fn an_operators_reset_ends_a_replicas_own_trip(redis: &Topology, name: &str) {
    let replicas: Vec<_> = (0..3)
        .map(|_| replica(redis.on_demand(), consecutive(name, 1, 1)).0)
        .collect();
    let all: Vec<&Replica> = replicas.iter().collect();
    sync_all(&all).await;
    fail(all[0]);
    all[0].sync_now().await.unwrap();
    assert!(all[0].status().own_trip);
    fail(all[1]);
    all[1].sync_now().await.unwrap();
    assert_eq!(
        all[1].status().fleet.unwrap().state,
        State::Open,
        "a quorum"
    );
    all[1].reset();
    all[1].sync_now().await.unwrap();
    assert_eq!(all[1].status().fleet.unwrap().state, State::Closed, "reset");
    // The first replica hears of it all at once.
    all[0].sync_now().await.unwrap();
    assert_eq!(
        all[0].state(),
        State::Closed,
        "the fleet's reset closes it too"
    );
    assert!(!all[0].status().own_trip);
}
