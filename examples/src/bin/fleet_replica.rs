//! One replica of a service as its own process, sharing the breaker named on the command
//! line through Redis (`BREAKER_REDIS_URL`: one URL, or a Redis Cluster's nodes separated by
//! commas), with the trip quorum given after the name (default 2: a replica's own trip is
//! its own until a second replica trips too). Start several, in several terminals, and type:
//!
//! ```text
//! fail | succeed   make one call that fails / succeeds (prints ok or why it was refused)
//! trip | reset     the operator controls (fleet-wide while shared)
//! state            this replica's state
//! sync             sync with the fleet now and print the fleet's state and generation
//! status           the link to the fleet (synced, degraded, stale), the last sync, the
//!                  fleet's view (state, generation, window, trip votes), whether this
//!                  replica's trip is its own, and the last sync error
//! quit
//! ```
//!
//! Against your own Redis: `BREAKER_REDIS_URL=redis://HOST:PORT` (or a cluster's nodes,
//! separated by commas). The replicas keep the fleet's state under the keys `breaker:{NAME}`
//! and `breaker:{NAME}:*`, and touch no other key; the state outlives any one replica, so
//! the keys stay when the last one quits (list them with
//! `redis-cli --scan --pattern 'breaker:{NAME}*'`, then `DEL` them).
//!
//! ```text
//! cargo run -p breaker-examples --bin fleet_replica -- payments 2
//! ```

use std::io::BufRead;
use std::time::Duration;

use breaker_core::{Config, Inspect, MonotonicClock, Outcome};
use breaker_examples::{StartupError, exit_code};
use breaker_redis::{RedisSharing, SharedBreaker};

/// What `status` prints, on one line: the link, the last sync, the fleet's view as last
/// synced (the `fleet.*` details the admin dashboard shows too), the trip votes, whether
/// this replica's trip is its own, and the last sync error.
fn status_line(replica: &SharedBreaker<MonotonicClock>) -> String {
    let status = replica.status();
    let mut parts: Vec<String> = replica
        .details()
        .into_iter()
        .map(|(key, value)| format!("{key}: {value}"))
        .collect();
    if status.since_last_sync.is_none() {
        parts.insert(1, "fleet.last_sync: never".into());
    }
    if let Some(fleet) = &status.fleet {
        parts.push(format!("fleet.trip_votes: {}", fleet.trip_votes));
    }
    parts.push(format!("own_trip: {}", status.own_trip));
    if status.last_error.is_none() {
        parts.push("fleet.last_error: none".into());
    }
    parts.join("; ")
}

fn main() -> std::process::ExitCode {
    exit_code(run())
}

#[tokio::main(flavor = "current_thread")]
async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let name = std::env::args().nth(1).unwrap_or_else(|| "payments".into());
    let quorum: u32 = match std::env::args().nth(2) {
        Some(n) => n
            .parse()
            .map_err(|_| format!("the trip quorum is a number, not {n:?}"))?,
        None => 2,
    };
    let config = Config::builder()
        .name(name)
        .consecutive_failures(3)
        .open_duration(Duration::from_secs(30))
        .build_config()?;
    let replica = RedisSharing::from_env()
        .and_then(|sharing| {
            sharing
                .sync_interval(Duration::from_millis(20))
                .replica_id(format!("pid{}", std::process::id()))
                .trip_quorum(quorum)
                .start(config)
        })
        .map_err(|e| {
            let urls = std::env::var(breaker_redis::URL_ENV)
                .unwrap_or_else(|_| "unset: redis://127.0.0.1:6379".into());
            StartupError::new(format!(
                "cannot share the breaker through Redis ({}: {urls}); set {} to redis://HOST:PORT, \
                 or a Redis Cluster's nodes separated by commas",
                breaker_redis::URL_ENV,
                breaker_redis::URL_ENV
            ))
            .because(e)
        })?;
    let (lines, mut commands) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    println!("ready");
    while let Some(line) = commands.recv().await {
        let call = |outcome| match replica.try_acquire() {
            Ok(permit) => {
                permit.record(outcome);
                "ok".to_string()
            }
            Err(refused) => format!("refused {:?}", refused.reason()),
        };
        let answer = match line.trim() {
            "fail" => call(Outcome::Failure),
            "succeed" => call(Outcome::Success),
            "trip" => {
                replica.trip();
                "tripped".into()
            }
            "reset" => {
                replica.reset();
                "reset".into()
            }
            "state" => format!("{:?}", replica.state()),
            "sync" => match replica.sync_now().await {
                Ok(fleet) => format!("fleet {:?} {}", fleet.state, fleet.generation),
                Err(error) => format!("degraded: {error}"),
            },
            "status" => status_line(&replica),
            "quit" => break,
            other => format!("unknown command {other:?}"),
        };
        println!("{answer}");
    }
    Ok(())
}
