//! A fixed-size table on huge pages where the kernel gives them: the
//! enforcer reads one random cache line of its compact table and of its
//! index for every new 4-tuple, and with 4 KiB pages each of those reads
//! also missed the TLB (a page walk, nested under a hypervisor), which cost
//! more than the miss itself. A table of 1 MiB or more is allocated aligned
//! to 2 MiB and rounded up to whole huge pages; the shell's [`Advice`]
//! (the capture-worker's: `madvise(MADV_HUGEPAGE)`, a system call this
//! crate does not make) sees the memory before its pages are first
//! written. Without advice, or where transparent huge pages are off, it is
//! an ordinary allocation.

use std::alloc::{alloc, dealloc, handle_alloc_error, Layout};
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

const HUGE_PAGE: usize = 2 << 20;

/// What the shell does with a large table's memory before it is first
/// written (the capture-worker asks the kernel for huge pages).
pub type Advice = fn(&mut [std::mem::MaybeUninit<u8>]);

/// No advice: ordinary pages.
pub fn no_advice(_: &mut [std::mem::MaybeUninit<u8>]) {}

pub struct HugeTable<T: Copy> {
    ptr: NonNull<T>,
    len: usize,
    layout: Layout,
}

// SAFETY: the table owns its elements like a Vec<T> does.
unsafe impl<T: Copy + Send> Send for HugeTable<T> {}
unsafe impl<T: Copy + Sync> Sync for HugeTable<T> {}

impl<T: Copy> HugeTable<T> {
    /// `len` (at least 1) copies of `fill`, all written now: the memory is
    /// resident from the start, and never grows.
    pub fn new(len: usize, fill: T, advise: Advice) -> HugeTable<T> {
        assert!(len > 0 && std::mem::size_of::<T>() > 0);
        let size = len.checked_mul(std::mem::size_of::<T>()).expect("table size");
        let huge = size >= HUGE_PAGE / 2;
        let layout = if huge { Layout::from_size_align(size.next_multiple_of(HUGE_PAGE), HUGE_PAGE) } else { Layout::array::<T>(len) }.expect("table layout");
        // SAFETY: the layout's size is not zero.
        let raw = unsafe { alloc(layout) };
        let Some(ptr) = NonNull::new(raw as *mut T) else { handle_alloc_error(layout) };
        if huge {
            // SAFETY: the allocation just made, `layout.size()` bytes, seen
            // as bytes not yet initialised.
            advise(unsafe { std::slice::from_raw_parts_mut(raw.cast::<std::mem::MaybeUninit<u8>>(), layout.size()) });
        }
        for i in 0..len {
            // SAFETY: within the allocation, which holds `len` elements.
            unsafe { ptr.as_ptr().add(i).write(fill) };
        }
        HugeTable { ptr, len, layout }
    }
}

impl<T: Copy> Deref for HugeTable<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: `len` initialised elements, owned by self.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: Copy> DerefMut for HugeTable<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as above, borrowed mutably through self.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: Copy> Drop for HugeTable<T> {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout; T: Copy needs no drop.
        unsafe { dealloc(self.ptr.as_ptr().cast(), self.layout) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_and_large_tables_hold_what_was_written() {
        for len in [1, 7, 1 << 15] {
            let mut t = HugeTable::new(len, [3u8; 64], no_advice);
            assert_eq!(t.len(), len);
            assert!(t.iter().all(|x| *x == [3; 64]));
            t[len - 1][0] = 9;
            assert_eq!(t[len - 1][0], 9);
            if len * 64 >= HUGE_PAGE / 2 {
                assert_eq!(t.as_ptr() as usize % HUGE_PAGE, 0, "aligned to a huge page");
            }
        }
    }
}
