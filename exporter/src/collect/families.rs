//! Stage 3, families: one static table of every collector — the metric groups it
//! serves, which group levels decide its rows, what it reads, and the function that
//! computes its families. Every collector has the same signature; a disabled
//! group's collector is not called, so its files and maps are not read.
use super::{
    ScrapeContext, blkio, cpu, cpu_stat, crashes, lifetime, memory, net, oom, pressure, process,
    samples::SampleSet,
};

/// What a collector reads (see `sources`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Per-cgroup counters kept by the kernel programs.
    KernelMaps,
    /// The row's own cgroupfs files.
    CgroupFiles,
    /// The row's tasks (`cgroup.procs`, then procfs; issue 14: a task iterator).
    Processes,
    /// One `/proc/<pid>/net/dev` per network namespace.
    NetworkNamespaces,
}

/// Every collector's signature.
pub type Collect = fn(&ScrapeContext<'_>, &mut SampleSet);

/// One collector.
#[derive(Debug, Clone, Copy)]
pub struct CollectorSpec {
    pub name: &'static str,
    /// Called when any of these groups is on (empty: always).
    pub groups: &'static [&'static str],
    /// Collected from the pod-level rows (`rows::pod_level_rows`) when every one of
    /// these groups is aggregated above container level (empty: always every row).
    pub levels: &'static [&'static str],
    pub sources: &'static [Source],
    pub collect: Collect,
}

const fn spec(
    name: &'static str,
    groups: &'static [&'static str],
    sources: &'static [Source],
    collect: Collect,
) -> CollectorSpec {
    CollectorSpec {
        name,
        groups,
        levels: groups,
        sources,
        collect,
    }
}

/// In the order their families are written.
pub const COLLECTORS: &[CollectorSpec] = &[
    spec("cpu", &["cpu"], &[Source::KernelMaps], cpu::collect),
    spec(
        "cpu_stat",
        &["cpu"],
        &[Source::CgroupFiles],
        cpu_stat::collect,
    ),
    spec(
        "crashes",
        &["crashes"],
        &[Source::KernelMaps],
        crashes::collect,
    ),
    spec(
        "process",
        &["process"],
        &[Source::Processes],
        process::collect,
    ),
    spec(
        "pressure",
        &["pressure"],
        &[Source::CgroupFiles],
        pressure::collect,
    ),
    spec("lifetime", &[], &[Source::CgroupFiles], lifetime::collect),
    // Interfaces and kadvisor's socket counters share one collector.
    CollectorSpec {
        groups: &["network"],
        levels: &["network", "socket"],
        ..spec(
            "network",
            &["network"],
            &[Source::KernelMaps, Source::NetworkNamespaces],
            net::collect,
        )
    },
    // One collector for both groups (the families of a group that is off are left
    // out by shaping).
    spec(
        "blkio",
        &["disk", "diskIO"],
        &[Source::CgroupFiles],
        blkio::collect,
    ),
    spec(
        "memory",
        &["memory"],
        &[Source::CgroupFiles],
        memory::collect,
    ),
    spec("oom", &["oom_event"], &[Source::KernelMaps], oom::collect),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cost::{GROUPS, find_group};

    #[test]
    fn every_group_with_families_has_a_collector_and_every_name_is_a_group() {
        for spec in COLLECTORS {
            for group in spec.groups.iter().chain(spec.levels) {
                assert!(find_group(group).is_ok(), "{}: {group}", spec.name);
            }
        }
        for group in GROUPS.iter().filter(|g| g.implemented) {
            // `sched` families come from the cpu collector, `socket` and
            // `socket_packets` from network, `crash_signals` splits crashes' series.
            let served = COLLECTORS.iter().any(|c| c.groups.contains(&group.name))
                || [
                    "sched",
                    "socket",
                    "socket_packets",
                    "crash_signals",
                    "cpu_burst",
                    "memory_reclaim",
                ]
                .contains(&group.name);
            assert!(served, "group {} has no collector", group.name);
        }
        let mut names: Vec<_> = COLLECTORS.iter().map(|c| c.name).collect();
        names.dedup();
        assert_eq!(names.len(), COLLECTORS.len());
    }
}
