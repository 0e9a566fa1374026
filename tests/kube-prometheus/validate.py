"""Offline checks of deploy/kube-prometheus/ for tests/tests/kube_prometheus.rs.

Run with the Python of scripts/setup.sh's venv (kubernetes-validate, gojsonnet,
jsonpatch). Each subcommand prints what it checked and exits non-zero on the
first failure, with the reason.

  manifests             every Kubernetes object under deploy/ against the
                        Kubernetes OpenAPI schema (strict: unknown fields fail);
                        every kustomization's files exist
  jsonnet OUT_DIR       compile the jsonnet addon against a stand-in of
                        kube-prometheus in both modes, check what it patches,
                        validate its objects, write its ServiceMonitors and
                        dashboards to OUT_DIR for the npm schema checks
  patch                 apply the kustomize component's JSON patch to
                        kube-prometheus' kubelet ServiceMonitor
  scrape-config SM      print (JSON) the Prometheus scrape config a
                        ServiceMonitor's first endpoint becomes
  rules                 print (YAML) the test copy of kube-prometheus' rules
                        and alerts that read cAdvisor data
  daemonset             the DaemonSet's pod is what kadvisor needs and no more:
                        host PID and network namespaces, the listed capabilities
                        only, read-only host mounts, kube-rbac-proxy in front of
                        kadvisor's loopback port, Service/NetworkPolicy ports
  kustomize DIR OUT_DIR build the kustomization in DIR (the subset of kustomize
                        deploy/ and examples/ use; see build()), validate every
                        object, write the ServiceMonitors and dashboards to
                        OUT_DIR, print one line per object
  stack-values OUT_DIR  the ServiceMonitor kube-prometheus-stack makes from
                        deploy/kube-prometheus-stack/values.yaml, checked against
                        the chart's cAdvisor endpoint, written to OUT_DIR
  jsonnet-example OUT_DIR  build examples/kube-prometheus/kadvisor.jsonnet with
                        go-jsonnet the way its header says (-J vendor -J DIR),
                        with a kube-prometheus stand-in as vendor/kube-prometheus,
                        and write each output file to OUT_DIR
  container             print (JSON) how the DaemonSet runs the kadvisor
                        container (args, capabilities, host mounts, namespaces,
                        seccomp, read-only root), for the image test to copy
"""
import copy
import json
import pathlib
import shutil
import subprocess
import sys

import yaml

from kustomize import build

REPO = pathlib.Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy" / "kube-prometheus"
STACK = REPO / "deploy" / "kube-prometheus-stack"
FIXTURES = REPO / "tests" / "fixtures" / "kube-prometheus"
STACK_FIXTURES = REPO / "tests" / "fixtures" / "kube-prometheus-stack"
K8S_VERSION = "1.33"
# Kinds kubernetes-validate has no schema for; checked elsewhere.
NOT_BUILT_IN = {"ServiceMonitor", "Kustomization", "Component"}


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def validate_object(obj, where):
    import kubernetes_validate

    if obj.get("kind") in NOT_BUILT_IN:
        return False
    try:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    except Exception as e:  # noqa: BLE001 - any validation failure fails the test
        fail(f"{where}: {obj.get('kind')}/{obj.get('metadata', {}).get('name')}: {e}")
    return True


def yaml_files():
    return sorted(p for d in (DEPLOY, STACK, REPO / "dashboards") for p in d.rglob("*.yaml") if p.name != "values.yaml")


def cmd_manifests():
    checked = 0
    for path in yaml_files():
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
        for doc in docs:
            if isinstance(doc, list):  # a JSON patch
                continue
            if doc.get("kind") in ("Kustomization", "Component"):
                files = [f.split("=")[-1] for g in doc.get("configMapGenerator", []) for f in g.get("files", [])]
                for entry in doc.get("resources", []) + doc.get("components", []) + files + [p["path"] for p in doc.get("patches", [])]:
                    if not (path.parent / entry).exists():
                        fail(f"{path}: {entry} does not exist")
                continue
            if validate_object(doc, path.relative_to(REPO)):
                checked += 1
                print(f"ok {path.relative_to(REPO)}: {doc['kind']}/{doc['metadata']['name']}")
    if checked < 7:
        fail(f"only {checked} Kubernetes objects found under {DEPLOY}")
    print(f"{checked} objects valid against Kubernetes {K8S_VERSION}")


