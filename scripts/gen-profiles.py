#!/usr/bin/env python3
"""Generate the family lists of kadvisor's consumer profiles from upstream manifests.

A profile serves exactly the cAdvisor families its consumer reads. What a consumer
reads is taken from its compiled upstream manifests, never typed by hand:

  kube-prometheus        the PrometheusRules, Grafana dashboards and prometheus-adapter
                         config of kube-prometheus, less what its kubelet ServiceMonitor
                         drops by name
  kube-prometheus-stack  the rules and dashboards the Helm chart ships by default, less
                         what its kubelet cAdvisorMetricRelabelings drop (by name, and
                         every row without a pod)

Three steps:

  import   copy the upstream files the lists come from into tests/fixtures/profiles/
           (run on a checkout of each upstream repository; the project never needs them
           afterwards):
             scripts/gen-profiles.py import --kube-prometheus DIR REF --helm-charts DIR REF
  generate derive the lists from the fixtures, write exporter/src/profiles/*.families
  check    derive them again and fail (exit 1) when a committed list differs; run by
           the unit test profile::tests::lists_match_the_upstream_manifests

Needs Python 3 and PyYAML (Debian: python3-yaml, installed by scripts/setup.sh).
"""
import json
import pathlib
import re
import subprocess
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests/fixtures/profiles"
LISTS = ROOT / "exporter/src/profiles"
# Every family cAdvisor serves (its own test data, v0.60), plus the memory spec gauges
# the test data leaves out. A token outside it fails the run: an upstream change to
# look at, not a family to guess.
CADVISOR_TESTDATA = ROOT / "tests/fixtures/kube-prometheus/cadvisor-testdata.prom"
CADVISOR_EXTRA = {
    "container_spec_memory_limit_bytes",
    "container_spec_memory_reservation_limit_bytes",
    "container_spec_memory_swap_limit_bytes",
    "machine_cpu_cores",
    "machine_cpu_physical_cores",
    "machine_cpu_sockets",
    "machine_memory_bytes",
    "machine_swap_bytes",
    "machine_scrape_error",
}
# A cAdvisor family name inside PromQL: a selector (the name then `{` or `[`: the
# mixins always select with the cAdvisor job's labels), not preceded by a name
# character, `:` or `.` (so kube_pod_container_*, windows_container_*, recording rules
# like node_namespace_pod_container:container_memory_rss and group names like
# k8s.rules.container_cpu_limits are not taken for cAdvisor's families; recording
# rules count through the raw families their own expressions read).
TOKEN = re.compile(r"(?<![A-Za-z0-9_:.])((?:container|machine)_[a-z0-9_]+)(?=\s*[{\[])")

KP = "kube-prometheus"
KPS = "kube-prometheus-stack"


def git_show(repo, ref, path):
    return subprocess.run(
        ["git", "-C", str(repo), "show", f"{ref}:{path}"],
        check=True, capture_output=True, text=True,
    ).stdout


def git_ls(repo, ref, path):
    out = subprocess.run(
        ["git", "-C", str(repo), "ls-tree", "--name-only", f"{ref}:{path}"],
        check=True, capture_output=True, text=True,
    ).stdout
    return out.split()


