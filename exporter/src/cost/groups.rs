//! Metric groups: cAdvisor's names (`container.MetricKind`) plus kadvisor's own,
//! the families and kernel program families each owns, and which are on.
use std::collections::HashSet;

/// One metric group: its name, and the families and kernel program families it owns.
#[derive(Debug, Clone, Copy)]
pub struct GroupSpec {
    pub name: &'static str,
    /// Other names accepted for it.
    pub aliases: &'static [&'static str],
    /// `false`: a cAdvisor group kadvisor has no families for (accepted, a no-op).
    pub implemented: bool,
    /// Collected without `--enable_metrics` (the lean default: what the kubelet
    /// serves, plus kadvisor's own families at no more than 3 series per row).
    pub default_on: bool,
    /// cAdvisor's group (`true`) or kadvisor's own.
    pub cadvisor: bool,
    /// The `family` values of `bpf::PROGRAMS` this group needs. A program family
    /// several groups need is attached when any of them is on.
    pub programs: &'static [&'static str],
    /// The metric families it writes.
    pub families: &'static [&'static str],
}

const fn group(
    name: &'static str,
    programs: &'static [&'static str],
    families: &'static [&'static str],
) -> GroupSpec {
    GroupSpec {
        name,
        aliases: &[],
        implemented: true,
        default_on: true,
        cadvisor: true,
        programs,
        families,
    }
}

const fn no_op(name: &'static str) -> GroupSpec {
    GroupSpec {
        name,
        aliases: &[],
        implemented: false,
        default_on: false,
        cadvisor: true,
        programs: &[],
        families: &[],
    }
}

