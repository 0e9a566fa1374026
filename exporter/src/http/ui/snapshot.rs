//! `GET /ui/snapshot`: one collection's values for the page, as JSON.
//!
//! Made from the structured samples of the collection that `/metrics` renders
//! (`collect::SampleSet`), never from its text. Only the latest values: counters as
//! totals (the page turns consecutive snapshots into rates), gauges as they are.
//! Nothing is kept between requests, so the response is bounded by the rows of one
//! collection (see docs/web-ui.md for the format).
use std::{
    collections::{BTreeMap, HashMap, HashSet},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::Serialize;

use crate::{
    collect::{
        SampleSet,
        samples::{Family, Sample},
    },
    runtime::labels::ContainerLabels,
};

/// Bumped when a field changes meaning or disappears (new fields do not bump it).
pub const FORMAT_VERSION: u32 = 1;

/// The page polls every second while a collection is cheap...
const MIN_POLL: Duration = Duration::from_secs(1);
/// ...and at least this often however slow collections get.
const MAX_POLL: Duration = Duration::from_secs(10);
/// A page left open may keep kadvisor busy for at most 1/`COST_SHARE` of the time.
const COST_SHARE: u32 = 10;

/// How long the page should wait before its next poll, given the CPU time this
/// collection cost: every collection of a page is a full scrape, so a slow host
/// (thousands of cgroups) is polled less often rather than kept busy by a browser.
/// CPU time, not wall time: on a loaded host a cheap collection waits for a CPU,
/// and that wait costs nothing but would slow the page below once a second.
pub fn poll_interval(collection: Duration) -> Duration {
    (collection * COST_SHARE).clamp(MIN_POLL, MAX_POLL)
}

/// One snapshot. Field names are the JSON's.
#[derive(Debug, Serialize)]
pub struct Snapshot {
    pub version: u32,
    /// Wall-clock time the collection started, ms since the Unix epoch: counters
    /// are read right after, so rates divide by the difference of two of these.
    pub time_ms: u64,
    /// When to poll next (`poll_interval`).
    pub interval_ms: u64,
    pub machine: Machine,
    /// Every row of the collection, root first, in the body's order.
    pub rows: Vec<Row>,
}

/// The host: `machine_*` and `cadvisor_version_info`.
#[derive(Debug, Default, Serialize)]
pub struct Machine {
    pub cpu_cores: Option<f64>,
    pub cpu_physical_cores: Option<f64>,
    pub memory_bytes: Option<f64>,
    pub swap_bytes: Option<f64>,
    pub machine_id: String,
    pub kernel_version: String,
    pub os_version: String,
    /// `container_scrape_error`: 1 when a source failed in this collection.
    pub container_scrape_error: Option<f64>,
}

/// One cgroup row.
#[derive(Debug, Serialize)]
pub struct Row {
    /// The cgroup path (the `id` label).
    pub id: String,
    /// Removed from the tree, shown for the grace period with its final values.
    pub removed: bool,
    /// The runtime's labels that are set: name, image, namespace, pod, container.
    pub labels: BTreeMap<&'static str, String>,
    /// Values by key (`FIELDS`); a family the collection did not serve is absent.
    pub values: BTreeMap<&'static str, f64>,
    /// Bytes sent by the row's sockets, by destination class.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub egress_bytes: BTreeMap<String, f64>,
}

/// How a family becomes a row value: samples of `family` whose `only` label matches
/// (if any) are summed into `key` (over interfaces, devices, signals, classes).
struct Field {
    family: &'static str,
    key: &'static str,
    only: Option<(&'static str, &'static str)>,
}

const fn field(family: &'static str, key: &'static str) -> Field {
    Field {
        family,
        key,
        only: None,
    }
}

/// The row values the page draws.
const FIELDS: &[Field] = &[
    Field {
        family: "container_cpu_usage_seconds_total",
        key: "cpu_seconds",
        only: Some(("cpu", "total")),
    },
    field("container_cpu_user_seconds_total", "cpu_user_seconds"),
    field("container_cpu_system_seconds_total", "cpu_system_seconds"),
    field("container_cpu_cfs_periods_total", "cpu_periods"),
    field(
        "container_cpu_cfs_throttled_periods_total",
        "cpu_throttled_periods",
    ),
    field(
        "container_cpu_cfs_throttled_seconds_total",
        "cpu_throttled_seconds",
    ),
    field("container_spec_cpu_quota", "cpu_quota_us"),
    field("container_spec_cpu_period", "cpu_period_us"),
    field("container_memory_usage_bytes", "memory_usage_bytes"),
    field(
        "container_memory_working_set_bytes",
        "memory_working_set_bytes",
    ),
    field("container_memory_rss", "memory_rss_bytes"),
    field("container_memory_cache", "memory_cache_bytes"),
    field("container_spec_memory_limit_bytes", "memory_limit_bytes"),
    field(
        "container_network_receive_bytes_total",
        "network_receive_bytes",
    ),
    field(
        "container_network_transmit_bytes_total",
        "network_transmit_bytes",
    ),
    field(
        "container_socket_receive_bytes_total",
        "socket_receive_bytes",
    ),
    field(
        "container_socket_transmit_bytes_total",
        "socket_transmit_bytes",
    ),
    field("container_fs_reads_bytes_total", "io_read_bytes"),
    field("container_fs_writes_bytes_total", "io_write_bytes"),
    field("container_processes", "processes"),
    field("container_threads", "threads"),
    field("container_file_descriptors", "file_descriptors"),
    field("container_sockets", "sockets"),
    field("container_oom_events_total", "oom_kills"),
    field("container_crashes_total", "crashes"),
    field("container_start_time_seconds", "start_time_seconds"),
];

/// The family whose samples also fill `egress_bytes`, by their `destination`.
const EGRESS_FAMILY: &str = "container_socket_transmit_bytes_total";

const MACHINE_FAMILIES: [&str; 6] = [
    "machine_cpu_cores",
    "machine_cpu_physical_cores",
    "machine_memory_bytes",
    "machine_swap_bytes",
    "cadvisor_version_info",
    "container_scrape_error",
];

impl Snapshot {
    /// Builds the snapshot of one collection. `live` holds the paths of the cgroups
    /// that exist now: a row not among them is a removed cgroup in its grace period.
    pub fn build(set: &SampleSet, live: &HashSet<String>) -> Self {
        let mut machine = Machine::default();
        let mut rows: Vec<Row> = Vec::new();
        // Rows by id, in order of first appearance (root first).
        let mut index: HashMap<String, usize> = HashMap::new();
        for family in set.families() {
            let is_machine = MACHINE_FAMILIES.contains(&family.name.as_str());
            let fields: Vec<&Field> = FIELDS.iter().filter(|f| f.family == family.name).collect();
            if !is_machine && fields.is_empty() {
                continue;
            }
            for sample in &family.samples {
                let extra = || set.extra(sample);
                if is_machine {
                    machine.add(family, sample, &extra);
                    continue;
                }
                let Some(row) = &sample.row else {
                    continue;
                };
                let labels = &row.labels;
                let at = *index.entry(labels.id.clone()).or_insert_with(|| {
                    rows.push(Row::new(labels, live));
                    rows.len() - 1
                });
                rows[at].add(family, &fields, sample.value, &extra);
            }
        }
        Self {
            version: FORMAT_VERSION,
            time_ms: 0,
            interval_ms: u64::try_from(MIN_POLL.as_millis()).unwrap_or(u64::MAX),
            machine,
            rows,
        }
    }

    /// Sets when the collection started (wall clock, so the page's rates divide by
    /// the time between two collections' counter reads, not between two requests)
    /// and the CPU time it cost (`poll_interval`).
    #[must_use]
    pub fn stamped(mut self, started: SystemTime, cost: Duration) -> Self {
        self.time_ms = started
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        self.interval_ms = u64::try_from(poll_interval(cost).as_millis()).unwrap_or(u64::MAX);
        self
    }
}

/// The value of label `name` among `pairs`, `""` when absent.
fn label<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>, name: &str) -> &'a str {
    pairs
        .into_iter()
        .find(|(key, _)| *key == name)
        .map_or("", |(_, value)| value)
}

