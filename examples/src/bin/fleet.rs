//! Three replicas of one service in one process, sharing one breaker through Redis
//! (`BREAKER_REDIS_URL`, default `redis://127.0.0.1:6379`).
//!
//! Replica A takes most of the traffic; B and C take a little. The dependency fails, A's
//! failures trip A, and B and C open with it without seeing a failure of their own. When the
//! open period ends the fleet sends one probe in total (not one per replica), and when the
//! dependency is back all three close. Each line is a change in what a replica sees.
//!
//! The three replicas reach the dependency the same way, so one replica's trip is
//! everyone's: this example sets `trip_quorum(1)`. The default (2) keeps one replica's trip
//! its own until a second replica trips too, so that a replica with a problem of its own (its
//! network path, a bad node) does not take the dependency away from the whole fleet; see
//! `docs/consistency.md`.
//!
//! The fleet's name is the run's own (`fleet-demo-<pid>-<time>`), and so are its keys in
//! Redis (`breaker:{fleet-demo-...}` and `breaker:{fleet-demo-...}:*`): the example removes
//! them at the end, and touches no other key.
//!
//! ```text
//! cargo run -p breaker-examples --bin fleet
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use breaker_core::{Config, MonotonicClock, NoopObserver, Outcome, State};
use breaker_examples::{StartupError, exit_code};
use breaker_redis::{RedisSharing, SharedBreaker};

type Replica = SharedBreaker<MonotonicClock, NoopObserver>;

/// The dependency: answers while healthy, fails while not; counts the calls it sees.
#[derive(Default)]
struct Dependency {
    down: AtomicBool,
    calls: AtomicU32,
}

impl Dependency {
    async fn call(&self) -> Result<(), &'static str> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        if self.down.load(Ordering::Relaxed) {
            Err("connection refused")
        } else {
            Ok(())
        }
    }
}

fn view(name: &str, replica: &Replica) -> String {
    format!("{name} {:<9}", short(replica.state()))
}

fn short(state: State) -> &'static str {
    match state {
        State::Closed => "closed",
        State::Open => "open",
        State::HalfOpen => "half-open",
        _ => "other",
    }
}

fn main() -> std::process::ExitCode {
    exit_code(run())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let sharing = RedisSharing::from_env()?
        .sync_interval(Duration::from_millis(20))
        .trip_quorum(1);
    let unique = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis();
    let name = format!("fleet-demo-{}-{unique}", std::process::id());
    let config = || {
        Config::builder()
            .name(name.clone())
            .consecutive_failures(5)
            .open_duration(Duration::from_secs(1))
            .half_open_probes(1)
            .build_config()
    };
    let replicas: Arc<Vec<(&str, Replica)>> = Arc::new(vec![
        ("A", sharing.clone().replica_id("A").start(config()?)?),
        ("B", sharing.clone().replica_id("B").start(config()?)?),
        ("C", sharing.clone().replica_id("C").start(config()?)?),
    ]);
    let told = story(replicas).await;
    // The fleet's name is this run's own: so are its keys, which outlive the replicas. Syncs
    // still in flight when the replicas stopped land first.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let removed = tokio::task::spawn_blocking(move || forget(&name)).await?;
    told?;
    Ok(removed?)
}

/// Deletes the keys of the fleet `name` (`breaker:{name}` and `breaker:{name}:*`: the
/// state, the log, the window, probe tokens, trip votes, replicas A, B, C), and no other.
fn forget(name: &str) -> Result<(), StartupError> {
    let urls =
        std::env::var(breaker_redis::URL_ENV).unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let base = format!("breaker:{{{name}}}");
    let keys: Vec<String> = ["", ":log", ":w", ":p", ":v", ":r:A", ":r:B", ":r:C"]
        .iter()
        .map(|suffix| format!("{base}{suffix}"))
        .collect();
    let mut del = redis::cmd("DEL");
    del.arg(&keys);
    // One hash tag: every key is in one slot, so one DEL does it on a cluster too.
    let deleted: redis::RedisResult<u64> = if urls.contains(',') {
        redis::cluster::ClusterClient::new(urls.split(',').map(str::trim).collect::<Vec<_>>())
            .and_then(|client| client.get_connection())
            .and_then(|mut connection| del.query(&mut connection))
    } else {
        redis::Client::open(urls.as_str())
            .and_then(|client| client.get_connection())
            .and_then(|mut connection| del.query(&mut connection))
    };
    match deleted {
        Ok(_) => {
            println!("removed this run's keys from Redis ({base}*)");
            Ok(())
        }
        Err(e) => Err(StartupError::new(format!(
            "could not remove this run's keys ({base}*) from Redis at {urls}: delete them \
             with redis-cli DEL"
        ))
        .because(e)),
    }
}

