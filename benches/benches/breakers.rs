//! Our breaker side by side with the Rust circuit breakers people use today, on the same
//! scenarios, in one run. `cargo xtask bench [--quick]` runs this and writes
//! docs/benchmarks.md.
//!
//! Scenarios: (1) closed, every call succeeds, one thread; (2) the same with two threads on
//! one shared breaker (time per call per thread); (3) open, rejected calls; (4) closed with
//! 10 % failures that do not trip; (5) through a tower service around a ready inner service
//! (its response future moved once, and polled in place);
//! (6) picking a per-key breaker from a keyed registry (not in docs/benchmarks.md yet).
//! Every benchmark asserts the breaker's state before and after. Allocations per call are
//! counted for every subject and scenario and written to target/bench-allocations.tsv.

use std::future::{Ready, ready};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use breaker_benches::poll_once;
use breaker_core::{CircuitBreaker, Clock, CoarseClock, MonotonicClock, Observer, State};
use breaker_test_support::{CountingAllocator, allocations_all_threads as count_allocations};
use breaker_tower::{BreakerLayer, KeyedBreakerLayer, KeyedRegistry};
use criterion::{BenchmarkGroup, Criterion, measurement::WallTime};
use tower::{Layer, Service};

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

const LONG: Duration = Duration::from_secs(3600);

/// The guarded call: as cheap as possible, so that what is measured is the breaker.
#[inline]
fn work(i: u64) -> Result<u64, u64> {
    Ok(black_box(i))
}

/// 10 % failures.
#[inline]
fn flaky(i: u64) -> Result<u64, u64> {
    if i.is_multiple_of(10) {
        Err(i)
    } else {
        Ok(black_box(i))
    }
}

// ----- subjects ----------------------------------------------------------------------------

type Ours = CircuitBreaker<MonotonicClock>;

fn ours_consecutive() -> Ours {
    CircuitBreaker::builder()
        .consecutive_failures(5)
        .open_duration(LONG)
        .build()
        .unwrap()
}

fn ours_count_window() -> Ours {
    CircuitBreaker::builder()
        .count_window(100)
        .minimum_calls(10)
        .failure_rate(50.0)
        .open_duration(LONG)
        .build()
        .unwrap()
}

/// The time window on the default clock (`MonotonicClock`: the coarse reading picks the
/// bucket, since buckets of 1 s are far wider than its lag).
fn ours_time_window() -> Ours {
    CircuitBreaker::builder()
        .time_window(Duration::from_secs(10), 10)
        .minimum_calls(10)
        .failure_rate(50.0)
        .open_duration(LONG)
        .build()
        .unwrap()
}

/// The same on `CoarseClock` (one atomic load, refreshed by a background thread).
fn ours_time_window_coarse_clock() -> CircuitBreaker<CoarseClock> {
    CircuitBreaker::builder_with_clock(CoarseClock::new(Duration::from_millis(1)))
        .time_window(Duration::from_secs(10), 10)
        .minimum_calls(10)
        .failure_rate(50.0)
        .open_duration(LONG)
        .build()
        .unwrap()
}

fn recloser() -> recloser::Recloser {
    recloser::Recloser::custom()
        .error_rate(0.5)
        .closed_len(100)
        .open_wait(LONG)
        .build()
}

/// failsafe's default policy (success rate >= 0.8 over 30 s with at least 5 requests, or 5
/// consecutive failures) with its default thresholds, but a constant one-hour backoff
/// instead of the jittered 10 s..300 s one, so an open breaker stays open for the whole
/// measurement (the backoff plays no part in the closed state).
type FailsafeDefault = failsafe::StateMachine<
    failsafe::failure_policy::OrElse<
        failsafe::failure_policy::SuccessRateOverTimeWindow<failsafe::backoff::Constant>,
        failsafe::failure_policy::ConsecutiveFailures<failsafe::backoff::Constant>,
    >,
    (),
>;

