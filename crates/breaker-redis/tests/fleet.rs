//! Several replicas of one breaker in one process, sharing state through a redis-server of
//! the test's own (the same scenarios run on a Redis Cluster in `tests/cluster.rs`).

mod common;

use common::Topology;
use common::scenarios;

macro_rules! on_a_single_redis {
    ($($scenario:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $scenario() {
            let redis = Topology::single();
            scenarios::$scenario(&redis, stringify!($scenario)).await;
        }
    )*};
}

on_a_single_redis!(
    a_trip_with_a_quorum_of_one_reaches_every_replica,
    one_replicas_trip_stays_its_own_until_a_quorum_agrees,
    the_sync_task_carries_a_trip_to_every_replica_on_its_own,
    the_fleet_window_trips_on_counts_no_replica_reaches_alone,
    the_fleet_admits_its_probe_budget_in_total,
    racing_replicas_make_exactly_one_transition,
    a_breaker_that_outlives_its_sharing_goes_on_alone,
    a_trip_made_before_the_first_sync_reaches_the_fleet,
    an_operators_reset_ends_a_replicas_own_trip,
);
