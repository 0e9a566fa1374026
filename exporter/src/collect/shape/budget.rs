//! The per-family series budget (`--max_series_per_family`).
use std::collections::HashMap;

use crate::collect::samples::Sample;

/// Keeps at most `limit` of `samples`, in their order. Dropped first: rows of the
/// least CPU usage (`usage` by `id`; rows without one count as 0), ties by the
/// sample's own value, then by `id`. Never dropped: the root row, pod and namespace
/// rows (`container=""` with a `pod` or `namespace`), and samples without the
/// container labels; if those alone exceed the limit the family keeps them all.
pub fn apply(samples: &mut Vec<Sample>, limit: usize, usage: &HashMap<String, f64>) {
    let excess = samples.len().saturating_sub(limit);
    let mut droppable: Vec<(usize, f64, f64, &str)> = samples
        .iter()
        .enumerate()
        .filter_map(|(index, sample)| {
            let labels = &sample.row.as_ref()?.labels;
            let protected = labels.id == "/"
                || (labels.container.is_empty()
                    && (!labels.pod.is_empty() || !labels.namespace.is_empty()));
            let cpu = usage.get(&labels.id).copied().unwrap_or(0.0);
            (!protected).then_some((index, cpu, sample.value, labels.id.as_str()))
        })
        .collect();
    droppable.sort_by(|a, b| {
        a.1.total_cmp(&b.1)
            .then(a.2.total_cmp(&b.2))
            .then_with(|| a.3.cmp(b.3))
    });
    let mut drop = vec![false; samples.len()];
    for (index, ..) in droppable.iter().take(excess) {
        drop[*index] = true;
    }
    let mut index = 0;
    samples.retain(|_| {
        index += 1;
        !drop[index - 1]
    });
}