fn failsafe_default() -> FailsafeDefault {
    use failsafe::failure_policy::{
        FailurePolicy, consecutive_failures, success_rate_over_time_window,
    };
    let backoff = failsafe::backoff::constant(LONG);
    let policy = success_rate_over_time_window(0.8, 5, Duration::from_secs(30), backoff.clone())
        .or_else(consecutive_failures(5, backoff));
    failsafe::Config::new().failure_policy(policy).build()
}

type FailsafeConsecutive = failsafe::StateMachine<
    failsafe::failure_policy::ConsecutiveFailures<failsafe::backoff::Constant>,
    (),
>;

fn failsafe_consecutive() -> FailsafeConsecutive {
    failsafe::Config::new()
        .failure_policy(failsafe::failure_policy::consecutive_failures(
            5,
            failsafe::backoff::constant(LONG),
        ))
        .build()
}

/// One way to make a guarded call, plus how to check the subject's state.
trait Subject: Sync {
    fn call(&self, i: u64, f: fn(u64) -> Result<u64, u64>) -> bool;
    fn is_open(&self) -> bool;
    fn trip(&self) {
        for i in 0..1_000_000 {
            if self.is_open() {
                return;
            }
            let _ = self.call(i, Err);
        }
        panic!("could not trip the subject");
    }
}

impl<C: Clock + Sync, O: Observer + Sync> Subject for CircuitBreaker<C, O> {
    #[inline]
    fn call(&self, i: u64, f: fn(u64) -> Result<u64, u64>) -> bool {
        CircuitBreaker::call(self, || f(i)).is_ok()
    }
    fn is_open(&self) -> bool {
        self.state() == State::Open
    }
}

impl Subject for recloser::Recloser {
    #[inline]
    fn call(&self, i: u64, f: fn(u64) -> Result<u64, u64>) -> bool {
        recloser::Recloser::call(self, || f(i)).is_ok()
    }
    fn is_open(&self) -> bool {
        matches!(
            recloser::Recloser::call(self, || Ok::<_, ()>(())),
            Err(recloser::Error::Rejected)
        )
    }
}

/// No breaker: the guarded function called directly through the same harness (the base
/// of the "overhead over direct_call" columns).
struct Direct;

impl Subject for Direct {
    #[inline]
    fn call(&self, i: u64, f: fn(u64) -> Result<u64, u64>) -> bool {
        f(i).is_ok()
    }
    fn is_open(&self) -> bool {
        false
    }
}

/// Our breaker used through the two-step protocol instead of the `call` helper.
struct TwoStep(Ours);

impl Subject for TwoStep {
    #[inline]
    fn call(&self, i: u64, f: fn(u64) -> Result<u64, u64>) -> bool {
        match self.0.try_acquire() {
            Ok(permit) => {
                let ok = f(i).is_ok();
                let outcome = if ok {
                    breaker_core::Outcome::Success
                } else {
                    breaker_core::Outcome::Failure
                };
                permit.record(outcome);
                ok
            }
            Err(_) => false,
        }
    }
    fn is_open(&self) -> bool {
        self.0.state() == State::Open
    }
}

struct AsyncRecloser(recloser::AsyncRecloser);

impl Subject for AsyncRecloser {
    #[inline]
    fn call(&self, i: u64, f: fn(u64) -> Result<u64, u64>) -> bool {
        poll_once(self.0.call(ready(f(i)))).is_ok()
    }
    fn is_open(&self) -> bool {
        matches!(
            poll_once(self.0.call(ready(Ok::<_, ()>(())))),
            Err(recloser::Error::Rejected)
        )
    }
}

impl<P> Subject for failsafe::StateMachine<P, ()>
where
    P: failsafe::failure_policy::FailurePolicy + Send,
{
    #[inline]
    fn call(&self, i: u64, f: fn(u64) -> Result<u64, u64>) -> bool {
        failsafe::CircuitBreaker::call(self, || f(i)).is_ok()
    }
    fn is_open(&self) -> bool {
        !self.is_call_permitted()
    }
}

