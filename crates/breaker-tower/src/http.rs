//! HTTP response classification (feature `http`): for any tower HTTP client or server
//! (hyper, axum, reqwest-middleware stacks, tonic's HTTP layer).

use std::fmt;
use std::sync::Arc;

use breaker_core::{Classify, Outcome};
use http::StatusCode;

/// Classifies HTTP results: by default a 5xx response or a transport error (no response at
/// all) is a failure, and everything else a success; 4xx responses are the caller's fault,
/// not the dependency's.
///
/// ```
/// use breaker_tower::HttpClassifier;
/// use breaker_core::{Classify, Outcome};
/// use http::{Response, StatusCode};
///
/// let default = HttpClassifier::new();
/// let res = |s: u16| Ok::<_, std::io::Error>(Response::builder().status(s).body(()).unwrap());
/// assert_eq!(default.classify(&res(503)), Outcome::Failure);
/// assert_eq!(default.classify(&res(404)), Outcome::Success);
///
/// // Also count 429 as a failure, and ignore the statuses a caller configured.
/// let ignored = vec![499u16, 409];
/// let custom = HttpClassifier::with(move |status| match status.as_u16() {
///     429 | 500..=599 => Outcome::Failure,
///     s if ignored.contains(&s) => Outcome::Ignored,
///     _ => Outcome::Success,
/// });
/// assert_eq!(custom.classify(&res(429)), Outcome::Failure);
/// assert_eq!(custom.classify(&res(409)), Outcome::Ignored);
/// ```
#[derive(Clone)]
pub struct HttpClassifier {
    by_status: ByStatus,
}

#[derive(Clone)]
enum ByStatus {
    ServerErrorsFail,
    Custom(Arc<dyn Fn(StatusCode) -> Outcome + Send + Sync>),
}

impl fmt::Debug for HttpClassifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let by_status = match self.by_status {
            ByStatus::ServerErrorsFail => "5xx fail",
            ByStatus::Custom(_) => "custom",
        };
        f.debug_struct("HttpClassifier")
            .field("by_status", &by_status)
            .finish()
    }
}

impl Default for HttpClassifier {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpClassifier {
    /// 5xx and transport errors are failures; everything else succeeds.
    pub fn new() -> Self {
        HttpClassifier {
            by_status: ByStatus::ServerErrorsFail,
        }
    }

    /// Classifies responses by status with `by_status` (any closure); transport errors stay
    /// failures.
    pub fn with(by_status: impl Fn(StatusCode) -> Outcome + Send + Sync + 'static) -> Self {
        HttpClassifier {
            by_status: ByStatus::Custom(Arc::new(by_status)),
        }
    }

    /// The outcome of a response with `status`.
    #[inline]
    pub fn classify_status(&self, status: StatusCode) -> Outcome {
        match &self.by_status {
            ByStatus::ServerErrorsFail if status.is_server_error() => Outcome::Failure,
            ByStatus::ServerErrorsFail => Outcome::Success,
            ByStatus::Custom(f) => f(status),
        }
    }
}

impl<B, E> Classify<http::Response<B>, E> for HttpClassifier {
    #[inline]
    fn classify(&self, result: &Result<http::Response<B>, E>) -> Outcome {
        match result {
            Ok(response) => self.classify_status(response.status()),
            Err(_) => Outcome::Failure,
        }
    }
}
