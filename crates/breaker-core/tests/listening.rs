//! Breakers that listen: a dependency's pushback (HTTP `Retry-After`, gRPC pushback) sets
//! the open period it opens, bounded; an enforcement ramp enforces a share of the refusals,
//! reporting the rest apart, deterministically for a seed.
#![cfg(not(loom))]

mod common;

use std::time::Duration;

use breaker_core::settings::Settings;
use breaker_core::{
    CircuitBreaker, Config, Event, ManualClock, Outcome, Pushback, RejectReason, State,
};
use common::{NS, Recorder};

const SEC: Duration = Duration::from_secs(1);

fn breaker(clock: &ManualClock) -> CircuitBreaker<ManualClock, Recorder> {
    CircuitBreaker::builder_with_clock(clock.clone())
        .consecutive_failures(1)
        .open_duration(10 * SEC)
        .observer(Recorder::default())
        .build()
        .unwrap()
}

fn fail_with(b: &CircuitBreaker<ManualClock, Recorder>, pushback: Option<Pushback>) {
    b.try_acquire()
        .unwrap()
        .record_with_pushback(Outcome::Failure, pushback);
}

#[test]
fn a_pushback_longer_than_the_open_period_stretches_it_and_a_shorter_one_does_not() {
    let clock = ManualClock::new();
    let b = breaker(&clock);
    fail_with(&b, Some(Pushback::After(60 * SEC)));
    assert_eq!(b.retry_after(), Some(60 * SEC));
    clock.advance(60 * SEC + NS);
    b.try_acquire().unwrap().record(Outcome::Success); // the probe closes it
    assert_eq!(b.state(), State::Closed);

    fail_with(&b, Some(Pushback::After(SEC)));
    assert_eq!(b.retry_after(), Some(10 * SEC), "its own, longer, period");
}

#[test]
fn a_pushback_is_bounded_and_do_not_retry_means_the_bound() {
    let clock = ManualClock::new();
    let b = breaker(&clock);
    // Default bound: the longest open period, at least 5 minutes.
    fail_with(&b, Some(Pushback::After(Duration::from_secs(86_400))));
    assert_eq!(b.retry_after(), Some(Duration::from_secs(300)));
    b.reset();
    fail_with(&b, Some(Pushback::DoNotRetry));
    assert_eq!(b.retry_after(), Some(Duration::from_secs(300)));

    let bounded = CircuitBreaker::builder_with_clock(clock.clone())
        .consecutive_failures(1)
        .open_duration(10 * SEC)
        .max_pushback(30 * SEC)
        .build()
        .unwrap();
    bounded
        .try_acquire()
        .unwrap()
        .record_with_pushback(Outcome::Failure, Some(Pushback::DoNotRetry));
    assert_eq!(bounded.retry_after(), Some(30 * SEC));
    // The bound can change at run time.
    bounded.reset();
    bounded
        .reconfigure(
            Config::builder()
                .consecutive_failures(1)
                .open_duration(10 * SEC)
                .max_pushback(20 * SEC)
                .build_config()
                .unwrap(),
        )
        .unwrap();
    bounded
        .try_acquire()
        .unwrap()
        .record_with_pushback(Outcome::Failure, Some(Pushback::After(45 * SEC)));
    assert_eq!(bounded.retry_after(), Some(20 * SEC));
}

#[test]
fn a_failed_probe_with_a_pushback_reopens_for_it() {
    let clock = ManualClock::new();
    let b = breaker(&clock);
    b.trip();
    clock.advance(10 * SEC + NS);
    fail_with(&b, Some(Pushback::After(40 * SEC)));
    assert_eq!(b.state(), State::Open);
    assert_eq!(b.retry_after(), Some(40 * SEC));
}

#[test]
fn only_a_failure_that_opens_the_breaker_uses_its_pushback() {
    let clock = ManualClock::new();
    let b = CircuitBreaker::builder_with_clock(clock.clone())
        .consecutive_failures(2)
        .open_duration(10 * SEC)
        .build()
        .unwrap();
    let after = Some(Pushback::After(100 * SEC));
    b.try_acquire()
        .unwrap()
        .record_with_pushback(Outcome::Success, after);
    b.try_acquire()
        .unwrap()
        .record_with_pushback(Outcome::Failure, after); // does not trip yet
    b.try_acquire().unwrap().record(Outcome::Failure); // trips, without a pushback
    assert_eq!(b.retry_after(), Some(10 * SEC));
}

#[test]
fn a_zero_pushback_bound_is_refused_naming_the_field() {
    let err = CircuitBreaker::builder()
        .max_pushback(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "max_pushback");
}

