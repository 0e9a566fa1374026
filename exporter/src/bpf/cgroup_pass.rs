//! The cgroup pass's output (kernel/src/cgroup_pass.rs): the `CGROUP_PASS`
//! array, mapped into kadvisor's memory once, read after each walk without a syscall.
use std::{collections::HashMap, os::fd::AsRawFd as _};

use kadvisor_common::CgroupPassRecord;

/// One memory cgroup's page counters from the pass, in bytes (see `CgroupPassRecord`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemcgCounters {
    /// `memory.usage_in_bytes` (v1) / `memory.current` (v2), but for the root, whose
    /// files the kernel computes otherwise.
    pub usage: u64,
    /// `memory.max_usage_in_bytes` (v1) / `memory.peak` (v2).
    pub max_usage: u64,
    /// `memory.failcnt` (v1).
    pub failcnt: u64,
    /// `memory.kmem.usage_in_bytes` (v1); `None` where the kernel has no such counter.
    pub kmem: Option<u64>,
}

/// The `CGROUP_PASS` array mapped read-only (`BPF_F_MMAPABLE`).
pub struct MappedRecords {
    address: std::ptr::NonNull<CgroupPassRecord>,
    length: usize,
    capacity: usize,
}

// SAFETY: the mapping is read-only memory owned by this value; reading it from any
// thread is as safe as from the one that made it.
unsafe impl Send for MappedRecords {}
// SAFETY: as above; `records` only reads.
unsafe impl Sync for MappedRecords {}

impl MappedRecords {
    /// Maps the array behind `map` (an open map fd of `capacity` `CgroupPassRecord`s).
    pub fn map(map: &std::os::fd::OwnedFd, capacity: u32) -> std::io::Result<Self> {
        let capacity = capacity as usize;
        // SAFETY: sysconf has no preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
        let length = (capacity * size_of::<CgroupPassRecord>()).div_ceil(page) * page;
        // SAFETY: a new shared read-only mapping of the map's values (the kernel
        // allows a length up to its page-aligned size); nothing else owns the range.
        let address = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                length,
                libc::PROT_READ,
                libc::MAP_SHARED,
                map.as_raw_fd(),
                0,
            )
        };
        if address == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let address = std::ptr::NonNull::new(address.cast::<CgroupPassRecord>())
            .ok_or_else(|| std::io::Error::other("mmap returned NULL"))?;
        Ok(Self {
            address,
            length,
            capacity,
        })
    }

    /// The records of the last pass, up to its end marker (or the whole array).
    pub fn records(&self) -> impl Iterator<Item = CgroupPassRecord> + '_ {
        (0..self.capacity)
            .map(|i| {
                // SAFETY: `i < capacity` records lie inside the mapping; volatile, as the
                // kernel writes the memory (never during this read: one pass at a time,
                // read after it ended).
                unsafe { std::ptr::read_volatile(self.address.as_ptr().add(i)) }
            })
            .take_while(|record| record.cgroup_id != 0)
    }
}

impl Drop for MappedRecords {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`, unmapped once.
        unsafe { libc::munmap(self.address.as_ptr().cast(), self.length) };
    }
}

/// One scrape's cgroup pass: the memory, pids and io controllers' state, each by
/// cgroup id in that controller's hierarchy (on a hybrid host three hierarchies,
/// whose ids may coincide: hence a table each).
#[derive(Debug, Default)]
pub struct CgroupPass {
    pub memory: HashMap<u64, MemcgCounters>,
    /// `pids.current`.
    pub pids: HashMap<u64, u64>,
    /// Whether the io controller has a block group for the cgroup: `false` means
    /// its IO files have no device line.
    pub io_blkgs: HashMap<u64, bool>,
}

impl CgroupPass {
    /// Adds one walk's records (memory counters converted to bytes).
    pub fn add(&mut self, records: impl Iterator<Item = CgroupPassRecord>, page_size: u64) {
        for r in records.filter(|r| r.cgroup_id != u64::MAX) {
            if r.usage_pages != u64::MAX {
                let bytes = |pages: u64| pages.saturating_mul(page_size);
                self.memory.insert(
                    r.cgroup_id,
                    MemcgCounters {
                        usage: bytes(r.usage_pages),
                        max_usage: bytes(r.watermark_pages),
                        failcnt: r.failcnt,
                        kmem: (r.kmem_pages != u64::MAX).then(|| bytes(r.kmem_pages)),
                    },
                );
            }
            if r.pids_current != u64::MAX {
                self.pids.insert(r.cgroup_id, r.pids_current);
            }
            if r.io_blkgs != u64::MAX {
                self.io_blkgs.insert(r.cgroup_id, r.io_blkgs != 0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_become_bytes_per_controller_and_a_missing_kmem_is_none() {
        let record = |cgroup_id, usage_pages, kmem_pages, pids_current| CgroupPassRecord {
            cgroup_id,
            usage_pages,
            watermark_pages: usage_pages.wrapping_add(1),
            failcnt: 2,
            kmem_pages,
            pids_current,
            io_blkgs: u64::MAX,
        };
        let mut pass = CgroupPass::default();
        pass.add(
            [
                record(7, 3, 1, u64::MAX),
                record(u64::MAX, 0, 0, 5),
                record(8, 10, u64::MAX, 4),
                record(9, u64::MAX, 0, 6),
            ]
            .into_iter(),
            4096,
        );
        let out = &pass.memory;
        assert_eq!(out.len(), 2, "no memory controller on 9, no id for MAX");
        assert_eq!(
            out[&7],
            MemcgCounters {
                usage: 3 * 4096,
                max_usage: 4 * 4096,
                failcnt: 2,
                kmem: Some(4096),
            }
        );
        assert_eq!(out[&8].kmem, None);
        assert_eq!(pass.pids, HashMap::from([(8, 4), (9, 6)]));
        assert!(
            pass.io_blkgs.is_empty(),
            "no io controller in these records"
        );
    }

    #[test]
    fn block_groups_are_known_per_io_cgroup() {
        let io = |cgroup_id, io_blkgs| CgroupPassRecord {
            cgroup_id,
            usage_pages: u64::MAX,
            pids_current: u64::MAX,
            io_blkgs,
            ..CgroupPassRecord::default()
        };
        let mut pass = CgroupPass::default();
        pass.add([io(3, 1), io(4, 0), io(5, u64::MAX)].into_iter(), 4096);
        assert_eq!(pass.io_blkgs, HashMap::from([(3, true), (4, false)]));
        assert!(pass.memory.is_empty() && pass.pids.is_empty());
    }
}
