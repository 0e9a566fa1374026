//! Stage 1, rows: the cgroups a scrape exports — the tree's live cgroups, then the
//! removed ones inside their grace period — kept by the row filter and the cost
//! selection, joined with the runtime's labels. Labels stay structured
//! (`ContainerLabels`): nothing downstream parses them back from text.
use std::sync::Arc;

use super::{kernel::KernelSource, samples::RowLabels};
use crate::{
    cgroup::{RetiredTotals, discovery::TreeState},
    cost::{CostControls, PodLabels},
    runtime::{Metadata, labels::ContainerLabels, paths},
};

/// One exported cgroup row.
#[derive(Debug, Clone)]
pub struct Row {
    pub id: u64,
    pub path: String,
    /// Its labels, shared by every sample of the row.
    pub labels: Arc<RowLabels>,
}

impl Row {
    /// A row known only by its path (no runtime labels).
    pub fn new(id: u64, path: &str) -> Self {
        Self::with_labels(id, path, ContainerLabels::for_path(path))
    }

    /// A row with the runtime's labels.
    pub fn with_labels(id: u64, path: &str, labels: ContainerLabels) -> Self {
        Self {
            id,
            path: path.to_owned(),
            labels: RowLabels::new(labels),
        }
    }
}

/// This scrape's rows: the first `live` are live cgroups, the rest removed ones
/// inside their grace period.
#[derive(Debug, Default)]
pub struct Rows {
    pub rows: Vec<Row>,
    pub live: usize,
}

/// Live rows, then removed ones inside their grace period (unless a live cgroup
/// took their path: two rows would carry the same labels), each with the runtime's
/// labels when `metadata` is there.
pub fn build(state: &TreeState, keeps: &dyn Fn(&str) -> bool, metadata: Option<&Metadata>) -> Rows {
    let mut cgroups: Vec<(u64, &str)> = state
        .live
        .iter()
        .filter(|(path, _)| keeps(path))
        .map(|(path, id)| (*id, path.as_str()))
        .collect();
    let live = cgroups.len();
    let mut removed: Vec<(u64, &str)> = state
        .removed
        .values()
        .filter(|r| {
            !r.cgroup.path.contains('\0')
                && !state.live.contains_key(&r.cgroup.path)
                && keeps(&r.cgroup.path)
        })
        .map(|r| (r.cgroup.id, r.cgroup.path.as_str()))
        .collect();
    removed.sort_by_key(|(_, path)| *path);
    cgroups.extend(removed);
    let rows = match metadata {
        Some(metadata) => {
            let paths: Vec<&str> = cgroups.iter().map(|(_, p)| *p).collect();
            metadata
                .labels(&paths)
                .into_iter()
                .zip(&cgroups)
                .map(|(labels, (id, path))| Row::with_labels(*id, path, labels))
                .collect()
        }
        None => cgroups
            .iter()
            .map(|(id, path)| Row::new(*id, path))
            .collect(),
    };
    Rows { rows, live }
}

/// The rows a group above container level is collected from: every row but the
/// containers of pods (rows with a runtime `name` and a `pod`, sandboxes included).
/// A pod cgroup's values already hold its containers': the kernel accounts memory,
/// IO and PSI hierarchically, and kadvisor sums its own kernel counters (CPU,
/// schedstat, sockets, crashes, OOM kills) up the tree, removed containers included.
/// So a container's files are never read, and its kernel counters never summed, for
/// a group that does not export its row.
pub fn pod_level_rows(rows: &Rows) -> Rows {
    let pod_level = |rows: &[Row]| -> Vec<Row> {
        rows.iter()
            .filter(|row| !row.labels.labels.is_pod_container())
            .cloned()
            .collect()
    };
    let mut out = pod_level(&rows.rows[..rows.live]);
    let live = out.len();
    out.extend(pod_level(&rows.rows[rows.live..]));
    Rows { rows: out, live }
}