/// A named way to make a fresh subject.
type MakeSubject = (&'static str, Box<dyn Fn() -> Box<dyn Subject>>);

fn subjects() -> Vec<MakeSubject> {
    vec![
        (
            "ours_consecutive",
            Box::new(|| Box::new(ours_consecutive())),
        ),
        (
            "ours_consecutive_permit",
            Box::new(|| Box::new(TwoStep(ours_consecutive()))),
        ),
        (
            "ours_count_window",
            Box::new(|| Box::new(ours_count_window())),
        ),
        (
            "ours_time_window",
            Box::new(|| Box::new(ours_time_window())),
        ),
        (
            "ours_time_window_coarse_clock",
            Box::new(|| Box::new(ours_time_window_coarse_clock())),
        ),
        ("recloser_sync", Box::new(|| Box::new(recloser()))),
        (
            "recloser_async",
            Box::new(|| Box::new(AsyncRecloser(recloser::AsyncRecloser::from(recloser())))),
        ),
        (
            "failsafe_default",
            Box::new(|| Box::new(failsafe_default())),
        ),
        (
            "failsafe_consecutive",
            Box::new(|| Box::new(failsafe_consecutive())),
        ),
    ]
}

// ----- scenarios ---------------------------------------------------------------------------

fn closed_one_thread(
    g: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    s: &dyn Subject,
    f: fn(u64) -> Result<u64, u64>,
) {
    assert!(!s.is_open());
    let mut i = 0u64;
    g.bench_function(name, |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            black_box(s.call(i, f))
        })
    });
    assert!(!s.is_open(), "{name} tripped");
}

/// Both threads call the same breaker; reports wall time per call per thread.
fn closed_two_threads(g: &mut BenchmarkGroup<'_, WallTime>, name: &str, s: &dyn Subject) {
    assert!(!s.is_open());
    g.bench_function(name, |b| {
        b.iter_custom(|iters| two_threads(iters, |i| black_box(s.call(i, work))))
    });
    assert!(!s.is_open(), "{name} tripped");
}

fn two_threads(iters: u64, f: impl Fn(u64) -> bool + Sync) -> Duration {
    let barrier = Barrier::new(2);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..2)
            .map(|t| {
                let (barrier, f) = (&barrier, &f);
                scope.spawn(move || {
                    barrier.wait();
                    let start = Instant::now();
                    for i in 0..iters {
                        f(i * 2 + t);
                    }
                    start.elapsed()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .max()
            .unwrap()
    })
}

fn open_rejected(g: &mut BenchmarkGroup<'_, WallTime>, name: &str, s: &dyn Subject) {
    s.trip();
    let mut i = 0u64;
    g.bench_function(name, |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            black_box(s.call(i, work))
        })
    });
    assert!(s.is_open(), "{name} left the open state");
}

// ----- tower -------------------------------------------------------------------------------

type Inner = tower::util::ServiceFn<fn(u64) -> Ready<Result<u64, Failed>>>;

/// The tower services' error: a unit struct, so boxing it (tower's `BoxError`) allocates
/// nothing and the numbers show only what the layers do.
#[derive(Debug)]
struct Failed;

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("failed")
    }
}

impl std::error::Error for Failed {}

fn inner() -> Inner {
    tower::service_fn(
        (|i| ready(work(i).map_err(|_| Failed))) as fn(u64) -> Ready<Result<u64, Failed>>,
    )
}

#[inline]
fn through<S: Service<u64>>(svc: &mut S, i: u64) -> bool {
    let _ = poll_once(std::future::poll_fn(|cx| svc.poll_ready(cx)));
    poll_once(svc.call(i)).is_ok()
}

/// [`through`], polling the response future where `call` returned it, as an executor polls
/// a task in place. `through` moves the future into `poll_once` first: a copy of it made
/// right after `call` wrote it, which costs a future that stays in memory (one whose drop
/// releases an `Arc`) a store-forwarding stall that a future kept in registers does not pay.
/// The two show the layer's own cost and that of one such move.
#[inline]
fn through_in_place<S: Service<u64>>(svc: &mut S, i: u64) -> bool {
    let _ = poll_once(std::future::poll_fn(|cx| svc.poll_ready(cx)));
    // Not `poll_once(pin!(..))`: through that generic call the future's address escapes and
    // the `&'static` layer's future leaves registers (measured ~5 ns a call slower).
    let future = std::pin::pin!(svc.call(i));
    match future.poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(result) => result.is_ok(),
        Poll::Pending => panic!("the benchmarked future was expected to complete at once"),
    }
}

