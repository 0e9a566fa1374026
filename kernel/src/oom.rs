//! OOM kills per cgroup, counted in the kernel so that a kill is never lost: the
//! count lives in `CGROUP_OOM` under the victim's cgroup v2 id, also after the
//! cgroup is removed, until the daemon has exported it.
//!
//! # What is a kill
//! The kernel counts a kill (`oom_kill` in `memory.events`, `memory.oom_control` and
//! /proc/vmstat) in `__oom_kill_process` (mm/oom_kill.c), which then sends SIGKILL
//! to the victim and calls `mark_oom_victim(victim)` under the victim's task lock:
//!
//! ```c
//! memcg_memory_event_mm(mm, MEMCG_OOM_KILL);
//! do_send_sig_info(SIGKILL, SEND_SIG_PRIV, victim, PIDTYPE_TGID);
//! mark_oom_victim(victim);
//! ```
//! <https://elixir.bootlin.com/linux/v6.12/source/mm/oom_kill.c#L947>
//!
//! `mark_oom_victim` (and the `oom:mark_victim` tracepoint inside it) is also called
//! without a kill: when the allocating task or the chosen victim is already exiting
//! (`task_will_free_mem`, in `out_of_memory` and `oom_kill_process`) it is only given
//! access to memory reserves. A pipeline whose writer was killed, or a
//! multi-threaded allocator whose other threads are exiting, takes that path; counting
//! every `mark_victim` counted 2 kills where `memory.events` said 1 (6.12).
//!
//! So a `mark_victim` counts only when it follows, on the same CPU, a kernel-private
//! SIGKILL (`SEND_SIG_PRIV`) to the same task: `signal_generate` records that
//! SIGKILL's target in `OOM_KILL_SIGNAL`, and `mark_victim` consumes it. Between the
//! two the kernel holds the victim's task lock (a spinlock: no preemption, no
//! migration), so the pair is adjacent on one CPU. The shortcut path sends no
//! signal, so it finds no matching record. A stale record (a private SIGKILL to a
//! task that is then marked through the shortcut on the same CPU much later) is
//! ignored after `PAIR_WINDOW_NS`. That window is not the pair's own distance: on a
//! virtual machine the vCPU can be descheduled between the two (a hypervisor's steal
//! time; qemu's TCG switches vCPUs every 100 ms), and the guest's clock runs on.
//!
//! The `oom:mark_victim` tracepoint passes the task since a 2024 change (backported
//! to stable: Debian's 6.1.192 and 6.12, this host's 6.18), only `int pid` before; a
//! tp_btf program reading a task pointer is therefore attached only where the BTF
//! shows one. Where fentry is allowed and the tracepoint has no task, fentry on
//! `mark_oom_victim` does the same; `bpf/programs.rs` picks one of the two.
//!
//! # Minimum kernel version
//! fentry and tp_btf need 5.5; `signal_generate` has had the same arguments since
//! 3.x.
use aya_ebpf::{
    helpers::bpf_ktime_get_ns,
    macros::{btf_tracepoint, fentry, map},
    maps::PerCpuArray,
    programs::{BtfTracePointContext, FEntryContext},
};

use crate::{
    maps::{CGROUP_OOM, excluded, per_cpu_entry},
    task::task_cgroup_id,
};

const SIGKILL: u64 = 9;
/// `SEND_SIG_PRIV`: `((struct kernel_siginfo *) 1)` (include/linux/sched/signal.h).
const SEND_SIG_PRIV: u64 = 1;
/// How long a recorded SIGKILL waits for its `mark_victim`. The two are a few
/// instructions apart under a spinlock, but a descheduled vCPU stretches that in the
/// guest's clock: 10 ms lost a kill on 6.12 under TCG (qemu switches vCPUs every
/// 100 ms) in the kernel matrix. One second covers a vCPU's preemption.
const PAIR_WINDOW_NS: u64 = 1_000_000_000;

/// The last kernel-private SIGKILL generated on this CPU.
#[derive(Clone, Copy)]
#[repr(C)]
struct PendingKill {
    /// The `struct task_struct *` it was sent to; 0 when consumed.
    task: u64,
    /// `bpf_ktime_get_ns` when it was sent.
    at_ns: u64,
}

#[map(name = "OOM_KILL_SIGNAL")]
static OOM_KILL_SIGNAL: PerCpuArray<PendingKill> = PerCpuArray::with_max_entries(1, 0);

/// `TP_PROTO(int sig, struct kernel_siginfo *info, struct task_struct *task, int
/// group, int result)`: records a kernel-private SIGKILL's target (see the module
/// doc). Fires for every generated signal; all but SIGKILL return at the first test.
#[btf_tracepoint(function = "signal_generate")]
pub fn oom_kill_signal(ctx: BtfTracePointContext) -> i32 {
    let sig: u64 = ctx.arg(0);
    if sig & 0xffff_ffff != SIGKILL {
        return 0;
    }
    let info: u64 = ctx.arg(1);
    if info != SEND_SIG_PRIV {
        return 0;
    }
    let task: u64 = ctx.arg(2);
    if let Some(pending) = OOM_KILL_SIGNAL.get_ptr_mut(0) {
        // SAFETY: this CPU's slot; tracepoints run with preemption disabled.
        unsafe {
            *pending = PendingKill {
                task,
                // SAFETY: no preconditions.
                at_ns: bpf_ktime_get_ns(),
            };
        }
    }
    0
}

/// `void mark_oom_victim(struct task_struct *tsk)`
#[fentry(function = "mark_oom_victim")]
pub fn mark_oom_victim(ctx: FEntryContext) -> i32 {
    let task: *const u8 = ctx.arg(0);
    count_kill(task);
    0
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

/// Counts a kill of `task` when the SIGKILL of `__oom_kill_process` just preceded
/// this mark on this CPU.
#[inline(always)]
fn count_kill(task: *const u8) {
    let Some(pending) = OOM_KILL_SIGNAL.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's slot; programs run with preemption disabled.
    let recorded = unsafe { *pending };
    // SAFETY: this CPU's slot, as above. Consumed: one SIGKILL pairs with one mark.
    unsafe { (*pending).task = 0 };
    // SAFETY: no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    if recorded.task != task as u64 || now.wrapping_sub(recorded.at_ns) > PAIR_WINDOW_NS {
        return;
    }
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
