//! Why a breaker stops a cascading failure, with numbers.
//!
//! Three real parts on loopback: an upstream **B** that turns slow and then fails on a
//! schedule, a service **A** that calls B for every request it serves, and a load generator
//! that sends A a steady 100 requests per second. The same scenario runs twice: A without a
//! breaker (every request waits for B, up to its 500 ms timeout), and A with a breaker in front
//! of B (it trips on slow and failed calls, answers at once from the last good response,
//! and probes B until it recovers). A side-by-side table closes the run.
//!
//! B's schedule: healthy 0-2 s, slow (1.5 s per call) 2-5 s, failing (500) 5-8 s, healthy
//! again 8-10 s.
//!
//! Run: `cargo run -p breaker-examples --bin cascade` (about 25 s, nothing to set up).
//! `-- --quick` plays the same story five times faster (every duration of the scenario
//! divided by 5; B's healthy latency stays 5 ms), in about 5 s: the test suite runs that.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::routing::get;
use breaker_async::{GuardExt, ResponseCache, Source, Timeout, TokioTimer};
use breaker_core::{CircuitBreaker, MonotonicClock};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;

const RATE_PER_SEC: u64 = 100;
const RUN: Duration = Duration::from_secs(10);
const CALL_TIMEOUT: Duration = Duration::from_millis(500);

/// How much faster the scenario plays (`--quick`: 5).
static SPEEDUP: std::sync::OnceLock<u32> = std::sync::OnceLock::new();

/// A duration of the scenario, at the chosen speed.
fn scaled(d: Duration) -> Duration {
    d / *SPEEDUP.get().unwrap_or(&1)
}

/// Seconds since B started, in the scenario's own time (unscaled).
fn scenario_secs(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * f64::from(*SPEEDUP.get().unwrap_or(&1))
}

type HttpClient = Client<HttpConnector, Empty<Bytes>>;

async fn serve(app: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let addr = listener.local_addr().expect("bound address");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    addr
}

// ----- B: the upstream --------------------------------------------------------------------

#[derive(Clone)]
struct B {
    start: Instant,
    hits: Arc<AtomicU64>,
    hits_while_down: Arc<AtomicU64>,
}

#[derive(PartialEq)]
enum Phase {
    Healthy,
    Slow,
    Failing,
}

impl B {
    fn phase(&self) -> Phase {
        match scenario_secs(self.start) {
            t if (2.0..5.0).contains(&t) => Phase::Slow,
            t if (5.0..8.0).contains(&t) => Phase::Failing,
            _ => Phase::Healthy,
        }
    }
}

async fn price(State(b): State<B>) -> (StatusCode, String) {
    b.hits.fetch_add(1, Ordering::Relaxed);
    let phase = b.phase();
    if phase != Phase::Healthy {
        b.hits_while_down.fetch_add(1, Ordering::Relaxed);
    }
    match phase {
        Phase::Healthy => {
            tokio::time::sleep(Duration::from_millis(5)).await;
            (StatusCode::OK, "101".into())
        }
        Phase::Slow => {
            tokio::time::sleep(scaled(Duration::from_millis(1500))).await;
            (StatusCode::OK, "101".into())
        }
        Phase::Failing => {
            tokio::time::sleep(Duration::from_millis(5)).await;
            (StatusCode::INTERNAL_SERVER_ERROR, "database down".into())
        }
    }
}

// ----- A: the service that calls B ----------------------------------------------------------

type Breaker = CircuitBreaker<MonotonicClock>;

#[derive(Clone)]
struct A {
    client: HttpClient,
    b: SocketAddr,
    breaker: Option<Arc<Breaker>>,
    cache: Arc<ResponseCache<&'static str, String>>,
    in_flight: Arc<AtomicU64>,
    peak_in_flight: Arc<AtomicU64>,
}

#[derive(Debug)]
enum CallError {
    Status(StatusCode),
    Transport,
    Timeout,
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Status(status) => write!(f, "B answered {status}"),
            CallError::Transport => f.write_str("B could not be reached"),
            CallError::Timeout => write!(f, "B did not answer within {:?}", scaled(CALL_TIMEOUT)),
        }
    }
}