fn tower_subjects() -> (
    Inner,
    impl Service<u64, Error = breaker_tower::Error>,
    Arc<Ours>,
    impl Service<u64>,
    tower_resilience_circuitbreaker::CircuitBreaker<
        Inner,
        tower_resilience_circuitbreaker::DefaultClassifier,
    >,
) {
    let ours = Arc::new(ours_consecutive());
    let layered = BreakerLayer::new(Arc::clone(&ours)).layer(inner());
    let static_breaker: &'static Ours = ours_consecutive().leak();
    let layered_static = BreakerLayer::new(static_breaker).layer(inner());
    let theirs = tower_resilience_circuitbreaker::CircuitBreakerLayer::builder()
        .failure_rate_threshold(0.5)
        .sliding_window_size(100)
        .wait_duration_in_open(LONG)
        .build()
        .unwrap()
        .layer_fn(inner());
    (inner(), layered, ours, layered_static, theirs)
}

fn tower_group(c: &mut Criterion) {
    let mut g = c.benchmark_group("tower");
    let (mut bare, mut ours, handle, mut ours_static, mut theirs) = tower_subjects();
    let mut i = 0u64;
    g.bench_function("bare_service", |b| {
        b.iter(|| {
            i += 1;
            black_box(through(&mut bare, i))
        })
    });
    assert_eq!(handle.state(), State::Closed);
    g.bench_function("ours_layer", |b| {
        b.iter(|| {
            i += 1;
            black_box(through(&mut ours, i))
        })
    });
    g.bench_function("ours_layer_static", |b| {
        b.iter(|| {
            i += 1;
            black_box(through(&mut ours_static, i))
        })
    });
    assert_eq!(handle.state(), State::Closed);
    g.bench_function("bare_service_in_place", |b| {
        b.iter(|| {
            i += 1;
            black_box(through_in_place(&mut bare, i))
        })
    });
    g.bench_function("ours_layer_in_place", |b| {
        b.iter(|| {
            i += 1;
            black_box(through_in_place(&mut ours, i))
        })
    });
    g.bench_function("ours_layer_static_in_place", |b| {
        b.iter(|| {
            i += 1;
            black_box(through_in_place(&mut ours_static, i))
        })
    });
    assert!(!theirs.is_open());
    g.bench_function("tower_resilience", |b| {
        b.iter(|| {
            i += 1;
            black_box(through(&mut theirs, i))
        })
    });
    assert!(!theirs.is_open());
    g.finish();
}

// ----- keyed -------------------------------------------------------------------------------

/// Per-key breakers for the keyed group: 1,000 of them in a registry of 10,000.
fn keyed_breaker<K>(_: &K) -> Ours {
    CircuitBreaker::builder()
        .consecutive_failures(5)
        .open_duration(LONG)
        .thread_counters(0)
        .build()
        .unwrap()
}

/// What picking a per-key breaker costs: a `KeyedRegistry` lookup of an existing host (a
/// `&str` for `String` keys), and a call through `KeyedBreakerLayer` keyed by a number (no
/// key to allocate), around the same bare service as the tower group.
fn keyed_group(c: &mut Criterion) {
    let mut g = c.benchmark_group("keyed");
    let hosts = KeyedRegistry::new(10_000, keyed_breaker::<String>).unwrap();
    let names: Vec<String> = (0..1_000).map(|i| format!("host-{i:04}.example")).collect();
    for name in &names {
        hosts.get(name.as_str());
    }
    let mut i = 0usize;
    g.bench_function("registry_get", |b| {
        b.iter(|| {
            i = (i + 1) % names.len();
            black_box(hosts.get(names[i].as_str()))
        })
    });
    let by_number = Arc::new(KeyedRegistry::new(10_000, keyed_breaker::<u64>).unwrap());
    let mut layered =
        KeyedBreakerLayer::new(|n: &u64| n % 1_000, Arc::clone(&by_number)).layer(inner());
    let mut n = 0u64;
    g.bench_function("keyed_layer", |b| {
        b.iter(|| {
            n += 1;
            black_box(through(&mut layered, n))
        })
    });
    assert_eq!((hosts.len(), by_number.len()), (1_000, 1_000));
    g.finish();
}