STAND_IN = """
// A minimal stand-in of the kube-prometheus object the addon patches: the
// fields it reads and writes, with kube-prometheus' names and defaults.
local kubeletServiceMonitor = std.parseYaml(importstr '%(fixture)s');
local kp = {
  values:: {
    common: { namespace: 'default' },
    grafana: { dashboards: { 'k8s-resources-pod.json': { title: 'mixin dashboard' } } },
    kubernetesControlPlane: {
      mixin: { _config: { cadvisorSelector: 'job="kubelet", metrics_path="/metrics/cadvisor"', kubeletSelector: 'job="kubelet", metrics_path="/metrics"' } },
    },
  },
  kubernetesControlPlane: { serviceMonitorKubelet: kubeletServiceMonitor },
  grafana: { dashboardDefinitions: [{ name: n, dashboard: $.values.grafana.dashboards[n] } for n in std.objectFields($.values.grafana.dashboards)] },
} + (import '%(addon)s') + {
  values+:: { common+: { namespace: 'monitoring-test' }, kadvisor+: %(kadvisor_values)s },
};
{
  kadvisor: kp.kadvisor,
  kubelet: kp.kubernetesControlPlane.serviceMonitorKubelet,
  mixinConfig: kp.values.kubernetesControlPlane.mixin._config,
  dashboards: kp.grafana.dashboardDefinitions,
}
"""


def compile_addon(mode):
    import _gojsonnet

    values = "{}" if mode is None else json.dumps({"mode": mode})
    src = STAND_IN % {
        "fixture": FIXTURES / "kubelet-servicemonitor.yaml",
        "addon": DEPLOY / "jsonnet" / "kadvisor.libsonnet",
        "kadvisor_values": values,
    }
    try:
        return json.loads(_gojsonnet.evaluate_snippet("stand-in.jsonnet", src))
    except RuntimeError as e:
        fail(f"jsonnet addon does not compile (mode {mode}): {e}")


STAND_IN_MAIN = """
// A stand-in of kube-prometheus' main.libsonnet: the fields the addon reads and
// writes, with kube-prometheus' names and defaults.
{
  values:: {
    common: { namespace: 'default' },
    grafana: { dashboards: { 'k8s-resources-pod.json': { title: 'mixin dashboard' } } },
    kubernetesControlPlane: {
      mixin: { _config: { cadvisorSelector: 'job="kubelet", metrics_path="/metrics/cadvisor"' } },
    },
  },
  kubernetesControlPlane: { serviceMonitorKubelet: std.parseYaml(importstr '%(fixture)s') },
  grafana: {
    dashboardDefinitions: {
      apiVersion: 'v1',
      kind: 'ConfigMapList',
      items: [
        { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'grafana-dashboard-' + std.strReplace(n, '.json', ''), namespace: $.values.common.namespace }, data: { [n]: std.manifestJsonEx($.values.grafana.dashboards[n], '    ') } }
        for n in std.objectFields($.values.grafana.dashboards)
      ],
    },
  },
}
"""


def cmd_jsonnet_example(out_dir):
    import tempfile

    import _gojsonnet

    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        vendor = pathlib.Path(tmp) / "vendor"
        (vendor / "kube-prometheus").mkdir(parents=True)
        (vendor / "kube-prometheus" / "main.libsonnet").write_text(
            STAND_IN_MAIN % {"fixture": FIXTURES / "kubelet-servicemonitor.yaml"})
        checkouts = pathlib.Path(tmp) / "checkouts"
        checkouts.mkdir()
        (checkouts / "kadvisor").symlink_to(REPO)
        example = REPO / "examples" / "kube-prometheus" / "kadvisor.jsonnet"
        try:
            files = json.loads(_gojsonnet.evaluate_file(str(example), jpathdir=[str(vendor), str(checkouts)]))
        except RuntimeError as e:
            fail(f"{example} does not build: {e}")
    for name, obj in files.items():
        if obj.get("kind") == "ConfigMapList":
            for item in obj["items"]:
                validate_object(item, f"{example.name} {name}")
        else:
            validate_object(obj, f"{example.name} {name}")
        (out / f"{name}.json").write_text(json.dumps(obj))
        print(f"ok {name}: {obj['kind']}")


