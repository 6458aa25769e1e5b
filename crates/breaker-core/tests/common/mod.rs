//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use breaker_core::{CircuitBreaker, Clock, Event, ManualClock, Observer, Outcome, State};

/// Keeps every event, in order.
#[derive(Clone, Default)]
pub struct Recorder(pub Arc<Mutex<Vec<Event>>>);

impl Observer for Recorder {
    fn on_event(&self, event: &Event) {
        self.0.lock().unwrap().push(*event);
    }
}

impl Recorder {
    pub fn events(&self) -> Vec<Event> {
        self.0.lock().unwrap().clone()
    }

    pub fn transitions(&self) -> Vec<(State, State)> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                Event::StateTransition { from, to } => Some((from, to)),
                _ => None,
            })
            .collect()
    }

    pub fn clear(&self) {
        self.0.lock().unwrap().clear();
    }
}

pub const MS: Duration = Duration::from_millis(1);
pub const NS: Duration = Duration::from_nanos(1);

/// Acquires and records one call; panics if rejected.
pub fn call<C: Clock, O: Observer>(b: &CircuitBreaker<C, O>, outcome: Outcome) {
    b.try_acquire()
        .unwrap_or_else(|r| panic!("expected a permit, got: {r}"))
        .record(outcome);
}

/// Acquires and records one call that took `elapsed`: the breaker's manual clock moves on
/// by that much while the call runs.
pub fn timed<O: Observer>(b: &CircuitBreaker<ManualClock, O>, outcome: Outcome, elapsed: Duration) {
    let permit = b
        .try_acquire()
        .unwrap_or_else(|r| panic!("expected a permit, got: {r}"));
    b.clock().advance(elapsed);
    permit.record(outcome);
}

pub fn fail<C: Clock, O: Observer>(b: &CircuitBreaker<C, O>, n: usize) {
    for _ in 0..n {
        call(b, Outcome::Failure);
    }
}

pub fn succeed<C: Clock, O: Observer>(b: &CircuitBreaker<C, O>, n: usize) {
    for _ in 0..n {
        call(b, Outcome::Success);
    }
}
