//! Real cgroups made (and removed) by the tests, in the cgroup v2 tree and, on hybrid
//! hosts, at the same path in the v1 hierarchies of `V1_CONTROLLERS`.
use std::{
    ffi::CString,
    fs,
    os::unix::{ffi::OsStrExt as _, process::CommandExt as _},
    path::{Path, PathBuf},
    process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

/// v1 controllers whose hierarchy gets the same path as the v2 cgroup on hybrid
/// hosts, so that workloads are counted there too. Only accounting controllers:
/// a v1 `cpu` group competes with the root's tasks as one scheduling entity, which
/// on a busy shared machine would starve CPU tests, so it is opt-in
/// (`TestCgroup::with_cpu_controller`). Not cpuset (a new v1 cpuset has no CPUs
/// until configured) and not memory (this machine's own processes are confined by
/// a v1 memory cgroup).
pub const V1_CONTROLLERS: [&str; 2] = ["cpuacct", "pids"];

/// Mount points of the v1 hierarchies holding `controllers`, by controller.
pub fn v1_mounts(controllers: &[&'static str]) -> Vec<(&'static str, PathBuf)> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").expect("read mountinfo");
    let mut out = Vec::new();
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mut fields = right.split(' ');
        if fields.next() != Some("cgroup") {
            continue;
        }
        let options = fields.nth(1).unwrap_or_default();
        let Some(mount_point) = left.split(' ').nth(4) else {
            continue;
        };
        for &controller in controllers {
            if options.split(',').any(|o| o == controller) {
                out.push((controller, PathBuf::from(mount_point)));
            }
        }
    }
    out
}

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
    /// The same cgroup in each v1 hierarchy of `V1_CONTROLLERS` (hybrid hosts), by
    /// controller; a hierarchy mounting several controllers appears once per controller.
    v1: Vec<(&'static str, PathBuf)>,
    children: Vec<Child>,
}

impl TestCgroup {
    /// A new cgroup directly under the v2 root, with a unique name.
    pub fn new(name: &str) -> Self {
        Self::create(&v2_root(), &unique_id(name), &V1_CONTROLLERS)
    }

    /// Like `new`, and also in the v1 `cpu` hierarchy (hybrid hosts) so that CFS
    /// bandwidth control (`cpu.cfs_quota_us`) applies to its workloads.
    pub fn with_cpu_controller(name: &str) -> Self {
        let mut controllers = vec!["cpu"];
        controllers.extend(V1_CONTROLLERS);
        Self::create(&v2_root(), &unique_id(name), &controllers)
    }

