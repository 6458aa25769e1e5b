//! Replicas as separate processes (the `fleet_replica` example), sharing one breaker through
//! a redis-server of the test's own, and through a Redis Cluster of the test's own (three
//! primaries, three replicas): one process's own trip stays its own, a second one's opens
//! the fleet, one process's reset closes it, and processes racing to trip make exactly one
//! transition. Each process runs on its own monotonic clock; waits are bounded; every
//! process the test starts is stopped when it ends.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use breaker_test_support::{RedisCluster, RedisServer};

const LIMIT: Duration = Duration::from_secs(20);

struct Process {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
}

impl Process {
    fn start(name: &str, urls: &str) -> Process {
        let mut child = Command::new(env!("CARGO_BIN_EXE_fleet_replica"))
            .arg(name)
            .arg("2") // the trip quorum
            .env("BREAKER_REDIS_URL", urls)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start fleet_replica");
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take().unwrap();
        let mut p = Process {
            child,
            stdin,
            lines,
        };
        assert_eq!(p.read(), "ready");
        p
    }

    fn send(&mut self, command: &str) {
        writeln!(self.stdin, "{command}").unwrap();
        self.stdin.flush().unwrap();
    }

    fn read(&mut self) -> String {
        self.lines
            .recv_timeout(LIMIT)
            .expect("the replica process answers")
    }

    fn ask(&mut self, command: &str) -> String {
        self.send(command);
        self.read()
    }

    /// Asks `status` until the answer starts with `expected`, within the limit; the answer.
    fn until_status(&mut self, expected: &str) -> String {
        let start = Instant::now();
        loop {
            let answer = self.ask("status");
            if answer.starts_with(expected) {
                return answer;
            }
            assert!(
                start.elapsed() < LIMIT,
                "status is still {answer:?}, not {expected:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Asks `command` until the answer starts with `expected`, within the limit.
    fn until(&mut self, command: &str, expected: &str) {
        let start = Instant::now();
        loop {
            let answer = self.ask(command);
            if answer.starts_with(expected) {
                return;
            }
            if start.elapsed() >= LIMIT {
                let status = self.ask("status");
                let sync = self.ask("sync");
                panic!("still {answer:?}, not {expected:?} ({status}; {sync})");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn transition_log(urls: &[String], name: &str) -> Vec<String> {
    let mut cmd = redis::cmd("LRANGE");
    cmd.arg(format!("breaker:{{{name}}}:log")).arg(0).arg(-1);
    if urls.len() > 1 {
        let client = redis::cluster::ClusterClient::new(urls.to_vec()).unwrap();
        cmd.query(&mut client.get_connection().expect("the test's cluster"))
            .unwrap()
    } else {
        let client = redis::Client::open(urls[0].as_str()).unwrap();
        cmd.query(&mut client.get_connection().expect("the test's redis-server"))
            .unwrap()
    }
}

fn replicas_in_separate_processes_share_one_state(urls: &[String]) {
    let name = "processes";
    let joined = urls.join(",");
    let mut replicas: Vec<_> = (0..3).map(|_| Process::start(name, &joined)).collect();
    for r in &mut replicas {
        r.until("sync", "fleet Closed");
    }

    // Three failures in the first process trip it; the fleet waits for a second replica.
    for _ in 0..3 {
        assert_eq!(replicas[0].ask("fail"), "ok");
    }
    assert_eq!(replicas[0].ask("fail"), "refused Open");
    replicas[0].until("sync", "fleet Closed");
    let status = replicas[0].ask("status");
    for part in [
        "fleet.link: synced",
        "fleet.trip_votes: 1",
        "own_trip: true",
    ] {
        assert!(status.contains(part), "{part:?} missing in {status:?}");
    }
    for r in &mut replicas[1..] {
        r.until("sync", "fleet Closed");
        assert_eq!(r.ask("succeed"), "ok", "its trip was its own");
    }

    // The second process trips too: two replicas agree, the fleet opens.
    for _ in 0..3 {
        assert_eq!(replicas[1].ask("fail"), "ok");
    }
    for r in &mut replicas {
        r.until("state", "Open");
    }
    assert_eq!(
        replicas[2].ask("succeed"),
        "refused Open",
        "no call of its own failed"
    );

    // The second process's operator reset closes the fleet.
    assert_eq!(replicas[1].ask("reset"), "reset");
    for r in &mut replicas {
        r.until("state", "Closed");
    }

    // All three trip at once (operator trips need no quorum): the fleet opens exactly once.
    for r in &mut replicas {
        r.send("trip");
    }
    for r in &mut replicas {
        assert_eq!(r.read(), "tripped");
    }
    for r in &mut replicas {
        r.until("sync", "fleet Open");
    }
    let log = transition_log(urls, name);
    let moves: Vec<_> = log
        .iter()
        .map(|l| l.split(" by ").next().unwrap().split_once(' ').unwrap().1)
        .collect();
    assert_eq!(
        moves,
        ["open quorum of 2", "closed reset", "open trip"],
        "{log:?}"
    );
    for r in &mut replicas {
        r.send("quit");
    }
}

#[test]
fn replicas_in_separate_processes_share_one_state_through_a_redis_server() {
    let server = RedisServer::start();
    replicas_in_separate_processes_share_one_state(&[server.url()]);
}

#[test]
fn replicas_in_separate_processes_share_one_state_through_a_redis_cluster() {
    let cluster = RedisCluster::start();
    replicas_in_separate_processes_share_one_state(&cluster.urls());
}

/// `status` while Redis is gone and after it is back: the link, the last sync, the fleet's
/// view as last synced, and the last error, as the operator needs them.
#[test]
fn status_shows_the_link_the_last_sync_the_fleets_view_and_the_last_error() {
    let mut server = RedisServer::start();
    let mut replica = Process::start("status", &server.url());
    replica.until("sync", "fleet Closed");
    let synced = replica.ask("status");
    for part in [
        "fleet.link: synced; fleet.last_sync: ",
        "fleet.state: closed; fleet.generation: ",
        "fleet.window: 0 calls",
        "fleet.trip_votes: 0; own_trip: false; fleet.last_error: none",
    ] {
        assert!(synced.contains(part), "{part:?} missing in {synced:?}");
    }

    // Redis is killed: the link degrades, the last error says why, the last view stays.
    server.kill();
    let degraded = replica.until_status("fleet.link: degraded");
    for part in [
        "fleet.link: degraded: running on local state; fleet.last_sync: ",
        "fleet.last_error: Redis is unreachable (",
        "fleet.state: closed",
    ] {
        assert!(degraded.contains(part), "{part:?} missing in {degraded:?}");
    }
    assert_eq!(
        replica.ask("succeed"),
        "ok",
        "calls go on, on the local state"
    );

    // Redis is back: the link heals and the error is gone.
    server.restart();
    let healed = replica.until_status("fleet.link: synced");
    assert!(healed.ends_with("fleet.last_error: none"), "{healed}");
    replica.send("quit");
}
