//! The install recipes of docs/kube-prometheus.md and docs/kube-prometheus-stack.md,
//! built as written and checked offline: every object against the Kubernetes
//! schema, ServiceMonitors against the prometheus-operator CRD schema, dashboards
//! against Grafana's dashboard schema, and what each route must do (the kubelet's
//! cAdvisor endpoint gone, kadvisor scraped with the labels the rules select, the
//! dashboards present, the image from the one place it is set).
//!
//! kustomize has no Debian, PyPI or npm package, so the kustomize routes are built
//! by validate.py's implementation of the subset of kustomize they use (it fails on
//! anything else); where `kubectl` is installed (the machines this project is built
//! on ship kubectl 1.32 with kustomize 5.5), the real `kubectl kustomize` builds each
//! route too and must produce the same objects (docs/testing.md).
//! kube-prometheus and the Helm chart are stand-ins: their objects the recipes
//! patch, from tests/fixtures/ (verbatim, with their versions).
use std::{
    fs,
    path::{Path, PathBuf},
};

use kadvisor_tests::validators::{node, python, repo, succeeded};
use serde_json::Value;

/// `newName:newTag` of the `kadvisor` image in deploy/kube-prometheus/base/kustomization.yaml.
fn configured_image() -> String {
    let text =
        fs::read_to_string(repo().join("deploy/kube-prometheus/base/kustomization.yaml")).unwrap();
    let field = |key: &str| -> String {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(key))
            .unwrap_or_else(|| panic!("{key} in the base kustomization"))
            .trim()
            .trim_matches('"')
            .to_owned()
    };
    format!("{}:{}", field("newName:"), field("newTag:"))
}

/// Builds `dir` with validate.py's kustomize; returns the objects and the output dir.
fn kustomize(dir: &Path) -> (Vec<Value>, tempfile::TempDir) {
    let out = tempfile::tempdir().unwrap();
    succeeded(
        &format!("kustomize build {}", dir.display()),
        &python()
            .arg("kustomize")
            .arg(dir)
            .arg(out.path())
            .output()
            .expect("run validate.py"),
    );
    let all = fs::read_to_string(out.path().join("all.json")).unwrap();
    (serde_json::from_str(&all).unwrap(), out)
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
}

fn files_ending(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    files.sort();
    files
}

fn kadvisor_image(daemonset: &Value) -> &str {
    daemonset["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "kadvisor")
        .unwrap()["image"]
        .as_str()
        .unwrap()
}

/// Both dashboards as ConfigMaps holding dashboards/*.json byte for byte, with the
/// label kube-prometheus-stack's Grafana sidecar loads; their JSON passes Grafana's schema.
fn assert_dashboard_config_maps(objects: &[Value], out: &Path) {
    for board in ["kadvisor-containers", "kadvisor-cost"] {
        let map = find(objects, "ConfigMap", &format!("grafana-dashboard-{board}"))
            .unwrap_or_else(|| panic!("{board} ConfigMap missing"));
        let file = format!("{board}.json");
        let want = fs::read_to_string(repo().join("dashboards").join(&file)).unwrap();
        assert_eq!(map["data"][&file].as_str(), Some(want.as_str()), "{board}");
        assert_eq!(map["metadata"]["labels"]["grafana_dashboard"], "1");
    }
    let boards = files_ending(out, ".json")
        .into_iter()
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("kadvisor-")
        })
        .collect::<Vec<_>>();
    assert_eq!(boards.len(), 2, "{boards:?}");
    succeeded("dashboards of the route", &node("dashboard", &boards));
}

