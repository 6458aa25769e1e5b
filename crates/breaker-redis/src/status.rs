//! What a replica knows of its link to the fleet and of the fleet's state.

use std::time::{Duration, Instant};

use breaker_core::{Counts, State};

use crate::error::SyncError;

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

/// What the replica knows of its link to the fleet: [`SharedBreaker::status`](crate::SharedBreaker::status).
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

impl SharingStatus {
    /// The status as `fleet.*` key/value pairs, for [`Inspect::details`].
    pub(crate) fn details(&self) -> Vec<(String, String)> {
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