async fn call_b(client: &HttpClient, b: SocketAddr) -> Result<String, CallError> {
    let uri = format!("http://{b}/price").parse().expect("valid uri");
    let response = match tokio::time::timeout(scaled(CALL_TIMEOUT), client.get(uri)).await {
        Err(_) => return Err(CallError::Timeout),
        Ok(Err(_)) => return Err(CallError::Transport),
        Ok(Ok(r)) => r,
    };
    if !response.status().is_success() {
        return Err(CallError::Status(response.status()));
    }
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|_| CallError::Transport)?;
    Ok(String::from_utf8_lossy(&body.to_bytes()).into_owned())
}

async fn quote(State(a): State<A>) -> (StatusCode, HeaderMap, String) {
    let now = a.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
    a.peak_in_flight.fetch_max(now, Ordering::Relaxed);
    let mut headers = HeaderMap::new();
    let answer = match &a.breaker {
        None => match call_b(&a.client, a.b).await {
            Ok(price) => (StatusCode::OK, price),
            Err(e) => (StatusCode::BAD_GATEWAY, format!("upstream error: {e}")),
        },
        Some(breaker) => {
            let timeout = Timeout::new(TokioTimer, scaled(CALL_TIMEOUT)).expect("non-zero timeout");
            let served = breaker
                .guard(call_b(&a.client, a.b))
                .timeout(timeout)
                .or_cached_else(&a.cache, "ACME", |_| "unavailable".to_string())
                .await;
            if let Source::Cache { .. } | Source::Fallback { .. } = served.source {
                headers.insert("x-fallback", HeaderValue::from_static("1"));
            }
            (StatusCode::OK, served.value)
        }
    };
    a.in_flight.fetch_sub(1, Ordering::Relaxed);
    (answer.0, headers, answer.1)
}

// ----- the load generator -----------------------------------------------------------------

#[derive(Default)]
struct Results {
    latencies: Vec<Duration>,
    errors: u64,
    fallbacks: u64,
    peak_in_flight: u64,
    mean_in_flight_during_outage: f64,
    b_hits: u64,
    b_hits_while_down: u64,
    trips: u64,
}

impl Results {
    fn mean(&self) -> Duration {
        let total: Duration = self.latencies.iter().sum();
        total / self.latencies.len().max(1) as u32
    }

    fn percentile(&self, p: f64) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
        sorted.get(i).copied().unwrap_or_default()
    }
}

fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

