//! breaker-reqwest against real local servers (axum on loopback, the fault proxy of
//! test-support) through a real reqwest client: failing, slow, recovering and load-shedding
//! hosts, and reqwest-retry around the breaker.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::routing::get as route_get;
use breaker_core::{CircuitBreaker, ManualClock, RejectReason, State as BreakerState};
use breaker_reqwest::{BreakerMiddleware, RejectedRequest, rejection};
use breaker_test_support::FaultProxy;
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};
use tokio::net::TcpListener;

/// What the upstream answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Answer {
    Ok = 0,
    /// 503 with no hint.
    Unavailable = 1,
    /// 503 with `Retry-After: 120` (seconds).
    ShedFor120s = 2,
    /// 429 with `Retry-After` as an HTTP date 300 s ahead of the server's clock.
    TooManyUntilDate = 3,
    /// 404: the caller asked for something that does not exist.
    NotFound = 4,
    /// Answers after 30 s (longer than any test waits: the client's timeout ends it).
    Hangs = 5,
}

/// A host whose answers the test switches; counts the requests that reach it.
#[derive(Clone, Default)]
struct Upstream {
    answer: Arc<AtomicU8>,
    hits: Arc<AtomicU64>,
}

impl Upstream {
    async fn start() -> (Self, SocketAddr) {
        let upstream = Upstream::default();
        let app = Router::new()
            .route("/prices", route_get(Self::prices))
            .with_state(upstream.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (upstream, addr)
    }

    async fn prices(State(u): State<Upstream>) -> (StatusCode, HeaderMap, &'static str) {
        u.hits.fetch_add(1, Ordering::SeqCst);
        let mut headers = HeaderMap::new();
        match u.answer.load(Ordering::SeqCst) {
            0 => (StatusCode::OK, headers, "EUR/USD 1.08"),
            1 => (StatusCode::SERVICE_UNAVAILABLE, headers, "down"),
            2 => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("120"));
                (StatusCode::SERVICE_UNAVAILABLE, headers, "shedding load")
            }
            3 => {
                let until = std::time::SystemTime::now() + Duration::from_secs(300);
                let date = httpdate::fmt_http_date(until);
                headers.insert(header::RETRY_AFTER, HeaderValue::from_str(&date).unwrap());
                (StatusCode::TOO_MANY_REQUESTS, headers, "slow down")
            }
            4 => (StatusCode::NOT_FOUND, headers, "no such pair"),
            _ => {
                tokio::time::sleep(Duration::from_secs(30)).await;
                (StatusCode::OK, headers, "too late")
            }
        }
    }

    fn answer(&self, answer: Answer) {
        self.answer.store(answer as u8, Ordering::SeqCst);
    }

    fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }
}

/// Per-host breakers on `clock`: 3 consecutive failures trip, 10 s open, one probe closes.
fn breakers(clock: &ManualClock) -> BreakerMiddleware<ManualClock> {
    let clock = clock.clone();
    BreakerMiddleware::per_origin(100, move |_origin: &String| {
        CircuitBreaker::builder_with_clock(clock.clone())
            .consecutive_failures(3)
            .open_duration(Duration::from_secs(10))
            .build()
            .expect("valid settings")
    })
    .unwrap()
}

fn client(breakers: BreakerMiddleware<ManualClock>) -> ClientWithMiddleware {
    let reqwest = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    ClientBuilder::new(reqwest).with(breakers).build()
}

