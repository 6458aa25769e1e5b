//! End to end: an axum "hello" server on loopback under a closed-loop load, without the
//! breaker middleware, with it (closed), and with the breaker open (every request rejected
//! with 503 by the middleware). `cargo xtask bench` runs this after the micro-benchmarks and
//! adds its table to docs/benchmarks.md; alone: `cargo bench -p breaker-benches --bench
//! axum_load [-- --quick]`.
//!
//! The server runs on a one-thread tokio runtime on its own OS thread, the load generator on
//! another: on a two-core machine each has a core. Each round measures every subject twice:
//! throughput with `CONNECTIONS` HTTP/1.1 keep-alive connections kept busy (each sends its
//! next request when the previous response has been read in full), and latency with one
//! such connection, where no request waits behind another, so p50 and p99 show what the
//! server spends on a request rather than queueing. Rounds alternate between the subjects so
//! that drift of the machine (frequency, neighbours) spreads over all of them; the report
//! gives the median round of each.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use breaker_axum::ServerBreakerLayer;
use breaker_core::CircuitBreaker;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

const CONNECTIONS: usize = 32;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Subject {
    Bare,
    Guarded,
    Open,
}

impl Subject {
    fn name(self) -> &'static str {
        match self {
            Subject::Bare => "without_breaker",
            Subject::Guarded => "with_breaker_closed",
            Subject::Open => "with_breaker_open",
        }
    }
}

struct Round {
    requests: u64,
    per_second: f64,
    p50_us: f64,
    p99_us: f64,
    status: u16,
}

fn app(subject: Subject) -> Router {
    let router = Router::new().route("/", get(|| async { "hello" }));
    match subject {
        Subject::Bare => router,
        Subject::Guarded | Subject::Open => {
            let breaker = Arc::new(
                CircuitBreaker::builder()
                    .count_window(100)
                    .minimum_calls(20)
                    .failure_rate(50.0)
                    .build()
                    .expect("valid settings"),
            );
            if subject == Subject::Open {
                breaker.trip();
            }
            router.layer(ServerBreakerLayer::new(breaker))
        }
    }
}

/// Starts the server on its own thread and one-thread runtime; returns its address and a
/// sender that stops it.
fn serve(
    subject: Subject,
) -> (
    SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    std::thread::JoinHandle<()>,
) {
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let handle = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("server runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            addr_tx
                .send(listener.local_addr().expect("address"))
                .expect("report address");
            axum::serve(listener, app(subject))
                .with_graceful_shutdown(async {
                    let _ = stop_rx.await;
                })
                .await
                .expect("serve");
        });
    });
    (addr_rx.recv().expect("server address"), stop_tx, handle)
}

/// One connection's closed loop until `end`; latencies in nanoseconds.
async fn connection(addr: SocketAddr, warm_up_end: Instant, end: Instant) -> (Vec<u32>, u16) {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let mut latencies = Vec::with_capacity(64 * 1024);
    let mut status = 0;
    loop {
        let started = Instant::now();
        if started >= end {
            break;
        }
        let request = http::Request::get("/")
            .header(http::header::HOST, "bench")
            .body(Empty::<Bytes>::new())
            .expect("request");
        let response = sender.send_request(request).await.expect("response");
        status = response.status().as_u16();
        response.into_body().collect().await.expect("body");
        if started >= warm_up_end {
            latencies.push(started.elapsed().as_nanos().min(u32::MAX.into()) as u32);
        }
    }
    (latencies, status)
}

fn round(subject: Subject, connections: usize, warm_up: Duration, measure: Duration) -> Round {
    let (addr, stop, server) = serve(subject);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    let (mut latencies, status) = rt.block_on(async move {
        let warm_up_end = Instant::now() + warm_up;
        let end = warm_up_end + measure;
        let tasks: Vec<_> = (0..connections)
            .map(|_| tokio::spawn(connection(addr, warm_up_end, end)))
            .collect();
        let mut all = Vec::new();
        let mut status = 0;
        for t in tasks {
            let (l, s) = t.await.expect("connection task");
            all.extend(l);
            status = s;
        }
        (all, status)
    });
    let _ = stop.send(());
    server.join().expect("server thread");
    latencies.sort_unstable();
    let pick = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(f64::NAN, |&ns| f64::from(ns) / 1_000.0)
    };
    Round {
        requests: latencies.len() as u64,
        per_second: latencies.len() as f64 / measure.as_secs_f64(),
        p50_us: pick(0.50),
        p99_us: pick(0.99),
        status,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let quick =
        std::env::args().any(|a| a == "--quick") || std::env::var_os("BENCH_QUICK").is_some();
    // `cargo bench` passes `--bench`; a filter that names none of ours skips this run.
    let filter = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .unwrap_or_default();
    if !filter.is_empty() && !"axum_load".contains(filter.as_str()) {
        return;
    }
    let (rounds, warm_up, measure) = if quick {
        (5, Duration::from_millis(200), Duration::from_millis(500))
    } else {
        (15, Duration::from_millis(300), Duration::from_secs(1))
    };
    let subjects = [Subject::Bare, Subject::Guarded, Subject::Open];
    // (subject, busy rounds, one-connection rounds)
    let mut results: Vec<(Subject, Vec<Round>, Vec<Round>)> = subjects
        .iter()
        .map(|&s| (s, Vec::new(), Vec::new()))
        .collect();
    for r in 0..rounds {
        // Rotate the order, so that no subject always runs first (or right after another).
        for k in 0..results.len() {
            let (subject, busy, single) = &mut results[(r + k) % subjects.len()];
            let expected = if *subject == Subject::Open { 503 } else { 200 };
            for (connections, into) in [(CONNECTIONS, &mut *busy), (1, &mut *single)] {
                let result = round(*subject, connections, warm_up, measure);
                assert_eq!(
                    result.status,
                    expected,
                    "{} answered {}",
                    subject.name(),
                    result.status
                );
                eprintln!(
                    "round {r} {:<22} {connections:>2} conn {:>9.0} req/s  p50 {:>7.1} us  p99 {:>7.1} us  ({} requests)",
                    subject.name(),
                    result.per_second,
                    result.p50_us,
                    result.p99_us,
                    result.requests
                );
                into.push(result);
            }
        }
    }
    let mut tsv = String::from(
        "subject\trequests_per_second\tp50_us_one_connection\tp99_us_one_connection\tp99_us_busy\tratio_to_without\n",
    );
    let bare: Vec<f64> = results[0].1.iter().map(|r| r.per_second).collect();
    for (subject, busy, single) in &results {
        // Each round's throughput over the bare server's in the same round.
        let ratio = median(
            busy.iter()
                .zip(&bare)
                .map(|(r, b)| r.per_second / b)
                .collect(),
        );
        let line = format!(
            "{}\t{:.0}\t{:.1}\t{:.1}\t{:.1}\t{ratio:.3}\n",
            subject.name(),
            median(busy.iter().map(|r| r.per_second).collect()),
            median(single.iter().map(|r| r.p50_us).collect()),
            median(single.iter().map(|r| r.p99_us).collect()),
            median(busy.iter().map(|r| r.p99_us).collect()),
        );
        print!("{line}");
        tsv.push_str(&line);
    }
    if let Some(path) = std::env::var_os("BENCH_AXUM_LOAD_OUT") {
        std::fs::write(&path, tsv).expect("write the load results");
    }
}
