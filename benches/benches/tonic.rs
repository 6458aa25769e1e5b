//! The cost of `breaker-tonic`'s layer on a gRPC call: an in-process service answering with
//! `grpc-status: 0` in the trailers, called bare and through `GrpcBreakerLayer` (closed
//! breaker), each call driven to the end of its body.
//! `cargo bench -p breaker-benches --bench tonic`.

use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::hint::black_box;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use breaker_core::CircuitBreaker;
use breaker_tonic::GrpcBreakerLayer;
use criterion::Criterion;
use http_body::{Body, Frame};
use tower::{Layer, Service};

/// A streaming-style answer: no data, then `grpc-status: 0` in the trailers (prebuilt and
/// cloned, so the inner service is as cheap as it can be).
struct OkTrailers(Option<http::HeaderMap>);

impl Body for OkTrailers {
    type Data = bytes::Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Poll::Ready(self.0.take().map(|t| Ok(Frame::trailers(t))))
    }
}

#[derive(Clone)]
struct Answer(http::HeaderMap);

impl Service<http::Request<()>> for Answer {
    type Response = http::Response<OkTrailers>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Request<()>) -> Self::Future {
        ready(Ok(http::Response::new(OkTrailers(Some(self.0.clone())))))
    }
}

fn drive<S, B>(svc: &mut S) -> usize
where
    S: Service<http::Request<()>, Response = http::Response<B>, Error = Infallible>,
    B: Body,
{
    let mut cx = Context::from_waker(Waker::noop());
    let _ = svc.poll_ready(&mut cx);
    let mut fut = pin!(svc.call(http::Request::new(())));
    let Poll::Ready(Ok(response)) = fut.as_mut().poll(&mut cx) else {
        unreachable!("in-process answers are ready at once")
    };
    let mut body = pin!(response.into_body());
    let mut frames = 0;
    while let Poll::Ready(Some(_)) = body.as_mut().poll_frame(&mut cx) {
        frames += 1;
    }
    frames
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
    let mut bare = Answer(trailers);
    let breaker = Arc::new(CircuitBreaker::builder().build().expect("valid settings"));
    let mut guarded = GrpcBreakerLayer::new(breaker.clone()).layer(bare.clone());
    let mut g = c.benchmark_group("tonic_layer");
    g.bench_function("bare_service", |b| b.iter(|| black_box(drive(&mut bare))));
    g.bench_function("ours_layer", |b| b.iter(|| black_box(drive(&mut guarded))));
    g.finish();
    assert_eq!(breaker.snapshot().totals.failures, 0);
    c.final_summary();
}
