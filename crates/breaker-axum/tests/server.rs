//! The server middleware and the health routes, over real HTTP on loopback: service A calls
//! a real flaky upstream B; A's handlers are protected by a breaker on the manual clock.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use breaker_axum::{ServerBreakerLayer, health_routes};
use breaker_core::{CircuitBreaker, ManualClock, Registry};
use breaker_tower::KeyedRegistry;
use common::{HttpClient, Upstream, client, get as http_get, serve};
use http::StatusCode;
use http_body_util::BodyExt;

const OPEN: Duration = Duration::from_secs(30);

#[derive(Clone)]
struct A {
    client: HttpClient,
    upstream: SocketAddr,
}

/// How long A waits for B.
const A_TIMEOUT: Duration = Duration::from_millis(200);

/// A's handler: calls B, answers 500 when B fails and 504 when B is too slow.
async fn api(State(a): State<A>) -> (StatusCode, String) {
    let url = format!("http://{}/data", a.upstream);
    let call = tokio::time::timeout(A_TIMEOUT, a.client.get(url.parse().unwrap()));
    let Ok(answer) = call.await else {
        return (StatusCode::GATEWAY_TIMEOUT, "upstream too slow".into());
    };
    match answer {
        Ok(r) if r.status().is_success() => {
            let body = r.into_body().collect().await.unwrap().to_bytes();
            (StatusCode::OK, String::from_utf8_lossy(&body).into_owned())
        }
        Ok(r) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("upstream said {}", r.status()),
        ),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("upstream unreachable: {e}"),
        ),
    }
}

async fn start_with_registry() -> (
    Upstream,
    SocketAddr,
    ManualClock,
    Arc<CircuitBreaker<ManualClock>>,
    Arc<Registry>,
) {
    let (upstream, upstream_addr) = Upstream::start().await;
    let clock = ManualClock::new();
    let breaker = Arc::new(
        CircuitBreaker::builder_with_clock(clock.clone())
            .consecutive_failures(3)
            .open_duration(OPEN)
            .half_open_probes(1)
            .build()
            .unwrap(),
    );
    let registry = Arc::new(Registry::new());
    registry.register("upstream-b", breaker.clone()).unwrap();
    let app = Router::new()
        .route("/api", get(api))
        .with_state(A {
            client: client(),
            upstream: upstream_addr,
        })
        .merge(health_routes(registry.clone()))
        .layer(
            ServerBreakerLayer::new(breaker.clone())
                .state_header(http::HeaderName::from_static("x-circuit-breaker"))
                .exempt("/health")
                .exempt("/ready"),
        );
    (upstream, serve(app).await, clock, breaker, registry)
}

