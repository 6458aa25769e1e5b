//! [`SharedBreaker`]: the local breaker, its sync task, and what the task last saw.

use std::fmt;
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use breaker_core::{
    CircuitBreaker, Clock, ConfigInForce, Counts, Event, Inspect, Observer, OperatorAction,
    ProbeAllowance, Snapshot, State, UnsupportedAction,
};
use tokio::sync::Notify;

use crate::settings::Settings;
use crate::sync::Syncer;

/// The observer of a shared breaker: forwards every event to yours, and wakes the sync task
/// when the local breaker changes state, so a local trip reaches Redis at once rather than
/// at the next interval. It also tells the sync task how the breaker decided: a trip after a
/// threshold event is a rule's (a vote toward the fleet's trip quorum), one without is an
/// operator's; a reset is an operator's.
pub struct FleetObserver<O> {
    inner: O,
    wake: Arc<Notify>,
    thresholds: AtomicU64,
    resets: AtomicU64,
}

impl<O> FleetObserver<O> {
    pub(crate) fn new(inner: O) -> (Self, Arc<Notify>) {
        let wake = Arc::new(Notify::new());
        (
            FleetObserver {
                inner,
                wake: wake.clone(),
                thresholds: AtomicU64::new(0),
                resets: AtomicU64::new(0),
            },
            wake,
        )
    }

    /// The observer given to [`RedisSharing::start_with`](crate::RedisSharing::start_with).
    pub fn inner(&self) -> &O {
        &self.inner
    }

    /// Threshold events and resets so far.
    pub(crate) fn decisions(&self) -> (u64, u64) {
        (
            self.thresholds.load(Ordering::Acquire),
            self.resets.load(Ordering::Acquire),
        )
    }
}

impl<O> fmt::Debug for FleetObserver<O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FleetObserver").finish_non_exhaustive()
    }
}

impl<O: Observer> Observer for FleetObserver<O> {
    #[inline]
    fn on_breaker_event(&self, breaker: &str, event: &Event) {
        match event {
            Event::ThresholdExceeded(_) => {
                self.thresholds.fetch_add(1, Ordering::AcqRel);
            }
            Event::Reset => {
                self.resets.fetch_add(1, Ordering::AcqRel);
            }
            Event::StateTransition { .. } => self.wake.notify_one(),
            _ => {}
        }
        self.inner.on_breaker_event(breaker, event)
    }
}

/// How the replica is linked to the fleet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    /// No sync has finished yet: local state only.
    Connecting,
    /// The last sync succeeded: the replica follows the fleet.
    Synced,
    /// The last sync failed (Redis unreachable, too slow, or holding bad data): local
    /// state only, until a sync succeeds again.
    Degraded,
    /// The last sync succeeded, but longer ago than the probe allowance's lease (a few
    /// sync intervals): the sync task has stopped (its runtime shut down) or is stuck. The
    /// allowance has lapsed: local state only.
    Stale,
}

/// The fleet's shared state as of the replica's last successful sync.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FleetView {
    /// The fleet's generation: bumped by every fleet transition.
    pub generation: u64,
    /// Closed, open or half-open.
    pub state: State,
    /// Open periods since the fleet last closed (the backoff count).
    pub open_attempts: u32,
    /// While open: how long the open period had left when synced.
    pub retry_after: Option<Duration>,
    /// While half-open: probe tokens not yet granted to any replica.
    pub probes_left: u32,
    /// While half-open: probes that succeeded, fleet-wide.
    pub probe_successes: u32,
    /// While closed: the fleet's window (`calls`, `failures`, `slow_calls`; consecutive
    /// failures are per replica and not shared).
    pub window: Counts,
    /// While closed: replicas whose own breaker tripped within the quorum window (see
    /// [`RedisSharing::trip_quorum`](crate::RedisSharing::trip_quorum)).
    pub trip_votes: u32,
}

