//! What `breaker-admin` costs:
//!
//! - criterion group `admin`: a breaker's call path (closed: acquire and record a success;
//!   open: a rejection) without any admin, with the admin mounted and served (its observer
//!   on the breaker, its hub sampling the registry every second), and with ten dashboards
//!   connected to its event stream and reading;
//! - the event stream's cost with 100 breakers that each change state every second (100
//!   transitions per second), with no dashboard and with ten: CPU time of the thread that
//!   runs the admin (its hub and its HTTP connections), events and bytes each dashboard
//!   receives per second, and how long a transition takes to reach a dashboard.
//!
//! The admin's server runs on a one-thread tokio runtime on its own OS thread, the
//! dashboards on another. The stream measurements are written as tab-separated rows to
//! `BENCH_ADMIN_OUT` (default `target/bench-admin.tsv`) for `cargo xtask bench`
//! (`BENCH_QUICK=1`: shorter runs). Alone: `cargo bench -p breaker-benches --bench admin`.

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use breaker_admin::{Admin, AdminObserver};
use breaker_core::{CircuitBreaker, MonotonicClock, Outcome, Registry};
use criterion::Criterion;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

type Observed = CircuitBreaker<MonotonicClock, AdminObserver>;

fn settings() -> breaker_core::Builder<MonotonicClock, breaker_core::NoopObserver> {
    CircuitBreaker::builder()
        .count_window(100)
        .minimum_calls(20)
        .failure_rate(50.0)
        .open_duration(Duration::from_secs(3600))
}

/// One call: acquire, record a success (or be rejected).
#[inline]
fn call<C: breaker_core::Clock, O: breaker_core::Observer>(b: &CircuitBreaker<C, O>) -> bool {
    match b.try_acquire() {
        Ok(permit) => {
            permit.record(Outcome::Success);
            true
        }
        Err(_) => false,
    }
}

/// CPU time this thread has used, in nanoseconds (Linux: `/proc/thread-self/schedstat`).
fn thread_cpu_nanos() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The admin's server: an admin over `registry` served on loopback by a one-thread runtime
/// on its own OS thread. `cpu` asks that thread for its CPU time.
struct Server {
    addr: SocketAddr,
    admin: Admin,
    cpu: tokio::sync::mpsc::Sender<std::sync::mpsc::Sender<u64>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    fn start(registry: Arc<Registry>, observer: AdminObserver) -> Server {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (cpu_tx, mut cpu_rx) = tokio::sync::mpsc::channel::<std::sync::mpsc::Sender<u64>>(4);
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("server runtime");
            rt.block_on(async move {
                let admin = Admin::builder(registry)
                    .observer(observer)
                    .build()
                    .expect("admin");
                let app = axum::Router::new().nest("/admin", admin.router());
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind");
                ready_tx
                    .send((listener.local_addr().expect("address"), admin.clone()))
                    .expect("report");
                tokio::spawn(async move {
                    while let Some(reply) = cpu_rx.recv().await {
                        let _ = reply.send(thread_cpu_nanos());
                    }
                });
                axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stop_rx.await;
                    })
                    .await
                    .expect("serve");
            });
        });
        let (addr, admin) = ready_rx.recv().expect("the server starts");
        Server {
            addr,
            admin,
            cpu: cpu_tx,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    fn cpu_nanos(&self) -> u64 {
        let (tx, rx) = std::sync::mpsc::channel();
        self.cpu
            .blocking_send(tx)
            .expect("the server thread answers");
        rx.recv().expect("cpu time")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // Streams keep connections open: the graceful shutdown would wait for them.
        if let Some(thread) = self.thread.take() {
            drop(thread);
        }
    }
}

/// What the dashboards received.
#[derive(Default)]
struct Received {
    events: AtomicU64,
    bytes: AtomicU64,
    /// Delivery latencies of transitions, in ms (at most 100,000 kept).
    latencies: std::sync::Mutex<Vec<u64>>,
}

