//! Reading and parsing cgroupfs files, v1 and v2. A missing file is `Ok(None)`
//! (controller not enabled, kernel too old, cgroup just removed); any other failure
//! names the path.
use std::{
    ffi::{CString, OsStr},
    fs,
    io::{self, Read as _},
    os::{
        fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
        unix::{ffi::OsStrExt as _, fs::MetadataExt as _},
    },
    path::Path,
    sync::{Arc, LazyLock, Mutex},
};

use super::{CgroupError, PathMap, PathSet};

/// The file's contents, or `None` when it (or its cgroup) does not exist.
///
/// Inside a `DirScope` (a scrape) a cgroupfs file is opened once and kept open:
/// each later read is one `pread` at offset 0, which makes the kernel generate the
/// file afresh (see `HeldFiles`). Otherwise, or beyond the open-file budget: open,
/// plain `read` calls into a small buffer, close — never `fs::read_to_string`, which
/// first `statx`es the file for a size hint that cgroupfs and procfs files do not
/// have (they report 0 or 4096).
pub fn read_optional(path: &Path) -> Result<Option<String>, CgroupError> {
    match read_held(path).unwrap_or_else(|| read_small(path)) {
        Ok(text) => Ok(Some(text)),
        Err(e) if is_missing(&e) => Ok(None),
        Err(source) => Err(CgroupError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Like `read_optional`, but never holds the file open: open, read, close (relative
/// to its open directory inside a `DirScope`). For files read again only on a
/// change (`spec_files`).
pub(super) fn read_unheld(path: &Path) -> Result<Option<String>, CgroupError> {
    match read_small(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if is_missing(&e) => Ok(None),
        Err(source) => Err(CgroupError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Spec files' values of one directory (see `spec_files`), each read again only when
/// the directory changed.
pub fn read_spec_values<const N: usize>(
    dir: &Path,
    names: [&str; N],
) -> Result<[Option<Value>; N], CgroupError> {
    super::spec_files::read_specs(dir, names, |text| text.and_then(parse_value))
}

/// A spec file's value (see `spec_files`): read again only when its directory changed.
pub fn read_spec_value(path: &Path) -> Result<Option<Value>, CgroupError> {
    super::spec_files::read_spec_with(path, |text| text.and_then(parse_value))
}

/// Files read by `read_shared` in the scope `generation`.
struct Shared {
    generation: u64,
    texts: PathMap<Option<String>>,
}

static SHARED: LazyLock<Mutex<Shared>> = LazyLock::new(|| {
    Mutex::new(Shared {
        generation: 0,
        texts: PathMap::default(),
    })
});

fn shared() -> std::sync::MutexGuard<'static, Shared> {
    SHARED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A file that several families read in one scrape (the v2 `cpu.stat`: CPU usage,
/// user and system time, throttling): inside a `DirScope`, read once and served from
/// memory until the scope ends, so every family sees the same numbers.
pub fn read_shared(path: &Path) -> Result<Option<String>, CgroupError> {
    let Some(generation) = scope_generation() else {
        return read_optional(path);
    };
    {
        let shared = shared();
        if shared.generation == generation
            && let Some(text) = shared.texts.get(path.as_os_str())
        {
            return Ok(text.clone());
        }
    }
    let text = read_optional(path)?;
    let mut shared = shared();
    if shared.generation != generation {
        shared.generation = generation;
        shared.texts.clear();
    }
    shared
        .texts
        .insert(path.as_os_str().to_owned(), text.clone());
    Ok(text)
}

/// The current scope's generation while a `DirScope` is alive.
pub(super) fn scope_generation() -> Option<u64> {
    let dirs = dirs();
    (dirs.scopes > 0).then_some(dirs.generation)
}

/// ENOENT: the file or its cgroup does not exist. ENODEV: some controller files
/// exist but refuse reads when the controller is not usable in this cgroup; it is
/// also what reading a file of a removed cgroup through an open fd returns.
fn is_missing(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENODEV)
}

/// open + read until EOF + close, nothing else.
fn read_small(path: &Path) -> io::Result<String> {
    let mut file = open_file(path)?;
    let mut buf = Vec::with_capacity(512);
    loop {
        if buf.len() == buf.capacity() {
            buf.reserve(buf.capacity());
        }
        let len = buf.len();
        let spare = buf.capacity() - len;
        buf.resize(len + spare, 0);
        match file.read(&mut buf[len..]) {
            Ok(0) => {
                buf.truncate(len);
                break;
            }
            Ok(n) => buf.truncate(len + n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => buf.truncate(len),
            Err(e) => return Err(e),
        }
    }
    String::from_utf8(buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// The whole file from offset 0, in one `pread` when `hint` bytes (the last
/// length, plus room) hold it. A cgroupfs (kernfs seq_file) read returns less than
/// asked only at the end of the file, so a short read is the end: no second call.
/// The buffer is not zeroed first: the kernel writes the bytes that count.
fn pread_all(file: &fs::File, hint: usize) -> io::Result<String> {
    let mut buf: Vec<u8> = Vec::with_capacity((hint + hint / 2).max(1024));
    loop {
        let len = buf.len();
        let spare = buf.capacity() - len;
        let offset = libc::off_t::try_from(len)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "file too long"))?;
        // SAFETY: the pointer and length are `buf`'s unused capacity, which the
        // kernel may write; `file` is an open fd.
        let read = unsafe {
            libc::pread(
                file.as_raw_fd(),
                buf.as_mut_ptr().add(len).cast(),
                spare,
                offset,
            )
        };
        match usize::try_from(read) {
            Ok(n) => {
                // SAFETY: the kernel wrote `n <= spare` bytes after `len`.
                unsafe { buf.set_len(len + n) };
                if n < spare {
                    break;
                }
                buf.reserve(buf.capacity());
            }
            Err(_) => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
    String::from_utf8(buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// cgroupfs files kept open from one scrape to the next, re-read with `pread`.
///
/// Bounded: at most `budget` files (a share of RLIMIT_NOFILE, which `main` raises to
/// its hard limit); beyond it a file is opened, read and closed each time
/// (`over_budget`). A held file that answers ENODEV or ENOENT belongs to a removed
/// cgroup (maybe re-created under the same path, with a new inode): it is closed
/// and the path opened again, once. Files no scrape read in the last scope (rows
/// gone, groups disabled) are closed when it ends. Only cgroupfs files are held
/// (procfs pids come and go; elsewhere a replaced file cannot be told by its fd).
struct HeldFiles {
    files: PathMap<HeldFile>,
    budget: usize,
    /// Opens that could not be held (budget), in total.
    over_budget: u64,
    /// Held files re-opened because their cgroup was removed or re-created.
    reopened: u64,
    /// Paths read inside a scope that are not on cgroupfs: never held.
    elsewhere: PathSet,
}

struct HeldFile {
    /// Shared with a read in progress, which runs without the table's lock.
    file: Arc<Held>,
    generation: u64,
}

/// An open file and the length of its last read (the next read's buffer), updated
/// by the read without going back to the table.
struct Held {
    file: fs::File,
    len: std::sync::atomic::AtomicUsize,
}

static HELD: LazyLock<Mutex<HeldFiles>> = LazyLock::new(|| {
    Mutex::new(HeldFiles {
        files: PathMap::default(),
        budget: 0,
        over_budget: 0,
        reopened: 0,
        elsewhere: PathSet::default(),
    })
});

fn held() -> std::sync::MutexGuard<'static, HeldFiles> {
    HELD.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Whether `file` is on a cgroup v1 or v2 filesystem (one `fstatfs`, at open only).
fn on_cgroupfs(file: &fs::File) -> bool {
    // SAFETY: all-zero bytes are a valid `statfs`.
    let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `file` is an open fd and `fs` writable.
    let rc = unsafe { libc::fstatfs(file.as_raw_fd(), &raw mut fs) };
    rc == 0
        && matches!(
            fs.f_type,
            libc::CGROUP2_SUPER_MAGIC | libc::CGROUP_SUPER_MAGIC
        )
}

/// What the held files cost, for `kadvisor_cgroup_files_*`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeldStats {
    pub open: usize,
    pub budget: usize,
    pub over_budget: u64,
    pub reopened: u64,
}

pub fn held_stats() -> HeldStats {
    let files = held();
    HeldStats {
        open: files.files.len(),
        budget: files.budget,
        over_budget: files.over_budget,
        reopened: files.reopened,
    }
}

/// Reads `path` through its held file (opening and holding it first if the budget
/// allows); `None` outside a scope, for procfs, or over the budget.
fn read_held(path: &Path) -> Option<io::Result<String>> {
    let generation = {
        let dirs = dirs();
        if dirs.scopes == 0 {
            return None;
        }
        dirs.generation
    };
    let bytes = path.as_os_str().as_bytes();
    if bytes == b"/proc" || bytes.starts_with(b"/proc/") {
        return None;
    }
    let key = path.as_os_str();
    // The table's lock is not held across the read: a read stuck on a hung mount
    // stalls its own scrape only.
    let kept = held().files.get_mut(key).map(|entry| {
        entry.generation = generation;
        Arc::clone(&entry.file)
    });
    if let Some(file) = kept {
        let hint = file.len.load(std::sync::atomic::Ordering::Relaxed);
        match pread_all(&file.file, hint) {
            Ok(text) => {
                file.len
                    .store(text.len(), std::sync::atomic::Ordering::Relaxed);
                return Some(Ok(text));
            }
            Err(e) if is_missing(&e) => {
                let mut files = held();
                // Unless another scrape re-opened it meanwhile.
                if files
                    .files
                    .get(key)
                    .is_some_and(|entry| Arc::ptr_eq(&entry.file, &file))
                {
                    files.files.remove(key);
                    files.reopened += 1;
                }
            }
            Err(e) => return Some(Err(e)),
        }
    }
    let mut files = held();
    if files.files.len() >= files.budget {
        files.over_budget += 1;
        return None;
    }
    if files.elsewhere.contains(key) {
        return None;
    }
    drop(files);
    let file = match open_file(path) {
        Ok(file) => file,
        Err(e) => return Some(Err(e)),
    };
    let text = pread_all(&file, 0);
    if !on_cgroupfs(&file) {
        // Only cgroupfs tells a removed file by ENODEV; elsewhere (fixture trees,
        // /sys) a held fd would keep reading a replaced file's old inode.
        held().elsewhere.insert(key.to_owned());
        return Some(text);
    }
    if let Ok(text) = &text {
        let mut files = held();
        // Bounded even when two scrapes opened files at once.
        if files.files.len() < files.budget {
            files.files.insert(
                key.to_owned(),
                HeldFile {
                    file: Arc::new(Held {
                        file,
                        len: std::sync::atomic::AtomicUsize::new(text.len()),
                    }),
                    generation,
                },
            );
        }
    }
    Some(text)
}

/// Identity and modification time of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    pub ino: u64,
    pub mtime_sec: i64,
    pub mtime_nsec: i64,
}

/// Open directories kept between scrapes (see `DirScope`).
struct DirFds {
    fds: PathMap<DirEntry>,
    /// Directories kept open at most (a share of RLIMIT_NOFILE).
    budget: usize,
    /// Scopes alive now (parallel scrapes in tests).
    scopes: usize,
    /// Incremented by each scope: entries not used by the last one are closed.
    generation: u64,
}

struct DirEntry {
    /// `None`: the directory did not exist when last tried (in `generation`).
    /// Shared with the lookups in progress, which run without the table's lock.
    fd: Option<Arc<OwnedFd>>,
    generation: u64,
}

static DIRS: LazyLock<Mutex<DirFds>> = LazyLock::new(|| {
    Mutex::new(DirFds {
        fds: PathMap::default(),
        budget: 0,
        scopes: 0,
        generation: 0,
    })
});

fn dirs() -> std::sync::MutexGuard<'static, DirFds> {
    DIRS.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// While a scope is alive, cgroupfs files are held open (`HeldFiles`), and files are
/// opened (and stated) relative to their directory,
/// which stays open (`O_PATH`) from one scrape to the next. Opening
/// `/sys/fs/cgroup/memory/kubepods/burstable/pod…/…/memory.stat` by its full path
/// makes the kernel walk and revalidate every component, and that walk was the
/// largest single cost of a scrape: a row reads ~15 files from 5 directories.
///
/// A directory that was removed (and maybe re-created under the same path) answers
/// every lookup with ENOENT: that makes `open_file` reopen the directory by path and
/// retry once, so a stale fd never hides a live file. Directories no scrape used in
/// the last scope are closed when it ends.
pub struct DirScope(());

impl DirScope {
    pub fn enter() -> Self {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `limit` is a valid out-pointer.
        let soft = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) } == 0 {
            usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX)
        } else {
            1024
        };
        // Leave room for connections, maps and the /proc walks; held files get
        // most of the rest (directories are needed only to open files).
        let spare = soft.saturating_sub(1024);
        held().budget = spare / 10 * 9;
        let mut dirs = dirs();
        dirs.budget = spare / 10;
        dirs.scopes += 1;
        dirs.generation += 1;
        Self(())
    }
}

impl Drop for DirScope {
    fn drop(&mut self) {
        let mut dirs = dirs();
        dirs.scopes = dirs.scopes.saturating_sub(1);
        let current = dirs.generation;
        dirs.fds
            .retain(|_, entry| entry.fd.is_some() && entry.generation == current);
        if dirs.scopes == 0 {
            drop(dirs);
            super::spec_files::end_scope(current);
            shared().texts = PathMap::default();
            let mut held = held();
            let before = held.files.len();
            held.files.retain(|_, entry| entry.generation == current);
            let len = held.files.len();
            if before - len > 256 {
                // After churn: give back the table's peak size and the freed pages.
                held.files.shrink_to(len + len / 4);
                drop(held);
                crate::heap::release_free_memory();
            }
        }
    }
}

/// Runs `relative` on `path`'s open directory and file name, when a `DirScope` is
/// alive and the directory is open (or opens); `None` otherwise: the caller then
/// uses the full path. On ENOENT through a directory opened by an earlier scrape,
/// reopens it by path and retries once (the cgroup may have been re-created).
///
/// The directory table's lock is held only to look up and store handles, never
/// across `open`/`openat`/`fstatat`: a lookup stuck on a hung mount stalls its own
/// scrape only.
fn with_dir<T>(
    path: &Path,
    relative: impl Fn(&OwnedFd, &CString) -> io::Result<T>,
) -> Option<io::Result<T>> {
    let (parent, name) = (path.parent()?, path.file_name()?);
    let name = CString::new(name.as_bytes()).ok()?;
    let key = parent.as_os_str();
    let (generation, known) = {
        let mut dirs = dirs();
        if dirs.scopes == 0 {
            return None;
        }
        let generation = dirs.generation;
        let full = dirs.fds.len() >= dirs.budget;
        match dirs.fds.get_mut(key) {
            Some(entry) if entry.fd.is_some() || entry.generation == generation => {
                entry.generation = generation;
                (generation, Some(entry.fd.clone()))
            }
            _ if full => return None,
            _ => (generation, None),
        }
    };
    let stale = match known {
        // The directory does not exist (tried in this scope): so neither does the file.
        Some(None) => return Some(Err(io::ErrorKind::NotFound.into())),
        Some(Some(fd)) => {
            let result = relative(&fd, &name);
            if !matches!(&result, Err(e) if e.kind() == io::ErrorKind::NotFound) {
                return Some(result);
            }
            Some(fd)
        }
        None => None,
    };
    let fd = open_dir(key).map(Arc::new);
    {
        let mut dirs = dirs();
        let replaces = match (dirs.fds.get(key), &stale) {
            // Still the handle that failed, or nothing: store the new one.
            (Some(entry), Some(stale)) => entry.fd.as_ref().is_some_and(|f| Arc::ptr_eq(f, stale)),
            (Some(_), None) => false,
            (None, _) => true,
        };
        if replaces && (dirs.fds.contains_key(key) || dirs.fds.len() < dirs.budget) {
            dirs.fds.insert(
                key.to_owned(),
                DirEntry {
                    fd: fd.clone(),
                    generation,
                },
            );
        }
    }
    match fd {
        Some(fd) => Some(relative(&fd, &name)),
        None => Some(Err(io::ErrorKind::NotFound.into())),
    }
}

fn open_dir(dir: &OsStr) -> Option<OwnedFd> {
    let dir = CString::new(dir.as_bytes()).ok()?;
    // SAFETY: `dir` is NUL-terminated; the flags are valid for open(2).
    let fd = unsafe {
        libc::open(
            dir.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    // SAFETY: a non-negative return is a new fd that nothing else owns.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens `path` for reading, relative to its directory inside a `DirScope`.
fn open_file(path: &Path) -> io::Result<fs::File> {
    let opened = with_dir(path, |dir, name| {
        // SAFETY: `dir` is an open directory fd and `name` NUL-terminated.
        let fd = unsafe {
            libc::openat(
                dir.as_raw_fd(),
                name.as_ptr(),
                libc::O_RDONLY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            Err(io::Error::last_os_error())
        } else {
            // SAFETY: a new fd that nothing else owns.
            Ok(fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
        }
    });
    opened.unwrap_or_else(|| fs::File::open(path))
}

/// Inode and mtime of `path` (a file or directory), relative to its directory inside
/// a `DirScope`.
pub fn stat_file(path: &Path) -> io::Result<FileStamp> {
    let stated = with_dir(path, |dir, name| {
        // SAFETY: all-zero bytes are a valid `stat64`.
        let mut st: libc::stat64 = unsafe { std::mem::zeroed() };
        // SAFETY: `dir` is an open directory fd, `name` NUL-terminated, `st` writable.
        let rc = unsafe { libc::fstatat64(dir.as_raw_fd(), name.as_ptr(), &raw mut st, 0) };
        if rc == 0 {
            Ok(FileStamp {
                ino: st.st_ino,
                mtime_sec: st.st_mtime,
                mtime_nsec: st.st_mtime_nsec,
            })
        } else {
            Err(io::Error::last_os_error())
        }
    });
    stated.unwrap_or_else(|| {
        let meta = fs::metadata(path)?;
        Ok(FileStamp {
            ino: meta.ino(),
            mtime_sec: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
        })
    })
}

/// A single-value file such as `memory.max` or `pids.current`: `Some(Limit::Max)` for
/// "max" (and v1's -1 / page-counter maximum), `None` when missing or unparsable.
pub fn read_value(path: &Path) -> Result<Option<Value>, CgroupError> {
    Ok(read_optional(path)?.and_then(|text| parse_value(&text)))
}

/// A numeric cgroup value, or the "no limit" marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value {
    Number(u64),
    Max,
}

impl Value {
    /// The number, with "max" as `unlimited`.
    pub const fn or(self, unlimited: u64) -> u64 {
        match self {
            Self::Number(n) => n,
            Self::Max => unlimited,
        }
    }
}

/// Parses "max", "-1" (v1's unlimited quota) or a number.
pub fn parse_value(text: &str) -> Option<Value> {
    match text.trim() {
        "max" | "-1" => Some(Value::Max),
        t => t.parse().ok().map(Value::Number),
    }
}

/// Iterates `key value` lines (cpu.stat, memory.stat, memory.events, cpuacct.stat...),
/// the value not parsed yet: a collector wants a few of v1 `memory.stat`'s ~70 lines,
/// and parses those only (`keyed_number`).
pub fn keyed_lines(text: &str) -> impl Iterator<Item = (&str, &str)> {
    KeyedLines { rest: text }
}

/// `keyed_lines`' iterator: one pass over each line's bytes finds both its first
/// space and its end (two searches per short line cost more than the line).
struct KeyedLines<'a> {
    rest: &'a str,
}

impl<'a> Iterator for KeyedLines<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        while !self.rest.is_empty() {
            let bytes = self.rest.as_bytes();
            let mut space = None;
            let mut end = bytes.len();
            for (at, &byte) in bytes.iter().enumerate() {
                if byte == b'\n' {
                    end = at;
                    break;
                }
                if byte == b' ' && space.is_none() {
                    space = Some(at);
                }
            }
            // Both positions are of ASCII bytes, so char boundaries.
            let line = self.rest.get(..end).unwrap_or_default();
            self.rest = self.rest.get(end + 1..).unwrap_or_default();
            if let Some(space) = space {
                return Some((
                    line.get(..space).unwrap_or_default(),
                    line.get(space + 1..).unwrap_or_default(),
                ));
            }
        }
        None
    }
}

/// A flat-keyed line's value as a number; `None` when it is not one.
pub fn keyed_number(value: &str) -> Option<u64> {
    value.trim().parse().ok()
}

/// Iterates `key value` lines, skipping lines whose value is not a number.
pub fn flat_keyed(text: &str) -> impl Iterator<Item = (&str, u64)> {
    keyed_lines(text).filter_map(|(key, value)| Some((key, keyed_number(value)?)))
}

/// The value of `key` in a flat-keyed file's text.
pub fn keyed_value(text: &str, key: &str) -> Option<u64> {
    keyed_lines(text)
        .find(|&(k, _)| k == key)
        .and_then(|(_, value)| keyed_number(value))
}

/// Totals of a PSI file (`cpu.pressure`, `memory.pressure`, `io.pressure`), in µs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pressure {
    /// `some total=`: time at least one task was stalled.
    pub some_us: u64,
    /// `full total=`: time all non-idle tasks were stalled (absent for cpu before 5.13).
    pub full_us: Option<u64>,
}

pub fn parse_pressure(text: &str) -> Option<Pressure> {
    let total = |prefix: &str| {
        text.lines()
            .find(|l| l.starts_with(prefix))?
            .split(' ')
            .find_map(|field| field.strip_prefix("total="))?
            .parse::<u64>()
            .ok()
    };
    Some(Pressure {
        some_us: total("some ")?,
        full_us: total("full "),
    })
}

/// `cpu.max` (v2): the quota (`Max` when unlimited) and the period, both in µs.
pub fn parse_cpu_max(text: &str) -> Option<(Value, u64)> {
    let mut fields = text.split_whitespace();
    let quota = parse_value(fields.next()?)?;
    let period = fields.next()?.parse().ok()?;
    Some((quota, period))
}

/// v2 `cpu.weight` (1..10000) as v1 `cpu.shares`, with cAdvisor's formula (so the
/// default weight 100 reads as 2597, as the kubelet's cAdvisor reports it).
pub const fn weight_to_shares(weight: u64) -> u64 {
    2 + (weight.saturating_sub(1) * 262_142) / 9_999
}

/// The pids in a `cgroup.procs` file, in the file's order.
pub fn parse_pids(text: &str) -> impl Iterator<Item = u32> + '_ {
    text.lines().filter_map(|line| line.trim().parse().ok())
}

/// Test fixture: creates `dir` and writes each `(file name, contents)` into it.
#[cfg(test)]
pub(crate) fn write_files(dir: &Path, files: &[(&str, &str)]) {
    fs::create_dir_all(dir).unwrap();
    for (name, text) in files {
        fs::write(dir.join(name), text).unwrap();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_max() {
        assert_eq!(parse_value("max\n"), Some(Value::Max));
        assert_eq!(parse_value("-1\n"), Some(Value::Max));
        assert_eq!(parse_value("1048576\n"), Some(Value::Number(1_048_576)));
        assert_eq!(parse_value("garbage"), None);
        assert_eq!(Value::Max.or(0), 0);
    }

    #[test]
    fn keyed_lines_split_at_the_first_space_and_skip_lines_without_one() {
        let text = "anon 4096\nempty\n\nname with spaces 7\nlast 1";
        assert_eq!(
            keyed_lines(text).collect::<Vec<_>>(),
            [("anon", "4096"), ("name", "with spaces 7"), ("last", "1")]
        );
        assert_eq!(keyed_lines("").count(), 0);
        assert_eq!(keyed_lines("a 1\n").collect::<Vec<_>>(), [("a", "1")]);
    }

    #[test]
    fn flat_keyed_skips_non_numeric_lines() {
        let text = "usage_usec 120\nuser_usec 100\nweird line here\nsystem_usec 20\n";
        assert_eq!(keyed_value(text, "user_usec"), Some(100));
        assert_eq!(keyed_value(text, "system_usec"), Some(20));
        assert_eq!(keyed_value(text, "nr_periods"), None);
        assert_eq!(flat_keyed(text).count(), 3);
    }

    #[test]
    fn pressure_with_and_without_full() {
        let cpu = "some avg10=0.00 avg60=0.00 avg300=0.00 total=12345\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=678\n";
        assert_eq!(
            parse_pressure(cpu),
            Some(Pressure {
                some_us: 12345,
                full_us: Some(678)
            })
        );
        let old = "some avg10=0.00 avg60=0.00 avg300=0.00 total=5\n";
        assert_eq!(parse_pressure(old).unwrap().full_us, None);
        assert_eq!(parse_pressure(""), None);
    }

    #[test]
    fn cpu_max_with_quota_and_unlimited() {
        assert_eq!(
            parse_cpu_max("20000 100000\n"),
            Some((Value::Number(20_000), 100_000))
        );
        assert_eq!(parse_cpu_max("max 100000\n"), Some((Value::Max, 100_000)));
        assert_eq!(parse_cpu_max("max\n"), None);
        assert_eq!(parse_cpu_max(""), None);
    }

    #[test]
    fn weight_converts_like_cadvisor() {
        assert_eq!(weight_to_shares(1), 2);
        assert_eq!(weight_to_shares(100), 2597);
        assert_eq!(weight_to_shares(10_000), 262_144);
        assert_eq!(weight_to_shares(0), 2, "out of range stays defined");
    }

    #[test]
    fn pids_skip_blank_lines() {
        assert_eq!(parse_pids("12\n345\n\n").collect::<Vec<_>>(), [12, 345]);
        assert_eq!(parse_pids("").count(), 0);
    }

    #[test]
    fn a_dir_scope_reads_the_same_and_forgets_removed_dirs() {
        let dir = tempfile::tempdir().unwrap();
        write_files(&dir.path().join("a"), &[("x", "1\n"), ("y", "2\n")]);
        let x = dir.path().join("a/x");
        let plain = (read_optional(&x).unwrap(), stat_file(&x).unwrap());
        {
            let _scope = DirScope::enter();
            assert_eq!(read_optional(&x).unwrap(), plain.0);
            assert_eq!(stat_file(&x).unwrap(), plain.1);
            assert_eq!(
                read_optional(&dir.path().join("a/y")).unwrap().as_deref(),
                Some("2\n")
            );
            assert_eq!(read_optional(&dir.path().join("a/none")).unwrap(), None);
            assert_eq!(read_optional(&dir.path().join("b/none")).unwrap(), None);
            assert!(stat_file(&dir.path().join("b/none")).is_err());
        }
        // Directories stay open between scopes; a re-created one is reopened.
        fs::remove_dir_all(dir.path().join("a")).unwrap();
        write_files(&dir.path().join("a"), &[("x", "3\n")]);
        {
            let _scope = DirScope::enter();
            assert_eq!(read_optional(&x).unwrap().as_deref(), Some("3\n"));
            assert!(stat_file(&dir.path().join("a/y")).is_err());
        }
        fs::remove_dir_all(dir.path().join("a")).unwrap();
        {
            let _scope = DirScope::enter();
            assert_eq!(read_optional(&x).unwrap(), None);
            // Missing for the rest of this scope (one scrape)...
            write_files(&dir.path().join("a"), &[("x", "4\n")]);
            assert_eq!(read_optional(&x).unwrap(), None);
        }
        // ...and found by the next.
        let _scope = DirScope::enter();
        assert_eq!(read_optional(&x).unwrap().as_deref(), Some("4\n"));
    }

    #[test]
    fn reads_files_longer_than_the_first_buffer() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("memory.stat");
        let text: String = (0..500).map(|i| format!("key_{i} {i}\n")).collect();
        fs::write(&file, &text).unwrap();
        assert_eq!(
            read_optional(&file).unwrap().as_deref(),
            Some(text.as_str())
        );
    }

    #[test]
    fn missing_file_is_none_other_errors_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_optional(&dir.path().join("nope")).unwrap(), None);
        let err = read_optional(dir.path()).unwrap_err().to_string();
        assert!(err.contains(&dir.path().display().to_string()), "{err}");
    }
}
