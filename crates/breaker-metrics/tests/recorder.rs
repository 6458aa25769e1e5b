//! A scripted life of a breaker, checked metric by metric with `metrics-util`'s debugging
//! recorder: exact values, exact labels.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use breaker_core::{CircuitBreaker, Event, ManualClock, Outcome, Registry, State};
use breaker_metrics::{BreakerMetrics, names};
use breaker_test_support::{CountingAllocator, allocations};
use metrics::{Key, KeyName, Metadata, SharedString, Unit};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use std::sync::atomic::{AtomicU64, Ordering};

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// Every series seen so far, `name{label=value,...}` -> value. The debugging recorder's
/// snapshots drain what they report (counters restart at zero, histogram samples go), so
/// this adds each snapshot to the previous ones: counters sum, histograms append, gauges
/// keep the latest value.
#[derive(Default)]
struct Seen(BTreeMap<String, DebugValue>);

impl Seen {
    fn take(&mut self, snapshotter: &Snapshotter) -> BTreeMap<String, String> {
        for (key, _, _, value) in snapshotter.snapshot().into_vec() {
            let key = key.key();
            let mut labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            labels.sort();
            let name = format!("{}{{{}}}", key.name(), labels.join(","));
            let merged = match (self.0.remove(&name), value) {
                (Some(DebugValue::Counter(a)), DebugValue::Counter(b)) => {
                    DebugValue::Counter(a + b)
                }
                (Some(DebugValue::Histogram(mut a)), DebugValue::Histogram(b)) => {
                    a.extend(b);
                    DebugValue::Histogram(a)
                }
                (_, value) => value,
            };
            self.0.insert(name, merged);
        }
        self.0
            .iter()
            .map(|(name, value)| {
                let value = match value {
                    DebugValue::Counter(n) => n.to_string(),
                    DebugValue::Gauge(g) => g.to_string(),
                    DebugValue::Histogram(samples) => format!(
                        "{:?}",
                        samples.iter().map(|s| s.into_inner()).collect::<Vec<_>>()
                    ),
                };
                (name.clone(), value)
            })
            .collect()
    }
}

#[test]
fn a_scripted_life_reports_exact_values() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let clock = ManualClock::new();
    let registry = Registry::new();
    let mut seen = Seen::default();
    metrics::with_local_recorder(&recorder, || {
        let breaker = Arc::new(
            CircuitBreaker::builder_with_clock(clock.clone())
                .name("payments")
                .count_window(10)
                .minimum_calls(4)
                .failure_rate(50.0)
                .slow_call_duration(Duration::from_millis(500))
                .open_duration(Duration::from_secs(10))
                .observer(BreakerMetrics::new())
                .build()
                .unwrap(),
        );
        registry.register("payments", breaker.clone()).unwrap();
        let call = |outcome, ms| {
            let permit = breaker.try_acquire().unwrap();
            breaker.clock().advance(Duration::from_millis(ms));
            permit.record(outcome)
        };
        call(Outcome::Success, 100);
        call(Outcome::Success, 700); // slow
        call(Outcome::Ignored, 0);
        call(Outcome::Failure, 200);
        breaker_metrics::record_rates(&registry); // 1 failure of 3 calls
        let rates = seen.take(&snapshotter);
        assert_eq!(
            rates["circuit_breaker_failure_rate_percent{breaker=payments}"],
            (100.0 / 3.0).to_string()
        );
        assert_eq!(
            rates["circuit_breaker_slow_call_rate_percent{breaker=payments}"],
            (100.0 / 3.0).to_string()
        );
        call(Outcome::Failure, 300); // 2 of 4: trips
        assert_eq!(breaker.state(), State::Open);
        for _ in 0..3 {
            assert!(breaker.try_acquire().is_err());
        }
        breaker.notify(&Event::FallbackUsed { kind: "cache" });
        clock.advance(Duration::from_secs(10) + Duration::from_nanos(1));
        call(Outcome::Success, 50); // the probe closes it
        breaker.force_open();
        assert!(breaker.try_acquire().is_err());
        breaker.reset();
    });

    let s = seen.take(&snapshotter);
    let expect = |key: &str, value: &str| {
        assert_eq!(
            s.get(key).map(String::as_str),
            Some(value),
            "{key} in:\n{s:#?}"
        );
    };
    expect(
        "circuit_breaker_calls_total{breaker=payments,outcome=success}",
        "3",
    );
    expect(
        "circuit_breaker_calls_total{breaker=payments,outcome=failure}",
        "2",
    );
    expect(
        "circuit_breaker_calls_total{breaker=payments,outcome=ignored}",
        "1",
    );
    expect(
        "circuit_breaker_calls_total{breaker=payments,outcome=slow}",
        "1",
    );
    expect(
        "circuit_breaker_rejections_total{breaker=payments,reason=open}",
        "3",
    );
    expect(
        "circuit_breaker_rejections_total{breaker=payments,reason=forced_open}",
        "1",
    );
    expect(
        "circuit_breaker_rejections_total{breaker=payments,reason=half_open_full}",
        "0",
    );
    for (from, to) in [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
        ("closed", "forced_open"),
        ("forced_open", "closed"),
    ] {
        expect(
            &format!("circuit_breaker_transitions_total{{breaker=payments,from={from},to={to}}}"),
            "1",
        );
    }
    // The transitions a breaker makes by itself are there from the start (at zero until
    // they happen: Prometheus' increase() sees the first one); operator ones once they happen.
    expect(
        "circuit_breaker_transitions_total{breaker=payments,from=half_open,to=open}",
        "0",
    );
    assert_eq!(
        s.keys()
            .filter(|k| k.starts_with(names::TRANSITIONS))
            .count(),
        6,
        "the four automatic transitions and the operator ones that happened"
    );
    expect("circuit_breaker_state{breaker=payments,state=closed}", "1");
    for state in [
        "open",
        "half_open",
        "forced_open",
        "disabled",
        "metrics_only",
    ] {
        expect(
            &format!("circuit_breaker_state{{breaker=payments,state={state}}}"),
            "0",
        );
    }
    expect(
        "circuit_breaker_call_duration_seconds{breaker=payments}",
        "[0.1, 0.7, 0.2, 0.3, 0.05]",
    );
    expect(
        "circuit_breaker_fallbacks_total{breaker=payments,kind=cache}",
        "1",
    );
    // Every series uses a documented name.
    for key in s.keys() {
        let name = key.split('{').next().unwrap();
        assert!(names::ALL.contains(&name), "undocumented metric {name}");
    }
}

