//! The maintained cgroup tree: which cgroups are live and which were removed (and
//! when), kept current by inotify events on every cgroup directory instead of a walk
//! per scrape, plus a slow reconciliation walk that repairs anything an event missed
//! (queue overflow, a watch that could not be added, a rename).
//!
//! cgroupfs raises `IN_CREATE`/`IN_DELETE` with `IN_ISDIR` in the parent directory for
//! `mkdir`/`rmdir` of a child cgroup (vfs_mkdir/vfs_rmdir → fsnotify), so a new cgroup
//! is known within one event round-trip.
use std::{
    collections::{BTreeMap, HashMap},
    ffi::CString,
    io,
    os::unix::{ffi::OsStrExt as _, fs::MetadataExt as _},
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant},
};

use super::{Cgroup, CgroupError, CgroupTree, PathMemory};

/// A removed cgroup kept for the grace period.
#[derive(Debug, Clone)]
pub struct Removed {
    pub cgroup: Cgroup,
    pub at: Instant,
}

/// The tree's state. Read under [`Discovery::state`] for the duration of a scrape.
#[derive(Debug, Default)]
pub struct TreeState {
    /// Live cgroups by path (so rows come out root first, sorted).
    pub live: BTreeMap<String, u64>,
    /// Removed cgroups not yet retired, by id.
    pub removed: HashMap<u64, Removed>,
    /// id → path of every live and not-yet-retired removed cgroup. Shared with the
    /// scrape in progress (`paths_snapshot`), copied on write only while one holds it.
    paths: Arc<PathMemory>,
    /// Full walks done (startup, reconciliation, overflow).
    pub walks: u64,
    /// mkdir/rmdir events applied.
    pub events: u64,
    /// Paths added since the last [`Discovery::announce`].
    fresh: Vec<String>,
    /// A cgroup was marked removed since the last [`Discovery::announce`].
    removed_fresh: bool,
    /// Recreated paths whose old cgroups were moved aside (`move_aside`).
    moved_aside: Vec<(String, String)>,
}

/// The cgroup path a removed cgroup had, also when it was moved aside
/// (`<path>\0<id>[/rest]`, see `TreeState::move_aside`).
pub fn real_path(path: &str) -> std::borrow::Cow<'_, str> {
    match path.split_once('\0') {
        None => path.into(),
        Some((head, rest)) => {
            let rest = rest.trim_start_matches(|c: char| c.is_ascii_digit());
            format!("{head}{}", real_path(rest)).into()
        }
    }
}

impl TreeState {
    /// id → path of every live and not-yet-retired removed cgroup.
    pub fn paths(&self) -> &PathMemory {
        &self.paths
    }

    /// The same, to read after the tree's lock is released: a scrape reads cgroupfs
    /// with it while discovery goes on (the next change copies the table once).
    pub fn paths_snapshot(&self) -> Arc<PathMemory> {
        Arc::clone(&self.paths)
    }

    fn add(&mut self, cgroup: Cgroup) {
        if self.live.get(&cgroup.path) == Some(&cgroup.id) {
            return;
        }
        if let Some(old) = self.live.insert(cgroup.path.clone(), cgroup.id) {
            // Same path, new directory: the old one was removed in between.
            self.mark_removed(old, &cgroup.path, Instant::now());
        }
        self.removed.remove(&cgroup.id);
        if cgroup.path != "/" {
            self.move_aside(&cgroup);
        }
        Arc::make_mut(&mut self.paths).insert(cgroup.id, &cgroup.path);
        self.fresh.push(cgroup.path);
    }

    /// A removed cgroup whose path `new` takes again (a restarted service, a
    /// recreated test cgroup): the kernel starts the new one at zero, so the old
    /// one's counters, and those of its removed descendants, count for the ancestors
    /// above it only, never for the new cgroup or its new children. They move to
    /// `<path>\0<new id>[/rest]`, whose ancestors are the real path's ancestors;
    /// their rows are no longer exported. The retired totals kept under the old
    /// paths move with them (`take_moved_aside`).
    fn move_aside(&mut self, new: &Cgroup) {
        let below = format!("{}/", new.path);
        let old: Vec<u64> = self
            .removed
            .iter()
            .filter(|(_, r)| r.cgroup.path == new.path || r.cgroup.path.starts_with(&below))
            .map(|(id, _)| *id)
            .collect();
        if old.is_empty() {
            return;
        }
        let aside = format!("{}\0{}", new.path, new.id);
        let paths = Arc::make_mut(&mut self.paths);
        for id in old {
            if let Some(r) = self.removed.get_mut(&id) {
                r.cgroup.path = format!("{aside}{}", &r.cgroup.path[new.path.len()..]);
                paths.insert(id, &r.cgroup.path);
            }
        }
        self.moved_aside.push((new.path.clone(), aside));
    }

