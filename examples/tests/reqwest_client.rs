//! The `reqwest_client` example as a user runs it: its story, and `--url` pointed at a
//! server of the test's own that fails, recovers and sheds load with `Retry-After`.

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::routing::get;
use common::Running;

const LIMIT: Duration = Duration::from_secs(60);

#[test]
fn the_story_times_out_ignores_4xx_trips_recovers_and_honours_retry_after() {
    let out = Command::new(env!("CARGO_BIN_EXE_reqwest_client"))
        .output()
        .expect("run the example");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = String::from_utf8(out.stdout).unwrap();
    let round = |n: usize| -> String {
        let prefix = format!("round {n:>2} ");
        let mut lines = out.lines().skip_while(|l| !l.starts_with(&prefix));
        let first = lines
            .next()
            .unwrap_or_else(|| panic!("round {n} missing:\n{out}"));
        format!("{first}\n{}", lines.next().unwrap_or_default())
    };
    let expect = |n: usize, needles: &[&str]| {
        let text = round(n);
        for needle in needles {
            assert!(
                text.contains(needle),
                "round {n}: {needle:?} missing in:\n{text}"
            );
        }
    };
    expect(0, &["(live)", "breaker closed"]);
    expect(1, &["404 Not Found", "not counted", "failures in a row: 0"]);
    expect(
        2,
        &[
            "from the cache",
            "because the request timed out",
            "failures in a row: 1",
        ],
    );
    expect(
        4,
        &[
            "503 Service Unavailable",
            "counted as a failure",
            "breaker open",
        ],
    );
    expect(
        5,
        &["not sent: the breaker refused", "requests sent so far: 5"],
    );
    expect(7, &["503", "requests sent so far: 6"]); // the probe, still failing
    expect(8, &["not sent"]);
    expect(10, &["(live)", "breaker closed"]);
    // Shedding load with Retry-After: 1 s; the breaker's own open period is 250 ms.
    expect(15, &["503", "breaker open", "requests sent so far: 12"]);
    expect(16, &["not sent", "retry in 900 ms"]);
    expect(24, &["not sent", "requests sent so far: 12"]);
    expect(
        26,
        &["(live)", "breaker closed", "requests sent so far: 13"],
    );
}

/// The upstream for `--url`: answers by how many requests it has seen.
#[derive(Clone, Default)]
struct Upstream {
    hits: Arc<AtomicU64>,
}

impl Upstream {
    /// 503 for requests 1 to 4 (three trip the breaker, the fourth is a failed probe), 200
    /// for 5 to 7, then 503 with `Retry-After: 5` from the 8th on.
    async fn prices(State(u): State<Upstream>) -> (StatusCode, HeaderMap, &'static str) {
        let n = u.hits.fetch_add(1, Ordering::SeqCst) + 1;
        let mut headers = HeaderMap::new();
        match n {
            1..=4 => (StatusCode::SERVICE_UNAVAILABLE, headers, "down"),
            5..=7 => (StatusCode::OK, headers, "EUR/USD 1.08"),
            _ => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
                (StatusCode::SERVICE_UNAVAILABLE, headers, "shedding load")
            }
        }
    }
}

fn serve(upstream: Upstream) -> (SocketAddr, tokio::runtime::Runtime) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new()
        .route("/prices", get(Upstream::prices))
        .with_state(upstream);
    runtime.spawn(async move { axum::serve(listener, app).await });
    (addr, runtime)
}

#[test]
fn pointed_at_a_url_it_trips_refuses_without_sending_probes_recovers_and_honours_retry_after() {
    let upstream = Upstream::default();
    let (addr, _server) = serve(upstream.clone());
    let mut command = Command::new(env!("CARGO_BIN_EXE_reqwest_client"));
    command.args([
        "--url",
        &format!("http://{addr}/prices"),
        "--every",
        "50",
        "--requests",
        "40",
        "--open",
        "300",
    ]);
    let mut client = Running::start(command);
    client.wait_for("GET http://", LIMIT);
    let last = client.wait_for("#40 ", LIMIT);
    let printed = client.printed.clone();
    let requests: Vec<&String> = printed.iter().filter(|l| l.contains("  #")).collect();
    assert_eq!(requests.len(), 40, "{printed:#?}");
    let sent = requests.iter().filter(|l| !l.contains("not sent")).count() as u64;
    assert_eq!(
        upstream.hits.load(Ordering::SeqCst),
        sent,
        "every request the example did not refuse reached the server, no other: {printed:#?}"
    );
    let position = |needle: &str| {
        requests
            .iter()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("{needle:?} missing: {printed:#?}"))
    };
    // Three 503s, then refusals, a failed probe, refusals, a probe that closes it.
    assert!(
        requests[..3]
            .iter()
            .all(|l| l.contains("503 Service Unavailable") && l.contains("a failure")),
        "{printed:#?}"
    );
    assert!(
        requests[3].contains("not sent: the breaker is open"),
        "{printed:#?}"
    );
    let opened = printed
        .iter()
        .filter(|l| l.contains("closed -> open"))
        .count();
    assert_eq!(opened, 2, "{printed:#?}");
    assert!(
        printed.iter().any(|l| l.contains("half_open -> open")),
        "{printed:#?}"
    );
    assert!(
        printed.iter().any(|l| l.contains("half_open -> closed")),
        "{printed:#?}"
    );
    let first_ok = position("200 OK");
    assert!(first_ok > 4, "{printed:#?}");
    // The 8th request to reach the server on: 503 with Retry-After: 5. Three trip the
    // breaker, which then stays open for the 5 s asked, not its own 300 ms: every request to
    // the end is refused, saying so.
    let shedding = position("Retry-After: 5");
    let after_trip = &requests[shedding + 3..];
    assert!(!after_trip.is_empty(), "{printed:#?}");
    for line in after_trip {
        let ms: u64 = line
            .split("retry in ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("not a refusal with a wait: {line}"));
        assert!(ms > 300, "{line}");
    }
    assert!(last.contains("not sent"), "{last}");
    assert!(client.finish(LIMIT).success());
}

#[test]
fn a_url_it_cannot_request_is_refused_at_startup() {
    for (url, needle) in [
        ("not a url", "is not a URL"),
        ("ftp://127.0.0.1/file", "only http:// and https://"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_reqwest_client"))
            .args(["--url", url])
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{err}");
    }
}
