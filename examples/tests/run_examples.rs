//! Every example runs to completion and shows what it promises (README's demo included).

use std::process::Command;

fn run(bin: &str) -> String {
    run_with(bin, &[])
}

fn run_with(bin: &str, args: &[&str]) -> String {
    let out = Command::new(bin).args(args).output().expect("run example");
    assert!(
        out.status.success(),
        "{bin} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn demo_trips_rejects_probes_and_recovers() {
    let out = run(env!("CARGO_BIN_EXE_demo"));
    for line in [
        "---- breaker closed -> open ----",
        "rejected fast (open)",
        "---- breaker open -> half_open ----",
        "---- breaker half_open -> open ----",
        "---- breaker half_open -> closed ----",
        "final state: closed",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
}

#[test]
fn wrap_with_breaker_backs_off_and_recovers() {
    let out = run(env!("CARGO_BIN_EXE_wrap_with_breaker"));
    assert!(out.contains("retry in 1.5 s"), "{out}");
    assert!(
        out.contains("retry in 3.5 s"),
        "the backoff doubles:\n{out}"
    );
    assert!(out.trim_end().ends_with("(B has seen 18 calls)"), "{out}");
}

#[test]
fn fallback_cache_serves_cache_then_default_then_live() {
    let out = run(env!("CARGO_BIN_EXE_fallback_cache"));
    let first = |needle: &str| {
        out.find(needle)
            .unwrap_or_else(|| panic!("{needle:?} missing:\n{out}"))
    };
    assert!(first("cached") < first("default function"));
    assert!(out.trim_end().ends_with("breaker: closed"), "{out}");
}

#[test]
fn context_timeout_queues_while_open_and_replays() {
    let out = run(env!("CARGO_BIN_EXE_context_timeout"));
    assert!(out.contains("timed out after 2s"), "{out}");
    assert!(out.contains("queued for later"), "{out}");
    assert!(out.contains("(replayed from the queue)"), "{out}");
    assert!(out.trim_end().ends_with("still queued: []"), "{out}");
}

#[test]
fn cascade_prints_the_side_by_side_table() {
    // The same scenario, five times faster: the facts below do not depend on timing.
    let out = run_with(env!("CARGO_BIN_EXE_cascade"), &["--quick"]);
    let row = |name: &str| -> Vec<String> {
        let line = out
            .lines()
            .find(|l| l.starts_with(&format!("| {name}")))
            .unwrap_or_else(|| panic!("row {name:?} missing:\n{out}"));
        line.split('|')
            .map(|c| c.trim().to_string())
            .filter(|c| !c.is_empty())
            .collect()
    };
    for name in [
        "A latency p50",
        "A latency p99",
        "A requests in flight at peak",
        "fallbacks served by A",
        "calls that reached B while it was down",
    ] {
        assert_eq!(row(name).len(), 3, "{name}");
    }
    // Structural facts that do not depend on timing: without a breaker every failure of B
    // is an error of A; with one, A answers every request (from the fallback when needed).
    assert_eq!(row("errors returned by A")[2], "0", "{out}");
    assert_eq!(row("fallbacks served by A")[1], "0", "{out}");
    assert_ne!(row("errors returned by A")[1], "0", "{out}");
}

#[test]
fn guarded_repository_serves_the_cache_through_an_outage_and_recovers() {
    let out = run(env!("CARGO_BIN_EXE_guarded_repository"));
    for needle in [
        "read product 1                     espresso machine (from the database)",
        "read product 9                     no such product",
        "refused by the database (the caller's mistake: not counted against the database)",
        "espresso machine (cached; database error: pool timed out",
        "read product 3                     unavailable (database error",
        "espresso machine (cached; breaker open, retry in 10 s)",
        "add product 3                      not sent: in 10 s",
        "read product 2 (the probe)         grinder (from the database)",
        "breaker: closed; calls that reached the database: 9 ok, 3 failed; refused: 2",
    ] {
        assert!(out.contains(needle), "{needle:?} missing in:\n{out}");
    }
}

#[test]
fn grpc_client_and_server_breakers_trip_refuse_and_recover() {
    let out = run(env!("CARGO_BIN_EXE_grpc"));
    for needle in [
        "call (NOT_FOUND: the caller's fault)     NotFound",
        "client breaker: open, server breaker: open",
        "call while open                          Unavailable from the breaker (retry after 5s): not sent",
        "calls that reached the handlers so far: 5",
        "call (probe)                             ok: n = 1",
        "stream failing midway                    Internal in the trailers",
        "handler calls: 8 before, 8 after",
        "call while it is forced open             Unavailable: circuit breaker forced_open",
    ] {
        assert!(out.contains(needle), "{needle:?} missing in:\n{out}");
    }
}

#[test]
fn fleet_opens_every_replica_probes_once_per_period_and_recovers() {
    let out = run(env!("CARGO_BIN_EXE_fleet"));
    let down = out.find("--- the dependency goes down ---").expect(&out);
    // B and C open without a failure of their own.
    let all_open = out
        .find("A open       B open       C open")
        .unwrap_or_else(|| panic!("every replica open at once:\n{out}"));
    assert!(down < all_open, "{out}");
    let probes: u32 = out
        .lines()
        .find_map(|l| l.strip_prefix("half-open probes, whole fleet: "))
        .and_then(|l| l.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("the probe count:\n{out}"));
    assert!(probes >= 1, "the fleet recovered through a probe:\n{out}");
    assert!(
        out.contains("every replica closed: the fleet recovered together"),
        "{out}"
    );
    // Its keys were its own (a name of its own per run), and it removed them.
    let pattern = out
        .lines()
        .find_map(|l| l.strip_prefix("removed this run's keys from Redis ("))
        .and_then(|l| l.strip_suffix(')'))
        .unwrap_or_else(|| panic!("the keys it removed:\n{out}"));
    assert!(pattern.starts_with("breaker:{fleet-demo-"), "{pattern}");
    let url = std::env::var("BREAKER_REDIS_URL").unwrap_or("redis://127.0.0.1:6379".into());
    if !url.contains(',') {
        let mut redis = redis::Client::open(url.as_str())
            .and_then(|c| c.get_connection())
            .expect("the Redis the example used");
        let left: Vec<String> = redis::cmd("KEYS").arg(pattern).query(&mut redis).unwrap();
        assert_eq!(left, Vec::<String>::new(), "keys left behind");
    }
}
