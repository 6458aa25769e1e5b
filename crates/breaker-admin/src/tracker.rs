//! What the hub remembers of each breaker between samples: since when it is in its state,
//! its rates per second, and the history of its rates.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use breaker_core::{Inspect, Registered, Registry, Snapshot, State};
use serde_json::{Value, json};

use crate::feed::{Transition, name_hash};
use crate::view::{self, Seen};

/// One point of a breaker's history.
#[derive(Clone, Copy, Debug)]
struct Point {
    at_ms: u64,
    failure_rate: Option<f64>,
    slow_call_rate: Option<f64>,
    rates: Option<(f64, f64)>,
    state: State,
}

/// A breaker the hub follows.
pub(crate) struct Tracked {
    breaker: Arc<dyn Inspect>,
    critical: bool,
    name_hash: u64,
    state: State,
    generation: u32,
    /// When it entered its state (ms since the Unix epoch): exact when a transition said
    /// so, else when the hub first saw the state.
    pub(crate) since_ms: u64,
    pub(crate) since_exact: bool,
    /// Finished calls and rejections at the last sample, and when.
    last: Option<(u64, u64, Instant)>,
    /// Calls and rejections per second between the last two samples.
    pub(crate) rates: Option<(f64, f64)>,
    history: VecDeque<Point>,
    last_point: Option<Instant>,
}

impl Tracked {
    /// What the views show of what the hub saw.
    pub(crate) fn seen(&self) -> Seen {
        Seen {
            since_ms: self.since_ms,
            since_exact: self.since_exact,
            rates: self.rates,
        }
    }

    fn new(registered: &Registered, snapshot: &Snapshot, now_ms: u64) -> Self {
        Tracked {
            breaker: registered.breaker.clone(),
            critical: registered.critical,
            name_hash: name_hash(registered.breaker.name()),
            state: snapshot.state,
            generation: snapshot.generation,
            since_ms: now_ms,
            since_exact: false,
            last: None,
            rates: None,
            history: VecDeque::new(),
            last_point: None,
        }
    }

    /// A state found by sampling, not announced by a transition: since now, roughly.
    fn saw(&mut self, snapshot: &Snapshot, now_ms: u64) {
        if snapshot.state != self.state {
            self.since_ms = now_ms;
            self.since_exact = false;
        }
        self.state = snapshot.state;
        self.generation = snapshot.generation;
    }
}

/// Every breaker of the registry the hub has seen, by registered name.
pub(crate) struct Tracker {
    breakers: BTreeMap<String, Tracked>,
    /// Time between two points of history, and how many are kept.
    step: Duration,
    points: usize,
}

impl Tracker {
    pub(crate) fn new(step: Duration, points: usize) -> Self {
        Tracker {
            breakers: BTreeMap::new(),
            step,
            points,
        }
    }

    pub(crate) fn get(&self, name: &str) -> Option<&Tracked> {
        self.breakers.get(name)
    }

    /// Lists the registry: new breakers are followed from now, removed ones forgotten; with
    /// `update`, a state that changed since the last look is taken as entered now.
    fn refresh(
        &mut self,
        registry: &Registry,
        now_ms: u64,
        update: bool,
    ) -> Vec<(Registered, Snapshot)> {
        let listed: Vec<(Registered, Snapshot)> = registry
            .breakers()
            .into_iter()
            .map(|r| {
                let s = r.breaker.snapshot();
                (r, s)
            })
            .collect();
        let mut kept = BTreeMap::new();
        for (registered, snapshot) in &listed {
            let tracked = match self.breakers.remove(&registered.name) {
                Some(mut tracked) => {
                    // The same name may now hold another breaker.
                    tracked.breaker = registered.breaker.clone();
                    tracked.critical = registered.critical;
                    tracked.name_hash = name_hash(registered.breaker.name());
                    if update {
                        tracked.saw(snapshot, now_ms);
                    }
                    tracked
                }
                None => Tracked::new(registered, snapshot, now_ms),
            };
            kept.insert(registered.name.clone(), tracked);
        }
        self.breakers = kept;
        listed
    }

