//! CPU families from the scheduler hooks' per-cgroup counters, summed up the tree at
//! scrape time so that a parent includes its descendants, like the kernel's own
//! `cpu.stat`:
//! - `container_cpu_usage_seconds_total{cpu="total"}` (sched_stat_runtime),
//! - `container_cpu_schedstat_run_seconds_total` (the same runtime: cAdvisor sums
//!   the first field of /proc/<pid>/schedstat, the same `sum_exec_runtime`),
//! - `container_cpu_schedstat_runqueue_seconds_total` and
//!   `container_cpu_schedstat_run_periods_total` (sched_wakeup/sched_switch), served
//!   only when all their hooks are attached.
use std::collections::HashMap;

use kadvisor_common::CgroupCpu;

use super::{
    Row, ScrapeContext,
    samples::{MetricType, SampleSet},
};
use crate::cgroup::{
    CgroupError, CgroupTree, Controller, ControllerDir, Hierarchies, PathMemory, ancestors,
    files::{keyed_value, read_optional, read_value},
};

/// CPU nanoseconds each cgroup had used before the programs were attached, by
/// cgroup id. The kernel hook only counts from attach; adding this makes a row equal
/// the kernel's lifetime `cpu.stat` after a kadvisor restart too, as cAdvisor's
/// would. A cgroup created later (new id) has no baseline: the hook saw all of it.
pub type StartBaselines = HashMap<u64, u64>;

/// Reads every live cgroup's hierarchical CPU usage: v2 `cpu.stat usage_usec` (also
/// present on hybrid hosts), else v1 `cpuacct.usage`. Call before attaching.
pub fn read_start_baselines(
    tree: &CgroupTree,
    hierarchies: &Hierarchies,
) -> Result<StartBaselines, CgroupError> {
    let mut baselines = HashMap::new();
    for cgroup in tree.walk()? {
        let v2 = hierarchies
            .v2_dir(&cgroup.path)
            .map(|dir| dir.join("cpu.stat"));
        let usage_ns = match v2 {
            Some(file) => read_optional(&file)?
                .and_then(|text| keyed_value(&text, "usage_usec"))
                .map(|usec| usec * 1000),
            None => None,
        };
        let usage_ns = match (
            usage_ns,
            hierarchies.controller_dir(Controller::Cpuacct, &cgroup.path),
        ) {
            (Some(ns), _) => Some(ns),
            (None, Some(ControllerDir::V1(dir))) => {
                read_value(&dir.join("cpuacct.usage"))?.map(|v| v.or(0))
            }
            (None, _) => None,
        };
        if let Some(ns) = usage_ns {
            baselines.insert(cgroup.id, ns);
        }
    }
    Ok(baselines)
}

pub const USAGE: &str = "container_cpu_usage_seconds_total";
pub const SCHEDSTAT_RUN: &str = "container_cpu_schedstat_run_seconds_total";
pub const SCHEDSTAT_RUNQUEUE: &str = "container_cpu_schedstat_runqueue_seconds_total";
pub const SCHEDSTAT_RUN_PERIODS: &str = "container_cpu_schedstat_run_periods_total";
/// Names of the CPU counters in the retired-totals store.
pub use crate::bpf::counters::{
    CPU_NS as COUNTER, RUN_PERIODS as PERIODS_COUNTER, RUNQUEUE_NS as RUNQUEUE_COUNTER,
};

/// Writes the CPU families.
pub fn collect(ctx: &ScrapeContext<'_>, out: &mut SampleSet) {
    match ctx.kernel.cgroup_cpu() {
        Ok(cpu) => {
            let field = |f: fn(&CgroupCpu) -> u64| -> HashMap<u64, u64> {
                cpu.iter().map(|(&id, v)| (id, f(v))).collect()
            };
            let totals = |f: fn(&CgroupCpu) -> u64, counter: &'static str| {
                hierarchical_totals(&field(f), ctx.paths, ctx.retired.of(counter))
            };
            let runtime = totals(|c| c.runtime_ns, COUNTER);
            write_usage(out, ctx.rows, &runtime, ctx.cpu_baselines);
            if ctx.kernel.family_attached("schedstat") {
                let runqueue = totals(|c| c.runqueue_ns, RUNQUEUE_COUNTER);
                let periods = totals(|c| c.run_periods, PERIODS_COUNTER);
                write_schedstat(
                    out,
                    ctx.rows,
                    &runtime,
                    ctx.cpu_baselines,
                    &runqueue,
                    &periods,
                );
            }
        }
        Err(e) => ctx.failed("cpu", &e),
    }
}

