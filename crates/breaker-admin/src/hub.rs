//! The event hub: one task drains the transition queue and samples the registry on a
//! timer, and publishes events to a bounded replay buffer and to every connected stream.
//! Nothing here runs on a breaker's call path.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use breaker_core::Registry;
use bytes::Bytes;
use http::HeaderValue;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::auth::Auth;
use crate::feed::{AdminObserver, Transition, unix_ms};
use crate::tracker::Tracker;

/// Counters of an [`Admin`](crate::Admin)'s event hub.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AdminStats {
    /// Event streams connected now.
    pub streams: usize,
    /// Streams dropped because their client did not keep up.
    pub streams_dropped: u64,
    /// Events published (transitions, operator actions, snapshots).
    pub events: u64,
    /// Operator actions applied.
    pub actions: u64,
    /// Transitions overwritten in the observer's queue before the hub drained them.
    pub transitions_overwritten: u64,
    /// Transitions of breakers the hub could not name (not registered, or several
    /// breakers under one name that all changed).
    pub transitions_unattributed: u64,
}

/// The longest a transition waits in the queue before the hub names and publishes it.
const TRANSITION_POLL: Duration = Duration::from_millis(100);

/// The checked settings.
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) snapshot_interval: Duration,
    pub(crate) history_step: Duration,
    pub(crate) history_points: usize,
    pub(crate) replay: usize,
    pub(crate) max_streams: usize,
    pub(crate) stream_buffer: usize,
    pub(crate) origins: Vec<HeaderValue>,
}

/// Published events and the streams they go to.
struct Hub {
    /// The id the next event gets (the first is 1).
    next_id: u64,
    /// The last `replay` events, oldest first.
    replay: VecDeque<(u64, Bytes)>,
    subscribers: Vec<mpsc::Sender<Bytes>>,
}

/// Everything the routes and the hub task share.
pub(crate) struct Shared {
    pub(crate) registry: Arc<Registry>,
    pub(crate) auth: Auth,
    pub(crate) settings: Settings,
    pub(crate) observer: AdminObserver,
    /// This process's run: event ids are `<boot>-<n>`, so an id from before a restart is
    /// never mistaken for one of this run.
    pub(crate) boot: String,
    hub: Mutex<Hub>,
    pub(crate) tracker: Mutex<Tracker>,
    streams_dropped: AtomicU64,
    actions: AtomicU64,
    unattributed: AtomicU64,
}

