//! [`Admin`] and its builder: settings, validation, and the router.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use breaker_core::{ConfigError, ConfigValue, Registry};
use http::HeaderValue;

use crate::auth::{Auth, Token};
use crate::error::BuildError;
use crate::feed::AdminObserver;
use crate::hub::{AdminStats, Settings, Shared};

/// An admin interface over a [`Registry`]: a [`Router`] with the JSON API, the event stream
/// and the dashboard page (see the crate docs for the routes), and the event hub behind
/// them, running on the tokio runtime it was built on until the last clone of the `Admin`
/// and of its routers is dropped.
///
/// ```
/// use breaker_admin::{Admin, Token};
/// use breaker_core::{CircuitBreaker, Registry};
/// use std::sync::Arc;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let registry = Arc::new(Registry::new());
/// let admin = Admin::builder(registry.clone())
///     // Without an operator token the routes are read-only.
///     .operator_token(Token::new("on-call", "3f1c9a7e0b5d4c2a8e6f1b3d5c7a9e0f")?)
///     .build()?;
/// let search = CircuitBreaker::builder()
///     .name("search")
///     .observer(admin.observer()) // transitions reach the stream at once
///     .build()?;
/// registry.register("search", Arc::new(search))?;
/// let app: axum::Router = axum::Router::new().nest("/admin", admin.router());
/// // The dashboard: GET /admin/dashboard
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Admin {
    shared: Arc<Shared>,
}

impl fmt::Debug for Admin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admin")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Admin {
    /// A builder for an admin over `registry`.
    pub fn builder(registry: Arc<Registry>) -> AdminBuilder {
        AdminBuilder {
            registry,
            operators: Vec::new(),
            readers: Vec::new(),
            origins: Vec::new(),
            observer: None,
            snapshot_interval: Duration::from_secs(1),
            history: Duration::from_secs(300),
            replay: 1024,
            max_streams: 64,
            stream_buffer: 256,
        }
    }

    /// The observer that feeds this admin's stream with transitions (see
    /// [`AdminObserver`]); clones share its queue.
    pub fn observer(&self) -> AdminObserver {
        self.shared.observer.clone()
    }

    /// The routes, to mount where you like (`Router::nest("/admin", admin.router())`).
    /// Each call gives a router over the same hub.
    pub fn router(&self) -> Router {
        crate::api::router(self.shared.clone())
    }

    /// Counters of the event hub, for tests and your own metrics.
    pub fn stats(&self) -> AdminStats {
        self.shared.stats()
    }
}

/// Settings of an [`Admin`], checked by [`build`](Self::build).
#[must_use = "call build() to get the Admin"]
pub struct AdminBuilder {
    registry: Arc<Registry>,
    operators: Vec<Token>,
    readers: Vec<Token>,
    origins: Vec<String>,
    observer: Option<AdminObserver>,
    snapshot_interval: Duration,
    history: Duration,
    replay: usize,
    max_streams: usize,
    stream_buffer: usize,
}

impl fmt::Debug for AdminBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminBuilder")
            .field("operators", &self.operators)
            .field("readers", &self.readers)
            .field("origins", &self.origins)
            .field("snapshot_interval", &self.snapshot_interval)
            .finish_non_exhaustive()
    }
}

impl AdminBuilder {
    /// Enables operator actions for holders of `token` (which may also read). Without an
    /// operator token, every route is read-only and `POST` answers 403. Call again for
    /// more tokens (one per holder, so events name who acted).
    pub fn operator_token(mut self, token: Token) -> Self {
        self.operators.push(token);
        self
    }

    /// Requires a token for reading too: `token`, or any operator token. Without a read
    /// token, reads (list, inspect, stream) are open to anyone who reaches the routes. The
    /// dashboard page itself holds no data and is always served; it asks for a token.
    pub fn read_token(mut self, token: Token) -> Self {
        self.readers.push(token);
        self
    }

    /// Lets pages from `origin` (`https://ops.example.com`: scheme, host and port, nothing
    /// else) call the API from a browser (CORS). None by default: no CORS header is ever
    /// sent, and only the dashboard page served by these routes can use them.
    pub fn allow_origin(mut self, origin: impl Into<String>) -> Self {
        self.origins.push(origin.into());
        self
    }

    /// Feeds the stream from `observer`'s queue (give its clones to your breakers) instead
    /// of a queue of the admin's own ([`Admin::observer`]): for breakers built before the
    /// admin.
    pub fn observer(mut self, observer: AdminObserver) -> Self {
        self.observer = Some(observer);
        self
    }

    /// How often every breaker is sampled and a snapshot sent to the streams (rates per
    /// second are measured over it). Default: 1 s. Allowed: 10 ms to 60 s.
    pub fn snapshot_interval(mut self, interval: Duration) -> Self {
        self.snapshot_interval = interval;
        self
    }

    /// How far back the history of rates reaches, sent to a dashboard when it connects (60
    /// points, one per `history / 60`, but not closer than the snapshot interval). Default:
    /// 5 minutes. Allowed: 1 s to 24 hours.
    pub fn history(mut self, history: Duration) -> Self {
        self.history = history;
        self
    }

