//! `container_oom_events_total`: OOM kills counted in the kernel (`kernel/src/oom.rs`)
//! under the cgroup v2 id of the killed task, so a kill is never lost to a container
//! that is gone before the next scrape (cAdvisor, parsing /dev/kmsg into its
//! in-memory container list, loses those: cadvisor#3015).
//!
//! Counts are hierarchical, like every other kadvisor counter and like v2's
//! `memory.events oom_kill`: a pod row counts the kills of its containers.
//!
//! A removed cgroup stays a row for the grace period (`cgroup::discovery`), so a kill
//! followed at once by the container's removal is still visible under the
//! container's own `id`. After the grace period the cgroup is retired like for CPU
//! and crashes: its kills are folded into its parent's path (a container's into its
//! pod row, which keeps counting them) and its map entry is deleted. A cgroup whose
//! creation kadvisor never saw (created, killed and removed before its inotify event
//! was read) counts on the root row.
use std::collections::HashMap;

use super::{
    Row, ScrapeContext,
    cpu::hierarchical_totals,
    samples::{MetricType, SampleSet},
};
use crate::cgroup::{PathMemory, RetiredTotals};

pub const OOM_EVENTS: &str = "container_oom_events_total";
/// Name of the kill counter in the retired-totals store.
pub use crate::bpf::counters::OOM_KILLS as COUNTER;

/// The program family whose attachment decides whether the family is served.
pub const FAMILY: &str = "oom";
/// The program that records the kill's SIGKILL, which every counted mark needs.
const SIGNAL_PROGRAM: &str = "oom_kill_signal";

/// Writes the family when the OOM hook is attached.
pub fn collect(ctx: &ScrapeContext<'_>, out: &mut SampleSet) {
    if let Some(kills) = read(ctx) {
        write(out, ctx.rows, kills, ctx.paths, ctx.retired);
    }
}

/// Reads the kernel's kill counts; `None` when the hook is not attached on this
/// kernel (the family is left out rather than shown as zeros) or the map read
/// failed (reported).
pub fn read<'a>(ctx: &'a ScrapeContext<'_>) -> Option<&'a HashMap<u64, u64>> {
    let stats = ctx.kernel.program_stats();
    let attached = |name: &str| stats.iter().any(|s| s.name == name && s.attached);
    // A mark counts only after the kill's SIGKILL (kernel/src/oom.rs): without the
    // signal program every kill would be missed, so the family is left out.
    let marks = stats
        .iter()
        .any(|s| s.family == FAMILY && s.name != SIGNAL_PROGRAM && s.attached);
    if !(attached(SIGNAL_PROGRAM) && marks) {
        return None;
    }
    match ctx.kernel.cgroup_oom_kills() {
        Ok(kills) => Some(kills),
        Err(e) => {
            ctx.failed("oom", &e);
            None
        }
    }
}

/// Writes the family for every row. Removed cgroups inside their grace period are
/// rows too (see `cgroup::discovery`), so a kill followed at once by the container's
/// removal is still shown under the container's own `id` until the grace period
/// ends. After that its kills are in `retired` under its parent's path.
#[expect(clippy::cast_precision_loss, reason = "kill counts are far below 2^53")]
pub fn write(
    out: &mut SampleSet,
    rows: &[Row],
    kills: &HashMap<u64, u64>,
    memory: &PathMemory,
    retired: &RetiredTotals,
) {
    let totals = hierarchical_totals(kills, memory, retired.of(COUNTER));
    out.family(
        OOM_EVENTS,
        "Count of out of memory events observed for the container (kills of its tasks, including its descendants').",
        MetricType::Counter,
    );
    for row in rows {
        let count = totals.get(row.path.as_str()).copied().unwrap_or(0);
        out.sample(OOM_EVENTS, Some(&row.labels), &[], count as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(id: &str, v: u64) -> String {
        format!(
            "{OOM_EVENTS}{{container=\"\",id=\"{id}\",image=\"\",name=\"\",namespace=\"\",pod=\"\"}} {v}\n"
        )
    }

    #[test]
    fn kills_count_on_the_row_and_its_ancestors() {
        let mut memory = PathMemory::default();
        for (id, path) in [(1, "/"), (2, "/pod"), (3, "/pod/a"), (4, "/pod/b")] {
            memory.insert(id, path);
        }
        // /pod/b was removed but is inside its grace period: still a row.
        let rows: Vec<Row> = [(1, "/"), (2, "/pod"), (3, "/pod/a"), (4, "/pod/b")]
            .iter()
            .map(|(id, path)| Row::new(*id, path))
            .collect();
        let kills = HashMap::from([(4, 1), (3, 2)]);

        let mut out = SampleSet::default();
        write(&mut out, &rows, &kills, &memory, &RetiredTotals::default());
        let text = out.to_text();

        for (id, v) in [("/pod/b", 1), ("/pod/a", 2), ("/pod", 3), ("/", 3)] {
            assert!(
                text.contains(&line(id, v)),
                "{id} {v} missing from:\n{text}"
            );
        }
    }

    #[test]
    fn kills_of_a_retired_container_stay_on_its_pod() {
        let mut memory = PathMemory::default();
        for (id, path) in [(1, "/"), (2, "/pod"), (3, "/pod/a")] {
            memory.insert(id, path);
        }
        let rows: Vec<Row> = [(1, "/"), (2, "/pod"), (3, "/pod/a")]
            .iter()
            .map(|(id, path)| Row::new(*id, path))
            .collect();
        // /pod/b was killed once and retired (entry deleted, kill folded into /pod).
        let mut retired = RetiredTotals::default();
        retired.retire("/pod/b", &[(COUNTER, 1)]);
        let kills = HashMap::from([(3, 2)]);
        let mut out = SampleSet::default();
        write(&mut out, &rows, &kills, &memory, &retired);
        let text = out.to_text();
        for (id, v) in [("/pod/a", 2), ("/pod", 3), ("/", 3)] {
            assert!(
                text.contains(&line(id, v)),
                "{id} {v} missing from:\n{text}"
            );
        }
    }

    #[test]
    fn kills_of_a_forgotten_cgroup_count_on_the_root() {
        let mut memory = PathMemory::default();
        memory.insert(1, "/");
        let rows = vec![Row::new(1, "/")];
        let kills = HashMap::from([(99, 2)]);
        let mut out = SampleSet::default();
        write(&mut out, &rows, &kills, &memory, &RetiredTotals::default());
        assert!(out.to_text().contains(&line("/", 2)));
    }
}
