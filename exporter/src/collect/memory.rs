//! Memory families: cAdvisor's `container_memory_*` gauges and counters and the
//! `container_spec_memory_*` limits, read at scrape time from what the kernel already
//! keeps exactly: each row's `memory.stat` (and v2 `memory.swap.current`, limits) from
//! its files, and the page counters behind the single-number files (v1
//! `memory.usage_in_bytes`, `max_usage_in_bytes`, `failcnt`, `kmem.usage_in_bytes`;
//! v2 `memory.current`, `memory.peak`) from the cgroup pass, one in-kernel walk of
//! the memory hierarchy per scrape (`bpf::KernelPrograms::cgroup_pass`). Where the
//! pass is not attached, or does not know a row's cgroup, those files are read.
//!
//! Each row's `memory.stat` is read and parsed once per scrape; every family is
//! derived from that one parse. A file that is missing (controller not enabled for
//! the cgroup, swap accounting off, `memory.peak` before 5.19, root cgroup) leaves
//! out that sample only.
//!
//! Root row (`id="/"`), as cAdvisor (runc's `rootStatsFromMeminfo`) does it: on v2 the
//! root has no `memory.current`, so usage is `anon + file` of the root `memory.stat`
//! and swap is `SwapTotal − SwapFree` of /proc/meminfo; on v1 the root has its own
//! `memory.usage_in_bytes`.
use super::{
    Row, ScrapeContext,
    samples::{MetricType, SampleSet},
};
use crate::{
    bpf::MemcgCounters,
    cgroup::{
        CgroupError, Controller, ControllerDir,
        files::{
            Value, flat_keyed, keyed_lines, keyed_number, read_optional, read_spec_values,
            read_value,
        },
    },
};

/// cAdvisor exports limits above 2^62 (v1's page-counter maximum
/// 9223372036854771712, v2's "max") as 0: "no limit".
const UNLIMITED_ABOVE: u64 = 1 << 62;

/// The memory state of one cgroup at one instant. `None` = not available there.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryStats {
    pub usage: Option<u64>,
    pub max_usage: Option<u64>,
    pub rss: Option<u64>,
    pub cache: Option<u64>,
    pub mapped_file: Option<u64>,
    pub swap: Option<u64>,
    pub kernel: Option<u64>,
    pub failcnt: Option<u64>,
    pub active_file: Option<u64>,
    pub inactive_file: Option<u64>,
    /// Page faults of the cgroup itself (`scope="container"`).
    pub pgfault: Option<u64>,
    pub pgmajfault: Option<u64>,
    /// Page faults including descendants (`scope="hierarchy"`).
    pub total_pgfault: Option<u64>,
    pub total_pgmajfault: Option<u64>,
    pub limit: Option<u64>,
    pub swap_limit: Option<u64>,
    pub reservation: Option<u64>,
    /// cAdvisor v0.60's v2-only reclaim detail (kadvisor's opt-in `memory_reclaim`
    /// group): memory.stat file_dirty, file_writeback, pgscan, pgsteal,
    /// workingset_refault_anon/_file; memory.events high and max (read only when
    /// the group is on).
    pub file_dirty: Option<u64>,
    pub file_writeback: Option<u64>,
    pub pgscan: Option<u64>,
    pub pgsteal: Option<u64>,
    pub refault_anon: Option<u64>,
    pub refault_file: Option<u64>,
    pub events_high: Option<u64>,
    pub events_max: Option<u64>,
}

impl MemoryStats {
    /// cAdvisor's working set: usage minus inactive file cache, floored at 0
    /// (inactive file pages are the first the kernel reclaims).
    pub fn working_set(&self) -> Option<u64> {
        self.usage
            .map(|usage| usage.saturating_sub(self.inactive_file.unwrap_or(0)))
    }
}

/// Host-wide swap in use (`SwapTotal − SwapFree`), the v2 root row's swap.
pub type RootSwap = Option<u64>;

