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
    /// cAdvisor's group (`true`) or kadvisor's own.
    pub cadvisor: bool,
    /// The `family` values of `bpf::PROGRAMS` that only this group needs.
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
        cadvisor: true,
        programs: &[],
        families: &[],
    }
}

/// Every group name kadvisor accepts. Families outside every group (start time, last
/// seen, the scrape-error gauges, `machine_*`, `kadvisor_*`) are always written, as
/// cAdvisor writes them whatever its flags.
pub const GROUPS: &[GroupSpec] = &[
    // The kernel's CPU core (`sched_stat_runtime`) belongs to `cpu`: disabling cpu
    // detaches it, which also turns off `sched` (its run time is the same counter).
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
    GroupSpec {
        aliases: &["schedstat"],
        ..group(
            "sched",
            &["schedstat"],
            &[
                "container_cpu_schedstat_run_seconds_total",
                "container_cpu_schedstat_runqueue_seconds_total",
                "container_cpu_schedstat_run_periods_total",
            ],
        )
    },
    group(
        "memory",
        &[],
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
    group("oom_event", &["oom"], &["container_oom_events_total"]),
    group(
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
    ),
    group(
        "process",
        &[],
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
        &[],
        &[
            "container_fs_reads_bytes_total",
            "container_fs_writes_bytes_total",
            "container_fs_reads_total",
            "container_fs_writes_total",
            "container_blkio_device_usage_total",
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
    // kadvisor's own: per-container socket traffic and egress destination classes
    // (the cgroup_skb programs).
    GroupSpec {
        cadvisor: false,
        aliases: &["container_network", "egress"],
        ..group(
            "socket",
            &["socket"],
            &[
                "container_socket_receive_bytes_total",
                "container_socket_receive_packets_total",
                "container_socket_transmit_bytes_total",
                "container_socket_transmit_packets_total",
            ],
        )
    },
    GroupSpec {
        cadvisor: false,
        ..group("crashes", &["crashes"], &["container_crashes_total"])
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

/// Which groups are collected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricGroups {
    enabled: HashSet<&'static str>,
}

impl Default for MetricGroups {
    fn default() -> Self {
        Self::all()
    }
}

impl MetricGroups {
    /// Every group (kadvisor's default: its kernel groups cost little).
    pub fn all() -> Self {
        Self {
            enabled: GROUPS.iter().map(|g| g.name).collect(),
        }
    }

    /// cAdvisor's semantics: `enable`, when not empty, is the exact set; otherwise
    /// every group but `disable`. Then the dependencies: `sched` needs `cpu` (its
    /// run time is cpu's counter), `socket` needs `network`.
    pub fn from_lists(enable: &[String], disable: &[String]) -> Result<Self, UnknownGroup> {
        let mut enabled: HashSet<&'static str> = if enable.is_empty() {
            GROUPS.iter().map(|g| g.name).collect()
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
        if !enabled.contains("cpu") {
            enabled.remove("sched");
        }
        if !enabled.contains("network") {
            enabled.remove("socket");
        }
        Ok(Self { enabled })
    }

    /// Whether the group `name` (canonical name) is collected.
    pub fn on(&self, name: &str) -> bool {
        self.enabled.contains(name)
    }

    /// Whether programs of the `bpf::PROGRAMS` family `family` are to be attached.
    pub fn program_family_on(&self, family: &str) -> bool {
        GROUPS
            .iter()
            .filter(|g| g.programs.contains(&family))
            .all(|g| self.on(g.name))
    }

    /// Whether the family `name` is written (families outside every group always are).
    pub fn family_on(&self, name: &str) -> bool {
        group_of_family(name).is_none_or(|g| self.on(g.name))
    }

    /// Whether every group is on (no filtering pass needed).
    pub fn is_all(&self) -> bool {
        GROUPS.iter().all(|g| self.on(g.name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_follow_cadvisor_semantics() {
        let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
        let g = MetricGroups::from_lists(&[], &s(&["network", "tcp", "schedstat"])).unwrap();
        assert!(!g.on("network") && !g.on("socket") && !g.on("sched"));
        assert!(g.on("cpu") && g.on("memory"));
        assert!(!g.program_family_on("socket"));
        assert!(!g.program_family_on("schedstat"));
        assert!(g.program_family_on("cpu"));
        assert!(!g.family_on("container_network_receive_bytes_total"));
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