// ----- allocations -------------------------------------------------------------------------

const ALLOC_CALLS: u64 = 10_000;

fn allocations_report() -> String {
    let mut out = String::from("scenario\tsubject\tallocations_per_call\n");
    let mut row = |scenario: &str, subject: &str, n: u64| {
        out.push_str(&format!(
            "{scenario}\t{subject}\t{:.3}\n",
            n as f64 / ALLOC_CALLS as f64
        ));
    };
    /// Allocations per `ALLOC_CALLS` calls of `call(i)`.
    fn per_calls(mut call: impl FnMut(u64) -> bool) -> u64 {
        count_allocations(|| {
            for i in 0..ALLOC_CALLS {
                black_box(call(i));
            }
        })
    }
    for (name, make) in subjects() {
        let s = make();
        let _ = s.call(0, work); // warm-up (thread-local state)
        row("closed_1t", name, per_calls(|i| s.call(i, work)));
        row(
            "closed_10pct_failures",
            name,
            per_calls(|i| s.call(i, flaky)),
        );
        let s2 = make();
        two_threads(1, |i| s2.call(i, work));
        let two = count_allocations(|| {
            two_threads(ALLOC_CALLS / 2, |i| s2.call(i, work));
        });
        row(
            "closed_2t",
            name,
            two.saturating_sub(thread_spawn_allocations()),
        );
        s.trip();
        row("open_rejected", name, per_calls(|i| s.call(i, work)));
    }
    let (mut bare, mut ours, _handle, mut ours_static, mut theirs) = tower_subjects();
    through(&mut ours, 0);
    through(&mut theirs, 0);
    row(
        "tower",
        "bare_service",
        per_calls(|i| through(&mut bare, i)),
    );
    row("tower", "ours_layer", per_calls(|i| through(&mut ours, i)));
    row(
        "tower",
        "ours_layer_static",
        per_calls(|i| through(&mut ours_static, i)),
    );
    row(
        "tower",
        "bare_service_in_place",
        per_calls(|i| through_in_place(&mut bare, i)),
    );
    row(
        "tower",
        "ours_layer_in_place",
        per_calls(|i| through_in_place(&mut ours, i)),
    );
    row(
        "tower",
        "ours_layer_static_in_place",
        per_calls(|i| through_in_place(&mut ours_static, i)),
    );
    row(
        "tower",
        "tower_resilience",
        per_calls(|i| through(&mut theirs, i)),
    );
    out
}

/// What spawning the two scoped threads itself allocates, to subtract from the two-thread
/// count.
fn thread_spawn_allocations() -> u64 {
    count_allocations(|| {
        two_threads(0, |_| true);
    })
}

// ----- main --------------------------------------------------------------------------------

// ----- memory ------------------------------------------------------------------------------

