//! Spec files (limits, quotas, weights: `memory.max`, `cpu.max`, `pids.max`, v1
//! `memory.limit_in_bytes`, `cpu.cfs_quota_us`, ...) read once and kept until their
//! directory changes.
//!
//! A spec file changes only when someone writes it, and a `write(2)` to a cgroupfs
//! file raises `IN_MODIFY` on its directory's inotify watch like on any other
//! filesystem (the VFS's `fsnotify_modify`, checked on 6.18 for v1 `memory.*`,
//! `cpu.*` and v2 files). So inside a scrape (`DirScope`) a spec file's content is
//! kept per directory, under one inotify watch per directory, and read again only
//! after an event on that directory: a write to any of its files (a limit, a weight,
//! `cgroup.procs`, or the kernel's own `memory.events` / `cgroup.events`
//! notifications), a child created or removed, the directory removed (which drops
//! the watch: a cgroup re-created under the same path is a new directory and is
//! watched again). The queue is drained once per scrape, before the first spec file
//! is served, so a limit written before a scrape starts shows in that scrape. A full
//! queue (`IN_Q_OVERFLOW`) forgets every kept value.
//!
//! Bounded: one watch per directory that has spec files (fs.inotify.max_user_watches);
//! a directory whose watch cannot be added (the limit, or no inotify) is read at
//! every scrape, counted in `kadvisor_cgroup_spec_files_unwatched_total`. Files are
//! read with open/read/close (not held open: they are read again only on a change).
use std::{
    collections::HashMap,
    ffi::{CString, OsStr, OsString},
    os::{
        fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
        unix::ffi::OsStrExt as _,
    },
    path::Path,
    sync::{LazyLock, Mutex},
};

use super::{CgroupError, PathMap, PathSet, files};

/// What a watched directory's spec files read last; `None`: the file is absent.
struct WatchedDir {
    wd: i32,
    /// By file name: a directory has at most a few spec files, and a short list is
    /// searched faster than a name is hashed.
    values: Vec<(Box<str>, Option<String>)>,
    /// The last scope that read from this directory.
    generation: u64,
}

struct SpecFiles {
    /// `None` until the first spec read; `Some(None)` when inotify is unavailable.
    inotify: Option<Option<OwnedFd>>,
    dirs: PathMap<WatchedDir>,
    by_wd: HashMap<i32, OsString>,
    /// The scope whose start drained the queue.
    drained: u64,
    /// Directories found missing in that scope (removed cgroups in their grace
    /// period): not tried again until the next scope.
    missing: PathSet,
    /// Reads of directories that could not be watched.
    unwatched: u64,
}

static SPEC: LazyLock<Mutex<SpecFiles>> = LazyLock::new(|| {
    Mutex::new(SpecFiles {
        inotify: None,
        dirs: PathMap::default(),
        by_wd: HashMap::new(),
        drained: 0,
        missing: PathSet::default(),
        unwatched: 0,
    })
});

fn spec() -> std::sync::MutexGuard<'static, SpecFiles> {
    SPEC.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Directory events that may change a spec file's content, or the directory itself.
const MASK: u32 = libc::IN_MODIFY
    | libc::IN_CREATE
    | libc::IN_DELETE
    | libc::IN_MOVED_TO
    | libc::IN_DELETE_SELF
    | libc::IN_MOVE_SELF
    | libc::IN_ONLYDIR;

/// A spec file's contents (`Ok(None)` when absent): kept from an earlier read of this
/// process while its directory had no event, else read now. Outside a scrape, a plain
/// read.
pub fn read_spec(path: &Path) -> Result<Option<String>, CgroupError> {
    read_spec_with(path, |text| text.map(str::to_owned))
}

/// `parse` of a spec file's contents (see `read_spec`), without copying kept ones.
pub fn read_spec_with<T>(path: &Path, parse: impl Fn(Option<&str>) -> T) -> Result<T, CgroupError> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(OsStr::to_str)) else {
        return Ok(parse(files::read_optional(path)?.as_deref()));
    };
    let [value] = read_specs(dir, [name], parse)?;
    Ok(value)
}

