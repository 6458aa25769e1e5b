//! The `dashboard` example as a newcomer meets it: it prints the dashboard's URL and a demo
//! operator token, serves the page, the API and the event stream over its simulated
//! traffic, takes an operator action with the token (and refuses one without), and stops
//! when told to.
//!
//! With `BREAKER_DASHBOARD_SCREENSHOT=<path>` it also lets the traffic run for
//! `BREAKER_DASHBOARD_SCREENSHOT_AFTER` seconds (default 100) and saves what headless
//! Chromium shows: the picture in README.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

/// Kills the example when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

async fn request(
    client: &HttpClient,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut request = hyper::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = client
        .request(
            request
                .body(Full::new(Bytes::from(body.to_string())))
                .unwrap(),
        )
        .await
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Reads the event stream until an event of `kind` (bounded).
async fn first_event(body: &mut Incoming, kind: &str) -> Value {
    let mut buffer = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            if block.lines().any(|l| l == format!("event: {kind}")) {
                let data = block
                    .lines()
                    .find_map(|l| l.strip_prefix("data: "))
                    .expect("an event carries data");
                return serde_json::from_str(data).unwrap();
            }
        }
        let frame = tokio::time::timeout_at(deadline, body.frame())
            .await
            .unwrap_or_else(|_| panic!("no {kind} event within 30 s"))
            .expect("the stream is open")
            .unwrap();
        if let Ok(data) = frame.into_data() {
            buffer.push_str(&String::from_utf8_lossy(&data));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_example_serves_its_breakers_and_takes_the_demo_token() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dashboard"))
        .args(["--port", "0", "--serve-for", "300"])
        .env_remove("BREAKER_ADMIN_TOKEN")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the example");
    let stdout = child.stdout.take().expect("stdout");
    let _running = Running(child);
    let (lines, printed) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    // Bounded wait for the example to say where it serves and with which token.
    let (mut url, mut token) = (None, None);
    let mut seen = Vec::new();
    while url.is_none() || token.is_none() {
        let line = printed
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("not printed ({e}); got:\n{}", seen.join("\n")));
        if let Some(rest) = line.strip_prefix("breaker dashboard: ") {
            url = Some(rest.trim().to_string());
        }
        if let Some(rest) = line.strip_prefix("operator token (demo): ") {
            token = Some(rest.trim().to_string());
        }
        seen.push(line);
    }
    let (url, token) = (url.unwrap(), token.unwrap());
    assert!(url.ends_with("/admin/dashboard"), "{url}");
    assert_eq!(token.len(), 48, "24 random bytes in hex: {token}");
    let base = url.trim_end_matches("dashboard").to_string();
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();

    let (status, page) = request(&client, "GET", &url, &[], "").await;
    assert_eq!(status, 200);
    assert!(page.contains("dashboard.js"));

    let (status, list) = request(&client, "GET", &format!("{base}breakers"), &[], "").await;
    assert_eq!(status, 200);
    let list: Value = serde_json::from_str(&list).unwrap();
    let names: Vec<&str> = list["breakers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    for name in [
        "inventory",
        "payments",
        "recommendations",
        "search",
        "upstreams/a.example",
        "upstreams/b.example",
        "upstreams/c.example",
    ] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }

    // The stream starts with every breaker.
    let stream = client
        .request(
            hyper::Request::get(format!("{base}events"))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let mut body = stream.into_body();
    let hello = first_event(&mut body, "hello").await;
    assert_eq!(hello["operator_actions"], true);
    assert_eq!(hello["breakers"].as_array().unwrap().len(), names.len());

    // An action without the token is refused; with it, applied and streamed.
    let action = json!({"action": "force_open", "reason": "example test"}).to_string();
    let inventory = format!("{base}breakers/inventory");
    let json = ("content-type", "application/json");
    let (status, _) = request(&client, "POST", &inventory, &[json], &action).await;
    assert_eq!(status, 401);
    let bearer = format!("Bearer {token}");
    let (status, answer) = request(
        &client,
        "POST",
        &inventory,
        &[json, ("authorization", &bearer)],
        &action,
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let answer: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(answer["to"], "forced_open");
    let event = first_event(&mut body, "action").await;
    assert_eq!(
        (event["breaker"].as_str(), event["by"]["token"].as_str()),
        (Some("inventory"), Some("demo-operator"))
    );
    let normal = json!({"action": "normal", "reason": "example test done"}).to_string();
    let (status, _) = request(
        &client,
        "POST",
        &inventory,
        &[json, ("authorization", &bearer)],
        &normal,
    )
    .await;
    assert_eq!(status, 200);

    // Traffic flows: calls are counted between snapshots.
    let snapshot = first_event(&mut body, "snapshot").await;
    let calls: u64 = snapshot["breakers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["totals"]["successes"].as_u64().unwrap())
        .sum();
    assert!(calls > 0, "no simulated traffic: {snapshot}");

    if let Some(path) = std::env::var_os("BREAKER_DASHBOARD_SCREENSHOT") {
        let after: u64 = std::env::var("BREAKER_DASHBOARD_SCREENSHOT_AFTER")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(100);
        let started = Instant::now();
        let mut browser = breaker_test_support::Chromium::launch(1500, 1130).await;
        browser.open(&url).await;
        browser
            .eval(&format!(
                "document.getElementById('token').value = {}; \
                 document.getElementById('signin').requestSubmit(); true",
                serde_json::to_string(&token).unwrap()
            ))
            .await;
        tokio::time::sleep(Duration::from_secs(after).saturating_sub(started.elapsed())).await;
        browser.screenshot(std::path::Path::new(&path)).await;
    }
    // `_running` stops the example.
}
