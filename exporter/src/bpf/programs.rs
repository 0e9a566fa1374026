//! Which program attaches to which hook: one declarative table, so the question "what
//! does kadvisor hook on this kernel" has one answer.
//!
//! A `required` program that fails to load or attach stops kadvisor (it is the
//! product's core). Any other program that fails is left out with one warning and
//! `kadvisor_bpf_program_attached{program} 0`; only its family goes missing.
//!
//! `min_kernel` says on which kernels a program is *expected* to attach: the kernel
//! matrix (scripts/kernel-matrix.sh) and the host tests fail when a program that the
//! table expects on the running kernel did not attach, so a verifier rejection is a test
//! failure, not a silently missing family.
use std::{os::fd::AsFd as _, path::Path};

use aya::{
    Btf, Ebpf,
    programs::{BtfTracePoint, CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, FEntry, Iter},
};

use super::BpfError;

/// How a program attaches.
#[derive(Debug, Clone, Copy)]
pub enum ProgramKind {
    /// tp_btf: `hook` is the tracepoint name.
    BtfTracePoint,
    /// cgroup_skb at the cgroup v2 root, in this direction. Attached through a BPF
    /// link (kernel ≥ 5.7; `BPF_F_ALLOW_MULTI` attach before), so programs others
    /// attached to the same cgroup keep running, and closed (detached) when kadvisor
    /// exits, also when it is killed.
    CgroupSkb(CgroupSkbAttachType),
    /// fentry: `hook` is a kernel function in BTF (kernel ≥ 5.5, needs ftrace direct
    /// calls, which every distribution kernel with BTF has).
    FEntry,
    /// A BPF iterator over this kernel object kind (`"task"`, `"task_file"`: kernel
    /// ≥ 5.8; `"cgroup"`, over the memory and pids hierarchies: 6.1): it runs only
    /// when the daemon reads it, at scrape time.
    Iter(&'static str),
}

/// A kernel property a program needs, checked in the running kernel's BTF before
/// loading (a tracepoint's arguments change between kernels; a program reading the
/// wrong type would load fine and count garbage).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirement {
    None,
    /// Argument `index` of the BTF tracepoint (after the hidden context pointer) is a
    /// pointer (a `struct task_struct *`), not a pid.
    PointerArg {
        index: usize,
    },
}

/// One program of the kernel object and the hook it attaches to.
#[derive(Debug, Clone, Copy)]
pub struct ProgramSpec {
    /// Function name in `kernel/src`.
    pub name: &'static str,
    /// The hook it attaches to (tracepoint name, or the cgroup hook for humans).
    pub hook: &'static str,
    /// Program type and attach details.
    pub kind: ProgramKind,
    /// The metric family (group) that needs it.
    pub family: &'static str,
    /// Whether kadvisor refuses to start without it.
    pub required: bool,
    /// What the running kernel must offer beyond the hook's existence.
    pub requires: Requirement,
    /// Attach only when this other program (an alternative for the same data,
    /// earlier in the table) did not attach, so an event is counted once.
    pub unless_attached: Option<&'static str>,
    /// The first kernel with the hook, when it is newer than the oldest kernel kadvisor
    /// supports (`supported_kernel::OLDEST_TESTED`); `None`: expected to attach on every supported kernel.
    pub min_kernel: Option<MinKernel>,
}

/// The first kernel release that has a program's hook, and where that is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinKernel {
    pub version: KernelVersion,
    /// Link to the kernel commit or source that added the hook.
    pub source: &'static str,
}

/// A kernel release's major and minor number, e.g. 6.12 for "6.12.117+deb12-cloud-amd64".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct KernelVersion {
    pub major: u32,
    pub minor: u32,
}

impl KernelVersion {
    /// Parses the leading "major.minor" of a release string (`uname -r`).
    pub fn parse(release: &str) -> Option<Self> {
        let mut parts = release.split(|c: char| !c.is_ascii_digit());
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        Some(Self { major, minor })
    }

    /// The running kernel's version (`uname -r`).
    pub fn running() -> Option<Self> {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
        Self::parse(release.trim())
    }
}

impl std::fmt::Display for KernelVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

impl ProgramSpec {
    /// Whether this program's hook exists on `kernel`, so it must attach there.
    pub fn expected_on(&self, kernel: KernelVersion) -> bool {
        self.min_kernel.is_none_or(|min| kernel >= min.version)
    }
}

