//! Reading the scrape-time task iterators (kernel/src/iter.rs): one `read()` pass over
//! a fresh iterator fd per program, summed into one typed value per cgroup.
use std::{
    collections::HashMap,
    io::Read as _,
    os::fd::{AsFd as _, AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd},
};

use kadvisor_common::{FileRecord, TaskRecord};

/// Largest iterator output read in one pass (a bounded buffer, not a cap on the
/// node): 64 MiB is 1.6 M tasks or 8 M descriptors. Beyond it the pass fails loudly.
const MAX_OUTPUT: u64 = 64 << 20;

/// What one scrape's task pass found in one cgroup (its own tasks, not its
/// descendants', like the kernel's `cgroup.procs`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CgroupTasks {
    /// Processes (thread-group leaders) in the cgroup.
    pub processes: u64,
    /// Threads (every task) in the cgroup.
    pub threads: u64,
    /// Summed `sched_info.run_delay` of the live threads (ns).
    pub run_delay_ns: u64,
    /// Summed `sched_info.pcount` of the live threads.
    pub run_periods: u64,
    /// Open descriptors of the cgroup's processes (`None`: the descriptor pass is
    /// not available).
    pub file_descriptors: Option<u64>,
    /// Of which sockets.
    pub sockets: Option<u64>,
    /// Soft open-files limit of the cgroup's lowest-numbered process (`None`:
    /// unlimited, or no process).
    pub max_open_files: Option<u64>,
    /// The process `max_open_files` was taken from.
    pub lowest_tgid: Option<u32>,
}

#[derive(Debug, thiserror::Error)]
pub enum IterError {
    #[error("iterator {name}: BPF_ITER_CREATE failed")]
    Create {
        name: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("iterator {name}: read failed")]
    Read {
        name: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("iterator {name}: output larger than {MAX_OUTPUT} bytes")]
    TooLarge { name: &'static str },
}

const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_ITER_CREATE: libc::c_long = 33;
/// `enum bpf_attach_type` `BPF_TRACE_ITER`.
const BPF_TRACE_ITER: u32 = 28;

/// `union bpf_attr` for `BPF_LINK_CREATE` (linux/bpf.h `link_create`): the iterator
/// parameters (`iter_info`, a `union bpf_iter_link_info`) or none (every task), and
/// the rest zero.
#[repr(C)]
#[derive(Default)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_fd: u32,
    attach_type: u32,
    flags: u32,
    iter_info: u64,
    iter_info_len: u32,
    _pad: u32,
}

/// `union bpf_iter_link_info`'s `cgroup` member: walk the hierarchy below (and
/// including) the cgroup of `cgroup_fd` in `order`.
#[repr(C)]
struct CgroupIterInfo {
    order: u32,
    cgroup_fd: u32,
    cgroup_id: u64,
}

/// `enum bpf_cgroup_iter_order` `BPF_CGROUP_ITER_DESCENDANTS_PRE`.
const BPF_CGROUP_ITER_DESCENDANTS_PRE: u32 = 2;

/// `bpf(cmd, attr)` returning the new fd.
fn bpf_fd<T>(cmd: libc::c_long, attr: &T) -> std::io::Result<OwnedFd> {
    // SAFETY: attr is a valid, initialised bpf_attr prefix of the size passed; the
    // kernel only reads it (and the iterator parameters it points to, alive here).
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            std::ptr::from_ref(attr),
            std::mem::size_of::<T>(),
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).map_err(|_| std::io::Error::other("fd out of range"))?;
    // SAFETY: a non-negative return of these commands is a new fd nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn fd_u32(fd: BorrowedFd<'_>) -> u32 {
    u32::try_from(fd.as_raw_fd()).unwrap_or(u32::MAX)
}

/// Attaches a loaded iterator program: the link every later `run` creates its
/// iterator from.
pub fn link_create(program: &aya::programs::ProgramFd) -> std::io::Result<OwnedFd> {
    let attr = LinkCreateAttr {
        prog_fd: fd_u32(program.as_fd()),
        attach_type: BPF_TRACE_ITER,
        ..LinkCreateAttr::default()
    };
    bpf_fd(BPF_LINK_CREATE, &attr)
}

