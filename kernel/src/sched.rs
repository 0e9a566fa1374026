//! Scheduler totals of exited tasks, per cgroup: the one scheduler hook.
//!
//! Live cgroups' CPU time is the kernel's own `cpu.stat`/`cpuacct.usage`, read at
//! scrape time, and live tasks' run-queue delay and run periods are summed by the
//! scrape-time task iterator (`iter.rs`). What the kernel does not keep is what a task
//! had accumulated once it is gone, nor a removed cgroup's final time. So when a task
//! exits, `sched_process_exit` adds its `se.sum_exec_runtime`,
//! `sched_info.run_delay` and `sched_info.pcount` to its cgroup's entry in
//! `CGROUP_CPU`. That keeps the schedstat counters monotonic when processes exit, and
//! gives a removed cgroup (all of whose tasks exited first) its final CPU time.
//!
//! Nothing runs per context switch, tick or wakeup: the cost scales with process
//! exits, not with how busy the node is.
//!
//! # Exactness
//! The task is still in its cgroup here (`cgroup_exit()` comes later in `do_exit()`).
//! `sum_exec_runtime` is as of the task's last `update_curr()` (at most one tick ago
//! for a task that was running), and the task still runs the rest of `do_exit()`
//! (closing files, unmapping) after the tracepoint, charged to the cgroup by the
//! kernel but not seen here. A task that moved between cgroups is credited wholly to
//! the last one. The daemon never lets a row's counter fall below what it last read
//! from the kernel's files (see `collect/cpu.rs`).
//!
//! # Context and maps
//! `sched_process_exit` runs in the exiting task's own process context, preemptible
//! code with no scheduler (run-queue) lock held, so inserting into the
//! non-preallocated per-CPU hash `CGROUP_CPU` is safe on every supported kernel
//! (the pre-6.1 hazard is allocating under `rq->lock`, which no program here does).
//!
//! # Minimum kernel version
//! tp_btf needs 5.5. `TP_PROTO(struct task_struct *p)`; 6.16 added a second `bool
//! group_dead` argument, which is not read.
use aya_ebpf::{macros::btf_tracepoint, programs::BtfTracePointContext};

use crate::{
    maps::{CGROUP_CPU, excluded, per_cpu_entry},
    task::{member, task_cgroup_id, task_offsets},
};

#[btf_tracepoint(function = "sched_process_exit")]
pub fn sched_process_exit(ctx: BtfTracePointContext) -> i32 {
    let task: *const u8 = ctx.arg(0);
    credit_exited(task);
    0
}

#[inline(always)]
fn credit_exited(task: *const u8) {
    let Some(cgroup_id) = task_cgroup_id(task) else {
        return;
    };
    if excluded(cgroup_id) {
        return;
    }
    let offsets = task_offsets();
    let runtime_ns: u64 = member(task, offsets.task_runtime);
    let runqueue_ns: u64 = member(task, offsets.task_run_delay);
    let run_periods: u64 = member(task, offsets.task_pcount);
    if let Some(cpu) = per_cpu_entry(&CGROUP_CPU, cgroup_id) {
        // SAFETY: this CPU's value slot; tracepoints run with preemption disabled.
        unsafe {
            (*cpu).runtime_ns += runtime_ns;
            (*cpu).runqueue_ns += runqueue_ns;
            (*cpu).run_periods += run_periods;
        }
    }
}
