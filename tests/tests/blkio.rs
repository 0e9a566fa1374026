//! Block IO per cgroup: a process writes 64 MiB with O_DIRECT and 64 MiB buffered
//! (then fsync), and kadvisor's `container_fs_*` and `container_blkio_device_usage_total`
//! must equal the kernel's own per-cgroup IO accounting: `io.stat` (cgroup v2) or
//! `blkio.throttle.io_service_bytes_recursive` / `io_serviced_recursive` (v1).
use std::{fs, os::unix::fs::MetadataExt as _, path::Path, process::Command};

use kadvisor_tests::{assert_close, cgroup::TestCgroup, kadvisor::Kadvisor};

const MIB: f64 = 1024.0 * 1024.0;

/// The whole-disk MAJ:MIN holding `path` (a partition's parent disk: the kernel's
/// per-cgroup IO stats are per disk), and its `/dev` name.
fn disk_of(path: &Path) -> ((u32, u32), String) {
    let dev = fs::metadata(path).expect("stat test dir").dev();
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    let mut sys = fs::canonicalize(format!("/sys/dev/block/{major}:{minor}"))
        .unwrap_or_else(|e| panic!("{path:?} is not on a block device ({major}:{minor}): {e}"));
    if sys.join("partition").exists() {
        sys.pop();
    }
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
fn kernel_writes(cg: &TestCgroup, (major, minor): (u32, u32)) -> (f64, f64) {
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

#[test]
fn direct_and_buffered_writes_match_the_kernels_cgroup_io_stats() {
    let kadvisor = Kadvisor::start(&[]);
    let cg = TestCgroup::with_v1_controllers("blkio", &["blkio"]);
    // On the root filesystem (a block device), not tmpfs.
    let dir = tempfile::Builder::new()
        .prefix("kadvisor-test-blkio")
        .tempdir_in("/var/tmp")
        .expect("make a temp dir under /var/tmp");
    let (disk, device) = disk_of(dir.path());
    if let Some(blkio) = cg.v1_dir("blkio") {
        // Since Linux 6.x, v1 blk-throttle only accounts IO on disks where some
        // cgroup set a limit; a limit nobody reaches (1 TiB/s) turns it on.
        fs::write(
            blkio.join("blkio.throttle.write_bps_device"),
            format!("{}:{} 1099511627776", disk.0, disk.1),
        )
        .expect("enable blk-throttle accounting");
    }
    let of = |name: &str| format!("of={}", dir.path().join(name).display());
    for args in [
        vec![
            "dd",
            "if=/dev/zero",
            &of("direct"),
            "bs=1M",
            "count=64",
            "oflag=direct",
            "status=none",
        ],
        vec![
            "dd",
            "if=/dev/zero",
            &of("buffered"),
            "bs=1M",
            "count=64",
            "conv=fsync",
            "status=none",
        ],
    ] {
        let output = cg.output(Command::new(args[0]).args(&args[1..]));
        assert!(output.status.success(), "{args:?} failed");
    }

    let scrape = kadvisor.scrape();
    let (kernel_bytes, kernel_ios) = kernel_writes(&cg, disk);
    let labels = [("id", cg.id()), ("device", device.as_str())];
    let ours_bytes = scrape.value("container_fs_writes_bytes_total", &labels);
    let ours_ios = scrape.value("container_fs_writes_total", &labels);
    let usage = scrape.value(
        "container_blkio_device_usage_total",
        &[("id", cg.id()), ("device", &device), ("operation", "Write")],
    );
    eprintln!(
        "written: kadvisor {ours_bytes} B / {ours_ios} IOs, kernel {kernel_bytes} B / {kernel_ios} IOs"
    );
    assert!(
        (128.0 * MIB..140.0 * MIB).contains(&kernel_bytes),
        "the kernel charged {kernel_bytes} bytes to the cgroup for 128 MiB written"
    );
    assert_close(
        "write bytes vs the kernel's cgroup IO stats",
        ours_bytes,
        kernel_bytes,
        0.01,
    );
    assert_close(
        "writes vs the kernel's cgroup IO stats",
        ours_ios,
        kernel_ios,
        0.01,
    );
    assert_close("blkio device usage Write", usage, kernel_bytes, 0.01);
    let major = disk.0.to_string();
    assert_eq!(
        scrape
            .find(
                "container_blkio_device_usage_total",
                &[("id", cg.id()), ("major", &major)]
            )
            .len(),
        scrape
            .find(
                "container_blkio_device_usage_total",
                &[("id", cg.id()), ("device", &device)]
            )
            .len(),
        "major/minor labels match the device name"
    );
}

#[test]
fn root_row_has_usage_of_each_block_filesystem() {
    let kadvisor = Kadvisor::start(&[]);
    let scrape = kadvisor.scrape();
    let (_, device) = disk_of(Path::new("/"));
    // SAFETY: statfs on a NUL-terminated path into a zeroed buffer.
    let mut buf: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    assert_eq!(unsafe { libc::statfs(c"/".as_ptr(), &raw mut buf) }, 0);
    let labels = [("id", "/"), ("device", device.as_str())];
    let block = buf.f_bsize as f64;
    assert_eq!(
        scrape.value("container_fs_limit_bytes", &labels),
        buf.f_blocks as f64 * block
    );
    assert_eq!(
        scrape.value("container_fs_inodes_total", &labels),
        buf.f_files as f64
    );
    let used = (buf.f_blocks - buf.f_bfree) as f64 * block;
    assert_close(
        "fs usage of /",
        scrape.value("container_fs_usage_bytes", &labels),
        used,
        0.01,
    );
    assert_close(
        "free inodes of /",
        scrape.value("container_fs_inodes_free", &labels),
        buf.f_ffree as f64,
        0.01,
    );
}
