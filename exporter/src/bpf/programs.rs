//! Which program attaches to which hook: one declarative table, so the question "what
//! does kadvisor hook on this kernel" has one answer.
//!
//! A `required` program that fails to load or attach stops kadvisor (it is the
//! product's core). Any other program that fails is left out with one warning and
//! `kadvisor_bpf_program_attached{program} 0`; only its family goes missing.
use aya::{Btf, Ebpf, programs::BtfTracePoint};

use super::BpfError;

/// One program of the kernel object and the hook it attaches to.
#[derive(Debug, Clone, Copy)]
pub struct ProgramSpec {
    /// Function name in `kernel/src`.
    pub name: &'static str,
    /// The tracepoint (tp_btf) it attaches to.
    pub hook: &'static str,
    /// The metric family (group) that needs it.
    pub family: &'static str,
    /// Whether kadvisor refuses to start without it.
    pub required: bool,
}

/// Every program kadvisor attaches.
pub const PROGRAMS: &[ProgramSpec] = &[
    // CPU time per cgroup: the scheduler's own runtime updates (see kernel/src/sched.rs).
    // tp_btf needs kernel ≥ 5.5.
    ProgramSpec {
        name: "sched_stat_runtime",
        hook: "sched_stat_runtime",
        family: "cpu",
        required: true,
    },
    // Run-queue delay and run periods (see kernel/src/sched.rs): a task's wait starts
    // at wakeup or preemption and ends when sched_switch picks it. Needs all three;
    // sched_switch's prev_state argument needs kernel ≥ 5.18.
    ProgramSpec {
        name: "sched_wakeup",
        hook: "sched_wakeup",
        family: "schedstat",
        required: false,
    },
    ProgramSpec {
        name: "sched_wakeup_new",
        hook: "sched_wakeup_new",
        family: "schedstat",
        required: false,
    },
    ProgramSpec {
        name: "sched_switch",
        hook: "sched_switch",
        family: "schedstat",
        required: false,
    },
    // Crashes: fatal signals delivered with the default action (kernel/src/signal.rs).
    ProgramSpec {
        name: "signal_deliver",
        hook: "signal_deliver",
        family: "crashes",
        required: false,
    },
];

pub(super) fn attach(ebpf: &mut Ebpf, spec: &ProgramSpec, btf: &Btf) -> Result<(), BpfError> {
    let program_err = |source| BpfError::Program {
        name: spec.name,
        hook: spec.hook,
        source,
    };
    let program: &mut BtfTracePoint = ebpf
        .program_mut(spec.name)
        .ok_or(BpfError::MissingProgram { name: spec.name })?
        .try_into()
        .map_err(program_err)?;
    program.load(spec.hook, btf).map_err(program_err)?;
    program.attach().map_err(program_err)?;
    Ok(())
}
