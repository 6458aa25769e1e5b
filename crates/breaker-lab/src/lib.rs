//! Replays traffic through breaker configs and reports, for each, when it trips, what it
//! sheds, what still reaches a failing dependency, and when it recovers: try a config
//! against traffic before production.
//!
//! Traffic is a generated [`Pattern`](traffic::Pattern) (seeded: the same seed gives the same
//! calls) or a recorded trace ([`parse_csv`](traffic::parse_csv)). Configs are the
//! [`Settings`] users deploy (the same TOML). Time is the breaker's manual clock, so a run is
//! exact, deterministic and fast (millions of calls in seconds).
//!
//! ```
//! use std::time::Duration;
//! use breaker_core::settings::Settings;
//! use breaker_lab::{simulate, traffic::Pattern};
//!
//! let outage = Pattern::Outage { start: Duration::from_secs(10), end: Duration::from_secs(20) };
//! let traffic = outage.generate(10, Duration::from_secs(30), 1);
//! let config: Settings = toml::from_str("count_window = 20\nfailure_rate = 50.0")?;
//! let report = simulate("sensitive", &config, &traffic)?;
//! assert!(report.time_to_trip.unwrap() < Duration::from_secs(2));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use breaker_core::settings::Settings;
use breaker_core::{
    CircuitBreaker, ConfigError, Event, ManualClock, Observer, Outcome, OwnedPermit, Pushback,
    State,
};
use serde::Serialize;

pub mod picture;
pub mod traffic;

use traffic::Traffic;

/// What one config did with the traffic.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    /// The config's name.
    pub config: String,
    /// Calls in the traffic.
    pub calls: u64,
    /// Calls the breaker refused (they never reached the dependency).
    pub shed: u64,
    /// Calls it shed while the dependency was healthy: answers users lost to the breaker
    /// (see [`Traffic::healthy`](traffic::Traffic::healthy)).
    pub good_calls_lost: u64,
    /// Calls that reached the dependency while it was failing (see
    /// [`Traffic::failing`](traffic::Traffic::failing)): what the breaker did not spare it.
    pub hit_failing_dependency: u64,
    /// Calls the breaker would have refused but let through, by its enforcement ramp
    /// (`enforcement` below 100 %); they reached the dependency and are not in `shed`.
    pub let_through: u64,
    /// Times the breaker opened.
    pub trips: u64,
    /// Times it opened while the dependency was healthy; `None` when the traffic's faults
    /// are not known (a trace).
    pub false_trips: Option<u64>,
    /// From the start of the first fault to the first trip after it.
    #[serde(serialize_with = "millis")]
    pub time_to_trip: Option<Duration>,
    /// From the end of the first fault to the breaker closing again (zero if it was closed
    /// again by then); `None` unless [`recovered`](Self::recovered) is `Some(true)`.
    #[serde(serialize_with = "millis")]
    pub time_to_recover: Option<Duration>,
    /// Whether it closed again after the first fault: `None` when that cannot be told (no
    /// fault, no trip in it, or a fault that lasts to the end of the traffic).
    pub recovered: Option<bool>,
    /// Every state change: when (seconds), and to what.
    pub timeline: Vec<(f64, &'static str)>,
    /// Calls shed in each second of the traffic.
    pub shed_per_second: Vec<u64>,
    /// The highest rates the breaker's window reached in each second, after each recorded
    /// call: (second, failure rate %, slow-call rate %); 0 for an empty window (or a breaker
    /// without one).
    pub window_rates: Vec<(f64, f64, f64)>,
    /// The config's failure-rate threshold, in percent, if it has one.
    pub failure_rate_threshold: Option<f64>,
    /// The config's slow-call-rate threshold, in percent, if it has one.
    pub slow_call_rate_threshold: Option<f64>,
}

fn millis<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&(d.as_secs_f64() * 1000.0)),
        None => s.serialize_none(),
    }
}

/// Records every transition, and the rates that tripped the breaker, with the manual
/// clock's time.
struct Timeline {
    clock: ManualClock,
    /// Refusals the enforcement ramp let through.
    unenforced: std::sync::atomic::AtomicU64,
    changes: Mutex<Vec<(Duration, State)>>,
    /// (when, failure rate %, slow-call rate %) of each threshold reached.
    thresholds: Mutex<Vec<(Duration, f64, f64)>>,
}