/// `n` dashboards reading the event stream on their own thread until `stop` is set.
fn dashboards(
    addr: SocketAddr,
    n: usize,
    stop: Arc<AtomicBool>,
    received: Arc<Received>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("client runtime");
        rt.block_on(async move {
            let mut tasks = Vec::new();
            for _ in 0..n {
                let (stop, received) = (stop.clone(), received.clone());
                tasks.push(tokio::spawn(async move {
                    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
                    let (mut sender, conn) =
                        hyper::client::conn::http1::handshake(TokioIo::new(stream))
                            .await
                            .expect("handshake");
                    tokio::spawn(conn);
                    let request = http::Request::get("/admin/events")
                        .header(http::header::HOST, "bench")
                        .body(Empty::<Bytes>::new())
                        .expect("request");
                    let mut body = sender
                        .send_request(request)
                        .await
                        .expect("response")
                        .into_body();
                    let mut pending = String::new();
                    while !stop.load(Ordering::Relaxed) {
                        let Ok(Some(Ok(frame))) =
                            tokio::time::timeout(Duration::from_millis(100), body.frame()).await
                        else {
                            continue;
                        };
                        let Ok(data) = frame.into_data() else {
                            continue;
                        };
                        received
                            .bytes
                            .fetch_add(data.len() as u64, Ordering::Relaxed);
                        pending.push_str(&String::from_utf8_lossy(&data));
                        while let Some(end) = pending.find("\n\n") {
                            let block: String = pending.drain(..end + 2).collect();
                            if block.starts_with(':') {
                                continue;
                            }
                            received.events.fetch_add(1, Ordering::Relaxed);
                            if block.contains("\nevent: transition\n") {
                                // "transition_at": <ms>, set by the observer on the call path.
                                let at = block
                                    .split("\"transition_at\":")
                                    .nth(1)
                                    .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
                                    .and_then(|s| s.parse::<u64>().ok());
                                if let Some(at) = at {
                                    let mut l = received.latencies.lock().unwrap();
                                    if l.len() < 100_000 {
                                        l.push(unix_ms().saturating_sub(at));
                                    }
                                }
                            }
                        }
                    }
                }));
            }
            for task in tasks {
                let _ = task.await;
            }
        });
    })
}

fn call_path(c: &mut Criterion) {
    let mut g = c.benchmark_group("admin");
    let alone = settings().build().expect("settings");
    let registry = Arc::new(Registry::new());
    let observer = AdminObserver::new();
    let observed: Arc<Observed> = Arc::new(
        settings()
            .name("observed")
            .observer(observer.clone())
            .build()
            .expect("settings"),
    );
    registry
        .register("observed", observed.clone())
        .expect("register");
    let server = Server::start(registry, observer);

    g.bench_function("no_admin_closed", |b| b.iter(|| black_box(call(&alone))));
    g.bench_function("admin_closed", |b| b.iter(|| black_box(call(&*observed))));
    let stop = Arc::new(AtomicBool::new(false));
    let received = Arc::new(Received::default());
    let readers = dashboards(server.addr, 10, stop.clone(), received.clone());
    while server.admin.stats().streams < 10 {
        std::thread::sleep(Duration::from_millis(10));
    }
    g.bench_function("admin_10_dashboards_closed", |b| {
        b.iter(|| black_box(call(&*observed)))
    });
    // Open: every call rejected.
    alone.trip();
    observed.trip();
    g.bench_function("admin_10_dashboards_open", |b| {
        b.iter(|| black_box(call(&*observed)))
    });
    stop.store(true, Ordering::Relaxed);
    readers.join().expect("dashboards");
    g.bench_function("no_admin_open", |b| b.iter(|| black_box(call(&alone))));
    g.bench_function("admin_open", |b| b.iter(|| black_box(call(&*observed))));
    g.finish();
    assert!(
        received.events.load(Ordering::Relaxed) > 0,
        "the dashboards received nothing"
    );
    drop(server);
}

