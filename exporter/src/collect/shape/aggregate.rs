//! Aggregation: the container rows of each pod (level pod) or the container and pod
//! rows of each namespace (level namespace) replaced by one row per pod / namespace
//! and extra label set, whose value is the sum of the container rows' values (rows
//! with a `name`: the runtime's containers, sandboxes included). A pod or namespace
//! with no container row in the family keeps the sum of its pod rows instead. Rows
//! outside any pod (root, QoS and system cgroups) are kept as they are.
//!
//! Counters take each pod's own row where the family has one: the pod cgroup's
//! counter is hierarchical and keeps what its removed containers counted (the
//! kernel's for cgroupfs files, the retired totals for kadvisor's own), while the sum
//! of container rows drops by a container's whole count when its row expires. A
//! namespace's counter is the sum of its pods' values chosen that way.
//!
//! A namespace's counter also keeps what its pods counted once they are gone: a
//! pod's rows expire after the grace period, and the namespace has no cgroup of its
//! own to hold their count. `NamespaceCarry` remembers each pod's last value per
//! namespace series and adds what a pod that left (or whose value fell) had
//! counted, so the series never goes backwards. It is kept while the namespace has a
//! row in the family and forgotten when it has none (then the series ends, as a
//! removed container's does).
//!
//! Groups collected from `rows::pod_level_rows` reach this with pod rows only: at
//! level pod each pod row is rewritten as itself, at level namespace the pod rows
//! are summed. Container rows reach it only from a family that shares a collector
//! with a group left at container level (disk/diskIO, network/socket).
use std::{collections::HashMap, sync::Arc};

use crate::{
    collect::samples::{MetricType, RowLabels, Sample, SampleSet},
    cost::Level,
    runtime::labels::ContainerLabels,
};

/// The aggregated rows of one scrape, shared by every family (one label set each,
/// rendered once).
#[derive(Debug, Default)]
pub struct AggregateRows(HashMap<(String, String, String), Arc<RowLabels>>);

impl AggregateRows {
    fn row(&mut self, id: &str, namespace: &str, pod: &str) -> Arc<RowLabels> {
        let key = (id.to_owned(), namespace.to_owned(), pod.to_owned());
        Arc::clone(self.0.entry(key).or_insert_with(|| {
            RowLabels::new(ContainerLabels {
                id: id.to_owned(),
                namespace: namespace.to_owned(),
                pod: pod.to_owned(),
                ..ContainerLabels::default()
            })
        }))
    }
}

/// Per namespace series (family, namespace, extra labels): what pods gone since
/// counted, and each present pod's last value (by pod cgroup path).
#[derive(Debug, Default)]
pub struct NamespaceCarry(HashMap<String, Carried>);

#[derive(Debug, Default)]
struct Carried {
    gone: f64,
    last: HashMap<String, f64>,
    seen: bool,
}

impl NamespaceCarry {
    /// The series' value: its present pods' values plus what pods counted before
    /// they left or fell.
    fn value(&mut self, key: String, pods: &HashMap<String, f64>) -> f64 {
        let carried = self.0.entry(key).or_default();
        for (pod, last) in &carried.last {
            let now = pods.get(pod).copied().unwrap_or(0.0);
            if now < *last {
                carried.gone += last - now;
            }
        }
        carried.last.clone_from(pods);
        carried.seen = true;
        carried.gone + pods.values().sum::<f64>()
    }

    /// Forgets the series that had no row since the last call.
    pub fn forget_unseen(&mut self) {
        self.0
            .retain(|_, carried| std::mem::take(&mut carried.seen));
        crate::cgroup::shrink_after_removals(&mut self.0);
    }
}

#[derive(Default)]
struct Acc {
    /// The first sample of the group: its extra labels are the group's.
    first: usize,
    id: String,
    namespace: String,
    pod: String,
    containers: f64,
    has_containers: bool,
    pods: f64,
    /// By pod cgroup path: (its container rows' sum, its own row's value if any).
    by_pod: HashMap<String, (f64, Option<f64>)>,
}

impl Acc {
    /// Per pod, a counter's value: its own row's value when there is one, else its
    /// container rows' sum.
    fn pod_counters(&self) -> HashMap<String, f64> {
        self.by_pod
            .iter()
            .map(|(pod, (containers, own))| (pod.clone(), own.unwrap_or(*containers)))
            .collect()
    }
}

/// The samples of `family` at `level`.
pub fn aggregate(
    set: &SampleSet,
    (family, samples, kind): (&str, &[Sample], MetricType),
    level: Level,
    rows: &mut AggregateRows,
    carry: &mut NamespaceCarry,
) -> Vec<Sample> {
    let mut out = Vec::new();
    let mut order: Vec<String> = Vec::new();
    let mut sums: HashMap<String, Acc> = HashMap::new();
    for (index, sample) in samples.iter().enumerate() {
        let Some(row) = sample.row.as_deref().filter(|r| !r.labels.pod.is_empty()) else {
            out.push(sample.clone());
            continue;
        };
        let labels = &row.labels;
        let pod = if level == Level::Pod {
            labels.pod.as_str()
        } else {
            ""
        };
        // The group key: namespace, pod (at level pod) and the extra pairs, each
        // NUL-terminated (no label holds a NUL).
        let mut key = format!("{}\0{pod}\0", labels.namespace);
        for (k, v) in set.extra(sample) {
            key.push_str(k);
            key.push('\0');
            key.push_str(v);
            key.push('\0');
        }
        let acc = sums.entry(key).or_insert_with_key(|key| {
            order.push(key.clone());
            Acc {
                first: index,
                namespace: labels.namespace.clone(),
                pod: pod.to_owned(),
                ..Acc::default()
            }
        });
        // A container's pod is its parent cgroup.
        let pod_path = if labels.is_pod_container() {
            labels.id.rsplit_once('/').map_or("/", |(parent, _)| parent)
        } else {
            labels.id.as_str()
        };
        let per_pod = acc.by_pod.entry(pod_path.to_owned()).or_default();
        if labels.is_pod_container() {
            per_pod.0 += sample.value;
        } else {
            *per_pod.1.get_or_insert(0.0) += sample.value;
        }
        if labels.is_pod_container() {
            acc.containers += sample.value;
            acc.has_containers = true;
            if acc.id.is_empty() && level == Level::Pod {
                acc.id = labels
                    .id
                    .rsplit_once('/')
                    .map_or("/", |(parent, _)| parent)
                    .to_owned();
            }
        } else {
            acc.pods += sample.value;
            if level == Level::Pod {
                acc.id.clone_from(&labels.id);
            }
        }
    }
    for key in order {
        let Some(acc) = sums.get(&key) else { continue };
        let value = if kind == MetricType::Counter && level == Level::Namespace {
            carry.value(format!("{family}\0{key}"), &acc.pod_counters())
        } else if kind == MetricType::Counter {
            acc.pod_counters().values().sum()
        } else if acc.has_containers {
            acc.containers
        } else {
            acc.pods
        };
        let row = rows.row(&acc.id, &acc.namespace, &acc.pod);
        out.push(SampleSet::derived(&samples[acc.first], Some(row), value));
    }
    out
}
