//! Map keys, values and limits shared by the eBPF programs (`kadvisor-ebpf`) and the
//! daemon (`kadvisor`). Everything here is `#[repr(C)]`, `Copy` and free of implicit
//! padding so that both sides agree on the byte layout.
#![no_std]

/// Most cgroups tracked at once by the per-cgroup maps. A node with more live and
/// recently deleted cgroups than this loses accounting for the newest ones; the loader
/// reports failed inserts in `kadvisor_bpf_map_full_total`.
pub const MAX_CGROUPS: u32 = 16_384;

/// Value of the per-CPU `CGROUP_CPU` map, keyed by cgroup v2 id (the inode number of
/// the cgroup directory): the final scheduler totals of the cgroup's tasks that have
/// exited, added by `sched_process_exit` (see kernel/src/sched.rs). Live tasks' values
/// come from the scrape-time task iterator (`TaskRecord`). Each CPU's slot is only
/// written by that CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CgroupCpu {
    /// `se.sum_exec_runtime` of the exited tasks: nanoseconds they ran.
    pub runtime_ns: u64,
    /// `sched_info.run_delay` of the exited tasks: nanoseconds they were runnable but
    /// waiting for a CPU (`/proc/<pid>/schedstat`'s second field).
    pub runqueue_ns: u64,
    /// `sched_info.pcount` of the exited tasks: times they were switched in
    /// (`/proc/<pid>/schedstat`'s third field).
    pub run_periods: u64,
}

/// One live task, as the `iter/task` program writes it to the iterator's output at
/// scrape time (one record per thread; exited tasks are not written).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TaskRecord {
    /// The task's cgroup v2 id.
    pub cgroup_id: u64,
    /// `sched_info.run_delay` (ns).
    pub run_delay_ns: u64,
    /// `sched_info.pcount`.
    pub run_periods: u64,
    /// Soft `RLIMIT_NOFILE` of the task's process (`signal->rlim`); `u64::MAX` is
    /// unlimited.
    pub nofile_soft: u64,
    pub pid: u32,
    pub tgid: u32,
}

/// One descriptor table, as the descriptor pass (`iter/task`) writes it: once per
/// process, and once more for a thread with a table of its own (`clone` without
/// `CLONE_FILES`), the tables `iter/task_file` would visit.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileRecord {
    /// The process holding the table.
    pub tgid: u32,
    /// Open descriptors in it.
    pub descriptors: u32,
    /// Those that are sockets (`S_ISSOCK(file->f_inode->i_mode)`).
    pub sockets: u32,
}

/// Indexes into the per-CPU `ERRORS` array: kernel-side failures the daemon exports
/// so that lost data is never silent.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelError {
    /// An insert into a per-cgroup map failed because the map was full.
    MapFull = 0,
    /// Reading a task's cgroup through BTF offsets, or walking its descriptor table,
    /// failed.
    TaskRead = 1,
    /// Reading a packet's IP or transport header in a `cgroup_skb` program failed.
    PacketRead = 2,
}

/// Number of `KernelError` variants (the length of the `ERRORS` array).
pub const KERNEL_ERROR_COUNT: u32 = 3;

impl KernelError {
    /// Every variant, in index order.
    pub const ALL: [Self; KERNEL_ERROR_COUNT as usize] =
        [Self::MapFull, Self::TaskRead, Self::PacketRead];

    /// The `reason` label value under which the daemon exports this error.
    pub const fn reason(self) -> &'static str {
        match self {
            Self::MapFull => "map_full",
            Self::TaskRead => "task_read",
            Self::PacketRead => "packet_read",
        }
    }
}

/// Byte offsets the kernel programs need to walk `task->cgroups->dfl_cgrp->kn->id`.
/// aya-ebpf has no CO-RE relocations, so the loader resolves them from the running
/// kernel's BTF (`/sys/kernel/btf/vmlinux`) and writes them into the program's
/// read-only globals before load; no kernel's layout is compiled in.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TaskCgroupOffsets {
    /// `offsetof(struct task_struct, cgroups)`
    pub task_cgroups: u32,
    /// `offsetof(struct css_set, dfl_cgrp)`
    pub css_set_dfl_cgrp: u32,
    /// `offsetof(struct cgroup, kn)`
    pub cgroup_kn: u32,
    /// `offsetof(struct kernfs_node, id)`
    pub kernfs_node_id: u32,
}

/// Signals whose delivery with the default action counts as a crash, in the
/// order of `CgroupCrashes::by_signal`, with their Linux numbers (asm-generic and
/// x86; the architectures kadvisor builds for).
pub const CRASH_SIGNALS: [(u32, &str); CRASH_SIGNAL_COUNT] = [
    (4, "SIGILL"),
    (6, "SIGABRT"),
    (7, "SIGBUS"),
    (8, "SIGFPE"),
    (11, "SIGSEGV"),
];

