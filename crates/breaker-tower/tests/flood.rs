//! A key flood against a keyed registry: a crawler (or an attacker) sends requests for a
//! million unique hosts while one host is down. The down host's breaker must stay open, and
//! the registry's memory must stay within what its capacity allows, measured with a counting
//! global allocator (bytes requested, net of frees) all along the flood.

use std::future::{Future, Ready, ready};
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use breaker_core::{CircuitBreaker, ManualClock, NoopObserver, RejectReason, State};
use breaker_test_support::{CountingAllocator, heap_growth_on_this_thread};
use breaker_tower::{Error, KeyedBreakerLayer, KeyedRegistry, KeyedRegistryBuilder};
use tower::{Layer, Service, service_fn};

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

const CAPACITY: usize = 10_000;
const DOWN: &str = "payments.internal.example";

/// One request of the crawler: a host and a path.
struct Request {
    host: String,
    path: &'static str,
}

fn request(host: &str, path: &'static str) -> Request {
    Request {
        host: host.to_string(),
        path,
    }
}

/// Per-host breakers as a client would build them: a count window of 20, tripping at half
/// failures once 5 calls were seen, open for 30 s.
fn registry(clock: &ManualClock) -> Arc<KeyedRegistry<String, ManualClock>> {
    registry_with(clock, KeyedRegistry::builder(CAPACITY))
}

fn registry_with(
    clock: &ManualClock,
    builder: KeyedRegistryBuilder<String, ManualClock, NoopObserver>,
) -> Arc<KeyedRegistry<String, ManualClock>> {
    let clock = clock.clone();
    Arc::new(
        builder
            .build(move |_host: &String| {
                CircuitBreaker::builder_with_clock(clock.clone())
                    .count_window(20)
                    .minimum_calls(5)
                    .failure_rate(50.0)
                    .open_duration(Duration::from_secs(30))
                    .thread_counters(0)
                    .build()
                    .expect("valid settings")
            })
            .expect("valid capacity"),
    )
}

/// The upstream: the down host refuses every request (counted), every other host answers
/// unless `all_fail` (unreachable hosts, as a crawler of invented names finds them).
fn upstream(
    down_calls: Arc<AtomicU64>,
    all_fail: bool,
) -> impl Service<Request, Response = (), Error = String, Future = Ready<Result<(), String>>> + Clone
{
    service_fn(move |req: Request| {
        let _ = req.path;
        if req.host == DOWN {
            down_calls.fetch_add(1, Ordering::Relaxed);
            return ready(Err("connection refused".to_string()));
        }
        ready(if all_fail {
            Err("no such host".to_string())
        } else {
            Ok(())
        })
    })
}

/// Calls a ready service whose futures complete at once.
fn call<S: Service<Request>>(svc: &mut S, req: Request) -> Result<S::Response, S::Error> {
    let mut cx = Context::from_waker(Waker::noop());
    assert!(svc.poll_ready(&mut cx).is_ready());
    let mut fut = pin!(svc.call(req));
    match fut.as_mut().poll(&mut cx) {
        Poll::Ready(r) => r,
        Poll::Pending => panic!("a ready service"),
    }
}

fn is_open_rejection(result: Result<(), Error>) -> bool {
    matches!(result, Err(e) if e.rejected().map(|r| r.reason()) == Some(RejectReason::Open))
}

/// Heap bytes `CAPACITY` breakers take in the cache (a registry that keeps none aside, full
/// of healthy keys): what the capacity allows.
fn full_registry_bytes() -> i64 {
    let clock = ManualClock::new();
    let (registry, bytes) = heap_growth_on_this_thread(|| {
        let registry = registry_with(&clock, KeyedRegistry::builder(CAPACITY).pinned_share(0.0));
        for i in 0..CAPACITY * 2 {
            registry.get(format!("host-{i:07}.crawl.example").as_str());
        }
        registry
    });
    assert!(registry.len() <= CAPACITY, "{} held", registry.len());
    bytes
}