    /// Like `new`, and also in the v1 hierarchies of `extra` controllers (hybrid
    /// hosts), e.g. `blkio`, whose per-cgroup files then count its workloads.
    pub fn with_v1_controllers(name: &str, extra: &[&'static str]) -> Self {
        let mut controllers = extra.to_vec();
        controllers.extend(V1_CONTROLLERS);
        Self::create(&v2_root(), &unique_id(name), &controllers)
    }

    /// A child cgroup of this one, in the same hierarchies. On cgroup v2 the child
    /// gets this cgroup's memory, cpu, io and pids controllers where available: v2
    /// enables a controller for children only through the parent's
    /// `cgroup.subtree_control`.
    pub fn child(&self, name: &str) -> Self {
        let available = fs::read_to_string(self.path.join("cgroup.controllers"))
            .expect("read cgroup.controllers");
        for controller in available
            .split_whitespace()
            .filter(|c| ["memory", "cpu", "io", "pids"].contains(c))
        {
            let control = self.path.join("cgroup.subtree_control");
            fs::write(&control, format!("+{controller}"))
                .unwrap_or_else(|e| panic!("enable {controller} in {}: {e}", control.display()));
        }
        let controllers: Vec<&'static str> = self.v1.iter().map(|(c, _)| *c).collect();
        Self::create(&v2_root(), &format!("{}/{name}", self.id), &controllers)
    }

    fn create(root: &Path, id: &str, controllers: &[&'static str]) -> Self {
        let path = root.join(id.trim_start_matches('/'));
        fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        let mut v1 = Vec::new();
        for (controller, mount) in v1_mounts(controllers) {
            let dir = mount.join(id.trim_start_matches('/'));
            if !dir.exists() {
                fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
            }
            v1.push((controller, dir));
        }
        Self {
            path,
            id: id.to_owned(),
            v1,
            children: Vec::new(),
        }
    }

    /// This cgroup's directory in the v1 hierarchy of `controller`, when the host
    /// mounts one (hybrid or v1 hosts).
    pub fn v1_dir(&self, controller: &str) -> Option<&Path> {
        self.v1
            .iter()
            .find(|(c, _)| *c == controller)
            .map(|(_, dir)| dir.as_path())
    }

    /// Writes a control file: in the v1 hierarchy of `controller` when there is one,
    /// else in the v2 directory. Panics on failure.
    pub fn write_control(&self, controller: &str, file: &str, value: &str) {
        let dir = self.v1_dir(controller).unwrap_or(&self.path);
        let path = dir.join(file);
        fs::write(&path, value).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }

    /// Reads a control file, from the v1 hierarchy of `controller` when there is one,
    /// else from the v2 directory.
    pub fn read_control(&self, controller: &str, file: &str) -> String {
        let dir = self.v1_dir(controller).unwrap_or(&self.path);
        let path = dir.join(file);
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
    }

    /// Reads a file of the v2 directory.
    pub fn read_v2(&self, file: &str) -> String {
        let path = self.path.join(file);
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Starts `command` inside this cgroup (v2 and the v1 hierarchies): the child
    /// moves itself between fork and exec, so not one instruction of the workload
    /// runs elsewhere and everything it forks is born inside.
    pub fn spawn(&mut self, command: &mut Command) -> u32 {
        self.join_before_exec(command);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("spawn workload into {}: {e}", self.path.display()));
        let pid = child.id();
        self.children.push(child);
        pid
    }

    /// Runs `command` inside this cgroup (as `spawn` does) to completion, with its
    /// output captured.
    pub fn output(&self, command: &mut Command) -> std::process::Output {
        self.join_before_exec(command);
        command
            .output()
            .unwrap_or_else(|e| panic!("run workload in {}: {e}", self.path.display()))
    }

    /// Makes `command`'s child move itself into this cgroup between fork and exec.
    fn join_before_exec(&self, command: &mut Command) {
        let procs: Vec<CString> = std::iter::once(self.path.as_path())
            .chain(self.v1.iter().map(|(_, dir)| dir.as_path()))
            .map(|dir| CString::new(dir.join("cgroup.procs").as_os_str().as_bytes()).unwrap())
            .collect();
        // SAFETY: the closure runs in the forked child before exec and only calls
        // async-signal-safe functions (open, write, close) on memory allocated before
        // the fork; it allocates nothing.
        unsafe {
            command.pre_exec(move || {
                for path in &procs {
                    let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                    if fd < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    // "0" is the writing process itself.
                    let written = libc::write(fd, b"0".as_ptr().cast(), 1);
                    let error = std::io::Error::last_os_error();
                    libc::close(fd);
                    if written != 1 {
                        return Err(error);
                    }
                }
                Ok(())
            });
        }
    }

    /// Moves a running process (and all its threads) into this cgroup, in every
    /// hierarchy, e.g. a runtime daemon the test started, as its service cgroup.
    pub fn adopt(&self, pid: u32) {
        for dir in
            std::iter::once(self.path.as_path()).chain(self.v1.iter().map(|(_, d)| d.as_path()))
        {
            let procs = dir.join("cgroup.procs");
            fs::write(&procs, pid.to_string())
                .unwrap_or_else(|e| panic!("move {pid} into {}: {e}", procs.display()));
        }
    }

    /// Like `spawn`, with the workload's stdin and stdout piped to the test: a
    /// workload can report readiness on stdout and wait on stdin (a shell `read`, no
    /// extra process) until the test drops the stdin or the cgroup.
    pub fn spawn_piped(&mut self, command: &mut Command) -> (ChildStdin, ChildStdout) {
        self.spawn(command.stdin(Stdio::piped()).stdout(Stdio::piped()));
        let child = self.children.last_mut().expect("just spawned");
        (
            child.stdin.take().expect("piped stdin"),
            child.stdout.take().expect("piped stdout"),
        )
    }

    /// Waits for every process this cgroup started to exit by itself.
    pub fn wait_all(&mut self) -> Vec<ExitStatus> {
        self.children
            .drain(..)
            .map(|mut child| child.wait().expect("wait for workload"))
            .collect()
    }

    /// Waits until no process is left in this cgroup: a started shell can exit before
    /// the pipeline it forked, whose processes stay here (and are still counted, e.g.
    /// OOM-killed) until they exit too.
    pub fn wait_until_empty(&self) {
        let procs = self.path.join("cgroup.procs");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = fs::read_to_string(&procs)
                .unwrap_or_else(|e| panic!("read {}: {e}", procs.display()));
            if left.trim().is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "processes still in {} after 60 s: {}",
                self.path.display(),
                left.split_whitespace().collect::<Vec<_>>().join(" ")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops (SIGSTOP) every process this cgroup started and waits until each one is
    /// off its CPU, so that counters read next, kadvisor's and the kernel's, describe
    /// the same instant however long the reads take. `thaw_started` resumes them.
    pub fn freeze_started(&self) {
        for pid in self.started_pids() {
            // SAFETY: kill(2) on a child this cgroup started and has not reaped.
            let stopped = unsafe { libc::kill(pid as libc::pid_t, libc::SIGSTOP) };
            assert_eq!(stopped, 0, "SIGSTOP {pid}");
        }
        for pid in self.started_pids() {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            loop {
                let stat = fs::read_to_string(format!("/proc/{pid}/stat")).expect("read stat");
                // The state follows the parenthesised command name.
                let state = stat.rsplit_once(") ").map(|(_, rest)| rest.as_bytes()[0]);
                if state == Some(b'T') {
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "{pid} did not stop: {stat}"
                );
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
        // 'T' is set just before the task calls schedule(); let it leave the CPU.
        std::thread::sleep(std::time::Duration::from_millis(50));
    }

    /// Resumes (SIGCONT) the processes `freeze_started` stopped.
    pub fn thaw_started(&self) {
        for pid in self.started_pids() {
            // SAFETY: kill(2) on a child this cgroup started and has not reaped.
            let resumed = unsafe { libc::kill(pid as libc::pid_t, libc::SIGCONT) };
            assert_eq!(resumed, 0, "SIGCONT {pid}");
        }
    }

    /// PIDs of the processes this cgroup started (and has not reaped).
    pub fn started_pids(&self) -> Vec<u32> {
        self.children.iter().map(Child::id).collect()
    }

    /// `/proc/<pid>/schedstat` of the started processes, summed: (run ns, run-queue
    /// wait ns, run periods), the kernel's own per-task accounting.
    pub fn started_processes_schedstat(&self) -> (u64, u64, u64) {
        self.children.iter().fold((0, 0, 0), |acc, child| {
            let stat = fs::read_to_string(format!("/proc/{}/schedstat", child.id()))
                .expect("read schedstat of a running workload");
            let f: Vec<u64> = stat
                .split_whitespace()
                .map(|v| v.parse().unwrap())
                .collect();
            (acc.0 + f[0], acc.1 + f[1], acc.2 + f[2])
        })
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

    /// Waits until the kernel has charged this cgroup `seconds` more CPU (its own
    /// `cpu.stat`) than when called, and returns its usage then. A workload's amount of
    /// work, not a wall-clock window: how long it takes depends on what else the
    /// machine runs (two emulated guests on two cores took 3 s windows down to a few
    /// tenths of a CPU-second), what it charges does not. Fails after 120 s.
    pub fn wait_for_cpu_seconds(&self, seconds: f64) -> f64 {
        let start = self.cpu_stat_usage_seconds();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let now = self.cpu_stat_usage_seconds();
            if now - start >= seconds {
                return now;
            }
            assert!(
                Instant::now() < deadline,
                "{}: charged {:.3} s of CPU in 120 s, waiting for {seconds} s",
                self.id,
                now - start
            );
            std::thread::sleep(Duration::from_millis(50));
        }
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

/// `/kadvisor-test-<pid>-<seq>-<name>`: unique per test process and call.
fn unique_id(name: &str) -> String {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    format!(
        "/kadvisor-test-{}-{}-{name}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        self.stop_all();
        let mut dirs: Vec<&Path> = vec![&self.path];
        for (_, dir) in &self.v1 {
            if !dirs.contains(&dir.as_path()) {
                dirs.push(dir);
            }
        }
        for dir in dirs {
            remove_cgroup_dir(dir);
        }
    }
}

fn remove_cgroup_dir(dir: &Path) {
    // A just-killed task may still be leaving the cgroup; rmdir says EBUSY then.
    for _ in 0..50 {
        match fs::remove_dir(dir) {
            Ok(()) => return,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    eprintln!("warning: could not remove {}", dir.display());
}
