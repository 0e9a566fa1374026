//! Struct member offsets from the running kernel's BTF.
//!
//! aya-ebpf programs have no CO-RE relocations, so a program that must read a kernel
//! struct gets the member offsets as globals, resolved here from
//! `/sys/kernel/btf/vmlinux`. A kernel whose layout differs only needs its own BTF.
//!
//! The file is read once, by `reader` (the raw bytes and an index, not an object per
//! type: a full parse by btf_rs or aya took 20–30 MB at start-up, the process's
//! peak RSS), and dropped once every answer is taken, aya's included
//! (`KernelFacts::attach_btf`).
mod reader;

use std::path::Path;

use kadvisor_common::{CgroupPassOffsets, SignalOffsets, TaskCgroupOffsets, TaskOffsets};
pub(super) use reader::{FUNC, TYPEDEF};
use reader::{RawBtf, Type};

use super::BpfError;

/// What the loader needs from the kernel's BTF, from one read.
pub(super) struct KernelFacts {
    pub task_cgroup: TaskCgroupOffsets,
    pub family: FamilyOffsets,
    /// `(tracepoint, argument index)` → whether this kernel passes a pointer there.
    pub pointer_args: Vec<((&'static str, usize), bool)>,
    /// For aya: the attach targets' kernel type ids, and nothing else.
    pub attach_btf: aya::Btf,
}

impl KernelFacts {
    pub fn pointer_arg(&self, tracepoint: &str, index: usize) -> bool {
        self.pointer_args
            .iter()
            .any(|((t, i), pointer)| *t == tracepoint && *i == index && *pointer)
    }
}

/// Reads `path` once and resolves every offset, whether each of `pointer_args` is a
/// pointer, and the type ids of `attach_targets` (name, kind) for aya.
pub(super) fn kernel_facts(
    path: &Path,
    pointer_args: &[(&'static str, usize)],
    attach_targets: &[(&str, u32)],
) -> Result<KernelFacts, BpfError> {
    let btf = RawBtf::read(path).map_err(|e| BpfError::BtfParse {
        path: path.to_owned(),
        source: Box::new(e),
    })?;
    let answers = pointer_args
        .iter()
        .map(|&(tracepoint, index)| {
            (
                (tracepoint, index),
                tracepoint_arg_is_pointer(&btf, tracepoint, index),
            )
        })
        .collect();
    Ok(KernelFacts {
        task_cgroup: task_cgroup_offsets(&btf, path)?,
        family: family_offsets(&btf, path)?,
        pointer_args: answers,
        attach_btf: btf
            .attach_targets(attach_targets)
            .map_err(|e| BpfError::BtfParse {
                path: path.to_owned(),
                source: Box::new(e),
            })?,
    })
}

/// Offsets of `task->cgroups->dfl_cgrp->kn->id`.
fn task_cgroup_offsets(btf: &RawBtf, path: &Path) -> Result<TaskCgroupOffsets, BpfError> {
    let offset = |structure, member| member_offset(btf, path, structure, member);
    Ok(TaskCgroupOffsets {
        task_cgroups: offset("task_struct", "cgroups")?,
        css_set_dfl_cgrp: offset("css_set", "dfl_cgrp")?,
        cgroup_kn: offset("cgroup", "kn")?,
        kernfs_node_id: offset("kernfs_node", "id")?,
    })
}

/// Offsets of the exit hook, the task iterators and the signal program, and the
/// programs to leave out because this kernel's BTF lacks a member they read (their
/// offsets stay 0: those programs are never loaded).
pub(super) struct FamilyOffsets {
    pub task: TaskOffsets,
    pub signal: SignalOffsets,
    pub cgroup_pass: CgroupPassOffsets,
    /// Programs left out, with the missing member.
    pub missing: Vec<(&'static str, BpfError)>,
}

/// Programs reading the task members (`task_offsets`).
const TASK_PROGRAMS: &[&str] = &["sched_process_exit", "task_pass", "file_pass"];
/// Programs reading the file and inode members (`file_offsets`).
const FILE_PROGRAMS: &[&str] = &["file_pass"];
/// Programs reading `k_sigaction.sa.sa_handler`.
const SIGNAL_PROGRAMS: &[&str] = &["signal_deliver"];
/// Programs reading the memory and pids controllers' counters (`cgroup_pass_offsets`).
const CGROUP_PASS_PROGRAMS: &[&str] = &["cgroup_pass"];

/// Resolves every family's offsets; a missing member leaves out only the programs
/// that read it (`FamilyOffsets::missing`), an unreadable BTF fails.
fn family_offsets(btf: &RawBtf, path: &Path) -> Result<FamilyOffsets, BpfError> {
    let offset = |structure, member| member_offset(btf, path, structure, member);
    let mut missing = Vec::new();
    let mut task = or_leave_out(TASK_PROGRAMS, task_offsets(btf, path), &mut missing)?;
    let files = or_leave_out(FILE_PROGRAMS, file_offsets(btf, path), &mut missing)?;
    task = TaskOffsets {
        task_files: files.task_files,
        task_group_leader: files.task_group_leader,
        files_fdt: files.files_fdt,
        fdtable_max_fds: files.fdtable_max_fds,
        fdtable_fd: files.fdtable_fd,
        fdtable_open_fds: files.fdtable_open_fds,
        file_inode: files.file_inode,
        inode_mode: files.inode_mode,
        ..task
    };
    let k_sigaction_handler = or_leave_out(
        SIGNAL_PROGRAMS,
        offset("k_sigaction", "sa").and_then(|sa| Ok(sa + offset("sigaction", "sa_handler")?)),
        &mut missing,
    )?;
    let cgroup_pass = or_leave_out(
        CGROUP_PASS_PROGRAMS,
        cgroup_pass_offsets(btf, path),
        &mut missing,
    )?;
    Ok(FamilyOffsets {
        task,
        signal: SignalOffsets {
            k_sigaction_handler,
        },
        cgroup_pass,
        missing,
    })
}

/// The members `cgroup_pass` reads: `cgroup->subsys[memory_cgrp_id]`,
/// `[pids_cgrp_id]` and `[io_cgrp_id]`, then the `memory` (and, where the kernel still
/// has cgroup v1's, `kmem`) page counters of that `mem_cgroup`, the `counter` of that
/// `pids_cgroup` and the `blkg_list` head of that `blkcg`. A controller the kernel
/// lacks is left at offset 0 (not read); memory and pids both missing leaves the
/// program out.
fn cgroup_pass_offsets(btf: &RawBtf, path: &Path) -> Result<CgroupPassOffsets, BpfError> {
    let offset = |structure, member| member_offset(btf, path, structure, member);
    let subsys = offset("cgroup", "subsys")?;
    let css_of = |controller: &'static str| {
        btf.named("cgroup_subsys_id", reader::ENUM)
            .find_map(|e| e.enumerator(controller))
            .map(|id| subsys + id * 8)
            .ok_or_else(|| BpfError::BtfMember {
                path: path.to_owned(),
                structure: "cgroup_subsys_id",
                member: controller,
            })
    };
    // Within the controller's struct, relative to its `css`.
    let within = |structure: &'static str, member| -> Result<u32, BpfError> {
        Ok(offset(structure, member)?.saturating_sub(offset(structure, "css")?))
    };
    let counter = |name| -> Result<(u32, u32, u32), BpfError> {
        let base = within("mem_cgroup", name)?;
        Ok((
            base + offset("page_counter", "usage")?,
            base + offset("page_counter", "watermark")?,
            base + offset("page_counter", "failcnt")?,
        ))
    };
    let memory = css_of("memory_cgrp_id").and_then(|css| Ok((css, counter("memory")?)));
    let pids = css_of("pids_cgrp_id").and_then(|css| Ok((css, within("pids_cgroup", "counter")?)));
    // Optional: without it, the IO files are read for every row.
    let (cgroup_io_css, blkcg_blkg_list) = css_of("io_cgrp_id")
        .and_then(|css| Ok((css, within("blkcg", "blkg_list")?)))
        .unwrap_or_default();
    let (
        (cgroup_memory_css, (memcg_usage, memcg_watermark, memcg_failcnt)),
        (cgroup_pids_css, pids_counter),
    ) = match (memory, pids) {
        (Err(e), Err(_)) => return Err(e),
        (memory, pids) => (memory.unwrap_or_default(), pids.unwrap_or_default()),
    };
    Ok(CgroupPassOffsets {
        meta_session_id: offset("bpf_iter_meta", "session_id")?,
        cgroup_kn: offset("cgroup", "kn")?,
        kernfs_node_id: offset("kernfs_node", "id")?,
        cgroup_memory_css,
        cgroup_pids_css,
        memcg_usage,
        memcg_watermark,
        memcg_failcnt,
        memcg_kmem_usage: counter("kmem").map_or(0, |(kmem_usage, _, _)| kmem_usage),
        pids_counter,
        cgroup_io_css,
        blkcg_blkg_list,
    })
}

/// A missing member (`BpfError::BtfMember`) becomes the default value and an entry in
/// `missing` for each of `programs`; any other error is returned.
fn or_leave_out<T: Default>(
    programs: &[&'static str],
    resolved: Result<T, BpfError>,
    missing: &mut Vec<(&'static str, BpfError)>,
) -> Result<T, BpfError> {
    match resolved {
        Ok(value) => Ok(value),
        Err(BpfError::BtfMember {
            path,
            structure,
            member,
        }) => {
            for &program in programs {
                missing.push((
                    program,
                    BpfError::BtfMember {
                        path: path.clone(),
                        structure,
                        member,
                    },
                ));
            }
            Ok(T::default())
        }
        Err(e) => Err(e),
    }
}

/// `RLIMIT_NOFILE` (include/uapi/asm-generic/resource.h; x86 and arm64 use it).
const RLIMIT_NOFILE: u32 = 7;
/// `sizeof(struct rlimit)`: two `unsigned long`s on 64-bit kernels.
const RLIMIT_SIZE: u32 = 16;

/// The members only the descriptor pass (`file_pass`) reads: the task's descriptor
/// table (`task->files->fdt`, its bitmap and file array) and each file's inode mode.
/// Returned in a `TaskOffsets` whose other members are 0.
fn file_offsets(btf: &RawBtf, path: &Path) -> Result<TaskOffsets, BpfError> {
    let offset = |structure, member| member_offset(btf, path, structure, member);
    Ok(TaskOffsets {
        task_files: offset("task_struct", "files")?,
        task_group_leader: offset("task_struct", "group_leader")?,
        files_fdt: offset("files_struct", "fdt")?,
        fdtable_max_fds: offset("fdtable", "max_fds")?,
        fdtable_fd: offset("fdtable", "fd")?,
        fdtable_open_fds: offset("fdtable", "open_fds")?,
        file_inode: offset("file", "f_inode")?,
        inode_mode: offset("inode", "i_mode")?,
        ..TaskOffsets::default()
    })
}

/// The task members read by `sched_process_exit` and the iterators (the descriptor
/// table's members are resolved apart: only `file_pass` reads them).
fn task_offsets(btf: &RawBtf, path: &Path) -> Result<TaskOffsets, BpfError> {
    let offset = |structure, member| member_offset(btf, path, structure, member);
    let sched_info = offset("task_struct", "sched_info")?;
    Ok(TaskOffsets {
        task_pid: offset("task_struct", "pid")?,
        task_tgid: offset("task_struct", "tgid")?,
        task_exit_state: offset("task_struct", "exit_state")?,
        task_runtime: offset("task_struct", "se")? + offset("sched_entity", "sum_exec_runtime")?,
        task_run_delay: sched_info + offset("sched_info", "run_delay")?,
        task_pcount: sched_info + offset("sched_info", "pcount")?,
        task_signal: offset("task_struct", "signal")?,
        signal_nofile_cur: offset("signal_struct", "rlim")? + RLIMIT_NOFILE * RLIMIT_SIZE,
        ..TaskOffsets::default()
    })
}

/// Whether argument `index` of BTF tracepoint `tracepoint` is a pointer. The
/// tracepoint's prototype is the typedef `btf_trace_<name>`, a pointer to a function
/// whose first parameter is the hidden `void *__data`. No such tracepoint: false.
fn tracepoint_arg_is_pointer(btf: &RawBtf, tracepoint: &'static str, index: usize) -> bool {
    let typedef = format!("btf_trace_{tracepoint}");
    btf.named(&typedef, reader::TYPEDEF)
        .filter_map(|t| t.target().filter(|p| p.kind() == reader::PTR)?.target())
        .find(|proto| proto.kind() == reader::FUNC_PROTO)
        .is_some_and(|proto| {
            proto
                .params()
                .nth(index + 1)
                .flatten()
                .is_some_and(|param| param.kind() == reader::PTR)
        })
}

/// Byte offset of `member` in `struct structure`, looking through anonymous structs
/// and unions (task_struct is wrapped in one when the kernel randomizes its layout).
pub(super) fn member_offset(
    btf: &RawBtf,
    path: &Path,
    structure: &'static str,
    member: &'static str,
) -> Result<u32, BpfError> {
    btf.named(structure, reader::STRUCT)
        .find_map(|s| find_member(btf, s, member))
        .map(|bits| bits / 8)
        .ok_or_else(|| BpfError::BtfMember {
            path: path.to_owned(),
            structure,
            member,
        })
}

/// Bit offset of `name` inside `s`, descending into anonymous members.
fn find_member(btf: &RawBtf, s: Type<'_>, name: &str) -> Option<u32> {
    s.members().find_map(|m| {
        if m.name == name {
            return Some(m.bit_offset);
        }
        if !m.name.is_empty() {
            return None;
        }
        let inner = btf
            .get(m.type_id)
            .filter(|t| matches!(t.kind(), reader::STRUCT | reader::UNION))?;
        Some(m.bit_offset + find_member(btf, inner, name)?)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member_missing() -> BpfError {
        BpfError::BtfMember {
            path: "/sys/kernel/btf/vmlinux".into(),
            structure: "task_struct",
            member: "sched_info",
        }
    }

    #[test]
    fn a_missing_member_leaves_out_only_the_programs_reading_it() {
        let mut missing = Vec::new();
        let task: TaskOffsets =
            or_leave_out(TASK_PROGRAMS, Err(member_missing()), &mut missing).unwrap();
        assert_eq!(task, TaskOffsets::default());
        let signal = or_leave_out(SIGNAL_PROGRAMS, Ok(24_u32), &mut missing).unwrap();
        assert_eq!(signal, 24);
        let names: Vec<_> = missing.iter().map(|(p, _)| *p).collect();
        assert_eq!(names, ["sched_process_exit", "task_pass", "file_pass"]);
        assert!(
            missing[0].1.to_string().contains("sched_info"),
            "{}",
            missing[0].1
        );
    }

    #[test]
    fn an_unreadable_btf_still_fails() {
        let unreadable = BpfError::BtfParse {
            path: "/nonexistent".into(),
            source: "truncated".into(),
        };
        let mut missing = Vec::new();
        let result: Result<u32, _> = or_leave_out(TASK_PROGRAMS, Err(unreadable), &mut missing);
        assert!(matches!(result, Err(BpfError::BtfParse { .. })));
        assert!(missing.is_empty());
    }
}
