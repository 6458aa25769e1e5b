//! The JSON API over real HTTP on loopback: listing and inspecting, operator actions, and
//! every security rule with wrong, missing and hostile input.

mod common;

use std::sync::Arc;
use std::time::Duration;

use breaker_admin::Admin;
use breaker_core::{CircuitBreaker, InspectGroup, ManualClock, Outcome, Registry, Snapshot, State};
use breaker_tower::KeyedRegistry;
use common::{
    Fixture, Headers, OPERATOR_SECRET, READ_SECRET, act, bearer, client, get, operator, reader,
    record, send, serve, view,
};
use http::{Method, StatusCode};
use serde_json::json;

/// A group that reports snapshots only: its members are read-only.
struct Frozen(Vec<(String, Snapshot)>);

impl InspectGroup for Frozen {
    fn snapshots(&self) -> Vec<(String, Snapshot)> {
        self.0.clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_and_inspects_every_breaker_of_the_registry() {
    let f = Fixture::start(|b| b).await;
    // A keyed group (members as group/key) and a read-only group.
    let clock = f.clock.clone();
    let observer = f.admin.observer();
    let upstreams = Arc::new(
        KeyedRegistry::new(100, move |host: &String| {
            CircuitBreaker::builder_with_clock(clock.clone())
                .name(format!("upstream {host}"))
                .consecutive_failures(2)
                .observer(observer.clone())
                .build()
                .unwrap()
        })
        .unwrap(),
    );
    upstreams.get("a.example").trip();
    upstreams.get("b.example");
    f.registry.register_group("upstreams", upstreams).unwrap();
    f.registry
        .register_group(
            "legacy",
            Arc::new(Frozen(vec![("über api".into(), f.search.snapshot())])),
        )
        .unwrap();
    // Three calls: below minimum_calls, the failure rate is shown but does not trip.
    record(&f.payments, Outcome::Success);
    record(&f.payments, Outcome::Failure);
    record(&f.payments, Outcome::Success);
    f.search.trip();
    let http = client();

    let reply = get(&http, &f.url("breakers"), &[]).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let list = reply.json();
    let names: Vec<_> = list["breakers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        names,
        [
            "legacy/über api",
            "payments",
            "search",
            "upstreams/a.example",
            "upstreams/b.example"
        ]
    );
    let payments = view(&list["breakers"], "payments");
    assert_eq!(payments["state"], "closed");
    assert_eq!(payments["mode"], "automatic");
    assert_eq!(payments["window"]["calls"], 3);
    assert_eq!(payments["window"]["failures"], 1);
    let rate = payments["window"]["failure_rate"].as_f64().unwrap();
    assert!((rate - 100.0 / 3.0).abs() < 1e-9, "{rate}");
    assert_eq!(payments["config"]["failure_rate"], 50.0);
    assert_eq!(payments["config"]["slow_call_rate"], 80.0);
    assert_eq!(payments["config"]["slow_call_ms"], 2000);
    assert_eq!(payments["config"]["minimum_calls"], 4);
    assert_eq!(
        payments["config"]["policy"],
        json!({"kind": "count_window", "size": 20})
    );
    assert_eq!(
        payments["config"]["enforcement"], 100.0,
        "enforcing everything by default"
    );
    assert_eq!(
        payments["config"]["max_pushback_ms"], 300_000,
        "5 min by default"
    );
    assert_eq!(payments["totals"]["successes"], 2);
    assert_eq!(payments["totals"]["failures"], 1);
    assert_eq!(payments["totals"]["unenforced"], 0);
    let search = view(&list["breakers"], "search");
    assert_eq!(search["state"], "open");
    assert_eq!(search["critical"], true);
    assert_eq!(search["retry_after_ms"], 10_000);
    assert_eq!(search["open_attempts"], 1);
    assert_eq!(
        view(&list["breakers"], "upstreams/a.example")["state"],
        "open"
    );
    assert_eq!(
        view(&list["breakers"], "upstreams/a.example")["breaker_name"],
        "upstream a.example"
    );
    assert_eq!(
        view(&list["breakers"], "legacy/über api")["config"],
        json!(null)
    );

    // One by name; names are percent-encoded path segments, `/` separates group and key.
    let one = get(&http, &f.url("breakers/upstreams/b.example"), &[]).await;
    assert_eq!(one.status, StatusCode::OK);
    assert_eq!(one.json()["state"], "closed");
    let encoded = get(&http, &f.url("breakers/legacy/%C3%BCber%20api"), &[]).await;
    assert_eq!(encoded.status, StatusCode::OK, "{}", encoded.body);
    assert_eq!(
        encoded.json()["state"],
        "closed",
        "as its group reported it"
    );
    // The time in state is known once the hub has seen the breaker.
    let since = get(&http, &f.url("breakers/search"), &[]).await.json();
    assert!(since.get("since").is_some());

    for unknown in ["nope", "upstreams/c.example", "upstreams", "payments/x"] {
        let reply = get(&http, &f.url(&format!("breakers/{unknown}")), &[]).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{unknown}");
        assert_eq!(reply.json()["error"], "no breaker by this name");
        assert_eq!(reply.json()["breaker"], unknown);
    }
    let route = get(&http, &f.url("no/such/route"), &[]).await;
    assert_eq!(route.status, StatusCode::NOT_FOUND);
    assert!(
        route.json()["error"]
            .as_str()
            .unwrap()
            .contains("no such route")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_actions_steer_the_breaker_and_are_recorded() {
    let f = Fixture::start(|b| b.operator_token(operator())).await;
    let http = client();
    let token = [bearer(OPERATOR_SECRET)];
    let url = f.url("breakers/payments");
    let mut stream = common::Sse::connect(&http, &f.url("events"), &token).await;
    stream.next_of("hello", Duration::from_secs(10)).await;

    for (action, state) in [
        ("force_open", State::ForcedOpen),
        ("normal", State::Closed),
        ("trip", State::Open),
        ("normal", State::Open), // the rules' business: unchanged
        ("reset", State::Closed),
        ("disable", State::Disabled),
        ("metrics_only", State::MetricsOnly),
        ("reset", State::Closed),
    ] {
        let before = f.payments.state();
        let reply = act(
            &http,
            &url,
            &token,
            json!({"action": action, "reason": format!("drill: {action}"), "operator": "alice"}),
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK, "{action}: {}", reply.body);
        assert_eq!(f.payments.state(), state, "{action}");
        let answer = reply.json();
        assert_eq!(answer["from"], before.as_str());
        assert_eq!(answer["to"], state.as_str());
        assert_eq!(answer["breaker"]["state"], state.as_str());
        let event = stream.next_of("action", Duration::from_secs(10)).await;
        assert_eq!(event.id.as_deref(), answer["event_id"].as_str());
        assert_eq!(event.data["breaker"], "payments");
        assert_eq!(event.data["action"], action);
        assert_eq!(event.data["reason"], format!("drill: {action}"));
        assert_eq!(event.data["by"]["token"], "on-call");
        assert_eq!(event.data["by"]["operator"], "alice");
        assert!(
            event.data["by"]["address"]
                .as_str()
                .unwrap()
                .starts_with("127.0.0.1:")
        );
        assert_eq!(event.data["to"], state.as_str());
    }
    assert_eq!(f.admin.stats().actions, 8);

    // A member of a group that only reports snapshots is read-only: 409, nothing changes.
    f.registry
        .register_group(
            "legacy",
            Arc::new(Frozen(vec![("x".into(), f.search.snapshot())])),
        )
        .unwrap();
    let reply = act(
        &http,
        &f.url("breakers/legacy/x"),
        &token,
        json!({"action": "trip", "reason": "try"}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CONFLICT);
    assert!(
        reply.json()["error"]
            .as_str()
            .unwrap()
            .contains("read-only")
    );
    assert_eq!(f.search.state(), State::Closed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_operator_token_every_route_is_read_only() {
    let f = Fixture::start(|b| b.read_token(reader())).await;
    let http = client();
    for headers in [
        vec![],
        vec![bearer(READ_SECRET)],
        vec![bearer(OPERATOR_SECRET)],
    ] {
        let reply = act(
            &http,
            &f.url("breakers/payments"),
            &headers,
            json!({"action": "force_open", "reason": "x"}),
        )
        .await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN);
        assert!(
            reply.json()["error"]
                .as_str()
                .unwrap()
                .contains("read-only")
        );
    }
    assert_eq!(f.payments.state(), State::Closed);
    let who = get(&http, &f.url("whoami"), &[bearer(READ_SECRET)])
        .await
        .json();
    assert_eq!(who["operator_actions"], false);
    assert_eq!(who["role"], "reader");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_wrong_and_malformed_tokens_get_401_and_change_nothing() {
    let f = Fixture::start(|b| b.operator_token(operator()).read_token(reader())).await;
    let http = client();
    let url = f.url("breakers/payments");
    let body = json!({"action": "force_open", "reason": "attack"});
    let cases: Vec<(&str, Headers, &str)> = vec![
        ("no token", vec![], "Bearer realm=\"breaker-admin\""),
        (
            "wrong token",
            vec![bearer("op-0123456789abcdef0123456789abcdeX")],
            "error=\"invalid_token\"",
        ),
        (
            "a prefix of the token",
            vec![bearer(&OPERATOR_SECRET[..20])],
            "error=\"invalid_token\"",
        ),
        (
            "the token with more after it",
            vec![bearer(&format!("{OPERATOR_SECRET}0"))],
            "error=\"invalid_token\"",
        ),
        (
            "another scheme",
            vec![("authorization".into(), format!("Basic {OPERATOR_SECRET}"))],
            "error=\"invalid_request\"",
        ),
        (
            "the bare token",
            vec![("authorization".into(), OPERATOR_SECRET.into())],
            "error=\"invalid_request\"",
        ),
        (
            "two headers",
            vec![bearer(OPERATOR_SECRET), bearer("x")],
            "error=\"invalid_request\"",
        ),
        (
            "a huge token",
            vec![bearer(&"a".repeat(10_000))],
            "error=\"invalid_token\"",
        ),
    ];
    for (what, headers, challenge) in &cases {
        let reply = act(&http, &url, headers, body.clone()).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{what}");
        let www = reply.header("www-authenticate").unwrap_or_default();
        assert!(
            www.starts_with("Bearer realm=\"breaker-admin\""),
            "{what}: {www}"
        );
        assert!(www.contains(challenge), "{what}: {www}");
        // Reads refuse the same tokens.
        let reply = get(&http, &f.url("breakers"), headers).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{what}");
        assert!(reply.header("www-authenticate").is_some(), "{what}");
    }
    // A token in the URL is never looked at.
    for query in ["token", "access_token", "authorization"] {
        let reply = act(
            &http,
            &format!("{url}?{query}={OPERATOR_SECRET}"),
            &[],
            body.clone(),
        )
        .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "?{query}=");
        let reply = get(
            &http,
            &format!("{}?{query}={OPERATOR_SECRET}", f.url("events")),
            &[],
        )
        .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "events?{query}=");
    }
    // A read token cannot act (RFC 6750: 403 insufficient_scope).
    let reply = act(&http, &url, &[bearer(READ_SECRET)], body.clone()).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert!(
        reply
            .header("www-authenticate")
            .unwrap()
            .contains("error=\"insufficient_scope\"")
    );
    assert_eq!(f.payments.state(), State::Closed);
    assert_eq!(f.payments.snapshot().generation, 0);
    assert_eq!(f.admin.stats().actions, 0);
    // The right token works.
    let reply = act(&http, &url, &[bearer(OPERATOR_SECRET)], body).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(f.payments.state(), State::ForcedOpen);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_token_guards_every_read_but_the_page() {
    let f = Fixture::start(|b| b.operator_token(operator()).read_token(reader())).await;
    let http = client();
    for route in ["breakers", "breakers/payments", "whoami", "events"] {
        let reply = get(&http, &f.url(route), &[]).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{route}");
        assert_eq!(
            reply.header("www-authenticate"),
            Some("Bearer realm=\"breaker-admin\""),
            "{route}"
        );
    }
    for secret in [READ_SECRET, OPERATOR_SECRET] {
        let reply = get(&http, &f.url("breakers/payments"), &[bearer(secret)]).await;
        assert_eq!(reply.status, StatusCode::OK);
    }
    let roles = [
        (READ_SECRET, "reader", "grafana"),
        (OPERATOR_SECRET, "operator", "on-call"),
    ];
    for (secret, role, label) in roles {
        let who = get(&http, &f.url("whoami"), &[bearer(secret)]).await.json();
        assert_eq!(
            (who["role"].as_str(), who["token"].as_str()),
            (Some(role), Some(label))
        );
        assert_eq!(who["read_token_required"], true);
    }
    // The page and its assets hold no data: served to anyone.
    for asset in ["dashboard", "dashboard.js", "dashboard.css"] {
        let reply = get(&http, &f.url(asset), &[]).await;
        assert_eq!(reply.status, StatusCode::OK, "{asset}");
    }
    // Without a read token, reads are open and the caller is anonymous.
    let open = Fixture::start(|b| b.operator_token(operator())).await;
    let who = get(&http, &open.url("whoami"), &[]).await.json();
    assert_eq!(who["role"], "anonymous");
    assert_eq!(who["operator_actions"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bodies_are_refused_and_change_nothing() {
    let f = Fixture::start(|b| b.operator_token(operator())).await;
    let http = client();
    let url = f.url("breakers/payments");
    let token = bearer(OPERATOR_SECRET);
    let json = ("content-type".to_string(), "application/json".to_string());
    let post = |headers: Vec<(String, String)>, body: Vec<u8>| {
        let http = http.clone();
        let url = url.clone();
        async move { send(&http, Method::POST, &url, &headers, body).await }
    };
    let valid = br#"{"action":"force_open","reason":"x"}"#.to_vec();

    let big = format!(
        r#"{{"action":"force_open","reason":"{}"}}"#,
        "x".repeat(5000)
    );
    let reply = post(vec![token.clone(), json.clone()], big.into_bytes()).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);

    let reply = post(vec![token.clone()], valid.clone()).await;
    assert_eq!(reply.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "no type");
    let reply = post(
        vec![token.clone(), ("content-type".into(), "text/plain".into())],
        valid.clone(),
    )
    .await;
    assert_eq!(
        reply.status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "text/plain"
    );
    let reply = post(
        vec![
            token.clone(),
            (
                "content-type".into(),
                "application/x-www-form-urlencoded".into(),
            ),
        ],
        b"action=force_open&reason=x".to_vec(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "a form");

    for (body, expect) in [
        (&b"{not json"[..], "not JSON"),
        (b"[]", "JSON object"),
        (b"{}", "`action` is missing"),
        (br#"{"action":7,"reason":"x"}"#, "`action` must be a string"),
        (br#"{"action":"explode","reason":"x"}"#, "unknown action"),
        (br#"{"action":"trip"}"#, "`reason` is missing"),
        (br#"{"action":"trip","reason":""}"#, "1 to 500"),
        (br#"{"action":"trip","reason":"   "}"#, "1 to 500"),
        (br#"{"action":"trip","reason":42}"#, "must be a string"),
        (
            br#"{"action":"trip","reason":"a\nb"}"#,
            "control characters",
        ),
        (
            br#"{"action":"trip","reason":"x","operator":"eve\u001b[2J"}"#,
            "control characters",
        ),
        (
            br#"{"action":"trip","reason":"x","sudo":true}"#,
            "unknown field",
        ),
    ] {
        let reply = post(vec![token.clone(), json.clone()], body.to_vec()).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{}",
            String::from_utf8_lossy(body)
        );
        let error = reply.json()["error"].as_str().unwrap().to_string();
        assert!(error.contains(expect), "{error}");
    }
    let unknown = post(
        vec![token.clone(), json.clone()],
        br#"{"action":"explode","reason":"x"}"#.to_vec(),
    )
    .await;
    assert_eq!(
        unknown.json()["allowed"],
        json!([
            "trip",
            "reset",
            "force_open",
            "disable",
            "metrics_only",
            "normal"
        ])
    );
    let missing = send(
        &http,
        Method::POST,
        &f.url("breakers/nope"),
        &[token.clone(), json.clone()],
        valid.clone(),
    )
    .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.json()["breaker"], "nope");
    for method in [Method::PUT, Method::DELETE, Method::PATCH] {
        let reply = send(
            &http,
            method.clone(),
            &url,
            std::slice::from_ref(&token),
            valid.clone(),
        )
        .await;
        assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
    }
    assert_eq!(f.payments.state(), State::Closed);
    assert_eq!(f.payments.snapshot().generation, 0);
    assert_eq!(f.admin.stats().actions, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_cors_headers_unless_an_origin_is_allowed() {
    let http = client();
    let preflight = |url: String, origin: &'static str| {
        let http = http.clone();
        async move {
            send(
                &http,
                Method::OPTIONS,
                &url,
                &[
                    ("origin".into(), origin.into()),
                    ("access-control-request-method".into(), "POST".into()),
                    (
                        "access-control-request-headers".into(),
                        "authorization,content-type".into(),
                    ),
                ],
                Vec::new(),
            )
            .await
        }
    };
    let f = Fixture::start(|b| b.operator_token(operator())).await;
    let reply = preflight(f.url("breakers/payments"), "https://evil.example").await;
    assert!(
        reply
            .headers
            .keys()
            .all(|k| !k.as_str().starts_with("access-control-")),
        "{:?}",
        reply.headers
    );
    let reply = get(
        &http,
        &f.url("breakers"),
        &[("origin".into(), "https://evil.example".into())],
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(
        reply
            .headers
            .keys()
            .all(|k| !k.as_str().starts_with("access-control-"))
    );

    let allowed = Fixture::start(|b| {
        b.operator_token(operator())
            .allow_origin("https://ops.example.com")
    })
    .await;
    let reply = preflight(allowed.url("breakers/payments"), "https://ops.example.com").await;
    assert_eq!(
        reply.header("access-control-allow-origin"),
        Some("https://ops.example.com")
    );
    let headers = reply.header("access-control-allow-headers").unwrap();
    assert!(headers.contains("authorization"), "{headers}");
    let reply = preflight(allowed.url("breakers/payments"), "https://evil.example").await;
    assert_eq!(reply.header("access-control-allow-origin"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_carries_the_security_headers() {
    let f = Fixture::start(|b| b.operator_token(operator())).await;
    let http = client();
    for route in [
        "breakers",
        "breakers/nope",
        "whoami",
        "dashboard",
        "nowhere",
    ] {
        let reply = get(&http, &f.url(route), &[]).await;
        assert_eq!(
            reply.header("x-content-type-options"),
            Some("nosniff"),
            "{route}"
        );
        assert_eq!(
            reply.header("referrer-policy"),
            Some("no-referrer"),
            "{route}"
        );
        assert!(reply.header("cache-control").is_some(), "{route}");
    }
    let page = get(&http, &f.url("dashboard"), &[]).await;
    let csp = page.header("content-security-policy").unwrap();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
    assert!(!csp.contains("unsafe-inline"));
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    assert!(page.body.contains("<script src=\"dashboard.js\""));
    assert!(
        !page.body.contains("http://") && !page.body.contains("https://"),
        "self-contained"
    );
    for asset in ["dashboard.js", "dashboard.css"] {
        let body = get(&http, &f.url(asset), &[]).await.body;
        assert!(
            !body.contains("https://") && !body.contains("//cdn"),
            "{asset} fetches nothing"
        );
    }
}

/// Thousands of hostile requests at once, from many connections: each gets a 4xx, the
/// server never errs, no breaker changes, no action is recorded, and the server still
/// serves a good request afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_bad_requests_changes_nothing() {
    let f = Fixture::start(|b| b.operator_token(operator()).read_token(reader())).await;
    record(&f.payments, Outcome::Failure);
    let before = (f.payments.snapshot(), f.search.snapshot());
    let http = client();
    let url = f.url("breakers/payments");
    let json = ("content-type".to_string(), "application/json".to_string());
    let bad: Vec<(Method, String, Headers, Vec<u8>)> = vec![
        (
            Method::POST,
            url.clone(),
            vec![json.clone()],
            br#"{"action":"trip","reason":"x"}"#.to_vec(),
        ),
        (
            Method::POST,
            url.clone(),
            vec![bearer("wrong-token-0123456789abcdef"), json.clone()],
            br#"{"action":"trip","reason":"x"}"#.to_vec(),
        ),
        (
            Method::POST,
            url.clone(),
            vec![bearer(READ_SECRET), json.clone()],
            br#"{"action":"reset","reason":"x"}"#.to_vec(),
        ),
        (
            Method::POST,
            url.clone(),
            vec![bearer(OPERATOR_SECRET), json.clone()],
            b"\xff\xfe\x00garbage".to_vec(),
        ),
        (
            Method::POST,
            url.clone(),
            vec![bearer(OPERATOR_SECRET), json.clone()],
            vec![b'{'; 8000],
        ),
        (
            Method::POST,
            url.clone(),
            vec![bearer(OPERATOR_SECRET), json.clone()],
            br#"{"action":"explode","reason":"x"}"#.to_vec(),
        ),
        (
            Method::POST,
            url.clone(),
            vec![bearer(OPERATOR_SECRET)],
            br#"{"action":"trip","reason":"x"}"#.to_vec(),
        ),
        (
            Method::POST,
            f.url("breakers/%FF%FE"),
            vec![bearer(OPERATOR_SECRET), json.clone()],
            br#"{"action":"trip","reason":"x"}"#.to_vec(),
        ),
        (
            Method::POST,
            f.url("breakers/nope"),
            vec![bearer(OPERATOR_SECRET), json.clone()],
            br#"{"action":"trip","reason":"x"}"#.to_vec(),
        ),
        (
            Method::DELETE,
            url.clone(),
            vec![bearer(OPERATOR_SECRET)],
            Vec::new(),
        ),
        (
            Method::GET,
            f.url("breakers"),
            vec![bearer(&"z".repeat(5000))],
            Vec::new(),
        ),
        (
            Method::GET,
            f.url("events"),
            vec![("last-event-id".into(), "x".repeat(500))],
            Vec::new(),
        ),
        (
            Method::GET,
            f.url(&format!("breakers/{}", "a/".repeat(500))),
            vec![bearer(READ_SECRET)],
            Vec::new(),
        ),
        (Method::GET, f.url("../../etc/passwd"), vec![], Vec::new()),
    ];
    let bad = Arc::new(bad);
    let mut workers = Vec::new();
    for worker in 0..32 {
        let (http, bad) = (http.clone(), bad.clone());
        workers.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            for i in 0..64 {
                let (method, url, headers, body) = &bad[(worker * 7 + i) % bad.len()];
                let reply = send(&http, method.clone(), url, headers, body.clone()).await;
                statuses.push((method.clone(), url.clone(), reply.status));
            }
            statuses
        }));
    }
    let mut total = 0;
    for worker in workers {
        for (method, url, status) in worker.await.unwrap() {
            total += 1;
            assert!(
                status.is_client_error(),
                "{method} {url}: {status} (expected a 4xx)"
            );
        }
    }
    assert_eq!(total, 32 * 64);
    assert_eq!((f.payments.snapshot(), f.search.snapshot()), before);
    assert_eq!(f.admin.stats().actions, 0);
    let reply = act(
        &http,
        &url,
        &[bearer(OPERATOR_SECRET)],
        json!({"action": "trip", "reason": "after the flood"}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(f.payments.state(), State::Open);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_mounted_anywhere_serves_the_same_api() {
    let registry = Arc::new(Registry::new());
    let admin = Admin::builder(registry.clone()).build().unwrap();
    let breaker = Arc::new(
        CircuitBreaker::builder_with_clock(ManualClock::new())
            .name("db")
            .build()
            .unwrap(),
    );
    registry.register("db", breaker).unwrap();
    let app = axum::Router::new()
        .nest("/ops/breakers-admin", admin.router())
        .route("/", axum::routing::get(|| async { "app" }));
    let addr = serve(app).await;
    let http = client();
    let reply = get(
        &http,
        &format!("http://{addr}/ops/breakers-admin/breakers/db"),
        &[],
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["state"], "closed");
    let page = get(
        &http,
        &format!("http://{addr}/ops/breakers-admin/dashboard"),
        &[],
    )
    .await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(
        get(&http, &format!("http://{addr}/"), &[]).await.body,
        "app"
    );
}
