//! kadvisor's eBPF programs. One module per hook family; each program keeps per-cgroup
//! counters in per-CPU maps that the daemon reads at scrape time, or (the iterators)
//! writes records the daemon reads once per scrape. Nothing is sent to userspace per
//! event, and nothing runs per context switch, scheduler tick or wakeup.
//!
//! # Every program: where it runs and which maps it touches
//!
//! | program (module) | type, hook | runs in | maps (type: use) |
//! |---|---|---|---|
//! | `sched_process_exit` (sched) | tp_btf `sched_process_exit` | the exiting task's process context in `do_exit()`, once per exiting task; no run-queue or other scheduler lock held | `CGROUP_CPU` (per-CPU hash, not preallocated: may insert); `CGROUP_EXCLUDED` (hash: lookup); `ERRORS` (per-CPU array) |
//! | `task_pass`, `file_pass` (iter) | iter `task` (each) | kadvisor's own `read()` of the iterator fd, at scrape time, under RCU | none (records go to the `seq_file`) |
//! | `cgroup_pass` (cgroup_pass) | iter `cgroup`, one link per memory/pids/io hierarchy | kadvisor's own `read()` of the iterator fd, at scrape time, under `cgroup_mutex` | `CGROUP_PASS` (array, mmapable: one record per cgroup of the walk); `CGROUP_PASS_CURSOR` (array: the walk's next slot); `ERRORS` |
//! | `signal_deliver` (signal) | tp_btf `signal_deliver` | `get_signal()` of the receiving task, with `sighand->siglock` held (IRQs off), per delivered signal | `CGROUP_CRASHES` (per-CPU hash, not preallocated: may insert, only for a crash signal with the default action); `CGROUP_EXCLUDED`, `ERRORS` |
//! | `mark_victim` / `mark_oom_victim` (oom) | tp_btf `mark_victim` / fentry `mark_oom_victim` | the OOM killer, per kill, `oom_lock` and the victim's `task_lock` held | `CGROUP_OOM` (per-CPU hash, not preallocated: may insert); `CGROUP_EXCLUDED`, `ERRORS` |
//! | `socket_ingress`, `socket_egress` (net) | cgroup_skb ingress/egress at the cgroup v2 root | the socket's receive (softirq) or send path, per packet | `CGROUP_NET` (per-CPU hash, not preallocated: may insert); `DESTINATIONS` (LPM trie: lookup); `CGROUP_EXCLUDED`, `ERRORS` |
//!
//! No program allocates a hash entry in a context that holds a scheduler
//! (`rq->lock`/`pi_lock`) lock: before 6.1, a non-preallocated hash map insert from
//! such a tracing context could deadlock in the allocator (kernel commit "bpf:
//! Introduce any context BPF specific memory allocator", 6.1). The scheduler hooks
//! that did (`sched_switch`, `sched_wakeup*`, `sched_stat_runtime`) are gone; the
//! one scheduler event left, `sched_process_exit`, fires outside the scheduler's
//! locks.
#![no_std]
#![no_main]

mod cgroup_pass;
mod iter;
mod maps;
mod net;
mod oom;
mod sched;
mod signal;
mod task;

/// A reachable panic must fail verification rather than hide: an infinite loop is
/// rejected by the verifier, `unreachable_unchecked` would not be.
#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
