//! The `metrics_server` example driven as a user would: `curl` against its routes while its
//! database is told to fail and recover on standard input, and a real Prometheus (Debian's
//! `prometheus`) scraping it, with the shipped alert rules loaded and the shipped Grafana
//! dashboard's queries run against what it scraped. Waits are bounded (the breaker's open
//! period and Prometheus' scrapes are the subject); every process is stopped at the end.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Guard, Running, curl, free_port, output, require};
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(60);

fn start(args: &[&str]) -> (Running, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_metrics_server"));
    command.args(["--listen", "127.0.0.1:0"]).args(args);
    let mut server = Running::start(command);
    let line = server.wait_for("serving on http://", LIMIT);
    let base = line
        .strip_prefix("serving on ")
        .and_then(|rest| rest.split(": ").next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();
    (server, base)
}

/// Asks `url` until it answers `status`, within `limit`: the breaker's open period runs on
/// the example's own clock.
fn until_status(url: &str, status: u16, limit: Duration) {
    let start = Instant::now();
    loop {
        let (got, body) = curl(url);
        if got == status {
            return;
        }
        assert!(
            start.elapsed() < limit,
            "{url} still answers {got} ({body}), not {status}, after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn curl_sees_the_breaker_trip_refuse_and_recover_when_the_database_is_told_to_fail() {
    let (mut server, base) = start(&["--rate", "0", "--outages", "off"]);
    let orders = format!("{base}/orders");
    for _ in 0..5 {
        assert_eq!(curl(&orders).0, 200);
    }
    server.send("down");
    server.wait_for("database down (command)", LIMIT);
    let statuses: Vec<u16> = (0..7).map(|_| curl(&orders).0).collect();
    assert_eq!(statuses, [500, 500, 500, 503, 503, 503, 503]);
    let (status, text) = curl(&format!("{base}/metrics"));
    assert_eq!(status, 200);
    for series in [
        "# TYPE circuit_breaker_calls_total counter",
        "# HELP circuit_breaker_rejections_total",
        "circuit_breaker_calls_total{breaker=\"orders-db\",outcome=\"success\"} 5",
        "circuit_breaker_calls_total{breaker=\"orders-db\",outcome=\"failure\"} 3",
        "circuit_breaker_rejections_total{breaker=\"orders-db\",reason=\"open\"} 4",
        "circuit_breaker_transitions_total{breaker=\"orders-db\",from=\"closed\",to=\"open\"} 1",
        "circuit_breaker_state{breaker=\"orders-db\",state=\"open\"} 1",
        "circuit_breaker_state{breaker=\"orders-db\",state=\"closed\"} 0",
        "circuit_breaker_call_duration_seconds_count{breaker=\"orders-db\"} 8",
    ] {
        assert!(text.contains(series), "{series:?} missing in:\n{text}");
    }
    server.wait_for("breaker orders-db: closed -> open", LIMIT);

    // The database recovers: refused until the open period ends, then the probe closes it.
    server.send("up");
    server.wait_for("database up (command)", LIMIT);
    until_status(&orders, 200, LIMIT);
    server.wait_for("breaker orders-db: open -> half_open", LIMIT);
    server.wait_for("breaker orders-db: half_open -> closed", LIMIT);
    let (_, text) = curl(&format!("{base}/metrics"));
    for series in [
        "circuit_breaker_transitions_total{breaker=\"orders-db\",from=\"half_open\",to=\"closed\"} 1",
        "circuit_breaker_state{breaker=\"orders-db\",state=\"closed\"} 1",
    ] {
        assert!(text.contains(series), "{series:?} missing in:\n{text}");
    }
    let (status, health) = curl(&format!("{base}/health"));
    assert_eq!(status, 200, "{health}");
    server.send("quit");
    assert!(server.finish(LIMIT).success());
}

#[test]
fn an_address_in_use_is_a_startup_error_that_says_what_to_do() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = output(
        env!("CARGO_BIN_EXE_metrics_server"),
        &["--listen", &addr, "--rate", "0"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.starts_with(&format!("error: cannot listen on {addr}: another program")),
        "{stderr}"
    );
    assert!(stderr.contains("--listen 127.0.0.1:0"), "{stderr}");
}

/// A Prometheus server of the test's own, on its own port, with its own storage.
struct Prometheus {
    process: Option<Guard>,
    dir: PathBuf,
    base: String,
}

impl Prometheus {
    fn start(target: &str, rules: &Path) -> Prometheus {
        let binary = require(
            "prometheus",
            "Debian's prometheus (apt-get install prometheus)",
        );
        let dir = std::env::temp_dir().join(format!("breaker-prometheus-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 2s\n  scrape_timeout: 2s\n  evaluation_interval: 1s\n\
                 rule_files:\n  - {}\n\
                 scrape_configs:\n  - job_name: breaker-example\n    static_configs:\n      \
                 - targets: ['{target}']\n",
                rules.display()
            ),
        )
        .unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        let prometheus = Prometheus {
            process: Some(Guard(child)),
            dir,
            base: format!("http://127.0.0.1:{port}"),
        };
        let start = Instant::now();
        while curl_status(&format!("{}/-/ready", prometheus.base)) != Some(200) {
            assert!(
                start.elapsed() < LIMIT,
                "prometheus not ready within {LIMIT:?}; its log:\n{}",
                prometheus.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        prometheus
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    fn api(&self, path: &str, query: Option<&str>) -> Value {
        let url = format!("{}/api/v1/{path}", self.base);
        let mut args = vec!["-s", "--max-time", "10", "-G", url.as_str()];
        let encoded;
        if let Some(query) = query {
            encoded = format!("query={query}");
            args.extend(["--data-urlencode", encoded.as_str()]);
        }
        let out = output("curl", &args);
        let value: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("prometheus answered {out:?} to {path} {query:?}: {e}"));
        assert_eq!(value["status"], "success", "{path} {query:?}: {value}");
        value["data"].clone()
    }

    /// The instant vector `expr` evaluates to: each series' labels and value.
    fn query(&self, expr: &str) -> Vec<(HashMap<String, String>, f64)> {
        let data = self.api("query", Some(expr));
        data["result"]
            .as_array()
            .unwrap_or_else(|| panic!("not a vector for {expr}: {data}"))
            .iter()
            .map(|series| {
                let labels = serde_json::from_value(series["metric"].clone()).unwrap();
                let value = series["value"][1].as_str().unwrap().parse().unwrap();
                (labels, value)
            })
            .collect()
    }

    /// Evaluates `expr` until `test` holds for its result, within the limit.
    fn until(
        &self,
        what: &str,
        expr: &str,
        test: impl Fn(&[(HashMap<String, String>, f64)]) -> bool,
    ) {
        let start = Instant::now();
        loop {
            let result = self.query(expr);
            if test(&result) {
                return;
            }
            assert!(
                start.elapsed() < LIMIT,
                "{what}: {expr} is still {result:?} after {LIMIT:?}; the scrape target: {}",
                self.target_health()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// The scrape target's health and last error, for failure messages.
    fn target_health(&self) -> String {
        let data = self.api("targets", None);
        data["activeTargets"]
            .as_array()
            .map(|targets| {
                targets
                    .iter()
                    .map(|t| format!("{} {} {}", t["scrapeUrl"], t["health"], t["lastError"]))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_else(|| data.to_string())
    }

    /// The state of the alert `name` for the breaker `breaker` (`pending`, `firing`), if any.
    fn alert(&self, name: &str, breaker: &str) -> Option<String> {
        let data = self.api("alerts", None);
        data["alerts"]
            .as_array()
            .expect("alerts")
            .iter()
            .find(|a| a["labels"]["alertname"] == name && a["labels"]["breaker"] == breaker)
            .map(|a| a["state"].as_str().unwrap_or_default().to_string())
    }

    fn until_alert(&self, name: &str, breaker: &str, state: Option<&str>) {
        let start = Instant::now();
        loop {
            let got = self.alert(name, breaker);
            if got.as_deref() == state {
                return;
            }
            assert!(
                start.elapsed() < LIMIT,
                "alert {name} for {breaker} is {got:?}, not {state:?}, after {LIMIT:?}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        drop(self.process.take());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn curl_status(url: &str) -> Option<u16> {
    let out = output(
        "curl",
        &[
            "-s",
            "-o",
            "/dev/null",
            "--max-time",
            "5",
            "-w",
            "%{http_code}",
            url,
        ],
    );
    String::from_utf8_lossy(&out.stdout).parse().ok()
}

/// The shipped dashboard's query of the panel `title` (its `n`-th target), with the
/// dashboard's variables as Grafana would fill them for the breaker `breaker`.
fn dashboard_query(dashboard: &Value, title: &str, n: usize, breaker: &str) -> String {
    let panel = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .find(|p| p["title"] == title)
        .unwrap_or_else(|| panic!("no panel {title:?} in the dashboard"));
    panel["targets"][n]["expr"]
        .as_str()
        .unwrap_or_else(|| panic!("no query {n} in panel {title:?}"))
        .replace("$__rate_interval", "1m")
        .replace("$breaker", breaker)
}

fn label<'a>(series: &'a (HashMap<String, String>, f64), name: &str) -> &'a str {
    series.0.get(name).map_or("", String::as_str)
}

#[test]
fn a_real_prometheus_scrapes_it_and_the_shipped_dashboard_and_alert_rules_see_the_outage() {
    require("curl", "Debian's curl (apt-get install curl)");
    let monitoring = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/monitoring");
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(monitoring.join("breaker-dashboard.json")).unwrap(),
    )
    .unwrap();
    let (mut server, base) = start(&["--rate", "20", "--outages", "off"]);
    let target = base.trim_start_matches("http://");
    let prometheus = Prometheus::start(target, &monitoring.join("breaker-alerts.yml"));

    prometheus.until(
        "the example is scraped",
        "up{job=\"breaker-example\"}",
        |r| r.iter().any(|s| s.1 == 1.0),
    );
    let state = dashboard_query(&dashboard, "State", 0, "orders-db");
    let in_state = |want: &'static str| {
        move |r: &[(HashMap<String, String>, f64)]| {
            r.len() == 1 && label(&r[0], "state") == want && label(&r[0], "breaker") == "orders-db"
        }
    };
    prometheus.until(
        "the dashboard's State panel shows closed",
        &state,
        in_state("closed"),
    );
    // The healthy path: successful calls per second on the dashboard.
    let calls = dashboard_query(&dashboard, "Calls by outcome", 0, "orders-db");
    prometheus.until("the dashboard shows successful calls", &calls, |r| {
        r.iter()
            .any(|s| label(s, "outcome") == "success" && s.1 > 0.0)
    });

    server.send("down");
    server.wait_for("database down (command)", LIMIT);
    prometheus.until(
        "the dashboard's State panel shows open",
        &state,
        in_state("open"),
    );
    // The rule from docs/monitoring, evaluated by Prometheus on the scraped series: pending
    // (it fires after 5 minutes open).
    prometheus.until_alert("CircuitBreakerOpenTooLong", "orders-db", Some("pending"));
    prometheus.until("the dashboard shows failed calls", &calls, |r| {
        r.iter()
            .any(|s| label(s, "outcome") == "failure" && s.1 > 0.0)
    });
    let rejections = dashboard_query(&dashboard, "Rejections by reason", 0, "orders-db");
    prometheus.until("the dashboard shows refused calls", &rejections, |r| {
        r.iter().any(|s| label(s, "reason") == "open" && s.1 > 0.0)
    });
    let transitions = dashboard_query(&dashboard, "Transitions", 0, "orders-db");
    prometheus.until("the dashboard shows the trip", &transitions, |r| {
        r.iter()
            .any(|s| label(s, "from") == "closed" && label(s, "to") == "open" && s.1 > 0.0)
    });

    // The database recovers: the breaker closes after its open period, the alert clears.
    server.send("up");
    server.wait_for("breaker orders-db: half_open -> closed", LIMIT);
    prometheus.until(
        "the dashboard's State panel shows closed again",
        &state,
        in_state("closed"),
    );
    prometheus.until_alert("CircuitBreakerOpenTooLong", "orders-db", None);
    assert!(
        prometheus.log().lines().all(|l| !l.contains("level=error")),
        "prometheus logged errors:\n{}",
        prometheus.log()
    );
}
