//! Operator actions by name (`CircuitBreaker::apply`), the configuration in force, and the
//! registry's view for admin interfaces (`Registry::breakers`, `Registry::get`).

mod common;

use std::sync::Arc;
use std::time::Duration;

use breaker_core::{
    CircuitBreaker, Event, InspectGroup, ManualClock, OperatorAction, Outcome, PolicyKind,
    Registry, Snapshot, State, UnsupportedAction,
};
use common::{Recorder, call, fail};

type Breaker = CircuitBreaker<ManualClock, Recorder>;

fn breaker() -> Breaker {
    CircuitBreaker::builder_with_clock(ManualClock::new())
        .consecutive_failures(3)
        .open_duration(Duration::from_secs(10))
        .observer(Recorder::default())
        .build()
        .unwrap()
}

#[test]
fn each_action_does_what_its_method_does() {
    /// The method the action names.
    fn method(b: &Breaker, action: OperatorAction) {
        match action {
            OperatorAction::Trip => b.trip(),
            OperatorAction::Reset => b.reset(),
            OperatorAction::ForceOpen => b.force_open(),
            OperatorAction::Disable => b.disable(),
            OperatorAction::MetricsOnly => b.metrics_only(),
            other => unreachable!("{other:?} has no method of its own"),
        }
    }
    for action in &OperatorAction::ALL[..5] {
        let action = *action;
        let (by_name, by_method) = (breaker(), breaker());
        call(&by_name, Outcome::Failure);
        call(&by_method, Outcome::Failure);
        by_name.apply(action);
        method(&by_method, action);
        assert_eq!(by_name.snapshot(), by_method.snapshot(), "{action:?}");
        assert_eq!(
            by_name.observer().events(),
            by_method.observer().events(),
            "{action:?}"
        );
    }
}

#[test]
fn normal_ends_an_operator_mode_with_a_reset() {
    for mode in [
        OperatorAction::ForceOpen,
        OperatorAction::Disable,
        OperatorAction::MetricsOnly,
    ] {
        let b = breaker();
        b.apply(mode);
        b.observer().clear();
        b.apply(OperatorAction::Normal);
        let s = b.snapshot();
        assert_eq!((s.state, s.window.consecutive_failures), (State::Closed, 0));
        let events = b.observer().events();
        assert_eq!(events[0], Event::Reset, "{mode:?}");
        assert_eq!(b.observer().transitions().len(), 1, "{mode:?}");
    }
}

#[test]
fn normal_leaves_a_breaker_its_rules_are_in_charge_of() {
    let clock = ManualClock::new();
    let b = CircuitBreaker::builder_with_clock(clock.clone())
        .consecutive_failures(3)
        .open_duration(Duration::from_secs(10))
        .observer(Recorder::default())
        .build()
        .unwrap();
    // Closed with a failure counted: the count stays.
    fail(&b, 1);
    let before = b.snapshot();
    b.apply(OperatorAction::Normal);
    assert_eq!(b.snapshot(), before);
    // Open, then half-open: unchanged, no event.
    fail(&b, 2);
    assert_eq!(b.state(), State::Open);
    b.observer().clear();
    let open = b.snapshot();
    b.apply(OperatorAction::Normal);
    assert_eq!(b.snapshot().generation, open.generation);
    assert_eq!(b.state(), State::Open);
    clock.advance(Duration::from_secs(11));
    assert_eq!(b.state(), State::HalfOpen);
    let half_open = b.snapshot().generation;
    b.apply(OperatorAction::Normal);
    assert_eq!(
        (b.state(), b.snapshot().generation),
        (State::HalfOpen, half_open)
    );
    assert!(!b.observer().events().contains(&Event::Reset));
}

