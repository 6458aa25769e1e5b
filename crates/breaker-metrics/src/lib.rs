//! Reports [`breaker_core`] circuit breakers through the [`metrics`] facade, so operators see
//! what their breakers do in Prometheus (or any other `metrics` exporter) without writing code.
//!
//! **In libraries and services alike**, attach a [`BreakerMetrics`] observer to each named
//! breaker; **in the executable**, install an exporter (for Prometheus,
//! `metrics-exporter-prometheus`), call [`describe`] once, and call [`record_rates`] on each
//! scrape for the window-rate gauges. Without an installed recorder every metric is a no-op.
//!
//! ```
//! use breaker_core::CircuitBreaker;
//! use breaker_metrics::BreakerMetrics;
//!
//! breaker_metrics::describe(); // help texts and units, once per process
//! let payments = CircuitBreaker::builder()
//!     .name("payments") // the `breaker` label
//!     .count_window(100)
//!     .observer(BreakerMetrics::new())
//!     .build()?;
//! # Ok::<(), breaker_core::ConfigError>(())
//! ```
//!
//! # Metrics
//!
//! Every series has a `breaker` label with the breaker's [name](breaker_core::Builder::name).
//!
//! | name | type | labels | what |
//! |---|---|---|---|
//! | `circuit_breaker_state` | gauge | `state` | 1 for the current state, 0 for the others (`closed`, `open`, `half_open`, `forced_open`, `disabled`, `metrics_only`) |
//! | `circuit_breaker_transitions_total` | counter | `from`, `to` | state transitions (the four a breaker makes by itself at zero from its first event, operator ones from when they first happen) |
//! | `circuit_breaker_calls_total` | counter | `outcome` | recorded calls: `success`, `failure`, `ignored`; `slow` counts slow calls again, on top of their success or failure |
//! | `circuit_breaker_rejections_total` | counter | `reason` | calls refused: `open`, `half_open_full`, `forced_open` |
//! | `circuit_breaker_unenforced_rejections_total` | counter | `reason` | calls the breaker would have refused and let through: its [enforcement ramp](breaker_core::Builder::enforcement) enforces only a share of its refusals (`open`, `half_open_full`) |
//! | `circuit_breaker_call_duration_seconds` | histogram | | durations of recorded successes and failures (measured when the breaker detects slow calls: [`slow_call_duration`](breaker_core::Builder::slow_call_duration)) |
//! | `circuit_breaker_failure_rate_percent` | gauge | | the window's failure rate ([`record_rates`]) |
//! | `circuit_breaker_slow_call_rate_percent` | gauge | | the window's slow-call rate ([`record_rates`]) |
//! | `circuit_breaker_fallbacks_total` | counter | `kind` | fallbacks served instead of the dependency's answer |
//!
//! # Cost
//!
//! The metric handles of a breaker are registered once, on its first event; after that an
//! event is one or two atomic updates of the exporter's own counters: no lock, no allocation,
//! no label formatting on the call path.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

use std::sync::OnceLock;

use breaker_core::{Event, Observer, Outcome, Registry, RejectReason, State};
use metrics::{Counter, Gauge, Histogram, Unit};

/// The metric names, for dashboards and alert rules.
pub mod names {
    /// Gauge: 1 for the breaker's current state (label `state`), 0 for the others.
    pub const STATE: &str = "circuit_breaker_state";
    /// Counter: transitions (labels `from`, `to`).
    pub const TRANSITIONS: &str = "circuit_breaker_transitions_total";
    /// Counter: recorded calls (label `outcome`).
    pub const CALLS: &str = "circuit_breaker_calls_total";
    /// Counter: refused calls (label `reason`).
    pub const REJECTIONS: &str = "circuit_breaker_rejections_total";
    /// Counter: calls the breaker would have refused and let through, its enforcement ramp
    /// enforcing only a share of its refusals (label `reason`).
    pub const UNENFORCED: &str = "circuit_breaker_unenforced_rejections_total";
    /// Histogram: call durations in seconds.
    pub const CALL_DURATION: &str = "circuit_breaker_call_duration_seconds";
    /// Gauge: the window's failure rate, in percent.
    pub const FAILURE_RATE: &str = "circuit_breaker_failure_rate_percent";
    /// Gauge: the window's slow-call rate, in percent.
    pub const SLOW_CALL_RATE: &str = "circuit_breaker_slow_call_rate_percent";
    /// Counter: fallbacks served (label `kind`).
    pub const FALLBACKS: &str = "circuit_breaker_fallbacks_total";
    /// Every name above.
    pub const ALL: [&str; 9] = [
        STATE,
        TRANSITIONS,
        CALLS,
        REJECTIONS,
        UNENFORCED,
        CALL_DURATION,
        FAILURE_RATE,
        SLOW_CALL_RATE,
        FALLBACKS,
    ];
}

