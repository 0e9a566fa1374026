//! The scrape-time cgroup pass: one `iter/cgroup` walk per controller hierarchy that
//! reads each cgroup's memory and pids counters (`CgroupPassRecord`) into the
//! `CGROUP_PASS` array, which the daemon has mapped: the numbers behind the memory
//! controller's single-number files and `pids.current`, for every cgroup in one
//! `read()`, instead of one file read each per row; and whether the io controller has
//! any block group for the cgroup, so that the IO files of a cgroup that never did IO
//! (no device line to print) are not read.
//!
//! # Context and maps
//! Runs in the reading process's context from `read()`, under `cgroup_mutex`, which
//! the kernel holds for the whole walk (it cannot be resumed in a second `read()`).
//!
//! # Minimum kernel version
//! `iter/cgroup`: 6.1; over a cgroup v1 hierarchy (a hybrid host's memory and pids
//! controllers): 6.8; mmapable arrays: 5.5. aya-ebpf 0.2.1 has no `#[iter]` macro,
//! so the section is declared by hand.
use aya_ebpf::{
    bindings::BPF_F_MMAPABLE, helpers::bpf_probe_read_kernel, macros::map, maps::Array,
};
use kadvisor_common::{CgroupPassOffsets, CgroupPassRecord, KernelError, MAX_CGROUPS};

use crate::{maps::count_error, task::member};

/// Filled in by the loader from `/sys/kernel/btf/vmlinux` before the program loads.
#[unsafe(no_mangle)]
static CGROUP_PASS_OFFSETS: CgroupPassOffsets = CgroupPassOffsets {
    meta_session_id: 0,
    cgroup_kn: 0,
    kernfs_node_id: 0,
    cgroup_memory_css: 0,
    cgroup_pids_css: 0,
    memcg_usage: 0,
    memcg_watermark: 0,
    memcg_failcnt: 0,
    memcg_kmem_usage: 0,
    pids_counter: 0,
    cgroup_io_css: 0,
    blkcg_blkg_list: 0,
};

/// The cgroup pass's output: record `i` is the `i`-th cgroup of the walk, and
/// the record after the last has `cgroup_id` 0. Not the `seq_file`: a cgroup iterator
/// must finish in one `read()` (it drops `cgroup_mutex` between reads and refuses to
/// resume, EOPNOTSUPP), and the `seq_file` buffer holds 32 KiB, ~680 records. The
/// daemon maps the array (`BPF_F_MMAPABLE`) and reads it without a syscall. The
/// loader sizes it to `--max_cgroups`; cgroups beyond are counted in `map_full` and
/// their files read instead.
#[map(name = "CGROUP_PASS")]
static CGROUP_PASS: Array<CgroupPassRecord> = Array::with_max_entries(MAX_CGROUPS, BPF_F_MMAPABLE);

/// Where the walk of iterator session `session` writes its next record. Not the
/// iterator's own `seq_num`: that also counts the dying cgroups the kernel skips
/// without calling the program, which would leave holes.
#[repr(C)]
#[derive(Clone, Copy)]
struct Cursor {
    session: u64,
    next: u64,
}

#[map(name = "CGROUP_PASS_CURSOR")]
static CGROUP_PASS_CURSOR: Array<Cursor> = Array::with_max_entries(1, 0);

/// A 64-bit word of the controller state at `css + offset` (a `mem_cgroup` or
/// `pids_cgroup` member), or `None` if it cannot be read.
#[inline(always)]
fn css_word(css: *const u8, offset: u32) -> Option<u64> {
    // SAFETY: a helper read of kernel memory: a bad address returns an error, never
    // faults. `css` is typed `cgroup_subsys_state` by the verifier, so the members
    // of the controller's struct around it cannot be plain BTF-checked loads.
    unsafe { bpf_probe_read_kernel(css.wrapping_add(offset as usize).cast::<u64>()) }.ok()
}

/// Stores `record` as record `index` of `CGROUP_PASS`; `false` when the array is full.
#[inline(always)]
fn store(index: u64, record: CgroupPassRecord) -> bool {
    let slot = u32::try_from(index)
        .ok()
        .and_then(|index| CGROUP_PASS.get_ptr_mut(index));
    match slot {
        Some(slot) => {
            // SAFETY: a value slot of the array; only this pass writes it, and the
            // daemon runs one pass at a time and reads it after the pass.
            unsafe { *slot = record };
            true
        }
        None => false,
    }
}

