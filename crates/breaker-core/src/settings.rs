//! Breaker settings from configuration files and environment variables (feature `serde`).
//!
//! [`Settings`] is the builder's choices as plain data: deserialize it with your own loader
//! (TOML, YAML, JSON, ...), or read it from environment variables with
//! [`Settings::from_env`]. Every value goes through the same validation as the
//! [`Builder`]: an invalid one is a [`ConfigError`] that names the settings key, the value
//! and the allowed range. [`RegistrySettings`] holds defaults and per-breaker overrides for a
//! whole service, builds its breakers and reconfigures them live when the file changes.
//!
//! ```
//! use breaker_core::settings::RegistrySettings;
//!
//! let file = r#"{
//!     "defaults": { "count_window": 100, "minimum_calls": 20, "failure_rate": 50.0,
//!                   "open_duration": "30s" },
//!     "breakers": { "payments": { "failure_rate": 25.0, "open_duration": "1m" } }
//! }"#;
//! let settings: RegistrySettings = serde_json::from_str(file).unwrap();
//! let breakers = settings.build_breakers(["payments", "search"], |_name, builder| builder)?;
//! assert_eq!(breakers["payments"].name(), "payments");
//! # Ok::<(), breaker_core::ConfigError>(())
//! ```

use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use core::fmt;
use core::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::breaker::CircuitBreaker;
use crate::clock::{Clock, MonotonicClock};
use crate::config::{Builder, Config};
use crate::error::{ConfigError, ConfigValue, ReconfigureError};
use crate::observer::{NoopObserver, Observer};

/// A breaker's settings as data. Every field is optional: unset fields keep the builder's
/// defaults (or, in a [`RegistrySettings`], the file's defaults).
///
/// Keys (the same in files and, upper-cased after the prefix, in environment variables):
/// one policy, `consecutive_failures`, `count_window`, `time_window` (+
/// `time_window_buckets`, default 10) or `cumulative_window = true`; `minimum_calls`,
/// `failure_rate`, `slow_call_duration`, `slow_call_rate`, `half_open_probes`,
/// `max_half_open`, `open_duration` (+ `open_duration_multiplier` and `open_duration_max` for
/// exponential backoff), `jitter` (a share of each open period, drawn afresh each time:
/// replicas that opened together do not probe together; a reload can change it;
/// `jitter_seed` makes the draws repeatable, for replays and tests, and is unused without
/// `jitter`), `max_pushback`, `enforcement` (percent) and `enforcement_seed`.
/// Durations are strings with a unit (`"250ms"`, `"30s"`, `"5m"`,
/// `"1h"`; also `us`, `ns`, `d`) or a number of seconds.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Trip on this many failures in a row.
    pub consecutive_failures: Option<u32>,
    /// Rate rules over the last this many calls.
    pub count_window: Option<u32>,
    /// Rate rules over the calls of the last this long.
    #[serde(deserialize_with = "optional_duration")]
    pub time_window: Option<Duration>,
    /// Buckets of the time window (default 10).
    pub time_window_buckets: Option<u32>,
    /// Rate rules over every call since the breaker closed.
    pub cumulative_window: Option<bool>,
    /// Calls before the rates are evaluated.
    pub minimum_calls: Option<u32>,
    /// Failure rate that trips, in percent.
    pub failure_rate: Option<f64>,
    /// A call slower than this is slow.
    #[serde(deserialize_with = "optional_duration")]
    pub slow_call_duration: Option<Duration>,
    /// Slow-call rate that trips, in percent (needs `slow_call_duration`).
    pub slow_call_rate: Option<f64>,
    /// Probes per half-open period.
    pub half_open_probes: Option<u32>,
    /// Longest half-open period.
    #[serde(deserialize_with = "optional_duration")]
    pub max_half_open: Option<Duration>,
    /// How long to stay open (the first time, with exponential backoff).
    #[serde(deserialize_with = "optional_duration")]
    pub open_duration: Option<Duration>,
    /// Growth of the open duration per re-open (exponential backoff).
    pub open_duration_multiplier: Option<f64>,
    /// Cap of the open duration (exponential backoff).
    #[serde(deserialize_with = "optional_duration")]
    pub open_duration_max: Option<Duration>,
    /// Spread each open period by up to `± jitter` of itself, `0 < jitter < 1`
    /// ([`Builder::jitter`], with a random source of its own per breaker).
    pub jitter: Option<f64>,
    /// Draw the jitter from a generator seeded with this instead: the same seed, the same
    /// open periods (replays, tests; never the same seed on every replica of a fleet).
    pub jitter_seed: Option<u64>,
    /// Threads that count on a cache line of their own (`0` for many per-key breakers;
    /// see [`Builder::thread_counters`]).
    pub thread_counters: Option<u32>,
    /// The longest open period a dependency's pushback can ask for
    /// ([`Builder::max_pushback`]).
    #[serde(deserialize_with = "optional_duration")]
    pub max_pushback: Option<Duration>,
    /// The share of its refusals the breaker enforces, in percent
    /// ([`Builder::enforcement`]): the rollout ramp.
    pub enforcement: Option<f64>,
    /// The seed of the choice of which refusals are enforced
    /// ([`Builder::enforcement_seed`]).
    pub enforcement_seed: Option<u64>,
}

