//! The keyed registry's contract: which breakers it keeps when the cache needs room (open,
//! half-open, forced open, holding failures, used by a call), how many, what gives way when
//! the pinned share is full, what idle breakers it lets go, and what it reports.

use std::sync::{Arc, Weak};
use std::time::Duration;

use breaker_core::{
    CircuitBreaker, InspectGroup, ManualClock, NoopObserver, OperatorAction, Outcome, Permit, State,
};
use breaker_tower::{KeyedRegistry, KeyedRegistryBuilder};

type Registry = KeyedRegistry<String, ManualClock, NoopObserver>;

const CAPACITY: usize = 100;

/// Breakers that trip on the first failure and stay open for 10 s.
fn registry(clock: &ManualClock) -> Registry {
    registry_with(clock, KeyedRegistry::builder(CAPACITY))
}

fn registry_with(
    clock: &ManualClock,
    builder: KeyedRegistryBuilder<String, ManualClock, NoopObserver>,
) -> Registry {
    let clock = clock.clone();
    builder
        .build(move |_: &String| {
            CircuitBreaker::builder_with_clock(clock.clone())
                .consecutive_failures(1)
                .open_duration(Duration::from_secs(10))
                .thread_counters(0)
                .build()
                .unwrap()
        })
        .unwrap()
}

/// Breakers with a count window: 5 calls before they may trip, so one failure leaves them
/// closed and failing.
fn windowed(clock: &ManualClock) -> Registry {
    let clock = clock.clone();
    KeyedRegistry::new(CAPACITY, move |_: &String| {
        CircuitBreaker::builder_with_clock(clock.clone())
            .count_window(10)
            .minimum_calls(5)
            .failure_rate(50.0)
            .open_duration(Duration::from_secs(10))
            .thread_counters(0)
            .build()
            .unwrap()
    })
    .unwrap()
}

/// Healthy keys, each asked for twice (so that the cache's hot part churns too), far more of
/// them than the registry holds.
fn flood(registry: &Registry, from: usize) {
    for i in from..from + 20 * CAPACITY {
        let host = format!("flood-{i}.example");
        registry.get(host.as_str());
        registry.get(host.as_str());
    }
}

/// Whether `breaker` is the one `was` points to (a `Weak` keeps its address from being reused
/// by a breaker made later).
fn same(
    breaker: &Arc<CircuitBreaker<ManualClock>>,
    was: &Weak<CircuitBreaker<ManualClock>>,
) -> bool {
    std::ptr::eq(Arc::as_ptr(breaker), was.as_ptr())
}

fn fail(breaker: &Arc<CircuitBreaker<ManualClock>>) {
    Permit::acquire(breaker).unwrap().record(Outcome::Failure);
}

fn succeed(breaker: &Arc<CircuitBreaker<ManualClock>>) {
    Permit::acquire(breaker).unwrap().record(Outcome::Success);
}

