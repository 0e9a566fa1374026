//! The kernel side as the scrape sees it: `KernelSource` (the maps of
//! `bpf::KernelPrograms`, or a fake in tests) and `KernelSnapshot`, which reads each
//! map at most once per scrape however many families use it.
use std::{
    collections::{HashMap, HashSet},
    sync::OnceLock,
};

use kadvisor_common::{CgroupCpu, CgroupCrashes, CgroupNet, KernelError};

use crate::bpf::{BpfError, CgroupPass, CgroupTasks, KernelPrograms, ProgramStats};

/// What the collectors need from the kernel side. `KernelPrograms` is the real one;
/// tests substitute fixed values to test exposition without BPF.
pub trait KernelSource: Send + Sync {
    fn cgroup_cpu(&self) -> Result<HashMap<u64, CgroupCpu>, BpfError>;
    fn cgroup_crashes(&self) -> Result<HashMap<u64, CgroupCrashes>, BpfError>;
    fn kernel_errors(&self) -> Result<Vec<(KernelError, u64)>, BpfError>;
    fn program_stats(&self) -> Vec<ProgramStats>;
    /// Whether every program of `family` (see `bpf::PROGRAMS`) is attached: a family
    /// with a missing hook is left out rather than served wrong.
    fn family_attached(&self, family: &str) -> bool {
        self.program_stats()
            .iter()
            .filter(|s| s.family == family)
            .all(|s| s.attached)
    }
    /// Socket traffic per cgroup id (`collect::net`). The default (no traffic) serves
    /// test fakes; the family is only written when its programs are attached.
    fn cgroup_net(&self) -> Result<HashMap<u64, CgroupNet>, BpfError> {
        Ok(HashMap::new())
    }
    /// OOM kills per cgroup id (also of removed cgroups).
    fn cgroup_oom_kills(&self) -> Result<HashMap<u64, u64>, BpfError>;

    /// Every cgroup id present in a per-cgroup map.
    fn tracked_ids(&self) -> Result<HashSet<u64>, BpfError> {
        let mut ids: HashSet<u64> = self.cgroup_cpu()?.into_keys().collect();
        ids.extend(self.cgroup_crashes()?.into_keys());
        ids.extend(self.cgroup_net()?.into_keys());
        ids.extend(self.cgroup_oom_kills()?.into_keys());
        Ok(ids)
    }
    /// One scrape-time pass over every task, summed per cgroup id (`bpf::CgroupTasks`).
    /// The default (no pass) serves test fakes.
    fn task_pass(&self) -> Result<HashMap<u64, CgroupTasks>, BpfError> {
        Err(BpfError::NoTaskPass)
    }
    /// One scrape-time pass over the memory and pids controllers' cgroups: their
    /// counters by cgroup id in each hierarchy. The default (no pass) serves test fakes.
    fn cgroup_pass(&self) -> Result<CgroupPass, BpfError> {
        Err(BpfError::NoCgroupPass)
    }
    /// Final hierarchical counter values of one cgroup, by counter name (what a
    /// retired cgroup leaves to its parent).
    fn counters_of(&self, id: u64) -> Result<Vec<(&'static str, u64)>, BpfError> {
        let cpu = self.cgroup_cpu()?.get(&id).copied().unwrap_or_default();
        let crashes = self.cgroup_crashes()?.get(&id).copied().unwrap_or_default();
        let net = self.cgroup_net()?.get(&id).copied().unwrap_or_default();
        let oom_kills = self
            .cgroup_oom_kills()?
            .get(&id)
            .copied()
            .unwrap_or_default();
        Ok(crate::bpf::counters::retired_counters(
            &cpu, &crashes, &net, oom_kills,
        ))
    }
    /// Deletes a retired cgroup from every per-cgroup map.
    fn forget(&self, _id: u64) -> Result<(), BpfError> {
        Ok(())
    }
    /// Entries per per-cgroup map.
    fn map_entries(&self) -> Result<Vec<(&'static str, usize)>, BpfError> {
        Ok(Vec::new())
    }
}

impl KernelSource for KernelPrograms {
    fn cgroup_cpu(&self) -> Result<HashMap<u64, CgroupCpu>, BpfError> {
        Self::cgroup_cpu(self)
    }
    fn cgroup_crashes(&self) -> Result<HashMap<u64, CgroupCrashes>, BpfError> {
        Self::cgroup_crashes(self)
    }
    fn family_attached(&self, family: &str) -> bool {
        crate::bpf::PROGRAMS
            .iter()
            .filter(|spec| spec.family == family)
            .all(|spec| self.is_attached(spec.name))
    }
    fn kernel_errors(&self) -> Result<Vec<(KernelError, u64)>, BpfError> {
        Self::kernel_errors(self)
    }
    fn program_stats(&self) -> Vec<ProgramStats> {
        Self::program_stats(self)
    }
    fn cgroup_net(&self) -> Result<HashMap<u64, CgroupNet>, BpfError> {
        Self::cgroup_net(self)
    }
    fn cgroup_oom_kills(&self) -> Result<HashMap<u64, u64>, BpfError> {
        Self::cgroup_oom_kills(self)
    }
    fn tracked_ids(&self) -> Result<HashSet<u64>, BpfError> {
        Self::tracked_ids(self)
    }
    fn task_pass(&self) -> Result<HashMap<u64, CgroupTasks>, BpfError> {
        Self::task_pass(self)
    }
    fn cgroup_pass(&self) -> Result<CgroupPass, BpfError> {
        Self::cgroup_pass(self)
    }
    fn counters_of(&self, id: u64) -> Result<Vec<(&'static str, u64)>, BpfError> {
        Self::counters_of(self, id)
    }
    fn forget(&self, id: u64) -> Result<(), BpfError> {
        Self::forget(self, id)
    }
    fn map_entries(&self) -> Result<Vec<(&'static str, usize)>, BpfError> {
        Self::map_entries(self)
    }
}

