//! Memory families and OOM kills on real cgroups, checked against the cgroup's own
//! memory controller files (v1 on a hybrid host like the dev VM, v2 on a pure v2
//! host), read around the scrape.
use std::{
    io::{BufRead as _, BufReader},
    os::unix::process::ExitStatusExt as _,
    path::Path,
    process::{ChildStdout, Command},
};

use kadvisor_tests::{cgroup::TestCgroup, kadvisor::Kadvisor, scrape::Scrape};

const MIB: u64 = 1 << 20;

/// Reads the file `$0` (64 MiB, not in the page cache: its cache is charged to this
/// cgroup), holds 64 MiB of anonymous memory in a shell variable, says "ready" and
/// waits on stdin. Shell and coreutils/busybox only, so it runs in the kernel-matrix
/// VMs too.
const TOUCH_AND_READ: &str =
    r#"cat "$0" >/dev/null && x=$(head -c 67108864 /dev/zero | tr '\0' a) && echo ready && read _"#;

/// Holds up to 1 GiB in a shell variable: killed by its cgroup's limit long before.
const EXCEED_LIMIT: &str = r#"x=$(head -c 1073741824 /dev/zero | tr '\0' a); echo survived"#;

/// Whether the memory controller is v1 for this cgroup (hybrid host).
fn is_v1(cg: &TestCgroup) -> bool {
    cg.v1_dir("memory").is_some()
}

fn memory_file(cg: &TestCgroup, file: &str) -> String {
    cg.read_control("memory", file)
}

fn wait_for_line(stdout: ChildStdout, want: &str) {
    let mut lines = BufReader::new(stdout).lines();
    match lines.next() {
        Some(Ok(line)) if line == want => {}
        other => panic!("workload did not print {want:?}: {other:?}"),
    }
}

/// A memory.stat key of the cgroup (v1: the `total_` key, which includes children).
fn stat(cg: &TestCgroup, v1_key: &str, v2_key: &str) -> u64 {
    let text = memory_file(cg, "memory.stat");
    let key = if is_v1(cg) { v1_key } else { v2_key };
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{key} in memory.stat:\n{text}"))
}

fn usage(cg: &TestCgroup) -> u64 {
    let file = if is_v1(cg) {
        "memory.usage_in_bytes"
    } else {
        "memory.current"
    };
    memory_file(cg, file)
        .trim()
        .parse()
        .expect("usage is a number")
}

/// What the cgroup's files say, in kadvisor's terms.
#[derive(Debug, Clone, Copy)]
struct Kernel {
    usage: u64,
    /// v1 `memory.max_usage_in_bytes`, v2 `memory.peak`.
    max_usage: u64,
    /// v1 only: `memory.kmem.usage_in_bytes` and `memory.failcnt`.
    kmem_and_failcnt: Option<(u64, u64)>,
    rss: u64,
    cache: u64,
    working_set: u64,
    /// Page faults of the cgroup and its descendants (v1 `total_pgfault`, v2 `pgfault`).
    pgfault: u64,
}

fn number(cg: &TestCgroup, file: &str) -> u64 {
    memory_file(cg, file)
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{file}: {e}"))
}

fn kernel_view(cg: &TestCgroup) -> Kernel {
    let usage = usage(cg);
    let inactive_file = stat(cg, "total_inactive_file", "inactive_file");
    let peak = if is_v1(cg) {
        "memory.max_usage_in_bytes"
    } else {
        "memory.peak"
    };
    Kernel {
        usage,
        max_usage: number(cg, peak),
        kmem_and_failcnt: is_v1(cg).then(|| {
            (
                number(cg, "memory.kmem.usage_in_bytes"),
                number(cg, "memory.failcnt"),
            )
        }),
        rss: stat(cg, "total_rss", "anon"),
        cache: stat(cg, "total_cache", "file"),
        working_set: usage.saturating_sub(inactive_file),
        pgfault: stat(cg, "total_pgfault", "pgfault"),
    }
}

fn value(scrape: &Scrape, name: &str, cg: &TestCgroup) -> f64 {
    scrape.value(name, &[("id", cg.id())])
}

