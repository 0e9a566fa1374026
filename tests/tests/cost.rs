//! Cost controls on real cgroups: a disabled metric group's programs are not
//! attached (checked with the BPF syscall, not kadvisor's word), an excluded cgroup
//! is not counted in the kernel, and included ones are still exact.
use std::time::{Duration, Instant};

use kadvisor_tests::{
    assert_close,
    bpf::{self, CGROUP_INET_EGRESS, CGROUP_INET_INGRESS},
    cgroup::{TestCgroup, v1_mounts, v2_root},
    containerd::{self, Containerd, Cri},
    exclusive_cpu,
    kadvisor::{ALL_GROUPS, Kadvisor},
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
    // Control: with the socket group on, both cgroup_skb programs are attached at
    // the root.
    let default = Kadvisor::start(&ALL_GROUPS);
    assert_eq!(socket_programs_attached(default.pid()), 2);
    assert!(families(&default.scrape(), "container_socket_") > 0);
    drop(default);

    // Every group but network: socket needs it, so its programs stay unattached.
    let without_network = ALL_GROUPS[1].replace(",network,", ",");
    let kadvisor = Kadvisor::start(&[ALL_GROUPS[0], &without_network]);
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
            &[("program", "sched_process_exit")]
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
    // A parent with a busy child (pure v2 allows no processes beside children that
    // have controllers) and a second busy top-level match of the pattern.
    let parent = TestCgroup::new("costexcl");
    let mut child = parent.child("inner");
    let mut excluded = TestCgroup::new("costexcl");
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

    for cg in [&excluded, &child, &parent] {
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

#[test]
fn series_budget_caps_each_family_exactly_and_reports_the_drop() {
    const LIMIT: usize = 5;
    let kadvisor = Kadvisor::start(&["--max_series_per_family", &LIMIT.to_string()]);
    // More rows than the limit, whatever else runs on this machine.
    let _cgroups: Vec<TestCgroup> = (0..LIMIT + 2)
        .map(|i| TestCgroup::new(&format!("budget{i}")))
        .collect();
    let dropped = |s: &Scrape| {
        s.find("kadvisor_series_dropped_total", &[("family", USAGE)])
            .first()
            .map_or(0.0, |x| x.value)
    };
    let first = kadvisor.scrape();
    let second = kadvisor.scrape();
    let rows = second.value("kadvisor_rows", &[("state", "live")])
        + second.value("kadvisor_rows", &[("state", "removed")]);
    assert!(rows > LIMIT as f64, "{rows} rows");
    assert_eq!(second.find(USAGE, &[]).len(), LIMIT, "{}", second.text);
    assert_eq!(
        second.value("kadvisor_series", &[("family", USAGE)]),
        LIMIT as f64
    );
    // What this scrape left out is counted: every row beyond the limit.
    assert_eq!(dropped(&second) - dropped(&first), rows - LIMIT as f64);
    // The root row is never dropped.
    assert_eq!(second.find(USAGE, &[("id", "/")]).len(), 1);
    // Every container family is capped: one with a series per row exactly, one with
    // fewer rows (v1 memory: only cgroups in the memory hierarchy) at most.
    assert_eq!(second.find("container_last_seen", &[]).len(), LIMIT);
    assert!(second.find("container_memory_usage_bytes", &[]).len() <= LIMIT);
}

/// How long to scrape for runtime labels and exclusions (applied in the background).
const LABELS_WITHIN: Duration = Duration::from_secs(20);

/// Removes the pods' cgroups even when an assertion failed.
struct Cleanup<'a>(Vec<&'a containerd::Pod>);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        for pod in &self.0 {
            containerd::remove_pod_cgroups(pod);
        }
    }
}

