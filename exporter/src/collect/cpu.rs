//! CPU families, from the kernel's own accounting:
//! - `container_cpu_usage_seconds_total{cpu="total"}`: a live row's hierarchical
//!   `cpu.stat usage_usec` (v2, also present on hybrid hosts), else v1
//!   `cpuacct.usage`, read at scrape time: exact, and as current as the scrape. A
//!   removed row (inside its grace period) shows the CPU time its tasks had when they
//!   exited, captured by `sched_process_exit` (kernel/src/sched.rs) and summed up the
//!   tree. Its parent's own `cpu.stat` already includes it, in the grace period and
//!   after retirement alike.
//! - `container_cpu_schedstat_run_seconds_total`: the same usage counter (cAdvisor
//!   sums the first field of /proc/<pid>/schedstat, the same `sum_exec_runtime`).
//! - `container_cpu_schedstat_runqueue_seconds_total` and
//!   `container_cpu_schedstat_run_periods_total`: the live tasks' `sched_info`
//!   (`run_delay`, `pcount`) from the scrape-time task pass, plus the exited tasks'
//!   values credited at `sched_process_exit`, summed up the tree. Served when the task
//!   pass is attached.
//!
//! Counters never go backwards: a row's value never falls below the last one
//! exported for its cgroup id (a task moving to another cgroup takes its run-queue
//! time along; a removed cgroup's exit-time totals miss the few µs its tasks ran after
//! the exit tracepoint).
use std::{
    collections::HashMap,
    sync::{Mutex, PoisonError},
};

use super::{
    Row, ScrapeContext,
    samples::{MetricType, SampleSet},
};
use crate::cgroup::{
    CgroupError, Controller, ControllerDir, Hierarchies, PathMemory, ancestors,
    files::{keyed_value, read_shared, read_value},
};

/// One cgroup's hierarchical CPU usage in ns from the kernel's own accounting: v2
/// `cpu.stat usage_usec` (present on hybrid hosts too, without the cpu controller),
/// else v1 `cpuacct.usage`. `None` when neither file exists (a removed cgroup).
pub fn live_usage_ns(hierarchies: &Hierarchies, path: &str) -> Result<Option<u64>, CgroupError> {
    if let Some(dir) = hierarchies.v2_dir(path)
        && let Some(usec) =
            read_shared(&dir.join("cpu.stat"))?.and_then(|text| keyed_value(&text, "usage_usec"))
    {
        return Ok(Some(usec * 1000));
    }
    match hierarchies.controller_dir(Controller::Cpuacct, path) {
        Some(ControllerDir::V1(dir)) => {
            Ok(read_value(&dir.join("cpuacct.usage"))?.map(|v| v.or(0)))
        }
        _ => Ok(None),
    }
}

pub const USAGE: &str = "container_cpu_usage_seconds_total";
pub const SCHEDSTAT_RUN: &str = "container_cpu_schedstat_run_seconds_total";
pub const SCHEDSTAT_RUNQUEUE: &str = "container_cpu_schedstat_runqueue_seconds_total";
pub const SCHEDSTAT_RUN_PERIODS: &str = "container_cpu_schedstat_run_periods_total";
/// Names of the CPU counters in the retired-totals store.
pub use crate::bpf::counters::{
    CPU_NS as COUNTER, RUN_PERIODS as PERIODS_COUNTER, RUNQUEUE_NS as RUNQUEUE_COUNTER,
};

/// The last value exported per cgroup id and counter (usage, run-queue ns, run
/// periods), so no counter is exported lower than before. One per process: cgroup
/// ids are the host's, whichever collector reads them; entries of ids no longer in
/// the path memory are dropped at each scrape.
static EXPORTED: Mutex<Option<HashMap<u64, [u64; 3]>>> = Mutex::new(None);

/// One row's three CPU counters (ns, ns, count).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RowCpu {
    pub usage_ns: Option<u64>,
    pub runqueue_ns: u64,
    pub run_periods: u64,
}

