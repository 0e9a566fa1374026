//! Block IO families, from the kernel's own per-cgroup IO accounting: `io.stat` on
//! cgroup v2, `blkio.throttle.io_service_bytes_recursive` and
//! `blkio.throttle.io_serviced_recursive` on v1 — the files cAdvisor reads.
//!
//! Why files and not a block hook: the kernel charges each bio to the cgroup in the
//! bio's `blkg`, which for buffered writes flushed later by writeback threads is the
//! cgroup that dirtied the pages (cgroup v2 writeback; on v1 the task that issues the
//! IO, e.g. the one calling fsync). A hook charging the current task at submit time
//! would credit the flusher instead. The files already hold the right totals, so a
//! hook would only add cost.
//!
//! Caveat on v1 (this project's hybrid dev host): since Linux 6.x the
//! `blkio.throttle.*` statistics only move for devices on which some cgroup
//! configured a throttle limit; cAdvisor reads the same files and sees the same.
//!
//! The root row also gets `container_fs_{usage,limit}_bytes` and
//! `container_fs_inodes_{total,free}` for every mounted block filesystem (statfs),
//! and that filesystem's device's `/proc/diskstats` numbers (`diskstats`).
use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use super::{
    Row, ScrapeContext,
    samples::{MetricType, SampleSet},
};
use crate::cgroup::{Controller, ControllerDir, files::read_optional};

/// A family: name, help, and the field it reads.
type Family<T> = (&'static str, &'static str, fn(&T) -> u64);

/// IO of one cgroup on one device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceIo {
    pub major: u32,
    pub minor: u32,
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub reads: u64,
    pub writes: u64,
    /// `container_blkio_device_usage_total` operations and bytes: v1's own lines
    /// (Read, Write, Sync, Async, Discard, Total), v2's rbytes/wbytes as Read/Write.
    pub usage: Vec<(String, u64)>,
}

/// Parses v2 `io.stat`: `MAJ:MIN rbytes=.. wbytes=.. rios=.. wios=.. dbytes=.. dios=..`.
pub fn parse_io_stat(text: &str) -> Vec<DeviceIo> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (major, minor) = parse_majmin(fields.next()?)?;
            let mut io = DeviceIo {
                major,
                minor,
                ..DeviceIo::default()
            };
            for field in fields {
                let Some((key, value)) = field.split_once('=') else {
                    continue;
                };
                let Ok(value) = value.parse::<u64>() else {
                    continue;
                };
                match key {
                    "rbytes" => io.read_bytes = value,
                    "wbytes" => io.write_bytes = value,
                    "rios" => io.reads = value,
                    "wios" => io.writes = value,
                    _ => {}
                }
            }
            io.usage = vec![
                ("Read".to_owned(), io.read_bytes),
                ("Write".to_owned(), io.write_bytes),
            ];
            Some(io)
        })
        .collect()
}

/// Parses v1 `io_service_bytes_recursive` and `io_serviced_recursive`
/// (`MAJ:MIN Op value` lines and a final `Total value`).
pub fn parse_v1(bytes: &str, serviced: &str) -> Vec<DeviceIo> {
    let mut devices: Vec<DeviceIo> = Vec::new();
    let mut entry = |majmin: (u32, u32)| -> usize {
        if let Some(i) = devices.iter().position(|d| (d.major, d.minor) == majmin) {
            return i;
        }
        devices.push(DeviceIo {
            major: majmin.0,
            minor: majmin.1,
            ..DeviceIo::default()
        });
        devices.len() - 1
    };
    let mut parsed: Vec<(usize, bool, String, u64)> = Vec::new();
    for (text, is_bytes) in [(bytes, true), (serviced, false)] {
        for line in text.lines() {
            let mut fields = line.split_whitespace();
            let (Some(dev), Some(op), Some(value)) = (fields.next(), fields.next(), fields.next())
            else {
                continue;
            };
            let (Some(majmin), Ok(value)) = (parse_majmin(dev), value.parse::<u64>()) else {
                continue;
            };
            parsed.push((entry(majmin), is_bytes, op.to_owned(), value));
        }
    }
    for (index, is_bytes, op, value) in parsed {
        let Some(io) = devices.get_mut(index) else {
            continue;
        };
        match (is_bytes, op.as_str()) {
            (true, "Read") => io.read_bytes = value,
            (true, "Write") => io.write_bytes = value,
            (false, "Read") => io.reads = value,
            (false, "Write") => io.writes = value,
            _ => {}
        }
        if is_bytes {
            io.usage.push((op, value));
        }
    }
    devices
}