def cmd_jsonnet(out_dir):
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # The base as kustomize builds it: the image from its `images:` applied.
    base_objects = {(doc["kind"], doc["metadata"]["name"]): doc for doc in build(DEPLOY / "base")}
    kubelet_in = yaml.safe_load((FIXTURES / "kubelet-servicemonitor.yaml").read_text())
    for mode, want_job, sm_file in [
        (None, "kubelet", "dropin"),
        ("dropin", "kubelet", "dropin"),
        ("ownJob", "kadvisor", "own-job"),
    ]:
        name = mode or "default"
        got = compile_addon(mode)
        # The kubelet ServiceMonitor lost exactly its cadvisor endpoint.
        paths_in = [e.get("path", "/metrics") for e in kubelet_in["spec"]["endpoints"]]
        paths_out = [e.get("path", "/metrics") for e in got["kubelet"]["spec"]["endpoints"]]
        if paths_out != [p for p in paths_in if p != "/metrics/cadvisor"]:
            fail(f"{name}: kubelet endpoints after the addon: {paths_out}")
        if got["kubelet"]["spec"]["endpoints"][0] != kubelet_in["spec"]["endpoints"][0]:
            fail(f"{name}: the addon changed the kubelet's /metrics endpoint")
        # The mixin selects kadvisor's job.
        selector = got["mixinConfig"]["cadvisorSelector"]
        if selector != f'job="{want_job}", metrics_path="/metrics/cadvisor"':
            fail(f"{name}: cadvisorSelector is {selector}")
        # The objects are the plain YAML's, in the configured namespace.
        objects = got["kadvisor"]
        for key, obj in objects.items():
            validate_object(obj, f"jsonnet {name} {key}")
            if obj["kind"] not in ("ClusterRole", "ClusterRoleBinding") and obj["metadata"]["namespace"] != "monitoring-test":
                fail(f"{name}: {key} not in values.common.namespace")
            ref = base_objects.get((obj["kind"], obj["metadata"]["name"]))
            if ref is not None and obj["kind"] not in ("ClusterRoleBinding",):
                expect = copy.deepcopy(ref)
                if "namespace" in expect["metadata"]:
                    expect["metadata"]["namespace"] = "monitoring-test"
                if expect != obj:
                    fail(f"{name}: {key} differs from deploy/kube-prometheus/base")
        if objects["clusterRoleBinding"]["subjects"][0]["namespace"] != "monitoring-test":
            fail(f"{name}: ClusterRoleBinding subject not in values.common.namespace")
        sm_yaml = yaml.safe_load((DEPLOY / sm_file / "serviceMonitor.yaml").read_text())
        sm_yaml["metadata"]["namespace"] = "monitoring-test"
        if objects["serviceMonitor"] != sm_yaml:
            fail(f"{name}: ServiceMonitor is not {sm_file}/serviceMonitor.yaml")
        # kadvisor's dashboards join the mixin's, with the mode's selector.
        dashboards = {d["name"]: d["dashboard"] for d in got["dashboards"]}
        for want in ["k8s-resources-pod.json", "kadvisor-containers.json", "kadvisor-cost.json"]:
            if want not in dashboards:
                fail(f"{name}: dashboard {want} missing: {sorted(dashboards)}")
        for dname in ["kadvisor-containers.json", "kadvisor-cost.json"]:
            text = json.dumps(dashboards[dname])
            if selector.replace('"', '\\"') not in text:
                fail(f"{name}: {dname} does not use {selector}")
            if want_job != "kubelet" and 'job=\\"kubelet\\"' in text:
                fail(f"{name}: {dname} still selects job=kubelet")
            ref = json.loads((REPO / "dashboards" / dname).read_text())
            if want_job == "kubelet" and dashboards[dname] != ref:
                fail(f"{name}: {dname} differs from dashboards/{dname}")
            (out / f"{name}-{dname}").write_text(json.dumps(dashboards[dname]))
        (out / f"{name}-serviceMonitor.json").write_text(json.dumps(objects["serviceMonitor"]))
        print(f"ok jsonnet mode {name}: {len(objects)} objects, kubelet endpoints {paths_out}, {selector}")


