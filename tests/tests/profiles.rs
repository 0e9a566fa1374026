//! Profiles and lean defaults on real cgroups: a profile leaves the programs of the
//! families it omits unattached (read back through the `bpf(2)` syscall, not
//! kadvisor's word), serves only its families and rows, and each configuration's
//! series per container row equal the numbers docs/profiles.md states.
use std::{collections::BTreeMap, fs, process::Command};

use kadvisor_tests::{
    block, bpf,
    cgroup::{TestCgroup, v1_mounts},
    kadvisor::Kadvisor,
    scrape::Scrape,
};

/// The kernel's program names are cut at 15 bytes.
fn kernel_name(name: &str) -> String {
    name.chars().take(15).collect()
}

/// A container-shaped cgroup: a CPU quota (so the CFS families have values, as for
/// any container with a CPU limit) and a process that wrote to one disk.
fn container_row() -> TestCgroup {
    let cg = TestCgroup::with_v1_controllers("profilerow", &["cpu", "blkio", "memory"]);
    if cg.v1_dir("cpu").is_some() {
        cg.write_control("cpu", "cpu.cfs_quota_us", "50000");
    } else {
        fs::write(cg.path().join("cpu.max"), "50000 100000").expect("write cpu.max");
    }
    // On the root filesystem (a block device), not tmpfs.
    let dir = tempfile::Builder::new()
        .prefix("kadvisor-test-profilerow")
        .tempdir_in("/var/tmp")
        .expect("make a temp dir under /var/tmp");
    if let Some(blkio) = cg.v1_dir("blkio") {
        let ((major, minor), _) = block::disk_of(dir.path());
        // v1 blk-throttle accounts IO only on disks where some cgroup set a limit
        // (Linux 6.x): one nobody reaches turns it on (as tests/blkio.rs does).
        fs::write(
            blkio.join("blkio.throttle.write_bps_device"),
            format!("{major}:{minor} 1099511627776"),
        )
        .expect("enable blk-throttle accounting");
    }
    let file = dir.path().join("data");
    let status = cg.output(
        Command::new("dd")
            .args(["if=/dev/zero", "bs=1M", "count=4", "oflag=direct"])
            .arg(format!("of={}", file.display())),
    );
    assert!(status.status.success(), "dd: {status:?}");
    cg
}

/// container_* series of the row `id`, by family.
fn series_of_row(scrape: &Scrape, id: &str) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for s in &scrape.samples {
        if s.name.starts_with("container_") && s.labels.get("id").map(String::as_str) == Some(id) {
            *out.entry(s.name.clone()).or_default() += 1;
        }
    }
    out
}

/// The "series per container row" column of docs/profiles.md, by configuration.
fn documented_series_per_row() -> BTreeMap<String, usize> {
    // Compiled in, so the test binary also checks it where the source tree is absent
    // (the kernel matrix's guests).
    let text = include_str!("../../docs/profiles.md");
    let table = text
        .split("<!-- series-per-row -->")
        .nth(1)
        .expect("docs/profiles.md marks its series-per-row table");
    table
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            (
                cells[1].trim_matches('`').to_owned(),
                cells[2].parse().unwrap_or_else(|_| panic!("bad row {l}")),
            )
        })
        .collect()
}

#[test]
fn kube_prometheus_profile_attaches_no_program_it_does_not_need() {
    // Control: by default the crash program, the exit hook and the task/descriptor
    // passes (the process group) are attached, and the read-back sees iterator links;
    // the socket programs (a cost on every packet) are opt-in.
    let default = Kadvisor::start(&["--kubelet_rows"]);
    let attached = bpf::attached_program_names(default.pid());
    for program in [
        "signal_deliver",
        "sched_process_exit",
        "task_pass",
        "file_pass",
    ] {
        assert!(attached.contains(&kernel_name(program)), "{attached:?}");
    }
    for program in ["sched_switch", "socket_ingress", "socket_egress"] {
        assert!(!attached.contains(&kernel_name(program)), "{attached:?}");
    }
    drop(default);

    let kadvisor = Kadvisor::start(&["--profile", "kube-prometheus"]);
    // kube-prometheus reads CPU, memory, disk IO and interfaces: the crash, OOM,
    // socket programs and the task/descriptor passes (schedstat and process families)
    // stay unattached.
    let attached = bpf::attached_program_names(kadvisor.pid());
    for program in [
        "task_pass",
        "file_pass",
        "signal_deliver",
        "socket_ingress",
        "socket_egress",
        "mark_victim",
        "mark_oom_victim",
    ] {
        assert!(!attached.contains(&kernel_name(program)), "{attached:?}");
    }
    // sched_process_exit stays: container_cpu_usage_seconds_total of a removed
    // container in its grace period is what its tasks had at exit (cpu.stat is gone
    // with the cgroup), so a rate() over a finished pod keeps its last interval.
    assert!(
        attached.contains(&kernel_name("sched_process_exit")),
        "{attached:?}"
    );
    let scrape = kadvisor.scrape();
    let allowed: Vec<&str> = include_str!("../../exporter/src/profiles/kube-prometheus.families")
        .lines()
        .filter_map(|l| l.split('#').next())
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("rows "))
        .collect();
    for s in &scrape.samples {
        assert!(
            s.name.starts_with("kadvisor_")
                || s.name.starts_with("process_")
                || allowed.contains(&s.name.as_str()),
            "{} is not read by kube-prometheus",
            s.name
        );
    }
    assert!(
        !scrape
            .find("container_memory_working_set_bytes", &[("id", "/")])
            .is_empty()
    );
}

#[test]
fn series_per_container_row_equal_the_documented_numbers() {
    let cg = container_row();
    let documented = documented_series_per_row();
    let extra = format!("--kubelet_extra_cgroups={}", cg.id());
    let configurations: [(&str, &[&str]); 3] = [
        ("defaults", &["--kubelet_rows"]),
        (
            "--profile kube-prometheus",
            &["--profile", "kube-prometheus"],
        ),
        (
            "--profile cadvisor",
            &["--kubelet_rows", "--profile", "cadvisor"],
        ),
    ];
    for (name, args) in configurations {
        let mut args = args.to_vec();
        args.push(&extra);
        let kadvisor = Kadvisor::start(&args);
        let scrape = kadvisor.scrape_until(
            std::time::Duration::from_secs(10),
            "the test row's disk writes",
            |s| {
                !s.find("container_fs_writes_bytes_total", &[("id", cg.id())])
                    .is_empty()
            },
        );
        let per_family = series_of_row(&scrape, cg.id());
        let total: usize = per_family.values().sum();
        eprintln!("{name}: {total} series per container row: {per_family:?}");
        if std::env::var_os("KADVISOR_MEASURE").is_some() {
            continue;
        }
        if v1_mounts(&["memory"]).is_empty() {
            // docs/profiles.md counts a hybrid host's row (v1 memory and blkio files, as
            // its text says); a pure cgroup v2 row has fewer (2 blkio series instead of
            // 6, no v1-only memory gauges): never more than documented. Not for the
            // cadvisor profile, which adds the v2-only memory_reclaim families there.
            assert!(
                name == "--profile cadvisor" || documented.get(name).is_some_and(|&d| total <= d),
                "{name} on cgroup v2: {per_family:?} (docs/profiles.md states {documented:?})"
            );
            continue;
        }
        assert_eq!(
            Some(&total),
            documented.get(name),
            "{name}: {per_family:?} (docs/profiles.md states {documented:?})"
        );
    }
    assert!(documented["--profile kube-prometheus"] <= 12);
}