/// Reads one cgroup's memory state. `Ok(None)` when its memory.stat does not exist
/// (no memory controller directory for this path).
/// `reclaim`: also read memory.events (the `memory_reclaim` group is on).
/// `counters`: the row's page counters from the cgroup pass, read instead of
/// their files.
pub fn read(
    dir: &ControllerDir,
    is_root: bool,
    root_swap: RootSwap,
    reclaim: bool,
    counters: Option<&MemcgCounters>,
) -> Result<Option<MemoryStats>, CgroupError> {
    match dir {
        ControllerDir::V2(_) => read_v2(dir, is_root, root_swap, reclaim, counters),
        ControllerDir::V1(_) => read_v1(dir, is_root, counters),
    }
}

fn number(dir: &ControllerDir, file: &str) -> Result<Option<u64>, CgroupError> {
    Ok(read_value(&dir.join(file))?.map(|v| v.or(u64::MAX)))
}

/// The limit files `names` of `dir`: "max" and anything above 2^62 become 0, as
/// cAdvisor exports them. Limits are spec files: read again only after their
/// directory changed (`cgroup::spec_files`).
fn limits(dir: &ControllerDir, names: [&str; 3]) -> Result<[Option<u64>; 3], CgroupError> {
    let (ControllerDir::V1(dir) | ControllerDir::V2(dir)) = dir;
    Ok(read_spec_values(dir, names)?.map(|value| {
        value.map(|v| match v {
            Value::Number(n) if n <= UNLIMITED_ABOVE => n,
            _ => 0,
        })
    }))
}

fn read_v2(
    dir: &ControllerDir,
    is_root: bool,
    root_swap: RootSwap,
    reclaim: bool,
    counters: Option<&MemcgCounters>,
) -> Result<Option<MemoryStats>, CgroupError> {
    let Some(stat) = read_optional(&dir.join("memory.stat"))? else {
        return Ok(None);
    };
    let mut s = MemoryStats::default();
    let (mut anon, mut file) = (None, None);
    for (key, value) in keyed_lines(&stat) {
        let field = match key {
            "anon" => &mut anon,
            "file" => &mut file,
            "file_mapped" => &mut s.mapped_file,
            "kernel" => &mut s.kernel,
            "active_file" => &mut s.active_file,
            "inactive_file" => &mut s.inactive_file,
            "pgfault" => &mut s.pgfault,
            "pgmajfault" => &mut s.pgmajfault,
            "file_dirty" => &mut s.file_dirty,
            "file_writeback" => &mut s.file_writeback,
            "pgscan" => &mut s.pgscan,
            "pgsteal" => &mut s.pgsteal,
            "workingset_refault_anon" => &mut s.refault_anon,
            "workingset_refault_file" => &mut s.refault_file,
            _ => continue,
        };
        *field = keyed_number(value);
    }
    if reclaim && !is_root {
        // The root has no memory.events.
        if let Some(events) = read_optional(&dir.join("memory.events"))? {
            for (key, value) in flat_keyed(&events) {
                match key {
                    "high" => s.events_high = Some(value),
                    "max" => s.events_max = Some(value),
                    _ => {}
                }
            }
        }
    }
    s.rss = anon;
    s.cache = file;
    // v2's memory.stat is hierarchical: both scopes are the same numbers (as in cAdvisor).
    s.total_pgfault = s.pgfault;
    s.total_pgmajfault = s.pgmajfault;
    if is_root {
        s.usage = anon.zip(file).map(|(a, f)| a + f);
        s.swap = root_swap;
    } else {
        if let Some(counters) = counters {
            s.usage = Some(counters.usage);
            s.max_usage = Some(counters.max_usage);
        } else {
            s.usage = number(dir, "memory.current")?;
            s.max_usage = number(dir, "memory.peak")?;
        }
        s.swap = number(dir, "memory.swap.current")?;
        [s.limit, s.swap_limit, s.reservation] =
            limits(dir, ["memory.max", "memory.swap.max", "memory.min"])?;
    }
    Ok(Some(s))
}