/// Every program kadvisor attaches.
pub const PROGRAMS: &[ProgramSpec] = &[
    // Exited tasks' scheduler totals per cgroup (kernel/src/sched.rs): a removed
    // cgroup's final CPU time and monotonic run-queue counters. Fires once per exiting
    // task; nothing of kadvisor runs per context switch, tick or wakeup.
    ProgramSpec {
        name: "sched_process_exit",
        hook: "sched_process_exit",
        kind: ProgramKind::BtfTracePoint,
        family: "cpu",
        required: false,
        requires: Requirement::None,
        unless_attached: None,
        min_kernel: None,
    },
    // Scrape-time task pass (kernel/src/iter.rs): live tasks' run-queue delay and run
    // periods, processes and their open-files limit per cgroup. Runs only when read;
    // attached when `sched` or `process` is on (cost/groups.rs).
    ProgramSpec {
        name: "task_pass",
        hook: "task",
        kind: ProgramKind::Iter("task"),
        family: "tasks",
        required: false,
        requires: Requirement::None,
        unless_attached: None,
        min_kernel: None,
    },
    // Scrape-time descriptor pass (kernel/src/iter.rs): open files and sockets per
    // process (the `process` group), one walk of each descriptor table's bitmap
    // (`bpf_loop`, kernel 5.17).
    ProgramSpec {
        name: "file_pass",
        hook: "task",
        kind: ProgramKind::Iter("task"),
        family: "files",
        required: false,
        requires: Requirement::None,
        unless_attached: None,
        min_kernel: None,
    },
    // Scrape-time cgroup pass (kernel/src/cgroup_pass.rs): the counters behind the memory
    // controller's single-number files (usage, peak, failcnt, kmem) and `pids.current`
    // for every cgroup in one read per hierarchy, instead of one file read each per row.
    ProgramSpec {
        name: "cgroup_pass",
        hook: "cgroup",
        kind: ProgramKind::Iter("cgroup"),
        family: "cgroup_pass",
        required: false,
        requires: Requirement::None,
        unless_attached: None,
        min_kernel: None,
    },
    // Crashes: fatal signals delivered with the default action (kernel/src/signal.rs).
    ProgramSpec {
        name: "signal_deliver",
        hook: "signal_deliver",
        kind: ProgramKind::BtfTracePoint,
        family: "crashes",
        required: false,
        requires: Requirement::None,
        unless_attached: None,
        min_kernel: None,
    },
    // Socket traffic per cgroup and egress destination classes (kernel/src/net.rs).
    ProgramSpec {
        name: "socket_ingress",
        hook: "cgroup_skb/ingress",
        kind: ProgramKind::CgroupSkb(CgroupSkbAttachType::Ingress),
        family: "socket",
        required: false,
        requires: Requirement::None,
        unless_attached: None,
        min_kernel: None,
    },
    ProgramSpec {
        name: "socket_egress",
        hook: "cgroup_skb/egress",
        kind: ProgramKind::CgroupSkb(CgroupSkbAttachType::Egress),
        family: "socket",
        required: false,
        requires: Requirement::None,
        unless_attached: None,
        min_kernel: None,
    },
    // OOM kills per cgroup (see kernel/src/oom.rs). The `oom:mark_victim` tracepoint
    // passes the killed task since a 2024 change (backported to stable: Debian's
    // 6.1.192 has it) but only `int pid` before, e.g. in 6.1 as released
    // (https://elixir.bootlin.com/linux/v6.1/source/include/trace/events/oom.h), so it
    // is used only where BTF shows a pointer; elsewhere fentry on `mark_oom_victim`,
    // the function that fires the tracepoint, whose argument is the task everywhere.
    // The SIGKILL that `__oom_kill_process` sends just before marking its victim: a
    // mark counts as a kill only after it (see kernel/src/oom.rs), so a task marked
    // through the exiting-task shortcut is not counted, as the kernel does not.
    ProgramSpec {
        name: "oom_kill_signal",
        hook: "signal_generate",
        kind: ProgramKind::BtfTracePoint,
        family: "oom",
        required: false,
        requires: Requirement::None,
        unless_attached: None,
        min_kernel: None,
    },
    ProgramSpec {
        name: "mark_victim",
        hook: "mark_victim",
        kind: ProgramKind::BtfTracePoint,
        family: "oom",
        required: false,
        requires: Requirement::PointerArg { index: 0 },
        unless_attached: None,
        min_kernel: None,
    },
    ProgramSpec {
        name: "mark_oom_victim",
        hook: "mark_oom_victim",
        kind: ProgramKind::FEntry,
        family: "oom",
        required: false,
        requires: Requirement::None,
        unless_attached: Some("mark_victim"),
        min_kernel: None,
    },
];

/// From 5.7 aya attaches cgroup programs with `bpf_link_create`, which rejects any
/// flag (EINVAL) and always lets programs coexist, as `BPF_F_ALLOW_MULTI` does
/// (kernel/bpf/cgroup.c `cgroup_bpf_link_attach`). Before 5.7 it uses
/// `BPF_PROG_ATTACH`, where only `BPF_F_ALLOW_MULTI` keeps others' programs.
fn cgroup_attach_mode() -> CgroupAttachMode {
    match aya::util::KernelVersion::current() {
        Ok(v) if v >= aya::util::KernelVersion::new(5, 7, 0) => CgroupAttachMode::Single,
        _ => CgroupAttachMode::AllowMultiple,
    }
}

