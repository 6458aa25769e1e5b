//! The layer adds no allocation to a call: the same calls through a bare in-process gRPC-like
//! service and through the layer allocate exactly as much (the inner service's own
//! allocations, a trailers map per answer, are the same in both).

use std::convert::Infallible;
use std::future::{Future, ready};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use breaker_core::{CircuitBreaker, ManualClock};
use breaker_test_support::{CountingAllocator, allocations};
use breaker_tonic::GrpcBreakerLayer;
use http_body::{Body, Frame};
use tower::{Layer, Service, service_fn};

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// A streaming-style answer: no data, then `grpc-status: 0` in the trailers.
struct OkTrailers(bool);

impl Body for OkTrailers {
    type Data = bytes_free::Empty;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        if self.0 {
            return Poll::Ready(None);
        }
        self.0 = true;
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
        Poll::Ready(Some(Ok(Frame::trailers(trailers))))
    }
}

mod bytes_free {
    /// A data type with no bytes (the answers here have none).
    pub(crate) struct Empty;

    impl bytes::Buf for Empty {
        fn remaining(&self) -> usize {
            0
        }
        fn chunk(&self) -> &[u8] {
            &[]
        }
        fn advance(&mut self, _: usize) {}
    }
}

/// One call, driven to the end of its body.
fn drive<S, B>(svc: &mut S)
where
    S: Service<http::Request<()>, Response = http::Response<B>, Error = Infallible>,
    B: Body,
{
    let mut cx = Context::from_waker(Waker::noop());
    assert!(svc.poll_ready(&mut cx).is_ready());
    let mut fut = pin!(svc.call(http::Request::new(())));
    let Poll::Ready(Ok(response)) = fut.as_mut().poll(&mut cx) else {
        panic!("an in-process answer");
    };
    let mut body = pin!(response.into_body());
    while let Poll::Ready(Some(frame)) = body.as_mut().poll_frame(&mut cx) {
        assert!(frame.is_ok());
    }
}

#[test]
fn the_layer_adds_no_allocation_to_a_call() {
    let inner = service_fn(|_: http::Request<()>| {
        ready(Ok::<_, Infallible>(grpc_response(OkTrailers(false))))
    });
    let breaker = Arc::new(
        CircuitBreaker::builder_with_clock(ManualClock::new())
            .count_window(100)
            .build()
            .unwrap(),
    );
    let mut bare = inner;
    let mut guarded = GrpcBreakerLayer::new(breaker.clone()).layer(inner);
    drive(&mut bare);
    drive(&mut guarded);
    let bare_allocations = allocations(|| {
        for _ in 0..1_000 {
            drive(&mut bare);
        }
    });
    let guarded_allocations = allocations(|| {
        for _ in 0..1_000 {
            drive(&mut guarded);
        }
    });
    assert!(
        bare_allocations >= 1_000,
        "the inner service allocates its trailers"
    );
    assert_eq!(guarded_allocations, bare_allocations);
    assert_eq!(breaker.snapshot().totals.successes, 1_001);
}

#[test]
fn the_keyed_layer_adds_no_allocation_once_its_breaker_exists() {
    use breaker_tonic::{KeyBy, KeyedGrpcBreakerLayer};
    use breaker_tower::KeyedRegistry;
    let inner = service_fn(|_: http::Request<()>| {
        ready(Ok::<_, Infallible>(grpc_response(OkTrailers(false))))
    });
    let registry = Arc::new(
        KeyedRegistry::new(16, |_: &String| {
            CircuitBreaker::builder_with_clock(ManualClock::new())
                .build()
                .unwrap()
        })
        .unwrap(),
    );
    let mut bare = inner;
    let mut keyed = KeyedGrpcBreakerLayer::new(registry.clone(), KeyBy::Method).layer(inner);
    drive(&mut bare);
    drive(&mut keyed); // makes the breaker for the path
    let bare_allocations = allocations(|| {
        for _ in 0..1_000 {
            drive(&mut bare);
        }
    });
    let keyed_allocations = allocations(|| {
        for _ in 0..1_000 {
            drive(&mut keyed);
        }
    });
    assert_eq!(
        keyed_allocations, bare_allocations,
        "the key is looked up as a &str"
    );
    assert_eq!(registry.len(), 1);
}

#[test]
fn the_counting_allocator_sees_allocations() {
    assert_eq!(allocations(|| drop(std::hint::black_box(vec![1u8]))), 1);
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
