//! What a keyed registry of per-host breakers occupies: 100,000 of them must fit in 100 MB.
//! Measured with a counting global allocator (bytes requested, net of frees), so the numbers
//! do not depend on the machine or on what else the process holds.

use breaker_core::CircuitBreaker;
use breaker_test_support::{CountingAllocator, heap_growth_on_this_thread};
use breaker_tower::KeyedRegistry;

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

const HOSTS: usize = 100_000;
const LIMIT_BYTES: i64 = 100_000_000;

fn fill<C, O>(registry: &KeyedRegistry<String, C, O>) {
    for i in 0..HOSTS {
        let host = format!("host-{i:06}.internal.example.com");
        registry.get(host.as_str());
    }
    // quick_cache's capacity is a target, not an exact bound: the registry is given some
    // room so that every host keeps its breaker.
    assert_eq!(registry.len(), HOSTS, "every host kept its breaker");
}

#[test]
fn one_hundred_thousand_per_host_breakers_fit_in_one_hundred_megabytes() {
    let (registry, bytes) = heap_growth_on_this_thread(|| {
        let registry = KeyedRegistry::new(HOSTS * 5 / 4, |_: &String| {
            CircuitBreaker::builder()
                .count_window(20)
                .minimum_calls(10)
                .failure_rate(50.0)
                .thread_counters(0)
                .build()
                .expect("valid settings")
        })
        .expect("valid capacity");
        fill(&registry);
        registry
    });
    let per_key = bytes / HOSTS as i64;
    let one = registry.get("host-000000.internal.example.com").memory();
    println!(
        "100k per-host breakers (count window of 20, no thread counters): {:.1} MB, {per_key} \
         bytes per key (breaker {} inline + {} heap, the rest: key, Arc, map)",
        bytes as f64 / 1e6,
        one.inline_bytes,
        one.heap_bytes
    );
    assert!(
        bytes <= LIMIT_BYTES,
        "100k per-host breakers take {bytes} bytes, over {LIMIT_BYTES}"
    );
    // The breaker itself is most of a key's cost: no stray allocation per key.
    assert!(
        per_key < one.total_bytes() as i64 + 200,
        "{per_key} bytes per key for a breaker of {} bytes",
        one.total_bytes()
    );
}

#[test]
fn per_thread_counters_are_what_a_shared_breaker_pays_for() {
    let make = |counters: u32| {
        CircuitBreaker::builder()
            .consecutive_failures(5)
            .thread_counters(counters)
            .build()
            .expect("valid settings")
    };
    let (none, max) = (make(0).memory(), make(15).memory());
    assert_eq!(none.thread_counters, 0);
    assert_eq!(max.thread_counters, 15);
    // 128 bytes (one cache-line pair) per thread counter.
    assert_eq!(max.heap_bytes - none.heap_bytes, 15 * 128);
    let (_, measured) = heap_growth_on_this_thread(|| make(15));
    assert_eq!(
        measured as usize, max.heap_bytes,
        "memory() reports what was allocated"
    );
}