/// Which cgroups get rows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum RowFilter {
    /// Every cgroup, as standalone cAdvisor exports.
    #[default]
    All,
    /// The kubelet's set: the root, the kubepods tree, and these extra paths (the
    /// runtime's and the kubelet's own cgroups) with their descendants.
    Kubelet { extra: Vec<String> },
}

impl RowFilter {
    pub fn keeps(&self, path: &str) -> bool {
        match self {
            Self::All => true,
            Self::Kubelet { extra } => {
                paths::in_kubepods(path)
                    || extra.iter().any(|e| {
                        path == e
                            || path
                                .strip_prefix(e.as_str())
                                .is_some_and(|rest| rest.starts_with('/'))
                    })
            }
        }
    }
}

/// The namespace and pod-label selection (which needs the runtime's labels, so it
/// runs on rows, not paths).
pub fn select(
    cost: &CostControls,
    rows: &mut Rows,
    kernel: &dyn KernelSource,
    retired: &mut RetiredTotals,
    pod_labels: &dyn Fn(&str) -> Option<PodLabels>,
) {
    let dropped = select_rows(cost, &mut rows.rows, rows.live, kernel, retired, pod_labels);
    rows.live -= dropped;
}

/// Drops the rows of pods in excluded namespaces (known from the runtime's
/// labels) and excludes their cgroups in the kernel. What the kernel counted for
/// such a cgroup before is folded into its parent's retired totals first, so
/// ancestors' counters do not go backwards. Returns how many of the first
/// `live` rows were dropped.
fn select_rows(
    cost: &CostControls,
    rows: &mut Vec<Row>,
    live: usize,
    kernel: &dyn KernelSource,
    retired: &mut crate::cgroup::RetiredTotals,
    pod_labels: &dyn Fn(&str) -> Option<PodLabels>,
) -> usize {
    if !cost.selection.uses_namespaces() {
        return 0;
    }
    let mut dropped_live = 0;
    let mut index = 0;
    rows.retain(|row| {
        let i = index;
        index += 1;
        let namespace = row.labels.labels.namespace.as_str();
        if cost.selection.keeps_namespace(namespace)
            && cost
                .selection
                .keeps_pod_labels(pod_labels(&row.path).as_deref())
        {
            return true;
        }
        if i < live {
            dropped_live += 1;
        }
        if let Some(filter) = &cost.filter
            && !filter.is_excluded(row.id)
        {
            // Folded only once the kernel has stopped counting the cgroup and deleted
            // its entries. While the exclusion fails the entries stay, and reach the
            // ancestors through the maps: folding them as well would count them
            // twice, once more at every scrape that retries.
            let counters = kernel.counters_of(row.id);
            match (filter.exclude(row.id), counters) {
                (Ok(true), Ok(counters)) => {
                    retired.retire(&row.path, &counters);
                    tracing::debug!(path = row.path, namespace, "excluded by namespace");
                }
                (Ok(true), Err(e)) => tracing::warn!(error = %crate::error_chain(&e), path = row.path, "cannot read an excluded cgroup's counters"),
                (Ok(false), _) => {}
                (Err(e), _) => tracing::warn!(error = %crate::error_chain(&e), path = row.path, "cannot exclude a cgroup in the kernel"),
            }
        }
        false
    });
    dropped_live
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubelet_filter_keeps_root_kubepods_and_the_runtime() {
        let filter = RowFilter::Kubelet {
            extra: vec!["/system.slice/containerd.service".to_owned()],
        };
        for keep in [
            "/",
            "/kubepods",
            "/kubepods/burstable/pod0d5c1b2a-3e4f-4a5b-8c6d-7e8f9a0b1c2d",
            "/kubepods.slice/kubepods-besteffort.slice",
            "/system.slice/containerd.service",
            "/system.slice/containerd.service/shim",
        ] {
            assert!(filter.keeps(keep), "{keep}");
        }
        for drop in [
            "/system.slice",
            "/system.slice/containerd.service2",
            "/user.slice",
            "/machine.slice/libpod-x.scope",
        ] {
            assert!(!filter.keeps(drop), "{drop}");
        }
        assert!(RowFilter::All.keeps("/user.slice"));
    }
}
