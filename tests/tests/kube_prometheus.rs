//! deploy/kube-prometheus/ and dashboards/ as kube-prometheus uses them.
//!
//! Offline: every manifest against the Kubernetes schema, the ServiceMonitors
//! against the prometheus-operator CRD schema, the kustomize component's patch and
//! the jsonnet addon against kube-prometheus' kubelet ServiceMonitor, the
//! dashboards against Grafana's dashboard schema (validators installed by
//! scripts/setup.sh, run through tests/kube-prometheus/).
//!
//! Live (root): a real Prometheus scrapes a running kadvisor with the drop-in
//! ServiceMonitor turned into a scrape config, loads kube-prometheus' rules and
//! alerts that read cAdvisor data, and answers them for a real containerd pod
//! (CRI, the kubelet's labels, cgroups and CPU quota, its own network namespace),
//! compared with the kernel's files; every query of kadvisor's dashboards and of
//! kube-prometheus' pod dashboards returns data for it.
use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use kadvisor_tests::{
    assert_close,
    cgroup::{v1_mounts, v2_root},
    containerd::{Containerd, Cri, Pod, pod_network, remove_pod_cgroups},
    cpu_stat::{self, CpuStatSampler, usage_at},
    exclusive_cpu,
    kadvisor::{self, ALL_GROUPS, Kadvisor},
    prometheus::{self, Prometheus, Series},
    require_root,
    validators::{failed, node, python, repo, succeeded, yaml_python},
};
use serde_json::{Value, json};

fn deploy(path: &str) -> PathBuf {
    repo().join("deploy/kube-prometheus").join(path)
}

fn dashboards() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(repo().join("dashboards"))
        .expect("read dashboards/")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 2, "dashboards: {files:?}");
    files
}

#[test]
fn manifests_are_valid_kubernetes_objects() {
    if kadvisor_tests::ignore::because(kadvisor_tests::validators::unavailable()) {
        return;
    }
    let out = succeeded(
        "kubernetes-validate",
        &python().arg("manifests").output().expect("run validate.py"),
    );
    for kind in [
        "DaemonSet",
        "Service",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
    ] {
        assert!(
            out.contains(&format!(": {kind}/")),
            "{kind} not checked:\n{out}"
        );
    }
}

#[test]
fn daemonset_asks_for_what_kadvisor_needs_and_no_more() {
    if kadvisor_tests::ignore::because(kadvisor_tests::validators::unavailable()) {
        return;
    }
    let out = succeeded(
        "DaemonSet checks",
        &python().arg("daemonset").output().expect("run validate.py"),
    );
    for want in [
        "ok hostPID",
        "ok hostNetwork",
        "ok kadvisor adds exactly",
        "ok kube-rbac-proxy upstream is kadvisor",
        "ok kadvisor exports the kubelet's rows",
        "ok readiness probe",
        "ok liveness probe",
        "ok no service account token automounted",
        "ok no token in the kadvisor container",
    ] {
        assert!(out.contains(want), "{want} not checked:\n{out}");
    }
}

#[test]
fn service_monitors_match_the_prometheus_operator_crd() {
    if kadvisor_tests::ignore::because(kadvisor_tests::validators::unavailable()) {
        return;
    }
    let files = [
        deploy("dropin/serviceMonitor.yaml"),
        deploy("own-job/serviceMonitor.yaml"),
        repo().join("tests/fixtures/kube-prometheus/kubelet-servicemonitor.yaml"),
    ];
    let out = succeeded("ServiceMonitor schema", &node("servicemonitor", &files));
    assert_eq!(out.matches("ok ").count(), 3, "{out}");

    // The check can fail: a misspelt field and a wrong enum value are refused.
    let dir = tempfile::tempdir().unwrap();
    let text = fs::read_to_string(&files[0]).unwrap();
    for (name, bad) in [
        (
            "typo.yaml",
            text.replace("honorTimestamps: false", "honorTimestamp: false"),
        ),
        ("enum.yaml", text.replace("action: drop", "action: dropp")),
    ] {
        assert_ne!(bad, text);
        let path = dir.path().join(name);
        fs::write(&path, bad).unwrap();
        failed(name, &node("servicemonitor", &[path]));
    }
}