    /// The paths moved aside since the last call (old path, new prefix): whoever
    /// keeps counters by path (the retired totals) moves them the same way, before
    /// it reads them against this state.
    pub fn take_moved_aside(&mut self) -> Vec<(String, String)> {
        std::mem::take(&mut self.moved_aside)
    }

    fn remove_path(&mut self, path: &str, at: Instant) {
        // rmdir needs an empty directory, but events can arrive late: drop any
        // descendants still recorded too.
        let prefix = format!("{path}/");
        let gone: Vec<(String, u64)> = self
            .live
            .range(path.to_owned()..)
            // Sorted: everything starting with `path` is contiguous, but siblings
            // such as `/a-b` sort between `/a` and `/a/b`.
            .take_while(|(p, _)| p.starts_with(path))
            .filter(|(p, _)| p.as_str() == path || p.starts_with(&prefix))
            .map(|(p, id)| (p.clone(), *id))
            .collect();
        for (p, id) in gone {
            self.live.remove(&p);
            self.mark_removed(id, &p, at);
        }
    }

    fn mark_removed(&mut self, id: u64, path: &str, at: Instant) {
        self.removed_fresh = true;
        self.removed.insert(
            id,
            Removed {
                cgroup: Cgroup {
                    id,
                    path: path.to_owned(),
                },
                at,
            },
        );
    }

    /// Applies a full walk: new cgroups are added, vanished ones marked removed.
    pub fn reconcile(&mut self, walked: Vec<Cgroup>) {
        let now = Instant::now();
        let seen: HashMap<&str, u64> = walked.iter().map(|c| (c.path.as_str(), c.id)).collect();
        let vanished: Vec<(String, u64)> = self
            .live
            .iter()
            .filter(|(p, id)| seen.get(p.as_str()) != Some(id))
            .map(|(p, id)| (p.clone(), *id))
            .collect();
        for (path, id) in vanished {
            self.live.remove(&path);
            self.mark_removed(id, &path, now);
        }
        for cgroup in walked {
            self.add(cgroup);
        }
        self.walks += 1;
    }

    /// When the earliest removed cgroup's grace period is over.
    pub fn next_expiry(&self, grace: Duration) -> Option<Instant> {
        self.removed.values().map(|r| r.at + grace).min()
    }

    /// Takes the removed cgroups whose grace period is over (deepest first, so a
    /// child is retired into its parent before the parent moves on).
    pub fn take_expired(&mut self, grace: Duration, now: Instant) -> Vec<Cgroup> {
        let ids: Vec<u64> = self
            .removed
            .iter()
            .filter(|(_, r)| now.saturating_duration_since(r.at) >= grace)
            .map(|(id, _)| *id)
            .collect();
        let mut out: Vec<Cgroup> = ids
            .into_iter()
            .filter_map(|id| self.removed.remove(&id))
            .map(|r| r.cgroup)
            .collect();
        if !out.is_empty() {
            let paths = Arc::make_mut(&mut self.paths);
            for c in &out {
                paths.remove(c.id);
            }
            // After a wave of removed containers, give back what their entries took.
            super::shrink_after_removals(&mut self.removed);
            paths.shrink_after_removals();
        }
        out.sort_by_key(|c| std::cmp::Reverse(c.path.matches('/').count()));
        out
    }
}

/// Called with the path of each new cgroup (outside the tree's lock).
pub type OnNew = Box<dyn Fn(&str) + Send + Sync>;

