//! Server middleware: shed load with `503 Service Unavailable` while the breaker is open.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::response::{IntoResponse, Response};

use breaker_core::{
    BreakerRef, CircuitBreaker, Classify, ConfigError, ConfigValue, IntoBreakerRef, Permit,
    RejectReason, Rejected,
};
use http::{HeaderName, HeaderValue, Request, StatusCode, header};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use breaker_tower::HttpClassifier;

type RejectFn = dyn Fn(&Rejected) -> Response + Send + Sync;

/// The `Retry-After` a client gets, in whole seconds: the time until the breaker admits a
/// probe, rounded up; 1 s while half-open with every probe in flight (they finish soon);
/// none when forced open (an operator decides when it ends).
pub fn retry_after_secs(rejected: &Rejected) -> Option<u64> {
    match (rejected.reason(), rejected.retry_after()) {
        (_, Some(d)) => Some((d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)),
        (RejectReason::HalfOpenFull, None) => Some(1),
        _ => None,
    }
}

/// The default answer to a refused request, written for the HTTP client that gets it:
/// `503 Service Unavailable`, a `Retry-After` header in whole seconds ([`retry_after_secs`]),
/// and a small JSON body with a short reason, the breaker state and the same retry-after:
///
/// ```json
/// {"error": "service_unavailable", "reason": "circuit_open", "state": "open", "retry_after_secs": 3}
/// ```
///
/// `reason` is `circuit_open`, `probing` (half-open, probes in flight) or `isolated`
/// (forced open by an operator).
pub fn default_rejection(rejected: &Rejected) -> Response {
    let retry_after = retry_after_secs(rejected);
    let reason = match rejected.reason() {
        RejectReason::Open => "circuit_open",
        RejectReason::HalfOpenFull => "probing",
        RejectReason::ForcedOpen => "isolated",
        _ => "unavailable",
    };
    let body = serde_json::json!({
        "error": "service_unavailable",
        "reason": reason,
        "state": rejected.state().as_str(),
        "retry_after_secs": retry_after,
    });
    let mut response = (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response();
    if let Some(secs) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

/// Protects the handlers behind it with a circuit breaker: responses are classified
/// ([`HttpClassifier`]: 5xx are failures by default), and while the breaker is open requests
/// are answered at once with [`default_rejection`] (or your own response) without reaching
/// the handler.
///
/// ```
/// use axum::{Router, routing::get};
/// use breaker_axum::ServerBreakerLayer;
/// use breaker_core::CircuitBreaker;
/// use http::HeaderName;
/// use std::sync::Arc;
///
/// let breaker = Arc::new(CircuitBreaker::builder().count_window(50).build()?);
/// // Any handle: a breaker by value, an `Arc` shared with a registry, a `&'static` one.
/// let app: Router = Router::new()
///     .route("/api/orders", get(|| async { "orders" }))
///     .route("/health", get(|| async { "ok" }))
///     .layer(
///         ServerBreakerLayer::new(breaker)
///             .state_header(HeaderName::from_static("x-circuit-breaker"))
///             .exempt("/health"),
///     );
/// # Ok::<(), breaker_core::ConfigError>(())
/// ```
pub struct ServerBreakerLayer<B> {
    shared: Arc<Shared<B>>,
}

/// What every request of a [`ServerBreaker`] reads: one `Arc`, cloned once per request.
struct Shared<B> {
    breaker: B,
    /// The timeout an outer layer enforces (tower-http's `TimeoutLayer`), if set.
    timeout: Option<std::time::Duration>,
    classify: HttpClassifier,
    state_header: Option<HeaderName>,
    exempt: Vec<String>,
    reject: Arc<RejectFn>,
}

/// The handle a request's permit keeps: the shared settings, which include the breaker. One
/// `Arc` clone per admitted request gives the future both.
struct SharedRef<B>(Arc<Shared<B>>);

impl<B> Clone for SharedRef<B> {
    fn clone(&self) -> Self {
        SharedRef(Arc::clone(&self.0))
    }
}

impl<B: BreakerRef> BreakerRef for SharedRef<B> {
    type Clock = B::Clock;
    type Observer = B::Observer;

    #[inline]
    fn breaker(&self) -> &CircuitBreaker<B::Clock, B::Observer> {
        self.0.breaker.breaker()
    }
}

impl<B> Clone for ServerBreakerLayer<B> {
    fn clone(&self) -> Self {
        ServerBreakerLayer {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<B> fmt::Debug for ServerBreakerLayer<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerBreakerLayer")
            .field("classify", &self.shared.classify)
            .field("state_header", &self.shared.state_header)
            .field("exempt", &self.shared.exempt)
            .finish_non_exhaustive()
    }
}

impl<B: BreakerRef> ServerBreakerLayer<B> {
    /// Guards handlers with `breaker`: a breaker, an `Arc` of one, a `&'static` one, any
    /// [`BreakerRef`].
    pub fn new(breaker: impl IntoBreakerRef<Ref = B>) -> Self {
        ServerBreakerLayer {
            shared: Arc::new(Shared {
                breaker: breaker.into_breaker_ref(),
                timeout: None,
                classify: HttpClassifier::new(),
                state_header: None,
                exempt: Vec::new(),
                reject: Arc::new(default_rejection),
            }),
        }
    }

    fn with(mut self, change: impl FnOnce(&mut Shared<B>)) -> Self {
        match Arc::get_mut(&mut self.shared) {
            Some(shared) => change(shared),
            None => {
                // Configured after being cloned: the clones keep the old settings.
                let old = &self.shared;
                let mut shared = Shared {
                    breaker: old.breaker.clone(),
                    timeout: old.timeout,
                    classify: old.classify.clone(),
                    state_header: old.state_header.clone(),
                    exempt: old.exempt.clone(),
                    reject: Arc::clone(&old.reject),
                };
                change(&mut shared);
                self.shared = Arc::new(shared);
            }
        }
        self
    }

    /// Classifies responses with `classify`.
    pub fn classify(self, classify: HttpClassifier) -> Self {
        self.with(|s| s.classify = classify)
    }

    /// Adds a header reporting the breaker's state (`closed`, `open`, `half_open`, ...) to
    /// every guarded response, e.g. `HeaderName::from_static("x-circuit-breaker")`.
    pub fn state_header(self, name: HeaderName) -> Self {
        self.with(|s| s.state_header = Some(name))
    }

    /// Lets requests for exactly `path` through unguarded and uncounted (health checks,
    /// metrics).
    pub fn exempt(self, path: impl Into<String>) -> Self {
        let path = path.into();
        self.with(|s| s.exempt.push(path))
    }

    /// The timeout a layer outside this one enforces (tower-http's `TimeoutLayer`, a
    /// server's request timeout): a request it drops counts as timed out, a failure, so a
    /// handler that hangs trips the breaker. Without it (and without a slow-call duration) a
    /// request dropped by an outer timeout is neutral, like one whose client went away.
    /// Allowed: more than zero.
    ///
    /// ```
    /// use breaker_axum::ServerBreakerLayer;
    /// use breaker_core::CircuitBreaker;
    /// use std::time::Duration;
    ///
    /// let layer = ServerBreakerLayer::new(CircuitBreaker::builder().build()?)
    ///     .timeout(Duration::from_secs(10))?;
    /// # let _ = layer;
    /// # Ok::<(), breaker_core::ConfigError>(())
    /// ```
    pub fn timeout(self, timeout: std::time::Duration) -> Result<Self, ConfigError> {
        if timeout.is_zero() {
            return Err(ConfigError::new(
                "timeout",
                ConfigValue::Duration(timeout),
                "a duration > 0",
            ));
        }
        Ok(self.with(|s| s.timeout = Some(timeout)))
    }

    /// Answers refused requests with `reject(&rejection)` instead of [`default_rejection`].
    pub fn on_reject(self, reject: impl Fn(&Rejected) -> Response + Send + Sync + 'static) -> Self {
        self.with(|s| s.reject = Arc::new(reject))
    }
}

impl<S, B> Layer<S> for ServerBreakerLayer<B> {
    type Service = ServerBreaker<S, B>;

    fn layer(&self, inner: S) -> Self::Service {
        ServerBreaker {
            inner,
            shared: SharedRef(Arc::clone(&self.shared)),
        }
    }
}

/// The service made by [`ServerBreakerLayer`].
///
/// `poll_ready` passes through to the inner service (axum's routes are always ready); each
/// `call` asks the breaker, so exempt paths are never refused.
pub struct ServerBreaker<S, B> {
    inner: S,
    shared: SharedRef<B>,
}

impl<S: Clone, B> Clone for ServerBreaker<S, B> {
    fn clone(&self) -> Self {
        ServerBreaker {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S, B> fmt::Debug for ServerBreaker<S, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerBreaker")
            .field("exempt", &self.shared.0.exempt)
            .finish_non_exhaustive()
    }
}

impl<S, B> Service<Request<Body>> for ServerBreaker<S, B>
where
    S: Service<Request<Body>, Response = Response, Error = Infallible>,
    B: BreakerRef,
{
    type Response = Response;
    type Error = Infallible;
    type Future = ServerFuture<S::Future, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let shared = &self.shared.0;
        if shared.exempt.iter().any(|p| p == req.uri().path()) {
            return ServerFuture {
                inner: Inner::Exempt {
                    fut: self.inner.call(req),
                },
            };
        }
        let inner = match Permit::acquire(&self.shared) {
            Ok(mut permit) => {
                if let Some(timeout) = shared.timeout {
                    // The outer layer's timer started before this permit.
                    permit.set_outer_deadline(timeout);
                }
                Inner::Guarded {
                    fut: self.inner.call(req),
                    permit: Some(permit),
                }
            }
            Err(rejected) => {
                let mut response = (shared.reject)(&rejected);
                add_state_header(shared, &mut response);
                Inner::Rejected {
                    response: Some(response),
                }
            }
        };
        ServerFuture { inner }
    }
}

fn add_state_header<B: BreakerRef>(shared: &Shared<B>, response: &mut Response) {
    if let Some(name) = &shared.state_header {
        let state = shared.breaker.breaker().state().as_str();
        response
            .headers_mut()
            .insert(name.clone(), HeaderValue::from_static(state));
    }
}

pin_project! {
    /// The future of a [`ServerBreaker`].
    ///
    /// A request dropped before its handler answered (the client went away, an outer
    /// timeout) was abandoned: neutral, unless it had already run past the layer's
    /// [`timeout`](ServerBreakerLayer::timeout) or the breaker's slow-call duration. Polling it again after it returned its response panics, as
    /// polling any completed future may.
    pub struct ServerFuture<F, B: BreakerRef> {
        #[pin]
        inner: Inner<F, B>,
    }
}

pin_project! {
    #[project = InnerProj]
    enum Inner<F, B: BreakerRef> {
        Guarded {
            #[pin]
            fut: F,
            permit: Option<Permit<SharedRef<B>>>,
        },
        Rejected {
            response: Option<Response>,
        },
        Exempt {
            #[pin]
            fut: F,
        },
    }
}

impl<F, B: BreakerRef> fmt::Debug for ServerFuture<F, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.inner {
            Inner::Guarded { .. } => "guarded",
            Inner::Rejected { .. } => "rejected",
            Inner::Exempt { .. } => "exempt",
        };
        f.debug_struct("ServerFuture").field("kind", &kind).finish()
    }
}

impl<F, B> Future for ServerFuture<F, B>
where
    F: Future<Output = Result<Response, Infallible>>,
    B: BreakerRef,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().inner.project() {
            InnerProj::Exempt { fut } => fut.poll(cx),
            InnerProj::Rejected { response } => match response.take() {
                Some(response) => Poll::Ready(Ok(response)),
                None => polled_after_completion(),
            },
            InnerProj::Guarded { fut, permit } => {
                if permit.is_none() {
                    polled_after_completion()
                }
                let result = std::task::ready!(fut.poll(cx));
                let Some(permit) = permit.take() else {
                    polled_after_completion()
                };
                let shared = &permit.breaker().0;
                let outcome = shared.classify.classify(&result);
                // Kept only when a state header is wanted, to read the state after the record.
                let for_header = shared.state_header.is_some().then(|| Arc::clone(shared));
                permit.record(outcome);
                let Ok(mut response) = result;
                if let Some(shared) = for_header {
                    add_state_header(&shared, &mut response);
                }
                Poll::Ready(Ok(response))
            }
        }
    }
}

#[cold]
#[inline(never)]
fn polled_after_completion() -> ! {
    panic!("breaker_axum::ServerFuture polled after it completed")
}
