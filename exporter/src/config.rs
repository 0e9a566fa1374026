//! Command-line flags and the configuration file. Names follow cAdvisor's where a
//! user would type them (`--listen_ip`, `--port`, `--disable_metrics`), so existing
//! manifests keep working.
//!
//! `--config <file>` reads the same settings from a TOML file, keys spelled as the
//! flags (`port = 8080`, `disable_metrics = ["network"]`); a flag given on the
//! command line overrides the file. TOML rather than YAML: it has one way to write
//! each value (YAML's implicit typing turns `no` or `0o10` into surprises), and the
//! maintained `toml` crate parses it with serde, whereas `serde_yaml` is archived.
//! Unknown keys are errors (serde's `deny_unknown_fields`), and every value is
//! checked at start (`Config::validate`): one line naming the key and the value, exit
//! code 2. `--check-config` stops after that check, without loading BPF.
use std::{collections::HashMap, fmt, net::IpAddr, path::PathBuf, str::FromStr};

use clap::{CommandFactory as _, FromArgMatches as _, Parser, parser::ValueSource};
use serde::Deserialize;

use crate::cost::{Aggregation, Glob, Level, MetricGroups, Selection, Shaping};
use crate::profile::{Profile, ProfileRows};

/// cAdvisor's per-container metrics, computed in the kernel with eBPF.
#[derive(Debug, Clone, Parser)]
#[command(name = "kadvisor", version, about)]
pub struct Config {
    /// Address to listen on. The default serves this host only. Caution: /metrics has
    /// no authentication and names every container, pod and image on the host; before
    /// listening beyond loopback (e.g. 0.0.0.0) restrict who reaches the port, or keep
    /// 127.0.0.1 behind an authenticating proxy (the DaemonSet's kube-rbac-proxy).
    /// kadvisor logs a warning at start when the address is not loopback.
    #[arg(long = "listen_ip", default_value = "127.0.0.1")]
    pub listen_ip: IpAddr,

    /// Port to listen on (0 picks a free port and logs it).
    #[arg(long = "port", default_value_t = 8080)]
    pub port: u16,

    /// The cgroup v2 mount point. Detected from /proc/self/mountinfo when not given
    /// (/sys/fs/cgroup on a pure v2 host, /sys/fs/cgroup/unified on a hybrid one).
    #[arg(long = "cgroup_root")]
    pub cgroup_root: Option<PathBuf>,

    /// Where the running kernel's BTF lives.
    #[arg(long = "btf_path", default_value = "/sys/kernel/btf/vmlinux")]
    pub btf_path: PathBuf,