impl Observer for Timeline {
    fn on_event(&self, event: &Event) {
        match event {
            Event::StateTransition { to, .. } => self
                .changes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((self.clock.elapsed(), *to)),
            Event::Unenforced { .. } => {
                self.unenforced
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            Event::ThresholdExceeded(threshold) => {
                let (failure, slow) = match threshold {
                    breaker_core::Threshold::FailureRate { percent } => (*percent, 0.0),
                    breaker_core::Threshold::SlowCallRate { percent } => (0.0, *percent),
                    _ => return,
                };
                self.thresholds
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((self.clock.elapsed(), failure, slow));
            }
            _ => {}
        }
    }
}

/// Replays `traffic` through a breaker built from `settings`, on the manual clock. Calls
/// overlap as they would: a call's result is recorded when it ends (`at + latency`), in time
/// order with the other calls' starts.
pub fn simulate(name: &str, settings: &Settings, traffic: &Traffic) -> Result<Report, ConfigError> {
    let clock = ManualClock::new();
    let timeline = Arc::new(Timeline {
        clock: clock.clone(),
        unenforced: Default::default(),
        changes: Mutex::new(Vec::new()),
        thresholds: Mutex::new(Vec::new()),
    });
    let breaker = Arc::new(
        settings
            .apply(CircuitBreaker::builder_with_clock(clock.clone()).name(name.to_string()))?
            .observer(Arc::clone(&timeline))
            .build()?,
    );
    type Pending = OwnedPermit<ManualClock, Arc<Timeline>>;
    let mut in_flight: BinaryHeap<Reverse<(Duration, u64)>> = BinaryHeap::new();
    let mut pending: std::collections::HashMap<u64, (Pending, Outcome, Option<Duration>)> =
        std::collections::HashMap::new();
    let move_to = |to: Duration| {
        let now = clock.elapsed();
        if to > now {
            clock.advance(to - now);
        }
    };
    let finish_until =
        |until: Duration,
         in_flight: &mut BinaryHeap<Reverse<(Duration, u64)>>,
         pending: &mut std::collections::HashMap<u64, (Pending, Outcome, Option<Duration>)>,
         window_rates: &mut Vec<(f64, f64, f64)>| {
            while let Some(Reverse((done, id))) = in_flight.peek().copied() {
                if done > until {
                    break;
                }
                in_flight.pop();
                move_to(done);
                if let Some((permit, outcome, retry_after)) = pending.remove(&id) {
                    // The clock stands at the call's end: the permit measures its latency.
                    permit.record_with_pushback(outcome, retry_after.map(Pushback::After));
                    let w = breaker.snapshot();
                    if let Some(peak) = window_rates.get_mut(done.as_secs() as usize) {
                        peak.1 = peak.1.max(w.failure_rate().unwrap_or(0.0));
                        peak.2 = peak.2.max(w.slow_call_rate().unwrap_or(0.0));
                    }
                }
            }
        };
    let in_fault = |at: Duration| traffic.faults.iter().any(|f| f.contains(&at));
    let (mut shed, mut good_lost, mut hit_failing) = (0u64, 0u64, 0u64);
    let seconds = traffic
        .calls
        .last()
        .map_or(0, |c| c.at.as_secs() as usize + 1);
    let mut shed_per_second = vec![0u64; seconds];
    let mut window_rates: Vec<(f64, f64, f64)> =
        (0..=seconds).map(|s| (s as f64 + 0.5, 0.0, 0.0)).collect();
    for (id, call) in traffic.calls.iter().enumerate() {
        finish_until(call.at, &mut in_flight, &mut pending, &mut window_rates);
        move_to(call.at);
        match breaker.try_acquire_owned() {
            Ok(permit) => {
                hit_failing += u64::from(traffic.failing(call));
                let id = id as u64;
                in_flight.push(Reverse((call.at + call.latency, id)));
                pending.insert(id, (permit, call.outcome, call.retry_after));
            }
            Err(_) => {
                shed += 1;
                good_lost += u64::from(traffic.healthy(call));
                shed_per_second[call.at.as_secs() as usize] += 1;
            }
        }
    }
    finish_until(
        Duration::MAX,
        &mut in_flight,
        &mut pending,
        &mut window_rates,
    );

    // The record that trips the breaker leaves its window empty (open): the rate that
    // tripped it comes from the threshold event.
    for (at, failure, slow) in timeline
        .thresholds
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
    {
        if let Some(peak) = window_rates.get_mut(at.as_secs() as usize) {
            peak.1 = peak.1.max(*failure);
            peak.2 = peak.2.max(*slow);
        }
    }
    let changes = timeline
        .changes
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let opens: Vec<Duration> = changes
        .iter()
        .filter(|(_, s)| *s == State::Open)
        .map(|(t, _)| *t)
        .collect();
    let first_fault = traffic.faults.first();
    let first_trip = first_fault.and_then(|f| opens.iter().find(|t| **t >= f.start).copied());
    let last_start = traffic.calls.last().map(|c| c.at);
    // Recovery is measured when the breaker tripped in (or after) the first fault and the
    // fault ended before the traffic did.
    let recovery = first_fault
        .zip(first_trip)
        .filter(|(f, _)| last_start.is_some_and(|last| f.end <= last))
        .map(|(f, trip)| {
            let state_at = |t: Duration| {
                changes
                    .iter()
                    .take_while(|(at, _)| *at <= t)
                    .last()
                    .map_or(State::Closed, |(_, s)| *s)
            };
            if trip < f.end && state_at(f.end) == State::Closed {
                // Closed again before the fault ended, and still closed when it did.
                Some(Duration::ZERO)
            } else {
                changes
                    .iter()
                    .find(|(t, s)| *t >= f.end.max(trip) && *s == State::Closed)
                    .map(|(t, _)| *t - f.end)
            }
        });
    Ok(Report {
        config: name.to_string(),
        calls: traffic.calls.len() as u64,
        shed,
        good_calls_lost: good_lost,
        hit_failing_dependency: hit_failing,
        let_through: timeline
            .unenforced
            .load(std::sync::atomic::Ordering::Relaxed),
        trips: opens.len() as u64,
        false_trips: traffic
            .faults_known
            .then(|| opens.iter().filter(|t| !in_fault(**t)).count() as u64),
        time_to_trip: first_fault.zip(first_trip).map(|(f, t)| t - f.start),
        time_to_recover: recovery.flatten(),
        recovered: recovery.map(|r| r.is_some()),
        timeline: changes
            .iter()
            .map(|(t, s)| (t.as_secs_f64(), s.as_str()))
            .collect(),
        shed_per_second,
        window_rates,
        failure_rate_threshold: settings
            .failure_rate
            .or_else(|| windowed(settings).then_some(50.0)),
        slow_call_rate_threshold: settings.slow_call_rate,
    })
}

fn windowed(s: &Settings) -> bool {
    s.count_window.is_some() || s.time_window.is_some() || s.cumulative_window == Some(true)
}

/// The reports as a table for the terminal. "time to recover" says `never` when the
/// breaker did not close after the first fault, `-` when that cannot be told; the "let
/// through" column appears when a config has an enforcement ramp.
pub fn table(reports: &[Report]) -> String {
    let ms = |d: Option<Duration>| {
        d.map_or("-".to_string(), |d| {
            format!("{:.0} ms", d.as_secs_f64() * 1000.0)
        })
    };
    let ramped = reports.iter().any(|r| r.let_through > 0);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| config | calls | shed | good calls lost | hit failing dependency |{} trips | false trips | time to trip | time to recover |",
        if ramped { " let through |" } else { "" }
    );
    let _ = writeln!(
        out,
        "|---|---:|---:|---:|---:|{}---:|---:|---:|---:|",
        if ramped { "---:|" } else { "" }
    );
    for r in reports {
        let recover = match r.recovered {
            Some(true) => ms(r.time_to_recover),
            Some(false) => "never".to_string(),
            None => "-".to_string(),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} |{} {} | {} | {} | {} |",
            r.config,
            r.calls,
            r.shed,
            r.good_calls_lost,
            r.hit_failing_dependency,
            if ramped {
                format!(" {} |", r.let_through)
            } else {
                String::new()
            },
            r.trips,
            r.false_trips.map_or("-".to_string(), |n| n.to_string()),
            ms(r.time_to_trip),
            recover,
        );
    }
    out
}
