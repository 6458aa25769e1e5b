//! Following a state decided elsewhere (`CircuitBreaker::follow`) and the
//! probe allowance a coordinator sets: the hooks `breaker-redis` builds on.

use std::time::Duration;

use breaker_core::{
    CircuitBreaker, Event, Follow, ManualClock, Observer, Outcome, ProbeAllowance, RejectReason,
    State,
};
use std::sync::Mutex;

#[derive(Default)]
struct Log(Mutex<Vec<String>>);

impl Observer for Log {
    fn on_event(&self, event: &Event) {
        if let Event::StateTransition { .. } | Event::Reset = event {
            self.0.lock().unwrap().push(format!("{event:?}"));
        }
    }
}

fn breaker(probes: u32) -> (CircuitBreaker<ManualClock, Log>, ManualClock) {
    let clock = ManualClock::new();
    let b = CircuitBreaker::builder_with_clock(clock.clone())
        .consecutive_failures(2)
        .half_open_probes(probes)
        .open_duration(Duration::from_secs(10))
        .observer(Log::default())
        .build()
        .unwrap();
    (b, clock)
}

#[test]
fn a_followed_open_lasts_the_given_period_with_the_given_backoff() {
    let (b, clock) = breaker(1);
    let open = |secs, attempts| Follow::Open {
        open_for: Duration::from_secs(secs),
        attempts,
    };
    assert_eq!(b.follow(0, open(3, 4)), Some(1));
    assert_eq!(b.snapshot().open_attempts, 4);
    assert_eq!(b.retry_after(), Some(Duration::from_secs(3)));
    assert_eq!(
        b.try_acquire().unwrap_err().retry_after(),
        Some(Duration::from_secs(3))
    );
    assert_eq!(b.follow(1, open(1, 1)), None, "already open, and longer");
    clock.advance(Duration::from_secs(3) + Duration::from_nanos(1));
    assert!(b.try_acquire().unwrap().is_probe());
    assert_eq!(
        *b.observer().0.lock().unwrap(),
        [
            "StateTransition { from: Closed, to: Open }",
            "StateTransition { from: Open, to: HalfOpen }"
        ]
    );
}

#[test]
fn a_followed_close_or_half_open_is_an_ordinary_transition() {
    let (b, _clock) = breaker(1);
    assert_eq!(b.follow(0, Follow::Closed), None, "already closed");
    assert_eq!(b.follow(0, Follow::HalfOpen), Some(1));
    assert_eq!(b.state(), State::HalfOpen);
    assert_eq!(b.follow(1, Follow::Closed), Some(2));
    assert_eq!(b.state(), State::Closed);
    assert_eq!(b.snapshot().open_attempts, 0);
    let log = b.observer().0.lock().unwrap();
    assert!(!log.iter().any(|e| e.contains("Reset")), "{log:?}");
    assert_eq!(log.len(), 2);
}

#[test]
fn operator_modes_win_over_a_followed_state() {
    let (b, _clock) = breaker(1);
    for (mode, state) in [
        (CircuitBreaker::force_open as fn(&_), State::ForcedOpen),
        (CircuitBreaker::disable, State::Disabled),
        (CircuitBreaker::metrics_only, State::MetricsOnly),
    ] {
        mode(&b);
        let generation = b.snapshot().generation;
        let open = Follow::Open {
            open_for: Duration::from_secs(1),
            attempts: 1,
        };
        assert_eq!(b.follow(generation, open), None);
        assert_eq!(b.follow(generation, Follow::HalfOpen), None);
        assert_eq!(b.follow(generation, Follow::Closed), None);
        assert_eq!(b.state(), state);
        b.reset();
    }
}

#[test]
fn a_followed_close_drops_results_of_the_open_generation() {
    let (b, clock) = breaker(2);
    b.trip();
    clock.advance(Duration::from_secs(11));
    let probe = b.try_acquire().unwrap();
    assert!(b.follow(b.snapshot().generation, Follow::Closed).is_some());
    probe.record(Outcome::Failure);
    assert_eq!(
        b.state(),
        State::Closed,
        "the late probe result changes nothing"
    );
    assert_eq!(b.snapshot().totals.late, 1);
}

