//! `TracingObserver`: what a breaker's life looks like in the logs.
#![cfg(all(feature = "tracing", not(loom)))]

use std::fmt::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use breaker_core::{CircuitBreaker, ManualClock, Outcome, TracingObserver};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// Keeps every event as `LEVEL field=value ...`.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<String>>>);

struct Fields(String);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, " {}={value:?}", field.name());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        let _ = write!(self.0, " {}={value}", field.name());
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields(event.metadata().level().to_string());
        event.record(&mut fields);
        self.0.lock().unwrap().push(fields.0);
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[test]
fn transitions_carry_name_reason_and_rate_and_rejections_are_sampled() {
    let capture = Capture::default();
    let clock = ManualClock::new();
    tracing::subscriber::with_default(capture.clone(), || {
        let b = CircuitBreaker::builder_with_clock(clock.clone())
            .name("payments")
            .count_window(4)
            .minimum_calls(4)
            .failure_rate(50.0)
            .open_duration(Duration::from_secs(1))
            .observer(TracingObserver::new())
            .build()
            .unwrap();
        for outcome in [
            Outcome::Success,
            Outcome::Failure,
            Outcome::Success,
            Outcome::Failure,
        ] {
            b.try_acquire().unwrap().record(outcome);
        }
        for _ in 0..100 {
            assert!(b.try_acquire().is_err());
        }
        clock.advance(Duration::from_secs(2));
        b.try_acquire().unwrap().record(Outcome::Success);
        b.reset();
    });
    let events = capture.0.lock().unwrap().clone();
    let opened = &events[0];
    assert!(opened.starts_with("WARN"), "{events:#?}");
    for field in [
        "breaker=payments",
        "from=closed",
        "to=open",
        "reason=failure_rate",
        "failure_rate=50.0",
    ] {
        assert!(opened.contains(field), "{field} missing in {opened}");
    }
    assert!(
        !opened.contains("slow_call_rate"),
        "no slow-call rule tripped: {opened}"
    );
    let rejections: Vec<&String> = events
        .iter()
        .filter(|e| e.contains("refused calls"))
        .collect();
    // 100 rejections: logged at the 1st, 2nd, 4th, ..., 64th.
    assert_eq!(rejections.len(), 7, "{events:#?}");
    assert!(rejections[6].contains("rejected=64"));
    assert!(rejections.iter().all(|e| e.starts_with("DEBUG")));
    let rest: Vec<&String> = events
        .iter()
        .filter(|e| e.contains("state changed"))
        .collect();
    assert_eq!(rest.len(), 2, "{events:#?}");
    assert!(rest[0].contains("from=open") && rest[0].contains("reason=open_period_over"));
    assert!(rest[1].contains("from=half_open") && rest[1].contains("reason=probes_succeeded"));
    // A reset from closed changes no state: no transition event.
    assert_eq!(events.len(), 1 + 7 + 2, "{events:#?}");
}
