//! Block IO per cgroup: a process writes 64 MiB with O_DIRECT and 64 MiB buffered
//! (then fsync), and kadvisor's `container_fs_*` and `container_blkio_device_usage_total`
//! must equal the kernel's own per-cgroup IO accounting: `io.stat` (cgroup v2) or
//! `blkio.throttle.io_service_bytes_recursive` / `io_serviced_recursive` (v1), for the
//! writer's cgroup and for its parent (whose files sum the writer's), while a sibling
//! that did no IO has no device in its files and no IO series (kadvisor does not read
//! its files when the cgroup pass sees no block group for it).
use std::{path::Path, process::Command};

use kadvisor_tests::{
    assert_close,
    block::{account_writes, disk_of, filesystem_device_of, kernel_writes},
    cgroup::TestCgroup,
    kadvisor::Kadvisor,
};

const MIB: f64 = 1024.0 * 1024.0;

#[test]
fn direct_and_buffered_writes_match_the_kernels_cgroup_io_stats() {
    let kadvisor = Kadvisor::start(&[]);
    let parent = TestCgroup::with_v1_controllers("blkio", &["blkio"]);
    let cg = parent.child("writer");
    let idle = parent.child("idle");
    // On the root filesystem (a block device), not tmpfs.
    let dir = tempfile::Builder::new()
        .prefix("kadvisor-test-blkio")
        .tempdir_in("/var/tmp")
        .expect("make a temp dir under /var/tmp");
    let (disk, device) = disk_of(dir.path());
    account_writes(&cg, disk);
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
    let parent_bytes = scrape.value(
        "container_fs_writes_bytes_total",
        &[("id", parent.id()), ("device", device.as_str())],
    );
    assert_close(
        "the parent's write bytes vs its own (recursive) IO stats",
        parent_bytes,
        kernel_writes(&parent, disk).0,
        0.01,
    );
    assert_eq!(
        kernel_writes(&idle, disk),
        (0.0, 0.0),
        "the kernel lists no IO for the idle sibling"
    );
    assert!(
        scrape
            .find("container_fs_writes_bytes_total", &[("id", idle.id())])
            .is_empty(),
        "an idle cgroup has no IO series"
    );
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
    if kadvisor_tests::ignore::because(kadvisor_tests::ignore::needs_block_device_root()) {
        return;
    }
    let kadvisor = Kadvisor::start(&[]);
    // The filesystem's own device: a partition when / is on one (the real-node VM's
    // root is partition 1 of its disk), as cAdvisor names it.
    let (_, device) = filesystem_device_of(Path::new("/"));
    let statfs = || {
        // SAFETY: sync(2) takes no arguments: the frees of files other tests deleted
        // are committed before the filesystem is measured.
        unsafe { libc::sync() };
        // SAFETY: statfs on a NUL-terminated path into a zeroed buffer.
        let mut buf: libc::statfs = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        assert_eq!(unsafe { libc::statfs(c"/".as_ptr(), &raw mut buf) }, 0);
        buf
    };
    // / is the node's live root filesystem (journald and the other test of this file
    // write to it): the kernel's numbers are read just before and just after the
    // scrape, until they agree (nothing was written or freed meanwhile), and
    // kadvisor's must lie between them.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let (before, scrape, after) = loop {
        let before = statfs();
        let scrape = kadvisor.scrape();
        let after = statfs();
        let quiet = before.f_bfree == after.f_bfree && before.f_ffree == after.f_ffree;
        if quiet || std::time::Instant::now() > deadline {
            break (before, scrape, after);
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    };
    let labels = [("id", "/"), ("device", device.as_str())];
    let block = after.f_bsize as f64;
    assert_eq!(
        scrape.value("container_fs_limit_bytes", &labels),
        after.f_blocks as f64 * block
    );
    assert_eq!(
        scrape.value("container_fs_inodes_total", &labels),
        after.f_files as f64
    );
    let within = |what: &str, ours: f64, a: f64, b: f64| {
        let (low, high) = (a.min(b), a.max(b));
        assert!(
            ours >= low * 0.99 && ours <= high * 1.01,
            "{what}: kadvisor {ours}, the kernel {a} before and {b} after the scrape"
        );
    };
    within(
        "fs usage of /",
        scrape.value("container_fs_usage_bytes", &labels),
        (before.f_blocks - before.f_bfree) as f64 * block,
        (after.f_blocks - after.f_bfree) as f64 * block,
    );
    within(
        "free inodes of /",
        scrape.value("container_fs_inodes_free", &labels),
        before.f_ffree as f64,
        after.f_ffree as f64,
    );
}
