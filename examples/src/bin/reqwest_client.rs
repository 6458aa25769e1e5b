//! reqwest with `breaker-reqwest`: a reqwest-middleware client with one breaker per origin.
//! 5xx, 429, timeouts and connection failures count; other 4xx are the caller's; a failing
//! answer's `Retry-After` keeps the breaker open that long; a refused request is not sent,
//! and the caller recognises it (`rejection(&e)`) and answers from its last good answer.
//!
//! Two modes:
//!
//! - no argument: a local upstream (axum, on loopback) follows a script (a 404, a hang, a
//!   run of 503s, recovery, then load shedding with `Retry-After`), on simulated breaker
//!   time, so the story is the same on every machine;
//! - `--url URL`: requests any URL of yours on a real clock, every second (`--every`), and
//!   says for each what came back, what the breaker made of it, and when it refused.
//!
//! Run: `cargo run -p breaker-examples --bin reqwest_client` (or `-- --url
//! http://127.0.0.1:8080/health`, `-- --help`)

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::routing::get;
use breaker_core::{CircuitBreaker, Clock, ManualClock, Observer};
use breaker_examples::{Args, PrintTransitions, StartupError, exit_code};
use breaker_reqwest::{BreakerMiddleware, rejection};
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};

const USAGE: &str = "
reqwest_client: reqwest behind circuit breakers, one per origin (breaker-reqwest).

Usage: reqwest_client                 the story, against a local upstream (instant)
       reqwest_client --url URL [--every MILLISECONDS] [--requests N]
                      [--timeout MILLISECONDS] [--open MILLISECONDS]

--url: GET URL every MILLISECONDS (default 1000), N times (default: until Ctrl-C), each with a
  timeout (default 2000 ms), through a breaker for URL's origin: 3 failures in a row (a 5xx,
  a 429, a timeout, a refused connection) open it for --open (default 5000 ms), or for as
  long as the answer's Retry-After asks (up to 5 minutes); then one request probes. Other 4xx
  are the caller's mistake and do not count. Prints one line per request, and the breaker's
  transitions as they happen. Try it against a server of yours that you stop and start.
";

/// What the local upstream does in a round of the story.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Upstream {
    /// 200 with the rate.
    Up,
    /// 404: the client asked for a currency pair that does not exist (the caller's fault).
    NotFound,
    /// Answers long after the client's timeout.
    Hangs,
    /// 503.
    Down,
    /// 503 with `Retry-After: 1` (second): shedding load, and saying for how long.
    Sheds,
}

/// The story: a 404 (not counted), a hang and two 503s (three failures: the breaker trips),
/// a probe that still fails, recovery; then the upstream sheds load for a while and says
/// "retry after 1 s": the breaker stays open that long, not its own 250 ms.
const SCRIPT: [Upstream; 30] = {
    use Upstream::*;
    [
        Up, NotFound, Hangs, Down, Down, Down, Down, Down, Down, Down, Up, Up, Up, Sheds, Sheds,
        Sheds, Up, Up, Up, Up, Up, Up, Up, Up, Up, Up, Up, Up, Up, Up,
    ]
};

/// Breaker time per round. The breaker runs on a manual clock that the program advances, so
/// the story is the same on every machine (the HTTP calls and the timeout are real).
const ROUND: Duration = Duration::from_millis(100);

fn main() -> std::process::ExitCode {
    exit_code(run())
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse(
        USAGE,
        &["--url", "--every", "--requests", "--timeout", "--open"],
    )?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    match args.value("--url") {
        Some(url) => runtime.block_on(point_at(url, &args)),
        None => runtime.block_on(story()),
    }
}

/// A client whose breakers (one per origin) are made by `breaker`.
fn client<C, O>(
    timeout: Duration,
    breaker: impl Fn(&String) -> CircuitBreaker<C, O> + Send + Sync + 'static,
) -> Result<(ClientWithMiddleware, BreakerMiddleware<C, O>), Box<dyn std::error::Error>>
where
    C: Clock + Send + Sync + 'static,
    O: Observer + Send + Sync + 'static,
{
    let breakers = BreakerMiddleware::per_origin(1_000, breaker)?;
    let reqwest = reqwest::Client::builder().timeout(timeout).build()?;
    let client = ClientBuilder::new(reqwest).with(breakers.clone()).build();
    Ok((client, breakers))
}