impl Settings {
    /// These settings, with the unset fields taken from `defaults`. A policy set here
    /// replaces the defaults' policy (`consecutive_failures = 3` over a default
    /// `count_window`), and a breaker without a window does not take the defaults'
    /// window-only settings (`minimum_calls`, `failure_rate`, `slow_call_rate`).
    pub fn or(&self, defaults: &Settings) -> Settings {
        let mut base = defaults.clone();
        if self.names_policy() {
            base.consecutive_failures = None;
            base.count_window = None;
            base.time_window = None;
            base.time_window_buckets = None;
            base.cumulative_window = None;
        }
        let mut merged = Settings {
            consecutive_failures: self.consecutive_failures.or(base.consecutive_failures),
            count_window: self.count_window.or(base.count_window),
            time_window: self.time_window.or(base.time_window),
            time_window_buckets: self.time_window_buckets.or(base.time_window_buckets),
            cumulative_window: self.cumulative_window.or(base.cumulative_window),
            minimum_calls: self.minimum_calls.or(base.minimum_calls),
            failure_rate: self.failure_rate.or(base.failure_rate),
            slow_call_duration: self.slow_call_duration.or(base.slow_call_duration),
            slow_call_rate: self.slow_call_rate.or(base.slow_call_rate),
            half_open_probes: self.half_open_probes.or(base.half_open_probes),
            max_half_open: self.max_half_open.or(base.max_half_open),
            open_duration: self.open_duration.or(base.open_duration),
            open_duration_multiplier: self
                .open_duration_multiplier
                .or(base.open_duration_multiplier),
            open_duration_max: self.open_duration_max.or(base.open_duration_max),
            jitter: self.jitter.or(base.jitter),
            jitter_seed: self.jitter_seed.or(base.jitter_seed),
            thread_counters: self.thread_counters.or(base.thread_counters),
            max_pushback: self.max_pushback.or(base.max_pushback),
            enforcement: self.enforcement.or(base.enforcement),
            enforcement_seed: self.enforcement_seed.or(base.enforcement_seed),
        };
        if !merged.names_window() {
            merged.minimum_calls = self.minimum_calls;
            merged.failure_rate = self.failure_rate;
            merged.slow_call_rate = self.slow_call_rate;
        }
        merged
    }

    fn names_window(&self) -> bool {
        self.count_window.is_some()
            || self.time_window.is_some()
            || self.cumulative_window == Some(true)
    }

    fn names_policy(&self) -> bool {
        self.consecutive_failures.is_some() || self.names_window()
    }

