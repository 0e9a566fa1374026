//! kadvisor's own families (`kadvisor_*`): rows, discovery, retirement, kernel
//! programs and maps, runtime cache. Written after shaping: never aggregated or
//! budgeted.
use super::{
    Collector, ScrapeContext, cpu,
    samples::{MetricType, SampleSet},
};

/// Discovery's and the sweeper's counts, taken under their locks for this scrape.
#[derive(Debug, Clone, Copy)]
pub(super) struct DiscoveryFigures {
    pub walks: u64,
    pub events: u64,
    pub retired_count: u64,
    pub unknown_count: u64,
}

impl Collector {
    pub(super) fn write_discovery_self_metrics(
        &self,
        ctx: &ScrapeContext<'_>,
        out: &mut SampleSet,
        figures: &DiscoveryFigures,
        live_rows: usize,
        removed_rows: usize,
        retired_paths_count: usize,
    ) {
        let rows = "kadvisor_rows";
        out.family(
            rows,
            "Exported cgroup rows: live, and removed but inside the grace period (--deleted_grace_seconds).",
            MetricType::Gauge,
        );
        out.sample(rows, None, &[("state", "live")], live_rows as f64);
        out.sample(rows, None, &[("state", "removed")], removed_rows as f64);
        let walks = "kadvisor_cgroup_walks_total";
        out.family(
            walks,
            "Full walks of the cgroup tree (startup and slow reconciliation; new cgroups are found by events).",
            MetricType::Counter,
        );
        out.sample(walks, None, &[], figures.walks as f64);
        let events = "kadvisor_cgroup_events_total";
        out.family(
            events,
            "cgroup mkdir/rmdir events applied.",
            MetricType::Counter,
        );
        out.sample(events, None, &[], figures.events as f64);
        let retired = "kadvisor_retired_cgroups_total";
        out.family(
            retired,
            "Removed cgroups whose map entries were reclaimed: known=true after their grace period (counters folded into the parent); known=false for ids never seen in the tree (created and removed between two events; counters folded into the root).",
            MetricType::Counter,
        );
        out.sample(
            retired,
            None,
            &[("known", "true")],
            figures.retired_count as f64,
        );
        out.sample(
            retired,
            None,
            &[("known", "false")],
            figures.unknown_count as f64,
        );
        let retired_paths = "kadvisor_retired_paths";
        out.family(
            retired_paths,
            "Paths holding counters of retired descendants.",
            MetricType::Gauge,
        );
        out.sample(retired_paths, None, &[], retired_paths_count as f64);
        match self.kernel.map_entries() {
            Ok(entries) => {
                let name = "kadvisor_map_entries";
                out.family(
                    name,
                    "Entries in each per-cgroup kernel map (live and grace-period cgroups).",
                    MetricType::Gauge,
                );
                for (map, count) in entries {
                    out.sample(name, None, &[("map", map)], count as f64);
                }
            }
            Err(e) => ctx.failed("map_entries", &e),
        }
        if let Some(metadata) = &self.metadata {
            let (containers, pods, misses) = metadata.cached();
            let name = "kadvisor_runtime_cache_entries";
            out.family(
                name,
                "Runtime metadata cached, by kind (misses: ids the runtimes did not know, retried with backoff).",
                MetricType::Gauge,
            );
            out.sample(name, None, &[("kind", "container")], containers as f64);
            out.sample(name, None, &[("kind", "pod")], pods as f64);
            out.sample(name, None, &[("kind", "miss")], misses as f64);
        }
    }

