//! `container_crashes_total{signal}`: fatal signals (SIGSEGV, SIGBUS, SIGILL, SIGFPE,
//! SIGABRT) delivered with their default action (core dump and exit) to tasks of the
//! cgroup, counted by the `signal_deliver` hook (kernel/src/signal.rs). Not in
//! cAdvisor. Hierarchical like the CPU counters: a pod's row includes its
//! containers', and a removed cgroup's crashes stay in its parents. One series per
//! row by default (all signals summed, zero included so that `increase()` sees a
//! container's first crash); the `crash_signals` group splits it by `signal`.
use std::collections::HashMap;

use kadvisor_common::{CRASH_SIGNALS, CgroupCrashes};

use super::{
    Row, ScrapeContext,
    cpu::hierarchical_totals,
    samples::{MetricType, SampleSet},
};
use crate::cgroup::{PathMemory, RetiredTotals};

pub const CRASHES: &str = "container_crashes_total";

pub fn collect(ctx: &ScrapeContext<'_>, out: &mut SampleSet) {
    let memory = ctx.paths;
    if !ctx.kernel.family_attached("crashes") {
        return;
    }
    match ctx.kernel.cgroup_crashes() {
        Ok(crashes) => write(
            out,
            ctx.rows,
            crashes,
            memory,
            ctx.retired,
            ctx.own.crash_signals,
        ),
        Err(e) => ctx.failed("crashes", &e),
    }
}

pub fn write(
    out: &mut SampleSet,
    rows: &[Row],
    crashes: &HashMap<u64, CgroupCrashes>,
    memory: &PathMemory,
    retired: &RetiredTotals,
    by_signal: bool,
) {
    out.family(
        CRASHES,
        "Fatal signals (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT) delivered with their default action (core dump and exit) to processes of the container, by signal.",
        MetricType::Counter,
    );
    let per_signal: Vec<HashMap<&str, u64>> = (0..CRASH_SIGNALS.len())
        .map(|i| {
            let signal = CRASH_SIGNALS[i].1;
            let counts: HashMap<u64, u64> = crashes
                .iter()
                .map(|(&id, c)| (id, c.by_signal[i]))
                .collect();
            // Retired cgroups' counts live on under the signal's name.
            hierarchical_totals(&counts, memory, retired.of(signal))
        })
        .collect();
    for row in rows {
        if !by_signal {
            let sum: u64 = per_signal
                .iter()
                .map(|totals| totals.get(row.path.as_str()).copied().unwrap_or(0))
                .sum();
            out.sample(CRASHES, Some(&row.labels), &[], sum as f64);
            continue;
        }
        for ((_, signal), totals) in CRASH_SIGNALS.iter().zip(&per_signal) {
            let count = totals.get(row.path.as_str()).copied().unwrap_or(0);
            out.sample(
                CRASHES,
                Some(&row.labels),
                &[("signal", signal)],
                count as f64,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::Cgroup;

    #[test]
    fn every_row_gets_every_signal_and_parents_include_children() {
        let cg = |id, path: &str| Cgroup {
            id,
            path: path.to_owned(),
        };
        let live = [cg(1, "/"), cg(2, "/pod"), cg(3, "/pod/c"), cg(4, "/other")];
        let mut memory = PathMemory::default();
        memory.update(&live, |_| true);
        let mut segv = CgroupCrashes::default();
        segv.by_signal[4] = 3;
        let crashes = HashMap::from([(3, segv)]);
        let rows: Vec<Row> = live.iter().map(|c| Row::new(c.id, &c.path)).collect();
        let mut out = SampleSet::default();
        write(
            &mut out,
            &rows,
            &crashes,
            &memory,
            &RetiredTotals::default(),
            true,
        );
        let text = out.to_text();
        let value = |id: &str, signal: &str| {
            let prefix = format!(
                "container_crashes_total{{container=\"\",id=\"{id}\",image=\"\",name=\"\",namespace=\"\",pod=\"\",signal=\"{signal}\"}} "
            );
            text.lines()
                .find_map(|l| l.strip_prefix(&prefix))
                .unwrap_or_else(|| panic!("no {id} {signal} in {text}"))
                .to_owned()
        };
        assert_eq!(value("/pod/c", "SIGSEGV"), "3");
        assert_eq!(value("/pod", "SIGSEGV"), "3");
        assert_eq!(value("/", "SIGSEGV"), "3");
        assert_eq!(value("/other", "SIGSEGV"), "0");
        assert_eq!(value("/pod/c", "SIGABRT"), "0");
        assert_eq!(text.matches("container_crashes_total{").count(), 4 * 5);

        // Lean (the default): one series per row, every signal summed.
        let mut out = SampleSet::default();
        let mut two = CgroupCrashes::default();
        two.by_signal[0] = 2;
        two.by_signal[4] = 3;
        let crashes = HashMap::from([(3, two)]);
        write(
            &mut out,
            &rows,
            &crashes,
            &memory,
            &RetiredTotals::default(),
            false,
        );
        let text = out.to_text();
        assert_eq!(text.matches("container_crashes_total{").count(), 4);
        assert!(text.contains("container_crashes_total{container=\"\",id=\"/pod\",image=\"\",name=\"\",namespace=\"\",pod=\"\"} 5\n"), "{text}");
    }
}