#[test]
fn breakers_in_trouble_keep_their_state_through_a_flood_of_new_keys() {
    let clock = ManualClock::new();
    let registry = registry(&clock);
    let open = registry.get("open.example");
    fail(&open);
    let forced = registry.get("forced.example");
    forced.force_open();
    let half_open = registry.get("half-open.example");
    fail(&half_open);
    let healthy = registry.get("healthy.example");
    succeed(&healthy);
    clock.advance(Duration::from_secs(10) + Duration::from_nanos(1));
    let probe = Permit::acquire(&half_open).expect("a probe");
    let windowed_registry = windowed(&clock);
    let failing = windowed_registry.get("failing.example");
    fail(&failing);
    let (open_was, forced_was, half_open_was, failing_was, healthy_was) = (
        Arc::downgrade(&open),
        Arc::downgrade(&forced),
        Arc::downgrade(&half_open),
        Arc::downgrade(&failing),
        Arc::downgrade(&healthy),
    );
    drop((open, forced, half_open, failing, healthy));
    // The probe's permit holds its breaker: a call in flight.

    flood(&registry, 0);
    flood(&windowed_registry, 0);
    assert_eq!(registry.stats().pinned, 3, "{:?}", registry.stats());
    assert_eq!(windowed_registry.stats().pinned, 1);

    let open = registry.get("open.example");
    assert!(same(&open, &open_was), "the open breaker came back");
    assert_eq!(
        open.state(),
        State::HalfOpen,
        "its open period ended meanwhile"
    );
    let forced = registry.get("forced.example");
    assert!(same(&forced, &forced_was));
    assert_eq!(forced.state(), State::ForcedOpen);
    let half_open = registry.get("half-open.example");
    assert!(same(&half_open, &half_open_was));
    probe.record(Outcome::Success);
    assert_eq!(half_open.state(), State::Closed, "its probe closed it");
    let failing = windowed_registry.get("failing.example");
    assert!(same(&failing, &failing_was));
    assert_eq!(failing.snapshot().window.failures, 1);
    // (Putting them back in a cache this small may evict one of them again: held aside again.)
    let stats = registry.stats();
    assert_eq!((stats.returned, stats.pins_lost), (3, 0), "{stats:?}");
    assert_eq!(windowed_registry.stats().returned, 1);

    // A healthy breaker had nothing to lose: its key starts again.
    let healthy = registry.get("healthy.example");
    assert!(!same(&healthy, &healthy_was));
    assert_eq!(healthy_was.strong_count(), 0, "and it is gone");
    assert_eq!(healthy.snapshot().totals.successes, 0);
}

#[test]
fn a_breaker_whose_call_is_in_flight_records_the_outcome_where_its_key_finds_it() {
    let clock = ManualClock::new();
    let registry = windowed(&clock);
    let breaker = registry.get("slow.example");
    let permit = Permit::acquire(&breaker).unwrap();
    let was = Arc::downgrade(&breaker);
    drop(breaker);
    flood(&registry, 0);
    // The upstream times out long after the flood evicted the breaker from the cache.
    permit.record(Outcome::Failure);
    let breaker = registry.get("slow.example");
    assert!(same(&breaker, &was), "the failure was not recorded in vain");
    assert_eq!(breaker.snapshot().window.failures, 1);
}

#[test]
fn when_the_pinned_share_is_full_failing_breakers_give_way_to_tripped_ones() {
    let clock = ManualClock::new();
    let registry = windowed(&clock);
    assert_eq!(registry.stats().max_pinned, 10);
    let mut tripped = Vec::new();
    for i in 0..5 {
        let breaker = registry.get(format!("down-{i}.example").as_str());
        for _ in 0..5 {
            fail(&breaker);
        }
        assert_eq!(breaker.state(), State::Open);
        tripped.push(Arc::downgrade(&breaker));
    }
    for i in 0..20 {
        fail(&registry.get(format!("failing-{i}.example").as_str()));
    }
    flood(&registry, 0);
    let stats = registry.stats();
    assert_eq!(
        (stats.pinned, stats.pins_lost),
        (10, 15),
        "10 kept, the other 15 let go and counted: {stats:?}"
    );
    for (i, was) in tripped.into_iter().enumerate() {
        let breaker = registry.get(format!("down-{i}.example").as_str());
        assert!(same(&breaker, &was), "no tripped breaker gave way");
        assert_eq!(breaker.state(), State::Open);
    }
    let kept_failing = (0..20)
        .filter(|i| {
            registry
                .peek(format!("failing-{i}.example").as_str())
                .is_some_and(|b| b.snapshot().window.failures == 1)
        })
        .count();
    assert_eq!(kept_failing, 5);
    assert!(registry.len() <= CAPACITY, "{} held", registry.len());
}

#[test]
fn when_the_pinned_share_is_full_of_tripped_breakers_the_longest_held_gives_way() {
    let clock = ManualClock::new();
    let registry = registry(&clock);
    for i in 0..15 {
        fail(&registry.get(format!("down-{i}.example").as_str()));
    }
    flood(&registry, 0);
    let stats = registry.stats();
    assert_eq!((stats.pinned, stats.pins_lost), (10, 5), "{stats:?}");
    let still_open = (0..15)
        .filter(|i| {
            registry
                .peek(format!("down-{i}.example").as_str())
                .is_some_and(|b| b.state() == State::Open)
        })
        .count();
    assert_eq!(still_open, 10);

    // A share of 0 keeps nothing: every evicted key starts again, and the losses are counted.
    let none = registry_with(&clock, KeyedRegistry::builder(CAPACITY).pinned_share(0.0));
    fail(&none.get("down.example"));
    flood(&none, 0);
    let stats = none.stats();
    assert_eq!((stats.max_pinned, stats.pinned, stats.pins_lost), (0, 0, 1));
    assert_eq!(none.get("down.example").state(), State::Closed);
}

