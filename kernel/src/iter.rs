//! Scrape-time task iterators: one pass over every task and one over every process's
//! descriptor table (a second `iter/task` program), each writing fixed-size records
//! (`TaskRecord`, `FileRecord`) to the iterator's output, which the daemon reads once
//! per scrape (`read()` of a fresh `BPF_ITER_CREATE` fd) and sums per cgroup. They
//! replace per-row reads of `cgroup.procs`, a `readlink` per descriptor under
//! `/proc/<pid>/fd`, and `/proc/<pid>/limits`, and they read the run-queue delay the
//! kernel already keeps per task (`sched_info`) instead of recomputing it on every
//! context switch. The cgroup pass, the third scrape-time iterator, is in
//! `cgroup_pass.rs`.
//!
//! # Context and maps
//! Iterator programs run in the reading process's context from `read()`, under RCU
//! (the task iterator holds a task reference; the descriptor table is read through
//! helper reads, which cannot fault), with no scheduler lock. They use no map: the
//! records go to the `seq_file` through `bpf_seq_write`.
//!
//! # Minimum kernel version
//! `iter/task`: 5.8; BTF-typed loads from the iterator context: 5.8; `bpf_loop` (the
//! descriptor pass, with a callback that calls `bpf_loop` again): 5.17. aya-ebpf 0.2.1
//! has no `#[iter]` macro, so the sections are declared by hand.
use core::ffi::c_void;

use aya_ebpf::helpers::{bpf_loop, bpf_probe_read_kernel, bpf_seq_write};
use kadvisor_common::{FileRecord, KernelError, TaskRecord};

use crate::{
    maps::count_error,
    task::{member, task_cgroup_id, task_offsets},
};

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

/// What the `bpf_loop` steps of the descriptor pass read and count: a descriptor
/// table's bitmap and file array, the two offsets they need, the bitmap word being
/// walked (its unvisited set bits, and the descriptor of its bit 0) and the counts.
#[repr(C)]
struct TableWalk {
    open_fds: u64,
    fd_array: u64,
    file_inode: u64,
    inode_mode: u64,
    bits: u64,
    first_fd: u64,
    descriptors: u32,
    sockets: u32,
}

/// A word of kernel memory at `address`, or 0 if it cannot be read.
#[inline(always)]
fn kernel_word(address: u64) -> u64 {
    // SAFETY: a helper read of kernel memory: a bad address returns an error, never
    // faults. The addresses here are loaded through helpers, not BTF-typed pointers,
    // so they cannot be plain loads.
    unsafe { bpf_probe_read_kernel(address as *const u64) }.unwrap_or(0)
}

/// Outer `bpf_loop` step: word `index` of the table's `open_fds` bitmap, whose set
/// bits (open descriptors) are visited by an inner loop of exactly that many steps,
/// so an empty word costs one read and a sparse one no step per unused descriptor.
extern "C" fn count_word(index: u64, walk: *mut c_void) -> i64 {
    let table = walk.cast::<TableWalk>();
    // SAFETY: `walk` is the `TableWalk` on `file_pass`'s stack that it passed to
    // `bpf_loop`, alive for the whole loop; steps run one after another.
    let bits = unsafe {
        let bits = kernel_word((*table).open_fds.wrapping_add(index * 8));
        (*table).bits = bits;
        (*table).first_fd = index * 64;
        bits
    };
    if bits != 0 {
        // SAFETY: as in `file_pass`: a BPF subprogram and the same live context.
        unsafe { bpf_loop(bits.count_ones(), count_descriptor as *mut c_void, walk, 0) };
    }
    0
}

/// Inner `bpf_loop` step: the lowest unvisited set bit of the word, an open
/// descriptor, counted when its file is installed (a reserved descriptor's NULL file
/// is skipped, as `iter/task_file` skips it), and as a socket by its inode's mode.
/// Straight-line code: the verifier checks it in a few instructions on every kernel.
extern "C" fn count_descriptor(_step: u64, walk: *mut c_void) -> i64 {
    let walk = walk.cast::<TableWalk>();
    // SAFETY: as in `count_word`.
    unsafe {
        let bits = (*walk).bits;
        let lowest = bits & bits.wrapping_neg();
        (*walk).bits = bits ^ lowest;
        let fd = (*walk).first_fd + u64::from((lowest.wrapping_sub(1)).count_ones());
        let file = kernel_word((*walk).fd_array.wrapping_add(fd * 8));
        if file == 0 {
            return 0;
        }
        (*walk).descriptors += 1;
        let inode = kernel_word(file.wrapping_add((*walk).file_inode));
        // `i_mode` is a u16: the low bits of the word read at its offset
        // (little-endian, as every BPF target kadvisor builds for).
        let mode = kernel_word(inode.wrapping_add((*walk).inode_mode)) as u16;
        if mode & S_IFMT == S_IFSOCK {
            (*walk).sockets += 1;
        }
    }
    0
}

/// `struct bpf_iter__task`, a second pass over every task: for each descriptor table
/// that `iter/task_file` would visit (a process's, and a thread's own when it does not
/// share its leader's), the number of open descriptors and sockets, counted in one
/// `bpf_loop` over the table's bitmap. Walking the table here, instead of one
/// `iter/task_file` call per descriptor, spares the kernel a file reference, a program
/// run and a record per descriptor (kadvisor's own held cgroup files among them).
/// `max_fds / 64` outer steps: a `bpf_loop` allows 2^23 (`fs.nr_open` allows at most
/// 2^31 descriptors: 2^25 words); a table larger than that is counted as a
/// `task_read` error, not silently as empty.
#[unsafe(no_mangle)]
#[unsafe(link_section = "iter/task")]
pub extern "C" fn file_pass(ctx: *const u64) -> i32 {
    // SAFETY: member 1 of the iterator context (`struct task_struct *task`, may be NULL).
    let task = unsafe { core::ptr::read_volatile(ctx.wrapping_add(1)) } as *const u8;
    if task.is_null() {
        return 0;
    }
    let offsets = task_offsets();
    let files: *const u8 = member(task, offsets.task_files);
    if files.is_null() {
        // Exited: its descriptors are closed.
        return 0;
    }
    let tgid: u32 = member(task, offsets.task_tgid);
    if member::<u32>(task, offsets.task_pid) != tgid {
        let leader: *const u8 = member(task, offsets.task_group_leader);
        if member::<*const u8>(leader, offsets.task_files) == files {
            // A thread sharing its process's table: counted with the leader.
            return 0;
        }
    }
    let fdtable: *const u8 = member(files, offsets.files_fdt);
    let max_fds: u32 = member(fdtable, offsets.fdtable_max_fds);
    let mut walk = TableWalk {
        open_fds: member::<u64>(fdtable, offsets.fdtable_open_fds),
        fd_array: member::<u64>(fdtable, offsets.fdtable_fd),
        file_inode: u64::from(offsets.file_inode),
        inode_mode: u64::from(offsets.inode_mode),
        bits: 0,
        first_fd: 0,
        descriptors: 0,
        sockets: 0,
    };
    // SAFETY: `count_word` is a BPF subprogram taking (index, context); the context
    // is `walk`, on this stack for the whole call. `max_fds` is a multiple of 64.
    let walked = unsafe {
        bpf_loop(
            max_fds / 64,
            count_word as *mut c_void,
            (&raw mut walk).cast(),
            0,
        )
    };
    if walked < 0 {
        count_error(KernelError::TaskRead);
        return 0;
    }
    let record = FileRecord {
        tgid,
        descriptors: walk.descriptors,
        sockets: walk.sockets,
    };
    write(ctx, &record);
    0
}
