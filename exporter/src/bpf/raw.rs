//! The two map operations aya's typed maps only offer through `&mut self` or per
//! value type: deleting a key and listing keys, for any hash map keyed by `u64`
//! (every per-cgroup map), through the `bpf(2)` syscall on a map fd.
use std::os::fd::{AsRawFd as _, OwnedFd};

const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
const BPF_MAP_GET_NEXT_KEY: libc::c_long = 4;

/// `union bpf_attr` for the map element commands (linux/bpf.h).
#[repr(C)]
#[derive(Default)]
struct MapElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value_or_next_key: u64,
    flags: u64,
}

fn bpf(cmd: libc::c_long, attr: &mut MapElemAttr) -> std::io::Result<()> {
    // SAFETY: attr is a valid, initialised bpf_attr prefix of the size passed; the
    // pointers in it point at live u64s owned by the caller.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            std::ptr::from_mut(attr),
            std::mem::size_of::<MapElemAttr>(),
        )
    };
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn fd_u32(fd: &OwnedFd) -> u32 {
    u32::try_from(fd.as_raw_fd()).unwrap_or(u32::MAX)
}

/// Sets `key` to the one-byte `value` (a map of `u64` → `u8`).
pub fn update_u64_key_u8(fd: &OwnedFd, key: u64, value: u8) -> std::io::Result<()> {
    let mut attr = MapElemAttr {
        map_fd: fd_u32(fd),
        key: std::ptr::from_ref(&key) as u64,
        value_or_next_key: std::ptr::from_ref(&value) as u64,
        ..MapElemAttr::default()
    };
    bpf(BPF_MAP_UPDATE_ELEM, &mut attr)
}

/// Deletes `key`; `Ok` when it was not there.
pub fn delete_u64_key(fd: &OwnedFd, key: u64) -> std::io::Result<()> {
    let mut attr = MapElemAttr {
        map_fd: fd_u32(fd),
        key: std::ptr::from_ref(&key) as u64,
        ..MapElemAttr::default()
    };
    match bpf(BPF_MAP_DELETE_ELEM, &mut attr) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        other => other,
    }
}

/// Every key of a hash map keyed by `u64`.
pub fn u64_keys(fd: &OwnedFd) -> std::io::Result<Vec<u64>> {
    let mut keys = Vec::new();
    let mut next: u64 = 0;
    let mut current: Option<u64> = None;
    loop {
        let mut attr = MapElemAttr {
            map_fd: fd_u32(fd),
            // A null key asks for the first key.
            key: current.as_ref().map_or(0, |k| std::ptr::from_ref(k) as u64),
            value_or_next_key: std::ptr::from_mut(&mut next) as u64,
            ..MapElemAttr::default()
        };
        match bpf(BPF_MAP_GET_NEXT_KEY, &mut attr) {
            Ok(()) => {
                keys.push(next);
                current = Some(next);
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(keys),
            Err(e) => return Err(e),
        }
        if keys.len() > 16 * 1024 * 1024 {
            return Ok(keys);
        }
    }
}
