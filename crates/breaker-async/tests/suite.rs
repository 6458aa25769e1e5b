//! One behavioural suite, run under each runtime: tokio (paused time), async-std and smol.
//! The breaker runs on the manual clock; timeouts use the runtime's own timer.

use std::cell::Cell;
use std::future::{Future, IntoFuture, poll_fn};
use std::pin::pin;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use breaker_async::{Cause, Error, GuardExt, ResponseCache, Source, Timeout, Timer};
use breaker_core::{
    CircuitBreaker, Classify, Event, ManualClock, Observer, Outcome, Pushback, RejectReason, State,
};

#[derive(Clone, Default)]
struct Events(Arc<Mutex<Vec<Event>>>);

impl Observer for Events {
    fn on_event(&self, event: &Event) {
        self.0.lock().unwrap().push(*event);
    }
}

impl Events {
    fn fallbacks(&self) -> Vec<&'static str> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e {
                Event::FallbackUsed { kind } => Some(*kind),
                _ => None,
            })
            .collect()
    }
}

type Breaker = CircuitBreaker<ManualClock, Events>;

fn breaker(threshold: u32) -> (Breaker, ManualClock, Events) {
    let clock = ManualClock::new();
    let events = Events::default();
    let b = CircuitBreaker::builder_with_clock(clock.clone())
        .consecutive_failures(threshold)
        .open_duration(Duration::from_secs(10))
        .slow_call_duration(Duration::from_secs(1))
        .observer(events.clone())
        .build()
        .unwrap();
    (b, clock, events)
}