    /// Applies the settings to `builder`. Fails when they name more than one policy, or a
    /// slow-call rate without a slow-call duration; the values themselves are checked when
    /// the builder builds (use [`build`](Self::build) or [`to_config`](Self::to_config) to
    /// get errors named after the settings keys).
    pub fn apply<C, O>(&self, mut b: Builder<C, O>) -> Result<Builder<C, O>, ConfigError> {
        let policies = [
            self.consecutive_failures.is_some(),
            self.count_window.is_some(),
            self.time_window.is_some(),
            self.cumulative_window == Some(true),
        ];
        if policies.iter().filter(|p| **p).count() > 1 {
            return Err(ConfigError::new(
                "policy",
                ConfigValue::Conflict,
                "one of consecutive_failures, count_window, time_window, cumulative_window",
            ));
        }
        if let Some(n) = self.consecutive_failures {
            b = b.consecutive_failures(n);
        }
        if let Some(n) = self.count_window {
            b = b.count_window(n);
        }
        if let Some(d) = self.time_window {
            b = b.time_window(d, self.time_window_buckets.unwrap_or(10));
        }
        if self.cumulative_window == Some(true) {
            b = b.cumulative_window();
        }
        if let Some(n) = self.minimum_calls {
            b = b.minimum_calls(n);
        }
        if let Some(p) = self.failure_rate {
            b = b.failure_rate(p);
        }
        match (self.slow_call_duration, self.slow_call_rate) {
            (Some(d), Some(p)) => b = b.slow_calls(d, p),
            (Some(d), None) => b = b.slow_call_duration(d),
            (None, Some(p)) => {
                return Err(ConfigError::new(
                    "slow_call_rate",
                    ConfigValue::Number(p),
                    "only with slow_call_duration",
                ));
            }
            (None, None) => {}
        }
        if let Some(n) = self.half_open_probes {
            b = b.half_open_probes(n);
        }
        if let Some(n) = self.thread_counters {
            b = b.thread_counters(n);
        }
        if let Some(d) = self.max_half_open {
            b = b.max_half_open(d);
        }
        if let Some(d) = self.max_pushback {
            b = b.max_pushback(d);
        }
        if let Some(p) = self.enforcement {
            b = b.enforcement(p);
        }
        if let Some(factor) = self.jitter {
            b = b.jitter_seeded(factor, self.jitter_seed.unwrap_or_else(crate::fresh_seed));
        }
        if let Some(seed) = self.enforcement_seed {
            b = b.enforcement_seed(seed);
        }
        match (
            self.open_duration,
            self.open_duration_multiplier,
            self.open_duration_max,
        ) {
            (Some(d), None, None) => b = b.open_duration(d),
            (initial, multiplier, max) if multiplier.is_some() || max.is_some() => {
                let initial = initial.unwrap_or(Duration::from_secs(30));
                b = b.exponential_open_duration(
                    initial,
                    multiplier.unwrap_or(2.0),
                    max.unwrap_or(initial.saturating_mul(16)),
                );
            }
            _ => {}
        }
        Ok(b)
    }

    /// Validates the settings into a [`Config`] (for
    /// [`CircuitBreaker::reconfigure`]); errors name the settings key.
    pub fn to_config(&self) -> Result<Config, ConfigError> {
        self.apply(Config::builder())?
            .build_config()
            .map_err(rename_field)
    }

    /// Builds a breaker on the monotonic clock; errors name the settings key.
    pub fn build(&self) -> Result<CircuitBreaker<MonotonicClock, NoopObserver>, ConfigError> {
        self.apply(CircuitBreaker::builder())?
            .build()
            .map_err(rename_field)
    }

    /// Reads settings from the environment variables `{prefix}_{KEY}` (for example
    /// `PAYMENTS_BREAKER_COUNT_WINDOW=100`, `PAYMENTS_BREAKER_OPEN_DURATION=30s`). Variables
    /// that are not set leave their field unset.
    pub fn from_env(prefix: &str) -> Result<Settings, SettingsError> {
        Self::from_vars(prefix, std::env::vars())
    }

