//! `--engine`: the scrape engine's cost with every row fresh
//! (`--max_housekeeping_interval 0`), for one or two kadvisor binaries in the same run
//! on the same cgroups (`KADVISOR_BIN`, and `KADVISOR_BIN_BEFORE` for a before/after
//! comparison).
//!
//! - syscalls of one scrape by kind, counted by `strace -c -f` attached to the running
//!   process (exact, not timed), at 100 and 1000 cgroups, and per row;
//! - CPU per scrape (all threads' `schedstat` run time, ns) over back-to-back scrapes:
//!   per row = the slope between 100 and 1000 cgroups, fixed cost = the intercept.
//!   Each binary is measured in `ROUNDS` rounds, the binaries taking turns on the
//!   same population, and its least CPU per scrape is kept: on this shared machine a
//!   neighbour only ever adds to a process's CPU time (cache, host contention);
//! - peak (VmHWM) and end (VmRSS) resident memory;
//! - CPU while nobody scrapes.
use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::{Report, cgroups::Population, http};

/// One kadvisor process started from a given binary.
struct Process {
    child: Child,
    port: u16,
}

impl Process {
    fn start(binary: &Path, extra: &[&str]) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
        let port = listener.local_addr().expect("address").port();
        drop(listener);
        let child = Command::new(binary)
            .args(["--listen_ip", "127.0.0.1", "--port", &port.to_string()])
            .args(["--log_level", "warn"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start kadvisor");
        let process = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(60);
        while http::try_get(port, "/readyz").is_none_or(|status| status != 200) {
            assert!(Instant::now() < deadline, "kadvisor not ready");
            std::thread::sleep(Duration::from_millis(50));
        }
        process
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn scrape(&self) -> String {
        let response = http::get(self.port, "/metrics", false);
        String::from_utf8_lossy(&response.body).into_owned()
    }

    /// Run time of every thread, in seconds (ns resolution, unlike utime/stime).
    fn cpu_seconds(&self) -> f64 {
        let mut ns = 0_u64;
        let tasks = fs::read_dir(format!("/proc/{}/task", self.pid())).expect("tasks");
        for task in tasks.flatten() {
            let text = fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
            ns += text
                .split(' ')
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
        ns as f64 / 1e9
    }

    /// (VmHWM, VmRSS) in MiB.
    fn memory(&self) -> (f64, f64) {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("status");
        let field = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<f64>().ok())
                .unwrap_or(f64::NAN)
                / 1024.0
        };
        (field("VmHWM:"), field("VmRSS:"))
    }

    /// Syscalls by name during one scrape, from `strace -c -f` attached to it.
    fn syscalls_of_one_scrape(&self) -> BTreeMap<String, u64> {
        let out = std::env::temp_dir().join(format!("kadvisor-strace-{}", self.pid()));
        let mut strace = Command::new("strace")
            .args(["-c", "-f", "-q", "-o"])
            .arg(&out)
            .args(["-p", &self.pid().to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("strace (apt-get install strace)");
        // strace attaches to every thread before it prints nothing; give it time.
        std::thread::sleep(Duration::from_millis(1500));
        self.scrape();
        std::thread::sleep(Duration::from_millis(300));
        // SAFETY: signalling a child we started.
        unsafe { libc::kill(strace.id() as i32, libc::SIGINT) };
        let _ = strace.wait();
        let text = fs::read_to_string(&out).unwrap_or_default();
        let _ = fs::remove_file(&out);
        parse_strace_summary(&text)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `strace -c` table: `% time seconds usecs/call calls errors syscall`.
fn parse_strace_summary(text: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 5 || fields[0].starts_with('-') || fields[0] == "%" {
            continue;
        }
        let name = fields[fields.len() - 1];
        if name == "total" {
            continue;
        }
        if let Ok(calls) = fields[3].parse::<u64>() {
            out.insert(name.to_owned(), calls);
        }
    }
    out
}

/// One binary at one population size.
struct Point {
    rows: f64,
    syscalls: BTreeMap<String, u64>,
    cpu_per_scrape: f64,
    peak: f64,
    end: f64,
}

fn rows_of(body: &str) -> f64 {
    body.lines()
        .find_map(|l| l.strip_prefix("kadvisor_rows{state=\"live\"} "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

fn measure(binary: &Path, scrapes: usize, max_age: &str) -> Point {
    let process = Process::start(binary, &["--max_housekeeping_interval", max_age]);
    for _ in 0..3 {
        process.scrape();
    }
    let syscalls = process.syscalls_of_one_scrape();
    let before = process.cpu_seconds();
    for _ in 0..scrapes {
        process.scrape();
    }
    let cpu_per_scrape = (process.cpu_seconds() - before) / scrapes as f64;
    let rows = rows_of(&process.scrape());
    let (peak, end) = process.memory();
    Point {
        rows,
        syscalls,
        cpu_per_scrape,
        peak,
        end,
    }
}

fn idle_cpu_per_minute(binary: &Path, seconds: u64) -> f64 {
    let process = Process::start(binary, &[]);
    // Start-up work (first discovery, runtime probes) is over after a few seconds.
    std::thread::sleep(Duration::from_secs(5));
    let before = process.cpu_seconds();
    std::thread::sleep(Duration::from_secs(seconds));
    (process.cpu_seconds() - before) * 60.0 / seconds as f64
}

/// Rounds per binary and population size (see the module's comment).
const ROUNDS: usize = 3;

/// Syscall kinds in the order a reader looks for them; the rest are summed as "other".
const KINDS: [&str; 9] = [
    "pread64",
    "read",
    "openat",
    "close",
    "newfstatat",
    "statx",
    "readlinkat",
    "getdents64",
    "prlimit64",
];

fn by_kind(syscalls: &BTreeMap<String, u64>, rows: f64) -> String {
    let total: u64 = syscalls.values().sum();
    let mut parts = vec![format!("{:.1} total", total as f64 / rows)];
    for kind in KINDS {
        if let Some(calls) = syscalls.get(kind) {
            parts.push(format!("{kind} {:.2}", *calls as f64 / rows));
        }
    }
    let other: u64 = syscalls
        .iter()
        .filter(|(k, _)| !KINDS.contains(&k.as_str()))
        .map(|(_, v)| v)
        .sum();
    parts.push(format!("other {:.2}", other as f64 / rows));
    parts.join(", ")
}

pub fn engine(report: &mut Report, scrapes: usize, idle_seconds: u64) {
    let mut binaries: Vec<(&str, PathBuf)> = Vec::new();
    if let Some(before) = std::env::var_os("KADVISOR_BIN_BEFORE") {
        binaries.push(("before", PathBuf::from(before)));
    }
    binaries.push((
        "after",
        PathBuf::from(std::env::var_os("KADVISOR_BIN").expect("KADVISOR_BIN")),
    ));
    let mut points: BTreeMap<(&str, usize), Point> = BTreeMap::new();
    for count in [100, 1000] {
        let population = Population::create(&format!("kadvisor-engine-{count}"), count);
        for _round in 0..ROUNDS {
            for (label, binary) in &binaries {
                let point = measure(binary, scrapes, "0");
                match points.get_mut(&(*label, count)) {
                    Some(kept) => {
                        kept.cpu_per_scrape = kept.cpu_per_scrape.min(point.cpu_per_scrape)
                    }
                    None => {
                        points.insert((label, count), point);
                    }
                }
            }
        }
        // The idle-row cache: the same idle population, rows served from their last
        // read (back-to-back scrapes, all inside the 15 s maximum age).
        let cached = measure(&binaries[binaries.len() - 1].1, scrapes, "15s");
        let fresh = &points[&("after", count)];
        report.add(
            format!("after, {count} cgroups: CPU per scrape, idle-row cache on (15 s) vs every row fresh"),
            format!(
                "{:.2} ms vs {:.2} ms (syscalls {} vs {})",
                cached.cpu_per_scrape * 1e3,
                fresh.cpu_per_scrape * 1e3,
                cached.syscalls.values().sum::<u64>(),
                fresh.syscalls.values().sum::<u64>()
            ),
        );
        drop(population);
    }
    for (label, _) in &binaries {
        let small = &points[&(*label, 100)];
        let large = &points[&(*label, 1000)];
        for (count, point) in [(100, small), (1000, large)] {
            let total: u64 = point.syscalls.values().sum();
            report.add(
                format!(
                    "{label}, {count} cgroups: syscalls of one scrape ({:.0} rows)",
                    point.rows
                ),
                format!("{total}"),
            );
            report.add(
                format!("{label}, {count} cgroups: syscalls per row by kind"),
                by_kind(&point.syscalls, point.rows),
            );
        }
        let per_row_syscalls = (large.syscalls.values().sum::<u64>() as f64
            - small.syscalls.values().sum::<u64>() as f64)
            / (large.rows - small.rows);
        let per_row_cpu = (large.cpu_per_scrape - small.cpu_per_scrape) / (large.rows - small.rows);
        let fixed = small.cpu_per_scrape - per_row_cpu * small.rows;
        if *label == "after" {
            report.check(
                format!("{label}: syscalls per row (slope 100 → 1000 cgroups)"),
                per_row_syscalls,
                "",
                12.0,
            );
            report.check(
                format!("{label}: CPU per row, every row fresh"),
                per_row_cpu * 1e6,
                "µs",
                40.0,
            );
            report.check(
                format!("{label}: fixed CPU per scrape"),
                fixed * 1e3,
                "ms",
                2.0,
            );
            report.check(
                format!("{label}, 100 cgroups: CPU per scrape"),
                small.cpu_per_scrape * 1e3,
                "ms",
                6.0,
            );
            report.check(
                format!("{label}, 1000 cgroups: peak RSS (VmHWM)"),
                large.peak,
                "MiB",
                32.0,
            );
        } else {
            report.add(
                format!("{label}: syscalls per row (slope 100 → 1000 cgroups)"),
                format!("{per_row_syscalls:.1}"),
            );
            report.add(
                format!("{label}: CPU per row / fixed CPU per scrape"),
                format!("{:.1} µs / {:.2} ms", per_row_cpu * 1e6, fixed * 1e3),
            );
        }
        for (count, point) in [(100, small), (1000, large)] {
            report.add(
                format!("{label}, {count} cgroups: CPU per scrape; RSS peak / end"),
                format!(
                    "{:.2} ms; {:.1} / {:.1} MiB",
                    point.cpu_per_scrape * 1e3,
                    point.peak,
                    point.end
                ),
            );
        }
    }
    for (label, binary) in &binaries {
        let idle = idle_cpu_per_minute(binary, idle_seconds);
        if *label == "after" {
            report.check(
                format!("{label}: CPU while nobody scrapes ({idle_seconds} s)"),
                idle,
                "CPU-s/min",
                0.01,
            );
        } else {
            report.add(
                format!("{label}: CPU while nobody scrapes ({idle_seconds} s)"),
                format!("{idle:.4} CPU-s/min"),
            );
        }
    }
}