fn parse_majmin(text: &str) -> Option<(u32, u32)> {
    let (major, minor) = text.split_once(':')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// `/dev/<DEVNAME>` from `/sys/dev/block/MAJ:MIN/uevent`, as cAdvisor names devices;
/// `""` when the device is unknown.
fn device_name(sys_root: &Path, major: u32, minor: u32) -> String {
    let uevent = sys_root.join(format!("dev/block/{major}:{minor}/uevent"));
    std::fs::read_to_string(uevent)
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("DEVNAME="))
                .map(|name| format!("/dev/{name}"))
        })
        .unwrap_or_default()
}

pub fn collect(ctx: &ScrapeContext<'_>, out: &mut SampleSet) {
    collect_with(
        ctx,
        Path::new("/sys"),
        Path::new("/proc/self/mountinfo"),
        Path::new("/proc/diskstats"),
        out,
    );
}

pub fn collect_with(
    ctx: &ScrapeContext<'_>,
    sys_root: &Path,
    mountinfo: &Path,
    diskstats: &Path,
    out: &mut SampleSet,
) {
    let mut per_row: Vec<(usize, Vec<DeviceIo>)> = Vec::new();
    let pass = ctx.cgroup_pass().map(|pass| &pass.io_blkgs);
    for (index, row) in ctx.rows.iter().enumerate() {
        let read = || {
            let Some(dir) = ctx.hierarchies.controller_dir(Controller::Blkio, &row.path) else {
                // No io controller mounted: no IO families.
                return Some(None);
            };
            if row.path != "/" && no_block_groups(ctx, pass, row, &dir) {
                // What its files would say: no device line.
                return Some(Some(Vec::new()));
            }
            match read_row(Some(dir)) {
                Ok(devices) => Some(devices),
                Err(e) => {
                    ctx.failed("blkio", &e);
                    None
                }
            }
        };
        match ctx.row_value(index, |v| &mut v.blkio, read) {
            Some(Some(devices)) if !devices.is_empty() => per_row.push((index, devices)),
            _ => {}
        }
    }
    let mut names: HashMap<(u32, u32), String> = HashMap::new();
    for (_, devices) in &per_row {
        for d in devices {
            names
                .entry((d.major, d.minor))
                .or_insert_with(|| device_name(sys_root, d.major, d.minor));
        }
    }
    write_io(out, ctx.rows, &per_row, &names);
    if let Some(root) = ctx.rows.first() {
        match filesystems(mountinfo, sys_root) {
            Ok(fs) => {
                write_fs_usage(out, root, &fs);
                match read_optional(diskstats) {
                    Ok(text) => super::diskstats::write(
                        out,
                        root,
                        &fs,
                        &super::diskstats::parse(&text.unwrap_or_default()),
                    ),
                    Err(e) => ctx.failed("diskstats", &e),
                }
            }
            Err(e) => ctx.failed("filesystem", &e),
        }
    }
}

/// Whether the cgroup pass saw no block group for `row`'s io cgroup: it (and every
/// cgroup below it, whose block groups would have created its own) never did IO on
/// any device, so its IO files list no device. `false` when the pass does not know.
fn no_block_groups(
    ctx: &ScrapeContext<'_>,
    pass: Option<&HashMap<u64, bool>>,
    row: &Row,
    dir: &ControllerDir,
) -> bool {
    let Some(pass) = pass else {
        return false;
    };
    ctx.hierarchy_id(Controller::Blkio, row, dir, |id| pass.contains_key(&id))
        .and_then(|id| pass.get(&id))
        .is_some_and(|&blkgs| !blkgs)
}

fn read_row(
    dir: Option<ControllerDir>,
) -> Result<Option<Vec<DeviceIo>>, crate::cgroup::CgroupError> {
    Ok(match dir {
        None => None,
        Some(ControllerDir::V2(dir)) => {
            read_optional(&dir.join("io.stat"))?.map(|t| parse_io_stat(&t))
        }
        Some(dir @ ControllerDir::V1(_)) => {
            let bytes = read_optional(&dir.join("blkio.throttle.io_service_bytes_recursive"))?;
            let serviced = read_optional(&dir.join("blkio.throttle.io_serviced_recursive"))?;
            match (bytes, serviced) {
                (Some(b), Some(s)) => Some(parse_v1(&b, &s)),
                _ => None,
            }
        }
    })
}

