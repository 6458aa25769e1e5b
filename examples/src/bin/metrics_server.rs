//! Metrics for operators: an axum service guarded by the breaker middleware, with its
//! breaker reporting through `breaker-metrics` and a `/metrics` endpoint rendering them in
//! Prometheus' text format (`metrics-exporter-prometheus`), next to `/health` and `/ready`.
//!
//! It serves on a fixed address (printed; `--listen` for another), runs until stopped, and
//! its database fails and recovers on a schedule (healthy 20 s, down 10 s, over and over;
//! `--outages UP,DOWN` in seconds, or `off`) or when told on standard input (`down`, `up`,
//! `auto` for the schedule again, `state`, `quit`). A built-in client sends 10 requests per
//! second to `/orders` (`--rate`), so a Prometheus scraping `/metrics` sees the breaker trip,
//! refuse and recover: point one at it with the alert rules and the Grafana dashboard of
//! `docs/monitoring`, or `curl` it.
//!
//! Run: `cargo run -p breaker-examples --bin metrics_server`

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use breaker_axum::{ServerBreakerLayer, health_routes};
use breaker_core::{CircuitBreaker, Registry};
use breaker_examples::{Args, PrintTransitions, StartupError, exit_code, stdin_lines};
use breaker_metrics::BreakerMetrics;
use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

const USAGE: &str = "
metrics_server: an axum service whose breaker reports to Prometheus, with a database that
fails and recovers, and a built-in client, so the breaker's series move.

Usage: metrics_server [--listen ADDR] [--outages UP,DOWN | --outages off] [--rate N]
                      [--serve-for SECONDS]

  --listen ADDR        where to serve (default 127.0.0.1:9898; 127.0.0.1:0 for any free port)
  --outages UP,DOWN    the database is healthy UP seconds, then down DOWN seconds, over and
                       over (default 20,10); off: healthy until told otherwise
  --rate N             requests per second the built-in client sends to /orders (default 10;
                       0: none, send your own)
  --serve-for SECONDS  stop after this long (default: run until Ctrl-C or `quit`)

Routes: GET /orders (the guarded handler: 500 while the database is down, 503 while the
breaker is open), GET /metrics (Prometheus text), GET /health, GET /ready.
Commands on standard input: down, up, auto (back to the schedule), state, quit.
Scrape it: a Prometheus job with the target ADDR and metrics_path /metrics; alert rules and
a Grafana dashboard in docs/monitoring.
";

const DEFAULT_LISTEN: &str = "127.0.0.1:9898";

#[derive(Clone)]
struct App {
    database_down: Arc<AtomicBool>,
    registry: Arc<Registry>,
    prometheus: PrometheusHandle,
}

/// The guarded handler: a database query that fails while the database is down.
async fn orders(State(app): State<App>) -> (StatusCode, &'static str) {
    if app.database_down.load(Ordering::SeqCst) {
        (StatusCode::INTERNAL_SERVER_ERROR, "database unavailable")
    } else {
        (StatusCode::OK, "[{\"id\": 1}]")
    }
}

/// Prometheus' scrape endpoint: window rates from the registry's snapshots, then the text.
async fn metrics(State(app): State<App>) -> impl IntoResponse {
    breaker_metrics::record_rates(&app.registry);
    app.prometheus.run_upkeep();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.prometheus.render(),
    )
}

/// When the database is up or down.
struct Dependency {
    down: Arc<AtomicBool>,
    /// Following the schedule (not overridden by a command).
    scheduled: AtomicBool,
    start: Instant,
}

impl Dependency {
    fn set(&self, down: bool, why: &str) {
        // A command is always answered; the schedule speaks only when it changes something.
        if self.down.swap(down, Ordering::SeqCst) != down || why == "command" {
            println!(
                "{:>7.1} s  database {} ({why})",
                self.start.elapsed().as_secs_f64(),
                if down { "down" } else { "up" }
            );
        }
    }

    /// Healthy `up`, down `down`, over and over, while no command overrides it.
    async fn follow(&self, up: Duration, down: Duration) {
        loop {
            tokio::time::sleep(up).await;
            if self.scheduled.load(Ordering::SeqCst) {
                self.set(true, "schedule");
            }
            tokio::time::sleep(down).await;
            if self.scheduled.load(Ordering::SeqCst) {
                self.set(false, "schedule");
            }
        }
    }
}

/// The built-in client: `rate` GET /orders per second; prints what came back every 5 s.
async fn traffic(addr: SocketAddr, rate: u32, start: Instant) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let uri: hyper::Uri = format!("http://{addr}/orders")
        .parse()
        .expect("a valid uri");
    let counts: Arc<[AtomicU64; 4]> = Arc::default(); // 200, 500, 503, other
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
    let mut report = tokio::time::interval(Duration::from_secs(5));
    report.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let (client, uri, counts) = (client.clone(), uri.clone(), counts.clone());
                tokio::spawn(async move {
                    let slot = match client.get(uri).await.map(|r| r.status().as_u16()) {
                        Ok(200) => 0,
                        Ok(500) => 1,
                        Ok(503) => 2,
                        _ => 3,
                    };
                    counts[slot].fetch_add(1, Ordering::Relaxed);
                });
            }
            _ = report.tick() => {
                let [ok, failed, refused, other] =
                    [0, 1, 2, 3].map(|i| counts[i].swap(0, Ordering::Relaxed));
                println!(
                    "{:>7.1} s  last 5 s: {ok} ok, {failed} failed (500), {refused} refused by \
                     the breaker (503){}",
                    start.elapsed().as_secs_f64(),
                    if other > 0 { format!(", {other} other") } else { String::new() }
                );
            }
        }
    }
}

