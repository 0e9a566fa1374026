//! Maps shared by the program families, and the error counters every family reports
//! into.
use aya_ebpf::{
    bindings::{BPF_F_NO_PREALLOC, BPF_NOEXIST},
    macros::map,
    maps::{HashMap, PerCpuArray, PerCpuHashMap},
};
use kadvisor_common::{
    CgroupCpu, CgroupCrashes, CgroupNet, KERNEL_ERROR_COUNT, KernelError, MAX_CGROUPS,
};

/// CPU accounting per cgroup v2 id. The loader may resize it (`--max_cgroups`).
///
/// Not preallocated: a per-CPU hash holds `max_entries × value × CPUs` when
/// preallocated (16384 × 8 B × 128 CPUs = 16 MiB on a large node for one counter);
/// allocated on insert, its memory follows the cgroups that actually ran.
#[map(name = "CGROUP_CPU")]
pub(crate) static CGROUP_CPU: PerCpuHashMap<u64, CgroupCpu> =
    PerCpuHashMap::with_max_entries(MAX_CGROUPS, BPF_F_NO_PREALLOC);

/// Crashes (fatal signals delivered with the default action) per cgroup v2 id. The
/// loader may resize it (`--max_cgroups`). Not preallocated, like `CGROUP_CPU`: only
/// cgroups that crashed hold an entry (40 B × CPUs each).
#[map(name = "CGROUP_CRASHES")]
pub(crate) static CGROUP_CRASHES: PerCpuHashMap<u64, CgroupCrashes> =
    PerCpuHashMap::with_max_entries(MAX_CGROUPS, BPF_F_NO_PREALLOC);

/// Socket traffic per cgroup v2 id (see `net.rs`). Resized with `CGROUP_CPU`; not
/// preallocated for the same reason (80 B values: preallocation would cost 160 MiB
/// on a 128-CPU node).
#[map(name = "CGROUP_NET")]
pub(crate) static CGROUP_NET: PerCpuHashMap<u64, CgroupNet> =
    PerCpuHashMap::with_max_entries(MAX_CGROUPS, BPF_F_NO_PREALLOC);

/// OOM kills per cgroup v2 id of the killed task (see `oom.rs`). Entries outlive the
/// cgroup so a kill is exported even when the container is gone. Not preallocated,
/// like `CGROUP_CPU`: few cgroups ever see a kill.
#[map(name = "CGROUP_OOM")]
pub(crate) static CGROUP_OOM: PerCpuHashMap<u64, u64> =
    PerCpuHashMap::with_max_entries(MAX_CGROUPS, BPF_F_NO_PREALLOC);

/// Kernel-side failure counts, indexed by `KernelError`.
#[map(name = "ERRORS")]
static ERRORS: PerCpuArray<u64> = PerCpuArray::with_max_entries(KERNEL_ERROR_COUNT, 0);

/// Counts one kernel-side failure; the daemon exports these so no loss is silent.
#[inline(always)]
pub(crate) fn count_error(error: KernelError) {
    if let Some(slot) = ERRORS.get_ptr_mut(error as u32) {
        // SAFETY: the slot belongs to this CPU and the program runs with preemption
        // disabled, so no one else writes it concurrently.
        unsafe { *slot += 1 };
    }
}

/// Returns this CPU's slot for `key` in a per-CPU hash, inserting a zeroed value when
/// the key is new. `None` when the map is full (counted in `ERRORS`).
#[inline(always)]
pub(crate) fn per_cpu_entry<V: Copy + Default>(
    map: &PerCpuHashMap<u64, V>,
    key: u64,
) -> Option<*mut V> {
    if let Some(value) = map.get_ptr_mut(key) {
        return Some(value);
    }
    // Another CPU may insert the same key between our lookup and insert; NOEXIST then
    // fails harmlessly and the second lookup finds its entry.
    let _ignored = map.insert(key, V::default(), u64::from(BPF_NOEXIST));
    let entry = map.get_ptr_mut(key);
    if entry.is_none() {
        count_error(KernelError::MapFull);
    }
    entry
}

/// Cgroup v2 ids the user's selection excludes (`--exclude_cgroups`,
/// `--exclude_namespaces`, ...), filled by the daemon as it discovers cgroups. A
/// denylist rather than an allowlist: a new cgroup is counted from its first event
/// (an allowlist would lose what an included container does before the daemon has
/// seen its mkdir), and an excluded one at most until then (the daemon deletes what it
/// had counted when it excludes it). The loader may resize it (`--max_cgroups`).
#[map(name = "CGROUP_EXCLUDED")]
static CGROUP_EXCLUDED: HashMap<u64, u8> =
    HashMap::with_max_entries(MAX_CGROUPS, BPF_F_NO_PREALLOC);

/// 1 when a cgroup selection is configured. Set by the loader before load; in the
/// frozen `.rodata` the verifier sees it as a constant, so with no selection the
/// lookup below is removed as dead code and costs nothing.
#[unsafe(no_mangle)]
static CGROUP_FILTER: u32 = 0;

/// Whether events of `cgroup_id` are not to be counted (called first by every hook
/// once it knows the cgroup).
#[inline(always)]
pub(crate) fn excluded(cgroup_id: u64) -> bool {
    // SAFETY: a plain read of a global; volatile so the compiler does not fold in the
    // zero initialiser that the loader replaces before load.
    if unsafe { core::ptr::read_volatile(&raw const CGROUP_FILTER) } == 0 {
        return false;
    }
    CGROUP_EXCLUDED.get_ptr(cgroup_id).is_some()
}