/// The kernel maps of one scrape, each read at the first use and then shared by
/// every family (the CPU map serves usage, schedstat, the idle-row check and the
/// series budget's ranking: one read).
pub struct KernelSnapshot<'a> {
    kernel: &'a dyn KernelSource,
    cpu: OnceLock<Result<HashMap<u64, CgroupCpu>, BpfError>>,
    crashes: OnceLock<Result<HashMap<u64, CgroupCrashes>, BpfError>>,
    net: OnceLock<Result<HashMap<u64, CgroupNet>, BpfError>>,
    oom_kills: OnceLock<Result<HashMap<u64, u64>, BpfError>>,
    errors: OnceLock<Result<Vec<(KernelError, u64)>, BpfError>>,
    tasks: OnceLock<Result<HashMap<u64, CgroupTasks>, BpfError>>,
    cgroup_pass: OnceLock<Result<CgroupPass, BpfError>>,
    /// A failed task pass was already reported this scrape (it is read by the cpu and
    /// the process families, and counted once).
    tasks_failure_reported: std::sync::atomic::AtomicBool,
    /// The same for the cgroup pass (memory and process families).
    cgroup_pass_failure_reported: std::sync::atomic::AtomicBool,
    programs: OnceLock<Vec<ProgramStats>>,
}

impl<'a> KernelSnapshot<'a> {
    pub fn new(kernel: &'a dyn KernelSource) -> Self {
        Self {
            kernel,
            cpu: OnceLock::new(),
            crashes: OnceLock::new(),
            net: OnceLock::new(),
            oom_kills: OnceLock::new(),
            errors: OnceLock::new(),
            tasks: OnceLock::new(),
            cgroup_pass: OnceLock::new(),
            tasks_failure_reported: std::sync::atomic::AtomicBool::new(false),
            cgroup_pass_failure_reported: std::sync::atomic::AtomicBool::new(false),
            programs: OnceLock::new(),
        }
    }

    /// The source itself (for what is not a per-scrape read).
    pub fn source(&self) -> &'a dyn KernelSource {
        self.kernel
    }

    pub fn cgroup_cpu(&self) -> Result<&HashMap<u64, CgroupCpu>, &BpfError> {
        self.cpu.get_or_init(|| self.kernel.cgroup_cpu()).as_ref()
    }

    pub fn cgroup_crashes(&self) -> Result<&HashMap<u64, CgroupCrashes>, &BpfError> {
        self.crashes
            .get_or_init(|| self.kernel.cgroup_crashes())
            .as_ref()
    }

    pub fn cgroup_net(&self) -> Result<&HashMap<u64, CgroupNet>, &BpfError> {
        self.net.get_or_init(|| self.kernel.cgroup_net()).as_ref()
    }

    pub fn cgroup_oom_kills(&self) -> Result<&HashMap<u64, u64>, &BpfError> {
        self.oom_kills
            .get_or_init(|| self.kernel.cgroup_oom_kills())
            .as_ref()
    }

    pub fn kernel_errors(&self) -> Result<&[(KernelError, u64)], &BpfError> {
        self.errors
            .get_or_init(|| self.kernel.kernel_errors())
            .as_ref()
            .map(Vec::as_slice)
    }

    /// The scrape-time task pass (`iter/task` + `iter/task_file`) per cgroup id: run at
    /// the first use, shared by the schedstat and process families.
    pub fn task_pass(&self) -> Result<&HashMap<u64, CgroupTasks>, &BpfError> {
        self.tasks.get_or_init(|| self.kernel.task_pass()).as_ref()
    }

    /// The scrape-time cgroup pass (`iter/cgroup`): run at the first use, shared by
    /// the memory and process families.
    pub fn cgroup_pass(&self) -> Result<&CgroupPass, &BpfError> {
        self.cgroup_pass
            .get_or_init(|| self.kernel.cgroup_pass())
            .as_ref()
    }

    /// `true` at the first call only: whether a failed task pass is still to be
    /// reported in this scrape.
    pub fn report_task_pass_failure(&self) -> bool {
        !self
            .tasks_failure_reported
            .swap(true, std::sync::atomic::Ordering::Relaxed)
    }

    /// `true` at the first call only: whether a failed cgroup pass is still to be
    /// reported in this scrape.
    pub fn report_cgroup_pass_failure(&self) -> bool {
        !self
            .cgroup_pass_failure_reported
            .swap(true, std::sync::atomic::Ordering::Relaxed)
    }

    pub fn program_stats(&self) -> &[ProgramStats] {
        self.programs.get_or_init(|| self.kernel.program_stats())
    }

    /// Reads every per-cgroup counter map now (each once, kept for the scrape; a
    /// failure is kept too, and reported by the family that reads it).
    pub fn read_counter_maps(&self) {
        let _ = self.cgroup_cpu();
        let _ = self.cgroup_crashes();
        let _ = self.cgroup_net();
        let _ = self.cgroup_oom_kills();
    }

    /// Every id in a per-cgroup map, from this scrape's reads (`None` if one failed).
    pub fn tracked_ids(&self) -> Option<HashSet<u64>> {
        let mut ids: HashSet<u64> = self.cgroup_cpu().ok()?.keys().copied().collect();
        ids.extend(self.cgroup_crashes().ok()?.keys());
        ids.extend(self.cgroup_net().ok()?.keys());
        ids.extend(self.cgroup_oom_kills().ok()?.keys());
        Some(ids)
    }

    /// Whether every program of `family` is attached (see `KernelSource`).
    pub fn family_attached(&self, family: &str) -> bool {
        self.kernel.family_attached(family)
    }
}
