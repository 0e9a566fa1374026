//! Idle-row refresh: a row's file-based values (memory, blkio, process counts,
//! pressure, cpu/cpuacct files, `cgroup.procs`) are re-read only when something can
//! have changed them, cAdvisor's housekeeping done with the kernel's help.
//!
//! cAdvisor re-reads each container at an interval that backs off up to
//! `--max_housekeeping_interval` while its stats do not change. kadvisor knows for
//! free, from the kernel's hierarchical CPU counter, whether any task of a cgroup (or
//! of its descendants) ran since its files were last read. A cgroup none of whose
//! tasks ran cannot have forked, exited, opened files, issued IO or allocated memory
//! itself. What can still change without it running (reclaim of its page cache by
//! others, socket memory charged in softirq, writeback of earlier dirty pages, IO or
//! memory pressure of a task blocked for the whole interval, a limit written from
//! outside) shows within the maximum age, cAdvisor's own bound.
//!
//! A row is read when (a) its hierarchical CPU usage moved, (b) its values are older
//! than the maximum age, or (c) it is new. The root row, removed rows (read as
//! before: their files are gone) and rows whose CPU usage is unknown are read at
//! every scrape, and so is every row with a maximum age of 0. The kernel-map families
//! (CPU, network, crashes, OOM) are always read. Entries live only while their row
//! is exported: each scrape keeps the entries of its rows and drops the rest (retired
//! or filtered out), so memory follows the row count under churn.
use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use super::{
    Row,
    blkio::DeviceIo,
    cpu_stat::CpuFiles,
    memory::MemoryStats,
    pressure::RowPressure,
    process::ProcessCounts,
    samples::{MetricType, SampleSet},
};

/// The parsed per-row values of the file-based families. `None` = not read since the
/// row was last refreshed (or the read failed): the family reads it.
#[derive(Debug, Clone, Default)]
pub struct RowValues {
    pub memory: Option<Option<MemoryStats>>,
    pub blkio: Option<Option<Vec<DeviceIo>>>,
    pub process: Option<ProcessCounts>,
    pub pressure: Option<RowPressure>,
    pub cpu_files: Option<CpuFiles>,
    pub pids: Option<Option<Vec<u32>>>,
}

/// Why a row was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    CpuMoved,
    MaxAge,
    New,
}

const REASONS: [(Reason, &str); 3] = [
    (Reason::CpuMoved, "cpu_moved"),
    (Reason::MaxAge, "max_age"),
    (Reason::New, "new"),
];

#[derive(Debug)]
struct Entry {
    /// Hierarchical CPU usage (ns) when the values were read.
    cpu_ns: u64,
    read_at: Instant,
    values: RowValues,
}

/// Per-row values kept between scrapes, and this scrape's plan.
#[derive(Debug)]
pub struct RowCache {
    max_age: Duration,
    entries: HashMap<u64, Entry>,
    /// This scrape's rows: the id whose entry serves (and stores) the row, `None` =
    /// read and not kept.
    plan: Vec<Option<u64>>,
    refreshes: [u64; 3],
    /// Rows always read (root, removed, CPU unknown, max age 0), in total.
    uncached: u64,
    /// Rows served from the cache in the last scrape.
    cached: usize,
}

impl RowCache {
    /// Values older than `max_age` are re-read; `Duration::ZERO` reads every row at
    /// every scrape.
    pub fn new(max_age: Duration) -> Self {
        Self {
            max_age,
            entries: HashMap::new(),
            plan: Vec::new(),
            refreshes: [0; 3],
            uncached: 0,
            cached: 0,
        }
    }

    /// Plans one scrape. `rows` are this scrape's rows, the first `live` of them live;
    /// `usage(row)` is the row's hierarchical CPU usage in ns, `None` when unknown.
    pub fn begin(
        &mut self,
        rows: &[Row],
        live: usize,
        usage: impl Fn(&Row) -> Option<u64>,
        now: Instant,
    ) {
        self.plan.clear();
        self.cached = 0;
        if self.max_age.is_zero() {
            self.entries = HashMap::new();
            self.plan.resize(rows.len(), None);
            self.uncached += rows.len() as u64;
            return;
        }
        let mut kept = HashMap::with_capacity(rows.len().min(self.entries.len() + 64));
        for (index, row) in rows.iter().enumerate() {
            let cpu = usage(row).filter(|_| index < live && row.path != "/");
            let Some(cpu) = cpu else {
                self.plan.push(None);
                self.uncached += 1;
                continue;
            };
            let entry = self.entries.remove(&row.id);
            let reason = match &entry {
                None => Some(Reason::New),
                Some(e) if e.cpu_ns != cpu => Some(Reason::CpuMoved),
                Some(e) if now.saturating_duration_since(e.read_at) >= self.max_age => {
                    Some(Reason::MaxAge)
                }
                Some(_) => None,
            };
            let entry = match (reason, entry) {
                (None, Some(entry)) => {
                    self.cached += 1;
                    entry
                }
                (reason, _) => {
                    if let Some(slot) = REASONS.iter().position(|(r, _)| Some(*r) == reason) {
                        self.refreshes[slot] += 1;
                    }
                    Entry {
                        cpu_ns: cpu,
                        read_at: now,
                        values: RowValues::default(),
                    }
                }
            };
            kept.insert(row.id, entry);
            self.plan.push(Some(row.id));
        }
        self.entries = kept;
    }