async fn start() -> (
    Upstream,
    SocketAddr,
    ManualClock,
    Arc<CircuitBreaker<ManualClock>>,
) {
    let (upstream, a, clock, breaker, _) = start_with_registry().await;
    (upstream, a, clock, breaker)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trips_sheds_load_with_503_probes_and_recovers() {
    let (upstream, a, clock, breaker) = start().await;
    let http = client();
    let api = || format!("http://{a}/api");

    let ok = http_get(&http, api()).await;
    assert_eq!(
        (ok.status, ok.body.as_str()),
        (StatusCode::OK, "fresh data")
    );
    assert_eq!(ok.header("x-circuit-breaker"), Some("closed"));

    upstream.fail(true);
    for _ in 0..3 {
        assert_eq!(
            http_get(&http, api()).await.status,
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
    assert_eq!(upstream.hits(), 4);

    // Open: fast 503s with Retry-After and a JSON body; B sees nothing.
    for _ in 0..5 {
        let shed = http_get(&http, api()).await;
        assert_eq!(shed.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(shed.header("retry-after"), Some("30"));
        assert_eq!(shed.header("x-circuit-breaker"), Some("open"));
        assert_eq!(shed.header("content-type"), Some("application/json"));
        let body = shed.json();
        assert_eq!(body["error"], "service_unavailable");
        assert_eq!(body["reason"], "circuit_open");
        assert_eq!(body["state"], "open");
        assert_eq!(body["retry_after_secs"], 30);
    }
    assert_eq!(upstream.hits(), 4, "no calls reach B while open");

    // Retry-After is whole seconds, rounded up.
    clock.advance(Duration::from_millis(10_500));
    let shed = http_get(&http, api()).await;
    assert_eq!(shed.header("retry-after"), Some("20"));

    // Still failing when the probe goes through: open again.
    clock.advance(Duration::from_millis(19_500) + Duration::from_nanos(1));
    assert_eq!(
        http_get(&http, api()).await.status,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(upstream.hits(), 5, "exactly one probe");
    assert_eq!(
        http_get(&http, api()).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );

    // B recovers: the next probe closes the breaker.
    upstream.fail(false);
    clock.advance(OPEN + Duration::from_nanos(1));
    let probe = http_get(&http, api()).await;
    assert_eq!(probe.status, StatusCode::OK);
    assert_eq!(probe.header("x-circuit-breaker"), Some("closed"));
    assert_eq!(breaker.snapshot().totals.rejected, 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_ready_report_each_state() {
    let (upstream, a, clock, breaker, registry) = start_with_registry().await;
    // A breaker this replica cannot serve without (critical), and per-host breakers of a
    // keyed registry (reported one line per host).
    let local = Arc::new(
        CircuitBreaker::builder_with_clock(clock.clone())
            .build()
            .unwrap(),
    );
    registry
        .register_critical("local-store", local.clone())
        .unwrap();
    let c = clock.clone();
    let hosts = Arc::new(
        KeyedRegistry::new(16, move |_: &String| {
            CircuitBreaker::builder_with_clock(c.clone())
                .build()
                .unwrap()
        })
        .unwrap(),
    );
    hosts.get(&"a.example".to_string());
    hosts.get(&"b.example".to_string()).force_open();
    registry.register_group("hosts", hosts.clone()).unwrap();

    let http = client();
    let health = || format!("http://{a}/health");
    let ready = || format!("http://{a}/ready");

    let h = http_get(&http, health()).await;
    assert_eq!(h.status, StatusCode::OK);
    assert_eq!(
        h.header("x-circuit-breaker"),
        None,
        "exempt paths are not guarded"
    );
    let body = h.json();
    let names: Vec<&str> = body["breakers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "hosts/a.example",
            "hosts/b.example",
            "local-store",
            "upstream-b"
        ]
    );
    assert_eq!(body["breakers"][1]["state"], "forced_open");
    assert_eq!(body["breakers"][3]["state"], "closed");
    assert_eq!(body["breakers"][2]["critical"], true);
    assert_eq!(http_get(&http, ready()).await.status, StatusCode::OK);

    // The shared upstream fails: its breaker opens, /health shows it, and the replica stays
    // ready (every replica sees the same outage; taking them all out would help no one).
    upstream.fail(true);
    for _ in 0..3 {
        http_get(&http, format!("http://{a}/api")).await;
    }
    let h = http_get(&http, health()).await.json();
    assert_eq!(h["status"], "degraded");
    assert_eq!(h["breakers"][3]["state"], "open");
    assert_eq!(h["breakers"][3]["retry_after_ms"], 30_000);
    assert_eq!(h["breakers"][3]["totals"]["failures"], 3);
    assert_eq!(
        http_get(&http, ready()).await.status,
        StatusCode::OK,
        "a shared dependency's breaker does not gate readiness"
    );

    // The critical breaker opens: not ready, and it is named.
    local.trip();
    let r = http_get(&http, ready()).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.json()["open"], serde_json::json!(["local-store"]));

    clock.advance(OPEN + Duration::from_nanos(1));
    let h = http_get(&http, health()).await.json();
    assert_eq!(h["breakers"][2]["state"], "half_open");
    assert_eq!(
        http_get(&http, ready()).await.status,
        StatusCode::OK,
        "half-open may take traffic"
    );

    local.force_open();
    assert_eq!(
        http_get(&http, ready()).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    local.reset();

    breaker.force_open();
    let shed = http_get(&http, format!("http://{a}/api")).await;
    assert_eq!(shed.json()["state"], "forced_open");
    assert_eq!(shed.json()["reason"], "isolated");
    assert_eq!(
        shed.header("retry-after"),
        None,
        "no retry time while forced open"
    );
    breaker.reset();
    upstream.fail(false);
    assert_eq!(http_get(&http, ready()).await.status, StatusCode::OK);

    // A critical breaker still being rolled out (enforcing none of its refusals) lets calls
    // through while open: it does not take the replica out of rotation. Forced open, it
    // does (an operator's isolation is always enforced).
    let shadow = Arc::new(
        CircuitBreaker::builder_with_clock(clock.clone())
            .enforcement(0.0)
            .build()
            .unwrap(),
    );
    registry
        .register_critical("shadow-store", shadow.clone())
        .unwrap();
    shadow.trip();
    assert_eq!(shadow.state(), breaker_core::State::Open);
    assert_eq!(
        http_get(&http, ready()).await.status,
        StatusCode::OK,
        "a breaker that refuses nothing does not gate readiness"
    );
    shadow.force_open();
    let r = http_get(&http, ready()).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.json()["open"], serde_json::json!(["shadow-store"]));
    assert_eq!(
        http_get(&http, format!("http://{a}/api")).await.status,
        StatusCode::OK
    );
}

/// Half-open with its probe in flight: a 503 that still tells the client when to retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_and_full_answers_with_a_retry_after() {
    let (_upstream, a, clock, breaker) = start().await;
    breaker.trip();
    clock.advance(OPEN + Duration::from_nanos(1));
    let probe = breaker.try_acquire().expect("the probe");
    assert!(probe.is_probe());
    let shed = http_get(&client(), format!("http://{a}/api")).await;
    assert_eq!(shed.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(shed.header("retry-after"), Some("1"));
    let body = shed.json();
    assert_eq!(body["reason"], "probing");
    assert_eq!(body["state"], "half_open");
    assert_eq!(body["retry_after_secs"], 1);
    drop(probe);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_rejection_response_and_4xx_are_not_failures() {
    let breaker = Arc::new(
        CircuitBreaker::builder_with_clock(ManualClock::new())
            .consecutive_failures(1)
            .build()
            .unwrap(),
    );
    let app = Router::new()
        .route(
            "/missing",
            get(|| async { (StatusCode::NOT_FOUND, "no such thing") }),
        )
        .route(
            "/broken",
            get(|| async { (StatusCode::BAD_GATEWAY, "nope") }),
        )
        .layer(ServerBreakerLayer::new(breaker.clone()).on_reject(|r| {
            use axum::response::IntoResponse;
            (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("try later ({})", r.state()),
            )
                .into_response()
        }));
    let a = serve(app).await;
    let http = client();
    for _ in 0..5 {
        assert_eq!(
            http_get(&http, format!("http://{a}/missing")).await.status,
            StatusCode::NOT_FOUND
        );
    }
    assert_eq!(
        breaker.state(),
        breaker_core::State::Closed,
        "404s are the caller's problem"
    );
    assert_eq!(
        http_get(&http, format!("http://{a}/broken")).await.status,
        StatusCode::BAD_GATEWAY
    );
    let shed = http_get(&http, format!("http://{a}/missing")).await;
    assert_eq!(
        (shed.status, shed.body.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "try later (open)")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_upstream_trips_the_breaker_through_timeouts() {
    let (upstream, a, clock, breaker) = start().await;
    let http = client();
    // B now takes far longer than A is willing to wait: each request times out (504, a
    // failure), whatever the machine's speed.
    upstream.delay(Duration::from_secs(30));
    for _ in 0..3 {
        assert_eq!(
            http_get(&http, format!("http://{a}/api")).await.status,
            StatusCode::GATEWAY_TIMEOUT
        );
    }
    assert_eq!(breaker.state(), breaker_core::State::Open);
    let shed = http_get(&http, format!("http://{a}/api")).await;
    assert_eq!(shed.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(upstream.hits(), 3);
    upstream.delay(Duration::ZERO);
    clock.advance(OPEN + Duration::from_nanos(1));
    assert_eq!(
        http_get(&http, format!("http://{a}/api")).await.status,
        StatusCode::OK
    );
    assert_eq!(breaker.state(), breaker_core::State::Closed);
}

/// A request dropped before its handler answered (the client went away, a server-side
/// timeout): neutral while young, a slow failure once it ran past the slow-call duration.
/// Driven by hand through the real axum router, on the manual clock.
#[test]
fn a_request_dropped_after_it_became_slow_counts_as_a_failure() {
    use std::future::Future;
    use std::task::{Context, Waker};
    use tower::Service;

    let clock = ManualClock::new();
    let breaker = Arc::new(
        CircuitBreaker::builder_with_clock(clock.clone())
            .consecutive_failures(1)
            .slow_call_duration(Duration::from_secs(2))
            .build()
            .unwrap(),
    );
    let mut app = Router::new()
        .route("/hang", get(std::future::pending::<&'static str>))
        .layer(ServerBreakerLayer::new(breaker.clone()));
    let mut cx = Context::from_waker(Waker::noop());
    let mut request = |advance: Duration| {
        let svc = ReadyNow::<http::Request<axum::body::Body>>::ready_mut_now(&mut app);
        let mut fut = Box::pin(
            svc.call(
                http::Request::get("/hang")
                    .body(axum::body::Body::empty())
                    .unwrap(),
            ),
        );
        assert!(fut.as_mut().poll(&mut cx).is_pending());
        clock.advance(advance);
    };
    request(Duration::from_secs(1)); // dropped young
    let s = breaker.snapshot();
    assert_eq!((s.totals.failures, s.totals.cancelled), (0, 1));
    assert_eq!(breaker.state(), breaker_core::State::Closed);
    request(Duration::from_secs(3)); // dropped after 3 s > 2 s
    let s = breaker.snapshot();
    assert_eq!((s.totals.failures, s.totals.slow), (1, 1));
    assert_eq!(breaker.state(), breaker_core::State::Open);
}

/// `ServiceExt::ready` for a service that is always ready, without a runtime.
trait ReadyNow<R>: tower::Service<R> {
    fn ready_mut_now(&mut self) -> &mut Self {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(self.poll_ready(&mut cx).is_ready());
        self
    }
}
impl<R, S: tower::Service<R>> ReadyNow<R> for S {}
