//! [axum] integration for [`breaker_core`] circuit breakers.
//!
//! - [`ServerBreakerLayer`]: server middleware protecting handlers. While the breaker is
//!   open it answers `503 Service Unavailable` at once, with a `Retry-After` header (whole
//!   seconds, rounded up) and a small JSON body; the response is customisable, an optional
//!   header reports the breaker state, and paths (health checks) can be exempted.
//! - [`HttpClassifier`] (re-exported from `breaker_tower`, where it serves any tower HTTP
//!   stack): 5xx and transport errors are failures, 4xx are the caller's fault (successes);
//!   configurable with any closure. Use it with `breaker_tower`'s layers around any tower HTTP
//!   client (hyper-util's, for outbound calls, one breaker per upstream host with
//!   `KeyedBreakerLayer`).
//! - [`health_routes`]: `GET /health` and `GET /ready` over a [`Registry`](breaker_core::Registry)
//!   of named breakers, for Kubernetes probes.
//!
//! [axum]: https://docs.rs/axum
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

mod health;
mod server;

pub use breaker_tower::HttpClassifier;
pub use health::health_routes;
pub use server::{
    ServerBreaker, ServerBreakerLayer, ServerFuture, default_rejection, retry_after_secs,
};

/// The README's examples (core quickstart, axum server), compiled and run as doctests here,
/// where every crate they use is a dependency, so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeExamples;

/// This crate's README, compiled and run as doctests so it stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