impl Machine {
    fn add<'a, I: Iterator<Item = (&'a str, &'a str)>>(
        &mut self,
        family: &Family,
        sample: &Sample,
        extra: &dyn Fn() -> I,
    ) {
        let value = Some(sample.value);
        match family.name.as_str() {
            "machine_cpu_cores" => {
                self.cpu_cores = value;
                label(extra(), "machine_id").clone_into(&mut self.machine_id);
            }
            "machine_cpu_physical_cores" => self.cpu_physical_cores = value,
            "machine_memory_bytes" => self.memory_bytes = value,
            "machine_swap_bytes" => self.swap_bytes = value,
            "container_scrape_error" => self.container_scrape_error = value,
            "cadvisor_version_info" => {
                label(extra(), "kernelVersion").clone_into(&mut self.kernel_version);
                label(extra(), "osVersion").clone_into(&mut self.os_version);
            }
            _ => {}
        }
    }
}

impl Row {
    fn new(labels: &ContainerLabels, live: &HashSet<String>) -> Self {
        let runtime = [
            ("name", &labels.name),
            ("image", &labels.image),
            ("namespace", &labels.namespace),
            ("pod", &labels.pod),
            ("container", &labels.container),
        ];
        Self {
            removed: !live.contains(&labels.id),
            id: labels.id.clone(),
            labels: runtime
                .into_iter()
                .filter(|(_, value)| !value.is_empty())
                .map(|(key, value)| (key, value.clone()))
                .collect(),
            values: BTreeMap::new(),
            egress_bytes: BTreeMap::new(),
        }
    }

