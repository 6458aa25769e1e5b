//! One replica's sync with the fleet: what it tells Redis, and how it follows the answer.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use breaker_core::{
    CircuitBreaker, Clock, Counts, Follow, Observer, ProbeAllowance, Snapshot, State,
};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisResult, Script, ScriptInvocation, Value};

use crate::error::{SharingError, SyncError};
use crate::observer::FleetObserver;
use crate::settings::{Settings, Target};
use crate::status::{FleetView, Link, Status};

/// A generation no fleet reaches (Lua numbers are exact below 2^53): "I have not seen the
/// fleet yet", so nothing the replica sends is taken as a decision on a generation.
const UNSEEN: u64 = (1 << 53) - 1;

/// The most a count read from Redis may be (the core's probe counters hold 11 bits).
const MAX_PROBES: u64 = breaker_core::MAX_HALF_OPEN_PROBES as u64;

/// The connection to Redis: one server (or a primary with replicas behind one address), or a
/// Redis Cluster.
enum Connection {
    Single(ConnectionManager),
    Cluster {
        // (Boxed: a cluster client is large; this enum lives once per replica.)
        client: Box<redis::cluster::ClusterClient>,
        /// Made at the first sync (a cluster connection discovers the topology first), kept
        /// after: it follows failovers and slot moves itself.
        conn: Option<redis::cluster_async::ClusterConnection>,
    },
}

impl Connection {
    fn new(settings: &Settings) -> Result<Self, SharingError> {
        // The client's own response timeout is longer than ours: a slow Redis is reported
        // as slow (our timeout), not as unreachable (the client's).
        let client_timeout = settings.command_timeout * 2;
        match &settings.target {
            Target::Single(url) => {
                let client = redis::Client::open(url.as_str())
                    .map_err(|e| SharingError::Url(e.to_string()))?;
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(settings.command_timeout))
                    .set_response_timeout(Some(client_timeout))
                    .set_number_of_retries(1)
                    .set_min_delay(Duration::from_millis(5))
                    .set_max_delay(settings.sync_interval);
                let conn = ConnectionManager::new_lazy_with_config(client, config)
                    .map_err(|e| SharingError::Url(e.to_string()))?;
                Ok(Connection::Single(conn))
            }
            Target::Cluster(urls) => {
                let client =
                    redis::cluster::ClusterClient::builder(urls.iter().map(String::as_str))
                        .connection_timeout(settings.command_timeout)
                        .response_timeout(client_timeout)
                        .retries(2)
                        .min_retry_wait(5)
                        .max_retry_wait(settings.sync_interval.as_millis().clamp(5, 1000) as u64)
                        .build()
                        .map_err(|e| SharingError::Url(e.to_string()))?;
                Ok(Connection::Cluster {
                    client: Box::new(client),
                    conn: None,
                })
            }
        }
    }

    async fn invoke(&mut self, invocation: &ScriptInvocation<'_>) -> RedisResult<Vec<Value>> {
        match self {
            Connection::Single(conn) => invocation.invoke_async(conn).await,
            Connection::Cluster { client, conn } => {
                let conn = match conn {
                    Some(conn) => conn,
                    None => conn.insert(client.get_async_connection().await?),
                };
                invocation.invoke_async(conn).await
            }
        }
    }
}