    /// Capacity of the per-cgroup kernel maps (live plus recently removed cgroups).
    #[arg(long = "max_cgroups", default_value_t = kadvisor_common::MAX_CGROUPS,
          value_parser = clap::value_parser!(u32).range(16..=1_048_576))]
    pub max_cgroups: u32,

    /// A CIDR of the cluster's pod network (repeatable, IPv4 or IPv6). Transmitted
    /// socket traffic to it is labelled destination="pod".
    #[arg(long = "pod_cidr", value_name = "CIDR")]
    pub pod_cidr: Vec<Cidr>,

    /// A CIDR of the cluster's service network (repeatable). Traffic to it is
    /// destination="service".
    #[arg(long = "service_cidr", value_name = "CIDR")]
    pub service_cidr: Vec<Cidr>,

    /// A CIDR of the nodes or other private ranges (repeatable). Traffic to it is
    /// destination="node". Addresses in no configured CIDR are destination="external".
    #[arg(long = "node_cidr", value_name = "CIDR")]
    pub node_cidr: Vec<Cidr>,
    /// CRI sockets asked for container metadata (comma-separated). Sockets that do
    /// not exist are skipped; the defaults find containerd, CRI-O and cri-dockerd.
    #[arg(
        long = "cri_endpoints",
        value_delimiter = ',',
        default_value = "/run/containerd/containerd.sock,/var/run/crio/crio.sock,/run/cri-dockerd.sock"
    )]
    pub cri_endpoints: Vec<PathBuf>,

    /// Timeout of each call to a runtime, in milliseconds. Lookups run in the
    /// background; a scrape never waits for a runtime.
    #[arg(long = "runtime_timeout_ms", default_value_t = 2000)]
    pub runtime_timeout_ms: u64,

    /// How long a removed cgroup's final values stay exported, in seconds (the
    /// default covers two 30 s scrapes). Its kernel map entries are reclaimed after.
    #[arg(long = "deleted_grace_seconds", default_value_t = 70.0)]
    pub deleted_grace_seconds: f64,

    /// Full walk of the cgroup tree every this many seconds, to repair anything the
    /// mkdir/rmdir events missed.
    #[arg(long = "reconcile_seconds", default_value_t = 60)]
    pub reconcile_seconds: u64,

    /// Export only the kubelet's rows: the root, the kubepods tree and
    /// --kubelet_extra_cgroups (default: every cgroup, like standalone cAdvisor).
    #[arg(long = "kubelet_rows")]
    pub kubelet_rows: bool,

    /// The runtime's and kubelet's own cgroups exported with --kubelet_rows.
    #[arg(
        long = "kubelet_extra_cgroups",
        value_delimiter = ',',
        default_value = "/system.slice/kubelet.service,/system.slice/containerd.service,/system.slice/crio.service,/system.slice/docker.service"
    )]
    pub kubelet_extra_cgroups: Vec<String>,

    /// A quiet container's cgroupfs/procfs values (memory, blkio, processes, pressure,
    /// cpu/cpuacct files) are re-read at most this often (cAdvisor's flag, Go duration
    /// syntax: 15s, 500ms, 1m). A container whose tasks ran since its last read is
    /// always re-read; kernel counters (CPU, network, crashes, OOM) are always live.
    /// 0 reads every container at every scrape.
    #[arg(long = "max_housekeeping_interval", default_value = "15s", value_parser = parse_duration)]
    pub max_housekeeping_interval: std::time::Duration,

    /// Log filter (tracing's env-filter syntax), e.g. `info` or `kadvisor=debug`.
    #[arg(long = "log_level", default_value = "info")]
    pub log_level: String,

    /// A TOML file holding any of these settings (keys spelled as the flags); flags
    /// given on the command line override it.
    #[arg(long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Validate the flags and the configuration file, then exit (0 when valid, 2
    /// with the bad key and value when not). Loads no BPF.
    #[arg(long = "check-config")]
    pub check_config: bool,

    /// Metric groups not to collect (comma-separated, cAdvisor's names: cpu, sched,
    /// memory, oom_event, pressure, process, disk, diskIO, network; kadvisor's own:
    /// socket, crashes; cAdvisor's other names are accepted and do nothing). A
    /// disabled group's kernel programs are not attached and its files not read.
    #[arg(long = "disable_metrics", value_delimiter = ',', value_name = "GROUPS")]
    pub disable_metrics: Vec<String>,

    /// Collect only these groups (comma-separated; overrides --disable_metrics, as in
    /// cAdvisor).
    #[arg(long = "enable_metrics", value_delimiter = ',', value_name = "GROUPS")]
    pub enable_metrics: Vec<String>,

    /// Count and export only cgroups whose path matches one of these patterns
    /// (comma-separated; `*`, `?` within a path component, `**` for any depth).
    #[arg(long = "include_cgroups", value_delimiter = ',', value_name = "GLOBS")]
    pub include_cgroups: Vec<String>,

    /// Do not count or export cgroups matching these patterns: filtered in the
    /// kernel, they cost one map lookup per event.
    #[arg(long = "exclude_cgroups", value_delimiter = ',', value_name = "GLOBS")]
    pub exclude_cgroups: Vec<String>,

    /// Count and export only pods of these Kubernetes namespaces (comma-separated;
    /// cgroups of no pod are decided by the path patterns alone).
    #[arg(
        long = "include_namespaces",
        value_delimiter = ',',
        value_name = "NAMESPACES"
    )]
    pub include_namespaces: Vec<String>,

    /// Do not count or export pods of these namespaces (known once the runtime
    /// answers for the pod; counted in the kernel until then, never exported).
    #[arg(
        long = "exclude_namespaces",
        value_delimiter = ',',
        value_name = "NAMESPACES"
    )]
    pub exclude_namespaces: Vec<String>,

    /// Count and export only pods whose labels match this Kubernetes label selector
    /// (`kubectl get -l` syntax, e.g. `app=web,tier in (front,api)`; known once the
    /// runtime answers for the pod).
    #[arg(long = "include_pods", value_name = "SELECTOR")]
    pub include_pods: Option<String>,

    /// Do not count or export pods whose labels match this label selector.
    #[arg(long = "exclude_pods", value_name = "SELECTOR")]
    pub exclude_pods: Option<String>,

    /// Row level of every group: container (cAdvisor's rows), pod or namespace.
    #[arg(
        long = "aggregation",
        default_value = "container",
        value_name = "LEVEL"
    )]
    pub aggregation: String,

    /// Row level of one group, GROUP=LEVEL (comma-separated or repeated), e.g.
    /// network=pod.
    #[arg(long = "aggregate", value_delimiter = ',', value_name = "GROUP=LEVEL")]
    pub aggregate: Vec<String>,

    /// Most series any one container family may have (0: no limit). Over it, the rows
    /// of the least CPU usage are left out, never the root or pod rows, and counted
    /// in kadvisor_series_dropped_total{family}.
    #[arg(long = "max_series_per_family", default_value_t = 0, value_name = "N")]
    pub max_series_per_family: usize,

    /// Serve exactly what one consumer reads: kube-prometheus (its rules, alerts,
    /// dashboards and prometheus-adapter, on the kubelet's rows), kube-prometheus-stack
    /// (the Helm chart's defaults: fewer families, pod rows only) or cadvisor (every
    /// cAdvisor group). Families left out attach no program and read no file.
    /// Excludes --enable_metrics; --disable_metrics removes groups from it.
    #[arg(
        long = "profile",
        value_name = "NAME",
        conflicts_with = "enable_metrics"
    )]
    pub profile: Option<String>,
}

