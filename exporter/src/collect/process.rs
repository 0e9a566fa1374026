//! Process families, read at scrape time from cgroupfs and /proc as cAdvisor does:
//!
//! | family | source |
//! |---|---|
//! | `container_processes` | lines of the cgroup's own `cgroup.procs` (v2 directory; not recursive) |
//! | `container_threads` / `container_threads_max` | `pids.current` / `pids.max` ("max" → 0) of the pids controller (v1 or v2) |
//! | `container_file_descriptors` / `container_sockets` | entries of `/proc/<pid>/fd` over those processes / those that are sockets |
//! | `container_ulimits_soft{ulimit="max_open_files"}` | soft "Max open files" of the first process's `/proc/<pid>/limits` (absent when unlimited) |
//!
//! A process that exits during the walk is skipped, not an error.
use std::{
    ffi::{CStr, CString},
    os::{
        fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
        unix::ffi::OsStringExt as _,
    },
    path::Path,
};

use procfs::{
    ProcError,
    process::{LimitValue, Process},
};

use super::{
    Row, ScrapeContext,
    samples::{MetricType, SampleSet},
};
use crate::cgroup::{
    CgroupError, Controller, Hierarchies,
    files::{parse_pids, read_optional, read_value},
};

/// Counts for one cgroup; `None` where the source is absent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcessCounts {
    pub processes: Option<u64>,
    pub threads: Option<u64>,
    pub threads_max: Option<u64>,
    pub file_descriptors: Option<u64>,
    pub sockets: Option<u64>,
    pub max_open_files: Option<u64>,
}

/// Reads one cgroup's counts; `proc_root` is normally `/proc`.
pub fn read(
    hierarchies: &Hierarchies,
    proc_root: &Path,
    path: &str,
) -> Result<ProcessCounts, CgroupError> {
    let pids = match hierarchies.v2_dir(path) {
        Some(dir) => read_optional(&dir.join("cgroup.procs"))?
            .map(|procs| parse_pids(&procs).collect::<Vec<u32>>()),
        None => None,
    };
    count(hierarchies, proc_root, path, pids.as_deref())
}

/// One cgroup's counts, given the pids of its `cgroup.procs` (`None`: no such file).
pub fn count(
    hierarchies: &Hierarchies,
    proc_root: &Path,
    path: &str,
    pids: Option<&[u32]>,
) -> Result<ProcessCounts, CgroupError> {
    let mut counts = ProcessCounts::default();
    if let Some(dir) = hierarchies.controller_dir(Controller::Pids, path) {
        counts.threads = read_value(&dir.join("pids.current"))?.map(|v| v.or(0));
        counts.threads_max = read_value(&dir.join("pids.max"))?.map(|v| v.or(0));
    }
    let Some(pids) = pids else {
        return Ok(counts);
    };
    counts.processes = Some(pids.len() as u64);
    let (mut fds, mut sockets) = (0, 0);
    for &pid in pids {
        // A process that exited since the listing counts nothing.
        if let Some((f, s)) = fd_counts(proc_root, pid) {
            fds += f;
            sockets += s;
        }
    }
    counts.file_descriptors = Some(fds);
    counts.sockets = Some(sockets);
    counts.max_open_files = pids.first().and_then(|&pid| max_open_files(proc_root, pid));
    Ok(counts)
}

