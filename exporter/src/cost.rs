//! Cost controls: which metric groups are collected (and which kernel programs are
//! attached for them), which cgroups are counted at all (filtered in the kernel),
//! at which level rows are emitted (container, pod, namespace), and how many series a
//! family may have.
//!
//! The group names are cAdvisor's (`container.MetricKind`, as its `--disable_metrics`
//! and `--enable_metrics` flags take them), plus kadvisor's own groups. Names that
//! cAdvisor has but kadvisor does not implement are accepted and do nothing, so an
//! existing cAdvisor command line keeps working.
use std::collections::{BTreeMap, HashMap, HashSet};

use crate::collect::exposition::{Exposition, MetricType};

/// One metric group: its name, and the families and kernel program families it owns.
#[derive(Debug, Clone, Copy)]
pub struct GroupSpec {
    pub name: &'static str,
    /// Other names accepted for it.
    pub aliases: &'static [&'static str],
    /// `false`: a cAdvisor group kadvisor has no families for (accepted, a no-op).
    pub implemented: bool,
    /// cAdvisor's group (`true`) or kadvisor's own.
    pub cadvisor: bool,
    /// The `family` values of `bpf::PROGRAMS` that only this group needs.
    pub programs: &'static [&'static str],
    /// The metric families it writes.
    pub families: &'static [&'static str],
}

const fn group(
    name: &'static str,
    programs: &'static [&'static str],
    families: &'static [&'static str],
) -> GroupSpec {
    GroupSpec {
        name,
        aliases: &[],
        implemented: true,
        cadvisor: true,
        programs,
        families,
    }
}

const fn no_op(name: &'static str) -> GroupSpec {
    GroupSpec {
        name,
        aliases: &[],
        implemented: false,
        cadvisor: true,
        programs: &[],
        families: &[],
    }
}

/// Every group name kadvisor accepts. Families outside every group (start time, last
/// seen, the scrape-error gauges, `machine_*`, `kadvisor_*`) are always written, as
/// cAdvisor writes them whatever its flags.
pub const GROUPS: &[GroupSpec] = &[
    // The kernel's CPU core (`sched_stat_runtime`) belongs to `cpu`: disabling cpu
    // detaches it, which also turns off `sched` (its run time is the same counter).
    group(
        "cpu",
        &["cpu"],
        &[
            "container_cpu_usage_seconds_total",
            "container_cpu_user_seconds_total",
            "container_cpu_system_seconds_total",
            "container_cpu_cfs_periods_total",
            "container_cpu_cfs_throttled_periods_total",
            "container_cpu_cfs_throttled_seconds_total",
            "container_spec_cpu_period",
            "container_spec_cpu_quota",
            "container_spec_cpu_shares",
        ],
    ),
    GroupSpec {
        aliases: &["schedstat"],
        ..group(
            "sched",
            &["schedstat"],
            &[
                "container_cpu_schedstat_run_seconds_total",
                "container_cpu_schedstat_runqueue_seconds_total",
                "container_cpu_schedstat_run_periods_total",
            ],
        )
    },
    group(
        "memory",
        &[],
        &[
            "container_memory_usage_bytes",
            "container_memory_max_usage_bytes",
            "container_memory_working_set_bytes",
            "container_memory_rss",
            "container_memory_cache",
            "container_memory_mapped_file",
            "container_memory_swap",
            "container_memory_kernel_usage",
            "container_memory_failcnt",
            "container_memory_total_active_file_bytes",
            "container_memory_total_inactive_file_bytes",
            "container_memory_failures_total",
            "container_spec_memory_limit_bytes",
            "container_spec_memory_swap_limit_bytes",
            "container_spec_memory_reservation_limit_bytes",
        ],
    ),
    group("oom_event", &["oom"], &["container_oom_events_total"]),
    group(
        "pressure",
        &[],
        &[
            "container_pressure_cpu_stalled_seconds_total",
            "container_pressure_cpu_waiting_seconds_total",
            "container_pressure_memory_stalled_seconds_total",
            "container_pressure_memory_waiting_seconds_total",
            "container_pressure_io_stalled_seconds_total",
            "container_pressure_io_waiting_seconds_total",
        ],
    ),
    group(
        "process",
        &[],
        &[
            "container_processes",
            "container_threads",
            "container_threads_max",
            "container_file_descriptors",
            "container_sockets",
            "container_ulimits_soft",
        ],
    ),
    group(
        "disk",
        &[],
        &[
            "container_fs_usage_bytes",
            "container_fs_limit_bytes",
            "container_fs_inodes_total",
            "container_fs_inodes_free",
        ],
    ),
    group(
        "diskIO",
        &[],
        &[
            "container_fs_reads_bytes_total",
            "container_fs_writes_bytes_total",
            "container_fs_reads_total",
            "container_fs_writes_total",
            "container_blkio_device_usage_total",
        ],
    ),
    // Interface counters of the pods' network namespaces (cAdvisor's). Disabling it
    // also turns off `socket`: both are network data.
    group(
        "network",
        &[],
        &[
            "container_network_receive_bytes_total",
            "container_network_receive_packets_total",
            "container_network_receive_packets_dropped_total",
            "container_network_receive_errors_total",
            "container_network_transmit_bytes_total",
            "container_network_transmit_packets_total",
            "container_network_transmit_packets_dropped_total",
            "container_network_transmit_errors_total",
        ],
    ),
    // kadvisor's own: per-container socket traffic and egress destination classes
    // (the cgroup_skb programs).
    GroupSpec {
        cadvisor: false,
        aliases: &["container_network", "egress"],
        ..group(
            "socket",
            &["socket"],
            &[
                "container_socket_receive_bytes_total",
                "container_socket_receive_packets_total",
                "container_socket_transmit_bytes_total",
                "container_socket_transmit_packets_total",
            ],
        )
    },
    GroupSpec {
        cadvisor: false,
        ..group("crashes", &["crashes"], &["container_crashes_total"])
    },
    no_op("cpuLoad"),
    no_op("percpu"),
    no_op("memory_numa"),
    no_op("cpuset"),
    no_op("advtcp"),
    no_op("tcp"),
    no_op("udp"),
    no_op("hugetlb"),
    no_op("referenced_memory"),
    no_op("resctrl"),
    no_op("cpu_topology"),
    no_op("app"),
    no_op("perf_event"),
];