#[test]
fn without_an_allowance_half_open_admits_nothing_and_says_so() {
    let (b, clock) = breaker(3);
    b.trip();
    let half_open = b.snapshot().generation + 1;
    b.set_probe_allowance(ProbeAllowance::InGeneration {
        generation: half_open,
        probes: 0,
    });
    clock.advance(Duration::from_secs(11));
    let refused = b.try_acquire().unwrap_err();
    assert_eq!(refused.reason(), RejectReason::HalfOpenFull);
    assert_eq!(b.state(), State::HalfOpen, "the period began all the same");
    assert_eq!(b.snapshot().half_open_admitted, 0);

    b.set_probe_allowance(ProbeAllowance::InGeneration {
        generation: half_open,
        probes: 2,
    });
    let p1 = b.try_acquire().unwrap();
    let p2 = b.try_acquire().unwrap();
    assert_eq!(
        b.try_acquire().unwrap_err().reason(),
        RejectReason::HalfOpenFull,
        "two allowed, although half_open_probes is 3"
    );
    p1.record(Outcome::Success);
    p2.record(Outcome::Success);
    assert_eq!(
        b.state(),
        State::HalfOpen,
        "closing still takes 3 successes"
    );
    assert_eq!(b.snapshot().half_open_successes, 2);
}

#[test]
fn an_allowance_for_one_period_does_not_leak_into_the_next() {
    let (b, clock) = breaker(2);
    b.trip();
    let first = b.snapshot().generation + 1;
    b.set_probe_allowance(ProbeAllowance::InGeneration {
        generation: first,
        probes: 2,
    });
    clock.advance(Duration::from_secs(11));
    b.try_acquire().unwrap().record(Outcome::Failure);
    assert_eq!(b.state(), State::Open);
    clock.advance(Duration::from_secs(60));
    assert_eq!(
        b.try_acquire().unwrap_err().reason(),
        RejectReason::HalfOpenFull,
        "the next half-open period has no allowance"
    );
    b.set_probe_allowance(ProbeAllowance::Unlimited);
    assert_eq!(b.probe_allowance(), ProbeAllowance::Unlimited);
    assert!(b.try_acquire().unwrap().is_probe());
}

#[test]
fn open_duration_follows_the_backoff() {
    let b = CircuitBreaker::builder_with_clock(ManualClock::new())
        .exponential_open_duration(Duration::from_secs(1), 2.0, Duration::from_secs(5))
        .build()
        .unwrap();
    let d: Vec<_> = (1..=4).map(|a| b.open_duration(a).as_secs()).collect();
    assert_eq!(d, [1, 2, 4, 5]);
}

#[test]
fn a_decision_made_on_a_generation_the_breaker_left_is_not_followed() {
    let (b, _clock) = breaker(1);
    let seen = b.snapshot().generation;
    b.trip(); // the breaker's own decision, after the one elsewhere was made
    assert_eq!(b.follow(seen, Follow::Closed), None);
    assert_eq!(b.state(), State::Open, "the local trip stands");
    // Counters moving within a generation do not make a decision stale.
    b.reset();
    let seen = b.snapshot().generation;
    b.try_acquire().unwrap().record(Outcome::Failure);
    assert_eq!(b.follow(seen, Follow::HalfOpen), Some(seen + 1));
}

/// A deadline too far to represent saturates at the last representable instant: it is still
/// a deadline, reported as such, never the "no deadline" of a phase without time (an open
/// period of 2^64 ns used to saturate to exactly that value). A clock at its very end never
/// passes it, so open and half-open cannot chase each other there.
#[test]
fn a_saturated_deadline_is_still_a_deadline() {
    let (b, clock) = breaker(1);
    let forever = Follow::Open {
        open_for: Duration::MAX,
        attempts: 1,
    };
    assert_eq!(b.follow(0, forever), Some(1));
    assert_eq!(
        b.retry_after(),
        Some(Duration::from_nanos(u64::MAX - 1)),
        "the last representable deadline, one short of 'none'"
    );
    let clock_end = Duration::from_nanos(u64::MAX);
    clock.advance(clock_end);
    assert_eq!(
        b.state(),
        State::Open,
        "never passed, even at the end of the clock"
    );

    let clock = ManualClock::new();
    let b = CircuitBreaker::builder_with_clock(clock.clone())
        .consecutive_failures(1)
        .open_duration(Duration::MAX)
        .build()
        .unwrap();
    b.trip();
    assert_eq!(b.retry_after(), Some(Duration::from_nanos(u64::MAX - 1)));
    clock.advance(Duration::from_secs(1));
    assert_eq!(
        b.retry_after(),
        Some(Duration::from_nanos(u64::MAX - 1 - 1_000_000_000))
    );
    clock.advance(clock_end);
    assert_eq!(b.state(), State::Open);
    assert_eq!(
        b.try_acquire().unwrap_err().retry_after(),
        Some(Duration::from_nanos(1)),
        "as near as the clock can tell"
    );
}