async fn get(
    client: &ClientWithMiddleware,
    addr: SocketAddr,
) -> reqwest_middleware::Result<reqwest::Response> {
    client
        .get(format!("http://{addr}/prices"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
}

fn origin(addr: SocketAddr) -> String {
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_trip_the_host_and_refused_requests_are_not_sent() {
    let (upstream, addr) = Upstream::start().await;
    let clock = ManualClock::new();
    let breakers = breakers(&clock);
    let client = client(breakers.clone());

    assert_eq!(get(&client, addr).await.unwrap().status(), 200);
    upstream.answer(Answer::Unavailable);
    for _ in 0..3 {
        // The caller still gets the host's answer, body and all.
        let answer = get(&client, addr).await.unwrap();
        assert_eq!(answer.status(), 503);
        assert_eq!(answer.text().await.unwrap(), "down");
    }
    let breaker = breakers.origins().peek(origin(addr).as_str()).unwrap();
    assert_eq!(breaker.state(), BreakerState::Open);

    let hits = upstream.hits();
    let refused = get(&client, addr).await.unwrap_err();
    assert_eq!(
        upstream.hits(),
        hits,
        "a refused request never reaches the host"
    );
    let rejected = rejection(&refused).expect("a refusal is recognisable");
    assert_eq!(rejected.reason(), RejectReason::Open);
    assert_eq!(rejected.retry_after(), Some(Duration::from_secs(10)));
    // The typed error carries the host; its Display names it, its source says when to retry.
    let reqwest_middleware::Error::Middleware(inner) = &refused else {
        panic!("a refusal is a middleware error: {refused:?}");
    };
    let typed = inner.downcast_ref::<RejectedRequest>().unwrap();
    assert_eq!(typed.origin, origin(addr));
    assert_eq!(
        refused.to_string(),
        format!("the circuit breaker for http://{addr} refused the request: it was not sent")
    );
    let source = std::error::Error::source(typed).unwrap().to_string();
    assert!(source.contains("retry in 10 s"), "{source}");
    let totals = breaker.snapshot().totals;
    assert_eq!(
        (totals.successes, totals.failures, totals.rejected),
        (1, 3, 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callers_mistake_is_not_the_hosts_failure() {
    let (upstream, addr) = Upstream::start().await;
    let clock = ManualClock::new();
    let breakers = breakers(&clock);
    let client = client(breakers.clone());

    upstream.answer(Answer::NotFound);
    for _ in 0..10 {
        assert_eq!(get(&client, addr).await.unwrap().status(), 404);
    }
    // A URL reqwest cannot send (no host) is not any host's failure either.
    let unsendable = client.get("http:///prices").send().await.unwrap_err();
    assert!(rejection(&unsendable).is_none());

    let breaker = breakers.origins().peek(origin(addr).as_str()).unwrap();
    assert_eq!(breaker.state(), BreakerState::Closed);
    let totals = breaker.snapshot().totals;
    assert_eq!((totals.successes, totals.failures), (10, 0));
    assert_eq!(upstream.hits(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_host_times_out_and_counts() {
    let (upstream, addr) = Upstream::start().await;
    let clock = ManualClock::new();
    let breakers = breakers(&clock);
    let client = client(breakers.clone());

    upstream.answer(Answer::Hangs);
    for _ in 0..3 {
        let e = client
            .get(format!("http://{addr}/prices"))
            .timeout(Duration::from_millis(100))
            .send()
            .await
            .unwrap_err();
        assert!(
            matches!(&e, reqwest_middleware::Error::Reqwest(r) if r.is_timeout()),
            "{e:?}"
        );
    }
    let breaker = breakers.origins().peek(origin(addr).as_str()).unwrap();
    assert_eq!(breaker.state(), BreakerState::Open);
    assert_eq!(breaker.snapshot().totals.failures, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_that_gives_up_before_the_deadline_is_not_a_failure() {
    let (upstream, addr) = Upstream::start().await;
    let clock = ManualClock::new();
    let breakers = breakers(&clock);
    let client = client(breakers.clone());

    upstream.answer(Answer::Hangs);
    // The caller drops the request (a select!, a timeout of its own) before the request's
    // own 5 s deadline: the host has not been shown to be slow.
    let gave_up = tokio::time::timeout(Duration::from_millis(50), get(&client, addr)).await;
    assert!(gave_up.is_err());
    let breaker = breakers.origins().peek(origin(addr).as_str()).unwrap();
    let totals = breaker.snapshot().totals;
    assert_eq!((totals.failures, totals.cancelled), (0, 1));

    // Dropped past it (the breaker's clock says 6 s went by), it timed out.
    let request = tokio::spawn({
        let client = client.clone();
        async move { get(&client, addr).await }
    });
    tokio::time::timeout(Duration::from_secs(10), async {
        while upstream.hits() < 2 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .expect("the request reaches the host");
    clock.advance(Duration::from_secs(6));
    request.abort();
    assert!(request.await.unwrap_err().is_cancelled());
    assert_eq!(breaker.snapshot().totals.failures, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_that_recovers_is_probed_and_closes() {
    let (upstream, addr) = Upstream::start().await;
    let clock = ManualClock::new();
    let breakers = breakers(&clock);
    let client = client(breakers.clone());

    upstream.answer(Answer::Unavailable);
    for _ in 0..3 {
        get(&client, addr).await.unwrap();
    }
    assert!(rejection(&get(&client, addr).await.unwrap_err()).is_some());

    // Open period over (it ends strictly after its 10 s), host still down: the probe fails,
    // open again.
    clock.advance(Duration::from_secs(10) + Duration::from_millis(1));
    assert_eq!(get(&client, addr).await.unwrap().status(), 503);
    assert!(rejection(&get(&client, addr).await.unwrap_err()).is_some());

    // It recovers: the next probe succeeds and the breaker closes.
    upstream.answer(Answer::Ok);
    clock.advance(Duration::from_secs(10) + Duration::from_millis(1));
    assert_eq!(get(&client, addr).await.unwrap().status(), 200);
    let breaker = breakers.origins().peek(origin(addr).as_str()).unwrap();
    assert_eq!(breaker.state(), BreakerState::Closed);
    for _ in 0..3 {
        assert_eq!(get(&client, addr).await.unwrap().status(), 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_keeps_the_breaker_open_that_long() {
    let (upstream, addr) = Upstream::start().await;
    let clock = ManualClock::new();
    let breakers = breakers(&clock);
    let client = client(breakers.clone());

    // Seconds: the 503 that trips says 120 s; the configured open period is 10 s.
    upstream.answer(Answer::ShedFor120s);
    for _ in 0..3 {
        assert_eq!(get(&client, addr).await.unwrap().status(), 503);
    }
    let refused = get(&client, addr).await.unwrap_err();
    assert_eq!(
        rejection(&refused).unwrap().retry_after(),
        Some(Duration::from_secs(120))
    );
    clock.advance(Duration::from_secs(60));
    let hits = upstream.hits();
    let refused = get(&client, addr).await.unwrap_err();
    assert_eq!(
        rejection(&refused).unwrap().retry_after(),
        Some(Duration::from_secs(60))
    );
    assert_eq!(upstream.hits(), hits, "still open 60 s in: not sent");
    clock.advance(Duration::from_secs(60) + Duration::from_millis(1));
    upstream.answer(Answer::Ok);
    assert_eq!(get(&client, addr).await.unwrap().status(), 200);

    // An HTTP date on a 429: about 300 s (the date has whole seconds, the server's clock
    // moved on a little), never more.
    upstream.answer(Answer::TooManyUntilDate);
    for _ in 0..3 {
        assert_eq!(get(&client, addr).await.unwrap().status(), 429);
    }
    let retry = rejection(&get(&client, addr).await.unwrap_err())
        .unwrap()
        .retry_after()
        .unwrap();
    assert!(
        (Duration::from_secs(295)..=Duration::from_secs(300)).contains(&retry),
        "{retry:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_have_breakers_of_their_own() {
    let (down, down_addr) = Upstream::start().await;
    let (up, up_addr) = Upstream::start().await;
    let proxy = FaultProxy::start(up_addr).await;
    let clock = ManualClock::new();
    let breakers = breakers(&clock);
    let client = client(breakers.clone());

    down.answer(Answer::Unavailable);
    for _ in 0..3 {
        get(&client, down_addr).await.unwrap();
    }
    assert!(rejection(&get(&client, down_addr).await.unwrap_err()).is_some());
    for _ in 0..5 {
        assert_eq!(get(&client, proxy.addr()).await.unwrap().status(), 200);
    }
    // The proxy refuses connections: no answer at all is a failure of that host.
    proxy.refuse(true);
    for _ in 0..3 {
        let e = get(&client, proxy.addr()).await.unwrap_err();
        assert!(rejection(&e).is_none(), "{e:?}");
    }
    assert!(rejection(&get(&client, proxy.addr()).await.unwrap_err()).is_some());
    assert_eq!(up.hits(), 5);
    assert_eq!(breakers.origins().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inside_reqwest_retry_every_attempt_counts_and_a_refusal_stops_the_retries() {
    use reqwest_retry::{RetryTransientMiddleware, policies::ExponentialBackoff};

    let (upstream, addr) = Upstream::start().await;
    let clock = ManualClock::new();
    let breakers = breakers(&clock);
    let retry = ExponentialBackoff::builder()
        .retry_bounds(Duration::from_millis(1), Duration::from_millis(2))
        .build_with_max_retries(10);
    let client = ClientBuilder::new(reqwest::Client::new())
        .with(RetryTransientMiddleware::new_with_policy(retry))
        .with(breakers.clone())
        .build();

    upstream.answer(Answer::Unavailable);
    let e = get(&client, addr).await.unwrap_err();
    // Three attempts reached the host and tripped its breaker; the fourth was refused, and
    // reqwest-retry treats a middleware's error as final: no more attempts.
    assert_eq!(upstream.hits(), 3);
    let rejected = rejection(&e).expect("found inside reqwest-retry's RetryError");
    assert_eq!(rejected.reason(), RejectReason::Open);

    // The next request is refused on its first attempt (wrapped another way by
    // reqwest-retry) and is found all the same.
    let e = get(&client, addr).await.unwrap_err();
    assert_eq!(upstream.hits(), 3);
    assert!(rejection(&e).is_some(), "{e:?}");
}

#[test]
fn breakers_are_named_by_origin_without_credentials() {
    let clock = ManualClock::new();
    let breakers = breakers(&clock);
    let client = client(breakers.clone());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // Nothing listens on port 9 (discard) of 127.0.0.1 here, nor on 80 and 443: the
    // requests fail at once.
    for url in [
        "http://user:secret@127.0.0.1:9/a",
        "http://127.0.0.1:9/b?q=1",
        "http://[::1]:9/c",
        "http://127.0.0.1/d",
        "http://127.0.0.1:80/e",
        "https://127.0.0.1/f",
        "HTTP://LOCALHOST:9/g",
    ] {
        let _ = runtime.block_on(client.get(url).send());
    }
    let mut names = Vec::new();
    for name in [
        "http://127.0.0.1:9",
        "http://[::1]:9",
        "http://127.0.0.1",
        "https://127.0.0.1",
        "http://localhost:9",
    ] {
        if let Some(breaker) = breakers.origins().peek(name) {
            names.push((name, breaker.snapshot().totals.requests()));
        }
    }
    // The same host over http and https, two breakers; a default port written or not, one;
    // a user name and password never in a name; host names lower-cased.
    assert_eq!(
        names,
        [
            ("http://127.0.0.1:9", 2),
            ("http://[::1]:9", 1),
            ("http://127.0.0.1", 2),
            ("https://127.0.0.1", 1),
            ("http://localhost:9", 1)
        ]
    );
    assert_eq!(breakers.origins().len(), 5);
}

/// Outside reqwest-retry (`.with(breakers).with(retry)`), the breaker sees one result per
/// request: the transport failure reqwest-retry gave up on, found inside its `RetryError`.
#[cfg(feature = "reqwest-retry")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_reqwest_retry_a_request_it_gave_up_on_is_a_failure() {
    use reqwest_retry::{RetryTransientMiddleware, policies::ExponentialBackoff};

    let (_upstream, addr) = Upstream::start().await;
    let proxy = FaultProxy::start(addr).await;
    proxy.refuse(true);
    let clock = ManualClock::new();
    let breakers = breakers(&clock);
    for retries in [0, 2] {
        let retry = ExponentialBackoff::builder()
            .retry_bounds(Duration::from_millis(1), Duration::from_millis(2))
            .build_with_max_retries(retries);
        let client = ClientBuilder::new(reqwest::Client::new())
            .with(breakers.clone())
            .with(RetryTransientMiddleware::new_with_policy(retry))
            .build();
        let e = get(&client, proxy.addr()).await.unwrap_err();
        assert!(rejection(&e).is_none(), "{e:?}");
    }
    let breaker = breakers
        .origins()
        .peek(origin(proxy.addr()).as_str())
        .unwrap();
    let totals = breaker.snapshot().totals;
    assert_eq!((totals.failures, totals.ignored), (2, 0), "{totals:?}");
}