/// `struct bpf_iter__cgroup { struct bpf_iter_meta *meta; struct cgroup *cgroup; }`:
/// called once per cgroup of the hierarchy the link was made for (pre-order, its root
/// first), then once with `cgroup == NULL`. Reads the memory and pids controllers'
/// counters of each cgroup that has them, and whether the io controller has any block
/// group for it (all three on v2; on a hybrid host each has its own v1 hierarchy,
/// walked by its own link). Runs under `cgroup_mutex`, which the
/// kernel takes for the walk.
#[unsafe(no_mangle)]
#[unsafe(link_section = "iter/cgroup")]
pub extern "C" fn cgroup_pass(ctx: *const u64) -> i32 {
    // SAFETY: members 0 and 1 of the iterator context (`meta`, never NULL; `cgroup`,
    // NULL at the end).
    let (meta, cgroup) = unsafe {
        (
            core::ptr::read_volatile(ctx) as *const u8,
            core::ptr::read_volatile(ctx.wrapping_add(1)) as *const u8,
        )
    };
    // SAFETY: a plain read of a global; volatile so the compiler does not fold in the
    // zero initialiser that the loader replaces before load.
    let offsets = unsafe { core::ptr::read_volatile(&raw const CGROUP_PASS_OFFSETS) };
    let Some(cursor) = CGROUP_PASS_CURSOR.get_ptr_mut(0) else {
        return 0;
    };
    let session: u64 = member(meta, offsets.meta_session_id);
    // SAFETY: the map's only slot; walks run one at a time (the daemon serialises its
    // scrapes, and each walk holds `cgroup_mutex`).
    let index = unsafe {
        if (*cursor).session != session {
            *cursor = Cursor { session, next: 0 };
        }
        (*cursor).next += 1;
        (*cursor).next - 1
    };
    if cgroup.is_null() {
        // The end marker; a full array needs none.
        store(index, CgroupPassRecord::default());
        return 0;
    }
    let kernfs_node: *const u8 = member(cgroup, offsets.cgroup_kn);
    let cgroup_id: u64 = member(kernfs_node, offsets.kernfs_node_id);
    // An offset of 0: the kernel has no such controller (the loader found no
    // enumerator); the verifier drops the branch, the offsets being constants.
    let css = |offset: u32| -> *const u8 {
        if offset == 0 {
            core::ptr::null()
        } else {
            member(cgroup, offset)
        }
    };
    let (memory, pids, io) = (
        css(offsets.cgroup_memory_css),
        css(offsets.cgroup_pids_css),
        css(offsets.cgroup_io_css),
    );
    // A cgroup whose id cannot be read is recorded under `u64::MAX`, which no row
    // matches.
    let mut record = CgroupPassRecord {
        cgroup_id: if cgroup_id == 0 { u64::MAX } else { cgroup_id },
        usage_pages: u64::MAX,
        pids_current: u64::MAX,
        io_blkgs: u64::MAX,
        kmem_pages: u64::MAX,
        ..CgroupPassRecord::default()
    };
    // A failed read leaves its field unknown (`u64::MAX`), and the daemon reads that
    // cgroup's files instead: a read error must not pass for "no block group" or a
    // zero counter.
    if !io.is_null()
        && offsets.blkcg_blkg_list != 0
        && let Some(first) = css_word(io, offsets.blkcg_blkg_list)
    {
        record.io_blkgs = u64::from(first != 0);
    }
    if !memory.is_null() {
        if let (Some(usage), Some(watermark), Some(failcnt)) = (
            css_word(memory, offsets.memcg_usage),
            css_word(memory, offsets.memcg_watermark),
            css_word(memory, offsets.memcg_failcnt),
        ) {
            record.usage_pages = usage;
            record.watermark_pages = watermark;
            record.failcnt = failcnt;
        }
        if offsets.memcg_kmem_usage != 0 {
            record.kmem_pages = css_word(memory, offsets.memcg_kmem_usage).unwrap_or(u64::MAX);
        }
    }
    if !pids.is_null() && offsets.pids_counter != 0 {
        record.pids_current = css_word(pids, offsets.pids_counter).unwrap_or(u64::MAX);
    }
    if !store(index, record) {
        count_error(KernelError::MapFull);
    }
    0
}
