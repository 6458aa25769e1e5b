//! One circuit-breaker state across every replica of a service, shared through Redis or a
//! Redis Cluster ([`RedisSharing::cluster`]).
//!
//! Each replica keeps its own lock-free [`CircuitBreaker`](breaker_core::CircuitBreaker) and
//! decides every call from it, as if it were alone: **a call never waits on Redis**. A
//! background task syncs the breaker with the fleet's shared state every
//! [`sync_interval`](RedisSharing::sync_interval) (and at once when the local breaker changes
//! state), in one Lua script run atomically by Redis:
//!
//! - the calls the replica recorded since its last sync go into the fleet's **window** (ten
//!   buckets); the fleet's failure and slow-call rates over it trip the whole fleet, by the
//!   fleet's thresholds (kept with its state; a replica configured otherwise follows them and
//!   says so);
//! - a local decision (a trip, a probe's failure, the end of the open period) is **proposed on
//!   the fleet generation the replica last saw**: of replicas racing to make the same
//!   transition, exactly one makes it, and the others follow. A trip the replica's own rule
//!   made is a **vote**: the fleet trips once [`trip_quorum`](RedisSharing::trip_quorum)
//!   replicas agree (default 2), so one replica's own fault stays its own;
//! - the fleet's state (open with the time left, half-open, closed) is **followed** by every
//!   replica, so open and half-open reach every replica within one sync interval;
//! - half-open probes come from **one budget for the fleet**
//!   ([`fleet_probes`](RedisSharing::fleet_probes)): a replica admits a probe only with a
//!   token it was granted (see [`ProbeAllowance`](breaker_core::ProbeAllowance)).
//!
//! When Redis is unreachable, slow (a sync takes longer than
//! [`command_timeout`](RedisSharing::command_timeout)) or holds data this crate did not write,
//! the replica runs on its local state alone, says so in [`SharedBreaker::status`] (and in
//! metrics with the `metrics` feature), and heals when a sync succeeds again. When Redis loses
//! the fleet's state (a restart without persistence, a flush, eviction, a failover to a copy
//! that lags), the replicas re-seed it from their own: an open fleet stays open. Everything a
//! sync sends counts once, even when a reply is lost after Redis applied it. The consistency
//! model, every event with what the fleet does, and the Redis settings to use are in
//! `docs/consistency.md`.
//!
//! ```no_run
//! use breaker_core::Config;
//! use breaker_redis::RedisSharing;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = Config::builder()
//!     .name("payments") // replicas share state by name
//!     .count_window(100)
//!     .failure_rate(50.0)
//!     .build_config()?;
//! // BREAKER_REDIS_URL, or redis://127.0.0.1:6379
//! let payments = RedisSharing::from_env()?.start(config)?;
//! match payments.try_acquire() {
//!     Ok(permit) => { /* call the dependency, then permit.record(...) */ drop(permit) }
//!     Err(rejected) => println!("not now: {rejected}"),
//! }
//! println!("{:?}", payments.status().link);
//! # Ok(()) }
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

mod error;
pub mod names;
mod observer;
mod settings;
mod shared;
mod status;
mod sync;

pub use error::{SharingError, SyncError};
pub use observer::FleetObserver;
pub use settings::{RedisSharing, URL_ENV};
pub use shared::SharedBreaker;
pub use status::{FleetView, Link, SharingStatus};

/// This crate's README, compiled and run as doctests so it stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
