//! The call path with the admin mounted and ten dashboards connected (and one that stopped
//! reading): no allocation on the calling thread, transitions included, and the
//! transitions still reach every dashboard.

mod common;

use std::time::Duration;

use breaker_core::{Outcome, State};
use breaker_test_support::{CountingAllocator, allocations};
use common::{Fixture, Sse, client, record};
use tokio::io::AsyncWriteExt;

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_allocation_on_the_call_path_with_ten_dashboards_connected() {
    let f = Fixture::start(|b| b.snapshot_interval(Duration::from_millis(20))).await;
    let http = client();
    let mut dashboards = Vec::new();
    for _ in 0..10 {
        let mut events = Sse::connect(&http, &f.url("events"), &[]).await;
        events.next_of("hello", WAIT).await;
        dashboards.push(events);
    }
    let mut stalled = tokio::net::TcpStream::connect(f.addr).await.unwrap();
    stalled
        .write_all(b"GET /admin/events HTTP/1.1\r\nhost: test\r\n\r\n")
        .await
        .unwrap();
    common::eventually(WAIT, "eleven streams", || async {
        f.admin.stats().streams == 11
    })
    .await;

    // Warm up (first use of thread-local counter lines, the clock).
    record(&f.payments, Outcome::Success);
    f.search.trip();
    f.search.reset();
    let allocated = allocations(|| {
        for _ in 0..10_000 {
            record(&f.payments, Outcome::Success);
        }
        // Transitions made by calls (three failures trip `search`), and by an operator.
        for _ in 0..3 {
            record(&f.search, Outcome::Failure);
        }
        assert_eq!(f.search.state(), State::Open);
        f.search.reset();
        for _ in 0..1_000 {
            record(&f.search, Outcome::Success);
        }
    });
    assert_eq!(allocated, 0, "allocations on the call path");

    // The transitions were not lost: every dashboard sees closed -> open -> closed.
    for events in &mut dashboards {
        let opened = events
            .until(WAIT, |e| e.kind == "transition" && e.data["to"] == "open")
            .await;
        assert_eq!(opened.last().unwrap().data["breaker"], "search");
        let closed = events.next_of("transition", WAIT).await;
        assert_eq!(closed.data["to"], "closed");
    }
    drop(stalled);
}