    fn add<'a, I: Iterator<Item = (&'a str, &'a str)>>(
        &mut self,
        family: &Family,
        fields: &[&Field],
        value: f64,
        extra: &dyn Fn() -> I,
    ) {
        for field in fields {
            if field
                .only
                .is_some_and(|(name, wanted)| label(extra(), name) != wanted)
            {
                continue;
            }
            *self.values.entry(field.key).or_default() += value;
        }
        if family.name == EGRESS_FAMILY {
            let class = label(extra(), "destination");
            if !class.is_empty() {
                *self.egress_bytes.entry(class.to_owned()).or_default() += value;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::collect::samples::{MetricType, RowLabels};

    fn row(id: &str, container: &str) -> Arc<RowLabels> {
        RowLabels::new(ContainerLabels {
            container: container.to_owned(),
            image: if container.is_empty() { "" } else { "busybox" }.to_owned(),
            ..ContainerLabels::for_path(id)
        })
    }

    fn snapshot() -> Snapshot {
        let (root, c1, gone) = (row("/", ""), row("/k/pod1/c1", "app"), row("/gone", ""));
        let mut set = SampleSet::default();
        let cpu = "container_cpu_usage_seconds_total";
        set.family(cpu, "", MetricType::Counter);
        set.sample(cpu, Some(&root), &[("cpu", "total")], 10.0);
        set.sample(cpu, Some(&c1), &[("cpu", "total")], 2.5);
        set.sample(cpu, Some(&gone), &[("cpu", "total")], 1.0);
        let rx = "container_network_receive_bytes_total";
        set.family(rx, "", MetricType::Counter);
        set.sample(rx, Some(&root), &[("interface", "eth0")], 100.0);
        set.sample(rx, Some(&root), &[("interface", "eth1")], 50.0);
        let tx = "container_socket_transmit_bytes_total";
        set.family(tx, "", MetricType::Counter);
        set.sample(tx, Some(&c1), &[("destination", "pod")], 7.0);
        set.sample(tx, Some(&c1), &[("destination", "external")], 3.0);
        let oom = "container_oom_events_total";
        set.family(oom, "", MetricType::Counter);
        set.sample(oom, Some(&gone), &[], 1.0);
        set.family("kadvisor_rows", "", MetricType::Gauge);
        set.sample("kadvisor_rows", None, &[("state", "live")], 2.0);
        let machine = [("boot_id", "b"), ("machine_id", "m"), ("system_uuid", "u")];
        set.family("machine_cpu_cores", "", MetricType::Gauge);
        set.sample("machine_cpu_cores", None, &machine, 2.0);
        set.family("machine_memory_bytes", "", MetricType::Gauge);
        set.sample("machine_memory_bytes", None, &machine, 1024.0);
        set.family("cadvisor_version_info", "", MetricType::Gauge);
        set.sample(
            "cadvisor_version_info",
            None,
            &[("kernelVersion", "6.18"), ("osVersion", "Debian")],
            1.0,
        );
        let live: HashSet<String> = ["/", "/k/pod1/c1"].map(str::to_owned).into();
        Snapshot::build(&set, &live).stamped(
            UNIX_EPOCH + Duration::from_secs(1),
            Duration::from_millis(50),
        )
    }

    #[test]
    fn slow_collections_are_polled_less_often() {
        assert_eq!(poll_interval(Duration::from_millis(5)), MIN_POLL);
        assert_eq!(
            poll_interval(Duration::from_millis(250)),
            Duration::from_millis(2500)
        );
        assert_eq!(poll_interval(Duration::from_secs(3)), MAX_POLL);
    }

    #[test]
    fn rows_carry_their_values_labels_and_removal() {
        let s = snapshot();
        let ids: Vec<&str> = s.rows.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["/", "/k/pod1/c1", "/gone"]);
        let root = &s.rows[0];
        assert!(!root.removed);
        assert!(root.labels.is_empty());
        assert_eq!(root.values["cpu_seconds"], 10.0);
        assert_eq!(
            root.values["network_receive_bytes"], 150.0,
            "summed over interfaces"
        );
        let c1 = &s.rows[1];
        assert_eq!(c1.labels["container"], "app");
        assert_eq!(c1.labels["image"], "busybox");
        assert_eq!(c1.values["socket_transmit_bytes"], 10.0);
        assert_eq!(c1.egress_bytes["pod"], 7.0);
        assert_eq!(c1.egress_bytes["external"], 3.0);
        let gone = &s.rows[2];
        assert!(gone.removed, "not live: a grace-period row");
        assert_eq!(gone.values["oom_kills"], 1.0);
        assert!(!gone.values.contains_key("memory_usage_bytes"));
    }

    #[test]
    fn machine_and_json_shape() {
        let s = snapshot();
        assert_eq!(s.machine.cpu_cores, Some(2.0));
        assert_eq!(s.machine.memory_bytes, Some(1024.0));
        assert_eq!(s.machine.machine_id, "m");
        assert_eq!(s.machine.kernel_version, "6.18");
        let json: serde_json::Value = serde_json::to_value(&s).unwrap();
        assert_eq!(json["version"], FORMAT_VERSION);
        assert_eq!(json["time_ms"], 1_000);
        assert_eq!(json["interval_ms"], 1_000);
        assert_eq!(json["rows"][1]["values"]["cpu_seconds"], 2.5);
        assert_eq!(json["rows"][1]["egress_bytes"]["pod"], 7.0);
        assert!(json["rows"][0].get("egress_bytes").is_none());
    }
}
