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
    BreakerRef, CircuitBreaker, Classify, Clock, Observer, Permit, RejectReason, Rejected,
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
pub struct ServerBreakerLayer<C, O> {
    shared: Arc<Shared<C, O>>,
}

/// What every request of a [`ServerBreaker`] reads: one `Arc`, cloned once per request.
struct Shared<C, O> {
    breaker: Arc<CircuitBreaker<C, O>>,
    classify: HttpClassifier,
    state_header: Option<HeaderName>,
    exempt: Vec<String>,
    reject: Arc<RejectFn>,
}

/// The handle a request's permit keeps: the shared settings, which include the breaker. One
/// `Arc` clone per admitted request gives the future both.
struct SharedRef<C, O>(Arc<Shared<C, O>>);

impl<C, O> Clone for SharedRef<C, O> {
    fn clone(&self) -> Self {
        SharedRef(Arc::clone(&self.0))
    }
}

impl<C: Clock, O: Observer> BreakerRef for SharedRef<C, O> {
    type Clock = C;
    type Observer = O;

    #[inline]
    fn breaker(&self) -> &CircuitBreaker<C, O> {
        &self.0.breaker
    }
}

impl<C, O> Clone for ServerBreakerLayer<C, O> {
    fn clone(&self) -> Self {
        ServerBreakerLayer {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<C, O> fmt::Debug for ServerBreakerLayer<C, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerBreakerLayer")
            .field("classify", &self.shared.classify)
            .field("state_header", &self.shared.state_header)
            .field("exempt", &self.shared.exempt)
            .finish_non_exhaustive()
    }
}

impl<C, O> ServerBreakerLayer<C, O> {
    /// Guards handlers with `breaker`.
    pub fn new(breaker: Arc<CircuitBreaker<C, O>>) -> Self {
        ServerBreakerLayer {
            shared: Arc::new(Shared {
                breaker,
                classify: HttpClassifier::new(),
                state_header: None,
                exempt: Vec::new(),
                reject: Arc::new(default_rejection),
            }),
        }
    }

    fn with(mut self, change: impl FnOnce(&mut Shared<C, O>)) -> Self {
        match Arc::get_mut(&mut self.shared) {
            Some(shared) => change(shared),
            None => {
                // Configured after being cloned: the clones keep the old settings.
                let old = &self.shared;
                let mut shared = Shared {
                    breaker: Arc::clone(&old.breaker),
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

    /// Answers refused requests with `reject(&rejection)` instead of [`default_rejection`].
    pub fn on_reject(self, reject: impl Fn(&Rejected) -> Response + Send + Sync + 'static) -> Self {
        self.with(|s| s.reject = Arc::new(reject))
    }
}

impl<S, C, O> Layer<S> for ServerBreakerLayer<C, O> {
    type Service = ServerBreaker<S, C, O>;

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
pub struct ServerBreaker<S, C, O> {
    inner: S,
    shared: SharedRef<C, O>,
}

impl<S: Clone, C, O> Clone for ServerBreaker<S, C, O> {
    fn clone(&self) -> Self {
        ServerBreaker {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S, C, O> fmt::Debug for ServerBreaker<S, C, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerBreaker")
            .field("exempt", &self.shared.0.exempt)
            .finish_non_exhaustive()
    }
}

impl<S, C, O> Service<Request<Body>> for ServerBreaker<S, C, O>
where
    S: Service<Request<Body>, Response = Response, Error = Infallible>,
    C: Clock,
    O: Observer,
{
    type Response = Response;
    type Error = Infallible;
    type Future = ServerFuture<S::Future, C, O>;

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
            Ok(permit) => {
                let started = shared.breaker.call_started();
                Inner::Guarded {
                    fut: self.inner.call(req),
                    permit: Some(permit),
                    started,
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

fn add_state_header<C: Clock, O: Observer>(shared: &Shared<C, O>, response: &mut Response) {
    if let Some(name) = &shared.state_header {
        let state = shared.breaker.state().as_str();
        response
            .headers_mut()
            .insert(name.clone(), HeaderValue::from_static(state));
    }
}

pin_project! {
    /// The future of a [`ServerBreaker`].
    pub struct ServerFuture<F, C, O>
    where
        C: Clock,
        O: Observer,
    {
        #[pin]
        inner: Inner<F, C, O>,
    }
}

pin_project! {
    #[project = InnerProj]
    enum Inner<F, C, O>
    where
        C: Clock,
        O: Observer,
    {
        Guarded {
            #[pin]
            fut: F,
            permit: Option<Permit<SharedRef<C, O>>>,
            started: u64,
        },
        Rejected {
            response: Option<Response>,
        },
        Exempt {
            #[pin]
            fut: F,
        },
    }

    impl<F, C, O> PinnedDrop for Inner<F, C, O>
    where
        C: Clock,
        O: Observer,
    {
        /// A request dropped before its handler answered (the client went away, a server
        /// timeout): neutral, unless it had already run past the slow-call duration.
        fn drop(this: Pin<&mut Self>) {
            if let InnerProj::Guarded { permit, started, .. } = this.project() {
                if let Some(permit) = permit.take() {
                    abandon(permit, *started);
                }
            }
        }
    }
}

#[cold]
#[inline(never)]
fn abandon<C: Clock, O: Observer>(permit: Permit<SharedRef<C, O>>, started: u64) {
    let ran = permit.breaker().breaker().elapsed_since(started);
    permit.abandon(ran);
}

impl<F, C: Clock, O: Observer> fmt::Debug for ServerFuture<F, C, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.inner {
            Inner::Guarded { .. } => "guarded",
            Inner::Rejected { .. } => "rejected",
            Inner::Exempt { .. } => "exempt",
        };
        f.debug_struct("ServerFuture").field("kind", &kind).finish()
    }
}

impl<F, C, O> Future for ServerFuture<F, C, O>
where
    F: Future<Output = Result<Response, Infallible>>,
    C: Clock,
    O: Observer,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().inner.project() {
            InnerProj::Exempt { fut } => fut.poll(cx),
            InnerProj::Rejected { response } => match response.take() {
                Some(response) => Poll::Ready(Ok(response)),
                None => Poll::Ready(Ok(StatusCode::INTERNAL_SERVER_ERROR.into_response())),
            },
            InnerProj::Guarded {
                fut,
                permit,
                started,
            } => {
                let result = std::task::ready!(fut.poll(cx));
                let Some(permit) = permit.take() else {
                    return Poll::Ready(result);
                };
                let shared = &permit.breaker().0;
                let outcome = shared.classify.classify(&result);
                let ran = shared.breaker.elapsed_since(*started);
                // Kept only when a state header is wanted, to read the state after the record.
                let for_header = shared.state_header.is_some().then(|| Arc::clone(shared));
                permit.record(outcome, ran);
                let Ok(mut response) = result;
                if let Some(shared) = for_header {
                    add_state_header(&shared, &mut response);
                }
                Poll::Ready(Ok(response))
            }
        }
    }
}