/// A group name that is not in `GROUPS`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown metric group {name:?} (valid: {valid})")]
pub struct UnknownGroup {
    pub name: String,
    pub valid: String,
}

/// The group spec called `name` (or an alias of it).
pub fn find_group(name: &str) -> Result<&'static GroupSpec, UnknownGroup> {
    GROUPS
        .iter()
        .find(|g| g.name == name || g.aliases.contains(&name))
        .ok_or_else(|| UnknownGroup {
            name: name.to_owned(),
            valid: GROUPS.iter().map(|g| g.name).collect::<Vec<_>>().join(","),
        })
}

/// The group that writes `family`, if any.
pub fn group_of_family(family: &str) -> Option<&'static GroupSpec> {
    GROUPS.iter().find(|g| g.families.contains(&family))
}

/// Which groups are collected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricGroups {
    enabled: HashSet<&'static str>,
}

impl Default for MetricGroups {
    fn default() -> Self {
        Self::all()
    }
}

impl MetricGroups {
    /// Every group (kadvisor's default: its kernel groups cost little).
    pub fn all() -> Self {
        Self {
            enabled: GROUPS.iter().map(|g| g.name).collect(),
        }
    }

    /// cAdvisor's semantics: `enable`, when not empty, is the exact set; otherwise
    /// every group but `disable`. Then the dependencies: `sched` needs `cpu` (its
    /// run time is cpu's counter), `socket` needs `network`.
    pub fn from_lists(enable: &[String], disable: &[String]) -> Result<Self, UnknownGroup> {
        let mut enabled: HashSet<&'static str> = if enable.is_empty() {
            GROUPS.iter().map(|g| g.name).collect()
        } else {
            HashSet::new()
        };
        for name in enable {
            enabled.insert(find_group(name)?.name);
        }
        for name in disable {
            let g = find_group(name)?;
            if enable.is_empty() {
                enabled.remove(g.name);
            }
        }
        if !enabled.contains("cpu") {
            enabled.remove("sched");
        }
        if !enabled.contains("network") {
            enabled.remove("socket");
        }
        Ok(Self { enabled })
    }

    /// Whether the group `name` (canonical name) is collected.
    pub fn on(&self, name: &str) -> bool {
        self.enabled.contains(name)
    }

    /// Whether programs of the `bpf::PROGRAMS` family `family` are to be attached.
    pub fn program_family_on(&self, family: &str) -> bool {
        GROUPS
            .iter()
            .filter(|g| g.programs.contains(&family))
            .all(|g| self.on(g.name))
    }

    /// Whether the family `name` is written (families outside every group always are).
    pub fn family_on(&self, name: &str) -> bool {
        group_of_family(name).is_none_or(|g| self.on(g.name))
    }

    /// Whether every group is on (no filtering pass needed).
    pub fn is_all(&self) -> bool {
        GROUPS.iter().all(|g| self.on(g.name))
    }
}

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
}

