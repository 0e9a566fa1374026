//! kadvisor's eBPF programs. One module per hook family; each program keeps per-cgroup
//! counters in per-CPU maps that the daemon reads at scrape time. Nothing is sent to
//! userspace per event.
#![no_std]
#![no_main]

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