/// Number of entries of `CRASH_SIGNALS`.
pub const CRASH_SIGNAL_COUNT: usize = 5;

/// Value of the per-CPU `CGROUP_CRASHES` map, keyed by cgroup v2 id: fatal signals
/// delivered with their default action (core dump and exit) to tasks of the cgroup.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CgroupCrashes {
    /// Counts indexed like `CRASH_SIGNALS`.
    pub by_signal: [u64; CRASH_SIGNAL_COUNT],
}

/// Offsets the scheduler and task-iterator programs need beyond the cgroup walk,
/// resolved from BTF by the loader (see `TaskCgroupOffsets`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TaskOffsets {
    /// `offsetof(struct task_struct, pid)`.
    pub task_pid: u32,
    /// `offsetof(struct task_struct, tgid)`.
    pub task_tgid: u32,
    /// `offsetof(struct task_struct, exit_state)`: non-zero once the task is a zombie
    /// (its totals were credited at `sched_process_exit`).
    pub task_exit_state: u32,
    /// `offsetof(task_struct, se) + offsetof(sched_entity, sum_exec_runtime)`.
    pub task_runtime: u32,
    /// `offsetof(task_struct, sched_info) + offsetof(sched_info, run_delay)`.
    pub task_run_delay: u32,
    /// `offsetof(task_struct, sched_info) + offsetof(sched_info, pcount)`.
    pub task_pcount: u32,
    /// `offsetof(struct task_struct, signal)`.
    pub task_signal: u32,
    /// `offsetof(signal_struct, rlim) + RLIMIT_NOFILE * sizeof(struct rlimit)`
    /// (`rlim_cur` is the first member).
    pub signal_nofile_cur: u32,
    /// `offsetof(struct task_struct, files)`.
    pub task_files: u32,
    /// `offsetof(struct task_struct, group_leader)`.
    pub task_group_leader: u32,
    /// `offsetof(struct files_struct, fdt)`.
    pub files_fdt: u32,
    /// `offsetof(struct fdtable, max_fds)`.
    pub fdtable_max_fds: u32,
    /// `offsetof(struct fdtable, fd)`.
    pub fdtable_fd: u32,
    /// `offsetof(struct fdtable, open_fds)`.
    pub fdtable_open_fds: u32,
    /// `offsetof(struct file, f_inode)`.
    pub file_inode: u32,
    /// `offsetof(struct inode, i_mode)`.
    pub inode_mode: u32,
}

/// Offsets the signal program needs, resolved from BTF by the loader.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SignalOffsets {
    /// `offsetof(struct k_sigaction, sa) + offsetof(struct sigaction, sa_handler)`.
    pub k_sigaction_handler: u32,
}

/// One cgroup's counters, as the scrape-time `iter/cgroup` program writes them (into
/// the `CGROUP_PASS` array, in walk order, then a record with `cgroup_id` 0): the
/// numbers behind the memory controller's v1 `memory.usage_in_bytes`,
/// `memory.max_usage_in_bytes`, `memory.failcnt` and `memory.kmem.usage_in_bytes`,
/// its v2 `memory.current` and `memory.peak`, and the pids controller's
/// `pids.current`, which the kernel prints from the same fields when those files are
/// read (mm/memcontrol*.c, kernel/cgroup/pids.c).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CgroupPassRecord {
    /// The cgroup's id in the walked hierarchy (its directory's inode); `u64::MAX`
    /// when it could not be read.
    pub cgroup_id: u64,
    /// `memcg->memory.usage`, in pages; `u64::MAX` (and the other memory fields 0)
    /// without the memory controller on this cgroup, or when one of the three could
    /// not be read (the daemon then reads the cgroup's files).
    pub usage_pages: u64,
    /// `memcg->memory.watermark`, in pages.
    pub watermark_pages: u64,
    /// `memcg->memory.failcnt`.
    pub failcnt: u64,
    /// `memcg->kmem.usage`, in pages; `u64::MAX` where the kernel has no `kmem`
    /// counter (6.12+ without cgroup v1 support) or when it could not be read.
    pub kmem_pages: u64,
    /// `pids_cgroup->counter`; `u64::MAX` without the pids controller on this cgroup
    /// or when it could not be read.
    pub pids_current: u64,
    /// 1 when the io controller's `blkcg->blkg_list` holds a block group (the cgroup,
    /// or one below it, did IO on some device), 0 when it is empty: then its
    /// `io.stat` and v1 `blkio.*_recursive` files have no device line. `u64::MAX`
    /// without the io controller on this cgroup.
    pub io_blkgs: u64,
}

