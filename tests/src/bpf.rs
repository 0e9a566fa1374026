//! What the kernel says about a running kadvisor's BPF objects, through the `bpf(2)`
//! syscall and /proc: which programs it holds, which a cgroup has attached, and
//! whether one of its maps has a key. Independent of kadvisor's own self-metrics.
use std::{
    fs,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
};

const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_MAP_GET_FD_BY_ID: libc::c_long = 14;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_PROG_QUERY: libc::c_long = 16;

/// `BPF_CGROUP_INET_INGRESS` / `BPF_CGROUP_INET_EGRESS` (linux/bpf.h).
pub const CGROUP_INET_INGRESS: u32 = 0;
pub const CGROUP_INET_EGRESS: u32 = 1;

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> std::io::Result<libc::c_long> {
    // SAFETY: attr is a zero-padded bpf_attr prefix of the size passed, its pointers
    // point at live buffers owned by the caller.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            std::ptr::from_mut(attr),
            std::mem::size_of::<T>(),
        )
    };
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// `key:\tvalue` fields of every fdinfo of `pid` whose fd is a `kind` anon inode
/// (`bpf-prog`, `bpf-map`, `bpf_link`).
fn fdinfos(pid: u32, kind: &str) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return out;
    };
    for entry in dir.flatten() {
        let Ok(target) = fs::read_link(entry.path()) else {
            continue;
        };
        if target.to_string_lossy() != format!("anon_inode:{kind}") {
            continue;
        }
        if let Ok(info) = fs::read_to_string(format!(
            "/proc/{pid}/fdinfo/{}",
            entry.file_name().to_string_lossy()
        )) {
            out.push(info);
        }
    }
    out
}

fn field(info: &str, key: &str) -> Option<u32> {
    info.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.trim().parse().ok())
}

/// Ids of the programs process `pid` holds (program fds and links).
pub fn prog_ids_of(pid: u32) -> Vec<u32> {
    let mut ids: Vec<u32> = fdinfos(pid, "bpf-prog")
        .iter()
        .chain(fdinfos(pid, "bpf_link").iter())
        .filter_map(|info| field(info, "prog_id"))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Ids of the programs attached to the cgroup directory `cgroup` for `attach_type`
/// (`BPF_PROG_QUERY`, as `bpftool cgroup show` asks).
pub fn cgroup_attached(cgroup: &std::path::Path, attach_type: u32) -> Vec<u32> {
    #[repr(C)]
    #[derive(Default)]
    struct Query {
        target_fd: u32,
        attach_type: u32,
        query_flags: u32,
        attach_flags: u32,
        prog_ids: u64,
        prog_cnt: u32,
        _pad: u32,
        prog_attach_flags: u64,
        link_ids: u64,
        link_attach_flags: u64,
        revision: u64,
    }
    let dir = fs::File::open(cgroup).expect("open cgroup dir");
    let mut ids = vec![0u32; 256];
    let mut attr = Query {
        target_fd: u32::try_from(dir.as_raw_fd()).expect("fd"),
        attach_type,
        prog_ids: ids.as_mut_ptr() as u64,
        prog_cnt: 256,
        ..Query::default()
    };
    bpf(BPF_PROG_QUERY, &mut attr).expect("BPF_PROG_QUERY on the cgroup root");
    ids.truncate(attr.prog_cnt as usize);
    ids
}

/// Whether the map called `name` held by process `pid` has the `u64` key `key`.
pub fn map_has_key(pid: u32, name: &str, key: u64) -> bool {
    #[repr(C)]
    #[derive(Default)]
    struct GetFd {
        id: u32,
        next_id: u32,
        open_flags: u32,
    }
    #[repr(C)]
    struct InfoAttr {
        bpf_fd: u32,
        info_len: u32,
        info: u64,
    }
    #[repr(C)]
    #[derive(Default)]
    struct MapInfo {
        map_type: u32,
        id: u32,
        key_size: u32,
        value_size: u32,
        max_entries: u32,
        map_flags: u32,
        name: [u8; 16],
        rest: [u64; 8],
    }
    #[repr(C)]
    struct Lookup {
        map_fd: u32,
        _pad: u32,
        key: u64,
        value: u64,
        flags: u64,
    }
    for info in fdinfos(pid, "bpf-map") {
        let Some(map_id) = field(&info, "map_id") else {
            continue;
        };
        let mut get = GetFd {
            id: map_id,
            ..GetFd::default()
        };
        let Ok(fd) = bpf(BPF_MAP_GET_FD_BY_ID, &mut get) else {
            continue;
        };
        // SAFETY: a new fd the kernel just returned to us.
        let fd = unsafe { OwnedFd::from_raw_fd(i32::try_from(fd).expect("fd")) };
        let mut map = MapInfo::default();
        let mut attr = InfoAttr {
            bpf_fd: u32::try_from(fd.as_raw_fd()).expect("fd"),
            info_len: u32::try_from(std::mem::size_of::<MapInfo>()).expect("size"),
            info: std::ptr::from_mut(&mut map) as u64,
        };
        bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr).expect("BPF_OBJ_GET_INFO_BY_FD");
        let map_name = String::from_utf8_lossy(&map.name);
        if map_name.trim_end_matches('\0') != name {
            continue;
        }
        // Room for a per-CPU value on any machine.
        let mut value = vec![0u8; (map.value_size as usize).div_ceil(8) * 8 * 4096];
        let mut lookup = Lookup {
            map_fd: u32::try_from(fd.as_raw_fd()).expect("fd"),
            _pad: 0,
            key: std::ptr::from_ref(&key) as u64,
            value: value.as_mut_ptr() as u64,
            flags: 0,
        };
        return match bpf(BPF_MAP_LOOKUP_ELEM, &mut lookup) {
            Ok(_) => true,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => false,
            Err(e) => panic!("lookup in {name}: {e}"),
        };
    }
    panic!("process {pid} holds no map {name}");
}