/// With `--aggregation pod` the pod's row is collected from the pod cgroup alone (no
/// container row is read): CPU and threads equal the sum of its containers' rows from
/// a second kadvisor at container level; memory equals the pod cgroup's own accounting
/// (at least that sum: the kernel also charges the pod for what no living container
/// holds). An excluded namespace's pod has no rows and is not counted in the kernel.
/// `actual` within `tolerance` of the range two readings taken before and after it
/// span: what moved between them is not counted against it.
fn assert_within_readings(what: &str, actual: f64, (before, after): (f64, f64), tolerance: f64) {
    let (low, high) = (before.min(after), before.max(after));
    assert!(
        actual >= low - tolerance * low.abs() && actual <= high + tolerance * high.abs(),
        "{what}: {actual} vs expected {before}..{after} (allowed ±{:.1}%)",
        tolerance * 100.0
    );
}

#[test]
fn pod_aggregation_sums_containers_and_an_excluded_namespace_is_not_counted() {
    if kadvisor_tests::ignore::because(kadvisor_tests::containerd::unavailable()) {
        return;
    }
    let _cpu = exclusive_cpu();
    let containerd = Containerd::start();
    let socket = containerd.socket();
    let socket = socket.to_str().unwrap();
    let containers = Kadvisor::start(&["--cri_endpoints", socket]);
    let pods = Kadvisor::start(&[
        "--cri_endpoints",
        socket,
        "--aggregation",
        "pod",
        "--exclude_namespaces",
        "kadvisor-test-excluded",
    ]);
    let mut cri = Cri::connect(&containerd.socket());
    let web = cri.run_pod("web-0", "kadvisor-test", &containerd.log_dir());
    let hidden = cri.run_pod("batch-0", "kadvisor-test-excluded", &containerd.log_dir());
    let cleanup = Cleanup(vec![&web, &hidden]);
    // Some CPU, then idle: the values stay put while both kadvisors are scraped.
    let worker = cri.run_container(
        &web,
        "worker",
        &[
            "sh",
            "-c",
            "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; exec sleep 3600",
        ],
    );
    let idle = cri.run_container(&web, "idle", &["sleep", "3600"]);
    let busy = cri.run_container(&hidden, "busy", &["sh", "-c", "while :; do :; done"]);
    let web_id = web.cgroup();
    let hidden_id = hidden.cgroup();
    let busy_id = hidden.container_cgroup(&busy);
    let leaves = [
        web.sandbox_cgroup(),
        web.container_cgroup(&worker),
        web.container_cgroup(&idle),
    ];

    // Labels joined by both (the container-level one shows the excluded pod too).
    containers.scrape_until(LABELS_WITHIN, "runtime labels", |s| {
        leaves.iter().chain([&busy_id]).all(|id| {
            s.find(USAGE, &[("id", id)])
                .first()
                .is_some_and(|x| !x.labels["pod"].is_empty())
        })
    });
    let pod_row = [("id", web_id.as_str()), ("pod", "web-0"), ("container", "")];
    pods.scrape_until(LABELS_WITHIN, "the pod row and the exclusion", |s| {
        s.find(USAGE, &pod_row).len() == 1
            && s.find(USAGE, &[("id", &busy_id)]).is_empty()
            && s.find(USAGE, &[("id", &hidden_id)]).is_empty()
    });
    // The worker's loop is over once its own cgroup stops gaining CPU.
    let worker_dir = v2_root().join(leaves[1].trim_start_matches('/'));
    let cpu_of = |dir: &std::path::Path| {
        std::fs::read_to_string(dir.join("cpu.stat"))
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("usage_usec ")?.trim().parse::<f64>().ok())
            .unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let before = cpu_of(&worker_dir);
        std::thread::sleep(Duration::from_millis(500));
        if cpu_of(&worker_dir) == before {
            break;
        }
        assert!(Instant::now() < deadline, "the worker's loop did not end");
    }

    // The pod-level scrape is bracketed by two container-level ones: memory still
    // moves a little while the pod idles (kernel objects, reclaim on the shared
    // machine), so the pod row is held to the range the containers' readings span
    // around it, not to one reading taken at another moment.
    // The pod cgroup's memory usage as the kernel keeps it: v1 memory.usage_in_bytes
    // on this hybrid host (the memory controller is on v1), memory.current on v2.
    let pod_memory = || {
        let path = v1_mounts(&["memory"]).first().map_or_else(
            || {
                v2_root()
                    .join(web_id.trim_start_matches('/'))
                    .join("memory.current")
            },
            |(_, mount)| {
                mount
                    .join(web_id.trim_start_matches('/'))
                    .join("memory.usage_in_bytes")
            },
        );
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .trim()
            .parse::<f64>()
            .unwrap()
    };
    let by_container = containers.scrape();
    let pod_memory_before = pod_memory();
    let by_pod = pods.scrape();
    let pod_memory_after = pod_memory();
    let by_container_after = containers.scrape();
    for family in [USAGE, "container_memory_usage_bytes", "container_threads"] {
        let sum_of = |scrape: &Scrape| -> f64 {
            leaves
                .iter()
                .map(|id| scrape.value(family, &[("id", id)]))
                .sum()
        };
        let sum = sum_of(&by_container);
        let sum_after = sum_of(&by_container_after);
        let rows = by_pod.find(family, &[("pod", "web-0")]);
        assert_eq!(
            rows.len(),
            1,
            "{family}: one row for the pod:\n{}",
            by_pod.text
        );
        let row = rows[0];
        for (key, want) in [
            ("container", ""),
            ("id", web_id.as_str()),
            ("image", ""),
            ("name", ""),
            ("namespace", "kadvisor-test"),
            ("pod", "web-0"),
        ] {
            assert_eq!(row.labels[key], want, "{family} pod row label {key}");
        }
        // The same pod cgroup's row at container level (what cAdvisor exports for it).
        let cadvisor_pod_row = by_container.value(family, &[("id", web_id.as_str())]);
        let cadvisor_pod_row_after = by_container_after.value(family, &[("id", web_id.as_str())]);
        eprintln!(
            "{family}: pod row {} vs sum of containers {sum}..{sum_after}, pod cgroup at container level {cadvisor_pod_row}..{cadvisor_pod_row_after}",
            row.value
        );
        assert!(sum > 0.0, "{family}: the containers have values");
        if family == "container_memory_usage_bytes" {
            // The pod cgroup's memory is the kernel's own sum of its containers plus
            // what it charged to the pod and no living container (page cache left by
            // exited processes, the pod cgroup's own kernel objects): at least the
            // sum, and the number the kubelet uses for the pod (summary API, eviction).
            // Not compared with the sum of the containers' rows: v1's
            // memory.usage_in_bytes is fuzzy by design (per-CPU charge batches, the
            // kernel's cgroup-v1 memory.rst 5.5), and the pod's was seen 7-16%
            // below its children's sum with every value standing still; the
            // kernel's own file, read just before and after the scrape, is the
            // reference.
            assert_within_readings(
                &format!("{family}: pod row vs the pod cgroup's memory.current"),
                row.value,
                (pod_memory_before, pod_memory_after),
                0.02,
            );
            assert_within_readings(
                &format!("{family}: pod row vs the pod cgroup's own accounting"),
                row.value,
                (cadvisor_pod_row, cadvisor_pod_row_after),
                0.02,
            );
        } else {
            assert_within_readings(
                &format!("{family}: pod row vs sum of its containers"),
                row.value,
                (sum, sum_after),
                0.02,
            );
        }
    }
    // No container row of the pod is left at pod level.
    for id in &leaves {
        assert!(
            by_pod.find(USAGE, &[("id", id)]).is_empty(),
            "{id} still a row"
        );
    }

    // The excluded namespace: no rows, not counted in the kernel (its busy loop runs).
    assert!(
        by_pod.samples.iter().all(
            |s| s.labels.get("namespace").map(String::as_str) != Some("kadvisor-test-excluded")
        ),
        "rows of the excluded namespace:\n{}",
        by_pod.text
    );
    std::thread::sleep(Duration::from_secs(1));
    for id in [&busy_id, &hidden_id] {
        let cgroup = bpf::cgroup_id(&v2_root().join(id.trim_start_matches('/')));
        assert!(
            bpf::map_has_key(pods.pid(), "CGROUP_EXCLUDED", cgroup),
            "{id} not excluded"
        );
        assert!(
            !bpf::map_has_key(pods.pid(), "CGROUP_CPU", cgroup),
            "{id} counted"
        );
    }
    assert!(
        bpf::map_has_key(
            containers.pid(),
            "CGROUP_CPU",
            bpf::cgroup_id(&v2_root().join(busy_id.trim_start_matches('/')))
        ),
        "control: the other kadvisor counts the busy container"
    );

    cri.remove_pod(&web);
    cri.remove_pod(&hidden);
    drop(cleanup);
    drop(containerd);
}