/// `parse` of each spec file `names` of directory `dir` (see `read_spec`): one look-up
/// of the directory for all of them (a row has up to three per controller).
pub fn read_specs<T, const N: usize>(
    dir: &Path,
    names: [&str; N],
    parse: impl Fn(Option<&str>) -> T,
) -> Result<[T; N], CgroupError> {
    // Unwatched reads fill it in order; `finish` turns it into the values.
    let mut out: [Option<T>; N] = std::array::from_fn(|_| None);
    let finish = |out: [Option<T>; N]| out.map(|value| value.unwrap_or_else(|| parse(None)));
    let Some(generation) = files::scope_generation() else {
        for (slot, name) in out.iter_mut().zip(names) {
            *slot = Some(parse(files::read_optional(&dir.join(name))?.as_deref()));
        }
        return Ok(finish(out));
    };
    let mut spec = spec();
    if spec.drained != generation {
        spec.drained = generation;
        spec.missing.clear();
        spec.drain();
    }
    let key = dir.as_os_str();
    // A watched directory is never in `missing` (only a failed watch puts it there):
    // the common case costs one lookup.
    if let Some(entry) = spec.dirs.get_mut(key) {
        return read_kept(entry, dir, names, generation, &parse);
    }
    if spec.missing.contains(key) {
        return Ok(names.map(|_| parse(None)));
    }
    if let Err(e) = spec.watch(key, generation) {
        if e.kind() == std::io::ErrorKind::NotFound {
            // A removed cgroup (its grace period): no files, nothing to keep.
            spec.missing.insert(key.to_owned());
            return Ok(names.map(|_| parse(None)));
        }
        spec.unwatched += N as u64;
        if spec.unwatched == N as u64 {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot watch a cgroup directory: its spec files are read at every scrape (see kadvisor_cgroup_spec_reads_unwatched_total)");
        }
        drop(spec);
        for (slot, name) in out.iter_mut().zip(names) {
            *slot = Some(parse(files::read_unheld(&dir.join(name))?.as_deref()));
        }
        return Ok(finish(out));
    }
    match spec.dirs.get_mut(key) {
        Some(entry) => read_kept(entry, dir, names, generation, &parse),
        None => Ok(names.map(|_| parse(None))),
    }
}

/// `parse` of each spec file `names` of the watched directory `dir`: its kept
/// contents, or read now (and kept).
fn read_kept<T, const N: usize>(
    entry: &mut WatchedDir,
    dir: &Path,
    names: [&str; N],
    generation: u64,
    parse: &impl Fn(Option<&str>) -> T,
) -> Result<[T; N], CgroupError> {
    let mut out: [Option<T>; N] = std::array::from_fn(|_| None);
    entry.generation = generation;
    for (slot, name) in out.iter_mut().zip(names) {
        if let Some((_, kept)) = entry.values.iter().find(|(kept, _)| **kept == *name) {
            *slot = Some(parse(kept.as_deref()));
            continue;
        }
        // Watched before reading: a write after this read raises an event.
        let value = files::read_unheld(&dir.join(name))?;
        *slot = Some(parse(value.as_deref()));
        entry.values.push((name.into(), value));
    }
    Ok(out.map(|value| value.unwrap_or_else(|| parse(None))))
}

/// Reads of spec files in directories that had no watch (read at every scrape).
pub fn unwatched_reads() -> u64 {
    spec().unwatched
}

/// Directories watched now.
pub fn watched_dirs() -> usize {
    spec().dirs.len()
}

/// Called when the last scope ends: directories no scrape read in scope `current`
/// (rows gone, groups disabled) lose their watch and values.
pub(super) fn end_scope(current: u64) {
    let mut spec = spec();
    let stale: Vec<(OsString, i32)> = spec
        .dirs
        .iter()
        .filter(|(_, entry)| entry.generation != current)
        .map(|(dir, entry)| (dir.clone(), entry.wd))
        .collect();
    for (dir, wd) in stale {
        spec.dirs.remove(&dir);
        spec.by_wd.remove(&wd);
        if let Some(Some(fd)) = &spec.inotify {
            // SAFETY: an open inotify fd and one of its watch descriptors (an already
            // removed one just answers EINVAL).
            unsafe { libc::inotify_rm_watch(fd.as_raw_fd(), wd) };
        }
    }
    spec.missing = PathSet::default();
    // After churn: give back the tables' peak size.
    let len = spec.dirs.len();
    if spec.dirs.capacity() > 2 * len + 256 {
        spec.dirs.shrink_to(len + len / 4);
        spec.by_wd.shrink_to(len + len / 4);
    }
}