/// Writes the CPU families.
pub fn collect(ctx: &ScrapeContext<'_>, out: &mut SampleSet) {
    let none = HashMap::new();
    let exited = match ctx.kernel.cgroup_cpu() {
        Ok(exited) => exited,
        Err(e) => {
            ctx.failed("cpu", e);
            &none
        }
    };
    let field = |f: fn(&kadvisor_common::CgroupCpu) -> u64| -> HashMap<u64, u64> {
        exited.iter().map(|(&id, v)| (id, f(v))).collect()
    };
    let exited_runtime =
        hierarchical_totals(&field(|c| c.runtime_ns), ctx.paths, ctx.retired.of(COUNTER));
    let tasks = ctx.task_pass();
    let schedstat = tasks.map(|tasks| {
        let mut runqueue = field(|c| c.runqueue_ns);
        let mut periods = field(|c| c.run_periods);
        for (&id, live) in tasks {
            *runqueue.entry(id).or_default() += live.run_delay_ns;
            *periods.entry(id).or_default() += live.run_periods;
        }
        (
            hierarchical_totals(&runqueue, ctx.paths, ctx.retired.of(RUNQUEUE_COUNTER)),
            hierarchical_totals(&periods, ctx.paths, ctx.retired.of(PERIODS_COUNTER)),
        )
    });
    let mut values = Vec::with_capacity(ctx.rows.len());
    for row in ctx.rows {
        let live = match live_usage_ns(ctx.hierarchies, &row.path) {
            Ok(live) => live,
            Err(e) => {
                ctx.failed("cpu", &e);
                None
            }
        };
        let get = |totals: &HashMap<&str, u64>| totals.get(row.path.as_str()).copied();
        let usage_ns = live.or_else(|| get(&exited_runtime));
        let (runqueue_ns, run_periods) = schedstat
            .as_ref()
            .map_or((0, 0), |(q, p)| (get(q).unwrap_or(0), get(p).unwrap_or(0)));
        values.push(RowCpu {
            usage_ns,
            runqueue_ns,
            run_periods,
        });
    }
    never_backwards(ctx.rows, &mut values, |id| ctx.paths.path(id).is_some());
    write_usage(out, ctx.rows, &values);
    if schedstat.is_some() {
        write_schedstat(out, ctx.rows, &values);
    }
}

/// Raises each row's counters to at least what was last exported for its cgroup id,
/// then remembers them; forgets ids `known` no longer holds.
fn never_backwards(rows: &[Row], values: &mut [RowCpu], known: impl Fn(u64) -> bool) {
    let mut exported = EXPORTED.lock().unwrap_or_else(PoisonError::into_inner);
    let exported = exported.get_or_insert_with(HashMap::new);
    exported.retain(|&id, _| known(id));
    for (row, value) in rows.iter().zip(values.iter_mut()) {
        let last = exported.entry(row.id).or_default();
        // A removed row with nothing credited keeps what it showed while live.
        if value.usage_ns.is_some() || last[0] > 0 {
            let usage = value.usage_ns.unwrap_or(0).max(last[0]);
            value.usage_ns = Some(usage);
            last[0] = usage;
        }
        value.runqueue_ns = value.runqueue_ns.max(last[1]);
        value.run_periods = value.run_periods.max(last[2]);
        last[1] = value.runqueue_ns;
        last[2] = value.run_periods;
    }
}