/// `follow` says which generation it produced: a local decision landing right after it is
/// in another generation, and a coordinator can tell the two apart.
#[test]
fn follow_returns_the_generation_it_produced_and_nothing_else() {
    let (b, _clock) = breaker(1);
    let produced = b.follow(0, Follow::HalfOpen).expect("moved");
    assert_eq!(produced, b.snapshot().generation);
    b.trip(); // the breaker's own decision, right after
    assert_ne!(
        b.snapshot().generation,
        produced,
        "not the followed generation"
    );
    assert_eq!(
        b.follow(produced, Follow::Closed),
        None,
        "the local trip stands"
    );
}

/// An open breaker whose own period ends before the followed one takes the followed
/// deadline (a new generation, no state-change event); a later deadline of its own stands.
#[test]
fn an_open_breaker_takes_a_later_followed_deadline_but_keeps_a_later_own_one() {
    let (b, clock) = breaker(1);
    b.trip(); // its own 10 s
    let own = b.snapshot().generation;
    let longer = Follow::Open {
        open_for: Duration::from_secs(600),
        attempts: 3,
    };
    assert_eq!(b.follow(own, longer), Some(own + 1));
    assert_eq!(b.retry_after(), Some(Duration::from_secs(600)));
    assert_eq!(b.snapshot().open_attempts, 3);
    let shorter = Follow::Open {
        open_for: Duration::from_secs(5),
        attempts: 1,
    };
    assert_eq!(b.follow(own + 1, shorter), None);
    assert_eq!(b.retry_after(), Some(Duration::from_secs(600)));
    clock.advance(Duration::from_secs(11));
    assert_eq!(b.state(), State::Open, "its own 10 s no longer end it");
    let log = b.observer().0.lock().unwrap();
    assert_eq!(
        *log,
        ["StateTransition { from: Closed, to: Open }"],
        "moving the deadline is not a state change"
    );
}

/// A leased allowance holds while it is renewed and lapses to the breaker's own probe limit
/// once its lease runs out; a renewal brings the cap back.
#[test]
fn a_leased_allowance_lapses_to_the_breakers_own_limit() {
    let (b, clock) = breaker(3);
    b.trip();
    let half_open = b.snapshot().generation + 1;
    let none = ProbeAllowance::InGeneration {
        generation: half_open,
        probes: 0,
    };
    let lease = Duration::from_secs(30);
    b.lease_probe_allowance(none, lease);
    clock.advance(Duration::from_secs(11));
    assert_eq!(
        b.try_acquire().unwrap_err().reason(),
        RejectReason::HalfOpenFull
    );
    b.lease_probe_allowance(none, lease); // renewed at 11 s: good until 41 s
    clock.advance(Duration::from_secs(25));
    assert_eq!(b.probe_allowance(), none);
    assert!(b.try_acquire().is_err(), "still capped: renewed");
    clock.advance(Duration::from_secs(6));
    assert_eq!(b.probe_allowance(), ProbeAllowance::Unlimited, "lapsed");
    let probes: Vec<_> = (0..3)
        .map(|_| b.try_acquire().expect("its own limit"))
        .collect();
    assert!(b.try_acquire().is_err(), "its own three, no more");
    b.lease_probe_allowance(
        ProbeAllowance::InGeneration {
            generation: half_open,
            probes: 3,
        },
        lease,
    );
    drop(probes);
    b.set_probe_allowance(ProbeAllowance::Unlimited);
    assert_eq!(b.probe_allowance(), ProbeAllowance::Unlimited);
}

/// A coordinator can give a configuration its probe budget, within the builder's range.
#[test]
fn a_configuration_takes_a_coordinators_probe_budget_within_range() {
    let config = || breaker_core::Config::builder().build_config().unwrap();
    let b = CircuitBreaker::new(
        config().with_half_open_probes(3).unwrap(),
        ManualClock::new(),
        breaker_core::NoopObserver,
    );
    b.trip();
    let clock = b.clock().clone();
    clock.advance(Duration::from_secs(61));
    let probes: Vec<_> = (0..3).map(|_| b.try_acquire().expect("three")).collect();
    assert!(b.try_acquire().is_err());
    drop(probes);
    for bad in [0, 2048] {
        let error = config().with_half_open_probes(bad).unwrap_err();
        assert_eq!(error.field(), "half_open_probes");
        assert!(error.to_string().contains("1..=2047"), "{error}");
    }
}
