//! The cgroup tree: where cgroup v2 is mounted and which cgroup id (the inode number
//! of the cgroup's directory, as `bpf_get_current_cgroup_id()` returns it) belongs
//! to which path; which hierarchy holds each controller's files (`hierarchy`); and
//! parsers for those files (`files`).
pub mod discovery;
pub mod files;
pub mod hierarchy;
pub mod spec_files;

pub use hierarchy::{Controller, ControllerDir, Hierarchies};

/// A table keyed by cgroupfs path, looked up several times per row per scrape:
/// hashed with foldhash (seeded per process) rather than SipHash.
pub(crate) type PathMap<V> =
    std::collections::HashMap<std::ffi::OsString, V, foldhash::fast::RandomState>;
/// A set of cgroupfs paths (see `PathMap`).
pub(crate) type PathSet =
    std::collections::HashSet<std::ffi::OsString, foldhash::fast::RandomState>;
use std::{
    collections::HashMap,
    fs, io,
    os::unix::fs::{DirEntryExt as _, MetadataExt as _},
    path::{Path, PathBuf},
};

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cannot read mount table /proc/self/mountinfo")]
    MountInfo(#[source] procfs::ProcError),
    #[error("no cgroup2 filesystem is mounted (pass --cgroup_root)")]
    NoCgroup2,
    #[error("{path} is not a cgroup2 mount")]
    NotCgroup2 { path: PathBuf },
    #[error("cannot watch cgroup tree {path}")]
    Watch {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot read cgroup directory {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// cgroup2's filesystem magic (`CGROUP2_SUPER_MAGIC` in linux/magic.h).
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

/// One cgroup of the v2 tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cgroup {
    /// cgroup v2 id (inode number of the directory).
    pub id: u64,
    /// Path relative to the mount, as cAdvisor writes it in the `id` label: `/` for
    /// the root, `/kubepods/burstable/pod…` below it.
    pub path: String,
}

/// The cgroup v2 hierarchy at one mount point.
#[derive(Debug, Clone)]
pub struct CgroupTree {
    root: PathBuf,
}

impl CgroupTree {
    /// Uses `root` when given (it must be a cgroup2 mount), otherwise finds the cgroup2
    /// mount in this process's mount table.
    pub fn new(root: Option<&Path>) -> Result<Self, CgroupError> {
        let root = match root {
            Some(root) => root.to_owned(),
            None => {
                let mounts = procfs::process::Process::myself()
                    .and_then(|me| me.mountinfo())
                    .map_err(CgroupError::MountInfo)?;
                choose_v2_mount(mounts.into_iter().map(|m| (m.fs_type, m.mount_point)))
                    .ok_or(CgroupError::NoCgroup2)?
            }
        };
        if !is_cgroup2(&root)? {
            return Err(CgroupError::NotCgroup2 { path: root });
        }
        Ok(Self { root })
    }

    /// A tree rooted at any directory, without the cgroup2 check: for tests on
    /// fixture trees.
    pub fn at(root: PathBuf) -> Self {
        Self { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Every cgroup of the tree, root first. A cgroup removed while the walk runs is
    /// skipped, not an error.
    pub fn walk(&self) -> Result<Vec<Cgroup>, CgroupError> {
        let read_err = |path: &Path| {
            let path = path.to_owned();
            move |source| CgroupError::Read { path, source }
        };
        let root_id = fs::metadata(&self.root)
            .map_err(read_err(&self.root))?
            .ino();
        let mut out = vec![Cgroup {
            id: root_id,
            path: "/".to_owned(),
        }];
        let mut next = 0;
        while next < out.len() {
            let dir = self.root.join(out[next].path.trim_start_matches('/'));
            let parent = out[next].path.clone();
            next += 1;
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(read_err(&dir)(e)),
            };
            for entry in entries {
                let entry = match entry {
                    Ok(entry) => entry,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(read_err(&dir)(e)),
                };
                // d_type and d_ino come with the directory listing: no stat per cgroup.
                if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                    continue;
                };
                let path = if parent == "/" {
                    format!("/{name}")
                } else {
                    format!("{parent}/{name}")
                };
                out.push(Cgroup {
                    id: entry.ino(),
                    path,
                });
            }
        }
        Ok(out)
    }
}

/// Picks the cgroup2 mount from (filesystem type, mount point) pairs: the standard
/// location of a pure v2 host, then the hybrid layout's `unified`, then any.
pub fn choose_v2_mount(mounts: impl IntoIterator<Item = (String, PathBuf)>) -> Option<PathBuf> {
    let candidates: Vec<PathBuf> = mounts
        .into_iter()
        .filter(|(fs_type, _)| fs_type == "cgroup2")
        .map(|(_, mount_point)| mount_point)
        .collect();
    ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
        .iter()
        .find_map(|want| candidates.iter().find(|c| c.as_path() == Path::new(want)))
        .or_else(|| candidates.first())
        .cloned()
}

fn is_cgroup2(path: &Path) -> Result<bool, CgroupError> {
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| {
        CgroupError::NotCgroup2 {
            path: path.to_owned(),
        }
    })?;
    // SAFETY: statfs is plain old data; zeroed is a valid value to be overwritten.
    let mut buf: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: c_path is a valid NUL-terminated string and buf a valid out-pointer.
    if unsafe { libc::statfs(c_path.as_ptr(), &raw mut buf) } != 0 {
        return Err(CgroupError::Read {
            path: path.to_owned(),
            source: io::Error::last_os_error(),
        });
    }
    #[allow(
        clippy::useless_conversion,
        reason = "f_type is i64 on x86_64 but narrower on other architectures"
    )]
    let fs_type = i64::from(buf.f_type);
    Ok(fs_type == CGROUP2_SUPER_MAGIC)
}

