//! The fleet on a Redis Cluster of the test's own: three primaries and three replicas of
//! redis-server on loopback ports of their own (`cluster-enabled yes`, joined by
//! `redis-cli --cluster create ... --cluster-replicas 1`). The fleet scenarios of
//! `tests/fleet.rs` run against it, and the primary serving the breaker's slot is killed
//! (`kill -9`) during an open period. Every server is stopped when the test ends, also when it
//! fails; every wait is bounded.

mod common;

use std::time::Duration;

use breaker_core::{RejectReason, State};
use breaker_redis::Link;
use common::scenarios;
use common::{Replica, Topology, fail, finish, replica, sync_all};

/// A bound on each test: a cluster that does not form or heal fails it, it does not hang.
const LIMIT: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_scenarios_hold_on_a_redis_cluster() {
    let redis = Topology::cluster();
    tokio::time::timeout(LIMIT, async {
        scenarios::a_trip_with_a_quorum_of_one_reaches_every_replica(&redis, "c-trip").await;
        scenarios::one_replicas_trip_stays_its_own_until_a_quorum_agrees(&redis, "c-quorum").await;
        scenarios::the_sync_task_carries_a_trip_to_every_replica_on_its_own(&redis, "c-task").await;
        scenarios::the_fleet_window_trips_on_counts_no_replica_reaches_alone(&redis, "c-window")
            .await;
        scenarios::the_fleet_admits_its_probe_budget_in_total(&redis, "c-probes").await;
        scenarios::racing_replicas_make_exactly_one_transition(&redis, "c-race").await;
        scenarios::a_breaker_that_outlives_its_sharing_goes_on_alone(&redis, "c-alone").await;
        scenarios::a_trip_made_before_the_first_sync_reaches_the_fleet(&redis, "c-early").await;
        scenarios::an_operators_reset_ends_a_replicas_own_trip(&redis, "c-reset").await;
    })
    .await
    .expect("the scenarios finish in time on the cluster");
}

/// The primary serving the breaker's slot dies (`kill -9`) 10 s into a 30 s open period.
/// Meanwhile the replicas decide locally (still open, refusing calls, link degraded); its
/// replica is promoted; the fleet heals still open with the time it had left. Then the
/// promoted primary turns out not to hold the state (a replica that never got the write):
/// the replicas re-seed it, still open. The fleet then recovers through its probes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_primary_of_the_breakers_slot_does_not_close_the_fleet_early() {
    let mut redis = Topology::cluster();
    let name = "failover";
    let state_key = format!("breaker:{{{name}}}");
    let open = Duration::from_secs(30);
    let config = || {
        breaker_core::Config::builder()
            .name(name)
            .consecutive_failures(1)
            .open_duration(open)
            .build_config()
            .unwrap()
    };
    let sharing = redis
        .on_demand()
        .trip_quorum(1)
        .command_timeout(Duration::from_millis(300));
    let replicas: Vec<_> = (0..3).map(|_| replica(sharing.clone(), config())).collect();
    let all: Vec<&Replica> = replicas.iter().map(|(r, _)| r).collect();
    let steps = async {
        sync_all(&all).await;
        fail(all[0]);
        sync_all(&all).await;
        sync_all(&all).await;
        let before = all[2].status().fleet.unwrap();
        assert_eq!(before.state, State::Open);
        for (_, clock) in &replicas {
            clock.advance(Duration::from_secs(10)); // 20 s left
        }

        let slot = redis.nodes().slot(&state_key);
        let primary = redis
            .nodes()
            .primary_of(slot)
            .expect("a primary serves the slot");
        redis.nodes().kill(primary);

        // Until a replica is promoted (no sooner than the 1 s node timeout), the replicas
        // decide alone: still open.
        let error = all[0]
            .sync_now()
            .await
            .expect_err("the slot has no primary");
        assert_eq!(all[0].status().link, Link::Degraded, "{error}");
        for r in &all {
            let refused = r.try_acquire().expect_err("still open");
            assert_eq!(refused.reason(), RejectReason::Open);
            assert!(refused.retry_after().unwrap() <= Duration::from_secs(20));
        }

        // The replica of the dead primary takes over.
        tokio::task::block_in_place(|| redis.nodes().wait_until_healthy(Duration::from_secs(60)));
        let promoted = redis.nodes().primary_of(slot).expect("promoted");
        assert_ne!(promoted, primary);
        for r in &all {
            common::sync_until_ok(r).await;
        }
        sync_all(&all).await;
        // Replication is asynchronous: the promoted replica may lag (the state it holds is
        // older than what the replicas saw) or not. Either way the fleet stays open.
        let lost_in_failover: u64 = all.iter().map(|r| r.status().state_losses).sum();
        assert!(
            lost_in_failover <= 1,
            "{:?}",
            redis.admin().await.log(name).await
        );
        eprintln!(
            "the promoted replica lagged behind the fleet: {}",
            lost_in_failover == 1
        );
        for (i, r) in all.iter().enumerate() {
            assert_eq!(r.state(), State::Open, "replica {i} after the failover");
            let left = r.retry_after().unwrap();
            assert!(
                left > Duration::from_secs(19) && left <= Duration::from_secs(20),
                "{left:?}"
            );
            let fleet = r.status().fleet.unwrap();
            assert_eq!(fleet.state, State::Open);
            assert!(fleet.generation >= before.generation);
        }

        // The promoted primary never got the state (modelled by deleting it there).
        let mut admin = redis.admin().await;
        let _: () = admin.query(&["DEL", &state_key]).await;
        sync_all(&all).await;
        sync_all(&all).await;
        let losses: u64 = all.iter().map(|r| r.status().state_losses).sum();
        assert_eq!(losses, lost_in_failover + 1, "{:?}", admin.log(name).await);
        for (i, r) in all.iter().enumerate() {
            assert_eq!(r.state(), State::Open, "replica {i} after the loss");
            let fleet = r.status().fleet.unwrap();
            assert_eq!(fleet.state, State::Open);
            assert!(fleet.generation > before.generation, "only forward");
            assert!(fleet.retry_after.unwrap() <= Duration::from_secs(20));
        }

        // The open period ends; one probe succeeds; the fleet closes.
        for (_, clock) in &replicas {
            clock.advance(Duration::from_secs(21));
        }
        assert!(all[1].try_acquire().is_err(), "no token yet");
        all[1].sync_now().await.unwrap();
        let probe = all[1].try_acquire().expect("the fleet's token");
        finish(probe, breaker_core::Outcome::Success);
        sync_all(&all).await;
        sync_all(&all).await;
        assert!(all.iter().all(|r| r.state() == State::Closed));
    };
    tokio::time::timeout(LIMIT, steps)
        .await
        .expect("the failover test finishes in time");
}
