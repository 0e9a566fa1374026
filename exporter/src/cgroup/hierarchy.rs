//! Which hierarchy holds a controller's files: cgroup v2, v1, or both (hybrid).
//!
//! On a pure v2 host every controller's files sit in the cgroup's one directory. On
//! a hybrid host (systemd's "hybrid" mode; this project's dev machines) the
//! controllers are mounted as v1 hierarchies under /sys/fs/cgroup/<controller> and
//! cgroup2 at /sys/fs/cgroup/unified holds the core files (cgroup.procs, cpu.stat's
//! usage/user/system, PSI). Container runtimes create the same relative path in each
//! hierarchy, so a row's path finds its files in all of them.
use std::{
    collections::{HashMap, HashSet},
    path::{Path, PathBuf},
};

use super::{CgroupError, files::read_optional};

/// Controllers kadvisor reads, by their v1 names (`blkio` is v2's `io`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Controller {
    Cpu,
    Cpuacct,
    Memory,
    Pids,
    Blkio,
}

impl Controller {
    pub const COUNT: usize = 5;
    /// Every controller, in `as usize` order.
    pub const ALL: [Self; Self::COUNT] = [
        Self::Cpu,
        Self::Cpuacct,
        Self::Memory,
        Self::Pids,
        Self::Blkio,
    ];

    pub const fn v1_name(self) -> &'static str {
        match self {
            Self::Cpu => "cpu",
            Self::Cpuacct => "cpuacct",
            Self::Memory => "memory",
            Self::Pids => "pids",
            Self::Blkio => "blkio",
        }
    }

    /// The v2 controller providing the same data (cpuacct's data is v2's `cpu.stat`).
    pub const fn v2_name(self) -> &'static str {
        match self {
            Self::Cpu | Self::Cpuacct => "cpu",
            Self::Memory => "memory",
            Self::Pids => "pids",
            Self::Blkio => "io",
        }
    }
}

/// A controller's directory for one cgroup, and which interface its files follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControllerDir {
    V1(PathBuf),
    V2(PathBuf),
}

impl ControllerDir {
    pub fn join(&self, file: &str) -> PathBuf {
        match self {
            Self::V1(dir) | Self::V2(dir) => join(dir, file),
        }
    }
}

/// The mounted hierarchies of this host.
#[derive(Debug, Clone, Default)]
pub struct Hierarchies {
    v2: Option<PathBuf>,
    /// Each controller's hierarchy, by `Controller::index`, resolved once: asked a
    /// few times per row per scrape.
    roots: [Option<Root>; Controller::COUNT],
}

/// Where a controller's hierarchy is mounted, and which interface it follows.
#[derive(Debug, Clone)]
struct Root {
    dir: PathBuf,
    v2: bool,
}

impl Hierarchies {
    /// Reads the mount table; `v2_root` overrides the detected cgroup2 mount.
    pub fn detect(v2_root: Option<&Path>) -> Result<Self, CgroupError> {
        let mounts = procfs::process::Process::myself()
            .and_then(|me| me.mountinfo())
            .map_err(CgroupError::MountInfo)?;
        let mut v1 = HashMap::new();
        let mut v2_mounts = Vec::new();
        for mount in mounts {
            match mount.fs_type.as_str() {
                "cgroup" => {
                    for option in mount.super_options.keys() {
                        v1.entry(option.clone())
                            .or_insert_with(|| mount.mount_point.clone());
                    }
                }
                "cgroup2" => v2_mounts.push(("cgroup2".to_owned(), mount.mount_point)),
                _ => {}
            }
        }
        let v2 = v2_root
            .map(Path::to_owned)
            .or_else(|| super::choose_v2_mount(v2_mounts));
        Self::from_parts(v2, v1)
    }

    /// From known mounts: `v1` maps controller names to their mount points. The v2
    /// root's `cgroup.controllers` says which controllers v2 serves.
    pub fn from_parts(
        v2: Option<PathBuf>,
        v1: HashMap<String, PathBuf>,
    ) -> Result<Self, CgroupError> {
        let v2_controllers: HashSet<String> = match &v2 {
            Some(root) => read_optional(&root.join("cgroup.controllers"))?
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
            None => HashSet::new(),
        };
        let roots = Controller::ALL.map(|controller| match &v2 {
            Some(root) if v2_controllers.contains(controller.v2_name()) => Some(Root {
                dir: root.clone(),
                v2: true,
            }),
            _ => v1.get(controller.v1_name()).map(|mount| Root {
                dir: mount.clone(),
                v2: false,
            }),
        });
        Ok(Self { v2, roots })
    }

