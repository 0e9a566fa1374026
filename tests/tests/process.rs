//! Process families (processes, threads, fds, sockets, ulimits) from the kernel's
//! scrape-time task pass, for a workload with known counts (100 files and 20 sockets
//! per process), checked against /proc and the pids controller.
use std::{
    fs,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use kadvisor_tests::{cgroup::TestCgroup, kadvisor::Kadvisor};

const FILES: usize = 100;
const SOCKETS: usize = 20;
const THREADS: usize = 4;
const NOFILE: u64 = 777;

/// A Python process that first closes every inherited descriptor beyond stdio
/// (cargo's jobserver pipes), then holds `FILES` extra files, `SOCKETS` sockets, `THREADS` extra
/// threads and a soft RLIMIT_NOFILE of `NOFILE`, then idle.
fn workload() -> Command {
    let script = format!(
        "import os, resource, socket, threading, time\n\
         os.closerange(3, 65536)\n\
         resource.setrlimit(resource.RLIMIT_NOFILE, ({NOFILE}, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))\n\
         files = [open('/dev/null') for _ in range({FILES})]\n\
         socks = [socket.socket() for _ in range({SOCKETS})]\n\
         threads = [threading.Thread(target=time.sleep, args=(60,), daemon=True) for _ in range({THREADS})]\n\
         [t.start() for t in threads]\n\
         time.sleep(60)\n"
    );
    let mut command = Command::new("/usr/bin/python3");
    command
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    command
}

fn count_dir(path: &str) -> usize {
    fs::read_dir(path).map_or(0, Iterator::count)
}

fn sockets_of(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter(|e| {
            fs::read_link(e.as_ref().unwrap().path())
                .is_ok_and(|t| t.to_string_lossy().starts_with("socket:"))
        })
        .count()
}

#[test]
fn counts_equal_proc_for_a_known_workload() {
    let kadvisor = Kadvisor::start(&[]);
    let mut cg = TestCgroup::new("procs");
    cg.write_control("pids", "pids.max", "50");
    for _ in 0..2 {
        cg.spawn(&mut workload());
    }
    let pids = cg.started_pids();
    // Wait until both processes have set everything up.
    let deadline = Instant::now() + Duration::from_secs(20);
    let expected_fds = 3 + FILES + SOCKETS;
    while pids.iter().any(|pid| {
        count_dir(&format!("/proc/{pid}/task")) < 1 + THREADS
            || count_dir(&format!("/proc/{pid}/fd")) < expected_fds
    }) {
        assert!(Instant::now() < deadline, "workload did not start");
        std::thread::sleep(Duration::from_millis(50));
    }

    let scrape = kadvisor.scrape();
    let v = |name: &str| scrape.value(name, &[("id", cg.id())]);

    let procs = cg.read_v2("cgroup.procs").lines().count();
    assert_eq!(procs, 2);
    assert_eq!(v("container_processes"), procs as f64);

    let tasks: usize = pids
        .iter()
        .map(|pid| count_dir(&format!("/proc/{pid}/task")))
        .sum();
    assert_eq!(tasks, 2 * (1 + THREADS));
    let pids_current: f64 = cg
        .read_control("pids", "pids.current")
        .trim()
        .parse()
        .unwrap();
    assert_eq!(pids_current, tasks as f64);
    assert_eq!(v("container_threads"), tasks as f64);
    assert_eq!(v("container_threads_max"), 50.0);
    // As in cAdvisor: the kernel shows no pids.current at the root, so no sample.
    assert!(
        scrape.find("container_threads", &[("id", "/")]).is_empty(),
        "a root row container_threads sample"
    );

    let fds: usize = pids
        .iter()
        .map(|pid| count_dir(&format!("/proc/{pid}/fd")))
        .sum();
    assert_eq!(fds, 2 * expected_fds, "stdio + files + sockets per process");
    assert_eq!(v("container_file_descriptors"), fds as f64);
    let sockets: usize = pids.iter().map(|&pid| sockets_of(pid)).sum();
    assert_eq!(sockets, 2 * SOCKETS);
    assert_eq!(v("container_sockets"), sockets as f64);

    assert_eq!(
        scrape.value(
            "container_ulimits_soft",
            &[("id", cg.id()), ("ulimit", "max_open_files")]
        ),
        NOFILE as f64
    );
}

#[test]
fn empty_cgroup_has_zero_processes_and_no_ulimit() {
    let kadvisor = Kadvisor::start(&[]);
    let cg = TestCgroup::new("empty");
    let scrape = kadvisor.scrape();
    let v = |name: &str| scrape.value(name, &[("id", cg.id())]);
    assert_eq!(v("container_processes"), 0.0);
    assert_eq!(v("container_threads"), 0.0);
    assert_eq!(v("container_threads_max"), 0.0, "pids.max is max: 0");
    assert_eq!(v("container_file_descriptors"), 0.0);
    assert!(
        scrape
            .find("container_ulimits_soft", &[("id", cg.id())])
            .is_empty()
    );
}