/// The stream limit is reached.
pub(crate) struct TooManyStreams;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves its data consistent between statements that can panic.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    pub(crate) fn new(
        registry: Arc<Registry>,
        auth: Auth,
        settings: Settings,
        observer: AdminObserver,
    ) -> Arc<Shared> {
        let boot = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        Arc::new(Shared {
            registry,
            observer,
            boot: format!("{boot:x}"),
            hub: Mutex::new(Hub {
                next_id: 1,
                replay: VecDeque::with_capacity(settings.replay),
                subscribers: Vec::new(),
            }),
            tracker: Mutex::new(Tracker::new(settings.history_step, settings.history_points)),
            settings,
            auth,
            streams_dropped: AtomicU64::new(0),
            actions: AtomicU64::new(0),
            unattributed: AtomicU64::new(0),
        })
    }

    pub(crate) fn stats(&self) -> AdminStats {
        let hub = lock(&self.hub);
        AdminStats {
            streams: hub.subscribers.iter().filter(|s| !s.is_closed()).count(),
            streams_dropped: self.streams_dropped.load(Ordering::Relaxed),
            events: hub.next_id - 1,
            actions: self.actions.load(Ordering::Relaxed),
            transitions_overwritten: self.observer.overwritten(),
            transitions_unattributed: self.unattributed.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn count_action(&self) {
        self.actions.fetch_add(1, Ordering::Relaxed);
    }

    /// Publishes one event to the replay buffer and every stream; its id. A stream whose
    /// queue is full is dropped: it never holds the hub back.
    pub(crate) fn publish(&self, kind: &str, data: &Value) -> u64 {
        let mut hub = lock(&self.hub);
        let id = hub.next_id;
        hub.next_id += 1;
        let frame = Bytes::from(format!(
            "id: {}-{id}\nevent: {kind}\ndata: {data}\n\n",
            self.boot
        ));
        if hub.replay.len() == self.settings.replay {
            hub.replay.pop_front();
        }
        hub.replay.push_back((id, frame.clone()));
        let mut dropped = 0;
        hub.subscribers
            .retain(|tx| match tx.try_send(frame.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    dropped += 1;
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            });
        if dropped > 0 {
            self.streams_dropped.fetch_add(dropped, Ordering::Relaxed);
            tracing::debug!(
                target: "breaker_admin",
                streams = dropped,
                "dropped event streams that did not keep up"
            );
        }
        id
    }

    /// A new stream: the events it missed since `last_event_id` if they are all still
    /// buffered, else a `hello` event with every breaker and its history; then every event
    /// published after those, through the returned queue.
    pub(crate) fn subscribe(
        &self,
        last_event_id: Option<&str>,
    ) -> Result<(Vec<Bytes>, mpsc::Receiver<Bytes>), TooManyStreams> {
        let mut hub = lock(&self.hub);
        hub.subscribers.retain(|tx| !tx.is_closed());
        if hub.subscribers.len() >= self.settings.max_streams {
            return Err(TooManyStreams);
        }
        let resume = last_event_id
            .and_then(|id| id.rsplit_once('-'))
            .filter(|(boot, _)| *boot == self.boot)
            .and_then(|(_, n)| n.parse::<u64>().ok())
            .filter(|last| *last < hub.next_id);
        let oldest = hub.replay.front().map_or(hub.next_id, |(id, _)| *id);
        let initial = match resume {
            // Nothing it missed has left the buffer.
            Some(last) if last + 1 >= oldest => hub
                .replay
                .iter()
                .filter(|(id, _)| *id > last)
                .map(|(_, frame)| frame.clone())
                .collect(),
            _ => vec![self.hello(hub.next_id - 1)],
        };
        let (tx, rx) = mpsc::channel(self.settings.stream_buffer);
        hub.subscribers.push(tx);
        Ok((initial, rx))
    }

    /// The first event of a new stream: every breaker now, with its history. Its id is the
    /// last event's, so a client that reconnects with it resumes after that event.
    fn hello(&self, last_id: u64) -> Bytes {
        let breakers = lock(&self.tracker).listing(&self.registry, true);
        let data = json!({
            "at": unix_ms(SystemTime::now()),
            "operator_actions": self.auth.steers(),
            "read_token_required": self.auth.reads_need_token(),
            "snapshot_interval_ms": self.settings.snapshot_interval.as_millis() as u64,
            "history_step_ms": self.settings.history_step.as_millis() as u64,
            "actions": breaker_core::OperatorAction::ALL.map(|a| a.as_str()),
            "breakers": breakers,
        });
        Bytes::from(format!(
            "retry: 2000\nid: {}-{last_id}\nevent: hello\ndata: {data}\n\n",
            self.boot
        ))
    }

    /// Names and publishes the transitions the observer queued.
    fn drain_transitions(&self, batch: &mut Vec<Transition>, overwritten_seen: &mut u64) {
        batch.clear();
        self.observer.drain(batch);
        let overwritten = self.observer.overwritten();
        if overwritten > *overwritten_seen {
            let lost = overwritten - *overwritten_seen;
            *overwritten_seen = overwritten;
            self.publish(
                "lost",
                &json!({ "at": unix_ms(SystemTime::now()), "transitions": lost }),
            );
        }
        if batch.is_empty() {
            return;
        }
        let now_ms = unix_ms(SystemTime::now());
        let (events, unattributed) = lock(&self.tracker).attribute(batch, &self.registry, now_ms);
        self.unattributed.fetch_add(unattributed, Ordering::Relaxed);
        for mut event in events {
            event["at"] = json!(now_ms);
            self.publish("transition", &event);
        }
    }

    /// Samples every breaker and publishes the snapshot.
    fn publish_snapshot(&self) {
        let now_ms = unix_ms(SystemTime::now());
        let breakers = lock(&self.tracker).sample(&self.registry, Instant::now(), now_ms);
        self.publish("snapshot", &json!({ "at": now_ms, "breakers": breakers }));
    }
}

/// Starts the hub task on `runtime`; it ends once nothing else holds `shared`.
pub(crate) fn spawn(shared: &Arc<Shared>, runtime: &tokio::runtime::Handle) {
    let weak = Arc::downgrade(shared);
    let interval = shared.settings.snapshot_interval;
    let poll = TRANSITION_POLL.min(interval);
    runtime.spawn(async move {
        let mut tick = tokio::time::interval(poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut batch = Vec::new();
        let mut overwritten_seen = 0;
        let mut last_snapshot: Option<Instant> = None;
        loop {
            tick.tick().await;
            let Some(shared) = weak.upgrade() else {
                return;
            };
            // A breaker's `Inspect` implementation is user code: if it panics, this tick's
            // events are lost, not the hub.
            let tick_work = std::panic::AssertUnwindSafe(|| {
                shared.drain_transitions(&mut batch, &mut overwritten_seen);
                if last_snapshot.is_none_or(|at| at.elapsed() >= interval) {
                    last_snapshot = Some(Instant::now());
                    shared.publish_snapshot();
                }
            });
            if std::panic::catch_unwind(tick_work).is_err() {
                tracing::error!(
                    target: "breaker_admin",
                    "a breaker's Inspect implementation panicked while the admin sampled it; \
                     the admin goes on"
                );
            }
        }
    });
}