/// The flood: `hosts` unique hosts, each asked twice (`/robots.txt`, then `/`), so that they
/// are not all one-hit wonders an S3-FIFO cache throws out first. Every 100,000 hosts the
/// down host is asked again: it must be refused by its open breaker, without reaching the
/// upstream. Returns the largest heap growth seen (at every 10,000 hosts).
fn flood(
    registry: &Arc<KeyedRegistry<String, ManualClock>>,
    down_calls: &Arc<AtomicU64>,
    all_fail: bool,
    hosts: usize,
) -> i64 {
    let mut svc = KeyedBreakerLayer::new(|req: &Request| req.host.clone(), registry.clone())
        .layer(upstream(down_calls.clone(), all_fail));
    let (mut grown, mut peak) = (0i64, 0i64);
    for chunk in 0..hosts / 10_000 {
        let ((), bytes) = heap_growth_on_this_thread(|| {
            for i in chunk * 10_000..(chunk + 1) * 10_000 {
                let host = format!("host-{i:07}.crawl.example");
                let _ = call(&mut svc, request(&host, "/robots.txt"));
                let _ = call(&mut svc, request(&host, "/"));
            }
        });
        grown += bytes;
        peak = peak.max(grown);
        if (chunk + 1) % 10 == 0 {
            let before = down_calls.load(Ordering::Relaxed);
            assert!(
                is_open_rejection(call(&mut svc, request(DOWN, "/charge"))),
                "after {} flood hosts the down host's breaker is no longer open",
                (chunk + 1) * 10_000
            );
            assert_eq!(
                down_calls.load(Ordering::Relaxed),
                before,
                "refused, not called"
            );
        }
    }
    peak
}

/// Trips the down host's breaker through the layer: 5 refused connections.
fn trip_down_host(registry: &Arc<KeyedRegistry<String, ManualClock>>, down_calls: &Arc<AtomicU64>) {
    let mut svc = KeyedBreakerLayer::new(|req: &Request| req.host.clone(), registry.clone())
        .layer(upstream(down_calls.clone(), false));
    for _ in 0..5 {
        assert!(call(&mut svc, request(DOWN, "/charge")).is_err());
    }
    assert_eq!(registry.get(DOWN).state(), State::Open);
    assert_eq!(down_calls.load(Ordering::Relaxed), 5);
}

#[test]
fn a_million_unique_hosts_do_not_close_the_breaker_of_the_host_that_is_down() {
    let full = full_registry_bytes();
    let clock = ManualClock::new();
    let down_calls = Arc::new(AtomicU64::new(0));
    let (registry, built) = heap_growth_on_this_thread(|| registry(&clock));
    let ((), tripped) = heap_growth_on_this_thread(|| trip_down_host(&registry, &down_calls));
    let peak = built + tripped + flood(&registry, &down_calls, false, 1_000_000);
    println!(
        "1,000,000 hosts through a registry of {CAPACITY}: peak {:.2} MB, full registry {:.2} MB, \
         {:?}",
        peak as f64 / 1e6,
        full as f64 / 1e6,
        registry.stats()
    );
    assert!(registry.len() <= CAPACITY, "{} held", registry.len());
    assert!(
        peak <= full + full / 10,
        "the flood took the registry to {peak} bytes, a full registry takes {full}"
    );
    assert_eq!(registry.get(DOWN).state(), State::Open);
    assert_eq!(down_calls.load(Ordering::Relaxed), 5);
    assert_eq!(registry.stats().pins_lost, 0);
}

/// The crawler's hosts do not answer either: every one of its breakers holds failures (two,
/// short of the five calls that could trip it), so all of them compete for the pinned share
/// (1,000 breakers). The tripped breaker of the down host is never the one to give way.
#[test]
fn unique_failing_hosts_fill_the_pinned_share_but_never_displace_the_open_breaker() {
    let full = full_registry_bytes();
    let clock = ManualClock::new();
    let down_calls = Arc::new(AtomicU64::new(0));
    let (registry, built) = heap_growth_on_this_thread(|| registry(&clock));
    let ((), tripped) = heap_growth_on_this_thread(|| trip_down_host(&registry, &down_calls));
    let peak = built + tripped + flood(&registry, &down_calls, true, 200_000);
    let stats = registry.stats();
    println!(
        "200,000 failing hosts through a registry of {CAPACITY}: peak {:.2} MB, full registry \
         {:.2} MB, {stats:?}",
        peak as f64 / 1e6,
        full as f64 / 1e6,
    );
    assert!(registry.len() <= CAPACITY, "{} held", registry.len());
    assert!(
        peak <= full + full / 10,
        "the flood took the registry to {peak} bytes, a full registry takes {full}"
    );
    assert_eq!(
        stats.pinned, stats.max_pinned,
        "the share is full: {stats:?}"
    );
    assert!(
        stats.pins_lost >= 190_000,
        "the crawler's failing breakers gave way to each other, counted: {stats:?}"
    );
    assert_eq!(registry.get(DOWN).state(), State::Open);
    assert_eq!(down_calls.load(Ordering::Relaxed), 5);
}
