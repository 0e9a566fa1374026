//! Reading a whole per-CPU hash map in a few syscalls.
//!
//! aya's map iterator costs two `bpf()` calls per entry (next key, then lookup); at
//! a thousand cgroups and a few maps that is thousands of syscalls per scrape.
//! `BPF_MAP_LOOKUP_BATCH` (kernel ≥ 5.6) returns up to `CHUNK` entries per call.
//! aya 0.14 has no batch API, so the command is issued here directly.
use std::{
    io,
    mem::size_of,
    os::fd::{AsRawFd as _, BorrowedFd},
};

use aya::Pod;

/// `BPF_MAP_LOOKUP_BATCH` from `enum bpf_cmd` (include/uapi/linux/bpf.h).
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;

/// Entries fetched per syscall.
const CHUNK: usize = 256;

/// The `batch` member of `union bpf_attr` (uapi, stable ABI).
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Calls `visit(key, per_cpu_values)` for every entry of the per-CPU hash behind
/// `fd`. Returns `ErrorKind::Unsupported` on kernels without batch operations, so
/// the caller can fall back to iterating.
pub fn for_each_per_cpu<K: Pod, V: Pod>(
    fd: BorrowedFd<'_>,
    nr_cpus: usize,
    mut visit: impl FnMut(K, &[V]),
) -> io::Result<()> {
    // The kernel lays per-CPU values out at 8-byte strides.
    let stride = size_of::<V>().next_multiple_of(8);
    let mut keys = vec![0u8; CHUNK * size_of::<K>()];
    let mut values = vec![0u8; CHUNK * stride * nr_cpus];
    let mut per_cpu: Vec<V> = Vec::with_capacity(nr_cpus);
    // For hash maps the batch token is a bucket index (u32).
    let (mut token_in, mut token_out) = (0u32, 0u32);
    let mut first = true;
    loop {
        let mut attr = BatchAttr {
            in_batch: if first {
                0
            } else {
                (&raw const token_in) as u64
            },
            out_batch: (&raw mut token_out) as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: CHUNK as u32,
            map_fd: fd.as_raw_fd() as u32,
            ..BatchAttr::default()
        };
        // SAFETY: attr points at buffers sized for `count` keys and `count` per-CPU
        // values, which the kernel fills; the size passed is attr's own.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_LOOKUP_BATCH,
                &raw mut attr,
                size_of::<BatchAttr>(),
            )
        };
        let done = if ret < 0 {
            let error = io::Error::last_os_error();
            match error.raw_os_error() {
                // ENOENT: the last entries were returned with this call.
                Some(libc::ENOENT) => true,
                Some(libc::EINVAL | libc::ENOTSUP | libc::EOPNOTSUPP) if first => {
                    return Err(io::Error::new(io::ErrorKind::Unsupported, error));
                }
                _ => return Err(error),
            }
        } else {
            false
        };
        for i in 0..attr.count as usize {
            // SAFETY: the kernel wrote `attr.count` keys and values into the buffers;
            // reads are unaligned-safe and K, V are plain old data.
            let key = unsafe {
                keys.as_ptr()
                    .add(i * size_of::<K>())
                    .cast::<K>()
                    .read_unaligned()
            };
            per_cpu.clear();
            for cpu in 0..nr_cpus {
                let offset = (i * nr_cpus + cpu) * stride;
                // SAFETY: as above; offset + size_of::<V>() <= values.len().
                per_cpu.push(unsafe { values.as_ptr().add(offset).cast::<V>().read_unaligned() });
            }
            visit(key, &per_cpu);
        }
        if done {
            return Ok(());
        }
        token_in = token_out;
        first = false;
    }
}
