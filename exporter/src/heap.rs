//! Keeps the process's memory at what it uses, not at its peak.
//!
//! glibc's allocator keeps freed memory in its arenas. Two things make kadvisor's
//! peak far above its steady state: loading the eBPF object and parsing the kernel's
//! BTF at start (tens of MB, freed at once), and a wave of containers (a scrape of
//! 500 rows writes a ~2.5 MB exposition, and every per-cgroup structure grows). By
//! default glibc raises its mmap threshold each time a large mmapped block is freed
//! (up to 32 MiB), so after the start-up allocations every scrape buffer lands in the
//! heap, where it fragments and is never returned. Measured in the churn test
//! (tests/tests/discovery.rs, 500 cgroups): RSS ended +14% above the cold start with
//! under 1 MB of the heap in use; with a fixed mmap threshold (`main.rs`
//! `tune_malloc`) and the trim below, +1 to +5%.
//!
//! Other allocators (musl) do not need it: the call is glibc-only and compiled out
//! elsewhere.

/// Returns the allocator's free pages to the kernel (all arenas). A fraction of a
/// millisecond on a small heap (measured 0.07–0.4 ms at 1–500 rows); called after
/// start-up and after a sweep retired cgroups, not per scrape.
pub fn release_free_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only walks the allocator's own free lists; no pointers of
    // ours are involved.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Bytes the allocator has handed out and not got back, in every arena and in
/// mmapped blocks: the live heap, without the free memory glibc keeps for reuse.
/// RSS minus this is what the allocator holds (fragmentation); a leak raises this.
/// `None` with other allocators.
pub fn in_use_bytes() -> Option<u64> {
    #[cfg(target_env = "gnu")]
    {
        // SAFETY: mallinfo2 only reads the allocator's own statistics (it takes each
        // arena's lock); glibc ≥ 2.33, below what the binary already needs.
        let info = unsafe { libc::mallinfo2() };
        u64::try_from(info.uordblks.saturating_add(info.hblkhd)).ok()
    }
    #[cfg(not(target_env = "gnu"))]
    {
        None
    }
}
