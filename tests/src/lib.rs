//! Helpers for the privileged integration tests in `tests/tests/`: start the real
//! `kadvisor` binary, make real cgroups, run real workloads, scrape and read what a
//! user would read.
//!
//! These tests need root (CAP_BPF, CAP_PERFMON, cgroupfs writes). Without it they
//! fail with a message saying so; they never pass silently.
#![expect(clippy::missing_panics_doc, reason = "test helpers panic by design")]

pub mod block;
pub mod bpf;
pub mod browser;
pub mod cgroup;
pub mod containerd;
pub mod cpu_stat;
pub mod ignore;
pub mod kadvisor;
pub mod netns;
pub mod prometheus;
pub mod scrape;
pub mod validators;

use std::sync::{Mutex, MutexGuard};

/// Tests that measure CPU time take this lock so they do not compete for this
/// machine's two cores with each other.
pub fn exclusive_cpu() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Fails the test unless it runs as root: a privileged test that cannot run must
/// fail loudly, not pass.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this privileged test needs root (BPF and cgroupfs writes); run it with sudo"
    );
}

/// `|a - b| <= tolerance * max(|a|, |b|)`, with a readable failure.
pub fn assert_close(what: &str, actual: f64, expected: f64, tolerance: f64) {
    let scale = actual.abs().max(expected.abs());
    assert!(
        (actual - expected).abs() <= tolerance * scale,
        "{what}: {actual} vs expected {expected} (allowed ±{:.1}%)",
        tolerance * 100.0
    );
}

/// Writes a `mib` MiB file named `data` in `dir` and drops it from the page cache
/// (written and clean, it was charged to the test's own cgroup), so a workload's
/// reads fill the cache again and are charged to the workload's cgroup.
pub fn uncached_file(dir: &std::path::Path, mib: u64) -> std::path::PathBuf {
    use std::{io::Write as _, os::fd::AsRawFd as _};
    let path = dir.join("data");
    let mut file = std::fs::File::create(&path).expect("create data file");
    let block = vec![0x5a_u8; 1 << 20];
    for _ in 0..mib {
        file.write_all(&block).expect("write data file");
    }
    file.sync_all().expect("fsync data file");
    // SAFETY: a valid open file descriptor; advice only.
    let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    assert_eq!(rc, 0, "posix_fadvise DONTNEED");
    path
}

/// Ends a child this test spawned: SIGTERM, then SIGKILL if it has not exited within
/// `grace` (kadvisor, Prometheus and Chromium all shut down on SIGTERM).
pub fn terminate(child: &mut std::process::Child, grace: std::time::Duration) {
    // SAFETY: kill() with a PID this test spawned and has not reaped yet.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let deadline = std::time::Instant::now() + grace;
    while std::time::Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}
