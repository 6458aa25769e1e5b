//! The edges of classification, on in-process answers: a broken body and a body that ends
//! without a status are failures; a trailers-only answer is recorded from its headers before
//! its body is read.

use std::convert::Infallible;
use std::future::{Future, ready};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use breaker_core::{CircuitBreaker, ManualClock, Outcome, State};
use breaker_tonic::{GrpcBreakerLayer, GrpcClassifier};
use http_body::{Body, Frame};
use tower::{Layer, Service, service_fn};

/// A body that yields one scripted frame (or error), then ends.
struct Scripted(Option<Result<Frame<bytes::Bytes>, &'static str>>);

impl Body for Scripted {
    type Data = bytes::Bytes;
    type Error = &'static str;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Poll::Ready(self.0.take())
    }
}

type Breaker = Arc<CircuitBreaker<ManualClock>>;

fn breaker() -> Breaker {
    Arc::new(
        CircuitBreaker::builder_with_clock(ManualClock::new())
            .consecutive_failures(1)
            .build()
            .unwrap(),
    )
}

/// Calls a service answering `response()` through the layer; returns the body unread.
fn call<F>(b: &Breaker, response: F) -> impl Body<Error = &'static str>
where
    F: Fn() -> http::Response<Scripted> + Clone,
{
    let inner = service_fn(move |_: http::Request<()>| ready(Ok::<_, Infallible>(response())));
    let mut svc = GrpcBreakerLayer::new(b.clone()).layer(inner);
    let mut cx = Context::from_waker(Waker::noop());
    let mut fut = pin!(svc.call(http::Request::new(())));
    match fut.as_mut().poll(&mut cx) {
        Poll::Ready(Ok(response)) => response.into_body(),
        _ => panic!("in-process answers are ready at once"),
    }
}

fn read_to_end(body: impl Body) {
    let mut body = pin!(body);
    let mut cx = Context::from_waker(Waker::noop());
    while let Poll::Ready(Some(_)) = body.as_mut().poll_frame(&mut cx) {}
}

#[test]
fn a_broken_body_is_a_failure() {
    let b = breaker();
    read_to_end(call(&b, || grpc_response(Scripted(Some(Err("reset"))))));
    assert_eq!(b.state(), State::Open);
}

#[test]
fn a_body_that_ends_without_a_status_is_a_failure() {
    let b = breaker();
    let data = || {
        grpc_response(Scripted(Some(Ok(Frame::data(bytes::Bytes::from_static(
            b"x",
        ))))))
    };
    read_to_end(call(&b, data));
    assert_eq!(b.state(), State::Open);
}

#[test]
fn a_trailers_only_answer_is_recorded_from_its_headers() {
    let b = breaker();
    let trailers_only = || {
        http::Response::builder()
            .header("grpc-status", "14")
            .body(Scripted(None))
            .unwrap()
    };
    let body = call(&b, trailers_only);
    assert_eq!(b.state(), State::Open, "before the body is read");
    drop(body);
}

#[test]
fn a_custom_classifier_decides() {
    let b = breaker();
    let inner = service_fn(|_: http::Request<()>| {
        ready(Ok::<_, Infallible>(
            http::Response::builder()
                .header("grpc-status", "10") // ABORTED
                .body(Scripted(None))
                .unwrap(),
        ))
    });
    let classify = GrpcClassifier::with(|code| match code {
        tonic::Code::Aborted => Outcome::Failure,
        _ => Outcome::Success,
    });
    let mut svc = GrpcBreakerLayer::new(b.clone())
        .classify(classify)
        .layer(inner);
    let mut fut = pin!(svc.call(http::Request::new(())));
    assert!(
        fut.as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
            .is_ready()
    );
    assert_eq!(b.state(), State::Open);
}

/// An answer as a gRPC server gives it: `200`, `content-type: application/grpc`.
fn grpc_response<B>(body: B) -> http::Response<B> {
    let mut response = http::Response::new(body);
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    response
}
