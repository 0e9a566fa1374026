//! `container_start_time_seconds` and `container_last_seen`.
//!
//! cgroupfs keeps no creation time. Like cAdvisor (which takes the oldest
//! modification time of the cgroup's directories), the start time is the mtime of the
//! cgroup's v2 directory, or of its v1 cpu directory when that is older. kernfs sets
//! it when the directory's inode is first looked up, which for containers is at
//! creation (the runtime writes `cgroup.procs` right after `mkdir`), but a cgroup
//! created by hand and first looked at later reads as younger than it is.
//! `container_last_seen` is the scrape's wall-clock time in whole seconds, as
//! cAdvisor reports it.
use std::{
    collections::HashMap,
    path::Path,
    sync::{LazyLock, Mutex},
    time::{SystemTime, UNIX_EPOCH},
};

use super::{
    ScrapeContext,
    samples::{MetricType, SampleSet},
};
use crate::cgroup::{Controller, ControllerDir};

fn mtime_seconds(dir: &Path) -> Option<f64> {
    // Through the scrape's open parent directory (one lookup, not a path walk).
    let stamp = crate::cgroup::files::stat_file(dir).ok()?;
    Some(stamp.mtime_sec as f64 + stamp.mtime_nsec as f64 / 1e9)
}

/// Start time by cgroup id, of the rows of the last scrape.
static START_TIMES: LazyLock<Mutex<HashMap<u64, f64>>> = LazyLock::new(Mutex::default);

fn start_time(ctx: &ScrapeContext<'_>, path: &str) -> Option<f64> {
    let v2 = ctx.hierarchies.v2_dir(path);
    let v1 = match ctx.hierarchies.controller_dir(Controller::Cpu, path) {
        Some(ControllerDir::V1(dir)) => Some(dir),
        _ => None,
    };
    [v2, v1]
        .iter()
        .flatten()
        .filter_map(|dir| mtime_seconds(dir))
        .reduce(f64::min)
}

pub fn collect(ctx: &ScrapeContext<'_>, out: &mut SampleSet) {
    let name = "container_start_time_seconds";
    out.family(
        name,
        "Start time of the container since unix epoch in seconds.",
        MetricType::Gauge,
    );
    // A cgroup's start time does not change (and its directory's mtime moves when
    // children are created): read once per cgroup id, as cAdvisor does at discovery.
    let mut known = START_TIMES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut seen = HashMap::with_capacity(ctx.rows.len());
    for row in ctx.rows {
        let start = match known.get(&row.id) {
            Some(&start) => Some(start),
            None => start_time(ctx, &row.path),
        };
        if let Some(start) = start {
            seen.insert(row.id, start);
            out.sample(name, Some(&row.labels), &[], start.floor());
        }
    }
    *known = seen;
    drop(known);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let name = "container_last_seen";
    out.family(
        name,
        "Last time a container was seen by the exporter",
        MetricType::Gauge,
    );
    for row in ctx.rows {
        out.sample(name, Some(&row.labels), &[], now as f64);
    }
}
