//! The kernel side, seen from userspace: preflight checks, loading and attaching the
//! programs of `kernel/`, and reading their maps at scrape time.
mod batch;
mod btf;
mod cgroup_pass;
pub mod counters;
mod filter;
mod iter;
mod programs;
mod raw;

use std::{collections::HashMap, path::PathBuf};

use aya::{
    Ebpf, EbpfLoader,
    maps::{MapData, PerCpuArray, PerCpuHashMap, lpm_trie::LpmTrie},
};
use kadvisor_common::{CgroupCpu, CgroupCrashes, CgroupNet, DestinationAddr, KernelError};

pub use cgroup_pass::{CgroupPass, MemcgCounters};
pub use filter::CgroupFilter;
pub use iter::{CgroupTasks, IterError};
pub use programs::{KernelVersion, MinKernel, PROGRAMS, ProgramKind, ProgramSpec, Requirement};

/// The object file built from `kernel/` by build.rs.
static KERNEL_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/kadvisor-ebpf"));

/// Capabilities that let a process load and attach tracing programs: CAP_BPF and
/// CAP_PERFMON (kernel ≥ 5.8), or CAP_SYS_ADMIN, which implies both.
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    #[error(
        "missing capabilities CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN): run as root or grant them"
    )]
    MissingCapabilities,
    #[error("cannot read this process's capabilities")]
    Capabilities(#[source] procfs::ProcError),
    #[error("kernel BTF not found at {path} (the kernel needs CONFIG_DEBUG_INFO_BTF=y)")]
    BtfMissing { path: PathBuf },
    #[error("cannot parse kernel BTF at {path}")]
    BtfParse {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("kernel BTF at {path} has no member {member} in struct {structure}")]
    BtfMember {
        path: PathBuf,
        structure: &'static str,
        member: &'static str,
    },
    #[error("cannot load the eBPF object (is BPF enabled in this kernel?)")]
    Load(#[source] aya::EbpfError),
    #[error("eBPF object has no program {name}")]
    MissingProgram { name: &'static str },
    #[error("cannot load program {name} for hook {hook}")]
    Program {
        name: &'static str,
        hook: &'static str,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("cannot open cgroup directory {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("program {name} is not for this kernel: {reason}")]
    Unsupported {
        name: &'static str,
        reason: &'static str,
    },
    #[error("eBPF object has no map {name}")]
    MissingMap { name: &'static str },
    #[error("map {name}: bpf syscall failed")]
    Raw {
        name: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("scrape-time iterator failed")]
    Iter(#[from] IterError),
    #[error("the scrape-time task pass is not attached on this kernel")]
    NoTaskPass,
    #[error("the scrape-time cgroup pass is not attached on this kernel")]
    NoCgroupPass,
    #[error("cannot read map {name}")]
    Map {
        name: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
}

/// Checks what loading needs before trying, so a failure names its cause.
pub fn preflight(btf_path: &std::path::Path) -> Result<(), BpfError> {
    let status = procfs::process::Process::myself()
        .and_then(|me| me.status())
        .map_err(BpfError::Capabilities)?;
    let has = |cap: u32| status.capeff & (1 << cap) != 0;
    if !(has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON))) {
        return Err(BpfError::MissingCapabilities);
    }
    if !btf_path.exists() {
        return Err(BpfError::BtfMissing {
            path: btf_path.to_owned(),
        });
    }
    Ok(())
}

/// Loaded and attached programs, and the maps the collectors read.
pub struct KernelPrograms {
    // Keeps programs and links alive: dropping it detaches everything.
    ebpf: Ebpf,
    cgroup_cpu: PerCpuHashMap<MapData, u64, CgroupCpu>,
    cgroup_crashes: PerCpuHashMap<MapData, u64, CgroupCrashes>,
    errors: PerCpuArray<MapData, u64>,
    cgroup_net: PerCpuHashMap<MapData, u64, CgroupNet>,
    destinations: LpmTrie<MapData, DestinationAddr, u32>,
    cgroup_oom: PerCpuHashMap<MapData, u64, u64>,
    /// Every map keyed by cgroup id (duplicated fds), so removed cgroups can be
    /// forgotten in all of them at once. Add new per-cgroup maps to
    /// `PER_CGROUP_MAPS`.
    per_cgroup: Vec<(&'static str, std::os::fd::OwnedFd)>,
    /// Names of the programs that attached.
    attached: Vec<&'static str>,
    /// Links of the attached iterator programs, by program name: each read creates a
    /// fresh iterator fd from one.
    iterators: Vec<(&'static str, std::os::fd::OwnedFd)>,
    /// The kernel cgroup filter, when a selection is configured.
    filter: Option<std::sync::Arc<CgroupFilter>>,
    /// The cgroup pass's output array, mapped (when the pass is attached).
    cgroup_pass_records: Option<cgroup_pass::MappedRecords>,
}

/// What the configuration changes in loading (see `cost`).
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `PROGRAMS` families not to attach (their metric group is disabled), the
    /// required CPU core included.
    pub disabled_families: Vec<&'static str>,
    /// Enables the kernel cgroup filter (`CGROUP_EXCLUDED`); without it the hooks'
    /// filter check is dead code the verifier removes.
    pub cgroup_filter: bool,
    /// The tops of the memory, pids and io controllers' hierarchies (the v2 root, or
    /// a hybrid host's v1 `memory`, `pids` and `blkio` mounts), which the cgroup pass
    /// walks, each once; none: the pass is not attached.
    pub pass_roots: Vec<std::path::PathBuf>,
}

/// Whether a program is attached, and its counters from the kernel's BPF
/// statistics (`kernel.bpf_stats_enabled`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramStats {
    pub name: &'static str,
    pub family: &'static str,
    pub attached: bool,
    pub run_count: u64,
    pub run_time_ns: u64,
}

impl KernelPrograms {
    /// Loads the object, resolving struct offsets from `btf_path`, and attaches every
    /// program of `PROGRAMS` (cgroup programs at `cgroup_root`, the cgroup v2 mount).
    pub fn load(
        btf_path: &std::path::Path,
        max_cgroups: u32,
        cgroup_root: &std::path::Path,
    ) -> Result<Self, BpfError> {
        Self::load_with(btf_path, max_cgroups, cgroup_root, &LoadOptions::default())
    }

    /// `load`, leaving out disabled families and enabling the cgroup filter as
    /// `options` say.
    pub fn load_with(
        btf_path: &std::path::Path,
        max_cgroups: u32,
        cgroup_root: &std::path::Path,
        options: &LoadOptions,
    ) -> Result<Self, BpfError> {
        let cgroup_filter = u32::from(options.cgroup_filter);
        let pointer_args: Vec<(&'static str, usize)> = PROGRAMS
            .iter()
            .filter_map(|spec| match spec.requires {
                Requirement::PointerArg { index } => Some((spec.hook, index)),
                Requirement::None => None,
            })
            .collect();
        // The type ids aya looks up to load each program (aya's own names for them).
        let target_names: Vec<(String, u32)> = PROGRAMS
            .iter()
            .filter_map(|spec| match spec.kind {
                ProgramKind::BtfTracePoint => {
                    Some((format!("btf_trace_{}", spec.hook), btf::TYPEDEF))
                }
                ProgramKind::FEntry => Some((spec.hook.to_owned(), btf::FUNC)),
                ProgramKind::Iter(target) => Some((format!("bpf_iter_{target}"), btf::FUNC)),
                ProgramKind::CgroupSkb(_) => None,
            })
            .collect();
        let targets: Vec<(&str, u32)> = target_names
            .iter()
            .map(|(name, kind)| (name.as_str(), *kind))
            .collect();
        // The kernel's BTF is read once, here, and dropped before the loader runs.
        let facts = btf::kernel_facts(btf_path, &pointer_args, &targets)?;
        let (offsets, family_offsets) = (facts.task_cgroup, &facts.family);
        let btf = &facts.attach_btf;
        let mut ebpf = EbpfLoader::new()
            .btf(Some(btf))
            .override_global("TASK_CGROUP_OFFSETS", &offsets, true)
            .override_global("TASK_OFFSETS", &family_offsets.task, true)
            .override_global("SIGNAL_OFFSETS", &family_offsets.signal, true)
            .override_global("CGROUP_PASS_OFFSETS", &family_offsets.cgroup_pass, true)
            .override_global("CGROUP_FILTER", &cgroup_filter, true)
            .map_max_entries("CGROUP_EXCLUDED", max_cgroups)
            .map_max_entries("CGROUP_CPU", max_cgroups)
            .map_max_entries("CGROUP_CRASHES", max_cgroups)
            .map_max_entries("CGROUP_NET", max_cgroups)
            .map_max_entries("CGROUP_OOM", max_cgroups)
            .map_max_entries("CGROUP_PASS", max_cgroups)
            .load(KERNEL_OBJECT)
            .map_err(BpfError::Load)?;
        let mut attached = Vec::new();
        let mut iterators = Vec::new();
        let kernel = KernelVersion::running();
        for spec in PROGRAMS {
            if options.disabled_families.contains(&spec.family) {
                tracing::info!(
                    program = spec.name,
                    family = spec.family,
                    "not attached: its metric group is disabled"
                );
                continue;
            }
            if let Some((_, e)) = family_offsets.missing.iter().find(|(p, _)| *p == spec.name) {
                tracing::warn!(
                    program = spec.name,
                    family = spec.family,
                    error = %crate::error_chain(e),
                    "not attached: a kernel member it reads is not in BTF; leaving its family out"
                );
                continue;
            }
            if spec
                .unless_attached
                .is_some_and(|other| attached.contains(&other))
            {
                tracing::debug!(program = spec.name, "alternative already attached");
                continue;
            }
            let roots = programs::Roots {
                cgroup: cgroup_root,
                pass: &options.pass_roots,
            };
            match programs::attach(&mut ebpf, spec, btf, &facts, &roots) {
                Ok(links) => {
                    tracing::info!(program = spec.name, hook = spec.hook, "attached");
                    attached.push(spec.name);
                    iterators.extend(links.into_iter().map(|link| (spec.name, link)));
                }
                Err(e) if !spec.required => match (kernel, spec.min_kernel) {
                    (Some(running), Some(min)) if !spec.expected_on(running) => tracing::info!(
                        program = spec.name,
                        family = spec.family,
                        kernel = %running,
                        needs = %min.version,
                        source = min.source,
                        "hook not in this kernel; leaving its family out"
                    ),
                    _ => tracing::warn!(
                        program = spec.name,
                        family = spec.family,
                        error = %crate::error_chain(&e),
                        "program rejected on a kernel that should have its hook; leaving its family out"
                    ),
                },
                Err(e) => return Err(e),
            }
        }
        let cgroup_pass_records = if attached.contains(&"cgroup_pass") {
            match cgroup_pass::MappedRecords::map(&map_fd(&ebpf, "CGROUP_PASS")?, max_cgroups) {
                Ok(records) => Some(records),
                Err(e) => {
                    tracing::warn!(
                        program = "cgroup_pass",
                        error = %e,
                        "cannot map the cgroup pass's array; reading memory and pids files instead"
                    );
                    attached.retain(|name| *name != "cgroup_pass");
                    iterators.retain(|(name, _)| *name != "cgroup_pass");
                    None
                }
            }
        } else {
            None
        };
        let per_cgroup = PER_CGROUP_MAPS
            .iter()
            .map(|&name| Ok((name, map_fd(&ebpf, name)?)))
            .collect::<Result<Vec<_>, BpfError>>()?;
        let filter = if options.cgroup_filter {
            let counters = ["CGROUP_CPU", "CGROUP_CRASHES", "CGROUP_NET", "CGROUP_OOM"]
                .iter()
                .map(|&name| Ok((name, map_fd(&ebpf, name)?)))
                .collect::<Result<Vec<_>, BpfError>>()?;
            Some(std::sync::Arc::new(CgroupFilter::new(
                map_fd(&ebpf, "CGROUP_EXCLUDED")?,
                counters,
            )))
        } else {
            None
        };
        let cgroup_cpu = take_map(&mut ebpf, "CGROUP_CPU")?;
        let cgroup_crashes = take_map(&mut ebpf, "CGROUP_CRASHES")?;
        let errors = take_map(&mut ebpf, "ERRORS")?;
        let cgroup_net = take_map(&mut ebpf, "CGROUP_NET")?;
        let destinations = take_map(&mut ebpf, "DESTINATIONS")?;
        let cgroup_oom = take_map(&mut ebpf, "CGROUP_OOM")?;
        Ok(Self {
            ebpf,
            cgroup_cpu,
            cgroup_crashes,
            errors,
            cgroup_net,
            destinations,
            cgroup_oom,
            per_cgroup,
            attached,
            iterators,
            filter,
            cgroup_pass_records,
        })
    }

    /// The kernel cgroup filter (`None` unless `LoadOptions::cgroup_filter`).
    pub fn cgroup_filter(&self) -> Option<std::sync::Arc<CgroupFilter>> {
        self.filter.clone()
    }

    /// Fills the destination-class trie: each CIDR (as its trie key: prefix length
    /// and IPv6 address, see `config::Cidr::trie_key`) → its `DEST_*` class. Overlaps
    /// resolve by longest prefix, as any routing table does.
    pub fn set_destinations(&mut self, cidrs: &[((u32, [u8; 16]), u32)]) -> Result<(), BpfError> {
        for ((prefix_len, addr), class) in cidrs {
            let (prefix_len, addr) = (*prefix_len, *addr);
            let key = aya::maps::lpm_trie::Key::new(prefix_len, addr);
            self.destinations
                .insert(&key, class, 0)
                .map_err(|source| BpfError::Map {
                    name: "DESTINATIONS",
                    source,
                })?;
        }
        Ok(())
    }

    /// Socket traffic per cgroup id, summed over CPUs.
    pub fn cgroup_net(&self) -> Result<HashMap<u64, CgroupNet>, BpfError> {
        let mut out = HashMap::new();
        read_per_cpu_hash(
            &self.cgroup_net,
            "CGROUP_NET",
            |id, per_cpu: &[CgroupNet]| {
                let mut total = CgroupNet::default();
                for v in per_cpu {
                    add_net(&mut total, v);
                }
                out.insert(id, total);
            },
        )?;
        Ok(out)
    }

    /// Deletes `id` from every per-cgroup map (a retired cgroup). A missing entry is
    /// not an error.
    pub fn forget(&self, id: u64) -> Result<(), BpfError> {
        for (name, fd) in &self.per_cgroup {
            raw::delete_u64_key(fd, id).map_err(|source| BpfError::Raw { name, source })?;
        }
        if let Some(filter) = &self.filter {
            filter.forget(id);
        }
        Ok(())
    }

    /// Entries in each per-cgroup map.
    pub fn map_entries(&self) -> Result<Vec<(&'static str, usize)>, BpfError> {
        self.per_cgroup
            .iter()
            .map(|(name, fd)| {
                let keys = raw::u64_keys(fd).map_err(|source| BpfError::Raw { name, source })?;
                Ok((*name, keys.len()))
            })
            .collect()
    }

    /// Every cgroup id present in any per-cgroup map.
    pub fn tracked_ids(&self) -> Result<std::collections::HashSet<u64>, BpfError> {
        let mut ids = std::collections::HashSet::new();
        for (name, fd) in &self.per_cgroup {
            ids.extend(raw::u64_keys(fd).map_err(|source| BpfError::Raw { name, source })?);
        }
        Ok(ids)
    }

    /// The final values of one cgroup's hierarchical counters, by counter name, to
    /// fold into its parent when it is retired. Families with per-cgroup counters
    /// that roll up add theirs here.
    pub fn counters_of(&self, id: u64) -> Result<Vec<(&'static str, u64)>, BpfError> {
        let cpu = match self.cgroup_cpu.get(&id, 0) {
            Ok(per_cpu) => per_cpu.iter().fold(CgroupCpu::default(), |a, v| CgroupCpu {
                runtime_ns: a.runtime_ns + v.runtime_ns,
                runqueue_ns: a.runqueue_ns + v.runqueue_ns,
                run_periods: a.run_periods + v.run_periods,
            }),
            Err(aya::maps::MapError::KeyNotFound) => CgroupCpu::default(),
            Err(source) => {
                return Err(BpfError::Map {
                    name: "CGROUP_CPU",
                    source,
                });
            }
        };
        let crashes = match self.cgroup_crashes.get(&id, 0) {
            Ok(per_cpu) => per_cpu.iter().fold(CgroupCrashes::default(), |mut a, v| {
                for (sum, n) in a.by_signal.iter_mut().zip(v.by_signal) {
                    *sum += n;
                }
                a
            }),
            Err(aya::maps::MapError::KeyNotFound) => CgroupCrashes::default(),
            Err(source) => {
                return Err(BpfError::Map {
                    name: "CGROUP_CRASHES",
                    source,
                });
            }
        };
        let net = match self.cgroup_net.get(&id, 0) {
            Ok(per_cpu) => per_cpu.iter().fold(CgroupNet::default(), |mut a, v| {
                add_net(&mut a, v);
                a
            }),
            Err(aya::maps::MapError::KeyNotFound) => CgroupNet::default(),
            Err(source) => {
                return Err(BpfError::Map {
                    name: "CGROUP_NET",
                    source,
                });
            }
        };
        let oom_kills = match self.cgroup_oom.get(&id, 0) {
            Ok(per_cpu) => per_cpu.iter().sum(),
            Err(aya::maps::MapError::KeyNotFound) => 0,
            Err(source) => {
                return Err(BpfError::Map {
                    name: "CGROUP_OOM",
                    source,
                });
            }
        };
        Ok(counters::retired_counters(&cpu, &crashes, &net, oom_kills))
    }

    /// CPU, run-queue and run-period counters per cgroup id, summed over CPUs.
    pub fn cgroup_cpu(&self) -> Result<HashMap<u64, CgroupCpu>, BpfError> {
        let mut out = HashMap::new();
        read_per_cpu_hash(
            &self.cgroup_cpu,
            "CGROUP_CPU",
            |id, per_cpu: &[CgroupCpu]| {
                let mut total = CgroupCpu::default();
                for cpu in per_cpu {
                    total.runtime_ns += cpu.runtime_ns;
                    total.runqueue_ns += cpu.runqueue_ns;
                    total.run_periods += cpu.run_periods;
                }
                out.insert(id, total);
            },
        )?;
        Ok(out)
    }

    /// Crash counts per cgroup id, summed over CPUs.
    pub fn cgroup_crashes(&self) -> Result<HashMap<u64, CgroupCrashes>, BpfError> {
        let mut out = HashMap::new();
        read_per_cpu_hash(
            &self.cgroup_crashes,
            "CGROUP_CRASHES",
            |id, per_cpu: &[CgroupCrashes]| {
                let mut total = CgroupCrashes::default();
                for cpu in per_cpu {
                    for (sum, count) in total.by_signal.iter_mut().zip(cpu.by_signal) {
                        *sum += count;
                    }
                }
                out.insert(id, total);
            },
        )?;
        Ok(out)
    }

    /// OOM kills per cgroup id of the killed task, summed over CPUs. Ids of removed
    /// cgroups stay in the map, so their kills are still here.
    pub fn cgroup_oom_kills(&self) -> Result<HashMap<u64, u64>, BpfError> {
        let mut out = HashMap::new();
        read_per_cpu_hash(&self.cgroup_oom, "CGROUP_OOM", |id, per_cpu: &[u64]| {
            out.insert(id, per_cpu.iter().sum::<u64>());
        })?;
        Ok(out)
    }

    /// Kernel-side failure counts, summed over CPUs.
    pub fn kernel_errors(&self) -> Result<Vec<(KernelError, u64)>, BpfError> {
        KernelError::ALL
            .iter()
            .map(|&error| {
                let per_cpu =
                    self.errors
                        .get(&(error as u32), 0)
                        .map_err(|source| BpfError::Map {
                            name: "ERRORS",
                            source,
                        })?;
                Ok((error, per_cpu.iter().sum()))
            })
            .collect()
    }

    /// Every program of `PROGRAMS`: attached or not, and its run count and time
    /// (zero unless `sysctl kernel.bpf_stats_enabled=1`).
    pub fn program_stats(&self) -> Vec<ProgramStats> {
        PROGRAMS
            .iter()
            .map(|spec| {
                let attached = self.attached.contains(&spec.name);
                let info = attached
                    .then(|| self.ebpf.program(spec.name)?.info().ok())
                    .flatten();
                ProgramStats {
                    name: spec.name,
                    family: spec.family,
                    attached,
                    run_count: info
                        .as_ref()
                        .map_or(0, aya::programs::ProgramInfo::run_count),
                    run_time_ns: info.map_or(0, |i| {
                        u64::try_from(i.run_time().as_nanos()).unwrap_or(u64::MAX)
                    }),
                }
            })
            .collect()
    }

    /// One scrape-time pass over every task (and every descriptor table, when that
    /// iterator attached), summed per cgroup id.
    pub fn task_pass(&self) -> Result<HashMap<u64, CgroupTasks>, BpfError> {
        let link = |name| {
            self.iterators
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, link)| link)
        };
        let tasks = iter::run("task_pass", link("task_pass").ok_or(BpfError::NoTaskPass)?)?;
        let files = match link("file_pass") {
            Some(files) => Some(iter::run("file_pass", files)?),
            None => None,
        };
        Ok(iter::summarize(
            iter::task_records(&tasks),
            files.as_deref().map(iter::file_records),
        ))
    }

    /// One scrape-time pass over the memory and pids controllers' cgroups (one walk
    /// per hierarchy): their counters by cgroup id.
    pub fn cgroup_pass(&self) -> Result<CgroupPass, BpfError> {
        let records = self
            .cgroup_pass_records
            .as_ref()
            .ok_or(BpfError::NoCgroupPass)?;
        let mut pass = CgroupPass::default();
        for (_, link) in self.iterators.iter().filter(|(n, _)| *n == "cgroup_pass") {
            // Writes nothing to its output: the records are in the mapped array.
            iter::run("cgroup_pass", link)?;
            pass.add(records.records(), page_size());
        }
        Ok(pass)
    }

    /// Whether the program `name` is attached.
    pub fn is_attached(&self, name: &str) -> bool {
        self.attached.contains(&name)
    }
}

/// The kernel's page size, in which it keeps memory counters.
fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).unwrap_or(4096)
}

/// Visits every entry of a per-CPU hash: batched where the kernel supports it, one
/// key at a time otherwise.
fn read_per_cpu_hash<K: aya::Pod, V: aya::Pod>(
    map: &PerCpuHashMap<MapData, K, V>,
    name: &'static str,
    mut visit: impl FnMut(K, &[V]),
) -> Result<(), BpfError> {
    use std::os::fd::AsFd as _;

    use aya::maps::IterableMap as _;
    let map_err = |source| BpfError::Map { name, source };
    let nr_cpus = aya::util::nr_cpus().map_err(|(_, io_error)| {
        map_err(aya::maps::MapError::SyscallError(aya::sys::SyscallError {
            call: "nr_cpus",
            io_error,
        }))
    })?;
    match batch::for_each_per_cpu(map.map().fd().as_fd(), nr_cpus, &mut visit) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::Unsupported => {}
        Err(io_error) => {
            return Err(map_err(aya::maps::MapError::SyscallError(
                aya::sys::SyscallError {
                    call: "bpf_map_lookup_batch",
                    io_error,
                },
            )));
        }
    }
    for entry in map.iter() {
        let (key, per_cpu) = entry.map_err(map_err)?;
        visit(key, &per_cpu);
    }
    Ok(())
}

