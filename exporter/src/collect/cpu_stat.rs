//! CPU families the kernel already keeps exactly in cgroupfs:
//!
//! | family | v2 | v1 |
//! |---|---|---|
//! | `container_cpu_{user,system}_seconds_total` | `cpu.stat` user_usec/system_usec (µs) | `cpuacct.stat` user/system (USER_HZ ticks) |
//! | `container_cpu_cfs_{periods,throttled_periods}_total`, `_throttled_seconds_total` | `cpu.stat` nr_periods/nr_throttled/throttled_usec | `cpu.stat` nr_periods/nr_throttled/throttled_time (ns) |
//! | `container_spec_cpu_period` / `_quota` / `_shares` | `cpu.max`, `cpu.weight` (→ shares) | `cpu.cfs_period_us`, `cpu.cfs_quota_us`, `cpu.shares` |
//!
//! User/system time prefers the cgroup v2 `cpu.stat`, which every v2 cgroup has (even
//! on hybrid hosts with no controller enabled in the unified tree) and which counts in
//! µs; v1's `cpuacct.stat` counts in 10 ms ticks. Throttling counters and the quota
//! are served only for cgroups with a quota, as cAdvisor does.
use std::path::Path;

use super::{
    Row, ScrapeContext,
    cpu::ns_to_seconds,
    samples::{MetricType, SampleSet},
};
use crate::cgroup::{
    CgroupError, Controller, ControllerDir, Hierarchies,
    files::{
        Value, keyed_value, parse_cpu_max, read_optional, read_shared, read_spec_value,
        read_spec_values, weight_to_shares,
    },
    spec_files::read_spec_with,
};

/// What the cpu and cpuacct files say about one cgroup; `None` where a file is absent.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuFiles {
    pub user_seconds: Option<f64>,
    pub system_seconds: Option<f64>,
    /// Period in µs, quota in µs (`None` when unlimited), shares.
    pub period_us: Option<u64>,
    pub quota_us: Option<u64>,
    pub shares: Option<u64>,
    pub throttling: Option<Throttling>,
}

/// CFS bandwidth counters of a cgroup.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Throttling {
    pub periods: u64,
    pub throttled_periods: u64,
    pub throttled_seconds: f64,
    /// Periods in which the cgroup used its burst allowance and the time it ran
    /// beyond its quota (`nr_bursts`, `burst_usec`/`burst_time`; Linux ≥ 5.14).
    pub bursts: Option<u64>,
    pub burst_seconds: Option<f64>,
}

/// USER_HZ, the unit of `cpuacct.stat`.
fn user_hz() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 { hz as f64 } else { 100.0 }
}

/// Reads one cgroup's files.
pub fn read(hierarchies: &Hierarchies, path: &str) -> Result<CpuFiles, CgroupError> {
    let mut files = CpuFiles::default();
    // The v2 cpu.stat serves user/system and throttling: read once.
    let v2_stat = match hierarchies.v2_dir(path) {
        // Shared with the CPU usage family (`cpu::live_usage_ns`): one read per scrape.
        Some(dir) => read_shared(&dir.join("cpu.stat"))?,
        None => None,
    };
    read_user_system(hierarchies, path, v2_stat.as_deref(), &mut files)?;
    match hierarchies.controller_dir(Controller::Cpu, path) {
        Some(ControllerDir::V2(dir)) => read_cpu_v2(&dir, v2_stat.as_deref(), &mut files)?,
        Some(ControllerDir::V1(dir)) => read_cpu_v1(&dir, &mut files)?,
        None => {}
    }
    if files.quota_us.is_none() {
        files.throttling = None;
    }
    Ok(files)
}

fn read_user_system(
    hierarchies: &Hierarchies,
    path: &str,
    v2_stat: Option<&str>,
    files: &mut CpuFiles,
) -> Result<(), CgroupError> {
    if let Some(text) = v2_stat
        && let (Some(user), Some(system)) = (
            keyed_value(text, "user_usec"),
            keyed_value(text, "system_usec"),
        )
    {
        files.user_seconds = Some(user as f64 / 1e6);
        files.system_seconds = Some(system as f64 / 1e6);
        return Ok(());
    }
    if let Some(ControllerDir::V1(dir)) = hierarchies.controller_dir(Controller::Cpuacct, path)
        && let Some(text) = read_optional(&dir.join("cpuacct.stat"))?
    {
        let hz = user_hz();
        files.user_seconds = keyed_value(&text, "user").map(|t| t as f64 / hz);
        files.system_seconds = keyed_value(&text, "system").map(|t| t as f64 / hz);
    }
    Ok(())
}

