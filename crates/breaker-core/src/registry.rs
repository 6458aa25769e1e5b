//! A registry of named breakers, for health and readiness endpoints.

use std::collections::BTreeMap;
use std::fmt;
use std::string::String;
use std::sync::{Arc, RwLock};
use std::vec::Vec;

use crate::breaker::CircuitBreaker;
use crate::clock::Clock;
use crate::observer::Observer;
use crate::snapshot::Snapshot;
use crate::state::State;

/// Anything that can report a [`Snapshot`]: every [`CircuitBreaker`], whatever its clock
/// and observer types.
pub trait Inspect: Send + Sync {
    /// The breaker's state and counts.
    fn snapshot(&self) -> Snapshot;
}

impl<C, O> Inspect for CircuitBreaker<C, O>
where
    C: Clock + Send + Sync,
    O: Observer + Send + Sync,
{
    fn snapshot(&self) -> Snapshot {
        CircuitBreaker::snapshot(self)
    }
}

/// A family of breakers reported under one name, one line per member: a keyed registry of
/// per-host or per-route breakers (`breaker_tower::KeyedRegistry` implements it).
pub trait InspectGroup: Send + Sync {
    /// Each member's key (as it should appear in a report) and snapshot.
    fn snapshots(&self) -> Vec<(String, Snapshot)>;
}

/// One breaker's line in a [`Registry::report`].
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// The name it was registered under; `group/key` for a member of a group.
    pub name: String,
    /// Whether the service is not ready while this breaker is open.
    pub critical: bool,
    /// Its state and counts.
    pub snapshot: Snapshot,
}

/// A name was registered twice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DuplicateName(pub String);

impl fmt::Display for DuplicateName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a breaker named {:?} is already registered; pick another name or remove the old one first",
            self.0
        )
    }
}

impl std::error::Error for DuplicateName {}

enum Entry {
    One {
        breaker: Arc<dyn Inspect>,
        critical: bool,
    },
    Group(Arc<dyn InspectGroup>),
}

type Entries = BTreeMap<String, Entry>;

/// Named breakers: the source of `/health` (every breaker's state and counts) and `/ready`.
///
/// **Readiness.** Register a breaker with [`register`](Self::register) and it is reported,
/// nothing more. Only breakers registered with [`register_critical`](Self::register_critical)
/// make the service not ready while they are open. Keep that for what this replica alone
/// cannot serve without (its own disk, a sidecar): a breaker guarding a *shared* downstream
/// dependency opens on every replica at once, and failing readiness for it takes every
/// replica out of the load balancer together, which turns a partial outage into a total one.
/// Serve fallbacks or 503s for that instead.
///
/// ```
/// use breaker_core::{CircuitBreaker, Registry, State};
/// use std::sync::Arc;
///
/// let registry = Registry::new();
/// let local_disk = Arc::new(CircuitBreaker::builder().build()?);
/// let search_api = Arc::new(CircuitBreaker::builder().build()?);
/// registry.register_critical("local-disk", local_disk.clone())?;
/// registry.register("search-api", search_api.clone())?;
///
/// search_api.force_open(); // a shared dependency: reported, still ready
/// assert!(registry.is_ready());
/// local_disk.force_open(); // this replica cannot serve: not ready
/// assert!(!registry.is_ready());
/// assert_eq!(registry.report()[0].snapshot.state, State::ForcedOpen);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Default)]
pub struct Registry {
    entries: RwLock<Entries>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self.read().keys().cloned().collect();
        f.debug_struct("Registry").field("names", &names).finish()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Entries> {
        // A panic while holding the lock cannot leave the map half-updated (each write is
        // one insert or remove), so a poisoned lock is still consistent.
        self.entries.read().unwrap_or_else(|e| e.into_inner())
    }

    fn insert(&self, name: String, entry: Entry) -> Result<(), DuplicateName> {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        if entries.contains_key(&name) {
            return Err(DuplicateName(name));
        }
        entries.insert(name, entry);
        Ok(())
    }

    /// Registers `breaker` under `name`: reported by `/health`, no effect on readiness.
    pub fn register(
        &self,
        name: impl Into<String>,
        breaker: Arc<dyn Inspect>,
    ) -> Result<(), DuplicateName> {
        self.insert(
            name.into(),
            Entry::One {
                breaker,
                critical: false,
            },
        )
    }

    /// Registers `breaker` under `name` as critical to serving: the service is not ready
    /// while it is open or forced open. See the type's docs for when that is right.
    pub fn register_critical(
        &self,
        name: impl Into<String>,
        breaker: Arc<dyn Inspect>,
    ) -> Result<(), DuplicateName> {
        self.insert(
            name.into(),
            Entry::One {
                breaker,
                critical: true,
            },
        )
    }

    /// Registers a family of breakers (a keyed registry) under `name`: each member is
    /// reported as `name/key`. Groups never affect readiness.
    pub fn register_group(
        &self,
        name: impl Into<String>,
        group: Arc<dyn InspectGroup>,
    ) -> Result<(), DuplicateName> {
        self.insert(name.into(), Entry::Group(group))
    }

    /// Removes what is registered under `name`; whether there was something.
    pub fn remove(&self, name: &str) -> bool {
        self.entries
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name)
            .is_some()
    }

    /// Every breaker's state and counts, by name (members of a group by `group/key`).
    pub fn report(&self) -> Vec<Report> {
        let mut reports = Vec::new();
        for (name, entry) in self.read().iter() {
            match entry {
                Entry::One { breaker, critical } => reports.push(Report {
                    name: name.clone(),
                    critical: *critical,
                    snapshot: breaker.snapshot(),
                }),
                Entry::Group(group) => {
                    let mut members = group.snapshots();
                    members.sort_by(|a, b| a.0.cmp(&b.0));
                    reports.extend(members.into_iter().map(|(key, snapshot)| Report {
                        name: std::format!("{name}/{key}"),
                        critical: false,
                        snapshot,
                    }));
                }
            }
        }
        reports
    }

    /// Ready unless a breaker registered as critical is open or forced open.
    pub fn is_ready(&self) -> bool {
        self.read().values().all(|entry| match entry {
            Entry::One {
                breaker,
                critical: true,
            } => !matches!(breaker.snapshot().state, State::Open | State::ForcedOpen),
            _ => true,
        })
    }

    /// Number of registered names (a group counts once).
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// Whether nothing is registered.
    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }
}
