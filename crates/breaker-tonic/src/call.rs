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

static GRPC_STATUS: http::HeaderName = http::HeaderName::from_static("grpc-status");

/// The `grpc-status` in `headers`, if there is one (a decimal code).
#[inline]
pub(crate) fn status_code(headers: &HeaderMap) -> Option<Code> {
    let bytes = headers.get(&GRPC_STATUS)?.as_bytes();
    if bytes.is_empty() || bytes.len() > 2 {
        return None;
    }
    let mut code = 0i32;
    for b in bytes {
        if !b.is_ascii_digit() {
            return None;
        }
        code = code * 10 + i32::from(b - b'0');
    }
    Some(Code::from_i32(code))
}

#[cfg(test)]
mod tests {
    use super::status_code;
    use tonic::Code;

    #[test]
    fn reads_the_status_code() {
        let mut h = http::HeaderMap::new();
        assert_eq!(status_code(&h), None);
        for (text, code) in [
            ("0", Code::Ok),
            ("14", Code::Unavailable),
            ("4", Code::DeadlineExceeded),
        ] {
            h.insert("grpc-status", http::HeaderValue::from_static(text));
            assert_eq!(status_code(&h), Some(code), "{text}");
        }
        for bad in ["", "x", "140", "-1"] {
            h.insert("grpc-status", http::HeaderValue::from_static(bad));
            assert_eq!(status_code(&h), None, "{bad:?}");
        }
    }
}
