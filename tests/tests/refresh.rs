//! Idle-row refresh (`--max_housekeeping_interval`): a cgroup none of whose tasks ran
//! since its files were last read is served from the values read then, until they are
//! older than the maximum age; a cgroup whose tasks run is read at every scrape.
//! Checked against the cgroup's own memory controller files (v1 on a hybrid host, v2
//! on a pure v2 host).
use std::{
    fs,
    io::{BufRead as _, BufReader, Lines, Write as _},
    path::{Path, PathBuf},
    process::{ChildStdout, Command},
    time::{Duration, Instant},
};

use kadvisor_tests::{cgroup::TestCgroup, kadvisor::Kadvisor, scrape::Scrape};

const MIB: u64 = 1 << 20;

fn is_v1(cg: &TestCgroup) -> bool {
    cg.v1_dir("memory").is_some()
}

/// The cgroup's memory usage by its own file.
fn usage(cg: &TestCgroup) -> u64 {
    let file = if is_v1(cg) {
        "memory.usage_in_bytes"
    } else {
        "memory.current"
    };
    cg.read_control("memory", file)
        .trim()
        .parse()
        .expect("usage is a number")
}

fn ours(scrape: &Scrape, name: &str, cg: &TestCgroup) -> f64 {
    scrape.value(name, &[("id", cg.id())])
}

fn refreshes(scrape: &Scrape, reason: &str) -> f64 {
    scrape.value("kadvisor_row_refreshes_total", &[("reason", reason)])
}

fn next_line(lines: &mut Lines<BufReader<ChildStdout>>, want: &str) {
    match lines.next() {
        Some(Ok(line)) if line == want => {}
        other => panic!("workload did not print {want:?}: {other:?}"),
    }
}