async fn story() -> Result<(), Box<dyn std::error::Error>> {
    let mode = Arc::new(AtomicU8::new(Upstream::Up as u8));
    let app = Router::new()
        .route("/rates/{pair}", get(rates))
        .with_state(mode.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}/rates", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });

    let clock = ManualClock::new();
    let c = clock.clone();
    let (client, breakers) = client(Duration::from_millis(300), move |origin: &String| {
        CircuitBreaker::builder_with_clock(c.clone())
            .name(origin.clone())
            .consecutive_failures(3)
            .open_duration(Duration::from_millis(250))
            .build()
            .expect("valid settings")
    })?;
    // The fallback: the last good answer per pair, and when (on the breaker's clock) it came.
    let cache: Mutex<Option<(String, Duration)>> = Mutex::new(None);

    for (round, upstream) in SCRIPT.into_iter().enumerate() {
        mode.store(upstream as u8, Ordering::SeqCst);
        let pair = if upstream == Upstream::NotFound {
            "EUR-XYZ"
        } else {
            "EUR-USD"
        };
        let line = match client.get(format!("{base}/{pair}")).send().await {
            Ok(answer) if answer.status().is_success() => {
                let body = answer.text().await.unwrap_or_default();
                *cache.lock().unwrap() = Some((body.clone(), clock.elapsed()));
                format!("{body} (live)")
            }
            Ok(answer) if answer.status().is_client_error() && answer.status() != 429 => {
                format!(
                    "{}: our request was wrong; not counted against the upstream",
                    answer.status()
                )
            }
            Ok(answer) => format!(
                "{} from the upstream: counted as a failure",
                answer.status()
            ),
            Err(e) => {
                let cause = match rejection(&e) {
                    Some(refused) => format!(
                        "not sent: the breaker refused (retry {})",
                        refused.retry_hint()
                    ),
                    None if matches!(&e, reqwest_middleware::Error::Reqwest(r) if r.is_timeout()) => {
                        "the request timed out".to_string()
                    }
                    None => format!("the request failed ({})", with_causes(&e)),
                };
                match &*cache.lock().unwrap() {
                    Some((body, at)) => format!(
                        "{body} (from the cache, {} ms old), because {cause}",
                        (clock.elapsed() - *at).as_millis()
                    ),
                    None => format!("no answer, because {cause}"),
                }
            }
        };
        let origin = base.trim_end_matches("/rates");
        let s = breakers
            .origins()
            .peek(origin)
            .map(|b| b.snapshot())
            .expect("the origin's breaker exists after its first request");
        println!(
            "round {round:>2}  upstream {:<9} {line}",
            format!("{upstream:?}"),
        );
        println!(
            "          breaker {} (failures in a row: {}, requests sent so far: {})",
            s.state,
            s.window.consecutive_failures,
            s.totals.successes + s.totals.failures + s.totals.ignored
        );
        clock.advance(ROUND);
    }
    Ok(())
}

async fn rates(
    State(mode): State<Arc<AtomicU8>>,
    Path(pair): Path<String>,
) -> (StatusCode, HeaderMap, String) {
    let mut headers = HeaderMap::new();
    match mode.load(Ordering::SeqCst) {
        m if m == Upstream::Up as u8 => (StatusCode::OK, headers, format!("{pair} 1.08")),
        m if m == Upstream::NotFound as u8 => {
            (StatusCode::NOT_FOUND, headers, "no such pair".into())
        }
        m if m == Upstream::Hangs as u8 => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            (StatusCode::OK, headers, "too late".into())
        }
        m if m == Upstream::Down as u8 => (
            StatusCode::SERVICE_UNAVAILABLE,
            headers,
            "maintenance".into(),
        ),
        _ => {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            (
                StatusCode::SERVICE_UNAVAILABLE,
                headers,
                "shedding load".into(),
            )
        }
    }
}

/// `--url`: requests the user's URL on a real clock and says what happened each time.
async fn point_at(url: &str, args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let parsed = reqwest::Url::parse(url).map_err(|e| {
        StartupError::new(format!(
            "--url {url:?} is not a URL: give one such as http://127.0.0.1:8080/health"
        ))
        .because(e)
    })?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(StartupError::new(format!(
            "--url {url:?}: only http:// and https:// URLs can be requested"
        ))
        .into());
    }
    let millis = |option: &str, default: u64| -> Result<Duration, StartupError> {
        let value = args
            .parsed::<u64>(option, "a whole number of milliseconds, more than 0")?
            .unwrap_or(default);
        if value == 0 {
            return Err(StartupError::new(format!(
                "{option} 0: give a whole number of milliseconds, more than 0"
            )));
        }
        Ok(Duration::from_millis(value))
    };
    let every = millis("--every", 1_000)?;
    let timeout = millis("--timeout", 2_000)?;
    let open = millis("--open", 5_000)?;
    let requests = args.parsed::<u64>("--requests", "a number of requests")?;
    let transitions = Arc::new(PrintTransitions::new());
    let printer = transitions.clone();
    let (client, _breakers) = client(timeout, move |origin: &String| {
        CircuitBreaker::builder()
            .name(origin.clone())
            .consecutive_failures(3)
            .open_duration(open)
            .observer(Arc::clone(&printer))
            .build()
            .expect("valid settings")
    })?;
    println!(
        "GET {url} every {} ms (timeout {} ms), through a breaker for its origin: 3 failures \
         in a row open it for {} ms, or as long as a Retry-After asks",
        every.as_millis(),
        timeout.as_millis(),
        open.as_millis()
    );
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n = 0;
    while requests.is_none_or(|requests| n < requests) {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = tick.tick() => {}
        }
        n += 1;
        let started = Instant::now();
        let what = match client.get(url).send().await {
            Ok(answer) => {
                let status = answer.status();
                let verdict = if status.is_server_error() || status == 429 {
                    "a failure"
                } else if status.is_client_error() {
                    "the caller's mistake: not counted"
                } else {
                    "a success"
                };
                let hint = answer
                    .headers()
                    .get(header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .map(|v| format!(", Retry-After: {v}"))
                    .unwrap_or_default();
                format!(
                    "{status} in {} ms{hint}: {verdict}",
                    started.elapsed().as_millis()
                )
            }
            Err(e) => match rejection(&e) {
                Some(refused) => format!(
                    "not sent: the breaker is {} (retry in {} ms)",
                    refused.state(),
                    refused.retry_after().map_or(0, |d| d.as_millis())
                ),
                None => format!(
                    "failed after {} ms: {}: a failure",
                    started.elapsed().as_millis(),
                    with_causes(&e)
                ),
            },
        };
        println!("{}  #{n} {what}", transitions.elapsed());
    }
    Ok(())
}

/// `error` and its causes, `: `-separated (reqwest's own message leaves out why: "connection
/// refused" is a cause).
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        text.push_str(": ");
        text.push_str(&e.to_string());
        cause = e.source();
    }
    text
}