async fn run(with_breaker: bool) -> Results {
    let b = B {
        start: Instant::now(),
        hits: Arc::default(),
        hits_while_down: Arc::default(),
    };
    let b_addr = serve(
        Router::new()
            .route("/price", get(price))
            .with_state(b.clone()),
    )
    .await;

    let trips = Arc::new(AtomicU64::new(0));
    let breaker = with_breaker.then(|| {
        Arc::new(
            CircuitBreaker::builder()
                .count_window(20)
                .minimum_calls(10)
                .failure_rate(50.0)
                .slow_calls(scaled(Duration::from_millis(300)), 50.0)
                .open_duration(scaled(Duration::from_secs(1)))
                .half_open_probes(3)
                .build()
                .expect("valid breaker settings"),
        )
    });
    let a = A {
        client: client(),
        b: b_addr,
        breaker: breaker.clone(),
        cache: Arc::new(ResponseCache::new(100, Duration::from_secs(60)).expect("valid cache")),
        in_flight: Arc::default(),
        peak_in_flight: Arc::default(),
    };
    let a_addr = serve(
        Router::new()
            .route("/quote", get(quote))
            .with_state(a.clone()),
    )
    .await;

    let load = client();
    let mut tasks = Vec::new();
    let mut ticker = tokio::time::interval(Duration::from_micros(1_000_000 / RATE_PER_SEC));
    let started = Instant::now();
    let mut last_state = breaker_core::State::Closed;
    let (mut outage_samples, mut outage_in_flight) = (0u64, 0u64);
    while started.elapsed() < scaled(RUN) {
        ticker.tick().await;
        if b.phase() != Phase::Healthy {
            outage_samples += 1;
            outage_in_flight += a.in_flight.load(Ordering::Relaxed);
        }
        if let Some(b) = &breaker {
            let state = b.state();
            if state == breaker_core::State::Open && last_state != breaker_core::State::Open {
                trips.fetch_add(1, Ordering::Relaxed);
            }
            last_state = state;
        }
        let load = load.clone();
        tasks.push(tokio::spawn(async move {
            let sent = Instant::now();
            let uri = format!("http://{a_addr}/quote").parse().expect("valid uri");
            match load.get(uri).await {
                Ok(r) => {
                    let fallback = r.headers().contains_key("x-fallback");
                    let ok = r.status().is_success();
                    let _ = r.into_body().collect().await;
                    (sent.elapsed(), ok, fallback)
                }
                Err(_) => (sent.elapsed(), false, false),
            }
        }));
    }
    let mut results = Results::default();
    for t in tasks {
        let (latency, ok, fallback) = t.await.expect("load task");
        results.latencies.push(latency);
        results.errors += u64::from(!ok);
        results.fallbacks += u64::from(fallback);
    }
    results.peak_in_flight = a.peak_in_flight.load(Ordering::Relaxed);
    results.mean_in_flight_during_outage = outage_in_flight as f64 / outage_samples.max(1) as f64;
    results.b_hits = b.hits.load(Ordering::Relaxed);
    results.b_hits_while_down = b.hits_while_down.load(Ordering::Relaxed);
    results.trips = trips.load(Ordering::Relaxed);
    results
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    SPEEDUP.set(if quick { 5 } else { 1 }).expect("set once");
    println!(
        "cascade: B turns slow at 2 s, fails at 5 s, recovers at 8 s; A gets {RATE_PER_SEC} req/s for {RUN:?}{}",
        if quick {
            " (--quick: played 5x faster)"
        } else {
            ""
        }
    );
    println!("running A without a breaker...");
    let without = run(false).await;
    println!("running A with a breaker...");
    let with = run(true).await;

    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
    let rows = [
        (
            "requests to A",
            without.latencies.len().to_string(),
            with.latencies.len().to_string(),
        ),
        (
            "A latency p50",
            ms(without.percentile(0.50)),
            ms(with.percentile(0.50)),
        ),
        ("A latency mean", ms(without.mean()), ms(with.mean())),
        (
            "A latency p90",
            ms(without.percentile(0.90)),
            ms(with.percentile(0.90)),
        ),
        (
            "A latency p99",
            ms(without.percentile(0.99)),
            ms(with.percentile(0.99)),
        ),
        (
            "A requests in flight at peak",
            without.peak_in_flight.to_string(),
            with.peak_in_flight.to_string(),
        ),
        (
            "A requests in flight, mean during outage",
            format!("{:.1}", without.mean_in_flight_during_outage),
            format!("{:.1}", with.mean_in_flight_during_outage),
        ),
        (
            "errors returned by A",
            without.errors.to_string(),
            with.errors.to_string(),
        ),
        (
            "fallbacks served by A",
            without.fallbacks.to_string(),
            with.fallbacks.to_string(),
        ),
        (
            "calls that reached B",
            without.b_hits.to_string(),
            with.b_hits.to_string(),
        ),
        (
            "calls that reached B while it was down",
            without.b_hits_while_down.to_string(),
            with.b_hits_while_down.to_string(),
        ),
        (
            "times the breaker opened",
            "-".to_string(),
            with.trips.to_string(),
        ),
    ];
    println!();
    println!(
        "| {:<40} | {:>16} | {:>16} |",
        "", "without breaker", "with breaker"
    );
    println!("|{:-<42}|{:->18}|{:->18}|", "", "", "");
    for (name, a, b) in rows {
        println!("| {name:<40} | {a:>16} | {b:>16} |");
    }
}