/// What the replica knows of its link to the fleet: [`SharedBreaker::status`].
#[derive(Clone, Debug, PartialEq)]
pub struct SharingStatus {
    /// Synced, or running on local state alone.
    pub link: Link,
    /// The fleet as of the last successful sync.
    pub fleet: Option<FleetView>,
    /// How long ago the last successful sync finished.
    pub since_last_sync: Option<Duration>,
    /// Successful syncs.
    pub syncs: u64,
    /// Failed syncs (unreachable, timed out, bad data).
    pub errors: u64,
    /// Failed syncs that found data this crate did not write.
    pub bad_data: u64,
    /// Fleet transitions this replica made.
    pub fleet_transitions: u64,
    /// Why the last failed sync failed, while the link is degraded.
    pub last_error: Option<SyncError>,
    /// Times this replica found the fleet's state lost (a restart without persistence,
    /// FLUSHALL, eviction, a failover to a copy that lags) and re-seeded it from its own.
    pub state_losses: u64,
    /// Times Redis's clock was found behind the fleet's phase start (a backward clock step,
    /// a failover to a host whose clock is behind): the phase restarted then.
    pub clock_steps: u64,
    /// When this replica's configuration differs from the fleet's (a rolling deploy):
    /// what differs. The fleet's parameters decide; this replica follows them.
    pub config_mismatch: Option<String>,
    /// The local breaker tripped on its own and the fleet did not follow (its trip quorum
    /// is not reached): this replica decides alone until its breaker closes again.
    pub own_trip: bool,
}

/// Why a sync failed. The replica keeps running on its local state; the next sync retries.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SyncError {
    /// Redis could not be reached or answered with an error.
    Unreachable(String),
    /// Redis did not answer within the command timeout.
    Timeout(Duration),
    /// A key holds data this crate did not write: it is ignored, not trusted.
    BadData(String),
}

impl fmt::Display for SyncError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyncError::Unreachable(why) => write!(
                f,
                "Redis is unreachable ({why}); running on local state until it answers again"
            ),
            SyncError::Timeout(limit) => write!(
                f,
                "Redis did not answer within {limit:?}; running on local state (raise \
                 RedisSharing::command_timeout if Redis is known to be this slow)"
            ),
            SyncError::BadData(what) => write!(
                f,
                "{what}; ignoring it and running on local state: delete the key (or choose \
                 another RedisSharing::key_prefix) to share state again"
            ),
        }
    }
}

impl std::error::Error for SyncError {}

#[derive(Default)]
pub(crate) struct Status {
    pub(crate) link: Option<Link>,
    pub(crate) fleet: Option<FleetView>,
    pub(crate) last_sync: Option<Instant>,
    /// The breaker's clock when the last successful sync began (its lease runs from there).
    pub(crate) last_sync_clock: Option<u64>,
    pub(crate) syncs: u64,
    pub(crate) errors: u64,
    pub(crate) bad_data: u64,
    pub(crate) fleet_transitions: u64,
    pub(crate) last_error: Option<SyncError>,
    pub(crate) state_losses: u64,
    pub(crate) clock_steps: u64,
    pub(crate) config_mismatch: Option<String>,
    pub(crate) own_trip: bool,
}

/// The local breaker of one replica, shared with the fleet through Redis.
///
/// Derefs to the [`CircuitBreaker`]: acquire permits from it exactly as from an unshared
/// one, and hand [`breaker`](Self::breaker) to the adapters (tower, tonic, sqlx). Dropping
/// the `SharedBreaker` stops the sync task; the breaker goes on alone.
pub struct SharedBreaker<C: Clock, O: Observer = breaker_core::NoopObserver> {
    breaker: Arc<CircuitBreaker<C, FleetObserver<O>>>,
    syncer: Arc<tokio::sync::Mutex<Syncer<C, O>>>,
    status: Arc<Mutex<Status>>,
    stopped: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
    lease: Duration,
}