/// `ours` equals the kernel's value read just before or just after the scrape, or
/// lies between them. The workload is idle by then, so the files barely move.
fn assert_same_instant(what: &str, ours: f64, before: u64, after: u64) {
    let (low, high) = (before.min(after) as f64, before.max(after) as f64);
    assert!(
        (low..=high).contains(&ours),
        "{what}: kadvisor {ours}, the cgroup's files {before} before and {after} after the scrape"
    );
}

#[test]
fn anon_and_file_memory_match_the_cgroup_files() {
    let kadvisor = Kadvisor::start(&[]);
    // On disk (not tmpfs, whose pages stay charged to the writer): the target
    // directory where it exists, else $TMPDIR (an ext4 disk in the kernel-matrix VMs).
    let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let dir = if base.is_dir() {
        tempfile::tempdir_in(base)
    } else {
        tempfile::tempdir()
    }
    .expect("tempdir");
    let file = kadvisor_tests::uncached_file(dir.path(), 64);
    let mut cg = TestCgroup::with_v1_controllers("mem", &["memory"]);
    // The workload waits on stdin until `_stdin` is dropped at the end of the test.
    let (_stdin, stdout) = cg.spawn_piped(Command::new("sh").args([
        "-c",
        TOUCH_AND_READ,
        file.to_str().expect("utf-8 path"),
    ]));
    wait_for_line(stdout, "ready");

    let before = kernel_view(&cg);
    let scrape = kadvisor.scrape();
    let after = kernel_view(&cg);

    assert!(before.rss >= 64 * MIB, "64 MiB touched, rss {}", before.rss);
    // A few pages of the file can stay cached outside the cgroup (fadvise skips
    // pages it cannot drop at that instant): most of the 64 MiB must be here.
    assert!(
        before.cache >= 60 * MIB,
        "64 MiB read, cache {}",
        before.cache
    );
    // Usage, peak, and on v1 the kernel memory and limit hits: the numbers of the
    // kernel's cgroup pass (its page counters), where it is attached.
    let mut single_numbers = vec![(
        "container_memory_max_usage_bytes",
        before.max_usage,
        after.max_usage,
    )];
    if let (Some((kmem_b, failcnt_b)), Some((kmem_a, failcnt_a))) =
        (before.kmem_and_failcnt, after.kmem_and_failcnt)
    {
        single_numbers.push(("container_memory_kernel_usage", kmem_b, kmem_a));
        single_numbers.push(("container_memory_failcnt", failcnt_b, failcnt_a));
    }
    for (name, b, a) in [
        ("container_memory_usage_bytes", before.usage, after.usage),
        ("container_memory_rss", before.rss, after.rss),
        ("container_memory_cache", before.cache, after.cache),
        (
            "container_memory_working_set_bytes",
            before.working_set,
            after.working_set,
        ),
    ]
    .into_iter()
    .chain(single_numbers)
    {
        assert_same_instant(name, value(&scrape, name, &cg), b, a);
    }
    // At least one fault per touched page, unless transparent huge pages back them.
    assert!(before.pgfault > 0, "the workload faulted pages in");
    let faults = scrape.value(
        "container_memory_failures_total",
        &[
            ("id", cg.id()),
            ("failure_type", "pgfault"),
            ("scope", "hierarchy"),
        ],
    );
    assert_same_instant("pgfault", faults, before.pgfault, after.pgfault);
}

#[test]
fn memory_limits_show_in_the_spec_metrics() {
    // Limits written to a cgroup with no task show within --max_housekeeping_interval
    // (tests/refresh.rs); this test is about how they are exported: read every scrape.
    let kadvisor = Kadvisor::start(&["--max_housekeeping_interval", "0"]);
    let cg = TestCgroup::with_v1_controllers("limits", &["memory"]);
    let unlimited = kadvisor.scrape();
    assert_eq!(
        value(&unlimited, "container_spec_memory_limit_bytes", &cg),
        0.0,
        "no limit is exported as 0, as cAdvisor does"
    );
    if is_v1(&cg) {
        cg.write_control("memory", "memory.limit_in_bytes", &(100 * MIB).to_string());
        cg.write_control(
            "memory",
            "memory.memsw.limit_in_bytes",
            &(150 * MIB).to_string(),
        );
        cg.write_control(
            "memory",
            "memory.soft_limit_in_bytes",
            &(50 * MIB).to_string(),
        );
    } else {
        cg.write_control("memory", "memory.max", &(100 * MIB).to_string());
        cg.write_control("memory", "memory.swap.max", &(150 * MIB).to_string());
        cg.write_control("memory", "memory.min", &(50 * MIB).to_string());
    }
    let scrape = kadvisor.scrape();
    for (name, want) in [
        ("container_spec_memory_limit_bytes", 100 * MIB),
        ("container_spec_memory_swap_limit_bytes", 150 * MIB),
        ("container_spec_memory_reservation_limit_bytes", 50 * MIB),
    ] {
        assert_eq!(value(&scrape, name, &cg), want as f64, "{name}");
    }
}