fn read_v1(
    dir: &ControllerDir,
    is_root: bool,
    counters: Option<&MemcgCounters>,
) -> Result<Option<MemoryStats>, CgroupError> {
    let Some(stat) = read_optional(&dir.join("memory.stat"))? else {
        return Ok(None);
    };
    let mut s = MemoryStats::default();
    for (key, value) in keyed_lines(&stat) {
        let field = match key {
            "total_rss" => &mut s.rss,
            "total_cache" => &mut s.cache,
            "total_mapped_file" => &mut s.mapped_file,
            // Present only with swap accounting (CONFIG_MEMCG_SWAP, swapaccount=1).
            "total_swap" => &mut s.swap,
            "total_active_file" => &mut s.active_file,
            "total_inactive_file" => &mut s.inactive_file,
            "pgfault" => &mut s.pgfault,
            "pgmajfault" => &mut s.pgmajfault,
            "total_pgfault" => &mut s.total_pgfault,
            "total_pgmajfault" => &mut s.total_pgmajfault,
            _ => continue,
        };
        *field = keyed_number(value);
    }
    match counters {
        Some(counters) => {
            // The root's usage file is computed from host-wide page states instead.
            s.usage = if is_root {
                number(dir, "memory.usage_in_bytes")?
            } else {
                Some(counters.usage)
            };
            s.max_usage = Some(counters.max_usage);
            s.failcnt = Some(counters.failcnt);
            s.kernel = match counters.kmem {
                Some(kmem) => Some(kmem),
                None => number(dir, "memory.kmem.usage_in_bytes")?,
            };
        }
        None => {
            s.usage = number(dir, "memory.usage_in_bytes")?;
            s.max_usage = number(dir, "memory.max_usage_in_bytes")?;
            s.kernel = number(dir, "memory.kmem.usage_in_bytes")?;
            s.failcnt = number(dir, "memory.failcnt")?;
        }
    }
    [s.limit, s.swap_limit, s.reservation] = limits(
        dir,
        [
            "memory.limit_in_bytes",
            "memory.memsw.limit_in_bytes",
            "memory.soft_limit_in_bytes",
        ],
    )?;
    Ok(Some(s))
}

/// Reads every row's memory state and writes the memory families.
pub fn collect(ctx: &ScrapeContext<'_>, out: &mut SampleSet) {
    let root_swap = ctx.root_swap;
    let pass = ctx.cgroup_pass().map(|pass| &pass.memory);
    let mut stats = Vec::with_capacity(ctx.rows.len());
    for (index, row) in ctx.rows.iter().enumerate() {
        let Some(dir) = ctx
            .hierarchies
            .controller_dir(Controller::Memory, &row.path)
        else {
            // No memory controller mounted at all: no memory families.
            return;
        };
        let read = || {
            let counters = pass.and_then(|pass| {
                let id =
                    ctx.hierarchy_id(Controller::Memory, row, &dir, |id| pass.contains_key(&id))?;
                pass.get(&id)
            });
            let stats = read(
                &dir,
                row.path == "/",
                root_swap,
                ctx.own.memory_reclaim,
                counters,
            );
            match stats {
                Ok(s) => Some(s),
                Err(e) => {
                    ctx.failed("memory", &e);
                    None
                }
            }
        };
        stats.push(ctx.row_value(index, |v| &mut v.memory, read).flatten());
    }
    write(out, ctx.rows, &stats);
}

type Field = fn(&MemoryStats) -> Option<u64>;