#[test]
fn kustomize_overlay_for_kube_prometheus_builds_as_written() {
    if kadvisor_tests::ignore::because(kadvisor_tests::validators::unavailable()) {
        return;
    }
    // The example's directory layout: kube-prometheus/ (a stand-in with the objects
    // the overlay patches) and kadvisor/ (this repository) beside the overlay.
    let dir = tempfile::tempdir().unwrap();
    let stand_in = dir.path().join("kube-prometheus");
    fs::create_dir(&stand_in).unwrap();
    let fixtures = repo().join("tests/fixtures/kube-prometheus");
    for file in ["kubelet-servicemonitor.yaml", "grafana-deployment.yaml"] {
        fs::copy(fixtures.join(file), stand_in.join(file)).unwrap();
    }
    fs::write(
        stand_in.join("kustomization.yaml"),
        "resources:\n  - kubelet-servicemonitor.yaml\n  - grafana-deployment.yaml\n",
    )
    .unwrap();
    std::os::unix::fs::symlink(repo(), dir.path().join("kadvisor")).unwrap();
    fs::copy(
        repo().join("examples/kube-prometheus/kustomization.yaml"),
        dir.path().join("kustomization.yaml"),
    )
    .unwrap();
    let (objects, out) = kustomize(dir.path());

    // The kubelet keeps every endpoint but /metrics/cadvisor; kadvisor's is added.
    let kubelet = find(&objects, "ServiceMonitor", "kubelet").unwrap();
    let paths: Vec<&str> = kubelet["spec"]["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap_or("/metrics"))
        .collect();
    assert_eq!(paths, ["/metrics", "/metrics/probes", "/metrics/slis"]);
    let ours = find(&objects, "ServiceMonitor", "kadvisor").unwrap();
    assert_eq!(ours["spec"]["endpoints"][0]["path"], "/metrics/cadvisor");
    let monitors = files_ending(out.path(), ".json")
        .into_iter()
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("ServiceMonitor-")
        })
        .collect::<Vec<_>>();
    assert_eq!(monitors.len(), 2);
    succeeded(
        "ServiceMonitors of the overlay",
        &node("servicemonitor", &monitors),
    );

    let daemonset = find(&objects, "DaemonSet", "kadvisor").unwrap();
    assert_eq!(kadvisor_image(daemonset), configured_image());

    // Grafana mounts both dashboards where kube-prometheus mounts its own.
    assert_dashboard_config_maps(&objects, out.path());
    let grafana = &find(&objects, "Deployment", "grafana").unwrap()["spec"]["template"]["spec"];
    for board in ["kadvisor-containers", "kadvisor-cost"] {
        let name = format!("grafana-dashboard-{board}");
        assert!(
            grafana["volumes"]
                .as_array()
                .unwrap()
                .iter()
                .any(|v| v["configMap"]["name"] == name.as_str()),
            "{name} volume"
        );
        let mounts = grafana["containers"][0]["volumeMounts"].as_array().unwrap();
        let mount = mounts
            .iter()
            .find(|m| m["name"] == name.as_str())
            .expect("mounted");
        assert_eq!(
            mount["mountPath"],
            format!("/grafana-dashboard-definitions/0/{board}")
        );
    }
}

#[test]
fn kube_prometheus_stack_values_and_kustomization_build_as_written() {
    if kadvisor_tests::ignore::because(kadvisor_tests::validators::unavailable()) {
        return;
    }
    // The chart's own ServiceMonitor for kadvisor, from values.yaml: checked against
    // the chart's cAdvisor endpoint (validate.py stack-values) and the CRD schema.
    let out = tempfile::tempdir().unwrap();
    let report = succeeded(
        "kube-prometheus-stack values",
        &python()
            .arg("stack-values")
            .arg(out.path())
            .output()
            .expect("run validate.py"),
    );
    assert!(report.contains("job=kubelet"), "{report}");
    let monitor = out.path().join("ServiceMonitor-kadvisor.json");
    succeeded("values ServiceMonitor", &node("servicemonitor", &[monitor]));

    // The objects: kadvisor with the configured image, the dashboards for the
    // sidecar, and no ServiceMonitor (the chart's would be a duplicate).
    let (objects, out) = kustomize(&repo().join("deploy/kube-prometheus-stack"));
    assert!(find(&objects, "ServiceMonitor", "kadvisor").is_none());
    let daemonset = find(&objects, "DaemonSet", "kadvisor").unwrap();
    assert_eq!(kadvisor_image(daemonset), configured_image());
    assert_dashboard_config_maps(&objects, out.path());
    // The label and value are the chart's sidecar defaults.
    let chart =
        fs::read_to_string(repo().join("tests/fixtures/kube-prometheus-stack/values-excerpt.yaml"))
            .unwrap();
    assert!(
        chart.contains("label: grafana_dashboard\n") && chart.contains("labelValue: '1'\n"),
        "{chart}"
    );
}

#[test]
fn jsonnet_example_builds_as_written() {
    if kadvisor_tests::ignore::because(kadvisor_tests::validators::unavailable()) {
        return;
    }
    let out = tempfile::tempdir().unwrap();
    succeeded(
        "examples/kube-prometheus/kadvisor.jsonnet",
        &python()
            .arg("jsonnet-example")
            .arg(out.path())
            .output()
            .expect("run validate.py"),
    );
    let read = |name: &str| -> Value {
        serde_json::from_str(&fs::read_to_string(out.path().join(format!("{name}.json"))).unwrap())
            .unwrap()
    };
    assert_eq!(
        kadvisor_image(&read("kadvisor-daemonSet")),
        configured_image()
    );
    let kubelet = read("kubernetes-serviceMonitorKubelet");
    assert!(
        !kubelet.to_string().contains("/metrics/cadvisor"),
        "kubelet still scrapes cAdvisor: {kubelet}"
    );
    succeeded(
        "jsonnet ServiceMonitors",
        &node(
            "servicemonitor",
            &[
                out.path().join("kadvisor-serviceMonitor.json"),
                out.path().join("kubernetes-serviceMonitorKubelet.json"),
            ],
        ),
    );
    // kube-prometheus' Grafana gets kadvisor's dashboards among its own.
    let definitions = read("grafana-dashboardDefinitions");
    let names: Vec<&str> = definitions["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["metadata"]["name"].as_str().unwrap())
        .collect();
    for want in [
        "grafana-dashboard-k8s-resources-pod",
        "grafana-dashboard-kadvisor-containers",
        "grafana-dashboard-kadvisor-cost",
    ] {
        assert!(names.contains(&want), "{want} missing: {names:?}");
    }
}