#[test]
fn two_breakers_sharing_a_recorder_are_told_apart_by_name() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        for (name, failures) in [("search", 1), ("billing", 2)] {
            let b = CircuitBreaker::builder_with_clock(ManualClock::new())
                .name(name)
                .observer(BreakerMetrics::new())
                .build()
                .unwrap();
            for _ in 0..failures {
                b.try_acquire().unwrap().record(Outcome::Failure);
            }
        }
    });
    let s = Seen::default().take(&snapshotter);
    assert_eq!(
        s["circuit_breaker_calls_total{breaker=search,outcome=failure}"],
        "1"
    );
    assert_eq!(
        s["circuit_breaker_calls_total{breaker=billing,outcome=failure}"],
        "2"
    );
}

/// A recorder whose metrics are plain atomics: registering allocates, updating does not. (The
/// debugging recorder, like real exporters, grows histogram storage in blocks as samples
/// arrive; that is the exporter's memory, not the observer's.)
#[derive(Debug, Default)]
struct AtomicRecorder;

#[derive(Debug, Default)]
struct AtomicHistogram {
    count: AtomicU64,
    sum_bits: AtomicU64,
}

impl metrics::HistogramFn for AtomicHistogram {
    fn record(&self, value: f64) {
        self.count.fetch_add(1, Ordering::Relaxed);
        let _ = self
            .sum_bits
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + value).to_bits())
            });
    }
}

impl metrics::Recorder for AtomicRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, _: &Key, _: &Metadata<'_>) -> metrics::Counter {
        metrics::Counter::from_arc(Arc::new(AtomicU64::new(0)))
    }
    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::from_arc(Arc::new(AtomicU64::new(0)))
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> metrics::Histogram {
        metrics::Histogram::from_arc(Arc::new(AtomicHistogram::default()))
    }
}

#[test]
fn reporting_a_call_allocates_nothing_after_the_first_event() {
    metrics::with_local_recorder(&AtomicRecorder, || {
        let b = CircuitBreaker::builder_with_clock(ManualClock::new())
            .name("hot")
            .consecutive_failures(1_000_000)
            .slow_call_duration(Duration::from_millis(1))
            .observer(BreakerMetrics::new())
            .build()
            .unwrap();
        let call = |outcome| {
            let permit = b.try_acquire().unwrap();
            b.clock().advance(Duration::from_micros(1500));
            permit.record(outcome)
        };
        call(Outcome::Success); // registers the handles
        let n = allocations(|| {
            for i in 0..10_000 {
                call(if i % 10 == 0 {
                    Outcome::Failure
                } else {
                    Outcome::Success
                });
            }
        });
        assert_eq!(n, 0, "allocations on the call path");
    });
}

#[test]
fn the_counting_allocator_sees_allocations() {
    assert_eq!(allocations(|| drop(std::hint::black_box(vec![1u8]))), 1);
}
