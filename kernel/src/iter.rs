//! Scrape-time task iterators: one pass over every task and one over every process's
//! descriptor table, each writing fixed-size records (`TaskRecord`, `FileRecord`) to
//! the iterator's output, which the daemon reads once per scrape (`read()` of a fresh
//! `BPF_ITER_CREATE` fd) and sums per cgroup. They replace per-row reads of
//! `cgroup.procs`, a `readlink` per descriptor under `/proc/<pid>/fd`, and
//! `/proc/<pid>/limits`, and they read the run-queue delay the kernel already keeps
//! per task (`sched_info`) instead of recomputing it on every context switch. The
//! cgroup pass, the third scrape-time iterator, is in `cgroup_pass.rs`.
//!
//! # Context and maps
//! Iterator programs run in the reading process's context from `read()`, under RCU
//! (the task iterator holds a task reference, the file iterator the file's), with no
//! scheduler lock. They use no map: the records go to the `seq_file` through
//! `bpf_seq_write`.
//!
//! # Minimum kernel version
//! `iter/task` and `iter/task_file`: 5.8; BTF-typed loads from the iterator context:
//! 5.8. aya-ebpf 0.2.1 has no `#[iter]` macro, so the sections are declared by hand.
use core::ffi::c_void;

use aya_ebpf::helpers::bpf_seq_write;
use kadvisor_common::{FileRecord, TaskRecord};

use crate::task::{member, task_cgroup_id, task_offsets};

/// `S_IFMT` and `S_IFSOCK` of `inode.i_mode` (include/uapi/linux/stat.h).
const S_IFMT: u16 = 0o170_000;
const S_IFSOCK: u16 = 0o140_000;

/// The `seq_file` of the iterator context's `struct bpf_iter_meta *meta` (its first
/// member, as in every `bpf_iter__*` context).
#[inline(always)]
fn seq_file(ctx: *const u64) -> *mut c_void {
    // SAFETY: ctx is the iterator context; the verifier checks this load against the
    // context's BTF (member 0: `struct bpf_iter_meta *meta`, never NULL).
    let meta: *const u8 = unsafe { core::ptr::read_volatile(ctx) } as *const u8;
    member(meta, 0)
}

/// Writes `record` to the iterator's output.
#[inline(always)]
fn write<T>(ctx: *const u64, record: &T) {
    let seq = seq_file(ctx);
    // SAFETY: `record` is on this program's stack and `size_of::<T>()` bytes long.
    // A full buffer makes the kernel retry the program for this element in the next
    // read() chunk; the result can be ignored.
    let _ignored = unsafe {
        bpf_seq_write(
            seq.cast(),
            core::ptr::from_ref(record).cast(),
            core::mem::size_of::<T>() as u32,
        )
    };
}

/// `struct bpf_iter__task { struct bpf_iter_meta *meta; struct task_struct *task; }`:
/// called once per task (thread), then once with `task == NULL`.
#[unsafe(no_mangle)]
#[unsafe(link_section = "iter/task")]
pub extern "C" fn task_pass(ctx: *const u64) -> i32 {
    // SAFETY: member 1 of the iterator context (`struct task_struct *task`, may be NULL).
    let task = unsafe { core::ptr::read_volatile(ctx.wrapping_add(1)) } as *const u8;
    if task.is_null() {
        return 0;
    }
    let offsets = task_offsets();
    // A zombie already had its totals credited at sched_process_exit.
    let exit_state: i32 = member(task, offsets.task_exit_state);
    if exit_state != 0 {
        return 0;
    }
    let Some(cgroup_id) = task_cgroup_id(task) else {
        return 0;
    };
    let signal: *const u8 = member(task, offsets.task_signal);
    let record = TaskRecord {
        cgroup_id,
        run_delay_ns: member(task, offsets.task_run_delay),
        run_periods: member(task, offsets.task_pcount),
        nofile_soft: member(signal, offsets.signal_nofile_cur),
        pid: member(task, offsets.task_pid),
        tgid: member(task, offsets.task_tgid),
    };
    write(ctx, &record);
    0
}

/// `struct bpf_iter__task_file { struct bpf_iter_meta *meta; struct task_struct *task;
/// u32 fd; struct file *file; }`: called once per open descriptor of each process
/// (threads that share their process's table are skipped by the kernel), then once
/// with `task == NULL`.
#[unsafe(no_mangle)]
#[unsafe(link_section = "iter/task_file")]
pub extern "C" fn file_pass(ctx: *const u64) -> i32 {
    // SAFETY: members 1 and 3 of the iterator context (`task`, `file`; NULL at the end).
    let (task, file) = unsafe {
        (
            core::ptr::read_volatile(ctx.wrapping_add(1)) as *const u8,
            core::ptr::read_volatile(ctx.wrapping_add(3)) as *const u8,
        )
    };
    if task.is_null() || file.is_null() {
        return 0;
    }
    let offsets = task_offsets();
    let inode: *const u8 = member(file, offsets.file_inode);
    let mode: u16 = member(inode, offsets.inode_mode);
    let record = FileRecord {
        tgid: member(task, offsets.task_tgid),
        socket: u32::from(mode & S_IFMT == S_IFSOCK),
    };
    write(ctx, &record);
    0
}