/// Remembers the path of every cgroup id seen, so that counters of a cgroup removed
/// since still roll up into its ancestors (the kernel's own `cpu.stat` of a parent
/// keeps its dead children's time too). Entries are dropped once the id is neither
/// live nor present in a kernel map, so memory is bounded by the maps' size.
#[derive(Debug, Default, Clone)]
pub struct PathMemory {
    paths: HashMap<u64, String>,
    /// Removed ids whose path now belongs to a new cgroup (removed and recreated
    /// under the same name): their counters stay in the ancestors but not in the new
    /// cgroup's own row, which starts from zero like the kernel's `cpu.stat`.
    superseded: std::collections::HashSet<u64>,
    /// Ids some other kernel map holds (e.g. OOM kills), kept by `update` like
    /// `in_maps` ids; replaced by each `hold`.
    held: std::collections::HashSet<u64>,
}

impl PathMemory {
    /// Records the live tree and forgets ids that are gone from both the tree and the
    /// kernel maps (`in_maps`).
    pub fn update(&mut self, live: &[Cgroup], in_maps: impl Fn(u64) -> bool) {
        let live_ids: std::collections::HashSet<u64> = live.iter().map(|c| c.id).collect();
        self.paths
            .retain(|id, _| live_ids.contains(id) || in_maps(*id) || self.held.contains(id));
        for cgroup in live {
            self.paths
                .entry(cgroup.id)
                .or_insert_with(|| cgroup.path.clone());
        }
        let live_paths: std::collections::HashSet<&str> =
            live.iter().map(|c| c.path.as_str()).collect();
        self.superseded = self
            .paths
            .iter()
            .filter(|(id, path)| !live_ids.contains(id) && live_paths.contains(path.as_str()))
            .map(|(&id, _)| id)
            .collect();
    }

    /// Whether `id` is a removed cgroup whose path a new cgroup holds now: its
    /// counters belong to the ancestors only.
    pub fn superseded(&self, id: u64) -> bool {
        self.superseded.contains(&id)
    }

    /// Records one cgroup (live, or removed and inside its grace period).
    pub fn insert(&mut self, id: u64, path: &str) {
        self.paths.insert(id, path.to_owned());
    }

    /// Forgets a retired cgroup.
    pub fn remove(&mut self, id: u64) {
        self.paths.remove(&id);
    }

    pub fn path(&self, id: u64) -> Option<&str> {
        self.paths.get(&id).map(String::as_str)
    }

    /// Gives back capacity left by a wave of removed cgroups.
    pub fn shrink_after_removals(&mut self) {
        shrink_after_removals(&mut self.paths);
        shrink_after_removals(&mut self.superseded);
    }

    pub fn len(&self) -> usize {
        self.paths.len()
    }

    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }
}

/// The parent of a cgroup path (`/` for a top-level cgroup and for the root).
pub fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

/// Counters of cgroups retired after their grace period, folded into the nearest
/// ancestor path, by counter name. The kernel's own hierarchical counters of a parent
/// keep its dead children's share; so do ours, without keeping the children's map
/// entries. Bounded by the number of distinct parent paths.
#[derive(Debug, Default, Clone)]
pub struct RetiredTotals {
    by_path: HashMap<String, HashMap<&'static str, u64>>,
}