/// cAdvisor's opt-in `container_cpu_schedstat_*` families, always on here. Run
/// time is the usage counter (baseline included); run-queue time and periods count
/// from attach (the kernel keeps no per-cgroup totals of them to seed from).
pub fn write_schedstat(
    out: &mut SampleSet,
    rows: &[Row],
    runtime: &HashMap<&str, u64>,
    baselines: &StartBaselines,
    runqueue: &HashMap<&str, u64>,
    periods: &HashMap<&str, u64>,
) {
    let get = |totals: &HashMap<&str, u64>, row: &Row| {
        totals.get(row.path.as_str()).copied().unwrap_or(0)
    };
    out.family(
        SCHEDSTAT_RUN,
        "Time duration the processes of the container have run on the CPU.",
        MetricType::Counter,
    );
    for row in rows {
        let ns = get(runtime, row) + baselines.get(&row.id).copied().unwrap_or(0);
        out.sample(SCHEDSTAT_RUN, Some(&row.labels), &[], ns_to_seconds(ns));
    }
    out.family(
        SCHEDSTAT_RUNQUEUE,
        "Time duration processes of the container have been waiting on a runqueue.",
        MetricType::Counter,
    );
    for row in rows {
        out.sample(
            SCHEDSTAT_RUNQUEUE,
            Some(&row.labels),
            &[],
            ns_to_seconds(get(runqueue, row)),
        );
    }
    out.family(
        SCHEDSTAT_RUN_PERIODS,
        "Number of times processes of the cgroup have run on the cpu",
        MetricType::Counter,
    );
    for row in rows {
        out.sample(
            SCHEDSTAT_RUN_PERIODS,
            Some(&row.labels),
            &[],
            get(periods, row) as f64,
        );
    }
}

/// Hierarchical totals: each path gets its own counter plus every descendant's,
/// including removed descendants: those inside their grace period (their paths live
/// on in `memory`) and those retired since (`retired`: counters already folded into
/// an ancestor's path). A counter whose cgroup path was never seen is credited to the
/// root only.
pub fn hierarchical_totals<'a>(
    per_cgroup: &HashMap<u64, u64>,
    memory: &'a PathMemory,
    retired: impl Iterator<Item = (&'a str, u64)>,
) -> HashMap<&'a str, u64> {
    let mut totals: HashMap<&str, u64> = HashMap::new();
    for (path, value) in retired {
        for ancestor in ancestors(path) {
            *totals.entry(ancestor).or_default() += value;
        }
    }
    for (&id, &value) in per_cgroup {
        match memory.path(id) {
            Some(path) => {
                // A removed cgroup whose name was reused: not the new one's counter.
                let skip_own = usize::from(memory.superseded(id));
                for ancestor in ancestors(path).skip(skip_own) {
                    *totals.entry(ancestor).or_default() += value;
                }
            }
            None => *totals.entry("/").or_default() += value,
        }
    }
    totals
}

pub fn write_usage(
    out: &mut SampleSet,
    rows: &[Row],
    totals: &HashMap<&str, u64>,
    baselines: &StartBaselines,
) {
    out.family(
        USAGE,
        "Cumulative cpu time consumed in seconds.",
        MetricType::Counter,
    );
    for row in rows {
        let ns = totals.get(row.path.as_str()).copied().unwrap_or(0)
            + baselines.get(&row.id).copied().unwrap_or(0);
        out.sample(
            USAGE,
            Some(&row.labels),
            &[("cpu", "total")],
            ns_to_seconds(ns),
        );
    }
}

