//! Stage 4, shaping: on the structured samples, after the families and before the
//! render — families of disabled groups left out, rows aggregated at pod or
//! namespace level (`aggregate`), the per-family series budget (`budget`). A no-op
//! with default settings. Nothing is parsed: samples carry their row's labels.
mod aggregate;
mod budget;

use std::collections::HashMap;

use super::samples::{MetricType, SampleSet};
use crate::cost::{Level, Shaping};

/// What shaping did so far, for `kadvisor_series*`.
#[derive(Debug, Default)]
pub struct Shaper {
    /// family → series dropped, summed over scrapes.
    dropped_total: HashMap<String, u64>,
    /// family → series dropped in the last scrape (a log line when it changes).
    last: HashMap<String, usize>,
    /// Series per family of the last shaped scrape.
    counts: Vec<(String, usize)>,
    /// Namespace counters' counts of pods gone (level namespace).
    carry: aggregate::NamespaceCarry,
}

/// The budget's ranking family: rows of least CPU usage are dropped first.
const RANKING_FAMILY: &str = "container_cpu_usage_seconds_total";

impl Shaper {
    /// Applies `shaping` to the container families of `set` (the collectors'
    /// output, before the self-metrics).
    pub fn shape(&mut self, shaping: &Shaping, set: &mut SampleSet) {
        if !shaping.is_identity() {
            let dropped = apply(shaping, set, &mut self.carry);
            let mut now = HashMap::new();
            for (family, count) in dropped {
                *self.dropped_total.entry(family.clone()).or_default() += count as u64;
                if self.last.get(&family) != Some(&count) {
                    tracing::warn!(
                        family,
                        dropped = count,
                        limit = shaping.max_series_per_family,
                        "series budget exceeded: rows with the least CPU usage left out"
                    );
                }
                now.insert(family, count);
            }
            self.last = now;
        }
        self.counts = set.series_counts();
    }

    /// `kadvisor_series{family}` and, with a budget, `kadvisor_series_dropped_total`.
    #[expect(
        clippy::cast_precision_loss,
        reason = "series counts stay exact in f64 up to 2^53"
    )]
    pub fn write_self_metrics(&self, budgeted: bool, out: &mut SampleSet) {
        let name = "kadvisor_series";
        out.family(
            name,
            "Series kadvisor wrote in this scrape, by family (after aggregation and the series budget).",
            MetricType::Gauge,
        );
        for (family, count) in &self.counts {
            out.sample(name, None, &[("family", family)], *count as f64);
        }
        if !budgeted {
            return;
        }
        let name = "kadvisor_series_dropped_total";
        out.family(
            name,
            "Series left out by the per-family series budget (--max_series_per_family), by family.",
            MetricType::Counter,
        );
        let mut dropped: Vec<(&String, &u64)> = self.dropped_total.iter().collect();
        dropped.sort();
        for (family, count) in dropped {
            out.sample(name, None, &[("family", family)], *count as f64);
        }
    }
}

/// Rewrites `set` in place; returns the series the budget dropped per family.
fn apply(
    shaping: &Shaping,
    set: &mut SampleSet,
    carry: &mut aggregate::NamespaceCarry,
) -> Vec<(String, usize)> {
    let mut families = std::mem::take(set.families_mut());
    families.retain(|f| shaping.groups.family_on(&f.name));
    if shaping.pod_rows_only {
        // The kubelet's rows of no pod (root, kubepods, QoS) are left out, as
        // kube-prometheus-stack's `[id, pod]` drop leaves them out.
        for family in families
            .iter_mut()
            .filter(|f| f.name.starts_with("container_"))
        {
            family
                .samples
                .retain(|s| s.row.as_ref().is_some_and(|row| !row.labels.pod.is_empty()));
        }
    }
    let budget = shaping.max_series_per_family;
    let usage: HashMap<String, f64> = if budget > 0 {
        families
            .iter()
            .filter(|f| f.name == RANKING_FAMILY)
            .flat_map(|f| &f.samples)
            .filter_map(|s| Some((s.row.as_ref()?.labels.id.clone(), s.value)))
            .collect()
    } else {
        HashMap::new()
    };
    let mut pod_rows = aggregate::AggregateRows::default();
    let mut dropped = Vec::new();
    for family in &mut families {
        let level = shaping.aggregation.level_of_family(&family.name);
        if level != Level::Container {
            family.samples = aggregate::aggregate(
                set,
                (&family.name, &family.samples, family.kind),
                level,
                &mut pod_rows,
                carry,
            );
        }
        if budget > 0 && family.name.starts_with("container_") && family.samples.len() > budget {
            let before = family.samples.len();
            budget::apply(&mut family.samples, budget, &usage);
            dropped.push((family.name.clone(), before - family.samples.len()));
        }
    }
    *set.families_mut() = families;
    carry.forget_unseen();
    dropped
}

#[cfg(test)]
mod tests;
