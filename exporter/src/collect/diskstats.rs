//! The root row's disk IO from `/proc/diskstats`, as the kubelet serves it: one series
//! per mounted block filesystem's device (the `device` label is the mount source, as
//! on `container_fs_usage_bytes`) for merged reads/writes, sectors, time spent, IOs in
//! progress and IO time (kernel Documentation/admin-guide/iostats.rst).
//!
//! Two differences from cAdvisor, on purpose: the device is found by its major:minor
//! from mountinfo, so NVMe, loop and other disks get their numbers (cAdvisor keeps
//! only names matching `(s|v|xv)d…|dm-…` and serves zeros for the rest), and the
//! millisecond fields are served in seconds (cAdvisor divides milliseconds by 10⁹,
//! which makes them 10⁶ times too small).
use super::{
    Row,
    blkio::FsUsage,
    samples::{MetricType, SampleSet},
};

/// One `/proc/diskstats` line: the first 11 statistics fields (the only ones every
/// kernel since 2.6 has), in the kernel's units.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskStats {
    pub major: u32,
    pub minor: u32,
    pub reads_merged: u64,
    pub sectors_read: u64,
    pub read_ms: u64,
    pub writes_merged: u64,
    pub sectors_written: u64,
    pub write_ms: u64,
    pub ios_in_progress: u64,
    pub io_ms: u64,
    pub weighted_io_ms: u64,
}

/// Every well-formed line of `/proc/diskstats` (a malformed one is skipped).
pub fn parse(text: &str) -> Vec<DiskStats> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let n = |i: usize| fields.get(i)?.parse::<u64>().ok();
            Some(DiskStats {
                major: u32::try_from(n(0)?).ok()?,
                minor: u32::try_from(n(1)?).ok()?,
                // fields[2] is the name; [3] reads completed (served per cgroup by
                // container_fs_reads_total from io.stat/blkio, as the kubelet does).
                reads_merged: n(4)?,
                sectors_read: n(5)?,
                read_ms: n(6)?,
                writes_merged: n(8)?,
                sectors_written: n(9)?,
                write_ms: n(10)?,
                ios_in_progress: n(11)?,
                io_ms: n(12)?,
                weighted_io_ms: n(13)?,
            })
        })
        .collect()
}

type Family = (
    &'static str,
    &'static str,
    MetricType,
    fn(&DiskStats) -> f64,
);

#[expect(
    clippy::cast_precision_loss,
    reason = "counters stay exact in f64 up to 2^53"
)]
const FAMILIES: [Family; 9] = [
    (
        "container_fs_reads_merged_total",
        "Cumulative count of reads merged",
        MetricType::Counter,
        |d| d.reads_merged as f64,
    ),
    (
        "container_fs_sector_reads_total",
        "Cumulative count of sector reads completed",
        MetricType::Counter,
        |d| d.sectors_read as f64,
    ),
    (
        "container_fs_read_seconds_total",
        "Cumulative count of seconds spent reading",
        MetricType::Counter,
        |d| d.read_ms as f64 / 1000.0,
    ),
    (
        "container_fs_writes_merged_total",
        "Cumulative count of writes merged",
        MetricType::Counter,
        |d| d.writes_merged as f64,
    ),
    (
        "container_fs_sector_writes_total",
        "Cumulative count of sector writes completed",
        MetricType::Counter,
        |d| d.sectors_written as f64,
    ),
    (
        "container_fs_write_seconds_total",
        "Cumulative count of seconds spent writing",
        MetricType::Counter,
        |d| d.write_ms as f64 / 1000.0,
    ),
    (
        "container_fs_io_current",
        "Number of I/Os currently in progress",
        MetricType::Gauge,
        |d| d.ios_in_progress as f64,
    ),
    (
        "container_fs_io_time_seconds_total",
        "Cumulative count of seconds spent doing I/Os",
        MetricType::Counter,
        |d| d.io_ms as f64 / 1000.0,
    ),
    (
        "container_fs_io_time_weighted_seconds_total",
        "Cumulative weighted I/O time in seconds",
        MetricType::Counter,
        |d| d.weighted_io_ms as f64 / 1000.0,
    ),
];

/// Writes the root row's series: one per filesystem device that `/proc/diskstats`
/// has a line for.
pub fn write(out: &mut SampleSet, root: &Row, filesystems: &[FsUsage], stats: &[DiskStats]) {
    let devices: Vec<(&str, &DiskStats)> = filesystems
        .iter()
        .filter_map(|f| {
            let stat = stats
                .iter()
                .find(|s| (s.major, s.minor) == (f.major, f.minor))?;
            Some((f.device.as_str(), stat))
        })
        .collect();
    for (name, help, kind, value) in FAMILIES {
        out.family(name, help, kind);
        for (device, stat) in &devices {
            out.sample(name, Some(&root.labels), &[("device", device)], value(stat));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_and_units_of_a_kernel_line() {
        // Linux 6.x: 17 statistics fields (discard and flush ones after the 11th).
        let text = "   7       0 loop0 10 2 800 30 40 5 1600 70 1 90 110 0 0 0 0 0 0\n\
                    254       0 vda 70163 7462 5988450 89447 45076 96532 31865176 325336 0 23720 424157 25550 32 2715808 8646 3738 727\n\
                    bad line\n";
        let stats = parse(text);
        assert_eq!(stats.len(), 2);
        assert_eq!(
            stats[0],
            DiskStats {
                major: 7,
                minor: 0,
                reads_merged: 2,
                sectors_read: 800,
                read_ms: 30,
                writes_merged: 5,
                sectors_written: 1600,
                write_ms: 70,
                ios_in_progress: 1,
                io_ms: 90,
                weighted_io_ms: 110,
            }
        );
        let fs = FsUsage {
            device: "/dev/loop0".to_owned(),
            major: 7,
            minor: 0,
            usage_bytes: 0,
            limit_bytes: 0,
            inodes_total: 0,
            inodes_free: 0,
        };
        let mut out = SampleSet::default();
        write(&mut out, &Row::new(1, "/"), &[fs], &stats);
        let text = out.to_text();
        let base = "container=\"\",id=\"/\",image=\"\",name=\"\",namespace=\"\",pod=\"\",device=\"/dev/loop0\"";
        for (family, value) in [
            ("container_fs_reads_merged_total", "2"),
            ("container_fs_sector_writes_total", "1600"),
            ("container_fs_read_seconds_total", "0.03"),
            ("container_fs_io_current", "1"),
            ("container_fs_io_time_weighted_seconds_total", "0.11"),
        ] {
            assert!(
                text.contains(&format!("{family}{{{base}}} {value}\n")),
                "{family} {value}\n{text}"
            );
        }
        assert!(!text.contains("/dev/vda"), "vda is not mounted: {text}");
    }
}
