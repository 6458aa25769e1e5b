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
//! status           the link, whether this replica's trip is its own, the fleet's trip votes
//! quit
//! ```
//!
//! ```text
//! cargo run -p breaker-examples --bin fleet_replica -- payments 2
//! ```

use std::io::BufRead;
use std::time::Duration;

use breaker_core::{Config, Outcome};
use breaker_redis::RedisSharing;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
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
    let replica = RedisSharing::from_env()?
        .sync_interval(Duration::from_millis(20))
        .replica_id(format!("pid{}", std::process::id()))
        .trip_quorum(quorum)
        .start(config)?;
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
            "status" => {
                let status = replica.status();
                let votes = status.fleet.map_or(0, |f| f.trip_votes);
                format!(
                    "{:?} own_trip={} votes={votes}",
                    status.link, status.own_trip
                )
            }
            "quit" => break,
            other => format!("unknown command {other:?}"),
        };
        println!("{answer}");
    }
    Ok(())
}
