// PENDING (blocked on issue 6): the kube-prometheus rules and alert against a real
// containerd pod. Not compiled: it needs `kadvisor_tests::containerd` (issue 6's
// real-containerd harness), which is not on main yet.
//
// To enable once issue 6 is on main: append everything below the `---` line to
// tests/tests/kube_prometheus.rs and add
//     containerd::{Containerd, Cri, Pod, remove_pod_cgroups},
// to its `use kadvisor_tests::{...}` list.
//
// It was run on a local merge of issue7 + issue6 (branch state of 04:32 UTC) and
// passed: node_namespace_pod_container:container_cpu_usage_seconds_total:sum_rate5m
// for the pod's 20%-quota container was 0.2000 cores vs 0.2000 from the kernel's
// cpu.stat; sum_irate present; the four memory rules and CPUThrottlingHigh were
// listed as awaiting issues 4 and 3 (neither was on main then). With issues 3 and
// 4 on main they are asserted: the memory rules equal kadvisor's series within 1%,
// and CPUThrottlingHigh fires (severity info) for the container.
// ---
/// Sets a CFS quota of `percent` of one CPU on the cgroup `id` (kadvisor's `id`
/// label): the v1 cpu hierarchy on this hybrid host, `cpu.max` on a pure v2 host.
fn set_quota(id: &str, percent: u32) {
    let quota_us = 100_000 * u64::from(percent) / 100;
    let v1 = Path::new("/sys/fs/cgroup/cpu").join(id.trim_start_matches('/'));
    if v1.join("cpu.cfs_quota_us").exists() {
        fs::write(v1.join("cpu.cfs_quota_us"), quota_us.to_string())
            .unwrap_or_else(|e| panic!("set the quota of {id}: {e}"));
    } else {
        let v2 = kadvisor_tests::cgroup::v2_root().join(id.trim_start_matches('/'));
        fs::write(v2.join("cpu.max"), format!("{quota_us} 100000"))
            .unwrap_or_else(|e| panic!("set cpu.max of {id}: {e}"));
    }
}

/// `usage_usec` of a cgroup's v2 cpu.stat, in seconds.
fn cpu_stat_seconds(id: &str) -> f64 {
    let path = kadvisor_tests::cgroup::v2_root()
        .join(id.trim_start_matches('/'))
        .join("cpu.stat");
    let stat = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let usec: f64 = stat
        .lines()
        .find_map(|l| l.strip_prefix("usage_usec "))
        .expect("usage_usec")
        .trim()
        .parse()
        .expect("number");
    usec / 1e6
}

/// Removes the test pod when the test ends, also when it fails.
struct PodCleanup<'a> {
    cri: &'a mut Cri,
    pod: Pod,
}

impl Drop for PodCleanup<'_> {
    fn drop(&mut self) {
        self.cri.remove_pod(&self.pod);
        remove_pod_cgroups(&self.pod);
    }
}

