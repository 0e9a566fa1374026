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
//! alerts that read cAdvisor data, and answers the queries of kadvisor's dashboards.
use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use kadvisor_tests::{
    assert_close,
    cgroup::TestCgroup,
    exclusive_cpu,
    kadvisor::{self, Kadvisor},
    prometheus::Prometheus,
    require_root,
};
use serde_json::{Value, json};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Where scripts/setup.sh installs the pinned validators.
fn tools() -> PathBuf {
    std::env::var_os("KADVISOR_TOOLS").map_or_else(
        || {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is set"))
                .join(".cache/kadvisor/tools")
        },
        PathBuf::from,
    )
}

fn python() -> Command {
    let python = tools().join("venv/bin/python");
    assert!(
        python.exists(),
        "{} missing: run scripts/setup.sh (installs the validators)",
        python.display()
    );
    let mut command = Command::new(python);
    command.arg(repo().join("tests/kube-prometheus/validate.py"));
    command
}

fn node(kind: &str, files: &[PathBuf]) -> Output {
    let node_dir = tools().join("node");
    assert!(
        node_dir.join("node_modules").exists(),
        "{} missing: run scripts/setup.sh (installs the validators)",
        node_dir.display()
    );
    Command::new("node")
        .arg(repo().join("tests/kube-prometheus/validate_schemas.mjs"))
        .arg(node_dir)
        .arg(kind)
        .args(files)
        .output()
        .expect("run node (scripts/setup.sh installs nodejs)")
}