#[test]
fn a_pinned_breaker_that_recovered_is_let_go_by_the_next_sweep() {
    let clock = ManualClock::new();
    let registry = registry(&clock);
    fail(&registry.get("down.example"));
    flood(&registry, 0);
    assert_eq!(registry.stats().pinned, 1);
    registry.sweep();
    assert_eq!(registry.stats().pinned, 1, "still open: kept");

    // Its probe succeeds through a caller that held it from before.
    let held = registry.peek("down.example").expect("held aside");
    assert_eq!(registry.stats().pinned, 1, "peek leaves it where it is");
    clock.advance(Duration::from_secs(10) + Duration::from_nanos(1));
    succeed(&held);
    assert_eq!(held.state(), State::Closed);
    drop(held);
    registry.sweep();
    assert_eq!(registry.stats().pinned, 0);
    assert!(registry.peek("down.example").is_none());
}

#[test]
fn idle_closed_breakers_expire_after_the_ttl_and_open_ones_never_do() {
    let clock = ManualClock::new();
    let registry = registry_with(
        &clock,
        KeyedRegistry::builder(CAPACITY).idle_ttl(Duration::from_secs(60)),
    );
    succeed(&registry.get("idle.example"));
    succeed(&registry.get("busy.example"));
    fail(&registry.get("down.example"));
    let in_flight = Permit::acquire(&registry.get("streaming.example")).unwrap();
    registry.sweep(); // first look: every breaker is marked

    clock.advance(Duration::from_secs(59));
    succeed(&registry.get("busy.example"));
    registry.sweep();
    assert!(registry.peek("idle.example").is_some(), "59 s idle: kept");

    clock.advance(Duration::from_secs(2));
    registry.sweep();
    assert!(registry.peek("idle.example").is_none(), "61 s idle: let go");
    assert!(registry.peek("busy.example").is_some(), "called 2 s ago");
    assert!(
        registry.peek("streaming.example").is_some(),
        "its call is in flight"
    );
    assert_eq!(registry.stats().expired, 1);

    clock.advance(Duration::from_secs(600));
    registry.sweep();
    registry.sweep();
    let down = registry
        .peek("down.example")
        .expect("open breakers never expire");
    assert!(matches!(down.state(), State::Open | State::HalfOpen));
    drop(down);
    assert!(registry.peek("busy.example").is_none());
    assert!(
        registry.peek("streaming.example").is_some(),
        "still in flight"
    );
    in_flight.record(Outcome::Success);
    registry.sweep(); // sees the call's outcome: idle from now on
    clock.advance(Duration::from_secs(61));
    registry.sweep();
    assert!(registry.peek("streaming.example").is_none());
    assert_eq!(registry.stats().expired, 3);

    // An expired key starts again with a fresh breaker.
    assert_eq!(
        registry.get("idle.example").snapshot().totals.successes,
        0,
        "a fresh breaker"
    );
}

#[test]
fn failing_breakers_held_aside_expire_after_the_ttl() {
    let clock = ManualClock::new();
    let c = clock.clone();
    let registry = KeyedRegistry::builder(CAPACITY)
        .idle_ttl(Duration::from_secs(60))
        .build(move |_: &String| {
            CircuitBreaker::builder_with_clock(c.clone())
                .consecutive_failures(5)
                .thread_counters(0)
                .build()
                .unwrap()
        })
        .unwrap();
    fail(&registry.get("flaky.example"));
    flood(&registry, 0);
    assert_eq!(registry.stats().pinned, 1, "one failure in a row: kept");
    clock.advance(Duration::from_secs(59));
    registry.sweep();
    assert_eq!(registry.stats().pinned, 1);
    clock.advance(Duration::from_secs(2));
    registry.sweep();
    assert!(
        registry.peek("flaky.example").is_none(),
        "61 s idle: let go"
    );
    let stats = registry.stats();
    assert_eq!(stats.pinned, 0, "{stats:?}");
    assert!(
        stats.expired > 1,
        "the flood's breakers expired too: {stats:?}"
    );
}