/// Open fds and sockets of one process: one `getdents` pass over `/proc/<pid>/fd` and
/// one `readlinkat` per fd relative to it (cAdvisor's count: entries, and entries whose
/// link reads `socket:[...]`). The procfs crate spends about five syscalls per fd.
fn fd_counts(proc_root: &Path, pid: u32) -> Option<(u64, u64)> {
    let dir = proc_root.join(pid.to_string()).join("fd");
    let dir = CString::new(dir.into_os_string().into_vec()).ok()?;
    // SAFETY: `dir` is a NUL-terminated path; the flags are valid for open(2).
    let fd = unsafe {
        libc::open(
            dir.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return None;
    }
    // SAFETY: a non-negative return is a new fd that nothing else owns.
    let dir = unsafe { OwnedFd::from_raw_fd(fd) };
    let (mut fds, mut sockets) = (0, 0);
    let mut link = [0u8; 8];
    // getdents64 straight into a buffer: readdir(3) would add an fstat and an fcntl.
    let mut buf = [0u64; 1024];
    loop {
        // SAFETY: `dir` is an open directory and `buf` is writable for its size.
        let len = unsafe {
            libc::syscall(
                libc::SYS_getdents64,
                dir.as_raw_fd(),
                buf.as_mut_ptr(),
                std::mem::size_of_val(&buf),
            )
        };
        let Ok(len) = usize::try_from(len) else {
            // The process exited while we listed it: count what we saw.
            break;
        };
        if len == 0 {
            break;
        }
        let bytes = &buf_bytes(&buf)[..len];
        let mut offset = 0;
        while offset + DIRENT_NAME <= len {
            // struct linux_dirent64 { u64 d_ino; i64 d_off; u16 d_reclen; u8 d_type; char d_name[]; }
            let reclen = usize::from(u16::from_ne_bytes([bytes[offset + 16], bytes[offset + 17]]));
            if reclen == 0 || offset + reclen > len {
                break;
            }
            let name = &bytes[offset + DIRENT_NAME..offset + reclen];
            offset += reclen;
            if name.first() == Some(&b'.') {
                continue;
            }
            fds += 1;
            // d_name is NUL-terminated inside its record.
            let Ok(name) = CStr::from_bytes_until_nul(name) else {
                continue;
            };
            // SAFETY: `dir` is the open directory, `name` a NUL-terminated entry of
            // it, and `link` is writable for `link.len()` bytes.
            let n = unsafe {
                libc::readlinkat(
                    dir.as_raw_fd(),
                    name.as_ptr(),
                    link.as_mut_ptr().cast(),
                    link.len(),
                )
            };
            if usize::try_from(n).is_ok_and(|n| link[..n.min(link.len())].starts_with(b"socket:")) {
                sockets += 1;
            }
        }
    }
    Some((fds, sockets))
}

/// Offset of `d_name` in `struct linux_dirent64`.
const DIRENT_NAME: usize = 19;

fn buf_bytes(buf: &[u64; 1024]) -> &[u8] {
    // SAFETY: any initialised u64 array is readable as bytes of the same total size.
    unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), std::mem::size_of_val(buf)) }
}

