//! Run-queue delay and run periods from the scrape-time task pass (live tasks) and
//! `sched_process_exit` (exited tasks), checked against the kernel's per-task
//! accounting (`/proc/<pid>/schedstat`) of the same processes.
use std::time::Duration;

use kadvisor_tests::{
    assert_close,
    cgroup::TestCgroup,
    exclusive_cpu,
    kadvisor::{ALL_GROUPS, Kadvisor},
    scrape::Scrape,
};

const RUN: &str = "container_cpu_schedstat_run_seconds_total";
const RUNQUEUE: &str = "container_cpu_schedstat_runqueue_seconds_total";
const PERIODS: &str = "container_cpu_schedstat_run_periods_total";

fn ours(scrape: &Scrape, cg: &TestCgroup) -> (f64, f64, f64) {
    let v = |name| scrape.value(name, &[("id", cg.id())]);
    (v(RUN), v(RUNQUEUE), v(PERIODS))
}

/// Runs `n` busy loops in a new cgroup for 2 s; returns (kadvisor's gain, the
/// processes' own schedstat gain) as (run s, run-queue s, periods). Both sides are
/// read while the loops are stopped (SIGSTOP), so they describe the same interval
/// however long a scrape takes on a loaded machine.
fn busy(kadvisor: &Kadvisor, n: usize) -> ((f64, f64, f64), (f64, f64, f64)) {
    let mut cg = TestCgroup::new(&format!("busy-{n}"));
    for _ in 0..n {
        cg.spawn_busy();
    }
    std::thread::sleep(Duration::from_millis(200));
    cg.freeze_started();
    let (k0, s0) = (
        ours(&kadvisor.scrape(), &cg),
        cg.started_processes_schedstat(),
    );
    cg.thaw_started();
    std::thread::sleep(Duration::from_secs(2));
    cg.freeze_started();
    let (k1, s1) = (
        ours(&kadvisor.scrape(), &cg),
        cg.started_processes_schedstat(),
    );
    let kernel = (
        (s1.0 - s0.0) as f64 / 1e9,
        (s1.1 - s0.1) as f64 / 1e9,
        (s1.2 - s0.2) as f64,
    );
    ((k1.0 - k0.0, k1.1 - k0.1, k1.2 - k0.2), kernel)
}

#[test]
fn run_queue_delay_grows_when_three_share_two_cpus() {
    let _cpu = exclusive_cpu();
    let kadvisor = Kadvisor::start(&ALL_GROUPS);
    assert!(
        kadvisor.scrape().text.contains(RUNQUEUE),
        "schedstat families missing: is the task_pass iterator attached?"
    );

    let (one, one_kernel) = busy(&kadvisor, 1);
    let (three, three_kernel) = busy(&kadvisor, 3);
    eprintln!("1 loop: ours {one:?} schedstat {one_kernel:?}");
    eprintln!("3 loops: ours {three:?} schedstat {three_kernel:?}");

    // 3 busy loops on 2 CPUs: at any time one of them waits, ~1 s per second.
    assert!(
        three.1 > 0.5,
        "3 busy loops on 2 CPUs waited only {} s in 2 s",
        three.1
    );
    // One alone waits only when other work on this shared machine takes its CPU
    // (~0 on an idle machine); three wait for each other on top of that.
    assert!(
        three.1 > 2.0 * one.1,
        "one busy loop waited {} s, three waited {} s",
        one.1,
        three.1
    );
    // Same numbers as the kernel's per-task schedstat (both read while the loops
    // are stopped).
    assert_close(
        "3 loops: run-queue vs schedstat",
        three.1,
        three_kernel.1,
        0.05,
    );
    assert_close("3 loops: run vs schedstat", three.0, three_kernel.0, 0.05);
    assert_close(
        "3 loops: periods vs schedstat",
        three.2,
        three_kernel.2,
        0.05,
    );
    assert_close("1 loop: run vs schedstat", one.0, one_kernel.0, 0.05);
    assert!(
        (one.1 - one_kernel.1).abs() < 0.02 + 0.05 * one_kernel.1,
        "1 loop: run-queue {} s vs schedstat {} s",
        one.1,
        one_kernel.1
    );
}

#[test]
fn run_seconds_equal_usage() {
    let kadvisor = Kadvisor::start(&ALL_GROUPS);
    let scrape = kadvisor.scrape();
    assert!(scrape.value(RUN, &[("id", "/")]) > 0.0);
    for sample in scrape.find(RUN, &[]) {
        let id = &sample.labels["id"];
        let usage = scrape.value(
            "container_cpu_usage_seconds_total",
            &[("id", id), ("cpu", "total")],
        );
        assert_eq!(
            sample.value, usage,
            "{id}: run seconds are the usage counter"
        );
    }
}

#[test]
fn counters_keep_exited_processes_and_never_decrease() {
    let _cpu = exclusive_cpu();
    let kadvisor = Kadvisor::start(&ALL_GROUPS);
    let mut cg = TestCgroup::new("exits");
    let start = ours(&kadvisor.scrape(), &cg);
    let mut last = start;
    let check = |last: &mut (f64, f64, f64), scrape: (f64, f64, f64)| {
        assert!(
            scrape.0 >= last.0 && scrape.1 >= last.1 && scrape.2 >= last.2,
            "a counter decreased: {last:?} -> {scrape:?}"
        );
        *last = scrape;
    };
    let mut kernel_total = (0.0, 0.0);
    for round in 0..2 {
        for _ in 0..3 {
            cg.spawn_busy();
        }
        for _ in 0..4 {
            std::thread::sleep(Duration::from_millis(500));
            check(&mut last, ours(&kadvisor.scrape(), &cg));
        }
        cg.freeze_started();
        let (_, delay, periods) = cg.started_processes_schedstat();
        kernel_total.0 += delay as f64 / 1e9;
        kernel_total.1 += periods as f64;
        check(&mut last, ours(&kadvisor.scrape(), &cg));
        // Stopped processes neither run nor wait: killed, they exit with these values.
        cg.stop_all();
        for _ in 0..3 {
            check(&mut last, ours(&kadvisor.scrape(), &cg));
        }
        eprintln!("round {round}: ours {last:?}, processes' schedstat {kernel_total:?}");
    }
    // Both rounds' processes are gone: what they had is still counted.
    assert!(
        kernel_total.0 > 0.5,
        "3 loops on 2 CPUs waited {} s",
        kernel_total.0
    );
    assert_close(
        "exited processes' run-queue time",
        last.1 - start.1,
        kernel_total.0,
        0.05,
    );
    assert_close(
        "exited processes' run periods",
        last.2 - start.2,
        kernel_total.1,
        0.05,
    );
}