/// What a pass over one scrape did, for the self-metrics.
#[derive(Debug, Default)]
pub struct ShapeReport {
    /// family → series dropped by the budget in this scrape.
    pub dropped: Vec<(String, usize)>,
}

impl Shaping {
    /// Whether the post-pass has anything to do.
    pub fn is_identity(&self) -> bool {
        self.groups.is_all()
            && self.aggregation.is_container_only()
            && self.max_series_per_family == 0
    }

    /// Rewrites the container families of `text` (the collectors' output, before the
    /// self-metrics): drops disabled families, aggregates, applies the budget.
    pub fn apply(&self, text: &str) -> (Exposition, ShapeReport) {
        let families = split_families(text);
        let mut report = ShapeReport::default();
        // The budget's ranking: each row's CPU usage (by id).
        let cpu: HashMap<String, f64> = if self.max_series_per_family > 0 {
            families
                .iter()
                .filter(|f| f.name == "container_cpu_usage_seconds_total")
                .flat_map(|f| f.body.lines())
                .filter_map(|s| {
                    let parsed = Sample::parse(s)?;
                    Some((parsed.label("id")?.to_owned(), parsed.value))
                })
                .collect()
        } else {
            HashMap::new()
        };
        let mut out = Exposition::with_capacity(text.len());
        for family in &families {
            if !self.groups.family_on(family.name) {
                continue;
            }
            let level = self.aggregation.level_of_family(family.name);
            let count = family.body.bytes().filter(|b| *b == b'\n').count();
            let over_budget = self.max_series_per_family > 0
                && family.name.starts_with("container_")
                && count > self.max_series_per_family;
            out.append_encoded(family.header);
            out.count_family(family.name);
            if level == Level::Container && !over_budget {
                // Untouched: copied as one block, not line by line.
                out.append_samples(family.body, count);
                continue;
            }
            let lines: Vec<&str> = family.body.lines().collect();
            let mut samples: Vec<String> = if level == Level::Container {
                lines.iter().map(|s| (*s).to_owned()).collect()
            } else {
                aggregate(&lines, level)
            };
            if self.max_series_per_family > 0
                && family.name.starts_with("container_")
                && samples.len() > self.max_series_per_family
            {
                let before = samples.len();
                samples = apply_budget(samples, self.max_series_per_family, &cpu);
                report
                    .dropped
                    .push((family.name.to_owned(), before - samples.len()));
            }
            for s in &samples {
                out.append_sample_line(s);
            }
        }
        (out, report)
    }
}

/// One family of an exposition text: its HELP/TYPE lines and its sample lines.
struct TextFamily<'a> {
    name: &'a str,
    header: &'a str,
    /// The sample lines, each ending in a newline.
    body: &'a str,
}