/// The cgroup v2 id of a cgroup directory: its inode number.
pub fn cgroup_id(dir: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt as _;
    fs::metadata(dir).expect("stat cgroup").ino()
}

/// Names of the programs process `pid` has attached, as the kernel reports them: the
/// programs of its BPF links (tracing, raw tracepoints, cgroup links) and its programs
/// attached to the cgroup v2 root for socket traffic. A program loaded but not
/// attached is not named. Names are the kernel's (at most 15 bytes).
pub fn attached_program_names(pid: u32) -> Vec<String> {
    let ours = prog_ids_of(pid);
    let mut ids: Vec<u32> = fdinfos(pid, "bpf_link")
        .iter()
        .filter_map(|info| field(info, "prog_id"))
        .chain(
            [CGROUP_INET_INGRESS, CGROUP_INET_EGRESS]
                .iter()
                .flat_map(|&t| cgroup_attached(&crate::cgroup::v2_root(), t))
                .filter(|id| ours.contains(id)),
        )
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let mut names: Vec<String> = ids.into_iter().map(prog_name).collect();
    names.sort();
    names
}

/// The kernel's name of program `id` (`bpf_prog_info.name`).
fn prog_name(id: u32) -> String {
    const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
    #[repr(C)]
    #[derive(Default)]
    struct GetFd {
        id: u32,
        next_id: u32,
        open_flags: u32,
    }
    #[repr(C)]
    struct InfoAttr {
        bpf_fd: u32,
        info_len: u32,
        info: u64,
    }
    /// `struct bpf_prog_info` up to its name (linux/bpf.h).
    #[repr(C)]
    #[derive(Default)]
    struct ProgInfo {
        prog_type: u32,
        id: u32,
        tag: [u8; 8],
        jited_prog_len: u32,
        xlated_prog_len: u32,
        jited_prog_insns: u64,
        xlated_prog_insns: u64,
        load_time: u64,
        created_by_uid: u32,
        nr_map_ids: u32,
        map_ids: u64,
        name: [u8; 16],
    }
    let mut get = GetFd {
        id,
        ..GetFd::default()
    };
    let fd = bpf(BPF_PROG_GET_FD_BY_ID, &mut get).expect("BPF_PROG_GET_FD_BY_ID");
    // SAFETY: a new fd the kernel just returned to us.
    let fd = unsafe { OwnedFd::from_raw_fd(i32::try_from(fd).expect("fd")) };
    let mut info = ProgInfo::default();
    let mut attr = InfoAttr {
        bpf_fd: u32::try_from(fd.as_raw_fd()).expect("fd"),
        info_len: u32::try_from(std::mem::size_of::<ProgInfo>()).expect("size"),
        info: std::ptr::from_mut(&mut info) as u64,
    };
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr).expect("BPF_OBJ_GET_INFO_BY_FD on a program");
    String::from_utf8_lossy(&info.name)
        .trim_end_matches('\0')
        .to_owned()
}
