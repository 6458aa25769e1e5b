//! Every example runs to completion and shows what it promises (README's demo included).

use std::process::Command;

fn run(bin: &str) -> String {
    let out = Command::new(bin).output().expect("run example");
    assert!(out.status.success(), "{bin} failed: {}", String::from_utf8_lossy(&out.stderr));
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
    let first = |needle: &str| out.find(needle).unwrap_or_else(|| panic!("{needle:?} missing:\n{out}"));
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