def cmd_patch():
    import jsonpatch

    patch = yaml.safe_load((DEPLOY / "remove-kubelet-cadvisor" / "kubelet-servicemonitor-patch.yaml").read_text())
    kubelet = yaml.safe_load((FIXTURES / "kubelet-servicemonitor.yaml").read_text())
    patched = jsonpatch.apply_patch(kubelet, patch)
    paths = [e.get("path", "/metrics") for e in patched["spec"]["endpoints"]]
    if paths != ["/metrics", "/metrics/probes", "/metrics/slis"]:
        fail(f"patched kubelet ServiceMonitor has endpoints {paths}")
    reordered = copy.deepcopy(kubelet)
    reordered["spec"]["endpoints"].reverse()
    try:
        jsonpatch.apply_patch(reordered, patch)
    except jsonpatch.JsonPatchTestFailed:
        pass
    else:
        fail("the patch removed an endpoint of a reordered kubelet ServiceMonitor")
    print(f"ok patch: kubelet endpoints {paths}; a reordered ServiceMonitor is refused")


def relabel(r):
    """One ServiceMonitor RelabelConfig as a Prometheus relabel_config."""
    names = {"sourceLabels": "source_labels", "targetLabel": "target_label", "regex": "regex",
             "replacement": "replacement", "action": "action", "separator": "separator", "modulus": "modulus"}
    out = {}
    for k, v in r.items():
        if k not in names:
            fail(f"relabeling field {k} not translated")
        out[names[k]] = v.lower() if k == "action" else v
    return out


def cmd_scrape_config(sm_path):
    """The scrape config Prometheus gets from the ServiceMonitor, for a static
    target: the operator's own discovery relabelings are replaced by a static
    `__meta_kubernetes_pod_node_name`; the endpoint's relabelings, drops and
    honor_* flags are taken verbatim."""
    sm = yaml.safe_load(pathlib.Path(sm_path).read_text())
    ep = sm["spec"]["endpoints"][0]
    job = {
        "job_name": f"serviceMonitor/{sm['metadata']['namespace']}/{sm['metadata']['name']}/0",
        "honor_labels": ep.get("honorLabels", False),
        "honor_timestamps": ep.get("honorTimestamps", True),
        "metrics_path": ep.get("path", "/metrics"),
        "scrape_interval": ep.get("interval", "30s"),
        # The operator sets job from the Service (jobLabel) before the
        # endpoint's relabelings; a static target has no Service.
        "relabel_configs": [{"target_label": "job", "replacement": sm["metadata"]["name"]}]
        + [relabel(r) for r in ep.get("relabelings", [])],
        "metric_relabel_configs": [relabel(r) for r in ep.get("metricRelabelings", [])],
    }
    print(json.dumps(job))


# Rules and alerts of kube-prometheus that read cAdvisor series
# (shared contract: cadvisor-compat.md section 3).
CADVISOR_RECORDS = [
    "node_namespace_pod_container:container_cpu_usage_seconds_total:sum_rate5m",
    "node_namespace_pod_container:container_cpu_usage_seconds_total:sum_irate",
    "node_namespace_pod_container:container_memory_working_set_bytes",
    "node_namespace_pod_container:container_memory_rss",
    "node_namespace_pod_container:container_memory_cache",
    "node_namespace_pod_container:container_memory_swap",
]
CADVISOR_ALERTS = ["CPUThrottlingHigh"]


def cmd_rules():
    """The test copy: exactly these rules' text from kube-prometheus' compiled
    kubernetes-mixin, with two changes so a test need not run for 20 minutes:
    every `[5m]` range becomes `[60s]` (rate() divides by the whole range, so a
    5m rate of a series younger than 5m reads low), and CPUThrottlingHigh's
    `for: 15m` becomes `for: 0s`. Selectors, joins and thresholds are untouched."""
    source = yaml.safe_load((FIXTURES / "kubernetes-rules.yml").read_text())
    groups = []
    found = set()
    for group in source["groups"]:
        rules = []
        for rule in group["rules"]:
            name = rule.get("record") or rule.get("alert")
            if name in CADVISOR_RECORDS or name in CADVISOR_ALERTS:
                rule = copy.deepcopy(rule)
                rule["expr"] = rule["expr"].replace("[5m]", "[60s]")
                if rule.get("alert") == "CPUThrottlingHigh":
                    rule["for"] = "0s"
                rules.append(rule)
                found.add(name)
        if rules:
            groups.append({"name": group["name"], "rules": rules})
    missing = set(CADVISOR_RECORDS + CADVISOR_ALERTS) - found
    if missing:
        fail(f"rules not in the fixture: {sorted(missing)}")
    print("# TEST COPY generated by tests/kube-prometheus/validate.py rules from")
    print("# tests/fixtures/kube-prometheus/kubernetes-rules.yml (kube-prometheus v0.18):")
    print("# the rules reading cAdvisor data, verbatim except 5m ranges -> 60s and")
    print("# CPUThrottlingHigh for: 15m -> 0s.")
    print(yaml.safe_dump({"groups": groups}, sort_keys=False, width=1000))