/// The replicas through an outage and back; stops their traffic and them at the end.
async fn story(
    replicas: Arc<Vec<(&'static str, Replica)>>,
) -> Result<(), Box<dyn std::error::Error>> {
    if let Err(error) = replicas[0].1.sync_now().await {
        let urls = std::env::var(breaker_redis::URL_ENV)
            .unwrap_or_else(|_| "redis://127.0.0.1:6379, the default".into());
        return Err(StartupError::new(format!(
            "cannot reach Redis at {urls} (from {}): start redis-server there, or point {} \
             at one (several URLs separated by commas for a Redis Cluster)",
            breaker_redis::URL_ENV,
            breaker_redis::URL_ENV
        ))
        .because(error)
        .into());
    }
    let dependency = Arc::new(Dependency::default());
    let probes = Arc::new(AtomicU32::new(0));

    // Traffic: A calls every 5 ms, B and C every 40 ms.
    let mut traffic = tokio::task::JoinSet::new();
    for (i, every) in [(0, 5u64), (1, 40), (2, 40)] {
        let (replicas, dependency, probes) = (replicas.clone(), dependency.clone(), probes.clone());
        traffic.spawn(async move {
            let breaker = &replicas[i].1;
            loop {
                if let Ok(permit) = breaker.try_acquire() {
                    if permit.is_probe() {
                        probes.fetch_add(1, Ordering::Relaxed);
                    }
                    let outcome = match dependency.call().await {
                        Ok(()) => Outcome::Success,
                        Err(_) => Outcome::Failure,
                    };
                    permit.record(outcome);
                }
                tokio::time::sleep(Duration::from_millis(every)).await;
            }
        });
    }

    println!("   time  replicas' view                   fleet (Redis)");
    let start = Instant::now();
    let mut last = String::new();
    let mut recovered = false;
    loop {
        let elapsed = start.elapsed();
        if elapsed > Duration::from_millis(300)
            && !dependency.down.load(Ordering::Relaxed)
            && !recovered
        {
            dependency.down.store(true, Ordering::Relaxed);
            println!(
                "{:>5} ms  --- the dependency goes down ---",
                elapsed.as_millis()
            );
        }
        if elapsed > Duration::from_millis(1_000) && dependency.down.load(Ordering::Relaxed) {
            dependency.down.store(false, Ordering::Relaxed);
            recovered = true;
            println!(
                "{:>5} ms  --- the dependency is back ---",
                elapsed.as_millis()
            );
        }
        let line = replicas
            .iter()
            .map(|(name, r)| view(name, r))
            .collect::<Vec<_>>()
            .join("  ");
        let fleet = replicas[0]
            .1
            .status()
            .fleet
            .map(|f| format!("fleet {}", short(f.state)))
            .unwrap_or_default();
        let line = format!("{line}  {fleet}");
        if line != last {
            println!("{:>5} ms  {line}", elapsed.as_millis());
            last = line;
        }
        let all_closed = replicas.iter().all(|(_, r)| r.state() == State::Closed);
        if recovered
            && all_closed
            && replicas[0]
                .1
                .status()
                .fleet
                .is_some_and(|f| f.state == State::Closed)
        {
            break;
        }
        if elapsed > Duration::from_secs(10) {
            return Err("the fleet did not recover within 10 s".into());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let failures_seen: Vec<_> = replicas
        .iter()
        .map(|(name, r)| format!("{name} {}", r.snapshot().totals.failures))
        .collect();
    println!("failures each replica saw: {}", failures_seen.join(", "));
    println!(
        "half-open probes, whole fleet: {} (one per half-open period, not one per replica)",
        probes.load(Ordering::Relaxed)
    );
    println!("every replica closed: the fleet recovered together");
    // The traffic stops; the last clone of the replicas goes with the caller's, and their
    // sync tasks with them.
    traffic.shutdown().await;
    Ok(())
}
