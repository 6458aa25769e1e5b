//! Metric names reported with the `metrics` feature (label `breaker`, the breaker's name).

/// Gauge: 1 while the last sync with Redis succeeded, 0 while the replica runs on its
/// local state alone.
pub const CONNECTED: &str = "circuit_breaker_redis_connected";
/// Counter: syncs with Redis that succeeded.
pub const SYNCS: &str = "circuit_breaker_redis_syncs_total";
/// Counter: syncs that failed (label `error`: `unreachable`, `timeout`, `bad_data`).
pub const SYNC_ERRORS: &str = "circuit_breaker_redis_sync_errors_total";
/// Counter: fleet transitions this replica made in Redis.
pub const FLEET_TRANSITIONS: &str = "circuit_breaker_redis_fleet_transitions_total";
/// Counter: times this replica found the fleet's state lost and re-seeded it.
pub const STATE_LOST: &str = "circuit_breaker_redis_state_lost_total";
/// Counter: times Redis's clock was found behind the fleet's phase start.
pub const CLOCK_STEPS: &str = "circuit_breaker_redis_clock_steps_total";
/// Gauge: 1 while this replica's configuration differs from the fleet's (it follows the
/// fleet's), 0 otherwise.
pub const CONFIG_MISMATCH: &str = "circuit_breaker_redis_config_mismatch";