    /// Like [`from_env`](Self::from_env), from any list of variables.
    pub fn from_vars(
        prefix: &str,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Settings, SettingsError> {
        let mut s = Settings::default();
        let head = alloc::format!("{}_", prefix.to_ascii_uppercase());
        for (name, value) in vars {
            let Some(key) = name.strip_prefix(&head) else {
                continue;
            };
            let bad = |expected: &'static str| SettingsError::Unparsable {
                variable: name.clone(),
                value: value.clone(),
                expected,
            };
            let count = || {
                value
                    .trim()
                    .parse::<u32>()
                    .map_err(|_| bad("a whole number"))
            };
            let number = || value.trim().parse::<f64>().map_err(|_| bad("a number"));
            let duration = || {
                parse_duration(&value).ok_or_else(|| bad("a duration such as 250ms, 30s, 5m, 1h"))
            };
            match key {
                "CONSECUTIVE_FAILURES" => s.consecutive_failures = Some(count()?),
                "COUNT_WINDOW" => s.count_window = Some(count()?),
                "TIME_WINDOW" => s.time_window = Some(duration()?),
                "TIME_WINDOW_BUCKETS" => s.time_window_buckets = Some(count()?),
                "CUMULATIVE_WINDOW" => {
                    s.cumulative_window =
                        Some(value.trim().parse().map_err(|_| bad("true or false"))?)
                }
                "MINIMUM_CALLS" => s.minimum_calls = Some(count()?),
                "FAILURE_RATE" => s.failure_rate = Some(number()?),
                "SLOW_CALL_DURATION" => s.slow_call_duration = Some(duration()?),
                "SLOW_CALL_RATE" => s.slow_call_rate = Some(number()?),
                "HALF_OPEN_PROBES" => s.half_open_probes = Some(count()?),
                "MAX_HALF_OPEN" => s.max_half_open = Some(duration()?),
                "OPEN_DURATION" => s.open_duration = Some(duration()?),
                "OPEN_DURATION_MULTIPLIER" => s.open_duration_multiplier = Some(number()?),
                "OPEN_DURATION_MAX" => s.open_duration_max = Some(duration()?),
                "THREAD_COUNTERS" => s.thread_counters = Some(count()?),
                "MAX_PUSHBACK" => s.max_pushback = Some(duration()?),
                "JITTER" => s.jitter = Some(number()?),
                "JITTER_SEED" => {
                    s.jitter_seed = Some(value.trim().parse().map_err(|_| bad("a whole number"))?)
                }
                "ENFORCEMENT" => s.enforcement = Some(number()?),
                "ENFORCEMENT_SEED" => {
                    s.enforcement_seed =
                        Some(value.trim().parse().map_err(|_| bad("a whole number"))?)
                }
                _ => return Err(SettingsError::UnknownVariable { variable: name }),
            }
        }
        Ok(s)
    }
}

/// The builder names its fields after its methods; settings name them after their keys.
fn rename_field(mut e: ConfigError) -> ConfigError {
    e.field = match e.field {
        "time_window.duration" => "time_window",
        "time_window.buckets" => "time_window_buckets",
        "slow_calls.duration" => "slow_call_duration",
        "slow_calls.percent" => "slow_call_rate",
        "exponential_open_duration.initial" => "open_duration",
        "exponential_open_duration.multiplier" => "open_duration_multiplier",
        "exponential_open_duration.max" => "open_duration_max",
        "jitter.factor" => "jitter",
        other => other,
    };
    e
}

/// Settings that could not be read (a value that does not parse, a variable that is not a
/// setting). Values that parse but are out of range are [`ConfigError`]s.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SettingsError {
    /// A variable's value is not of the setting's type.
    Unparsable {
        /// The environment variable.
        variable: String,
        /// Its value.
        value: String,
        /// What it should look like.
        expected: &'static str,
    },
    /// A variable with the prefix names no setting (a typo would otherwise go unnoticed).
    UnknownVariable {
        /// The environment variable.
        variable: String,
    },
}

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SettingsError::Unparsable {
                variable,
                value,
                expected,
            } => write!(f, "{variable}={value:?} is not valid: expected {expected}"),
            SettingsError::UnknownVariable { variable } => write!(
                f,
                "{variable} names no breaker setting; check its spelling (see breaker_core::settings::Settings)"
            ),
        }
    }
}

impl std::error::Error for SettingsError {}

/// Settings for every breaker of a service: `defaults`, and per-name overrides in
/// `breakers` (see the [module docs](self)).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistrySettings {
    /// Settings every breaker starts from.
    pub defaults: Settings,
    /// Overrides by breaker name.
    pub breakers: BTreeMap<String, Settings>,
}

/// A breaker's settings were invalid: which breaker, and what.
pub type NamedConfigError = (String, ConfigError);

