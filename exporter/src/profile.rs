//! Consumer profiles (`--profile`): serve exactly the families and rows one consumer
//! reads, and nothing it does not. A profile decides the metric groups (so a left-out
//! family's kernel programs are not attached and its files not read) and a family
//! allowlist inside them (see `cost::MetricGroups::for_profile`).
//!
//! The kube-prometheus lists are generated from the upstream manifests by
//! `scripts/gen-profiles.py` (never typed by hand); the test below fails when they
//! and the manifests in tests/fixtures/profiles/ disagree.

/// The rows a profile serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProfileRows {
    /// Every row the other settings select.
    Any,
    /// The kubelet's rows (as `--kubelet_rows`).
    Kubelet,
    /// The kubelet's rows that belong to a pod (kube-prometheus-stack drops the rest:
    /// `sourceLabels: [id, pod]`, `regex: .+;`).
    Pods,
}

/// One profile: its name, the families it serves (`None`: every family of cAdvisor's
/// groups) and its rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub name: &'static str,
    pub families: Option<Vec<&'static str>>,
    pub rows: ProfileRows,
}

const KUBE_PROMETHEUS: &str = include_str!("profiles/kube-prometheus.families");
const KUBE_PROMETHEUS_STACK: &str = include_str!("profiles/kube-prometheus-stack.families");

/// The profile names `--profile` takes.
pub const NAMES: &[&str] = &["cadvisor", "kube-prometheus", "kube-prometheus-stack"];

/// An unknown profile name, or a generated list that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProfileError {
    #[error("unknown profile (valid: {})", NAMES.join(", "))]
    Unknown,
    #[error("profile list {name}: {reason}")]
    BadList { name: &'static str, reason: String },
}

impl std::str::FromStr for Profile {
    type Err = ProfileError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "cadvisor" => Ok(Self {
                name: "cadvisor",
                families: None,
                rows: ProfileRows::Any,
            }),
            "kube-prometheus" => parse_list("kube-prometheus", KUBE_PROMETHEUS),
            "kube-prometheus-stack" => parse_list("kube-prometheus-stack", KUBE_PROMETHEUS_STACK),
            _ => Err(ProfileError::Unknown),
        }
    }
}

/// The generated list: `#` comments, one `rows kubelet|pod` line, one family per line
/// (a trailing `# ...` says who reads it).
fn parse_list(name: &'static str, text: &'static str) -> Result<Profile, ProfileError> {
    let bad = |reason: String| ProfileError::BadList { name, reason };
    let mut rows = None;
    let mut families = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        match line.strip_prefix("rows ") {
            Some("kubelet") => rows = Some(ProfileRows::Kubelet),
            Some("pod") => rows = Some(ProfileRows::Pods),
            Some(other) => return Err(bad(format!("unknown rows {other:?}"))),
            None if line.contains(char::is_whitespace) => {
                return Err(bad(format!("not a family name: {line:?}")));
            }
            None => families.push(line),
        }
    }
    Ok(Profile {
        name,
        families: Some(families),
        rows: rows.ok_or_else(|| bad("no rows line".to_owned()))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_match_the_upstream_manifests() {
        // The generator re-derives both lists from tests/fixtures/profiles/ and
        // compares them with the committed ones.
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let out = std::process::Command::new("python3")
            .arg(root.join("scripts/gen-profiles.py"))
            .arg("check")
            .output()
            .expect("python3 runs (scripts/setup.sh installs it with python3-yaml)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn kube_prometheus_reads_seventeen_container_families_on_the_kubelets_rows() {
        let p: Profile = "kube-prometheus".parse().unwrap();
        assert_eq!(p.rows, ProfileRows::Kubelet);
        let families = p.families.unwrap();
        assert_eq!(families.len(), 17, "{families:?}");
        for f in [
            "container_cpu_usage_seconds_total",
            "container_memory_working_set_bytes",
            "container_cpu_cfs_throttled_periods_total",
        ] {
            assert!(families.contains(&f), "{f}");
        }
        // Every family the profile names is one kadvisor writes in some group.
        for f in &families {
            assert!(crate::cost::group_of_family(f).is_some(), "{f}");
        }
    }

    #[test]
    fn the_stack_drops_swap_and_rows_without_a_pod() {
        let p: Profile = "kube-prometheus-stack".parse().unwrap();
        assert_eq!(p.rows, ProfileRows::Pods);
        let families = p.families.unwrap();
        assert!(!families.contains(&"container_memory_swap"));
        assert!(families.contains(&"container_memory_rss"));
    }

    #[test]
    fn unknown_name_is_an_error() {
        assert_eq!(
            "kube-prom".parse::<Profile>().unwrap_err().to_string(),
            "unknown profile (valid: cadvisor, kube-prometheus, kube-prometheus-stack)"
        );
    }
}
