//! Server middleware: shed load with `503 Service Unavailable` while the breaker is open.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use breaker_core::{CircuitBreaker, Clock, Observer, Rejected};
use breaker_tower::Breaker;
use http::{HeaderName, HeaderValue, Request, StatusCode, header};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::HttpClassifier;

type RejectFn = dyn Fn(&Rejected) -> Response + Send + Sync;

/// The default answer to a refused request: `503 Service Unavailable`, a `Retry-After`
/// header in whole seconds (rounded up; omitted when unknown) and a small JSON body:
/// `{"error": ..., "state": "open", "retry_after": 3}`.
pub fn default_rejection(rejected: &Rejected) -> Response {
    let retry_after = rejected
        .retry_after()
        .map(|d| d.as_secs() + u64::from(d.subsec_nanos() > 0));
    let body = serde_json::json!({
        "error": rejected.to_string(),
        "state": rejected.state().as_str(),
        "retry_after": retry_after,
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
    breaker: Arc<CircuitBreaker<C, O>>,
    classify: HttpClassifier,
    state_header: Option<HeaderName>,
    exempt: Arc<[String]>,
    reject: Arc<RejectFn>,
}

impl<C, O> Clone for ServerBreakerLayer<C, O> {
    fn clone(&self) -> Self {
        ServerBreakerLayer {
            breaker: Arc::clone(&self.breaker),
            classify: self.classify,
            state_header: self.state_header.clone(),
            exempt: Arc::clone(&self.exempt),
            reject: Arc::clone(&self.reject),
        }
    }
}

impl<C, O> fmt::Debug for ServerBreakerLayer<C, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerBreakerLayer")
            .field("classify", &self.classify)
            .field("state_header", &self.state_header)
            .field("exempt", &self.exempt)
            .finish_non_exhaustive()
    }
}

impl<C, O> ServerBreakerLayer<C, O> {
    /// Guards handlers with `breaker`.
    pub fn new(breaker: Arc<CircuitBreaker<C, O>>) -> Self {
        ServerBreakerLayer {
            breaker,
            classify: HttpClassifier::new(),
            state_header: None,
            exempt: Arc::from(Vec::new()),
            reject: Arc::new(default_rejection),
        }
    }

    /// Classifies responses with `classify`.
    pub fn classify(mut self, classify: HttpClassifier) -> Self {
        self.classify = classify;
        self
    }

    /// Adds a header reporting the breaker's state (`closed`, `open`, `half_open`, ...) to
    /// every guarded response, e.g. `HeaderName::from_static("x-circuit-breaker")`.
    pub fn state_header(mut self, name: HeaderName) -> Self {
        self.state_header = Some(name);
        self
    }

    /// Lets requests for exactly `path` through unguarded and uncounted (health checks,
    /// metrics).
    pub fn exempt(mut self, path: impl Into<String>) -> Self {
        let mut paths = self.exempt.to_vec();
        paths.push(path.into());
        self.exempt = Arc::from(paths);
        self
    }

    /// Answers refused requests with `reject(&rejection)` instead of [`default_rejection`].
    pub fn on_reject(
        mut self,
        reject: impl Fn(&Rejected) -> Response + Send + Sync + 'static,
    ) -> Self {
        self.reject = Arc::new(reject);
        self
    }
}

impl<S, C, O> Layer<S> for ServerBreakerLayer<C, O> {
    type Service = ServerBreaker<S, C, O>;

    fn layer(&self, inner: S) -> Self::Service {
        ServerBreaker {
            guarded: Breaker::new(inner, Arc::clone(&self.breaker), self.classify),
            config: self.clone(),
        }
    }
}

/// The service made by [`ServerBreakerLayer`].
pub struct ServerBreaker<S, C, O> {
    guarded: Breaker<S, Arc<CircuitBreaker<C, O>>, HttpClassifier>,
    config: ServerBreakerLayer<C, O>,
}

impl<S: Clone, C, O> Clone for ServerBreaker<S, C, O> {
    fn clone(&self) -> Self {
        ServerBreaker {
            guarded: self.guarded.clone(),
            config: self.config.clone(),
        }
    }
}

impl<S, C, O> fmt::Debug for ServerBreaker<S, C, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerBreaker")
            .field("config", &self.config)
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
        self.guarded.get_mut().poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        if self.config.exempt.iter().any(|p| p == req.uri().path()) {
            return ServerFuture {
                inner: Inner::Exempt {
                    fut: self.guarded.get_mut().call(req),
                },
            };
        }
        ServerFuture {
            inner: Inner::Guarded {
                fut: self.guarded.call(req),
                config: self.config.clone(),
            },
        }
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
            fut: breaker_tower::future::ResponseFuture<F, Arc<CircuitBreaker<C, O>>, HttpClassifier>,
            config: ServerBreakerLayer<C, O>,
        },
        Exempt {
            #[pin]
            fut: F,
        },
    }
}

impl<F, C: Clock, O: Observer> fmt::Debug for ServerFuture<F, C, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.inner {
            Inner::Guarded { .. } => "guarded",
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
            InnerProj::Guarded { fut, config } => {
                let mut response = match std::task::ready!(fut.poll(cx)) {
                    Ok(response) => response,
                    Err(breaker_tower::Error::Rejected(rejected)) => (config.reject)(&rejected),
                    Err(breaker_tower::Error::Inner(never)) => match never {},
                };
                if let Some(name) = &config.state_header {
                    let state = config.breaker.state().as_str();
                    response
                        .headers_mut()
                        .insert(name.clone(), HeaderValue::from_static(state));
                }
                Poll::Ready(Ok(response))
            }
        }
    }
}