/// The configuration file: every flag, by the flag's name. All optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen_ip: Option<String>,
    port: Option<u16>,
    cgroup_root: Option<PathBuf>,
    btf_path: Option<PathBuf>,
    max_cgroups: Option<u32>,
    pod_cidr: Option<Vec<String>>,
    service_cidr: Option<Vec<String>>,
    node_cidr: Option<Vec<String>>,
    cri_endpoints: Option<Vec<PathBuf>>,
    runtime_timeout_ms: Option<u64>,
    deleted_grace_seconds: Option<f64>,
    reconcile_seconds: Option<u64>,
    kubelet_rows: Option<bool>,
    kubelet_extra_cgroups: Option<Vec<String>>,
    log_level: Option<String>,
    disable_metrics: Option<Vec<String>>,
    enable_metrics: Option<Vec<String>>,
    include_cgroups: Option<Vec<String>>,
    exclude_cgroups: Option<Vec<String>>,
    include_namespaces: Option<Vec<String>>,
    exclude_namespaces: Option<Vec<String>>,
    include_pods: Option<String>,
    exclude_pods: Option<String>,
    aggregation: Option<String>,
    /// `[aggregate]` table: group = "level".
    aggregate: Option<HashMap<String, String>>,
    max_series_per_family: Option<usize>,
    profile: Option<String>,
    max_housekeeping_interval: Option<String>,
}

