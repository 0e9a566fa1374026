//! Signal hooks: crashes per cgroup.
//!
//! `signal_deliver` fires in `get_signal()` when a task dequeues a signal, in the
//! receiving task's context (so `current` is the crashing task), with the action that
//! is about to be taken. A SIGSEGV/SIGBUS/SIGILL/SIGFPE/SIGABRT whose handler is
//! `SIG_DFL` at that point dumps core and kills the thread group: a crash. A signal
//! the program handles (and survives) is not counted; one it handles and then
//! re-raises with the default action (abort(), Rust's and Go's fault handlers) is
//! counted once, when it is fatal. A fault the task blocked or ignored is reset to
//! `SIG_DFL` by `force_sig_info_to_task()` before delivery, so it counts too.
//! <https://elixir.bootlin.com/linux/v6.12/source/kernel/signal.c#L2860>
//!
//! `signal_generate` would also see signals that are handled, ignored or never
//! delivered (the task died of something else first), so it is not used.
//!
//! # Minimum kernel version
//! tp_btf needs 5.5; `signal_deliver` has had the same arguments since 3.x.
use aya_ebpf::{
    helpers::bpf_get_current_cgroup_id, macros::btf_tracepoint, programs::BtfTracePointContext,
};
use kadvisor_common::{CRASH_SIGNALS, SignalOffsets};

use crate::maps::{CGROUP_CRASHES, excluded, per_cpu_entry};

/// Filled in by the loader from `/sys/kernel/btf/vmlinux` before the program loads.
#[unsafe(no_mangle)]
static SIGNAL_OFFSETS: SignalOffsets = SignalOffsets {
    k_sigaction_handler: 0,
};

/// `SIG_DFL` is the null handler.
const SIG_DFL: u64 = 0;

/// `TP_PROTO(int sig, struct kernel_siginfo *info, struct k_sigaction *ka)`
#[btf_tracepoint(function = "signal_deliver")]
pub fn signal_deliver(ctx: BtfTracePointContext) -> i32 {
    let sig: u64 = ctx.arg(0);
    let action: *const u8 = ctx.arg(2);
    count_crash(sig as u32, action);
    0
}

#[inline(always)]
fn count_crash(sig: u32, action: *const u8) {
    let Some(index) = CRASH_SIGNALS.iter().position(|&(number, _)| number == sig) else {
        return;
    };
    // SAFETY: a plain read of a global; volatile so the compiler does not fold in the
    // zero initialiser that the loader replaces before load.
    let offsets = unsafe { core::ptr::read_volatile(&raw const SIGNAL_OFFSETS) };
    // SAFETY: `action` is a BTF-typed tp_btf argument and the offset comes from this
    // kernel's BTF through a frozen read-only global, so the verifier checks the load
    // against BTF and turns it into a fault-handling load (see task.rs).
    let handler = unsafe {
        core::ptr::read_volatile(
            action
                .wrapping_add(offsets.k_sigaction_handler as usize)
                .cast::<u64>(),
        )
    };
    if handler != SIG_DFL {
        return;
    }
    // SAFETY: bpf_get_current_cgroup_id has no preconditions; current is the task
    // the signal is delivered to.
    let cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    if excluded(cgroup_id) {
        return;
    }
    if let Some(crashes) = per_cpu_entry(&CGROUP_CRASHES, cgroup_id) {
        // SAFETY: this CPU's value slot; tracepoints run with preemption disabled.
        if let Some(count) = unsafe { (*crashes).by_signal.get_mut(index) } {
            *count += 1;
        }
    }
}
