//! A global allocator that counts allocations per thread, for the tests that
//! show the hot path allocates per batch or per chunk, never per packet.
//! A test binary opts in with
//! `#[global_allocator] static A: ossensor_shared::alloc_count::Counting = ossensor_shared::alloc_count::Counting;`
//! Counting is per thread so tests running in parallel do not disturb each
//! other; it costs one thread-local increment per allocation.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

pub struct Counting;

thread_local! {
    // const-initialised, no destructor: safe to touch from inside the allocator.
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
}

// SAFETY: every call is forwarded to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: our caller's guarantees, passed on unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: our caller's guarantees, passed on unchanged.
        unsafe { System.alloc_zeroed(layout) }
    }

    /// A reallocation counts: growing a buffer is an allocation too.
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: our caller's guarantees, passed on unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: our caller's guarantees, passed on unchanged.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Allocations (and reallocations) made by this thread so far; meaningful
/// only in a binary whose global allocator is [`Counting`].
pub fn allocations_on_this_thread() -> u64 {
    ALLOCATIONS.with(|c| c.get())
}
