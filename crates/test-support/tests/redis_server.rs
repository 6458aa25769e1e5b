//! The Redis helpers start real servers on ports of their own and stop every process they
//! started.
#![cfg(feature = "redis-server")]

use breaker_test_support::{RedisCluster, RedisServer};

fn running(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

#[test]
fn a_server_answers_restarts_empty_and_is_gone_when_dropped() {
    let mut server = RedisServer::start();
    assert_eq!(server.cli(&["SET", "k", "v"]), "OK");
    assert_eq!(server.cli(&["GET", "k"]), "v");
    let first = server.pid().unwrap();
    server.restart();
    assert!(!running(first), "the old process is gone");
    assert_eq!(server.cli(&["EXISTS", "k"]), "0", "no persistence: empty");
    let pid = server.pid().unwrap();
    drop(server);
    assert!(!running(pid));
}

#[test]
fn a_cluster_forms_serves_every_slot_and_is_gone_when_dropped() {
    let cluster = RedisCluster::start();
    let slot = cluster.slot("breaker:{orders}");
    let primary = cluster.primary_of(slot).expect("a primary serves the slot");
    let roles = cluster.describe();
    assert_eq!(roles.matches("role:master").count(), 3, "{roles}");
    assert_eq!(roles.matches("role:slave").count(), 3, "{roles}");
    assert!(
        cluster.nodes()[primary]
            .cli(&["ROLE"])
            .starts_with("master")
    );
    let pids: Vec<u32> = cluster.nodes().iter().filter_map(|n| n.pid()).collect();
    assert_eq!(pids.len(), 6);
    drop(cluster);
    assert!(pids.iter().all(|&p| !running(p)));
}
