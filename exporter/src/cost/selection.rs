//! Which cgroups are counted and exported: path patterns, namespaces, pod label
//! selectors.
use std::collections::BTreeMap;

/// A cgroup path pattern: `/`-separated; `*` and `?` match within one path
/// component, a `**` component matches any number of components (also none), so
/// `/system.slice/**` is that slice and everything below it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    pattern: String,
    parts: Vec<String>,
}

impl std::str::FromStr for Glob {
    type Err = String;

    fn from_str(pattern: &str) -> Result<Self, Self::Err> {
        if !pattern.starts_with('/') {
            return Err(format!(
                "{pattern:?} must be an absolute cgroup path pattern (start with /)"
            ));
        }
        if pattern.contains(['[', ']', '{', '}']) {
            return Err(format!(
                "{pattern:?}: only *, ? and ** are supported in cgroup patterns"
            ));
        }
        let parts = pattern
            .split('/')
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect::<Vec<_>>();
        if parts.iter().any(|p| p.contains("**") && p != "**") {
            return Err(format!(
                "{pattern:?}: ** must be a whole path component (like /a/**/b)"
            ));
        }
        Ok(Self {
            pattern: pattern.to_owned(),
            parts,
        })
    }
}

impl std::fmt::Display for Glob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.pattern)
    }
}

impl Glob {
    pub fn matches(&self, path: &str) -> bool {
        let components: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        let parts: Vec<&str> = self.parts.iter().map(String::as_str).collect();
        match_parts(&parts, &components)
    }
}

fn match_parts(parts: &[&str], path: &[&str]) -> bool {
    match parts.split_first() {
        None => path.is_empty(),
        Some((&"**", rest)) => (0..=path.len()).any(|skip| match_parts(rest, &path[skip..])),
        Some((part, rest)) => path
            .split_first()
            .is_some_and(|(first, tail)| match_component(part, first) && match_parts(rest, tail)),
    }
}

fn match_component(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // Iterative wildcard match with backtracking to the last `*`.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// A pod's labels, shared with the runtime cache.
pub type PodLabels = std::sync::Arc<BTreeMap<String, String>>;

/// A Kubernetes label selector, in the syntax of `kubectl get -l`: requirements
/// separated by commas, all of which must hold: `k=v` (or `k==v`), `k!=v`, `k in (a,b)`,
/// `k notin (a,b)`, `k` (exists), `!k` (does not exist). As in Kubernetes, `!=` and
/// `notin` also hold when the label is absent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelSelector(Vec<Requirement>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

impl std::str::FromStr for LabelSelector {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        // Split at commas outside parentheses.
        let mut parts = Vec::new();
        let (mut depth, mut start) = (0_i32, 0);
        for (i, c) in text.char_indices() {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                ',' if depth == 0 => {
                    parts.push(&text[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
            if !(0..=1).contains(&depth) {
                return Err("unbalanced parentheses".to_owned());
            }
        }
        if depth != 0 {
            return Err("unbalanced parentheses".to_owned());
        }
        parts.push(&text[start..]);
        let key = |k: &str| -> Result<String, String> {
            let k = k.trim();
            let valid = !k.is_empty()
                && k.len() <= 317
                && k.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
            if valid {
                Ok(k.to_owned())
            } else {
                Err(format!("{k:?} is not a label key"))
            }
        };
        let set = |list: &str| -> Result<Vec<String>, String> {
            let inner = list
                .trim()
                .strip_prefix('(')
                .and_then(|l| l.strip_suffix(')'))
                .ok_or_else(|| format!("want a value list in parentheses, got {list:?}"))?;
            Ok(inner.split(',').map(|v| v.trim().to_owned()).collect())
        };
        let mut requirements = Vec::new();
        for part in parts {
            let part = part.trim();
            if part.is_empty() {
                return Err("empty requirement".to_owned());
            }
            let requirement = if let Some((k, v)) = part.split_once("!=") {
                Requirement::NotEquals(key(k)?, v.trim().to_owned())
            } else if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                Requirement::Equals(key(k)?, v.trim().to_owned())
            } else if let Some((k, list)) = part.split_once(" notin ") {
                Requirement::NotIn(key(k)?, set(list)?)
            } else if let Some((k, list)) = part.split_once(" in ") {
                Requirement::In(key(k)?, set(list)?)
            } else if let Some(k) = part.strip_prefix('!') {
                Requirement::NotExists(key(k)?)
            } else {
                Requirement::Exists(key(part)?)
            };
            requirements.push(requirement);
        }
        Ok(Self(requirements))
    }
}

impl LabelSelector {
    /// Whether `labels` (a pod's) satisfy every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|r| match r {
            Requirement::Equals(k, v) => labels.get(k) == Some(v),
            Requirement::NotEquals(k, v) => labels.get(k) != Some(v),
            Requirement::In(k, set) => labels.get(k).is_some_and(|v| set.contains(v)),
            Requirement::NotIn(k, set) => !labels.get(k).is_some_and(|v| set.contains(v)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::NotExists(k) => !labels.contains_key(k),
        })
    }
}

/// Which cgroups are counted and exported.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// When not empty, only cgroups matching one of these are kept.
    pub include_paths: Vec<Glob>,
    pub exclude_paths: Vec<Glob>,
    /// When not empty, only pods in these namespaces are kept (cgroups that belong
    /// to no pod are decided by the path patterns alone).
    pub include_namespaces: Vec<String>,
    pub exclude_namespaces: Vec<String>,
    /// When set, only pods whose labels match are kept (cgroups of no pod are
    /// decided by the path patterns alone).
    pub include_pods: Option<LabelSelector>,
    /// Pods whose labels match are not kept.
    pub exclude_pods: Option<LabelSelector>,
}

