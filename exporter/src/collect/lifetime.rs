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
    path::Path,
    time::{SystemTime, UNIX_EPOCH},
};

use super::{
    ScrapeContext,
    exposition::{Exposition, MetricType},
};
use crate::cgroup::{Controller, ControllerDir};

fn mtime_seconds(dir: &Path) -> Option<f64> {
    let modified = std::fs::metadata(dir).ok()?.modified().ok()?;
    Some(modified.duration_since(UNIX_EPOCH).ok()?.as_secs_f64())
}

pub fn collect(ctx: &ScrapeContext<'_>, out: &mut Exposition) {
    let name = "container_start_time_seconds";
    out.family(
        name,
        "Start time of the container since unix epoch in seconds.",
        MetricType::Gauge,
    );
    for row in ctx.rows {
        let v2 = ctx.hierarchies.v2_dir(&row.path);
        let v1 = match ctx.hierarchies.controller_dir(Controller::Cpu, &row.path) {
            Some(ControllerDir::V1(dir)) => Some(dir),
            _ => None,
        };
        let start = [v2, v1]
            .iter()
            .flatten()
            .filter_map(|dir| mtime_seconds(dir))
            .reduce(f64::min);
        if let Some(start) = start {
            out.sample(name, &row.labels, &[], start.floor());
        }
    }
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
        out.sample(name, &row.labels, &[], now as f64);
    }
}
