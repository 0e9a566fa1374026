//! Struct member offsets from the running kernel's BTF.
//!
//! aya-ebpf programs have no CO-RE relocations, so a program that must read a kernel
//! struct gets the member offsets as globals, resolved here from
//! `/sys/kernel/btf/vmlinux`. A kernel whose layout differs only needs its own BTF.
use std::path::Path;

use btf_rs::{Btf, Type};
use kadvisor_common::{SignalOffsets, TaskCgroupOffsets, TaskOffsets};

use super::BpfError;

/// Offsets of `task->cgroups->dfl_cgrp->kn->id`.
pub(super) fn task_cgroup_offsets(path: &Path) -> Result<TaskCgroupOffsets, BpfError> {
    let btf = Btf::from_file(path).map_err(|e| BpfError::BtfParse {
        path: path.to_owned(),
        source: e.into(),
    })?;
    let offset = |structure, member| member_offset(&btf, path, structure, member);
    Ok(TaskCgroupOffsets {
        task_cgroups: offset("task_struct", "cgroups")?,
        css_set_dfl_cgrp: offset("css_set", "dfl_cgrp")?,
        cgroup_kn: offset("cgroup", "kn")?,
        kernfs_node_id: offset("kernfs_node", "id")?,
    })
}

/// Offsets of the exit hook and the task iterators (`task_offsets`) and of the signal
/// program (`k_sigaction.sa.sa_handler`).
pub(super) fn family_offsets(path: &Path) -> Result<(TaskOffsets, SignalOffsets), BpfError> {
    let btf = parse(path)?;
    let offset = |structure, member| member_offset(&btf, path, structure, member);
    Ok((
        task_offsets(&btf, path)?,
        SignalOffsets {
            k_sigaction_handler: offset("k_sigaction", "sa")? + offset("sigaction", "sa_handler")?,
        },
    ))
}

/// `RLIMIT_NOFILE` (include/uapi/asm-generic/resource.h; x86 and arm64 use it).
const RLIMIT_NOFILE: u32 = 7;
/// `sizeof(struct rlimit)`: two `unsigned long`s on 64-bit kernels.
const RLIMIT_SIZE: u32 = 16;

/// The task, file and inode members read by `sched_process_exit` and the iterators.
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
        file_inode: offset("file", "f_inode")?,
        inode_mode: offset("inode", "i_mode")?,
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
pub(super) fn tracepoint_arg_is_pointer(
    path: &Path,
    tracepoint: &'static str,
    index: usize,
) -> Result<bool, BpfError> {
    let parse_err = |e: btf_rs::Error| BpfError::BtfParse {
        path: path.to_owned(),
        source: e.into(),
    };
    let btf = Btf::from_file(path).map_err(parse_err)?;
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