impl RetiredTotals {
    /// Retires the cgroup at `path`: its final `counters` and whatever its own removed
    /// descendants had folded into it move to its parent.
    pub fn retire(&mut self, path: &str, counters: &[(&'static str, u64)]) {
        let mut moved = if path == "/" {
            HashMap::new()
        } else {
            self.by_path.remove(path).unwrap_or_default()
        };
        for (name, value) in counters {
            *moved.entry(name).or_default() += value;
        }
        if moved.values().all(|v| *v == 0) {
            return;
        }
        let into = self.by_path.entry(parent(path).to_owned()).or_default();
        for (name, value) in moved {
            *into.entry(name).or_default() += value;
        }
    }

    /// Moves what is kept under `from` and below it to `to` (a recreated path's old
    /// cgroups, moved aside: see `discovery::TreeState::move_aside`).
    pub fn move_aside(&mut self, from: &str, to: &str) {
        let below = format!("{from}/");
        let keys: Vec<String> = self
            .by_path
            .keys()
            .filter(|k| k.as_str() == from || k.starts_with(&below))
            .cloned()
            .collect();
        for key in keys {
            if let Some(values) = self.by_path.remove(&key) {
                let into = self
                    .by_path
                    .entry(format!("{to}{}", &key[from.len()..]))
                    .or_default();
                for (name, value) in values {
                    *into.entry(name).or_default() += value;
                }
            }
        }
    }

    /// Credits counters of a cgroup whose path was never known to `path` itself.
    pub fn credit(&mut self, path: &str, counters: &[(&'static str, u64)]) {
        let into = self.by_path.entry(path.to_owned()).or_default();
        for (name, value) in counters {
            *into.entry(name).or_default() += value;
        }
    }

    /// (path, value) of one counter.
    pub fn of<'a>(&'a self, counter: &'a str) -> impl Iterator<Item = (&'a str, u64)> + 'a {
        self.by_path
            .iter()
            .filter_map(move |(path, values)| Some((path.as_str(), *values.get(counter)?)))
    }

    pub fn len(&self) -> usize {
        self.by_path.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_path.is_empty()
    }
}

/// Shrinks a map that holds under a quarter of its capacity (and more than a few
/// slots): a table grown for a wave of containers would otherwise keep its peak size.
/// Quarter, not half, so a table near a growth boundary does not shrink and regrow on
/// every sweep.
pub(crate) fn shrink_after_removals<C: Shrinkable>(map: &mut C) {
    if map.capacity() > 64 && map.len() < map.capacity() / 4 {
        map.shrink_to_fit();
    }
}

/// The std collections `shrink_after_removals` applies to.
pub(crate) trait Shrinkable {
    fn len(&self) -> usize;
    fn capacity(&self) -> usize;
    fn shrink_to_fit(&mut self);
}

impl<K: Eq + std::hash::Hash, V> Shrinkable for HashMap<K, V> {
    fn len(&self) -> usize {
        HashMap::len(self)
    }
    fn capacity(&self) -> usize {
        HashMap::capacity(self)
    }
    fn shrink_to_fit(&mut self) {
        HashMap::shrink_to_fit(self);
    }
}

impl<T: Eq + std::hash::Hash> Shrinkable for std::collections::HashSet<T> {
    fn len(&self) -> usize {
        std::collections::HashSet::len(self)
    }
    fn capacity(&self) -> usize {
        std::collections::HashSet::capacity(self)
    }
    fn shrink_to_fit(&mut self) {
        std::collections::HashSet::shrink_to_fit(self);
    }
}

/// The path and every ancestor of a cgroup path, nearest first: `/a/b` → `/a/b`, `/a`, `/`.
pub fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    let mut current = Some(path);
    std::iter::from_fn(move || {
        let this = current?;
        current = match this.rfind('/') {
            _ if this == "/" => None,
            Some(0) => Some("/"),
            Some(i) => Some(&this[..i]),
            None => None,
        };
        Some(this)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walk_maps_inode_numbers_to_paths() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("kubepods/burstable/pod1234/abcd")).unwrap();
        fs::create_dir_all(dir.path().join("system.slice")).unwrap();
        fs::write(dir.path().join("cpu.stat"), "usage_usec 1\n").unwrap();
        let tree = CgroupTree::at(dir.path().to_owned());

        let cgroups = tree.walk().unwrap();

        let paths: Vec<&str> = cgroups.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(paths[0], "/");
        for want in [
            "/kubepods",
            "/kubepods/burstable",
            "/kubepods/burstable/pod1234",
            "/kubepods/burstable/pod1234/abcd",
            "/system.slice",
        ] {
            assert!(paths.contains(&want), "{want} missing from {paths:?}");
        }
        assert_eq!(cgroups.len(), 6, "files must not become cgroups: {paths:?}");
        for c in &cgroups {
            let on_disk = dir.path().join(c.path.trim_start_matches('/'));
            assert_eq!(c.id, fs::metadata(on_disk).unwrap().ino(), "{}", c.path);
        }
    }

    #[test]
    fn walk_of_missing_root_names_the_path() {
        let tree = CgroupTree::at(PathBuf::from("/nonexistent/kadvisor"));
        let err = tree.walk().unwrap_err().to_string();
        assert!(err.contains("/nonexistent/kadvisor"), "{err}");
    }

    #[test]
    fn chooses_pure_v2_then_hybrid_mount() {
        let m = |t: &str, p: &str| (t.to_owned(), PathBuf::from(p));
        let hybrid = [
            m("cgroup", "/sys/fs/cgroup/cpu"),
            m("cgroup2", "/sys/fs/cgroup/unified"),
        ];
        assert_eq!(
            choose_v2_mount(hybrid),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        let pure = [m("cgroup2", "/run/other"), m("cgroup2", "/sys/fs/cgroup")];
        assert_eq!(choose_v2_mount(pure), Some(PathBuf::from("/sys/fs/cgroup")));
        assert_eq!(
            choose_v2_mount([m("cgroup2", "/host/cgroup")]),
            Some(PathBuf::from("/host/cgroup"))
        );
        assert_eq!(
            choose_v2_mount([m("cgroup", "/sys/fs/cgroup/memory")]),
            None
        );
    }

    #[test]
    fn retiring_moves_counters_up_and_keeps_them() {
        let mut retired = RetiredTotals::default();
        retired.retire("/p/c1", &[("cpu_ns", 10)]);
        retired.retire("/p/c2", &[("cpu_ns", 5)]);
        assert_eq!(retired.of("cpu_ns").collect::<Vec<_>>(), [("/p", 15)]);
        // The parent goes too: its own counter and its children's move up together.
        retired.retire("/p", &[("cpu_ns", 1)]);
        assert_eq!(retired.of("cpu_ns").collect::<Vec<_>>(), [("/", 16)]);
        assert_eq!(retired.len(), 1);
        assert_eq!(parent("/a"), "/");
        assert_eq!(parent("/a/b"), "/a");
    }

    #[test]
    fn retired_totals_of_a_recreated_path_move_aside() {
        let mut retired = RetiredTotals::default();
        // /p/c retired into /p; /p/d too, and /p/d/e into /p/d before it.
        retired.retire("/p/c", &[("cpu_ns", 10)]);
        retired.retire("/p/d/e", &[("cpu_ns", 5)]);
        retired.retire("/q/c", &[("cpu_ns", 1)]);
        retired.move_aside("/p", "/p\09");
        let mut got: Vec<_> = retired.of("cpu_ns").collect();
        got.sort_unstable();
        assert_eq!(got, [("/p\09", 10), ("/p\09/d", 5), ("/q", 1)]);
    }

    #[test]
    fn tables_shrink_after_a_wave_of_removals_only() {
        let mut map: HashMap<u64, String> = (0..1000).map(|i| (i, String::new())).collect();
        map.retain(|id, _| *id < 600);
        let grown = map.capacity();
        shrink_after_removals(&mut map);
        assert_eq!(map.capacity(), grown, "over a quarter full: kept");
        map.retain(|id, _| *id < 10);
        shrink_after_removals(&mut map);
        assert!(
            map.capacity() < 64,
            "{} slots left for 10 entries",
            map.capacity()
        );
        let mut small: HashMap<u64, ()> = HashMap::with_capacity(50);
        let before = small.capacity();
        shrink_after_removals(&mut small);
        assert_eq!(small.capacity(), before, "small tables are left alone");
    }

    #[test]
    fn ancestors_walk_to_root() {
        assert_eq!(
            ancestors("/a/b/c").collect::<Vec<_>>(),
            ["/a/b/c", "/a/b", "/a", "/"]
        );
        assert_eq!(ancestors("/").collect::<Vec<_>>(), ["/"]);
    }

    #[test]
    fn path_memory_keeps_removed_cgroups_while_mapped() {
        let c = |id, path: &str| Cgroup {
            id,
            path: path.to_owned(),
        };
        let mut memory = PathMemory::default();
        memory.update(&[c(1, "/"), c(7, "/gone"), c(8, "/also-gone")], |_| true);
        // Both removed; only id 7 still has kernel counters.
        memory.update(&[c(1, "/")], |id| id == 7);
        assert_eq!(memory.path(7), Some("/gone"));
        assert_eq!(memory.path(8), None);
        assert_eq!(memory.len(), 2);
    }
}
