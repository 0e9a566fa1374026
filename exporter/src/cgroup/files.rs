//! Reading and parsing cgroupfs files, v1 and v2. A missing file is `Ok(None)`
//! (controller not enabled, kernel too old, cgroup just removed); any other failure
//! names the path.
use std::{
    collections::BTreeMap,
    fs,
    io::{self, Read as _},
    path::{Path, PathBuf},
    sync::Mutex,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use super::CgroupError;

/// The file's contents, or `None` when it (or its cgroup) does not exist.
///
/// Reads with plain `read` calls into a small buffer: `fs::read_to_string` first
/// `statx`es the file for a size hint, which cgroupfs and procfs files do not have
/// (they report 0 or 4096), so that is one wasted syscall per file — tens of
/// thousands per scrape at 1000 cgroups.
pub fn read_optional(path: &Path) -> Result<Option<String>, CgroupError> {
    match read_small(path) {
        Ok(text) => Ok(Some(text)),
        // ENODEV: some controller files exist but refuse reads when the controller is
        // not usable in this cgroup.
        Err(e) if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENODEV) => {
            Ok(None)
        }
        Err(source) => Err(CgroupError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

/// open + read until EOF + close, nothing else.
fn read_small(path: &Path) -> io::Result<String> {
    let mut file = fs::File::open(path)?;
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

/// A single-value file such as `memory.max` or `pids.current`: `Some(Limit::Max)` for
/// "max" (and v1's -1 / page-counter maximum), `None` when missing or unparsable.
pub fn read_value(path: &Path) -> Result<Option<Value>, CgroupError> {
    Ok(read_optional(path)?.and_then(|text| parse_value(&text)))
}

/// Like `read_optional`, for files that change only when someone writes them (limits,
/// weights, quotas: `memory.max`, `cpu.cfs_quota_us`, `pids.max`...). Such a file is
/// re-read only when its inode or mtime changed (kernfs stamps a write's time on the
/// file), so a scrape costs one `statx` per file instead of open + read + read + close.
/// kernfs timestamps are coarse (one jiffy): a value read within a second of its
/// mtime is not trusted and is read again next time.
pub fn read_spec(path: &Path) -> Result<Option<String>, CgroupError> {
    use std::os::unix::fs::MetadataExt as _;
    let meta = match fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENODEV) => {
            return Ok(None);
        }
        Err(source) => {
            return Err(CgroupError::Read {
                path: path.to_owned(),
                source,
            });
        }
    };
    let stamp = (meta.ino(), meta.mtime(), meta.mtime_nsec());
    let now = Instant::now();
    let mut cache = SPEC_CACHE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(entry) = cache.entries.get_mut(path)
        && entry.stamp == stamp
    {
        entry.used = now;
        return Ok(Some(entry.text.clone()));
    }
    let Some(text) = read_optional(path)? else {
        cache.entries.remove(path);
        return Ok(None);
    };
    let settled = SystemTime::now()
        .duration_since(meta.modified().unwrap_or(UNIX_EPOCH))
        .is_ok_and(|age| age > SPEC_SETTLE);
    if settled {
        cache.insert(path, stamp, &text, now);
    } else {
        cache.entries.remove(path);
    }
    Ok(Some(text))
}

/// `read_value` through the spec cache (`read_spec`).
pub fn read_spec_value(path: &Path) -> Result<Option<Value>, CgroupError> {
    Ok(read_spec(path)?.and_then(|text| parse_value(&text)))
}

/// How old a file's mtime must be before its cached contents are trusted.
const SPEC_SETTLE: Duration = Duration::from_secs(1);
/// Entries not used for this long (their cgroup is gone) are dropped.
const SPEC_IDLE: Duration = Duration::from_secs(600);

static SPEC_CACHE: Mutex<SpecCache> = Mutex::new(SpecCache {
    entries: BTreeMap::new(),
    pruned_at: 0,
});

/// `read_spec`'s cache: contents by path, stamped with (inode, mtime).
struct SpecCache {
    entries: BTreeMap<PathBuf, SpecEntry>,
    /// Entry count after the last prune.
    pruned_at: usize,
}

struct SpecEntry {
    stamp: (u64, i64, i64),
    text: String,
    used: Instant,
}

impl SpecCache {
    fn insert(&mut self, path: &Path, stamp: (u64, i64, i64), text: &str, now: Instant) {
        self.entries.insert(
            path.to_owned(),
            SpecEntry {
                stamp,
                text: text.to_owned(),
                used: now,
            },
        );
        if self.entries.len() > 2 * self.pruned_at.max(1024) {
            self.entries
                .retain(|_, e| now.duration_since(e.used) < SPEC_IDLE);
            self.pruned_at = self.entries.len();
        }
    }
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
/// skipping lines whose value is not a number.
pub fn flat_keyed(text: &str) -> impl Iterator<Item = (&str, u64)> {
    text.lines().filter_map(|line| {
        let (key, value) = line.split_once(' ')?;
        Some((key, value.trim().parse().ok()?))
    })
}

/// The value of `key` in a flat-keyed file's text.
pub fn keyed_value(text: &str, key: &str) -> Option<u64> {
    flat_keyed(text).find_map(|(k, v)| (k == key).then_some(v))
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
    fn spec_cache_follows_writes_and_removal() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("memory.max");
        fs::write(&file, "100\n").unwrap();
        // Fresh mtime: read, not trusted yet.
        assert_eq!(read_spec_value(&file).unwrap(), Some(Value::Number(100)));
        let old = SystemTime::now() - Duration::from_secs(60);
        let set_mtime = |when: SystemTime| {
            fs::File::options()
                .write(true)
                .open(&file)
                .unwrap()
                .set_modified(when)
                .unwrap();
        };
        set_mtime(old);
        assert_eq!(read_spec_value(&file).unwrap(), Some(Value::Number(100)));
        // Cached now; a write moves the mtime and is seen at once.
        fs::write(&file, "max\n").unwrap();
        assert_eq!(read_spec_value(&file).unwrap(), Some(Value::Max));
        set_mtime(old - Duration::from_secs(5));
        assert_eq!(read_spec_value(&file).unwrap(), Some(Value::Max));
        fs::write(&file, "7\n").unwrap();
        set_mtime(old - Duration::from_secs(10));
        assert_eq!(read_spec_value(&file).unwrap(), Some(Value::Number(7)));
        fs::remove_file(&file).unwrap();
        assert_eq!(read_spec_value(&file).unwrap(), None);
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
