//! The event stream over real HTTP on loopback: the first event, transitions and snapshots,
//! resuming with `Last-Event-ID`, slow consumers, the stream limit, and naming transitions.
//! Breaker time is the manual clock; waits are bounded and only for the hub's own schedule.

mod common;

use std::sync::Arc;
use std::time::Duration;

use breaker_core::{CircuitBreaker, Outcome, State};
use breaker_tower::KeyedRegistry;
use common::{Fixture, Sse, client, eventually, record, view};
use http::StatusCode;
use tokio::io::AsyncWriteExt;

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_starts_with_every_breaker_then_follows_transitions_and_snapshots() {
    let f = Fixture::start(|b| b).await;
    let http = client();
    let mut events = Sse::connect(&http, &f.url("events"), &[]).await;
    assert_eq!(events.status, StatusCode::OK);
    assert_eq!(
        events.headers.get("content-type").unwrap(),
        "text/event-stream"
    );
    let hello = events.next(WAIT).await.expect("a first event");
    assert_eq!(hello.kind, "hello");
    assert_eq!(hello.data["operator_actions"], false);
    assert_eq!(view(&hello.data["breakers"], "payments")["state"], "closed");
    assert!(view(&hello.data["breakers"], "search")["history"].is_array());

    // A transition made by the server's own traffic appears as it happens.
    for _ in 0..3 {
        record(&f.search, Outcome::Failure);
    }
    assert_eq!(f.search.state(), State::Open);
    let transition = events.next_of("transition", WAIT).await;
    assert_eq!(transition.data["breaker"], "search");
    assert_eq!(transition.data["from"], "closed");
    assert_eq!(transition.data["to"], "open");
    assert_eq!(transition.data["view"]["state"], "open");
    assert_eq!(transition.data["view"]["retry_after_ms"], 10_000);
    assert_eq!(transition.data["view"]["since_exact"], true);
    assert_eq!(
        transition.data["view"]["since"],
        transition.data["transition_at"]
    );

    // Snapshots carry every breaker, with calls per second between two of them.
    for _ in 0..5 {
        record(&f.payments, Outcome::Success);
    }
    let snapshots = events
        .until(WAIT, |e| {
            e.kind == "snapshot"
                && view(&e.data["breakers"], "payments")["totals"]["successes"] == 5
        })
        .await;
    let snapshot = snapshots.last().unwrap();
    assert!(view(&snapshot.data["breakers"], "payments")["rates"]["calls_per_s"].is_number());
    assert_eq!(view(&snapshot.data["breakers"], "search")["state"], "open");

    // A breaker registered later is followed too.
    let late = Arc::new(
        CircuitBreaker::builder_with_clock(f.clock.clone())
            .name("late")
            .observer(f.admin.observer())
            .build()
            .unwrap(),
    );
    f.registry.register("late", late.clone()).unwrap();
    late.force_open();
    let transition = events.next_of("transition", WAIT).await;
    assert_eq!(transition.data["breaker"], "late");
    assert_eq!(transition.data["to"], "forced_open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnecting_with_last_event_id_misses_nothing_still_buffered() {
    // Snapshots rarely, so that the replay buffer holds transitions only.
    let f = Fixture::start(|b| b.snapshot_interval(Duration::from_secs(60)).replay(16)).await;
    let http = client();
    let mut events = Sse::connect(&http, &f.url("events"), &[]).await;
    let hello = events.next_of("hello", WAIT).await;
    // The hello carries the id of the last event published before it.
    let last = hello.id.clone().expect("events have ids");
    drop(events);

    // Missed while disconnected: five transitions.
    let published = f.admin.stats().events;
    f.search.trip();
    f.search.reset();
    f.payments.force_open();
    f.payments.reset();
    f.search.disable();
    eventually(WAIT, "the hub published the five transitions", || async {
        f.admin.stats().events >= published + 5
    })
    .await;

    let mut resumed = Sse::connect(
        &http,
        &f.url("events"),
        &[("last-event-id".into(), last.clone())],
    )
    .await;
    let mut missed = Vec::new();
    while missed.len() < 5 {
        let event = resumed.next(WAIT).await.unwrap();
        assert_ne!(event.kind, "hello", "resumed, not started again");
        if event.kind == "snapshot" {
            continue; // the hub's first snapshot may come after the hello
        }
        assert_eq!(event.kind, "transition");
        missed.push(format!(
            "{} {}->{}",
            event.data["breaker"].as_str().unwrap(),
            event.data["from"].as_str().unwrap(),
            event.data["to"].as_str().unwrap()
        ));
    }
    assert_eq!(
        missed,
        [
            "search closed->open",
            "search open->closed",
            "payments closed->forced_open",
            "payments forced_open->closed",
            "search closed->disabled"
        ]
    );
    // Then it goes on live.
    f.search.reset();
    let live = resumed.next_of("transition", WAIT).await;
    assert_eq!(live.data["to"], "closed");
    drop(resumed);

    // An id that has left the buffer, one of another run, or garbage: a full hello.
    for _ in 0..12 {
        f.search.trip();
        f.search.reset();
    }
    eventually(WAIT, "more than the replay buffer published", || async {
        f.admin.stats().events >= published + 30
    })
    .await;
    let boot = last.rsplit_once('-').unwrap().0.to_string();
    for id in [last, format!("{boot}x-1"), "0-1".into(), "garbage".into()] {
        let mut fresh = Sse::connect(
            &http,
            &f.url("events"),
            &[("last-event-id".into(), id.clone())],
        )
        .await;
        let first = fresh.next(WAIT).await.unwrap();
        assert_eq!(first.kind, "hello", "resuming from {id:?}");
    }
}

/// A client that stops reading is dropped once its queue is full, while the breakers keep
/// serving calls and a client that reads goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_is_dropped_and_the_others_go_on() {
    let f = Fixture::start(|b| {
        b.snapshot_interval(Duration::from_millis(20))
            .stream_buffer(64)
    })
    .await;
    // Big snapshots: the stalled client's socket buffers fill quickly.
    for i in 0..100 {
        let b = Arc::new(
            CircuitBreaker::builder_with_clock(f.clock.clone())
                .name(format!("filler-{i:03}"))
                .build()
                .unwrap(),
        );
        f.registry.register(format!("filler-{i:03}"), b).unwrap();
    }
    // The reader reads all the time, on its own task.
    let http = client();
    let mut reading = Sse::connect(&http, &f.url("events"), &[]).await;
    let (seen, mut events) = tokio::sync::mpsc::unbounded_channel();
    let reader = tokio::spawn(async move {
        while let Some(event) = reading.next(Duration::from_secs(60)).await {
            if seen.send(event).is_err() {
                break;
            }
        }
    });

    // The stalled client: sends its request, never reads the answer.
    let mut stalled = tokio::net::TcpStream::connect(f.addr).await.unwrap();
    stalled
        .write_all(b"GET /admin/events HTTP/1.1\r\nhost: test\r\n\r\n")
        .await
        .unwrap();
    eventually(WAIT, "both streams connected", || async {
        f.admin.stats().streams == 2
    })
    .await;
    let mut served = 0u64;
    eventually(
        Duration::from_secs(60),
        "the stalled stream is dropped",
        || {
            // Meanwhile calls go through the breakers as always.
            for _ in 0..100 {
                record(&f.payments, Outcome::Success);
                served += 1;
            }
            async { f.admin.stats().streams_dropped >= 1 }
        },
    )
    .await;
    assert_eq!(f.payments.snapshot().totals.successes, served);
    assert_eq!(
        f.admin.stats().streams,
        1,
        "the reading stream is still there"
    );
    assert_eq!(f.admin.stats().streams_dropped, 1);
    // The reader still gets fresh events, including a transition.
    f.search.trip();
    loop {
        let event = tokio::time::timeout(WAIT, events.recv())
            .await
            .expect("the reader goes on")
            .expect("the reader's stream is open");
        if event.kind == "transition" {
            assert_eq!(event.data["breaker"], "search");
            break;
        }
    }
    drop(stalled);
    reader.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_beyond_the_limit_are_refused_until_one_closes() {
    let f = Fixture::start(|b| b.max_streams(2)).await;
    let http = client();
    let mut first = Sse::connect(&http, &f.url("events"), &[]).await;
    first.next_of("hello", WAIT).await;
    let mut second = Sse::connect(&http, &f.url("events"), &[]).await;
    second.next_of("hello", WAIT).await;
    let refused = common::get(&http, &f.url("events"), &[]).await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.header("retry-after"), Some("5"));
    assert!(
        refused.json()["error"]
            .as_str()
            .unwrap()
            .contains("too many")
    );
    drop(first);
    eventually(WAIT, "a closed stream frees its place", || async {
        let mut again = Sse::connect(&http, &f.url("events"), &[]).await;
        again.status == StatusCode::OK && again.next(WAIT).await.is_some_and(|e| e.kind == "hello")
    })
    .await;
    drop(second);
}

