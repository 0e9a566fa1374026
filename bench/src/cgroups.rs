//! Many live cgroups at once, each holding one sleeping process, created in the cgroup
//! v2 tree and in every v1 hierarchy the way runc creates a container's cgroups.
use std::{
    fs,
    path::PathBuf,
    process::{Child, Command, Stdio},
};

pub struct Population {
    dirs: Vec<PathBuf>,
    children: Vec<Child>,
    pub name: String,
}

/// cgroup mount points: the v2 tree and the v1 controller hierarchies (not the
/// named `systemd` one).
fn hierarchies() -> Vec<PathBuf> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let mut out = Vec::new();
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mut right = right.split(' ');
        let fs_type = right.next().unwrap_or_default();
        let options = right.nth(1).unwrap_or_default();
        let mount_point = left.split(' ').nth(4).unwrap_or_default();
        let wanted = fs_type == "cgroup2" || (fs_type == "cgroup" && !options.contains("name="));
        if wanted {
            out.push(PathBuf::from(mount_point));
        }
    }
    out
}

impl Population {
    /// `count` cgroups under `/<name>/` in every hierarchy, each with a `sleep` in it.
    pub fn create(name: &str, count: usize) -> Self {
        let roots = hierarchies();
        let mut population = Self {
            dirs: Vec::new(),
            children: Vec::new(),
            name: name.to_owned(),
        };
        for root in &roots {
            let parent = root.join(name);
            fs::create_dir_all(&parent).expect("mkdir parent");
            inherit_cpuset(&parent);
            population.dirs.push(parent);
        }
        for i in 0..count {
            // Runs again (the shell's exec) after it has been moved, so every cgroup
            // has kernel counters, as a real container's does.
            let child = Command::new("sh")
                .args(["-c", "sleep 0.5; exec sleep 3600"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn sleep");
            let pid = child.id().to_string();
            population.children.push(child);
            for root in &roots {
                let dir = root.join(name).join(format!("c{i:04}"));
                fs::create_dir(&dir).expect("mkdir cgroup");
                population.dirs.push(dir.clone());
                inherit_cpuset(&dir);
                fs::write(dir.join("cgroup.procs"), &pid).expect("move into cgroup");
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(700));
        population
    }

    /// The cgroup v1/v2 directories of the population's containers (for the baseline).
    pub fn container_paths(&self) -> Vec<String> {
        let mut paths: Vec<String> = self
            .dirs
            .iter()
            .filter_map(|d| {
                let name = d.file_name()?.to_str()?;
                name.starts_with('c')
                    .then(|| format!("/{}/{name}", self.name))
            })
            .collect();
        paths.sort();
        paths.dedup();
        paths
    }
}

/// A new v1 cpuset cgroup starts with no CPUs and memory nodes, and tasks cannot
/// join it (ENOSPC) until they are set; runc copies them from the parent too.
fn inherit_cpuset(dir: &std::path::Path) {
    for file in ["cpuset.cpus", "cpuset.mems"] {
        let (Some(parent), true) = (dir.parent(), dir.join(file).exists()) else {
            continue;
        };
        let value = fs::read_to_string(parent.join(file)).expect("read parent cpuset");
        fs::write(dir.join(file), value.trim()).expect("write cpuset");
    }
}

impl Drop for Population {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Children before parents.
        for dir in self.dirs.iter().rev() {
            for _ in 0..50 {
                if fs::remove_dir(dir).is_ok() || !dir.exists() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
    }
}