impl SpecFiles {
    fn fd(&mut self) -> Option<i32> {
        self.inotify
            .get_or_insert_with(|| {
                // SAFETY: inotify_init1 takes flags only and returns a new fd or -1.
                let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
                // SAFETY: a non-negative return is a new fd that nothing else owns.
                (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
            })
            .as_ref()
            .map(std::os::fd::AsRawFd::as_raw_fd)
    }

    /// Adds a watch on `dir`.
    fn watch(&mut self, dir: &OsStr, generation: u64) -> std::io::Result<()> {
        let Some(fd) = self.fd() else {
            return Err(std::io::Error::other("inotify is not available"));
        };
        let path = CString::new(dir.as_bytes())?;
        // SAFETY: `fd` is an open inotify fd, `path` NUL-terminated.
        let wd = unsafe { libc::inotify_add_watch(fd, path.as_ptr(), MASK) };
        if wd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // The same directory reached by another path (a bind mount) shares the watch.
        if let Some(other) = self.by_wd.insert(wd, dir.to_owned()) {
            self.dirs.remove(&other);
        }
        self.dirs.insert(
            dir.to_owned(),
            WatchedDir {
                wd,
                values: Vec::new(),
                generation,
            },
        );
        Ok(())
    }

    /// Reads every queued event: a directory with an event forgets its values (and
    /// its watch when the directory is gone); an overflow forgets every value.
    fn drain(&mut self) {
        let Some(fd) = self.fd() else {
            return;
        };
        let mut buf = [0_u8; 16 * 1024];
        loop {
            // SAFETY: `fd` is an open inotify fd, `buf` writable for its length.
            let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
            let Ok(n) = usize::try_from(n) else {
                // EAGAIN: the queue is empty (any other error: nothing more to read).
                return;
            };
            if n == 0 {
                return;
            }
            let mut offset = 0;
            let header = std::mem::size_of::<libc::inotify_event>();
            while offset + header <= n {
                // SAFETY: the kernel wrote whole events; `offset` is at an event
                // header, read unaligned from the byte buffer.
                let event: libc::inotify_event =
                    unsafe { std::ptr::read_unaligned(buf.as_ptr().add(offset).cast()) };
                offset += header + event.len as usize;
                self.forget(event.wd, event.mask);
            }
        }
    }

    fn forget(&mut self, wd: i32, mask: u32) {
        if mask & libc::IN_Q_OVERFLOW != 0 {
            for entry in self.dirs.values_mut() {
                entry.values.clear();
            }
            return;
        }
        let gone = mask & (libc::IN_IGNORED | libc::IN_DELETE_SELF | libc::IN_MOVE_SELF) != 0;
        let Some(dir) = (if gone {
            self.by_wd.remove(&wd)
        } else {
            self.by_wd.get(&wd).cloned()
        }) else {
            return;
        };
        if gone {
            self.dirs.remove(&dir);
        } else if let Some(entry) = self.dirs.get_mut(&dir) {
            entry.values.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::cgroup::files::{DirScope, write_files};

    // The kept values are shared by the whole process: one test drives them.
    #[test]
    fn kept_until_the_directory_changes() {
        let dir = tempfile::tempdir().unwrap();
        let cgroup = dir.path().join("c");
        write_files(
            &cgroup,
            &[("memory.max", "100\n"), ("cpu.max", "max 100000\n")],
        );
        let limit = cgroup.join("memory.max");
        let read = || read_spec(&limit).unwrap();
        let kept = || {
            spec().dirs.get(cgroup.as_os_str()).and_then(|d| {
                d.values
                    .iter()
                    .find(|(name, _)| &**name == "memory.max")
                    .map(|(_, value)| value.clone())
            })
        };
        {
            let _scope = DirScope::enter();
            assert_eq!(read().as_deref(), Some("100\n"));
            assert_eq!(
                kept(),
                Some(Some("100\n".to_owned())),
                "kept for the next scrape"
            );
            assert_eq!(read_spec(&cgroup.join("memory.none")).unwrap(), None);
            // A removed cgroup's directory: absent, tried once per scrape.
            for _ in 0..2 {
                let gone = dir.path().join("gone/memory.max");
                assert_eq!(read_spec(&gone).unwrap(), None);
            }
        }
        // Replaced behind the watch's back (a rename raises IN_MOVED_TO only on
        // the directory, which is watched too): read again.
        fs::write(dir.path().join("new"), "200\n").unwrap();
        fs::rename(dir.path().join("new"), &limit).unwrap();
        {
            let _scope = DirScope::enter();
            assert_eq!(read().as_deref(), Some("200\n"));
        }
        // A write to another file of the directory also refreshes (cpu.weight.nice
        // changes cpu.weight).
        fs::write(cgroup.join("cpu.max"), "5000 100000\n").unwrap();
        {
            let _scope = DirScope::enter();
            assert_eq!(
                read_spec(&cgroup.join("cpu.max")).unwrap().as_deref(),
                Some("5000 100000\n")
            );
            assert_eq!(read().as_deref(), Some("200\n"));
        }
        fs::write(&limit, "300\n").unwrap();
        {
            let _scope = DirScope::enter();
            assert_eq!(read().as_deref(), Some("300\n"));
        }
        // Removed and re-created under the same path: a new directory, read again.
        fs::remove_dir_all(&cgroup).unwrap();
        write_files(&cgroup, &[("memory.max", "400\n")]);
        {
            let _scope = DirScope::enter();
            assert_eq!(read().as_deref(), Some("400\n"));
        }
        // A scope that no longer reads the directory drops its watch.
        end_scope(u64::MAX);
        assert_eq!(
            spec()
                .dirs
                .keys()
                .filter(|d| Path::new(d).starts_with(dir.path()))
                .count(),
            0
        );
    }
}