fn parse_outages(value: &str) -> Option<Option<(Duration, Duration)>> {
    if value == "off" {
        return Some(None);
    }
    let (up, down) = value.split_once(',')?;
    let secs = |s: &str| {
        s.trim()
            .parse::<f64>()
            .ok()
            .filter(|s| *s > 0.0 && s.is_finite())
    };
    Some(Some((
        Duration::from_secs_f64(secs(up)?),
        Duration::from_secs_f64(secs(down)?),
    )))
}

fn main() -> std::process::ExitCode {
    exit_code(run())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse(USAGE, &["--listen", "--outages", "--rate", "--serve-for"])?;
    let listen = args.value("--listen").unwrap_or(DEFAULT_LISTEN);
    let outages = match args.value("--outages") {
        None => Some((Duration::from_secs(20), Duration::from_secs(10))),
        Some(value) => parse_outages(value).ok_or_else(|| {
            StartupError::new(format!(
                "--outages {value:?}: expected UP,DOWN in seconds (20,10) or off"
            ))
        })?,
    };
    let rate = args
        .parsed::<u32>("--rate", "requests per second, 0 or more")?
        .unwrap_or(10);
    let serve_for = args
        .parsed::<u64>("--serve-for", "a number of seconds")?
        .map(Duration::from_secs);

    // The exporter: call durations as a histogram (buckets), everything else as is.
    let prometheus = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(breaker_metrics::names::CALL_DURATION.into()),
            &[0.001, 0.005, 0.025, 0.1, 0.5, 2.5],
        )?
        .install_recorder()?;
    breaker_metrics::describe();

    let start = Instant::now();
    let breaker = Arc::new(
        CircuitBreaker::builder()
            .name("orders-db")
            .consecutive_failures(3)
            .slow_call_duration(Duration::from_millis(500)) // also measures call durations
            .open_duration(Duration::from_secs(5))
            // Every series present (at zero) from the start, and each transition printed.
            .observer((BreakerMetrics::named("orders-db"), PrintTransitions::new()))
            .build()?,
    );
    let registry = Arc::new(Registry::new());
    registry.register("orders-db", breaker.clone())?;
    let dependency = Arc::new(Dependency {
        down: Arc::new(AtomicBool::new(false)),
        scheduled: AtomicBool::new(true),
        start,
    });
    let app = App {
        database_down: dependency.down.clone(),
        registry: registry.clone(),
        prometheus,
    };
    let router = Router::new()
        .route("/orders", get(orders))
        .route("/metrics", get(metrics))
        .with_state(app)
        .merge(health_routes(registry))
        .layer(
            ServerBreakerLayer::new(breaker.clone())
                .exempt("/metrics")
                .exempt("/health")
                .exempt("/ready"),
        );
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::AddrInUse {
            "another program (another metrics_server?) listens there: stop it, or pass \
             --listen 127.0.0.1:0 for any free port"
        } else {
            "pass --listen HOST:PORT with an address of this machine"
        };
        StartupError::new(format!("cannot listen on {listen}: {hint}")).because(e)
    })?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, router).await });

    println!("serving on http://{addr}: /orders (guarded), /metrics, /health, /ready");
    match outages {
        Some((up, down)) => {
            println!(
                "database: healthy {up:?}, down {down:?}, over and over (commands: down, up, \
                 auto, state, quit)"
            );
            let dependency = dependency.clone();
            tokio::spawn(async move { dependency.follow(up, down).await });
        }
        None => println!("database: healthy until told (commands: down, up, state, quit)"),
    }
    if rate > 0 {
        println!("traffic: {rate} requests per second to /orders (--rate 0: none)");
        tokio::spawn(traffic(addr, rate, start));
    } else {
        println!("traffic: none (send your own: curl http://{addr}/orders)");
    }

    let mut commands = stdin_lines();
    let stop = async {
        match serve_for {
            Some(duration) => tokio::time::sleep(duration).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(stop);
    let mut stdin_open = true;
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = tokio::signal::ctrl_c() => break,
            line = commands.recv(), if stdin_open => {
                let Some(line) = line else {
                    // Standard input closed: keep serving until stopped.
                    stdin_open = false;
                    continue;
                };
                match line.trim() {
                    "down" => {
                        dependency.scheduled.store(false, Ordering::SeqCst);
                        dependency.set(true, "command");
                    }
                    "up" => {
                        dependency.scheduled.store(false, Ordering::SeqCst);
                        dependency.set(false, "command");
                    }
                    "auto" => {
                        dependency.scheduled.store(outages.is_some(), Ordering::SeqCst);
                        println!("database: follows the schedule{}",
                            if outages.is_some() { "" } else { " (none: --outages off)" });
                    }
                    "state" => {
                        let s = breaker.snapshot();
                        println!(
                            "breaker {}: {} successes, {} failures, {} refused; database {}",
                            s.state,
                            s.totals.successes,
                            s.totals.failures,
                            s.totals.rejected,
                            if dependency.down.load(Ordering::SeqCst) { "down" } else { "up" }
                        );
                    }
                    "quit" => break,
                    "" => {}
                    other => println!("unknown command {other:?}: down, up, auto, state, quit"),
                }
            }
        }
    }
    Ok(())
}
