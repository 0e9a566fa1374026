//! Process families, from the kernel's scrape-time task pass (kernel/src/iter.rs:
//! one `iter/task` and one `iter/task_file` pass per scrape, see `bpf::CgroupTasks`)
//! and the pids controller:
//!
//! | family | source |
//! |---|---|
//! | `container_processes` | thread-group leaders whose cgroup is the row's (its own tasks, like `cgroup.procs`; not recursive) |
//! | `container_threads` / `container_threads_max` | `pids.current` / `pids.max` ("max" → 0) of the pids controller (v1 or v2), as cAdvisor; `pids.current`'s counter from the kernel's cgroup pass when it is attached |
//! | `container_file_descriptors` / `container_sockets` | descriptors of those processes / those whose inode is a socket (what `/proc/<pid>/fd` lists and shows as `socket:[…]`) |
//! | `container_ulimits_soft{ulimit="max_open_files"}` | soft `RLIMIT_NOFILE` of the row's lowest-numbered process (absent when unlimited) |
//!
//! No `cgroup.procs` read, no `/proc/<pid>/fd` walk with a `readlink` per descriptor,
//! no `/proc/<pid>/limits`: these families need neither `CAP_SYS_PTRACE` nor the host
//! pid namespace to count other processes' descriptors. A removed row (its directory is
//! gone) has no process counts, as before.
use super::{
    Row, ScrapeContext,
    samples::{MetricType, SampleSet},
};
use crate::{
    bpf::CgroupTasks,
    cgroup::{
        CgroupError, Controller, ControllerDir,
        files::{read_spec_value, read_value},
    },
};

/// Counts for one cgroup; `None` where the source is absent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcessCounts {
    pub processes: Option<u64>,
    pub threads: Option<u64>,
    pub threads_max: Option<u64>,
    pub file_descriptors: Option<u64>,
    pub sockets: Option<u64>,
    pub max_open_files: Option<u64>,
}

/// One cgroup's counts: the pids controller's (`pids.current` from the cgroup pass
/// when `pids_current` has it, else from its file), and `tasks` (the task pass's
/// entry for it; `None` when none of its tasks was seen) when the cgroup is live
/// (`live`: a row of the tree, not a removed one in its grace period) and the pass
/// ran (`pass_ran`).
pub fn count(
    pids: Option<&ControllerDir>,
    pids_current: Option<u64>,
    live: bool,
    pass_ran: bool,
    tasks: Option<&CgroupTasks>,
) -> Result<ProcessCounts, CgroupError> {
    let mut counts = ProcessCounts::default();
    if let Some(dir) = pids {
        counts.threads = match pids_current {
            Some(current) => Some(current),
            None => read_value(&dir.join("pids.current"))?.map(|v| v.or(0)),
        };
        counts.threads_max = read_spec_value(&dir.join("pids.max"))?.map(|v| v.or(0));
    }
    if !(pass_ran && live) {
        return Ok(counts);
    }
    let tasks = tasks.copied().unwrap_or_default();
    counts.processes = Some(tasks.processes);
    counts.file_descriptors = tasks.file_descriptors.or(Some(0));
    counts.sockets = tasks.sockets.or(Some(0));
    counts.max_open_files = tasks.max_open_files;
    Ok(counts)
}

pub fn collect(ctx: &ScrapeContext<'_>, out: &mut SampleSet) {
    let pass = ctx.task_pass();
    let pids_pass = ctx.cgroup_pass().map(|pass| &pass.pids);
    let mut rows = Vec::with_capacity(ctx.rows.len());
    for (index, row) in ctx.rows.iter().enumerate() {
        let read = || {
            let tasks = pass.and_then(|pass| pass.get(&row.id));
            let live = index < ctx.live;
            let pids = ctx.hierarchies.controller_dir(Controller::Pids, &row.path);
            // The root has no `pids.current` (the kernel does not show it there).
            let counters = pids_pass.filter(|_| row.path != "/");
            let pids_current = pids.as_ref().zip(counters).and_then(|(dir, current)| {
                let id =
                    ctx.hierarchy_id(Controller::Pids, row, dir, |id| current.contains_key(&id))?;
                current.get(&id).copied()
            });
            match count(pids.as_ref(), pids_current, live, pass.is_some(), tasks) {
                Ok(counts) => Some(counts),
                Err(e) => {
                    ctx.failed("process", &e);
                    None
                }
            }
        };
        if let Some(counts) = ctx.row_value(index, |v| &mut v.process, read) {
            rows.push((row, counts));
        }
    }
    write(out, &rows);
}

