//! 10,000 cgroups created and removed while kadvisor scrapes: its kernel map entries,
//! open files, inotify watches and runtime cache come back within 10% of where they
//! started, and neither its live heap nor its RSS grows wave after wave.
//!
//! The leak this test found: cgroupfs keeps an inotify watch on a removed cgroup's
//! directory (no `IN_IGNORED` comes), so kadvisor kept one watch in the kernel and one
//! path in its watcher per cgroup ever seen: +10,000 watches and ~60 B of live heap per
//! removed cgroup here (RSS +130..160 B per cgroup with the fragmentation it caused).
//!
//! A leak is judged on the live heap (`kadvisor_heap_in_use_bytes`, glibc's count of
//! bytes allocated and not freed), not on RSS: RSS also holds the free memory glibc
//! keeps, which moves by megabytes with when it last returned pages (see
//! `discovery`'s churn tests). The live heap after each wave, with the same rows, moves
//! by a few tens of KiB with nothing leaking; 512 KiB over the 7,500 cgroups after the
//! first wave fails a leak of ~70 B per cgroup.
//!
//! RSS is not compared with the cold start: the first wave raises the process's
//! high-water mark (the heap pages and the malloc arena that held the peak's rows are
//! kept for reuse, not returned; smaps shows it in [heap] and one arena, measured
//! +1.5 to +2.3 MiB for 500 rows in `discovery`). That is bounded by the peak rows,
//! not by the cgroups seen: the three later waves of the same shape (7,500 more
//! cgroups) must leave RSS within 10% of where the first left it, plus
//! `RSS_ALLOCATOR_SLACK`: with the live heap flat (+16..+100 KiB), settled RSS still
//! moved by up to +0.5 MiB on this host and +0.2, +1.1, +1.3, +1.7 MiB in four runs
//! under TCG (6.1: 8.2 -> 9.9 MiB, a release build whose 10% is 0.8 MiB): pages glibc
//! keeps partly used, which `malloc_trim` cannot return. The live heap bound above is
//! what catches a leak.
use std::time::Duration;

use kadvisor_tests::{
    cgroup::TestCgroup,
    exclusive_cpu,
    kadvisor::{Kadvisor, open_fds, rss_bytes},
    scrape::Scrape,
};

/// 4 waves of 5 batches of 500: every batch is created, scraped, removed and retired
/// before the next, so every wave peaks at the same 500 rows.
const WAVES: usize = 4;
const BATCHES_PER_WAVE: usize = 5;
const BATCH: usize = 500;
/// Removed rows retire at the next sweep (every second).
const GRACE_SECONDS: u64 = 0;
const MIB: f64 = 1048576.0;
const KIB: f64 = 1024.0;
/// The live heap may move this much over the 7,500 cgroups after the first wave.
const HEAP_SLACK: f64 = 512.0 * KIB;
/// What settled RSS may move with the live heap flat (see the module's comment).
const RSS_ALLOCATOR_SLACK: f64 = 3.0 * MIB;

fn list(values: &[f64], unit: f64, decimals: usize) -> String {
    values
        .iter()
        .map(|v| format!("{:.*}", decimals, v / unit))
        .collect::<Vec<_>>()
        .join(", ")
}

/// inotify watches the process holds, as the kernel lists them (`fdinfo`): each one
/// counts against `fs.inotify.max_user_watches`.
fn inotify_watches(pid: u32) -> f64 {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return 0.0;
    };
    fds.flatten()
        .map(|fd| {
            std::fs::read_to_string(fd.path()).map_or(0, |info| {
                info.lines()
                    .filter(|l| l.starts_with("inotify wd:"))
                    .count()
            })
        })
        .sum::<usize>() as f64
}

/// Live heap bytes at a scrape (`kadvisor_heap_in_use_bytes`).
fn heap_in_use(scrape: &Scrape) -> f64 {
    scrape.value("kadvisor_heap_in_use_bytes", &[])
}

fn total(scrape: &Scrape, name: &str) -> f64 {
    scrape.find(name, &[]).iter().map(|s| s.value).sum()
}

/// `end` within 10% of `start` (and a small absolute slack for counts near zero).
fn assert_back(what: &str, start: f64, end: f64, slack: f64) {
    assert!(
        end <= start * 1.1 + slack,
        "{what}: {start} at start, {end} after the churn (> 10% more)"
    );
}

/// RSS and live heap once kadvisor has settled: the 10 s after which ids the tree
/// never saw are reclaimed from the maps, then a scrape (the one whose body it holds).
fn settled(kadvisor: &Kadvisor) -> (f64, f64) {
    std::thread::sleep(Duration::from_secs(12));
    kadvisor.scrape();
    let heap = heap_in_use(&kadvisor.scrape());
    (rss_bytes(kadvisor.pid()) as f64, heap)
}

/// `BATCH` cgroups created, scraped while they exist, removed, and scraped until
/// kadvisor has retired their rows (grace period over); the rows seen.
fn churn_batch(kadvisor: &Kadvisor, parent: &TestCgroup, name: &str) -> f64 {
    let dirs: Vec<_> = (0..BATCH)
        .map(|i| parent.path().join(format!("c{name}-{i}")))
        .collect();
    for dir in &dirs {
        std::fs::create_dir(dir).expect("mkdir");
    }
    let rows = total(&kadvisor.scrape(), "kadvisor_rows");
    for dir in &dirs {
        std::fs::remove_dir(dir).expect("rmdir");
    }
    kadvisor.scrape_until(Duration::from_secs(30), "the batch retired", |s| {
        s.value("kadvisor_rows", &[("state", "removed")]) == 0.0
            && s.find("container_cpu_usage_seconds_total", &[])
                .iter()
                .all(|s| !s.labels["id"].starts_with(&format!("{}/c{name}-", parent.id())))
    });
    rows
}

