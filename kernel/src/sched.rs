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
//! task became runnable: note the run queue's clock, keyed by task) and
//! `sched_switch` (the task switched in waited since then; a preempted task that
//! stays runnable starts waiting again). This is the kernel's own `sched_info` bookkeeping
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
    maps::{Array, LruHashMap, PerCpuArray},
    programs::BtfTracePointContext,
};
use kadvisor_common::SchedOffsets;

use crate::{
    maps::{CGROUP_CPU, excluded, per_cpu_entry},
    task::task_cgroup_id,
};

/// Filled in by the loader from `/sys/kernel/btf/vmlinux` before the program loads.
#[unsafe(no_mangle)]
static SCHED_OFFSETS: SchedOffsets = SchedOffsets {
    task_pid: 0,
    task_cfs_rq: 0,
    cfs_rq_rq: 0,
    rq_clock: 0,
};

#[inline(always)]
fn offsets() -> SchedOffsets {
    // SAFETY: a plain read of a global; volatile so the compiler does not fold in the
    // zero initialiser that the loader replaces before load.
    unsafe { core::ptr::read_volatile(&raw const SCHED_OFFSETS) }
}

/// Loads the member at `base + offset`.
#[inline(always)]
fn member<T: Copy>(base: *const u8, offset: u32) -> T {
    // SAFETY: `base` is a BTF-typed kernel pointer (a tp_btf argument or loaded
    // through one) and `offset` a member offset from this kernel's BTF through a
    // frozen read-only global, so the verifier checks the access against BTF and
    // turns it into a load that yields 0 instead of faulting (see task.rs).
    unsafe { core::ptr::read_volatile(base.wrapping_add(offset as usize).cast::<T>()) }
}

/// The clock of the run queue `task` is on: `task->se.cfs_rq->rq->clock`, which is
/// `rq_clock()`, the clock the kernel's own `sched_info` (and so
/// `/proc/<pid>/schedstat`) times waits with. The scheduler updates it right before
/// each of these tracepoints (`update_rq_clock()` in `__schedule()`,
/// `ttwu_do_activate()` and `wake_up_new_task()`), and `set_task_cpu()` points
/// `se.cfs_rq` at the task's new CPU for every scheduling class. Three loads instead
/// of `bpf_ktime_get_ns()`, which costs ~30 ns here (a clocksource read through an
/// indirect call). Falls back to `bpf_ktime_get_ns()` when the kernel has no
/// `sched_entity.cfs_rq` (no `CONFIG_FAIR_GROUP_SCHED`); the loader decides, so one
/// load never mixes the two clocks.
#[inline(always)]
fn rq_clock(task: *const u8) -> u64 {
    let offsets = offsets();
    if offsets.task_cfs_rq == 0 {
        // SAFETY: bpf_ktime_get_ns has no preconditions.
        return unsafe { bpf_ktime_get_ns() };
    }
    let cfs_rq: *const u8 = member(task, offsets.task_cfs_rq);
    let rq: *const u8 = member(cfs_rq, offsets.cfs_rq_rq);
    member(rq, offsets.rq_clock)
}

/// When a runnable-but-not-running task started waiting, in a direct-mapped table
/// indexed by the task's pid: an array lookup is a bounds check and an add (inlined
/// by the verifier), a hash lookup hashes the key and walks a bucket. `task` (the
/// `task_struct` address) tags the slot; `since` is 0 when the slot is free.
///
/// A slot holds one waiting task. When it already holds another task that is still
/// waiting (two waiting tasks whose pids collide modulo the table size), the newcomer
/// goes to `ENQUEUED_AT` instead. So a task whose slot carries another tag has its
/// latest mark in `ENQUEUED_AT`: a slot is only taken over when free or already
/// tagged with the same task, so a pending mark is never overwritten.
#[map(name = "WAITING")]
static WAITING: Array<WaitSlot> = Array::with_max_entries(WAITING_SLOTS, 0);

/// Entries of `WAITING` (a power of two; 256 KiB). Only tasks that wait at the same
/// time compete for slots.
const WAITING_SLOTS: u32 = 16_384;

