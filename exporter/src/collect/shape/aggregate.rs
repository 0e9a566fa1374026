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
    /// By pod name: (its container rows' sum, its own row's value if any).
    by_pod: HashMap<String, (f64, Option<f64>)>,
}

impl Acc {
    /// A counter's value: per pod, its own row's value when there is one, else its
    /// container rows' sum; summed over the pods.
    fn counter(&self) -> f64 {
        self.by_pod
            .values()
            .map(|(containers, own)| own.unwrap_or(*containers))
            .sum()
    }
}

/// The samples of one family at `level`.
pub fn aggregate(
    set: &SampleSet,
    samples: &[Sample],
    kind: MetricType,
    level: Level,
    rows: &mut AggregateRows,
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
        let per_pod = acc.by_pod.entry(labels.pod.clone()).or_default();
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
        let value = if kind == MetricType::Counter {
            acc.counter()
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