/// Pending once, then ready: a call that is "in flight" across one poll.
async fn yield_once() {
    let mut yielded = false;
    poll_fn(|cx| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await
}

async fn records_outcomes_and_rejects_without_polling() {
    let (b, _clock, _events) = breaker(2);
    assert_eq!(b.guard(async { Ok::<_, &str>(1) }).await, Ok(1));
    for _ in 0..2 {
        let r = b.guard(async { Err::<u32, _>("refused") }).await;
        assert_eq!(r, Err(Error::Inner("refused")));
    }
    assert_eq!(b.state(), State::Open);
    let polled = Cell::new(false);
    let r = b
        .guard(async {
            polled.set(true);
            Ok::<u32, &str>(1)
        })
        .await;
    assert!(!polled.get(), "a rejected call is never polled");
    match r {
        Err(Error::Rejected(rejected)) => {
            assert_eq!(rejected.reason(), RejectReason::Open);
            assert_eq!(rejected.retry_after(), Some(Duration::from_secs(10)));
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    let s = b.snapshot();
    assert_eq!(
        (s.totals.successes, s.totals.failures, s.totals.rejected),
        (1, 2, 1)
    );
}

async fn classifier_decides_what_counts() {
    let (b, _clock, _events) = breaker(1);
    let classify = |r: &Result<(), u16>| match r {
        Err(status) if *status >= 500 => Outcome::Failure,
        Err(404) => Outcome::Ignored,
        _ => Outcome::Success,
    };
    let _ = b
        .guard(async { Err::<(), u16>(400) })
        .classify(classify)
        .await;
    let _ = b
        .guard(async { Err::<(), u16>(404) })
        .classify(classify)
        .await;
    assert_eq!(b.state(), State::Closed);
    let _ = b
        .guard(async { Err::<(), u16>(503) })
        .classify(classify)
        .await;
    assert_eq!(b.state(), State::Open);
    let s = b.snapshot();
    assert_eq!(
        (s.totals.successes, s.totals.ignored, s.totals.failures),
        (1, 1, 1)
    );
}

/// A classifier that reads the dependency's hint (a `Retry-After` in an error, say): the
/// failure that opens the breaker keeps it open that long, for a future and for a stream.
async fn a_classifiers_pushback_sets_the_open_period() {
    struct Hinted;
    impl Classify<(), u64> for Hinted {
        fn classify(&self, result: &Result<(), u64>) -> Outcome {
            if result.is_ok() {
                Outcome::Success
            } else {
                Outcome::Failure
            }
        }
        fn pushback(&self, result: &Result<(), u64>) -> Option<Pushback> {
            result
                .err()
                .map(|secs| Pushback::After(Duration::from_secs(secs)))
        }
    }
    let (b, clock, _events) = breaker(1);
    let _ = b
        .guard(async { Err::<(), u64>(120) })
        .classify(Hinted)
        .await;
    assert_eq!(b.retry_after(), Some(Duration::from_secs(120)));

    clock.advance(Duration::from_secs(121));
    struct Items(Vec<Result<(), u64>>);
    impl futures_core::Stream for Items {
        type Item = Result<(), u64>;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Self::Item>> {
            Poll::Ready((!self.0.is_empty()).then(|| self.0.remove(0)))
        }
    }
    let mut stream = pin!(b.guard_stream_with(Items(vec![Ok(()), Err(90)]), Hinted));
    while poll_fn(|cx| futures_core::Stream::poll_next(stream.as_mut(), cx))
        .await
        .is_some()
    {}
    assert_eq!(b.state(), State::Open);
    assert_eq!(b.retry_after(), Some(Duration::from_secs(90)));
}

async fn slow_calls_are_measured_on_the_breaker_clock() {
    let (b, clock, _events) = breaker(5);
    let r = b
        .guard(async {
            clock.advance(Duration::from_secs(2)); // the call takes 2 s of breaker time
            Ok::<_, ()>(())
        })
        .await;
    assert!(r.is_ok());
    assert_eq!(b.snapshot().totals.slow, 1);
}

async fn timeout_fails_the_call_and_says_after_how_long<T: Timer + Clone>(timer: T) {
    let (b, _clock, _events) = breaker(1);
    let timeout = Timeout::new(timer.clone(), Duration::from_millis(20)).unwrap();
    let r = b
        .guard(std::future::pending::<Result<(), &str>>())
        .timeout(timeout)
        .await;
    assert_eq!(
        r,
        Err(Error::Timeout {
            after: Duration::from_millis(20)
        })
    );
    assert!(r.unwrap_err().to_string().contains("timed out after 20ms"));
    assert_eq!(b.state(), State::Open, "a timeout is a failure");
    assert_eq!(b.snapshot().totals.failures, 1);

    // A call that finishes in time is not affected by its timeout.
    b.reset();
    let timeout = Timeout::new(timer, Duration::from_secs(60)).unwrap();
    let r = b
        .guard(async {
            yield_once().await;
            Ok::<_, &str>(7)
        })
        .timeout(timeout)
        .await;
    assert_eq!(r, Ok(7));
    assert_eq!(b.state(), State::Closed);
}

async fn dropping_mid_flight_frees_the_probe_and_records_nothing() {
    let (b, clock, _events) = breaker(1);
    let _ = b.guard(async { Err::<(), ()>(()) }).await;
    clock.advance(Duration::from_secs(10) + Duration::from_nanos(1));
    {
        let mut fut = pin!(
            b.guard(async {
                yield_once().await;
                Ok::<_, ()>(())
            })
            .into_future()
        );
        let mut cx = Context::from_waker(Waker::noop());
        assert!(fut.as_mut().poll(&mut cx).is_pending());
        assert_eq!(b.snapshot().half_open_admitted, 1, "the probe is in flight");
        assert!(b.try_acquire().is_err(), "its slot is taken");
    } // dropped here, mid-flight
    let s = b.snapshot();
    assert_eq!(
        (s.half_open_admitted, s.totals.cancelled, s.totals.successes),
        (0, 1, 0)
    );
    assert_eq!(b.guard(async { Ok::<_, ()>(1) }).await, Ok(1));
    assert_eq!(b.state(), State::Closed);
}

async fn fallbacks_answer_and_are_reported() {
    let (b, clock, events) = breaker(1);
    let cache = ResponseCache::with_clock(100, Duration::from_secs(60), clock.clone()).unwrap();

    let fresh = b
        .guard(async { Ok::<_, &str>(10) })
        .or_cached(&cache, "ACME")
        .await
        .unwrap();
    assert_eq!((fresh.value, fresh.source), (10, Source::Primary));
    clock.advance(Duration::from_secs(5));

    let cached = b
        .guard(async { Err::<u32, _>("down") })
        .or_cached(&cache, "ACME")
        .await
        .unwrap();
    assert_eq!(cached.value, 10);
    assert_eq!(
        cached.source,
        Source::Cache {
            age: Duration::from_secs(5),
            cause: Cause::Failed
        }
    );
    assert!(cached.is_fallback());

    // Open now: rejected calls fall back too.
    let miss = b
        .guard(async { Ok::<u32, &str>(1) })
        .or_cached(&cache, "OTHER")
        .await;
    assert!(
        matches!(miss, Err(Error::Rejected(_))),
        "nothing cached for that key"
    );
    let default = b
        .guard(async { Ok::<u32, &str>(1) })
        .or_cached_else(&cache, "OTHER", |_| 0)
        .await;
    assert_eq!(
        default.source,
        Source::Fallback {
            kind: "function",
            cause: Cause::Rejected
        }
    );
    let v = b.guard(async { Ok::<u32, &str>(1) }).or_value(3).await;
    assert_eq!(
        (v.value, v.source),
        (
            3,
            Source::Fallback {
                kind: "value",
                cause: Cause::Rejected
            }
        )
    );
    let f = b
        .guard(async { Ok::<u32, &str>(1) })
        .or_else(|e| if e.is_rejected() { 4 } else { 5 })
        .await;
    assert_eq!(f.value, 4);
    let alt = b
        .guard(async { Ok::<u32, &str>(1) })
        .or_else_async(|_| async { Ok::<_, &str>(6) }) // another replica
        .await
        .unwrap();
    assert_eq!(
        (alt.value, alt.source),
        (
            6,
            Source::Fallback {
                kind: "alternative",
                cause: Cause::Rejected
            }
        )
    );
    assert_eq!(
        events.fallbacks(),
        ["cache", "function", "value", "function", "alternative"]
    );

    clock.advance(Duration::from_secs(56)); // the cached response is now 61 s old
    assert_eq!(cache.get(&"ACME"), None, "older than its TTL");
}

async fn streams_are_one_call() {
    use futures_core::Stream;
    struct Items(Vec<Result<u32, &'static str>>);
    impl Stream for Items {
        type Item = Result<u32, &'static str>;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Self::Item>> {
            Poll::Ready(if self.0.is_empty() {
                None
            } else {
                Some(self.0.remove(0))
            })
        }
    }
    async fn collect<S: Stream + Unpin>(mut s: S) -> Vec<S::Item> {
        let mut out = Vec::new();
        while let Some(item) = poll_fn(|cx| std::pin::Pin::new(&mut s).poll_next(cx)).await {
            out.push(item);
        }
        out
    }
    let (b, _clock, _events) = breaker(2);
    let items = collect(Box::pin(b.guard_stream(Items(vec![Ok(1), Ok(2)])))).await;
    assert_eq!(items, [Ok(1), Ok(2)]);
    assert_eq!(
        b.snapshot().totals.successes,
        1,
        "the whole stream is one success"
    );
    let items = collect(Box::pin(b.guard_stream(Items(vec![
        Ok(1),
        Err("cut"),
        Ok(3),
        Err("x"),
    ]))))
    .await;
    assert_eq!(
        items,
        [
            Ok(1),
            Err(Error::Inner("cut")),
            Ok(3),
            Err(Error::Inner("x"))
        ]
    );
    assert_eq!(
        b.snapshot().totals.failures,
        1,
        "decided by the first failure, once"
    );
    let _ = collect(Box::pin(b.guard_stream(Items(vec![Err("again")])))).await;
    assert_eq!(b.state(), State::Open);
    let items = collect(Box::pin(b.guard_stream(Items(vec![Ok(1)])))).await;
    assert!(
        matches!(items.as_slice(), [Err(Error::Rejected(_))]),
        "{items:?}"
    );
    b.reset();
    let mut s = Box::pin(b.guard_stream(Items(vec![Ok(1), Ok(2)])));
    let first = poll_fn(|cx| s.as_mut().poll_next(cx)).await;
    assert_eq!(first, Some(Ok(1)));
    drop(s); // abandoned early: neutral
    let t = b.snapshot().totals;
    assert_eq!((t.cancelled, t.successes), (1, 1));
}

async fn not_send_futures_work() {
    let (b, _clock, _events) = breaker(1);
    let shared = Rc::new(Cell::new(0));
    let s = shared.clone();
    let r = b
        .guard(async move {
            yield_once().await;
            s.set(s.get() + 1);
            Ok::<_, ()>(s.get())
        })
        .await;
    assert_eq!(r, Ok(1));
    assert_eq!(shared.get(), 1);
}

macro_rules! suite {
    ($runtime:ident, $timer:expr, $block_on:expr) => {
        mod $runtime {
            fn run<F: std::future::Future>(f: F) -> F::Output {
                ($block_on)(f)
            }
            #[test]
            fn records_outcomes_and_rejects_without_polling() {
                run(super::records_outcomes_and_rejects_without_polling())
            }
            #[test]
            fn classifier_decides_what_counts() {
                run(super::classifier_decides_what_counts())
            }
            #[test]
            fn a_classifiers_pushback_sets_the_open_period() {
                run(super::a_classifiers_pushback_sets_the_open_period())
            }
            #[test]
            fn slow_calls_are_measured_on_the_breaker_clock() {
                run(super::slow_calls_are_measured_on_the_breaker_clock())
            }
            #[test]
            fn timeout_fails_the_call_and_says_after_how_long() {
                run(super::timeout_fails_the_call_and_says_after_how_long(
                    $timer,
                ))
            }
            #[test]
            fn dropping_mid_flight_frees_the_probe_and_records_nothing() {
                run(super::dropping_mid_flight_frees_the_probe_and_records_nothing())
            }
            #[test]
            fn fallbacks_answer_and_are_reported() {
                run(super::fallbacks_answer_and_are_reported())
            }
            #[test]
            fn streams_are_one_call() {
                run(super::streams_are_one_call())
            }
            #[test]
            fn not_send_futures_work() {
                run(super::not_send_futures_work())
            }
        }
    };
}

#[cfg(feature = "tokio")]
suite!(tokio_paused, breaker_async::TokioTimer, |f| {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
        .block_on(f)
});

#[cfg(feature = "async-std")]
suite!(
    async_std_runtime,
    breaker_async::AsyncStdTimer::default(),
    async_std::task::block_on
);

#[cfg(feature = "smol")]
suite!(
    smol_runtime,
    breaker_async::SmolTimer::default(),
    smol::block_on
);

/// A guarded future owning an `Arc` of the breaker is `Send + 'static`: it can be spawned.
#[cfg(feature = "tokio")]
#[test]
fn arc_guarded_futures_can_be_spawned() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let (b, _clock, _events) = breaker(3);
    let b = Arc::new(b);
    rt.block_on(async {
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let b = Arc::clone(&b);
                tokio::spawn(b.guard_owned(async move { Ok::<_, ()>(i) }).into_future())
            })
            .collect();
        for t in tasks {
            assert!(t.await.unwrap().is_ok());
        }
    });
    assert_eq!(b.snapshot().totals.successes, 8);
}

#[test]
fn invalid_timeouts_and_caches_are_refused_when_built() {
    let e = Timeout::new(breaker_async::NoTimer, Duration::ZERO).unwrap_err();
    assert_eq!(e.field(), "timeout");
    let e = ResponseCache::<u32, u32>::new(0, Duration::from_secs(1)).unwrap_err();
    assert_eq!(
        (e.field(), e.allowed()),
        ("cache.capacity", "at least 1 entry")
    );
    let e = ResponseCache::<u32, u32>::new(10, Duration::ZERO).unwrap_err();
    assert_eq!((e.field(), e.allowed()), ("cache.ttl", "a duration > 0"));
}

#[test]
fn the_cache_is_bounded() {
    let cache = ResponseCache::<u32, u32>::new(100, Duration::from_secs(60)).unwrap();
    for i in 0..10_000 {
        cache.insert(i, i);
    }
    assert!(cache.len() <= 100 + 100 / 10, "{} entries", cache.len());
}