impl RegistrySettings {
    /// The settings of the breaker called `name`: its overrides over the defaults.
    pub fn settings_for(&self, name: &str) -> Settings {
        match self.breakers.get(name) {
            Some(own) => own.or(&self.defaults),
            None => self.defaults.clone(),
        }
    }

    /// Builds the breakers called `names` (and those with overrides in the file), each named,
    /// on the monotonic clock; `customize` adds what a file cannot hold (an observer, a
    /// clock). The error names the breaker and the settings key.
    pub fn build_breakers<'a, C: Clock, O: Observer>(
        &self,
        names: impl IntoIterator<Item = &'a str>,
        customize: impl Fn(&str, Builder<MonotonicClock, NoopObserver>) -> Builder<C, O>,
    ) -> Result<BTreeMap<String, Arc<CircuitBreaker<C, O>>>, ConfigError> {
        let mut all: alloc::collections::BTreeSet<String> =
            names.into_iter().map(ToString::to_string).collect();
        all.extend(self.breakers.keys().cloned());
        let mut built = BTreeMap::new();
        for name in all {
            let builder = self
                .settings_for(&name)
                .apply(CircuitBreaker::builder().name(name.clone()))?;
            let breaker = customize(&name, builder).build().map_err(rename_field)?;
            built.insert(name, Arc::new(breaker));
        }
        Ok(built)
    }

    /// Applies these settings to running breakers (after the file changed), keeping their
    /// state and counts. Every breaker's new settings are validated first: if one is
    /// invalid, none changes.
    pub fn reconfigure<C: Clock, O: Observer>(
        &self,
        breakers: &BTreeMap<String, Arc<CircuitBreaker<C, O>>>,
    ) -> Result<(), ReconfigureFailed> {
        let mut configs = alloc::vec::Vec::new();
        for name in breakers.keys() {
            let config = self
                .settings_for(name)
                .to_config()
                .map_err(|e| ReconfigureFailed::Invalid(name.clone(), e))?;
            configs.push(config);
        }
        for ((name, breaker), config) in breakers.iter().zip(&configs) {
            breaker
                .check_reconfigure(config)
                .map_err(|e| ReconfigureFailed::Refused(name.clone(), e))?;
        }
        for (breaker, config) in breakers.values().zip(configs) {
            // Checked above: cannot fail.
            let _ = breaker.reconfigure(config);
        }
        Ok(())
    }
}

/// Why [`RegistrySettings::reconfigure`] did not apply.
#[derive(Debug)]
#[non_exhaustive]
pub enum ReconfigureFailed {
    /// The named breaker's new settings are invalid; no breaker changed.
    Invalid(String, ConfigError),
    /// The named breaker would refuse them (its window shape cannot change at run time);
    /// no breaker changed.
    Refused(String, ReconfigureError),
}

impl fmt::Display for ReconfigureFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReconfigureFailed::Invalid(name, e) => {
                write!(f, "breaker {name:?}: {e}; no breaker was reconfigured")
            }
            ReconfigureFailed::Refused(name, e) => write!(f, "breaker {name:?}: {e}"),
        }
    }
}

impl std::error::Error for ReconfigureFailed {}

/// `"250ms"`, `"30s"`, `"1.5s"`, `"5m"`, `"1h"`, `"2d"`, `"100us"`, `"10ns"`, or a plain
/// number of seconds.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let seconds = match unit.trim() {
        "" | "s" => number,
        "ms" => number / 1e3,
        "us" | "µs" => number / 1e6,
        "ns" => number / 1e9,
        "m" | "min" => number * 60.0,
        "h" => number * 3600.0,
        "d" => number * 86_400.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(seconds).ok()
}

fn optional_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Text(String),
        Seconds(f64),
    }
    match Option::<Raw>::deserialize(d)? {
        None => Ok(None),
        Some(Raw::Seconds(s)) => Duration::try_from_secs_f64(s)
            .map(Some)
            .map_err(|_| serde::de::Error::custom(alloc::format!("{s} is not a duration"))),
        Some(Raw::Text(t)) => parse_duration(&t).map(Some).ok_or_else(|| {
            serde::de::Error::custom(alloc::format!(
                "{t:?} is not a duration: write it like \"250ms\", \"30s\", \"5m\" or \"1h\""
            ))
        }),
    }
}
