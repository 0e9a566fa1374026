//! Struct member offsets from the running kernel's BTF.
//!
//! aya-ebpf programs have no CO-RE relocations, so a program that must read a kernel
//! struct gets the member offsets as globals, resolved here from
//! `/sys/kernel/btf/vmlinux`. A kernel whose layout differs only needs its own BTF.
use std::path::Path;

use btf_rs::{Btf, Type};
use kadvisor_common::{SignalOffsets, TaskCgroupOffsets, TaskOffsets};

use super::BpfError;

/// What the loader needs from the kernel's BTF, from one parse: `vmlinux` BTF is
/// ~5 MB and a parse takes ~25 MB of heap, so it is parsed once, and dropped before
/// aya parses it for the loader (two parses alive at once made start-up's peak RSS).
pub(super) struct KernelFacts {
    pub task_cgroup: TaskCgroupOffsets,
    pub family: FamilyOffsets,
    /// `(tracepoint, argument index)` → whether this kernel passes a pointer there.
    pub pointer_args: Vec<((&'static str, usize), bool)>,
}

impl KernelFacts {
    pub fn pointer_arg(&self, tracepoint: &str, index: usize) -> bool {
        self.pointer_args
            .iter()
            .any(|((t, i), pointer)| *t == tracepoint && *i == index && *pointer)
    }
}

/// Parses `path` once and resolves every offset, and whether each of `pointer_args`
/// is a pointer.
pub(super) fn kernel_facts(
    path: &Path,
    pointer_args: &[(&'static str, usize)],
) -> Result<KernelFacts, BpfError> {
    let btf = parse(path)?;
    let mut answers = Vec::with_capacity(pointer_args.len());
    for &(tracepoint, index) in pointer_args {
        answers.push((
            (tracepoint, index),
            tracepoint_arg_is_pointer(&btf, path, tracepoint, index)?,
        ));
    }
    Ok(KernelFacts {
        task_cgroup: task_cgroup_offsets(&btf, path)?,
        family: family_offsets(&btf, path)?,
        pointer_args: answers,
    })
}

/// Offsets of `task->cgroups->dfl_cgrp->kn->id`.
fn task_cgroup_offsets(btf: &Btf, path: &Path) -> Result<TaskCgroupOffsets, BpfError> {
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
    /// Programs left out, with the missing member.
    pub missing: Vec<(&'static str, BpfError)>,
}

/// Programs reading the task members (`task_offsets`).
const TASK_PROGRAMS: &[&str] = &["sched_process_exit", "task_pass", "file_pass"];
/// Programs reading the file and inode members (`file_offsets`).
const FILE_PROGRAMS: &[&str] = &["file_pass"];
/// Programs reading `k_sigaction.sa.sa_handler`.
const SIGNAL_PROGRAMS: &[&str] = &["signal_deliver"];

/// Resolves every family's offsets; a missing member leaves out only the programs
/// that read it (`FamilyOffsets::missing`), an unreadable BTF fails.
fn family_offsets(btf: &Btf, path: &Path) -> Result<FamilyOffsets, BpfError> {
    let offset = |structure, member| member_offset(btf, path, structure, member);
    let mut missing = Vec::new();
    let mut task = or_leave_out(TASK_PROGRAMS, task_offsets(btf, path), &mut missing)?;
    let (file_inode, inode_mode) = or_leave_out(
        FILE_PROGRAMS,
        offset("file", "f_inode").and_then(|f| Ok((f, offset("inode", "i_mode")?))),
        &mut missing,
    )?;
    task.file_inode = file_inode;
    task.inode_mode = inode_mode;
    let k_sigaction_handler = or_leave_out(
        SIGNAL_PROGRAMS,
        offset("k_sigaction", "sa").and_then(|sa| Ok(sa + offset("sigaction", "sa_handler")?)),
        &mut missing,
    )?;
    Ok(FamilyOffsets {
        task,
        signal: SignalOffsets {
            k_sigaction_handler,
        },
        missing,
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

/// The task members read by `sched_process_exit` and the iterators (the file and
/// inode members are resolved apart: only `file_pass` reads them).
fn task_offsets(btf: &Btf, path: &Path) -> Result<TaskOffsets, BpfError> {
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
        file_inode: 0,
        inode_mode: 0,
    })
}

fn parse(path: &Path) -> Result<Btf, BpfError> {
    Btf::from_file(path).map_err(|e| BpfError::BtfParse {
        path: path.to_owned(),
        source: e.into(),
    })
}

/// Whether argument `index` of BTF tracepoint `tracepoint` is a pointer. The
/// tracepoint's prototype is the typedef `btf_trace_<name>`, a pointer to a function
/// whose first parameter is the hidden `void *__data`.
fn tracepoint_arg_is_pointer(
    btf: &Btf,
    path: &Path,
    tracepoint: &'static str,
    index: usize,
) -> Result<bool, BpfError> {
    let parse_err = |e: btf_rs::Error| BpfError::BtfParse {
        path: path.to_owned(),
        source: e.into(),
    };
    let typedef = format!("btf_trace_{tracepoint}");
    let types = match btf.resolve_types_by_name(&typedef) {
        Ok(types) => types,
        // No such tracepoint in this kernel.
        Err(_) => return Ok(false),
    };
    for ty in types {
        let Type::Typedef(typedef) = ty else { continue };
        let Type::Ptr(ptr) = btf.resolve_chained_type(&typedef).map_err(parse_err)? else {
            continue;
        };
        let Type::FuncProto(proto) = btf.resolve_chained_type(&ptr).map_err(parse_err)? else {
            continue;
        };
        let Some(param) = proto.parameters.get(index + 1) else {
            return Ok(false);
        };
        return Ok(matches!(
            btf.resolve_chained_type(param).map_err(parse_err)?,
            Type::Ptr(_)
        ));
    }
    Ok(false)
}

/// Byte offset of `member` in `struct structure`, looking through anonymous structs
/// and unions (task_struct is wrapped in one when the kernel randomizes its layout).
pub(super) fn member_offset(
    btf: &Btf,
    path: &Path,
    structure: &'static str,
    member: &'static str,
) -> Result<u32, BpfError> {
    let not_found = || BpfError::BtfMember {
        path: path.to_owned(),
        structure,
        member,
    };
    let parse_err = |e: btf_rs::Error| BpfError::BtfParse {
        path: path.to_owned(),
        source: e.into(),
    };
    for ty in btf.resolve_types_by_name(structure).map_err(parse_err)? {
        if let Type::Struct(s) = ty
            && let Some(bits) = find_member(btf, &s, member).map_err(parse_err)?
        {
            return Ok(bits / 8);
        }
    }
    Err(not_found())
}

/// Bit offset of `name` inside `s`, descending into anonymous members.
fn find_member(btf: &Btf, s: &btf_rs::Struct, name: &str) -> Result<Option<u32>, btf_rs::Error> {
    for m in &s.members {
        let member_name = btf.resolve_name(m).unwrap_or_default();
        if member_name == name {
            return Ok(Some(m.bit_offset()));
        }
        if member_name.is_empty() {
            let inner = match btf.resolve_chained_type(m)? {
                Type::Struct(inner) | Type::Union(inner) => inner,
                _ => continue,
            };
            if let Some(bits) = find_member(btf, &inner, name)? {
                return Ok(Some(m.bit_offset() + bits));
            }
        }
    }
    Ok(None)
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
