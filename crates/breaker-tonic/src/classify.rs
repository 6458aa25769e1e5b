//! How a gRPC status counts for the breaker.

use std::fmt;
use std::sync::Arc;

use breaker_core::Outcome;
use tonic::Code;

/// Classifies gRPC calls by their status code. By default:
///
/// - **failures** (the service is in trouble): `UNAVAILABLE`, `DEADLINE_EXCEEDED`,
///   `RESOURCE_EXHAUSTED`, `INTERNAL`, `UNKNOWN`, `DATA_LOSS`;
/// - **ignored**: `CANCELLED` (the caller gave up; it says nothing about the service). A
///   `CANCELLED` that is really a timeout (tonic answers its own timeouts with
///   `CANCELLED "Timeout expired"`; any `CANCELLED` at or past the call's deadline) reaches
///   the classifier as `DEADLINE_EXCEEDED`;
/// - **successes**: `OK` and the caller's faults (`INVALID_ARGUMENT`, `NOT_FOUND`,
///   `ALREADY_EXISTS`, `PERMISSION_DENIED`, `UNAUTHENTICATED`, `FAILED_PRECONDITION`,
///   `OUT_OF_RANGE`, `UNIMPLEMENTED`, `ABORTED`): the service answered.
///
/// ```
/// use breaker_core::Outcome;
/// use breaker_tonic::GrpcClassifier;
/// use tonic::Code;
///
/// let default = GrpcClassifier::new();
/// assert_eq!(default.classify_code(Code::Unavailable), Outcome::Failure);
/// assert_eq!(default.classify_code(Code::NotFound), Outcome::Success);
///
/// // Count ABORTED (lost transaction races) as a failure too.
/// let custom = GrpcClassifier::with(|code| match code {
///     Code::Aborted => Outcome::Failure,
///     other => GrpcClassifier::new().classify_code(other),
/// });
/// assert_eq!(custom.classify_code(Code::Aborted), Outcome::Failure);
/// ```
#[derive(Clone, Default)]
pub struct GrpcClassifier {
    custom: Option<Arc<dyn Fn(Code) -> Outcome + Send + Sync>>,
}

impl fmt::Debug for GrpcClassifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.custom.is_some() {
            "custom"
        } else {
            "default"
        };
        f.debug_struct("GrpcClassifier")
            .field("by_code", &kind)
            .finish()
    }
}

impl GrpcClassifier {
    /// The default classification (see the type's docs).
    pub fn new() -> Self {
        Self::default()
    }

    /// Classifies by `by_code` (any closure) instead.
    pub fn with(by_code: impl Fn(Code) -> Outcome + Send + Sync + 'static) -> Self {
        GrpcClassifier {
            custom: Some(Arc::new(by_code)),
        }
    }

    /// How a call that ended with `code` counts.
    #[inline]
    pub fn classify_code(&self, code: Code) -> Outcome {
        if let Some(custom) = &self.custom {
            return custom(code);
        }
        match code {
            Code::Unavailable
            | Code::DeadlineExceeded
            | Code::ResourceExhausted
            | Code::Internal
            | Code::Unknown
            | Code::DataLoss => Outcome::Failure,
            Code::Cancelled => Outcome::Ignored,
            _ => Outcome::Success,
        }
    }
}