/// Every group name kadvisor accepts. Families outside every group (start time, last
/// seen, the scrape-error gauges, `machine_*`, `kadvisor_*`) are always written, as
/// cAdvisor writes them whatever its flags.
pub const GROUPS: &[GroupSpec] = &[
    // `cpu` needs `sched_process_exit` (program family `cpu`): a removed row's final
    // CPU time in its grace period. Disabling cpu also turns off `sched` (its run time
    // is the same counter).
    group(
        "cpu",
        &["cpu"],
        &[
            "container_cpu_usage_seconds_total",
            "container_cpu_user_seconds_total",
            "container_cpu_system_seconds_total",
            "container_cpu_cfs_periods_total",
            "container_cpu_cfs_throttled_periods_total",
            "container_cpu_cfs_throttled_seconds_total",
            "container_spec_cpu_period",
            "container_spec_cpu_quota",
            "container_spec_cpu_shares",
        ],
    ),
    // Opt-in, as in cAdvisor and the kubelet.
    GroupSpec {
        aliases: &["schedstat"],
        default_on: false,
        // Run-queue delay and periods: live tasks' from the task pass (`tasks`),
        // exited tasks' from `sched_process_exit` (`cpu`).
        ..group(
            "sched",
            &["cpu", "tasks"],
            &[
                "container_cpu_schedstat_run_seconds_total",
                "container_cpu_schedstat_runqueue_seconds_total",
                "container_cpu_schedstat_run_periods_total",
            ],
        )
    },
    group(
        "memory",
        // The cgroup pass (page counters); the rest is read from files.
        &["cgroup_pass"],
        &[
            "container_memory_usage_bytes",
            "container_memory_max_usage_bytes",
            "container_memory_working_set_bytes",
            "container_memory_rss",
            "container_memory_cache",
            "container_memory_mapped_file",
            "container_memory_swap",
            "container_memory_kernel_usage",
            "container_memory_failcnt",
            "container_memory_total_active_file_bytes",
            "container_memory_total_inactive_file_bytes",
            "container_memory_failures_total",
            "container_spec_memory_limit_bytes",
            "container_spec_memory_swap_limit_bytes",
            "container_spec_memory_reservation_limit_bytes",
        ],
    ),
    // cAdvisor v0.60's additions, opt-in here (cAdvisor counts them in cpu and
    // memory): CFS burst from the cpu.stat already read, and the v2 reclaim detail
    // (memory.stat fields; memory.events read only when this group is on).
    GroupSpec {
        default_on: false,
        ..group(
            "cpu_burst",
            &[],
            &[
                "container_cpu_cfs_burst_periods_total",
                "container_cpu_cfs_burst_seconds_total",
            ],
        )
    },
    GroupSpec {
        default_on: false,
        ..group(
            "memory_reclaim",
            &[],
            &[
                "container_memory_events_high_total",
                "container_memory_events_max_total",
                "container_memory_file_dirty_bytes",
                "container_memory_file_writeback_bytes",
                "container_memory_pgscan_total",
                "container_memory_pgsteal_total",
                "container_memory_workingset_refault_anon_total",
                "container_memory_workingset_refault_file_total",
            ],
        )
    },
    group("oom_event", &["oom"], &["container_oom_events_total"]),
    // Opt-in: the kubelet serves pressure only behind its KubeletPSI feature gate.
    GroupSpec {
        default_on: false,
        ..group(
            "pressure",
            &[],
            &[
                "container_pressure_cpu_stalled_seconds_total",
                "container_pressure_cpu_waiting_seconds_total",
                "container_pressure_memory_stalled_seconds_total",
                "container_pressure_memory_waiting_seconds_total",
                "container_pressure_io_stalled_seconds_total",
                "container_pressure_io_waiting_seconds_total",
            ],
        )
    },
    group(
        // The task pass (processes, open-files limit), the descriptor pass and the
        // cgroup pass (pids.current).
        "process",
        &["tasks", "files", "cgroup_pass"],
        &[
            "container_processes",
            "container_threads",
            "container_threads_max",
            "container_file_descriptors",
            "container_sockets",
            "container_ulimits_soft",
        ],
    ),
    group(
        "disk",
        &[],
        &[
            "container_fs_usage_bytes",
            "container_fs_limit_bytes",
            "container_fs_inodes_total",
            "container_fs_inodes_free",
        ],
    ),
    group(
        "diskIO",
        // The cgroup pass (which cgroups have a block group); the rest is read from
        // files.
        &["cgroup_pass"],
        &[
            "container_fs_reads_bytes_total",
            "container_fs_writes_bytes_total",
            "container_fs_reads_total",
            "container_fs_writes_total",
            "container_blkio_device_usage_total",
            // The root row's, from /proc/diskstats (collect/diskstats.rs).
            "container_fs_reads_merged_total",
            "container_fs_sector_reads_total",
            "container_fs_read_seconds_total",
            "container_fs_writes_merged_total",
            "container_fs_sector_writes_total",
            "container_fs_write_seconds_total",
            "container_fs_io_current",
            "container_fs_io_time_seconds_total",
            "container_fs_io_time_weighted_seconds_total",
        ],
    ),
    // Interface counters of the pods' network namespaces (cAdvisor's). Disabling it
    // also turns off `socket`: both are network data.
    group(
        "network",
        &[],
        &[
            "container_network_receive_bytes_total",
            "container_network_receive_packets_total",
            "container_network_receive_packets_dropped_total",
            "container_network_receive_errors_total",
            "container_network_transmit_bytes_total",
            "container_network_transmit_packets_total",
            "container_network_transmit_packets_dropped_total",
            "container_network_transmit_errors_total",
        ],
    ),
    // kadvisor's own: per-container socket traffic (the cgroup_skb programs, a cost
    // on every packet). Opt-in; when on, bytes received and sent (2 series per row),
    // sent bytes split by destination class only when a --pod_cidr/--service_cidr/
    // --node_cidr is given.
    GroupSpec {
        cadvisor: false,
        default_on: false,
        aliases: &["container_network", "egress"],
        ..group(
            "socket",
            &["socket"],
            &[
                "container_socket_receive_bytes_total",
                "container_socket_transmit_bytes_total",
            ],
        )
    },
    // Opt-in: packet counts beside the bytes (2 more series per row). Needs `socket`.
    GroupSpec {
        cadvisor: false,
        default_on: false,
        ..group(
            "socket_packets",
            &[],
            &[
                "container_socket_receive_packets_total",
                "container_socket_transmit_packets_total",
            ],
        )
    },
    // One crash counter per row by default (1 series).
    GroupSpec {
        cadvisor: false,
        ..group("crashes", &["crashes"], &["container_crashes_total"])
    },
    // Opt-in: container_crashes_total split by `signal` (5 series per row instead of
    // 1). Needs `crashes`; writes no family of its own.
    GroupSpec {
        cadvisor: false,
        default_on: false,
        ..group("crash_signals", &[], &[])
    },
    no_op("cpuLoad"),
    no_op("percpu"),
    no_op("memory_numa"),
    no_op("cpuset"),
    no_op("advtcp"),
    no_op("tcp"),
    no_op("udp"),
    no_op("hugetlb"),
    no_op("referenced_memory"),
    no_op("resctrl"),
    no_op("cpu_topology"),
    no_op("app"),
    no_op("perf_event"),
];

