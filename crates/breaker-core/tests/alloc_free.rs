//! The hot paths allocate nothing: closed-state calls under every policy, rejections while
//! open, half-open probes, the `call` helper and snapshots.
#![cfg(not(loom))]

use std::time::Duration;

use breaker_core::{CircuitBreaker, ManualClock, Observer, Outcome, State};
use breaker_test_support::{CountingAllocator, allocations};

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

const CALLS: usize = 10_000;

fn closed_calls<O: Observer>(b: &CircuitBreaker<ManualClock, O>) {
    for i in 0..CALLS {
        let outcome = if i % 10 == 0 {
            Outcome::Failure
        } else {
            Outcome::Success
        };
        let permit = b
            .try_acquire()
            .unwrap_or_else(|r| panic!("{:?} call {i}: {r}; {:?}", b.policy(), b.snapshot()));
        // Calls of 0 to 300 µs, some of them slow.
        b.clock().advance(Duration::from_micros(i as u64 % 300));
        permit.record(outcome);
    }
}

#[test]
fn closed_state_calls_allocate_nothing_under_every_policy() {
    let clock = ManualClock::new();
    let builders = [
        CircuitBreaker::builder_with_clock(clock.clone())
            .consecutive_failures(5)
            .build(),
        CircuitBreaker::builder_with_clock(clock.clone())
            .count_window(100)
            .minimum_calls(10)
            .slow_calls(Duration::from_micros(200), 100.0)
            .build(),
        CircuitBreaker::builder_with_clock(clock.clone())
            .time_window(Duration::from_secs(10), 10)
            .minimum_calls(10)
            .build(),
        CircuitBreaker::builder_with_clock(clock.clone())
            .cumulative_window()
            .trip_when(|c| c.failures > 10_000)
            .build(),
    ];
    for b in builders {
        let b = b.unwrap();
        closed_calls(&b); // warm-up (thread-local stripe index)
        let n = allocations(|| {
            closed_calls(&b);
            clock.advance(Duration::from_millis(1));
        });
        assert_eq!(n, 0, "{:?}", b.policy());
        assert_eq!(b.state(), State::Closed);
    }
}

#[test]
fn rejections_probes_call_helper_and_snapshots_allocate_nothing() {
    let clock = ManualClock::new();
    let b = CircuitBreaker::builder_with_clock(clock.clone())
        .consecutive_failures(1)
        .half_open_probes(2)
        .open_duration(Duration::from_secs(1))
        .build()
        .unwrap();
    let _ = b.call(|| Ok::<_, ()>(()));
    let n = allocations(|| {
        let _ = b.call(|| Err::<(), _>(()));
        for _ in 0..CALLS {
            assert!(b.try_acquire().is_err());
        }
        let _ = b.snapshot();
        clock.advance(Duration::from_secs(2));
        let p1 = b.try_acquire().unwrap();
        let p2 = b.try_acquire().unwrap();
        assert!(b.try_acquire().is_err());
        p1.record(Outcome::Success);
        drop(p2);
        b.try_acquire().unwrap().record(Outcome::Success);
        assert_eq!(b.state(), State::Closed);
        for _ in 0..CALLS {
            let _ = b.call(|| Ok::<_, ()>(()));
        }
    });
    assert_eq!(n, 0);
}

#[test]
fn the_counting_allocator_sees_allocations() {
    let n = allocations(|| drop(std::hint::black_box(Box::new(7u64))));
    assert_eq!(n, 1);
}