#[test]
fn drop_in_service_monitor_copies_the_kubelet_cadvisor_endpoint() {
    if kadvisor_tests::ignore::because(kadvisor_tests::validators::yaml_unavailable()) {
        return;
    }
    // Same drops, interval, honor flags and path as kube-prometheus' kubelet
    // endpoint; the relabelings add job/node as the kubelet's target has them.
    let dropin = scrape_config(&deploy("dropin/serviceMonitor.yaml"));
    let own = scrape_config(&deploy("own-job/serviceMonitor.yaml"));
    let fixture = fs::read_to_string(
        repo().join("tests/fixtures/kube-prometheus/kubelet-servicemonitor.yaml"),
    )
    .unwrap();
    for config in [&dropin, &own] {
        assert_eq!(config["honor_labels"], true);
        assert_eq!(config["honor_timestamps"], false);
        assert_eq!(config["metrics_path"], "/metrics/cadvisor");
        assert_eq!(config["scrape_interval"], "30s");
        let drops = config["metric_relabel_configs"].as_array().unwrap();
        assert_eq!(drops.len(), 3);
        for drop in drops {
            let regex = drop["regex"].as_str().unwrap();
            assert!(
                fixture.contains(&format!("regex: {regex}\n")),
                "{regex} is not the kubelet's"
            );
        }
    }
    let relabel = |config: &Value, target: &str| -> Vec<Value> {
        config["relabel_configs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["target_label"] == target)
            .cloned()
            .collect()
    };
    // The kubelet target's labels (the operator sets service and endpoint from the
    // kubelet Service and its port name), so alerts and records come out identical.
    for (label, kubelet) in [
        ("job", "kubelet"),
        ("service", "kubelet"),
        ("endpoint", "https-metrics"),
    ] {
        assert_eq!(
            relabel(&dropin, label).last().unwrap()["replacement"],
            kubelet,
            "{label}"
        );
    }
    assert_eq!(
        relabel(&own, "job").len(),
        1,
        "mode B keeps the Service's job"
    );
    for config in [&dropin, &own] {
        assert_eq!(
            relabel(config, "node")[0]["source_labels"],
            json!(["__meta_kubernetes_pod_node_name"])
        );
        assert_eq!(
            relabel(config, "metrics_path")[0]["source_labels"],
            json!(["__metrics_path__"])
        );
    }
}

#[test]
fn kustomize_component_removes_only_the_kubelet_cadvisor_endpoint() {
    if kadvisor_tests::ignore::because(kadvisor_tests::validators::unavailable()) {
        return;
    }
    let out = succeeded(
        "JSON patch",
        &python().arg("patch").output().expect("run validate.py"),
    );
    assert!(
        out.contains("['/metrics', '/metrics/probes', '/metrics/slis']"),
        "{out}"
    );
}

#[test]
fn jsonnet_addon_compiles_against_kube_prometheus() {
    if kadvisor_tests::ignore::because(kadvisor_tests::validators::unavailable()) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = succeeded(
        "jsonnet addon",
        &python()
            .arg("jsonnet")
            .arg(dir.path())
            .output()
            .expect("run validate.py"),
    );
    assert_eq!(out.matches("ok jsonnet mode").count(), 3, "{out}");
    let generated = |suffix: &str| -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().ends_with(suffix))
            .collect();
        files.sort();
        files
    };
    let sms = generated("serviceMonitor.json");
    assert_eq!(sms.len(), 3);
    succeeded("generated ServiceMonitors", &node("servicemonitor", &sms));
    let boards = generated(".json")
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("kadvisor-"))
        .collect::<Vec<_>>();
    assert_eq!(boards.len(), 6);
    succeeded("generated dashboards", &node("dashboard", &boards));
}

