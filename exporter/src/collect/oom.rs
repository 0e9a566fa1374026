//! `container_oom_events_total`: OOM kills counted in the kernel (`kernel/src/oom.rs`)
//! under the cgroup v2 id of the killed task, so a kill is never lost to a container
//! that is gone before the next scrape (cAdvisor, parsing /dev/kmsg into its
//! in-memory container list, loses those: cadvisor#3015).
//!
//! Counts are hierarchical, like every other kadvisor counter and like v2's
//! `memory.events oom_kill`: a pod row counts the kills of its containers, and the
//! count of a removed cgroup still rolls up into its ancestors (`PathMemory` keeps its
//! path while the kernel map holds its id).
//!
//! A removed cgroup's own row is emitted too, from the `removed` rows the collector
//! passes in (paths of ids that `PathMemory` still holds but the live tree no longer
//! has), as long as its kills are in the map — so a kill followed at once by the
//! container's removal is still visible under the container's own `id`. Only this
//! family carries such rows for now; how long removed rows stay is the runtime
//! issue's grace period (the kernel map keeps the entry until then).
//!
//! A cgroup created, OOM-killed and removed entirely between two scrapes was never
//! seen by a walk, so its path is unknown: its kills are credited to the root row.
use std::collections::{HashMap, HashSet};

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

/// Writes the family for the live rows and for removed rows that still have kills.
#[expect(clippy::cast_precision_loss, reason = "kill counts are far below 2^53")]
pub fn write(
    out: &mut Exposition,
    rows: &[Row],
    removed: &[Row],
    kills: &HashMap<u64, u64>,
    memory: &PathMemory,
) {
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
    let live: HashSet<&str> = rows.iter().map(|r| r.path.as_str()).collect();
    for row in rows {
        let count = totals.get(row.path.as_str()).copied().unwrap_or(0);
        out.sample(OOM_EVENTS, &row.labels, &[], count as f64);
    }
    let mut emitted = HashSet::new();
    for row in removed {
        // A removed cgroup whose path is live again (recreated) is already counted in
        // that row; one series per label set.
        if kills.get(&row.id).is_some_and(|&c| c > 0)
            && !live.contains(row.path.as_str())
            && emitted.insert(row.path.as_str())
        {
            let count = totals.get(row.path.as_str()).copied().unwrap_or(0);
            out.sample(OOM_EVENTS, &row.labels, &[], count as f64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::Cgroup;

    fn cg(id: u64, path: &str) -> Cgroup {
        Cgroup {
            id,
            path: path.to_owned(),
        }
    }

    #[test]
    fn kills_of_a_removed_cgroup_show_on_its_row_and_its_parents() {
        let mut memory = PathMemory::default();
        let before = [cg(1, "/"), cg(2, "/pod"), cg(3, "/pod/a"), cg(4, "/pod/b")];
        memory.update(&before, |_| true);
        let kills = HashMap::from([(4, 1), (3, 2), (99, 1)]);
        // /pod/b is removed; its kill count keeps its path.
        let live = [cg(1, "/"), cg(2, "/pod"), cg(3, "/pod/a")];
        memory.hold(kills.keys().copied());
        memory.update(&live, |_| false);
        let rows: Vec<Row> = live.iter().map(|c| Row::new(c.id, &c.path)).collect();
        let removed: Vec<Row> = memory
            .removed(&live)
            .map(|(id, path)| Row::new(id, path))
            .collect();

        let mut out = Exposition::default();
        write(&mut out, &rows, &removed, &kills, &memory);
        let text = out.into_string();

        let line = |id: &str, v: u64| {
            format!(
                "{OOM_EVENTS}{{container=\"\",id=\"{id}\",image=\"\",name=\"\",namespace=\"\",pod=\"\"}} {v}\n"
            )
        };
        for (id, v) in [("/pod/b", 1), ("/pod/a", 2), ("/pod", 3), ("/", 4)] {
            assert!(
                text.contains(&line(id, v)),
                "{id} {v} missing from:\n{text}"
            );
        }
        assert_eq!(text.matches("id=\"/pod/b\"").count(), 1, "{text}");
    }

    #[test]
    fn recreated_path_gets_one_series() {
        let mut memory = PathMemory::default();
        memory.update(&[cg(1, "/"), cg(5, "/c")], |_| true);
        let kills = HashMap::from([(5, 1)]);
        memory.hold([5]);
        // /c was removed and made again with a new id.
        let live = [cg(1, "/"), cg(6, "/c")];
        memory.update(&live, |_| false);
        let rows: Vec<Row> = live.iter().map(|c| Row::new(c.id, &c.path)).collect();
        let removed: Vec<Row> = memory
            .removed(&live)
            .map(|(id, path)| Row::new(id, path))
            .collect();
        assert_eq!(removed.len(), 1);
        let mut out = Exposition::default();
        write(&mut out, &rows, &removed, &kills, &memory);
        let text = out.into_string();
        assert_eq!(text.matches("id=\"/c\"").count(), 1, "{text}");
        assert!(text.contains("id=\"/c\",image=\"\",name=\"\",namespace=\"\",pod=\"\"} 1\n"));
    }
}
