//! One replica's sync with the fleet: what it tells Redis, and how it follows the answer.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use breaker_core::{
    CircuitBreaker, Clock, Counts, Follow, Observer, ProbeAllowance, Snapshot, State,
};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Script, Value};

use crate::settings::Settings;
use crate::shared::{FleetObserver, FleetView, Link, Status, SyncError};

/// A generation no fleet reaches (Lua numbers are exact below 2^53): "I have not seen the
/// fleet yet", so nothing the replica sends is taken as a decision on a generation.
const UNSEEN: u64 = (1 << 53) - 1;

pub(crate) struct Syncer<C, O> {
    conn: ConnectionManager,
    script: Script,
    breaker: Arc<CircuitBreaker<C, FleetObserver<O>>>,
    settings: Settings,
    status: Arc<Mutex<Status>>,
    /// Set when the `SharedBreaker` is dropped.
    stopped: Arc<AtomicBool>,
    /// The fleet as of the last successful sync.
    fleet: Option<FleetView>,
    /// The local generation after the last sync: a later one means the local breaker
    /// decided something on its own since.
    local_generation: u32,
    /// Totals already reported: (calls, failures, slow calls).
    reported: (u64, u64, u64),
    /// Rejections seen at the last sync: more since, while half-open, is demand for probes.
    rejected: u64,
    /// Probe successes already reported, with the local generation they belong to.
    reported_probe_successes: (u32, u32),
    /// Probe tokens granted to this replica, with the fleet generation they belong to.
    granted: (u64, u32),
    #[cfg(feature = "metrics")]
    metrics: Metrics,
}

/// What one sync sends besides the counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Proposal {
    None,
    Open,
    HalfOpen,
    Close,
}

impl Proposal {
    fn as_str(self) -> &'static str {
        match self {
            Proposal::None => "",
            Proposal::Open => "open",
            Proposal::HalfOpen => "half_open",
            Proposal::Close => "close",
        }
    }

    /// What the local breaker decided on its own, given the fleet state it last followed.
    fn of(fleet: State, local: State) -> Proposal {
        match (fleet, local) {
            (State::Closed, State::Open | State::HalfOpen) => Proposal::Open,
            (State::HalfOpen, State::Open) => Proposal::Open,
            (State::HalfOpen, State::Closed) => Proposal::Close,
            (State::Open, State::HalfOpen) => Proposal::HalfOpen,
            // An operator's reset of an open replica resets the fleet.
            (State::Open, State::Closed) => Proposal::Close,
            _ => Proposal::None,
        }
    }
}