fn ramp(percent: f64, seed: u64) -> CircuitBreaker<ManualClock, Recorder> {
    CircuitBreaker::builder_with_clock(ManualClock::new())
        .consecutive_failures(1)
        .enforcement(percent)
        .enforcement_seed(seed)
        .observer(Recorder::default())
        .build()
        .unwrap()
}

/// Which of `n` calls to an open breaker are admitted.
fn admitted(b: &CircuitBreaker<ManualClock, Recorder>, n: usize) -> Vec<bool> {
    (0..n)
        .map(|_| match b.try_acquire() {
            Ok(permit) => {
                permit.record(Outcome::Failure); // counts nowhere: let through, not recorded
                true
            }
            Err(_) => false,
        })
        .collect()
}

#[test]
fn at_zero_the_breaker_decides_everything_and_refuses_nothing() {
    let b = ramp(0.0, 7);
    b.try_acquire().unwrap().record(Outcome::Failure);
    assert_eq!(b.state(), State::Open, "it still trips");
    assert!(admitted(&b, 100).iter().all(|a| *a));
    let s = b.snapshot();
    assert_eq!((s.totals.rejected, s.totals.unenforced), (0, 100));
    assert_eq!(s.state, State::Open, "the calls let through count nowhere");
    let reasons: Vec<_> = b
        .observer()
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Event::Unenforced { reason } => Some(reason),
            Event::Rejected { .. } => panic!("nothing is refused at 0 %"),
            _ => None,
        })
        .collect();
    assert_eq!(reasons.len(), 100);
    assert!(reasons.iter().all(|r| *r == RejectReason::Open));
}

#[test]
fn a_share_is_enforced_and_the_same_seed_enforces_the_same_calls() {
    let run = |seed| {
        let b = ramp(30.0, seed);
        b.trip();
        let a = admitted(&b, 10_000);
        let s = b.snapshot();
        assert_eq!(
            s.totals.rejected + s.totals.unenforced,
            10_000,
            "every refusal decided is counted once"
        );
        a
    };
    let first = run(42);
    let enforced = first.iter().filter(|a| !**a).count();
    assert!((2_800..3_200).contains(&enforced), "{enforced} of 10,000");
    assert_eq!(run(42), first, "the same seed, the same choices");
    assert_ne!(run(43), first, "another seed, other choices");
}

#[test]
fn an_operators_isolation_is_always_enforced() {
    let b = ramp(0.0, 1);
    b.force_open();
    assert!(admitted(&b, 10).iter().all(|a| !*a));
    assert_eq!(
        b.try_acquire().unwrap_err().reason(),
        RejectReason::ForcedOpen
    );
}

#[test]
fn half_open_probes_are_real_and_the_rest_is_let_through_unrecorded() {
    let clock = ManualClock::new();
    let b = CircuitBreaker::builder_with_clock(clock.clone())
        .consecutive_failures(1)
        .half_open_probes(1)
        .open_duration(SEC)
        .enforcement(0.0)
        .build()
        .unwrap();
    b.trip();
    clock.advance(SEC + NS);
    let probe = b.try_acquire().unwrap();
    assert!(probe.is_probe());
    let extra = b.try_acquire().expect("let through, not refused");
    assert!(!extra.is_probe());
    extra.record(Outcome::Failure); // not a probe: does not re-open
    assert_eq!(b.state(), State::HalfOpen);
    probe.record(Outcome::Success);
    assert_eq!(b.state(), State::Closed);
    assert_eq!(b.snapshot().totals.unenforced, 1);
}

#[test]
fn the_ramp_moves_at_run_time_and_from_settings() {
    let b = ramp(0.0, 3);
    b.trip();
    assert!(admitted(&b, 50).iter().all(|a| *a));
    let full: Settings = toml::from_str("consecutive_failures = 1\nenforcement = 100.0").unwrap();
    b.reconfigure(full.to_config().unwrap()).unwrap();
    assert!(admitted(&b, 50).iter().all(|a| !*a));

    let vars = [
        ("API_BREAKER_ENFORCEMENT".to_string(), "25".to_string()),
        ("API_BREAKER_ENFORCEMENT_SEED".to_string(), "9".to_string()),
        ("API_BREAKER_MAX_PUSHBACK".to_string(), "2m".to_string()),
    ];
    let s = Settings::from_vars("API_BREAKER", vars).unwrap();
    assert_eq!(
        (s.enforcement, s.enforcement_seed, s.max_pushback),
        (Some(25.0), Some(9), Some(Duration::from_secs(120)))
    );
    let config = s.build().unwrap().config_in_force();
    assert_eq!(config.enforcement, 25.0);
    assert_eq!(config.max_pushback, Duration::from_secs(120));

    for bad in [-1.0, 100.5, f64::NAN] {
        let err = CircuitBreaker::builder()
            .enforcement(bad)
            .build()
            .unwrap_err();
        assert_eq!(err.field(), "enforcement", "{bad}");
    }
}
