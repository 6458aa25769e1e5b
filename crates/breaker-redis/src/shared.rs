//! [`SharedBreaker`]: the local breaker, its sync task, and what the task last saw.

use std::fmt;
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use breaker_core::{
    CircuitBreaker, Clock, Config, ConfigInForce, Inspect, MonotonicClock, NoopObserver, Observer,
    OperatorAction, ProbeAllowance, Snapshot, UnsupportedAction,
};
use tokio::sync::Notify;

use crate::error::{SharingError, SyncError};
use crate::observer::FleetObserver;
use crate::settings::{RedisSharing, Settings};
use crate::status::{FleetView, Link, SharingStatus, Status};
use crate::sync::Syncer;

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
        // sync in flight checks `stopped` after setting its allowance. Both sides order
        // their store before what follows it with a sequentially consistent fence: a sync
        // that reads `stopped` false has its allowance stored before this drop's, so this
        // drop's `Unlimited` is the last word; one that reads it true stores `Unlimited`
        // itself. Release and acquire alone let the sync's two stores and this drop's
        // interleave, leaving a capped allowance with an endless lease.)
        self.stopped.store(true, Ordering::SeqCst);
        std::sync::atomic::fence(Ordering::SeqCst);
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
    ) -> Result<Self, SharingError> {
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

/// # Starting
impl RedisSharing {
    /// Builds the local breaker from `config` on the system's monotonic clock and starts
    /// sharing it. See [`start_with`](Self::start_with).
    pub fn start(self, config: Config) -> Result<SharedBreaker<MonotonicClock>, SharingError> {
        self.start_with(config, MonotonicClock::new(), NoopObserver)
    }

    /// Builds the local breaker from `config`, `clock` and `observer`, and starts sharing it:
    /// must run inside a Tokio runtime, which runs the sync task. Returns at once, without
    /// waiting for Redis: until the first sync succeeds the replica runs on its local state
    /// ([`Link::Connecting`]).
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
        let mut settings = self.check(&config)?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| SharingError::NoRuntime)?;
        // The fleet's probe budget is every replica's: no replica closes on fewer successes
        // than the fleet needs, nor admits more probes on its own.
        let config = config
            .with_half_open_probes(settings.fleet_probes)
            .map_err(|e| SharingError::OutOfRange {
                field: "fleet_probes",
                value: settings.fleet_probes.to_string(),
                allowed: e.to_string(),
            })?;
        let (observer, wake) = FleetObserver::new(observer);
        let breaker = std::sync::Arc::new(CircuitBreaker::new(config, clock, observer));
        // The longest open period this configuration allows: what is read from Redis is
        // bounded by it.
        settings.max_open = (1..=63)
            .map(|attempt| breaker.open_duration(attempt))
            .max()
            .unwrap_or_default();
        SharedBreaker::start(runtime, breaker, settings, wake)
    }
}
