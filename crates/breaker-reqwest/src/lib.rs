//! Circuit breakers for [reqwest], as a [reqwest-middleware] [`Middleware`]: one breaker per
//! origin (`scheme://host[:port]`: `http://h` and `https://h` are two; made on first use, in a
//! bounded [`KeyedRegistry`]), beside `reqwest-retry` and `reqwest-tracing` in the same
//! client.
//!
//! - **What counts.** A `5xx` or `429 Too Many Requests` answer, a timeout, a connection
//!   that fails: failures. Other `4xx`: the caller's mistake, the origin answered. A request
//!   reqwest could not even build: nothing.
//! - **Upstream hints.** A failing answer's `Retry-After` (seconds or an HTTP date) is a
//!   [`Pushback`]: the breaker it opens stays open at least that long, up to the breaker's
//!   [`max_pushback`](breaker_core::Builder::max_pushback).
//! - **Refusals.** While an origin's breaker is open its requests are not sent: they fail at
//!   once with an error [`rejection`] recognises, without matching strings, and that says
//!   when to try again.
//! - **Deadlines.** A request's own timeout (`RequestBuilder::timeout`) travels with its
//!   permit: a request dropped at or past it timed out.
//!
//! The call ends when the answer's headers arrive: reading the body is the caller's.
//!
//! ```no_run
//! use breaker_core::CircuitBreaker;
//! use breaker_reqwest::{BreakerMiddleware, rejection};
//! use std::time::Duration;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let breakers = BreakerMiddleware::per_origin(10_000, |_origin: &String| {
//!     CircuitBreaker::builder()
//!         .count_window(50)
//!         .minimum_calls(10)
//!         .failure_rate(50.0)
//!         .thread_counters(0) // many small breakers
//!         .build()
//!         .expect("valid settings")
//! })?;
//! let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
//!     .with(breakers)
//!     .build();
//! let sent = client
//!     .get("https://api.example.com/prices")
//!     .timeout(Duration::from_secs(2))
//!     .send()
//!     .await;
//! match sent {
//!     Ok(answer) => println!("{}", answer.status()),
//!     Err(e) => match rejection(&e) {
//!         // Not sent: serve a fallback, tell the user when to come back.
//!         Some(refused) => println!("not sent; retry {}", refused.retry_hint()),
//!         None => println!("failed: {e}"),
//!     },
//! }
//! # Ok(())
//! # }
//! ```
//!
//! [reqwest]: https://docs.rs/reqwest
//! [reqwest-middleware]: https://docs.rs/reqwest-middleware
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use breaker_core::{
    CircuitBreaker, Clock, ConfigError, MonotonicClock, NoopObserver, Observer, Outcome, Permit,
    Pushback, Rejected,
};
use breaker_tower::{HttpClassifier, KeyedRegistry, retry_after};
use http::Extensions;
use reqwest::{Request, Response};
use reqwest_middleware::{Middleware, Next};

/// Guards every request with the breaker of its origin (`scheme://host[:port]`, the port
/// written only when it is not the scheme's default). See the crate's docs.
pub struct BreakerMiddleware<C = MonotonicClock, O = NoopObserver> {
    origins: Arc<KeyedRegistry<String, C, O>>,
    classify: HttpClassifier,
}

impl<C, O> Clone for BreakerMiddleware<C, O> {
    fn clone(&self) -> Self {
        BreakerMiddleware {
            origins: Arc::clone(&self.origins),
            classify: self.classify.clone(),
        }
    }
}

impl<C, O> fmt::Debug for BreakerMiddleware<C, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerMiddleware")
            .field("origins", &self.origins)
            .field("classify", &self.classify)
            .finish()
    }
}

impl<C, O> BreakerMiddleware<C, O> {
    /// One breaker per origin, made by `make` on the origin's first request, at most
    /// `capacity` of them (see [`KeyedRegistry`] for what happens beyond: a flood of new
    /// origins does not reset the breaker of one that is down). Allowed: `capacity >= 1`.
    /// For a registry tuned otherwise (its share for breakers in trouble, an idle TTL),
    /// build it with [`KeyedRegistry::builder`] and pass it to [`new`](Self::new).
    pub fn per_origin(
        capacity: usize,
        make: impl Fn(&String) -> CircuitBreaker<C, O> + Send + Sync + 'static,
    ) -> Result<Self, ConfigError>
    where
        C: Clock,
        O: Observer,
    {
        Ok(Self::new(Arc::new(KeyedRegistry::new(capacity, make)?)))
    }

    /// The breakers of `origins`, a registry you keep too (to report it on `/health`, or
    /// in an admin view: `Registry::register_group`).
    pub fn new(origins: Arc<KeyedRegistry<String, C, O>>) -> Self {
        BreakerMiddleware {
            origins,
            classify: HttpClassifier::outbound(),
        }
    }

    /// Classifies answers by status with `classify` instead of
    /// [`HttpClassifier::outbound`] (5xx and 429 fail).
    pub fn classify(mut self, classify: HttpClassifier) -> Self {
        self.classify = classify;
        self
    }

