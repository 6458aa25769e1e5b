//! HTTP response classification.

use breaker_core::{Classify, Outcome};
use http::StatusCode;

/// Classifies HTTP results: by default a 5xx response or a transport error (no response at
/// all) is a failure, and everything else a success; 4xx responses are the caller's fault,
/// not the dependency's.
///
/// ```
/// use breaker_axum::HttpClassifier;
/// use breaker_core::{Classify, Outcome};
/// use http::{Response, StatusCode};
///
/// let default = HttpClassifier::new();
/// let res = |s: u16| Ok::<_, std::io::Error>(Response::builder().status(s).body(()).unwrap());
/// assert_eq!(default.classify(&res(503)), Outcome::Failure);
/// assert_eq!(default.classify(&res(404)), Outcome::Success);
///
/// // Also count 429 as a failure, and ignore 499 (client closed the request).
/// let custom = HttpClassifier::with(|status| match status.as_u16() {
///     429 | 500..=599 => Outcome::Failure,
///     499 => Outcome::Ignored,
///     _ => Outcome::Success,
/// });
/// assert_eq!(custom.classify(&res(429)), Outcome::Failure);
/// ```
#[derive(Clone, Copy, Debug)]
pub struct HttpClassifier {
    by_status: fn(StatusCode) -> Outcome,
}

impl Default for HttpClassifier {
    fn default() -> Self {
        Self::new()
    }
}

fn server_errors_fail(status: StatusCode) -> Outcome {
    if status.is_server_error() {
        Outcome::Failure
    } else {
        Outcome::Success
    }
}

impl HttpClassifier {
    /// 5xx and transport errors are failures; everything else succeeds.
    pub fn new() -> Self {
        HttpClassifier {
            by_status: server_errors_fail,
        }
    }

    /// Classifies responses by status with `by_status`; transport errors stay failures.
    pub fn with(by_status: fn(StatusCode) -> Outcome) -> Self {
        HttpClassifier { by_status }
    }

    /// The outcome of a response with `status`.
    pub fn classify_status(&self, status: StatusCode) -> Outcome {
        (self.by_status)(status)
    }
}

impl<B, E> Classify<http::Response<B>, E> for HttpClassifier {
    #[inline]
    fn classify(&self, result: &Result<http::Response<B>, E>) -> Outcome {
        match result {
            Ok(response) => (self.by_status)(response.status()),
            Err(_) => Outcome::Failure,
        }
    }
}
