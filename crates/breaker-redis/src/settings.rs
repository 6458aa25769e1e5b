//! [`RedisSharing`]: how a breaker shares its state, checked before anything starts.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use breaker_core::{CircuitBreaker, Clock, Config, MonotonicClock, NoopObserver, Observer};

use crate::shared::SharedBreaker;

/// The environment variable [`RedisSharing::from_env`] reads the Redis URL from.
pub const URL_ENV: &str = "BREAKER_REDIS_URL";

const DEFAULT_URL: &str = "redis://127.0.0.1:6379";

/// How a breaker shares its state with the other replicas of a service through Redis.
///
/// Every setting has a default; [`start`](Self::start) checks them all and names the field
/// and its allowed range when one is out of range.
///
/// ```
/// use breaker_redis::RedisSharing;
/// use std::time::Duration;
///
/// let sharing = RedisSharing::new("redis://127.0.0.1:6379")
///     .sync_interval(Duration::from_millis(100)) // staleness bound: see docs/consistency.md
///     .command_timeout(Duration::from_millis(50)) // slower than this is "Redis is down"
///     .fleet_probes(3); // half-open probes for the whole fleet
/// # let _ = sharing;
/// ```
#[derive(Clone)]
pub struct RedisSharing {
    pub(crate) url: String,
    pub(crate) sync_interval: Duration,
    pub(crate) command_timeout: Duration,
    pub(crate) fleet_probes: Option<u32>,
    pub(crate) fleet_window: Option<Duration>,
    pub(crate) fleet_half_open_limit: Duration,
    pub(crate) key_prefix: String,
    pub(crate) replica_id: Option<String>,
}

impl fmt::Debug for RedisSharing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSharing")
            .field("url", &redact(&self.url))
            .field("sync_interval", &self.sync_interval)
            .field("command_timeout", &self.command_timeout)
            .field("fleet_probes", &self.fleet_probes)
            .field("fleet_window", &self.fleet_window)
            .field("fleet_half_open_limit", &self.fleet_half_open_limit)
            .field("key_prefix", &self.key_prefix)
            .field("replica_id", &self.replica_id)
            .finish()
    }
}

/// The URL without its password.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_string(),
    }
}

impl RedisSharing {
    /// Sharing through the Redis server at `url` (`redis://[user:password@]host:port[/db]`),
    /// with the defaults: sync every 100 ms, 250 ms command timeout, the local
    /// `half_open_probes` as the fleet's probe budget, the local window's length (10 s for a
    /// count window) as the fleet's window, 30 s fleet half-open limit, key prefix `breaker`.
    pub fn new(url: impl Into<String>) -> Self {
        RedisSharing {
            url: url.into(),
            sync_interval: Duration::from_millis(100),
            command_timeout: Duration::from_millis(250),
            fleet_probes: None,
            fleet_window: None,
            fleet_half_open_limit: Duration::from_secs(30),
            key_prefix: "breaker".to_string(),
            replica_id: None,
        }
    }

    /// Sharing through the Redis server whose URL is in [`URL_ENV`] (`BREAKER_REDIS_URL`),
    /// `redis://127.0.0.1:6379` if it is not set.
    pub fn from_env() -> Result<Self, SharingError> {
        match std::env::var(URL_ENV) {
            Ok(url) => Ok(Self::new(url)),
            Err(std::env::VarError::NotPresent) => Ok(Self::new(DEFAULT_URL)),
            Err(std::env::VarError::NotUnicode(_)) => Err(SharingError::Url(format!(
                "{URL_ENV} is not valid UTF-8; set it to a redis:// URL"
            ))),
        }
    }

    /// How often the replica syncs with the fleet (1 ms to 60 s, default 100 ms). It bounds
    /// how stale the replica's view of the fleet may be: a trip elsewhere reaches this
    /// replica within one interval (plus one round trip). Each sync is one command, so this
    /// is also the replica's load on Redis: 10 commands/s at 100 ms, whatever the call rate.
    pub fn sync_interval(mut self, interval: Duration) -> Self {
        self.sync_interval = interval;
        self
    }

