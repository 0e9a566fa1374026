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
//! Run-queue delay and run periods come from `sched_wakeup`/`sched_wakeup_new` (a
//! task became runnable: note the time, keyed by task) and `sched_switch` (the task
//! switched in waited since then; a preempted task that stays runnable starts
//! waiting again). This is the kernel's own `sched_info` bookkeeping
//! (`sched_info_enqueue`/`sched_info_arrive`/`sched_info_depart` in
//! kernel/sched/stats.h), whose per-task sums `/proc/<pid>/schedstat` shows, kept
//! per cgroup instead of per task so no /proc walk is needed.
//!
//! # Minimum kernel version
//! tp_btf needs 5.5. Before 6.8, `sched_stat_runtime` fires for CFS tasks only
//! (RT and deadline tasks are not charged); from 6.8 every class goes through
//! `update_curr_task()` (kernel commit "sched: Unify runtime accounting across
//! classes"). `sched_switch`'s `prev_state` argument needs 5.18.
use aya_ebpf::{
    helpers::bpf_ktime_get_ns,
    macros::{btf_tracepoint, map},
    maps::LruHashMap,
    programs::BtfTracePointContext,
};
use kadvisor_common::SchedOffsets;

use crate::{
    maps::{CGROUP_CPU, per_cpu_entry},
    task::task_cgroup_id,
};

/// Filled in by the loader from `/sys/kernel/btf/vmlinux` before the program loads.
#[unsafe(no_mangle)]
static SCHED_OFFSETS: SchedOffsets = SchedOffsets { task_pid: 0 };

/// When each runnable-but-not-running task started waiting (0: not waiting), keyed
/// by its `task_struct` address (unique while the task lives; no field read needed).
///
/// Entries are written in place and never deleted on the hot path: a map update or
/// delete takes a bucket lock and costs several times a lookup, and `sched_switch`
/// runs on every context switch. A task's entry is inserted at its first wakeup
/// and reused after; exited tasks' addresses are recycled by the task slab, and LRU
/// eviction bounds the rest (an evicted task is simply re-inserted at its next
/// wakeup).
#[map(name = "ENQUEUED_AT")]
static ENQUEUED_AT: LruHashMap<u64, u64> = LruHashMap::with_max_entries(65_536, 0);

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

/// `TP_PROTO(struct task_struct *p)`: `p` is now on a run queue.
#[btf_tracepoint(function = "sched_wakeup")]
pub fn sched_wakeup(ctx: BtfTracePointContext) -> i32 {
    let task: *const u8 = ctx.arg(0);
    enqueued(task);
    0
}

/// `TP_PROTO(struct task_struct *p)`: a new task's first wakeup.
#[btf_tracepoint(function = "sched_wakeup_new")]
pub fn sched_wakeup_new(ctx: BtfTracePointContext) -> i32 {
    let task: *const u8 = ctx.arg(0);
    enqueued(task);
    0
}

#[inline(always)]
fn enqueued(task: *const u8) {
    // SAFETY: bpf_ktime_get_ns has no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    mark_waiting(task as u64, now);
}

/// Records that the task at `key` waits from `now`: in place when it has an entry.
#[inline(always)]
fn mark_waiting(key: u64, now: u64) {
    match ENQUEUED_AT.get_ptr_mut(key) {
        // SAFETY: a value pointer from a successful lookup; entries are not deleted.
        Some(since) => unsafe { *since = now },
        // A full LRU map evicts the least recently used entry; the insert itself
        // cannot fail.
        None => {
            let _ignored = ENQUEUED_AT.insert(key, now, 0);
        }
    }
}

/// `TP_PROTO(bool preempt, struct task_struct *prev, struct task_struct *next,
/// unsigned int prev_state)` (prev_state since 5.18).
#[btf_tracepoint(function = "sched_switch")]
pub fn sched_switch(ctx: BtfTracePointContext) -> i32 {
    let preempt: u64 = ctx.arg(0);
    let prev: *const u8 = ctx.arg(1);
    let next: *const u8 = ctx.arg(2);
    let prev_state: u64 = ctx.arg(3);
    switched(preempt as u8 != 0, prev, next, prev_state as u32);
    0
}

#[inline(always)]
fn switched(preempt: bool, prev: *const u8, next: *const u8, prev_state: u32) {
    // SAFETY: bpf_ktime_get_ns has no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    // TASK_RUNNING is 0: prev stays on the run queue (preempted or yielding) and
    // waits from now on, as sched_info_depart() counts it. The idle task is skipped.
    if (preempt || prev_state == 0) && !is_idle(prev) {
        mark_waiting(prev as u64, now);
    }
    if is_idle(next) {
        return;
    }
    let waited = match ENQUEUED_AT.get_ptr_mut(next as u64) {
        // SAFETY: a value pointer from a successful lookup; entries are not deleted,
        // and only this task's own wakeup/switch events write it, which the
        // scheduler serialises.
        Some(since) => unsafe {
            let waited = if *since == 0 {
                0
            } else {
                now.saturating_sub(*since)
            };
            *since = 0;
            waited
        },
        None => 0,
    };
    let Some(cgroup_id) = task_cgroup_id(next) else {
        return;
    };
    if let Some(cpu) = per_cpu_entry(&CGROUP_CPU, cgroup_id) {
        // SAFETY: this CPU's value slot; tracepoints run with preemption disabled.
        unsafe {
            (*cpu).runqueue_ns += waited;
            (*cpu).run_periods += 1;
        }
    }
}

/// Whether `task` is a CPU's idle task (pid 0).
#[inline(always)]
fn is_idle(task: *const u8) -> bool {
    // SAFETY: a plain read of a global; volatile so the compiler does not fold in the
    // zero initialiser that the loader replaces before load.
    let offsets = unsafe { core::ptr::read_volatile(&raw const SCHED_OFFSETS) };
    // SAFETY: `task` is a BTF-typed tp_btf argument and the offset comes from this
    // kernel's BTF through a frozen read-only global, so the verifier checks the load
    // against BTF and turns it into a fault-handling load (see task.rs).
    let pid = unsafe {
        core::ptr::read_volatile(task.wrapping_add(offsets.task_pid as usize).cast::<i32>())
    };
    pid == 0
}