#[repr(C)]
#[derive(Clone, Copy)]
struct WaitSlot {
    task: u64,
    since: u64,
}

/// The overflow of `WAITING`: when each waiting task whose slot was taken started
/// waiting (0: not waiting), keyed by its `task_struct` address (unique while the
/// task lives).
///
/// Entries are written in place and never deleted on the hot path: a map update or
/// delete takes a bucket lock and costs several times a lookup. A task's entry is
/// inserted at its first overflow and reused after; exited tasks' addresses are
/// recycled by the task slab, and LRU eviction bounds the rest (an evicted task is
/// simply re-inserted at its next overflow).
///
/// Only colliding waiting tasks land here, so it is small: an LRU hash is
/// preallocated, and at 65536 entries (before `WAITING`) it was 5 MiB of kernel
/// memory, most of kadvisor's maps on a small node.
#[map(name = "ENQUEUED_AT")]
static ENQUEUED_AT: LruHashMap<u64, u64> = LruHashMap::with_max_entries(8_192, 0);

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
    if excluded(cgroup_id) {
        return;
    }
    let (runqueue_ns, run_periods) = take_arrival(cgroup_id);
    if let Some(cpu) = per_cpu_entry(&CGROUP_CPU, cgroup_id) {
        // SAFETY: this CPU's value slot; tracepoints run with preemption disabled.
        unsafe {
            (*cpu).runtime_ns += runtime_ns;
            (*cpu).runqueue_ns += runqueue_ns;
            (*cpu).run_periods += run_periods;
        }
    }
}

/// The last switch-in on this CPU whose run-queue delay and run period are not yet
/// in `CGROUP_CPU` (`cgroup_id` 0: none).
///
/// `sched_switch` does not look its `next` task's cgroup up in the hash: the task
/// will be charged CPU time by `sched_stat_runtime` soon anyway, so the switch-in is
/// parked here and added in that same hash lookup. `update_curr()` runs at every
/// tick and when the task leaves the CPU, so the parked values reach the map within
/// one tick of running, the same delay the CPU time itself has. If they were not
/// taken when the next switch-in comes (no runtime event for that cgroup on this CPU
/// in between: a zero-length run, or an RT task before 6.8), `sched_switch` charges
/// them itself first, and it also charges them when the CPU goes idle. Both programs run on this CPU with preemption disabled and
/// never nest, so the slot needs no locking.
#[map(name = "ARRIVAL")]
static ARRIVAL: PerCpuArray<Arrival> = PerCpuArray::with_max_entries(1, 0);

#[repr(C)]
#[derive(Clone, Copy)]
struct Arrival {
    cgroup_id: u64,
    waited_ns: u64,
}

/// Takes this CPU's parked switch-in when it belongs to `cgroup_id`: (run-queue ns,
/// run periods), or (0, 0).
#[inline(always)]
fn take_arrival(cgroup_id: u64) -> (u64, u64) {
    match ARRIVAL.get_ptr_mut(0) {
        // SAFETY: this CPU's slot of a per-CPU array; see `ARRIVAL`.
        Some(arrival) if unsafe { (*arrival).cgroup_id } == cgroup_id => unsafe {
            (*arrival).cgroup_id = 0;
            ((*arrival).waited_ns, 1)
        },
        _ => (0, 0),
    }
}

/// Parks the switch-in of a task of `cgroup_id` that waited `waited_ns` (see
/// `ARRIVAL`), charging a still-parked earlier one first.
#[inline(always)]
fn park_arrival(cgroup_id: u64, waited_ns: u64) {
    let Some(arrival) = ARRIVAL.get_ptr_mut(0) else {
        charge_arrival(cgroup_id, waited_ns);
        return;
    };
    // SAFETY: this CPU's slot of a per-CPU array; see `ARRIVAL`.
    unsafe {
        if (*arrival).cgroup_id != 0 {
            charge_arrival((*arrival).cgroup_id, (*arrival).waited_ns);
        }
        (*arrival).cgroup_id = cgroup_id;
        (*arrival).waited_ns = waited_ns;
    }
}

