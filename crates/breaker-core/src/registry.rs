//! A registry of named breakers, for health and readiness endpoints and admin interfaces.

use std::collections::BTreeMap;
use std::fmt;
use std::string::String;
use std::sync::{Arc, RwLock};
use std::vec::Vec;

use crate::breaker::CircuitBreaker;
use crate::breaker::OperatorAction;
use crate::clock::Clock;
use crate::config::ConfigInForce;
use crate::observer::Observer;
use crate::snapshot::Snapshot;
use crate::state::State;

/// A breaker as a registry sees it: its [`Snapshot`], and what an admin interface shows and
/// does beside it (its name, the configuration in force, details of its own, operator
/// actions). Every [`CircuitBreaker`] implements it in full, whatever its clock and
/// observer types; an implementation of your own needs only [`snapshot`](Self::snapshot)
/// and is then read-only.
///
/// ```
/// use breaker_core::{CircuitBreaker, Inspect, OperatorAction, Snapshot, State};
///
/// // A breaker of yours with something to say beside its counts.
/// struct Replica { breaker: CircuitBreaker<breaker_core::MonotonicClock>, zone: &'static str }
///
/// impl Inspect for Replica {
///     fn snapshot(&self) -> Snapshot {
///         self.breaker.snapshot()
///     }
///     fn details(&self) -> Vec<(String, String)> {
///         vec![("zone".into(), self.zone.into())]
///     }
///     fn apply(&self, action: OperatorAction) -> Result<(), breaker_core::UnsupportedAction> {
///         self.breaker.apply(action);
///         Ok(())
///     }
/// }
///
/// let replica = Replica { breaker: CircuitBreaker::builder().build()?, zone: "eu-1" };
/// replica.apply(OperatorAction::ForceOpen)?;
/// assert_eq!(replica.snapshot().state, State::ForcedOpen);
/// assert_eq!(replica.config(), None); // not reported by this implementation
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait Inspect: Send + Sync {
    /// The breaker's state and counts.
    fn snapshot(&self) -> Snapshot;

    /// The breaker's own name, as its observers see it (`""` if it has none, and by
    /// default).
    fn name(&self) -> &str {
        ""
    }

    /// The settings in force; `None` if this implementation does not report them (the
    /// default).
    fn config(&self) -> Option<ConfigInForce> {
        None
    }

    /// What else an operator should see, as `(key, value)` pairs: for a breaker shared by a
    /// fleet, its link to the fleet and the fleet's view. None by default.
    fn details(&self) -> Vec<(String, String)> {
        Vec::new()
    }

    /// Applies an operator's action (see [`CircuitBreaker::apply`]). By default the
    /// breaker is read-only: [`UnsupportedAction`].
    fn apply(&self, action: OperatorAction) -> Result<(), UnsupportedAction> {
        Err(UnsupportedAction(action))
    }
}

impl<C, O> Inspect for CircuitBreaker<C, O>
where
    C: Clock + Send + Sync,
    O: Observer + Send + Sync,
{
    fn snapshot(&self) -> Snapshot {
        CircuitBreaker::snapshot(self)
    }

    fn name(&self) -> &str {
        CircuitBreaker::name(self)
    }

    fn config(&self) -> Option<ConfigInForce> {
        Some(self.config_in_force())
    }

    fn apply(&self, action: OperatorAction) -> Result<(), UnsupportedAction> {
        CircuitBreaker::apply(self, action);
        Ok(())
    }
}

/// An operator action sent to a breaker that is read-only (its [`Inspect`] implementation
/// does not take actions).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnsupportedAction(pub OperatorAction);

impl fmt::Display for UnsupportedAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "this breaker is read-only here and cannot {}: steer it where it is built, or \
             implement Inspect::apply for it",
            self.0.as_str()
        )
    }
}

impl std::error::Error for UnsupportedAction {}

/// A family of breakers reported under one name, one line per member: a keyed registry of
/// per-host or per-route breakers (`breaker_tower::KeyedRegistry` implements it).
pub trait InspectGroup: Send + Sync {
    /// Each member's key (as it should appear in a report) and snapshot.
    fn snapshots(&self) -> Vec<(String, Snapshot)>;

    /// Each member's key and the member itself, to inspect in full and steer. By default
    /// the members of [`snapshots`](Self::snapshots), read-only.
    fn members(&self) -> Vec<(String, Arc<dyn Inspect>)> {
        self.snapshots()
            .into_iter()
            .map(|(key, snapshot)| (key, Arc::new(Frozen(snapshot)) as Arc<dyn Inspect>))
            .collect()
    }

