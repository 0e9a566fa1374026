#!/usr/bin/env bash
# The web UI's JSON (/ui/snapshot) next to /metrics on the same kadvisor: wall time,
# kadvisor CPU (utime+stime) and body size per request, at N cgroups of its own (default 100,
# selected with --include_cgroups) and on the whole host. Sequential requests on loopback; the numbers are ratios within one run.
# usage: scripts/measure-web-ui.sh <kadvisor binary>   (root; creates and removes N cgroups)
set -euo pipefail
bin=${1:?usage: $0 <kadvisor binary>}
root=/sys/fs/cgroup
mountpoint -q /sys/fs/cgroup/unified && root=/sys/fs/cgroup/unified # hybrid host
tag=kadvisor-measure-web-ui-$$
n=${N:-100}
body=$(mktemp)
for i in $(seq 1 "$n"); do mkdir "$root/$tag-$i"; done
cleanup() { rm -f "$body"; for i in $(seq 1 "$n"); do rmdir "$root/$tag-$i" 2>/dev/null || true; done; }
trap cleanup EXIT
run() {
  local label=$1; shift; local port=18931
  "$bin" --listen_ip 127.0.0.1 --port $port "$@" >/dev/null 2>&1 & local pid=$!
  until curl -sf localhost:$port/readyz >/dev/null; do sleep 0.2; done
  curl -s localhost:$port/metrics >/dev/null; curl -s localhost:$port/ui/snapshot >/dev/null
  for path in /metrics /ui/snapshot; do
    local t0 c0 c1 t1
    c0=$(awk '{print $14+$15}' /proc/$pid/stat); t0=$(date +%s%N)
    for i in $(seq 1 20); do curl -s -o "$body" localhost:$port$path; done
    t1=$(date +%s%N); c1=$(awk '{print $14+$15}' /proc/$pid/stat)
    local gz; gz=$(curl -s -H 'Accept-Encoding: gzip' localhost:$port$path | wc -c)
    local rows; rows=$(curl -s localhost:$port/ui/snapshot | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["rows"]))')
    printf '%-10s %-13s rows %5s  wall %6.1f ms/req  kadvisor CPU %5.1f ms/req  body %8s B  gzip %7s B\n' \
      "$label" "$path" "$rows" "$(echo "($t1-$t0)/20/1000000" | bc -l)" "$(echo "($c1-$c0)*10/20" | bc -l)" "$(wc -c <"$body")" "$gz"
  done
  kill $pid; wait $pid 2>/dev/null || true
}
run "$n cgroups" --include_cgroups "/,/$tag-*"
run "whole host"
