//! `GET /events`: the Server-Sent Events stream.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::{Stream, StreamExt, stream};
use http::header::{CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, HeaderValue, StatusCode};
use tokio::sync::mpsc;

use crate::error::error_response;
use crate::hub::Shared;

/// A comment line sent when nothing else was for this long, so that proxies keep the
/// connection and the client sees it alive.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The longest `Last-Event-ID` looked at.
const MAX_EVENT_ID: usize = 64;

pub(crate) async fn events(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Err(refused) = shared.auth.reader(&headers) {
        return refused.into_response();
    }
    let last_event_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= MAX_EVENT_ID);
    let Ok((initial, rx)) = shared.subscribe(last_event_id) else {
        let mut response = error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many event streams are open; try again later",
        );
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static("5"));
        return response;
    };
    (
        [
            (CONTENT_TYPE, HeaderValue::from_static("text/event-stream")),
            (CACHE_CONTROL, HeaderValue::from_static("no-store")),
            // Proxies that buffer responses (nginx) must pass events on at once.
            (
                http::HeaderName::from_static("x-accel-buffering"),
                HeaderValue::from_static("no"),
            ),
        ],
        Body::from_stream(frames(initial, rx)),
    )
        .into_response()
}

/// The frames of one stream: the initial ones, then what the hub sends, with keep-alive
/// comments in the silences. Ends when the hub drops the stream (after the frames already
/// queued).
fn frames(
    initial: Vec<Bytes>,
    rx: mpsc::Receiver<Bytes>,
) -> impl Stream<Item = Result<Bytes, Infallible>> + Send + 'static {
    let keep_alive = tokio::time::interval_at(tokio::time::Instant::now() + KEEP_ALIVE, KEEP_ALIVE);
    let live = stream::unfold((rx, keep_alive), |(mut rx, mut keep_alive)| async move {
        let frame = tokio::select! {
            frame = rx.recv() => {
                keep_alive.reset();
                frame?
            }
            _ = keep_alive.tick() => Bytes::from_static(b": keep-alive\n\n"),
        };
        Some((frame, (rx, keep_alive)))
    });
    stream::iter(initial).chain(live).map(Ok)
}
