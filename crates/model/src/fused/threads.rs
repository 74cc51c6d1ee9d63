//! How the kernel's threads share a step: rayon's pool size, the per-step fork/join, and the
//! pointer through which the tasks of one step write their disjoint parts of shared buffers.

use rayon::prelude::*;
use std::marker::PhantomData;

/// Threads of rayon's global pool (RAYON_NUM_THREADS, or what the caller built with
/// `ThreadPoolBuilder::build_global`), the pool candle's matmul (gemm) also runs on.
pub fn pool_threads() -> usize {
    rayon::current_num_threads()
}

/// Runs `f(k)` for every block, returning when all are done: the per-step barrier. Called on
/// a rayon worker (see `kernel::forward`), a join is a push on the local deque that an idle
/// worker steals, or that this thread runs itself when every other core is busy (work stealing
/// never waits on a descheduled thread that has not started its part, unlike a fixed barrier).
pub(super) fn for_blocks(nb: usize, f: impl Fn(usize) + Sync + Send) {
    match nb {
        1 => f(0),
        2 => {
            rayon::join(|| f(0), || f(1));
        }
        _ => (0..nb).into_par_iter().for_each(f),
    }
}

/// A mutable buffer shared by the tasks of one step, each of which reads and writes its own
/// rows and columns (a block of hidden units, or a group of rows): the borrow checker cannot
/// see that the parts are disjoint, so the tasks go through this pointer. It borrows the
/// buffer mutably for `'a`, so the buffer cannot be touched otherwise while a `Ptr` to it
/// lives, and no slice it hands out outlives the buffer.
pub(super) struct Ptr<'a, T> {
    ptr: *mut T,
    len: usize,
    _buf: PhantomData<&'a mut [T]>,
}

impl<T> Clone for Ptr<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Ptr<'_, T> {}

// SAFETY: a `Ptr` stands for a `&mut [T]` whose parts other threads use, so moving it to
// another thread moves access to `T` values there, as sending a `&mut [T]` does: sound when
// `T: Send`. The aliasing discipline itself is the contract of `Ptr::slice` / `Ptr::at`.
unsafe impl<T: Send> Send for Ptr<'_, T> {}
// SAFETY: a shared `&Ptr` gives no more than a copy of the `Ptr` (it is `Copy`), that is,
// the access `Send` above grants; the same bound applies.
unsafe impl<T: Send> Sync for Ptr<'_, T> {}

impl<'a, T> Ptr<'a, T> {
    /// Shares `buf` for the lifetime of the returned pointer.
    pub(super) fn new(buf: &'a mut [T]) -> Self {
        Ptr { ptr: buf.as_mut_ptr(), len: buf.len(), _buf: PhantomData }
    }

    /// The element address `i` (one past the end allowed).
    ///
    /// # Safety
    /// `i <= len`; what is done with the pointer must respect the contract of [`Ptr::slice`].
    #[inline]
    pub(super) unsafe fn at(self, i: usize) -> *mut T {
        debug_assert!(i <= self.len, "Ptr::at({i}) past {}", self.len);
        // SAFETY: `i <= len` (the caller's contract) keeps the offset inside the allocation.
        unsafe { self.ptr.add(i) }
    }

    /// Elements `i .. i + len` as a mutable slice, valid while the buffer is borrowed.
    ///
    /// # Safety
    /// `i + len` is at most the buffer's length, and for as long as the slice lives no other
    /// slice or pointer access from this `Ptr` (on any thread) touches those elements, except
    /// reads while nothing writes them.
    #[inline]
    pub(super) unsafe fn slice(self, i: usize, len: usize) -> &'a mut [T] {
        debug_assert!(i + len <= self.len, "Ptr::slice({i}, {len}) past {}", self.len);
        // SAFETY: in bounds of the buffer borrowed for 'a, and exclusive by the caller's
        // contract.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(i), len) }
    }
}
