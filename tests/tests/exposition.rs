//! The scrape as Prometheus itself parses it.
use std::{io::Write as _, process::Command};

use kadvisor_tests::{cgroup::TestCgroup, kadvisor::Kadvisor};

/// promtool's lint findings on cAdvisor's historical names. kadvisor keeps these
/// names for compatibility; any other finding fails the test.
const ACCEPTED_LINT: &[&str] = &[
    // cAdvisor's gauge of a filesystem's inode count (root row).
    "container_fs_inodes_total",
    // cAdvisor's label names (kernelVersion, osVersion, ...).
    "cadvisor_version_info label names should be written in 'snake_case'",
    // A counter without _total since cAdvisor's first release.
    "container_memory_failcnt counter metrics should have \"_total\" suffix",
];

#[test]
fn promtool_parses_the_scrape() {
    let kadvisor = Kadvisor::start(&[]);
    let _cg = TestCgroup::new("promtool");
    let scrape = kadvisor.scrape();
    assert!(
        !scrape
            .find("container_cpu_usage_seconds_total", &[("id", "/")])
            .is_empty()
    );

    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run promtool (Debian package prometheus; scripts/setup.sh installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(scrape.text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let findings = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    match output.status.code() {
        Some(0) => {}
        // 3: lint findings only, the text parsed.
        Some(3) => {
            for line in findings.lines().filter(|l| !l.trim().is_empty()) {
                assert!(
                    ACCEPTED_LINT.iter().any(|name| line.starts_with(name)),
                    "unexpected promtool finding: {line}"
                );
            }
        }
        other => panic!("promtool could not parse the scrape ({other:?}):\n{findings}"),
    }
}

#[test]
fn every_cgroup_of_the_tree_has_a_row() {
    let kadvisor = Kadvisor::start(&[]);
    let parent = TestCgroup::new("rows");
    let child = parent.child("leaf");
    let scrape = kadvisor.scrape();
    for id in ["/", parent.id(), child.id()] {
        let row = scrape.find("container_cpu_usage_seconds_total", &[("id", id)]);
        assert_eq!(row.len(), 1, "one row for {id}");
        for label in ["container", "image", "name", "namespace", "pod"] {
            assert_eq!(
                row[0].labels.get(label).map(String::as_str),
                Some(""),
                "{label} on {id}"
            );
        }
    }
}