/// Members of a keyed group often share one name (or none): a transition is named by the
/// member whose generation moved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transitions_of_breakers_sharing_a_name_are_told_apart() {
    let f = Fixture::start(|b| b).await;
    let (clock, observer) = (f.clock.clone(), f.admin.observer());
    let upstreams = Arc::new(
        KeyedRegistry::new(10, move |_host: &String| {
            CircuitBreaker::builder_with_clock(clock.clone())
                .name("upstream")
                .consecutive_failures(1)
                .observer(observer.clone())
                .build()
                .unwrap()
        })
        .unwrap(),
    );
    let a = upstreams.get("a.example");
    let b = upstreams.get("b.example");
    f.registry.register_group("upstreams", upstreams).unwrap();
    let http = client();
    let mut events = Sse::connect(&http, &f.url("events"), &[]).await;
    events.next_of("snapshot", WAIT).await; // the hub has seen both members
    b.trip();
    let t = events.next_of("transition", WAIT).await;
    assert_eq!(t.data["breaker"], "upstreams/b.example");
    assert_eq!(t.data["breaker_name"], "upstream");
    events.next_of("snapshot", WAIT).await;
    a.force_open();
    let t = events.next_of("transition", WAIT).await;
    assert_eq!(t.data["breaker"], "upstreams/a.example");
    assert_eq!(t.data["to"], "forced_open");
    assert_eq!(f.admin.stats().transitions_unattributed, 0);
}

/// An `Inspect` of the user's that panics (once) does not stop the hub.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_inspect_does_not_stop_the_stream() {
    use breaker_core::{Inspect, Snapshot};
    use std::sync::atomic::{AtomicBool, Ordering};

    struct PanicsOnce {
        inner: Arc<common::Breaker>,
        panicked: AtomicBool,
    }
    impl Inspect for PanicsOnce {
        fn snapshot(&self) -> Snapshot {
            if !self.panicked.swap(true, Ordering::SeqCst) {
                panic!("a bug in a user's Inspect");
            }
            self.inner.snapshot()
        }
    }

    let f = Fixture::start(|b| b).await;
    let http = client();
    let mut events = Sse::connect(&http, &f.url("events"), &[]).await;
    events.next_of("snapshot", WAIT).await;
    f.registry
        .register(
            "flaky",
            Arc::new(PanicsOnce {
                inner: f.payments.clone(),
                panicked: AtomicBool::new(false),
            }),
        )
        .unwrap();
    let seen = events
        .until(WAIT, |e| {
            e.kind == "snapshot"
                && e.data["breakers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|b| b["name"] == "flaky")
        })
        .await;
    assert!(!seen.is_empty());
    f.search.trip();
    events.next_of("transition", WAIT).await;
}
