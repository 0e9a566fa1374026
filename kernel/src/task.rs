//! Reading a task's cgroup v2 id when the task is not `current`.
//!
//! `bpf_get_current_cgroup_id()` only knows `current`. Scheduler tracepoints often
//! name another task, so the id is read through `task->cgroups->dfl_cgrp->kn->id`
//! with offsets the loader resolved from the running kernel's BTF.
use aya_ebpf::helpers::{bpf_get_current_cgroup_id, bpf_get_current_task, bpf_probe_read_kernel};
use kadvisor_common::{KernelError, TaskCgroupOffsets};

use crate::maps::count_error;

/// Filled in by the loader from `/sys/kernel/btf/vmlinux` before the program loads.
#[unsafe(no_mangle)]
static TASK_CGROUP_OFFSETS: TaskCgroupOffsets = TaskCgroupOffsets {
    task_cgroups: 0,
    css_set_dfl_cgrp: 0,
    cgroup_kn: 0,
    kernfs_node_id: 0,
};

#[inline(always)]
fn offsets() -> TaskCgroupOffsets {
    // SAFETY: a plain read of a global; volatile so the compiler does not fold in the
    // zero initialiser that the loader replaces before load.
    unsafe { core::ptr::read_volatile(&raw const TASK_CGROUP_OFFSETS) }
}

/// Reads the pointer at `base + offset` from kernel memory.
#[inline(always)]
fn read_pointer(base: *const u8, offset: u32) -> Option<*const u8> {
    // SAFETY: bpf_probe_read_kernel copies with fault handling; a bad address returns
    // an error instead of faulting.
    unsafe { bpf_probe_read_kernel(base.wrapping_add(offset as usize).cast::<*const u8>()) }.ok()
}

/// The cgroup v2 id of `task`, or `None` (counted) when the walk faults.
#[inline(always)]
pub(crate) fn task_cgroup_id(task: *const u8) -> Option<u64> {
    // SAFETY: bpf_get_current_task has no preconditions.
    if task as u64 == unsafe { bpf_get_current_task() } {
        // SAFETY: bpf_get_current_cgroup_id has no preconditions.
        return Some(unsafe { bpf_get_current_cgroup_id() });
    }
    let offsets = offsets();
    let id = read_pointer(task, offsets.task_cgroups)
        .and_then(|css_set| read_pointer(css_set, offsets.css_set_dfl_cgrp))
        .and_then(|cgroup| read_pointer(cgroup, offsets.cgroup_kn))
        .and_then(|kn| {
            // SAFETY: as in read_pointer.
            unsafe {
                bpf_probe_read_kernel(
                    kn.wrapping_add(offsets.kernfs_node_id as usize)
                        .cast::<u64>(),
                )
            }
            .ok()
        });
    if id.is_none() {
        count_error(KernelError::TaskRead);
    }
    id
}
