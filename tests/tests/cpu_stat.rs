//! CPU families read from cgroupfs (user/system split, CFS throttling, CPU spec),
//! checked against the kernel's own files of the same cgroup, read at (nearly) the
//! same instant.
use std::{
    process::Command,
    time::{Duration, Instant},
};

use kadvisor_tests::{
    assert_close, cgroup::TestCgroup, exclusive_cpu, kadvisor::Kadvisor, scrape::Scrape,
};

fn value(scrape: &Scrape, name: &str, cg: &TestCgroup) -> f64 {
    scrape.value(name, &[("id", cg.id())])
}

fn keyed(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key} ")))
        .unwrap_or_else(|| panic!("no {key} in {text}"))
        .trim()
        .parse()
        .unwrap()
}

/// (user, system) seconds of the cgroup's v2 cpu.stat: the file kadvisor reads.
fn v2_user_system(cg: &TestCgroup) -> (f64, f64) {
    let stat = cg.read_v2("cpu.stat");
    (
        keyed(&stat, "user_usec") as f64 / 1e6,
        keyed(&stat, "system_usec") as f64 / 1e6,
    )
}

/// (user, system) seconds of the v1 cpuacct.stat (USER_HZ = 100 ticks).
fn cpuacct_user_system(cg: &TestCgroup) -> (f64, f64) {
    let stat = cg.read_control("cpuacct", "cpuacct.stat");
    (
        keyed(&stat, "user") as f64 / 100.0,
        keyed(&stat, "system") as f64 / 100.0,
    )
}

/// Runs `workload` alone in a new cgroup until the kernel charged it 0.5 s of CPU and
/// returns kadvisor's and the kernel's (user, system) seconds after it stopped, and v1
/// `cpuacct.stat`'s where the host has a v1 cpuacct hierarchy (a pure v2 host has only
/// cpu.stat).
fn run_split(kadvisor: &Kadvisor, name: &str, workload: &mut Command) -> [Option<(f64, f64)>; 3] {
    let mut cg = TestCgroup::new(name);
    cg.spawn(workload);
    cg.wait_for_cpu_seconds(0.5);
    cg.stop_all();
    let kernel = v2_user_system(&cg);
    let scrape = kadvisor.scrape();
    let ours = (
        value(&scrape, "container_cpu_user_seconds_total", &cg),
        value(&scrape, "container_cpu_system_seconds_total", &cg),
    );
    let cpuacct = cg.v1_dir("cpuacct").map(|_| cpuacct_user_system(&cg));
    [Some(ours), Some(kernel), cpuacct]
}

fn assert_split(what: &str, split: [Option<(f64, f64)>; 3]) -> (f64, f64) {
    let [Some(ours), Some(kernel), cpuacct] = split else {
        unreachable!("kadvisor's and cpu.stat's split are always read")
    };
    assert_close(&format!("{what}: user vs cpu.stat"), ours.0, kernel.0, 0.05);
    assert_close(
        &format!("{what}: system vs cpu.stat"),
        ours.1,
        kernel.1,
        0.05,
    );
    // The v1 file is tick-sampled (10 ms): loose agreement on the total.
    if let Some(cpuacct) = cpuacct {
        let (total, ticks) = (ours.0 + ours.1, cpuacct.0 + cpuacct.1);
        assert!(
            (total - ticks).abs() <= 0.1 * total + 0.05,
            "{what}: user+system {total} vs cpuacct.stat {ticks}"
        );
    }
    ours
}

#[test]
fn user_bound_and_syscall_bound_split_like_cpu_stat() {
    let _cpu = exclusive_cpu();
    let kadvisor = Kadvisor::start(&[]);

    let user = run_split(
        &kadvisor,
        "user-bound",
        Command::new("sh").args(["-c", "while :; do :; done"]),
    );
    let (u, s) = assert_split("user-bound", user);
    assert!(
        u > 0.1 && u > 0.9 * (u + s),
        "user-bound: user {u} s, system {s} s"
    );

    // Reading 1 MiB blocks of /dev/zero: the time is spent clearing memory in the
    // kernel, so it is system time.
    let syscall = run_split(
        &kadvisor,
        "syscall-bound",
        Command::new("dd").args(["if=/dev/zero", "of=/dev/null", "bs=1M", "count=100000000"]),
    );
    let (u, s) = assert_split("syscall-bound", syscall);
    assert!(
        s > 0.1 && s > 0.8 * (u + s),
        "syscall-bound: user {u} s, system {s} s"
    );
}

