//! Reading a task's members, and its cgroup v2 id when the task is not `current`.
//!
//! `bpf_get_current_cgroup_id()` only knows `current`. Scheduler tracepoints often
//! name another task (an `update_curr()` on a remote runqueue, the `next` task of a
//! switch), so the id is read through `task->cgroups->dfl_cgrp->kn->id`.
//!
//! The member offsets come from the running kernel's BTF, resolved by the loader and
//! written into the read-only globals below. aya creates `.rodata` with
//! `BPF_F_RDONLY_PROG` and freezes it, so the verifier reads these globals as
//! constants: `task + offset` is then an ordinary BTF-checked pointer access that the
//! verifier rewrites into a fault-handling load (`BPF_PROBE_MEM`). That is four
//! plain loads instead of four `bpf_probe_read_kernel` helper calls.
//!
//! # Minimum kernel version
//! BTF pointer walking from tp_btf arguments: 5.5. Constant reads from frozen
//! read-only maps: 5.2.
use kadvisor_common::{KernelError, TaskCgroupOffsets, TaskOffsets};

use crate::maps::count_error;

/// Filled in by the loader from `/sys/kernel/btf/vmlinux` before the program loads.
#[unsafe(no_mangle)]
static TASK_CGROUP_OFFSETS: TaskCgroupOffsets = TaskCgroupOffsets {
    task_cgroups: 0,
    css_set_dfl_cgrp: 0,
    cgroup_kn: 0,
    kernfs_node_id: 0,
};

/// Filled in by the loader from `/sys/kernel/btf/vmlinux` before the program loads:
/// the task members the exit hook and the iterators read.
#[unsafe(no_mangle)]
static TASK_OFFSETS: TaskOffsets = TaskOffsets {
    task_pid: 0,
    task_tgid: 0,
    task_exit_state: 0,
    task_runtime: 0,
    task_run_delay: 0,
    task_pcount: 0,
    task_signal: 0,
    signal_nofile_cur: 0,
    task_files: 0,
    task_group_leader: 0,
    files_fdt: 0,
    fdtable_max_fds: 0,
    fdtable_fd: 0,
    fdtable_open_fds: 0,
    file_inode: 0,
    inode_mode: 0,
};

/// The loader's `TASK_OFFSETS`.
#[inline(always)]
pub(crate) fn task_offsets() -> TaskOffsets {
    // SAFETY: a plain read of a global; volatile so the compiler does not fold in the
    // zero initialiser that the loader replaces before load.
    unsafe { core::ptr::read_volatile(&raw const TASK_OFFSETS) }
}

#[inline(always)]
fn offsets() -> TaskCgroupOffsets {
    // SAFETY: a plain read of a global; volatile so the compiler does not fold in the
    // zero initialiser that the loader replaces before load.
    unsafe { core::ptr::read_volatile(&raw const TASK_CGROUP_OFFSETS) }
}

/// Loads the member at `base + offset`.
#[inline(always)]
pub(crate) fn member<T: Copy>(base: *const u8, offset: u32) -> T {
    // SAFETY: `base` is a BTF-typed kernel pointer (a tp_btf argument or loaded
    // through one) and `offset` a member offset from this kernel's BTF. The verifier
    // checks the access against BTF and turns it into a load that yields 0 instead
    // of faulting on a bad address.
    unsafe { core::ptr::read_volatile(base.wrapping_add(offset as usize).cast::<T>()) }
}

/// The cgroup v2 id of `task`, or `None` (counted) when the walk found no cgroup.
#[inline(always)]
pub(crate) fn task_cgroup_id(task: *const u8) -> Option<u64> {
    let offsets = offsets();
    let css_set: *const u8 = member(task, offsets.task_cgroups);
    let cgroup: *const u8 = member(css_set, offsets.css_set_dfl_cgrp);
    let kernfs_node: *const u8 = member(cgroup, offsets.cgroup_kn);
    let id: u64 = member(kernfs_node, offsets.kernfs_node_id);
    if id == 0 {
        count_error(KernelError::TaskRead);
        return None;
    }
    Some(id)
}