/// Bytes per breaker (inline and heap) for each policy, with the default number of
/// per-thread counters and with none, and what a keyed registry of 100,000 per-host breakers
/// takes (heap bytes requested, net of frees, from the counting allocator).
fn memory_report() -> String {
    let mut out = String::from("subject\tthread_counters\tinline_bytes\theap_bytes\n");
    type MakeWithCounters = fn(u32) -> Ours;
    let policies: [(&str, MakeWithCounters); 3] = [
        ("consecutive", |n| {
            CircuitBreaker::builder()
                .consecutive_failures(5)
                .thread_counters(n)
                .build()
                .unwrap()
        }),
        ("count_window_100", |n| {
            CircuitBreaker::builder()
                .count_window(100)
                .thread_counters(n)
                .build()
                .unwrap()
        }),
        ("time_window_10x1s", |n| {
            CircuitBreaker::builder()
                .time_window(Duration::from_secs(10), 10)
                .thread_counters(n)
                .build()
                .unwrap()
        }),
    ];
    let default_counters = ours_consecutive().memory().thread_counters as u32;
    for (name, make) in policies {
        for n in [default_counters, 0] {
            let m = make(n).memory();
            out.push_str(&format!(
                "{name}\t{}\t{}\t{}\n",
                m.thread_counters, m.inline_bytes, m.heap_bytes
            ));
        }
    }
    const HOSTS: usize = 100_000;
    let (registry, bytes) = breaker_test_support::heap_growth(|| {
        let registry = breaker_tower::KeyedRegistry::new(HOSTS * 5 / 4, |_: &String| {
            CircuitBreaker::builder()
                .count_window(20)
                .minimum_calls(10)
                .failure_rate(50.0)
                .thread_counters(0)
                .build()
                .unwrap()
        })
        .unwrap();
        for i in 0..HOSTS {
            registry.get(format!("host-{i:06}.internal.example.com").as_str());
        }
        registry
    });
    assert_eq!(registry.len(), HOSTS);
    out.push_str(&format!(
        "keyed_registry_100k_count_window_20\t0\t\t{bytes}\n"
    ));
    out
}

fn main() {
    let memory = memory_report();
    let path =
        std::env::var("BENCH_MEMORY_OUT").unwrap_or_else(|_| "target/bench-memory.tsv".into());
    std::fs::write(&path, &memory).unwrap_or_else(|e| eprintln!("could not write {path}: {e}"));
    eprint!("{memory}");

    let report = allocations_report();
    let path = std::env::var("BENCH_ALLOCATIONS_OUT")
        .unwrap_or_else(|_| "target/bench-allocations.tsv".into());
    std::fs::write(&path, &report).unwrap_or_else(|e| eprintln!("could not write {path}: {e}"));
    eprint!("{report}");

    let mut c = Criterion::default().configure_from_args();

    let mut g = c.benchmark_group("baseline");
    let mut i = 0u64;
    let counter = AtomicU64::new(0);
    g.bench_function("loop_only", |b| {
        b.iter(|| {
            i += 1;
            black_box(work(i))
        })
    });
    g.bench_function("atomic_load", |b| {
        b.iter(|| black_box(counter.load(Ordering::Acquire)))
    });
    g.bench_function("atomic_fetch_add", |b| {
        b.iter(|| black_box(counter.fetch_add(1, Ordering::AcqRel)))
    });
    g.bench_function("instant_now", |b| b.iter(|| black_box(Instant::now())));
    let clock = MonotonicClock::new();
    g.bench_function("coarse_clock_now", |b| {
        b.iter(|| black_box(clock.coarse_now_nanos()))
    });
    g.finish();

    let mut g = c.benchmark_group("closed_1t");
    closed_one_thread(&mut g, "direct_call", &Direct, work);
    for (name, make) in subjects() {
        closed_one_thread(&mut g, name, make().as_ref(), work);
    }
    g.finish();

    let mut g = c.benchmark_group("closed_10pct_failures");
    closed_one_thread(&mut g, "direct_call", &Direct, flaky);
    for (name, make) in subjects() {
        closed_one_thread(&mut g, name, make().as_ref(), flaky);
    }
    g.finish();

    let mut g = c.benchmark_group("closed_2t");
    closed_two_threads(&mut g, "direct_call", &Direct);
    for (name, make) in subjects() {
        closed_two_threads(&mut g, name, make().as_ref());
    }
    g.finish();

    let mut g = c.benchmark_group("open_rejected");
    for (name, make) in subjects() {
        open_rejected(&mut g, name, make().as_ref());
    }
    g.finish();

    tower_group(&mut c);
    keyed_group(&mut c);
    c.final_summary();
}