/// Splits text written by `Exposition` into families (a family starts at its `# HELP`
/// line, its header is the comment lines that follow; text before any header forms an
/// unnamed family kept as is). Only family boundaries are searched, not every line.
fn split_families(text: &str) -> Vec<TextFamily<'_>> {
    let mut starts: Vec<usize> = text
        .match_indices("# HELP ")
        .map(|(i, _)| i)
        .filter(|&i| i == 0 || text.as_bytes().get(i - 1) == Some(&b'\n'))
        .collect();
    let mut out = Vec::new();
    if starts.first() != Some(&0) {
        let end = starts.first().copied().unwrap_or(text.len());
        out.push(TextFamily {
            name: "",
            header: "",
            body: &text[..end],
        });
    }
    starts.push(text.len());
    for pair in starts.windows(2) {
        let block = &text[pair[0]..pair[1]];
        let name = block["# HELP ".len()..]
            .split([' ', '\n'])
            .next()
            .unwrap_or_default();
        let mut header_len = 0;
        for line in block.split_inclusive('\n') {
            if !line.starts_with('#') {
                break;
            }
            header_len += line.len();
        }
        out.push(TextFamily {
            name,
            header: &block[..header_len],
            body: &block[header_len..],
        });
    }
    out
}

/// A parsed sample line: name, label pairs (values still escaped), value.
struct Sample<'a> {
    name: &'a str,
    labels: Vec<(&'a str, &'a str)>,
    value: f64,
}

impl<'a> Sample<'a> {
    fn parse(line: &'a str) -> Option<Self> {
        let (head, value) = line.rsplit_once(' ')?;
        let value = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v.parse().ok()?,
        };
        let Some((name, rest)) = head.split_once('{') else {
            return Some(Self {
                name: head,
                labels: Vec::new(),
                value,
            });
        };
        let body = rest.strip_suffix('}')?;
        let mut labels = Vec::new();
        let bytes = body.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let eq = body[i..].find("=\"")? + i;
            let key = &body[i..eq];
            let mut j = eq + 2;
            while j < bytes.len() && bytes[j] != b'"' {
                j += if bytes[j] == b'\\' { 2 } else { 1 };
            }
            labels.push((key, body.get(eq + 2..j)?));
            i = j + 1;
            if bytes.get(i) == Some(&b',') {
                i += 1;
            }
        }
        Some(Self {
            name,
            labels,
            value,
        })
    }

    fn label(&self, key: &str) -> Option<&'a str> {
        self.labels.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }
}

const BASE_LABELS: [&str; 6] = ["container", "id", "image", "name", "namespace", "pod"];

/// Replaces the container rows of each pod (level pod) or the container and pod
/// rows of each namespace (level namespace) by one row per pod / namespace and extra
/// label set, whose value is the sum of the container rows' values (rows with a
/// `name`: the runtime's containers, sandboxes included). A pod or namespace with no
/// container row in this family keeps the sum of its pod rows instead. Rows outside
/// any pod (root, QoS and system cgroups) are kept as they are.
///
/// Groups whose collector ran on `CostControls::pod_level_rows` reach this with pod
/// rows only: at level pod each pod row is rewritten as itself, at level namespace
/// the pod rows are summed. Container rows reach it only from a family that shares a
/// collector with a group left at container level (disk/diskIO, network/socket).
fn aggregate(samples: &[&str], level: Level) -> Vec<String> {
    #[derive(Default)]
    struct Acc {
        id: String,
        containers: f64,
        has_containers: bool,
        pods: f64,
    }
    let mut kept = Vec::new();
    let mut order: Vec<(String, String, String, String)> = Vec::new();
    let mut sums: HashMap<(String, String, String, String), Acc> = HashMap::new();
    for line in samples {
        let Some(s) = Sample::parse(line) else {
            kept.push((*line).to_owned());
            continue;
        };
        let pod = s.label("pod").unwrap_or_default();
        if pod.is_empty() {
            kept.push((*line).to_owned());
            continue;
        }
        let namespace = s.label("namespace").unwrap_or_default();
        let id = s.label("id").unwrap_or_default();
        let is_container = !s.label("name").unwrap_or_default().is_empty();
        let extra: Vec<String> = s
            .labels
            .iter()
            .filter(|(k, _)| !BASE_LABELS.contains(k))
            .map(|(k, v)| format!("{k}=\"{v}\""))
            .collect();
        let key = (
            s.name.to_owned(),
            namespace.to_owned(),
            if level == Level::Pod {
                pod.to_owned()
            } else {
                String::new()
            },
            extra.join(","),
        );
        let acc = sums.entry(key.clone()).or_insert_with(|| {
            order.push(key.clone());
            Acc::default()
        });
        if is_container {
            acc.containers += s.value;
            acc.has_containers = true;
            if acc.id.is_empty() && level == Level::Pod {
                acc.id = id.rsplit_once('/').map_or("/", |(p, _)| p).to_owned();
            }
        } else {
            acc.pods += s.value;
            if level == Level::Pod {
                acc.id = id.to_owned();
            }
        }
    }
    for key in order {
        let Some(acc) = sums.get(&key) else { continue };
        let (name, namespace, pod, extra) = &key;
        let value = if acc.has_containers {
            acc.containers
        } else {
            acc.pods
        };
        let mut out = Exposition::default();
        let labels = format!(
            "container=\"\",id=\"{}\",image=\"\",name=\"\",namespace=\"{namespace}\",pod=\"{pod}\"{}{extra}",
            acc.id,
            if extra.is_empty() { "" } else { "," }
        );
        out.sample(name, &labels, &[], value);
        kept.push(out.into_string().trim_end_matches('\n').to_owned());
    }
    kept
}

