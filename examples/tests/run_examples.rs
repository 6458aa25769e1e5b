//! Every example runs to completion and shows what it promises (README's demo included).

use std::process::Command;

fn run(bin: &str) -> String {
    let out = Command::new(bin).output().expect("run example");
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
        "rejected fast (Open)",
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
    assert!(out.contains("retry in 1.5s"), "{out}");
    assert!(out.contains("retry in 3.5s"), "the backoff doubles:\n{out}");
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
    let out = run(env!("CARGO_BIN_EXE_cascade"));
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
fn reqwest_client_serves_the_cache_while_open() {
    let out = run(env!("CARGO_BIN_EXE_reqwest_client"));
    assert!(out.contains("cause: Failed"), "{out}");
    assert!(
        out.contains("cause: Rejected"),
        "served from cache while open:\n{out}"
    );
    let last = out.lines().rev().find(|l| l.starts_with("round")).unwrap();
    assert!(
        last.ends_with("(live)"),
        "recovered by the last round:\n{out}"
    );
}
