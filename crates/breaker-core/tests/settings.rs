//! Breaker settings from a TOML file and from environment variables, validated like the
//! builder, and applied live to running breakers.
#![cfg(all(feature = "serde", not(loom)))]

mod common;

use std::time::Duration;

use breaker_core::settings::{RegistrySettings, Settings, SettingsError, parse_duration};
use breaker_core::{ManualClock, PolicyKind, State};
use common::{fail, succeed};

const FILE: &str = r#"
[defaults]
count_window = 10
minimum_calls = 10
failure_rate = 50.0
open_duration = "30s"
half_open_probes = 2

[breakers.payments]
failure_rate = 20.0
open_duration = "1m"
open_duration_multiplier = 2.0
open_duration_max = "10m"

[breakers.search]
consecutive_failures = 3
count_window = 5
"#;

#[test]
fn a_toml_file_builds_named_breakers_from_defaults_and_overrides() {
    let mut settings: RegistrySettings = toml::from_str(FILE).unwrap();
    // `search` names two policies: refused, naming the key and what is allowed.
    let err = settings
        .build_breakers(["orders"], |_, b| b.clock(ManualClock::new()))
        .unwrap_err();
    assert_eq!(err.field(), "policy");
    assert!(
        err.to_string().contains("one of consecutive_failures"),
        "{err}"
    );

    settings.breakers.get_mut("search").unwrap().count_window = None;
    let breakers = settings
        .build_breakers(["orders"], |_, b| b.clock(ManualClock::new()))
        .unwrap();
    assert_eq!(
        breakers.keys().collect::<Vec<_>>(),
        ["orders", "payments", "search"]
    );
    assert_eq!(breakers["orders"].name(), "orders");
    assert_eq!(
        breakers["search"].policy(),
        PolicyKind::ConsecutiveFailures { threshold: 3 }
    );
    // payments trips at 20 %: 2 failures in 10 calls.
    fail(&breakers["payments"], 2);
    succeed(&breakers["payments"], 8);
    assert_eq!(breakers["payments"].state(), State::Open);
    assert_eq!(
        breakers["payments"].retry_after(),
        Some(Duration::from_secs(60))
    );
    // orders keeps the default 50 %.
    fail(&breakers["orders"], 2);
    succeed(&breakers["orders"], 8);
    assert_eq!(breakers["orders"].state(), State::Closed);
}

#[test]
fn invalid_values_name_the_settings_key_the_value_and_the_range() {
    let cases = [
        ("count_window = 0", "count_window", "0", "1..=32_767"),
        (
            "count_window = 10\nfailure_rate = 150.0",
            "failure_rate",
            "150",
            "(0, 100]",
        ),
        (
            "count_window = 10\nslow_call_duration = \"1s\"\nslow_call_rate = 0.0",
            "slow_call_rate",
            "0",
            "(0, 100]",
        ),
        (
            "slow_call_rate = 50.0",
            "slow_call_rate",
            "50",
            "only with slow_call_duration",
        ),
        (
            "time_window = \"5ns\"\ntime_window_buckets = 10",
            "time_window",
            "5ns",
            "at least",
        ),
        (
            "open_duration = \"1s\"\nopen_duration_multiplier = 0.5",
            "open_duration_multiplier",
            "0.5",
            ">= 1",
        ),
        ("half_open_probes = 0", "half_open_probes", "0", "1..=2047"),
    ];
    for (toml_text, field, value, allowed) in cases {
        let settings: Settings = toml::from_str(toml_text).unwrap();
        let err = settings.to_config().unwrap_err();
        assert_eq!(err.field(), field, "{toml_text}");
        let message = err.to_string();
        assert!(message.contains(field), "{message}");
        assert!(message.contains(value), "{value} not in {message}");
        assert!(message.contains(allowed), "{allowed} not in {message}");
    }
    // A value of the wrong shape is refused by the loader, naming the key.
    let err = toml::from_str::<Settings>("open_duration = \"soon\"").unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("open_duration") && message.contains("\"soon\" is not a duration"),
        "{message}"
    );
    let err = toml::from_str::<Settings>("open_duraton = \"1s\"").unwrap_err();
    assert!(
        err.to_string().contains("unknown field `open_duraton`"),
        "{err}"
    );
}

