//! Scheduler hooks: CPU time per cgroup.
//!
//! CPU time comes from `sched_stat_runtime`, the tracepoint the scheduler fires in
//! `update_curr()` right beside `cgroup_account_cputime()`, with the same task and the
//! same delta. So the per-cgroup sum equals the kernel's own `cpu.stat usage_usec`
//! by construction, and a task that never switches is still credited: `update_curr()`
//! also runs on every scheduler tick, so a CPU-bound task is at most one tick behind,
//! exactly as behind as the kernel's own `cpu.stat`. The idle task never runs
//! `update_curr()` and so is never charged.
//!
//! # Minimum kernel version
//! tp_btf needs 5.5. Before 6.8, `sched_stat_runtime` fires for CFS tasks only
//! (RT and deadline tasks are not charged); from 6.8 every class goes through
//! `update_curr_task()` (kernel commit "sched: Unify runtime accounting across
//! classes").
use aya_ebpf::{macros::btf_tracepoint, programs::BtfTracePointContext};

use crate::{
    maps::{CGROUP_CPU, per_cpu_entry},
    task::task_cgroup_id,
};

/// `TP_PROTO(struct task_struct *tsk, u64 runtime)` (6.8+; older kernels add a third
/// `vruntime` argument, which is not read).
#[btf_tracepoint(function = "sched_stat_runtime")]
pub fn sched_stat_runtime(ctx: BtfTracePointContext) -> i32 {
    let task: *const u8 = ctx.arg(0);
    let runtime_ns: u64 = ctx.arg(1);
    charge_runtime(task, runtime_ns);
    0
}

#[inline(always)]
fn charge_runtime(task: *const u8, runtime_ns: u64) {
    let Some(cgroup_id) = task_cgroup_id(task) else {
        return;
    };
    if let Some(cpu) = per_cpu_entry(&CGROUP_CPU, cgroup_id) {
        // SAFETY: this CPU's value slot; tracepoints run with preemption disabled.
        unsafe { (*cpu).runtime_ns += runtime_ns };
    }
}