impl Selection {
    /// Whether any selection is configured (the kernel filter is enabled only then).
    pub fn is_active(&self) -> bool {
        !(self.include_paths.is_empty() && self.exclude_paths.is_empty() && !self.uses_namespaces())
    }

    /// Whether the path patterns keep `path`.
    pub fn keeps_path(&self, path: &str) -> bool {
        (self.include_paths.is_empty() || self.include_paths.iter().any(|g| g.matches(path)))
            && !self.exclude_paths.iter().any(|g| g.matches(path))
    }

    /// Whether the namespace rules keep a cgroup of a pod in `namespace` (`""`: not
    /// a pod's, or not known yet).
    pub fn keeps_namespace(&self, namespace: &str) -> bool {
        if namespace.is_empty() {
            return true;
        }
        (self.include_namespaces.is_empty()
            || self.include_namespaces.iter().any(|n| n == namespace))
            && !self.exclude_namespaces.iter().any(|n| n == namespace)
    }

    /// Whether the pod label selectors keep a cgroup of a pod with `labels` (`None`:
    /// not a pod's, or not known yet).
    pub fn keeps_pod_labels(&self, labels: Option<&BTreeMap<String, String>>) -> bool {
        let Some(labels) = labels else {
            return true;
        };
        self.include_pods.as_ref().is_none_or(|s| s.matches(labels))
            && !self
                .exclude_pods
                .as_ref()
                .is_some_and(|s| s.matches(labels))
    }

    /// Whether decisions wait for runtime metadata (namespaces or pod labels).
    pub fn uses_namespaces(&self) -> bool {
        !(self.include_namespaces.is_empty()
            && self.exclude_namespaces.is_empty()
            && self.include_pods.is_none()
            && self.exclude_pods.is_none())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_components() {
        let g: Glob = "/system.slice/**".parse().unwrap();
        assert!(g.matches("/system.slice"));
        assert!(g.matches("/system.slice/a.service/x"));
        assert!(!g.matches("/system.slice2"));
        let g: Glob = "/kubepods/*/pod*".parse().unwrap();
        assert!(g.matches("/kubepods/burstable/pod123"));
        assert!(!g.matches("/kubepods/burstable/pod123/abc"));
        assert!(!g.matches("/kubepods/pod123"));
        let g: Glob = "/**/kadvisor-test-?".parse().unwrap();
        assert!(g.matches("/kadvisor-test-a"));
        assert!(g.matches("/x/y/kadvisor-test-b"));
        assert!(!g.matches("/x/kadvisor-test-bb"));
        assert!("relative".parse::<Glob>().is_err());
        assert!("/a/b**".parse::<Glob>().is_err());
        assert!("/a/[ab]".parse::<Glob>().is_err());
    }

    #[test]
    fn label_selectors_follow_kubernetes_semantics() {
        let labels: BTreeMap<String, String> = [("app", "web"), ("tier", "front")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let matches = |text: &str| text.parse::<LabelSelector>().unwrap().matches(&labels);
        assert!(matches("app=web"));
        assert!(matches("app==web,tier=front"));
        assert!(!matches("app=web,tier=back"));
        assert!(matches("app!=db"));
        assert!(
            matches("release!=stable"),
            "!= holds when the label is absent"
        );
        assert!(matches("tier in (front, api)"));
        assert!(!matches("tier in (back)"));
        assert!(matches("tier notin (back),release notin (stable)"));
        assert!(matches("app,!release"));
        assert!(!matches("!app"));
        for bad in [
            "",
            "app=web,",
            "tier in front",
            "tier in (a,(b)",
            "a b=c",
            "=web",
        ] {
            assert!(bad.parse::<LabelSelector>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn pod_selectors_decide_pods_only() {
        let selection = Selection {
            exclude_pods: Some("tier=batch".parse().unwrap()),
            ..Selection::default()
        };
        let batch: BTreeMap<String, String> = [("tier".to_owned(), "batch".to_owned())]
            .into_iter()
            .collect();
        assert!(selection.is_active() && selection.uses_namespaces());
        assert!(!selection.keeps_pod_labels(Some(&batch)));
        assert!(selection.keeps_pod_labels(Some(&BTreeMap::new())));
        assert!(
            selection.keeps_pod_labels(None),
            "not a pod, or not known yet"
        );
        let only_web = Selection {
            include_pods: Some("app=web".parse().unwrap()),
            ..Selection::default()
        };
        assert!(!only_web.keeps_pod_labels(Some(&batch)));
    }

    #[test]
    fn selection_by_path_and_namespace() {
        let sel = Selection {
            exclude_paths: vec!["/system.slice/**".parse().unwrap()],
            exclude_namespaces: vec!["kube-system".to_owned()],
            ..Selection::default()
        };
        assert!(sel.is_active());
        assert!(!sel.keeps_path("/system.slice/x"));
        assert!(sel.keeps_path("/kubepods"));
        assert!(!sel.keeps_namespace("kube-system"));
        assert!(sel.keeps_namespace(""));
        let sel = Selection {
            include_namespaces: vec!["prod".to_owned()],
            ..Selection::default()
        };
        assert!(sel.keeps_namespace("prod") && !sel.keeps_namespace("dev"));
        assert!(!Selection::default().is_active());
    }
}