#[test]
fn environment_variables_with_a_prefix() {
    let vars = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Vec<_>>()
    };
    let s = Settings::from_vars(
        "payments_breaker",
        vars(&[
            ("PAYMENTS_BREAKER_COUNT_WINDOW", "50"),
            ("PAYMENTS_BREAKER_FAILURE_RATE", "25.5"),
            ("PAYMENTS_BREAKER_OPEN_DURATION", "1.5s"),
            ("PAYMENTS_BREAKER_SLOW_CALL_DURATION", "250ms"),
            ("OTHER_COUNT_WINDOW", "7"),
            ("PATH", "/usr/bin"),
        ]),
    )
    .unwrap();
    assert_eq!(s.count_window, Some(50));
    assert_eq!(s.failure_rate, Some(25.5));
    assert_eq!(s.open_duration, Some(Duration::from_millis(1500)));
    assert_eq!(s.slow_call_duration, Some(Duration::from_millis(250)));
    assert!(s.to_config().is_ok());

    let err = Settings::from_vars("P", vars(&[("P_COUNT_WINDOW", "lots")])).unwrap_err();
    assert_eq!(
        err,
        SettingsError::Unparsable {
            variable: "P_COUNT_WINDOW".into(),
            value: "lots".into(),
            expected: "a whole number"
        }
    );
    assert_eq!(
        err.to_string(),
        "P_COUNT_WINDOW=\"lots\" is not valid: expected a whole number"
    );
    let err = Settings::from_vars("P", vars(&[("P_COUNT_WINDOWS", "5")])).unwrap_err();
    assert!(
        err.to_string()
            .contains("P_COUNT_WINDOWS names no breaker setting")
    );
    // Out-of-range values from the environment get the builder's checks.
    let s = Settings::from_vars("P", vars(&[("P_COUNT_WINDOW", "0")])).unwrap();
    assert_eq!(s.to_config().unwrap_err().field(), "count_window");
    // Per-key breakers leave out the per-thread counters; more than 15 is refused.
    let s = Settings::from_vars("P", vars(&[("P_THREAD_COUNTERS", "0")])).unwrap();
    assert_eq!(s.build().unwrap().memory().thread_counters, 0);
    let s = Settings::from_vars("P", vars(&[("P_THREAD_COUNTERS", "16")])).unwrap();
    let err = s.to_config().unwrap_err();
    assert_eq!(err.field(), "thread_counters");
    assert!(err.to_string().contains("0..=15"), "{err}");
    // The real environment: nothing set under this prefix.
    assert_eq!(
        Settings::from_env("BREAKER_TEST_UNSET_PREFIX").unwrap(),
        Settings::default()
    );
}

#[test]
fn durations_are_written_with_units() {
    for (text, expected) in [
        ("250ms", Duration::from_millis(250)),
        ("30s", Duration::from_secs(30)),
        ("1.5s", Duration::from_millis(1500)),
        ("5m", Duration::from_secs(300)),
        ("1h", Duration::from_secs(3600)),
        ("100us", Duration::from_micros(100)),
        ("10ns", Duration::from_nanos(10)),
        ("2", Duration::from_secs(2)),
    ] {
        assert_eq!(parse_duration(text), Some(expected), "{text}");
    }
    for bad in ["", "s", "5 parsecs", "-1s", "1e400s"] {
        assert_eq!(parse_duration(bad), None, "{bad}");
    }
}

/// The open periods a breaker built from `settings` goes through, tripped `n` times.
fn open_periods(settings: &Settings, n: usize) -> Vec<Duration> {
    let clock = ManualClock::new();
    let breaker = settings
        .apply(breaker_core::CircuitBreaker::builder_with_clock(
            clock.clone(),
        ))
        .unwrap()
        .build()
        .unwrap();
    let mut periods = Vec::new();
    for _ in 0..n {
        fail(&breaker, 1);
        let period = breaker.retry_after().unwrap();
        periods.push(period);
        clock.advance(period + Duration::from_millis(1));
        succeed(&breaker, 1);
        assert_eq!(breaker.state(), State::Closed);
    }
    periods
}

#[test]
fn jitter_spreads_open_periods_and_a_seed_repeats_them() {
    let seeded: Settings = toml::from_str(
        "consecutive_failures = 1\nopen_duration = \"10s\"\njitter = 0.5\njitter_seed = 7",
    )
    .unwrap();
    let periods = open_periods(&seeded, 50);
    assert!(
        periods
            .iter()
            .all(|p| (Duration::from_secs(5)..=Duration::from_secs(15)).contains(p)),
        "{periods:?}"
    );
    let shorter = periods
        .iter()
        .filter(|p| **p < Duration::from_secs(10))
        .count();
    assert!(
        (10..=40).contains(&shorter),
        "spread both ways: {periods:?}"
    );
    assert_eq!(
        open_periods(&seeded, 50),
        periods,
        "the same seed, the same periods"
    );

    // Without a seed, every breaker draws its own: two replicas that opened together do not
    // probe together.
    let unseeded: Settings =
        toml::from_str("consecutive_failures = 1\nopen_duration = \"10s\"\njitter = 0.5").unwrap();
    assert_ne!(open_periods(&unseeded, 10), open_periods(&unseeded, 10));

    // From the environment, and checked like the builder.
    let vars = [
        ("P_JITTER", "0.2"),
        ("P_JITTER_SEED", "42"),
        ("P_CONSECUTIVE_FAILURES", "1"),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()));
    let from_env = Settings::from_vars("P", vars).unwrap();
    assert_eq!(
        (from_env.jitter, from_env.jitter_seed),
        (Some(0.2), Some(42))
    );
    let too_much: Settings = toml::from_str("consecutive_failures = 1\njitter = 1.5").unwrap();
    let e = too_much.build().unwrap_err();
    assert_eq!(e.field(), "jitter", "{e}");
    // A seed alone (in [defaults], for breakers that turn jitter on) changes nothing.
    let seed_only: Settings = toml::from_str("consecutive_failures = 1\njitter_seed = 3").unwrap();
    assert_eq!(open_periods(&seed_only, 3), [Duration::from_secs(30); 3]);
}