/// Runs `EXCEED_LIMIT` in `cg` under a 32 MiB limit, checks the kernel killed it and
/// returns the kills the kernel counted: usually 1, but a workload of several
/// processes can take two kills (seen on 6.12: memory.events said 2).
fn oom_kill_in(cg: &mut TestCgroup) -> u64 {
    if is_v1(cg) {
        cg.write_control("memory", "memory.limit_in_bytes", &(32 * MIB).to_string());
        cg.write_control(
            "memory",
            "memory.memsw.limit_in_bytes",
            &(32 * MIB).to_string(),
        );
    } else {
        cg.write_control("memory", "memory.max", &(32 * MIB).to_string());
        cg.write_control("memory", "memory.swap.max", "0");
    }
    cg.spawn(Command::new("sh").args(["-c", EXCEED_LIMIT]));
    let statuses = cg.wait_all();
    assert_eq!(
        statuses.iter().map(|s| s.signal()).collect::<Vec<_>>(),
        [Some(libc::SIGKILL)],
        "the workload should have been OOM-killed"
    );
    // The pipeline's other processes may outlive the shell and take a kill of their own.
    cg.wait_until_empty();
    let (file, key) = if is_v1(cg) {
        ("memory.oom_control", "oom_kill ")
    } else {
        ("memory.events", "oom_kill ")
    };
    let kernel_kills: u64 = memory_file(cg, file)
        .lines()
        .find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("oom_kill in {file}"));
    assert!(
        kernel_kills >= 1,
        "the kernel's own count in {file}: {kernel_kills}"
    );
    kernel_kills
}

const OOM: &str = "container_oom_events_total";

#[test]
fn oom_kill_is_counted_for_its_cgroup() {
    let kadvisor = Kadvisor::start(&[]);
    let mut cg = TestCgroup::with_v1_controllers("oom", &["memory"]);
    assert_eq!(value(&kadvisor.scrape(), OOM, &cg), 0.0);
    let kernel_kills = oom_kill_in(&mut cg);
    assert_eq!(value(&kadvisor.scrape(), OOM, &cg), kernel_kills as f64);
}

#[test]
fn oom_kill_survives_removal_of_the_cgroup() {
    let kadvisor = Kadvisor::start(&[]);
    let parent = TestCgroup::with_v1_controllers("oom-parent", &["memory"]);
    let mut child = parent.child("victim");
    let child_id = child.id().to_owned();
    // A scrape while the container lives, as Prometheus would make one: kadvisor
    // learns the path of its cgroup id.
    assert_eq!(value(&kadvisor.scrape(), OOM, &child), 0.0);

    let kernel_kills = oom_kill_in(&mut child) as f64;
    let child_dir = child.path().to_owned();
    drop(child);
    assert!(!child_dir.exists(), "the victim's cgroup should be removed");

    let scrape = kadvisor.scrape();
    assert_eq!(
        scrape.value(OOM, &[("id", &child_id)]),
        kernel_kills,
        "the removed cgroup's own row keeps its kills"
    );
    assert_eq!(
        value(&scrape, OOM, &parent),
        kernel_kills,
        "the parent includes them"
    );
    assert!(
        scrape
            .find("container_memory_usage_bytes", &[("id", &child_id)])
            .is_empty(),
        "a removed cgroup has no memory gauges"
    );
}

/// Four threads allocating and touching 1 MiB blocks until the cgroup's limit kills
/// the process: a multi-threaded victim.
const THREADED_ALLOCATOR: &str = r"
import threading
def grow():
    blocks = []
    while True:
        blocks.append(b'\x01' * (1 << 20))