# Capabilities the kadvisor container keeps (docs/kube-prometheus.md "How it runs" says why).
CAPABILITIES = ["BPF", "PERFMON"]


def cmd_daemonset():
    base = DEPLOY / "base"
    ds = yaml.safe_load((base / "daemonset.yaml").read_text())
    svc = yaml.safe_load((base / "service.yaml").read_text())
    netpol = yaml.safe_load((base / "networkPolicy.yaml").read_text())
    pod = ds["spec"]["template"]["spec"]
    checks = []

    def check(what, ok):
        checks.append(what)
        if not ok:
            fail(f"daemonset: {what}")

    check("hostPID (/proc/<pid> of the node's containers)", pod.get("hostPID") is True)
    check("hostNetwork (the root row's interfaces are kadvisor's namespace's)", pod.get("hostNetwork") is True)
    containers = {c["name"]: c for c in pod["containers"]}
    kadvisor, proxy = containers["kadvisor"], containers["kube-rbac-proxy"]
    sc = kadvisor["securityContext"]
    check("kadvisor not privileged", not sc.get("privileged", False))
    check("kadvisor drops ALL capabilities", sc["capabilities"]["drop"] == ["ALL"])
    check(f"kadvisor adds exactly {CAPABILITIES}", sorted(sc["capabilities"]["add"]) == sorted(CAPABILITIES))
    check("no SYS_ADMIN", "SYS_ADMIN" not in sc["capabilities"]["add"])
    check("kadvisor's root filesystem read-only", sc.get("readOnlyRootFilesystem") is True)
    volumes = {v["name"]: v for v in pod["volumes"]}
    for mount in kadvisor["volumeMounts"]:
        check(f"{mount['mountPath']} mounted read-only", mount.get("readOnly") is True)
        vol = volumes[mount["name"]]
        if "hostPath" in vol:
            check(f"{mount['mountPath']} at its host path", vol["hostPath"]["path"] == mount["mountPath"])
    paths = sorted(m["mountPath"] for m in kadvisor["volumeMounts"])
    check(f"host mounts {paths}", paths == ["/run/containerd/containerd.sock", "/sys/fs/cgroup", "/sys/kernel/btf"])
    # --flag=value, or a bare --flag (value "").
    args = dict((a.lstrip("-").split("=", 1) + [""])[:2] for a in kadvisor["args"])
    check("kadvisor on loopback only", args["listen_ip"] == "127.0.0.1")
    check("kadvisor exports the kubelet's rows", "kubelet_rows" in args)
    port = int(args["port"])
    probe = kadvisor["readinessProbe"]["httpGet"]
    check("readiness probe on kadvisor's /readyz", (probe["host"], probe["port"], probe["path"]) == ("127.0.0.1", port, "/readyz"))
    live = kadvisor["livenessProbe"]
    check("liveness probe on kadvisor's /healthz", (live["httpGet"]["host"], live["httpGet"]["port"], live["httpGet"]["path"]) == ("127.0.0.1", port, "/healthz"))
    # /healthz may run a collection, bounded by 20 s (http::admission::Limits).
    check("probe timeouts outlast a health collection", live["timeoutSeconds"] > 20 and kadvisor["readinessProbe"]["timeoutSeconds"] > 20)
    check("no service account token automounted", pod.get("automountServiceAccountToken") is False)
    token_path = "/var/run/secrets/kubernetes.io/serviceaccount"
    check("no token in the kadvisor container", all(m["mountPath"] != token_path for m in kadvisor["volumeMounts"]))
    check("kube-rbac-proxy gets the token", any(m["mountPath"] == token_path for m in proxy["volumeMounts"]))
    pargs = dict(a.lstrip("-").split("=", 1) for a in proxy["args"])
    check("kube-rbac-proxy upstream is kadvisor", pargs["upstream"] == f"http://127.0.0.1:{port}/")
    proxy_port = int(pargs["secure-listen-address"].rsplit(":", 1)[1])
    ports = {p["name"]: p for p in proxy["ports"]}
    check("proxy port named https, hostPort = containerPort", ports["https"]["containerPort"] == proxy_port == ports["https"]["hostPort"])
    check("Service targets https", svc["spec"]["ports"][0]["targetPort"] == "https" and svc["spec"]["ports"][0]["port"] == proxy_port)
    check("NetworkPolicy opens the proxy port only", [p["port"] for r in netpol["spec"]["ingress"] for p in r["ports"]] == [proxy_port])
    for c in (kadvisor, proxy):
        res = c["resources"]
        check(f"{c['name']} has requests and limits", set(res) == {"requests", "limits"})
    for what in checks:
        print(f"ok {what}")


