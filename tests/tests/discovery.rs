//! Event-driven discovery and reclaiming removed cgroups: a new cgroup is exported
//! within 1 s without a walk per scrape; a removed one stays for the grace period and
//! then disappears; under churn, map entries and memory come back to where they were.
use std::{
    collections::HashMap,
    os::unix::process::ExitStatusExt as _,
    process::Command,
    time::{Duration, Instant},
};

use kadvisor_tests::{
    cgroup::TestCgroup,
    exclusive_cpu,
    kadvisor::{ALL_GROUPS, Kadvisor},
    scrape::Scrape,
};

const USAGE: &str = "container_cpu_usage_seconds_total";
const OOM: &str = "container_oom_events_total";

fn walks(scrape: &Scrape) -> f64 {
    scrape.value("kadvisor_cgroup_walks_total", &[])
}

#[test]
fn new_cgroup_is_exported_within_a_second_without_a_walk() {
    let kadvisor = Kadvisor::start(&[]);
    let walks_before = walks(&kadvisor.scrape());
    let created = Instant::now();
    let cg = TestCgroup::new("appears");
    let seen_after = loop {
        let scrape = kadvisor.scrape();
        if scrape.find(USAGE, &[("id", cg.id())]).len() == 1 {
            assert_eq!(
                walks(&scrape),
                walks_before,
                "found by an event, not a walk"
            );
            break created.elapsed();
        }
        assert!(
            created.elapsed() < Duration::from_secs(1),
            "{} not exported within 1 s",
            cg.id()
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    eprintln!("new cgroup exported {seen_after:?} after mkdir");
}

#[test]
fn removed_cgroup_row_lasts_exactly_the_grace_period() {
    // Not beside the churn: 500 rows make every scrape of the VM's emulated CPUs
    // slow enough to cross the 1 s margin below.
    let _cpu = exclusive_cpu();
    let kadvisor = Kadvisor::start(&["--deleted_grace_seconds", "4"]);
    let parent = TestCgroup::new("grace");
    let mut child = parent.child("gone");
    child.spawn_busy();
    std::thread::sleep(Duration::from_millis(500));
    child.stop_all();
    let id = child.id().to_owned();
    let final_value = child.cpu_stat_usage_seconds();
    drop(child);
    let removed = Instant::now();
    // The removal is seen by an event; the row keeps its final value.
    std::thread::sleep(Duration::from_millis(300));
    let during = kadvisor.scrape();
    let exported = during.value(USAGE, &[("id", &id)]);
    kadvisor_tests::assert_close(
        "removed row keeps its final CPU",
        exported,
        final_value,
        0.02,
    );
    assert!(
        during.value("kadvisor_rows", &[("state", "removed")]) >= 1.0,
        "the removed row is counted"
    );
    std::thread::sleep(
        (removed + Duration::from_secs(3)).saturating_duration_since(Instant::now()),
    );
    assert_eq!(
        kadvisor.scrape().find(USAGE, &[("id", &id)]).len(),
        1,
        "still in grace"
    );
    std::thread::sleep(
        (removed + Duration::from_secs(6)).saturating_duration_since(Instant::now()),
    );
    let after = kadvisor.scrape();
    assert!(
        after.find(USAGE, &[("id", &id)]).is_empty(),
        "outlived the grace period"
    );
    // Retired into the parent: its row still holds the child's time, as the kernel
    // counted it (the child's own cpu.stat before removal). Not against `exported`,
    // which may lie up to 2% above that (the exit hook's total, checked above).
    let parent_value = after.value(USAGE, &[("id", parent.id())]);
    assert!(
        parent_value >= final_value * 0.99,
        "parent lost the retired child's CPU: parent {parent_value}, child's final \
         cpu.stat {final_value}, exported while in grace {exported}"
    );
    kadvisor_tests::assert_close(
        "parent vs its cpu.stat after the child was retired",
        after.value(USAGE, &[("id", parent.id())]),
        parent.cpu_stat_usage_seconds(),
        0.02,
    );
}

/// The maps keyed by cgroup id, whose entries of a removed cgroup must be reclaimed.
const PER_CGROUP_MAPS: [&str; 4] = ["CGROUP_CPU", "CGROUP_CRASHES", "CGROUP_NET", "CGROUP_OOM"];
/// Every `OOM_EVERY`th churned cgroup is OOM-killed.
const OOM_EVERY: usize = 50;

/// What one churn run leaves: scrapes from before and after it, and what it did.
struct ChurnRun {
    start: Scrape,
    /// One scrape after each round of churn, once its rows have expired.
    after_round: Vec<Scrape>,
    /// kadvisor's highest RSS seen in each round (sampled every 100 cgroups, with all
    /// 500 live and right after their removal).
    peak_rss: Vec<f64>,
    end: Scrape,
    ids: Vec<String>,
    peak_entries: HashMap<&'static str, f64>,
    kills: u64,
}

/// Runs the churn once per configuration and test process: with every metric group
/// on for the maps test (the opt-in socket programs fill CGROUP_NET, whose entries of
/// removed cgroups must be reclaimed like the others), with the defaults for the RSS
/// test (what a user runs), which churns four times: the first round raises the
/// process's high-water mark (500 live rows at the peak), the later ones must not.
fn churn_run(every_group: bool) -> &'static ChurnRun {
    static EVERY_GROUP: std::sync::OnceLock<ChurnRun> = std::sync::OnceLock::new();
    static DEFAULTS: std::sync::OnceLock<ChurnRun> = std::sync::OnceLock::new();
    let run = if every_group { &EVERY_GROUP } else { &DEFAULTS };
    run.get_or_init(|| {
        let _cpu = exclusive_cpu();
        const GRACE: u64 = 3;
        let grace = GRACE.to_string();
        let mut args = vec!["--deleted_grace_seconds", grace.as_str()];
        if every_group {
            args.extend(ALL_GROUPS);
        }
        let kadvisor = Kadvisor::start(&args);
        // Cold start: the baseline is the second scrape (the first one sizes the
        // scrape buffers for this machine's cgroups), before any churn.
        kadvisor.scrape();
        let start = kadvisor.scrape();
        let rounds = if every_group { 1 } else { 4 };
        let mut after_round = Vec::new();
        let mut peak_rss = Vec::new();
        let (mut ids, mut peak_entries, mut kills) = (Vec::new(), HashMap::new(), 0);
        for round in 0..rounds {
            (ids, peak_entries, kills) = churn(&kadvisor, &format!("churn{round}"));
            peak_rss.push(peak_entries[RSS]);
            // The grace period, plus the 10 s after which ids that the tree never saw
            // (a cgroup gone before its mkdir event was handled) are reclaimed.
            std::thread::sleep(Duration::from_secs(GRACE.max(10) + 3));
            after_round.push(kadvisor.scrape());
        }
        let end = after_round.pop().expect("at least one round");
        ChurnRun {
            start,
            after_round,
            peak_rss,
            end,
            ids,
            peak_entries,
            kills,
        }
    })
}

const RSS: &str = "process_resident_memory_bytes";

fn rss(s: &Scrape) -> f64 {
    s.value(RSS, &[])
}

/// kadvisor holding 500 rows, then none, four times: its memory must not grow wave
/// after wave. Leaked memory is in use at every later peak (all 500 rows live), so
/// the lower of the last two waves' peaks must stay within 4 MiB of the first
/// wave's (a leak of 3 KiB per removed cgroup adds that by the third wave). 2 MiB
/// failed once on 6.12 under TCG with nothing leaking: peaks 14.8, 15.2, 17.3, 17.3
/// (a high-water mark that stepped up once and stayed).
///
/// The lower of two, not the last: a peak sample moves by up to 5 MiB from wave to
/// wave with nothing leaking, upwards when it catches a scrape's buffers or pages
/// glibc has not yet returned. Measured on this host, peaks 12.3, 12.8, 14.0, 13.1,
/// 14.0, 13.8, 13.6, 12.9 MiB over eight waves (and 12.9, 13.3, 12.8, 18.7 in another
/// run; the lower of the last two was at most 0.8 MiB above the first in five runs
/// here and one on 6.1). RSS between waves is printed, not asserted: it depends on
/// when glibc last returned free pages (`heap::release_free_memory` after a sweep),
/// 10.2, 9.8, 10.0,
/// 10.1, 10.1, 10.2, 10.3, 10.3 in the eight-wave run but 9.3, 9.5, 11.5, 12.5 in a
/// four-wave one, and under qemu's TCG on 6.12 18.2, 19.3, 12.5, 17.9. Nor is the cold
/// start a baseline: what the first wave adds depends on how many cgroups the node had
/// before (17.0 → 18.5–19.4 MiB on this host when it had hundreds, 8.0 → 18.2 on the
/// 6.12 node with a dozen).
#[test]
fn churn_of_500_cgroups_does_not_grow_rss_wave_after_wave() {
    let ChurnRun {
        start,
        after_round,
        peak_rss,
        end,
        ..
    } = churn_run(false);
    let mib = |bytes: f64| bytes / f64::from(1 << 20);
    let after: Vec<f64> = after_round.iter().chain([end]).map(rss).collect();
    let list = |values: &[f64]| {
        values
            .iter()
            .map(|v| format!("{:.1}", mib(*v)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    eprintln!(
        "rss {:.1} MiB at start; peaks {}; after the waves {}",
        mib(rss(start)),
        list(peak_rss),
        list(&after),
    );
    assert_eq!(peak_rss.len(), 4, "four waves");
    let last_two = peak_rss[2].min(peak_rss[3]);
    assert!(
        mib(last_two) <= mib(peak_rss[0]) + 4.0,
        "RSS with 500 live rows grew wave after wave: peaks {} MiB",
        list(peak_rss)
    );
}

#[test]
fn churn_of_500_cgroups_leaves_maps_where_they_were() {
    let ChurnRun {
        start,
        end,
        ids,
        peak_entries,
        kills,
        ..
    } = churn_run(true);
    let (start, end, kills) = (start, end, *kills);
    let entries = |s: &Scrape, map: &str| s.value("kadvisor_map_entries", &[("map", map)]);
    let live = |s: &Scrape| s.value("kadvisor_rows", &[("state", "live")]);
    let root_kills = |s: &Scrape| s.value(OOM, &[("id", "/")]);
    for map in PER_CGROUP_MAPS {
        eprintln!(
            "{map} entries {} → peak {} → {}",
            entries(start, map),
            peak_entries[map],
            entries(end, map),
        );
    }
    eprintln!("{kills} OOM kills");
    for (map, min_growth) in [("CGROUP_CPU", 450.0), ("CGROUP_NET", 400.0)] {
        assert!(
            peak_entries[map] >= entries(start, map) + min_growth,
            "the churn made {map} entries"
        );
    }
    assert!(
        peak_entries["CGROUP_OOM"] >= entries(start, "CGROUP_OOM") + 10.0,
        "the churn made CGROUP_OOM entries"
    );
    for id in ids {
        assert!(
            end.find(USAGE, &[("id", id)]).is_empty(),
            "{id} outlived the grace period"
        );
    }
    let retired: f64 = end
        .find("kadvisor_retired_cgroups_total", &[])
        .iter()
        .map(|s| s.value)
        .sum();
    assert!(retired >= 500.0, "only {retired} cgroups retired");
    // The churned cgroups were children of the root: their kills were folded into it
    // and are not lost with their map entries.
    assert!(
        root_kills(end) - root_kills(start) >= kills as f64,
        "root OOM events {} → {} after {kills} kills in retired cgroups",
        root_kills(start),
        root_kills(end)
    );
    // Every remaining entry belongs to a cgroup kadvisor still exports (none leaked).
    // The other tests of this binary run in parallel in the same cgroup tree: a cgroup
    // of theirs gone before its event was read is an unknown id until it is reclaimed
    // (10 s), so allow a handful, as below; a leak of the churn would be hundreds.
    let rows = live(end) + end.value("kadvisor_rows", &[("state", "removed")]);
    for map in PER_CGROUP_MAPS {
        assert!(
            entries(end, map) <= rows + 5.0,
            "{} {map} entries for {rows} known cgroups",
            entries(end, map)
        );
        // Back to where they started. Other processes on this shared machine may have
        // run in cgroups that had no entry yet: allow a handful beyond the 10%.
        let allowed = (entries(start, map) * 1.1).max(entries(start, map) + 5.0);
        assert!(
            entries(end, map) <= allowed,
            "{map} entries {} → {} (allowed {allowed})",
            entries(start, map),
            entries(end, map)
        );
    }
}

#[test]
fn recreated_path_starts_from_zero_like_the_kernel() {
    let kadvisor = Kadvisor::start(&[]);
    let parent = TestCgroup::new("recreate");
    let mut first = parent.child("svc");
    first.spawn_busy();
    std::thread::sleep(Duration::from_millis(500));
    first.stop_all();
    let path = first.path().to_owned();
    let id = first.id().to_owned();
    assert!(kadvisor.scrape().value(USAGE, &[("id", &id)]) > 0.0);
    drop(first);
    // A restarted service: same path, new directory, inside the grace period.
    std::fs::create_dir(&path).unwrap();
    let scrape = kadvisor.scrape();
    let again = scrape.value(USAGE, &[("id", &id)]);
    let kernel = std::fs::read_to_string(path.join("cpu.stat")).unwrap();
    std::fs::remove_dir(&path).unwrap();
    assert!(
        again < 0.01,
        "the new cgroup at {id} shows {again} s; the kernel's cpu.stat says:\n{kernel}"
    );
    kadvisor_tests::assert_close(
        "parent keeps the old cgroup's time",
        scrape.value(USAGE, &[("id", parent.id())]),
        parent.cpu_stat_usage_seconds(),
        0.02,
    );
}

/// A pod-like cgroup with a container below it, both removed and the pod recreated
/// at the same path inside the grace period (a restarted pod, a recreated slice):
/// the new cgroup starts from zero like the kernel's own files, also for the counters
/// kadvisor sums up the tree itself (crashes here). The old child's crash stayed on
/// the new parent during the grace period (through its path) and after it (folded
/// into the retired total kept under that path).
#[test]
fn a_recreated_parent_does_not_inherit_its_old_childrens_counters() {
    const GRACE: u64 = 2;
    let grace = GRACE.to_string();
    let mut args = vec!["--deleted_grace_seconds", grace.as_str()];
    args.extend(ALL_GROUPS);
    let kadvisor = Kadvisor::start(&args);
    let top = TestCgroup::new("recreate-tree");
    let pod = top.child("pod");
    let mut container = pod.child("c");
    container.spawn(
        Command::new("/usr/bin/python3")
            .args(["-c", "import ctypes; ctypes.string_at(0)"])
            .stderr(std::process::Stdio::null()),
    );
    assert_eq!(
        container.wait_all()[0].signal(),
        Some(libc::SIGSEGV),
        "the workload crashes"
    );
    let crashes = |scrape: &Scrape, id: &str| -> f64 {
        scrape
            .find("container_crashes_total", &[("id", id)])
            .iter()
            .map(|s| s.value)
            .sum()
    };
    let before = kadvisor.scrape();
    assert_eq!(
        crashes(&before, pod.id()),
        1.0,
        "the pod counts its child's crash"
    );
    let pod_id = pod.id().to_owned();
    let pod_path = pod.path().to_owned();
    drop(container);
    drop(pod);
    std::fs::create_dir(&pod_path).unwrap();

    let during = kadvisor.scrape();
    // Past the grace period: the old cgroups are retired (at the next scrape's sweep).
    std::thread::sleep(Duration::from_secs(GRACE + 1));
    let after = kadvisor.scrape();
    let _ = kadvisor.scrape();
    let later = kadvisor.scrape();
    std::fs::remove_dir(&pod_path).unwrap();
    for (when, scrape) in [("during", &during), ("after", &after), ("later", &later)] {
        assert_eq!(
            crashes(scrape, &pod_id),
            0.0,
            "{when} the grace period, the recreated {pod_id} shows its predecessor's child's crash"
        );
        assert_eq!(
            crashes(scrape, top.id()),
            1.0,
            "{when} the grace period, the top keeps the old crash"
        );
    }
}

/// 500 cgroups, each loaded with a process that sends one packet on loopback (a
/// `CGROUP_NET` entry), every `OOM_EVERY`th OOM-killed instead under a 32 MiB
/// limit (a `CGROUP_OOM` entry); all 500 exist at once (rows at their peak), then all
/// are removed; scrapes in between. Returns their ids, the largest entry count seen
/// per map, and the kills the kernel counted.
fn churn(kadvisor: &Kadvisor, name: &str) -> (Vec<String>, HashMap<&'static str, f64>, u64) {
    let mut cgroups = Vec::new();
    let mut peak_entries: HashMap<&'static str, f64> = HashMap::new();
    let mut kills = 0;
    let mut scrape = || {
        let scrape = kadvisor.scrape();
        let peak = peak_entries.entry(RSS).or_default();
        *peak = peak.max(rss(&scrape));
        for map in PER_CGROUP_MAPS {
            let n = scrape.value("kadvisor_map_entries", &[("map", map)]);
            let peak = peak_entries.entry(map).or_default();
            *peak = peak.max(n);
        }
    };
    for i in 0..500 {
        let name = format!("{name}-{i}");
        if i % OOM_EVERY == 0 {
            let mut cg = TestCgroup::with_v1_controllers(&name, &["memory"]);
            kills += oom_kill_in(&mut cg);
            cgroups.push(cg);
            continue;
        }
        let mut cg = TestCgroup::new(&name);
        // A TCP SYN to a closed loopback port (answered by a RST): one packet out of
        // a socket of this cgroup. busybox's nc, present on the host (images) and in
        // the kernel-matrix initramfs alike.
        cg.spawn(Command::new("sh").args([
            "-c",
            "busybox nc 127.0.0.1 9 </dev/null 2>/dev/null; exec sleep 1000",
        ]));
        cgroups.push(cg);
        if i % 100 == 99 {
            scrape();
        }
    }
    // Every packet is out once each shell has become `sleep`.
    let deadline = Instant::now() + Duration::from_secs(120);
    for pid in cgroups.iter().flat_map(TestCgroup::started_pids) {
        while std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .is_ok_and(|c| c.trim() != "sleep")
        {
            assert!(Instant::now() < deadline, "{pid} did not reach sleep");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    scrape();
    let ids = cgroups.iter().map(|cg| cg.id().to_owned()).collect();
    drop(cgroups);
    scrape();
    (ids, peak_entries, kills)
}

/// Runs a workload touching 64 MiB under a 32 MiB limit (no swap) in `cg`; returns
/// the kills the kernel counted for it (memory.oom_control / memory.events).
fn oom_kill_in(cg: &mut TestCgroup) -> u64 {
    const LIMIT: &str = "33554432";
    let v1 = cg.v1_dir("memory").is_some();
    let (limits, events, key) = if v1 {
        (
            [
                ("memory.limit_in_bytes", LIMIT),
                ("memory.memsw.limit_in_bytes", LIMIT),
            ],
            "memory.oom_control",
            "oom_kill ",
        )
    } else {
        (
            [("memory.max", LIMIT), ("memory.swap.max", "0")],
            "memory.events",
            "oom_kill ",
        )
    };
    for (file, value) in limits {
        cg.write_control("memory", file, value);
    }
    cg.spawn(Command::new("dd").args(["if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"]));
    let statuses = cg.wait_all();
    assert_eq!(
        statuses.iter().map(|s| s.signal()).collect::<Vec<_>>(),
        [Some(libc::SIGKILL)],
        "dd should have been OOM-killed"
    );
    cg.read_control("memory", events)
        .lines()
        .find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("oom_kill in {events}"))
}