/// `--exclude_pods` with a label selector: a pod whose sandbox labels match gets no
/// rows and, once the runtime has named it, is no longer counted in the kernel; a pod
/// of the same namespace that does not match keeps its rows.
#[test]
fn pod_label_selector_excludes_matching_pods_in_the_kernel() {
    if kadvisor_tests::ignore::because(kadvisor_tests::containerd::unavailable()) {
        return;
    }
    let _cpu = exclusive_cpu();
    let containerd = Containerd::start();
    let socket = containerd.socket();
    let socket = socket.to_str().unwrap();
    let kadvisor = Kadvisor::start(&[
        "--cri_endpoints",
        socket,
        "--exclude_pods",
        "tier in (batch,cron),!keep",
    ]);
    let mut cri = Cri::connect(&containerd.socket());
    let label = |tier: &'static str| {
        move |config: &mut k8s_cri::v1::PodSandboxConfig| {
            config.labels.insert("tier".to_owned(), tier.to_owned());
        }
    };
    let web = cri.run_pod_with(
        "web-0",
        "kadvisor-test",
        &containerd.log_dir(),
        label("front"),
    );
    let batch = cri.run_pod_with(
        "batch-0",
        "kadvisor-test",
        &containerd.log_dir(),
        label("batch"),
    );
    let cleanup = Cleanup(vec![&web, &batch]);
    let app = cri.run_container(&web, "app", &["sleep", "3600"]);
    let busy = cri.run_container(&batch, "busy", &["sh", "-c", "while :; do :; done"]);
    let app_id = web.container_cgroup(&app);
    let batch_id = batch.cgroup();
    let busy_id = batch.container_cgroup(&busy);

    let scrape = kadvisor.scrape_until(LABELS_WITHIN, "web's labels and batch's exclusion", |s| {
        s.find(USAGE, &[("id", &app_id)])
            .first()
            .is_some_and(|x| x.labels["pod"] == "web-0")
            && s.find(USAGE, &[("id", &busy_id)]).is_empty()
            && s.find(USAGE, &[("id", &batch_id)]).is_empty()
    });
    assert!(
        scrape
            .samples
            .iter()
            .all(|s| s.labels.get("pod").map(String::as_str) != Some("batch-0")),
        "rows of the excluded pod:\n{}",
        scrape.text
    );
    // The busy loop keeps running: excluded in the kernel, its cgroup gains no entry.
    std::thread::sleep(Duration::from_secs(1));
    for id in [&busy_id, &batch_id] {
        let cgroup = bpf::cgroup_id(&v2_root().join(id.trim_start_matches('/')));
        assert!(
            bpf::map_has_key(kadvisor.pid(), "CGROUP_EXCLUDED", cgroup),
            "{id} not excluded"
        );
        assert!(
            !bpf::map_has_key(kadvisor.pid(), "CGROUP_CPU", cgroup),
            "{id} counted"
        );
    }

    cri.remove_pod(&web);
    cri.remove_pod(&batch);
    drop(cleanup);
    drop(containerd);
}