#[expect(
    clippy::cast_precision_loss,
    reason = "f64 holds ns exactly up to 104 days of CPU time, and to 1e-16 relative after"
)]
pub fn ns_to_seconds(ns: u64) -> f64 {
    ns as f64 / 1e9
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn baselines_come_from_v2_cpu_stat_or_v1_cpuacct() {
        use std::os::unix::fs::MetadataExt as _;
        let v2 = tempfile::tempdir().unwrap();
        let v1 = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(v2.path().join("a")).unwrap();
        std::fs::create_dir_all(v2.path().join("b")).unwrap();
        std::fs::write(
            v2.path().join("a/cpu.stat"),
            "usage_usec 1500\nuser_usec 1000\n",
        )
        .unwrap();
        // No v2 cpu.stat for b: a v1-only host's cpuacct.usage (ns) is used.
        std::fs::create_dir_all(v1.path().join("b")).unwrap();
        std::fs::write(v1.path().join("b/cpuacct.usage"), "777\n").unwrap();
        let hierarchies = Hierarchies::from_parts(
            Some(v2.path().to_owned()),
            HashMap::from([("cpuacct".to_owned(), v1.path().to_owned())]),
        )
        .unwrap();
        let tree = CgroupTree::at(v2.path().to_owned());
        let id = |p: &str| std::fs::metadata(v2.path().join(p)).unwrap().ino();

        let baselines = read_start_baselines(&tree, &hierarchies).unwrap();

        assert_eq!(baselines[&id("a")], 1_500_000);
        assert_eq!(baselines[&id("b")], 777);
    }

    use crate::cgroup::{Cgroup, RetiredTotals};

    fn cg(id: u64, path: &str) -> Cgroup {
        Cgroup {
            id,
            path: path.to_owned(),
        }
    }

    #[test]
    fn parents_include_children_and_removed_children() {
        let mut memory = PathMemory::default();
        // /pod/b was removed but is inside its grace period: still in the memory.
        for (id, path) in [
            (1, "/"),
            (2, "/pod"),
            (3, "/pod/a"),
            (4, "/pod/b"),
            (5, "/other"),
        ] {
            memory.insert(id, path);
        }
        // /pod/c was retired: its 20 ns were folded into /pod.
        let mut retired = RetiredTotals::default();
        retired.retire("/pod/c", &[(COUNTER, 20)]);
        let per_cgroup = HashMap::from([(1, 5), (2, 10), (3, 100), (4, 1000), (5, 7), (99, 3)]);

        let totals = hierarchical_totals(&per_cgroup, &memory, retired.of(COUNTER));

        assert_eq!(totals["/pod/a"], 100);
        assert_eq!(totals["/pod/b"], 1000);
        assert_eq!(
            totals["/pod"], 1130,
            "own + live child + removed + retired child"
        );
        assert_eq!(totals["/other"], 7);
        assert_eq!(totals["/"], 1145, "root holds everything, unknown ids too");
    }

    #[test]
    fn recreated_cgroup_starts_from_zero_and_parent_keeps_both() {
        let mut memory = PathMemory::default();
        memory.update(&[cg(1, "/"), cg(2, "/svc"), cg(3, "/svc/app")], |_| true);
        // /svc/app removed and created again (new inode 4) under the same name.
        memory.update(&[cg(1, "/"), cg(2, "/svc"), cg(4, "/svc/app")], |_| true);
        let per_cgroup = HashMap::from([(3, 500), (4, 20)]);

        let totals = hierarchical_totals(&per_cgroup, &memory, std::iter::empty());

        assert_eq!(
            totals["/svc/app"], 20,
            "a counter reset, as the kernel's cpu.stat"
        );
        assert_eq!(totals["/svc"], 520, "the parent keeps the old one's time");
        assert_eq!(totals["/"], 520);
    }

    /// One CPU counter for cgroup 1; `sched_switch` attached or not.
    struct Kernel {
        sched_switch: bool,
    }

    impl crate::collect::KernelSource for Kernel {
        fn cgroup_cpu(&self) -> Result<HashMap<u64, CgroupCpu>, crate::bpf::BpfError> {
            Ok(HashMap::from([(
                1,
                CgroupCpu {
                    runtime_ns: 3_000_000_000,
                    runqueue_ns: 250_000_000,
                    run_periods: 42,
                },
            )]))
        }
        fn cgroup_crashes(
            &self,
        ) -> Result<HashMap<u64, kadvisor_common::CgroupCrashes>, crate::bpf::BpfError> {
            Ok(HashMap::new())
        }
        fn cgroup_oom_kills(&self) -> Result<HashMap<u64, u64>, crate::bpf::BpfError> {
            Ok(HashMap::new())
        }
        fn kernel_errors(
            &self,
        ) -> Result<Vec<(kadvisor_common::KernelError, u64)>, crate::bpf::BpfError> {
            Ok(Vec::new())
        }
        fn program_stats(&self) -> Vec<crate::bpf::ProgramStats> {
            crate::bpf::PROGRAMS
                .iter()
                .map(|spec| crate::bpf::ProgramStats {
                    name: spec.name,
                    family: spec.family,
                    attached: spec.name != "sched_switch" || self.sched_switch,
                    run_count: 0,
                    run_time_ns: 0,
                })
                .collect()
        }
    }

    fn scrape(kernel: &Kernel) -> String {
        let errors = prometheus::IntCounterVec::new(
            prometheus::Opts::new("errors_total", "test"),
            &["source"],
        )
        .unwrap();
        let hierarchies = crate::cgroup::Hierarchies::default();
        let rows = vec![Row::new(1, "/")];
        let baselines = StartBaselines::from([(1, 1_000_000_000)]);
        let mut memory = PathMemory::default();
        memory.insert(1, "/");
        let retired = RetiredTotals::default();
        let kernel = crate::collect::KernelSnapshot::new(kernel);
        let failures = std::cell::Cell::new(0);
        let ctx = ScrapeContext {
            rows: &rows,
            hierarchies: &hierarchies,
            kernel: &kernel,
            cpu_baselines: &baselines,
            paths: &memory,
            retired: &retired,
            root_swap: None,
            errors: &errors,
            failures: &failures,
            row_pids: std::cell::OnceCell::new(),
            cache: None,
        };
        let mut out = SampleSet::default();
        collect(&ctx, &mut out);
        out.to_text()
    }

    #[test]
    fn schedstat_families_need_every_scheduler_hook() {
        let text = scrape(&Kernel { sched_switch: true });
        let labels = "{container=\"\",id=\"/\",image=\"\",name=\"\",namespace=\"\",pod=\"\"}";
        for line in [
            // 3 s since attach plus the 1 s baseline, like the usage counter.
            format!("{SCHEDSTAT_RUN}{labels} 4\n"),
            format!("{SCHEDSTAT_RUNQUEUE}{labels} 0.25\n"),
            format!("{SCHEDSTAT_RUN_PERIODS}{labels} 42\n"),
        ] {
            assert!(text.contains(&line), "{line} missing from {text}");
        }

        let text = scrape(&Kernel {
            sched_switch: false,
        });
        assert!(text.contains(USAGE), "usage stays: {text}");
        assert!(
            !text.contains("schedstat"),
            "left out without sched_switch: {text}"
        );
    }

    #[test]
    fn usage_rows_carry_cpu_total_and_seconds() {
        let rows = vec![Row::new(1, "/"), Row::new(3, "/a")];
        let totals = HashMap::from([("/", 2_000_000_000), ("/a", 1_000)]);
        // The root had used 0.5 s before attach; /a is new.
        let baselines = HashMap::from([(1, 500_000_000)]);
        let mut out = SampleSet::default();
        write_usage(&mut out, &rows, &totals, &baselines);
        let text = out.to_text();
        assert!(text.contains(
            "container_cpu_usage_seconds_total{container=\"\",id=\"/\",image=\"\",name=\"\",namespace=\"\",pod=\"\",cpu=\"total\"} 2.5\n"
        ), "{text}");
        assert!(
            text.contains(
                "id=\"/a\",image=\"\",name=\"\",namespace=\"\",pod=\"\",cpu=\"total\"} 0.000001\n"
            ),
            "{text}"
        );
    }
}