fn succeeded(what: &str, output: &Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{stdout}{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn failed(what: &str, output: &Output) {
    assert!(
        !output.status.success(),
        "{what} should have failed but passed:\n{}",
        String::from_utf8_lossy(&output.stdout)
    );
}

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
fn service_monitors_match_the_prometheus_operator_crd() {
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
    assert_eq!(
        relabel(&dropin, "job").last().unwrap()["replacement"],
        "kubelet"
    );
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
        &python()
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
// Live: a real Prometheus, the real rules, a running kadvisor.

const NODE: &str = "kadvisor-test-node";
const FIXTURE_NODE: &str = "cadvisor-fixture-node";
/// Scrape and rule interval of the test Prometheus. The ServiceMonitor says 30s;
/// the test shortens it (and nothing else) so it runs in about a minute.
const INTERVAL: &str = "2s";
/// `$__rate_interval` for the dashboards' queries: 4 scrape intervals and more.
const RATE_INTERVAL: &str = "20s";

/// Families kadvisor's dashboards query that are not (yet) in every scrape, and
/// why: most are added by other issues. A query over a family kadvisor does not
/// serve may return nothing (and is listed); once served, it must return data.
const AWAITED_FAMILIES: &[(&str, &str)] = &[
    (
        "kadvisor_scrape_errors_total",
        "appears with the first failed source",
    ),
    ("container_cpu_schedstat_runqueue_seconds_total", "issue 3"),
    ("container_cpu_schedstat_run_periods_total", "issue 3"),
    ("container_crashes_total", "issue 3"),
    ("container_oom_events_total", "issue 4"),
    ("container_socket_transmit_bytes_total", "issue 5"),
    ("container_socket_receive_bytes_total", "issue 5"),
    ("container_socket_transmit_packets_total", "issue 5"),
    ("container_socket_receive_packets_total", "issue 5"),
];

/// A v1 `cpu` cgroup with a CFS quota (this hybrid host's cpu controller), or the
/// same limit through `cpu.max` of the v2 cgroup on a pure v2 host.
struct CpuQuota {
    v1_dir: Option<PathBuf>,
}

impl CpuQuota {
    /// `percent` of one CPU, for the processes later passed to `add`.
    fn new(cgroup: &TestCgroup, percent: u32) -> Self {
        let quota_us = 100_000 * u64::from(percent) / 100;
        let v1 = Path::new("/sys/fs/cgroup/cpu");
        if v1.join("cpu.cfs_quota_us").exists() {
            let dir = v1.join(cgroup.id().trim_start_matches('/'));
            fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
            fs::write(dir.join("cpu.cfs_period_us"), "100000").unwrap();
            fs::write(dir.join("cpu.cfs_quota_us"), quota_us.to_string()).unwrap();
            Self { v1_dir: Some(dir) }
        } else {
            fs::write(cgroup.path().join("cpu.max"), format!("{quota_us} 100000"))
                .unwrap_or_else(|e| panic!("set cpu.max of {}: {e}", cgroup.id()));
            Self { v1_dir: None }
        }
    }

    fn add(&self, pid: u32) {
        if let Some(dir) = &self.v1_dir {
            fs::write(dir.join("cgroup.procs"), pid.to_string())
                .unwrap_or_else(|e| panic!("move {pid} into {}: {e}", dir.display()));
        }
    }
}

impl Drop for CpuQuota {
    fn drop(&mut self) {
        if let Some(dir) = &self.v1_dir {
            // Processes still inside (a test that panicked before stopping its
            // workload) go back to the root cpu cgroup so the directory can go.
            if let (Ok(procs), Some(root)) =
                (fs::read_to_string(dir.join("cgroup.procs")), dir.parent())
            {
                for pid in procs.lines() {
                    let _ = fs::write(root.join("cgroup.procs"), pid);
                }
            }
            for _ in 0..50 {
                if fs::remove_dir(dir).is_ok() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            eprintln!("warning: could not remove {}", dir.display());
        }
    }
}

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

#[test]
fn prometheus_runs_kube_prometheus_rules_against_kadvisor() {
    require_root();
    let _cpu = exclusive_cpu();
    let kadvisor = Kadvisor::start(&[]);

    // The workload: a busy loop held to 20% of a CPU by a CFS quota.
    let mut cgroup = TestCgroup::new("kube-prometheus");
    let quota = CpuQuota::new(&cgroup, 20);
    let pid = cgroup.spawn_busy();
    quota.add(pid);

    // The workload's runtime labels as kadvisor serves them (empty until runtime
    // metadata is joined), for the kube_pod_info stand-in and the dashboards.
    let row = kadvisor.scrape();
    let row = row
        .find("container_cpu_usage_seconds_total", &[("id", cgroup.id())])
        .first()
        .map(|s| s.labels.clone())
        .expect("the workload's row");
    let (namespace, pod) = (row["namespace"].clone(), row["pod"].clone());

    let kube_pod_info = format!(
        "# TYPE kube_pod_info gauge\nkube_pod_info{{namespace=\"{namespace}\",pod=\"{pod}\",node=\"{NODE}\",host_network=\"false\",uid=\"00000000-0000-0000-0000-000000000001\",created_by_kind=\"\",created_by_name=\"\",pod_ip=\"\",host_ip=\"\",priority_class=\"\"}} 1\n"
    );
    let cadvisor_output =
        fs::read_to_string(repo().join("tests/fixtures/kube-prometheus/cadvisor-testdata.prom"))
            .unwrap();
    let server = StaticServer::start(&[
        ("kube-state-metrics", &kube_pod_info),
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
    let config = json!({
        "global": { "scrape_interval": INTERVAL, "evaluation_interval": INTERVAL },
        "rule_files": ["rules.yml"],
        "scrape_configs": [kadvisor_job, fixture_job, ksm_job],
    });
    let rules = succeeded(
        "rules test copy",
        &python().arg("rules").output().expect("run validate.py"),
    );
    let kernel_start = (Instant::now(), cgroup.cpu_stat_usage_seconds());
    let prometheus = Prometheus::start(&config.to_string(), &[("rules.yml", &rules)]);
    prometheus.wait_targets_up(3, Duration::from_secs(30));
    let series_start = Instant::now();

    // Labels of the drop-in mode: what the kubelet's endpoint gives its series.
    let root = prometheus.query_one(&format!(
        r#"container_cpu_usage_seconds_total{{job="kubelet", metrics_path="/metrics/cadvisor", node="{NODE}", id="/"}}"#
    ));
    for (label, want) in [
        ("job", "kubelet"),
        ("metrics_path", "/metrics/cadvisor"),
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
    // kadvisor pod's own target labels (as the kubelet's do over its target's).
    for label in ["pod", "namespace", "container"] {
        assert!(
            !root.labels.contains_key(label),
            "{label} leaked from the target: {root:?}"
        );
    }
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

    // Let ~15 scrapes land, then compare the CPU rate Prometheus computes from
    // kadvisor's counter (the sum_rate5m rule's own selector) with the kernel's.
    std::thread::sleep(Duration::from_secs(30));
    let kernel_end = (Instant::now(), cgroup.cpu_stat_usage_seconds());
    let window = series_start.elapsed().as_secs() + 2;
    let rate = prometheus
        .query_one(&format!(
            r#"rate(container_cpu_usage_seconds_total{{job="kubelet", metrics_path="/metrics/cadvisor", node="{NODE}", id="{}"}}[{window}s])"#,
            cgroup.id()
        ))
        .value;
    let kernel_rate =
        (kernel_end.1 - kernel_start.1) / (kernel_end.0 - kernel_start.0).as_secs_f64();
    eprintln!(
        "workload CPU: prometheus rate {rate:.4}, kernel cpu.stat {kernel_rate:.4} cores (quota 0.2)"
    );
    assert_close(
        "CPU rate of the workload vs cpu.stat",
        rate,
        kernel_rate,
        0.05,
    );
    assert!(kernel_rate < 0.21, "the quota did not hold: {kernel_rate}");

    // Every rule and alert that reads cAdvisor data loaded and evaluates cleanly.
    let rules = prometheus.rules();
    assert_eq!(rules.len(), 7, "{rules:?}");
    for (name, health, error) in &rules {
        assert_eq!(health, "ok", "{name}: {error}");
    }

    // Every query of kadvisor's dashboards returns data, variables substituted
    // the way Grafana would for this node and the workload's pod.
    let awaited = dashboard_queries_return_data(&prometheus, &kadvisor, &namespace, &pod);
    assert!(
        awaited
            .iter()
            .all(|a| !a.starts_with("\"kadvisor / Cost\"")),
        "the cost dashboard needs nothing but kadvisor itself: {awaited:#?}"
    );

    drop(prometheus);
    drop(cgroup);
    drop(quota);
}

/// Runs every query of kadvisor's dashboards with the variables substituted as
/// Grafana would for this node and `namespace`/`pod`. Panics on a query that
/// returns nothing although everything it needs is served; returns the queries
/// that wait for a family another issue adds, or for runtime labels.
fn dashboard_queries_return_data(
    prometheus: &Prometheus,
    kadvisor: &Kadvisor,
    namespace: &str,
    pod: &str,
) -> Vec<String> {
    let scrape = kadvisor.scrape();
    let served: BTreeSet<&str> = scrape.samples.iter().map(|s| s.name.as_str()).collect();
    let runtime_labels = scrape
        .samples
        .iter()
        .any(|s| s.labels.get("container").is_some_and(|c| !c.is_empty()));
    let mut awaited = Vec::new();
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
            // Every family a panel reads is kadvisor's, or one another issue adds.
            for family in expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| {
                    w.starts_with("container_")
                        || w.starts_with("kadvisor_")
                        || w.starts_with("process_")
                })
            {
                assert!(
                    served.contains(family) || AWAITED_FAMILIES.iter().any(|(f, _)| *f == family),
                    "{}: panel \"{title}\" reads {family}, which nothing serves",
                    file.display()
                );
            }
            if !prometheus.query(&expr).is_empty() {
                continue;
            }
            let missing: Vec<&(&str, &str)> = AWAITED_FAMILIES
                .iter()
                .filter(|(family, _)| expr.contains(family) && !served.contains(family))
                .collect();
            let why = if !missing.is_empty() {
                format!("{missing:?}")
            } else if expr.contains(r#"container!="""#) && !runtime_labels {
                "runtime labels (issue 6)".to_owned()
            } else {
                panic!(
                    "{}: panel \"{title}\" returns no data: {expr}",
                    file.display()
                );
            };
            awaited.push(format!("{} / {title}: awaits {why}", board["title"]));
        }
    }
    eprintln!(
        "dashboard panels awaiting other issues:\n  {}",
        awaited.join("\n  ")
    );
    awaited
}
