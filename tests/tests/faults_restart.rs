//! kadvisor SIGKILLed and restarted five times while a busy workload runs, cgroups
//! churn, and workloads write to disk, send packets, crash and get OOM-killed between
//! the restarts. After each restart:
//! - every `container_*_total` counter of every row that exists before and after the
//!   restart is at least what it was before it (no counter goes backwards), except
//!   the families kadvisor counts itself since its start (`SINCE_START`) and cgroups
//!   removed around the restart (`still_there`);
//! - the counters a user graphs equal the kernel's own accounting read around the
//!   scrape: CPU (`cpu.stat`; the root row's from the root's own `cpu.stat`), block IO (`io.stat` / v1 blkio), network
//!   (`/proc/<pid>/net/dev`).
use std::{
    collections::BTreeMap,
    os::{
        fd::AsRawFd as _,
        unix::process::{CommandExt as _, ExitStatusExt as _},
    },
    process::{Command, Stdio},
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use kadvisor_tests::{
    block::{account_writes, disk_of, kernel_writes},
    cgroup::{TestCgroup, v2_root},
    kadvisor::Kadvisor,
    netns::{B_ADDRS, NetnsPair, net_dev},
    scrape::Scrape,
};

const RESTARTS: usize = 5;

/// Sends 20 datagrams of 1,000 bytes to port 9 of the address `argv[1]`. Python by
/// absolute path, where the kernel matrix's initramfs has it too.
const SEND_DATAGRAMS: &str = "import socket, sys; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); [s.sendto(b'x' * 1000, (sys.argv[1], 9)) for _ in range(20)]";

/// Families kadvisor counts in its own kernel maps since it started: no kernel file
/// holds them (crashes) or the kernel's is per-hierarchy and non-hierarchical on v1
/// (`memory.oom_control`), and the maps die with the process. After a restart they
/// count from zero again, which Prometheus's `rate()`/`increase()` read as a counter
/// reset (cAdvisor's own OOM count, parsed from /dev/kmsg since its start, does the
/// same). Checked here to count exactly what happened since the start instead.
const SINCE_START: [&str; 2] = ["container_oom_events_total", "container_crashes_total"];

type Counters = BTreeMap<(String, Vec<(String, String)>), f64>;

/// Every `container_*_total` sample but `SINCE_START`'s, by name and labels.
fn counters(scrape: &Scrape) -> Counters {
    scrape
        .samples
        .iter()
        .filter(|s| s.name.starts_with("container_") && s.name.ends_with("_total"))
        .filter(|s| !SINCE_START.contains(&s.name.as_str()))
        .map(|s| {
            let labels = s
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            ((s.name.clone(), labels), s.value)
        })
        .collect()
}

/// The series of cgroups that still exist (checked after the scrape). A cgroup removed
/// around a restart is left out of the comparison across it: the new process never
/// read its `cpu.stat`, and its removed row shows only the CPU its tasks had at the exits
/// the new process saw (`sched_process_exit`), less than the last live value the old
/// process exported (seen here with another test's short-lived cgroups: 0.0026 s →
/// 0.0018 s). Within one process a removed row never falls below what it exported.
fn still_there(counters: &Counters) -> Counters {
    let root = v2_root();
    counters
        .iter()
        .filter(|((_, labels), _)| {
            labels
                .iter()
                .find(|(k, _)| k == "id")
                .is_none_or(|(_, id)| root.join(id.trim_start_matches('/')).exists())
        })
        .map(|(k, v)| (k.clone(), *v))
        .collect()
}

/// Counters of `now` lower than the same series in `before`.
fn backwards(before: &Counters, now: &Counters) -> Vec<String> {
    now.iter()
        .filter_map(|(key, value)| {
            let old = before.get(key)?;
            (value < old).then(|| format!("{} {:?}: {old} -> {value}", key.0, key.1))
        })
        .collect()
}

/// Makes and removes small cgroups, each running a short burst of CPU, until `stop`:
/// rows appear and retire across the restarts.
fn churn(parent: &TestCgroup, stop: &AtomicBool) -> usize {
    let mut alive = std::collections::VecDeque::new();
    let mut made = 0;
    while !stop.load(Ordering::Relaxed) {
        let cg = parent.child(&format!("c{made}"));
        let status = cg
            .output(
                Command::new("sh").args(["-c", "i=0; while [ $i -lt 3000 ]; do i=$((i+1)); done"]),
            )
            .status;
        assert!(status.success(), "churn workload: {status}");
        alive.push_back(cg);
        if alive.len() > 10 {
            alive.pop_front();
        }
        made += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    made
}

/// The root's `usage_usec`, in seconds: the kernel's own root accounting (the v2
/// root's `cpu.stat`, all CPU time of the host), which the kubelet's cAdvisor reports
/// for `/` too.
fn root_cpu_seconds() -> f64 {
    let stat =
        std::fs::read_to_string(v2_root().join("cpu.stat")).expect("read the root's cpu.stat");
    let usec: f64 = stat
        .lines()
        .find_map(|l| l.strip_prefix("usage_usec ")?.trim().parse().ok())
        .expect("usage_usec in the root's cpu.stat");
    usec / 1e6
}

/// `argv` run in the network namespace `ns` (made by `ip netns add`, which pins it at
/// iproute2's `/var/run/netns`): the child joins it
/// with setns(2) between fork and exec. Not `ip netns exec`, which also remounts /sys
/// in a new mount namespace, which the kernel matrix's initramfs root may refuse.
fn in_netns(ns: &str, argv: &[&str]) -> Command {
    let netns = std::fs::File::open(format!("/var/run/netns/{ns}"))
        .unwrap_or_else(|e| panic!("open /var/run/netns/{ns}: {e}"));
    let mut command = Command::new(argv[0]);
    command.args(&argv[1..]);
    // SAFETY: the closure runs in the forked child before exec and only calls setns,
    // async-signal-safe, on a descriptor opened before the fork (and owned by the
    // closure, so open until the Command is dropped).
    unsafe {
        command.pre_exec(move || {
            if libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command
}

/// The OOM kills the kernel counted in `cg` (v1 `memory.oom_control` or v2
/// `memory.events`).
fn kernel_oom_kills(cg: &TestCgroup) -> f64 {
    let file = if cg.v1_dir("memory").is_some() {
        "memory.oom_control"
    } else {
        "memory.events"
    };
    cg.read_control("memory", file)
        .lines()
        .find_map(|l| l.strip_prefix("oom_kill ")?.trim().parse().ok())
        .unwrap_or_else(|| panic!("oom_kill in {file}"))
}

#[test]
fn counters_survive_sigkill_and_restart() {
    let mut busy = TestCgroup::new("restart-busy");
    busy.spawn_busy();
    let churn_parent = TestCgroup::new("restart-churn");
    // Block IO on the root filesystem (a block device), not tmpfs.
    let io = TestCgroup::with_v1_controllers("restart-io", &["blkio"]);
    let dir = tempfile::Builder::new()
        .prefix("kadvisor-test-restart")
        .tempdir_in("/var/tmp")
        .expect("make a temp dir under /var/tmp");
    let (disk, device) = disk_of(dir.path());
    account_writes(&io, disk);
    // Network: a process holding namespace a, in its own cgroup; datagrams from that
    // cgroup cross the veth to namespace b.
    let net = NetnsPair::new("restart");
    let mut net_cg = TestCgroup::new("restart-net");
    let holder = net_cg.spawn(&mut in_netns(&net.a, &["sleep", "600"]));
    let mut crashing = TestCgroup::new("restart-crash");
    let mut oom = TestCgroup::with_v1_controllers("restart-oom", &["memory"]);
    let limit = (32u64 << 20).to_string();
    if oom.v1_dir("memory").is_some() {
        oom.write_control("memory", "memory.limit_in_bytes", &limit);
        oom.write_control("memory", "memory.memsw.limit_in_bytes", &limit);
    } else {
        oom.write_control("memory", "memory.max", &limit);
        oom.write_control("memory", "memory.swap.max", "0");
    }

    let stop = AtomicBool::new(false);
    let mut figures = Vec::new();
    let made = std::thread::scope(|scope| {
        let churner = scope.spawn(|| churn(&churn_parent, &stop));
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut previous: Option<Counters> = None;
            for round in 0..=RESTARTS {
                let kadvisor = Kadvisor::start(&[]);
                let cpu_before = busy.cpu_stat_usage_seconds();
                let root_before = root_cpu_seconds();
                let net_before = net_dev(holder, &net.a_if);
                let scrape = kadvisor.scrape();
                let cpu_after = busy.cpu_stat_usage_seconds();
                let root_after = root_cpu_seconds();
                let net_after = net_dev(holder, &net.a_if);
                let (io_bytes, _) = kernel_writes(&io, disk);

                let cpu = scrape.value(
                    "container_cpu_usage_seconds_total",
                    &[("id", busy.id()), ("cpu", "total")],
                );
                let root = scrape.value(
                    "container_cpu_usage_seconds_total",
                    &[("id", "/"), ("cpu", "total")],
                );
                // Before the first write a v2 cgroup's io.stat has no line for the
                // disk, and kadvisor no sample (v1 blkio lists it at 0).
                let written = match scrape
                    .find(
                        "container_fs_writes_bytes_total",
                        &[("id", io.id()), ("device", &device)],
                    )
                    .as_slice()
                {
                    [] if io_bytes == 0.0 => 0.0,
                    _ => scrape.value(
                        "container_fs_writes_bytes_total",
                        &[("id", io.id()), ("device", &device)],
                    ),
                };
                let sent = scrape.value(
                    "container_network_transmit_bytes_total",
                    &[("id", net_cg.id()), ("interface", &net.a_if)],
                );
                figures.push(format!(
                    "round {round}: CPU {cpu:.3} s (cpu.stat {cpu_before:.3}..{cpu_after:.3}); \
                     root {root:.3} s (cpu.stat {root_before:.3}..{root_after:.3}); \
                     written {written} B (kernel {io_bytes}); sent {sent} B (net/dev {}..{})",
                    net_before[2], net_after[2],
                ));
                assert!(
                    cpu >= cpu_before * 0.99 && cpu <= cpu_after * 1.01,
                    "round {round}: CPU {cpu} s not within 1% of cpu.stat {cpu_before}..{cpu_after} s"
                );
                assert!(
                    // 1 µs: the file's unit; kadvisor divides ns, this test µs.
                    root >= root_before - 1e-6 && root <= root_after + 1e-6,
                    "round {round}: root CPU {root} s is not the root's cpu.stat {root_before}..{root_after} s"
                );
                assert!(
                    (written - io_bytes).abs() <= io_bytes * 0.01,
                    "round {round}: {written} bytes written, the kernel says {io_bytes}"
                );
                assert!(
                    sent >= net_before[2] && sent <= net_after[2],
                    "round {round}: {sent} bytes sent, net/dev {}..{}",
                    net_before[2],
                    net_after[2]
                );
                let now = counters(&scrape);
                if let Some(previous) = &previous {
                    let backwards = backwards(previous, &still_there(&now));
                    assert!(
                        backwards.is_empty(),
                        "round {round}: counters went backwards across a restart:\n{}",
                        backwards.join("\n")
                    );
                }

                // Work the kernel accounts while kadvisor runs, then kill it mid-run.
                let kills_before = kernel_oom_kills(&oom);
                let target = format!("of={}", dir.path().join(format!("r{round}")).display());
                let dd = io.output(Command::new("dd").args([
                    "if=/dev/zero",
                    &target,
                    "bs=1M",
                    "count=4",
                    "oflag=direct",
                    "status=none",
                ]));
                assert!(dd.status.success(), "dd: {dd:?}");
                let send = net_cg.output(&mut in_netns(
                    &net.a,
                    &[
                        "/usr/bin/python3",
                        "-c",
                        SEND_DATAGRAMS,
                        B_ADDRS[0].split('/').next().unwrap(),
                    ],
                ));
                assert!(send.status.success(), "send: {send:?}");
                crashing.spawn(
                    Command::new("/usr/bin/python3")
                        .args(["-c", "import ctypes; ctypes.string_at(0)"])
                        .stdout(Stdio::null())
                        .stderr(Stdio::null()),
                );
                assert_eq!(crashing.wait_all()[0].signal(), Some(libc::SIGSEGV));
                // One process, one thread (a pipeline or a threaded allocator can take
                // two kills, and on 6.12 kadvisor over-counts those: issue 17).
                oom.spawn(
                    Command::new("/usr/bin/python3")
                        .args(["-c", "x = b'a' * (1 << 28)"])
                        .stdout(Stdio::null())
                        .stderr(Stdio::null()),
                );
                assert_eq!(
                    oom.wait_all()[0].signal(),
                    Some(libc::SIGKILL),
                    "OOM-killed"
                );
                // The pipeline's other processes can outlive the shell (and be killed too).
                oom.wait_until_empty();
                // What Prometheus saw last before the kill.
                let last = kadvisor.scrape();
                let kills = kernel_oom_kills(&oom) - kills_before;
                let counted = |name: &str, cg: &TestCgroup| -> f64 {
                    last.find(name, &[("id", cg.id())])
                        .iter()
                        .map(|s| s.value)
                        .sum()
                };
                let (oom_seen, crashes_seen) = (
                    counted("container_oom_events_total", &oom),
                    counted("container_crashes_total", &crashing),
                );
                figures.push(format!(
                    "  before the kill: {kills} OOM kills counted by the kernel, kadvisor {oom_seen}; 1 crash, kadvisor {crashes_seen}"
                ));
                assert_eq!(oom_seen, kills, "round {round}: OOM kills since the start");
                assert_eq!(crashes_seen, 1.0, "round {round}: crashes since the start");
                let last = counters(&last);
                let regressed = backwards(&now, &last);
                assert!(
                    regressed.is_empty(),
                    "round {round}: counters went backwards while running:\n{}",
                    regressed.join("\n")
                );
                previous = Some(last);
                // SIGKILL: no shutdown path runs (the Drop's SIGTERM then finds it dead).
                // SAFETY: kill() with the PID of the kadvisor this test started.
                unsafe { libc::kill(kadvisor.pid() as libc::pid_t, libc::SIGKILL) };
                drop(kadvisor);
            }
        }));
        stop.store(true, Ordering::Relaxed);
        let made = churner.join().expect("churn thread");
        if let Err(panic) = result {
            eprintln!("{}", figures.join("\n"));
            std::panic::resume_unwind(panic);
        }
        made
    });
    eprintln!("{}\n{made} cgroups churned", figures.join("\n"));
}
