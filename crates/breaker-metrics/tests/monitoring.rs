//! The shipped Prometheus alert rules and Grafana dashboard use exactly the metric names this
//! crate emits. (`cargo xtask test` also runs `promtool check rules` and `promtool test
//! rules` on the alert rules.)

use breaker_metrics::names;

const ALERTS: &str = include_str!("../../../docs/monitoring/breaker-alerts.yml");
const DASHBOARD: &str = include_str!("../../../docs/monitoring/breaker-dashboard.json");

/// Every `circuit_breaker_*` metric a text refers to, histogram series suffixes removed.
fn referenced(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("circuit_breaker_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let name = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .unwrap_or(name);
        found.push(name.to_string());
        rest = &tail[end..];
    }
    found.sort();
    found.dedup();
    found
}

#[test]
fn the_alert_rules_use_only_emitted_metrics() {
    let used = referenced(ALERTS);
    assert!(!used.is_empty());
    for name in &used {
        assert!(
            names::ALL.contains(&name.as_str()),
            "alerts use unknown {name}"
        );
    }
}

#[test]
fn the_dashboard_uses_only_emitted_metrics_and_shows_them_all() {
    let dashboard: serde_json::Value = serde_json::from_str(DASHBOARD).expect("valid JSON");
    let exprs: Vec<&str> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().expect("targets").iter())
        .map(|t| t["expr"].as_str().expect("an expr per target"))
        .collect();
    let used = referenced(&exprs.join("\n"));
    for name in &used {
        assert!(
            names::ALL.contains(&name.as_str()),
            "dashboard uses unknown {name}"
        );
    }
    for name in names::ALL {
        assert!(
            used.iter().any(|u| u == name),
            "dashboard never shows {name}"
        );
    }
}

#[test]
fn the_reference_scanner_finds_names() {
    assert_eq!(
        referenced("rate(circuit_breaker_x_bucket[5m]) + circuit_breaker_y{a=\"b\"}"),
        ["circuit_breaker_x", "circuit_breaker_y"]
    );
}
