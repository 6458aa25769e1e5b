//! A [tower] middleware that puts a [`breaker_core`] circuit breaker in front of any
//! service: HTTP clients and servers (hyper, axum), gRPC (tonic), anything that is a
//! `tower::Service`.
//!
//! Laid out like tower's own middlewares: [`BreakerLayer`] makes [`Breaker`] services whose
//! [`future::ResponseFuture`] either drives the inner call and records its classified
//! outcome, or returns the rejection without calling the inner service. Errors are
//! [`Error`]s: a refused request, or the inner service's error as a tower `BoxError`;
//! [`error::rejection`] finds a refusal behind wrappers such as `Buffer`. [`KeyedBreakerLayer`] keeps one breaker per key (host, route, tenant)
//! in a bounded [`KeyedRegistry`].
//!
//! The happy path allocates nothing: the breaker handle is cloned into the future (use a
//! `&'static CircuitBreaker` to avoid even the `Arc` reference count).
//!
//! Feature `http`: [`HttpClassifier`] (5xx and transport errors fail, 4xx are the caller's).
//!
//! [tower]: https://docs.rs/tower
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

pub mod error;
pub mod future;
#[cfg(feature = "http")]
mod http;
mod keyed;
mod layer;
mod service;

pub use error::Error;
#[cfg(feature = "http")]
pub use http::{HttpClassifier, retry_after};

pub use keyed::{
    ByKey, KeyedBreaker, KeyedBreakerLayer, KeyedRegistry, KeyedRegistryBuilder, KeyedStats,
    SelectBreaker,
};
pub use layer::BreakerLayer;
pub use service::Breaker;

/// This crate's README, compiled and run as doctests so it stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
