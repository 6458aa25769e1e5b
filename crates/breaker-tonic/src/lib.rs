//! Circuit breakers for [tonic] gRPC clients and servers, one `.layer(...)` away.
//!
//! - [`GrpcBreakerLayer`]: around a client's `Channel`, or a server's services
//!   (`Server::builder().layer(...)`). Calls are classified by their `grpc-status`, from the
//!   response headers (trailers-only answers, such as a handler's `Err(Status)`) or from the
//!   trailers at the end of the body (normal and streaming answers), with a
//!   [`GrpcClassifier`]. A refused call gets `UNAVAILABLE` with a message saying the breaker
//!   is open and [`RETRY_PUSHBACK`] metadata saying when to retry
//!   ([`retry_pushback`] reads it), and never touches the network or the handler.
//! - [`KeyedGrpcBreakerLayer`]: one breaker per method or per service, in a bounded
//!   registry.
//! - [`BreakerInterceptor`]: admission only, for where only an interceptor fits.
//!
//! ```no_run
//! use std::sync::Arc;
//! use breaker_core::CircuitBreaker;
//! use breaker_tonic::GrpcBreakerLayer;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let breaker = Arc::new(CircuitBreaker::builder().name("inventory-grpc").build()?);
//! let channel = tonic::transport::Endpoint::from_static("http://127.0.0.1:50051")
//!     .connect()
//!     .await?;
//! let channel = tower::ServiceBuilder::new()
//!     .layer(GrpcBreakerLayer::new(breaker))
//!     .service(channel);
//! // let client = InventoryClient::new(channel); // any generated client
//! # let _ = channel;
//! # Ok(())
//! # }
//! ```
//!
//! [tonic]: https://docs.rs/tonic
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

mod body;
mod call;
mod classify;
mod future;
mod interceptor;
mod keyed;
mod service;
mod status;

pub use body::GuardedBody;
pub use classify::GrpcClassifier;
pub use future::ResponseFuture;
pub use interceptor::BreakerInterceptor;
pub use keyed::{KeyBy, KeyedGrpcBreaker, KeyedGrpcBreakerLayer};
pub use service::{GrpcBreaker, GrpcBreakerLayer};
pub use status::{RETRY_PUSHBACK, rejection_status, retry_pushback};

/// This crate's README, compiled and run as doctests so it stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