/// A group name that is not in `GROUPS`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown metric group {name:?} (valid: {valid})")]
pub struct UnknownGroup {
    pub name: String,
    pub valid: String,
}

/// The group spec called `name` (or an alias of it).
pub fn find_group(name: &str) -> Result<&'static GroupSpec, UnknownGroup> {
    GROUPS
        .iter()
        .find(|g| g.name == name || g.aliases.contains(&name))
        .ok_or_else(|| UnknownGroup {
            name: name.to_owned(),
            valid: GROUPS.iter().map(|g| g.name).collect::<Vec<_>>().join(","),
        })
}

/// The group that writes `family`, if any.
pub fn group_of_family(family: &str) -> Option<&'static GroupSpec> {
    GROUPS.iter().find(|g| g.families.contains(&family))
}

/// Which groups are collected, and (with a profile) which of their families.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricGroups {
    enabled: HashSet<&'static str>,
    /// A profile's families: only these are written (`None`: every family of the
    /// enabled groups). kadvisor's self-metrics are always written.
    families: Option<HashSet<&'static str>>,
}

impl Default for MetricGroups {
    fn default() -> Self {
        Self::with(GROUPS.iter().filter(|g| g.default_on).map(|g| g.name))
    }
}

impl MetricGroups {
    /// Every group, opt-in ones included.
    pub fn all() -> Self {
        Self::with(GROUPS.iter().map(|g| g.name))
    }

    fn with(names: impl Iterator<Item = &'static str>) -> Self {
        Self {
            enabled: names.collect(),
            families: None,
        }
        .with_dependencies()
    }

    /// `sched` needs `cpu` (its run time is cpu's counter), `socket` needs `network`,
    /// `socket_packets` needs `socket`, `crash_signals` needs `crashes`.
    fn with_dependencies(mut self) -> Self {
        for (group, needs) in [
            ("sched", "cpu"),
            ("socket", "network"),
            ("socket_packets", "socket"),
            ("crash_signals", "crashes"),
        ] {
            if !self.enabled.contains(needs) {
                self.enabled.remove(group);
            }
        }
        self
    }