    /// The longest a sync may take (1 ms to 60 s, default 250 ms). A slower Redis counts as
    /// unreachable: the replica runs on its local state until a sync succeeds again.
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.command_timeout = timeout;
        self
    }

    /// Half-open probes for the whole fleet (1 to 2047; default: the local configuration's
    /// `half_open_probes`). The fleet closes after this many successful probes, wherever
    /// they ran.
    pub fn fleet_probes(mut self, probes: u32) -> Self {
        self.fleet_probes = Some(probes);
        self
    }

    /// The length of the fleet's window (10 ms to 1 hour; default: the local time window's
    /// length, 10 s for other policies), summed over ten buckets.
    pub fn fleet_window(mut self, window: Duration) -> Self {
        self.fleet_window = Some(window);
        self
    }

    /// How long the fleet stays half-open waiting for its probes' results before it opens
    /// again (1 s to 1 hour, default 30 s): a replica that dies holding probe tokens cannot
    /// keep the fleet half-open.
    pub fn fleet_half_open_limit(mut self, limit: Duration) -> Self {
        self.fleet_half_open_limit = limit;
        self
    }

    /// The prefix of every key (default `breaker`): keys are `<prefix>:{<name>}`,
    /// `<prefix>:{<name>}:log` and `<prefix>:{<name>}:b:<generation>:<bucket>`.
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// How this replica signs the transitions it makes in the fleet's log (default: the
    /// process id and a counter).
    pub fn replica_id(mut self, id: impl Into<String>) -> Self {
        self.replica_id = Some(id.into());
        self
    }

    /// Builds the local breaker from `config` on the system's monotonic clock and starts
    /// sharing it. See [`start_with`](Self::start_with).
    pub fn start(self, config: Config) -> Result<SharedBreaker<MonotonicClock>, SharingError> {
        self.start_with(config, MonotonicClock::new(), NoopObserver)
    }

    /// Builds the local breaker from `config`, `clock` and `observer`, and starts sharing it:
    /// must run inside a Tokio runtime, which runs the sync task. Returns at once, without
    /// waiting for Redis: until the first sync succeeds the replica runs on its local state
    /// ([`Link::Connecting`](crate::Link::Connecting)).
    ///
    /// The configuration must name the breaker ([`Builder::name`](breaker_core::Builder::name)):
    /// replicas share state by name.
    pub fn start_with<C, O>(
        self,
        config: Config,
        clock: C,
        observer: O,
    ) -> Result<SharedBreaker<C, O>, SharingError>
    where
        C: Clock + Send + Sync + 'static,
        O: Observer + Send + Sync + 'static,
    {
        let settings = self.check(&config)?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| SharingError::NoRuntime)?;
        let client = redis::Client::open(self.url.as_str())
            .map_err(|e| SharingError::Url(format!("{}: {e}", redact(&self.url))))?;
        let (observer, wake) = crate::shared::FleetObserver::new(observer);
        let breaker = std::sync::Arc::new(CircuitBreaker::new(config, clock, observer));
        SharedBreaker::start(runtime, client, breaker, settings, wake)
    }

    fn check(&self, config: &Config) -> Result<Settings, SharingError> {
        let name = config.name();
        if name.is_empty() {
            return Err(SharingError::Unnamed);
        }
        let within = |field: &'static str, value: Duration, min: Duration, max: Duration| {
            if value < min || value > max {
                Err(SharingError::OutOfRange {
                    field,
                    value: format!("{value:?}"),
                    allowed: format!("{min:?} to {max:?}"),
                })
            } else {
                Ok(value)
            }
        };
        let ms = Duration::from_millis;
        let sync_interval = within("sync_interval", self.sync_interval, ms(1), ms(60_000))?;
        let command_timeout = within("command_timeout", self.command_timeout, ms(1), ms(60_000))?;
        let default_window = match config.policy() {
            breaker_core::PolicyKind::TimeWindow { duration, .. } => duration,
            _ => Duration::from_secs(10),
        };
        let window = self.fleet_window.unwrap_or(default_window);
        let window = within("fleet_window", window, ms(10), ms(3_600_000))?;
        let half_open_limit = within(
            "fleet_half_open_limit",
            self.fleet_half_open_limit,
            ms(1_000),
            ms(3_600_000),
        )?;
        let probes = self.fleet_probes.unwrap_or(config.half_open_probes());
        if !(1..=breaker_core::MAX_HALF_OPEN_PROBES).contains(&probes) {
            return Err(SharingError::OutOfRange {
                field: "fleet_probes",
                value: probes.to_string(),
                allowed: format!("1 to {}", breaker_core::MAX_HALF_OPEN_PROBES),
            });
        }
        if self.key_prefix.is_empty() || self.key_prefix.contains(['{', '}']) {
            return Err(SharingError::OutOfRange {
                field: "key_prefix",
                value: format!("{:?}", self.key_prefix),
                allowed: "a non-empty string without braces".into(),
            });
        }
        let window_ms = window.as_millis() as u64;
        let bucket_ms = (window_ms / 10).max(1);
        let ppm = |percent: Option<f64>| percent.map_or(0, |p| (p * 10_000.0).round() as u64);
        static REPLICAS: AtomicU64 = AtomicU64::new(0);
        let replica = self.replica_id.clone().unwrap_or_else(|| {
            format!(
                "pid{}-{}",
                std::process::id(),
                REPLICAS.fetch_add(1, Ordering::Relaxed)
            )
        });
        let base = format!("{}:{{{}}}", self.key_prefix, name);
        Ok(Settings {
            name: name.to_string(),
            replica,
            state_key: base.clone(),
            log_key: format!("{base}:log"),
            bucket_prefix: base,
            sync_interval,
            command_timeout,
            fleet_probes: probes,
            fail_ppm: ppm(config.failure_rate()),
            slow_ppm: ppm(config.slow_call_rate()),
            minimum_calls: u64::from(config.minimum_calls()),
            window_ms,
            bucket_ms,
            half_open_limit_ms: half_open_limit.as_millis() as u64,
            // The state outlives every window and backoff; an abandoned breaker's keys go.
            ttl_ms: 24 * 3_600_000,
        })
    }
}