#[test]
fn pinned_breakers_are_listed_found_and_steered_with_a_pinned_detail() {
    let clock = ManualClock::new();
    let keyed = Arc::new(registry(&clock));
    fail(&keyed.get("down.example"));
    flood(&keyed, 0);
    let held = keyed.len();
    assert!(held <= CAPACITY, "{held} held");

    let group = breaker_core::Registry::new();
    group.register_group("upstreams", keyed.clone()).unwrap();
    let down = group
        .get("upstreams/down.example")
        .expect("listed while pinned");
    assert_eq!(down.breaker.snapshot().state, State::Open);
    assert_eq!(
        down.breaker.details(),
        [("pinned".to_string(), "tripped".to_string())]
    );
    assert!(down.breaker.config().is_some());
    let listed = keyed.members();
    assert_eq!(listed.len(), held, "every breaker held, once");
    assert_eq!(
        keyed
            .snapshots()
            .iter()
            .filter(|(key, s)| key == "down.example" && s.state == State::Open)
            .count(),
        1
    );

    // An operator's action reaches the very breaker the key gets back.
    drop(listed);
    down.breaker.apply(OperatorAction::Reset).unwrap();
    assert_eq!(keyed.get("down.example").state(), State::Closed);
    assert_eq!(keyed.stats().pinned, 0);
}

#[test]
fn a_key_never_has_two_breakers_while_a_flood_runs_on_another_thread() {
    let clock = ManualClock::new();
    let registry = Arc::new(registry(&clock));
    let down = registry.get("down.example");
    fail(&down);
    let was = Arc::downgrade(&down);
    drop(down);
    let flooding = {
        let registry = registry.clone();
        std::thread::spawn(move || {
            for round in 0..5 {
                flood(&registry, round * 20 * CAPACITY);
            }
        })
    };
    let mut lookups = 0u64;
    while !flooding.is_finished() {
        let breaker = registry.get("down.example");
        assert!(same(&breaker, &was), "after {lookups} lookups");
        assert_eq!(breaker.state(), State::Open);
        drop(breaker);
        lookups += 1;
        if lookups.is_multiple_of(64) {
            std::thread::yield_now();
        }
    }
    flooding.join().unwrap();
    assert!(same(&registry.get("down.example"), &was));
}

#[test]
fn invalid_settings_are_refused_naming_the_field() {
    let clock = ManualClock::new();
    let build = |builder: KeyedRegistryBuilder<String, ManualClock, NoopObserver>| {
        let c = clock.clone();
        builder
            .build(move |_| {
                CircuitBreaker::builder_with_clock(c.clone())
                    .build()
                    .unwrap()
            })
            .map(|_| ())
    };
    let err = |builder| build(builder).unwrap_err();
    let b = KeyedRegistry::<String, ManualClock, NoopObserver>::builder;
    assert_eq!(err(b(0)).field(), "keyed.capacity");
    for share in [-1.0, 90.5, f64::NAN, f64::INFINITY] {
        let e = err(b(100).pinned_share(share));
        assert_eq!(e.field(), "keyed.pinned_share", "{share}");
        assert_eq!(e.allowed(), "a percentage of the capacity in [0, 90]");
    }
    let e = err(b(100).idle_ttl(Duration::from_millis(999)));
    assert_eq!(e.field(), "keyed.idle_ttl");
    assert_eq!(
        e.to_string(),
        "invalid circuit breaker config: `keyed.idle_ttl` is 999ms, allowed: at least 1 s"
    );
    for ok in [
        b(1),
        b(100).pinned_share(0.0),
        b(100).pinned_share(90.0),
        b(100).idle_ttl(Duration::from_secs(1)),
    ] {
        assert!(build(ok).is_ok());
    }
    let one = registry_with(&clock, b(1).pinned_share(90.0));
    assert_eq!((one.capacity(), one.stats().max_pinned), (1, 0));
}
