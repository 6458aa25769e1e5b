//! reqwest is not a tower service, so the tower layer does not fit it; guard its futures
//! with `breaker-async` instead: a timeout per call, 5xx, timeouts and transport errors
//! counted as failures, 4xx not (the caller's mistake), and the last good answer served
//! from a cache while the breaker is open.
//!
//! A local upstream (axum, on loopback) follows a script: a 404, a hang, a run of 503s,
//! recovery. The client keeps answering throughout.
//!
//! Run: `cargo run -p breaker-examples --bin reqwest_client`

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use breaker_async::{Cause, Error, GuardExt, ResponseCache, Source, Timeout, TokioTimer};
use breaker_core::{CircuitBreaker, ManualClock, Outcome};

#[derive(Debug)]
enum FetchError {
    Status(reqwest::StatusCode),
    Transport(reqwest::Error),
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::Status(s) => write!(f, "upstream answered {s}"),
            FetchError::Transport(e) => write!(f, "transport error: {e}"),
        }
    }
}

/// One reqwest call: the body on 2xx, the status otherwise.
async fn fetch(client: &reqwest::Client, url: &str) -> Result<String, FetchError> {
    let response = client
        .get(url)
        .send()
        .await
        .map_err(FetchError::Transport)?;
    let status = response.status();
    if !status.is_success() {
        return Err(FetchError::Status(status));
    }
    response.text().await.map_err(FetchError::Transport)
}

/// 5xx and transport errors are the upstream's failures; 4xx are ours.
fn classify(result: &Result<String, FetchError>) -> Outcome {
    match result {
        Ok(_) => Outcome::Success,
        Err(FetchError::Status(s)) if s.is_client_error() => Outcome::Success,
        Err(_) => Outcome::Failure,
    }
}

/// What the upstream does in a round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Upstream {
    /// 200 with the rates.
    Up,
    /// 404: the client asked for a currency pair that does not exist (the caller's fault).
    NotFound,
    /// Answers long after the client's timeout.
    Hangs,
    /// 503.
    Down,
}

/// The script: a 404 (not counted), a hang and two 503s (three failures: the breaker trips),
/// a probe that still fails, then recovery.
const SCRIPT: [Upstream; 13] = {
    use Upstream::*;
    [
        Up, NotFound, Hangs, Down, Down, Down, Down, Down, Down, Down, Up, Up, Up,
    ]
};

/// Breaker time per round. The breaker runs on a manual clock that the program advances, so
/// the story is the same on every machine (the HTTP calls and the timeout are real).
const ROUND: Duration = Duration::from_millis(100);

fn source_text(source: &Source) -> String {
    let cause = |c: &Cause| match c {
        Cause::Rejected => "the breaker is open",
        Cause::TimedOut => "the call timed out",
        Cause::Failed => "the call failed",
    };
    match source {
        Source::Primary => "live".into(),
        Source::Cache { age, cause: c } => {
            format!(
                "from the cache, {} ms old, because {}",
                age.as_millis(),
                cause(c)
            )
        }
        Source::Fallback { kind, cause: c } => format!("{kind} fallback, because {}", cause(c)),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mode = Arc::new(Mutex::new(Upstream::Up));
    let app = Router::new()
        .route(
            "/rates/{pair}",
            get(
                |State(mode): State<Arc<Mutex<Upstream>>>, Path(pair): Path<String>| async move {
                    let now = *mode.lock().unwrap();
                    match now {
                        Upstream::Up => (StatusCode::OK, format!("{pair} 1.08")),
                        Upstream::NotFound => (StatusCode::NOT_FOUND, "no such pair".into()),
                        Upstream::Hangs => {
                            tokio::time::sleep(Duration::from_secs(30)).await;
                            (StatusCode::OK, "too late".into())
                        }
                        Upstream::Down => (StatusCode::SERVICE_UNAVAILABLE, "maintenance".into()),
                    }
                },
            ),
        )
        .with_state(mode.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}/rates", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });

    let client = reqwest::Client::new();
    let clock = ManualClock::new();
    let breaker = CircuitBreaker::builder_with_clock(clock.clone())
        .consecutive_failures(3)
        .open_duration(Duration::from_millis(250))
        .build()?;
    let timeout = Timeout::new(TokioTimer, Duration::from_millis(300))?;
    let cache = ResponseCache::with_clock(100, Duration::from_secs(60), clock.clone())?;

    for (round, upstream) in SCRIPT.into_iter().enumerate() {
        *mode.lock().unwrap() = upstream;
        let pair = if upstream == Upstream::NotFound {
            "EUR-XYZ"
        } else {
            "EUR-USD"
        };
        let served = breaker
            .guard(fetch(&client, &format!("{base}/{pair}")))
            .classify(classify)
            .timeout(timeout)
            .or_cached(&cache, pair)
            .await;
        let line = match served {
            Ok(s) => format!("{} ({})", s.value, source_text(&s.source)),
            Err(Error::Inner(FetchError::Status(s))) if s.is_client_error() => {
                format!("{s}: our request was wrong; not counted against the upstream")
            }
            Err(e) => format!("no answer: {e}"),
        };
        let s = breaker.snapshot();
        println!(
            "round {round:>2}  upstream {:<9} {line}",
            format!("{upstream:?}"),
        );
        println!(
            "          breaker {} (failures in a row: {}, upstream calls so far: {})",
            s.state,
            s.window.consecutive_failures,
            s.totals.successes + s.totals.failures
        );
        clock.advance(ROUND);
    }
    Ok(())
}