/// Offsets the cgroup pass reads, resolved from BTF by the loader (see
/// `TaskCgroupOffsets`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CgroupPassOffsets {
    /// `offsetof(struct bpf_iter_meta, session_id)`: one per iterator fd.
    pub meta_session_id: u32,
    /// `offsetof(struct cgroup, kn)`.
    pub cgroup_kn: u32,
    /// `offsetof(struct kernfs_node, id)`.
    pub kernfs_node_id: u32,
    /// `offsetof(struct cgroup, subsys) + memory_cgrp_id * sizeof(void *)`: the
    /// cgroup's memory controller state, the `css` of its `mem_cgroup`.
    pub cgroup_memory_css: u32,
    /// `offsetof(struct cgroup, subsys) + pids_cgrp_id * sizeof(void *)`.
    pub cgroup_pids_css: u32,
    /// `offsetof(struct mem_cgroup, memory) + offsetof(struct page_counter, usage)`,
    /// from the `css`.
    pub memcg_usage: u32,
    /// `... memory` + `offsetof(struct page_counter, watermark)`.
    pub memcg_watermark: u32,
    /// `... memory` + `offsetof(struct page_counter, failcnt)`.
    pub memcg_failcnt: u32,
    /// `offsetof(struct mem_cgroup, kmem) + offsetof(struct page_counter, usage)`; 0
    /// where `mem_cgroup` has no `kmem`.
    pub memcg_kmem_usage: u32,
    /// `offsetof(struct pids_cgroup, counter)`, from the `css`.
    pub pids_counter: u32,
    /// `offsetof(struct cgroup, subsys) + io_cgrp_id * sizeof(void *)`; 0 where the
    /// kernel has no io controller.
    pub cgroup_io_css: u32,
    /// `offsetof(struct blkcg, blkg_list)` (an `hlist_head`: its first pointer), from
    /// the `css`.
    pub blkcg_blkg_list: u32,
}

/// Destination classes of transmitted traffic. The daemon fills the `DESTINATIONS`
/// LPM trie with the configured CIDRs and these values; an address that matches no
/// CIDR is `DEST_EXTERNAL`.
pub const DEST_EXTERNAL: u32 = 0;
pub const DEST_POD: u32 = 1;
pub const DEST_SERVICE: u32 = 2;
pub const DEST_NODE: u32 = 3;
/// Number of destination classes (the length of the per-class arrays of `CgroupNet`).
pub const DEST_CLASS_COUNT: usize = 4;
/// Capacity of the `DESTINATIONS` trie (configured CIDRs).
pub const MAX_DESTINATION_CIDRS: u32 = 1024;

/// Key data of the `DESTINATIONS` LPM trie: an IPv6 address, IPv4 addresses as
/// IPv4-mapped IPv6 (`::ffff:a.b.c.d`, prefix length + 96), so one trie serves both.
pub type DestinationAddr = [u8; 16];

/// Value of the per-CPU `CGROUP_NET` map, keyed by the cgroup v2 id of the socket that
/// sent or received the packet. Bytes are IP packets as they are on the wire: IP header
/// included, link-layer header not, and a GSO/GRO aggregate counted as the segments it
/// stands for (each with its own IP and transport header).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CgroupNet {
    pub rx_bytes: u64,
    pub rx_packets: u64,
    /// Transmitted bytes by destination class (`DEST_*` index).
    pub tx_bytes: [u64; DEST_CLASS_COUNT],
    /// Transmitted packets by destination class (`DEST_*` index).
    pub tx_packets: [u64; DEST_CLASS_COUNT],
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: plain-old-data: #[repr(C)], only u64 fields and arrays, no padding.
    unsafe impl aya::Pod for super::CgroupNet {}
    // SAFETY: plain-old-data: #[repr(C)], only u64 fields, no padding.
    unsafe impl aya::Pod for super::CgroupCpu {}
    // SAFETY: plain-old-data: #[repr(C)], only u32 fields, no padding.
    unsafe impl aya::Pod for super::TaskCgroupOffsets {}
    // SAFETY: plain-old-data: #[repr(C)], only u64 fields, no padding.
    unsafe impl aya::Pod for super::CgroupCrashes {}
    // SAFETY: plain-old-data: #[repr(C)], only u32 fields, no padding.
    unsafe impl aya::Pod for super::TaskOffsets {}
    // SAFETY: plain-old-data: #[repr(C)], u64 then u32 fields, no padding.
    unsafe impl aya::Pod for super::TaskRecord {}
    // SAFETY: plain-old-data: #[repr(C)], two u32 fields.
    unsafe impl aya::Pod for super::FileRecord {}
    // SAFETY: plain-old-data: #[repr(C)], one u32 field.
    unsafe impl aya::Pod for super::SignalOffsets {}
    // SAFETY: plain-old-data: #[repr(C)], only u32 fields, no padding.
    unsafe impl aya::Pod for super::CgroupPassOffsets {}
    // SAFETY: plain-old-data: #[repr(C)], only u64 fields, no padding.
    unsafe impl aya::Pod for super::CgroupPassRecord {}
}
