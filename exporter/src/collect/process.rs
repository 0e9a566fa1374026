//! Process families, read at scrape time from cgroupfs and /proc as cAdvisor does:
//!
//! | family | source |
//! |---|---|
//! | `container_processes` | lines of the cgroup's own `cgroup.procs` (v2 directory; not recursive) |
//! | `container_threads` / `container_threads_max` | `pids.current` / `pids.max` ("max" → 0) of the pids controller (v1 or v2) |
//! | `container_file_descriptors` / `container_sockets` | entries of `/proc/<pid>/fd` over those processes / those that are sockets |
//! | `container_ulimits_soft{ulimit="max_open_files"}` | soft "Max open files" of the first process's `/proc/<pid>/limits` (absent when unlimited) |
//!
//! A process that exits during the walk is skipped, not an error.
use std::path::Path;

use procfs::{
    ProcError,
    process::{FDTarget, LimitValue, Process},
};

use super::{
    Row, ScrapeContext,
    exposition::{Exposition, MetricType},
};
use crate::cgroup::{
    CgroupError, Controller, Hierarchies,
    files::{parse_pids, read_optional, read_value},
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

/// Reads one cgroup's counts; `proc_root` is normally `/proc`.
pub fn read(
    hierarchies: &Hierarchies,
    proc_root: &Path,
    path: &str,
) -> Result<ProcessCounts, CgroupError> {
    let mut counts = ProcessCounts::default();
    if let Some(dir) = hierarchies.controller_dir(Controller::Pids, path) {
        counts.threads = read_value(&dir.join("pids.current"))?.map(|v| v.or(0));
        counts.threads_max = read_value(&dir.join("pids.max"))?.map(|v| v.or(0));
    }
    let Some(dir) = hierarchies.v2_dir(path) else {
        return Ok(counts);
    };
    let Some(procs) = read_optional(&dir.join("cgroup.procs"))? else {
        return Ok(counts);
    };
    let pids: Vec<u32> = parse_pids(&procs).collect();
    counts.processes = Some(pids.len() as u64);
    let (mut fds, mut sockets) = (0, 0);
    for &pid in &pids {
        let Ok(process) = Process::new_with_root(proc_root.join(pid.to_string())) else {
            continue; // exited
        };
        let Ok(entries) = process.fd() else {
            continue;
        };
        for fd in entries.flatten() {
            fds += 1;
            if matches!(fd.target, FDTarget::Socket(_)) {
                sockets += 1;
            }
        }
    }
    counts.file_descriptors = Some(fds);
    counts.sockets = Some(sockets);
    counts.max_open_files = pids.first().and_then(|&pid| {
        let limits = Process::new_with_root(proc_root.join(pid.to_string()))
            .and_then(|p| p.limits())
            .map_err(|e: ProcError| tracing::debug!(pid, error = %e, "no limits"))
            .ok()?;
        match limits.max_open_files.soft_limit {
            LimitValue::Value(n) => Some(n),
            // cAdvisor parses the number and drops the series when it is "unlimited".
            LimitValue::Unlimited => None,
        }
    });
    Ok(counts)
}

pub fn collect(ctx: &ScrapeContext<'_>, out: &mut Exposition) {
    let mut rows = Vec::with_capacity(ctx.rows.len());
    for row in ctx.rows {
        match read(ctx.hierarchies, Path::new("/proc"), &row.path) {
            Ok(counts) => rows.push((row, counts)),
            Err(e) => ctx.failed("process", &e),
        }
    }
    write(out, &rows);
}

pub fn write(out: &mut Exposition, rows: &[(&Row, ProcessCounts)]) {
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
                out.sample(name, &row.labels, &[], value as f64);
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
                &row.labels,
                &[("ulimit", "max_open_files")],
                value as f64,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{collections::HashMap, fs, os::unix::fs::symlink};

    use super::*;

    const LIMITS: &str = "Limit                     Soft Limit           Hard Limit           Units     \n\
Max cpu time              unlimited            unlimited            seconds   \n\
Max file size             unlimited            unlimited            bytes     \n\
Max data size             unlimited            unlimited            bytes     \n\
Max stack size            8388608              unlimited            bytes     \n\
Max core file size        0                    unlimited            bytes     \n\
Max resident set          unlimited            unlimited            bytes     \n\
Max processes             95470                95470                processes \n\
Max open files            OPEN                 1048576              files     \n\
Max locked memory         8388608              8388608              bytes     \n\
Max address space         unlimited            unlimited            bytes     \n\
Max file locks            unlimited            unlimited            locks     \n\
Max pending signals       95470                95470                signals   \n\
Max msgqueue size         819200               819200               bytes     \n\
Max nice priority         0                    0                    \n\
Max realtime priority     0                    0                    \n\
Max realtime timeout      unlimited            unlimited            us        \n";

    /// A fake /proc entry: `fds` are symlink targets as the kernel shows them.
    fn fake_process(proc_root: &Path, pid: u32, fds: &[&str], open_files: &str) {
        let dir = proc_root.join(pid.to_string());
        fs::create_dir_all(dir.join("fd")).unwrap();
        for (i, target) in fds.iter().enumerate() {
            symlink(target, dir.join("fd").join(i.to_string())).unwrap();
        }
        fs::write(dir.join("limits"), LIMITS.replace("OPEN", open_files)).unwrap();
    }

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
    fn hybrid_counts_processes_fds_sockets_and_v1_pids() {
        let dir = tempfile::tempdir().unwrap();
        let h = layout(dir.path(), "", true);
        let proc_root = dir.path().join("proc");
        fake_process(
            &proc_root,
            10,
            &["/dev/null", "socket:[123]", "pipe:[5]", "socket:[124]"],
            "1024",
        );
        fake_process(&proc_root, 11, &["/tmp/x", "anon_inode:[eventfd]"], "4096");
        fs::create_dir_all(dir.path().join("unified/c")).unwrap();
        // 12 exited between listing and reading: skipped.
        fs::write(dir.path().join("unified/c/cgroup.procs"), "10\n12\n11\n").unwrap();
        fs::create_dir_all(dir.path().join("pids/c")).unwrap();
        fs::write(dir.path().join("pids/c/pids.current"), "7\n").unwrap();
        fs::write(dir.path().join("pids/c/pids.max"), "max\n").unwrap();

        let counts = read(&h, &proc_root, "/c").unwrap();
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
    fn v2_pids_limit_and_unlimited_open_files() {
        let dir = tempfile::tempdir().unwrap();
        let h = layout(dir.path(), "cpu pids memory\n", false);
        let proc_root = dir.path().join("proc");
        fake_process(&proc_root, 20, &[], "unlimited");
        fs::create_dir_all(dir.path().join("unified/c")).unwrap();
        fs::write(dir.path().join("unified/c/cgroup.procs"), "20\n").unwrap();
        fs::write(dir.path().join("unified/c/pids.current"), "1\n").unwrap();
        fs::write(dir.path().join("unified/c/pids.max"), "512\n").unwrap();
        let counts = read(&h, &proc_root, "/c").unwrap();
        assert_eq!(counts.threads_max, Some(512));
        assert_eq!(counts.file_descriptors, Some(0));
        assert_eq!(counts.max_open_files, None, "unlimited: no series");
    }

    #[test]
    fn absent_cgroup_gives_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let h = layout(dir.path(), "", true);
        let counts = read(&h, &dir.path().join("proc"), "/gone").unwrap();
        assert_eq!(counts, ProcessCounts::default());
        let row = Row::new(1, "/gone");
        let mut out = Exposition::default();
        write(&mut out, &[(&row, counts)]);
        assert!(!out.as_str().lines().any(|l| !l.starts_with('#')));
    }

    #[test]
    fn ulimit_series_carries_its_label() {
        let row = Row::new(1, "/c");
        let counts = ProcessCounts {
            max_open_files: Some(1024),
            processes: Some(2),
            ..ProcessCounts::default()
        };
        let mut out = Exposition::default();
        write(&mut out, &[(&row, counts)]);
        let text = out.into_string();
        assert!(
            text.contains("container_ulimits_soft{container=\"\",id=\"/c\",image=\"\",name=\"\",namespace=\"\",pod=\"\",ulimit=\"max_open_files\"} 1024\n"),
            "{text}"
        );
        assert!(text.contains("container_processes{"), "{text}");
    }
}