/// (name, help, type, field) of each single-valued family, in cAdvisor's order.
const FAMILIES: &[(&str, &str, MetricType, Field)] = &[
    (
        "container_memory_cache",
        "Number of bytes of page cache memory.",
        MetricType::Gauge,
        |s| s.cache,
    ),
    (
        "container_memory_events_high_total",
        "Number of times the memory usage hit the high limit (memory.events high).",
        MetricType::Counter,
        |s| s.events_high,
    ),
    (
        "container_memory_events_max_total",
        "Number of times the memory usage hit the max limit (memory.events max).",
        MetricType::Counter,
        |s| s.events_max,
    ),
    (
        "container_memory_failcnt",
        "Number of memory usage hits limits.",
        MetricType::Counter,
        |s| s.failcnt,
    ),
    (
        "container_memory_file_dirty_bytes",
        "Bytes of file cache waiting to be written back (memory.stat file_dirty).",
        MetricType::Gauge,
        |s| s.file_dirty,
    ),
    (
        "container_memory_file_writeback_bytes",
        "Bytes of file cache being written back (memory.stat file_writeback).",
        MetricType::Gauge,
        |s| s.file_writeback,
    ),
    (
        "container_memory_kernel_usage",
        "Size of kernel memory allocated in bytes.",
        MetricType::Gauge,
        |s| s.kernel,
    ),
    (
        "container_memory_mapped_file",
        "Size of memory mapped files in bytes.",
        MetricType::Gauge,
        |s| s.mapped_file,
    ),
    (
        "container_memory_max_usage_bytes",
        "Maximum memory usage recorded in bytes.",
        MetricType::Gauge,
        |s| s.max_usage,
    ),
    (
        "container_memory_pgscan_total",
        "Pages scanned by reclaim (memory.stat pgscan).",
        MetricType::Counter,
        |s| s.pgscan,
    ),
    (
        "container_memory_pgsteal_total",
        "Pages reclaimed (memory.stat pgsteal).",
        MetricType::Counter,
        |s| s.pgsteal,
    ),
    (
        "container_memory_rss",
        "Size of RSS in bytes.",
        MetricType::Gauge,
        |s| s.rss,
    ),
    (
        "container_memory_swap",
        "Container swap usage in bytes.",
        MetricType::Gauge,
        |s| s.swap,
    ),
    (
        "container_memory_total_active_file_bytes",
        "Current total active file in bytes.",
        MetricType::Gauge,
        |s| s.active_file,
    ),
    (
        "container_memory_total_inactive_file_bytes",
        "Current total inactive file in bytes.",
        MetricType::Gauge,
        |s| s.inactive_file,
    ),
    (
        "container_memory_usage_bytes",
        "Current memory usage in bytes, including all memory regardless of when it was accessed.",
        MetricType::Gauge,
        |s| s.usage,
    ),
    (
        "container_memory_workingset_refault_anon_total",
        "Refaults of previously evicted anonymous pages (memory.stat workingset_refault_anon).",
        MetricType::Counter,
        |s| s.refault_anon,
    ),
    (
        "container_memory_workingset_refault_file_total",
        "Refaults of previously evicted file pages (memory.stat workingset_refault_file).",
        MetricType::Counter,
        |s| s.refault_file,
    ),
    (
        "container_memory_working_set_bytes",
        "Current working set in bytes.",
        MetricType::Gauge,
        MemoryStats::working_set,
    ),
    (
        "container_spec_memory_limit_bytes",
        "Memory limit for the container (0: none).",
        MetricType::Gauge,
        |s| s.limit,
    ),
    (
        "container_spec_memory_reservation_limit_bytes",
        "Memory reservation for the container (0: none).",
        MetricType::Gauge,
        |s| s.reservation,
    ),
    (
        "container_spec_memory_swap_limit_bytes",
        "Memory swap limit for the container (0: none).",
        MetricType::Gauge,
        |s| s.swap_limit,
    ),
];

pub const FAILURES: &str = "container_memory_failures_total";