/// Attaches a loaded `iter/cgroup` program to the hierarchy below the cgroup
/// directory `cgroup` (a v2 root, or a v1 controller's mount: kernel 6.8+), walked
/// root first. The link keeps its own reference to the cgroup.
pub fn cgroup_link_create(
    program: &aya::programs::ProgramFd,
    cgroup: BorrowedFd<'_>,
) -> std::io::Result<OwnedFd> {
    let info = CgroupIterInfo {
        order: BPF_CGROUP_ITER_DESCENDANTS_PRE,
        cgroup_fd: fd_u32(cgroup),
        cgroup_id: 0,
    };
    let attr = LinkCreateAttr {
        prog_fd: fd_u32(program.as_fd()),
        attach_type: BPF_TRACE_ITER,
        iter_info: std::ptr::from_ref(&info) as u64,
        iter_info_len: std::mem::size_of::<CgroupIterInfo>() as u32,
        ..LinkCreateAttr::default()
    };
    bpf_fd(BPF_LINK_CREATE, &attr)
}

/// `union bpf_attr` for `BPF_ITER_CREATE` (linux/bpf.h `iter_create`).
#[repr(C)]
struct IterCreateAttr {
    link_fd: u32,
    flags: u32,
}

/// Runs the iterator behind `link` once and returns everything it wrote.
pub fn run(name: &'static str, link: &OwnedFd) -> Result<Vec<u8>, IterError> {
    let attr = IterCreateAttr {
        link_fd: fd_u32(link.as_fd()),
        flags: 0,
    };
    let fd = bpf_fd(BPF_ITER_CREATE, &attr).map_err(|source| IterError::Create { name, source })?;
    let file = std::fs::File::from(fd);
    let mut out = Vec::new();
    file.take(MAX_OUTPUT + 1)
        .read_to_end(&mut out)
        .map_err(|source| IterError::Read { name, source })?;
    if out.len() as u64 > MAX_OUTPUT {
        return Err(IterError::TooLarge { name });
    }
    Ok(out)
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    bytes
        .get(at..at + 8)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_ne_bytes)
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    bytes
        .get(at..at + 4)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u32::from_ne_bytes)
}

/// Decodes `task_pass` output (whole `TaskRecord`s; a trailing partial one is ignored).
pub fn task_records(bytes: &[u8]) -> impl Iterator<Item = TaskRecord> + '_ {
    bytes
        .chunks_exact(std::mem::size_of::<TaskRecord>())
        .map(|r| TaskRecord {
            cgroup_id: u64_at(r, 0),
            run_delay_ns: u64_at(r, 8),
            run_periods: u64_at(r, 16),
            nofile_soft: u64_at(r, 24),
            pid: u32_at(r, 32),
            tgid: u32_at(r, 36),
        })
}

/// Decodes `file_pass` output.
pub fn file_records(bytes: &[u8]) -> impl Iterator<Item = FileRecord> + '_ {
    bytes
        .chunks_exact(std::mem::size_of::<FileRecord>())
        .map(|r| FileRecord {
            tgid: u32_at(r, 0),
            descriptors: u32_at(r, 4),
            sockets: u32_at(r, 8),
        })
}

/// `RLIM_INFINITY` as the kernel stores it.
const RLIM_INFINITY: u64 = u64::MAX;