/// The soft "Max open files" of `pid`, `None` when unlimited (cAdvisor parses the
/// number from `/proc/<pid>/limits` and drops the series for "unlimited"). On the
/// real /proc, one prlimit(2) call instead of formatting and parsing that file.
fn max_open_files(proc_root: &Path, pid: u32) -> Option<u64> {
    if proc_root == Path::new("/proc") {
        let mut limit = libc::rlimit64 {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: a null new limit only reads; `limit` is a valid out-pointer.
        let rc = unsafe {
            libc::prlimit64(
                libc::pid_t::try_from(pid).ok()?,
                libc::RLIMIT_NOFILE,
                std::ptr::null(),
                &raw mut limit,
            )
        };
        if rc == 0 {
            return (limit.rlim_cur != libc::RLIM64_INFINITY).then_some(limit.rlim_cur);
        }
        // EPERM (no CAP_SYS_RESOURCE) or exited: fall back to the file.
    }
    let limits = Process::new_with_root(proc_root.join(pid.to_string()))
        .and_then(|p| p.limits())
        .map_err(|e: ProcError| tracing::debug!(pid, error = %e, "no limits"))
        .ok()?;
    match limits.max_open_files.soft_limit {
        LimitValue::Value(n) => Some(n),
        LimitValue::Unlimited => None,
    }
}

pub fn collect(ctx: &ScrapeContext<'_>, out: &mut SampleSet) {
    let proc_root = Path::new("/proc");
    let pids = ctx.row_pids();
    let mut rows = Vec::with_capacity(ctx.rows.len());
    for (index, (row, pids)) in ctx.rows.iter().zip(pids).enumerate() {
        let read = || match count(ctx.hierarchies, proc_root, &row.path, pids.as_deref()) {
            Ok(counts) => Some(counts),
            Err(e) => {
                ctx.failed("process", &e);
                None
            }
        };
        if let Some(counts) = ctx.row_value(index, |v| &mut v.process, read) {
            rows.push((row, counts));
        }
    }
    write(out, &rows);
}

pub fn write(out: &mut SampleSet, rows: &[(&Row, ProcessCounts)]) {
    type Field = fn(&ProcessCounts) -> Option<u64>;
    let families: [(&str, &str, Field); 5] = [
        (
            "container_processes",
            "Number of processes running inside the container.",
            |c| c.processes,
        ),
        (
            "container_threads",
            "Number of threads running inside the container",
            |c| c.threads,
        ),
        (
            "container_threads_max",
            "Maximum number of threads allowed inside the container, infinity if value is zero",
            |c| c.threads_max,
        ),
        (
            "container_file_descriptors",
            "Number of open file descriptors for the container.",
            |c| c.file_descriptors,
        ),
        (
            "container_sockets",
            "Number of open sockets for the container.",
            |c| c.sockets,
        ),
    ];
    for (name, help, field) in families {
        out.family(name, help, MetricType::Gauge);
        for (row, counts) in rows {
            if let Some(value) = field(counts) {
                out.sample(name, Some(&row.labels), &[], value as f64);
            }
        }
    }
    let name = "container_ulimits_soft";
    out.family(
        name,
        "Soft ulimit values for the container root process. Unlimited if -1, except priority and nice",
        MetricType::Gauge,
    );
    for (row, counts) in rows {
        if let Some(value) = counts.max_open_files {
            out.sample(
                name,
                Some(&row.labels),
                &[("ulimit", "max_open_files")],
                value as f64,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{collections::HashMap, fs, os::unix::fs::symlink};

    use super::*;

    const LIMITS: &str = "Limit                     Soft Limit           Hard Limit           Units     \n\
Max cpu time              unlimited            unlimited            seconds   \n\
Max file size             unlimited            unlimited            bytes     \n\
Max data size             unlimited            unlimited            bytes     \n\
Max stack size            8388608              unlimited            bytes     \n\
Max core file size        0                    unlimited            bytes     \n\
Max resident set          unlimited            unlimited            bytes     \n\
Max processes             95470                95470                processes \n\
Max open files            OPEN                 1048576              files     \n\
Max locked memory         8388608              8388608              bytes     \n\
Max address space         unlimited            unlimited            bytes     \n\
Max file locks            unlimited            unlimited            locks     \n\
Max pending signals       95470                95470                signals   \n\
Max msgqueue size         819200               819200               bytes     \n\
Max nice priority         0                    0                    \n\
Max realtime priority     0                    0                    \n\
Max realtime timeout      unlimited            unlimited            us        \n";

    /// A fake /proc entry: `fds` are symlink targets as the kernel shows them.
    fn fake_process(proc_root: &Path, pid: u32, fds: &[&str], open_files: &str) {
        let dir = proc_root.join(pid.to_string());
        fs::create_dir_all(dir.join("fd")).unwrap();
        for (i, target) in fds.iter().enumerate() {
            symlink(target, dir.join("fd").join(i.to_string())).unwrap();
        }
        fs::write(dir.join("limits"), LIMITS.replace("OPEN", open_files)).unwrap();
    }

    fn layout(root: &Path, v2_controllers: &str, pids_v1: bool) -> Hierarchies {
        fs::create_dir_all(root.join("unified")).unwrap();
        fs::write(root.join("unified/cgroup.controllers"), v2_controllers).unwrap();
        let v1 = if pids_v1 {
            HashMap::from([("pids".to_owned(), root.join("pids"))])
        } else {
            HashMap::new()
        };
        Hierarchies::from_parts(Some(root.join("unified")), v1).unwrap()
    }

    #[test]
    fn hybrid_counts_processes_fds_sockets_and_v1_pids() {
        let dir = tempfile::tempdir().unwrap();
        let h = layout(dir.path(), "", true);
        let proc_root = dir.path().join("proc");
        fake_process(
            &proc_root,
            10,
            &["/dev/null", "socket:[123]", "pipe:[5]", "socket:[124]"],
            "1024",
        );
        fake_process(&proc_root, 11, &["/tmp/x", "anon_inode:[eventfd]"], "4096");
        fs::create_dir_all(dir.path().join("unified/c")).unwrap();
        // 12 exited between listing and reading: skipped.
        fs::write(dir.path().join("unified/c/cgroup.procs"), "10\n12\n11\n").unwrap();
        fs::create_dir_all(dir.path().join("pids/c")).unwrap();
        fs::write(dir.path().join("pids/c/pids.current"), "7\n").unwrap();
        fs::write(dir.path().join("pids/c/pids.max"), "max\n").unwrap();

        let counts = read(&h, &proc_root, "/c").unwrap();
        assert_eq!(
            counts,
            ProcessCounts {
                processes: Some(3),
                threads: Some(7),
                threads_max: Some(0),
                file_descriptors: Some(6),
                sockets: Some(2),
                max_open_files: Some(1024),
            }
        );
    }

    #[test]
    fn v2_pids_limit_and_unlimited_open_files() {
        let dir = tempfile::tempdir().unwrap();
        let h = layout(dir.path(), "cpu pids memory\n", false);
        let proc_root = dir.path().join("proc");
        fake_process(&proc_root, 20, &[], "unlimited");
        fs::create_dir_all(dir.path().join("unified/c")).unwrap();
        fs::write(dir.path().join("unified/c/cgroup.procs"), "20\n").unwrap();
        fs::write(dir.path().join("unified/c/pids.current"), "1\n").unwrap();
        fs::write(dir.path().join("unified/c/pids.max"), "512\n").unwrap();
        let counts = read(&h, &proc_root, "/c").unwrap();
        assert_eq!(counts.threads_max, Some(512));
        assert_eq!(counts.file_descriptors, Some(0));
        assert_eq!(counts.max_open_files, None, "unlimited: no series");
    }

    #[test]
    fn own_fds_sockets_and_open_files_limit_from_the_real_proc() {
        let _socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let pid = std::process::id();
        let (fds, sockets) = fd_counts(Path::new("/proc"), pid).unwrap();
        // stdin/out/err and the socket at least (parallel tests open more).
        assert!(fds >= 4, "{fds}");
        assert!(sockets >= 1, "the UDP socket");
        let soft = fs::read_to_string("/proc/self/limits")
            .unwrap()
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .and_then(|l| l.split_whitespace().nth(3).map(str::to_owned))
            .unwrap();
        assert_eq!(
            max_open_files(Path::new("/proc"), pid),
            soft.parse().ok(),
            "prlimit agrees with /proc/self/limits ({soft})"
        );
        assert_eq!(fd_counts(Path::new("/proc"), u32::MAX), None);
    }

    #[test]
    fn absent_cgroup_gives_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let h = layout(dir.path(), "", true);
        let counts = read(&h, &dir.path().join("proc"), "/gone").unwrap();
        assert_eq!(counts, ProcessCounts::default());
        let row = Row::new(1, "/gone");
        let mut out = SampleSet::default();
        write(&mut out, &[(&row, counts)]);
        assert!(!out.to_text().lines().any(|l| !l.starts_with('#')));
    }

    #[test]
    fn ulimit_series_carries_its_label() {
        let row = Row::new(1, "/c");
        let counts = ProcessCounts {
            max_open_files: Some(1024),
            processes: Some(2),
            ..ProcessCounts::default()
        };
        let mut out = SampleSet::default();
        write(&mut out, &[(&row, counts)]);
        let text = out.to_text();
        assert!(
            text.contains("container_ulimits_soft{container=\"\",id=\"/c\",image=\"\",name=\"\",namespace=\"\",pod=\"\",ulimit=\"max_open_files\"} 1024\n"),
            "{text}"
        );
        assert!(text.contains("container_processes{"), "{text}");
    }
}
