//! The kernel's own block IO accounting of a test cgroup, to check kadvisor's
//! `container_fs_*` against: `io.stat` (cgroup v2) or the v1 blkio throttle files.
use std::{
    fs,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

use crate::cgroup::TestCgroup;

/// The whole-disk MAJ:MIN holding `path` (a partition's parent disk: the kernel's
/// per-cgroup IO stats are per disk), and its `/dev` name.
pub fn disk_of(path: &Path) -> ((u32, u32), String) {
    let mut sys = sys_block_dir(path);
    if sys.join("partition").exists() {
        sys.pop();
    }
    device_named_in(&sys)
}

/// The MAJ:MIN and `/dev` name of the block device the filesystem holding `path` is on
/// (a partition when it is one): the `device` label of its `container_fs_*` series.
pub fn filesystem_device_of(path: &Path) -> ((u32, u32), String) {
    device_named_in(&sys_block_dir(path))
}

fn sys_block_dir(path: &Path) -> PathBuf {
    let dev = fs::metadata(path).expect("stat test dir").dev();
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    fs::canonicalize(format!("/sys/dev/block/{major}:{minor}"))
        .unwrap_or_else(|e| panic!("{path:?} is not on a block device ({major}:{minor}): {e}"))
}

fn device_named_in(sys: &Path) -> ((u32, u32), String) {
    let uevent = fs::read_to_string(sys.join("uevent")).expect("read uevent");
    let field = |key: &str| {
        uevent
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("{key} missing in {uevent}"))
            .to_owned()
    };
    (
        (
            field("MAJOR=").parse().unwrap(),
            field("MINOR=").parse().unwrap(),
        ),
        format!("/dev/{}", field("DEVNAME=")),
    )
}

/// (write bytes, writes) of `disk` in the kernel's own file(s) for this cgroup.
pub fn kernel_writes(cg: &TestCgroup, (major, minor): (u32, u32)) -> (f64, f64) {
    let prefix = format!("{major}:{minor} ");
    if let Some(blkio) = cg.v1_dir("blkio") {
        let value = |file: &str| -> f64 {
            let text = fs::read_to_string(blkio.join(file)).expect("read blkio file");
            text.lines()
                .find_map(|l| l.strip_prefix(&prefix)?.strip_prefix("Write "))
                .map_or(0.0, |v| v.trim().parse().unwrap())
        };
        (
            value("blkio.throttle.io_service_bytes_recursive"),
            value("blkio.throttle.io_serviced_recursive"),
        )
    } else {
        let text = fs::read_to_string(cg.path().join("io.stat"))
            .expect("read io.stat (is the io controller enabled at the root?)");
        let line = text.lines().find(|l| l.starts_with(&prefix)).unwrap_or("");
        let field = |key: &str| -> f64 {
            line.split_whitespace()
                .find_map(|f| f.strip_prefix(key))
                .map_or(0.0, |v| v.parse().unwrap())
        };
        (field("wbytes="), field("wios="))
    }
}

/// Makes the kernel account `cg`'s writes to `disk`: since Linux 6.x, v1 blk-throttle
/// only accounts IO on disks where some cgroup set a limit; a limit nobody reaches
/// (1 TiB/s) turns it on. Nothing to do on cgroup v2.
pub fn account_writes(cg: &TestCgroup, (major, minor): (u32, u32)) {
    if let Some(blkio) = cg.v1_dir("blkio") {
        fs::write(
            blkio.join("blkio.throttle.write_bps_device"),
            format!("{major}:{minor} 1099511627776"),
        )
        .expect("enable blk-throttle accounting");
    }
}
