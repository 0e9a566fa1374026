#!/usr/bin/env bash
# Scrape latency and size with N extra cgroups (default 500), each made in the cgroup
# v2 tree and, on a hybrid host, in the v1 memory hierarchy too (as runtimes do), so
# every row reads its memory files.
#
#   cargo build --release -p kadvisor && sudo scripts/measure-scrape.sh [N] [SCRAPES]
#
# With KADVISOR_MEASURE_V2_ONLY=1 the cgroups are made in the v2 tree only (on a hybrid
# host their rows then have no memory files: the difference is the memory families'
# cost).
#
# Prints the median and p90 of SCRAPES (default 30) sequential scrapes of /metrics,
# the body size and the number of container_memory_usage_bytes rows.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-500}
scrapes=${2:-30}
bin=target/release/kadvisor
[[ -x $bin ]] || { echo "build first: cargo build --release -p kadvisor" >&2; exit 1; }

# mountinfo: mount point is field 5; fs type and super options follow the "-".
mounts() { awk '{for (i = 7; i <= NF; i++) if ($i == "-") {print $5, $(i + 1), $(i + 3); break}}' /proc/self/mountinfo; }
v2=$(mounts | awk '$2 == "cgroup2" {print $1; exit}')
[[ -n $v2 ]] || { echo "no cgroup2 mount" >&2; exit 1; }
v1_memory=$(mounts | awk '$2 == "cgroup" && $3 ~ /(^|,)memory(,|$)/ {print $1; exit}')
base="kadvisor-measure-$$"
dirs=("$v2/$base")
[[ -n $v1_memory && -z ${KADVISOR_MEASURE_V2_ONLY:-} ]] && dirs+=("$v1_memory/$base")
port=$((20000 + $$ % 10000))
pid=

cleanup() {
  [[ -n $pid ]] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  for d in "${dirs[@]}"; do
    [[ -d $d ]] || continue
    find "$d" -mindepth 1 -depth -type d -exec rmdir {} + 2>/dev/null || true
    rmdir "$d" 2>/dev/null || true
  done
}
trap cleanup EXIT

for d in "${dirs[@]}"; do
  mkdir "$d"
  for i in $(seq 1 "$n"); do mkdir "$d/c$i"; done
done

"$bin" --port "$port" --log_level warn &
pid=$!
for _ in $(seq 1 200); do
  curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break
  sleep 0.1
done

times=()
for _ in $(seq 1 "$scrapes"); do
  times+=("$(curl -s -o /tmp/kadvisor-measure-body.$$ -w '%{time_total}' "http://127.0.0.1:$port/metrics")")
done
rows=$(grep -c '^container_memory_usage_bytes{' /tmp/kadvisor-measure-body.$$ || true)
bytes=$(wc -c </tmp/kadvisor-measure-body.$$)
rm -f /tmp/kadvisor-measure-body.$$
printf '%s\n' "${times[@]}" | sort -n | awk -v n="$n" -v rows="$rows" -v bytes="$bytes" '
  { t[NR] = $1 }
  END {
    printf "extra cgroups: %d, memory rows: %d, body: %d bytes\n", n, rows, bytes
    printf "scrape median: %.1f ms, p90: %.1f ms (%d scrapes)\n", t[int((NR + 1) / 2)] * 1000, t[int(NR * 0.9)] * 1000, NR
  }'