/// What a sync needs, checked.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) name: String,
    pub(crate) replica: String,
    pub(crate) state_key: String,
    pub(crate) log_key: String,
    pub(crate) bucket_prefix: String,
    pub(crate) sync_interval: Duration,
    pub(crate) command_timeout: Duration,
    pub(crate) fleet_probes: u32,
    pub(crate) fail_ppm: u64,
    pub(crate) slow_ppm: u64,
    pub(crate) minimum_calls: u64,
    pub(crate) window_ms: u64,
    pub(crate) bucket_ms: u64,
    pub(crate) half_open_limit_ms: u64,
    pub(crate) ttl_ms: u64,
}

/// Why sharing could not start.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SharingError {
    /// The breaker has no name; replicas share state by name.
    Unnamed,
    /// A setting is out of its allowed range.
    OutOfRange {
        /// The setting ([`RedisSharing`] method).
        field: &'static str,
        /// The value given.
        value: String,
        /// What is allowed.
        allowed: String,
    },
    /// The Redis URL is not valid.
    Url(String),
    /// [`RedisSharing::start`] ran outside a Tokio runtime.
    NoRuntime,
}

impl fmt::Display for SharingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SharingError::Unnamed => f.write_str(
                "the breaker has no name: replicas share state by name, so give the \
                 configuration one with Builder::name",
            ),
            SharingError::OutOfRange {
                field,
                value,
                allowed,
            } => write!(f, "RedisSharing::{field} is {value}; allowed: {allowed}"),
            SharingError::Url(why) => write!(
                f,
                "invalid Redis URL ({why}); expected redis://[user:password@]host:port[/db]"
            ),
            SharingError::NoRuntime => f.write_str(
                "RedisSharing::start needs a Tokio runtime for its sync task: call it from \
                 inside one (#[tokio::main], Runtime::enter)",
            ),
        }
    }
}

impl std::error::Error for SharingError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::builder().name("orders").build_config().unwrap()
    }

    #[test]
    fn bad_settings_name_the_field_and_the_range() {
        let cases = [
            (
                RedisSharing::new(DEFAULT_URL).sync_interval(Duration::ZERO),
                "sync_interval",
            ),
            (
                RedisSharing::new(DEFAULT_URL).command_timeout(Duration::from_secs(61)),
                "command_timeout",
            ),
            (
                RedisSharing::new(DEFAULT_URL).fleet_probes(0),
                "fleet_probes",
            ),
            (
                RedisSharing::new(DEFAULT_URL).fleet_window(Duration::from_millis(1)),
                "fleet_window",
            ),
            (
                RedisSharing::new(DEFAULT_URL).fleet_half_open_limit(Duration::ZERO),
                "fleet_half_open_limit",
            ),
            (
                RedisSharing::new(DEFAULT_URL).key_prefix("a{b"),
                "key_prefix",
            ),
        ];
        for (sharing, field) in cases {
            let err = sharing.check(&config()).unwrap_err();
            let text = err.to_string();
            assert!(text.contains(field) && text.contains("allowed"), "{text}");
        }
    }

    #[test]
    fn an_unnamed_breaker_is_refused() {
        let err = RedisSharing::new(DEFAULT_URL)
            .check(&Config::builder().build_config().unwrap())
            .unwrap_err();
        assert_eq!(err, SharingError::Unnamed);
        assert!(err.to_string().contains("Builder::name"));
    }

    #[test]
    fn thresholds_and_window_come_from_the_local_configuration() {
        let config = Config::builder()
            .name("orders")
            .time_window(Duration::from_secs(30), 6)
            .failure_rate(25.0)
            .minimum_calls(40)
            .half_open_probes(4)
            .build_config()
            .unwrap();
        let s = RedisSharing::new(DEFAULT_URL).check(&config).unwrap();
        assert_eq!((s.fail_ppm, s.slow_ppm, s.minimum_calls), (250_000, 0, 40));
        assert_eq!(
            (s.window_ms, s.bucket_ms, s.fleet_probes),
            (30_000, 3_000, 4)
        );
        assert_eq!(s.state_key, "breaker:{orders}");
        assert_eq!(s.log_key, "breaker:{orders}:log");
    }

    #[test]
    fn the_password_stays_out_of_debug_output() {
        let s = format!("{:?}", RedisSharing::new("redis://user:hunter2@db:6379/0"));
        assert!(!s.contains("hunter2") && s.contains("db:6379/0"), "{s}");
    }

    #[test]
    fn start_outside_a_runtime_says_what_to_do() {
        let err = RedisSharing::new(DEFAULT_URL).start(config()).unwrap_err();
        assert_eq!(err, SharingError::NoRuntime);
    }
}
