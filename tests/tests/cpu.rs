//! CPU time per cgroup, checked against the kernel's own accounting (`cpu.stat
//! usage_usec` of the same cgroup): live rows read it at scrape time, removed ones
//! show what `sched_process_exit` captured.
use std::time::{Duration, Instant};

use kadvisor_tests::{
    assert_close,
    cgroup::{TestCgroup, v2_root},
    exclusive_cpu,
    kadvisor::Kadvisor,
    scrape::Scrape,
};

const USAGE: &str = "container_cpu_usage_seconds_total";

fn usage(scrape: &Scrape, cgroup: &TestCgroup) -> f64 {
    scrape.value(USAGE, &[("id", cgroup.id()), ("cpu", "total")])
}

/// The root cgroup's own `cpu.stat usage_usec` in seconds: what cAdvisor and kadvisor
/// serve for the root row.
fn root_cpu_stat_seconds() -> f64 {
    let stat = std::fs::read_to_string(v2_root().join("cpu.stat")).expect("read root cpu.stat");
    let usec: u64 = stat
        .lines()
        .find_map(|l| l.strip_prefix("usage_usec "))
        .expect("usage_usec in the root cpu.stat")
        .trim()
        .parse()
        .expect("usage_usec is a number");
    usec as f64 / 1e6
}

#[test]
fn busy_loop_matches_cpu_stat() {
    let _cpu = exclusive_cpu();
    let kadvisor = Kadvisor::start(&[]);
    let mut cg = TestCgroup::new("busy");
    let (kernel_before, ours_before) =
        (cg.cpu_stat_usage_seconds(), usage(&kadvisor.scrape(), &cg));

    cg.spawn_busy();
    cg.wait_for_cpu_seconds(1.0);
    cg.stop_all();

    let kernel = cg.cpu_stat_usage_seconds() - kernel_before;
    let ours = usage(&kadvisor.scrape(), &cg) - ours_before;
    assert_close("busy loop CPU seconds vs cpu.stat", ours, kernel, 0.02);
}

#[test]
fn sleeping_process_gains_almost_nothing() {
    let kadvisor = Kadvisor::start(&[]);
    let mut cg = TestCgroup::new("sleeper");
    let pid = cg.spawn(std::process::Command::new("sleep").arg("30"));
    // The CPU of starting `sleep` (exec, dynamic linking: tens of ms under emulation)
    // is not sleeping: the window starts once the kernel's own count for the cgroup
    // stands still with the process asleep in `sleep`.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let asleep = stat.contains("(sleep) S ");
        let kernel = cg.cpu_stat_usage_seconds();
        std::thread::sleep(Duration::from_millis(300));
        if asleep && cg.cpu_stat_usage_seconds() == kernel {
            break;
        }
        assert!(Instant::now() < deadline, "sleep did not settle: {stat}");
    }
    let before = usage(&kadvisor.scrape(), &cg);
    std::thread::sleep(Duration::from_secs(2));
    let gained = usage(&kadvisor.scrape(), &cg) - before;
    assert!(
        gained < 0.010,
        "a sleeping process gained {gained} s of CPU"
    );
}

#[test]
fn two_busy_processes_gain_twice_wall_time() {
    let _cpu = exclusive_cpu();
    let kadvisor = Kadvisor::start(&[]);
    let mut cg = TestCgroup::new("two-busy");
    let before = usage(&kadvisor.scrape(), &cg);
    let kernel_before = cg.cpu_stat_usage_seconds();
    let start = Instant::now();
    cg.spawn_busy();
    cg.spawn_busy();
    cg.wait_for_cpu_seconds(2.0);
    // Stopped, so both sides describe the same instant however long a scrape takes.
    cg.freeze_started();
    let processes = cg.started_processes_cpu_seconds();
    let ours_running = usage(&kadvisor.scrape(), &cg) - before;
    cg.thaw_started();
    cg.stop_all();
    let wall = start.elapsed().as_secs_f64();

    let ours = usage(&kadvisor.scrape(), &cg) - before;
    let kernel = cg.cpu_stat_usage_seconds() - kernel_before;
    assert_close("two busy processes vs cpu.stat", ours, kernel, 0.02);
    assert_close(
        "two busy processes vs their own schedstat",
        ours_running,
        processes,
        0.02,
    );
    // ~2x on an otherwise idle 2-core machine, any share of it on a loaded one (this
    // machine is shared), but never more than the 2 cores exist.
    let ratio = ours / wall;
    assert!(
        ratio <= 2.05,
        "two busy processes on 2 cores gained {ratio:.2}x wall time"
    );
}