#[test]
fn kube_prometheus_rules_and_alert_see_a_real_pod() {
    require_root();
    let _cpu = exclusive_cpu();
    let containerd = Containerd::start();
    let socket = containerd.socket();
    let kadvisor = Kadvisor::start(&["--cri_endpoints", socket.to_str().unwrap()]);
    let mut cri = Cri::connect(&socket);
    let pod = cri.run_pod("web-0", "kadvisor-test", &containerd.log_dir());
    let busy = cri.run_container(&pod, "busy", &["sh", "-c", "while :; do :; done"]);
    let busy_id = format!("{}/{busy}", pod.cgroup());
    let (namespace, pod_name) = (pod.namespace.clone(), pod.name.clone());
    let cleanup = PodCleanup { cri: &mut cri, pod };
    // The container throttled at 20% of a CPU: CPUThrottlingHigh fires above 25%
    // throttled periods, and a busy loop is throttled in nearly every period.
    set_quota(&busy_id, 20);

    let deadline = Instant::now() + Duration::from_secs(30);
    while kadvisor
        .scrape()
        .find(
            "container_cpu_usage_seconds_total",
            &[("id", &busy_id), ("container", "busy"), ("pod", &pod_name)],
        )
        .is_empty()
    {
        assert!(Instant::now() < deadline, "no runtime labels on {busy_id}");
        std::thread::sleep(Duration::from_millis(200));
    }

    let server = StaticServer::start(&[(
        "kube-state-metrics",
        &format!(
            "# TYPE kube_pod_info gauge\nkube_pod_info{{namespace=\"{namespace}\",pod=\"{pod_name}\",node=\"{NODE}\",host_network=\"true\",uid=\"1\",created_by_kind=\"\",created_by_name=\"\",pod_ip=\"\",host_ip=\"\",priority_class=\"\"}} 1\n"
        ),
    )]);
    let kadvisor_job = with_target(
        scrape_config(&deploy("dropin/serviceMonitor.yaml")),
        "kadvisor",
        &format!("127.0.0.1:{}", kadvisor.port()),
        json!({ "__meta_kubernetes_pod_node_name": NODE, "namespace": "monitoring", "pod": "kadvisor-x7k2p", "container": "kadvisor" }),
    );
    let mut kadvisor_job = kadvisor_job;
    kadvisor_job["scheme"] = json!("http");
    let config = json!({
        "global": { "scrape_interval": INTERVAL, "evaluation_interval": INTERVAL },
        "rule_files": ["rules.yml"],
        "scrape_configs": [kadvisor_job, {
            "job_name": "kube-state-metrics", "scrape_interval": INTERVAL, "honor_labels": true,
            "metrics_path": "/kube-state-metrics",
            "static_configs": [{ "targets": [format!("127.0.0.1:{}", server.port)] }],
        }],
    });
    let rules = succeeded("rules test copy", &python().arg("rules").output().unwrap());
    let prometheus = Prometheus::start(&config.to_string(), &[("rules.yml", &rules)]);
    prometheus.wait_targets_up(2, Duration::from_secs(30));
    // The test copy's rate windows are 20 s: fill one, then measure the kernel's
    // rate over (nearly) the window the last rule evaluation used.
    std::thread::sleep(Duration::from_secs(10));
    let kernel_start = (Instant::now(), cpu_stat_seconds(&busy_id));
    std::thread::sleep(Duration::from_secs(22));
    let kernel_rate =
        (cpu_stat_seconds(&busy_id) - kernel_start.1) / kernel_start.0.elapsed().as_secs_f64();

    let this =
        format!(r#"namespace="{namespace}", pod="{pod_name}", container="busy", node="{NODE}""#);
    let cpu = prometheus.query_one(&format!(
        "node_namespace_pod_container:container_cpu_usage_seconds_total:sum_rate5m{{{this}}}"
    ));
    eprintln!("sum_rate5m {:.4}, kernel {kernel_rate:.4} cores", cpu.value);
    assert_close("sum_rate5m vs cpu.stat", cpu.value, kernel_rate, 0.05);
    prometheus.query_one(&format!(
        "node_namespace_pod_container:container_cpu_usage_seconds_total:sum_irate{{{this}}}"
    ));

    let served: BTreeSet<String> = kadvisor
        .scrape()
        .samples
        .iter()
        .map(|s| s.name.clone())
        .collect();
    let mut awaited = Vec::new();
    for family in ["working_set_bytes", "rss", "cache", "swap"] {
        let raw = format!("container_memory_{family}");
        if !served.contains(&raw) {
            awaited.push(format!(
                "node_namespace_pod_container:{raw} awaits {raw} (issue 4)"
            ));
            continue;
        }
        let rule = prometheus.query_one(&format!("node_namespace_pod_container:{raw}{{{this}}}"));
        let series = prometheus.query_one(&format!(
            r#"{raw}{{job="kubelet", metrics_path="/metrics/cadvisor", id="{busy_id}"}}"#
        ));
        assert_close(
            &format!("{raw} rule vs kadvisor's series"),
            rule.value,
            series.value,
            0.01,
        );
    }
    if served.contains("container_cpu_cfs_throttled_periods_total") {
        let alert = prometheus.query_one(&format!(
            r#"ALERTS{{alertname="CPUThrottlingHigh", alertstate="firing", namespace="{namespace}", pod="{pod_name}", container="busy"}}"#
        ));
        assert_eq!(alert.labels["severity"], "info", "{alert:?}");
    } else {
        awaited.push("CPUThrottlingHigh awaits container_cpu_cfs_* (issue 3)".to_owned());
    }
    eprintln!("awaiting other issues:\n  {}", awaited.join("\n  "));

    // The dashboards' queries for this pod: only families other issues add may
    // still be missing; the pod's runtime labels are there.
    let panels = dashboard_queries_return_data(&prometheus, &kadvisor, &namespace, &pod_name);
    assert!(
        panels.iter().all(|p| !p.contains("runtime labels")),
        "{panels:#?}"
    );

    drop(prometheus);
    drop(cleanup);
}