const STATES: [State; 6] = [
    State::Closed,
    State::Open,
    State::HalfOpen,
    State::ForcedOpen,
    State::Disabled,
    State::MetricsOnly,
];

const FALLBACK_KINDS: [&str; 4] = ["value", "function", "alternative", "cache"];

/// Registers help texts and units of every metric with the installed recorder. Call it once,
/// after installing the exporter.
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_gauge!(
        names::STATE,
        "1 for the circuit breaker's current state, 0 for the others"
    );
    describe_counter!(names::TRANSITIONS, "Circuit breaker state transitions");
    describe_counter!(
        names::CALLS,
        "Calls recorded by the circuit breaker, by outcome (slow calls also count as success or failure)"
    );
    describe_counter!(
        names::REJECTIONS,
        "Calls refused by the circuit breaker without reaching the dependency"
    );
    describe_counter!(
        names::UNENFORCED,
        "Calls the circuit breaker would have refused, let through by its enforcement ramp"
    );
    describe_histogram!(
        names::CALL_DURATION,
        Unit::Seconds,
        "Duration of calls recorded by the circuit breaker"
    );
    describe_gauge!(
        names::FAILURE_RATE,
        Unit::Percent,
        "Failure rate in the circuit breaker's window"
    );
    describe_gauge!(
        names::SLOW_CALL_RATE,
        Unit::Percent,
        "Slow-call rate in the circuit breaker's window"
    );
    describe_counter!(
        names::FALLBACKS,
        "Fallback answers served instead of the dependency's"
    );
}

/// Sets the window-rate gauges of every breaker in `registry` from a snapshot (the rates are
/// a property of the window, not of an event). Call it when metrics are scraped, before
/// rendering them. A breaker whose window is empty reports 0.
pub fn record_rates(registry: &Registry) {
    for report in registry.report() {
        let labels = [("breaker", report.name.clone())];
        let s = &report.snapshot;
        metrics::gauge!(names::FAILURE_RATE, &labels).set(s.failure_rate().unwrap_or(0.0));
        metrics::gauge!(names::SLOW_CALL_RATE, &labels).set(s.slow_call_rate().unwrap_or(0.0));
    }
}

/// An [`Observer`] that reports one breaker's events through the `metrics` facade, labelled
/// with the breaker's name. Give each breaker its own (`BreakerMetrics::new()`): the metric
/// handles are registered on the first event, under the name of the breaker that reports it.
#[derive(Debug, Default)]
pub struct BreakerMetrics {
    handles: OnceLock<Handles>,
}

impl BreakerMetrics {
    /// An observer whose handles are registered on the breaker's first event.
    pub fn new() -> Self {
        Self::default()
    }

    /// An observer whose handles are registered now, under `breaker` (for example to have
    /// every series present, at zero, before the first call).
    pub fn named(breaker: &str) -> Self {
        let metrics = Self::default();
        metrics.handles(breaker);
        metrics
    }

    #[inline]
    fn handles(&self, breaker: &str) -> &Handles {
        self.handles.get_or_init(|| Handles::register(breaker))
    }
}

impl Observer for BreakerMetrics {
    #[inline]
    fn on_breaker_event(&self, breaker: &str, event: &Event) {
        let h = self.handles(breaker);
        match *event {
            Event::Success { elapsed } => {
                h.success.increment(1);
                h.record_duration(elapsed);
            }
            Event::Failure { elapsed } => {
                h.failure.increment(1);
                h.record_duration(elapsed);
            }
            Event::Ignored => h.ignored.increment(1),
            Event::SlowCall { .. } => h.slow.increment(1),
            Event::Rejected { reason } => match reason {
                RejectReason::Open => h.rejected_open.increment(1),
                RejectReason::HalfOpenFull => h.rejected_half_open_full.increment(1),
                _ => h.rejected_forced_open.increment(1),
            },
            Event::Unenforced { reason } => match reason {
                RejectReason::HalfOpenFull => h.unenforced_half_open_full.increment(1),
                _ => h.unenforced_open.increment(1),
            },
            Event::StateTransition { from, to } => {
                h.transition(breaker, from, to).increment(1);
                h.state[state_index(from)].set(0.0);
                h.state[state_index(to)].set(1.0);
            }
            Event::FallbackUsed { kind } => match FALLBACK_KINDS.iter().position(|k| *k == kind) {
                Some(i) => h.fallbacks[i].increment(1),
                None => metrics::counter!(
                    names::FALLBACKS,
                    "breaker" => breaker.to_string(),
                    "kind" => kind
                )
                .increment(1),
            },
            _ => {}
        }
    }
}