#[test]
fn running_task_is_counted_before_it_switches_out() {
    let _cpu = exclusive_cpu();
    let kadvisor = Kadvisor::start(&[]);
    let mut cg = TestCgroup::new("running");
    cg.spawn_busy();
    std::thread::sleep(Duration::from_millis(300));
    // Scrape while the task is still running: it must be credited up to now, as the
    // kernel's cpu.stat is, not only when it next leaves the CPU. Both are fed by the
    // same scheduler updates, so the scraped value lies between cpu.stat read just
    // before and just after the scrape, however long the scrape takes.
    let mut last = 0.0;
    for _ in 0..3 {
        cg.wait_for_cpu_seconds(0.3);
        let kernel_before = cg.cpu_stat_usage_seconds();
        let ours = usage(&kadvisor.scrape(), &cg);
        let kernel_after = cg.cpu_stat_usage_seconds();
        // cpu.stat is in whole µs. A 0.04% shortfall was seen once under heavy load
        // (no recursion misses in the program's fdinfo; cause not yet found): allow
        // 0.1%.
        let slack = 1e-6 + 0.001 * kernel_after;
        assert!(
            kernel_before - slack <= ours && ours <= kernel_after + slack,
            "running task: scraped {ours} s, cpu.stat {kernel_before} s before and {kernel_after} s after"
        );
        assert!(
            ours - last > 0.1,
            "a running busy loop gained only {} s while cpu.stat gained 0.3 s",
            ours - last
        );
        last = ours;
    }
}

#[test]
fn parent_gains_the_sum_of_its_children() {
    let _cpu = exclusive_cpu();
    let kadvisor = Kadvisor::start(&[]);
    let parent = TestCgroup::new("parent");
    let mut a = parent.child("a");
    let mut b = parent.child("b");
    let root_before = (
        root_cpu_stat_seconds(),
        kadvisor.scrape(),
        root_cpu_stat_seconds(),
    );
    let before = &root_before.1;
    let kernel_parent_before = parent.cpu_stat_usage_seconds();

    a.spawn_busy();
    b.spawn_busy();
    a.wait_for_cpu_seconds(0.5);
    b.wait_for_cpu_seconds(0.5);
    a.stop_all();
    b.stop_all();

    let root_after = (
        root_cpu_stat_seconds(),
        kadvisor.scrape(),
        root_cpu_stat_seconds(),
    );
    let after = &root_after.1;
    let gain = |cg: &TestCgroup| usage(after, cg) - usage(before, cg);
    let (pa, ca, cb) = (gain(&parent), gain(&a), gain(&b));
    assert!(ca > 0.1 && cb > 0.1, "both children ran: a={ca} b={cb}");
    assert_close("parent vs sum of children", pa, ca + cb, 0.01);
    let kernel_parent = parent.cpu_stat_usage_seconds() - kernel_parent_before;
    assert_close("parent vs its cpu.stat", pa, kernel_parent, 0.02);
    // The root row is the root cgroup's own accounting, read at the scrape: its gain lies
    // between what the root's cpu.stat gained inside and around the two scrapes. (Not
    // "root >= parent": on pure v2 the root's usage_usec is tick-sampled kernel-wide
    // time, which under qemu TCG loses ticks and came out at 1.9 s while the parent's
    // exact sum gained 4.0 s on 6.12.)
    let root_gain = after.value(USAGE, &[("id", "/")]) - before.value(USAGE, &[("id", "/")]);
    let (inner, outer) = (root_after.0 - root_before.2, root_after.2 - root_before.0);
    assert!(
        root_gain >= inner * 0.99 - 0.001 && root_gain <= outer * 1.01 + 0.001,
        "root row gained {root_gain} s, its cpu.stat {inner}..{outer} s"
    );
    drop((a, b));
}

#[test]
fn removed_cgroup_time_stays_in_its_parent() {
    let _cpu = exclusive_cpu();
    let kadvisor = Kadvisor::start(&[]);
    let parent = TestCgroup::new("keeps");
    let mut child = parent.child("gone");
    // Seen once by a scrape, then removed.
    let before = kadvisor.scrape();
    child.spawn_busy();
    child.wait_for_cpu_seconds(0.3);
    child.stop_all();
    let child_time = usage(&kadvisor.scrape(), &child) - usage(&before, &child);
    drop(child);

    let after = kadvisor.scrape();
    let parent_gain = usage(&after, &parent) - usage(&before, &parent);
    assert_close(
        "parent keeps a removed child's time",
        parent_gain,
        child_time,
        0.01,
    );
    assert_close(
        "parent vs its cpu.stat after the child is gone",
        usage(&after, &parent),
        parent.cpu_stat_usage_seconds(),
        0.02,
    );
}

