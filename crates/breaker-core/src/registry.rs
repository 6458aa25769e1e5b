//! A registry of named breakers, for health and readiness endpoints.

use std::collections::BTreeMap;
use std::fmt;
use std::string::String;
use std::sync::{Arc, RwLock};
use std::vec::Vec;

use crate::{CircuitBreaker, Clock, Observer, Snapshot, State};

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

/// One breaker's line in a [`Registry::report`].
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// The name it was registered under.
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

/// Name -> (breaker, critical).
type Entries = BTreeMap<String, (Arc<dyn Inspect>, bool)>;

/// Named breakers, some marked critical: the source of `/health` (every breaker's state
/// and counts) and `/ready` (not ready while a critical breaker is open).
///
/// ```
/// use breaker_core::{CircuitBreaker, Registry, State};
/// use std::sync::Arc;
///
/// let registry = Registry::new();
/// let payments = Arc::new(CircuitBreaker::builder().build()?);
/// let search = Arc::new(CircuitBreaker::builder().build()?);
/// registry.register("payments", payments.clone(), true)?;
/// registry.register("search", search.clone(), false)?;
///
/// search.force_open(); // not critical: still ready
/// assert!(registry.is_ready());
/// payments.force_open();
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

    /// Registers `breaker` under `name`. `critical`: readiness fails while it is open.
    pub fn register(
        &self,
        name: impl Into<String>,
        breaker: Arc<dyn Inspect>,
        critical: bool,
    ) -> Result<(), DuplicateName> {
        let name = name.into();
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        if entries.contains_key(&name) {
            return Err(DuplicateName(name));
        }
        entries.insert(name, (breaker, critical));
        Ok(())
    }

    /// Removes the breaker registered under `name`; whether there was one.
    pub fn remove(&self, name: &str) -> bool {
        self.entries
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name)
            .is_some()
    }

    /// Every breaker's state and counts, by name.
    pub fn report(&self) -> Vec<Report> {
        self.read()
            .iter()
            .map(|(name, (breaker, critical))| Report {
                name: name.clone(),
                critical: *critical,
                snapshot: breaker.snapshot(),
            })
            .collect()
    }

    /// Ready unless a critical breaker is open or forced open.
    pub fn is_ready(&self) -> bool {
        self.read().values().all(|(breaker, critical)| {
            !critical || !matches!(breaker.snapshot().state, State::Open | State::ForcedOpen)
        })
    }

    /// Number of registered breakers.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// Whether no breaker is registered.
    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }
}