#[expect(
    clippy::cast_precision_loss,
    reason = "byte and fault counts below 2^53 are exact in f64; above, 1e-16 relative"
)]
pub fn write(out: &mut SampleSet, rows: &[Row], stats: &[Option<MemoryStats>]) {
    for &(name, help, kind, field) in FAMILIES {
        out.family(name, help, kind);
        for (row, s) in rows.iter().zip(stats) {
            if let Some(value) = s.as_ref().and_then(field) {
                out.sample(name, Some(&row.labels), &[], value as f64);
            }
        }
    }
    out.family(
        FAILURES,
        "Cumulative count of memory allocation failures.",
        MetricType::Counter,
    );
    for (row, s) in rows.iter().zip(stats) {
        let Some(s) = s else { continue };
        for (failure_type, scope, value) in [
            ("pgfault", "container", s.pgfault),
            ("pgmajfault", "container", s.pgmajfault),
            ("pgfault", "hierarchy", s.total_pgfault),
            ("pgmajfault", "hierarchy", s.total_pgmajfault),
        ] {
            if let Some(value) = value {
                out.sample(
                    FAILURES,
                    Some(&row.labels),
                    &[("failure_type", failure_type), ("scope", scope)],
                    value as f64,
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{collections::HashMap, fs, path::Path};

    use super::*;
    use crate::cgroup::Hierarchies;

    use crate::cgroup::files::write_files;

    const V2_STAT: &str = "anon 1000\nfile 5000\nkernel 300\nkernel_stack 16\nshmem 0\n\
        file_mapped 700\nactive_anon 900\ninactive_anon 100\nactive_file 3000\n\
        inactive_file 2000\npgfault 42\npgmajfault 3\nfile_dirty 11\nfile_writeback 12\n\
        pgscan 13\npgsteal 14\nworkingset_refault_anon 15\nworkingset_refault_file 16\n";

    const V1_STAT: &str = "cache 11\nrss 22\nmapped_file 33\npgfault 44\npgmajfault 5\n\
        inactive_file 66\nactive_file 77\nhierarchical_memory_limit 9223372036854771712\n\
        total_cache 1100\ntotal_rss 2200\ntotal_mapped_file 330\ntotal_pgfault 4400\n\
        total_pgmajfault 50\ntotal_inactive_file 600\ntotal_active_file 700\n";

    fn v2_hierarchies(root: &Path) -> Hierarchies {
        fs::write(root.join("cgroup.controllers"), "cpu io memory pids\n").unwrap();
        Hierarchies::from_parts(Some(root.to_owned()), HashMap::new()).unwrap()
    }

    #[test]
    fn v2_container_reads_current_peak_stat_swap_and_limits() {
        let dir = tempfile::tempdir().unwrap();
        let h = v2_hierarchies(dir.path());
        write_files(
            &dir.path().join("pod/c"),
            &[
                ("memory.stat", V2_STAT),
                ("memory.current", "6500\n"),
                ("memory.peak", "9000\n"),
                ("memory.swap.current", "128\n"),
                ("memory.max", "1048576\n"),
                ("memory.swap.max", "max\n"),
                ("memory.min", "0\n"),
                ("memory.events", "low 0\nhigh 4\nmax 2\noom 1\noom_kill 1\n"),
            ],
        );
        let d = h.controller_dir(Controller::Memory, "/pod/c").unwrap();
        let s = read(&d, false, Some(999), true, None).unwrap().unwrap();
        assert_eq!((s.events_high, s.events_max), (Some(4), Some(2)));
        assert_eq!(
            (s.file_dirty, s.file_writeback, s.pgscan, s.pgsteal),
            (Some(11), Some(12), Some(13), Some(14))
        );
        assert_eq!((s.refault_anon, s.refault_file), (Some(15), Some(16)));
        let lean = read(&d, false, Some(999), false, None).unwrap().unwrap();
        assert_eq!(lean.events_high, None, "memory.events read only when asked");
        let counters = MemcgCounters {
            usage: 4096,
            max_usage: 8192,
            failcnt: 3,
            kmem: None,
        };
        let p = read(&d, false, Some(999), false, Some(&counters))
            .unwrap()
            .unwrap();
        assert_eq!(
            (p.usage, p.max_usage, p.failcnt, p.swap),
            (Some(4096), Some(8192), None, Some(128)),
            "the pass's memory.current and memory.peak; no failcnt on v2"
        );
        assert_eq!(s.usage, Some(6500));
        assert_eq!(s.max_usage, Some(9000));
        assert_eq!(
            (s.rss, s.cache, s.mapped_file),
            (Some(1000), Some(5000), Some(700))
        );
        assert_eq!(
            s.swap,
            Some(128),
            "memory.swap.current, not the host's swap"
        );
        assert_eq!(s.kernel, Some(300));
        assert_eq!(s.failcnt, None, "no failcnt on v2");
        assert_eq!(s.working_set(), Some(4500), "usage - inactive_file");
        assert_eq!((s.active_file, s.inactive_file), (Some(3000), Some(2000)));
        assert_eq!((s.pgfault, s.total_pgfault), (Some(42), Some(42)));
        assert_eq!((s.pgmajfault, s.total_pgmajfault), (Some(3), Some(3)));
        assert_eq!(s.limit, Some(1_048_576));
        assert_eq!(s.swap_limit, Some(0), "max → 0");
        assert_eq!(s.reservation, Some(0));
    }

    #[test]
    fn v2_before_5_19_without_swap_accounting_leaves_those_samples_out() {
        let dir = tempfile::tempdir().unwrap();
        let h = v2_hierarchies(dir.path());
        // No memory.peak (< 5.19), no memory.swap.* (swap accounting off), memory.max "max".
        write_files(
            &dir.path().join("c"),
            &[
                ("memory.stat", "anon 10\nfile 20\ninactive_file 50\n"),
                ("memory.current", "30\n"),
                ("memory.max", "max\n"),
            ],
        );
        let d = h.controller_dir(Controller::Memory, "/c").unwrap();
        let s = read(&d, false, None, true, None).unwrap().unwrap();
        assert_eq!(s.max_usage, None);
        assert_eq!(s.swap, None);
        assert_eq!(s.swap_limit, None);
        assert_eq!(s.limit, Some(0), "max → 0 as cAdvisor exports it");
        assert_eq!(s.working_set(), Some(0), "floored at 0");
        assert_eq!(s.kernel, None, "memory.stat kernel appears in 5.18");

        let rows = [Row::new(2, "/c")];
        let mut out = SampleSet::default();
        write(&mut out, &rows, &[Some(s)]);
        let text = out.to_text();
        assert!(
            text.contains("# TYPE container_memory_max_usage_bytes gauge\n# HELP"),
            "family announced without samples: {text}"
        );
        assert!(!text.contains("container_memory_swap{"), "{text}");
        assert!(text.contains("container_spec_memory_limit_bytes{container=\"\",id=\"/c\",image=\"\",name=\"\",namespace=\"\",pod=\"\"} 0\n"), "{text}");
    }

    #[test]
    fn v2_root_uses_anon_plus_file_and_host_swap() {
        let dir = tempfile::tempdir().unwrap();
        let h = v2_hierarchies(dir.path());
        // The root has memory.stat but no memory.current/peak/max.
        write_files(dir.path(), &[("memory.stat", V2_STAT)]);
        let d = h.controller_dir(Controller::Memory, "/").unwrap();
        let s = read(&d, true, Some(4096), true, None).unwrap().unwrap();
        assert_eq!(s.usage, Some(6000), "anon + file");
        assert_eq!(s.working_set(), Some(4000));
        assert_eq!(s.swap, Some(4096), "SwapTotal - SwapFree");
        assert_eq!((s.max_usage, s.limit), (None, None));
    }

    #[test]
    fn v1_reads_total_keys_and_own_files() {
        let dir = tempfile::tempdir().unwrap();
        let memory = dir.path().join("memory");
        write_files(
            &memory.join("kubepods/pod1"),
            &[
                ("memory.stat", V1_STAT),
                ("memory.usage_in_bytes", "4000\n"),
                ("memory.max_usage_in_bytes", "8000\n"),
                ("memory.kmem.usage_in_bytes", "123\n"),
                ("memory.failcnt", "7\n"),
                ("memory.limit_in_bytes", "9223372036854771712\n"),
                ("memory.memsw.limit_in_bytes", "9223372036854771712\n"),
                ("memory.soft_limit_in_bytes", "1048576\n"),
            ],
        );
        let h =
            Hierarchies::from_parts(None, HashMap::from([("memory".to_owned(), memory)])).unwrap();
        let d = h
            .controller_dir(Controller::Memory, "/kubepods/pod1")
            .unwrap();
        let s = read(&d, false, Some(1), true, None).unwrap().unwrap();
        assert_eq!(s.usage, Some(4000));
        assert_eq!(s.max_usage, Some(8000));
        assert_eq!(
            (s.rss, s.cache, s.mapped_file),
            (Some(2200), Some(1100), Some(330))
        );
        assert_eq!(s.swap, None, "no total_swap without swap accounting");
        assert_eq!((s.kernel, s.failcnt), (Some(123), Some(7)));
        assert_eq!(s.working_set(), Some(3400), "usage - total_inactive_file");
        assert_eq!((s.pgfault, s.total_pgfault), (Some(44), Some(4400)));
        assert_eq!((s.pgmajfault, s.total_pgmajfault), (Some(5), Some(50)));
        assert_eq!(s.limit, Some(0), "page-counter maximum → 0");
        assert_eq!(s.swap_limit, Some(0));
        assert_eq!(s.reservation, Some(1_048_576));

        // With the cgroup pass: its page counters, not the files; the root's
        // usage still from its file (the kernel computes it from host-wide states).
        let counters = MemcgCounters {
            usage: 4096,
            max_usage: 8192,
            failcnt: 9,
            kmem: Some(1024),
        };
        let p = read(&d, false, Some(1), true, Some(&counters))
            .unwrap()
            .unwrap();
        assert_eq!(
            (p.usage, p.max_usage, p.failcnt, p.kernel),
            (Some(4096), Some(8192), Some(9), Some(1024))
        );
        assert_eq!(
            (p.rss, p.limit),
            (s.rss, s.limit),
            "the rest still from files"
        );
        let root = read(&d, true, Some(1), true, Some(&counters))
            .unwrap()
            .unwrap();
        assert_eq!((root.usage, root.max_usage), (Some(4000), Some(8192)));
        let no_kmem = MemcgCounters {
            kmem: None,
            ..counters
        };
        let p = read(&d, false, Some(1), true, Some(&no_kmem))
            .unwrap()
            .unwrap();
        assert_eq!(
            p.kernel,
            Some(123),
            "no kmem counter in the kernel: the file"
        );

        let mut out = SampleSet::default();
        write(&mut out, &[Row::new(5, "/kubepods/pod1")], &[Some(s)]);
        let text = out.to_text();
        for line in [
            "container_memory_working_set_bytes{container=\"\",id=\"/kubepods/pod1\",image=\"\",name=\"\",namespace=\"\",pod=\"\"} 3400\n",
            "container_memory_failures_total{container=\"\",id=\"/kubepods/pod1\",image=\"\",name=\"\",namespace=\"\",pod=\"\",failure_type=\"pgmajfault\",scope=\"hierarchy\"} 50\n",
            "container_memory_failcnt{container=\"\",id=\"/kubepods/pod1\",image=\"\",name=\"\",namespace=\"\",pod=\"\"} 7\n",
        ] {
            assert!(text.contains(line), "{line} missing from {text}");
        }
    }

    #[test]
    fn hybrid_reads_memory_from_v1_even_with_a_v2_root() {
        let dir = tempfile::tempdir().unwrap();
        let unified = dir.path().join("unified");
        let memory = dir.path().join("memory");
        // cgroup2 without the memory controller (hybrid): core files only.
        write_files(&unified.join("a"), &[("cgroup.controllers", "")]);
        fs::write(unified.join("cgroup.controllers"), "").unwrap();
        write_files(
            &memory.join("a"),
            &[
                ("memory.stat", V1_STAT),
                ("memory.usage_in_bytes", "5000\n"),
            ],
        );
        write_files(
            &memory,
            &[
                ("memory.stat", V1_STAT),
                ("memory.usage_in_bytes", "7000\n"),
            ],
        );
        let h = Hierarchies::from_parts(
            Some(unified),
            HashMap::from([("memory".to_owned(), memory)]),
        )
        .unwrap();
        let d = h.controller_dir(Controller::Memory, "/a").unwrap();
        assert!(matches!(d, ControllerDir::V1(_)));
        let s = read(&d, false, None, true, None).unwrap().unwrap();
        assert_eq!(s.usage, Some(5000));
        assert_eq!(s.working_set(), Some(4400));
        let root = h.controller_dir(Controller::Memory, "/").unwrap();
        let s = read(&root, true, Some(1), true, None).unwrap().unwrap();
        assert_eq!(
            s.usage,
            Some(7000),
            "v1 root: its own memory.usage_in_bytes"
        );
        assert_eq!(s.swap, None, "v1 root: total_swap only");
    }

    #[test]
    fn missing_cgroup_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let h = v2_hierarchies(dir.path());
        let d = h.controller_dir(Controller::Memory, "/gone").unwrap();
        assert_eq!(read(&d, false, None, true, None).unwrap(), None);
    }
}