def real_kustomize(directory):
    """The objects `kubectl kustomize` (kustomize itself) builds from DIRECTORY, or None
    where kubectl is not installed (it has no Debian, PyPI or npm package; the machines
    this project is developed on ship it, a fresh Debian one may not)."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        print(f"note: kubectl not found, {directory} built by the kustomize subset only")
        return None
    run = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True, text=True)
    if run.returncode != 0:
        fail(f"kubectl kustomize {directory}: {run.stderr.strip()}")
    return [obj for obj in yaml.safe_load_all(run.stdout) if obj]


def cmd_kustomize(directory, out_dir):
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    objects = build(directory)
    real = real_kustomize(directory)
    if real is not None:
        # The real kustomize must build exactly what the subset builds, object for object.
        def by_key(objs):
            return {(o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]):
                    json.dumps(o, sort_keys=True) for o in objs}
        ours, theirs = by_key(objects), by_key(real)
        if ours != theirs:
            differ = sorted(k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k))
            fail(f"{directory}: kubectl kustomize builds other objects than the subset: {differ}")
        print(f"ok kubectl kustomize {directory}: {len(real)} objects, the same as the subset's")
    seen = set()
    for obj in objects:
        key = (obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
        if key in seen:
            fail(f"{directory}: {key} twice (kustomize refuses it)")
        seen.add(key)
        validate_object(obj, f"kustomize {directory}")
        name = f"{obj['kind']}-{obj['metadata']['name']}"
        if obj["kind"] == "ServiceMonitor":
            (out / f"{name}.json").write_text(json.dumps(obj))
        if obj["kind"] == "ConfigMap" and obj["metadata"].get("labels", {}).get("grafana_dashboard") == "1":
            for key_name, text in obj["data"].items():
                (out / key_name).write_text(text)
        print(f"ok {obj['kind']}/{obj['metadata'].get('namespace', '')}/{obj['metadata']['name']}")
    (out / "all.json").write_text(json.dumps(objects))


def render_additional_service_monitor(entry, release, namespace):
    """One prometheus.additionalServiceMonitors entry as the chart renders it
    (fixtures/kube-prometheus-stack/servicemonitors.yaml.tpl)."""
    handled = {"name", "additionalLabels", "jobLabel", "namespaceSelector", "selector", "targetLabels",
               "podTargetLabels", "endpoints", "attachMetadata"}
    if set(entry) - handled:
        fail(f"additionalServiceMonitors keys {sorted(set(entry) - handled)} not handled")
    labels = {"app": "kube-prometheus-stack-prometheus", "app.kubernetes.io/managed-by": "Helm",
              "app.kubernetes.io/instance": release, "release": release, "heritage": "Helm"}
    labels.update(entry.get("additionalLabels", {}))
    spec = {"endpoints": entry["endpoints"], "selector": entry["selector"]}
    for key in ("jobLabel", "namespaceSelector", "targetLabels", "podTargetLabels", "attachMetadata"):
        if key in entry:
            spec[key] = entry[key]
    return {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
            "metadata": {"name": entry["name"], "namespace": namespace, "labels": labels}, "spec": spec}


def cmd_stack_values(out_dir):
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    values = yaml.safe_load((STACK / "values.yaml").read_text())
    chart = yaml.safe_load((STACK_FIXTURES / "values-excerpt.yaml").read_text())
    template = (STACK_FIXTURES / "servicemonitors.yaml.tpl").read_text()
    for field in ("name", "namespaceSelector", "selector", "endpoints"):
        if f".{field}" not in template:
            fail(f"the chart's template no longer reads .{field}")
    if values["kubelet"]["serviceMonitor"]["cAdvisor"] is not False:
        fail("kubelet.serviceMonitor.cAdvisor is not false: the kubelet's cAdvisor would be scraped too")
    (entry,) = values["prometheus"]["additionalServiceMonitors"]
    sm = render_additional_service_monitor(entry, "kube-prometheus-stack", "monitoring")
    (ep,) = sm["spec"]["endpoints"]
    kubelet = chart["kubelet"]["serviceMonitor"]
    job = chart["kubelet"]["jobNameOverride"] or "kubelet"

    # The chart's cAdvisor endpoint, kept: path, interval, honorLabels, drops.
    if ep["path"] != "/metrics/cadvisor":
        fail(f"path {ep['path']}")
    if ep["interval"] != kubelet["cAdvisorInterval"]:
        fail(f"interval {ep['interval']}, the chart's cAdvisor interval is {kubelet['cAdvisorInterval']}")
    if ep["honorLabels"] is not kubelet["honorLabels"]:
        fail("honorLabels differs from the chart's")
    if ep["metricRelabelings"] != kubelet["cAdvisorMetricRelabelings"]:
        fail("metricRelabelings are not the chart's cAdvisorMetricRelabelings")
    for r in kubelet["cAdvisorRelabelings"]:
        if r not in ep["relabelings"]:
            fail(f"the chart's cAdvisor relabeling {r} missing")
    # The target labels the chart's rules and dashboards select.
    targets = {r["targetLabel"]: r for r in ep["relabelings"]}
    if targets["job"].get("replacement") != job:
        fail(f"job is not {job}")
    if targets["node"]["sourceLabels"] != ["__meta_kubernetes_pod_node_name"]:
        fail("node does not come from the pod's node")
    # It selects kadvisor's Service and its port.
    svc = yaml.safe_load((DEPLOY / "base" / "service.yaml").read_text())
    if sm["spec"]["selector"]["matchLabels"] != svc["metadata"]["labels"]:
        fail("selector does not match kadvisor's Service")
    if svc["metadata"]["namespace"] not in sm["spec"]["namespaceSelector"]["matchNames"]:
        fail("namespaceSelector misses kadvisor's namespace")
    if ep["port"] not in [p["name"] for p in svc["spec"]["ports"]]:
        fail(f"port {ep['port']} is not a port of kadvisor's Service")
    (out / "ServiceMonitor-kadvisor.json").write_text(json.dumps(sm))
    print(f"ok kube-prometheus-stack ServiceMonitor: job={job}, interval {ep['interval']}, "
          f"{len(ep['metricRelabelings'])} chart drops, release label {sm['metadata']['labels']['release']}")


def cmd_container():
    ds = yaml.safe_load((DEPLOY / "base" / "daemonset.yaml").read_text())
    pod = ds["spec"]["template"]["spec"]
    kadvisor = next(c for c in pod["containers"] if c["name"] == "kadvisor")
    sc = kadvisor["securityContext"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = []
    for m in kadvisor.get("volumeMounts", []):
        host = volumes[m["name"]].get("hostPath")
        if host is None:
            fail(f"kadvisor mounts {m['name']}, which is not a hostPath")
        mounts.append({"host": host["path"], "path": m["mountPath"], "read_only": m.get("readOnly", False)})
    print(json.dumps({
        "args": kadvisor.get("args", []),
        "drop": sc["capabilities"]["drop"],
        "add": sc["capabilities"]["add"],
        "privileged": sc.get("privileged", False),
        "run_as_user": sc.get("runAsUser"),
        "read_only_root": sc.get("readOnlyRootFilesystem", False),
        "no_new_privileges": sc.get("allowPrivilegeEscalation") is False,
        "seccomp": sc.get("seccompProfile", {}).get("type", "RuntimeDefault"),
        "host_pid": pod.get("hostPID", False),
        "host_network": pod.get("hostNetwork", False),
        "mounts": mounts,
    }))


def main():
    cmd, *args = sys.argv[1:] or ["help"]
    if cmd == "manifests":
        cmd_manifests()
    elif cmd == "jsonnet":
        cmd_jsonnet(*args)
    elif cmd == "patch":
        cmd_patch()
    elif cmd == "scrape-config":
        cmd_scrape_config(*args)
    elif cmd == "rules":
        cmd_rules()
    elif cmd == "daemonset":
        cmd_daemonset()
    elif cmd == "container":
        cmd_container()
    elif cmd == "jsonnet-example":
        cmd_jsonnet_example(*args)
    elif cmd == "kustomize":
        cmd_kustomize(*args)
    elif cmd == "stack-values":
        cmd_stack_values(*args)
    else:
        print(__doc__)
        sys.exit(2)


if __name__ == "__main__":
    main()