impl<C: Clock, O: Observer> fmt::Debug for SharedBreaker<C, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedBreaker")
            .field("breaker", &self.breaker)
            .finish_non_exhaustive()
    }
}

impl<C: Clock, O: Observer> Drop for SharedBreaker<C, O> {
    // (The task is aborted here; if its runtime is gone already, the lease lapses anyway.)
    fn drop(&mut self) {
        // The breaker may live on in adapters: it goes on alone, its probes uncapped. (A
        // sync in flight checks `stopped` after setting its allowance.)
        self.stopped.store(true, Ordering::Release);
        self.task.abort();
        self.breaker.set_probe_allowance(ProbeAllowance::Unlimited);
    }
}

impl<C: Clock, O: Observer> Deref for SharedBreaker<C, O> {
    type Target = CircuitBreaker<C, FleetObserver<O>>;

    fn deref(&self) -> &Self::Target {
        &self.breaker
    }
}

impl<C, O> SharedBreaker<C, O>
where
    C: Clock + Send + Sync + 'static,
    O: Observer + Send + Sync + 'static,
{
    pub(crate) fn start(
        runtime: tokio::runtime::Handle,
        breaker: Arc<CircuitBreaker<C, FleetObserver<O>>>,
        settings: Settings,
        wake: Arc<Notify>,
    ) -> Result<Self, crate::SharingError> {
        let status = Arc::new(Mutex::new(Status::default()));
        let interval = settings.sync_interval;
        let lease = settings.lease;
        let stopped = Arc::new(AtomicBool::new(false));
        let syncer = Syncer::new(breaker.clone(), settings, status.clone(), stopped.clone())?;
        let syncer = Arc::new(tokio::sync::Mutex::new(syncer));
        let task = {
            let syncer = syncer.clone();
            runtime.spawn(async move {
                loop {
                    syncer.lock().await.sync().await.ok();
                    // The schedule of the sync task, not a synchronisation: a local state
                    // change wakes it early.
                    tokio::select! {
                        () = tokio::time::sleep(interval) => {}
                        () = wake.notified() => {}
                    }
                }
            })
        };
        Ok(SharedBreaker {
            breaker,
            syncer,
            status,
            stopped,
            task,
            lease,
        })
    }

    /// The local breaker, for adapters that take an `Arc` (tower layers, tonic, sqlx).
    pub fn breaker(&self) -> &Arc<CircuitBreaker<C, FleetObserver<O>>> {
        &self.breaker
    }

    /// Syncs with the fleet now (the sync task also does, every interval) and returns the
    /// fleet's state. For tests and tools; calls never need it.
    pub async fn sync_now(&self) -> Result<FleetView, SyncError> {
        self.syncer.lock().await.sync().await
    }

    /// The link to the fleet and the fleet's state as last synced.
    pub fn status(&self) -> SharingStatus {
        let s = self.status.lock().unwrap_or_else(|e| e.into_inner());
        let link = match (s.link, s.last_sync_clock) {
            (None, _) => Link::Connecting,
            // On the breaker's clock, as the lease: stale exactly when the allowance lapsed.
            (Some(Link::Synced), Some(at))
                if self.breaker.clock().now_nanos().saturating_sub(at)
                    > u64::try_from(self.lease.as_nanos()).unwrap_or(u64::MAX) =>
            {
                Link::Stale
            }
            (Some(link), _) => link,
        };
        SharingStatus {
            link,
            fleet: s.fleet,
            since_last_sync: s.last_sync.map(|t| t.elapsed()),
            syncs: s.syncs,
            errors: s.errors,
            bad_data: s.bad_data,
            fleet_transitions: s.fleet_transitions,
            last_error: s.last_error.clone(),
            state_losses: s.state_losses,
            clock_steps: s.clock_steps,
            config_mismatch: s.config_mismatch.clone(),
            own_trip: s.own_trip,
        }
    }
}