    /// The member reported under `key`, if there is one. By default a search of
    /// [`members`](Self::members).
    fn member(&self, key: &str) -> Option<Arc<dyn Inspect>> {
        self.members()
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, member)| member)
    }
}

/// A member of a group that reports snapshots only: read-only, as it was when listed.
struct Frozen(Snapshot);

impl Inspect for Frozen {
    fn snapshot(&self) -> Snapshot {
        self.0
    }
}

/// A breaker of a [`Registry`], from [`Registry::breakers`] and [`Registry::get`].
#[derive(Clone)]
#[non_exhaustive]
pub struct Registered {
    /// The name it was registered under; `group/key` for a member of a group.
    pub name: String,
    /// Whether the service is not ready while this breaker is open.
    pub critical: bool,
    /// The breaker, to inspect and steer.
    pub breaker: Arc<dyn Inspect>,
}

impl fmt::Debug for Registered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registered")
            .field("name", &self.name)
            .field("critical", &self.critical)
            .field("state", &self.breaker.snapshot().state)
            .finish_non_exhaustive()
    }
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

    /// Every breaker by name (members of a group by `group/key`), to inspect in full or
    /// steer: what an admin interface lists.
    ///
    /// ```
    /// use breaker_core::{CircuitBreaker, OperatorAction, Registry, State};
    /// use std::sync::Arc;
    ///
    /// let registry = Registry::new();
    /// registry.register("search", Arc::new(CircuitBreaker::builder().name("search").build()?))?;
    /// let all = registry.breakers();
    /// assert_eq!((all[0].name.as_str(), all[0].breaker.name()), ("search", "search"));
    /// registry.get("search").unwrap().breaker.apply(OperatorAction::Trip)?;
    /// assert_eq!(registry.report()[0].snapshot.state, State::Open);
    /// assert!(registry.get("nope").is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn breakers(&self) -> Vec<Registered> {
        let mut breakers = Vec::new();
        for (name, entry) in self.read().iter() {
            match entry {
                Entry::One { breaker, critical } => breakers.push(Registered {
                    name: name.clone(),
                    critical: *critical,
                    breaker: breaker.clone(),
                }),
                Entry::Group(group) => {
                    let mut members = group.members();
                    members.sort_by(|a, b| a.0.cmp(&b.0));
                    breakers.extend(members.into_iter().map(|(key, breaker)| Registered {
                        name: std::format!("{name}/{key}"),
                        critical: false,
                        breaker,
                    }));
                }
            }
        }
        breakers
    }

    /// The breaker registered under `name`, or the member `key` of the group registered
    /// under `group` for `name` = `group/key`.
    pub fn get(&self, name: &str) -> Option<Registered> {
        let entries = self.read();
        if let Some(Entry::One { breaker, critical }) = entries.get(name) {
            return Some(Registered {
                name: name.into(),
                critical: *critical,
                breaker: breaker.clone(),
            });
        }
        // Any `/` may end the group's name: groups named `a` and `a/b` are both possible.
        name.match_indices('/').find_map(|(at, _)| {
            let Some(Entry::Group(group)) = entries.get(&name[..at]) else {
                return None;
            };
            group.member(&name[at + 1..]).map(|breaker| Registered {
                name: name.into(),
                critical: false,
                breaker,
            })
        })
    }

    /// Ready unless a breaker registered as critical refuses calls: forced open, or open and
    /// enforcing all its refusals. A breaker still being rolled out (an
    /// [`enforcement`](crate::Builder::enforcement) below 100 %) lets calls through while
    /// open, so it does not take the service out of rotation.
    pub fn is_ready(&self) -> bool {
        self.read().values().all(|entry| match entry {
            Entry::One {
                breaker,
                critical: true,
            } => !refuses_calls(&**breaker),
            _ => true,
        })
    }

    /// The critical breakers that make the service not ready (see
    /// [`is_ready`](Self::is_ready)), by name.
    pub fn not_ready(&self) -> Vec<String> {
        self.read()
            .iter()
            .filter_map(|(name, entry)| match entry {
                Entry::One {
                    breaker,
                    critical: true,
                } if refuses_calls(&**breaker) => Some(name.clone()),
                _ => None,
            })
            .collect()
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

/// Whether `breaker` refuses the calls it is asked to make: forced open (always enforced),
/// or open with every refusal enforced.
fn refuses_calls(breaker: &dyn Inspect) -> bool {
    match breaker.snapshot().state {
        State::ForcedOpen => true,
        State::Open => breaker
            .config()
            .is_none_or(|config| config.enforcement >= 100.0),
        _ => false,
    }
}