/// A configuration that cannot be used: one line naming the key and the value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Flags(#[source] Box<clap::Error>),
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path}, line {line} `{text}`: {message}")]
    Syntax {
        path: PathBuf,
        line: usize,
        text: String,
        message: String,
    },
    #[error("invalid {key} {value:?}: {reason}")]
    Value {
        key: &'static str,
        value: String,
        reason: String,
    },
}

fn bad(key: &'static str, value: impl fmt::Display, reason: impl fmt::Display) -> ConfigError {
    ConfigError::Value {
        key,
        value: value.to_string(),
        reason: reason.to_string(),
    }
}

/// What the cost settings resolve to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CostSettings {
    pub selection: Selection,
    pub shaping: Shaping,
}

impl CostSettings {
    pub fn groups(&self) -> &MetricGroups {
        &self.shaping.groups
    }
}

impl Config {
    /// The flags of this process, merged over `--config`'s file. `Err(Flags)` carries
    /// clap's error (also --help and --version, which clap prints itself).
    pub fn load() -> Result<Self, ConfigError> {
        Self::load_from(std::env::args_os())
    }

    pub fn load_from<I, T>(args: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let flags = |e| ConfigError::Flags(Box::new(e));
        let matches = Self::command().try_get_matches_from(args).map_err(flags)?;
        let mut config = Self::from_arg_matches(&matches).map_err(flags)?;
        if let Some(path) = config.config.clone() {
            let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?;
            let file = parse_file(&path, &text)?;
            config.merge(file, |id| {
                matches.value_source(id) == Some(ValueSource::CommandLine)
            })?;
        }
        config.validate()?;
        Ok(config)
    }

    /// Takes every key of `file` that the command line did not set.
    fn merge(
        &mut self,
        file: FileConfig,
        on_command_line: impl Fn(&str) -> bool,
    ) -> Result<(), ConfigError> {
        macro_rules! take {
            ($field:ident) => {
                if let Some(v) = file.$field
                    && !on_command_line(stringify!($field))
                {
                    self.$field = v.into();
                }
            };
        }
        macro_rules! parsed {
            ($field:ident) => {
                if let Some(v) = file.$field
                    && !on_command_line(stringify!($field))
                {
                    self.$field = v.parse().map_err(|e| bad(stringify!($field), &v, e))?;
                }
            };
        }
        macro_rules! cidrs {
            ($field:ident) => {
                if let Some(v) = file.$field
                    && !on_command_line(stringify!($field))
                {
                    self.$field = v
                        .iter()
                        .map(|c| c.parse().map_err(|e| bad(stringify!($field), c, e)))
                        .collect::<Result<_, _>>()?;
                }
            };
        }
        parsed!(listen_ip);
        take!(port);
        if let Some(v) = file.cgroup_root
            && !on_command_line("cgroup_root")
        {
            self.cgroup_root = Some(v);
        }
        take!(btf_path);
        take!(max_cgroups);
        cidrs!(pod_cidr);
        cidrs!(service_cidr);
        cidrs!(node_cidr);
        take!(cri_endpoints);
        take!(runtime_timeout_ms);
        take!(deleted_grace_seconds);
        take!(reconcile_seconds);
        take!(kubelet_rows);
        take!(kubelet_extra_cgroups);
        take!(log_level);
        take!(disable_metrics);
        take!(enable_metrics);
        take!(include_cgroups);
        take!(exclude_cgroups);
        take!(include_namespaces);
        take!(exclude_namespaces);
        if let Some(v) = file.include_pods
            && !on_command_line("include_pods")
        {
            self.include_pods = Some(v);
        }
        if let Some(v) = file.exclude_pods
            && !on_command_line("exclude_pods")
        {
            self.exclude_pods = Some(v);
        }
        take!(aggregation);
        if let Some(table) = file.aggregate
            && !on_command_line("aggregate")
        {
            let mut pairs: Vec<String> = table.iter().map(|(g, l)| format!("{g}={l}")).collect();
            pairs.sort();
            self.aggregate = pairs;
        }
        take!(max_series_per_family);
        if let Some(v) = file.profile
            && !on_command_line("profile")
        {
            self.profile = Some(v);
        }
        if let Some(v) = file.max_housekeeping_interval
            && !on_command_line("max_housekeeping_interval")
        {
            self.max_housekeeping_interval =
                parse_duration(&v).map_err(|e| bad("max_housekeeping_interval", &v, e))?;
        }
        Ok(())
    }