impl<C, O> Syncer<C, O>
where
    C: Clock + Send + Sync + 'static,
    O: Observer + Send + Sync + 'static,
{
    pub(crate) fn new(
        client: redis::Client,
        breaker: Arc<CircuitBreaker<C, FleetObserver<O>>>,
        settings: Settings,
        status: Arc<Mutex<Status>>,
        stopped: Arc<AtomicBool>,
    ) -> Result<Self, crate::SharingError> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(settings.command_timeout))
            .set_response_timeout(Some(settings.command_timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(5))
            .set_max_delay(settings.sync_interval);
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| crate::SharingError::Url(e.to_string()))?;
        let snapshot = breaker.snapshot();
        // Until the first sync, probes are the local breaker's own business.
        breaker.set_probe_allowance(ProbeAllowance::Unlimited);
        Ok(Syncer {
            conn,
            script: Script::new(include_str!("sync.lua")),
            local_generation: snapshot.generation,
            reported: totals(&snapshot),
            rejected: snapshot.totals.rejected,
            reported_probe_successes: (snapshot.generation, 0),
            granted: (UNSEEN, 0),
            fleet: None,
            #[cfg(feature = "metrics")]
            metrics: Metrics::new(&settings.name),
            breaker,
            settings,
            status,
            stopped,
        })
    }

    /// One sync: report, propose, follow. Never panics; an error leaves the local breaker on
    /// its own (no probe cap) until a sync succeeds.
    pub(crate) async fn sync(&mut self) -> Result<FleetView, SyncError> {
        let result = self.exchange().await;
        // A replica that had not seen the fleet only learned it: now it can propose what it
        // decided meanwhile, at once rather than an interval later.
        let result = match result {
            Ok((view, true)) => self.exchange().await.map(|(v, _)| v).or(Ok(view)),
            other => other.map(|(v, _)| v),
        };
        self.settle(&result);
        result
    }

    /// Sends this replica's news, follows the answer. `true` if this was the replica's first
    /// look at the fleet and it has a decision of its own to propose.
    async fn exchange(&mut self) -> Result<(FleetView, bool), SyncError> {
        let snapshot = self.breaker.snapshot();
        let local = snapshot.state;
        let (calls, failures, slow) = totals(&snapshot);
        let delta = (
            calls.saturating_sub(self.reported.0),
            failures.saturating_sub(self.reported.1),
            slow.saturating_sub(self.reported.2),
        );
        let decided_locally = snapshot.generation != self.local_generation;
        let (seen, proposal) = match self.fleet {
            None => (UNSEEN, Proposal::None),
            Some(fleet) if decided_locally => (fleet.generation, Proposal::of(fleet.state, local)),
            Some(fleet) => (fleet.generation, Proposal::None),
        };
        let open_ms = match proposal {
            // The period the local breaker chose (its backoff and jitter)...
            // (A local breaker already past its open period: the nominal one.)
            Proposal::Open => millis(
                self.breaker
                    .retry_after()
                    .unwrap_or_else(|| self.breaker.open_duration(snapshot.open_attempts.max(1))),
            ),
            // ...or the next one, should the fleet's window trip.
            _ => millis(self.breaker.open_duration(snapshot.open_attempts + 1)),
        };
        let granted_here = match self.fleet {
            Some(f) if f.generation == self.granted.0 => self.granted.1,
            _ => 0,
        };
        // A token is asked for only by a replica with calls waiting for one (it refused
        // some since the last sync) and none unused: idle replicas do not hoard the budget.
        let demand = snapshot.totals.rejected > self.rejected;
        self.rejected = snapshot.totals.rejected;
        let wants_probe =
            local == State::HalfOpen && demand && snapshot.half_open_admitted >= granted_here;
        let probe_successes = if local == State::HalfOpen {
            let (generation, reported) = self.reported_probe_successes;
            let already = if generation == snapshot.generation {
                reported
            } else {
                0
            };
            snapshot.half_open_successes.saturating_sub(already)
        } else {
            0
        };
        let s = &self.settings;
        let mut invocation = self.script.key(&s.state_key);
        invocation
            .key(&s.log_key)
            .arg(&s.bucket_prefix)
            .arg(&s.replica)
            .arg(seen)
            .arg(delta.0)
            .arg(delta.1)
            .arg(delta.2)
            .arg(proposal.as_str())
            .arg(open_ms)
            .arg(u32::from(wants_probe))
            .arg(probe_successes)
            .arg(s.fleet_probes)
            .arg(s.fail_ppm)
            .arg(s.slow_ppm)
            .arg(s.minimum_calls)
            .arg(s.window_ms)
            .arg(s.bucket_ms)
            .arg(s.half_open_limit_ms)
            .arg(s.ttl_ms);
        let answer = tokio::time::timeout(
            s.command_timeout,
            invocation.invoke_async::<Vec<Value>>(&mut self.conn),
        )
        .await;
        // Counts recorded while Redis could not take them stay local: reported or dropped,
        // they are never sent twice or late into a newer bucket.
        self.reported = (calls, failures, slow);
        let reply = match answer {
            Err(_) => return Err(SyncError::Timeout(s.command_timeout)),
            Ok(Err(e)) => return Err(SyncError::Unreachable(e.to_string())),
            Ok(Ok(reply)) => reply,
        };
        let (view, granted, moves) = parse(&reply)?;
        if local == State::HalfOpen {
            self.reported_probe_successes = (snapshot.generation, snapshot.half_open_successes);
        }
        let first_look = self.fleet.is_none();
        self.granted = if view.generation == self.granted.0 {
            (view.generation, self.granted.1 + granted)
        } else {
            (view.generation, granted)
        };
        self.fleet = Some(view);
        if moves > 0 {
            self.status_mut().fleet_transitions += moves;
            #[cfg(feature = "metrics")]
            self.metrics.transitions.increment(moves);
        }
        if first_look && decided_locally {
            // Propose first (the caller syncs again at once); following now would undo the
            // local decision before the fleet heard of it.
            return Ok((view, true));
        }
        self.follow(view, snapshot.generation);
        Ok((view, false))
    }

    /// Moves the local breaker to the fleet's state and sets its probe allowance, unless
    /// the local breaker decided something on its own since `local_generation` (read before
    /// the exchange): that decision is proposed at the next sync instead, which its state
    /// change has already scheduled.
    fn follow(&mut self, fleet: FleetView, local_generation: u32) {
        let b = &self.breaker;
        let target = match fleet.state {
            State::Open => Follow::Open {
                open_for: fleet.retry_after.unwrap_or_default(),
                attempts: fleet.open_attempts,
            },
            State::HalfOpen => Follow::HalfOpen,
            _ => Follow::Closed,
        };
        let snapshot = b.snapshot();
        if snapshot.generation != local_generation {
            return;
        }
        b.follow(local_generation, target);
        let snapshot = b.snapshot();
        let allowance = match (fleet.state, snapshot.state) {
            (State::HalfOpen, State::HalfOpen) => ProbeAllowance::InGeneration {
                generation: snapshot.generation,
                probes: self.granted.1,
            },
            // Whatever half-open period the local breaker enters next has no probes until
            // the fleet grants some.
            _ => ProbeAllowance::InGeneration {
                generation: snapshot.generation.wrapping_add(1),
                probes: 0,
            },
        };
        b.set_probe_allowance(allowance);
        if self.stopped.load(Ordering::Acquire) {
            // Sharing stopped while this sync ran: the breaker goes on alone, uncapped.
            b.set_probe_allowance(ProbeAllowance::Unlimited);
        }
        self.local_generation = snapshot.generation;
    }

    fn status_mut(&self) -> std::sync::MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records the outcome of a sync in the status (and metrics); on failure, hands the
    /// probes back to the local breaker.
    fn settle(&mut self, result: &Result<FleetView, SyncError>) {
        let mut status = self.status_mut();
        match result {
            Ok(view) => {
                status.link = Link::Synced;
                status.fleet = Some(*view);
                status.last_sync = Some(Instant::now());
                status.syncs += 1;
                status.last_error = None;
            }
            Err(error) => {
                status.link = Link::Degraded;
                status.errors += 1;
                if let SyncError::BadData(_) = error {
                    status.bad_data += 1;
                }
                status.last_error = Some(error.clone());
            }
        }
        drop(status);
        if result.is_err() {
            // Local-only: the local breaker's own probe limit, and the next sync starts
            // from the fleet's answer again.
            // What the local breaker decides meanwhile is proposed once a sync succeeds
            // (`local_generation` stays where the last successful sync left it).
            self.breaker.set_probe_allowance(ProbeAllowance::Unlimited);
        }
        #[cfg(feature = "metrics")]
        self.metrics.record(result);
    }
}

