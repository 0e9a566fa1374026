//! The root row's disk IO families equal `/proc/diskstats` after a real read and
//! write: a loop device with an ext4 filesystem mounted in a temp dir, written and
//! read with O_DIRECT (so the IO reaches the device), then scraped. Each counter must
//! lie between the kernel's values read just before and just after the scrape (the
//! filesystem's journal may add IO in between), and the IO done must show.
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use kadvisor_tests::{kadvisor::Kadvisor, require_root};

/// A loop device over a file, with ext4 mounted on a temp dir; detached and removed
/// on drop (only what this test created).
struct LoopFs {
    device: String,
    mount: tempfile::TempDir,
    _image: tempfile::TempDir,
}

impl LoopFs {
    fn new() -> Self {
        require_root();
        let image = tempfile::Builder::new()
            .prefix("kadvisor-test-diskstats")
            .tempdir_in("/var/tmp")
            .expect("temp dir for the image");
        let file = image.path().join("disk.img");
        fs::File::create(&file)
            .and_then(|f| f.set_len(64 << 20))
            .expect("make the image file");
        let out = run("losetup", &["--find", "--show", file.to_str().unwrap()]);
        let device = out.trim().to_owned();
        assert!(device.starts_with("/dev/loop"), "losetup said {device:?}");
        let mount = tempfile::tempdir().expect("mount point");
        let fs = Self {
            device,
            mount,
            _image: image,
        };
        run("mkfs.ext4", &["-q", "-F", &fs.device]);
        run(
            "mount",
            &[
                "-o",
                "noatime",
                &fs.device,
                fs.mount.path().to_str().unwrap(),
            ],
        );
        fs
    }

    fn path(&self, name: &str) -> PathBuf {
        self.mount.path().join(name)
    }

    /// This device's `/proc/diskstats` fields (name excluded), in the kernel's units.
    fn diskstats(&self) -> Vec<u64> {
        let name = self.device.trim_start_matches("/dev/");
        let text = fs::read_to_string("/proc/diskstats").expect("read /proc/diskstats");
        let line = text
            .lines()
            .find(|l| l.split_whitespace().nth(2) == Some(name))
            .unwrap_or_else(|| panic!("{name} not in /proc/diskstats"));
        line.split_whitespace()
            .skip(3)
            .map(|f| f.parse().unwrap())
            .collect()
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.mount.path()).status();
        let _ = Command::new("losetup").args(["-d", &self.device]).status();
    }
}

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn dd(args: &[&str], cwd: &Path) {
    let mut all = vec!["status=none"];
    all.extend_from_slice(args);
    let out = Command::new("dd")
        .args(&all)
        .current_dir(cwd)
        .output()
        .expect("run dd");
    assert!(out.status.success(), "dd {args:?}: {out:?}");
}

#[test]
fn root_disk_io_equals_proc_diskstats_after_a_real_read_and_write() {
    for program in ["losetup", "mkfs.ext4"] {
        if kadvisor_tests::ignore::because(kadvisor_tests::ignore::needs_program(
            program,
            "a loop device with an ext4 filesystem as the disk under test",
        )) {
            return;
        }
    }
    let loopfs = LoopFs::new();
    let kadvisor = Kadvisor::start(&["--kubelet_rows"]);
    let before_io = loopfs.diskstats();
    let file = loopfs.path("data");
    let of = format!("of={}", file.display());
    let iff = format!("if={}", file.display());
    dd(
        &["if=/dev/zero", &of, "bs=1M", "count=8", "oflag=direct"],
        loopfs.mount.path(),
    );
    dd(
        &[&iff, "of=/dev/null", "bs=1M", "iflag=direct"],
        loopfs.mount.path(),
    );

    let before = loopfs.diskstats();
    let scrape = kadvisor.scrape();
    let after = loopfs.diskstats();
    // The IO done shows in the kernel's own numbers (512-byte sectors).
    assert!(
        before[2] - before_io[2] >= 8 * 2048,
        "sectors read {before:?}"
    );
    assert!(
        before[6] - before_io[6] >= 8 * 2048,
        "sectors written {before:?}"
    );

    let labels = [("id", "/"), ("device", loopfs.device.as_str())];
    // (family, diskstats field index, scale to the family's unit)
    for (family, field, scale) in [
        ("container_fs_reads_merged_total", 1, 1.0),
        ("container_fs_sector_reads_total", 2, 1.0),
        ("container_fs_read_seconds_total", 3, 1e-3),
        ("container_fs_writes_merged_total", 5, 1.0),
        ("container_fs_sector_writes_total", 6, 1.0),
        ("container_fs_write_seconds_total", 7, 1e-3),
        ("container_fs_io_time_seconds_total", 9, 1e-3),
        ("container_fs_io_time_weighted_seconds_total", 10, 1e-3),
    ] {
        let ours = scrape.value(family, &labels);
        #[expect(clippy::cast_precision_loss, reason = "test counters are small")]
        let (low, high) = (before[field] as f64 * scale, after[field] as f64 * scale);
        eprintln!("{family}: kadvisor {ours}, /proc/diskstats {low}..{high}");
        assert!(
            (low - 1e-9..=high + 1e-9).contains(&ours),
            "{family} = {ours}, /proc/diskstats said {low} before and {high} after the scrape"
        );
    }
    assert!(scrape.value("container_fs_sector_writes_total", &labels) >= 8.0 * 2048.0);
    let in_progress = scrape.value("container_fs_io_current", &labels);
    assert!(
        (0.0..=64.0).contains(&in_progress),
        "IOs in progress: {in_progress}"
    );
    // Like the filesystem families, on the root row only.
    assert!(
        scrape
            .samples
            .iter()
            .filter(|s| s.name == "container_fs_sector_writes_total")
            .all(|s| s.labels["id"] == "/")
    );
}
