//! One admitted call: its permit, its start, its classifier.

use breaker_core::{BreakerRef, Outcome, Permit};
use http::HeaderMap;
use tonic::Code;

use crate::GrpcClassifier;

pub(crate) struct Call<R: BreakerRef> {
    pub(crate) permit: Permit<R>,
    pub(crate) started: u64,
    pub(crate) classify: GrpcClassifier,
}

impl<R: BreakerRef> Call<R> {
    pub(crate) fn new(permit: Permit<R>, classify: GrpcClassifier) -> Self {
        let started = permit.breaker().breaker().call_started();
        Call {
            permit,
            started,
            classify,
        }
    }

    pub(crate) fn record(self, outcome: Outcome) {
        let elapsed = self.permit.breaker().breaker().elapsed_since(self.started);
        self.permit.record(outcome, elapsed);
    }

    /// Records the call by the `grpc-status` in `headers` (response headers of a
    /// trailers-only answer, or trailers); a missing or unreadable status is a failure.
    pub(crate) fn record_status(self, headers: &HeaderMap) {
        let outcome = match status_code(headers) {
            Some(code) => self.classify.classify_code(code),
            None => Outcome::Failure,
        };
        self.record(outcome)
    }

    #[cold]
    #[inline(never)]
    pub(crate) fn abandon(self) {
        let elapsed = self.permit.breaker().breaker().elapsed_since(self.started);
        self.permit.abandon(elapsed);
    }
}

/// The `grpc-status` in `headers`, if there is one.
pub(crate) fn status_code(headers: &HeaderMap) -> Option<Code> {
    let value = headers.get("grpc-status")?.to_str().ok()?;
    value.parse::<i32>().ok().map(Code::from_i32)
}