    pub(super) fn write_kernel_self_metrics(
        &self,
        ctx: &ScrapeContext<'_>,
        out: &mut SampleSet,
        tracked_cgroups: usize,
    ) {
        match self.kernel.kernel_errors() {
            Ok(errors) => {
                let name = "kadvisor_kernel_errors_total";
                out.family(
                    name,
                    "Failures inside the eBPF programs, by reason (map_full: a cgroup could not be tracked; task_read: a task's cgroup could not be read).",
                    MetricType::Counter,
                );
                for (error, count) in errors {
                    if error.reason() == "map_full" {
                        note_map_full(count);
                    }
                    out.sample(name, None, &[("reason", error.reason())], count as f64);
                }
            }
            Err(e) => ctx.failed("kernel_errors", &e),
        }
        let stats = self.kernel.program_stats();
        let attached = "kadvisor_bpf_program_attached";
        out.family(
            attached,
            "1 when the eBPF program is attached; 0 when this kernel lacks its hook (its family is left out).",
            MetricType::Gauge,
        );
        for s in &stats {
            let value = if s.attached { 1.0 } else { 0.0 };
            out.sample(
                attached,
                None,
                &[("family", s.family), ("program", s.name)],
                value,
            );
        }
        let runs = "kadvisor_bpf_program_runs_total";
        out.family(
            runs,
            "Times each eBPF program ran (counted only while sysctl kernel.bpf_stats_enabled=1).",
            MetricType::Counter,
        );
        for s in stats.iter().filter(|s| s.attached) {
            out.sample(runs, None, &[("program", s.name)], s.run_count as f64);
        }
        let time = "kadvisor_bpf_program_run_seconds_total";
        out.family(
            time,
            "CPU time spent in each eBPF program (counted only while sysctl kernel.bpf_stats_enabled=1).",
            MetricType::Counter,
        );
        for s in stats.iter().filter(|s| s.attached) {
            out.sample(
                time,
                None,
                &[("program", s.name)],
                cpu::ns_to_seconds(s.run_time_ns),
            );
        }
        let files = crate::cgroup::files::held_stats();
        use crate::cgroup::spec_files;
        let name = "kadvisor_cgroup_files_open";
        out.family(
            name,
            "cgroupfs files held open between scrapes (each re-read with one pread), and the most that may be (a share of RLIMIT_NOFILE).",
            MetricType::Gauge,
        );
        out.sample(name, None, &[("state", "open")], files.open as f64);
        out.sample(name, None, &[("state", "limit")], files.budget as f64);
        let name = "kadvisor_cgroup_file_opens_total";
        out.family(
            name,
            "cgroupfs files opened again: over_limit (read by open/read/close because the open-file limit was reached), reopened (the held file's cgroup was removed or re-created).",
            MetricType::Counter,
        );
        out.sample(
            name,
            None,
            &[("reason", "over_limit")],
            files.over_budget as f64,
        );
        out.sample(name, None, &[("reason", "reopened")], files.reopened as f64);
        let name = "kadvisor_cgroup_spec_dirs_watched";
        out.family(
            name,
            "Cgroup directories whose spec files (limits, quotas, weights) are kept between scrapes under an inotify watch, re-read only after a change.",
            MetricType::Gauge,
        );
        out.sample(name, None, &[], spec_files::watched_dirs() as f64);
        let name = "kadvisor_cgroup_spec_reads_unwatched_total";
        out.family(
            name,
            "Spec files read at a scrape because their directory could not be watched (fs.inotify.max_user_watches reached): correct, but not kept.",
            MetricType::Counter,
        );
        out.sample(name, None, &[], spec_files::unwatched_reads() as f64);
        let tracked = "kadvisor_tracked_cgroups";
        out.family(
            tracked,
            "Cgroup ids whose path kadvisor holds (live, or removed with counters still in the kernel maps).",
            MetricType::Gauge,
        );
        out.sample(tracked, None, &[], tracked_cgroups as f64);
    }
}

/// Logs when the kernel's map-full count grows: new cgroups go untracked (their time
/// lands in an ancestor) until entries are reclaimed or `--max_cgroups` is raised.
/// `kadvisor_heap_in_use_bytes` (glibc builds): tells a leak (this grows) from
/// memory the allocator keeps free (RSS grows, this does not).
pub(super) fn write_heap_self_metric(out: &mut SampleSet) {
    let Some(bytes) = crate::heap::in_use_bytes() else {
        return;
    };
    let name = "kadvisor_heap_in_use_bytes";
    out.family(
        name,
        "Heap bytes kadvisor has allocated and not freed, at this scrape (glibc mallinfo2: in use in all arenas plus mmapped blocks); the rest of its anonymous RSS is free memory the allocator keeps.",
        MetricType::Gauge,
    );
    #[expect(clippy::cast_precision_loss, reason = "exact in f64 below 2^53 bytes")]
    out.sample(name, None, &[], bytes as f64);
}

fn note_map_full(total: u64) {
    static SEEN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let before = SEEN.swap(total, std::sync::atomic::Ordering::Relaxed);
    if total > before {
        tracing::warn!(
            new = total - before,
            total,
            "kernel maps full: cgroups are not tracked (see kadvisor_kernel_errors_total{{reason=\"map_full\"}}; raise --max_cgroups)"
        );
    }
}
