//! OOM kills per cgroup, counted in the kernel so that a kill is never lost: the
//! count lives in `CGROUP_OOM` under the victim's cgroup v2 id, also after the
//! cgroup is removed, until the daemon has exported it.
//!
//! The hook is `mark_oom_victim(struct task_struct *tsk)` (mm/oom_kill.c), which the
//! OOM killer calls for each task it kills (`__oom_kill_process`, also for every
//! member of a `memory.oom.group`) and for an allocating task that is already
//! exiting. Its signature is the same on every supported kernel. The
//! `oom:mark_victim` tracepoint it fires is cheaper to attach to, but its arguments
//! changed: upstream kernels up to the 2024 change (6.1 as released among them) pass
//! only `int pid`; later ones and stable backports (Debian's 6.1.192 and 6.12.117 and
//! this VM's 6.18, checked in their BTF) pass `struct task_struct *task, uid_t uid`. A tp_btf program reading a
//! task pointer is therefore attached only where the BTF shows one.
//!
//! Where fentry is not allowed (this project's Firecracker dev VM refuses fentry
//! loads with EPERM) the same count comes from tp_btf `mark_victim` on kernels whose
//! tracepoint passes the task; `bpf/programs.rs` picks one of the two.
//!
//! # Minimum kernel version
//! fentry and tp_btf need 5.5; fentry needs `mark_oom_victim` in the kernel's BTF
//! (a static but non-inlined function, in kallsyms on 6.18).
use aya_ebpf::{
    macros::{btf_tracepoint, fentry},
    programs::{BtfTracePointContext, FEntryContext},
};

use crate::{
    maps::{CGROUP_OOM, excluded, per_cpu_entry},
    task::task_cgroup_id,
};

/// `void mark_oom_victim(struct task_struct *tsk)`
#[fentry(function = "mark_oom_victim")]
pub fn mark_oom_victim(ctx: FEntryContext) -> i32 {
    let task: *const u8 = ctx.arg(0);
    count_kill(task);
    0
}

#[inline(always)]
fn count_kill(task: *const u8) {
    let Some(cgroup_id) = task_cgroup_id(task) else {
        return;
    };
    if excluded(cgroup_id) {
        return;
    }
    if let Some(kills) = per_cpu_entry(&CGROUP_OOM, cgroup_id) {
        // SAFETY: this CPU's value slot; fentry programs run with migration disabled
        // and the OOM killer holds oom_lock, so no other program writes this slot.
        unsafe { *kills += 1 };
    }
}

/// `TP_PROTO(struct task_struct *task, uid_t uid)` on kernels where the tracepoint
/// passes the task (see the module doc). The loader attaches this
/// program only when the running kernel's BTF says argument 0 is a pointer, and only
/// when `mark_oom_victim` (fentry) did not attach, so a kill is counted once.
#[btf_tracepoint(function = "mark_victim")]
pub fn mark_victim(ctx: BtfTracePointContext) -> i32 {
    let task: *const u8 = ctx.arg(0);
    count_kill(task);
    0
}