/// Registered in a [`Registry`](breaker_core::Registry), a shared breaker reports its local
/// breaker's state, counts and configuration, and in [`details`](Inspect::details) its link
/// to the fleet and the fleet's state as last synced (`fleet.*` keys). Operator actions
/// apply to the local breaker: a trip or a reset reaches the fleet with the next sync (at
/// once: the transition wakes the sync task), as any local decision does; forced open,
/// disabled and metrics-only stay on this replica, where they win over the fleet.
///
/// ```no_run
/// use breaker_core::{Config, Registry};
/// use breaker_redis::RedisSharing;
/// use std::sync::Arc;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let config = Config::builder().name("payments").count_window(100).build_config()?;
/// let payments = Arc::new(RedisSharing::from_env()?.start(config)?);
/// let registry = Registry::new();
/// registry.register("payments", payments.clone())?;
/// for (key, value) in registry.get("payments").unwrap().breaker.details() {
///     println!("{key}: {value}"); // fleet.link: synced, fleet.state: closed, ...
/// }
/// # Ok(()) }
/// ```
impl<C, O> Inspect for SharedBreaker<C, O>
where
    C: Clock + Send + Sync + 'static,
    O: Observer + Send + Sync + 'static,
{
    fn snapshot(&self) -> Snapshot {
        self.breaker.snapshot()
    }

    fn name(&self) -> &str {
        self.breaker.name()
    }

    fn config(&self) -> Option<ConfigInForce> {
        Some(self.breaker.config_in_force())
    }

    fn details(&self) -> Vec<(String, String)> {
        self.status().details()
    }

    fn apply(&self, action: OperatorAction) -> Result<(), UnsupportedAction> {
        self.breaker.apply(action);
        Ok(())
    }
}

impl SharingStatus {
    /// The status as `fleet.*` key/value pairs, for [`Inspect::details`].
    fn details(&self) -> Vec<(String, String)> {
        let mut details = vec![(
            "fleet.link",
            match self.link {
                Link::Connecting => "connecting".to_string(),
                Link::Synced => "synced".to_string(),
                Link::Degraded => "degraded: running on local state".to_string(),
                Link::Stale => "stale: no sync for several intervals, local state".to_string(),
            },
        )];
        if let Some(ago) = self.since_last_sync {
            details.push(("fleet.last_sync", format!("{:.1} s ago", ago.as_secs_f64())));
        }
        details.push((
            "fleet.syncs",
            format!("{} ok, {} failed", self.syncs, self.errors),
        ));
        if let Some(error) = &self.last_error {
            details.push(("fleet.last_error", error.to_string()));
        }
        if let Some(fleet) = &self.fleet {
            details.push(("fleet.state", fleet.state.as_str().to_string()));
            details.push(("fleet.generation", fleet.generation.to_string()));
            details.push(("fleet.open_attempts", fleet.open_attempts.to_string()));
            match fleet.state {
                State::Open => {
                    if let Some(left) = fleet.retry_after {
                        details.push(("fleet.retry_after", format!("{:.1} s", left.as_secs_f64())));
                    }
                }
                State::HalfOpen => {
                    details.push(("fleet.probes_left", fleet.probes_left.to_string()));
                    details.push(("fleet.probe_successes", fleet.probe_successes.to_string()));
                }
                _ => {
                    let w = &fleet.window;
                    let rate = |n: u64| match w.calls {
                        0 => "-".to_string(),
                        calls => format!("{:.1} %", n as f64 * 100.0 / calls as f64),
                    };
                    details.push((
                        "fleet.window",
                        format!(
                            "{} calls, failures {}, slow {}",
                            w.calls,
                            rate(w.failures),
                            rate(w.slow_calls)
                        ),
                    ));
                }
            }
        }
        details
            .into_iter()
            .map(|(key, value)| (key.to_string(), value))
            .collect()
    }
}