/// Sums task records (and descriptor records, when that pass ran) per cgroup.
pub fn summarize(
    tasks: impl Iterator<Item = TaskRecord>,
    files: Option<impl Iterator<Item = FileRecord>>,
) -> HashMap<u64, CgroupTasks> {
    let mut by_cgroup: HashMap<u64, CgroupTasks> = HashMap::new();
    // Each process's cgroup: its leader's, else (a zombie leader) any live thread's.
    let mut process_cgroup: HashMap<u32, (u64, bool)> = HashMap::new();
    for task in tasks {
        let entry = by_cgroup.entry(task.cgroup_id).or_default();
        entry.threads += 1;
        entry.run_delay_ns += task.run_delay_ns;
        entry.run_periods += task.run_periods;
        let leader = task.pid == task.tgid;
        if leader {
            entry.processes += 1;
            if entry.lowest_tgid.is_none_or(|lowest| task.tgid < lowest) {
                entry.lowest_tgid = Some(task.tgid);
                entry.max_open_files =
                    (task.nofile_soft != RLIM_INFINITY).then_some(task.nofile_soft);
            }
        }
        match process_cgroup.get(&task.tgid) {
            Some(&(_, true)) => {}
            _ => {
                process_cgroup.insert(task.tgid, (task.cgroup_id, leader));
            }
        }
    }
    let Some(files) = files else {
        return by_cgroup;
    };
    for entry in by_cgroup.values_mut() {
        entry.file_descriptors = Some(0);
        entry.sockets = Some(0);
    }
    // One record per descriptor table, credited to its process's cgroup.
    for table in files {
        let Some(&(cgroup_id, _)) = process_cgroup.get(&table.tgid) else {
            // A process that started after the task pass.
            continue;
        };
        if let Some(entry) = by_cgroup.get_mut(&cgroup_id) {
            *entry.file_descriptors.get_or_insert(0) += u64::from(table.descriptors);
            *entry.sockets.get_or_insert(0) += u64::from(table.sockets);
        }
    }
    by_cgroup
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(cgroup_id: u64, pid: u32, tgid: u32, nofile_soft: u64) -> TaskRecord {
        TaskRecord {
            cgroup_id,
            run_delay_ns: 10,
            run_periods: 2,
            nofile_soft,
            pid,
            tgid,
        }
    }

    #[test]
    fn sums_threads_processes_and_descriptors_per_cgroup() {
        let tasks = [
            task(7, 100, 100, 1024),
            task(7, 101, 100, 1024),
            task(7, 90, 90, RLIM_INFINITY),
            task(8, 200, 200, 4096),
        ];
        let table = |tgid, descriptors, sockets| FileRecord {
            tgid,
            descriptors,
            sockets,
        };
        let files = [
            table(100, 2, 1),
            table(90, 1, 0),
            // A process that started after the task pass is not credited.
            table(555, 1, 1),
            // A thread's own table counts with its process.
            table(100, 1, 1),
        ];
        let out = summarize(tasks.into_iter(), Some(files.into_iter()));
        let a = out[&7];
        assert_eq!((a.processes, a.threads), (2, 3));
        assert_eq!((a.run_delay_ns, a.run_periods), (30, 6));
        assert_eq!((a.file_descriptors, a.sockets), (Some(4), Some(2)));
        assert_eq!(a.max_open_files, None, "pid 90 (lowest) is unlimited");
        let b = out[&8];
        assert_eq!((b.file_descriptors, b.sockets), (Some(0), Some(0)));
        assert_eq!(b.max_open_files, Some(4096));
    }

    #[test]
    fn records_decode_from_their_native_layout() {
        let record = task(3, 4, 5, 6);
        let mut bytes = Vec::new();
        for v in [
            record.cgroup_id,
            record.run_delay_ns,
            record.run_periods,
            record.nofile_soft,
        ] {
            bytes.extend(v.to_ne_bytes());
        }
        bytes.extend(record.pid.to_ne_bytes());
        bytes.extend(record.tgid.to_ne_bytes());
        bytes.push(0); // a partial record is ignored
        assert_eq!(task_records(&bytes).collect::<Vec<_>>(), vec![record]);
        let table = FileRecord {
            tgid: 7,
            descriptors: 4100,
            sockets: 3,
        };
        let bytes: Vec<u8> = [table.tgid, table.descriptors, table.sockets]
            .iter()
            .flat_map(|v| v.to_ne_bytes())
            .collect();
        assert_eq!(file_records(&bytes).collect::<Vec<_>>(), vec![table]);
    }
}