pub fn write(out: &mut SampleSet, rows: &[(&Row, ProcessCounts)]) {
    type Field = fn(&ProcessCounts) -> Option<u64>;
    let families: [(&str, &str, Field); 5] = [
        (
            "container_processes",
            "Number of processes running inside the container.",
            |c| c.processes,
        ),
        (
            "container_threads",
            "Number of threads running inside the container",
            |c| c.threads,
        ),
        (
            "container_threads_max",
            "Maximum number of threads allowed inside the container, infinity if value is zero",
            |c| c.threads_max,
        ),
        (
            "container_file_descriptors",
            "Number of open file descriptors for the container.",
            |c| c.file_descriptors,
        ),
        (
            "container_sockets",
            "Number of open sockets for the container.",
            |c| c.sockets,
        ),
    ];
    for (name, help, field) in families {
        out.family(name, help, MetricType::Gauge);
        for (row, counts) in rows {
            if let Some(value) = field(counts) {
                out.sample(name, Some(&row.labels), &[], value as f64);
            }
        }
    }
    let name = "container_ulimits_soft";
    out.family(
        name,
        "Soft ulimit values for the container root process. Unlimited if -1, except priority and nice",
        MetricType::Gauge,
    );
    for (row, counts) in rows {
        if let Some(value) = counts.max_open_files {
            out.sample(
                name,
                Some(&row.labels),
                &[("ulimit", "max_open_files")],
                value as f64,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{collections::HashMap, fs, path::Path};

    use super::*;
    use crate::cgroup::Hierarchies;

    fn layout(root: &Path, v2_controllers: &str, pids_v1: bool) -> Hierarchies {
        fs::create_dir_all(root.join("unified")).unwrap();
        fs::write(root.join("unified/cgroup.controllers"), v2_controllers).unwrap();
        let v1 = if pids_v1 {
            HashMap::from([("pids".to_owned(), root.join("pids"))])
        } else {
            HashMap::new()
        };
        Hierarchies::from_parts(Some(root.join("unified")), v1).unwrap()
    }

    #[test]
    fn hybrid_counts_from_the_task_pass_and_v1_pids() {
        let dir = tempfile::tempdir().unwrap();
        let h = layout(dir.path(), "", true);
        fs::create_dir_all(dir.path().join("unified/c")).unwrap();
        fs::create_dir_all(dir.path().join("pids/c")).unwrap();
        fs::write(dir.path().join("pids/c/pids.current"), "7\n").unwrap();
        fs::write(dir.path().join("pids/c/pids.max"), "max\n").unwrap();
        let tasks = CgroupTasks {
            processes: 3,
            threads: 7,
            file_descriptors: Some(6),
            sockets: Some(2),
            max_open_files: Some(1024),
            ..CgroupTasks::default()
        };

        let pids = h.controller_dir(Controller::Pids, "/c");
        let counts = count(pids.as_ref(), None, true, true, Some(&tasks)).unwrap();
        let from_pass = count(pids.as_ref(), Some(9), true, true, Some(&tasks)).unwrap();
        assert_eq!(from_pass.threads, Some(9), "the cgroup pass's pids.current");

        assert_eq!(
            counts,
            ProcessCounts {
                processes: Some(3),
                threads: Some(7),
                threads_max: Some(0),
                file_descriptors: Some(6),
                sockets: Some(2),
                max_open_files: Some(1024),
            }
        );
    }

    #[test]
    fn empty_cgroup_counts_zero_and_removed_or_unread_counts_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let h = layout(dir.path(), "cpu pids memory\n", false);
        fs::create_dir_all(dir.path().join("unified/c")).unwrap();
        fs::write(dir.path().join("unified/c/pids.current"), "0\n").unwrap();
        fs::write(dir.path().join("unified/c/pids.max"), "512\n").unwrap();
        let pids = h.controller_dir(Controller::Pids, "/c");
        let counts = count(pids.as_ref(), None, true, true, None).unwrap();
        assert_eq!(counts.processes, Some(0));
        assert_eq!(
            (counts.file_descriptors, counts.sockets),
            (Some(0), Some(0))
        );
        assert_eq!(counts.threads_max, Some(512));
        assert_eq!(counts.max_open_files, None);

        let without_pass = count(pids.as_ref(), None, true, false, None).unwrap();
        assert_eq!(without_pass.processes, None, "no task pass: left out");
        // A removed row (grace period): not live.
        let gone = h.controller_dir(Controller::Pids, "/gone");
        let removed = count(gone.as_ref(), None, false, true, None).unwrap();
        assert_eq!(removed, ProcessCounts::default());
        let row = Row::new(1, "/gone");
        let mut out = SampleSet::default();
        write(&mut out, &[(&row, removed)]);
        assert!(!out.to_text().lines().any(|l| !l.starts_with('#')));
    }

    #[test]
    fn ulimit_series_carries_its_label() {
        let row = Row::new(1, "/c");
        let counts = ProcessCounts {
            max_open_files: Some(1024),
            processes: Some(2),
            ..ProcessCounts::default()
        };
        let mut out = SampleSet::default();
        write(&mut out, &[(&row, counts)]);
        let text = out.to_text();
        assert!(
            text.contains("container_ulimits_soft{container=\"\",id=\"/c\",image=\"\",name=\"\",namespace=\"\",pod=\"\",ulimit=\"max_open_files\"} 1024\n"),
            "{text}"
        );
        assert!(text.contains("container_processes{"), "{text}");
    }
}