fn state_index(state: State) -> usize {
    STATES.iter().position(|s| *s == state).unwrap_or(0)
}

fn reason_label(reason: RejectReason) -> &'static str {
    match reason {
        RejectReason::Open => "open",
        RejectReason::HalfOpenFull => "half_open_full",
        _ => "forced_open",
    }
}

/// One breaker's metric handles.
#[derive(Debug)]
struct Handles {
    state: [Gauge; 6],
    /// Registered on first use: most pairs never happen, and need no series at zero.
    transitions: [[OnceLock<Counter>; 6]; 6],
    success: Counter,
    failure: Counter,
    ignored: Counter,
    slow: Counter,
    rejected_open: Counter,
    rejected_half_open_full: Counter,
    rejected_forced_open: Counter,
    unenforced_open: Counter,
    unenforced_half_open_full: Counter,
    duration: Histogram,
    fallbacks: [Counter; 4],
}

impl Handles {
    /// Adapters measure durations only when the breaker detects slow calls; otherwise they
    /// pass zero, which is no sample.
    #[inline]
    fn record_duration(&self, elapsed: core::time::Duration) {
        if !elapsed.is_zero() {
            self.duration.record(elapsed.as_secs_f64());
        }
    }

    fn transition(&self, breaker: &str, from: State, to: State) -> &Counter {
        self.transitions[state_index(from)][state_index(to)].get_or_init(|| {
            metrics::counter!(
                names::TRANSITIONS,
                "breaker" => breaker.to_string(),
                "from" => from.as_str(),
                "to" => to.as_str()
            )
        })
    }

    fn register(breaker: &str) -> Self {
        let name = || breaker.to_string();
        let calls = |outcome: &'static str| metrics::counter!(names::CALLS, "breaker" => name(), "outcome" => outcome);
        let rejections = |reason: RejectReason| {
            metrics::counter!(
                names::REJECTIONS,
                "breaker" => name(),
                "reason" => reason_label(reason)
            )
        };
        let unenforced = |reason: RejectReason| {
            metrics::counter!(
                names::UNENFORCED,
                "breaker" => name(),
                "reason" => reason_label(reason)
            )
        };
        let state = STATES
            .map(|s| metrics::gauge!(names::STATE, "breaker" => name(), "state" => s.as_str()));
        // The breaker starts closed.
        state[state_index(State::Closed)].set(1.0);
        let handles = Handles {
            state,
            transitions: Default::default(),
            success: calls(outcome_label(Outcome::Success)),
            failure: calls(outcome_label(Outcome::Failure)),
            ignored: calls(outcome_label(Outcome::Ignored)),
            slow: calls("slow"),
            rejected_open: rejections(RejectReason::Open),
            rejected_half_open_full: rejections(RejectReason::HalfOpenFull),
            rejected_forced_open: rejections(RejectReason::ForcedOpen),
            unenforced_open: unenforced(RejectReason::Open),
            unenforced_half_open_full: unenforced(RejectReason::HalfOpenFull),
            duration: metrics::histogram!(names::CALL_DURATION, "breaker" => name()),
            fallbacks: FALLBACK_KINDS.map(
                |kind| metrics::counter!(names::FALLBACKS, "breaker" => name(), "kind" => kind),
            ),
        };
        // The transitions the breaker makes by itself have series from the start, at zero:
        // a counter whose first sample is already 1 hides that first transition from
        // Prometheus' `increase` and `rate` (the dashboard's Transitions panel, the flapping
        // alert). Operator transitions get theirs when they first happen.
        for (from, to) in [
            (State::Closed, State::Open),
            (State::Open, State::HalfOpen),
            (State::HalfOpen, State::Open),
            (State::HalfOpen, State::Closed),
        ] {
            handles.transition(breaker, from, to);
        }
        handles
    }
}

fn outcome_label(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Success => "success",
        Outcome::Failure => "failure",
        Outcome::Ignored => "ignored",
    }
}

/// This crate's README, compiled and run as doctests so it stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
