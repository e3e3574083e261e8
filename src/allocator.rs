//! Returning freed memory to the OS after a bulk load.
//!
//! The binary's allocator, mimalloc, keeps pages it has freed for reuse and returns
//! them only as later allocations purge them. After loading a large file (its
//! text, and each object's values while it is read, are freed once the snapshot is
//! built) those pages stayed resident: a 130 MB bundle of 220,000 objects left
//! `serve` at 338 MB resident where the snapshot needs about 180 MB
//! (`benches/load_file.rs`). One collection after such a load gives them back.

/// Asks mimalloc to return the memory freed on this thread to the OS. Call it on
/// the thread that did the bulk work, after the work's temporaries are dropped.
/// Costs milliseconds; harmless when mimalloc is not the global allocator (tests):
/// its heap is then empty.
pub fn release_freed_memory() {
    // SAFETY: `mi_collect` takes no pointers and may be called at any time.
    unsafe { libmimalloc_sys::mi_collect(true) }
}