fn read_cpu_v2(dir: &Path, stat: Option<&str>, files: &mut CpuFiles) -> Result<(), CgroupError> {
    if let Some((quota, period)) =
        read_spec_with(&dir.join("cpu.max"), |text| text.and_then(parse_cpu_max))?
    {
        files.period_us = Some(period);
        files.quota_us = match quota {
            Value::Number(q) => Some(q),
            Value::Max => None,
        };
    }
    files.shares = match read_spec_value(&dir.join("cpu.weight"))? {
        Some(Value::Number(weight)) => Some(weight_to_shares(weight)),
        _ => None,
    };
    if files.quota_us.is_none() {
        // Throttling is only exported with a quota (see `read`): skip the read.
        return Ok(());
    }
    files.throttling = stat.and_then(|text| {
        Some(Throttling {
            periods: keyed_value(text, "nr_periods")?,
            throttled_periods: keyed_value(text, "nr_throttled")?,
            throttled_seconds: keyed_value(text, "throttled_usec")? as f64 / 1e6,
            bursts: keyed_value(text, "nr_bursts"),
            burst_seconds: keyed_value(text, "burst_usec").map(|us| us as f64 / 1e6),
        })
    });
    Ok(())
}

fn read_cpu_v1(dir: &Path, files: &mut CpuFiles) -> Result<(), CgroupError> {
    let number = |value| match value {
        Some(Value::Number(n)) => Some(n),
        _ => None,
    };
    let [period, quota, shares] =
        read_spec_values(dir, ["cpu.cfs_period_us", "cpu.cfs_quota_us", "cpu.shares"])?;
    (files.period_us, files.quota_us, files.shares) =
        (number(period), number(quota), number(shares));
    if files.quota_us.is_none() {
        // Throttling is only exported with a quota (see `read`): skip the read.
        return Ok(());
    }
    files.throttling = read_optional(&dir.join("cpu.stat"))?.and_then(|text| {
        Some(Throttling {
            periods: keyed_value(&text, "nr_periods")?,
            throttled_periods: keyed_value(&text, "nr_throttled")?,
            throttled_seconds: ns_to_seconds(keyed_value(&text, "throttled_time")?),
            bursts: keyed_value(&text, "nr_bursts"),
            burst_seconds: keyed_value(&text, "burst_time").map(ns_to_seconds),
        })
    });
    Ok(())
}

/// Writes every family of this module for every row.
pub fn collect(ctx: &ScrapeContext<'_>, out: &mut SampleSet) {
    let mut rows: Vec<(&Row, CpuFiles)> = Vec::with_capacity(ctx.rows.len());
    for (index, row) in ctx.rows.iter().enumerate() {
        let read = || match read(ctx.hierarchies, &row.path) {
            Ok(files) => Some(files),
            Err(e) => {
                ctx.failed("cpu_stat", &e);
                None
            }
        };
        if let Some(files) = ctx.row_value(index, |v| &mut v.cpu_files, read) {
            rows.push((row, files));
        }
    }
    write(out, &rows);
}

