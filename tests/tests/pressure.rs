//! PSI, start time and last-seen families, checked against the cgroup's own
//! `*.pressure` files and the wall clock.
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kadvisor_tests::{
    cgroup::TestCgroup,
    kadvisor::{ALL_GROUPS, Kadvisor},
};

fn psi_total(text: &str, line: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(line))
        .and_then(|l| l.split(' ').find_map(|f| f.strip_prefix("total=")))
        .unwrap_or_else(|| panic!("no {line} total in {text}"))
        .parse::<f64>()
        .unwrap()
        / 1e6
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
fn pressure_equals_the_cgroups_pressure_files() {
    let kadvisor = Kadvisor::start(&ALL_GROUPS);
    let mut cg = TestCgroup::new("psi");
    // Three busy loops on two CPUs stall each other: cpu "some" pressure grows.
    for _ in 0..3 {
        cg.spawn_busy();
    }
    std::thread::sleep(Duration::from_secs(1));
    cg.stop_all();

    let before: Vec<String> = ["cpu", "memory", "io"]
        .iter()
        .map(|r| cg.read_v2(&format!("{r}.pressure")))
        .collect();
    let scrape = kadvisor.scrape();
    let after: Vec<String> = ["cpu", "memory", "io"]
        .iter()
        .map(|r| cg.read_v2(&format!("{r}.pressure")))
        .collect();
    for (i, resource) in ["cpu", "memory", "io"].iter().enumerate() {
        for (kind, line) in [("waiting", "some "), ("stalled", "full ")] {
            let name = format!("container_pressure_{resource}_{kind}_seconds_total");
            let ours = scrape.value(&name, &[("id", cg.id())]);
            let (lo, hi) = (psi_total(&before[i], line), psi_total(&after[i], line));
            assert!(
                lo <= ours && ours <= hi,
                "{name}: {ours} not within the file's {lo}..{hi}"
            );
        }
    }
    let cpu_waiting = scrape.value(
        "container_pressure_cpu_waiting_seconds_total",
        &[("id", cg.id())],
    );
    assert!(cpu_waiting > 0.0, "3 loops on 2 CPUs left no CPU pressure");
}

#[test]
fn start_time_is_creation_and_last_seen_is_now() {
    let kadvisor = Kadvisor::start(&ALL_GROUPS);
    let created = now();
    let cg = TestCgroup::new("start");
    // The runtime's first lookup of a new cgroup, as runc's cgroup.procs write does.
    let _ = cg.read_v2("cgroup.procs");
    let requested = now();
    let scrape = kadvisor.scrape();
    let scraped = now();
    let start = scrape.value("container_start_time_seconds", &[("id", cg.id())]);
    assert!(
        created.floor() - 1.0 <= start && start <= scraped,
        "start time {start} outside {created}..{scraped}"
    );
    // The whole second of an instant inside the scrape, however long the scrape takes
    // (over a second under qemu's TCG while the other test's busy loops run).
    let seen = scrape.value("container_last_seen", &[("id", cg.id())]);
    assert!(
        requested.floor() <= seen && seen <= scraped,
        "last seen {seen} outside the scrape's {requested}..{scraped}"
    );
}
