//! Runtime-agnostic async adapters for [`breaker_core`].
//!
//! - [`GuardExt::guard`] wraps any future returning `Result`: a permit is acquired on first
//!   poll (or the call is rejected without polling the future), the result is classified and
//!   recorded with its duration (slow calls count toward the slow-call rate).
//! - [`GuardedCall::timeout`] abandons a call after a [`Timeout`] on a [`Timer`]
//!   (`tokio`, `async-std`, `smol` features): it counts as a failure and returns
//!   [`Error::Timeout`].
//! - Cancellation is safe: a guarded future dropped while its call is young records nothing
//!   and gives back its half-open slot; one dropped after the call ran past its timeout (or
//!   the breaker's slow-call duration) counts as a failure, so a hanging dependency trips the
//!   breaker even when callers give up on it with timeouts of their own.
//! - Fallbacks: [`or_value`](GuardedCall::or_value), [`or_else`](GuardedCall::or_else),
//!   [`or_else_async`](GuardedCall::or_else_async), [`or_cached`](GuardedCall::or_cached)
//!   with a bounded, TTL'd [`ResponseCache`]; answers say where they came from
//!   ([`Served`], [`Source`]) and each fallback use is reported to the observer.
//! - Streams: [`GuardExt::guard_stream`].
//!
//! No runtime is pulled in unless its feature is enabled, and the happy path does not
//! allocate.
//!
// The example needs the `tokio` feature (its timer): without it, it is shown but not run.
#![cfg_attr(feature = "tokio", doc = "```")]
#![cfg_attr(not(feature = "tokio"), doc = "```ignore")]
//! use breaker_async::{GuardExt, Timeout, TokioTimer};
//! use breaker_core::CircuitBreaker;
//! use std::time::Duration;
//!
//! async fn fetch_price(symbol: &str) -> Result<u32, std::io::Error> {
//!     Ok(symbol.len() as u32)
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let breaker = CircuitBreaker::builder().consecutive_failures(5).build()?;
//! let timeout = Timeout::new(TokioTimer, Duration::from_millis(300))?;
//!
//! let price = breaker
//!     .guard(fetch_price("ACME"))
//!     .timeout(timeout)
//!     .or_value(0) // answer 0 when the call is rejected, times out or fails
//!     .await;
//! println!("{} (fallback: {})", price.value, price.is_fallback());
//! # Ok(())
//! # }
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

mod error;
mod fallback;
mod guard;
mod stream;
mod timer;

pub use error::{Cause, Error};
pub use fallback::{ResponseCache, Served, Source};
pub use guard::{BreakerRef, Classify, ErrorsAreFailures, GuardExt, Guarded, GuardedCall};
pub use stream::GuardedStream;
#[cfg(any(feature = "async-std", feature = "smol"))]
pub use timer::AsyncIoTimer;
#[cfg(feature = "async-std")]
pub use timer::AsyncStdTimer;
#[cfg(feature = "smol")]
pub use timer::SmolTimer;
pub use timer::{NoTimer, Timeout, Timer};
#[cfg(feature = "tokio")]
pub use timer::{TokioClock, TokioTimer};

/// This crate's README, compiled and run as doctests so it stays true.
/// Its examples use the `tokio` feature's timer.
#[cfg(all(doctest, feature = "tokio"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
