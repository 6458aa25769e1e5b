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
    for (i, every) in [(0, 5u64), (1, 40), (2, 40)] {
        let (replicas, dependency, probes) = (replicas.clone(), dependency.clone(), probes.clone());
        tokio::spawn(async move {
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
            eprintln!("the fleet did not recover within 10 s");
            std::process::exit(1);
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
    Ok(())
}
