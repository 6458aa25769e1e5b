//! Real `redis-server` processes on loopback ports of their own, for tests that break them
//! (feature `redis-server`): a single server ([`RedisServer`]) and a Redis Cluster of three
//! primaries and three replicas ([`RedisCluster`]).
//!
//! Every process started here is stopped when its guard is dropped (also when a test panics),
//! and a watcher process kills it should the test process itself die without unwinding.
//! Every wait is bounded; a missing `redis-server` or `redis-cli` fails with a message that
//! says what to install.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// How long a server may take to answer after it starts, and a cluster to form or heal.
const START_LIMIT: Duration = Duration::from_secs(20);

fn missing(program: &str, error: &std::io::Error) -> ! {
    panic!(
        "could not run {program} ({error}): the Redis tests start their own Redis servers; \
         install Redis (Debian: apt-get install redis-server redis-tools) or put {program} on PATH"
    )
}

/// A loopback port that is free, and whose cluster bus port (+10000) is free too.
fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let seed = std::process::id().wrapping_mul(7919);
    for _ in 0..2000 {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = 20_000 + (seed.wrapping_add(n.wrapping_mul(104_729)) % 10_000) as u16;
        let Ok(a) = TcpListener::bind(("127.0.0.1", port)) else {
            continue;
        };
        let Ok(b) = TcpListener::bind(("127.0.0.1", port + 10_000)) else {
            continue;
        };
        drop((a, b));
        return port;
    }
    panic!("no free loopback port pair (port, port + 10000) between 20000 and 39999")
}

/// One `redis-server` process on a loopback port of its own, without persistence (unless
/// the extra arguments say otherwise). Stopped (`kill -9`) when dropped.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
    watcher: Option<Child>,
}

impl RedisServer {
    /// Starts a server on a free loopback port and waits until it answers.
    pub fn start() -> RedisServer {
        Self::start_with(&[])
    }