    /// cAdvisor's semantics: `enable`, when not empty, is the exact set; otherwise
    /// the default groups but `disable`.
    pub fn from_lists(enable: &[String], disable: &[String]) -> Result<Self, UnknownGroup> {
        let mut enabled: HashSet<&'static str> = if enable.is_empty() {
            Self::default().enabled
        } else {
            HashSet::new()
        };
        for name in enable {
            enabled.insert(find_group(name)?.name);
        }
        for name in disable {
            let g = find_group(name)?;
            if enable.is_empty() {
                enabled.remove(g.name);
            }
        }
        Ok(Self {
            enabled,
            families: None,
        }
        .with_dependencies())
    }

    /// A profile's groups: those owning a family of its list (`None`: every cAdvisor
    /// group), less `disable`. Groups without a listed family are off, so their
    /// programs are not attached and their files not read.
    pub fn for_profile(
        families: Option<&[&'static str]>,
        disable: &[String],
    ) -> Result<Self, UnknownGroup> {
        let mut enabled: HashSet<&'static str> = match families {
            None => GROUPS
                .iter()
                .filter(|g| g.cadvisor && g.implemented)
                .map(|g| g.name)
                .collect(),
            Some(list) => GROUPS
                .iter()
                .filter(|g| g.families.iter().any(|f| list.contains(f)))
                .map(|g| g.name)
                .collect(),
        };
        for name in disable {
            enabled.remove(find_group(name)?.name);
        }
        Ok(Self {
            enabled,
            families: families.map(|list| list.iter().copied().collect()),
        }
        .with_dependencies())
    }

    /// Whether the group `name` (canonical name) is collected.
    pub fn on(&self, name: &str) -> bool {
        self.enabled.contains(name)
    }

    /// Whether programs of the `bpf::PROGRAMS` family `family` are to be attached:
    /// when any group needing them is on (a family no group claims always is).
    pub fn program_family_on(&self, family: &str) -> bool {
        let mut owners = GROUPS.iter().filter(|g| g.programs.contains(&family));
        owners.clone().next().is_none() || owners.any(|g| self.on(g.name))
    }

    /// Whether the family `name` is written (families outside every group always
    /// are, unless a profile leaves them out).
    pub fn family_on(&self, name: &str) -> bool {
        self.families.as_ref().is_none_or(|f| f.contains(name))
            && group_of_family(name).is_none_or(|g| self.on(g.name))
    }

    /// Whether no family needs leaving out: no profile list and every group on
    /// (shaping then skips its filter; on structured samples the filter is cheap).
    pub fn is_all(&self) -> bool {
        self.families.is_none() && GROUPS.iter().all(|g| self.on(g.name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_lean_and_opt_in_groups_need_their_base() {
        let g = MetricGroups::default();
        for on in [
            "cpu",
            "memory",
            "oom_event",
            "process",
            "disk",
            "diskIO",
            "network",
        ] {
            assert!(g.on(on), "{on}: the kubelet serves it");
        }
        for off in [
            "sched",
            "pressure",
            "socket",
            "socket_packets",
            "crash_signals",
        ] {
            assert!(!g.on(off), "{off} is opt-in");
        }
        assert!(g.on("crashes"), "one series per row");
        assert!(!g.program_family_on("socket"));
        assert!(g.program_family_on("tasks") && g.program_family_on("files"));
        let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
        let g = MetricGroups::from_lists(&s(&["cpu", "crash_signals"]), &[]).unwrap();
        assert!(!g.on("crash_signals"), "needs crashes");
        let g = MetricGroups::from_lists(&s(&["network", "socket", "socket_packets"]), &[]);
        assert!(g.unwrap().on("socket_packets"));
    }

    #[test]
    fn a_profile_turns_off_every_group_it_reads_nothing_of() {
        let p: crate::profile::Profile = "kube-prometheus".parse().unwrap();
        let g = MetricGroups::for_profile(p.families.as_deref(), &[]).unwrap();
        for on in ["cpu", "memory", "diskIO", "network"] {
            assert!(g.on(on), "{on}");
        }
        for off in [
            "sched",
            "oom_event",
            "pressure",
            "process",
            "disk",
            "socket",
            "crashes",
        ] {
            assert!(!g.on(off), "{off}");
        }
        for program in ["tasks", "files", "oom", "socket", "crashes"] {
            assert!(!g.program_family_on(program), "{program}");
        }
        assert!(g.program_family_on("cpu"), "removed rows' final CPU");
        assert!(g.family_on("container_memory_working_set_bytes"));
        assert!(!g.family_on("container_memory_usage_bytes"));
        assert!(!g.family_on("container_last_seen"));
        assert!(
            !g.is_all(),
            "the post-pass drops the rest of memory's families"
        );
        let all = MetricGroups::for_profile(None, &["network".to_owned()]).unwrap();
        assert!(all.on("sched") && all.on("pressure") && !all.on("network"));
        assert!(!all.on("crashes") && !all.on("socket"), "kadvisor's own");
    }

    #[test]
    fn groups_follow_cadvisor_semantics() {
        let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
        let g = MetricGroups::from_lists(&[], &s(&["network", "tcp", "schedstat"])).unwrap();
        assert!(!g.on("network") && !g.on("socket") && !g.on("sched"));
        assert!(g.on("cpu") && g.on("memory"));
        assert!(!g.program_family_on("socket"));
        assert!(g.program_family_on("tasks"), "process is still on");
        assert!(g.program_family_on("cpu"));
        assert!(!g.family_on("container_network_receive_bytes_total"));
        let g = MetricGroups::from_lists(&s(&["cpu", "sched"]), &[]).unwrap();
        assert!(g.program_family_on("tasks") && !g.program_family_on("files"));
        assert!(g.program_family_on("no group claims it"));
        assert!(g.family_on("container_last_seen"));
        let g = MetricGroups::from_lists(&s(&["cpu", "memory"]), &s(&["cpu"])).unwrap();
        assert!(g.on("cpu") && g.on("memory") && !g.on("process") && !g.on("crashes"));
        let g = MetricGroups::from_lists(&[], &s(&["cpu"])).unwrap();
        assert!(!g.on("sched") && !g.program_family_on("cpu"));
        let e = MetricGroups::from_lists(&[], &s(&["cpuu"])).unwrap_err();
        assert!(e.to_string().contains("\"cpuu\""), "{e}");
        assert!(e.to_string().contains("cpu,sched,memory"), "{e}");
        for g in GROUPS {
            for f in g.families {
                assert_eq!(group_of_family(f).unwrap().name, g.name, "{f} twice");
            }
        }
    }
}