    /// The cgroup2 mount, if any.
    pub fn v2_root(&self) -> Option<&Path> {
        self.v2.as_deref()
    }

    /// The v2 directory of cgroup `path` (core files: cgroup.procs, cpu.stat, PSI).
    pub fn v2_dir(&self, path: &str) -> Option<PathBuf> {
        self.v2.as_ref().map(|root| join(root, path))
    }

    /// The top directory of `controller`'s hierarchy (see `controller_dir`).
    pub fn controller_root(&self, controller: Controller) -> Option<PathBuf> {
        self.controller_dir(controller, "/").map(|dir| match dir {
            ControllerDir::V1(dir) | ControllerDir::V2(dir) => dir,
        })
    }

    /// Where `controller`'s files for cgroup `path` live: v2 when the unified
    /// hierarchy has the controller, else its v1 mount, else nowhere.
    pub fn controller_dir(&self, controller: Controller, path: &str) -> Option<ControllerDir> {
        let root = self.roots[controller as usize].as_ref()?;
        let dir = join(&root.dir, path);
        Some(if root.v2 {
            ControllerDir::V2(dir)
        } else {
            ControllerDir::V1(dir)
        })
    }
}

/// `root` and the relative `path` joined, as `Path::join` does, in one allocation of
/// the final size (a scrape joins a few paths per row and file).
fn join(root: &Path, path: &str) -> PathBuf {
    let relative = path.trim_start_matches('/');
    if relative.is_empty() {
        return root.to_owned();
    }
    let root = root.as_os_str();
    let mut joined = std::ffi::OsString::with_capacity(root.len() + 1 + relative.len());
    joined.push(root);
    if !root.as_encoded_bytes().ends_with(b"/") {
        joined.push("/");
    }
    joined.push(relative);
    PathBuf::from(joined)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_controllers_are_listed_in_index_order() {
        for (index, controller) in Controller::ALL.into_iter().enumerate() {
            assert_eq!(controller as usize, index, "{controller:?}");
        }
    }

    #[test]
    fn join_is_path_join_of_the_relative_path() {
        for (root, path) in [
            ("/sys/fs/cgroup", "/kubepods/pod1"),
            ("/sys/fs/cgroup/", "kubepods"),
            ("/sys/fs/cgroup/memory", "/"),
            ("/", "/a/b"),
            ("/sys/fs/cgroup/memory/a", "memory.stat"),
        ] {
            let expected = Path::new(root).join(path.trim_start_matches('/'));
            assert_eq!(join(Path::new(root), path), expected, "{root} + {path}");
        }
    }

    fn hierarchies(v2_controllers: &str, v1: &[(&str, &str)]) -> (tempfile::TempDir, Hierarchies) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cgroup.controllers"), v2_controllers).unwrap();
        let v1 = v1
            .iter()
            .map(|(c, p)| ((*c).to_owned(), PathBuf::from(p)))
            .collect();
        let h = Hierarchies::from_parts(Some(dir.path().to_owned()), v1).unwrap();
        (dir, h)
    }

    #[test]
    fn pure_v2_serves_every_controller_from_one_directory() {
        let (dir, h) = hierarchies("cpuset cpu io memory pids\n", &[]);
        assert_eq!(
            h.controller_dir(Controller::Memory, "/kubepods/pod1"),
            Some(ControllerDir::V2(dir.path().join("kubepods/pod1")))
        );
        assert_eq!(
            h.controller_dir(Controller::Cpuacct, "/"),
            Some(ControllerDir::V2(dir.path().to_owned()))
        );
        assert_eq!(
            h.controller_dir(Controller::Blkio, "/a"),
            Some(ControllerDir::V2(dir.path().join("a")))
        );
    }

    #[test]
    fn hybrid_serves_controllers_from_v1_and_core_files_from_v2() {
        let (dir, h) = hierarchies(
            "hugetlb\n",
            &[
                ("memory", "/sys/fs/cgroup/memory"),
                ("cpu", "/sys/fs/cgroup/cpu"),
            ],
        );
        assert_eq!(
            h.controller_dir(Controller::Memory, "/kubepods/pod1"),
            Some(ControllerDir::V1(PathBuf::from(
                "/sys/fs/cgroup/memory/kubepods/pod1"
            )))
        );
        assert_eq!(h.controller_dir(Controller::Pids, "/a"), None);
        assert_eq!(h.v2_dir("/a"), Some(dir.path().join("a")));
    }
}
