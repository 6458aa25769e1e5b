//! Replicas as separate processes (the `fleet_replica` example), sharing one breaker through
//! the machine's Redis: one process's failures trip the others, one process's reset closes
//! them, and processes racing to trip make exactly one transition. Each process runs on its
//! own monotonic clock; waits for the sync task are bounded.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(20);

struct Process {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
}

impl Process {
    fn start(name: &str) -> Process {
        let mut child = Command::new(env!("CARGO_BIN_EXE_fleet_replica"))
            .arg(name)
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

    /// Asks `command` until the answer is `expected`, within the limit.
    fn until(&mut self, command: &str, expected: &str) {
        let start = Instant::now();
        loop {
            let answer = self.ask(command);
            if answer == expected {
                return;
            }
            assert!(
                start.elapsed() < LIMIT,
                "still {answer:?}, not {expected:?}"
            );
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

fn transition_log(name: &str) -> Vec<String> {
    let url = std::env::var("BREAKER_REDIS_URL").unwrap_or("redis://127.0.0.1:6379".into());
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_connection().unwrap_or_else(|e| {
        panic!("Redis is not reachable at {url} ({e}): start redis-server or set BREAKER_REDIS_URL")
    });
    redis::cmd("LRANGE")
        .arg(format!("breaker:{{{name}}}:log"))
        .arg(0)
        .arg(-1)
        .query(&mut conn)
        .unwrap()
}

#[test]
fn replicas_in_separate_processes_share_one_state() {
    let name = format!(
        "processes-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    transition_log(&name); // fails with a clear message if Redis is not there
    let mut replicas: Vec<_> = (0..3).map(|_| Process::start(&name)).collect();
    for r in &mut replicas {
        r.until("sync", "fleet 0 Closed");
    }

    // Three failures in the first process trip it, and the fleet with it.
    for _ in 0..3 {
        assert_eq!(replicas[0].ask("fail"), "ok");
    }
    assert_eq!(replicas[0].ask("fail"), "refused Open");
    for r in &mut replicas[1..] {
        r.until("state", "Open");
        assert_eq!(
            r.ask("succeed"),
            "refused Open",
            "no call of its own failed"
        );
    }

    // The second process's operator reset closes the fleet.
    assert_eq!(replicas[1].ask("reset"), "reset");
    for r in &mut replicas {
        r.until("state", "Closed");
    }

    // All three trip at once: the fleet opens exactly once.
    for r in &mut replicas {
        r.send("trip");
    }
    for r in &mut replicas {
        assert_eq!(r.read(), "tripped");
    }
    for r in &mut replicas {
        r.until("sync", "fleet 3 Open");
    }
    let log = transition_log(&name);
    let states: Vec<_> = log
        .iter()
        .map(|l| l.split(' ').take(3).collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(
        states,
        ["1 open trip", "2 closed reset", "3 open trip"],
        "{log:?}"
    );
    for r in &mut replicas {
        r.send("quit");
    }
}
