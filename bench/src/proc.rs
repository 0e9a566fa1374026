//! What a process costs, read from procfs: CPU ticks, RSS, the kernel memory of its
//! BPF maps.
use std::fs;

/// Clock ticks per second of /proc/<pid>/stat's utime and stime.
pub fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// utime + stime of `pid` in seconds.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/pid/stat");
    // Fields after the command name (which may contain spaces) start after ") ".
    let after = &stat[stat.rfind(") ").expect("stat format") + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    // utime and stime are fields 14 and 15 of stat: index 11 and 12 after the name.
    let utime: f64 = fields[11].parse().expect("utime");
    let stime: f64 = fields[12].parse().expect("stime");
    (utime + stime) / ticks_per_second()
}

/// Resident set size of `pid` in bytes.
pub fn rss_bytes(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
        .expect("VmRSS")
        * 1024
}

/// One BPF map held by a process.
#[derive(Debug, Clone)]
pub struct MapMemory {
    pub map_type: u32,
    pub memlock: u64,
}

/// Every BPF map `pid` holds a file descriptor for, from /proc/<pid>/fdinfo.
pub fn bpf_maps(pid: u32) -> Vec<MapMemory> {
    let mut maps = Vec::new();
    let Ok(entries) = fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return maps;
    };
    for entry in entries.flatten() {
        let Ok(info) = fs::read_to_string(entry.path()) else {
            continue;
        };
        let field = |key: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        if let (Some(map_type), Some(memlock)) = (field("map_type:"), field("memlock:")) {
            maps.push(MapMemory {
                map_type: map_type as u32,
                memlock,
            });
        }
    }
    maps
}

/// BPF_MAP_TYPE_PERCPU_HASH and BPF_MAP_TYPE_PERCPU_ARRAY: memory grows with CPUs.
pub fn is_per_cpu(map_type: u32) -> bool {
    matches!(map_type, 5 | 6 | 10)
}