/// cAdvisor's opt-in `container_cpu_schedstat_*` families, always on here.
pub fn write_schedstat(out: &mut SampleSet, rows: &[Row], values: &[RowCpu]) {
    out.family(
        SCHEDSTAT_RUN,
        "Time duration the processes of the container have run on the CPU.",
        MetricType::Counter,
    );
    for (row, value) in rows.iter().zip(values) {
        if let Some(ns) = value.usage_ns {
            out.sample(SCHEDSTAT_RUN, Some(&row.labels), &[], ns_to_seconds(ns));
        }
    }
    out.family(
        SCHEDSTAT_RUNQUEUE,
        "Time duration processes of the container have been waiting on a runqueue.",
        MetricType::Counter,
    );
    for (row, value) in rows.iter().zip(values) {
        out.sample(
            SCHEDSTAT_RUNQUEUE,
            Some(&row.labels),
            &[],
            ns_to_seconds(value.runqueue_ns),
        );
    }
    out.family(
        SCHEDSTAT_RUN_PERIODS,
        "Number of times processes of the cgroup have run on the cpu",
        MetricType::Counter,
    );
    for (row, value) in rows.iter().zip(values) {
        out.sample(
            SCHEDSTAT_RUN_PERIODS,
            Some(&row.labels),
            &[],
            value.run_periods as f64,
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

pub fn write_usage(out: &mut SampleSet, rows: &[Row], values: &[RowCpu]) {
    out.family(
        USAGE,
        "Cumulative cpu time consumed in seconds.",
        MetricType::Counter,
    );
    for (row, value) in rows.iter().zip(values) {
        if let Some(ns) = value.usage_ns {
            out.sample(
                USAGE,
                Some(&row.labels),
                &[("cpu", "total")],
                ns_to_seconds(ns),
            );
        }
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
    fn live_usage_comes_from_v2_cpu_stat_or_v1_cpuacct() {
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

        assert_eq!(live_usage_ns(&hierarchies, "/a").unwrap(), Some(1_500_000));
        assert_eq!(live_usage_ns(&hierarchies, "/b").unwrap(), Some(777));
        assert_eq!(live_usage_ns(&hierarchies, "/gone").unwrap(), None);
    }

    use crate::cgroup::{Cgroup, RetiredTotals};
    use kadvisor_common::CgroupCpu;

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

    /// Exited tasks of cgroup 1 and, when `task_pass`, its live tasks.
    struct Kernel {
        task_pass: bool,
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
        fn task_pass(&self) -> Result<HashMap<u64, crate::bpf::CgroupTasks>, crate::bpf::BpfError> {
            if !self.task_pass {
                return Err(crate::bpf::BpfError::NoTaskPass);
            }
            Ok(HashMap::from([(
                1,
                crate::bpf::CgroupTasks {
                    run_delay_ns: 500_000_000,
                    run_periods: 8,
                    ..Default::default()
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
            Vec::new()
        }
    }

    /// A scrape of one row, `/`, whose v2 `cpu.stat` says 4 s.
    fn scrape(kernel: &Kernel) -> String {
        let errors = prometheus::IntCounterVec::new(
            prometheus::Opts::new("errors_total", "test"),
            &["source"],
        )
        .unwrap();
        let v2 = tempfile::tempdir().unwrap();
        std::fs::write(v2.path().join("cpu.stat"), "usage_usec 4000000\n").unwrap();
        let hierarchies =
            Hierarchies::from_parts(Some(v2.path().to_owned()), HashMap::new()).unwrap();
        // An id no other test uses: the never-backwards memory is per process.
        let id = u64::from(kernel.task_pass) + 9_000_001;
        let rows = vec![Row::new(id, "/")];
        let mut memory = PathMemory::default();
        memory.insert(id, "/");
        let retired = RetiredTotals::default();
        let kernel = crate::collect::KernelSnapshot::new(kernel);
        let failures = std::cell::Cell::new(0);
        let ctx = ScrapeContext {
            rows: &rows,
            live: rows.len(),
            hierarchies: &hierarchies,
            kernel: &kernel,
            paths: &memory,
            retired: &retired,
            root_swap: None,
            own: crate::collect::sources::OwnFamilies::default(),
            errors: &errors,
            failures: &failures,
            row_pids: std::cell::OnceCell::new(),
            cache: None,
            v1_ids: &std::cell::RefCell::default(),
        };
        let mut out = SampleSet::default();
        collect(&ctx, &mut out);
        out.to_text()
    }

    #[test]
    fn usage_is_cpu_stat_and_schedstat_adds_live_to_exited_tasks() {
        let text = scrape(&Kernel { task_pass: true });
        let labels = "{container=\"\",id=\"/\",image=\"\",name=\"\",namespace=\"\",pod=\"\"}";
        for line in [
            // cpu.stat, not the exited tasks' 3 s.
            format!("{SCHEDSTAT_RUN}{labels} 4\n"),
            format!("{SCHEDSTAT_RUNQUEUE}{labels} 0.75\n"),
            format!("{SCHEDSTAT_RUN_PERIODS}{labels} 50\n"),
        ] {
            assert!(text.contains(&line), "{line} missing from {text}");
        }

        let text = scrape(&Kernel { task_pass: false });
        assert!(text.contains(USAGE), "usage stays: {text}");
        assert!(
            !text.contains("schedstat"),
            "left out without the task pass: {text}"
        );
    }

    #[test]
    fn counters_never_go_below_what_was_exported() {
        let rows = vec![Row::new(8_000_001, "/gone")];
        let mut first = vec![RowCpu {
            usage_ns: Some(1_000),
            runqueue_ns: 50,
            run_periods: 5,
        }];
        never_backwards(&rows, &mut first, |_| true);
        // Removed: the exit-time total is a little lower, the live pass lost a task.
        let mut second = vec![RowCpu {
            usage_ns: Some(990),
            runqueue_ns: 40,
            run_periods: 6,
        }];
        never_backwards(&rows, &mut second, |_| true);
        assert_eq!(
            second[0],
            RowCpu {
                usage_ns: Some(1_000),
                runqueue_ns: 50,
                run_periods: 6
            }
        );
        let mut unknown = vec![RowCpu::default()];
        never_backwards(&rows, &mut unknown, |_| true);
        assert_eq!(
            unknown[0].usage_ns,
            Some(1_000),
            "kept with nothing credited"
        );
    }

    #[test]
    fn usage_rows_carry_cpu_total_and_seconds() {
        let rows = vec![Row::new(1, "/"), Row::new(3, "/a")];
        let values = [2_500_000_000, 1_000].map(|ns| RowCpu {
            usage_ns: Some(ns),
            ..RowCpu::default()
        });
        let mut out = SampleSet::default();
        write_usage(&mut out, &rows, &values);
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