#[test]
fn ten_thousand_cgroups_come_and_go_without_growing_kadvisor() {
    let _cpu = exclusive_cpu();
    let parent = TestCgroup::new("faults-churn");
    // Only this test's cgroups: on a shared machine other tests' cgroups (a thousand
    // at times) would come and go in the rows, fds and maps measured here.
    let include = format!("{}/**", parent.id());
    let kadvisor = Kadvisor::start(&[
        "--deleted_grace_seconds",
        &GRACE_SECONDS.to_string(),
        "--include_cgroups",
        &include,
    ]);
    let pid = kadvisor.pid();
    // Cold start: the baseline is the second scrape (the first one sizes the scrape
    // buffers for this machine's cgroups).
    kadvisor.scrape();
    let start = kadvisor.scrape();
    let (rss_start, fds_start, watches_start) = (
        rss_bytes(pid) as f64,
        open_fds(pid) as f64,
        inotify_watches(pid),
    );
    let (mut rows_peak, mut rss_peak) = (0.0_f64, rss_start);
    let (mut rss_after_wave, mut heap_after_wave) = (Vec::new(), Vec::new());
    let (mut rss_first_settled, mut heap_first_settled) = (0.0, 0.0);
    for wave in 0..WAVES {
        for batch in 0..BATCHES_PER_WAVE {
            rows_peak = rows_peak.max(churn_batch(&kadvisor, &parent, &format!("{wave}-{batch}")));
            rss_peak = rss_peak.max(rss_bytes(pid) as f64);
        }
        heap_after_wave.push(heap_in_use(&kadvisor.scrape()));
        rss_after_wave.push(rss_bytes(pid) as f64);
        rss_peak = rss_peak.max(rss_bytes(pid) as f64);
        if wave == 0 {
            (rss_first_settled, heap_first_settled) = settled(&kadvisor);
        }
    }
    let (rss_end, heap_end) = settled(&kadvisor);
    let end = kadvisor.scrape();
    let (fds_end, watches_end) = (open_fds(pid) as f64, inotify_watches(pid));
    eprintln!(
        "figures: {} cgroups in {WAVES} waves of {BATCHES_PER_WAVE} batches of {BATCH}; rows peak {rows_peak}; \
         RSS cold start {:.1} MiB, after each wave {}, peak {:.1}, settled after the first wave {:.1}, at the end {:.1}; \
         live heap KiB at the start {:.0}, after each wave {}, settled after the first wave {:.0}, at the end {:.0}; \
         fds {fds_start} -> {fds_end}; inotify watches {watches_start} -> {watches_end}; \
         map entries {} -> {}; runtime cache {} -> {}",
        WAVES * BATCHES_PER_WAVE * BATCH,
        rss_start / MIB,
        list(&rss_after_wave, MIB, 1),
        rss_peak / MIB,
        rss_first_settled / MIB,
        rss_end / MIB,
        heap_in_use(&start) / KIB,
        list(&heap_after_wave, KIB, 0),
        heap_first_settled / KIB,
        heap_end / KIB,
        total(&start, "kadvisor_map_entries"),
        total(&end, "kadvisor_map_entries"),
        total(&start, "kadvisor_runtime_cache_entries"),
        total(&end, "kadvisor_runtime_cache_entries"),
    );
    assert!(
        rows_peak >= BATCH as f64,
        "a batch was exported: {rows_peak} rows"
    );
    for sample in start.find("kadvisor_map_entries", &[]) {
        let map = &sample.labels["map"];
        assert_back(
            &format!("map {map}"),
            sample.value,
            end.value("kadvisor_map_entries", &[("map", map)]),
            // Other processes on this shared machine may have run in cgroups that
            // had no entry yet (as in `discovery`'s churn test).
            5.0,
        );
    }
    assert_back(
        "runtime cache",
        total(&start, "kadvisor_runtime_cache_entries"),
        total(&end, "kadvisor_runtime_cache_entries"),
        0.0,
    );
    assert_back("open files", fds_start, fds_end, 2.0);
    assert_back("inotify watches", watches_start, watches_end, 2.0);
    assert!(
        heap_end <= heap_first_settled + HEAP_SLACK,
        "live heap grew by {:.0} KiB over the cgroups after the first wave \
         ({:.0} -> {:.0} KiB; after each wave {} KiB): a leak of ~{:.0} B per cgroup",
        (heap_end - heap_first_settled) / KIB,
        heap_first_settled / KIB,
        heap_end / KIB,
        list(&heap_after_wave, KIB, 0),
        (heap_end - heap_first_settled) / ((WAVES - 1) * BATCHES_PER_WAVE * BATCH) as f64,
    );
    // The high-water mark is set by the peak rows, not by the cgroups seen: no wave
    // may leave RSS above what the first wave's 500 rows may raise it to.
    for (wave, rss) in rss_after_wave.iter().enumerate() {
        assert!(
            *rss <= rss_start + 4.0 * MIB,
            "wave {} of 2,500 cgroups left RSS at {:.1} MiB, cold start {:.1}",
            wave + 1,
            rss / MIB,
            rss_start / MIB,
        );
    }
    assert_back(
        "RSS settled after 10,000 cgroups vs after the first 2,500",
        rss_first_settled,
        rss_end,
        RSS_ALLOCATOR_SLACK,
    );
    assert_eq!(
        end.find("container_cpu_usage_seconds_total", &[])
            .iter()
            .filter(|s| s.labels["id"].starts_with(parent.id()) && s.labels["id"] != parent.id())
            .count(),
        0,
        "every churned row retired"
    );
}
