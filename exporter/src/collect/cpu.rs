//! CPU families. `container_cpu_usage_seconds_total{cpu="total"}` comes from the
//! scheduler hook's per-cgroup counters, summed up the tree at scrape time so that a
//! parent includes its descendants, like the kernel's own `cpu.stat`.
use std::collections::HashMap;

use super::{
    Row, ScrapeContext,
    exposition::{Exposition, MetricType},
};
use crate::cgroup::{Cgroup, PathMemory, ancestors};

pub const USAGE: &str = "container_cpu_usage_seconds_total";

/// Writes the CPU families. `memory` learns this scrape's live cgroups so that
/// removed cgroups' counters keep rolling up into their parents.
pub fn collect(
    ctx: &ScrapeContext<'_>,
    live: &[Cgroup],
    memory: &mut PathMemory,
    out: &mut Exposition,
) {
    match ctx.kernel.cgroup_cpu_ns() {
        Ok(cpu_ns) => {
            memory.update(live, |id| cpu_ns.contains_key(&id));
            let totals = hierarchical_totals(&cpu_ns, memory);
            write_usage(out, ctx.rows, &totals);
        }
        Err(e) => ctx.failed("cpu", &e),
    }
}

/// Hierarchical totals: each path gets its own counter plus every descendant's,
/// including descendants removed since (their paths live on in `memory`). A counter
/// whose cgroup path was never seen is credited to the root only.
pub fn hierarchical_totals<'a>(
    per_cgroup: &HashMap<u64, u64>,
    memory: &'a PathMemory,
) -> HashMap<&'a str, u64> {
    let mut totals: HashMap<&str, u64> = HashMap::new();
    for (&id, &value) in per_cgroup {
        match memory.path(id) {
            Some(path) => {
                for ancestor in ancestors(path) {
                    *totals.entry(ancestor).or_default() += value;
                }
            }
            None => *totals.entry("/").or_default() += value,
        }
    }
    totals
}

pub fn write_usage(out: &mut Exposition, rows: &[Row], totals: &HashMap<&str, u64>) {
    out.family(
        USAGE,
        "Cumulative cpu time consumed in seconds.",
        MetricType::Counter,
    );
    for row in rows {
        let ns = totals.get(row.path.as_str()).copied().unwrap_or(0);
        out.sample(USAGE, &row.labels, &[("cpu", "total")], ns_to_seconds(ns));
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

    fn cg(id: u64, path: &str) -> Cgroup {
        Cgroup {
            id,
            path: path.to_owned(),
        }
    }

    #[test]
    fn parents_include_children_and_removed_children() {
        let mut memory = PathMemory::default();
        memory.update(
            &[
                cg(1, "/"),
                cg(2, "/pod"),
                cg(3, "/pod/a"),
                cg(4, "/pod/b"),
                cg(5, "/other"),
            ],
            |_| true,
        );
        // /pod/b was removed but its counter remains in the map.
        memory.update(
            &[cg(1, "/"), cg(2, "/pod"), cg(3, "/pod/a"), cg(5, "/other")],
            |id| id == 4,
        );
        let per_cgroup = HashMap::from([(1, 5), (2, 10), (3, 100), (4, 1000), (5, 7), (99, 3)]);

        let totals = hierarchical_totals(&per_cgroup, &memory);

        assert_eq!(totals["/pod/a"], 100);
        assert_eq!(totals["/pod"], 1110, "own + live child + removed child");
        assert_eq!(totals["/other"], 7);
        assert_eq!(totals["/"], 1125, "root holds everything, unknown ids too");
    }

    #[test]
    fn usage_rows_carry_cpu_total_and_seconds() {
        let rows = vec![Row::new(1, "/"), Row::new(3, "/a")];
        let totals = HashMap::from([("/", 2_500_000_000), ("/a", 1_000)]);
        let mut out = Exposition::default();
        write_usage(&mut out, &rows, &totals);
        let text = out.into_string();
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