#[test]
fn config_in_force_follows_reconfigure() {
    let b = CircuitBreaker::builder_with_clock(ManualClock::new())
        .consecutive_failures(5)
        .half_open_probes(2)
        .exponential_open_duration(Duration::from_secs(1), 3.0, Duration::from_secs(20))
        .build()
        .unwrap();
    let c = b.config_in_force();
    assert_eq!(c.policy, PolicyKind::ConsecutiveFailures { threshold: 5 });
    assert_eq!(c.open_duration, Duration::from_secs(1));
    assert_eq!(c.open_duration_max, Some(Duration::from_secs(20)));
    assert_eq!(c.backoff_multiplier, Some(3.0));
    assert_eq!((c.failure_rate, c.slow_call_duration), (None, None));
    assert_eq!(c.half_open_probes, 2);

    b.reconfigure(
        breaker_core::Config::builder()
            .consecutive_failures(2)
            .slow_call_duration(Duration::from_millis(300))
            .half_open_probes(4)
            .max_half_open(Duration::from_secs(30))
            .open_duration(Duration::from_secs(7))
            .build_config()
            .unwrap(),
    )
    .unwrap();
    let c = b.config_in_force();
    assert_eq!(c.policy, PolicyKind::ConsecutiveFailures { threshold: 2 });
    assert_eq!(c.slow_call_duration, Some(Duration::from_millis(300)));
    assert_eq!(c.half_open_probes, 4);
    assert_eq!(c.max_half_open, Some(Duration::from_secs(30)));
    assert_eq!(c.open_duration, Duration::from_secs(7));
    assert_eq!((c.open_duration_max, c.backoff_multiplier), (None, None));
    assert!(!c.open_duration_fn && !c.trip_predicate && c.jitter.is_none());

    let custom = CircuitBreaker::builder_with_clock(ManualClock::new())
        .count_window(10)
        .failure_rate(40.0)
        .slow_calls(Duration::from_secs(1), 60.0)
        .open_duration_fn(|attempt| Duration::from_secs(u64::from(attempt) * 4))
        .jitter(0.1, || 7)
        .build()
        .unwrap();
    let c = custom.config_in_force();
    assert_eq!(c.policy, PolicyKind::CountWindow { size: 10 });
    assert_eq!((c.failure_rate, c.slow_call_rate), (Some(40.0), Some(60.0)));
    assert_eq!(c.open_duration, Duration::from_secs(4));
    assert!(c.open_duration_fn && !c.trip_predicate);
    assert_eq!(c.jitter, Some(0.1));
    assert_eq!((c.open_duration_max, c.backoff_multiplier), (None, None));

    // A predicate replaces the rate rules.
    let predicate = CircuitBreaker::builder_with_clock(ManualClock::new())
        .count_window(10)
        .trip_when(|counts| counts.failures > 3)
        .build()
        .unwrap();
    let c = predicate.config_in_force();
    assert!(c.trip_predicate);
    assert_eq!((c.failure_rate, c.slow_call_rate), (None, None));
}

/// A group that reports snapshots only (the trait's defaults give read-only members).
struct Snapshots(Vec<(String, Snapshot)>);

impl InspectGroup for Snapshots {
    fn snapshots(&self) -> Vec<(String, Snapshot)> {
        self.0.clone()
    }
}

#[test]
fn registry_finds_breakers_and_group_members_by_name() {
    let registry = Registry::new();
    let one = Arc::new(
        CircuitBreaker::builder_with_clock(ManualClock::new())
            .name("payments-api")
            .build()
            .unwrap(),
    );
    registry.register_critical("payments", one.clone()).unwrap();
    let tripped = CircuitBreaker::builder_with_clock(ManualClock::new())
        .build()
        .unwrap();
    tripped.trip();
    registry
        .register_group(
            "hosts",
            Arc::new(Snapshots(vec![
                ("b.example".into(), tripped.snapshot()),
                ("a.example".into(), one.snapshot()),
            ])),
        )
        .unwrap();
    // A group whose name has a slash, beside one that is its prefix.
    registry
        .register_group(
            "hosts/eu",
            Arc::new(Snapshots(vec![("c.example".into(), tripped.snapshot())])),
        )
        .unwrap();

    let names: Vec<_> = registry.breakers().into_iter().map(|r| r.name).collect();
    assert_eq!(
        names,
        [
            "hosts/a.example",
            "hosts/b.example",
            "hosts/eu/c.example",
            "payments"
        ]
    );

    let payments = registry.get("payments").expect("registered");
    assert!(payments.critical);
    assert_eq!(payments.breaker.name(), "payments-api");
    assert!(payments.breaker.config().is_some());
    payments.breaker.apply(OperatorAction::ForceOpen).unwrap();
    assert_eq!(one.state(), State::ForcedOpen);

    let member = registry.get("hosts/b.example").expect("a member");
    assert_eq!(member.breaker.snapshot().state, State::Open);
    assert!(!member.critical);
    assert_eq!(member.breaker.config(), None);
    assert_eq!(
        member.breaker.apply(OperatorAction::Reset),
        Err(UnsupportedAction(OperatorAction::Reset))
    );
    assert!(registry.get("hosts/eu/c.example").is_some());
    for unknown in [
        "",
        "/",
        "hosts",
        "hosts/",
        "hosts/z.example",
        "nope/a.example",
    ] {
        assert!(registry.get(unknown).is_none(), "{unknown:?}");
    }
}
