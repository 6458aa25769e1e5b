//! The atomics the breaker is built from, switched to loom's under `cfg(loom)` so the same
//! code is model-checked (the pattern tokio uses).

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{AtomicU64, Ordering};
#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU64, Ordering};

#[cfg(all(feature = "alloc", not(loom)))]
pub(crate) use alloc::sync::Arc;
#[cfg(all(feature = "alloc", loom))]
pub(crate) use loom::sync::Arc;

/// Tells the CPU (or loom's scheduler) that a CAS loop is retrying.
#[inline]
pub(crate) fn spin_hint() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    core::hint::spin_loop();
}
