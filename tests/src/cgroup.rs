//! Real cgroups made (and removed) by the tests, in the cgroup v2 tree.
use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command},
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

/// The cgroup v2 mount of this machine: /sys/fs/cgroup on pure v2 hosts,
/// /sys/fs/cgroup/unified on hybrid ones.
pub fn v2_root() -> PathBuf {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").expect("read mountinfo");
    let mounts: Vec<&str> = mountinfo
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            (right.split(' ').next() == Some("cgroup2")).then(|| left.split(' ').nth(4))?
        })
        .collect();
    for want in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
        if mounts.contains(&want) {
            return PathBuf::from(want);
        }
    }
    panic!("no cgroup2 mount found (mounts: {mounts:?})");
}

/// A cgroup v2 directory owned by one test. Dropping it kills its processes (by
/// PID, only those it started) and removes it and its children.
pub struct TestCgroup {
    path: PathBuf,
    /// Path as kadvisor writes it in the `id` label.
    id: String,
    children: Vec<Child>,
}

impl TestCgroup {
    /// A new cgroup directly under the v2 root, with a unique name.
    pub fn new(name: &str) -> Self {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let unique = format!(
            "kadvisor-test-{}-{}-{name}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        Self::create(&v2_root(), &format!("/{unique}"))
    }

    /// A child cgroup of this one.
    pub fn child(&self, name: &str) -> Self {
        Self::create(&v2_root(), &format!("{}/{name}", self.id))
    }

    fn create(root: &Path, id: &str) -> Self {
        let path = root.join(id.trim_start_matches('/'));
        fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        Self {
            path,
            id: id.to_owned(),
            children: Vec::new(),
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Starts `command` and moves it into this cgroup before returning.
    pub fn spawn(&mut self, command: &mut Command) -> u32 {
        let child = command.spawn().expect("spawn workload");
        let pid = child.id();
        fs::write(self.path.join("cgroup.procs"), pid.to_string())
            .unwrap_or_else(|e| panic!("move {pid} into {}: {e}", self.path.display()));
        self.children.push(child);
        pid
    }

    /// A CPU-bound process that never blocks.
    pub fn spawn_busy(&mut self) -> u32 {
        self.spawn(Command::new("sh").args(["-c", "while :; do :; done"]))
    }

    /// CPU seconds the processes this cgroup started have run, by their own
    /// accounting (`/proc/<pid>/schedstat`, first field, ns).
    pub fn started_processes_cpu_seconds(&self) -> f64 {
        self.children
            .iter()
            .map(|child| {
                let stat = fs::read_to_string(format!("/proc/{}/schedstat", child.id()))
                    .expect("read schedstat of a running workload");
                let ns: u64 = stat.split(' ').next().unwrap().parse().unwrap();
                ns as f64 / 1e9
            })
            .sum()
    }

    /// Kills every process this cgroup started and waits for them to exit, so the
    /// kernel has charged their final slices.
    pub fn stop_all(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.children.clear();
    }

    /// `usage_usec` of the cgroup's own cpu.stat: the kernel's accounting, in seconds.
    pub fn cpu_stat_usage_seconds(&self) -> f64 {
        let stat = fs::read_to_string(self.path.join("cpu.stat")).expect("read cpu.stat");
        let usec: u64 = stat
            .lines()
            .find_map(|l| l.strip_prefix("usage_usec "))
            .expect("usage_usec in cpu.stat")
            .trim()
            .parse()
            .expect("usage_usec is a number");
        usec as f64 / 1e6
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        self.stop_all();
        // A just-killed task may still be leaving the cgroup; rmdir says EBUSY then.
        for _ in 0..50 {
            match fs::remove_dir(&self.path) {
                Ok(()) => return,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        eprintln!("warning: could not remove {}", self.path.display());
    }
}