def git_commit(repo, ref):
    return subprocess.run(
        ["git", "-C", str(repo), "rev-parse", f"{ref}^{{commit}}"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def import_kube_prometheus(repo, ref):
    out = FIXTURES / KP
    commit = git_commit(repo, ref)
    lock = json.loads(git_show(repo, ref, "jsonnetfile.lock.json"))
    mixin = next(
        d["version"] for d in lock["dependencies"]
        if d["source"].get("git", {}).get("remote", "").endswith("kubernetes-mixin.git")
    )
    for name in [
        "kubernetesControlPlane-prometheusRule.yaml",
        "kubernetesControlPlane-serviceMonitorKubelet.yaml",
        "prometheusAdapter-configMap.yaml",
    ]:
        write(out / name, git_show(repo, ref, f"manifests/{name}"))
    # The dashboards ConfigMapList is 1 MB: keep the dashboards that read cAdvisor
    # families, each as the JSON the ConfigMap holds, unchanged.
    definitions = yaml.safe_load(git_show(repo, ref, "manifests/grafana-dashboardDefinitions.yaml"))
    for old in (out / "dashboards").glob("*.json"):
        old.unlink()
    for cm in definitions["items"]:
        for key, text in cm["data"].items():
            if TOKEN.search(text):
                write(out / "dashboards" / key, text)
    write(out / "UPSTREAM", f"kube-prometheus {ref} {commit}\nkubernetes-mixin {mixin}\n")


def import_stack(repo, ref):
    out = FIXTURES / KPS
    chart = "charts/kube-prometheus-stack"
    commit = git_commit(repo, ref)
    meta = yaml.safe_load(git_show(repo, ref, f"{chart}/Chart.yaml"))
    for sub in ["templates/prometheus/rules-1.14", "templates/grafana/dashboards-1.14"]:
        kind = "rules" if "rules" in sub else "dashboards"
        for old in (out / kind).glob("*.yaml"):
            old.unlink()
        for name in git_ls(repo, ref, f"{chart}/{sub}"):
            text = git_show(repo, ref, f"{chart}/{sub}/{name}")
            if TOKEN.search(text):
                write(out / kind / name, text)
    values = yaml.safe_load(git_show(repo, ref, f"{chart}/values.yaml"))
    kubelet = values["kubelet"]["serviceMonitor"]
    write(
        out / "kubelet-values.yaml",
        f"# kube-prometheus-stack {meta['version']} values.yaml, kubelet.serviceMonitor (the\n"
        "# defaults of its /metrics/cadvisor endpoint), as parsed from the chart.\n"
        + yaml.safe_dump({"cAdvisor": kubelet["cAdvisor"],
                          "cAdvisorMetricRelabelings": kubelet["cAdvisorMetricRelabelings"]},
                         sort_keys=False),
    )
    write(out / "UPSTREAM",
          f"kube-prometheus-stack {meta['version']} (appVersion {meta['appVersion']}) "
          f"helm-charts {commit}\n")


def cadvisor_families():
    names = set(CADVISOR_EXTRA)
    for line in CADVISOR_TESTDATA.read_text().splitlines():
        if line.startswith("# TYPE "):
            names.add(line.split()[2])
    return names


def walk_strings(node, keys, inside=False):
    """Every string under a key of `keys` (PromQL fields), at any depth."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield from walk_strings(v, keys, inside or k in keys)
    elif isinstance(node, list):
        for v in node:
            yield from walk_strings(v, keys, inside)
    elif isinstance(node, str) and inside:
        yield node


def name_drops(relabelings):
    """Regexes of the drop rules that decide on the metric name alone."""
    return [
        re.compile(f"^(?:{r['regex']})$")
        for r in relabelings
        if r.get("action") == "drop" and r.get("sourceLabels") == ["__name__"]
    ]


def drops_rows_without_pod(relabelings):
    return any(
        r.get("action") == "drop" and r.get("sourceLabels") == ["id", "pod"]
        and r.get("regex") == ".+;"
        for r in relabelings
    )


def kube_prometheus_reads():
    base = FIXTURES / KP
    reads = {}  # family -> set of readers

    def add(text, reader):
        for name in TOKEN.findall(text):
            reads.setdefault(name, set()).add(reader)

    rules = yaml.safe_load((base / "kubernetesControlPlane-prometheusRule.yaml").read_text())
    for group in rules["spec"]["groups"]:
        for rule in group["rules"]:
            add(rule["expr"], "rule " + rule.get("record", rule.get("alert")))
    for path in sorted((base / "dashboards").glob("*.json")):
        dashboard = json.loads(path.read_text())
        for q in walk_strings(dashboard, {"expr", "query", "definition"}):
            add(q, "dashboard " + path.stem)
    adapter = yaml.safe_load((base / "prometheusAdapter-configMap.yaml").read_text())
    config = yaml.safe_load(adapter["data"]["config.yaml"])
    for q in walk_strings(config, {"containerQuery", "nodeQuery", "seriesQuery", "metricsQuery"}):
        add(q, "prometheus-adapter")
    monitor = yaml.safe_load((base / "kubernetesControlPlane-serviceMonitorKubelet.yaml").read_text())
    endpoint = next(e for e in monitor["spec"]["endpoints"] if e.get("path") == "/metrics/cadvisor")
    relabelings = endpoint.get("metricRelabelings", [])
    return reads, relabelings, (base / "UPSTREAM").read_text()


def stack_reads():
    base = FIXTURES / KPS
    reads = {}
    # Helm templates are not YAML until rendered: read the PromQL lines as text, less
    # the annotation lines (descriptions name no series a query reads).
    prose = re.compile(r"^\s*(description|summary|runbook_url|message|title):")
    for kind in ["rules", "dashboards"]:
        for path in sorted((base / kind).glob("*.yaml")):
            for line in path.read_text().splitlines():
                if prose.match(line) or line.lstrip().startswith(("{{- /*", "Generated from")):
                    continue
                for name in TOKEN.findall(line):
                    reads.setdefault(name, set()).add(f"{kind[:-1]} {path.stem}")
    values = yaml.safe_load((base / "kubelet-values.yaml").read_text())
    return reads, values["cAdvisorMetricRelabelings"], (base / "UPSTREAM").read_text()


def derive(reads, relabelings, upstream, profile):
    known = cadvisor_families()
    unknown = sorted(set(reads) - known)
    if unknown:
        sys.exit(f"{profile}: names not served by cAdvisor (check upstream): {unknown}")
    drops = name_drops(relabelings)
    rows = "pod" if drops_rows_without_pod(relabelings) else "kubelet"
    lines = [
        f"# Profile {profile}: the cAdvisor families its consumer reads. Generated by",
        "# scripts/gen-profiles.py from the upstream files in",
        f"# tests/fixtures/profiles/{profile}/; do not edit (run the script).",
    ]
    lines += [f"# upstream: {l}" for l in upstream.strip().splitlines()]
    lines.append(f"rows {rows}")
    for name in sorted(reads):
        dropped = [d.pattern for d in drops if d.match(name)]
        readers = sorted(reads[name])
        if dropped:
            lines.append(f"# {name}: read by {len(readers)}, dropped by the ServiceMonitor")
            continue
        lines.append(f"{name} # read by {len(readers)}: {', '.join(readers[:3])}"
                     + (", ..." if len(readers) > 3 else ""))
    return "\n".join(lines) + "\n"


def generated():
    return {
        KP: derive(*kube_prometheus_reads(), KP),
        KPS: derive(*stack_reads(), KPS),
    }


def main(argv):
    if len(argv) >= 1 and argv[0] == "import":
        args = dict(zip(argv[1::3], zip(argv[2::3], argv[3::3])))
        if "--kube-prometheus" in args:
            import_kube_prometheus(*args["--kube-prometheus"])
        if "--helm-charts" in args:
            import_stack(*args["--helm-charts"])
        return 0
    if argv == ["generate"]:
        for profile, text in generated().items():
            write(LISTS / f"{profile}.families", text)
        return 0
    if argv == ["check"]:
        stale = [
            p for p, text in generated().items()
            if not (LISTS / f"{p}.families").exists()
            or (LISTS / f"{p}.families").read_text() != text
        ]
        if stale:
            print(f"profile lists differ from the upstream manifests: {stale}; "
                  "run scripts/gen-profiles.py generate", file=sys.stderr)
            return 1
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