    /// Events kept for clients that reconnect with `Last-Event-ID`. Default: 1024.
    /// Allowed: 16 to 65,536.
    pub fn replay(mut self, events: usize) -> Self {
        self.replay = events;
        self
    }

    /// Event streams served at once; more are refused with 503. Default: 64. Allowed: 1 to
    /// 4096.
    pub fn max_streams(mut self, streams: usize) -> Self {
        self.max_streams = streams;
        self
    }

    /// Events queued for one stream; a client that falls further behind is dropped (and
    /// may reconnect with `Last-Event-ID`). Default: 256. Allowed: 1 to 65,536.
    pub fn stream_buffer(mut self, events: usize) -> Self {
        self.stream_buffer = events;
        self
    }

    /// Checks the settings and starts the event hub on the current tokio runtime.
    pub fn build(self) -> Result<Admin, BuildError> {
        let duration = |field, d: Duration, min: Duration, max: Duration, allowed| {
            if d < min || d > max {
                Err(BuildError::Setting(ConfigError::new(
                    field,
                    ConfigValue::Duration(d),
                    allowed,
                )))
            } else {
                Ok(d)
            }
        };
        let count = |field, n: usize, min: usize, max: usize, allowed| {
            if n < min || n > max {
                Err(BuildError::Setting(ConfigError::new(
                    field,
                    ConfigValue::Count(n as u64),
                    allowed,
                )))
            } else {
                Ok(n)
            }
        };
        let snapshot_interval = duration(
            "admin.snapshot_interval",
            self.snapshot_interval,
            Duration::from_millis(10),
            Duration::from_secs(60),
            "10 ms to 60 s",
        )?;
        let history = duration(
            "admin.history",
            self.history,
            Duration::from_secs(1),
            Duration::from_secs(24 * 3600),
            "1 s to 24 h",
        )?;
        let replay = count(
            "admin.replay",
            self.replay,
            16,
            65_536,
            "16 to 65,536 events",
        )?;
        let max_streams = count(
            "admin.max_streams",
            self.max_streams,
            1,
            4096,
            "1 to 4096 streams",
        )?;
        let stream_buffer = count(
            "admin.stream_buffer",
            self.stream_buffer,
            1,
            65_536,
            "1 to 65,536 events",
        )?;
        let origins = self
            .origins
            .into_iter()
            .map(|o| valid_origin(&o).ok_or(BuildError::Origin(o)))
            .collect::<Result<Vec<_>, _>>()?;
        let auth = Auth::new(self.operators, self.readers)?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| BuildError::NoRuntime)?;
        let settings = Settings {
            snapshot_interval,
            history_step: (history / HISTORY_POINTS as u32).max(snapshot_interval),
            history_points: HISTORY_POINTS,
            replay,
            max_streams,
            stream_buffer,
            origins,
        };
        let shared = Shared::new(
            self.registry,
            auth,
            settings,
            self.observer.unwrap_or_default(),
        );
        crate::hub::spawn(&shared, &runtime);
        Ok(Admin { shared })
    }
}

/// Points of history per breaker.
const HISTORY_POINTS: usize = 60;

/// `scheme://host[:port]`, as browsers send it in `Origin`.
fn valid_origin(origin: &str) -> Option<HeaderValue> {
    let rest = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))?;
    let ok = !rest.is_empty()
        && rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
    ok.then(|| HeaderValue::from_str(origin).ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn settings_out_of_range_are_refused_naming_the_field() {
        let registry = || Arc::new(Registry::new());
        let field = |b: AdminBuilder| match b.build() {
            Err(BuildError::Setting(e)) => e.field(),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            field(Admin::builder(registry()).snapshot_interval(Duration::from_millis(1))),
            "admin.snapshot_interval"
        );
        assert_eq!(
            field(Admin::builder(registry()).history(Duration::ZERO)),
            "admin.history"
        );
        assert_eq!(field(Admin::builder(registry()).replay(1)), "admin.replay");
        assert_eq!(
            field(Admin::builder(registry()).max_streams(0)),
            "admin.max_streams"
        );
        assert_eq!(
            field(Admin::builder(registry()).stream_buffer(0)),
            "admin.stream_buffer"
        );
        for bad in [
            "*",
            "https://",
            "ops.example.com",
            "https://a.example/path",
            "null",
        ] {
            match Admin::builder(registry()).allow_origin(bad).build() {
                Err(BuildError::Origin(o)) => assert_eq!(o, bad),
                other => panic!("{bad}: {other:?}"),
            }
        }
        assert!(
            Admin::builder(registry())
                .allow_origin("https://ops.example.com:8443")
                .build()
                .is_ok()
        );
    }

    #[test]
    fn building_outside_a_runtime_says_so() {
        let e = Admin::builder(Arc::new(Registry::new()))
            .build()
            .unwrap_err();
        assert!(matches!(e, BuildError::NoRuntime));
        assert!(e.to_string().contains("tokio runtime"), "{e}");
    }
}