#[test]
fn dashboards_match_grafana_schema() {
    if kadvisor_tests::ignore::because(kadvisor_tests::validators::unavailable()) {
        return;
    }
    let files = dashboards();
    let out = succeeded("dashboard schema", &node("dashboard", &files));
    assert_eq!(out.matches("ok ").count(), files.len(), "{out}");

    // kubernetes-mixin conventions: a datasource variable, a hidden cluster
    // variable, every query through ${datasource} and the cAdvisor selector.
    for file in &files {
        let board: Value = serde_json::from_str(&fs::read_to_string(file).unwrap()).unwrap();
        let vars = board["templating"]["list"].as_array().unwrap();
        assert_eq!(vars[0]["name"], "datasource");
        assert_eq!(vars[0]["type"], "datasource");
        assert_eq!(vars[0]["query"], "prometheus");
        assert_eq!(vars[1]["name"], "cluster");
        for (_, target) in queries(&board) {
            assert_eq!(target["datasource"]["uid"], "${datasource}", "{target}");
            let expr = target["expr"].as_str().unwrap();
            assert!(
                expr.contains(r#"job="kubelet", metrics_path="/metrics/cadvisor""#),
                "{}: query without the cAdvisor selector: {expr}",
                file.display()
            );
            assert!(expr.contains(r#"cluster="$cluster""#), "{expr}");
        }
    }

    // The check can fail: an unknown panel field is refused.
    let dir = tempfile::tempdir().unwrap();
    let mut board: Value = serde_json::from_str(&fs::read_to_string(&files[0]).unwrap()).unwrap();
    board["panels"][1]["titel"] = json!("typo");
    let path = dir.path().join("bad.json");
    fs::write(&path, board.to_string()).unwrap();
    failed(
        "dashboard with an unknown field",
        &node("dashboard", &[path]),
    );
}

#[test]
fn recording_rules_fixture_is_kube_prometheus() {
    // promtool's own unit test of the compiled kubernetes-mixin rules (from the
    // shared reference) passes against our copy of the rules.
    let dir = tempfile::tempdir().unwrap();
    fs::copy(
        repo().join("tests/fixtures/kube-prometheus/kubernetes-rules.yml"),
        dir.path().join("kubernetes.rules.yml"),
    )
    .unwrap();
    fs::copy(
        repo().join("tests/fixtures/kube-prometheus/kubernetes-cadvisor_test.yml"),
        dir.path().join("test.yml"),
    )
    .unwrap();
    let out = Command::new("promtool")
        .args(["test", "rules", "test.yml"])
        .current_dir(dir.path())
        .output()
        .expect("run promtool");
    succeeded("promtool test rules", &out);
}

fn scrape_config(service_monitor: &Path) -> Value {
    let out = succeeded(
        "scrape-config",
        &yaml_python()
            .arg("scrape-config")
            .arg(service_monitor)
            .output()
            .expect("run validate.py"),
    );
    serde_json::from_str(&out).expect("scrape config JSON")
}

/// Every (panel title, target) of a dashboard, rows included.
fn queries(board: &Value) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for panel in board["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            out.push((panel["title"].as_str().unwrap().to_owned(), target.clone()));
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Live: a real Prometheus, the real rules, a running kadvisor, a real pod.

const NODE: &str = "kadvisor-test-node";
const FIXTURE_NODE: &str = "cadvisor-fixture-node";
/// Scrape and rule interval of the test Prometheus. The ServiceMonitor says 30s;
/// the test shortens it (and nothing else). Not shorter: a debug build of kadvisor
/// scraping this shared machine's ~1,400 cgroups takes 0.6–2 s under the other
/// builds' load, and the scrape timeout cannot exceed the interval.
const INTERVAL: &str = "5s";
/// `$__rate_interval` for the dashboards' queries: 4 scrape intervals and more.
const RATE_INTERVAL: &str = "30s";
/// The rules' test copy shortens `[5m]` to this (tests/kube-prometheus/validate.py
/// rules): 12 scrapes, long enough that the scrape's jitter stays well inside 5%.
const RULE_WINDOW_SECONDS: u64 = 60;

/// Families kadvisor serves only once something happened, and why a dashboard may
/// read them anyway: each such panel adds `or 0 * <a series always served>`.
const EVENTUAL_FAMILIES: &[(&str, &str)] = &[(
    "kadvisor_scrape_errors_total",
    "appears with the first failed source",
)];

/// The namespace/pod of the test pod.
const POD_NAMESPACE: &str = "kadvisor-test";
const POD_NAME: &str = "web-0";
/// The test pod's network (CNI ptp): its address comes from here, the host end of
/// its veth holds the gateway.
const POD_SUBNET: &str = "10.251.37.0/29";
const POD_GATEWAY: &str = "10.251.37.1";

/// Serves `files` (name → text) over HTTP on loopback with python3's http.server:
/// the stand-in for kube-state-metrics and for a real cAdvisor's output.
struct StaticServer {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl StaticServer {
    fn start(files: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            fs::write(dir.path().join(name), text).unwrap();
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let child = Command::new("python3")
            .args(["-m", "http.server", "--bind", "127.0.0.1"])
            .arg(port.to_string())
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start python3 -m http.server");
        let deadline = Instant::now() + Duration::from_secs(10);
        while kadvisor::get(port, &format!("/{}", files[0].0)).is_none() {
            assert!(Instant::now() < deadline, "http.server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            child,
            port,
            _dir: dir,
        }
    }
}

impl Drop for StaticServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn with_target(mut job: Value, name: &str, target: &str, labels: Value) -> Value {
    job["job_name"] = json!(name);
    job["scrape_interval"] = json!(INTERVAL);
    job["static_configs"] = json!([{ "targets": [target], "labels": labels }]);
    job
}

/// One number of a flat-keyed cgroup file (`memory.stat`, `cpu.stat`).
fn keyed(text: &str, key: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok())?
    })
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The cgroup `id`'s directory of v1 `controller` on this hybrid host, or its v2
/// directory on a pure v2 host.
fn controller_dir(controller: &'static str, id: &str) -> PathBuf {
    v1_mounts(&[controller]).first().map_or_else(
        || v2_root().join(id.trim_start_matches('/')),
        |(_, mount)| mount.join(id.trim_start_matches('/')),
    )
}

/// `usage_usec` of a cgroup's v2 cpu.stat, in seconds: the kernel's CPU accounting.
fn cpu_stat_seconds(id: &str) -> f64 {
    let path = v2_root().join(id.trim_start_matches('/')).join("cpu.stat");
    keyed(&read(&path), "usage_usec").expect("usage_usec") / 1e6
}

/// (nr_periods, nr_throttled) of the cgroup's CFS bandwidth control.
fn cfs_periods(id: &str) -> (f64, f64) {
    let text = read(&controller_dir("cpu", id).join("cpu.stat"));
    (
        keyed(&text, "nr_periods").expect("nr_periods"),
        keyed(&text, "nr_throttled").expect("nr_throttled"),
    )
}

/// The container's memory as the kernel accounts it, read now, by the family the
/// recording rule reads: the same files and arithmetic cAdvisor documents (v1:
/// `memory.usage_in_bytes − total_inactive_file`, `total_rss`, `total_cache`,
/// `total_swap`; v2: `memory.current − inactive_file`, `anon`, `file`,
/// `memory.swap.current`).
fn kernel_memory(id: &str) -> Vec<(&'static str, f64)> {
    let dir = controller_dir("memory", id);
    let stat = read(&dir.join("memory.stat"));
    let get = |key: &str| keyed(&stat, key).unwrap_or_else(|| panic!("{key} in memory.stat"));
    let number = |file: &str| -> f64 { read(&dir.join(file)).trim().parse().expect(file) };
    if dir.join("memory.usage_in_bytes").exists() {
        vec![
            (
                "working_set_bytes",
                number("memory.usage_in_bytes") - get("total_inactive_file"),
            ),
            ("rss", get("total_rss")),
            ("cache", get("total_cache")),
            ("swap", get("total_swap")),
        ]
    } else {
        vec![
            (
                "working_set_bytes",
                number("memory.current") - get("inactive_file"),
            ),
            ("rss", get("anon")),
            ("cache", get("file")),
            ("swap", number("memory.swap.current")),
        ]
    }
}

/// A container config (for `Cri::run_container_with`) in the pod's network namespace.
fn in_pod_network(config: &mut k8s_cri::v1::ContainerConfig) {
    let linux = config.linux.get_or_insert_with(Default::default);
    pod_network(
        &mut linux
            .security_context
            .get_or_insert_with(Default::default)
            .namespace_options,
    );
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

/// kube-state-metrics stand-in for the pod: `kube_pod_info`, and the four
/// kube-state-metrics recording rules the pod dashboard divides by (requests and
/// limits per container), as static series.
fn kube_state_metrics(namespace: &str, pod: &str, containers: &[&str]) -> String {
    let mut text = format!(
        "# TYPE kube_pod_info gauge\nkube_pod_info{{namespace=\"{namespace}\",pod=\"{pod}\",node=\"{NODE}\",host_network=\"false\",uid=\"00000000-0000-0000-0000-000000000002\",created_by_kind=\"\",created_by_name=\"\",pod_ip=\"\",host_ip=\"\",priority_class=\"\"}} 1\n"
    );
    for (record, value) in [
        (
            "cluster:namespace:pod_cpu:active:kube_pod_container_resource_requests",
            0.1,
        ),
        (
            "cluster:namespace:pod_cpu:active:kube_pod_container_resource_limits",
            0.2,
        ),
        (
            "cluster:namespace:pod_memory:active:kube_pod_container_resource_requests",
            64e6,
        ),
        (
            "cluster:namespace:pod_memory:active:kube_pod_container_resource_limits",
            128e6,
        ),
    ] {
        for container in containers {
            text.push_str(&format!(
                "{record}{{namespace=\"{namespace}\",pod=\"{pod}\",container=\"{container}\",node=\"{NODE}\"}} {value}\n"
            ));
        }
    }
    text
}

/// Every query of kube-prometheus' pod dashboards that reads cAdvisor series
/// (tests/fixtures/kube-prometheus/pod-dashboard-queries.txt), variables
/// substituted as Grafana would for the pod; a variable's `label_values(expr, l)`
/// as `group by (l) (expr)`. Panics listing those that return nothing; returns
/// how many ran.
fn kube_prometheus_pod_dashboards(prometheus: &Prometheus, namespace: &str, pod: &str) -> usize {
    let text =
        fs::read_to_string(repo().join("tests/fixtures/kube-prometheus/pod-dashboard-queries.txt"))
            .unwrap();
    let mut empty = Vec::new();
    let mut count = 0;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let mut parts = line.splitn(3, " || ");
        let (board, panel, expr) = (
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap(),
        );
        let mut expr = expr
            .replace("$__rate_interval", RATE_INTERVAL)
            .replace("$cluster", "")
            .replace("$namespace", namespace)
            .replace("$pod", pod);
        if let Some(inner) = expr
            .strip_prefix("label_values(")
            .and_then(|e| e.strip_suffix(')'))
        {
            let (selector, label) = inner.rsplit_once(',').unwrap();
            expr = format!("group by ({}) ({selector})", label.trim());
        }
        count += 1;
        if prometheus.query(&expr).is_empty() {
            empty.push(format!("{board} / {panel}: {expr}"));
        }
    }
    assert!(count >= 40, "{count} queries in the fixture");
    assert!(
        empty.is_empty(),
        "kube-prometheus pod dashboard queries without data:\n{}\nscrapes: {}",
        empty.join("\n"),
        scrape_health(prometheus)
    );
    count
}

/// Every query of kube-prometheus' rules and alerts (their results as recorded) and
/// of its dashboards (tests/fixtures/profiles/kube-prometheus/dashboards, the
/// manifests the profile is generated from) that reads cAdvisor data, evaluated on
/// `full` and on `lean` (kadvisor with --profile kube-prometheus): the same series
/// (label sets, `instance` aside) with values within 10%, or 5% of the answer's
/// largest value (the two scrape at different instants). Returns how many queries were compared.
fn profile_answers_like_the_full_set(
    full: &Prometheus,
    lean: &Prometheus,
    namespace: &str,
    pod: &str,
) -> usize {
    let mut exprs: Vec<String> = [
        "node_namespace_pod_container:container_cpu_usage_seconds_total:sum_rate5m",
        "node_namespace_pod_container:container_cpu_usage_seconds_total:sum_irate",
        "node_namespace_pod_container:container_memory_working_set_bytes",
        "node_namespace_pod_container:container_memory_rss",
        "node_namespace_pod_container:container_memory_cache",
        "node_namespace_pod_container:container_memory_swap",
        r#"ALERTS{alertname="CPUThrottlingHigh"}"#,
    ]
    .map(str::to_owned)
    .to_vec();
    let dir = repo().join("tests/fixtures/profiles/kube-prometheus/dashboards");
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for file in files {
        let board: Value = serde_json::from_str(&fs::read_to_string(&file).unwrap()).unwrap();
        for (_, target) in queries(&board) {
            let Some(expr) = target["expr"].as_str() else {
                continue;
            };
            if !expr.contains("container_") {
                continue;
            }
            let expr = expr
                .replace("$__rate_interval", RATE_INTERVAL)
                .replace("$__interval", RATE_INTERVAL)
                .replace("$interval", RATE_INTERVAL)
                .replace("$resolution", RATE_INTERVAL)
                .replace("$cluster", "")
                .replace("$datasource", "")
                .replace("$namespace", namespace)
                .replace("$pod", pod)
                .replace("$node", NODE);
            // Workload variables and the like have no value here: such a query is
            // left out rather than guessed.
            if !expr.contains('$') {
                exprs.push(expr);
            }
        }
    }
    exprs.sort();
    exprs.dedup();
    // The two kadvisors listen on different ports: `instance` is the only label
    // that may differ.
    let without_instance = |mut series: Vec<Series>| {
        for s in &mut series {
            s.labels.remove("instance");
        }
        series
    };
    let mut differ = Vec::new();
    for expr in &exprs {
        let key = |s: &Series| format!("{:?}", s.labels);
        let mut a = without_instance(full.query(expr));
        let mut b = without_instance(lean.query(expr));
        a.sort_by_key(key);
        b.sort_by_key(key);
        // The two kadvisors are scraped at different instants: a small, busy
        // series (the traffic container's few MiB and ms) moves more than 10% between
        // them, so a value may also differ by 5% of the largest in its answer.
        // irate() reads the last two samples only: each Prometheus sees another
        // 5 s of bursty traffic, so those answers are compared by their series. So
        // are the recorded series kube-prometheus names `..._irate` (seen: the busy
        // container's `sum_irate` at 0.022 and 0.012 cores in the two Prometheus).
        // So is block IO: after its first seconds the traffic container's IO is a
        // rare single 4 KiB request, which one Prometheus may have scraped and the
        // other not yet (seen once: rate 0 in one, one 4,096-byte request in the
        // other's window, 163.84 B/s extrapolated).
        let instantaneous = expr.contains("irate") || expr.contains("container_fs_");
        let largest = a
            .iter()
            .chain(&b)
            .map(|s| s.value.abs())
            .fold(0.0, f64::max);
        let same = a.len() == b.len()
            && a.iter().zip(&b).all(|(x, y)| {
                let gap = (x.value - y.value).abs();
                x.labels == y.labels
                    && (instantaneous
                        || gap <= 0.1 * x.value.abs().max(y.value.abs())
                        || gap <= 0.05 * largest
                        || gap < 1e-6)
            });
        if !same {
            differ.push(format!(
                "{expr}
  full: {a:?}
  lean: {b:?}"
            ));
        }
    }
    assert!(exprs.len() >= 50, "{} queries", exprs.len());
    assert!(
        differ.is_empty(),
        "--profile kube-prometheus answers differently:
{}",
        differ.join(
            "
"
        )
    );
    exprs.len()
}

/// The one value of the instant query `expr` evaluated at Unix time `time`.
fn value_at(prometheus: &Prometheus, expr: &str, time: f64) -> f64 {
    let data = prometheus.api(&format!(
        "query?query={}&time={time}",
        prometheus::encode(expr)
    ));
    let result = data["result"].as_array().expect("result array");
    assert_eq!(result.len(), 1, "{expr}: want one series, got {data}");
    result[0]["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{expr}: bad value in {data}"))
}

/// The timestamps (Unix seconds) of the samples of `series` in the rule window that
/// ends at `evaluated`: the scrapes the rule's `rate` was computed from.
fn scrape_times(prometheus: &Prometheus, series: &str, evaluated: f64) -> Vec<f64> {
    let expr = format!("{series}[{RULE_WINDOW_SECONDS}s]");
    let data = prometheus.api(&format!(
        "query?query={}&time={evaluated}",
        prometheus::encode(&expr)
    ));
    let result = data["result"].as_array().expect("result array");
    assert_eq!(result.len(), 1, "{expr}: want one series, got {data}");
    let times: Vec<f64> = result[0]["values"]
        .as_array()
        .expect("values")
        .iter()
        .map(|v| v[0].as_f64().expect("sample timestamp"))
        .collect();
    assert!(times.len() >= 2, "{expr}: fewer than 2 samples: {data}");
    times
}

/// What Prometheus's `rate` over the rule window ending at `evaluated` returns when
/// its samples at the scrape times `window` are the kernel's own CPU time: the
/// delta between the first and the last scrape, extrapolated towards the window's
/// edges as Prometheus documents it (at most half a scrape interval past a sample
/// when the gap to the edge exceeds 1.1 intervals).
fn kernel_rate_over(samples: &[(f64, f64)], window: &[f64], evaluated: f64) -> f64 {
    let (first, last) = (window[0], window[window.len() - 1]);
    let delta = usage_at(samples, last) - usage_at(samples, first);
    let sampled = last - first;
    let average = sampled / (window.len() - 1) as f64;
    let range = RULE_WINDOW_SECONDS as f64;
    let edge = |gap: f64| {
        if gap < average * 1.1 {
            gap
        } else {
            average / 2.0
        }
    };
    let extrapolated = sampled + edge(first - (evaluated - range)) + edge(evaluated - last);
    delta * extrapolated / sampled / range
}

/// The scrape health of every target over the last 30 s, for failure messages: a
/// failed scrape marks a target's series stale, so an instant query of a gauge
/// returns nothing until the next one succeeds.
fn scrape_health(prometheus: &Prometheus) -> String {
    [
        "min_over_time(up[30s])",
        "max_over_time(scrape_duration_seconds[30s])",
    ]
    .map(|q| {
        let got: Vec<(String, f64)> = prometheus
            .query(q)
            .iter()
            .map(|s| (s.labels.get("job").cloned().unwrap_or_default(), s.value))
            .collect();
        format!("{q}: {got:?}")
    })
    .join("; ")
}

/// Runs every query of kadvisor's dashboards with the variables substituted as
/// Grafana would for this node and `namespace`/`pod`; panics on a panel reading a
/// family kadvisor does not serve, or returning nothing. Returns how many ran.
fn dashboard_queries_return_data(
    prometheus: &Prometheus,
    kadvisor: &Kadvisor,
    namespace: &str,
    pod: &str,
) -> usize {
    let scrape = kadvisor.scrape();
    let served: BTreeSet<&str> = scrape.samples.iter().map(|s| s.name.as_str()).collect();
    let mut count = 0;
    for file in dashboards() {
        let board: Value = serde_json::from_str(&fs::read_to_string(&file).unwrap()).unwrap();
        for (title, target) in queries(&board) {
            let expr = target["expr"]
                .as_str()
                .unwrap()
                .replace("$__rate_interval", RATE_INTERVAL)
                .replace("$cluster", "")
                .replace("$node", NODE)
                .replace("$namespace", namespace)
                .replace("$pod", pod);
            for family in expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| {
                    w.starts_with("container_")
                        || w.starts_with("kadvisor_")
                        || w.starts_with("process_")
                })
            {
                assert!(
                    served.contains(family) || EVENTUAL_FAMILIES.iter().any(|(f, _)| *f == family),
                    "{}: panel \"{title}\" reads {family}, which kadvisor does not serve",
                    file.display()
                );
            }
            count += 1;
            assert!(
                !prometheus.query(&expr).is_empty(),
                "{}: panel \"{title}\" returns no data: {expr}\nscrapes: {}",
                file.display(),
                scrape_health(prometheus)
            );
        }
    }
    count
}

#[test]
fn prometheus_runs_kube_prometheus_rules_against_kadvisor_and_a_real_pod() {
    if kadvisor_tests::ignore::because(kadvisor_tests::containerd::unavailable())
        || kadvisor_tests::ignore::because(kadvisor_tests::validators::yaml_unavailable())
    {
        return;
    }
    require_root();
    let _cpu = exclusive_cpu();
    let containerd = Containerd::start();
    let socket = containerd.socket();
    // Every group, the opt-in ones too: kadvisor's own dashboards have panels for
    // run-queue delay, socket traffic and crashes by signal. The kubelet's rows, as
    // the DaemonSet runs it (and a scrape of this shared host's every cgroup is slow).
    let kadvisor = Kadvisor::start(&[
        ALL_GROUPS[0],
        ALL_GROUPS[1],
        "--kubelet_rows",
        "--cri_endpoints",
        socket.to_str().unwrap(),
    ]);
    // The same node served with --profile kube-prometheus, scraped by a second
    // Prometheus: every rule, alert and dashboard query must return the same data.
    let lean = Kadvisor::start(&[
        "--profile",
        "kube-prometheus",
        "--cri_endpoints",
        socket.to_str().unwrap(),
    ]);
    let mut cri = Cri::connect(&socket);
    // A pod with its own network namespace, like every pod without hostNetwork.
    containerd.enable_pod_network(POD_SUBNET, POD_GATEWAY);
    let pod = cri.run_pod_with(POD_NAME, POD_NAMESPACE, &containerd.log_dir(), |config| {
        let linux = config.linux.get_or_insert_with(Default::default);
        pod_network(
            &mut linux
                .security_context
                .get_or_insert_with(Default::default)
                .namespace_options,
        );
    });
    // "busy": a busy loop held at 20% of a CPU by the CFS quota the kubelet sets
    // for `limits.cpu: 200m` (CRI cpu_quota/cpu_period), plus 16 MiB of page cache
    // (a file written in the container) and 16 MiB anonymous memory (dd's buffer,
    // held while dd blocks on a pipe nobody reads). Its memory then stays put, so
    // the rules' values can be compared with the kernel's files read later.
    let busy = cri.run_container_with(
        &pod,
        "busy",
        &[
            "sh",
            "-c",
            "dd if=/dev/zero of=/tmp/cache bs=1M count=16 2>/dev/null; \
             dd if=/dev/zero bs=16M count=1 2>/dev/null | sleep 3600 & \
             while :; do :; done",
        ],
        |config| {
            let linux = config.linux.get_or_insert_with(Default::default);
            let resources = linux.resources.get_or_insert_with(Default::default);
            resources.cpu_period = 100_000;
            resources.cpu_quota = 20_000;
            in_pod_network(config);
        },
    );
    // "traffic": block IO (a file written and synced, read back with O_DIRECT),
    // HTTP between its own server and client over the pod's loopback, and a ping a
    // second to the host end of the pod's veth (traffic on the pod's eth0).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let traffic_script = format!(
        "dd if=/dev/zero of=/tmp/io bs=1M count=8 conv=fsync 2>/dev/null; \
         dd if=/tmp/io of=/dev/null bs=1M iflag=direct 2>/dev/null; \
         echo hello > /tmp/index.html; \
         busybox httpd -f -p 127.0.0.1:{port} -h /tmp & \
         busybox ping -q {POD_GATEWAY} >/dev/null & \
         while sleep 1; do busybox wget -q -O /dev/null http://127.0.0.1:{port}/index.html; done"
    );
    cri.run_container_with(
        &pod,
        "traffic",
        &["sh", "-c", &traffic_script],
        in_pod_network,
    );
    let busy_id = pod.container_cgroup(&busy);
    let (namespace, pod_name) = (pod.namespace.clone(), pod.name.clone());
    let cleanup = PodCleanup { cri: &mut cri, pod };

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

    let cadvisor_output =
        fs::read_to_string(repo().join("tests/fixtures/kube-prometheus/cadvisor-testdata.prom"))
            .unwrap();
    let server = StaticServer::start(&[
        (
            "kube-state-metrics",
            &kube_state_metrics(&namespace, &pod_name, &["busy", "traffic"]),
        ),
        ("cadvisor", &cadvisor_output),
    ]);

    // Scrape configs: the drop-in ServiceMonitor's endpoint, with the labels the
    // operator's discovery gives a kadvisor pod as static labels.
    let dropin = scrape_config(&deploy("dropin/serviceMonitor.yaml"));
    let mut kadvisor_job = with_target(
        dropin.clone(),
        "kadvisor",
        &format!("127.0.0.1:{}", kadvisor.port()),
        json!({
            "__meta_kubernetes_pod_node_name": NODE,
            "namespace": "monitoring", "pod": "kadvisor-x7k2p", "container": "kadvisor",
            "service": "kadvisor", "endpoint": "https",
        }),
    );
    kadvisor_job["scheme"] = json!("http");
    let mut fixture_job = with_target(
        dropin,
        "cadvisor-fixture",
        &format!("127.0.0.1:{}", server.port),
        // No namespace/pod target labels here: this old cAdvisor output lacks the
        // empty pod/namespace labels every kubelet and kadvisor row carries, so
        // honorLabels would let target labels in and defeat the second drop.
        json!({ "__meta_kubernetes_pod_node_name": FIXTURE_NODE }),
    );
    fixture_job["metrics_path"] = json!("/cadvisor");
    // metrics_path is copied from __metrics_path__; keep the kubelet's value.
    fixture_job["relabel_configs"]
        .as_array_mut()
        .unwrap()
        .push(json!({"target_label": "metrics_path", "replacement": "/metrics/cadvisor"}));
    let ksm_job = json!({
        "job_name": "kube-state-metrics",
        "scrape_interval": INTERVAL,
        "honor_labels": true,
        "metrics_path": "/kube-state-metrics",
        "static_configs": [{ "targets": [format!("127.0.0.1:{}", server.port)] }],
    });
    let mut lean_job = kadvisor_job.clone();
    lean_job["static_configs"][0]["targets"] = json!([format!("127.0.0.1:{}", lean.port())]);
    let lean_config = json!({
        "global": { "scrape_interval": INTERVAL, "evaluation_interval": INTERVAL },
        "rule_files": ["rules.yml"],
        "scrape_configs": [lean_job, fixture_job.clone(), ksm_job.clone()],
    });
    let config = json!({
        "global": { "scrape_interval": INTERVAL, "evaluation_interval": INTERVAL },
        "rule_files": ["rules.yml"],
        "scrape_configs": [kadvisor_job, fixture_job, ksm_job],
    });
    let rules = succeeded(
        "rules test copy",
        &yaml_python()
            .arg("rules")
            .output()
            .expect("run validate.py"),
    );
    assert!(
        rules.contains(&format!("[{RULE_WINDOW_SECONDS}s]")) && !rules.contains("[5m]"),
        "{rules}"
    );
    // The kernel's CPU time of the busy container, sampled through the run, is read
    // back at the very scrape timestamps the rule's window holds: how much of its
    // quota the loop gets varies with the machine's load, so only the same window
    // compares.
    let sampler = CpuStatSampler::start(
        v2_root()
            .join(busy_id.trim_start_matches('/'))
            .join("cpu.stat"),
    );
    let kernel_start = (
        Instant::now(),
        cpu_stat_seconds(&busy_id),
        cfs_periods(&busy_id),
    );
    let prometheus = Prometheus::start(&config.to_string(), &[("rules.yml", &rules)]);
    let lean_prometheus = Prometheus::start(&lean_config.to_string(), &[("rules.yml", &rules)]);
    let started = Instant::now();
    prometheus.wait_targets_up(3, Duration::from_secs(30));
    // A target turns "up" before its first scrape's samples are committed (a
    // 9 MB body here): wait until they can be queried.
    let root_query = format!(
        r#"container_cpu_usage_seconds_total{{job="kubelet", metrics_path="/metrics/cadvisor", node="{NODE}", id="/"}}"#
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while prometheus.query(&root_query).is_empty() {
        assert!(
            Instant::now() < deadline,
            "no kadvisor series 30 s after its target was up: {}",
            scrape_health(&prometheus)
        );
        std::thread::sleep(Duration::from_millis(250));
    }

    // Labels of the drop-in mode: what the kubelet's endpoint gives its series.
    let root = prometheus.query_one(&root_query);
    for (label, want) in [
        ("job", "kubelet"),
        ("metrics_path", "/metrics/cadvisor"),
        ("service", "kubelet"),
        ("endpoint", "https-metrics"),
        ("node", NODE),
        ("cpu", "total"),
    ] {
        assert_eq!(
            root.labels.get(label).map(String::as_str),
            Some(want),
            "{label}: {root:?}"
        );
    }
    // honorLabels: kadvisor's empty pod/namespace/container win over the
    // kadvisor pod's own target labels (as the kubelet's do over its target's)...
    for label in ["pod", "namespace", "container"] {
        assert!(
            !root.labels.contains_key(label),
            "{label} leaked from the target: {root:?}"
        );
    }
    // ... the pod's containers keep their own ...
    let busy_series = prometheus.query_one(&format!(
        r#"container_cpu_usage_seconds_total{{job="kubelet", id="{busy_id}"}}"#
    ));
    assert_eq!(busy_series.labels["pod"], pod_name, "{busy_series:?}");
    assert_eq!(busy_series.labels["container"], "busy", "{busy_series:?}");
    assert!(!busy_series.labels["image"].is_empty(), "{busy_series:?}");
    // ... and a series without such labels (kadvisor's own) gets the target's.
    let build = prometheus.query_one(&format!(r#"kadvisor_build_info{{node="{NODE}"}}"#));
    assert_eq!(build.labels["pod"], "kadvisor-x7k2p", "{build:?}");

    // honorTimestamps: false and the three drops, on a real cAdvisor's output
    // (whose samples carry 2014 timestamps that would otherwise be out of bounds).
    let periods = prometheus.query_one(&format!(
        r#"container_cpu_cfs_periods_total{{node="{FIXTURE_NODE}", job="kubelet", metrics_path="/metrics/cadvisor"}}"#
    ));
    assert_eq!(periods.value, 723.0);
    for dropped in [
        "container_tasks_state",
        "container_cpu_load_average_10s",
        "container_spec_cpu_shares",
        "container_threads",
        "container_file_descriptors",
        "container_last_seen",
        "container_start_time_seconds",
    ] {
        let got = prometheus.query(&format!(r#"{dropped}{{node="{FIXTURE_NODE}"}}"#));
        assert!(got.is_empty(), "{dropped} should be dropped: {got:?}");
    }
    for kept in [
        "container_memory_usage_bytes",
        "container_blkio_device_usage_total",
        "container_cpu_load_d_average_10s",
    ] {
        assert!(
            !prometheus
                .query(&format!(r#"{kept}{{node="{FIXTURE_NODE}"}}"#))
                .is_empty(),
            "{kept} should be kept"
        );
    }

    // Fill one rule window (and two evaluations) before reading the rules.
    let filled = Duration::from_secs(RULE_WINDOW_SECONDS + 8);
    std::thread::sleep(filled.saturating_sub(started.elapsed()));
    let kernel_end = (
        Instant::now(),
        cpu_stat_seconds(&busy_id),
        cfs_periods(&busy_id),
    );
    let kernel_rate =
        (kernel_end.1 - kernel_start.1) / (kernel_end.0 - kernel_start.0).as_secs_f64();

    let this =
        format!(r#"namespace="{namespace}", pod="{pod_name}", container="busy", node="{NODE}""#);
    let rule = format!(
        "node_namespace_pod_container:container_cpu_usage_seconds_total:sum_rate5m{{{this}}}"
    );
    // The rule's latest sample and when it was evaluated, read at one query time.
    let now = cpu_stat::unix_now();
    let cpu = value_at(&prometheus, &rule, now);
    let evaluated = value_at(&prometheus, &format!("timestamp({rule})"), now);
    let window = scrape_times(
        &prometheus,
        &format!(r#"container_cpu_usage_seconds_total{{job="kubelet", id="{busy_id}"}}"#),
        evaluated,
    );
    std::thread::sleep(Duration::from_millis(50));
    let samples = sampler.finish();
    let kernel_window_rate = kernel_rate_over(&samples, &window, evaluated);
    eprintln!(
        "sum_rate5m (test copy, [{RULE_WINDOW_SECONDS}s]) {cpu:.4} cores, kernel cpu.stat over its {} scrapes {kernel_window_rate:.4} cores, over the whole run {kernel_rate:.4} (quota 0.2)",
        window.len()
    );
    assert_close("sum_rate5m vs cpu.stat", cpu, kernel_window_rate, 0.05);
    assert!(
        kernel_rate < 0.21,
        "the CRI quota did not hold: {kernel_rate}"
    );
    let irate = prometheus.query_one(&format!(
        "node_namespace_pod_container:container_cpu_usage_seconds_total:sum_irate{{{this}}}"
    ));
    // The last 5 s only: under the quota, and running, but how much of its quota
    // the loop got depends on the machine's load (seen: 0.085 cores at load 16 on
    // 2 CPUs, while sum_rate5m matched cpu.stat); sum_rate5m is the exact check.
    assert!(
        irate.value > 0.0 && irate.value < 0.3,
        "sum_irate {irate:?}"
    );

    // The four memory rules against the kernel's files, read right after.
    for (family, rule) in ["working_set_bytes", "rss", "cache", "swap"].map(|f| {
        (
            f,
            prometheus.query_one(&format!(
                "node_namespace_pod_container:container_memory_{f}{{{this}}}"
            )),
        )
    }) {
        let kernel = kernel_memory(&busy_id)
            .into_iter()
            .find(|(f, _)| *f == family)
            .unwrap()
            .1;
        eprintln!(
            "node_namespace_pod_container:container_memory_{family} {} bytes, kernel {kernel}",
            rule.value
        );
        assert_eq!(rule.labels["node"], NODE, "{rule:?}");
        if family == "swap" && kernel == 0.0 {
            assert_eq!(rule.value, 0.0, "swap");
        } else {
            assert_close(
                &format!("container_memory_{family} rule vs kernel"),
                rule.value,
                kernel,
                0.02,
            );
        }
        // The workload's 16 MiB of anonymous memory is visible (its page cache is
        // compared with the kernel's above only: on a busy shared machine the kernel
        // reclaimed more than half of it within the test, seen twice).
        if family == "rss" {
            assert!(rule.value >= 8.0 * 1024.0 * 1024.0, "{family}: {rule:?}");
        }
    }

    // CPUThrottlingHigh: more than 25% of the container's CFS periods throttled.
    let throttled = (kernel_end.2.1 - kernel_start.2.1) / (kernel_end.2.0 - kernel_start.2.0);
    eprintln!(
        "kernel: {:.0}% of the busy container's periods throttled",
        throttled * 100.0
    );
    let alert = prometheus.query_one(&format!(
        r#"ALERTS{{alertname="CPUThrottlingHigh", alertstate="firing", namespace="{namespace}", pod="{pod_name}", container="busy"}}"#
    ));
    assert_eq!(alert.labels["severity"], "info", "{alert:?}");
    assert!(
        prometheus
            .query(r#"ALERTS{alertname="CPUThrottlingHigh", container="traffic"}"#)
            .is_empty(),
        "the unthrottled container must not alert"
    );
    let rules = prometheus.rules();
    assert_eq!(rules.len(), 7, "{rules:?}");
    for (name, health, error) in &rules {
        assert_eq!(health, "ok", "{name}: {error}");
    }

    // kadvisor's dashboards: every query returns data for this pod and node.
    let ours = dashboard_queries_return_data(&prometheus, &kadvisor, &namespace, &pod_name);
    eprintln!("{ours} queries of kadvisor's dashboards returned data");
    // The pod's eth0 (its own network namespace): kadvisor's counter in Prometheus
    // against the namespace's /proc/<pid>/net/dev read right after (a ping a
    // second and ARP run meanwhile: one scrape interval's packets apart at most).
    let pid: u32 = read(&controller_dir("memory", &busy_id).join("cgroup.procs"))
        .lines()
        .next()
        .expect("a process in the busy container")
        .parse()
        .unwrap();
    let served = prometheus.query_one(&format!(
        r#"sum(container_network_transmit_packets_total{{job="kubelet", metrics_path="/metrics/cadvisor", namespace="{namespace}", pod="{pod_name}", interface="eth0"}})"#
    ));
    let net_dev = read(Path::new(&format!("/proc/{pid}/net/dev")));
    let eth0: Vec<f64> = net_dev
        .lines()
        .find_map(|l| l.trim().strip_prefix("eth0:"))
        .expect("eth0 in the pod's net/dev")
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect();
    eprintln!(
        "pod eth0 transmit packets: Prometheus {}, kernel {}",
        served.value, eth0[9]
    );
    assert!(served.value > 0.0, "{served:?}");
    assert!(
        (eth0[9] - served.value).abs() <= 15.0,
        "eth0 tx packets {} vs kernel {}",
        served.value,
        eth0[9]
    );

    // kube-prometheus' own pod dashboards (containers by name): every query that
    // reads cAdvisor series returns data for the pod.
    let count = kube_prometheus_pod_dashboards(&prometheus, &namespace, &pod_name);
    eprintln!("{count} kube-prometheus pod dashboard queries returned data");

    // --profile kube-prometheus: the same answers to every rule, alert and
    // kube-prometheus dashboard query as the full set.
    let compared =
        profile_answers_like_the_full_set(&prometheus, &lean_prometheus, &namespace, &pod_name);
    eprintln!("{compared} queries answered alike with --profile kube-prometheus");
    let lean_scrape = lean.scrape();
    assert!(
        !lean_scrape
            .samples
            .iter()
            .any(|s| s.name == "container_memory_usage_bytes"),
        "the profile serves only what kube-prometheus reads"
    );
    drop(lean_prometheus);

    drop(prometheus);
    drop(cleanup);
}