#[test]
fn jitter_is_reloadable_and_a_refused_reload_changes_no_breaker() {
    const BEFORE: &str = r#"
[defaults]
consecutive_failures = 5
open_duration = "10s"

[breakers.plain]

[breakers.jittered]
jitter = 0.2
jitter_seed = 11
"#;
    let settings: RegistrySettings = toml::from_str(BEFORE).unwrap();
    let breakers = settings
        .build_breakers(["plain", "jittered"], |_, b| b)
        .unwrap();
    // The same settings again, and new thresholds: jitter does not block a reload.
    settings.reconfigure(&breakers).unwrap();
    let mut lower = settings.clone();
    lower.defaults.consecutive_failures = Some(2);
    lower.reconfigure(&breakers).unwrap();
    assert_eq!(
        breakers["jittered"].config_in_force().jitter,
        Some(0.2),
        "kept"
    );
    // Jitter turned on, changed and off at run time.
    let mut on = lower.clone();
    on.defaults.jitter = Some(0.5);
    on.reconfigure(&breakers).unwrap();
    assert_eq!(breakers["plain"].config_in_force().jitter, Some(0.5));
    let mut off = lower.clone();
    off.breakers.get_mut("jittered").unwrap().jitter = None;
    off.reconfigure(&breakers).unwrap();
    assert_eq!(breakers["jittered"].config_in_force().jitter, None);

    // One breaker refuses (its window cannot change at run time): none changes.
    let mut refused = lower.clone();
    refused.defaults.consecutive_failures = Some(9);
    refused.breakers.get_mut("plain").unwrap().count_window = Some(10);
    let err = refused.reconfigure(&breakers).unwrap_err();
    assert!(err.to_string().contains("plain"), "{err}");
    assert_eq!(
        breakers["jittered"].config_in_force().policy,
        PolicyKind::ConsecutiveFailures { threshold: 2 },
        "jittered (first in order) is unchanged: every breaker is checked before any changes"
    );
}

/// A running service reloads its settings (a file watcher, an admin endpoint...) through a
/// `watch` channel: the breakers take the new thresholds and keep their state and counts.
#[tokio::test(flavor = "current_thread")]
async fn live_reconfiguration_through_a_watch_channel_keeps_state_and_counts() {
    let settings: RegistrySettings = toml::from_str(
        r#"
        [defaults]
        count_window = 10
        minimum_calls = 10
        failure_rate = 50.0
        "#,
    )
    .unwrap();
    let breakers = settings
        .build_breakers(["inventory"], |_, b| b.clock(ManualClock::new()))
        .unwrap();
    let inventory = breakers["inventory"].clone();
    fail(&inventory, 4);
    succeed(&inventory, 4); // 8 calls: below the minimum of 10
    assert_eq!(inventory.state(), State::Closed);

    let (tx, mut rx) = tokio::sync::watch::channel(settings.clone());
    let mut lowered = settings.clone();
    lowered.defaults.minimum_calls = Some(8);
    tx.send(lowered).unwrap();
    rx.changed().await.unwrap();
    rx.borrow_and_update().reconfigure(&breakers).unwrap();

    let s = inventory.snapshot();
    assert_eq!((s.window.calls, s.window.failures), (8, 4), "counts kept");
    fail(&inventory, 1); // 5 of 9 >= 50 %, and 9 >= 8 calls
    assert_eq!(inventory.state(), State::Open);

    // An invalid reload changes nothing, and says which breaker and which key.
    let mut broken = settings.clone();
    broken.defaults.failure_rate = Some(0.0);
    tx.send(broken).unwrap();
    rx.changed().await.unwrap();
    let err = rx.borrow_and_update().reconfigure(&breakers).unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("\"inventory\"") && message.contains("failure_rate"),
        "{message}"
    );
    assert!(message.contains("no breaker was reconfigured"), "{message}");
}