/// Charges this CPU's parked switch-in, if any (see `ARRIVAL`).
#[inline(always)]
fn flush_arrival() {
    if let Some(arrival) = ARRIVAL.get_ptr_mut(0) {
        // SAFETY: this CPU's slot of a per-CPU array; see `ARRIVAL`.
        unsafe {
            if (*arrival).cgroup_id != 0 {
                charge_arrival((*arrival).cgroup_id, (*arrival).waited_ns);
                (*arrival).cgroup_id = 0;
            }
        }
    }
}

#[inline(always)]
fn charge_arrival(cgroup_id: u64, waited_ns: u64) {
    // A switch-in parked before its cgroup was excluded must not recreate the entry
    // userspace deleted at exclusion.
    if excluded(cgroup_id) {
        return;
    }
    if let Some(cpu) = per_cpu_entry(&CGROUP_CPU, cgroup_id) {
        // SAFETY: this CPU's value slot; tracepoints run with preemption disabled.
        unsafe {
            (*cpu).runqueue_ns += waited_ns;
            (*cpu).run_periods += 1;
        }
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
    let now = rq_clock(task);
    mark_waiting(task, task_pid(task), now);
}

/// Records that `task` (pid `pid`) waits from `now`.
#[inline(always)]
fn mark_waiting(task: *const u8, pid: u32, now: u64) {
    let key = task as u64;
    if let Some(slot) = WAITING.get_ptr_mut(pid & (WAITING_SLOTS - 1)) {
        // SAFETY: an array slot pointer from a successful lookup. Two CPUs marking
        // colliding tasks in the same instant could interleave these stores; the cost
        // is at most one lost wait, the same as an LRU eviction.
        unsafe {
            if (*slot).task == key || (*slot).since == 0 {
                (*slot).task = key;
                (*slot).since = now;
                return;
            }
        }
    }
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

/// How long `task` (pid `pid`) waited until `now` (0 when it was not marked), and
/// clears its mark.
#[inline(always)]
fn take_waited(task: *const u8, pid: u32, now: u64) -> u64 {
    let key = task as u64;
    let since = match WAITING.get_ptr_mut(pid & (WAITING_SLOTS - 1)) {
        // SAFETY: an array slot pointer from a successful lookup. Only this task's
        // own wakeup/switch events write a slot tagged with it, and the scheduler
        // serialises those.
        Some(slot) if unsafe { (*slot).task } == key => unsafe {
            let since = (*slot).since;
            (*slot).since = 0;
            since
        },
        _ => match ENQUEUED_AT.get_ptr_mut(key) {
            // SAFETY: a value pointer from a successful lookup; entries are not
            // deleted, and only this task's own events write it.
            Some(since) => unsafe {
                let value = *since;
                *since = 0;
                value
            },
            None => 0,
        },
    };
    if since == 0 {
        0
    } else {
        now.saturating_sub(since)
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
    // prev and next are both on this CPU's run queue.
    let now = rq_clock(next);
    // TASK_RUNNING is 0: prev stays on the run queue (preempted or yielding) and
    // waits from now on, as sched_info_depart() counts it. The idle task (pid 0) is
    // skipped.
    if preempt || prev_state == 0 {
        let prev_pid = task_pid(prev);
        if prev_pid != 0 {
            mark_waiting(prev, prev_pid, now);
        }
    }
    let next_pid = task_pid(next);
    if next_pid == 0 {
        // The CPU goes idle: nothing may stay parked while it sleeps. Normally
        // prev's switch-out update_curr() has taken it already.
        flush_arrival();
        return;
    }
    let waited = take_waited(next, next_pid, now);
    let Some(cgroup_id) = task_cgroup_id(next) else {
        return;
    };
    if excluded(cgroup_id) {
        return;
    }
    park_arrival(cgroup_id, waited);
}

/// `task->pid` (0 for a CPU's idle task).
#[inline(always)]
fn task_pid(task: *const u8) -> u32 {
    let pid: i32 = member(task, offsets().task_pid);
    pid as u32
}