    /// The periodic sample: every breaker's view, with rates since the last sample and a
    /// point of history when one is due.
    pub(crate) fn sample(&mut self, registry: &Registry, now: Instant, now_ms: u64) -> Vec<Value> {
        let listed = self.refresh(registry, now_ms, true);
        let mut views = Vec::with_capacity(listed.len());
        for (registered, s) in &listed {
            let Some(t) = self.breakers.get_mut(&registered.name) else {
                continue;
            };
            let (calls, rejections) = (s.totals.requests(), s.totals.rejected);
            if let Some((calls0, rejections0, at0)) = t.last {
                let dt = now.saturating_duration_since(at0).as_secs_f64();
                if dt > 0.0 {
                    t.rates = Some((
                        calls.saturating_sub(calls0) as f64 / dt,
                        rejections.saturating_sub(rejections0) as f64 / dt,
                    ));
                }
            }
            t.last = Some((calls, rejections, now));
            if t.last_point
                .is_none_or(|at| now.saturating_duration_since(at) >= self.step)
            {
                t.history.push_back(Point {
                    at_ms: now_ms,
                    failure_rate: s.failure_rate(),
                    slow_call_rate: s.slow_call_rate(),
                    rates: t.rates,
                    state: s.state,
                });
                while t.history.len() > self.points {
                    t.history.pop_front();
                }
                t.last_point = Some(now);
            }
            views.push(view::breaker(
                &registered.name,
                registered.critical,
                &*registered.breaker,
                s,
                Some(t.seen()),
            ));
        }
        views
    }

    /// Names each transition by the registered breaker it happened in (by its own name,
    /// and by which breaker's generation moved when several share a name), records when
    /// its state began, and returns the transitions' events and how many could not be
    /// named.
    pub(crate) fn attribute(
        &mut self,
        transitions: &[Transition],
        registry: &Registry,
        now_ms: u64,
    ) -> (Vec<Value>, u64) {
        let known =
            |tracker: &Tracker, hash| tracker.breakers.values().any(|t| t.name_hash == hash);
        if transitions.iter().any(|t| !known(self, t.name_hash)) {
            // A breaker registered since the last sample.
            self.refresh(registry, now_ms, false);
        }
        let mut events = Vec::with_capacity(transitions.len());
        let mut unattributed = 0;
        for transition in transitions {
            let candidates: Vec<&String> = self
                .breakers
                .iter()
                .filter(|(_, t)| t.name_hash == transition.name_hash)
                .map(|(name, _)| name)
                .collect();
            let chosen = match candidates.as_slice() {
                [] => None,
                [one] => Some((*one).clone()),
                several => {
                    let moved: Vec<&String> = several
                        .iter()
                        .copied()
                        .filter(|name| {
                            let t = &self.breakers[*name];
                            t.breaker.snapshot().generation != t.generation
                        })
                        .collect();
                    match moved.as_slice() {
                        [one] => Some((*one).clone()),
                        _ => None,
                    }
                }
            };
            let Some(name) = chosen else {
                unattributed += 1;
                continue;
            };
            let Some(t) = self.breakers.get_mut(&name) else {
                continue;
            };
            let snapshot = t.breaker.snapshot();
            t.state = transition.to;
            t.generation = snapshot.generation;
            t.since_ms = transition.at_ms;
            t.since_exact = true;
            let t = &self.breakers[&name];
            events.push(json!({
                "breaker": name,
                "breaker_name": t.breaker.name(),
                "from": transition.from.as_str(),
                "to": transition.to.as_str(),
                "transition_at": transition.at_ms,
                "view": view::breaker(&name, t.critical, &*t.breaker, &snapshot, Some(t.seen())),
            }));
        }
        (events, unattributed)
    }

    /// Every breaker of the registry as it is now (the tracker unchanged), with its history
    /// if asked: for `GET /breakers` and a new stream's first event.
    pub(crate) fn listing(&self, registry: &Registry, with_history: bool) -> Vec<Value> {
        registry
            .breakers()
            .into_iter()
            .map(|r| {
                let s = r.breaker.snapshot();
                let tracked = self.get(&r.name);
                let mut v = view::breaker(
                    &r.name,
                    r.critical,
                    &*r.breaker,
                    &s,
                    tracked.map(Tracked::seen),
                );
                if with_history {
                    v["history"] = tracked.map_or(Value::Array(Vec::new()), history);
                }
                v
            })
            .collect()
    }
}

/// `[[at_ms, failure_rate, slow_call_rate, calls_per_s, rejections_per_s, state], ...]`,
/// oldest first.
fn history(t: &Tracked) -> Value {
    t.history
        .iter()
        .map(|p| {
            json!([
                p.at_ms,
                p.failure_rate,
                p.slow_call_rate,
                p.rates.map(|r| r.0),
                p.rates.map(|r| r.1),
                p.state.as_str(),
            ])
        })
        .collect()
}