#[expect(
    clippy::cast_precision_loss,
    reason = "IO counters stay exact in f64 up to 8 PiB"
)]
fn write_io(
    out: &mut SampleSet,
    rows: &[Row],
    per_row: &[(usize, Vec<DeviceIo>)],
    names: &HashMap<(u32, u32), String>,
) {
    let name_of = |d: &DeviceIo| names.get(&(d.major, d.minor)).map_or("", String::as_str);
    let families: [Family<DeviceIo>; 4] = [
        (
            "container_fs_reads_bytes_total",
            "Cumulative count of bytes read",
            |d| d.read_bytes,
        ),
        (
            "container_fs_writes_bytes_total",
            "Cumulative count of bytes written",
            |d| d.write_bytes,
        ),
        (
            "container_fs_reads_total",
            "Cumulative count of reads completed",
            |d| d.reads,
        ),
        (
            "container_fs_writes_total",
            "Cumulative count of writes completed",
            |d| d.writes,
        ),
    ];
    for (name, help, field) in families {
        out.family(name, help, MetricType::Counter);
        for (index, devices) in per_row {
            let Some(row) = rows.get(*index) else {
                continue;
            };
            for d in devices {
                out.sample(
                    name,
                    Some(&row.labels),
                    &[("device", name_of(d))],
                    field(d) as f64,
                );
            }
        }
    }
    let usage = "container_blkio_device_usage_total";
    out.family(usage, "Blkio device bytes usage", MetricType::Counter);
    for (index, devices) in per_row {
        let Some(row) = rows.get(*index) else {
            continue;
        };
        for d in devices {
            let (major, minor) = (d.major.to_string(), d.minor.to_string());
            for (op, value) in &d.usage {
                out.sample(
                    usage,
                    Some(&row.labels),
                    &[
                        ("device", name_of(d)),
                        ("major", &major),
                        ("minor", &minor),
                        ("operation", op),
                    ],
                    *value as f64,
                );
            }
        }
    }
}

/// Space and inodes of one mounted block filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsUsage {
    pub device: String,
    /// The device number mountinfo gives the mount (its `/proc/diskstats` line).
    pub major: u32,
    pub minor: u32,
    pub usage_bytes: u64,
    pub limit_bytes: u64,
    pub inodes_total: u64,
    pub inodes_free: u64,
}

/// Every mounted filesystem whose source is a block device (`/dev/...`), once per
/// device (its first mount), with statfs numbers. A root filesystem the kernel mounted
/// itself (no initramfs) has the source `/dev/root`, a name no device node has: it is
/// named from its device number like the IO families name devices, so the root row's
/// filesystem and disk families agree on `device`.
pub fn filesystems(
    mountinfo: &Path,
    sys_root: &Path,
) -> Result<Vec<FsUsage>, crate::cgroup::CgroupError> {
    let text = read_optional(mountinfo)?.unwrap_or_default();
    let mut out: Vec<FsUsage> = Vec::new();
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let Some(mount_point) = left.split(' ').nth(4) else {
            continue;
        };
        let Some((major, minor)) = left.split(' ').nth(2).and_then(parse_majmin) else {
            continue;
        };
        let Some(mut source) = right.split(' ').nth(1).map(str::to_owned) else {
            continue;
        };
        if source == "/dev/root" {
            let name = device_name(sys_root, major, minor);
            if !name.is_empty() {
                source = name;
            }
        }
        if !source.starts_with("/dev/") || out.iter().any(|f| f.device == source) {
            continue;
        }
        if let Some(usage) = statfs(&unescape(mount_point), &source) {
            out.push(FsUsage {
                major,
                minor,
                ..usage
            });
        }
    }
    Ok(out)
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(field: &str) -> PathBuf {
    PathBuf::from(
        field
            .replace("\\040", " ")
            .replace("\\011", "\t")
            .replace("\\012", "\n")
            .replace("\\134", "\\"),
    )
}

fn statfs(mount_point: &Path, device: &str) -> Option<FsUsage> {
    let c_path = std::ffi::CString::new(mount_point.as_os_str().as_encoded_bytes()).ok()?;
    // SAFETY: statfs is plain old data; zeroed is a valid value to be overwritten.
    let mut buf: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: c_path is a valid NUL-terminated string and buf a valid out-pointer.
    if unsafe { libc::statfs(c_path.as_ptr(), &raw mut buf) } != 0 {
        return None;
    }
    let block = u64::try_from(buf.f_bsize).ok()?;
    Some(FsUsage {
        device: device.to_owned(),
        major: 0,
        minor: 0,
        usage_bytes: (buf.f_blocks.saturating_sub(buf.f_bfree)).saturating_mul(block),
        limit_bytes: buf.f_blocks.saturating_mul(block),
        inodes_total: buf.f_files,
        inodes_free: buf.f_ffree,
    })
}