/// `total += v`, field by field (wrapping, like the kernel's own counters).
pub fn add_net(total: &mut CgroupNet, v: &CgroupNet) {
    total.rx_bytes = total.rx_bytes.wrapping_add(v.rx_bytes);
    total.rx_packets = total.rx_packets.wrapping_add(v.rx_packets);
    for (t, x) in total.tx_bytes.iter_mut().zip(v.tx_bytes) {
        *t = t.wrapping_add(x);
    }
    for (t, x) in total.tx_packets.iter_mut().zip(v.tx_packets) {
        *t = t.wrapping_add(x);
    }
}

/// Maps keyed by cgroup v2 id: their entries of a retired cgroup are deleted.
const PER_CGROUP_MAPS: &[&str] = &[
    "CGROUP_CPU",
    "CGROUP_CRASHES",
    "CGROUP_NET",
    "CGROUP_OOM",
    "CGROUP_EXCLUDED",
];

fn map_fd(ebpf: &Ebpf, name: &'static str) -> Result<std::os::fd::OwnedFd, BpfError> {
    use std::os::fd::AsFd as _;
    let data = match ebpf.map(name).ok_or(BpfError::MissingMap { name })? {
        aya::maps::Map::HashMap(d)
        | aya::maps::Map::PerCpuHashMap(d)
        | aya::maps::Map::LruHashMap(d)
        | aya::maps::Map::PerCpuLruHashMap(d)
        | aya::maps::Map::Array(d) => d,
        _ => return Err(BpfError::MissingMap { name }),
    };
    data.fd()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|source| BpfError::Raw { name, source })
}

fn take_map<T>(ebpf: &mut Ebpf, name: &'static str) -> Result<T, BpfError>
where
    T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>,
{
    let map = ebpf.take_map(name).ok_or(BpfError::MissingMap { name })?;
    T::try_from(map).map_err(|source| BpfError::Map { name, source })
}