#[test]
fn cgroup_older_than_kadvisor_shows_its_lifetime_usage() {
    let _cpu = exclusive_cpu();
    let mut cg = TestCgroup::new("older");
    cg.spawn_busy();
    cg.wait_for_cpu_seconds(0.3);
    cg.stop_all();
    // Started after the work was done: the value must still be the kernel's total,
    // as cAdvisor's would be, not zero.
    let kadvisor = Kadvisor::start(&[]);
    let kernel = cg.cpu_stat_usage_seconds();
    assert_close(
        "usage of a cgroup older than kadvisor vs cpu.stat",
        usage(&kadvisor.scrape(), &cg),
        kernel,
        0.02,
    );
}

#[test]
fn recreated_cgroup_starts_from_zero_like_cpu_stat() {
    let _cpu = exclusive_cpu();
    let kadvisor = Kadvisor::start(&[]);
    let parent = TestCgroup::new("recreate");
    let mut first = parent.child("app");
    first.spawn_busy();
    first.wait_for_cpu_seconds(0.3);
    first.stop_all();
    let old = usage(&kadvisor.scrape(), &first);
    assert!(old > 0.05, "the first incarnation ran: {old} s");
    drop(first);

    // Same name, new cgroup: the kernel's cpu.stat starts from zero, and so must we
    // (a counter reset); the parent keeps the first one's time.
    let second = parent.child("app");
    let scrape = kadvisor.scrape();
    assert_eq!(second.cpu_stat_usage_seconds(), 0.0);
    assert_eq!(usage(&scrape, &second), 0.0);
    assert_close(
        "parent keeps the removed incarnation's time",
        usage(&scrape, &parent),
        parent.cpu_stat_usage_seconds(),
        0.02,
    );
}

#[test]
fn busy_cgroup_equals_cpu_stat_at_every_scrape() {
    let _cpu = exclusive_cpu();
    let kadvisor = Kadvisor::start(&[]);
    let mut cg = TestCgroup::new("every-scrape");
    cg.spawn_busy();
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(400));
        // The scrape reads cpu.stat while the loop runs: between these two reads.
        let before = cg.cpu_stat_usage_seconds();
        let ours = usage(&kadvisor.scrape(), &cg);
        let after = cg.cpu_stat_usage_seconds();
        assert!(
            ours >= before * 0.99 && ours <= after * 1.01,
            "usage {ours} s outside cpu.stat [{before}, {after}] s"
        );
    }
    cg.stop_all();
}

#[test]
fn removed_cgroup_shows_its_final_cpu_through_its_grace_and_parent_keeps_it() {
    let _cpu = exclusive_cpu();
    let kadvisor = Kadvisor::start(&["--deleted_grace_seconds", "3"]);
    let parent = TestCgroup::new("final");
    let mut child = parent.child("short");
    let child_id = child.id().to_owned();
    // Seen by one scrape at 0 s, so its row is known; nothing of its final value
    // comes from a scrape.
    assert_eq!(usage(&kadvisor.scrape(), &child), 0.0);
    child.spawn_busy();
    // A second of CPU: the final value misses up to one tick of the killed loop's last
    // slice (kernel/src/sched.rs, "Exactness": 4 ms at HZ=250), within the 1% below.
    child.wait_for_cpu_seconds(1.0);
    child.stop_all();
    // After its last task exited, before rmdir.
    let final_kernel = child.cpu_stat_usage_seconds();
    drop(child);

    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen_removed = 0;
    loop {
        let scrape = kadvisor.scrape();
        let row = scrape.find(USAGE, &[("id", &child_id), ("cpu", "total")]);
        let Some(sample) = row.first() else { break };
        assert_close(
            "removed cgroup's final CPU vs its last cpu.stat",
            sample.value,
            final_kernel,
            0.01,
        );
        seen_removed += 1;
        assert!(
            Instant::now() < deadline,
            "the removed row outlived its grace"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        seen_removed >= 2,
        "the removed row was shown {seen_removed} times"
    );
    // Retired: the parent's own cpu.stat still holds the child's time, and so do we.
    let after = kadvisor.scrape();
    let parent_usage = usage(&after, &parent);
    assert!(
        parent_usage >= final_kernel * 0.99,
        "parent {parent_usage} s lost the child's {final_kernel} s"
    );
    assert_close(
        "parent after retirement vs its cpu.stat",
        parent_usage,
        parent.cpu_stat_usage_seconds(),
        0.01,
    );
}
