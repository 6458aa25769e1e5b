//! [`RedisSharing`]: how a breaker shares its state, checked before anything starts.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use breaker_core::Config;

use crate::error::SharingError;

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
    /// One URL for a single Redis; the seed nodes of a Redis Cluster.
    pub(crate) urls: Vec<String>,
    pub(crate) cluster: bool,
    pub(crate) sync_interval: Duration,
    pub(crate) command_timeout: Duration,
    pub(crate) fleet_probes: Option<u32>,
    pub(crate) fleet_window: Option<Duration>,
    pub(crate) fleet_half_open_limit: Duration,
    pub(crate) key_prefix: String,
    pub(crate) replica_id: Option<String>,
    pub(crate) trip_quorum: u32,
    pub(crate) quorum_window: Option<Duration>,
}

impl fmt::Debug for RedisSharing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let urls: Vec<String> = self.urls.iter().map(|u| redact(u)).collect();
        f.debug_struct("RedisSharing")
            .field("urls", &urls)
            .field("cluster", &self.cluster)
            .field("sync_interval", &self.sync_interval)
            .field("command_timeout", &self.command_timeout)
            .field("fleet_probes", &self.fleet_probes)
            .field("fleet_window", &self.fleet_window)
            .field("fleet_half_open_limit", &self.fleet_half_open_limit)
            .field("key_prefix", &self.key_prefix)
            .field("replica_id", &self.replica_id)
            .field("trip_quorum", &self.trip_quorum)
            .field("quorum_window", &self.quorum_window)
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
    /// count window) as the fleet's window, 30 s fleet half-open limit, key prefix `breaker`,
    /// a trip quorum of 2 replicas.
    pub fn new(url: impl Into<String>) -> Self {
        Self::with_urls(vec![url.into()], false)
    }

    /// Sharing through a Redis Cluster, given some of its nodes (`redis://host:port` each;
    /// the client discovers the rest, and follows failovers and slot moves). A breaker's keys
    /// share the hash tag `{name}`, so they live in one slot and every sync is one script on
    /// the primary serving it. Same defaults as [`new`](Self::new).
    ///
    /// ```
    /// use breaker_redis::RedisSharing;
    ///
    /// let sharing = RedisSharing::cluster(["redis://10.0.0.1:7000", "redis://10.0.0.2:7000"]);
    /// # let _ = sharing;
    /// ```
    pub fn cluster<I, S>(nodes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::with_urls(nodes.into_iter().map(Into::into).collect(), true)
    }

    fn with_urls(urls: Vec<String>, cluster: bool) -> Self {
        RedisSharing {
            urls,
            cluster,
            sync_interval: Duration::from_millis(100),
            command_timeout: Duration::from_millis(250),
            fleet_probes: None,
            fleet_window: None,
            fleet_half_open_limit: Duration::from_secs(30),
            key_prefix: "breaker".to_string(),
            replica_id: None,
            trip_quorum: 2,
            quorum_window: None,
        }
    }

    /// Sharing through the Redis server whose URL is in [`URL_ENV`] (`BREAKER_REDIS_URL`),
    /// `redis://127.0.0.1:6379` if it is not set. Several URLs separated by commas are the
    /// seed nodes of a Redis Cluster ([`cluster`](Self::cluster)).
    pub fn from_env() -> Result<Self, SharingError> {
        match std::env::var(URL_ENV) {
            Ok(urls) if urls.contains(',') => Ok(Self::cluster(
                urls.split(',').map(str::trim).filter(|u| !u.is_empty()),
            )),
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
    /// they ran. It is also every replica's own `half_open_probes` (no replica closes on
    /// fewer successes than the fleet, nor admits more probes when it decides alone).
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

    /// The prefix of every key (default `breaker`, no braces): the keys are
    /// `<prefix>:{<name>}` and `<prefix>:{<name>}:<suffix>`, all in the slot of the hash tag
    /// `{<name>}` (see `docs/consistency.md`).
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// How this replica is known to the fleet: it signs the transitions it makes in the
    /// fleet's log, and its probe tokens, trip votes and sync numbers are kept under it. It
    /// must be unique within the fleet (1 to 100 printable characters, no spaces; default:
    /// the process id, a counter and a random part).
    pub fn replica_id(mut self, id: impl Into<String>) -> Self {
        self.replica_id = Some(id.into());
        self
    }

    /// How many replicas must trip on their own rules, within the
    /// [`quorum_window`](Self::quorum_window), before the fleet trips (1 to 1000, default 2).
    ///
    /// A replica that trips on its own stays open (its own breaker decides its own calls)
    /// and votes; the other replicas go on until a quorum agrees, or until the fleet's
    /// window (the counts of every replica together) trips the fleet. With 1, any replica's
    /// trip opens every replica: one replica with a local problem (its own network path, a
    /// bad node) takes the dependency away from the whole fleet. Operator trips
    /// ([`trip`](breaker_core::CircuitBreaker::trip)) need no quorum. See
    /// `docs/consistency.md`.
    pub fn trip_quorum(mut self, replicas: u32) -> Self {
        self.trip_quorum = replicas;
        self
    }

    /// How recent a replica's trip must be to count toward the
    /// [`trip_quorum`](Self::trip_quorum) (10 ms to 1 hour; default: the fleet's window). A
    /// replica that stays open renews its vote at every sync.
    pub fn quorum_window(mut self, window: Duration) -> Self {
        self.quorum_window = Some(window);
        self
    }

    pub(crate) fn check(&self, config: &Config) -> Result<Settings, SharingError> {
        let name = config.name();
        if name.is_empty() {
            return Err(SharingError::Unnamed);
        }
        if name.contains(['{', '}']) {
            // `{name}` is the hash tag that keeps a breaker's keys in one Cluster slot.
            return Err(SharingError::OutOfRange {
                field: "name",
                value: format!("{name:?}"),
                allowed: "a breaker name without braces (Builder::name)".into(),
            });
        }
        if self.urls.is_empty() {
            return Err(SharingError::Url("no Redis URL given".into()));
        }
        for url in &self.urls {
            redis::Client::open(url.as_str())
                .map_err(|e| SharingError::Url(format!("{}: {e}", redact(url))))?;
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
        if !(1..=1000).contains(&self.trip_quorum) {
            return Err(SharingError::OutOfRange {
                field: "trip_quorum",
                value: self.trip_quorum.to_string(),
                allowed: "1 to 1000 replicas".into(),
            });
        }
        let quorum_window = within(
            "quorum_window",
            self.quorum_window.unwrap_or(window),
            ms(10),
            ms(3_600_000),
        )?;
        static REPLICAS: AtomicU64 = AtomicU64::new(0);
        let replica = match &self.replica_id {
            Some(id) => id.clone(),
            None => format!(
                "pid{}-{}-{:08x}",
                std::process::id(),
                REPLICAS.fetch_add(1, Ordering::Relaxed),
                random() as u32
            ),
        };
        if replica.is_empty()
            || replica.len() > 100
            || !replica.chars().all(|c| c.is_ascii_graphic())
        {
            return Err(SharingError::OutOfRange {
                field: "replica_id",
                value: format!("{replica:?}"),
                allowed: "1 to 100 printable characters without spaces".into(),
            });
        }
        let window_ms = window.as_millis() as u64;
        let bucket_ms = (window_ms / 10).max(1);
        let ppm = |percent: Option<f64>| percent.map_or(0, |p| (p * 10_000.0).round() as u64);
        let params = format!(
            "f={} s={} m={} w={window_ms} b={bucket_ms} p={probes} h={} q={} qw={}",
            ppm(config.failure_rate()),
            ppm(config.slow_call_rate()),
            config.minimum_calls(),
            half_open_limit.as_millis(),
            self.trip_quorum,
            quorum_window.as_millis(),
        );
        let base = format!("{}:{{{}}}", self.key_prefix, name);
        // A few sync intervals: a lease outlives one missed sync, not a stopped task.
        let lease = 3 * sync_interval + 2 * command_timeout;
        Ok(Settings {
            name: name.to_string(),
            keys: Keys {
                state: base.clone(),
                log: format!("{base}:log"),
                window: format!("{base}:w"),
                probes: format!("{base}:p"),
                votes: format!("{base}:v"),
                replica: format!("{base}:r:{replica}"),
            },
            replica,
            target: if self.cluster {
                Target::Cluster(self.urls.clone())
            } else {
                Target::Single(self.urls[0].clone())
            },
            sync_interval,
            command_timeout,
            fleet_probes: probes,
            params,
            max_open: Duration::MAX,
            lease,
            hold_for: 3 * sync_interval,
            adopt: 10 * lease,
            follow_tolerance: sync_interval + command_timeout,
        })
    }
}

/// A random number from the standard library's hasher seeds (for replica ids and
/// incarnations).
pub(crate) fn random() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

/// Where the fleet's state lives.
#[derive(Clone, Debug)]
pub(crate) enum Target {
    Single(String),
    Cluster(Vec<String>),
}

/// Every key of one breaker: they share the hash tag `{name}` (one Cluster slot), and the
/// sync script declares them all.
#[derive(Clone, Debug)]
pub(crate) struct Keys {
    pub(crate) state: String,
    pub(crate) log: String,
    pub(crate) window: String,
    pub(crate) probes: String,
    pub(crate) votes: String,
    pub(crate) replica: String,
}

/// What a sync needs, checked.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) name: String,
    pub(crate) replica: String,
    pub(crate) keys: Keys,
    pub(crate) target: Target,
    pub(crate) sync_interval: Duration,
    pub(crate) command_timeout: Duration,
    pub(crate) fleet_probes: u32,
    /// The fleet parameters, as the script compares and parses them.
    pub(crate) params: String,
    /// The longest open period the local configuration allows.
    pub(crate) max_open: Duration,
    /// How long a probe allowance holds without a successful sync.
    pub(crate) lease: Duration,
    /// How long an unused probe token is held before it goes back to the fleet.
    pub(crate) hold_for: Duration,
    /// How long the fleet's parameters may go unreported before this replica's replace them.
    pub(crate) adopt: Duration,
    /// How much earlier than the fleet's an open period of its own may end before the replica
    /// takes the fleet's deadline.
    pub(crate) follow_tolerance: Duration,
}

/// What differs between the fleet's parameters and this replica's, for people.
pub(crate) fn describe_mismatch(fleet: &str, mine: &str) -> String {
    let parse = |text: &str| -> Vec<(String, String)> {
        text.split(' ')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let (fleet, mine) = (parse(fleet), parse(mine));
    let show = |key: &str, value: &str| -> Option<(&'static str, String)> {
        let n: u64 = value.parse().ok()?;
        Some(match key {
            "f" => ("failure_rate", format!("{}%", n as f64 / 10_000.0)),
            "s" => ("slow_call_rate", format!("{}%", n as f64 / 10_000.0)),
            "m" => ("minimum_calls", n.to_string()),
            "w" => ("fleet_window", format!("{n} ms")),
            "p" => ("fleet_probes", n.to_string()),
            "h" => ("fleet_half_open_limit", format!("{n} ms")),
            "q" => ("trip_quorum", n.to_string()),
            "qw" => ("quorum_window", format!("{n} ms")),
            _ => return None,
        })
    };
    let mut parts = Vec::new();
    for (key, theirs) in &fleet {
        let ours = mine.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
        if ours == Some(theirs.as_str()) {
            continue;
        }
        if let (Some((field, theirs)), Some((_, ours))) =
            (show(key, theirs), ours.and_then(|o| show(key, o)))
        {
            parts.push(format!(
                "{field}: the fleet's {theirs}, this replica's {ours}"
            ));
        }
    }
    if parts.is_empty() {
        format!("the fleet's parameters are {fleet:?}")
    } else {
        format!(
            "this replica's configuration differs from the fleet's, which it follows ({})",
            parts.join("; ")
        )
    }
}

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
            (RedisSharing::new(DEFAULT_URL).trip_quorum(0), "trip_quorum"),
            (
                RedisSharing::new(DEFAULT_URL).quorum_window(Duration::from_millis(1)),
                "quorum_window",
            ),
            (
                RedisSharing::new(DEFAULT_URL).replica_id("a b"),
                "replica_id",
            ),
            (RedisSharing::new(DEFAULT_URL).replica_id(""), "replica_id"),
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
        let s = RedisSharing::new(DEFAULT_URL)
            .replica_id("r1")
            .check(&config)
            .unwrap();
        assert_eq!(
            s.params,
            "f=250000 s=0 m=40 w=30000 b=3000 p=4 h=30000 q=2 qw=30000"
        );
        assert_eq!(s.fleet_probes, 4);
        assert_eq!(s.keys.state, "breaker:{orders}");
        assert_eq!(s.keys.log, "breaker:{orders}:log");
        assert_eq!(s.keys.window, "breaker:{orders}:w");
        assert_eq!(s.keys.replica, "breaker:{orders}:r:r1");
    }

    #[test]
    fn a_name_with_braces_would_break_the_hash_tag_and_is_refused() {
        for name in ["a{b", "a}b", "{x}"] {
            let config = Config::builder().name(name).build_config().unwrap();
            let err = RedisSharing::new(DEFAULT_URL).check(&config).unwrap_err();
            let text = err.to_string();
            assert!(text.contains("name") && text.contains("braces"), "{text}");
        }
    }

    #[test]
    fn default_replica_ids_are_unique_and_valid() {
        let a = RedisSharing::new(DEFAULT_URL).check(&config()).unwrap();
        let b = RedisSharing::new(DEFAULT_URL).check(&config()).unwrap();
        assert_ne!(a.replica, b.replica);
        assert!(a.replica.chars().all(|c| c.is_ascii_graphic()));
    }

    #[test]
    fn a_mismatch_says_what_differs() {
        let text = describe_mismatch(
            "f=500000 s=0 m=10 w=10000 b=1000 p=1 h=30000 q=2 qw=10000",
            "f=900000 s=0 m=10 w=10000 b=1000 p=3 h=30000 q=2 qw=10000",
        );
        assert!(
            text.contains("failure_rate: the fleet's 50%, this replica's 90%"),
            "{text}"
        );
        assert!(
            text.contains("fleet_probes: the fleet's 1, this replica's 3"),
            "{text}"
        );
        assert!(!text.contains("minimum_calls"), "{text}");
    }

    #[test]
    fn a_cluster_keeps_its_seed_nodes_and_hides_their_passwords() {
        let sharing = RedisSharing::cluster(["redis://a:1", "redis://b:2"]);
        assert!(sharing.cluster);
        assert_eq!(sharing.urls.len(), 2);
        let debug = format!("{:?}", RedisSharing::cluster(["redis://u:secret@a:1"]));
        assert!(!debug.contains("secret"), "{debug}");
    }

    #[test]
    fn the_password_stays_out_of_debug_output() {
        let s = format!("{:?}", RedisSharing::new("redis://user:hunter2@db:6379/0"));
        assert!(s.contains("cluster: false"), "{s}");
        assert!(!s.contains("hunter2") && s.contains("db:6379/0"), "{s}");
    }

    #[test]
    fn start_outside_a_runtime_says_what_to_do() {
        let err = RedisSharing::new(DEFAULT_URL).start(config()).unwrap_err();
        assert_eq!(err, SharingError::NoRuntime);
    }
}