#[test]
fn throttling_under_a_20_percent_quota_equals_cpu_stat() {
    let _cpu = exclusive_cpu();
    let kadvisor = Kadvisor::start(&[]);
    let mut limited = TestCgroup::with_cpu_controller("quota");
    let free = TestCgroup::with_cpu_controller("no-quota");
    // v1 (hybrid host): the CFS files; v2: cpu.max "<quota> <period>".
    let v1 = limited.v1_dir("cpu").is_some();
    if v1 {
        limited.write_control("cpu", "cpu.cfs_period_us", "100000");
        limited.write_control("cpu", "cpu.cfs_quota_us", "20000");
    } else {
        limited.write_control("cpu", "cpu.max", "20000 100000");
    }

    let start = Instant::now();
    limited.spawn_busy();
    // Until the kernel has throttled it in a few periods: about 1 s on an idle machine,
    // longer when others (emulated guests) hold the cores. The kernel's own count, not
    // a wall-clock window.
    loop {
        let stat = limited.read_control("cpu", "cpu.stat");
        if keyed(&stat, "nr_periods") >= 10 && keyed(&stat, "nr_throttled") >= 5 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "not throttled in 120 s under a 20% quota: {stat}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    limited.stop_all();
    let wall = start.elapsed().as_secs_f64();
    // Let the period timer see the cgroup idle and stop.
    std::thread::sleep(Duration::from_millis(300));

    let before = limited.read_control("cpu", "cpu.stat");
    let scrape = kadvisor.scrape();
    let after = limited.read_control("cpu", "cpu.stat");
    assert_eq!(
        before, after,
        "counters moved while scraping an idle cgroup"
    );
    let ours = |name| value(&scrape, name, &limited);
    let periods = keyed(&after, "nr_periods");
    let throttled = keyed(&after, "nr_throttled");
    let throttled_seconds = if v1 {
        keyed(&after, "throttled_time") as f64 / 1e9
    } else {
        keyed(&after, "throttled_usec") as f64 / 1e6
    };
    assert_eq!(ours("container_cpu_cfs_periods_total"), periods as f64);
    assert_eq!(
        ours("container_cpu_cfs_throttled_periods_total"),
        throttled as f64
    );
    assert_close(
        "throttled seconds vs cpu.stat throttled_time",
        ours("container_cpu_cfs_throttled_seconds_total"),
        throttled_seconds,
        1e-9,
    );
    assert_eq!(ours("container_spec_cpu_quota"), 20_000.0);
    assert_eq!(ours("container_spec_cpu_period"), 100_000.0);
    // v2 has cpu.weight instead of cpu.shares: cAdvisor reports the weight as shares
    // through 2 + (weight - 1) * 262142 / 9999 (the default weight 100 reads 2597).
    let shares = if v1 {
        limited
            .read_control("cpu", "cpu.shares")
            .trim()
            .parse::<u64>()
            .unwrap()
    } else {
        let weight: u64 = limited.read_v2("cpu.weight").trim().parse().unwrap();
        2 + (weight - 1) * 262_142 / 9_999
    };
    assert_eq!(ours("container_spec_cpu_shares"), shares as f64);
    // The quota held: about 20% of the wall time it ran (less when other work takes
    // the CPU), never the 100% of an unthrottled loop.
    let used = scrape.value("container_cpu_usage_seconds_total", &[("id", limited.id())]);
    assert!(
        used <= 0.3 * wall,
        "20% of {wall:.1} s of wall time, used {used} s"
    );

    // No quota: no throttling series and no quota, as cAdvisor does; period and
    // shares are still served.
    for name in [
        "container_cpu_cfs_periods_total",
        "container_cpu_cfs_throttled_periods_total",
        "container_cpu_cfs_throttled_seconds_total",
        "container_spec_cpu_quota",
    ] {
        assert!(
            scrape.find(name, &[("id", free.id())]).is_empty(),
            "{name} served for a cgroup without quota"
        );
    }
    assert_eq!(
        value(&scrape, "container_spec_cpu_period", &free),
        100_000.0
    );
}