pub(crate) struct Syncer<C, O> {
    conn: Connection,
    script: Script,
    breaker: Arc<CircuitBreaker<C, FleetObserver<O>>>,
    settings: Settings,
    status: Arc<Mutex<Status>>,
    /// Set when the `SharedBreaker` is dropped.
    stopped: Arc<AtomicBool>,
    /// The fleet as of the last successful sync.
    fleet: Option<FleetView>,
    /// Whether a sync has moved the local breaker to the fleet's state yet. Until one has,
    /// the replica is at first contact whatever it received: a first sync whose answer
    /// came back after a local decision (an exchange in flight while the local breaker
    /// tripped and half-opened on its own) did not follow, and the local history since is
    /// the replica's own, not news about the fleet's half-open period (a failed probe).
    followed: bool,
    /// The local generation the replica last followed (or accepted as its own, see
    /// [`follow`](Self::follow)): a later one means the local breaker decided something on
    /// its own since.
    local_generation: u32,
    /// The local breaker's backoff count in `local_generation`.
    local_attempts: u32,
    /// `local_generation`, when it is an open period that follows the fleet's: the local
    /// half-open period right after it may end the fleet's open period (an open period of
    /// the replica's own may not).
    followed_open: Option<u32>,
    /// Totals already reported: (calls, failures, slow calls), each never more than calls.
    reported: (u64, u64, u64),
    /// Rejections seen at the last sync: more since, while half-open, is demand for probes.
    rejected: u64,
    /// Threshold events and resets seen at the last successful sync: a local trip with a
    /// threshold event is a rule's (a vote), one without is an operator's.
    seen_thresholds: u64,
    seen_resets: u64,
    /// This replica's sync number: Redis applies each one once...
    seq: u64,
    /// ...within this incarnation (random per `Syncer`): a restarted process with the same
    /// replica id starts its numbers again.
    incarnation: String,
    /// Probe tokens this replica holds.
    tokens: Tokens,
    /// The local breaker tripped on its own and the fleet did not follow (its trip quorum
    /// was not reached): the replica decides alone until its breaker closes again, or the
    /// fleet moves on from the generation its vote was counted in (held here).
    own_trip: Option<u64>,
    #[cfg(feature = "metrics")]
    metrics: Metrics,
}

/// Probe tokens held in the half-open period that follows one fleet generation.
#[derive(Clone, Copy, Debug, Default)]
struct Tokens {
    fleet_generation: u64,
    /// The local half-open generation they are used in.
    local_generation: u32,
    held: u32,
    /// Admitted probes when `held` or the use last changed, and when (breaker clock, ns).
    used: u32,
    since: u64,
    /// Probes the local half-open period had admitted, and successes it had, when it was
    /// tied to this fleet generation, if it began before the replica saw that generation
    /// (it probed on its own before its first contact, or the fleet half-opened again
    /// between two syncs): they are not the fleet's, so they are never reported to it.
    before_admitted: u32,
    before_successes: u32,
}

/// What one sync sends besides the counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Proposal {
    None,
    /// A rule tripped the local breaker: one vote toward the fleet's trip quorum.
    Vote,
    /// An operator tripped the local breaker: the fleet trips.
    Trip,
    /// A probe failed (the local half-open period ended in a re-open).
    Reopen,
    /// The local open period (the fleet's, as followed) is over.
    HalfOpen,
    /// An operator reset the local breaker.
    Reset,
}

impl Proposal {
    fn as_str(self) -> &'static str {
        match self {
            Proposal::None => "",
            Proposal::Vote => "vote",
            Proposal::Trip => "trip",
            Proposal::Reopen => "reopen",
            Proposal::HalfOpen => "half_open",
            Proposal::Reset => "reset",
        }
    }
}

/// What the script answered.
struct Answer {
    view: FleetView,
    held: u32,
    moves: u64,
    flags: String,
    params: String,
}

