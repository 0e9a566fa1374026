//! Cost controls on real cgroups: a disabled metric group's programs are not
//! attached (checked with the BPF syscall, not kadvisor's word), an excluded cgroup
//! is not counted in the kernel, and included ones are still exact.
use std::time::Duration;

use kadvisor_tests::{
    assert_close,
    bpf::{self, CGROUP_INET_EGRESS, CGROUP_INET_INGRESS},
    cgroup::{TestCgroup, v2_root},
    exclusive_cpu,
    kadvisor::Kadvisor,
    scrape::Scrape,
};

const USAGE: &str = "container_cpu_usage_seconds_total";

/// Programs of kadvisor `pid` attached to the cgroup v2 root for socket traffic.
fn socket_programs_attached(pid: u32) -> usize {
    let ours = bpf::prog_ids_of(pid);
    assert!(!ours.is_empty(), "kadvisor {pid} holds no BPF programs");
    [CGROUP_INET_INGRESS, CGROUP_INET_EGRESS]
        .iter()
        .flat_map(|&t| bpf::cgroup_attached(&v2_root(), t))
        .filter(|id| ours.contains(id))
        .count()
}

fn families(scrape: &Scrape, prefix: &str) -> usize {
    scrape
        .samples
        .iter()
        .filter(|s| s.name.starts_with(prefix))
        .count()
}

#[test]
fn disabling_network_leaves_the_socket_programs_unattached() {
    // Control: by default both cgroup_skb programs are attached at the root.
    let default = Kadvisor::start(&[]);
    assert_eq!(socket_programs_attached(default.pid()), 2);
    assert!(families(&default.scrape(), "container_socket_") > 0);
    drop(default);

    let kadvisor = Kadvisor::start(&["--disable_metrics", "network"]);
    assert_eq!(
        socket_programs_attached(kadvisor.pid()),
        0,
        "network disabled: no cgroup_skb program of this kadvisor may be attached"
    );
    let scrape = kadvisor.scrape();
    assert_eq!(
        families(&scrape, "container_network_"),
        0,
        "{}",
        scrape.text
    );
    assert_eq!(families(&scrape, "container_socket_"), 0, "{}", scrape.text);
    for program in ["socket_ingress", "socket_egress"] {
        assert_eq!(
            scrape.value("kadvisor_bpf_program_attached", &[("program", program)]),
            0.0
        );
    }
    // Other groups are unaffected.
    assert_eq!(
        scrape.value(
            "kadvisor_bpf_program_attached",
            &[("program", "sched_stat_runtime")]
        ),
        1.0
    );
    assert!(!scrape.find(USAGE, &[("id", "/")]).is_empty());
    assert!(!scrape.find("container_memory_usage_bytes", &[]).is_empty());
    assert!(
        scrape
            .find(
                "kadvisor_series",
                &[("family", "container_network_receive_bytes_total")]
            )
            .is_empty(),
        "no such family is written"
    );
    assert!(scrape.value("kadvisor_series", &[("family", USAGE)]) >= 1.0);
}

#[test]
fn excluded_cgroup_is_not_counted_in_the_kernel_and_included_ones_stay_exact() {
    let _cpu = exclusive_cpu();
    let kadvisor = Kadvisor::start(&["--exclude_cgroups", "/kadvisor-test-*-costexcl/**"]);
    let mut excluded = TestCgroup::new("costexcl");
    let mut child = excluded.child("inner");
    let mut included = TestCgroup::new("costincl");
    // A scrape applies the mkdir events queued so far: both are known from here on.
    let before = kadvisor.scrape();
    let ours_before = before.value(USAGE, &[("id", included.id())]);
    let kernel_before = included.cpu_stat_usage_seconds();

    excluded.spawn_busy();
    child.spawn_busy();
    included.spawn_busy();
    std::thread::sleep(Duration::from_secs(2));
    excluded.stop_all();
    child.stop_all();
    included.stop_all();

    let scrape = kadvisor.scrape();
    let kernel = included.cpu_stat_usage_seconds() - kernel_before;
    let ours = scrape.value(USAGE, &[("id", included.id())]) - ours_before;
    assert!(kernel > 0.1, "the included busy loop ran {kernel} s");
    assert_close("included cgroup CPU vs cpu.stat", ours, kernel, 0.02);

    for cg in [&excluded, &child] {
        assert!(
            cg.cpu_stat_usage_seconds() > 0.1,
            "the excluded busy loop ran"
        );
        assert!(
            scrape
                .samples
                .iter()
                .all(|s| s.labels.get("id").map(String::as_str) != Some(cg.id())),
            "excluded {} has rows:\n{}",
            cg.id(),
            scrape.text
        );
        let id = bpf::cgroup_id(cg.path());
        assert!(
            bpf::map_has_key(kadvisor.pid(), "CGROUP_EXCLUDED", id),
            "{} not in the kernel denylist",
            cg.id()
        );
        assert!(
            !bpf::map_has_key(kadvisor.pid(), "CGROUP_CPU", id),
            "the kernel counted excluded {}",
            cg.id()
        );
    }
    assert!(bpf::map_has_key(
        kadvisor.pid(),
        "CGROUP_CPU",
        bpf::cgroup_id(included.path())
    ));
    assert!(!bpf::map_has_key(
        kadvisor.pid(),
        "CGROUP_EXCLUDED",
        bpf::cgroup_id(included.path())
    ));
}
