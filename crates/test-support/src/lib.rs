//! Helpers shared by the tests and benchmarks of the breaker crates.
//!
//! Features: `proxy` (a fault-injecting TCP proxy), `browser` (headless Chromium over the
//! DevTools protocol).
//!
//! [`CountingAllocator`] forwards to the system allocator and counts allocations while
//! [`allocations`] (this thread) or [`allocations_all_threads`] runs. Install it in a test
//! or bench binary:
//!
//! ```
//! use breaker_test_support::{CountingAllocator, allocations};
//!
//! #[global_allocator]
//! static GLOBAL: CountingAllocator = CountingAllocator;
//!
//! assert_eq!(allocations(|| drop(std::hint::black_box(Box::new(1u8)))), 1);
//! assert_eq!(allocations(|| { std::hint::black_box(1 + 1); }), 0);
//! ```

// A global allocator is unsafe to implement; this one only counts and forwards.
#![allow(unsafe_code)]

#[cfg(feature = "browser")]
pub mod browser;
#[cfg(feature = "browser")]
pub use browser::Chromium;
pub mod postgres;
#[cfg(feature = "proxy")]
pub mod proxy;
pub use postgres::PrivatePostgres;
#[cfg(feature = "proxy")]
pub use proxy::{FaultProxy, Mode};
#[cfg(feature = "redis-server")]
pub mod redis_server;
#[cfg(feature = "redis-server")]
pub use redis_server::{RedisCluster, RedisServer};

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

/// Counts allocations, then forwards to [`System`].
#[derive(Debug)]
pub struct CountingAllocator;

thread_local! {
    static THIS_THREAD: Cell<Option<u64>> = const { Cell::new(None) };
    static THIS_THREAD_BYTES: Cell<Option<i64>> = const { Cell::new(None) };
}

static ALL_THREADS: AtomicBool = AtomicBool::new(false);
static ALL_THREADS_COUNT: AtomicU64 = AtomicU64::new(0);
static TRACK_BYTES: AtomicBool = AtomicBool::new(false);
static NET_BYTES: AtomicI64 = AtomicI64::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; the counting touches
// only a const-initialised thread-local without destructor and two atomics.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = THIS_THREAD.try_with(|c| {
            if let Some(n) = c.get() {
                c.set(Some(n + 1));
            }
        });
        if ALL_THREADS.load(Ordering::Relaxed) {
            ALL_THREADS_COUNT.fetch_add(1, Ordering::Relaxed);
        }
        if TRACK_BYTES.load(Ordering::Relaxed) {
            NET_BYTES.fetch_add(layout.size() as i64, Ordering::Relaxed);
        }
        let _ = THIS_THREAD_BYTES.try_with(|c| {
            if let Some(n) = c.get() {
                c.set(Some(n + layout.size() as i64));
            }
        });
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if TRACK_BYTES.load(Ordering::Relaxed) {
            NET_BYTES.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        }
        let _ = THIS_THREAD_BYTES.try_with(|c| {
            if let Some(n) = c.get() {
                c.set(Some(n - layout.size() as i64));
            }
        });
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Allocations made on this thread while `f` runs (other threads, such as a test harness's,
/// are not counted). Needs [`CountingAllocator`] as the global allocator.
pub fn allocations(f: impl FnOnce()) -> u64 {
    THIS_THREAD.with(|c| c.set(Some(0)));
    f();
    THIS_THREAD.with(|c| c.replace(None)).unwrap_or(0)
}

/// Allocations made by any thread while `f` runs (for code that spawns threads).
pub fn allocations_all_threads(f: impl FnOnce()) -> u64 {
    ALL_THREADS_COUNT.store(0, Ordering::SeqCst);
    ALL_THREADS.store(true, Ordering::SeqCst);
    f();
    ALL_THREADS.store(false, Ordering::SeqCst);
    ALL_THREADS_COUNT.load(Ordering::SeqCst)
}

/// Runs `f` and returns what it returned with the heap bytes it left allocated, counted on
/// every thread: bytes allocated minus bytes freed while `f` ran (requested sizes, without
/// the allocator's own overhead). Keep the result alive to measure a structure `f` builds.
/// Needs [`CountingAllocator`] as the global allocator.
///
/// ```
/// use breaker_test_support::{CountingAllocator, heap_growth};
///
/// #[global_allocator]
/// static GLOBAL: CountingAllocator = CountingAllocator;
///
/// let (v, bytes) = heap_growth(|| vec![0u8; 4096]);
/// assert_eq!(bytes, 4096);
/// drop(v);
/// ```
pub fn heap_growth<T>(f: impl FnOnce() -> T) -> (T, i64) {
    NET_BYTES.store(0, Ordering::SeqCst);
    TRACK_BYTES.store(true, Ordering::SeqCst);
    let value = f();
    TRACK_BYTES.store(false, Ordering::SeqCst);
    (value, NET_BYTES.load(Ordering::SeqCst))
}

/// [`heap_growth`], counting only this thread's allocations and frees: for a structure built
/// on the calling thread, measured while other threads of the process (a test harness
/// finishing another test, say) allocate and free. Needs [`CountingAllocator`] as the global
/// allocator.
///
/// ```
/// use breaker_test_support::{CountingAllocator, heap_growth_on_this_thread};
///
/// #[global_allocator]
/// static GLOBAL: CountingAllocator = CountingAllocator;
///
/// let other = std::thread::spawn(|| {
///     for _ in 0..1000 {
///         drop(vec![0u8; 100]); // another thread's allocations and frees: not counted
///     }
/// });
/// let (v, bytes) = heap_growth_on_this_thread(|| vec![0u8; 4096]);
/// assert_eq!(bytes, 4096);
/// other.join().unwrap();
/// drop(v);
/// ```
pub fn heap_growth_on_this_thread<T>(f: impl FnOnce() -> T) -> (T, i64) {
    THIS_THREAD_BYTES.with(|c| c.set(Some(0)));
    let value = f();
    let bytes = THIS_THREAD_BYTES.with(|c| c.replace(None)).unwrap_or(0);
    (value, bytes)
}
