//! The real `kadvisor` binary, started by a test and stopped (by PID) when dropped.
use std::{
    io::{Read as _, Write as _},
    net::{TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Output, Stdio},
    sync::OnceLock,
    time::{Duration, Instant},
};

use crate::scrape::Scrape;

/// `--enable_metrics` with every group kadvisor implements, the opt-in ones
/// included (schedstat, pressure, socket traffic and its packets, crashes by signal),
/// for tests of those families.
pub const ALL_GROUPS: [&str; 2] = [
    "--enable_metrics",
    "cpu,sched,cpu_burst,memory,memory_reclaim,oom_event,pressure,process,disk,diskIO,network,socket,socket_packets,crashes,crash_signals",
];

/// Path of a freshly built `kadvisor`. Built once per test process with the same
/// cargo that runs the tests, so a test never runs a stale binary.
pub fn binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            if let Some(path) = std::env::var_os("KADVISOR_BIN") {
                return PathBuf::from(path);
            }
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
            let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
            let status = Command::new(cargo)
                .args([
                    "build",
                    "--quiet",
                    "--package",
                    "kadvisor",
                    "--bin",
                    "kadvisor",
                ])
                .current_dir(&workspace)
                .status()
                .expect("run cargo build for kadvisor");
            assert!(status.success(), "cargo build -p kadvisor failed");
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map_or_else(|| workspace.join("target"), PathBuf::from);
            target.join("debug").join("kadvisor")
        })
        .clone()
}

/// Runs `kadvisor` with `args` to completion (for flag and preflight errors).
pub fn run_to_exit(args: &[&str]) -> Output {
    Command::new(binary())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run kadvisor")
}

/// A running `kadvisor` serving on a free loopback port.
pub struct Kadvisor {
    child: Child,
    port: u16,
}

impl Kadvisor {
    pub fn start(extra_args: &[&str]) -> Self {
        Self::start_wrapped(&[], extra_args)
    }

    /// Like `start`, run through `wrapper` (a command line such as `setpriv
    /// --bounding-set=...` that then runs the binary).
    pub fn start_wrapped(wrapper: &[&str], extra_args: &[&str]) -> Self {
        crate::require_root();
        let port = free_port();
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(binary());
                c
            }
            None => Command::new(binary()),
        };
        let child = command
            .args(["--listen_ip", "127.0.0.1", "--port", &port.to_string()])
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start kadvisor");
        let mut kadvisor = Self { child, port };
        kadvisor.wait_ready();
        kadvisor
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn wait_ready(&mut self) {
        // Under emulation (the kernel matrix's TCG guests on a loaded host) loading
        // the programs and parsing BTF took longer than 30 s: the runner raises the
        // bound with KADVISOR_TEST_READY_SECONDS. A wait, not an assertion on speed.
        let seconds = std::env::var("KADVISOR_TEST_READY_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(30);
        let deadline = Instant::now() + Duration::from_secs(seconds);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("poll kadvisor") {
                panic!("kadvisor exited during start: {status}");
            }
            if get(self.port, "/readyz").is_some_and(|(status, _)| status == 200) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("kadvisor not ready within {seconds} s");
    }

    /// `GET /metrics`, parsed.
    pub fn scrape(&self) -> Scrape {
        let (status, body) = get(self.port, "/metrics").expect("scrape /metrics");
        assert_eq!(status, 200, "scrape failed: {body}");
        Scrape::parse(body)
    }

    /// Scrapes until `ready` holds, failing the test with the last body after `within`
    /// (for what kadvisor learns in the background, e.g. runtime labels).
    pub fn scrape_until(
        &self,
        within: Duration,
        what: &str,
        ready: impl Fn(&Scrape) -> bool,
    ) -> Scrape {
        let deadline = Instant::now() + within;
        loop {
            let scrape = self.scrape();
            if ready(&scrape) {
                return scrape;
            }
            assert!(
                Instant::now() < deadline,
                "{what} not within {within:?}:\n{}",
                scrape.text
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `GET path`: status and body.
    pub fn get(&self, path: &str) -> (u16, String) {
        get(self.port, path).unwrap_or_else(|| panic!("GET {path} failed"))
    }
}

impl Drop for Kadvisor {
    fn drop(&mut self) {
        crate::terminate(&mut self.child, Duration::from_secs(10));
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("find a free port")
        .port()
}

/// A minimal HTTP/1.0 GET: enough for our own server and Prometheus' API, no client
/// dependency. `path` must already be percent-encoded.
pub fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, body.to_owned()))
}

/// Resident memory of process `pid` (`VmRSS` of `/proc/<pid>/status`), in bytes.
pub fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmRSS")
        * 1024
}

/// Descriptors process `pid` holds open (entries of `/proc/<pid>/fd`).
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}