    /// The kept values of this scrape's row `index`, `None` when the row is not kept.
    pub fn values(&mut self, index: usize) -> Option<&mut RowValues> {
        let id = (*self.plan.get(index)?)?;
        self.entries.get_mut(&id).map(|e| &mut e.values)
    }

    /// Entries held (one per kept row).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// `kadvisor_row_refreshes_total` and `kadvisor_rows_cached`.
    #[expect(
        clippy::cast_precision_loss,
        reason = "row counts stay exact in f64 up to 2^53"
    )]
    pub fn write_self_metrics(&self, out: &mut SampleSet) {
        let name = "kadvisor_row_refreshes_total";
        out.family(
            name,
            "Rows whose cgroupfs/procfs files were read, by reason: cpu_moved (a task of the cgroup ran since the last read), max_age (--max_housekeeping_interval elapsed), new, always (root, removed, CPU usage unknown, or --max_housekeeping_interval 0).",
            MetricType::Counter,
        );
        for ((_, reason), count) in REASONS.iter().zip(self.refreshes) {
            out.sample(name, None, &[("reason", reason)], count as f64);
        }
        out.sample(name, None, &[("reason", "always")], self.uncached as f64);
        let name = "kadvisor_rows_cached";
        out.family(
            name,
            "Rows served from values read at an earlier scrape in the last scrape (none of their tasks ran since, and the values are younger than --max_housekeeping_interval).",
            MetricType::Gauge,
        );
        out.sample(name, None, &[], self.cached as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows() -> Vec<Row> {
        vec![Row::new(1, "/"), Row::new(2, "/a"), Row::new(3, "/b")]
    }

    fn fill(cache: &mut RowCache, rows: usize) {
        for index in 0..rows {
            if let Some(values) = cache.values(index) {
                values.process = Some(ProcessCounts::default());
            }
        }
    }

    #[test]
    fn quiet_rows_are_served_until_cpu_moves_or_they_age() {
        let rows = rows();
        let mut cache = RowCache::new(Duration::from_secs(15));
        let t0 = Instant::now();
        let usage = |cpu_b: u64| move |row: &Row| Some(if row.id == 3 { cpu_b } else { 7 });

        cache.begin(&rows, 3, usage(100), t0);
        assert!(cache.values(0).is_none(), "the root is always read");
        assert!(
            cache.values(1).unwrap().process.is_none(),
            "new rows are read"
        );
        fill(&mut cache, 3);
        assert_eq!(cache.refreshes, [0, 0, 2]);

        cache.begin(&rows, 3, usage(100), t0 + Duration::from_secs(5));
        assert!(cache.values(1).unwrap().process.is_some());
        assert!(cache.values(2).unwrap().process.is_some());
        assert_eq!(cache.cached, 2);

        cache.begin(&rows, 3, usage(101), t0 + Duration::from_secs(10));
        assert!(cache.values(1).unwrap().process.is_some());
        assert!(cache.values(2).unwrap().process.is_none(), "its CPU moved");
        fill(&mut cache, 3);
        assert_eq!(cache.refreshes, [1, 0, 2]);

        cache.begin(&rows, 3, usage(101), t0 + Duration::from_secs(15));
        assert!(cache.values(1).unwrap().process.is_none(), "15 s old");
        assert!(cache.values(2).unwrap().process.is_some(), "read at 10 s");
        assert_eq!(cache.refreshes, [1, 1, 2]);
    }

    #[test]
    fn removed_unknown_and_dropped_rows_are_not_kept() {
        let rows = rows();
        let mut cache = RowCache::new(Duration::from_secs(15));
        let now = Instant::now();
        // Row 2 (/b) is removed; /a's CPU usage is unknown.
        cache.begin(&rows, 2, |row| (row.id != 2).then_some(1), now);
        assert!(cache.values(1).is_none());
        assert!(cache.values(2).is_none());
        assert!(cache.is_empty());
        cache.begin(&rows[..2], 2, |_| Some(1), now);
        assert_eq!(cache.len(), 1);
        cache.begin(&rows[..1], 1, |_| Some(1), now);
        assert!(cache.is_empty(), "entries follow the rows");
    }

    #[test]
    fn zero_max_age_reads_every_row() {
        let rows = rows();
        let mut cache = RowCache::new(Duration::ZERO);
        let now = Instant::now();
        for _ in 0..2 {
            cache.begin(&rows, 3, |_| Some(1), now);
            assert!((0..3).all(|i| cache.values(i).is_none()));
        }
        assert!(cache.is_empty());
        assert_eq!(cache.uncached, 6);
    }
}