/// Writes the families from already-read files.
pub fn write(out: &mut SampleSet, rows: &[(&Row, CpuFiles)]) {
    type Field = fn(&CpuFiles) -> Option<f64>;
    let families: [(&str, &str, MetricType, Field); 10] = [
        (
            "container_cpu_user_seconds_total",
            "Cumulative user cpu time consumed in seconds.",
            MetricType::Counter,
            |f| f.user_seconds,
        ),
        (
            "container_cpu_system_seconds_total",
            "Cumulative system cpu time consumed in seconds.",
            MetricType::Counter,
            |f| f.system_seconds,
        ),
        (
            "container_cpu_cfs_periods_total",
            "Number of elapsed enforcement period intervals.",
            MetricType::Counter,
            |f| f.throttling.map(|t| t.periods as f64),
        ),
        (
            "container_cpu_cfs_throttled_periods_total",
            "Number of throttled period intervals.",
            MetricType::Counter,
            |f| f.throttling.map(|t| t.throttled_periods as f64),
        ),
        (
            "container_cpu_cfs_throttled_seconds_total",
            "Total time duration the container has been throttled.",
            MetricType::Counter,
            |f| f.throttling.map(|t| t.throttled_seconds),
        ),
        // cAdvisor v0.60; kadvisor's opt-in `cpu_burst` group (shaping leaves them
        // out otherwise: they come from the cpu.stat read anyway).
        (
            "container_cpu_cfs_burst_periods_total",
            "Number of periods in which the container used its CFS burst allowance.",
            MetricType::Counter,
            |f| f.throttling.and_then(|t| t.bursts).map(|b| b as f64),
        ),
        (
            "container_cpu_cfs_burst_seconds_total",
            "Total time the container ran beyond its CFS quota using its burst allowance.",
            MetricType::Counter,
            |f| f.throttling.and_then(|t| t.burst_seconds),
        ),
        (
            "container_spec_cpu_period",
            "CPU period of the container.",
            MetricType::Gauge,
            |f| f.period_us.map(|p| p as f64),
        ),
        (
            "container_spec_cpu_quota",
            "CPU quota of the container.",
            MetricType::Gauge,
            |f| f.quota_us.map(|q| q as f64),
        ),
        (
            "container_spec_cpu_shares",
            "CPU share of the container.",
            MetricType::Gauge,
            |f| f.shares.map(|s| s as f64),
        ),
    ];
    for (name, help, kind, field) in families {
        out.family(name, help, kind);
        for (row, files) in rows {
            if let Some(value) = field(files) {
                out.sample(name, Some(&row.labels), &[], value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{collections::HashMap, fs};

    use super::*;

    use crate::cgroup::files::write_files;

    /// A hybrid host: cgroup2 without controllers at `unified`, v1 cpu and cpuacct.
    fn hybrid(root: &Path) -> Hierarchies {
        fs::create_dir_all(root.join("unified")).unwrap();
        fs::write(root.join("unified/cgroup.controllers"), "").unwrap();
        let v1 = HashMap::from([
            ("cpu".to_owned(), root.join("cpu")),
            ("cpuacct".to_owned(), root.join("cpuacct")),
        ]);
        Hierarchies::from_parts(Some(root.join("unified")), v1).unwrap()
    }

    fn pure_v2(root: &Path) -> Hierarchies {
        write_files(root, &[("cgroup.controllers", "cpu memory pids io\n")]);
        Hierarchies::from_parts(Some(root.to_owned()), HashMap::new()).unwrap()
    }

    #[test]
    fn v2_with_quota() {
        let dir = tempfile::tempdir().unwrap();
        let h = pure_v2(dir.path());
        write_files(
            &dir.path().join("pod/c"),
            &[
                (
                    "cpu.stat",
                    "usage_usec 3000000\nuser_usec 2500000\nsystem_usec 500000\nnr_periods 40\nnr_throttled 12\nthrottled_usec 1500000\n",
                ),
                ("cpu.max", "20000 100000\n"),
                ("cpu.weight", "100\n"),
            ],
        );
        let files = read(&h, "/pod/c").unwrap();
        assert_eq!(
            files,
            CpuFiles {
                user_seconds: Some(2.5),
                system_seconds: Some(0.5),
                period_us: Some(100_000),
                quota_us: Some(20_000),
                shares: Some(2597),
                throttling: Some(Throttling {
                    periods: 40,
                    throttled_periods: 12,
                    throttled_seconds: 1.5,
                    bursts: None,
                    burst_seconds: None,
                }),
            }
        );
    }

    #[test]
    fn v2_unlimited_has_no_quota_and_no_throttling() {
        let dir = tempfile::tempdir().unwrap();
        let h = pure_v2(dir.path());
        write_files(
            &dir.path().join("c"),
            &[
                (
                    "cpu.stat",
                    "user_usec 1\nsystem_usec 2\nnr_periods 0\nnr_throttled 0\nthrottled_usec 0\n",
                ),
                ("cpu.max", "max 100000\n"),
                ("cpu.weight", "50\n"),
            ],
        );
        let files = read(&h, "/c").unwrap();
        assert_eq!(files.quota_us, None);
        assert_eq!(files.period_us, Some(100_000));
        assert_eq!(files.throttling, None, "throttling only with a quota");
        assert_eq!(files.shares, Some(weight_to_shares(50)));
    }

    #[test]
    fn hybrid_reads_user_system_from_v2_and_bandwidth_from_v1() {
        let dir = tempfile::tempdir().unwrap();
        let h = hybrid(dir.path());
        write_files(
            &dir.path().join("unified/c"),
            &[(
                "cpu.stat",
                "usage_usec 9\nuser_usec 6000\nsystem_usec 3000\n",
            )],
        );
        write_files(
            &dir.path().join("cpu/c"),
            &[
                (
                    "cpu.stat",
                    "nr_periods 10\nnr_throttled 4\nthrottled_time 2500000000\nnr_bursts 3\nburst_time 1500000000\n",
                ),
                ("cpu.cfs_period_us", "100000\n"),
                ("cpu.cfs_quota_us", "20000\n"),
                ("cpu.shares", "1024\n"),
            ],
        );
        write_files(
            &dir.path().join("cpuacct/c"),
            &[("cpuacct.stat", "user 100\nsystem 50\n")],
        );
        let files = read(&h, "/c").unwrap();
        assert_eq!(
            files.user_seconds,
            Some(0.006),
            "v2 µs preferred over ticks"
        );
        assert_eq!(files.system_seconds, Some(0.003));
        assert_eq!(files.shares, Some(1024));
        assert_eq!(files.quota_us, Some(20_000));
        assert_eq!(
            files.throttling,
            Some(Throttling {
                periods: 10,
                throttled_periods: 4,
                throttled_seconds: 2.5,
                bursts: Some(3),
                burst_seconds: Some(1.5),
            })
        );
    }

    #[test]
    fn v1_falls_back_to_cpuacct_ticks_and_minus_one_is_unlimited() {
        let dir = tempfile::tempdir().unwrap();
        let h = hybrid(dir.path());
        // No v2 directory for this cgroup: only v1 files.
        write_files(
            &dir.path().join("cpu/c"),
            &[
                (
                    "cpu.stat",
                    "nr_periods 0\nnr_throttled 0\nthrottled_time 0\n",
                ),
                ("cpu.cfs_period_us", "100000\n"),
                ("cpu.cfs_quota_us", "-1\n"),
                ("cpu.shares", "2\n"),
            ],
        );
        write_files(
            &dir.path().join("cpuacct/c"),
            &[("cpuacct.stat", "user 250\nsystem 50\n")],
        );
        let files = read(&h, "/c").unwrap();
        let hz = user_hz();
        assert_eq!(files.user_seconds, Some(250.0 / hz));
        assert_eq!(files.system_seconds, Some(50.0 / hz));
        assert_eq!(files.quota_us, None);
        assert_eq!(files.throttling, None);
        assert_eq!(files.shares, Some(2));
    }

    #[test]
    fn absent_files_give_no_samples_and_no_error() {
        let dir = tempfile::tempdir().unwrap();
        let h = hybrid(dir.path());
        let files = read(&h, "/nowhere").unwrap();
        assert_eq!(files, CpuFiles::default());
        let row = Row::new(1, "/nowhere");
        let mut out = SampleSet::default();
        write(&mut out, &[(&row, files)]);
        let text = out.to_text();
        assert!(!text.lines().any(|l| !l.starts_with('#')), "{text}");
        assert!(text.contains("# TYPE container_spec_cpu_quota gauge"));
    }

    #[test]
    fn rows_render_with_their_labels() {
        let row = Row::new(1, "/c");
        let files = CpuFiles {
            user_seconds: Some(1.25),
            quota_us: Some(20_000),
            ..CpuFiles::default()
        };
        let mut out = SampleSet::default();
        write(&mut out, &[(&row, files)]);
        let text = out.to_text();
        assert!(
            text.contains("container_cpu_user_seconds_total{container=\"\",id=\"/c\",image=\"\",name=\"\",namespace=\"\",pod=\"\"} 1.25\n"),
            "{text}"
        );
        assert!(text.contains("container_spec_cpu_quota{"), "{text}");
        assert!(
            !text.contains("container_cpu_system_seconds_total{"),
            "{text}"
        );
    }
}
