//! A breaker as the API and the stream show it, in JSON.

use std::time::Duration;

use breaker_core::{ConfigInForce, Inspect, PolicyKind, Snapshot, State};
use serde_json::{Value, json};

/// What the hub saw of a breaker over time, beside its snapshot.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Seen {
    /// When it entered its state (ms since the Unix epoch).
    pub(crate) since_ms: u64,
    /// Whether `since_ms` comes from a transition (exact) or from the hub's first look.
    pub(crate) since_exact: bool,
    /// Calls and rejections per second between the last two samples.
    pub(crate) rates: Option<(f64, f64)>,
}

fn ms(d: Duration) -> u64 {
    d.as_millis().min(u128::from(u64::MAX)) as u64
}

/// Who is in charge: the breaker's rules, or an operator's mode.
fn mode(state: State) -> &'static str {
    match state {
        State::ForcedOpen | State::Disabled | State::MetricsOnly => state.as_str(),
        _ => "automatic",
    }
}

/// One breaker: its state and since when, retry-after, window rates beside their
/// thresholds, totals, rates per second, operator mode, configuration in force and details.
pub(crate) fn breaker(
    name: &str,
    critical: bool,
    inspect: &dyn Inspect,
    s: &Snapshot,
    seen: Option<Seen>,
) -> Value {
    json!({
        "name": name,
        "breaker_name": inspect.name(),
        "critical": critical,
        "state": s.state.as_str(),
        "mode": mode(s.state),
        "generation": s.generation,
        "since": seen.map(|t| t.since_ms),
        "since_exact": seen.is_some_and(|t| t.since_exact),
        "retry_after_ms": s.retry_after.map(ms),
        "open_attempts": s.open_attempts,
        "window": {
            "calls": s.window.calls,
            "failures": s.window.failures,
            "slow_calls": s.window.slow_calls,
            "failure_rate": s.failure_rate(),
            "slow_call_rate": s.slow_call_rate(),
            "consecutive_failures": s.window.consecutive_failures,
        },
        "consecutive_successes": s.consecutive_successes,
        "half_open": {
            "admitted": s.half_open_admitted,
            "successes": s.half_open_successes,
        },
        "totals": {
            "successes": s.totals.successes,
            "failures": s.totals.failures,
            "ignored": s.totals.ignored,
            "slow": s.totals.slow,
            "rejected": s.totals.rejected,
            "late": s.totals.late,
            "cancelled": s.totals.cancelled,
            "unenforced": s.totals.unenforced,
        },
        "rates": seen.and_then(|t| t.rates).map(|(calls, rejections)| json!({
            "calls_per_s": calls,
            "rejections_per_s": rejections,
        })),
        "config": inspect.config().map(|c| config(&c)),
        "details": inspect.details(),
    })
}

fn config(c: &ConfigInForce) -> Value {
    let policy = match c.policy {
        PolicyKind::ConsecutiveFailures { threshold } => {
            json!({ "kind": "consecutive_failures", "threshold": threshold })
        }
        PolicyKind::CountWindow { size } => json!({ "kind": "count_window", "size": size }),
        PolicyKind::TimeWindow { duration, buckets } => json!({
            "kind": "time_window",
            "duration_ms": ms(duration),
            "buckets": buckets,
        }),
        PolicyKind::Cumulative => json!({ "kind": "cumulative" }),
        _ => json!({ "kind": "other" }),
    };
    json!({
        "policy": policy,
        "minimum_calls": c.minimum_calls,
        "failure_rate": c.failure_rate,
        "slow_call_rate": c.slow_call_rate,
        "slow_call_ms": c.slow_call_duration.map(ms),
        "half_open_probes": c.half_open_probes,
        "max_half_open_ms": c.max_half_open.map(ms),
        "open_ms": ms(c.open_duration),
        "open_max_ms": c.open_duration_max.map(ms),
        "backoff_multiplier": c.backoff_multiplier,
        "open_duration_fn": c.open_duration_fn,
        "jitter": c.jitter,
        "trip_predicate": c.trip_predicate,
        "max_pushback_ms": ms(c.max_pushback),
        "enforcement": c.enforcement,
    })
}