    /// Checks what clap's types cannot: ranges, group names, patterns, levels.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(16..=1_048_576).contains(&self.max_cgroups) {
            return Err(bad(
                "max_cgroups",
                self.max_cgroups,
                "must be from 16 to 1048576",
            ));
        }
        if !(self.deleted_grace_seconds.is_finite() && self.deleted_grace_seconds >= 0.0) {
            return Err(bad(
                "deleted_grace_seconds",
                self.deleted_grace_seconds,
                "must be a number of seconds ≥ 0",
            ));
        }
        // Upper bounds keep every later `Instant + duration` and timeout product far
        // from overflow; zero would be silently raised to something else.
        if !(1..=600_000).contains(&self.runtime_timeout_ms) {
            return Err(bad(
                "runtime_timeout_ms",
                self.runtime_timeout_ms,
                "must be from 1 to 600000 (10 minutes)",
            ));
        }
        if self.deleted_grace_seconds > 86_400.0 {
            return Err(bad(
                "deleted_grace_seconds",
                self.deleted_grace_seconds,
                "must be at most 86400 (a day)",
            ));
        }
        if !(1..=86_400).contains(&self.reconcile_seconds) {
            return Err(bad(
                "reconcile_seconds",
                self.reconcile_seconds,
                "must be from 1 to 86400 (a day)",
            ));
        }
        if self.max_housekeeping_interval > std::time::Duration::from_secs(86_400) {
            return Err(bad(
                "max_housekeeping_interval",
                format_args!("{:?}", self.max_housekeeping_interval),
                "must be at most 24h",
            ));
        }
        let empty_path = |key: &'static str, path: &std::path::Path| {
            if path.as_os_str().is_empty() {
                Err(bad(key, "", "must not be empty"))
            } else {
                Ok(())
            }
        };
        empty_path("btf_path", &self.btf_path)?;
        if let Some(root) = &self.cgroup_root {
            empty_path("cgroup_root", root)?;
        }
        if let Some(file) = &self.config {
            empty_path("config", file)?;
        }
        for endpoint in &self.cri_endpoints {
            empty_path("cri_endpoints", endpoint)?;
        }
        for path in &self.kubelet_extra_cgroups {
            if !path.starts_with('/') {
                return Err(bad(
                    "kubelet_extra_cgroups",
                    path,
                    "must be a cgroup path starting with /",
                ));
            }
        }
        if self.log_level.trim().is_empty() {
            return Err(bad("log_level", &self.log_level, "must not be empty"));
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log_level) {
            return Err(bad("log_level", &self.log_level, e));
        }
        self.cost()?;
        Ok(())
    }

    /// The cost-control settings (metric groups, cgroup selection, aggregation,
    /// series budget), checked.
    pub fn cost(&self) -> Result<CostSettings, ConfigError> {
        let groups = |key: &'static str, names: &[String]| {
            for name in names {
                crate::cost::find_group(name).map_err(|e| {
                    bad(
                        key,
                        name,
                        format_args!("unknown metric group (valid: {})", e.valid),
                    )
                })?;
            }
            Ok::<_, ConfigError>(())
        };
        groups("disable_metrics", &self.disable_metrics)?;
        groups("enable_metrics", &self.enable_metrics)?;
        let profile = self.profile()?;
        let groups = match &profile {
            Some(_) if !self.enable_metrics.is_empty() => {
                return Err(bad(
                    "enable_metrics",
                    self.enable_metrics.join(","),
                    "a profile decides the groups: use --disable_metrics to remove some",
                ));
            }
            Some(p) => MetricGroups::for_profile(p.families.as_deref(), &self.disable_metrics),
            None => MetricGroups::from_lists(&self.enable_metrics, &self.disable_metrics),
        }
        .map_err(|e| bad("disable_metrics", e.name.clone(), e))?;
        let globs = |key: &'static str, patterns: &[String]| {
            patterns
                .iter()
                .map(|p| p.parse::<Glob>().map_err(|e| bad(key, p, e)))
                .collect::<Result<Vec<_>, _>>()
        };
        let namespaces = |key: &'static str, names: &[String]| {
            for n in names {
                let valid = !n.is_empty()
                    && n.len() <= 63
                    && n.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
                if !valid {
                    return Err(bad(
                        key,
                        n,
                        "not a Kubernetes namespace name (RFC 1123 label)",
                    ));
                }
            }
            Ok(names.to_vec())
        };
        let selector = |key: &'static str, text: Option<&str>| {
            text.map(|t| {
                t.parse::<crate::cost::LabelSelector>()
                    .map_err(|e| bad(key, t, e))
            })
            .transpose()
        };
        let selection = Selection {
            include_paths: globs("include_cgroups", &self.include_cgroups)?,
            exclude_paths: globs("exclude_cgroups", &self.exclude_cgroups)?,
            include_namespaces: namespaces("include_namespaces", &self.include_namespaces)?,
            exclude_namespaces: namespaces("exclude_namespaces", &self.exclude_namespaces)?,
            include_pods: selector("include_pods", self.include_pods.as_deref())?,
            exclude_pods: selector("exclude_pods", self.exclude_pods.as_deref())?,
        };
        let default: Level = self
            .aggregation
            .parse()
            .map_err(|e| bad("aggregation", &self.aggregation, e))?;
        let mut per_group = HashMap::new();
        for pair in &self.aggregate {
            let (group, level) = pair
                .split_once('=')
                .ok_or_else(|| bad("aggregate", pair, "want GROUP=LEVEL, e.g. network=pod"))?;
            let spec = crate::cost::find_group(group).map_err(|e| {
                bad(
                    "aggregate",
                    pair,
                    format_args!("unknown metric group (valid: {})", e.valid),
                )
            })?;
            let level: Level = level.parse().map_err(|e| bad("aggregate", pair, e))?;
            per_group.insert(spec.name, level);
        }
        Ok(CostSettings {
            selection,
            shaping: Shaping {
                groups,
                aggregation: Aggregation { default, per_group },
                max_series_per_family: self.max_series_per_family,
                pod_rows_only: profile.is_some_and(|p| p.rows == ProfileRows::Pods),
                socket_destinations: !self.destinations().is_empty(),
            },
        })
    }

    /// The `--profile`, parsed.
    pub fn profile(&self) -> Result<Option<Profile>, ConfigError> {
        self.profile
            .as_deref()
            .map(|name| name.parse::<Profile>().map_err(|e| bad("profile", name, e)))
            .transpose()
    }

    /// Whether only the kubelet's rows are exported (`--kubelet_rows`, or a profile
    /// of a kubelet consumer).
    pub fn exports_kubelet_rows(&self) -> bool {
        self.kubelet_rows
            || self
                .profile()
                .ok()
                .flatten()
                .is_some_and(|p| p.rows != ProfileRows::Any)
    }

    /// Every configured CIDR with its destination class (`kadvisor_common::DEST_*`).
    pub fn destinations(&self) -> Vec<(Cidr, u32)> {
        let mut out = Vec::new();
        for (cidrs, class) in [
            (&self.pod_cidr, kadvisor_common::DEST_POD),
            (&self.service_cidr, kadvisor_common::DEST_SERVICE),
            (&self.node_cidr, kadvisor_common::DEST_NODE),
        ] {
            out.extend(cidrs.iter().map(|c| (*c, class)));
        }
        out
    }
}