/// The directories programs attach at.
pub(super) struct Roots<'a> {
    /// The cgroup v2 mount (cgroup_skb programs).
    pub cgroup: &'a Path,
    /// The memory and pids controllers' hierarchies (`iter/cgroup`), each once.
    pub pass: &'a [std::path::PathBuf],
}

pub(super) fn attach(
    ebpf: &mut Ebpf,
    spec: &ProgramSpec,
    btf: &Btf,
    facts: &super::btf::KernelFacts,
    roots: &Roots<'_>,
) -> Result<Vec<std::os::fd::OwnedFd>, BpfError> {
    let cgroup_root = roots.cgroup;
    match spec.requires {
        Requirement::None => {}
        Requirement::PointerArg { index } => {
            if !facts.pointer_arg(spec.hook, index) {
                return Err(BpfError::Unsupported {
                    name: spec.name,
                    reason: "this kernel's tracepoint does not pass a pointer there",
                });
            }
        }
    }
    let program_err = |source| BpfError::Program {
        name: spec.name,
        hook: spec.hook,
        source,
    };
    let program = ebpf
        .program_mut(spec.name)
        .ok_or(BpfError::MissingProgram { name: spec.name })?;
    match spec.kind {
        ProgramKind::BtfTracePoint => {
            let program: &mut BtfTracePoint = program.try_into().map_err(program_err)?;
            program.load(spec.hook, btf).map_err(program_err)?;
            program.attach().map_err(program_err)?;
        }
        ProgramKind::FEntry => {
            let program: &mut FEntry = program.try_into().map_err(program_err)?;
            program.load(spec.hook, btf).map_err(program_err)?;
            program.attach().map_err(program_err)?;
        }
        ProgramKind::CgroupSkb(attach_type) => {
            let program: &mut CgroupSkb = program.try_into().map_err(program_err)?;
            program.load().map_err(program_err)?;
            let cgroup = std::fs::File::open(cgroup_root).map_err(|source| BpfError::Open {
                path: cgroup_root.to_owned(),
                source,
            })?;
            program
                .attach(cgroup, attach_type, cgroup_attach_mode())
                .map_err(program_err)?;
        }
        ProgramKind::Iter(target) => {
            let program: &mut Iter = program.try_into().map_err(program_err)?;
            program.load(target, btf).map_err(program_err)?;
            let program = program.fd().map_err(program_err)?;
            let raw = |source| BpfError::Raw {
                name: spec.name,
                source,
            };
            // Our own link (aya's `IterLink` does not lend its fd): each scrape creates
            // a fresh iterator from it.
            if target != "cgroup" {
                return Ok(vec![super::iter::link_create(program).map_err(raw)?]);
            }
            if roots.pass.is_empty() {
                return Err(BpfError::Unsupported {
                    name: spec.name,
                    reason: "neither the memory nor the pids controller is mounted",
                });
            }
            let mut links = Vec::new();
            for root in roots.pass {
                let dir = std::fs::File::open(root).map_err(|source| BpfError::Open {
                    path: root.clone(),
                    source,
                })?;
                links.push(super::iter::cgroup_link_create(program, dir.as_fd()).map_err(raw)?);
            }
            return Ok(links);
        }
    }
    Ok(Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_debian_and_upstream_releases() {
        let v = |major, minor| Some(KernelVersion { major, minor });
        assert_eq!(KernelVersion::parse("6.1.0-56-cloud-amd64"), v(6, 1));
        assert_eq!(KernelVersion::parse("6.12.117+deb12-cloud-amd64"), v(6, 12));
        assert_eq!(KernelVersion::parse("6.18.0"), v(6, 18));
        assert_eq!(KernelVersion::parse("5.15"), v(5, 15));
        assert_eq!(KernelVersion::parse("garbage"), None);
    }

    #[test]
    fn min_kernel_decides_what_is_expected() {
        let mut spec = PROGRAMS[0];
        let v = |major, minor| KernelVersion { major, minor };
        assert!(spec.expected_on(v(6, 1)));
        spec.min_kernel = Some(MinKernel {
            version: v(6, 12),
            source: "test",
        });
        assert!(!spec.expected_on(v(6, 1)));
        assert!(spec.expected_on(v(6, 12)));
        assert!(spec.expected_on(v(7, 0)));
    }

    #[test]
    fn program_names_are_unique() {
        for (i, a) in PROGRAMS.iter().enumerate() {
            assert!(
                PROGRAMS[i + 1..].iter().all(|b| b.name != a.name),
                "{} twice",
                a.name
            );
        }
    }
}
