//! Cost controls: which metric groups are collected (and which kernel programs are
//! attached for them), which cgroups are counted at all (filtered in the kernel),
//! at which level rows are emitted (container, pod, namespace), and how many series a
//! family may have.
//!
//! The group names are cAdvisor's (`container.MetricKind`, as its `--disable_metrics`
//! and `--enable_metrics` flags take them), plus kadvisor's own groups. Names that
//! cAdvisor has but kadvisor does not implement are accepted and do nothing, so an
//! existing cAdvisor command line keeps working.
//!
//! This module holds the settings (`config` builds them); the scrape applies them in
//! its rows stage (selection) and shaping stage (`collect::shape`).
mod aggregation;
mod groups;
mod selection;

pub use aggregation::{Aggregation, Level, Shaping};
pub use groups::{GROUPS, GroupSpec, MetricGroups, UnknownGroup, find_group, group_of_family};
pub use selection::{Glob, LabelSelector, PodLabels, Selection};

/// The cost settings as the collector applies them, and what they did so far.
#[derive(Debug, Default)]
pub struct CostControls {
    pub selection: Selection,
    pub shaping: Shaping,
    /// The kernel side of `selection` (`None`: no selection, or no kernel programs).
    pub filter: Option<std::sync::Arc<crate::bpf::CgroupFilter>>,
}

impl CostControls {
    pub fn new(
        selection: Selection,
        shaping: Shaping,
        filter: Option<std::sync::Arc<crate::bpf::CgroupFilter>>,
    ) -> Self {
        Self {
            selection,
            shaping,
            filter,
        }
    }

    /// Whether the group `name` is collected.
    pub fn group_on(&self, name: &str) -> bool {
        self.shaping.groups.on(name)
    }

    /// Whether the group `name` is collected above container level (pod or
    /// namespace): then it is collected from `pod_level_rows` only.
    pub fn above_container(&self, name: &str) -> bool {
        self.shaping.aggregation.level_of_group(name) > Level::Container
    }

    /// Whether any group is collected above container level.
    pub fn aggregates(&self) -> bool {
        !self.shaping.aggregation.is_container_only()
    }

    /// Whether the path patterns keep `path` (its row, and its counting in the kernel).
    pub fn keeps_path(&self, path: &str) -> bool {
        self.selection.keeps_path(path)
    }
}