/// Parses the file, naming the line of a syntax, type or unknown-key error.
fn parse_file(path: &std::path::Path, text: &str) -> Result<FileConfig, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let start = e.span().map_or(0, |s| s.start).min(text.len());
        let line = text[..start].matches('\n').count() + 1;
        let line_text = text.lines().nth(line - 1).unwrap_or_default().trim();
        ConfigError::Syntax {
            path: path.to_owned(),
            line,
            text: line_text.to_owned(),
            message: e.message().replace('\n', " "),
        }
    })
}

/// A Go-style duration: a number with a unit `ms`, `s`, `m` or `h` (a bare number is
/// seconds, `0` is zero).
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let scale = match unit {
        "" | "s" => 1.0,
        "ms" => 0.001,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return Err(format!("{text:?}: unit must be ms, s, m or h (e.g. 15s)")),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (e.g. 15s)"))?;
    std::time::Duration::try_from_secs_f64(value * scale).map_err(|e| format!("{text:?}: {e}"))
}

/// An IP network, `address/prefix`. Host bits must be zero, so a typo such as
/// `10.0.0.1/8` is caught instead of silently meaning `10.0.0.0/8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    /// The `DESTINATIONS` trie key: prefix length and IPv6 address, IPv4 mapped to
    /// `::ffff:a.b.c.d` (prefix + 96).
    pub fn trie_key(&self) -> (u32, [u8; 16]) {
        match self.addr {
            IpAddr::V4(v4) => (u32::from(self.prefix) + 96, v4.to_ipv6_mapped().octets()),
            IpAddr::V6(v6) => (u32::from(self.prefix), v6.octets()),
        }
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = text.split_once('/').ok_or_else(|| {
            format!("{text:?} is not a CIDR (want address/prefix, e.g. 10.244.0.0/16)")
        })?;
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{addr:?} is not an IPv4 or IPv6 address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| *p <= max)
            .ok_or_else(|| format!("prefix {prefix:?} must be a number from 0 to {max}"))?;
        let bits = match addr {
            IpAddr::V4(v4) => u128::from(u32::from(v4)) << 96,
            IpAddr::V6(v6) => u128::from(v6),
        };
        let host_bits = bits.checked_shl(u32::from(prefix)).unwrap_or(0);
        if host_bits != 0 {
            return Err(format!(
                "{text} has host bits set (did you mean the network address?)"
            ));
        }
        Ok(Self { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_file(text: &str, flags: &[&str]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kadvisor.toml");
        std::fs::write(&path, text).unwrap();
        let mut args = vec!["kadvisor", "--config", path.to_str().unwrap()];
        args.extend(flags);
        Config::load_from(args)
    }

    #[test]
    fn file_values_apply_and_flags_override_them() {
        let c = with_file(
            "port = 9100\ndisable_metrics = [\"sched\", \"tcp\"]\naggregation = \"pod\"\n\
             exclude_namespaces = [\"kube-system\"]\npod_cidr = [\"10.244.0.0/16\"]\n\
             [aggregate]\ncpu = \"container\"\n",
            &["--port", "9200"],
        )
        .unwrap();
        assert_eq!(c.port, 9200, "the flag wins");
        assert_eq!(c.pod_cidr.len(), 1);
        let cost = c.cost().unwrap();
        assert!(!cost.groups().on("sched") && cost.groups().on("network"));
        assert_eq!(cost.shaping.aggregation.default, Level::Pod);
        assert_eq!(
            cost.shaping
                .aggregation
                .level_of_family("container_cpu_usage_seconds_total"),
            Level::Container
        );
        assert!(cost.selection.uses_namespaces());
    }

    #[test]
    fn a_profile_from_the_file_sets_groups_and_rows() {
        let c = with_file("profile = \"kube-prometheus-stack\"\n", &[]).unwrap();
        assert!(c.exports_kubelet_rows());
        let cost = c.cost().unwrap();
        assert!(cost.shaping.pod_rows_only);
        assert!(!cost.groups().on("process") && cost.groups().on("memory"));
        assert!(
            !cost.groups().family_on("container_memory_swap"),
            "the chart drops it"
        );
        let err = with_file("", &["--profile", "kube-prom"])
            .and_then(|c| c.cost())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("invalid profile \"kube-prom\": unknown profile"),
            "{err}"
        );
        let err = with_file("profile = \"cadvisor\"\nenable_metrics = [\"cpu\"]\n", &[])
            .and_then(|c| c.cost())
            .unwrap_err()
            .to_string();
        assert!(err.contains("a profile decides the groups"), "{err}");
    }

    #[test]
    fn errors_name_the_key_and_value() {
        for (text, want) in [
            ("prot = 1\n", "unknown field `prot`"),
            ("port = \"eighty\"\n", "line 1 `port = \"eighty\"`"),
            (
                "disable_metrics = [\"cpuu\"]\n",
                "invalid disable_metrics \"cpuu\": unknown metric group (valid: cpu,",
            ),
            (
                "aggregation = \"cluster\"\n",
                "invalid aggregation \"cluster\"",
            ),
            (
                "[aggregate]\nnetwork = \"pods\"\n",
                "invalid aggregate \"network=pods\"",
            ),
            (
                "exclude_cgroups = [\"system.slice\"]\n",
                "invalid exclude_cgroups \"system.slice\"",
            ),
            (
                "pod_cidr = [\"10.0.0.1/8\"]\n",
                "invalid pod_cidr \"10.0.0.1/8\"",
            ),
            ("max_cgroups = 1\n", "invalid max_cgroups \"1\""),
            (
                "exclude_namespaces = [\"Kube_System\"]\n",
                "invalid exclude_namespaces",
            ),
        ] {
            let e = with_file(text, &[]).unwrap_err().to_string();
            assert!(e.contains(want), "{text}: {e}");
            assert_eq!(e.lines().count(), 1, "{e}");
        }
        let e = Config::load_from(["kadvisor", "--aggregate", "network"]).unwrap_err();
        assert!(e.to_string().contains("want GROUP=LEVEL"), "{e}");
    }

    #[test]
    fn parses_go_durations() {
        use std::time::Duration;
        for (text, want) in [
            ("15s", Duration::from_secs(15)),
            ("0", Duration::ZERO),
            ("2", Duration::from_secs(2)),
            ("500ms", Duration::from_millis(500)),
            ("1m", Duration::from_secs(60)),
            ("1.5h", Duration::from_secs(5400)),
        ] {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
        }
        for bad in ["", "s", "15x", "-1s", "1e3s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_v4_and_v6_cidrs() {
        let c: Cidr = "10.244.0.0/16".parse().unwrap();
        assert_eq!(c.trie_key().0, 112);
        assert_eq!(&c.trie_key().1[10..], &[0xff, 0xff, 10, 244, 0, 0]);
        let c: Cidr = "fd00::/8".parse().unwrap();
        assert_eq!(
            c.trie_key(),
            (8, "fd00::".parse::<std::net::Ipv6Addr>().unwrap().octets())
        );
        assert_eq!("0.0.0.0/0".parse::<Cidr>().unwrap().prefix, 0);
        assert_eq!(c.to_string(), "fd00::/8");
    }

    #[test]
    fn rejects_bad_cidrs_with_a_reason() {
        for (bad, why) in [
            ("10.0.0.0", "not a CIDR"),
            ("10.0.0/8", "not an IPv4 or IPv6 address"),
            ("10.0.0.0/33", "from 0 to 32"),
            ("fd00::/129", "from 0 to 128"),
            ("10.0.0.1/8", "host bits"),
            ("10.0.0.0/x", "must be a number"),
        ] {
            let err = bad.parse::<Cidr>().unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }
}
