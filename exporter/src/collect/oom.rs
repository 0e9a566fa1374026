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
//! container's own `id`. After the grace period its path is forgotten and its kills
//! count on the root row: the OOM map is not yet part of the retirement that moves
//! CPU and crash counters into the parent. A cgroup whose creation kadvisor never saw
//! (created, killed and removed before its inotify event was read) also counts on the
//! root row.
use std::collections::HashMap;

use super::{
    Row, ScrapeContext,
    exposition::{Exposition, MetricType},
};
use crate::cgroup::{PathMemory, ancestors};

pub const OOM_EVENTS: &str = "container_oom_events_total";

/// The program family whose attachment decides whether the family is served.
pub const FAMILY: &str = "oom";

/// Reads the kernel's kill counts; `None` when the hook is not attached on this
/// kernel (the family is left out rather than shown as zeros) or the map read
/// failed (reported).
pub fn read(ctx: &ScrapeContext<'_>) -> Option<HashMap<u64, u64>> {
    let attached = ctx
        .kernel
        .program_stats()
        .iter()
        .any(|s| s.family == FAMILY && s.attached);
    if !attached {
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
/// ends. After that the cgroup's path is forgotten and its kills count on the root
/// row (the OOM map is not part of the retirement of per-cgroup counters yet).
#[expect(clippy::cast_precision_loss, reason = "kill counts are far below 2^53")]
pub fn write(out: &mut Exposition, rows: &[Row], kills: &HashMap<u64, u64>, memory: &PathMemory) {
    let mut totals: HashMap<&str, u64> = HashMap::new();
    for (&id, &count) in kills {
        let path = memory.path(id).unwrap_or("/");
        for ancestor in ancestors(path) {
            *totals.entry(ancestor).or_default() += count;
        }
    }
    out.family(
        OOM_EVENTS,
        "Count of out of memory events observed for the container (kills of its tasks, including its descendants').",
        MetricType::Counter,
    );
    for row in rows {
        let count = totals.get(row.path.as_str()).copied().unwrap_or(0);
        out.sample(OOM_EVENTS, &row.labels, &[], count as f64);
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

        let mut out = Exposition::default();
        write(&mut out, &rows, &kills, &memory);
        let text = out.into_string();

        for (id, v) in [("/pod/b", 1), ("/pod/a", 2), ("/pod", 3), ("/", 3)] {
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
        let mut out = Exposition::default();
        write(&mut out, &rows, &kills, &memory);
        assert!(out.into_string().contains(&line("/", 2)));
    }
}