/// 100 breakers, each changing state once a second (one flip every 10 ms, round robin),
/// for `run`; with `dashboards` connected. Returns rows of the report.
fn stream_cost(dashboards_n: usize, run: Duration) -> Vec<(String, String, String)> {
    let registry = Arc::new(Registry::new());
    let observer = AdminObserver::new();
    let breakers: Vec<Arc<Observed>> = (0..100)
        .map(|i| {
            let b = Arc::new(
                settings()
                    .name(format!("dependency-{i:03}"))
                    .observer(observer.clone())
                    .build()
                    .expect("settings"),
            );
            registry
                .register(format!("dependency-{i:03}"), b.clone())
                .expect("register");
            b
        })
        .collect();
    let server = Server::start(registry, observer);
    let stop = Arc::new(AtomicBool::new(false));
    let received = Arc::new(Received::default());
    let readers = (dashboards_n > 0)
        .then(|| dashboards(server.addr, dashboards_n, stop.clone(), received.clone()));
    while server.admin.stats().streams < dashboards_n {
        std::thread::sleep(Duration::from_millis(10));
    }
    // Settle: the hello events and the first snapshot.
    std::thread::sleep(Duration::from_millis(1500));
    let (events0, bytes0) = (
        received.events.load(Ordering::Relaxed),
        received.bytes.load(Ordering::Relaxed),
    );
    received.latencies.lock().unwrap().clear();
    let published0 = server.admin.stats().events;
    let cpu0 = server.cpu_nanos();
    let started = Instant::now();
    let mut flips = 0u64;
    let mut next = started;
    while started.elapsed() < run {
        let b = &breakers[(flips % 100) as usize];
        if call(&**b) {
            b.trip();
        } else {
            b.reset();
        }
        flips += 1;
        next += Duration::from_millis(10);
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    // Let the last transitions arrive.
    std::thread::sleep(Duration::from_millis(300));
    let cpu = (server.cpu_nanos() - cpu0) as f64 / 1e6 / elapsed;
    let published = (server.admin.stats().events - published0) as f64 / elapsed;
    stop.store(true, Ordering::Relaxed);
    if let Some(readers) = readers {
        readers.join().expect("dashboards");
    }
    let setting = format!("100 breakers, {dashboards_n} dashboards");
    let mut rows = vec![
        (
            "transitions_per_s".to_string(),
            setting.clone(),
            format!("{:.0}", flips as f64 / elapsed),
        ),
        (
            "events_published_per_s".into(),
            setting.clone(),
            format!("{published:.0}"),
        ),
        (
            "admin_thread_cpu_ms_per_s".into(),
            setting.clone(),
            format!("{cpu:.2}"),
        ),
    ];
    if dashboards_n > 0 {
        let per = |v: u64| v as f64 / elapsed / dashboards_n as f64;
        rows.push((
            "events_per_s_per_dashboard".into(),
            setting.clone(),
            format!(
                "{:.0}",
                per(received.events.load(Ordering::Relaxed) - events0)
            ),
        ));
        rows.push((
            "kilobytes_per_s_per_dashboard".into(),
            setting.clone(),
            format!(
                "{:.1}",
                per(received.bytes.load(Ordering::Relaxed) - bytes0) / 1000.0
            ),
        ));
        let mut latencies = received.latencies.lock().unwrap().clone();
        latencies.sort_unstable();
        if !latencies.is_empty() {
            let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
            rows.push((
                "transition_to_dashboard_ms_p50".into(),
                setting.clone(),
                at(0.5).to_string(),
            ));
            rows.push((
                "transition_to_dashboard_ms_p99".into(),
                setting,
                at(0.99).to_string(),
            ));
        }
    }
    drop(server);
    rows
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    call_path(&mut c);
    c.final_summary();

    let quick = std::env::var("BENCH_QUICK").is_ok_and(|v| v == "1");
    let run = Duration::from_secs(if quick { 3 } else { 10 });
    let mut rows = Vec::new();
    for dashboards in [0, 10] {
        rows.extend(stream_cost(dashboards, run));
    }
    let out = std::env::var("BENCH_ADMIN_OUT").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/../target/bench-admin.tsv").to_string()
    });
    let mut tsv = String::from("measure\tsetting\tvalue\n");
    for (measure, setting, value) in &rows {
        tsv.push_str(&format!("{measure}\t{setting}\t{value}\n"));
        println!("{measure:36} {setting:28} {value}");
    }
    std::fs::write(&out, tsv).unwrap_or_else(|e| panic!("cannot write {out}: {e}"));
}