    /// Starts a server with extra `redis-server` arguments (`["--maxmemory", "1mb"]`).
    pub fn start_with(extra: &[&str]) -> RedisServer {
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port();
            let dir = std::env::temp_dir().join(format!(
                "breaker-redis-{}-{port}-{}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos())
            ));
            std::fs::create_dir_all(&dir).expect("create a directory for redis-server");
            let mut server = RedisServer {
                port,
                dir,
                args: extra.iter().map(|s| s.to_string()).collect(),
                child: None,
                watcher: None,
            };
            match server.spawn() {
                Ok(()) => return server,
                Err(why) => last = why,
            }
        }
        panic!("redis-server did not start on a free port: {last}")
    }

    fn spawn(&mut self) -> Result<(), String> {
        let port = self.port.to_string();
        let log = self.dir.join("redis.log");
        let mut command = Command::new("redis-server");
        command
            .args([
                "--port",
                &port,
                "--bind",
                "127.0.0.1",
                "--protected-mode",
                "no",
            ])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .arg("--logfile")
            .arg(&log)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = command
            .spawn()
            .unwrap_or_else(|e| missing("redis-server", &e));
        self.watcher = watch(child.id());
        self.child = Some(child);
        let start = Instant::now();
        loop {
            if ping(self.addr()) {
                return Ok(());
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                self.child = None;
                return Err(format!("redis-server exited ({status}): {log}"));
            }
            if start.elapsed() > START_LIMIT {
                self.kill();
                return Err(format!(
                    "redis-server did not answer within {START_LIMIT:?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The server process's id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `kill -9` the server and wait for it to be gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(mut watcher) = self.watcher.take() {
            let _ = watcher.kill();
            let _ = watcher.wait();
        }
    }

    /// Starts the server again on the same port, with the same arguments (after
    /// [`kill`](Self::kill): without persistence, empty).
    pub fn restart(&mut self) {
        self.kill();
        let start = Instant::now();
        loop {
            match self.spawn() {
                Ok(()) => return,
                // The port may linger a moment after the kill.
                Err(why) if start.elapsed() > START_LIMIT => {
                    panic!("redis-server did not restart on port {}: {why}", self.port)
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// Sends `signal` (`"STOP"`, `"CONT"`) to the server process.
    pub fn signal(&self, signal: &str) {
        let pid = self.pid().expect("the server runs");
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .unwrap_or_else(|e| missing("kill", &e));
        assert!(status.success(), "kill -{signal} {pid}: {status}");
    }

    /// Runs one command with `redis-cli` against this server and returns its raw output
    /// (trimmed).
    pub fn cli(&self, args: &[&str]) -> String {
        cli(self.port, args)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A shell that kills `pid` once this test process is gone: the Drop guards do not run when
/// the test process is killed itself.
fn watch(pid: u32) -> Option<Child> {
    Command::new("sh")
        .arg("-c")
        .arg("while kill -0 \"$0\" 2>/dev/null; do sleep 1; done; kill -9 \"$1\" 2>/dev/null")
        .arg(std::process::id().to_string())
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()
}

/// `PING` answered with `PONG`, within a second.
fn ping(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut answer = [0u8; 7];
    stream.read_exact(&mut answer).is_ok() && &answer == b"+PONG\r\n"
}

/// Runs `redis-cli -p <port> <args>` and returns its output, trimmed.
pub fn cli(port: u16, args: &[&str]) -> String {
    let output = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| missing("redis-cli", &e));
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// A Redis Cluster of three primaries and three replicas (`cluster-enabled yes`, joined by
/// `redis-cli --cluster create ... --cluster-replicas 1`), each node a [`RedisServer`] on a
/// loopback port of its own, with a one-second node timeout so a failover takes seconds.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts six nodes, creates the cluster and waits until every slot is served and every
    /// primary has its replica.
    pub fn start() -> RedisCluster {
        let nodes: Vec<_> = (0..6)
            .map(|_| {
                RedisServer::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "1000",
                    // Test nodes share one machine: a primary gone is a primary to replace.
                    "--cluster-replica-validity-factor",
                    "0",
                    // Replicas start copying their primary at once, not after 5 s.
                    "--repl-diskless-sync-delay",
                    "0",
                ])
            })
            .collect();
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for node in &nodes {
            create.arg(format!("127.0.0.1:{}", node.port));
        }
        let output = create
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| missing("redis-cli", &e));
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && text.contains("All 16384 slots covered"),
            "redis-cli --cluster create failed ({}): {text}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        let cluster = RedisCluster { nodes };
        cluster.wait_until_healthy(START_LIMIT);
        cluster
    }

    /// `redis://127.0.0.1:<port>` of every node (the seed list for a cluster client).
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// The nodes, in start order.
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// `kill -9` node `index` (it stays down).
    pub fn kill(&mut self, index: usize) {
        self.nodes[index].kill();
    }

    fn alive(&self) -> impl Iterator<Item = &RedisServer> {
        self.nodes.iter().filter(|n| n.child.is_some())
    }

    /// The hash slot of `key` (`CLUSTER KEYSLOT`).
    pub fn slot(&self, key: &str) -> u16 {
        let node = self.alive().next().expect("a live node");
        node.cli(&["CLUSTER", "KEYSLOT", key])
            .parse()
            .unwrap_or_else(|_| panic!("CLUSTER KEYSLOT {key}"))
    }

    /// The index of the live primary that serves `slot`, as the live nodes see it.
    pub fn primary_of(&self, slot: u16) -> Option<usize> {
        let node = self.alive().next()?;
        let nodes = node.cli(&["CLUSTER", "NODES"]);
        for line in nodes.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 8 || !fields[2].contains("master") || fields[2].contains("fail") {
                continue;
            }
            let serves = fields[8..].iter().any(|range| {
                let mut ends = range.split('-');
                let lo = ends.next().and_then(|s| s.parse::<u16>().ok());
                let hi = ends.next().and_then(|s| s.parse::<u16>().ok()).or(lo);
                matches!((lo, hi), (Some(lo), Some(hi)) if lo <= slot && slot <= hi)
            });
            if serves {
                let port: u16 = fields[1]
                    .split(['@', ':'])
                    .nth(1)
                    .and_then(|p| p.parse().ok())?;
                return self
                    .nodes
                    .iter()
                    .position(|n| n.port == port && n.child.is_some());
            }
        }
        None
    }

    /// Waits until every live node reports `cluster_state:ok`, every slot is served by a
    /// live primary and every live replica's link to its primary is up; panics after
    /// `limit`.
    pub fn wait_until_healthy(&self, limit: Duration) {
        let start = Instant::now();
        loop {
            let ok = self.alive().all(|n| {
                let replicating = {
                    let info = n.cli(&["INFO", "replication"]);
                    !info.contains("role:slave") || info.contains("master_link_status:up")
                };
                replicating
                    && n.cli(&["CLUSTER", "INFO"])
                        .lines()
                        .any(|l| l.trim() == "cluster_state:ok")
            });
            let served = ok && {
                let slots = [0u16, 5461, 5462, 10922, 10923, 16383];
                slots.iter().all(|&s| self.primary_of(s).is_some())
            };
            if served {
                return;
            }
            assert!(
                start.elapsed() < limit,
                "the Redis Cluster is not healthy within {limit:?}:\n{}",
                self.alive()
                    .next()
                    .map(|n| n.cli(&["CLUSTER", "NODES"]))
                    .unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Reads the `role` and replication offset of every live node: for diagnostics.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        for n in self.alive() {
            let info = n.cli(&["INFO", "replication"]);
            let role = BufReader::new(info.as_bytes())
                .lines()
                .map_while(Result::ok)
                .find(|l| l.starts_with("role:"))
                .unwrap_or_default();
            out.push_str(&format!("{}: {role}\n", n.port));
        }
        out
    }
}