impl<C, O> Syncer<C, O>
where
    C: Clock + Send + Sync + 'static,
    O: Observer + Send + Sync + 'static,
{
    pub(crate) fn new(
        breaker: Arc<CircuitBreaker<C, FleetObserver<O>>>,
        settings: Settings,
        status: Arc<Mutex<Status>>,
        stopped: Arc<AtomicBool>,
    ) -> Result<Self, SharingError> {
        let conn = Connection::new(&settings)?;
        let snapshot = breaker.snapshot();
        // Until the first sync, probes are the local breaker's own business.
        breaker.set_probe_allowance(ProbeAllowance::Unlimited);
        let (thresholds, resets) = breaker.observer().decisions();
        Ok(Syncer {
            conn,
            script: Script::new(include_str!("sync.lua")),
            local_generation: snapshot.generation,
            local_attempts: snapshot.open_attempts,
            followed_open: None,
            reported: totals(&snapshot),
            rejected: snapshot.totals.rejected,
            seen_thresholds: thresholds,
            seen_resets: resets,
            seq: 0,
            incarnation: format!("{:016x}", crate::settings::random()),
            tokens: Tokens::default(),
            own_trip: None,
            fleet: None,
            followed: false,
            #[cfg(feature = "metrics")]
            metrics: Metrics::new(&settings.name),
            breaker,
            settings,
            status,
            stopped,
        })
    }

    /// The breaker's clock, in nanoseconds: leases and token holds run on it.
    fn clock_now(&self) -> u64 {
        self.breaker.clock().now_nanos()
    }

    /// One sync: report, propose, follow. Never panics; an error leaves the local breaker on
    /// its own (no probe cap) until a sync succeeds.
    pub(crate) async fn sync(&mut self) -> Result<FleetView, SyncError> {
        let started = self.clock_now();
        let result = self.exchange().await;
        self.settle(&result, started);
        result.map(|answer| answer.view)
    }

    /// Sends this replica's news, follows the answer.
    async fn exchange(&mut self) -> Result<Answer, SyncError> {
        let snapshot = self.breaker.snapshot();
        let local = snapshot.state;
        let (thresholds, resets) = self.breaker.observer().decisions();
        let decided = snapshot.generation != self.local_generation;
        let reset = resets > self.seen_resets;
        let rule = thresholds > self.seen_thresholds;
        let proposal = self.proposal(&snapshot, decided, reset, rule);
        let (deltas, reported) = deltas(self.reported, totals(&snapshot));
        let open_ms = match proposal {
            // The period the local breaker chose (its backoff and jitter)...
            // (A local breaker already past its open period: the nominal one.)
            Proposal::Vote | Proposal::Trip | Proposal::Reopen => millis(
                self.breaker
                    .retry_after()
                    .unwrap_or_else(|| self.breaker.open_duration(snapshot.open_attempts.max(1))),
            ),
            // ...or the next one, should the fleet's window or its half-open limit trip.
            _ => millis(self.breaker.open_duration(snapshot.open_attempts + 1)),
        };
        // (Consumed only by a sync that succeeds: a token asked for in a lost reply is asked
        // for again.)
        let demand = snapshot.totals.rejected > self.rejected;
        let (hold, used, successes) =
            self.probe_report(&snapshot, proposal, decided, reset, demand);
        let (known, known_left) = match (self.fleet.map(|f| f.state), local) {
            (_, State::Open) if self.own_trip.is_none() => (
                "open",
                millis(self.breaker.retry_after().unwrap_or_default()),
            ),
            (_, State::HalfOpen) if self.own_trip.is_none() => ("half_open", 0),
            _ => ("closed", 0),
        };
        let seen = self.fleet.map_or(UNSEEN, |f| f.generation);
        self.seq += 1;
        let s = &self.settings;
        let mut invocation = self.script.key(&s.keys.state);
        invocation
            .key(&s.keys.log)
            .key(&s.keys.window)
            .key(&s.keys.probes)
            .key(&s.keys.votes)
            .key(&s.keys.replica)
            .arg(&s.replica)
            .arg(self.seq)
            .arg(seen)
            .arg(deltas.0)
            .arg(deltas.1)
            .arg(deltas.2)
            .arg(proposal.as_str())
            .arg(open_ms)
            .arg(hold)
            .arg(used)
            .arg(successes)
            .arg(known)
            .arg(known_left.min(millis(s.max_open)))
            .arg(snapshot.open_attempts)
            .arg(millis(s.lease))
            .arg(millis(s.adopt))
            .arg(&s.params)
            .arg(match local {
                State::Open => "open",
                State::HalfOpen => "half_open",
                _ => "closed",
            })
            .arg(&self.incarnation);
        let answer = tokio::time::timeout(s.command_timeout, self.conn.invoke(&invocation)).await;
        // Counts recorded while Redis could not take them stay local: reported or dropped,
        // they are never sent twice or late into a newer bucket.
        self.reported = reported;
        let reply = match answer {
            Err(_) => return Err(SyncError::Timeout(s.command_timeout)),
            Ok(Err(e)) if e.is_timeout() => return Err(SyncError::Timeout(s.command_timeout)),
            Ok(Err(e)) => return Err(SyncError::Unreachable(e.to_string())),
            Ok(Ok(reply)) => reply,
        };
        let answer = parse(&reply, &self.settings)?;
        // A request for a token that was not met stays: the replica asks again next sync.
        if answer.held >= hold || local != State::HalfOpen {
            self.rejected = snapshot.totals.rejected;
        }
        self.seen_thresholds = thresholds;
        self.seen_resets = resets;
        let counted = seen == UNSEEN
            || seen == answer.view.generation
            || answer.flags.split(' ').any(|f| f == "reseeded");
        self.own_trip = match proposal {
            // The fleet did not take this replica's trip (no quorum yet): it decides alone,
            // while the fleet stays in the generation its vote was counted in. (A vote made
            // on a generation the fleet has left was not counted: the fleet moved on, an
            // operator's reset say, and the replica follows it.)
            Proposal::Vote if answer.view.state == State::Closed && counted => {
                Some(answer.view.generation)
            }
            Proposal::Vote => None,
            _ if local == State::Closed => None,
            _ => self.own_trip,
        };
        let view = answer.view;
        let now = self.clock_now();
        self.tokens = match self.tokens {
            _ if view.state != State::HalfOpen || local != State::HalfOpen => Tokens::default(),
            t if t.fleet_generation == view.generation
                && t.local_generation == snapshot.generation =>
            {
                let changed = t.held != answer.held || t.used != used;
                Tokens {
                    held: answer.held,
                    used,
                    since: if changed { now } else { t.since },
                    ..t
                }
            }
            _ => {
                // A local half-open period tied to a fleet generation here (not by following
                // it) is the fleet's from its start only if the replica proposed it (its open
                // period, the fleet's as followed, ended): the script counted what this sync
                // reported. Otherwise what it did so far was its own (before its first
                // contact, or in a fleet generation since left).
                let counted = proposal == Proposal::HalfOpen && view.generation == seen + 1;
                let (before_admitted, before_successes, used) = if counted {
                    (0, 0, used)
                } else {
                    (snapshot.half_open_admitted, snapshot.half_open_successes, 0)
                };
                Tokens {
                    fleet_generation: view.generation,
                    local_generation: snapshot.generation,
                    held: answer.held,
                    used,
                    since: now,
                    before_admitted,
                    before_successes,
                }
            }
        };
        self.fleet = Some(view);
        if answer.moves > 0 {
            self.status_mut().fleet_transitions += answer.moves;
            #[cfg(feature = "metrics")]
            self.metrics.transitions.increment(answer.moves);
        }
        self.follow(view, &snapshot);
        Ok(answer)
    }

    /// What the local breaker decided on its own since the last sync, as news for the
    /// fleet it last saw.
    fn proposal(&self, s: &Snapshot, decided: bool, reset: bool, rule: bool) -> Proposal {
        let trip = if rule { Proposal::Vote } else { Proposal::Trip };
        let Some(fleet) = self.fleet.filter(|_| self.followed) else {
            // First contact: only a trip is news; everything else follows the fleet.
            return if decided && s.state == State::Open {
                trip
            } else {
                Proposal::None
            };
        };
        match (fleet.state, s.state) {
            // Still open on its own: its vote stays fresh (not once it probes).
            (State::Closed, State::Open) if self.own_trip.is_some() => Proposal::Vote,
            (State::Closed, _) if self.own_trip.is_some() => Proposal::None,
            (State::Closed, State::Open | State::HalfOpen) if decided => trip,
            (State::Open | State::HalfOpen, State::Closed) if decided && reset => Proposal::Reset,
            // The fleet's open period, as followed, is over.
            (State::Open, State::HalfOpen)
                if self.followed_open.map(|g| g.wrapping_add(1)) == Some(s.generation) =>
            {
                Proposal::HalfOpen
            }
            (State::HalfOpen, State::Open) if decided => Proposal::Reopen,
            // Half-open again, through an open period of its own: a probe failed.
            (State::HalfOpen, State::HalfOpen)
                if decided && s.open_attempts > self.local_attempts =>
            {
                Proposal::Reopen
            }
            _ => Proposal::None,
        }
    }

    /// The probe tokens this replica wants to hold, the probes it admitted and those that
    /// succeeded, in the fleet's half-open generation it last saw: totals, so a sync sent
    /// twice counts once. A token unused for `hold_for` goes back to the fleet (the local
    /// allowance drops first, so the replica never uses a token it gave back).
    fn probe_report(
        &mut self,
        s: &Snapshot,
        proposal: Proposal,
        decided: bool,
        reset: bool,
        demand: bool,
    ) -> (u32, u32, u32) {
        let fleet_half_open = self.fleet.is_some_and(|f| f.state == State::HalfOpen);
        match s.state {
            State::HalfOpen => {
                let tokens = self.tokens;
                let (held, before, before_successes) = if tokens.local_generation == s.generation {
                    (tokens.held, tokens.before_admitted, tokens.before_successes)
                } else if proposal == Proposal::HalfOpen {
                    // Proposed as the fleet's now: the fleet's from its start.
                    (0, 0, 0)
                } else {
                    // Neither tied to the fleet's (by following it) nor proposed as the
                    // fleet's: the replica's own (it half-opened before it followed the
                    // fleet). Nothing in it is the fleet's.
                    return (0, 0, 0);
                };
                let used = s.half_open_admitted.saturating_sub(before);
                let successes = s.half_open_successes.saturating_sub(before_successes);
                if demand && used >= held {
                    return (used + 1, used, successes);
                }
                let idle = self.clock_now().saturating_sub(tokens.since);
                if !demand && held > used && idle >= nanos(self.settings.hold_for) {
                    // Give back what is not used: lower the cap first, then read what was
                    // admitted meanwhile.
                    self.lease(ProbeAllowance::InGeneration {
                        generation: s.generation,
                        probes: used + before,
                    });
                    let admitted = self.breaker.snapshot().half_open_admitted;
                    let used = admitted.saturating_sub(before).max(used);
                    return (used, used, successes);
                }
                (held.max(used), used, successes)
            }
            // Closed on its own probes' success, from the half-open period the fleet is in:
            // the successes that close a replica are the fleet's budget, less those it had
            // before its period was tied to the fleet's. Only when the very period the fleet
            // granted probes in closed (one transition after it): after a fleet probe that
            // failed while Redis was out of reach, the replica's own probes that succeeded
            // are not the fleet's.
            State::Closed if fleet_half_open && decided && !reset => {
                let tokens = self.tokens;
                let tied = self.fleet.map(|f| f.generation) == Some(tokens.fleet_generation)
                    && s.generation == tokens.local_generation.wrapping_add(1);
                if !tied {
                    return (0, 0, 0);
                }
                let n = self
                    .settings
                    .fleet_probes
                    .saturating_sub(tokens.before_successes);
                (n, n, n)
            }
            _ => (0, 0, 0),
        }
    }

    /// Moves the local breaker to the fleet's state and sets its probe allowance, unless
    /// the local breaker decided something on its own since `before` (the snapshot taken
    /// before the exchange): that decision is proposed at the next sync instead, which its
    /// state change has already scheduled.
    fn follow(&mut self, fleet: FleetView, before: &Snapshot) {
        let b = &self.breaker;
        let at = before.generation;
        let now = b.snapshot();
        if now.generation != at {
            return;
        }
        if self.own_trip == Some(fleet.generation)
            && fleet.state == State::Closed
            && now.state != State::Closed
        {
            // Its own trip, not the fleet's: it decides alone (its own probes).
            self.lease(ProbeAllowance::Unlimited);
            return;
        }
        let target = match fleet.state {
            State::Open => {
                let left = fleet.retry_after.unwrap_or_default();
                let mine = match now.state {
                    State::Open => b.retry_after(),
                    _ => None,
                };
                match mine {
                    // Already open until about then: keep it (no churn of generations).
                    Some(mine) if mine + self.settings.follow_tolerance >= left => None,
                    _ => Some(Follow::Open {
                        open_for: left,
                        attempts: fleet.open_attempts,
                    }),
                }
            }
            State::HalfOpen => Some(Follow::HalfOpen),
            _ => Some(Follow::Closed),
        };
        // Exactly what `follow` produced: a local decision landing right after it is in
        // another generation, and is proposed at the next sync.
        // (Nothing produced: the breaker is still in `at` as far as this sync knows, and
        // anything it decided after `at` is proposed at the next sync.)
        let produced = target.and_then(|t| b.follow(at, t));
        let (generation, state, attempts) = match produced {
            Some(generation) => {
                let after = b.snapshot();
                let attempts = if after.generation == generation {
                    after.open_attempts
                } else {
                    fleet.open_attempts
                };
                (generation, fleet.state, attempts)
            }
            None => (at, now.state, now.open_attempts),
        };
        self.own_trip = None;
        self.local_generation = generation;
        self.followed = true;
        self.local_attempts = attempts;
        self.followed_open =
            (state == State::Open && fleet.state == State::Open).then_some(generation);
        let allowance = match (fleet.state, state) {
            (State::HalfOpen, State::HalfOpen) => {
                if self.tokens.local_generation != generation {
                    // A half-open period entered by this follow: no token in it yet.
                    self.tokens = Tokens {
                        fleet_generation: fleet.generation,
                        local_generation: generation,
                        since: self.clock_now(),
                        ..Tokens::default()
                    };
                }
                ProbeAllowance::InGeneration {
                    generation,
                    probes: self.tokens.held + self.tokens.before_admitted,
                }
            }
            // Whatever half-open period the local breaker enters next has no probes until
            // the fleet grants some.
            _ => ProbeAllowance::InGeneration {
                generation: generation.wrapping_add(1),
                probes: 0,
            },
        };
        self.lease(allowance);
    }

    /// Sets the probe allowance for a lease of a few sync intervals: renewed by every
    /// successful sync, it lapses (local behaviour) when syncs stop, whatever stopped them.
    fn lease(&self, allowance: ProbeAllowance) {
        let b = &self.breaker;
        b.lease_probe_allowance(allowance, self.settings.lease);
        // (Paired with the fence in `SharedBreaker`'s drop: see there.)
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.stopped.load(Ordering::SeqCst) {
            // Sharing stopped while this sync ran: the breaker goes on alone, uncapped.
            b.set_probe_allowance(ProbeAllowance::Unlimited);
        }
    }

    fn status_mut(&self) -> std::sync::MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records the outcome of a sync in the status (and metrics); on failure, hands the
    /// probes back to the local breaker.
    fn settle(&mut self, result: &Result<Answer, SyncError>, started: u64) {
        let own_trip = self.own_trip.is_some();
        let mismatch = match result {
            Ok(answer) if answer.params != self.settings.params => Some(
                crate::settings::describe_mismatch(&answer.params, &self.settings.params),
            ),
            _ => None,
        };
        let mut status = self.status_mut();
        match result {
            Ok(answer) => {
                status.link = Some(Link::Synced);
                status.fleet = Some(answer.view);
                status.last_sync = Some(Instant::now());
                status.last_sync_clock = Some(started);
                status.syncs += 1;
                status.last_error = None;
                status.own_trip = own_trip;
                let flags: Vec<&str> = answer.flags.split(' ').collect();
                if flags.contains(&"reseeded") {
                    status.state_losses += 1;
                }
                if flags.contains(&"clock_step") {
                    status.clock_steps += 1;
                }
                status.config_mismatch = mismatch.clone();
            }
            Err(error) => {
                status.link = Some(Link::Degraded);
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
        self.metrics.record(result, mismatch.is_some());
    }
}

fn totals(s: &Snapshot) -> (u64, u64, u64) {
    (
        s.totals.successes + s.totals.failures,
        s.totals.failures,
        s.totals.slow,
    )
}

/// The counts to report since `reported`, and the new `reported`. The totals are read one
/// counter after the other while calls are recorded, so a slow mark can be read before the
/// call it belongs to: failures and slow calls are cut to the calls reported with them, and
/// what is cut is reported with its call at a later sync. So the counts the crate writes are
/// always self-consistent (never more failures or slow calls than calls).
fn deltas(reported: (u64, u64, u64), now: (u64, u64, u64)) -> ((u64, u64, u64), (u64, u64, u64)) {
    let calls = now.0.saturating_sub(reported.0);
    let failures = now.1.saturating_sub(reported.1).min(calls);
    let slow = now.2.saturating_sub(reported.2).min(calls);
    (
        (calls, failures, slow),
        (reported.0 + calls, reported.1 + failures, reported.2 + slow),
    )
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).min(UNSEEN)
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Reads the script's answer, trusting nothing in it: every value is bounded by what the
/// local configuration allows (the longest open period, the probe budget's range).
fn parse(reply: &[Value], settings: &Settings) -> Result<Answer, SyncError> {
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
    if reply.len() != 15 {
        return Err(bad(&format!("{} fields", reply.len())));
    }
    let int = |i: usize| match reply[i] {
        Value::Int(n) if n >= 0 && (n as u64) <= UNSEEN => Ok(n as u64),
        ref other => Err(bad(&format!("field {i} is {other:?}"))),
    };
    let probes = |i: usize| int(i).map(|n| n.min(MAX_PROBES) as u32);
    let state = match text(&reply[2]).as_deref() {
        Some("closed") => State::Closed,
        Some("open") => State::Open,
        Some("half_open") => State::HalfOpen,
        other => return Err(bad(&format!("state {other:?}"))),
    };
    let open_left = Duration::from_millis(int(4)?).min(settings.max_open);
    let view = FleetView {
        generation: int(1)?,
        state,
        open_attempts: int(3)?.min(u64::from(u32::MAX)) as u32,
        retry_after: (state == State::Open).then_some(open_left),
        probes_left: probes(5)?,
        probe_successes: probes(6)?,
        window: Counts {
            calls: int(8)?,
            failures: int(9)?,
            slow_calls: int(10)?,
            consecutive_failures: 0,
        },
        trip_votes: int(14)?.min(u64::from(u32::MAX)) as u32,
    };
    Ok(Answer {
        view,
        held: probes(7)?,
        moves: int(11)?,
        flags: text(&reply[12]).unwrap_or_default(),
        params: text(&reply[13]).ok_or_else(|| bad("parameters"))?,
    })
}

#[cfg(feature = "metrics")]
struct Metrics {
    connected: metrics::Gauge,
    syncs: metrics::Counter,
    unreachable: metrics::Counter,
    timeout: metrics::Counter,
    bad_data: metrics::Counter,
    transitions: metrics::Counter,
    state_lost: metrics::Counter,
    clock_steps: metrics::Counter,
    mismatch: metrics::Gauge,
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
            state_lost: metrics::counter!(STATE_LOST, &label),
            clock_steps: metrics::counter!(CLOCK_STEPS, &label),
            mismatch: metrics::gauge!(CONFIG_MISMATCH, &label),
        }
    }

    fn record(&self, result: &Result<Answer, SyncError>, mismatch: bool) {
        match result {
            Ok(answer) => {
                self.connected.set(1.0);
                self.syncs.increment(1);
                self.mismatch.set(if mismatch { 1.0 } else { 0.0 });
                for flag in answer.flags.split(' ') {
                    match flag {
                        "reseeded" => self.state_lost.increment(1),
                        "clock_step" => self.clock_steps.increment(1),
                        _ => {}
                    }
                }
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

#[cfg(test)]
mod tests {
    use super::deltas;

    /// The totals are read one counter after the other: a slow call's mark can be read
    /// before the call. The counts sent are cut to be self-consistent, and the cut part goes
    /// with its call at the next sync.
    #[test]
    fn counts_sent_are_self_consistent_and_nothing_is_lost() {
        // 10 calls reported; now read: 12 calls, but 13 slow marks (one call not yet read).
        let (sent, reported) = deltas((10, 0, 10), (12, 0, 13));
        assert_eq!(sent, (2, 0, 2));
        assert_eq!(reported, (12, 0, 12));
        // The call is read at the next sync, with its mark.
        let (sent, reported) = deltas(reported, (13, 1, 13));
        assert_eq!(sent, (1, 1, 1));
        assert_eq!(reported, (13, 1, 13));
        // Nothing new: nothing sent.
        assert_eq!(deltas(reported, (13, 1, 13)).0, (0, 0, 0));
        // No call at all, a mark read early: nothing sent yet.
        assert_eq!(deltas((5, 0, 5), (5, 0, 6)), ((0, 0, 0), (5, 0, 5)));
    }
}