threads = [threading.Thread(target=grow) for _ in range(4)]
for t in threads: t.start()
for t in threads: t.join()
";

/// The kernel's own kill count of `cg` (v1 `memory.oom_control`, v2 `memory.events`).
fn kernel_oom_kills(cg: &TestCgroup) -> u64 {
    let file = if is_v1(cg) {
        "memory.oom_control"
    } else {
        "memory.events"
    };
    memory_file(cg, file)
        .lines()
        .find_map(|l| l.strip_prefix("oom_kill ")?.trim().parse().ok())
        .unwrap_or_else(|| panic!("oom_kill in {file}"))
}

/// Runs `workload` in `cg` (limited to 16 MiB, no swap: a round takes about a second
/// here) 20 times; after each round kadvisor's count equals the kernel's, which must
/// have grown. Returns it.
fn oom_rounds(
    kadvisor: &Kadvisor,
    cg: &mut TestCgroup,
    workload: &mut dyn FnMut() -> Command,
) -> u64 {
    if is_v1(cg) {
        cg.write_control("memory", "memory.limit_in_bytes", &(16 * MIB).to_string());
        cg.write_control(
            "memory",
            "memory.memsw.limit_in_bytes",
            &(16 * MIB).to_string(),
        );
    } else {
        cg.write_control("memory", "memory.max", &(16 * MIB).to_string());
        cg.write_control("memory", "memory.swap.max", "0");
    }
    let mut kernel = kernel_oom_kills(cg);
    for round in 1..=20 {
        cg.spawn(&mut workload());
        let statuses = cg.wait_all();
        assert_eq!(
            statuses.iter().map(|s| s.signal()).collect::<Vec<_>>(),
            [Some(libc::SIGKILL)],
            "round {round}: the workload should have been OOM-killed"
        );
        // The round ends when the cgroup is empty, not when the started process is
        // reaped: a pipeline's other processes outlive a killed shell and the kernel can
        // kill one of them too, a moment later (this test compared mid-round before,
        // and kadvisor had counted that later kill: 5 vs 4 on 6.12 under TCG).
        let at_exit = kernel_oom_kills(cg);
        cg.wait_until_empty();
        let before = kernel;
        kernel = kernel_oom_kills(cg);
        if kernel != at_exit {
            eprintln!(
                "round {round}: the kernel counted {} more kill(s) after the started process exited",
                kernel - at_exit
            );
        }
        assert!(kernel > before, "round {round}: the kernel counted no kill");
        assert_eq!(
            value(&kadvisor.scrape(), OOM, cg),
            kernel as f64,
            "round {round}: kadvisor's count against the kernel's oom_kill"
        );
    }
    kernel
}

#[test]
fn oom_kills_of_a_pipeline_and_of_a_threaded_allocator_equal_the_kernels_count() {
    let kadvisor = Kadvisor::start(&[]);
    let parent = TestCgroup::with_v1_controllers("oom-rounds", &["memory"]);
    let mut pipeline = parent.child("pipeline");
    let mut threads = parent.child("threads");
    let pipeline_id = pipeline.id().to_owned();
    let threads_id = threads.id().to_owned();

    let pipeline_kills = oom_rounds(&kadvisor, &mut pipeline, &mut || {
        let mut c = Command::new("sh");
        c.args(["-c", EXCEED_LIMIT]);
        c
    });
    let threads_kills = oom_rounds(&kadvisor, &mut threads, &mut || {
        let mut c = Command::new("python3");
        c.args(["-c", THREADED_ALLOCATOR]);
        c
    });

    // After removal the rows keep the kernel's last counts, and the parent their sum.
    drop(pipeline);
    drop(threads);
    let scrape = kadvisor.scrape();
    for (id, kills) in [(&pipeline_id, pipeline_kills), (&threads_id, threads_kills)] {
        assert_eq!(
            scrape.value(OOM, &[("id", id)]),
            kills as f64,
            "removed {id}"
        );
    }
    assert_eq!(
        value(&scrape, OOM, &parent),
        (pipeline_kills + threads_kills) as f64,
        "the parent includes its removed children's kills"
    );
}
