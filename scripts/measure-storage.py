#!/usr/bin/env python3
"""What Prometheus stores for each kadvisor configuration (issue 16's storage figures).

Makes PODS pod-shaped cgroups (a pod cgroup with a sandbox and an app container, a
sleeping process in each, in the cgroup v2 tree and every v1 hierarchy, as runc
lays them out) under /kadvisor-storage-<pid>, then runs one kadvisor per
configuration, all at once, each scraped by its own real Prometheus every 15 s for
DURATION seconds. Prints, per configuration: container_* series per container row,
the scrape body (plain / gzip), and what Prometheus holds at the end:
prometheus_tsdb_head_series and the bytes of its data directory (WAL, head chunks,
blocks).

Every configuration exports the root row and the test subtree only
(--kubelet_rows --kubelet_extra_cgroups, --include_cgroups), so the figures do not
depend on this shared host's other cgroups.

    sudo scripts/measure-storage.py [--pods 500] [--duration 600]

Needs root, Debian's prometheus, a built kadvisor (KADVISOR_BIN, default
target/release/kadvisor, else target/debug/kadvisor). Talks to loopback only.
"""
import argparse
import gzip
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
ALL_GROUPS = ("cpu,sched,cpu_burst,memory,memory_reclaim,oom_event,pressure,process,disk,diskIO,network,"
              "socket,socket_packets,crashes,crash_signals")

# (name, extra flags)
CONFIGURATIONS = [
    ("every group (the old defaults)", ["--enable_metrics", ALL_GROUPS,
                                        "--pod_cidr", "10.244.0.0/16"]),
    ("defaults", []),
    ("--profile cadvisor", ["--profile", "cadvisor"]),
    ("--profile kube-prometheus", ["--profile", "kube-prometheus"]),
]


def hierarchies():
    out = []
    for line in open("/proc/self/mountinfo"):
        left, _, right = line.partition(" - ")
        fields = right.split(" ")
        fs_type, options = fields[0], fields[2] if len(fields) > 2 else ""
        if fs_type == "cgroup2" or (fs_type == "cgroup" and "name=" not in options):
            out.append(pathlib.Path(left.split(" ")[4]))
    return out


class Population:
    """PODS pods of two containers each, a `sleep` in every container."""

    def __init__(self, name, pods):
        self.name = name
        self.roots = hierarchies()
        self.children = []
        self.dirs = []
        for root in self.roots:
            d = root / name
            d.mkdir()
            self.dirs.append(d)
            for f in ["cpuset.cpus", "cpuset.mems"]:
                if (root / f).exists():
                    (d / f).write_text((root / f).read_text())
        for p in range(pods):
            pod = f"pod{p:08x}-0000-4000-8000-{p:012x}"
            for c in range(2):
                container = f"{p:032x}{c:032x}"
                rel = f"{name}/{pod}/{container}"
                child = subprocess.Popen(["sleep", "3600"], stdin=subprocess.DEVNULL)
                self.children.append(child)
                for root in self.roots:
                    for sub in [f"{name}/{pod}", rel]:
                        d = root / sub
                        if not d.exists():
                            d.mkdir()
                            for f in ["cpuset.cpus", "cpuset.mems"]:
                                if (d.parent / f).exists():
                                    (d / f).write_text((d.parent / f).read_text())
                            self.dirs.append(d)
                    (root / rel / "cgroup.procs").write_text(str(child.pid))

    def close(self):
        for child in self.children:
            child.kill()
            child.wait()
        for d in sorted(self.dirs, key=lambda p: len(p.parts), reverse=True):
            for _ in range(50):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.1)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port, path, gzipped=False):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if gzipped:
        req.add_header("Accept-Encoding", "gzip")
    with urllib.request.urlopen(req, timeout=60) as r:
        return r.read()


def wait_ready(port, path, what, proc):
    for _ in range(600):
        if proc.poll() is not None:
            sys.exit(f"{what} exited: {proc.returncode}")
        try:
            get(port, path)
            return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"{what} not ready")


def series_per_container_row(text, name):
    containers = {}
    for line in text.splitlines():
        if not line.startswith("container_") or f'id="/{name}/' not in line:
            continue
        row = line.split('id="', 1)[1].split('"', 1)[0]
        if row.count("/") == 3:  # /<name>/<pod>/<container>
            containers[row] = containers.get(row, 0) + 1
    return sum(containers.values()) / max(len(containers), 1), len(containers)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pods", type=int, default=500)
    ap.add_argument("--duration", type=int, default=600)
    args = ap.parse_args()
    binary = os.environ.get("KADVISOR_BIN") or next(
        str(p) for p in [ROOT / "target/release/kadvisor", ROOT / "target/debug/kadvisor"]
        if p.exists())
    name = f"kadvisor-storage-{os.getpid()}"
    work = pathlib.Path(tempfile.mkdtemp(prefix="kadvisor-storage-"))
    population = Population(name, args.pods)
    procs = []
    runs = []
    try:
        time.sleep(1)
        for label, flags in CONFIGURATIONS:
            port = free_port()
            k = subprocess.Popen(
                [binary, "--listen_ip", "127.0.0.1", "--port", str(port), "--log_level", "warn",
                 "--kubelet_rows", f"--kubelet_extra_cgroups=/{name}",
                 f"--include_cgroups=/,/{name}/**", *flags],
                stdin=subprocess.DEVNULL)
            procs.append(k)
            wait_ready(port, "/readyz", f"kadvisor ({label})", k)
            data = work / f"prom-{len(runs)}"
            data.mkdir()
            (data / "prometheus.yml").write_text(json.dumps({
                "global": {"scrape_interval": "15s"},
                "scrape_configs": [{
                    "job_name": "kubelet", "honor_labels": True, "honor_timestamps": False,
                    "metrics_path": "/metrics/cadvisor",
                    "static_configs": [{"targets": [f"127.0.0.1:{port}"]}],
                }],
            }))
            prom_port = free_port()
            p = subprocess.Popen(
                ["prometheus", f"--config.file={data / 'prometheus.yml'}",
                 f"--storage.tsdb.path={data / 'tsdb'}",
                 f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=warn"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
            procs.append(p)
            wait_ready(prom_port, "/-/ready", "prometheus", p)
            runs.append((label, port, prom_port, data))
        print(f"{len(runs)} configurations scraped for {args.duration} s "
              f"({args.pods} pods, {2 * args.pods} containers)", file=sys.stderr)
        time.sleep(args.duration)
        rows = []
        for label, port, prom_port, data in runs:
            plain = get(port, "/metrics/cadvisor")
            zipped = get(port, "/metrics/cadvisor", gzipped=True)
            per_row, containers = series_per_container_row(plain.decode(), name)
            head = next(
                float(l.split()[1]) for l in get(prom_port, "/metrics").decode().splitlines()
                if l.startswith("prometheus_tsdb_head_series "))
            on_disk = sum(f.stat().st_size for f in (data / "tsdb").rglob("*") if f.is_file())
            rows.append((label, per_row, containers, len(plain), len(zipped), head, on_disk))
        print("| configuration | container_* series per container row | body plain / gzip | "
              "prometheus_tsdb_head_series | bytes on disk (WAL + head chunks + blocks) |")
        print("|---|---|---|---|---|")
        for label, per_row, containers, plain, zipped, head, on_disk in rows:
            print(f"| {label} | {per_row:.1f} ({containers} rows) | {plain / 1024:.0f} / "
                  f"{zipped / 1024:.1f} KiB | {head:.0f} | {on_disk / 1024 / 1024:.2f} MiB |")
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        population.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