/// Waits until every process `cg` started sleeps (state S): its CPU time is then
/// charged, and it does not run again until the test wakes it.
fn wait_asleep(cg: &TestCgroup) {
    let deadline = Instant::now() + Duration::from_secs(10);
    for pid in cg.started_pids() {
        loop {
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).expect("read stat");
            let state = stat.rsplit_once(") ").map(|(_, rest)| &rest[..1]);
            if state == Some("S") {
                break;
            }
            assert!(Instant::now() < deadline, "{pid} never slept: {stat}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A sleeping workload's cgroup keeps the values of its last read while inside the
/// maximum age (a limit written from outside is not seen yet), then is re-read.
#[test]
fn a_quiet_cgroup_is_served_from_its_last_read_until_the_max_age() {
    const MAX_AGE: Duration = Duration::from_secs(4);
    let kadvisor = Kadvisor::start(&["--max_housekeeping_interval", "4s"]);
    let mut cg = TestCgroup::with_v1_controllers("quiet", &["memory"]);
    let limit_file = if is_v1(&cg) {
        "memory.limit_in_bytes"
    } else {
        "memory.max"
    };
    let (_stdin, stdout) = cg.spawn_piped(Command::new("sh").args(["-c", "echo ready && read _"]));
    next_line(&mut BufReader::new(stdout).lines(), "ready");
    wait_asleep(&cg);

    // Each attempt: a scrape reads the (now quiet) row, a limit is written from
    // outside, and a scrape inside the maximum age must still serve the old limit.
    // An attempt whose second scrape ended outside the window (a loaded machine) is
    // inconclusive and retried.
    let mut conclusive = false;
    for attempt in 1..=5_u64 {
        let first_read = Instant::now();
        let first = kadvisor.scrape();
        let old = ours(&first, "container_spec_memory_limit_bytes", &cg);
        let new = (256 + attempt * 16) * MIB;
        cg.write_control("memory", limit_file, &new.to_string());
        let second = kadvisor.scrape();
        if first_read.elapsed() >= MAX_AGE {
            // Let the values age, so that the next attempt's first scrape re-reads.
            std::thread::sleep(MAX_AGE);
            continue;
        }
        conclusive = true;
        assert_eq!(
            ours(&second, "container_spec_memory_limit_bytes", &cg),
            old,
            "a quiet cgroup read {:?} ago is served from that read",
            first_read.elapsed()
        );
        assert!(second.value("kadvisor_rows_cached", &[]) >= 1.0);

        // After the maximum age the row is re-read: the new limit shows.
        std::thread::sleep(MAX_AGE);
        let aged = kadvisor.scrape();
        assert_eq!(
            ours(&aged, "container_spec_memory_limit_bytes", &cg),
            new as f64,
            "re-read after the maximum age"
        );
        assert!(refreshes(&aged, "max_age") > refreshes(&second, "max_age"));
        break;
    }
    assert!(
        conclusive,
        "no two scrapes within {MAX_AGE:?} in 5 attempts"
    );
}

/// A workload that allocates between scrapes ran: its row is read at every scrape,
/// whatever the maximum age.
#[test]
fn a_busy_cgroup_is_read_at_every_scrape() {
    let kadvisor = Kadvisor::start(&["--max_housekeeping_interval", "1h"]);
    let mut cg = TestCgroup::with_v1_controllers("busy", &["memory"]);
    // Each line on stdin: 8 MiB more held in a shell variable, then "ok".
    let (mut stdin, stdout) = cg.spawn_piped(Command::new("sh").args([
        "-c",
        r#"x=; echo ready; while read _; do x="$x$(head -c 8388608 /dev/zero | tr '\0' a)"; echo ok; done"#,
    ]));
    let mut lines = BufReader::new(stdout).lines();
    next_line(&mut lines, "ready");
    let mut last = 0.0;
    for round in 0..4 {
        if round > 0 {
            writeln!(stdin, "more").expect("ask for more memory");
            next_line(&mut lines, "ok");
        }
        let before = usage(&cg);
        let scrape = kadvisor.scrape();
        let after = usage(&cg);
        let value = ours(&scrape, "container_memory_usage_bytes", &cg);
        let (low, high) = (before.min(after) as f64, before.max(after) as f64);
        assert!(
            (low..=high).contains(&value),
            "round {round}: kadvisor {value}, the cgroup's file {before} before and {after} after"
        );
        if round > 0 {
            assert!(
                value >= last + 4.0 * MIB as f64,
                "round {round}: {last} → {value}"
            );
        }
        last = value;
    }
}

/// On disk (not tmpfs, whose pages are not reclaimable without swap): the target
/// directory where it exists, else $TMPDIR.
fn data_file(mib: u64) -> (tempfile::TempDir, PathBuf) {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let dir = if base.is_dir() {
        tempfile::tempdir_in(base)
    } else {
        tempfile::tempdir()
    }
    .expect("tempdir");
    let path = kadvisor_tests::uncached_file(dir.path(), mib);
    (dir, path)
}

/// Memory that changes while no task of the cgroup runs (its page cache reclaimed
/// from outside) shows within the maximum age.
#[test]
fn a_quiet_cgroup_whose_cache_is_reclaimed_from_outside_shows_it_within_the_max_age() {
    let kadvisor = Kadvisor::start(&["--max_housekeeping_interval", "2s"]);
    let (_dir, file) = data_file(32);
    let mut cg = TestCgroup::with_v1_controllers("reclaimed", &["memory"]);
    let (_stdin, stdout) = cg.spawn_piped(Command::new("sh").args([
        "-c",
        r#"cat "$0" >/dev/null && echo ready && read _"#,
        file.to_str().expect("utf-8 path"),
    ]));
    next_line(&mut BufReader::new(stdout).lines(), "ready");
    wait_asleep(&cg);
    let filled = usage(&cg);
    assert!(filled >= 24 * MIB, "32 MiB read, usage {filled}");
    let scrape = kadvisor.scrape();
    let read = ours(&scrape, "container_memory_usage_bytes", &cg);
    assert!(read >= 24.0 * MIB as f64, "kadvisor read {read}");

    // Reclaim the cgroup's page cache from this (outside) process.
    if is_v1(&cg) {
        cg.write_control("memory", "memory.force_empty", "0");
    } else {
        // EAGAIN when less than asked could be reclaimed: the drop is checked below.
        let _ = fs::write(cg.path().join("memory.reclaim"), filled.to_string());
    }
    let reclaimed = usage(&cg);
    assert!(
        reclaimed + 16 * MIB <= filled,
        "reclaim freed too little: {filled} → {reclaimed}"
    );

    let deadline = Instant::now() + Duration::from_secs(30);
    let shown = loop {
        let before = usage(&cg);
        let scrape = kadvisor.scrape();
        let after = usage(&cg);
        let value = ours(&scrape, "container_memory_usage_bytes", &cg);
        if value <= before.max(after) as f64 && value >= before.min(after) as f64 {
            break scrape;
        }
        assert!(
            Instant::now() < deadline,
            "usage {value} never followed the reclaim ({before} in the cgroup's file)"
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    assert!(
        refreshes(&shown, "max_age") >= 1.0,
        "the quiet row was re-read for its age"
    );
}