/// The shared tree, updated by the watcher thread and read by scrapes.
#[derive(Default)]
pub struct Discovery {
    state: Mutex<TreeState>,
    on_new: Option<OnNew>,
    /// Notified when cgroups were marked removed, so a timer that retires them can
    /// sleep until the earliest grace period ends instead of ticking.
    removals: tokio::sync::Notify,
    /// The inotify side, shared by the watcher thread and [`Discovery::sync`].
    watcher: Mutex<Option<Watcher>>,
    /// Cgroup directories without an inotify watch (fs.inotify.max_user_watches
    /// reached): cgroups created below them are found by the next reconciliation
    /// walk only. Exported as `kadvisor_cgroup_dirs_unwatched`.
    unwatched: std::sync::atomic::AtomicUsize,
}

impl std::fmt::Debug for Discovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Discovery").finish_non_exhaustive()
    }
}

impl Discovery {
    /// A tree that tells `on_new` about every cgroup it learns of (e.g. to queue a
    /// runtime lookup while a short-lived container still exists).
    pub fn with_on_new(on_new: OnNew) -> Self {
        Self {
            state: Mutex::default(),
            on_new: Some(on_new),
            removals: tokio::sync::Notify::new(),
            watcher: Mutex::default(),
            unwatched: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// Hands the paths added since the last call to `on_new`, and tells
    /// [`Discovery::removals`] waiters about removals.
    fn announce(&self) {
        let (fresh, removed) = {
            let mut state = self.state();
            (
                std::mem::take(&mut state.fresh),
                std::mem::take(&mut state.removed_fresh),
            )
        };
        if removed {
            self.removals.notify_one();
        }
        if let Some(on_new) = &self.on_new {
            for path in &fresh {
                on_new(path);
            }
        }
    }

    /// Resolves after cgroups were marked removed (at once if that happened since the
    /// last wait: the notice is kept until taken).
    pub async fn removals(&self) {
        self.removals.notified().await;
    }

    /// Cgroup directories that have no inotify watch at the moment.
    pub fn unwatched_dirs(&self) -> usize {
        self.unwatched.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Publishes the watcher's count of unwatched directories, logging changes of
    /// the degraded state.
    fn set_unwatched(&self, count: usize) {
        let before = self
            .unwatched
            .swap(count, std::sync::atomic::Ordering::Relaxed);
        if before == 0 && count > 0 {
            tracing::warn!(
                unwatched = count,
                "inotify watches missing (fs.inotify.max_user_watches reached?): new cgroups below these directories appear only at the next reconciliation walk, and their CPU time is charged to their parent until then"
            );
        } else if before > 0 && count == 0 {
            tracing::info!("every cgroup directory is watched again");
        }
    }

    pub fn state(&self) -> MutexGuard<'_, TreeState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// One full walk of `tree`, applied.
    pub fn reconcile(&self, tree: &CgroupTree) -> Result<(), CgroupError> {
        let walked = tree.walk()?;
        self.state().reconcile(walked);
        self.announce();
        Ok(())
    }

    /// Starts the watcher thread: inotify on every cgroup directory of `tree`, and a
    /// reconciliation walk every `reconcile_every`. Returns once the watches are set
    /// and the first walk is applied.
    pub fn spawn_watcher(
        self: &Arc<Self>,
        tree: CgroupTree,
        reconcile_every: Duration,
    ) -> Result<(), CgroupError> {
        let mut watcher = Watcher::new(tree)?;
        watcher.reconcile(self)?;
        let fd = std::os::fd::AsRawFd::as_raw_fd(&watcher.fd);
        let root = watcher.tree.root().to_owned();
        *self.watcher.lock().unwrap_or_else(PoisonError::into_inner) = Some(watcher);
        let discovery = Arc::clone(self);
        std::thread::Builder::new()
            .name("cgroup-watch".to_owned())
            .spawn(move || discovery.watch_loop(fd, reconcile_every))
            .map_err(|source| CgroupError::Watch { path: root, source })?;
        Ok(())
    }

    /// Applies every event queued so far. A scrape calls this first, so a cgroup
    /// whose `mkdir` returned before the scrape began is always in it (the kernel
    /// queues the event inside the syscall); the watcher thread calls it when events
    /// arrive. One non-blocking read when nothing happened.
    pub fn sync(&self) {
        let mut guard = self.watcher.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(watcher) = guard.as_mut() else {
            return;
        };
        if watcher.drain(self) {
            // The queue overflowed: events were lost, walk.
            if let Err(e) = watcher.reconcile(self) {
                tracing::warn!(error = %crate::error_chain(&e), "cgroup reconciliation failed");
            }
        }
    }

    fn watch_loop(&self, fd: i32, reconcile_every: Duration) {
        let mut next_walk = Instant::now() + reconcile_every;
        loop {
            let wait = next_walk.saturating_duration_since(Instant::now());
            let mut pollfd = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            let timeout_ms = i32::try_from(wait.as_millis()).unwrap_or(i32::MAX);
            // SAFETY: one valid pollfd; the fd lives as long as `self.watcher`, which
            // is never taken out again.
            unsafe { libc::poll(&raw mut pollfd, 1, timeout_ms) };
            self.sync();
            if Instant::now() >= next_walk {
                let mut guard = self.watcher.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(watcher) = guard.as_mut()
                    && let Err(e) = watcher.reconcile(self)
                {
                    tracing::warn!(error = %crate::error_chain(&e), "cgroup reconciliation failed");
                }
                next_walk = Instant::now() + reconcile_every;
            }
        }
    }
}

/// `kadvisor_cgroup_dirs_unwatched`, read from the discovery at each gather.
pub struct UnwatchedMetric {
    discovery: Arc<Discovery>,
    gauge: prometheus::IntGauge,
}

impl UnwatchedMetric {
    pub fn new(discovery: Arc<Discovery>) -> Result<Self, prometheus::Error> {
        Ok(Self {
            discovery,
            gauge: prometheus::IntGauge::new(
                "kadvisor_cgroup_dirs_unwatched",
                "Cgroup directories without an inotify watch (fs.inotify.max_user_watches reached): cgroups created below them are found only by the next reconciliation walk.",
            )?,
        })
    }
}

impl prometheus::core::Collector for UnwatchedMetric {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        self.gauge.desc()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        self.gauge
            .set(i64::try_from(self.discovery.unwatched_dirs()).unwrap_or(i64::MAX));
        self.gauge.collect()
    }
}

/// The inotify instance and which watch descriptor is which cgroup path.
struct Watcher {
    fd: std::os::fd::OwnedFd,
    tree: CgroupTree,
    root: std::path::PathBuf,
    dirs: HashMap<i32, String>,
    /// The other way round, to end a removed directory's watch.
    wds: HashMap<String, i32>,
    /// Paths whose watch could not be added.
    unwatched: std::collections::HashSet<String>,
    buf: Vec<u8>,
}

const WATCH_MASK: u32 = libc::IN_CREATE | libc::IN_DELETE | libc::IN_ONLYDIR;

impl Watcher {
    fn new(tree: CgroupTree) -> Result<Self, CgroupError> {
        let root = tree.root().to_owned();
        // SAFETY: inotify_init1 takes flags only and returns a new fd or -1.
        let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
        if fd < 0 {
            return Err(CgroupError::Watch {
                path: root,
                source: io::Error::last_os_error(),
            });
        }
        // SAFETY: fd was just returned by inotify_init1 and is owned by nobody else.
        let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        Ok(Self {
            fd,
            tree,
            root,
            dirs: HashMap::new(),
            wds: HashMap::new(),
            unwatched: std::collections::HashSet::new(),
            buf: vec![0_u8; 64 * 1024],
        })
    }

    fn watch(&mut self, path: &str) {
        let full = self.root.join(path.trim_start_matches('/'));
        let Ok(c_path) = CString::new(full.as_os_str().as_bytes()) else {
            return;
        };
        // SAFETY: a valid fd and NUL-terminated path.
        let wd = unsafe {
            libc::inotify_add_watch(
                std::os::fd::AsRawFd::as_raw_fd(&self.fd),
                c_path.as_ptr(),
                WATCH_MASK,
            )
        };
        if wd >= 0 {
            // A path recreated while events were lost still has its old directory's
            // watch: end it, or it stays for good (below).
            if let Some(old) = self.wds.insert(path.to_owned(), wd)
                && old != wd
            {
                self.end_watch(old);
            }
            self.dirs.insert(wd, path.to_owned());
            self.unwatched.remove(path);
            return;
        }
        let error = io::Error::last_os_error();
        if error.kind() == io::ErrorKind::NotFound {
            // Removed again before we got to it.
            return;
        }
        // ENOSPC: fs.inotify.max_user_watches reached. The reconciliation walk
        // still finds what events miss, only later; it also retries the watch.
        if self.unwatched.is_empty() {
            tracing::debug!(path, error = %error, "cannot watch cgroup directory");
        }
        self.unwatched.insert(path.to_owned());
    }

    /// Ends the watch of a removed directory. cgroupfs (kernfs) keeps an inotify
    /// watch on a removed cgroup directory: it sends no `IN_DELETE_SELF` or
    /// `IN_IGNORED` (the watched inode keeps its links), so without this every
    /// cgroup ever seen kept a watch in the kernel (counted against
    /// `fs.inotify.max_user_watches`) and its path here (measured: +300 watches
    /// after 300 cgroups created and removed, ~60 B of heap per cgroup here).
    fn unwatch(&mut self, path: &str) {
        if let Some(wd) = self.wds.remove(path) {
            self.end_watch(wd);
        }
    }

    fn end_watch(&mut self, wd: i32) {
        // SAFETY: a valid inotify fd; an unknown descriptor only returns EINVAL.
        unsafe {
            libc::inotify_rm_watch(std::os::fd::AsRawFd::as_raw_fd(&self.fd), wd);
        }
        self.dirs.remove(&wd);
        super::shrink_after_removals(&mut self.dirs);
        super::shrink_after_removals(&mut self.wds);
    }

    fn reconcile(&mut self, discovery: &Discovery) -> Result<(), CgroupError> {
        let walked = self.tree.walk()?;
        // Adding a watch that exists returns the same descriptor: cheap and idempotent.
        for c in &walked {
            self.watch(&c.path);
        }
        let present: std::collections::HashSet<&str> =
            walked.iter().map(|c| c.path.as_str()).collect();
        self.unwatched.retain(|p| present.contains(p.as_str()));
        // Directories whose removal was in a lost event (queue overflow).
        let gone: Vec<String> = self
            .wds
            .keys()
            .filter(|p| !present.contains(p.as_str()))
            .cloned()
            .collect();
        for path in gone {
            self.unwatch(&path);
        }
        discovery.set_unwatched(self.unwatched.len());
        discovery.state().reconcile(walked);
        discovery.announce();
        Ok(())
    }

    /// Reads and applies every queued event; true when the queue overflowed.
    fn drain(&mut self, discovery: &Discovery) -> bool {
        let mut overflow = false;
        loop {
            // SAFETY: buf is valid for buf.len() bytes; the fd is non-blocking.
            let n = unsafe {
                libc::read(
                    std::os::fd::AsRawFd::as_raw_fd(&self.fd),
                    self.buf.as_mut_ptr().cast(),
                    self.buf.len(),
                )
            };
            let Ok(n) = usize::try_from(n) else { break };
            if n == 0 {
                break;
            }
            let events = std::mem::take(&mut self.buf);
            overflow |= self.apply(discovery, &events[..n]);
            self.buf = events;
            discovery.announce();
        }
        overflow
    }

    /// Applies one read's worth of events; true when the queue overflowed.
    fn apply(&mut self, discovery: &Discovery, events: &[u8]) -> bool {
        const HEADER: usize = std::mem::size_of::<libc::inotify_event>();
        let mut overflow = false;
        let mut offset = 0;
        while offset + HEADER <= events.len() {
            // SAFETY: the kernel writes whole events; read_unaligned copes with the
            // byte buffer's alignment.
            let event: libc::inotify_event =
                unsafe { std::ptr::read_unaligned(events[offset..].as_ptr().cast()) };
            let name_len = event.len as usize;
            let name_bytes =
                &events[offset + HEADER..(offset + HEADER + name_len).min(events.len())];
            offset += HEADER + name_len;
            if event.mask & libc::IN_Q_OVERFLOW != 0 {
                overflow = true;
                continue;
            }
            if event.mask & libc::IN_IGNORED != 0 {
                if let Some(path) = self.dirs.remove(&event.wd)
                    && self.wds.get(&path) == Some(&event.wd)
                {
                    self.wds.remove(&path);
                }
                super::shrink_after_removals(&mut self.dirs);
                super::shrink_after_removals(&mut self.wds);
                continue;
            }
            if event.mask & libc::IN_ISDIR == 0 {
                continue;
            }
            let name_end = name_bytes
                .iter()
                .position(|b| *b == 0)
                .unwrap_or(name_bytes.len());
            let Ok(name) = std::str::from_utf8(&name_bytes[..name_end]) else {
                continue;
            };
            let Some(parent) = self.dirs.get(&event.wd).cloned() else {
                continue;
            };
            let path = if parent == "/" {
                format!("/{name}")
            } else {
                format!("{parent}/{name}")
            };
            if event.mask & libc::IN_CREATE != 0 {
                self.created(discovery, &path);
            } else if event.mask & libc::IN_DELETE != 0 {
                self.unwatch(&path);
                let mut state = discovery.state();
                state.remove_path(&path, Instant::now());
                state.events += 1;
            }
        }
        overflow
    }

    /// A new directory: watch it first, then record it and whatever was created in it
    /// before the watch existed.
    ///
    /// A directory found by the walk is watched only after the walk, so one created
    /// in it between the walk and its watch would raise no event and be in no walk
    /// (seen: systemd making `kubepods-besteffort.slice`, the pod's slice in it and
    /// the sandbox's scope in that, back to back; the scope waited for the next
    /// reconciliation walk). So the walk is repeated until it finds no directory that
    /// is not watched yet (bounded: past that, the reconciliation walk finds it).
    fn created(&mut self, discovery: &Discovery, path: &str) {
        const WALKS: usize = 8;
        self.watch(path);
        let sub = CgroupTree::at(self.root.join(path.trim_start_matches('/')));
        let full_path = |c: &Cgroup| {
            if c.path == "/" {
                path.to_owned()
            } else {
                format!("{path}{}", c.path)
            }
        };
        let mut found = Vec::new();
        for _ in 0..WALKS {
            let Ok(walked) = sub.walk() else {
                return; // removed again already
            };
            found = walked;
            let mut watched_more = false;
            for c in found.iter().filter(|c| c.path != "/") {
                let full = full_path(c);
                if !self.wds.contains_key(&full) && !self.unwatched.contains(&full) {
                    self.watch(&full);
                    watched_more = true;
                }
            }
            if !watched_more {
                break;
            }
        }
        if !self.unwatched.is_empty() {
            discovery.set_unwatched(self.unwatched.len());
        }
        let Ok(meta) = std::fs::metadata(sub.root()) else {
            return;
        };
        let mut state = discovery.state();
        state.events += 1;
        for c in found {
            let id = if c.path == "/" { meta.ino() } else { c.id };
            state.add(Cgroup {
                id,
                path: full_path(&c),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cg(id: u64, path: &str) -> Cgroup {
        Cgroup {
            id,
            path: path.to_owned(),
        }
    }

    #[test]
    fn reconcile_adds_and_marks_removed_then_grace_expires_deepest_first() {
        let mut state = TreeState::default();
        state.reconcile(vec![cg(1, "/"), cg(2, "/a"), cg(3, "/a/b")]);
        assert_eq!(state.live.len(), 3);
        state.reconcile(vec![cg(1, "/")]);
        assert_eq!(state.live.len(), 1);
        assert_eq!(state.removed.len(), 2);
        assert_eq!(state.paths().path(3), Some("/a/b"), "kept during grace");
        assert!(
            state
                .take_expired(Duration::from_secs(60), Instant::now())
                .is_empty()
        );
        let later = Instant::now() + Duration::from_secs(61);
        let expired = state.take_expired(Duration::from_secs(60), later);
        assert_eq!(
            expired.iter().map(|c| c.path.as_str()).collect::<Vec<_>>(),
            ["/a/b", "/a"]
        );
        assert_eq!(state.paths().path(3), None);
        assert_eq!(state.paths().len(), 1);
    }

    #[test]
    fn late_rmdir_event_removes_descendants_but_not_siblings() {
        let mut state = TreeState::default();
        state.reconcile(vec![cg(1, "/"), cg(2, "/a"), cg(3, "/a-b"), cg(4, "/a/c")]);
        state.remove_path("/a", Instant::now());
        assert_eq!(state.live.keys().collect::<Vec<_>>(), ["/", "/a-b"]);
        assert_eq!(state.removed.len(), 2);
    }

    #[test]
    fn recreated_path_marks_the_old_directory_removed_and_shadowed() {
        let mut state = TreeState::default();
        state.reconcile(vec![cg(1, "/"), cg(2, "/a")]);
        state.add(cg(9, "/a"));
        assert_eq!(state.live["/a"], 9);
        assert!(state.removed.contains_key(&2));
        // The old one's counters roll up into /'s total, not into the new /a.
        let old = state.paths().path(2).unwrap();
        assert_eq!(
            crate::cgroup::ancestors(old).skip(1).collect::<Vec<_>>(),
            ["/"]
        );
        assert_ne!(old, "/a");
    }

    #[test]
    fn a_recreated_parent_moves_its_old_children_aside_too() {
        let mut state = TreeState::default();
        state.reconcile(vec![cg(1, "/"), cg(2, "/p"), cg(3, "/p/c"), cg(4, "/p-x")]);
        state.remove_path("/p", Instant::now());
        state.add(cg(9, "/p"));
        // The old child's counters reach the ancestors above /p, never the new /p.
        let old_child = state.paths().path(3).unwrap().to_owned();
        assert_eq!(old_child, "/p\09/c");
        assert_eq!(
            crate::cgroup::ancestors(&old_child).collect::<Vec<_>>(),
            ["/p\09/c", "/p\09", "/"]
        );
        assert_eq!(state.paths().path(2), Some("/p\09"));
        assert_eq!(state.paths().path(4), Some("/p-x"), "a sibling stays");
        assert_eq!(real_path(&old_child), "/p/c");
        assert_eq!(
            state.take_moved_aside(),
            [("/p".to_owned(), "/p\09".to_owned())]
        );
        assert!(state.take_moved_aside().is_empty());
    }

    /// A discovery whose watcher follows `root`, with no reconciliation walk due.
    fn watched(root: &std::path::Path) -> Arc<Discovery> {
        let discovery = Arc::new(Discovery::default());
        discovery
            .spawn_watcher(CgroupTree::at(root.to_owned()), Duration::from_secs(3600))
            .unwrap();
        discovery
    }

    #[test]
    fn watcher_sees_mkdir_and_rmdir_without_a_walk() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("a")).unwrap();
        let discovery = watched(dir.path());
        std::fs::create_dir_all(dir.path().join("a/b/c")).unwrap();
        // Read-your-writes: a sync right after mkdir returns sees it.
        discovery.sync();
        assert!(discovery.state().live.contains_key("/a/b/c"));
        let wait_for = |want: &dyn Fn(&TreeState) -> bool| {
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if want(&discovery.state()) {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            false
        };
        assert!(
            wait_for(&|s| s.live.contains_key("/a/b/c")),
            "{:?}",
            discovery.state().live
        );
        std::fs::remove_dir(dir.path().join("a/b/c")).unwrap();
        assert!(wait_for(&|s| !s.live.contains_key("/a/b/c")));
        let state = discovery.state();
        assert_eq!(state.walks, 1, "events, not walks, found the changes");
        assert_eq!(state.removed.len(), 1);
    }

    #[test]
    fn nested_directories_made_back_to_back_are_all_seen_without_a_walk() {
        let dir = tempfile::tempdir().unwrap();
        let discovery = watched(dir.path());
        // As systemd makes a QoS slice, a pod slice in it and a scope in that: each
        // level created while the watcher may be walking the one above.
        let leaves: Vec<String> = (0..200).map(|i| format!("/q{i}/pod/scope")).collect();
        for leaf in &leaves {
            std::fs::create_dir_all(dir.path().join(leaf.trim_start_matches('/'))).unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        let missing = || {
            let state = discovery.state();
            leaves
                .iter()
                .filter(|leaf| !state.live.contains_key(leaf.as_str()))
                .count()
        };
        while missing() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(missing(), 0, "leaves not seen by events");
        assert_eq!(discovery.state().walks, 1, "events, not walks, found them");
    }
}