    /// The per-origin breakers, by `scheme://host[:port]`.
    pub fn origins(&self) -> &Arc<KeyedRegistry<String, C, O>> {
        &self.origins
    }
}

/// The name of `url`'s breaker: its origin, `scheme://host[:port]`, as the `url` crate
/// normalises it (lower-case host, punycode, no default port). A slice of the URL (no
/// allocation) unless it carries a user name or password, which never go in a name.
fn origin_of(url: &reqwest::Url) -> Cow<'_, str> {
    if url.username().is_empty() && url.password().is_none() {
        Cow::Borrowed(&url[..url::Position::AfterPort])
    } else {
        Cow::Owned(format!(
            "{}://{}",
            url.scheme(),
            &url[url::Position::BeforeHost..url::Position::AfterPort]
        ))
    }
}

#[async_trait::async_trait]
impl<C, O> Middleware for BreakerMiddleware<C, O>
where
    C: Clock + Send + Sync + 'static,
    O: Observer + Send + Sync + 'static,
{
    async fn handle(
        &self,
        req: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        let origin = origin_of(req.url());
        let breaker = self.origins.get(origin.as_ref());
        let mut permit = match Permit::acquire(&breaker) {
            Ok(permit) => permit,
            Err(rejected) => {
                return Err(reqwest_middleware::Error::middleware(RejectedRequest {
                    origin: origin.into_owned(),
                    rejected,
                }));
            }
        };
        if let Some(timeout) = req.timeout() {
            permit.set_deadline(*timeout);
        }
        let result = next.run(req, extensions).await;
        match &result {
            Ok(response) => {
                let outcome = self.classify.classify_status(response.status());
                let pushback = match outcome {
                    Outcome::Failure => retry_after(response.headers()).map(Pushback::After),
                    _ => None,
                };
                permit.record_with_pushback(outcome, pushback);
            }
            Err(e) => permit.record(classify_error(e)),
        }
        result
    }
}

/// How a request that got no answer counts. A transport error (a timeout, a connection
/// refused or reset, a broken answer) is the origin's failure; a request reqwest could not
/// build or follow (a bad URL, a redirect loop) was never the origin's to fail. Another
/// middleware's error counts as the transport error it wraps if it can be found in its
/// chain (with the `reqwest-retry` feature, inside `reqwest-retry`'s `RetryError`, which
/// hides it from the chain), and as nothing otherwise (an auth middleware that could not
/// get a token, another breaker's refusal: the origin was not asked).
fn classify_error(error: &reqwest_middleware::Error) -> Outcome {
    match error {
        reqwest_middleware::Error::Reqwest(e) => classify_transport(e),
        reqwest_middleware::Error::Middleware(e) => e
            .chain()
            .find_map(|link| {
                if link.is::<Rejected>() {
                    return Some(Outcome::Ignored);
                }
                #[cfg(feature = "reqwest-retry")]
                if let Some(retry) = link.downcast_ref::<reqwest_retry::RetryError>() {
                    return Some(match retry {
                        reqwest_retry::RetryError::Error(e)
                        | reqwest_retry::RetryError::WithRetries { err: e, .. } => {
                            classify_error(e)
                        }
                    });
                }
                link.downcast_ref::<reqwest::Error>()
                    .map(classify_transport)
                    .or_else(|| {
                        link.downcast_ref::<reqwest_middleware::Error>()
                            .map(classify_error)
                    })
            })
            .unwrap_or(Outcome::Ignored),
    }
}

fn classify_transport(error: &reqwest::Error) -> Outcome {
    if error.is_builder() || error.is_redirect() {
        Outcome::Ignored
    } else {
        Outcome::Failure
    }
}

/// The error inside the [`reqwest_middleware::Error`] of a request a host's breaker refused:
/// it was not sent. Find it with [`rejection`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RejectedRequest {
    /// The origin whose breaker refused it (`scheme://host[:port]`).
    pub origin: String,
    /// The refusal: why, and when to try again.
    pub rejected: Rejected,
}

impl fmt::Display for RejectedRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the circuit breaker for {} refused the request: it was not sent",
            self.origin
        )
    }
}

/// Its source is the [`Rejected`] refusal (why, and when to retry), so that wrappers that
/// forward only the sources of what they wrap (`#[error(transparent)]`) still carry it.
impl std::error::Error for RejectedRequest {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.rejected)
    }
}

/// The breaker's refusal, if `error` is a request a [`BreakerMiddleware`] refused to send
/// (with the time until a retry is allowed, while open). Found however deep other
/// middleware (`reqwest-retry`'s `RetryError`, your own) wrapped it.
pub fn rejection(error: &reqwest_middleware::Error) -> Option<&Rejected> {
    match error {
        reqwest_middleware::Error::Middleware(e) => e.chain().find_map(|link| {
            link.downcast_ref::<Rejected>().or_else(|| {
                link.downcast_ref::<reqwest_middleware::Error>()
                    .and_then(rejection)
            })
        }),
        reqwest_middleware::Error::Reqwest(_) => None,
    }
}

/// This crate's README, compiled and run as doctests so it stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
