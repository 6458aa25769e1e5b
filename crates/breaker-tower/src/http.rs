//! HTTP response classification (feature `http`): for any tower HTTP client or server
//! (hyper, axum, reqwest-middleware stacks, tonic's HTTP layer).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use breaker_core::{Classify, Outcome, Pushback};
use http::StatusCode;

/// Classifies HTTP results: by default a 5xx response or a transport error (no response at
/// all) is a failure, and everything else a success; 4xx responses are the caller's fault,
/// not the dependency's. For calls *to* a dependency, [`outbound`](Self::outbound) also
/// counts `429 Too Many Requests` (the dependency shedding load) as a failure.
///
/// A failing response's `Retry-After` (seconds or an HTTP date, see [`retry_after`]) is its
/// [`Pushback`]: when that failure opens the breaker, it stays open at least that long (up
/// to the breaker's [`max_pushback`](breaker_core::Builder::max_pushback)).
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
    ServerErrorsAndTooManyRequestsFail,
    Custom(Arc<dyn Fn(StatusCode) -> Outcome + Send + Sync>),
}

impl fmt::Debug for HttpClassifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let by_status = match self.by_status {
            ByStatus::ServerErrorsFail => "5xx fail",
            ByStatus::ServerErrorsAndTooManyRequestsFail => "5xx and 429 fail",
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

    /// For calls to a dependency (an outbound client): 5xx, `429 Too Many Requests` and
    /// transport errors are failures; other 4xx are the caller's. (A server's own 429s, its
    /// rate limiting of its callers, are not a failure of the server: keep
    /// [`new`](Self::new) for a server middleware.)
    ///
    /// ```
    /// use breaker_core::{Classify, Outcome};
    /// use breaker_tower::HttpClassifier;
    /// use http::Response;
    ///
    /// let res = |s: u16| Ok::<_, std::io::Error>(Response::builder().status(s).body(()).unwrap());
    /// assert_eq!(HttpClassifier::outbound().classify(&res(429)), Outcome::Failure);
    /// assert_eq!(HttpClassifier::new().classify(&res(429)), Outcome::Success);
    /// ```
    pub fn outbound() -> Self {
        HttpClassifier {
            by_status: ByStatus::ServerErrorsAndTooManyRequestsFail,
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
            ByStatus::ServerErrorsAndTooManyRequestsFail
                if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS =>
            {
                Outcome::Failure
            }
            ByStatus::ServerErrorsAndTooManyRequestsFail => Outcome::Success,
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

    /// The failing response's `Retry-After`, if it has one.
    fn pushback(&self, result: &Result<http::Response<B>, E>) -> Option<Pushback> {
        let response = result.as_ref().ok()?;
        retry_after(response.headers()).map(Pushback::After)
    }
}

/// How long a response asks its callers to wait before they try again: its `Retry-After`
/// header, in seconds or as an HTTP date (a date in the past is zero), if it has one that
/// parses. A date is counted from the response's own `Date` header when it has one (the
/// server's clock against the server's clock: a client whose clock is off still waits what
/// was meant), from this machine's clock otherwise. A value too large to be meant (more
/// than a year) is cut to a year; a malformed one is no answer.
///
/// ```
/// use breaker_tower::retry_after;
/// use http::HeaderMap;
/// use std::time::{Duration, SystemTime};
///
/// let mut headers = HeaderMap::new();
/// headers.insert("retry-after", "120".parse().unwrap());
/// assert_eq!(retry_after(&headers), Some(Duration::from_secs(120)));
/// let in_a_minute = SystemTime::now() + Duration::from_secs(61);
/// headers.insert("retry-after", httpdate::fmt_http_date(in_a_minute).parse().unwrap());
/// let wait = retry_after(&headers).unwrap();
/// assert!(wait > Duration::from_secs(55) && wait <= Duration::from_secs(61));
/// headers.insert("retry-after", "soon".parse().unwrap());
/// assert_eq!(retry_after(&headers), None);
/// ```
pub fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    const A_YEAR: Duration = Duration::from_secs(365 * 24 * 3600);
    let value = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Digits only: a number of seconds (saturating: a 30-digit value is still "long").
        let secs = value.parse::<u64>().unwrap_or(u64::MAX);
        return Some(Duration::from_secs(secs).min(A_YEAR));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    let now = headers
        .get(http::header::DATE)
        .and_then(|date| httpdate::parse_http_date(date.to_str().ok()?).ok())
        .unwrap_or_else(std::time::SystemTime::now);
    let wait = when.duration_since(now).unwrap_or(Duration::ZERO);
    Some(wait.min(A_YEAR))
}

#[cfg(test)]
mod tests {
    use super::retry_after;
    use std::time::Duration;

    fn with(value: &[u8]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert(
            "retry-after",
            http::HeaderValue::from_bytes(value).expect("a header value"),
        );
        h
    }

    #[test]
    fn a_date_counts_from_the_servers_own_date() {
        // A server whose clock is an hour behind ours asks for 90 s: 90 s it is.
        let server_now = std::time::SystemTime::now() - Duration::from_secs(3600);
        let mut h = with(httpdate::fmt_http_date(server_now + Duration::from_secs(90)).as_bytes());
        h.insert(
            http::header::DATE,
            http::HeaderValue::from_str(&httpdate::fmt_http_date(server_now)).unwrap(),
        );
        let wait = retry_after(&h).unwrap();
        assert!(
            (Duration::from_secs(89)..=Duration::from_secs(91)).contains(&wait),
            "{wait:?}"
        );
        // Without its Date, ours: the date is in our past.
        h.remove(http::header::DATE);
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
    }

    #[test]
    fn reads_seconds_and_dates_and_refuses_the_rest() {
        assert_eq!(retry_after(&http::HeaderMap::new()), None);
        assert_eq!(retry_after(&with(b"0")), Some(Duration::ZERO));
        assert_eq!(retry_after(&with(b" 7 ")), Some(Duration::from_secs(7)));
        let year = Duration::from_secs(365 * 24 * 3600);
        assert_eq!(
            retry_after(&with(b"99999999999999999999999999")),
            Some(year)
        );
        assert_eq!(
            retry_after(&with(b"Wed, 21 Oct 2015 07:28:00 GMT")),
            Some(Duration::ZERO),
            "a date in the past"
        );
        for bad in [
            &b""[..],
            b"-5",
            b"1.5",
            b"5s",
            b"tomorrow",
            b"\xff\xfe",
            b"Wed, 99 Foo",
        ] {
            assert_eq!(retry_after(&with(bad)), None, "{bad:?}");
        }
    }
}