#[expect(
    clippy::cast_precision_loss,
    reason = "filesystem sizes stay exact in f64 up to 8 PiB"
)]
fn write_fs_usage(out: &mut SampleSet, root: &Row, filesystems: &[FsUsage]) {
    let families: [Family<FsUsage>; 4] = [
        (
            "container_fs_usage_bytes",
            "Number of bytes that are consumed by the container on this filesystem.",
            |f| f.usage_bytes,
        ),
        (
            "container_fs_limit_bytes",
            "Number of bytes that can be consumed by the container on this filesystem.",
            |f| f.limit_bytes,
        ),
        ("container_fs_inodes_total", "Number of Inodes", |f| {
            f.inodes_total
        }),
        (
            "container_fs_inodes_free",
            "Number of available Inodes",
            |f| f.inodes_free,
        ),
    ];
    for (name, help, field) in families {
        out.family(name, help, MetricType::Gauge);
        for f in filesystems {
            out.sample(
                name,
                Some(&root.labels),
                &[("device", &f.device)],
                field(f) as f64,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_stat_v2() {
        let text = "254:0 rbytes=4096 wbytes=134217728 rios=1 wios=130 dbytes=0 dios=0\n8:0 rbytes=1 wbytes=2 rios=3 wios=4\n";
        let io = parse_io_stat(text);
        assert_eq!(io.len(), 2);
        assert_eq!((io[0].major, io[0].minor), (254, 0));
        assert_eq!(io[0].write_bytes, 134_217_728);
        assert_eq!(io[0].writes, 130);
        assert_eq!(
            io[0].usage,
            [("Read".to_owned(), 4096), ("Write".to_owned(), 134_217_728)]
        );
        assert_eq!(io[1].reads, 3);
    }

    #[test]
    fn blkio_v1() {
        let bytes = "254:0 Read 0\n254:0 Write 33566720\n254:0 Sync 33566720\n254:0 Async 0\n254:0 Discard 0\n254:0 Total 33566720\nTotal 33566720\n";
        let serviced = "254:0 Read 0\n254:0 Write 24\n254:0 Sync 24\n254:0 Async 0\n254:0 Discard 0\n254:0 Total 24\nTotal 24\n";
        let io = parse_v1(bytes, serviced);
        assert_eq!(io.len(), 1, "{io:?}");
        assert_eq!(io[0].write_bytes, 33_566_720);
        assert_eq!(io[0].writes, 24);
        assert_eq!(io[0].usage.len(), 6);
        assert_eq!(io[0].usage[5], ("Total".to_owned(), 33_566_720));
        assert!(parse_v1("Total 0\n", "Total 0\n").is_empty());
    }

    #[test]
    fn device_names_from_uevent() {
        let dir = tempfile::tempdir().unwrap();
        let dev = dir.path().join("dev/block/254:0");
        std::fs::create_dir_all(&dev).unwrap();
        std::fs::write(
            dev.join("uevent"),
            "MAJOR=254\nMINOR=0\nDEVNAME=vda\nDEVTYPE=disk\n",
        )
        .unwrap();
        assert_eq!(device_name(dir.path(), 254, 0), "/dev/vda");
        assert_eq!(device_name(dir.path(), 1, 1), "");
    }

    #[test]
    fn block_filesystems_once_per_device() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().display().to_string();
        let mountinfo = dir.path().join("mountinfo");
        std::fs::write(
            &mountinfo,
            format!(
                "22 1 254:0 / {root} rw - ext4 /dev/vda rw\n23 22 254:0 /x {root} rw - ext4 /dev/vda rw\n24 1 0:5 / /proc rw - proc proc rw\n"
            ),
        )
        .unwrap();
        let fs = filesystems(&mountinfo, dir.path()).unwrap();
        assert_eq!(fs.len(), 1, "{fs:?}");
        assert_eq!(fs[0].device, "/dev/vda");
        assert_eq!((fs[0].major, fs[0].minor), (254, 0));
        assert!(fs[0].limit_bytes >= fs[0].usage_bytes && fs[0].limit_bytes > 0);
        assert!(fs[0].inodes_total >= fs[0].inodes_free);
    }

    #[test]
    fn root_mounted_by_the_kernel_is_named_from_its_device_number() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().display().to_string();
        let dev = dir.path().join("dev/block/259:0");
        std::fs::create_dir_all(&dev).unwrap();
        std::fs::write(dev.join("uevent"), "MAJOR=259\nMINOR=0\nDEVNAME=nvme0n1\n").unwrap();
        let mountinfo = dir.path().join("mountinfo");
        std::fs::write(
            &mountinfo,
            format!("22 1 259:0 / {root} rw - ext4 /dev/root rw\n"),
        )
        .unwrap();
        let fs = filesystems(&mountinfo, dir.path()).unwrap();
        assert_eq!(fs.len(), 1, "{fs:?}");
        assert_eq!(fs[0].device, "/dev/nvme0n1");
    }
}
