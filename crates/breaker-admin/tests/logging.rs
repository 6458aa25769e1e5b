//! Every operator action is logged with `tracing`: who, what, why, and the states.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::{Fixture, OPERATOR_SECRET, act, bearer, client, operator};
use http::StatusCode;
use serde_json::json;

/// Collects what the `fmt` subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_actions_are_logged_with_who_and_why() {
    let captured = Captured::default();
    let writer = captured.clone();
    // The handlers run on the server's worker threads: a global subscriber sees them.
    tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || writer.clone())
            .finish(),
    )
    .unwrap();
    let f = Fixture::start(|b| b.operator_token(operator())).await;
    let http = client();
    let reply = act(
        &http,
        &f.url("breakers/payments"),
        &[bearer(OPERATOR_SECRET)],
        json!({"action": "force_open", "reason": "incident 42: payments provider down", "operator": "alice"}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    // A refused request is not an action: not logged as one.
    let refused = act(
        &http,
        &f.url("breakers/search"),
        &[bearer("not-the-token-0123456789")],
        json!({"action": "trip", "reason": "x"}),
    )
    .await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);

    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("operator action"))
        .collect();
    assert_eq!(lines.len(), 1, "{log}");
    let line = lines[0];
    for part in [
        "WARN",
        "breaker_admin",
        "breaker=payments",
        "action=\"force_open\"",
        "reason=incident 42: payments provider down",
        "token=on-call",
        "operator=\"alice\"",
        "address=\"127.0.0.1:",
        "from=\"closed\"",
        "to=\"forced_open\"",
    ] {
        assert!(line.contains(part), "{part:?} missing in {line}");
    }
    assert!(!log.contains(OPERATOR_SECRET), "the secret is never logged");
}
