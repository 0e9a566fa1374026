//! At which level rows are emitted, and the shaping settings (groups, levels, the
//! series budget) that the scrape's shaping stage applies.
use std::collections::HashMap;

use super::groups::{MetricGroups, find_group, group_of_family};

/// Where rows of a group are emitted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// One row per cgroup, as cAdvisor.
    #[default]
    Container,
    /// Container rows of a pod replaced by one row per pod.
    Pod,
    /// Container and pod rows of a namespace replaced by one row per namespace.
    Namespace,
}

impl std::str::FromStr for Level {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "container" => Ok(Self::Container),
            "pod" => Ok(Self::Pod),
            "namespace" => Ok(Self::Namespace),
            other => Err(format!(
                "unknown aggregation level {other:?} (valid: container,pod,namespace)"
            )),
        }
    }
}

/// Aggregation level per group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Aggregation {
    pub default: Level,
    /// Canonical group name → level.
    pub per_group: HashMap<&'static str, Level>,
}

impl Aggregation {
    pub fn level_of_family(&self, family: &str) -> Level {
        match group_of_family(family) {
            Some(g) => self.per_group.get(g.name).copied().unwrap_or(self.default),
            None => Level::Container,
        }
    }

    /// The level of the group `name` (canonical or alias).
    pub fn level_of_group(&self, name: &str) -> Level {
        match find_group(name) {
            Ok(g) => self.per_group.get(g.name).copied().unwrap_or(self.default),
            Err(_) => Level::Container,
        }
    }

    pub fn is_container_only(&self) -> bool {
        self.default == Level::Container && self.per_group.values().all(|l| *l == Level::Container)
    }
}

/// The post-pass settings: which families to drop, aggregation, the series budget.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Shaping {
    pub groups: MetricGroups,
    pub aggregation: Aggregation,
    /// Most series any one `container_*` family may have (0: no limit).
    pub max_series_per_family: usize,
    /// Only rows of a pod (`pod` label set), as kube-prometheus-stack keeps them.
    pub pod_rows_only: bool,
    /// Sent socket bytes split by `destination` class (some CIDR was configured).
    pub socket_destinations: bool,
}

impl Shaping {
    /// Whether the post-pass has anything to do.
    pub fn is_identity(&self) -> bool {
        self.groups.is_all()
            && !self.pod_rows_only
            && self.aggregation.is_container_only()
            && self.max_series_per_family == 0
    }
}