fn totals(s: &Snapshot) -> (u64, u64, u64) {
    (
        s.totals.successes + s.totals.failures,
        s.totals.failures,
        s.totals.slow,
    )
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).min(UNSEEN)
}

/// Reads the script's answer, trusting nothing in it.
fn parse(reply: &[Value]) -> Result<(FleetView, u32, u64), SyncError> {
    let text = |v: &Value| match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    };
    let bad =
        |what: &str| SyncError::BadData(format!("unexpected answer from the sync script: {what}"));
    match reply.first().and_then(text).as_deref() {
        Some("ok") => {}
        Some("bad") => {
            let what = reply.get(1).and_then(text).unwrap_or_default();
            return Err(SyncError::BadData(what));
        }
        _ => return Err(bad(&format!("{reply:?}"))),
    }
    if reply.len() != 12 {
        return Err(bad(&format!("{} fields", reply.len())));
    }
    let int = |i: usize| match reply[i] {
        Value::Int(n) if n >= 0 => Ok(n as u64),
        ref other => Err(bad(&format!("field {i} is {other:?}"))),
    };
    let small =
        |i: usize| int(i).and_then(|n| u32::try_from(n).map_err(|_| bad("count too large")));
    let state = match text(&reply[2]).as_deref() {
        Some("closed") => State::Closed,
        Some("open") => State::Open,
        Some("half_open") => State::HalfOpen,
        other => return Err(bad(&format!("state {other:?}"))),
    };
    let open_left = Duration::from_millis(int(4)?);
    let view = FleetView {
        generation: int(1)?,
        state,
        open_attempts: small(3)?,
        retry_after: (state == State::Open).then_some(open_left),
        probes_left: small(5)?,
        probe_successes: small(6)?,
        window: Counts {
            calls: int(8)?,
            failures: int(9)?,
            slow_calls: int(10)?,
            consecutive_failures: 0,
        },
    };
    Ok((view, small(7)?, int(11)?))
}

#[cfg(feature = "metrics")]
struct Metrics {
    connected: metrics::Gauge,
    syncs: metrics::Counter,
    unreachable: metrics::Counter,
    timeout: metrics::Counter,
    bad_data: metrics::Counter,
    transitions: metrics::Counter,
}

#[cfg(feature = "metrics")]
impl Metrics {
    fn new(name: &str) -> Self {
        use crate::names::*;
        let label = [("breaker", name.to_string())];
        let error = |kind: &'static str| metrics::counter!(SYNC_ERRORS, "breaker" => name.to_string(), "error" => kind);
        Metrics {
            connected: metrics::gauge!(CONNECTED, &label),
            syncs: metrics::counter!(SYNCS, &label),
            unreachable: error("unreachable"),
            timeout: error("timeout"),
            bad_data: error("bad_data"),
            transitions: metrics::counter!(FLEET_TRANSITIONS, &label),
        }
    }

    fn record(&self, result: &Result<FleetView, SyncError>) {
        match result {
            Ok(_) => {
                self.connected.set(1.0);
                self.syncs.increment(1);
            }
            Err(e) => {
                self.connected.set(0.0);
                match e {
                    SyncError::Unreachable(_) => self.unreachable.increment(1),
                    SyncError::Timeout(_) => self.timeout.increment(1),
                    SyncError::BadData(_) => self.bad_data.increment(1),
                }
            }
        }
    }
}