/// Keeps at most `limit` of `samples`. Dropped first: rows of the least CPU usage
/// (`container_cpu_usage_seconds_total` of the same `id`; rows without one count as
/// 0), ties by the sample's own value, then by `id`. Never dropped: the root row
/// (`id="/"`), pod and namespace rows (`container=""` with a `pod` or
/// `namespace`), and samples without the container labels; if those alone exceed
/// the limit the family keeps them all.
fn apply_budget(samples: Vec<String>, limit: usize, cpu: &HashMap<String, f64>) -> Vec<String> {
    let mut ranked: Vec<(usize, bool, f64, f64, String)> = samples
        .iter()
        .enumerate()
        .map(|(i, line)| match Sample::parse(line) {
            Some(s) => {
                let id = s.label("id");
                let protected = match id {
                    None => true,
                    Some("/") => true,
                    Some(_) => {
                        s.label("container").unwrap_or_default().is_empty()
                            && (!s.label("pod").unwrap_or_default().is_empty()
                                || !s.label("namespace").unwrap_or_default().is_empty())
                    }
                };
                let id = id.unwrap_or_default().to_owned();
                let usage = cpu.get(&id).copied().unwrap_or(0.0);
                (i, protected, usage, s.value, id)
            }
            None => (i, true, 0.0, 0.0, String::new()),
        })
        .collect();
    let excess = samples.len().saturating_sub(limit);
    let mut droppable: Vec<&(usize, bool, f64, f64, String)> =
        ranked.iter().filter(|r| !r.1).collect();
    droppable.sort_by(|a, b| {
        a.2.total_cmp(&b.2)
            .then(a.3.total_cmp(&b.3))
            .then_with(|| a.4.cmp(&b.4))
    });
    let dropped: HashSet<usize> = droppable.iter().take(excess).map(|r| r.0).collect();
    ranked.retain(|r| !dropped.contains(&r.0));
    let mut samples: Vec<Option<String>> = samples.into_iter().map(Some).collect();
    ranked
        .iter()
        .filter_map(|r| samples.get_mut(r.0).and_then(Option::take))
        .collect()
}

