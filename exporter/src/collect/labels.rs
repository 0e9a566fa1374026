//! The six labels every `container_*` series carries, with `""` where unknown
//! (never omitted: under `honorLabels` an omitted label would be filled from the
//! scrape target).
use super::exposition::render_labels;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerLabels {
    pub container: String,
    pub id: String,
    pub image: String,
    pub name: String,
    pub namespace: String,
    pub pod: String,
}

impl ContainerLabels {
    /// A row known only by its cgroup path (runtime metadata not joined yet).
    pub fn for_path(path: &str) -> Self {
        Self {
            id: path.to_owned(),
            ..Self::default()
        }
    }

    /// The label set in the exposition format, in cAdvisor's (alphabetical) order.
    pub fn render(&self) -> String {
        render_labels(&[
            ("container", &self.container),
            ("id", &self.id),
            ("image", &self.image),
            ("name", &self.name),
            ("namespace", &self.namespace),
            ("pod", &self.pod),
        ])
    }
}
