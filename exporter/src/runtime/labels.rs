//! The six labels every `container_*` series carries, with `""` where unknown
//! (never omitted: under `honorLabels` an omitted label would be filled from the
//! scrape target). Structured: rendering is the scrape's last stage.

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

    /// A container of a pod (a runtime container, sandboxes included): at pod or
    /// namespace level its row is replaced by its pod's.
    pub fn is_pod_container(&self) -> bool {
        !self.name.is_empty() && !self.pod.is_empty()
    }
}