/// Writes `kadvisor_series{family}` and `kadvisor_series_dropped_total{family}`.
pub fn write_self_metrics(
    out: &mut Exposition,
    counts: &[(String, usize)],
    dropped_total: Option<&HashMap<String, u64>>,
) {
    let name = "kadvisor_series";
    out.family(
        name,
        "Series kadvisor wrote in this scrape, by family (after aggregation and the series budget).",
        MetricType::Gauge,
    );
    for (family, count) in counts {
        out.sample(name, "", &[("family", family)], *count as f64);
    }
    let Some(dropped_total) = dropped_total else {
        return;
    };
    let name = "kadvisor_series_dropped_total";
    out.family(
        name,
        "Series left out by the per-family series budget (--max_series_per_family), by family.",
        MetricType::Counter,
    );
    let mut dropped: Vec<(&String, &u64)> = dropped_total.iter().collect();
    dropped.sort();
    for (family, count) in dropped {
        out.sample(name, "", &[("family", family)], *count as f64);
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
    fn groups_follow_cadvisor_semantics() {
        let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
        let g = MetricGroups::from_lists(&[], &s(&["network", "tcp", "schedstat"])).unwrap();
        assert!(!g.on("network") && !g.on("socket") && !g.on("sched"));
        assert!(g.on("cpu") && g.on("memory"));
        assert!(!g.program_family_on("socket"));
        assert!(!g.program_family_on("schedstat"));
        assert!(g.program_family_on("cpu"));
        assert!(!g.family_on("container_network_receive_bytes_total"));
        assert!(g.family_on("container_last_seen"));
        let g = MetricGroups::from_lists(&s(&["cpu", "memory"]), &s(&["cpu"])).unwrap();
        assert!(g.on("cpu") && g.on("memory") && !g.on("process") && !g.on("crashes"));
        let g = MetricGroups::from_lists(&[], &s(&["cpu"])).unwrap();
        assert!(!g.on("sched") && !g.program_family_on("cpu"));
        let e = MetricGroups::from_lists(&[], &s(&["cpuu"])).unwrap_err();
        assert!(e.to_string().contains("\"cpuu\""), "{e}");
        assert!(e.to_string().contains("cpu,sched,memory"), "{e}");
        for g in GROUPS {
            for f in g.families {
                assert_eq!(group_of_family(f).unwrap().name, g.name, "{f} twice");
            }
        }
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

    const POD: &str = "/kubepods/burstable/pod1";

    fn row(container: &str, id: &str, name: &str, ns: &str, pod: &str) -> String {
        format!(
            "container=\"{container}\",id=\"{id}\",image=\"\",name=\"{name}\",namespace=\"{ns}\",pod=\"{pod}\""
        )
    }

    fn text() -> String {
        let mut t = String::from(
            "# HELP container_cpu_usage_seconds_total CPU.\n# TYPE container_cpu_usage_seconds_total counter\n",
        );
        for (labels, v) in [
            (row("", "/", "", "", ""), 10.0),
            (row("", POD, "", "ns", "p1"), 3.5),
            (row("a", &format!("{POD}/c1"), "c1", "ns", "p1"), 1.0),
            (row("b", &format!("{POD}/c2"), "c2", "ns", "p1"), 2.5),
            (
                row("c", "/kubepods/burstable/pod2/c3", "c3", "ns", "p2"),
                4.0,
            ),
        ] {
            t.push_str(&format!(
                "container_cpu_usage_seconds_total{{{labels},cpu=\"total\"}} {v}\n"
            ));
        }
        t.push_str("# HELP container_memory_rss RSS.\n# TYPE container_memory_rss gauge\n");
        t.push_str(&format!(
            "container_memory_rss{{{}}} 7\n",
            row("a", &format!("{POD}/c1"), "c1", "ns", "p1")
        ));
        t
    }

    #[test]
    fn pod_level_sums_containers_with_the_pod_row_labels() {
        let shaping = Shaping {
            aggregation: Aggregation {
                default: Level::Pod,
                per_group: HashMap::from([("memory", Level::Container)]),
            },
            ..Shaping::default()
        };
        let (out, report) = shaping.apply(&text());
        let out = out.into_string();
        assert!(report.dropped.is_empty());
        let want = format!(
            "container_cpu_usage_seconds_total{{{},cpu=\"total\"}} 3.5\n",
            row("", POD, "", "ns", "p1")
        );
        assert!(out.contains(&want), "{out}");
        let want = format!(
            "container_cpu_usage_seconds_total{{{},cpu=\"total\"}} 4\n",
            row("", "/kubepods/burstable/pod2", "", "ns", "p2")
        );
        assert!(out.contains(&want), "{out}");
        assert!(out.contains("id=\"/\",image"), "root kept: {out}");
        assert!(
            !out.contains("name=\"c1\",namespace=\"ns\",pod=\"p1\",cpu"),
            "{out}"
        );
        assert!(
            out.contains("container_memory_rss{container=\"a\""),
            "memory stays per container: {out}"
        );
        assert_eq!(
            out.matches("container_cpu_usage_seconds_total{").count(),
            3,
            "{out}"
        );

        let ns = Shaping {
            aggregation: Aggregation {
                default: Level::Namespace,
                ..Aggregation::default()
            },
            ..Shaping::default()
        };
        let out = ns.apply(&text()).0.into_string();
        let want = format!(
            "container_cpu_usage_seconds_total{{{},cpu=\"total\"}} 7.5\n",
            row("", "", "", "ns", "")
        );
        assert!(out.contains(&want), "{out}");
    }

    #[test]
    fn budget_caps_exactly_dropping_least_cpu_first() {
        let shaping = Shaping {
            max_series_per_family: 3,
            ..Shaping::default()
        };
        let (out, report) = shaping.apply(&text());
        let out = out.into_string();
        assert_eq!(
            out.matches("container_cpu_usage_seconds_total{").count(),
            3,
            "{out}"
        );
        assert_eq!(
            report.dropped,
            vec![("container_cpu_usage_seconds_total".to_owned(), 2)]
        );
        // Root and pod rows stay; c1 (1.0) and c2 (2.5) go, c3 (4.0) stays.
        assert!(out.contains("id=\"/\""), "{out}");
        assert!(out.contains(&row("", POD, "", "ns", "p1")), "{out}");
        assert!(out.contains("pod2/c3\""), "{out}");
        assert!(!out.contains("c2\""), "{out}");
        assert_eq!(
            out.lines()
                .filter(|l| l.starts_with("container_memory_rss"))
                .count(),
            1
        );
    }

    #[test]
    fn disabled_groups_are_left_out_and_counted() {
        let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
        let shaping = Shaping {
            groups: MetricGroups::from_lists(&[], &s(&["memory"])).unwrap(),
            ..Shaping::default()
        };
        let out = shaping.apply(&text()).0;
        assert_eq!(
            out.series_counts(),
            &[("container_cpu_usage_seconds_total".to_owned(), 5)]
        );
        assert!(!out.as_str().contains("container_memory_rss"));
        // A pass that changes nothing copies the text exactly.
        let loose = Shaping {
            max_series_per_family: 100,
            ..Shaping::default()
        };
        let (out, report) = loose.apply(&text());
        assert_eq!(out.as_str(), text());
        assert!(report.dropped.is_empty());
        assert_eq!(
            out.series_counts(),
            &[
                ("container_cpu_usage_seconds_total".to_owned(), 5),
                ("container_memory_rss".to_owned(), 1)
            ]
        );
    }
}

/// The cost settings as the collector applies them, and what they did so far.
#[derive(Debug, Default)]
pub struct CostControls {
    pub selection: Selection,
    pub shaping: Shaping,
    /// The kernel side of `selection` (`None`: no selection, or no kernel programs).
    pub filter: Option<std::sync::Arc<crate::bpf::CgroupFilter>>,
    budget: std::sync::Mutex<BudgetState>,
}

#[derive(Debug, Default)]
struct BudgetState {
    /// family → series dropped, summed over scrapes.
    dropped_total: HashMap<String, u64>,
    /// family → series dropped in the last scrape (a log line when it changes).
    last: HashMap<String, usize>,
    /// Series per family of the last shaped scrape.
    counts: Vec<(String, usize)>,
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
            budget: std::sync::Mutex::default(),
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

    /// The rows a group above container level is collected from: every row but the
    /// containers of pods (rows with a runtime `name` and a `pod`, sandboxes
    /// included). A pod cgroup's values already hold its containers': the kernel
    /// accounts memory, IO and PSI hierarchically, and kadvisor sums its own kernel
    /// counters (CPU, schedstat, sockets, crashes, OOM kills) up the tree, removed
    /// containers included. So a container's files are never read, and its kernel
    /// counters never summed, for a group that does not export its row.
    pub fn pod_level_rows(rows: &[crate::collect::Row]) -> Vec<crate::collect::Row> {
        rows.iter()
            .filter(|row| {
                let named = label_value(&row.labels, "name").is_some_and(|v| !v.is_empty());
                let in_pod = label_value(&row.labels, "pod").is_some_and(|v| !v.is_empty());
                !(named && in_pod)
            })
            .cloned()
            .collect()
    }

    /// Whether the path patterns keep `path` (its row, and its counting in the kernel).
    pub fn keeps_path(&self, path: &str) -> bool {
        self.selection.keeps_path(path)
    }

    /// Drops the rows of pods in excluded namespaces (known from the runtime's
    /// labels) and excludes their cgroups in the kernel. What the kernel counted for
    /// such a cgroup before is folded into its parent's retired totals first, so
    /// ancestors' counters do not go backwards. Returns how many of the first
    /// `live` rows were dropped.
    pub fn select_rows(
        &self,
        rows: &mut Vec<crate::collect::Row>,
        live: usize,
        kernel: &dyn crate::collect::KernelSource,
        retired: &mut crate::cgroup::RetiredTotals,
        pod_labels: &dyn Fn(&str) -> Option<PodLabels>,
    ) -> usize {
        if !self.selection.uses_namespaces() {
            return 0;
        }
        let mut dropped_live = 0;
        let mut index = 0;
        rows.retain(|row| {
            let i = index;
            index += 1;
            let namespace = label_value(&row.labels, "namespace").unwrap_or_default();
            if self.selection.keeps_namespace(namespace)
                && self
                    .selection
                    .keeps_pod_labels(pod_labels(&row.path).as_deref())
            {
                return true;
            }
            if i < live {
                dropped_live += 1;
            }
            if let Some(filter) = &self.filter
                && !filter.is_excluded(row.id)
            {
                match kernel.counters_of(row.id) {
                    Ok(counters) => retired.retire(&row.path, &counters),
                    Err(e) => tracing::warn!(error = %crate::collect::error_chain(&e), path = row.path, "cannot read an excluded cgroup's counters"),
                }
                match filter.exclude(row.id) {
                    Ok(_) => tracing::debug!(path = row.path, namespace, "excluded by namespace"),
                    Err(e) => tracing::warn!(error = %crate::collect::error_chain(&e), path = row.path, "cannot exclude a cgroup in the kernel"),
                }
            }
            false
        });
        dropped_live
    }

    /// The post-pass over the container families (a no-op with default settings),
    /// and the per-family series counts for `kadvisor_series`.
    pub fn shape(&self, out: Exposition) -> Exposition {
        let mut state = self
            .budget
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if self.shaping.is_identity() {
            state.counts = out.series_counts().to_vec();
            return out;
        }
        let (shaped, report) = self.shaping.apply(out.as_str());
        let mut now: HashMap<String, usize> = HashMap::new();
        for (family, dropped) in report.dropped {
            *state.dropped_total.entry(family.clone()).or_default() += dropped as u64;
            now.insert(family, dropped);
        }
        for (family, dropped) in &now {
            if state.last.get(family) != Some(dropped) {
                tracing::warn!(
                    family,
                    dropped,
                    limit = self.shaping.max_series_per_family,
                    "series budget exceeded: rows with the least CPU usage left out"
                );
            }
        }
        state.last = now;
        state.counts = shaped.series_counts().to_vec();
        shaped
    }

    /// `kadvisor_series` and `kadvisor_series_dropped_total` of the last `shape`.
    pub fn write_self_metrics(&self, out: &mut Exposition) {
        let state = self
            .budget
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let dropped = (self.shaping.max_series_per_family > 0).then_some(&state.dropped_total);
        write_self_metrics(out, &state.counts, dropped);
    }
}

/// The raw value of `key` in a rendered label set (`a="x",b="y"`).
fn label_value<'a>(labels: &'a str, key: &str) -> Option<&'a str> {
    let mut rest = labels;
    loop {
        let (k, tail) = rest.split_once("=\"")?;
        let mut end = 0;
        let bytes = tail.as_bytes();
        while end < bytes.len() && bytes[end] != b'"' {
            end += if bytes[end] == b'\\' { 2 } else { 1 };
        }
        if k.trim_start_matches(',') == key {
            return tail.get(..end);
        }
        rest = tail.get(end + 1..)?;
    }
}
