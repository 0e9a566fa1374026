//! A test that cannot run on this kernel or host says so itself: it calls
//! [`ignored`] with the reason and the kernel/host feature it needs, and returns.
//! libtest has no run-time ignore, so the test shows as `ok` there; the kernel matrix
//! (scripts/kernel-matrix.sh, scripts/test-table.sh) reads the record written here
//! and counts it as ignored, not passed, with its reason. No list of exclusions lives
//! anywhere else.
use std::io::Write as _;

/// The file the runner names for the records ("<test>|<reason>" lines).
pub const LOG_ENV: &str = "KADVISOR_IGNORED_LOG";

/// Records the running test as ignored when `missing` names what this host lacks, and
/// says whether it did: `if ignore::because(needs_program(..)) { return; }`.
pub fn because(missing: Option<String>) -> bool {
    missing.map(|reason| ignored(&reason)).is_some()
}

/// Records the running test as ignored because of `reason`. Call it, then return from
/// the test.
pub fn ignored(reason: &str) {
    let test = std::thread::current()
        .name()
        .unwrap_or("<unnamed test>")
        .to_owned();
    println!("ignored: {reason}");
    eprintln!("{test}: ignored: {reason}");
    if let Some(path) = std::env::var_os(LOG_ENV) {
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        // One write(2) per record: tests ignore themselves at the same instant from
        // parallel threads, and `writeln!` writes a line in pieces, which interleaved
        // (a record lost, so an ignored test was counted as passed on 6.12).
        log.write_all(format!("{test}|{reason}\n").as_bytes())
            .expect("write the ignored-tests log");
    }
}

/// `Some(reason)` when the host runs no systemd as PID 1 (the systemd cgroup driver's
/// tests need one), else `None`.
pub fn needs_systemd() -> Option<String> {
    let systemd = std::path::Path::new("/run/systemd/system").exists();
    (!systemd).then(|| {
        "needs systemd as PID 1 (the systemd cgroup driver); this host has none".to_owned()
    })
}

/// `Some(reason)` when the v2 hierarchy is not mounted alone at /sys/fs/cgroup
/// (a hybrid or v1 host), else `None`.
pub fn needs_pure_v2() -> Option<String> {
    let pure = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    (!pure).then(|| "needs a pure cgroup v2 host; this one is hybrid (v1 controllers)".to_owned())
}

/// `Some(reason)` when `program` is not installed.
pub fn needs_program(program: &str, why: &str) -> Option<String> {
    let found = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()));
    (!found).then(|| format!("needs `{program}` ({why}), which this host lacks"))
}

/// `Some(reason)` when `/` is not on a block device (an initramfs: rootfs or tmpfs),
/// else `None`.
pub fn needs_block_device_root() -> Option<String> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    // The last mount of "/" is the visible one.
    let root = mounts
        .lines()
        .filter_map(|l| {
            let mut fields = l.split_whitespace();
            let source = fields.next()?;
            (fields.next()? == "/").then(|| (source, fields.next().unwrap_or("")))
        })
        .next_back();
    match root {
        Some((source, _)) if source.starts_with("/dev/") => None,
        Some((source, fstype)) => Some(format!(
            "needs / on a block device; here / is {source} ({fstype}), an initramfs"
        )),
        None => Some("needs / on a block device; /proc/self/mounts lists no /".to_owned()),
    }
}
